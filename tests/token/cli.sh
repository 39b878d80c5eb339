#!/bin/sh
# SPDX-License-Identifier: MIT
# Drive the real sipedge-token binary: keygen, mint, verify (valid, expired, wrong key, cucm).
# usage: cli.sh SIPEDGE_TOKEN WORKDIR
set -eu
T=$1
D=$2
rm -rf "$D"
mkdir -p "$D"
NOW=1800000000

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect EXIT_CODE "OUTPUT" cmd...: run, compare exit code and stdout exactly.
expect() {
    want_rc=$1; want_out=$2; shift 2
    set +e
    out=$("$@" 2>"$D/stderr")
    rc=$?
    set -e
    [ "$rc" = "$want_rc" ] || fail "$* -> exit $rc (want $want_rc): $out $(cat "$D/stderr")"
    [ "$out" = "$want_out" ] || fail "$* -> '$out' (want '$want_out')"
    echo "ok: $want_out"
}

"$T" keygen --type rsa --out "$D/rs.pem" >/dev/null
"$T" keygen --type ec --out "$D/ec.pem" >/dev/null
"$T" keygen --type sym --out "$D/sym.key" >/dev/null
[ -s "$D/rs.pub.pem" ] && [ -s "$D/ec.pub.pem" ] && [ -s "$D/sym.key" ] || fail "keygen outputs"

TOK=$("$T" mint --key "$D/rs.pem" --user alice --kid r1 --now $NOW --lifetime 600 \
      --iss idp --aud sipedge --scope "sip:register")
expect 0 "valid user=alice exp=$((NOW + 600))" \
    "$T" verify --pub "$D/rs.pub.pem:r1" --now $((NOW + 10)) --iss idp --aud sipedge \
    --scope sip:register "$TOK"
expect 1 "invalid: expired" "$T" verify --pub "$D/rs.pub.pem:r1" --now $((NOW + 3600)) "$TOK"
expect 1 "invalid: bad_issuer" "$T" verify --pub "$D/rs.pub.pem:r1" --now $NOW --iss x "$TOK"
expect 1 "invalid: unknown_kid" "$T" verify --pub "$D/rs.pub.pem:other" --now $NOW "$TOK"
# token on stdin
expect 0 "valid user=alice exp=$((NOW + 600))" \
    sh -c "echo '$TOK' | '$T' verify --pub '$D/rs.pub.pem:r1' --now $NOW"

# ES256 through a JWKS made by the tool
"$T" jwks "$D/ec.pub.pem:e1" "$D/rs.pub.pem:r1" >"$D/jwks.json"
ETOK=$("$T" mint --key "$D/ec.pem" --user bob --kid e1 --alg ES256 --exp $((NOW + 5)))
expect 0 "valid user=bob exp=$((NOW + 5))" "$T" verify --jwks "$D/jwks.json" --now $NOW "$ETOK"
expect 1 "invalid: alg_not_allowed" "$T" verify --pub "$D/rs.pub.pem:e1" --now $NOW "$ETOK"

# cucm profile: with the key, without it, with the wrong one
CTOK=$("$T" mint --key "$D/rs.pem" --user carol --kid "c0ffee:00ff" --profile cucm \
       --sym-key "$D/sym.key" --now $NOW)
expect 0 "valid user=carol exp=$((NOW + 3600))" \
    "$T" verify --pub "$D/rs.pub.pem:c0ffee:00ff" --sym-key "$D/sym.key" --now $NOW "$CTOK"
expect 0 "valid user= exp=0 signature-only" \
    "$T" verify --pub "$D/rs.pub.pem:c0ffee:00ff" --now $NOW "$CTOK"
"$T" keygen --type sym --out "$D/other.key" >/dev/null
expect 1 "invalid: decrypt_failed" \
    "$T" verify --pub "$D/rs.pub.pem:c0ffee:00ff" --sym-key "$D/other.key" --now $NOW "$CTOK"

# configuration errors exit 2 and name the file
set +e
"$T" verify --pub "$D/missing.pem" "$TOK" 2>"$D/stderr" >/dev/null
rc=$?
set -e
[ "$rc" = 2 ] && grep -q missing.pem "$D/stderr" || fail "missing key file: exit $rc"
echo "all token cli checks passed"
rm -rf "$D"
