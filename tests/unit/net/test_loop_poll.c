// SPDX-License-Identifier: MIT
// net/loop.c: loop_poll_arm/cancel on sockets other modules read themselves (auth/'s Redis):
// fires on readable, re-arms from its callback, cancel stops it, the struct may be freed at once.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "net_test_util.h"

struct poll_probe {
    struct loop_poll p; /* first: the callback casts back */
    int fd;
    atomic_int fired;
    atomic_uint revents;
    int rearm_until; /* re-arm from the callback while fired < this */
    int arm_rc;
};

static void probe_cb(struct loop *loop, struct loop_poll *p, unsigned revents)
{
    struct poll_probe *pr = (struct poll_probe *)p;
    cr_assert_not(loop_poll_armed(p), "armed while its callback runs");
    atomic_store(&pr->revents, revents);
    char buf[16];
    if (revents & POLLIN)
        (void)!read(pr->fd, buf, 1); /* one byte per firing */
    int n = atomic_fetch_add(&pr->fired, 1) + 1;
    if (n < pr->rearm_until)
        pr->arm_rc = loop_poll_arm(loop, p, pr->fd, POLLIN, probe_cb);
}

static void arm_on_loop(struct loop *loop, void *arg)
{
    struct poll_probe *pr = arg;
    pr->arm_rc = loop_poll_arm(loop, &pr->p, pr->fd, POLLIN, probe_cb);
}

static void cancel_on_loop(struct loop *loop, void *arg)
{
    loop_poll_cancel(loop, arg);
}

static void cancel_and_free_on_loop(struct loop *loop, void *arg)
{
    struct poll_probe *pr = arg;
    loop_poll_cancel(loop, &pr->p);
    free(pr); /* the in-flight SQE is the loop's business now */
}

static void arm_twice_on_loop(struct loop *loop, void *arg)
{
    struct poll_probe *pr = arg;
    pr->arm_rc = loop_poll_arm(loop, &pr->p, pr->fd, POLLIN, probe_cb);
    cr_assert_eq(pr->arm_rc, 0);
    pr->arm_rc = loop_poll_arm(loop, &pr->p, pr->fd, POLLIN, probe_cb);
}

static bool fired_at_least(struct poll_probe *pr, int n)
{
    for (int i = 0; i < WAIT_MS / 5; i++) {
        if (atomic_load(&pr->fired) >= n)
            return true;
        usleep(5000);
    }
    return false;
}

struct env {
    struct loop *loop;
    struct test_thread th;
    int sv[2];
};

static void env_up(struct env *e)
{
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.max_conns = 16;
    e->loop = loop_new(&cfg);
    cr_assert_not_null(e->loop);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, e->sv), 0);
    test_thread_start(&e->th, e->loop);
}

static void env_down(struct env *e)
{
    cr_assert_eq(test_thread_stop(&e->th), 0);
    loop_free(e->loop);
    close(e->sv[0]);
    close(e->sv[1]);
}

TestSuite(loop_poll, .timeout = 30);

Test(loop_poll, fires_once_when_the_socket_becomes_readable)
{
    struct env e;
    env_up(&e);
    struct poll_probe pr = {.fd = e.sv[0]};
    cr_assert_not(loop_poll_armed(&pr.p), "a zeroed struct is not armed");
    run_on(e.loop, arm_on_loop, &pr);
    cr_assert_eq(pr.arm_rc, 0);
    cr_assert(loop_poll_armed(&pr.p));
    usleep(20000);
    cr_assert_eq(atomic_load(&pr.fired), 0, "fired before anything was readable");
    cr_assert(write_full(e.sv[1], "xy", 2));
    cr_assert(fired_at_least(&pr, 1));
    cr_assert(atomic_load(&pr.revents) & POLLIN);
    cr_assert_not(loop_poll_armed(&pr.p));
    usleep(20000); /* one byte is still there, but a one-shot poll does not fire again */
    cr_assert_eq(atomic_load(&pr.fired), 1);
    run_on(e.loop, cancel_on_loop, &pr.p); /* cancel after firing: a no-op */
    env_down(&e);
}

Test(loop_poll, rearms_from_its_callback)
{
    struct env e;
    env_up(&e);
    struct poll_probe pr = {.fd = e.sv[0], .rearm_until = 3};
    run_on(e.loop, arm_on_loop, &pr);
    cr_assert(write_full(e.sv[1], "abcd", 4));
    cr_assert(fired_at_least(&pr, 3));
    usleep(20000);
    cr_assert_eq(atomic_load(&pr.fired), 3, "the third firing did not re-arm");
    cr_assert_eq(pr.arm_rc, 0);
    env_down(&e);
}

Test(loop_poll, does_not_run_a_cancelled_callback)
{
    struct env e;
    env_up(&e);
    struct poll_probe pr = {.fd = e.sv[0]};
    run_on(e.loop, arm_on_loop, &pr);
    run_on(e.loop, cancel_on_loop, &pr.p);
    cr_assert_not(loop_poll_armed(&pr.p));
    cr_assert(write_full(e.sv[1], "x", 1));
    usleep(50000);
    struct loop_stats s = stats_of(e.loop);
    cr_assert_eq(atomic_load(&pr.fired), 0);
    cr_assert_eq(s.stale_cqes, 0);
    /* and the same struct can be armed again */
    run_on(e.loop, arm_on_loop, &pr);
    cr_assert_eq(pr.arm_rc, 0);
    cr_assert(fired_at_least(&pr, 1));
    env_down(&e);
}

Test(loop_poll, lets_the_owner_free_the_struct_right_after_cancel)
{
    struct env e;
    env_up(&e);
    for (int i = 0; i < 20; i++) {
        struct poll_probe *pr = calloc(1, sizeof(*pr));
        pr->fd = e.sv[0];
        run_on(e.loop, arm_on_loop, pr);
        cr_assert_eq(pr->arm_rc, 0);
        run_on(e.loop, cancel_and_free_on_loop, pr);
    }
    /* readable now: the cancelled SQEs complete without touching the freed structs (ASan) */
    cr_assert(write_full(e.sv[1], "x", 1));
    struct poll_probe pr = {.fd = e.sv[0]};
    run_on(e.loop, arm_on_loop, &pr);
    cr_assert(fired_at_least(&pr, 1));
    usleep(20000);
    cr_assert_eq(stats_of(e.loop).stale_cqes, 0);
    env_down(&e);
}

Test(loop_poll, refuses_to_arm_an_armed_poll)
{
    struct env e;
    env_up(&e);
    struct poll_probe pr = {.fd = e.sv[0]};
    run_on(e.loop, arm_twice_on_loop, &pr);
    cr_assert_eq(pr.arm_rc, -EBUSY);
    run_on(e.loop, cancel_on_loop, &pr.p);
    env_down(&e);
}

Test(loop_poll, reports_hangup_when_the_peer_closes)
{
    struct env e;
    env_up(&e);
    struct poll_probe pr = {.fd = e.sv[0]};
    run_on(e.loop, arm_on_loop, &pr);
    close(e.sv[1]);
    e.sv[1] = -1;
    cr_assert(fired_at_least(&pr, 1));
    cr_assert(atomic_load(&pr.revents) & (POLLHUP | POLLIN));
    env_down(&e);
}

Test(loop_poll, frees_a_loop_with_a_poll_still_armed)
{
    struct env e;
    env_up(&e);
    struct poll_probe pr = {.fd = e.sv[0]};
    run_on(e.loop, arm_on_loop, &pr);
    env_down(&e); /* no leak, no callback (ASan) */
    cr_assert_eq(atomic_load(&pr.fired), 0);
}
