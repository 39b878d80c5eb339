#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ucm_stall: two UCM nodes; the preferred one (ucm1) is stalled (SIGSTOP: its sockets still
# accept, nothing is answered, not even the OPTIONS keep-alive) from 10 % to 90 % of the quick
# load (2 s; 30 % to 60 % of the long one: 18 s), then woken (SIGCONT). The edge sees the
# stall by its keep-alive deadline (upstream.keepalive_interval_ms 1000, so at most ~3 s; 500
# and 1.5 s in the quick form), closes ucm1's connections and sends what was in flight there
# to ucm2; Timer F (4 s) answers 408 for anything still unanswered then. When ucm1 wakes, its late answers to requests already
# answered must be dropped, never relayed as a second final response.
# Invariants: 200, or 408 (Timer F) for REGISTERs caught by the stall; exactly one final
# response each; the common ones. Figures: 408s, failovers, recovery (last non-200 after the
# stall began), max latency.
# shellcheck disable=SC2317,SC2154 # fault() runs through chaos_run; UCM_PID_* from start_ucmsim
# shellcheck source=bench/chaos/lib.sh
source "$(dirname "$0")/lib.sh"
chaos_init ucm_stall
CHAOS_ALLOWED="408"
if [ "${CHAOS_QUICK:-0}" = 1 ]; then
    # Short: a faster keep-alive (ping every 500 ms, deadline 1 s) sees the stall within 1.5 s.
    KEEPALIVE_MS=500
    FROM=0.1 TO=0.9
    WARMUP=${CHAOS_WARMUP:-2.5} # a rehearsal stall as long as the edge needs to see it
else
    FROM=0.3 TO=0.6
fi

fault() {
    chaos_at "$FROM"
    FAILOVERS0=$(metric '^sipedge_upstream_failovers_total')
    chaos_fault "SIGSTOP ucm1"
    kill -STOP "$UCM_PID_ucm1"
    chaos_at "$TO"
    kill -CONT "$UCM_PID_ucm1"
    e2e_log "SIGCONT ucm1 after $(($(chaos_now_ms) - FAULT_MS)) ms"
}

chaos_stack 2
chaos_run fault
chaos_check_load
chaos_check_edge
chaos_fig "408=$(jload '.status["408"] // 0')"
chaos_fig "failovers=$(($(metric '^sipedge_upstream_failovers_total') - FAILOVERS0))"
chaos_fig "stale_dropped=$(metric '^sipedge_sip_dropped_total\{reason="stale_transaction"')"
chaos_done
