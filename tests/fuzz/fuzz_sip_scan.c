// SPDX-License-Identifier: MIT
// libFuzzer target for sip_scan(): the input whole and split in two at a point derived from the
// data, on every scanner path; every slice must lie inside the input and is read in full, and
// the scalar and SIMD paths must agree byte for byte (results, index and buffer writes). Each
// result also goes through the edge's decision (core/sip_check.c), whose answer must be sane.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sip.h"
#include "core/sip_check.h"

#define CAP 64

struct run {
    enum sip_scan_impl impl;
    struct sip_header h[CAP];
    struct sip_msg m;
    ssize_t rc;
    char *buf;
};

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* The slice must be NULL or inside buf[0..len); read every byte of it. */
static unsigned touch(struct slice s, const char *buf, size_t len)
{
    if (!s.base) {
        check(s.len == 0);
        return 0;
    }
    check(s.base >= buf && s.len <= len && (size_t)(s.base - buf) <= len - s.len);
    unsigned sum = 0;
    for (size_t i = 0; i < s.len; i++)
        sum += (unsigned char)s.base[i];
    return sum;
}

static volatile unsigned sink;

/* A verdict names a known action; an answer has a status, a reason and extra lines without CR
 * or LF (they become header lines). */
static void check_verdict(const struct sip_verdict *v)
{
    check((unsigned)v->action < SIP_CHECK_ACTION_COUNT);
    if (v->action != SIP_CHECK_ANSWER)
        return;
    check(v->status >= 100 && v->status <= 699 && v->reason != NULL);
    check(strpbrk(v->reason, "\r\n") == NULL && v->n_extra <= SIP_CHECK_EXTRA_MAX);
    for (size_t i = 0; i < v->n_extra; i++)
        check(!memchr(v->extra[i].base, '\r', v->extra[i].len) &&
              !memchr(v->extra[i].base, '\n', v->extra[i].len));
}

static void touch_all(const struct run *r, size_t len)
{
    const struct sip_msg *m = &r->m;
    struct sip_verdict verdict;
    if (r->rc < -1) {
        check(m->err > SIP_E_INCOMPLETE_ && m->err < SIP_E_COUNT && m->err_pos <= len);
        check(-r->rc == (ssize_t)m->err);
        sip_check_garbage(m, &verdict);
        check_verdict(&verdict);
        return;
    }
    if (r->rc == SIP_INCOMPLETE)
        return;
    check(r->rc > 0 && (size_t)r->rc <= len);
    size_t n = (size_t)r->rc; /* every slice lies inside the message it framed */
    unsigned sum = touch(m->method_text, r->buf, n) + touch(m->uri, r->buf, n) +
                   touch(m->version, r->buf, n) + touch(m->reason, r->buf, n) +
                   touch(m->via_first, r->buf, n) + touch(m->body, r->buf, n);
    check(m->header_count <= CAP && m->header_len + m->content_length == n);
    for (size_t i = 0; i < m->header_count; i++) {
        check(m->headers[i].id < SIP_HDR_COUNT && m->headers[i].name.len > 0);
        sum += touch(m->headers[i].name, r->buf, m->header_len);
        sum += touch(m->headers[i].value, r->buf, m->header_len);
    }
    for (int id = 1; id < SIP_HDR_COUNT; id++) {
        const struct sip_header *h = sip_first(m, (enum sip_hdr)id);
        check(!h || h->id == id);
    }
    struct sip_value_iter it;
    struct slice v;
    unsigned vias = 0;
    sip_values_begin(&it, m, SIP_HDR_VIA);
    while (sip_values_next(&it, &v) && vias <= CAP * 1000) {
        check(v.len > 0);
        sum += touch(v, r->buf, m->header_len);
        vias++;
    }
    check(vias == m->via_count);
    sip_check_request(m, SLICE_LIT("ccmsipline"), &verdict);
    check_verdict(&verdict);
    sink = sum;
}

static void same(const struct run *a, const struct run *b, size_t len)
{
    check(a->rc == b->rc);
    check(memcmp(a->buf, b->buf, len) == 0);
    if (a->rc < -1) {
        check(a->m.err == b->m.err && a->m.err_pos == b->m.err_pos);
        return;
    }
    check(a->m.header_len == b->m.header_len);
    if (a->rc == SIP_INCOMPLETE)
        return;
#define OFF(s, r) ((s).base ? (s).base - (r)->buf : -1)
/* An empty slice carries no byte: its base is not compared (a scan resumed over a fold that the
 * first pass already turned into spaces skips them, so an empty value starts later). */
#define SAME_SLICE(f)                                                                              \
    check(a->m.f.len == b->m.f.len && (a->m.f.len == 0 || OFF(a->m.f, a) == OFF(b->m.f, b)))
    SAME_SLICE(method_text);
    SAME_SLICE(uri);
    SAME_SLICE(version);
    SAME_SLICE(reason);
    SAME_SLICE(via_first);
    SAME_SLICE(body);
    check(a->m.is_request == b->m.is_request && a->m.method == b->m.method);
    check(a->m.status == b->m.status && a->m.via_count == b->m.via_count);
    check(a->m.content_length == b->m.content_length);
    check(a->m.header_count == b->m.header_count);
    check(memcmp(a->m.first, b->m.first, sizeof(a->m.first)) == 0);
    for (size_t i = 0; i < a->m.header_count; i++) {
        SAME_SLICE(headers[i].name);
        SAME_SLICE(headers[i].value);
        check(a->m.headers[i].id == b->m.headers[i].id);
    }
}

static struct run runs[SIP_SCAN_IMPL_COUNT];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exact-size copies so that ASan sees any read past the end */
    int n = 0;
    for (int i = SIP_SCAN_SCALAR; i < SIP_SCAN_IMPL_COUNT; i++) {
        if (sip_scan_set_impl((enum sip_scan_impl)i) != 0)
            continue;
        struct run *r = &runs[n++];
        r->impl = (enum sip_scan_impl)i;
        r->buf = malloc(size ? size : 1);
        memcpy(r->buf, data, size);
        sip_msg_init(&r->m, r->h, CAP);
        r->m.limits.max_size = 16384;
        r->m.limits.max_line = 2048;
        r->m.limits.max_body = 8192;
        r->rc = sip_scan(r->buf, size, 0, &r->m);
        touch_all(r, size);
        if (n > 1)
            same(&runs[0], r, size);
    }

    /* split in two at a data-derived point, on the scalar path and then on the others */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    size_t split = size ? h % (size + 1) : 0;
    for (int i = 0; i < n; i++) {
        sip_scan_set_impl(runs[i].impl);
        struct run s;
        s.buf = malloc(size ? size : 1);
        memcpy(s.buf, data, size);
        sip_msg_init(&s.m, s.h, CAP);
        s.m.limits = runs[0].m.limits;
        ssize_t first = sip_scan(s.buf, split, 0, &s.m);
        if (first == SIP_INCOMPLETE) {
            s.rc = sip_scan(s.buf, size, sip_scan_resume(&s.m, split), &s.m);
            touch_all(&s, size);
            if (runs[0].rc > 0) /* a valid message: its prefixes wait, and the end is identical */
                same(&runs[0], &s, size);
        } else if (runs[0].rc > 0) {
            check(split >= (size_t)runs[0].rc && first == runs[0].rc);
        }
        free(s.buf);
    }
    for (int i = 0; i < n; i++)
        free(runs[i].buf);
    sip_scan_set_impl(SIP_SCAN_AUTO);
    return 0;
}
