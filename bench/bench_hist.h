// SPDX-License-Identifier: MIT
// bench_hist: a log-linear latency histogram of our own (HDR-style): microsecond values from 0 to
// BENCH_HIST_MAX_US, exact below 128 µs, then 128 buckets per power of two (< 0.8 % error).
// Header-only: bench/*.c each build into their own program.
#ifndef SIPEDGE_BENCH_BENCH_HIST_H
#define SIPEDGE_BENCH_BENCH_HIST_H

#include <stdint.h>
#include <string.h>

/** log2 of the buckets per power of two (and of the exactly counted range). */
#define BENCH_HIST_SUB_BITS 7
#define BENCH_HIST_SUB      (1u << BENCH_HIST_SUB_BITS)
/** Largest value kept at full precision (60 s); larger values count in the last bucket. */
#define BENCH_HIST_MAX_US 60000000ull
/** Highest power of two the buckets reach: 2^26 µs > 60 s. */
#define BENCH_HIST_TOP_BIT 26
/** Number of buckets: the exact range plus one run of BENCH_HIST_SUB per power of two above. */
#define BENCH_HIST_BUCKETS (BENCH_HIST_SUB * (BENCH_HIST_TOP_BIT - BENCH_HIST_SUB_BITS + 2))

/** A histogram; zero it (memset or bench_hist_reset()) before use. Owned by one thread. */
struct bench_hist {
    uint64_t count;                       /**< values recorded */
    uint64_t sum;                         /**< their sum (µs), for the mean */
    uint64_t min;                         /**< smallest value recorded (valid when count > 0) */
    uint64_t max;                         /**< largest value recorded, exact */
    uint64_t buckets[BENCH_HIST_BUCKETS]; /**< counts per bucket */
};

/** Empties `h`. */
static inline void bench_hist_reset(struct bench_hist *h)
{
    memset(h, 0, sizeof(*h));
}

/** The bucket of value `v` (µs), values above BENCH_HIST_MAX_US in the last bucket. Pure. */
static inline unsigned bench_hist_index(uint64_t v)
{
    if (v > BENCH_HIST_MAX_US)
        v = BENCH_HIST_MAX_US;
    if (v < BENCH_HIST_SUB)
        return (unsigned)v;
    unsigned k = 63u - (unsigned)__builtin_clzll(v); /* >= BENCH_HIST_SUB_BITS */
    unsigned shift = k - BENCH_HIST_SUB_BITS;
    unsigned top = (unsigned)(v >> shift); /* in [SUB, 2 * SUB) */
    return BENCH_HIST_SUB * (shift + 1) + (top - BENCH_HIST_SUB);
}

/** The lowest value that falls into bucket `i`. Pure. */
static inline uint64_t bench_hist_low(unsigned i)
{
    if (i < BENCH_HIST_SUB)
        return i;
    unsigned shift = i / BENCH_HIST_SUB - 1;
    uint64_t top = BENCH_HIST_SUB + i % BENCH_HIST_SUB;
    return top << shift;
}

/** The highest value that falls into bucket `i`. Pure. */
static inline uint64_t bench_hist_high(unsigned i)
{
    if (i < BENCH_HIST_SUB)
        return i;
    unsigned shift = i / BENCH_HIST_SUB - 1;
    return bench_hist_low(i) + (1ull << shift) - 1;
}

/** Records one value `v` (µs). O(1). */
static inline void bench_hist_add(struct bench_hist *h, uint64_t v)
{
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->sum += v;
    h->buckets[bench_hist_index(v)]++;
}

/** Adds every value of `src` into `dst` (merging per-thread histograms). */
static inline void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
    if (src->count == 0)
        return;
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->sum += src->sum;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
}

/**
 * The value at percentile `p` (0..100): the highest value of the bucket holding the value of
 * rank ceil(p/100 * count), capped at the exact max (so p100 is the max). 0 when empty.
 */
static inline uint64_t bench_hist_pct(const struct bench_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p <= 0)
        return h->min;
    double r = p / 100.0 * (double)h->count;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r)
        rank++;
    if (rank == 0)
        rank = 1;
    if (rank >= h->count)
        return h->max;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = bench_hist_high(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

/** The mean (µs), 0 when empty. */
static inline double bench_hist_mean(const struct bench_hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}

#endif
