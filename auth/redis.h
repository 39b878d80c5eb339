// SPDX-License-Identifier: MIT
// Asynchronous sans-IO Redis client on hiredis' protocol layer: commands are encoded into an
// output buffer the owner's loop sends, received bytes are fed back and replies are dispatched to
// per-command callbacks; deadlines, a circuit breaker and reconnect pacing are driven by tick().
#ifndef SIPEDGE_AUTH_REDIS_H
#define SIPEDGE_AUTH_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "core/slice.h"

/** Connection state as the owner reported it (or the fd helpers drove it). */
enum cache_redis_conn {
    CACHE_REDIS_DOWN = 0,         /* no socket */
    CACHE_REDIS_CONNECTING = 1,   /* connect() in progress */
    CACHE_REDIS_UP = 2,           /* connected: commands flow */
    CACHE_REDIS_CLOSE_WANTED = 3, /* the client asks the owner to close the socket (hung server,
                                   * protocol error); owner closes then calls _disconnected() */
    /* CACHE_REDIS_CONN_COUNT */
    CACHE_REDIS_CONN_COUNT
};

/** Circuit breaker state. */
enum cache_redis_breaker {
    CACHE_REDIS_CLOSED = 0,    /* normal */
    CACHE_REDIS_OPEN = 1,      /* failing: no commands, no connects until the backoff ends */
    CACHE_REDIS_HALF_OPEN = 2, /* trial: one command (or one connect) decides */
    /* CACHE_REDIS_BREAKER_COUNT */
    CACHE_REDIS_BREAKER_COUNT
};

/** Tunables; zero fields take the defaults shown. */
struct cache_redis_config {
    uint32_t timeout_ms;         /* per-command deadline (5) */
    uint32_t connect_timeout_ms; /* connect deadline (100) */
    uint32_t breaker_failures;   /* consecutive failures that open the breaker (3) */
    uint32_t backoff_min_ms;     /* first open period (50) */
    uint32_t backoff_max_ms;     /* cap of the doubling open period (5000) */
    uint32_t max_pending;        /* commands in flight (1024); more -> -ENOBUFS */
    uint32_t max_out;            /* bytes queued for sending (1 MiB); more -> -ENOBUFS */
};

/**
 * Completion of one command, called exactly once: with `err` 0 and the `reply` (borrowed, valid
 * during the call; may be a REDIS_REPLY_ERROR), or with `reply` NULL and `err` -ETIMEDOUT (its
 * deadline passed), -ECONNRESET (the connection went away) or -ECANCELED (cache_redis_free()).
 * It may issue new commands; it must not free the client.
 */
typedef void (*cache_redis_cb)(void *arg, const redisReply *reply, int err);

/** Receives replies that answer no command (pub/sub messages on a SUBSCRIBEd connection). */
typedef void (*cache_redis_push_cb)(void *arg, const redisReply *reply);

/** Counters (monotonic, plain reads). */
struct cache_redis_stats {
    uint64_t commands, replies, timeouts, disconnects, connects, connect_failures, breaker_opens,
        rejected; /* commands refused (breaker open, down, queue full) */
};

struct cache_redis;

/** A client with `cfg` (NULL: defaults) and `seed` for backoff jitter; NULL on ENOMEM. One
 * thread owns it. */
struct cache_redis *cache_redis_new(const struct cache_redis_config *cfg, uint64_t seed);

/** Fails every pending command with -ECANCELED, closes a socket the fd helpers opened, frees.
 * NULL is a no-op. */
void cache_redis_free(struct cache_redis *r);

/**
 * Queues a command (argv/argvlen as redisCommandArgv) with deadline `now_ms` + timeout. Returns 0
 * (`cb` will be called exactly once, never from inside this call), -EAGAIN (not usable: down or
 * breaker open; `cb` is not called), -ENOBUFS (queue full) or -ENOMEM.
 */
int cache_redis_command(struct cache_redis *r, int argc, const char **argv, const size_t *argvlen,
                        int64_t now_ms, cache_redis_cb cb, void *arg);

/** True when a command issued now would be sent (connected, breaker closed or trial free). */
bool cache_redis_usable(const struct cache_redis *r, int64_t now_ms);

/** Sets the handler of unsolicited replies (pub/sub). */
void cache_redis_set_push(struct cache_redis *r, cache_redis_push_cb cb, void *arg);

/** Bytes waiting to be sent (borrowed until the next call on `r`). */
struct slice cache_redis_out(const struct cache_redis *r);

/** Marks the first `n` bytes of cache_redis_out() as sent. */
void cache_redis_sent(struct cache_redis *r, size_t n);

/**
 * Feeds `len` received bytes; dispatches every complete reply (split replies are buffered).
 * Returns 0, or -EPROTO on a protocol error (pending commands then fail with -ECONNRESET and the
 * state becomes CLOSE_WANTED).
 */
int cache_redis_feed(struct cache_redis *r, const char *buf, size_t len, int64_t now_ms);

/** The owner's socket connected. */
void cache_redis_connected(struct cache_redis *r, int64_t now_ms);

/** The owner's socket is gone (closed, error or connect failure): pending commands fail with
 * -ECONNRESET, unsent bytes are dropped, the breaker counts a failure. */
void cache_redis_disconnected(struct cache_redis *r, int64_t now_ms);

/**
 * Expires commands past their deadline (-ETIMEDOUT; their late replies are discarded) and moves
 * the breaker from OPEN to HALF_OPEN when its period ends. Call at least every few ms while
 * commands are pending. Returns the earliest next deadline in ms (INT64_MAX when none).
 */
int64_t cache_redis_tick(struct cache_redis *r, int64_t now_ms);

/** Connection state / breaker state / stats. */
enum cache_redis_conn cache_redis_conn_state(const struct cache_redis *r);
enum cache_redis_breaker cache_redis_breaker_state(const struct cache_redis *r);
const struct cache_redis_stats *cache_redis_stats(const struct cache_redis *r);

/** True when the owner should open a new connection now (down and the breaker allows it). */
bool cache_redis_want_connect(const struct cache_redis *r, int64_t now_ms);

/* ---- Convenience socket driver for poll(2)-style owners (tests, tools, bench). ---- */

/**
 * Opens a non-blocking TCP connection to `host` (numeric IPv4/IPv6) `port` and lets `r` own the
 * socket. Returns 0 (connecting), -EALREADY (a socket is open) or -errno. Never blocks.
 */
int cache_redis_fd_connect(struct cache_redis *r, const char *host, uint16_t port, int64_t now_ms);

/** The owned socket (-1 when none) and the poll events it needs now (0 when none). */
int cache_redis_fd(const struct cache_redis *r);
short cache_redis_fd_events(const struct cache_redis *r);

/**
 * Handles poll results `revents` on the owned socket: completes a connect, sends queued bytes,
 * reads and feeds replies; closes the socket on error, EOF or CLOSE_WANTED. Never blocks.
 */
void cache_redis_fd_io(struct cache_redis *r, short revents, int64_t now_ms);

/** Sends queued bytes on the owned socket now (call after issuing commands to save a poll
 * round); never blocks. */
void cache_redis_fd_flush(struct cache_redis *r, int64_t now_ms);

/**
 * tick() plus, for an owned socket: a connect deadline, closing on CLOSE_WANTED, and reconnecting
 * to the last `host`/`port` when cache_redis_want_connect(). Returns the next deadline (ms).
 */
int64_t cache_redis_fd_tick(struct cache_redis *r, int64_t now_ms);

/** Monotonic clock in milliseconds (CLOCK_MONOTONIC), for owners and tests. */
int64_t cache_redis_now_ms(void);

#endif
