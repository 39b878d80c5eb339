// SPDX-License-Identifier: MIT
// SIGTERM: the edge's drain, run by the main thread once the signal arrived. See
// docs/internals/drain.md for the phases and what a client sees in each.
#ifndef SIPEDGE_CORE_DRAIN_H
#define SIPEDGE_CORE_DRAIN_H

struct edge;

/**
 * Drains and stops every worker of `e`: not ready (/readyz 503) and no accept from now on;
 * requests on open connections are served as usual until every client has left and no
 * transaction is open, or listen.drain_timeout_ms passed; then each worker, on its own thread,
 * answers what is still open with 503 + Retry-After, sends close_notify on every client and
 * upstream connection, closes them once flushed (at most DRAIN_FLUSH_MS later) and frees
 * itself. Returns 0 when every worker stopped, -ETIMEDOUT when one did not within the flush
 * bound plus a second (its memory is then left to the exit). Main thread, workers running.
 */
int edge_drain(struct edge *e);

/** The longest wait for queued close_notify and responses to flush at the drain's end. */
#define DRAIN_FLUSH_MS 1000

#endif
