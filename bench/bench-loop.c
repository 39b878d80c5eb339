// SPDX-License-Identifier: MIT
// bench-loop: echo throughput and CPU per small message through net/ over loopback TCP.
// An epoll client thread keeps N connections each with one message in flight (ping-pong).
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net/conn.h"
#include "net/loop.h"

#define MAX_CONNS 10000
#define MAX_RUNS  21
#define MAX_SIZE  65536

struct opts {
    unsigned workers;
    unsigned conns;
    unsigned size;
    unsigned duration_ms;
    unsigned runs;
    unsigned flags;
};

static void echo_on_data(struct conn *c, const char *p, size_t n)
{
    struct iovec iov = {(void *)p, n};
    conn_send(c, &iov, 1);
}

static const struct conn_ops echo_ops = {.on_data = echo_on_data};

static uint64_t ns_of(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- worker CPU time, read on the worker's own thread ---- */

struct cpu_read {
    atomic_uint_fast64_t ns;
    atomic_bool done;
};

static void read_cpu(struct loop *loop, void *arg)
{
    (void)loop;
    struct cpu_read *r = arg;
    atomic_store(&r->ns, ns_of(CLOCK_THREAD_CPUTIME_ID));
    atomic_store(&r->done, true);
}

static uint64_t workers_cpu_ns(struct loop_group *g)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < loop_group_size(g); i++) {
        struct cpu_read r = {0};
        loop_post(loop_group_loop(g, i), read_cpu, &r);
        for (int k = 0; k < 5000 && !atomic_load(&r.done); k++)
            usleep(1000);
        if (!atomic_load(&r.done)) {
            fprintf(stderr, "bench-loop: worker %u does not answer\n", i);
            exit(1);
        }
        sum += atomic_load(&r.ns);
    }
    return sum;
}

/* ---- client ---- */

struct client_conn {
    int fd;
    unsigned got; /* bytes of the current answer received */
};

struct run_result {
    uint64_t msgs;
    uint64_t wall_ns;
    uint64_t server_cpu_ns;
    uint64_t client_cpu_ns;
};

static int client_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        perror("bench-loop: connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void send_msg(int fd, const char *msg, unsigned size)
{
    ssize_t w = write(fd, msg, size); /* small message, empty socket buffer: never partial */
    if (w != (ssize_t)size) {
        perror("bench-loop: write");
        exit(1);
    }
}

static struct run_result one_run(struct loop_group *g, int port, const struct opts *o)
{
    static struct client_conn cc[MAX_CONNS];
    static char msg[MAX_SIZE], buf[MAX_SIZE];
    memset(msg, 'm', o->size);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (unsigned i = 0; i < o->conns; i++) {
        cc[i] = (struct client_conn){.fd = client_open(port)};
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, cc[i].fd, &ev);
    }
    struct run_result r = {0};
    uint64_t cpu0 = workers_cpu_ns(g), ccpu0 = ns_of(CLOCK_THREAD_CPUTIME_ID);
    uint64_t t0 = ns_of(CLOCK_MONOTONIC), end = t0 + (uint64_t)o->duration_ms * 1000000u;
    for (unsigned i = 0; i < o->conns; i++)
        send_msg(cc[i].fd, msg, o->size);
    unsigned inflight = o->conns;
    bool sending = true;
    struct epoll_event evs[256];
    while (inflight) {
        if (sending && ns_of(CLOCK_MONOTONIC) >= end)
            sending = false;
        int n = epoll_wait(ep, evs, 256, 1000);
        if (n <= 0) {
            fprintf(stderr, "bench-loop: no answer for 1 s (%u in flight)\n", inflight);
            exit(1);
        }
        for (int k = 0; k < n; k++) {
            struct client_conn *c = &cc[evs[k].data.u32];
            ssize_t got = read(c->fd, buf, o->size - c->got);
            if (got <= 0) {
                fprintf(stderr, "bench-loop: server closed a connection\n");
                exit(1);
            }
            c->got += (unsigned)got;
            if (c->got < o->size)
                continue;
            c->got = 0;
            r.msgs++;
            if (sending)
                send_msg(c->fd, msg, o->size);
            else
                inflight--;
        }
    }
    r.wall_ns = ns_of(CLOCK_MONOTONIC) - t0;
    r.client_cpu_ns = ns_of(CLOCK_THREAD_CPUTIME_ID) - ccpu0;
    r.server_cpu_ns = workers_cpu_ns(g) - cpu0;
    for (unsigned i = 0; i < o->conns; i++)
        close(cc[i].fd);
    close(ep);
    return r;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench-loop [-w workers] [-c conns] [-s size] [-d ms] [-r runs]\n"
                    "                  [-m multishot|single|poll]\n"
                    "  echo over loopback TCP through net/: N conns, one message in flight each;\n"
                    "  prints per run and the medians of msgs/s and CPU us per message\n");
}

int main(int argc, char **argv)
{
    struct opts o = {.workers = 1, .conns = 64, .size = 64, .duration_ms = 1000, .runs = 5};
    const char *mode = "multishot";
    int opt;
    while ((opt = getopt(argc, argv, "w:c:s:d:r:m:h")) != -1) {
        switch (opt) {
        case 'w':
            o.workers = (unsigned)atoi(optarg);
            break;
        case 'c':
            o.conns = (unsigned)atoi(optarg);
            break;
        case 's':
            o.size = (unsigned)atoi(optarg);
            break;
        case 'd':
            o.duration_ms = (unsigned)atoi(optarg);
            break;
        case 'r':
            o.runs = (unsigned)atoi(optarg);
            break;
        case 'm':
            mode = optarg;
            break;
        default:
            usage();
            return opt == 'h' ? 0 : 2;
        }
    }
    if (!strcmp(mode, "single"))
        o.flags = LOOP_CFG_F_NO_MULTISHOT;
    else if (!strcmp(mode, "poll"))
        o.flags = LOOP_CFG_F_NO_MULTISHOT | LOOP_CFG_F_NO_BUFRING;
    else if (strcmp(mode, "multishot") != 0) {
        usage();
        return 2;
    }
    if (o.workers < 1 || o.workers > 64 || o.conns < 1 || o.conns > MAX_CONNS || o.size < 1 ||
        o.size > MAX_SIZE || o.duration_ms < 10 || o.duration_ms > 10000 || o.runs < 1 ||
        o.runs > MAX_RUNS) {
        usage();
        return 2;
    }
    struct loop_cfg cfg;
    loop_cfg_default(&cfg);
    cfg.flags = o.flags;
    cfg.max_conns = o.conns + 16;
    struct loop_group *g = loop_group_new(&cfg, o.workers);
    if (!g) {
        perror("bench-loop: loop_group_new");
        return 1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int port = loop_group_listen(g, (struct sockaddr *)&a, sizeof(a), &echo_ops, NULL);
    if (port < 0 || loop_group_start(g, true) < 0) {
        fprintf(stderr, "bench-loop: listen/start: %s\n", strerror(port < 0 ? -port : EAGAIN));
        return 1;
    }
    printf("bench-loop: mode=%s features=0x%x workers=%u conns=%u size=%u duration=%ums runs=%u\n",
           mode, loop_features(loop_group_loop(g, 0)), o.workers, o.conns, o.size, o.duration_ms,
           o.runs);
    double rate[MAX_RUNS], scpu[MAX_RUNS], ccpu[MAX_RUNS];
    for (unsigned i = 0; i < o.runs; i++) {
        struct run_result r = one_run(g, port, &o);
        rate[i] = (double)r.msgs * 1e9 / (double)r.wall_ns;
        scpu[i] = (double)r.server_cpu_ns / 1e3 / (double)r.msgs;
        ccpu[i] = (double)r.client_cpu_ns / 1e3 / (double)r.msgs;
        printf("run %u: %llu msgs in %.3f s: %.0f msgs/s, server %.2f us/msg, client %.2f us/msg\n",
               i + 1, (unsigned long long)r.msgs, (double)r.wall_ns / 1e9, rate[i], scpu[i],
               ccpu[i]);
    }
    double mr = median(rate, o.runs);
    printf("median: %.0f msgs/s (%.1f MB/s each way), server %.2f us CPU/msg, client %.2f us "
           "CPU/msg\n",
           mr, mr * o.size / 1e6, median(scpu, o.runs), median(ccpu, o.runs));
    loop_group_free(g);
    return 0;
}
