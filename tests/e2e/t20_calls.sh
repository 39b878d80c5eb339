#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 20: calls through the edge with real peers (issue 9). Kamailio 5.6 is UCM
# (tests/e2e/kamailio/ucm.cfg: registrar with Path, lookup("location"), record-routing t_relay,
# logging every request it relays and every reply it gets). SIPp UAs (tests/e2e/sipp/call_*.xml)
# register through stunnel and the edge with a Bearer token and stay on that connection.
# - A calls B: INVITE, 180, 200, ACK, re-INVITE, ACK, BYE; each in-dialog request crosses the
#   edge on both legs (Kamailio sees the edge's UCM-side Record-Route entry, se-node=, in its
#   Route, after its own entry), and B is reached through the Path the edge put in its REGISTER.
# - CANCEL before the answer (200 to the CANCEL, then 487); 486 Busy Here.
# - A message-waiting NOTIFY from UCM's side: a UA registered directly at Kamailio (its own
#   stunnel, the edge's client certificate) sends it to B; Kamailio relays it to the edge's Path.
# - B registers then leaves: a call to B gets 430 Flow Failed from the edge (Kamailio logs it and
#   answers the caller 480).
# - The edge's own refusals: a Route with a forged flow token gets 403; an INVITE on a connection
#   that never registered gets 407; on a bound connection, an INVITE from another user gets 403;
#   none of them reaches Kamailio.
# - The edge's metrics count what it carried.
# The edge's config: sip.edge_host 127.0.0.1, so its Path and Via name 127.0.0.1:<client port>,
# which Kamailio reaches without DNS, and on the edge's own pooled connection when the edge's Via
# carries ";alias" (tcp_accept_aliases, RFC 5923).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_calls.sh"
e2e_init t20_calls

REDIS_PORT=$(free_port)
start_redis "$REDIS_PORT"
KAM_PORT=$(free_port)
start_kamailio "$KAM_PORT" ucm.cfg
NODES="127.0.0.1 $KAM_PORT ucm1.example.test"
EDGE_HOST=127.0.0.1
start_edge
wait_ready 10
start_stunnel
P=$STUNNEL_PORT
# The UCM-side peer (NOTIFY sender) talks to Kamailio directly.
STUNNEL_TARGET=$KAM_PORT STUNNEL_CA="$PKI/ucm-ca.crt" STUNNEL_HOST=ucm1.example.test \
    STUNNEL_EXTRA="cert = $PKI/client.crt
key = $PKI/client.key" start_stunnel
PK=$STUNNEL_PORT

kam_self="<sip:127.0.0.1:$KAM_PORT;transport=tls;lr=on>"
edge_path="<sip:[^@>]+@127\.0\.0\.1:$EDGE_PORT;transport=tls;lr;ob>"

# 1. A whole call, both legs through the edge.
ua_pair call "$P" call_uas.xml call_uac.xml
check "call: B's REGISTER reached Kamailio with the edge's Path (flow token @127.0.0.1:$EDGE_PORT, ob)" \
    kam_saw 'reg-bob-call///call' "kam-register: aor=\[sip:bob-call@example.test\] path=\[$edge_path\]"
check "call: ... and the edge's Via (127.0.0.1:$EDGE_PORT, alias)" \
    kam_saw 'reg-bob-call///call' "via=\[SIP/2.0/TLS 127\.0\.0\.1:$EDGE_PORT;[^],]*alias"
check "call: the INVITE came from the edge, double record-routed (UCM-side entry with se-node)" \
    kam_saw call "kam-req: INVITE ruri=\[sip:bob-call@example.test\] .*rr=\[<sip:[^>]*;se-node=[^>]*>, *<sip:[^>]*>.*peer_cn=\[edge.example.test\]"
check "call: Kamailio sent the INVITE to B through the edge's Path" \
    kam_saw call "kam-branch: INVITE to \[sip:bob-call@[^]]*\] du=\[sip:[^@]+@127\.0\.0\.1:$EDGE_PORT;transport=tls;lr;ob\]"
check "call: B's 180 and 200 came back through the edge" \
    test "$(kam_count call "kam-reply: (180|200) [A-Za-z]+ cseq=\[1 INVITE\].*peer_cn=\[edge.example.test\]")" -eq 2
for m in 'ACK:1' 'ACK:2' 'INVITE:2' 'BYE:3'; do
    check "call: in-dialog ${m%:*} (CSeq ${m#*:}) crossed the edge: Route = Kamailio's entry, then the edge's UCM-side entry" \
        grep -qE "\{[0-9]+ ${m#*:} ${m%:*} call\} .*kam-req: ${m%:*} ruri=\[sip:bob-call@[^]]*\] route=\[$kam_self, *<sip:[^>]*;se-node=[^>]*>.*peer_cn=\[edge.example.test\]" "$KAM_LOG"
done
check "call: the BYE's 200 came back through the edge" \
    kam_saw call "kam-reply: 200 OK cseq=\[3 BYE\].*peer_cn=\[edge.example.test\]"

# 2. CANCEL before the answer; 3. busy.
ua_pair cancel "$P" call_uas_cancel.xml call_uac_cancel.xml
check "cancel: Kamailio got the edge's CANCEL and relayed it" kam_saw cancel 'kam-req: CANCEL .*peer_cn=\[edge.example.test\]'
check "cancel: B's 487 came back through the edge" kam_saw cancel 'kam-reply: 487 .*peer_cn=\[edge.example.test\]'
ua_pair busy "$P" call_uas_busy.xml call_uac_busy.xml
check "busy: B's 486 came back through the edge" kam_saw busy 'kam-reply: 486 Busy Here.*peer_cn=\[edge.example.test\]'

# 4. MWI NOTIFY from UCM's side to a line registered through the edge.
ua_start b-mwi "$P" call_uas_notify.xml bob-mwi mwi
if ua_wait_registered b-mwi; then
    rc=0
    ua_run c-mwi "$PK" notify_mwi.xml carol-mwi mwi -key callee bob-mwi || rc=$?
    check "mwi: the UCM-side sender's NOTIFY gets 200" test "$rc" -eq 0
    [ "$rc" -eq 0 ] || ua_stop b-mwi
    check "mwi: B got the NOTIFY and answered 200 (its scenario passes)" ua_wait b-mwi
else
    check "mwi: B registers" false
    ua_stop b-mwi
fi
check "mwi: Kamailio sent the NOTIFY through the edge's Path" \
    kam_saw mwi "kam-branch: NOTIFY to \[sip:bob-mwi@[^]]*\] du=\[sip:[^@]+@127\.0\.0\.1:$EDGE_PORT;"

# 5. A line whose connection just closed: the edge answers 430 Flow Failed.
ua_csv bob-gone
ua_run r-gone "$P" register_bearer.xml bob-gone gone
check "gone: B registered (and left)" test "$(grep -c 'kam-register: aor=\[sip:bob-gone@' "$KAM_LOG" || true)" -ge 1
sleep 0.3
check "gone: the caller gets 480 (Kamailio's answer to the 430)" \
    ua_run a-gone "$P" call_uac_gone.xml alice-gone gone -key callee bob-gone
check "gone: Kamailio logged the edge's 430 Flow Failed" \
    kam_saw gone 'kam-reply: 430 [A-Za-z ]*cseq=\[1 INVITE\].*peer_cn=\[edge.example.test\]'

# 6. The edge's own refusals, none of which reaches Kamailio.
forged="<sip:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@127.0.0.1:$EDGE_PORT;transport=tls;lr>"
check "forged: a Route with a forged flow token gets 403" \
    ua_run a-forged "$P" call_uac_forged_route.xml alice-forged forged -key callee bob-call \
    -key route "$forged"
check "forged: ... and never reached Kamailio" test "$(kam_count forged 'kam-req: ')" -eq 0
check "unbound: an INVITE before any REGISTER gets 407 with the Bearer challenge" \
    ua_run a-unbound "$P" call_uac_unbound.xml alice-unbound unbound -key callee bob-call
check "unbound: ... and never reached Kamailio" test "$(kam_count unbound 'kam-req: ')" -eq 0
check "wrongfrom: a bound connection's INVITE from another user gets 403" \
    ua_run a-wrongfrom "$P" call_uac_wrong_from.xml alice-wrongfrom wrongfrom \
    -key callee bob-call -key other mallory
check "wrongfrom: ... and never reached Kamailio" test "$(kam_count wrongfrom 'kam-req: ')" -eq 0

# 7. The edge's books. Client INVITEs: call 2 (with the re-INVITE), cancel, busy, gone,
# unbound, wrongfrom. Counted under method="INVITE" if the edge has that label, else "other".
m=other
curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -q 'sipedge_sip_requests_total{method="INVITE"' && m=INVITE
e2e_log "metrics: client INVITEs counted under method=\"$m\""
check "metrics: the 7 client INVITEs are counted" \
    test "$(metric "sipedge_sip_requests_total\\{method=\"$m\"")" -ge 7
check "metrics: 200s from upstream relayed for non-REGISTER requests (INVITE, re-INVITE, BYE)" \
    test "$(metric 'sipedge_sip_responses_total\{method="(INVITE|BYE|other)",code="200",source="upstream"')" -ge 3
check "metrics: the edge's 407 to the unbound INVITE" \
    test "$(metric 'sipedge_sip_responses_total\{method="(INVITE|other)",code="407",source="edge"')" -ge 1
check "metrics: the edge's 403s (other From, forged flow token)" \
    test "$(metric 'sipedge_sip_responses_total\{method="(INVITE|BYE|other)",code="403",source="edge"')" -ge 2

check "no token in the edge's or Kamailio's log" bash -c "! grep -q 'eyJ' '$T/edge.log' '$KAM_LOG'"
check "Kamailio reported no internal error (CRITICAL/ALERT)" \
    bash -c "! grep -E ' (CRITICAL|ALERT): ' '$KAM_LOG'"
# Kamailio first: a connection it opened to the edge would hold the edge's drain.
stop_kamailio
e2e_done
