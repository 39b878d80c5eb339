// SPDX-License-Identifier: MIT
// Connection binding (core/policy.c): bind, unbind, the verdict for a request, de-REGISTER.
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/policy.h"
#include "core/sip.h"

static char buf[2048];
static struct sip_header hdrs[32];

/* Scans `text` (LF line ends become CRLF) into `msg`. */
static void scan(const char *text, struct sip_msg *msg)
{
    size_t n = 0;
    for (const char *c = text; *c; c++) {
        if (*c == '\n')
            buf[n++] = '\r';
        buf[n++] = *c;
    }
    sip_msg_init(msg, hdrs, 32);
    cr_assert_gt(sip_scan(buf, n, 0, msg), 0, "scan: %s", sip_err_name(msg->err));
}

static enum policy_verdict check_from(const struct policy_binding *b, const char *from, int64_t now)
{
    char text[512];
    snprintf(text, sizeof(text),
             "INVITE sip:bob@x SIP/2.0\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\nFrom: %s;tag=1\n"
             "To: <sip:bob@x>\nCall-ID: c\nCSeq: 1 INVITE\nContent-Length: 0\n\n",
             from);
    struct sip_msg msg;
    scan(text, &msg);
    return policy_check(b, &msg, now, 60);
}

Test(policy, unbound_bound_expired_wrong_user_and_bad_from)
{
    struct policy_binding b = {.flow_tag = 77};
    cr_assert_eq(check_from(&b, "<sip:alice@x>", 1000), POLICY_UNBOUND);
    cr_assert_eq(check_from(NULL, "<sip:alice@x>", 1000), POLICY_UNBOUND);
    cr_assert_eq(policy_bind(&b, SLICE_LIT("alice"), 2000), 0);
    cr_assert_eq(check_from(&b, "<sip:alice@x>", 1000), POLICY_OK);
    cr_assert_eq(check_from(&b, "\"Alice\" <sips:alice@other.example>", 1000), POLICY_OK);
    cr_assert_eq(check_from(&b, "<sip:Alice@x>", 1000), POLICY_WRONG_USER,
                 "user parts are "
                 "case-sensitive");
    cr_assert_eq(check_from(&b, "<sip:mallory@x>", 1000), POLICY_WRONG_USER);
    cr_assert_eq(check_from(&b, "<sip:x.example>", 1000), POLICY_BAD_FROM);
    cr_assert_eq(check_from(&b, "<sip:alice@x>", 2060), POLICY_OK, "within the leeway");
    cr_assert_eq(check_from(&b, "<sip:alice@x>", 2061), POLICY_EXPIRED);
    policy_unbind(&b);
    cr_assert_eq(check_from(&b, "<sip:alice@x>", 1000), POLICY_UNBOUND);
    cr_assert_eq(b.flow_tag, 77, "the flow tag names the connection: it stays");
    cr_assert_str_eq(policy_verdict_name(POLICY_WRONG_USER), "wrong_user");
    cr_assert_str_eq(policy_verdict_name(POLICY_VERDICT_COUNT), "unknown");
}

Test(policy, a_user_too_long_is_never_bound)
{
    struct policy_binding b = {0};
    char u[POLICY_USER_MAX + 1];
    memset(u, 'a', sizeof(u));
    cr_assert_eq(policy_bind(&b, slice_make(u, sizeof(u)), 10), -ENAMETOOLONG);
    cr_assert(!b.bound);
    cr_assert_eq(policy_bind(&b, slice_make(u, POLICY_USER_MAX), 10), 0);
    cr_assert_eq(policy_bind(&b, SLICE_LIT(""), 10), -ENAMETOOLONG);
}

static bool dereg(const char *lines)
{
    char text[512];
    snprintf(text, sizeof(text),
             "REGISTER sip:x SIP/2.0\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\nFrom: <sip:a@x>;tag=1\n"
             "To: <sip:a@x>\nCall-ID: c\nCSeq: 1 REGISTER\n%sContent-Length: 0\n\n",
             lines);
    struct sip_msg msg;
    scan(text, &msg);
    return policy_is_deregister(&msg);
}

Test(policy, de_register_is_star_or_every_contact_at_zero)
{
    cr_assert(dereg("Contact: *\nExpires: 0\n"));
    cr_assert(dereg("Contact: <sip:a@h>\nExpires: 0\n"));
    cr_assert(dereg("Contact: <sip:a@h>;expires=0, <sip:a@g>;expires=0\n"));
    cr_assert(!dereg("Contact: <sip:a@h>;expires=0, <sip:a@g>\nExpires: 3600\n"));
    cr_assert(!dereg("Contact: <sip:a@h>;expires=120\nExpires: 0\n"));
    cr_assert(!dereg("Contact: <sip:a@h>\nExpires: 3600\n"));
    cr_assert(!dereg("Expires: 0\n"), "a query (no Contact) removes nothing");
}
