#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 1: a REGISTER without a token gets 407 Bearer realm="ccmsipline"; the same client then sends
# its token and gets UCM's 200 through the edge, and UCM saw our Via and Path. SIPp through
# stunnel (one TLS connection per call), 20 users at once, with Redis.
source "$(dirname "$0")/lib.sh"
e2e_init t01_register

start_stack

n=20
{
    echo SEQUENTIAL
    for i in $(seq 1 $n); do echo "user$i;$(mint "user$i");"; done
} >"$T/users.csv"

check "SIPp: $n clients get 407 then 200" run_sipp "$SRC/tests/e2e/sipp/register_bearer.xml" \
    "$T/users.csv" "$n" 100
grep -E "Successful call|Failed call" "$T/sipp.out" | head -4 >&2 || true

rec="$REC"
registers=$(grep -c '"method":"REGISTER"' "$rec" || true)
check "UCM received exactly $n REGISTERs (the 407s never reach it)" test "$registers" -eq "$n"
check "UCM saw our Via on top" grep -q 'SIP/2.0/TLS edge.example.test:'"$EDGE_PORT"';branch=z9hG4bK-se' "$rec"
check "UCM saw our Path (a flow token names the client's connection)" \
    grep -qE 'Path: <sip:[A-Za-z0-9_-]{32}@edge.example.test:'"$EDGE_PORT"';transport=tls;lr;ob>' "$rec"
check "UCM saw Max-Forwards 69" grep -q 'Max-Forwards: 69' "$rec"
check "UCM got the token (forwarded unchanged by default)" grep -q 'Proxy-Authorization: Bearer token=' "$rec"
check "metrics: $n 407s made by the edge" \
    test "$(metric 'sipedge_sip_responses_total\{method="REGISTER",code="407",source="edge"')" -eq "$n"
check "metrics: $n 200s relayed from UCM" \
    test "$(metric 'sipedge_sip_responses_total\{method="REGISTER",code="200",source="upstream"')" -eq "$n"
check "no token in the edge log" bash -c "! grep -q 'eyJ' '$T/edge.log'"
check "metrics: upstream connections up" test "$(metric 'sipedge_upstream_connections.*state="up"')" -ge 2

# The same with TLS 1.2 clients (the edge's own record layer carries TLS 1.2 AEAD too), and with
# CHACHA20-POLY1305 over TLS 1.3.
STUNNEL_EXTRA="sslVersionMax = TLSv1.2" start_stunnel
check "SIPp over TLS 1.2: $n clients get 407 then 200" run_sipp \
    "$SRC/tests/e2e/sipp/register_bearer.xml" "$T/users.csv" "$n" 100
STUNNEL_EXTRA="ciphersuites = TLS_CHACHA20_POLY1305_SHA256" start_stunnel
check "SIPp over TLS 1.3 CHACHA20: $n clients get 407 then 200" run_sipp \
    "$SRC/tests/e2e/sipp/register_bearer.xml" "$T/users.csv" "$n" 100
curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" >"$T/metrics.txt" || true
# (each stunnel also makes one connection when wait_port probes it: at least, not exactly)
check "metrics: $n TLS 1.2 handshakes, on sipedge's record layer" \
    test "$(metric 'sipedge_tls_handshakes_total\{version="1.2",records="sipedge"')" -ge "$n"
check "metrics: $((2 * n)) TLS 1.3 handshakes, on sipedge's record layer" \
    test "$(metric 'sipedge_tls_handshakes_total\{version="1.3",records="sipedge"')" -ge $((2 * n))
check "metrics: no handshake left on OpenSSL's record layer" \
    test "$(metric 'sipedge_tls_handshakes_total\{version="1.[23]",records="openssl"')" -eq 0
check "metrics: $((3 * n)) 200s relayed from UCM" \
    test "$(metric 'sipedge_sip_responses_total\{method="REGISTER",code="200",source="upstream"')" -eq $((3 * n))
e2e_done
