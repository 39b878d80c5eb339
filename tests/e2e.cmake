# SPDX-License-Identifier: MIT
# End-to-end tests: tests/e2e/t*.sh start real processes (sipedge, sipedge-ucmsim, redis-server,
# stunnel + SIPp, Kamailio) on loopback and assert on what clients and UCM saw. They run one at a
# time (they load the machine and pick ports at random).
file(GLOB E2E_TESTS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/e2e/t*.sh)
foreach(t IN LISTS E2E_TESTS)
  get_filename_component(name ${t} NAME_WE)
  add_test(NAME e2e/${name} COMMAND bash ${t})
  set_tests_properties(e2e/${name} PROPERTIES TIMEOUT 300 RESOURCE_LOCK e2e
    ENVIRONMENT "BIN=${PROJECT_BINARY_DIR};SRC=${PROJECT_SOURCE_DIR};ASAN_OPTIONS=halt_on_error=1:detect_leaks=1;UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")
endforeach()
