// SPDX-License-Identifier: MIT
// Sans-IO Redis client tests: encoding, split replies, ordering, deadlines, breaker, reconnect,
// pub/sub; the socket tests drive the client with poll(2) against the fixture's redis-server.
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/redis.h"

struct got {
    int calls;
    int err;
    int type;
    char str[256];
    long long integer;
};

static void on_reply(void *arg, const redisReply *rp, int err)
{
    struct got *g = arg;
    g->calls++;
    g->err = err;
    g->type = rp ? rp->type : -1;
    if (rp && (rp->type == REDIS_REPLY_STRING || rp->type == REDIS_REPLY_STATUS ||
               rp->type == REDIS_REPLY_ERROR))
        snprintf(g->str, sizeof(g->str), "%.*s", (int)rp->len, rp->str);
    if (rp && rp->type == REDIS_REPLY_INTEGER)
        g->integer = rp->integer;
}

static int cmd(struct cache_redis *r, int64_t now, struct got *g, int argc, const char **argv)
{
    size_t lens[8];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return cache_redis_command(r, argc, argv, lens, now, on_reply, g);
}

static uint16_t redis_port(void)
{
    const char *p = getenv("SIPEDGE_REDIS_PORT");
    cr_assert(p, "SIPEDGE_REDIS_PORT not set (run through ctest)");
    return (uint16_t)atoi(p);
}

/* Polls `r` until *done is non-zero or `max_ms` pass; returns the final monotonic time. */
static int64_t drive(struct cache_redis *r, const int *done, int max_ms)
{
    int64_t t0 = cache_redis_now_ms(), now = t0;
    while (!*done && now - t0 < max_ms) {
        cache_redis_fd_tick(r, now);
        struct pollfd pfd = {.fd = cache_redis_fd(r), .events = cache_redis_fd_events(r)};
        int n = poll(&pfd, pfd.fd >= 0 ? 1 : 0, 2);
        now = cache_redis_now_ms();
        if (n > 0)
            cache_redis_fd_io(r, pfd.revents, now);
    }
    cache_redis_fd_tick(r, now);
    return now;
}

static struct cache_redis *connect_fixture(void)
{
    struct cache_redis *r = cache_redis_new(&(struct cache_redis_config){.timeout_ms = 500}, 1);
    cr_assert(r);
    cr_assert_eq(cache_redis_fd_connect(r, "127.0.0.1", redis_port(), cache_redis_now_ms()), 0);
    int up = 0;
    int64_t t0 = cache_redis_now_ms();
    while (!up && cache_redis_now_ms() - t0 < 2000) {
        drive(r, &up, 5);
        up = cache_redis_conn_state(r) == CACHE_REDIS_UP;
    }
    cr_assert(up, "no connection to the fixture redis-server");
    return r;
}

Test(redis_client, encodes_commands_as_resp_and_matches_split_replies)
{
    struct cache_redis *r = cache_redis_new(NULL, 1);
    struct got g = {0};
    cr_assert_eq(cmd(r, 0, &g, 2, (const char *[]){"GET", "k"}), -EAGAIN, "down: refused");
    cache_redis_connected(r, 0);
    cr_assert_eq(cmd(r, 0, &g, 2, (const char *[]){"GET", "k"}), 0);
    struct slice out = cache_redis_out(r);
    cr_assert(slice_eq(out, SLICE_LIT("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")));
    cache_redis_sent(r, out.len);
    cr_assert_eq(cache_redis_out(r).len, 0);

    const char *rep = "$5\r\nhello\r\n";
    for (size_t i = 0; i < strlen(rep); i++) {
        cr_assert_eq(g.calls, 0, "answered early at byte %zu", i);
        cr_assert_eq(cache_redis_feed(r, rep + i, 1, 1), 0);
    }
    cr_assert_eq(g.calls, 1);
    cr_assert_eq(g.err, 0);
    cr_assert_str_eq(g.str, "hello");
    cache_redis_free(r);
}

Test(redis_client, refuses_a_huge_array_header_without_allocating_it)
{
    /* fuzz_redis_feed found this: hiredis 0.14 callocs the element table on "*<n>". */
    struct cache_redis *r = cache_redis_new(NULL, 1);
    struct got g = {0};
    cache_redis_connected(r, 0);
    cr_assert_eq(cmd(r, 0, &g, 2, (const char *[]){"GET", "k"}), 0);
    const char *rep = "*666666660\r\n$1\r\nx\r\n";
    cr_assert_lt(cache_redis_feed(r, rep, strlen(rep), 1), 0);
    cr_assert_eq(g.calls, 1, "the pending command is failed, not lost");
    cr_assert_neq(g.err, 0);
    cr_assert_neq(cache_redis_conn_state(r), CACHE_REDIS_UP);
    cache_redis_free(r);
}

Test(redis_client, still_reads_the_small_arrays_it_expects)
{
    struct cache_redis *r = cache_redis_new(NULL, 1);
    struct got g = {0};
    cache_redis_connected(r, 0);
    cr_assert_eq(cmd(r, 0, &g, 3, (const char *[]){"MGET", "a", "b"}), 0);
    const char *rep = "*2\r\n$1\r\nx\r\n$-1\r\n";
    cr_assert_eq(cache_redis_feed(r, rep, strlen(rep), 1), 0);
    cr_assert_eq(g.calls, 1);
    cr_assert_eq(g.err, 0);
    cr_assert_eq(g.type, REDIS_REPLY_ARRAY);
    cache_redis_free(r);
}

Test(redis_client, answers_pipelined_commands_in_order)
{
    struct cache_redis *r = cache_redis_new(NULL, 1);
    struct got g[3] = {0};
    cache_redis_connected(r, 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(cmd(r, 0, &g[i], 1, (const char *[]){"PING"}), 0);
    const char *rep = "+A\r\n:7\r\n-ERR nope\r\n";
    cr_assert_eq(cache_redis_feed(r, rep, strlen(rep), 1), 0);
    cr_assert_str_eq(g[0].str, "A");
    cr_assert_eq(g[1].integer, 7);
    cr_assert_eq(g[2].type, REDIS_REPLY_ERROR);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(g[i].calls, 1);
    cache_redis_free(r);
}

Test(redis_client, times_out_once_and_drops_the_late_reply)
{
    struct cache_redis *r = cache_redis_new(&(struct cache_redis_config){.timeout_ms = 5}, 1);
    struct got a = {0}, b = {0};
    cache_redis_connected(r, 0);
    cr_assert_eq(cmd(r, 100, &a, 1, (const char *[]){"PING"}), 0);
    cr_assert_eq(cache_redis_tick(r, 104), 105);
    cr_assert_eq(a.calls, 0);
    cache_redis_tick(r, 105);
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(a.err, -ETIMEDOUT);
    cache_redis_tick(r, 200);
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(cmd(r, 200, &b, 1, (const char *[]){"PING"}), 0);
    cr_assert_eq(cache_redis_feed(r, "+late\r\n+mine\r\n", 14, 201), 0);
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(b.calls, 1);
    cr_assert_str_eq(b.str, "mine");
    cache_redis_free(r);
}

Test(redis_client, opens_the_breaker_after_consecutive_failures_then_half_opens)
{
    struct cache_redis_config cfg = {
        .timeout_ms = 5, .breaker_failures = 3, .backoff_min_ms = 100, .backoff_max_ms = 400};
    struct cache_redis *r = cache_redis_new(&cfg, 1);
    struct got g[8] = {0};
    cache_redis_connected(r, 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(cmd(r, 0, &g[i], 1, (const char *[]){"PING"}), 0);
    cache_redis_tick(r, 10);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(g[i].err, -ETIMEDOUT);
    cr_assert_eq(cache_redis_breaker_state(r), CACHE_REDIS_OPEN);
    cr_assert_eq(cache_redis_conn_state(r), CACHE_REDIS_CLOSE_WANTED, "hung connection dropped");
    cr_assert_eq(cmd(r, 11, &g[3], 1, (const char *[]){"PING"}), -EAGAIN);
    cache_redis_disconnected(r, 11);
    cr_assert_not(cache_redis_want_connect(r, 20), "no reconnect while open");
    /* jitter keeps the first period within [50, 100] ms */
    cr_assert(cache_redis_want_connect(r, 111));
    cache_redis_tick(r, 111);
    cr_assert_eq(cache_redis_breaker_state(r), CACHE_REDIS_HALF_OPEN);
    cache_redis_connected(r, 112);
    cr_assert_eq(cmd(r, 112, &g[4], 1, (const char *[]){"PING"}), 0, "the trial");
    cr_assert_eq(cmd(r, 112, &g[5], 1, (const char *[]){"PING"}), -EAGAIN, "one trial only");
    /* the trial fails: open again, for a doubled period (within [100, 200]) */
    cache_redis_tick(r, 120);
    cr_assert_eq(g[4].err, -ETIMEDOUT);
    cr_assert_eq(cache_redis_breaker_state(r), CACHE_REDIS_OPEN);
    cache_redis_disconnected(r, 120);
    cr_assert_not(cache_redis_want_connect(r, 219));
    cr_assert(cache_redis_want_connect(r, 321));
    cache_redis_tick(r, 321);
    cache_redis_connected(r, 321);
    cr_assert_eq(cmd(r, 321, &g[6], 1, (const char *[]){"PING"}), 0);
    cr_assert_eq(cache_redis_feed(r, "+PONG\r\n", 7, 322), 0);
    cr_assert_eq(cache_redis_breaker_state(r), CACHE_REDIS_CLOSED, "a good trial closes it");
    cr_assert_eq(cmd(r, 322, &g[7], 1, (const char *[]){"PING"}), 0);
    cr_assert_eq(cache_redis_stats(r)->breaker_opens, 2);
    cache_redis_free(r);
}

Test(redis_client, fails_pending_commands_on_disconnect_and_on_free)
{
    struct cache_redis *r = cache_redis_new(NULL, 1);
    struct got a = {0}, b = {0};
    cache_redis_connected(r, 0);
    cmd(r, 0, &a, 1, (const char *[]){"PING"});
    cache_redis_disconnected(r, 1);
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(a.err, -ECONNRESET);
    cr_assert_eq(cache_redis_out(r).len, 0, "unsent bytes dropped");
    cache_redis_connected(r, 2);
    cmd(r, 2, &b, 1, (const char *[]){"PING"});
    cache_redis_free(r);
    cr_assert_eq(b.calls, 1);
    cr_assert_eq(b.err, -ECANCELED);
}

Test(redis_client, treats_garbage_as_a_protocol_error)
{
    struct cache_redis *r = cache_redis_new(NULL, 1);
    struct got a = {0};
    cache_redis_connected(r, 0);
    cmd(r, 0, &a, 1, (const char *[]){"PING"});
    cr_assert_eq(cache_redis_feed(r, "?bogus\r\n", 8, 1), -EPROTO);
    cr_assert_eq(a.err, -ECONNRESET);
    cr_assert_eq(cache_redis_conn_state(r), CACHE_REDIS_CLOSE_WANTED);
    cache_redis_free(r);
}

Test(redis_client, round_trips_set_and_get_over_a_real_socket)
{
    struct cache_redis *r = connect_fixture();
    struct got s = {0}, g = {0};
    int64_t now = cache_redis_now_ms();
    cr_assert_eq(
        cmd(r, now, &s, 5, (const char *[]){"SET", "sipedge:test:rt", "v\r\n1", "EX", "5"}), 0);
    cr_assert_eq(cmd(r, now, &g, 2, (const char *[]){"GET", "sipedge:test:rt"}), 0);
    drive(r, &g.calls, 2000);
    cr_assert_eq(s.calls, 1);
    cr_assert_str_eq(s.str, "OK");
    cr_assert_eq(g.calls, 1);
    cr_assert_eq(g.err, 0);
    cr_assert_str_eq(g.str, "v\r\n1");
    cache_redis_free(r);
}

struct pushes {
    int n;
    char last[64];
};

static void on_push(void *arg, const redisReply *rp)
{
    struct pushes *p = arg;
    p->n++;
    const redisReply *m = rp->element[rp->elements - 1];
    snprintf(p->last, sizeof(p->last), "%.*s", (int)m->len, m->str);
}

Test(redis_client, delivers_pubsub_messages_to_the_push_handler)
{
    struct cache_redis *sub = connect_fixture(), *pub = connect_fixture();
    struct pushes p = {0};
    struct got s = {0}, n = {0};
    cache_redis_set_push(sub, on_push, &p);
    cmd(sub, cache_redis_now_ms(), &s, 2, (const char *[]){"SUBSCRIBE", "sipedge:test:chan"});
    drive(sub, &s.calls, 2000);
    cr_assert_eq(s.err, 0);
    cr_assert_eq(s.type, REDIS_REPLY_ARRAY, "the subscribe confirmation answers SUBSCRIBE");
    cmd(pub, cache_redis_now_ms(), &n, 3, (const char *[]){"PUBLISH", "sipedge:test:chan", "hi"});
    drive(pub, &n.calls, 2000);
    cr_assert_eq(n.integer, 1, "one subscriber");
    drive(sub, &p.n, 2000);
    cr_assert_eq(p.n, 1);
    cr_assert_str_eq(p.last, "hi");
    cache_redis_free(sub);
    cache_redis_free(pub);
}

Test(redis_client, times_out_against_a_server_that_never_answers_and_stops_sending)
{
    /* A listening socket that nobody reads: connect succeeds (backlog), replies never come. */
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    cr_assert_eq(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(ls, 8), 0);
    getsockname(ls, (struct sockaddr *)&a, &al);

    struct cache_redis_config cfg = {.timeout_ms = 5, .breaker_failures = 2, .backoff_min_ms = 50};
    struct cache_redis *r = cache_redis_new(&cfg, 3);
    cr_assert_eq(cache_redis_fd_connect(r, "127.0.0.1", ntohs(a.sin_port), cache_redis_now_ms()),
                 0);
    int up = 0;
    for (int i = 0; i < 100 && !up; i++) {
        drive(r, &up, 5);
        up = cache_redis_conn_state(r) == CACHE_REDIS_UP;
    }
    cr_assert(up);
    struct got g[2] = {0};
    cr_assert_eq(cmd(r, cache_redis_now_ms(), &g[0], 1, (const char *[]){"PING"}), 0);
    cr_assert_eq(cmd(r, cache_redis_now_ms(), &g[1], 1, (const char *[]){"PING"}), 0);
    drive(r, &g[1].calls, 2000);
    cr_assert_eq(g[0].err, -ETIMEDOUT);
    cr_assert_eq(g[1].err, -ETIMEDOUT);
    cr_assert_eq(cache_redis_breaker_state(r), CACHE_REDIS_OPEN);
    cr_assert_eq(cache_redis_fd(r), -1, "the hung connection was closed");
    cr_assert_not(cache_redis_usable(r, cache_redis_now_ms()));
    cache_redis_free(r);
    close(ls);
}
