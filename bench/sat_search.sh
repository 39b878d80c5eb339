# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# The saturation search shared by bench/chaos-saturation.sh and bench/compare.sh overload.
# Environment: SAT_START (first rate, 4000), SAT_MAX (64000), SAT_P99_MS (20), SAT_GOODPUT (0.97):
# a step keeps up when its goodput is >= SAT_GOODPUT x offered, nothing failed and the 200s'
# p99 <= SAT_P99_MS (the step function decides, with these).
SAT_START=${SAT_START:-4000}
SAT_MAX=${SAT_MAX:-64000}
SAT_P99_MS=${SAT_P99_MS:-20}
SAT_GOODPUT=${SAT_GOODPUT:-0.97}

# sat_search STEP_FN: STEP_FN RATE runs one step and returns 0 when it kept up. The rate doubles
# from SAT_START until a step misses (or SAT_MAX), then 3 bisection steps (rates rounded to
# 100); SAT is the highest rate that kept up. Runs in this shell, not a subshell (a step may
# restart processes whose PIDs the caller keeps).
sat_search() {
    local step=$1 lo=0 hi=0 r=$SAT_START mid i
    while [ "$r" -le "$SAT_MAX" ]; do
        if "$step" "$r"; then lo=$r r=$((r * 2)); else hi=$r && break; fi
    done
    [ "$hi" -gt 0 ] || hi=$SAT_MAX
    [ "$lo" -gt 0 ] || lo=$((SAT_START / 4))
    for i in 1 2 3; do
        mid=$(((lo + hi) / 2 / 100 * 100))
        if [ "$mid" -le "$lo" ] || [ "$mid" -ge "$hi" ]; then break; fi
        if "$step" "$mid"; then lo=$mid; else hi=$mid; fi
        : "$i"
    done
    # shellcheck disable=SC2034 # read by the caller
    SAT=$lo
}
