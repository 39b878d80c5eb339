#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 20: calls through the edge with real peers (issue 9). Kamailio 5.6 is UCM
# (tests/e2e/kamailio/ucm.cfg: registrar with Path, lookup("location"), record-routing t_relay,
# logging every request it relays and every reply it gets). SIPp UAs (tests/e2e/sipp/call_*.xml)
# register through stunnel and the edge with a Bearer token and stay on that connection.
# - A calls B: INVITE, 180, 200, ACK, re-INVITE, ACK, BYE; each in-dialog request crosses the
#   edge on both legs (Kamailio sees the edge's UCM-side Record-Route entry, se-node=, in its
#   Route, after its own entry), and B is reached through the Path the edge put in its REGISTER.
#   Another call where B hangs up: its BYE reaches A by the edge's client-side Record-Route.
# - CANCEL before the answer (200 to the CANCEL, then 487); 486 Busy Here.
# - A message-waiting NOTIFY from UCM's side: a UA registered directly at Kamailio (its own
#   stunnel, the edge's client certificate) sends it to B; Kamailio relays it to the edge's Path.
# - B registers then leaves: a call to B gets 430 Flow Failed from the edge (Kamailio logs it and
#   answers the caller 480).
# - The edge's own refusals: a Route with a forged flow token gets 403, from a client (it never
#   reaches Kamailio) and from UCM's side; an INVITE on a connection that never registered gets
#   407; on a bound connection, an INVITE from another user gets 403; neither reaches Kamailio.
# - The edge's metrics count what it carried, by method (sipedge_sip_requests_total,
#   sipedge_sip_responses_total).
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

# The callee hangs up: its BYE goes UCM -> client on the caller's leg, by the edge's client-side
# Record-Route entry.
ua_pair hangup "$P" call_uas_hangup.xml call_uac_hungup.xml
check "hangup: B's BYE crossed the edge to Kamailio (Route = Kamailio's entry, then A's leg's UCM-side entry)" \
    kam_saw hangup "kam-req: BYE ruri=\[sip:alice-hangup@[^]]*\] route=\[$kam_self, *<sip:[^>]*;se-node=[^>]*>.*peer_cn=\[edge.example.test\]"
check "hangup: Kamailio sent it to the edge, and A's 200 came back through it" \
    kam_saw hangup "kam-reply: 200 OK cseq=\[1 BYE\].*peer_cn=\[edge.example.test\]"

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

# UCM's requests went on the edge's own pooled connections (its Via's alias, RFC 5923): every
# answer Kamailio got from the edge came from a pooled connection's port, none from a connection
# Kamailio opened itself to the edge's client port.
check "Kamailio reused the edge's pooled connections for requests to the clients" \
    bash -c "grep -q 'kam-reply: .*peer_cn=\[edge.example.test\]' '$KAM_LOG' &&
        ! grep -q 'kam-reply: .* from=\[127.0.0.1:$EDGE_PORT\]' '$KAM_LOG'"

# 5. A line whose connection just closed: the edge answers 430 Flow Failed.
ua_csv bob-gone
check "gone: B registered (407, then 200 through the edge) and left" \
    ua_run r-gone "$P" register_bearer.xml bob-gone gone
for _ in $(seq 1 50); do # every UA so far has ended: wait (5 s at most) for the edge to see it
    [ "$(metric '^sipedge_client_connections')" -eq 0 ] && break
    sleep 0.1
done
check "gone: the edge saw B's connection close" test "$(metric '^sipedge_client_connections')" -eq 0
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
# ... and from UCM's side: an in-dialog-looking BYE from the UCM-side peer whose Route, after
# Kamailio's own entry, names the edge with a forged flow token: Kamailio relays it on the
# edge's pooled connection, the edge answers 403.
check "forged-ucm: a UCM-side request with a forged flow token gets 403 from the edge" \
    ua_run c-forged "$PK" call_uac_forged_route.xml carol-forged forged-ucm -key callee bob-call \
    -key route "<sip:127.0.0.1:$KAM_PORT;transport=tls;lr>, $forged"
check "forged-ucm: ... relayed by Kamailio from the edge" \
    kam_saw forged-ucm 'kam-reply: 403 [A-Za-z ]*cseq=\[7 BYE\].*peer_cn=\[edge.example.test\]'
check "unbound: an INVITE before any REGISTER gets 407 with the Bearer challenge" \
    ua_run a-unbound "$P" call_uac_unbound.xml alice-unbound unbound -key callee bob-call
check "unbound: ... and never reached Kamailio" test "$(kam_count unbound 'kam-req: ')" -eq 0
check "wrongfrom: a bound connection's INVITE from another user gets 403" \
    ua_run a-wrongfrom "$P" call_uac_wrong_from.xml alice-wrongfrom wrongfrom \
    -key callee bob-call -key other mallory
check "wrongfrom: ... and never reached Kamailio" test "$(kam_count wrongfrom 'kam-req: ')" -eq 0

# 7. The edge's books (docs/metrics.md). Requests from clients: INVITE 8 (call 2 with the
# re-INVITE, hangup, cancel, busy, gone, unbound, wrongfrom), BYE 3 (call, hangup from B,
# forged), CANCEL 1. Relayed answers (source upstream) to the callers' INVITEs and BYEs: 200 to 3
# INVITEs and 2 BYEs, the 486, 487 and 480 (4xx); the edge's own: 407 and 403 to INVITEs
# (exact), 403 to the forged BYE, 200 to the CANCEL. The responses counter also counts what the
# edge relays towards UCM (the callees' answers) and its own answers to UCM's requests (CANCEL,
# 430, the forged BYE's 403): "at least" for those.
curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" >"$T/metrics.txt" || true
req() { metric "sipedge_sip_requests_total\\{method=\"$1\"\\}"; }
rsp() { metric "sipedge_sip_responses_total\\{method=\"$1\",code=\"$2\",source=\"$3\"\\}"; }
check "metrics: 8 INVITEs, 3 BYEs, 1 CANCEL from clients (got $(req INVITE), $(req BYE), $(req CANCEL))" \
    test "$(req INVITE) $(req BYE) $(req CANCEL)" = "8 3 1"
check "metrics: relayed 200s, at least 3 to INVITEs and 2 to BYEs (got $(rsp INVITE 200 upstream), $(rsp BYE 200 upstream))" \
    test "$(rsp INVITE 200 upstream)" -ge 3 -a "$(rsp BYE 200 upstream)" -ge 2
check "metrics: relayed 4xx to INVITEs (486, 487, 480), at least 3 (got $(rsp INVITE 4xx upstream))" \
    test "$(rsp INVITE 4xx upstream)" -ge 3
check "metrics: the edge's 407 and 403 to INVITEs (got $(rsp INVITE 407 edge) $(rsp INVITE 403 edge))" \
    test "$(rsp INVITE 407 edge) $(rsp INVITE 403 edge)" = "1 1"
check "metrics: the edge's 403 to the forged BYEs (got $(rsp BYE 403 edge))" \
    test "$(rsp BYE 403 edge)" -ge 1
check "metrics: the edge's 200 to the caller's CANCEL (got $(rsp CANCEL 200 edge))" \
    test "$(rsp CANCEL 200 edge)" -ge 1

# What the edge carried and refused, by its call counters: proxied requests (exact for those
# from clients; at least for those to clients, where the INVITE that got the 430 was counted
# too), refusals by the binding (the ACK of a refused INVITE counted too) and UCM's requests
# that found no client.
fwd() { metric "sipedge_calls_forwarded_total\\{method=\"$1\",direction=\"$2\"\\}"; }
check "metrics: forwarded to UCM: 6 INVITEs, 3 ACKs, 2 BYEs (got $(fwd INVITE to_ucm) $(fwd ACK to_ucm) $(fwd BYE to_ucm))" \
    test "$(fwd INVITE to_ucm) $(fwd ACK to_ucm) $(fwd BYE to_ucm)" = "6 3 2"
check "metrics: forwarded to clients: at least 5 INVITEs, 2 BYEs, the NOTIFY (other)" \
    test "$(fwd INVITE to_client)" -ge 5 -a "$(fwd BYE to_client)" -ge 2 -a "$(fwd other to_client)" -ge 1
check "metrics: refused by the binding: unbound and wrong_user" \
    test "$(metric 'sipedge_calls_refused_total\{reason="unbound"')" -ge 1 -a \
    "$(metric 'sipedge_calls_refused_total\{reason="wrong_user"')" -ge 1
check "metrics: UCM's requests without a client: gone (430; Kamailio's ACK of it may count too), 1 forged (403)" \
    test "$(metric 'sipedge_flow_failures_total\{reason="gone"')" -ge 1 -a \
    "$(metric 'sipedge_flow_failures_total\{reason="forged"')" -eq 1

check "no token in the edge's or Kamailio's log" bash -c "! grep -q 'eyJ' '$T/edge.log' '$KAM_LOG'"
check "Kamailio reported no internal error (CRITICAL/ALERT)" \
    bash -c "! grep -E ' (CRITICAL|ALERT): ' '$KAM_LOG'"
# Kamailio first: a connection it opened to the edge would hold the edge's drain.
stop_kamailio
e2e_done
