# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# bench/compare.sh overload (issue 15, "admission under overload"): sourced by bench/compare.sh
# after its stack is up (edge, Kamailio, Redis, sipedge-ucmsim; drive_bench from there).
# Per side: a short search for the saturation rate (the highest offered open-loop REGISTER rate
# whose goodput is >= SAT_GOODPUT of offered with the 200s' p99 <= SAT_P99_MS), then the steps
# OV_MULTS x that rate (and, for Kamailio, sipedge's absolute rates too), OV_DURATION s each.
# Per step: offered/s, goodput (200/s), shed (503/s), other failures (other statuses, timeouts,
# closed, never sent by the generator), lost (sent, never ended: must be 0), p50/p99 of the 200s
# (scheduled send -> 200, open loop), edge / generator / ucmsim CPU in % of one core.
# Environment: SAT_START (first rate of the search, 4000), SAT_MAX (64000), SAT_P99_MS (20),
# SAT_GOODPUT (0.97), OV_MULTS ("0.5 0.75 1 1.25 1.5 2"), OV_DURATION (5), SAT_SE / SAT_KAM
# (skip the search, use this rate).

OV_MULTS=${OV_MULTS:-"0.5 0.75 1 1.25 1.5 2"}
OV_DURATION=${OV_DURATION:-5}
# shellcheck source=bench/sat_search.sh
source "$SRC/bench/sat_search.sh"

# ov_step SIDE RATE SECS KIND: one point; appends a row to $T/overload.txt and $T/overload.dat.
ov_step() {
    local side=$1 rate=$2 secs=$3 kind=$4 row
    drive_bench "$side" "$rate" "$secs"
    if [ "$side" = kamailio ] && [ "$P_OK" = 0 ]; then # its tls module crash: once more
        KAM_CRASHES=$((KAM_CRASHES + 1))
        drive_bench "$side" "$rate" "$secs"
    fi
    row=$(jq -r --arg side "$side" --arg kind "$kind" --argjson rate "$rate" '
        (.window_s // 0) as $w | (if $w > 0 then $w else 1 end) as $d |
        (.status["503"] // 0) as $shed |
        ((.errors // 0) - $shed) as $other |
        [$side, $kind, $rate, ((.ok // 0) / $d | floor), ($shed / $d | floor), $other,
         (.ended.timeout // 0), (.ended.closed // 0), (.error_causes.overload // 0),
         (.ended.pending // 0),
         (.latency_us.register_200.p50 // 0), (.latency_us.register_200.p99 // 0),
         ((.edge.cpu_us // 0) / $d / 1e4 | floor), ((.gen_cpu_us // 0) / $d / 1e4 | floor),
         ((.ucmsim.cpu_us // 0) / $d / 1e4 | floor), ((.edge.cpu_us_per_unit // 0) * 10 | round / 10)]
        | @tsv' <<<"$P_LINE")
    printf '%s\n' "$row" >>"$T/overload.dat"
    # shellcheck disable=SC2086
    printf '%-9s %-6s %8s %8s %7s %6s %6s %6s %6s %5s %8s %9s %5s %5s %5s %7s\n' $row |
        tee -a "$T/overload.txt" >&2
}

# ov_ok: the last step kept up (goodput >= SAT_GOODPUT x offered, p99 of the 200s <= SAT_P99_MS).
ov_ok() {
    awk -F'\t' -v g="$SAT_GOODPUT" -v p="$SAT_P99_MS" 'END {
        exit !($4 >= g * $3 && $12 <= p * 1000 && $6 == 0) }' "$T/overload.dat"
}

# ov_search SIDE: sets SAT to SIDE's saturation rate (sat_search with 3 s steps).
ov_search() {
    OV_SIDE=$1
    sat_search ov_search_step
}
ov_search_step() {
    ov_step "$OV_SIDE" "$1" 3 search
    ov_ok
}

overload_main() {
    local side sat m rate se_rates=""
    : >"$T/overload.dat"
    printf '%-9s %-6s %8s %8s %7s %6s %6s %6s %6s %5s %8s %9s %5s %5s %5s %7s\n' side kind offered \
        'good/s' '503/s' other tmout closed unsent lost 'p50_us' 'p99_us' 'edge%' 'gen%' 'ucm%' \
        'us/REQ' >"$T/overload.txt"
    for side in sipedge kamailio; do
        if [ "$side" = sipedge ]; then sat=${SAT_SE:-}; else sat=${SAT_KAM:-}; fi
        if [ -z "$sat" ]; then
            say "$side: searching the saturation rate ($SAT_START/s doubling, 3 s steps)"
            ov_search "$side"
            sat=$SAT
        fi
        say "$side: saturation $sat REGISTER/s"
        echo "$side $sat" >>"$T/saturation.txt"
        for m in $OV_MULTS; do
            rate=$(awk -v s="$sat" -v m="$m" 'BEGIN { printf "%d", s * m }')
            [ "$side" = sipedge ] && se_rates="$se_rates $rate"
            ov_step "$side" "$rate" "$OV_DURATION" "x$m"
        done
    done
    for rate in $se_rates; do # Kamailio at sipedge's absolute rates, when beyond its own steps
        awk -v r="$rate" '$1 == "kamailio" && $3 == r { f = 1 } END { exit f }' \
            "$T/overload.dat" || continue
        ov_step kamailio "$rate" "$OV_DURATION" abs
    done
    echo
    echo "== compare overload: open-loop REGISTERs, sipedge-bench $CONNS TLS connections (1 thread),"
    echo "   $WORKERS workers per edge, steps of $OV_DURATION s, one run; saturation = highest rate"
    echo "   with goodput >= $SAT_GOODPUT x offered and p99(200) <= $SAT_P99_MS ms:"
    sed 's/^/   /' "$T/saturation.txt"
    echo "   other = final statuses other than 200/503 + timeouts + closed + never sent; lost = no end"
    echo "   p50/p99: of the 200s only, scheduled send -> 200; CPU in % of one core over the window"
    cat "$T/overload.txt"
    curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" >"$T/sipedge-metrics.txt" 2>/dev/null || true
    printf '   sipedge_registers_shed_total: %s; kamailio tls crashes retried: %s\n' \
        "$(awk '$0 !~ /^#/ && /^sipedge_registers_shed_total/ { s += $NF } END { print s + 0 }' \
            "$T/sipedge-metrics.txt")" "$KAM_CRASHES"
    cp "$T/overload.dat" "$RESULTS_DIR/overload.tsv"
    echo "rows (TSV) in $RESULTS_DIR/overload.tsv"
    [ "$PLOT" = 1 ] && overload_plot
    return 0
}

overload_plot() {
    local img=${IMG_DIR:-$SRC/docs/img}
    mkdir -p "$img"
    awk -F'\t' '$1 == "sipedge" && $2 != "search" { print $3, $4, $5, $12 / 1000 }' \
        "$T/overload.dat" | sort -n >"$T/ov-se.dat"
    awk -F'\t' '$1 == "kamailio" && $2 != "search" { print $3, $4, $5, $12 / 1000 }' \
        "$T/overload.dat" | sort -n >"$T/ov-kam.dat"
    gnuplot <<GP
set terminal svg size 960,420 noenhanced font "sans,11"
set output "$img/overload.svg"
set multiplot layout 1,2 title "compare overload: open-loop REGISTERs past saturation (2 vCPU, loopback, one run)"
set grid
set key top left
set xlabel "offered REGISTER/s"
set ylabel "per second"
set title "goodput (200/s) and shed (503/s)"
plot "$T/ov-se.dat" using 1:2 with linespoints lw 2 pt 7 lc rgb "#1f5fbf" title "sipedge 200/s", \
     "$T/ov-se.dat" using 1:3 with linespoints lw 1 pt 6 dt 2 lc rgb "#1f5fbf" title "sipedge 503/s", \
     "$T/ov-kam.dat" using 1:2 with linespoints lw 2 pt 5 lc rgb "#d9541a" title "Kamailio 200/s", \
     "$T/ov-kam.dat" using 1:1 with lines lc rgb "#999999" dt 3 title "offered"
set title "p99 of the 200s (ms, log)"
set ylabel "ms"
set logscale y
plot "$T/ov-se.dat" using 1:4 with linespoints lw 2 pt 7 lc rgb "#1f5fbf" title "sipedge", \
     "$T/ov-kam.dat" using 1:4 with linespoints lw 2 pt 5 lc rgb "#d9541a" title "Kamailio 5.6"
unset multiplot
GP
    echo "plot: $img/overload.svg"
}
