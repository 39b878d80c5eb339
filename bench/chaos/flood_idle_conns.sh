#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# flood_idle_conns: FLOOD_CONNS TCP connections (10,000 long, 1,000 quick) opened and left idle
# before the TLS handshake, kept at that number for the whole load (each one the edge closes is
# opened again), while well-behaved clients REGISTER. The edge's handshake deadline
# (listen.limits.handshake_timeout_ms: 3000 long, 1000 quick) closes each of them.
# Invariants: the flood reached its size (at least 90 % open at once); every connection of it
# was closed by the edge, no later than the deadline + 1.5 s, and counted
# (sipedge_connections_closed_total{reason="handshake"}); every well-behaved REGISTER answered
# 200; the common ones (fds and RSS back to the baseline...). Figures: p99 without/during, the
# flood's connections opened and cut, the time to the cut, the edge's peak fds and RSS.
# shellcheck disable=SC2317 # flood() runs through flood_run
# shellcheck source=bench/chaos/flood_lib.sh
source "$(dirname "$0")/flood_lib.sh"
flood_init flood_idle_conns
if [ "$CHAOS_QUICK" = 1 ]; then
    FLOOD_CONNS=${FLOOD_CONNS:-1000} HANDSHAKE_TIMEOUT_MS=1000
else
    FLOOD_CONNS=${FLOOD_CONNS:-10000} HANDSHAKE_TIMEOUT_MS=3000
fi

flood() {
    flood_bg "$1.out" python3 "$FLOOD_PY" idle --port "$EDGE_PORT" --conns "$FLOOD_CONNS" \
        --duration "$2" --open-batch 500
}

mark() {
    closed0=$(metric '^sipedge_connections_closed_total\{reason="handshake"')
}
FLOOD_MARK=mark

chaos_stack 1
flood_run flood
closed=$(flood_delta '^sipedge_connections_closed_total\{reason="handshake"' "$closed0")
chaos_check_load
chaos_check_edge
flood_figures
flood_check_deadline idle "$closed"
chaos_fig "connect_errors=$(jflood .connect_errors)"
chaos_done
