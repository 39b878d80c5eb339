#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scan-verdicts.sh SIPEDGE-SCAN DIR: for every row "FILE CODE [REASON]" of DIR/expected, runs
# `sipedge-scan --verdict DIR/FILE.sip` (the edge's own decision code) and checks that it
# answers CODE with REASON (or closes, for CODE "close"). Prints one line per row; exit 1 on any
# mismatch. tests/e2e/t10_sip_checks.sh sends the same table to a running edge.
set -uo pipefail
scan=$1 dir=$2 fails=0 rows=0
# verdict_of FILE: "CODE REASON" or the action ("close", "auth"...), extras and ", then close" cut.
verdict_of() {
    "$scan" --verdict "$1" 2>&1 | sed -n 's/^.*: verdict: //p' | head -n 1 |
        sed -e 's/, then close$//' -e 's/ \[.*$//'
}
while read -r name code reason; do
    case $name in '' | '#'*) continue ;; esac
    rows=$((rows + 1))
    want=$code${reason:+ $reason}
    got=$(verdict_of "$dir/$name.sip")
    if [ "$got" = "$want" ]; then
        echo "ok: $name: $got"
    else
        echo "FAIL: $name: sipedge-scan says '$got', the table says '$want'"
        fails=$((fails + 1))
    fi
done <"$dir/expected"
[ "$rows" -gt 0 ] || { echo "FAIL: no rows in $dir/expected"; exit 1; }
exit $((fails > 0))
