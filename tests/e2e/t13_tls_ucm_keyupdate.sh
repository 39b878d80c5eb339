#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 13: `openssl s_server` as UCM (mTLS: -Verify against the edge CA) behind the edge's upstream
# pool, on sipedge's own record layer (issue 11). Node 1 speaks TLS 1.3, node 2 TLS 1.2; both
# answer the edge's OPTIONS pings (written to s_server's stdin). With
# upstream.tls.rekey_records = 3 (env SIPEDGE_UPSTREAM_TLS_REKEY_RECORDS) the edge re-keys its
# side after 3 records and asks UCM to re-key after 3 of UCM's (RFC 8446 §5.5); UCM's requested
# KeyUpdate ('K') is answered; a TLS 1.2 HelloRequest ('R') gets no_renegotiation and the
# connection goes on; a flood of 40 KeyUpdates without data is cut after 32 with an
# unexpected_message alert that reaches UCM. The pings keep flowing through every re-key.
source "$(dirname "$0")/lib.sh"
e2e_init t13_tls_ucm_keyupdate

# ucm N VERSION: s_server on $P_N, stdin from the fifo $T/in-N (held open on fd 3+N).
ucm() {
    local n=$1 v=$2 port
    port=$(free_port)
    rm -f "$T/in-$n"
    mkfifo "$T/in-$n"
    openssl s_server -accept "127.0.0.1:$port" -cert "$PKI/ucm.crt" -key "$PKI/ucm.key" \
        -CAfile "$PKI/ca.crt" -Verify 1 -verify_return_error -msg -crlf "-$v" \
        <"$T/in-$n" >"$T/ucm-$n.out" 2>&1 &
    E2E_PIDS+=($!)
    eval "exec $((3 + n))>\"\$T/in-$n\""
    eval "P_$n=$port"
    # no wait_port: a probe connection would show up as a failed handshake in the output
    for _ in $(seq 1 100); do
        ss -ltn "sport = :$port" | grep -q LISTEN && return 0
        sleep 0.05
    done
    e2e_log "s_server $n does not listen"
    return 1
}
ucm 1 tls1_3
ucm 2 tls1_2

say() { # say N TEXT: a line (or command) typed into s_server N
    printf '%s\n' "$2" >&$((3 + $1))
}
answer() { # answer N: a 200 to the edge's ping (the branch marks it as a ping answer)
    printf 'SIP/2.0 200 OK\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK-sepng-0-1\nCall-ID: p\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n' >&$((3 + $1))
}
answer_for() { # answer_for SECONDS NODES...: answer every 150 ms, for about SECONDS
    local rounds=$(($1 * 1000 / 150)) n
    shift
    for _ in $(seq 1 "$rounds"); do
        for n in "$@"; do answer "$n"; done
        sleep 0.15
    done
}
count() { grep -c -- "$2" "$T/ucm-$1.out" || true; }
KU_IN='<<< TLS 1.3, Handshake \[length 0005\], KeyUpdate'  # from the edge
KU_OUT='>>> TLS 1.3, Handshake \[length 0005\], KeyUpdate' # from UCM
PINGS='^OPTIONS sip:'

NODES="127.0.0.1 $P_1 ucm1.example.test
127.0.0.1 $P_2 ucm1.example.test"
WORKERS=1
KEEPALIVE_MS=1000
export SIPEDGE_UPSTREAM_POOL_SIZE=1 SIPEDGE_UPSTREAM_TLS_REKEY_RECORDS=3
start_edge
answer_for 1 1 2
wait_ready 5
answer_for 4 1 2

# Re-keying started by the edge, both directions.
ku_in=$(count 1 "$KU_IN")
ku_out=$(count 1 "$KU_OUT")
pings=$(count 1 "$PINGS")
asks=$(grep -A1 -- "$KU_IN" "$T/ucm-1.out" | grep -c '18 00 00 01 01' || true)
check "TLS 1.3: pings flow to UCM ($pings)" test "$pings" -ge 3
check "TLS 1.3: the edge started KeyUpdates on its own ($ku_in, $asks asking UCM to update)" \
    test "$ku_in" -ge 2 -a "$asks" -ge 1
check "TLS 1.3: the edge asked UCM to re-key its side, UCM did ($ku_out KeyUpdates from UCM)" \
    test "$ku_out" -ge 1

# UCM's own requested KeyUpdate, and a TLS 1.2 renegotiation request.
say 1 K
say 2 R
answer_for 2 1 2
# after UCM's KeyUpdate with update_requested (18 00 00 01 01, only 'K' sends it), the next
# record from the edge is a handshake record (its KeyUpdate), not a ping
answered_k() {
    awk '/^>>> TLS 1.3, Handshake \[length 0005\], KeyUpdate/ { ku = NR }
         ku && NR == ku + 1 && /18 00 00 01 01/ { k = 1; next }
         k && /^<<< TLS 1.3, InnerContent/ { inner = NR; next }
         k && inner && NR == inner + 1 { ok = ($1 == "16"); exit }
         END { exit !ok }' "$T/ucm-1.out"
}
check "TLS 1.3: the edge answered UCM's requested KeyUpdate before anything else" answered_k
check "TLS 1.3: pings still decrypt at UCM after all KeyUpdates" \
    test "$(count 1 "$PINGS")" -gt "$pings"
check "TLS 1.2: the edge declined renegotiation with a no_renegotiation warning" \
    grep -q '<<< TLS 1.2, Alert \[length 0002\], warning no_renegotiation' "$T/ucm-2.out"
p2=$(count 2 "$PINGS")
answer_for 2 1 2 # a ping a second
check "TLS 1.2: the connection goes on (pings $(count 2 "$PINGS") > $p2)" \
    test "$(count 2 "$PINGS")" -gt "$p2"
check "no upstream TLS failure so far" bash -c "! grep -q upstream_tls_failed '$T/edge.log'"
check "both nodes up" bash -c "curl -fsS http://127.0.0.1:$ADMIN_PORT/readyz | grep -q 'upstream_nodes_up: 2 of 2'"

# A KeyUpdate flood from UCM (no data between): cut after 32 with unexpected_message.
for _ in $(seq 1 40); do
    say 1 k
    sleep 0.005
done
answer_for 1 2
check "flood: UCM sent the KeyUpdates ($(count 1 'SSL_do_handshake -> 1'))" \
    test "$(count 1 'SSL_do_handshake -> 1')" -ge 34
check "flood: the edge sent fatal unexpected_message to UCM" \
    grep -q '<<< TLS 1.3, Alert \[length 0002\], fatal unexpected_message' "$T/ucm-1.out"
e2e_done
