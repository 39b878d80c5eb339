#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 10: hostile and odd SIP at the edge (issue 10). Every request of the table
# tests/data/sip/edge/expected goes to the edge's real TLS port on a connection of its own and
# gets the answer the table names (400 naming a duplicated identity header even with a valid
# token, 505, 400 for a bad Request-Line, 416, 420 with Unsupported, 400 for a bad From/To or
# Request-URI, 200 to escaped NUL/BEL/DEL in a display name) or is closed without a word;
# sipedge-scan --verdict agrees on every row; UCM's stand-in never sees a request carrying a
# duplicated identity header; and 20 other clients register through the edge meanwhile, and 5
# more after, each with its 407 then 200.
source "$(dirname "$0")/lib.sh"
e2e_init t10_sip_checks

start_stack

tls() {
    "$BIN/sipedge-tlsclient" --connect "127.0.0.1:$EDGE_PORT" --ca "$PKI/ca.crt" --name localhost \
        --timeout-ms 10000 "$@" </dev/null
}

# The table, with alice's valid token in place of @TOKEN@.
mkdir -p "$T/rows"
tok=$(mint alice)
for f in "$SRC"/tests/data/sip/edge/*.sip; do
    sed "s#@TOKEN@#$tok#" "$f" >"$T/rows/$(basename "$f")"
done
cp "$SRC/tests/data/sip/edge/expected" "$T/rows/expected"

# The bystanders: 20 clients registering at 10/s while the table is sent.
n=20
{
    echo SEQUENTIAL
    for i in $(seq 1 $n); do echo "user$i;$(mint "user$i");"; done
} >"$T/users.csv"
run_sipp "$SRC/tests/e2e/sipp/register_bearer.xml" "$T/users.csv" "$n" 10 &
bystanders=$!

closes=0 answered_closes=0 rows=0
while read -r name code reason; do
    case $name in '' | '#'*) continue ;; esac
    rows=$((rows + 1))
    out="$T/rows/$name.out"
    if [ "$code" = close ]; then
        closes=$((closes + 1))
        check "$name: closed" tls send:"$T/rows/$name.sip" eof >"$out"
        check "$name: ... without a word" test ! -s "$out"
        continue
    fi
    tls send:"$T/rows/$name.sip" head >"$out" || true
    first=$(head -n 1 "$out" | tr -d '\r')
    want="SIP/2.0 $code $reason"
    [ "$reason" = challenge ] && want="SIP/2.0 407 Proxy Authentication Required"
    check "$name: '$want'" test "$first" = "$want"
    cid=$(grep -aim1 -E '^(Call-ID|i):' "$T/rows/$name.sip" | sed -E 's/^[^:]*: *//' | tr -d '\r')
    check "$name: ... for that request (Call-ID $cid)" grep -qF "Call-ID: $cid" "$out"
    if [ "$code" = 420 ]; then
        check "$name: ... with Unsupported" grep -q '^Unsupported: ' "$out"
    fi
    "$BIN/sipedge-scan" --verdict "$T/rows/$name.sip" >"$out.scan" </dev/null || true
    if grep -q ', then close$' "$out.scan"; then
        answered_closes=$((answered_closes + 1))
    fi
done <"$T/rows/expected"
check "the table has rows" test "$rows" -gt 30
check "some rows are answered then closed" test "$answered_closes" -gt 5

# sipedge-scan, running the edge's decision code, agrees with the table on every row.
check "sipedge-scan --verdict agrees with the edge on every row" \
    bash "$SRC/tests/scan-verdicts.sh" "$BIN/sipedge-scan" "$T/rows" >"$T/scan-verdicts.out"

rc=0
wait "$bystanders" || rc=$?
grep -E "Successful call|Failed call" "$T/sipp.out" | head -4 >&2 || true
check "the $n bystanders all got 407 then 200 meanwhile" test "$rc" -eq 0

# The edge still serves: 5 new clients register after the table.
{
    echo SEQUENTIAL
    for i in $(seq 21 25); do echo "user$i;$(mint "user$i");"; done
} >"$T/after.csv"
rc=0
run_sipp "$SRC/tests/e2e/sipp/register_bearer.xml" "$T/after.csv" 5 10 || rc=$?
check "5 clients register after the table (407 then 200)" test "$rc" -eq 0

# Nothing with a duplicated identity header ever reaches UCM: all their Call-IDs start "dup-",
# and UCM saw exactly the bystanders' REGISTERs.
check "UCM never received a request of the duplicate rows" bash -c "! grep -q 'dup-' '$REC'"
check "UCM received exactly the 25 clients' REGISTERs" test "$(ucm_registers)" -eq 25
check "UCM received nothing from alice (every row with her token was refused)" \
    bash -c "! grep -q 'sip:alice@example.test' '$REC'"

check "metrics: $closes connections closed without a word (unframeable)" \
    test "$(metric 'sipedge_connections_closed_total\{reason="unframeable"')" -eq "$closes"
check "metrics: $answered_closes connections answered, then closed (garbage)" \
    test "$(metric 'sipedge_connections_closed_total\{reason="garbage"')" -eq "$answered_closes"
e2e_done
