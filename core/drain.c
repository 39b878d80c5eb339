// SPDX-License-Identifier: MIT
// SIGTERM: stop accepting, serve open connections until they leave or the deadline, then have
// every worker close its connections from its own thread and free itself; only then return.
#include "core/drain.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>

#include "core/edge.h"
#include "core/log.h"
#include "core/worker.h"
#include "net/loop.h"

#define DRAIN_POLL_MS 20

static void drain_cb(struct loop *loop, void *arg)
{
    (void)arg;
    struct worker *w = loop_user(loop);
    if (w != NULL)
        worker_drain(w);
}

static void stopped_cb(void *arg)
{
    struct edge *e = arg;
    atomic_fetch_sub(&e->workers_ready, 1);
}

static void stop_cb(struct loop *loop, void *arg)
{
    struct edge *e = arg;
    struct worker *w = loop_user(loop);
    if (w == NULL)
        return;
    for (unsigned i = 0; i < e->n_workers; i++)
        if (e->workers[i] == w)
            e->workers[i] = NULL;
    worker_stop(w, DRAIN_FLUSH_MS, stopped_cb, e);
}

/* Open transactions and client connections over every worker (approximate: other threads). */
static void count_open(struct edge *e, uint64_t *txns, uint64_t *clients)
{
    *txns = *clients = 0;
    for (unsigned i = 0; i < e->n_workers; i++) {
        if (e->workers[i] == NULL)
            continue;
        *txns += worker_transactions_open(e->workers[i]);
        *clients += worker_clients_open(e->workers[i]);
    }
}

int edge_drain(struct edge *e)
{
    atomic_store(&e->draining, true);
    uint64_t t0 = loop_clock_ms(), txns, clients;
    count_open(e, &txns, &clients);
    log_event(LOG_INFO, "draining", LOG_U("timeout_ms", e->cfg.listen.drain_timeout_ms),
              LOG_U("clients", clients), LOG_U("transactions", txns));
    for (unsigned i = 0; i < e->n_workers; i++)
        loop_post(loop_group_loop(e->group, i), drain_cb, NULL);
    /* Serve: a client that sends on its open connection is answered as usual. Two quiet
     * samples in a row: a count read from another thread may be caught between a close and an
     * accept that was already under way. */
    int quiet = 0;
    while (loop_clock_ms() - t0 < e->cfg.listen.drain_timeout_ms) {
        count_open(e, &txns, &clients);
        quiet = txns == 0 && clients == 0 ? quiet + 1 : 0;
        if (quiet >= 2)
            break;
        poll(NULL, 0, DRAIN_POLL_MS);
    }
    count_open(e, &txns, &clients);
    log_event(LOG_INFO, "drain_closing", LOG_U("waited_ms", loop_clock_ms() - t0),
              LOG_U("clients", clients), LOG_U("transactions", txns));
    for (unsigned i = 0; i < e->n_workers; i++)
        loop_post(loop_group_loop(e->group, i), stop_cb, e);
    uint64_t t1 = loop_clock_ms();
    while (atomic_load(&e->workers_ready) > 0) {
        if (loop_clock_ms() - t1 > DRAIN_FLUSH_MS + 1000) {
            log_event(LOG_ERROR, "drain_stuck", LOG_U("workers", atomic_load(&e->workers_ready)));
            return -ETIMEDOUT;
        }
        poll(NULL, 0, 5);
    }
    log_event(LOG_INFO, "drained", LOG_U("ms", loop_clock_ms() - t0));
    return 0;
}
