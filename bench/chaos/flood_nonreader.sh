#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# flood_nonreader: FLOOD_CONNS TLS connections (32 long, 4 quick; receive buffer 4 KiB) that send
# OPTIONS without end and never read an answer, each one the edge cuts opened again, for the
# whole load, while well-behaved clients REGISTER. The edge answers each OPTIONS itself (200);
# once the kernel's buffers are full its answers queue, and the output queue cap
# (listen.limits.out_queue_max: 16 KiB here) cuts the connection. That cap is the clients' only:
# the UCM pool's connections, which carry every client's REGISTERs, are trunks with their own
# (upstream.out_queue_max); when they shared it, the long form at 16 KiB saw 10 of 60,000
# well-behaved REGISTERs answered 503 (upstream_unavailable, ENOBUFS).
# The edge may also stop reading a non-reader at its output high watermark (backpressure) and
# never reach the cap: the long form at 64 KiB cut none (the flood's bytes wait in the kernel's
# buffers), the quick one cut 1 of 5 in one run. Either way what the edge holds is bounded, which is checked.
# Invariants: every cut the flood saw counted by the edge
# (sipedge_connections_closed_total{reason="overflow"} at least as many); the edge's peak RSS
# stays under the harness's RSS tolerance + 256 KiB per non-reader (the queue cap plus
# the socket's own buffers); every well-behaved REGISTER answered 200; the common ones. Figures: p99
# without/during, the flood's connections, cuts, bytes it sent, the edge's peak RSS.
# shellcheck disable=SC2317 # flood() runs through flood_run
# shellcheck source=bench/chaos/flood_lib.sh
source "$(dirname "$0")/flood_lib.sh"
flood_init flood_nonreader
if [ "$CHAOS_QUICK" = 1 ]; then
    FLOOD_CONNS=${FLOOD_CONNS:-4}
else
    FLOOD_CONNS=${FLOOD_CONNS:-32}
fi
export SIPEDGE_LISTEN_LIMITS_OUT_QUEUE_MAX=16384

flood() {
    flood_bg "$1.out" python3 "$FLOOD_PY" nonreader --port "$EDGE_PORT" --ca "$PKI/ca.crt" \
        --conns "$FLOOD_CONNS" --duration "$2" --rcvbuf 4096
}

mark() {
    cut0=$(metric '^sipedge_connections_closed_total\{reason="overflow"')
}
FLOOD_MARK=mark

chaos_stack 1
flood_run flood
closed=$(flood_delta '^sipedge_connections_closed_total\{reason="overflow"' "$cut0")
chaos_check_load
chaos_check_edge
flood_figures
cut=$(jflood .cut)
[ "$closed" -ge "$cut" ] ||
    chaos_fail "the edge counted $closed overflow closes, the flood saw $cut cuts"
flood_check_peak "$FLOOD_CONNS" 256 "non-reader"
chaos_fig "flood_opened=$(jflood .opened)"
chaos_fig "cut=$cut"
chaos_fig "overflow_closes=$closed"
chaos_fig "bytes_sent=$(jflood .bytes_sent)"
chaos_done
