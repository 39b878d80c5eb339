#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Regenerates the generated tables of docs/config.md (cfg_write_reference()) and docs/metrics.md
# (metrics_write_reference()) from a built library (unit tests fail while they are stale).
#   scripts/gen-reference-docs.sh [BUILD_DIR]     (default build/dbg, must be built)
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build/dbg}
LIB=$BUILD/libsipedge_lib.a
[ -f "$LIB" ] || { echo "gen-reference-docs: $LIB not built" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/ref.c" <<'C'
#include <stdio.h>
#include <string.h>
#include "core/cfg.h"
#include "core/metrics.h"
int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "metrics") == 0)
        metrics_write_reference(stdout);
    else
        cfg_write_reference(stdout);
    return 0;
}
C
cc -I"$SRC" "$tmp/ref.c" "$LIB" -o "$tmp/ref" $(pkg-config --libs openssl yaml-0.1 2>/dev/null || echo -lcrypto -lssl) -lm
# replace the table that starts with the reference's first line, up to the next blank line
splice() { # splice DOC REF
    python3 - "$1" "$2" <<'PY'
import sys
doc, ref = open(sys.argv[1]).read(), open(sys.argv[2]).read()
start = doc.index(ref.splitlines()[0])
end = doc.index('\n\n', start) + 1
open(sys.argv[1], 'w').write(doc[:start] + ref + doc[end:])
PY
}
"$tmp/ref" config >"$tmp/config.md"
"$tmp/ref" metrics >"$tmp/metrics.md"
splice "$SRC/docs/config.md" "$tmp/config.md"
splice "$SRC/docs/metrics.md" "$tmp/metrics.md"
echo "gen-reference-docs: docs/config.md and docs/metrics.md tables regenerated"
