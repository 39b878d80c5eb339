#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Measures sipedge-ucmsim alone: run-ucmsim-bench.sh BUILD_DIR [bench-ucmsim options...].
# Makes the test PKI, starts the simulator on an ephemeral loopback port (stopped by its PID on
# exit), runs bench-ucmsim against it (default 5 runs x 20000 REGISTERs, window 32) and prints
# the simulator's counters. Use a Release build for figures.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: $0 BUILD_DIR [bench-ucmsim options]}" && pwd)
shift
work=$build/ucmsim-bench
pki=$work/pki
mkdir -p "$work"
bash "$here/ucmsim-pki.sh" "$pki"
rm -f "$work/port" "$work/pid"

"$build/sipedge-ucmsim" --port 0 --port-file "$work/port" --pid-file "$work/pid" \
  --cert "$pki/ucm.pem" --key "$pki/ucm.key" --ca "$pki/ca.pem" --allow edge.example.test \
  ${UCMSIM_ARGS:-} >"$work/counters" 2>"$work/log" &
sim=$!
trap 'kill "$sim" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  [ -s "$work/port" ] && break
  kill -0 "$sim" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
  sleep 0.05
done
[ -s "$work/port" ] || { echo "sipedge-ucmsim did not start" >&2; exit 1; }

"$build/bench-ucmsim" --port-file "$work/port" --pid "$sim" \
  --cert "$pki/edge.pem" --key "$pki/edge.key" --ca "$pki/ca.pem" "$@"
kill "$sim"
wait "$sim" || true
trap - EXIT
cat "$work/counters"
