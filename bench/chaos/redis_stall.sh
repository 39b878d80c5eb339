#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# redis_stall: Redis stops answering for 3 s (DEBUG SLEEP 3) at 30 % (quick: 10 %) of the load
# while a share of the REGISTERs carries tokens the edge has not seen (--fresh-tokens). Each
# lookup waits at most auth.redis.timeout_ms (20 ms here) and then the edge verifies the token
# itself; its breaker skips Redis while it is stuck.
# Invariants: every REGISTER answered 200 (none waits on Redis past its timeout into a 408), no
# valid token refused, the common ones. Figures: Redis timeouts/breaker-open checks, latency.
# shellcheck disable=SC2317 # fault() runs through chaos_run
# shellcheck source=bench/chaos/lib.sh
source "$(dirname "$0")/lib.sh"
chaos_init redis_stall
FRESH=$(chaos_fresh) # few new tokens in the long form: see chaos_fresh
AT=$([ "${CHAOS_QUICK:-0}" = 1 ] && echo 0.1 || echo 0.3) # quick: most of the load in the sleep
REDIS_TROUBLE='^sipedge_redis_results_total\{result="(error|timeout|breaker_open)"'

ROUND=0
fault() {
    # The rehearsal sleeps 1 s (it must end with its short load), the measured run 3 s.
    local secs=$((ROUND == 0 ? 1 : 3))
    ROUND=$((ROUND + 1))
    chaos_at "$AT"
    TROUBLE0=$(metric "$REDIS_TROUBLE")
    chaos_fault "redis DEBUG SLEEP $secs"
    timeout 10 redis-cli -p "$REDIS_PORT" DEBUG SLEEP "$secs" >"$T/debug-sleep.out" 2>&1 &
    SLEEPER=$!
    E2E_PIDS+=("$SLEEPER")
    chaos_at 0.9
    wait "$SLEEPER" || chaos_fail "DEBUG SLEEP failed: $(cat "$T/debug-sleep.out")"
}

chaos_stack 1
chaos_run fault --fresh-tokens "$FRESH"
chaos_check_load
chaos_check_edge
chaos_fig "redis_trouble=$(($(metric "$REDIS_TROUBLE") - TROUBLE0))"
chaos_done
