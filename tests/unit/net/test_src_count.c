// SPDX-License-Identifier: MIT
// net/src_count.c: a peer's key (IPv4 address, IPv6 /64), counts per key against a reference,
// deletions inside probe runs (the backward shift), the bound on keys, the seed.
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "net/src_count.h"

static void key_of(uint32_t i, uint8_t key[SRC_COUNT_KEY_LEN])
{
    memset(key, 0, SRC_COUNT_KEY_LEN);
    key[10] = key[11] = 0xff; /* ::ffff:10.x.y.z */
    key[12] = 10;
    key[13] = (uint8_t)(i >> 16);
    key[14] = (uint8_t)(i >> 8);
    key[15] = (uint8_t)i;
}

static void key_parse(const char *text, uint8_t out[SRC_COUNT_KEY_LEN])
{
    uint8_t a[SRC_COUNT_KEY_LEN];
    struct in_addr v4;
    if (inet_pton(AF_INET, text, &v4) == 1) {
        memset(a, 0, sizeof(a));
        a[10] = a[11] = 0xff;
        memcpy(a + 12, &v4, 4);
    } else {
        cr_assert_eq(inet_pton(AF_INET6, text, a), 1, "%s", text);
    }
    src_count_key_of_peer(a, out);
}

Test(src_count, a_peer_is_an_ipv4_address_or_an_ipv6_slash_64)
{
    static const struct {
        const char *a, *b;
        bool same;
    } rows[] = {
        {"192.0.2.1", "192.0.2.1", true},
        {"192.0.2.1", "192.0.2.2", false}, /* IPv4: each address its own */
        {"2001:db8::1", "2001:db8::2", true},
        {"2001:db8::1", "2001:db8::ffff:ffff:ffff:ffff", true}, /* anywhere in the /64 */
        {"2001:db8::1", "2001:db8:0:1::1", false},              /* the next /64 */
        {"::ffff:192.0.2.1", "192.0.2.1", true},                /* mapped is IPv4 */
        {"::1", "::2", true},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint8_t ka[SRC_COUNT_KEY_LEN], kb[SRC_COUNT_KEY_LEN];
        key_parse(rows[i].a, ka);
        key_parse(rows[i].b, kb);
        cr_assert_eq(memcmp(ka, kb, sizeof(ka)) == 0, rows[i].same, "%s vs %s", rows[i].a,
                     rows[i].b);
    }
}

Test(src_count, counts_each_key_and_frees_its_bucket_at_zero)
{
    struct src_count t;
    cr_assert_eq(src_count_init(&t, 4), 0);
    uint8_t a[SRC_COUNT_KEY_LEN], b[SRC_COUNT_KEY_LEN];
    key_of(1, a);
    key_of(2, b);
    cr_assert_eq(src_count_get(&t, a), 0);
    cr_assert_eq(src_count_inc(&t, a), 1);
    cr_assert_eq(src_count_inc(&t, a), 2);
    cr_assert_eq(src_count_inc(&t, b), 1);
    cr_assert_eq(t.used, 2);
    src_count_dec(&t, a);
    cr_assert_eq(src_count_get(&t, a), 1);
    src_count_dec(&t, a);
    cr_assert_eq(src_count_get(&t, a), 0);
    cr_assert_eq(t.used, 1, "a's bucket is free at 0");
    src_count_dec(&t, a); /* none: no-op */
    cr_assert_eq(src_count_get(&t, a), 0);
    cr_assert_eq(src_count_get(&t, b), 1);
    src_count_deinit(&t);
    src_count_deinit(&t); /* twice: no-op */
}

Test(src_count, refuses_a_new_key_past_its_bound_and_keeps_counting_the_old_ones)
{
    struct src_count t;
    cr_assert_eq(src_count_init(&t, 3), 0);
    uint8_t k[SRC_COUNT_KEY_LEN];
    for (uint32_t i = 0; i < 3; i++) {
        key_of(i, k);
        cr_assert_eq(src_count_inc(&t, k), 1);
    }
    key_of(3, k);
    cr_assert_eq(src_count_inc(&t, k), 0, "a fourth key over a bound of 3");
    cr_assert_eq(src_count_get(&t, k), 0);
    key_of(0, k);
    cr_assert_eq(src_count_inc(&t, k), 2, "a key already counted still counts");
    src_count_dec(&t, k);
    src_count_dec(&t, k);
    key_of(3, k);
    cr_assert_eq(src_count_inc(&t, k), 1, "room again once one key is gone");
    src_count_deinit(&t);
}

/* Random increments and decrements over more keys than buckets' worth of short runs, checked
 * against a plain array after every step: a wrong backward shift loses or duplicates a key. */
Test(src_count, matches_a_reference_under_random_churn)
{
    enum { KEYS = 700, STEPS = 200000, MAX = 512 };
    static uint32_t ref[KEYS];
    memset(ref, 0, sizeof(ref));
    struct src_count t;
    cr_assert_eq(src_count_init(&t, MAX), 0);
    uint64_t rng = 0x243f6a8885a308d3ull;
    uint32_t live = 0;
    for (int s = 0; s < STEPS; s++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        uint32_t i = (uint32_t)(rng % KEYS);
        uint8_t k[SRC_COUNT_KEY_LEN];
        key_of(i, k);
        if ((rng >> 32) % 2 == 0) {
            uint32_t n = src_count_inc(&t, k);
            if (ref[i] == 0 && live == MAX) {
                cr_assert_eq(n, 0, "step %d: key %u over the bound", s, i);
                continue;
            }
            live += ref[i] == 0;
            cr_assert_eq(n, ++ref[i], "step %d: key %u", s, i);
        } else {
            src_count_dec(&t, k);
            if (ref[i] > 0 && --ref[i] == 0)
                live--;
        }
        if (s % 997 == 0) {
            for (uint32_t j = 0; j < KEYS; j++) {
                key_of(j, k);
                cr_assert_eq(src_count_get(&t, k), ref[j], "step %d: key %u", s, j);
            }
            cr_assert_eq(t.used, live);
        }
    }
    src_count_deinit(&t);
}

Test(src_count, two_tables_place_the_same_keys_differently)
{
    struct src_count a, b;
    cr_assert_eq(src_count_init(&a, 64), 0);
    cr_assert_eq(src_count_init(&b, 64), 0);
    uint8_t k[SRC_COUNT_KEY_LEN];
    unsigned same = 0;
    for (uint32_t i = 0; i < 64; i++) {
        key_of(i, k);
        src_count_inc(&a, k);
        src_count_inc(&b, k);
    }
    for (uint32_t i = 0; i <= a.mask; i++)
        same += a.e[i].n == b.e[i].n &&
                (a.e[i].n == 0 || memcmp(a.e[i].key, b.e[i].key, SRC_COUNT_KEY_LEN) == 0);
    cr_assert_lt(same, a.mask + 1, "random seeds: the layouts differ");
    src_count_deinit(&a);
    src_count_deinit(&b);
}
