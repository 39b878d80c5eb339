#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# sighup: the edge is sent SIGHUP 20 times, evenly from 20 % to 80 % of the load: each reloads
# its certificates and keys (new TLS contexts for new connections and the upstream pool) while
# REGISTERs flow on the open connections.
# Invariants: every REGISTER answered 200 (no request lost or refused across a reload), every
# reload succeeded (sipedge_reload_last_successful 1, its timestamp moved), the common ones.
# Figures: SIGHUPs sent.
# shellcheck disable=SC2317 # fault() runs through chaos_run
# shellcheck source=bench/chaos/lib.sh
source "$(dirname "$0")/lib.sh"
chaos_init sighup
HUPS=20

fault() {
    local i
    chaos_at 0.2
    chaos_fault "SIGHUP x $HUPS"
    for i in $(seq 1 "$HUPS"); do
        kill -HUP "$EDGE_PID"
        chaos_at "$(awk -v i="$i" -v n="$HUPS" 'BEGIN { printf "%.3f", 0.2 + 0.6 * i / n }')"
    done
}

chaos_stack 1
stamp0=$(metric '^sipedge_reload_last_success_timestamp_seconds')
chaos_run fault
chaos_check_load
chaos_check_edge
[ "$(metric '^sipedge_reload_last_successful')" -eq 1 ] || chaos_fail "the last reload failed"
stamp=$(metric '^sipedge_reload_last_success_timestamp_seconds')
awk -v a="$stamp" -v b="$stamp0" 'BEGIN { exit !(a > b) }' ||
    chaos_fail "no reload recorded (timestamp $stamp0 -> $stamp)"
grep -c 'event=reload_done' "$T/edge.log" >"$T/reloads.count" || true
chaos_fig "sighups=$((HUPS * 2))"
chaos_fig "reloads_done=$(cat "$T/reloads.count")"
chaos_done
