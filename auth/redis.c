// SPDX-License-Identifier: MIT
// Sans-IO Redis client: hiredis formats commands and parses replies; the owner moves the bytes.
// A FIFO of pending commands matches replies in order; deadlines orphan late commands in place.
#include "auth/redis.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* One command in flight. cb == NULL: orphaned (timed out); its reply is still due and dropped. */
struct pending {
    cache_redis_cb cb;
    void *arg;
    int64_t deadline;
};

/*
 * Invariants: the queue q[head .. head+count) holds commands in send order; orphans form a prefix
 * of length norphan (a timeout orphans the oldest live commands, replies pop from the head).
 * out[out_off .. out_len) is unsent. conn UP <=> the reader is in sync with the socket.
 */
struct cache_redis {
    struct cache_redis_config cfg;
    redisReader *reader;
    struct pending *q;
    uint32_t head, count, norphan;
    char *out;
    size_t out_off, out_len, out_cap;
    enum cache_redis_conn conn;
    enum cache_redis_breaker breaker;
    bool trial_inflight; /* HALF_OPEN: the one trial command is out */
    uint32_t fails;      /* consecutive failures */
    uint32_t backoff_ms; /* next open period before jitter */
    int64_t open_until;
    uint64_t rng;
    cache_redis_push_cb push;
    void *push_arg;
    struct cache_redis_stats st;
    /* fd helpers */
    int fd;
    char host[64];
    uint16_t port;
    int64_t connect_deadline;
};

int64_t cache_redis_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t rnd(struct cache_redis *r)
{
    /* xorshift64*: jitter only, not security */
    r->rng ^= r->rng >> 12;
    r->rng ^= r->rng << 25;
    r->rng ^= r->rng >> 27;
    return r->rng * 0x2545f4914f6cdd1dull;
}

/* hiredis 0.14's reader allocates an array reply's element table as soon as it reads "*<n>", so a
 * broken or hostile server could make it calloc gigabytes ("*666666660", found by fuzz_redis_feed).
 * Our replies are small (MGET of two keys, pub/sub triples): arrays above this are refused before
 * anything is allocated, which makes the reader fail and the connection drop (auth then verifies
 * locally). 0.14 has no element limit of its own, so its default functions are wrapped. */
#define REDIS_MAX_ARRAY 64

static redisReplyObjectFunctions bounded_fns;
static void *(*default_create_array)(const redisReadTask *, int);
static pthread_once_t bounded_once = PTHREAD_ONCE_INIT;
static bool bounded_ok;

static void *bounded_create_array(const redisReadTask *task, int elements)
{
    if (elements < 0 || elements > REDIS_MAX_ARRAY)
        return NULL; /* the reader reports an error; nothing was allocated */
    return default_create_array(task, elements);
}

/* Copies hiredis' default reply functions (static in hiredis, reachable from a reader). */
static void bounded_init(void)
{
    redisReader *rd = redisReaderCreate();
    if (rd != NULL && rd->fn != NULL && rd->fn->createArray != NULL) {
        bounded_fns = *rd->fn;
        default_create_array = rd->fn->createArray;
        bounded_fns.createArray = bounded_create_array;
        bounded_ok = true;
    }
    if (rd != NULL)
        redisReaderFree(rd);
}

/* A reader whose array replies are bounded by REDIS_MAX_ARRAY. NULL on ENOMEM. */
static redisReader *reader_new(void)
{
    pthread_once(&bounded_once, bounded_init);
    if (!bounded_ok)
        return NULL;
    redisReader *rd = redisReaderCreate();
    if (rd != NULL)
        rd->fn = &bounded_fns;
    return rd;
}

struct cache_redis *cache_redis_new(const struct cache_redis_config *cfg, uint64_t seed)
{
    struct cache_redis *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    if (cfg)
        r->cfg = *cfg;
    if (!r->cfg.timeout_ms)
        r->cfg.timeout_ms = 5;
    if (!r->cfg.connect_timeout_ms)
        r->cfg.connect_timeout_ms = 100;
    if (!r->cfg.breaker_failures)
        r->cfg.breaker_failures = 3;
    if (!r->cfg.backoff_min_ms)
        r->cfg.backoff_min_ms = 50;
    if (!r->cfg.backoff_max_ms)
        r->cfg.backoff_max_ms = 5000;
    if (r->cfg.backoff_max_ms < r->cfg.backoff_min_ms)
        r->cfg.backoff_max_ms = r->cfg.backoff_min_ms;
    if (!r->cfg.max_pending)
        r->cfg.max_pending = 1024;
    if (!r->cfg.max_out)
        r->cfg.max_out = 1u << 20;
    r->backoff_ms = r->cfg.backoff_min_ms;
    r->rng = seed | 1;
    r->fd = -1;
    r->q = calloc(r->cfg.max_pending, sizeof(*r->q));
    r->reader = reader_new();
    if (!r->q || !r->reader) {
        free(r->q);
        if (r->reader)
            redisReaderFree(r->reader);
        free(r);
        return NULL;
    }
    return r;
}

static struct pending *q_at(struct cache_redis *r, uint32_t i)
{
    return &r->q[(r->head + i) % r->cfg.max_pending];
}

static struct pending q_pop(struct cache_redis *r)
{
    struct pending p = *q_at(r, 0);
    r->head = (r->head + 1) % r->cfg.max_pending;
    r->count--;
    if (r->norphan)
        r->norphan--;
    return p;
}

static void trip(struct cache_redis *r, int64_t now)
{
    uint32_t b = r->backoff_ms;
    /* Jitter: uniformly in [b/2, b], so pods that lost Redis together do not return together. */
    uint32_t period = b / 2 + (uint32_t)(rnd(r) % (b / 2 + 1));
    r->breaker = CACHE_REDIS_OPEN;
    r->open_until = now + period;
    r->trial_inflight = false;
    r->backoff_ms = b >= r->cfg.backoff_max_ms / 2 ? r->cfg.backoff_max_ms : b * 2;
    r->st.breaker_opens++;
}

static void failure(struct cache_redis *r, int64_t now)
{
    r->fails++;
    if (r->breaker == CACHE_REDIS_HALF_OPEN || r->fails >= r->cfg.breaker_failures) {
        if (r->breaker != CACHE_REDIS_OPEN)
            trip(r, now);
        /* A connection whose commands time out is stale or hung: ask the owner to drop it. */
        if (r->conn == CACHE_REDIS_UP)
            r->conn = CACHE_REDIS_CLOSE_WANTED;
    }
}

static void success(struct cache_redis *r)
{
    r->fails = 0;
    if (r->breaker == CACHE_REDIS_HALF_OPEN) {
        r->breaker = CACHE_REDIS_CLOSED;
        r->backoff_ms = r->cfg.backoff_min_ms;
    }
    r->trial_inflight = false;
}

static void advance(struct cache_redis *r, int64_t now)
{
    if (r->breaker == CACHE_REDIS_OPEN && now >= r->open_until) {
        r->breaker = CACHE_REDIS_HALF_OPEN;
        r->trial_inflight = false;
    }
}

/* Fails every pending command with `err` (orphans are dropped silently). Callbacks may queue new
 * commands only when the connection is still UP; callers set the state first. */
static void fail_all(struct cache_redis *r, int err)
{
    uint32_t n = r->count; /* only those queued now: new ones (if any) stay */
    for (uint32_t i = 0; i < n && r->count; i++) {
        struct pending p = q_pop(r);
        if (p.cb)
            p.cb(p.arg, NULL, err);
    }
}

void cache_redis_free(struct cache_redis *r)
{
    if (!r)
        return;
    r->conn = CACHE_REDIS_DOWN; /* commands issued from the callbacks below are refused */
    fail_all(r, -ECANCELED);
    if (r->fd >= 0)
        close(r->fd);
    redisReaderFree(r->reader);
    free(r->q);
    free(r->out);
    free(r);
}

bool cache_redis_usable(const struct cache_redis *r, int64_t now_ms)
{
    if (r->conn != CACHE_REDIS_UP || r->count >= r->cfg.max_pending)
        return false;
    switch (r->breaker) {
    case CACHE_REDIS_CLOSED:
        return true;
    case CACHE_REDIS_OPEN:
        return now_ms >= r->open_until; /* the next command is the trial */
    default:
        return !r->trial_inflight;
    }
}

int cache_redis_command(struct cache_redis *r, int argc, const char **argv, const size_t *argvlen,
                        int64_t now_ms, cache_redis_cb cb, void *arg)
{
    advance(r, now_ms);
    if (!cache_redis_usable(r, now_ms)) {
        r->st.rejected++;
        return r->count >= r->cfg.max_pending && r->conn == CACHE_REDIS_UP ? -ENOBUFS : -EAGAIN;
    }
    char *cmd = NULL;
    int n = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (n < 0 || !cmd)
        return -ENOMEM;
    size_t unsent = r->out_len - r->out_off;
    if (unsent + (size_t)n > r->cfg.max_out) {
        redisFreeCommand(cmd);
        r->st.rejected++;
        return -ENOBUFS;
    }
    if (r->out_off && r->out_len + (size_t)n > r->out_cap) {
        memmove(r->out, r->out + r->out_off, unsent);
        r->out_off = 0;
        r->out_len = unsent;
    }
    if (r->out_len + (size_t)n > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap : 4096;
        while (cap < r->out_len + (size_t)n)
            cap *= 2;
        char *no = realloc(r->out, cap);
        if (!no) {
            redisFreeCommand(cmd);
            return -ENOMEM;
        }
        r->out = no;
        r->out_cap = cap;
    }
    memcpy(r->out + r->out_len, cmd, (size_t)n);
    r->out_len += (size_t)n;
    redisFreeCommand(cmd);
    *q_at(r, r->count) = (struct pending){cb, arg, now_ms + r->cfg.timeout_ms};
    r->count++;
    if (r->breaker == CACHE_REDIS_HALF_OPEN)
        r->trial_inflight = true;
    r->st.commands++;
    return 0;
}

void cache_redis_set_push(struct cache_redis *r, cache_redis_push_cb cb, void *arg)
{
    r->push = cb;
    r->push_arg = arg;
}

struct slice cache_redis_out(const struct cache_redis *r)
{
    return slice_make(r->out + r->out_off, r->out_len - r->out_off);
}

void cache_redis_sent(struct cache_redis *r, size_t n)
{
    if (n > r->out_len - r->out_off)
        n = r->out_len - r->out_off;
    r->out_off += n;
    if (r->out_off == r->out_len)
        r->out_off = r->out_len = 0;
}

static bool is_push(const redisReply *rp)
{
    if (rp->type != REDIS_REPLY_ARRAY || rp->elements < 3 || !rp->element[0] ||
        rp->element[0]->type != REDIS_REPLY_STRING)
        return false;
    const redisReply *k = rp->element[0];
    return (k->len == 7 && memcmp(k->str, "message", 7) == 0) ||
           (k->len == 8 && memcmp(k->str, "pmessage", 8) == 0);
}

static void protocol_error(struct cache_redis *r, int64_t now)
{
    r->conn = CACHE_REDIS_CLOSE_WANTED;
    fail_all(r, -ECONNRESET);
    failure(r, now);
    r->conn = CACHE_REDIS_CLOSE_WANTED;
}

int cache_redis_feed(struct cache_redis *r, const char *buf, size_t len, int64_t now_ms)
{
    if (r->conn != CACHE_REDIS_UP)
        return 0; /* bytes of a connection being dropped */
    if (len && redisReaderFeed(r->reader, buf, len) != REDIS_OK) {
        protocol_error(r, now_ms);
        return -EPROTO;
    }
    for (;;) {
        void *v = NULL;
        if (redisReaderGetReply(r->reader, &v) != REDIS_OK) {
            protocol_error(r, now_ms);
            return -EPROTO;
        }
        if (!v)
            return 0;
        redisReply *rp = v;
        if (r->push && is_push(rp)) {
            r->push(r->push_arg, rp);
        } else if (r->count) {
            bool orphan = r->norphan > 0;
            struct pending p = q_pop(r);
            r->st.replies++;
            if (!orphan) {
                success(r); /* a late reply proves nothing about the deadline */
                if (p.cb)
                    p.cb(p.arg, rp, 0);
            }
        } else if (r->push) {
            r->push(r->push_arg, rp);
        }
        freeReplyObject(rp);
        if (r->conn != CACHE_REDIS_UP)
            return 0; /* a callback dropped the connection */
    }
}

void cache_redis_connected(struct cache_redis *r, int64_t now_ms)
{
    advance(r, now_ms);
    r->conn = CACHE_REDIS_UP;
    r->st.connects++;
}

void cache_redis_disconnected(struct cache_redis *r, int64_t now_ms)
{
    bool was_up = r->conn == CACHE_REDIS_UP || r->conn == CACHE_REDIS_CLOSE_WANTED;
    r->conn = CACHE_REDIS_DOWN;
    fail_all(r, -ECONNRESET);
    r->head = r->count = r->norphan = 0;
    r->out_off = r->out_len = 0;
    redisReaderFree(r->reader);
    r->reader = reader_new(); /* NULL only on ENOMEM: then feed refuses to reconnect */
    if (was_up)
        r->st.disconnects++;
    failure(r, now_ms);
}

int64_t cache_redis_tick(struct cache_redis *r, int64_t now_ms)
{
    advance(r, now_ms);
    int64_t next = INT64_MAX;
    /* Deadlines grow along the queue (constant timeout, non-decreasing now): check live ones
     * from the oldest and stop at the first still in time. */
    while (r->norphan < r->count) {
        struct pending *p = q_at(r, r->norphan);
        if (p->deadline > now_ms) {
            next = p->deadline;
            break;
        }
        cache_redis_cb cb = p->cb;
        void *arg = p->arg;
        p->cb = NULL;
        r->norphan++;
        r->st.timeouts++;
        failure(r, now_ms);
        if (cb)
            cb(arg, NULL, -ETIMEDOUT);
    }
    if (r->breaker == CACHE_REDIS_OPEN && r->open_until < next)
        next = r->open_until;
    return next;
}

enum cache_redis_conn cache_redis_conn_state(const struct cache_redis *r)
{
    return r->conn;
}

enum cache_redis_breaker cache_redis_breaker_state(const struct cache_redis *r)
{
    return r->breaker;
}

const struct cache_redis_stats *cache_redis_stats(const struct cache_redis *r)
{
    return &r->st;
}

bool cache_redis_want_connect(const struct cache_redis *r, int64_t now_ms)
{
    return r->conn == CACHE_REDIS_DOWN && r->reader &&
           (r->breaker != CACHE_REDIS_OPEN || now_ms >= r->open_until);
}

/* ---- fd driver ---- */

int cache_redis_fd(const struct cache_redis *r)
{
    return r->fd;
}

static void fd_drop(struct cache_redis *r, int64_t now_ms)
{
    if (r->fd >= 0) {
        close(r->fd);
        r->fd = -1;
    }
    if (r->conn == CACHE_REDIS_CONNECTING)
        r->st.connect_failures++;
    cache_redis_disconnected(r, now_ms);
}

int cache_redis_fd_connect(struct cache_redis *r, const char *host, uint16_t port, int64_t now_ms)
{
    if (r->fd >= 0)
        return -EALREADY;
    if (host != r->host) {
        size_t hl = strlen(host);
        if (hl >= sizeof(r->host))
            return -EINVAL;
        memcpy(r->host, host, hl + 1);
    }
    r->port = port;
    advance(r, now_ms);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", (unsigned)port);
    if (getaddrinfo(r->host, ps, &hints, &ai) != 0 || !ai)
        return -EINVAL;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        freeaddrinfo(ai);
        return -e;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    int e = errno;
    freeaddrinfo(ai);
    r->fd = fd;
    r->connect_deadline = now_ms + r->cfg.connect_timeout_ms;
    if (rc == 0) {
        cache_redis_connected(r, now_ms);
        return 0;
    }
    if (e != EINPROGRESS) {
        r->conn = CACHE_REDIS_CONNECTING;
        fd_drop(r, now_ms);
        return -e;
    }
    r->conn = CACHE_REDIS_CONNECTING;
    return 0;
}

short cache_redis_fd_events(const struct cache_redis *r)
{
    if (r->fd < 0)
        return 0;
    switch (r->conn) {
    case CACHE_REDIS_CONNECTING:
        return POLLOUT;
    case CACHE_REDIS_UP:
        return POLLIN | (r->out_len > r->out_off ? POLLOUT : 0);
    default:
        return 0;
    }
}

/* Sends what it can; false when the socket failed. */
static bool fd_send(struct cache_redis *r)
{
    for (int i = 0; i < 64 && r->out_len > r->out_off; i++) {
        ssize_t n = send(r->fd, r->out + r->out_off, r->out_len - r->out_off, MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR;
        cache_redis_sent(r, (size_t)n);
    }
    return true;
}

void cache_redis_fd_io(struct cache_redis *r, short revents, int64_t now_ms)
{
    if (r->fd < 0 || !revents)
        return;
    if (r->conn == CACHE_REDIS_CONNECTING) {
        int err = 0;
        socklen_t sl = sizeof(err);
        if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0 || err) {
            fd_drop(r, now_ms);
            return;
        }
        if (!(revents & POLLOUT))
            return;
        cache_redis_connected(r, now_ms);
    }
    if (r->conn == CACHE_REDIS_UP && !fd_send(r)) {
        fd_drop(r, now_ms);
        return;
    }
    if (r->conn == CACHE_REDIS_UP && (revents & (POLLIN | POLLHUP | POLLERR))) {
        char buf[16384];
        for (int i = 0; i < 16 && r->conn == CACHE_REDIS_UP; i++) {
            ssize_t n = recv(r->fd, buf, sizeof(buf), 0);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            if (n <= 0) {
                fd_drop(r, now_ms);
                return;
            }
            cache_redis_feed(r, buf, (size_t)n, now_ms);
            if ((size_t)n < sizeof(buf))
                break;
        }
    }
    if (r->conn == CACHE_REDIS_CLOSE_WANTED)
        fd_drop(r, now_ms);
    else if (r->conn == CACHE_REDIS_UP && !fd_send(r))
        fd_drop(r, now_ms); /* callbacks may have queued commands */
}

void cache_redis_fd_flush(struct cache_redis *r, int64_t now_ms)
{
    if (r->fd >= 0 && r->conn == CACHE_REDIS_UP && !fd_send(r))
        fd_drop(r, now_ms);
}

int64_t cache_redis_fd_tick(struct cache_redis *r, int64_t now_ms)
{
    int64_t next = cache_redis_tick(r, now_ms);
    if (r->fd >= 0 && r->conn == CACHE_REDIS_CONNECTING && now_ms >= r->connect_deadline)
        fd_drop(r, now_ms);
    if (r->fd >= 0 && r->conn == CACHE_REDIS_CLOSE_WANTED)
        fd_drop(r, now_ms);
    if (r->fd < 0 && r->host[0] && cache_redis_want_connect(r, now_ms))
        cache_redis_fd_connect(r, r->host, r->port, now_ms);
    if (r->fd >= 0 && r->conn == CACHE_REDIS_CONNECTING && r->connect_deadline < next)
        next = r->connect_deadline;
    if (r->fd >= 0 && r->conn == CACHE_REDIS_UP && !fd_send(r))
        fd_drop(r, now_ms);
    if (r->fd < 0 && r->breaker == CACHE_REDIS_OPEN && r->open_until < next)
        next = r->open_until;
    return next;
}
