#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# redis_kill: the shared token cache (Redis L2) is killed -9 at 30 % of the load and started
# again (empty) on its port at 60 % (quick: 20 % and 40 %). A share of the REGISTERs carries
# tokens the edge has not seen (--fresh-tokens), so the L2 path is in use: while Redis is down
# the edge verifies them itself (Redis trouble never opens auth, never refuses a valid token),
# and once Redis is back it stores in it again.
# Invariants: every REGISTER answered 200, no valid token refused, the common ones; Redis holds
# entries again at the end. Figures: Redis errors/timeouts/breaker-open checks, keys at the end.
# shellcheck disable=SC2317 # fault() runs through chaos_run
# shellcheck source=bench/chaos/lib.sh
source "$(dirname "$0")/lib.sh"
chaos_init redis_kill
FRESH=$(chaos_fresh) # few new tokens in the long form: see chaos_fresh
REDIS_TROUBLE='^sipedge_redis_results_total\{result="(error|timeout|breaker_open)"'
# The breaker's first pause 100 ms (default 1 s, doubling up to 5 s): Redis is used again soon
# enough after its restart for the quick form (restart at 40 % of 2.5 s) to see it.
export SIPEDGE_AUTH_REDIS_BREAKER_OPEN_MS=100
if [ "${CHAOS_QUICK:-0}" = 1 ]; then KILL_AT=0.2 BACK_AT=0.4; else KILL_AT=0.3 BACK_AT=0.6; fi

fault() {
    chaos_at "$KILL_AT"
    TROUBLE0=$(metric "$REDIS_TROUBLE")
    chaos_fault "kill -9 redis"
    kill -9 "$REDIS_PID"
    wait "$REDIS_PID" 2>/dev/null || true
    chaos_at "$BACK_AT"
    chaos_redis "$REDIS_PORT"
}

chaos_stack 1
chaos_run fault --fresh-tokens "$FRESH"
chaos_check_load
chaos_check_edge
keys=$(redis-cli -p "$REDIS_PORT" dbsize)
[ "$keys" -gt 0 ] || chaos_fail "the edge stored nothing in Redis after its restart"
chaos_fig "redis_trouble=$(($(metric "$REDIS_TROUBLE") - TROUBLE0))"
chaos_fig "redis_keys_after=$keys"
chaos_done
