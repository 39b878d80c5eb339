#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# flood_limits: two hostile clients for the whole load, while well-behaved clients REGISTER:
# - messages over the edge's limits, one per TLS connection, in turn: a body over
#   listen.limits.max_message (64 KiB), more header fields than listen.limits.max_headers (64),
#   a line longer than listen.limits.max_line (8 KiB). docs/sip-checks.md: a framing fault is
#   answered 400 naming it (513 over the size limit) and the connection closed, or closed without
#   a word when nothing can be answered.
# - FLOOD_CONNS TCP connections (2,000 long, 300 quick) from one other source (127.0.0.9), over
#   listen.limits.max_conns_per_ip (here CONNS per worker: the well-behaved clients, all from
#   127.0.0.1, stay under it): the edge closes each one over the limit at once.
# Invariants: every message over a limit closed by the edge (none left open 5 s), never a 2xx
# to one, every answer a 4xx/5xx; the edge closed connections for the per-IP limit
# (sipedge_connections_closed_total{reason="limit"}) and never held more than the limit from
# 127.0.0.9 (its open fds <= the baseline + CONNS + 2 workers x limit + 64 at every sample: the
# slack is connections caught between accept and close — the flood closes its side and opens
# the next at once, the edge closes its own when it has read the end — and the one over a
# message limit, which an ASan build holds longer: 15 over at most seen alone, 37 in a CI run
# beside other tests); every
# well-behaved REGISTER answered 200; the common ones. Figures: p99 without/during, answers by
# kind:status, limit closes.
# shellcheck disable=SC2317 # flood() runs through flood_run
# shellcheck source=bench/chaos/flood_lib.sh
source "$(dirname "$0")/flood_lib.sh"
flood_init flood_limits
if [ "$CHAOS_QUICK" = 1 ]; then
    FLOOD_CONNS=${FLOOD_CONNS:-300}
else
    FLOOD_CONNS=${FLOOD_CONNS:-2000}
fi
PER_IP=$CONNS
export SIPEDGE_LISTEN_LIMITS_MAX_CONNS_PER_IP=$PER_IP
HANDSHAKE_TIMEOUT_MS=1000

flood() {
    flood_bg "$1-msgs.out" python3 "$FLOOD_PY" limits --port "$EDGE_PORT" --ca "$PKI/ca.crt" \
        --duration "$2"
    flood_bg "$1-perip.out" python3 "$FLOOD_PY" idle --port "$EDGE_PORT" --source 127.0.0.9 \
        --conns "$FLOOD_CONNS" --duration "$2" --open-batch 200
}

mark() {
    limit0=$(metric '^sipedge_connections_closed_total\{reason="limit"')
    bad0=$(metric '^sipedge_connections_closed_total\{reason="(garbage|unframeable)"')
}
FLOOD_MARK=mark

chaos_stack 1
flood_run flood
limit=$(flood_delta '^sipedge_connections_closed_total\{reason="limit"' "$limit0")
bad=$(flood_delta '^sipedge_connections_closed_total\{reason="(garbage|unframeable)"' "$bad0")
chaos_check_load
chaos_check_edge
flood_figures
msgs=$(grep -h '^{' "$T/flood-msgs.out" || echo '{}')
sent=$(jq -r '.sent // 0' <<<"$msgs") open=$(jq -r '.not_closed // 0' <<<"$msgs")
[ "$sent" -gt 0 ] || chaos_fail "no message over a limit was sent"
[ "$open" -eq 0 ] || chaos_fail "$open connections with a message over a limit left open"
wrong=$(jq -r '.status // {} | to_entries | map(select(.key | test(":(none|[45][0-9][0-9])$") | not)) | map("\(.key)=\(.value)") | join(" ")' <<<"$msgs")
[ -z "$wrong" ] || chaos_fail "answers to messages over a limit: $wrong"
[ "$bad" -ge "$sent" ] || chaos_fail "the edge counted $bad garbage/unframeable closes for $sent bad messages"
[ "$limit" -gt 0 ] || chaos_fail "no connection closed for the per-IP limit"
fd_bound=$((BASE_FDS + CONNS + 2 * PER_IP + 64))
[ "$PEAK_FDS" -le "$fd_bound" ] ||
    chaos_fail "the edge held $PEAK_FDS fds > $fd_bound (per-IP limit $PER_IP per worker)"
chaos_fig "bad_msgs=$sent"
chaos_fig "answers=$(jq -r '.status | to_entries | map("\(.key)=\(.value)") | join(",")' <<<"$msgs")"
chaos_fig "perip_opened=$(jq -r .opened "$T/flood-perip.out")"
chaos_fig "limit_closes=$limit"
chaos_done
