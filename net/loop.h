// SPDX-License-Identifier: MIT
// The worker event loop: one io_uring per worker thread, listeners (SO_REUSEPORT, multishot
// accept), timers, cross-thread messages and per-worker counters. Connections live in net/conn.h.
#ifndef SIPEDGE_NET_LOOP_H
#define SIPEDGE_NET_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct loop;
struct conn;
struct conn_ops;

/** Config flags (`struct loop_cfg.flags`): force the fallbacks, for tests and odd kernels. */
#define LOOP_CFG_F_NO_MULTISHOT     (1u << 0) /* single-shot accept and recv */
#define LOOP_CFG_F_NO_BUFRING       (1u << 1) /* no provided buffers: poll + recv into scratch */
#define LOOP_CFG_F_NO_MSG_RING      (1u << 2) /* cross-thread messages through the eventfd only */
#define LOOP_CFG_F_NO_DEFER_TASKRUN (1u << 3) /* plain ring setup flags */
/* Accepted connections get kernel receive timestamps (SO_TIMESTAMPNS, read with recvmsg):
 * conn_rx_ns() says when their input reached the host, for admission by queueing delay. Not with
 * single-shot recv into provided buffers (LOOP_CFG_F_NO_MULTISHOT with buffers): 0 there. */
#define LOOP_CFG_F_RX_TIMESTAMPS (1u << 4)
/* A closing conn's armed receive is cancelled (a lookup among the ring's armed requests) instead
 * of ended by a shutdown of its socket: the old way, for tests and A/B runs. */
#define LOOP_CFG_F_NO_SHUTDOWN (1u << 5)

/** Features in use by a loop (`loop_features()`), after probing the kernel and applying flags. */
#define LOOP_FEAT_MULTISHOT_ACCEPT (1u << 0)
#define LOOP_FEAT_MULTISHOT_RECV   (1u << 1)
#define LOOP_FEAT_BUFRING          (1u << 2)
#define LOOP_FEAT_MSG_RING         (1u << 3)
#define LOOP_FEAT_SINGLE_ISSUER    (1u << 4)
#define LOOP_FEAT_DEFER_TASKRUN    (1u << 5)
#define LOOP_FEAT_COOP_TASKRUN     (1u << 6)
#define LOOP_FEAT_EXT_ARG          (1u << 7)
#define LOOP_FEAT_SHUTDOWN         (1u << 8)

/** Per-worker configuration; fill with `loop_cfg_default()` then override. */
struct loop_cfg {
    unsigned queue_depth;          /**< SQ entries (CQ is 4x); default 256 */
    unsigned buf_count;            /**< provided receive buffers, power of 2; default 256 */
    unsigned buf_size;             /**< bytes per receive buffer; default 16384 */
    unsigned max_conns;            /**< connections per worker (slab size, <= 2^20); 65536 */
    unsigned max_conns_per_source; /**< accepted conns per peer IP per worker; 0 = no cap */
    unsigned out_cap;              /**< output queue hard cap per conn (bytes); 262144 */
    unsigned out_high;             /**< stop reading at or above this many queued bytes; 131072 */
    unsigned out_low;              /**< resume reading at or below; 32768 */
    unsigned out_cap_trunk;   /**< hard cap of a trunk conn (outbound, conn_set_trunk); 4 MiB */
    unsigned out_high_trunk;  /**< a trunk at or above this is congested (never paused); 1 MiB */
    unsigned out_chunk;       /**< output chunk size (bytes); 16384 */
    unsigned out_chunk_cache; /**< free chunks kept per worker for reuse; 64 */
    int backlog;              /**< listen() backlog (the kernel caps it at somaxconn); 4096 */
    int sndbuf;               /**< SO_SNDBUF for connections, 0 = kernel default */
    int rcvbuf;               /**< SO_RCVBUF for connections, 0 = kernel default */
    unsigned flags;           /**< LOOP_CFG_F_* */
};

/** Fills `cfg` with the defaults documented on each field. */
void loop_cfg_default(struct loop_cfg *cfg);

/** Why a connection closed (`on_close` reason, counters index). */
enum conn_close_reason {
    CONN_CLOSE_LOCAL = 0,       /**< the upper layer called conn_close() / conn_drain() */
    CONN_CLOSE_PEER,            /**< the peer closed (EOF) */
    CONN_CLOSE_ERROR,           /**< a socket error (conn_last_error() has it) */
    CONN_CLOSE_SLOW,            /**< output queue over its hard cap (slow reader) */
    CONN_CLOSE_CONNECT_FAILED,  /**< outbound connect failed (refused, unreachable...) */
    CONN_CLOSE_CONNECT_TIMEOUT, /**< outbound connect did not finish in time */
    CONN_CLOSE_SHUTDOWN,        /**< the loop is being freed */
    /* CONN_CLOSE_COUNT */ CONN_CLOSE_COUNT
};

/** Plain per-worker counters, written only by the worker; readers on other threads get
 * approximate values (no locking), which is what metrics need. */
struct loop_stats {
    uint64_t accepted;                 /**< inbound connections accepted and opened */
    uint64_t connected;                /**< outbound connects that succeeded + adopted fds */
    uint64_t closed[CONN_CLOSE_COUNT]; /**< connections closed, by reason */
    uint64_t rejected_worker_cap;      /**< accepted then closed at once: worker full */
    uint64_t rejected_source_cap;      /**< accepted then closed at once: source IP full */
    uint64_t accept_errors;            /**< accept CQEs with an error */
    uint64_t bytes_in;                 /**< bytes received (all conns) */
    uint64_t bytes_out;                /**< bytes sent */
    uint64_t recv_arms;                /**< recv (or poll) SQEs submitted */
    uint64_t sends;                    /**< send SQEs submitted */
    uint64_t cancels;                  /**< async cancels of a conn's operation submitted */
    uint64_t shutdowns;                /**< shutdowns submitted (draining or closing conns) */
    uint64_t recv_enobufs;             /**< multishot recv ended by -ENOBUFS (re-armed) */
    uint64_t backpressure_pauses;      /**< a conn stopped reading at the high watermark */
    uint64_t slow_closes;              /**< same as closed[CONN_CLOSE_SLOW] */
    uint64_t stale_cqes;               /**< CQEs for a slot whose generation moved on */
    uint64_t timers_fired;             /**< timer callbacks run */
    uint64_t msgs_received;            /**< cross-thread messages run on this loop */
    uint64_t msgs_via_ring;            /**< of which delivered by IORING_OP_MSG_RING */
    uint64_t conns_open;               /**< gauge: live conns in the slab */
    uint64_t out_queued;               /**< gauge: bytes in all output queues */
};

/**
 * Creates a loop (ring, buffer ring, eventfd, slab) from `cfg` (copied). May be called on any
 * thread; the ring starts disabled and becomes owned by the thread that calls loop_run() first.
 * Returns NULL on failure with errno set (ENOMEM, EINVAL for a bad cfg, or io_uring_setup's).
 */
struct loop *loop_new(const struct loop_cfg *cfg);

/**
 * Frees a loop that is not running: closes every conn (on_close(CONN_CLOSE_SHUTDOWN) for the
 * ones still open), listeners, the ring; unrun cross-thread messages are dropped without being
 * called. `loop_free(NULL)` is a no-op.
 */
void loop_free(struct loop *loop);

/**
 * Runs the loop on the calling thread until loop_stop(). Each turn: submit and wait (bounded by
 * the nearest timer), drain all CQEs then one cq_advance, read the clock once, run due timers,
 * reap closed conns. Returns 0 after a stop, or -errno for a fatal ring error.
 */
int loop_run(struct loop *loop);

/** Asks the loop to return from loop_run() at the end of its current turn. Any thread. */
void loop_stop(struct loop *loop);

/** The features in use (LOOP_FEAT_*). Any thread after loop_new(). */
unsigned loop_features(const struct loop *loop);

/** The loop's counters (see struct loop_stats about cross-thread reads). */
const struct loop_stats *loop_stats(const struct loop *loop);

/** Monotonic milliseconds read at the start of the current turn (the loop's notion of now). */
uint64_t loop_now_ms(const struct loop *loop);

/** Monotonic milliseconds read from the clock now (for threads without a loop). */
uint64_t loop_clock_ms(void);

/** Index of this loop in its group (0 for a standalone loop). */
unsigned loop_index(const struct loop *loop);

/** The loop running on the calling thread, or NULL. */
struct loop *loop_current(void);

/** The upper layer's pointer for this loop (set by loop_set_user()). Loop thread. */
void *loop_user(const struct loop *loop);

/** Sets the upper layer's pointer for this loop (e.g. the per-worker proxy state). */
void loop_set_user(struct loop *loop, void *user);

/** Called at the end of every turn that handled at least one completion, with the time the turn
 * took (from the wake-up to the end of its timers and reaping) and the completions it handled. */
typedef void (*loop_turn_fn)(struct loop *loop, uint64_t busy_us, unsigned cqes);

/** Sets (or, with NULL, clears) the turn hook. Loop thread, or before the loop runs. */
void loop_set_turn_fn(struct loop *loop, loop_turn_fn fn);

/**
 * Opens a listening TCP socket on `addr` (IPv4 or IPv6; SO_REUSEPORT, SO_REUSEADDR, IPV6_V6ONLY
 * for v6) and arms accept. Each accepted conn gets `ops` and user pointer `arg` before on_open.
 * Call before loop_run() or on the loop's thread. Returns the bound port (>0, useful after
 * binding port 0), or -errno.
 */
int loop_listen(struct loop *loop, const struct sockaddr *addr, socklen_t len,
                const struct conn_ops *ops, void *arg);

/** Stops accepting on every listener of this loop (SIGTERM drain). Loop thread. */
void loop_unlisten(struct loop *loop);

/** A timer, embedded in its owner. Zero it (or loop_timer_init()) before first use. */
struct loop_timer {
    uint64_t deadline_ms;                                    /**< monotonic ms */
    uint64_t seq;                                            /**< tie-break: arm order */
    void (*cb)(struct loop *loop, struct loop_timer *timer); /**< runs on the loop thread */
    uint32_t heap_idx;                                       /**< 0 = not armed, else idx+1 */
};

/** Zeroes `t` (not armed). */
void loop_timer_init(struct loop_timer *t);

/**
 * Arms (or re-arms) `t` to call `cb` at `deadline_ms` (loop_now_ms() based). Timers fire in
 * deadline order, equal deadlines in arm order; a timer armed while timers run fires on the
 * next turn at the earliest. O(log n). Loop thread. Returns 0 or -ENOMEM.
 */
int loop_timer_arm(struct loop *loop, struct loop_timer *t, uint64_t deadline_ms,
                   void (*cb)(struct loop *loop, struct loop_timer *timer));

/** Disarms `t` if armed (no-op otherwise). O(log n). Loop thread. */
void loop_timer_cancel(struct loop *loop, struct loop_timer *t);

/** True while `t` is armed. */
static inline bool loop_timer_armed(const struct loop_timer *t)
{
    return t->heap_idx != 0;
}

/**
 * A one-shot readiness watch on a socket that another module reads and writes itself (auth/'s
 * Redis sockets). Embedded by value in its owner; zero-initialised means not armed. The SQE in
 * flight is tracked by a generation-checked slot of the loop, not by this struct, so the struct
 * may be freed right after loop_poll_cancel(). Fields are private to net/.
 */
struct loop_poll {
    uint32_t slot; /**< poll slot + 1 while armed, 0 otherwise */
    uint32_t gen;  /**< generation of that slot when armed */
};

/**
 * Arms a one-shot IORING_OP_POLL_ADD of `fd` for `events` (POLLIN, POLLOUT...). `cb` runs once on
 * the loop thread with the revents (POLLERR, POLLHUP, POLLNVAL included; POLLERR when the kernel
 * failed the poll); `p` is no longer armed when it runs, so the callback may re-arm it. Loop
 * thread. Returns 0, -EBUSY when `p` is already armed, -EINVAL for a bad `fd` or NULL `cb`,
 * -ENOMEM, or -EAGAIN when the ring has no room for the SQE.
 */
int loop_poll_arm(struct loop *loop, struct loop_poll *p, int fd, unsigned events,
                  void (*cb)(struct loop *loop, struct loop_poll *p, unsigned revents));

/**
 * Cancels an armed poll: its callback will not run. Safe on a never-armed, already-fired or
 * already-cancelled poll. `p` may be freed as soon as this returns. Loop thread.
 */
void loop_poll_cancel(struct loop *loop, struct loop_poll *p);

/** True while `p` is armed (its callback has not run and it was not cancelled). */
bool loop_poll_armed(const struct loop_poll *p);

/**
 * Posts `fn(target, arg)` to run on `target`'s thread during one of its next turns. Any thread,
 * including the target's own. From a loop thread with MSG_RING support the message travels by
 * IORING_OP_MSG_RING; otherwise through a mutex-protected queue and the target's eventfd.
 * Messages from one sender to one target run in order only on the eventfd path.
 * Returns 0 or -ENOMEM. `arg` is owned by `fn` from then on.
 */
int loop_post(struct loop *target, void (*fn)(struct loop *loop, void *arg), void *arg);

/** A group of worker threads, each running its own loop. */
struct loop_group;

/**
 * Creates `n` loops (0 = one per online CPU) with `cfg`. Nothing runs yet: add listeners with
 * loop_group_listen() and per-loop state with loop_group_loop(), then loop_group_start().
 * Returns NULL on failure (errno set).
 */
struct loop_group *loop_group_new(const struct loop_cfg *cfg, unsigned n);

/** Number of loops in `g`. */
unsigned loop_group_size(const struct loop_group *g);

/** Loop `i` of `g` (i < loop_group_size()). */
struct loop *loop_group_loop(struct loop_group *g, unsigned i);

/**
 * loop_listen() on every loop of `g` on the same address; with port 0 the first loop's port is
 * reused by the others. Returns the port (>0) or -errno.
 */
int loop_group_listen(struct loop_group *g, const struct sockaddr *addr, socklen_t len,
                      const struct conn_ops *ops, void *arg);

/**
 * Starts one thread per loop running loop_run(); with `pin`, thread i is pinned to the i-th
 * online CPU (modulo). Returns 0 or -errno (threads already started are stopped and joined).
 */
int loop_group_start(struct loop_group *g, bool pin);

/** Stops every loop and joins the threads. Idempotent. */
void loop_group_stop(struct loop_group *g);

/** Stops (if running) and frees every loop and the group. NULL is a no-op. */
void loop_group_free(struct loop_group *g);

#endif
