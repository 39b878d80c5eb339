#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ucm_cert_rotate: two UCM nodes; at 40 % of the load the preferred one (ucm1) is stopped and
# started again at once on its port with a new certificate (new key, same names) from the same
# CA (the e2e PKI's ucm-ca), as an operator rotating UCM's Tomcat certificate. The edge's pool
# reconnects, verifies the new certificate against its CA and the node's name, and ucm1 takes
# traffic again; meanwhile ucm2 carries it.
# Invariants: every REGISTER answered 200 and the common ones; ucm1 gets REGISTERs after the
# rotation (over a connection that verified the new certificate). Figures: failovers, REGISTERs
# ucm1 got after the rotation, upstream handshake failures.
# shellcheck disable=SC2317 # fault() runs through chaos_run
# shellcheck source=bench/chaos/lib.sh
source "$(dirname "$0")/lib.sh"
chaos_init ucm_cert_rotate

# new_ucm_cert N: $T/ucm-N.crt/.key, UCM's names, signed by the same ucm-ca.
new_ucm_cert() {
    local c="$T/ucm-$1"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$c.key" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:ucm1.example.test,DNS:ucm2.example.test,DNS:localhost,IP:127.0.0.1\n' >"$c.ext"
    openssl req -new -key "$c.key" -subj "/O=sipedge test/CN=ucm1.example.test $1" -out "$c.csr" 2>/dev/null
    openssl x509 -req -in "$c.csr" -CA "$PKI/ucm-ca.crt" -CAkey "$PKI/ucm-ca.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days 30 -sha256 -extfile "$c.ext" -out "$c.crt" 2>/dev/null
}

ROUND=0
fault() {
    ROUND=$((ROUND + 1))
    new_ucm_cert "r$ROUND"
    chaos_at 0.4
    FAILOVERS0=$(metric '^sipedge_upstream_failovers_total')
    HS_FAIL0=$(metric '^sipedge_tls_handshake_failures_total\{side="upstream"')
    chaos_fault "ucm1 restarted with a new certificate"
    kill "$UCM_PID_ucm1"
    wait "$UCM_PID_ucm1" 2>/dev/null || true
    "$UCMSIM" --addr 127.0.0.1 --port "$UCM1_PORT" --cert "$T/ucm-r$ROUND.crt" \
        --key "$T/ucm-r$ROUND.key" --ca "$PKI/ca.crt" --node ucm1 --record "$T/ucm-ucm1.jsonl" \
        --allow edge.example.test >"$T/ucm-ucm1-r$ROUND.out" 2>"$T/ucm-ucm1-r$ROUND.err" &
    UCM_PID_ucm1=$!
    E2E_PIDS+=("$!")
    wait_port "$UCM1_PORT"
    UCM1_MARK=$(ucm_registers_of ucm1)
}

chaos_stack 2
old_serial=$(openssl x509 -in "$PKI/ucm.crt" -noout -serial)
chaos_run fault
chaos_check_load
chaos_check_edge
served=$(openssl s_client -connect "127.0.0.1:$UCM1_PORT" -CAfile "$PKI/ucm-ca.crt" \
    -cert "$PKI/client.crt" -key "$PKI/client.key" </dev/null 2>/dev/null |
    openssl x509 -noout -serial 2>/dev/null || true)
if [ -z "$served" ] || [ "$served" = "$old_serial" ] ||
    [ "$served" != "$(openssl x509 -in "$T/ucm-r$ROUND.crt" -noout -serial)" ]; then
    chaos_fail "ucm1 does not serve the new certificate (${served:-none})"
fi
after=$(($(ucm_registers_of ucm1) - UCM1_MARK))
[ "$after" -gt 0 ] || chaos_fail "ucm1 got no REGISTER after the rotation"
chaos_fig "failovers=$(($(metric '^sipedge_upstream_failovers_total') - FAILOVERS0))"
chaos_fig "ucm1_after_rotation=$after"
chaos_fig "upstream_hs_failures=$(($(metric '^sipedge_tls_handshake_failures_total\{side="upstream"') - HS_FAIL0))"
chaos_done
