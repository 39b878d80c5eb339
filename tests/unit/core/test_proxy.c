// SPDX-License-Identifier: MIT
// Unit tests of the REGISTER proxy (core/proxy.c) with a recording environment: what the client
// and UCM would receive, byte for byte where it matters. Tokens are judged by a fake verifier
// plugged into a real auth worker (no Redis: answers are synchronous).
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "core/log.h"
#include "core/policy.h"
#include "core/proxy.h"
#include "core/sip.h"
#include "sent.h"
#include "core/sip_check.h"
#include "core/sip_parse.h"

#define MAX_SENT 16

static struct sent to_client[MAX_SENT], to_upstream[MAX_SENT];
static int n_client, n_upstream;
static int upstream_result;               /* what upstream_send returns */
static uint32_t gone_client = UINT32_MAX; /* client_send says -ENOTCONN for this id */

static int fake_client_send(void *ctx, uint32_t id, const struct slice *iov, size_t n)
{
    if (id == gone_client)
        return -ENOTCONN;
    if (n_client == MAX_SENT) /* proxy_free answering every open transaction */
        return 0;
    join(&to_client[n_client++], id, iov, n);
    return 0;
}

static uint32_t upstream_conn = 1; /* the connection fake_upstream_send says it used */
static bool upstream_failover;     /* and whether that was past the preferred node */

static int fake_upstream_send(void *ctx, const struct slice *iov, size_t n, struct proxy_sent *sent)
{
    if (upstream_result < 0)
        return upstream_result;
    cr_assert_lt(n_upstream, MAX_SENT);
    join(&to_upstream[n_upstream], upstream_conn, iov, n);
    n_upstream++;
    sent->conn_id = upstream_conn;
    sent->failover = upstream_failover;
    return upstream_result;
}

/* Tokens are "ok.<user>", "scope.<user>", or anything else (bad signature). */
static enum jwt_reason fake_verify(void *ctx, const char *tok, size_t len, int64_t now,
                                   struct jwt_result *out)
{
    memset(out, 0, sizeof(*out));
    out->exp = now + 3600;
    if (len > 3 && memcmp(tok, "ok.", 3) == 0) {
        out->user_len = len - 3;
        memcpy(out->user, tok + 3, len - 3);
        return out->reason = JWT_OK;
    }
    if (len > 6 && memcmp(tok, "scope.", 6) == 0)
        return out->reason = JWT_E_INSUFFICIENT_SCOPE;
    return out->reason = JWT_E_BAD_SIGNATURE;
}

static struct proxy *p;
static struct auth_worker *aw;

/* The configuration every test starts from: worker 1, Path, Proxy-Authorization forwarded,
 * Timer F 1 s, 64 transaction slots. */
static struct proxy_cfg test_cfg(void)
{
    return (struct proxy_cfg){
        .worker = 1,
        .realm = "ccmsipline",
        .server = "sipedge/test",
        .via_host = "edge.example.test",
        .via_port = 5061,
        .add_path = true,
        .forward_auth = true,
        .timer_f_ms = 1000,
        .retry_after_s = 17,
        .max_transactions = 64,
    };
}

static void setup_with(bool forward_auth)
{
    n_client = n_upstream = 0;
    upstream_result = 0;
    upstream_conn = 1;
    upstream_failover = false;
    gone_client = UINT32_MAX;
    struct auth_config ac = {.verify = fake_verify};
    aw = auth_worker_new(&ac, auth_now_ms());
    cr_assert_not_null(aw);
    struct proxy_cfg cfg = test_cfg();
    cfg.forward_auth = forward_auth;
    struct proxy_env env = {.client_send = fake_client_send, .upstream_send = fake_upstream_send};
    p = proxy_new(&cfg, &env, aw, NULL);
    cr_assert_not_null(p);
}

static void setup(void)
{
    setup_with(true);
}

static void teardown(void)
{
    proxy_free(p);
    auth_worker_free(aw);
}

static char buf[8192];
static struct sip_header hdrs[64];

/* Scans `text` (LF line ends become CRLF) into `msg`. */
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

static void register_as(uint32_t client, const char *user, const char *auth_line,
                        const char *max_forwards)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "REGISTER sip:ucm.example.test SIP/2.0\n"
             "Via: SIP/2.0/TLS 192.0.2.10:50000;branch=z9hG4bKclient1;rport\n"
             "Max-Forwards: %s\n"
             "From: <sip:%s@example.test>;tag=abc\n"
             "To: <sip:%s@example.test>\n"
             "Call-ID: call-%s@192.0.2.10\n"
             "CSeq: 2 REGISTER\n"
             "Contact: <sip:%s@192.0.2.10:50000;transport=tls>;+sip.instance=\"<urn:uuid:1>\"\n"
             "Expires: 3600\n"
             "%s"
             "Content-Length: 0\n\n",
             max_forwards, user, user, user, user, auth_line);
    struct sip_msg msg;
    scan(text, &msg);
    proxy_on_client_request(p, client, &msg, 1000);
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static const char *header_of(const char *text, const char *name)
{
    static char line[1024];
    const char *h = strstr(text, name);
    if (h == NULL)
        return NULL;
    const char *e = strstr(h, "\r\n");
    snprintf(line, sizeof(line), "%.*s", (int)(e - h), h);
    return line;
}

TestSuite(proxy, .init = setup, .fini = teardown);

Test(proxy, challenges_a_register_without_credentials_like_ucm)
{
    register_as(7, "alice", "", "70");
    cr_assert_eq(n_client, 1);
    cr_assert_eq(n_upstream, 0);
    const char *r = to_client[0].text;
    cr_assert_eq(to_client[0].id, 7);
    cr_assert(starts(r, "SIP/2.0 407 Proxy Authentication Required\r\n"), "%s", r);
    cr_assert_str_eq(header_of(r, "Proxy-Authenticate:"),
                     "Proxy-Authenticate: Bearer realm=\"ccmsipline\"");
    cr_assert_not_null(strstr(r, "Via: SIP/2.0/TLS 192.0.2.10:50000;branch=z9hG4bKclient1;rport"));
    cr_assert_not_null(strstr(r, "To: <sip:alice@example.test>;tag="));
    cr_assert_not_null(strstr(r, "CSeq: 2 REGISTER\r\n"));
    cr_assert_not_null(strstr(r, "Server: sipedge/test\r\n"));
    cr_assert_not_null(strstr(r, "Content-Length: 0\r\n\r\n"));
}

Test(proxy, challenges_digest_credentials_as_no_bearer)
{
    register_as(7, "alice", "Proxy-Authorization: Digest username=\"alice\", realm=\"x\"\n", "70");
    cr_assert_eq(n_client, 1);
    cr_assert_str_eq(header_of(to_client[0].text, "Proxy-Authenticate:"),
                     "Proxy-Authenticate: Bearer realm=\"ccmsipline\"");
}

Test(proxy, answers_invalid_token_for_a_bad_token)
{
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"garbage\"\n", "70");
    cr_assert_eq(n_client, 1);
    cr_assert_eq(n_upstream, 0);
    cr_assert_str_eq(header_of(to_client[0].text, "Proxy-Authenticate:"),
                     "Proxy-Authenticate: Bearer realm=\"ccmsipline\", error=\"invalid_token\"");
    cr_assert(starts(to_client[0].text, "SIP/2.0 407 "));
}

Test(proxy, answers_403_insufficient_scope)
{
    register_as(7, "alice", "Authorization: Bearer scope.alice\n", "70");
    cr_assert_eq(n_client, 1);
    cr_assert(starts(to_client[0].text, "SIP/2.0 403 Forbidden\r\n"));
    cr_assert_str_eq(
        header_of(to_client[0].text, "Proxy-Authenticate:"),
        "Proxy-Authenticate: Bearer realm=\"ccmsipline\", error=\"insufficient_scope\"");
}

Test(proxy, refuses_a_token_of_another_user_with_403)
{
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.mallory\"\n", "70");
    cr_assert_eq(n_client, 1);
    cr_assert_eq(n_upstream, 0);
    cr_assert(starts(to_client[0].text, "SIP/2.0 403 Forbidden\r\n"));
    cr_assert_eq(proxy_stats(p)->identity_mismatch, 1);
}

Test(proxy, forwards_a_valid_register_with_via_max_forwards_and_path)
{
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    cr_assert_eq(n_client, 0);
    cr_assert_eq(n_upstream, 1);
    const char *f = to_upstream[0].text;
    cr_assert(strncmp(f,
                      "REGISTER sip:ucm.example.test SIP/2.0\r\n"
                      "Via: SIP/2.0/TLS edge.example.test:5061;branch=z9hG4bK-se",
                      95) == 0,
              "%s", f);
    cr_assert_not_null(strstr(f, "Via: SIP/2.0/TLS 192.0.2.10:50000;branch=z9hG4bKclient1"));
    /* branch = z9hG4bK-se<8 hex nonce>.<worker 1>.<slot 0>.<generation 0> */
    const char *b = strstr(f, "branch=z9hG4bK-se") + strlen("branch=z9hG4bK-se");
    cr_assert_eq(strspn(b, "0123456789abcdef"), 8);
    cr_assert(strncmp(b + 8, ".1.0.0;alias\r\n", 14) == 0, "%.20s", b);
    cr_assert_not_null(strstr(f, "Max-Forwards: 69\r\n"));
    /* Path: <sip:FLOW@edge.example.test:5061;transport=tls;lr;ob>, FLOW a 32-character token */
    const char *path = strstr(f, "Path: <sip:");
    cr_assert_not_null(path);
    path += strlen("Path: <sip:");
    cr_assert_eq(strspn(path, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                 FLOW_TOKEN_LEN);
    static const char rest[] = "@edge.example.test:5061;transport=tls;lr;ob>\r\n";
    cr_assert(strncmp(path + FLOW_TOKEN_LEN, rest, sizeof(rest) - 1) == 0, "%.80s", path);
    cr_assert_not_null(strstr(f, "Proxy-Authorization: Bearer token=\"ok.alice\"\r\n"));
    cr_assert_eq(proxy_stats(p)->transactions_open, 1);
}

static void answer_from_ucm(const char *status_line, const char *extra)
{
    /* UCM echoes the Vias of the request it got: ours on top. */
    const char *f = to_upstream[n_upstream - 1].text;
    char ours[1100];
    snprintf(ours, sizeof(ours), "%s", header_of(f, "Via: SIP/2.0/TLS edge"));
    char text[4096];
    snprintf(text, sizeof(text),
             "%s\n%s\n"
             "Via: SIP/2.0/TLS 192.0.2.10:50000;branch=z9hG4bKclient1;rport\n"
             "From: <sip:alice@example.test>;tag=abc\n"
             "To: <sip:alice@example.test>;tag=ucm1\n"
             "Call-ID: call-alice@192.0.2.10\n"
             "CSeq: 2 REGISTER\n"
             "%s"
             "Content-Length: 0\n\n",
             status_line, ours, extra);
    struct sip_msg msg;
    scan(text, &msg);
    proxy_on_upstream_message(p, 1, 0, &msg, 1200);
}

Test(proxy, relays_the_ucm_answer_without_our_via)
{
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    answer_from_ucm("SIP/2.0 200 OK", "Expires: 120\n");
    cr_assert_eq(n_client, 1);
    cr_assert_eq(to_client[0].id, 7);
    const char *r = to_client[0].text;
    cr_assert(starts(r, "SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 192.0.2.10:50000"), "%s", r);
    cr_assert_null(strstr(r, "edge.example.test"));
    cr_assert_not_null(strstr(r, "Expires: 120\r\n"));
    cr_assert_eq(proxy_stats(p)->transactions_open, 0);
}

Test(proxy, relays_the_port_mismatch_403_unchanged)
{
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    answer_from_ucm(
        "SIP/2.0 403 Forbidden",
        "Retry-After: 35\nWarning: 399 ucm1 \"SIP OAuth Registration port Mismatch\"\n");
    cr_assert_eq(n_client, 1);
    cr_assert_not_null(strstr(to_client[0].text, "SIP/2.0 403 Forbidden\r\n"));
    cr_assert_not_null(strstr(to_client[0].text, "Retry-After: 35\r\n"));
    cr_assert_not_null(strstr(to_client[0].text,
                              "Warning: 399 ucm1 \"SIP OAuth Registration port Mismatch\"\r\n"));
}

/* How many lines of `f` (a captured log) name `event`. */
static int count_events(FILE *f, const char *event)
{
    char line[4096];
    int n = 0;
    rewind(f);
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, event) != NULL;
    return n;
}

Test(proxy, logs_the_port_mismatch_of_ucm_once_whatever_its_case)
{
    FILE *log = tmpfile();
    cr_assert_not_null(log);
    log_init(fileno(log), LOG_INFO, LOG_FORMAT_KV);
    for (int i = 0; i < 3; i++) {
        register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
        answer_from_ucm(
            "SIP/2.0 403 Forbidden",
            "Retry-After: 35\nWarning: 399 ucm1 \"SIP OAuth Registration port Mismatch\"\n");
    }
    log_init(2, LOG_INFO, LOG_FORMAT_KV);
    cr_assert_eq(n_client, 3);
    cr_assert_eq(count_events(log, "event=upstream_port_mismatch"), 1);
    fclose(log);
}

Test(proxy, drops_a_second_final_answer_as_stale)
{
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    answer_from_ucm("SIP/2.0 200 OK", "");
    answer_from_ucm("SIP/2.0 200 OK", "");
    cr_assert_eq(n_client, 1);
    cr_assert_eq(proxy_stats(p)->drop_stale, 1);
}

Test(proxy, drops_an_answer_whose_top_via_is_not_ours)
{
    struct sip_msg msg;
    scan("SIP/2.0 200 OK\n"
         "Via: SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bK-se00000000.1.0.0\n"
         "From: <sip:a@x>;tag=1\nTo: <sip:a@x>\nCall-ID: c\nCSeq: 1 REGISTER\n"
         "Content-Length: 0\n\n",
         &msg);
    proxy_on_upstream_message(p, 1, 0, &msg, 1000);
    cr_assert_eq(n_client, 0);
    cr_assert_eq(proxy_stats(p)->drop_via_not_ours, 1);
}

Test(proxy, counts_an_answer_for_a_client_that_left)
{
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    gone_client = 7;
    proxy_on_client_gone(p, 7);
    answer_from_ucm("SIP/2.0 200 OK", "");
    cr_assert_eq(n_client, 0);
    cr_assert_eq(proxy_stats(p)->drop_client_gone, 1);
    cr_assert_eq(proxy_stats(p)->transactions_open, 0);
}

Test(proxy, answers_503_with_retry_after_when_no_node_is_up)
{
    upstream_result = -EHOSTUNREACH;
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    cr_assert_eq(n_client, 1);
    cr_assert(starts(to_client[0].text, "SIP/2.0 503 Service Unavailable\r\n"));
    cr_assert_not_null(strstr(to_client[0].text, "Retry-After: 17\r\n"));
    cr_assert_eq(proxy_stats(p)->transactions_open, 0);
}

Test(proxy, answers_408_when_ucm_stays_silent_past_timer_f)
{
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    int64_t next = proxy_tick(p, 1500);
    cr_assert_eq(n_client, 0);
    cr_assert_eq(next, 2000); /* now 1000 + timer F 1000 */
    proxy_tick(p, 2000);
    cr_assert_eq(n_client, 1);
    cr_assert(starts(to_client[0].text, "SIP/2.0 408 Request Timeout\r\n"));
    cr_assert_not_null(strstr(to_client[0].text, "Call-ID: call-alice@192.0.2.10\r\n"));
    cr_assert_eq(proxy_tick(p, 2001), INT64_MAX);
    answer_from_ucm("SIP/2.0 200 OK", ""); /* too late: stale */
    cr_assert_eq(n_client, 1);
    cr_assert_eq(proxy_stats(p)->drop_stale, 1);
}

Test(proxy, sends_again_with_the_same_branch_when_its_upstream_connection_dies)
{
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    upstream_conn = 2;
    register_as(8, "bob", "Proxy-Authorization: Bearer token=\"ok.bob\"\n", "70");
    cr_assert_eq(n_upstream, 2);
    upstream_conn = 3; /* the pool's next choice */
    proxy_on_upstream_gone(p, 1, 1200);
    cr_assert_eq(n_upstream, 3, "only alice's request (on connection 1) goes out again");
    cr_assert_eq(to_upstream[2].id, 3);
    cr_assert_str_eq(to_upstream[2].text, to_upstream[0].text, "same bytes, same branch");
    cr_assert_eq(n_client, 0);
    cr_assert_eq(proxy_stats(p)->resent, 1);
    cr_assert_eq(proxy_tick(p, 1500), 2000, "Timer F keeps its first deadline");
    answer_from_ucm("SIP/2.0 200 OK", ""); /* UCM answers the resent one: same branch */
    cr_assert_eq(n_client, 1);
    cr_assert(starts(to_client[0].text, "SIP/2.0 200 OK\r\n"));
    cr_assert_eq(to_client[0].id, 7);
}

Test(proxy, answers_503_at_once_when_its_connection_dies_and_no_node_is_left)
{
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    upstream_result = -EHOSTUNREACH;
    proxy_on_upstream_gone(p, 1, 1100);
    cr_assert_eq(n_client, 1, "answered now, not by Timer F");
    cr_assert(starts(to_client[0].text, "SIP/2.0 503 Service Unavailable\r\n"));
    cr_assert_not_null(strstr(to_client[0].text, "Retry-After: 17\r\n"));
    cr_assert_not_null(strstr(to_client[0].text, "Call-ID: call-alice@192.0.2.10\r\n"));
    cr_assert_eq(proxy_stats(p)->transactions_open, 0);
    cr_assert_eq(proxy_tick(p, 5000), INT64_MAX);
}

Test(proxy, counts_a_request_refused_for_its_size_as_a_request)
{
    struct sip_msg msg;
    scan("REGISTER sip:ucm.example.test SIP/2.0\n"
         "Via: SIP/2.0/TLS 192.0.2.10:50000;branch=z9hG4bKbig\n"
         "From: <sip:alice@example.test>;tag=abc\n"
         "To: <sip:alice@example.test>\n"
         "Call-ID: big@192.0.2.10\n"
         "CSeq: 1 REGISTER\n"
         "Content-Length: 0\n\n",
         &msg);
    msg.err = SIP_E_TOO_LARGE; /* as sip_scan() leaves it past listen.limits.max_message */
    cr_assert(proxy_on_client_garbage(p, 7, &msg));
    cr_assert_eq(n_client, 1);
    cr_assert(starts(to_client[0].text, "SIP/2.0 513 "), "%s", to_client[0].text);
    cr_assert_eq(proxy_stats(p)->requests[SIP_METHOD_REGISTER], 1,
                 "one request in the books for the one response");
    cr_assert_eq(proxy_stats(p)->answered_by_edge[5], 1);
}

Test(proxy, answers_483_for_max_forwards_zero)
{
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "0");
    cr_assert_eq(n_upstream, 0);
    cr_assert(starts(to_client[0].text, "SIP/2.0 483 Too Many Hops\r\n"));
}

Test(proxy, answers_400_naming_a_missing_header)
{
    struct sip_msg msg;
    scan("REGISTER sip:x SIP/2.0\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\n"
         "From: <sip:a@x>;tag=1\nTo: <sip:a@x>\nCSeq: 1 REGISTER\nContent-Length: 0\n\n",
         &msg);
    proxy_on_client_request(p, 3, &msg, 0);
    cr_assert_eq(n_client, 1);
    cr_assert(starts(to_client[0].text, "SIP/2.0 400 Missing Call-ID\r\n"));
}

Test(proxy, answers_options_200_and_other_methods_501_and_never_an_ack)
{
    struct sip_msg msg;
    scan("OPTIONS sip:edge SIP/2.0\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\n"
         "From: <sip:a@x>;tag=1\nTo: <sip:edge>\nCall-ID: o1\nCSeq: 1 OPTIONS\n"
         "Content-Length: 0\n\n",
         &msg);
    proxy_on_client_request(p, 3, &msg, 0);
    scan("INVITE sip:b@x SIP/2.0\nVia: SIP/2.0/TLS h;branch=z9hG4bK2\n"
         "From: <sip:a@x>;tag=1\nTo: <sip:b@x>\nCall-ID: i1\nCSeq: 1 INVITE\n"
         "Content-Length: 0\n\n",
         &msg);
    proxy_on_client_request(p, 3, &msg, 0);
    scan("ACK sip:b@x SIP/2.0\nVia: SIP/2.0/TLS h;branch=z9hG4bK2\n"
         "From: <sip:a@x>;tag=1\nTo: <sip:b@x>;tag=2\nCall-ID: i1\nCSeq: 1 ACK\n"
         "Content-Length: 0\n\n",
         &msg);
    proxy_on_client_request(p, 3, &msg, 0);
    cr_assert_eq(n_client, 2);
    cr_assert(starts(to_client[0].text, "SIP/2.0 200 OK\r\n"));
    cr_assert_not_null(strstr(to_client[0].text, "Allow: " SIP_CHECK_ALLOW "\r\n"));
    cr_assert(starts(to_client[1].text, "SIP/2.0 501 Not Implemented\r\n"));
}

static void setup_strip(void)
{
    setup_with(false);
}

Test(proxy_strip, strips_proxy_authorization_when_configured, .init = setup_strip, .fini = teardown)
{
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    cr_assert_eq(n_upstream, 1);
    cr_assert_null(strstr(to_upstream[0].text, "Proxy-Authorization"));
    register_as(8, "bob", "Authorization: Bearer ok.bob\n", "70");
    cr_assert_eq(n_upstream, 2);
    cr_assert_null(strstr(to_upstream[1].text, "ok.bob"));
}

Test(proxy, runs_out_of_transactions_with_503_not_a_crash)
{
    for (int i = 0; i < 64; i++) {
        register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
        if (n_upstream == MAX_SENT)
            n_upstream = 0;
    }
    cr_assert_eq(proxy_stats(p)->transactions_open, 64);
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    cr_assert_eq(n_client, 1);
    cr_assert(starts(to_client[0].text, "SIP/2.0 503 "));
}

Test(proxy, sheds_registers_over_max_pending_with_503_before_any_token_check)
{
    proxy_free(p);
    struct proxy_cfg cfg = test_cfg();
    cfg.max_pending = 2;
    struct proxy_env env = {.client_send = fake_client_send, .upstream_send = fake_upstream_send};
    p = proxy_new(&cfg, &env, aw, NULL);
    cr_assert_not_null(p);
    uint64_t checks = auth_worker_counters(aw)->checks;
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    register_as(8, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    cr_assert_eq(n_upstream, 2, "two wait for UCM");
    register_as(9, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    cr_assert_eq(n_upstream, 2, "the third is not forwarded");
    cr_assert_eq(n_client, 1);
    cr_assert(starts(to_client[0].text, "SIP/2.0 503 "), "%s", to_client[0].text);
    const char *ra = header_of(to_client[0].text, "Retry-After:");
    cr_assert(ra != NULL && ra[13] >= '1' && ra[13] <= '4' && ra[14] == '\0', "%s", ra);
    cr_assert_eq(proxy_stats(p)->shed, 1);
    cr_assert_eq(auth_worker_counters(aw)->checks, checks + 2, "the shed one cost no token check");
    /* UCM answers one: there is room again */
    answer_from_ucm("SIP/2.0 200 OK", "Expires: 120\n");
    register_as(10, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    cr_assert_eq(n_upstream, 3);
    cr_assert_eq(proxy_stats(p)->shed, 1);
}

/* How long each client's request waited before the worker read it (env.client_waited_us). */
static uint64_t waited_us[16];

static uint64_t fake_waited(void *ctx, uint32_t client_id)
{
    (void)ctx;
    return client_id < 16 ? waited_us[client_id] : 0;
}

static struct policy_binding bindings[16];

static struct policy_binding *fake_binding(void *ctx, uint32_t client_id)
{
    (void)ctx;
    return client_id < 16 ? &bindings[client_id] : NULL;
}

/* A proxy with max_queue_delay_ms 50 whose environment says what each client's request waited
 * (waited_us[], all 0) and, `with_bindings`, whether its connection is bound (bindings[], none). */
static void delay_proxy(bool with_bindings)
{
    proxy_free(p);
    struct proxy_cfg cfg = test_cfg();
    cfg.max_queue_delay_ms = 50;
    struct proxy_env env = {.client_send = fake_client_send,
                            .upstream_send = fake_upstream_send,
                            .client_waited_us = fake_waited,
                            .client_binding = with_bindings ? fake_binding : NULL};
    p = proxy_new(&cfg, &env, aw, NULL);
    cr_assert_not_null(p);
    memset(waited_us, 0, sizeof(waited_us));
    memset(bindings, 0, sizeof(bindings));
}

/* Issue 15: a REGISTER that waited longer than max_queue_delay_ms between reaching the host and
 * the worker reading it is answered 503 + Retry-After at once, without a token check; one that
 * waited less, or exactly the bound, or whose wait is unknown (0), is served. */
Test(proxy, sheds_registers_that_waited_over_max_queue_delay_before_any_token_check)
{
    delay_proxy(false);
    waited_us[7] = 49999;   /* under */
    waited_us[8] = 50000;   /* the bound itself */
    waited_us[9] = 50001;   /* over */
    waited_us[10] = 0;      /* not known */
    waited_us[11] = 900000; /* far over */
    uint64_t checks = auth_worker_counters(aw)->checks;
    for (uint32_t c = 7; c <= 11; c++)
        register_as(c, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    cr_assert_eq(n_upstream, 3, "7, 8 and 10 are forwarded");
    cr_assert_eq(n_client, 2, "9 and 11 are answered at once");
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(to_client[i].id, i == 0 ? 9u : 11u);
        cr_assert(starts(to_client[i].text, "SIP/2.0 503 "), "%s", to_client[i].text);
        const char *ra = header_of(to_client[i].text, "Retry-After:");
        cr_assert(ra != NULL && ra[13] >= '1' && ra[13] <= '4' && ra[14] == '\0', "%s", ra);
    }
    cr_assert_eq(proxy_stats(p)->shed_delay, 2);
    cr_assert_eq(proxy_stats(p)->shed, 0, "not counted as upstream_pending");
    cr_assert_eq(auth_worker_counters(aw)->checks, checks + 3, "the shed ones cost no check");
}

/* A connection's first REGISTER (not bound yet: just reconnected, its handshake paid) is not shed
 * for delay; a refresh on a bound connection is. */
Test(proxy, sheds_for_delay_only_the_refreshes_of_bound_connections)
{
    delay_proxy(true);
    waited_us[7] = waited_us[8] = 900000;
    bindings[8].bound = true;
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    register_as(8, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    cr_assert_eq(n_upstream, 1, "the first REGISTER of connection 7 is forwarded");
    cr_assert_eq(n_client, 1);
    cr_assert_eq(to_client[0].id, 8u, "the refresh on bound connection 8 is shed");
    cr_assert(starts(to_client[0].text, "SIP/2.0 503 "), "%s", to_client[0].text);
    cr_assert_eq(proxy_stats(p)->shed_delay, 1);
}

/* With max_queue_delay_ms 0 the wait is not even asked: nothing is shed for it. */
Test(proxy, max_queue_delay_zero_sheds_nothing)
{
    proxy_free(p);
    struct proxy_cfg cfg = test_cfg();
    struct proxy_env env = {.client_send = fake_client_send,
                            .upstream_send = fake_upstream_send,
                            .client_waited_us = fake_waited};
    p = proxy_new(&cfg, &env, aw, NULL);
    memset(waited_us, 0, sizeof(waited_us));
    waited_us[7] = 10u * 1000000u;
    register_as(7, "alice", "Proxy-Authorization: Bearer token=\"ok.alice\"\n", "70");
    cr_assert_eq(n_upstream, 1);
    cr_assert_eq(n_client, 0);
    cr_assert_eq(proxy_stats(p)->shed_delay, 0);
}

/* Issue 10: the token's user in the first To, another user in the second. A registrar reading the
 * last To would register mallory with alice's token: the edge answers 400 and forwards nothing. */
Test(proxy, refuses_a_register_with_two_to_and_forwards_nothing)
{
    static const char *const dups[] = {
        "To: <sip:mallory@example.test>\n",
        "From: <sip:mallory@example.test>;tag=2\n",
        "Call-ID: other@192.0.2.10\n",
        "CSeq: 3 REGISTER\n",
        "Max-Forwards: 70\n",
        "Expires: 60\n",
    };
    static const char *const names[] = {"To", "From", "Call-ID", "CSeq", "Max-Forwards", "Expires"};
    for (size_t i = 0; i < sizeof(dups) / sizeof(dups[0]); i++) {
        char auth[256];
        snprintf(auth, sizeof(auth), "Proxy-Authorization: Bearer token=\"ok.alice\"\n%s", dups[i]);
        n_client = n_upstream = 0;
        register_as(7, "alice", auth, "70");
        cr_assert_eq(n_upstream, 0, "%s reached UCM", names[i]);
        cr_assert_eq(n_client, 1);
        char want[64];
        snprintf(want, sizeof(want), "SIP/2.0 400 Duplicate %s\r\n", names[i]);
        cr_assert(starts(to_client[0].text, want), "%s", to_client[0].text);
    }
}

/* Issue 10: validation comes before the 501 of a method the edge does not handle yet, and the
 * answers carry what RFC 3261 asks (Unsupported with 420). */
Test(proxy, validates_before_the_501_and_answers_420_with_unsupported)
{
    struct sip_msg msg;
    scan("INVITE sip:b@x SIP/2.0\nVia: SIP/2.0/TLS h;branch=z9hG4bK2\n"
         "From: \"Alice <sip:a@x>;tag=1\nTo: <sip:b@x>\nCall-ID: i1\nCSeq: 1 INVITE\n"
         "Content-Length: 0\n\n",
         &msg);
    proxy_on_client_request(p, 3, &msg, 0);
    scan("OPTIONS sip:edge SIP/2.0\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\n"
         "From: <sip:a@x>;tag=1\nTo: <sip:edge>\nCall-ID: o1\nCSeq: 1 OPTIONS\n"
         "Require: foo, path\nContent-Length: 0\n\n",
         &msg);
    proxy_on_client_request(p, 3, &msg, 0);
    scan("REGISTER sip:[::1 SIP/2.0\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\n"
         "From: <sip:a@x>;tag=1\nTo: <sip:a@x>\nCall-ID: r1\nCSeq: 1 REGISTER\n"
         "Content-Length: 0\n\n",
         &msg);
    proxy_on_client_request(p, 3, &msg, 0);
    cr_assert_eq(n_client, 3);
    cr_assert_eq(n_upstream, 0);
    cr_assert(starts(to_client[0].text, "SIP/2.0 400 Bad From\r\n"), "%s", to_client[0].text);
    cr_assert(starts(to_client[1].text, "SIP/2.0 420 Bad Extension\r\n"), "%s", to_client[1].text);
    cr_assert_str_eq(header_of(to_client[1].text, "Unsupported:"), "Unsupported: foo");
    cr_assert_not_null(strstr(to_client[1].text, "Call-ID: o1\r\n"));
    cr_assert(starts(to_client[2].text, "SIP/2.0 400 Bad Request-URI\r\n"), "%s",
              to_client[2].text);
}

/* Issue 12: the source budget and the failed-token hook, through the proxy. */
static uint32_t failed_calls[4];
static bool fake_source(void *ctx, uint32_t id, uint8_t *addr)
{
    (void)ctx;
    memset(addr, 0, BUDGET_ADDR_LEN);
    addr[15] = (uint8_t)id; /* one source per client id */
    return true;
}
static void fake_token_failed(void *ctx, uint32_t id)
{
    (void)ctx;
    failed_calls[id & 3]++;
}

static void budget_proxy(const struct auth_config *ac)
{
    n_client = n_upstream = 0;
    upstream_result = 0;
    gone_client = UINT32_MAX;
    memset(failed_calls, 0, sizeof(failed_calls));
    aw = auth_worker_new(ac, auth_now_ms());
    cr_assert_not_null(aw);
    struct proxy_cfg cfg = test_cfg();
    cfg.add_path = false;
    struct proxy_env env = {.client_send = fake_client_send,
                            .upstream_send = fake_upstream_send,
                            .client_source = fake_source,
                            .client_token_failed = fake_token_failed};
    p = proxy_new(&cfg, &env, aw, NULL);
    cr_assert_not_null(p);
}

static void setup_budget(void)
{
    budget_proxy(&(struct auth_config){.verify = fake_verify, .source_rate = 1, .source_burst = 2});
}

static void setup_worker_budget(void)
{
    budget_proxy(&(struct auth_config){.verify = fake_verify, .worker_rate = 1, .worker_burst = 2});
}

Test(proxy_budget, answers_503_retry_after_1_over_the_worker_budget_whatever_the_source,
     .init = setup_worker_budget, .fini = teardown)
{
    char line[128];
    for (uint32_t i = 0; i < 3; i++) { /* three clients (sources), one new bad token each */
        snprintf(line, sizeof(line), "Proxy-Authorization: Bearer token=\"garbage-%u\"\n", i);
        register_as(i, "alice", line, "70");
    }
    cr_assert_eq(n_client, 3);
    cr_assert(starts(to_client[0].text, "SIP/2.0 407 "));
    cr_assert(starts(to_client[1].text, "SIP/2.0 407 "));
    cr_assert(starts(to_client[2].text, "SIP/2.0 503 "), "%s", to_client[2].text);
    cr_assert_str_eq(header_of(to_client[2].text, "Retry-After:"), "Retry-After: 1");
    cr_assert_eq(auth_worker_counters(aw)->verified, 2, "the 503 cost no verify");
    cr_assert_eq(auth_worker_counters(aw)->overloaded, 1);
    cr_assert_eq(failed_calls[2], 0, "a 503 is not a rejected token of that client");
    /* a token verified before is answered from L1, over the budget or not */
    register_as(3, "alice", "Proxy-Authorization: Bearer token=\"garbage-0\"\n", "70");
    cr_assert(starts(to_client[3].text, "SIP/2.0 407 "));
}

Test(proxy_budget, answers_503_retry_after_1_over_the_source_budget_without_a_verify,
     .init = setup_budget, .fini = teardown)
{
    char line[128];
    for (int i = 0; i < 4; i++) {
        snprintf(line, sizeof(line), "Proxy-Authorization: Bearer token=\"garbage-%d\"\n", i);
        register_as(1, "alice", line, "70");
    }
    cr_assert_eq(n_client, 4);
    cr_assert(starts(to_client[0].text, "SIP/2.0 407 "));
    cr_assert(starts(to_client[1].text, "SIP/2.0 407 "));
    cr_assert(starts(to_client[2].text, "SIP/2.0 503 "), "%s", to_client[2].text);
    cr_assert_str_eq(header_of(to_client[2].text, "Retry-After:"), "Retry-After: 1");
    cr_assert(starts(to_client[3].text, "SIP/2.0 503 "));
    cr_assert_eq(auth_worker_counters(aw)->verified, 2, "the 503s cost no verify");
    cr_assert_eq(auth_worker_counters(aw)->throttled, 2);
    cr_assert_eq(failed_calls[1], 2, "the glue hears of each rejected token, not of the 503s");
    /* another source is not throttled, and a valid token is answered as usual */
    register_as(2, "bob", "Proxy-Authorization: Bearer token=\"ok.bob\"\n", "70");
    cr_assert_eq(n_upstream, 1);
    cr_assert_eq(failed_calls[2], 0);
}
