// SPDX-License-Identifier: MIT
// The upstream zone of one worker: K pooled mutual-TLS connections per UCM node, health,
// reconnect with exponential backoff and jitter, failover, keep-alive pings and diagnostics.
// It moves plaintext bytes; SIP framing and the ping's content belong to the caller.
#ifndef SIPEDGE_NET_UPSTREAM_H
#define SIPEDGE_NET_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "tls/tls.h"

struct loop;
struct upstream;

#define UPSTREAM_MAX_NODES 16

/** State of one node as seen by one worker (the best of its connections). */
enum upstream_state {
    UPSTREAM_DOWN = 0,   /* no connection up; waiting for the backoff to retry */
    UPSTREAM_CONNECTING, /* TCP connect or TLS handshake in progress, none up yet */
    UPSTREAM_UP,         /* at least one connection established */
    UPSTREAM_FAILED,     /* last attempt failed on TLS (diag says why); retrying with backoff */
    /* UPSTREAM_STATE_COUNT */
    UPSTREAM_STATE_COUNT
};

struct upstream_node_cfg {
    const char *host; /* IP literal (no DNS on the hot path; resolved by the caller at start) */
    uint16_t port;    /* 5091 */
    const char *name; /* expected SAN (DNS name or IP); NULL: host */
};

struct upstream_cfg {
    struct upstream_node_cfg nodes[UPSTREAM_MAX_NODES];
    unsigned n_nodes;
    bool round_robin;               /* false: first healthy node in order (failover) */
    unsigned pool_size;             /* connections per node (2) */
    uint32_t connect_timeout_ms;    /* TCP connect + TLS handshake (3000) */
    uint32_t backoff_min_ms;        /* first retry delay (250) */
    uint32_t backoff_max_ms;        /* cap (30000) */
    uint32_t keepalive_interval_ms; /* on_ping_due period per connection, 0 = off */
    struct tls_ctx *tls;            /* client mTLS context (a reference is taken) */
};

/** Callbacks into the owner (the worker glue). All run on the loop thread. */
struct upstream_ops {
    /** Plaintext bytes from connection `conn_id` of node `node` (valid during the call). */
    void (*on_data)(void *ctx, unsigned node, uint32_t conn_id, const char *p, size_t n);
    /** A node changed state; `diag` is set when it failed on TLS (else NULL). Log it here. */
    void (*on_node_state)(void *ctx, unsigned node, enum upstream_state st,
                          const struct tls_diag *diag);
    /** Time to send a keep-alive on `conn_id` (use upstream_send_on()). May be NULL. */
    void (*on_ping_due)(void *ctx, unsigned node, uint32_t conn_id);
    /** Connection `conn_id` closed (its in-flight requests will get no answer: Timer F). */
    void (*on_conn_closed)(void *ctx, unsigned node, uint32_t conn_id);
};

/** A zone on `loop` (loop thread). Starts connecting every node's pool at once. NULL on error. */
struct upstream *upstream_new(struct loop *loop, const struct upstream_cfg *cfg,
                              const struct upstream_ops *ops, void *ctx);

/** Closes every connection and frees. NULL: no-op. Loop thread. */
void upstream_free(struct upstream *u);

/**
 * Queue one whole message on an established connection of a healthy node chosen by the policy
 * (least queued bytes among the node's connections). Returns the node index (>= 0), or
 * -EHOSTUNREACH when no node has an established connection.
 */
int upstream_send(struct upstream *u, const struct iovec *iov, int n);

/** Queue on a given connection (pings). Returns >= 0 or -ENOTCONN. */
int upstream_send_on(struct upstream *u, uint32_t conn_id, const struct iovec *iov, int n);

/** Mark connection `conn_id` as answering (a ping reply arrived): resets its ping deadline. */
void upstream_alive(struct upstream *u, uint32_t conn_id);

/** Snapshot of one node for /readyz and metrics (copyable; for other threads). */
struct upstream_node_status {
    enum upstream_state state;
    unsigned conns_up, conns_connecting;
    uint64_t failures;         /* consecutive failed attempts */
    struct tls_diag last_diag; /* cause NONE when the last failure was not TLS */
    int last_errno;            /* last socket error (0 none) */
};

/** Fills `out` for node `i` (i < n_nodes). Loop thread (the glue copies it out for others). */
void upstream_node_status(const struct upstream *u, unsigned i, struct upstream_node_status *out);

/** Number of nodes. */
unsigned upstream_node_count(const struct upstream *u);

/** Swap in a reloaded client TLS context (new connections use it). Loop thread. */
void upstream_set_tls(struct upstream *u, struct tls_ctx *ctx);

const char *upstream_state_name(enum upstream_state st);

#endif
