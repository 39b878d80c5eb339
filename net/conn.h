// SPDX-License-Identifier: MIT
// Connections of a worker loop: a per-worker slab of struct conn addressed by a 32-bit id
// (slot | generation), receive into provided buffers, bounded output queue with backpressure.
#ifndef SIPEDGE_NET_CONN_H
#define SIPEDGE_NET_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "net/loop.h"

/**
 * Connection state. Transitions (see docs/internals/loop.md):
 *   HANDSHAKE -> OPEN        conn_set_open() (e.g. TLS done); net itself treats both alike
 *   HANDSHAKE/OPEN -> DRAINING  conn_drain(): no more reads or sends, flush the output
 *   any -> CLOSING           conn_close(), EOF, error, slow reader, connect failure
 *   CLOSING -> (freed)       when the in-flight SQE count is 0, at the end of the loop turn
 */
enum conn_state {
    CONN_HANDSHAKE = 0, /**< transport up (or connecting), upper-layer handshake running */
    CONN_OPEN,          /**< upper layer says it is established */
    CONN_DRAINING,      /**< flushing output, then closes */
    CONN_CLOSING,       /**< on_close ran; waiting for in-flight SQEs before the free */
    /* CONN_STATE_COUNT */ CONN_STATE_COUNT
};

/**
 * The upper layer's callbacks (a vtable shared by many conns). All run on the loop thread.
 * Any callback may call conn_send/conn_close/conn_drain on its conn; none may free the conn.
 */
struct conn_ops {
    /** Transport is up (accepted, connected, or adopted). May be NULL. */
    void (*on_open)(struct conn *c);
    /**
     * `n` (> 0) bytes arrived at `p`. `p` is valid only during the call (the provided buffer
     * goes back to the ring right after): copy what must outlive it. Required.
     */
    void (*on_data)(struct conn *c, const char *p, size_t n);
    /**
     * The conn is closing for `reason`; called exactly once, for every conn that was opened
     * or attempted (failed connects too). After it returns the conn pointer and id must not be
     * used (conn_get() returns NULL for the id). May be NULL.
     */
    void (*on_close)(struct conn *c, enum conn_close_reason reason);
    /** The output queue drained to the low watermark after a backpressure pause: reading has
     * resumed and the upper layer may produce again. May be NULL. */
    void (*on_writable)(struct conn *c);
};

/** The conn's 32-bit id: slot | generation << CONN_SLOT_BITS. Stable for its lifetime. */
uint32_t conn_id(const struct conn *c);

/** The live conn with this id on `loop`, or NULL when the slot was freed or reused. */
struct conn *conn_get(struct loop *loop, uint32_t id);

/** The loop owning `c`. */
struct loop *conn_loop(const struct conn *c);

/** The upper layer's pointer (listener `arg` or connect `arg` until changed). */
void *conn_user(const struct conn *c);

/** Sets the upper layer's pointer. */
void conn_set_user(struct conn *c, void *user);

/** Replaces the callbacks (e.g. a TLS layer putting itself between net and SIP). */
void conn_set_ops(struct conn *c, const struct conn_ops *ops);

/** Current state. */
enum conn_state conn_state(const struct conn *c);

/** HANDSHAKE -> OPEN (no-op in any other state). */
void conn_set_open(struct conn *c);

/** The socket fd (for getsockopt and logs; never close it, never read or write it). */
int conn_fd(const struct conn *c);

/**
 * When the kernel received the last bytes handed to on_data (CLOCK_REALTIME, ns): the timestamp of
 * the newest segment that read took. 0 when not known (the loop has no LOOP_CFG_F_RX_TIMESTAMPS,
 * an outbound conn, single-shot recv). Valid inside on_data, for the message it completes.
 */
uint64_t conn_rx_ns(const struct conn *c);

/** True for conns from loop_connect()/loop_adopt(), false for accepted ones. */
bool conn_is_outbound(const struct conn *c);

/** The last socket error seen (-errno) or 0: why a CONN_CLOSE_ERROR or connect failure. */
int conn_last_error(const struct conn *c);

/** Bytes waiting in the output queue. */
size_t conn_out_bytes(const struct conn *c);

/**
 * Makes `c` a trunk: a connection to a trusted peer that carries many clients' traffic (the UCM
 * pool, UCM's own connections). A trunk's output queue is capped at the loop's out_cap_trunk
 * instead of out_cap, and it is never paused for backpressure: reading its peer's answers is
 * what empties the queues towards it. Outbound conns (loop_connect, loop_adopt) are trunks
 * from the start. Loop thread.
 */
void conn_set_trunk(struct conn *c);

/** The hard cap of `c`'s output queue (out_cap, or out_cap_trunk for a trunk). */
size_t conn_out_cap(const struct conn *c);

/** The output level at which `c` counts as congested (out_high, or out_high_trunk). */
size_t conn_out_high(const struct conn *c);

/**
 * Copies `n` iovecs into the output queue and starts sending (at most one send SQE in flight
 * per conn). At or above the high watermark a conn that is not a trunk stops reading until the
 * queue is back at the low watermark. Returns the bytes queued; -EPIPE when DRAINING/CLOSING;
 * -ENOMEM (queue unchanged); -ENOBUFS when the queue would exceed its hard cap (conn_out_cap): the
 * conn is then closed with CONN_CLOSE_SLOW (on_close runs before this returns). Loop thread.
 */
ssize_t conn_send(struct conn *c, const struct iovec *iov, int n);

/** Flushes the output queue, then closes with CONN_CLOSE_LOCAL; stops reading now. */
void conn_drain(struct conn *c);

/**
 * Closes now with `reason` (queued output is dropped): cancels the in-flight SQEs, runs
 * on_close, and frees the slot once nothing is in flight. No-op when already CLOSING.
 */
void conn_close(struct conn *c, enum conn_close_reason reason);

/**
 * Closes every live connection of `loop` with `reason` (conn_close() on each one not already
 * CLOSING): the end of a drain, for what did not finish flushing in time. Loop thread.
 */
void loop_close_conns(struct loop *loop, enum conn_close_reason reason);

/**
 * Starts a non-blocking TCP connect to `addr` (IORING_OP_CONNECT linked to a `timeout_ms`
 * timeout; 0 = none). The conn is HANDSHAKE at once; on success on_open runs, on failure
 * on_close(CONN_CLOSE_CONNECT_FAILED or _TIMEOUT) with conn_last_error() set. Loop thread.
 * Returns 0 and stores the conn in `*out` (may be NULL), or -errno (nothing to close).
 */
int loop_connect(struct loop *loop, const struct sockaddr *addr, socklen_t len, uint32_t timeout_ms,
                 const struct conn_ops *ops, void *arg, struct conn **out);

/**
 * loop_connect() from the local address `src` (`src_len` bytes, the same family as `addr`; its
 * port 0: the kernel picks one at the connect, IP_BIND_ADDRESS_NO_PORT), e.g. a load generator's
 * clients each from an address of their own. `src` NULL: loop_connect(). Returns as it does, or
 * the bind's -errno.
 */
int loop_connect_from(struct loop *loop, const struct sockaddr *addr, socklen_t len,
                      const struct sockaddr *src, socklen_t src_len, uint32_t timeout_ms,
                      const struct conn_ops *ops, void *arg, struct conn **out);

/**
 * Takes ownership of `fd`, a connected stream socket made elsewhere (e.g. auth/'s Redis
 * socket); it is set non-blocking and read/written by the ring from now on, and closed with the
 * conn. on_open runs before this returns. Loop thread. Returns 0 (conn in `*out`, may be NULL)
 * or -errno (`fd` not taken: the caller still owns it).
 */
int loop_adopt(struct loop *loop, int fd, const struct conn_ops *ops, void *arg, struct conn **out);

#endif
