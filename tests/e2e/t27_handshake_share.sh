#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 27: the per-source share of listen.limits.max_handshakes_in_flight. One peer that opens
# connections, sends ClientHellos and never answers the edge's flight must not hold the whole
# cap until the handshake deadline cuts them: a source (an IPv4 address, an IPv6 /64) with a
# sixteenth of the cap in flight (at least 1) gets further answers only while less than half of
# it is in flight. With a cap of 8 and one worker: 12 hanging ClientHellos from 127.0.0.2 get 4
# answers; 4 from other sources all get theirs (8 in flight); a fifth source waits, and is
# answered ahead of 127.0.0.2's queue when another source's handshake ends; when 127.0.0.2's
# answered connections close, exactly one more of its ClientHellos is answered (it is heavy
# again at once). Then a normal client still completes its handshake and gets its answers.
source "$(dirname "$0")/lib.sh"
e2e_init t27_handshake_share

hs_cap_setup 8
start_edge
wait_ready 10

python3 "$PROBE" share "$EDGE_PORT" "$PKI/ca.crt" 8 12 >"$T/probe.out" 2>&1 && probe_rc=0 || probe_rc=$?
cat "$T/probe.out"
check "one source holds at most half the cap; the other sources get the rest" test "$probe_rc" = 0
check "11 of 127.0.0.2's 12 ClientHellos were held, each once ($(metric '^sipedge_tls_client_hellos_held_total'))" \
    test "$(metric '^sipedge_tls_client_hellos_held_total')" = 11
hs_cap_after
e2e_done
