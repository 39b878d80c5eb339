# SPDX-License-Identifier: MIT
# The Kamailio edge of the `compare` benchmark (bench/peers/kamailio/), checked on its own in front
# of sipedge-ucmsim with openssl s_client: 407 challenge, HS256 check and verify cache, mTLS relay.
# Needs Debian's kamailio + kamailio-tls-modules (scripts/install-deps.sh) and sipedge-token.
add_test(NAME kamailio/edge COMMAND bash ${PROJECT_SOURCE_DIR}/bench/peers/kamailio/check.sh)
set_tests_properties(kamailio/edge PROPERTIES TIMEOUT 120 RESOURCE_LOCK e2e
  ENVIRONMENT "BIN=${PROJECT_BINARY_DIR};SRC=${PROJECT_SOURCE_DIR}")
