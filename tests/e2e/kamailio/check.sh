#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The Kamailio registrar of e2e test 8 on its own (no edge): over TLS with the edge's client
# certificate a REGISTER carrying a Path gets 200 OK with Contact and Expires (at most 120), the
# contact is stored with its Path, OPTIONS gets 200; a client certificate from an untrusted CA, or
# none at all, is refused in the handshake. The client is openssl s_client.
source "$SRC/tests/e2e/lib.sh"
e2e_init kamailio_registrar

# sip_tls CERT KEY REQUEST OUT: send the file REQUEST over TLS (client certificate CERT/KEY, or
# none if CERT is -) and write the answer to OUT (s_client's diagnostics to OUT.err). Stdin stays
# open until a whole answer or a TLS alert arrived (at most 5 s), then the connection closes.
sip_tls() {
    local cert=(-cert "$1" -key "$2")
    [ "$1" != - ] || cert=()
    : >"$4"
    : >"$4.err"
    {
        cat "$3"
        for _ in $(seq 1 100); do
            grep -q '^Content-Length' "$4" && break
            grep -q 'alert' "$4.err" && break
            sleep 0.05
        done
    } | timeout 10 openssl s_client "${cert[@]}" -CAfile "$PKI/ucm-ca.crt" \
        -verify_hostname ucm1.example.test -verify_return_error \
        -connect "127.0.0.1:$KAM_PORT" -quiet -no_ign_eof -nocommands >"$4" 2>"$4.err" || true
}

# sip_msg FILE LINES...: a SIP message from header lines (CRLF, empty body).
sip_msg() {
    local f=$1
    shift
    { printf '%s\r\n' "$@"; printf 'Content-Length: 0\r\n\r\n'; } >"$f"
}

KAM_PORT=$(free_port)
start_kamailio "$KAM_PORT"

path='Path: <sip:edge.example.test:5061;transport=tls;lr>'
via='Via: SIP/2.0/TLS edge.example.test:5061;branch=z9hG4bK-se-check1'
sip_msg "$T/register.sip" 'REGISTER sip:ucm1.example.test SIP/2.0' "$via" \
    'Via: SIP/2.0/TCP 10.0.0.7:49152;branch=z9hG4bKclient1;rport' 'Max-Forwards: 69' \
    'From: <sip:alice@example.test>;tag=a1' 'To: <sip:alice@example.test>' 'Call-ID: kam-check-1' \
    'CSeq: 2 REGISTER' \
    'Contact: <sip:alice@10.0.0.7:49152;transport=tcp>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>"' \
    'Expires: 3600' 'Proxy-Authorization: Bearer token="not-a-real-token"' "$path"
sip_tls "$PKI/client.crt" "$PKI/client.key" "$T/register.sip" "$T/register.out"
check "REGISTER with the edge's client certificate gets 200 OK" \
    grep -q '^SIP/2.0 200 OK' "$T/register.out"
check "the 200 carries Expires capped at 120" grep -q '^Expires: 120' "$T/register.out"
check "the 200 carries the Contact with expires=120" \
    grep -q '^Contact: <sip:alice@10.0.0.7:49152;transport=tcp>;expires=120' "$T/register.out"
check "the 200 keeps our Via on top" \
    grep -q '^Via: SIP/2.0/TLS edge.example.test:5061;branch=z9hG4bK-se-check1' "$T/register.out"
check "Kamailio logged the Path, Via, Max-Forwards, Proxy-Authorization and client CN" \
    grep -qF "kam-register: aor=[sip:alice@example.test] path=[${path#Path: }] via=[${via#Via: }] mf=[69] proxy_authorization=[yes] peer_cn=[edge.example.test]" "$KAM_LOG"
check "the token is not in Kamailio's log" bash -c "! grep -q 'not-a-real-token' '$KAM_LOG'"
kamcmd -s "$KAM_CTL" ul.lookup location alice >"$T/ul.out" 2>&1 || true
check "usrloc holds alice's contact with the Path" grep -qF "Path: ${path#Path: }" "$T/ul.out"

sip_msg "$T/short.sip" 'REGISTER sip:ucm1.example.test SIP/2.0' "$via-2" 'Max-Forwards: 69' \
    'From: <sip:bob@example.test>;tag=b1' 'To: <sip:bob@example.test>' 'Call-ID: kam-check-2' \
    'CSeq: 2 REGISTER' 'Contact: <sip:bob@10.0.0.8:49153;transport=tcp>' 'Expires: 60' "$path"
sip_tls "$PKI/client.crt" "$PKI/client.key" "$T/short.sip" "$T/short.out"
check "a shorter requested Expires is granted as is" grep -q '^Expires: 60' "$T/short.out"

sip_msg "$T/options.sip" "OPTIONS sip:ucm1.example.test:$KAM_PORT SIP/2.0" "$via-ka" \
    'Max-Forwards: 70' 'From: <sip:edge.example.test>;tag=k1' 'To: <sip:ucm1.example.test>' \
    'Call-ID: kam-check-ka' 'CSeq: 1 OPTIONS'
sip_tls "$PKI/client.crt" "$PKI/client.key" "$T/options.sip" "$T/options.out"
check "OPTIONS keep-alive gets 200 OK" grep -q '^SIP/2.0 200 OK' "$T/options.out"

sip_tls "$PKI/untrusted.crt" "$PKI/untrusted.key" "$T/options.sip" "$T/untrusted.out"
check "a client certificate from an untrusted CA gets no SIP answer" \
    test ! -s "$T/untrusted.out"
check "... but the unknown_ca alert" grep -q 'alert unknown ca' "$T/untrusted.out.err"
sip_tls - - "$T/options.sip" "$T/nocert.out"
check "no client certificate: no SIP answer" test ! -s "$T/nocert.out"
check "... but the certificate-required alert" grep -q 'alert certificate required' "$T/nocert.out.err"

check "Kamailio reported no internal error (CRITICAL/ALERT)" \
    bash -c "! grep -E ' (CRITICAL|ALERT): ' '$KAM_LOG'"
kids=$(pgrep -P "$KAM_PID" | tr '\n' ' ')
check "Kamailio runs as one main process with children" test -n "$kids"
stop_kamailio
left=0
for p in $kids; do kill -0 "$p" 2>/dev/null && left=$((left + 1)); done
check "stopping Kamailio's main process leaves none of its processes" test "$left" -eq 0
e2e_done
