// SPDX-License-Identifier: MIT
// Micro-benchmark of sip_scan(): ns per message (median of batches, thread CPU time) and MB/s for
// realistic messages on each scanner path; `--count N` runs exactly N scans for callgrind;
// `--check` adds the edge's request checks (sip_check_request(), what every request costs more).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/sip.h"
#include "core/sip_check.h"

#define BATCHES     101
#define BATCH_BYTES (4u << 20) /* each batch scans about this many bytes */
#define MAX_MSG     65536

static bool with_check; /* --check: sip_check_request() after each scan */
static volatile int sink;

static const char *const default_msgs[] = {"register_jabber", "invite_sdp",
                                           "response_200_register"};

struct msg_file {
    const char *name;
    char *buf;
    size_t len;
};

static int load(const char *dir, const char *name, struct msg_file *out)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s.sip", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    out->name = name;
    out->buf = malloc(MAX_MSG);
    out->len = out->buf ? fread(out->buf, 1, MAX_MSG, f) : 0;
    fclose(f);
    return out->len ? 0 : -EIO;
}

/* Thread CPU time: on a shared machine a batch is not charged for the time it was preempted
 * (the wall-clock median is printed too). */
static double now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One scan, checked: the benchmark must measure a successful full scan. */
static inline void scan_once(struct msg_file *m, struct sip_msg *msg)
{
    ssize_t rc = sip_scan(m->buf, m->len, 0, msg);
    if (rc != (ssize_t)m->len) {
        fprintf(stderr, "%s: sip_scan returned %zd (%s)\n", m->name, rc, sip_err_reason(msg->err));
        exit(1);
    }
    if (with_check) {
        struct sip_verdict v;
        sip_check_request(msg, SLICE_LIT("ccmsipline"), &v);
        sink = v.action;
    }
}

static void bench(struct msg_file *m, struct sip_msg *msg)
{
    size_t iters = BATCH_BYTES / m->len + 1;
    double per[BATCHES], wall[BATCHES];
    for (size_t i = 0; i < iters; i++) /* warm caches and branch predictors */
        scan_once(m, msg);
    for (int b = 0; b < BATCHES; b++) {
        double w0 = now_ns(CLOCK_MONOTONIC), t0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
        for (size_t i = 0; i < iters; i++)
            scan_once(m, msg);
        per[b] = (now_ns(CLOCK_THREAD_CPUTIME_ID) - t0) / (double)iters;
        wall[b] = (now_ns(CLOCK_MONOTONIC) - w0) / (double)iters;
    }
    qsort(per, BATCHES, sizeof(per[0]), cmp_double);
    qsort(wall, BATCHES, sizeof(wall[0]), cmp_double);
    double med = per[BATCHES / 2];
    printf("%-22s %-6s%s %5zu B %3zu hdrs  cpu median %7.1f ns/msg (p10 %6.1f, p90 %6.1f) "
           "%6.0f MB/s  wall median %7.1f ns\n",
           m->name, sip_scan_impl_name(sip_scan_get_impl()), with_check ? "+check" : "", m->len,
           msg->header_count, med, per[BATCHES / 10], per[BATCHES * 9 / 10],
           (double)m->len / med * 1e3, wall[BATCHES / 2]);
}

/* `count` scans, outside main() so that callgrind can count just this: --toggle-collect=run_count
 */
__attribute__((noinline)) static void run_count(struct msg_file *m, struct sip_msg *msg, long count)
{
    for (long c = 0; c < count; c++)
        scan_once(m, msg);
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--dir DIR] [--impl scalar|sse42|avx2|all] [--count N] [--check] [MSG...]\n"
            "  DIR    message files (default tests/data/sip/valid), MSG names without .sip\n"
            "  --count N  run exactly N scans of each MSG on one path, print nothing timed\n"
            "             (for valgrind --tool=callgrind --toggle-collect=run_count)\n"
            "  --check    also run the edge's request checks (sip_check_request) per message\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *dir = "tests/data/sip/valid", *impl = "all";
    long count = 0;
    const char *names[64];
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--impl") == 0 && i + 1 < argc)
            impl = argv[++i];
        else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--check") == 0)
            with_check = true;
        else if (argv[i][0] == '-' || n == 64)
            usage(argv[0]);
        else
            names[n++] = argv[i];
    }
    if (n == 0)
        for (size_t i = 0; i < sizeof(default_msgs) / sizeof(default_msgs[0]); i++)
            names[n++] = default_msgs[i];

    struct msg_file files[64];
    for (int i = 0; i < n; i++) {
        int rc = load(dir, names[i], &files[i]);
        if (rc < 0) {
            fprintf(stderr, "%s/%s.sip: %s\n", dir, names[i], strerror(-rc));
            return 1;
        }
    }
    static struct sip_header headers[128];
    struct sip_msg msg;
    sip_msg_init(&msg, headers, 128);

    enum sip_scan_impl impls[SIP_SCAN_IMPL_COUNT];
    int ni = 0;
    for (int i = SIP_SCAN_SCALAR; i < SIP_SCAN_IMPL_COUNT; i++) {
        const char *nm = sip_scan_impl_name((enum sip_scan_impl)i);
        if (strcmp(impl, "all") == 0 || strcmp(impl, nm) == 0)
            impls[ni++] = (enum sip_scan_impl)i;
    }
    if (ni == 0)
        usage(argv[0]);

    for (int k = 0; k < ni; k++) {
        if (sip_scan_set_impl(impls[k]) != 0) {
            printf("%s: not supported by this CPU, skipped\n", sip_scan_impl_name(impls[k]));
            continue;
        }
        for (int i = 0; i < n; i++) {
            if (count > 0) {
                run_count(&files[i], &msg, count);
                printf("%s %s: %ld scans done\n", files[i].name, sip_scan_impl_name(impls[k]),
                       count);
            } else {
                bench(&files[i], &msg);
            }
        }
    }
    for (int i = 0; i < n; i++)
        free(files[i].buf);
    return 0;
}
