#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Dev check of the call scenarios (tests/e2e/sipp/call_*.xml) and Kamailio's UCM config
# (tests/e2e/kamailio/ucm.cfg) without the edge: SIPp UAs through a stunnel that presents the
# edge's client certificate (Kamailio trusts it and checks no token) straight to Kamailio, the
# same flows as e2e t20. Proves the scenarios and the config right, independent of the edge.
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

# A calls B: INVITE, 180, 200, ACK, re-INVITE, ACK, BYE.
ua_start b1 "$P" call_uas.xml bob1 case1
ua_wait_registered b1
check "call: caller's scenario passes" ua_run a1 "$P" call_uac.xml alice1 case1 -key callee bob1
check "call: callee's scenario passes" ua_wait b1
e2e_done
