#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 28: listen.limits.handshake_timeout_ms counts twice: from the accept until the edge answers
# the ClientHello, then again from that answer. A ClientHello that waited in the edge (here for
# the cap on handshakes in flight, in a storm for the handshake slice) leaves its client the whole
# deadline to answer; before, the wait was taken from the client's time, and a storm longer than
# the deadline cut handshakes the edge had already paid for. With a cap of 1 and a 2 s deadline:
# a first client's ClientHello is answered and it never goes on; a second one waits until the
# edge cuts the first, is answered with less than 1 s left of the deadline from its accept, and
# finishes 0.7 s after that would have passed: its handshake completes and its OPTIONS gets 200.
# A third one, behind the second, is never answered: cut at the deadline from its accept, and
# counted by sipedge_tls_client_hellos_expired_total (the edge's backlog, not the client's pace).
# The edge counted two handshakes cut at the deadline. Then a normal client is served.
source "$(dirname "$0")/lib.sh"
e2e_init t28_handshake_deadline

hs_cap_setup 1
HANDSHAKE_TIMEOUT_MS=2000
start_edge
wait_ready 10

python3 "$PROBE" deadline "$EDGE_PORT" "$PKI/ca.crt" "$HANDSHAKE_TIMEOUT_MS" >"$T/probe.out" 2>&1 &&
    probe_rc=0 || probe_rc=$?
cat "$T/probe.out"
check "a ClientHello that waited gets the whole deadline from its answer" test "$probe_rc" = 0
cut=$(metric '^sipedge_connections_closed_total\{reason="handshake"')
check "two connections cut at the handshake deadline, the first and the third ($cut)" test "$cut" = 2
timeouts=$(metric '^sipedge_tls_handshake_failures_total\{side="client",cause="timeout"')
check "... counted as handshake timeouts ($timeouts)" test "$timeouts" = 2
expired=$(metric '^sipedge_tls_client_hellos_expired_total')
check "... the third as a ClientHello that expired unanswered ($expired)" test "$expired" = 1
hs_cap_after
e2e_done
