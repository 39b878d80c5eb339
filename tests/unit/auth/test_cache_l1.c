// SPDX-License-Identifier: MIT
// L1 cache tests: hits and misses, expiry, eviction order, collision safety, revocation scans.
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "auth/cache.h"

static const uint8_t dig_a[CACHE_DIGEST_LEN] = {1, 2, 3};
static const uint8_t dig_b[CACHE_DIGEST_LEN] = {4, 5, 6};

/* The real SHA-256 of a token: a negative entry is identified by it alone. */
static void sha(const char *tok, size_t len, uint8_t out[CACHE_DIGEST_LEN])
{
    unsigned int n = 0;
    cr_assert_eq(EVP_Digest(tok, len, out, &n, EVP_sha256(), NULL), 1);
}

static struct jwt_result ok_result(const char *user, const char *jti)
{
    struct jwt_result r = {.reason = JWT_OK, .exp = 5000, .scope_bits = 3};
    r.user_len = strlen(user);
    memcpy(r.user, user, r.user_len + 1);
    memcpy(r.jti, jti, strlen(jti) + 1);
    return r;
}

Test(cache_l1, misses_then_hits_with_the_stored_result)
{
    struct cache_l1 *l1 = cache_l1_new(64, 4096, 42);
    const char *tok = "header.payload.signature";
    uint64_t h = cache_l1_hash(l1, tok, strlen(tok));
    struct jwt_result out, in = ok_result("alice", "j1");
    uint8_t d[CACHE_DIGEST_LEN];

    cr_assert_eq(cache_l1_lookup(l1, tok, strlen(tok), h, 1000, &out, NULL), CACHE_L1_MISS);
    cr_assert_eq(cache_l1_insert(l1, tok, strlen(tok), h, dig_a, &in, 1300, 1000), 0);
    cr_assert_eq(cache_l1_lookup(l1, tok, strlen(tok), h, 1000, &out, d), CACHE_L1_POSITIVE);
    cr_assert_str_eq(out.user, "alice");
    cr_assert_str_eq(out.jti, "j1");
    cr_assert_eq(out.scope_bits, 3);
    cr_assert_eq(memcmp(d, dig_a, sizeof(d)), 0);
    cr_assert_eq(cache_l1_count(l1), 1);
    cache_l1_free(l1);
}

Test(cache_l1, returns_negative_entries_with_their_reason)
{
    struct cache_l1 *l1 = cache_l1_new(64, 4096, 42);
    const char *tok = "bad.token.sig";
    uint64_t h = cache_l1_hash(l1, tok, strlen(tok));
    struct jwt_result out, in = {.reason = JWT_E_BAD_SIGNATURE};
    uint8_t d[CACHE_DIGEST_LEN];
    sha(tok, strlen(tok), d);

    cr_assert_eq(cache_l1_insert(l1, tok, strlen(tok), h, d, &in, 1005, 1000), 0);
    cr_assert_eq(cache_l1_lookup(l1, tok, strlen(tok), h, 1004, &out, NULL), CACHE_L1_NEGATIVE);
    cr_assert_eq(out.reason, JWT_E_BAD_SIGNATURE);
    cache_l1_free(l1);
}

Test(cache_l1, treats_an_expired_entry_as_a_miss_and_drops_it)
{
    struct cache_l1 *l1 = cache_l1_new(64, 4096, 42);
    const char *tok = "a.b.c";
    uint64_t h = cache_l1_hash(l1, tok, 5);
    struct jwt_result out, in = ok_result("bob", "");

    cr_assert_eq(cache_l1_insert(l1, tok, 5, h, dig_a, &in, 1010, 1000), 0);
    cr_assert_eq(cache_l1_lookup(l1, tok, 5, h, 1009, &out, NULL), CACHE_L1_POSITIVE);
    cr_assert_eq(cache_l1_lookup(l1, tok, 5, h, 1010, &out, NULL), CACHE_L1_MISS);
    cr_assert_eq(cache_l1_count(l1), 0);
    cr_assert_eq(cache_l1_insert(l1, tok, 5, h, dig_a, &in, 1000, 1000), -EINVAL);
    cache_l1_free(l1);
}

Test(cache_l1, evicts_the_entry_that_expires_first_when_a_set_is_full)
{
    /* Capacity 8 = one set: every token competes for the same eight ways. */
    struct cache_l1 *l1 = cache_l1_new(8, 4096, 7);
    char toks[9][16];
    struct jwt_result out, in = ok_result("u", "");
    for (int i = 0; i < 9; i++) {
        snprintf(toks[i], sizeof(toks[i]), "tok-%d", i);
        /* token 3 expires first */
        int64_t exp = i == 3 ? 1100 : 2000 + i;
        size_t n = strlen(toks[i]);
        cr_assert_eq(
            cache_l1_insert(l1, toks[i], n, cache_l1_hash(l1, toks[i], n), dig_a, &in, exp, 1000),
            0);
    }
    cr_assert_eq(cache_l1_count(l1), 8);
    for (int i = 0; i < 9; i++) {
        size_t n = strlen(toks[i]);
        enum cache_l1_hit hit =
            cache_l1_lookup(l1, toks[i], n, cache_l1_hash(l1, toks[i], n), 1050, &out, NULL);
        cr_assert_eq(hit, i == 3 ? CACHE_L1_MISS : CACHE_L1_POSITIVE, "token %d", i);
    }
    cache_l1_free(l1);
}

Test(cache_l1, reuses_an_expired_way_before_evicting_a_live_one)
{
    struct cache_l1 *l1 = cache_l1_new(8, 4096, 7);
    char t[16];
    struct jwt_result out, in = ok_result("u", "");
    for (int i = 0; i < 8; i++) {
        snprintf(t, sizeof(t), "tok-%d", i);
        cache_l1_insert(l1, t, strlen(t), cache_l1_hash(l1, t, strlen(t)), dig_a, &in,
                        i == 5 ? 1001 : 1500 - i, 1000);
    }
    cr_assert_eq(cache_l1_insert(l1, "new", 3, cache_l1_hash(l1, "new", 3), dig_a, &in, 3000, 1200),
                 0);
    /* token 7 expires earliest among the live ones (1493) and survives: 5 (expired) was reused */
    cr_assert_eq(cache_l1_lookup(l1, "tok-7", 5, cache_l1_hash(l1, "tok-7", 5), 1200, &out, NULL),
                 CACHE_L1_POSITIVE);
    cr_assert_eq(cache_l1_lookup(l1, "new", 3, cache_l1_hash(l1, "new", 3), 1200, &out, NULL),
                 CACHE_L1_POSITIVE);
    cache_l1_free(l1);
}

Test(cache_l1, never_hits_a_different_token_with_the_same_hash)
{
    struct cache_l1 *l1 = cache_l1_new(64, 4096, 42);
    const uint64_t h = 0x1234567890abcdefull; /* forced collision */
    struct jwt_result out, a = ok_result("alice", ""), b = {.reason = JWT_E_EXPIRED};
    uint8_t db[CACHE_DIGEST_LEN];
    sha("token-B", 7, db);

    cr_assert_eq(cache_l1_insert(l1, "token-A", 7, h, dig_a, &a, 2000, 1000), 0);
    cr_assert_eq(cache_l1_lookup(l1, "token-B", 7, h, 1000, &out, NULL), CACHE_L1_MISS);
    cr_assert_eq(cache_l1_lookup(l1, "token-A-longer", 14, h, 1000, &out, NULL), CACHE_L1_MISS);
    cr_assert_eq(cache_l1_insert(l1, "token-B", 7, h, db, &b, 2000, 1000), 0);
    /* the negative entry is keyed by its digest: another token with the same hash misses */
    cr_assert_eq(cache_l1_lookup(l1, "token-C", 7, h, 1000, &out, NULL), CACHE_L1_MISS);
    cr_assert_eq(cache_l1_lookup(l1, "token-A", 7, h, 1000, &out, NULL), CACHE_L1_POSITIVE);
    cr_assert_str_eq(out.user, "alice");
    cr_assert_eq(cache_l1_lookup(l1, "token-B", 7, h, 1000, &out, NULL), CACHE_L1_NEGATIVE);
    cr_assert_eq(out.reason, JWT_E_EXPIRED);
    cr_assert_eq(cache_l1_count(l1), 2);
    cache_l1_free(l1);
}

Test(cache_l1, replaces_the_entry_of_the_same_token)
{
    struct cache_l1 *l1 = cache_l1_new(64, 4096, 42);
    struct jwt_result out, a = ok_result("alice", ""), b = ok_result("alice2", "");
    uint64_t h = cache_l1_hash(l1, "t", 1);
    cache_l1_insert(l1, "t", 1, h, dig_a, &a, 2000, 1000);
    cache_l1_insert(l1, "t", 1, h, dig_a, &b, 2000, 1000);
    cr_assert_eq(cache_l1_count(l1), 1);
    cr_assert_eq(cache_l1_lookup(l1, "t", 1, h, 1000, &out, NULL), CACHE_L1_POSITIVE);
    cr_assert_str_eq(out.user, "alice2");
    cache_l1_free(l1);
}

Test(cache_l1, refuses_tokens_longer_than_the_maximum)
{
    struct cache_l1 *l1 = cache_l1_new(64, 16, 42);
    struct jwt_result in = ok_result("u", "");
    const char *t = "0123456789abcdefX";
    cr_assert_eq(cache_l1_insert(l1, t, 17, cache_l1_hash(l1, t, 17), dig_a, &in, 2000, 1000),
                 -E2BIG);
    cr_assert_eq(cache_l1_insert(l1, t, 16, cache_l1_hash(l1, t, 16), dig_a, &in, 2000, 1000), 0);
    cache_l1_free(l1);
}

Test(cache_l1, evicts_by_jti_by_digest_and_clears_positives)
{
    struct cache_l1 *l1 = cache_l1_new(64, 4096, 42);
    struct jwt_result out, a = ok_result("a", "jti-1"), b = ok_result("b", ""),
                           c = {.reason = JWT_E_BAD_SIGNATURE};
    uint64_t ha = cache_l1_hash(l1, "A", 1), hb = cache_l1_hash(l1, "B", 1),
             hc = cache_l1_hash(l1, "C", 1);
    uint8_t dc[CACHE_DIGEST_LEN];
    sha("C", 1, dc);
    cache_l1_insert(l1, "A", 1, ha, dig_a, &a, 2000, 1000);
    cache_l1_insert(l1, "B", 1, hb, dig_b, &b, 2000, 1000);
    cache_l1_insert(l1, "C", 1, hc, dc, &c, 2000, 1000);

    cr_assert_eq(cache_l1_evict_jti(l1, "jti-", 4), 0);
    cr_assert_eq(cache_l1_evict_jti(l1, "", 0), 0);
    cr_assert_eq(cache_l1_evict_jti(l1, "jti-1", 5), 1);
    cr_assert_eq(cache_l1_lookup(l1, "A", 1, ha, 1000, &out, NULL), CACHE_L1_MISS);
    cr_assert_eq(cache_l1_lookup(l1, "B", 1, hb, 1000, &out, NULL), CACHE_L1_POSITIVE);
    cr_assert_eq(cache_l1_clear(l1, false), 1);
    cr_assert_eq(cache_l1_lookup(l1, "C", 1, hc, 1000, &out, NULL), CACHE_L1_NEGATIVE);
    cr_assert_eq(cache_l1_evict_digest(l1, dc), 1);
    cr_assert_eq(cache_l1_count(l1), 0);
    cache_l1_free(l1);
}

/* A garbage token of the flood's size (issue 12: 7.7 KB), distinct per `i`. */
static char *garbage(int i, size_t len)
{
    char *t = malloc(len);
    memset(t, 'A' + i % 26, len);
    snprintf(t, 16, "g%08d.", i);
    t[9] = '.';
    return t;
}

Test(cache_l1, keeps_no_token_copy_for_negative_entries)
{
    enum { N = 2000, LEN = 7700 };
    struct cache_l1 *l1 = cache_l1_new(4096, 8192, 42);
    struct jwt_result out, bad = {.reason = JWT_E_BAD_SIGNATURE};
    for (int i = 0; i < N; i++) {
        char *t = garbage(i, LEN);
        uint8_t d[CACHE_DIGEST_LEN];
        sha(t, LEN, d);
        cr_assert_eq(cache_l1_insert(l1, t, LEN, cache_l1_hash(l1, t, LEN), d, &bad, 1005, 1000),
                     0);
        free(t);
    }
    /* 2,000 rejected 7.7 KB tokens held 15 MB of copies before; now none */
    cr_assert_eq(cache_l1_bytes(l1), 0);
    cr_assert_gt(cache_l1_count(l1), N / 2);
    char *t = garbage(N - 1, LEN);
    cr_assert_eq(cache_l1_lookup(l1, t, LEN, cache_l1_hash(l1, t, LEN), 1001, &out, NULL),
                 CACHE_L1_NEGATIVE, "a negative entry still answers by digest");
    cr_assert_eq(out.reason, JWT_E_BAD_SIGNATURE);
    free(t);
    cache_l1_free(l1);
}

Test(cache_l1, bounds_token_copies_in_bytes)
{
    struct cache_l1 *l1 = cache_l1_new(64, 8192, 42);
    cache_l1_set_max_bytes(l1, 10000);
    struct jwt_result out, in = ok_result("u", "");
    char *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = garbage(i, 4000);
    cr_assert_eq(
        cache_l1_insert(l1, t[0], 4000, cache_l1_hash(l1, t[0], 4000), dig_a, &in, 1010, 1000), 0);
    cr_assert_eq(
        cache_l1_insert(l1, t[1], 4000, cache_l1_hash(l1, t[1], 4000), dig_a, &in, 1500, 1000), 0);
    cr_assert_eq(cache_l1_bytes(l1), 8000);
    cr_assert_eq(
        cache_l1_insert(l1, t[2], 4000, cache_l1_hash(l1, t[2], 4000), dig_a, &in, 1500, 1000),
        -ENOSPC, "over the byte bound: not cached");
    cr_assert_eq(cache_l1_bytes(l1), 8000);
    cr_assert_eq(cache_l1_stats(l1)->refused_bytes, 1);
    /* once t[0] expired its bytes make room (the insert drops expired entries itself) */
    cr_assert_eq(
        cache_l1_insert(l1, t[2], 4000, cache_l1_hash(l1, t[2], 4000), dig_a, &in, 1500, 1020), 0);
    cr_assert_eq(cache_l1_bytes(l1), 8000);
    cr_assert_eq(cache_l1_lookup(l1, t[2], 4000, cache_l1_hash(l1, t[2], 4000), 1020, &out, NULL),
                 CACHE_L1_POSITIVE);
    for (int i = 0; i < 3; i++)
        free(t[i]);
    cache_l1_free(l1);
}

Test(cache_l1, gives_token_copies_back_when_entries_expire_or_are_evicted)
{
    struct cache_l1 *l1 = cache_l1_new(1024, 8192, 42);
    struct jwt_result in = ok_result("u", ""), bad = {.reason = JWT_E_EXPIRED};
    for (int i = 0; i < 100; i++) {
        char *t = garbage(i, 7700);
        cache_l1_insert(l1, t, 7700, cache_l1_hash(l1, t, 7700), dig_a, &in, 1010, 1000);
        free(t);
    }
    size_t held = cache_l1_bytes(l1);
    cr_assert_gt(held, 50 * 7700);
    /* nothing expired yet: a sweep frees nothing */
    cr_assert_eq(cache_l1_sweep(l1, 1005, 1024), 0);
    /* expired, never looked up again: the sweep (a bounded clock hand) frees every copy */
    size_t freed = cache_l1_sweep(l1, 1010, 512);
    freed += cache_l1_sweep(l1, 1010, 512);
    cr_assert_eq(freed, held);
    cr_assert_eq(cache_l1_bytes(l1), 0);
    cr_assert_eq(cache_l1_count(l1), 0);
    /* replacing a positive entry by a negative one for the same token frees its copy */
    char *t = garbage(7, 7700);
    uint8_t d[CACHE_DIGEST_LEN];
    sha(t, 7700, d);
    uint64_t h = cache_l1_hash(l1, t, 7700);
    cr_assert_eq(cache_l1_insert(l1, t, 7700, h, d, &in, 3000, 2000), 0);
    cr_assert_eq(cache_l1_bytes(l1), 7700);
    cr_assert_eq(cache_l1_insert(l1, t, 7700, h, d, &bad, 3000, 2000), 0);
    cr_assert_eq(cache_l1_bytes(l1), 0);
    cr_assert_eq(cache_l1_count(l1), 1);
    free(t);
    cache_l1_free(l1);
}

/* Entries live in a pool that grows with the most entries live at once, not with the table's
 * capacity (a token's slot is random: entries kept in the table touched a page each), and a
 * dropped, expired, evicted or refused entry is reused. */
Test(cache_l1, allocates_entries_for_what_is_live_not_for_the_capacity)
{
    struct cache_l1 *l1 = cache_l1_new(65536, 8192, 42);
    struct jwt_result out, in = ok_result("u", "j"), bad = {.reason = JWT_E_EXPIRED};
    char tok[32];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(tok, sizeof(tok), "tok-%d", i);
        uint8_t d[CACHE_DIGEST_LEN];
        sha(tok, (size_t)n, d); /* a negative entry is found by the token's digest */
        cr_assert_eq(cache_l1_insert(l1, tok, (size_t)n, cache_l1_hash(l1, tok, (size_t)n), d,
                                     i % 2 ? &in : &bad, 1010, 1000),
                     0);
    }
    cr_assert_eq(cache_l1_count(l1), 1000);
    cr_assert_eq(cache_l1_stats(l1)->pool, 1000, "pool %llu",
                 (unsigned long long)cache_l1_stats(l1)->pool);
    /* every one still answers for itself */
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(tok, sizeof(tok), "tok-%d", i);
        uint8_t d[CACHE_DIGEST_LEN];
        sha(tok, (size_t)n, d);
        if (i % 2 == 0) { /* inserted again: replaces itself */
            cr_assert_eq(cache_l1_insert(l1, tok, (size_t)n, cache_l1_hash(l1, tok, (size_t)n), d,
                                         &bad, 1010, 1000),
                         0);
            cr_assert_eq(cache_l1_lookup(l1, tok, (size_t)n, cache_l1_hash(l1, tok, (size_t)n),
                                         1000, &out, NULL),
                         CACHE_L1_NEGATIVE);
        } else {
            cr_assert_eq(cache_l1_lookup(l1, tok, (size_t)n, cache_l1_hash(l1, tok, (size_t)n),
                                         1000, &out, NULL),
                         CACHE_L1_POSITIVE);
            cr_assert_str_eq(out.user, "u");
        }
    }
    cr_assert_eq(cache_l1_stats(l1)->pool, 1000, "replacing an entry reuses its place");
    /* all expire; 1,000 new tokens take the same entries */
    while (cache_l1_sweep(l1, 1010, 65536) > 0 || cache_l1_count(l1) > 0)
        ;
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(tok, sizeof(tok), "new-%d", i);
        cr_assert_eq(cache_l1_insert(l1, tok, (size_t)n, cache_l1_hash(l1, tok, (size_t)n), dig_a,
                                     &in, 3000, 2000),
                     0);
    }
    cr_assert_eq(cache_l1_count(l1), 1000);
    cr_assert_eq(cache_l1_stats(l1)->pool, 1000);
    /* refused for bytes: the entry taken for it goes back each time */
    cache_l1_set_max_bytes(l1, cache_l1_bytes(l1));
    for (int i = 0; i < 100; i++) {
        int n = snprintf(tok, sizeof(tok), "over-%d", i);
        cr_assert_eq(cache_l1_insert(l1, tok, (size_t)n, cache_l1_hash(l1, tok, (size_t)n), dig_a,
                                     &in, 3000, 2000),
                     -ENOSPC);
    }
    cr_assert_leq(cache_l1_stats(l1)->pool, 1001);
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(tok, sizeof(tok), "new-%d", i);
        cr_assert_eq(cache_l1_lookup(l1, tok, (size_t)n, cache_l1_hash(l1, tok, (size_t)n), 2000,
                                     &out, NULL),
                     CACHE_L1_POSITIVE, "new-%d lost", i);
    }
    cache_l1_free(l1);
}

/* Random inserts (valid and rejected), lookups, sweeps and evictions on a small cache, against a
 * model of what was last inserted for each token: a hit is always that token's latest result and
 * not expired, and the pool never outgrows the table. */
Test(cache_l1, random_operations_never_answer_for_another_token)
{
    enum { TOKENS = 300, STEPS = 40000 };
    struct cache_l1 *l1 = cache_l1_new(64, 64, 7);
    struct model {
        bool present; /* inserted since the last eviction the model knows of */
        bool positive;
        int64_t expires;
        int serial;
    } m[TOKENS] = {{0}};
    uint64_t x = 88172645463325252ull;
    int64_t now = 1000;
    for (int step = 0; step < STEPS; step++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int i = (int)(x % TOKENS), op = (int)((x >> 20) % 10);
        char tok[32];
        int n = snprintf(tok, sizeof(tok), "t%d.%s", i, i % 3 ? "pp" : "p");
        uint8_t d[CACHE_DIGEST_LEN];
        sha(tok, (size_t)n, d);
        uint64_t h = cache_l1_hash(l1, tok, (size_t)n);
        if (op < 4) { /* insert */
            bool pos = (x >> 40) & 1;
            char user[16];
            snprintf(user, sizeof(user), "u%d", step);
            struct jwt_result r = ok_result(user, "");
            if (!pos)
                r.reason = JWT_E_EXPIRED;
            int64_t exp = now + 1 + (int64_t)((x >> 30) % 50);
            int rc = cache_l1_insert(l1, tok, (size_t)n, h, d, &r, exp, now);
            cr_assert_eq(rc, 0, "insert %d: %d", step, rc);
            m[i] = (struct model){true, pos, exp, step};
        } else if (op < 8) { /* lookup */
            struct jwt_result out;
            enum cache_l1_hit hit = cache_l1_lookup(l1, tok, (size_t)n, h, now, &out, NULL);
            if (hit != CACHE_L1_MISS) { /* a miss (evicted or expired) is allowed */
                cr_assert(m[i].present, "step %d: a hit for a token never inserted", step);
                cr_assert_lt(now, m[i].expires, "step %d: an expired hit", step);
                cr_assert_eq(hit == CACHE_L1_POSITIVE, m[i].positive, "step %d: wrong kind", step);
                char want[16];
                snprintf(want, sizeof(want), "u%d", m[i].serial);
                cr_assert_str_eq(out.user, want, "step %d: another insert's result", step);
            }
        } else if (op == 8) {
            now += (int64_t)((x >> 33) % 5);
            cache_l1_sweep(l1, now, (uint32_t)((x >> 12) % 64));
        } else if ((x >> 50) % 8 == 0) {
            cache_l1_evict_digest(l1, d);
            m[i].present = false;
        }
        cr_assert_leq(cache_l1_stats(l1)->pool, 64);
    }
    cache_l1_free(l1);
}

Test(cache_hash, depends_on_every_byte_the_length_and_the_seed)
{
    /* Exact-size heap copies: ASan catches any read past the end for every length. */
    uint8_t base[300];
    for (size_t i = 0; i < sizeof(base); i++)
        base[i] = (uint8_t)(i * 7 + 1);
    for (size_t len = 0; len <= sizeof(base); len++) {
        uint8_t *p = malloc(len ? len : 1);
        memcpy(p, base, len);
        uint64_t h = cache_hash(p, len, 1);
        cr_assert_neq(h, 0);
        cr_assert_eq(h, cache_hash(p, len, 1));
        cr_assert_neq(h, cache_hash(p, len, 2), "seed ignored at len %zu", len);
        if (len)
            cr_assert_neq(h, cache_hash(p, len - 1, 1), "length ignored at %zu", len);
        for (size_t i = 0; i < len; i++) {
            p[i] ^= 0x10;
            cr_assert_neq(h, cache_hash(p, len, 1), "byte %zu of %zu ignored", i, len);
            p[i] ^= 0x10;
        }
        free(p);
    }
}

Test(cache_hash, spreads_similar_tokens_over_the_sets)
{
    /* 4096 tokens differing in a counter, 512 sets of the top bits: no set gets crowded. */
    static unsigned counts[512];
    char t[64];
    for (int i = 0; i < 4096; i++) {
        int n = snprintf(t, sizeof(t), "eyJhbGciOiJSUzI1NiJ9.%08d.sig", i);
        counts[(cache_hash(t, (size_t)n, 99) >> 32) & 511]++;
    }
    unsigned max = 0;
    for (int i = 0; i < 512; i++)
        max = counts[i] > max ? counts[i] : max;
    cr_assert_lt(max, 24, "a set received %u of 4096 (mean 8)", max);
}
