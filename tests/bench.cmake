# SPDX-License-Identifier: MIT
# Smoke test of the edge benchmark harness: `bench/run.sh --quick steady` starts redis-server,
# sipedge-ucmsim and sipedge from this build and drives them with sipedge-bench; it fails unless
# the generator got 200 OK answers. No timing is asserted (the machine is shared).
if(TARGET sipedge-bench AND TARGET sipedge AND TARGET sipedge-ucmsim AND TARGET sipedge-token)
  add_test(NAME bench/steady_quick COMMAND bash ${PROJECT_SOURCE_DIR}/bench/run.sh --quick steady)
  set_tests_properties(bench/steady_quick PROPERTIES TIMEOUT 300 RESOURCE_LOCK e2e
    ENVIRONMENT "BIN=${PROJECT_BINARY_DIR};SRC=${PROJECT_SOURCE_DIR};RESULTS_DIR=${PROJECT_BINARY_DIR}/bench;RATES=500;ASAN_OPTIONS=halt_on_error=1:detect_leaks=1;UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")
endif()
