#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The Kamailio edge of the `compare` benchmark (edge.cfg) on its own, in front of sipedge-ucmsim:
# no Proxy-Authorization gets the 407 Bearer challenge; an HS256 token for the To user gets the
# REGISTER relayed over mutual TLS (the edge's client certificate) with Path and Max-Forwards - 1,
# and UCM's 200 back; a bad signature, another user's token, an expired token or another alg get
# 407 error="invalid_token"; a cached token skips the HMAC (a forged token planted in the htable
# passes). The client is openssl s_client. Needs BIN (sipedge-token, sipedge-ucmsim) and SRC.
source "$SRC/tests/e2e/lib.sh"
e2e_init kamailio_edge
source "$SRC/bench/peers/kamailio/kamailio-edge.sh"
trap 'kamedge_stop; e2e_cleanup' EXIT

# sip_tls REQUEST OUT: send the file REQUEST to the edge over TLS (verifying its certificate) and
# write the answer to OUT; the connection stays open until an answer arrived (at most 8 s).
sip_tls() {
    : >"$2"
    {
        cat "$1"
        for _ in $(seq 1 160); do
            grep -q '^Content-Length' "$2" && break
            sleep 0.05
        done
    } | timeout 10 openssl s_client -CAfile "$PKI/ca.crt" -verify_hostname localhost \
        -verify_return_error -connect "127.0.0.1:$KP" -quiet -no_ign_eof -nocommands \
        >"$2" 2>"$2.err" || true
}

# register NAME TO_USER [TOKEN]: a Jabber-like REGISTER (Proxy-Authorization if TOKEN is given)
# sent to the edge; the answer in $T/NAME.out.
register() {
    local pa=()
    [ -z "${3:-}" ] || pa=("Proxy-Authorization: Bearer token=\"$3\"")
    {
        printf '%s\r\n' 'REGISTER sip:ucm1.example.test SIP/2.0' \
            "Via: SIP/2.0/TCP 10.0.0.7:49152;branch=z9hG4bK-$1;rport" 'Max-Forwards: 70' \
            "From: <sip:$2@example.test>;tag=t-$1" "To: <sip:$2@example.test>" \
            "Call-ID: kamedge-$1" 'CSeq: 1 REGISTER' \
            "Contact: <sip:$2@10.0.0.7:49152;transport=tcp>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000000000001>\"" \
            'Expires: 3600' "${pa[@]}"
        printf 'Content-Length: 0\r\n\r\n'
    } >"$T/$1.sip"
    sip_tls "$T/$1.sip" "$T/$1.out"
}

challenge='^Proxy-Authenticate: Bearer realm="ccmsipline"'
invalid="$challenge, error=\"invalid_token\""
ucm_saw() { grep -c "\"call_id\":\"kamedge-$1\"" "$T/ucm-ucm1.jsonl" 2>/dev/null || true; }

UCM_PORT=$(free_port)
start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/hs.secret"
KP=$(free_port)
kamedge_start "$T/kam" "$PKI" "$KP" "$UCM_PORT" "$T/hs.secret"
mint_hs() { "$TOKEN" mint --alg HS256 --key "$T/hs.secret" --user "$@"; }

register nocred alice
check "no Proxy-Authorization: 407" grep -q '^SIP/2.0 407 ' "$T/nocred.out"
check "... with the Bearer challenge, no error" grep -qE "$challenge\s*$" "$T/nocred.out"
check "... and nothing reaches UCM" test "$(ucm_saw nocred)" -eq 0

tok=$(mint_hs alice --lifetime 3600)
register good alice "$tok"
check "an HS256 token for the To user: 200 from UCM" grep -q '^SIP/2.0 200 OK' "$T/good.out"
check "... with UCM's Expires" grep -q '^Expires: 120' "$T/good.out"
rec=$(grep '"call_id":"kamedge-good"' "$T/ucm-ucm1.jsonl" || true)
check "UCM saw the REGISTER once" test "$(ucm_saw good)" -eq 1
check "... from the edge's client certificate" grep -qF '"peer_names":"edge.example.test"' <<<"$rec"
check "... with the edge's Path" grep -qF "\"path\":[\"<sip:127.0.0.1:$KP;transport=tls;lr>\"]" <<<"$rec"
check "... with Max-Forwards decremented" grep -qF '"max_forwards":"69"' <<<"$rec"
check "... with the edge's Via on top" grep -qF "\"via_top\":\"SIP/2.0/TLS 127.0.0.1:$KP;branch=" <<<"$rec"
check "... with Proxy-Authorization kept" grep -qF '"proxy_authorization":true' <<<"$rec"

register again alice "$tok"
check "the same token again (cache hit): 200" grep -q '^SIP/2.0 200 OK' "$T/again.out"
kamcmd -s "$KAMEDGE_CTL" htable.stats >"$T/htable.out" 2>&1 || true
check "the verify cache holds one entry" grep -qE 'all: 1$' "$T/htable.out"

register otheruser bob "$tok"
check "alice's token for bob: 407 invalid_token" grep -qF "${invalid#^}" "$T/otheruser.out"
register badsig alice "${tok%?????}AAAAA"
check "a bad signature: 407 invalid_token" grep -qF "${invalid#^}" "$T/badsig.out"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/other.secret"
register othersecret alice "$("$TOKEN" mint --alg HS256 --key "$T/other.secret" --user alice)"
check "another secret: 407 invalid_token" grep -qF "${invalid#^}" "$T/othersecret.out"
register expired alice "$(mint_hs alice --exp $(($(date +%s) - 10)))"
check "an expired token: 407 invalid_token" grep -qF "${invalid#^}" "$T/expired.out"
register es256 alice "$(mint alice)"
check "an ES256 token: 407 invalid_token" grep -qF "${invalid#^}" "$T/es256.out"
register garbage alice "not-a-jwt"
check "not a JWT: 407 invalid_token" grep -qF "${invalid#^}" "$T/garbage.out"
check "none of these reached UCM" test "$(grep -cE '"call_id":"kamedge-(otheruser|badsig|othersecret|expired|es256|garbage)"' "$T/ucm-ucm1.jsonl")" -eq 0

forged="${tok%?????}BBBBB"
kamcmd -s "$KAMEDGE_CTL" htable.seti jwt "carol:$forged" $(($(date +%s) + 600)) >/dev/null 2>&1 || true
register planted carol "$forged"
check "a token found in the verify cache skips the HMAC (a planted entry passes)" \
    grep -q '^SIP/2.0 200 OK' "$T/planted.out"
check "the token is not in Kamailio's log" bash -c "! grep -qF '${tok:0:60}' '$KAMEDGE_LOG'"

pids=$(kamedge_pids | tr '\n' ' ')
check "Kamailio runs as a main process with children ($pids)" test "$(wc -w <<<"$pids")" -ge 4
kamedge_stop
left=0
for p in $pids; do kamedge_alive "$p" && left=$((left + 1)); done
check "stopping Kamailio leaves none of its processes" test "$left" -eq 0
e2e_done
