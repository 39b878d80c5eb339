// SPDX-License-Identifier: MIT
// Per-source verification budget: a token bucket per client address in a bounded table, one per
// worker (no locks). An L1 miss spends one token; an empty bucket means "answer without a verify".
#ifndef SIPEDGE_AUTH_BUDGET_H
#define SIPEDGE_AUTH_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Length of a source key: an IPv6 address, or an IPv4 one mapped (::ffff:a.b.c.d). */
#define BUDGET_ADDR_LEN 16
/** Buckets per set (probe window). */
#define BUDGET_WAYS 4

struct budget;

/**
 * A table of at least `slots` buckets (rounded up to a power of two, >= BUDGET_WAYS, at most
 * 2^20) refilling at `rate_per_s` tokens a second up to `burst` (>= 1; 0 takes `rate_per_s`),
 * sets chosen by a hash keyed with `seed`. When a set is full the bucket used least recently
 * is reused: a source seen again after that starts with a full bucket (the table bounds memory,
 * not the number of sources). Returns NULL on ENOMEM or `rate_per_s` 0. One worker thread.
 */
struct budget *budget_new(uint32_t rate_per_s, uint32_t burst, uint32_t slots, uint64_t seed);

/** Frees `b`; NULL is a no-op. */
void budget_free(struct budget *b);

/**
 * Spends one token of source `addr` at `now_ms` (any monotonic or wall clock in ms, never going
 * back more than the caller tolerates: time going back refills nothing). Returns true when the
 * source had a token (the caller may verify), false when its bucket is empty (refuse without a
 * verify). Does not allocate.
 */
bool budget_take(struct budget *b, const uint8_t addr[BUDGET_ADDR_LEN], int64_t now_ms);

/** Buckets in use (<= the table size). */
size_t budget_count(const struct budget *b);

/** Table size in buckets (the bound). */
size_t budget_capacity(const struct budget *b);

/**
 * The source key of a connected socket `fd` (getpeername; IPv4 mapped into IPv6). Returns 0, or
 * -errno (then `out` is zeroed: all unknown sources share one bucket).
 */
int budget_addr_of_fd(int fd, uint8_t out[BUDGET_ADDR_LEN]);

/** The same 16 bytes from an IPv4 or IPv6 literal. Returns 0 or -EINVAL. */
int budget_addr_parse(const char *text, uint8_t out[BUDGET_ADDR_LEN]);

/** An address as text (IPv4 for a v4-mapped one) into `buf` (at least 46 bytes). */
void budget_addr_format(const uint8_t addr[BUDGET_ADDR_LEN], char *buf, size_t cap);

#endif
