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
/** Connections per node at most (a larger `pool_size` is clamped to it). */
#define UPSTREAM_MAX_POOL 16

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
    uint32_t ping_timeout_ms;       /* no upstream_alive() for this long: dead; 0 = 2 x keepalive */
};

/**
 * Callbacks into the owner (the worker glue). All run on the loop thread. A connection that
 * closes (peer, error, keep-alive deadline, over its output cap inside upstream_send()) is
 * reported from the next timer pass, never from inside an upstream_* call, so the owner is not
 * re-entered. The callbacks may call upstream_send(), upstream_send_on(), upstream_alive(),
 * upstream_node_status(); not upstream_free().
 */
struct upstream_ops {
    /** Plaintext bytes from connection `conn_id` of node `node` (valid during the call). */
    void (*on_data)(void *ctx, unsigned node, uint32_t conn_id, const char *p, size_t n);
    /**
     * A node changed state; `diag` is set when it failed on TLS (else NULL). Log it here.
     * Called only on a change (retries that fail the same way are silent), plus once more while
     * FAILED when the TLS cause changes. No call for the initial CONNECTING.
     */
    void (*on_node_state)(void *ctx, unsigned node, enum upstream_state st,
                          const struct tls_diag *diag);
    /** Time to send a keep-alive on `conn_id` (use upstream_send_on()). May be NULL. */
    void (*on_ping_due)(void *ctx, unsigned node, uint32_t conn_id);
    /**
     * Connection `conn_id`, once up, closed: its in-flight requests get no answer there (send them
     * again). `diag` says why when our record layer failed it (a bad record from UCM, a flood of
     * no-op records...; log it: no state change may follow), NULL for a close, reset or timeout.
     */
    void (*on_conn_closed)(void *ctx, unsigned node, uint32_t conn_id, const struct tls_diag *diag);
};

/**
 * A zone on `loop` (loop thread). Starts connecting every node's pool on the loop's next timer
 * pass (no callback runs before this returns). `pool_size` is clamped to 1..16; zero timers take
 * the defaults shown in struct upstream_cfg. A full TLS 1.3 handshake counts as up only once
 * the server has accepted our certificate (its session tickets or data arrive) or has kept quiet
 * for twice the handshake time (at least 100 ms, within connect_timeout_ms). NULL on error with
 * errno: EINVAL (no node, more than UPSTREAM_MAX_NODES, a host that is not an IP literal, a bad
 * name, `tls` NULL or not a client context, `ops->on_data` NULL), ENOMEM.
 */
struct upstream *upstream_new(struct loop *loop, const struct upstream_cfg *cfg,
                              const struct upstream_ops *ops, void *ctx);

/**
 * Closes every connection and frees; no callback runs during or after it. Call it before
 * loop_free() of its loop, and not from inside one of its callbacks. NULL: no-op. Loop thread.
 */
void upstream_free(struct upstream *u);

/**
 * Queue one whole message on an established connection of a healthy node chosen by the policy
 * (least queued bytes among the node's connections). A node whose best connection is at or above
 * the loop's out_high_trunk mark is passed over for one that is not (congestion), and no
 * connection is pushed over its out_cap_trunk (net would close it). Returns the node index (>= 0),
 * -EHOSTUNREACH when no node has an established connection, -ENOBUFS when every established
 * connection is full, -EINVAL for a bad `iov`.
 */
int upstream_send(struct upstream *u, const struct iovec *iov, int n);

/** Where upstream_send_pick() put a message. */
struct upstream_pick {
    uint32_t conn_id; /* the connection: on_conn_closed() names it if it dies */
    bool failover;    /* sent past the policy's first node because that node is not up */
};

/** upstream_send(), also telling which connection took the message (`pick` may be NULL). */
int upstream_send_pick(struct upstream *u, const struct iovec *iov, int n,
                       struct upstream_pick *pick);

/**
 * Choose where a message would go without sending it (the caller needs the node before building
 * the message: the node is written in its Record-Route), then send with upstream_send_on().
 * `node` >= 0: only that node (an in-dialog request goes back to the node of its dialog); -1: the
 * policy of upstream_send(). Returns the node index with `pick` set, -EHOSTUNREACH when no
 * established connection is there, -EINVAL for a node out of range.
 */
int upstream_pick(struct upstream *u, int node, struct upstream_pick *pick);

/** Whether `conn_id` is one of this pool's live connections (its node in `*node`). */
bool upstream_owns(const struct upstream *u, uint32_t conn_id, unsigned *node);

/**
 * The end of a drain: every established connection queues our close_notify and closes once its
 * output is flushed; connecting ones close now; nothing reconnects and no callback runs from
 * now on. upstream_free() is still needed (and may follow at once). Loop thread.
 */
void upstream_shutdown(struct upstream *u);

/** Queue on a given connection (pings). Returns the bytes taken (>= 0), -ENOTCONN when the
 * connection is not up (or no longer exists), -ENOBUFS when its output is full, -EINVAL. */
int upstream_send_on(struct upstream *u, uint32_t conn_id, const struct iovec *iov, int n);

/** Mark connection `conn_id` as answering (a ping reply arrived): resets its ping deadline
 * (ping_timeout_ms after the last call, the connection is closed as dead). Unknown ids: no-op. */
void upstream_alive(struct upstream *u, uint32_t conn_id);

/** Snapshot of one node for /readyz and metrics (copyable; for other threads). */
struct upstream_node_status {
    enum upstream_state state;
    unsigned conns_up, conns_connecting;
    uint64_t failures;         /* consecutive failed attempts (0 again after a success) */
    struct tls_diag last_diag; /* last failure; cause NONE when it was not TLS (kept after UP) */
    int last_errno;            /* last socket error, positive errno (0 none; kept after UP) */
};

/** Fills `out` for node `i` (i < n_nodes). Loop thread (the glue copies it out for others). */
void upstream_node_status(const struct upstream *u, unsigned i, struct upstream_node_status *out);

/** Number of nodes. */
unsigned upstream_node_count(const struct upstream *u);

/** Swap in a reloaded client TLS context (a reference is taken; new connections use it,
 * established ones keep theirs) and forget the kept sessions. Loop thread. */
void upstream_set_tls(struct upstream *u, struct tls_ctx *ctx);

/** "down", "connecting", "up", "failed" ("?" out of range). */
const char *upstream_state_name(enum upstream_state st);

#endif
