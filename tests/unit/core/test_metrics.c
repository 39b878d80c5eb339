// SPDX-License-Identifier: MIT
// Tests for core/metrics.c: exposition text byte for byte, sums across worker shards,
// histogram buckets, label escaping from gauge callbacks, response code classes.
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"

static struct metrics *m;
static char *text;
static size_t len;

static void setup(void)
{
    m = metrics_new(3);
    cr_assert(m);
}

static void teardown(void)
{
    free(text);
    metrics_free(m);
}

static void render(void)
{
    free(text);
    text = metrics_render(m, &len);
    cr_assert(text);
    cr_assert_eq(strlen(text), len);
}

/* The block of metric `name`: from its HELP line to the next HELP (or the end). */
static char *block(const char *name)
{
    static char out[65536];
    char head[128];
    snprintf(head, sizeof(head), "# HELP %s ", name);
    const char *s = strstr(text, head);
    cr_assert(s, "no %s", name);
    const char *e = strstr(s + 1, "# HELP ");
    size_t n = e ? (size_t)(e - s) : strlen(s);
    cr_assert_lt(n, sizeof(out));
    memcpy(out, s, n);
    out[n] = 0;
    return out;
}

TestSuite(metrics, .init = setup, .fini = teardown);

Test(metrics, renders_a_labelled_counter_summed_over_workers_byte_for_byte)
{
    metrics_inc(metrics_shard(m, 0), METRIC_SIP_REQUESTS, METRICS_METHOD_REGISTER);
    metrics_inc(metrics_shard(m, 1), METRIC_SIP_REQUESTS, METRICS_METHOD_REGISTER);
    metrics_add(metrics_shard(m, 2), 5, METRIC_SIP_REQUESTS, METRICS_METHOD_OPTIONS);
    render();
    cr_assert_str_eq(block("sipedge_sip_requests_total"),
                     "# HELP sipedge_sip_requests_total SIP requests received from clients.\n"
                     "# TYPE sipedge_sip_requests_total counter\n"
                     "sipedge_sip_requests_total{method=\"REGISTER\"} 2\n"
                     "sipedge_sip_requests_total{method=\"OPTIONS\"} 5\n"
                     "sipedge_sip_requests_total{method=\"other\"} 0\n"
                     "sipedge_sip_requests_total{method=\"INVITE\"} 0\n"
                     "sipedge_sip_requests_total{method=\"ACK\"} 0\n"
                     "sipedge_sip_requests_total{method=\"BYE\"} 0\n"
                     "sipedge_sip_requests_total{method=\"CANCEL\"} 0\n");
}

Test(metrics, renders_an_unlabelled_counter_and_a_gauge)
{
    metrics_inc(metrics_shard(m, 0), METRIC_CONNECTIONS_ACCEPTED);
    metrics_gauge_add(metrics_shard(m, 0), 3, METRIC_CONNECTIONS_OPEN);
    metrics_gauge_add(metrics_shard(m, 1), 1, METRIC_CONNECTIONS_OPEN);
    metrics_gauge_add(metrics_shard(m, 0), -2, METRIC_CONNECTIONS_OPEN);
    render();
    cr_assert_str_eq(block("sipedge_connections_accepted_total"),
                     "# HELP sipedge_connections_accepted_total Client connections accepted.\n"
                     "# TYPE sipedge_connections_accepted_total counter\n"
                     "sipedge_connections_accepted_total 1\n");
    cr_assert_str_eq(block("sipedge_client_connections"),
                     "# HELP sipedge_client_connections Client connections open.\n"
                     "# TYPE sipedge_client_connections gauge\n"
                     "sipedge_client_connections 2\n");
}

Test(metrics, three_label_counter_indexes_each_combination)
{
    metrics_inc(metrics_shard(m, 0), METRIC_SIP_RESPONSES, METRICS_METHOD_REGISTER,
                metrics_code_of(407), METRICS_SOURCE_EDGE);
    metrics_inc(metrics_shard(m, 2), METRIC_SIP_RESPONSES, METRICS_METHOD_REGISTER,
                metrics_code_of(200), METRICS_SOURCE_UPSTREAM);
    metrics_inc(metrics_shard(m, 1), METRIC_SIP_RESPONSES, METRICS_METHOD_OTHER,
                metrics_code_of(486), METRICS_SOURCE_UPSTREAM);
    render();
    const char *b = block("sipedge_sip_responses_total");
    cr_assert(strstr(b, "\nsipedge_sip_responses_total{method=\"REGISTER\",code=\"407\","
                        "source=\"edge\"} 1\n"));
    cr_assert(strstr(b, "\nsipedge_sip_responses_total{method=\"REGISTER\",code=\"200\","
                        "source=\"upstream\"} 1\n"));
    cr_assert(strstr(b, "\nsipedge_sip_responses_total{method=\"other\",code=\"4xx\","
                        "source=\"upstream\"} 1\n"));
    cr_assert(strstr(b, "\nsipedge_sip_responses_total{method=\"REGISTER\",code=\"407\","
                        "source=\"upstream\"} 0\n"));
    size_t lines = 0;
    for (const char *p = b; (p = strchr(p, '\n')); p++)
        lines++;
    cr_assert_eq(lines, 2 + METRICS_METHOD_COUNT * METRICS_CODE_COUNT * METRICS_SOURCE_COUNT);
}

Test(metrics, renders_a_histogram_with_cumulative_buckets)
{
    metrics_observe_us(metrics_shard(m, 0), 40, METRIC_AUTH_VERIFY_DURATION);       /* 5e-05 */
    metrics_observe_us(metrics_shard(m, 1), 100, METRIC_AUTH_VERIFY_DURATION);      /* 0.0001 */
    metrics_observe_us(metrics_shard(m, 2), 30000, METRIC_AUTH_VERIFY_DURATION);    /* 0.05 */
    metrics_observe_us(metrics_shard(m, 0), 20000000, METRIC_AUTH_VERIFY_DURATION); /* +Inf */
    render();
    const char *n = "sipedge_auth_verify_duration_seconds";
    char want[4096];
    snprintf(want, sizeof(want),
             "# HELP %s Full token verification (signature and claims).\n"
             "# TYPE %s histogram\n"
             "%s_bucket{le=\"5e-05\"} 1\n%s_bucket{le=\"0.0001\"} 2\n"
             "%s_bucket{le=\"0.00025\"} 2\n%s_bucket{le=\"0.0005\"} 2\n"
             "%s_bucket{le=\"0.001\"} 2\n%s_bucket{le=\"0.0025\"} 2\n"
             "%s_bucket{le=\"0.005\"} 2\n%s_bucket{le=\"0.01\"} 2\n"
             "%s_bucket{le=\"0.025\"} 2\n%s_bucket{le=\"0.05\"} 3\n"
             "%s_bucket{le=\"0.1\"} 3\n%s_bucket{le=\"0.25\"} 3\n"
             "%s_bucket{le=\"0.5\"} 3\n%s_bucket{le=\"1\"} 3\n"
             "%s_bucket{le=\"2.5\"} 3\n%s_bucket{le=\"5\"} 3\n"
             "%s_bucket{le=\"10\"} 3\n%s_bucket{le=\"+Inf\"} 4\n"
             "%s_sum 20.030140\n%s_count 4\n",
             n, n, n, n, n, n, n, n, n, n, n, n, n, n, n, n, n, n, n, n, n, n);
    cr_assert_str_eq(block(n), want);
}

Test(metrics, bucket_bounds_are_inclusive)
{
    cr_assert_eq(metrics_bucket_of(0), 0);
    cr_assert_eq(metrics_bucket_of(50), 0);
    cr_assert_eq(metrics_bucket_of(51), 1);
    cr_assert_eq(metrics_bucket_of(10000000), METRICS_HIST_BUCKETS - 2);
    cr_assert_eq(metrics_bucket_of(10000001), METRICS_HIST_BUCKETS - 1);
    cr_assert_eq(metrics_bucket_of(UINT64_MAX), METRICS_HIST_BUCKETS - 1);
}

static void nodes_fn(void *arg, struct metrics_sink *s)
{
    cr_assert_eq(arg, (void *)m);
    const char *a[] = {"ucm1", "up"};
    const char *b[] = {"we\"ird\\node\nx", "connecting"};
    metrics_sink_put(s, a, 2);
    metrics_sink_put(s, b, 0);
}

Test(metrics, gauge_callback_emits_escaped_label_values)
{
    cr_assert_eq(metrics_set_gauge_fn(m, METRIC_SIP_REQUESTS, nodes_fn, m), -EINVAL);
    cr_assert_eq(metrics_set_gauge_fn(m, METRIC_UPSTREAM_CONNECTIONS, nodes_fn, m), 0);
    render();
    cr_assert_str_eq(block("sipedge_upstream_connections"),
                     "# HELP sipedge_upstream_connections Upstream connections by node and "
                     "state.\n"
                     "# TYPE sipedge_upstream_connections gauge\n"
                     "sipedge_upstream_connections{node=\"ucm1\",state=\"up\"} 2\n"
                     "sipedge_upstream_connections{node=\"we\\\"ird\\\\node\\nx\","
                     "state=\"connecting\"} 0\n");
}

Test(metrics, every_metric_has_help_and_type_and_names_are_unique)
{
    render();
    for (unsigned i = 0; i < METRICS_COUNT; i++) {
        char t[160];
        snprintf(t, sizeof(t), "# TYPE %s ", metrics_descs[i].name);
        const char *p = strstr(text, t);
        cr_assert(p, "%s", t);
        cr_assert_null(strstr(p + 1, t), "duplicate %s", t);
        if (metrics_descs[i].type == METRICS_COUNTER)
            cr_assert(strstr(metrics_descs[i].name, "_total"));
    }
    cr_assert_eq(text[len - 1], '\n');
}

Test(metrics, maps_codes_to_exact_values_or_classes)
{
    cr_assert_eq(metrics_code_of(407), METRICS_CODE_407);
    cr_assert_eq(metrics_code_of(503), METRICS_CODE_503);
    cr_assert_eq(metrics_code_of(180), METRICS_CODE_1XX);
    cr_assert_eq(metrics_code_of(302), METRICS_CODE_3XX);
    cr_assert_eq(metrics_code_of(603), METRICS_CODE_6XX);
    cr_assert_eq(metrics_code_of(0), METRICS_CODE_5XX);
}

static void *worker(void *arg)
{
    struct metrics_shard *s = arg;
    for (int i = 0; i < 100000; i++)
        metrics_inc(s, METRIC_AUTH_RESULTS, METRICS_AUTH_OK, METRICS_LAYER_L1);
    return NULL;
}

Test(metrics, workers_write_their_own_shard_while_a_scrape_reads)
{
    pthread_t th[3];
    for (unsigned i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, worker, metrics_shard(m, i));
    for (int i = 0; i < 5; i++)
        render();
    for (unsigned i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    render();
    cr_assert(strstr(text, "\nsipedge_auth_results_total{result=\"ok\",layer=\"l1\"} 300000\n"));
    cr_assert_eq(
        metrics_sum(m, metrics_slot(METRIC_AUTH_RESULTS, METRICS_AUTH_OK, METRICS_LAYER_L1, 0)),
        300000);
}

Test(metrics, docs_contain_the_generated_reference)
{
    static char ref[65536], doc[131072];
    FILE *f = fmemopen(ref, sizeof(ref) - 1, "w");
    metrics_write_reference(f);
    fclose(f);
    char p[512];
    snprintf(p, sizeof(p), "%s/docs/metrics.md", SIPEDGE_SOURCE_DIR);
    FILE *d = fopen(p, "r");
    cr_assert(d);
    size_t n = fread(doc, 1, sizeof(doc) - 1, d);
    fclose(d);
    doc[n] = 0;
    cr_assert(strstr(doc, ref),
              "docs/metrics.md is stale: regenerate the table with metrics_write_reference()");
}
