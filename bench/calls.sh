#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Calls through the edge (issue 9), side by side in one run: the same call load (sipedge-bench
# --calls: N registered TLS clients, each call INVITE -> 100/180/200 -> ACK -> BYE -> 200, the
# UCM stand-in sipedge-ucmsim answering) sent
#   direct   : straight to sipedge-ucmsim over mutual TLS (no edge): the baseline set-up latency;
#   sipedge  : through sipedge (build/rel), UCM = sipedge-ucmsim;
#   kamailio : through Kamailio 5.6 doing the edge's job (bench/peers/kamailio/calls-edge.cfg:
#              record_route, loose_route, add_path_received + path use_received, t_relay/mTLS).
# Per side and offered rate: calls/s completed, failures by cause, edge CPU per call (the edge's
# own schedstat accounting read by the generator at the edges of the measured window, as
# bench/compare.sh GEN=bench), INVITE -> 200 set-up latency p50/p99, and the p99 added by the
# edge (through-edge minus direct). Until the edge proxies calls it answers INVITE with 501: the
# sipedge rows then say so.
#   bench/calls.sh [--quick]
# Environment: BIN (build dir, default build/rel), RATES (offered calls/s, default
# "500 1000 2000"), DURATION (s per point, default 5), CONNS (registered clients, default 200),
# REPEAT (runs per point, default 3; 1 with --quick), WORKERS (sipedge workers / Kamailio TLS
# workers, default 2). JSON lines in build/bench/calls.jsonl.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0
for a in "$@"; do
    case "$a" in
    --quick) QUICK=1 ;;
    *)
        echo "usage: bench/calls.sh [--quick]" >&2
        exit 2
        ;;
    esac
done
if [ -z "${BIN:-}" ]; then
    BIN=$SRC/build/rel
    if [ ! -x "$BIN/sipedge" ] || [ ! -x "$BIN/sipedge-ucmsim" ] || [ ! -x "$BIN/sipedge-bench" ]; then
        cmake -S "$SRC" -B "$BIN" -DCMAKE_BUILD_TYPE=Release >/dev/null
        cmake --build "$BIN" -j2 >/dev/null
    fi
fi
export BIN SRC
export SIPEDGE_AUTH_SOURCE_BUDGET_RATE=${SIPEDGE_AUTH_SOURCE_BUDGET_RATE:-0}
export SIPEDGE_AUTH_WORKER_BUDGET_RATE=${SIPEDGE_AUTH_WORKER_BUDGET_RATE:-0}
RATES=${RATES:-"500 1000 2000"}
DURATION=${DURATION:-5}
CONNS=${CONNS:-200}
REPEAT=${REPEAT:-3}
WORKERS=${WORKERS:-2}
if [ "$QUICK" = 1 ]; then
    RATES=${QUICK_RATES:-"500 1000"}
    DURATION=3
    REPEAT=1
    CONNS=${QUICK_CONNS:-100}
fi
RESULTS_DIR=${RESULTS_DIR:-$SRC/build/bench}
RESULTS=$RESULTS_DIR/calls.jsonl
mkdir -p "$RESULTS_DIR"
for tool in kamailio kamcmd jq; do
    command -v "$tool" >/dev/null || {
        echo "bench/calls.sh: needs $tool (scripts/install-deps.sh)" >&2
        exit 2
    }
done

# shellcheck source=../tests/e2e/lib.sh
source "$SRC/tests/e2e/lib.sh"
e2e_init calls
# shellcheck source=peers/kamailio/kamailio-edge.sh
source "$SRC/bench/peers/kamailio/kamailio-edge.sh"
trap 'kamedge_stop; e2e_cleanup' EXIT
say() { printf 'calls: %s\n' "$*" >&2; }

UCM_PORT=$(free_port)
"$BIN/sipedge-ucmsim" --addr 127.0.0.1 --port "$UCM_PORT" --cert "$PKI/ucm.crt" \
    --key "$PKI/ucm.key" --ca "$PKI/ca.crt" --allow edge.example.test --node ucm1 \
    >"$T/ucm.out" 2>"$T/ucm.err" &
E2E_PIDS+=($!)
UCM_PID=$!
wait_port "$UCM_PORT"

REDIS_PORT=$(free_port)
start_redis "$REDIS_PORT"
NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
KEEPALIVE_MS=30000 LOG_LEVEL=warn start_edge
wait_ready 10
SE_PORT=$EDGE_PORT

head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/hs.secret"
chmod 600 "$T/hs.secret"
KAM_PORT=$(free_port)
export KAMEDGE_CFG=calls-edge.cfg
say "UCM stand-in sipedge-ucmsim (pid $UCM_PID) on 127.0.0.1:$UCM_PORT, answers INVITE 180+200"
say "sipedge (pid $EDGE_PID, $WORKERS workers) on 127.0.0.1:$SE_PORT; kamailio ($WORKERS TLS workers, calls-edge.cfg) on 127.0.0.1:$KAM_PORT"
say "load: sipedge-bench --calls, $CONNS registered TLS clients, open loop, ${DURATION}s per point, $REPEAT run(s)"

# run SIDE RATE: one point; appends the generator's JSON line (with "side") to $T/runs.jsonl.
run() {
    local side=$1 rate=$2 line rc=0
    local args=(--ca "$PKI/ca.crt" --conns "$CONNS" --users "$CONNS" --user-prefix user --calls
        --rate "$rate" --duration "$DURATION" --timeout-ms 2000 --max-requests 1000000
        --label "$side-$rate" --json --quiet)
    case "$side" in
    direct)
        args+=(--port "$UCM_PORT" --direct --key "$JWT_KEY" --kid es1 --ca "$PKI/ucm-ca.crt"
            --server-name ucm1.example.test --tls-cert "$PKI/client.crt" --tls-key "$PKI/client.key"
            --edge-pid "$UCM_PID")
        ;;
    sipedge) args+=(--port "$SE_PORT" --key "$JWT_KEY" --kid es1 --edge-pid "$EDGE_PID") ;;
    kamailio)
        # a fresh Kamailio per run: Debian's 5.6 tls module crashes when a set of TLS
        # connections closes and new ones open (see bench/compare.sh)
        kamedge_stop
        KAMEDGE_CHILDREN=$WORKERS kamedge_start "$T/kamailio" "$PKI" "$KAM_PORT" "$UCM_PORT" \
            "$T/hs.secret"
        args+=(--port "$KAM_PORT" --hs256-secret "$T/hs.secret"
            --edge-pid "$(kamedge_pids | paste -sd, -)")
        ;;
    esac
    line=$("$BIN/sipedge-bench" "${args[@]}" 2>>"$T/bench.err") || rc=$?
    line=$(printf '%s\n' "$line" | grep '^{' | tail -n 1 || true)
    [ -n "$line" ] || line='{}'
    jq -c --arg side "$side" --argjson rc "$rc" '. + {side: $side, rc: $rc}' <<<"$line" \
        >>"$T/runs.jsonl"
}

: >"$T/runs.jsonl"
for rate in $RATES; do
    for _ in $(seq 1 "$REPEAT"); do
        for side in direct sipedge kamailio; do
            run "$side" "$rate"
        done
    done
done
cat "$T/runs.jsonl" >>"$RESULTS"

# ---- the table: medians over REPEAT per side and rate ----------------------------------------
med() { sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }'; }
# field SIDE RATE JQ: the median of JQ over the runs of SIDE at RATE
field() {
    jq -r --arg s "$1" --arg l "$1-$2" "select(.side == \$s and .label == \$l) | $3" \
        "$T/runs.jsonl" | med
}
echo
echo "== calls: client -> UCM (INVITE 100/180/200 ACK BYE 200), $CONNS clients, ${DURATION}s/point, median of $REPEAT"
printf '%-9s %8s %9s %8s %8s %10s %9s %9s %11s  %s\n' side offered calls/s ok failed \
    "cpu/call" p50_us p99_us added_p99 "failures by cause / status"
for rate in $RATES; do
    dp99=$(field direct "$rate" '.latency_us.call_setup.p99 // 0')
    for side in direct sipedge kamailio; do
        ok=$(field "$side" "$rate" '.ok // 0')
        fail=$(field "$side" "$rate" '.errors // 0')
        tput=$(field "$side" "$rate" '.throughput // 0 | floor')
        cpu=$(field "$side" "$rate" '.edge.cpu_us_per_unit // 0 | . * 10 | round / 10')
        p50=$(field "$side" "$rate" '.latency_us.call_setup.p50 // 0')
        p99=$(field "$side" "$rate" '.latency_us.call_setup.p99 // 0')
        causes=$(jq -r --arg l "$side-$rate" 'select(.label == $l) |
            ([.error_causes // {} | to_entries[] | select(.value > 0) | "\(.key)=\(.value)"] +
             [.status // {} | to_entries[] | select(.key != "200") | "\(.key)=\(.value)"]) +
             [.setup_error_causes // {} | to_entries[] | select(.value > 0) |
              "setup_\(.key)=\(.value)"] |
            join(" ")' "$T/runs.jsonl" | tail -n 1)
        added=-
        [ "$side" = direct ] || [ "$ok" = 0 ] || added=$((p99 - dp99))
        [ "$side" = direct ] && cpu="$cpu(ucm)"
        printf '%-9s %8s %9s %8s %8s %10s %9s %9s %11s  %s\n' "$side" "$rate" "$tput" "$ok" \
            "$fail" "$cpu" "$p50" "$p99" "$added" "${causes:-none}"
        n501=$(field "$side" "$rate" '.status["501"] // 0')
        if [ "$side" = sipedge ] && [ "$ok" = 0 ] && [ "$n501" != 0 ]; then
            echo "          sipedge answers 501 to INVITE: calls are not proxied by this build" \
                "(pending the edge's call wiring, issue 9)"
        fi
    done
done
echo
echo "cpu/call = edge CPU (schedstat, all threads/processes) per completed call; for direct: the"
echo "UCM stand-in's CPU. added_p99 = through-edge p99 minus direct p99 of the same rate (µs)."
echo "setup_* = failed attempts while registering the clients before the window (retried)."
for rate in $RATES; do
    s=$(field sipedge "$rate" '.edge.cpu_us_per_unit // 0')
    k=$(field kamailio "$rate" '.edge.cpu_us_per_unit // 0')
    so=$(field sipedge "$rate" '.ok // 0')
    if [ "$so" != 0 ] && awk -v s="$s" 'BEGIN { exit !(s > 0) }'; then
        awk -v r="$rate" -v s="$s" -v k="$k" \
            'BEGIN { printf "  %5s calls/s: edge CPU per call kamailio/sipedge = %.1fx\n", r, k / s }'
    else
        echo "  $rate calls/s: ratio kamailio/sipedge: n/a (no sipedge calls completed)"
    fi
done

# ---- UCM -> client, direct: sipedge-ucmsim --call-out calls the registered bench clients -------
# callout RATE: a second sipedge-ucmsim that INVITEs every registered client at RATE/s for
# DURATION s (hold 0), the clients (sipedge-bench --idle --calls) answering 180/200; its counters
# and set-up percentiles at exit.
callout() {
    local rate=$1 port pid out
    port=$(free_port)
    out=$T/callout-$rate.out
    "$BIN/sipedge-ucmsim" --addr 127.0.0.1 --port "$port" --cert "$PKI/ucm.crt" \
        --key "$PKI/ucm.key" --ca "$PKI/ca.crt" --allow edge.example.test --node ucm2 \
        --call-out "$rate" --out-count "$((rate * DURATION))" >"$out" 2>"$T/callout.err" &
    pid=$!
    E2E_PIDS+=("$pid")
    wait_port "$port"
    "$BIN/sipedge-bench" --port "$port" --direct --key "$JWT_KEY" --kid es1 --ca "$PKI/ucm-ca.crt" \
        --server-name ucm1.example.test --tls-cert "$PKI/client.crt" --tls-key "$PKI/client.key" \
        --conns "$CONNS" --users "$CONNS" --user-prefix callee --calls --idle "$CONNS" \
        --hold "$((DURATION + 1))" --quiet --json >"$T/callout-bench-$rate.json" 2>>"$T/bench.err" ||
        true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    awk -v r="$rate" -v d="$DURATION" '/ucmsim counters/ {
        for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "direct   %8s %9.0f %8s %8s %9s %9s  timeout=%s fail=%s no_target=%s\n", r,
            v["out_ok"] / d, v["out_ok"], v["out_fail"] + v["out_timeout"], v["out_setup_p50_us"],
            v["out_setup_p99_us"], v["out_timeout"], v["out_fail"], v["out_no_target"] }' "$out"
}
# cpu_ns PID: the process's CPU time so far (all threads, schedstat), in ns.
cpu_ns() {
    local t sum=0
    for t in /proc/"$1"/task/*/schedstat; do
        sum=$((sum + $(cut -d' ' -f1 "$t" 2>/dev/null || echo 0)))
    done
    echo "$sum"
}

# callout_edge RATE: the same UCM -> client calls through a second sipedge whose UCM is a call-out
# ucmsim: the bench clients register through that edge (their Path names it), ucmsim INVITEs
# them by those Paths on the edge's pooled connections, the edge delivers to their connections.
callout_edge() {
    local rate=$1 port pid out saved_t=$T saved=("$EDGE_PORT" "$ADMIN_PORT" "$EDGE_PID") c0 c1
    port=$(free_port)
    T=$saved_t/callout-edge-$rate
    mkdir -p "$T"
    cp "$saved_t/hmac.key" "$T/hmac.key"
    out=$T/ucmsim.out
    "$BIN/sipedge-ucmsim" --addr 127.0.0.1 --port "$port" --cert "$PKI/ucm.crt" \
        --key "$PKI/ucm.key" --ca "$PKI/ca.crt" --allow edge.example.test --node ucm2 \
        --call-out "$rate" --out-count "$((rate * DURATION))" >"$out" 2>"$T/ucmsim.err" &
    pid=$!
    E2E_PIDS+=("$pid")
    wait_port "$port"
    # plain assignments: a prefix on a function call would be undone when it returns
    EDGE_PORT='' ADMIN_PORT='' NODES="127.0.0.1 $port ucm2.example.test"
    KEEPALIVE_MS=30000 LOG_LEVEL=warn start_edge
    wait_ready 10
    c0=$(cpu_ns "$EDGE_PID")
    "$BIN/sipedge-bench" --port "$EDGE_PORT" --key "$JWT_KEY" --kid es1 --ca "$PKI/ca.crt" \
        --conns "$CONNS" --users "$CONNS" --user-prefix callee --calls --idle "$CONNS" \
        --hold "$((DURATION + 1))" --quiet --json >"$T/bench.json" 2>>"$T/bench.err" || true
    c1=$(cpu_ns "$EDGE_PID")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    kill -TERM "$EDGE_PID" 2>/dev/null || true
    wait "$EDGE_PID" 2>/dev/null || true
    awk -v r="$rate" -v d="$DURATION" -v cpu=$((c1 - c0)) '/ucmsim counters/ {
        for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "sipedge  %8s %9.0f %8s %8s %9s %9s  timeout=%s fail=%s no_target=%s cpu/call=%.1fus\n",
            r, v["out_ok"] / d, v["out_ok"], v["out_fail"] + v["out_timeout"],
            v["out_setup_p50_us"], v["out_setup_p99_us"], v["out_timeout"], v["out_fail"],
            v["out_no_target"], v["out_ok"] ? cpu / 1000 / v["out_ok"] : 0 }' "$out"
    T=$saved_t
    EDGE_PORT=${saved[0]} ADMIN_PORT=${saved[1]} EDGE_PID=${saved[2]}
}

echo
echo "== calls: UCM -> client (sipedge-ucmsim --call-out: INVITE 180 200 ACK BYE 200), $CONNS clients, ${DURATION}s, 1 run"
printf '%-8s %8s %9s %8s %8s %9s %9s  %s\n' side offered calls/s ok failed p50_us p99_us causes
for rate in $RATES; do
    callout "$rate"
done
for rate in $RATES; do
    callout_edge "$rate"
done
echo "sipedge row: the call-out ucmsim is a second edge's UCM; the clients register through that"
echo "edge and ucmsim calls them by their Paths over the edge's pooled connections (RFC 5923 alias);"
echo "cpu/call = that edge's CPU (schedstat, all threads) over the run / completed calls. Kamailio:"
echo "not driven (calls-edge.cfg has the Path routing, no run exercises it yet)."
echo "runs: $RESULTS"
