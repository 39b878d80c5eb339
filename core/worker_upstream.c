// SPDX-License-Identifier: MIT
// A worker's side of its pooled UCM connections (core/worker_priv.h): framing what UCM sends
// (answers to the proxy, UCM's own requests to the calls path, our OPTIONS pings' answers), the
// nodes' state for the admin thread, the pings themselves.
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "core/edge.h"
#include "core/log.h"
#include "core/worker_priv.h"

/* ---- upstream -------------------------------------------------------------------------- */

static struct upbuf *upbuf_find(struct worker *w, uint32_t conn_id, bool create)
{
    struct upbuf *free_slot = NULL;
    for (size_t i = 0; i < WORKER_MAX_UPCONNS; i++) {
        if (w->upbufs[i].conn_id == conn_id)
            return &w->upbufs[i];
        if (free_slot == NULL && w->upbufs[i].conn_id == 0)
            free_slot = &w->upbufs[i];
    }
    if (!create || free_slot == NULL)
        return NULL;
    free_slot->conn_id = conn_id;
    return free_slot;
}

static bool is_ping_answer(const struct sip_msg *msg)
{
    const struct sip_header *via = sip_first(msg, SIP_HDR_VIA);
    if (via == NULL)
        return false;
    return memmem(via->value.base, via->value.len, PING_BRANCH, sizeof(PING_BRANCH) - 1) != NULL;
}

static void up_on_data(void *ctx, unsigned node, uint32_t conn_id, const char *p, size_t n)
{
    struct worker *w = ctx;
    struct upbuf *ub = upbuf_find(w, conn_id, true);
    if (ub == NULL)
        return;
    size_t cap = w->max_msg + WORKER_READ_CHUNK;
    char *buf = w->scratch;
    size_t have = ub->len;
    if (have > 0)
        memcpy(buf, ub->in, have);
    while (n > 0) {
        size_t take = n < cap - have ? n : cap - have;
        memcpy(buf + have, p, take);
        p += take;
        n -= take;
        have += take;
        size_t off = 0;
        while (off < have) {
            size_t ka = sip_keepalive_len(buf + off, have - off);
            if (ka > 0) {
                off += ka;
                continue;
            }
            struct sip_msg msg;
            sip_msg_init(&msg, w->hdrs, WORKER_MAX_HEADERS);
            msg.limits.max_size = w->max_msg;
            msg.limits.max_body = w->max_msg;
            ssize_t r = sip_scan(buf + off, have - off, off == 0 ? ub->scanned : 0, &msg);
            if (r == SIP_INCOMPLETE) {
                ub->scanned = (uint32_t)sip_scan_resume(&msg, have - off);
                break;
            }
            if (r < 0) {
                log_event(LOG_WARN, "upstream_bad_message", LOG_U("node", node),
                          LOG_S("reason", sip_err_name(msg.err)), LOG_U("pos", msg.err_pos));
                metrics_inc(w->shard, METRIC_SIP_DROPPED, METRICS_DROP_UNEXPECTED);
                off = have; /* cannot resync: drop what we have; Timer F answers the clients */
                ub->scanned = 0;
                break;
            }
            ub->scanned = 0;
            if (!msg.is_request && is_ping_answer(&msg))
                upstream_alive(w->up, conn_id);
            else
                proxy_on_upstream_message(w->proxy, conn_id, (int)node, &msg,
                                          (int64_t)loop_now_ms(w->loop));
            off += (size_t)r;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
    if (have == 0) {
        free(ub->in);
        ub->in = NULL;
        ub->len = 0;
    } else {
        if (ub->in == NULL)
            ub->in = malloc(w->max_msg);
        if (ub->in == NULL || have > w->max_msg) {
            ub->len = 0;
            ub->scanned = 0;
            return;
        }
        memcpy(ub->in, buf, have);
        ub->len = (uint32_t)have;
    }
    worker_schedule(w);
}

static void up_on_conn_closed(void *ctx, unsigned node, uint32_t conn_id,
                              const struct tls_diag *diag)
{
    struct worker *w = ctx;
    if (diag != NULL) { /* an established connection our record layer failed: say why */
        const struct cfg_node *cn = &w->e->cfg.upstream.nodes[node];
        char peer[300], line[1536];
        snprintf(peer, sizeof(peer), "%s:%u", cn->host, (unsigned)cn->port);
        tls_diag_format(diag, peer, line, sizeof(line));
        log_event(LOG_ERROR, "upstream_conn_failed", LOG_S("node", peer), LOG_S("diag", line));
    }
    struct upbuf *ub = upbuf_find(w, conn_id, false);
    if (ub != NULL) {
        free(ub->in);
        memset(ub, 0, sizeof(*ub));
    }
    if (w->proxy != NULL) { /* its requests go elsewhere now, or get 503: not Timer F */
        proxy_on_upstream_gone(w->proxy, conn_id, (int64_t)loop_now_ms(w->loop));
        worker_schedule(w);
    }
}

/* Copies every node's status for /readyz and /metrics (the admin thread reads it under mu). */
static void worker_publish_status(struct worker *w)
{
    struct edge *e = w->e;
    unsigned n = upstream_node_count(w->up);
    pthread_mutex_lock(&e->mu);
    for (unsigned i = 0; i < n && i < UPSTREAM_MAX_NODES; i++) {
        upstream_node_status(w->up, i, &e->nodes[w->idx][i].st);
        e->nodes[w->idx][i].valid = true;
    }
    pthread_mutex_unlock(&e->mu);
}

static void up_on_node_state(void *ctx, unsigned node, enum upstream_state st,
                             const struct tls_diag *diag)
{
    struct worker *w = ctx;
    struct edge *e = w->e;
    const struct cfg_node *cn = &e->cfg.upstream.nodes[node];
    enum upstream_state prev = w->node_state[node];
    w->node_state[node] = st;
    if (diag != NULL && diag->cause != TLS_CAUSE_NONE) {
        metrics_inc(w->shard, METRIC_TLS_HANDSHAKE_FAILURES, METRICS_SIDE_UPSTREAM,
                    worker_tls_metric_cause(diag->cause));
    }
    /* One log line per state change (worker 0 speaks for all: they see the same node). */
    if (prev != st && w->idx == 0) {
        char peer[300];
        snprintf(peer, sizeof(peer), "%s:%u", cn->host, (unsigned)cn->port);
        if (diag != NULL && diag->cause != TLS_CAUSE_NONE) {
            char line[1536];
            tls_diag_format(diag, peer, line, sizeof(line));
            log_event(LOG_ERROR, "upstream_tls_failed", LOG_S("node", peer), LOG_S("diag", line));
        } else {
            log_event(LOG_INFO, "upstream_state", LOG_S("node", peer),
                      LOG_S("state", upstream_state_name(st)),
                      LOG_S("was", upstream_state_name(prev)));
        }
    }
    worker_publish_status(w); /* /readyz sees the change now, not at the next second */
}

static void status_timer_cb(struct loop *loop, struct loop_timer *t)
{
    struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, status_timer));
    worker_publish_status(w);
    loop_timer_arm(loop, t, loop_now_ms(loop) + 1000, status_timer_cb);
}

static void up_on_ping_due(void *ctx, unsigned node, uint32_t conn_id)
{
    struct worker *w = ctx;
    const struct cfg *c = &w->e->cfg;
    const struct cfg_node *cn = &c->upstream.nodes[node];
    char buf[768];
    uint64_t seq = ++w->ping_seq;
    int n = snprintf(buf, sizeof(buf),
                     "OPTIONS sip:%s:%u;transport=tls SIP/2.0\r\n"
                     "Via: SIP/2.0/TLS %s:%u;branch=" PING_BRANCH "-%u-%" PRIu64 "\r\n"
                     "Max-Forwards: 70\r\n"
                     "From: <sip:ping@%s>;tag=sepng%u\r\n"
                     "To: <sip:%s:%u>\r\n"
                     "Call-ID: sepng-%u-%" PRIu64 "@%s\r\n"
                     "CSeq: %" PRIu64 " OPTIONS\r\n"
                     "User-Agent: %s\r\n"
                     "Content-Length: 0\r\n\r\n",
                     cn->host, (unsigned)cn->port, c->sip.edge_host, (unsigned)c->listen.port,
                     w->idx, seq, c->sip.edge_host, w->idx, cn->host, (unsigned)cn->port, w->idx,
                     seq, c->sip.edge_host, seq % 2147483647u + 1, c->sip.server_header);
    if (n <= 0 || (size_t)n >= sizeof(buf))
        return;
    struct iovec iov = {buf, (size_t)n};
    upstream_send_on(w->up, conn_id, &iov, 1);
}

const struct upstream_ops worker_upstream_ops = {
    .on_data = up_on_data,
    .on_node_state = up_on_node_state,
    .on_ping_due = up_on_ping_due,
    .on_conn_closed = up_on_conn_closed,
};

void worker_status_start(struct worker *w)
{
    worker_publish_status(w);
    loop_timer_arm(w->loop, &w->status_timer, loop_now_ms(w->loop) + 1000, status_timer_cb);
}
