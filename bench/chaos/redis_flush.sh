#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# redis_flush: the shared token cache loses its data (FLUSHALL) at 50 % of the load while a share
# of the REGISTERs carries tokens the edge has not seen (--fresh-tokens). Lost entries are misses:
# the edge verifies again and stores again; nothing is refused, nothing waits.
# Invariants: every REGISTER answered 200, no valid token refused, the common ones; Redis holds
# entries again at the end. Figures: keys before the flush and at the end, L2 misses.
# shellcheck disable=SC2317 # fault() runs through chaos_run
# shellcheck source=bench/chaos/lib.sh
source "$(dirname "$0")/lib.sh"
chaos_init redis_flush
FRESH=$(chaos_fresh) # few new tokens in the long form: see chaos_fresh

fault() {
    chaos_at 0.5
    KEYS_BEFORE=$(redis-cli -p "$REDIS_PORT" dbsize)
    MISS0=$(metric '^sipedge_redis_results_total\{result="miss"')
    chaos_fault "redis FLUSHALL ($KEYS_BEFORE keys)"
    redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
}

chaos_stack 1
chaos_run fault --fresh-tokens "$FRESH"
chaos_check_load
chaos_check_edge
keys=$(redis-cli -p "$REDIS_PORT" dbsize)
[ "$keys" -gt 0 ] || chaos_fail "nothing stored in Redis after the flush"
chaos_fig "keys_before=$KEYS_BEFORE"
chaos_fig "keys_after=$keys"
chaos_fig "l2_misses=$(($(metric '^sipedge_redis_results_total\{result="miss"') - MISS0))"
chaos_done
