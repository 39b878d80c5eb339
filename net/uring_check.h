// SPDX-License-Identifier: MIT
// Start-up check that io_uring may be used here. Containers' default seccomp profiles (Docker,
// containerd, CRI-O) and the kernel.io_uring_disabled sysctl refuse io_uring_setup with EPERM;
// the edge has no other event loop (no epoll fallback, docs/deploy.md says why), so it refuses to
// start with one log line naming the cause and the fix.
#ifndef SIPEDGE_NET_URING_CHECK_H
#define SIPEDGE_NET_URING_CHECK_H

#include <stddef.h>

/** Try one small ring and close it: 0, or -errno of io_uring_setup. */
int uring_probe(void);

/** kernel.io_uring_disabled (0, 1, 2), or -1 when the file is absent or unreadable. */
int uring_disabled_sysctl(void);

/**
 * Probe; on refusal log `event=<event> cause=io_uring_refused error=... sysctl=... fix=...` at
 * error level and return -1. `event` is "startup_failed" for the edge, "check_failed" for
 * --check-config.
 */
int uring_require(const char *event);

/** Write the fix for a refusal with `err` and sysctl value `sysctl` into buf (for tests). */
void uring_fix_text(int err, int sysctl, char *buf, size_t len);

#endif
