// SPDX-License-Identifier: MIT
// Shared helpers for the net/ tests: an echo upper layer, loops on threads, calls run on a loop
// thread with a bounded wait, and blocking loopback clients with timeouts.
#ifndef SIPEDGE_TESTS_NET_TEST_UTIL_H
#define SIPEDGE_TESTS_NET_TEST_UTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net/conn.h"
#include "net/loop.h"

#define WAIT_MS 5000 /* every wait in these tests is bounded by this */

static inline void echo_on_data(struct conn *c, const char *p, size_t n)
{
    struct iovec iov = {(void *)p, n};
    conn_send(c, &iov, 1);
}

static const struct conn_ops echo_ops = {.on_data = echo_on_data};

static inline struct sockaddr_in loopback4(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* ---- a loop on its own thread ---- */

struct test_thread {
    struct loop *loop;
    pthread_t tid;
    int ret;
};

static inline void *test_thread_main(void *p)
{
    struct test_thread *t = p;
    t->ret = loop_run(t->loop);
    return NULL;
}

static inline void test_thread_start(struct test_thread *t, struct loop *loop)
{
    t->loop = loop;
    pthread_create(&t->tid, NULL, test_thread_main, t);
}

static inline int test_thread_stop(struct test_thread *t)
{
    loop_stop(t->loop);
    pthread_join(t->tid, NULL);
    return t->ret;
}

/* ---- run a function on a loop's thread and wait for it (bounded) ---- */

struct sync_call {
    void (*fn)(struct loop *loop, void *arg);
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
};

static inline void sync_call_trampoline(struct loop *loop, void *p)
{
    struct sync_call *s = p;
    s->fn(loop, s->arg);
    pthread_mutex_lock(&s->mu);
    s->done = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static inline bool run_on(struct loop *loop, void (*fn)(struct loop *loop, void *arg), void *arg)
{
    struct sync_call s = {.fn = fn, .arg = arg};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    if (loop_post(loop, sync_call_trampoline, &s) < 0)
        return false;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&s.mu);
    while (!s.done)
        if (pthread_cond_timedwait(&s.cv, &s.mu, &dl) == ETIMEDOUT)
            break;
    bool done = s.done;
    pthread_mutex_unlock(&s.mu);
    if (!done)
        abort(); /* the loop is stuck: s would dangle, so stop the test binary here */
    return done;
}

static inline void copy_stats(struct loop *loop, void *arg)
{
    *(struct loop_stats *)arg = *loop_stats(loop);
}

/* Stats of a running loop, read on its own thread. */
static inline struct loop_stats stats_of(struct loop *loop)
{
    struct loop_stats s;
    run_on(loop, copy_stats, &s);
    return s;
}

/* Polls `pred` on the loop thread every 5 ms until true or WAIT_MS; returns the last result. */
static inline bool wait_until(struct loop *loop,
                              bool (*pred)(const struct loop_stats *s, void *arg), void *arg)
{
    for (int i = 0; i < WAIT_MS / 5; i++) {
        struct loop_stats s = stats_of(loop);
        if (pred(&s, arg))
            return true;
        usleep(5000);
    }
    return false;
}

static inline bool no_conns(const struct loop_stats *s, void *arg)
{
    (void)arg;
    return s->conns_open == 0;
}

/* ---- blocking clients ---- */

static inline int client_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {WAIT_MS / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = loopback4(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -errno;
    }
    return fd;
}

/* Reads exactly n bytes (bounded by SO_RCVTIMEO); returns n, or what it got before EOF/error.
 * EINTR is retried: the io_uring task work of the loop threads can interrupt a blocking read of
 * this thread (seen under load: read() returning -1/EINTR after 30 ms). */
static inline ssize_t read_full(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static inline bool write_full(int fd, const char *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, buf + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        done += (size_t)w;
    }
    return true;
}

/* True when the peer closed `fd` (EOF or reset) within WAIT_MS; discards data read. */
static inline bool peer_closed(int fd)
{
    char buf[4096];
    for (int i = 0; i < 10000; i++) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return true;
        if (r < 0)
            return false; /* timeout */
    }
    return false;
}

#endif
