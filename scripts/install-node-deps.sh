#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the pinned npm packages of tests/deploy/validate_k8s.mjs (kubernetes-models: the
# Kubernetes OpenAPI schemas as validators; yaml) with `npm ci` into build/node/k8s-validate/,
# never into the source tree. Does nothing when that directory already holds the locked versions
# (a stamp of package-lock.json). Exit status: 0 installed or up to date; non-zero when npm is
# missing or the registry cannot be reached (the ctest deploy/k8s_openapi then fails in CI and
# skips elsewhere).
#   install-node-deps.sh [DEST]     (default: build/node/k8s-validate under the source tree)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$src/build/node/k8s-validate}
pkg=$src/tests/deploy

if ! command -v npm >/dev/null; then
  echo "install-node-deps: npm not found (scripts/install-deps.sh installs nodejs and npm)" >&2
  exit 1
fi
mkdir -p "$dest"
# One installer at a time per destination (two ctest trees may ask at once).
exec 9>"$dest.lock"
flock -w 330 9
stamp=$dest/.lock.sha256
want=$(cat "$pkg/package.json" "$pkg/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ -d "$dest/node_modules" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "install-node-deps: npm ci into $dest" >&2
rm -f "$stamp"
cp "$pkg/package.json" "$pkg/package-lock.json" "$dest/"
# Bounded: a registry that does not answer must not hang the build (npm's own retries included).
(cd "$dest" && timeout 300 npm ci --no-audit --no-fund --loglevel=error \
  --fetch-retries=1 --fetch-timeout=60000)
echo "$want" >"$stamp"
