#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 19: the mutual-TLS listener for UCM (issue 9, ucm_listen). Only a certificate chained to the
# UCM CA and carrying a configured node name is admitted: none, another CA's, or a UCM-CA
# certificate with another name fail the handshake, each logged as ucm_peer_refused with its
# cause. An admitted UCM connection gets the edge's own OPTIONS answer, reaches a client
# registered through the edge by the flow token of its Path (the client receives the INVITE, the
# 100 Trying comes back on that UCM connection), and a forged token gets 403 there; a SIPp line
# that answers 486 has its answer come back on UCM's connection (tests/e2e/ucm_peer.py). The
# refusals are counted by cause (sipedge_ucm_peers_refused_total). The Path and
# the Via towards UCM name the listener's host:port.
source "$(dirname "$0")/lib.sh"
e2e_init t19_ucm_listener

REDIS_PORT=$(free_port)
start_redis "$REDIS_PORT"
UCM_PORT=$(free_port)
start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
UL_PORT=$(free_port)
EXTRA="ucm_listen: {port: $UL_PORT, host: edge-int.example.test, tls: {ca: $PKI/ucm-ca.crt}, node_names: [ucm1.example.test]}"
start_edge
wait_ready 10
REC="$T/ucm-ucm1.jsonl"
touch "$REC"
wait_port "$UL_PORT"

# A UCM-CA certificate for a name the edge does not list.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=rogue.example.test \
    -keyout "$T/rogue.key" -out "$T/rogue.csr" 2>/dev/null
printf 'subjectAltName=DNS:rogue.example.test\nextendedKeyUsage=clientAuth,serverAuth\n' >"$T/rogue.ext"
openssl x509 -req -in "$T/rogue.csr" -CA "$PKI/ucm-ca.crt" -CAkey "$PKI/ucm-ca.key" \
    -CAcreateserial -days 2 -extfile "$T/rogue.ext" -out "$T/rogue.crt" 2>/dev/null

tls_to() { # tls_to PORT [--cert C --key K] STEPS...: a raw TLS peer
    local port=$1
    shift
    "$BIN/sipedge-tlsclient" --connect "127.0.0.1:$port" --ca "$PKI/ca.crt" --name localhost \
        --timeout-ms 5000 "$@" </dev/null
}
as_ucm() { tls_to "$UL_PORT" --cert "$PKI/ucm.crt" --key "$PKI/ucm.key" "$@"; }

# --- the client: registers through the edge, then waits for a request on the same connection ---
tok=$(mint bob)
printf '%s\r\n' "REGISTER sip:example.test SIP/2.0" \
    "Via: SIP/2.0/TLS 192.0.2.7:5000;branch=z9hG4bKbobreg" "Max-Forwards: 70" \
    "From: <sip:bob@example.test>;tag=b1" "To: <sip:bob@example.test>" "Call-ID: bobreg" \
    "CSeq: 1 REGISTER" "Contact: <sip:bob@192.0.2.7:5000;transport=tls>" "Expires: 120" \
    "Proxy-Authorization: Bearer $tok" "Content-Length: 0" "" >"$T/reg.sip"
tls_to "$EDGE_PORT" --timeout-ms 10000 "send:$T/reg.sip" head head >"$T/bob.out" 2>&1 &
bob=$!
for _ in $(seq 1 50); do grep -q '"call_id":"bobreg"' "$REC" && break; sleep 0.1; done
path=$(grep '"call_id":"bobreg"' "$REC" | head -1 | sed -E 's/.*"path":\["([^"]*)"\].*/\1/')
check "the REGISTER's Path names the UCM listener (host and port)" \
    grep -qE "^<sip:[A-Za-z0-9_-]{32}@edge-int\.example\.test:$UL_PORT;transport=tls;lr;ob>\$" <<<"$path"
check "... and so does our Via towards UCM (with alias)" \
    grep -q "\"via_top\":\"SIP/2.0/TLS edge-int.example.test:$UL_PORT;branch=z9hG4bK-se[0-9a-f.]*;alias\"" "$REC"

# --- an admitted UCM connection ---
printf '%s\r\n' "OPTIONS sip:edge-int.example.test:$UL_PORT SIP/2.0" \
    "Via: SIP/2.0/TLS 127.0.0.1:5091;branch=z9hG4bKucmopt" "Max-Forwards: 70" \
    "From: <sip:ucm1.example.test>;tag=u1" "To: <sip:edge-int.example.test>" "Call-ID: ucmopt" \
    "CSeq: 1 OPTIONS" "Content-Length: 0" "" >"$T/opt.sip"
printf '%s\r\n' "INVITE sip:bob@192.0.2.7:5000;transport=tls SIP/2.0" \
    "Via: SIP/2.0/TLS 127.0.0.1:5091;branch=z9hG4bKucminv" "Route: $path" "Max-Forwards: 70" \
    "From: <sip:carol@example.test>;tag=c1" "To: <sip:bob@example.test>" "Call-ID: ucminv" \
    "CSeq: 1 INVITE" "Contact: <sip:carol@127.0.0.1:5091;transport=tls>" "Content-Length: 0" "" \
    >"$T/inv.sip"
forged="<sip:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@edge-int.example.test:$UL_PORT;transport=tls;lr>"
sed -e "s#^Route: .*#Route: $forged\r#" -e 's/ucminv/ucmforged/; s/z9hG4bKucminv/z9hG4bKucmforged/' \
    "$T/inv.sip" >"$T/forged.sip"
rc=0
as_ucm "send:$T/opt.sip" head "send:$T/inv.sip" head "send:$T/forged.sip" head >"$T/ucm.out" || rc=$?
check "UCM's certificate (listed name) is admitted" test "$rc" -eq 0
check "... logged ucm_peer_admitted" grep -q 'event=ucm_peer_admitted' "$T/edge.log"
check "the edge answers UCM's OPTIONS itself: 200" \
    bash -c "grep -a -A8 '^SIP/2.0 200 OK' '$T/ucm.out' | grep -q 'Call-ID: ucmopt'"
check "UCM's INVITE by the Path: 100 Trying on UCM's connection" \
    bash -c "grep -a -A8 '^SIP/2.0 100 Trying' '$T/ucm.out' | grep -q 'Call-ID: ucminv'"
check "a forged flow token: 403 on UCM's connection" \
    bash -c "grep -a -A8 '^SIP/2.0 403 ' '$T/ucm.out' | grep -q 'Call-ID: ucmforged'"
wait "$bob" || true
check "bob received UCM's INVITE through the edge, on his registered connection" \
    grep -aq '^INVITE sip:bob@192.0.2.7:5000;transport=tls SIP/2.0' "$T/bob.out"
check "... with the edge's Via for clients on top and no Route left" \
    bash -c "grep -aq '^Via: SIP/2.0/TLS 127.0.0.1:$EDGE_PORT;branch=z9hG4bK-st' '$T/bob.out' ||
             grep -aq '^Via: SIP/2.0/TLS edge.example.test:$EDGE_PORT;branch=z9hG4bK-st' '$T/bob.out'"
check "... and our Record-Route pair, client side first" \
    grep -aqE "^Record-Route: <sip:[A-Za-z0-9_-]{32}@edge\.example\.test:$EDGE_PORT;transport=tls;lr>, <sip:edge-int\.example\.test:$UL_PORT;transport=tls;lr;se-node=" "$T/bob.out"

# --- refused peers ---
rc=0
tls_to "$UL_PORT" "send:$T/opt.sip" head >"$T/nocert.out" 2>&1 || rc=$?
check "no client certificate: refused" test "$rc" -ne 0
rc=0
tls_to "$UL_PORT" --cert "$PKI/untrusted.crt" --key "$PKI/untrusted.key" "send:$T/opt.sip" head \
    >"$T/untrusted.out" 2>&1 || rc=$?
check "a certificate from another CA: refused" test "$rc" -ne 0
rc=0
tls_to "$UL_PORT" --cert "$T/rogue.crt" --key "$T/rogue.key" "send:$T/opt.sip" head \
    >"$T/rogue.out" 2>&1 || rc=$?
check "a UCM-CA certificate without a listed name: refused" test "$rc" -ne 0
for _ in $(seq 1 30); do
    [ "$(grep -c 'event=ucm_peer_refused' "$T/edge.log" || true)" -ge 3 ] && break
    sleep 0.1
done
check "each refusal logged with its cause: no certificate" \
    grep -q 'event=ucm_peer_refused .*cause=no_peer_certificate' "$T/edge.log"
check "... a certificate from a CA not in ucm_listen.tls.ca" \
    grep -q 'event=ucm_peer_refused .*cause=untrusted_issuer' "$T/edge.log"
check "... a name not in ucm_listen.node_names (named in the log)" \
    grep -q 'event=ucm_peer_refused .*cause=hostname_mismatch.*SAN=DNS:rogue.example.test' "$T/edge.log"
check "the client port does not take UCM's role: an INVITE there is challenged" \
    bash -c "tls_out=\$('$BIN/sipedge-tlsclient' --connect 127.0.0.1:$EDGE_PORT --ca '$PKI/ca.crt' \
        --name localhost --timeout-ms 5000 send:'$T/inv.sip' head </dev/null); \
        grep -q '^SIP/2.0 407 ' <<<\"\$tls_out\""
check "metrics: UCM listener handshakes refused are counted" \
    test "$(metric 'sipedge_tls_handshake_failures_total\{side="client"')" -ge 3
refused() { metric "sipedge_ucm_peers_refused_total\\{cause=\"$1\"\\}"; }
check "metrics: one refusal per cause (no_certificate untrusted name_not_allowed: got $(refused no_certificate) $(refused untrusted) $(refused name_not_allowed))" \
    test "$(refused no_certificate) $(refused untrusted) $(refused name_not_allowed)" = "1 1 1"
check "metrics: one INVITE forwarded to a client" \
    test "$(metric 'sipedge_calls_forwarded_total\{method="INVITE",direction="to_client"')" -eq 1
check "metrics: one forged flow" test "$(metric 'sipedge_flow_failures_total\{reason="forged"')" -eq 1

# A line that answers: SIPp (call_uas_busy.xml) registers through stunnel and the edge; UCM's
# INVITE by its Path on a UCM listener connection (tests/e2e/ucm_peer.py) reaches it, and the
# line's 486 comes back on that same connection (after the edge's 100), then UCM's ACK.
source "$SRC/tests/e2e/lib_calls.sh"
start_stunnel
ua_start b-busy "$STUNNEL_PORT" call_uas_busy.xml bob-busy busy
if ua_wait_registered b-busy; then
    bpath=$(grep '"call_id":"reg-bob-busy' "$REC" | tail -n 1 | sed -E 's/.*"path":\["([^"]*)"\].*/\1/')
    out=$(timeout 15 python3 "$SRC/tests/e2e/ucm_peer.py" "$UL_PORT" "$PKI/ca.crt" "$PKI/ucm.crt" \
        "$PKI/ucm.key" invite "$bpath" bob-busy busy || true)
    check "UCM's INVITE to an answering line: 100, then the line's 486 on UCM's connection (got '${out//$'\n'/ | }')" \
        test "$(tr '\n' '|' <<<"$out")" = "SIP/2.0 100 Trying|SIP/2.0 486 Busy Here|"
    [ "${out##*$'\n'}" = "SIP/2.0 486 Busy Here" ] || ua_stop b-busy
    check "... the line got the INVITE, answered 486 and got the ACK (its scenario passes)" ua_wait b-busy
else
    check "bob-busy registers through the edge" false
    ua_stop b-busy
fi

# --check-config names the missing key.
sed -e '/^ucm_listen:/d' "$T/edge.yaml" >"$T/bad.yaml"
echo "ucm_listen: {port: $UL_PORT}" >>"$T/bad.yaml"
out=$("$EDGE" --check-config "$T/bad.yaml" 2>&1 || true)
check "--check-config: ucm_listen.port without a CA names ucm_listen.tls.ca" \
    grep -q 'ucm_listen.tls.ca: required with ucm_listen.port' <<<"$out"
e2e_done
