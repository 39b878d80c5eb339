#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 22 (issue 15, admission): a flood of distinct garbage tokens (each would cost a signature
# check) from four sources (127.0.0.2-5) at once, none over its own budget (auth.source_budget
# off), while 20 well-behaved clients re-REGISTER with valid tokens. The worker's budget
# (auth.worker_budget.*) must cap the signature checks of all sources together, answer the rest
# 503 + Retry-After without a verify (sipedge_auth_refused_total{reason="worker_budget"}), and
# the good clients, answered from L1, must all get their 200. 2 workers, no Redis.
source "$(dirname "$0")/lib.sh"
e2e_init t22_worker_budget

FLOOD_S=6
RATE=20 # verifications per second per worker, every source together
BURST=20
UCM_PORT=$(free_port)
start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
WORKERS=2
HANDSHAKE_TIMEOUT_MS=10000
export SIPEDGE_AUTH_SOURCE_BUDGET_RATE=0 SIPEDGE_AUTH_MAX_FAILED_TOKENS_PER_CONN=0 \
    SIPEDGE_AUTH_WORKER_BUDGET_RATE=$RATE SIPEDGE_AUTH_WORKER_BUDGET_BURST=$BURST
start_edge
wait_ready 10

# The good clients first: their 20 tokens are verified once and then answered from L1.
"$BIN/sipedge-bench" --port "$EDGE_PORT" --ca "$PKI/ca.crt" --key "$JWT_KEY" --kid es1 \
    --conns 20 --users 20 --rate 100 --duration $((FLOOD_S + 1)) --timeout-ms 3000 \
    --max-requests 5000 --json --quiet >"$T/good.json" 2>"$T/good.err" &
GOOD_PID=$!
E2E_PIDS+=($GOOD_PID)
sleep 1
FLOOD_PIDS=()
for s in 2 3 4 5; do
    python3 "$SRC/bench/tokenflood.py" --port "$EDGE_PORT" --ca "$PKI/ca.crt" --source "127.0.0.$s" \
        --conns 2 --duration "$FLOOD_S" --max-requests 50000 >"$T/flood$s.json" 2>"$T/flood$s.err" &
    FLOOD_PIDS+=($!)
    E2E_PIDS+=($!)
done
for p in "${FLOOD_PIDS[@]}"; do wait "$p" || true; done
wait "$GOOD_PID" || true

good=$(grep '^{' "$T/good.json" | tail -n 1)
e2e_log "good clients: $(jq -c '{sent, ok, errors, p50: .latency_us.register.p50, p99: .latency_us.register.p99}' <<<"$good" 2>/dev/null)"
check "good clients: every REGISTER answered 200 (errors $(jq .errors <<<"$good"))" \
    test "$(jq '.errors' <<<"$good")" -eq 0 -a "$(jq '.ok' <<<"$good")" -eq "$(jq '.sent' <<<"$good")" -a "$(jq '.ok' <<<"$good")" -gt 100
sent=0 r503=0 r407=0
for s in 2 3 4 5; do
    e2e_log "flood from 127.0.0.$s: $(cat "$T/flood$s.json")"
    sent=$((sent + $(jq .sent "$T/flood$s.json")))
    r503=$((r503 + $(jq '.status["503"] // 0' "$T/flood$s.json")))
    r407=$((r407 + $(jq '.status["407"] // 0' "$T/flood$s.json")))
done
refused=$(metric 'sipedge_auth_refused_total\{reason="worker_budget"')
by_source=$(metric 'sipedge_auth_refused_total\{reason="source_budget"')
verified=$(metric 'sipedge_auth_results_total\{.*layer="verify"')
e2e_log "flood: $sent sent, $r407 x 407, $r503 x 503; refused by the worker budget $refused; verifies $verified"
check "the flood sent garbage tokens ($sent)" test "$sent" -gt 400
check "the worker budget answered 503 without a verify (refused $refused, 503s $r503)" \
    test "$refused" -gt 0 -a "$r503" -eq "$refused"
check "no source budget was involved" test "$by_source" -eq 0
# at most burst + rate per second per worker, whatever the number of sources, plus 20 good tokens
max_verify=$((WORKERS * (BURST + RATE * (FLOOD_S + 3)) + 20))
check "verifications bounded by the worker budget ($verified <= $max_verify)" \
    test "$verified" -le "$max_verify"
e2e_done
