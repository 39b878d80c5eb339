#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 26: listen.limits.max_handshakes_in_flight. Each TLS handshake that is past its first step
# and waits for its client holds ~35 KB of OpenSSL state; at the cap the edge answers no further
# ClientHello, and those wait in its queue (a few hundred bytes each) until a handshake in flight
# ends. With a cap of 3 and 8 clients that send a ClientHello and then hang: exactly 3 are
# answered; when one of them closes, exactly one more; when one finishes its handshake, one more
# again. The gauge sipedge_tls_handshakes_in_flight shows the 3, and 0 once the clients left.
# UCM's own connection (ucm_listen), made while the cap is reached, is admitted at once and not
# counted. Afterwards a normal client still completes its handshake and gets its answer.
source "$(dirname "$0")/lib.sh"
e2e_init t26_handshake_cap

hs_cap_setup 3
UL_PORT=$(free_port) # UCM's own connections: not capped, and ahead of clients' ClientHellos
EXTRA="ucm_listen: {port: $UL_PORT, host: edge-int.example.test, tls: {ca: $PKI/ucm-ca.crt}, node_names: [ucm1.example.test]}"
start_edge
wait_ready 10
wait_port "$UL_PORT"
printf '%s\r\n' "OPTIONS sip:edge-int.example.test:$UL_PORT SIP/2.0" \
    "Via: SIP/2.0/TLS 127.0.0.1:5091;branch=z9hG4bKucmopt" "Max-Forwards: 70" \
    "From: <sip:ucm1.example.test>;tag=u1" "To: <sip:edge-int.example.test>" "Call-ID: ucmopt" \
    "CSeq: 1 OPTIONS" "Content-Length: 0" "" >"$T/opt.sip"

python3 "$PROBE" cap "$EDGE_PORT" "$PKI/ca.crt" 3 8 --hold "$T/capped" "$T/go" >"$T/probe.out" 2>&1 &
PROBE_PID=$!
for _ in $(seq 1 100); do [ -f "$T/capped" ] && break; sleep 0.1; done
check "the gauge shows the cap reached ($(metric '^sipedge_tls_handshakes_in_flight'))" \
    test "$(metric '^sipedge_tls_handshakes_in_flight')" = 3
check "... and the other 5 ClientHellos waiting ($(metric '^sipedge_tls_client_hellos_waiting'))" \
    test "$(metric '^sipedge_tls_client_hellos_waiting')" = 5
rc=0
"$BIN/sipedge-tlsclient" --connect "127.0.0.1:$UL_PORT" --ca "$PKI/ca.crt" --name localhost \
    --timeout-ms 2000 --cert "$PKI/ucm.crt" --key "$PKI/ucm.key" "send:$T/opt.sip" head \
    </dev/null >"$T/ucm.out" 2>&1 || rc=$?
check "at the cap, UCM's connection is admitted and its OPTIONS answered 200" \
    bash -c "test $rc -eq 0 && grep -aq '^SIP/2.0 200 OK' '$T/ucm.out'"
check "... without taking a client's place ($(metric '^sipedge_tls_handshakes_in_flight'))" \
    test "$(metric '^sipedge_tls_handshakes_in_flight')" = 3
touch "$T/go"
wait "$PROBE_PID" && probe_rc=0 || probe_rc=$?
cat "$T/probe.out"
check "3 of 8 hanging ClientHellos answered, then one per handshake that ends" test "$probe_rc" = 0
hs_cap_after
e2e_done
