// SPDX-License-Identifier: MIT
// SIP builders over a scanned message: a response from a request (into a bounded buffer), and a
// request rewrite / response Via pop expressed as gather lists of slices (no copy of the message).
#ifndef SIPEDGE_CORE_SIP_BUILD_H
#define SIPEDGE_CORE_SIP_BUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/slice.h"
#include "core/sip.h"

/**
 * Build the response to request `req` into `out[0..cap)`:
 *
 *     SIP/2.0 <status> <reason>
 *     Via: ...            every Via line of `req`, in order, values as written
 *     From: ...
 *     To: ...;tag=<to_tag>  the tag is added only when the To has none and `to_tag` is not empty
 *     Call-ID: ...
 *     CSeq: ...
 *     <extra[0]> ...      each a full header line without CRLF ("Retry-After: 5")
 *     Content-Length: 0
 *
 * Headers `req` lacks are left out (a 400 to a broken request still goes out). `req` must come
 * from sip_scan() (or be built alike); nothing is kept after the call. Reentrant, no allocation.
 * Returns the length written (no NUL), -ENOSPC if `cap` is too small (`out` then holds garbage),
 * -EINVAL if `req` is not a request, `status` is outside 100..699, or `reason`, `to_tag` or an
 * extra line holds CR or LF (header injection).
 */
ssize_t sip_build_response(const struct sip_msg *req, int status, struct slice reason,
                           struct slice to_tag, const struct slice *extra, size_t n_extra,
                           char *out, size_t cap);

/** What sip_rewrite_request() changes. Empty slices and a zero `n_drop` change nothing. */
struct sip_rewrite {
    struct slice via;  /* the value of the Via to push on top ("SIP/2.0/TLS h;branch=z9hG4bK...") */
    struct slice path; /* the value of a Path to insert ("<sip:edge.example.com;lr>"): before the
                          first Path line, or after the last header when there is none */
    bool max_forwards; /* decrement Max-Forwards, or add "Max-Forwards: 69" after the new Via */
    const uint16_t *drop; /* enum sip_hdr ids whose lines are dropped (Proxy-Authorization) */
    size_t n_drop;
};

/**
 * Express the rewrite of request `req` as a gather list in `iov[0..iov_cap)`: the original
 * bytes (start line, kept header lines, empty line, body) as slices into `req`'s buffer, in
 * order and byte-identical, with the new lines written into `scratch[0..scratch_cap)` (about 40
 * bytes plus the Via and Path values). Adjacent kept lines share one slice. A second and later
 * Max-Forwards line is dropped when `rw->max_forwards` is set.
 * Returns the number of slices, -ENOSPC (`iov_cap` or `scratch_cap` too small), -ELOOP
 * (Max-Forwards is 0: answer 483), -EBADMSG (Max-Forwards not 0..255: answer 400), -EINVAL
 * (`req` is not a request, or `via`/`path` holds CR or LF). The slices borrow `req`'s buffer
 * and `scratch`. Reentrant, no allocation.
 */
ssize_t sip_rewrite_request(const struct sip_msg *req, const struct sip_rewrite *rw,
                            struct slice *iov, size_t iov_cap, char *scratch, size_t scratch_cap);

/**
 * Express response `resp` without its top Via value as a gather list in `iov[0..iov_cap)`: a
 * Via line holding one value is removed whole; from a line "Via: a, b" only "a, " goes. The
 * removed value (trimmed) is stored in `*popped` when `popped` is not NULL, so the caller can
 * check its branch. Returns the number of slices (at most 2), -ENOENT (no Via), -ENOSPC
 * (`iov_cap` < 2). The slices borrow `resp`'s buffer. Reentrant, no allocation.
 */
ssize_t sip_pop_via(const struct sip_msg *resp, struct slice *iov, size_t iov_cap,
                    struct slice *popped);

/** Total bytes of `iov[0..n)` (for a writev or a TLS record size). */
size_t sip_iov_len(const struct slice *iov, size_t n);

#endif
