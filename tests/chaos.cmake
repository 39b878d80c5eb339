# SPDX-License-Identifier: MIT
# The reliability suite in its short form (issue 14; docs/RELIABILITY.md): `bench/chaos.sh
# --quick` runs every fault and flood scenario of bench/chaos/ against this build (under ASan in
# CI: a sanitizer report from the edge fails its scenario). About 150 s on 2 cores; one at a
# time with the e2e tests (it loads the machine and picks ports at random). The soak's short form
# (1,000 clients re-registering every 20 s with churn, 80 s) is a test of its own: chaos/soak.
if(TARGET sipedge-bench AND TARGET sipedge AND TARGET sipedge-ucmsim AND TARGET sipedge-token)
  set(CHAOS_ENV "BIN=${PROJECT_BINARY_DIR};ASAN_OPTIONS=halt_on_error=1:detect_leaks=1;UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")
  add_test(NAME chaos/quick COMMAND bash ${PROJECT_SOURCE_DIR}/bench/chaos.sh --quick)
  set_tests_properties(chaos/quick PROPERTIES TIMEOUT 480 RESOURCE_LOCK e2e
    ENVIRONMENT "${CHAOS_ENV};CHAOS_EXCLUDE=soak")
  add_test(NAME chaos/soak COMMAND bash ${PROJECT_SOURCE_DIR}/bench/chaos.sh --quick soak)
  set_tests_properties(chaos/soak PROPERTIES TIMEOUT 600 RESOURCE_LOCK e2e ENVIRONMENT "${CHAOS_ENV}")
endif()
