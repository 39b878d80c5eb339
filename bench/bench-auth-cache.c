// SPDX-License-Identifier: MIT
// Auth cache benchmark: L1 hit cost for 800-byte tokens (hash + lookup, and the whole auth_check),
// and L2 hit latency / CPU per lookup against a real redis-server. Prints medians.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "auth/auth.h"

#define TOKEN_LEN 800
#define NTOK      1024

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CPU time of this thread: the micro-benchmarks below measure work, not the time the scheduler
 * gave to other processes (a shared machine under load inflates wall-clock figures severalfold). */
static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Fake verifier: "ok|<user>|<exp>|<jti or ->|<padding>" is valid. Costs next to nothing, so the
 * figures below are the cache's own. */
static enum jwt_reason bench_verify(void *ctx, const char *tok, size_t len, int64_t now,
                                    struct jwt_result *out)
{
    char buf[64];
    size_t n = len < sizeof(buf) - 1 ? len : sizeof(buf) - 1;
    memcpy(buf, tok, n);
    buf[n] = '\0';
    long long exp = 0;
    char user[32] = "", jti[32] = "";
    (*(long *)ctx)++;
    if (sscanf(buf, "ok|%31[^|]|%lld|%31[^|]|", user, &exp, jti) != 3)
        return out->reason = JWT_E_BAD_SIGNATURE;
    out->reason = JWT_OK;
    out->user_len = (size_t)snprintf(out->user, sizeof(out->user), "%s", user);
    snprintf(out->jti, sizeof(out->jti), "%s", strcmp(jti, "-") ? jti : "");
    out->exp = exp;
    out->scope_bits = 1;
    return JWT_OK;
}

static char toks[NTOK][TOKEN_LEN + 1];

static void make_tokens(const char *tag, bool with_jti)
{
    long long exp = time(NULL) + 3600;
    uint64_t salt = cache_random_seed();
    for (int i = 0; i < NTOK; i++) {
        int n = snprintf(toks[i], sizeof(toks[i]), "ok|user%d|%lld|%s%d|%s%016llx.", i, exp,
                         with_jti ? "jti" : "-", with_jti ? i : 0, tag, (unsigned long long)salt);
        if (!with_jti)
            n = snprintf(toks[i], sizeof(toks[i]), "ok|user%d|%lld|-|%s%d%016llx.", i, exp, tag, i,
                         (unsigned long long)salt);
        for (int j = n; j < TOKEN_LEN; j++)
            toks[i][j] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                [(i * 31 + j * 7) & 63];
        toks[i][TOKEN_LEN] = '\0';
    }
}

#define ROUNDS    101
#define PER_ROUND 20000

/* Median ns per operation over ROUNDS rounds of PER_ROUND operations. */
static double l1_raw(int ntok)
{
    struct cache_l1 *l1 = cache_l1_new(8192, 8192, cache_random_seed());
    uint8_t d[CACHE_DIGEST_LEN] = {0};
    struct jwt_result res = {.reason = JWT_OK, .exp = time(NULL) + 3600}, out;
    int64_t now = time(NULL);
    for (int i = 0; i < NTOK; i++)
        cache_l1_insert(l1, toks[i], TOKEN_LEN, cache_l1_hash(l1, toks[i], TOKEN_LEN), d, &res,
                        now + 600, now);
    int64_t per[ROUNDS];
    volatile int hits = 0;
    for (int r = 0; r < ROUNDS; r++) {
        int64_t t0 = cpu_ns();
        for (int i = 0; i < PER_ROUND; i++) {
            const char *t = toks[i & (ntok - 1)];
            uint64_t h = cache_l1_hash(l1, t, TOKEN_LEN);
            hits += cache_l1_lookup(l1, t, TOKEN_LEN, h, now, &out, NULL) == CACHE_L1_POSITIVE;
        }
        per[r] = cpu_ns() - t0;
    }
    qsort(per, ROUNDS, sizeof(per[0]), cmp_i64);
    if (hits != ROUNDS * PER_ROUND)
        fprintf(stderr, "l1: unexpected misses\n");
    cache_l1_free(l1);
    return (double)per[ROUNDS / 2] / PER_ROUND;
}

static double hash_only(void)
{
    int64_t per[ROUNDS];
    volatile uint64_t acc = 0;
    for (int r = 0; r < ROUNDS; r++) {
        int64_t t0 = cpu_ns();
        for (int i = 0; i < PER_ROUND; i++)
            acc += cache_hash(toks[i & (NTOK - 1)], TOKEN_LEN, 12345);
        per[r] = cpu_ns() - t0;
    }
    qsort(per, ROUNDS, sizeof(per[0]), cmp_i64);
    return (double)per[ROUNDS / 2] / PER_ROUND;
}

static double sha256_only(void)
{
    int64_t per[31];
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char out[32];
    unsigned int ol;
    for (int r = 0; r < 31; r++) {
        int64_t t0 = cpu_ns();
        for (int i = 0; i < 2000; i++) {
            EVP_DigestInit_ex2(ctx, md, NULL);
            EVP_DigestUpdate(ctx, toks[i & (NTOK - 1)], TOKEN_LEN);
            EVP_DigestFinal_ex(ctx, out, &ol);
        }
        per[r] = cpu_ns() - t0;
    }
    EVP_MD_CTX_free(ctx);
    EVP_MD_free(md);
    qsort(per, 31, sizeof(per[0]), cmp_i64);
    return (double)per[15] / 2000;
}

static double auth_l1(int ntok)
{
    long calls = 0;
    struct auth_config cfg = {.verify = bench_verify, .verify_ctx = &calls, .l1_capacity = 8192};
    struct auth_worker *aw = auth_worker_new(&cfg, auth_now_ms());
    struct jwt_result out;
    int64_t now = auth_now_ms();
    for (int i = 0; i < NTOK; i++)
        auth_check(aw, toks[i], TOKEN_LEN, now, NULL, NULL, &out);
    int64_t per[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        int64_t t0 = cpu_ns();
        for (int i = 0; i < PER_ROUND; i++)
            auth_check(aw, toks[i & (ntok - 1)], TOKEN_LEN, now, NULL, NULL, &out);
        per[r] = cpu_ns() - t0;
    }
    qsort(per, ROUNDS, sizeof(per[0]), cmp_i64);
    if (calls != NTOK)
        fprintf(stderr, "auth_l1: %ld verifies, expected %d\n", calls, NTOK);
    auth_worker_free(aw);
    return (double)per[ROUNDS / 2] / PER_ROUND;
}

/* ---- L2 ---- */

static const uint8_t key[32] = "bench-hmac-key-0123456789abcdef";

static struct auth_worker *l2_pod(long *calls, const char *host, uint16_t port)
{
    struct auth_config cfg = {.verify = bench_verify,
                              .verify_ctx = calls,
                              .l1_capacity = 8192,
                              .redis_host = host,
                              .redis_port = port,
                              .redis = {.timeout_ms = 100},
                              .hmac_key = key,
                              .hmac_key_len = sizeof(key)};
    return auth_worker_new(&cfg, auth_now_ms());
}

static void pump(struct auth_worker *aw, int timeout_ms)
{
    struct pollfd fds[2];
    auth_worker_tick(aw, auth_now_ms());
    auth_worker_pollfds(aw, fds);
    if (poll(fds, 2, timeout_ms) > 0)
        auth_worker_on_poll(aw, fds, auth_now_ms());
}

struct wait {
    int done;
    enum auth_status st;
};

static void on_done(void *arg, enum auth_status st, const struct jwt_result *res)
{
    struct wait *w = arg;
    w->done = 1;
    w->st = st;
}

static int wait_ready(struct auth_worker *aw)
{
    int64_t t0 = auth_now_ms();
    while (!auth_worker_subscribed(aw) && auth_now_ms() - t0 < 3000)
        pump(aw, 5);
    return auth_worker_subscribed(aw) ? 0 : -ETIMEDOUT;
}

static int check_sync(struct auth_worker *aw, const char *t)
{
    struct wait w = {0};
    struct jwt_result out;
    enum auth_status st = auth_check(aw, t, TOKEN_LEN, auth_now_ms(), on_done, &w, &out);
    if (st != AUTH_PENDING)
        return st == AUTH_OK ? 1 : 0;
    while (!w.done)
        pump(aw, 50);
    return w.st == AUTH_OK ? 2 : 0;
}

static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1e6 +
           ru.ru_stime.tv_usec;
}

static int l2_bench(const char *host, uint16_t port, bool with_jti)
{
    long ca = 0, cb = 0;
    struct auth_worker *a = l2_pod(&ca, host, port), *b = l2_pod(&cb, host, port);
    if (!a || !b || wait_ready(a) || wait_ready(b)) {
        fprintf(stderr, "bench: no redis at %s:%u\n", host, port);
        return 1;
    }
    make_tokens(with_jti ? "J" : "N", with_jti);
    for (int i = 0; i < NTOK; i++)
        check_sync(a, toks[i]);
    for (int i = 0; i < 50; i++)
        pump(a, 2); /* the SETs land */
    enum { N = 5 * NTOK };
    static int64_t lat[N];
    int hits = 0;
    double c0 = cpu_us();
    int64_t wall0 = now_ns();
    for (int i = 0; i < N; i++) {
        if ((i & (NTOK - 1)) == 0)
            auth_worker_flush(b); /* every lookup below is an L1 miss */
        int64_t t0 = now_ns();
        hits += check_sync(b, toks[i & (NTOK - 1)]) == 2;
        lat[i] = now_ns() - t0;
    }
    double cpu = cpu_us() - c0;
    int64_t wall = now_ns() - wall0;
    qsort(lat, N, sizeof(lat[0]), cmp_i64);
    const struct auth_counters *c = auth_worker_counters(b);
    printf("l2_hit_%s: n=%d l2_hit=%llu verifies=%ld median_us=%.1f p99_us=%.1f "
           "cpu_us_per_lookup=%.2f (client side: syscalls, RESP, SHA-256, HMAC) wall_us=%.1f\n",
           with_jti ? "jti_2rtt" : "nojti_1rtt", N, (unsigned long long)c->l2_hit, cb,
           lat[N / 2] / 1e3, lat[N * 99 / 100] / 1e3, cpu / N, wall / 1e3 / N);
    auth_worker_free(a);
    auth_worker_free(b);
    return hits == N ? 0 : 1;
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    bind(s, (struct sockaddr *)&a, sizeof(a));
    getsockname(s, (struct sockaddr *)&a, &al);
    close(s);
    return ntohs(a.sin_port);
}

static pid_t start_redis(int port)
{
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", ps, "--save", "",
               "--appendonly", "no", "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        redisContext *c = redisConnect("127.0.0.1", port);
        int up = c && !c->err;
        redisFree(c);
        if (up)
            return pid;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

int main(int argc, char **argv)
{
    char host[64] = "127.0.0.1";
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--redis") == 0 && i + 1 < argc) {
            if (sscanf(argv[++i], "%63[^:]:%d", host, &port) != 2) {
                fprintf(stderr, "--redis HOST:PORT\n");
                return 2;
            }
        } else {
            fprintf(stderr,
                    "usage: %s [--redis HOST:PORT]  (default: starts its own "
                    "redis-server on a free loopback port)\n",
                    argv[0]);
            return 2;
        }
    }
    make_tokens("L", true);
    printf("token_len=%d tokens=%d\n", TOKEN_LEN, NTOK);
    printf("hash_800B: median_ns=%.1f\n", hash_only());
    printf("sha256_800B: median_ns=%.1f (for comparison: why L1 does not key on it)\n",
           sha256_only());
    /* Working sets: 16 tokens (hot: all in the CPU's L1/L2), 1024 tokens (~2 MB of token
     * bytes with the cached copies: past the per-core L2, served from L3). */
    for (int ntok = 16; ntok <= NTOK; ntok *= 64) {
        printf("l1_hit_800B tokens=%d (hash + lookup + result copy): median_ns=%.1f\n", ntok,
               l1_raw(ntok));
        printf("auth_check_l1_hit_800B tokens=%d: median_ns=%.1f\n", ntok, auth_l1(ntok));
    }

    pid_t pid = -1;
    if (!port) {
        port = free_port();
        pid = start_redis(port);
        if (pid < 0) {
            fprintf(stderr, "bench: could not start redis-server\n");
            return 1;
        }
        printf("redis: started redis-server on 127.0.0.1:%d (pid %d)\n", port, (int)pid);
    } else {
        printf("redis: using %s:%d\n", host, port);
    }
    int rc = l2_bench(host, (uint16_t)port, false);
    rc |= l2_bench(host, (uint16_t)port, true);
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    return rc;
}
