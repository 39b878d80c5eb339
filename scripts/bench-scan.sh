#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# SIP scanner benchmark: builds Release, prints ns/msg and MB/s per message and scanner path
# (bench-sip-scan), then instructions per message from callgrind over a fixed count of scans
# (only run_count(), i.e. sip_scan plus a compare per call, is counted). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-1000}
msgs=(register_jabber invite_sdp response_200_register)

cmake -S . -B build/rel -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/rel -j"$(nproc)" --target bench-sip-scan >/dev/null

echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== time (median of 101 batches of ~4 MB each)"
build/rel/bench-sip-scan "${msgs[@]}"

if ! command -v valgrind >/dev/null; then
  echo "valgrind not installed: no instruction counts" >&2
  exit 0
fi
echo "== instructions per message (callgrind, $count scans each)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for impl in scalar sse42 avx2; do
  for m in "${msgs[@]}"; do
    valgrind --tool=callgrind --toggle-collect=run_count --callgrind-out-file="$out/cg" \
      build/rel/bench-sip-scan --impl "$impl" --count "$count" "$m" >"$out/log" 2>&1 || {
      echo "$impl $m: valgrind failed"; cat "$out/log"; exit 1; }
    if grep -q "not supported" "$out/log"; then
      echo "$impl: not supported by this CPU"; break
    fi
    ir=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out/log")
    printf '%-22s %-6s %8d instructions/msg\n' "$m" "$impl" $((ir / count))
  done
done
