#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Edge benchmark scenarios (issue 5): each starts its own redis-server, sipedge-ucmsim and sipedge
# on loopback (free ports), drives them with sipedge-bench, prints a table and appends one JSON
# line per run to build/bench/results.jsonl, then stops what it started (by PID).
#   bench/run.sh [--quick] steady|cold|storm|idle|keepalive|reconnect|admission
#   bench/run.sh [--quick] compare [--plot]   (sipedge and Kamailio side by side: bench/compare.sh)
# (write_edge_config in tests/e2e/lib.sh assigns h, p and n: the scenarios avoid those names.)
# Environment: BIN (build dir, default build/rel: built in Release when missing), WORKERS (edge
# workers, default 2), REPEAT (runs per point, default 3; 1 with --quick), RATES (steady ladder),
# IDLE_CONNS (idle sizes, default "10000 18000 50000 100000"; sizes over the hard RLIMIT_NOFILE are
# skipped), KA_CONNS / KA_HOLD / KA_MS (keepalive: clients, hold seconds, ping period; default
# 18000, 60, 30000), STORM_KINDS / STORM_CONNS / STORM_CONC (storm: which of full, resume, full-1.2
# and resume-1.2, how many connections each, how many at once; default all four, 2000, 32; the
# storm profile takes STORM_CONC too), RC_CONNS / RC_RATE /
# RC_SECONDS (reconnect: clients that reconnect at once, the connected clients' REGISTER rate,
# their measured window; default 18000, 200, 60), RC_KINDS (reconnect: which of full, full-seen and
# resume; default all three), RC_STORM_NICE (reconnect: the storm generator's nice value, default
# 19, so that it takes the CPU the edge and the connected clients leave, as if it ran elsewhere;
# 0: the same priority as the edge),
# ADM_CONNS / ADM_CPU / ADM_SECS / ADM_BOUNDS / ADM_MULTS (admission: clients, the edge's CPU quota
# in % of one core, seconds per step, listen.limits.max_queue_delay_ms values, multiples of the
# capacity; default 4000, 15, 8, "0 200 50", "0.5 1 1.5 2").
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0
if [ "${1:-}" = "--quick" ]; then
    QUICK=1
    shift
fi
SCENARIO=${1:?usage: bench/run.sh [--quick] steady|cold|storm|idle|keepalive|reconnect|admission|compare}
if [ "$SCENARIO" = compare ]; then
    shift
    [ "$QUICK" = 0 ] || set -- --quick "$@"
    exec bash "$SRC/bench/compare.sh" "$@"
fi
case "$SCENARIO" in steady | cold | storm | idle | keepalive | reconnect | profile | admission) ;; *)
    echo "bench/run.sh: unknown scenario $SCENARIO (steady, cold, storm, idle, keepalive, reconnect, profile, admission)" >&2
    exit 2
    ;;
esac

if [ -z "${BIN:-}" ]; then
    BIN=$SRC/build/rel
    if [ ! -x "$BIN/sipedge-bench" ] || [ ! -x "$BIN/sipedge" ]; then
        cmake -S "$SRC" -B "$BIN" -DCMAKE_BUILD_TYPE=Release >/dev/null
        cmake --build "$BIN" -j"$(nproc)" >/dev/null
    fi
fi
export BIN SRC
BENCH="$BIN/sipedge-bench"
RESULTS_DIR=${RESULTS_DIR:-$SRC/build/bench}
RESULTS="$RESULTS_DIR/results.jsonl"
mkdir -p "$RESULTS_DIR"
command -v jq >/dev/null || { echo "bench/run.sh: needs jq (scripts/install-deps.sh)" >&2; exit 2; }

# shellcheck source=../tests/e2e/lib.sh
source "$SRC/tests/e2e/lib.sh"
e2e_init "bench-$SCENARIO"
RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)-$$"
COMMIT=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)
REPEAT=${REPEAT:-$([ "$QUICK" = 1 ] && echo 1 || echo 3)}
LOG_LEVEL=${LOG_LEVEL:-warn}
KEEPALIVE_MS=${KEEPALIVE_MS:-5000}
export LOG_LEVEL KEEPALIVE_MS
# Every scenario is one source address (127.0.0.1) that mints new tokens on purpose (cold: one per
# REGISTER); the per-source verification budget (issue 12, docs/auth-cache.md) would refuse them.
export SIPEDGE_AUTH_SOURCE_BUDGET_RATE=${SIPEDGE_AUTH_SOURCE_BUDGET_RATE:-0}
# The worker's budget (all sources) would cap `cold`'s verifications too: capacity is measured here.
export SIPEDGE_AUTH_WORKER_BUDGET_RATE=${SIPEDGE_AUTH_WORKER_BUDGET_RATE:-0}

log() { printf '[bench %s] %s\n' "$SCENARIO" "$*" >&2; }

# The RSA signing key for `cold` (the ES256 one, $JWT_KEY, comes from e2e_init).
RS_KEY="$BIN/e2e/jwt-rs.key"
if [ ! -f "$RS_KEY.pub.pem" ]; then
    "$TOKEN" keygen --type rsa --out "$RS_KEY" >/dev/null
fi

# bench_start: redis, one UCM stand-in, the edge (keys es1 and rs1), ready. Sets EDGE_PID UCM_PID.
bench_start() {
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    REDIS_PID=
    if [ -n "${NO_REDIS:-}" ]; then
        REDIS_PORT= # the edge then runs with its in-process (L1) cache only
    else
        REDIS_PORT=$(free_port)
        start_redis "$REDIS_PORT"
    fi
    UCM_PORT=$(free_port)
    start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
    UCM_PID=$UCM_PID_ucm1
    NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
    EDGE_PORT=$(free_port)
    ADMIN_PORT=$(free_port)
    write_edge_config "$T/edge.yaml"
    sed -i "s#^    - {file: $JWT_KEY.pub.pem, kid: es1}#&\n    - {file: $RS_KEY.pub.pem, kid: rs1}#" \
        "$T/edge.yaml"
    sed -i "s#idle_timeout_ms: 60000#idle_timeout_ms: 600000#" "$T/edge.yaml"
    "$EDGE" "$T/edge.yaml" >"$T/edge.out" 2>"$T/edge.log" &
    EDGE_PID=$!
    E2E_PIDS+=("$EDGE_PID")
    wait_port "$EDGE_PORT" || { cat "$T/edge.log" >&2; return 1; }
    wait_port "$ADMIN_PORT"
    wait_ready 10
    log "edge pid $EDGE_PID on 127.0.0.1:$EDGE_PORT (workers ${WORKERS:-2}), ucmsim pid $UCM_PID, redis :${REDIS_PORT:-none}"
}

# bench_stop: stop the edge (SIGTERM, must exit 0), the UCM stand-in and redis started by
# bench_start, so that the next bench_start measures a fresh edge.
bench_stop() {
    local p
    stop_edge
    for p in "$UCM_PID" ${REDIS_PID:+"$REDIS_PID"}; do
        kill "$p" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
}

# run_bench LABEL ARGS...: one sipedge-bench run; its JSON line (with scenario fields) is appended
# to $RESULTS and to $T/runs.jsonl. Returns 0 even when the run saw errors (the JSON says so).
run_bench() {
    local label=$1 line rc=0
    shift
    # BENCH_PREFIX: a command the generator runs under (e.g. "nice -n 19"), split on spaces
    # shellcheck disable=SC2086
    line=$(${BENCH_PREFIX:-} "$BENCH" --port "$EDGE_PORT" --ca "$PKI/ca.crt" \
        --edge-pid "$EDGE_PID" --ucm-pid "$UCM_PID" --label "$label" --json --quiet "$@" 2>>"$T/bench.err") || rc=$?
    line=$(printf '%s\n' "$line" | grep '^{' | tail -n 1 || true)
    if [ -z "$line" ]; then
        log "run $label produced no result (exit $rc); see $T/bench.err"
        tail -n 5 "$T/bench.err" >&2 || true
        return 0
    fi
    line=$(jq -c --arg s "$SCENARIO" --arg id "$RUN_ID" --arg c "$COMMIT" --argjson q "$QUICK" \
        --arg ts "$(date -u +%FT%TZ)" --argjson w "${WORKERS:-2}" --arg cpu "$CPU_MODEL" \
        --argjson n "$(nproc)" \
        '{scenario: $s, run_id: $id, ts: $ts, commit: $c, quick: ($q == 1), edge_workers: $w,
          nproc: $n, cpu: $cpu, exit: '"$rc"'} + .' <<<"$line")
    printf '%s\n' "$line" >>"$RESULTS"
    printf '%s\n' "$line" >>"$T/runs.jsonl"
}

CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
: >"$T/runs.jsonl"

# median over the runs of one label: med LABEL JQ_EXPR
med() {
    jq -s --arg l "$1" "[.[] | select(.label == \$l) | ($2)] | sort |
        if length == 0 then null else .[(length - 1) / 2 | floor] end" "$T/runs.jsonl"
}

# table LABEL...: one row per label, medians over its repeats.
table_header() {
    printf '%-14s %9s %9s %6s %7s %7s %8s %8s %9s %9s %9s\n' label offered achieved errors \
        p50_us p90_us p99_us p99.9_us edge_us/req gen_us/req ucm_us/req
}
table_row() {
    local l=$1
    printf '%-14s %9s %9s %6s %7s %7s %8s %8s %9s %9s %9s\n' "$l" \
        "$(med "$l" '.rate | floor')" "$(med "$l" '.throughput | floor')" "$(med "$l" '.errors')" \
        "$(med "$l" '.latency_us.register.p50')" "$(med "$l" '.latency_us.register.p90')" \
        "$(med "$l" '.latency_us.register.p99')" "$(med "$l" '.latency_us.register.p999')" \
        "$(med "$l" '.edge.cpu_us_per_unit * 100 | round / 100')" \
        "$(med "$l" '.gen_cpu_us_per_unit * 100 | round / 100')" \
        "$(med "$l" '.ucmsim.cpu_us_per_unit * 100 | round / 100')"
}

# sustained LABEL RATE: every repeat without errors and within 3% of the offered rate.
sustained() {
    jq -se --arg l "$1" --argjson r "$2" \
        '[.[] | select(.label == $l)] | length > 0 and
         all(.errors == 0 and .setup_error_causes.timeout == 0 and .throughput >= 0.97 * $r)' \
        "$T/runs.jsonl" >/dev/null
}

scenario_steady() {
    local conns=200 dur=3 rates
    rates=${RATES:-500 1000 2000 4000 8000 12000 16000 24000 32000}
    if [ "$QUICK" = 1 ]; then
        conns=20 dur=1 rates=${RATES:-500 1000}
    fi
    bench_start
    local common=(--key "$JWT_KEY" --kid es1 --conns "$conns" --users "$conns" --duration "$dur"
        --timeout-ms 2000 --max-requests 200000)
    local max=0 labels=() r i
    for r in $rates; do
        for i in $(seq 1 "$REPEAT"); do
            run_bench "rate-$r" --rate "$r" "${common[@]}"
        done
        labels+=("rate-$r")
        if sustained "rate-$r" "$r"; then
            max=$r
        else
            log "rate $r/s not sustained: stopping the ladder"
            break
        fi
    done
    local closed=64
    [ "$QUICK" = 1 ] && closed=8
    for i in $(seq 1 "$REPEAT"); do
        run_bench "closed-$closed" --concurrency "$closed" --key "$JWT_KEY" --kid es1 \
            --duration "$dur" --timeout-ms 2000 --max-requests 200000
    done
    if [ "$max" -gt 0 ] && [ "$QUICK" = 0 ]; then
        for f in 50 90; do
            r=$((max * f / 100))
            for i in $(seq 1 "$REPEAT"); do
                run_bench "sat$f-$r" --rate "$r" "${common[@]}"
            done
            labels+=("sat$f-$r")
        done
    fi
    local half=$((max / 2))
    if [ "$half" -gt 0 ] && [ "$QUICK" = 0 ]; then
        # the same load straight to the UCM stand-in (mutual TLS, our client certificate): the
        # latency without the edge, to tell what the edge adds
        for i in $(seq 1 "$REPEAT"); do
            run_bench "direct-$half" --rate "$half" "${common[@]}" --direct --port "$UCM_PORT" \
                --ca "$PKI/ucm-ca.crt" --server-name ucm1.example.test \
                --tls-cert "$PKI/client.crt" --tls-key "$PKI/client.key"
        done
    fi
    echo
    echo "== steady: warm cache (one token per user), ES256, $conns TLS connections, ${dur}s per run, medians of $REPEAT"
    table_header
    for l in "${labels[@]}"; do table_row "$l"; done
    table_row "closed-$closed"
    if [ "$half" -gt 0 ] && [ "$QUICK" = 0 ]; then
        table_row "direct-$half"
        echo "(direct-$half: the same load sent straight to sipedge-ucmsim, no edge)"
        local pe pd
        pe=$(med "sat50-$half" '.latency_us.register.p99')
        pd=$(med "direct-$half" '.latency_us.register.p99')
        echo "p99 added by the edge at 50% of the max sustained rate ($half/s): $pe - $pd = $((pe - pd)) µs"
    fi
    echo "max sustained rate without errors (ladder step): ${max}/s"
    echo "closed-loop throughput ($closed in flight): $(med "closed-$closed" '.throughput | floor')/s"
}

# openssl_verify ALG: verifications per second by `openssl speed` on this machine now
# (rsa2048 | ecdsap256), for the cold-cache comparison.
openssl_verify() {
    openssl speed -seconds 1 "$1" 2>/dev/null | awk -v a="$1" '
        a == "rsa2048" && $1 == "rsa" && $2 == "2048" { print $(NF) }
        a == "ecdsap256" && $1 == "256" && $4 ~ /nistp256/ { print $(NF) }' | tail -n 1
}

# cold_pair TAG PREFIX: one warm and one cold run of $alg at $r/s (run $i; $key $kid $conns $dur),
# labelled warm$TAG-ALG-R / cold$TAG-ALG-R; the cold run's fresh users start with PREFIX.
cold_pair() {
    local common=(--rate "$r" --key "$key" --kid "$kid" --conns "$conns" --duration "$dur"
        --timeout-ms 3000)
    run_bench "warm$1-$alg-$r" "${common[@]}"
    run_bench "cold$1-$alg-$r" "${common[@]}" --fresh-tokens 1 --user-prefix "$2$i$r$alg"
}

scenario_cold() {
    local conns=50 dur=3 rates="500 1000" alg key kid r i vps
    if [ "$QUICK" = 1 ]; then
        conns=10 dur=1 rates=200
    fi
    bench_start
    local labels=()
    for alg in ES256 RS256; do
        if [ "$alg" = ES256 ]; then key=$JWT_KEY kid=es1; else key=$RS_KEY kid=rs1; fi
        for r in $rates; do
            for i in $(seq 1 "$REPEAT"); do cold_pair "" c; done
            labels+=("warm-$alg-$r" "cold-$alg-$r")
        done
    done
    # the same without Redis: the edge's L1 cache only, so a new token costs the check alone
    bench_stop
    NO_REDIS=1 bench_start
    r=${rates##* }
    for alg in ES256 RS256; do
        if [ "$alg" = ES256 ]; then key=$JWT_KEY kid=es1; else key=$RS_KEY kid=rs1; fi
        for i in $(seq 1 "$REPEAT"); do cold_pair -l1 d; done
        labels+=("warm-l1-$alg-$r" "cold-l1-$alg-$r")
    done
    echo
    echo "== cold: every token new (L1 and Redis miss, one signature check each) vs warm, $conns TLS connections, ${dur}s per run, medians of $REPEAT"
    table_header
    for l in "${labels[@]}"; do table_row "$l"; done
    local es rs
    es=$(openssl_verify ecdsap256)
    rs=$(openssl_verify rsa2048)
    echo "openssl speed now: ECDSA P-256 verify ${es:-?}/s = $(awk -v v="${es:-0}" 'BEGIN { if (v > 0) printf "%.1f", 1e6 / v; else print "?" }') µs;" \
        "RSA-2048 verify ${rs:-?}/s = $(awk -v v="${rs:-0}" 'BEGIN { if (v > 0) printf "%.1f", 1e6 / v; else print "?" }') µs"
    local w c pre
    for alg in ES256 RS256; do
        for r in $rates l1-${rates##* }; do
            pre=; [ "${r#l1-}" != "$r" ] && pre=l1- && r=${r#l1-}
            w=$(med "warm-$pre$alg-$r" '.edge.cpu_us_per_unit')
            c=$(med "cold-$pre$alg-$r" '.edge.cpu_us_per_unit')
            awk -v a="$alg" -v r="$r" -v w="$w" -v c="$c" -v m="${pre:+ (no Redis)}" 'BEGIN {
                printf "%s at %d/s%s: edge CPU per REGISTER cold %.1f µs, warm %.1f µs, cold - warm %.1f µs\n", a, r, m, c, w, c - w }'
        done
    done
    jq -nc --arg id "$RUN_ID" --arg es "${es:-0}" --arg rs "${rs:-0}" \
        '{scenario: "cold", run_id: $id, label: "openssl-speed", ecdsap256_verify_per_s: ($es | tonumber),
          rsa2048_verify_per_s: ($rs | tonumber)}' >>"$RESULTS"
}

scenario_storm() {
    local count=2000 conc=${STORM_CONC:-32} i k extra
    local kinds=${STORM_KINDS:-full resume full-1.2 resume-1.2}
    if [ "$QUICK" = 1 ]; then
        count=100 conc=8
    fi
    count=${STORM_CONNS:-$count}
    bench_start
    for i in $(seq 1 "$REPEAT"); do
        for k in $kinds; do
            extra=()
            case "$k" in *resume*) extra+=(--resume) ;; *) extra+=(--seen-tokens) ;; esac
            case "$k" in *1.2) extra+=(--tls-max 1.2) ;; esac
            run_bench "storm-$k" --storm "$count" --concurrency "$conc" --direct "${extra[@]}" \
                --key "$JWT_KEY" --kid es1 --users 1000 --duration 60 --timeout-ms 5000
        done
    done
    echo
    echo "== storm: $count new TLS connections ($conc at a time), each TLS handshake (P-256 server key; TLS 1.3 unless -1.2) + one REGISTER with a token the edge has seen (returning clients) + close; medians of $REPEAT"
    printf '%-16s %8s %7s %8s %10s %12s %14s %10s %9s %9s\n' label conns errors resumed conns/s \
        edge_us/conn hs/edge_cpu_s gen_us/conn p50_us p99_us
    local l
    for k in $kinds; do
        l=storm-$k
        printf '%-16s %8s %7s %8s %10s %12s %14s %10s %9s %9s\n' "$l" "$(med "$l" '.ok')" \
            "$(med "$l" '.errors')" "$(med "$l" '.resumed')" "$(med "$l" '.throughput | floor')" \
            "$(med "$l" '.edge.cpu_us_per_unit | round')" \
            "$(med "$l" 'if .edge.cpu_us_per_unit > 0 then 1e6 / .edge.cpu_us_per_unit | floor else 0 end')" \
            "$(med "$l" '.gen_cpu_us_per_unit | round')" "$(med "$l" '.latency_us.setup.p50')" \
            "$(med "$l" '.latency_us.setup.p99')"
    done
}

scenario_idle() {
    local sizes hold=${IDLE_HOLD:-10} size lim
    sizes=${IDLE_CONNS:-10000 18000 50000 100000}
    if [ "$QUICK" = 1 ]; then
        sizes=500 hold=2
    fi
    lim=$(ulimit -Hn)
    for size in $sizes; do
        if [ "$lim" != unlimited ] && [ $((size + 1024)) -gt "$lim" ]; then
            log "skipping $size idle connections: the hard RLIMIT_NOFILE here is $lim (each side needs one fd per connection)"
            continue
        fi
        bench_start
        run_bench "idle-$size" --idle "$size" --hold "$hold" --key "$JWT_KEY" --kid es1 \
            --setup-concurrency 128 --timeout-ms 10000 --setup-timeout 300
        bench_stop
    done
    echo
    echo "== idle: N registered TLS connections held ${hold}s; edge memory from /proc/<pid>/status VmRSS and smaps_rollup Pss, before the connections vs at the end of the hold"
    printf '%-12s %8s %7s %10s %10s %12s %12s %10s\n' label held errors rss_kib pss_kib \
        rss_kib/conn pss_kib/conn setup_s
    jq -r 'select(.mode == "idle") | [.label, .setup_ok, .errors, .edge.rss_kib, .edge.pss_kib,
        (.edge.rss_kib_per_conn * 100 | round / 100), (.edge.pss_kib_per_conn * 100 | round / 100),
        .setup_s] | @tsv' "$T/runs.jsonl" |
        while IFS=$'\t' read -r l h e r p rc pc s; do
            printf '%-12s %8s %7s %10s %10s %12s %12s %10s\n' "$l" "$h" "$e" "$r" "$p" "$rc" "$pc" "$s"
        done
}

# keepalive: KA_CONNS registered TLS clients held KA_HOLD seconds, three times on a fresh edge:
# silent, each sending a CRLFCRLF keep-alive every KA_MS (RFC 5626; the edge answers CRLF), and
# each sending an OPTIONS to the edge every KA_MS (answered 200). Edge CPU over the hold (schedstat)
# less the silent run's is the cost of the pings: per ping, and per client per hour at that period.
scenario_keepalive() {
    local conns=${KA_CONNS:-18000} hold=${KA_HOLD:-60} ka=${KA_MS:-30000} lim kind
    if [ "$QUICK" = 1 ]; then
        conns=500 hold=3 ka=500
    fi
    lim=$(ulimit -Hn)
    if [ "$lim" != unlimited ] && [ $((conns + 1024)) -gt "$lim" ]; then
        conns=$((lim - 1024))
        log "KA_CONNS lowered to $conns: the hard RLIMIT_NOFILE here is $lim"
    fi
    for kind in silent crlf options; do
        local extra=()
        [ "$kind" = crlf ] && extra=(--keepalive-ms "$ka")
        [ "$kind" = options ] && extra=(--ping-ms "$ka")
        bench_start
        run_bench "ka-$kind" --idle "$conns" --hold "$hold" --key "$JWT_KEY" --kid es1 \
            --setup-concurrency 128 --timeout-ms 10000 --setup-timeout 300 "${extra[@]}"
        bench_stop
    done
    echo
    echo "== keepalive: $conns registered TLS clients held ${hold}s: silent, a CRLFCRLF keep-alive each every ${ka} ms, an OPTIONS each every ${ka} ms; edge CPU over the hold (schedstat), less the silent run's for the per-ping figure"
    printf '%-16s %7s %6s %9s %9s %12s %13s %17s %12s\n' label held errors pings answered \
        edge_cpu_ms us/ping ms/client/hour rss_kib/conn
    jq -rs '[.[] | select(.mode == "idle" and (.label | startswith("ka-")))] |
        (map(select(.label == "ka-silent")) | .[0].edge.cpu_us // 0) as $base |
        .[] | (.keepalives.sent + .keepalives.ping_sent) as $n |
        (.keepalives.pongs + .keepalives.ping_ok) as $a |
        [.label, .setup_ok, .errors, $n, $a, (.edge.cpu_us / 1000 | round),
         (if $n > 0 then ((.edge.cpu_us - $base) / $n * 10 | round / 10) else "-" end),
         (.edge.cpu_us / .setup_ok / .window_s * 3600 / 1000 * 100 | round / 100),
         (.edge.rss_kib_per_conn * 100 | round / 100)] | @tsv' "$T/runs.jsonl" |
        while IFS=$'\t' read -r l h e n a c u m r; do
            printf '%-16s %7s %6s %9s %9s %12s %13s %17s %12s\n' "$l" "$h" "$e" "$n" "$a" "$c" "$u" "$m" "$r"
        done
}

# reconnect: RC_CONNS clients reconnect at once (a pod restart or a network blip): one storm of
# new TLS connections all started together (--concurrency = their number), each a handshake and a
# REGISTER with its token, while 200 already-connected clients re-register at RC_RATE/s (their
# latency measured over RC_SECONDS, the storm started 1 s into it). Full handshakes (after a pod
# restart: the old pod's tickets are no use elsewhere) and resumed ones (a blip: the same pod's
# tickets; the generator first makes a session per client, which the connected clients' window
# also covers). A first run of the connected clients alone gives their p99 without a storm.
# Tokens: `full` and `resume` clients' tokens are new to the edge at the storm unless warmed
# (resume: each client's warm-up connection REGISTERs it), so a full storm verifies every token
# (a restart with no Redis, or Redis lost too); `full-seen` REGISTERs every token once before the
# storm (unmeasured), as after a restart whose Redis kept the verified tokens or after a blip.
# RC_KINDS picks the storms (default: full full-seen resume). Beside each storm a newcomer from
# 127.0.0.5 makes one TLS connection at a time (bench/handshake_probe.py) for RC_PROBE_SECONDS
# (default 10): how long a client from another address waits for its handshake meanwhile.
# RC_SOURCES spreads the storm's clients over that many addresses (127.16-17.x.y; default: all
# from 127.0.0.1, as behind one NAT), e.g. 18000: each client from an address of its own.
# RC_RETRY_MS makes the storm's clients try again, 0.5-1.5 x that many ms after a failed attempt,
# until they have their 200 or the storm's RC_SECONDS end (as phones do); e.g. with
# HANDSHAKE_TIMEOUT_MS=5000 (the production default, instead of the bench's 30 s).
scenario_reconnect() {
    local n=${RC_CONNS:-18000} rate=${RC_RATE:-200} secs=${RC_SECONDS:-60} lim kind bg probe
    local kinds=${RC_KINDS:-full full-seen resume}
    if [ "$QUICK" = 1 ]; then
        n=500 secs=8
    fi
    lim=$(ulimit -Hn)
    if [ "$lim" != unlimited ] && [ $((n + 1500)) -gt "$lim" ]; then
        n=$((lim - 1500))
        log "RC_CONNS lowered to $n: the hard RLIMIT_NOFILE here is $lim"
    fi
    local connected=(--rate "$rate" --conns 200 --users 200 --user-prefix connected
        --key "$JWT_KEY" --kid es1 --timeout-ms 10000)
    # The generator verifies every server chain (≈ 1.2 ms of CPU each, more than the edge's side)
    # on the same two vCPUs: a storm of thousands lasts longer than the e2e configs' 3 s handshake
    # deadline for reasons that are the generator's, so the edge gets the production-like 30 s.
    HANDSHAKE_TIMEOUT_MS=${HANDSHAKE_TIMEOUT_MS:-30000}
    bench_start
    run_bench "rc-alone" "${connected[@]}" --duration 10
    turns() { # the workers' loop turns so far: all, at most 10 ms, at most 100 ms
        curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '
            /^sipedge_worker_turn_duration_seconds_count/ { n = $NF }
            /^sipedge_worker_turn_duration_seconds_bucket\{le="0.01"\}/ { a = $NF }
            /^sipedge_worker_turn_duration_seconds_bucket\{le="0.1"\}/ { b = $NF }
            END { print n + 0, a + 0, b + 0 }'
    }
    expired() { # ClientHellos the edge cut at the deadline unanswered, and handshake timeouts
        curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '
            /^sipedge_tls_client_hellos_expired_total/ { e = $NF }
            /^sipedge_tls_handshake_failures_total\{side="client",cause="timeout"/ { t = $NF }
            END { print e + 0, t + 0 }'
    }
    tcpext() { # the host's TcpExt counters named: ListenOverflows TCPSynRetrans
        awk -v want="$*" 'BEGIN { n = split(want, w, " ") }
            /^TcpExt:/ { if (!h) { for (i = 2; i <= NF; i++) col[$i] = i; h = 1; next }
                         for (k = 1; k <= n; k++) printf "%s ", $(col[w[k]]); print "" }' /proc/net/netstat
    }
    rq() { # a process's threads summed (schedstat): ns on a CPU, ns runnable but waiting, runs
        cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ c += $1; w += $2; n += $3 } END { print c + 0, w + 0, n + 0 }'
    }
    rq_delta() { # rq_delta NAME BEFORE... AFTER...: the wait for a CPU over a storm
        awk -v name="$1" -v c0="$2" -v w0="$3" -v n0="$4" -v c1="$5" -v w1="$6" -v n1="$7" 'BEGIN {
            n = n1 - n0; if (n < 1) n = 1
            printf "%s %.2f s on a CPU, %.2f s runnable but waiting for one (%.0f µs per run, %d runs)",
                name, (c1 - c0) / 1e9, (w1 - w0) / 1e9, (w1 - w0) / n / 1e3, n1 - n0 }'
    }
    local -A long_turns syn_drops rq_waits hs_cuts
    for kind in $kinds; do
        local t0 t1 n0 n1 e0 e1 u0 u1 x0 x1
        read -r -a t0 <<<"$(turns)"
        read -r -a x0 <<<"$(expired)"
        read -r -a e0 <<<"$(rq "$EDGE_PID")"
        read -r -a u0 <<<"$(rq "$UCM_PID")"
        read -r -a n0 <<<"$(tcpext ListenOverflows TCPSynRetrans)"
        local extra=()
        case "$kind" in
        resume) extra=(--resume) ;;
        full-seen) extra=(--seen-tokens) ;;
        full) ;;
        *) log "RC_KINDS: unknown storm $kind (full, full-seen, resume)"; return 2 ;;
        esac
        rm -f "$T/connected.ready"
        run_bench "rc-connected-$kind" "${connected[@]}" --duration "$secs" \
            --ready-file "$T/connected.ready" &
        bg=$!
        for _ in $(seq 1 600); do [ -f "$T/connected.ready" ] && break; sleep 0.1; done
        sleep 1
        # a newcomer from another address (the storm's clients are all 127.0.0.1): its handshakes
        # over the storm's first RC_PROBE_SECONDS
        python3 "$SRC/bench/handshake_probe.py" --port "$EDGE_PORT" --ca "$PKI/ca.crt" \
            --source 127.0.0.5 --duration "${RC_PROBE_SECONDS:-10}" >"$T/probe-$kind.json" 2>&1 &
        probe=$!
        BENCH_PREFIX="nice -n ${RC_STORM_NICE:-19}" \
            run_bench "rc-storm-$kind" --storm "$n" --concurrency "$n" --direct "${extra[@]}" \
            --key "$JWT_KEY" --kid es1 --users "$n" --duration "$secs" --timeout-ms 60000 \
            --setup-concurrency 256 --setup-timeout 300 --threads 2 \
            ${RC_SOURCES:+--sources "$RC_SOURCES"} ${RC_RETRY_MS:+--retry-ms "$RC_RETRY_MS"}
        wait "$bg" || true
        wait "$probe" || true
        read -r -a t1 <<<"$(turns)"
        read -r -a x1 <<<"$(expired)"
        read -r -a e1 <<<"$(rq "$EDGE_PID")"
        read -r -a u1 <<<"$(rq "$UCM_PID")"
        read -r -a n1 <<<"$(tcpext ListenOverflows TCPSynRetrans)"
        rq_waits[$kind]="$(rq_delta edge "${e0[@]}" "${e1[@]}"); $(rq_delta "UCM stand-in" "${u0[@]}" "${u1[@]}")"
        syn_drops[$kind]="$((n1[0] - n0[0])) accept-queue overflows, $((n1[1] - n0[1])) SYN retransmissions"
        hs_cuts[$kind]="$((x1[1] - x0[1])) handshakes cut at the deadline ($HANDSHAKE_TIMEOUT_MS ms), of which $((x1[0] - x0[0])) ClientHellos never answered"
        long_turns[$kind]="$((t1[0] - t0[0])) turns, $((t1[0] - t1[1] - t0[0] + t0[1])) over 10 ms, $((t1[0] - t1[2] - t0[0] + t0[2])) over 100 ms"
    done
    bench_stop
    echo
    echo "== reconnect: $n clients reconnect at once (TCP connect + TLS 1.3 handshake, P-256 server key, + REGISTER with the token), while 200 connected clients re-register at $rate/s"
    printf '%-18s %7s %7s %8s %12s %12s %12s %12s %16s\n' storm conns errors resumed \
        all_200_s edge_us/conn conn_p50_ms conn_p99_ms connected_p99_ms
    local a
    a=$(jq -rs '([.[] | select(.label == "rc-alone")][0].latency_us.register.p99 // 0) / 1000 * 10 |
        round / 10' "$T/runs.jsonl")
    for kind in $kinds; do
        jq -rs --arg k "$kind" '([.[] | select(.label == "rc-connected-" + $k)][0]) as $c |
            .[] | select(.label == "rc-storm-" + $k) |
            [.label, .ok, .errors, .resumed, (.window_s * 100 | round / 100),
             (.edge.cpu_us_per_unit | round), (.latency_us.setup.p50 / 1000 | round),
             (.latency_us.setup.p99 / 1000 | round),
             (($c.latency_us.register.p99 // 0) / 1000 * 10 | round / 10)] | @tsv' \
            "$T/runs.jsonl" | while IFS=$'\t' read -r l c e r w u p5 p9 cp; do
            printf '%-18s %7s %7s %8s %12s %12s %12s %12s %16s\n' "$l" "$c" "$e" "$r" "$w" "$u" \
                "$p5" "$p9" "$cp"
        done
    done
    echo "(the connected clients alone, no storm: p99 $a ms)"
    [ -z "${RC_RETRY_MS:-}" ] || for kind in $kinds; do
        echo "the $kind storm's clients try again after a failed attempt (RC_RETRY_MS=$RC_RETRY_MS, ±50 %): $(jq -rs --arg k "$kind" '.[] | select(.label == "rc-storm-" + $k) | "\(.retries) attempts tried again, \(.ok) of \(.storm) registered"' "$T/runs.jsonl")"
    done
    for kind in $kinds; do
        echo "edge worker loop turns during the $kind storm and the connected clients' window: ${long_turns[$kind]}"
        echo "the host's TCP during the $kind storm (nstat TcpExt, all sockets): ${syn_drops[$kind]}"
        echo "the edge during the $kind storm: ${hs_cuts[$kind]}"
        echo "the CPU during the $kind storm and the connected clients' window (schedstat, all threads): ${rq_waits[$kind]}"
        echo "a newcomer from 127.0.0.5 during the $kind storm's first ${RC_PROBE_SECONDS:-10} s, one TLS 1.3 handshake at a time: $(jq -c . "$T/probe-$kind.json" 2>/dev/null || cat "$T/probe-$kind.json")"
    done
}

# profile: one open-loop run at PROFILE_RATE (default 2000/s, warm cache, 200 connections,
# PROFILE_SECONDS long) with `perf stat` and `perf record -g` attached to the edge; prints the
# edge's CPU per REGISTER, context switches per REGISTER and the top of the profile. With
# PROFILE_STORM (full, resume, full-1.2 or resume-1.2) the load is a storm of PROFILE_CONNS (2000)
# new connections instead, and the figures are per connection.
scenario_profile() {
    local rate=${PROFILE_RATE:-2000} secs=${PROFILE_SECONDS:-5} conns=${PROFILE_CONNS:-200}
    local storm=${PROFILE_STORM:-} label load=()
    command -v perf >/dev/null || { log "needs perf"; return 1; }
    bench_start
    if [ -n "$storm" ]; then
        # PROFILE_STORM=full|resume|full-1.2|resume-1.2: a storm of PROFILE_CONNS new connections
        # (STORM_CONC, 32, at a time, each handshake + REGISTER + close, as in `storm`; full kinds
        # with tokens the edge has seen) instead of steady load
        label="profile-storm-$storm" conns=${PROFILE_CONNS:-2000}
        load=(--storm "$conns" --concurrency "${STORM_CONC:-32}" --direct --users 1000 --duration 60)
        case "$storm" in *resume*) load+=(--resume) ;; *) load+=(--seen-tokens) ;; esac
        case "$storm" in *1.2) load+=(--tls-max 1.2) ;; esac
        secs=30
    else
        label="profile-$rate"
        load=(--rate "$rate" --conns "$conns" --users "$conns" --duration "$secs")
        run_bench "warmup" --rate "$rate" --key "$JWT_KEY" --kid es1 --conns "$conns" \
            --users "$conns" --duration 1 --timeout-ms 2000
    fi
    local ev=task-clock,context-switches,cpu-migrations,raw_syscalls:sys_enter
    ev+=,io_uring:io_uring_submit_req,io_uring:io_uring_complete,ipi:ipi_send_cpu
    perf stat -e "${PROFILE_EVENTS:-$ev}" -p "$EDGE_PID" -o "$T/perf.stat" &
    local stat_pid=$!
    perf record -F 2000 -g -p "$EDGE_PID" -o "$T/perf.data" >/dev/null 2>&1 &
    local rec_pid=$!
    sleep 0.5
    run_bench "$label" "${load[@]}" --key "$JWT_KEY" --kid es1 --timeout-ms 5000
    sleep 0.5
    kill -INT "$stat_pid" "$rec_pid" 2>/dev/null || true
    wait "$stat_pid" "$rec_pid" || true
    if [ -n "$storm" ]; then
        echo "== profile of a $storm storm: $conns connections"
        printf 'edge CPU per connection %s µs, generator %s µs, %s connections ok\n' \
            "$(med "$label" '.edge.cpu_us_per_unit | round')" \
            "$(med "$label" '.gen_cpu_us_per_unit | round')" "$(med "$label" '.ok')"
    else
        echo "== profile at $rate REGISTER/s, $conns connections, ${secs}s"
        table_header
        table_row "$label"
    fi
    local n
    n=$(med "$label" '.ok')
    # counts over the perf window (which also covers half a second before and after the run)
    awk -v n="$n" '$2 ~ /^(context-switches|cpu-migrations|raw_syscalls:sys_enter|io_uring:|ipi:)/ {
        gsub(",", "", $1); printf "%s per unit: %.2f\n", $2, $1 / n }' "$T/perf.stat"
    cat "$T/perf.stat"
    perf report -i "$T/perf.data" --no-children --sort dso,sym --stdio 2>/dev/null |
        grep -v '^#' | grep '%' | head -n "${PROFILE_TOP:-40}"
    echo "(perf data: $T/perf.data)"
}

# ---- admission (issue 15): the edge short of CPU, offered more than it can serve ----
# The edge gets a CPU quota (cgroup v1 cpu controller, or v2 cpu.max) of ADM_CPU % of one core
# over each measured window only (set when sipedge-bench writes its ready file, after its clients
# have connected and registered; lifted after), so that the edge, not the generator or the UCM
# stand-in, is what runs out. 10 ms periods keep the throttling fine-grained.
CG_DIR=
cg_setup() {
    local base
    for base in /sys/fs/cgroup/cpu /sys/fs/cgroup; do
        if [ -f "$base/cpu.cfs_quota_us" ] && mkdir "$base/sipedge-bench-$$" 2>/dev/null; then
            CG_DIR=$base/sipedge-bench-$$ CG_KIND=v1
            echo 10000 >"$CG_DIR/cpu.cfs_period_us"
            return 0
        fi
        if [ -f "$base/cgroup.controllers" ] && grep -qw cpu "$base/cgroup.controllers" &&
            mkdir "$base/sipedge-bench-$$" 2>/dev/null; then
            CG_DIR=$base/sipedge-bench-$$ CG_KIND=v2
            return 0
        fi
    done
    log "no writable cpu cgroup controller: the edge runs without a quota (the machine's own limit)"
    return 1
}
cg_quota() { # cg_quota PERCENT|max
    [ -n "$CG_DIR" ] || return 0
    if [ "$CG_KIND" = v1 ]; then
        if [ "$1" = max ]; then echo -1; else echo $(($1 * 100)); fi >"$CG_DIR/cpu.cfs_quota_us"
    else
        if [ "$1" = max ]; then echo "max 10000"; else echo "$(($1 * 100)) 10000"; fi >"$CG_DIR/cpu.max"
    fi
}
cg_join() { [ -z "$CG_DIR" ] || echo "$1" >"$CG_DIR/cgroup.procs"; }
cg_remove() { [ -z "$CG_DIR" ] || rmdir "$CG_DIR" 2>/dev/null || true; }

# run_bench_quota LABEL ARGS...: run_bench with the edge's quota on over the measured window.
run_bench_quota() {
    local label=$1 rf="$T/ready.$1" pid i
    shift
    rm -f "$rf"
    run_bench "$label" --ready-file "$rf" "$@" &
    pid=$!
    for i in $(seq 1 3000); do # the clients' setup: at most 300 s
        [ -f "$rf" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
        : "$i"
    done
    cg_quota "$ADM_Q"
    wait "$pid" || true
    cg_quota max
}

scenario_admission() {
    local conns=${ADM_CONNS:-4000} secs=${ADM_SECS:-8} bounds=${ADM_BOUNDS:-0 200 50}
    local mults=${ADM_MULTS:-0.5 1 1.5 2} bound m rate cap
    ADM_Q=${ADM_CPU:-15}
    if [ "$QUICK" = 1 ]; then
        conns=500 secs=3 bounds="0 50" mults="1 2"
    fi
    trap 'e2e_cleanup; cg_remove' EXIT
    cg_setup || true
    local common=(--conns "$conns" --key "$JWT_KEY" --kid es1 --duration "$secs" --timeout-ms 5000
        --setup-concurrency 64 --setup-timeout 300 --threads 2 --retry-after)
    # capacity: closed loop, 512 clients each with a REGISTER in flight, admission off (more in
    # flight would meet upstream.max_pending's 503s)
    export SIPEDGE_LISTEN_LIMITS_MAX_QUEUE_DELAY_MS=0
    bench_start
    cg_join "$EDGE_PID"
    run_bench_quota "adm-capacity" --concurrency $((conns < 512 ? conns : 512)) "${common[@]}"
    bench_stop
    cap=$(med adm-capacity '.ok / .window_s | floor')
    log "capacity with ${ADM_Q}% of a core: $cap REGISTER/s"
    for bound in $bounds; do
        export SIPEDGE_LISTEN_LIMITS_MAX_QUEUE_DELAY_MS=$bound
        bench_start
        cg_join "$EDGE_PID"
        for m in $mults; do
            rate=$(awk -v c="$cap" -v m="$m" 'BEGIN { printf "%d", c * m }')
            run_bench_quota "adm-$bound-x$m" --rate "$rate" "${common[@]}"
        done
        curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" >"$T/metrics-$bound.txt" || true
        bench_stop
    done
    echo
    echo "== admission: the edge (${WORKERS:-2} workers) limited to ${ADM_Q}% of one core over each window ($([ -n "$CG_DIR" ] && echo "cgroup $CG_KIND" || echo "no cgroup: NOT limited")), $conns TLS clients with one REGISTER in flight each, open loop at multiples of the capacity ($cap/s, closed loop), ${secs} s a step, one run; a client answered 503 waits its Retry-After (1-4 s) before its next REGISTER, as RFC 3261 asks, while the generator's schedule goes on"
    echo "   bound = listen.limits.max_queue_delay_ms (0: admission off); p50/p99 of the 200s from the scheduled send (sched: with the generator's backlog of REGISTERs waiting for a free client) and from the actual send (wire: what the edge and UCM add); other = timeouts, closed, other statuses, never sent"
    printf '%-6s %5s %8s %8s %7s %6s %10s %10s %9s %9s %6s\n' bound step offered 'good/s' '503/s' other \
        'sched_p50' 'sched_p99' 'wire_p50' 'wire_p99' 'edge%'
    jq -rs '.[] | select(.label | startswith("adm-")) | select(.label != "adm-capacity") |
        (.window_s // 1) as $w | (.status["503"] // 0) as $shed |
        (.label | split("-")) as $l |
        [$l[1], $l[2], (.rate | floor), (.ok / $w | floor), ($shed / $w | floor),
         ((.errors // 0) - $shed), (.latency_us.register_200.p50 / 1000 | round),
         (.latency_us.register_200.p99 / 1000 | round),
         (.latency_us.register_200_wire.p50 / 1000 | round),
         (.latency_us.register_200_wire.p99 / 1000 | round),
         ((.edge.cpu_us // 0) / $w / 1e4 | floor)] | @tsv' "$T/runs.jsonl" |
        while IFS=$'\t' read -r b st o g sh ot p50 p99 w50 w99 c; do
            printf '%-6s %5s %8s %8s %7s %6s %10s %10s %9s %9s %6s\n' "$b" "$st" "$o" "$g" "$sh" "$ot" \
                "$p50 ms" "$p99 ms" "$w50 ms" "$w99 ms" "$c"
        done
    for bound in $bounds; do
        printf '   bound %s: sipedge_registers_shed_total %s\n' "$bound" \
            "$(grep '^sipedge_registers_shed_total' "$T/metrics-$bound.txt" | tr '\n' ' ')"
    done
}

scenario_"$SCENARIO"
echo "results appended to $RESULTS (run $RUN_ID); logs in $T"
total_ok=$(jq -s '[.[] | .ok + .setup_ok] | add // 0' "$T/runs.jsonl")
check "the generator got 200 OK answers ($total_ok)" test "$total_ok" -gt 0
stop_edge
if [ "$E2E_FAILS" -ne 0 ]; then
    exit 1
fi
