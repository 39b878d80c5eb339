// SPDX-License-Identifier: MIT
// libFuzzer target for core/sip_parse.c: the first byte picks a sub-parser, the rest is its input;
// every returned slice must lie inside the input and every byte of it is read.
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    struct slice s = slice_make((const char *)data + 1, size - 1);
    in_base = s.base;
    in_len = s.len;

    switch (data[0] % 10) {
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
    default:
        sink += (unsigned)sip_transport_from(s);
        break;
    }
    return 0;
}
