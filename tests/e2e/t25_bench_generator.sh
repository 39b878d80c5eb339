#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 25 (issue 15): the load generator as bench/run.sh's storm, reconnect and keepalive run it.
# 1. `sipedge-bench --storm --seen-tokens`: every client's token is REGISTERed before the measured
#    storm, so the storm's clients return with tokens the edge knows: the edge verifies no
#    signature between the start of the measured window and its end
#    (sipedge_auth_results_total{layer="verify"} does not move), and every client gets its 200.
#    Without the option the same storm's tokens are new: the edge verifies them during it.
# 2. More clients at once than the generator used to have connection slots for (a storm client
#    opens its next connection while its last one may still be closing): every connection of the
#    storm gets its 200 and none is counted as a connect error (the generator's loop was full:
#    ENOSPC, 5-14 % of the connections at 256 at once).
# 3. `--idle --ping-ms`: held clients send OPTIONS to the edge, which answers 200; every answer is
#    counted (`ping_ok` = `ping_sent`). They were taken for duplicate final responses and dropped:
#    `bench/run.sh keepalive` reported 0 of 36,000 answered.
# 4. `--storm --retry-ms`: a storm's client whose attempt failed tries again until it has its 200,
#    as phones do. Through a relay that closes its first 10 connections at once, 20 clients all
#    register, and the 10 failed attempts are counted as errors and as retries; without the
#    option the same relay leaves 10 of 20 unregistered.
source "$(dirname "$0")/lib.sh"
e2e_init t25_bench_generator
BENCH="$BIN/sipedge-bench"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# One worker: a token the priming verified is then in its L1. With two, a storm connection on the
# other worker looks the token up in Redis, and that lookup can race the first worker's store (a
# CI run under ASan saw one such verification in 200 connections): real, but not the generator's.
WORKERS=1
HANDSHAKE_TIMEOUT_MS=30000 # sanitizer builds: a few hundred handshakes at once take seconds
KEEPALIVE_MS=10000
# one source address minting new tokens on purpose: the per-source budget would refuse them
export SIPEDGE_AUTH_SOURCE_BUDGET_RATE=0 SIPEDGE_AUTH_WORKER_BUDGET_RATE=0
start_stack

verified() { metric 'sipedge_auth_results_total\{.*layer="verify"'; }

# storm LABEL N AT_ONCE [options]: one sipedge-bench storm; its JSON in $T/LABEL.json, the edge's
# verifications when the measured window began in $T/LABEL.v0
storm() {
    local label=$1 n=$2 conc=$3
    shift 3
    rm -f "$T/$label.ready"
    "$BENCH" --port "$EDGE_PORT" --ca "$PKI/ca.crt" --key "$JWT_KEY" --kid es1 --direct \
        --storm "$n" --concurrency "$conc" --duration 120 --timeout-ms 30000 --json --quiet \
        --ready-file "$T/$label.ready" "$@" >"$T/$label.json" 2>"$T/$label.err" &
    local pid=$!
    E2E_PIDS+=("$pid")
    for _ in $(seq 1 1200); do
        [ -f "$T/$label.ready" ] || ! kill -0 "$pid" 2>/dev/null && break
        sleep 0.05
    done
    verified >"$T/$label.v0"
    wait "$pid" || e2e_log "sipedge-bench $label exited $?: $(tail -n 3 "$T/$label.err")"
}
field() { jq -r "$2" "$T/$1.json" 2>/dev/null || echo missing; }

# 1. Returning clients: 40 clients, 200 connections. The generator writes its ready file when
# its measured window starts, after the tokens were REGISTERed; the scrape follows it, so a
# verification of the storm could only be missed if it came before the scrape: none should come.
storm seen 200 40 --seen-tokens
v0=$(cat "$T/seen.v0")
v1=$(verified)
check "seen tokens: the priming verified the 40 tokens before the storm (verifications $v0)" \
    test "$v0" -ge 40
check "seen tokens: no verification during the storm ($v0 before, $v1 after)" test "$v1" -eq "$v0"
check "seen tokens: 200 connections got their 200 ($(field seen .ok), errors $(field seen .errors))" \
    test "$(field seen .ok)" = 200 -a "$(field seen .errors)" = 0
check "seen tokens: the JSON says so" test "$(field seen .seen_tokens)" = true

# The control: the same storm with new tokens (a new generator mints its own) verifies them in
# the measured window.
storm fresh 200 40
v2=$(verified)
check "new tokens: the storm verified them (verifications $(cat "$T/fresh.v0") → $v2)" \
    test "$v2" -gt "$(cat "$T/fresh.v0")"
check "new tokens: 200 connections got their 200" test "$(field fresh .ok)" = 200

# 2. 600 connections, 300 at once: each of the 300 clients opens its next connection as soon as
# its last REGISTER was answered, while that connection is still closing.
storm wide 600 300 --seen-tokens
check "300 at once: 600 connections got their 200 ($(field wide .ok); connect errors $(field wide .error_causes.connect), all errors $(field wide .errors))" \
    test "$(field wide .ok)" = 600 -a "$(field wide .errors)" = 0
check "300 at once: the edge answered every one (UCM saw them)" \
    test "$(ucm_registers)" -ge 1000

# 3. 30 registered clients held 3 s, each pinging every 500 ms.
"$BENCH" --port "$EDGE_PORT" --ca "$PKI/ca.crt" --key "$JWT_KEY" --kid es1 --idle 30 --hold 3 \
    --ping-ms 500 --timeout-ms 10000 --json --quiet >"$T/pings.json" 2>"$T/pings.err" ||
    e2e_log "sipedge-bench pings exited $?: $(tail -n 3 "$T/pings.err")"
sent=$(field pings .keepalives.ping_sent)
okd=$(field pings .keepalives.ping_ok)
check "OPTIONS pings: some sent ($sent)" test "${sent:-0}" -ge 60
check "OPTIONS pings: every one answered 200 and counted ($okd of $sent)" test "$okd" = "$sent"

# 4. 20 clients at once through a relay that drops its first 10 connections.
relayed() { # relayed LABEL [options]: the same storm through a fresh flaky relay
    local label=$1 port
    shift
    port=$(free_port)
    rm -f "$T/$label.relay"
    python3 "$SRC/tests/e2e/flaky_relay.py" "$port" "$EDGE_PORT" 10 "$T/$label.relay" 60 &
    E2E_PIDS+=("$!")
    for _ in $(seq 1 100); do [ -f "$T/$label.relay" ] && break; sleep 0.05; done
    "$BENCH" --port "$port" --ca "$PKI/ca.crt" --key "$JWT_KEY" --kid es1 --direct --storm 20 \
        --concurrency 20 --duration 20 --timeout-ms 10000 --json --quiet "$@" \
        >"$T/$label.json" 2>"$T/$label.err" ||
        e2e_log "sipedge-bench $label exited $?: $(tail -n 3 "$T/$label.err")"
}
relayed retry --retry-ms 200
check "--retry-ms: all 20 clients registered ($(field retry .ok))" test "$(field retry .ok)" = 20
check "--retry-ms: the 10 dropped attempts counted as errors ($(field retry .errors)) and tried again ($(field retry .retries))" \
    test "$(field retry .errors)" = 10 -a "$(field retry .retries)" = 10
relayed once
check "without it: 10 of 20 registered ($(field once .ok)), 10 errors ($(field once .errors))" \
    test "$(field once .ok)" = 10 -a "$(field once .errors)" = 10

e2e_done
