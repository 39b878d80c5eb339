#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 18: io_uring refused, as under Docker's/containerd's default seccomp profile. The edge, run
# under a seccomp filter answering io_uring_setup with EPERM (tests/tools/seccomp-deny-uring.c),
# exits non-zero at start with exactly one line naming the cause and the fix; --check-config says
# the same; without the filter the same config starts. ENOSYS (no io_uring in the kernel) gets its
# own fix text.
source "$(dirname "$0")/lib.sh"
e2e_init t18_uring_refused

DENY="$BIN/seccomp-deny-uring"
[ -x "$DENY" ] || { e2e_log "missing $DENY (build the seccomp-deny-uring target)"; exit 1; }
UCM_PORT=$(free_port)
NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
EDGE_PORT=$(free_port)
ADMIN_PORT=$(free_port)
write_edge_config "$T/edge.yaml"
SYSCTL=-1
[ -r /proc/sys/kernel/io_uring_disabled ] && SYSCTL=$(cat /proc/sys/kernel/io_uring_disabled)

rc=0
timeout 20 "$DENY" "$EDGE" "$T/edge.yaml" >"$T/refused.out" 2>"$T/refused.log" || rc=$?
cat "$T/refused.log" >&2
check "edge under the filter exits non-zero (got $rc; 124 = still running)" \
    test "$rc" -ne 0 -a "$rc" -ne 124 -a "$rc" -lt 126
check "exactly one line on stderr" test "$(wc -l <"$T/refused.log")" -eq 1
line=$(head -n 1 "$T/refused.log")
has() { grep -qF -- "$1" <<<"$line"; }
check "the line is the start-up failure" has "event=startup_failed"
check "it names the cause" has "cause=io_uring_refused"
check "it keeps the errno text" has 'error="Operation not permitted"'
check "it reports kernel.io_uring_disabled" has "io_uring_disabled=$SYSCTL"
check "it names the profile to use" has "deploy/seccomp/sipedge.json"
check "it names the three calls" has "io_uring_setup, io_uring_enter, io_uring_register"
check "nothing listened" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$EDGE_PORT) 2>/dev/null"

rc=0
timeout 20 "$DENY" "$EDGE" --check-config "$T/edge.yaml" >"$T/check.out" 2>"$T/check.log" || rc=$?
cat "$T/check.log" >&2
check "--check-config under the filter exits 1 (got $rc)" test "$rc" -eq 1
check "--check-config names the cause" grep -qF "event=check_failed cause=io_uring_refused" "$T/check.log"

rc=0
timeout 20 "$EDGE" --check-config "$T/edge.yaml" >"$T/check0.out" 2>"$T/check0.log" || rc=$?
check "--check-config without the filter passes (got $rc)" test "$rc" -eq 0

rc=0
timeout 20 "$DENY" --errno 38 "$EDGE" "$T/edge.yaml" >/dev/null 2>"$T/enosys.log" || rc=$?
cat "$T/enosys.log" >&2
check "ENOSYS: exits non-zero (got $rc)" test "$rc" -ne 0 -a "$rc" -ne 124 -a "$rc" -lt 126
check "ENOSYS: says the kernel has no io_uring" grep -qF "this kernel has no io_uring" "$T/enosys.log"

start_edge
check "without the filter the same config starts and listens" kill -0 "$EDGE_PID"
e2e_done
