// SPDX-License-Identifier: MIT
// bench-ops: costs of the operational plumbing, as medians of 11 runs: a counter bump on the
// hot path, one log line formatted, a full /metrics render, a config load.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cfg.h"
#include "core/log.h"
#include "core/metrics.h"

#define RUNS 11

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v)
{
    qsort(v, RUNS, sizeof(*v), cmp);
    return v[RUNS / 2];
}

int main(int argc, char **argv)
{
    double r[RUNS];
    struct metrics *m = metrics_new(4);
    struct metrics_shard *s = metrics_shard(m, 0);
    const unsigned n = 10000000;
    for (int k = 0; k < RUNS; k++) {
        double t = now_ns();
        for (unsigned i = 0; i < n; i++)
            metrics_inc(s, METRIC_SIP_RESPONSES, METRICS_METHOD_REGISTER,
                        (enum metrics_code)(i & 7), METRICS_SOURCE_EDGE);
        r[k] = (now_ns() - t) / n;
    }
    printf("metrics_inc (3 labels)      median %.2f ns\n", median(r));

    size_t len = 0;
    for (int k = 0; k < RUNS; k++) {
        double t = now_ns();
        char *text = metrics_render(m, &len);
        r[k] = (now_ns() - t) / 1000;
        free(text);
    }
    printf("metrics_render (4 workers)  median %.1f us, %zu bytes\n", median(r), len);

    char line[LOG_LINE_MAX];
    struct timespec ts = {0, 0};
    const char *tok = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
    const struct log_field f[] = {LOG_S("node", "ucm1.example"), LOG_U("port", 5091),
                                  LOG_S("cause", "alert unknown_ca"),
                                  LOG_DIGEST("token", tok, strlen(tok))};
    const unsigned ln = 200000;
    for (int k = 0; k < RUNS; k++) {
        double t = now_ns();
        for (unsigned i = 0; i < ln; i++)
            log_format(line, sizeof(line), LOG_FORMAT_KV, &ts, LOG_WARN, "upstream_tls", f, 4);
        r[k] = (now_ns() - t) / ln;
    }
    printf("log_format (4 fields+digest) median %.0f ns\n", median(r));

    if (argc > 1) {
        static struct cfg c;
        char err[512];
        for (int k = 0; k < RUNS; k++) {
            double t = now_ns();
            int rc = cfg_load(argv[1], &c, err, sizeof(err));
            r[k] = (now_ns() - t) / 1000;
            if (rc) {
                fprintf(stderr, "%s\n", err);
                return 1;
            }
        }
        printf("cfg_load %s median %.0f us\n", argv[1], median(r));
    }
    metrics_free(m);
    return 0;
}
