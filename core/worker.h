// SPDX-License-Identifier: MIT
// One edge worker: the glue on a loop thread between client connections (TLS server, SIP
// framing), the REGISTER proxy, the auth worker (L1, Redis) and the upstream mTLS zone.
#ifndef SIPEDGE_CORE_WORKER_H
#define SIPEDGE_CORE_WORKER_H

#include <stdint.h>

struct edge;
struct loop;
struct worker;
struct conn_ops;

/** The callbacks of client connections; pass to loop_listen() with the edge as `arg`. */
extern const struct conn_ops worker_client_ops;

/** The callbacks of the UCM listener's connections (ucm_listen.port; the edge as `arg`). */
extern const struct conn_ops worker_ucm_ops;

/**
 * Builds worker `idx` on `loop`: proxy, auth worker (connects to Redis when configured), upstream
 * zone (starts connecting). Must run on the loop's thread (post it with loop_post()). Returns NULL
 * on failure after logging why.
 */
struct worker *worker_new(struct edge *e, struct loop *loop, unsigned idx);

/** Frees everything the worker owns. Loop thread, after its listeners are closed. NULL: no-op. */
void worker_free(struct worker *w);

/** SIGHUP on this worker's thread: picks the new TLS contexts up and drops L1 entries. */
void worker_reload(struct worker *w);

/** SIGTERM on this worker's thread: stop accepting; requests on open connections are still
 * served and open transactions still finish (until worker_stop()). */
void worker_drain(struct worker *w);

/**
 * The drain's end, on this worker's thread: stop accepting; answer every open transaction (503 +
 * Retry-After); queue close_notify on every client and upstream connection and close each once
 * its output is flushed, at most `flush_ms` later (then they are cut). Then the worker frees
 * itself and calls `stopped(arg)` on this thread: `w` is gone by then.
 */
void worker_stop(struct worker *w, uint32_t flush_ms, void (*stopped)(void *arg), void *arg);

/** Client connections open (for the drain loop; any thread, approximate). */
unsigned worker_clients_open(const struct worker *w);

/** Transactions still waiting for UCM (for the drain loop; any thread, approximate). */
uint64_t worker_transactions_open(const struct worker *w);

#endif
