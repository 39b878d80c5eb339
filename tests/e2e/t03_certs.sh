#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 3: certificate trouble between the edge and UCM. (a) UCM's allowlist lacks our name, (b) UCM
# does not trust our CA, (c) the edge does not trust UCM's certificate (other CA, self-signed),
# (d) the node's expected name is not in UCM's SAN. Each time: clients get 503 + Retry-After, the
# edge logs the cause and its fix once (not once per retry), /readyz is 503 and names the node
# with its last error, and the upstream handshake-failure counter grows.
source "$(dirname "$0")/lib.sh"
e2e_init t03_certs

sed -e 's/@MAXFWD@/70/' -e 's/@STATUS@/503/' -e 's/@HEADER@/Retry-After:/' -e 's/@REGEXP@/^ *7$/' \
    "$SRC/tests/e2e/sipp/register_expect.xml" >"$T/expect_503.xml"
calls=5
{
    echo SEQUENTIAL
    for i in $(seq 1 $calls); do echo "user$i;$(mint "user$i");"; done
} >"$T/users.csv"

# fail_case NAME NODE_NAME CAUSE METRIC_CAUSE LOG_REGEX [ucmsim flags...]: one edge in front of
# one failing UCM node; UP_CA may be set by the caller. CAUSE is the log's cause=, METRIC_CAUSE the
# metric's cause label; LOG_REGEX must match the edge's failure line.
fail_case() {
    local c=$1 node=$2 cause=$3 mcause=$4 re=$5
    shift 5
    e2e_log "--- case $c: expect cause=$cause"
    local port
    port=$(free_port)
    start_ucmsim "$c" "$port" "$@"
    NODES="127.0.0.1 $port $node"
    EDGE_PORT=$(free_port)
    ADMIN_PORT=$(free_port)
    start_edge
    start_stunnel
    # Let the pool fail and retry a few times (backoff 100 ms .. 1 s).
    sleep 3
    check "$c: SIPp: $calls clients get 503 with Retry-After: 7" \
        run_sipp "$T/expect_503.xml" "$T/users.csv" "$calls" 50
    grep -E "Successful call|Failed call" "$T/sipp.out" | head -4 >&2 || true
    local first
    first=$(grep -c 'upstream_tls_failed' "$T/edge.log" || true)
    sleep 2.5
    local lines
    lines=$(grep -c 'upstream_tls_failed' "$T/edge.log" || true)
    check "$c: the failure is logged once, not per retry ($first then $lines lines)" \
        test "$first" -eq 1 -a "$lines" -eq 1
    check "$c: the log line names cause=$cause" grep -q "upstream_tls_failed.*cause=$cause" "$T/edge.log"
    check "$c: the log line names the fix" grep -qE "upstream_tls_failed.*$re" "$T/edge.log"
    local code body
    code=$(curl -s -o "$T/readyz-$c.txt" -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz")
    body=$(cat "$T/readyz-$c.txt")
    check "$c: /readyz is 503 (was $code)" test "$code" = 503
    check "$c: /readyz says no node is up" grep -q 'upstream_nodes_up: 0 of 1' "$T/readyz-$c.txt"
    check "$c: /readyz names the node with its last error" \
        grep -qE "node 127.0.0.1:$port name=$node .*last_error=\".*cause=$cause" "$T/readyz-$c.txt"
    local fails
    fails=$(metric "sipedge_tls_handshake_failures_total\\{side=\"upstream\",cause=\"$mcause\"")
    check "$c: metric upstream handshake failures cause=$mcause > 0 (is $fails)" test "$fails" -gt 0
    local regs
    regs=$(grep -c '"method":"REGISTER"' "$T/ucm-$c.jsonl" 2>/dev/null || true)
    check "$c: UCM received no REGISTER" test "${regs:-0}" -eq 0
    [ "$E2E_FAILS" -eq 0 ] || printf '%s\n' "$body" >&2
    stop_edge
    cp "$T/edge.log" "$T/edge-$c.log"
    eval "kill \$UCM_PID_$c"
}

# (a) UCM's Device > Expressway-C list lacks our name: bad_certificate alert after our Finished.
fail_case a ucm1.example.test bad_certificate alert_bad_certificate \
    'fix=.*Expressway-C|fix=.*clientAuth' \
    --allow other.example.test
check "a: UCM logged not_in_allowlist" grep -q 'cause=not_in_allowlist' "$T/ucm-a.err"

# (b) UCM's tomcat-trust lacks our CA.
ucm_ca=$PKI/untrusted-ca.crt
fail_case b ucm1.example.test unknown_ca alert_unknown_ca \
    'fix=.*tomcat-trust.*Device > Expressway-C' \
    --allow edge.example.test --ca "$ucm_ca"
check "b: UCM logged unknown_ca" grep -q 'cause=unknown_ca' "$T/ucm-b.err"

# (c1) the edge does not trust UCM's CA (upstream ca = a CA that did not sign ucm.crt).
UP_CA=$PKI/untrusted-ca.crt
fail_case c1 ucm1.example.test untrusted_issuer verify_untrusted \
    'fix=.*upstream ca_file' --allow edge.example.test
check "c1: UCM got our unknown_ca alert" grep -q 'tls_handshake_failed.*alert unknown ca' "$T/ucm-c1.err"
UP_CA=

# (c2) UCM serves a self-signed certificate the edge's bundle does not hold.
fail_case c2 ucm1.example.test self_signed verify_untrusted \
    'fix=.*self-signed' --allow edge.example.test \
    --cert "$PKI/selfsigned.crt" --key "$PKI/selfsigned.key"

# (d) the node's expected name is not in UCM's SAN.
fail_case d ucm7.example.test hostname_mismatch verify_name \
    'expected ucm7.example.test.*fix=.*SAN' \
    --allow edge.example.test
e2e_done
