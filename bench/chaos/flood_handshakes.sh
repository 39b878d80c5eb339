#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# flood_handshakes: a TLS handshake flood: FLOOD_CONNS handshakes in progress at once (64 long,
# 16 quick), each connection closed as soon as its handshake completed and another opened, for
# the whole load, while well-behaved clients REGISTER on their open connections. What bounds
# the edge's spending: the flood's own pace (one full handshake each: no resumption), the
# handshake deadline (listen.limits.handshake_timeout_ms) for the ones it cannot finish.
# Invariants: the flood completed handshakes and the edge counted them all
# (sipedge_tls_handshakes_total), every well-behaved REGISTER answered 200, the common ones.
# Figures: p99 without/during, handshakes and their rate, handshake failures the edge counted.
# shellcheck disable=SC2317 # flood() runs through flood_run
# shellcheck source=bench/chaos/flood_lib.sh
source "$(dirname "$0")/flood_lib.sh"
flood_init flood_handshakes
if [ "$CHAOS_QUICK" = 1 ]; then
    FLOOD_CONNS=${FLOOD_CONNS:-16}
else
    FLOOD_CONNS=${FLOOD_CONNS:-64}
fi

flood() {
    flood_bg "$1.out" python3 "$FLOOD_PY" handshake --port "$EDGE_PORT" --ca "$PKI/ca.crt" \
        --conns "$FLOOD_CONNS" --duration "$2" --open-batch "$FLOOD_CONNS"
}

mark() {
    hs0=$(metric '^sipedge_tls_handshakes_total')
    fail0=$(metric '^sipedge_tls_handshake_failures_total\{side="client"')
}
FLOOD_MARK=mark

chaos_stack 1
flood_run flood
hs=$(flood_delta '^sipedge_tls_handshakes_total' "$hs0")
fails=$(flood_delta '^sipedge_tls_handshake_failures_total\{side="client"' "$fail0")
chaos_check_load
chaos_check_edge
flood_figures
n=$(jflood .handshakes) secs=$(jflood .seconds)
[ "$n" -gt 0 ] || chaos_fail "the flood completed no handshake"
[ "$hs" -ge "$n" ] || chaos_fail "the edge counted $hs handshakes, the flood completed $n"
chaos_fig "flood_handshakes=$n"
chaos_fig "per_s=$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%d", (s > 0 ? n / s : 0) }')"
chaos_fig "tls_errors=$(jflood .tls_errors)"
chaos_fig "edge_handshake_failures=$fails"
chaos_done
