// SPDX-License-Identifier: MIT
// A worker's TLS handshake admission: the queues that hold handshake steps until the end of the
// turn, the cap on handshakes in flight (listen.limits.max_handshakes_in_flight) and each
// source's share of it. See struct worker's hs_* fields.
#include "core/worker_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/edge.h"
#include "core/metrics.h"
#include "net/loop.h"
#include "net/src_count.h"

static void handshakes_cb(struct loop *loop, struct loop_timer *t);

/* Whether the handshake cap stops the first steps (answering ClientHellos) for now. */
static bool hs_capped(const struct worker *w)
{
    uint32_t cap = w->e->cfg.listen.limits.max_handshakes_in_flight;
    return cap != 0 && w->hs_inflight >= cap;
}

/* The key of `cl`'s source in hs_src and hs_wait: its IPv4 address, or its IPv6 /64. */
static void hs_src_key(const struct client *cl, uint8_t key[SRC_COUNT_KEY_LEN])
{
    src_count_key_of_peer(cl->src, key);
}

/* Whether `cl`'s source is heavy (see struct worker's hs_inflight): with a share of the cap (a
 * sixteenth, at least 1), that share of its handshakes in flight already, or more than that
 * share of its ClientHellos waiting. */
static bool hs_heavy(const struct worker *w, const struct client *cl)
{
    uint32_t cap = w->e->cfg.listen.limits.max_handshakes_in_flight;
    if (cap == 0)
        return false;
    uint8_t key[SRC_COUNT_KEY_LEN];
    hs_src_key(cl, key);
    uint32_t share = cap / 16 ? cap / 16 : 1;
    return src_count_get(&w->hs_src, key) >= share || src_count_get(&w->hs_wait, key) > share;
}

/* `cl`'s ClientHello no longer waits: answered, or its connection closed. */
static void hs_wait_end(struct worker *w, struct client *cl)
{
    if (cl->hs_hello_waits) {
        cl->hs_hello_waits = false;
        metrics_gauge_add(w->shard, -1, METRIC_TLS_CLIENT_HELLOS_WAITING);
    }
    if (!cl->hs_wait_counted)
        return;
    uint8_t key[SRC_COUNT_KEY_LEN];
    hs_src_key(cl, key);
    src_count_dec(&w->hs_wait, key);
    cl->hs_wait_counted = false;
}

/* A heavy source's ClientHello is answered only below half the cap. */
static bool hs_heavy_open(const struct worker *w)
{
    uint32_t cap = w->e->cfg.listen.limits.max_handshakes_in_flight;
    return w->hs_inflight < cap - cap / 2;
}

static uint32_t id_fifo_pop(struct id_fifo *f);

/* The client `id` names if it still waits in a handshake queue, else NULL (closed meanwhile:
 * the id may even name a newer connection). */
static struct client *hs_waiting(struct worker *w, uint32_t id)
{
    struct client *cl = worker_client_of(w, id);
    return cl != NULL && cl->hs_queued ? cl : NULL;
}

/* The oldest client in hs_heavy whose ClientHello may be answered now, or NULL (it stays
 * queued). Drops stale ids at the head. */
static struct client *hs_heavy_head(struct worker *w)
{
    while (w->hs_heavy.len > 0) {
        struct client *cl = hs_waiting(w, w->hs_heavy.q[w->hs_heavy.head]);
        if (cl == NULL) {
            id_fifo_pop(&w->hs_heavy);
            continue;
        }
        if (hs_capped(w) || (hs_heavy(w, cl) && !hs_heavy_open(w)))
            return NULL;
        return cl;
    }
    return NULL;
}

/* Whether a ClientHello waits that may be answered now (handshakes_cb would answer one). */
static bool hs_first_ready(struct worker *w)
{
    return (w->hs_first.len > 0 && !hs_capped(w)) || hs_heavy_head(w) != NULL;
}

/* A client's handshake is in flight from its first step until it is established or the
 * connection closes (UCM's few connections are not capped). */
static bool client_inflight(const struct client *cl)
{
    return cl->hs_started && !cl->established && !cl->ucm_peer;
}

/* `cl`'s handshake is no longer in flight: established (called just before `established` is
 * set) or its connection closed (once, from client_on_close). A ClientHello that waited for the
 * cap may be answered. */
void worker_hs_end(struct client *cl)
{
    struct worker *w = cl->w;
    hs_wait_end(w, cl);
    if (!client_inflight(cl))
        return;
    w->hs_inflight--;
    if (cl->hs_src_counted) {
        uint8_t key[SRC_COUNT_KEY_LEN];
        hs_src_key(cl, key);
        src_count_dec(&w->hs_src, key);
        cl->hs_src_counted = false;
    }
    metrics_gauge_add(w->shard, -1, METRIC_TLS_HANDSHAKES_IN_FLIGHT);
    if (!loop_timer_armed(&w->hs_timer) && hs_first_ready(w))
        loop_timer_arm(w->loop, &w->hs_timer, loop_now_ms(w->loop), handshakes_cb);
}

/* `cl`'s first handshake step is about to run: its handshake is in flight from now. */
void worker_hs_start(struct client *cl)
{
    struct worker *w = cl->w;
    hs_wait_end(w, cl);
    w->hs_inflight++;
    metrics_gauge_add(w->shard, 1, METRIC_TLS_HANDSHAKES_IN_FLIGHT);
    if (w->e->cfg.listen.limits.max_handshakes_in_flight != 0) {
        uint8_t key[SRC_COUNT_KEY_LEN];
        hs_src_key(cl, key);
        /* 0 only past the table's room (the cap's worth of sources): then it is not counted */
        cl->hs_src_counted = src_count_inc(&w->hs_src, key) > 0;
    }
}

static bool id_fifo_push(struct id_fifo *f, uint32_t id)
{
    if (f->head + f->len == f->cap) {
        if (f->head > 0) {
            memmove(f->q, f->q + f->head, f->len * sizeof(*f->q));
            f->head = 0;
        } else {
            uint32_t cap = f->cap ? f->cap * 2 : 256;
            uint32_t *q = realloc(f->q, cap * sizeof(*q));
            if (q == NULL)
                return false;
            f->q = q;
            f->cap = cap;
        }
    }
    f->q[f->head + f->len++] = id;
    return true;
}

static uint32_t id_fifo_pop(struct id_fifo *f)
{
    uint32_t id = f->q[f->head++];
    if (--f->len == 0)
        f->head = 0;
    return id;
}

/* A handshake step of `cl` waits for the end of this turn (see struct worker's hs_first and
 * hs_later): the first one (answering the ClientHello: the key exchange and the signature,
 * most of a handshake's cost) and the later ones (the client's Finished, then the session
 * ticket and the switch to our record layer: 40-60 us, and thousands of them arrive together
 * in a storm). A client that sends its Finished and closes is still served: client_on_close
 * runs its step first. */
bool worker_hs_queue(struct client *cl)
{
    struct worker *w = cl->w;
    if (cl->hs_queued)
        return true;
    /* UCM's connections (ucm_listen) go ahead of the clients' ClientHellos, cap or no cap */
    bool first = !cl->hs_started && !cl->ucm_peer;
    if (!id_fifo_push(first ? &w->hs_first : &w->hs_later, cl->id))
        return false;
    cl->hs_queued = true;
    if (first && !cl->hs_hello_waits) {
        cl->hs_hello_waits = true;
        metrics_gauge_add(w->shard, 1, METRIC_TLS_CLIENT_HELLOS_WAITING);
    }
    if (first && !cl->hs_wait_counted && w->e->cfg.listen.limits.max_handshakes_in_flight != 0) {
        uint8_t key[SRC_COUNT_KEY_LEN];
        hs_src_key(cl, key);
        /* 0 past the table's room: then not counted (and not heavy by its waiting) */
        cl->hs_wait_counted = src_count_inc(&w->hs_wait, key) > 0;
    }
    if (!loop_timer_armed(&w->hs_timer))
        loop_timer_arm(w->loop, &w->hs_timer, loop_now_ms(w->loop), handshakes_cb);
    return true;
}

/* The next ClientHello to answer, or NULL: hs_first's while under the cap, then hs_heavy's
 * (hs_heavy_head). One of hs_first whose source has turned heavy moves to hs_heavy. */
static struct client *hs_next_first(struct worker *w)
{
    while (w->hs_first.len > 0 && !hs_capped(w)) {
        struct client *cl = hs_waiting(w, id_fifo_pop(&w->hs_first));
        if (cl == NULL)
            continue;
        if (!hs_heavy(w, cl) || !id_fifo_push(&w->hs_heavy, cl->id))
            return cl; /* (no room to wait: answered now) */
        metrics_inc(w->shard, METRIC_TLS_CLIENT_HELLOS_HELD);
    }
    struct client *cl = hs_heavy_head(w);
    if (cl != NULL)
        id_fifo_pop(&w->hs_heavy);
    return cl;
}

/* The end of a turn (timers run after the turn's completions): handshake steps, the later ones
 * first, then ClientHellos (hs_next_first), each queue oldest first, for at most
 * WORKER_HANDSHAKE_SLICE_US; the rest after the next turn's traffic. */
static void handshakes_cb(struct loop *loop, struct loop_timer *t)
{
    struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, hs_timer));
    uint64_t start = worker_mono_us();
    for (;;) {
        struct client *cl;
        if (w->hs_later.len > 0) {
            if ((cl = hs_waiting(w, id_fifo_pop(&w->hs_later))) == NULL)
                continue;
        } else if ((cl = hs_next_first(w)) == NULL) {
            break;
        }
        if (w->proxy == NULL) {
            cl->hs_queued = false;
            continue; /* the drain's end: nothing more is read */
        }
        worker_client_run_queued(cl);
        if (cl->dead)
            worker_client_free(cl);
        if (worker_mono_us() - start >= WORKER_HANDSHAKE_SLICE_US)
            break;
    }
    /* ClientHellos held back by the cap wait for worker_hs_end() to re-arm this */
    if (w->hs_later.len > 0 || hs_first_ready(w))
        loop_timer_arm(loop, &w->hs_timer, loop_now_ms(loop), handshakes_cb);
    worker_schedule(w);
}

int worker_hs_init(struct worker *w)
{
    uint32_t cap = w->e->cfg.listen.limits.max_handshakes_in_flight;
    if (cap == 0)
        return 0;
    /* sources with ClientHellos waiting: up to 16 per handshake the cap allows (8,192 for 512;
     * beyond that a source is not counted, and its ClientHellos wait in arrival order) */
    uint32_t conns = w->e->cfg.listen.limits.max_conns_per_worker;
    uint32_t waiting = cap < conns / 16 ? cap * 16 : conns;
    if (src_count_init(&w->hs_src, cap) < 0 || src_count_init(&w->hs_wait, waiting) < 0)
        return -ENOMEM;
    return 0;
}

void worker_hs_deinit(struct worker *w)
{
    loop_timer_cancel(w->loop, &w->hs_timer);
    free(w->hs_first.q);
    free(w->hs_heavy.q);
    free(w->hs_later.q);
    src_count_deinit(&w->hs_src);
    src_count_deinit(&w->hs_wait);
}
