// SPDX-License-Identifier: MIT
// Calls through the edge (issue 9): every request but REGISTER and the edge's own OPTIONS, both
// ways, as a transaction-stateful record-routing proxy (RFC 3261 §16; docs/internals/calls.md).
// Client → UCM: binding (core/policy.h), routing (core/route.h), our Via with `alias`, double
// Record-Route, to the UCM node of the dialog. UCM → client: the Route's flow token names the
// client connection, on whichever worker owns it. The transaction table is core/txn.h's.
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/proxy_priv.h"
#include "core/sip_build.h"
#include "core/sip_parse.h"
#include "core/txn_hop.h"

#define CALL_PREFIX     "z9hG4bK-st" /* txn_branch(): stateful call transactions */
#define ACK_PREFIX      "z9hG4bK-sa" /* our branch on a 2xx ACK (stateless, RFC 3261 §16.11) */
#define CALLS_UCM_ID    UINT32_MAX   /* the txn table's sender id of every UCM-side request */
#define CALLS_IOV_MAX   (PROXY_IOV_MAX + 2 * ROUTE_MAX_VALUES + 8)
#define CALLS_EDITS_MAX (2 * ROUTE_MAX_VALUES + 2)
#define CALLS_HOP_MAX   8192       /* a CANCEL or ACK the edge builds */
#define CALLS_NO_TXN    UINT64_MAX /* a stateless forward (a 2xx ACK): no transaction id */

/* ---- small helpers ------------------------------------------------------------------------ */

static struct call_slot *slot_of(struct proxy *p, uint64_t id)
{
    return &p->calls[(uint32_t)id];
}

/* The sender of slot `s` has its final answer: the transaction no longer holds up a drain. */
static void mark_answered(struct proxy *p, struct call_slot *s)
{
    if (!s->answered) {
        s->answered = true;
        p->stats.calls_pending--;
        struct policy_binding *b =
            s->to_client ? NULL : p->env.client_binding(p->env.ctx, s->sender);
        if (b != NULL && b->flow_tag == s->sender_tag && b->open_txns > 0)
            b->open_txns--;
    }
}

/* Slot `i` holds a live transaction (its id names it and the table says it is live). */
static bool slot_live(struct proxy *p, uint32_t i)
{
    const struct call_slot *s = &p->calls[i];
    return (uint32_t)s->id == i && txn_get(p->tb, s->id) != NULL;
}

static void slot_clear(struct proxy *p, struct call_slot *s)
{
    mark_answered(p, s);
    free(s->req);
    free(s->fwd);
    memset(s, 0, sizeof(*s));
    p->stats.calls_open--;
}

static bool has_prefix(struct slice s, const char *pre)
{
    size_t n = strlen(pre);
    return s.len >= n && memcmp(s.base, pre, n) == 0;
}

/* The sent-by of Via value `top` ("host[:port]" as written), for transaction matching. */
static struct slice sent_by_of(const struct sip_via *via, struct slice top)
{
    const char *b = via->host.base, *e = top.base + top.len;
    const char *semi = memchr(b, ';', (size_t)(e - b));
    if (semi != NULL)
        e = semi;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    return slice_make(b, (size_t)(e - b));
}

/* Copies the first `len` bytes of gather list `iov[0..n)` into a new buffer. */
static char *flatten(const struct slice *iov, size_t n, size_t len)
{
    char *out = malloc(len > 0 ? len : 1), *w = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n && (size_t)(w - out) < len; i++) {
        size_t take = iov[i].len < len - (size_t)(w - out) ? iov[i].len : len - (size_t)(w - out);
        memcpy(w, iov[i].base, take);
        w += take;
    }
    return out;
}

/* Re-indexes a headers-only copy (Content-Length says more: SIP_INCOMPLETE is fine). */
static bool rescan(struct proxy *p, char *buf, uint32_t len, struct sip_msg *msg)
{
    if (buf == NULL)
        return false;
    sip_msg_init(msg, p->hdrs, PROXY_MAX_HEADERS);
    msg->limits.max_size = (size_t)len + (1u << 24);
    msg->limits.max_body = 1u << 24;
    msg->limits.max_line = len;
    ssize_t r = sip_scan(buf, len, 0, msg);
    return r > 0 || (r == SIP_INCOMPLETE && msg->header_len > 0);
}

/* The edge's own answer to a request UCM sent on connection `conn`. */
static void ucm_answer(struct proxy *p, uint32_t conn, int node, const struct sip_msg *req,
                       int status, const char *reason, const struct slice *extra, size_t n_extra)
{
    ssize_t len = proxy_build_response(p, req, status, reason, extra, n_extra);
    if (len < 0)
        return;
    struct slice iov = slice_make(p->resp, (size_t)len);
    int r = p->env.peer_send(p->env.ctx, conn, &iov, 1);
    if (r == -ENOTCONN && node >= 0) { /* RFC 3261 §18.2.2: another connection to that node */
        struct proxy_sent sent = {0};
        if (p->env.upstream_pick(p->env.ctx, node, &sent) >= 0)
            r = p->env.peer_send(p->env.ctx, sent.conn_id, &iov, 1);
    }
    if (r < 0) {
        p->stats.drop_client_gone++;
        metrics_inc(p->shard, METRIC_SIP_DROPPED, METRICS_DROP_CLIENT_GONE);
        return;
    }
    proxy_count_response(p, req->method, status, false);
}

/* A message to the sender of transaction slot `s` (the client `client_id`, or UCM). */
static int to_sender(struct proxy *p, const struct call_slot *s, uint32_t client_id,
                     const struct slice *iov, size_t n)
{
    if (!s->to_client)
        return p->env.client_send(p->env.ctx, client_id, iov, n);
    int r = p->env.peer_send(p->env.ctx, s->sender, iov, n);
    if (r == -ENOTCONN && s->node >= 0) {
        struct proxy_sent sent = {0};
        if (p->env.upstream_pick(p->env.ctx, s->node, &sent) >= 0)
            r = p->env.peer_send(p->env.ctx, sent.conn_id, iov, n);
    }
    return r;
}

/* A request to the next hop of transaction `id` (UCM's connection, or the client's flow). */
static int to_next(struct proxy *p, const struct call_slot *s, uint64_t id, const struct slice *iov,
                   size_t n)
{
    if (s->to_client)
        return p->env.flow_send(p->env.ctx, &s->flow, id, iov, n);
    return p->env.peer_send(p->env.ctx, s->next_conn, iov, n);
}

/* The edge's own final answer to the sender of transaction slot `s`. */
static void answer_sender(struct proxy *p, struct call_slot *s, uint32_t client_id, int status,
                          const char *reason)
{
    mark_answered(p, s);
    struct sip_msg m;
    if (!rescan(p, s->req, s->req_len, &m))
        return;
    ssize_t len = proxy_build_response(p, &m, status, reason, NULL, 0);
    if (len < 0)
        return;
    struct slice iov = slice_make(p->resp, (size_t)len);
    if (to_sender(p, s, client_id, &iov, 1) < 0) {
        p->stats.drop_client_gone++;
        metrics_inc(p->shard, METRIC_SIP_DROPPED, METRICS_DROP_CLIENT_GONE);
        return;
    }
    proxy_count_response(p, m.method, status, false);
}

/* The CANCEL or the hop-by-hop ACK (of final `resp`) of INVITE slot `s`, to its next hop. */
static void send_hop(struct proxy *p, const struct call_slot *s, enum sip_method method,
                     const struct sip_msg *resp)
{
    struct sip_msg inv;
    char buf[CALLS_HOP_MAX];
    if (!rescan(p, s->fwd, s->fwd_len, &inv))
        return;
    ssize_t n = txn_hop_build(&inv, method, resp, buf, sizeof(buf));
    if (n < 0) {
        log_event(LOG_WARN, "call_hop_build_failed", LOG_S("method", sip_method_name(method)),
                  LOG_I("error", n));
        return;
    }
    struct slice iov = slice_make(buf, (size_t)n);
    to_next(p, s, CALLS_NO_TXN, &iov, 1); /* a gone hop: the transaction ends by its timer */
}

/* Carries out the actions of one step of transaction `id` (slot `s`, sender `client_id`).
 * `relay` is the response without our Via (TXN_A_RELAY), `resp` the response (TXN_A_SEND_ACK). */
static void apply(struct proxy *p, uint64_t id, struct call_slot *s, uint32_t client_id,
                  unsigned actions, const struct slice *relay, size_t n_relay,
                  const struct sip_msg *resp)
{
    if ((actions & TXN_A_RELAY) && relay != NULL) {
        if (resp != NULL && resp->status >= 200)
            mark_answered(p, s);
        if (to_sender(p, s, client_id, relay, n_relay) < 0) {
            p->stats.drop_client_gone++;
            metrics_inc(p->shard, METRIC_SIP_DROPPED, METRICS_DROP_CLIENT_GONE);
        } else if (resp != NULL) {
            struct sip_cseq cs;
            const struct sip_header *h = sip_first(resp, SIP_HDR_CSEQ);
            enum sip_method m =
                h != NULL && sip_parse_cseq(h->value, &cs) == 0 ? cs.method : SIP_METHOD_UNKNOWN;
            proxy_count_response(p, m, resp->status, true);
        }
    }
    if ((actions & TXN_A_SEND_ACK) && resp != NULL)
        send_hop(p, s, SIP_METHOD_ACK, resp);
    if (actions & TXN_A_SEND_CANCEL)
        send_hop(p, s, SIP_METHOD_CANCEL, NULL);
    if (actions & TXN_A_REPLY_408)
        answer_sender(p, s, client_id, 408, "Request Timeout");
    if (actions & TXN_A_REPLY_487)
        answer_sender(p, s, client_id, 487, "Request Terminated");
    if (actions & TXN_A_REPLY_503)
        answer_sender(p, s, client_id, 503, "Service Unavailable");
    if (actions & TXN_A_FREE) {
        slot_clear(p, s);
        metrics_gauge_add(p->shard, -1, METRIC_TRANSACTIONS_OPEN);
    }
}

/* Steps transaction `id` with `ev` and carries the actions out, less `mask`: those the caller
 * does itself (a 430 instead of the 503). */
static void step(struct proxy *p, uint64_t id, enum txn_event ev, int64_t now,
                 const struct slice *relay, size_t n_relay, const struct sip_msg *resp,
                 unsigned mask)
{
    const struct txn *t = txn_get(p->tb, id);
    if (t == NULL)
        return;
    uint32_t client_id = t->client_id;
    struct txn_out o;
    if (txn_step(p->tb, id, ev, now, &o) < 0)
        return;
    struct call_slot *s = slot_of(p, id);
    apply(p, id, s, client_id, o.actions & ~mask, relay, n_relay, resp);
    if (o.to == TXN_ACCEPTED && !(o.actions & TXN_A_FREE)) {
        /* Accepted (RFC 6026) only relays 2xx retransmissions for Timer L (32 s): the copies
         * for the edge's own answers and for CANCEL/ACK are no longer needed. At 3,000 calls/s
         * that is 1.3 KB times 96,000 transactions not held. */
        free(s->req);
        free(s->fwd);
        s->req = s->fwd = NULL;
        s->req_len = s->fwd_len = 0;
    }
}

/* ---- forwarding --------------------------------------------------------------------------- */

_Static_assert(sizeof(((struct policy_binding *)0)->flow_token) == FLOW_TOKEN_LEN, "flow token");

const char *client_token(struct proxy *p, uint32_t cid, char *tmp)
{
    struct policy_binding *b =
        p->env.client_binding != NULL ? p->env.client_binding(p->env.ctx, cid) : NULL;
    if (b != NULL && b->has_flow_token)
        return b->flow_token; /* minted once per connection: one HMAC saved per REGISTER */
    struct flow f = flow_of_conn(p->cfg.worker, cid, b != NULL ? b->flow_tag : 0);
    if (flow_encode(&p->keys->cur, &f, tmp, FLOW_TOKEN_LEN) < 0)
        return NULL;
    if (b != NULL) {
        memcpy(b->flow_token, tmp, FLOW_TOKEN_LEN);
        b->has_flow_token = true;
    }
    return tmp;
}

struct flow client_flow(struct proxy *p, uint32_t cid)
{
    const struct policy_binding *b =
        p->env.client_binding != NULL ? p->env.client_binding(p->env.ctx, cid) : NULL;
    return flow_of_conn(p->cfg.worker, cid, b != NULL ? b->flow_tag : 0);
}

/* Where a forwarded request comes from and goes. */
struct hop {
    bool from_ucm;
    uint32_t conn;        /* the sender's connection: client id, or UCM-side connection */
    int in_node;          /* from UCM: its node (-1 unknown) */
    struct flow flow;     /* to a client: the flow */
    struct proxy_sent up; /* to UCM: the connection and node chosen */
};

/* Answers `req` from the sender of `h` (nothing for an ACK). */
static void refuse(struct proxy *p, const struct hop *h, const struct sip_msg *req, int status,
                   const char *reason)
{
    if (req->method == SIP_METHOD_ACK)
        return;
    if (h->from_ucm)
        ucm_answer(p, h->conn, h->in_node, req, status, reason, NULL, 0);
    else
        proxy_respond(p, h->conn, req, status, reason, NULL, 0);
}

/* A dialog-creating request: INVITE, SUBSCRIBE, REFER without a To tag (RFC 3261 §12.1). */
static bool creates_dialog(const struct sip_msg *req)
{
    enum sip_method m = req->method;
    if (m != SIP_METHOD_INVITE && m != SIP_METHOD_SUBSCRIBE && m != SIP_METHOD_REFER)
        return false;
    const struct sip_header *to = sip_first(req, SIP_HDR_TO);
    struct sip_name_addr na;
    return to != NULL && sip_parse_name_addr(to->value, &na) == 0 && !na.has_tag;
}

/* Our Via value for transaction `id` (CALLS_NO_TXN: the stateless ACK of `client_branch`). */
static ssize_t our_via(struct proxy *p, bool to_client, uint64_t id, struct slice client_branch,
                       char *out, size_t cap)
{
    const char *pre = to_client ? p->via_cli : p->via_ucm;
    size_t n = to_client ? p->via_cli_len : p->via_ucm_len;
    if (n + TXN_OUR_BRANCH_MAX + TXN_BRANCH_MAX + 16 > cap || client_branch.len > TXN_BRANCH_MAX)
        return -ENOSPC;
    memcpy(out, pre, n);
    if (id != CALLS_NO_TXN) {
        ssize_t b = txn_branch(p->tb, id, out + n, cap - n);
        if (b < 0)
            return b;
        return (ssize_t)n + b;
    }
    memcpy(out + n, ACK_PREFIX ".", sizeof(ACK_PREFIX));
    n += sizeof(ACK_PREFIX);
    memcpy(out + n, client_branch.base, client_branch.len);
    return (ssize_t)(n + client_branch.len);
}

/* Builds the forwarded request (our Via, Max-Forwards, our Route entries removed, Record-Route
 * for a dialog-creating one) as a gather list in `iov`. Returns the count or < 0 (answered). */
static ssize_t build_forward(struct proxy *p, const struct hop *h, const struct sip_msg *req,
                             const struct route_decision *d, uint64_t id, struct slice branch,
                             struct slice *iov, char *via, char *scratch, size_t scratch_cap)
{
    ssize_t vl = our_via(p, h->from_ucm, id, branch, via, PROXY_VIA_MAX + 300);
    if (vl < 0) {
        refuse(p, h, req, 500, "Server Internal Error");
        return -1;
    }
    struct slice rr = {0};
    char tok[FLOW_TOKEN_LEN];
    if (creates_dialog(req)) {
        struct route_rr spec = {
            .client_side = p->addrs[0],
            .ucm_side = p->addrs[1],
            .key = &p->keys->cur,
            .flow = h->from_ucm ? h->flow : client_flow(p, h->conn),
            .node = h->from_ucm ? (h->in_node >= 0 ? (uint32_t)h->in_node : UINT32_MAX)
                                : (uint32_t)h->up.node,
            .toward_ucm = !h->from_ucm,
            .token = h->from_ucm ? NULL : client_token(p, h->conn, tok),
        };
        ssize_t n = route_build_rr(&spec, p->rr, sizeof(p->rr));
        if (n < 0) {
            refuse(p, h, req, 500, "Server Internal Error");
            return -1;
        }
        rr = slice_make(p->rr, (size_t)n);
    }
    struct route_edit edits[CALLS_EDITS_MAX];
    ssize_t ne = route_edits(req, d, rr, edits, CALLS_EDITS_MAX);
    static const uint16_t drop_auth[] = {SIP_HDR_PROXY_AUTHORIZATION, SIP_HDR_AUTHORIZATION};
    bool drop = !h->from_ucm && !p->cfg.forward_auth;
    struct sip_rewrite rw = {
        .via = slice_make(via, (size_t)vl),
        .max_forwards = true,
        .drop = drop ? drop_auth : NULL,
        .n_drop = drop ? 2 : 0,
    };
    struct slice tmp[CALLS_IOV_MAX];
    ssize_t n =
        ne < 0 ? ne : sip_rewrite_request(req, &rw, tmp, CALLS_IOV_MAX, scratch, scratch_cap);
    if (n == -ELOOP) {
        refuse(p, h, req, 483, "Too Many Hops");
        return -1;
    }
    if (n >= 0)
        n = route_apply(tmp, (size_t)n, edits, (size_t)ne, iov, CALLS_IOV_MAX);
    if (n < 0) {
        refuse(p, h, req, 400, "Bad Request (cannot forward)");
        return -1;
    }
    return n;
}

/* Keeps what transaction `id` needs later: the request's headers (for the edge's own answers)
 * and, for an INVITE, the headers as forwarded (its CANCEL and ACK). */
static int keep(struct proxy *p, uint64_t id, const struct hop *h, const struct sip_msg *req,
                const struct slice *iov, size_t n, int64_t now)
{
    struct call_slot *s = slot_of(p, id);
    memset(s, 0, sizeof(*s));
    s->id = id;
    p->stats.calls_open++;
    p->stats.calls_pending++;
    metrics_gauge_add(p->shard, 1, METRIC_TRANSACTIONS_OPEN);
    s->to_client = h->from_ucm;
    s->sender = h->conn;
    struct policy_binding *b = h->from_ucm ? NULL : p->env.client_binding(p->env.ctx, h->conn);
    if (b != NULL) {
        s->sender_tag = b->flow_tag;
        b->open_txns++;
    }
    s->next_conn = h->from_ucm ? 0 : h->up.conn_id;
    s->flow = h->flow;
    s->node = h->from_ucm ? h->in_node : h->up.node;
    s->started = now;
    s->req_len = (uint32_t)req->header_len;
    s->req = malloc(s->req_len);
    if (s->req == NULL)
        return -ENOMEM;
    memcpy(s->req, req->method_text.base, s->req_len);
    if (req->method == SIP_METHOD_INVITE) {
        size_t total = sip_iov_len(iov, n) - req->body.len;
        s->fwd = flatten(iov, n, total);
        if (s->fwd == NULL)
            return -ENOMEM;
        s->fwd_len = (uint32_t)total;
    }
    return 0;
}

/* Opens the transaction of `req` (not ACK); answers and returns < 0 when it cannot. */
static int open_txn(struct proxy *p, const struct hop *h, const struct sip_msg *req,
                    struct slice branch, struct slice sent_by, int64_t now, uint64_t *id,
                    struct txn_out *o)
{
    int r = txn_open(p->tb, req->method, h->from_ucm ? CALLS_UCM_ID : h->conn, branch, sent_by, now,
                     id, o);
    if (r == -ENOSPC)
        refuse(p, h, req, 503, "Service Unavailable");
    else if (r == -EPROTO)
        refuse(p, h, req, 400, "Via Branch Without Magic Cookie");
    else if (r == -ENAMETOOLONG)
        refuse(p, h, req, 400, "Via Too Long");
    else if (r < 0 && r != -EEXIST)
        refuse(p, h, req, 500, "Server Internal Error");
    return r;
}

/* A client connection with max_txn_per_conn requests still unanswered: this one gets 503 with
 * Retry-After (one authenticated client cannot take the worker's whole table). */
static bool over_limit(struct proxy *p, const struct hop *h, const struct sip_msg *req)
{
    const struct policy_binding *b = p->env.client_binding(p->env.ctx, h->conn);
    uint32_t max = p->cfg.max_txn_per_conn ? p->cfg.max_txn_per_conn : 256;
    if (b == NULL || b->open_txns < max)
        return false;
    p->stats.txn_limit++;
    metrics_inc(p->shard, METRIC_CALLS_REFUSED, METRICS_CALL_LIMIT);
    struct slice extra = SLICE_LIT("Retry-After: 1");
    proxy_respond(p, h->conn, req, 503, "Too Many Transactions On This Connection", &extra, 1);
    return true;
}

/* Ends transaction `id` just opened (Calling / Trying) without a word: the caller answers.
 * `kept`: its slot holds copies (keep() ran). */
static void drop_txn(struct proxy *p, uint64_t id, bool kept, int64_t now)
{
    struct txn_out o;
    txn_step(p->tb, id, TXN_EV_SEND_FAILED, now, &o); /* from Calling / Trying: frees */
    if (kept) {
        slot_clear(p, slot_of(p, id));
        metrics_gauge_add(p->shard, -1, METRIC_TRANSACTIONS_OPEN);
    }
}

/* Forwards `req` per decision `d` in direction `h`: opens its transaction (not for an ACK),
 * builds, keeps, sends. Every failure is answered. */
static void forward(struct proxy *p, struct hop *h, const struct sip_msg *req,
                    const struct route_decision *d, struct slice branch, struct slice sent_by,
                    int64_t now)
{
    bool stateful = req->method != SIP_METHOD_ACK;
    uint64_t id = CALLS_NO_TXN;
    struct txn_out o = {0};
    if (stateful && !h->from_ucm && over_limit(p, h, req))
        return;
    if (stateful && open_txn(p, h, req, branch, sent_by, now, &id, &o) < 0)
        return;
    char via[PROXY_VIA_MAX + 300], scratch[1024];
    struct slice iov[CALLS_IOV_MAX];
    ssize_t n = build_forward(p, h, req, d, id, branch, iov, via, scratch, sizeof(scratch));
    if (n < 0) { /* answered */
        if (stateful)
            drop_txn(p, id, false, now);
        return;
    }
    if (stateful && keep(p, id, h, req, iov, (size_t)n, now) < 0) {
        drop_txn(p, id, true, now);
        refuse(p, h, req, 503, "Service Unavailable");
        return;
    }
    if (o.actions & TXN_A_SEND_100) { /* at once, before UCM is asked (RFC 3261 §16.2) */
        if (h->from_ucm)
            ucm_answer(p, h->conn, h->in_node, req, 100, "Trying", NULL, 0);
        else
            proxy_respond(p, h->conn, req, 100, "Trying", NULL, 0);
    }
    int r = h->from_ucm ? p->env.flow_send(p->env.ctx, &h->flow, id, iov, (size_t)n)
                        : p->env.peer_send(p->env.ctx, h->up.conn_id, iov, (size_t)n);
    if (r >= 0) {
        p->stats.calls_forwarded[h->from_ucm ? 1 : 0]++;
        metrics_inc(p->shard, METRIC_CALLS_FORWARDED, proxy_metrics_method(req->method),
                    h->from_ucm ? METRICS_DIR_TO_CLIENT : METRICS_DIR_TO_UCM);
    }
    if (r >= 0 || !stateful)
        return;
    if (h->from_ucm) { /* the flow's connection is gone (RFC 5626 §5.3) */
        calls_flow_failed(p, id, now);
        return;
    }
    step(p, id, TXN_EV_SEND_FAILED, now, NULL, 0, NULL, 0);
}

/* A CANCEL (RFC 3261 §9.2, §16.10): 200 hop by hop, then the INVITE's transaction moves on. */
static void on_cancel(struct proxy *p, const struct hop *h, const struct sip_msg *req,
                      struct slice branch, struct slice sent_by, int64_t now)
{
    uint64_t id;
    enum txn_req_match r = txn_match_request(p->tb, h->from_ucm ? CALLS_UCM_ID : h->conn,
                                             SIP_METHOD_CANCEL, branch, sent_by, &id);
    if (r != TXN_REQ_CANCEL) {
        p->stats.cancel_no_match++;
        refuse(p, h, req, 481, "Call/Transaction Does Not Exist");
        return;
    }
    const struct txn *t = txn_get(p->tb, id);
    uint32_t client_id = t->client_id;
    struct txn_out o;
    if (txn_step(p->tb, id, TXN_EV_CANCEL, now, &o) < 0)
        return;
    if (o.actions & TXN_A_CANCEL_200)
        refuse(p, h, req, 200, "OK");
    apply(p, id, slot_of(p, id), client_id, o.actions & ~TXN_A_CANCEL_200, NULL, 0, NULL);
}

/* An ACK (RFC 3261 §17.2.3): a non-2xx one ends its INVITE's transaction here; returns true
 * then (or for a retransmission); false for a 2xx ACK, routed like any in-dialog request. */
static bool on_ack(struct proxy *p, const struct hop *h, struct slice branch, struct slice sent_by,
                   int64_t now)
{
    uint64_t id;
    enum txn_req_match r = txn_match_request(p->tb, h->from_ucm ? CALLS_UCM_ID : h->conn,
                                             SIP_METHOD_ACK, branch, sent_by, &id);
    if (r == TXN_REQ_ACK) {
        step(p, id, TXN_EV_ACK, now, NULL, 0, NULL, 0);
        return true;
    }
    return r == TXN_REQ_RETRANSMIT;
}

/* The top Via (400 without a branch: RFC 2543 matching is not supported), then what the
 * transaction table already knows: a CANCEL (always dealt with here: its INVITE was allowed,
 * no binding check of its own), a non-2xx ACK, a retransmission. True when `req` is dealt with;
 * false with `via` and `sent_by` set when it goes on to routing. */
static bool match_first(struct proxy *p, const struct hop *h, const struct sip_msg *req,
                        struct sip_via *via, struct slice *sent_by, int64_t now)
{
    enum sip_method m = req->method;
    memset(via, 0, sizeof(*via));
    bool parsed = sip_parse_via(req->via_first, via) == 0;
    if (!parsed || via->branch.len == 0) {
        refuse(p, h, req, 400, parsed ? "Via Without Branch" : "Bad Via");
        return true;
    }
    *sent_by = sent_by_of(via, req->via_first);
    if (m == SIP_METHOD_CANCEL) {
        on_cancel(p, h, req, via->branch, *sent_by, now);
        return true;
    }
    if (m == SIP_METHOD_ACK)
        return on_ack(p, h, via->branch, *sent_by, now);
    uint64_t id;
    return txn_match_request(p->tb, h->from_ucm ? CALLS_UCM_ID : h->conn, m, via->branch, *sent_by,
                             &id) == TXN_REQ_RETRANSMIT;
}

/* ---- client → UCM ------------------------------------------------------------------------- */

/* A client's request that may go to UCM (bound, or its own token verified): routing, node. */
static void to_ucm(struct proxy *p, uint32_t cid, const struct sip_msg *req, struct slice branch,
                   struct slice sent_by, int64_t now)
{
    struct hop h = {.from_ucm = false, .conn = cid, .in_node = -1};
    struct route_decision d;
    switch (route_decide(&p->self, req, &d)) {
    case ROUTE_FORGED:
        p->stats.flow_forged++;
        refuse(p, &h, req, 403, "Forged Flow Token");
        return;
    case ROUTE_BAD:
        refuse(p, &h, req, 400, "Bad Route");
        return;
    case ROUTE_LOCAL:
        refuse(p, &h, req, 404, "Not Found");
        return;
    default:
        break;
    }
    /* In-dialog requests go back to the node of their dialog (its se-node); when that node has
     * no connection, to another one (which answers 481 if it does not know the dialog). */
    int node = d.has_node && d.node < 64 ? (int)d.node : -1;
    int r = p->env.upstream_pick(p->env.ctx, node, &h.up);
    if (r < 0 && node >= 0)
        r = p->env.upstream_pick(p->env.ctx, -1, &h.up);
    if (r < 0) {
        p->stats.no_upstream++;
        refuse(p, &h, req, 503, "Service Unavailable");
        return;
    }
    h.up.node = r;
    if (h.up.failover)
        metrics_inc(p->shard, METRIC_UPSTREAM_FAILOVERS);
    forward(p, &h, req, &d, branch, sent_by, now);
}

void calls_forward_verified(struct proxy *p, uint32_t cid, const struct sip_msg *req, int64_t now)
{
    struct sip_via via;
    if (sip_parse_via(req->via_first, &via) < 0 || via.branch.len == 0) { /* checked before */
        struct hop h = {.from_ucm = false, .conn = cid, .in_node = -1};
        refuse(p, &h, req, 400, "Bad Via");
        return;
    }
    to_ucm(p, cid, req, via.branch, sent_by_of(&via, req->via_first), now);
}

void calls_client_request(struct proxy *p, uint32_t cid, const struct sip_msg *req,
                          const struct sip_verdict *v, int64_t now)
{
    enum sip_method m = req->method;
    if (p->tb == NULL) {
        if (m != SIP_METHOD_ACK)
            proxy_respond(p, cid, req, 501, "Not Implemented", NULL, 0);
        return;
    }
    struct hop h = {.from_ucm = false, .conn = cid, .in_node = -1};
    struct sip_via via;
    struct slice sent_by;
    if (match_first(p, &h, req, &via, &sent_by, now))
        return;
    if (v->has_cred) { /* RFC 8898: a request may carry its own token; verified like a REGISTER */
        proxy_verify_request(p, cid, req, &v->cred, now);
        return;
    }
    struct policy_binding *b = p->env.client_binding(p->env.ctx, cid);
    enum policy_verdict pv =
        policy_check(b, req, auth_now_ms() / 1000, p->cfg.leeway_s ? p->cfg.leeway_s : 60);
    if (pv != POLICY_OK) {
        if (m == SIP_METHOD_ACK) /* the ACK of a refused request (or a stray one): dropped */
            return;
        p->stats.policy_refused[pv]++;
        metrics_inc(p->shard, METRIC_CALLS_REFUSED, (enum metrics_call_refused)(pv - 1));
        if (pv == POLICY_UNBOUND)
            proxy_challenge(p, cid, req, 407, NULL);
        else if (pv == POLICY_EXPIRED)
            proxy_challenge(p, cid, req, 407, "invalid_token");
        else
            proxy_respond(p, cid, req, 403, "From Is Not The Registered User", NULL, 0);
        return;
    }
    to_ucm(p, cid, req, via.branch, sent_by, now);
}

/* ---- UCM → client ------------------------------------------------------------------------- */

void calls_ucm_request(struct proxy *p, uint32_t conn_id, int node, const struct sip_msg *req,
                       int64_t now)
{
    struct hop h = {.from_ucm = true, .conn = conn_id, .in_node = node};
    struct sip_verdict v;
    sip_check_ucm_request(req, &v);
    if (v.action == SIP_CHECK_ANSWER) {
        ucm_answer(p, conn_id, node, req, v.status, v.reason, v.extra, v.n_extra);
        return;
    }
    if (v.action != SIP_CHECK_FORWARD)
        return;
    enum sip_method m = req->method;
    if (p->tb == NULL) {
        refuse(p, &h, req, 501, "Not Implemented");
        return;
    }
    struct sip_via via;
    struct slice sent_by;
    if (match_first(p, &h, req, &via, &sent_by, now))
        return;
    struct route_decision d;
    enum route_verdict rv = route_decide(&p->self, req, &d);
    if (rv == ROUTE_FORGED && m == SIP_METHOD_ACK) /* UCM's ACK of our 403: never answered */
        return;
    if (rv == ROUTE_FORGED) {
        p->stats.flow_forged++;
        metrics_inc(p->shard, METRIC_FLOW_FAILURES, METRICS_FLOW_FORGED);
        refuse(p, &h, req, 403, "Forged Flow Token");
        return;
    }
    if (rv == ROUTE_BAD) {
        refuse(p, &h, req, 400, "Bad Route");
        return;
    }
    if (rv == ROUTE_LOCAL || !d.has_flow) { /* not through our Path or Record-Route */
        refuse(p, &h, req, 404, "No Flow To Client");
        return;
    }
    h.flow = d.flow;
    /* A dead connection on this worker is known now: 430 without a transaction. */
    const struct policy_binding *fb = d.flow.worker == p->cfg.worker
                                          ? p->env.client_binding(p->env.ctx, flow_conn_id(&d.flow))
                                          : NULL;
    if (d.flow.worker == p->cfg.worker && (fb == NULL || fb->flow_tag != d.flow.gen)) {
        if (m == SIP_METHOD_ACK) /* e.g. UCM's ACK of our 430: nothing to count nor answer */
            return;
        p->stats.flow_failed++;
        metrics_inc(p->shard, METRIC_FLOW_FAILURES, METRICS_FLOW_GONE);
        refuse(p, &h, req, 430, "Flow Failed");
        return;
    }
    forward(p, &h, req, &d, via.branch, sent_by, now);
}

void calls_flow_failed(struct proxy *p, uint64_t txn_id, int64_t now)
{
    const struct txn *t = txn_get(p->tb, txn_id);
    if (t == NULL)
        return;
    struct call_slot *s = slot_of(p, txn_id);
    p->stats.flow_failed++;
    metrics_inc(p->shard, METRIC_FLOW_FAILURES, METRICS_FLOW_GONE);
    answer_sender(p, s, t->client_id, 430, "Flow Failed");
    step(p, txn_id, TXN_EV_SEND_FAILED, now, NULL, 0, NULL,
         TXN_A_REPLY_408 | TXN_A_REPLY_487 | TXN_A_REPLY_503);
}

/* ---- responses ---------------------------------------------------------------------------- */

/* The worker index in our call branch "z9hG4bK-st<nonce8>.<worker>.<id>"; -1 when malformed. */
static int branch_worker(struct slice b)
{
    size_t i = sizeof(CALL_PREFIX) - 1 + 8;
    if (b.len <= i + 2 || b.base[i] != '.')
        return -1;
    unsigned w = 0;
    size_t digits = 0;
    for (i++; i < b.len && b.base[i] != '.'; i++, digits++) {
        char c = b.base[i];
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                            : 16u;
        if (d == 16 || digits == 4)
            return -1;
        w = w << 4 | d;
    }
    return digits > 0 && i < b.len ? (int)w : -1;
}

bool calls_response(struct proxy *p, bool from_client, unsigned from_worker, uint32_t conn,
                    const struct sip_msg *resp, int64_t now)
{
    struct slice iov[4], top;
    ssize_t n = sip_pop_via(resp, iov, 4, &top);
    struct sip_via via;
    if (n <= 0 || sip_parse_via(top, &via) < 0 || !has_prefix(via.branch, CALL_PREFIX))
        return false;
    if (p->tb == NULL)
        return false;
    if (resp->via_count < 2) { /* RFC 3261 §16.7 step 3: no Via left, nobody to relay it to */
        p->stats.drop_unexpected++;
        metrics_inc(p->shard, METRIC_SIP_DROPPED, METRICS_DROP_UNEXPECTED);
        return true;
    }
    int w = branch_worker(via.branch);
    if (w >= 0 && (unsigned)w != p->cfg.worker) {
        /* a client's answer to a request another worker sent it: that worker has the txn */
        if (from_client && from_worker == p->cfg.worker && p->env.response_post != NULL) {
            struct slice whole = slice_make(resp->version.base, resp->header_len + resp->body.len);
            p->env.response_post(p->env.ctx, (unsigned)w, conn, &whole, 1);
        } else {
            p->stats.drop_stale++;
            metrics_inc(p->shard, METRIC_SIP_DROPPED, METRICS_DROP_STALE_TRANSACTION);
        }
        return true;
    }
    const struct sip_header *ch = sip_first(resp, SIP_HDR_CSEQ);
    struct sip_cseq cs;
    uint64_t id;
    enum txn_resp_match mr = ch != NULL && sip_parse_cseq(ch->value, &cs) == 0
                                 ? txn_match_response(p->tb, via.branch, cs.method, &id)
                                 : TXN_RESP_NONE;
    if (mr == TXN_RESP_CANCEL) /* UCM's 200 to our CANCEL: the sender had its 200 from us */
        return true;
    struct call_slot *s = mr == TXN_RESP_TXN ? slot_of(p, id) : NULL;
    /* The answer must come from where the request went: a client answers only for its flow. */
    bool from_right_peer =
        s != NULL && (s->to_client ? from_client && from_worker == s->flow.worker &&
                                         conn == flow_conn_id(&s->flow)
                                   : !from_client);
    if (!from_right_peer) {
        p->stats.drop_stale++;
        metrics_inc(p->shard, METRIC_SIP_DROPPED, METRICS_DROP_STALE_TRANSACTION);
        return true;
    }
    enum txn_event ev = txn_event_of_status(resp->status);
    if (ev == TXN_EV_COUNT)
        return true;
    step(p, id, ev, now, iov, (size_t)n, resp, 0);
    return true;
}

/* ---- timers, life cycle ------------------------------------------------------------------- */

void calls_upstream_gone(struct proxy *p, uint32_t conn_id, int64_t now)
{
    if (p->tb == NULL)
        return;
    /* A rare event: a walk of the slots. A request still waiting for its final answer on that
     * connection cannot get it there any more: 503 now (RFC 3261 §16.7 step 10: a transport
     * failure is a 503), not Timer B or F's 408 half a minute later. Only the slots ever used:
     * all of them (65536, 10 MB) would hold the worker for tens of ms. */
    uint32_t used = txn_slots_used(p->tb);
    for (uint32_t i = 0; i < used; i++) {
        struct call_slot *s = &p->calls[i];
        if (slot_live(p, i) && !s->to_client && !s->answered && s->next_conn == conn_id)
            step(p, s->id, TXN_EV_SEND_FAILED, now, NULL, 0, NULL, 0);
    }
}

int64_t calls_tick(struct proxy *p, int64_t now)
{
    if (p->tb == NULL)
        return INT64_MAX;
    uint64_t ids[64];
    int64_t next;
    size_t n;
    do {
        n = txn_expired(p->tb, now, ids, 64, &next);
        for (size_t i = 0; i < n; i++)
            step(p, ids[i], TXN_EV_TIMEOUT, now, NULL, 0, NULL, 0);
    } while (n == 64);
    return next;
}

int calls_init(struct proxy *p)
{
    if (p->env.client_binding == NULL || p->env.upstream_pick == NULL || p->env.peer_send == NULL ||
        p->env.flow_send == NULL)
        return 0; /* calls not served: 501 */
    uint32_t t64 = 64 * (p->cfg.t1_ms ? p->cfg.t1_ms : 500);
    struct txn_timers tm = {t64, p->cfg.timer_c_ms ? p->cfg.timer_c_ms : 180000, t64, t64, t64,
                            t64};
    p->calls_cap = p->cap;
    p->tb = txn_table_new(p->calls_cap, p->cfg.worker, &tm);
    p->calls = calloc(p->calls_cap, sizeof(*p->calls));
    if (p->tb == NULL || p->calls == NULL)
        return -ENOMEM;
    return 0;
}

void calls_free(struct proxy *p)
{
    if (p->tb == NULL) {
        free(p->calls);
        return;
    }
    /* Every open transaction whose sender has no final answer yet gets one: 503 (shutdown).
     * Only the slots ever used: the drain closes the clients after this, and a walk of all of
     * them (tens of ms) left requests that came meanwhile unread and unanswered at the close. */
    uint32_t used = txn_slots_used(p->tb);
    for (uint32_t i = 0; i < used; i++) {
        struct call_slot *s = &p->calls[i];
        const struct txn *t = slot_live(p, i) ? txn_get(p->tb, s->id) : NULL;
        if (t != NULL && t->state != TXN_ACCEPTED && t->state != TXN_COMPLETED &&
            t->state != TXN_TIMED_OUT)
            answer_sender(p, s, t->client_id, 503, "Service Unavailable");
        free(s->req);
        free(s->fwd);
    }
    txn_table_free(p->tb);
    free(p->calls);
    p->tb = NULL;
    p->calls = NULL;
}
