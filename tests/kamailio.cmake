# SPDX-License-Identifier: MIT
# The Kamailio registrar used by e2e test 8 (tests/e2e/kamailio/), checked on its own with
# openssl s_client: mTLS required and verified, REGISTER stored with its Path, OPTIONS answered.
# Needs Debian's kamailio + kamailio-tls-modules (scripts/install-deps.sh) and sipedge-token.
add_test(NAME kamailio/registrar COMMAND bash ${PROJECT_SOURCE_DIR}/tests/e2e/kamailio/check.sh)
set_tests_properties(kamailio/registrar PROPERTIES TIMEOUT 120 RESOURCE_LOCK e2e
  ENVIRONMENT "BIN=${PROJECT_BINARY_DIR};SRC=${PROJECT_SOURCE_DIR};ASAN_OPTIONS=halt_on_error=1:detect_leaks=1;UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")
# The call scenarios of e2e test 20 (tests/e2e/sipp/call_*.xml) and Kamailio's UCM config
# (tests/e2e/kamailio/ucm.cfg) straight at Kamailio, without the edge (SIPp through stunnel).
add_test(NAME kamailio/calls COMMAND bash ${PROJECT_SOURCE_DIR}/tests/e2e/kamailio/calls-direct.sh)
set_tests_properties(kamailio/calls PROPERTIES TIMEOUT 120 RESOURCE_LOCK e2e
  ENVIRONMENT "BIN=${PROJECT_BINARY_DIR};SRC=${PROJECT_SOURCE_DIR}")
