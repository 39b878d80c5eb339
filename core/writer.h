// SPDX-License-Identifier: MIT
// A bounded writer over a caller's buffer: the builders of core/ (responses, rewrites, Route and
// Record-Route, CANCEL and ACK) append to it and check `over` once at the end.
#ifndef SIPEDGE_CORE_WRITER_H
#define SIPEDGE_CORE_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/slice.h"

/**
 * Writes go to [p, end); the first one that does not fit sets `over` and every later one is
 * ignored, so a builder writes unconditionally and tests `over` once. `p` is the next byte.
 */
struct writer {
    char *p;
    char *end;
    bool over;
};

static inline void put(struct writer *w, const char *s, size_t n)
{
    if (w->over || (size_t)(w->end - w->p) < n) {
        w->over = true;
        return;
    }
    if (n != 0)
        memcpy(w->p, s, n);
    w->p += n;
}

static inline void put_s(struct writer *w, struct slice s)
{
    put(w, s.base, s.len);
}

#define PUT_LIT(w, lit) put((w), (lit), sizeof(lit) - 1)

/** Decimal digits of `v`. */
static inline void put_uint(struct writer *w, uint32_t v)
{
    char buf[10];
    size_t n = 0;

    do {
        buf[sizeof(buf) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(w, buf + sizeof(buf) - n, n);
}

#endif
