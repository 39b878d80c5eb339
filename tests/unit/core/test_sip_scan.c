// SPDX-License-Identifier: MIT
// Tests for core/sip_scan.c: framing, indexing, folding, values, strictness and its error codes,
// restart on every split point, scalar vs SIMD equality, input ending at a guard page.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "core/sip.h"

#define CAP  256
#define DATA SIPEDGE_SOURCE_DIR "/tests/data/sip/"

static const char *const valid_files[] = {
    "register_jabber",         "register_rfc8898_bearer",
    "register_no_token",       "response_407",
    "response_200_register",   "invite_sdp",
    "response_200_invite_sdp", "compact_forms",
    "folded_headers",          "multi_via_ipv6",
    "unknown_method_lws",      "quoted_pair_controls",
};
#define NVALID (sizeof(valid_files) / sizeof(valid_files[0]))

/* ---- helpers ------------------------------------------------------------------------------ */

struct buf {
    char *p;
    size_t len;
};

static struct buf load(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), DATA "%s/%s.sip", dir, name);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    struct buf b = {malloc(1 << 16), 0};
    cr_assert(b.p);
    b.len = fread(b.p, 1, 1 << 16, f);
    fclose(f);
    cr_assert(b.len > 0 && b.len < (1 << 16));
    return b;
}

static struct buf dup_bytes(const char *p, size_t len)
{
    struct buf b = {malloc(len ? len : 1), len};
    cr_assert(b.p);
    memcpy(b.p, p, len);
    return b;
}

struct scan {
    char text[1024]; /* scan_str() input, which the slices point into */
    struct sip_header h[CAP];
    struct sip_msg m;
    ssize_t rc;
};

static void init(struct scan *s)
{
    sip_msg_init(&s->m, s->h, CAP);
}

static ssize_t scan_str(struct scan *s, const char *text)
{
    init(s);
    size_t len = strlen(text);
    cr_assert_lt(len, sizeof(s->text));
    memcpy(s->text, text, len);
    s->rc = sip_scan(s->text, len, 0, &s->m);
    return s->rc;
}

static bool slice_is(struct slice s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.base, want, s.len) == 0;
}

#define ASSERT_SLICE(s, want)                                                                      \
    cr_assert(slice_is((s), (want)), "got \"%.*s\", want \"%s\"", (int)(s).len, (s).base, (want))

/* The offset of a slice inside `base`, or -1 for a NULL slice: comparable across copies. */
static long off(struct slice s, const char *base)
{
    return s.base ? (long)(s.base - base) : -1;
}

/* Whether two scans (of equal bytes in different buffers) gave the same result and index. */
static void assert_same(const struct scan *a, const char *ba, const struct scan *b, const char *bb,
                        const char *what)
{
    cr_assert_eq(a->rc, b->rc, "%s: rc %zd vs %zd", what, a->rc, b->rc);
    if (a->rc < -1) {
        cr_assert_eq(a->m.err, b->m.err, "%s: err", what);
        cr_assert_eq(a->m.err_pos, b->m.err_pos, "%s: err_pos", what);
        return;
    }
    if (a->rc == SIP_INCOMPLETE) {
        cr_assert_eq(a->m.header_len, b->m.header_len, "%s: header_len", what);
        return;
    }
    const struct sip_msg *x = &a->m, *y = &b->m;
    cr_assert_eq(x->is_request, y->is_request, "%s", what);
    cr_assert_eq(x->method, y->method, "%s", what);
    cr_assert_eq(off(x->method_text, ba), off(y->method_text, bb), "%s", what);
    cr_assert_eq(x->method_text.len, y->method_text.len, "%s", what);
    cr_assert_eq(off(x->uri, ba), off(y->uri, bb), "%s", what);
    cr_assert_eq(x->uri.len, y->uri.len, "%s", what);
    cr_assert_eq(off(x->version, ba), off(y->version, bb), "%s", what);
    cr_assert_eq(x->status, y->status, "%s", what);
    cr_assert_eq(off(x->reason, ba), off(y->reason, bb), "%s", what);
    cr_assert_eq(x->reason.len, y->reason.len, "%s", what);
    cr_assert_eq(x->header_count, y->header_count, "%s", what);
    for (size_t i = 0; i < x->header_count; i++) {
        cr_assert_eq(x->headers[i].id, y->headers[i].id, "%s: header %zu", what, i);
        cr_assert_eq(off(x->headers[i].name, ba), off(y->headers[i].name, bb), "%s", what);
        cr_assert_eq(x->headers[i].name.len, y->headers[i].name.len, "%s", what);
        cr_assert_eq(off(x->headers[i].value, ba), off(y->headers[i].value, bb), "%s", what);
        cr_assert_eq(x->headers[i].value.len, y->headers[i].value.len, "%s", what);
    }
    cr_assert(memcmp(x->first, y->first, sizeof(x->first)) == 0, "%s: first[]", what);
    cr_assert_eq(x->via_count, y->via_count, "%s", what);
    cr_assert_eq(off(x->via_first, ba), off(y->via_first, bb), "%s", what);
    cr_assert_eq(x->via_first.len, y->via_first.len, "%s", what);
    cr_assert_eq(x->header_len, y->header_len, "%s", what);
    cr_assert_eq(x->content_length, y->content_length, "%s", what);
    cr_assert_eq(off(x->body, ba), off(y->body, bb), "%s", what);
    cr_assert_eq(x->body.len, y->body.len, "%s", what);
}

/* The implementations this CPU has (scalar first). */
static int impls(enum sip_scan_impl out[SIP_SCAN_IMPL_COUNT])
{
    int n = 0;
    for (int i = SIP_SCAN_SCALAR; i < SIP_SCAN_IMPL_COUNT; i++)
        if (sip_scan_set_impl((enum sip_scan_impl)i) == 0)
            out[n++] = (enum sip_scan_impl)i;
    sip_scan_set_impl(SIP_SCAN_AUTO);
    return n;
}

static void restore_impl(void)
{
    sip_scan_set_impl(SIP_SCAN_AUTO);
}

TestSuite(sip_scan, .fini = restore_impl);

/* ---- indexing of realistic messages ------------------------------------------------------- */

Test(sip_scan, indexes_a_jabber_register_with_a_bearer_token)
{
    struct buf b = load("valid", "register_jabber");
    struct scan s;
    init(&s);
    cr_assert_eq(sip_scan(b.p, b.len, 0, &s.m), (ssize_t)b.len);
    cr_assert(s.m.is_request);
    cr_assert_eq(s.m.method, SIP_METHOD_REGISTER);
    ASSERT_SLICE(s.m.method_text, "REGISTER");
    ASSERT_SLICE(s.m.uri, "sip:cucm-pub.example.com");
    ASSERT_SLICE(s.m.version, "SIP/2.0");
    cr_assert_eq(s.m.header_count, 13);
    cr_assert_eq(s.m.via_count, 1);
    ASSERT_SLICE(s.m.via_first, "SIP/2.0/TLS 192.0.2.10:62162;branch=z9hG4bK00004a82;rport");
    ASSERT_SLICE(sip_first(&s.m, SIP_HDR_CSEQ)->value, "2271 REGISTER");
    ASSERT_SLICE(sip_first(&s.m, SIP_HDR_MAX_FORWARDS)->value, "70");
    ASSERT_SLICE(sip_first(&s.m, SIP_HDR_EXPIRES)->value, "3600");
    const struct sip_header *pa = sip_first(&s.m, SIP_HDR_PROXY_AUTHORIZATION);
    cr_assert(pa && pa->value.len > 300 && memcmp(pa->value.base, "Bearer token=\"ey", 16) == 0);
    cr_assert_eq(pa->value.base[pa->value.len - 1], '"');
    const struct sip_header *c = sip_first(&s.m, SIP_HDR_CONTACT);
    cr_assert(c && memmem(c->value.base, c->value.len, "+u.sip!devicename.ccm.cisco.com", 31));
    cr_assert_null(sip_first(&s.m, SIP_HDR_AUTHORIZATION));
    cr_assert_null(sip_first(&s.m, SIP_HDR_ROUTE));
    cr_assert_eq(s.m.content_length, 0);
    cr_assert_eq(s.m.body.len, 0);
    cr_assert_eq(s.m.header_len, b.len);

    struct sip_value_iter it;
    struct slice v;
    int n = 0;
    sip_values_begin(&it, &s.m, SIP_HDR_SUPPORTED);
    while (sip_values_next(&it, &v)) {
        if (n == 0)
            ASSERT_SLICE(v, "replaces");
        n++;
    }
    ASSERT_SLICE(v, "X-cisco-duplicate-reg");
    cr_assert_eq(n, 17);
    free(b.p);
}

Test(sip_scan, frames_an_invite_by_its_content_length)
{
    struct buf b = load("valid", "invite_sdp");
    struct scan s;
    init(&s);
    cr_assert_eq(sip_scan(b.p, b.len, 0, &s.m), (ssize_t)b.len);
    cr_assert_eq(s.m.method, SIP_METHOD_INVITE);
    cr_assert_eq(s.m.header_len + s.m.content_length, b.len);
    cr_assert_eq(s.m.body.base, b.p + s.m.header_len);
    cr_assert(s.m.body.len > 300 && memcmp(s.m.body.base, "v=0\r\n", 5) == 0);
    ASSERT_SLICE(sip_first(&s.m, SIP_HDR_CONTENT_TYPE)->value, "application/sdp");
    ASSERT_SLICE(sip_first(&s.m, SIP_HDR_SESSION_ID)->name, "Session-ID");
    cr_assert_eq(sip_first(&s.m, SIP_HDR_OTHER)->id, SIP_HDR_OTHER); /* Remote-Party-ID */
    free(b.p);
}

Test(sip_scan, parses_a_200_ok_status_line)
{
    struct buf b = load("valid", "response_200_register");
    struct scan s;
    init(&s);
    cr_assert_eq(sip_scan(b.p, b.len, 0, &s.m), (ssize_t)b.len);
    cr_assert_not(s.m.is_request);
    cr_assert_eq(s.m.status, 200);
    ASSERT_SLICE(s.m.reason, "OK");
    cr_assert_eq(s.m.method_text.len, 0);
    ASSERT_SLICE(sip_first(&s.m, SIP_HDR_EXPIRES)->value, "120");
    free(b.p);
}

Test(sip_scan, maps_compact_forms_to_their_ids)
{
    struct buf b = load("valid", "compact_forms");
    struct scan s;
    init(&s);
    cr_assert_eq(sip_scan(b.p, b.len, 0, &s.m), (ssize_t)b.len);
    static const enum sip_hdr want[] = {
        SIP_HDR_VIA,
        SIP_HDR_FROM,
        SIP_HDR_TO,
        SIP_HDR_CALL_ID,
        SIP_HDR_CSEQ,
        SIP_HDR_CONTACT,
        SIP_HDR_SUPPORTED,
        SIP_HDR_SUBJECT,
        SIP_HDR_EVENT,
        SIP_HDR_ALLOW_EVENTS,
        SIP_HDR_SESSION_EXPIRES,
        SIP_HDR_ACCEPT_CONTACT,
        SIP_HDR_CONTENT_TYPE,
        SIP_HDR_CONTENT_LENGTH,
    };
    cr_assert_eq(s.m.header_count, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < s.m.header_count; i++)
        cr_assert_eq(s.m.headers[i].id, want[i], "header %zu (%.*s)", i,
                     (int)s.m.headers[i].name.len, s.m.headers[i].name.base);
    ASSERT_SLICE(sip_first(&s.m, SIP_HDR_VIA)->name, "v");
    cr_assert_eq(s.m.content_length, 5);
    ASSERT_SLICE(s.m.body, "v=0\r\n");
    free(b.p);
}

Test(sip_scan, turns_folds_into_spaces_in_place)
{
    struct buf b = load("valid", "folded_headers");
    struct buf orig = dup_bytes(b.p, b.len);
    struct scan s;
    init(&s);
    s.rc = sip_scan(b.p, b.len, 0, &s.m);
    cr_assert_eq(s.rc, (ssize_t)b.len);
    ASSERT_SLICE(sip_first(&s.m, SIP_HDR_VIA)->value,
                 "SIP/2.0/TLS 192.0.2.10:5061   ;branch=z9hG4bKfolded");
    ASSERT_SLICE(sip_first(&s.m, SIP_HDR_FROM)->value, "<sip:alice@example.com>;tag=9");
    ASSERT_SLICE(sip_first(&s.m, SIP_HDR_SUBJECT)->value,
                 "I know you're there,           pick up the phone           and talk to me!");
    /* the only bytes changed are the CRLFs of folds */
    for (size_t i = 0; i < b.len; i++) {
        if (b.p[i] == orig.p[i])
            continue;
        bool fold_crlf = (orig.p[i] == '\r' && orig.p[i + 1] == '\n' &&
                          (orig.p[i + 2] == ' ' || orig.p[i + 2] == '\t')) ||
                         (orig.p[i] == '\n' && i > 0 && orig.p[i - 1] == '\r');
        cr_assert(fold_crlf && b.p[i] == ' ', "byte %zu changed", i);
    }
    /* a rescan of the rewritten buffer gives the same message */
    struct scan t;
    init(&t);
    t.rc = sip_scan(b.p, b.len, 0, &t.m);
    assert_same(&s, b.p, &t, b.p, "rescan");
    free(b.p);
    free(orig.p);
}

Test(sip_scan, counts_via_values_across_commas_and_lines_with_ipv6_hosts)
{
    struct buf b = load("valid", "multi_via_ipv6");
    struct scan s;
    init(&s);
    cr_assert_eq(sip_scan(b.p, b.len, 0, &s.m), (ssize_t)b.len);
    cr_assert_eq(s.m.status, 180);
    cr_assert_eq(s.m.via_count, 5);
    ASSERT_SLICE(s.m.via_first,
                 "SIP/2.0/TLS [2001:db8::10]:5061;branch=z9hG4bKe1;received=[2001:db8::10]");
    static const char *const want[] = {
        "SIP/2.0/TLS [2001:db8::10]:5061;branch=z9hG4bKe1;received=[2001:db8::10]",
        "SIP/2.0/TLS 192.0.2.20;branch=z9hG4bKe2",
        "SIP/2.0/TCP [2001:db8:0:0:0:0:0:30]:5060;branch=z9hG4bKe3;rport=5060",
        "SIP/2.0/TLS edge.example.com;branch=z9hG4bKe4",
        "SIP/2.0/TLS \"quoted,comma\";branch=z9hG4bKe5",
    };
    struct sip_value_iter it;
    struct slice v;
    size_t n = 0;
    sip_values_begin(&it, &s.m, SIP_HDR_VIA);
    while (sip_values_next(&it, &v)) {
        cr_assert(n < 5);
        ASSERT_SLICE(v, want[n]);
        n++;
    }
    cr_assert_eq(n, 5);
    cr_assert_not(sip_values_next(&it, &v), "stays exhausted");
    free(b.p);
}

Test(sip_scan, splits_values_outside_quotes_and_angle_brackets_only)
{
    struct scan s;
    cr_assert_gt(scan_str(&s, "REGISTER sip:x SIP/2.0\r\n"
                              "Contact: \"Doe, John\" <sip:j@x;a=1,2>;q=0.5 , <sip:k@y>\r\n"
                              "Contact: ,, \"esc \\\" ,\" <sip:l@z>,\r\n"
                              "Route: <sip:r1;lr>\r\nContent-Length: 0\r\n\r\n"),
                 0);
    static const char *const want[] = {"\"Doe, John\" <sip:j@x;a=1,2>;q=0.5", "<sip:k@y>",
                                       "\"esc \\\" ,\" <sip:l@z>"};
    struct sip_value_iter it;
    struct slice v;
    size_t n = 0;
    sip_values_begin(&it, &s.m, SIP_HDR_CONTACT);
    while (sip_values_next(&it, &v)) {
        cr_assert(n < 3);
        ASSERT_SLICE(v, want[n]);
        n++;
    }
    cr_assert_eq(n, 3);
    sip_values_begin(&it, &s.m, SIP_HDR_PATH);
    cr_assert_not(sip_values_next(&it, &v), "absent header has no values");
    sip_values_begin(&it, &s.m, SIP_HDR_OTHER);
    cr_assert_not(sip_values_next(&it, &v), "SIP_HDR_OTHER is not iterated");
}

Test(sip_scan, tolerates_lws_around_the_colon_any_case_and_unknown_methods)
{
    struct buf b = load("valid", "unknown_method_lws");
    struct scan s;
    init(&s);
    cr_assert_eq(sip_scan(b.p, b.len, 0, &s.m), (ssize_t)b.len);
    cr_assert_eq(s.m.method, SIP_METHOD_UNKNOWN);
    ASSERT_SLICE(s.m.method_text, "FOOBAR");
    ASSERT_SLICE(sip_first(&s.m, SIP_HDR_VIA)->name, "via");
    ASSERT_SLICE(sip_first(&s.m, SIP_HDR_VIA)->value,
                 "SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKlws");
    ASSERT_SLICE(sip_first(&s.m, SIP_HDR_FROM)->value, "<sip:a@example.com>;tag=x");
    ASSERT_SLICE(sip_first(&s.m, SIP_HDR_TO)->value, "<sip:b@example.com>");
    ASSERT_SLICE(sip_first(&s.m, SIP_HDR_CALL_ID)->value, "lws@192.0.2.10");
    ASSERT_SLICE(sip_first(&s.m, SIP_HDR_CSEQ)->name, "CSEQ");
    ASSERT_SLICE(s.m.headers[5].name, "X-Custom-Header");
    cr_assert_eq(s.m.headers[5].id, SIP_HDR_OTHER);
    ASSERT_SLICE(s.m.headers[6].name, "Empty-Header");
    cr_assert_eq(s.m.headers[6].value.len, 0);
    cr_assert_eq(s.m.content_length, 5);
    ASSERT_SLICE(s.m.body, "hello");
    free(b.p);
}

Test(sip_scan, accepts_status_codes_100_to_699_only)
{
    static const struct {
        const char *line;
        ssize_t err; /* 0: valid */
        int code;
        const char *reason;
    } rows[] = {
        {"SIP/2.0 100 Trying", 0, 100, "Trying"},
        {"SIP/2.0 699 Whatever It Is", 0, 699, "Whatever It Is"},
        {"sip/2.0 486 Busy Here", 0, 486, "Busy Here"},
        {"SIP/2.0 200 ", 0, 200, ""},
        {"SIP/2.0 200", 0, 200, ""},
        {"SIP/2.0 200 OK\tfine", 0, 200, "OK\tfine"},
        {"SIP/2.0 099 Low", SIP_E_BAD_STATUS, 0, NULL},
        {"SIP/2.0 700 High", SIP_E_BAD_STATUS, 0, NULL},
        {"SIP/2.0 20 Short", SIP_E_BAD_STATUS, 0, NULL},
        {"SIP/2.0 2000 Long", SIP_E_BAD_STATUS, 0, NULL},
        {"SIP/2.0 2x0 Hex", SIP_E_BAD_STATUS, 0, NULL},
        {"SIP/2.0", SIP_E_BAD_STATUS, 0, NULL},
        {"SIP/3.0 200 OK", SIP_E_BAD_VERSION, 0, NULL},
        {"SIP/2.00 200 OK", SIP_E_BAD_VERSION, 0, NULL},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "%s\r\nContent-Length: 0\r\n\r\n", rows[i].line);
        struct scan s;
        ssize_t rc = scan_str(&s, text);
        if (rows[i].err) {
            cr_assert_eq(rc, -rows[i].err, "%s: rc %zd", rows[i].line, rc);
            continue;
        }
        cr_assert_eq(rc, (ssize_t)strlen(text), "%s: rc %zd (%s)", rows[i].line, rc,
                     sip_err_reason(s.m.err));
        cr_assert_eq(s.m.status, rows[i].code);
        ASSERT_SLICE(s.m.reason, rows[i].reason);
    }
}

/* ---- framing on a stream ------------------------------------------------------------------ */

Test(sip_scan, frames_several_messages_in_one_buffer)
{
    const char *names[] = {"register_jabber", "invite_sdp", "response_200_register",
                           "compact_forms"};
    char *all = malloc(1 << 16);
    size_t len = 0, lens[4];
    for (int i = 0; i < 4; i++) {
        struct buf b = load("valid", names[i]);
        memcpy(all + len, b.p, b.len);
        len += b.len;
        lens[i] = b.len;
        free(b.p);
    }
    size_t at = 0;
    for (int i = 0; i < 4; i++) {
        struct scan s;
        init(&s);
        ssize_t n = sip_scan(all + at, len - at, 0, &s.m);
        cr_assert_eq(n, (ssize_t)lens[i], "message %d: %zd", i, n);
        at += (size_t)n;
    }
    cr_assert_eq(at, len);
    free(all);
}

Test(sip_scan, skips_nothing_but_reports_crlf_keepalives)
{
    cr_assert_eq(sip_keepalive_len("\r\n\r\nREGISTER", 12), 4);
    cr_assert_eq(sip_keepalive_len("\r\n\r", 3), 2);
    cr_assert_eq(sip_keepalive_len("\r", 1), 0);
    cr_assert_eq(sip_keepalive_len("INVITE", 6), 0);
    struct scan s;
    cr_assert_eq(scan_str(&s, "\r\nOPTIONS sip:x SIP/2.0\r\nl: 0\r\n\r\n"), -SIP_E_BAD_START_LINE);
}

/* Every prefix of a valid message is INCOMPLETE (from scratch and with the resume hint), and
 * two-piece and byte-at-a-time feeding end identical to a one-shot scan. */
static void check_every_split(const char *name)
{
    struct buf ref = load("valid", name);
    struct scan one;
    init(&one);
    struct buf once = dup_bytes(ref.p, ref.len);
    one.rc = sip_scan(once.p, once.len, 0, &one.m);
    cr_assert_eq(one.rc, (ssize_t)ref.len, "%s one-shot: %zd", name, one.rc);

    static struct scan s;
    for (size_t k = 0; k < ref.len; k++) {
        /* two pieces: k bytes, then all of it with the hint from the first call */
        struct buf b = dup_bytes(ref.p, ref.len);
        init(&s);
        s.rc = sip_scan(b.p, k, 0, &s.m);
        cr_assert_eq(s.rc, SIP_INCOMPLETE, "%s: prefix %zu gave %zd (%s at %zu)", name, k, s.rc,
                     sip_err_reason(s.m.err), s.m.err_pos);
        size_t hint = sip_scan_resume(&s.m, k);
        s.rc = sip_scan(b.p, ref.len, hint, &s.m);
        char what[128];
        snprintf(what, sizeof(what), "%s split at %zu", name, k);
        assert_same(&one, once.p, &s, b.p, what);
        cr_assert(memcmp(b.p, once.p, ref.len) == 0, "%s: same bytes after folds", what);
        free(b.p);
    }
    /* byte at a time, each call with the previous call's hint */
    struct buf b = dup_bytes(ref.p, ref.len);
    init(&s);
    size_t hint = 0;
    for (size_t k = 1; k <= ref.len; k++) {
        s.rc = sip_scan(b.p, k, hint, &s.m);
        if (k < ref.len) {
            cr_assert_eq(s.rc, SIP_INCOMPLETE, "%s: byte %zu gave %zd", name, k, s.rc);
            hint = sip_scan_resume(&s.m, k);
        }
    }
    assert_same(&one, once.p, &s, b.p, "byte at a time");
    free(b.p);
    free(once.p);
    free(ref.p);
}

Test(sip_scan, gives_identical_results_for_every_split_point)
{
    enum sip_scan_impl im[SIP_SCAN_IMPL_COUNT];
    int n = impls(im);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(sip_scan_set_impl(im[i]), 0);
        for (size_t f = 0; f < NVALID; f++)
            check_every_split(valid_files[f]);
    }
}

Test(sip_scan, waits_for_a_body_and_says_how_much_is_needed)
{
    struct buf b = load("valid", "invite_sdp");
    struct scan s;
    init(&s);
    cr_assert_eq(sip_scan(b.p, b.len, 0, &s.m), (ssize_t)b.len);
    size_t hl = s.m.header_len;
    init(&s);
    cr_assert_eq(sip_scan(b.p, hl + 10, 0, &s.m), SIP_INCOMPLETE);
    cr_assert_eq(s.m.header_len, hl);
    cr_assert_eq(s.m.header_len + s.m.content_length, b.len);
    cr_assert_eq(sip_scan_resume(&s.m, hl + 10), 0, "headers ended: rescan from the top");
    cr_assert_eq(sip_scan(b.p, b.len, 0, &s.m), (ssize_t)b.len);
    free(b.p);
}

/* ---- strictness: each error code ---------------------------------------------------------- */

#define REQ  "OPTIONS sip:edge.example.com SIP/2.0\r\n"
#define HDRS "Via: SIP/2.0/TLS 192.0.2.1;branch=z9hG4bK1\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n"

Test(sip_scan, rejects_malformed_input_with_a_named_reason)
{
    static const struct {
        const char *text;
        size_t len; /* 0: strlen */
        enum sip_err err;
        long pos; /* -1: do not check */
        const char *why;
    } rows[] = {
        {REQ HDRS "Call-ID: a\0b\r\nl: 0\r\n\r\n",
         sizeof(REQ HDRS "Call-ID: a\0b\r\nl: 0\r\n\r\n") - 1, SIP_E_BAD_CHAR, 38 + 74 + 10,
         "NUL in a value"},
        {REQ HDRS "Subject: a\x01\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_CHAR, -1, "SOH in a value"},
        {REQ HDRS "Subject: a\x7f\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_CHAR, -1, "DEL in a value"},
        {"OPTIONS sip:a\x00 SIP/2.0\r\nl: 0\r\n\r\n",
         sizeof("OPTIONS sip:a\x00 SIP/2.0\r\nl: 0\r\n\r\n") - 1, SIP_E_BAD_CHAR, 13,
         "NUL in the URI"},
        {REQ HDRS "Subject: \"a\x01\"\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_CHAR, -1,
         "SOH in quotes, unescaped"},
        {REQ HDRS "Subject: a\\\x01\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_CHAR, -1,
         "escaped SOH outside quotes"},
        {REQ HDRS "Subject: \"a\\\\\x01\"\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_CHAR, -1,
         "SOH after an escaped backslash"},
        {REQ HDRS "Subject: \"a\" \\\x01\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_CHAR, -1,
         "escaped SOH after the quote closed"},
        {REQ HDRS "Subject: \"a\\\nb\"\r\nl: 0\r\n\r\n", 0, SIP_E_BARE_LF, -1,
         "LF cannot be escaped"},
        {REQ HDRS "Subject: \"a\\\rb\"\r\nl: 0\r\n\r\n", 0, SIP_E_BARE_CR, -1,
         "CR cannot be escaped"},
        {REQ HDRS "Subject: a\rb\r\nl: 0\r\n\r\n", 0, SIP_E_BARE_CR, -1, "bare CR in a value"},
        {REQ HDRS "Subject: a\nl: 0\r\n\r\n", 0, SIP_E_BARE_LF, -1, "bare LF ends a line"},
        {"OPTIONS sip:a SIP/2.0\nl: 0\r\n\r\n", 0, SIP_E_BARE_LF, 21, "bare LF after start"},
        {REQ HDRS "l: 0\r\n\r\r\n", 0, SIP_E_BARE_CR, -1, "CR CR at the end"},
        {"\r\nOPTIONS sip:a SIP/2.0\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_START_LINE, 0, "empty line"},
        {"OPTIONS sip:a\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_START_LINE, -1, "no version"},
        {"OPT@ONS sip:a SIP/2.0\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_METHOD, 3, "@ in a method"},
        {" OPTIONS sip:a SIP/2.0\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_SPACING, 0, "leading space"},
        {"OPTIONS\tsip:a SIP/2.0\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_SPACING, 7, "HTAB separator"},
        {"OPTIONS sip:a  SIP/2.0\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_SPACING, 13,
         "two SP before version"},
        {"OPTIONS sip:a b SIP/2.0\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_URI, 8, "SP inside the URI"},
        {"OPTIONS sip:a SIP/2.0\t \r\nl: 0\r\n\r\n", 0, SIP_E_NONE, -1,
         "(valid: trailing HTAB SP tolerated)"},
        {"OPTIONS\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_METHOD, 7, "method alone"},
        {"OPTIONS  sip:a SIP/2.0\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_SPACING, 8, "two SP after method"},
        {"OPTIONS  SIP/2.0\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_URI, 8, "empty URI"},
        {"OPTIONS sip:a\tb SIP/2.0\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_URI, 8, "HTAB in URI"},
        {"OPTIONS sip:a SIP/2.1\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_VERSION, 14, "SIP/2.1"},
        {"OPTIONS sip:a HTTP/1.1\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_VERSION, 14, "HTTP"},
        {"OPTIONS sip:a SIP/2.0 \r\nl: 0\r\n\r\n", 0, SIP_E_NONE, -1, "(valid: trailing SP)"},
        {"SIP/2.0 600\r\nl: 0\r\n\r\n", 0, SIP_E_NONE, -1, "(valid: 600 without reason)"},
        {"SIP/2.0 900 X\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_STATUS, 8, "900"},
        {REQ "Call ID: x\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_HEADER_NAME, 43, "space in a name"},
        {REQ "Call(ID): x\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_HEADER_NAME, 42, "( in a name"},
        {REQ ": x\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_HEADER_NAME, 38, "empty name"},
        {REQ "Subject\r\nl: 0\r\n\r\n", 0, SIP_E_MISSING_COLON, 45, "no colon"},
        {REQ " folded: x\r\nl: 0\r\n\r\n", 0, SIP_E_BAD_FOLD, 38, "fold after start line"},
        {REQ HDRS "\r\n", 0, SIP_E_NO_CONTENT_LENGTH, -1, "no Content-Length"},
        {REQ HDRS "Content-Length: 1x\r\n\r\n", 0, SIP_E_BAD_CONTENT_LENGTH, -1, "1x"},
        {REQ HDRS "Content-Length: -1\r\n\r\n", 0, SIP_E_BAD_CONTENT_LENGTH, -1, "-1"},
        {REQ HDRS "Content-Length: 1 2\r\n\r\n", 0, SIP_E_BAD_CONTENT_LENGTH, -1, "1 2"},
        {REQ HDRS "Content-Length:\r\n\r\n", 0, SIP_E_BAD_CONTENT_LENGTH, -1, "empty"},
        {REQ HDRS "l: 0\r\nContent-Length: 0\r\n\r\n", 0, SIP_E_DUP_CONTENT_LENGTH, -1, "dup"},
        {REQ HDRS "l: 65537\r\n\r\n", 0, SIP_E_BODY_TOO_LARGE, -1, "above max_body"},
        {REQ HDRS "l: 184467440737095516160\r\n\r\n", 0, SIP_E_BODY_TOO_LARGE, -1, "overflow"},
        {REQ HDRS "l: 65500\r\n\r\n", 0, SIP_E_TOO_LARGE, -1, "headers + body > max_size"},
    };
    enum sip_scan_impl im[SIP_SCAN_IMPL_COUNT];
    int ni = impls(im);
    for (int k = 0; k < ni; k++) {
        cr_assert_eq(sip_scan_set_impl(im[k]), 0);
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
            size_t len = rows[i].len ? rows[i].len : strlen(rows[i].text);
            struct buf b = dup_bytes(rows[i].text, len);
            struct scan s;
            init(&s);
            ssize_t rc = sip_scan(b.p, len, 0, &s.m);
            if (rows[i].err == SIP_E_NONE) {
                cr_assert_eq(rc, (ssize_t)len, "%s: %zd", rows[i].why, rc);
            } else {
                cr_assert_eq(rc, -(ssize_t)rows[i].err, "%s (%s): got %zd %s", rows[i].why,
                             sip_scan_impl_name(im[k]), rc, sip_err_name(s.m.err));
                cr_assert_eq(s.m.err, rows[i].err);
                cr_assert_lt(s.m.err_pos, len, "%s: pos %zu", rows[i].why, s.m.err_pos);
                if (rows[i].pos >= 0)
                    cr_assert_eq(s.m.err_pos, (size_t)rows[i].pos, "%s: pos %zu", rows[i].why,
                                 s.m.err_pos);
            }
            free(b.p);
        }
    }
}

/* RFC 3261 §25.1: quoted-pair = "\\" (%x00-09 / %x0B-0C / %x0E-7F), inside a quoted string. */
Test(sip_scan, accepts_every_control_character_a_quoted_pair_may_escape)
{
    enum sip_scan_impl im[SIP_SCAN_IMPL_COUNT];
    int ni = impls(im);
    for (int k = 0; k < ni; k++) {
        cr_assert_eq(sip_scan_set_impl(im[k]), 0);
        for (unsigned c = 0; c <= 0x7f; c++) {
            if (c == '\n' || c == '\r')
                continue;
            char text[256];
            int n = snprintf(text, sizeof(text), "%s%sFrom: \"a\\", REQ, HDRS);
            text[n++] = (char)c;
            n += snprintf(text + n, sizeof(text) - (size_t)n,
                          "\\\\\" <sip:a@x>;tag=1\r\nl: 0\r\n\r\n");
            struct buf b = dup_bytes(text, (size_t)n);
            struct scan s;
            init(&s);
            ssize_t rc = sip_scan(b.p, (size_t)n, 0, &s.m);
            cr_assert_eq(rc, n, "%s: escaped 0x%02x: %zd %s", sip_scan_impl_name(im[k]), c, rc,
                         sip_err_name(s.m.err));
            const struct sip_header *f = sip_first(&s.m, SIP_HDR_FROM);
            cr_assert_not_null(f);
            cr_assert_eq(f->value.len, 23, "0x%02x: %zu", c, f->value.len);
            cr_assert_eq(f->value.base[3], (char)c);
            free(b.p);
        }
    }
}

Test(sip_scan, rejects_every_file_of_the_invalid_corpus)
{
    static const struct {
        const char *name;
        ssize_t rc;
    } rows[] = {
        {"bad_content_length", -SIP_E_BAD_CONTENT_LENGTH},
        {"bad_header_name", -SIP_E_BAD_HEADER_NAME},
        {"bad_method", -SIP_E_BAD_METHOD},
        {"bad_status", -SIP_E_BAD_STATUS},
        {"bad_uri", -SIP_E_BAD_URI},
        {"bad_request_line_spacing", -SIP_E_BAD_SPACING},
        {"bad_version", -SIP_E_BAD_VERSION},
        {"bare_cr", -SIP_E_BARE_CR},
        {"bare_lf", -SIP_E_BARE_LF},
        {"body_too_large", -SIP_E_BODY_TOO_LARGE},
        {"dup_content_length", -SIP_E_DUP_CONTENT_LENGTH},
        {"fold_after_start_line", -SIP_E_BAD_FOLD},
        {"headers_never_end", SIP_INCOMPLETE},
        {"line_too_long", -SIP_E_LINE_TOO_LONG},
        {"missing_colon", -SIP_E_MISSING_COLON},
        {"no_content_length", -SIP_E_NO_CONTENT_LENGTH},
        {"nul_in_header", -SIP_E_BAD_CHAR},
        {"start_line_no_version", -SIP_E_BAD_START_LINE},
        {"too_many_headers", -SIP_E_TOO_MANY_HEADERS},
        {"truncated_body", SIP_INCOMPLETE},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct buf b = load("invalid", rows[i].name);
        struct scan s;
        init(&s);
        ssize_t rc = sip_scan(b.p, b.len, 0, &s.m);
        cr_assert_eq(rc, rows[i].rc, "%s: %zd", rows[i].name, rc);
        free(b.p);
    }
}

Test(sip_scan, bounds_header_count_by_the_array_capacity)
{
    struct sip_header h[4];
    struct sip_msg m;
    const char *ok = REQ "a: 1\r\nb: 2\r\nc: 3\r\nl: 0\r\n\r\n";
    const char *over = REQ "a: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\nl: 0\r\n\r\n";
    struct buf b = dup_bytes(ok, strlen(ok));
    sip_msg_init(&m, h, 4);
    cr_assert_eq(sip_scan(b.p, b.len, 0, &m), (ssize_t)b.len);
    cr_assert_eq(m.header_count, 4);
    free(b.p);
    b = dup_bytes(over, strlen(over));
    cr_assert_eq(sip_scan(b.p, b.len, 0, &m), -SIP_E_TOO_MANY_HEADERS);
    cr_assert_eq(m.err_pos, strlen(REQ "a: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n"));
    free(b.p);
}

Test(sip_scan, bounds_line_length_after_unfolding)
{
    struct scan s;
    char text[512];
    /* max_line 40: "Subject: " + 31 x is exactly 40 bytes; one more is too long */
    for (int extra = 0; extra <= 1; extra++) {
        snprintf(text, sizeof(text), REQ "Subject: %.*s\r\nl: 0\r\n\r\n", 31 + extra,
                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        init(&s);
        s.m.limits.max_line = 40;
        struct buf b = dup_bytes(text, strlen(text));
        ssize_t rc = sip_scan(b.p, b.len, 0, &s.m);
        if (extra == 0)
            cr_assert_eq(rc, (ssize_t)b.len, "40 bytes fit: %zd", rc);
        else
            cr_assert_eq(rc, -SIP_E_LINE_TOO_LONG);
        free(b.p);
    }
    /* a folded line counts whole */
    snprintf(text, sizeof(text),
             REQ "Subject: xxxxxxxxxxxxxxx\r\n xxxxxxxxxxxxxxxxx\r\nl: 0\r\n\r\n");
    init(&s);
    s.m.limits.max_line = 40;
    struct buf b = dup_bytes(text, strlen(text));
    cr_assert_eq(sip_scan(b.p, b.len, 0, &s.m), -SIP_E_LINE_TOO_LONG);
    free(b.p);
    /* a long start line too */
    init(&s);
    s.m.limits.max_line = 20;
    b = dup_bytes(REQ "l: 0\r\n\r\n", strlen(REQ "l: 0\r\n\r\n"));
    cr_assert_eq(sip_scan(b.p, b.len, 0, &s.m), -SIP_E_LINE_TOO_LONG);
    cr_assert_eq(s.m.err_pos, 0);
    free(b.p);
}

Test(sip_scan, turns_incomplete_at_the_size_limit_into_an_error)
{
    struct buf b = load("valid", "register_jabber");
    struct scan s;
    init(&s);
    s.m.limits.max_size = 1000;
    cr_assert_eq(sip_scan(b.p, 999, 0, &s.m), SIP_INCOMPLETE);
    cr_assert_eq(sip_scan(b.p, 1000, 0, &s.m), -SIP_E_TOO_LARGE);
    cr_assert_eq(sip_scan(b.p, 1000, 999, &s.m), -SIP_E_TOO_LARGE, "on the hint path too");
    /* ... with the headers seen so far indexed, whatever pieces the bytes came in: the edge
     * answers 513 from them (Via, From, To, Call-ID, CSeq come first in this message) */
    for (size_t step = 1; step < 1000; step += 13) {
        size_t have = 0, hint = 0;
        ssize_t r = SIP_INCOMPLETE;
        while (r == SIP_INCOMPLETE) {
            have = have + step < 1000 ? have + step : 1000;
            init(&s);
            s.m.limits.max_size = 1000;
            r = sip_scan(b.p, have, hint, &s.m);
            if (r == SIP_INCOMPLETE)
                hint = sip_scan_resume(&s.m, have);
        }
        cr_assert_eq(r, -SIP_E_TOO_LARGE, "step %zu", step);
        cr_assert(s.m.is_request && sip_first(&s.m, SIP_HDR_VIA) && sip_first(&s.m, SIP_HDR_CSEQ),
                  "step %zu: the headers before the limit are not indexed", step);
    }
    cr_assert_eq(sip_scan(b.p, b.len, 0, &s.m), -SIP_E_TOO_LARGE, "complete but too long");
    s.m.limits.max_size = b.len;
    cr_assert_eq(sip_scan(b.p, b.len, 0, &s.m), (ssize_t)b.len, "exactly max_size fits");
    free(b.p);

    /* a body that would cross the limit is refused at once, not waited for */
    init(&s);
    s.m.limits.max_size = 200;
    b = dup_bytes(REQ HDRS "l: 150\r\n\r\n", strlen(REQ HDRS "l: 150\r\n\r\n"));
    cr_assert_eq(sip_scan(b.p, b.len, 0, &s.m), -SIP_E_TOO_LARGE);
    free(b.p);
}

Test(sip_scan, ignores_the_body_content)
{
    const char text[] = REQ HDRS "l: 4\r\n\r\n\0\r\n\x01";
    struct buf b = dup_bytes(text, sizeof(text) - 1);
    struct scan s;
    init(&s);
    cr_assert_eq(sip_scan(b.p, b.len, 0, &s.m), (ssize_t)b.len);
    cr_assert_eq(s.m.body.len, 4);
    free(b.p);
}

/* ---- implementations agree ---------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

Test(sip_scan, gives_byte_identical_results_on_scalar_and_simd_paths)
{
    enum sip_scan_impl im[SIP_SCAN_IMPL_COUNT];
    int n = impls(im);
    cr_assert_geq(n, 1);
    static const char spice[] = {'\r', '\n', '\0', '\t',       ' ', ',', '"',  '<',
                                 '>',  ':',  0x7f, (char)0x80, 'a', '0', '\\', 0x07};
    for (int round = 0; round < 3000; round++) {
        struct buf ref = load("valid", valid_files[round % NVALID]);
        int muts = (int)(rnd() % 4);
        for (int m = 0; m < muts; m++)
            ref.p[rnd() % ref.len] = spice[rnd() % sizeof(spice)];
        size_t len = round % 2 ? ref.len : rnd() % (ref.len + 1);
        static struct scan s[SIP_SCAN_IMPL_COUNT];
        char *bufs[SIP_SCAN_IMPL_COUNT];
        for (int i = 0; i < n; i++) {
            cr_assert_eq(sip_scan_set_impl(im[i]), 0);
            bufs[i] = dup_bytes(ref.p, ref.len).p;
            init(&s[i]);
            s[i].rc = sip_scan(bufs[i], len, 0, &s[i].m);
        }
        for (int i = 1; i < n; i++) {
            char what[64];
            snprintf(what, sizeof(what), "round %d, %s", round, sip_scan_impl_name(im[i]));
            assert_same(&s[0], bufs[0], &s[i], bufs[i], what);
            cr_assert(memcmp(bufs[0], bufs[i], ref.len) == 0, "%s: buffer writes", what);
        }
        for (int i = 0; i < n; i++)
            free(bufs[i]);
        free(ref.p);
    }
}

Test(sip_scan, stops_at_the_end_of_input_that_ends_at_a_guard_page)
{
    long page = sysconf(_SC_PAGESIZE);
    char *map =
        mmap(NULL, (size_t)page * 3, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(map != MAP_FAILED);
    cr_assert_eq(mprotect(map + page * 2, (size_t)page, PROT_NONE), 0);
    char *guard = map + page * 2;
    enum sip_scan_impl im[SIP_SCAN_IMPL_COUNT];
    int n = impls(im);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(sip_scan_set_impl(im[i]), 0);
        for (size_t f = 0; f < NVALID; f++) {
            struct buf ref = load("valid", valid_files[f]);
            cr_assert(ref.len <= (size_t)page * 2);
            struct scan one;
            init(&one);
            struct buf once = dup_bytes(ref.p, ref.len);
            cr_assert_eq(sip_scan(once.p, once.len, 0, &one.m), (ssize_t)ref.len);
            free(once.p);
            for (size_t k = 0; k <= ref.len; k++) {
                char *p = guard - k; /* the k-byte prefix ends at the guard page */
                memcpy(p, ref.p, k);
                struct scan s;
                init(&s);
                ssize_t rc = sip_scan(p, k, 0, &s.m);
                cr_assert_eq(rc, k == ref.len ? (ssize_t)k : SIP_INCOMPLETE, "%s prefix %zu",
                             valid_files[f], k);
                if (k > 8 && k - 7 < one.m.header_len) {
                    /* the restart hint path reads only up to the end too (the hint is valid
                     * only while the headers had not ended) */
                    init(&s);
                    cr_assert_eq(sip_scan(p, k, k - 7, &s.m),
                                 k == ref.len ? (ssize_t)k : SIP_INCOMPLETE);
                }
            }
            /* an invalid message ending at the guard page */
            char *p = guard - 5;
            memcpy(p, "OP\x01\r\n", 5);
            struct scan s;
            init(&s);
            cr_assert_eq(sip_scan(p, 5, 0, &s.m), -SIP_E_BAD_CHAR);
            /* a bad request line waits for its headers: the answer needs them */
            memcpy(p, "OPT\r\n", 5);
            init(&s);
            cr_assert_eq(sip_scan(p, 5, 0, &s.m), SIP_INCOMPLETE);
            free(ref.p);
        }
    }
    munmap(map, (size_t)page * 3);
}

/* ---- names and tables --------------------------------------------------------------------- */

Test(sip_scan, looks_up_every_header_name_in_any_case)
{
    for (int id = 1; id < SIP_HDR_COUNT; id++) {
        const char *name = sip_hdr_name((enum sip_hdr)id);
        size_t len = strlen(name);
        cr_assert_gt(len, 1, "id %d has a name", id);
        char up[64], low[64];
        for (size_t i = 0; i <= len; i++) {
            up[i] = (char)(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
            low[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
        }
        cr_assert_eq((int)sip_hdr_from(slice_make(name, len)), id, "%s", name);
        cr_assert_eq((int)sip_hdr_from(slice_make(up, len)), id, "%s", up);
        cr_assert_eq((int)sip_hdr_from(slice_make(low, len)), id, "%s", low);
        if (len > 2) /* "T" of "To" is the compact form of To */
            cr_assert_eq(sip_hdr_from(slice_make(name, len - 1)), SIP_HDR_OTHER, "%.*s",
                         (int)len - 1, name);
    }
    static const struct {
        char c;
        enum sip_hdr id;
    } compact[] = {
        {'v', SIP_HDR_VIA},
        {'f', SIP_HDR_FROM},
        {'t', SIP_HDR_TO},
        {'i', SIP_HDR_CALL_ID},
        {'m', SIP_HDR_CONTACT},
        {'l', SIP_HDR_CONTENT_LENGTH},
        {'c', SIP_HDR_CONTENT_TYPE},
        {'k', SIP_HDR_SUPPORTED},
        {'s', SIP_HDR_SUBJECT},
        {'e', SIP_HDR_CONTENT_ENCODING},
        {'o', SIP_HDR_EVENT},
        {'u', SIP_HDR_ALLOW_EVENTS},
        {'r', SIP_HDR_REFER_TO},
        {'b', SIP_HDR_REFERRED_BY},
        {'x', SIP_HDR_SESSION_EXPIRES},
        {'y', SIP_HDR_IDENTITY},
        {'a', SIP_HDR_ACCEPT_CONTACT},
        {'j', SIP_HDR_REJECT_CONTACT},
        {'d', SIP_HDR_REQUEST_DISPOSITION},
        {'n', SIP_HDR_IDENTITY_INFO},
    };
    for (size_t i = 0; i < sizeof(compact) / sizeof(compact[0]); i++) {
        char up = (char)(compact[i].c - 32);
        cr_assert_eq(sip_hdr_from(slice_make(&compact[i].c, 1)), compact[i].id, "%c", compact[i].c);
        cr_assert_eq(sip_hdr_from(slice_make(&up, 1)), compact[i].id, "%c", up);
    }
    const char *unknown[] = {
        "g",       "z",        "1",         "-",        "Vias",           "X-Via",
        "Call_ID", "Contact-", "Reply-To-", "Refer_To", "Content-Lengtx", "Viа"};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
        cr_assert_eq(sip_hdr_from(slice_make(unknown[i], strlen(unknown[i]))), SIP_HDR_OTHER, "%s",
                     unknown[i]);
    cr_assert_eq(sip_hdr_from(SLICE_NULL), SIP_HDR_OTHER);
    cr_assert_str_eq(sip_hdr_name(SIP_HDR_OTHER), "");
    cr_assert_str_eq(sip_hdr_name(SIP_HDR_COUNT), "");
    cr_assert_eq(sip_hdr_from(SLICE_LIT("Reply-To")), SIP_HDR_REPLY_TO);
    cr_assert_eq(sip_hdr_from(SLICE_LIT("Refer-To")), SIP_HDR_REFER_TO);
    cr_assert_eq(sip_hdr_from(SLICE_LIT("WWW-AUTHENTICATE")), SIP_HDR_WWW_AUTHENTICATE);
}

Test(sip_scan, names_methods_case_sensitively)
{
    for (int m = 1; m < SIP_METHOD_COUNT; m++) {
        const char *name = sip_method_name((enum sip_method)m);
        cr_assert_eq((int)sip_method_from(slice_make(name, strlen(name))), m, "%s", name);
    }
    cr_assert_eq(sip_method_from(SLICE_LIT("invite")), SIP_METHOD_UNKNOWN);
    cr_assert_eq(sip_method_from(SLICE_LIT("INVITES")), SIP_METHOD_UNKNOWN);
    cr_assert_eq(sip_method_from(SLICE_LIT("IN")), SIP_METHOD_UNKNOWN);
    cr_assert_eq(sip_method_from(SLICE_LIT("RESISTER")), SIP_METHOD_UNKNOWN);
    cr_assert_str_eq(sip_method_name(SIP_METHOD_UNKNOWN), "");
    cr_assert_str_eq(sip_method_name(SIP_METHOD_COUNT), "");
}

Test(sip_scan, names_every_error_with_a_distinct_reason)
{
    cr_assert_str_eq(sip_err_name(SIP_E_TOO_LARGE), "too_large");
    cr_assert_str_eq(sip_err_name(SIP_E_TOO_MANY_HEADERS), "too_many_headers");
    cr_assert_str_eq(sip_err_reason(SIP_E_BAD_HEADER_NAME), "Bad Header Name");
    cr_assert_str_eq(sip_err_reason(SIP_E_COUNT), "Unknown Error");
    for (int i = 0; i < SIP_E_COUNT; i++) {
        cr_assert_gt(strlen(sip_err_name((enum sip_err)i)), 1);
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(sip_err_reason((enum sip_err)i), sip_err_reason((enum sip_err)j));
    }
    cr_assert_eq(-SIP_E_INCOMPLETE_, SIP_INCOMPLETE, "-1 is never an error code");
}

Test(sip_scan, lets_tests_force_the_scalar_path)
{
    cr_assert_eq(sip_scan_set_impl(SIP_SCAN_SCALAR), 0);
    cr_assert_eq(sip_scan_get_impl(), SIP_SCAN_SCALAR);
    cr_assert_eq(sip_scan_set_impl(SIP_SCAN_IMPL_COUNT), -EINVAL);
    cr_assert_eq(sip_scan_get_impl(), SIP_SCAN_SCALAR);
    cr_assert_eq(sip_scan_set_impl(SIP_SCAN_AUTO), 0);
    cr_assert_neq(sip_scan_get_impl(), SIP_SCAN_AUTO);
    cr_assert_str_eq(sip_scan_impl_name(SIP_SCAN_AVX2), "avx2");
}

/* Issue 10: a bad Request-Line is reported once the message is framed, whole or byte by byte,
 * with the headers indexed so that the edge can answer it. */
Test(sip_scan, reports_a_bad_request_line_once_framed_with_the_headers_indexed)
{
    static const char text[] = "OPTIONS sip:edge SIP/3.0\r\n" HDRS "From: <sip:a@x>;tag=1\r\n"
                               "To: <sip:edge>\r\nl: 4\r\n\r\nbody";
    const size_t len = sizeof(text) - 1;
    enum sip_scan_impl im[SIP_SCAN_IMPL_COUNT];
    int ni = impls(im);
    for (int k = 0; k < ni; k++) {
        cr_assert_eq(sip_scan_set_impl(im[k]), 0);
        struct buf b = dup_bytes(text, len);
        struct scan s;
        size_t hint = 0;
        for (size_t n = 1; n < len; n++) {
            init(&s);
            ssize_t rc = sip_scan(b.p, n, hint, &s.m);
            cr_assert_eq(rc, SIP_INCOMPLETE, "%s: prefix %zu: %zd (%s)", sip_scan_impl_name(im[k]),
                         n, rc, sip_err_name(s.m.err));
            hint = sip_scan_resume(&s.m, n);
        }
        init(&s);
        cr_assert_eq(sip_scan(b.p, len, hint, &s.m), -SIP_E_BAD_VERSION);
        cr_assert_eq(s.m.err_pos, 17);
        cr_assert(s.m.is_request);
        cr_assert_eq(s.m.method, SIP_METHOD_OPTIONS);
        cr_assert(slice_is(s.m.version, "SIP/3.0"));
        cr_assert_eq(s.m.header_len, len - 4);
        cr_assert(slice_is(s.m.body, "body"));
        cr_assert_not_null(sip_first(&s.m, SIP_HDR_CALL_ID));
        cr_assert_not_null(sip_first(&s.m, SIP_HDR_TO));
        free(b.p);
    }
}
