// SPDX-License-Identifier: MIT
// struct slice: a borrowed view (pointer + length) into someone else's bytes, layout-equal to
// struct iovec so a list of slices can be handed to writev/SSL gather code unchanged.
#ifndef SIPEDGE_CORE_SLICE_H
#define SIPEDGE_CORE_SLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>

struct slice {
    const char *base;
    size_t len;
};

_Static_assert(sizeof(struct slice) == sizeof(struct iovec), "slice must match iovec");
_Static_assert(offsetof(struct slice, base) == offsetof(struct iovec, iov_base), "slice.base");
_Static_assert(offsetof(struct slice, len) == offsetof(struct iovec, iov_len), "slice.len");

/** A slice over a string literal (length without the NUL). */
#define SLICE_LIT(s) ((struct slice){(s), sizeof(s) - 1})
/** The empty slice (base NULL, len 0). */
#define SLICE_NULL ((struct slice){NULL, 0})

/** A slice over `len` bytes at `p`. */
static inline struct slice slice_make(const char *p, size_t len)
{
    return (struct slice){p, len};
}

/** True when `a` and `b` hold the same bytes. */
static inline bool slice_eq(struct slice a, struct slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.base, b.base, a.len) == 0);
}

/** True when `a` and `b` hold the same bytes, ASCII letters compared case-insensitively. */
static inline bool slice_eqi(struct slice a, struct slice b)
{
    return a.len == b.len && (a.len == 0 || strncasecmp(a.base, b.base, a.len) == 0);
}

/** `s` without leading and trailing SP/HTAB/CR/LF. */
static inline struct slice slice_trim(struct slice s)
{
    while (s.len && (*s.base == ' ' || *s.base == '\t' || *s.base == '\r' || *s.base == '\n')) {
        s.base++;
        s.len--;
    }
    while (s.len && (s.base[s.len - 1] == ' ' || s.base[s.len - 1] == '\t' ||
                     s.base[s.len - 1] == '\r' || s.base[s.len - 1] == '\n'))
        s.len--;
    return s;
}

#endif
