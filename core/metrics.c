// SPDX-License-Identifier: MIT
// Metrics registry: the descriptor table built from METRICS_TABLE, per-worker shards, and the
// Prometheus text exposition (format 0.0.4) rendered by summing the shards at scrape time.
#include "core/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const method_v[] = {"REGISTER", "OPTIONS", "other", "INVITE",
                                       "ACK",      "BYE",     "CANCEL"};
static const char *const call_refused_v[] = {"unbound", "expired", "wrong_user", "bad_from",
                                             "limit"};
static const char *const flow_failure_v[] = {"gone", "forged"};
static const char *const shed_reason_v[] = {"upstream_pending", "queue_delay"};
_Static_assert(sizeof(shed_reason_v) / sizeof(*shed_reason_v) == METRICS_SHED_REASON_COUNT,
               "shed reasons");
static const char *const direction_v[] = {"to_ucm", "to_client"};
static const char *const ucm_refused_v[] = {"no_certificate", "untrusted", "name_not_allowed"};
_Static_assert(sizeof(ucm_refused_v) / sizeof(*ucm_refused_v) == METRICS_UCM_REFUSED_COUNT,
               "ucm refusal causes");
_Static_assert(sizeof(call_refused_v) / sizeof(*call_refused_v) == METRICS_CALL_REFUSED_COUNT,
               "call refusal names");
_Static_assert(sizeof(flow_failure_v) / sizeof(*flow_failure_v) == METRICS_FLOW_FAILURE_COUNT,
               "flow failure names");
_Static_assert(sizeof(direction_v) / sizeof(*direction_v) == METRICS_DIR_COUNT, "directions");
static const char *const code_v[] = {"100", "200", "400", "403", "404", "407", "408", "413", "483",
                                     "500", "501", "503", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx"};
static const char *const source_v[] = {"edge", "upstream"};
static const char *const auth_result_v[] = {"ok",
                                            "no_credentials",
                                            "malformed",
                                            "bad_signature",
                                            "unknown_kid",
                                            "bad_alg",
                                            "bad_iss",
                                            "bad_aud",
                                            "expired",
                                            "not_yet_valid",
                                            "revoked",
                                            "insufficient_scope",
                                            "identity_mismatch",
                                            "decrypt",
                                            "error"};
static const char *const layer_v[] = {"l1", "l2", "verify"};
static const char *const side_v[] = {"client", "upstream"};
static const char *const tls_cause_v[] = {"timeout",
                                          "protocol",
                                          "alert_unknown_ca",
                                          "alert_bad_certificate",
                                          "alert_certificate_unknown",
                                          "alert_access_denied",
                                          "alert_handshake_failure",
                                          "alert_other",
                                          "verify_untrusted",
                                          "verify_name",
                                          "verify_expired",
                                          "verify_other",
                                          "no_certificate",
                                          "io",
                                          "other"};
static const char *const tls_version_v[] = {"1.2", "1.3"};
static const char *const tls_records_v[] = {"sipedge", "openssl"};
static const char *const close_v[] = {"peer",        "idle",           "handshake", "error",
                                      "limit",       "garbage",        "overflow",  "drain",
                                      "unframeable", "message_timeout"};
static const char *const drop_v[] = {"via_not_ours", "client_gone", "stale_transaction",
                                     "unexpected"};
static const char *const redis_v[] = {"hit",   "miss",    "stored",      "bad_hmac",
                                      "error", "timeout", "breaker_open"};

_Static_assert(sizeof(method_v) / sizeof(*method_v) == METRICS_METHOD_COUNT, "method names");
_Static_assert(sizeof(code_v) / sizeof(*code_v) == METRICS_CODE_COUNT, "code names");
static const char *const refusal_v[] = {"source_budget", "failed_tokens", "worker_budget"};

_Static_assert(sizeof(refusal_v) / sizeof(*refusal_v) == METRICS_REFUSAL_COUNT, "refusal names");
_Static_assert(sizeof(source_v) / sizeof(*source_v) == METRICS_SOURCE_COUNT, "source names");
_Static_assert(sizeof(auth_result_v) / sizeof(*auth_result_v) == METRICS_AUTH_RESULT_COUNT,
               "auth result names");
_Static_assert(sizeof(layer_v) / sizeof(*layer_v) == METRICS_LAYER_COUNT, "layer names");
_Static_assert(sizeof(side_v) / sizeof(*side_v) == METRICS_SIDE_COUNT, "side names");
_Static_assert(sizeof(tls_cause_v) / sizeof(*tls_cause_v) == METRICS_TLS_CAUSE_COUNT,
               "tls cause names");
_Static_assert(sizeof(tls_version_v) / sizeof(*tls_version_v) == METRICS_TLS_VERSION_COUNT,
               "tls version names");
_Static_assert(sizeof(tls_records_v) / sizeof(*tls_records_v) == METRICS_RECORDS_COUNT,
               "tls record layer names");
_Static_assert(sizeof(close_v) / sizeof(*close_v) == METRICS_CLOSE_COUNT, "close names");
_Static_assert(sizeof(drop_v) / sizeof(*drop_v) == METRICS_DROP_COUNT, "drop names");
_Static_assert(sizeof(redis_v) / sizeof(*redis_v) == METRICS_REDIS_COUNT, "redis names");

struct labelset {
    const char *name;
    const char *const *values; /* NULL: dynamic (gauge callbacks) or NONE */
};

static const struct labelset labelsets[METRICS_LS_COUNT] = {
    [METRICS_LS_NONE] = {"", NULL},
    [METRICS_LS_METHOD] = {"method", method_v},
    [METRICS_LS_CODE] = {"code", code_v},
    [METRICS_LS_SOURCE] = {"source", source_v},
    [METRICS_LS_AUTH_RESULT] = {"result", auth_result_v},
    [METRICS_LS_AUTH_LAYER] = {"layer", layer_v},
    [METRICS_LS_TLS_SIDE] = {"side", side_v},
    [METRICS_LS_TLS_CAUSE] = {"cause", tls_cause_v},
    [METRICS_LS_TLS_VERSION] = {"version", tls_version_v},
    [METRICS_LS_TLS_RECORDS] = {"records", tls_records_v},
    [METRICS_LS_CLOSE_REASON] = {"reason", close_v},
    [METRICS_LS_DROP_REASON] = {"reason", drop_v},
    [METRICS_LS_REDIS_RESULT] = {"result", redis_v},
    [METRICS_LS_AUTH_REFUSAL] = {"reason", refusal_v},
    [METRICS_LS_CALL_REFUSED] = {"reason", call_refused_v},
    [METRICS_LS_SHED_REASON] = {"reason", shed_reason_v},
    [METRICS_LS_FLOW_FAILURE] = {"reason", flow_failure_v},
    [METRICS_LS_UCM_REFUSED] = {"cause", ucm_refused_v},
    [METRICS_LS_DIRECTION] = {"direction", direction_v},
    [METRICS_LS_DYN_NODE] = {"node", NULL},
    [METRICS_LS_DYN_STATE] = {"state", NULL},
};

const struct metrics_desc metrics_descs[METRICS_COUNT] = {
#define METRICS__X(id, nm, ty, hp, a, b, c)                                                        \
    [METRIC_##id] = {.name = nm,                                                                   \
                     .help = hp,                                                                   \
                     .type = ty,                                                                   \
                     .base = METRICS_SLOT_##id,                                                    \
                     .ls = {METRICS_LS_##a, METRICS_LS_##b, METRICS_LS_##c},                       \
                     .card = {METRICS_CARD_##a, METRICS_CARD_##b, METRICS_CARD_##c}},
    METRICS_TABLE(METRICS__X)
#undef METRICS__X
};

/* Bucket upper bounds in microseconds and as written in `le` (seconds). */
static const uint64_t bucket_us[METRICS_HIST_BUCKETS - 1] = {
    50,    100,    250,    500,    1000,    2500,    5000,    10000,   25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
static const char *const bucket_le[METRICS_HIST_BUCKETS] = {
    "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
    "0.05",  "0.1",    "0.25",    "0.5",    "1",     "2.5",    "5",     "10",   "+Inf"};

unsigned metrics_bucket_of(uint64_t us)
{
    unsigned lo = 0, hi = METRICS_HIST_BUCKETS - 1; /* hi: the +Inf bucket */
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (us <= bucket_us[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

enum metrics_code metrics_code_of(int code)
{
    static const short exact[] = {100, 200, 400, 403, 404, 407, 408, 413, 483, 500, 501, 503};
    for (unsigned i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (exact[i] == code)
            return (enum metrics_code)i;
    if (code >= 100 && code <= 699)
        return (enum metrics_code)(METRICS_CODE_1XX + (code / 100 - 1));
    return METRICS_CODE_5XX;
}

struct metrics {
    unsigned nshards;
    struct metrics_shard *shards;
    metrics_gauge_fn fn[METRICS_COUNT];
    void *fn_arg[METRICS_COUNT];
};

struct metrics *metrics_new(unsigned workers)
{
    if (!workers)
        workers = 1;
    struct metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->shards = aligned_alloc(64, sizeof(struct metrics_shard) * workers);
    if (!m->shards) {
        free(m);
        return NULL;
    }
    memset(m->shards, 0, sizeof(struct metrics_shard) * workers);
    m->nshards = workers;
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    free(m->shards);
    free(m);
}

struct metrics_shard *metrics_shard(struct metrics *m, unsigned i)
{
    return i < m->nshards ? &m->shards[i] : NULL;
}

int metrics_set_gauge_fn(struct metrics *m, enum metrics_id id, metrics_gauge_fn fn, void *arg)
{
    if ((unsigned)id >= METRICS_COUNT || metrics_descs[id].type != METRICS_GAUGE_FN)
        return -EINVAL;
    m->fn[id] = fn;
    m->fn_arg[id] = arg;
    return 0;
}

uint64_t metrics_sum(struct metrics *m, unsigned slot)
{
    uint64_t s = 0;
    for (unsigned i = 0; i < m->nshards; i++)
        s += __atomic_load_n(&m->shards[i].v[slot], __ATOMIC_RELAXED);
    return s;
}

/* ---- rendering ------------------------------------------------------------------------- */

struct obuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void ob_put(struct obuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void ob_str(struct obuf *b, const char *s)
{
    ob_put(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void ob_fmt(struct obuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        ob_put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Label value escaping of the text format: backslash, double quote and line feed. */
static void ob_label_value(struct obuf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            ob_str(b, "\\\\");
        else if (*s == '"')
            ob_str(b, "\\\"");
        else if (*s == '\n')
            ob_str(b, "\\n");
        else
            ob_put(b, s, 1);
    }
}

/* HELP escaping: backslash and line feed. */
static void ob_help(struct obuf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            ob_str(b, "\\\\");
        else if (*s == '\n')
            ob_str(b, "\\n");
        else
            ob_put(b, s, 1);
    }
}

/* `{a="x",b="y"` + extra (e.g. le) + `}`; nothing when there are no labels and no extra. */
static void ob_labels(struct obuf *b, const struct metrics_desc *d, const char *const *vals,
                      const char *extra_name, const char *extra_val)
{
    bool any = false;
    for (int k = 0; k < 3; k++) {
        if (d->ls[k] == METRICS_LS_NONE)
            continue;
        ob_str(b, any ? "," : "{");
        ob_str(b, labelsets[d->ls[k]].name);
        ob_str(b, "=\"");
        ob_label_value(b, vals[k]);
        ob_str(b, "\"");
        any = true;
    }
    if (extra_name) {
        ob_str(b, any ? "," : "{");
        ob_str(b, extra_name);
        ob_str(b, "=\"");
        ob_str(b, extra_val);
        ob_str(b, "\"");
        any = true;
    }
    if (any)
        ob_str(b, "}");
}

struct metrics_sink {
    struct obuf *b;
    const struct metrics_desc *d;
};

void metrics_sink_put(struct metrics_sink *sink, const char *const *label_values, int64_t value)
{
    const char *vals[3] = {"", "", ""};
    int j = 0;
    for (int k = 0; k < 3; k++)
        if (sink->d->ls[k] != METRICS_LS_NONE) {
            const char *v = label_values[j++];
            vals[k] = v ? v : "";
        }
    ob_str(sink->b, sink->d->name);
    ob_labels(sink->b, sink->d, vals, NULL, NULL);
    ob_fmt(sink->b, " %lld\n", (long long)value);
}

static const char *type_name(enum metrics_type t)
{
    switch (t) {
    case METRICS_COUNTER:
        return "counter";
    case METRICS_HISTOGRAM:
        return "histogram";
    default:
        return "gauge";
    }
}

static void render_metric(struct metrics *m, struct obuf *b, enum metrics_id id)
{
    const struct metrics_desc *d = &metrics_descs[id];
    ob_str(b, "# HELP ");
    ob_str(b, d->name);
    ob_str(b, " ");
    ob_help(b, d->help);
    ob_str(b, "\n# TYPE ");
    ob_str(b, d->name);
    ob_str(b, " ");
    ob_str(b, type_name(d->type));
    ob_str(b, "\n");
    if (d->type == METRICS_GAUGE_FN) {
        if (m->fn[id]) {
            struct metrics_sink sink = {b, d};
            m->fn[id](m->fn_arg[id], &sink);
        }
        return;
    }
    for (unsigned a = 0; a < d->card[0]; a++) {
        for (unsigned bb = 0; bb < d->card[1]; bb++) {
            for (unsigned c = 0; c < d->card[2]; c++) {
                const char *vals[3];
                unsigned idx[3] = {a, bb, c};
                for (int k = 0; k < 3; k++) {
                    const char *const *v = labelsets[d->ls[k]].values;
                    vals[k] = v ? v[idx[k]] : "";
                }
                unsigned slot = metrics_slot(id, a, bb, c);
                if (d->type == METRICS_HISTOGRAM) {
                    uint64_t cum = 0;
                    for (unsigned k = 0; k < METRICS_HIST_BUCKETS; k++) {
                        cum += metrics_sum(m, slot + k);
                        ob_str(b, d->name);
                        ob_str(b, "_bucket");
                        ob_labels(b, d, vals, "le", bucket_le[k]);
                        ob_fmt(b, " %llu\n", (unsigned long long)cum);
                    }
                    uint64_t us = metrics_sum(m, slot + METRICS_HIST_BUCKETS);
                    ob_str(b, d->name);
                    ob_str(b, "_sum");
                    ob_labels(b, d, vals, NULL, NULL);
                    ob_fmt(b, " %llu.%06llu\n", (unsigned long long)(us / 1000000),
                           (unsigned long long)(us % 1000000));
                    ob_str(b, d->name);
                    ob_str(b, "_count");
                    ob_labels(b, d, vals, NULL, NULL);
                    ob_fmt(b, " %llu\n", (unsigned long long)cum);
                } else {
                    uint64_t v = metrics_sum(m, slot);
                    ob_str(b, d->name);
                    ob_labels(b, d, vals, NULL, NULL);
                    if (d->type == METRICS_GAUGE)
                        ob_fmt(b, " %lld\n", (long long)(int64_t)v);
                    else
                        ob_fmt(b, " %llu\n", (unsigned long long)v);
                }
            }
        }
    }
}

char *metrics_render(struct metrics *m, size_t *len)
{
    struct obuf b = {0};
    for (unsigned id = 0; id < METRICS_COUNT; id++)
        render_metric(m, &b, (enum metrics_id)id);
    if (b.oom || !b.p) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

void metrics_write_reference(FILE *f)
{
    fprintf(f, "| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for (unsigned id = 0; id < METRICS_COUNT; id++) {
        const struct metrics_desc *d = &metrics_descs[id];
        fprintf(f, "| `%s` | %s | ", d->name, type_name(d->type));
        bool any = false;
        for (int k = 0; k < 3; k++) {
            const struct labelset *ls = &labelsets[d->ls[k]];
            if (d->ls[k] == METRICS_LS_NONE)
                continue;
            fprintf(f, "%s`%s`", any ? "; " : "", ls->name);
            if (ls->values) {
                fprintf(f, ": ");
                for (unsigned v = 0; v < d->card[k]; v++)
                    fprintf(f, "%s%s", v ? ", " : "", ls->values[v]);
            }
            any = true;
        }
        fprintf(f, "%s | %s |\n", any ? "" : "-", d->help);
    }
}
