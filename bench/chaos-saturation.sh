#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The saturation rate of the chaos suite's stack (issue 14/15): the stack of bench/chaos/lib.sh
# (Redis, one sipedge-ucmsim, the edge with 2 workers, keep-alive 1 s, Timer F 4 s) and its
# generator (sipedge-bench open loop on CHAOS_CONNS=200 TLS connections, 1 thread), no fault.
# A search: SAT_START REGISTER/s doubling until a step misses, then 3 bisection steps; a step
# keeps up when goodput >= SAT_GOODPUT x offered, no failure and p99 (200s) <= SAT_P99_MS.
# The long form's CHAOS_RATE default is about half of the figure this prints.
#   bench/chaos-saturation.sh
# Environment: BIN (default build/rel), CHAOS_CONNS (200), SAT_START (4000), SAT_MAX (64000),
# SAT_STEP_S (3), SAT_P99_MS (20), SAT_GOODPUT (0.97).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
export SRC BIN=${BIN:-$SRC/build/rel}
# shellcheck source=bench/chaos/lib.sh
source "$(dirname "$0")/chaos/lib.sh"
chaos_init saturation
CONNS=${CHAOS_CONNS:-200}
SAT_STEP_S=${SAT_STEP_S:-3}
# shellcheck source=bench/sat_search.sh
source "$(dirname "$0")/sat_search.sh"
LOG_LEVEL=warn chaos_stack 1

# step RATE: one open-loop run at RATE; prints its row; returns 0 when it kept up.
step() {
    local out=$T/sat-$1.json row
    RATE=$1
    chaos_bench "$out" "$SAT_STEP_S" --edge-pid "$EDGE_PID"
    wait "$BENCH_PID" || true
    row=$(grep '^{' "$out" | tail -n 1 | jq -r --argjson r "$1" '
        (.window_s // 1) as $w | [$r, ((.ok // 0) / $w | floor), (.errors // 0),
        (.ended.pending // 0), (.latency_us.register_200.p50 // 0),
        (.latency_us.register_200.p99 // 0), ((.edge.cpu_us // 0) / $w / 1e4 | floor),
        ((.gen_cpu_us // 0) / $w / 1e4 | floor)] | @tsv' 2>/dev/null || echo "$1 0 0 0 0 0 0 0")
    # shellcheck disable=SC2086
    printf '%8s %8s %7s %5s %9s %9s %6s %5s\n' $row
    awk -v g="$SAT_GOODPUT" -v p="$SAT_P99_MS" '{ exit !($2 >= g * $1 && $3 == 0 && $4 == 0 &&
        $6 <= p * 1000) }' <<<"$row"
}

printf '%8s %8s %7s %5s %9s %9s %6s %5s\n' offered 'good/s' failed lost p50_us p99_us 'edge%' 'gen%'
sat_search step
echo "chaos stack saturation: $SAT REGISTER/s ($CONNS connections, steps of $SAT_STEP_S s, one run;"
echo "  goodput >= $SAT_GOODPUT x offered, no failure, p99 <= $SAT_P99_MS ms); half: $((SAT / 2))"
