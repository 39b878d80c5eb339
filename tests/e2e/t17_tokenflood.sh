#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 17 (issue 12, item 2): hostile clients push distinct 7.7 KB garbage tokens (a valid JWS
# header naming our kid: each one would cost a signature check) from 127.0.0.2 on 8 TLS
# connections while 20 well-behaved clients (sipedge-bench, 127.0.0.1) re-REGISTER with valid
# tokens. The edge must close each flood connection after auth.max_failed_tokens_per_conn
# rejected tokens, answer the source's checks over auth.source_budget.* with 503 without a
# verify (metrics show both), keep its RSS (VmRSS of /proc/PID/status, sampled) under a bound,
# and the good clients must all register. Then, budget and connection limit off, every garbage
# token is verified and cached as a negative entry: those hold no token copy, so RSS stays under
# the same bound (before the fix: 21 MB -> 317 MB in 12 s). 2 workers, no Redis.
source "$(dirname "$0")/lib.sh"
e2e_init t17_tokenflood

FLOOD_S=12
MAX_FAILED=3
RATE=20 # verifications per second per source and worker
BURST=20
# RSS growth allowed: the new entry tables, connections and heap churn. ASan adds its quarantine,
# shadow and allocator caches (measured: 10 MB plain, 55 MB under ASan in phase 2; before the fix
# 125-132 MB plain).
RSS_GROWTH_MAX_KB=$((32 * 1024))
if ldd "$EDGE" 2>/dev/null | grep -q libasan; then RSS_GROWTH_MAX_KB=$((80 * 1024)); fi

UCM_PORT=$(free_port)
start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
WORKERS=2
HANDSHAKE_TIMEOUT_MS=10000
# ASan keeps freed memory in a quarantine (256 MB by default): bound it so RSS shows the heap.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:quarantine_size_mb=16:malloc_context_size=5"
export SIPEDGE_AUTH_MAX_FAILED_TOKENS_PER_CONN=$MAX_FAILED SIPEDGE_AUTH_SOURCE_BUDGET_RATE=$RATE \
    SIPEDGE_AUTH_SOURCE_BUDGET_BURST=$BURST
# A smaller L1 (8,192 entries per worker, ~3 MB of entry table) so that RSS shows what entries
# hold beyond the table: before the fix, 7.7 KB per negative entry (up to 2 x 8,192 x 8 KB).
export SIPEDGE_AUTH_CACHE_L1_CAPACITY=8192
start_edge
wait_ready 10

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$EDGE_PID/status"; }
rss0=$(rss_kb)

python3 "$SRC/bench/tokenflood.py" --port "$EDGE_PORT" --ca "$PKI/ca.crt" --source 127.0.0.2 \
    --conns 8 --duration "$FLOOD_S" --max-requests 200000 >"$T/flood.json" 2>"$T/flood.err" &
FLOOD_PID=$!
E2E_PIDS+=($FLOOD_PID)
sleep 1
"$BIN/sipedge-bench" --port "$EDGE_PORT" --ca "$PKI/ca.crt" --key "$JWT_KEY" --kid es1 \
    --conns 20 --users 20 --rate 100 --duration $((FLOOD_S - 4)) --timeout-ms 3000 \
    --max-requests 5000 --json --quiet >"$T/good.json" 2>"$T/good.err" &
GOOD_PID=$!
E2E_PIDS+=($GOOD_PID)

# RSS sampled every 0.25 s while the flood runs (bounded: FLOOD_S + 10 s)
peak=$rss0
for _ in $(seq 1 $(((FLOOD_S + 10) * 4))); do
    kill -0 "$FLOOD_PID" 2>/dev/null || break
    r=$(rss_kb)
    [ "$r" -gt "$peak" ] && peak=$r
    sleep 0.25
done
wait "$FLOOD_PID" || true
wait "$GOOD_PID" || true
rss1=$(rss_kb)
e2e_log "edge VmRSS: before ${rss0} kB, peak ${peak} kB, after ${rss1} kB"
e2e_log "flood: $(cat "$T/flood.json")"

good=$(grep '^{' "$T/good.json" | tail -n 1)
e2e_log "good clients: $(jq -c '{sent, ok, errors, throughput, p50: .latency_us.register.p50, p99: .latency_us.register.p99}' <<<"$good" 2>/dev/null)"
check "good clients ran" test -n "$good"
check "good clients: every REGISTER answered 200 (errors $(jq .errors <<<"$good"))" \
    test "$(jq '.errors' <<<"$good")" -eq 0 -a "$(jq '.ok' <<<"$good")" -eq "$(jq '.sent' <<<"$good")" -a "$(jq '.ok' <<<"$good")" -gt 100

sent=$(jq .sent "$T/flood.json")
closed=$(jq .closed_by_edge "$T/flood.json")
r407=$(jq '.status["407"] // 0' "$T/flood.json")
r503=$(jq '.status["503"] // 0' "$T/flood.json")
check "the flood sent garbage tokens ($sent)" test "$sent" -gt 500
check "flood connections closed by the edge after $MAX_FAILED bad tokens ($closed closed)" \
    test "$closed" -ge 10
check "no flood connection got more than $MAX_FAILED 407s ($r407 407s on $(jq .connections_opened "$T/flood.json") connections)" \
    test "$r407" -le $((MAX_FAILED * $(jq .connections_opened "$T/flood.json")))
check "metrics: connections closed for failed tokens counted" \
    test "$(metric 'sipedge_auth_refused_total\{reason="failed_tokens"')" -ge "$closed"
refused=$(metric 'sipedge_auth_refused_total\{reason="source_budget"')
verified=$(metric 'sipedge_auth_results_total\{.*layer="verify"')
e2e_log "metrics: refused by the source budget $refused, decided by a verify $verified, flood 503s $r503"
check "the source budget answered 503 without a verify (refused $refused, 503s $r503)" \
    test "$refused" -gt 0 -a "$r503" -eq "$refused"
# at most burst + rate per second per worker for the flood's source, plus the 20 good tokens
max_verify=$((WORKERS * (BURST + RATE * (FLOOD_S + 2)) + 20 * WORKERS))
check "verifications bounded by the budget ($verified <= $max_verify)" test "$verified" -le "$max_verify"
check "edge RSS grew by less than $((RSS_GROWTH_MAX_KB / 1024)) MB during the flood (peak $peak kB, start $rss0 kB)" \
    test $((peak - rss0)) -lt "$RSS_GROWTH_MAX_KB"

# Phase 2: no budgets (source, worker), no connection limit: each garbage token costs a verify
# and an L1 entry. What remains is the fixed entry tables once touched (2 workers x 8192 x ~370 B
# = 6 MB), whatever the token size.
stop_edge
export SIPEDGE_AUTH_MAX_FAILED_TOKENS_PER_CONN=0 SIPEDGE_AUTH_SOURCE_BUDGET_RATE=0 \
    SIPEDGE_AUTH_WORKER_BUDGET_RATE=0
start_edge
wait_ready 10
rss0=$(rss_kb)
python3 "$SRC/bench/tokenflood.py" --port "$EDGE_PORT" --ca "$PKI/ca.crt" --source 127.0.0.2 \
    --conns 8 --duration 8 --max-requests 200000 >"$T/flood2.json" 2>"$T/flood2.err" &
FLOOD_PID=$!
E2E_PIDS+=($FLOOD_PID)
peak=$rss0
for _ in $(seq 1 $(((8 + 10) * 4))); do
    kill -0 "$FLOOD_PID" 2>/dev/null || break
    r=$(rss_kb)
    [ "$r" -gt "$peak" ] && peak=$r
    sleep 0.25
done
wait "$FLOOD_PID" || true
e2e_log "phase 2 (no budget): VmRSS before ${rss0} kB, peak ${peak} kB; flood $(cat "$T/flood2.json")"
verified=$(metric 'sipedge_auth_results_total\{.*layer="verify"')
check "phase 2: thousands of garbage tokens verified ($verified)" test "$verified" -gt 2000
check "phase 2: negative entries hold no token copy: RSS grew < $((RSS_GROWTH_MAX_KB / 1024)) MB (peak $peak kB, start $rss0 kB)" \
    test $((peak - rss0)) -lt "$RSS_GROWTH_MAX_KB"
check "phase 2: no token copy held (sipedge_auth_l1_token_bytes $(metric '^sipedge_auth_l1_token_bytes'))" \
    test "$(metric '^sipedge_auth_l1_token_bytes')" -eq 0
e2e_done
