// SPDX-License-Identifier: MIT
// bench-tls: CPU per full and per resumed TLS handshake (server and client side measured
// separately with CLOCK_THREAD_CPUTIME_ID), P-256 and RSA-2048 server keys, TLS 1.3 and 1.2, and
// heap bytes per idle established connection (mallinfo2), and CPU per small (1.4 KB) record each
// way over an established pair (write, feed, read, consume). Prints medians.
// Usage: scripts/make-pki.sh DIR && bench-tls DIR [iterations] [connections]
// The TLS 1.3 suites are also measured side by side, interleaved round by round.
// (BENCH_TLS_ONLY=p256-13|p256-12|rsa-13|rsa-12|records|lanes: that row only, e.g. under
// valgrind --tool=callgrind --toggle-collect='server_*' for the server side's instructions)
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <string.h>
#include <time.h>

#include "tls/tls.h"

static const char *pki;

static const char *path(const char *name)
{
    static char buf[8][512];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof(buf[0]), "%s/%s", pki, name);
    return p;
}

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pump(struct tls_conn *from, struct tls_conn *to)
{
    struct slice s = tls_conn_out(from);
    if (s.len && tls_conn_feed(to, s.base, s.len) == 0)
        tls_conn_out_consume(from, s.len);
}

/* The server side's calls, each in a function of its own so that a profiler can collect the
 * server alone (valgrind --tool=callgrind --toggle-collect=server_*). */
static __attribute__((noinline)) int server_step(struct tls_conn *s)
{
    return tls_conn_handshake(s);
}

static __attribute__((noinline)) struct tls_conn *server_new(struct tls_ctx *ctx)
{
    return tls_conn_new_server(ctx);
}

static __attribute__((noinline)) void server_free(struct tls_conn *s)
{
    tls_conn_free(s);
}

/* Handshake a pair; adds each side's CPU time to *ns_c / *ns_s. Returns 0 on success. */
static int handshake(struct tls_conn *c, struct tls_conn *s, uint64_t *ns_c, uint64_t *ns_s)
{
    char buf[64];
    for (int i = 0; i < 16; i++) {
        uint64_t t0 = cpu_ns();
        int rc = tls_conn_handshake(c);
        if (tls_conn_established(c))
            tls_conn_read(c, buf, sizeof(buf)); /* TLS 1.3 tickets arrive after the handshake */
        uint64_t t1 = cpu_ns();
        pump(c, s);
        uint64_t t2 = cpu_ns();
        int rs = server_step(s);
        uint64_t t3 = cpu_ns();
        pump(s, c);
        *ns_c += t1 - t0;
        *ns_s += t3 - t2;
        if ((rc < 0 && rc != TLS_WANT_INPUT) || (rs < 0 && rs != TLS_WANT_INPUT))
            return -1;
        if (rc == 0 && rs == 0 && tls_conn_out_len(c) == 0 && tls_conn_out_len(s) == 0) {
            t0 = cpu_ns();
            tls_conn_read(c, buf, sizeof(buf)); /* the server's last flight: tickets */
            *ns_c += cpu_ns() - t0;
            return 0;
        }
    }
    return -1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double median_us(uint64_t *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_u64);
    return (n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2) / 1000.0;
}

static struct tls_ctx *mk_server(const char *crt, const char *key, const char *client_ca)
{
    struct tls_server_opts o = {.cert_file = path(crt),
                                .key_file = path(key),
                                .client_ca_file = client_ca ? path(client_ca) : NULL,
                                .require_client_cert = client_ca != NULL};
    struct tls_ctx *ctx;
    char err[256];
    if (tls_server_ctx_new(&o, &ctx, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench-tls: %s\n", err);
        exit(1);
    }
    return ctx;
}

static struct tls_ctx *mk_client(bool with_cert, uint16_t maxv)
{
    struct tls_client_opts o = {.cert_file = with_cert ? path("client.crt") : NULL,
                                .key_file = with_cert ? path("client.key") : NULL,
                                .ca_file = path("ca.crt"),
                                .max_version = maxv};
    struct tls_ctx *ctx;
    char err[256];
    if (tls_client_ctx_new(&o, &ctx, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench-tls: %s\n", err);
        exit(1);
    }
    return ctx;
}

static void bench_handshakes(const char *label, const char *crt, const char *key, uint16_t maxv,
                             int iters)
{
    struct tls_ctx *s = mk_server(crt, key, NULL), *c = mk_client(false, maxv);
    struct tls_peer peer;
    tls_peer_init(&peer, "localhost");
    uint64_t *v[4];
    for (int k = 0; k < 4; k++)
        v[k] = calloc((size_t)iters, sizeof(uint64_t));
    for (int resumed = 0; resumed < 2; resumed++) {
        for (int i = 0; i < iters + 1; i++) {
            if (!resumed || i == 0)
                tls_peer_forget_session(&peer);
            struct tls_conn *cc = tls_conn_new_client(c, &peer), *sc = server_new(s);
            uint64_t nc = 0, ns = 0;
            if (handshake(cc, sc, &nc, &ns) != 0 || tls_conn_resumed(sc) != (resumed && i > 0)) {
                fprintf(stderr,
                        "bench-tls: %s handshake failed (resumed %d, i %d, server resumed %d, est "
                        "%d %d)\n",
                        label, resumed, i, tls_conn_resumed(sc), tls_conn_established(cc),
                        tls_conn_established(sc));
                exit(1);
            }
            if (i > 0) { /* the first round warms up (and makes the session to resume) */
                v[resumed * 2][i - 1] = nc;
                v[resumed * 2 + 1][i - 1] = ns;
            }
            tls_conn_free(cc);
            server_free(sc);
        }
    }
    printf("%-22s %14.1f %14.1f %14.1f %14.1f\n", label, median_us(v[1], iters),
           median_us(v[0], iters), median_us(v[3], iters), median_us(v[2], iters));
    for (int k = 0; k < 4; k++)
        free(v[k]);
    tls_peer_deinit(&peer);
    tls_ctx_unref(s);
    tls_ctx_unref(c);
}

/* ---- lanes: two threads handshaking at once on one server context, with and without lanes ---- */

struct lanes_arg {
    struct tls_ctx *s;
    unsigned lane;
    uint16_t maxv;
    bool resume;
    int n;
    uint64_t *v; /* server CPU per handshake, ns */
    pthread_barrier_t *start;
};

static void *lanes_thread(void *p)
{
    struct lanes_arg *a = p;
    struct tls_ctx *c = mk_client(false, a->maxv);
    struct tls_peer peer;
    tls_peer_init(&peer, "localhost");
    pthread_barrier_wait(a->start);
    for (int i = 0; i < a->n + 1; i++) {
        if (!a->resume)
            tls_peer_forget_session(&peer);
        struct tls_conn *cc = tls_conn_new_client(c, &peer);
        struct tls_conn *sc = tls_conn_new_server_lane(a->s, a->lane);
        uint64_t nc = 0, ns = 0;
        if (handshake(cc, sc, &nc, &ns) != 0 || tls_conn_resumed(sc) != (a->resume && i > 0)) {
            fprintf(stderr, "bench-tls: lanes handshake failed (resumed %d, i %d)\n", a->resume, i);
            exit(1);
        }
        if (i > 0) /* the first one warms up and makes the session to resume */
            a->v[i - 1] = ns;
        tls_conn_free(cc);
        tls_conn_free(sc);
    }
    tls_peer_deinit(&peer);
    tls_ctx_unref(c);
    return NULL;
}

/* Server CPU per handshake with two threads handshaking at once, each with its own client, on
 * one server context without lanes and on one with a lane per thread; ROUNDS rounds alternate
 * the two so that the machine's noise falls on both alike. */
static void bench_lanes(int iters)
{
    enum { ROUNDS = 8, THREADS = 2 };
    static const struct {
        const char *label;
        uint16_t maxv;
        bool resume;
    } kinds[] = {
        {"TLS1.3 full", 0, false},
        {"TLS1.3 resumed", 0, true},
        {"TLS1.2 full", 0x0303, false},
        {"TLS1.2 resumed", 0x0303, true},
    };
    int per = iters / ROUNDS > 0 ? iters / ROUNDS : 1;
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        uint64_t *v[2];
        int got[2] = {0, 0};
        for (int cfg = 0; cfg < 2; cfg++)
            v[cfg] = calloc((size_t)(per * ROUNDS * THREADS), sizeof(uint64_t));
        for (int r = 0; r < ROUNDS; r++) {
            for (int cfg = 0; cfg < 2; cfg++) {
                struct tls_server_opts o = {.cert_file = path("server.crt"),
                                            .key_file = path("server.key"),
                                            .lanes = cfg ? THREADS : 0};
                struct tls_ctx *s;
                char err[256];
                if (tls_server_ctx_new(&o, &s, err, sizeof(err)) != 0 ||
                    tls_ctx_lanes(s) != (cfg ? THREADS : 0u)) {
                    fprintf(stderr, "bench-tls: lanes server context: %s\n", err);
                    exit(1);
                }
                pthread_barrier_t start;
                pthread_barrier_init(&start, NULL, THREADS);
                pthread_t th[THREADS];
                struct lanes_arg a[THREADS];
                for (unsigned t = 0; t < THREADS; t++) {
                    a[t] = (struct lanes_arg){s,
                                              t,
                                              kinds[k].maxv,
                                              kinds[k].resume,
                                              per,
                                              v[cfg] + got[cfg] + (int)t * per,
                                              &start};
                    pthread_create(&th[t], NULL, lanes_thread, &a[t]);
                }
                for (unsigned t = 0; t < THREADS; t++)
                    pthread_join(th[t], NULL);
                got[cfg] += per * THREADS;
                pthread_barrier_destroy(&start);
                tls_ctx_unref(s);
            }
        }
        double shared = median_us(v[0], got[0]), lanes = median_us(v[1], got[1]);
        printf("%-22s %14.1f %14.1f %10.2f\n", kinds[k].label, shared, lanes, lanes / shared);
        free(v[0]);
        free(v[1]);
    }
}

enum { RECORDS_PER_ROUND = 64, RECORD_LEN = 1400 };

/* One round of RECORDS_PER_ROUND 1.4 KB records over an established pair, alternating
 * directions, each written (writev + out + consume on the sender) and read (feed + read on the
 * receiver); returns the CPU per record, ns. */
static uint64_t records_round(struct tls_conn *cl, struct tls_conn *sv)
{
    static char msg[RECORD_LEN], got[4096];
    memset(msg, 'r', sizeof(msg));
    uint64_t t0 = cpu_ns();
    for (int k = 0; k < RECORDS_PER_ROUND; k++) {
        struct tls_conn *from = k % 2 ? sv : cl, *to = k % 2 ? cl : sv;
        struct iovec iov = {.iov_base = msg, .iov_len = sizeof(msg)};
        if (tls_conn_writev(from, &iov, 1) != (ssize_t)sizeof(msg)) {
            fprintf(stderr, "bench-tls: records write failed\n");
            exit(1);
        }
        pump(from, to);
        if (tls_conn_read(to, got, sizeof(got)) != (ssize_t)sizeof(msg)) {
            fprintf(stderr, "bench-tls: records read failed\n");
            exit(1);
        }
    }
    return (cpu_ns() - t0) / RECORDS_PER_ROUND;
}

/* The TLS 1.3 suites side by side: a server context forced to each suite, and each round does
 * one full handshake, one resumed handshake and 64 records (1.4 KB, alternating directions) with
 * each in turn, so that the machine's noise falls on all of them alike. Server CPU per handshake
 * (medians), both sides' CPU per record. */
static void bench_suites(int iters)
{
    static const char *const suites[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                         "TLS_CHACHA20_POLY1305_SHA256"};
    enum { N = sizeof(suites) / sizeof(suites[0]) };
    struct tls_ctx *s[N], *c = mk_client(false, 0);
    struct tls_peer peer[N];
    struct tls_conn *cl[N], *sv[N];
    uint64_t *v[N][3];
    for (int k = 0; k < N; k++) {
        struct tls_server_opts o = {.cert_file = path("server.crt"),
                                    .key_file = path("server.key"),
                                    .ciphersuites = suites[k]};
        char err[256];
        if (tls_server_ctx_new(&o, &s[k], err, sizeof(err)) != 0) {
            fprintf(stderr, "bench-tls: %s\n", err);
            exit(1);
        }
        tls_peer_init(&peer[k], "localhost");
        cl[k] = tls_conn_new_client(c, &peer[k]);
        sv[k] = tls_conn_new_server(s[k]);
        uint64_t a = 0, b = 0;
        if (handshake(cl[k], sv[k], &a, &b) != 0 || strcmp(tls_conn_cipher(sv[k]), suites[k])) {
            fprintf(stderr, "bench-tls: %s: handshake failed\n", suites[k]);
            exit(1);
        }
        for (int m = 0; m < 3; m++)
            v[k][m] = calloc((size_t)iters, sizeof(uint64_t));
    }
    for (int i = 0; i < iters; i++) {
        for (int k = 0; k < N; k++) {
            for (int resumed = 0; resumed < 2; resumed++) {
                if (!resumed)
                    tls_peer_forget_session(&peer[k]);
                struct tls_conn *cc = tls_conn_new_client(c, &peer[k]), *sc = server_new(s[k]);
                uint64_t nc = 0, ns = 0;
                if (handshake(cc, sc, &nc, &ns) != 0 || tls_conn_resumed(sc) != resumed) {
                    fprintf(stderr, "bench-tls: %s: handshake failed (resumed %d)\n", suites[k],
                            resumed);
                    exit(1);
                }
                v[k][resumed][i] = ns;
                tls_conn_free(cc);
                server_free(sc);
            }
            v[k][2][i] = records_round(cl[k], sv[k]);
        }
    }
    for (int k = 0; k < N; k++) {
        printf("%-30s %14.1f %14.1f %14.0f\n", suites[k], median_us(v[k][0], iters),
               median_us(v[k][1], iters), median_us(v[k][2], iters) * 1000.0);
        for (int m = 0; m < 3; m++)
            free(v[k][m]);
        tls_conn_free(cl[k]);
        tls_conn_free(sv[k]);
        tls_peer_deinit(&peer[k]);
        tls_ctx_unref(s[k]);
    }
    tls_ctx_unref(c);
}

/* Heap bytes per idle established connection on one side: make n pairs, exchange one small
 * message each way, free the other side's conns, divide the growth by n. */
static void bench_memory(const char *label, bool mtls, uint16_t maxv, int n)
{
    struct tls_ctx *s = mk_server("server.crt", "server.key", mtls ? "ca.crt" : NULL);
    struct tls_ctx *c = mk_client(mtls, maxv);
    struct tls_peer peer;
    tls_peer_init(&peer, "localhost");
    struct tls_conn **sv = calloc((size_t)n, sizeof(*sv)), **cl = calloc((size_t)n, sizeof(*cl));
    double per[2];
    for (int side = 0; side < 2; side++) {
        malloc_trim(0);
        size_t before = mallinfo2().uordblks;
        for (int i = 0; i < n; i++) {
            uint64_t a = 0, b = 0;
            tls_peer_forget_session(&peer);
            cl[i] = tls_conn_new_client(c, &peer);
            sv[i] = tls_conn_new_server(s);
            if (handshake(cl[i], sv[i], &a, &b) != 0) {
                fprintf(stderr, "bench-tls: memory handshake failed\n");
                exit(1);
            }
            char buf[600];
            struct iovec iov = {buf, 500};
            memset(buf, 'x', sizeof(buf));
            tls_conn_writev(cl[i], &iov, 1);
            pump(cl[i], sv[i]);
            while (tls_conn_read(sv[i], buf, sizeof(buf)) > 0)
                ;
            tls_conn_writev(sv[i], &iov, 1);
            pump(sv[i], cl[i]);
            while (tls_conn_read(cl[i], buf, sizeof(buf)) > 0)
                ;
        }
        tls_peer_forget_session(&peer);
        for (int i = 0; i < n; i++) {
            tls_conn_free(side == 0 ? cl[i] : sv[i]); /* keep the side being measured */
            (side == 0 ? cl : sv)[i] = NULL;
        }
        malloc_trim(0);
        size_t after = mallinfo2().uordblks;
        per[side] = ((double)after - (double)before) / n;
        for (int i = 0; i < n; i++) {
            tls_conn_free(sv[i]);
            tls_conn_free(cl[i]);
            sv[i] = cl[i] = NULL;
        }
    }
    printf("%-34s %12.0f %12.0f\n", label, per[0], per[1]);
    free(sv);
    free(cl);
    tls_peer_deinit(&peer);
    tls_ctx_unref(s);
    tls_ctx_unref(c);
}

/* CPU per 1.4 KB record over an established TLS 1.3 pair (AES-128-GCM): writev + out + consume on
 * the sender, feed + read on the receiver, both timed; median over `iters` rounds of 64 records.
 * Two pairs, interleaved round by round: one on the thread's shared AEAD contexts (keyed anew for
 * each record: every client connection), one whose connections keep their own (own_aead: the
 * edge's UCM connections). */
static void bench_records(int iters)
{
    struct tls_ctx *s[2], *c[2];
    struct tls_peer peer[2];
    struct tls_conn *cl[2], *sv[2];
    uint64_t *v[2];
    for (int k = 0; k < 2; k++) {
        struct tls_server_opts so = {
            .cert_file = path("server.crt"), .key_file = path("server.key"), .own_aead = k};
        struct tls_client_opts co = {.ca_file = path("ca.crt"), .own_aead = k};
        char err[256];
        if (tls_server_ctx_new(&so, &s[k], err, sizeof(err)) != 0 ||
            tls_client_ctx_new(&co, &c[k], err, sizeof(err)) != 0) {
            fprintf(stderr, "bench-tls: %s\n", err);
            exit(1);
        }
        tls_peer_init(&peer[k], "localhost");
        cl[k] = tls_conn_new_client(c[k], &peer[k]);
        sv[k] = tls_conn_new_server(s[k]);
        uint64_t hc = 0, hs = 0;
        if (cl[k] == NULL || sv[k] == NULL || handshake(cl[k], sv[k], &hc, &hs) != 0) {
            fprintf(stderr, "bench-tls: records handshake failed\n");
            exit(1);
        }
        v[k] = calloc((size_t)iters, sizeof(uint64_t));
    }
    for (int i = 0; i < iters; i++)
        for (int k = 0; k < 2; k++)
            v[k][i] = records_round(cl[k], sv[k]);
    static const char *const label[2] = {"TLS1.3 AES-GCM, 1,400 B record",
                                         "the same, own AEAD contexts"};
    for (int k = 0; k < 2; k++) {
        printf("%-34s %12.0f\n", label[k], median_us(v[k], iters) * 1000.0);
        free(v[k]);
        tls_conn_free(cl[k]);
        tls_conn_free(sv[k]);
        tls_peer_deinit(&peer[k]);
        tls_ctx_unref(s[k]);
        tls_ctx_unref(c[k]);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr,
                "usage: %s PKI_DIR [iterations=400] [connections=2000]\n"
                "  (make PKI_DIR with scripts/make-pki.sh PKI_DIR)\n",
                argv[0]);
        return 2;
    }
    pki = argv[1];
    int iters = argc > 2 ? atoi(argv[2]) : 400, conns = argc > 3 ? atoi(argv[3]) : 2000;
    if (iters < 1 || conns < 1)
        return 2;
    printf("CPU per handshake, median of %d, microseconds (thread CPU time)\n", iters);
    printf("%-22s %14s %14s %14s %14s\n", "server key / version", "full server", "full client",
           "resumed server", "resumed client");
    /* BENCH_TLS_ONLY=p256-13 (or p256-12, rsa-13, rsa-12): that row only, for profilers */
    const char *only = getenv("BENCH_TLS_ONLY");
    static const struct {
        const char *id, *label, *crt, *key;
        uint16_t maxv;
    } rows[] = {
        {"p256-13", "P-256 TLS1.3", "server.crt", "server.key", 0},
        {"p256-12", "P-256 TLS1.2", "server.crt", "server.key", 0x0303},
        {"rsa-13", "RSA-2048 TLS1.3", "server-rsa.crt", "server-rsa.key", 0},
        {"rsa-12", "RSA-2048 TLS1.2", "server-rsa.crt", "server-rsa.key", 0x0303},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (only == NULL || strcmp(only, rows[i].id) == 0)
            bench_handshakes(rows[i].label, rows[i].crt, rows[i].key, rows[i].maxv, iters);
    fflush(stdout);
    if (only == NULL || strcmp(only, "records") == 0) {
        printf("\nCPU per record, write + read (both sides), median of %d rounds of 64, ns\n",
               iters);
        bench_records(iters);
    }
    if (only == NULL || strcmp(only, "lanes") == 0) {
        printf("\nTwo threads handshaking at once on one server context (P-256): server CPU per "
               "handshake, µs, medians of %d (both threads), without and with a lane per thread\n",
               2 * (iters / 8 > 0 ? iters / 8 : 1) * 8);
        printf("%-22s %14s %14s %10s\n", "handshake", "shared", "lanes", "ratio");
        bench_lanes(iters);
    }
    if (only != NULL)
        return 0;
    printf("\nTLS 1.3 suites, interleaved (P-256 server): server CPU per handshake (µs, medians of "
           "%d) and CPU per 1,400 B record, write + read (ns)\n",
           iters);
    printf("%-30s %14s %14s %14s\n", "suite", "full server", "resumed server", "record");
    bench_suites(iters);
    printf("\nHeap bytes per idle established connection (mallinfo2, %d connections)\n", conns);
    printf("%-34s %12s %12s\n", "case", "server side", "client side");
    bench_memory("TLS1.3, no client cert", false, 0, conns);
    bench_memory("TLS1.3, mutual TLS (client cert)", true, 0, conns);
    bench_memory("TLS1.2, no client cert", false, 0x0303, conns);
    bench_memory("TLS1.2, mutual TLS (client cert)", true, 0x0303, conns);
    return 0;
}
