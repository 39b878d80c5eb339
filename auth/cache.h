// SPDX-License-Identifier: MIT
// L1 token cache: one per worker, no locks. A bounded 8-way set-associative table keyed by a
// seeded 64-bit hash of the token bytes; a positive hit is confirmed by comparing the stored token
// bytes, a negative one by the token's SHA-256 (rejected tokens are never copied).
#ifndef SIPEDGE_AUTH_CACHE_H
#define SIPEDGE_AUTH_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/jwt.h"

/** Entries per set (probe window); a set is one cache line of hashes. */
#define CACHE_L1_WAYS 8
/** Length of the token digest (SHA-256) kept with every entry. */
#define CACHE_DIGEST_LEN 32

struct cache_l1;

/** How a lookup ended. */
enum cache_l1_hit {
    CACHE_L1_MISS = 0,     /* absent, expired, or the hash matched a different token */
    CACHE_L1_POSITIVE = 1, /* a verified token: out->reason == JWT_OK */
    CACHE_L1_NEGATIVE = 2, /* a rejected token: out->reason says why */
    /* CACHE_L1_HIT_COUNT */
    CACHE_L1_HIT_COUNT
};

/**
 * A fast keyed 64-bit hash of `len` bytes at `p` (multiply-fold over 16-byte words, four lanes).
 * Not cryptographic: with a secret `seed` an outsider cannot aim collisions at a set, and the
 * cache never trusts it alone (hits are confirmed byte for byte). Never returns 0.
 */
uint64_t cache_hash(const void *p, size_t len, uint64_t seed);

/** What the cache did with memory (monotonic). */
struct cache_l1_stats {
    uint64_t bytes_freed;   /* token copy bytes given back (drop, eviction, expiry) */
    uint64_t swept;         /* expired entries dropped by cache_l1_sweep() */
    uint64_t refused_bytes; /* positive results not cached: the byte bound was reached */
    uint64_t pool;          /* entries ever allocated: the most ever live at once (≤ capacity) */
};

/**
 * A new L1 with `capacity` entries (rounded up to a power of two, at least CACHE_L1_WAYS) that
 * caches tokens of at most `max_token_len` bytes (< UINT32_MAX), hashed with `seed` (use a
 * random per-process value: cache_random_seed()). Memory: 12 bytes per slot, plus about 370 bytes
 * per entry for the most entries ever live at once (allocated 128 at a time, reused), plus the
 * copies of positive tokens, bounded by cache_l1_set_max_bytes() (default
 * capacity * max_token_len). Negative entries hold no copy. Returns NULL on allocation failure.
 * Owned by one worker thread; free with cache_l1_free().
 */
struct cache_l1 *cache_l1_new(uint32_t capacity, size_t max_token_len, uint64_t seed);

/** Bounds the sum of the positive entries' token copies to `max_bytes` (checked on insert). */
void cache_l1_set_max_bytes(struct cache_l1 *l1, size_t max_bytes);

/** Frees `l1` and all entries; NULL is a no-op. */
void cache_l1_free(struct cache_l1 *l1);

/** 64 random bits from the OS (getrandom), for hash seeds and jitter. Aborts only at startup use.
 */
uint64_t cache_random_seed(void);

/** The hash of a token as `l1` computes it (seeded); pass it to lookup and insert. */
uint64_t cache_l1_hash(const struct cache_l1 *l1, const char *tok, size_t len);

/**
 * Looks up the token `tok`/`len` whose hash is `h` (from cache_l1_hash()). An entry whose expiry
 * is <= `now` (seconds since the epoch) is a miss and is dropped. On a hit copies the stored result
 * into `out` (user and jti up to their NUL; bytes after it are left as they were) and the token's
 * SHA-256 into `digest` when not NULL. A different token with the same `h` is never a hit: a
 * positive entry's stored bytes are compared; for a negative entry with the same `h` the token's
 * SHA-256 is computed (once per lookup) and compared. Does not allocate.
 */
enum cache_l1_hit cache_l1_lookup(struct cache_l1 *l1, const char *tok, size_t len, uint64_t h,
                                  int64_t now, struct jwt_result *out, uint8_t *digest);

/**
 * Stores `res` for the token (`res->reason == JWT_OK` positive, anything else negative), valid
 * until `expires` (seconds since the epoch; callers pass min(token exp, now + ttl)). `digest` is
 * the token's SHA-256 (it alone identifies a negative entry: no token copy is made). Replaces an
 * entry for the same token; else takes a free or expired way of the set, else evicts the way that
 * expires first (the way's token copy is freed). A positive token is copied (`len` bytes) only
 * within the byte bound, after dropping expired entries (bounded scan) if needed. Returns 0,
 * -E2BIG (token longer than the configured maximum: not cached), -EINVAL (`expires` <= `now`),
 * -ENOSPC (byte bound reached: not cached, counted in refused_bytes) or -ENOMEM.
 */
int cache_l1_insert(struct cache_l1 *l1, const char *tok, size_t len, uint64_t h,
                    const uint8_t digest[CACHE_DIGEST_LEN], const struct jwt_result *res,
                    int64_t expires, int64_t now);

/** Drops every entry whose jti equals `jti`/`len` (a full scan: revocation is rare). Returns
 * the number dropped. */
size_t cache_l1_evict_jti(struct cache_l1 *l1, const char *jti, size_t len);

/** Drops the entry of the token whose SHA-256 is `digest` (full scan). Returns the number dropped.
 */
size_t cache_l1_evict_digest(struct cache_l1 *l1, const uint8_t digest[CACHE_DIGEST_LEN]);

/** Drops every positive entry (`negative` false) or every entry (`negative` true); returns the
 * number dropped. Used when revocation events may have been missed. */
size_t cache_l1_clear(struct cache_l1 *l1, bool negative);

/**
 * Looks at the next `max_entries` entries (a clock hand going round the table) and drops those
 * expired at `now`, freeing their token copies. Returns the token bytes freed. Bounded work: call
 * it from a periodic tick so that memory comes back even for tokens never seen again.
 */
size_t cache_l1_sweep(struct cache_l1 *l1, int64_t now, uint32_t max_entries);

/** Bytes of token copies held now (<= the byte bound). */
size_t cache_l1_bytes(const struct cache_l1 *l1);

/** Memory counters of `l1` (live). */
const struct cache_l1_stats *cache_l1_stats(const struct cache_l1 *l1);

/** Number of live (possibly expired, not yet reclaimed) entries. */
size_t cache_l1_count(const struct cache_l1 *l1);

/** Writes the lowercase hex of `n` bytes at `in` to `out` (2n chars + NUL). */
void cache_hex(const uint8_t *in, size_t n, char *out);

#endif
