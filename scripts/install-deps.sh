#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian packages sipedge builds, tests and benchmarks with. Idempotent: when every
# package is already installed it does nothing (set SIPEDGE_APT_FORCE=1 to run apt anyway).
# `install-deps.sh --build` installs only the build dependencies (the container image build).
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config clang libclang-rt-14-dev clang-format
  libssl-dev openssl liburing-dev libjwt-dev libjansson-dev libhiredis-dev libcriterion-dev
  libcyaml-dev libyaml-dev libmicrohttpd-dev
  redis-server sip-tester stunnel4 sipsak kamailio kamailio-tls-modules
  gnuplot-nox valgrind curl procps iproute2 jq
  gnutls-bin python3 python3-yaml
)
# --build: only what compiling sipedge needs (the image's build stage, deploy/Containerfile).
if [ "${1:-}" = "--build" ]; then
  PKGS=(build-essential cmake pkg-config libssl-dev liburing-dev libjwt-dev libjansson-dev
        libhiredis-dev libcyaml-dev libyaml-dev libmicrohttpd-dev)
fi

# Node.js and npm run tests/deploy/validate_k8s.mjs (the Kubernetes OpenAPI check; its npm
# packages: scripts/install-node-deps.sh). Asked for only when missing: a machine whose node comes
# from elsewhere keeps it (NodeSource's nodejs bundles npm and conflicts with Debian's npm, so
# asking apt for npm there would fail). kubectl is not installed from Debian: bookworm's
# kubernetes-client (kubectl 1.20, kustomize v2.0.3) cannot render deploy/k8s (`labels:`,
# `patches:`); where no kustomize v5 is found the check renders the manifests itself.
if [ "${1:-}" != "--build" ] && { ! command -v node >/dev/null || ! command -v npm >/dev/null; }; then
  PKGS+=(nodejs npm)
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ] && [ -z "${SIPEDGE_APT_FORCE:-}" ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]:-all}" >&2
export DEBIAN_FRONTEND=noninteractive
# Packaged daemons (redis, kamailio) must not start themselves: tests start their own on loopback.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${PKGS[@]}"
