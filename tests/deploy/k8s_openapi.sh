#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ctest deploy/k8s_openapi: every object that deploy/k8s/base and deploy/k8s/overlays/redis render
# to is valid against the Kubernetes OpenAPI schema of its apiVersion/kind, with no field the
# schema lacks (tests/deploy/validate_k8s.mjs); the hand renderer agrees with kustomize where
# kustomize v5 is installed; broken copies of the base are refused (so the check cannot be a no-op).
#   k8s_openapi.sh SRC NODE_DEPS_DIR     (NODE_DEPS_DIR/node_modules: scripts/install-node-deps.sh)
# In CI (CI set, not false/0) missing node, npm modules or stale modules fail the test; elsewhere
# it installs them, and skips (exit 77) with the reason when that cannot be done (npm unreachable).
set -uo pipefail
src=$1
deps=$2
mods=$deps/node_modules
case "${CI:-}" in "" | 0 | false) ci= ;; *) ci=1 ;; esac

unavailable() {
  if [ -n "$ci" ]; then
    echo "FAIL: $1 (CI runs scripts/install-deps.sh and scripts/install-node-deps.sh before ctest)"
    exit 1
  fi
  echo "SKIP: $1"
  exit 77
}

command -v node >/dev/null || unavailable "node not found (scripts/install-deps.sh installs nodejs)"
if [ -n "$ci" ]; then
  want=$(cat "$src/tests/deploy/package.json" "$src/tests/deploy/package-lock.json" | sha256sum | cut -d' ' -f1)
  [ -f "$mods/kubernetes-models/package.json" ] || unavailable "no node modules in $mods"
  [ "$(cat "$deps/.lock.sha256" 2>/dev/null)" = "$want" ] ||
    unavailable "node modules in $mods are not those of tests/deploy/package-lock.json"
else
  bash "$src/scripts/install-node-deps.sh" "$deps" ||
    unavailable "npm ci of tests/deploy/package.json failed (npm registry unreachable?)"
fi

v=$src/tests/deploy/validate_k8s.mjs
k8s=$src/deploy/k8s
rc=0
step() {
  echo "-- validate_k8s.mjs $*"
  node "$v" --modules "$mods" "$@" || rc=1
}
step "$k8s/base" "$k8s/overlays/redis"                  # kustomize v5 where installed, else by hand
step --hand "$k8s/base" "$k8s/overlays/redis"           # the hand renderer's objects, validated too
step --compare "$k8s/base" "$k8s/overlays/redis"        # hand render == kustomize's (where there)
step --self-test "$k8s"                                 # broken copies must be refused
step --self-test --hand "$k8s"
[ "$rc" = 0 ] && echo "deploy/k8s_openapi: all ok" || echo "deploy/k8s_openapi: FAILED"
exit "$rc"
