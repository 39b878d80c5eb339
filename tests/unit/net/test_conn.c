// SPDX-License-Identifier: MIT
// net/conn.c over real loopback sockets: echo on 2 SO_REUSEPORT workers in every receive mode,
// stale CQEs, backpressure and the slow-reader cap, connection caps, outbound connect, adopt.
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

#include "net/loop_priv.h"
#include "net_test_util.h"

#define CLIENTS  64
#define ROUNDS   3
#define MSG_SIZE 100

/* 64 clients, each doing ROUNDS request/answer exchanges; returns the total stats. */
static void echo_run(unsigned flags, struct loop_stats out[2])
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.flags = flags;
    cfg.max_conns = 1024;
    struct loop_group *g = loop_group_new(&cfg, 2);
    cr_assert_not_null(g);
    struct sockaddr_in a = loopback4(0);
    int port = loop_group_listen(g, (struct sockaddr *)&a, sizeof(a), &echo_ops, NULL);
    cr_assert_gt(port, 0);
    cr_assert_eq(loop_group_start(g, false), 0);

    int fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = client_connect(port);
        cr_assert_geq(fds[i], 0, "connect %d: %s", i, strerror(-fds[i]));
    }
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < CLIENTS; i++) {
            char msg[MSG_SIZE];
            memset(msg, 'a' + (i + r) % 26, sizeof(msg));
            snprintf(msg, sizeof(msg), "client %d round %d", i, r);
            cr_assert(write_full(fds[i], msg, sizeof(msg)));
        }
        for (int i = 0; i < CLIENTS; i++) {
            char want[MSG_SIZE], got[MSG_SIZE];
            memset(want, 'a' + (i + r) % 26, sizeof(want));
            snprintf(want, sizeof(want), "client %d round %d", i, r);
            cr_assert_eq(read_full(fds[i], got, sizeof(got)), MSG_SIZE, "client %d", i);
            cr_assert_arr_eq(got, want, sizeof(want), "client %d got another answer", i);
        }
    }
    for (int i = 0; i < CLIENTS; i++)
        close(fds[i]);
    for (int w = 0; w < 2; w++)
        cr_assert(wait_until(loop_group_loop(g, w), no_conns, NULL), "worker %d conns left", w);
    for (int w = 0; w < 2; w++)
        out[w] = stats_of(loop_group_loop(g, w));
    loop_group_free(g);
    cr_assert_eq(out[0].accepted + out[1].accepted, CLIENTS);
    cr_assert_eq(out[0].closed[CONN_CLOSE_PEER] + out[1].closed[CONN_CLOSE_PEER], CLIENTS);
    cr_assert_eq(out[0].bytes_in + out[1].bytes_in, (uint64_t)CLIENTS * ROUNDS * MSG_SIZE);
    cr_assert_eq(out[0].bytes_out + out[1].bytes_out, (uint64_t)CLIENTS * ROUNDS * MSG_SIZE);
    cr_assert_gt(out[0].accepted, 0, "SO_REUSEPORT: worker 0 got no connection");
    cr_assert_gt(out[1].accepted, 0, "SO_REUSEPORT: worker 1 got no connection");
    cr_assert_eq(out[0].out_queued + out[1].out_queued, 0);
}

Test(conn, echoes_every_client_on_two_reuseport_workers)
{
    struct loop_stats s[2];
    echo_run(0, s);
}

Test(conn, multishot_recv_needs_one_arm_per_connection)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    struct loop *probe = loop_new(&cfg);
    cr_assert_not_null(probe);
    unsigned feat = loop_features(probe);
    loop_free(probe);
    if (!(feat & LOOP_FEAT_MULTISHOT_RECV))
        cr_skip_test("kernel without multishot recv / buffer rings");
    struct loop_stats s[2];
    echo_run(0, s);
    /* ROUNDS messages per client but one multishot recv each (re-arms only after ENOBUFS) */
    cr_assert_lt(s[0].recv_arms + s[1].recv_arms, (uint64_t)CLIENTS * ROUNDS);
}

Test(conn, echoes_in_single_shot_mode)
{
    struct loop_stats s[2];
    echo_run(LOOP_CFG_F_NO_MULTISHOT, s);
    cr_assert_geq(s[0].recv_arms + s[1].recv_arms, (uint64_t)CLIENTS * ROUNDS);
}

Test(conn, echoes_without_buffer_rings_through_poll)
{
    struct loop_stats s[2];
    echo_run(LOOP_CFG_F_NO_BUFRING | LOOP_CFG_F_NO_MULTISHOT, s);
    cr_assert_geq(s[0].recv_arms + s[1].recv_arms, (uint64_t)CLIENTS * ROUNDS);
}

Test(conn, single_shot_flag_turns_multishot_features_off)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.flags = LOOP_CFG_F_NO_MULTISHOT | LOOP_CFG_F_NO_BUFRING | LOOP_CFG_F_NO_MSG_RING;
    struct loop *loop = loop_new(&cfg);
    cr_assert_not_null(loop);
    unsigned f = loop_features(loop);
    cr_assert_eq(f & (LOOP_FEAT_MULTISHOT_ACCEPT | LOOP_FEAT_MULTISHOT_RECV | LOOP_FEAT_BUFRING |
                      LOOP_FEAT_MSG_RING),
                 0);
    loop_free(loop);
}

/* ---- stale CQEs ---- */

static atomic_uint last_open_id;

static void record_open(struct conn *c)
{
    atomic_store(&last_open_id, conn_id(c));
}

static const struct conn_ops record_echo_ops = {.on_open = record_open, .on_data = echo_on_data};

struct stale_probe {
    uint32_t id;
    bool live;
};

static void probe_id(struct loop *loop, void *arg)
{
    struct stale_probe *p = arg;
    p->live = conn_get(loop, p->id) != NULL;
}

static void inject_stale_recv(struct loop *loop, void *arg)
{
    struct io_uring_sqe *sqe = loop__sqe(loop);
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, loop__ud(LOOP_OP_RECV, *(uint32_t *)arg));
}

static bool stale_seen(const struct loop_stats *s, void *arg)
{
    (void)arg;
    return s->stale_cqes >= 1;
}

Test(conn, recognises_a_late_cqe_for_a_reused_slot_by_its_generation)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 16;
    struct loop *loop = loop_new(&cfg);
    struct sockaddr_in a = loopback4(0);
    int port = loop_listen(loop, (struct sockaddr *)&a, sizeof(a), &record_echo_ops, NULL);
    cr_assert_gt(port, 0);
    struct test_thread t;
    test_thread_start(&t, loop);

    int fd = client_connect(port);
    char buf[8];
    cr_assert(write_full(fd, "one", 3));
    cr_assert_eq(read_full(fd, buf, 3), 3);
    uint32_t old_id = atomic_load(&last_open_id);
    close(fd);
    cr_assert(wait_until(loop, no_conns, NULL));
    struct stale_probe p = {.id = old_id};
    run_on(loop, probe_id, &p);
    cr_assert_not(p.live, "a freed conn must not be found by its id");

    fd = client_connect(port);
    cr_assert(write_full(fd, "two", 3));
    cr_assert_eq(read_full(fd, buf, 3), 3);
    uint32_t new_id = atomic_load(&last_open_id);
    cr_assert_eq(new_id & CONN_SLOT_MASK, old_id & CONN_SLOT_MASK, "the slot is reused");
    cr_assert_neq(new_id, old_id, "with a new generation");

    run_on(loop, inject_stale_recv, &old_id);
    cr_assert(wait_until(loop, stale_seen, NULL));
    /* the new occupant of the slot is untouched by the stale CQE */
    cr_assert(write_full(fd, "three", 5));
    cr_assert_eq(read_full(fd, buf, 5), 5);
    cr_assert_arr_eq(buf, "three", 5);
    struct loop_stats s = stats_of(loop);
    cr_assert_eq(s.stale_cqes, 1);
    cr_assert_eq(s.conns_open, 1);
    close(fd);
    cr_assert_eq(test_thread_stop(&t), 0);
    loop_free(loop);
}

/* ---- backpressure ---- */

static struct loop *bp_loop(const struct conn_ops *ops, int *port)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 16;
    cfg.out_cap = 256 * 1024;
    cfg.out_high = 64 * 1024;
    cfg.out_low = 16 * 1024;
    cfg.sndbuf = 16 * 1024;
    cfg.rcvbuf = 16 * 1024;
    struct loop *loop = loop_new(&cfg);
    cr_assert_not_null(loop);
    struct sockaddr_in a = loopback4(0);
    *port = loop_listen(loop, (struct sockaddr *)&a, sizeof(a), ops, NULL);
    cr_assert_gt(*port, 0);
    return loop;
}

Test(conn, stops_reading_from_a_client_that_never_reads_and_resumes_when_it_does)
{
    int port;
    struct loop *loop = bp_loop(&echo_ops, &port);
    struct test_thread t;
    test_thread_start(&t, loop);
    int fd = client_connect(port);
    int small = 16 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    fcntl(fd, F_SETFL, O_NONBLOCK);

    /* write until the server stops taking bytes and says it paused (bounded: 16 MiB would mean
     * no backpressure); a stall without a pause is the loop thread merely being slow (a loaded
     * machine): keep writing */
    char chunk[4096];
    memset(chunk, 'x', sizeof(chunk));
    size_t written = 0;
    bool stalled = false;
    for (int polls = 0; written < 16u << 20 && polls < 100;) {
        ssize_t w = write(fd, chunk, sizeof(chunk));
        if (w > 0) {
            written += (size_t)w;
            continue;
        }
        cr_assert(w < 0 && errno == EAGAIN);
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        stalled = poll(&pfd, 1, 300) == 0;
        polls++;
        if (stalled && stats_of(loop).backpressure_pauses >= 1)
            break;
    }
    cr_assert(stalled, "the server kept reading from a client that never reads");
    cr_assert_geq(stats_of(loop).backpressure_pauses, 1, "no backpressure pause counted");
    struct loop_stats s = stats_of(loop);
    cr_assert_leq(s.out_queued, 256 * 1024, "output queue over its cap");
    cr_assert_eq(s.slow_closes, 0);
    cr_assert_eq(s.conns_open, 1);

    /* now read everything back: the server resumes and nothing is lost */
    size_t got = 0;
    char buf[65536];
    for (int i = 0; i < 100000 && got < written; i++) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, WAIT_MS) != 1)
            break;
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    cr_assert_eq(got, written);
    s = stats_of(loop);
    cr_assert_eq(s.bytes_in, written);
    cr_assert_eq(s.bytes_out, written);
    close(fd);
    cr_assert_eq(test_thread_stop(&t), 0);
    loop_free(loop);
}

static void amplify_on_data(struct conn *c, const char *p, size_t n)
{
    struct iovec iov = {(void *)p, n};
    for (int i = 0; i < 64; i++)
        if (conn_send(c, &iov, 1) < 0)
            return;
}

static const struct conn_ops amplify_ops = {.on_data = amplify_on_data};

Test(conn, closes_a_slow_reader_at_the_output_cap)
{
    int port;
    struct loop *loop = bp_loop(&amplify_ops, &port);
    struct test_thread t;
    test_thread_start(&t, loop);
    int fd = client_connect(port);
    char chunk[16384];
    memset(chunk, 'y', sizeof(chunk));
    cr_assert(write_full(fd, chunk, sizeof(chunk)));
    cr_assert(peer_closed(fd));
    /* the peer sees the FIN of the close's shutdown before the slot is reaped */
    cr_assert(wait_until(loop, no_conns, NULL));
    struct loop_stats s = stats_of(loop);
    cr_assert_eq(s.slow_closes, 1);
    cr_assert_eq(s.closed[CONN_CLOSE_SLOW], 1);
    /* the send stuck on the slow reader ended with the close's shutdown (the recv was cancelled
     * at the pause: the socket stayed open then) */
    cr_assert_eq(s.shutdowns, (loop_features(loop) & LOOP_FEAT_SHUTDOWN) ? 1 : 0);
    cr_assert_eq(s.backpressure_pauses, s.cancels);
    cr_assert_eq(s.out_queued, 0, "the closed conn's queue was freed");
    close(fd);
    cr_assert_eq(test_thread_stop(&t), 0);
    loop_free(loop);
}

/* ---- caps ---- */

static void caps_run(unsigned max_conns, unsigned per_source, struct loop_stats *out)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = max_conns;
    cfg.max_conns_per_source = per_source;
    struct loop *loop = loop_new(&cfg);
    struct sockaddr_in a = loopback4(0);
    int port = loop_listen(loop, (struct sockaddr *)&a, sizeof(a), &echo_ops, NULL);
    struct test_thread t;
    test_thread_start(&t, loop);
    int fds[3];
    char buf[4];
    for (int i = 0; i < 2; i++) {
        fds[i] = client_connect(port);
        cr_assert(write_full(fds[i], "ping", 4));
        cr_assert_eq(read_full(fds[i], buf, 4), 4, "client %d within the cap", i);
    }
    fds[2] = client_connect(port);
    cr_assert(peer_closed(fds[2]), "the client over the cap is closed at once");
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    /* slots are free again: a new client is served */
    cr_assert(wait_until(loop, no_conns, NULL));
    int fd = client_connect(port);
    cr_assert(write_full(fd, "pong", 4));
    cr_assert_eq(read_full(fd, buf, 4), 4);
    close(fd);
    *out = stats_of(loop);
    cr_assert_eq(test_thread_stop(&t), 0);
    loop_free(loop);
}

Test(conn, rejects_connections_over_the_worker_cap)
{
    struct loop_stats s;
    caps_run(2, 0, &s);
    cr_assert_eq(s.rejected_worker_cap, 1);
    cr_assert_eq(s.accepted, 3);
}

Test(conn, rejects_connections_over_the_per_source_cap)
{
    struct loop_stats s;
    caps_run(64, 2, &s);
    cr_assert_eq(s.rejected_source_cap, 1);
    cr_assert_eq(s.accepted, 3);
}

/* ---- outbound ---- */

struct out_result {
    atomic_int opened;
    atomic_int closed;
    atomic_int reason;
    atomic_int err;
    char got[16];
    atomic_size_t ngot;
};

static void out_on_open(struct conn *c)
{
    struct out_result *r = conn_user(c);
    atomic_store(&r->opened, 1);
    struct iovec iov = {"ping", 4};
    conn_send(c, &iov, 1);
}

static void out_on_data(struct conn *c, const char *p, size_t n)
{
    struct out_result *r = conn_user(c);
    size_t have = atomic_load(&r->ngot);
    size_t k = n < sizeof(r->got) - have ? n : sizeof(r->got) - have;
    memcpy(r->got + have, p, k);
    atomic_store(&r->ngot, have + k);
}

static void out_on_close(struct conn *c, enum conn_close_reason reason)
{
    struct out_result *r = conn_user(c);
    atomic_store(&r->reason, (int)reason);
    atomic_store(&r->err, conn_last_error(c));
    atomic_store(&r->closed, 1);
}

static const struct conn_ops out_ops = {
    .on_open = out_on_open, .on_data = out_on_data, .on_close = out_on_close};

struct connect_req {
    int port;
    uint32_t timeout_ms;
    struct out_result *r;
    const char *src; /* loop_connect_from() this address, else loop_connect() */
    int ret;
};

static void do_connect(struct loop *loop, void *arg)
{
    struct connect_req *q = arg;
    struct sockaddr_in a = loopback4(q->port);
    if (q->src == NULL) {
        q->ret = loop_connect(loop, (struct sockaddr *)&a, sizeof(a), q->timeout_ms, &out_ops, q->r,
                              NULL);
        return;
    }
    struct sockaddr_in s = {.sin_family = AF_INET};
    cr_assert_eq(inet_pton(AF_INET, q->src, &s.sin_addr), 1);
    q->ret = loop_connect_from(loop, (struct sockaddr *)&a, sizeof(a), (struct sockaddr *)&s,
                               sizeof(s), q->timeout_ms, &out_ops, q->r, NULL);
}

static bool flag_set(atomic_int *f)
{
    for (int i = 0; i < WAIT_MS / 5 && !atomic_load(f); i++)
        usleep(5000);
    return atomic_load(f);
}

static int plain_listener(int backlog, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback4(0);
    socklen_t l = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    *port = ntohs(a.sin_port);
    if (backlog >= 0)
        cr_assert_eq(listen(fd, backlog), 0);
    return fd;
}

/* A loop with one connection out to a plain listener (from `src` when not NULL), accepted
 * (`fd`, its peer in `peer`) and its "ping" read; out_end() closes it and stops the loop. */
struct out_case {
    struct loop *loop;
    struct test_thread t;
    int lfd, port, fd;
    struct out_result r;
    struct sockaddr_in peer;
};

static void out_begin(struct out_case *k, const char *src)
{
    memset(k, 0, sizeof(*k));
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 16;
    k->loop = loop_new(&cfg);
    test_thread_start(&k->t, k->loop);
    k->lfd = plain_listener(8, &k->port);
    struct connect_req q = {.port = k->port, .timeout_ms = 2000, .r = &k->r, .src = src};
    run_on(k->loop, do_connect, &q);
    cr_assert_eq(q.ret, 0);
    struct timeval tv = {WAIT_MS / 1000, 0};
    setsockopt(k->lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    socklen_t pl = sizeof(k->peer);
    k->fd = accept(k->lfd, (struct sockaddr *)&k->peer, &pl);
    cr_assert_geq(k->fd, 0);
    setsockopt(k->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[4];
    cr_assert_eq(read_full(k->fd, buf, 4), 4);
    cr_assert_arr_eq(buf, "ping", 4);
}

static void out_end(struct out_case *k)
{
    close(k->fd);
    cr_assert(flag_set(&k->r.closed));
    cr_assert_eq(atomic_load(&k->r.reason), CONN_CLOSE_PEER);
    cr_assert_eq(stats_of(k->loop).connected, 1);
    close(k->lfd);
    cr_assert_eq(test_thread_stop(&k->t), 0);
    loop_free(k->loop);
}

Test(conn, connects_out_and_exchanges_bytes)
{
    struct out_case k;
    out_begin(&k, NULL);
    cr_assert(write_full(k.fd, "pong", 4));
    for (int i = 0; i < WAIT_MS / 5 && atomic_load(&k.r.ngot) < 4; i++)
        usleep(5000);
    cr_assert_eq(atomic_load(&k.r.ngot), 4);
    cr_assert_arr_eq(k.r.got, "pong", 4);
    cr_assert(atomic_load(&k.r.opened));
    out_end(&k);
}

Test(conn, connects_out_from_the_given_local_address)
{
    struct out_case k;
    out_begin(&k, "127.0.0.9");
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &k.peer.sin_addr, text, sizeof(text));
    cr_assert_str_eq(text, "127.0.0.9");
    cr_assert_neq(ntohs(k.peer.sin_port), 0, "the kernel picked a port at the connect");
    /* an address the host does not have: the bind's error, no connection taken */
    struct out_result r2 = {0};
    struct connect_req q2 = {.port = k.port, .timeout_ms = 2000, .r = &r2, .src = "192.0.2.1"};
    run_on(k.loop, do_connect, &q2);
    cr_assert_eq(q2.ret, -EADDRNOTAVAIL);
    out_end(&k);
}

/* ---- trunks: the UCM pool's connections carry every client's traffic ---- */

struct trunk {
    struct loop *loop;
    struct test_thread t;
    int lfd, fd; /* our listener standing in for UCM, and its accepted end */
    struct out_result r;
    struct conn *c; /* the loop's outbound conn */
    size_t out_cap, out_high;
    /* trunk_send: `count` messages of `len` bytes ('a' + i % 26), stopping at a failure */
    unsigned count;
    size_t len;
    size_t queued;
    int last; /* the failing conn_send's return, else 0 */
};

/* Small client caps, larger trunk caps. */
static void trunk_cfg(struct loop_cfg *cfg)
{
    loop_cfg_default(cfg);
    cfg->max_conns = 16;
    cfg->out_cap = 64 * 1024;
    cfg->out_high = 16 * 1024;
    cfg->out_low = 4 * 1024;
    cfg->out_cap_trunk = 1024 * 1024;
    cfg->out_high_trunk = 256 * 1024;
}

static void trunk_connect(struct loop *loop, void *arg)
{
    struct trunk *k = arg;
    int port = k->fd; /* the port, before the accept */
    struct sockaddr_in a = loopback4(port);
    cr_assert_eq(loop_connect(loop, (struct sockaddr *)&a, sizeof(a), 2000, &out_ops, &k->r, &k->c),
                 0);
    k->out_cap = conn_out_cap(k->c);
    k->out_high = conn_out_high(k->c);
}

/* A loop with `cfg`, connected out to a listener of ours that reads only when told. */
static void trunk_open(struct trunk *k, const struct loop_cfg *cfg)
{
    memset(k, 0, sizeof(*k));
    k->loop = loop_new(cfg);
    cr_assert_not_null(k->loop);
    test_thread_start(&k->t, k->loop);
    int port;
    k->lfd = plain_listener(8, &port);
    int small = 4096;
    setsockopt(k->lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    k->fd = port;
    run_on(k->loop, trunk_connect, k);
    struct timeval tv = {WAIT_MS / 1000, 0};
    setsockopt(k->lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    k->fd = accept(k->lfd, NULL, NULL);
    cr_assert_geq(k->fd, 0);
    setsockopt(k->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char ping[4];
    cr_assert_eq(read_full(k->fd, ping, 4), 4, "on_open's ping");
}

static void trunk_close(struct trunk *k)
{
    close(k->fd);
    close(k->lfd);
    cr_assert_eq(test_thread_stop(&k->t), 0);
    loop_free(k->loop);
}

static void trunk_send(struct loop *loop, void *arg)
{
    (void)loop;
    struct trunk *k = arg;
    static char msg[16384];
    k->queued = 0;
    k->last = 0;
    for (unsigned i = 0; i < k->count; i++) {
        memset(msg, 'a' + (int)(i % 26), k->len);
        struct iovec iov = {msg, k->len};
        ssize_t w = conn_send(k->c, &iov, 1);
        if (w < 0) {
            k->last = (int)w;
            return;
        }
        k->queued += (size_t)w;
    }
}

Test(conn, an_outbound_trunk_holds_more_than_a_client_and_keeps_reading)
{
    struct loop_cfg cfg;
    trunk_cfg(&cfg);
    cfg.sndbuf = 16 * 1024;
    static struct trunk k;
    trunk_open(&k, &cfg);
    cr_assert_eq(k.out_cap, 1024 * 1024, "an outbound conn is a trunk");
    cr_assert_eq(k.out_high, 256 * 1024);

    /* UCM does not read for a while: 512 KiB queued at once, eight times a client's cap */
    k.count = 32;
    k.len = 16384;
    run_on(k.loop, trunk_send, &k);
    cr_assert_eq(k.last, 0, "refused at %zu bytes: %d", k.queued, k.last);
    cr_assert_eq(k.queued, 512 * 1024);
    struct loop_stats s = stats_of(k.loop);
    cr_assert_eq(s.backpressure_pauses, 0, "a trunk is never paused");
    cr_assert_eq(s.slow_closes, 0);

    /* its answers still come in while our queue to it is high */
    cr_assert(write_full(k.fd, "pong", 4));
    for (int i = 0; i < WAIT_MS / 5 && atomic_load(&k.r.ngot) < 4; i++)
        usleep(5000);
    cr_assert_eq(atomic_load(&k.r.ngot), 4, "the trunk stopped reading its peer");
    cr_assert_arr_eq(k.r.got, "pong", 4);

    /* past the trunk's own cap it is cut like any conn (net/upstream refuses before that) */
    k.count = 128;
    run_on(k.loop, trunk_send, &k);
    cr_assert_eq(k.last, -ENOBUFS);
    cr_assert(flag_set(&k.r.closed));
    cr_assert_eq(atomic_load(&k.r.reason), CONN_CLOSE_SLOW);
    trunk_close(&k);
}

Test(conn, a_trunk_sends_what_one_turn_queued_in_one_send)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 16;
    static struct trunk k;
    trunk_open(&k, &cfg);
    uint64_t sends0 = stats_of(k.loop).sends;

    k.count = 100; /* in one turn */
    k.len = 100;
    run_on(k.loop, trunk_send, &k);
    cr_assert_eq(k.queued, 10000);
    static char got[10000];
    cr_assert_eq(read_full(k.fd, got, sizeof(got)), (ssize_t)sizeof(got));
    for (int i = 0; i < 100; i++)
        for (int j = 0; j < 100; j++)
            cr_assert_eq(got[i * 100 + j], 'a' + i % 26, "message %d out of order", i);
    uint64_t sends = stats_of(k.loop).sends - sends0;
    cr_assert_eq(sends, 1, "the turn's 100 messages left in %llu sends", (unsigned long long)sends);
    trunk_close(&k);
}

static void make_trunk_on_data(struct conn *c, const char *p, size_t n)
{
    (void)p;
    (void)n;
    size_t before = conn_out_cap(c);
    conn_set_trunk(c);
    char line[64];
    int k =
        snprintf(line, sizeof(line), "%zu %zu %zu\n", before, conn_out_cap(c), conn_out_high(c));
    struct iovec iov = {line, (size_t)k};
    conn_send(c, &iov, 1);
}

static const struct conn_ops make_trunk_ops = {.on_data = make_trunk_on_data};

Test(conn, an_accepted_conn_made_a_trunk_gets_the_trunk_caps)
{
    struct loop_cfg cfg;
    trunk_cfg(&cfg);
    struct loop *loop = loop_new(&cfg);
    struct sockaddr_in a = loopback4(0);
    int port = loop_listen(loop, (struct sockaddr *)&a, sizeof(a), &make_trunk_ops, NULL);
    cr_assert_gt(port, 0);
    struct test_thread t;
    test_thread_start(&t, loop);
    int fd = client_connect(port);
    cr_assert(write_full(fd, "x", 1));
    char buf[64] = {0};
    const char *want = "65536 1048576 262144\n";
    cr_assert_eq(read_full(fd, buf, strlen(want)), (ssize_t)strlen(want));
    cr_assert_str_eq(buf, want);
    close(fd);
    cr_assert_eq(test_thread_stop(&t), 0);
    loop_free(loop);
}

Test(conn, reports_a_refused_connect)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 16;
    struct loop *loop = loop_new(&cfg);
    struct test_thread t;
    test_thread_start(&t, loop);
    int port;
    int lfd = plain_listener(-1, &port); /* bound, not listening: connects are refused */
    struct out_result r = {0};
    struct connect_req q = {.port = port, .timeout_ms = 2000, .r = &r};
    run_on(loop, do_connect, &q);
    cr_assert_eq(q.ret, 0);
    cr_assert(flag_set(&r.closed));
    cr_assert_not(atomic_load(&r.opened));
    cr_assert_eq(atomic_load(&r.reason), CONN_CLOSE_CONNECT_FAILED);
    cr_assert_eq(atomic_load(&r.err), -ECONNREFUSED);
    cr_assert(wait_until(loop, no_conns, NULL));
    close(lfd);
    cr_assert_eq(test_thread_stop(&t), 0);
    loop_free(loop);
}

Test(conn, times_out_a_connect_that_gets_no_answer)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 16;
    struct loop *loop = loop_new(&cfg);
    struct test_thread t;
    test_thread_start(&t, loop);
    /* a listener with a full accept queue drops further SYNs: the connect hangs */
    int port;
    int lfd = plain_listener(0, &port);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = loopback4(port);
        connect(fill[i], (struct sockaddr *)&a, sizeof(a));
    }
    usleep(50000);
    struct out_result r = {0};
    struct connect_req q = {.port = port, .timeout_ms = 200, .r = &r};
    run_on(loop, do_connect, &q);
    cr_assert_eq(q.ret, 0);
    cr_assert(flag_set(&r.closed));
    cr_assert_not(atomic_load(&r.opened));
    cr_assert_eq(atomic_load(&r.reason), CONN_CLOSE_CONNECT_TIMEOUT);
    cr_assert_eq(atomic_load(&r.err), -ETIMEDOUT);
    cr_assert(wait_until(loop, no_conns, NULL));
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(lfd);
    cr_assert_eq(test_thread_stop(&t), 0);
    loop_free(loop);
}

struct adopt_req {
    int fd;
    int ret;
};

static void do_adopt(struct loop *loop, void *arg)
{
    struct adopt_req *q = arg;
    q->ret = loop_adopt(loop, q->fd, &echo_ops, NULL, NULL);
}

Test(conn, adopts_a_socket_made_elsewhere)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 16;
    struct loop *loop = loop_new(&cfg);
    struct test_thread t;
    test_thread_start(&t, loop);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct timeval tv = {WAIT_MS / 1000, 0};
    setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct adopt_req q = {.fd = sv[0]};
    run_on(loop, do_adopt, &q);
    cr_assert_eq(q.ret, 0);
    char buf[5];
    cr_assert(write_full(sv[1], "redis", 5));
    cr_assert_eq(read_full(sv[1], buf, 5), 5);
    cr_assert_arr_eq(buf, "redis", 5);
    close(sv[1]);
    cr_assert(wait_until(loop, no_conns, NULL), "the adopted fd is closed with its conn");
    cr_assert_eq(test_thread_stop(&t), 0);
    loop_free(loop);
}

Test(conn, keeps_an_idle_connection_small)
{
    /* net's whole per-connection state while idle is the slab entry: no buffers */
    cr_assert_leq(sizeof(struct conn), 128);
}

/* ---- provided buffers run out ---- */

static void dry_ring_run(unsigned flags)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.flags = flags;
    cfg.max_conns = 128;
    cfg.buf_count = 2; /* 64 clients with 4 KiB each need far more than 2 x 512 bytes */
    cfg.buf_size = 512;
    struct loop *loop = loop_new(&cfg);
    cr_assert_not_null(loop);
    if (!(loop_features(loop) & LOOP_FEAT_MULTISHOT_RECV)) {
        loop_free(loop);
        cr_skip_test("kernel without multishot recv / buffer rings");
    }
    struct sockaddr_in a = loopback4(0);
    int port = loop_listen(loop, (struct sockaddr *)&a, sizeof(a), &echo_ops, NULL);
    struct test_thread t;
    test_thread_start(&t, loop);
    enum { N = 64, SIZE = 4096 };
    int fds[N];
    static char msg[SIZE], got[SIZE];
    for (int i = 0; i < N; i++)
        fds[i] = client_connect(port);
    for (int i = 0; i < N; i++) {
        memset(msg, 'A' + i % 26, sizeof(msg));
        cr_assert(write_full(fds[i], msg, sizeof(msg)));
    }
    for (int i = 0; i < N; i++) {
        memset(msg, 'A' + i % 26, sizeof(msg));
        cr_assert_eq(read_full(fds[i], got, sizeof(got)), SIZE, "client %d", i);
        cr_assert_arr_eq(got, msg, sizeof(msg));
        close(fds[i]);
    }
    cr_assert(wait_until(loop, no_conns, NULL));
    struct loop_stats s = stats_of(loop);
    cr_assert_gt(s.recv_enobufs, 0, "the ring never ran dry: the test lost its point");
    cr_assert_eq(s.bytes_in, (uint64_t)N * SIZE);
    cr_assert_eq(test_thread_stop(&t), 0);
    loop_free(loop);
}

Test(conn, rearms_after_the_buffer_ring_runs_dry_and_loses_nothing)
{
    dry_ring_run(0);
}

/* The same with receive timestamps: each 512-byte buffer also holds recvmsg's header and cmsg. */
Test(conn, rearms_a_dry_ring_with_recvmsg_and_timestamps_and_loses_nothing)
{
    dry_ring_run(LOOP_CFG_F_RX_TIMESTAMPS);
}

/* ---- receive timestamps (admission by queueing delay) ---- */

Test(conn, echoes_with_receive_timestamps_in_every_receive_mode)
{
    static const unsigned modes[] = {0, LOOP_CFG_F_NO_MULTISHOT,
                                     LOOP_CFG_F_NO_BUFRING | LOOP_CFG_F_NO_MULTISHOT};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        struct loop_stats s[2];
        echo_run(LOOP_CFG_F_RX_TIMESTAMPS | modes[i], s);
    }
}

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static atomic_uint_fast64_t ts_rx, ts_read; /* conn_rx_ns() in on_data, and when on_data ran */
static atomic_int ts_calls;
static atomic_bool ts_blocked;
static atomic_uint_fast64_t ts_unblocked; /* when the blocked loop thread went on */

static void ts_on_data(struct conn *c, const char *p, size_t n)
{
    (void)p;
    (void)n;
    atomic_store(&ts_rx, conn_rx_ns(c));
    atomic_store(&ts_read, realtime_ns());
    atomic_fetch_add(&ts_calls, 1);
}

static const struct conn_ops ts_ops = {.on_data = ts_on_data};

/* Runs on the loop thread: keeps it from reading for 200 ms, as a worker short of CPU would be. */
static void block_loop(struct loop *loop, void *arg)
{
    (void)loop;
    (void)arg;
    atomic_store(&ts_blocked, true);
    struct timespec d = {.tv_nsec = 200 * 1000000};
    nanosleep(&d, NULL);
    atomic_store(&ts_unblocked, realtime_ns());
}

static bool ts_seen(int want)
{
    for (int i = 0; i < WAIT_MS; i++) {
        if (atomic_load(&ts_calls) >= want)
            return true;
        usleep(1000);
    }
    return false;
}

static void timestamps_run(unsigned flags)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.flags = flags;
    cfg.max_conns = 16;
    struct loop *loop = loop_new(&cfg);
    cr_assert_not_null(loop);
    struct sockaddr_in a = loopback4(0);
    int port = loop_listen(loop, (struct sockaddr *)&a, sizeof(a), &ts_ops, NULL);
    cr_assert_gt(port, 0);
    atomic_store(&ts_calls, 0);
    atomic_store(&ts_blocked, false);
    struct test_thread t;
    test_thread_start(&t, loop);
    int fd = client_connect(port);
    cr_assert_geq(fd, 0);

    /* The kernel turns stamping on lazily (a work item, after the first socket asks): until it
     * has, segments carry none (0, "not known"). Bounded: at most a second of 1-byte writes. */
    int calls = 0;
    for (int i = 0; i < 1000; i++) {
        cr_assert(write_full(fd, "w", 1));
        cr_assert(ts_seen(++calls));
        if (atomic_load(&ts_rx) != 0)
            break;
        usleep(1000);
    }
    cr_assert_neq(atomic_load(&ts_rx), 0, "the kernel never stamped a segment");

    /* read at once: the timestamp lies between the write and the read */
    uint64_t before = realtime_ns();
    cr_assert(write_full(fd, "hello", 5));
    cr_assert(ts_seen(++calls));
    uint64_t rx = atomic_load(&ts_rx), rd = atomic_load(&ts_read);
    cr_assert(rx >= before && rx <= rd, "rx %llu not in [%llu, %llu]", (unsigned long long)rx,
              (unsigned long long)before, (unsigned long long)rd);

    /* the loop is busy when the bytes arrive: the timestamp says when they arrived, not when
     * the loop got to them, so what they waited shows */
    cr_assert_eq(loop_post(loop, block_loop, NULL), 0);
    for (int i = 0; i < WAIT_MS && !atomic_load(&ts_blocked); i++)
        usleep(1000);
    cr_assert(atomic_load(&ts_blocked));
    before = realtime_ns();
    cr_assert(write_full(fd, "world", 5));
    cr_assert(ts_seen(++calls));
    rx = atomic_load(&ts_rx);
    uint64_t unblocked = atomic_load(&ts_unblocked);
    cr_assert(rx >= before && rx < unblocked,
              "rx %llu not in [%llu, %llu): it is the read time, not the arrival time",
              (unsigned long long)rx, (unsigned long long)before, (unsigned long long)unblocked);
    cr_assert_geq(atomic_load(&ts_read), unblocked);
    close(fd);
    cr_assert(wait_until(loop, no_conns, NULL), "a recvmsg end of stream closes the conn");
    cr_assert_eq(stats_of(loop).closed[CONN_CLOSE_PEER], 1);
    cr_assert_eq(test_thread_stop(&t), 0);
    loop_free(loop);
}

Test(conn, timestamps_what_arrives_while_the_loop_is_busy_with_multishot_recvmsg)
{
    timestamps_run(LOOP_CFG_F_RX_TIMESTAMPS);
}

Test(conn, timestamps_what_arrives_while_the_loop_is_busy_through_poll)
{
    timestamps_run(LOOP_CFG_F_RX_TIMESTAMPS | LOOP_CFG_F_NO_BUFRING | LOOP_CFG_F_NO_MULTISHOT);
}

Test(conn, has_no_timestamp_without_the_flag)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 16;
    struct loop *loop = loop_new(&cfg);
    cr_assert_not_null(loop);
    struct sockaddr_in a = loopback4(0);
    int port = loop_listen(loop, (struct sockaddr *)&a, sizeof(a), &ts_ops, NULL);
    atomic_store(&ts_calls, 0);
    atomic_store(&ts_rx, 1);
    struct test_thread t;
    test_thread_start(&t, loop);
    int fd = client_connect(port);
    cr_assert(write_full(fd, "hello", 5));
    cr_assert(ts_seen(1));
    cr_assert_eq(atomic_load(&ts_rx), 0);
    close(fd);
    cr_assert(wait_until(loop, no_conns, NULL));
    cr_assert_eq(test_thread_stop(&t), 0);
    loop_free(loop);
}

/* ---- completions per turn ---- */

#define BURST_CLIENTS 300

static atomic_uint burst_max_cqes, burst_turns;

static void record_turn(struct loop *loop, uint64_t busy_us, unsigned cqes)
{
    (void)loop;
    (void)busy_us;
    if (cqes > atomic_load(&burst_max_cqes))
        atomic_store(&burst_max_cqes, cqes);
    atomic_fetch_add(&burst_turns, 1);
}

static void set_turn_fn(struct loop *loop, void *arg)
{
    (void)arg;
    loop_set_turn_fn(loop, record_turn);
}

/* 300 clients connect and write while the loop is blocked: their accepts and reads (600
 * completions and more) are handled LOOP_TURN_MAX_CQES a turn at most, and every one is
 * answered. */
Test(conn, handles_a_burst_of_completions_a_bounded_number_per_turn)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 1024;
    struct loop *loop = loop_new(&cfg);
    cr_assert_not_null(loop);
    struct sockaddr_in a = loopback4(0);
    int port = loop_listen(loop, (struct sockaddr *)&a, sizeof(a), &echo_ops, NULL);
    cr_assert_gt(port, 0);
    struct test_thread t;
    test_thread_start(&t, loop);
    cr_assert_eq(loop_post(loop, set_turn_fn, NULL), 0);
    atomic_store(&ts_blocked, false);
    cr_assert_eq(loop_post(loop, block_loop, NULL), 0);
    for (int i = 0; i < WAIT_MS && !atomic_load(&ts_blocked); i++)
        usleep(1000);
    cr_assert(atomic_load(&ts_blocked));
    atomic_store(&burst_max_cqes, 0);
    atomic_store(&burst_turns, 0);
    static int fds[BURST_CLIENTS];
    for (int i = 0; i < BURST_CLIENTS; i++) { /* the backlog holds them until the loop is back */
        fds[i] = client_connect(port);
        cr_assert_geq(fds[i], 0, "connect %d", i);
        cr_assert(write_full(fds[i], "ping", 4));
    }
    for (int i = 0; i < BURST_CLIENTS; i++) {
        char got[4];
        cr_assert_eq(read_full(fds[i], got, sizeof(got)), 4, "client %d", i);
        cr_assert_arr_eq(got, "ping", 4);
        close(fds[i]);
    }
    cr_assert(wait_until(loop, no_conns, NULL));
    cr_assert_eq(test_thread_stop(&t), 0);
    unsigned max = atomic_load(&burst_max_cqes), turns = atomic_load(&burst_turns);
    cr_assert_gt(max, 0);
    cr_assert_leq(max, LOOP_TURN_MAX_CQES, "a turn handled %u completions", max);
    cr_assert_geq(turns, 2 * BURST_CLIENTS / LOOP_TURN_MAX_CQES, "%u turns", turns);
    loop_free(loop);
}

/* ---- accepted sockets' options ---- */

static atomic_int opt_nodelay = -1, opt_tsns = -1, opt_rcvbuf = -1, opt_sndbuf = -1;

/* runs on the loop thread: the options the accepted socket has, for the test thread to check */
static void record_options(struct conn *c)
{
    int v, fd = conn_fd(c);
    socklen_t l = sizeof(v);
    atomic_store(&opt_nodelay, getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &l) == 0 ? v : -2);
    l = sizeof(v);
    atomic_store(&opt_tsns, getsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &v, &l) == 0 ? v : -2);
    l = sizeof(v);
    atomic_store(&opt_sndbuf, getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &l) == 0 ? v : -2);
    l = sizeof(v);
    atomic_store(&opt_rcvbuf, getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &l) == 0 ? v : -2);
}

static const struct conn_ops options_ops = {.on_open = record_options, .on_data = echo_on_data};

/* The accept path sets no option itself: an accepted socket has the listener's TCP_NODELAY,
 * buffer sizes and (with the flag) SO_TIMESTAMPNS, and is read with timestamps. */
static void accepted_options_run(unsigned flags)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.flags = flags;
    cfg.max_conns = 16;
    cfg.sndbuf = 96 * 1024;
    cfg.rcvbuf = 80 * 1024;
    struct loop *loop = loop_new(&cfg);
    cr_assert_not_null(loop);
    struct sockaddr_in a = loopback4(0);
    int port = loop_listen(loop, (struct sockaddr *)&a, sizeof(a), &options_ops, NULL);
    cr_assert_gt(port, 0);
    atomic_store(&opt_nodelay, -1);
    struct test_thread t;
    test_thread_start(&t, loop);
    int fd = client_connect(port);
    cr_assert_geq(fd, 0);
    char got[5];
    cr_assert(write_full(fd, "hello", 5));
    cr_assert_eq(read_full(fd, got, sizeof(got)), 5);
    cr_assert_eq(atomic_load(&opt_nodelay), 1, "TCP_NODELAY %d", atomic_load(&opt_nodelay));
    cr_assert_eq(atomic_load(&opt_tsns), (flags & LOOP_CFG_F_RX_TIMESTAMPS) ? 1 : 0);
    /* the kernel doubles what it is asked for (socket(7)) */
    cr_assert_eq(atomic_load(&opt_sndbuf), 2 * cfg.sndbuf, "SO_SNDBUF %d",
                 atomic_load(&opt_sndbuf));
    cr_assert_eq(atomic_load(&opt_rcvbuf), 2 * cfg.rcvbuf, "SO_RCVBUF %d",
                 atomic_load(&opt_rcvbuf));
    close(fd);
    cr_assert(wait_until(loop, no_conns, NULL));
    cr_assert_eq(test_thread_stop(&t), 0);
    loop_free(loop);
}

Test(conn, an_accepted_socket_has_the_listeners_options)
{
    accepted_options_run(LOOP_CFG_F_RX_TIMESTAMPS);
    accepted_options_run(0);
}

/* The listener's accept queue is as long as configured (TCP_INFO on a listening socket: tcpi_sacked
 * is its maximum, tcpi_unacked its length), capped at net.core.somaxconn, and holds completed
 * connections until the loop accepts them. */
static unsigned somaxconn(void)
{
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
    unsigned v = 0;
    cr_assert(f && fscanf(f, "%u", &v) == 1);
    fclose(f);
    return v;
}

static int client_connect_nb(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = loopback4(port);
    cr_assert(fd >= 0 &&
              (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EINPROGRESS));
    return fd;
}

static struct tcp_info listener_info(struct loop *loop)
{
    struct tcp_info ti;
    socklen_t l = sizeof(ti);
    cr_assert_eq(getsockopt(loop->listeners[0].fd, IPPROTO_TCP, TCP_INFO, &ti, &l), 0);
    return ti;
}

Test(conn, the_listener_has_the_configured_backlog)
{
    unsigned want[] = {7, 4096, 65535};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        struct loop_cfg cfg;
        loop_cfg_default(&cfg);
        cfg.max_conns = 16;
        cfg.backlog = (int)want[i];
        struct loop *loop = loop_new(&cfg);
        cr_assert_not_null(loop);
        struct sockaddr_in a = loopback4(0);
        int port = loop_listen(loop, (struct sockaddr *)&a, sizeof(a), &options_ops, NULL);
        cr_assert_gt(port, 0);
        unsigned max = somaxconn(), expect = want[i] < max ? want[i] : max;
        struct tcp_info ti = listener_info(loop);
        cr_assert_eq(ti.tcpi_sacked, expect, "backlog %u: the kernel holds %u (somaxconn %u)",
                     want[i], ti.tcpi_sacked, max);
        if (want[i] == 7) { /* the loop has not run: connections wait in the queue, 8 at most */
            int fds[12];
            for (int k = 0; k < 12; k++)
                fds[k] = client_connect_nb(port);
            for (int w = 0; w < 200 && listener_info(loop).tcpi_unacked < 8; w++)
                usleep(5000);
            usleep(50000);
            cr_assert_eq(listener_info(loop).tcpi_unacked, 8, "queued %u",
                         listener_info(loop).tcpi_unacked);
            for (int k = 0; k < 12; k++)
                close(fds[k]);
        }
        loop_free(loop);
    }
}

/* ---- drain ---- */

#define DRAIN_REPLY (200 * 1024)

static atomic_long drain_sent, drain_more;
static atomic_int drain_state;

/* runs on the loop thread: record, the test thread asserts */
static void reply_then_drain(struct conn *c, const char *p, size_t n)
{
    (void)p;
    (void)n;
    static char big[DRAIN_REPLY];
    memset(big, 'z', sizeof(big));
    struct iovec iov = {big, sizeof(big)};
    atomic_store(&drain_sent, (long)conn_send(c, &iov, 1));
    conn_drain(c);
    atomic_store(&drain_state, (int)conn_state(c));
    struct iovec more = {"x", 1};
    atomic_store(&drain_more, (long)conn_send(c, &more, 1));
}

static const struct conn_ops drain_ops = {.on_data = reply_then_drain};

/* Both ways of ending the receive: a shutdown of the socket (the kernel's default here), or a
 * cancel (LOOP_CFG_F_NO_SHUTDOWN, and kernels without IORING_OP_SHUTDOWN). */
static void drain_flushes(unsigned flags)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 16;
    cfg.out_cap = 256 * 1024;
    cfg.out_high = 256 * 1024;
    cfg.flags |= flags;
    struct loop *loop = loop_new(&cfg);
    bool shut = loop_features(loop) & LOOP_FEAT_SHUTDOWN;
    cr_assert_eq(shut, !(flags & LOOP_CFG_F_NO_SHUTDOWN), "this kernel has IORING_OP_SHUTDOWN");
    struct sockaddr_in a = loopback4(0);
    int port = loop_listen(loop, (struct sockaddr *)&a, sizeof(a), &drain_ops, NULL);
    struct test_thread t;
    test_thread_start(&t, loop);
    int fd = client_connect(port);
    cr_assert(write_full(fd, "go", 2));
    static char buf[DRAIN_REPLY + 1];
    cr_assert_eq(read_full(fd, buf, sizeof(buf)), DRAIN_REPLY, "all of it, then EOF");
    cr_assert_eq(atomic_load(&drain_sent), DRAIN_REPLY);
    cr_assert_eq(atomic_load(&drain_state), CONN_DRAINING);
    cr_assert_eq(atomic_load(&drain_more), -EPIPE, "no sends after drain");
    cr_assert(wait_until(loop, no_conns, NULL));
    struct loop_stats s = stats_of(loop);
    /* our own end of the receive is not taken for the peer's */
    cr_assert_eq(s.closed[CONN_CLOSE_LOCAL], 1);
    cr_assert_eq(s.closed[CONN_CLOSE_PEER], 0);
    cr_assert_eq(s.bytes_out, DRAIN_REPLY);
    cr_assert_eq(s.shutdowns, shut ? 1 : 0);
    cr_assert_eq(s.cancels, shut ? 0 : 1, "%llu cancels", (unsigned long long)s.cancels);
    close(fd);
    cr_assert_eq(test_thread_stop(&t), 0);
    loop_free(loop);
}

Test(conn, drain_flushes_the_queue_then_closes)
{
    drain_flushes(0);
}

Test(conn, drain_flushes_the_queue_then_closes_with_cancels)
{
    drain_flushes(LOOP_CFG_F_NO_SHUTDOWN);
}
