// SPDX-License-Identifier: MIT
// The REGISTER proxy of one worker: challenge, token check, identity binding, forwarding rewrite
// (our Via, Max-Forwards, Path), the transaction table with Timer F, and response routing by the
// branch of our Via. SPEC.md sections 3 and 4.
#include "core/proxy.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/sip_build.h"
#include "core/sip_check.h"
#include "core/sip_parse.h"
#include "core/proxy_priv.h"

/* ---- small helpers ------------------------------------------------------------------------ */

/* Writes `v` as lowercase hex without leading zeros ("0" for 0); returns the digits written. */
static size_t put_hex(char *out, uint32_t v)
{
    char tmp[8];
    size_t n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* Reads ".<1..8 hex digits>" at *c (before `end`) into `out`; false when it is not there. */
static bool get_hex(const char **c, const char *end, uint32_t *out)
{
    const char *s = *c;
    if (s >= end || *s++ != '.')
        return false;
    uint32_t v = 0;
    size_t n = 0;
    for (; s < end && n < 9; s++, n++) {
        unsigned d;
        if (*s >= '0' && *s <= '9')
            d = (unsigned)(*s - '0');
        else if (*s >= 'a' && *s <= 'f')
            d = (unsigned)(*s - 'a' + 10);
        else
            break;
        v = v << 4 | d;
    }
    if (n == 0 || n > 8)
        return false;
    *c = s;
    *out = v;
    return true;
}

static char *dup_or_null(const char *s)
{
    return s == NULL ? NULL : strdup(s);
}

enum metrics_method proxy_metrics_method(enum sip_method m)
{
    switch (m) {
    case SIP_METHOD_REGISTER:
        return METRICS_METHOD_REGISTER;
    case SIP_METHOD_OPTIONS:
        return METRICS_METHOD_OPTIONS;
    case SIP_METHOD_INVITE:
        return METRICS_METHOD_INVITE;
    case SIP_METHOD_ACK:
        return METRICS_METHOD_ACK;
    case SIP_METHOD_BYE:
        return METRICS_METHOD_BYE;
    case SIP_METHOD_CANCEL:
        return METRICS_METHOD_CANCEL;
    default:
        return METRICS_METHOD_OTHER;
    }
}

/* True when `hay` contains `needle` (ASCII, case-insensitive). */
static bool contains_ci(struct slice hay, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; n <= hay.len && i <= hay.len - n; i++)
        if (strncasecmp(hay.base + i, needle, n) == 0)
            return true;
    return false;
}

static struct proxy *proxy_of(struct reg_txn *t)
{
    return (struct proxy *)((char *)(t - t->slot) - offsetof(struct proxy, txns));
}

static void fifo_push(struct proxy *p, struct reg_txn *t)
{
    t->next = PROXY_NIL;
    t->prev = p->fifo_tail;
    if (p->fifo_tail != PROXY_NIL)
        p->txns[p->fifo_tail].next = t->slot;
    else
        p->fifo_head = t->slot;
    p->fifo_tail = t->slot;
}

static void fifo_remove(struct proxy *p, struct reg_txn *t)
{
    if (t->prev != PROXY_NIL)
        p->txns[t->prev].next = t->next;
    else
        p->fifo_head = t->next;
    if (t->next != PROXY_NIL)
        p->txns[t->next].prev = t->prev;
    else
        p->fifo_tail = t->prev;
    t->prev = t->next = PROXY_NIL;
}

static struct reg_txn *reg_alloc(struct proxy *p, uint32_t client_id, int64_t now)
{
    struct reg_txn *t;
    if (p->free_head != PROXY_NIL) {
        t = &p->txns[p->free_head];
        p->free_head = t->next;
    } else if (p->fresh < p->cap) { /* a never-used slot: first touched now */
        t = &p->txns[p->fresh];
        t->slot = p->fresh++;
    } else {
        return NULL;
    }
    t->client_id = client_id;
    t->bind_exp = 0;
    t->started = now;
    t->deadline = now + p->cfg.timer_f_ms;
    fifo_push(p, t);
    p->stats.transactions_open++;
    metrics_gauge_add(p->shard, 1, METRIC_TRANSACTIONS_OPEN);
    return t;
}

static void reg_free(struct proxy *p, struct reg_txn *t)
{
    fifo_remove(p, t);
    free(t->req);
    t->req = NULL;
    t->req_len = 0;
    t->state = REG_FREE;
    t->gen++;
    t->next = p->free_head;
    p->free_head = t->slot;
    p->stats.transactions_open--;
    metrics_gauge_add(p->shard, -1, METRIC_TRANSACTIONS_OPEN);
}

/* Copies the request so that it can be parked or answered later (408, 503). */
static int reg_keep(struct reg_txn *t, const struct sip_msg *msg, bool with_body)
{
    const char *base = msg->method_text.base;
    size_t len = msg->header_len + (with_body ? msg->body.len : 0);
    char *copy = malloc(len);
    if (copy == NULL)
        return -ENOMEM;
    memcpy(copy, base, len);
    free(t->req);
    t->req = copy;
    t->req_len = (uint32_t)len;
    return 0;
}

/* Re-indexes a kept request copy (it was scanned once already, so this cannot fail unless the
 * copy holds the headers only: then the Content-Length is ignored by passing the limit). */
static bool reg_rescan(struct proxy *p, struct reg_txn *t, struct sip_msg *msg)
{
    sip_msg_init(msg, p->hdrs, PROXY_MAX_HEADERS);
    msg->limits.max_size = (size_t)t->req_len + 65536;
    msg->limits.max_body = 65536;
    ssize_t r = sip_scan(t->req, t->req_len, 0, msg);
    return r > 0 || (r == SIP_INCOMPLETE && msg->header_len > 0);
}

/* ---- responses made by the edge ------------------------------------------------------------ */

void proxy_count_response(struct proxy *p, enum sip_method m, int status, bool upstream)
{
    if (status < 200) /* finals only: a 100 Trying or a relayed 180 is not an answer */
        return;
    metrics_inc(p->shard, METRIC_SIP_RESPONSES, proxy_metrics_method(m), metrics_code_of(status),
                upstream ? METRICS_SOURCE_UPSTREAM : METRICS_SOURCE_EDGE);
    if (status >= 100 && status < 700) {
        if (upstream)
            p->stats.relayed[status / 100]++;
        else
            p->stats.answered_by_edge[status / 100]++;
    }
}

/* sipedge_register_duration_seconds: a REGISTER that had a transaction (it went to UCM or waited
 * on Redis), from its arrival to its final response queued. */
static void observe_register(struct proxy *p, const struct reg_txn *t, int64_t now)
{
    int64_t us = (now - t->started) * 1000;
    metrics_observe_us(p->shard, us > 0 ? (uint64_t)us : 0, METRIC_REGISTER_DURATION);
}

/* Builds and sends a response to `req` from client `cid`. `extra` lines without CRLF. */
ssize_t proxy_build_response(struct proxy *p, const struct sip_msg *req, int status,
                             const char *reason, const struct slice *extra, size_t n_extra)
{
    struct slice lines[8];
    size_t n = 0;
    char server[300];
    int sl = snprintf(server, sizeof(server), "Server: %s", p->server);
    lines[n++] = slice_make(server, (size_t)sl);
    for (size_t i = 0; i < n_extra && n < 8; i++)
        lines[n++] = extra[i];
    char tag[32];
    int tl = status == 100 ? 0 /* a 100 is hop by hop: no To tag (RFC 3261 §8.2.6.2) */
                           : snprintf(tag, sizeof(tag), "se%s%" PRIx64, p->nonce, ++p->tag_seq);
    ssize_t len =
        sip_build_response(req, status, slice_make(reason, strlen(reason)),
                           slice_make(tag, (size_t)tl), lines, n, p->resp, sizeof(p->resp));
    if (len < 0)
        log_event(LOG_WARN, "response_build_failed", LOG_I("status", status), LOG_I("error", len));
    return len;
}

/* Builds and sends a response to `req` from client `cid`. `extra` lines without CRLF. */
void proxy_respond(struct proxy *p, uint32_t cid, const struct sip_msg *req, int status,
                   const char *reason, const struct slice *extra, size_t n_extra)
{
    ssize_t len = proxy_build_response(p, req, status, reason, extra, n_extra);
    if (len < 0)
        return;
    struct slice iov = slice_make(p->resp, (size_t)len);
    if (p->env.client_send(p->env.ctx, cid, &iov, 1) == -ENOTCONN) {
        p->stats.drop_client_gone++;
        metrics_inc(p->shard, METRIC_SIP_DROPPED, METRICS_DROP_CLIENT_GONE);
        return;
    }
    proxy_count_response(p, req->method, status, false);
}

/* 407 (or 403 insufficient_scope) with a Bearer challenge; `error` NULL for the first one. */
void proxy_challenge(struct proxy *p, uint32_t cid, const struct sip_msg *req, int status,
                     const char *error)
{
    char line[1024];
    int n = snprintf(line, sizeof(line), "Proxy-Authenticate: Bearer realm=\"%s\"", p->realm);
    if (error != NULL)
        n += snprintf(line + n, sizeof(line) - (size_t)n, ", error=\"%s\"", error);
    if (p->scope != NULL)
        n += snprintf(line + n, sizeof(line) - (size_t)n, ", scope=\"%s\"", p->scope);
    if (p->authz != NULL)
        n += snprintf(line + n, sizeof(line) - (size_t)n, ", authz_server=\"%s\"", p->authz);
    if (n >= (int)sizeof(line))
        n = (int)sizeof(line) - 1;
    struct slice extra = slice_make(line, (size_t)n);
    proxy_respond(p, cid, req, status,
                  status == 407 ? "Proxy Authentication Required" : "Forbidden", &extra, 1);
}

static void respond_503_after(struct proxy *p, uint32_t cid, const struct sip_msg *req,
                              unsigned retry_after_s)
{
    char line[64];
    int n = snprintf(line, sizeof(line), "Retry-After: %u", retry_after_s);
    struct slice extra = slice_make(line, (size_t)n);
    proxy_respond(p, cid, req, 503, "Service Unavailable", &extra, 1);
}

void proxy_respond_503(struct proxy *p, uint32_t cid, const struct sip_msg *req)
{
    respond_503_after(p, cid, req, p->cfg.retry_after_s);
}

/* ---- the REGISTER path ------------------------------------------------------------------- */

static enum metrics_auth_result auth_metric(enum jwt_reason r)
{
    switch (r) {
    case JWT_OK:
        return METRICS_AUTH_OK;
    case JWT_E_MALFORMED:
    case JWT_E_TOO_LARGE:
    case JWT_E_MISSING_CLAIM:
        return METRICS_AUTH_MALFORMED;
    case JWT_E_BAD_SIGNATURE:
        return METRICS_AUTH_BAD_SIGNATURE;
    case JWT_E_UNKNOWN_KID:
        return METRICS_AUTH_UNKNOWN_KID;
    case JWT_E_ALG_NOT_ALLOWED:
        return METRICS_AUTH_BAD_ALG;
    case JWT_E_EXPIRED:
        return METRICS_AUTH_EXPIRED;
    case JWT_E_NOT_YET_VALID:
        return METRICS_AUTH_NOT_YET_VALID;
    case JWT_E_BAD_ISSUER:
        return METRICS_AUTH_BAD_ISS;
    case JWT_E_BAD_AUDIENCE:
        return METRICS_AUTH_BAD_AUD;
    case JWT_E_INSUFFICIENT_SCOPE:
        return METRICS_AUTH_INSUFFICIENT_SCOPE;
    case JWT_E_REVOKED:
        return METRICS_AUTH_REVOKED;
    case JWT_E_DECRYPT_FAILED:
        return METRICS_AUTH_DECRYPT;
    default:
        return METRICS_AUTH_ERROR;
    }
}

/* The identity a request claims: the To user of a REGISTER (its address-of-record), the From
 * user of anything else. */
static int aor_user(const struct sip_msg *msg, struct slice *user)
{
    const struct sip_header *to =
        sip_first(msg, msg->method == SIP_METHOD_REGISTER ? SIP_HDR_TO : SIP_HDR_FROM);
    struct sip_name_addr na;
    if (to == NULL || sip_parse_name_addr(to->value, &na) < 0 || !na.uri.has_user)
        return -EINVAL;
    *user = na.uri.user;
    return 0;
}

/* Sends `req` (from client `cid`) upstream in transaction `t`. Answers 483/400/503 itself. */
static void forward(struct proxy *p, struct reg_txn *t, const struct sip_msg *req, int64_t now)
{
    /* Our Via is the precomputed prefix plus ".<worker>.<slot>.<gen>" in hex: no printf here. */
    char via[PROXY_VIA_MAX + 32], scratch[768];
    memcpy(via, p->via, p->via_len);
    size_t vl = p->via_len;
    via[vl++] = '.';
    vl += put_hex(via + vl, p->cfg.worker);
    via[vl++] = '.';
    vl += put_hex(via + vl, t->slot);
    via[vl++] = '.';
    vl += put_hex(via + vl, t->gen);
    memcpy(via + vl, ";alias", 6); /* RFC 5923: UCM may send to the Path over this connection */
    vl += 6;
    /* The Path names this client's connection (RFC 5626 flow token): UCM's requests for it find
     * their way back to it (docs/internals/calls.md). */
    char path[PROXY_VIA_MAX + 64];
    size_t path_len = 0;
    if (p->cfg.add_path) {
        char tmp[FLOW_TOKEN_LEN];
        const char *tok = client_token(p, t->client_id, tmp);
        ssize_t pl =
            tok == NULL ? -EIO : route_build_path_token(&p->addrs[1], tok, path, sizeof(path));
        if (pl < 0) {
            proxy_respond(p, t->client_id, req, 500, "Server Internal Error", NULL, 0);
            reg_free(p, t);
            return;
        }
        path_len = (size_t)pl;
    }
    /* Stripping means the token never reaches UCM, in whichever header the client sent it. */
    static const uint16_t drop_auth[] = {SIP_HDR_PROXY_AUTHORIZATION, SIP_HDR_AUTHORIZATION};
    struct sip_rewrite rw = {
        .via = slice_make(via, vl),
        .path = slice_make(path, path_len),
        .max_forwards = true,
        .drop = p->cfg.forward_auth ? NULL : drop_auth,
        .n_drop = p->cfg.forward_auth ? 0 : 2,
    };
    struct slice iov[PROXY_IOV_MAX];
    ssize_t n = sip_rewrite_request(req, &rw, iov, PROXY_IOV_MAX, scratch, sizeof(scratch));
    if (n == -ELOOP) {
        proxy_respond(p, t->client_id, req, 483, "Too Many Hops", NULL, 0);
        reg_free(p, t);
        return;
    }
    if (n < 0) {
        proxy_respond(p, t->client_id, req, 400,
                      n == -EBADMSG ? "Bad Max-Forwards" : "Bad Request (cannot forward)", NULL, 0);
        reg_free(p, t);
        return;
    }
    /* Keep the request for a 408 or 503 made later, and to send it again if its connection
     * dies (before sending: the iov borrows `req`, which may be t->req itself when it was
     * parked or is being sent again; then it is kept already). */
    if (t->req == NULL && reg_keep(t, req, true) < 0) {
        proxy_respond_503(p, t->client_id, req);
        reg_free(p, t);
        return;
    }
    struct proxy_sent sent = {0};
    int r = p->env.upstream_send(p->env.ctx, iov, (size_t)n, &sent);
    if (r < 0) {
        p->stats.no_upstream++;
        if (now - p->last_503_log >= 1000) { /* at most one line a second per worker */
            p->last_503_log = now;
            log_event(LOG_WARN, "upstream_unavailable", LOG_S("error", strerror(-r)),
                      LOG_U("worker", p->cfg.worker), LOG_U("count", p->stats.no_upstream));
        }
        proxy_respond_503(p, t->client_id, req);
        reg_free(p, t);
        return;
    }
    t->state = REG_FORWARDED;
    t->deadline = now + p->cfg.timer_f_ms;
    t->up_conn = sent.conn_id;
    t->forwarded = now;
    p->stats.forwarded++;
    if (sent.failover && !p->resending) /* a resend is counted once, by its caller */
        metrics_inc(p->shard, METRIC_UPSTREAM_FAILOVERS);
}

/* The decision once the token's fate is known. `t` is the transaction if one was parked. */
static void decide(struct proxy *p, uint32_t cid, const struct sip_msg *req, struct reg_txn *t,
                   enum auth_status st, const struct jwt_result *res, enum metrics_auth_layer layer,
                   int64_t now)
{
    if (st == AUTH_THROTTLED || st == AUTH_OVERLOADED) { /* no verify spent: "try again shortly" */
        metrics_inc(p->shard, METRIC_AUTH_REFUSED,
                    st == AUTH_THROTTLED ? METRICS_REFUSED_SOURCE_BUDGET
                                         : METRICS_REFUSED_WORKER_BUDGET);
        respond_503_after(p, cid, req, PROXY_THROTTLE_RETRY_S);
        if (t != NULL)
            reg_free(p, t);
        return;
    }
    if (st == AUTH_CANCELLED || res == NULL) {
        proxy_respond_503(p, cid, req);
        if (t != NULL)
            reg_free(p, t);
        return;
    }
    if (st != AUTH_OK) {
        metrics_inc(p->shard, METRIC_AUTH_RESULTS, auth_metric(res->reason), layer);
        if (res->reason == JWT_E_INSUFFICIENT_SCOPE)
            proxy_challenge(p, cid, req, 403, "insufficient_scope");
        else
            proxy_challenge(p, cid, req, 407, "invalid_token");
        if (t != NULL)
            reg_free(p, t);
        if (p->env.client_token_failed != NULL) /* last: it may close the client */
            p->env.client_token_failed(p->env.ctx, cid);
        return;
    }
    struct slice user;
    if (aor_user(req, &user) < 0) {
        proxy_respond(p, cid, req, 400, "Bad To", NULL, 0);
        if (t != NULL)
            reg_free(p, t);
        return;
    }
    /* The user part of a SIP URI compares case-sensitively (RFC 3261 19.1.4); a signature-only
     * cucm token has no readable identity, and UCM checks it again. */
    if (!res->signature_only && !slice_eq(user, slice_make(res->user, res->user_len))) {
        p->stats.identity_mismatch++;
        metrics_inc(p->shard, METRIC_AUTH_RESULTS, METRICS_AUTH_IDENTITY_MISMATCH, layer);
        proxy_respond(p, cid, req, 403, "Forbidden", NULL, 0);
        if (t != NULL)
            reg_free(p, t);
        return;
    }
    metrics_inc(p->shard, METRIC_AUTH_RESULTS, METRICS_AUTH_OK, layer);
    if (req->method != SIP_METHOD_REGISTER) { /* a request with its own token (RFC 8898) */
        calls_forward_verified(p, cid, req, now);
        if (t != NULL)
            reg_free(p, t);
        return;
    }
    if (t == NULL) {
        t = reg_alloc(p, cid, now);
        if (t == NULL) {
            proxy_respond_503(p, cid, req);
            return;
        }
    }
    /* The 2xx binds the connection to the To user (the token's identity, checked equal above;
     * for a signature-only token the user UCM itself checks): read again from the kept copy. */
    t->bind_exp = res->exp > 0 ? res->exp : auth_now_ms() / 1000 + 3600;
    forward(p, t, req, now);
}

static enum metrics_auth_layer layer_of(const struct proxy *p)
{
    switch (auth_last_layer(p->aw)) {
    case AUTH_LAYER_L1:
        return METRICS_LAYER_L1;
    case AUTH_LAYER_L2:
        return METRICS_LAYER_L2;
    default:
        return METRICS_LAYER_VERIFY;
    }
}

static void on_auth_done(void *arg, enum auth_status st, const struct jwt_result *res)
{
    struct reg_txn *t = arg;
    struct proxy *p = proxy_of(t);
    struct sip_msg msg;
    int64_t now = t->started; /* callbacks carry no clock: Timer F restarts from here */
    if (t->state != REG_AUTH_WAIT || !reg_rescan(p, t, &msg)) {
        if (t->state == REG_AUTH_WAIT)
            reg_free(p, t);
        return;
    }
    decide(p, t->client_id, &msg, t, st, res, layer_of(p), now);
}

/* Admission: this REGISTER would wait behind others, so it gets 503 at once, before any token
 * check, with a Retry-After of 1 to 4 s so that the shed clients do not all come back in the same
 * second. Two reasons: the worker already has cfg.max_pending REGISTERs waiting for UCM (or
 * Redis: UCM is slower than us, or down to one node), or this one already waited longer than
 * cfg.max_queue_delay_ms since it reached the host (the worker is behind: its own CPU is short,
 * and what it would accept now would be answered later still). */
static void shed(struct proxy *p, uint32_t cid, const struct sip_msg *req, int64_t now,
                 uint64_t waited_us)
{
    bool delay = waited_us > 0;
    if (delay)
        p->stats.shed_delay++;
    else
        p->stats.shed++;
    metrics_inc(p->shard, METRIC_REGISTERS_SHED,
                delay ? METRICS_SHED_QUEUE_DELAY : METRICS_SHED_UPSTREAM_PENDING);
    int64_t *last = delay ? &p->last_delay_log : &p->last_shed_log;
    if (now - *last >= 1000) { /* at most one line a second per worker and reason */
        *last = now;
        if (delay)
            log_event(LOG_WARN, "worker_behind", LOG_U("worker", p->cfg.worker),
                      LOG_U("waited_ms", waited_us / 1000),
                      LOG_U("limit_ms", p->cfg.max_queue_delay_ms),
                      LOG_U("shed", p->stats.shed_delay));
        else
            log_event(LOG_WARN, "upstream_saturated", LOG_U("worker", p->cfg.worker),
                      LOG_U("pending", p->stats.transactions_open),
                      LOG_U("limit", p->cfg.max_pending), LOG_U("shed", p->stats.shed));
    }
    respond_503_after(p, cid, req, 1 + (unsigned)((cid ^ (uint64_t)now) % 4));
}

/* How long this request waited before the worker read it, when that is over the admission bound;
 * else 0. A connection not bound yet (its first REGISTER, after a reconnect) is not shed for
 * delay: its TLS handshake, ten times the cost of the REGISTER, is already paid, and shedding it
 * would only make a reconnect storm last longer. Refreshes of bound connections are what a
 * worker behind puts off: their registration at UCM is still valid. */
static uint64_t waited_too_long(struct proxy *p, uint32_t cid)
{
    if (p->cfg.max_queue_delay_ms == 0 || p->env.client_waited_us == NULL)
        return 0;
    if (p->env.client_binding != NULL) {
        const struct policy_binding *b = p->env.client_binding(p->env.ctx, cid);
        if (b == NULL || !b->bound)
            return 0;
    }
    uint64_t w = p->env.client_waited_us(p->env.ctx, cid);
    return w > (uint64_t)p->cfg.max_queue_delay_ms * 1000 ? w : 0;
}

/* A request with Bearer credentials `cred`: a REGISTER (SIP_CHECK_AUTH), or another method
 * carrying its own token. */
void proxy_verify_request(struct proxy *p, uint32_t cid, const struct sip_msg *req,
                          const struct sip_cred *cred, int64_t now)
{
    struct jwt_result res;
    if (p->aw == NULL) {
        memset(&res, 0, sizeof(res));
        res.reason = JWT_E_UNKNOWN_KID;
        decide(p, cid, req, NULL, AUTH_FAIL, &res, METRICS_LAYER_VERIFY, now);
        return;
    }
    uint64_t waited = waited_too_long(p, cid);
    if (waited || (p->cfg.max_pending && p->stats.transactions_open >= p->cfg.max_pending)) {
        shed(p, cid, req, now, waited);
        return;
    }
    /* The transaction exists before the check so that a parked request has its slot. */
    struct reg_txn *t = reg_alloc(p, cid, now);
    if (t == NULL) {
        proxy_respond_503(p, cid, req);
        return;
    }
    t->state = REG_AUTH_WAIT;
    uint8_t src[BUDGET_ADDR_LEN];
    bool have_src = p->env.client_source != NULL && p->env.client_source(p->env.ctx, cid, src);
    enum auth_status st =
        auth_check_from(p->aw, cred->token.base, cred->token.len, have_src ? src : NULL,
                        auth_now_ms(), on_auth_done, t, &res);
    if (st == AUTH_PENDING) {
        p->stats.auth_pending++;
        if (reg_keep(t, req, true) < 0) {
            auth_cancel(p->aw, t);
            proxy_respond_503(p, cid, req);
            reg_free(p, t);
        }
        return;
    }
    decide(p, cid, req, t, st, &res, layer_of(p), now);
}

/* ---- entry points ------------------------------------------------------------------------- */

/* Acts on a verdict of core/sip_check.c: the one place that decides what a request gets. */
static void act(struct proxy *p, uint32_t cid, const struct sip_msg *msg,
                const struct sip_verdict *v, int64_t now)
{
    switch (v->action) {
    case SIP_CHECK_ANSWER:
        proxy_respond(p, cid, msg, v->status, v->reason, v->extra, v->n_extra);
        return;
    case SIP_CHECK_CHALLENGE:
        metrics_inc(p->shard, METRIC_AUTH_RESULTS,
                    v->error == NULL ? METRICS_AUTH_NO_CREDENTIALS : METRICS_AUTH_MALFORMED,
                    METRICS_LAYER_VERIFY);
        proxy_challenge(p, cid, msg, 407, v->error);
        return;
    case SIP_CHECK_AUTH:
        proxy_verify_request(p, cid, msg, &v->cred, now);
        return;
    case SIP_CHECK_FORWARD:
        calls_client_request(p, cid, msg, v, now);
        return;
    default: /* DROP: an ACK is never answered (RFC 3261 17.2.3); CLOSE is the glue's */
        return;
    }
}

void proxy_on_client_request(struct proxy *p, uint32_t client_id, const struct sip_msg *msg,
                             int64_t now_ms)
{
    enum sip_method m = msg->method;
    p->stats.requests[m]++;
    metrics_inc(p->shard, METRIC_SIP_REQUESTS, proxy_metrics_method(m));
    /* Every check (one identity per request first: a second To is never looked at nor
     * forwarded, issue 10) is in core/sip_check.c, shared with sipedge-scan. */
    struct sip_verdict v;
    sip_check_request(msg, slice_make(p->realm, strlen(p->realm)), &v);
    act(p, client_id, msg, &v, now_ms);
}

bool proxy_on_client_garbage(struct proxy *p, uint32_t client_id, const struct sip_msg *msg)
{
    if (msg->is_request) {
        /* A request refused for its form (too large, bad line...) is still a request received:
         * the books must see one request for the response it gets. */
        enum sip_method m = msg->method < SIP_METHOD_COUNT ? msg->method : SIP_METHOD_UNKNOWN;
        p->stats.requests[m]++;
        metrics_inc(p->shard, METRIC_SIP_REQUESTS, proxy_metrics_method(m));
    }
    struct sip_verdict v;
    sip_check_garbage(msg, &v);
    if (v.action != SIP_CHECK_ANSWER)
        return false;
    proxy_respond(p, client_id, msg, v.status, v.reason, v.extra, v.n_extra);
    return true;
}

/* A 2xx to a token-verified REGISTER: its connection is now bound to that identity, or unbound
 * by a de-REGISTER (core/policy.h). */
static void bind_client(struct proxy *p, struct reg_txn *t)
{
    if (p->env.client_binding == NULL || t->bind_exp == 0)
        return;
    struct policy_binding *b = p->env.client_binding(p->env.ctx, t->client_id);
    struct sip_msg reg;
    struct slice user;
    if (b == NULL || !reg_rescan(p, t, &reg) || aor_user(&reg, &user) < 0)
        return;
    if (policy_is_deregister(&reg))
        policy_unbind(b);
    else
        policy_bind(b, user, t->bind_exp);
}

/* Decodes our branch "z9hG4bK-se<nonce>.<worker>.<slot>.<gen>". */
static struct reg_txn *reg_of_branch(struct proxy *p, struct slice branch, bool *ours)
{
    const size_t pre = sizeof(PROXY_BRANCH_PREFIX) - 1;
    *ours = false;
    if (branch.len < pre + 8 || memcmp(branch.base, PROXY_BRANCH_PREFIX, pre) != 0 ||
        memcmp(branch.base + pre, p->nonce, 8) != 0)
        return NULL;
    const char *c = branch.base + pre + 8, *end = branch.base + branch.len;
    uint32_t w, slot, gen;
    if (!get_hex(&c, end, &w) || !get_hex(&c, end, &slot) || !get_hex(&c, end, &gen) || c != end ||
        w != p->cfg.worker)
        return NULL;
    *ours = true;
    if (slot >= p->cap)
        return NULL;
    struct reg_txn *t = &p->txns[slot];
    if (t->gen != gen || t->state != REG_FORWARDED)
        return NULL;
    return t;
}

void proxy_on_upstream_message(struct proxy *p, uint32_t conn_id, int node,
                               const struct sip_msg *msg, int64_t now_ms)
{
    if (msg->is_request) { /* UCM → client: core/calls.c */
        calls_ucm_request(p, conn_id, node, msg, now_ms);
        return;
    }
    if (calls_response(p, false, p->cfg.worker, conn_id, msg, now_ms))
        return;
    struct slice iov[4];
    struct slice top;
    ssize_t n = sip_pop_via(msg, iov, 4, &top);
    struct sip_via via;
    bool ours = false;
    struct reg_txn *t = NULL;
    if (n > 0 && sip_parse_via(top, &via) == 0)
        t = reg_of_branch(p, via.branch, &ours);
    if (!ours) {
        p->stats.drop_via_not_ours++;
        metrics_inc(p->shard, METRIC_SIP_DROPPED, METRICS_DROP_VIA_NOT_OURS);
        return;
    }
    if (t == NULL) {
        p->stats.drop_stale++;
        metrics_inc(p->shard, METRIC_SIP_DROPPED, METRICS_DROP_STALE_TRANSACTION);
        return;
    }
    if (msg->status < 200) {
        if (msg->status == 100) /* hop by hop (RFC 3261 16.7 step 5) */
            return;
        p->env.client_send(p->env.ctx, t->client_id, iov, (size_t)n);
        return;
    }
    if (msg->status == 403 && now_ms - p->last_mismatch_log >= 10000) {
        const struct sip_header *warn = sip_first(msg, SIP_HDR_WARNING);
        /* UCM writes "SIP OAuth Registration port Mismatch": match the words, not the case. */
        if (warn != NULL && contains_ci(warn->value, "port mismatch")) {
            p->last_mismatch_log = now_ms;
            log_event(LOG_WARN, "upstream_port_mismatch", LOG_SL("warning", warn->value),
                      LOG_S("fix",
                            "UCM: enable SIP OAuth (utils sipOAuth-mode enable), check the SIP "
                            "MRA OAuth port (5091) and the phone security profile"));
        }
    }
    int r = p->env.client_send(p->env.ctx, t->client_id, iov, (size_t)n);
    if (r == -ENOTCONN) {
        p->stats.drop_client_gone++;
        metrics_inc(p->shard, METRIC_SIP_DROPPED, METRICS_DROP_CLIENT_GONE);
    } else {
        proxy_count_response(p, SIP_METHOD_REGISTER, msg->status, true);
        if (msg->status < 300)
            bind_client(p, t);
        int64_t us = (now_ms - t->forwarded) * 1000;
        metrics_observe_us(p->shard, us > 0 ? (uint64_t)us : 0, METRIC_UPSTREAM_DURATION);
        observe_register(p, t, now_ms);
    }
    reg_free(p, t);
}

void proxy_on_client_response(struct proxy *p, uint32_t client_id, const struct sip_msg *msg,
                              int64_t now_ms)
{
    if (!calls_response(p, true, p->cfg.worker, client_id, msg, now_ms)) {
        p->stats.drop_via_not_ours++;
        metrics_inc(p->shard, METRIC_SIP_DROPPED, METRICS_DROP_VIA_NOT_OURS);
    }
}

void proxy_on_posted_response(struct proxy *p, unsigned from_worker, uint32_t client_id,
                              const struct sip_msg *msg, int64_t now_ms)
{
    if (!calls_response(p, true, from_worker, client_id, msg, now_ms)) {
        p->stats.drop_via_not_ours++;
        metrics_inc(p->shard, METRIC_SIP_DROPPED, METRICS_DROP_VIA_NOT_OURS);
    }
}

void proxy_on_flow_failed(struct proxy *p, uint64_t txn_id, int64_t now_ms)
{
    if (p->tb != NULL)
        calls_flow_failed(p, txn_id, now_ms);
}

void proxy_on_client_gone(struct proxy *p, uint32_t client_id)
{
    /* Nothing to walk: a parked check or a forwarded request finds the client gone when it
     * answers (conn ids carry a generation), and that drop is counted there. */
    (void)p;
    (void)client_id;
}

void proxy_on_upstream_gone(struct proxy *p, uint32_t conn_id, int64_t now_ms)
{
    calls_upstream_gone(p, conn_id, now_ms);
    /* Resent ones keep their place: forward() would restart Timer F, the FIFO must stay in
     * deadline order, and the client's own timer runs from its first send anyway. A resend
     * that finds no node answers 503 and frees the slot, so walk with the next one in hand. */
    uint32_t end = p->fifo_tail;
    for (uint32_t i = p->fifo_head, next; i != PROXY_NIL; i = next) {
        struct reg_txn *t = &p->txns[i];
        next = i == end ? PROXY_NIL : t->next;
        if (t->state != REG_FORWARDED || t->up_conn != conn_id)
            continue;
        struct sip_msg msg;
        if (!reg_rescan(p, t, &msg)) { /* cannot happen: it was forwarded from this copy */
            reg_free(p, t);
            continue;
        }
        int64_t deadline = t->deadline;
        uint64_t before = p->stats.forwarded;
        p->resending = true;
        forward(p, t, &msg, now_ms);
        p->resending = false;
        if (p->stats.forwarded == before)
            continue; /* answered (503) and freed */
        t->deadline = deadline;
        p->stats.resent++;
        metrics_inc(p->shard, METRIC_UPSTREAM_FAILOVERS);
    }
}

int64_t proxy_tick(struct proxy *p, int64_t now_ms)
{
    int64_t calls_next = calls_tick(p, now_ms);
    while (p->fifo_head != PROXY_NIL) {
        struct reg_txn *t = &p->txns[p->fifo_head];
        if (t->deadline > now_ms)
            return t->deadline < calls_next ? t->deadline : calls_next;
        if (t->state == REG_AUTH_WAIT && p->aw != NULL)
            auth_cancel(p->aw, t);
        struct sip_msg msg;
        if (t->req != NULL && reg_rescan(p, t, &msg)) {
            p->stats.timer_f++;
            proxy_respond(p, t->client_id, &msg, 408, "Request Timeout", NULL, 0);
            observe_register(p, t, now_ms);
        }
        reg_free(p, t);
    }
    return calls_next;
}

/* The edge's two addresses (client side: via_host:via_port; UCM side: ucm_host:ucm_port), the
 * Via prefixes towards each, the flow keys, and what "ours" means for routing. */
static int proxy_init_addrs(struct proxy *p)
{
    const struct proxy_cfg *cfg = &p->cfg;
    const char *host = p->via_host;
    if (host == NULL)
        return -ENOMEM;
    p->ucm_host = strdup(cfg->ucm_host ? cfg->ucm_host : host);
    if (p->ucm_host == NULL || strlen(host) >= CFG_VIA_HOST_MAX ||
        strlen(p->ucm_host) >= CFG_VIA_HOST_MAX)
        return -EINVAL;
    uint16_t uport = cfg->ucm_port ? cfg->ucm_port : cfg->via_port;
    char port[8] = "", uport_s[8] = "";
    if (cfg->via_port)
        snprintf(port, sizeof(port), ":%u", (unsigned)cfg->via_port);
    if (uport)
        snprintf(uport_s, sizeof(uport_s), ":%u", (unsigned)uport);
    /* The REGISTER's Via names the address UCM reaches the edge by, as its Path does. */
    p->via_len = (size_t)snprintf(p->via, sizeof(p->via),
                                  "SIP/2.0/TLS %s%s;branch=" PROXY_BRANCH_PREFIX "%s", p->ucm_host,
                                  uport_s, p->nonce);
    p->via_cli_len =
        (size_t)snprintf(p->via_cli, sizeof(p->via_cli), "SIP/2.0/TLS %s%s;branch=", host, port);
    p->via_ucm_len = (size_t)snprintf(p->via_ucm, sizeof(p->via_ucm),
                                      "SIP/2.0/TLS %s%s;alias;branch=", p->ucm_host, uport_s);
    p->addrs[0] = (struct route_addr){slice_make(host, strlen(host)), cfg->via_port};
    p->addrs[1] = (struct route_addr){slice_make(p->ucm_host, strlen(p->ucm_host)), uport};
    if (cfg->flow_keys != NULL) {
        p->keys = cfg->flow_keys;
    } else {
        if (flow_keys_init(&p->own_keys) < 0)
            return -EIO;
        p->keys = &p->own_keys;
    }
    p->self = (struct route_self){p->addrs, 2, p->keys};
    return 0;
}

const struct proxy_stats *proxy_stats(const struct proxy *p)
{
    return &p->stats;
}

struct proxy *proxy_new(const struct proxy_cfg *cfg, const struct proxy_env *env,
                        struct auth_worker *aw, struct metrics_shard *metrics)
{
    uint32_t cap = 1;
    while (cap < cfg->max_transactions && cap < (1u << 22))
        cap <<= 1;
    struct proxy *p = calloc(1, sizeof(*p) + (size_t)cap * sizeof(struct reg_txn));
    if (p == NULL)
        return NULL;
    p->cfg = *cfg;
    p->env = *env;
    p->aw = aw;
    p->shard = metrics;
    if (p->shard == NULL) {
        p->own_shard = aligned_alloc(64, sizeof(struct metrics_shard));
        if (p->own_shard == NULL) {
            free(p);
            return NULL;
        }
        memset(p->own_shard, 0, sizeof(*p->own_shard));
        p->shard = p->own_shard;
    }
    p->cap = cap;
    p->mask = cap - 1;
    p->realm = strdup(cfg->realm ? cfg->realm : "ccmsipline");
    p->server = strdup(cfg->server ? cfg->server : "sipedge");
    p->via_host = strdup(cfg->via_host ? cfg->via_host : "localhost");
    p->scope = dup_or_null(cfg->challenge_scope);
    p->authz = dup_or_null(cfg->challenge_authz_server);
    if (p->cfg.timer_f_ms == 0)
        p->cfg.timer_f_ms = 32000;
    if (p->cfg.retry_after_s == 0)
        p->cfg.retry_after_s = 30;
    unsigned char rnd[4];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        proxy_free(p);
        return NULL;
    }
    snprintf(p->nonce, sizeof(p->nonce), "%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
    if (proxy_init_addrs(p) < 0) {
        proxy_free(p);
        return NULL;
    }
    p->fifo_head = p->fifo_tail = PROXY_NIL;
    p->last_mismatch_log = INT64_MIN / 2; /* the first one is logged, however early */
    p->last_503_log = INT64_MIN / 2;
    /* Slots are taken in order and touched only then (no resident table at start); freed ones go
     * on a LIFO list, so the hot ones get reused. */
    p->free_head = PROXY_NIL;
    p->fresh = 0;
    if (p->realm == NULL || p->server == NULL || p->via_host == NULL || calls_init(p) < 0) {
        proxy_free(p);
        return NULL;
    }
    return p;
}

void proxy_free(struct proxy *p)
{
    if (p == NULL)
        return;
    while (p->fifo_head != PROXY_NIL) {
        struct reg_txn *t = &p->txns[p->fifo_head];
        if (t->state == REG_AUTH_WAIT && p->aw != NULL)
            auth_cancel(p->aw, t);
        struct sip_msg msg;
        if (t->req != NULL && reg_rescan(p, t, &msg))
            proxy_respond_503(p, t->client_id, &msg);
        reg_free(p, t);
    }
    calls_free(p);
    free(p->ucm_host);
    free(p->realm);
    free(p->server);
    free(p->via_host);
    free(p->scope);
    free(p->authz);
    free(p->own_shard);
    free(p);
}
