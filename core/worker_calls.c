// SPDX-License-Identifier: MIT
// The worker's side of calls (issue 9): the proxy's hooks for connection bindings, the choice of
// an upstream connection, sends to UCM-side connections, and the hand-over of requests and
// responses between workers when a flow's client connection lives on another worker's ring
// (loop_post: IORING_OP_MSG_RING where the kernel has it). docs/internals/calls.md.
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/edge.h"
#include "core/log.h"
#include "core/sip_build.h"
#include "core/worker_priv.h"
#include "net/conn.h"

/* One message handed to another worker: a request for one of its clients, a client's response
 * for one of its transactions, or "that flow is gone". */
enum post_kind {
    POST_DELIVER = 0, /* send `bytes` to client `conn` of the target; on failure tell `txn_id` */
    POST_RESPONSE,    /* a response client `conn` of worker `origin` sent for a txn of the target */
    POST_FLOW_FAILED, /* the target's transaction `txn_id` could not be delivered */
};

struct post {
    enum post_kind kind;
    unsigned origin; /* the sending worker */
    uint32_t conn;
    uint64_t txn_id;
    uint32_t tag; /* POST_DELIVER: the flow's tag (core/flow.h) */
    size_t len;
    char bytes[];
};

struct policy_binding *worker_env_client_binding(void *ctx, uint32_t client_id)
{
    struct client *cl = worker_client_of(ctx, client_id);
    return cl != NULL && !cl->ucm_peer ? &cl->bind : NULL; /* a flow never names UCM */
}

int worker_env_upstream_pick(void *ctx, int node, struct proxy_sent *sent)
{
    struct worker *w = ctx;
    if (w->up == NULL)
        return -EHOSTUNREACH;
    struct upstream_pick pick = {0};
    int r = upstream_pick(w->up, node, &pick);
    if (r < 0)
        return r;
    sent->conn_id = pick.conn_id;
    sent->failover = pick.failover;
    sent->node = r;
    return r;
}

int worker_env_peer_send(void *ctx, uint32_t conn_id, const struct slice *iov, size_t n)
{
    struct worker *w = ctx;
    if (w->up != NULL && upstream_owns(w->up, conn_id, NULL)) {
        int r = upstream_send_on(w->up, conn_id, (const struct iovec *)iov, (int)n);
        return r == -ENOBUFS ? -ENOBUFS : r < 0 ? -ENOTCONN : r;
    }
    struct client *cl = worker_client_of(w, conn_id); /* a connection UCM opened to us */
    if (cl == NULL || !cl->ucm_peer)
        return -ENOTCONN;
    return worker_client_send(w, conn_id, iov, n) < 0 ? -ENOTCONN : 0;
}

static struct loop *worker_loop_of(struct worker *w, unsigned idx)
{
    struct edge *e = w->e;
    if (idx >= e->n_workers || e->group == NULL)
        return NULL;
    return loop_group_loop(e->group, idx);
}

static struct post *post_new(enum post_kind kind, unsigned origin, uint32_t conn, uint64_t txn_id,
                             const struct slice *iov, size_t n)
{
    size_t len = iov != NULL ? sip_iov_len(iov, n) : 0;
    struct post *m = malloc(sizeof(*m) + len);
    if (m == NULL)
        return NULL;
    m->kind = kind;
    m->origin = origin;
    m->conn = conn;
    m->txn_id = txn_id;
    m->tag = 0;
    m->len = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(m->bytes + m->len, iov[i].base, iov[i].len);
        m->len += iov[i].len;
    }
    return m;
}

static void on_post(struct loop *loop, void *arg);

static int post_to(struct worker *w, unsigned target, struct post *m)
{
    struct loop *l = worker_loop_of(w, target);
    if (l == NULL || loop_post(l, on_post, m) < 0) {
        free(m);
        return -ESRCH;
    }
    return 0;
}

/* A client's response handed over: framed again on this worker (the bytes are one message). */
static void post_response(struct worker *w, struct post *m)
{
    struct sip_header hdrs[WORKER_MAX_HEADERS];
    struct sip_msg msg;
    sip_msg_init(&msg, hdrs, WORKER_MAX_HEADERS);
    msg.limits.max_size = m->len + 1;
    msg.limits.max_body = m->len;
    if (sip_scan(m->bytes, m->len, 0, &msg) <= 0 || msg.is_request)
        return;
    proxy_on_posted_response(w->proxy, m->origin, m->conn, &msg, (int64_t)loop_now_ms(w->loop));
}

static void on_post(struct loop *loop, void *arg)
{
    struct post *m = arg;
    struct worker *w = loop_user(loop);
    if (w == NULL || w->proxy == NULL) { /* stopping: the sender's timers answer */
        free(m);
        return;
    }
    switch (m->kind) {
    case POST_DELIVER: {
        struct slice iov = slice_make(m->bytes, m->len);
        struct client *cl = worker_client_of(w, m->conn);
        int r = cl != NULL && !cl->ucm_peer && cl->bind.flow_tag == m->tag
                    ? worker_client_send(w, m->conn, &iov, 1)
                    : -ENOTCONN;
        if (r < 0 && m->txn_id != UINT64_MAX) {
            struct post *back = post_new(POST_FLOW_FAILED, w->idx, m->conn, m->txn_id, NULL, 0);
            if (back != NULL)
                post_to(w, m->origin, back);
        }
        break;
    }
    case POST_RESPONSE:
        post_response(w, m);
        break;
    case POST_FLOW_FAILED:
        proxy_on_flow_failed(w->proxy, m->txn_id, (int64_t)loop_now_ms(w->loop));
        break;
    }
    free(m);
    worker_schedule(w);
}

int worker_env_flow_send(void *ctx, const struct flow *f, uint64_t txn_id, const struct slice *iov,
                         size_t n)
{
    struct worker *w = ctx;
    uint32_t conn = flow_conn_id(f);
    if (f->worker == w->idx) {
        struct client *cl = worker_client_of(w, conn);
        if (cl == NULL || cl->ucm_peer || cl->bind.flow_tag != f->gen)
            return -ENOTCONN;
        int r = worker_client_send(w, conn, iov, n);
        return r < 0 ? -ENOTCONN : 0;
    }
    if (f->worker >= w->e->n_workers)
        return -ESRCH;
    struct post *m = post_new(POST_DELIVER, w->idx, conn, txn_id, iov, n);
    if (m == NULL)
        return -ENOMEM;
    m->tag = f->gen;
    return post_to(w, f->worker, m);
}

void worker_env_response_post(void *ctx, unsigned worker, uint32_t client_id,
                              const struct slice *iov, size_t n)
{
    struct worker *w = ctx;
    struct post *m = post_new(POST_RESPONSE, w->idx, client_id, UINT64_MAX, iov, n);
    if (m != NULL)
        post_to(w, worker, m);
}
