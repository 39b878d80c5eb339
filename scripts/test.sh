#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The whole test suite: installs dependencies, checks formatting, builds under ASan+UBSan, runs
# every ctest test (unit and end-to-end, real redis-server/TLS/processes), then a short libFuzzer
# smoke run per fuzz target. FUZZ_SECONDS (default 15 in CI, 10 elsewhere; 0 skips) bounds each.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
# The pinned npm packages of the Kubernetes OpenAPI check (deploy/k8s_openapi), into build/node/.
# In CI a failure stops here; elsewhere the ctest skips with the reason.
if ! bash scripts/install-node-deps.sh; then
  if [ -n "${CI:-}" ]; then exit 1; fi
  echo "warning: scripts/install-node-deps.sh failed: deploy/k8s_openapi will skip" >&2
fi

echo "== format check"
files=$(git ls-files '*.c' '*.h' 2>/dev/null || true)
if [ -n "$files" ]; then
  # shellcheck disable=SC2086
  clang-format --dry-run -Werror $files
fi

jobs=$(nproc)
echo "== build (Asan: address,undefined)"
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Asan >/dev/null
cmake --build build/asan -j"$jobs"

echo "== ctest"
ctest --test-dir build/asan --output-on-failure -j"$jobs" --timeout 600

if [ -n "${CI:-}" ]; then def=15; else def=10; fi
secs=${FUZZ_SECONDS:-$def}
if [ "$secs" != 0 ]; then
  echo "== fuzz smoke (${secs}s per target)"
  CC=clang cmake -S . -B build/fuzz -DFUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build build/fuzz -j"$jobs"
  for f in build/fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    t=$(basename "$f"); t=${t#fuzz_}
    corpus=tests/fuzz/corpus/$t
    work=build/fuzz/work/$t; mkdir -p "$work"
    dict=(); [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
    [ -f tests/fuzz/sip.dict ] && [ ${#dict[@]} -eq 0 ] && dict=(-dict=tests/fuzz/sip.dict)
    echo "-- $t"
    log=build/fuzz/work/$t.log
    if ! "$f" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      "${dict[@]}" -artifact_prefix=build/fuzz/ "$work" ${corpus:+$( [ -d "$corpus" ] && echo "$corpus")} \
      >"$log" 2>&1; then
      # the whole report: the failed check or sanitizer error, its stack and the input
      sed -n '/^INFO: seed\|^#[0-9]*[[:space:]]*\(NEW\|REDUCE\|pulse\)/!p' "$log" | tail -n 80
      echo "== fuzz target $t failed (reproduce: $f build/fuzz/crash-*)"
      exit 1
    fi
    tail -n 12 "$log"
  done
fi
echo "== all tests passed"
