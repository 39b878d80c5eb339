// SPDX-License-Identifier: MIT
// `sipedge-token revoke` against the fixture's redis-server: the keys it writes, their TTL, and a
// subscribed worker that drops the revoked token from its L1.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <hiredis/hiredis.h>

#include "auth/auth.h"

static uint16_t fixture_port(void)
{
    const char *p = getenv("SIPEDGE_REDIS_PORT");
    cr_assert(p, "SIPEDGE_REDIS_PORT not set (run through ctest)");
    return (uint16_t)atoi(p);
}

/* Runs the tool with `args`; returns its exit status and its first output line in `out`. */
static int run_tool(const char *args, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s/sipedge-token %s 2>&1", SIPEDGE_BINARY_DIR, args);
    FILE *f = popen(cmd, "r");
    cr_assert(f);
    out[0] = '\0';
    if (!fgets(out, (int)cap, f))
        out[0] = '\0';
    char sink[256];
    while (fgets(sink, sizeof(sink), f))
        ;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static long long redis_ttl(const char *key)
{
    redisContext *c = redisConnect("127.0.0.1", fixture_port());
    cr_assert(c && !c->err);
    redisReply *r = redisCommand(c, "TTL %s", key);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

static enum jwt_reason fake_verify(void *ctx, const char *tok, size_t len, int64_t now,
                                   struct jwt_result *out)
{
    out->reason = JWT_OK;
    snprintf(out->user, sizeof(out->user), "u");
    out->user_len = 1;
    snprintf(out->jti, sizeof(out->jti), "%s", (const char *)ctx);
    out->exp = now + 3600;
    return JWT_OK;
}

Test(auth_revoke_tool, writes_the_jti_key_with_its_ttl_and_evicts_subscribed_workers)
{
    char jti[64], args[512], out[512];
    snprintf(jti, sizeof(jti), "tool-%016llx", (unsigned long long)cache_random_seed());
    static const uint8_t key[32] = "revoke-tool-test-key-0123456789";
    struct auth_config cfg = {.verify = fake_verify,
                              .verify_ctx = jti,
                              .redis_host = "127.0.0.1",
                              .redis_port = fixture_port(),
                              .redis = {.timeout_ms = 500},
                              .hmac_key = key,
                              .hmac_key_len = sizeof(key)};
    struct auth_worker *aw = auth_worker_new(&cfg, auth_now_ms());
    cr_assert(aw);
    for (int i = 0; i < 1000 && !auth_worker_subscribed(aw); i++) {
        struct pollfd fds[2];
        auth_worker_tick(aw, auth_now_ms());
        auth_worker_pollfds(aw, fds);
        if (poll(fds, 2, 3) > 0)
            auth_worker_on_poll(aw, fds, auth_now_ms());
    }
    cr_assert(auth_worker_subscribed(aw));
    struct jwt_result r;
    cr_assert_eq(auth_check(aw, "some.token.here", 15, auth_now_ms(), NULL, NULL, &r), AUTH_OK);

    snprintf(args, sizeof(args), "revoke --redis 127.0.0.1:%u --jti %s --ttl 120", fixture_port(),
             jti);
    cr_assert_eq(run_tool(args, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "revoked jti:") == out, "%s", out);
    char k[128];
    snprintf(k, sizeof(k), "sipedge:v1:rev:jti:%s", jti);
    long long ttl = redis_ttl(k);
    cr_assert(ttl > 100 && ttl <= 120, "ttl %lld", ttl);

    for (int i = 0; i < 1000 && !auth_worker_counters(aw)->l1_evicted; i++) {
        struct pollfd fds[2];
        auth_worker_tick(aw, auth_now_ms());
        auth_worker_pollfds(aw, fds);
        if (poll(fds, 2, 3) > 0)
            auth_worker_on_poll(aw, fds, auth_now_ms());
    }
    cr_assert_eq(auth_worker_counters(aw)->l1_evicted, 1);
    auth_worker_free(aw);
}

Test(auth_revoke_tool, revokes_a_token_by_digest_for_its_remaining_life)
{
    /* header {"alg":"none"} . payload {"exp": now+300} . sig: only exp is read */
    char payload[64], b64[128], tok[256], args[1024], out[512], hex[65], k[128];
    long long exp = auth_now_ms() / 1000 + 300;
    int n = snprintf(payload, sizeof(payload), "{\"exp\":%lld,\"n\":\"%016llx\"}", exp,
                     (unsigned long long)cache_random_seed());
    jwt_b64url_encode(payload, (size_t)n, b64);
    snprintf(tok, sizeof(tok), "eyJhbGciOiJub25lIn0.%s.c2ln", b64);
    snprintf(args, sizeof(args), "revoke --redis 127.0.0.1:%u --token %s", fixture_port(), tok);
    cr_assert_eq(run_tool(args, out, sizeof(out)), 0, "%s", out);
    auth_token_digest_hex(tok, strlen(tok), hex);
    snprintf(k, sizeof(k), "sipedge:v1:rev:dig:%s", hex);
    long long ttl = redis_ttl(k);
    cr_assert(ttl > 280 && ttl <= 300, "ttl %lld", ttl);
}

Test(auth_revoke_tool, fails_cleanly_without_redis_or_with_bad_arguments)
{
    char out[512];
    cr_assert_eq(run_tool("revoke --redis 127.0.0.1:1 --jti x --timeout-ms 200", out, sizeof(out)),
                 1, "%s", out);
    cr_assert_eq(run_tool("revoke --jti x", out, sizeof(out)), 2);
    cr_assert_eq(run_tool("revoke --redis 127.0.0.1:1 --jti x --token y", out, sizeof(out)), 2);
}
