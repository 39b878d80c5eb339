#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ucm_kill: two UCM nodes; the preferred one (ucm1) is killed -9 at 30 % of the load and started
# again on its port at 60 %. Requests in flight on it fail over to ucm2 (upstream loss, issue
# 12), new ones go to ucm2 while ucm1 is down, and ucm1 takes traffic again once back.
# Invariants: every REGISTER answered 200 (failover hides the loss: no 503, no 408), and the
# common ones (bench/chaos/lib.sh). Figures: failovers, REGISTERs ucm1 got after its restart.
# shellcheck disable=SC2317,SC2154 # fault() runs through chaos_run; UCM_PID_* from start_ucmsim
# shellcheck source=bench/chaos/lib.sh
source "$(dirname "$0")/lib.sh"
chaos_init ucm_kill

fault() {
    chaos_at 0.3
    FAILOVERS0=$(metric '^sipedge_upstream_failovers_total')
    chaos_fault "kill -9 ucm1"
    kill -9 "$UCM_PID_ucm1"
    wait "$UCM_PID_ucm1" 2>/dev/null || true
    chaos_at 0.6
    start_ucmsim ucm1 "$UCM1_PORT" --allow edge.example.test
    UCM1_MARK=$(ucm_registers_of ucm1)
}

chaos_stack 2
chaos_run fault
chaos_check_load
chaos_check_edge
after=$(($(ucm_registers_of ucm1) - UCM1_MARK))
[ "$after" -gt 0 ] || chaos_fail "ucm1 got no REGISTER after its restart"
chaos_fig "failovers=$(($(metric '^sipedge_upstream_failovers_total') - FAILOVERS0))"
chaos_fig "ucm1_after_restart=$after"
chaos_done
