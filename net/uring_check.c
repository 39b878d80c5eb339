// SPDX-License-Identifier: MIT
#include "net/uring_check.h"

#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"

#define SYSCTL_PATH "/proc/sys/kernel/io_uring_disabled"

int uring_probe(void)
{
    struct io_uring ring;
    int ret = io_uring_queue_init(2, &ring, 0);
    if (ret < 0)
        return ret;
    io_uring_queue_exit(&ring);
    return 0;
}

int uring_disabled_sysctl(void)
{
    FILE *f = fopen(SYSCTL_PATH, "re");
    if (f == NULL)
        return -1;
    int v = -1;
    if (fscanf(f, "%d", &v) != 1 || v < 0)
        v = -1;
    fclose(f);
    return v;
}

void uring_fix_text(int err, int sysctl, char *buf, size_t len)
{
    if (sysctl == 2)
        snprintf(buf, len,
                 "kernel.io_uring_disabled=2 disables io_uring for every process: set "
                 "sysctl kernel.io_uring_disabled=0 on the host (node)");
    else if (sysctl == 1 && err == -EPERM)
        snprintf(buf, len,
                 "kernel.io_uring_disabled=1 allows io_uring only to CAP_SYS_ADMIN or the group in "
                 "kernel.io_uring_group: set kernel.io_uring_disabled=0 on the host (node), or run "
                 "in that group; if it persists, the seccomp profile also refuses it: run with "
                 "deploy/seccomp/sipedge.json");
    else if (err == -EPERM || err == -EACCES)
        snprintf(buf, len,
                 "io_uring_setup was refused by the seccomp profile: run with "
                 "deploy/seccomp/sipedge.json (or a seccomp profile that allows io_uring_setup, "
                 "io_uring_enter, io_uring_register) and kernel.io_uring_disabled=0");
    else if (err == -ENOSYS)
        snprintf(buf, len,
                 "this kernel has no io_uring (needs Linux 6.1 or later built with "
                 "CONFIG_IO_URING), or a seccomp profile answers ENOSYS for io_uring_setup: run "
                 "with deploy/seccomp/sipedge.json");
    else if (err == -ENOMEM)
        snprintf(buf, len,
                 "the ring could not be allocated: raise the memory limit or "
                 "RLIMIT_MEMLOCK (ulimit -l)");
    else
        snprintf(buf, len, "io_uring_setup failed: see docs/deploy.md (io_uring in containers)");
}

int uring_require(const char *event)
{
    int ret = uring_probe();
    if (ret == 0)
        return 0;
    int sysctl = uring_disabled_sysctl();
    char fix[512];
    uring_fix_text(ret, sysctl, fix, sizeof(fix));
    log_event(LOG_ERROR, event, LOG_S("cause", "io_uring_refused"), LOG_S("error", strerror(-ret)),
              LOG_I("io_uring_disabled", sysctl), LOG_S("fix", fix));
    return -1;
}
