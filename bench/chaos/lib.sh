# SPDX-License-Identifier: MIT
# Helpers of the chaos scenarios (bench/chaos/<name>.sh, run by bench/chaos.sh; docs/RELIABILITY.md).
# A scenario starts its own stack on loopback (redis-server, one or two sipedge-ucmsim nodes, the
# edge: tests/e2e/lib.sh), then chaos_run FAULT_FN: a short rehearsal (the same load and fault,
# CHAOS_WARMUP seconds) so that what the edge sizes once (caches, pools, the pages of its
# preallocated tables that the fault touches first) is in the baseline (RSS, open fds), then the
# measured open-loop REGISTER load with sipedge-bench, FAULT_FN called while it runs (it places its
# actions with chaos_at), the invariants checked from the generator's and the edge's own
# accounting. chaos_done writes one result line to $CHAOS_RESULT. Source it; chaos_init NAME.
# Environment: BIN (build dir), SRC (source dir), CHAOS_QUICK (1: the short form, as CI runs it),
# CHAOS_RESULT (file for the result line; default stdout). Load knobs (defaults: quick / long):
# CHAOS_RATE (200 / 12000 REGISTER/s: about half of the stack's saturation, docs/RELIABILITY.md), CHAOS_CONNS (50 / 200), CHAOS_DURATION (2.5 / 60 s),
# CHAOS_WARMUP (the rehearsal: 1 / 10 s).
# shellcheck shell=bash
# shellcheck disable=SC2034 # variables read by tests/e2e/lib.sh (NODES, WORKERS...) and scenarios

# shellcheck source=tests/e2e/lib.sh
source "$SRC/tests/e2e/lib.sh"

CHAOS_REASONS=()  # failed invariants, each a short phrase
CHAOS_FIGURES=()  # "name=value" figures for the result line
CHAOS_ALLOWED=""  # statuses other than 200 that the fault explains (e.g. "408 503")
CHAOS_MAX_CLOSED=0 # requests whose connection the edge may close before answering (SIGTERM)

chaos_now_ms() { date +%s%3N; }
chaos_fail() { CHAOS_REASONS+=("$*"); e2e_log "FAIL: $*"; }
chaos_fig() { CHAOS_FIGURES+=("$*"); }

# chaos_init NAME: work dir $T ($BIN/e2e/chaos-NAME), PKI, load settings, cleanup at exit.
chaos_init() {
    CHAOS_NAME=$1
    e2e_init "chaos-$1"
    trap chaos_cleanup EXIT
    trap 'exit 143' TERM INT
    if [ "${CHAOS_QUICK:-0}" = 1 ]; then
        RATE=${CHAOS_RATE:-200} CONNS=${CHAOS_CONNS:-50} DURATION=${CHAOS_DURATION:-2.5}
        WARMUP=${CHAOS_WARMUP:-1}
    else
        RATE=${CHAOS_RATE:-12000} CONNS=${CHAOS_CONNS:-200} DURATION=${CHAOS_DURATION:-60}
        WARMUP=${CHAOS_WARMUP:-10}
    fi
    BENCH="$BIN/sipedge-bench"
    BENCH_TIMEOUT_MS=8000 # > Timer F: the edge must answer first (408 at worst)
    TIMER_F_MS=4000
    KEEPALIVE_MS=1000 # upstream OPTIONS ping; a dead or stalled node is seen within 3 s
    LOG_LEVEL=${LOG_LEVEL:-info}
    # Every client is 127.0.0.1: the per-source verification budget is for many sources.
    export SIPEDGE_AUTH_SOURCE_BUDGET_RATE=0
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# A stopped (SIGSTOP) process does not die of SIGTERM: wake every one we started first.
chaos_cleanup() {
    local p
    for p in "${E2E_PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
    e2e_cleanup
}

# chaos_redis PORT: redis-server as lib.sh's start_redis, with DEBUG allowed (redis_stall).
chaos_redis() {
    redis-server --bind 127.0.0.1 --port "$1" --save '' --appendonly no \
        --enable-debug-command local --logfile "$T/redis-$1.log" --dir "$T" &
    E2E_PIDS+=("$!")
    REDIS_PID=$!
    wait_port "$1"
}

# chaos_stack N_NODES: Redis, N_NODES (1 or 2) UCM stand-ins (ucm1 preferred, ucm2), the edge
# (2 workers, upstream pool 2 per node and worker), ready with every pool connection up.
chaos_stack() {
    N_NODES=$1
    REDIS_PORT=$(free_port)
    chaos_redis "$REDIS_PORT"
    UCM1_PORT=$(free_port)
    start_ucmsim ucm1 "$UCM1_PORT" --allow edge.example.test
    NODES="127.0.0.1 $UCM1_PORT ucm1.example.test"
    if [ "$N_NODES" -ge 2 ]; then
        UCM2_PORT=$(free_port)
        start_ucmsim ucm2 "$UCM2_PORT" --allow edge.example.test
        NODES="$NODES
127.0.0.1 $UCM2_PORT ucm2.example.test"
    fi
    WORKERS=2
    start_edge
    wait_ready 10
    chaos_pools_up 10 || { chaos_fail "upstream pools never came up"; chaos_done; }
}

# chaos_pools_up SECONDS: every node has its WORKERS x 2 pool connections up (/readyz).
chaos_pools_up() {
    local n=$(($1 * 10)) want=$((WORKERS * 2)) ready i
    for i in $(seq 0 "$n"); do
        [ "$i" -eq 0 ] || sleep 0.1
        ready=$(curl -s "http://127.0.0.1:$ADMIN_PORT/readyz" || true)
        [ "$(grep -c "^node .*conns_up=$want\b" <<<"$ready")" -lt "$N_NODES" ] || return 0
    done
    return 1
}

# chaos_settle SECONDS: no client connection, no open transaction, every pool up.
chaos_settle() {
    local n=$(($1 * 10))
    for _ in $(seq 1 "$n"); do
        if [ "$(metric '^sipedge_client_connections')" -eq 0 ] &&
            [ "$(metric '^sipedge_transactions')" -eq 0 ] && chaos_pools_up 0; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# chaos_sample: RSS (KiB) and open fds of the edge into SAMPLE_RSS and SAMPLE_FDS.
chaos_sample() {
    SAMPLE_RSS=$(awk '/^VmRSS:/ { print $2 }' "/proc/$EDGE_PID/status")
    SAMPLE_FDS=$(find "/proc/$EDGE_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
}

# chaos_fresh: the --fresh-tokens share for scenarios that need tokens the edge has not seen:
# 0.1 in the quick form; in the long one 5 new tokens a second whatever the rate (300 a minute:
# each takes an L1 slot, ~8 KB of RSS the first time its pages are used, so that filling the
# cache does not pass for a leak).
chaos_fresh() {
    if [ "${CHAOS_QUICK:-0}" = 1 ]; then
        echo 0.1
    else
        awk -v r="$RATE" 'BEGIN { printf "%.6f\n", 5 / r }'
    fi
}

# chaos_bench OUT DURATION [options]: sipedge-bench's open loop (RATE on CONNS connections) in
# the background, JSON report in OUT; BENCH_PID.
chaos_bench() {
    local out=$1 dur=$2
    shift 2
    "$BENCH" --port "$EDGE_PORT" --ca "$PKI/ca.crt" --key "$JWT_KEY" --kid es1 --rate "$RATE" \
        --conns "$CONNS" --duration "$dur" --timeout-ms "$BENCH_TIMEOUT_MS" --setup-timeout 30 \
        --json --quiet "$@" >"$out" 2>"$out.err" &
    BENCH_PID=$!
    E2E_PIDS+=("$BENCH_PID")
}

# chaos_load_start OUT SECONDS [options]: a load; returns once its measured window started
# (LOAD_T0_MS; LOAD_S its length, for chaos_at).
chaos_load_start() {
    LOAD_OUT=$1 LOAD_S=$2
    shift 2
    rm -f "$LOAD_OUT.ready"
    chaos_bench "$LOAD_OUT" "$LOAD_S" --ready-file "$LOAD_OUT.ready" "$@"
    for _ in $(seq 1 600); do
        [ -s "$LOAD_OUT.ready" ] && break
        kill -0 "$BENCH_PID" 2>/dev/null || break
        sleep 0.05
    done
    LOAD_T0_MS=$(chaos_now_ms)
    [ -s "$LOAD_OUT.ready" ] || { chaos_fail "the load never started ($LOAD_OUT.err)"; chaos_done; }
}

# chaos_run FAULT_FN [sipedge-bench options]: the rehearsal (WARMUP seconds of the same load with
# FAULT_FN; its figures are not checked), the baseline once its connections closed, then the
# measured load (DURATION seconds) with FAULT_FN again; LOAD_JSON holds its report.
# CHAOS_REHEARSE=0: the rehearsal without the fault (SIGTERM ends the edge).
chaos_run() {
    local fault=$1
    shift
    chaos_load_start "$T/warmup.json" "$WARMUP" "$@"
    [ "${CHAOS_REHEARSE:-1}" = 0 ] || "$fault"
    wait "$BENCH_PID" || true
    chaos_settle 20 || chaos_fail "the edge did not settle after the rehearsal"
    chaos_sample
    BASE_RSS=$SAMPLE_RSS BASE_FDS=$SAMPLE_FDS
    e2e_log "baseline: RSS $BASE_RSS KiB, $BASE_FDS fds"
    FAULT_MS=
    chaos_load_start "$T/load.json" "$DURATION" "$@"
    "$fault"
    chaos_load_wait
}

# chaos_at FRACTION: sleeps until FRACTION (0..1) of the load's duration has passed.
chaos_at() {
    local left
    left=$((LOAD_T0_MS + $(awk -v f="$1" -v d="$LOAD_S" 'BEGIN { printf "%d", f * d * 1000 }') - $(chaos_now_ms)))
    [ "$left" -le 0 ] || sleep "$(awk -v ms="$left" 'BEGIN { printf "%.3f", ms / 1000 }')"
}

# chaos_fault DESCRIPTION: logs the fault and keeps its time (FAULT_MS) for the recovery figure.
chaos_fault() {
    FAULT_MS=$(chaos_now_ms)
    e2e_log "fault at +$((FAULT_MS - LOAD_T0_MS)) ms: $*"
}

# chaos_load_wait: waits for the generator (bounded by its --duration and --timeout-ms) and
# reads its JSON report into LOAD_JSON.
chaos_load_wait() {
    wait "$BENCH_PID" || true
    LOAD_JSON=$(grep '^{' "$LOAD_OUT" | tail -n 1 || true)
    [ -n "$LOAD_JSON" ] || { chaos_fail "no report from sipedge-bench ($LOAD_OUT.err)"; chaos_done; }
}

jload() { jq -r "$1" <<<"$LOAD_JSON"; }

# chaos_check_load: the generator's invariants. Every measured REGISTER ended with exactly one
# final response (no timeout, none left pending, no duplicate; none lost to a close beyond
# CHAOS_MAX_CLOSED), every status 200 or in CHAOS_ALLOWED (never 407/403: every token is valid),
# no connection lost or refused unless CHAOS_MAX_CLOSED says the fault closes them.
chaos_check_load() {
    local sent final timeout closed pending dup ok other code n conn_errs
    if [ "$(jload '.ended.final // "none"')" = none ]; then
        chaos_fail "sipedge-bench reports no .ended counts: rebuild it"
        return
    fi
    sent=$(jload .sent) final=$(jload .ended.final) timeout=$(jload .ended.timeout)
    closed=$(jload .ended.closed) pending=$(jload .ended.pending) dup=$(jload .ended.dup_final)
    ok=$(jload '.status["200"] // 0')
    [ "$sent" -gt 0 ] || chaos_fail "no REGISTER was sent"
    [ "$timeout" -eq 0 ] || chaos_fail "$timeout REGISTERs never got a final response"
    [ "$pending" -eq 0 ] || chaos_fail "$pending REGISTERs still pending at the end"
    [ "$dup" -eq 0 ] || chaos_fail "$dup duplicate final responses"
    [ "$closed" -le "$CHAOS_MAX_CLOSED" ] ||
        chaos_fail "$closed REGISTERs lost to a closed connection (allowed $CHAOS_MAX_CLOSED)"
    other=""
    while read -r code n; do
        if [ -z "$code" ] || [ "$code" = 200 ]; then continue; fi
        other="$other $code=$n"
        case " $CHAOS_ALLOWED " in
        *" $code "*) ;;
        *) chaos_fail "$n answers $code (allowed: 200${CHAOS_ALLOWED:+ $CHAOS_ALLOWED})" ;;
        esac
    done < <(jq -r '.status | to_entries[] | "\(.key) \(.value)"' <<<"$LOAD_JSON")
    if [ "$CHAOS_MAX_CLOSED" -eq 0 ]; then
        conn_errs=$(jload '.error_causes.closed + .error_causes.connect + .error_causes.tls')
        [ "$conn_errs" -eq 0 ] || chaos_fail "$conn_errs client connections lost or refused"
        conn_errs=$(jload '.error_causes.protocol')
        [ "$conn_errs" -eq 0 ] || chaos_fail "$conn_errs protocol errors"
    fi
    chaos_fig "sent=$sent"
    chaos_fig "final=$final"
    chaos_fig "200=$ok${other:+ other:${other# }}"
    [ "$closed" -eq 0 ] || chaos_fig "closed=$closed"
    chaos_fig "unsent=$(jload .error_causes.overload)"
    chaos_fig "p50/p99/max=$(jload '[.latency_us.register.p50, .latency_us.register.p99, .latency_us.register.max] | map(. / 1000 | floor | tostring) | join("/")')ms"
    local bad_last
    bad_last=$(jload .bad_last_unix_ms)
    if [ -n "${FAULT_MS:-}" ] && [ "$bad_last" -gt 0 ]; then
        chaos_fig "recovered=+$((bad_last - FAULT_MS))ms"
    fi
}

# chaos_check_edge [--refusals-expected]: the edge's invariants once the load stopped: alive,
# settled (no client connection, no transaction, pools up), one final response for every
# REGISTER it received, no token refused (unless --refusals-expected: a flood of bad tokens, whose
# scenario does its own accounting), RSS within +25 % or +8 MiB of the baseline, fds within +4,
# no sanitizer report in its log.
chaos_check_edge() {
    local reqs finals refused rss_max
    if ! kill -0 "$EDGE_PID" 2>/dev/null; then
        chaos_fail "the edge died ($(tail -n 1 "$T/edge.log" 2>/dev/null))"
        return
    fi
    chaos_settle 20 || chaos_fail "the edge did not settle (connections $(metric '^sipedge_client_connections'), transactions $(metric '^sipedge_transactions'))"
    reqs=$(metric '^sipedge_sip_requests_total\{method="REGISTER"')
    finals=$(metric '^sipedge_sip_responses_total\{method="REGISTER",code="([2-6]|[2-6]xx)')
    [ "$reqs" -eq "$finals" ] ||
        chaos_fail "the edge received $reqs REGISTERs and sent $finals final responses"
    if [ "${1:-}" != --refusals-expected ]; then
        refused=$(metric '^sipedge_auth_results_total\{result="(malformed|bad_|unknown_kid|expired|not_yet_valid|revoked|insufficient_scope|identity_mismatch|decrypt|error)')
        refused=$((refused + $(metric '^sipedge_auth_refused_total')))
        [ "$refused" -eq 0 ] || chaos_fail "the edge refused $refused valid tokens"
    fi
    chaos_sample
    rss_max=$((BASE_RSS + BASE_RSS / 4))
    [ "$rss_max" -ge $((BASE_RSS + 8192)) ] || rss_max=$((BASE_RSS + 8192))
    [ "$SAMPLE_RSS" -le "$rss_max" ] ||
        chaos_fail "RSS $SAMPLE_RSS KiB > $rss_max KiB (baseline $BASE_RSS)"
    [ "$SAMPLE_FDS" -le $((BASE_FDS + 4)) ] ||
        chaos_fail "$SAMPLE_FDS fds open > baseline $BASE_FDS + 4"
    chaos_fig "rss=$((BASE_RSS / 1024))->$((SAMPLE_RSS / 1024))MiB"
    chaos_fig "fds=$BASE_FDS->$SAMPLE_FDS"
    chaos_check_sanitizer
}

chaos_check_sanitizer() {
    if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/edge.log"; then
        chaos_fail "sanitizer report in $T/edge.log"
    fi
}

# chaos_stop_edge: SIGTERM; the edge must drain and exit 0 (bounded) without a sanitizer report.
chaos_stop_edge() {
    [ -n "${EDGE_PID:-}" ] || return 0
    local rc=0
    kill -TERM "$EDGE_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$EDGE_PID" 2>/dev/null || break; sleep 0.1; done
    wait "$EDGE_PID" || rc=$?
    EDGE_PID=
    [ "$rc" -eq 0 ] || chaos_fail "the edge exited $rc on SIGTERM"
    chaos_check_sanitizer
}

# chaos_done: writes the result line ("PASS figures" or "FAIL figures: reasons") and exits.
chaos_done() {
    local line status=PASS
    trap - EXIT
    chaos_stop_edge
    [ "${#CHAOS_REASONS[@]}" -eq 0 ] || status=FAIL
    line="$status ${CHAOS_FIGURES[*]}"
    if [ "$status" = FAIL ]; then
        line="$line -- $(printf '%s; ' "${CHAOS_REASONS[@]}")"
        line="${line%; } (logs: $T)"
    fi
    if [ -n "${CHAOS_RESULT:-}" ]; then
        echo "$line" >"$CHAOS_RESULT"
    else
        echo "$line"
    fi
    chaos_cleanup
    [ "$status" = PASS ] && exit 0
    exit 1
}

# ucm_registers_of NAME: REGISTERs UCM node NAME received so far (its --record file).
ucm_registers_of() { grep -c '"method":"REGISTER"' "$T/ucm-$1.jsonl" 2>/dev/null || true; }
