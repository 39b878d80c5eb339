# SPDX-License-Identifier: MIT
# deploy/: the seccomp profile and the Kubernetes manifests, checked offline (python3, python3-yaml):
# they parse, carry the fields the edge depends on and agree with each other and with the config;
# the ConfigMap's YAML passes `sipedge --check-config`. The image build is not a test (docs/deploy.md).
add_test(NAME deploy/seccomp_profile
         COMMAND python3 ${PROJECT_SOURCE_DIR}/tests/deploy/check_deploy.py seccomp ${PROJECT_SOURCE_DIR})
add_test(NAME deploy/k8s_manifests
         COMMAND python3 ${PROJECT_SOURCE_DIR}/tests/deploy/check_deploy.py k8s ${PROJECT_SOURCE_DIR}
                 $<TARGET_FILE:sipedge> $<TARGET_FILE:sipedge-token>)
# Every rendered object against the Kubernetes OpenAPI schemas (npm kubernetes-models, pinned in
# tests/deploy/package-lock.json, installed by scripts/install-node-deps.sh into SIPEDGE_NODE_DEPS_DIR):
# fails in CI when the node modules are missing, skips elsewhere when npm cannot fetch them.
set(SIPEDGE_NODE_DEPS_DIR "${PROJECT_SOURCE_DIR}/build/node/k8s-validate"
    CACHE PATH "npm ci destination of tests/deploy/package.json (scripts/install-node-deps.sh)")
add_test(NAME deploy/k8s_openapi
         COMMAND bash ${PROJECT_SOURCE_DIR}/tests/deploy/k8s_openapi.sh ${PROJECT_SOURCE_DIR}
                 ${SIPEDGE_NODE_DEPS_DIR})
set_tests_properties(deploy/k8s_openapi PROPERTIES TIMEOUT 400 SKIP_RETURN_CODE 77)
