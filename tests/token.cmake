# SPDX-License-Identifier: MIT
# sipedge-token end to end: keygen, mint, verify valid / expired / wrong key with the real binary.
add_test(NAME token/cli
         COMMAND sh ${PROJECT_SOURCE_DIR}/tests/token/cli.sh $<TARGET_FILE:sipedge-token>
                 ${PROJECT_BINARY_DIR}/token-cli)
set_tests_properties(token/cli PROPERTIES TIMEOUT 120
  ENVIRONMENT "ASAN_OPTIONS=halt_on_error=1:detect_leaks=1;UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")
