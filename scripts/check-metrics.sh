#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every metric declared in core/metrics.h's METRICS_TABLE is (1) written somewhere in the edge's
# sources (METRIC_<ID> used outside core/metrics.c, or a gauge callback registered for it) and
# (2) read from /metrics by at least one end-to-end test that drives it (its name appears in a
# tests/e2e/t*.sh). Issue 12 found two counters declared and never incremented; this keeps that
# from coming back. Usage: check-metrics.sh [SRC_DIR]. Prints one line per failure; exit 1 if any.
set -euo pipefail
src=${1:-$(cd "$(dirname "$0")/.." && pwd)}
fails=0 n=0
while read -r id name; do
    n=$((n + 1))
    if ! grep -rqw --include='*.c' "METRIC_$id" "$src/core" "$src/net" "$src/auth" "$src/tls" \
        --exclude=metrics.c; then
        echo "metric $name (METRIC_$id): declared, never written by the edge"
        fails=$((fails + 1))
    fi
    if ! grep -qF "$name" "$src"/tests/e2e/t*.sh; then
        echo "metric $name: no e2e test reads it (tests/e2e/t*.sh)"
        fails=$((fails + 1))
    fi
done < <(sed -n 's/^ *X(\([A-Z_]*\), "\(sipedge_[a-z_]*\)".*/\1 \2/p' "$src/core/metrics.h")
[ "$n" -gt 0 ] || { echo "no metric found in $src/core/metrics.h"; exit 1; }
echo "$n metrics checked: $fails problem(s)"
[ "$fails" -eq 0 ]
