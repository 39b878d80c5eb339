// SPDX-License-Identifier: MIT
// The upstream zone of one worker: per node a pool of mTLS connections (loop_connect + a client
// tls_conn), node state with one callback per change, backoff with jitter, keep-alive deadlines.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "net/loop_priv.h" /* the output watermarks: upstream is part of net/ */
#include "net/upstream.h"

/** A connection that was up at least this long reconnects at once when it closes. */
#define UPSTREAM_STABLE_MS 2000
/** TLS 1.3: how long to wait for the server's verdict on our certificate, at least. */
#define UPSTREAM_CONFIRM_MIN_MS 100
/** Plaintext read per tls_conn_read() call. */
#define UPSTREAM_READ_CHUNK 16384

enum slot_state {
    SLOT_IDLE = 0,   /* no connection; the timer (backoff) or nothing */
    SLOT_CONNECTING, /* TCP connect in flight */
    SLOT_HANDSHAKE,  /* TLS handshake */
    SLOT_CONFIRM,    /* TLS 1.3 full handshake done: waiting for the server to accept our cert */
    SLOT_UP,         /* established, usable */
    /* SLOT_STATE_COUNT */ SLOT_STATE_COUNT
};

/* What the last failed attempt of a node was. */
enum node_fail {
    NODE_FAIL_NONE = 0, /* none since the last success (or ever) */
    NODE_FAIL_TCP,      /* connect refused / timed out / reset */
    NODE_FAIL_TLS,      /* handshake failed; the diag says why */
    /* NODE_FAIL_COUNT */ NODE_FAIL_COUNT
};

struct up_node;

struct up_slot {
    struct up_node *node;
    struct conn *conn; /* NULL when IDLE */
    uint32_t conn_id;
    struct tls_conn *tls;
    uint8_t st;         /* enum slot_state */
    bool confirm_ready; /* CONFIRM: the handshake finished in an earlier on_data */
    bool timed_out;     /* the attempt deadline closed it */
    bool dead;          /* the keep-alive deadline closed it */
    bool draining;      /* failed: our alert is being flushed, then it closes */
    bool unconfirmed;   /* UP on the server's silence only: a TLS alert now is a failed attempt */
    unsigned fails;     /* consecutive failed attempts of this slot: backoff exponent */
    uint64_t attempt_ms, hs_start_ms, up_ms, alive_ms;
    /* filled by on_close, consumed by the deferred close handling */
    bool closed_was_up;
    bool closed_tls_failed; /* closed_diag holds the record layer's failure */
    uint32_t closed_id;
    uint64_t closed_uptime_ms;
    struct tls_diag closed_diag;
    struct loop_timer timer; /* backoff retry, attempt deadline, confirm, deferred close */
    struct loop_timer ping;  /* keep-alive */
};

struct up_node {
    struct upstream *u;
    unsigned idx;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct tls_peer peer;
    enum upstream_state reported;
    enum tls_cause reported_cause;
    enum node_fail last_fail;
    uint64_t failures;
    struct tls_diag last_diag;
    int last_errno;
    struct up_slot slots[UPSTREAM_MAX_POOL];
};

struct upstream {
    struct loop *loop;
    struct upstream_ops ops;
    void *ctx;
    struct tls_ctx *tls;
    unsigned n_nodes, pool;
    bool round_robin;
    unsigned rr_next;
    uint32_t connect_timeout_ms, backoff_min_ms, backoff_max_ms;
    uint32_t keepalive_ms, ping_timeout_ms;
    uint64_t rng;
    struct up_node *nodes;
};

static void slot_connect(struct up_slot *s);
static void node_update(struct up_node *n);

/* ---- small helpers ---- */

static uint64_t rng_next(struct upstream *u)
{
    /* xorshift64*: jitter only, not security */
    u->rng ^= u->rng >> 12;
    u->rng ^= u->rng << 25;
    u->rng ^= u->rng >> 27;
    return u->rng * 0x2545f4914f6cdd1dull;
}

static uint64_t now_ms(const struct upstream *u)
{
    return loop_now_ms(u->loop);
}

static struct up_slot *slot_of_timer(struct loop_timer *t)
{
    return (struct up_slot *)((char *)t - offsetof(struct up_slot, timer));
}

static struct up_slot *slot_of_ping(struct loop_timer *t)
{
    return (struct up_slot *)((char *)t - offsetof(struct up_slot, ping));
}

/** Backoff before retry number `fails` (0-based): min << fails, capped, then ±20% jitter. */
static uint64_t backoff_ms(struct upstream *u, unsigned fails)
{
    uint64_t d = u->backoff_min_ms ? u->backoff_min_ms : 1;
    for (unsigned i = 0; i < fails && d < u->backoff_max_ms; i++)
        d *= 2;
    if (d > u->backoff_max_ms)
        d = u->backoff_max_ms;
    uint64_t pct = 80 + rng_next(u) % 41; /* 80..120 */
    return d * pct / 100;
}

const char *upstream_state_name(enum upstream_state st)
{
    static const char *const names[UPSTREAM_STATE_COUNT] = {"down", "connecting", "up", "failed"};
    return (unsigned)st < UPSTREAM_STATE_COUNT ? names[st] : "?";
}

/* ---- node state ---- */

static enum upstream_state node_state(const struct up_node *n)
{
    unsigned up = 0, pending = 0;
    for (unsigned i = 0; i < n->u->pool; i++) {
        if (n->slots[i].st == SLOT_UP)
            up++;
        else if (n->slots[i].st != SLOT_IDLE)
            pending++;
    }
    if (up)
        return UPSTREAM_UP;
    /* a failure sticks until a success: retries do not flap the state (one log line) */
    if (n->last_fail == NODE_FAIL_TLS)
        return UPSTREAM_FAILED;
    if (n->last_fail == NODE_FAIL_TCP)
        return UPSTREAM_DOWN;
    return pending ? UPSTREAM_CONNECTING : UPSTREAM_DOWN;
}

/* Calls on_node_state when the state changed (or, while FAILED, when the cause changed). */
static void node_update(struct up_node *n)
{
    enum upstream_state st = node_state(n);
    enum tls_cause cause = st == UPSTREAM_FAILED ? n->last_diag.cause : TLS_CAUSE_NONE;
    if (st == n->reported && cause == n->reported_cause)
        return;
    n->reported = st;
    n->reported_cause = cause;
    struct upstream *u = n->u;
    if (u->ops.on_node_state)
        u->ops.on_node_state(u->ctx, n->idx, st, st == UPSTREAM_FAILED ? &n->last_diag : NULL);
}

/* ---- TLS glue ---- */

/* Pushes the pending ciphertext into the conn. Returns 0, or -errno when the conn is gone or
 * closing (on_close may have run: the slot's tls is then freed). */
static int slot_flush(struct up_slot *s)
{
    if (!s->tls || !s->conn)
        return -ENOTCONN;
    struct slice out = tls_conn_out(s->tls);
    if (!out.len)
        return 0;
    struct iovec iov = {(void *)out.base, out.len};
    struct conn *c = s->conn;
    ssize_t r = conn_send(c, &iov, 1);
    if (r == -ENOBUFS)
        return -ENOBUFS; /* over the hard cap: net closed it, on_close ran */
    if (r < 0) {
        conn_close(c, CONN_CLOSE_ERROR);
        return (int)r;
    }
    tls_conn_out_consume(s->tls, out.len);
    return 0;
}

/* True while `s` still holds the connection `id` (a callback may have closed it). */
static bool slot_holds(const struct up_slot *s, uint32_t id)
{
    return s->conn && s->conn_id == id;
}

static void ping_due(struct loop *loop, struct loop_timer *t);
static void attempt_deadline(struct loop *loop, struct loop_timer *t);

/* A TLS failure: flush what TLS has to say (our alert), then close; unusable from now on. */
static void slot_fail(struct up_slot *s)
{
    struct upstream *u = s->node->u;
    s->draining = true;
    if (s->st != SLOT_UP)
        loop_timer_arm(u->loop, &s->timer, s->attempt_ms + u->connect_timeout_ms, attempt_deadline);
    conn_drain(s->conn);
}

static void slot_up(struct up_slot *s)
{
    struct up_node *n = s->node;
    struct upstream *u = n->u;
    s->st = SLOT_UP;
    s->unconfirmed = false;
    conn_set_open(s->conn);
    loop_timer_cancel(u->loop, &s->timer);
    s->up_ms = s->alive_ms = now_ms(u);
    n->failures = 0;
    n->last_fail = NODE_FAIL_NONE;
    if (u->keepalive_ms && u->ops.on_ping_due)
        loop_timer_arm(u->loop, &s->ping, s->up_ms + u->keepalive_ms, ping_due);
    node_update(n);
}

static void confirm_done(struct loop *loop, struct loop_timer *t)
{
    (void)loop;
    struct up_slot *s = slot_of_timer(t);
    if (s->st == SLOT_CONFIRM && !s->draining) {
        slot_up(s); /* the server said nothing against our certificate in time */
        s->unconfirmed = true;
    }
}

static void attempt_deadline(struct loop *loop, struct loop_timer *t)
{
    (void)loop;
    struct up_slot *s = slot_of_timer(t);
    if (!s->conn)
        return;
    s->timed_out = true;
    if (s->tls)
        tls_conn_abort(s->tls, TLS_CAUSE_TIMEOUT);
    conn_close(s->conn, CONN_CLOSE_LOCAL);
}

/* The handshake finished: TLS 1.2 and resumed sessions are up; a full TLS 1.3 handshake waits
 * for what the server does after our Finished (tickets: accepted; alert: our cert rejected). */
static void handshake_done(struct up_slot *s)
{
    struct upstream *u = s->node->u;
    if (tls_conn_resumed(s->tls) || strcmp(tls_conn_version(s->tls), "TLSv1.3") != 0) {
        slot_up(s);
        return;
    }
    s->st = SLOT_CONFIRM;
    s->confirm_ready = false;
    uint64_t now = now_ms(u);
    uint64_t wait = 2 * (now - s->hs_start_ms);
    if (wait < UPSTREAM_CONFIRM_MIN_MS)
        wait = UPSTREAM_CONFIRM_MIN_MS;
    uint64_t deadline = s->attempt_ms + u->connect_timeout_ms;
    /* A node whose last attempt failed on TLS must say yes (tickets, data) or stay quiet for the
     * whole connect timeout: a late alert would otherwise flap it up and failed on every retry. */
    if (now + wait < deadline && s->node->last_fail != NODE_FAIL_TLS)
        deadline = now + wait;
    loop_timer_arm(u->loop, &s->timer, deadline, confirm_done);
}

static void up_on_open(struct conn *c)
{
    struct up_slot *s = conn_user(c);
    struct upstream *u = s->node->u;
    s->st = SLOT_HANDSHAKE;
    s->hs_start_ms = now_ms(u);
    s->tls = tls_conn_new_client(u->tls, &s->node->peer);
    if (!s->tls) {
        conn_close(c, CONN_CLOSE_ERROR);
        return;
    }
    int r = tls_conn_handshake(s->tls);
    if (r != TLS_WANT_INPUT && r != 0) {
        conn_close(c, CONN_CLOSE_ERROR);
        return;
    }
    slot_flush(s);
}

static void up_on_data(struct conn *c, const char *p, size_t len)
{
    struct up_slot *s = conn_user(c);
    struct up_node *n = s->node;
    struct upstream *u = n->u;
    uint32_t id = s->conn_id;
    if (tls_conn_feed(s->tls, p, len) < 0) {
        conn_close(c, CONN_CLOSE_ERROR);
        return;
    }
    if (s->st == SLOT_HANDSHAKE) {
        int r = tls_conn_handshake(s->tls);
        if (slot_flush(s) < 0)
            return;
        if (r == TLS_WANT_INPUT)
            return;
        if (r < 0) {
            slot_fail(s); /* our alert goes out, then on_close records the diag */
            return;
        }
        handshake_done(s);
        if (!slot_holds(s, id))
            return;
    } else if (s->st == SLOT_CONFIRM) {
        s->confirm_ready = true; /* bytes after our Finished: the server's verdict */
    }
    char buf[UPSTREAM_READ_CHUNK];
    ssize_t r;
    /* Until the layer wants input: each read consumes buffered bytes (at most TLS_IN_MAX). */
    for (;;) {
        r = tls_conn_read(s->tls, buf, sizeof(buf));
        if (r <= 0)
            break;
        if (s->st == SLOT_CONFIRM)
            slot_up(s); /* plaintext from the server: it accepted us */
        s->unconfirmed = false;
        if (slot_holds(s, id) && s->st == SLOT_UP)
            u->ops.on_data(u->ctx, n->idx, id, buf, (size_t)r);
        if (!slot_holds(s, id))
            return;
    }
    if (slot_flush(s) < 0)
        return;
    if (r == 0) {
        conn_close(c, CONN_CLOSE_PEER); /* close_notify */
    } else if (r == TLS_WANT_INPUT) {
        if (s->st == SLOT_CONFIRM && s->confirm_ready)
            slot_up(s);
    } else if (r < 0) {
        slot_fail(s);
    }
}

static void slot_retry_cb(struct loop *loop, struct loop_timer *t);

/* Runs on the next timer pass after a close: the owner's callbacks and the reconnect happen
 * outside of whatever call made net close the conn (upstream_send, a callback...). */
static void after_close(struct loop *loop, struct loop_timer *t)
{
    (void)loop;
    struct up_slot *s = slot_of_timer(t);
    struct up_node *n = s->node;
    struct upstream *u = n->u;
    bool was_up = s->closed_was_up;
    s->closed_was_up = false;
    if (was_up && u->ops.on_conn_closed)
        u->ops.on_conn_closed(u->ctx, n->idx, s->closed_id,
                              s->closed_tls_failed ? &s->closed_diag : NULL);
    if (s->conn || loop_timer_armed(&s->timer))
        return; /* defensive: something already restarted this slot */
    if (was_up && s->closed_uptime_ms >= UPSTREAM_STABLE_MS) {
        s->fails = 0;
        slot_connect(s); /* it had been up a while: straight back */
    } else {
        loop_timer_arm(u->loop, &s->timer, now_ms(u) + backoff_ms(u, s->fails), slot_retry_cb);
        if (s->fails < 64)
            s->fails++;
    }
    node_update(n);
}

/* Records why an attempt failed into the node. */
static void record_failure(struct up_slot *s, struct conn *c, enum conn_close_reason reason)
{
    struct up_node *n = s->node;
    int err = -conn_last_error(c);
    n->failures++;
    if (s->st == SLOT_CONNECTING) {
        n->last_fail = NODE_FAIL_TCP;
        n->last_errno = s->timed_out || reason == CONN_CLOSE_CONNECT_TIMEOUT ? ETIMEDOUT
                        : err                                                ? err
                                                                             : ECONNABORTED;
        memset(&n->last_diag, 0, sizeof(n->last_diag));
        n->last_diag.cause = TLS_CAUSE_NONE;
        n->last_diag.alert = -1;
        return;
    }
    /* handshake or confirm: a TLS failure; a bare close or reset reads as peer_closed */
    if (s->tls) {
        struct tls_diag d;
        if (tls_conn_diag(s->tls, &d) == TLS_CAUSE_NONE) {
            tls_conn_abort(s->tls, reason == CONN_CLOSE_PEER || reason == CONN_CLOSE_ERROR
                                       ? TLS_CAUSE_PEER_CLOSED
                                       : TLS_CAUSE_INTERNAL);
        }
        tls_conn_diag(s->tls, &n->last_diag);
    } else {
        memset(&n->last_diag, 0, sizeof(n->last_diag));
        n->last_diag.side = TLS_SIDE_CLIENT;
        n->last_diag.cause = TLS_CAUSE_INTERNAL;
        n->last_diag.alert = -1;
    }
    n->last_fail = NODE_FAIL_TLS;
    if (err)
        n->last_errno = err;
}

static void up_on_close(struct conn *c, enum conn_close_reason reason)
{
    struct up_slot *s = conn_user(c);
    if (!s || s->conn != c)
        return;
    struct up_node *n = s->node;
    struct upstream *u = n->u;
    struct tls_diag d;
    if (s->st == SLOT_UP && s->unconfirmed && s->tls &&
        tls_conn_diag(s->tls, &d) != TLS_CAUSE_NONE) {
        record_failure(s, c, reason); /* a late rejection of our certificate (TLS 1.3) */
    } else if (s->st == SLOT_UP) {
        s->closed_was_up = true;
        s->closed_id = s->conn_id;
        s->closed_uptime_ms = now_ms(u) - s->up_ms;
        s->closed_tls_failed =
            s->tls != NULL && tls_conn_diag(s->tls, &s->closed_diag) != TLS_CAUSE_NONE;
        if (s->dead || conn_last_error(c))
            n->last_errno = s->dead ? ETIMEDOUT : -conn_last_error(c);
    } else {
        record_failure(s, c, reason);
    }
    tls_conn_free(s->tls);
    s->tls = NULL;
    s->conn = NULL;
    s->conn_id = 0;
    s->st = SLOT_IDLE;
    s->timed_out = s->dead = s->draining = false;
    loop_timer_cancel(u->loop, &s->ping);
    if (reason == CONN_CLOSE_SHUTDOWN) {
        loop_timer_cancel(u->loop, &s->timer); /* the loop is going away: no reconnect */
        return;
    }
    loop_timer_arm(u->loop, &s->timer, now_ms(u), after_close);
}

static void detached_on_data(struct conn *c, const char *p, size_t n)
{
    (void)c;
    (void)p;
    (void)n;
}

static const struct conn_ops up_conn_ops = {
    .on_open = up_on_open,
    .on_data = up_on_data,
    .on_close = up_on_close,
};

/* What a conn runs once upstream_free() let go of it. */
static const struct conn_ops detached_ops = {.on_data = detached_on_data};

static void slot_retry_cb(struct loop *loop, struct loop_timer *t)
{
    (void)loop;
    slot_connect(slot_of_timer(t));
}

static void slot_connect(struct up_slot *s)
{
    struct up_node *n = s->node;
    struct upstream *u = n->u;
    struct conn *c = NULL;
    s->attempt_ms = now_ms(u);
    s->timed_out = s->dead = false;
    int r = loop_connect(u->loop, (struct sockaddr *)&n->addr, n->addrlen, u->connect_timeout_ms,
                         &up_conn_ops, s, &c);
    if (r < 0) {
        n->failures++;
        n->last_fail = NODE_FAIL_TCP;
        n->last_errno = -r;
        loop_timer_arm(u->loop, &s->timer, s->attempt_ms + backoff_ms(u, s->fails), slot_retry_cb);
        if (s->fails < 64)
            s->fails++;
        node_update(n);
        return;
    }
    s->conn = c;
    s->conn_id = conn_id(c);
    s->st = SLOT_CONNECTING;
    loop_timer_arm(u->loop, &s->timer, s->attempt_ms + u->connect_timeout_ms, attempt_deadline);
}

/* ---- keep-alive ---- */

static void ping_due(struct loop *loop, struct loop_timer *t)
{
    (void)loop;
    struct up_slot *s = slot_of_ping(t);
    struct up_node *n = s->node;
    struct upstream *u = n->u;
    if (s->st != SLOT_UP)
        return;
    uint64_t now = now_ms(u);
    if (now - s->alive_ms >= u->ping_timeout_ms) {
        s->dead = true;
        conn_close(s->conn, CONN_CLOSE_LOCAL);
        return;
    }
    loop_timer_arm(u->loop, &s->ping, now + u->keepalive_ms, ping_due);
    u->ops.on_ping_due(u->ctx, n->idx, s->conn_id);
}

/* ---- public API ---- */

static int parse_addr(const struct upstream_node_cfg *nc, struct sockaddr_storage *ss,
                      socklen_t *len, char *host, size_t hostcap)
{
    if (!nc->host || !nc->host[0])
        return -EINVAL;
    size_t hl = strlen(nc->host);
    const char *h = nc->host;
    if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= hostcap)
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(nc->port ? nc->port : 5091);
        *len = sizeof(*a4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(nc->port ? nc->port : 5091);
        *len = sizeof(*a6);
        return 0;
    }
    return -EINVAL;
}

struct upstream *upstream_new(struct loop *loop, const struct upstream_cfg *cfg,
                              const struct upstream_ops *ops, void *ctx)
{
    if (!loop || !cfg || !ops || !ops->on_data || !cfg->tls || cfg->n_nodes == 0 ||
        cfg->n_nodes > UPSTREAM_MAX_NODES || tls_ctx_side(cfg->tls) != TLS_SIDE_CLIENT) {
        errno = EINVAL;
        return NULL;
    }
    struct upstream *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->loop = loop;
    u->ops = *ops;
    u->ctx = ctx;
    u->n_nodes = cfg->n_nodes;
    u->pool = cfg->pool_size == 0                  ? 1
              : cfg->pool_size > UPSTREAM_MAX_POOL ? UPSTREAM_MAX_POOL
                                                   : cfg->pool_size;
    u->round_robin = cfg->round_robin;
    u->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 3000;
    u->backoff_min_ms = cfg->backoff_min_ms ? cfg->backoff_min_ms : 250;
    u->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : 30000;
    if (u->backoff_max_ms < u->backoff_min_ms)
        u->backoff_max_ms = u->backoff_min_ms;
    u->keepalive_ms = cfg->keepalive_interval_ms;
    u->ping_timeout_ms = cfg->ping_timeout_ms ? cfg->ping_timeout_ms : 2 * u->keepalive_ms;
    if (getrandom(&u->rng, sizeof(u->rng), GRND_NONBLOCK) != sizeof(u->rng))
        u->rng = loop_clock_ms() ^ (uintptr_t)u;
    u->rng |= 1;
    u->nodes = calloc(cfg->n_nodes, sizeof(*u->nodes));
    if (!u->nodes) {
        free(u);
        errno = ENOMEM;
        return NULL;
    }
    for (unsigned i = 0; i < cfg->n_nodes; i++) {
        struct up_node *n = &u->nodes[i];
        const struct upstream_node_cfg *nc = &cfg->nodes[i];
        char host[64];
        n->u = u;
        n->idx = i;
        n->reported = UPSTREAM_CONNECTING;
        n->last_diag.alert = -1;
        const char *name = nc->name && nc->name[0] ? nc->name : host;
        if (parse_addr(nc, &n->addr, &n->addrlen, host, sizeof(host)) < 0 ||
            tls_peer_init(&n->peer, name) < 0) {
            for (unsigned j = 0; j < i; j++)
                tls_peer_deinit(&u->nodes[j].peer);
            free(u->nodes);
            free(u);
            errno = EINVAL;
            return NULL;
        }
        for (unsigned k = 0; k < u->pool; k++)
            n->slots[k].node = n;
    }
    u->tls = tls_ctx_ref(cfg->tls);
    /* connects start from the timer pass, so no callback runs before the caller has `u` */
    uint64_t now = loop_now_ms(loop);
    for (unsigned i = 0; i < u->n_nodes; i++)
        for (unsigned k = 0; k < u->pool; k++)
            loop_timer_arm(loop, &u->nodes[i].slots[k].timer, now, slot_retry_cb);
    return u;
}

void upstream_free(struct upstream *u)
{
    if (!u)
        return;
    for (unsigned i = 0; i < u->n_nodes; i++) {
        struct up_node *n = &u->nodes[i];
        for (unsigned k = 0; k < u->pool; k++) {
            struct up_slot *s = &n->slots[k];
            loop_timer_cancel(u->loop, &s->timer);
            loop_timer_cancel(u->loop, &s->ping);
            if (s->conn) {
                struct conn *c = s->conn;
                s->conn = NULL;
                conn_set_ops(c, &detached_ops);
                conn_set_user(c, NULL);
                conn_close(c, CONN_CLOSE_LOCAL);
            }
            tls_conn_free(s->tls);
            s->tls = NULL;
        }
        tls_peer_deinit(&n->peer);
    }
    tls_ctx_unref(u->tls);
    free(u->nodes);
    free(u);
}

void upstream_shutdown(struct upstream *u)
{
    if (!u)
        return;
    for (unsigned i = 0; i < u->n_nodes; i++) {
        struct up_node *n = &u->nodes[i];
        for (unsigned k = 0; k < u->pool; k++) {
            struct up_slot *s = &n->slots[k];
            loop_timer_cancel(u->loop, &s->timer);
            loop_timer_cancel(u->loop, &s->ping);
            if (!s->conn)
                continue;
            struct conn *c = s->conn;
            bool up = s->st == SLOT_UP && !s->draining;
            if (up && tls_conn_shutdown(s->tls) == 0 && slot_flush(s) < 0) {
                loop_timer_cancel(u->loop, &s->timer); /* net closed it: no after_close */
                continue;
            }
            s->conn = NULL;
            s->conn_id = 0;
            s->st = SLOT_IDLE;
            conn_set_ops(c, &detached_ops);
            conn_set_user(c, NULL);
            if (up)
                conn_drain(c); /* our close_notify goes out, then the socket closes */
            else
                conn_close(c, CONN_CLOSE_LOCAL);
            tls_conn_free(s->tls);
            s->tls = NULL;
        }
    }
}

/* The usable UP connection of `n` with the least queued bytes (in `*queued`), or NULL. */
static struct up_slot *node_best(struct up_node *n, size_t *queued)
{
    struct up_slot *best = NULL;
    size_t best_q = 0;
    for (unsigned k = 0; k < n->u->pool; k++) {
        struct up_slot *s = &n->slots[k];
        if (s->st != SLOT_UP || s->draining)
            continue;
        size_t q = conn_out_bytes(s->conn) + tls_conn_out_len(s->tls);
        if (!best || q < best_q) {
            best = s;
            best_q = q;
        }
    }
    *queued = best_q;
    return best;
}

/* Ciphertext bytes for `total` plaintext bytes, generously (record headers and tags). */
static size_t sealed_size(const struct iovec *iov, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    return total + total / 64 + 64;
}

/* Encrypts and queues on `s`. Refuses (-ENOBUFS) rather than pushing the conn over its hard
 * output cap, where net would close it and lose its other transactions. */
static int slot_send(struct up_slot *s, const struct iovec *iov, int n, size_t need)
{
    if (conn_out_bytes(s->conn) + tls_conn_out_len(s->tls) + need > conn_out_cap(s->conn))
        return -ENOBUFS;
    ssize_t r = tls_conn_writev(s->tls, iov, n);
    if (r < 0)
        return (int)r;
    int f = slot_flush(s);
    return f < 0 ? f : (int)(r > INT32_MAX ? INT32_MAX : r);
}

int upstream_send(struct upstream *u, const struct iovec *iov, int n)
{
    return upstream_send_pick(u, iov, n, NULL);
}

int upstream_send_pick(struct upstream *u, const struct iovec *iov, int n,
                       struct upstream_pick *pick)
{
    if (n < 0 || (n > 0 && !iov))
        return -EINVAL;
    size_t need = sealed_size(iov, n);
    size_t high = u->loop->cfg.out_high_trunk; /* our conns are trunks (conn_set_trunk) */
    int err = -EHOSTUNREACH;
    unsigned start = u->round_robin ? u->rr_next % u->n_nodes : 0;
    /* pass 0: nodes whose best connection is below the high watermark (not congested);
     * pass 1: any node with an established connection that still has room */
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned j = 0; j < u->n_nodes; j++) {
            unsigned i = (start + j) % u->n_nodes;
            size_t q;
            struct up_slot *s = node_best(&u->nodes[i], &q);
            if (!s || (pass == 0 && q >= high))
                continue;
            uint32_t id = s->conn_id;
            int r = slot_send(s, iov, n, need);
            if (r >= 0) {
                if (u->round_robin)
                    u->rr_next = i + 1;
                if (pick) {
                    pick->conn_id = id;
                    pick->failover = i != start && node_state(&u->nodes[start]) != UPSTREAM_UP;
                }
                return (int)i;
            }
            if (err != -ENOBUFS)
                err = r == -ENOBUFS ? -ENOBUFS : -EHOSTUNREACH;
        }
    }
    return err;
}

int upstream_pick(struct upstream *u, int node, struct upstream_pick *pick)
{
    if (node >= (int)u->n_nodes)
        return -EINVAL;
    size_t high = u->loop->cfg.out_high_trunk; /* our conns are trunks (conn_set_trunk) */
    unsigned start = node >= 0 ? (unsigned)node : u->round_robin ? u->rr_next % u->n_nodes : 0;
    unsigned span = node >= 0 ? 1 : u->n_nodes;
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned j = 0; j < span; j++) {
            unsigned i = (start + j) % u->n_nodes;
            size_t q;
            struct up_slot *s = node_best(&u->nodes[i], &q);
            if (!s || (pass == 0 && q >= high))
                continue;
            if (u->round_robin && node < 0)
                u->rr_next = i + 1;
            pick->conn_id = s->conn_id;
            pick->failover = i != start && node_state(&u->nodes[start]) != UPSTREAM_UP;
            return (int)i;
        }
    }
    return -EHOSTUNREACH;
}

/* The slot owning the live conn `conn_id`, or NULL. */
static struct up_slot *slot_by_id(struct upstream *u, uint32_t conn_id)
{
    struct conn *c = conn_id ? conn_get(u->loop, conn_id) : NULL;
    if (!c)
        return NULL;
    struct up_slot *s = conn_user(c);
    if (!s || s->conn != c)
        return NULL;
    for (unsigned i = 0; i < u->n_nodes; i++)
        if (s->node == &u->nodes[i])
            return s;
    return NULL;
}

bool upstream_owns(const struct upstream *u, uint32_t conn_id, unsigned *node)
{
    struct up_slot *s = slot_by_id((struct upstream *)u, conn_id);
    if (s == NULL)
        return false;
    if (node != NULL)
        *node = (unsigned)(s->node - u->nodes);
    return true;
}

int upstream_send_on(struct upstream *u, uint32_t conn_id, const struct iovec *iov, int n)
{
    struct up_slot *s = slot_by_id(u, conn_id);
    if (!s || s->st != SLOT_UP || s->draining)
        return -ENOTCONN;
    if (n < 0 || (n > 0 && !iov))
        return -EINVAL;
    int r = slot_send(s, iov, n, sealed_size(iov, n));
    return r == -ENOBUFS ? r : r < 0 ? -ENOTCONN : r;
}

void upstream_alive(struct upstream *u, uint32_t conn_id)
{
    struct up_slot *s = slot_by_id(u, conn_id);
    if (s && s->st == SLOT_UP)
        s->alive_ms = now_ms(u);
}

void upstream_node_status(const struct upstream *u, unsigned i, struct upstream_node_status *out)
{
    memset(out, 0, sizeof(*out));
    if (i >= u->n_nodes)
        return;
    const struct up_node *n = &u->nodes[i];
    out->state = node_state(n);
    for (unsigned k = 0; k < u->pool; k++) {
        if (n->slots[k].st == SLOT_UP)
            out->conns_up++;
        else if (n->slots[k].st != SLOT_IDLE)
            out->conns_connecting++;
    }
    out->failures = n->failures;
    out->last_diag = n->last_diag;
    out->last_errno = n->last_errno;
}

unsigned upstream_node_count(const struct upstream *u)
{
    return u->n_nodes;
}

void upstream_set_tls(struct upstream *u, struct tls_ctx *ctx)
{
    if (!ctx || tls_ctx_side(ctx) != TLS_SIDE_CLIENT)
        return;
    tls_ctx_swap(&u->tls, tls_ctx_ref(ctx));
    for (unsigned i = 0; i < u->n_nodes; i++)
        tls_peer_forget_session(&u->nodes[i].peer);
}
