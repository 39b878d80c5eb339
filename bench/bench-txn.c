// SPDX-License-Identifier: MIT
// bench-txn: the costs of core/txn.c's timers with 65,536 live transactions (the prefill: a
// third Calling under Timer B, a third Proceeding under Timer C, a third Trying under Timer F),
// as medians of 7 runs: one call cycle (open INVITE, step 1xx, step 2xx, then txn_expired
// returns the previous cycle's Timer L and it is stepped to free), and one txn_expired call
// when nothing is due. Timer L is 1 ms here so each cycle expires exactly one transaction.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/txn.h"

#define RUNS   7
#define LIVE   65536
#define CYCLES 20000 /* ms of table time per run: below Timer B/F, so the prefill never expires */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v)
{
    qsort(v, RUNS, sizeof(*v), cmp);
    return v[RUNS / 2];
}

static void die(const char *what)
{
    fprintf(stderr, "bench-txn: %s\n", what);
    exit(1);
}

static struct txn_table *prefill(void)
{
    static const struct txn_timers tm = {32000, 180000, 32000, 32000, 1, 32000};
    struct txn_table *tb = txn_table_new(LIVE + 16, 0, &tm);
    struct txn_out out;
    uint64_t id;
    char b[32];

    if (tb == NULL)
        die("txn_table_new");
    for (uint32_t i = 0; i < LIVE; i++) {
        int n = snprintf(b, sizeof(b), "z9hG4bK-p%u", i);
        enum sip_method m = i % 3 == 2 ? SIP_METHOD_BYE : SIP_METHOD_INVITE;
        if (txn_open(tb, m, i & 1023, slice_make(b, (size_t)n), SLICE_LIT("10.1.2.3:5061"), 0, &id,
                     &out) != 0)
            die("prefill open");
        if (i % 3 == 1 && txn_step(tb, id, TXN_EV_1XX, 0, &out) != 0)
            die("prefill 1xx");
    }
    return tb;
}

static double cycle_run(void)
{
    static const char *const br[4] = {"z9hG4bK-c0", "z9hG4bK-c1", "z9hG4bK-c2", "z9hG4bK-c3"};
    struct txn_table *tb = prefill();
    struct txn_out out;
    uint64_t id, ids[8];
    int64_t next;
    size_t expired = 0;

    double t = now_ns();
    for (int64_t now = 1; now <= CYCLES; now++) {
        struct slice b = slice_make(br[now & 3], strlen(br[now & 3]));
        if (txn_open(tb, SIP_METHOD_INVITE, 5000, b, SLICE_LIT("10.9.9.9:5061"), now, &id, &out))
            die("cycle open");
        txn_step(tb, id, TXN_EV_1XX, now, &out);
        txn_step(tb, id, TXN_EV_2XX, now, &out);
        size_t n = txn_expired(tb, now, ids, 8, &next);
        for (size_t k = 0; k < n; k++)
            txn_step(tb, ids[k], TXN_EV_TIMEOUT, now, &out);
        expired += n;
    }
    double ns = (now_ns() - t) / CYCLES;
    if (expired != CYCLES - 1 || txn_count(tb) != LIVE + 1)
        die("cycle: not exactly one expiry per cycle");
    txn_table_free(tb);
    return ns;
}

static double idle_run(void)
{
    struct txn_table *tb = prefill();
    uint64_t ids[8];
    int64_t next;
    unsigned calls = 0;
    size_t got = 0;

    double t = now_ns(), el;
    do { /* batches of 64 until 100 ms have passed */
        for (int k = 0; k < 64; k++)
            got += txn_expired(tb, 1 + (calls + (unsigned)k) % 1000, ids, 8, &next);
        calls += 64;
    } while ((el = now_ns() - t) < 1e8);
    if (got != 0 || next != 32000)
        die("idle: something was due");
    txn_table_free(tb);
    return el / calls;
}

int main(void)
{
    double r[RUNS];
    for (int k = 0; k < RUNS; k++)
        r[k] = cycle_run();
    printf("open+1xx+2xx+expire cycle, %d live   median %.0f ns (of %d runs)\n", LIVE, median(r),
           RUNS);
    for (int k = 0; k < RUNS; k++)
        r[k] = idle_run();
    printf("txn_expired, nothing due, %d live    median %.1f ns (of %d runs)\n", LIVE, median(r),
           RUNS);
    return 0;
}
