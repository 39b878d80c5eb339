#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# flood_slowloris: FLOOD_CONNS TLS connections (2,000 long, 200 quick) that complete the handshake
# and then send a REGISTER's header one byte a second, kept at that number for the whole load
# (each one the edge cuts is opened again), while well-behaved clients REGISTER. The edge's
# message deadline (listen.limits.message_timeout_ms: 5000 long, 1000 quick) cuts each of them.
# Invariants: the flood reached its size (90 % open at once); each of its connections was cut
# no later than handshake + deadline + 1.5 s and counted
# (sipedge_connections_closed_total{reason="message_timeout"}); the edge's peak RSS stays
# within the harness's RSS tolerance + 64 KiB (listen.limits.max_message) per flood connection;
# every well-behaved REGISTER answered 200; the common ones. Figures: p99 without/during, the flood's connections,
# the time to the cut, bytes it sent, the edge's peak fds and RSS.
# The long rehearsal is 60 s (CHAOS_WARMUP), not 10: under this churn of TLS connections the
# edge's RSS climbs for about 20 s to a plateau (malloc's high-water over OpenSSL's handshake
# allocations; flat afterwards, nothing for LeakSanitizer) that must be in the baseline.
# shellcheck disable=SC2317 # flood() runs through flood_run
# shellcheck source=bench/chaos/flood_lib.sh
source "$(dirname "$0")/flood_lib.sh"
[ "${CHAOS_QUICK:-0}" = 1 ] || : "${CHAOS_WARMUP:=60}"
flood_init flood_slowloris
if [ "$CHAOS_QUICK" = 1 ]; then
    FLOOD_CONNS=${FLOOD_CONNS:-200} MSG_TIMEOUT_MS=1000
else
    FLOOD_CONNS=${FLOOD_CONNS:-2000} MSG_TIMEOUT_MS=5000
fi
export SIPEDGE_LISTEN_LIMITS_MESSAGE_TIMEOUT_MS=$MSG_TIMEOUT_MS
HANDSHAKE_TIMEOUT_MS=3000 # the edge config's (tests/e2e/lib.sh)

flood() {
    flood_bg "$1.out" python3 "$FLOOD_PY" slowloris --port "$EDGE_PORT" --ca "$PKI/ca.crt" \
        --conns "$FLOOD_CONNS" --duration "$2" --interval 1 --open-batch 100
}

mark() {
    cut0=$(metric '^sipedge_connections_closed_total\{reason="message_timeout"')
}
FLOOD_MARK=mark

chaos_stack 1
flood_run flood
closed=$(flood_delta '^sipedge_connections_closed_total\{reason="message_timeout"' "$cut0")
chaos_check_load
chaos_check_edge
flood_figures
cut=$(jflood .cut) max_open=$(jflood .max_open) late=$(jflood .cut_after_ms_max)
[ "$max_open" -ge $((FLOOD_CONNS * 9 / 10)) ] ||
    chaos_fail "the flood had only $max_open connections open at once (wanted $FLOOD_CONNS)"
[ "$cut" -gt 0 ] || chaos_fail "the edge cut none of the slow connections"
[ "$late" -le $((HANDSHAKE_TIMEOUT_MS + MSG_TIMEOUT_MS + 1500)) ] ||
    chaos_fail "a slow connection lived $late ms (message deadline $MSG_TIMEOUT_MS ms)"
[ "$closed" -ge "$cut" ] ||
    chaos_fail "the edge counted $closed message_timeout closes, the flood saw $cut"
flood_check_peak "$FLOOD_CONNS" 64 "slow connection"
chaos_fig "flood_opened=$(jflood .opened)"
chaos_fig "handshakes=$(jflood .handshakes)"
chaos_fig "cut=$cut"
chaos_fig "cut_after_p50/max=$(jflood .cut_after_ms_p50)/${late}ms"
chaos_fig "bytes_sent=$(jflood .bytes_sent)"
chaos_done
