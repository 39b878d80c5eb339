// SPDX-License-Identifier: MIT
// A worker's state, shared by core/worker.c (client connections, framing, timers, life),
// core/worker_upstream.c (the pooled UCM connections) and core/worker_calls.c (the proxy's call
// glue: bindings, flows across workers).
#ifndef SIPEDGE_CORE_WORKER_PRIV_H
#define SIPEDGE_CORE_WORKER_PRIV_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "auth/auth.h"
#include "auth/budget.h"
#include "core/metrics.h"
#include "core/policy.h"
#include "core/proxy.h"
#include "core/sip.h"
#include "net/loop.h"
#include "net/src_count.h"
#include "net/upstream.h"

struct edge;
struct conn;
struct tls_conn;
struct tls_ctx;

#define WORKER_MAX_HEADERS 128
#define WORKER_READ_CHUNK  (16u * 1024u) /* one TLS record of plaintext per read */
#define WORKER_MAX_UPCONNS (UPSTREAM_MAX_NODES * 16)
#define PING_BRANCH        "z9hG4bK-sepng"

#define WORKER_STOP_POLL_MS 10 /* the drain's end: how often the flush is checked */
/* TLS handshake work per loop turn before the worker goes back to its established connections
 * (about three full TLS 1.3 handshakes on this machine's 2 vCPUs). */
#define WORKER_HANDSHAKE_SLICE_US 1000

/**
 * A client connection's upper-layer state (conn_user). Idle, it holds the TLS object and this
 * struct only: `in` is allocated while a partial message waits and freed once consumed.
 *
 * | flag      | meaning                                                                  |
 * |-----------|--------------------------------------------------------------------------|
 * | busy      | on_data is running for it: a close then only marks `dead`                |
 * | dead      | on_close ran: free when `busy` ends                                      |
 */
struct client {
    struct worker *w;
    struct conn *conn;
    uint32_t id;
    struct tls_conn *tls; /* NULL on plain TCP */
    char *in;             /* partial message carried over between reads */
    uint32_t in_len;
    uint32_t scanned;     /* sip_scan_resume() hint for `in` */
    uint64_t last_active; /* loop ms of the last message */
    uint64_t msg_start;   /* loop ms of the first byte of the unfinished message, 0: none */
    bool completed;       /* on_data consumed a whole message (or keep-alive) */
    struct loop_timer timer;
    struct client *prev, *next;   /* the worker's list: the drain's end walks it */
    uint8_t src[BUDGET_ADDR_LEN]; /* peer address: the key of its verification budget */
    uint32_t failed_tokens;       /* rejected tokens on this connection */
    bool established;
    bool hs_queued;       /* in one of the worker's handshake queues */
    bool hs_started;      /* its first handshake step (the ClientHello's answer) has run */
    bool hs_answered;     /* ... and wrote the server's first flight (its deadline restarted) */
    bool hs_src_counted;  /* in flight and counted in the worker's hs_src */
    bool hs_hello_waits;  /* its ClientHello waits to be answered (the gauge counts it) */
    bool hs_wait_counted; /* ... and is counted in the worker's hs_wait */
    bool busy, dead;
    bool drained;               /* closing once its answers are out: read nothing more */
    struct policy_binding bind; /* who may send calls on it (core/policy.h) */
    bool ucm_peer;              /* a UCM node on the UCM listener: its messages are UCM's */
    int node;                   /* ucm_peer: the upstream node at its address, -1: none */
};

/** Partial message of an upstream connection (few per worker: pool_size * nodes). */
struct upbuf {
    uint32_t conn_id; /* 0: free slot */
    char *in;
    uint32_t len, scanned;
};

struct worker {
    struct edge *e;
    struct loop *loop;
    unsigned idx;
    struct metrics_shard *shard;
    struct proxy *proxy;
    struct upstream *up;
    struct auth_worker *auth;
    struct auth_jwt_verifier verifier;
    struct tls_ctx *server_tls;
    struct tls_ctx *ucm_tls; /* the UCM listener's, NULL when off */
    uint64_t tls_gen;

    struct loop_timer tick_timer;   /* the earliest of proxy and auth deadlines */
    struct loop_timer status_timer; /* copies the upstream snapshot for the admin thread */
    struct loop_poll polls[2];      /* auth's Redis sockets */
    int poll_fd[2];
    short poll_ev[2];

    struct upbuf upbufs[WORKER_MAX_UPCONNS];
    uint64_t ping_seq;
    uint64_t flow_rng;                        /* the state of the connections' flow tags */
    uint64_t redis_seen[METRICS_REDIS_COUNT]; /* auth counters already added to the metrics */
    uint64_t cap_rejects_seen; /* loop's per-IP / per-worker cap closes already in the metrics */
    enum upstream_state node_state[UPSTREAM_MAX_NODES];

    /* Handshake steps wait for the end of the turn, after established connections' traffic,
     * and take at most WORKER_HANDSHAKE_SLICE_US a turn (a reconnect storm must not hold up
     * the clients already connected). FIFOs of connection ids (stale ones are skipped): the
     * later steps (a client's Finished and what came with it) go first, so that a started
     * handshake ends, and its REGISTER is served, before another ClientHello is answered; then
     * the ClientHellos, hs_first before hs_heavy (see hs_inflight). */
    struct loop_timer hs_timer;
    struct id_fifo {
        uint32_t *q;
        uint32_t head, len, cap;
    } hs_first, hs_heavy, hs_later;
    /* Handshakes past their first step and not done (the client's Finished awaited): each holds
     * OpenSSL's handshake state, ≈ 35 KB. At listen.limits.max_handshakes_in_flight (the cap)
     * no further ClientHello is answered; those wait, a few hundred bytes each. A source (an
     * IPv4 address, an IPv6 /64) with a sixteenth of the cap in flight, or more than that many
     * ClientHellos waiting, is heavy: its ClientHellos wait in hs_heavy, answered only when no
     * other source's waits in hs_first and while less than half the cap is in flight. So one
     * peer's stalled handshakes leave the other half of the cap to the rest, and one peer's
     * flood of ClientHellos does not queue ahead of everyone else's. */
    uint32_t hs_inflight;
    struct src_count hs_src;  /* the handshakes in flight per source, with a cap */
    struct src_count hs_wait; /* the ClientHellos waiting per source, with a cap */
    struct client *clients;   /* every open client connection */
    atomic_uint n_clients;    /* their count, for the drain loop on the main thread */
    struct loop_timer stop_timer;
    uint64_t stop_deadline;
    void (*stopped)(void *arg);
    void *stopped_arg;

    size_t max_msg;
    char *scratch; /* max_msg + WORKER_READ_CHUNK: one message plus one record */
    struct sip_header hdrs[WORKER_MAX_HEADERS];
};

static inline uint64_t worker_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- worker.c ---- */
void worker_schedule(struct worker *w);
/** Runs the handshake step `cl` waited for in a handshake queue; the caller frees `cl` if it
 * died meanwhile (`dead`). */
void worker_client_run_queued(struct client *cl);
/** Frees a client whose connection is gone (on_close ran and it is not busy). */
void worker_client_free(struct client *cl);
int worker_client_send(void *ctx, uint32_t client_id, const struct slice *iov, size_t n);
struct client *worker_client_of(struct worker *w, uint32_t client_id);
/** The metrics label of a TLS failure cause. */
enum metrics_tls_cause worker_tls_metric_cause(enum tls_cause c);

/* ---- worker_hs.c: handshake admission (the queues, the cap and each source's share) ---- */
/** Sizes the per-source table for the cap. Returns 0 or -ENOMEM. */
int worker_hs_init(struct worker *w);
/** Cancels the handshake timer, frees the queues and the table. */
void worker_hs_deinit(struct worker *w);
/** Queues `cl`'s next handshake step for the end of the turn (a no-op when it waits already).
 * Returns false when there is no room to queue it (ENOMEM): the caller runs it now. */
bool worker_hs_queue(struct client *cl);
/** `cl`'s first handshake step is about to run: its handshake is in flight from now. */
void worker_hs_start(struct client *cl);
/** `cl`'s handshake is no longer in flight: established (called just before `established` is
 * set) or its connection closed (once, from its on_close); a no-op when it was not in flight. A
 * ClientHello that waited for the cap may be answered. */
void worker_hs_end(struct client *cl);

/* ---- worker_upstream.c: the pooled UCM connections ---- */
extern const struct upstream_ops worker_upstream_ops;
/** Publishes the nodes' state for the admin thread now and every second. */
void worker_status_start(struct worker *w);

/* ---- worker_calls.c: struct proxy_env's call hooks ---- */
struct policy_binding *worker_env_client_binding(void *ctx, uint32_t client_id);
int worker_env_upstream_pick(void *ctx, int node, struct proxy_sent *sent);
int worker_env_peer_send(void *ctx, uint32_t conn_id, const struct slice *iov, size_t n);
int worker_env_flow_send(void *ctx, const struct flow *f, uint64_t txn_id, const struct slice *iov,
                         size_t n);
void worker_env_response_post(void *ctx, unsigned worker, uint32_t client_id,
                              const struct slice *iov, size_t n);

#endif
