// SPDX-License-Identifier: MIT
// Unit tests of bench/bench_hist.h, the load generator's log-linear latency histogram: bucket
// bounds, precision over the whole range, percentiles, merging.
#include <criterion/criterion.h>

#include "bench/bench_hist.h"

static struct bench_hist h, h2;

Test(bench_hist, counts_small_values_exactly)
{
    bench_hist_reset(&h);
    for (uint64_t v = 0; v < BENCH_HIST_SUB; v++) {
        cr_assert_eq(bench_hist_index(v), v);
        cr_assert_eq(bench_hist_low(bench_hist_index(v)), v);
        cr_assert_eq(bench_hist_high(bench_hist_index(v)), v);
    }
}

Test(bench_hist, keeps_every_value_within_one_percent_up_to_60_seconds)
{
    for (uint64_t v = 1; v <= BENCH_HIST_MAX_US; v = v * 21 / 20 + 1) {
        unsigned i = bench_hist_index(v);
        cr_assert_lt(i, BENCH_HIST_BUCKETS);
        cr_assert_leq(bench_hist_low(i), v, "v=%lu", (unsigned long)v);
        cr_assert_geq(bench_hist_high(i), v, "v=%lu", (unsigned long)v);
        double width = (double)(bench_hist_high(i) - bench_hist_low(i));
        cr_assert_leq(width, 0.01 * (double)v, "v=%lu width=%.0f", (unsigned long)v, width);
    }
}

Test(bench_hist, buckets_are_contiguous_and_increasing)
{
    for (unsigned i = 1; i <= bench_hist_index(BENCH_HIST_MAX_US); i++)
        cr_assert_eq(bench_hist_low(i), bench_hist_high(i - 1) + 1, "bucket %u", i);
}

Test(bench_hist, clamps_values_beyond_the_range_into_the_last_bucket_but_keeps_the_max)
{
    bench_hist_reset(&h);
    bench_hist_add(&h, 10ull * BENCH_HIST_MAX_US);
    cr_assert_eq(h.buckets[bench_hist_index(BENCH_HIST_MAX_US)], 1);
    cr_assert_eq(bench_hist_pct(&h, 100), 10ull * BENCH_HIST_MAX_US);
}

Test(bench_hist, reports_percentiles_of_a_uniform_run)
{
    bench_hist_reset(&h);
    for (uint64_t v = 1; v <= 10000; v++)
        bench_hist_add(&h, v);
    cr_assert_eq(h.count, 10000);
    cr_assert_eq(h.min, 1);
    cr_assert_eq(h.max, 10000);
    uint64_t p50 = bench_hist_pct(&h, 50), p99 = bench_hist_pct(&h, 99);
    uint64_t p999 = bench_hist_pct(&h, 99.9);
    cr_assert(p50 >= 5000 && p50 <= 5050, "p50 %lu", (unsigned long)p50);
    cr_assert(p99 >= 9900 && p99 <= 9990, "p99 %lu", (unsigned long)p99);
    cr_assert(p999 >= 9990 && p999 <= 10000, "p99.9 %lu", (unsigned long)p999);
    cr_assert_eq(bench_hist_pct(&h, 100), 10000);
    cr_assert_eq(bench_hist_pct(&h, 0), 1);
    cr_assert_float_eq(bench_hist_mean(&h), 5000.5, 1e-9);
}

Test(bench_hist, sees_a_rare_slow_value_only_in_the_tail)
{
    bench_hist_reset(&h);
    for (int i = 0; i < 999; i++)
        bench_hist_add(&h, 100);
    bench_hist_add(&h, 50000);
    cr_assert_eq(bench_hist_pct(&h, 99), 100);
    cr_assert_geq(bench_hist_pct(&h, 99.95), 49500);
    cr_assert_eq(bench_hist_pct(&h, 100), 50000);
}

Test(bench_hist, merges_two_histograms_as_if_recorded_in_one)
{
    bench_hist_reset(&h);
    bench_hist_reset(&h2);
    for (uint64_t v = 1; v <= 500; v++)
        bench_hist_add(&h, v);
    for (uint64_t v = 501; v <= 1000; v++)
        bench_hist_add(&h2, v);
    bench_hist_merge(&h, &h2);
    cr_assert_eq(h.count, 1000);
    cr_assert_eq(h.min, 1);
    cr_assert_eq(h.max, 1000);
    cr_assert_eq(h.sum, 500500);
    uint64_t p50 = bench_hist_pct(&h, 50);
    cr_assert(p50 >= 500 && p50 <= 504, "p50 %lu", (unsigned long)p50);
}

Test(bench_hist, answers_zero_when_empty)
{
    bench_hist_reset(&h);
    cr_assert_eq(bench_hist_pct(&h, 99), 0);
    cr_assert_float_eq(bench_hist_mean(&h), 0.0, 1e-12);
}
