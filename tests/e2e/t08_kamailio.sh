#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 8: interoperability with a SIP stack we did not write. Kamailio (Debian's 5.6, configured by
# tests/e2e/kamailio/) is the registrar on the UCM port, requiring and verifying the edge's client
# certificate. 20 SIPp clients through stunnel get 407, then Kamailio's 200 through the edge;
# Kamailio received our Path, Via, Max-Forwards and the Proxy-Authorization, answered our OPTIONS
# keep-alives, and stored every contact with our Path. Then an edge whose client certificate
# Kamailio does not trust reports Kamailio's unknown_ca alert.
source "$(dirname "$0")/lib.sh"
e2e_init t08_kamailio

REDIS_PORT=$(free_port)
start_redis "$REDIS_PORT"
KAM_PORT=$(free_port)
start_kamailio "$KAM_PORT"
NODES="127.0.0.1 $KAM_PORT ucm1.example.test"
start_edge
wait_ready 10
start_stunnel

n=20
{
    echo SEQUENTIAL
    for i in $(seq 1 $n); do echo "user$i;$(mint "user$i");"; done
} >"$T/users.csv"

check "SIPp: $n clients get 407 then Kamailio's 200" run_sipp \
    "$SRC/tests/e2e/sipp/register_bearer.xml" "$T/users.csv" "$n" 100
grep -E "Successful call|Failed call" "$T/sipp.out" | head -4 >&2 || true

# Path names the client's connection by a flow token (RFC 5626 style, 32 base64url characters);
# our Via carries `alias` (RFC 5923) so UCM may send to that Path over the same connection.
path="<sip:[A-Za-z0-9_-]{32}@edge\\.example\\.test:$EDGE_PORT;transport=tls;lr;ob>"
via="SIP/2\\.0/TLS edge\\.example\\.test:$EDGE_PORT;branch=z9hG4bK-se[0-9a-f.]*;alias"
regs=$(grep -c 'kam-register: ' "$KAM_LOG" || true)
check "Kamailio received exactly $n REGISTERs (the 407s never reach it)" test "$regs" -eq "$n"
ours=$(grep -cE "path=\\[$path\\] via=\\[$via" "$KAM_LOG" || true)
check "every REGISTER carried our Path and our Via on top" test "$ours" -eq "$n"
check "every REGISTER carried Max-Forwards 69" \
    test "$(grep -c 'kam-register: .* mf=\[69\]' "$KAM_LOG" || true)" -eq "$n"
check "every REGISTER carried the Proxy-Authorization (forwarded by default)" \
    test "$(grep -c 'kam-register: .* proxy_authorization=\[yes\]' "$KAM_LOG" || true)" -eq "$n"
check "Kamailio verified the edge's client certificate (CN edge.example.test)" \
    test "$(grep -c 'kam-register: .* peer_cn=\[edge.example.test\]' "$KAM_LOG" || true)" -eq "$n"

# The edge pings each pooled connection every KEEPALIVE_MS (1 s): wait (at most 5 s) for one.
for _ in $(seq 1 50); do grep -q 'kam-options: ' "$KAM_LOG" && break; sleep 0.1; done
check "Kamailio answered the edge's OPTIONS keep-alive" \
    grep -qF "kam-options: via=[SIP/2.0/TLS edge.example.test:$EDGE_PORT;branch=z9hG4bK-se" "$KAM_LOG"

kamcmd -s "$KAM_CTL" ul.dump >"$T/ul.dump" 2>&1 || true
check "Kamailio's location table holds $n AoRs" \
    test "$(grep -c 'AoR: user' "$T/ul.dump" || true)" -eq "$n"
check "... each contact stored with our Path" \
    test "$(grep -cE "Path: $path" "$T/ul.dump" || true)" -eq "$n"
check "metrics: $n 407s made by the edge" \
    test "$(metric 'sipedge_sip_responses_total\{method="REGISTER",code="407",source="edge"')" -eq "$n"
check "metrics: $n 200s relayed from Kamailio" \
    test "$(metric 'sipedge_sip_responses_total\{method="REGISTER",code="200",source="upstream"')" -eq "$n"
check "no token in the edge's or Kamailio's log" bash -c "! grep -q 'eyJ' '$T/edge.log' '$KAM_LOG'"

# Kamailio refuses an edge whose client certificate comes from a CA it does not trust: the edge
# names the cause it got from Kamailio's alert (unknown_ca) and is not ready.
stop_edge
EDGE_PORT='' ADMIN_PORT='' UP_CERT="$PKI/untrusted.crt" UP_KEY="$PKI/untrusted.key"
start_edge
for _ in $(seq 1 50); do
    curl -sS "http://127.0.0.1:$ADMIN_PORT/readyz" >"$T/readyz.out" 2>&1 || true
    grep -q 'cause=unknown_ca' "$T/readyz.out" && grep -q 'event=upstream_tls_failed' "$T/edge.log" &&
        break
    sleep 0.1
done
check "untrusted client certificate: /readyz says no node is up" \
    grep -q 'upstream_nodes_up: 0 of 1' "$T/readyz.out"
check "... and names Kamailio's unknown_ca alert" \
    grep -q 'cause=unknown_ca alert_recv=unknown_ca' "$T/readyz.out"
check "the edge logs the failure with its cause" \
    grep -q 'event=upstream_tls_failed .*cause=unknown_ca' "$T/edge.log"
check "Kamailio refused the certificate in the handshake" \
    grep -q 'certificate verify failed' "$KAM_LOG"
check "Kamailio reported no internal error (CRITICAL/ALERT) all along" \
    bash -c "! grep -E ' (CRITICAL|ALERT): ' '$KAM_LOG'"
e2e_done
