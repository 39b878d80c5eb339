#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 4: two UCM nodes, ordered policy. Node 1 down: REGISTERs go to node 2 and every client still
# gets 200; both down: 503 with Retry-After; node 1 back on its port: used again after the
# backoff. Then Timer F: a node that never answers a REGISTER makes the edge answer 408 itself.
source "$(dirname "$0")/lib.sh"
e2e_init t04_failover

TIMER_F_MS=1500
calls=10
{
    echo SEQUENTIAL
    for i in $(seq 1 $calls); do echo "user$i;$(mint "user$i");"; done
} >"$T/users.csv"
expect_xml() { # expect_xml STATUS HEADER REGEXP > file
    sed -e 's/@MAXFWD@/70/' -e "s/@STATUS@/$1/" -e "s/@HEADER@/$2/" -e "s/@REGEXP@/$3/" \
        "$SRC/tests/e2e/sipp/register_expect.xml"
}
expect_xml 200 'Expires:' '^ *120$' >"$T/expect_200.xml"
expect_xml 503 'Retry-After:' '^ *7$' >"$T/expect_503.xml"
expect_xml 408 'CSeq:' 'REGISTER' >"$T/expect_408.xml"

registers() { grep -c '"method":"REGISTER"' "$T/ucm-$1.jsonl" 2>/dev/null || true; }

# node_state PORT: the state /readyz shows for the node on that port.
node_state() {
    curl -s "http://127.0.0.1:$ADMIN_PORT/readyz" |
        sed -n "s/^node 127.0.0.1:$1 .*state=\([a-z]*\).*/\1/p"
}
wait_not_up() { # wait_not_up PORT: until the edge no longer counts the node up (10 s max)
    for _ in $(seq 1 100); do
        [ "$(node_state "$1")" != up ] && return 0
        sleep 0.1
    done
    return 1
}
wait_up() { # wait_up PORT
    for _ in $(seq 1 100); do
        [ "$(node_state "$1")" = up ] && return 0
        sleep 0.1
    done
    return 1
}
# wait_conns PORT N: until every worker's pool to the node is up (conns_up summed over workers;
# each worker retries on its own backoff, and a worker with no node up answers 503).
wait_conns() {
    for _ in $(seq 1 100); do
        curl -s "http://127.0.0.1:$ADMIN_PORT/readyz" | grep -q "^node 127.0.0.1:$1 .*conns_up=$2" &&
            return 0
        sleep 0.1
    done
    return 1
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
sipp_summary() { grep -E "Successful call|Failed call" "$T/sipp.out" | head -4 >&2 || true; }

P1=$(free_port)
P2=$(free_port)
start_ucmsim ucm1 "$P1" --allow edge.example.test
start_ucmsim ucm2 "$P2" --allow edge.example.test
NODES="127.0.0.1 $P1 ucm1.example.test
127.0.0.1 $P2 ucm2.example.test"
start_edge
wait_ready 10
wait_conns "$P1" 4 && wait_conns "$P2" 4
start_stunnel

check "both up: $calls clients get 200" run_sipp "$T/expect_200.xml" "$T/users.csv" $calls 50
sipp_summary
check "both up: node 1 got all $calls REGISTERs" test "$(registers ucm1)" -eq $calls
check "both up: node 2 got none (ordered)" test "$(registers ucm2)" -eq 0

stop_pid "$UCM_PID_ucm1"
check "the edge sees node 1 down" wait_not_up "$P1"
check "node 1 down: $calls clients get 200" run_sipp "$T/expect_200.xml" "$T/users.csv" $calls 50
sipp_summary
check "node 1 down: node 2 got the $calls REGISTERs" test "$(registers ucm2)" -eq $calls
check "node 1 down: node 1 got no more" test "$(registers ucm1)" -eq $calls

stop_pid "$UCM_PID_ucm2"
check "the edge sees node 2 down" wait_not_up "$P2"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz")
check "both down: /readyz is 503 (was $code)" test "$code" = 503
check "both down: $calls clients get 503 with Retry-After: 7" \
    run_sipp "$T/expect_503.xml" "$T/users.csv" $calls 50
sipp_summary
check "both down: metrics count the edge's 503s" \
    test "$(metric 'sipedge_sip_responses_total\{method="REGISTER",code="503",source="edge"')" -eq $calls

start_ucmsim ucm1 "$P1" --allow edge.example.test
check "node 1 back: the edge is ready again within the backoff" wait_ready 5
check "node 1 back: counted up" wait_up "$P1"
check "node 1 back: both workers' pools are up again (4 connections)" wait_conns "$P1" 4
check "node 1 back: $calls clients get 200" run_sipp "$T/expect_200.xml" "$T/users.csv" $calls 50
sipp_summary
check "node 1 back: it got the $calls REGISTERs" test "$(registers ucm1)" -eq $((2 * calls))
check "node 1 back: node 2 got no more" test "$(registers ucm2)" -eq $calls
stop_edge

# Timer F: the node answers OPTIONS (so it looks alive) but drops every REGISTER.
P3=$(free_port)
start_ucmsim ucm3 "$P3" --allow edge.example.test --drop
NODES="127.0.0.1 $P3 ucm1.example.test"
EDGE_PORT=$(free_port)
ADMIN_PORT=$(free_port)
start_edge
wait_ready 10
start_stunnel
t0=$(date +%s%N)
check "dropped: $calls clients get 408 from the edge" \
    run_sipp "$T/expect_408.xml" "$T/users.csv" $calls 50
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
sipp_summary
e2e_log "dropped: SIPp ran $ms ms (timer_f_ms $TIMER_F_MS)"
check "dropped: the 408s came after Timer F, not before ($ms ms)" test "$ms" -ge "$TIMER_F_MS"
check "dropped: and within Timer F plus the calls' spread and 3 s slack ($ms ms)" \
    test "$ms" -lt $((TIMER_F_MS + 3000 + calls * 20))
check "dropped: UCM received the $calls REGISTERs" test "$(registers ucm3)" -eq $calls
check "dropped: metrics count the edge's 408s" \
    test "$(metric 'sipedge_sip_responses_total\{method="REGISTER",code="408",source="edge"')" -eq $calls
e2e_done
