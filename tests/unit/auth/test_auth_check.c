// SPDX-License-Identifier: MIT
// auth_check() with a fake verifier against real redis-servers: L1, L2 between two workers
// ("pods"), forged entries, Redis killed and restarted, timeouts, revocation over pub/sub.
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "auth/auth.h"

/* Fake tokens: "ok|<user>|<exp>|<jti>|<nonce>" verify as valid, "sigonly|..." as signature-only,
 * anything else as a bad signature. Calls are counted per verifier context. */
struct fake {
    int calls;
};

static enum jwt_reason fake_verify(void *ctx, const char *tok, size_t len, int64_t now,
                                   struct jwt_result *out)
{
    struct fake *f = ctx;
    char buf[512], user[64] = "", jti[64] = "";
    long long exp = 0;
    f->calls++;
    snprintf(buf, sizeof(buf), "%.*s", (int)len, tok);
    bool sigonly = strncmp(buf, "sigonly|", 8) == 0;
    if ((strncmp(buf, "ok|", 3) != 0 && !sigonly) ||
        sscanf(strchr(buf, '|') + 1, "%63[^|]|%lld|%63[^|]|", user, &exp, jti) < 2)
        return out->reason = JWT_E_BAD_SIGNATURE;
    if (exp <= now)
        return out->reason = JWT_E_EXPIRED;
    out->reason = JWT_OK;
    snprintf(out->user, sizeof(out->user), "%s", user);
    out->user_len = strlen(out->user);
    snprintf(out->jti, sizeof(out->jti), "%s", strcmp(jti, "-") ? jti : "");
    out->exp = exp;
    out->scope_bits = 5;
    out->signature_only = sigonly;
    return JWT_OK;
}

static const uint8_t hmac_key[32] = "0123456789abcdef0123456789abcde";

static uint16_t fixture_port(void)
{
    const char *p = getenv("SIPEDGE_REDIS_PORT");
    cr_assert(p, "SIPEDGE_REDIS_PORT not set (run through ctest)");
    return (uint16_t)atoi(p);
}

static struct auth_worker *pod(struct fake *f, uint16_t port, uint32_t timeout_ms)
{
    struct auth_config cfg = {
        .verify = fake_verify,
        .verify_ctx = f,
        .redis_host = port ? "127.0.0.1" : NULL,
        .redis_port = port,
        .redis = {.timeout_ms = timeout_ms, .backoff_min_ms = 20, .backoff_max_ms = 200},
        .hmac_key = hmac_key,
        .hmac_key_len = sizeof(hmac_key),
    };
    struct auth_worker *aw = auth_worker_new(&cfg, auth_now_ms());
    cr_assert(aw);
    return aw;
}

struct done {
    int calls;
    enum auth_status st;
    struct jwt_result res;
};

static void on_done(void *arg, enum auth_status st, const struct jwt_result *res)
{
    struct done *d = arg;
    d->calls++;
    d->st = st;
    if (res)
        d->res = *res;
}

/* Added to the clock the test loop hands to the workers (a pod whose clock runs ahead). */
static int64_t skew_ms;

/* Runs the pods' I/O for up to `max_ms`, until *flag becomes non-zero (flag NULL: the whole
 * time). */
static void drive(struct auth_worker **aws, int n, const int *flag, int max_ms)
{
    int64_t t0 = auth_now_ms() + skew_ms, now = t0;
    while ((!flag || !*flag) && now - t0 < max_ms) {
        struct pollfd fds[8];
        for (int i = 0; i < n; i++) {
            auth_worker_tick(aws[i], now);
            auth_worker_pollfds(aws[i], fds + 2 * i);
        }
        int r = poll(fds, (nfds_t)(2 * n), 2);
        now = auth_now_ms() + skew_ms;
        if (r > 0)
            for (int i = 0; i < n; i++)
                auth_worker_on_poll(aws[i], fds + 2 * i, now);
    }
}

static void drive1(struct auth_worker *aw, const int *flag, int max_ms)
{
    drive(&aw, 1, flag, max_ms);
}

/* Waits until `aw` is connected and subscribed. */
static void ready(struct auth_worker *aw)
{
    int64_t t0 = auth_now_ms();
    while (!auth_worker_subscribed(aw) && auth_now_ms() - t0 < 3000)
        drive1(aw, NULL, 5);
    cr_assert(auth_worker_subscribed(aw), "worker did not subscribe");
}

/* Waits until every command `aw` sent was answered (e.g. a fire-and-forget SET). */
static void settle(struct auth_worker *aw)
{
    const struct cache_redis_stats *st = cache_redis_stats(auth_worker_redis(aw, false));
    int64_t t0 = auth_now_ms();
    while (st->replies + st->timeouts < st->commands && auth_now_ms() - t0 < 3000)
        drive1(aw, NULL, 2);
}

static char nonce[32];

static void setup_nonce(void)
{
    snprintf(nonce, sizeof(nonce), "%016llx", (unsigned long long)cache_random_seed());
}

/* A valid fake token for `user` with `jti` ("-" for none), expiring in an hour. */
static const char *token(char *buf, size_t n, const char *kind, const char *user, const char *jti)
{
    snprintf(buf, n, "%s|%s|%lld|%s|%s", kind, user, (long long)(auth_now_ms() / 1000 + 3600), jti,
             nonce);
    return buf;
}

/* Checks `tok` on `aw`, driving I/O when pending; returns the final status. */
static enum auth_status check(struct auth_worker *aw, const char *tok, struct jwt_result *out)
{
    struct done d = {0};
    enum auth_status st = auth_check(aw, tok, strlen(tok), auth_now_ms(), on_done, &d, out);
    if (st != AUTH_PENDING)
        return st;
    drive1(aw, &d.calls, 3000);
    cr_assert_eq(d.calls, 1, "pending check never completed");
    *out = d.res;
    return d.st;
}

TestSuite(auth_check, .init = setup_nonce);

Test(auth_check, answers_from_l1_without_verifying_twice)
{
    struct fake f = {0};
    struct auth_worker *aw = pod(&f, 0, 5);
    struct jwt_result r;
    char t[256];
    token(t, sizeof(t), "ok", "alice", "j1");
    cr_assert_eq(auth_check(aw, t, strlen(t), auth_now_ms(), on_done, NULL, &r), AUTH_OK);
    cr_assert_str_eq(r.user, "alice");
    cr_assert_eq(auth_check(aw, t, strlen(t), auth_now_ms(), on_done, NULL, &r), AUTH_OK);
    cr_assert_eq(f.calls, 1);
    cr_assert_eq(auth_check(aw, "forged", 6, auth_now_ms(), on_done, NULL, &r), AUTH_FAIL);
    cr_assert_eq(r.reason, JWT_E_BAD_SIGNATURE);
    cr_assert_eq(auth_check(aw, "forged", 6, auth_now_ms(), on_done, NULL, &r), AUTH_FAIL);
    cr_assert_eq(f.calls, 2, "negative entry cached");
    const struct auth_counters *c = auth_worker_counters(aw);
    cr_assert_eq(c->l1_hit, 1);
    cr_assert_eq(c->l1_negative_hit, 1);
    cr_assert_eq(c->fail[JWT_E_BAD_SIGNATURE], 2);
    auth_worker_free(aw);
}

Test(auth_check, caps_the_lifetime_of_signature_only_results)
{
    struct fake f = {0};
    struct auth_worker *aw = pod(&f, 0, 5);
    struct jwt_result r;
    char t[256];
    token(t, sizeof(t), "sigonly", "bob", "-");
    int64_t now = auth_now_ms();
    cr_assert_eq(auth_check(aw, t, strlen(t), now, on_done, NULL, &r), AUTH_OK);
    cr_assert(r.signature_only);
    cr_assert_eq(auth_check(aw, t, strlen(t), now + 29000, on_done, NULL, &r), AUTH_OK);
    cr_assert_eq(f.calls, 1);
    cr_assert_eq(auth_check(aw, t, strlen(t), now + 31000, on_done, NULL, &r), AUTH_OK);
    cr_assert_eq(f.calls, 2, "the 30 s cap expired the entry long before the token");
    auth_worker_free(aw);
}

Test(auth_check, shares_verified_tokens_between_pods_through_redis)
{
    struct fake fa = {0}, fb = {0};
    struct auth_worker *a = pod(&fa, fixture_port(), 200), *b = pod(&fb, fixture_port(), 200);
    ready(a);
    ready(b);
    struct jwt_result r;
    char t[256];
    token(t, sizeof(t), "ok", "carol", "jc");
    cr_assert_eq(check(a, t, &r), AUTH_OK);
    cr_assert_eq(fa.calls, 1);
    cr_assert_eq(auth_last_layer(a), AUTH_LAYER_VERIFY);
    settle(a); /* the SET reached Redis */
    cr_assert_eq(auth_worker_counters(a)->l2_store, 1);

    cr_assert_eq(check(b, t, &r), AUTH_OK);
    cr_assert_eq(fb.calls, 0, "pod b answered from L2 without verifying");
    cr_assert_str_eq(r.user, "carol");
    cr_assert_str_eq(r.jti, "jc");
    cr_assert_eq(r.scope_bits, 5);
    cr_assert_eq(auth_worker_counters(b)->l2_hit, 1);
    cr_assert_eq(auth_last_layer(b), AUTH_LAYER_L2);
    cr_assert_eq(check(b, t, &r), AUTH_OK);
    cr_assert_eq(auth_worker_counters(b)->l1_hit, 1, "then from its own L1");
    cr_assert_eq(auth_last_layer(b), AUTH_LAYER_L1);
    auth_worker_free(a);
    auth_worker_free(b);
}

static void redis_set_raw(uint16_t port, const char *key, const void *v, size_t vl)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    cr_assert(c && !c->err);
    const char *argv[] = {"SET", key, v, "EX", "60"};
    size_t lens[] = {3, strlen(key), vl, 2, 2};
    redisReply *rp = redisCommandArgv(c, 5, argv, lens);
    cr_assert(rp && rp->type == REDIS_REPLY_STATUS);
    freeReplyObject(rp);
    redisFree(c);
}

static void log_to(void *ctx, const char *event, const char *digest8)
{
    snprintf(ctx, 64, "%s %s", event, digest8);
}

Test(auth_check, rejects_a_forged_redis_entry_and_counts_it)
{
    struct fake f = {0};
    char logged[64] = "";
    struct auth_config cfg = {.verify = fake_verify,
                              .verify_ctx = &f,
                              .redis_host = "127.0.0.1",
                              .redis_port = fixture_port(),
                              .redis = {.timeout_ms = 200},
                              .hmac_key = hmac_key,
                              .hmac_key_len = sizeof(hmac_key),
                              .log = log_to,
                              .log_ctx = logged};
    struct auth_worker *aw = auth_worker_new(&cfg, auth_now_ms());
    ready(aw);
    /* An attacker with Redis write access plants "mallory is valid" for a token that is not. */
    char t[256], hex[65], key[128];
    snprintf(t, sizeof(t), "forged-token|%s", nonce);
    auth_token_digest_hex(t, strlen(t), hex);
    snprintf(key, sizeof(key), "sipedge:v1:tok:0000000000000000:%s", hex); /* no key_fp: zeros */
    uint8_t v[30 + 7 + 32] = "SE1";
    int64_t far = auth_now_ms() / 1000 + 3600;
    for (int i = 0; i < 8; i++)
        v[4 + i] = v[12 + i] = (uint8_t)(far >> (56 - 8 * i));
    v[28] = 7;
    memcpy(v + 30, "mallory", 7);
    memset(v + 37, 0xab, 32); /* no key: the MAC is a guess */
    redis_set_raw(fixture_port(), key, v, sizeof(v));

    struct jwt_result r;
    cr_assert_eq(check(aw, t, &r), AUTH_FAIL);
    cr_assert_eq(r.reason, JWT_E_BAD_SIGNATURE, "the verifier decided, not the entry");
    cr_assert_eq(f.calls, 1);
    cr_assert_eq(auth_worker_counters(aw)->l2_bad_hmac, 1);
    cr_assert_eq(auth_worker_counters(aw)->l2_hit, 0);
    cr_assert(strncmp(logged, "l2_bad_hmac ", 12) == 0 && strlen(logged) == 12 + 16, "%s", logged);
    cr_assert(strstr(logged, "forged") == NULL, "never logs the token");
    auth_worker_free(aw);
}

Test(auth_check, rejects_an_entry_made_with_another_key)
{
    struct fake f = {0};
    struct auth_worker *a = pod(&f, fixture_port(), 200);
    static const uint8_t other[32] = "another key, another deployment";
    struct auth_config cfg = {.verify = fake_verify,
                              .verify_ctx = &f,
                              .redis_host = "127.0.0.1",
                              .redis_port = fixture_port(),
                              .redis = {.timeout_ms = 200},
                              .hmac_key = other,
                              .hmac_key_len = sizeof(other)};
    struct auth_worker *b = auth_worker_new(&cfg, auth_now_ms());
    ready(a);
    ready(b);
    struct jwt_result r;
    char t[256];
    token(t, sizeof(t), "ok", "dave", "-");
    cr_assert_eq(check(b, t, &r), AUTH_OK);
    settle(b);
    cr_assert_eq(check(a, t, &r), AUTH_OK);
    cr_assert_eq(auth_worker_counters(a)->l2_bad_hmac, 1);
    cr_assert_eq(f.calls, 2, "a verified it itself");
    auth_worker_free(a);
    auth_worker_free(b);
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
    cr_assert(pid >= 0);
    if (pid == 0) {
        execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", ps, "--save", "",
               "--appendonly", "no", "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        redisContext *c = redisConnect("127.0.0.1", port);
        bool up = c && !c->err;
        redisFree(c);
        if (up)
            return pid;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    cr_assert_fail("redis-server did not start on %d", port);
    return -1;
}

static void stop_redis(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

Test(auth_check, keeps_answering_correctly_when_redis_dies_and_reconnects)
{
    int port = free_port();
    pid_t pid = start_redis(port);
    struct fake f = {0};
    struct auth_worker *aw = pod(&f, (uint16_t)port, 50);
    ready(aw);
    struct jwt_result r;
    char t1[256], t3[256];
    token(t1, sizeof(t1), "ok", "erin", "-");
    cr_assert_eq(check(aw, t1, &r), AUTH_OK);
    settle(aw);

    stop_redis(pid);
    drive1(aw, NULL, 100); /* EOF seen, reconnects refused: the breaker opens */
    /* Every answer stays right: valid tokens pass, bad ones fail, through local verification. */
    for (int i = 0; i < 6; i++) {
        char t[256];
        snprintf(t, sizeof(t), "ok|u%d|%lld|-|%s", i, (long long)(auth_now_ms() / 1000 + 600),
                 nonce);
        cr_assert_eq(check(aw, t, &r), AUTH_OK, "round %d", i);
        char want[16];
        snprintf(want, sizeof(want), "u%d", i);
        cr_assert_str_eq(r.user, want);
    }
    cr_assert_eq(check(aw, "bad-while-down", &r), AUTH_FAIL);
    cr_assert_eq(r.reason, JWT_E_BAD_SIGNATURE);
    struct cache_redis *cmd = auth_worker_redis(aw, false);
    cr_assert_geq(cache_redis_stats(cmd)->breaker_opens, 1, "breaker opened");
    cr_assert_gt(auth_worker_counters(aw)->l2_unusable + auth_worker_counters(aw)->l2_error, 0);
    cr_assert_not(auth_worker_subscribed(aw));

    pid = start_redis(port);
    int64_t t0 = auth_now_ms();
    while ((!auth_worker_subscribed(aw) || !cache_redis_usable(cmd, auth_now_ms())) &&
           auth_now_ms() - t0 < 5000)
        drive1(aw, NULL, 5);
    cr_assert(auth_worker_subscribed(aw), "reconnected and resubscribed");
    token(t3, sizeof(t3), "ok", "frank", "-");
    uint64_t misses = auth_worker_counters(aw)->l2_miss;
    cr_assert_eq(check(aw, t3, &r), AUTH_OK);
    cr_assert_eq(auth_worker_counters(aw)->l2_miss, misses + 1, "the L2 path is back");
    auth_worker_free(aw);
    stop_redis(pid);
}

/* A listener on a free loopback port that accepts (the backlog) and never answers. */
static int loopback_listener(uint16_t *port)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    cr_assert_eq(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(ls, 16), 0);
    getsockname(ls, (struct sockaddr *)&a, &al);
    *port = ntohs(a.sin_port);
    return ls;
}

Test(auth_check, verifies_locally_when_redis_never_answers)
{
    uint16_t port;
    int ls = loopback_listener(&port);
    struct fake f = {0};
    struct auth_worker *aw = pod(&f, port, 5);
    drive1(aw, NULL, 20); /* connected (the backlog accepts), SUBSCRIBE unanswered */
    struct jwt_result r;
    char t[256];
    token(t, sizeof(t), "ok", "grace", "-");
    cr_assert_eq(check(aw, t, &r), AUTH_OK);
    cr_assert_str_eq(r.user, "grace");
    cr_assert_eq(f.calls, 1);
    cr_assert_eq(check(aw, "bad", &r), AUTH_FAIL);
    const struct auth_counters *c = auth_worker_counters(aw);
    cr_assert_geq(c->l2_error + c->l2_unusable, 1);
    cr_assert_eq(c->l2_hit, 0);
    auth_worker_free(aw);
    close(ls);
}

/* Redis resets the connection while the worker still thinks it is up: the lookup's own write
 * fails inside auth_check, which must then decide on the spot. Before, it failed the lookup
 * through the callback (before the caller had kept its request) and still said AUTH_PENDING: the
 * proxy freed the REGISTER in that callback and never answered it (chaos redis_kill, once). */
Test(auth_check, decides_at_once_when_the_lookup_write_finds_redis_gone)
{
    signal(SIGPIPE, SIG_IGN);
    uint16_t port;
    int ls = loopback_listener(&port);
    struct fake f = {0};
    struct auth_worker *aw = pod(&f, port, 1000);
    drive1(aw, NULL, 20); /* connected (the backlog accepts) */
    cr_assert(cache_redis_usable(auth_worker_redis(aw, false), auth_now_ms()));
    int peer = accept(ls, NULL, NULL), n = 0;
    cr_assert_geq(peer, 0);
    for (int i = 0; i < 2 && peer >= 0; i++) { /* the command connection, not the subscriber */
        struct linger lg = {1, 0};
        setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(peer); /* RST */
        n++;
        peer = i == 0 ? accept(ls, NULL, NULL) : -1;
    }
    cr_assert_eq(n, 2);
    usleep(20000); /* the RSTs are in; the worker has not looked */
    struct done d = {0};
    struct jwt_result r;
    char t[256];
    token(t, sizeof(t), "ok", "heidi", "-");
    enum auth_status st = auth_check(aw, t, strlen(t), auth_now_ms(), on_done, &d, &r);
    cr_assert_eq(d.calls, 0, "callback ran inside auth_check (status %d)", (int)st);
    if (st == AUTH_PENDING) { /* the write went out before the reset was seen: one answer later */
        drive1(aw, &d.calls, 3000);
        cr_assert_eq(d.calls, 1);
        st = d.st;
        r = d.res;
    }
    cr_assert_eq(st, AUTH_OK);
    cr_assert_str_eq(r.user, "heidi");
    drive1(aw, NULL, 50);
    cr_assert_leq(d.calls, 1, "answered twice");
    auth_worker_free(aw);
    cr_assert_leq(d.calls, 1, "answered twice");
    close(ls);
}

Test(auth_check, evicts_revoked_tokens_in_other_pods_via_pubsub)
{
    struct fake fa = {0}, fb = {0};
    struct auth_worker *a = pod(&fa, fixture_port(), 200), *b = pod(&fb, fixture_port(), 200);
    struct auth_worker *both[2] = {a, b};
    ready(a);
    ready(b);
    struct jwt_result r;
    char t[256], jti[64];
    snprintf(jti, sizeof(jti), "jti-%s", nonce);
    token(t, sizeof(t), "ok", "heidi", jti);
    cr_assert_eq(check(b, t, &r), AUTH_OK);
    cr_assert_eq(auth_check(b, t, strlen(t), auth_now_ms(), on_done, NULL, &r), AUTH_OK,
                 "in b's L1");

    cr_assert_eq(auth_revoke(a, AUTH_REVOKE_JTI, jti, strlen(jti), 3600, auth_now_ms()), 0);
    const struct auth_counters *cb = auth_worker_counters(b);
    int evicted = 0;
    int64_t t0 = auth_now_ms();
    while (!evicted && auth_now_ms() - t0 < 3000) {
        drive(both, 2, NULL, 2);
        evicted = cb->l1_evicted > 0;
    }
    cr_assert(evicted, "b dropped the entry on the pub/sub message");
    cr_assert_eq(cb->revocation_events, 1);
    cr_assert_eq(check(b, t, &r), AUTH_FAIL);
    cr_assert_eq(r.reason, JWT_E_REVOKED);
    cr_assert_eq(check(b, t, &r), AUTH_FAIL, "negative entry");
    cr_assert_eq(r.reason, JWT_E_REVOKED);
    cr_assert_eq(cb->revoked, 2);
    auth_worker_free(a);
    auth_worker_free(b);
}

Test(auth_check, rejects_a_token_revoked_before_this_pod_ever_saw_it)
{
    struct fake f = {0};
    char t1[256], t2[256], jti[64], hex[65];
    snprintf(jti, sizeof(jti), "early-%s", nonce);
    token(t1, sizeof(t1), "ok", "ivan", jti);
    token(t2, sizeof(t2), "ok", "judy", "-");
    auth_token_digest_hex(t2, strlen(t2), hex);
    cr_assert_geq(auth_revoke_blocking("127.0.0.1", fixture_port(), AUTH_REVOKE_JTI, jti,
                                       strlen(jti), 60, 1000),
                  0);
    cr_assert_geq(
        auth_revoke_blocking("127.0.0.1", fixture_port(), AUTH_REVOKE_DIGEST, hex, 64, 60, 1000),
        0);
    cr_assert_eq(
        auth_revoke_blocking("127.0.0.1", fixture_port(), AUTH_REVOKE_DIGEST, "zz", 2, 60, 1000),
        -EINVAL);
    struct auth_worker *aw = pod(&f, fixture_port(), 200);
    ready(aw);
    struct jwt_result r;
    cr_assert_eq(check(aw, t1, &r), AUTH_FAIL);
    cr_assert_eq(r.reason, JWT_E_REVOKED, "by jti, after verification");
    /* these fake tokens are not JWS: no jti could be read before the verify, so it took a
     * second round trip (a real token's jti goes with the first: test_auth_jwt.c) */
    cr_assert_eq(auth_worker_counters(aw)->l2_jti_lookups, 1);
    cr_assert_eq(check(aw, t2, &r), AUTH_FAIL);
    cr_assert_eq(r.reason, JWT_E_REVOKED, "by digest, before verification");
    cr_assert_eq(f.calls, 1, "a digest revocation needs no verify");
    auth_worker_free(aw);
}

Test(auth_check, cancels_pending_checks_exactly_once_when_the_worker_is_freed)
{
    struct fake f = {0};
    struct auth_worker *aw = pod(&f, fixture_port(), 500);
    ready(aw);
    char t[256], t2[256];
    token(t, sizeof(t), "ok", "ken", "-");
    token(t2, sizeof(t2), "ok", "leo", "-");
    struct done d = {0}, d2 = {0};
    struct jwt_result r;
    cr_assert_eq(auth_check(aw, t, strlen(t), auth_now_ms(), on_done, &d, &r), AUTH_PENDING);
    cr_assert_eq(auth_check(aw, t2, strlen(t2), auth_now_ms(), on_done, &d2, &r), AUTH_PENDING);
    cr_assert_eq(auth_cancel(aw, &d2), 1);
    auth_worker_free(aw);
    cr_assert_eq(d.calls, 1);
    cr_assert_eq(d.st, AUTH_CANCELLED);
    cr_assert_eq(d2.calls, 0, "a cancelled check never calls back");
}

static long long redis_ttl_of_token(const char *tok)
{
    char hex[65], key[128];
    auth_token_digest_hex(tok, strlen(tok), hex);
    snprintf(key, sizeof(key), "sipedge:v1:tok:0000000000000000:%s", hex); /* no key_fp: zeros */
    redisContext *c = redisConnect("127.0.0.1", fixture_port());
    cr_assert(c && !c->err);
    redisReply *rp = redisCommand(c, "TTL %s", key);
    cr_assert(rp && rp->type == REDIS_REPLY_INTEGER);
    long long v = rp->integer;
    freeReplyObject(rp);
    redisFree(c);
    return v;
}

Test(auth_check, stores_entries_for_their_capped_life_and_keeps_the_signature_only_flag)
{
    struct fake fa = {0}, fb = {0};
    struct auth_worker *a = pod(&fa, fixture_port(), 200), *b = pod(&fb, fixture_port(), 200);
    ready(a);
    ready(b);
    struct jwt_result r;
    char t1[256], t2[256];
    token(t1, sizeof(t1), "ok", "mike", "-");      /* lives an hour: capped by ttl_s (300) */
    token(t2, sizeof(t2), "sigonly", "nina", "-"); /* capped by signature_only_ttl_s (30) */
    cr_assert_eq(check(a, t1, &r), AUTH_OK);
    cr_assert_eq(check(a, t2, &r), AUTH_OK);
    settle(a);
    long long ttl1 = redis_ttl_of_token(t1), ttl2 = redis_ttl_of_token(t2);
    cr_assert(ttl1 > 290 && ttl1 <= 300, "ttl %lld", ttl1);
    cr_assert(ttl2 > 20 && ttl2 <= 30, "ttl %lld", ttl2);
    cr_assert_eq(check(b, t2, &r), AUTH_OK);
    cr_assert(r.signature_only, "the flag survived the trip through Redis");
    cr_assert_eq(fb.calls, 0);
    auth_worker_free(a);
    auth_worker_free(b);
}

Test(auth_check, ignores_an_l2_entry_whose_cache_life_is_over)
{
    struct fake fa = {0}, fb = {0};
    struct auth_worker *a = pod(&fa, fixture_port(), 200), *b = pod(&fb, fixture_port(), 200);
    ready(a);
    ready(b);
    struct jwt_result r;
    char t[256];
    token(t, sizeof(t), "ok", "olga", "-");
    cr_assert_eq(check(a, t, &r), AUTH_OK);
    settle(a);
    /* Pod b's clock is 301 s ahead: the entry (cache life 300 s) is stale though Redis kept it. */
    struct done d = {0};
    skew_ms = 301000;
    cr_assert_eq(auth_check(b, t, strlen(t), auth_now_ms() + skew_ms, on_done, &d, &r),
                 AUTH_PENDING);
    drive1(b, &d.calls, 3000);
    skew_ms = 0;
    cr_assert_eq(d.st, AUTH_OK);
    cr_assert_eq(fb.calls, 1, "verified again");
    cr_assert_eq(auth_worker_counters(b)->l2_hit, 0);
    cr_assert_eq(auth_worker_counters(b)->l2_miss, 1);
    auth_worker_free(a);
    auth_worker_free(b);
}
