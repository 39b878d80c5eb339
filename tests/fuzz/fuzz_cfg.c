// SPDX-License-Identifier: MIT
// libFuzzer target for core/cfg.c: the input is a config file (through a memfd); loading must
// end with 0 or a NUL-terminated message that names a place, never crash or leak.
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/cfg.h"

static struct cfg c;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512], path[64];
    int fd = memfd_create("cfg", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    memset(err, 'x', sizeof(err));
    int rc = cfg_load(path, &c, err, sizeof(err));
    if (rc) {
        assert(memchr(err, 0, sizeof(err)) != NULL);
        assert(err[0] != 0);
    } else {
        assert(c.upstream.node_count >= 1 && c.upstream.node_count <= CFG_MAX_NODES);
        assert(c.auth.key_count <= CFG_MAX_KEYS && c.auth.scopes.count <= CFG_MAX_SCOPES);
        assert(memchr(c.sip.realm, 0, sizeof(c.sip.realm)) != NULL);
        rc = cfg_check(&c, err, sizeof(err));
        assert(rc == 0 || err[0] != 0);
    }
    close(fd);
    return 0;
}
