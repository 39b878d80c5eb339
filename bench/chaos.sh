#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The reliability suite (issue 14; docs/RELIABILITY.md): each scenario bench/chaos/<name>.sh starts
# its own stack on loopback, drives a steady REGISTER load with sipedge-bench, injects one fault in
# the middle and checks the invariants. Prints one line per scenario (its figures, PASS or FAIL)
# and a last line "N passed, N failed"; exits non-zero when any failed.
#   bench/chaos.sh [--quick] [SCENARIO...]     (default: every bench/chaos/*.sh but the *lib.sh)
# --quick: the short form CI runs (200 REGISTER/s on 50 connections, 2.5 s per scenario).
# Environment: BIN (build dir with sipedge, sipedge-bench, sipedge-ucmsim, sipedge-token; default
# build/rel, which must be built: cmake -S . -B build/rel -DCMAKE_BUILD_TYPE=Release && cmake
# --build build/rel -j2), CHAOS_RATE / CHAOS_CONNS / CHAOS_DURATION (override the load),
# CHAOS_SCENARIO_TIMEOUT (seconds one scenario may take; default 60 quick, 240 long, or what the
# scenario's "# chaos-timeout: QUICK LONG" line says), CHAOS_EXCLUDE (names left out of the
# default list, e.g. "soak": the 30-minute soak is in it).
# A scenario's full log: $BIN/e2e/chaos-<name>.log; its processes' logs: $BIN/e2e/chaos-<name>/.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
CHAOS_QUICK=0
if [ "${1:-}" = "--quick" ]; then
    CHAOS_QUICK=1
    shift
fi
BIN=$(cd "${BIN:-$SRC/build/rel}" 2>/dev/null && pwd) || BIN=${BIN:-$SRC/build/rel}
for b in sipedge sipedge-bench sipedge-ucmsim sipedge-token; do
    if [ ! -x "$BIN/$b" ]; then
        echo "bench/chaos.sh: $BIN/$b missing: build it (BIN=$BIN; see the header of $0)" >&2
        exit 2
    fi
done
for t in jq redis-server redis-cli curl openssl; do
    command -v "$t" >/dev/null || { echo "bench/chaos.sh: needs $t (scripts/install-deps.sh)" >&2; exit 2; }
done

scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
    for f in "$SRC"/bench/chaos/*.sh; do
        n=$(basename "$f" .sh)
        case "$n" in lib | *_lib) ;; *)
            case " ${CHAOS_EXCLUDE:-} " in *" $n "*) ;; *) scenarios+=("$n") ;; esac
            ;;
        esac
    done
fi
for n in "${scenarios[@]}"; do
    if [ "$n" = lib ] || [ "${n%_lib}" != "$n" ] || [ ! -f "$SRC/bench/chaos/$n.sh" ]; then
        echo "bench/chaos.sh: no scenario $n (bench/chaos/$n.sh)" >&2
        exit 2
    fi
done

# Under ASan the edge's RSS would include the quarantine of freed blocks (256 MiB by default),
# which the RSS invariant is not about: keep it small (a use soon after a free is still caught).
case "${ASAN_OPTIONS:-}" in *quarantine_size_mb*) ;; *)
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=8"
    ;;
esac
limit=${CHAOS_SCENARIO_TIMEOUT:-$([ "$CHAOS_QUICK" = 1 ] && echo 60 || echo 240)}
mkdir -p "$BIN/e2e"
export BIN SRC CHAOS_QUICK
passed=0
failed=0
for n in "${scenarios[@]}"; do
    result="$BIN/e2e/chaos-$n.result"
    log="$BIN/e2e/chaos-$n.log"
    rm -f "$result"
    t0=$(date +%s)
    rc=0
    # a scenario may say how long it takes: "# chaos-timeout: QUICK LONG" (seconds)
    lim=$limit
    own=$(sed -n 's/^# chaos-timeout: //p' "$SRC/bench/chaos/$n.sh")
    if [ -n "$own" ] && [ -z "${CHAOS_SCENARIO_TIMEOUT:-}" ]; then
        read -r q l <<<"$own"
        lim=$([ "$CHAOS_QUICK" = 1 ] && echo "$q" || echo "$l")
    fi
    CHAOS_RESULT=$result timeout -k 10 "$lim" bash "$SRC/bench/chaos/$n.sh" >"$log" 2>&1 || rc=$?
    secs=$(($(date +%s) - t0))
    line=$(cat "$result" 2>/dev/null || true)
    if [ "$rc" -eq 0 ] && [ "${line%% *}" = PASS ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        [ "${line%% *}" = FAIL ] ||
            line="FAIL -- exit $rc$([ "$rc" != 124 ] || echo " (over ${lim} s)"), no result (log: $log)"
    fi
    printf '%-16s %s (%ds)\n' "$n" "$line" "$secs"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
