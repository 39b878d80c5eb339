# SPDX-License-Identifier: MIT
# Source checks that need no build: every declared metric is written and read by an e2e test.
add_test(NAME lint/metrics_used COMMAND bash ${PROJECT_SOURCE_DIR}/scripts/check-metrics.sh
                                        ${PROJECT_SOURCE_DIR})
