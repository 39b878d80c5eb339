// SPDX-License-Identifier: MIT
// Unit tests of the request checks (core/sip_check.c): header cardinality first (issue 10).
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/sip.h"
#include "core/sip_check.h"

static char buf[8192];
static struct sip_header hdrs[64];

/* Scans `text` (LF line ends become CRLF) into `msg`; asserts it frames. */
static void scan(const char *text, struct sip_msg *msg)
{
    size_t n = 0;
    for (const char *s = text; *s; s++) {
        if (*s == '\n')
            buf[n++] = '\r';
        buf[n++] = *s;
    }
    sip_msg_init(msg, hdrs, 64);
    ssize_t r = sip_scan(buf, n, 0, msg);
    cr_assert_eq(r, (ssize_t)n, "scan: %zd (%s)", r, sip_err_name(msg->err));
}

#define BASE_VIA  "Via: SIP/2.0/TLS 192.0.2.1;branch=z9hG4bK1\n"
#define BASE_FROM "From: <sip:alice@x>;tag=1\n"
#define BASE_TO   "To: <sip:alice@x>\n"
#define BASE_CID  "Call-ID: c1\n"
#define BASE_CSEQ "CSeq: 1 REGISTER\n"

/* One REGISTER with the base headers plus `extra` lines (before Content-Length). */
static enum sip_hdr single_of(const char *extra)
{
    static char text[4096];
    snprintf(text, sizeof(text),
             "REGISTER sip:x SIP/2.0\n" BASE_VIA BASE_FROM BASE_TO BASE_CID BASE_CSEQ
             "%sContent-Length: 0\n\n",
             extra);
    struct sip_msg msg;
    scan(text, &msg);
    return sip_check_single(&msg);
}

Test(sip_check, finds_a_second_line_of_every_single_identity_header)
{
    static const struct {
        const char *extra;
        enum sip_hdr want;
    } rows[] = {
        {"To: <sip:mallory@x>\n", SIP_HDR_TO},
        {"t: <sip:mallory@x>\n", SIP_HDR_TO}, /* compact form counts as the same header */
        {"From: <sip:mallory@x>;tag=2\n", SIP_HDR_FROM},
        {"f: <sip:mallory@x>;tag=2\n", SIP_HDR_FROM},
        {"Call-ID: c2\n", SIP_HDR_CALL_ID},
        {"i: c2\n", SIP_HDR_CALL_ID},
        {"CSeq: 2 REGISTER\n", SIP_HDR_CSEQ},
        {"Max-Forwards: 70\nMax-Forwards: 70\n", SIP_HDR_MAX_FORWARDS},
        {"Expires: 60\nExpires: 3600\n", SIP_HDR_EXPIRES},
        {"Content-Type: a/b\nc: a/b\n", SIP_HDR_CONTENT_TYPE},
        {"Min-Expires: 1\nMin-Expires: 2\n", SIP_HDR_MIN_EXPIRES},
        {"Date: Sat, 13 Nov 2010 23:29:00 GMT\nDate: Sat, 13 Nov 2010 23:29:00 GMT\n",
         SIP_HDR_DATE},
        {"User-Agent: a\nUser-Agent: b\n", SIP_HDR_USER_AGENT},
        {"Event: reg\no: reg\n", SIP_HDR_EVENT},
        {"Refer-To: <sip:a@x>\nr: <sip:b@x>\n", SIP_HDR_REFER_TO},
        {"Session-Expires: 90\nSession-Expires: 90\n", SIP_HDR_SESSION_EXPIRES},
        {"RAck: 1 1 INVITE\nRAck: 2 1 INVITE\n", SIP_HDR_RACK},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        enum sip_hdr got = single_of(rows[i].extra);
        cr_assert_eq(got, rows[i].want, "row %zu (%s): got %s", i, rows[i].extra,
                     sip_hdr_name(got));
    }
}

Test(sip_check, finds_a_second_value_on_one_line_of_a_one_value_header)
{
    static const struct {
        const char *text;
        enum sip_hdr want;
    } rows[] = {
        {"REGISTER sip:x SIP/2.0\n" BASE_VIA BASE_FROM
         "To: <sip:alice@x>, <sip:mallory@x>\n" BASE_CID BASE_CSEQ "Content-Length: 0\n\n",
         SIP_HDR_TO},
        {"REGISTER sip:x SIP/2.0\n" BASE_VIA BASE_FROM BASE_TO BASE_CID
         "CSeq: 1 REGISTER, 2 REGISTER\nContent-Length: 0\n\n",
         SIP_HDR_CSEQ},
        {"REGISTER sip:x SIP/2.0\n" BASE_VIA BASE_FROM BASE_TO BASE_CID BASE_CSEQ
         "Expires: 60, 3600\nContent-Length: 0\n\n",
         SIP_HDR_EXPIRES},
        /* an unterminated quote cannot hide the comma */
        {"REGISTER sip:x SIP/2.0\n" BASE_VIA BASE_FROM
         "To: \"a <sip:alice@x>, <sip:m@x>\n" BASE_CID BASE_CSEQ "Content-Length: 0\n\n",
         SIP_HDR_TO},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct sip_msg msg;
        scan(rows[i].text, &msg);
        enum sip_hdr got = sip_check_single(&msg);
        cr_assert_eq(got, rows[i].want, "row %zu: got %s", i, sip_hdr_name(got));
    }
}

Test(sip_check, lets_list_headers_and_credentials_repeat)
{
    static const char *const rows[] = {
        "Via: SIP/2.0/TLS 192.0.2.2;branch=z9hG4bK2\nv: SIP/2.0/TLS 192.0.2.3;branch=z9hG4bK3\n",
        "Contact: <sip:a@192.0.2.1>\nContact: <sip:a@192.0.2.2>, <sip:a@192.0.2.3>\n",
        "Route: <sip:r1;lr>\nRoute: <sip:r2;lr>\n",
        "Record-Route: <sip:r1;lr>\nRecord-Route: <sip:r2;lr>\n",
        "Path: <sip:p1;lr>\nPath: <sip:p2;lr>\n",
        "Supported: path\nk: outbound, gruu\n",
        "Require: path\nRequire: outbound\n",
        "Proxy-Require: a\nProxy-Require: b\n",
        "Proxy-Authorization: Digest username=\"a\"\nProxy-Authorization: Bearer abc\n",
        "Authorization: Bearer a\nAuthorization: Bearer b\n",
        "Allow: INVITE\nAllow: ACK, BYE\n",
        "X-Unknown: 1\nX-Unknown: 2\n",
        /* commas inside a quoted display name or <> are not a second value */
        "Reply-To: \"Doe, J\" <sip:j@x>\n",
        "Date: Sat, 13 Nov 2010 23:29:00 GMT\n",
        "User-Agent: Jabber (Windows, 14.1)\n",
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        enum sip_hdr got = single_of(rows[i]);
        cr_assert_eq(got, SIP_HDR_OTHER, "row %zu (%s): got %s", i, rows[i], sip_hdr_name(got));
    }
}

Test(sip_check, the_cardinality_table_marks_the_identity_headers_one_and_lists_many)
{
    cr_assert_eq(sip_hdr_card(SIP_HDR_TO), SIP_HDR_CARD_ONE);
    cr_assert_eq(sip_hdr_card(SIP_HDR_FROM), SIP_HDR_CARD_ONE);
    cr_assert_eq(sip_hdr_card(SIP_HDR_CALL_ID), SIP_HDR_CARD_ONE);
    cr_assert_eq(sip_hdr_card(SIP_HDR_CSEQ), SIP_HDR_CARD_ONE);
    cr_assert_eq(sip_hdr_card(SIP_HDR_MAX_FORWARDS), SIP_HDR_CARD_ONE);
    cr_assert_eq(sip_hdr_card(SIP_HDR_CONTENT_LENGTH), SIP_HDR_CARD_ONE);
    cr_assert_eq(sip_hdr_card(SIP_HDR_EXPIRES), SIP_HDR_CARD_ONE);
    cr_assert_eq(sip_hdr_card(SIP_HDR_DATE), SIP_HDR_CARD_ONCE);
    cr_assert_eq(sip_hdr_card(SIP_HDR_VIA), SIP_HDR_CARD_MANY);
    cr_assert_eq(sip_hdr_card(SIP_HDR_PROXY_AUTHORIZATION), SIP_HDR_CARD_MANY);
    cr_assert_eq(sip_hdr_card(SIP_HDR_OTHER), SIP_HDR_CARD_MANY);
    cr_assert_eq(sip_hdr_card(SIP_HDR_COUNT), SIP_HDR_CARD_MANY);
}

/* ---- sip_check_request(): the whole decision ------------------------------------------------ */

struct row {
    const char *text;
    enum sip_check_action action;
    int status;
    const char *reason; /* NULL: not compared */
    const char *extra0; /* NULL: no extra line expected */
};

static void check_rows(const struct row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct sip_msg msg;
        struct sip_verdict v;
        scan(rows[i].text, &msg);
        sip_check_request(&msg, SLICE_LIT("ccmsipline"), &v);
        cr_assert_eq(v.action, rows[i].action, "row %zu: action %s, want %s (%d %s)", i,
                     sip_check_action_name(v.action), sip_check_action_name(rows[i].action),
                     v.status, v.reason ? v.reason : "");
        cr_assert_eq(v.status, rows[i].status, "row %zu: status %d (%s)", i, v.status,
                     v.reason ? v.reason : "");
        if (rows[i].reason != NULL)
            cr_assert_str_eq(v.reason, rows[i].reason, "row %zu", i);
        if (rows[i].extra0 != NULL) {
            cr_assert_geq(v.n_extra, 1, "row %zu", i);
            cr_assert_eq(v.extra[0].len, strlen(rows[i].extra0), "row %zu: %.*s", i,
                         (int)v.extra[0].len, v.extra[0].base);
            cr_assert(memcmp(v.extra[0].base, rows[i].extra0, v.extra[0].len) == 0, "row %zu", i);
        }
    }
}

#define HDRS(method)                                                                               \
    BASE_VIA "From: <sip:alice@x>;tag=1\nTo: <sip:bob@x>\nCall-ID: c1\nCSeq: 1 " method "\n"
#define END "Content-Length: 0\n\n"

Test(sip_check, answers_416_for_a_scheme_the_edge_cannot_serve)
{
    static const struct row rows[] = {
        {"OPTIONS nobodyknowsthisscheme:totallyopaquecontent SIP/2.0\n" HDRS("OPTIONS") END,
         SIP_CHECK_ANSWER, 416, "Unsupported URI Scheme", NULL},
        {"OPTIONS http://edge.example/ SIP/2.0\n" HDRS("OPTIONS") END, SIP_CHECK_ANSWER, 416, NULL,
         NULL},
        {"REGISTER tel:+15551234 SIP/2.0\n" HDRS("REGISTER") END, SIP_CHECK_ANSWER, 416, NULL,
         NULL},
        /* a call to a tel: URI is UCM's to route: the scheme passes and it is proxied */
        {"INVITE tel:+15551234 SIP/2.0\n" HDRS("INVITE") END, SIP_CHECK_FORWARD, 0, NULL, NULL},
        {"OPTIONS sips:edge.example SIP/2.0\n" HDRS("OPTIONS") END, SIP_CHECK_ANSWER, 200, "OK",
         "Allow: " SIP_CHECK_ALLOW},
    };
    check_rows(rows, sizeof(rows) / sizeof(rows[0]));
}

Test(sip_check, answers_420_with_unsupported_for_unknown_option_tags)
{
    static const struct row rows[] = {
        {"OPTIONS sip:edge SIP/2.0\n" HDRS("OPTIONS") "Require: nothingweknow\n" END,
         SIP_CHECK_ANSWER, 420, "Bad Extension", "Unsupported: nothingweknow"},
        {"OPTIONS sip:edge SIP/2.0\n" HDRS("OPTIONS") "Require: path, foo\nRequire: bar\n" END,
         SIP_CHECK_ANSWER, 420, "Bad Extension", "Unsupported: foo, bar"},
        {"OPTIONS sip:edge SIP/2.0\n" HDRS("OPTIONS") "Require: PATH\n" END, SIP_CHECK_ANSWER, 200,
         "OK", NULL},
        {"REGISTER sip:x SIP/2.0\n" HDRS("REGISTER") "Proxy-Require: gruu\n" END, SIP_CHECK_ANSWER,
         420, "Bad Extension", "Unsupported: gruu"},
        {"INVITE sip:bob@x SIP/2.0\n" HDRS("INVITE") "Proxy-Require: foo\n" END, SIP_CHECK_ANSWER,
         420, NULL, "Unsupported: foo"},
        /* Require of a forwarded request is for UCM; CANCEL and ACK ignore both (§8.2.2.3) */
        {"REGISTER sip:x SIP/2.0\n" HDRS("REGISTER") "Require: gruu\n" END, SIP_CHECK_CHALLENGE,
         407, NULL, NULL},
        {"CANCEL sip:bob@x SIP/2.0\n" HDRS("CANCEL") "Proxy-Require: foo\n" END, SIP_CHECK_FORWARD,
         0, NULL, NULL},
        {"REGISTER sip:x SIP/2.0\n" HDRS("REGISTER") "Proxy-Require: path\n" END,
         SIP_CHECK_CHALLENGE, 407, NULL, NULL},
    };
    check_rows(rows, sizeof(rows) / sizeof(rows[0]));
}

Test(sip_check, validates_from_to_and_the_request_uri_for_every_method)
{
    static const struct row rows[] = {
        /* an unterminated quoted display name is a 400, not the 501 of an unknown method */
        {"INVITE sip:bob@x SIP/2.0\n" BASE_VIA
         "From: \"Alice <sip:alice@x>;tag=1\nTo: <sip:bob@x>\n"
         "Call-ID: c1\nCSeq: 1 INVITE\n" END,
         SIP_CHECK_ANSWER, 400, "Bad From", NULL},
        {"MESSAGE sip:bob@x SIP/2.0\n" BASE_VIA "From: <sip:alice@x>;tag=1\nTo: \"Bob <sip:bob@x>\n"
         "Call-ID: c1\nCSeq: 1 MESSAGE\n" END,
         SIP_CHECK_ANSWER, 400, "Bad To", NULL},
        {"OPTIONS sip:edge SIP/2.0\n" BASE_VIA "From: <sip:alice@x>;tag=1\nTo: \"Bob <sip:edge>\n"
         "Call-ID: c1\nCSeq: 1 OPTIONS\n" END,
         SIP_CHECK_ANSWER, 400, "Bad To", NULL},
        /* a malformed IPv6 reference is a 400 before any challenge */
        {"REGISTER sip:[2001:db8::1 SIP/2.0\n" HDRS("REGISTER") END, SIP_CHECK_ANSWER, 400,
         "Bad Request-URI", NULL},
        {"REGISTER sip:[2001:db8::g] SIP/2.0\n" HDRS("REGISTER") END, SIP_CHECK_ANSWER, 400,
         "Bad Request-URI", NULL},
        {"REGISTER sip:[2001:db8::1]:5061 SIP/2.0\n" HDRS("REGISTER") END, SIP_CHECK_CHALLENGE, 407,
         NULL, NULL},
        {"INVITE <sip:bob@x> SIP/2.0\n" HDRS("INVITE") END, SIP_CHECK_ANSWER, 400,
         "Bad Request-URI", NULL},
        {"INVITE sip:bob@x SIP/2.0\n" HDRS("REGISTER") END, SIP_CHECK_ANSWER, 400, "Bad CSeq",
         NULL},
        {"INVITE sip:bob@x SIP/2.0\n" BASE_VIA "From: <sip:a@x>;tag=1\nTo: <sip:b@x>\n"
         "CSeq: 1 INVITE\n" END,
         SIP_CHECK_ANSWER, 400, "Missing Call-ID", NULL},
        {"INVITE sip:bob@x SIP/2.0\nVia: SIP/2.0/TLS [::1;branch=z9hG4bK1\n"
         "From: <sip:a@x>;tag=1\nTo: <sip:b@x>\nCall-ID: c\nCSeq: 1 INVITE\n" END,
         SIP_CHECK_ANSWER, 400, "Bad Via", NULL},
        /* quoted-pairs escaping control characters are a valid display name */
        {"REGISTER sip:x SIP/2.0\n" BASE_VIA "From: \"A\\\x01\\\x7f\" <sip:alice@x>;tag=1\n"
         "To: <sip:alice@x>\nCall-ID: c1\nCSeq: 1 REGISTER\n" END,
         SIP_CHECK_CHALLENGE, 407, NULL, NULL},
    };
    check_rows(rows, sizeof(rows) / sizeof(rows[0]));
}

Test(sip_check, counts_hops_for_forwarded_requests_and_decides_by_method)
{
    static const struct row rows[] = {
        {"INVITE sip:bob@x SIP/2.0\n" HDRS("INVITE") "Max-Forwards: 0\n" END, SIP_CHECK_ANSWER, 483,
         "Too Many Hops", NULL},
        {"REGISTER sip:x SIP/2.0\n" HDRS("REGISTER") "Max-Forwards: 0\n" END, SIP_CHECK_ANSWER, 483,
         NULL, NULL},
        {"OPTIONS sip:edge SIP/2.0\n" HDRS("OPTIONS") "Max-Forwards: 0\n" END, SIP_CHECK_ANSWER,
         200, NULL, NULL},
        {"REGISTER sip:x SIP/2.0\n" HDRS("REGISTER") "Max-Forwards: 256\n" END, SIP_CHECK_ANSWER,
         400, "Bad Max-Forwards", NULL},
        {"REGISTER sip:x SIP/2.0\n" HDRS("REGISTER") "Proxy-Authorization: Bearer abc\n" END,
         SIP_CHECK_AUTH, 0, NULL, NULL},
        {"REGISTER sip:x SIP/2.0\n" HDRS(
             "REGISTER") "Proxy-Authorization: Bearer a, realm=\"o\"\n" END,
         SIP_CHECK_CHALLENGE, 407, NULL, NULL},
        {"ACK sip:bob@x SIP/2.0\n" HDRS("ACK") "To: <sip:m@x>\n" END, SIP_CHECK_DROP, 0, NULL,
         NULL},
        {"SIP/2.0 200 OK\n" HDRS("INVITE") END, SIP_CHECK_DROP, 0, NULL, NULL},
        /* RFC 3261 §16: a proxy forwards methods it does not know */
        {"FOO sip:bob@x SIP/2.0\n" HDRS("FOO") END, SIP_CHECK_FORWARD, 0, NULL, NULL},
        {"ACK sip:bob@x SIP/2.0\n" HDRS("ACK") END, SIP_CHECK_FORWARD, 0, NULL, NULL},
        {"BYE sip:bob@x SIP/2.0\n" HDRS("BYE") END, SIP_CHECK_FORWARD, 0, NULL, NULL},
        /* OPTIONS for someone behind the edge (a user part, or a Route) is proxied too */
        {"OPTIONS sip:bob@x SIP/2.0\n" HDRS("OPTIONS") END, SIP_CHECK_FORWARD, 0, NULL, NULL},
        {"OPTIONS sip:x SIP/2.0\n" HDRS("OPTIONS") "Route: <sip:ucm;lr>\n" END, SIP_CHECK_FORWARD,
         0, NULL, NULL},
        /* a Bearer that cannot be a valid token, on any method */
        {"INVITE sip:bob@x SIP/2.0\n" HDRS(
             "INVITE") "Proxy-Authorization: Bearer a, realm=\"o\"\n" END,
         SIP_CHECK_CHALLENGE, 407, NULL, NULL},
    };
    check_rows(rows, sizeof(rows) / sizeof(rows[0]));
}

Test(sip_check, a_request_with_its_own_bearer_is_forwarded_after_its_check)
{
    struct sip_msg msg;
    struct sip_verdict v;
    scan("MESSAGE sip:bob@x SIP/2.0\n" HDRS("MESSAGE") "Proxy-Authorization: Bearer abc.def\n" END,
         &msg);
    sip_check_request(&msg, SLICE_LIT("ccmsipline"), &v);
    cr_assert_eq(v.action, SIP_CHECK_FORWARD);
    cr_assert(v.has_cred);
    cr_assert(slice_eq(v.cred.token, SLICE_LIT("abc.def")));
    scan("MESSAGE sip:bob@x SIP/2.0\n" HDRS("MESSAGE") END, &msg);
    sip_check_request(&msg, SLICE_LIT("ccmsipline"), &v);
    cr_assert_eq(v.action, SIP_CHECK_FORWARD);
    cr_assert(!v.has_cred);
    scan("MESSAGE sip:bob@x SIP/2.0\n" HDRS("MESSAGE") "Proxy-Authorization: Bearer abc\n"
                                                       "Authorization: Bearer xyz\n" END,
         &msg);
    sip_check_request(&msg, SLICE_LIT("ccmsipline"), &v);
    cr_assert_eq(v.action, SIP_CHECK_ANSWER);
    cr_assert_eq(v.status, 400);
}

Test(sip_check, requests_from_ucm_are_checked_then_forwarded_or_answered)
{
    static const struct {
        const char *text;
        enum sip_check_action action;
        int status;
    } rows[] = {
        {"INVITE sip:bob@x SIP/2.0\n" HDRS("INVITE") END, SIP_CHECK_FORWARD, 0},
        {"NOTIFY sip:bob@x SIP/2.0\n" HDRS("NOTIFY") END, SIP_CHECK_FORWARD, 0},
        {"OPTIONS sip:edge SIP/2.0\n" HDRS("OPTIONS") END, SIP_CHECK_ANSWER, 200},
        {"INVITE sip:bob@x SIP/2.0\n" HDRS("INVITE") "To: <sip:eve@x>\n" END, SIP_CHECK_ANSWER,
         400},
        {"INVITE sip:bob@x SIP/2.0\n" HDRS("INVITE") "Max-Forwards: 0\n" END, SIP_CHECK_ANSWER,
         483},
        {"ACK sip:bob@x SIP/2.0\n" HDRS("ACK") "To: <sip:eve@x>\n" END, SIP_CHECK_DROP, 0},
        {"ACK sip:bob@x SIP/2.0\n" HDRS("ACK") END, SIP_CHECK_FORWARD, 0},
        /* no token needed from UCM (its mutual TLS vouches for it), and none is looked at */
        {"INVITE sip:bob@x SIP/2.0\n" HDRS(
             "INVITE") "Proxy-Authorization: Bearer a, realm=\"o\"\n" END,
         SIP_CHECK_FORWARD, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct sip_msg msg;
        struct sip_verdict v;
        scan(rows[i].text, &msg);
        sip_check_ucm_request(&msg, &v);
        cr_assert_eq(v.action, rows[i].action, "row %zu: %s", i, sip_check_action_name(v.action));
        cr_assert_eq(v.status, rows[i].status, "row %zu: %d", i, v.status);
    }
}

/* ---- sip_check_garbage(): what a rejected message gets ------------------------------------- */

Test(sip_check, answers_a_framed_request_with_a_bad_request_line_and_closes_the_rest)
{
    static const struct {
        const char *text;
        enum sip_err err;
        enum sip_check_action action;
        int status;
        const char *reason;
    } rows[] = {
        {"OPTIONS sip:edge SIP/3.0\n" HDRS("OPTIONS") END, SIP_E_BAD_VERSION, SIP_CHECK_ANSWER, 505,
         "Version Not Supported"},
        {"OPTIONS sip:edge sip/7.10\n" HDRS("OPTIONS") END, SIP_E_BAD_VERSION, SIP_CHECK_ANSWER,
         505, NULL},
        {"OPTIONS sip:edge HTTP/1.1\n" HDRS("OPTIONS") END, SIP_E_BAD_VERSION, SIP_CHECK_ANSWER,
         400, "Bad SIP Version"},
        {"OPTIONS sip:edge SIP/2.0x\n" HDRS("OPTIONS") END, SIP_E_BAD_VERSION, SIP_CHECK_ANSWER,
         400, NULL},
        {" OPTIONS sip:edge SIP/2.0\n" HDRS("OPTIONS") END, SIP_E_BAD_SPACING, SIP_CHECK_ANSWER,
         400, "Bad Request-Line Whitespace"},
        {"INVITE  sip:bob@x SIP/2.0\n" HDRS("INVITE") END, SIP_E_BAD_SPACING, SIP_CHECK_ANSWER, 400,
         NULL},
        {"INVITE sip:bob@x  SIP/2.0\n" HDRS("INVITE") END, SIP_E_BAD_SPACING, SIP_CHECK_ANSWER, 400,
         NULL},
        {"INVITE sip:bob @x SIP/2.0\n" HDRS("INVITE") END, SIP_E_BAD_URI, SIP_CHECK_ANSWER, 400,
         "Bad Request-URI"},
        {"INV@TE sip:bob@x SIP/2.0\n" HDRS("INV@TE") END, SIP_E_BAD_METHOD, SIP_CHECK_ANSWER, 400,
         "Bad Method"},
        {"INVITE sip:bob@x\n" HDRS("INVITE") END, SIP_E_BAD_START_LINE, SIP_CHECK_ANSWER, 400,
         "Bad Start Line"},
        {"INVITE sip:bob@x SIP/2.0\n" HDRS("INVITE") "l: 0\n" END, SIP_E_DUP_CONTENT_LENGTH,
         SIP_CHECK_ANSWER, 400, "Duplicate Content-Length"},
        /* nothing to copy into an answer, an ACK, a response: closed without a word */
        {"OPTIONS sip:edge SIP/3.0\nTo: <sip:a@x>\n" END, SIP_E_BAD_VERSION, SIP_CHECK_CLOSE, 0,
         NULL},
        {"ACK sip:bob@x SIP/3.0\n" HDRS("ACK") END, SIP_E_BAD_VERSION, SIP_CHECK_CLOSE, 0, NULL},
        {"SIP/3.0 200 OK\n" HDRS("INVITE") END, SIP_E_BAD_VERSION, SIP_CHECK_CLOSE, 0, NULL},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        size_t n = 0;
        for (const char *s = rows[i].text; *s; s++) {
            if (*s == '\n')
                buf[n++] = '\r';
            buf[n++] = *s;
        }
        struct sip_msg msg;
        struct sip_verdict v;
        sip_msg_init(&msg, hdrs, 64);
        ssize_t r = sip_scan(buf, n, 0, &msg);
        cr_assert_eq(r, -(ssize_t)rows[i].err, "row %zu: %zd %s", i, r, sip_err_name(msg.err));
        sip_check_garbage(&msg, &v);
        cr_assert_eq(v.action, rows[i].action, "row %zu: %s", i, sip_check_action_name(v.action));
        cr_assert_eq(v.status, rows[i].status, "row %zu: %d", i, v.status);
        if (rows[i].reason != NULL)
            cr_assert_str_eq(v.reason, rows[i].reason, "row %zu", i);
    }
}
