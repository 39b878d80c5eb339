// SPDX-License-Identifier: MIT
// auth_check() with real tokens: ES256/RS256 minted by jwt_mint, verified by jwt_verify through
// auth_jwt_verify, shared between two workers through the fixture's redis-server.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "jwt_testutil.h"

struct counting {
    struct auth_jwt_verifier v;
    int calls;
};

static enum jwt_reason counting_verify(void *ctx, const char *tok, size_t len, int64_t now,
                                       struct jwt_result *out)
{
    struct counting *c = ctx;
    c->calls++;
    return auth_jwt_verify(&c->v, tok, len, now, out);
}

static const char *counting_fp(void *ctx)
{
    struct counting *c = ctx;
    return auth_jwt_verifier_fp(&c->v);
}

static const uint8_t hmac_key[32] = "integration-test-hmac-key-32byt";
static EVP_PKEY *ec_key, *rsa_key;
static struct keys_store *store;
static struct jwt_policy pol;
static char nonce[32];

static void setup(void)
{
    ec_key = tu_ec();
    rsa_key = tu_rsa();
    struct keys_set *ks = keys_set_new();
    tu_add_pub(ks, "ec1", ec_key);
    tu_add_pub(ks, "rsa1", rsa_key);
    cr_assert_eq(keys_set_finish(ks), 0);
    store = keys_store_new(ks);
    jwt_policy_init(&pol);
    snprintf(nonce, sizeof(nonce), "%016llx", (unsigned long long)cache_random_seed());
}

static void teardown(void)
{
    keys_store_free(store);
    EVP_PKEY_free(ec_key);
    EVP_PKEY_free(rsa_key);
}

TestSuite(auth_jwt, .init = setup, .fini = teardown);

static uint16_t fixture_port(void)
{
    const char *p = getenv("SIPEDGE_REDIS_PORT");
    cr_assert(p, "SIPEDGE_REDIS_PORT not set (run through ctest)");
    return (uint16_t)atoi(p);
}

static struct auth_worker *pod_on(struct counting *c, bool redis, struct keys_store *st)
{
    c->v = (struct auth_jwt_verifier){.store = st, .pol = &pol};
    struct auth_config cfg = {.verify = counting_verify,
                              .verify_ctx = c,
                              .key_fp = counting_fp,
                              .redis_host = redis ? "127.0.0.1" : NULL,
                              .redis_port = redis ? fixture_port() : 0,
                              .redis = {.timeout_ms = 500},
                              .hmac_key = hmac_key,
                              .hmac_key_len = sizeof(hmac_key)};
    struct auth_worker *aw = auth_worker_new(&cfg, auth_now_ms());
    cr_assert(aw);
    return aw;
}

static struct auth_worker *pod(struct counting *c, bool redis)
{
    return pod_on(c, redis, store);
}

static void drive(struct auth_worker **aws, int n, int ms)
{
    int64_t t0 = auth_now_ms();
    while (auth_now_ms() - t0 < ms) {
        struct pollfd fds[4];
        for (int i = 0; i < n; i++) {
            auth_worker_tick(aws[i], auth_now_ms());
            auth_worker_pollfds(aws[i], fds + 2 * i);
        }
        if (poll(fds, (nfds_t)(2 * n), 2) > 0)
            for (int i = 0; i < n; i++)
                auth_worker_on_poll(aws[i], fds + 2 * i, auth_now_ms());
    }
}

static void ready(struct auth_worker *aw)
{
    for (int i = 0; i < 600 && !auth_worker_subscribed(aw); i++)
        drive(&aw, 1, 5);
    cr_assert(auth_worker_subscribed(aw));
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

static enum auth_status check(struct auth_worker *aw, const char *tok, size_t len,
                              struct jwt_result *out)
{
    struct done d = {0};
    enum auth_status st = auth_check(aw, tok, len, auth_now_ms(), on_done, &d, out);
    if (st != AUTH_PENDING)
        return st;
    for (int i = 0; i < 1500 && !d.calls; i++)
        drive(&aw, 1, 2);
    cr_assert_eq(d.calls, 1);
    *out = d.res;
    return d.st;
}

static size_t mint(char *out, EVP_PKEY *k, const char *kid, const char *user, const char *jti,
                   long long exp)
{
    char claims[512];
    snprintf(claims, sizeof(claims), "{\"sub\":\"%s\",\"exp\":%lld,\"jti\":\"%s-%s\"}", user, exp,
             jti, nonce);
    return tu_mint(out, k == ec_key ? KEYS_ALG_ES256 : KEYS_ALG_RS256, k, NULL, kid, NULL, claims);
}

Test(auth_jwt, second_pod_accepts_a_real_token_from_redis_without_verifying)
{
    struct counting ca = {0}, cb = {0};
    struct auth_worker *a = pod(&ca, true), *b = pod(&cb, true);
    ready(a);
    ready(b);
    static char tok[TOK_CAP];
    long long exp = auth_now_ms() / 1000 + 600;
    size_t n = mint(tok, ec_key, "ec1", "alice", "j", exp);
    struct jwt_result r;
    cr_assert_eq(check(a, tok, n, &r), AUTH_OK, "%s", jwt_reason_name(r.reason));
    cr_assert_eq(ca.calls, 1);
    drive(&a, 1, 30); /* the SET lands */
    cr_assert_eq(check(b, tok, n, &r), AUTH_OK);
    cr_assert_eq(cb.calls, 0);
    cr_assert_str_eq(r.user, "alice");
    cr_assert_eq(r.exp, exp);
    cr_assert_eq(auth_worker_counters(b)->l2_hit, 1);
    auth_worker_free(a);
    auth_worker_free(b);
    auth_jwt_verifier_deinit(&ca.v);
    auth_jwt_verifier_deinit(&cb.v);
}

Test(auth_jwt, rejects_tampered_and_expired_tokens_and_caches_the_rejection)
{
    struct counting c = {0};
    struct auth_worker *aw = pod(&c, false);
    static char tok[TOK_CAP];
    size_t n = mint(tok, rsa_key, "rsa1", "bob", "j", auth_now_ms() / 1000 + 600);
    struct jwt_result r;
    cr_assert_eq(check(aw, tok, n, &r), AUTH_OK);
    tok[n - 5] = tok[n - 5] == 'A' ? 'B' : 'A';
    cr_assert_eq(check(aw, tok, n, &r), AUTH_FAIL);
    cr_assert_eq(r.reason, JWT_E_BAD_SIGNATURE);
    cr_assert_eq(check(aw, tok, n, &r), AUTH_FAIL);
    cr_assert_eq(c.calls, 2, "the rejection came from L1");
    n = mint(tok, ec_key, "ec1", "bob", "j", auth_now_ms() / 1000 - 3600);
    cr_assert_eq(check(aw, tok, n, &r), AUTH_FAIL);
    cr_assert_eq(r.reason, JWT_E_EXPIRED);
    auth_worker_free(aw);
    auth_jwt_verifier_deinit(&c.v);
}

Test(auth_jwt, a_revoked_jti_is_rejected_by_the_other_pod)
{
    struct counting ca = {0}, cb = {0};
    struct auth_worker *a = pod(&ca, true), *b = pod(&cb, true);
    struct auth_worker *both[2] = {a, b};
    ready(a);
    ready(b);
    static char tok[TOK_CAP];
    size_t n = mint(tok, ec_key, "ec1", "carol", "rev", auth_now_ms() / 1000 + 600);
    struct jwt_result r;
    cr_assert_eq(check(b, tok, n, &r), AUTH_OK);
    char jti[64];
    snprintf(jti, sizeof(jti), "rev-%s", nonce);
    cr_assert_str_eq(r.jti, jti);
    cr_assert_eq(auth_revoke(a, AUTH_REVOKE_JTI, jti, strlen(jti), 600, auth_now_ms()), 0);
    for (int i = 0; i < 1000 && !auth_worker_counters(b)->l1_evicted; i++)
        drive(both, 2, 2);
    cr_assert_eq(auth_worker_counters(b)->l1_evicted, 1);
    cr_assert_eq(check(b, tok, n, &r), AUTH_FAIL);
    cr_assert_eq(r.reason, JWT_E_REVOKED);
    auth_worker_free(a);
    auth_worker_free(b);
    auth_jwt_verifier_deinit(&ca.v);
    auth_jwt_verifier_deinit(&cb.v);
}

Test(auth_jwt, a_key_reload_and_flush_stop_accepting_tokens_of_a_removed_key)
{
    struct counting c = {0};
    struct auth_worker *aw = pod(&c, false);
    static char tok[TOK_CAP];
    size_t n = mint(tok, ec_key, "ec1", "dave", "k", auth_now_ms() / 1000 + 600);
    struct jwt_result r;
    cr_assert_eq(check(aw, tok, n, &r), AUTH_OK);
    struct keys_set *ks = keys_set_new();
    tu_add_pub(ks, "rsa1", rsa_key);
    cr_assert_eq(keys_set_finish(ks), 0);
    keys_store_swap(store, ks);
    cr_assert_eq(check(aw, tok, n, &r), AUTH_OK, "still in L1 until the flush");
    auth_worker_flush(aw);
    cr_assert_eq(check(aw, tok, n, &r), AUTH_FAIL);
    cr_assert_eq(r.reason, JWT_E_UNKNOWN_KID);
    auth_worker_free(aw);
    auth_jwt_verifier_deinit(&c.v);
}

Test(auth_jwt, caps_the_cache_life_of_signature_only_cucm_tokens)
{
    struct counting c = {0};
    struct jwt_policy cucm;
    jwt_policy_init(&cucm);
    cucm.profile = JWT_PROFILE_CUCM;
    c.v = (struct auth_jwt_verifier){.store = store, .pol = &cucm};
    struct auth_config cfg = {.verify = counting_verify, .verify_ctx = &c};
    struct auth_worker *aw = auth_worker_new(&cfg, auth_now_ms());
    unsigned char sym[32] = {7};
    char claims[256];
    long long exp = auth_now_ms() / 1000 + 3600;
    snprintf(claims, sizeof(claims), "{\"sub\":\"erin\",\"exp\":%lld}", exp);
    struct jwt_mint_spec spec = {.alg = KEYS_ALG_RS256,
                                 .priv = rsa_key,
                                 .kid = "rsa1",
                                 .claims_json = claims,
                                 .profile = JWT_PROFILE_CUCM,
                                 .sym_key = sym};
    static char tok[TOK_CAP];
    ssize_t n = jwt_mint(&spec, tok, sizeof(tok));
    cr_assert_gt(n, 0);
    struct jwt_result r;
    int64_t now = auth_now_ms();
    cr_assert_eq(auth_check(aw, tok, (size_t)n, now, NULL, NULL, &r), AUTH_OK, "%s",
                 jwt_reason_name(r.reason));
    cr_assert(r.signature_only, "no symmetric key configured");
    cr_assert_eq(auth_check(aw, tok, (size_t)n, now + 20000, NULL, NULL, &r), AUTH_OK);
    cr_assert_eq(c.calls, 1);
    cr_assert_eq(auth_check(aw, tok, (size_t)n, now + 31000, NULL, NULL, &r), AUTH_OK);
    cr_assert_eq(c.calls, 2, "30 s cap, though the token lives an hour");
    auth_worker_free(aw);
    auth_jwt_verifier_deinit(&c.v);
}

static struct keys_set *set_of(bool with_ec)
{
    struct keys_set *ks = keys_set_new();
    if (with_ec)
        tu_add_pub(ks, "ec1", ec_key);
    tu_add_pub(ks, "rsa1", rsa_key);
    cr_assert_eq(keys_set_finish(ks), 0);
    return ks;
}

Test(auth_jwt, l2_entries_made_under_a_removed_key_are_a_miss_after_a_reload)
{
    /* Each pod has its own store loaded with equal key sets, as pods loading the same files. */
    struct keys_store *sa = keys_store_new(set_of(true)), *sb = keys_store_new(set_of(true));
    struct keys_store *sc = keys_store_new(set_of(true));
    struct counting ca = {0}, cb = {0}, cc = {0};
    struct auth_worker *a = pod_on(&ca, true, sa), *b = pod_on(&cb, true, sb);
    struct auth_worker *c = pod_on(&cc, true, sc);
    ready(a);
    ready(b);
    ready(c);
    static char tok[TOK_CAP];
    size_t n = mint(tok, ec_key, "ec1", "frank", "rot", auth_now_ms() / 1000 + 600);
    struct jwt_result r;
    cr_assert_eq(check(a, tok, n, &r), AUTH_OK, "%s", jwt_reason_name(r.reason));
    drive(&a, 1, 30); /* the SET lands */
    cr_assert_eq(check(c, tok, n, &r), AUTH_OK);
    cr_assert_eq(auth_worker_counters(c)->l2_hit, 1, "same key files: same L2 names");
    keys_store_swap(sa, set_of(false));
    keys_store_swap(sb, set_of(false));
    auth_worker_flush(a);
    cr_assert_eq(check(b, tok, n, &r), AUTH_FAIL);
    cr_assert_eq(r.reason, JWT_E_UNKNOWN_KID);
    cr_assert_eq(auth_worker_counters(b)->l2_hit, 0);
    cr_assert_eq(auth_worker_counters(b)->l2_bad_hmac, 0, "a clean miss, no alarm");
    cr_assert_eq(cb.calls, 1, "verified under the new set");
    cr_assert_eq(check(a, tok, n, &r), AUTH_FAIL);
    cr_assert_eq(r.reason, JWT_E_UNKNOWN_KID);
    auth_worker_free(a);
    auth_worker_free(b);
    auth_worker_free(c);
    auth_jwt_verifier_deinit(&ca.v);
    auth_jwt_verifier_deinit(&cb.v);
    auth_jwt_verifier_deinit(&cc.v);
    keys_store_free(sa);
    keys_store_free(sb);
    keys_store_free(sc);
}

Test(auth_jwt, checks_the_jti_revocation_in_the_same_round_trip_as_the_cache_entry)
{
    struct counting ca = {0}, cb = {0};
    struct auth_worker *a = pod(&ca, true), *b = pod(&cb, true);
    ready(a);
    ready(b);
    static char ok_tok[TOK_CAP], rev_tok[TOK_CAP];
    long long exp = auth_now_ms() / 1000 + 600;
    size_t nok = mint(ok_tok, ec_key, "ec1", "dave", "kept", exp);
    size_t nrev = mint(rev_tok, rsa_key, "rsa1", "erin", "gone", exp);
    char jti[64];
    snprintf(jti, sizeof(jti), "gone-%s", nonce);
    cr_assert_geq(auth_revoke_blocking("127.0.0.1", fixture_port(), AUTH_REVOKE_JTI, jti,
                                       strlen(jti), 60, 1000),
                  0);
    struct jwt_result r;
    /* pod a: both new (a verify each); pod b: the good one from L2, the revoked one verified */
    cr_assert_eq(check(a, ok_tok, nok, &r), AUTH_OK, "%s", jwt_reason_name(r.reason));
    cr_assert_eq(check(a, rev_tok, nrev, &r), AUTH_FAIL);
    cr_assert_eq(r.reason, JWT_E_REVOKED);
    drive(&a, 1, 30); /* the SET of the good one lands */
    cr_assert_eq(check(b, ok_tok, nok, &r), AUTH_OK);
    cr_assert_eq(auth_worker_counters(b)->l2_hit, 1);
    cr_assert_eq(check(b, rev_tok, nrev, &r), AUTH_FAIL);
    cr_assert_eq(r.reason, JWT_E_REVOKED);
    cr_assert_eq(ca.calls, 2);
    cr_assert_eq(auth_worker_counters(a)->l2_jti_lookups, 0, "a second round trip for the jti");
    cr_assert_eq(auth_worker_counters(b)->l2_jti_lookups, 0, "a second round trip for the jti");
    auth_worker_free(a);
    auth_worker_free(b);
    auth_jwt_verifier_deinit(&ca.v);
    auth_jwt_verifier_deinit(&cb.v);
}
