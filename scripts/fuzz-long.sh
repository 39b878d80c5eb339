#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A long run of every libFuzzer target (or the ones named), the documented form of the CI smoke:
# each target runs SECONDS (default 600) from its kept corpus (tests/fuzz/corpus/<t>) with the
# dictionaries of the smoke, then what it found is merged back into the kept corpus (-merge=1:
# only inputs that add coverage), and one line per target gives executions, execs/s, coverage
# (edges, features), the kept corpus before and after, and the result. A crash stops that target
# with its report and input in build/fuzz/ and makes the script exit non-zero.
#   scripts/fuzz-long.sh [SECONDS] [TARGET...]     (builds build/fuzz with clang when needed)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
shift || true
CC=clang cmake -S . -B build/fuzz -DFUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build/fuzz -j"$(nproc)" >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in build/fuzz/fuzz_*; do [ -x "$f" ] && targets+=("$(basename "$f" | sed 's/^fuzz_//')"); done
fi
printf '%-12s %12s %9s %7s %8s %14s %s\n' target execs exec/s cov ft corpus result
failed=0
for t in "${targets[@]}"; do
  f=build/fuzz/fuzz_$t
  corpus=tests/fuzz/corpus/$t
  work=build/fuzz/long/$t
  log=build/fuzz/long/$t.log
  mkdir -p "$work" "$corpus"
  dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
  [ ${#dict[@]} -eq 0 ] && [ -f tests/fuzz/sip.dict ] && dict=(-dict=tests/fuzz/sip.dict)
  before=$(find "$corpus" -type f | wc -l)
  result=ok
  if ! "$f" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "${dict[@]}" -artifact_prefix=build/fuzz/ "$work" "$corpus" >"$log" 2>&1; then
    result="CRASH (report: $log)"
    failed=$((failed + 1))
  fi
  "$f" -merge=1 "$corpus" "$work" >/dev/null 2>&1 || true
  after=$(find "$corpus" -type f | wc -l)
  execs=$(awk '/stat::number_of_executed_units/ { print $NF }' "$log")
  rate=$(awk '/stat::average_exec_per_sec/ { print $NF }' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  printf '%-12s %12s %9s %7s %8s %14s %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
    "${ft:-?}" "$before -> $after" "$result"
done
[ "$failed" -eq 0 ]
