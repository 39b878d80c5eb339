// SPDX-License-Identifier: MIT
// Per-source verification budget: token buckets that refill, a table that stays bounded, and
// auth_check_from() refusing an L1 miss over the budget without a verify (issue 12); the worker's
// budget over every source together (issue 15).
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/budget.h"

static void addr(uint32_t n, uint8_t out[BUDGET_ADDR_LEN])
{
    memset(out, 0, BUDGET_ADDR_LEN);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, &n, 4);
}

Test(budget, spends_the_burst_then_refills_at_the_rate)
{
    struct budget *b = budget_new(10, 5, 64, 1); /* 10/s, burst 5 */
    uint8_t a[BUDGET_ADDR_LEN], o[BUDGET_ADDR_LEN];
    addr(1, a);
    addr(2, o);
    for (int i = 0; i < 5; i++)
        cr_assert(budget_take(b, a, 1000), "burst token %d", i);
    cr_assert_not(budget_take(b, a, 1000), "bucket empty");
    cr_assert(budget_take(b, o, 1000), "another source has its own bucket");
    cr_assert_not(budget_take(b, a, 1099), "99 ms at 10/s is not one token yet");
    cr_assert(budget_take(b, a, 1100), "100 ms at 10/s is one token");
    cr_assert_not(budget_take(b, a, 1100));
    cr_assert_not(budget_take(b, a, 900), "time going back refills nothing");
    /* a long pause refills up to the burst, not beyond */
    int n = 0;
    while (n < 100 && budget_take(b, a, 60000))
        n++;
    cr_assert_eq(n, 5);
    budget_free(b);
}

Test(budget, keeps_its_table_bounded_whatever_the_number_of_sources)
{
    struct budget *b = budget_new(1, 1, 64, 7);
    uint8_t a[BUDGET_ADDR_LEN];
    for (uint32_t i = 0; i < 100000; i++) {
        addr(i, a);
        cr_assert(budget_take(b, a, 1000 + i), "a new source starts with a full bucket");
    }
    cr_assert_eq(budget_capacity(b), 64);
    cr_assert_eq(budget_count(b), 64);
    /* the most recent source is still tracked: its bucket is empty */
    addr(99999, a);
    cr_assert_not(budget_take(b, a, 1000 + 99999));
    budget_free(b);
}

Test(budget, maps_an_ipv4_peer_into_ipv6)
{
    cr_assert_lt(budget_addr_of_fd(-1, (uint8_t[BUDGET_ADDR_LEN]){0}), 0);
}

/* Every token verifies as a bad signature; calls are counted. */
static int verifies;
static enum jwt_reason bad_verify(void *ctx, const char *tok, size_t len, int64_t now,
                                  struct jwt_result *out)
{
    (void)ctx, (void)tok, (void)len, (void)now;
    verifies++;
    return out->reason = JWT_E_BAD_SIGNATURE;
}

Test(auth_budget, refuses_misses_over_the_budget_without_a_verify)
{
    struct auth_config cfg = {
        .verify = bad_verify, .l1_capacity = 1024, .source_rate = 2, .source_burst = 3};
    struct auth_worker *aw = auth_worker_new(&cfg, 1000000);
    cr_assert_not_null(aw);
    uint8_t src[BUDGET_ADDR_LEN], other[BUDGET_ADDR_LEN];
    addr(0x0100007f, src);
    addr(0x0200007f, other);
    struct jwt_result out;
    char tok[32];
    verifies = 0;
    for (int i = 0; i < 10; i++) {
        snprintf(tok, sizeof(tok), "garbage-%d", i);
        enum auth_status st = auth_check_from(aw, tok, strlen(tok), src, 1000000, NULL, NULL, &out);
        cr_assert_eq(st, i < 3 ? AUTH_FAIL : AUTH_THROTTLED, "token %d", i);
    }
    cr_assert_eq(verifies, 3, "only the burst was verified");
    cr_assert_eq(auth_worker_counters(aw)->throttled, 7);
    /* a token already known bad is answered from L1: no budget needed */
    cr_assert_eq(auth_check_from(aw, "garbage-0", 9, src, 1000000, NULL, NULL, &out), AUTH_FAIL);
    cr_assert_eq(out.reason, JWT_E_BAD_SIGNATURE);
    /* other sources and auth_check() without a source are not affected */
    cr_assert_eq(auth_check_from(aw, "x1", 2, other, 1000000, NULL, NULL, &out), AUTH_FAIL);
    cr_assert_eq(auth_check(aw, "x2", 2, 1000000, NULL, NULL, &out), AUTH_FAIL);
    cr_assert_eq(verifies, 5);
    /* half a second at 2/s: one more verification */
    cr_assert_eq(auth_check_from(aw, "y1", 2, src, 1000500, NULL, NULL, &out), AUTH_FAIL);
    cr_assert_eq(auth_check_from(aw, "y2", 2, src, 1000500, NULL, NULL, &out), AUTH_THROTTLED);
    cr_assert_eq(verifies, 6);
    auth_worker_free(aw);
}

Test(auth_budget, the_worker_budget_caps_verifications_of_every_source_together)
{
    struct auth_config cfg = {.verify = bad_verify,
                              .l1_capacity = 1024,
                              .source_rate = 100,
                              .source_burst = 100,
                              .worker_rate = 4,
                              .worker_burst = 4};
    struct auth_worker *aw = auth_worker_new(&cfg, 1000000);
    cr_assert_not_null(aw);
    struct jwt_result out;
    char tok[32];
    verifies = 0;
    for (uint32_t i = 0; i < 12; i++) { /* 12 sources, one new token each: no source is over */
        uint8_t src[BUDGET_ADDR_LEN];
        addr(0x0100000a + (i << 24), src);
        snprintf(tok, sizeof(tok), "flood-%u", i);
        enum auth_status st = auth_check_from(aw, tok, strlen(tok), src, 1000000, NULL, NULL, &out);
        cr_assert_eq(st, i < 4 ? AUTH_FAIL : AUTH_OVERLOADED, "source %u", i);
        if (st == AUTH_OVERLOADED)
            cr_assert_eq(out.reason, JWT_OK, "nothing verified: the result is zeroed");
    }
    cr_assert_eq(verifies, 4, "the worker verified its burst, not the flood");
    cr_assert_eq(auth_worker_counters(aw)->overloaded, 8);
    cr_assert_eq(auth_worker_counters(aw)->throttled, 0, "no source was over its own budget");
    /* known tokens are answered from L1 whatever the budget */
    cr_assert_eq(auth_check(aw, "flood-0", 7, 1000000, NULL, NULL, &out), AUTH_FAIL);
    cr_assert_eq(out.reason, JWT_E_BAD_SIGNATURE);
    /* checks without a source spend the worker's budget too */
    cr_assert_eq(auth_check(aw, "nosrc", 5, 1000000, NULL, NULL, &out), AUTH_OVERLOADED);
    /* a quarter second at 4/s is one more verification */
    cr_assert_eq(auth_check(aw, "later-1", 7, 1000250, NULL, NULL, &out), AUTH_FAIL);
    cr_assert_eq(auth_check(aw, "later-2", 7, 1000250, NULL, NULL, &out), AUTH_OVERLOADED);
    cr_assert_eq(verifies, 5);
    auth_worker_free(aw);
}

static enum jwt_reason ok_verify(void *ctx, const char *tok, size_t len, int64_t now,
                                 struct jwt_result *out)
{
    (void)ctx, (void)tok, (void)len;
    out->exp = now + 2;
    memcpy(out->user, "alice", 6);
    out->user_len = 5;
    return out->reason = JWT_OK;
}

Test(auth_budget, tick_sweeps_expired_token_copies)
{
    struct auth_config cfg = {.verify = ok_verify, .l1_capacity = 1024};
    struct auth_worker *aw = auth_worker_new(&cfg, 1000000);
    static char tok[4000];
    struct jwt_result out;
    for (int i = 0; i < 300; i++) { /* 1.2 MB: over AUTH_TRIM_BYTES */
        memset(tok, 'a' + i % 26, sizeof(tok));
        char head[16];
        memcpy(tok, head, (size_t)snprintf(head, sizeof(head), "%d.", i)); /* distinct */
        cr_assert_eq(auth_check(aw, tok, sizeof(tok), 1000000, NULL, NULL, &out), AUTH_OK);
    }
    cr_assert_geq(auth_worker_counters(aw)->l1_bytes, 250 * sizeof(tok));
    /* the tick asks to be called again while the L1 holds entries */
    cr_assert_lt(auth_worker_tick(aw, 1000000), INT64_MAX);
    /* after exp (now + 2 s) the periodic sweep frees every copy and trims the heap */
    int64_t t = 1003000;
    for (int i = 0; i < 4; i++, t += AUTH_SWEEP_MS + 1000)
        auth_worker_tick(aw, t);
    cr_assert_eq(auth_worker_counters(aw)->l1_bytes, 0);
    cr_assert_geq(auth_worker_counters(aw)->l1_swept, 250);
    cr_assert_eq(auth_worker_tick(aw, t + 5000), INT64_MAX, "idle once empty and trimmed");
    cr_assert_geq(auth_worker_counters(aw)->trims, 1);
    auth_worker_free(aw);
}
