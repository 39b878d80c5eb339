#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Token flood benchmark (issue 12, item 2): good clients' latency and the edge's memory while
# hostile clients push distinct garbage tokens. Per run: a fresh sipedge-ucmsim and sipedge
# (2 workers, no Redis) on loopback; sipedge-bench drives GOOD_CONNS well-behaved TLS clients at
# GOOD_RATE REGISTER/s from 127.0.0.1, first alone ("quiet"), then next to bench/tokenflood.py
# ("flood": FLOOD_CONNS connections from 127.0.0.2, 7.7 KB tokens with a valid ES256 header, each
# distinct). Prints VmRSS of the edge before / peak / after (AFTER_S seconds after the flood) and
# the good clients' p50/p99, medians of REPEAT runs. Everything started is stopped by PID.
#   bench/tokenflood.sh                  (BIN=build/rel, built in Release when missing)
#   BIN=/tmp/tok-old/build/rel bench/tokenflood.sh   (an older build: same script, same load)
# Environment: REPEAT (3), GOOD_CONNS (200), GOOD_RATE (1000), FLOOD_CONNS (20), FLOOD_S (15),
# AFTER_S (10), WORKERS (2); the edge's SIPEDGE_* overrides apply (e.g.
# SIPEDGE_AUTH_SOURCE_BUDGET_RATE=50) and are printed.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${BIN:-}" ]; then
    BIN=$SRC/build/rel
    if [ ! -x "$BIN/sipedge-bench" ] || [ ! -x "$BIN/sipedge" ]; then
        cmake -S "$SRC" -B "$BIN" -DCMAKE_BUILD_TYPE=Release >/dev/null
        cmake --build "$BIN" -j2 >/dev/null
    fi
fi
export BIN SRC
command -v jq >/dev/null || { echo "bench/tokenflood.sh: needs jq" >&2; exit 2; }
REPEAT=${REPEAT:-3}
GOOD_CONNS=${GOOD_CONNS:-200}
GOOD_RATE=${GOOD_RATE:-1000}
FLOOD_CONNS=${FLOOD_CONNS:-20}
FLOOD_S=${FLOOD_S:-15}
AFTER_S=${AFTER_S:-10}
WORKERS=${WORKERS:-2}
LOG_LEVEL=${LOG_LEVEL:-warn}
export LOG_LEVEL WORKERS

# shellcheck source=../tests/e2e/lib.sh
source "$SRC/tests/e2e/lib.sh"
e2e_init bench-tokenflood
log() { printf '[tokenflood] %s\n' "$*" >&2; }
COMMIT=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)
EDGE_COMMIT=$("$EDGE" --version 2>/dev/null || echo unknown)
if "$EDGE" --config-reference 2>/dev/null | grep -q source_budget; then
    cfgdef() { "$EDGE" --config-reference | awk -F'`' -v k="$1" '$2 == k { print $6 }'; }
    LIMITS="max_failed_tokens_per_conn ${SIPEDGE_AUTH_MAX_FAILED_TOKENS_PER_CONN:-$(cfgdef auth.max_failed_tokens_per_conn)}"
    LIMITS+=", source_budget rate ${SIPEDGE_AUTH_SOURCE_BUDGET_RATE:-$(cfgdef auth.source_budget.rate)}/s"
    LIMITS+=" burst ${SIPEDGE_AUTH_SOURCE_BUDGET_BURST:-$(cfgdef auth.source_budget.burst)}"
    if "$EDGE" --config-reference 2>/dev/null | grep -q worker_budget; then
        LIMITS+=", worker_budget rate ${SIPEDGE_AUTH_WORKER_BUDGET_RATE:-$(cfgdef auth.worker_budget.rate)}/s"
    fi
else
    LIMITS="none (the build has no token limits)"
fi
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
: >"$T/runs.jsonl"

good_run() { # good_run SECONDS OUT
    "$BIN/sipedge-bench" --port "$EDGE_PORT" --ca "$PKI/ca.crt" --key "$JWT_KEY" --kid es1 \
        --conns "$GOOD_CONNS" --users "$GOOD_CONNS" --rate "$GOOD_RATE" --duration "$1" \
        --timeout-ms 5000 --max-requests 1000000 --json --quiet 2>>"$T/bench.err" |
        grep '^{' | tail -n 1 >"$2" || true
}

one_run() { # one_run I
    local i=$1 ucm_pid peak r rss0 rss_flood rss_after fl
    UCM_PORT=$(free_port)
    start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
    ucm_pid=$UCM_PID_ucm1
    NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
    EDGE_PORT=$(free_port)
    ADMIN_PORT=$(free_port)
    HANDSHAKE_TIMEOUT_MS=15000
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    start_edge
    wait_ready 10
    rss0=$(rss_kb "$EDGE_PID")
    good_run 5 "$T/quiet-$i.json"
    python3 "$SRC/bench/tokenflood.py" --port "$EDGE_PORT" --ca "$PKI/ca.crt" --source 127.0.0.2 \
        --conns "$FLOOD_CONNS" --duration "$FLOOD_S" --max-requests 5000000 \
        >"$T/flood-$i.json" 2>>"$T/flood.err" &
    fl=$!
    E2E_PIDS+=("$fl")
    sleep 3 # the flood at full speed before the good clients measure
    good_run $((FLOOD_S - 5)) "$T/flooded-$i.json" &
    local gp=$!
    peak=$rss0
    for _ in $(seq 1 $(((FLOOD_S + 20) * 4))); do
        kill -0 "$fl" 2>/dev/null || break
        r=$(rss_kb "$EDGE_PID")
        [ "$r" -gt "$peak" ] && peak=$r
        sleep 0.25
    done
    wait "$fl" || true
    wait "$gp" || true
    rss_flood=$(rss_kb "$EDGE_PID")
    sleep "$AFTER_S"
    rss_after=$(rss_kb "$EDGE_PID")
    jq -nc --argjson q "$(cat "$T/quiet-$i.json")" --argjson f "$(cat "$T/flooded-$i.json")" \
        --argjson fl "$(cat "$T/flood-$i.json")" --argjson r0 "$rss0" --argjson rp "$peak" \
        --argjson re "$rss_flood" --argjson ra "$rss_after" \
        '{rss0: $r0, peak: $rp, end: $re, after: $ra, flood_rate: $fl.rate, flood_sent: $fl.sent,
          flood_status: $fl.status, flood_closed: $fl.closed_by_edge,
          quiet_p50: $q.latency_us.register.p50, quiet_p99: $q.latency_us.register.p99,
          p50: $f.latency_us.register.p50, p99: $f.latency_us.register.p99,
          good_sent: $f.sent, good_ok: $f.ok, good_errors: $f.errors}' >>"$T/runs.jsonl"
    log "run $i: $(tail -n 1 "$T/runs.jsonl")"
    stop_edge
    kill "$ucm_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$ucm_pid" 2>/dev/null || break; sleep 0.1; done
}

for i in $(seq 1 "$REPEAT"); do one_run "$i"; done
med() { jq -s "[.[] | $1] | sort | .[(length - 1) / 2 | floor]" "$T/runs.jsonl"; }
echo
echo "== tokenflood: $EDGE_COMMIT (script at $COMMIT), $WORKERS workers, limits: $LIMITS"
echo "   good: $GOOD_CONNS TLS clients at $GOOD_RATE REGISTER/s (ES256, warm L1); flood: $FLOOD_CONNS TLS connections from 127.0.0.2, distinct 7.7 KB garbage tokens, ${FLOOD_S}s; medians of $REPEAT runs"
printf '%-28s %s\n' "edge VmRSS before (MB)" "$(med '.rss0 / 1024 | round')" \
    "edge VmRSS peak (MB)" "$(med '.peak / 1024 | round')" \
    "edge VmRSS at flood end (MB)" "$(med '.end / 1024 | round')" \
    "edge VmRSS ${AFTER_S}s later (MB)" "$(med '.after / 1024 | round')" \
    "flood tokens sent/s" "$(med '.flood_rate | round')" \
    "flood conns closed by edge" "$(med '.flood_closed')" \
    "good p50 / p99 quiet (us)" "$(med '.quiet_p50') / $(med '.quiet_p99')" \
    "good p50 / p99 flood (us)" "$(med '.p50') / $(med '.p99')" \
    "good errors in flood" "$(med '.good_errors')"
echo "runs: $T/runs.jsonl"
