// SPDX-License-Identifier: MIT
// L1 cache tests: hits and misses, expiry, eviction order, collision safety, revocation scans.
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/cache.h"

static const uint8_t dig_a[CACHE_DIGEST_LEN] = {1, 2, 3};
static const uint8_t dig_b[CACHE_DIGEST_LEN] = {4, 5, 6};

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

    cr_assert_eq(cache_l1_insert(l1, tok, strlen(tok), h, dig_a, &in, 1005, 1000), 0);
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

    cr_assert_eq(cache_l1_insert(l1, "token-A", 7, h, dig_a, &a, 2000, 1000), 0);
    cr_assert_eq(cache_l1_lookup(l1, "token-B", 7, h, 1000, &out, NULL), CACHE_L1_MISS);
    cr_assert_eq(cache_l1_lookup(l1, "token-A-longer", 14, h, 1000, &out, NULL), CACHE_L1_MISS);
    cr_assert_eq(cache_l1_insert(l1, "token-B", 7, h, dig_b, &b, 2000, 1000), 0);
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
    cache_l1_insert(l1, "A", 1, ha, dig_a, &a, 2000, 1000);
    cache_l1_insert(l1, "B", 1, hb, dig_b, &b, 2000, 1000);
    cache_l1_insert(l1, "C", 1, hc, dig_b, &c, 2000, 1000);

    cr_assert_eq(cache_l1_evict_jti(l1, "jti-", 4), 0);
    cr_assert_eq(cache_l1_evict_jti(l1, "", 0), 0);
    cr_assert_eq(cache_l1_evict_jti(l1, "jti-1", 5), 1);
    cr_assert_eq(cache_l1_lookup(l1, "A", 1, ha, 1000, &out, NULL), CACHE_L1_MISS);
    cr_assert_eq(cache_l1_lookup(l1, "B", 1, hb, 1000, &out, NULL), CACHE_L1_POSITIVE);
    cr_assert_eq(cache_l1_clear(l1, false), 1);
    cr_assert_eq(cache_l1_lookup(l1, "C", 1, hc, 1000, &out, NULL), CACHE_L1_NEGATIVE);
    cr_assert_eq(cache_l1_evict_digest(l1, dig_b), 1);
    cr_assert_eq(cache_l1_count(l1), 0);
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
