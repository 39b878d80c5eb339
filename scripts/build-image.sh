#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# build-image.sh [--debootstrap | --from-host] [--tag NAME] [--save FILE.tar]
# Builds the sipedge container image with podman/buildah (docs/deploy.md):
#   (default)      podman build -f deploy/Containerfile, build stage FROM $BASE
#                  (default docker.io/library/debian:12: needs a registry)
#   --debootstrap  no registry: first makes the Debian 12 base from Debian packages with
#                  debootstrap ($MIRROR, default http://deb.debian.org/debian) and imports it as
#                  localhost/debian:12-debootstrap, then the same podman build
#   --from-host    no registry, no base image: a Release build on this (Debian 12) host, the
#                  runtime tree from scripts/image-rootfs.sh, committed FROM scratch with buildah
# Storage: $STORAGE_DRIVER (default vfs, which works without overlayfs or fuse; rootless or not).
# ISOLATION=chroot runs the build stage's RUN steps without an OCI runtime (where crun cannot
# start containers, e.g. without CAP_SYS_RESOURCE); default oci.
# Prints the image name and size. Not part of CI (docs/deploy.md).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
mode=containerfile
version=$(sed -n 's/^project(sipedge VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
tag="localhost/sipedge:$version"
save=""
while [ $# -gt 0 ]; do
    case $1 in
    --debootstrap) mode=debootstrap ;;
    --from-host) mode=host ;;
    --tag) tag=$2; shift ;;
    --save) save=$2; shift ;;
    *) sed -n '3,16p' "$0" >&2; exit 2 ;;
    esac
    shift
done
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
podman=(podman --storage-driver "$STORAGE_DRIVER" ${PODMAN_OPTS:-})
buildah=(buildah --storage-driver "$STORAGE_DRIVER" ${PODMAN_OPTS:-})
BASE=${BASE:-docker.io/library/debian:12}

debootstrap_base() {
    local root base=localhost/debian:12-debootstrap
    if "${podman[@]}" image exists "$base"; then BASE=$base; return; fi
    root=$(mktemp -d)
    trap 'rm -rf "$root"' RETURN
    debootstrap --variant=minbase bookworm "$root" "${MIRROR:-http://deb.debian.org/debian}"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | "${podman[@]}" import - "$base"
    BASE=$base
}

from_host() {
    local b="$src/build/image" root ctr
    cmake -S "$src" -B "$b" -DCMAKE_BUILD_TYPE=Release -DWERROR=OFF >/dev/null
    cmake --build "$b" -j2 --target sipedge sipedge-token
    root="$b/rootfs"
    bash "$src/scripts/image-rootfs.sh" "$b" "$root"
    ctr=$("${buildah[@]}" from scratch)
    "${buildah[@]}" copy "$ctr" "$root/" / >/dev/null
    "${buildah[@]}" config --user 10001:10001 --port 5061/tcp --port 9090/tcp \
        --entrypoint '["/usr/local/bin/sipedge"]' --cmd /etc/sipedge/config/sipedge.yaml \
        --label org.opencontainers.image.title=sipedge "$ctr"
    "${buildah[@]}" commit --rm "$ctr" "$tag" >/dev/null
}

case $mode in
host) from_host ;;
debootstrap | containerfile)
    [ "$mode" = debootstrap ] && debootstrap_base
    "${podman[@]}" build --isolation "${ISOLATION:-oci}" --build-arg "BASE=$BASE" -f "$src/deploy/Containerfile" -t "$tag" "$src"
    ;;
esac
"${podman[@]}" image inspect --format '{{.Size}}' "$tag" |
    awk -v t="$tag" '{printf "build-image: %s %.1f MB\n", t, $1 / 1e6}'
if [ -n "$save" ]; then
    "${podman[@]}" save --format oci-archive -o "$save" "$tag"
fi
