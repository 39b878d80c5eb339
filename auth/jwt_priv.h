// SPDX-License-Identifier: MIT
// auth/-private: a strict, allocation-free JSON reader for the flat objects of JWS headers and
// JWT claims (RFC 8259 grammar, UTF-8 checked, duplicate members refused, nesting bounded).
#ifndef SIPEDGE_AUTH_JWT_PRIV_H
#define SIPEDGE_AUTH_JWT_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum jwt__jtype {
    JWT__J_STRING = 0,
    JWT__J_NUMBER,
    JWT__J_OBJECT,
    JWT__J_ARRAY,
    JWT__J_TRUE,
    JWT__J_FALSE,
    JWT__J_NULL,
    /* JWT__J_COUNT */
    JWT__J_COUNT
};

/** One value: for strings the bytes between the quotes (still escaped when `esc`), for the other
 * types the value's text. Borrows the parsed input. */
struct jwt__jval {
    const char *p;
    size_t len;
    enum jwt__jtype type;
    bool esc; /* string holds a backslash escape */
};

struct jwt__member {
    const char *key; /* unescaped: into the input, or into jwt__obj.keybuf */
    size_t klen;
    struct jwt__jval v;
};

#define JWT__MAX_MEMBERS 64
#define JWT__MAX_DEPTH   16
#define JWT__KEYBUF      512

/** The top-level members of one object. Large (≈ 2.6 KiB): keep it on the stack of one call. */
struct jwt__obj {
    struct jwt__member m[JWT__MAX_MEMBERS];
    size_t n;
    char keybuf[JWT__KEYBUF]; /* unescaped keys that held escapes */
    size_t keybuf_used;
};

/**
 * Parse `s` (`len` bytes), which must be exactly one JSON object (surrounding whitespace allowed),
 * into `o`. Returns 0, or -EINVAL (not an object, grammar, invalid UTF-8 or escape, lone
 * surrogate, nesting deeper than JWT__MAX_DEPTH, duplicate member, more than JWT__MAX_MEMBERS
 * members or escaped keys over JWT__KEYBUF bytes). `o` borrows `s`.
 */
int jwt__obj_parse(struct jwt__obj *o, const char *s, size_t len);

/** The member named `name` (exact, unescaped bytes), or NULL. */
const struct jwt__jval *jwt__obj_get(const struct jwt__obj *o, const char *name);

/**
 * Unescape the string value `v` into `out` (`cap` bytes, no NUL added). Returns the length, or
 * -ENOSPC when it does not fit. `v` must come from jwt__obj_parse() (already validated).
 */
ssize_t jwt__str(const struct jwt__jval *v, char *out, size_t cap);

/** True when the string value `v` equals `want` (`wlen` bytes) once unescaped. */
bool jwt__str_eq(const struct jwt__jval *v, const char *want, size_t wlen);

/** The number value `v` as an integer (a fraction is floored). 0, or -EINVAL (not a number,
 * out of the int64 range). */
int jwt__num(const struct jwt__jval *v, int64_t *out);

/**
 * Iterate the elements of the array value `arr`: start with `*pos` = 0; each call stores the next
 * element in `el` and returns true, false at the end.
 */
bool jwt__arr_next(const struct jwt__jval *arr, size_t *pos, struct jwt__jval *el);

#endif
