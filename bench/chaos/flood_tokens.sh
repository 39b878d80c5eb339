#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# flood_tokens: while well-behaved clients REGISTER with warm tokens (verified once, then L1
# hits), two token floods run together: FLOOD_TOKENS distinct bad tokens (10,000 long, 1,000
# quick; bench/tokenflood.py from 4 sources 127.0.0.2..5: a real kid, a garbage signature) and
# FLOOD_TOKENS distinct valid fresh tokens (a second sipedge-bench with --fresh-tokens 1: the
# cold path, a full verification each).
# What bounds the edge's work: each distinct token is verified at most once (L1, the negative
# cache for bad ones), auth.max_failed_tokens_per_conn closes a connection after 5 rejected
# tokens, and auth.worker_budget (default 4000 verifications/s per worker, all sources
# together; over it 503 without a verify). The per-source budget is off, as in every chaos
# scenario: the well-behaved clients and the fresh-token flood all come from 127.0.0.1.
# Invariants: no bad token accepted (no 200 to the flood), every fresh valid token answered 200
# (or 503 + Retry-After of the worker budget), verifications <= distinct tokens sent, every
# well-behaved REGISTER answered 200, the common ones (but "no token refused", replaced by
# these). Figures: p99 without/during, bad tokens sent and refused, fresh tokens answered 200,
# verifications, connections the edge closed for failed tokens.
# The L1 table is preallocated and its pages touched as distinct tokens land in them (about 5 KiB
# of RSS per distinct token until all of it is touched: auth.cache.l1_capacity x ~360 bytes per
# worker, 23 MiB at the default 65,536); here it has 4,096 entries, all touched in the
# rehearsal, so that the RSS invariant is about what the flood leaves, not about first touches.
# shellcheck disable=SC2317,SC2015 # flood() runs through flood_run; A && B || fail
# shellcheck source=bench/chaos/flood_lib.sh
source "$(dirname "$0")/flood_lib.sh"
flood_init flood_tokens
export SIPEDGE_AUTH_CACHE_L1_CAPACITY=4096
if [ "$CHAOS_QUICK" = 1 ]; then
    FLOOD_TOKENS=${FLOOD_TOKENS:-1000} FLOOD_TOKEN_CONNS=8
else
    FLOOD_TOKENS=${FLOOD_TOKENS:-10000} FLOOD_TOKEN_CONNS=32
fi

flood() {
    local rate
    # Each flood spread over 90 % of the window; the bad one from 4 sources (one process).
    rate=$(awk -v n="$FLOOD_TOKENS" -v d="$2" 'BEGIN { printf "%d", n / d / 0.9 + 1 }')
    flood_bg "$1-bad.out" python3 "$SRC/bench/tokenflood.py" --port "$EDGE_PORT" \
        --ca "$PKI/ca.crt" --source 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5 \
        --conns "$FLOOD_TOKEN_CONNS" --duration "$2" --max-requests "$FLOOD_TOKENS" \
        --rate "$rate" --token-bytes 700
    flood_bg "$1-fresh.json" "$BENCH" --port "$EDGE_PORT" --ca "$PKI/ca.crt" --key "$JWT_KEY" \
        --kid es1 --rate "$rate" --conns 20 --duration "$2" --max-requests "$FLOOD_TOKENS" \
        --fresh-tokens 1 --fresh-pool "$FLOOD_TOKENS" --user-prefix fresh \
        --timeout-ms "$BENCH_TIMEOUT_MS" --setup-timeout 30 --json --quiet
}

chaos_stack 1
flood_run flood
verify=$(metric '^sipedge_auth_results_total\{.*layer="verify"')
bad_results=$(metric '^sipedge_auth_results_total\{result="(malformed|bad_|unknown_kid|expired|not_yet_valid|revoked|insufficient_scope|identity_mismatch|decrypt|error)')
chaos_check_load
chaos_check_edge --refusals-expected
flood_figures
fresh=$(grep -h '^{' "$T/flood-fresh.json" | tail -n 1 || true)
[ -n "$fresh" ] || chaos_fail "no report from the fresh-token flood ($T/flood-fresh.json.err)"
bad_sent=$(jq -s 'map(.sent // 0) | add // 0' "$T"/flood-bad*.out "$T"/rehearsal-flood-bad*.out)
bad_ok=$(jq -s 'map(.status["200"] // 0) | add // 0' "$T"/flood-bad*.out "$T"/rehearsal-flood-bad*.out)
bad_now=$(jq -s 'map(.sent // 0) | add // 0' "$T"/flood-bad*.out)
[ "$bad_ok" -eq 0 ] || chaos_fail "$bad_ok bad tokens accepted"
[ "$bad_now" -gt 0 ] || chaos_fail "the bad-token flood sent nothing"
f_sent=$(jq -r .sent <<<"$fresh") f_ok=$(jq -r '.status["200"] // 0' <<<"$fresh")
f_503=$(jq -r '.status["503"] // 0' <<<"$fresh") f_to=$(jq -r .ended.timeout <<<"$fresh")
[ $((f_ok + f_503)) -eq "$f_sent" ] && [ "$f_to" -eq 0 ] ||
    chaos_fail "fresh valid tokens: $f_sent sent, $f_ok 200, $f_503 503, $f_to timeouts"
[ "$bad_results" -le "$bad_sent" ] ||
    chaos_fail "$bad_results tokens refused, only $bad_sent bad ones sent"
# Every token the edge saw: the bad ones, the fresh ones of both runs, one warm per connection of
# each of the three well-behaved runs (new tokens each run), the fresh flood's own warm ones.
seen=$((bad_sent + 2 * FLOOD_TOKENS + 2 * 20 + 3 * CONNS))
[ "$verify" -le "$seen" ] ||
    chaos_fail "$verify verifications for at most $seen distinct tokens"
chaos_fig "bad_sent=$bad_now"
chaos_fig "bad_refused=$(jq -s 'map(.answered - (.status["200"] // 0)) | add' "$T"/flood-bad*.out)"
chaos_fig "fresh_sent/200/503=$f_sent/$f_ok/$f_503"
chaos_fig "fresh_p99=$(jq -r '.latency_us.register.p99 / 1000 | floor' <<<"$fresh")ms"
chaos_fig "verifications=$verify"
chaos_fig "closed_failed_tokens=$(metric '^sipedge_auth_refused_total\{reason="failed_tokens"')"
chaos_fig "worker_budget_503=$(metric '^sipedge_auth_refused_total\{reason="worker_budget"')"
chaos_done
