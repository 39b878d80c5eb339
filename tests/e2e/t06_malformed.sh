#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 6: what the edge answers itself. Max-Forwards 0 -> 483; a malformed REGISTER (bad CSeq, bad
# Max-Forwards, no Call-ID) -> 400 whose reason names the fault; a header line without a colon ->
# 400 and the connection closed; random bytes -> the connection closed; all while 30 other
# clients register through the same edge and each gets its 200. OPTIONS -> 200, INVITE -> 407,
# a CRLFCRLF ping -> a CRLF pong. UCM sees only the valid REGISTERs. SIPp through stunnel, plus
# sipedge-tlsclient (bench/) for the bytes SIPp cannot send.
source "$(dirname "$0")/lib.sh"
e2e_init t06_malformed

start_stack

# sipp_expect NAME SCENARIO [sed expressions...]: one call of SCENARIO (after the seds) as user1
# with a valid token; SIPp's own checks decide.
sipp_expect() {
    local name=$1 src=$2 sc="$T/$1.xml" rc=0
    shift 2
    sed -e "" "$@" "$src" >"$sc"
    printf 'SEQUENTIAL\nuser1;%s;\n' "$(mint user1)" >"$T/$name.csv"
    sipp -sf "$sc" -inf "$T/$name.csv" -t tn -max_socket 64 -m 1 -r 10 -timeout 20s \
        -timeout_error -nostdin -trace_err -error_file "$T/sipp-$name-errors.log" \
        "127.0.0.1:$STUNNEL_PORT" >"$T/sipp-$name.out" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        tail -n 5 "$T/sipp-$name-errors.log" >&2 2>/dev/null || true
        echo >&2
    fi
    return "$rc"
}
# A REGISTER expecting STATUS whose first line matches REGEXP (the reason phrase).
expect_status() { # expect_status NAME STATUS REGEXP MAXFWD [sed expressions...]
    local name=$1 st=$2 re=$3 mf=$4
    shift 4
    sipp_expect "$name" "$SRC/tests/e2e/sipp/register_expect.xml" -e "s#@STATUS@#$st#" \
        -e "s#search_in=\"hdr\" header=\"@HEADER@\"#search_in=\"msg\"#" -e "s#@REGEXP@#$re#" \
        -e "s#@MAXFWD@#$mf#" "$@"
}

# tls STEP...: one TLS connection to the edge running sipedge-tlsclient's steps (send:FILE,
# read:N, head, eof; each bounded by 10 s); what the edge sent goes to stdout.
tls() {
    "$BIN/sipedge-tlsclient" --connect "127.0.0.1:$EDGE_PORT" --ca "$PKI/ca.crt" --name localhost \
        --timeout-ms 10000 "$@"
}
tls_out() { tls "${@:2}" >"$1"; } # tls_out OUT STEP...

# The bystanders: 30 clients registering at 15/s (2 s) through the same edge, in parallel.
n=30
{
    echo SEQUENTIAL
    for i in $(seq 1 $n); do echo "user$i;$(mint "user$i");"; done
} >"$T/users.csv"
run_sipp "$SRC/tests/e2e/sipp/register_bearer.xml" "$T/users.csv" "$n" 15 &
bystanders=$!

# Random bytes, a few connections' worth, while the bystanders register.
for i in 1 2 3; do
    head -c 2048 /dev/urandom >"$T/garbage$i.bin"
    check "random bytes #$i: the edge closes the connection" \
        tls_out "$T/garbage$i.out" "send:$T/garbage$i.bin" eof
    check "... without an answer" test ! -s "$T/garbage$i.out"
done
# A complete request whose header line has no colon: framing is lost, 400 then close.
printf '%s\r\n' "REGISTER sip:127.0.0.1 SIP/2.0" \
    "Via: SIP/2.0/TLS 127.0.0.1:5555;branch=z9hG4bKnocolon" "From: <sip:user1@example.test>;tag=1" \
    "To: <sip:user1@example.test>" "Call-ID: nocolon@127.0.0.1" "CSeq: 1 REGISTER" \
    "This line has no colon" "Content-Length: 0" "" >"$T/nocolon.txt"
check "a header line without a colon: the edge closes the connection" \
    tls_out "$T/nocolon.out" "send:$T/nocolon.txt" eof
check "... after '400 Bad Header Name'" grep -q $'^SIP/2.0 400 Bad Header Name\r$' "$T/nocolon.out"
check "... for that request (its Call-ID)" grep -q '^Call-ID: nocolon@127.0.0.1' "$T/nocolon.out"

rc=0
wait "$bystanders" || rc=$?
grep -E "Successful call|Failed call" "$T/sipp.out" | head -4 >&2 || true
check "the $n bystanders all got 407 then 200 meanwhile" test "$rc" -eq 0
check "UCM received exactly their $n REGISTERs" test "$(ucm_registers)" -eq "$n"
check "metrics: the 3 random-byte connections closed without a word (unframeable)" \
    test "$(metric 'sipedge_connections_closed_total\{reason="unframeable"')" -eq 3
check "metrics: the one answered before its close counted as garbage" \
    test "$(metric 'sipedge_connections_closed_total\{reason="garbage"')" -eq 1

# Faults the edge answers on an open connection (SIPp through stunnel).
before=$(ucm_registers)
check "Max-Forwards 0: 483 Too Many Hops" expect_status mf0 483 '^SIP/2.0 483 Too Many Hops' 0
check "Max-Forwards not a number: 400 Bad Max-Forwards" \
    expect_status mfbad 400 '^SIP/2.0 400 Bad Max-Forwards' abc
check "OPTIONS to the edge: 200 with Allow" sipp_expect options "$SRC/tests/e2e/sipp/options.xml"
check "INVITE on a connection no REGISTER bound: 407 with the Bearer challenge" \
    sipp_expect invite "$SRC/tests/e2e/sipp/invite_407.xml"
check "UCM received none of these" test "$(ucm_registers)" -eq "$before"
check "UCM received no OPTIONS nor INVITE from a client" \
    bash -c "! grep -qE '\"method\":\"(INVITE|ACK)\"|probe@example.test' '$REC'"

# A REGISTER without Call-ID: SIPp cannot match an answer without one: sipedge-tlsclient sends it.
printf '%s\r\n' "REGISTER sip:127.0.0.1 SIP/2.0" \
    "Via: SIP/2.0/TLS 127.0.0.1:5555;branch=z9hG4bKnocallid" "Max-Forwards: 70" \
    "From: <sip:user1@example.test>;tag=1" "To: <sip:user1@example.test>" "CSeq: 1 REGISTER" \
    "Content-Length: 0" "" >"$T/nocallid.txt"
# A CSeq without a number: SIPp cannot read the answer to it either.
printf '%s\r\n' "REGISTER sip:127.0.0.1 SIP/2.0" \
    "Via: SIP/2.0/TLS 127.0.0.1:5555;branch=z9hG4bKbadcseq" "Max-Forwards: 70" \
    "From: <sip:user1@example.test>;tag=1" "To: <sip:user1@example.test>" \
    "Call-ID: badcseq@127.0.0.1" "CSeq: one REGISTER" "Content-Length: 0" "" >"$T/badcseq.txt"
tls_out "$T/badcseq.out" "send:$T/badcseq.txt" head || true
check "CSeq without a number: 400 Bad CSeq" \
    test "$(head -n 1 "$T/badcseq.out")" = $'SIP/2.0 400 Bad CSeq\r'
check "... for that request (its Call-ID)" grep -q '^Call-ID: badcseq@127.0.0.1' "$T/badcseq.out"
printf '\r\n\r\n' >"$T/ping.bin"
# Then, on the same (still open) connection, a double-CRLF ping gets a CRLF pong (RFC 5626).
rc=0
tls "send:$T/nocallid.txt" head "send:$T/ping.bin" read:2 >"$T/nocallid.out" || rc=$?
check "no Call-ID: 400 Missing Call-ID" \
    test "$(head -n 1 "$T/nocallid.out")" = $'SIP/2.0 400 Missing Call-ID\r'
check "... then CRLFCRLF ping: CRLF pong on the same connection" \
    test "$rc" -eq 0 -a "$(tail -c 6 "$T/nocallid.out" | od -An -c | tr -d ' ')" = '\r\n\r\n\r\n'
check "UCM received no REGISTER without Call-ID" bash -c "! grep -q nocallid '$REC'"

edge_made() { metric "sipedge_sip_responses_total\\{method=\"$1\",code=\"$2\",source=\"edge\""; }
check "metrics: the edge made one 483" test "$(edge_made REGISTER 483)" -eq 1
check "metrics: the edge made four 400s (no colon, Max-Forwards, CSeq, Call-ID)" \
    test "$(edge_made REGISTER 400)" -eq 4
check "metrics: the edge made one 407 to an INVITE" test "$(edge_made INVITE 407)" -eq 1
check "metrics: the edge made one 200 to OPTIONS" test "$(edge_made OPTIONS 200)" -eq 1
e2e_done
