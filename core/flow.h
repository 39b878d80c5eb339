// SPDX-License-Identifier: MIT
// Flow tokens (RFC 5626 §5.2 style): the user part of the edge's Path and client-side
// Record-Route URIs names the client connection (worker, slot, generation) under an HMAC.
#ifndef SIPEDGE_CORE_FLOW_H
#define SIPEDGE_CORE_FLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/slice.h"

/*
 * Token layout, before encoding (24 bytes, big-endian fields):
 *
 *     version (1) = FLOW_VERSION | worker (2) | slot (4) | gen (4) | HMAC-SHA256(key, first
 * 11)[0..13)
 *
 * encoded with base64url without padding: exactly FLOW_TOKEN_LEN characters from A-Z a-z 0-9
 * '-' '_', all "unreserved" in RFC 3261 §25.1, so the token is a valid URI user part as is.
 * The 104-bit MAC makes a forged token (another client's connection) a 2^-104 guess per try.
 *
 * A token proves only that this pod minted it: whether the connection it names is still the same
 * one (slot reused, generation moved on) is the caller's check against its connection table
 * (conn_get() with the id rebuilt from slot and gen): a stale flow is `430 Flow Failed`
 * (RFC 5626 §5.3), a FLOW_FORGED one is `403`.
 */
#define FLOW_VERSION    1u
#define FLOW_MAC_LEN    13u
#define FLOW_RAW_LEN    (11u + FLOW_MAC_LEN)
#define FLOW_TOKEN_LEN  32u /* base64url of FLOW_RAW_LEN bytes, no padding */
#define FLOW_SECRET_LEN 32u

/** The connection a flow token names. */
struct flow {
    uint16_t worker; /* index of the worker (ring) owning the connection */
    uint32_t slot;   /* connection slot on that worker */
    uint32_t gen;    /* generation of the slot when the token was minted */
};

/**
 * The flow of connection `conn_id` on worker `worker`. The edge puts the whole connection id
 * (net/conn.h: slot | generation << 20, checked by conn_get()) in `slot`, and in `gen` a random
 * 32-bit tag drawn when the connection was accepted: the 12-bit generation of a connection id
 * wraps after 4096 reuses of a slot, the tag makes a stale flow that names a newer connection a
 * 2^-32 event (the glue compares it before it delivers).
 */
static inline struct flow flow_of_conn(unsigned worker, uint32_t conn_id, uint32_t tag)
{
    struct flow f = {(uint16_t)worker, conn_id, tag};
    return f;
}

/** The connection id a flow names. */
static inline uint32_t flow_conn_id(const struct flow *f)
{
    return f->slot;
}

/** One HMAC secret. */
struct flow_key {
    uint8_t secret[FLOW_SECRET_LEN];
};

/**
 * The pod's secrets: tokens are minted under `cur`; decoding accepts `cur`, then `prev` when
 * `has_prev` (a rotation keeps the Paths registered under the old key usable until the clients
 * re-register). Filled at start, read-only afterwards: any worker may read it concurrently; a
 * rotation builds a new struct and publishes it (the caller's job, not this module's).
 */
struct flow_keys {
    struct flow_key cur;
    struct flow_key prev;
    bool has_prev;
};

enum flow_result {
    FLOW_OK = 0,    /* well-formed and authentic under cur or prev: `*out` is set */
    FLOW_FORGED,    /* well-formed but the MAC matches neither key (or another version) */
    FLOW_MALFORMED, /* wrong length or a character outside the base64url alphabet */
    /* FLOW_RESULT_COUNT */
    FLOW_RESULT_COUNT
};

/** "ok", "forged", "malformed"; "unknown" out of range. Static. */
const char *flow_result_name(enum flow_result r);

/** Fill `keys->cur` from RAND_bytes(), no previous key. Returns 0 or -EIO (no entropy). */
int flow_keys_init(struct flow_keys *keys);

/** Rotate: `cur` becomes `prev`, a fresh random `cur`. Returns 0 or -EIO (`keys` unchanged). */
int flow_keys_rotate(struct flow_keys *keys);

/**
 * Write the token for `f` under `key` into `buf[0..cap)` (no NUL). Returns FLOW_TOKEN_LEN, or
 * -ENOSPC when `cap` < FLOW_TOKEN_LEN, -EIO if the HMAC failed (OpenSSL). Thread-safe.
 */
ssize_t flow_encode(const struct flow_key *key, const struct flow *f, char *buf, size_t cap);

/**
 * Decode `s` (a URI user part as written, no %HH escapes expected: none of our characters
 * needs one, so an escaped token is FLOW_MALFORMED). The MAC is compared in constant time
 * (CRYPTO_memcmp) under `keys->cur`, then `keys->prev`. `*out` is written only on FLOW_OK.
 * The generation is not checked here (see above). Thread-safe, no allocation.
 */
enum flow_result flow_decode(const struct flow_keys *keys, struct slice s, struct flow *out);

#endif
