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
