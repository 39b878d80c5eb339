#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The demo: installs packages, builds sipedge (Release), makes a throwaway PKI and token signing
# key, starts redis-server (if installed; else the edge runs with its in-process cache only),
# the UCM stand-in (sipedge-ucmsim, mutual TLS on a loopback port) and sipedge, then sends a burst
# of real Jabber-like REGISTERs over TLS (SIPp through stunnel): each first gets the 407 Bearer
# challenge, then registers with its token. Prints what happened. DEMO_USERS (default 200) and
# DEMO_RATE (REGISTER pairs per second, default 200) size the burst.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build/rel -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/rel -j"$(nproc)" >/dev/null

export BIN=$PWD/build/rel SRC=$PWD
source tests/e2e/lib.sh
e2e_init demo
trap 'e2e_cleanup; echo "demo: stopped everything it started; logs in $T"' EXIT

if command -v redis-server >/dev/null; then
    REDIS_PORT=$(free_port)
    start_redis "$REDIS_PORT"
    echo "demo: redis-server on 127.0.0.1:$REDIS_PORT (shared token cache)"
else
    REDIS_PORT=
    echo "demo: redis-server not found: the edge runs with its in-process (L1) cache only"
fi
UCM_PORT=$(free_port)
start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
echo "demo: sipedge-ucmsim (UCM stand-in) on 127.0.0.1:$UCM_PORT, mutual TLS"
NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
start_edge
wait_ready 10
echo "demo: sipedge on 127.0.0.1:$EDGE_PORT (TLS), admin on http://127.0.0.1:$ADMIN_PORT"
grep -o 'event=upstream_client_certificate.*' "$T/edge.log" | head -1 | sed 's/^/demo: edge says: /'
start_stunnel

n=${DEMO_USERS:-200}
{
    echo SEQUENTIAL
    for i in $(seq 1 "$n"); do echo "user$i;$(mint "user$i");"; done
} >"$T/users.csv"
echo "demo: minted $n ES256 tokens; $n clients register (REGISTER -> 407, REGISTER+token -> 200)"
start=$(date +%s.%N)
status=0
run_sipp "$SRC/tests/e2e/sipp/register_bearer.xml" "$T/users.csv" "$n" "${DEMO_RATE:-200}" ||
    status=$?
end=$(date +%s.%N)

m() { metric "$1"; }
echo
echo "== what happened"
printf '  REGISTERs received by the edge : %s\n' "$(m 'sipedge_sip_requests_total\{method="REGISTER"')"
printf '  407 challenges made by the edge: %s\n' "$(m 'code="407",source="edge"')"
printf '  200 OK relayed from UCM        : %s\n' "$(m 'code="200",source="upstream"')"
printf '  other answers                  : %s\n' \
    "$(( $(m 'sipedge_sip_responses_total') - $(m 'code="407",source="edge"') - $(m 'code="200",source="upstream"') ))"
printf '  tokens accepted: verified / Redis / L1 : %s / %s / %s\n' \
    "$(m 'sipedge_auth_results_total\{result="ok",layer="verify"')" \
    "$(m 'sipedge_auth_results_total\{result="ok",layer="l2"')" \
    "$(m 'sipedge_auth_results_total\{result="ok",layer="l1"')"
printf '  client TLS on own records / OpenSSL: %s / %s\n' \
    "$(m 'sipedge_tls_handshakes_total\{version="1.[23]",records="sipedge"')" \
    "$(m 'sipedge_tls_handshakes_total\{version="1.[23]",records="openssl"')"
printf '  UCM saw REGISTERs              : %s\n' "$(grep -c '"method":"REGISTER"' "$T/ucm-ucm1.jsonl" || true)"
awk -v a="$start" -v b="$end" 'BEGIN { printf "  wall time for the burst        : %.2f s\n", b - a }'
grep -E "Successful call|Failed call|Response Time" "$T/sipp.out" | sed 's/^/  sipp: /' | head -6
echo
echo "One of the forwarded REGISTERs as UCM received it (token elided):"
grep -m1 '"method":"REGISTER"' "$T/ucm-ucm1.jsonl" | sed -e 's/,"raw":.*$/}/'

# == A call through the edge, both legs (issue 9). sipedge-ucmsim is a registrar only, so a
# UCM that routes calls is stood in by Kamailio (tests/e2e/kamailio/ucm.cfg) behind a second edge.
if command -v kamailio >/dev/null && command -v sipp >/dev/null; then
    echo
    echo "== a call through the edge: alice calls bob, each a client registered through the edge"
    source tests/e2e/lib_calls.sh
    stop_edge >/dev/null
    KAM_PORT=$(free_port)
    start_kamailio "$KAM_PORT" ucm.cfg
    NODES="127.0.0.1 $KAM_PORT ucm1.example.test" EDGE_HOST=127.0.0.1 EDGE_PORT='' ADMIN_PORT=''
    start_edge
    wait_ready 10
    start_stunnel
    ua_pair demo "$STUNNEL_PORT" call_uas.xml call_uac.xml
    echo "  the call as the UCM stand-in saw it (every message crossed the edge):"
    grep -E "\{[0-9]+ [0-9]+ [A-Z]+ demo\} .*kam-(req|reply): " "$KAM_LOG" |
        sed -E 's/^.*kam-(req|reply): ([^ ]+ [^ ]+).*$/    \1 \2/' | head -14
    printf '  requests the edge proxied, client -> UCM / UCM -> client: %s / %s\n' \
        "$(m 'sipedge_calls_forwarded_total\{.*direction="to_ucm"')" \
        "$(m 'sipedge_calls_forwarded_total\{.*direction="to_client"')"
    [ "${E2E_FAILS:-0}" -eq 0 ] || status=1
else
    echo "demo: kamailio or sipp missing: no call shown"
fi
exit "$status"
