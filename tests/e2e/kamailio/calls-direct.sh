#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Dev check of the call scenarios (tests/e2e/sipp/call_*.xml, notify_mwi.xml) and of Kamailio's
# UCM config (tests/e2e/kamailio/ucm.cfg) without the edge: SIPp UAs through a stunnel that
# presents the edge's client certificate (Kamailio trusts it and checks no token) straight to
# Kamailio run the flows of e2e t20. Proves the scenarios and the config right, independent of the
# edge. The edge's own answers (407 unbound, 403 other From, 403 forged flow token) cannot come
# from Kamailio: those scenarios must fail here, on the answer Kamailio gives instead (strict).
# Usage: BIN=build/dbg SRC=. bash tests/e2e/kamailio/calls-direct.sh
source "$SRC/tests/e2e/lib.sh"
source "$SRC/tests/e2e/lib_calls.sh"
e2e_init kamailio_calls_direct

KAM_PORT=$(free_port)
start_kamailio "$KAM_PORT" ucm.cfg
STUNNEL_TARGET=$KAM_PORT STUNNEL_CA="$PKI/ucm-ca.crt" STUNNEL_HOST=ucm1.example.test \
    STUNNEL_EXTRA="cert = $PKI/client.crt
key = $PKI/client.key" start_stunnel
P=$STUNNEL_PORT

ua_pair call "$P" call_uas.xml call_uac.xml
for m in ACK INVITE BYE; do
    check "call: Kamailio routed the in-dialog $m by its Record-Route (Route to itself)" \
        kam_saw call "kam-req: $m ruri=\[sip:bob-call@[^]]*alias=[^]]*\] route=\[<sip:127.0.0.1:$KAM_PORT;transport=tls;lr=on>\]"
done
ua_pair hangup "$P" call_uas_hangup.xml call_uac_hungup.xml
check "hangup: Kamailio routed the callee's BYE by the caller's Record-Route" \
    kam_saw hangup "kam-req: BYE ruri=\[sip:alice-hangup@[^]]*alias=[^]]*\] route=\[<sip:127.0.0.1:$KAM_PORT;transport=tls;lr=on>\]"
ua_pair busy "$P" call_uas_busy.xml call_uac_busy.xml
check "busy: Kamailio got the 486" kam_saw busy 'kam-reply: 486 Busy Here'
ua_pair cancel "$P" call_uas_cancel.xml call_uac_cancel.xml
check "cancel: Kamailio relayed the CANCEL" kam_saw cancel 'kam-req: CANCEL '
check "cancel: Kamailio got the 487" kam_saw cancel 'kam-reply: 487 '
ua_pair flow "$P" call_uas_430.xml call_uac_gone.xml
check "flow: Kamailio logged the 430 it got" kam_saw flow 'kam-reply: 430 Flow Failed'

# MWI: carol registers directly and sends bob-mwi a NOTIFY; Kamailio relays it to bob-mwi.
ua_start b-mwi "$P" call_uas_notify.xml bob-mwi mwi
ua_wait_registered b-mwi || check "mwi: bob-mwi registers" false
check "mwi: NOTIFY sender's scenario passes" ua_run c-mwi "$P" notify_mwi.xml carol-mwi mwi -key callee bob-mwi
check "mwi: line's scenario passes" ua_wait b-mwi
check "mwi: Kamailio relayed the NOTIFY" \
    kam_saw mwi "kam-req: NOTIFY ruri=\[sip:bob-mwi@example.test\]"

# The edge's own refusals: Kamailio answers otherwise, so these scenarios fail against it.
fails_with() { # fails_with NAME CODE SCENARIO [sipp options]: the UA fails on status CODE
    local n=$1 code=$2
    shift 2
    ! ua_run "$n" "$P" "$1" "alice-$n" "$n" "${@:2}" &&
        grep -q "SIP/2.0 $code " "$T/sipp-$n.err" 2>/dev/null
}
check "unbound: strict, fails on Kamailio's 404 (no such callee) instead of 407" \
    fails_with unbound 404 call_uac_unbound.xml -key callee nobody
check "wrong-from: strict, fails on Kamailio's 404 instead of 403" \
    fails_with wrongfrom 404 call_uac_wrong_from.xml -key callee nobody -key other mallory
dead=$(free_port)
check "forged: strict, fails on Kamailio's relay error instead of 403" \
    fails_with forged 500 call_uac_forged_route.xml -key callee bob \
    -key route "<sip:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@127.0.0.1:$dead;transport=tls;lr>"

check "Kamailio reported no internal error (CRITICAL/ALERT)" \
    bash -c "! grep -E ' (CRITICAL|ALERT): ' '$KAM_LOG'"
e2e_done
