#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# soak: time instead of a fault. SOAK_CLIENTS registered TLS clients re-register every
# SOAK_PERIOD_S seconds on their own connections (sipedge-bench's open loop at clients/period
# REGISTER/s on that many connections: each connection in turn), and SOAK_CHURN % of the
# connections a minute are closed by their client and opened again (TCP, TLS, 407, REGISTER),
# for DURATION seconds. Long form: 10,000 clients, 120 s, 1 %/min, 30 minutes (the issue's); quick
# form (CI, under ASan): 1,000 clients, 20 s, 30 %/min, 80 s, so that every client re-registers
# four times and a connection is replaced every 0.2 s.
# Every SOAK_SAMPLE_S seconds the edge's VmRSS, open fds and table gauges (client connections,
# open transactions (REGISTER and call tables), L1 entries and token bytes, upstream connections) go to
# $T/soak.csv (plot: $T/soak.svg when gnuplot is installed; bench/chaos/soak.gp).
# Invariants, besides the common ones (one final response each, all 200, none lost; RSS and fds
# back at the baseline once the clients left; exit 0 on SIGTERM; no sanitizer report): over the
# samples after the first fifth of the run (set-up and first cycle) and before its end (the
# generator's clients leaving), split into two halves,
# - RSS flat: the second half's peak at most the first half's + max(1 MiB, 2 %); the second
#   half's least-squares slope times its length at most that slack too (a trend that would add
#   more than the slack within the half fails, even hidden in the samples' noise; checked when
#   the half spans 2 minutes or more: over the quick form's 30 s it would measure noise);
# - no fd leak: fds never above the baseline + clients + 64, and the second half's peak at most
#   the first half's + 8; fds less client connections constant (max - min <= 16: connections in
#   mid-handshake) over the samples, so no fd is kept per churned connection;
# - no table growth: client connections never above the clients + 16; open transactions never
#   above the clients; L1 entries never above workers x 2 x clients (every client keeps its token,
#   but the rehearsal's generator minted its own, and a client that comes back may land on the
#   other worker, whose L1 then takes its token from Redis: the entries climb towards that bound
#   as churn goes on, and stop there).
# chaos-timeout: 480 2700
# shellcheck disable=SC2317 # sampler() runs through chaos_run
# shellcheck source=bench/chaos/lib.sh
source "$(dirname "$0")/lib.sh"
chaos_init soak

if [ "$CHAOS_QUICK" = 1 ]; then
    CLIENTS=${SOAK_CLIENTS:-1000} PERIOD_S=${SOAK_PERIOD_S:-20} CHURN=${SOAK_CHURN:-30}
    DURATION=${CHAOS_DURATION:-80} WARMUP=${CHAOS_WARMUP:-20} SAMPLE_S=${SOAK_SAMPLE_S:-2}
else
    CLIENTS=${SOAK_CLIENTS:-10000} PERIOD_S=${SOAK_PERIOD_S:-120} CHURN=${SOAK_CHURN:-1}
    DURATION=${CHAOS_DURATION:-1800} WARMUP=${CHAOS_WARMUP:-60} SAMPLE_S=${SOAK_SAMPLE_S:-10}
fi
CONNS=$CLIENTS
RATE=$(awk -v c="$CLIENTS" -v p="$PERIOD_S" 'BEGIN { printf "%.3f", c / p }')
# Clients stay connected between their re-REGISTERs: the edge must not take them for idle.
export SIPEDGE_LISTEN_LIMITS_IDLE_TIMEOUT_MS=$(((PERIOD_S * 3 + 60) * 1000))
# Set-up of thousands of handshakes at once on a shared machine: the production-like deadline.
HANDSHAKE_TIMEOUT_MS=30000

GAUGES='^sipedge_(client_connections|transactions|auth_l1_entries|auth_l1_token_bytes|upstream_connections)[ {]'
SAMPLES=""

# sampler: one line every SAMPLE_S seconds while the generator runs (rehearsal: its own file).
sampler() {
    local out t0 m
    if [ -z "$SAMPLES" ]; then out="$T/soak-rehearsal.csv"; else out="$T/soak.csv"; fi
    SAMPLES=$out
    echo "t_s,rss_kib,fds,client_connections,transactions,l1_entries,l1_token_bytes,upstream_connections" >"$out"
    t0=$(chaos_now_ms)
    while kill -0 "$BENCH_PID" 2>/dev/null; do
        chaos_sample
        m=$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null | grep -E "$GAUGES" |
            awk '{ split($1, k, /[ {]/); v[k[1]] += $NF }
                 END { printf "%d,%d,%d,%d,%d", v["sipedge_client_connections"],
                       v["sipedge_transactions"], v["sipedge_auth_l1_entries"],
                       v["sipedge_auth_l1_token_bytes"], v["sipedge_upstream_connections"] }')
        echo "$(awk -v ms="$(($(chaos_now_ms) - t0))" 'BEGIN { printf "%.1f", ms / 1000 }'),$SAMPLE_RSS,$SAMPLE_FDS,$m" >>"$out"
        sleep "$SAMPLE_S"
    done
}

chaos_stack 1
chaos_run sampler --churn "$CHURN" --setup-concurrency 256 --setup-timeout 300 --threads 2
chaos_check_load
chaos_check_edge

# The samples' invariants and figures (awk prints "fail: ..." lines and one "figs ..." line).
soak_eval() {
    awk -F, -v from="$(awk -v d="$DURATION" 'BEGIN { print d / 5 }')" -v clients="$CLIENTS" \
        -v base_fds="$BASE_FDS" -v l1_max="$((WORKERS * 2 * CLIENTS))" -v end="$DURATION" '
    NR == 1 { next }
    { n_all++; if ($3 > fd_peak) fd_peak = $3; if ($4 > conn_peak) conn_peak = $4
      if ($5 > txn_peak) txn_peak = $5; if ($2 > rss_peak) rss_peak = $2
      if ($6 > l1_peak) l1_peak = $6
      if (n_all == 1) rss_first = $2; rss_last = $2 }
    $1 >= from && $1 < end { n++; t[n] = $1; rss[n] = $2; fds[n] = $3; l1e[n] = $6; l1b[n] = $7
                 d = $3 - $4; if (n == 1 || d < dmin) dmin = d; if (n == 1 || d > dmax) dmax = d }
    END {
        if (n < 6) { print "fail: only " n " samples after the first fifth"; exit }
        h = int(n / 2)
        for (i = 1; i <= n; i++) {
            a = i <= h
            if (a) { if (rss[i] > ra) ra = rss[i]; if (fds[i] > fa) fa = fds[i]
                     if (l1e[i] > ea) ea = l1e[i]; if (l1b[i] > ba) ba = l1b[i] }
            else { if (rss[i] > rb) rb = rss[i]; if (fds[i] > fb) fb = fds[i]
                   if (l1e[i] > eb) eb = l1e[i]; if (l1b[i] > bb) bb = l1b[i]
                   m++; sx += t[i]; sy += rss[i]; sxx += t[i] * t[i]; sxy += t[i] * rss[i] }
        }
        slope = (m * sxx - sx * sx) > 0 ? (m * sxy - sx * sy) / (m * sxx - sx * sx) * 60 : 0
        slack = ra * 0.02 > 1024 ? ra * 0.02 : 1024
        if (rb > ra + slack)
            printf "fail: RSS grew: second half peak %d KiB > first half peak %d + %d\n", rb, ra, slack
        span = m > 1 ? (t[n] - t[h + 1]) / 60 : 0
        if (span >= 2 && slope * span > slack)
            printf "fail: RSS trend: %.1f KiB/min over the second half (%.1f min) adds > %d KiB\n", slope, span, slack
        if (dmax - dmin > 16)
            printf "fail: fds less client connections went %d..%d (an fd kept per connection?)\n", dmin, dmax
        if (fb > fa + 8) printf "fail: fds grew: second half peak %d > first half peak %d + 8\n", fb, fa
        if (fd_peak > base_fds + clients + 64)
            printf "fail: %d fds open > baseline %d + %d clients + 64\n", fd_peak, base_fds, clients
        if (conn_peak > clients + 16) printf "fail: %d client connections > %d + 16\n", conn_peak, clients
        if (txn_peak > clients) printf "fail: %d open transactions > %d clients\n", txn_peak, clients
        if (l1_peak > l1_max) printf "fail: %d L1 entries > %d (workers x 2 x clients)\n", l1_peak, l1_max
        printf "figs samples=%d rss_first/last/peak=%.1f/%.1f/%.1fMiB rss_half_peaks=%.1f/%.1fMiB slope=%.1fKiB/min fds_peak=%d fds-conns=%d..%d conns_peak=%d txn_peak=%d l1_entries_half_peaks=%d/%d l1_bytes_half_peaks=%d/%d\n",
            n_all, rss_first / 1024, rss_last / 1024, rss_peak / 1024, ra / 1024, rb / 1024, slope,
            fd_peak, dmin, dmax, conn_peak, txn_peak, ea, eb, ba, bb
    }' "$T/soak.csv"
}

if [ ! -s "$T/soak.csv" ]; then
    chaos_fail "no samples ($T/soak.csv)"
else
    while read -r kind rest; do
        case "$kind" in
        fail:) chaos_fail "$rest" ;;
        figs) for f in $rest; do chaos_fig "$f"; done ;;
        esac
    done < <(soak_eval)
fi
chaos_fig "clients=$CLIENTS period=${PERIOD_S}s churn=${CHURN}%/min"
chaos_fig "churned=$(jload '.churned // 0')"
chaos_fig "handshakes=$(jload '.handshakes')"
if command -v gnuplot >/dev/null; then
    gnuplot -e "csv='$T/soak.csv'; out='$T/soak.svg'; title='$CLIENTS clients, re-REGISTER every ${PERIOD_S} s, ${CHURN} %/min churn'" \
        "$SRC/bench/chaos/soak.gp" 2>"$T/gnuplot.err" || e2e_log "gnuplot failed: $(head -c 300 "$T/gnuplot.err")"
fi
chaos_done
