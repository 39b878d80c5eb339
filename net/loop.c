// SPDX-License-Identifier: MIT
// The worker loop: ring setup and feature probing, the turn (submit+wait, CQE batch, timers,
// reap), listeners, the timer heap, cross-thread messages and worker groups.
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "net/loop_priv.h"

static _Thread_local struct loop *current_loop;

void loop_cfg_default(struct loop_cfg *cfg)
{
    *cfg = (struct loop_cfg){
        .queue_depth = 256,
        .buf_count = 256,
        .buf_size = 16384,
        .max_conns = 65536,
        .max_conns_per_source = 0,
        .out_cap = 256 * 1024,
        .out_high = 128 * 1024,
        .out_low = 32 * 1024,
        .out_cap_trunk = 4u << 20,
        .out_high_trunk = 1u << 20,
        .out_chunk = 16384,
        .out_chunk_cache = 64,
        .backlog = 4096,
    };
}

static bool cfg_valid(const struct loop_cfg *c)
{
    bool pow2 = c->buf_count && (c->buf_count & (c->buf_count - 1)) == 0;
    return c->queue_depth >= 8 && c->queue_depth <= 32768 && pow2 && c->buf_count <= 32768 &&
           c->buf_size >= 512 && c->buf_size <= (1u << 20) && c->max_conns >= 1 &&
           c->max_conns <= CONN_SLOT_MASK && c->out_cap >= 1 && c->out_high <= c->out_cap &&
           c->out_low <= c->out_high && c->out_cap_trunk >= 1 &&
           c->out_high_trunk <= c->out_cap_trunk && c->out_chunk >= 256 &&
           c->out_chunk <= (1u << 24) && c->backlog >= 1;
}

uint64_t loop_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Kernel release as major*100+minor, for the multishot flags the opcode probe cannot see. */
static unsigned kernel_version(void)
{
    struct utsname u;
    unsigned major = 0, minor = 0;
    if (uname(&u) != 0 || sscanf(u.release, "%u.%u", &major, &minor) != 2)
        return 0;
    return major * 100 + minor;
}

static int ring_setup(struct loop *loop)
{
    const unsigned base = IORING_SETUP_CQSIZE;
    const unsigned tries[] = {
        IORING_SETUP_R_DISABLED | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_R_DISABLED | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int ret = -EINVAL;
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
        if ((loop->cfg.flags & LOOP_CFG_F_NO_DEFER_TASKRUN) &&
            (tries[i] & IORING_SETUP_SINGLE_ISSUER))
            continue;
        struct io_uring_params p = {.flags = base | tries[i],
                                    .cq_entries = loop->cfg.queue_depth * 4};
        ret = io_uring_queue_init_params(loop->cfg.queue_depth, &loop->ring, &p);
        if (ret == 0) {
            loop->ring_flags = p.flags;
            if (p.flags & IORING_SETUP_SINGLE_ISSUER)
                loop->features |= LOOP_FEAT_SINGLE_ISSUER;
            if (p.flags & IORING_SETUP_DEFER_TASKRUN)
                loop->features |= LOOP_FEAT_DEFER_TASKRUN;
            if (p.flags & IORING_SETUP_COOP_TASKRUN)
                loop->features |= LOOP_FEAT_COOP_TASKRUN;
            if (p.features & IORING_FEAT_EXT_ARG)
                loop->features |= LOOP_FEAT_EXT_ARG;
            loop->enabled = !(p.flags & IORING_SETUP_R_DISABLED);
            return 0;
        }
        if (ret != -EINVAL)
            return ret;
    }
    return ret;
}

static void probe_features(struct loop *loop)
{
    unsigned kv = kernel_version();
    struct io_uring_probe *probe = io_uring_get_probe_ring(&loop->ring);
    if (probe && io_uring_opcode_supported(probe, IORING_OP_MSG_RING) &&
        !(loop->cfg.flags & LOOP_CFG_F_NO_MSG_RING))
        loop->features |= LOOP_FEAT_MSG_RING;
    bool have_accept = probe && io_uring_opcode_supported(probe, IORING_OP_ACCEPT);
    if (probe && io_uring_opcode_supported(probe, IORING_OP_SHUTDOWN) &&
        !(loop->cfg.flags & LOOP_CFG_F_NO_SHUTDOWN))
        loop->features |= LOOP_FEAT_SHUTDOWN;
    if (probe)
        io_uring_free_probe(probe);
    /* The opcode probe cannot tell the multishot flags apart: use the release they came in,
     * and fall back at run time when the kernel answers -EINVAL anyway. */
    if (!(loop->cfg.flags & LOOP_CFG_F_NO_MULTISHOT)) {
        if (have_accept && kv >= 519)
            loop->features |= LOOP_FEAT_MULTISHOT_ACCEPT;
        if (kv >= 600)
            loop->features |= LOOP_FEAT_MULTISHOT_RECV;
    }
}

static int bufring_setup(struct loop *loop)
{
    unsigned n = loop->cfg.buf_count;
    size_t ring_bytes = (size_t)n * sizeof(struct io_uring_buf);
    void *mem = NULL;
    if (posix_memalign(&mem, (size_t)sysconf(_SC_PAGESIZE), ring_bytes) != 0)
        return -ENOMEM;
    memset(mem, 0, ring_bytes);
    struct io_uring_buf_reg reg = {.ring_addr = (uintptr_t)mem, .ring_entries = n, .bgid = 0};
    int ret = io_uring_register_buf_ring(&loop->ring, &reg, 0);
    if (ret < 0) {
        free(mem);
        return ret;
    }
    loop->br = mem;
    loop->br_mask = (unsigned)io_uring_buf_ring_mask(n);
    loop->bufs = malloc((size_t)n * loop->cfg.buf_size);
    if (!loop->bufs)
        return -ENOMEM;
    io_uring_buf_ring_init(loop->br);
    for (unsigned i = 0; i < n; i++)
        io_uring_buf_ring_add(loop->br, loop->bufs + (size_t)i * loop->cfg.buf_size,
                              loop->cfg.buf_size, (unsigned short)i, (int)loop->br_mask, (int)i);
    io_uring_buf_ring_advance(loop->br, (int)n);
    loop->features |= LOOP_FEAT_BUFRING;
    return 0;
}

struct io_uring_sqe *loop__sqe(struct loop *loop)
{
    for (int i = 0; i < 3; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->ring);
        if (sqe)
            return sqe;
        if (!loop->enabled || io_uring_submit(&loop->ring) < 0)
            return NULL;
    }
    return NULL;
}

static void arm_eventfd(struct loop *loop)
{
    struct io_uring_sqe *sqe = loop__sqe(loop);
    if (!sqe)
        return;
    io_uring_prep_read(sqe, loop->efd, &loop->efd_val, sizeof(loop->efd_val), 0);
    io_uring_sqe_set_data64(sqe, loop__ud(LOOP_OP_EVENTFD, 0));
}

struct loop *loop_new(const struct loop_cfg *cfg)
{
    if (!cfg_valid(cfg)) {
        errno = EINVAL;
        return NULL;
    }
    struct loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return NULL;
    loop->cfg = *cfg;
    loop->efd = -1;
    pthread_mutex_init(&loop->mq_lock, NULL);
    atomic_init(&loop->stop, false);
    int ret = ring_setup(loop);
    if (ret < 0) {
        pthread_mutex_destroy(&loop->mq_lock);
        free(loop);
        errno = -ret;
        return NULL;
    }
    probe_features(loop);
    if (!(cfg->flags & LOOP_CFG_F_NO_BUFRING) && bufring_setup(loop) < 0 && !loop->br) {
        loop->features &= ~LOOP_FEAT_MULTISHOT_RECV; /* multishot recv needs provided buffers */
    }
    if (!(loop->features & LOOP_FEAT_BUFRING))
        loop->features &= ~LOOP_FEAT_MULTISHOT_RECV;
    loop->scratch = (loop->features & LOOP_FEAT_BUFRING) ? NULL : malloc(cfg->buf_size);
    loop->rx_msg.msg_controllen = LOOP_RX_CMSG_SPACE; /* the only field multishot recvmsg reads */
    loop->conns = calloc(cfg->max_conns, sizeof(struct conn)); /* pages touched on first use */
    int src_err = cfg->max_conns_per_source ? src_count_init(&loop->src, cfg->max_conns) : 0;
    loop->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if ((loop->features & LOOP_FEAT_BUFRING ? !loop->bufs : !loop->scratch) || !loop->conns ||
        src_err < 0 || loop->efd < 0) {
        int err = loop->efd < 0 ? errno : ENOMEM;
        loop_free(loop);
        errno = err;
        return NULL;
    }
    loop->now_ms = loop_clock_ms();
    arm_eventfd(loop);
    return loop;
}

/* ---- timers: binary min-heap on (deadline, seq), heap_idx = position + 1 ---- */

static bool timer_before(const struct loop_timer *a, const struct loop_timer *b)
{
    return a->deadline_ms < b->deadline_ms || (a->deadline_ms == b->deadline_ms && a->seq < b->seq);
}

static void heap_place(struct loop *loop, uint32_t i, struct loop_timer *t)
{
    loop->heap[i] = t;
    t->heap_idx = i + 1;
}

static void heap_up(struct loop *loop, uint32_t i)
{
    struct loop_timer *t = loop->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!timer_before(t, loop->heap[parent]))
            break;
        heap_place(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_place(loop, i, t);
}

static void heap_down(struct loop *loop, uint32_t i)
{
    struct loop_timer *t = loop->heap[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= loop->heap_len)
            break;
        if (child + 1 < loop->heap_len && timer_before(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!timer_before(loop->heap[child], t))
            break;
        heap_place(loop, i, loop->heap[child]);
        i = child;
    }
    heap_place(loop, i, t);
}

void loop_timer_init(struct loop_timer *t)
{
    memset(t, 0, sizeof(*t));
}

void loop_timer_cancel(struct loop *loop, struct loop_timer *t)
{
    if (!t->heap_idx)
        return;
    uint32_t i = t->heap_idx - 1;
    assert(i < loop->heap_len && loop->heap[i] == t);
    t->heap_idx = 0;
    struct loop_timer *last = loop->heap[--loop->heap_len];
    if (i == loop->heap_len)
        return;
    heap_place(loop, i, last);
    heap_up(loop, i);
    heap_down(loop, last->heap_idx - 1);
}

int loop_timer_arm(struct loop *loop, struct loop_timer *t, uint64_t deadline_ms,
                   void (*cb)(struct loop *loop, struct loop_timer *timer))
{
    loop_timer_cancel(loop, t);
    if (loop->heap_len == loop->heap_cap) {
        uint32_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        struct loop_timer **h = realloc(loop->heap, cap * sizeof(*h));
        if (!h)
            return -ENOMEM;
        loop->heap = h;
        loop->heap_cap = cap;
    }
    t->deadline_ms = deadline_ms;
    t->seq = loop->timer_seq++;
    t->cb = cb;
    heap_place(loop, loop->heap_len++, t);
    heap_up(loop, loop->heap_len - 1);
    return 0;
}

/* Runs the timers due at `now` that were armed before this call: a callback that re-arms for
 * "now" waits for the next turn, so the loop is bounded. */
static void run_timers(struct loop *loop)
{
    uint64_t seq_limit = loop->timer_seq;
    while (loop->heap_len) {
        struct loop_timer *t = loop->heap[0];
        if (t->deadline_ms > loop->now_ms || t->seq >= seq_limit)
            break;
        loop_timer_cancel(loop, t);
        loop->stats.timers_fired++;
        t->cb(loop, t);
    }
}

/* ---- cross-thread messages ---- */

static void mq_push(struct loop *loop, struct loop_msg *m)
{
    m->next = NULL;
    pthread_mutex_lock(&loop->mq_lock);
    if (loop->mq_tail)
        loop->mq_tail->next = m;
    else
        loop->mq_head = m;
    loop->mq_tail = m;
    pthread_mutex_unlock(&loop->mq_lock);
    uint64_t one = 1;
    ssize_t w = write(loop->efd, &one, sizeof(one)); /* EAGAIN only when the counter is huge */
    (void)w;
}

static void mq_run(struct loop *loop)
{
    pthread_mutex_lock(&loop->mq_lock);
    struct loop_msg *m = loop->mq_head;
    loop->mq_head = loop->mq_tail = NULL;
    pthread_mutex_unlock(&loop->mq_lock);
    while (m) {
        struct loop_msg *next = m->next;
        loop->stats.msgs_received++;
        m->fn(loop, m->arg);
        free(m);
        m = next;
    }
}

int loop_post(struct loop *target, void (*fn)(struct loop *loop, void *arg), void *arg)
{
    struct loop_msg *m = malloc(sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->fn = fn;
    m->arg = arg;
    m->target = target;
    struct loop *cur = current_loop;
    if (cur && cur != target && (cur->features & LOOP_FEAT_MSG_RING) &&
        (target->features & LOOP_FEAT_MSG_RING)) {
        struct io_uring_sqe *sqe = loop__sqe(cur);
        if (sqe) {
            io_uring_prep_msg_ring(sqe, target->ring.ring_fd, 0,
                                   loop__ud(LOOP_OP_MSG, (uintptr_t)m), 0);
            io_uring_sqe_set_data64(sqe, loop__ud(LOOP_OP_MSG_SENT, (uintptr_t)m));
            if (cur->ring.features & IORING_FEAT_CQE_SKIP)
                sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
            return 0;
        }
    }
    mq_push(target, m);
    return 0;
}

void loop_stop(struct loop *loop)
{
    atomic_store(&loop->stop, true);
    if (current_loop != loop) {
        uint64_t one = 1;
        ssize_t w = write(loop->efd, &one, sizeof(one));
        (void)w;
    }
}

/* ---- polls on foreign sockets: slots with generations, so the owner's struct may go away ---- */

static struct loop_poll_slot *poll_slot_get(struct loop *loop, uint32_t *idx)
{
    if (!loop->polls_free) {
        if (loop->polls_cap == LOOP_POLL_MAX_SLOTS)
            return NULL;
        uint32_t cap = loop->polls_cap ? loop->polls_cap * 2 : 8;
        struct loop_poll_slot *t = realloc(loop->polls, cap * sizeof(*t));
        if (!t)
            return NULL;
        for (uint32_t i = loop->polls_cap; i < cap; i++)
            t[i] = (struct loop_poll_slot){.gen = 1, .next = i + 1 < cap ? i + 2 : 0};
        loop->polls = t;
        loop->polls_free = loop->polls_cap + 1;
        loop->polls_cap = cap;
    }
    *idx = loop->polls_free - 1;
    struct loop_poll_slot *s = &loop->polls[*idx];
    loop->polls_free = s->next;
    s->busy = true;
    return s;
}

static void poll_slot_put(struct loop *loop, uint32_t idx)
{
    struct loop_poll_slot *s = &loop->polls[idx];
    uint32_t gen = (s->gen + 1) & 0xffffffffu;
    *s = (struct loop_poll_slot){.gen = gen ? gen : 1, .next = loop->polls_free};
    loop->polls_free = idx + 1;
}

static uint64_t poll_ud(uint32_t idx, uint32_t gen)
{
    return loop__ud(LOOP_OP_FD_POLL, (uint64_t)gen << LOOP_POLL_SLOT_BITS | idx);
}

int loop_poll_arm(struct loop *loop, struct loop_poll *p, int fd, unsigned events,
                  void (*cb)(struct loop *loop, struct loop_poll *p, unsigned revents))
{
    if (loop_poll_armed(p))
        return -EBUSY;
    if (fd < 0 || !cb)
        return -EINVAL;
    uint32_t idx;
    struct loop_poll_slot *s = poll_slot_get(loop, &idx);
    if (!s)
        return -ENOMEM;
    struct io_uring_sqe *sqe = loop__sqe(loop);
    if (!sqe) {
        poll_slot_put(loop, idx);
        return -EAGAIN;
    }
    s->owner = p;
    s->cb = cb;
    io_uring_prep_poll_add(sqe, fd, events);
    io_uring_sqe_set_data64(sqe, poll_ud(idx, s->gen));
    p->slot = idx + 1;
    p->gen = s->gen;
    return 0;
}

bool loop_poll_armed(const struct loop_poll *p)
{
    return p->slot != 0;
}

void loop_poll_cancel(struct loop *loop, struct loop_poll *p)
{
    if (!p->slot)
        return;
    uint32_t idx = p->slot - 1;
    p->slot = 0;
    if (idx >= loop->polls_cap)
        return;
    struct loop_poll_slot *s = &loop->polls[idx];
    if (!s->busy || s->gen != p->gen || s->owner != p)
        return;
    s->owner = NULL; /* the slot stays taken until the poll's CQE (-ECANCELED or a late fire) */
    struct io_uring_sqe *sqe = loop__sqe(loop);
    if (sqe) {
        io_uring_prep_poll_remove(sqe, poll_ud(idx, s->gen));
        io_uring_sqe_set_data64(sqe, loop__ud(LOOP_OP_NONE, 0));
    }
}

static void handle_fd_poll(struct loop *loop, const struct io_uring_cqe *cqe)
{
    uint64_t payload = cqe->user_data & LOOP_UD_PAYLOAD;
    uint32_t idx = (uint32_t)(payload & (LOOP_POLL_MAX_SLOTS - 1));
    uint32_t gen = (uint32_t)(payload >> LOOP_POLL_SLOT_BITS);
    if (idx >= loop->polls_cap || !loop->polls[idx].busy || loop->polls[idx].gen != gen) {
        loop->stats.stale_cqes++;
        return;
    }
    struct loop_poll_slot *s = &loop->polls[idx];
    struct loop_poll *p = s->owner;
    void (*cb)(struct loop *, struct loop_poll *, unsigned) = s->cb;
    poll_slot_put(loop, idx); /* before the callback, which may re-arm */
    if (!p)
        return; /* cancelled: the owner may be gone */
    p->slot = 0;
    cb(loop, p, cqe->res >= 0 ? (unsigned)cqe->res : (unsigned)POLLERR);
}

/* ---- listeners ---- */

static void arm_accept(struct loop_listener *l)
{
    struct loop *loop = l->loop;
    if (l->armed || l->closed)
        return;
    struct io_uring_sqe *sqe = loop__sqe(loop);
    if (!sqe)
        return;
    if (loop->features & LOOP_FEAT_MULTISHOT_ACCEPT)
        io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    else
        io_uring_prep_accept(sqe, l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, loop__ud(LOOP_OP_ACCEPT, (uint64_t)(l - loop->listeners)));
    l->armed = true;
}

static void accept_retry(struct loop *loop, struct loop_timer *t)
{
    struct loop_listener *l =
        (struct loop_listener *)((char *)t - offsetof(struct loop_listener, retry));
    arm_accept(l);
}

static void handle_accept(struct loop *loop, const struct io_uring_cqe *cqe)
{
    uint64_t idx = cqe->user_data & LOOP_UD_PAYLOAD;
    if (idx >= loop->nlisteners)
        return;
    struct loop_listener *l = &loop->listeners[idx];
    if (!(cqe->flags & IORING_CQE_F_MORE))
        l->armed = false;
    if (l->closed) { /* loop_unlisten(): whatever this CQE says, the listener is done */
        if (cqe->res >= 0)
            close(cqe->res);
        return;
    }
    if (cqe->res >= 0) {
        conn__accepted(loop, l, cqe->res);
    } else if (cqe->res == -EINVAL && (loop->features & LOOP_FEAT_MULTISHOT_ACCEPT)) {
        loop->features &= ~LOOP_FEAT_MULTISHOT_ACCEPT; /* kernel without multishot accept */
    } else if (cqe->res != -ECANCELED) {
        loop->stats.accept_errors++;
        if (!l->armed && (cqe->res == -EMFILE || cqe->res == -ENFILE || cqe->res == -ENOMEM ||
                          cqe->res == -ENOBUFS)) {
            loop_timer_arm(loop, &l->retry, loop->now_ms + 100, accept_retry);
            return;
        }
    }
    if (!l->armed)
        arm_accept(l);
}

int loop_listen(struct loop *loop, const struct sockaddr *addr, socklen_t len,
                const struct conn_ops *ops, void *arg)
{
    if (loop->nlisteners == LOOP_MAX_LISTENERS)
        return -ENOSPC;
    if (!ops || !ops->on_data || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
        return -EINVAL;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    int ret = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        (addr->sa_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
        bind(fd, addr, len) < 0)
        ret = -errno;
    /* The accepted sockets' options are set here, once: Linux copies a listener's TCP_NODELAY,
     * buffer sizes and SO_TIMESTAMPNS into every socket it accepts (and tcp(7) wants the buffer
     * sizes set before listen(2) for the window scale to follow them). Stamping on the listener
     * also starts the kernel's stamping at once (it turns it on lazily), so what a client sends
     * before its accept is stamped as well. */
    if (ret == 0)
        conn__tune_socket(loop, fd);
    bool rx_ts = loop->cfg.flags & LOOP_CFG_F_RX_TIMESTAMPS;
    if (ret == 0 && rx_ts && setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) < 0)
        ret = -errno;
    if (ret == 0 && listen(fd, loop->cfg.backlog) < 0)
        ret = -errno;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (ret == 0 && getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        ret = -errno;
    if (ret < 0) {
        close(fd);
        return ret;
    }
    struct loop_listener *l = &loop->listeners[loop->nlisteners++];
    *l = (struct loop_listener){.loop = loop, .ops = ops, .arg = arg, .fd = fd, .rx_ts = rx_ts};
    l->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                            : ((struct sockaddr_in6 *)&ss)->sin6_port);
    arm_accept(l);
    return l->port;
}

void loop_unlisten(struct loop *loop)
{
    for (unsigned i = 0; i < loop->nlisteners; i++) {
        struct loop_listener *l = &loop->listeners[i];
        if (l->closed)
            continue;
        l->closed = true;
        loop_timer_cancel(loop, &l->retry);
        if (l->armed) {
            struct io_uring_sqe *sqe = loop__sqe(loop);
            if (sqe) {
                io_uring_prep_cancel64(sqe, loop__ud(LOOP_OP_ACCEPT, i), 0);
                io_uring_sqe_set_data64(sqe, loop__ud(LOOP_OP_NONE, 0));
            }
        }
        /* SO_REUSEPORT peers keep accepting; closing our socket hands its queue back. */
        shutdown(l->fd, SHUT_RD);
    }
}

/* ---- the turn ---- */

static void dispatch(struct loop *loop, const struct io_uring_cqe *cqe)
{
    enum loop_op op = (enum loop_op)(cqe->user_data >> LOOP_UD_OP_SHIFT);
    switch (op) {
    case LOOP_OP_ACCEPT:
        handle_accept(loop, cqe);
        break;
    case LOOP_OP_RECV:
    case LOOP_OP_POLL:
    case LOOP_OP_SEND:
    case LOOP_OP_CONNECT:
    case LOOP_OP_LINK_TIMEOUT:
    case LOOP_OP_CANCEL:
    case LOOP_OP_SHUTDOWN:
        conn__handle(loop, op, cqe);
        break;
    case LOOP_OP_FD_POLL:
        handle_fd_poll(loop, cqe);
        break;
    case LOOP_OP_EVENTFD:
        mq_run(loop);
        arm_eventfd(loop);
        break;
    case LOOP_OP_MSG: {
        struct loop_msg *m = (struct loop_msg *)(uintptr_t)(cqe->user_data & LOOP_UD_PAYLOAD);
        loop->stats.msgs_received++;
        loop->stats.msgs_via_ring++;
        m->fn(loop, m->arg);
        free(m);
        break;
    }
    case LOOP_OP_MSG_SENT:
        if (cqe->res < 0) { /* target ring gone or full: take the eventfd path */
            struct loop_msg *m = (struct loop_msg *)(uintptr_t)(cqe->user_data & LOOP_UD_PAYLOAD);
            mq_push(m->target, m);
        }
        break;
    default:
        break;
    }
}

int loop_run(struct loop *loop)
{
    if (!loop->enabled) {
        /* liburing 2.3 declares io_uring_enable_rings() but does not export it */
        if (syscall(__NR_io_uring_register, loop->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL,
                    0) < 0)
            return -errno;
        loop->enabled = true;
    }
    struct loop *prev = current_loop;
    current_loop = loop;
    loop->now_ms = loop_clock_ms();
    int err = 0;
    while (!atomic_load_explicit(&loop->stop, memory_order_relaxed)) {
        struct __kernel_timespec ts, *tsp = NULL;
        if (loop->heap_len) {
            uint64_t d = loop->heap[0]->deadline_ms;
            uint64_t wait = d > loop->now_ms ? d - loop->now_ms : 0;
            ts.tv_sec = (long long)(wait / 1000);
            ts.tv_nsec = (long long)(wait % 1000) * 1000000;
            tsp = &ts;
        }
        struct io_uring_cqe *cqe;
        conn__flush_deferred(loop);
        int ret = io_uring_submit_and_wait_timeout(&loop->ring, &cqe, 1, tsp, NULL);
        if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY && ret != -EAGAIN) {
            err = ret;
            break;
        }
        uint64_t t0_us = clock_us();
        loop->now_ms = t0_us / 1000;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&loop->ring, head, cqe)
        {
            dispatch(loop, cqe);
            if (++n == LOOP_TURN_MAX_CQES)
                break; /* the rest next turn, once this one's sends are submitted */
        }
        io_uring_cq_advance(&loop->ring, n);
        run_timers(loop);
        conn__reap(loop);
        if (loop->turn_fn != NULL && n > 0)
            loop->turn_fn(loop, clock_us() - t0_us, n);
    }
    conn__flush_deferred(loop);
    io_uring_submit(&loop->ring);
    current_loop = prev;
    atomic_store(&loop->stop, false);
    return err;
}

void loop_free(struct loop *loop)
{
    if (!loop)
        return;
    /* the ring goes first: once it is torn down nothing in flight can touch a conn's memory */
    if (loop->ring.ring_fd > 0)
        io_uring_queue_exit(&loop->ring);
    conn__close_all(loop);
    for (unsigned i = 0; i < loop->nlisteners; i++)
        close(loop->listeners[i].fd);
    struct loop_msg *m = loop->mq_head;
    while (m) {
        struct loop_msg *next = m->next;
        free(m);
        m = next;
    }
    conn__free_cache(loop);
    if (loop->efd >= 0)
        close(loop->efd);
    pthread_mutex_destroy(&loop->mq_lock);
    free(loop->br);
    free(loop->bufs);
    free(loop->scratch);
    free(loop->conns);
    src_count_deinit(&loop->src);
    free(loop->heap);
    free(loop->polls);
    free(loop);
}

unsigned loop_features(const struct loop *loop)
{
    return loop->features;
}

const struct loop_stats *loop_stats(const struct loop *loop)
{
    return &loop->stats;
}

uint64_t loop_now_ms(const struct loop *loop)
{
    return loop->now_ms;
}

unsigned loop_index(const struct loop *loop)
{
    return loop->index;
}

struct loop *loop_current(void)
{
    return current_loop;
}

void loop_set_turn_fn(struct loop *loop, loop_turn_fn fn)
{
    loop->turn_fn = fn;
}

void *loop_user(const struct loop *loop)
{
    return loop->user;
}

void loop_set_user(struct loop *loop, void *user)
{
    loop->user = user;
}

/* ---- groups ---- */

struct loop_group {
    unsigned n;
    bool running;
    bool pin;
    struct loop **loops;
    pthread_t *threads;
    int *cpus;
};

struct group_arg {
    struct loop_group *g;
    unsigned i;
};

static void *group_thread(void *p)
{
    struct loop_group *g = ((struct group_arg *)p)->g;
    unsigned i = ((struct group_arg *)p)->i;
    free(p);
    if (g->pin && g->cpus[i] >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(g->cpus[i], &set);
        pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }
    int ret = loop_run(g->loops[i]);
    if (ret < 0)
        fprintf(stderr, "level=error msg=\"loop_run failed\" worker=%u err=%d\n", i, ret);
    return NULL;
}

struct loop_group *loop_group_new(const struct loop_cfg *cfg, unsigned n)
{
    if (n == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (unsigned)cpus : 1;
    }
    struct loop_group *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->n = n;
    g->loops = calloc(n, sizeof(*g->loops));
    g->threads = calloc(n, sizeof(*g->threads));
    g->cpus = calloc(n, sizeof(*g->cpus));
    if (!g->loops || !g->threads || !g->cpus) {
        loop_group_free(g);
        errno = ENOMEM;
        return NULL;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    int ncpu = 0, cpulist[CPU_SETSIZE];
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &set))
                cpulist[ncpu++] = c;
    for (unsigned i = 0; i < n; i++) {
        g->cpus[i] = ncpu ? cpulist[i % (unsigned)ncpu] : -1;
        g->loops[i] = loop_new(cfg);
        if (!g->loops[i]) {
            int err = errno;
            loop_group_free(g);
            errno = err;
            return NULL;
        }
        g->loops[i]->index = i;
    }
    return g;
}

unsigned loop_group_size(const struct loop_group *g)
{
    return g->n;
}

struct loop *loop_group_loop(struct loop_group *g, unsigned i)
{
    return i < g->n ? g->loops[i] : NULL;
}

int loop_group_listen(struct loop_group *g, const struct sockaddr *addr, socklen_t len,
                      const struct conn_ops *ops, void *arg)
{
    struct sockaddr_storage ss;
    if (len > sizeof(ss))
        return -EINVAL;
    memcpy(&ss, addr, len);
    int port = 0;
    for (unsigned i = 0; i < g->n; i++) {
        int ret = loop_listen(g->loops[i], (struct sockaddr *)&ss, len, ops, arg);
        if (ret < 0)
            return ret;
        if (i == 0) {
            port = ret;
            if (ss.ss_family == AF_INET)
                ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
            else
                ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
        }
    }
    return port;
}

int loop_group_start(struct loop_group *g, bool pin)
{
    if (g->running)
        return -EALREADY;
    g->pin = pin;
    for (unsigned i = 0; i < g->n; i++) {
        struct group_arg *a = malloc(sizeof(*a));
        int ret = a ? 0 : ENOMEM;
        if (a) {
            *a = (struct group_arg){g, i};
            ret = pthread_create(&g->threads[i], NULL, group_thread, a);
            if (ret)
                free(a);
        }
        if (ret) {
            for (unsigned j = 0; j < i; j++)
                loop_stop(g->loops[j]);
            for (unsigned j = 0; j < i; j++)
                pthread_join(g->threads[j], NULL);
            return -ret;
        }
    }
    g->running = true;
    return 0;
}

void loop_group_stop(struct loop_group *g)
{
    if (!g->running)
        return;
    for (unsigned i = 0; i < g->n; i++)
        loop_stop(g->loops[i]);
    for (unsigned i = 0; i < g->n; i++)
        pthread_join(g->threads[i], NULL);
    g->running = false;
}

void loop_group_free(struct loop_group *g)
{
    if (!g)
        return;
    loop_group_stop(g);
    for (unsigned i = 0; g->loops && i < g->n; i++)
        loop_free(g->loops[i]);
    free(g->loops);
    free(g->threads);
    free(g->cpus);
    free(g);
}
