#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# image-rootfs.sh BUILD_DIR OUT_DIR: the runtime file tree of the container image: sipedge and
# sipedge-token, the shared libraries they load (from ldd) and the dynamic loader, an /etc/passwd
# and /etc/group naming the sipedge user (10001) and nothing else: no shell, no package manager.
# Used by deploy/Containerfile (build stage) and by scripts/build-image.sh --from-host.
set -euo pipefail
build=${1:?usage: image-rootfs.sh BUILD_DIR OUT_DIR}
out=${2:?usage: image-rootfs.sh BUILD_DIR OUT_DIR}
rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc" "$out/tmp" "$out/etc/sipedge"
for b in sipedge sipedge-token; do
    install -m 0755 -s "$build/$b" "$out/usr/local/bin/$b"
done
# Every library ldd resolves (absolute paths, loader included), copied to the same path, symlinks
# followed: the image has no package database to say where they came from.
ldd "$build/sipedge" "$build/sipedge-token" |
    awk '/=> \// {print $3} /^[[:space:]]*\/[^ ]+ \(/ {print $1}' | sort -u |
    while read -r lib; do
        mkdir -p "$out$(dirname "$lib")"
        cp -L "$lib" "$out$lib"
    done
# OpenSSL loads its config and providers at run time: the default provider is built in; keep the
# config so OPENSSL_CONF defaults behave as on Debian.
if [ -f /usr/lib/ssl/openssl.cnf ]; then
    mkdir -p "$out/usr/lib/ssl"
    cp -L /usr/lib/ssl/openssl.cnf "$out/usr/lib/ssl/openssl.cnf"
fi
printf 'root:x:0:0:root:/:/nonexistent\nsipedge:x:10001:10001:sipedge:/nonexistent:/nonexistent\n' \
    >"$out/etc/passwd"
printf 'root:x:0:\nsipedge:x:10001:\n' >"$out/etc/group"
printf 'hosts: files dns\n' >"$out/etc/nsswitch.conf"
chmod 1777 "$out/tmp"
echo "image-rootfs: $(du -sh "$out" | cut -f1) in $out" >&2
