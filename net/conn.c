// SPDX-License-Identifier: MIT
// Connections: slab with generations, caps, receive (multishot recv / single recv / poll),
// the bounded output queue with watermarks, close and reap, outbound connect and adopt.
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/loop_priv.h"

/* ---- slab ---- */

static struct conn *conn_alloc(struct loop *loop)
{
    uint32_t slot;
    if (loop->free_head) {
        slot = loop->free_head - 1;
        loop->free_head = loop->conns[slot].next;
    } else if (loop->slots_used < loop->cfg.max_conns) {
        slot = loop->slots_used++;
        loop->conns[slot].id = (1u << CONN_SLOT_BITS) | slot; /* generation 1 */
    } else {
        return NULL;
    }
    struct conn *c = &loop->conns[slot];
    uint32_t id = c->id;
    memset(c, 0, sizeof(*c));
    c->id = id;
    c->loop = loop;
    c->fd = -1;
    c->flags = CONN_F_LIVE;
    c->state = CONN_HANDSHAKE;
    loop->stats.conns_open++;
    return c;
}

struct conn *conn_get(struct loop *loop, uint32_t id)
{
    uint32_t slot = id & CONN_SLOT_MASK;
    if (slot >= loop->slots_used)
        return NULL;
    struct conn *c = &loop->conns[slot];
    return (c->flags & CONN_F_LIVE) && c->id == id ? c : NULL;
}

/* ---- chunks ---- */

static struct conn_chunk *chunk_get(struct loop *loop)
{
    struct conn_chunk *ch = loop->chunk_cache;
    if (ch) {
        loop->chunk_cache = ch->next;
        loop->chunk_cache_len--;
    } else {
        ch = malloc(sizeof(*ch) + loop->cfg.out_chunk);
        if (!ch)
            return NULL;
        ch->cap = loop->cfg.out_chunk;
    }
    ch->next = NULL;
    ch->off = ch->len = 0;
    return ch;
}

static void chunk_put(struct loop *loop, struct conn_chunk *ch)
{
    if (loop->chunk_cache_len < loop->cfg.out_chunk_cache) {
        ch->next = loop->chunk_cache;
        loop->chunk_cache = ch;
        loop->chunk_cache_len++;
    } else {
        free(ch);
    }
}

void conn__free_cache(struct loop *loop)
{
    while (loop->chunk_cache) {
        struct conn_chunk *ch = loop->chunk_cache;
        loop->chunk_cache = ch->next;
        free(ch);
    }
    loop->chunk_cache_len = 0;
}

/* ---- accessors ---- */

uint32_t conn_id(const struct conn *c)
{
    return c->id;
}

struct loop *conn_loop(const struct conn *c)
{
    return c->loop;
}

void *conn_user(const struct conn *c)
{
    return c->user;
}

void conn_set_user(struct conn *c, void *user)
{
    c->user = user;
}

void conn_set_ops(struct conn *c, const struct conn_ops *ops)
{
    c->ops = ops;
}

enum conn_state conn_state(const struct conn *c)
{
    return (enum conn_state)c->state;
}

void conn_set_open(struct conn *c)
{
    if (c->state == CONN_HANDSHAKE)
        c->state = CONN_OPEN;
}

int conn_fd(const struct conn *c)
{
    return c->fd;
}

uint64_t conn_rx_ns(const struct conn *c)
{
    return c->rx_ns;
}

bool conn_is_outbound(const struct conn *c)
{
    return c->flags & CONN_F_OUTBOUND;
}

int conn_last_error(const struct conn *c)
{
    return c->last_err;
}

size_t conn_out_cap(const struct conn *c)
{
    return c->flags & CONN_F_TRUNK ? c->loop->cfg.out_cap_trunk : c->loop->cfg.out_cap;
}

size_t conn_out_high(const struct conn *c)
{
    return c->flags & CONN_F_TRUNK ? c->loop->cfg.out_high_trunk : c->loop->cfg.out_high;
}

size_t conn_out_bytes(const struct conn *c)
{
    return c->out_bytes;
}

/* ---- SQEs ---- */

static uint64_t ud(const struct conn *c, enum loop_op op)
{
    return loop__ud(op, c->id);
}

static void cancel_op(struct conn *c, enum loop_op op)
{
    struct io_uring_sqe *sqe = loop__sqe(c->loop);
    if (!sqe)
        return;
    io_uring_prep_cancel64(sqe, ud(c, op), 0);
    io_uring_sqe_set_data64(sqe, ud(c, LOOP_OP_CANCEL));
    c->inflight++;
    c->loop->stats.cancels++;
}

static bool wants_read(const struct conn *c)
{
    return c->state <= CONN_OPEN && !(c->flags & (CONN_F_PAUSED | CONN_F_CONNECTING));
}

static void arm_recv(struct conn *c)
{
    struct loop *loop = c->loop;
    if ((c->flags & CONN_F_RECV_ARMED) || !wants_read(c))
        return;
    struct io_uring_sqe *sqe = loop__sqe(loop);
    if (!sqe) {
        c->last_err = -EBUSY;
        conn_close(c, CONN_CLOSE_ERROR);
        return;
    }
    c->flags &= (uint16_t) ~(CONN_F_MULTISHOT | CONN_F_RECVMSG);
    if (loop->features & LOOP_FEAT_BUFRING) {
        if ((loop->features & LOOP_FEAT_MULTISHOT_RECV) && (c->flags & CONN_F_RX_TS)) {
            /* each buffer: io_uring_recvmsg_out, the timestamp's cmsg, then the bytes */
            io_uring_prep_recvmsg_multishot(sqe, c->fd, &loop->rx_msg, 0);
            c->flags |= CONN_F_MULTISHOT | CONN_F_RECVMSG;
        } else if (loop->features & LOOP_FEAT_MULTISHOT_RECV) {
            io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
            c->flags |= CONN_F_MULTISHOT;
        } else {
            io_uring_prep_recv(sqe, c->fd, NULL, loop->cfg.buf_size, 0);
        }
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = 0;
        io_uring_sqe_set_data64(sqe, ud(c, LOOP_OP_RECV));
    } else {
        io_uring_prep_poll_add(sqe, c->fd, POLLIN);
        io_uring_sqe_set_data64(sqe, ud(c, LOOP_OP_POLL));
    }
    c->flags |= CONN_F_RECV_ARMED;
    c->inflight++;
    loop->stats.recv_arms++;
}

/* The op a conn's receive is armed as. */
static enum loop_op recv_op(const struct conn *c)
{
    return (c->loop->features & LOOP_FEAT_BUFRING) ? LOOP_OP_RECV : LOOP_OP_POLL;
}

static void stop_recv(struct conn *c)
{
    if ((c->flags & CONN_F_RECV_ARMED) && !(c->flags & CONN_F_RECV_CANCELING)) {
        c->flags |= CONN_F_RECV_CANCELING;
        cancel_op(c, recv_op(c));
    }
}

/* A draining conn's armed receive, and a closing conn's receive and send in flight, end with a
 * shutdown of its socket rather than with cancels. Both make them complete; a cancel has the
 * kernel look the request up among the ring's armed ones (io_poll_find walks one bucket of a table
 * of at most 256: 70 requests each with 18,000 connections), and in a storm nearly every
 * connection had one: the client's close_notify arrives, we drain (our close_notify goes out, the
 * receive stops) and close (5-7 % of the edge's CPU in an 18,000-client storm). The shutdown
 * wakes the socket's waiters: the receive ends with end of stream (ours: handle_recv does not
 * take it for the peer's), a send that could not go fails (as a cancelled one would), one prepared
 * earlier in the batch goes first; a close's FIN is the one close() would send a moment later.
 * Should the shutdown fail (the socket already reset), the cancels follow (handle_shutdown).
 * Returns false when it cannot be used (the caller cancels). */
static bool shut(struct conn *c, int how, bool recv)
{
    struct io_uring_sqe *sqe =
        (c->loop->features & LOOP_FEAT_SHUTDOWN) && !(c->flags & CONN_F_CONNECTING)
            ? loop__sqe(c->loop)
            : NULL;
    if (sqe == NULL)
        return false;
    io_uring_prep_shutdown(sqe, c->fd, how);
    io_uring_sqe_set_data64(sqe, ud(c, LOOP_OP_SHUTDOWN));
    if (recv)
        c->flags |= CONN_F_RECV_CANCELING;
    c->inflight++;
    c->loop->stats.shutdowns++;
    return true;
}

static bool recv_live(const struct conn *c)
{
    return (c->flags & CONN_F_RECV_ARMED) && !(c->flags & CONN_F_RECV_CANCELING);
}

/* Draining: no more input, the output still goes. */
static void end_recv(struct conn *c)
{
    if (recv_live(c) && !shut(c, SHUT_RD, true))
        stop_recv(c);
}

/* Closing: neither. */
static void end_io(struct conn *c)
{
    bool recv = recv_live(c), send = c->flags & CONN_F_SEND_INFLIGHT;
    if ((!recv && !send) || shut(c, SHUT_RDWR, recv))
        return;
    stop_recv(c);
    if (send)
        cancel_op(c, LOOP_OP_SEND);
}

static void handle_shutdown(struct conn *c, const struct io_uring_cqe *cqe)
{
    c->inflight--;
    if (cqe->res >= 0)
        return;
    if (c->flags & CONN_F_RECV_ARMED)
        cancel_op(c, recv_op(c));
    if (c->state == CONN_CLOSING && (c->flags & CONN_F_SEND_INFLIGHT))
        cancel_op(c, LOOP_OP_SEND);
}

static void submit_send(struct conn *c)
{
    struct conn_chunk *ch = c->out_head;
    if ((c->flags & (CONN_F_SEND_INFLIGHT | CONN_F_CONNECTING)) || !ch || c->state == CONN_CLOSING)
        return;
    struct io_uring_sqe *sqe = loop__sqe(c->loop);
    if (!sqe) {
        c->last_err = -EBUSY;
        conn_close(c, CONN_CLOSE_ERROR);
        return;
    }
    io_uring_prep_send(sqe, c->fd, ch->data + ch->off, ch->len - ch->off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud(c, LOOP_OP_SEND));
    c->flags |= CONN_F_SEND_INFLIGHT;
    c->inflight++;
    c->loop->stats.sends++;
}

/* A trunk carries many messages per turn (every REGISTER a worker forwards to that UCM
 * connection): its send is prepared at the end of the turn, so that what the turn queued leaves
 * in one send instead of a first one with the first message and the rest after its completion. */
static void defer_send(struct conn *c)
{
    struct loop *loop = c->loop;
    if (c->flags & (CONN_F_SEND_INFLIGHT | CONN_F_SEND_DEFERRED))
        return; /* handle_send, or the flush, takes what was added */
    if (loop->defer_n == LOOP_DEFER_MAX) {
        submit_send(c);
        return;
    }
    c->flags |= CONN_F_SEND_DEFERRED;
    loop->defer_ids[loop->defer_n++] = c->id;
}

void conn__flush_deferred(struct loop *loop)
{
    for (unsigned i = 0; i < loop->defer_n; i++) {
        struct conn *c = conn_get(loop, loop->defer_ids[i]);
        if (c == NULL || !(c->flags & CONN_F_SEND_DEFERRED))
            continue; /* gone (its slot may hold another conn now) */
        c->flags &= (uint16_t)~CONN_F_SEND_DEFERRED;
        submit_send(c);
    }
    loop->defer_n = 0;
}

static void maybe_reap(struct conn *c)
{
    if (c->state != CONN_CLOSING || c->inflight || (c->flags & CONN_F_REAP_QUEUED))
        return;
    struct loop *loop = c->loop;
    c->flags |= CONN_F_REAP_QUEUED;
    c->next = loop->reap_head;
    loop->reap_head = (c->id & CONN_SLOT_MASK) + 1;
}

/* ---- close ---- */

void conn_close(struct conn *c, enum conn_close_reason reason)
{
    if (c->state == CONN_CLOSING)
        return;
    struct loop *loop = c->loop;
    c->state = CONN_CLOSING;
    c->reason = (uint8_t)reason;
    loop->stats.closed[reason]++;
    if (reason == CONN_CLOSE_SLOW)
        loop->stats.slow_closes++;
    end_io(c);
    if (c->flags & CONN_F_CONNECTING)
        cancel_op(c, LOOP_OP_CONNECT);
    if (c->ops && c->ops->on_close)
        c->ops->on_close(c, reason);
    maybe_reap(c);
}

void conn_drain(struct conn *c)
{
    if (c->state >= CONN_DRAINING)
        return;
    c->state = CONN_DRAINING;
    end_recv(c);
    if (!c->out_head && !(c->flags & CONN_F_CONNECTING))
        conn_close(c, CONN_CLOSE_LOCAL);
}

static void conn_release(struct loop *loop, struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    while (c->out_head) {
        struct conn_chunk *ch = c->out_head;
        c->out_head = ch->next;
        chunk_put(loop, ch);
    }
    loop->stats.out_queued -= c->out_bytes;
    free(c->connect);
    if (c->flags & CONN_F_SOURCE_COUNTED)
        src_count_dec(&loop->src, c->peer.s6_addr);
    uint32_t slot = c->id & CONN_SLOT_MASK;
    uint32_t gen = ((c->id >> CONN_SLOT_BITS) + 1) & CONN_GEN_MASK;
    c->id = (gen ? gen : 1) << CONN_SLOT_BITS | slot;
    c->flags = 0;
    c->fd = -1;
    c->out_head = c->out_tail = NULL;
    c->out_bytes = 0;
    c->connect = NULL;
    c->next = loop->free_head;
    loop->free_head = slot + 1;
    loop->stats.conns_open--;
}

void conn__reap(struct loop *loop)
{
    while (loop->reap_head) {
        struct conn *c = &loop->conns[loop->reap_head - 1];
        loop->reap_head = c->next;
        assert(c->state == CONN_CLOSING && c->inflight == 0);
        conn_release(loop, c);
    }
}

void loop_close_conns(struct loop *loop, enum conn_close_reason reason)
{
    for (uint32_t i = 0; i < loop->slots_used; i++) {
        struct conn *c = &loop->conns[i];
        if ((c->flags & CONN_F_LIVE) && c->state != CONN_CLOSING)
            conn_close(c, reason);
    }
}

void conn__close_all(struct loop *loop)
{
    for (uint32_t i = 0; i < loop->slots_used; i++) {
        struct conn *c = &loop->conns[i];
        if (!(c->flags & CONN_F_LIVE))
            continue;
        if (c->state != CONN_CLOSING) {
            c->state = CONN_CLOSING;
            loop->stats.closed[CONN_CLOSE_SHUTDOWN]++;
            if (c->ops && c->ops->on_close)
                c->ops->on_close(c, CONN_CLOSE_SHUTDOWN);
        }
        conn_release(loop, c); /* the ring goes away with the loop: nothing can call back */
    }
    loop->reap_head = 0;
}

/* ---- receive ---- */

/* The SCM_TIMESTAMPNS of a receive (the kernel's CLOCK_REALTIME for its newest segment), 0 when
 * the control data holds none. */
static uint64_t rx_timestamp(const struct cmsghdr *cm)
{
    if (cm == NULL || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_TIMESTAMPNS ||
        cm->cmsg_len < CMSG_LEN(sizeof(struct timespec)))
        return 0;
    struct timespec ts;
    memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void deliver(struct conn *c, const char *p, size_t n)
{
    c->loop->stats.bytes_in += n;
    if (c->state <= CONN_OPEN && c->ops->on_data)
        c->ops->on_data(c, p, n);
}

static void recv_ended(struct conn *c)
{
    c->flags &= (uint16_t) ~(CONN_F_RECV_ARMED | CONN_F_RECV_CANCELING | CONN_F_MULTISHOT);
    c->inflight--;
}

static void handle_recv(struct loop *loop, struct conn *c, const struct io_uring_cqe *cqe)
{
    bool more = cqe->flags & IORING_CQE_F_MORE;
    bool was_multishot = c->flags & CONN_F_MULTISHOT;
    bool was_recvmsg = c->flags & CONN_F_RECVMSG;
    bool ours = c->flags & CONN_F_RECV_CANCELING; /* an end of stream may be our shutdown's */
    if (!more)
        recv_ended(c);
    if (cqe->res > 0 && was_recvmsg) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        char *buf = loop->bufs + (size_t)bid * loop->cfg.buf_size;
        struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(buf, cqe->res, &loop->rx_msg);
        if (o == NULL || o->payloadlen == 0) { /* a recvmsg's end of stream: no bytes */
            if (o == NULL)
                c->last_err = -EPROTO;
            if (o == NULL || !ours)
                conn_close(c, o == NULL ? CONN_CLOSE_ERROR : CONN_CLOSE_PEER);
        } else {
            c->rx_ns = rx_timestamp(io_uring_recvmsg_cmsg_firsthdr(o, &loop->rx_msg));
            size_t room = (size_t)cqe->res -
                          (size_t)((char *)io_uring_recvmsg_payload(o, &loop->rx_msg) - buf);
            size_t n = o->payloadlen < room ? o->payloadlen : room;
            deliver(c, io_uring_recvmsg_payload(o, &loop->rx_msg), n);
        }
        io_uring_buf_ring_add(loop->br, buf, loop->cfg.buf_size, (unsigned short)bid,
                              (int)loop->br_mask, 0);
        io_uring_buf_ring_advance(loop->br, 1);
    } else if (cqe->res > 0) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        char *buf = loop->bufs + (size_t)bid * loop->cfg.buf_size;
        deliver(c, buf, (size_t)cqe->res);
        /* the buffer goes back to the ring as soon as the upper layer returns */
        io_uring_buf_ring_add(loop->br, buf, loop->cfg.buf_size, (unsigned short)bid,
                              (int)loop->br_mask, 0);
        io_uring_buf_ring_advance(loop->br, 1);
    } else if (cqe->res == 0) {
        if (!ours)
            conn_close(c, CONN_CLOSE_PEER);
    } else if (cqe->res == -ENOBUFS) {
        loop->stats.recv_enobufs++; /* buffers come back by the end of this batch: re-arm */
    } else if (cqe->res == -EINVAL && was_multishot) {
        loop->features &= ~LOOP_FEAT_MULTISHOT_RECV; /* kernel without multishot recv */
    } else if (cqe->res != -ECANCELED && cqe->res != -EINTR && cqe->res != -EAGAIN) {
        c->last_err = cqe->res;
        conn_close(c, CONN_CLOSE_ERROR);
    }
    if (!more)
        arm_recv(c);
}

static void handle_poll(struct loop *loop, struct conn *c, const struct io_uring_cqe *cqe)
{
    recv_ended(c);
    if (cqe->res < 0 && cqe->res != -ECANCELED) {
        c->last_err = cqe->res;
        conn_close(c, CONN_CLOSE_ERROR);
    }
    /* a few reads per readiness event keep one busy conn from starving the others */
    for (int i = 0; cqe->res > 0 && i < 4 && wants_read(c); i++) {
        ssize_t n;
        if (c->flags & CONN_F_RX_TS) {
            struct iovec iov = {.iov_base = loop->scratch, .iov_len = loop->cfg.buf_size};
            struct msghdr mh = {.msg_iov = &iov,
                                .msg_iovlen = 1,
                                .msg_control = loop->rx_cmsg.buf,
                                .msg_controllen = sizeof(loop->rx_cmsg.buf)};
            n = recvmsg(c->fd, &mh, MSG_DONTWAIT);
            if (n > 0)
                c->rx_ns = rx_timestamp(CMSG_FIRSTHDR(&mh));
        } else {
            n = recv(c->fd, loop->scratch, loop->cfg.buf_size, MSG_DONTWAIT);
        }
        if (n > 0) {
            deliver(c, loop->scratch, (size_t)n);
            if ((size_t)n < loop->cfg.buf_size)
                break;
        } else if (n == 0) {
            conn_close(c, CONN_CLOSE_PEER);
        } else {
            if (errno != EAGAIN && errno != EINTR) {
                c->last_err = -errno;
                conn_close(c, CONN_CLOSE_ERROR);
            }
            break;
        }
    }
    arm_recv(c);
}

/* ---- send ---- */

static void pause_reading(struct conn *c)
{
    c->flags |= CONN_F_PAUSED;
    c->loop->stats.backpressure_pauses++;
    stop_recv(c);
}

void conn_set_trunk(struct conn *c)
{
    c->flags |= CONN_F_TRUNK;
    if (c->flags & CONN_F_PAUSED) { /* paused as a client: read again */
        c->flags &= (uint16_t)~CONN_F_PAUSED;
        if (c->state < CONN_DRAINING)
            arm_recv(c);
    }
}

ssize_t conn_send(struct conn *c, const struct iovec *iov, int n)
{
    struct loop *loop = c->loop;
    if (c->state >= CONN_DRAINING)
        return -EPIPE;
    if (n < 0)
        return -EINVAL;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (total == 0)
        return 0;
    size_t cap = conn_out_cap(c);
    if (total > cap || c->out_bytes + total > cap) {
        conn_close(c, CONN_CLOSE_SLOW);
        return -ENOBUFS;
    }
    /* take every chunk first, so a failed allocation leaves the queue unchanged */
    size_t room = c->out_tail ? c->out_tail->cap - c->out_tail->len : 0;
    struct conn_chunk *fresh = NULL, **link = &fresh;
    while (room < total) {
        struct conn_chunk *ch = chunk_get(loop);
        if (!ch) {
            while (fresh) {
                ch = fresh->next;
                chunk_put(loop, fresh);
                fresh = ch;
            }
            return -ENOMEM;
        }
        *link = ch;
        link = &ch->next;
        room += ch->cap;
    }
    if (fresh) {
        if (c->out_tail)
            c->out_tail->next = fresh;
        else
            c->out_head = fresh;
    }
    struct conn_chunk *tail = c->out_tail ? c->out_tail : fresh;
    for (int i = 0; i < n; i++) {
        const char *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left) {
            if (tail->len == tail->cap)
                tail = tail->next;
            size_t k = tail->cap - tail->len < left ? tail->cap - tail->len : left;
            memcpy(tail->data + tail->len, p, k);
            tail->len += (uint32_t)k;
            p += k;
            left -= k;
        }
    }
    while (tail->next && tail->next->len)
        tail = tail->next;
    c->out_tail = tail;
    /* trailing empty fresh chunks (rounding) go back to the cache */
    while (tail->next) {
        struct conn_chunk *spare = tail->next;
        tail->next = spare->next;
        chunk_put(loop, spare);
    }
    c->out_bytes += (uint32_t)total;
    loop->stats.out_queued += total;
    if (c->flags & CONN_F_TRUNK) {
        defer_send(c);
        return (ssize_t)total;
    }
    if (c->out_bytes >= loop->cfg.out_high && !(c->flags & CONN_F_PAUSED))
        pause_reading(c);
    submit_send(c);
    return (ssize_t)total;
}

static void handle_send(struct loop *loop, struct conn *c, const struct io_uring_cqe *cqe)
{
    c->flags &= (uint16_t)~CONN_F_SEND_INFLIGHT;
    c->inflight--;
    if (c->state == CONN_CLOSING)
        return;
    if (cqe->res < 0) {
        if (cqe->res == -EAGAIN || cqe->res == -EINTR) {
            submit_send(c);
            return;
        }
        c->last_err = cqe->res;
        conn_close(c, CONN_CLOSE_ERROR);
        return;
    }
    uint32_t sent = (uint32_t)cqe->res;
    struct conn_chunk *ch = c->out_head;
    assert(ch && sent <= ch->len - ch->off);
    ch->off += sent;
    c->out_bytes -= sent;
    loop->stats.out_queued -= sent;
    loop->stats.bytes_out += sent;
    if (ch->off == ch->len) {
        c->out_head = ch->next;
        if (!c->out_head)
            c->out_tail = NULL;
        chunk_put(loop, ch);
    }
    if (c->out_bytes == 0 && c->state == CONN_DRAINING) {
        conn_close(c, CONN_CLOSE_LOCAL);
        return;
    }
    if ((c->flags & CONN_F_PAUSED) && c->out_bytes <= loop->cfg.out_low) {
        c->flags &= (uint16_t)~CONN_F_PAUSED;
        arm_recv(c);
        if (c->ops->on_writable)
            c->ops->on_writable(c);
    }
    submit_send(c);
}

/* ---- connect ---- */

static void opened(struct conn *c)
{
    c->flags |= CONN_F_OPENED;
    if (c->ops->on_open)
        c->ops->on_open(c);
    arm_recv(c);
    submit_send(c);
}

static void handle_connect(struct loop *loop, struct conn *c, const struct io_uring_cqe *cqe)
{
    c->flags &= (uint16_t)~CONN_F_CONNECTING;
    c->inflight--;
    free(c->connect);
    c->connect = NULL;
    if (c->state == CONN_CLOSING)
        return;
    if (cqe->res == 0) {
        loop->stats.connected++;
        opened(c);
        if (c->state == CONN_DRAINING && !c->out_head)
            conn_close(c, CONN_CLOSE_LOCAL);
    } else if (cqe->res == -ECANCELED) {
        c->last_err = -ETIMEDOUT; /* only the linked timeout cancels a live connect */
        conn_close(c, CONN_CLOSE_CONNECT_TIMEOUT);
    } else {
        c->last_err = cqe->res;
        conn_close(c, CONN_CLOSE_CONNECT_FAILED);
    }
}

void conn__tune_socket(struct loop *loop, int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* not a TCP socket: ignored */
    if (loop->cfg.sndbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &loop->cfg.sndbuf, sizeof(loop->cfg.sndbuf));
    if (loop->cfg.rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &loop->cfg.rcvbuf, sizeof(loop->cfg.rcvbuf));
}

int loop_connect(struct loop *loop, const struct sockaddr *addr, socklen_t len, uint32_t timeout_ms,
                 const struct conn_ops *ops, void *arg, struct conn **out)
{
    return loop_connect_from(loop, addr, len, NULL, 0, timeout_ms, ops, arg, out);
}

int loop_connect_from(struct loop *loop, const struct sockaddr *addr, socklen_t len,
                      const struct sockaddr *src, socklen_t src_len, uint32_t timeout_ms,
                      const struct conn_ops *ops, void *arg, struct conn **out)
{
    if (!ops || !ops->on_data || len > sizeof(struct sockaddr_storage) ||
        (src != NULL && src->sa_family != addr->sa_family))
        return -EINVAL;
    struct conn_connect *cc = calloc(1, sizeof(*cc));
    if (!cc)
        return -ENOMEM;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        free(cc);
        return -errno;
    }
    if (src != NULL) {
        int one = 1; /* the port comes with the connect: many sources share the port space */
        (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, src, src_len) < 0) {
            int err = -errno;
            free(cc);
            close(fd);
            return err;
        }
    }
    /* the connect and its timeout must be submitted together: make room for both first */
    if (io_uring_sq_space_left(&loop->ring) < 2 && loop->enabled)
        io_uring_submit(&loop->ring);
    struct conn *c = io_uring_sq_space_left(&loop->ring) >= 2 ? conn_alloc(loop) : NULL;
    if (!c) {
        free(cc);
        close(fd);
        return io_uring_sq_space_left(&loop->ring) >= 2 ? -ENOSPC : -EBUSY;
    }
    conn__tune_socket(loop, fd);
    memcpy(&cc->addr, addr, len);
    cc->addrlen = len;
    cc->ts.tv_sec = timeout_ms / 1000;
    cc->ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
    c->fd = fd;
    c->ops = ops;
    c->user = arg;
    c->connect = cc;
    c->flags |= CONN_F_OUTBOUND | CONN_F_TRUNK | CONN_F_CONNECTING | CONN_F_OPENED;
    struct io_uring_sqe *sqe = loop__sqe(loop);
    if (!sqe) {
        c->state = CONN_CLOSING;
        conn_release(loop, c);
        return -EBUSY;
    }
    io_uring_prep_connect(sqe, fd, (struct sockaddr *)&cc->addr, cc->addrlen);
    io_uring_sqe_set_data64(sqe, ud(c, LOOP_OP_CONNECT));
    c->inflight++;
    if (timeout_ms) {
        sqe->flags |= IOSQE_IO_LINK;
        sqe = loop__sqe(loop);
        assert(sqe); /* space was checked above */
        io_uring_prep_link_timeout(sqe, &cc->ts, 0);
        io_uring_sqe_set_data64(sqe, ud(c, LOOP_OP_LINK_TIMEOUT));
        c->inflight++;
    }
    if (out)
        *out = c;
    return 0;
}

int loop_adopt(struct loop *loop, int fd, const struct conn_ops *ops, void *arg, struct conn **out)
{
    if (!ops || !ops->on_data || fd < 0)
        return -EINVAL;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    struct conn *c = conn_alloc(loop);
    if (!c)
        return -ENOSPC;
    conn__tune_socket(loop, fd);
    c->fd = fd;
    c->ops = ops;
    c->user = arg;
    c->flags |= CONN_F_OUTBOUND | CONN_F_TRUNK;
    loop->stats.connected++;
    if (out)
        *out = c;
    opened(c);
    return 0;
}

/* ---- accept ---- */

static void peer_key(int fd, struct in6_addr *key)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    memset(key, 0, sizeof(*key));
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
        return;
    if (ss.ss_family == AF_INET6) {
        *key = ((struct sockaddr_in6 *)&ss)->sin6_addr;
    } else if (ss.ss_family == AF_INET) {
        key->s6_addr[10] = key->s6_addr[11] = 0xff;
        memcpy(key->s6_addr + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    }
}

void conn__accepted(struct loop *loop, struct loop_listener *l, int fd)
{
    struct in6_addr key;
    if (loop->cfg.max_conns_per_source) {
        peer_key(fd, &key);
        if (src_count_get(&loop->src, key.s6_addr) >= loop->cfg.max_conns_per_source) {
            loop->stats.rejected_source_cap++;
            close(fd);
            return;
        }
    }
    struct conn *c = conn_alloc(loop);
    if (!c) {
        loop->stats.rejected_worker_cap++;
        close(fd);
        return;
    }
    if (loop->cfg.max_conns_per_source) {
        /* room for max_conns sources: cannot fail while the connection slots last */
        if (src_count_inc(&loop->src, key.s6_addr) > 0)
            c->flags |= CONN_F_SOURCE_COUNTED;
        c->peer = key;
    }
    /* TCP_NODELAY, the buffer sizes and SO_TIMESTAMPNS come from the listener: Linux copies a
     * listener's options into each socket it accepts (loop_listen), two syscalls fewer here */
    if (l->rx_ts)
        c->flags |= CONN_F_RX_TS;
    c->fd = fd;
    c->ops = l->ops;
    c->user = l->arg;
    loop->stats.accepted++;
    opened(c);
}

/* ---- dispatch ---- */

void conn__handle(struct loop *loop, enum loop_op op, const struct io_uring_cqe *cqe)
{
    uint32_t id = (uint32_t)(cqe->user_data & 0xffffffffu);
    struct conn *c = conn_get(loop, id);
    if (!c) {
        /* a late CQE for a slot that was freed (and maybe reused): drop, but give back the
         * provided buffer it may hold */
        loop->stats.stale_cqes++;
        if ((cqe->flags & IORING_CQE_F_BUFFER) && loop->br) {
            unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
            io_uring_buf_ring_add(loop->br, loop->bufs + (size_t)bid * loop->cfg.buf_size,
                                  loop->cfg.buf_size, (unsigned short)bid, (int)loop->br_mask, 0);
            io_uring_buf_ring_advance(loop->br, 1);
        }
        return;
    }
    switch (op) {
    case LOOP_OP_RECV:
        handle_recv(loop, c, cqe);
        break;
    case LOOP_OP_POLL:
        handle_poll(loop, c, cqe);
        break;
    case LOOP_OP_SEND:
        handle_send(loop, c, cqe);
        break;
    case LOOP_OP_CONNECT:
        handle_connect(loop, c, cqe);
        break;
    case LOOP_OP_LINK_TIMEOUT:
    case LOOP_OP_CANCEL:
        c->inflight--;
        break;
    case LOOP_OP_SHUTDOWN:
        handle_shutdown(c, cqe);
        break;
    default:
        break;
    }
    maybe_reap(c);
}
