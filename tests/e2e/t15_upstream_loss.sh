#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 15: requests in flight on an upstream connection that dies (issue 12 item 3). Node 1 holds
# every REGISTER (answers 30 s late), node 2 answers at once; Timer F is 20 s. (A) node 1 killed
# -9 with 10 REGISTERs in flight: all get 200 from node 2 within seconds, not 408 after Timer F.
# (B) node 1 hung (SIGSTOP: it accepts, never answers, not even the keep-alive): the keep-alive
# deadline closes its connections and the 10 go to node 2. (C) the only node killed with 10 in
# flight: each gets 503 + Retry-After at once. Before the fix A and B waited for Timer F (408).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_fault.sh"
e2e_init t15_upstream_loss

TIMER_F_MS=20000
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

registers() { grep -c '"method":"REGISTER"' "$T/ucm-$1.jsonl" 2>/dev/null || true; }
wait_conns() { # wait_conns PORT N: until N connections to the node are up (all workers)
    for _ in $(seq 1 100); do
        curl -s "http://127.0.0.1:$ADMIN_PORT/readyz" | grep -q "^node 127.0.0.1:$1 .*conns_up=$2" &&
            return 0
        sleep 0.1
    done
    return 1
}
wait_registers() { # wait_registers NAME N: until the node received N REGISTERs (5 s max)
    for _ in $(seq 1 100); do
        [ "$(registers "$1")" -ge "$2" ] && return 0
        sleep 0.05
    done
    return 1
}
# in_flight NAME SCENARIO: SIPp in the background with its REGISTERs held by node NAME.
in_flight() {
    run_sipp "$2" "$T/users.csv" $calls 100 &
    SIPP_PID=$!
    check "$calls REGISTERs are in flight at $1" wait_registers "$1" $calls
}
# sipp_done LABEL MAX_MS: SIPp ends well within MAX_MS of the fault ($FAULT_T0), all passed.
sipp_done() {
    local rc=0 ms
    wait "$SIPP_PID" || rc=$?
    ms=$(( ($(date +%s%N) - FAULT_T0) / 1000000 ))
    grep -E "Successful call|Failed call" "$T/sipp.out" | head -4 >&2 || true
    check "$1: every client got its expected answer (SIPp $rc)" test "$rc" -eq 0
    check "$1: answered $ms ms after the fault (< $2 ms; Timer F is $TIMER_F_MS)" test "$ms" -lt "$2"
}

P1=$(free_port)
P2=$(free_port)
start_ucmsim ucm1 "$P1" --allow edge.example.test --delay-ms 30000
start_ucmsim ucm2 "$P2" --allow edge.example.test
NODES="127.0.0.1 $P1 ucm1.example.test
127.0.0.1 $P2 ucm2.example.test"
start_edge
wait_ready 10
check "node 1 pools are up" wait_conns "$P1" 4
check "node 2 pools are up" wait_conns "$P2" 4
start_stunnel

# (A) kill -9
in_flight ucm1 "$T/expect_200.xml"
FAULT_T0=$(date +%s%N)
kill -9 "$UCM_PID_ucm1"
sipp_done "A: node 1 killed" 5000
check "A: node 2 got the $calls REGISTERs" test "$(registers ucm2)" -eq $calls
check "A: sipedge_upstream_failovers_total counts them" \
    test "$(metric '^sipedge_upstream_failovers_total')" -ge $calls

# (B) hung: the same port, a node that holds REGISTERs, then stops answering anything.
start_ucmsim ucm1b "$P1" --allow edge.example.test --delay-ms 30000
check "B: node 1 pools are up again" wait_conns "$P1" 4
f0=$(metric '^sipedge_upstream_failovers_total')
in_flight ucm1b "$T/expect_200.xml"
FAULT_T0=$(date +%s%N)
kill -STOP "$UCM_PID_ucm1b"
sipp_done "B: node 1 hung" 8000
kill -9 "$UCM_PID_ucm1b"
kill -CONT "$UCM_PID_ucm1b" 2>/dev/null || true
check "B: node 2 got the $calls REGISTERs" test "$(registers ucm2)" -eq $((2 * calls))
check "B: failovers counted" test "$(metric '^sipedge_upstream_failovers_total')" -ge $((f0 + calls))

# (C) the only node left dies with the requests in flight.
kill "$UCM_PID_ucm2"
start_ucmsim ucm1c "$P1" --allow edge.example.test --delay-ms 30000
check "C: node 1 pools are up again" wait_conns "$P1" 4
check "C: node 2 is down" wait_conns "$P2" 0
in_flight ucm1c "$T/expect_503.xml"
FAULT_T0=$(date +%s%N)
kill -9 "$UCM_PID_ucm1c"
sipp_done "C: last node killed: 503 + Retry-After" 3000
check "C: metrics count the edge's 503s" \
    test "$(metric 'sipedge_sip_responses_total\{method="REGISTER",code="503",source="edge"')" -eq $calls
e2e_done
