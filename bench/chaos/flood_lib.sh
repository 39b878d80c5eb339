# SPDX-License-Identifier: MIT
# Helpers of the flood scenarios (bench/chaos/flood_<name>.sh, run by bench/chaos.sh like the fault
# scenarios; docs/RELIABILITY.md, "Floods"). On top of bench/chaos/lib.sh: flood_run START_FN runs
# the rehearsal (load + flood, WARMUP seconds: what the flood makes the edge size once is in the
# baseline), a window of the same load without the flood (QUIET seconds: its p99 is the
# "without" figure), the baseline (RSS, fds), then the measured load (DURATION seconds) with the
# flood over all of it. START_FN OUT SECONDS starts the hostile clients in the background
# (flood_bg); flood_run waits for them and reads their JSON report into FLOOD_JSON.
# Figures added: p99 without the flood, the edge's peak RSS and fds in the middle of the flood.
# shellcheck shell=bash
# shellcheck disable=SC2034 # variables read by the scenarios and lib.sh

# shellcheck source=bench/chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FLOOD_PY="$SRC/bench/chaos/flood.py"
FLOOD_PIDS=()
FLOOD_T0_MS=$(chaos_now_ms)

# flood_log MESSAGE: a log line with the time since the scenario started (where its time goes).
flood_log() { e2e_log "+$(($(chaos_now_ms) - FLOOD_T0_MS)) ms: $*"; }

# flood_init NAME: chaos_init, then QUIET (the window without the flood: 1 s quick, 10 s long).
flood_init() {
    chaos_init "$1"
    if [ "${CHAOS_QUICK:-0}" = 1 ]; then
        QUIET=${CHAOS_QUIET:-1}
    else
        QUIET=${CHAOS_QUIET:-10}
    fi
}

# flood_bg OUT COMMAND...: one hostile process in the background, its stdout in OUT.
flood_bg() {
    local out=$1
    shift
    "$@" >"$out" 2>"$out.err" &
    FLOOD_PIDS+=("$!")
    E2E_PIDS+=("$!")
}

# flood_wait: waits for every hostile process (each bounded by its own --duration).
flood_wait() {
    local p
    for p in "${FLOOD_PIDS[@]}"; do wait "$p" || true; done
    FLOOD_PIDS=()
}

# flood_peak: the edge's RSS and fds now, kept if above what was seen (PEAK_RSS, PEAK_FDS).
flood_peak() {
    chaos_sample
    [ "$SAMPLE_RSS" -le "${PEAK_RSS:-0}" ] || PEAK_RSS=$SAMPLE_RSS
    [ "$SAMPLE_FDS" -le "${PEAK_FDS:-0}" ] || PEAK_FDS=$SAMPLE_FDS
}

# flood_run START_FN [sipedge-bench options]: see the header. FLOOD_MARK (a function name), when
# set, is called just before the measured load: where a scenario reads its counters' start. FLOOD_JSON: the flood's report of
# the measured window (the last line of each START_FN output, joined by newlines).
flood_run() {
    local start=$1 i
    shift
    flood_log "stack up; rehearsal"
    chaos_load_start "$T/warmup.json" "$WARMUP" "$@"
    "$start" "$T/rehearsal-flood" "$WARMUP"
    wait "$BENCH_PID" || true
    flood_wait
    flood_log "rehearsal done"
    chaos_settle 20 || chaos_fail "the edge did not settle after the rehearsal"
    flood_log "window without the flood"
    chaos_load_start "$T/quiet.json" "$QUIET" "$@"
    chaos_load_wait
    QUIET_JSON=$LOAD_JSON
    chaos_settle 20 || chaos_fail "the edge did not settle after the window without flood"
    chaos_sample
    BASE_RSS=$SAMPLE_RSS BASE_FDS=$SAMPLE_FDS PEAK_RSS=0 PEAK_FDS=0
    e2e_log "baseline: RSS $BASE_RSS KiB, $BASE_FDS fds"
    FAULT_MS=
    [ -z "${FLOOD_MARK:-}" ] || "$FLOOD_MARK"
    flood_log "measured window"
    chaos_load_start "$T/load.json" "$DURATION" "$@"
    chaos_fault "flood ($start)"
    "$start" "$T/flood" "$DURATION"
    for i in 0.25 0.5 0.75 0.95; do
        chaos_at "$i"
        flood_peak
    done
    chaos_load_wait
    flood_wait
    flood_log "load and flood done"
    FLOOD_JSON=$(cat "$T"/flood*.out 2>/dev/null | grep -h '^{' || true)
    [ -n "$FLOOD_JSON" ] || chaos_fail "no report from the flood ($T/flood*.out.err)"
    e2e_log "flood: $FLOOD_JSON"
}

# jflood JQ_EXPR: the expression summed over the flood's reports.
jflood() { jq -s "map($1) | add // 0" <<<"$FLOOD_JSON"; }

# flood_figures: p99 of the well-behaved clients without and during the flood, the edge's peak.
flood_figures() {
    local q d
    q=$(jq -r '.latency_us.register.p99 / 1000 | floor' <<<"$QUIET_JSON")
    d=$(jload '.latency_us.register.p99 / 1000 | floor')
    chaos_fig "p99_without/during=${q}/${d}ms"
    chaos_fig "peak_rss=$((PEAK_RSS / 1024))MiB"
    chaos_fig "peak_fds=$PEAK_FDS"
}

# flood_delta METRIC_REGEX BEFORE: the metric's growth since BEFORE.
flood_delta() { echo $(($(metric "$1") - $2)); }

# flood_check_peak CONNS KIB_PER_CONN WHAT: the edge's peak RSS during the flood stays within the
# harness's tolerance (+25 % or +8 MiB over the baseline) plus KIB_PER_CONN for each of the CONNS
# hostile connections open at once (what the edge may hold for one of them by its limits).
flood_check_peak() {
    local tol=$((BASE_RSS / 4)) bound
    [ "$tol" -ge 8192 ] || tol=8192
    bound=$((BASE_RSS + tol + $1 * $2))
    [ "$PEAK_RSS" -le "$bound" ] ||
        chaos_fail "peak RSS $PEAK_RSS KiB > $bound KiB (baseline $BASE_RSS + $tol + $2 KiB per $3)"
}

# flood_check_deadline WHAT CLOSED [MAX_MS]: connections the edge must cut at its handshake
# deadline. The flood reached its size (at least 90 % of FLOOD_CONNS open at once), the edge cut
# some, none lived past MAX_MS (default HANDSHAKE_TIMEOUT_MS) + 1.5 s, and the edge counted
# (CLOSED) at least as many as the flood saw cut. Figures: opened, cut, the time to the cut.
flood_check_deadline() {
    local opened cut max_open late max=${3:-$HANDSHAKE_TIMEOUT_MS}
    opened=$(jflood .opened) cut=$(jflood .cut) max_open=$(jflood .max_open)
    late=$(jflood .cut_after_ms_max)
    [ "$max_open" -ge $((FLOOD_CONNS * 9 / 10)) ] ||
        chaos_fail "the flood had only $max_open connections open at once (wanted $FLOOD_CONNS)"
    [ "$cut" -gt 0 ] || chaos_fail "the edge closed none of the $1 connections"
    [ "$late" -le $((max + 1500)) ] ||
        chaos_fail "a $1 connection lived $late ms (deadline $max ms)"
    [ "$2" -ge "$cut" ] || chaos_fail "the edge counted $2 handshake closes, the flood saw $cut"
    chaos_fig "flood_opened=$opened"
    chaos_fig "cut=$cut"
    chaos_fig "cut_after_p50/max=$(jflood .cut_after_ms_p50)/${late}ms"
}
