#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The `compare` scenario of issue 5: the same steady re-REGISTER load against sipedge and against
# Kamailio doing the same job (bench/peers/kamailio/edge.cfg), both running in one run, alternated
# rate by rate. Per side and rate: edge CPU per proxied REGISTER from the edge's own accounting,
# latency percentiles from the load generator, the load generator's own CPU; a table, the ratio
# Kamailio/sipedge, JSON lines in build/bench/compare.jsonl, and with --plot the PNGs of
# docs/img/compare-*.png.
#   bench/compare.sh [--quick] [--plot]
#   bench/compare.sh overload [--plot]   (issue 15: goodput and p99 past saturation, both sides;
#                                         bench/compare-overload.sh, GEN=bench implied)
# Environment: BIN (build dir, default build/rel, built in Release when missing), RATES (offered
# REGISTER/s, default "1000 2000 4000"), DURATION (seconds per point, default 5), USERS (distinct
# users and tokens, default 100), REPEAT (runs per point, default 3; 1 with --quick), WORKERS (sipedge workers and
# Kamailio TLS workers, default 2), GEN (load generator: sipp or bench, default sipp), CONNS
# (GEN=bench: TLS connections, one user each, default 200).
#
# GEN=sipp: SIPp through stunnel (SIPp here has no TLS): one TCP connection from SIPp, one TLS
# connection into the edge, every REGISTER on it (the reference setup of the issue), warm cache.
# GEN=bench: sipedge-bench, the load of `bench/run.sh steady`: CONNS TLS clients straight into the
# edge, each its own user (ES256 tokens for sipedge, HS256 with the shared secret for Kamailio),
# open loop at the rate; the edge's CPU (all of Kamailio's processes: --edge-pid A,B,...) read by
# the generator at the edges of the measured window, so the connection set-up is not counted.
# What each side checks per REGISTER:
#   sipedge : the ES256 token's full JWS check (signature, alg, kid, exp/nbf, sub = To user)
#             behind its L1 cache (Redis L2 behind it), forward over pooled mTLS to UCM.
#   kamailio: HS256 (HMAC-SHA256 in the script, crypto module), claims by regex (exp, sub = To
#             user), htable verify cache keyed by user and token; add_path, t_relay over mTLS.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0
PLOT=0
MODE=steady
for a in "$@"; do
    case "$a" in
    overload) MODE=overload GEN=bench ;;
    --quick) QUICK=1 ;;
    --plot) PLOT=1 ;;
    *)
        echo "usage: bench/compare.sh [overload] [--quick] [--plot]" >&2
        exit 2
        ;;
    esac
done
if [ -z "${BIN:-}" ]; then
    BIN=$SRC/build/rel
    if [ ! -x "$BIN/sipedge" ] || [ ! -x "$BIN/sipedge-ucmsim" ] || [ ! -x "$BIN/sipedge-token" ]; then
        cmake -S "$SRC" -B "$BIN" -DCMAKE_BUILD_TYPE=Release >/dev/null
        cmake --build "$BIN" -j"$(nproc)" >/dev/null
    fi
fi
export BIN SRC
# One source address minting tokens on purpose: no per-source verification budget (issue 12).
export SIPEDGE_AUTH_SOURCE_BUDGET_RATE=${SIPEDGE_AUTH_SOURCE_BUDGET_RATE:-0}
export SIPEDGE_AUTH_WORKER_BUDGET_RATE=${SIPEDGE_AUTH_WORKER_BUDGET_RATE:-0}
RATES=${RATES:-"1000 2000 4000"}
DURATION=${DURATION:-5}
USERS=${USERS:-100}
REPEAT=${REPEAT:-3}
WORKERS=${WORKERS:-2}
GEN=${GEN:-sipp}
CONNS=${CONNS:-200}
case "$GEN" in sipp | bench) ;; *)
    echo "bench/compare.sh: GEN must be sipp or bench" >&2
    exit 2
    ;;
esac
if [ "$QUICK" = 1 ]; then
    RATES=${QUICK_RATES:-"500 1000"}
    DURATION=2
    REPEAT=1
fi
RESULTS_DIR=${RESULTS_DIR:-$SRC/build/bench}
RESULTS="$RESULTS_DIR/compare.jsonl"
mkdir -p "$RESULTS_DIR"
for tool in sipp stunnel kamailio kamcmd jq; do
    command -v "$tool" >/dev/null || {
        echo "bench/compare.sh: needs $tool (scripts/install-deps.sh)" >&2
        exit 2
    }
done

# shellcheck source=../tests/e2e/lib.sh
source "$SRC/tests/e2e/lib.sh"
e2e_init compare
# shellcheck source=peers/kamailio/kamailio-edge.sh
source "$SRC/bench/peers/kamailio/kamailio-edge.sh"
trap 'kamedge_stop; e2e_cleanup' EXIT
say() { printf 'compare: %s\n' "$*" >&2; }

# ---- accounting ----------------------------------------------------------------------------

# cpu_ns PID...: CPU time of these processes in nanoseconds: the sum over every thread of
# /proc/PID/task/TID/schedstat (time on CPU, ns resolution).
cpu_ns() {
    local p
    for p in "$@"; do cat /proc/"$p"/task/*/schedstat 2>/dev/null || true; done |
        awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# cpu_ticks PID...: utime + stime of these processes (/proc/PID/stat, clock ticks, all threads).
cpu_ticks() {
    local p
    for p in "$@"; do sed 's/.*) //' "/proc/$p/stat" 2>/dev/null || true; done |
        awk '{ s += $12 + $13 } END { print s + 0 }'
}

ucm_200s() { grep -c '"method":"REGISTER".*"answer":"200"' "$T/ucm.jsonl" 2>/dev/null || true; }

# ---- the processes -------------------------------------------------------------------------

REDIS_PORT=$(free_port)
start_redis "$REDIS_PORT"
UCM_PORT=$(free_port)
"$BIN/sipedge-ucmsim" --addr 127.0.0.1 --port "$UCM_PORT" --cert "$PKI/ucm.crt" \
    --key "$PKI/ucm.key" --ca "$PKI/ca.crt" --allow edge.example.test --node ucm1 \
    --record "$T/ucm.jsonl" >"$T/ucm.out" 2>"$T/ucm.err" &
E2E_PIDS+=($!)
UCM_PID=$!
wait_port "$UCM_PORT"

NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
KEEPALIVE_MS=30000 LOG_LEVEL=warn start_edge
wait_ready 10
SE_PORT=$EDGE_PORT
start_stunnel 2>>"$T/stunnel.err"
SE_TUNNEL=$STUNNEL_PORT
SE_TUNNEL_PID=${E2E_PIDS[-1]}

head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/hs.secret"
chmod 600 "$T/hs.secret"
KAM_PORT=$(free_port)
KAMEDGE_CHILDREN=$WORKERS kamedge_start "$T/kamailio" "$PKI" "$KAM_PORT" "$UCM_PORT" "$T/hs.secret"
EDGE_PORT=$KAM_PORT start_stunnel 2>>"$T/stunnel.err"
KAM_TUNNEL=$STUNNEL_PORT
KAM_TUNNEL_PID=${E2E_PIDS[-1]}
EDGE_PORT=$SE_PORT

say "sipedge  (pid $EDGE_PID, $WORKERS workers) on 127.0.0.1:$SE_PORT, checks ES256 tokens (full JWS verify, L1 cache + Redis)"
say "kamailio (pid $KAMEDGE_PID, $WORKERS TLS workers, tlsf, ${KAMEDGE_SHM:-1024} MB shm) on 127.0.0.1:$KAM_PORT, checks HS256 tokens (script HMAC + htable cache)"
if [ "$GEN" = sipp ]; then
    GEN_DESC="sipp+stunnel, 1 TLS connection"
else
    GEN_DESC="sipedge-bench, $CONNS TLS connections"
fi
say "UCM stand-in (sipedge-ucmsim) on 127.0.0.1:$UCM_PORT, mutual TLS; load: $GEN_DESC per side"

# Same users on both sides; tokens valid for the whole run.
{
    echo SEQUENTIAL
    for i in $(seq 1 "$USERS"); do echo "user$i;$(mint "user$i" --lifetime 7200);"; done
} >"$T/users-sipedge.csv"
{
    echo SEQUENTIAL
    for i in $(seq 1 "$USERS"); do
        echo "user$i;$("$TOKEN" mint --alg HS256 --key "$T/hs.secret" --user "user$i" --lifetime 7200);"
    done
} >"$T/users-kamailio.csv"

# ---- one measured point ----------------------------------------------------------------------

# drive_bench SIDE RATE SECONDS: sipedge-bench at RATE for SECONDS (after its own set-up of CONNS
# registered connections). Sets the same P_* globals as drive, and P_US / P_TUS / P_GUS.
drive_bench() {
    local side=$1 rate=$2 secs=$3 port pids line rc=0
    local keyargs=()
    if [ "$side" = sipedge ]; then
        port=$SE_PORT pids=$EDGE_PID keyargs=(--key "$JWT_KEY" --kid es1)
    else
        # Debian's Kamailio 5.6.3 with OpenSSL 3 double-frees in its tls module when a set of
        # TLS connections closes and a new one opens (tlsf assertion, core dump: kamailio
        # issue #3791; the tls_threads_mode fix is not in 5.6): a fresh Kamailio per run.
        kamedge_stop
        KAMEDGE_CHILDREN=$WORKERS kamedge_start "$T/kamailio" "$PKI" "$KAM_PORT" "$UCM_PORT" \
            "$T/hs.secret"
        port=$KAM_PORT pids=$(kamedge_pids | paste -sd, -) keyargs=(--hs256-secret "$T/hs.secret")
    fi
    line=$("$BIN/sipedge-bench" --port "$port" --ca "$PKI/ca.crt" "${keyargs[@]}" \
        --conns "$CONNS" --users "$CONNS" --user-prefix user --rate "$rate" --duration "$secs" \
        --timeout-ms "${TIMEOUT_MS:-2000}" --max-requests 400000 --edge-pid "$pids" \
        --ucm-pid "$UCM_PID" --label "$side-$rate" --json \
        --quiet 2>>"$T/bench.err") || rc=$?
    line=$(printf '%s\n' "$line" | grep '^{' | tail -n 1 || true)
    [ -n "$line" ] || line='{}'
    printf '%s\n' "$line" >>"$T/bench-runs.jsonl"
    P_LINE=$line
    P_RC=$rc
    P_OK=$(jq '.ok // 0' <<<"$line")
    P_FAILED=$(jq '(.errors // 0) + (.setup_error_causes.timeout // 0)' <<<"$line")
    P_WALL=$(jq '.window_s // .duration_s // 0' <<<"$line")
    P_ACH=$(jq '.throughput // 0 | floor' <<<"$line")
    P_US=$(jq '.edge.cpu_us_per_unit // 0 | . * 10 | round / 10' <<<"$line")
    P_TUS=$(jq '.edge.cpu_us_per_unit_ticks // 0' <<<"$line")
    P_GUS=$(jq '.gen_cpu_us_per_unit // 0 | . * 10 | round / 10' <<<"$line")
    read -r P_P50 P_P99 P_P999 <<<"$(jq -r '.latency_us.register | "\(.p50 // 0) \(.p99 // 0) \(.p999 // 0)"' <<<"$line")"
}

# drive SIDE RATE SECONDS: SIPp at RATE REGISTER/s for SECONDS into SIDE's stunnel. Sets the
# globals of the point: P_* (see the JSON line below).
drive() {
    local side=$1 rate=$2 secs=$3 tunnel pids csv n dir t0 t1 c0 c1 k0 k1 u0 u1 g0 g1 rc=0
    if [ "$side" = sipedge ]; then
        tunnel=$SE_TUNNEL pids=$EDGE_PID csv=$T/users-sipedge.csv g0=$SE_TUNNEL_PID
    else
        tunnel=$KAM_TUNNEL pids=$(kamedge_pids | tr '\n' ' ') csv=$T/users-kamailio.csv g0=$KAM_TUNNEL_PID
    fi
    n=$((rate * secs))
    dir=$(mktemp -d "$T/run-$side-$rate.XXXX")
    local gen_tunnel0 gen_tunnel1
    gen_tunnel0=$(cpu_ns "$g0")
    u0=$(ucm_200s)
    # shellcheck disable=SC2086
    c0=$(cpu_ns $pids)
    # shellcheck disable=SC2086
    k0=$(cpu_ticks $pids)
    t0=$(date +%s.%N)
    (cd "$dir" && /usr/bin/time -f '%U %S' -o "$dir/sipp.time" \
        sipp -sf "$SRC/bench/peers/sipp/reregister_bearer.xml" -inf "$csv" -t t1 -m "$n" \
        -r "$rate" -rp 1000 -l 15000 -timeout $((secs + 30))s -timeout_error -nostdin \
        -trace_shortmsg -shortmessage_file "$dir/short.log" -trace_err -error_file "$dir/errors.log" \
        "127.0.0.1:$tunnel" >"$dir/sipp.out" 2>&1) || rc=$?
    t1=$(date +%s.%N)
    sleep 0.2 # the last answers' accounting
    # shellcheck disable=SC2086
    c1=$(cpu_ns $pids)
    # shellcheck disable=SC2086
    k1=$(cpu_ticks $pids)
    u1=$(ucm_200s)
    gen_tunnel1=$(cpu_ns "$g0")
    P_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    P_OK=$((u1 - u0))
    P_CPU_NS=$((c1 - c0))
    P_CPU_TICKS=$((k1 - k0))
    P_RC=$rc
    P_FAILED=$(grep -E '^\s*Failed call' "$dir/sipp.out" | tail -1 | awk '{ print $NF }')
    P_FAILED=${P_FAILED:-0}
    local sipp_cpu
    # /usr/bin/time's last line is "user sys" (a line before it says so if SIPp failed calls).
    sipp_cpu=$(awk 'NF == 2 && $1 ~ /^[0-9.]+$/ { v = ($1 + $2) * 1e9 } END { printf "%.0f", v }' \
        "$dir/sipp.time")
    P_GEN_NS=$((sipp_cpu + gen_tunnel1 - gen_tunnel0))
    # SIPp's short message log: "date time epoch.us S|R call-id cseq first-line", tab-separated;
    # latency = the 200's R time - the REGISTER's S time, per Call-ID, in microseconds.
    local lat
    lat=$(awk -F'\t' '$4 == "S" { s[$5] = $3; next }
            $4 == "R" && ($5 in s) && $7 ~ /^SIP\/2.0 200/ { printf "%.0f\n", ($3 - s[$5]) * 1e6 }' \
        "$dir/short.log" 2>/dev/null | sort -n | awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "0 0 0 0"; exit }
            i50 = int(NR * 0.50 + 0.5); i99 = int(NR * 0.99 + 0.5); i999 = int(NR * 0.999 + 0.5)
            if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1; if (i999 < 1) i999 = 1
            printf "%d %d %d %d\n", v[i50], v[i99], v[i999], NR }')
    read -r P_P50 P_P99 P_P999 P_SAMPLES <<<"$lat"
}

printf '%-9s %8s %9s %8s %7s %12s %12s %12s %9s %9s\n' side offered achieved ok_200 failed \
    'edge_us/REG' 'ticks_us/REG' 'gen_us/REG' 'p50_us' 'p99_us' >"$T/table.txt"
: >"$T/points.dat"
commit=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)
check_sipedge="ES256 full JWS verify (signature, alg, kid, exp, sub=To user) behind L1 cache + Redis"
check_kamailio="HS256 HMAC-SHA256 in script (crypto), exp and sub=To user by regex, htable verify cache"

# Idle cost: CPU each edge burns in 2 s without load (timers, keep-alives, polling).
idle_us_per_s() {
    local a b
    # shellcheck disable=SC2086
    a=$(cpu_ns $1)
    sleep 2
    # shellcheck disable=SC2086
    b=$(cpu_ns $1)
    awk -v a="$a" -v b="$b" 'BEGIN { printf "%.0f", (b - a) / 2 / 1000 }'
}
IDLE_SE=$(idle_us_per_s "$EDGE_PID")
IDLE_KAM=$(idle_us_per_s "$(kamedge_pids | tr '\n' ' ')")

KAM_CRASHES=0
if [ "$MODE" = overload ]; then
    # shellcheck source=compare-overload.sh
    source "$SRC/bench/compare-overload.sh"
    overload_main
    exit 0
fi
if [ "$GEN" = sipp ]; then
    say "warm-up: every token once on each side (fills the caches, opens the connections to UCM)"
    drive sipedge 200 $(((USERS + 199) / 200))
    drive kamailio 200 $(((USERS + 199) / 200))
fi

for rate in $RATES; do
    for r in $(seq 1 "$REPEAT"); do
        for side in sipedge kamailio; do
            if [ "$GEN" = bench ]; then
                drive_bench "$side" "$rate" "$DURATION"
                # a Kamailio run broken by its tls module crash (see drive_bench) is retried
                # on a fresh Kamailio, twice at most; the crashes are counted and printed
                for _ in 1 2; do
                    [ "$side" = kamailio ] && [ "$P_OK" = 0 ] || break
                    KAM_CRASHES=$((KAM_CRASHES + 1))
                    say "kamailio run at $rate/s got no answer (tls module crash?): retrying"
                    drive_bench "$side" "$rate" "$DURATION"
                done
                us=$P_US tus=$P_TUS gus=$P_GUS ach=$P_ACH
            else
                drive "$side" "$rate" "$DURATION"
                us=$(awk -v c="$P_CPU_NS" -v n="$P_OK" 'BEGIN { printf "%.1f", n ? c / n / 1000 : 0 }')
                tus=$(awk -v c="$P_CPU_TICKS" -v n="$P_OK" -v hz="$(getconf CLK_TCK)" \
                    'BEGIN { printf "%.1f", n ? c * 1e6 / hz / n : 0 }')
                gus=$(awk -v c="$P_GEN_NS" -v n="$P_OK" 'BEGIN { printf "%.1f", n ? c / n / 1000 : 0 }')
                ach=$(awk -v n="$P_OK" -v w="$P_WALL" 'BEGIN { printf "%.0f", (w > 0 ? n / w : 0) }')
            fi
            printf '%-9s %8s %9s %8s %7s %12s %12s %12s %9s %9s\n' "$side" "$rate" "$ach" "$P_OK" \
                "$P_FAILED" "$us" "$tus" "$gus" "$P_P50" "$P_P99" >>"$T/table.txt"
            tail -n 1 "$T/table.txt" >&2
            echo "$side $rate $us $P_P50 $P_P99 $P_P999 $ach" >>"$T/points.dat"
            if [ "$side" = sipedge ]; then chk=$check_sipedge; else chk=$check_kamailio; fi
            jq -cn --arg side "$side" --arg check "$chk" --arg commit "$commit" --arg gen "$GEN_DESC" \
                --argjson rate "$rate" --argjson ach "$ach" --argjson ok "$P_OK" \
                --argjson failed "$P_FAILED" --argjson sipp_rc "$P_RC" --argjson us "$us" \
                --argjson tus "$tus" --argjson gus "$gus" --argjson p50 "$P_P50" \
                --argjson p99 "$P_P99" --argjson p999 "$P_P999" --argjson wall "$P_WALL" \
                --argjson dur "$DURATION" --argjson users "$USERS" --argjson workers "$WORKERS" \
                --argjson ts "$(date +%s)" \
                '{scenario: "compare", ts: $ts, commit: $commit, side: $side, check: $check,
                  generator: $gen, offered_per_s: $rate,
                  achieved_per_s: $ach, ok_200_at_ucm: $ok, failed: $failed, sipp_rc: $sipp_rc,
                  edge_cpu_us_per_register: $us, edge_cpu_us_per_register_ticks: $tus,
                  generator_cpu_us_per_register: $gus, latency_us: {p50: $p50, p99: $p99,
                  p999: $p999}, wall_s: $wall, duration_s: $dur, users: $users,
                  workers: $workers}' >>"$RESULTS"
        done
    done
done

echo
echo "== compare: steady re-REGISTERs, warm cache, $GEN_DESC -> edge -> mTLS -> sipedge-ucmsim"
echo "   sipedge  checks: $check_sipedge"
echo "   kamailio checks: $check_kamailio"
echo "   edge_us/REG: edge CPU (all threads / all processes, schedstat) per 200 relayed from UCM;"
if [ "$GEN" = sipp ]; then
    echo "   ticks_us/REG: the same from utime+stime; gen_us/REG: SIPp + stunnel CPU; latency: SIPp"
    echo "   send REGISTER -> 200 received (through stunnel, both sides alike)"
else
    echo "   (per 200 OK the generator got, over its measured window); ticks_us/REG: the same from"
    echo "   utime+stime; gen_us/REG: sipedge-bench CPU; latency: scheduled send -> 200 received"
fi
cat "$T/table.txt"
echo
# Medians over the repeats, per side and rate: "side rate us p50 p99 p999 achieved".
med() { sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }'; }
: >"$T/medians.dat"
for rate in $RATES; do
    for side in sipedge kamailio; do
        line="$side $rate"
        for col in 3 4 5 6 7; do
            line="$line $(awk -v s="$side" -v r="$rate" -v c="$col" '$1 == s && $2 == r { print $c }' \
                "$T/points.dat" | med)"
        done
        echo "$line" >>"$T/medians.dat"
    done
done
echo "median over $REPEAT run(s) per point; ratio = Kamailio / sipedge of edge CPU per REGISTER:"
awk '$1 == "sipedge" { s[$2] = $3 } $1 == "kamailio" { k[$2] = $3; o[++n] = $2 }
    END { for (i = 1; i <= n; i++) { r = o[i]
        printf "  %6s REGISTER/s: sipedge %7.1f us, kamailio %7.1f us, ratio %5.1fx\n", r, s[r], k[r],
            (s[r] > 0 ? k[r] / s[r] : 0) } }' "$T/medians.dat" | tee "$T/ratio.txt"
printf '  idle (no load), CPU per second: sipedge %s us, kamailio %s us\n' "$IDLE_SE" "$IDLE_KAM"
curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" >"$T/sipedge-metrics.txt" 2>/dev/null || true
printf '  answers made by the edges themselves during the run: sipedge 503s %s (metrics in %s), kamailio 5xx %s\n' \
    "$(awk '$0 !~ /^#/ && /sipedge_sip_responses_total/ && /code="503"/ { s += $NF } END { print s + 0 }' \
        "$T/sipedge-metrics.txt")" "$T/sipedge-metrics.txt" \
    "$(cat "$T"/run-kamailio-*/errors.log 2>/dev/null | grep -c "received 'SIP/2.0 5" || true)"
if [ "$GEN" = bench ]; then
    printf '  kamailio runs lost to its tls module crash and retried: %s (logs: %s)\n' "$KAM_CRASHES" \
        "$T/kamailio/kamailio.log"
fi
echo "JSON lines appended to $RESULTS"

if [ "$PLOT" = 1 ]; then
    IMG=${IMG_DIR:-$SRC/docs/img}
    IMG_SUFFIX=$([ "$GEN" = bench ] && echo -bench || true)
    mkdir -p "$IMG"
    for side in sipedge kamailio; do
        awk -v s="$side" '$1 == s { print $2, $3, $4, $5, $6 }' "$T/medians.dat" | sort -n >"$T/$side.dat"
    done
    gnuplot <<EOF
set terminal pngcairo size 900,540 noenhanced font ",10"
set grid
set key top left
set xlabel "offered REGISTER/s ($GEN_DESC)"
set output "$IMG/compare${IMG_SUFFIX}-latency.png"
set ylabel "latency, microseconds (REGISTER sent -> 200 received)"
set logscale y
set xrange [0:*]
set title "compare: latency percentiles vs offered rate (warm cache, 2 vCPU, everything on loopback)"
plot "$T/sipedge.dat" using 1:3 with linespoints lw 2 pt 7 lc rgb "#1f5fbf" title "sipedge p50", \
     "$T/sipedge.dat" using 1:4 with linespoints lw 2 pt 7 dt 2 lc rgb "#1f5fbf" title "sipedge p99", \
     "$T/kamailio.dat" using 1:3 with linespoints lw 2 pt 5 lc rgb "#d9541a" title "Kamailio 5.6 p50", \
     "$T/kamailio.dat" using 1:4 with linespoints lw 2 pt 5 dt 2 lc rgb "#d9541a" title "Kamailio 5.6 p99"
set output "$IMG/compare${IMG_SUFFIX}-cpu.png"
set ylabel "edge CPU microseconds per proxied REGISTER"
set yrange [1:*]
set title "compare: edge CPU per REGISTER vs offered rate (sipedge ES256+cache, Kamailio HS256+htable)"
plot "$T/sipedge.dat" using 1:2 with linespoints lw 2 pt 7 lc rgb "#1f5fbf" title "sipedge (2 workers)", \
     "$T/kamailio.dat" using 1:2 with linespoints lw 2 pt 5 lc rgb "#d9541a" title "Kamailio 5.6 (tlsf, 1 GB shm, 2 TLS workers)"
EOF
    echo "plots: $IMG/compare${IMG_SUFFIX}-latency.png $IMG/compare${IMG_SUFFIX}-cpu.png"
fi
