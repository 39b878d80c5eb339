#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 2: tokens the edge must refuse. Expired, signed by another key under our kid, unknown kid,
# alg "none" and revoked (after it was accepted, so the workers' caches held it) each get 407
# with error="invalid_token"; a valid token of another user gets 403; UCM receives none of them.
# A valid token in the RFC 6750 form `Authorization: Bearer <token68>` is accepted. SIPp through
# stunnel (one TLS connection per call), 2 workers, with Redis (revocation by pub/sub).
source "$(dirname "$0")/lib.sh"
e2e_init t02_tokens

start_stack

# expect NAME STATUS HEADER REGEXP CALLS USER TOKEN [authorization]: CALLS REGISTERs (one TLS
# connection each) with To/From USER and TOKEN, each must get STATUS whose HEADER matches REGEXP
# (an XML attribute: write quotes as \"). With `authorization` the token goes in
# `Authorization: Bearer <token68>` instead of `Proxy-Authorization: Bearer token="..."`.
expect() {
    local name=$1 status=$2 header=$3 regexp=$4 calls=$5 user=$6 tok=$7 form=${8:-}
    local sc="$T/$name.xml" csv="$T/$name.csv" esc
    esc=$(printf '%s' "$regexp" | sed 's/[\\&#]/\\&/g')
    sed -e "s#@STATUS@#$status#" -e "s#@HEADER@#$header#" -e "s#@REGEXP@#$esc#" \
        -e "s#@MAXFWD@#70#" "$SRC/tests/e2e/sipp/register_expect.xml" >"$sc"
    if [ "$form" = authorization ]; then
        sed -i 's#Proxy-Authorization: Bearer token="\[field1\]"#Authorization: Bearer [field1]#' "$sc"
    fi
    {
        echo SEQUENTIAL
        for _ in $(seq 1 "$calls"); do echo "$user;$tok;"; done
    } >"$csv"
    local rc=0
    run_sipp "$sc" "$csv" "$calls" 50 || rc=$?
    if [ "$rc" -ne 0 ]; then
        grep -E "Successful call|Failed call" "$T/sipp.out" | head -4 >&2 || true
        tail -n 20 "$T/sipp-errors.log" >&2 2>/dev/null || true
        echo >&2
    fi
    cp "$T/sipp.out" "$T/sipp-$name.out"
    return "$rc"
}

INVALID='^ *Bearer realm=\"ccmsipline\", error=\"invalid_token\"$'
now=$(date +%s)
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

expired=$("$TOKEN" mint --key "$JWT_KEY" --kid es1 --user user1 --iat $((now - 7200)) \
    --exp $((now - 600)))
"$TOKEN" keygen --type ec --out "$T/other.key" >/dev/null
forged=$("$TOKEN" mint --key "$T/other.key" --kid es1 --user user1 --lifetime 3600)
unknown_kid=$(mint user1 --kid nosuchkid)
payload=$(mint user1 | cut -d. -f2)
alg_none="$(printf '{"alg":"none","kid":"es1"}' | b64url).$payload."

before=$(ucm_registers)
check "expired token: 407 invalid_token" \
    expect expired 407 Proxy-Authenticate: "$INVALID" 2 user1 "$expired"
check "token signed by another key with our kid: 407 invalid_token" \
    expect forged 407 Proxy-Authenticate: "$INVALID" 2 user1 "$forged"
check "unknown kid: 407 invalid_token" \
    expect unknown_kid 407 Proxy-Authenticate: "$INVALID" 2 user1 "$unknown_kid"
check "alg none: 407 invalid_token" \
    expect alg_none 407 Proxy-Authenticate: "$INVALID" 2 user1 "$alg_none"
check "token of user2 in a REGISTER for user1: 403" \
    expect wrong_user 403 CSeq: '^ *1 REGISTER$' 2 user1 "$(mint user2)"
check "UCM received none of the refused REGISTERs" test "$(ucm_registers)" -eq "$before"

check "metrics: expired counted" test "$(metric 'sipedge_auth_results_total\{result="expired"')" -ge 2
check "metrics: bad signature counted" \
    test "$(metric 'sipedge_auth_results_total\{result="bad_signature"')" -ge 2
check "metrics: unknown kid counted" \
    test "$(metric 'sipedge_auth_results_total\{result="unknown_kid"')" -ge 2
check "metrics: alg none counted as a disallowed alg" \
    test "$(metric 'sipedge_auth_results_total\{result="bad_alg"')" -ge 2
check "metrics: identity mismatch counted" \
    test "$(metric 'sipedge_auth_results_total\{result="identity_mismatch"')" -eq 2
check "metrics: 8 edge-made 407 invalid_token + 2 403s" \
    test "$(metric 'sipedge_sip_responses_total\{method="REGISTER",code="407",source="edge"')" -eq 8 \
    -a "$(metric 'sipedge_sip_responses_total\{method="REGISTER",code="403",source="edge"')" -eq 2

# RFC 6750 credentials in Authorization reach UCM as sent.
before=$(ucm_registers)
check "Authorization: Bearer <token68>: 200 from UCM" \
    expect token68 200 Expires: '^ *120$' 1 user3 "$(mint user3)" authorization
check "UCM got that REGISTER with its Authorization header" \
    grep -q '"authorization":true' "$REC"
check "UCM received exactly that one" test "$(ucm_registers)" -eq $((before + 1))

# Revocation: accepted on 10 connections first (both workers verify it and cache it in L1, Redis
# holds it in L2), then revoked by jti; the pub/sub message must drop it from every L1.
jti="t02-$now-$$"
revoked=$(mint user4 --jti "$jti")
before=$(ucm_registers)
check "token with a jti: accepted 10 times" \
    expect pre_revoke 200 Expires: '^ *120$' 10 user4 "$revoked"
check "UCM received those 10" test "$(ucm_registers)" -eq $((before + 10))
l1_hits=$(metric 'sipedge_auth_results_total\{result="ok",layer="l1"')
check "the token was answered from L1 (cached) before its revocation ($l1_hits hits)" \
    test "$l1_hits" -ge 1
"$TOKEN" revoke --redis "127.0.0.1:$REDIS_PORT" --jti "$jti" --ttl 3600 >"$T/revoke.out"
check "sipedge-token revoke --jti: both workers' subscriptions got it" \
    grep -q 'subscribers=2$' "$T/revoke.out"
sleep 0.5 # the PUBLISH reaches the workers' subscriptions (one Redis round trip)
before=$(ucm_registers)
check "revoked token: 407 invalid_token on 10 connections" \
    expect revoked 407 Proxy-Authenticate: "$INVALID" 10 user4 "$revoked"
check "UCM received none of them" test "$(ucm_registers)" -eq "$before"
check "metrics: revoked counted 10 times" \
    test "$(metric 'sipedge_auth_results_total\{result="revoked"')" -eq 10

check "no token in the edge log" bash -c "! grep -q 'eyJ' '$T/edge.log'"
e2e_done
