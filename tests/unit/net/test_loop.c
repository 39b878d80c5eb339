// SPDX-License-Identifier: MIT
// net/loop.c: ring setup and features, timers (order, ties, cancel, re-arm), cross-thread
// messages through MSG_RING and the eventfd queue, stop from another thread, worker groups.
#include <criterion/criterion.h>
#include <stdlib.h>

#include "net/loop_priv.h"
#include "net_test_util.h"

static struct loop *small_loop(unsigned flags)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 16;
    cfg.flags = flags;
    struct loop *loop = loop_new(&cfg);
    cr_assert_not_null(loop, "loop_new: %s", strerror(errno));
    return loop;
}

Test(loop, rejects_a_bad_config)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.buf_count = 100; /* not a power of 2 */
    errno = 0;
    cr_assert_null(loop_new(&cfg));
    cr_assert_eq(errno, EINVAL);
    loop_cfg_default(&cfg);
    cfg.out_high = cfg.out_cap + 1;
    cr_assert_null(loop_new(&cfg));
}

Test(loop, uses_single_issuer_and_deferred_task_run_when_the_kernel_has_them)
{
    struct loop *loop = small_loop(0);
    unsigned f = loop_features(loop);
    loop_free(loop);
    if (!(f & LOOP_FEAT_DEFER_TASKRUN))
        cr_skip_test("kernel without IORING_SETUP_DEFER_TASKRUN");
    cr_assert(f & LOOP_FEAT_SINGLE_ISSUER);
    struct loop *plain = small_loop(LOOP_CFG_F_NO_DEFER_TASKRUN);
    cr_assert_eq(loop_features(plain) & (LOOP_FEAT_DEFER_TASKRUN | LOOP_FEAT_SINGLE_ISSUER), 0);
    loop_free(plain);
}

/* ---- timers ---- */

#define NTIMERS 400

struct timer_case {
    struct loop_timer t[NTIMERS];
    struct loop_timer stop;
    int fired[NTIMERS];
    int nfired;
    uint64_t fired_at_deadline[NTIMERS];
};

static struct timer_case *tc_of(struct loop *loop)
{
    return loop_user(loop);
}

static void record_fire(struct loop *loop, struct loop_timer *t)
{
    struct timer_case *tc = tc_of(loop);
    int i = (int)(t - tc->t);
    cr_assert_leq(t->deadline_ms, loop_now_ms(loop), "fired early");
    tc->fired_at_deadline[tc->nfired] = t->deadline_ms;
    tc->fired[tc->nfired++] = i;
}

static void stop_cb(struct loop *loop, struct loop_timer *t)
{
    (void)t;
    loop_stop(loop);
}

Test(loop, fires_timers_in_deadline_then_arm_order_and_skips_cancelled_ones)
{
    struct loop *loop = small_loop(0);
    struct timer_case *tc = calloc(1, sizeof(*tc));
    loop_set_user(loop, tc);
    uint64_t now = loop_clock_ms();
    unsigned seed = 42;
    for (int i = 0; i < NTIMERS; i++)
        cr_assert_eq(loop_timer_arm(loop, &tc->t[i], now + rand_r(&seed) % 40, record_fire), 0);
    /* cancel every third, re-arm every fifth further out (it moves behind the others) */
    bool cancelled[NTIMERS] = {0};
    for (int i = 0; i < NTIMERS; i += 3) {
        loop_timer_cancel(loop, &tc->t[i]);
        cancelled[i] = true;
        cr_assert_not(loop_timer_armed(&tc->t[i]));
    }
    for (int i = 1; i < NTIMERS; i += 5)
        if (!cancelled[i])
            loop_timer_arm(loop, &tc->t[i], now + 45, record_fire);
    loop_timer_arm(loop, &tc->stop, now + 60, stop_cb);
    cr_assert_eq(loop_run(loop), 0);

    int expected = 0;
    for (int i = 0; i < NTIMERS; i++)
        expected += !cancelled[i];
    cr_assert_eq(tc->nfired, expected);
    for (int k = 0; k < tc->nfired; k++) {
        cr_assert_not(cancelled[tc->fired[k]], "cancelled timer %d fired", tc->fired[k]);
        if (k == 0)
            continue;
        uint64_t a = tc->fired_at_deadline[k - 1], b = tc->fired_at_deadline[k];
        cr_assert_leq(a, b, "out of deadline order at %d", k);
        if (a == b) /* ties in arm order */
            cr_assert_lt(tc->t[tc->fired[k - 1]].seq, tc->t[tc->fired[k]].seq);
    }
    cr_assert_eq(loop_stats(loop)->timers_fired, (uint64_t)expected + 1);
    loop_free(loop);
    free(tc);
}

struct rearm_case {
    struct loop_timer t;
    int count;
};

static void rearm_now(struct loop *loop, struct loop_timer *t)
{
    struct rearm_case *rc = loop_user(loop);
    if (++rc->count < 5)
        loop_timer_arm(loop, t, loop_now_ms(loop), rearm_now); /* due again at once */
    else
        loop_stop(loop);
}

Test(loop, runs_a_timer_rearmed_for_now_on_the_next_turn)
{
    struct loop *loop = small_loop(0);
    struct rearm_case rc = {0};
    loop_set_user(loop, &rc);
    loop_timer_arm(loop, &rc.t, loop_clock_ms(), rearm_now);
    cr_assert_eq(loop_run(loop), 0);
    cr_assert_eq(rc.count, 5);
    loop_free(loop);
}

/* ---- messages ---- */

struct msg_case {
    struct loop *other;
    atomic_int hops;
    atomic_uint ran_on[2];
};

static void hop_second(struct loop *loop, void *arg)
{
    struct msg_case *m = arg;
    atomic_store(&m->ran_on[1], loop_index(loop) + 1);
    atomic_fetch_add(&m->hops, 1);
}

static void hop_first(struct loop *loop, void *arg)
{
    struct msg_case *m = arg;
    atomic_store(&m->ran_on[0], loop_index(loop) + 1);
    atomic_fetch_add(&m->hops, 1);
    if (loop_current() != loop)
        return;                         /* the test sees hops stay at 1 */
    loop_post(m->other, hop_second, m); /* loop thread to loop thread */
}

static void messages_run(unsigned flags, struct loop_stats *second)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 16;
    cfg.flags = flags;
    struct loop_group *g = loop_group_new(&cfg, 2);
    cr_assert_not_null(g);
    cr_assert_eq(loop_group_start(g, true), 0);
    struct msg_case m = {.other = loop_group_loop(g, 1)};
    /* both rings enabled (a MSG_RING to a ring not yet running fails -EBADFD and the message
     * takes the eventfd path instead) */
    stats_of(loop_group_loop(g, 0));
    stats_of(loop_group_loop(g, 1));
    for (int i = 0; i < 3; i++) {
        atomic_store(&m.hops, 0);
        cr_assert_eq(loop_post(loop_group_loop(g, 0), hop_first, &m), 0); /* from a plain thread */
        for (int k = 0; k < WAIT_MS / 5 && atomic_load(&m.hops) < 2; k++)
            usleep(5000);
        cr_assert_eq(atomic_load(&m.hops), 2);
        cr_assert_eq(atomic_load(&m.ran_on[0]), 1, "first hop on worker 0");
        cr_assert_eq(atomic_load(&m.ran_on[1]), 2, "second hop on worker 1");
    }
    *second = stats_of(loop_group_loop(g, 1));
    loop_group_free(g);
}

Test(loop, delivers_cross_thread_messages_through_msg_ring)
{
    struct loop *probe = small_loop(0);
    unsigned f = loop_features(probe);
    loop_free(probe);
    if (!(f & LOOP_FEAT_MSG_RING))
        cr_skip_test("kernel without IORING_OP_MSG_RING");
    struct loop_stats s;
    messages_run(0, &s);
    cr_assert_geq(s.msgs_via_ring, 3);
}

Test(loop, delivers_cross_thread_messages_through_the_eventfd_queue)
{
    struct loop_stats s;
    messages_run(LOOP_CFG_F_NO_MSG_RING, &s);
    cr_assert_eq(s.msgs_via_ring, 0);
    cr_assert_geq(s.msgs_received, 3);
}

static void count_msg(struct loop *loop, void *arg)
{
    (void)loop;
    atomic_fetch_add((atomic_int *)arg, 1);
}

Test(loop, stops_from_another_thread_and_drops_unrun_messages_on_free)
{
    struct loop *loop = small_loop(0);
    struct test_thread t;
    test_thread_start(&t, loop);
    atomic_int n = 0;
    for (int i = 0; i < 100; i++)
        cr_assert_eq(loop_post(loop, count_msg, &n), 0);
    struct loop_stats s = stats_of(loop); /* runs after the 100 (same queue, in order) */
    cr_assert_eq(atomic_load(&n), 100);
    cr_assert_geq(s.msgs_received, 100);
    cr_assert_eq(test_thread_stop(&t), 0);
    loop_post(loop, count_msg, &n); /* never runs: freed with the loop (ASan checks the leak) */
    loop_free(loop);
    cr_assert_eq(atomic_load(&n), 100);
}

Test(loop, group_defaults_to_one_worker_per_online_cpu)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 16;
    cfg.buf_count = 8;
    struct loop_group *g = loop_group_new(&cfg, 0);
    cr_assert_not_null(g);
    cr_assert_eq(loop_group_size(g), (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
    for (unsigned i = 0; i < loop_group_size(g); i++)
        cr_assert_eq(loop_index(loop_group_loop(g, i)), i);
    loop_group_free(g);
}

Test(loop, listens_on_ipv6_loopback)
{
    struct loop *loop = small_loop(0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int port = loop_listen(loop, (struct sockaddr *)&a, sizeof(a), &echo_ops, NULL);
    if (port == -EADDRNOTAVAIL || port == -EAFNOSUPPORT) {
        loop_free(loop);
        cr_skip_test("no IPv6 loopback here");
    }
    cr_assert_gt(port, 0);
    struct test_thread t;
    test_thread_start(&t, loop);
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {WAIT_MS / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    a.sin6_port = htons((uint16_t)port);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char buf[2];
    cr_assert(write_full(fd, "v6", 2));
    cr_assert_eq(read_full(fd, buf, 2), 2);
    cr_assert_arr_eq(buf, "v6", 2);
    close(fd);
    cr_assert_eq(test_thread_stop(&t), 0);
    loop_free(loop);
}

static void unlisten(struct loop *loop, void *arg)
{
    (void)arg;
    loop_unlisten(loop);
}

Test(loop, stops_accepting_after_unlisten_and_keeps_open_conns)
{
    struct loop *loop = small_loop(0);
    struct sockaddr_in a = loopback4(0);
    int port = loop_listen(loop, (struct sockaddr *)&a, sizeof(a), &echo_ops, NULL);
    cr_assert_gt(port, 0);
    struct test_thread t;
    test_thread_start(&t, loop);
    int fd = client_connect(port);
    cr_assert_geq(fd, 0);
    char buf[4];
    cr_assert(write_full(fd, "open", 4));
    cr_assert_eq(read_full(fd, buf, 4), 4); /* accepted (not just queued) before unlisten */
    run_on(loop, unlisten, NULL);
    cr_assert_eq(client_connect(port), -ECONNREFUSED);
    cr_assert(write_full(fd, "live", 4));
    cr_assert_eq(read_full(fd, buf, 4), 4, "the open conn still works");
    struct loop_stats s = stats_of(loop);
    cr_assert_eq(s.accepted, 1);
    cr_assert_eq(s.accept_errors, 0);
    close(fd);
    cr_assert_eq(test_thread_stop(&t), 0);
    loop_free(loop);
}
