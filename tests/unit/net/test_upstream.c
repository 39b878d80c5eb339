// SPDX-License-Identifier: MIT
// net/upstream.c against a real mTLS server (tls_conn on a second loop thread, loopback, port 0):
// pool up, echo, refused with backoff, certificate rejected, name mismatch, failover, session
// resumption, keep-alive deadline, round robin, free with live connections.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "net/upstream.h"
#include "net_test_util.h"

#define TLS12 0x0303

/* ---- PKI ---- */

static char pki[512];

static const char *pki_file(const char *name)
{
    static char paths[16][600];
    static int next;
    char *p = paths[next++ % 16];
    snprintf(p, sizeof(paths[0]), "%s/%s", pki, name);
    return p;
}

static void pki_init(void)
{
    snprintf(pki, sizeof(pki), "%s/tmp/upstream-pki", SIPEDGE_BINARY_DIR);
    char cmd[1400];
    snprintf(cmd, sizeof(cmd), "'%s/scripts/make-pki.sh' '%s'", SIPEDGE_SOURCE_DIR, pki);
    cr_assert_eq(system(cmd), 0, "make-pki.sh failed: %s", cmd);
}

static struct tls_ctx *client_ctx(const char *cert, uint16_t maxv)
{
    char crt[64], key[64], err[256] = "";
    snprintf(crt, sizeof(crt), "%s.crt", cert);
    snprintf(key, sizeof(key), "%s.key", cert);
    struct tls_client_opts o = {.cert_file = pki_file(crt),
                                .key_file = pki_file(key),
                                .ca_file = pki_file("ucm-ca.crt"),
                                .max_version = maxv};
    struct tls_ctx *ctx = NULL;
    cr_assert_eq(tls_client_ctx_new(&o, &ctx, err, sizeof(err)), 0, "client ctx: %s", err);
    return ctx;
}

/* ---- the UCM stand-in: mTLS echo server on its own loop ---- */

#define SRV_MAX_CONNS 64

struct srv {
    struct loop *loop;
    struct test_thread th;
    struct tls_ctx *ctx;
    int port;
    bool drop_pings;     /* answer everything but "PING" */
    atomic_int stall_ms; /* sleep before reading a client's second handshake flight */
    atomic_int accepted, handshakes, resumed, failed;
    atomic_int close_notifies;   /* close_notify alerts received from clients */
    uint32_t ids[SRV_MAX_CONNS]; /* live conns (loop thread) */
};

struct sconn {
    struct srv *srv;
    struct tls_conn *tls;
    bool up;
    bool hello_seen;
};

static bool srv_flush(struct conn *c, struct sconn *sc)
{
    struct slice out = tls_conn_out(sc->tls);
    if (!out.len)
        return true;
    struct iovec iov = {(void *)out.base, out.len};
    if (conn_send(c, &iov, 1) < 0)
        return false;
    tls_conn_out_consume(sc->tls, out.len);
    return true;
}

static void srv_on_open(struct conn *c)
{
    struct srv *srv = conn_user(c);
    struct sconn *sc = calloc(1, sizeof(*sc));
    sc->srv = srv;
    sc->tls = tls_conn_new_server(srv->ctx);
    conn_set_user(c, sc);
    atomic_fetch_add(&srv->accepted, 1);
    for (int i = 0; i < SRV_MAX_CONNS; i++)
        if (!conn_get(srv->loop, srv->ids[i])) {
            srv->ids[i] = conn_id(c);
            break;
        }
}

static void srv_on_data(struct conn *c, const char *p, size_t n)
{
    struct sconn *sc = conn_user(c);
    struct srv *srv = sc->srv;
    if (tls_conn_feed(sc->tls, p, n) < 0) {
        conn_close(c, CONN_CLOSE_ERROR);
        return;
    }
    if (!sc->up) {
        int stall = atomic_load(&srv->stall_ms);
        if (sc->hello_seen && stall > 0)
            usleep((useconds_t)stall * 1000); /* the verdict on the client's certificate is late */
        sc->hello_seen = true;
        int r = tls_conn_handshake(sc->tls);
        if (!srv_flush(c, sc))
            return;
        if (r == TLS_WANT_INPUT)
            return;
        if (r < 0) {
            atomic_fetch_add(&srv->failed, 1);
            conn_drain(c);
            return;
        }
        sc->up = true;
        atomic_fetch_add(&srv->handshakes, 1);
        if (tls_conn_resumed(sc->tls))
            atomic_fetch_add(&srv->resumed, 1);
    }
    char buf[4096];
    ssize_t r;
    while ((r = tls_conn_read(sc->tls, buf, sizeof(buf))) > 0) {
        if (srv->drop_pings && r >= 4 && memcmp(buf, "PING", 4) == 0)
            continue;
        if (r >= 7 && memcmp(buf, "GARBAGE", 7) == 0) { /* a record no key of ours opens */
            static const char rec[5 + 32] = {0x17, 0x03, 0x03, 0x00, 0x20};
            conn_send(c, &(struct iovec){(void *)rec, sizeof(rec)}, 1);
            continue;
        }
        if (r >= 5 && memcmp(buf, "BURST", 5) == 0) { /* 200 one-byte records, one send */
            for (int i = 0; i < 200; i++)
                tls_conn_writev(sc->tls, &(struct iovec){"b", 1}, 1);
            tls_conn_writev(sc->tls, &(struct iovec){"END-OF-BURST", 12}, 1);
            continue;
        }
        struct iovec iov = {buf, (size_t)r};
        if (tls_conn_writev(sc->tls, &iov, 1) < 0)
            break;
    }
    if (!srv_flush(c, sc))
        return;
    if (r == 0)
        atomic_fetch_add(&srv->close_notifies, 1);
    if (r == 0 || (r < 0 && r != TLS_WANT_INPUT))
        conn_drain(c);
}

static void srv_on_close(struct conn *c, enum conn_close_reason reason)
{
    (void)reason;
    struct sconn *sc = conn_user(c);
    if (sc) {
        tls_conn_free(sc->tls);
        free(sc);
    }
}

static const struct conn_ops srv_ops = {
    .on_open = srv_on_open, .on_data = srv_on_data, .on_close = srv_on_close};

static struct tls_ctx *server_ctx(const char *client_ca)
{
    char err[256] = "";
    struct tls_server_opts o = {.cert_file = pki_file("ucm.crt"),
                                .key_file = pki_file("ucm.key"),
                                .client_ca_file = pki_file(client_ca),
                                .require_client_cert = true};
    struct tls_ctx *ctx = NULL;
    cr_assert_eq(tls_server_ctx_new(&o, &ctx, err, sizeof(err)), 0, "server ctx: %s", err);
    return ctx;
}

/* Starts a server trusting client certificates from `client_ca` on `port` (0: ephemeral), on
 * 127.0.0.1 or ::1. */
static struct srv *srv_start_on(const char *client_ca, int port, bool v6)
{
    struct srv *srv = calloc(1, sizeof(*srv));
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 256;
    cfg.buf_count = 64;
    srv->loop = loop_new(&cfg);
    cr_assert_not_null(srv->loop);
    srv->ctx = server_ctx(client_ca);
    struct sockaddr_in a = loopback4(port);
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6,
                              .sin6_port = htons((uint16_t)port),
                              .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    srv->port = v6 ? loop_listen(srv->loop, (struct sockaddr *)&a6, sizeof(a6), &srv_ops, srv)
                   : loop_listen(srv->loop, (struct sockaddr *)&a, sizeof(a), &srv_ops, srv);
    if (srv->port < 0) {
        loop_free(srv->loop);
        tls_ctx_unref(srv->ctx);
        free(srv);
        return NULL;
    }
    test_thread_start(&srv->th, srv->loop);
    return srv;
}

static struct srv *srv_start(const char *client_ca, int port)
{
    struct srv *srv = srv_start_on(client_ca, port, false);
    cr_assert_not_null(srv, "listen on 127.0.0.1:%d failed", port);
    return srv;
}

static void srv_stop(struct srv *srv)
{
    cr_assert_eq(test_thread_stop(&srv->th), 0);
    loop_free(srv->loop);
    tls_ctx_unref(srv->ctx);
    free(srv);
}

static void srv_close_all_on_loop(struct loop *loop, void *arg)
{
    struct srv *srv = arg;
    for (int i = 0; i < SRV_MAX_CONNS; i++) {
        struct conn *c = conn_get(loop, srv->ids[i]);
        if (c)
            conn_close(c, CONN_CLOSE_LOCAL);
    }
}

/* A loopback port with nothing listening on it (bound then closed: connects are refused). */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback4(0);
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- the edge side: an upstream zone on its own loop, callbacks recorded ---- */

#define MAX_EVENTS 64

struct state_event {
    unsigned node;
    enum upstream_state st;
    enum tls_cause cause;
};

struct cli {
    struct loop *loop;
    struct test_thread th;
    struct upstream *u;
    struct upstream_cfg cfg;
    bool answer_pings; /* on_ping_due sends PING; an echoed PING marks the conn alive */
    pthread_mutex_t mu;
    struct state_event events[MAX_EVENTS];
    int n_events;
    char data[UPSTREAM_MAX_NODES][4096];
    size_t data_len[UPSTREAM_MAX_NODES];
    atomic_int pings, closed;
    atomic_int closed_cause; /* enum tls_cause of the last on_conn_closed (NONE: no diag) */
    char closed_detail[384];
};

static void cli_on_data(void *ctx, unsigned node, uint32_t conn_id, const char *p, size_t n)
{
    struct cli *cl = ctx;
    cr_assert_neq(conn_id, 0);
    if (n >= 4 && memcmp(p, "PING", 4) == 0) {
        upstream_alive(cl->u, conn_id);
        return;
    }
    pthread_mutex_lock(&cl->mu);
    size_t room = sizeof(cl->data[0]) - cl->data_len[node];
    size_t k = n < room ? n : room;
    memcpy(cl->data[node] + cl->data_len[node], p, k);
    cl->data_len[node] += k;
    pthread_mutex_unlock(&cl->mu);
}

static void cli_on_state(void *ctx, unsigned node, enum upstream_state st,
                         const struct tls_diag *diag)
{
    struct cli *cl = ctx;
    cr_assert_eq(st == UPSTREAM_FAILED, diag != NULL, "diag only with FAILED");
    pthread_mutex_lock(&cl->mu);
    if (cl->n_events < MAX_EVENTS)
        cl->events[cl->n_events++] =
            (struct state_event){node, st, diag ? diag->cause : TLS_CAUSE_NONE};
    pthread_mutex_unlock(&cl->mu);
}

static void cli_on_ping(void *ctx, unsigned node, uint32_t conn_id)
{
    (void)node;
    struct cli *cl = ctx;
    atomic_fetch_add(&cl->pings, 1);
    if (cl->answer_pings) {
        struct iovec iov = {"PING\r\n", 6};
        cr_assert_eq(upstream_send_on(cl->u, conn_id, &iov, 1), 6);
    }
}

static void cli_on_closed(void *ctx, unsigned node, uint32_t conn_id, const struct tls_diag *diag)
{
    (void)node;
    (void)conn_id;
    struct cli *cl = ctx;
    pthread_mutex_lock(&cl->mu);
    snprintf(cl->closed_detail, sizeof(cl->closed_detail), "%s", diag ? diag->detail : "");
    pthread_mutex_unlock(&cl->mu);
    atomic_store(&cl->closed_cause, diag ? (int)diag->cause : (int)TLS_CAUSE_NONE);
    atomic_fetch_add(&cl->closed, 1);
}

static const struct upstream_ops cli_ops = {.on_data = cli_on_data,
                                            .on_node_state = cli_on_state,
                                            .on_ping_due = cli_on_ping,
                                            .on_conn_closed = cli_on_closed};

static void cli_new_on_loop(struct loop *loop, void *arg)
{
    struct cli *cl = arg;
    cl->u = upstream_new(loop, &cl->cfg, &cli_ops, cl);
}

static void cli_free_on_loop(struct loop *loop, void *arg)
{
    (void)loop;
    struct cli *cl = arg;
    upstream_free(cl->u);
    cl->u = NULL;
}

/* A zone config with short timers; nodes added with cli_node(). */
static struct cli *cli_make(struct tls_ctx *tls, unsigned pool)
{
    struct cli *cl = calloc(1, sizeof(*cl));
    pthread_mutex_init(&cl->mu, NULL);
    cl->cfg = (struct upstream_cfg){.pool_size = pool,
                                    .connect_timeout_ms = 2000,
                                    .backoff_min_ms = 20,
                                    .backoff_max_ms = 160,
                                    .tls = tls};
    return cl;
}

static void cli_node_at(struct cli *cl, const char *host, int port, const char *name)
{
    cl->cfg.nodes[cl->cfg.n_nodes++] =
        (struct upstream_node_cfg){.host = host, .port = (uint16_t)port, .name = name};
}

static void cli_node(struct cli *cl, int port, const char *name)
{
    cli_node_at(cl, "127.0.0.1", port, name);
}

static void cli_start(struct cli *cl)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 256;
    cfg.buf_count = 64;
    cl->loop = loop_new(&cfg);
    cr_assert_not_null(cl->loop);
    test_thread_start(&cl->th, cl->loop);
    run_on(cl->loop, cli_new_on_loop, cl);
    cr_assert_not_null(cl->u, "upstream_new: %s", strerror(errno));
}

static void cli_stop(struct cli *cl)
{
    run_on(cl->loop, cli_free_on_loop, cl);
    cr_assert_eq(test_thread_stop(&cl->th), 0);
    loop_free(cl->loop);
    pthread_mutex_destroy(&cl->mu);
    free(cl);
}

struct status_call {
    struct cli *cl;
    unsigned node;
    struct upstream_node_status st;
};

static void status_on_loop(struct loop *loop, void *arg)
{
    (void)loop;
    struct status_call *sc = arg;
    upstream_node_status(sc->cl->u, sc->node, &sc->st);
}

static struct upstream_node_status node_status(struct cli *cl, unsigned node)
{
    struct status_call sc = {.cl = cl, .node = node};
    run_on(cl->loop, status_on_loop, &sc);
    return sc.st;
}

struct send_call {
    struct cli *cl;
    const char *msg;
    int rc;
};

static void send_on_loop(struct loop *loop, void *arg)
{
    (void)loop;
    struct send_call *s = arg;
    struct iovec iov[2] = {{(void *)s->msg, 8}, {(void *)(s->msg + 8), strlen(s->msg) - 8}};
    s->rc = upstream_send(s->cl->u, iov, 2);
}

struct pick_call {
    struct cli *cl;
    struct upstream_pick pick;
    int rc;
};

static void pick_on_loop(struct loop *loop, void *arg)
{
    (void)loop;
    struct pick_call *s = arg;
    struct iovec iov = {"OPTIONS sip:x SIP/2.0\r\n\r\n", 25};
    s->rc = upstream_send_pick(s->cl->u, &iov, 1, &s->pick);
}

static void shutdown_on_loop(struct loop *loop, void *arg)
{
    (void)loop;
    upstream_shutdown(((struct cli *)arg)->u);
}

/* Sends `msg` (at least 8 bytes, as two slices); returns upstream_send()'s result. */
static int cli_send(struct cli *cl, const char *msg)
{
    struct send_call s = {.cl = cl, .msg = msg};
    run_on(cl->loop, send_on_loop, &s);
    return s.rc;
}

/* Waits (bounded) until `node` has `up` connections up. */
static bool wait_up(struct cli *cl, unsigned node, unsigned up)
{
    for (int i = 0; i < WAIT_MS / 10; i++) {
        if (node_status(cl, node).conns_up >= up)
            return true;
        usleep(10000);
    }
    return false;
}

static bool wait_failures(struct cli *cl, unsigned node, uint64_t n)
{
    for (int i = 0; i < WAIT_MS / 10; i++) {
        if (node_status(cl, node).failures >= n)
            return true;
        usleep(10000);
    }
    return false;
}

static bool wait_data(struct cli *cl, unsigned node, const char *needle)
{
    for (int i = 0; i < WAIT_MS / 10; i++) {
        pthread_mutex_lock(&cl->mu);
        cl->data[node][sizeof(cl->data[0]) - 1] = '\0';
        bool found = memmem(cl->data[node], cl->data_len[node], needle, strlen(needle)) != NULL;
        pthread_mutex_unlock(&cl->mu);
        if (found)
            return true;
        usleep(10000);
    }
    return false;
}

static bool wait_atomic(atomic_int *v, int n)
{
    for (int i = 0; i < WAIT_MS / 10; i++) {
        if (atomic_load(v) >= n)
            return true;
        usleep(10000);
    }
    return false;
}

static int events_of(struct cli *cl, unsigned node, struct state_event *out, int cap)
{
    pthread_mutex_lock(&cl->mu);
    int k = 0;
    for (int i = 0; i < cl->n_events; i++)
        if (cl->events[i].node == node && k < cap)
            out[k++] = cl->events[i];
    pthread_mutex_unlock(&cl->mu);
    return k;
}

static struct tls_ctx *cctx;

static void setup(void)
{
    pki_init();
    cctx = client_ctx("client", 0);
}

static void teardown(void)
{
    tls_ctx_unref(cctx);
}

TestSuite(upstream, .init = setup, .fini = teardown, .timeout = 60);

Test(upstream, connects_a_pool_of_two_reports_up_once_and_moves_data_both_ways)
{
    struct srv *srv = srv_start("ca.crt", 0);
    struct cli *cl = cli_make(cctx, 2);
    cli_node(cl, srv->port, "ucm1.example.test");
    cli_start(cl);
    cr_assert(wait_up(cl, 0, 2), "pool did not come up");
    struct upstream_node_status st = node_status(cl, 0);
    cr_assert_eq(st.state, UPSTREAM_UP);
    cr_assert_eq(st.failures, 0);
    cr_assert_eq(atomic_load(&srv->handshakes), 2);

    cr_assert_eq(cli_send(cl, "REGISTER sip:example.test SIP/2.0\r\n\r\n"), 0);
    cr_assert(wait_data(cl, 0, "REGISTER sip:example.test"), "no echo through on_data");

    struct state_event ev[8];
    int n = events_of(cl, 0, ev, 8);
    cr_assert_eq(n, 1, "%d state callbacks, want 1", n);
    cr_assert_eq(ev[0].st, UPSTREAM_UP);
    cr_assert_str_eq(upstream_state_name(UPSTREAM_FAILED), "failed");
    cli_stop(cl);
    srv_stop(srv);
}

/* Issue 11: records received in one batch are all read, not the first 64 (the rest waited for
 * more bytes, which may never come). */
Test(upstream, reads_every_record_of_a_batch_of_two_hundred)
{
    struct srv *srv = srv_start("ca.crt", 0);
    struct cli *cl = cli_make(cctx, 1);
    cli_node(cl, srv->port, "ucm1.example.test");
    cli_start(cl);
    cr_assert(wait_up(cl, 0, 1), "not up");
    cr_assert_eq(cli_send(cl, "BURST of records"), 0); /* cli_send splits at 8 */
    cr_assert(wait_data(cl, 0, "END-OF-BURST"), "records after the 64th were not read");
    pthread_mutex_lock(&cl->mu);
    size_t bs = 0;
    for (size_t i = 0; i < cl->data_len[0]; i++)
        bs += cl->data[0][i] == 'b';
    pthread_mutex_unlock(&cl->mu);
    cr_assert_eq(bs, 200);
    cli_stop(cl);
    srv_stop(srv);
}

Test(upstream, says_why_its_record_layer_failed_an_established_connection)
{
    struct srv *srv = srv_start("ca.crt", 0);
    struct cli *cl = cli_make(cctx, 1);
    cli_node(cl, srv->port, "ucm1.example.test");
    cli_start(cl);
    cr_assert(wait_up(cl, 0, 1), "not up");
    run_on(srv->loop, srv_close_all_on_loop, srv); /* a clean close first: no diag */
    cr_assert(wait_atomic(&cl->closed, 1), "on_conn_closed not called");
    cr_assert_eq(atomic_load(&cl->closed_cause), TLS_CAUSE_NONE, "a plain close has no diag");
    cr_assert(wait_up(cl, 0, 1), "not up again");
    cr_assert_eq(cli_send(cl, "GARBAGE, please"), 0);
    cr_assert(wait_atomic(&cl->closed, 2), "the bad record did not end the connection");
    cr_assert_eq(atomic_load(&cl->closed_cause), TLS_CAUSE_PROTOCOL_ERROR, "cause %d",
                 atomic_load(&cl->closed_cause));
    pthread_mutex_lock(&cl->mu);
    cr_expect(strstr(cl->closed_detail, "record") != NULL, "detail: %s", cl->closed_detail);
    pthread_mutex_unlock(&cl->mu);
    cli_stop(cl);
    srv_stop(srv);
}

Test(upstream, reports_a_refusing_node_down_once_and_backs_off)
{
    struct cli *cl = cli_make(cctx, 2);
    cli_node(cl, closed_port(), "ucm1.example.test");
    cli_start(cl);
    cr_assert(wait_failures(cl, 0, 6));
    cr_assert_eq(cli_send(cl, "OPTIONS sip:x SIP/2.0\r\n\r\n"), -EHOSTUNREACH);
    struct upstream_node_status st = node_status(cl, 0);
    cr_assert_eq(st.state, UPSTREAM_DOWN);
    cr_assert_eq(st.last_errno, ECONNREFUSED);
    cr_assert_eq(st.last_diag.cause, TLS_CAUSE_NONE);
    uint64_t f0 = st.failures;
    /* backoff 20 ms doubling to 160 ms, two slots: well under 60 attempts in 1.5 s (without a
     * backoff a refused loopback connect would retry thousands of times) */
    usleep(1500 * 1000);
    uint64_t f1 = node_status(cl, 0).failures;
    cr_assert_gt(f1, f0, "stopped retrying");
    cr_assert_lt(f1 - f0, 60, "%llu attempts in 1.5 s: no backoff", (unsigned long long)(f1 - f0));
    struct state_event ev[8];
    int n = events_of(cl, 0, ev, 8);
    cr_assert_eq(n, 1, "%d state callbacks, want 1 (not one per retry)", n);
    cr_assert_eq(ev[0].st, UPSTREAM_DOWN);
    cli_stop(cl);
}

static void check_rejected_cert(uint16_t maxv, enum tls_cause want)
{
    struct srv *srv = srv_start("untrusted-ca.crt", 0); /* does not trust our CA */
    struct tls_ctx *c = client_ctx("client", maxv);
    struct cli *cl = cli_make(c, 2);
    cli_node(cl, srv->port, "ucm1.example.test");
    cli_start(cl);
    cr_assert(wait_failures(cl, 0, 4));
    struct upstream_node_status st = node_status(cl, 0);
    cr_assert_eq(st.state, UPSTREAM_FAILED);
    cr_assert_eq(st.conns_up, 0);
    cr_assert_eq(st.last_diag.cause, want, "cause %s (%s)", tls_cause_name(st.last_diag.cause),
                 st.last_diag.detail);
    struct state_event ev[8];
    int n = events_of(cl, 0, ev, 8);
    cr_assert_eq(n, 1, "%d state callbacks, want 1", n);
    cr_assert_eq(ev[0].st, UPSTREAM_FAILED);
    cr_assert_eq(ev[0].cause, want);
    cr_assert_eq(cli_send(cl, "REGISTER sip:x SIP/2.0\r\n\r\n"), -EHOSTUNREACH);
    cli_stop(cl);
    tls_ctx_unref(c);
    srv_stop(srv);
}

Test(upstream, fails_with_unknown_ca_when_the_server_rejects_our_certificate_tls13)
{
    check_rejected_cert(0, TLS_CAUSE_ALERT_UNKNOWN_CA);
}

Test(upstream, fails_with_unknown_ca_when_the_server_rejects_our_certificate_tls12)
{
    check_rejected_cert(TLS12, TLS_CAUSE_ALERT_UNKNOWN_CA);
}

Test(upstream, does_not_flap_up_on_every_retry_when_the_rejection_comes_late_tls13)
{
    struct srv *srv = srv_start("untrusted-ca.crt", 0); /* does not trust our CA */
    atomic_store(&srv->stall_ms, 300);                  /* its alert comes after the quiet time */
    struct cli *cl = cli_make(cctx, 1);
    cli_node(cl, srv->port, "ucm1.example.test");
    cli_start(cl);
    usleep(2500 * 1000); /* several attempts: 300 ms each plus a backoff of 20 to 160 ms */
    struct upstream_node_status st = node_status(cl, 0);
    cr_assert_eq(st.state, UPSTREAM_FAILED);
    cr_assert_eq(st.last_diag.cause, TLS_CAUSE_ALERT_UNKNOWN_CA, "cause %s",
                 tls_cause_name(st.last_diag.cause));
    cr_assert_gt(st.failures, 1, "%llu attempts failed", (unsigned long long)st.failures);
    struct state_event ev[16];
    int n = events_of(cl, 0, ev, 16), ups = 0;
    for (int i = 0; i < n; i++)
        ups += ev[i].st == UPSTREAM_UP;
    /* the first attempt may look up (nothing known against the node yet); retries must not */
    cr_assert_leq(ups, 1, "%d up reports in %d state callbacks", ups, n);
    cli_stop(cl);
    srv_stop(srv);
}

Test(upstream, fails_with_hostname_mismatch_on_a_wrong_server_name)
{
    struct srv *srv = srv_start("ca.crt", 0);
    struct cli *cl = cli_make(cctx, 1);
    cli_node(cl, srv->port, "ucm9.example.test");
    cli_start(cl);
    cr_assert(wait_failures(cl, 0, 3));
    struct upstream_node_status st = node_status(cl, 0);
    cr_assert_eq(st.state, UPSTREAM_FAILED);
    cr_assert_eq(st.last_diag.cause, TLS_CAUSE_PEER_HOSTNAME_MISMATCH);
    cr_assert_str_eq(st.last_diag.expected, "ucm9.example.test");
    struct state_event ev[8];
    cr_assert_eq(events_of(cl, 0, ev, 8), 1);
    cr_assert_eq(ev[0].cause, TLS_CAUSE_PEER_HOSTNAME_MISMATCH);
    cli_stop(cl);
    srv_stop(srv);
}

Test(upstream, fails_over_to_the_next_node_and_returns_to_the_first_when_it_is_back)
{
    int port0 = closed_port();
    struct srv *srv1 = srv_start("ca.crt", 0);
    struct cli *cl = cli_make(cctx, 2);
    cli_node(cl, port0, "ucm1.example.test");
    cli_node(cl, srv1->port, "ucm2.example.test");
    cli_start(cl);
    cr_assert(wait_up(cl, 1, 2));
    cr_assert(wait_failures(cl, 0, 2));
    cr_assert_eq(cli_send(cl, "REGISTER sip:one SIP/2.0\r\n\r\n"), 1);
    cr_assert(wait_data(cl, 1, "REGISTER sip:one"));

    struct srv *srv0 = srv_start("ca.crt", port0);
    cr_assert(wait_up(cl, 0, 1), "node 0 not used again after it came back");
    cr_assert_eq(cli_send(cl, "REGISTER sip:two SIP/2.0\r\n\r\n"), 0);
    cr_assert(wait_data(cl, 0, "REGISTER sip:two"));
    struct upstream_node_status st = node_status(cl, 0);
    cr_assert_eq(st.failures, 0, "a success resets the consecutive failures");
    struct state_event ev[8];
    int n = events_of(cl, 0, ev, 8);
    cr_assert_eq(n, 2);
    cr_assert_eq(ev[0].st, UPSTREAM_DOWN);
    cr_assert_eq(ev[1].st, UPSTREAM_UP);
    cli_stop(cl);
    srv_stop(srv0);
    srv_stop(srv1);
}

Test(upstream, says_which_connection_took_a_message_and_whether_it_failed_over)
{
    int port0 = closed_port();
    struct srv *srv1 = srv_start("ca.crt", 0);
    struct cli *cl = cli_make(cctx, 2);
    cli_node(cl, port0, "ucm1.example.test");
    cli_node(cl, srv1->port, "ucm2.example.test");
    cli_start(cl);
    cr_assert(wait_up(cl, 1, 2));
    cr_assert(wait_failures(cl, 0, 2));
    struct pick_call c = {.cl = cl};
    run_on(cl->loop, pick_on_loop, &c);
    cr_assert_eq(c.rc, 1);
    cr_assert_neq(c.pick.conn_id, 0);
    cr_assert(c.pick.failover, "node 0 is down: node 1 took it as a failover");

    struct srv *srv0 = srv_start("ca.crt", port0);
    cr_assert(wait_up(cl, 0, 1));
    struct pick_call d = {.cl = cl};
    run_on(cl->loop, pick_on_loop, &d);
    cr_assert_eq(d.rc, 0);
    cr_assert_not(d.pick.failover, "the preferred node took it");
    cr_assert_neq(d.pick.conn_id, c.pick.conn_id);
    cli_stop(cl);
    srv_stop(srv0);
    srv_stop(srv1);
}

Test(upstream, shuts_down_with_close_notify_and_no_callback_or_reconnect_after)
{
    struct srv *srv = srv_start("ca.crt", 0);
    struct cli *cl = cli_make(cctx, 2);
    cli_node(cl, srv->port, "ucm1.example.test");
    cli_start(cl);
    cr_assert(wait_up(cl, 0, 2));
    int accepted = atomic_load(&srv->accepted);
    run_on(cl->loop, shutdown_on_loop, cl);
    cr_assert(wait_atomic(&srv->close_notifies, 2), "each connection says close_notify (%d)",
              atomic_load(&srv->close_notifies));
    usleep(200000); /* ten times the backoff: a reconnect would have happened */
    cr_assert_eq(atomic_load(&cl->closed), 0, "no on_conn_closed after upstream_shutdown()");
    cr_assert_eq(atomic_load(&srv->accepted), accepted, "no reconnect");
    cli_stop(cl);
    srv_stop(srv);
}

Test(upstream, rotates_among_healthy_nodes_with_round_robin)
{
    struct srv *a = srv_start("ca.crt", 0), *b = srv_start("ca.crt", 0);
    struct cli *cl = cli_make(cctx, 1);
    cl->cfg.round_robin = true;
    cli_node(cl, a->port, "ucm1.example.test");
    cli_node(cl, b->port, "ucm2.example.test");
    cli_start(cl);
    cr_assert(wait_up(cl, 0, 1) && wait_up(cl, 1, 1));
    int first = cli_send(cl, "OPTIONS sip:rr SIP/2.0\r\n\r\n");
    cr_assert(first == 0 || first == 1);
    for (int i = 1; i < 6; i++)
        cr_assert_eq(cli_send(cl, "OPTIONS sip:rr SIP/2.0\r\n\r\n"), (first + i) % 2);
    cli_stop(cl);
    srv_stop(a);
    srv_stop(b);
}

Test(upstream, resumes_the_tls_session_when_it_reconnects)
{
    struct srv *srv = srv_start("ca.crt", 0);
    struct cli *cl = cli_make(cctx, 1);
    cli_node(cl, srv->port, "ucm1.example.test");
    cli_start(cl);
    cr_assert(wait_up(cl, 0, 1));
    cr_assert_eq(atomic_load(&srv->resumed), 0);
    run_on(srv->loop, srv_close_all_on_loop, srv);
    cr_assert(wait_atomic(&cl->closed, 1), "on_conn_closed not called");
    cr_assert(wait_atomic(&srv->handshakes, 2), "no reconnect");
    cr_assert(wait_up(cl, 0, 1));
    cr_assert_eq(atomic_load(&srv->resumed), 1, "the second connection did not resume");
    cr_assert_eq(cli_send(cl, "REGISTER sip:again SIP/2.0\r\n\r\n"), 0);
    cr_assert(wait_data(cl, 0, "REGISTER sip:again"));
    cli_stop(cl);
    srv_stop(srv);
}

Test(upstream, calls_ping_due_and_closes_a_connection_that_never_answers)
{
    struct srv *srv = srv_start("ca.crt", 0);
    srv->drop_pings = true;
    struct cli *cl = cli_make(cctx, 1);
    cl->answer_pings = true;
    cl->cfg.keepalive_interval_ms = 50;
    cli_node(cl, srv->port, "ucm1.example.test");
    cli_start(cl);
    cr_assert(wait_atomic(&cl->pings, 1), "on_ping_due never called");
    cr_assert(wait_atomic(&cl->closed, 1), "a silent connection was not closed");
    cr_assert(wait_atomic(&srv->handshakes, 2), "no reconnect after the dead connection");
    cli_stop(cl);
    srv_stop(srv);
}

Test(upstream, keeps_a_connection_whose_pings_are_answered)
{
    struct srv *srv = srv_start("ca.crt", 0);
    struct cli *cl = cli_make(cctx, 1);
    cl->answer_pings = true;
    cl->cfg.keepalive_interval_ms = 50;
    cli_node(cl, srv->port, "ucm1.example.test");
    cli_start(cl);
    cr_assert(wait_atomic(&cl->pings, 8), "pings stopped");
    cr_assert_eq(atomic_load(&cl->closed), 0, "an answering connection was closed");
    cr_assert_eq(atomic_load(&srv->accepted), 1);
    cli_stop(cl);
    srv_stop(srv);
}

Test(upstream, frees_with_connections_up_and_handshaking_without_callbacks_after)
{
    struct srv *srv = srv_start("ca.crt", 0);
    for (int round = 0; round < 5; round++) {
        struct cli *cl = cli_make(cctx, 4);
        cli_node(cl, srv->port, "ucm1.example.test");
        cli_node(cl, closed_port(), "ucm2.example.test");
        cli_start(cl);
        if (round % 2)
            cr_assert(wait_up(cl, 0, 4));
        int closed = atomic_load(&cl->closed);
        cli_stop(cl); /* ASan: nothing left behind, no callback into freed state */
        (void)closed;
    }
    srv_stop(srv);
}

Test(upstream, reconnects_at_once_when_a_long_lived_connection_closes)
{
    struct srv *srv = srv_start("ca.crt", 0);
    struct cli *cl = cli_make(cctx, 1);
    cl->cfg.backoff_min_ms = cl->cfg.backoff_max_ms = 60000; /* a backoff would outlast WAIT_MS */
    cli_node(cl, srv->port, "ucm1.example.test");
    cli_start(cl);
    cr_assert(wait_up(cl, 0, 1));
    usleep(2300 * 1000); /* up longer than UPSTREAM_STABLE_MS (2 s) */
    run_on(srv->loop, srv_close_all_on_loop, srv);
    cr_assert(wait_atomic(&srv->handshakes, 2), "no immediate reconnect");
    cr_assert(wait_up(cl, 0, 1));
    cli_stop(cl);
    srv_stop(srv);
}

Test(upstream, backs_off_after_a_connection_that_closes_at_once)
{
    struct srv *srv = srv_start("ca.crt", 0);
    struct cli *cl = cli_make(cctx, 1);
    cl->cfg.backoff_min_ms = cl->cfg.backoff_max_ms = 60000;
    cli_node(cl, srv->port, "ucm1.example.test");
    cli_start(cl);
    cr_assert(wait_up(cl, 0, 1));
    run_on(srv->loop, srv_close_all_on_loop, srv);
    cr_assert(wait_atomic(&cl->closed, 1));
    usleep(300 * 1000);
    cr_assert_eq(atomic_load(&srv->accepted), 1, "reconnected without a backoff");
    struct upstream_node_status st = node_status(cl, 0);
    cr_assert_eq(st.state, UPSTREAM_DOWN);
    cr_assert_eq(st.conns_up + st.conns_connecting, 0);
    struct state_event ev[8];
    int n = events_of(cl, 0, ev, 8);
    cr_assert_eq(n, 2);
    cr_assert_eq(ev[0].st, UPSTREAM_UP);
    cr_assert_eq(ev[1].st, UPSTREAM_DOWN);
    cli_stop(cl);
    srv_stop(srv);
}

Test(upstream, fails_with_timeout_when_the_server_never_answers_the_handshake)
{
    /* a listening socket nobody accepts from: TCP completes in the backlog, TLS never does */
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback4(0);
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(lfd, 16), 0);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    struct cli *cl = cli_make(cctx, 1);
    cl->cfg.connect_timeout_ms = 150;
    cli_node(cl, ntohs(a.sin_port), "ucm1.example.test");
    cli_start(cl);
    cr_assert(wait_failures(cl, 0, 2));
    struct upstream_node_status st = node_status(cl, 0);
    cr_assert_eq(st.state, UPSTREAM_FAILED);
    cr_assert_eq(st.last_diag.cause, TLS_CAUSE_TIMEOUT, "cause %s",
                 tls_cause_name(st.last_diag.cause));
    struct state_event ev[8];
    cr_assert_eq(events_of(cl, 0, ev, 8), 1);
    cli_stop(cl);
    close(lfd);
}

struct set_tls_call {
    struct cli *cl;
    struct tls_ctx *ctx;
};

static void set_tls_on_loop(struct loop *loop, void *arg)
{
    (void)loop;
    struct set_tls_call *c = arg;
    upstream_set_tls(c->cl->u, c->ctx);
}

Test(upstream, uses_a_swapped_in_context_for_new_connections_only)
{
    struct srv *srv = srv_start("ca.crt", 0);
    struct cli *cl = cli_make(cctx, 1);
    cli_node(cl, srv->port, "ucm1.example.test");
    cli_start(cl);
    cr_assert(wait_up(cl, 0, 1));
    /* a context whose certificate the server does not trust: the live connection keeps working,
     * the next one fails with unknown_ca (no resumption of the old session to hide it) */
    struct tls_ctx *bad = client_ctx("untrusted", 0);
    struct set_tls_call c = {cl, bad};
    run_on(cl->loop, set_tls_on_loop, &c);
    tls_ctx_unref(bad); /* the zone holds its own reference */
    cr_assert_eq(cli_send(cl, "REGISTER sip:still SIP/2.0\r\n\r\n"), 0);
    cr_assert(wait_data(cl, 0, "REGISTER sip:still"));
    run_on(srv->loop, srv_close_all_on_loop, srv);
    cr_assert(wait_failures(cl, 0, 1));
    struct upstream_node_status st = node_status(cl, 0);
    cr_assert_eq(st.last_diag.cause, TLS_CAUSE_ALERT_UNKNOWN_CA, "cause %s",
                 tls_cause_name(st.last_diag.cause));
    cr_assert_eq(atomic_load(&srv->resumed), 0);
    cli_stop(cl);
    srv_stop(srv);
}

Test(upstream, connects_to_an_ipv6_literal)
{
    struct srv *srv = srv_start_on("ca.crt", 0, true);
    if (!srv)
        cr_skip_test("no IPv6 loopback");
    struct cli *cl = cli_make(cctx, 1);
    cli_node_at(cl, "[::1]", srv->port, "ucm1.example.test");
    cli_start(cl);
    cr_assert(wait_up(cl, 0, 1));
    cr_assert_eq(cli_send(cl, "REGISTER sip:six SIP/2.0\r\n\r\n"), 0);
    cr_assert(wait_data(cl, 0, "REGISTER sip:six"));
    cli_stop(cl);
    srv_stop(srv);
}

Test(upstream, reports_down_once_when_the_server_goes_away_and_keeps_retrying)
{
    struct srv *srv = srv_start("ca.crt", 0);
    struct cli *cl = cli_make(cctx, 2);
    cli_node(cl, srv->port, "ucm1.example.test");
    cli_start(cl);
    cr_assert(wait_up(cl, 0, 2));
    srv_stop(srv); /* closes both conns and the listener: reconnects are refused */
    cr_assert(wait_atomic(&cl->closed, 2));
    cr_assert(wait_failures(cl, 0, 4));
    struct upstream_node_status st = node_status(cl, 0);
    cr_assert_eq(st.state, UPSTREAM_DOWN);
    cr_assert_eq(st.conns_up, 0);
    cr_assert_eq(st.last_errno, ECONNREFUSED);
    struct state_event ev[8];
    int n = events_of(cl, 0, ev, 8);
    cr_assert_eq(n, 2, "%d state callbacks, want UP then DOWN", n);
    cr_assert_eq(ev[0].st, UPSTREAM_UP);
    cr_assert_eq(ev[1].st, UPSTREAM_DOWN);
    cr_assert_eq(cli_send(cl, "REGISTER sip:gone SIP/2.0\r\n\r\n"), -EHOSTUNREACH);
    cli_stop(cl);
}

Test(upstream, clamps_the_pool_to_sixteen_connections_per_node)
{
    struct srv *srv = srv_start("ca.crt", 0);
    struct cli *cl = cli_make(cctx, 40);
    cli_node(cl, srv->port, "ucm1.example.test");
    cli_start(cl);
    cr_assert(wait_up(cl, 0, 16));
    usleep(50000);
    struct upstream_node_status st = node_status(cl, 0);
    cr_assert_eq(st.conns_up, 16);
    cr_assert_eq(st.conns_connecting, 0);
    cr_assert_eq(atomic_load(&srv->accepted), 16);
    cr_assert_eq(upstream_node_count(cl->u), 1);
    cr_assert_str_eq(upstream_state_name(UPSTREAM_STATE_COUNT), "?");
    cli_stop(cl);
    srv_stop(srv);
}

Test(upstream, rejects_a_bad_node_address)
{
    struct cli *cl = cli_make(cctx, 1);
    cl->cfg.nodes[cl->cfg.n_nodes++] =
        (struct upstream_node_cfg){.host = "ucm1.example.test", .port = 5091};
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 16;
    struct loop *loop = loop_new(&cfg);
    errno = 0;
    cr_assert_null(upstream_new(loop, &cl->cfg, &cli_ops, cl), "a DNS name is not an IP literal");
    cr_assert_eq(errno, EINVAL);
    loop_free(loop);
    pthread_mutex_destroy(&cl->mu);
    free(cl);
}
