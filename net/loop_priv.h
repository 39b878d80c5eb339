// SPDX-License-Identifier: MIT
// net/ private: struct loop and struct conn layouts, user_data packing, and the functions
// loop.c and conn.c call in each other. Not for use outside net/ (tests excepted).
#ifndef SIPEDGE_NET_LOOP_PRIV_H
#define SIPEDGE_NET_LOOP_PRIV_H

#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "net/conn.h"
#include "net/loop.h"
#include "net/src_count.h"

/* user_data = op << 56 | payload. For conn ops the payload is the 32-bit conn id; for
 * listener ops the listener index; for messages a pointer (user space pointers fit 56 bits). */
enum loop_op {
    LOOP_OP_NONE = 0,     /* ignored (e.g. liburing's internal timeout) */
    LOOP_OP_ACCEPT,       /* payload: listener index */
    LOOP_OP_RECV,         /* conn: recv with provided buffers (multishot or single) */
    LOOP_OP_POLL,         /* conn: POLLIN readiness (no buffer ring fallback) */
    LOOP_OP_SEND,         /* conn: send of the head output chunk */
    LOOP_OP_CONNECT,      /* conn: outbound connect */
    LOOP_OP_LINK_TIMEOUT, /* conn: the connect's timeout */
    LOOP_OP_CANCEL,       /* conn: an async cancel we issued */
    LOOP_OP_EVENTFD,      /* the loop's eventfd read (messages, stop) */
    LOOP_OP_MSG,          /* payload: struct loop_msg * delivered by MSG_RING */
    LOOP_OP_MSG_SENT,     /* payload: struct loop_msg * whose MSG_RING failed (source side) */
    LOOP_OP_FD_POLL,      /* payload: generation << 20 | poll slot (loop_poll_arm) */
    LOOP_OP_SHUTDOWN,     /* conn: the shutdown that ends a closing conn's receive */
    /* LOOP_OP_COUNT */ LOOP_OP_COUNT
};

/* Completions handled per turn at most. A reconnect storm queues thousands at once (an accept
 * and a ClientHello each, tens of us of work apiece); without a bound the answers the turn
 * produced for connected clients, and UCM's forwarded requests, would wait for all of them
 * before they are submitted. */
#define LOOP_TURN_MAX_CQES 128

#define LOOP_UD_OP_SHIFT 56
#define LOOP_UD_PAYLOAD  ((UINT64_C(1) << LOOP_UD_OP_SHIFT) - 1)

static inline uint64_t loop__ud(enum loop_op op, uint64_t payload)
{
    return (uint64_t)op << LOOP_UD_OP_SHIFT | (payload & LOOP_UD_PAYLOAD);
}

/* conn id = generation << CONN_SLOT_BITS | slot */
#define CONN_SLOT_BITS 20
#define CONN_SLOT_MASK ((1u << CONN_SLOT_BITS) - 1)
#define CONN_GEN_MASK  ((1u << (32 - CONN_SLOT_BITS)) - 1)

/* conn flags */
#define CONN_F_LIVE           (1u << 0)  /* slot in use */
#define CONN_F_RECV_ARMED     (1u << 1)  /* a recv/poll SQE is in flight */
#define CONN_F_RECV_CANCELING (1u << 2)  /* and a cancel for it too */
#define CONN_F_SEND_INFLIGHT  (1u << 3)  /* a send SQE is in flight */
#define CONN_F_PAUSED         (1u << 4)  /* output over the high watermark: not reading */
#define CONN_F_CONNECTING     (1u << 5)  /* outbound connect in flight */
#define CONN_F_OUTBOUND       (1u << 6)  /* from loop_connect()/loop_adopt() */
#define CONN_F_SOURCE_COUNTED (1u << 7)  /* counted in the per-source table */
#define CONN_F_REAP_QUEUED    (1u << 8)  /* on the reap list */
#define CONN_F_MULTISHOT      (1u << 9)  /* the armed recv is multishot */
#define CONN_F_OPENED         (1u << 10) /* on_open ran (or a connect was attempted) */
#define CONN_F_TRUNK          (1u << 11) /* trunk: out_cap_trunk, never paused (conn_set_trunk) */
#define CONN_F_SEND_DEFERRED                                                                       \
    (1u << 12)                    /* in loop->defer_ids: its send leaves at the turn's end         \
                                   */
#define CONN_F_RX_TS   (1u << 13) /* accepted with SO_TIMESTAMPNS: receive with recvmsg */
#define CONN_F_RECVMSG (1u << 14) /* the armed recv is a multishot recvmsg (header + cmsg) */

/* Control space of a receive: one SCM_TIMESTAMPNS (CMSG_SPACE(sizeof(struct timespec)), 32 bytes
 * on 64-bit Linux; clang does not take CMSG_SPACE as a constant, so the buffer has room to spare).
 */
#define LOOP_RX_CMSG_SPACE CMSG_SPACE(sizeof(struct timespec))
#define LOOP_RX_CMSG_BUF   64

/* Trunks whose send waits for the end of the turn, at most (more: sent at once). */
#define LOOP_DEFER_MAX 64

/** Output chunk: bytes [off, len) of data[] are still to send. */
struct conn_chunk {
    struct conn_chunk *next;
    uint32_t off;
    uint32_t len;
    uint32_t cap;
    char data[];
};

/** Connect-time block (address and timeout must stay valid until the SQEs are submitted). */
struct conn_connect {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct __kernel_timespec ts;
};

struct conn {
    struct loop *loop;
    const struct conn_ops *ops;
    void *user;
    struct conn_chunk *out_head;
    struct conn_chunk *out_tail;
    struct conn_connect *connect; /* only while CONN_F_CONNECTING */
    uint32_t id;
    int fd;
    uint32_t out_bytes;
    uint32_t next; /* free list / reap list: slot + 1, 0 = end */
    int32_t last_err;
    uint16_t flags;
    uint16_t inflight;    /* SQEs whose final CQE has not been seen */
    uint8_t state;        /* enum conn_state */
    uint8_t reason;       /* enum conn_close_reason once CLOSING */
    struct in6_addr peer; /* accepted conns: source address (v4 mapped) for the cap */
    uint64_t rx_ns;       /* CLOCK_REALTIME ns the kernel got the last bytes read (0: unknown) */
};

#define LOOP_MAX_LISTENERS 8

struct loop_listener {
    struct loop *loop;
    const struct conn_ops *ops;
    void *arg;
    struct loop_timer retry; /* re-arm accept after EMFILE and friends */
    int fd;
    int port;
    bool armed;
    bool closed;
    bool rx_ts; /* SO_TIMESTAMPNS on the listener, and so on every socket it accepts */
};

struct loop_msg {
    struct loop_msg *next;
    struct loop *target;
    void (*fn)(struct loop *loop, void *arg);
    void *arg;
};

/** A poll slot: tracks one IORING_OP_POLL_ADD of loop_poll_arm() until its CQE. */
struct loop_poll_slot {
    struct loop_poll *owner; /* NULL once cancelled (or free) */
    void (*cb)(struct loop *loop, struct loop_poll *p, unsigned revents);
    uint32_t gen;  /* bumped at every release, never 0 */
    uint32_t next; /* free list: slot + 1, 0 = end */
    bool busy;     /* allocated: an SQE is (or is about to be) in flight */
};

#define LOOP_POLL_SLOT_BITS 20
#define LOOP_POLL_MAX_SLOTS (1u << LOOP_POLL_SLOT_BITS)

struct loop {
    struct io_uring ring;
    struct loop_cfg cfg;
    unsigned features;
    unsigned index;
    unsigned ring_flags;
    bool enabled;
    void *user;
    loop_turn_fn turn_fn;
    uint64_t now_ms;
    atomic_bool stop;

    int efd;
    uint64_t efd_val;
    pthread_mutex_t mq_lock;
    struct loop_msg *mq_head;
    struct loop_msg *mq_tail;

    struct io_uring_buf_ring *br;
    char *bufs;
    unsigned br_mask;
    char *scratch;        /* receive buffer for the poll fallback */
    struct msghdr rx_msg; /* multishot recvmsg template: no name, LOOP_RX_CMSG_SPACE control */
    union {               /* control buffer of the poll fallback's recvmsg */
        size_t align;     /* a cmsghdr's alignment (the struct itself ends in a flexible array) */
        char buf[LOOP_RX_CMSG_BUF];
    } rx_cmsg;

    struct conn *conns;
    uint32_t slots_used;                /* slots [0, slots_used) were handed out at least once */
    uint32_t free_head;                 /* slot + 1 */
    uint32_t reap_head;                 /* slot + 1 */
    uint32_t defer_ids[LOOP_DEFER_MAX]; /* trunks with a deferred send (ids: may be stale) */
    unsigned defer_n;

    struct src_count src; /* connections per source (max_conns_per_source) */

    struct conn_chunk *chunk_cache;
    unsigned chunk_cache_len;

    struct loop_timer **heap;
    uint32_t heap_len;
    uint32_t heap_cap;
    uint64_t timer_seq;

    struct loop_poll_slot *polls; /* loop_poll_arm() slots, grown on demand */
    uint32_t polls_cap;
    uint32_t polls_free; /* slot + 1 */

    struct loop_listener listeners[LOOP_MAX_LISTENERS];
    unsigned nlisteners;

    struct loop_stats stats;
};

/** An SQE, submitting first when the SQ is full; NULL only when the ring is broken. */
struct io_uring_sqe *loop__sqe(struct loop *loop);

/** conn.c: TCP_NODELAY and the configured buffer sizes on `fd` (a listener's are inherited). */
void conn__tune_socket(struct loop *loop, int fd);

/** conn.c: a new conn for an accepted fd (applies the caps; closes `fd` on rejection). */
void conn__accepted(struct loop *loop, struct loop_listener *l, int fd);

/** conn.c: handles a CQE of a conn op. */
void conn__handle(struct loop *loop, enum loop_op op, const struct io_uring_cqe *cqe);

/** conn.c: submits the sends deferred during the turn (before the ring is submitted). */
void conn__flush_deferred(struct loop *loop);

/** conn.c: frees the conns that are CLOSING with nothing in flight. */
void conn__reap(struct loop *loop);

/** conn.c: closes every conn (loop_free). */
void conn__close_all(struct loop *loop);

/** conn.c: frees the chunk cache. */
void conn__free_cache(struct loop *loop);

#endif
