// SPDX-License-Identifier: MIT
// What a faked proxy hook sent, joined from its gather list (tests of core/proxy.c and
// core/calls.c).
#ifndef SIPEDGE_TESTS_UNIT_CORE_SENT_H
#define SIPEDGE_TESTS_UNIT_CORE_SENT_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "core/slice.h"

struct sent {
    uint32_t id;     /* the connection it went to */
    char text[8192]; /* the message, NUL-terminated */
};

static inline void join(struct sent *s, uint32_t id, const struct slice *iov, size_t n)
{
    size_t off = 0;
    s->id = id;
    for (size_t i = 0; i < n; i++) {
        cr_assert_lt(off + iov[i].len, sizeof(s->text));
        memcpy(s->text + off, iov[i].base, iov[i].len);
        off += iov[i].len;
    }
    s->text[off] = 0;
}

#endif
