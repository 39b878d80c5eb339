#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 12: other TLS stacks against the edge's client port, on sipedge's own record layer (issue
# 11). openssl s_client, gnutls-cli and Python's ssl, each TLS 1.3 suite and each TLS 1.2 AEAD
# suite (ECDSA and RSA certificates), session resumption, KeyUpdate both ways (the client's,
# requested, and the edge's answer), a KeyUpdate flood cut off after 32 with an alert, and the
# fatal alert after a bad record (a damaged tag, a change_cipher_spec after the handshake) sent
# encrypted before the edge closes (RFC 8446 §6.2). Each exchange is an OPTIONS the edge answers
# itself with 200.
source "$(dirname "$0")/lib.sh"
e2e_init t12_tls_interop

PROBE="$SRC/tests/e2e/tls_probe.py"
UCM_PORT=$(free_port)
start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
WORKERS=1
start_edge
wait_ready 10
ECDSA_PORT=$EDGE_PORT

# A second edge with the RSA certificate, for the ECDHE-RSA suites.
EDGE_PORT=$(free_port)
ADMIN_PORT2=$(free_port)
ADMIN_SAVE=$ADMIN_PORT
ADMIN_PORT=$ADMIN_PORT2
write_edge_config "$T/edge-rsa.yaml"
sed -i "s#$PKI/server.crt#$PKI/server-rsa.crt#; s#$PKI/server.key#$PKI/server-rsa.key#" \
    "$T/edge-rsa.yaml"
"$EDGE" "$T/edge-rsa.yaml" >"$T/edge-rsa.out" 2>"$T/edge-rsa.log" &
RSA_PID=$!
E2E_PIDS+=($RSA_PID)
wait_port "$EDGE_PORT"
RSA_PORT=$EDGE_PORT
EDGE_PORT=$ECDSA_PORT
ADMIN_PORT=$ADMIN_SAVE

options() { # options N: one OPTIONS request
    printf 'OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-t12-%s\r\nMax-Forwards: 70\r\nFrom: <sip:probe@example.test>;tag=t12\r\nTo: <sip:127.0.0.1>\r\nCall-ID: t12-%s@example.test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n' "$1" "$1"
}

# s_client_run NAME PORT [s_client options...]: stdin from the function `feed`, output in $T/NAME.out.
s_client_run() {
    local name=$1 port=$2
    shift 2
    feed | timeout 15 openssl s_client -connect "127.0.0.1:$port" -CAfile "$PKI/ca.crt" \
        -verify_return_error -msg "$@" >"$T/$name.out" 2>&1 || true
}
answers() { grep -c '^SIP/2.0 200 OK' "$1" || true; }

# ---- openssl s_client: TLS 1.3 suites with KeyUpdate both ways, TLS 1.2 suites ----
feed() {
    options 1
    sleep 0.3
    echo K # KeyUpdate, update_requested: the edge must answer with its own
    sleep 0.3
    options 2
    sleep 0.3
    echo k # and one not requested: the edge only follows
    sleep 0.3
    options 3
    sleep 0.5
}
for s in TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256; do
    s_client_run "s13-$s" "$ECDSA_PORT" -tls1_3 -ciphersuites "$s"
    o="$T/s13-$s.out"
    check "s_client TLS 1.3 $s: negotiated" grep -q "Cipher is $s" "$o"
    check "s_client TLS 1.3 $s: 3 answers across two KeyUpdates (got $(answers "$o"))" \
        test "$(answers "$o")" -eq 3
    check "s_client TLS 1.3 $s: the edge answered the requested KeyUpdate with one" \
        test "$(grep -c '<<< TLS 1.3, Handshake \[length 0005\], KeyUpdate' "$o")" -eq 1
done
feed() {
    options 1
    sleep 0.5
}
for pair in "$ECDSA_PORT ECDHE-ECDSA-AES128-GCM-SHA256" "$ECDSA_PORT ECDHE-ECDSA-AES256-GCM-SHA384" \
    "$ECDSA_PORT ECDHE-ECDSA-CHACHA20-POLY1305" "$RSA_PORT ECDHE-RSA-AES128-GCM-SHA256" \
    "$RSA_PORT ECDHE-RSA-AES256-GCM-SHA384" "$RSA_PORT ECDHE-RSA-CHACHA20-POLY1305"; do
    read -r port s <<<"$pair"
    s_client_run "s12-$s" "$port" -tls1_2 -cipher "$s"
    check "s_client TLS 1.2 $s: negotiated and answered" \
        bash -c "grep -q 'Cipher is $s' '$T/s12-$s.out' && grep -q '^SIP/2.0 200 OK' '$T/s12-$s.out'"
done

# Resumption with s_client (TLS 1.3 ticket, TLS 1.2 ticket).
for v in 1_3 1_2; do
    s_client_run "sess-$v-a" "$ECDSA_PORT" "-tls$v" -sess_out "$T/sess-$v.pem"
    s_client_run "sess-$v-b" "$ECDSA_PORT" "-tls$v" -sess_in "$T/sess-$v.pem"
    check "s_client TLS ${v/_/.}: resumed and answered" \
        bash -c "grep -q '^Reused, TLSv' '$T/sess-$v-b.out' && grep -q '^SIP/2.0 200 OK' '$T/sess-$v-b.out'"
done

# A KeyUpdate flood: 40 not-requested KeyUpdates without data between. The edge follows 32, then
# fails the connection with unexpected_message, and that alert reaches the client.
feed() {
    options 1
    sleep 0.3
    for _ in $(seq 1 40); do
        echo k
        sleep 0.02
    done
    sleep 0.5
    options 2
    sleep 0.3
}
s_client_run flood "$ECDSA_PORT" -tls1_3
check "KeyUpdate flood: the exchange before it answered, none after" test "$(answers "$T/flood.out")" -eq 1
check "KeyUpdate flood: the edge sent a fatal unexpected_message alert" \
    grep -q '<<< TLS 1.3, Alert \[length 0002\], fatal unexpected_message' "$T/flood.out"

# ---- gnutls-cli: each TLS 1.3 suite and each TLS 1.2 AEAD suite, resumption, KeyUpdate ----
# --resume connects twice (the second resumes); --rehandshake in TLS 1.3 is a KeyUpdate asking
# the edge to update too; the OPTIONS is answered after both.
gnutls() { # gnutls NAME PORT PRIORITY [options]
    local name=$1 port=$2 prio=$3
    shift 3
    { options "$name"; sleep 1; } | timeout 15 gnutls-cli --x509cafile "$PKI/ca.crt" -p "$port" \
        localhost --priority "$prio" --resume "$@" >"$T/gnutls-$name.out" 2>&1 || true
}
for c in AES-128-GCM AES-256-GCM CHACHA20-POLY1305; do
    gnutls "13-$c" "$ECDSA_PORT" "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+$c" --rehandshake
    o="$T/gnutls-13-$c.out"
    check "gnutls-cli TLS 1.3 $c: resumed, KeyUpdate, answered" bash -c \
        "grep -q 'TLS1.3.*$c' '$o' && grep -q 'This is a resumed session' '$o' && grep -q 'ReHandshake was completed' '$o' && grep -q '^SIP/2.0 200 OK' '$o'"
    for port in "$ECDSA_PORT" "$RSA_PORT"; do
        gnutls "12-$c-$port" "$port" "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+$c"
        o="$T/gnutls-12-$c-$port.out"
        check "gnutls-cli TLS 1.2 $c ($([ "$port" = "$RSA_PORT" ] && echo RSA || echo ECDSA)): resumed and answered" \
            bash -c "grep -q 'TLS1.2.*$c' '$o' && grep -q 'This is a resumed session' '$o' && grep -q '^SIP/2.0 200 OK' '$o'"
    done
done

# TLS 1.2 renegotiation: the edge declines each request with a no_renegotiation warning;
# gnutls-cli asks again at once, and after 4 the edge ends the loop with unexpected_message.
gnutls reneg "$ECDSA_PORT" "NORMAL:-VERS-ALL:+VERS-TLS1.2" --rehandshake
check "gnutls-cli TLS 1.2: renegotiation declined with no_renegotiation" \
    grep -q 'Received alert \[100\]' "$T/gnutls-reneg.out"
check "gnutls-cli TLS 1.2: its endless retries cut after 4 (unexpected_message)" \
    test "$(grep -c 'Received alert \[100\]' "$T/gnutls-reneg.out")" -eq 4 -a \
    "$(grep -c 'Received alert \[10\]' "$T/gnutls-reneg.out")" -eq 1

# ---- Python's ssl: TLS 1.2 suites, resumption, alerts after bad records ----
check "python: each TLS 1.2 ECDSA suite" python3 "$PROBE" suites12 "$ECDSA_PORT" "$PKI/ca.crt" \
    ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-ECDSA-AES256-GCM-SHA384 ECDHE-ECDSA-CHACHA20-POLY1305
check "python: each TLS 1.2 RSA suite" python3 "$PROBE" suites12 "$RSA_PORT" "$PKI/ca.crt" \
    ECDHE-RSA-AES128-GCM-SHA256 ECDHE-RSA-AES256-GCM-SHA384 ECDHE-RSA-CHACHA20-POLY1305
for v in 1.3 1.2; do
    check "python TLS $v: resumption" python3 "$PROBE" resume "$ECDSA_PORT" "$PKI/ca.crt" "$v"
    for kind in tag ccs; do
        check "python TLS $v: a bad record ($kind) gets the edge's alert before the close" \
            python3 "$PROBE" alert "$ECDSA_PORT" "$PKI/ca.crt" "$v" "$kind"
    done
done

# A client that sends a request right behind its Finished and closes at once: the edge's step
# after the Finished waits for the handshake slice, and the close must not drop it. Every such
# handshake completes and every request is handled (its answer has nowhere to go).
for v in 1.3 1.2; do
    hs0=$(metric 'sipedge_tls_handshakes_total')
    req0=$(metric 'sipedge_sip_requests_total\{method="OPTIONS"\}')
    check "python TLS $v: 300 clients that finish, send and close at once" \
        python3 "$PROBE" finish_close "$ECDSA_PORT" "$PKI/ca.crt" "$v" 300
    for _ in $(seq 1 50); do
        [ "$(metric 'sipedge_sip_requests_total\{method="OPTIONS"\}')" -ge $((req0 + 300)) ] &&
            break
        sleep 0.1
    done
    hs=$(($(metric 'sipedge_tls_handshakes_total') - hs0))
    req=$(($(metric 'sipedge_sip_requests_total\{method="OPTIONS"\}') - req0))
    e2e_log "TLS $v finish-and-close: $hs handshakes completed, $req OPTIONS handled"
    check "TLS $v: every handshake of a client that closed right after its Finished completed" \
        test "$hs" -eq 300
    check "TLS $v: every request sent right before the close was handled" test "$req" -eq 300
done

check "every client connection was on sipedge's record layer" \
    test "$(metric 'sipedge_tls_handshakes_total\{.*records="openssl"')" -eq 0
kill "$RSA_PID"
e2e_done
