// SPDX-License-Identifier: MIT
// sipedge-bench: load generator for the edge on net/ (io_uring) and tls/ (OpenSSL): Jabber-like
// TLS clients (REGISTER -> 407 Bearer challenge -> REGISTER with the token -> 200, re-REGISTERs),
// open-loop, closed-loop, connection-storm and idle-hold modes; HDR-style latency histograms.
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth/jwt_mint.h"
#include "auth/keys.h"
#include "bench/bench_hist.h"
#include "core/sip.h"
#include "net/conn.h"
#include "net/loop.h"
#include "tls/tls.h"

#define BENCH_MAX_THREADS   16
#define BENCH_MAX_PIDS      64 /* processes of one edge (--edge-pid A,B,...) */
#define BENCH_MAX_CONNS     100000u
#define BENCH_TOKEN_CAP     8192
#define BENCH_MSG_CAP       (BENCH_TOKEN_CAP + 2048)
#define BENCH_READ_CHUNK    (16u * 1024u)
#define BENCH_IN_MAX        (64u * 1024u) /* a response larger than this is a protocol error */
#define BENCH_MAX_HEADERS   64
#define BENCH_TICK_LEAD_US  500u /* open loop: send up to this early, measured from the send */
#define BENCH_RETRY_MS      100u
#define BENCH_STATUS_CODES  700
#define BENCH_CTRL_SLEEP_MS 5
#define BENCH_TICK_MS       5 /* phase checks and setup refills when nothing is scheduled */

/* ---- options ------------------------------------------------------------------------------ */

enum bench_mode {
    MODE_RATE = 0, /* open loop at --rate */
    MODE_CLOSED,   /* --concurrency requests in flight */
    MODE_STORM,    /* --storm N new connections */
    MODE_IDLE,     /* --idle N held connections */
    /* MODE_COUNT */ MODE_COUNT
};

static const char *const mode_names[MODE_COUNT] = {"rate", "closed", "storm", "idle"};

struct bench_opts {
    const char *host;
    int port;
    const char *ca, *server_name, *tls_cert, *tls_key;
    const char *key, *kid, *user_prefix, *label, *ready_file;
    const char *hs_secret; /* HS256 secret file (raw bytes, as sipedge-token reads it) */
    enum bench_mode mode;
    double rate, fresh, duration_s, hold_s, setup_timeout_s;
    double churn_pct; /* --churn: % of the connections closed and opened again per minute */
    unsigned keepalive_ms, ping_ms; /* --idle: CRLFCRLF / OPTIONS per connection this often */
    unsigned conns, users, concurrency, threads, storm, idle, setup_concurrency;
    unsigned sources; /* --sources: clients spread over this many local addresses (0: one) */
    uint64_t max_requests, fresh_pool;
    unsigned timeout_ms, lifetime_s;
    unsigned retry_ms; /* --retry-ms: a storm client whose attempt failed tries again after
                          0.5-1.5 x this, until it has its 200 (0: one attempt each) */
    uint16_t tls_max;  /* 0: up to TLS 1.3; 0x0303: TLS 1.2 only */
    bool verify_each;  /* walk the edge's chain on every handshake (default: once a minute) */
    bool resume, direct, json, quiet;
    bool seen_tokens;    /* storm: every client's token REGISTERed once before it (unmeasured) */
    bool calls;          /* --calls: a measured unit is a call, requests on a client answered */
    bool retry_after;    /* --retry-after: a client answered 503 + Retry-After waits that long */
    const char *call_to; /* --call-to USER: every call to this user (default: the next user) */
    int edge_pid, ucm_pid;
    int edge_pids[BENCH_MAX_PIDS]; /* --edge-pid A,B,...: an edge made of several processes */
    unsigned n_edge_pids;
};

/* ---- errors and statistics ---------------------------------------------------------------- */

enum err_cause {
    ERR_TIMEOUT = 0, /* no final answer within --timeout-ms */
    ERR_CONNECT,     /* TCP connect failed or timed out */
    ERR_TLS,         /* handshake failed or the peer closed during it */
    ERR_CLOSED,      /* the peer closed an established connection */
    ERR_PROTOCOL,    /* unparsable answer, 407 without a Bearer challenge */
    ERR_STATUS,      /* a final status other than the expected one */
    ERR_OVERLOAD,    /* open loop: no free connection and the backlog full, or never sent */
    /* ERR_COUNT */ ERR_COUNT
};

static const char *const err_names[ERR_COUNT] = {"timeout",  "connect", "tls",     "closed",
                                                 "protocol", "status",  "overload"};

/** Counters and histograms of one thread (merged at the end). */
struct stats {
    struct bench_hist req;         /* measured REGISTERs with a token: start -> final answer */
    struct bench_hist req_ok;      /* the same, only those answered 200 (goodput latency) */
    struct bench_hist req_ok_wire; /* ... from the actual send, not the intended start: what the
                                      edge and UCM add, without the generator's own backlog */
    struct bench_hist chal;        /* REGISTER without credentials -> 407 */
    struct bench_hist hs;          /* connect start -> TLS established */
    struct bench_hist setup;       /* connect start -> registered (200) */
    struct bench_hist call;        /* --calls: INVITE sent -> 200 to the BYE (req: INVITE -> 200) */
    uint64_t call_ringing, uas_invite, uas_ack, uas_bye, uas_notify, uas_other;
    uint64_t sent, ok, done;
    uint64_t setup_ok, handshakes, resumed;
    uint64_t churned;  /* --churn: registered connections closed by us to be opened again */
    uint64_t backoffs; /* --retry-after: 503s whose client waited their Retry-After */
    uint64_t retries;  /* --retry-ms: storm attempts that failed and were tried again */
    uint64_t errors[ERR_COUNT];
    uint64_t setup_errors[ERR_COUNT];
    uint64_t status[BENCH_STATUS_CODES];
    uint64_t fresh_used, fresh_wrapped;
    uint64_t first_us, last_us; /* first send and last answer of the measured phase */
    uint64_t ka_sent, ka_pongs, ping_sent, ping_ok; /* --idle keep-alives and OPTIONS pings */
    /* How each measured request ended (sent == final + timeout + closed + still pending): the
     * chaos suite's "exactly one final response" invariant. */
    uint64_t req_final;   /* a final response (any status) */
    uint64_t req_timeout; /* none within --timeout-ms */
    uint64_t req_closed;  /* its connection closed (or the send failed) before a final one */
    uint64_t dup_final;   /* a final response to a request already answered (or stale) */
    uint64_t bad_first_us, bad_last_us; /* first and last measured request that did not end 200 */
};

/* ---- tokens ------------------------------------------------------------------------------ */

struct tok {
    uint32_t off, len;
};

/** Tokens minted at start: one warm token per user, plus `per_user` fresh ones per user. */
struct tokens {
    char *arena;
    size_t cap;
    _Atomic size_t used;
    struct tok *warm;       /* [users] */
    struct tok *fresh;      /* [users * per_user] */
    _Atomic uint32_t *next; /* per user: next fresh token */
    unsigned users, per_user;
    EVP_PKEY *priv;
    unsigned char secret[4096];
    size_t secret_len;
    enum keys_alg alg;
    double mint_s;
};

/* ---- clients and threads ------------------------------------------------------------------ */

enum client_state {
    CS_IDLE = 0,   /* no connection */
    CS_CONNECTING, /* TCP connect in flight */
    CS_HANDSHAKE,  /* TLS handshake */
    CS_CHALLENGE,  /* REGISTER without credentials sent, 407 expected */
    CS_AUTH,       /* first REGISTER with the token sent, 200 expected */
    CS_READY,      /* registered, nothing in flight */
    CS_BUSY,       /* re-REGISTER in flight */
    CS_CLOSING,    /* we are closing it (storm: done) */
    /* CS_COUNT */ CS_COUNT
};

struct gthread;

struct client {
    struct gthread *t;
    struct conn *conn;
    struct tls_conn *tls;
    char *in; /* partial answer carried between reads */
    uint32_t in_len, scanned;
    uint32_t id; /* conn id */
    uint32_t idx, user, cseq;
    uint32_t prime;    /* --seen-tokens: the client slot whose token this setup connection sent */
    uint32_t call_seq; /* --calls: calls made on this client */
    bool call_bye;     /* --calls: the call's BYE is in flight */
    uint16_t lport;
    uint8_t st;
    bool measured;    /* the request in flight belongs to the measured phase */
    bool err_counted; /* this connection's failure is already counted */
    bool ping_out;    /* --ping-ms: an OPTIONS sent while ready, not answered yet */
    uint8_t fail;     /* enum err_cause of that failure (meaningful when err_counted) */
    uint64_t t_start; /* connect started (µs) */
    uint64_t t_sent;  /* request start: min(intended, actual send) (µs) */
    uint64_t t_wire;  /* the actual send of a measured request (µs) */
    struct loop_timer timer;
};

enum phase {
    PH_SETUP = 0, /* connecting and registering the clients */
    PH_MEASURE,   /* the measured window */
    PH_DONE,      /* stop everything */
    /* PH_COUNT */ PH_COUNT
};

struct bench;

struct gthread {
    struct bench *b;
    struct loop *loop;
    unsigned idx;
    struct client *cl;
    unsigned ncl;
    struct tls_peer peer;   /* without --resume: no session kept */
    struct tls_peer *peers; /* --resume: one per client, [ncl] */
    uint64_t rng;
    struct stats st;

    /* setup */
    unsigned setup_next, setup_active, setup_done, setup_target;
    bool setup_reported;
    /* measure */
    bool measuring, sched_done, done_reported;
    uint32_t *ready; /* FIFO ring of idle registered clients */
    unsigned ready_head, ready_len;
    uint64_t *backlog; /* open loop: intended start times waiting for a free connection */
    unsigned bl_head, bl_len, bl_cap;
    uint64_t scheduled, budget, outstanding;
    double t0_us, period_us;
    uint64_t t_end_us;
    /* storm */
    uint64_t storm_started, storm_finished;
    /* --churn: connections owed (fractional) and when that was last brought up to date */
    double churn_due;
    uint64_t churn_last_us;
    /* idle: keep-alives and pings issued so far (to ready clients or skipped), next client */
    uint64_t ka_issued, ping_issued;
    unsigned ka_next, ping_next;

    struct loop_timer tick;
    char rx[BENCH_READ_CHUNK];
    char msg[BENCH_MSG_CAP];
};

/** A snapshot of a watched process's accounting (summed over its processes). */
struct proc_snap {
    bool ok;
    uint64_t ticks;    /* utime + stime from /proc/PID/stat */
    uint64_t sched_ns; /* sum of per-thread on-CPU time from /proc/PID/task/ * /schedstat */
    uint64_t rss_kib, pss_kib;
};

struct bench {
    struct bench_opts o;
    struct sockaddr_in addr;
    struct tls_ctx *tls;
    struct tokens tok;
    struct loop_group *group;
    struct gthread *th[BENCH_MAX_THREADS];
    unsigned nth;
    _Atomic int phase;
    _Atomic uint64_t t0_us;
    _Atomic unsigned setup_threads_done, measure_threads_done;
    _Atomic uint64_t setup_errs; /* setup failures, all threads: give up early when many */
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* ---- token minting ------------------------------------------------------------------------ */

static EVP_PKEY *load_private(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

static void user_name(const struct bench_opts *o, unsigned u, char *out, size_t cap)
{
    snprintf(out, cap, "%s%07u", o->user_prefix, u);
}

/* Mints one token for user `u` (fresh: with a unique jti and its own iat) into the arena. */
static int mint_one(struct bench *b, unsigned u, uint64_t serial, struct tok *out)
{
    struct tokens *tk = &b->tok;
    char user[64], claims[512], buf[BENCH_TOKEN_CAP];
    user_name(&b->o, u, user, sizeof(user));
    long long now = (long long)time(NULL);
    int n;
    if (serial == 0)
        n = snprintf(claims, sizeof(claims), "{\"sub\":\"%s\",\"exp\":%lld,\"iat\":%lld}", user,
                     now + b->o.lifetime_s, now);
    else
        n = snprintf(claims, sizeof(claims),
                     "{\"sub\":\"%s\",\"exp\":%lld,\"iat\":%lld,\"jti\":\"b%d-%" PRIu64 "\"}", user,
                     now + b->o.lifetime_s, now - (long long)(serial % 600), (int)getpid(), serial);
    if (n < 0 || (size_t)n >= sizeof(claims))
        return -ENOSPC;
    struct jwt_mint_spec spec = {.alg = tk->alg,
                                 .priv = tk->priv,
                                 .secret = tk->secret_len ? tk->secret : NULL,
                                 .secret_len = tk->secret_len,
                                 .kid = b->o.kid,
                                 .claims_json = claims};
    ssize_t len = jwt_mint(&spec, buf, sizeof(buf));
    if (len < 0)
        return (int)len;
    size_t off = atomic_fetch_add(&tk->used, (size_t)len);
    if (off + (size_t)len > tk->cap)
        return -ENOSPC;
    memcpy(tk->arena + off, buf, (size_t)len);
    out->off = (uint32_t)off;
    out->len = (uint32_t)len;
    return 0;
}

struct mint_job {
    struct bench *b;
    unsigned part, parts;
    int err;
};

/* Mints every token whose index is `part` modulo `parts` (warm first, then fresh). */
static void *mint_worker(void *arg)
{
    struct mint_job *j = arg;
    struct tokens *tk = &j->b->tok;
    uint64_t total = (uint64_t)tk->users * (1u + tk->per_user);
    for (uint64_t i = j->part; i < total && j->err == 0; i += j->parts) {
        if (i < tk->users) {
            j->err = mint_one(j->b, (unsigned)i, 0, &tk->warm[i]);
        } else {
            uint64_t k = i - tk->users; /* fresh index: user k % users */
            unsigned u = (unsigned)(k % tk->users);
            unsigned slot = (unsigned)(k / tk->users);
            j->err = mint_one(j->b, u, k + 1, &tk->fresh[(uint64_t)u * tk->per_user + slot]);
        }
    }
    return NULL;
}

static int tokens_mint(struct bench *b)
{
    struct tokens *tk = &b->tok;
    const struct bench_opts *o = &b->o;
    if (o->hs_secret != NULL) {
        FILE *f = fopen(o->hs_secret, "rb");
        tk->secret_len = f ? fread(tk->secret, 1, sizeof(tk->secret), f) : 0;
        if (f)
            fclose(f);
        if (tk->secret_len == 0 || tk->secret_len == sizeof(tk->secret)) {
            fprintf(stderr, "sipedge-bench: %s: no HS256 secret (1..4095 bytes)\n", o->hs_secret);
            return -EINVAL;
        }
        tk->alg = KEYS_ALG_HS256;
    } else if ((tk->priv = load_private(o->key)) == NULL) {
        fprintf(stderr, "sipedge-bench: %s: no PEM private key\n", o->key);
        return -EINVAL;
    }
    int id = tk->priv ? EVP_PKEY_get_base_id(tk->priv) : 0;
    if (tk->priv)
        tk->alg = id == EVP_PKEY_RSA ? KEYS_ALG_RS256 : id == EVP_PKEY_EC ? KEYS_ALG_ES256 : 0;
    if (tk->alg == KEYS_ALG_NONE) {
        fprintf(stderr, "sipedge-bench: %s: neither RSA nor EC\n", o->key);
        return -EINVAL;
    }
    tk->users = o->users;
    tk->per_user = 0;
    if (o->fresh > 0) {
        uint64_t pool = o->fresh_pool;
        tk->per_user = (unsigned)((pool + tk->users - 1) / tk->users);
        if (tk->per_user == 0)
            tk->per_user = 1;
    }
    uint64_t total = (uint64_t)tk->users * (1u + tk->per_user);
    tk->cap = total * (tk->alg == KEYS_ALG_RS256 ? 560 : 320) + 4096;
    tk->arena = malloc(tk->cap);
    tk->warm = calloc(tk->users, sizeof(*tk->warm));
    tk->fresh = calloc((size_t)tk->users * tk->per_user + 1, sizeof(*tk->fresh));
    tk->next = calloc(tk->users, sizeof(*tk->next));
    if (!tk->arena || !tk->warm || !tk->fresh || !tk->next)
        return -ENOMEM;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned parts = ncpu > 0 && ncpu < 16 ? (unsigned)ncpu : 4;
    if (total < 64)
        parts = 1;
    pthread_t tid[16];
    struct mint_job jobs[16];
    uint64_t t0 = now_us();
    for (unsigned i = 0; i < parts; i++) {
        jobs[i] = (struct mint_job){.b = b, .part = i, .parts = parts};
        if (pthread_create(&tid[i], NULL, mint_worker, &jobs[i]) != 0)
            return -EAGAIN;
    }
    int err = 0;
    for (unsigned i = 0; i < parts; i++) {
        pthread_join(tid[i], NULL);
        if (jobs[i].err)
            err = jobs[i].err;
    }
    tk->mint_s = (double)(now_us() - t0) / 1e6;
    if (err) {
        fprintf(stderr, "sipedge-bench: minting failed: %s\n", strerror(-err));
        return err;
    }
    return 0;
}

/* The token for the next REGISTER of `cl`: fresh with probability --fresh-tokens. */
static struct slice token_for(struct gthread *t, struct client *cl)
{
    struct tokens *tk = &t->b->tok;
    struct tok k = tk->warm[cl->user];
    if (tk->per_user && t->b->o.fresh > 0) {
        double r = (double)(xorshift(&t->rng) >> 11) / 9007199254740992.0;
        if (r < t->b->o.fresh) {
            uint32_t n = atomic_fetch_add_explicit(&tk->next[cl->user], 1, memory_order_relaxed);
            if (n >= tk->per_user)
                t->st.fresh_wrapped++;
            k = tk->fresh[(uint64_t)cl->user * tk->per_user + n % tk->per_user];
            t->st.fresh_used++;
        }
    }
    return slice_make(tk->arena + k.off, k.len);
}

/* ---- watched processes -------------------------------------------------------------------- */

static uint64_t read_kib_field(const char *path, const char *field)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[256];
    uint64_t v = 0;
    size_t fl = strlen(field);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, fl) == 0) {
            v = strtoull(line + fl, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static struct proc_snap proc_snap(int pid)
{
    struct proc_snap s = {0};
    if (pid <= 0)
        return s;
    char path[128], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return s;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the comm field may hold spaces */
    if (p == NULL)
        return s;
    unsigned long long ut = 0, stt = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
     */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2)
        return s;
    s.ticks = ut + stt;
    snprintf(path, sizeof(path), "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char sp[300];
            snprintf(sp, sizeof(sp), "/proc/%d/task/%s/schedstat", pid, e->d_name);
            FILE *sf = fopen(sp, "r");
            if (sf == NULL)
                continue;
            unsigned long long ns = 0;
            if (fscanf(sf, "%llu", &ns) == 1)
                s.sched_ns += ns;
            fclose(sf);
        }
        closedir(d);
    }
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    s.rss_kib = read_kib_field(path, "VmRSS:");
    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
    s.pss_kib = read_kib_field(path, "Pss:");
    s.ok = true;
    return s;
}

/* The sum over the edge's processes (Kamailio is several): CPU, RSS and Pss add up (Pss is the
 * fair share of shared pages, so its sum is the edge's memory; the RSS sum counts shared pages
 * once per process). */
static struct proc_snap edge_snap(const struct bench_opts *o)
{
    struct proc_snap sum = {0};
    for (unsigned i = 0; i < o->n_edge_pids; i++) {
        struct proc_snap s = proc_snap(o->edge_pids[i]);
        if (!s.ok)
            return (struct proc_snap){0};
        sum.ok = true;
        sum.ticks += s.ticks;
        sum.sched_ns += s.sched_ns;
        sum.rss_kib += s.rss_kib;
        sum.pss_kib += s.pss_kib;
    }
    return sum;
}

static double self_cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* ---- client I/O ---------------------------------------------------------------------------- */

static const struct conn_ops client_ops;
static void client_start(struct client *cl);
static void client_timeout_cb(struct loop *loop, struct loop_timer *timer);
static void client_retry_cb(struct loop *loop, struct loop_timer *timer);
static void client_ready(struct client *cl);
static int call_send_invite(struct client *cl);

static struct client *client_of_timer(struct loop_timer *t)
{
    return (struct client *)((char *)t - offsetof(struct client, timer));
}

/* --retry-ms: `cl`'s storm attempt failed (its error is counted); it tries again after 0.5-1.5
 * x retry_ms, as a phone backs off, and the attempt does not count towards the storm's end. */
static void storm_retry_later(struct client *cl)
{
    struct gthread *t = cl->t;
    double jitter = 0.5 + (double)(xorshift(&t->rng) >> 11) / 9007199254740992.0;
    t->storm_started--;
    t->st.retries++;
    loop_timer_arm(t->loop, &cl->timer,
                   loop_now_ms(t->loop) + (uint64_t)(t->b->o.retry_ms * jitter), client_retry_cb);
}

static bool client_holds(const struct client *cl, uint32_t id)
{
    return cl->conn != NULL && cl->id == id;
}

/* Moves pending ciphertext to the connection. Returns 0 or -errno (the conn may be closed). */
static int client_flush(struct client *cl)
{
    size_t n;
    while (cl->conn && (n = tls_conn_out_len(cl->tls)) > 0) {
        struct slice out = tls_conn_out(cl->tls);
        struct iovec iov = {(void *)out.base, out.len};
        ssize_t r = conn_send(cl->conn, &iov, 1);
        if (r < 0)
            return (int)r;
        tls_conn_out_consume(cl->tls, out.len);
    }
    return cl->conn ? 0 : -ENOTCONN;
}

static void count_error(struct client *cl, enum err_cause e)
{
    struct gthread *t = cl->t;
    if (cl->measured || t->measuring)
        t->st.errors[e]++;
    else {
        t->st.setup_errors[e]++;
        atomic_fetch_add_explicit(&t->b->setup_errs, 1, memory_order_relaxed);
    }
}

enum req_end {
    REQ_FINAL = 0, /* a final response */
    REQ_TIMEOUT,   /* none within --timeout-ms */
    REQ_CLOSED,    /* the connection closed first */
    /* REQ_COUNT */ REQ_COUNT
};

/* Counts how a measured request ended; `status` is its final status (REQ_FINAL). */
static void req_ended(struct gthread *t, enum req_end how, int status, uint64_t now)
{
    struct stats *s = &t->st;
    if (how == REQ_FINAL)
        s->req_final++;
    else if (how == REQ_TIMEOUT)
        s->req_timeout++;
    else
        s->req_closed++;
    if (how == REQ_FINAL && status == 200)
        return;
    if (s->bad_first_us == 0)
        s->bad_first_us = now;
    s->bad_last_us = now;
}

/* Closes the connection after a failure counted by the caller (no double count in on_close). */
static void client_fail(struct client *cl, enum err_cause e)
{
    if (cl->err_counted || cl->conn == NULL)
        return;
    count_error(cl, e);
    cl->err_counted = true;
    cl->fail = (uint8_t)e;
    conn_close(cl->conn, CONN_CLOSE_LOCAL);
}

/* Builds and sends one REGISTER (`with_token`: Proxy-Authorization: Bearer). */
static int client_send_register(struct client *cl, bool with_token)
{
    struct gthread *t = cl->t;
    const struct bench_opts *o = &t->b->o;
    char user[64];
    user_name(o, cl->user, user, sizeof(user));
    cl->cseq++;
    int n = snprintf(
        t->msg, sizeof(t->msg),
        "REGISTER sip:%s SIP/2.0\r\n"
        "Via: SIP/2.0/TLS 127.0.0.1:%u;branch=z9hG4bK-sb%u.%u.%u;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:%s@example.test>;tag=sb%u\r\n"
        "To: <sip:%s@example.test>\r\n"
        "Call-ID: sb-%d-%u@127.0.0.1\r\n"
        "CSeq: %u REGISTER\r\n"
        "Contact: <sip:%s@127.0.0.1:%u;transport=tls>;+sip.instance=\"<urn:uuid:00000000-0000-"
        "0000-0000-%012u>\";+u.sip!devicename.ccm.cisco.com=\"CSF%s\"\r\n"
        "Expires: 3600\r\n"
        "User-Agent: Cisco-CSF sipedge-bench\r\n"
        "Supported: replaces,join,sdp-anat,norefersub,resource-priority,extended-refer,"
        "X-cisco-callinfo,X-cisco-serviceuri,X-cisco-escapecodes,X-cisco-service-control,"
        "X-cisco-srtp-fallback,X-cisco-monrec,X-cisco-config,X-cisco-sis-7.0.0\r\n",
        o->host, cl->lport, t->idx, cl->idx, cl->cseq, user, cl->idx, user, (int)getpid(), cl->idx,
        cl->cseq, user, cl->lport, cl->idx, user);
    if (n < 0 || (size_t)n >= sizeof(t->msg))
        return -ENOSPC;
    size_t len = (size_t)n;
    if (with_token) {
        struct slice tok = token_for(t, cl);
        static const char pre[] = "Proxy-Authorization: Bearer token=\"";
        if (len + sizeof(pre) + tok.len + 32 > sizeof(t->msg))
            return -ENOSPC;
        memcpy(t->msg + len, pre, sizeof(pre) - 1);
        len += sizeof(pre) - 1;
        memcpy(t->msg + len, tok.base, tok.len);
        len += tok.len;
        memcpy(t->msg + len, "\"\r\n", 3);
        len += 3;
    }
    memcpy(t->msg + len, "Content-Length: 0\r\n\r\n", 21);
    len += 21;
    struct iovec iov = {t->msg, len};
    ssize_t r = tls_conn_writev(cl->tls, &iov, 1);
    if (r < 0)
        return (int)r;
    int f = client_flush(cl);
    if (f < 0)
        return f;
    loop_timer_arm(t->loop, &cl->timer, loop_now_ms(t->loop) + o->timeout_ms, client_timeout_cb);
    return 0;
}

/* Sends a measured re-REGISTER whose intended start is `intended` (µs). */
static void client_request(struct client *cl, uint64_t intended)
{
    struct gthread *t = cl->t;
    uint64_t now = now_us();
    cl->t_sent = intended < now ? intended : now;
    cl->t_wire = now;
    cl->measured = true;
    cl->st = CS_BUSY;
    t->outstanding++;
    t->st.sent++;
    if (t->st.first_us == 0)
        t->st.first_us = now;
    if ((t->b->o.calls ? call_send_invite(cl) : client_send_register(cl, true)) < 0)
        client_fail(cl, ERR_CLOSED); /* on_close settles `outstanding` */
}

/* Is `v` a Bearer challenge (`Bearer realm="..."`)? */
static bool is_bearer_challenge(struct slice v)
{
    static const char want[] = "Bearer realm=\"";
    size_t wl = sizeof(want) - 1;
    for (size_t i = 0; i + wl <= v.len; i++)
        if (strncasecmp(v.base + i, want, 7) == 0 && memcmp(v.base + i + 7, want + 7, wl - 7) == 0)
            return true;
    return false;
}

/* The number a header's value starts with (its digits up to `cap`), 0 when absent. */
static uint32_t header_number(const struct sip_msg *m, enum sip_hdr id, uint32_t cap)
{
    const struct sip_header *h = sip_first(m, id);
    uint32_t v = 0;
    for (size_t i = 0; h != NULL && i < h->value.len && h->value.base[i] >= '0' &&
                       h->value.base[i] <= '9' && v < cap;
         i++)
        v = v * 10 + (uint32_t)(h->value.base[i] - '0');
    return v > cap ? cap : v;
}

static uint32_t cseq_number(const struct sip_msg *m)
{
    return header_number(m, SIP_HDR_CSEQ, UINT32_MAX / 10);
}

/* Retry-After of a response in seconds (0: none, or not a number; capped at an hour). */
static uint32_t retry_after_s(const struct sip_msg *m)
{
    return header_number(m, SIP_HDR_RETRY_AFTER, 3600);
}

static void client_backoff_cb(struct loop *loop, struct loop_timer *timer);
static void storm_next(struct gthread *t);
static void thread_check_done(struct gthread *t);
static void thread_setup_step(struct gthread *t);

#include "bench/bench_calls.h"

/* A complete answer on `cl`. */
static void client_answer(struct client *cl, const struct sip_msg *m)
{
    struct gthread *t = cl->t;
    const struct bench_opts *o = &t->b->o;
    if (o->calls && m->is_request) {
        call_uas(cl, m);
        return;
    }
    if (o->calls && cl->st == CS_BUSY) {
        call_on_response(cl, m);
        return;
    }
    if (m->is_request || m->status < 200)
        return; /* provisional or a request: nothing to do */
    if (cseq_number(m) != cl->cseq || (cl->st == CS_READY && !cl->ping_out)) {
        if (t->measuring)
            t->st.dup_final++; /* its request was answered already: one final response only */
        return;
    }
    uint64_t now = now_us();
    loop_timer_cancel(t->loop, &cl->timer);
    int st = m->status < BENCH_STATUS_CODES ? m->status : 0;
    switch (cl->st) {
    case CS_CHALLENGE: {
        bench_hist_add(&t->st.chal, now - cl->t_sent);
        const struct sip_header *h = sip_first(m, SIP_HDR_PROXY_AUTHENTICATE);
        if (m->status != 407) {
            client_fail(cl, ERR_STATUS);
            return;
        }
        if (h == NULL || !is_bearer_challenge(h->value)) {
            client_fail(cl, ERR_PROTOCOL);
            return;
        }
        cl->st = CS_AUTH;
        cl->t_sent = now;
        if (client_send_register(cl, true) < 0)
            client_fail(cl, ERR_CLOSED);
        return;
    }
    case CS_AUTH:
        if (m->status != 200) {
            if (t->measuring)
                t->st.status[st]++;
            client_fail(cl, ERR_STATUS);
            return;
        }
        bench_hist_add(&t->st.setup, now - cl->t_start);
        if (o->mode == MODE_STORM && !t->measuring && o->seen_tokens && !o->resume &&
            cl->prime + t->setup_target < t->ncl) { /* --seen-tokens: the next client's */
            cl->prime += t->setup_target;
            cl->user = t->cl[cl->prime].user;
            cl->t_sent = now;
            if (client_send_register(cl, true) < 0)
                client_fail(cl, ERR_CLOSED);
            return;
        }
        if (o->mode == MODE_STORM && !t->measuring) { /* warm-up: done */
            cl->user = cl->idx % o->users;
            t->st.setup_ok++;
            t->setup_done++;
            if (t->setup_active)
                t->setup_active--;
            cl->st = CS_CLOSING;
            tls_conn_shutdown(cl->tls);
            if (client_flush(cl) == 0)
                conn_drain(cl->conn);
            return;
        }
        if (o->mode == MODE_STORM) {
            bench_hist_add(&t->st.req, now - cl->t_sent);
            t->st.ok++;
            t->st.done++;
            t->st.last_us = now;
            t->st.status[200]++;
            t->storm_finished++;
            cl->st = CS_CLOSING;
            tls_conn_shutdown(cl->tls);
            if (client_flush(cl) == 0)
                conn_drain(cl->conn);
            return;
        }
        t->st.setup_ok++;
        if (t->setup_active)
            t->setup_active--;
        t->setup_done++;
        client_ready(cl);
        if (!t->measuring)
            thread_setup_step(t); /* refill at once, not at the next tick */
        return;
    case CS_BUSY:
        t->outstanding--;
        t->st.done++;
        t->st.status[st]++;
        t->st.last_us = now;
        cl->measured = false;
        req_ended(t, REQ_FINAL, m->status, now);
        bench_hist_add(&t->st.req, now - cl->t_sent);
        if (m->status == 200) {
            t->st.ok++;
            bench_hist_add(&t->st.req_ok, now - cl->t_sent);
            bench_hist_add(&t->st.req_ok_wire, now - cl->t_wire);
        } else {
            t->st.errors[ERR_STATUS]++;
        }
        uint32_t wait_s = o->retry_after && m->status == 503 ? retry_after_s(m) : 0;
        if (wait_s > 0) { /* the client backs off: not ready before its Retry-After */
            t->st.backoffs++;
            cl->st = CS_READY;
            loop_timer_arm(t->loop, &cl->timer, loop_now_ms(t->loop) + wait_s * 1000ull,
                           client_backoff_cb);
            return;
        }
        client_ready(cl);
        return;
    case CS_READY: /* --idle --ping-ms: the answer to an OPTIONS ping */
        cl->ping_out = false;
        if (m->status == 200)
            t->st.ping_ok++;
        else
            t->st.status[st]++;
        return;
    default:
        return;
    }
}

/* Parses every complete answer in `p[0..n)` (prefixed by the carried partial one). */
static void client_plaintext(struct client *cl, const char *p, size_t n)
{
    uint32_t id = cl->id;
    char *buf;
    size_t len;
    if (cl->in_len) {
        if (cl->in_len + n > BENCH_IN_MAX) {
            client_fail(cl, ERR_PROTOCOL);
            return;
        }
        char *nb = realloc(cl->in, cl->in_len + n);
        if (nb == NULL) {
            client_fail(cl, ERR_PROTOCOL);
            return;
        }
        memcpy(nb + cl->in_len, p, n);
        cl->in = nb;
        cl->in_len += (uint32_t)n;
        buf = nb;
        len = cl->in_len;
    } else {
        buf = (char *)p;
        len = n;
    }
    size_t off = 0, last = cl->in_len ? cl->scanned : 0;
    for (int guard = 0; guard < 256 && off < len; guard++) {
        size_t ka = sip_keepalive_len(buf + off, len - off);
        cl->t->st.ka_pongs += ka / 2; /* a "\r\n" pong per "\r\n\r\n" ping (RFC 5626) */
        off += ka;
        if (off >= len)
            break;
        struct sip_header hdrs[BENCH_MAX_HEADERS];
        struct sip_msg m;
        sip_msg_init(&m, hdrs, BENCH_MAX_HEADERS);
        ssize_t r = sip_scan(buf + off, len - off, last, &m);
        if (r == SIP_INCOMPLETE) {
            last = sip_scan_resume(&m, len - off);
            break;
        }
        if (r < 0) {
            client_fail(cl, ERR_PROTOCOL);
            return;
        }
        last = 0;
        client_answer(cl, &m);
        if (!client_holds(cl, id))
            return; /* closed: buffers already freed */
        off += (size_t)r;
    }
    size_t rest = len - off;
    if (rest == 0) {
        free(cl->in);
        cl->in = NULL;
        cl->in_len = 0;
        cl->scanned = 0;
        return;
    }
    if (buf == cl->in) {
        memmove(cl->in, cl->in + off, rest);
    } else {
        char *nb = malloc(rest);
        if (nb == NULL) {
            client_fail(cl, ERR_PROTOCOL);
            return;
        }
        memcpy(nb, buf + off, rest);
        free(cl->in);
        cl->in = nb;
    }
    cl->in_len = (uint32_t)rest;
    cl->scanned = (uint32_t)last;
}

/* TLS is up: the first REGISTER (without credentials, or with the token in --direct). */
static void client_established(struct client *cl)
{
    struct gthread *t = cl->t;
    uint64_t now = now_us();
    t->st.handshakes++;
    if (tls_conn_resumed(cl->tls))
        t->st.resumed++;
    bench_hist_add(&t->st.hs, now - cl->t_start);
    conn_set_open(cl->conn);
    cl->t_sent = now;
    cl->st = t->b->o.direct ? CS_AUTH : CS_CHALLENGE;
    if (client_send_register(cl, t->b->o.direct) < 0)
        client_fail(cl, ERR_CLOSED);
}

static void client_on_open(struct conn *c)
{
    struct client *cl = conn_user(c);
    struct gthread *t = cl->t;
    struct sockaddr_in la;
    socklen_t ll = sizeof(la);
    cl->lport = getsockname(conn_fd(c), (struct sockaddr *)&la, &ll) == 0 ? ntohs(la.sin_port) : 0;
    /* --resume: each client offers the ticket of its own previous connection (TLS 1.3 tickets
     * are meant for one use: clients sharing one would race); else one peer, emptied each time */
    struct tls_peer *peer = t->peers ? &t->peers[cl - t->cl] : &t->peer;
    if (t->peers == NULL)
        tls_peer_forget_session(peer);
    cl->tls = tls_conn_new_client(t->b->tls, peer);
    cl->st = CS_HANDSHAKE;
    if (cl->tls == NULL) {
        client_fail(cl, ERR_TLS);
        return;
    }
    int r = tls_conn_handshake(cl->tls);
    if (r != TLS_WANT_INPUT && r != 0) {
        client_fail(cl, ERR_TLS);
        return;
    }
    client_flush(cl);
}

static void client_on_data(struct conn *c, const char *p, size_t n)
{
    struct client *cl = conn_user(c);
    struct gthread *t = cl->t;
    uint32_t id = cl->id;
    if (tls_conn_feed(cl->tls, p, n) < 0) {
        client_fail(cl, ERR_PROTOCOL);
        return;
    }
    if (cl->st == CS_HANDSHAKE) {
        int r = tls_conn_handshake(cl->tls);
        if (client_flush(cl) < 0 || !client_holds(cl, id))
            return;
        if (r == TLS_WANT_INPUT)
            return;
        if (r < 0) {
            client_fail(cl, ERR_TLS);
            return;
        }
        client_established(cl);
        if (!client_holds(cl, id))
            return;
    }
    for (int guard = 0; guard < 64; guard++) {
        ssize_t r = tls_conn_read(cl->tls, t->rx, sizeof(t->rx));
        if (r == TLS_WANT_INPUT)
            break;
        if (r == 0) {
            if (cl->st == CS_CLOSING)
                return;
            client_fail(cl, ERR_CLOSED);
            return;
        }
        if (r < 0) {
            client_fail(cl, cl->st == CS_HANDSHAKE ? ERR_TLS : ERR_PROTOCOL);
            return;
        }
        client_plaintext(cl, t->rx, (size_t)r);
        if (!client_holds(cl, id))
            return;
    }
    client_flush(cl);
}

static void client_on_close(struct conn *c, enum conn_close_reason reason)
{
    struct client *cl = conn_user(c);
    struct gthread *t = cl->t;
    if (cl->conn != c)
        return;
    enum client_state st = cl->st;
    if (!cl->err_counted && st != CS_CLOSING && reason != CONN_CLOSE_SHUTDOWN) {
        enum err_cause e = st == CS_CONNECTING  ? ERR_CONNECT
                           : st == CS_HANDSHAKE ? ERR_TLS
                                                : ERR_CLOSED;
        count_error(cl, e);
    }
    if (st == CS_BUSY) {
        t->outstanding--;
        t->st.done++;
        bool timed_out = cl->err_counted && cl->fail == ERR_TIMEOUT;
        req_ended(t, timed_out ? REQ_TIMEOUT : REQ_CLOSED, 0, now_us());
    }
    /* a CS_READY client stays in the ready ring: ready_pop() skips what is not ready */
    loop_timer_cancel(t->loop, &cl->timer);
    tls_conn_free(cl->tls);
    cl->tls = NULL;
    free(cl->in);
    cl->in = NULL;
    cl->in_len = cl->scanned = 0;
    cl->conn = NULL;
    cl->id = 0;
    cl->measured = false;
    cl->err_counted = false;
    cl->ping_out = false;
    cl->st = CS_IDLE;
    if (reason == CONN_CLOSE_SHUTDOWN || atomic_load(&t->b->phase) == PH_DONE)
        return;
    const struct bench_opts *o = &t->b->o;
    if (o->mode == MODE_STORM && t->measuring) {
        if (st != CS_CLOSING && o->retry_ms) {
            storm_retry_later(cl);
            return;
        }
        if (st != CS_CLOSING)
            t->storm_finished++; /* a failed attempt ends too */
        loop_timer_arm(t->loop, &cl->timer, loop_now_ms(t->loop), client_retry_cb);
        return;
    }
    if (o->mode == MODE_STORM && st == CS_CLOSING)
        return; /* the warm-up connection is done */
    if (o->mode == MODE_IDLE && t->measuring)
        return; /* holding: a lost connection is counted, not replaced */
    loop_timer_arm(t->loop, &cl->timer, loop_now_ms(t->loop) + BENCH_RETRY_MS, client_retry_cb);
}

static const struct conn_ops client_ops = {
    .on_open = client_on_open,
    .on_data = client_on_data,
    .on_close = client_on_close,
};

static void client_timeout_cb(struct loop *loop, struct loop_timer *timer)
{
    (void)loop;
    struct client *cl = client_of_timer(timer);
    if (cl->conn)
        client_fail(cl, ERR_TIMEOUT);
}

/* --retry-after: the client's wait is over. */
static void client_backoff_cb(struct loop *loop, struct loop_timer *timer)
{
    (void)loop;
    struct client *cl = client_of_timer(timer);
    if (cl->conn != NULL && cl->st == CS_READY)
        client_ready(cl);
}

/* Starts (again) the connection of `cl`. */
static void client_start(struct client *cl)
{
    struct gthread *t = cl->t;
    const struct bench_opts *o = &t->b->o;
    cl->t_start = now_us();
    cl->cseq = 0;
    cl->st = CS_CONNECTING;
    cl->err_counted = false;
    cl->ping_out = false;
    struct conn *c = NULL;
    struct sockaddr_in src = {.sin_family = AF_INET};
    if (o->sources) { /* 127.(16 + thread).x.y: every 127/8 address is the loopback's */
        uint32_t i = cl->idx % o->sources + 1;
        src.sin_addr.s_addr = htonl(127u << 24 | (16u + t->idx) << 16 | i);
    }
    int r = loop_connect_from(t->loop, (const struct sockaddr *)&t->b->addr, sizeof(t->b->addr),
                              o->sources ? (const struct sockaddr *)&src : NULL, sizeof(src),
                              o->timeout_ms, &client_ops, cl, &c);
    if (r < 0) {
        cl->st = CS_IDLE;
        count_error(cl, ERR_CONNECT);
        if (o->mode == MODE_STORM && t->measuring && o->retry_ms) {
            storm_retry_later(cl);
            return;
        }
        if (o->mode == MODE_STORM && t->measuring)
            t->storm_finished++;
        loop_timer_arm(t->loop, &cl->timer, loop_now_ms(t->loop) + BENCH_RETRY_MS, client_retry_cb);
        return;
    }
    cl->conn = c;
    cl->id = conn_id(c);
}

static void client_retry_cb(struct loop *loop, struct loop_timer *timer)
{
    (void)loop;
    struct client *cl = client_of_timer(timer);
    struct gthread *t = cl->t;
    if (atomic_load(&t->b->phase) == PH_DONE || cl->conn != NULL)
        return;
    if (t->b->o.mode == MODE_STORM && t->measuring) {
        storm_next(t);
        return;
    }
    client_start(cl);
}

/* ---- dispatch ----------------------------------------------------------------------------- */

static void ready_push(struct gthread *t, struct client *cl)
{
    if (t->ready_len >= t->ncl)
        return;
    t->ready[(t->ready_head + t->ready_len) % t->ncl] = cl->idx - t->cl[0].idx;
    t->ready_len++;
}

static struct client *ready_pop(struct gthread *t)
{
    while (t->ready_len) {
        struct client *cl = &t->cl[t->ready[t->ready_head]];
        t->ready_head = (t->ready_head + 1) % t->ncl;
        t->ready_len--;
        if (cl->st == CS_READY)
            return cl;
    }
    return NULL;
}

/* `cl` is registered and has nothing in flight. */
static void client_ready(struct client *cl)
{
    struct gthread *t = cl->t;
    const struct bench_opts *o = &t->b->o;
    cl->st = CS_READY;
    if (!t->measuring || t->done_reported) {
        ready_push(t, cl);
        return;
    }
    if (o->mode == MODE_CLOSED) {
        if (!t->sched_done && t->scheduled < t->budget) {
            t->scheduled++;
            client_request(cl, now_us());
            return;
        }
    } else if (o->mode == MODE_RATE && t->bl_len) {
        uint64_t intended = t->backlog[t->bl_head];
        t->bl_head = (t->bl_head + 1) % t->bl_cap;
        t->bl_len--;
        client_request(cl, intended);
        return;
    }
    ready_push(t, cl);
}

/* Storm: start attempts up to this thread's share of --concurrency. */
static void storm_next(struct gthread *t)
{
    if (!t->measuring)
        return;
    for (unsigned i = 0; i < t->ncl && t->storm_started < t->budget; i++) {
        struct client *cl = &t->cl[i];
        if (cl->conn != NULL || loop_timer_armed(&cl->timer))
            continue;
        t->storm_started++;
        client_start(cl);
    }
}

static void thread_setup_step(struct gthread *t)
{
    const struct bench_opts *o = &t->b->o;
    unsigned cap = o->setup_concurrency / t->b->nth + 1;
    while (t->setup_next < t->setup_target && t->setup_active < cap) {
        client_start(&t->cl[t->setup_next++]);
        t->setup_active++;
    }
    if (!t->setup_reported && t->setup_done >= t->setup_target) {
        t->setup_reported = true;
        atomic_fetch_add(&t->b->setup_threads_done, 1);
    }
}

static void thread_begin_measure(struct gthread *t)
{
    const struct bench_opts *o = &t->b->o;
    t->measuring = true;
    t->t0_us = (double)atomic_load(&t->b->t0_us);
    double dur = o->mode == MODE_IDLE ? o->hold_s : o->duration_s;
    t->t_end_us = (uint64_t)(t->t0_us + dur * 1e6);
    if (o->mode == MODE_RATE) {
        double r = o->rate / t->b->nth;
        t->period_us = 1e6 / r;
        t->t0_us += t->period_us * t->idx / t->b->nth; /* interleave the threads' grids */
    } else if (o->mode == MODE_CLOSED) {
        struct client *cl;
        while (t->scheduled < t->budget && (cl = ready_pop(t)) != NULL) {
            t->scheduled++;
            client_request(cl, now_us());
        }
    } else if (o->mode == MODE_STORM) {
        t->st.first_us = now_us();
        storm_next(t);
    }
}

/* An OPTIONS to the edge itself (no Route, no user part: the edge answers it). */
static int client_send_options(struct client *cl)
{
    struct gthread *t = cl->t;
    cl->cseq++;
    int n = snprintf(t->msg, sizeof(t->msg),
                     "OPTIONS sip:%s SIP/2.0\r\n"
                     "Via: SIP/2.0/TLS 127.0.0.1:%u;branch=z9hG4bK-sbo%u.%u.%u;rport\r\n"
                     "Max-Forwards: 70\r\n"
                     "From: <sip:ping@example.test>;tag=sbo%u\r\n"
                     "To: <sip:%s>\r\n"
                     "Call-ID: sbo-%d-%u@127.0.0.1\r\n"
                     "CSeq: %u OPTIONS\r\n"
                     "Content-Length: 0\r\n\r\n",
                     t->b->o.host, cl->lport, t->idx, cl->idx, cl->cseq, cl->idx, t->b->o.host,
                     (int)getpid(), cl->idx, cl->cseq);
    if (n < 0 || (size_t)n >= sizeof(t->msg))
        return -ENOSPC;
    struct iovec iov = {t->msg, (size_t)n};
    ssize_t r = tls_conn_writev(cl->tls, &iov, 1);
    return r < 0 ? (int)r : client_flush(cl);
}

/* --idle: send the keep-alives (or OPTIONS pings) due by now, spread evenly: each held client
 * once per `period_ms`, in turn. `issued` counts the turns taken, `next` is the next client. */
static void idle_send_due(struct gthread *t, unsigned period_ms, uint64_t *issued, unsigned *next,
                          bool options)
{
    if (period_ms == 0 || t->ncl == 0)
        return;
    double elapsed_us = (double)now_us() - t->t0_us;
    uint64_t due = elapsed_us <= 0 ? 0 : (uint64_t)(elapsed_us * t->ncl / (period_ms * 1000.0));
    for (unsigned guard = 0; *issued < due && guard < t->ncl; guard++) {
        struct client *cl = &t->cl[*next];
        *next = (*next + 1) % t->ncl;
        (*issued)++;
        if (cl->st != CS_READY || cl->conn == NULL)
            continue;
        uint32_t id = cl->id;
        int r;
        if (options) {
            t->st.ping_sent++;
            cl->ping_out = true;
            r = client_send_options(cl);
        } else {
            static const char ping[] = "\r\n\r\n";
            struct iovec iov = {(void *)ping, sizeof(ping) - 1};
            t->st.ka_sent++;
            ssize_t w = tls_conn_writev(cl->tls, &iov, 1);
            r = w < 0 ? (int)w : client_flush(cl);
        }
        if (r < 0 && client_holds(cl, id))
            client_fail(cl, ERR_CLOSED);
    }
}

static void thread_check_done(struct gthread *t)
{
    if (t->done_reported || !t->measuring)
        return;
    const struct bench_opts *o = &t->b->o;
    uint64_t now = now_us();
    bool done = false;
    if (o->mode == MODE_IDLE) {
        done = now >= t->t_end_us;
    } else if (o->mode == MODE_STORM) {
        done = t->storm_finished >= t->budget || now >= t->t_end_us + o->timeout_ms * 1000ull;
        if (now >= t->t_end_us)
            t->budget = t->storm_started; /* --duration bounds a storm too */
    } else {
        if (!t->sched_done && (now >= t->t_end_us || t->scheduled >= t->budget))
            t->sched_done = true;
        bool drained = t->outstanding == 0 && t->bl_len == 0;
        bool late = now >= t->t_end_us + 2ull * o->timeout_ms * 1000ull;
        done = t->sched_done && (drained || late);
    }
    if (done) {
        t->st.errors[ERR_OVERLOAD] += t->bl_len;
        t->bl_len = 0;
        t->done_reported = true;
        atomic_fetch_add(&t->b->measure_threads_done, 1);
    }
}

/* Open loop: send what is due on the fixed grid, or queue it when every connection is busy. */
static void thread_schedule(struct gthread *t)
{
    uint64_t now = now_us();
    for (unsigned guard = 0; guard < 100000 && !t->sched_done && t->scheduled < t->budget;
         guard++) {
        double intended = t->t0_us + (double)t->scheduled * t->period_us;
        if (intended > (double)(now + BENCH_TICK_LEAD_US))
            break;
        if (intended >= (double)t->t_end_us) {
            t->sched_done = true;
            break;
        }
        t->scheduled++;
        struct client *cl = ready_pop(t);
        if (cl) {
            client_request(cl, (uint64_t)intended);
        } else if (t->bl_len < t->bl_cap) {
            t->backlog[(t->bl_head + t->bl_len) % t->bl_cap] = (uint64_t)intended;
            t->bl_len++;
        } else {
            t->st.errors[ERR_OVERLOAD]++;
        }
    }
}

/* --churn: closes registered idle connections at the asked rate (a client that goes away);
 * each one is opened again (TCP, TLS, 407, REGISTER with its token) by the retry timer. Their
 * failures count as measured errors, like any request's. */
static void churn_step(struct gthread *t)
{
    uint64_t now = now_us();
    if (t->churn_last_us == 0)
        t->churn_last_us = now;
    t->churn_due += (double)(now - t->churn_last_us) / 60e6 * t->b->o.churn_pct / 100.0 * t->ncl;
    t->churn_last_us = now;
    while (t->churn_due >= 1.0 && !t->done_reported) {
        struct client *cl = ready_pop(t);
        if (cl == NULL)
            break; /* none idle now: owed for the next tick */
        t->churn_due -= 1.0;
        t->st.churned++;
        cl->st = CS_CLOSING; /* ours: not counted as a lost connection */
        conn_close(cl->conn, CONN_CLOSE_LOCAL);
    }
}

static void tick_cb(struct loop *loop, struct loop_timer *timer)
{
    struct gthread *t = (struct gthread *)((char *)timer - offsetof(struct gthread, tick));
    int ph = atomic_load_explicit(&t->b->phase, memory_order_acquire);
    if (ph == PH_DONE)
        return;
    if (ph == PH_SETUP) {
        thread_setup_step(t);
    } else if (!t->measuring) {
        if (now_us() >= atomic_load(&t->b->t0_us))
            thread_begin_measure(t);
    }
    if (t->measuring) {
        if (t->b->o.mode == MODE_RATE) {
            thread_schedule(t);
            if (t->b->o.churn_pct > 0)
                churn_step(t);
        } else if (t->b->o.mode == MODE_STORM)
            storm_next(t);
        else if (t->b->o.mode == MODE_IDLE && !t->done_reported) {
            idle_send_due(t, t->b->o.keepalive_ms, &t->ka_issued, &t->ka_next, false);
            idle_send_due(t, t->b->o.ping_ms, &t->ping_issued, &t->ping_next, true);
        }
        thread_check_done(t);
    }
    /* Wake for the next send of the open loop, else every BENCH_TICK_MS for phase changes: an
     * idle generator must not burn the CPUs the edge is measured on. */
    uint64_t next = loop_now_ms(loop) + BENCH_TICK_MS;
    if (t->measuring && !t->sched_done && t->b->o.mode == MODE_RATE) {
        double intended = t->t0_us + (double)t->scheduled * t->period_us;
        uint64_t due = (uint64_t)(intended / 1000.0);
        if (due < next)
            next = due > loop_now_ms(loop) ? due : loop_now_ms(loop) + 1;
    } else if (ph == PH_MEASURE && !t->measuring) {
        next = loop_now_ms(loop) + 1;
    }
    loop_timer_arm(loop, timer, next, tick_cb);
}

/* Runs first on the thread (posted before start): arm the tick. */
static void thread_init_cb(struct loop *loop, void *arg)
{
    struct gthread *t = arg;
    loop_timer_arm(loop, &t->tick, loop_now_ms(loop), tick_cb);
}

/* ---- report ------------------------------------------------------------------------------- */

struct result {
    struct stats st;
    uint64_t status_total;
    double window_s, setup_s;
    double gen_cpu_us;
    struct proc_snap e0, e1, e2, u1, u2;
    long clk_tck;
    uint64_t t0_us; /* start of the measured window (CLOCK_MONOTONIC µs) */
};

static void merge_stats(struct stats *d, const struct stats *s)
{
    bench_hist_merge(&d->req, &s->req);
    bench_hist_merge(&d->req_ok, &s->req_ok);
    bench_hist_merge(&d->req_ok_wire, &s->req_ok_wire);
    bench_hist_merge(&d->chal, &s->chal);
    bench_hist_merge(&d->hs, &s->hs);
    bench_hist_merge(&d->setup, &s->setup);
    bench_hist_merge(&d->call, &s->call);
    d->call_ringing += s->call_ringing;
    d->uas_invite += s->uas_invite;
    d->uas_ack += s->uas_ack;
    d->uas_bye += s->uas_bye;
    d->uas_notify += s->uas_notify;
    d->uas_other += s->uas_other;
    d->sent += s->sent;
    d->ok += s->ok;
    d->done += s->done;
    d->setup_ok += s->setup_ok;
    d->backoffs += s->backoffs;
    d->retries += s->retries;
    d->handshakes += s->handshakes;
    d->churned += s->churned;
    d->resumed += s->resumed;
    d->fresh_used += s->fresh_used;
    d->fresh_wrapped += s->fresh_wrapped;
    d->ka_sent += s->ka_sent;
    d->ka_pongs += s->ka_pongs;
    d->ping_sent += s->ping_sent;
    d->ping_ok += s->ping_ok;
    for (int i = 0; i < ERR_COUNT; i++) {
        d->errors[i] += s->errors[i];
        d->setup_errors[i] += s->setup_errors[i];
    }
    for (int i = 0; i < BENCH_STATUS_CODES; i++)
        d->status[i] += s->status[i];
    if (s->first_us && (d->first_us == 0 || s->first_us < d->first_us))
        d->first_us = s->first_us;
    if (s->last_us > d->last_us)
        d->last_us = s->last_us;
    d->req_final += s->req_final;
    d->req_timeout += s->req_timeout;
    d->req_closed += s->req_closed;
    d->dup_final += s->dup_final;
    if (s->bad_first_us && (d->bad_first_us == 0 || s->bad_first_us < d->bad_first_us))
        d->bad_first_us = s->bad_first_us;
    if (s->bad_last_us > d->bad_last_us)
        d->bad_last_us = s->bad_last_us;
}

static uint64_t err_total(const uint64_t *e)
{
    uint64_t n = 0;
    for (int i = 0; i < ERR_COUNT; i++)
        n += e[i];
    return n;
}

/* CPU µs of a watched process between two snapshots: schedstat (ns) when present, else ticks. */
static double proc_cpu_us(const struct proc_snap *a, const struct proc_snap *b, long tck,
                          bool ticks)
{
    if (!a->ok || !b->ok)
        return -1;
    if (ticks || b->sched_ns == 0)
        return (double)(b->ticks - a->ticks) * 1e6 / (double)tck;
    return (double)(b->sched_ns - a->sched_ns) / 1e3;
}

static void print_hist_json(FILE *f, const char *name, const struct bench_hist *h)
{
    fprintf(f,
            "\"%s\":{\"count\":%" PRIu64 ",\"p50\":%" PRIu64 ",\"p90\":%" PRIu64 ",\"p99\":%" PRIu64
            ",\"p999\":%" PRIu64 ",\"max\":%" PRIu64 ",\"mean\":%.1f}",
            name, h->count, bench_hist_pct(h, 50), bench_hist_pct(h, 90), bench_hist_pct(h, 99),
            bench_hist_pct(h, 99.9), h->max, bench_hist_mean(h));
}

static void print_hist_human(const char *name, const struct bench_hist *h)
{
    if (h->count == 0)
        return;
    printf("  %-22s n=%-8" PRIu64 " p50 %6" PRIu64 "  p90 %6" PRIu64 "  p99 %7" PRIu64
           "  p99.9 %7" PRIu64 "  max %8" PRIu64 " µs\n",
           name, h->count, bench_hist_pct(h, 50), bench_hist_pct(h, 90), bench_hist_pct(h, 99),
           bench_hist_pct(h, 99.9), h->max);
}

/* Measured requests with no end yet (the run stopped at its hard deadline). */
static uint64_t req_pending(const struct stats *s)
{
    uint64_t ended = s->req_final + s->req_timeout + s->req_closed;
    return s->sent > ended ? s->sent - ended : 0;
}

/* A CLOCK_MONOTONIC time in µs as Unix ms (0 stays 0: "never"), for scripts that line the
 * run up with events they caused (a fault injected at a wall-clock time). */
static uint64_t mono_to_unix_ms(uint64_t mono_us)
{
    if (mono_us == 0)
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t real_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    uint64_t now = now_us();
    return (real_us - (now > mono_us ? now - mono_us : 0)) / 1000u;
}

static void report(const struct bench *b, const struct result *r)
{
    const struct bench_opts *o = &b->o;
    const struct stats *s = &r->st;
    uint64_t units = o->mode == MODE_STORM ? s->ok : o->mode == MODE_IDLE ? s->setup_ok : s->done;
    double per = units ? 1.0 / (double)units : 0;
    double e_cpu = proc_cpu_us(&r->e1, &r->e2, r->clk_tck, false);
    double e_cpu_t = proc_cpu_us(&r->e1, &r->e2, r->clk_tck, true);
    double u_cpu = proc_cpu_us(&r->u1, &r->u2, r->clk_tck, false);
    double tput = r->window_s > 0 ? (double)s->ok / r->window_s : 0;
    uint64_t nerr = err_total(s->errors);
    int64_t rss_d = (int64_t)r->e2.rss_kib - (int64_t)r->e0.rss_kib;
    int64_t pss_d = (int64_t)r->e2.pss_kib - (int64_t)r->e0.pss_kib;
    unsigned held = o->mode == MODE_IDLE ? (unsigned)s->setup_ok : 0;
    if (!o->quiet) {
        printf("sipedge-bench: mode=%s", mode_names[o->mode]);
        if (o->mode == MODE_RATE)
            printf(" rate=%.0f/s", o->rate);
        if (o->mode == MODE_CLOSED)
            printf(" concurrency=%u", o->concurrency);
        if (o->mode == MODE_STORM)
            printf(" storm=%u resume=%s seen-tokens=%s retry-ms=%u", o->storm,
                   o->resume ? "yes" : "no", o->seen_tokens ? "yes" : "no", o->retry_ms);
        if (o->mode == MODE_IDLE)
            printf(" idle=%u hold=%.0fs", o->idle, o->hold_s);
        printf(" conns=%u users=%u fresh=%.2f alg=%s threads=%u%s\n", o->conns, o->users, o->fresh,
               keys_alg_name(b->tok.alg), b->nth, o->direct ? " direct" : "");
        printf("  tokens: %u warm + %u fresh minted in %.2f s; fresh used %" PRIu64
               " (reused %" PRIu64 ")\n",
               b->tok.users, b->tok.users * b->tok.per_user, b->tok.mint_s, s->fresh_used,
               s->fresh_wrapped);
        printf("  setup: %" PRIu64 " registered in %.2f s, setup errors %" PRIu64 "\n", s->setup_ok,
               r->setup_s, err_total(s->setup_errors));
        printf("  measured: sent %" PRIu64 ", answered %" PRIu64 ", 200 OK %" PRIu64
               ", errors %" PRIu64 " in %.3f s -> %.1f/s\n",
               s->sent, s->done, s->ok, nerr, r->window_s, tput);
        if (o->retry_ms)
            printf("  retries: %" PRIu64 " failed attempts tried again\n", s->retries);
        printf("  errors:");
        for (int i = 0; i < ERR_COUNT; i++)
            printf(" %s=%" PRIu64 "/%" PRIu64, err_names[i], s->errors[i], s->setup_errors[i]);
        printf(" (measured/setup)\n  ended: final %" PRIu64 ", timeout %" PRIu64 ", closed %" PRIu64
               ", pending %" PRIu64 "; duplicate finals %" PRIu64 "\n  status:",
               s->req_final, s->req_timeout, s->req_closed, req_pending(s), s->dup_final);
        for (int i = 0; i < BENCH_STATUS_CODES; i++)
            if (s->status[i])
                printf(" %d=%" PRIu64, i, s->status[i]);
        printf("\n");
        if (o->calls) {
            print_hist_human("call set-up INVITE->200", &s->req);
            print_hist_human("call INVITE->BYE 200", &s->call);
            printf("  calls: 180 seen %" PRIu64 "; as callee: INVITE %" PRIu64 " ACK %" PRIu64
                   " BYE %" PRIu64 " NOTIFY %" PRIu64 " other %" PRIu64 "\n",
                   s->call_ringing, s->uas_invite, s->uas_ack, s->uas_bye, s->uas_notify,
                   s->uas_other);
        } else {
            print_hist_human("REGISTER+token", &s->req);
        }
        print_hist_human("REGISTER->407", &s->chal);
        print_hist_human("connect->TLS up", &s->hs);
        print_hist_human("connect->registered", &s->setup);
        if (s->handshakes)
            printf("  handshakes: %" PRIu64 " (%" PRIu64 " resumed)\n", s->handshakes, s->resumed);
        if (s->churned)
            printf("  churn: %" PRIu64 " registered connections closed and opened again\n",
                   s->churned);
        printf("  generator CPU: %.1f µs per unit (%.0f ms total)\n", r->gen_cpu_us * per,
               r->gen_cpu_us / 1e3);
        if (r->e1.ok)
            printf("  edge CPU: %.2f µs per unit (schedstat), %.2f µs (stat ticks); "
                   "RSS %" PRIu64 " KiB (start %" PRIu64 "), PSS %" PRIu64 " KiB\n",
                   e_cpu * per, e_cpu_t * per, r->e2.rss_kib, r->e0.rss_kib, r->e2.pss_kib);
        if (held)
            printf("  idle: %u held; edge RSS +%" PRId64 " KiB = %.2f KiB/conn, PSS +%" PRId64
                   " KiB = %.2f KiB/conn\n",
                   held, rss_d, (double)rss_d / held, pss_d, (double)pss_d / held);
        if (held && r->e1.ok && r->window_s > 0)
            printf("  idle traffic: keep-alives %" PRIu64 " sent, %" PRIu64
                   " pongs; OPTIONS %" PRIu64 " sent, %" PRIu64
                   " answered 200; edge CPU %.2f µs per keep-alive or ping, "
                   "%.1f ms per held client per hour\n",
                   s->ka_sent, s->ka_pongs, s->ping_sent, s->ping_ok,
                   s->ka_sent + s->ping_sent ? e_cpu / (double)(s->ka_sent + s->ping_sent) : 0,
                   e_cpu / held / r->window_s * 3600.0 / 1e3);
        if (r->u1.ok)
            printf("  ucmsim CPU: %.2f µs per unit\n", u_cpu * per);
        fflush(stdout);
    }
    if (!o->json)
        return;
    FILE *f = stdout;
    fprintf(f, "{\"tool\":\"sipedge-bench\",\"label\":\"%s\",\"mode\":\"%s\",",
            o->label ? o->label : "", mode_names[o->mode]);
    fprintf(f,
            "\"rate\":%.1f,\"concurrency\":%u,\"storm\":%u,\"idle\":%u,\"hold_s\":%.1f,"
            "\"tls_max\":\"%s\",\"resume\":%s,\"seen_tokens\":%s,\"direct\":%s,\"conns\":%u,"
            "\"users\":%u,\"fresh\":%."
            "3f,\"alg\":\"%s\","
            "\"threads\":%u,\"duration_s\":%.2f,\"keepalive_ms\":%u,\"ping_ms\":%u,",
            o->mode == MODE_RATE ? o->rate : 0, o->concurrency, o->storm, o->idle, o->hold_s,
            o->tls_max ? "1.2" : "1.3", o->resume ? "true" : "false",
            o->seen_tokens ? "true" : "false", o->direct ? "true" : "false", o->conns, o->users,
            o->fresh, keys_alg_name(b->tok.alg), b->nth, o->duration_s, o->keepalive_ms,
            o->ping_ms);
    fprintf(f,
            "\"sent\":%" PRIu64 ",\"answered\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"errors\":%" PRIu64
            ",\"window_s\":%.4f,\"throughput\":%.1f,\"setup_ok\":%" PRIu64
            ",\"setup_s\":%.3f,\"handshakes\":%" PRIu64 ",\"resumed\":%" PRIu64
            ",\"fresh_used\":%" PRIu64 ",\"fresh_reused\":%" PRIu64 ",\"churned\":%" PRIu64
            ",\"backoffs\":%" PRIu64 ",\"retries\":%" PRIu64 ",\"verify_reused\":%" PRIu64 ",",
            s->sent, s->done, s->ok, nerr, r->window_s, tput, s->setup_ok, r->setup_s,
            s->handshakes, s->resumed, s->fresh_used, s->fresh_wrapped, s->churned, s->backoffs,
            s->retries, tls_ctx_verifications_reused(b->tls));
    fprintf(f,
            "\"keepalives\":{\"sent\":%" PRIu64 ",\"pongs\":%" PRIu64 ",\"ping_sent\":%" PRIu64
            ",\"ping_ok\":%" PRIu64 "},",
            s->ka_sent, s->ka_pongs, s->ping_sent, s->ping_ok);
    fprintf(f,
            "\"ended\":{\"final\":%" PRIu64 ",\"timeout\":%" PRIu64 ",\"closed\":%" PRIu64
            ",\"pending\":%" PRIu64 ",\"dup_final\":%" PRIu64 "},\"t0_unix_ms\":%" PRIu64
            ",\"bad_first_unix_ms\":%" PRIu64 ",\"bad_last_unix_ms\":%" PRIu64 ",",
            s->req_final, s->req_timeout, s->req_closed, req_pending(s), s->dup_final,
            mono_to_unix_ms(r->t0_us), mono_to_unix_ms(s->bad_first_us),
            mono_to_unix_ms(s->bad_last_us));
    fprintf(f, "\"error_causes\":{");
    for (int i = 0; i < ERR_COUNT; i++)
        fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "", err_names[i], s->errors[i]);
    fprintf(f, "},\"setup_error_causes\":{");
    for (int i = 0; i < ERR_COUNT; i++)
        fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "", err_names[i], s->setup_errors[i]);
    fprintf(f, "},\"status\":{");
    bool first = true;
    for (int i = 0; i < BENCH_STATUS_CODES; i++)
        if (s->status[i]) {
            fprintf(f, "%s\"%d\":%" PRIu64, first ? "" : ",", i, s->status[i]);
            first = false;
        }
    fprintf(f,
            "},\"calls\":%s,\"uas\":{\"invite\":%" PRIu64 ",\"ack\":%" PRIu64 ",\"bye\":%" PRIu64
            ",\"notify\":%" PRIu64 ",\"other\":%" PRIu64 "},\"latency_us\":{",
            o->calls ? "true" : "false", s->uas_invite, s->uas_ack, s->uas_bye, s->uas_notify,
            s->uas_other);
    print_hist_json(f, o->calls ? "call_setup" : "register", &s->req);
    fputc(',', f);
    print_hist_json(f, "register_200", &s->req_ok);
    fputc(',', f);
    print_hist_json(f, "register_200_wire", &s->req_ok_wire);
    fputc(',', f);
    print_hist_json(f, "call", &s->call);
    fputc(',', f);
    print_hist_json(f, "challenge", &s->chal);
    fputc(',', f);
    print_hist_json(f, "handshake", &s->hs);
    fputc(',', f);
    print_hist_json(f, "setup", &s->setup);
    fprintf(f, "},\"units\":%" PRIu64 ",\"gen_cpu_us\":%.0f,\"gen_cpu_us_per_unit\":%.2f,", units,
            r->gen_cpu_us, r->gen_cpu_us * per);
    if (r->e1.ok)
        fprintf(f,
                "\"edge\":{\"cpu_us\":%.0f,\"cpu_us_per_unit\":%.3f,\"cpu_us_per_unit_ticks\":%.3f,"
                "\"rss_kib_start\":%" PRIu64 ",\"rss_kib\":%" PRIu64 ",\"pss_kib_start\":%" PRIu64
                ",\"pss_kib\":%" PRIu64 ",\"rss_kib_per_conn\":%.3f,\"pss_kib_per_conn\":%.3f},",
                e_cpu, e_cpu * per, e_cpu_t * per, r->e0.rss_kib, r->e2.rss_kib, r->e0.pss_kib,
                r->e2.pss_kib, held ? (double)rss_d / held : 0, held ? (double)pss_d / held : 0);
    if (r->u1.ok)
        fprintf(f, "\"ucmsim\":{\"cpu_us\":%.0f,\"cpu_us_per_unit\":%.3f},", u_cpu, u_cpu * per);
    fprintf(f, "\"clk_tck\":%ld}\n", r->clk_tck);
    fflush(f);
}

/* ---- main --------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(
        stderr,
        "usage: sipedge-bench --port P --ca CA.pem --key JWT_PRIV.pem [--kid K] MODE [options]\n"
        "       (or --hs256-secret FILE instead of --key: HS256 tokens)\n"
        "  modes: --rate R [--conns C]      open loop, R REGISTER/s on C connections\n"
        "           [--churn PCT]           ... PCT %% of the connections replaced a minute\n"
        "         --concurrency N           closed loop, N connections each one in flight\n"
        "         --storm N [--resume]      N new TLS connections + first REGISTER, then close\n"
        "           [--seen-tokens]         ... every client's token REGISTERed once before the\n"
        "                                   storm (returning clients: the edge knows the tokens)\n"
        "           [--retry-ms MS]         ... a failed attempt is tried again after 0.5-1.5 x "
        "MS\n"
        "                                   until the client has its 200 (or --duration ends)\n"
        "         --idle N --hold S         N registered connections held S seconds\n"
        "           [--keepalive-ms MS]     ... each sending a CRLFCRLF ping every MS (RFC 5626)\n"
        "           [--ping-ms MS]          ... each sending an OPTIONS to the edge every MS\n"
        "  --calls: with --rate/--concurrency a unit is a call (INVITE 180 200 ACK BYE 200) to\n"
        "           the next user's AoR (--call-to USER: to USER); with any mode requests to a\n"
        "           client (UCM calling it: INVITE, BYE, NOTIFY...) are answered and counted\n"
        "  tokens: --users U (default: conns)  --fresh-tokens F (0..1)  --fresh-pool N\n"
        "          --lifetime S  --user-prefix P\n"
        "  clients: --retry-after         a client answered 503 + Retry-After waits that long\n"
        "                                  before its next request (as RFC 3261 21.5.4 asks)\n"
        "  bounds: --duration S (5)  --max-requests N  --timeout-ms MS (5000)\n"
        "          --setup-timeout S (60)  --setup-concurrency N (256)\n"
        "  other:  --host IP (127.0.0.1)  --server-name N (localhost)  --tls-cert/--tls-key PEM\n"
        "          --sources N (client slot i connects from 127.(16+thread).x.y, x.y = i mod N + "
        "1:\n"
        "          clients from many addresses, as a real storm's; loopback --host only)\n"
        "          --direct (first REGISTER carries the token)  --threads T (1)  --tls-max "
        "1.2|1.3\n"
        "          --edge-pid PID[,PID...]  --ucm-pid PID  --ready-file F  --label L  --json  "
        "--quiet\n"
        "          --verify-each (walk the edge's certificate chain on every handshake; by "
        "default\n"
        "          a chain verified for --server-name is reused for 60 s: this one machine makes\n"
        "          the handshakes of thousands of devices; each still checks the edge's "
        "signature)\n");
}

static double parse_num(const char *s, const char *what, double lo, double hi)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !(v >= lo && v <= hi)) {
        fprintf(stderr, "sipedge-bench: %s: %s is not a number in [%g, %g]\n", what, s, lo, hi);
        exit(2);
    }
    return v;
}

static int parse_opts(int argc, char **argv, struct bench_opts *o)
{
    enum {
        O_HOST = 256,
        O_SOURCES,
        O_CALLS,
        O_CALL_TO,
        O_PORT,
        O_CA,
        O_SNI,
        O_TCERT,
        O_TKEY,
        O_KEY,
        O_KID,
        O_PREFIX,
        O_LABEL,
        O_READY,
        O_RATE,
        O_CONNS,
        O_CONC,
        O_STORM,
        O_RESUME,
        O_SEEN_TOKENS,
        O_IDLE,
        O_HOLD,
        O_KEEPALIVE,
        O_PING,
        O_USERS,
        O_FRESH,
        O_POOL,
        O_LIFE,
        O_CHURN,
        O_DUR,
        O_MAXREQ,
        O_TIMEOUT,
        O_SETUP_TO,
        O_SETUP_CONC,
        O_DIRECT,
        O_RETRY_AFTER,
        O_RETRY_MS,
        O_THREADS,
        O_EDGE,
        O_UCM,
        O_JSON,
        O_QUIET,
        O_TLS_MAX,
        O_VERIFY_EACH,
        O_HS,
        O_HELP
    };
    static const struct option lo[] = {
        {"host", 1, 0, O_HOST},
        {"sources", 1, 0, O_SOURCES},
        {"port", 1, 0, O_PORT},
        {"ca", 1, 0, O_CA},
        {"server-name", 1, 0, O_SNI},
        {"tls-cert", 1, 0, O_TCERT},
        {"tls-key", 1, 0, O_TKEY},
        {"key", 1, 0, O_KEY},
        {"kid", 1, 0, O_KID},
        {"user-prefix", 1, 0, O_PREFIX},
        {"label", 1, 0, O_LABEL},
        {"ready-file", 1, 0, O_READY},
        {"rate", 1, 0, O_RATE},
        {"conns", 1, 0, O_CONNS},
        {"concurrency", 1, 0, O_CONC},
        {"storm", 1, 0, O_STORM},
        {"resume", 0, 0, O_RESUME},
        {"seen-tokens", 0, 0, O_SEEN_TOKENS},
        {"idle", 1, 0, O_IDLE},
        {"hold", 1, 0, O_HOLD},
        {"keepalive-ms", 1, 0, O_KEEPALIVE},
        {"ping-ms", 1, 0, O_PING},
        {"users", 1, 0, O_USERS},
        {"fresh-tokens", 1, 0, O_FRESH},
        {"fresh-pool", 1, 0, O_POOL},
        {"lifetime", 1, 0, O_LIFE},
        {"churn", 1, 0, O_CHURN},
        {"duration", 1, 0, O_DUR},
        {"max-requests", 1, 0, O_MAXREQ},
        {"timeout-ms", 1, 0, O_TIMEOUT},
        {"setup-timeout", 1, 0, O_SETUP_TO},
        {"setup-concurrency", 1, 0, O_SETUP_CONC},
        {"direct", 0, 0, O_DIRECT},
        {"retry-after", 0, 0, O_RETRY_AFTER},
        {"retry-ms", 1, 0, O_RETRY_MS},
        {"threads", 1, 0, O_THREADS},
        {"edge-pid", 1, 0, O_EDGE},
        {"ucm-pid", 1, 0, O_UCM},
        {"json", 0, 0, O_JSON},
        {"quiet", 0, 0, O_QUIET},
        {"tls-max", 1, 0, O_TLS_MAX},
        {"verify-each", 0, 0, O_VERIFY_EACH},
        {"hs256-secret", 1, 0, O_HS},
        {"calls", 0, 0, O_CALLS},
        {"call-to", 1, 0, O_CALL_TO},
        {"help", 0, 0, O_HELP},
        {0},
    };
    *o = (struct bench_opts){.host = "127.0.0.1",
                             .server_name = "localhost",
                             .user_prefix = "sb",
                             .mode = MODE_COUNT,
                             .duration_s = 5,
                             .hold_s = 10,
                             .setup_timeout_s = 60,
                             .threads = 1,
                             .setup_concurrency = 256,
                             .max_requests = 100000000,
                             .timeout_ms = 5000,
                             .lifetime_s = 7200};
    int c;
    unsigned modes = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_HOST:
            o->host = optarg;
            break;
        case O_SOURCES:
            o->sources = (unsigned)parse_num(optarg, "--sources", 1, 65535);
            break;
        case O_PORT:
            o->port = (int)parse_num(optarg, "--port", 1, 65535);
            break;
        case O_CA:
            o->ca = optarg;
            break;
        case O_SNI:
            o->server_name = optarg;
            break;
        case O_TCERT:
            o->tls_cert = optarg;
            break;
        case O_TKEY:
            o->tls_key = optarg;
            break;
        case O_KEY:
            o->key = optarg;
            break;
        case O_KID:
            o->kid = optarg;
            break;
        case O_PREFIX:
            o->user_prefix = optarg;
            break;
        case O_LABEL:
            o->label = optarg;
            break;
        case O_READY:
            o->ready_file = optarg;
            break;
        case O_RATE:
            o->rate = parse_num(optarg, "--rate", 1, 1e7), o->mode = MODE_RATE, modes++;
            break;
        case O_CONNS:
            o->conns = (unsigned)parse_num(optarg, "--conns", 1, BENCH_MAX_CONNS);
            break;
        case O_CONC:
            o->concurrency = (unsigned)parse_num(optarg, "--concurrency", 1, BENCH_MAX_CONNS);
            break;
        case O_STORM:
            o->storm = (unsigned)parse_num(optarg, "--storm", 1, 10000000), o->mode = MODE_STORM;
            modes++;
            break;
        case O_RESUME:
            o->resume = true;
            break;
        case O_SEEN_TOKENS:
            o->seen_tokens = true;
            break;
        case O_IDLE:
            o->idle = (unsigned)parse_num(optarg, "--idle", 1, BENCH_MAX_CONNS);
            o->mode = MODE_IDLE, modes++;
            break;
        case O_HOLD:
            o->hold_s = parse_num(optarg, "--hold", 0, 86400);
            break;
        case O_KEEPALIVE:
            o->keepalive_ms = (unsigned)parse_num(optarg, "--keepalive-ms", 10, 3600000);
            break;
        case O_PING:
            o->ping_ms = (unsigned)parse_num(optarg, "--ping-ms", 10, 3600000);
            break;
        case O_USERS:
            o->users = (unsigned)parse_num(optarg, "--users", 1, 10000000);
            break;
        case O_FRESH:
            o->fresh = parse_num(optarg, "--fresh-tokens", 0, 1);
            break;
        case O_POOL:
            o->fresh_pool = (uint64_t)parse_num(optarg, "--fresh-pool", 1, 1e7);
            break;
        case O_CHURN:
            o->churn_pct = parse_num(optarg, "--churn", 0, 100);
            break;
        case O_LIFE:
            o->lifetime_s = (unsigned)parse_num(optarg, "--lifetime", 60, 1e8);
            break;
        case O_DUR:
            o->duration_s = parse_num(optarg, "--duration", 0.01, 86400);
            break;
        case O_MAXREQ:
            o->max_requests = (uint64_t)parse_num(optarg, "--max-requests", 1, 1e12);
            break;
        case O_TIMEOUT:
            o->timeout_ms = (unsigned)parse_num(optarg, "--timeout-ms", 1, 6e5);
            break;
        case O_SETUP_TO:
            o->setup_timeout_s = parse_num(optarg, "--setup-timeout", 1, 86400);
            break;
        case O_SETUP_CONC:
            o->setup_concurrency = (unsigned)parse_num(optarg, "--setup-concurrency", 1, 1e6);
            break;
        case O_DIRECT:
            o->direct = true;
            break;
        case O_RETRY_AFTER:
            o->retry_after = true;
            break;
        case O_RETRY_MS:
            o->retry_ms = (unsigned)parse_num(optarg, "--retry-ms", 1, 600000);
            break;
        case O_CALLS:
            o->calls = true;
            break;
        case O_CALL_TO:
            o->call_to = optarg;
            break;
        case O_THREADS:
            o->threads = (unsigned)parse_num(optarg, "--threads", 1, BENCH_MAX_THREADS);
            break;
        case O_EDGE:
            for (char *save = NULL, *tok = strtok_r(optarg, ",", &save); tok;
                 tok = strtok_r(NULL, ",", &save)) {
                if (o->n_edge_pids == BENCH_MAX_PIDS) {
                    fprintf(stderr, "sipedge-bench: --edge-pid: at most %d processes\n",
                            BENCH_MAX_PIDS);
                    exit(2);
                }
                o->edge_pids[o->n_edge_pids++] = (int)parse_num(tok, "--edge-pid", 1, 1e9);
            }
            o->edge_pid = o->edge_pids[0];
            break;
        case O_UCM:
            o->ucm_pid = (int)parse_num(optarg, "--ucm-pid", 1, 1e9);
            break;
        case O_JSON:
            o->json = true;
            break;
        case O_QUIET:
            o->quiet = true;
            break;
        case O_HS:
            o->hs_secret = optarg;
            break;
        case O_TLS_MAX:
            if (strcmp(optarg, "1.2") != 0 && strcmp(optarg, "1.3") != 0) {
                fprintf(stderr, "sipedge-bench: --tls-max is 1.2 or 1.3\n");
                return -1;
            }
            o->tls_max = strcmp(optarg, "1.2") == 0 ? 0x0303 : 0;
            break;
        case O_VERIFY_EACH:
            o->verify_each = true;
            break;
        default:
            usage();
            return -1;
        }
    }
    if (modes == 0 && o->concurrency) {
        o->mode = MODE_CLOSED; /* --concurrency alone: the closed loop */
        modes = 1;
    }
    if (o->port == 0 || o->ca == NULL || (o->key == NULL && o->hs_secret == NULL) || modes != 1) {
        if (modes > 1)
            fprintf(stderr, "sipedge-bench: give one of --rate, --concurrency, --storm, --idle\n");
        usage();
        return -1;
    }
    if ((o->keepalive_ms || o->ping_ms) && o->mode != MODE_IDLE) {
        fprintf(stderr, "sipedge-bench: --keepalive-ms and --ping-ms go with --idle\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct bench *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return 1;
    struct bench_opts *o = &b->o;
    if (parse_opts(argc, argv, o) < 0)
        return 2;

    switch (o->mode) {
    case MODE_RATE:
        if (o->conns == 0)
            o->conns = 100;
        break;
    case MODE_CLOSED:
        o->conns = o->concurrency;
        break;
    case MODE_STORM:
        if (o->concurrency == 0)
            o->concurrency = 64;
        o->conns = o->concurrency < o->storm ? o->concurrency : o->storm;
        break;
    case MODE_IDLE:
        o->conns = o->idle;
        break;
    default:
        usage();
        return 2;
    }
    if (o->seen_tokens && o->mode != MODE_STORM) {
        fprintf(stderr, "sipedge-bench: --seen-tokens needs --storm\n");
        return 2;
    }
    if (o->retry_ms && o->mode != MODE_STORM) {
        fprintf(stderr, "sipedge-bench: --retry-ms needs --storm\n");
        return 2;
    }
    if (o->churn_pct > 0 && o->mode != MODE_RATE) {
        fprintf(stderr, "sipedge-bench: --churn needs --rate\n");
        return 2;
    }
    if (o->threads > o->conns)
        o->threads = o->conns;
    if (o->users == 0)
        o->users = o->mode == MODE_STORM ? o->storm : o->conns;
    if (o->fresh > 0 && o->fresh_pool == 0) {
        double want = o->mode == MODE_RATE ? o->rate * o->duration_s : 20000.0;
        if (o->mode == MODE_STORM)
            want = o->storm;
        want = want * o->fresh + o->conns;
        if (want > (double)o->max_requests + o->conns)
            want = (double)o->max_requests + o->conns;
        o->fresh_pool = (uint64_t)want + 1;
    }

    /* one fd per connection plus the ring and friends */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur != RLIM_INFINITY && (uint64_t)o->conns + 64 > rl.rlim_cur) {
            fprintf(stderr,
                    "sipedge-bench: %u connections need more than RLIMIT_NOFILE %llu "
                    "(raise the hard limit: ulimit -Hn)\n",
                    o->conns, (unsigned long long)rl.rlim_cur);
            return 2;
        }
    }

    b->addr.sin_family = AF_INET;
    b->addr.sin_port = htons((uint16_t)o->port);
    if (inet_pton(AF_INET, o->host, &b->addr.sin_addr) != 1) {
        fprintf(stderr, "sipedge-bench: --host must be an IPv4 address\n");
        return 2;
    }
    char err[256] = "";
    struct tls_client_opts to = {.cert_file = o->tls_cert,
                                 .key_file = o->tls_key,
                                 .ca_file = o->ca,
                                 .max_version = o->tls_max,
                                 .reuse_verification_s = o->verify_each ? 0 : 60};
    if (tls_client_ctx_new(&to, &b->tls, err, sizeof(err)) < 0) {
        fprintf(stderr, "sipedge-bench: TLS: %s\n", err);
        return 2;
    }
    if (tokens_mint(b) < 0)
        return 2;

    struct loop_cfg lc;
    loop_cfg_default(&lc);
    b->nth = o->threads;
    /* a storm client starts its next connection while its last one may still be closing */
    lc.max_conns = (o->mode == MODE_STORM ? 2 : 1) * (o->conns / b->nth) + 64;
    lc.queue_depth = 1024;
    lc.buf_count = 1024;
    b->group = loop_group_new(&lc, b->nth);
    if (b->group == NULL) {
        fprintf(stderr, "sipedge-bench: loop_group_new: %s\n", strerror(errno));
        return 1;
    }
    uint64_t budget_total = o->mode == MODE_STORM ? o->storm : o->max_requests;
    unsigned base = 0;
    for (unsigned i = 0; i < b->nth; i++) {
        struct gthread *t = calloc(1, sizeof(*t));
        if (t == NULL)
            return 1;
        b->th[i] = t;
        t->b = b;
        t->idx = i;
        t->loop = loop_group_loop(b->group, i);
        t->ncl = o->conns / b->nth + (i < o->conns % b->nth);
        t->cl = calloc(t->ncl, sizeof(*t->cl));
        t->ready = calloc(t->ncl, sizeof(*t->ready));
        t->bl_cap = o->mode == MODE_RATE ? (unsigned)(o->rate / b->nth * 2) + 64 : 1;
        t->backlog = calloc(t->bl_cap, sizeof(*t->backlog));
        if (!t->cl || !t->ready || !t->backlog)
            return 1;
        t->budget = budget_total / b->nth + (i < budget_total % b->nth);
        t->rng =
            0x9e3779b97f4a7c15ull ^ ((uint64_t)(i + 1) * 0x100000001b3ull) ^ (uint64_t)getpid();
        tls_peer_init(&t->peer, o->server_name);
        if (o->resume) {
            t->peers = calloc(t->ncl, sizeof(*t->peers));
            if (t->peers == NULL)
                return 1;
            for (unsigned k = 0; k < t->ncl; k++)
                tls_peer_init(&t->peers[k], o->server_name);
        }
        for (unsigned k = 0; k < t->ncl; k++) {
            struct client *cl = &t->cl[k];
            cl->t = t;
            cl->idx = base + k;
            cl->user = (base + k) % o->users;
            cl->prime = k;
        }
        base += t->ncl;
        /* storm: no setup, except with --resume one warm-up connection per client (a ticket,
         * and its token REGISTERed), or with --seen-tokens alone a few connections that
         * REGISTER every client's token in turn */
        if (o->mode != MODE_STORM || o->resume)
            t->setup_target = t->ncl;
        else if (o->seen_tokens)
            t->setup_target = t->ncl < o->setup_concurrency / b->nth + 1
                                  ? t->ncl
                                  : o->setup_concurrency / b->nth + 1;
        else
            t->setup_target = 0;
        loop_post(t->loop, thread_init_cb, t);
    }

    struct result r = {.clk_tck = sysconf(_SC_CLK_TCK)};
    r.e0 = edge_snap(o);
    uint64_t t_setup = now_us();
    if (loop_group_start(b->group, false) < 0) {
        fprintf(stderr, "sipedge-bench: cannot start the threads\n");
        return 1;
    }
    uint64_t deadline = t_setup + (uint64_t)(o->setup_timeout_s * 1e6);
    uint64_t give_up = 3ull * o->conns + 100; /* e.g. every token refused: retrying is moot */
    while (atomic_load(&b->setup_threads_done) < b->nth && now_us() < deadline &&
           atomic_load(&b->setup_errs) < give_up)
        usleep(BENCH_CTRL_SLEEP_MS * 1000);
    bool setup_complete = atomic_load(&b->setup_threads_done) == b->nth;
    r.setup_s = (double)(now_us() - t_setup) / 1e6;
    if (!setup_complete)
        fprintf(stderr,
                "sipedge-bench: setup did not finish (%.1f s, %" PRIu64
                " setup errors); measuring what is up\n",
                r.setup_s, (uint64_t)atomic_load(&b->setup_errs));

    r.e1 = edge_snap(o);
    r.u1 = proc_snap(o->ucm_pid);
    double cpu0 = self_cpu_us();
    uint64_t t0 = now_us() + 2000;
    r.t0_us = t0;
    atomic_store(&b->t0_us, t0);
    atomic_store_explicit(&b->phase, PH_MEASURE, memory_order_release);
    if (o->ready_file) {
        FILE *f = fopen(o->ready_file, "w");
        if (f) {
            fprintf(f, "%d\n", (int)getpid());
            fclose(f);
        }
    }
    double dur = o->mode == MODE_IDLE ? o->hold_s : o->duration_s;
    uint64_t hard = t0 + (uint64_t)(dur * 1e6) + 2ull * o->timeout_ms * 1000u + 5000000u;
    if (atomic_load(&b->setup_errs) >= give_up)
        hard = t0; /* nothing works: report the setup errors, measure nothing */
    while (atomic_load(&b->measure_threads_done) < b->nth && now_us() < hard)
        usleep(BENCH_CTRL_SLEEP_MS * 1000);
    uint64_t t_end = now_us();
    r.e2 = edge_snap(o);
    r.u2 = proc_snap(o->ucm_pid);
    r.gen_cpu_us = self_cpu_us() - cpu0;
    atomic_store(&b->phase, PH_DONE);
    loop_group_stop(b->group);

    for (unsigned i = 0; i < b->nth; i++)
        merge_stats(&r.st, &b->th[i]->st);
    uint64_t from = o->mode == MODE_STORM && r.st.first_us ? r.st.first_us : t0;
    uint64_t until = r.st.last_us > from ? r.st.last_us : t_end;
    if (o->mode == MODE_IDLE)
        until = t_end;
    r.window_s = (double)(until - from) / 1e6;
    report(b, &r);

    loop_group_free(b->group);
    for (unsigned i = 0; i < b->nth; i++) {
        struct gthread *t = b->th[i];
        for (unsigned k = 0; k < t->ncl; k++)
            free(t->cl[k].in);
        tls_peer_deinit(&t->peer);
        for (unsigned k = 0; t->peers && k < t->ncl; k++)
            tls_peer_deinit(&t->peers[k]);
        free(t->peers);
        free(t->cl);
        free(t->ready);
        free(t->backlog);
        free(t);
    }
    tls_ctx_unref(b->tls);
    EVP_PKEY_free(b->tok.priv);
    OPENSSL_cleanse(b->tok.secret, sizeof(b->tok.secret));
    free(b->tok.arena);
    free(b->tok.warm);
    free(b->tok.fresh);
    free((void *)b->tok.next);
    bool ok = setup_complete && err_total(r.st.errors) == 0 &&
              (o->mode == MODE_IDLE ? r.st.setup_ok > 0 : r.st.ok > 0);
    free(b);
    return ok ? 0 : 1;
}
