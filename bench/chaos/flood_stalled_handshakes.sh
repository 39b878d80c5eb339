#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# flood_stalled_handshakes: FLOOD_CONNS TLS connections (4,000 long, 600 quick) that each send a
# ClientHello and never answer the edge's flight, kept at that number for the whole load (each
# one the edge cuts is opened again), while well-behaved clients REGISTER. A handshake the edge
# answered holds OpenSSL's state (≈ 35 KB) until the handshake deadline cuts it; what bounds the
# flood's memory is listen.limits.max_handshakes_in_flight (256 per worker long, 64 quick): past
# it the other ClientHellos wait unanswered, a few hundred bytes each, until the deadline. The
# flood comes from one source (127.0.0.2), which gets at most half of the cap (the other half is
# left to other sources).
# Invariants: the flood reached its size (at least 90 % open at once); the edge's
# sipedge_tls_handshakes_in_flight, sampled every 0.2 s, never above workers × half the cap; the
# peak RSS within the harness's tolerance + 40 KiB per handshake the cap allows + 2 KiB per
# flood connection; every connection cut within twice the deadline + 1.5 s (the deadline runs
# until its ClientHello is answered, then again from the answer: listen.limits.handshake_timeout_ms)
# and counted (sipedge_connections_closed_total{reason="handshake"}); every well-behaved REGISTER answered
# 200; the common ones. Figures: p99 without/during, ClientHellos answered and cut, the gauge's peak.
# shellcheck disable=SC2317 # flood() runs through flood_run
# shellcheck source=bench/chaos/flood_lib.sh
source "$(dirname "$0")/flood_lib.sh"
flood_init flood_stalled_handshakes
if [ "$CHAOS_QUICK" = 1 ]; then
    FLOOD_CONNS=${FLOOD_CONNS:-600} HANDSHAKE_TIMEOUT_MS=1000 CAP=64
else
    FLOOD_CONNS=${FLOOD_CONNS:-4000} HANDSHAKE_TIMEOUT_MS=3000 CAP=256
fi
export SIPEDGE_LISTEN_LIMITS_MAX_HANDSHAKES_IN_FLIGHT=$CAP

flood() {
    flood_bg "$1.out" python3 "$FLOOD_PY" stall --port "$EDGE_PORT" --ca "$PKI/ca.crt" \
        --conns "$FLOOD_CONNS" --duration "$2" --open-batch 300 --source 127.0.0.2
}

mark() {
    closed0=$(metric '^sipedge_connections_closed_total\{reason="handshake"')
    # the gauge every 0.2 s over the measured window (bounded: the window + 5 s)
    (
        end=$(($(date +%s) + ${DURATION%.*} + 5))
        while [ "$(date +%s)" -lt "$end" ]; do
            metric '^sipedge_tls_handshakes_in_flight'
            sleep 0.2
        done
    ) >"$T/in_flight.samples" 2>/dev/null &
    SAMPLER_PID=$!
}
FLOOD_MARK=mark

chaos_stack 1
flood_run flood
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
closed=$(flood_delta '^sipedge_connections_closed_total\{reason="handshake"' "$closed0")
chaos_check_load
chaos_check_edge
flood_figures
workers=${WORKERS:-2}
peak_in_flight=$(sort -n "$T/in_flight.samples" | tail -1)
answered=$(jflood .answered)
[ "$answered" -gt 0 ] || chaos_fail "the edge answered none of the ClientHellos"
[ -n "$peak_in_flight" ] && [ "$peak_in_flight" -gt 0 ] ||
    chaos_fail "the gauge never showed a handshake in flight"
HALF=$((CAP - CAP / 2)) # one source's share of the cap
[ "$peak_in_flight" -le $((workers * HALF)) ] ||
    chaos_fail "$peak_in_flight handshakes in flight from one source, above $workers workers × $HALF"
flood_check_peak 1 $((workers * HALF * 40 + FLOOD_CONNS * 2)) \
    "the flood ($workers × $HALF handshakes × 40 KiB + $FLOOD_CONNS connections × 2 KiB)"
flood_check_deadline stalled "$closed" $((2 * HANDSHAKE_TIMEOUT_MS))
chaos_fig "answered=$answered"
chaos_fig "in_flight_peak=$peak_in_flight/$((workers * HALF))"
chaos_done
