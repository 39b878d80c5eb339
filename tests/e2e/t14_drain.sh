#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 14: SIGTERM drains (issue 12 item 1). With clients connected and idle, the edge stops
# accepting, says not ready, still answers a REGISTER sent on an open connection, keeps the
# connections until listen.drain_timeout_ms, then closes them (close_notify first, TLS 1.3 and
# 1.2) and exits 0 (before the fix: a heap-use-after-free in client_plaintext under ASan, SIGSEGV
# / exit 139 in Release). Under load
# (sipedge-bench, UCM answering 200 ms late) every REGISTER sent gets an answer or sees its
# connection close: none is left to time out, and the exit is 0 with no sanitizer report.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_fault.sh"
e2e_init t14_drain

DRAIN_MS=2500
export SIPEDGE_LISTEN_DRAIN_TIMEOUT_MS=$DRAIN_MS
UCM_PORT=$(free_port)
start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
start_edge
wait_ready 10
start_stunnel

# --- idle clients ---------------------------------------------------------------------------
fds=()
for i in $(seq 1 6); do
    raw_open
    fds+=("$RAW_FD")
done
raw_register "${fds[0]}" alice "$(mint alice)"
check "before: a REGISTER on a raw connection gets 200" test "$(raw_status "${fds[0]}")" = 200
# Two clients that say how they were closed: close_notify first, for TLS 1.3 and 1.2.
for v in 1.3 1.2; do
    python3 "$SRC/tests/e2e/close_probe.py" "$EDGE_PORT" "$PKI/ca.crt" "$v" "$T/probe-$v.ready" 15 \
        >"$T/probe-$v.out" 2>&1 &
    eval "PROBE_${v/./}=$!"
    E2E_PIDS+=($!)
done
for _ in $(seq 1 50); do
    [ -e "$T/probe-1.3.ready" ] && [ -e "$T/probe-1.2.ready" ] &&
        [ "$(metric '^sipedge_client_connections')" -ge 8 ] && break
    sleep 0.1
done
check "8 client connections are open" test "$(metric '^sipedge_client_connections')" -ge 8

term_edge
sleep 0.3
code=$(curl -s -o "$T/readyz.txt" -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz" || true)
check "draining: /readyz answers 503 (was $code)" test "$code" = 503
check "draining: /readyz says draining: yes" grep -q 'draining: yes' "$T/readyz.txt"
check "draining: no new connection is accepted" \
    bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$EDGE_PORT) 2>/dev/null"
raw_register "${fds[1]}" bob "$(mint bob)"
check "draining: a REGISTER on an open connection still gets 200" \
    test "$(raw_status "${fds[1]}")" = 200
check "draining: the edge is still running" kill -0 "$EDGE_PID"
for fd in "${fds[@]}"; do
    check "at the deadline: the edge closed connection fd $fd" raw_eof "$fd" 10
done
wait_edge_exit
for v in 13 12; do
    pid_var=PROBE_$v
    wait "${!pid_var}" 2>/dev/null || true
    check "TLS 1.${v#1} client: close_notify before the close ($(cat "$T/probe-1.${v#1}.out"))" \
        grep -qx close_notify "$T/probe-1.${v#1}.out"
done
check "idle clients kept the edge until the deadline ($EDGE_EXIT_MS ms >= $DRAIN_MS)" \
    test "$EDGE_EXIT_MS" -ge "$DRAIN_MS"
check "and no longer than the deadline plus 2 s ($EDGE_EXIT_MS ms)" \
    test "$EDGE_EXIT_MS" -lt $((DRAIN_MS + 2000))
check "the edge logged the close of its clients" grep -q 'event=drain_worker_closing' "$T/edge.log"
for fd in "${fds[@]}"; do exec {fd}>&-; done
mv "$T/edge.log" "$T/edge-idle.log"

# --- under load -----------------------------------------------------------------------------
DRAIN_MS=1500
export SIPEDGE_LISTEN_DRAIN_TIMEOUT_MS=$DRAIN_MS
kill "$UCM_PID_ucm1" && wait "$UCM_PID_ucm1" 2>/dev/null || true
start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test --delay-ms 200
EDGE_PORT=$(free_port)
ADMIN_PORT=$(free_port)
start_edge
wait_ready 10
bench_start "$T/bench.out" --rate 300 --conns 20 --duration 5 --timeout-ms 4000 \
    --ready-file "$T/bench.ready"
for _ in $(seq 1 200); do [ -s "$T/bench.ready" ] && break; sleep 0.05; done
check "the load is running" test -s "$T/bench.ready"
sleep 1.5
busy=$(metric '^sipedge_transactions')
e2e_log "transactions open at SIGTERM: $busy"
term_edge
wait_edge_exit
bench_wait
grep -E "measured|errors|status" "$T/bench.out" >&2 || true
check "under load: REGISTERs were in flight at SIGTERM ($busy)" test "${busy:-0}" -gt 0
check "under load: no REGISTER was left without an answer (timeout=$(bench_err "$T/bench.out" timeout))" \
    test "$(bench_err "$T/bench.out" timeout)" = 0
check "under load: no protocol error" test "$(bench_err "$T/bench.out" protocol)" = 0
check "under load: REGISTERs got 200 ($(bench_status "$T/bench.out" 200))" \
    test "$(bench_status "$T/bench.out" 200)" -gt 0
e2e_done
