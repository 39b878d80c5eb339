// SPDX-License-Identifier: MIT
// Tests for core/sip_build.c: responses, request rewrites and Via pops compared byte for byte
// against the expected text, on messages indexed by sip_scan().
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/sip_build.h"

#define MAX_HDRS 32

struct scanned {
    char buf[4096];
    struct sip_header hdrs[MAX_HDRS];
    struct sip_msg msg;
};

/* Index `text` with the real scanner (a fresh copy in s->buf); it must be one whole message. */
static void scan(struct scanned *s, const char *text)
{
    size_t n = strlen(text);
    cr_assert_lt(n, sizeof(s->buf));
    memcpy(s->buf, text, n);
    sip_msg_init(&s->msg, s->hdrs, MAX_HDRS);
    ssize_t r = sip_scan(s->buf, n, 0, &s->msg);
    cr_assert_eq(r, (ssize_t)n, "sip_scan returned %zd (%s)", r,
                 r < -1 ? sip_err_name((enum sip_err) - r) : "incomplete");
}

/* The gather list `iov[0..n)` joined into a NUL-terminated string. */
static const char *join(const struct slice *iov, ssize_t n, char *out, size_t cap)
{
    size_t len = 0;
    cr_assert_gt(n, 0);
    for (ssize_t i = 0; i < n; i++) {
        cr_assert_lt(len + iov[i].len, cap);
        memcpy(out + len, iov[i].base, iov[i].len);
        len += iov[i].len;
    }
    out[len] = '\0';
    cr_assert_eq(sip_iov_len(iov, (size_t)n), len);
    return out;
}

static bool inside(struct slice s, const char *b, size_t n)
{
    return s.base >= b && s.base + s.len <= b + n;
}

/* ---- responses ---------------------------------------------------------------------------- */

static const char register_req[] =
    "REGISTER sip:ucm.example.com SIP/2.0\r\n"
    "v: SIP/2.0/TLS 10.0.0.7:50312;branch=z9hG4bK-1;rport\r\n"
    "Via: SIP/2.0/TLS [2001:db8::7]:5061;branch=z9hG4bK-2, SIP/2.0/UDP "
    "a.example;branch=z9hG4bK-3\r\n"
    "Max-Forwards: 70\r\n"
    "f: \"John \\\"JD\\\" Doe\" <sip:8001@ucm.example.com>;tag=abc\r\n"
    "To: <sip:8001@ucm.example.com>\r\n"
    "i: 0d6f2b3c-1e9a@10.0.0.7\r\n"
    "CSeq: 101 REGISTER\r\n"
    "Contact: <sip:8001@10.0.0.7:50312;transport=tls>;+sip.instance=\"<urn:uuid:1>\"\r\n"
    "Proxy-Authorization: Bearer token=\"eyJ.eyJ.sig\"\r\n"
    "Expires: 3600\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

Test(sip_build, builds_407_with_all_vias_and_added_to_tag)
{
    static struct scanned s;
    char out[1024];
    const struct slice extra[] = {SLICE_LIT("Proxy-Authenticate: Bearer realm=\"ccmsipline\""),
                                  SLICE_LIT("Server: sipedge/0.1")};
    const char *want = "SIP/2.0 407 Proxy Authentication Required\r\n"
                       "Via: SIP/2.0/TLS 10.0.0.7:50312;branch=z9hG4bK-1;rport\r\n"
                       "Via: SIP/2.0/TLS [2001:db8::7]:5061;branch=z9hG4bK-2, SIP/2.0/UDP "
                       "a.example;branch=z9hG4bK-3\r\n"
                       "From: \"John \\\"JD\\\" Doe\" <sip:8001@ucm.example.com>;tag=abc\r\n"
                       "To: <sip:8001@ucm.example.com>;tag=edge1\r\n"
                       "Call-ID: 0d6f2b3c-1e9a@10.0.0.7\r\n"
                       "CSeq: 101 REGISTER\r\n"
                       "Proxy-Authenticate: Bearer realm=\"ccmsipline\"\r\n"
                       "Server: sipedge/0.1\r\n"
                       "Content-Length: 0\r\n"
                       "\r\n";

    scan(&s, register_req);
    ssize_t n = sip_build_response(&s.msg, 407, SLICE_LIT("Proxy Authentication Required"),
                                   SLICE_LIT("edge1"), extra, 2, out, sizeof(out));
    cr_assert_eq(n, (ssize_t)strlen(want), "length %zd, want %zu", n, strlen(want));
    cr_expect_eq(memcmp(out, want, (size_t)n), 0, "got:\n%.*s", (int)n, out);
}

Test(sip_build, keeps_an_existing_to_tag_and_reports_enospc_below_the_exact_size)
{
    static struct scanned s;
    char out[512];
    const struct slice extra[] = {SLICE_LIT("Retry-After: 5")};
    const char *want = "SIP/2.0 503 Service Unavailable\r\n"
                       "Via: SIP/2.0/TLS h;branch=z9hG4bK-9\r\n"
                       "From: <sip:a@h>;tag=1\r\n"
                       "To: Bob <sip:b@h>;tag=already\r\n"
                       "Call-ID: x\r\n"
                       "CSeq: 2 INVITE\r\n"
                       "Retry-After: 5\r\n"
                       "Content-Length: 0\r\n"
                       "\r\n";

    scan(&s, "INVITE sip:b@h SIP/2.0\r\n"
             "Via: SIP/2.0/TLS h;branch=z9hG4bK-9\r\n"
             "From: <sip:a@h>;tag=1\r\n"
             "To: Bob <sip:b@h>;tag=already\r\n"
             "Call-ID: x\r\n"
             "CSeq: 2 INVITE\r\n"
             "Content-Length: 4\r\n"
             "\r\n"
             "v=0\n");
    size_t len = strlen(want);
    for (size_t cap = 0; cap < len; cap++)
        cr_assert_eq(sip_build_response(&s.msg, 503, SLICE_LIT("Service Unavailable"),
                                        SLICE_LIT("t"), extra, 1, out, cap),
                     -ENOSPC, "cap %zu", cap);
    ssize_t n = sip_build_response(&s.msg, 503, SLICE_LIT("Service Unavailable"), SLICE_LIT("t"),
                                   extra, 1, out, len);
    cr_assert_eq(n, (ssize_t)len);
    cr_expect_eq(memcmp(out, want, len), 0, "got:\n%.*s", (int)n, out);
}

Test(sip_build, refuses_injection_bad_status_and_responses)
{
    static struct scanned s;
    char out[512];
    const struct slice bad[] = {SLICE_LIT("X: a\r\nY: b")};

    scan(&s, register_req);
    cr_expect_eq(sip_build_response(&s.msg, 200, SLICE_LIT("OK"), SLICE_NULL, bad, 1, out, 512),
                 -EINVAL);
    cr_expect_eq(sip_build_response(&s.msg, 200, SLICE_LIT("O\nK"), SLICE_NULL, NULL, 0, out, 512),
                 -EINVAL);
    cr_expect_eq(sip_build_response(&s.msg, 99, SLICE_LIT("x"), SLICE_NULL, NULL, 0, out, 512),
                 -EINVAL);
    cr_expect_eq(sip_build_response(&s.msg, 700, SLICE_LIT("x"), SLICE_NULL, NULL, 0, out, 512),
                 -EINVAL);
    scan(&s, "SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS h\r\nContent-Length: 0\r\n\r\n");
    cr_expect_eq(sip_build_response(&s.msg, 200, SLICE_LIT("OK"), SLICE_NULL, NULL, 0, out, 512),
                 -EINVAL);
}

/* ---- request rewrite ---------------------------------------------------------------------- */

Test(sip_build, rewrites_register_as_a_zero_copy_gather_list)
{
    static struct scanned s;
    struct slice iov[16];
    char scratch[256], out[2048];
    const uint16_t drop[] = {SIP_HDR_PROXY_AUTHORIZATION};
    const struct sip_rewrite rw = {
        .via = SLICE_LIT("SIP/2.0/TLS edge.example.com:5061;branch=z9hG4bKedge1"),
        .path = SLICE_LIT("<sip:edge.example.com;lr>"),
        .max_forwards = true,
        .drop = drop,
        .n_drop = 1,
    };
    const char *want =
        "REGISTER sip:ucm.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/TLS edge.example.com:5061;branch=z9hG4bKedge1\r\n"
        "v: SIP/2.0/TLS 10.0.0.7:50312;branch=z9hG4bK-1;rport\r\n"
        "Via: SIP/2.0/TLS [2001:db8::7]:5061;branch=z9hG4bK-2, SIP/2.0/UDP "
        "a.example;branch=z9hG4bK-3\r\n"
        "Max-Forwards: 69\r\n"
        "f: \"John \\\"JD\\\" Doe\" <sip:8001@ucm.example.com>;tag=abc\r\n"
        "To: <sip:8001@ucm.example.com>\r\n"
        "i: 0d6f2b3c-1e9a@10.0.0.7\r\n"
        "CSeq: 101 REGISTER\r\n"
        "Contact: <sip:8001@10.0.0.7:50312;transport=tls>;+sip.instance=\"<urn:uuid:1>\"\r\n"
        "Expires: 3600\r\n"
        "Content-Length: 0\r\n"
        "Path: <sip:edge.example.com;lr>\r\n"
        "\r\n";

    scan(&s, register_req);
    ssize_t n = sip_rewrite_request(&s.msg, &rw, iov, 16, scratch, sizeof(scratch));
    cr_assert_gt(n, 0, "returned %zd", n);
    cr_expect_str_eq(join(iov, n, out, sizeof(out)), want);
    /* start line | new Via | 2 Vias | new MF | From..Contact | Expires, CL | Path | empty line */
    cr_expect_eq(n, 8, "adjacent original lines share a slice (%zd slices)", n);
    for (ssize_t i = 0; i < n; i++)
        cr_expect(inside(iov[i], s.buf, sizeof(s.buf)) || inside(iov[i], scratch, sizeof(scratch)),
                  "slice %zd borrows the message or the scratch", i);
    cr_expect_eq(iov[0].base, s.buf, "the start line is not copied");

    for (size_t cap = 0; cap < (size_t)n; cap++)
        cr_expect_eq(sip_rewrite_request(&s.msg, &rw, iov, cap, scratch, sizeof(scratch)), -ENOSPC,
                     "iov cap %zu", cap);
    cr_expect_eq(sip_rewrite_request(&s.msg, &rw, iov, 16, scratch, 40), -ENOSPC);
}

Test(sip_build, adds_max_forwards_inserts_path_first_and_keeps_the_body)
{
    static struct scanned s;
    struct slice iov[16];
    char scratch[256], out[2048];
    const struct sip_rewrite rw = {
        .via = SLICE_LIT("SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKx"),
        .path = SLICE_LIT("<sip:e;lr>"),
        .max_forwards = true,
    };
    const char *want = "INVITE sip:b@h SIP/2.0\r\n"
                       "Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKx\r\n"
                       "Max-Forwards: 69\r\n"
                       "Via: SIP/2.0/TLS h;branch=z9hG4bK-9\r\n"
                       "Path: <sip:e;lr>\r\n"
                       "Path: <sip:p1;lr>\r\n"
                       "Content-Type: application/sdp\r\n"
                       "Content-Length: 14\r\n"
                       "\r\n"
                       "v=0\r\no=- 1 1\r\n";

    scan(&s, "INVITE sip:b@h SIP/2.0\r\n"
             "Via: SIP/2.0/TLS h;branch=z9hG4bK-9\r\n"
             "Path: <sip:p1;lr>\r\n"
             "Content-Type: application/sdp\r\n"
             "Content-Length: 14\r\n"
             "\r\n"
             "v=0\r\no=- 1 1\r\n");
    ssize_t n = sip_rewrite_request(&s.msg, &rw, iov, 16, scratch, sizeof(scratch));
    cr_assert_gt(n, 0, "returned %zd", n);
    cr_expect_str_eq(join(iov, n, out, sizeof(out)), want);
}

Test(sip_build, drops_repeated_max_forwards_and_leaves_other_bytes_alone)
{
    static struct scanned s;
    struct slice iov[16];
    char scratch[64], out[1024];
    const struct sip_rewrite rw = {.max_forwards = true};
    const char *text = "OPTIONS sip:h SIP/2.0\r\n"
                       "Via: SIP/2.0/TLS h;branch=z9hG4bK-9\r\n"
                       "Max-Forwards: 1\r\n"
                       "X-Odd:   spaced  \r\n"
                       "Max-Forwards: 9\r\n"
                       "Content-Length: 0\r\n"
                       "\r\n";
    const char *want = "OPTIONS sip:h SIP/2.0\r\n"
                       "Via: SIP/2.0/TLS h;branch=z9hG4bK-9\r\n"
                       "Max-Forwards: 0\r\n"
                       "X-Odd:   spaced  \r\n"
                       "Content-Length: 0\r\n"
                       "\r\n";

    scan(&s, text);
    ssize_t n = sip_rewrite_request(&s.msg, &rw, iov, 16, scratch, sizeof(scratch));
    cr_assert_gt(n, 0, "returned %zd", n);
    cr_expect_str_eq(join(iov, n, out, sizeof(out)), want);

    const struct sip_rewrite none = {0};
    n = sip_rewrite_request(&s.msg, &none, iov, 16, scratch, sizeof(scratch));
    cr_assert_eq(n, 1, "an empty rewrite is the message itself");
    cr_expect_str_eq(join(iov, n, out, sizeof(out)), text);
}

Test(sip_build, refuses_exhausted_or_broken_max_forwards)
{
    static struct scanned s;
    struct slice iov[16];
    char scratch[64];
    const struct sip_rewrite rw = {.max_forwards = true};
    const struct sip_rewrite inject = {.via = SLICE_LIT("SIP/2.0/TLS h\r\nX: y")};

    scan(&s, "OPTIONS sip:h SIP/2.0\r\nMax-Forwards: 0\r\nContent-Length: 0\r\n\r\n");
    cr_expect_eq(sip_rewrite_request(&s.msg, &rw, iov, 16, scratch, 64), -ELOOP);
    scan(&s, "OPTIONS sip:h SIP/2.0\r\nMax-Forwards: 256\r\nContent-Length: 0\r\n\r\n");
    cr_expect_eq(sip_rewrite_request(&s.msg, &rw, iov, 16, scratch, 64), -EBADMSG);
    cr_expect_eq(sip_rewrite_request(&s.msg, &inject, iov, 16, scratch, 64), -EINVAL);
}

/* ---- Via pop ------------------------------------------------------------------------------ */

Test(sip_build, pops_a_whole_via_line)
{
    static struct scanned s;
    struct slice iov[2], popped;
    char out[1024];

    scan(&s, "SIP/2.0 200 OK\r\n"
             "Via: SIP/2.0/TLS edge;branch=z9hG4bKedge1\r\n"
             "v: SIP/2.0/TLS 10.0.0.7:50312;branch=z9hG4bK-1\r\n"
             "CSeq: 101 REGISTER\r\n"
             "Content-Length: 2\r\n"
             "\r\n"
             "ok");
    ssize_t n = sip_pop_via(&s.msg, iov, 2, &popped);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(join(iov, n, out, sizeof(out)),
                     "SIP/2.0 200 OK\r\n"
                     "v: SIP/2.0/TLS 10.0.0.7:50312;branch=z9hG4bK-1\r\n"
                     "CSeq: 101 REGISTER\r\n"
                     "Content-Length: 2\r\n"
                     "\r\n"
                     "ok");
    cr_expect(slice_eq(popped, SLICE_LIT("SIP/2.0/TLS edge;branch=z9hG4bKedge1")));
    cr_expect_eq(sip_pop_via(&s.msg, iov, 1, NULL), -ENOSPC);
}

Test(sip_build, pops_only_the_first_value_of_a_comma_line)
{
    static struct scanned s;
    struct slice iov[2], popped;
    char out[1024];

    scan(&s,
         "SIP/2.0 407 Proxy Authentication Required\r\n"
         "Via: SIP/2.0/TLS edge;x=\"a,b\";branch=z9hG4bKedge1 ,  SIP/2.0/TLS c;branch=z9hG4bK-1\r\n"
         "Content-Length: 0\r\n"
         "\r\n");
    ssize_t n = sip_pop_via(&s.msg, iov, 2, &popped);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(join(iov, n, out, sizeof(out)), "SIP/2.0 407 Proxy Authentication Required\r\n"
                                                     "Via: SIP/2.0/TLS c;branch=z9hG4bK-1\r\n"
                                                     "Content-Length: 0\r\n"
                                                     "\r\n");
    cr_expect(slice_eq(popped, SLICE_LIT("SIP/2.0/TLS edge;x=\"a,b\";branch=z9hG4bKedge1")),
              "a comma inside quotes does not end the value");
}

Test(sip_build, reports_a_response_without_via)
{
    static struct scanned s;
    struct slice iov[2];

    scan(&s, "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    cr_expect_eq(sip_pop_via(&s.msg, iov, 2, NULL), -ENOENT);
}

Test(sip_build, handles_folded_via_lines)
{
    static struct scanned s;
    struct slice iov[16], popped;
    char out[1024], scratch[128];

    scan(&s, "SIP/2.0 200 OK\r\n"
             "Via: SIP/2.0/TLS edge;branch=z9hG4bKe,\r\n"
             "  SIP/2.0/TLS c;branch=z9hG4bK-1\r\n"
             "Content-Length: 0\r\n"
             "\r\n");
    ssize_t n = sip_pop_via(&s.msg, iov, 2, &popped);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(join(iov, n, out, sizeof(out)), "SIP/2.0 200 OK\r\n"
                                                     "Via: SIP/2.0/TLS c;branch=z9hG4bK-1\r\n"
                                                     "Content-Length: 0\r\n"
                                                     "\r\n");
    cr_expect(slice_eq(popped, SLICE_LIT("SIP/2.0/TLS edge;branch=z9hG4bKe")));

    scan(&s, "BYE sip:b@h SIP/2.0\r\n"
             "Via: SIP/2.0/TLS c;branch=z9hG4bK-1\r\n"
             "Subject: a\r\n"
             "\tb\r\n"
             "Content-Length: 0\r\n"
             "\r\n");
    const struct sip_rewrite rw = {.via = SLICE_LIT("SIP/2.0/TLS e;branch=z9hG4bKe")};
    n = sip_rewrite_request(&s.msg, &rw, iov, 16, scratch, sizeof(scratch));
    cr_assert_gt(n, 0);
    cr_expect_str_eq(join(iov, n, out, sizeof(out)),
                     "BYE sip:b@h SIP/2.0\r\n"
                     "Via: SIP/2.0/TLS e;branch=z9hG4bKe\r\n"
                     "Via: SIP/2.0/TLS c;branch=z9hG4bK-1\r\n"
                     "Subject: a  \tb\r\n"
                     "Content-Length: 0\r\n"
                     "\r\n",
                     "the fold stays one line, its CRLF turned into spaces by the scanner");
}
