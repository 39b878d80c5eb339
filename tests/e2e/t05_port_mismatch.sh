#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 5: UCM answers a REGISTER with its port-mismatch 403 (Retry-After 35 and the Warning of the
# Cisco document); the edge relays it unchanged to the client and logs upstream_port_mismatch once
# (rate limited, one worker here so "once" is exact). SIPp through stunnel, with Redis; one more
# REGISTER from sipedge-tlsclient compares the answer byte for byte.
source "$(dirname "$0")/lib.sh"
e2e_init t05_port_mismatch

REDIS_PORT=$(free_port)
start_redis "$REDIS_PORT"
UCM_PORT=$(free_port)
start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test --mode port-mismatch --node ucm1
NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
WORKERS=1
start_edge
wait_ready 10
start_stunnel

# The scenario: 403 whose Warning, Retry-After and Server are UCM's, byte for byte.
ereg() { # ereg HEADER REGEXP VAR: one more check on the received 403
    printf '      <ereg regexp="%s" search_in="hdr" header="%s" check_it="true" assign_to="%s"/>\n' \
        "$2" "$1" "$3"
}
sc="$T/port_mismatch.xml"
{
    sed -n '1,/<action>/p' "$SRC/tests/e2e/sipp/register_expect.xml"
    ereg Warning: '^ *399 ucm1 \"SIP OAuth Registration port Mismatch\"$' w
    ereg Retry-After: '^ *35$' ra
    ereg Server: '^ *sipedge-ucmsim$' srv
    ereg Content-Length: '^ *0$' cl
    ereg Via: 'SIP/2.0/TCP 127.0.0.1:[0-9]+;branch=z9hG4bK' via
    sed -n '/<\/action>/,$p' "$SRC/tests/e2e/sipp/register_expect.xml"
} | sed -e 's#@STATUS@#403#' -e 's#@MAXFWD@#70#' \
    -e 's#<Reference variables="h"/>#<Reference variables="w,ra,srv,cl,via"/>#' >"$sc"

n=5
{
    echo SEQUENTIAL
    for i in $(seq 1 $n); do echo "user$i;$(mint "user$i");"; done
} >"$T/users.csv"
check "SIPp: $n clients get UCM's port-mismatch 403 unchanged" run_sipp "$sc" "$T/users.csv" "$n" 20
grep -E "Successful call|Failed call" "$T/sipp.out" | head -4 >&2 || true
tail -n 5 "$T/sipp-errors.log" >&2 2>/dev/null && echo >&2 || true

# Byte for byte: one REGISTER from sipedge-tlsclient; the answer must be exactly UCM's 403 with
# only our Via taken off (the To tag is UCM's, random).
printf '%s\r\n' "REGISTER sip:127.0.0.1 SIP/2.0" \
    "Via: SIP/2.0/TLS 192.0.2.10:50000;branch=z9hG4bKbytes;rport" "Max-Forwards: 70" \
    "From: <sip:user1@example.test>;tag=f1" "To: <sip:user1@example.test>" \
    "Call-ID: bytes@192.0.2.10" "CSeq: 7 REGISTER" "Contact: <sip:user1@192.0.2.10:50000;transport=tls>" \
    "Proxy-Authorization: Bearer token=\"$(mint user1)\"" "Content-Length: 0" "" >"$T/bytes.txt"
printf '%s\r\n' "SIP/2.0 403 Forbidden" "Via: SIP/2.0/TLS 192.0.2.10:50000;branch=z9hG4bKbytes;rport" \
    "From: <sip:user1@example.test>;tag=f1" "To: <sip:user1@example.test>;tag=TAG" \
    "Call-ID: bytes@192.0.2.10" "CSeq: 7 REGISTER" "Retry-After: 35" \
    "Warning: 399 ucm1 \"SIP OAuth Registration port Mismatch\"" "Server: sipedge-ucmsim" \
    "Content-Length: 0" "" >"$T/bytes.expected"
"$BIN/sipedge-tlsclient" --connect "127.0.0.1:$EDGE_PORT" --ca "$PKI/ca.crt" --name localhost \
    "send:$T/bytes.txt" head >"$T/bytes.out" || true
sed -i 's/^\(To: .*;tag=\)[^;\r]*/\1TAG/' "$T/bytes.out"
check "the 403 reaches the client byte for byte as UCM made it" cmp "$T/bytes.expected" "$T/bytes.out"
n=$((n + 1))

rec="$T/ucm-ucm1.jsonl"
check "UCM received the $n REGISTERs and answered 403" \
    test "$(grep '"method":"REGISTER"' "$rec" | grep -c '"answer":"403"' || true)" -eq "$n"
check "UCM saw our Via on top" grep -q '"via_top":"SIP/2.0/TLS edge.example.test:'"$EDGE_PORT"';branch=z9hG4bK-se' "$rec"
check "metrics: $n 403s relayed from UCM" \
    test "$(metric 'sipedge_sip_responses_total\{method="REGISTER",code="403",source="upstream"')" -eq "$n"
check "metrics: no 403 made by the edge" \
    test "$(metric 'sipedge_sip_responses_total\{method="REGISTER",code="403",source="edge"')" -eq 0
logged=$(grep -c 'event=upstream_port_mismatch' "$T/edge.log" || true)
check "the edge logged upstream_port_mismatch once ($logged)" test "$logged" -eq 1
check "the log line names the Warning and the fix" \
    grep -q 'event=upstream_port_mismatch.*SIP OAuth Registration port Mismatch.*fix=' "$T/edge.log"
e2e_done
