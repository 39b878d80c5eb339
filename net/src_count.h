// SPDX-License-Identifier: MIT
// A count per source address (open addressing, linear probing, backward-shift deletion), for
// the per-source bounds: connections per IP (net/conn.c), handshakes in flight (core/worker.c).
#ifndef SIPEDGE_NET_SRC_COUNT_H
#define SIPEDGE_NET_SRC_COUNT_H

#include <stdint.h>

/** Length of a source key: an IPv6 address, or an IPv4 one mapped (::ffff:a.b.c.d). */
#define SRC_COUNT_KEY_LEN 16

struct src_count_entry {
    uint8_t key[SRC_COUNT_KEY_LEN];
    uint32_t n; /* 0: empty bucket */
};

/**
 * The table, embedded in its owner. Keys with a count of 0 take no bucket; at most `max` keys
 * (src_count_init) have one at a time, in at least 2 × `max` buckets. The hash is mixed with a
 * per-table random seed, so that peers cannot choose addresses that share a probe run. One
 * thread.
 */
struct src_count {
    struct src_count_entry *e;
    uint32_t mask; /* buckets - 1 */
    uint32_t used; /* keys with a count */
    uint32_t max;
    uint64_t seed[2];
};

/**
 * The key of source address `addr` (IPv4 mapped into IPv6) for a per-peer bound: an IPv4 address
 * as it is, an IPv6 address cut to its /64 (a peer usually holds a whole /64, and could take a
 * new address in it for every connection).
 */
void src_count_key_of_peer(const uint8_t addr[SRC_COUNT_KEY_LEN], uint8_t key[SRC_COUNT_KEY_LEN]);

/** Sizes `t` for `max` (>= 1) keys at once. Returns 0 or -ENOMEM. */
int src_count_init(struct src_count *t, uint32_t max);

/** Frees the buckets; a zeroed or deinitialised `t` is a no-op. */
void src_count_deinit(struct src_count *t);

/** The count of `key` (0 when it has none). */
uint32_t src_count_get(const struct src_count *t, const uint8_t key[SRC_COUNT_KEY_LEN]);

/**
 * Adds one to the count of `key`. Returns the new count, or 0 when `key` had none and `max`
 * keys have one already (nothing changed: the caller does not count it).
 */
uint32_t src_count_inc(struct src_count *t, const uint8_t key[SRC_COUNT_KEY_LEN]);

/** Takes one from the count of `key` (its bucket is freed at 0); a key without one is a no-op. */
void src_count_dec(struct src_count *t, const uint8_t key[SRC_COUNT_KEY_LEN]);

#endif
