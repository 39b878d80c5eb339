#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 27: each source's share of listen.limits.max_handshakes_in_flight. A source (an IPv4
# address, an IPv6 /64) with a sixteenth of the cap in flight (at least 1), or more than that many
# ClientHellos waiting, is heavy: its ClientHellos wait until no other source's does, and are
# answered only while less than half the cap is in flight. With a cap of 8 and one worker:
# - 12 hanging ClientHellos from 127.0.0.2 get 4 answers; 4 from other sources all get theirs (8
#   in flight); a fifth source waits, and is answered ahead of 127.0.0.2's queue when another
#   source's handshake ends; when 127.0.0.2's answered connections close it gets none more (8 of
#   its ClientHellos still wait, and half the cap is in flight), once the others close 3;
# - 8 sources hold the cap; 3 ClientHellos from 127.0.0.3 then one from 127.0.0.41 wait; when a
#   handshake ends 127.0.0.41's is answered, not the first in the queue; below half the cap the 3.
# sipedge_tls_client_hellos_held_total counts the ClientHellos set aside. Then a normal client
# still completes its handshake and gets its answers.
source "$(dirname "$0")/lib.sh"
e2e_init t27_handshake_share

hs_cap_setup 8
start_edge
wait_ready 10

python3 "$PROBE" share "$EDGE_PORT" "$PKI/ca.crt" 8 12 >"$T/probe.out" 2>&1 && probe_rc=0 || probe_rc=$?
cat "$T/probe.out"
check "one source holds at most half the cap; the other sources get the rest" test "$probe_rc" = 0
# the first of the 12 is held too when the edge read the second before it answered the first
held=$(metric '^sipedge_tls_client_hellos_held_total')
check "11 or 12 of 127.0.0.2's 12 ClientHellos were held, each once ($held)" \
    test "$held" -ge 11 -a "$held" -le 12
python3 "$PROBE" fair "$EDGE_PORT" "$PKI/ca.crt" 8 >"$T/fair.out" 2>&1 && probe_rc=0 || probe_rc=$?
cat "$T/fair.out"
check "a source with ClientHellos queued goes after a source with one" test "$probe_rc" = 0
check "127.0.0.3's 3 were held too ($(metric '^sipedge_tls_client_hellos_held_total'))" \
    test "$(metric '^sipedge_tls_client_hellos_held_total')" = $((held + 3))
hs_cap_after
e2e_done
