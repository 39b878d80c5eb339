// SPDX-License-Identifier: MIT
// Tests for core/txn_hop.c: the CANCEL and the hop-by-hop ACK of a forwarded INVITE, byte for
// byte, and what they refuse (a lying response: another Call-ID or CSeq, a 2xx).
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "core/txn_hop.h"

#define MAX_HDRS 32

struct scanned {
    char buf[2048];
    struct sip_header hdrs[MAX_HDRS];
    struct sip_msg msg;
};

static void scan(struct scanned *s, const char *text)
{
    size_t n = strlen(text);
    cr_assert_lt(n, sizeof(s->buf));
    memcpy(s->buf, text, n);
    sip_msg_init(&s->msg, s->hdrs, MAX_HDRS);
    cr_assert_eq(sip_scan(s->buf, n, 0, &s->msg), (ssize_t)n, "scan: %s", text);
}

static const char fwd_invite[] =
    "INVITE sip:8002@10.1.1.1:5060;transport=tcp SIP/2.0\r\n"
    "Via: SIP/2.0/TLS edge.example.com:5061;branch=z9hG4bK-st1.0.5, SIP/2.0/TLS "
    "10.9.9.9:50000;branch=z9hG4bK-c1\r\n"
    "Route: <sip:ucm1.example.com;lr>\r\n"
    "Route: <sip:ucm2.example.com;lr>, <sip:ucm3;lr>\r\n"
    "Max-Forwards: 69\r\n"
    "From: \"A\" <sip:8001@ucm.example.com>;tag=f1\r\n"
    "To: <sip:8002@ucm.example.com>\r\n"
    "Call-ID: abc@h\r\n"
    "CSeq: 4711 INVITE\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 4\r\n\r\nv=0\n";

static const char busy[] = "SIP/2.0 486 Busy Here\r\n"
                           "Via: SIP/2.0/TLS edge.example.com:5061;branch=z9hG4bK-st1.0.5\r\n"
                           "From: \"A\" <sip:8001@ucm.example.com>;tag=f1\r\n"
                           "To: <sip:8002@ucm.example.com>;tag=t9\r\n"
                           "Call-ID: abc@h\r\n"
                           "CSeq: 4711 INVITE\r\n"
                           "Content-Length: 0\r\n\r\n";

#define COMMON                                                                                     \
    "Via: SIP/2.0/TLS edge.example.com:5061;branch=z9hG4bK-st1.0.5\r\n"                            \
    "Route: <sip:ucm1.example.com;lr>\r\n"                                                         \
    "Route: <sip:ucm2.example.com;lr>, <sip:ucm3;lr>\r\n"                                          \
    "Max-Forwards: 70\r\n"                                                                         \
    "From: \"A\" <sip:8001@ucm.example.com>;tag=f1\r\n"

Test(txn_hop, cancel_copies_what_rfc3261_9_1_names_byte_for_byte)
{
    struct scanned inv, back;
    char out[1024];
    static const char want[] = "CANCEL sip:8002@10.1.1.1:5060;transport=tcp SIP/2.0\r\n" COMMON
                               "To: <sip:8002@ucm.example.com>\r\n"
                               "Call-ID: abc@h\r\nCSeq: 4711 CANCEL\r\nContent-Length: 0\r\n\r\n";
    scan(&inv, fwd_invite);
    ssize_t n = txn_hop_build(&inv.msg, SIP_METHOD_CANCEL, NULL, out, sizeof(out));
    cr_assert_eq(n, (ssize_t)strlen(want), "%zd: %.*s", n, (int)(n > 0 ? n : 0), out);
    cr_assert(memcmp(out, want, (size_t)n) == 0, "%.*s", (int)n, out);
    out[n] = '\0';
    scan(&back, out); /* a message the scanner frames as one */
    cr_assert_eq(back.msg.method, SIP_METHOD_CANCEL);
}

Test(txn_hop, ack_takes_the_responses_to_tag)
{
    struct scanned inv, resp;
    char out[1024];
    static const char want[] = "ACK sip:8002@10.1.1.1:5060;transport=tcp SIP/2.0\r\n" COMMON
                               "To: <sip:8002@ucm.example.com>;tag=t9\r\n"
                               "Call-ID: abc@h\r\nCSeq: 4711 ACK\r\nContent-Length: 0\r\n\r\n";
    scan(&inv, fwd_invite);
    scan(&resp, busy);
    ssize_t n = txn_hop_build(&inv.msg, SIP_METHOD_ACK, &resp.msg, out, sizeof(out));
    cr_assert_eq(n, (ssize_t)strlen(want), "%zd: %.*s", n, (int)(n > 0 ? n : 0), out);
    cr_assert(memcmp(out, want, (size_t)n) == 0, "%.*s", (int)n, out);
    for (size_t cap = 0; cap < (size_t)n; cap++)
        cr_assert_eq(txn_hop_build(&inv.msg, SIP_METHOD_ACK, &resp.msg, out, cap), -ENOSPC,
                     "cap %zu", cap);
}

Test(txn_hop, refuses_what_it_cannot_build_truthfully)
{
    struct scanned inv, resp, bye;
    char out[1024];
    scan(&inv, fwd_invite);
    struct {
        const char *resp, *why;
    } rows[] = {
        {"SIP/2.0 200 OK\r\nTo: <sip:b>;tag=1\r\nCall-ID: abc@h\r\nCSeq: 4711 INVITE\r\n"
         "Content-Length: 0\r\n\r\n",
         "an ACK for a 2xx is end to end, not ours"},
        {"SIP/2.0 486 Busy\r\nTo: <sip:b>;tag=1\r\nCall-ID: other\r\nCSeq: 4711 INVITE\r\n"
         "Content-Length: 0\r\n\r\n",
         "another Call-ID"},
        {"SIP/2.0 486 Busy\r\nTo: <sip:b>;tag=1\r\nCall-ID: abc@h\r\nCSeq: 4712 INVITE\r\n"
         "Content-Length: 0\r\n\r\n",
         "another CSeq number"},
        {"SIP/2.0 486 Busy\r\nTo: <sip:b>;tag=1\r\nCall-ID: abc@h\r\nCSeq: 4711 BYE\r\n"
         "Content-Length: 0\r\n\r\n",
         "another CSeq method"},
        {"SIP/2.0 486 Busy\r\nCall-ID: abc@h\r\nCSeq: 4711 INVITE\r\nContent-Length: 0\r\n\r\n",
         "no To"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        scan(&resp, rows[i].resp);
        cr_assert_eq(txn_hop_build(&inv.msg, SIP_METHOD_ACK, &resp.msg, out, sizeof(out)), -EINVAL,
                     "%s", rows[i].why);
    }
    cr_assert_eq(txn_hop_build(&inv.msg, SIP_METHOD_ACK, NULL, out, sizeof(out)), -EINVAL);
    cr_assert_eq(txn_hop_build(&inv.msg, SIP_METHOD_BYE, NULL, out, sizeof(out)), -EINVAL);
    scan(&bye, "BYE sip:b SIP/2.0\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK-1\r\nFrom: <sip:a>;tag=1\r\n"
               "To: <sip:b>\r\nCall-ID: x\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n");
    cr_assert_eq(txn_hop_build(&bye.msg, SIP_METHOD_CANCEL, NULL, out, sizeof(out)), -EINVAL,
                 "only an INVITE is cancelled");
    scan(&bye, "INVITE sip:b SIP/2.0\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK-1\r\n"
               "To: <sip:b>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n");
    cr_assert_eq(txn_hop_build(&bye.msg, SIP_METHOD_CANCEL, NULL, out, sizeof(out)), -EINVAL,
                 "no From");
}
