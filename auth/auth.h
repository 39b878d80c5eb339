// SPDX-License-Identifier: MIT
// Per-worker token check: L1 cache, then the shared Redis L2 (HMAC-authenticated entries,
// revocation keys, a pub/sub channel that evicts L1 entries), then local verification.
#ifndef SIPEDGE_AUTH_AUTH_H
#define SIPEDGE_AUTH_AUTH_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/budget.h"
#include "auth/cache.h"
#include "auth/jwt.h"
#include "auth/keys.h"
#include "auth/redis.h"

/** Decision of auth_check(). */
enum auth_status {
    AUTH_OK = 0,         /* the token is valid: the result says who and until when */
    AUTH_FAIL = 1,       /* rejected: the result's reason says why */
    AUTH_PENDING = 2,    /* Redis asked: the callback delivers AUTH_OK, AUTH_FAIL or CANCELLED */
    AUTH_CANCELLED = 3,  /* callback only: the worker was freed first; treat as "try later" (503) */
    AUTH_THROTTLED = 4,  /* an L1 miss over the source's verification budget: nothing verified,
                          * nothing cached; answer "try later" (503 + Retry-After) */
    AUTH_OVERLOADED = 5, /* an L1 miss over the worker's verification budget (all sources
                          * together): nothing verified; answer "try later" (503) */
    /* AUTH_STATUS_COUNT */
    AUTH_STATUS_COUNT
};

/**
 * Verifies `tok`/`len` at `now` (seconds since the epoch) and fills `out` (out->reason equals the
 * return value). jwt_verify() fits with its key set as `ctx`. Called on the worker's thread.
 */
typedef enum jwt_reason (*auth_verify_fn)(void *ctx, const char *tok, size_t len, int64_t now,
                                          struct jwt_result *out);

#define AUTH_FP_HEX     16         /* hex chars of the key set tag in L2 key names */
#define AUTH_SWEEP_MS   250        /* period of the L1 sweep */
#define AUTH_SWEEP_N    4096       /* L1 entries looked at per sweep */
#define AUTH_TRIM_BYTES (1u << 20) /* freed bytes that make a malloc_trim() worth it */

/**
 * The tag of the key set the verifier currently uses: AUTH_FP_HEX lowercase hex chars (the start
 * of keys_set_fingerprint()), NUL-terminated, valid until the next call with `ctx`. It first moves
 * the verifier to the store's newest set, as a verify would. L2 entries live under the tag, so an
 * entry made under another key set is a miss. Called on an L1 miss, on the worker's thread.
 */
typedef const char *(*auth_keyfp_fn)(void *ctx);

/**
 * Completion of a pending check, called exactly once per AUTH_PENDING: `st` AUTH_OK or AUTH_FAIL
 * with `res` (borrowed for the call), or AUTH_CANCELLED with `res` NULL (auth_worker_free()).
 * Never called for a check cancelled with auth_cancel(). May call auth_check(); must not free the
 * worker.
 */
typedef void (*auth_done_fn)(void *arg, enum auth_status st, const struct jwt_result *res);

/** Log hook for rare events (`event` such as "l2_bad_hmac", `digest8`: 16 hex chars of the
 * token's SHA-256, never the token). NULL: one key=value line on stderr. */
typedef void (*auth_log_fn)(void *ctx, const char *event, const char *digest8);

/** Configuration; zero fields take the defaults shown. */
struct auth_config {
    auth_verify_fn verify; /* required */
    void *verify_ctx;
    auth_keyfp_fn key_fp;    /* called with verify_ctx; NULL: auth_jwt_verifier_fp when verify is
                              * auth_jwt_verify, else a fixed tag of zeros (one key set) */
    uint32_t l1_capacity;    /* L1 entries (4096) */
    uint64_t l1_max_bytes;   /* bound on L1 token copies (capacity * max_token_len) */
    uint32_t max_token_len;  /* longer tokens are neither cached nor sent to Redis (8192) */
    uint32_t ttl_s;          /* positive cache lifetime cap (300) */
    uint32_t negative_ttl_s; /* rejected tokens (5) */
    uint32_t signature_only_ttl_s; /* cucm tokens checked by signature only (30) */
    uint32_t degraded_ttl_s;       /* positive L1 lifetime while revocations cannot be seen:
                                    * subscription down, or Redis failed during the check (5) */
    uint32_t max_pending;          /* checks waiting on Redis (1024); beyond: local verify */
    uint32_t ping_interval_ms;     /* liveness PING on the subscriber connection (1000) */
    uint32_t source_rate;          /* L1 misses (verifications) per second per source address,
                                    * auth_check_from() only; 0: no budget */
    uint32_t source_burst;         /* bucket size (source_rate) */
    uint32_t source_slots;         /* sources tracked per worker (4096) */
    uint32_t worker_rate;          /* L1 misses per second of the worker, all sources together,
                                    * auth_check() and auth_check_from(); 0: no budget */
    uint32_t worker_burst;         /* bucket size (worker_rate) */
    const char *redis_host;        /* numeric address; NULL: no L2, no revocation */
    uint16_t redis_port;
    struct cache_redis_config redis; /* both connections */
    const uint8_t *hmac_key;         /* L2 entry key shared by the pods; >= 16 bytes with Redis */
    size_t hmac_key_len;
    auth_log_fn log;
    void *log_ctx;
};

/** Counters of one worker (monotonic; read by the metrics code, any thread, torn reads ok). */
struct auth_counters {
    uint64_t checks;
    uint64_t l1_hit, l1_negative_hit, l1_miss;
    uint64_t l2_hit, l2_miss, l2_bad_hmac, l2_error, l2_unusable, l2_store, l2_revoked;
    uint64_t l2_jti_lookups;    /* second round trips: a jti not looked up with the cache entry */
    uint64_t verified;          /* local verifications */
    uint64_t revoked;           /* checks answered JWT_E_REVOKED */
    uint64_t revocation_events; /* pub/sub messages received */
    uint64_t l1_evicted;        /* L1 entries dropped by revocation */
    uint64_t resubscribes;      /* subscription (re)established: L1 positives flushed */
    uint64_t cancelled;
    uint64_t throttled;  /* L1 misses refused by the source budget (AUTH_THROTTLED) */
    uint64_t overloaded; /* L1 misses refused by the worker budget (AUTH_OVERLOADED) */
    uint64_t l1_bytes;   /* gauge: L1 token copy bytes */
    uint64_t l1_swept;   /* expired L1 entries dropped by the periodic sweep */
    uint64_t trims;      /* malloc_trim() calls after the sweep freed memory */
    uint64_t ok;
    uint64_t fail[JWT_REASON_COUNT]; /* by reason */
};

struct auth_worker;

/**
 * A worker's auth state for `cfg` (copied; hmac_key copied). With a Redis host it starts
 * connecting both connections (commands, and the revocation subscription) without blocking.
 * Returns NULL on ENOMEM or an invalid config (no verify fn, short HMAC key with Redis).
 */
struct auth_worker *auth_worker_new(const struct auth_config *cfg, int64_t now_ms);

/** Pending checks complete with AUTH_CANCELLED, sockets close, memory is freed. NULL: no-op. */
void auth_worker_free(struct auth_worker *aw);

/**
 * Checks the bearer token `tok`/`len` at `now_ms` (milliseconds since the epoch, read once per
 * loop turn). Returns AUTH_OK or AUTH_FAIL with `*out` filled (from L1 or a local verify), or
 * AUTH_PENDING: `cb(arg, ...)` follows exactly once from auth_worker_on_poll() / _tick() (or
 * _free()); `out` is then untouched. With `cb` NULL it never pends: an L1 miss is verified
 * locally at once. The token is copied when needed: the caller may reuse it.
 */
enum auth_status auth_check(struct auth_worker *aw, const char *tok, size_t len, int64_t now_ms,
                            auth_done_fn cb, void *arg, struct jwt_result *out);

/**
 * auth_check() for a request from source address `src` (BUDGET_ADDR_LEN bytes, from
 * budget_addr_of_fd(); NULL: no budget). An L1 hit (positive or negative) costs the source
 * nothing; an L1 miss spends one token of the source's budget first, and when there is none
 * returns AUTH_THROTTLED at once (no L2 lookup, no verify, nothing cached, `out` zeroed). Then
 * (with or without `src`) it spends one token of the worker's budget, and when there is none
 * returns AUTH_OVERLOADED the same way.
 */
enum auth_status auth_check_from(struct auth_worker *aw, const char *tok, size_t len,
                                 const uint8_t *src, int64_t now_ms, auth_done_fn cb, void *arg,
                                 struct jwt_result *out);

/** Forgets the pending checks whose callback argument is `arg` (their callbacks are never
 * called). Returns how many. */
size_t auth_cancel(struct auth_worker *aw, void *arg);

/** The worker's two Redis sockets for poll(2) or IORING_OP_POLL_ADD: fills `fds[0..1]` (fd -1
 * when none) and returns 2. */
int auth_worker_pollfds(const struct auth_worker *aw, struct pollfd fds[2]);

/** Handles the revents of the `fds` from auth_worker_pollfds(); may complete pending checks. */
void auth_worker_on_poll(struct auth_worker *aw, const struct pollfd fds[2], int64_t now_ms);

/** Deadlines, reconnects, (re)subscription and pings; a bounded sweep of expired L1 entries
 * (every AUTH_SWEEP_MS while the L1 holds any), and malloc_trim(0) at most once a second once the
 * sweeps freed AUTH_TRIM_BYTES, so the memory of expired token copies goes back to the system.
 * Returns the next deadline (epoch ms, INT64_MAX when none); call it by then, and after every
 * poll round. */
int64_t auth_worker_tick(struct auth_worker *aw, int64_t now_ms);

/** Where the last decision of a worker came from (for metrics by layer). */
enum auth_layer {
    AUTH_LAYER_NONE = 0,   /* no decision yet, or cancelled */
    AUTH_LAYER_L1 = 1,     /* this worker's cache */
    AUTH_LAYER_L2 = 2,     /* Redis: an entry, or a revocation key */
    AUTH_LAYER_VERIFY = 3, /* a local verification */
    /* AUTH_LAYER_COUNT */
    AUTH_LAYER_COUNT
};

/** The layer of the decision auth_check() just returned, or of the one being delivered to the
 * running auth_done_fn callback. */
enum auth_layer auth_last_layer(const struct auth_worker *aw);

/** The worker's counters (live, owned by the worker). */
const struct auth_counters *auth_worker_counters(const struct auth_worker *aw);

/** Entries the worker's L1 cache holds now (valid and refused tokens). */
size_t auth_worker_l1_entries(const struct auth_worker *aw);

/** True when revocation events reach this worker (subscription confirmed, connection up). */
bool auth_worker_subscribed(const struct auth_worker *aw);

/** The command / subscriber Redis client (NULL without Redis), for stats and tests. */
struct cache_redis *auth_worker_redis(const struct auth_worker *aw, bool subscriber);

/** Drops every L1 entry of the worker (call after a key or policy reload: results cached under
 * the old keys must not outlive them in this worker; L2 entries are named by the key set's tag,
 * so a key reload leaves the old ones unused). */
void auth_worker_flush(struct auth_worker *aw);

/**
 * jwt_verify() as an auth_verify_fn: `ctx` is a struct auth_jwt_verifier owned by one worker. It
 * keeps a reference on the store's current key set across calls and re-acquires it only when the
 * store's generation changed (a reload), so a verify never blocks on the store's mutex twice.
 */
struct auth_jwt_verifier {
    struct keys_store *store;     /* borrowed: outlives the verifier */
    const struct jwt_policy *pol; /* borrowed, read-only */
    struct keys_set *held;        /* reference on the set in use (NULL before the first call) */
    uint64_t gen;                 /* store generation of `held` */
    char fp_hex[AUTH_FP_HEX + 1]; /* tag of `held` (computed when it changes) */
};

/** Verifies with the current key set of `ctx` (a struct auth_jwt_verifier); JWT_E_UNKNOWN_KID
 * when the store is empty. */
enum jwt_reason auth_jwt_verify(void *ctx, const char *tok, size_t len, int64_t now,
                                struct jwt_result *out);

/** The auth_keyfp_fn of a struct auth_jwt_verifier `ctx`: the tag of the store's current set
 * (re-acquired when the generation changed; zeros when the store is empty). */
const char *auth_jwt_verifier_fp(void *ctx);

/** Drops the verifier's reference on its key set. */
void auth_jwt_verifier_deinit(struct auth_jwt_verifier *v);

/** What a revocation names. */
enum auth_revoke_kind {
    AUTH_REVOKE_JTI = 0,    /* the token's `jti` claim */
    AUTH_REVOKE_DIGEST = 1, /* the token's SHA-256, 64 lowercase hex chars */
    /* AUTH_REVOKE_KIND_COUNT */
    AUTH_REVOKE_KIND_COUNT
};

/**
 * Revokes from a worker without blocking: drops matching L1 entries at once, then sends
 * `SET sipedge:v1:rev:<kind>:<id> 1 EX ttl_s` and `PUBLISH sipedge:v1:revoke <kind>:<id>`.
 * Returns 0, -EINVAL (empty or too long id, ttl 0) or -EAGAIN (Redis not usable: only this
 * worker's L1 was purged).
 */
int auth_revoke(struct auth_worker *aw, enum auth_revoke_kind kind, const char *id, size_t len,
                uint32_t ttl_s, int64_t now_ms);

/**
 * The same from a tool (blocks up to `timeout_ms` per step; never on a worker). Returns the number
 * of subscribers the PUBLISH reached (>= 0), -EINVAL, -ECONNREFUSED/-ETIMEDOUT (connect) or -EIO.
 */
int auth_revoke_blocking(const char *host, uint16_t port, enum auth_revoke_kind kind,
                         const char *id, size_t len, uint32_t ttl_s, uint32_t timeout_ms);

/** SHA-256 of the token as lowercase hex (`hex` holds 65 bytes): the digest revocation id. */
void auth_token_digest_hex(const char *tok, size_t len, char hex[2 * CACHE_DIGEST_LEN + 1]);

/** Wall clock in milliseconds since the epoch (CLOCK_REALTIME). */
int64_t auth_now_ms(void);

#endif
