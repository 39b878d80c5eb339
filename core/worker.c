// SPDX-License-Identifier: MIT
// One edge worker on its loop thread: client connections (TLS server over net/conn, SIP framing
// with keep-alives), the REGISTER proxy, the auth worker's Redis sockets polled by the ring, and
// the upstream zone whose plaintext is framed here and routed back through the proxy.
#include "core/worker.h"
#include "core/worker_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include <openssl/rand.h>

#include "auth/redis.h"
#include "core/edge.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/proxy.h"
#include "core/sip.h"
#include "net/conn.h"
#include "net/loop.h"
#include "net/upstream.h"
#include "tls/tls.h"

static void client_timer_cb(struct loop *loop, struct loop_timer *t);
static void worker_sync_redis_metrics(struct worker *w);

/* ---- clients: sending ------------------------------------------------------------------- */

/* Moves the TLS layer's pending ciphertext to the connection's output queue. */
static int client_flush(struct client *cl)
{
    if (cl->tls == NULL)
        return 0;
    size_t n;
    while ((n = tls_conn_out_len(cl->tls)) > 0) {
        struct slice out = tls_conn_out(cl->tls);
        struct iovec iov = {(void *)out.base, out.len};
        ssize_t r = conn_send(cl->conn, &iov, 1);
        if (r < 0)
            return (int)r;
        tls_conn_out_consume(cl->tls, out.len);
    }
    return 0;
}

static int client_write(struct client *cl, const struct slice *iov, size_t n)
{
    if (cl->dead)
        return -ENOTCONN;
    if (cl->tls == NULL)
        return (int)conn_send(cl->conn, (const struct iovec *)iov, (int)n);
    ssize_t r = tls_conn_writev(cl->tls, (const struct iovec *)iov, (int)n);
    if (r < 0)
        return (int)r;
    return client_flush(cl);
}

int worker_client_send(void *ctx, uint32_t client_id, const struct slice *iov, size_t n)
{
    struct worker *w = ctx;
    struct conn *c = conn_get(w->loop, client_id);
    if (c == NULL || conn_user(c) == NULL || conn_is_outbound(c))
        return -ENOTCONN;
    struct client *cl = conn_user(c);
    /* A send over the output cap closes the conn inside client_write() and on_close frees a
     * client that is not busy (an answer relayed from UCM, the drain's 503s): hold it. */
    bool was_busy = cl->busy;
    cl->busy = true;
    int r = client_write(cl, iov, n);
    cl->busy = was_busy;
    if (cl->dead) {
        if (!was_busy)
            worker_client_free(cl);
        return -ENOTCONN; /* not delivered: the proxy counts a drop, not a response */
    }
    if (r < 0 && r != -ENOTCONN)
        conn_close(c, CONN_CLOSE_ERROR);
    return r;
}

struct client *worker_client_of(struct worker *w, uint32_t client_id)
{
    struct conn *c = conn_get(w->loop, client_id);
    if (c != NULL && conn_is_outbound(c)) /* an upstream connection: not a struct client */
        return NULL;
    struct client *cl = c != NULL ? conn_user(c) : NULL;
    return cl != NULL && !cl->dead ? cl : NULL;
}

static bool env_client_source(void *ctx, uint32_t client_id, uint8_t *addr)
{
    struct client *cl = worker_client_of(ctx, client_id);
    if (cl == NULL)
        return false;
    memcpy(addr, cl->src, BUDGET_ADDR_LEN);
    return true;
}

/* How long the request being handled from `client_id` waited since the kernel received its last
 * byte. 0 when not known, or negative or over a minute (the wall clock was set meanwhile). */
static uint64_t env_client_waited_us(void *ctx, uint32_t client_id)
{
    struct client *cl = worker_client_of(ctx, client_id);
    uint64_t rx = cl != NULL ? conn_rx_ns(cl->conn) : 0;
    if (rx == 0)
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    uint64_t us = now > rx ? (now - rx) / 1000 : 0;
    return us > 60u * 1000000u ? 0 : us;
}

/* One more rejected token: past auth.max_failed_tokens_per_conn the connection is closed once its
 * answers are out (a client that keeps sending bad tokens costs a verify each). */
static void env_client_token_failed(void *ctx, uint32_t client_id)
{
    struct worker *w = ctx;
    struct client *cl = worker_client_of(w, client_id);
    uint32_t max = w->e->cfg.auth.max_failed_tokens_per_conn;
    if (cl == NULL || cl->drained || max == 0 || ++cl->failed_tokens < max)
        return;
    cl->drained = true;
    log_event(LOG_INFO, "client_failed_tokens", LOG_U("conn", cl->id),
              LOG_U("failed", cl->failed_tokens));
    metrics_inc(w->shard, METRIC_AUTH_REFUSED, METRICS_REFUSED_FAILED_TOKENS);
    metrics_inc(w->shard, METRIC_CONNECTIONS_CLOSED, METRICS_CLOSE_LIMIT);
    if (cl->tls != NULL)
        tls_conn_shutdown(cl->tls); /* close_notify after the answer */
    /* Called from outside on_data too (a check that waited on Redis): a flush over the output
     * cap closes the conn and on_close frees a client that is not busy, so hold it. */
    bool was_busy = cl->busy;
    cl->busy = true;
    client_flush(cl);
    cl->busy = was_busy;
    if (cl->dead) {
        if (!was_busy)
            worker_client_free(cl);
        return;
    }
    conn_drain(cl->conn);
}

/* Why no node could take a request, as the errno of the policy's first node that failed:
 * "Connection refused" when UCM refused, not the pool's generic -EHOSTUNREACH ("No route to
 * host"); -EPROTO for a TLS failure (its own log line has the diagnosis). */
static int no_node_errno(struct worker *w)
{
    unsigned n = upstream_node_count(w->up);
    for (unsigned i = 0; i < n; i++) {
        struct upstream_node_status st;
        upstream_node_status(w->up, i, &st);
        if (st.state == UPSTREAM_FAILED)
            return -EPROTO;
        if (st.last_errno > 0)
            return -st.last_errno;
    }
    return -EHOSTUNREACH;
}

static int env_upstream_send(void *ctx, const struct slice *iov, size_t n, struct proxy_sent *sent)
{
    struct worker *w = ctx;
    if (w->up == NULL)
        return -EHOSTUNREACH;
    struct upstream_pick pick = {0};
    int r = upstream_send_pick(w->up, (const struct iovec *)iov, (int)n, &pick);
    sent->conn_id = pick.conn_id;
    sent->failover = pick.failover;
    return r == -EHOSTUNREACH ? no_node_errno(w) : r;
}

/* ---- clients: receiving ----------------------------------------------------------------- */

enum metrics_tls_cause worker_tls_metric_cause(enum tls_cause c)
{
    switch (c) {
    case TLS_CAUSE_TIMEOUT:
        return METRICS_TLS_TIMEOUT;
    case TLS_CAUSE_PROTOCOL_ERROR:
    case TLS_CAUSE_NO_SHARED_CIPHER:
    case TLS_CAUSE_NO_SHARED_PROTOCOL:
    case TLS_CAUSE_ALERT_PROTOCOL_VERSION:
        return METRICS_TLS_PROTOCOL;
    case TLS_CAUSE_ALERT_UNKNOWN_CA:
        return METRICS_TLS_ALERT_UNKNOWN_CA;
    case TLS_CAUSE_ALERT_BAD_CERTIFICATE:
        return METRICS_TLS_ALERT_BAD_CERTIFICATE;
    case TLS_CAUSE_ALERT_CERTIFICATE_UNKNOWN:
        return METRICS_TLS_ALERT_CERTIFICATE_UNKNOWN;
    case TLS_CAUSE_ALERT_ACCESS_DENIED:
        return METRICS_TLS_ALERT_ACCESS_DENIED;
    case TLS_CAUSE_ALERT_HANDSHAKE_FAILURE:
    case TLS_CAUSE_ALERT_CERTIFICATE_REQUIRED:
        return METRICS_TLS_ALERT_HANDSHAKE_FAILURE;
    case TLS_CAUSE_ALERT_CERTIFICATE_EXPIRED:
    case TLS_CAUSE_ALERT_CERTIFICATE_REVOKED:
    case TLS_CAUSE_ALERT_INSUFFICIENT_SECURITY:
    case TLS_CAUSE_ALERT_DECRYPT_ERROR:
    case TLS_CAUSE_ALERT_OTHER:
        return METRICS_TLS_ALERT_OTHER;
    case TLS_CAUSE_PEER_UNTRUSTED_ISSUER:
    case TLS_CAUSE_PEER_SELF_SIGNED:
        return METRICS_TLS_VERIFY_UNTRUSTED;
    case TLS_CAUSE_PEER_HOSTNAME_MISMATCH:
        return METRICS_TLS_VERIFY_NAME;
    case TLS_CAUSE_PEER_EXPIRED:
    case TLS_CAUSE_PEER_NOT_YET_VALID:
        return METRICS_TLS_VERIFY_EXPIRED;
    case TLS_CAUSE_PEER_VERIFY_OTHER:
        return METRICS_TLS_VERIFY_OTHER;
    case TLS_CAUSE_PEER_NO_CERTIFICATE:
        return METRICS_TLS_NO_CERTIFICATE;
    case TLS_CAUSE_PEER_CLOSED:
        return METRICS_TLS_IO;
    default:
        return METRICS_TLS_OTHER;
    }
}

/* sipedge_ucm_peers_refused_total: the UCM listener's handshake failures that are refusals of
 * the peer (no certificate, not chained to ucm_listen.tls.ca, no name of ucm_listen.node_names);
 * a timeout or garbage is only a TLS handshake failure. */
static void ucm_refused_count(struct worker *w, enum tls_cause c)
{
    switch (c) {
    case TLS_CAUSE_PEER_NO_CERTIFICATE:
        metrics_inc(w->shard, METRIC_UCM_PEERS_REFUSED, METRICS_UCM_NO_CERTIFICATE);
        break;
    case TLS_CAUSE_PEER_UNTRUSTED_ISSUER:
    case TLS_CAUSE_PEER_SELF_SIGNED:
    case TLS_CAUSE_PEER_EXPIRED:
    case TLS_CAUSE_PEER_NOT_YET_VALID:
    case TLS_CAUSE_PEER_VERIFY_OTHER:
        metrics_inc(w->shard, METRIC_UCM_PEERS_REFUSED, METRICS_UCM_UNTRUSTED);
        break;
    case TLS_CAUSE_PEER_HOSTNAME_MISMATCH:
        metrics_inc(w->shard, METRIC_UCM_PEERS_REFUSED, METRICS_UCM_NAME_NOT_ALLOWED);
        break;
    default:
        break;
    }
}

static void client_tls_failed(struct client *cl)
{
    struct tls_diag d;
    tls_conn_diag(cl->tls, &d);
    metrics_inc(cl->w->shard, METRIC_TLS_HANDSHAKE_FAILURES, METRICS_SIDE_CLIENT,
                worker_tls_metric_cause(d.cause));
    if (cl->ucm_peer)
        ucm_refused_count(cl->w, d.cause);
    if (cl->ucm_peer) { /* a refused UCM peer is an operator's business: always say why */
        char line[1024], peer[64];
        tls_diag_format(&d, "ucm peer", line, sizeof(line));
        budget_addr_format(cl->src, peer, sizeof(peer));
        log_event(LOG_WARN, "ucm_peer_refused", LOG_S("peer", peer),
                  LOG_S("cause", tls_cause_name(d.cause)), LOG_S("diag", line));
    } else if (log_enabled(LOG_DEBUG)) {
        char line[1024];
        tls_diag_format(&d, "client", line, sizeof(line));
        log_event(LOG_DEBUG, "client_tls_failed", LOG_S("diag", line));
    }
    client_flush(cl); /* our alert, if any */
    metrics_inc(cl->w->shard, METRIC_CONNECTIONS_CLOSED, METRICS_CLOSE_HANDSHAKE);
    conn_drain(cl->conn);
}

/* An established connection failed in the TLS layer (bad record, fatal alert, flood): send the
 * alert the layer sealed, then close once it is out (RFC 8446 §6.2), as after a handshake. */
static void client_tls_read_failed(struct client *cl)
{
    if (log_enabled(LOG_DEBUG)) {
        struct tls_diag d;
        char line[1024];
        tls_conn_diag(cl->tls, &d);
        tls_diag_format(&d, "client", line, sizeof(line));
        log_event(LOG_DEBUG, "client_tls_failed", LOG_S("diag", line));
    }
    metrics_inc(cl->w->shard, METRIC_CONNECTIONS_CLOSED, METRICS_CLOSE_ERROR);
    client_flush(cl);
    if (!cl->dead) /* a send over the hard cap closed it already */
        conn_drain(cl->conn);
}

/* Frames and handles the messages in buf[0..len); returns the bytes consumed. Stops early when
 * the client died or must be closed (then returns len: nothing is kept). */
static size_t client_process(struct client *cl, char *buf, size_t len, uint32_t hint)
{
    struct worker *w = cl->w;
    size_t off = 0;
    while (off < len && !cl->dead && !cl->drained) {
        size_t ka = sip_keepalive_len(buf + off, len - off);
        if (ka > 0) {
            /* RFC 5626 4.4.1: a double-CRLF ping gets one CRLF pong; a lone CRLF is skipped. */
            for (size_t i = 0; i + 4 <= ka; i += 4) {
                struct slice pong = SLICE_LIT("\r\n");
                client_write(cl, &pong, 1);
            }
            off += ka;
            hint = 0;
            cl->completed = true;
            continue;
        }
        if (len - off < 2 && buf[off] == '\r')
            break; /* a lone CR: wait for its LF */
        struct sip_msg msg;
        sip_msg_init(&msg, w->hdrs, WORKER_MAX_HEADERS);
        msg.limits.max_size = w->max_msg;
        msg.limits.max_body = w->max_msg;
        msg.limits.max_line = w->e->cfg.listen.limits.max_line;
        if (w->e->cfg.listen.limits.max_headers < WORKER_MAX_HEADERS)
            msg.headers_cap = w->e->cfg.listen.limits.max_headers;
        ssize_t r = sip_scan(buf + off, len - off, off == 0 ? hint : 0, &msg);
        if (r == SIP_INCOMPLETE) {
            cl->scanned = (uint32_t)sip_scan_resume(&msg, len - off);
            return off;
        }
        if (r < 0) {
            /* A stream cannot be resynchronised after a framing error: answer if we can, then
             * close once the answer is out. */
            bool answered = msg.is_request && proxy_on_client_garbage(w->proxy, cl->id, &msg);
            log_event(LOG_INFO, "client_bad_message", LOG_S("reason", sip_err_name(msg.err)),
                      LOG_U("pos", msg.err_pos), LOG_U("conn", cl->id),
                      LOG_B("answered", answered));
            metrics_inc(w->shard, METRIC_CONNECTIONS_CLOSED,
                        answered ? METRICS_CLOSE_GARBAGE : METRICS_CLOSE_UNFRAMEABLE);
            if (!cl->dead) {
                client_flush(cl);
                conn_drain(cl->conn);
            }
            return len;
        }
        cl->last_active = loop_now_ms(w->loop);
        if (cl->ucm_peer) /* UCM's requests to clients and its answers, on its own connection */
            proxy_on_upstream_message(w->proxy, cl->id, cl->node, &msg,
                                      (int64_t)loop_now_ms(w->loop));
        else if (msg.is_request)
            proxy_on_client_request(w->proxy, cl->id, &msg, (int64_t)loop_now_ms(w->loop));
        else /* an answer to a request UCM sent this client through the edge */
            proxy_on_client_response(w->proxy, cl->id, &msg, (int64_t)loop_now_ms(w->loop));
        off += (size_t)r;
        hint = 0;
        cl->scanned = 0;
        cl->completed = true;
    }
    return cl->dead || cl->drained ? len : off;
}

/* The per-message deadline (slowloris): a message must be complete message_timeout_ms after its
 * first byte arrived, however slowly the rest trickles in (each byte restarts nothing). Bytes
 * that finish no message (a partial SIP message, or a TLS record still incomplete) start the
 * clock if it is not running; a finished message stops it, or restarts it now when a partial one
 * follows in the same read. */
static void client_message_clock(struct client *cl)
{
    struct worker *w = cl->w;
    uint64_t now = loop_now_ms(w->loop);
    if (cl->completed)
        cl->msg_start = cl->in_len > 0 ? now : 0;
    else if (cl->msg_start == 0)
        cl->msg_start = now;
    if (cl->msg_start == 0)
        return;
    uint64_t due = cl->msg_start + w->e->cfg.listen.limits.message_timeout_ms;
    if (!loop_timer_armed(&cl->timer) || cl->timer.deadline_ms > due)
        loop_timer_arm(w->loop, &cl->timer, due, client_timer_cb);
}

/* Keeps buf[off..len) for the next read (bounded by max_msg). */
static int client_keep(struct client *cl, const char *p, size_t n)
{
    if (n == 0) {
        free(cl->in);
        cl->in = NULL;
        cl->in_len = 0;
        return 0;
    }
    if (n > cl->w->max_msg)
        return -EMSGSIZE;
    char *in = cl->in == NULL ? malloc(cl->w->max_msg) : cl->in;
    if (in == NULL)
        return -ENOMEM;
    memmove(in, p, n);
    cl->in = in;
    cl->in_len = (uint32_t)n;
    return 0;
}

/* Feeds plaintext `p` (n bytes): prepends what was kept, frames, keeps the rest. */
static void client_plaintext(struct client *cl, const char *p, size_t n)
{
    struct worker *w = cl->w;
    size_t cap = w->max_msg + WORKER_READ_CHUNK;
    size_t have = cl->in_len;
    uint32_t hint = cl->scanned;
    char *buf = w->scratch;
    if (have > 0)
        memcpy(buf, cl->in, have);
    while (n > 0 && !cl->dead) {
        size_t take = n < cap - have ? n : cap - have;
        memcpy(buf + have, p, take);
        p += take;
        n -= take;
        have += take;
        size_t used = client_process(cl, buf, have, hint);
        hint = cl->scanned;
        memmove(buf, buf + used, have - used);
        have -= used;
    }
    if (!cl->dead && client_keep(cl, buf, have) < 0) {
        metrics_inc(w->shard, METRIC_CONNECTIONS_CLOSED, METRICS_CLOSE_GARBAGE);
        conn_close(cl->conn, CONN_CLOSE_LOCAL);
    }
}

void worker_client_free(struct client *cl)
{
    tls_conn_free(cl->tls);
    free(cl->in);
    free(cl);
}

/* The upstream node whose address a UCM peer connects from (-1: none): its dialogs' in-dialog
 * requests from clients go back to that node (se-node). */
static int ucm_node_of(struct worker *w, const uint8_t *src)
{
    const struct cfg_upstream *u = &w->e->cfg.upstream;
    for (uint32_t i = 0; i < u->node_count; i++) {
        uint8_t a[BUDGET_ADDR_LEN];
        if (budget_addr_parse(u->nodes[i].host, a) == 0 && memcmp(a, src, sizeof(a)) == 0)
            return (int)i;
    }
    return -1;
}

static void client_open(struct conn *c, bool ucm)
{
    struct edge *e = conn_user(c);
    struct worker *w = loop_user(conn_loop(c));
    struct client *cl = calloc(1, sizeof(*cl));
    if (w == NULL || cl == NULL || atomic_load(&e->draining) || (ucm && w->ucm_tls == NULL)) {
        free(cl);
        conn_set_user(c, NULL);
        conn_close(c, CONN_CLOSE_LOCAL);
        return;
    }
    cl->w = w;
    cl->conn = c;
    cl->id = conn_id(c);
    cl->last_active = loop_now_ms(w->loop);
    /* splitmix64: the connection's flow tag (core/flow.h), seeded per worker from RAND_bytes */
    uint64_t z = (w->flow_rng += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    cl->bind.flow_tag = (uint32_t)(z ^ (z >> 31));
    budget_addr_of_fd(conn_fd(c), cl->src); /* unknown: all zeros, one shared bucket */
    cl->ucm_peer = ucm;
    cl->node = ucm ? ucm_node_of(w, cl->src) : -1;
    struct tls_ctx *ctx = ucm ? w->ucm_tls : w->server_tls;
    if (ctx != NULL) {
        cl->tls = tls_conn_new_server_lane(ctx, w->idx);
        if (cl->tls == NULL) {
            free(cl);
            conn_set_user(c, NULL);
            conn_close(c, CONN_CLOSE_LOCAL);
            return;
        }
    } else {
        cl->established = true;
        conn_set_open(c);
    }
    conn_set_user(c, cl);
    cl->next = w->clients;
    if (w->clients != NULL)
        w->clients->prev = cl;
    w->clients = cl;
    if (!ucm) /* the drain waits for clients, not for UCM's connections */
        atomic_fetch_add_explicit(&w->n_clients, 1, memory_order_relaxed);
    metrics_inc(w->shard, METRIC_CONNECTIONS_ACCEPTED);
    metrics_gauge_add(w->shard, 1, METRIC_CONNECTIONS_OPEN);
    uint32_t t = cl->established ? w->e->cfg.listen.limits.idle_timeout_ms
                                 : w->e->cfg.listen.limits.handshake_timeout_ms;
    loop_timer_arm(w->loop, &cl->timer, loop_now_ms(w->loop) + t, client_timer_cb);
}

/* After bytes were fed to the TLS object of `cl` (busy): the handshake step when it is not
 * established yet, then whatever records follow. */
static void client_progress(struct client *cl)
{
    struct worker *w = cl->w;
    struct conn *c = cl->conn;
    if (!cl->established) {
        if (!cl->hs_started && !cl->ucm_peer)
            worker_hs_start(cl);
        cl->hs_started = true;
        int r = tls_conn_handshake(cl->tls);
        if (r == 0) {
            worker_hs_end(cl);
            cl->established = true;
            metrics_inc(
                w->shard, METRIC_TLS_HANDSHAKES,
                strcmp(tls_conn_version(cl->tls), "TLSv1.2") == 0 ? METRICS_TLS_12 : METRICS_TLS_13,
                tls_conn_own_records(cl->tls) ? METRICS_RECORDS_SIPEDGE : METRICS_RECORDS_OPENSSL);
            cl->last_active = loop_now_ms(w->loop);
            conn_set_open(c);
            if (cl->ucm_peer) {
                conn_set_trunk(c); /* it carries UCM's traffic for every client */
                char peer[64];
                budget_addr_format(cl->src, peer, sizeof(peer));
                log_event(LOG_INFO, "ucm_peer_admitted", LOG_S("peer", peer),
                          LOG_I("node", cl->node), LOG_U("conn", cl->id));
            }
            loop_timer_arm(w->loop, &cl->timer,
                           cl->last_active + w->e->cfg.listen.limits.idle_timeout_ms,
                           client_timer_cb);
        } else if (r != TLS_WANT_INPUT) {
            client_tls_failed(cl);
        } else if (!cl->hs_answered && tls_conn_out_len(cl->tls) > 0) {
            /* Its ClientHello is answered: the client's part starts now, with the whole
             * handshake_timeout_ms for it, however long the ClientHello waited for the
             * handshake slice or the cap (that wait was bounded by the deadline from accept). */
            cl->hs_answered = true;
            loop_timer_arm(w->loop, &cl->timer,
                           loop_now_ms(w->loop) + w->e->cfg.listen.limits.handshake_timeout_ms,
                           client_timer_cb);
        }
        if (!cl->dead)
            client_flush(cl);
    }
    while (cl->established && !cl->dead) {
        char tmp[WORKER_READ_CHUNK];
        ssize_t r = tls_conn_read(cl->tls, tmp, sizeof(tmp));
        if (r > 0) {
            client_plaintext(cl, tmp, (size_t)r);
            continue;
        }
        if (r == 0) { /* close_notify */
            tls_conn_shutdown(cl->tls);
            client_flush(cl);
            metrics_inc(w->shard, METRIC_CONNECTIONS_CLOSED, METRICS_CLOSE_PEER);
            conn_drain(c);
        } else if (r != TLS_WANT_INPUT) {
            client_tls_read_failed(cl);
        } else {
            client_flush(cl);
        }
        break;
    }
}

/* Runs the handshake step `cl` waited for (in a handshake queue). `cl` stays allocated: the
 * caller frees it if it died meanwhile. */
void worker_client_run_queued(struct client *cl)
{
    cl->hs_queued = false;
    cl->busy = true;
    cl->completed = false;
    client_progress(cl);
    cl->busy = false;
}

static void client_on_data(struct conn *c, const char *p, size_t n)
{
    struct client *cl = conn_user(c);
    if (cl == NULL || cl->w->proxy == NULL) /* the drain's end: nothing more is read */
        return;
    struct worker *w = cl->w;
    cl->busy = true;
    bool was_established = cl->established;
    cl->completed = false;
    if (cl->tls == NULL)
        client_plaintext(cl, p, n);
    else if (tls_conn_feed(cl->tls, p, n) < 0)
        conn_close(c, CONN_CLOSE_ERROR);
    else if (cl->established || !worker_hs_queue(cl))
        client_progress(cl); /* a handshake step waits for the end of the turn, after the
                                established connections' traffic (now if it has no room) */
    cl->busy = false;
    if (cl->dead)
        worker_client_free(cl);
    else if (was_established)
        client_message_clock(cl);
    worker_schedule(w);
}

static void client_on_close(struct conn *c, enum conn_close_reason reason)
{
    struct client *cl = conn_user(c);
    if (cl == NULL)
        return;
    struct worker *w = cl->w;
    if (reason == CONN_CLOSE_PEER && cl->hs_queued && cl->hs_started && !cl->busy &&
        w->proxy != NULL) {
        /* Its Finished (and what came with it) was waiting for the handshake slice when the
         * client closed: run it now, as if it had not waited. The handshake completes and is
         * counted, and a request that came with it is handled (its answer has nowhere to go). */
        worker_client_run_queued(cl);
    }
    worker_hs_end(cl);
    conn_set_user(c, NULL);
    loop_timer_cancel(w->loop, &cl->timer);
    if (cl->prev != NULL)
        cl->prev->next = cl->next;
    else
        w->clients = cl->next;
    if (cl->next != NULL)
        cl->next->prev = cl->prev;
    if (!cl->ucm_peer)
        atomic_fetch_sub_explicit(&w->n_clients, 1, memory_order_relaxed);
    if (w->proxy != NULL)
        proxy_on_client_gone(w->proxy, cl->id);
    metrics_gauge_add(w->shard, -1, METRIC_CONNECTIONS_OPEN);
    if (reason == CONN_CLOSE_PEER)
        metrics_inc(w->shard, METRIC_CONNECTIONS_CLOSED, METRICS_CLOSE_PEER);
    else if (reason == CONN_CLOSE_SLOW)
        metrics_inc(w->shard, METRIC_CONNECTIONS_CLOSED, METRICS_CLOSE_OVERFLOW);
    cl->dead = true;
    if (!cl->busy)
        worker_client_free(cl);
}

static void client_timer_cb(struct loop *loop, struct loop_timer *t)
{
    struct client *cl = (struct client *)((char *)t - offsetof(struct client, timer));
    struct worker *w = cl->w;
    uint64_t now = loop_now_ms(loop);
    if (!cl->established) {
        tls_conn_abort(cl->tls, TLS_CAUSE_TIMEOUT);
        metrics_inc(w->shard, METRIC_TLS_HANDSHAKE_FAILURES, METRICS_SIDE_CLIENT,
                    METRICS_TLS_TIMEOUT);
        if (cl->hs_hello_waits) /* never answered: the edge's backlog, not the client's pace */
            metrics_inc(w->shard, METRIC_TLS_CLIENT_HELLOS_EXPIRED);
        metrics_inc(w->shard, METRIC_CONNECTIONS_CLOSED, METRICS_CLOSE_HANDSHAKE);
        conn_close(cl->conn, CONN_CLOSE_LOCAL);
        return;
    }
    uint64_t msg_due = cl->msg_start + w->e->cfg.listen.limits.message_timeout_ms;
    if (cl->msg_start != 0 && now >= msg_due) {
        log_event(LOG_INFO, "client_message_timeout", LOG_U("conn", cl->id),
                  LOG_U("ms", now - cl->msg_start), LOG_U("bytes_kept", cl->in_len));
        metrics_inc(w->shard, METRIC_CONNECTIONS_CLOSED, METRICS_CLOSE_MESSAGE_TIMEOUT);
        conn_close(cl->conn, CONN_CLOSE_LOCAL);
        return;
    }
    uint64_t idle = w->e->cfg.listen.limits.idle_timeout_ms;
    if (now - cl->last_active < idle) { /* activity since: sleep for the rest */
        uint64_t due = cl->last_active + idle;
        loop_timer_arm(loop, t, cl->msg_start != 0 && msg_due < due ? msg_due : due,
                       client_timer_cb);
        return;
    }
    metrics_inc(w->shard, METRIC_CONNECTIONS_CLOSED, METRICS_CLOSE_IDLE);
    cl->busy = true; /* a flush over the output cap closes the conn: keep `cl` until here */
    if (cl->tls != NULL && tls_conn_shutdown(cl->tls) == 0)
        client_flush(cl);
    cl->busy = false;
    if (cl->dead)
        worker_client_free(cl);
    else
        conn_drain(cl->conn);
}

static void client_on_open(struct conn *c)
{
    client_open(c, false);
}

static void ucm_on_open(struct conn *c)
{
    client_open(c, true);
}

const struct conn_ops worker_client_ops = {
    .on_open = client_on_open,
    .on_data = client_on_data,
    .on_close = client_on_close,
};

/* The same connection machinery (TLS, framing, bounds), UCM's messages go to the proxy's
 * upstream entry point. */
const struct conn_ops worker_ucm_ops = {
    .on_open = ucm_on_open,
    .on_data = client_on_data,
    .on_close = client_on_close,
};

/* ---- auth's Redis sockets and the tick timer ------------------------------------------- */

static void auth_poll_cb(struct loop *loop, struct loop_poll *p, unsigned revents);

/* Arms polls on auth's current sockets (they change on reconnect). */
static void worker_sync_polls(struct worker *w)
{
    if (w->auth == NULL)
        return;
    struct pollfd fds[2];
    auth_worker_pollfds(w->auth, fds);
    for (int i = 0; i < 2; i++) {
        if (fds[i].fd == w->poll_fd[i] && fds[i].events == w->poll_ev[i] &&
            loop_poll_armed(&w->polls[i]))
            continue;
        loop_poll_cancel(w->loop, &w->polls[i]);
        w->poll_fd[i] = fds[i].fd;
        w->poll_ev[i] = fds[i].events;
        if (fds[i].fd >= 0 && fds[i].events != 0)
            loop_poll_arm(w->loop, &w->polls[i], fds[i].fd, (unsigned)fds[i].events, auth_poll_cb);
    }
}

static void worker_tick_cb(struct loop *loop, struct loop_timer *t)
{
    struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, tick_timer));
    worker_schedule(w);
}

/* Runs due proxy and auth deadlines and arms the tick timer for the next one. */
void worker_schedule(struct worker *w)
{
    if (w->proxy == NULL)
        return; /* stopping */
    uint64_t now = loop_now_ms(w->loop);
    int64_t next = proxy_tick(w->proxy, (int64_t)now);
    if (w->auth != NULL) {
        int64_t wall = auth_now_ms();
        int64_t a = auth_worker_tick(w->auth, wall);
        metrics_gauge_set(w->shard, auth_worker_counters(w->auth)->l1_bytes, METRIC_AUTH_L1_BYTES);
        if (a != INT64_MAX) {
            int64_t mono = (int64_t)now + (a > wall ? a - wall : 0);
            if (mono < next)
                next = mono;
        }
        worker_sync_polls(w);
        worker_sync_redis_metrics(w);
    }
    if (next == INT64_MAX) {
        loop_timer_cancel(w->loop, &w->tick_timer);
        return;
    }
    if (next <= (int64_t)now)
        next = (int64_t)now + 1;
    if (!loop_timer_armed(&w->tick_timer) || w->tick_timer.deadline_ms != (uint64_t)next)
        loop_timer_arm(w->loop, &w->tick_timer, (uint64_t)next, worker_tick_cb);
}

static void auth_poll_cb(struct loop *loop, struct loop_poll *p, unsigned revents)
{
    struct worker *w = loop_user(loop);
    int i = p == &w->polls[0] ? 0 : 1;
    struct pollfd fds[2] = {{.fd = -1}, {.fd = -1}};
    fds[i].fd = w->poll_fd[i];
    fds[i].events = w->poll_ev[i];
    fds[i].revents = (short)revents;
    w->poll_ev[i] = 0; /* one-shot: re-armed by worker_sync_polls */
    auth_worker_on_poll(w->auth, fds, auth_now_ms());
    worker_schedule(w);
}

/* sipedge_redis_results_total from auth's counters (auth/ counts, the glue owns the metrics):
 * adds what changed since the last call. A lookup that timed out is counted by auth as an
 * error and by the Redis client as a timeout: it shows as timeout only. */
static void worker_sync_redis_metrics(struct worker *w)
{
    const struct auth_counters *c = auth_worker_counters(w->auth);
    const struct cache_redis *r = auth_worker_redis(w->auth, false);
    if (r == NULL)
        return;
    uint64_t timeouts = cache_redis_stats(r)->timeouts;
    uint64_t now[METRICS_REDIS_COUNT] = {
        [METRICS_REDIS_HIT] = c->l2_hit,
        [METRICS_REDIS_MISS] = c->l2_miss,
        [METRICS_REDIS_STORED] = c->l2_store,
        [METRICS_REDIS_BAD_HMAC] = c->l2_bad_hmac,
        [METRICS_REDIS_ERROR] = c->l2_error > timeouts ? c->l2_error - timeouts : 0,
        [METRICS_REDIS_TIMEOUT] = timeouts,
        [METRICS_REDIS_BREAKER_OPEN] = c->l2_unusable,
    };
    for (int i = 0; i < METRICS_REDIS_COUNT; i++) {
        if (now[i] > w->redis_seen[i]) {
            metrics_add(w->shard, now[i] - w->redis_seen[i], METRIC_REDIS_RESULTS, i);
            w->redis_seen[i] = now[i];
        }
    }
}

/* auth_jwt_verify, timed for sipedge_auth_verify_duration_seconds. */
static enum jwt_reason worker_verify(void *ctx, const char *tok, size_t len, int64_t now,
                                     struct jwt_result *out)
{
    struct worker *w = (struct worker *)((char *)ctx - offsetof(struct worker, verifier));
    uint64_t a = worker_mono_us();
    enum jwt_reason r = auth_jwt_verify(ctx, tok, len, now, out);
    metrics_observe_us(w->shard, worker_mono_us() - a, METRIC_AUTH_VERIFY_DURATION);
    return r;
}

static void auth_log(void *ctx, const char *event, const char *digest8)
{
    log_event(LOG_WARN, event, LOG_S("token_digest", digest8));
}

/* ---- life -------------------------------------------------------------------------------- */

/* sipedge_worker_turn_duration_seconds: how long one turn of the loop kept the worker busy (every
 * connection of the worker waits that long at worst: a reconnect storm's handshakes show here).
 * Also adds the connections the loop closed at accept for listen.limits.max_conns_per_ip or
 * max_conns_per_worker (net/ counts them; they never reach the worker) to
 * sipedge_connections_closed_total{reason="limit"}, and keeps the L1 gauges current. */
static void worker_turn(struct loop *loop, uint64_t busy_us, unsigned cqes)
{
    (void)cqes;
    struct worker *w = loop_user(loop);
    if (w == NULL)
        return;
    metrics_observe_us(w->shard, busy_us, METRIC_WORKER_TURN_DURATION);
    const struct loop_stats *ls = loop_stats(loop);
    uint64_t rejects = ls->rejected_source_cap + ls->rejected_worker_cap;
    if (rejects != w->cap_rejects_seen) {
        metrics_add(w->shard, rejects - w->cap_rejects_seen, METRIC_CONNECTIONS_CLOSED,
                    METRICS_CLOSE_LIMIT);
        w->cap_rejects_seen = rejects;
    }
    if (w->auth != NULL) {
        metrics_gauge_set(w->shard, auth_worker_counters(w->auth)->l1_bytes, METRIC_AUTH_L1_BYTES);
        metrics_gauge_set(w->shard, auth_worker_l1_entries(w->auth), METRIC_AUTH_L1_ENTRIES);
    }
}

struct worker *worker_new(struct edge *e, struct loop *loop, unsigned idx)
{
    const struct cfg *c = &e->cfg;
    struct worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->e = e;
    w->loop = loop;
    w->idx = idx;
    w->poll_fd[0] = w->poll_fd[1] = -1;
    w->max_msg = c->listen.limits.max_message;
    w->scratch = malloc(w->max_msg + WORKER_READ_CHUNK);
    w->shard = metrics_shard(e->metrics, idx);
    if (w->scratch == NULL)
        goto fail;
    loop_set_user(loop, w);
    loop_set_turn_fn(loop, worker_turn);

    struct tls_ctx *client_tls = NULL;
    edge_tls_get(e, &w->server_tls, &client_tls, &w->tls_gen);
    w->ucm_tls = edge_ucm_tls_get(e);

    /* auth */
    w->verifier.store = e->keys;
    w->verifier.pol = &e->policy;
    struct auth_config ac = {
        .verify = worker_verify,
        .verify_ctx = &w->verifier,
        .l1_capacity = c->auth.cache.l1_capacity,
        .max_token_len = c->listen.limits.max_token,
        .ttl_s = c->auth.cache.ttl_s,
        .negative_ttl_s = c->auth.cache.negative_ttl_s,
        .l1_max_bytes = c->auth.cache.l1_max_bytes,
        .source_rate = c->auth.source_rate,
        .source_burst = c->auth.source_burst,
        .source_slots = c->auth.source_table,
        .worker_rate = c->auth.worker_rate,
        .worker_burst = c->auth.worker_burst,
        .signature_only_ttl_s = c->auth.cache.signature_only_ttl_s,
        .log = auth_log,
    };
    if (c->auth.redis.enabled) {
        ac.redis_host = c->auth.redis.host;
        ac.redis_port = (uint16_t)c->auth.redis.port;
        ac.redis.timeout_ms = c->auth.redis.timeout_ms;
        ac.redis.breaker_failures = c->auth.redis.breaker.failures;
        ac.redis.backoff_min_ms = c->auth.redis.breaker.open_ms;
        ac.hmac_key = e->hmac_key;
        ac.hmac_key_len = e->hmac_key_len;
    }
    w->auth = auth_worker_new(&ac, auth_now_ms());
    if (w->auth == NULL) {
        log_event(LOG_ERROR, "worker_auth_failed", LOG_U("worker", idx));
        tls_ctx_unref(client_tls);
        goto fail;
    }

    if (RAND_bytes((unsigned char *)&w->flow_rng, sizeof(w->flow_rng)) != 1)
        goto fail;
    if (worker_hs_init(w) < 0)
        goto fail;
    /* proxy */
    struct proxy_cfg pc = {
        .worker = idx,
        .realm = c->sip.realm,
        .server = c->sip.server_header,
        .via_host = c->sip.edge_host,
        .via_port = (uint16_t)c->listen.port,
        .add_path = c->sip.path,
        .forward_auth = c->sip.forward_authorization,
        .timer_f_ms = c->sip.timer_f_ms,
        .retry_after_s = c->sip.retry_after_s,
        .max_transactions = 65536,
        .max_pending = c->upstream.max_pending,
        .max_queue_delay_ms = c->listen.limits.max_queue_delay_ms,
        .flow_keys = &e->flow_keys,
        .t1_ms = c->sip.timer_t1_ms,
        .timer_c_ms = c->sip.timer_c_ms,
        .max_txn_per_conn = c->listen.limits.max_transactions_per_conn,
        /* UCM reaches the edge at its listener when there is one (Path, Via, Record-Route) */
        .ucm_host = c->ucm_listen.port && c->ucm_listen.host[0] ? c->ucm_listen.host : NULL,
        .ucm_port = (uint16_t)c->ucm_listen.port,
        .leeway_s = c->auth.leeway_s,
        .challenge_scope = c->sip.challenge.scope[0] ? c->sip.challenge.scope : NULL,
        .challenge_authz_server =
            c->sip.challenge.authz_server[0] ? c->sip.challenge.authz_server : NULL,
    };
    struct proxy_env env = {.ctx = w,
                            .client_send = worker_client_send,
                            .upstream_send = env_upstream_send,
                            .client_source = env_client_source,
                            .client_token_failed = env_client_token_failed,
                            .client_waited_us = env_client_waited_us,
                            .client_binding = worker_env_client_binding,
                            .upstream_pick = worker_env_upstream_pick,
                            .peer_send = worker_env_peer_send,
                            .flow_send = worker_env_flow_send,
                            .response_post = worker_env_response_post};
    w->proxy = proxy_new(&pc, &env, w->auth, w->shard);
    if (w->proxy == NULL) {
        tls_ctx_unref(client_tls);
        goto fail;
    }

    /* upstream */
    struct upstream_cfg uc = {
        .n_nodes = c->upstream.node_count,
        .round_robin = c->upstream.policy == CFG_POLICY_ROUND_ROBIN,
        .pool_size = c->upstream.pool_size,
        .connect_timeout_ms = c->upstream.connect_timeout_ms,
        .backoff_min_ms = c->upstream.backoff_min_ms,
        .backoff_max_ms = c->upstream.backoff_max_ms,
        .keepalive_interval_ms = c->upstream.keepalive_interval_ms,
        .tls = client_tls,
    };
    for (unsigned i = 0; i < uc.n_nodes && i < UPSTREAM_MAX_NODES; i++) {
        uc.nodes[i].host = c->upstream.nodes[i].host;
        uc.nodes[i].port = (uint16_t)c->upstream.nodes[i].port;
        uc.nodes[i].name = c->upstream.nodes[i].name[0] ? c->upstream.nodes[i].name : NULL;
    }
    w->up = upstream_new(loop, &uc, &worker_upstream_ops, w);
    tls_ctx_unref(client_tls);
    if (w->up == NULL) {
        log_event(LOG_ERROR, "worker_upstream_failed", LOG_U("worker", idx));
        goto fail;
    }
    worker_schedule(w);
    worker_status_start(w);
    return w;
fail:
    worker_free(w);
    return NULL;
}

void worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    loop_timer_cancel(w->loop, &w->tick_timer);
    loop_timer_cancel(w->loop, &w->status_timer);
    loop_timer_cancel(w->loop, &w->stop_timer);
    worker_hs_deinit(w);
    for (int i = 0; i < 2; i++)
        loop_poll_cancel(w->loop, &w->polls[i]);
    proxy_free(w->proxy);
    upstream_free(w->up);
    auth_worker_free(w->auth);
    auth_jwt_verifier_deinit(&w->verifier);
    tls_ctx_unref(w->server_tls);
    tls_ctx_unref(w->ucm_tls);
    for (size_t i = 0; i < WORKER_MAX_UPCONNS; i++)
        free(w->upbufs[i].in);
    if (loop_user(w->loop) == w) {
        loop_set_user(w->loop, NULL);
        loop_set_turn_fn(w->loop, NULL);
    }
    free(w->scratch);
    free(w);
}

void worker_reload(struct worker *w)
{
    struct tls_ctx *server = NULL, *client = NULL;
    uint64_t gen;
    edge_tls_get(w->e, &server, &client, &gen);
    if (gen != w->tls_gen) {
        tls_ctx_swap(&w->server_tls, server);
        server = NULL;
        tls_ctx_swap(&w->ucm_tls, edge_ucm_tls_get(w->e));
        upstream_set_tls(w->up, client);
        w->tls_gen = gen;
    }
    tls_ctx_unref(server);
    tls_ctx_unref(client);
    auth_worker_flush(w->auth);
}

void worker_drain(struct worker *w)
{
    loop_unlisten(w->loop);
}

static void worker_stop_check(struct loop *loop, struct loop_timer *t)
{
    struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, stop_timer));
    uint64_t now = loop_now_ms(loop);
    if (loop_stats(loop)->conns_open > 0 && now < w->stop_deadline) {
        loop_timer_arm(loop, t, now + WORKER_STOP_POLL_MS, worker_stop_check);
        return;
    }
    uint64_t left = loop_stats(loop)->conns_open;
    if (left > 0) {
        log_event(LOG_WARN, "drain_flush_timeout", LOG_U("worker", w->idx),
                  LOG_U("connections", left));
        loop_close_conns(loop, CONN_CLOSE_SHUTDOWN);
    }
    void (*stopped)(void *) = w->stopped;
    void *arg = w->stopped_arg;
    worker_free(w);
    stopped(arg);
}

void worker_stop(struct worker *w, uint32_t flush_ms, void (*stopped)(void *arg), void *arg)
{
    w->stopped = stopped;
    w->stopped_arg = arg;
    loop_unlisten(w->loop);
    /* Transactions still open get the edge's 503 + Retry-After while their clients are here. */
    uint64_t open = proxy_stats(w->proxy)->transactions_open;
    proxy_free(w->proxy);
    w->proxy = NULL;
    unsigned n = 0;
    for (struct client *cl = w->clients, *next; cl != NULL; cl = next, n++) {
        next = cl->next; /* conn_drain() may close at once: on_close unlinks and frees `cl` */
        metrics_inc(w->shard, METRIC_CONNECTIONS_CLOSED, METRICS_CLOSE_DRAIN);
        cl->busy = true; /* a send over the output cap closes the conn: keep `cl` until here */
        if (cl->tls != NULL && cl->established && tls_conn_shutdown(cl->tls) == 0)
            client_flush(cl);
        cl->busy = false;
        if (cl->dead)
            worker_client_free(cl);
        else
            conn_drain(cl->conn); /* may close at once: `cl` is gone after it */
    }
    upstream_shutdown(w->up);
    log_event(LOG_INFO, "drain_worker_closing", LOG_U("worker", w->idx), LOG_U("clients", n),
              LOG_U("answered_503", open));
    w->stop_deadline = loop_now_ms(w->loop) + flush_ms;
    loop_timer_arm(w->loop, &w->stop_timer, loop_now_ms(w->loop), worker_stop_check);
}

unsigned worker_clients_open(const struct worker *w)
{
    return atomic_load_explicit(&w->n_clients, memory_order_relaxed);
}

uint64_t worker_transactions_open(const struct worker *w)
{
    if (w->proxy == NULL)
        return 0;
    const struct proxy_stats *st = proxy_stats(w->proxy);
    return st->transactions_open + st->calls_pending;
}
