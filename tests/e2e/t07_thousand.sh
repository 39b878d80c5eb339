#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 7: 1,000 clients on separate TLS connections (SIPp -t tn through stunnel: one TLS connection
# per call) register at once through an edge with 2 workers. Every call gets its own 200 (SIPp
# matches each answer to its call by Call-ID and CSeq: all successful, none unexpected), UCM saw
# exactly 1,000 REGISTERs with distinct Call-IDs, and the edge's client connections return to 0.
source "$(dirname "$0")/lib.sh"
e2e_init t07_thousand

calls=1000
# SIPp, stunnel and the edge each hold one socket (stunnel two) per client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
    e2e_log "open-file limit $(ulimit -n) is below 4096: cannot hold $calls connections"
    exit 1
fi

# One token per user, minted in parallel (the tool is one process per token).
seq 1 $calls | ASAN_OPTIONS=detect_leaks=0 xargs -P 4 -I{} sh -c \
    '"$1" mint --key "$2" --kid es1 --user "user$3" --lifetime 3600 | sed "s/^/user$3;/; s/\$/;/"' \
    _ "$TOKEN" "$JWT_KEY" {} >"$T/tokens.txt"
{
    echo SEQUENTIAL
    cat "$T/tokens.txt"
} >"$T/users.csv"
check "minted $calls tokens" test "$(grep -c '^user[0-9]*;ey' "$T/tokens.txt")" -eq $calls

sed -e 's/@MAXFWD@/70/' -e 's/@STATUS@/200/' -e 's/@HEADER@/Expires:/' -e 's/@REGEXP@/^ *120$/' \
    "$SRC/tests/e2e/sipp/register_expect.xml" >"$T/expect_200.xml"

UCM_PORT=$(free_port)
start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
WORKERS=2
# stunnel makes a thread and a handshake per client: on a small, busy machine some take seconds.
HANDSHAKE_TIMEOUT_MS=15000
# A 1 s ping period lets a worker busy with 500 handshakes under ASan call a live UCM connection
# dead (one CI run: 196 of 1,000 got 503); this test is about clients, not keep-alives (t04 and
# unit/test_upstream cover those). Whether a busy worker misjudges its pongs is open (note).
KEEPALIVE_MS=10000
start_edge
wait_ready 10
start_stunnel
check "the edge runs 2 workers" grep -q 'event=started .*workers=2' "$T/edge.log"

t0=$(date +%s%N)
check "SIPp: $calls clients on their own TLS connections all get 200" \
    run_sipp "$T/expect_200.xml" "$T/users.csv" $calls 200
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" >"$T/metrics.txt"
e2e_log "SIPp ran $(( ($(date +%s%N) - t0) / 1000000 )) ms"
grep -E "Successful call|Failed call" "$T/sipp.out" | head -4 >&2 || true
ok=$(awk -F'|' '/Successful call/ { gsub(/ /, "", $3); print $3 }' "$T/sipp.out" | tail -1)
failed=$(awk -F'|' '/Failed call/ { gsub(/ /, "", $3); print $3 }' "$T/sipp.out" | tail -1)
check "SIPp: $calls successful calls (got $ok)" test "${ok:-0}" -eq $calls
check "SIPp: 0 failed calls (got $failed)" test "${failed:-1}" -eq 0
unexpected=$(awk '/200 <----------/ { print $NF }' "$T/sipp.out" | tail -1)
check "SIPp: no unexpected message (got $unexpected)" test "${unexpected:-1}" -eq 0
stray=$(awk '/out-of-call msg/ { print $1 + $6 }' "$T/sipp.out" | tail -1)
check "SIPp: no dead-call or out-of-call message (got $stray)" test "${stray:-1}" -eq 0

rec="$T/ucm-ucm1.jsonl"
regs=$(grep -c '"method":"REGISTER"' "$rec" || true)
check "UCM received exactly $calls REGISTERs (got $regs)" test "$regs" -eq $calls
ids=$(grep '"method":"REGISTER"' "$rec" | grep -o '"call_id":"[^"]*"' | sort -u | wc -l)
check "UCM saw $calls distinct Call-IDs (got $ids)" test "$ids" -eq $calls
check "metrics: $calls 200s relayed from UCM" \
    test "$(metric 'sipedge_sip_responses_total\{method="REGISTER",code="200",source="upstream"')" -eq $calls
turns=$(metric '^sipedge_worker_turn_duration_seconds_count')
check "metrics: the workers' loop turns are timed ($turns turns for $calls clients)" \
    test "$turns" -ge 100 -a \
    "$(metric '^sipedge_worker_turn_duration_seconds_bucket\{le="\+Inf"')" -eq "$turns"

gauge_zero() {
    for _ in $(seq 1 100); do
        [ "$(metric '^sipedge_client_connections')" -eq 0 ] && return 0
        sleep 0.1
    done
    return 1
}
check "client connections gauge back to 0 after SIPp closed" gauge_zero
check "no client handshake failed" \
    test "$(metric 'sipedge_tls_handshake_failures_total\{side="client"')" -eq 0
e2e_done
