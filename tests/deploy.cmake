# SPDX-License-Identifier: MIT
# deploy/: the seccomp profile and the Kubernetes manifests, checked offline (python3, python3-yaml):
# they parse, carry the fields the edge depends on and agree with each other and with the config;
# the ConfigMap's YAML passes `sipedge --check-config`. The image build is not a test (docs/deploy.md).
add_test(NAME deploy/seccomp_profile
         COMMAND python3 ${PROJECT_SOURCE_DIR}/tests/deploy/check_deploy.py seccomp ${PROJECT_SOURCE_DIR})
add_test(NAME deploy/k8s_manifests
         COMMAND python3 ${PROJECT_SOURCE_DIR}/tests/deploy/check_deploy.py k8s ${PROJECT_SOURCE_DIR}
                 $<TARGET_FILE:sipedge> $<TARGET_FILE:sipedge-token>)
