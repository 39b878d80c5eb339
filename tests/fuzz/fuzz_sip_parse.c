// SPDX-License-Identifier: MIT
// libFuzzer target for core/sip_parse.c and core/sip_build.c: the first byte picks a sub-parser
// or the builders (on a message scanned by sip_scan), the rest is its input; every returned slice
// must lie inside the input (or the builder's scratch) and every byte of it is read.
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/sip_build.h"
#include "core/sip_parse.h"

static const char *in_base;
static size_t in_len;
static volatile unsigned sink;

static void touch(struct slice s)
{
    unsigned sum = 0;

    if (s.base == NULL) {
        assert(s.len == 0);
        return;
    }
    assert(s.base >= in_base && s.len <= in_len && (size_t)(s.base - in_base) <= in_len - s.len);
    for (size_t i = 0; i < s.len; i++)
        sum += (unsigned char)s.base[i];
    sink += sum;
}

static void walk_params(struct slice s, enum sip_param_mode mode)
{
    struct sip_param_iter it;
    struct sip_param p;
    size_t n = 0;

    touch(s);
    sip_params_begin(&it, s, mode);
    while (sip_params_next(&it, &p) > 0) {
        touch(p.name);
        touch(p.value);
        assert(p.name.len > 0);
        assert(++n <= s.len);
    }
}

static void check_uri(const struct sip_uri *u)
{
    touch(u->scheme);
    touch(u->user);
    touch(u->password);
    touch(u->host);
    touch(u->headers);
    touch(u->transport);
    touch(u->maddr);
    touch(u->user_param);
    touch(u->opaque);
    walk_params(u->params, SIP_PARAM_URI);
}

/* A message scanned from `text` must scan again, whole, once rebuilt. */
static void rescan_ok(const char *text, size_t len)
{
    static char again[16384];
    struct sip_header hdrs[128];
    struct sip_msg m;

    assert(len <= sizeof(again));
    memcpy(again, text, len);
    sip_msg_init(&m, hdrs, 128);
    assert(sip_scan(again, len, 0, &m) == (ssize_t)len);
}

static size_t join_checked(const struct slice *iov, ssize_t n, const char *scratch,
                           size_t scratch_len, char *out, size_t cap)
{
    size_t len = 0;
    for (ssize_t i = 0; i < n; i++) {
        const struct slice *v = &iov[i];
        bool in_msg = v->base >= in_base && (size_t)(v->base - in_base) + v->len <= in_len;
        bool in_scratch = v->base >= scratch && (size_t)(v->base - scratch) + v->len <= scratch_len;
        assert(v->len > 0 && (in_msg || in_scratch));
        assert(len + v->len <= cap);
        memcpy(out + len, v->base, v->len);
        len += v->len;
    }
    return len;
}

static void run_builders(struct slice s)
{
    static char buf[8192], out[16384], scratch[512];
    struct sip_header hdrs[64];
    struct sip_msg m;
    struct slice iov[80], popped;
    ssize_t n, r;

    if (s.len > sizeof(buf))
        return;
    memcpy(buf, s.base, s.len);
    sip_msg_init(&m, hdrs, 64);
    n = sip_scan(buf, s.len, 0, &m);
    if (n <= 0)
        return;
    in_base = buf;
    in_len = (size_t)n;
    if (m.is_request) {
        const struct slice extra[] = {SLICE_LIT("Proxy-Authenticate: Bearer realm=\"ccmsipline\"")};
        const uint16_t drop[] = {SIP_HDR_PROXY_AUTHORIZATION, SIP_HDR_AUTHORIZATION};
        const struct sip_rewrite rw = {
            .via = SLICE_LIT("SIP/2.0/TLS edge.example.com;branch=z9hG4bKfuzz"),
            .path = SLICE_LIT("<sip:edge.example.com;lr>"),
            .max_forwards = true,
            .drop = drop,
            .n_drop = 2,
        };
        r = sip_build_response(&m, 407, SLICE_LIT("Proxy Authentication Required"),
                               SLICE_LIT("edge1"), extra, 1, out, sizeof(out));
        assert(r > 0 || r == -ENOSPC);
        if (r > 0)
            rescan_ok(out, (size_t)r);
        r = sip_rewrite_request(&m, &rw, iov, 80, scratch, sizeof(scratch));
        assert(r > 0 || r == -ELOOP || r == -EBADMSG || r == -ENOSPC);
        if (r > 0)
            rescan_ok(out, join_checked(iov, r, scratch, sizeof(scratch), out, sizeof(out)));
    } else {
        r = sip_pop_via(&m, iov, 2, &popped);
        assert(r == 2 || (r == -ENOENT && m.via_count == 0));
        if (r == 2) {
            touch(popped);
            rescan_ok(out, join_checked(iov, r, NULL, 0, out, sizeof(out)));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    struct slice s = slice_make((const char *)data + 1, size - 1);
    in_base = s.base;
    in_len = s.len;

    switch (data[0] % 11) {
    case 0: {
        struct sip_via v;
        if (sip_parse_via(s, &v) == 0) {
            touch(v.protocol);
            touch(v.version);
            touch(v.transport_text);
            touch(v.host);
            touch(v.branch);
            touch(v.received);
            touch(v.maddr);
            walk_params(v.params, SIP_PARAM_HEADER);
        }
        break;
    }
    case 1: {
        struct sip_uri u;
        if (sip_parse_uri(s, &u) == 0)
            check_uri(&u);
        break;
    }
    case 2: {
        struct sip_name_addr na;
        if (sip_parse_name_addr(s, &na) == 0) {
            touch(na.display);
            touch(na.uri_text);
            touch(na.tag);
            touch(na.expires);
            touch(na.q);
            if (!na.star)
                check_uri(&na.uri);
            walk_params(na.params, SIP_PARAM_HEADER);
        }
        break;
    }
    case 3: {
        struct sip_cseq c;
        if (sip_parse_cseq(s, &c) == 0)
            touch(c.method_text);
        break;
    }
    case 4: {
        uint8_t mf;
        uint32_t ex;
        sink += (unsigned)sip_parse_max_forwards(s, &mf);
        sink += (unsigned)sip_parse_expires(s, &ex);
        break;
    }
    case 5: {
        struct sip_cred c;
        int r = sip_parse_cred(s, &c);
        touch(c.scheme);
        touch(c.params);
        if (r == 0) {
            assert(c.token.len > 0);
            touch(c.token);
            touch(c.realm);
        }
        break;
    }
    case 6:
        walk_params(s, SIP_PARAM_HEADER);
        break;
    case 7:
        walk_params(s, SIP_PARAM_URI);
        break;
    case 8: {
        /* each line a credentials header: Proxy-Authorization if it starts with 'P' */
        struct sip_header hdrs[16];
        struct sip_msg m;
        struct sip_cred c;
        const char *p = s.base, *end = s.base + s.len;
        memset(&m, 0, sizeof(m));
        m.headers = hdrs;
        m.headers_cap = 16;
        while (p < end && m.header_count < 16) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *e = nl ? nl : end;
            struct sip_header *h = &hdrs[m.header_count++];
            h->id = *p == 'P' ? SIP_HDR_PROXY_AUTHORIZATION : SIP_HDR_AUTHORIZATION;
            h->name = SLICE_NULL;
            h->value = slice_make(p, (size_t)(e - p));
            p = nl ? nl + 1 : end;
        }
        if (sip_find_bearer(&m, SLICE_LIT("ccmsipline"), &c) == 0) {
            assert(c.header_index < m.header_count);
            touch(c.token);
            touch(c.realm);
            assert(!c.has_realm || slice_eq(c.realm, SLICE_LIT("ccmsipline")));
        }
        break;
    }
    case 9:
        sink += (unsigned)sip_transport_from(s);
        break;
    default:
        run_builders(s);
        break;
    }
    return 0;
}
