// SPDX-License-Identifier: MIT
// Calls through the proxy (core/calls.c, issue 9) with the worker's hooks faked: binding, both
// directions, CANCEL, hop-by-hop ACK, Record-Route, in-dialog routing by se-node, flows (430,
// 403), timers, the hand-over of a client's response to the worker that owns the transaction.
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "core/flow.h"
#include "core/policy.h"
#include "core/proxy.h"
#include "core/route.h"
#include "core/sip.h"
#include "sent.h"

#define MAX_SENT 32
#define WORKER   1

static struct sent to_client[MAX_SENT], to_ucm[MAX_SENT], posted[MAX_SENT];
static int n_client, n_ucm, n_posted;
static struct policy_binding bindings[16]; /* client ids 0..15 */
static bool client_alive[16];
static int posted_worker;
static uint64_t flow_txn; /* the txn id of the last flow_send to another worker */
static struct flow_keys keys;
static struct proxy *p;
static struct auth_worker *aw;

static int f_client_send(void *ctx, uint32_t id, const struct slice *iov, size_t n)
{
    (void)ctx;
    if (id >= 16 || !client_alive[id])
        return -ENOTCONN;
    if (n_client < MAX_SENT)
        join(&to_client[n_client++], id, iov, n);
    return 0;
}

static int f_upstream_send(void *ctx, const struct slice *iov, size_t n, struct proxy_sent *sent)
{
    (void)ctx;
    join(&to_ucm[n_ucm++], 100, iov, n);
    sent->conn_id = 100;
    return 0;
}

static struct policy_binding *f_binding(void *ctx, uint32_t id)
{
    (void)ctx;
    return id < 16 && client_alive[id] ? &bindings[id] : NULL;
}

/* Node n's connection is 100 + n; nodes 0 and 1 exist. */
static int f_pick(void *ctx, int node, struct proxy_sent *sent)
{
    (void)ctx;
    if (node > 1)
        return -EINVAL;
    int n = node < 0 ? 0 : node;
    sent->conn_id = 100 + (uint32_t)n;
    sent->node = n;
    return n;
}

static int f_peer_send(void *ctx, uint32_t conn, const struct slice *iov, size_t n)
{
    (void)ctx;
    if (conn < 100)
        return -ENOTCONN;
    if (n_ucm < MAX_SENT)
        join(&to_ucm[n_ucm++], conn, iov, n);
    return 0;
}

static int f_flow_send(void *ctx, const struct flow *f, uint64_t txn_id, const struct slice *iov,
                       size_t n)
{
    if (f->worker != WORKER) { /* another worker: handed over */
        flow_txn = txn_id;
        return 0;
    }
    uint32_t id = flow_conn_id(f);
    if (id >= 16 || bindings[id].flow_tag != f->gen)
        return -ENOTCONN;
    return f_client_send(ctx, id, iov, n) < 0 ? -ENOTCONN : 0;
}

static void f_response_post(void *ctx, unsigned worker, uint32_t client_id, const struct slice *iov,
                            size_t n)
{
    (void)ctx;
    posted_worker = (int)worker;
    join(&posted[n_posted++], client_id, iov, n);
}

static enum jwt_reason f_verify(void *ctx, const char *tok, size_t len, int64_t now,
                                struct jwt_result *out)
{
    (void)ctx;
    memset(out, 0, sizeof(*out));
    out->exp = now + 3600;
    if (len > 3 && memcmp(tok, "ok.", 3) == 0) {
        out->user_len = len - 3;
        memcpy(out->user, tok + 3, len - 3);
        return out->reason = JWT_OK;
    }
    return out->reason = JWT_E_BAD_SIGNATURE;
}

static void setup(void)
{
    n_client = n_ucm = n_posted = 0;
    posted_worker = -1;
    flow_txn = UINT64_MAX;
    memset(bindings, 0, sizeof(bindings));
    for (int i = 0; i < 16; i++) {
        client_alive[i] = true;
        bindings[i].flow_tag = 0x5eed0000u + (uint32_t)i;
    }
    cr_assert_eq(flow_keys_init(&keys), 0);
    struct auth_config ac = {.verify = f_verify};
    aw = auth_worker_new(&ac, auth_now_ms());
    cr_assert_not_null(aw);
    struct proxy_cfg cfg = {
        .worker = WORKER,
        .realm = "ccmsipline",
        .server = "sipedge/test",
        .via_host = "edge.example.test",
        .via_port = 5061,
        .ucm_host = "edge-int.example.test",
        .ucm_port = 5062,
        .add_path = true,
        .forward_auth = true,
        .max_transactions = 64,
        .flow_keys = &keys,
        .t1_ms = 500,
        .timer_c_ms = 180000,
        .max_txn_per_conn = 2,
    };
    struct proxy_env env = {.client_send = f_client_send,
                            .upstream_send = f_upstream_send,
                            .client_binding = f_binding,
                            .upstream_pick = f_pick,
                            .peer_send = f_peer_send,
                            .flow_send = f_flow_send,
                            .response_post = f_response_post};
    p = proxy_new(&cfg, &env, aw, NULL);
    cr_assert_not_null(p);
}

static void teardown(void)
{
    proxy_free(p);
    auth_worker_free(aw);
}

TestSuite(calls, .init = setup, .fini = teardown);

static char bufs[4][8192];
static struct sip_header hdrs[4][64];

/* Scans `text` (LF line ends become CRLF) into `msg`, in buffer `slot` (0..3). */
static void scan_in(int slot, const char *text, struct sip_msg *msg)
{
    char *buf = bufs[slot];
    size_t n = 0;
    for (const char *c = text; *c; c++) {
        if (*c == '\n')
            buf[n++] = '\r';
        buf[n++] = *c;
    }
    sip_msg_init(msg, hdrs[slot], 64);
    ssize_t r = sip_scan(buf, n, 0, msg);
    cr_assert_gt(r, 0, "scan: %s", sip_err_name(msg->err));
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The value of the first header `name` ("Via: ") in `text`, up to CRLF. */
static const char *hdr(const char *text, const char *name)
{
    static char line[2048];
    const char *h = strstr(text, name);
    cr_assert_not_null(h, "no %s in:\n%s", name, text);
    h += strlen(name);
    size_t n = strcspn(h, "\r");
    memcpy(line, h, n);
    line[n] = 0;
    return line;
}

/* Client `cid` registers as `user`; UCM answers `status`. Returns the Path the edge wrote. */
static const char *register_client(uint32_t cid, const char *user, int status, bool dereg)
{
    static char path[512];
    char text[2048];
    snprintf(text, sizeof(text),
             "REGISTER sip:ucm.example.test SIP/2.0\n"
             "Via: SIP/2.0/TLS 192.0.2.%u:5000;branch=z9hG4bKreg%u\n"
             "From: <sip:%s@example.test>;tag=r\nTo: <sip:%s@example.test>\n"
             "Call-ID: reg-%u\nCSeq: 1 REGISTER\n"
             "Contact: <sip:%s@192.0.2.%u:5000;transport=tls>%s\n"
             "Proxy-Authorization: Bearer ok.%s\nContent-Length: 0\n\n",
             cid, cid, user, user, cid, user, cid, dereg ? ";expires=0" : "", user);
    struct sip_msg msg;
    scan_in(0, text, &msg);
    int before = n_ucm;
    proxy_on_client_request(p, cid, &msg, 1000);
    cr_assert_eq(n_ucm, before + 1);
    snprintf(path, sizeof(path), "%s", hdr(to_ucm[n_ucm - 1].text, "Path: "));
    /* UCM's answer: the request's Vias, ours on top */
    const char *f = to_ucm[n_ucm - 1].text;
    char via0[512], resp[4096];
    snprintf(via0, sizeof(via0), "%s", hdr(f, "Via: "));
    snprintf(resp, sizeof(resp),
             "SIP/2.0 %d X\nVia: %s\nVia: SIP/2.0/TLS 192.0.2.%u:5000;branch=z9hG4bKreg%u\n"
             "From: <sip:%s@example.test>;tag=r\nTo: <sip:%s@example.test>;tag=u\n"
             "Call-ID: reg-%u\nCSeq: 1 REGISTER\nContent-Length: 0\n\n",
             status, via0, cid, cid, user, user, cid);
    scan_in(1, resp, &msg);
    proxy_on_upstream_message(p, 100, 0, &msg, 1001);
    return path;
}

static void invite_from(uint32_t cid, const char *from_user, const char *extra)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "INVITE sip:bob@example.test SIP/2.0\n"
             "Via: SIP/2.0/TLS 192.0.2.%u:5000;branch=z9hG4bKinv%u\n"
             "Max-Forwards: 70\n"
             "From: <sip:%s@example.test>;tag=a1\nTo: <sip:bob@example.test>\n"
             "Call-ID: call-%u\nCSeq: 1 INVITE\nContact: <sip:%s@192.0.2.%u:5000;transport=tls>\n"
             "%sContent-Length: 5\n\nv=0\n",
             cid, cid, from_user, cid, from_user, cid, extra);
    struct sip_msg msg;
    scan_in(0, text, &msg);
    proxy_on_client_request(p, cid, &msg, 2000);
}

/* UCM answers the last request it got with `status_line`, To tag `tag`, extra lines `extra`. */
static void ucm_answers(const char *status_line, const char *extra)
{
    const char *f = to_ucm[n_ucm - 1].text;
    char resp[4096], vias[1024];
    /* every Via line of the request, in order */
    size_t vn = 0;
    for (const char *v = strstr(f, "\r\nVia: "); v != NULL; v = strstr(v + 2, "\r\nVia: ")) {
        size_t l = strcspn(v + 2, "\r");
        memcpy(vias + vn, v + 2, l);
        vn += l;
        vias[vn++] = '\n';
    }
    vias[vn] = 0;
    char from[256], to[256], callid[128], cseq[64];
    snprintf(from, sizeof(from), "%s", hdr(f, "From: "));
    snprintf(to, sizeof(to), "%s", hdr(f, "To: "));
    snprintf(callid, sizeof(callid), "%s", hdr(f, "Call-ID: "));
    snprintf(cseq, sizeof(cseq), "%s", hdr(f, "CSeq: "));
    snprintf(resp, sizeof(resp),
             "%s\n%sFrom: %s\nTo: %s%s\nCall-ID: %s\nCSeq: %s\n%sContent-Length: 0\n\n",
             status_line, vias, from, to, strstr(to, "tag=") ? "" : ";tag=b1", callid, cseq, extra);
    struct sip_msg msg;
    scan_in(1, resp, &msg);
    proxy_on_upstream_message(p, 100, 0, &msg, 2100);
}

Test(calls, an_unbound_connection_is_challenged_and_a_bound_one_must_use_its_own_user)
{
    invite_from(3, "alice", "");
    cr_assert_eq(n_client, 1);
    cr_assert(starts(to_client[0].text, "SIP/2.0 407 "), "%s", to_client[0].text);
    cr_assert_not_null(
        strstr(to_client[0].text, "Proxy-Authenticate: Bearer realm=\"ccmsipline\""));
    cr_assert_eq(n_ucm, 0);
    register_client(3, "alice", 403, false); /* UCM refused: still unbound */
    n_client = 0;
    invite_from(3, "alice", "");
    cr_assert(starts(to_client[0].text, "SIP/2.0 407 "));
    register_client(3, "alice", 200, false);
    n_client = 0;
    invite_from(3, "mallory", "");
    cr_assert_eq(n_client, 1);
    cr_assert(starts(to_client[0].text, "SIP/2.0 403 "), "%s", to_client[0].text);
    cr_assert_eq(n_ucm, 2); /* the two REGISTERs only */
    cr_assert_eq(proxy_stats(p)->policy_refused[POLICY_UNBOUND], 2);
    cr_assert_eq(proxy_stats(p)->policy_refused[POLICY_WRONG_USER], 1);
}

Test(calls, a_de_register_unbinds)
{
    register_client(4, "alice", 200, false);
    register_client(4, "alice", 200, true);
    n_client = 0;
    invite_from(4, "alice", "");
    cr_assert(starts(to_client[0].text, "SIP/2.0 407 "), "%s", to_client[0].text);
}

Test(calls, a_request_with_its_own_token_is_verified_and_forwarded)
{
    invite_from(5, "alice", "Proxy-Authorization: Bearer ok.alice\n");
    cr_assert_eq(n_ucm, 1);
    cr_assert(starts(to_ucm[0].text, "INVITE sip:bob@example.test SIP/2.0\r\n"));
    n_client = n_ucm = 0;
    invite_from(6, "alice", "Proxy-Authorization: Bearer ok.mallory\n");
    cr_assert_eq(n_ucm, 0);
    cr_assert(starts(to_client[0].text, "SIP/2.0 403 "), "%s", to_client[0].text);
}

Test(calls, an_invite_gets_100_our_via_and_double_record_route_then_relays_responses)
{
    register_client(3, "alice", 200, false);
    n_client = n_ucm = 0;
    invite_from(3, "alice", "");
    cr_assert_eq(n_client, 1);
    cr_assert(starts(to_client[0].text, "SIP/2.0 100 Trying\r\n"));
    cr_assert_null(strstr(hdr(to_client[0].text, "To: "), "tag="), "a 100 carries no To tag");
    cr_assert_eq(n_ucm, 1);
    const char *f = to_ucm[0].text;
    cr_assert_eq(to_ucm[0].id, 100);
    cr_assert(starts(f, "INVITE sip:bob@example.test SIP/2.0\r\n"
                        "Via: SIP/2.0/TLS edge-int.example.test:5062;alias;branch=z9hG4bK-st"),
              "%s", f);
    cr_assert_not_null(strstr(f, "Max-Forwards: 69\r\n"));
    /* UCM side first (the UAS reads top-down), with the node; then the client's flow */
    const char *rr = hdr(f, "Record-Route: ");
    cr_assert(starts(rr, "<sip:edge-int.example.test:5062;transport=tls;lr;se-node=0>, <sip:"),
              "%s", rr);
    cr_assert_not_null(strstr(rr, "@edge.example.test:5061;transport=tls;lr>"), "%s", rr);
    cr_assert_not_null(strstr(f, "\r\n\r\nv=0\r\n"), "the body goes along untouched");
    ucm_answers("SIP/2.0 180 Ringing", "");
    cr_assert_eq(n_client, 2);
    cr_assert(starts(to_client[1].text, "SIP/2.0 180 Ringing\r\n"));
    cr_assert_null(strstr(to_client[1].text, "z9hG4bK-st"), "our Via is popped");
    cr_assert_not_null(strstr(to_client[1].text, "branch=z9hG4bKinv3"));
    ucm_answers("SIP/2.0 200 OK", "Record-Route: <sip:x>\n");
    cr_assert_eq(n_client, 3);
    cr_assert(starts(to_client[2].text, "SIP/2.0 200 OK\r\n"));
    cr_assert_eq(n_ucm, 1, "no ACK from the edge for a 2xx");
    cr_assert_eq(proxy_stats(p)->calls_open, 1, "Accepted (Timer L) absorbs 2xx retransmissions");
    cr_assert_eq(proxy_stats(p)->calls_pending, 0, "answered: it does not hold a drain up");
    proxy_tick(p, 2100 + 32001);
    cr_assert_eq(proxy_stats(p)->calls_open, 0);
}

Test(calls, a_busy_answer_is_acked_hop_by_hop_and_the_clients_ack_absorbed)
{
    register_client(3, "alice", 200, false);
    n_client = n_ucm = 0;
    invite_from(3, "alice", "");
    ucm_answers("SIP/2.0 486 Busy Here", "");
    cr_assert(starts(to_client[1].text, "SIP/2.0 486 Busy Here\r\n"));
    cr_assert_eq(n_ucm, 2);
    const char *ack = to_ucm[1].text;
    cr_assert(starts(ack, "ACK sip:bob@example.test SIP/2.0\r\n"), "%s", ack);
    cr_assert_str_eq(hdr(ack, "Via: "), hdr(to_ucm[0].text, "Via: "));
    cr_assert_not_null(strstr(hdr(ack, "To: "), "tag=b1"));
    cr_assert_not_null(strstr(ack, "CSeq: 1 ACK\r\n"));
    struct sip_msg msg;
    scan_in(0,
            "ACK sip:bob@example.test SIP/2.0\n"
            "Via: SIP/2.0/TLS 192.0.2.3:5000;branch=z9hG4bKinv3\n"
            "From: <sip:alice@example.test>;tag=a1\nTo: <sip:bob@example.test>;tag=b1\n"
            "Call-ID: call-3\nCSeq: 1 ACK\nContent-Length: 0\n\n",
            &msg);
    proxy_on_client_request(p, 3, &msg, 2200);
    cr_assert_eq(n_ucm, 2, "the client's ACK of a non-2xx stops here");
    cr_assert_eq(proxy_stats(p)->calls_open, 0);
}

Test(calls, cancel_is_answered_hop_by_hop_and_sent_on_the_invites_branch)
{
    register_client(3, "alice", 200, false);
    n_client = n_ucm = 0;
    invite_from(3, "alice", "");
    ucm_answers("SIP/2.0 180 Ringing", "");
    struct sip_msg msg;
    scan_in(0,
            "CANCEL sip:bob@example.test SIP/2.0\n"
            "Via: SIP/2.0/TLS 192.0.2.3:5000;branch=z9hG4bKinv3\n"
            "From: <sip:alice@example.test>;tag=a1\nTo: <sip:bob@example.test>\n"
            "Call-ID: call-3\nCSeq: 1 CANCEL\nContent-Length: 0\n\n",
            &msg);
    proxy_on_client_request(p, 3, &msg, 2200);
    cr_assert(starts(to_client[2].text, "SIP/2.0 200 OK\r\n"), "%s", to_client[2].text);
    cr_assert_not_null(strstr(to_client[2].text, "CSeq: 1 CANCEL\r\n"));
    cr_assert_eq(n_ucm, 2);
    const char *c = to_ucm[1].text;
    cr_assert(starts(c, "CANCEL sip:bob@example.test SIP/2.0\r\n"), "%s", c);
    cr_assert_str_eq(hdr(c, "Via: "), hdr(to_ucm[0].text, "Via: "));
    /* UCM: 200 to the CANCEL (absorbed), 487 to the INVITE (relayed and ACKed) */
    ucm_answers("SIP/2.0 200 OK", "");
    cr_assert_eq(n_client, 3);
    n_ucm = 1; /* answer the INVITE now */
    ucm_answers("SIP/2.0 487 Request Terminated", "");
    cr_assert(starts(to_client[3].text, "SIP/2.0 487 Request Terminated\r\n"));
    cr_assert(starts(to_ucm[1].text, "ACK "), "%s", to_ucm[1].text);
    /* a CANCEL for nothing: 481 */
    scan_in(0,
            "CANCEL sip:bob@example.test SIP/2.0\n"
            "Via: SIP/2.0/TLS 192.0.2.3:5000;branch=z9hG4bKnothing\n"
            "From: <sip:alice@example.test>;tag=a1\nTo: <sip:bob@example.test>\n"
            "Call-ID: call-9\nCSeq: 1 CANCEL\nContent-Length: 0\n\n",
            &msg);
    proxy_on_client_request(p, 3, &msg, 2300);
    cr_assert(starts(to_client[n_client - 1].text, "SIP/2.0 481 "));
}

Test(calls, one_connection_has_at_most_max_txn_per_conn_requests_unanswered)
{
    register_client(3, "alice", 200, false);
    n_client = n_ucm = 0;
    char text[1024];
    struct sip_msg msg;
    for (int i = 0; i < 3; i++) {
        snprintf(text, sizeof(text),
                 "MESSAGE sip:bob@example.test SIP/2.0\n"
                 "Via: SIP/2.0/TLS 192.0.2.3:5000;branch=z9hG4bKm%d\n"
                 "From: <sip:alice@example.test>;tag=a1\nTo: <sip:bob@example.test>\n"
                 "Call-ID: m%d\nCSeq: 1 MESSAGE\nContent-Length: 0\n\n",
                 i, i);
        scan_in(0, text, &msg);
        proxy_on_client_request(p, 3, &msg, 2000);
    }
    cr_assert_eq(n_ucm, 2);
    cr_assert_eq(n_client, 1);
    cr_assert(starts(to_client[0].text, "SIP/2.0 503 Too Many Transactions On This Connection\r\n"),
              "%s", to_client[0].text);
    cr_assert_not_null(strstr(to_client[0].text, "Retry-After: 1\r\n"));
    cr_assert_eq(proxy_stats(p)->txn_limit, 1);
    ucm_answers("SIP/2.0 200 OK", ""); /* one answered: room for one more */
    scan_in(0, text, &msg);
    proxy_on_client_request(p, 3, &msg, 2100);
    cr_assert_eq(n_ucm, 3);
    /* another connection has its own count */
    register_client(4, "bob", 200, false);
}

Test(calls, a_lost_upstream_connection_is_a_503_at_once)
{
    register_client(3, "alice", 200, false);
    n_client = 0;
    invite_from(3, "alice", "");
    ucm_answers("SIP/2.0 180 Ringing", "");
    proxy_on_upstream_gone(p, 101, 2200); /* another connection: nothing */
    cr_assert_eq(n_client, 2);
    proxy_on_upstream_gone(p, 100, 2200);
    cr_assert_eq(n_client, 3);
    cr_assert(starts(to_client[2].text, "SIP/2.0 503 Service Unavailable\r\n"), "%s",
              to_client[2].text);
    cr_assert_eq(proxy_stats(p)->calls_open, 0);
}

Test(calls, no_answer_from_ucm_is_a_408_from_the_edge)
{
    register_client(3, "alice", 200, false);
    n_client = 0;
    invite_from(3, "alice", "");
    cr_assert_eq(proxy_stats(p)->calls_pending, 1);
    proxy_tick(p, 2000 + 32001); /* Timer B */
    cr_assert_eq(proxy_stats(p)->calls_pending, 0);
    cr_assert_eq(proxy_stats(p)->calls_open, 0);
    cr_assert_eq(n_client, 2);
    cr_assert(starts(to_client[1].text, "SIP/2.0 408 Request Timeout\r\n"));
    cr_assert_not_null(strstr(to_client[1].text, "branch=z9hG4bKinv3"));
    cr_assert_null(strstr(to_client[1].text, "z9hG4bK-st"), "not our own Via");
}

/* A request from UCM as Kamailio relays it after lookup: Route = the Path, R-URI = Contact. */
static void ucm_invite(const char *route, const char *user, uint32_t conn)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "INVITE sip:%s@192.0.2.3:5000;transport=tls SIP/2.0\n"
             "Record-Route: <sip:ucm1.example.test:5091;transport=tls;lr>\n"
             "Via: SIP/2.0/TLS ucm1.example.test:5091;branch=z9hG4bKucm1\n"
             "Via: SIP/2.0/TLS 10.0.0.9:5060;branch=z9hG4bKcaller\n"
             "Route: %s\nMax-Forwards: 69\n"
             "From: <sip:carol@example.test>;tag=c1\nTo: <sip:%s@example.test>\n"
             "Call-ID: in-1\nCSeq: 7 INVITE\nContact: <sip:carol@10.0.0.9>\n"
             "Content-Length: 0\n\n",
             user, route, user);
    struct sip_msg msg;
    scan_in(2, text, &msg);
    proxy_on_upstream_message(p, conn, 0, &msg, 3000);
}

Test(calls, ucm_reaches_a_client_by_the_flow_in_its_path)
{
    char path[512];
    snprintf(path, sizeof(path), "%s", register_client(6, "bob", 200, false));
    n_client = n_ucm = 0;
    ucm_invite(path, "bob", 101);
    cr_assert_eq(n_ucm, 1);
    cr_assert(starts(to_ucm[0].text, "SIP/2.0 100 Trying\r\n"));
    cr_assert_eq(to_ucm[0].id, 101, "answered on the connection it came on");
    cr_assert_eq(n_client, 1);
    cr_assert_eq(to_client[0].id, 6);
    const char *f = to_client[0].text;
    cr_assert(starts(f, "INVITE sip:bob@192.0.2.3:5000;transport=tls SIP/2.0\r\n"), "%s", f);
    cr_assert(starts(hdr(f, "Via: "), "SIP/2.0/TLS edge.example.test:5061;branch=z9hG4bK-st"));
    cr_assert_null(strstr(f, "\r\nRoute:"), "our Route entry is removed");
    /* client side first for the client (the UAS) */
    const char *rr = hdr(f, "Record-Route: ");
    cr_assert(starts(rr, "<sip:"), "%s", rr);
    cr_assert_not_null(strstr(rr, "@edge.example.test:5061;transport=tls;lr>, "
                                  "<sip:edge-int.example.test:5062;transport=tls;lr;se-node=0>"),
                       "%s", rr);
    /* the client answers on its connection: relayed to UCM without our Via */
    char resp[4096], via0[512];
    snprintf(via0, sizeof(via0), "%s", hdr(f, "Via: "));
    snprintf(resp, sizeof(resp),
             "SIP/2.0 200 OK\nVia: %s\n"
             "Via: SIP/2.0/TLS ucm1.example.test:5091;branch=z9hG4bKucm1\n"
             "Via: SIP/2.0/TLS 10.0.0.9:5060;branch=z9hG4bKcaller\n"
             "From: <sip:carol@example.test>;tag=c1\nTo: <sip:bob@example.test>;tag=bb\n"
             "Call-ID: in-1\nCSeq: 7 INVITE\nContent-Length: 0\n\n",
             via0);
    struct sip_msg msg;
    scan_in(1, resp, &msg);
    proxy_on_client_response(p, 7, &msg, 3100); /* not the flow it went to: dropped */
    cr_assert_eq(n_ucm, 1);
    /* a response holding only our Via has nobody to go to (RFC 3261 §16.7 step 3) */
    char lone[2048];
    snprintf(lone, sizeof(lone),
             "SIP/2.0 180 Ringing\nVia: %s\nFrom: <sip:carol@example.test>;tag=c1\n"
             "To: <sip:bob@example.test>;tag=bb\nCall-ID: in-1\nCSeq: 7 INVITE\n"
             "Content-Length: 0\n\n",
             via0);
    struct sip_msg lmsg;
    scan_in(3, lone, &lmsg);
    proxy_on_client_response(p, 6, &lmsg, 3100);
    cr_assert_eq(n_ucm, 1);
    proxy_on_client_response(p, 6, &msg, 3100);
    cr_assert_eq(n_ucm, 2);
    cr_assert_eq(to_ucm[1].id, 101);
    cr_assert(starts(to_ucm[1].text, "SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS ucm1.example.test"), "%s",
              to_ucm[1].text);
}

Test(calls, a_gone_flow_is_430_and_a_forged_one_403)
{
    char path[512];
    snprintf(path, sizeof(path), "%s", register_client(6, "bob", 200, false));
    client_alive[6] = false;
    n_ucm = 0;
    ucm_invite(path, "bob", 101);
    cr_assert_eq(n_ucm, 1);
    cr_assert(starts(to_ucm[0].text, "SIP/2.0 430 Flow Failed\r\n"), "%s", to_ucm[0].text);
    ucm_invite("<sip:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@edge-int.example.test:5062;transport=tls;lr>",
               "bob", 101);
    cr_assert(starts(to_ucm[1].text, "SIP/2.0 403 "), "%s", to_ucm[1].text);
    ucm_invite("<sip:ucm9.example.test;lr>", "bob", 101); /* not through our Path */
    cr_assert(starts(to_ucm[2].text, "SIP/2.0 404 "), "%s", to_ucm[2].text);
    cr_assert_eq(proxy_stats(p)->flow_failed, 1);
    cr_assert_eq(proxy_stats(p)->flow_forged, 1);
}

Test(calls, ucms_ack_of_the_403_to_a_forged_token_is_neither_answered_nor_counted)
{
    static const char forged[] =
        "<sip:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@edge-int.example.test:5062;transport=tls;lr>";
    n_ucm = 0;
    ucm_invite(forged, "bob", 101);
    cr_assert_eq(n_ucm, 1);
    cr_assert(starts(to_ucm[0].text, "SIP/2.0 403 "), "%s", to_ucm[0].text);
    char text[2048];
    snprintf(text, sizeof(text),
             "ACK sip:bob@192.0.2.3:5000;transport=tls SIP/2.0\n"
             "Via: SIP/2.0/TLS ucm1.example.test:5091;branch=z9hG4bKucm1\n"
             "Route: %s\nMax-Forwards: 69\n"
             "From: <sip:carol@example.test>;tag=c1\nTo: <sip:bob@example.test>;tag=e1\n"
             "Call-ID: in-1\nCSeq: 7 ACK\nContent-Length: 0\n\n",
             forged);
    struct sip_msg msg;
    scan_in(2, text, &msg);
    proxy_on_upstream_message(p, 101, 0, &msg, 3001);
    cr_assert_eq(n_ucm, 1, "an ACK is never answered");
    cr_assert_eq(proxy_stats(p)->flow_forged, 1, "the ACK is no second forged request");
}

Test(calls, a_stale_flow_naming_a_newer_connection_in_the_same_slot_is_430)
{
    char path[512];
    snprintf(path, sizeof(path), "%s", register_client(6, "bob", 200, false));
    bindings[6].flow_tag ^= 1; /* the slot now holds another connection (another random tag) */
    n_ucm = n_client = 0;
    ucm_invite(path, "bob", 101);
    cr_assert_eq(n_client, 0, "never delivered to the newer connection");
    cr_assert(starts(to_ucm[0].text, "SIP/2.0 430 Flow Failed\r\n"), "%s", to_ucm[0].text);
}

Test(calls, a_flow_on_another_worker_is_handed_over_and_its_failure_is_430)
{
    struct flow other = {.worker = 0, .slot = 9, .gen = 2};
    struct route_addr ucm = {SLICE_LIT("edge-int.example.test"), 5062};
    char path[256];
    ssize_t n = route_build_path(&ucm, &keys.cur, &other, path, sizeof(path));
    cr_assert_gt(n, 0);
    path[n] = 0;
    n_ucm = 0;
    ucm_invite(path, "bob", 101);
    cr_assert_neq(flow_txn, UINT64_MAX, "handed over with its transaction id");
    cr_assert_eq(n_ucm, 1); /* the 100 */
    proxy_on_flow_failed(p, flow_txn, 3050);
    cr_assert_eq(n_ucm, 2);
    cr_assert(starts(to_ucm[1].text, "SIP/2.0 430 Flow Failed\r\n"), "%s", to_ucm[1].text);
    proxy_on_flow_failed(p, flow_txn, 3060); /* stale: nothing */
    cr_assert_eq(n_ucm, 2);
}

Test(calls, a_clients_answer_for_another_workers_transaction_is_handed_over)
{
    struct sip_msg msg;
    scan_in(1,
            "SIP/2.0 200 OK\n"
            "Via: SIP/2.0/TLS edge.example.test:5061;branch=z9hG4bK-st0123abcd.0.5\n"
            "Via: SIP/2.0/TLS ucm1.example.test:5091;branch=z9hG4bKucm1\n"
            "From: <sip:carol@example.test>;tag=c1\nTo: <sip:bob@example.test>;tag=bb\n"
            "Call-ID: in-1\nCSeq: 7 INVITE\nContent-Length: 0\n\n",
            &msg);
    proxy_on_client_response(p, 6, &msg, 3100);
    cr_assert_eq(n_posted, 1);
    cr_assert_eq(posted_worker, 0);
    cr_assert_eq(posted[0].id, 6);
    cr_assert(starts(posted[0].text, "SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS edge.example.test"));
}

Test(calls, in_dialog_requests_follow_the_route_set_to_the_dialogs_node)
{
    register_client(3, "alice", 200, false);
    struct flow mine = flow_of_conn(WORKER, 3, bindings[3].flow_tag);
    char tok[FLOW_TOKEN_LEN + 1];
    cr_assert_eq(flow_encode(&keys.cur, &mine, tok, sizeof(tok)), FLOW_TOKEN_LEN);
    tok[FLOW_TOKEN_LEN] = 0;
    char text[2048];
    snprintf(text, sizeof(text),
             "BYE sip:bob@10.0.0.20:5060 SIP/2.0\n"
             "Via: SIP/2.0/TLS 192.0.2.3:5000;branch=z9hG4bKbye3\n"
             "Route: <sip:%s@edge.example.test:5061;transport=tls;lr>, "
             "<sip:edge-int.example.test:5062;transport=tls;lr;se-node=1>\n"
             "Route: <sip:ucm2.example.test:5091;transport=tls;lr>\n"
             "From: <sip:alice@example.test>;tag=a1\nTo: <sip:bob@example.test>;tag=b1\n"
             "Call-ID: call-3\nCSeq: 2 BYE\nContent-Length: 0\n\n",
             tok);
    struct sip_msg msg;
    scan_in(0, text, &msg);
    n_ucm = 0;
    proxy_on_client_request(p, 3, &msg, 5000);
    cr_assert_eq(n_ucm, 1);
    cr_assert_eq(to_ucm[0].id, 101, "node 1's connection");
    const char *f = to_ucm[0].text;
    cr_assert_str_eq(hdr(f, "Route: "), "<sip:ucm2.example.test:5091;transport=tls;lr>");
    cr_assert_null(strstr(f, "edge.example.test:5061;transport=tls;lr>"), "%s", f);
    cr_assert_null(strstr(f, "Record-Route"), "not dialog-creating");
    /* the 2xx ACK is end to end: routed, never answered, no transaction */
    snprintf(text, sizeof(text),
             "ACK sip:bob@10.0.0.20:5060 SIP/2.0\n"
             "Via: SIP/2.0/TLS 192.0.2.3:5000;branch=z9hG4bKack3\n"
             "Route: <sip:%s@edge.example.test:5061;transport=tls;lr>, "
             "<sip:edge-int.example.test:5062;transport=tls;lr;se-node=1>\n"
             "From: <sip:alice@example.test>;tag=a1\nTo: <sip:bob@example.test>;tag=b1\n"
             "Call-ID: call-3\nCSeq: 1 ACK\nContent-Length: 0\n\n",
             tok);
    scan_in(0, text, &msg);
    int before = n_client;
    proxy_on_client_request(p, 3, &msg, 5001);
    cr_assert_eq(n_ucm, 2);
    cr_assert(starts(to_ucm[1].text, "ACK sip:bob@10.0.0.20:5060 SIP/2.0\r\n"));
    cr_assert(starts(hdr(to_ucm[1].text, "Via: "),
                     "SIP/2.0/TLS edge-int.example.test:5062;alias;branch=z9hG4bK-sa."));
    cr_assert_eq(n_client, before);
}
