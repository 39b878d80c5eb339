// SPDX-License-Identifier: MIT
// Metrics registry: one X-macro line per metric; per-worker shards of plain uint64 counters
// (single writer, relaxed atomics), summed at scrape into Prometheus text format 0.0.4.
#ifndef SIPEDGE_CORE_METRICS_H
#define SIPEDGE_CORE_METRICS_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- label values -------------------------------------------------------------------------
 * Every label has a small fixed set of values, given by an enum here; the names exposed are in
 * metrics.c (same order). Callers map their own enums onto these. */

enum metrics_method {
    METRICS_METHOD_REGISTER = 0,
    METRICS_METHOD_OPTIONS,
    METRICS_METHOD_OTHER,
    METRICS_METHOD_INVITE,
    METRICS_METHOD_ACK,
    METRICS_METHOD_BYE,
    METRICS_METHOD_CANCEL,
    /* METRICS_METHOD_COUNT */
    METRICS_METHOD_COUNT
};

/** Response codes: the exact codes the edge makes or relays often, else the class. */
enum metrics_code {
    METRICS_CODE_100 = 0,
    METRICS_CODE_200,
    METRICS_CODE_400,
    METRICS_CODE_403,
    METRICS_CODE_404,
    METRICS_CODE_407,
    METRICS_CODE_408,
    METRICS_CODE_413,
    METRICS_CODE_483,
    METRICS_CODE_500,
    METRICS_CODE_501,
    METRICS_CODE_503,
    METRICS_CODE_1XX,
    METRICS_CODE_2XX,
    METRICS_CODE_3XX,
    METRICS_CODE_4XX,
    METRICS_CODE_5XX,
    METRICS_CODE_6XX,
    /* METRICS_CODE_COUNT */
    METRICS_CODE_COUNT
};

/** Who made a response: the edge itself or the upstream (relayed). */
enum metrics_source {
    METRICS_SOURCE_EDGE = 0,
    METRICS_SOURCE_UPSTREAM,
    /* METRICS_SOURCE_COUNT */
    METRICS_SOURCE_COUNT
};

enum metrics_auth_result {
    METRICS_AUTH_OK = 0,
    METRICS_AUTH_NO_CREDENTIALS,
    METRICS_AUTH_MALFORMED,
    METRICS_AUTH_BAD_SIGNATURE,
    METRICS_AUTH_UNKNOWN_KID,
    METRICS_AUTH_BAD_ALG,
    METRICS_AUTH_BAD_ISS,
    METRICS_AUTH_BAD_AUD,
    METRICS_AUTH_EXPIRED,
    METRICS_AUTH_NOT_YET_VALID,
    METRICS_AUTH_REVOKED,
    METRICS_AUTH_INSUFFICIENT_SCOPE,
    METRICS_AUTH_IDENTITY_MISMATCH,
    METRICS_AUTH_DECRYPT,
    METRICS_AUTH_ERROR,
    /* METRICS_AUTH_RESULT_COUNT */
    METRICS_AUTH_RESULT_COUNT
};

/** Where an auth decision came from. */
enum metrics_auth_layer {
    METRICS_LAYER_L1 = 0, /* worker cache */
    METRICS_LAYER_L2,     /* Redis */
    METRICS_LAYER_VERIFY, /* full verification */
    /* METRICS_LAYER_COUNT */
    METRICS_LAYER_COUNT
};

enum metrics_tls_side {
    METRICS_SIDE_CLIENT = 0, /* we are the server */
    METRICS_SIDE_UPSTREAM,   /* we are the client of UCM */
    /* METRICS_SIDE_COUNT */
    METRICS_SIDE_COUNT
};

enum metrics_tls_version {
    METRICS_TLS_12 = 0,
    METRICS_TLS_13,
    /* METRICS_TLS_VERSION_COUNT */
    METRICS_TLS_VERSION_COUNT
};

/** Which record layer carries an established connection. */
enum metrics_tls_records {
    METRICS_RECORDS_SIPEDGE = 0, /* tls/tls_rec.c: the SSL object was freed */
    METRICS_RECORDS_OPENSSL,
    /* METRICS_RECORDS_COUNT */
    METRICS_RECORDS_COUNT
};

enum metrics_tls_cause {
    METRICS_TLS_TIMEOUT = 0,
    METRICS_TLS_PROTOCOL,         /* not TLS, version or cipher mismatch */
    METRICS_TLS_ALERT_UNKNOWN_CA, /* alert received from the peer */
    METRICS_TLS_ALERT_BAD_CERTIFICATE,
    METRICS_TLS_ALERT_CERTIFICATE_UNKNOWN,
    METRICS_TLS_ALERT_ACCESS_DENIED,
    METRICS_TLS_ALERT_HANDSHAKE_FAILURE,
    METRICS_TLS_ALERT_OTHER,
    METRICS_TLS_VERIFY_UNTRUSTED, /* our check of the peer's certificate */
    METRICS_TLS_VERIFY_NAME,
    METRICS_TLS_VERIFY_EXPIRED,
    METRICS_TLS_VERIFY_OTHER,
    METRICS_TLS_NO_CERTIFICATE,
    METRICS_TLS_IO, /* connection reset / closed mid-handshake */
    METRICS_TLS_OTHER,
    /* METRICS_TLS_CAUSE_COUNT */
    METRICS_TLS_CAUSE_COUNT
};

enum metrics_close_reason {
    METRICS_CLOSE_PEER = 0,
    METRICS_CLOSE_IDLE,
    METRICS_CLOSE_HANDSHAKE,
    METRICS_CLOSE_ERROR,
    METRICS_CLOSE_LIMIT,    /* a limit: connections per IP / worker, failed tokens per conn */
    METRICS_CLOSE_GARBAGE,  /* a bad message, answered (400/505/513) before the close */
    METRICS_CLOSE_OVERFLOW, /* output queue over out_queue_max */
    METRICS_CLOSE_DRAIN,
    METRICS_CLOSE_UNFRAMEABLE,     /* bytes with nothing to answer to: closed without a word */
    METRICS_CLOSE_MESSAGE_TIMEOUT, /* a message not complete in listen.limits.message_timeout_ms */
    /* METRICS_CLOSE_COUNT */
    METRICS_CLOSE_COUNT
};

/** Messages dropped by design (each is counted, DESIGN.md principle 4). */
enum metrics_drop {
    METRICS_DROP_VIA_NOT_OURS = 0,
    METRICS_DROP_CLIENT_GONE,
    METRICS_DROP_STALE_TRANSACTION,
    METRICS_DROP_UNEXPECTED,
    /* METRICS_DROP_COUNT */
    METRICS_DROP_COUNT
};

/** Why a bearer token was refused before any verification, or its connection closed. */
enum metrics_auth_refusal {
    METRICS_REFUSED_SOURCE_BUDGET = 0, /* 503: the source address spent its verifications */
    METRICS_REFUSED_FAILED_TOKENS,     /* connection closed after too many rejected tokens */
    METRICS_REFUSED_WORKER_BUDGET,     /* 503: the worker spent its verifications (all sources) */
    /* METRICS_REFUSAL_COUNT */
    METRICS_REFUSAL_COUNT
};

/** Why a client's request other than REGISTER was not proxied (core/policy.h). */
enum metrics_call_refused {
    METRICS_CALL_UNBOUND = 0, /* 407: no 2xx to a token-verified REGISTER on the connection */
    METRICS_CALL_EXPIRED,     /* 407: the binding token expired */
    METRICS_CALL_WRONG_USER,  /* 403: From is another user */
    METRICS_CALL_BAD_FROM,    /* 403: From without a user */
    METRICS_CALL_LIMIT,       /* 503: the connection has max_transactions_per_conn open */
    /* METRICS_CALL_REFUSED_COUNT */
    METRICS_CALL_REFUSED_COUNT
};

/** Why a REGISTER (or another request carrying its own token) was shed with 503. */
enum metrics_shed_reason {
    METRICS_SHED_UPSTREAM_PENDING = 0, /* the worker has upstream.max_pending waiting for UCM */
    METRICS_SHED_QUEUE_DELAY,          /* it waited over listen.limits.max_queue_delay_ms */
    /* METRICS_SHED_REASON_COUNT */
    METRICS_SHED_REASON_COUNT
};

/** Why a request from UCM could not reach its client. */
enum metrics_flow_failure {
    METRICS_FLOW_GONE = 0, /* 430: the flow's connection closed */
    METRICS_FLOW_FORGED,   /* 403: a flow token this pod did not mint */
    /* METRICS_FLOW_FAILURE_COUNT */
    METRICS_FLOW_FAILURE_COUNT
};

/** Why a connection to the UCM listener was refused (its TLS handshake failed on the peer). */
enum metrics_ucm_refused {
    METRICS_UCM_NO_CERTIFICATE = 0, /* no client certificate */
    METRICS_UCM_UNTRUSTED,          /* not chained to ucm_listen.tls.ca (or expired) */
    METRICS_UCM_NAME_NOT_ALLOWED,   /* chained, but carries no name of ucm_listen.node_names */
    /* METRICS_UCM_REFUSED_COUNT */
    METRICS_UCM_REFUSED_COUNT
};

/** Which way a proxied request went. */
enum metrics_direction {
    METRICS_DIR_TO_UCM = 0,
    METRICS_DIR_TO_CLIENT,
    /* METRICS_DIR_COUNT */
    METRICS_DIR_COUNT
};

enum metrics_redis_result {
    METRICS_REDIS_HIT = 0,
    METRICS_REDIS_MISS,
    METRICS_REDIS_STORED,
    METRICS_REDIS_BAD_HMAC,
    METRICS_REDIS_ERROR,
    METRICS_REDIS_TIMEOUT,
    METRICS_REDIS_BREAKER_OPEN,
    /* METRICS_REDIS_COUNT */
    METRICS_REDIS_COUNT
};

/* X(id, label name, value count). Values of DYN sets come from a gauge callback. */
#define METRICS_LABELSETS(X)                                                                       \
    X(NONE, "", 1)                                                                                 \
    X(METHOD, "method", METRICS_METHOD_COUNT)                                                      \
    X(CODE, "code", METRICS_CODE_COUNT)                                                            \
    X(SOURCE, "source", METRICS_SOURCE_COUNT)                                                      \
    X(AUTH_RESULT, "result", METRICS_AUTH_RESULT_COUNT)                                            \
    X(AUTH_LAYER, "layer", METRICS_LAYER_COUNT)                                                    \
    X(TLS_SIDE, "side", METRICS_SIDE_COUNT)                                                        \
    X(TLS_CAUSE, "cause", METRICS_TLS_CAUSE_COUNT)                                                 \
    X(TLS_VERSION, "version", METRICS_TLS_VERSION_COUNT)                                           \
    X(TLS_RECORDS, "records", METRICS_RECORDS_COUNT)                                               \
    X(CLOSE_REASON, "reason", METRICS_CLOSE_COUNT)                                                 \
    X(DROP_REASON, "reason", METRICS_DROP_COUNT)                                                   \
    X(REDIS_RESULT, "result", METRICS_REDIS_COUNT)                                                 \
    X(AUTH_REFUSAL, "reason", METRICS_REFUSAL_COUNT)                                               \
    X(CALL_REFUSED, "reason", METRICS_CALL_REFUSED_COUNT)                                          \
    X(SHED_REASON, "reason", METRICS_SHED_REASON_COUNT)                                            \
    X(FLOW_FAILURE, "reason", METRICS_FLOW_FAILURE_COUNT)                                          \
    X(UCM_REFUSED, "cause", METRICS_UCM_REFUSED_COUNT)                                             \
    X(DIRECTION, "direction", METRICS_DIR_COUNT)                                                   \
    X(DYN_NODE, "node", 1)                                                                         \
    X(DYN_STATE, "state", 1)

enum metrics_labelset {
#define METRICS__X(id, name, n) METRICS_LS_##id,
    METRICS_LABELSETS(METRICS__X)
#undef METRICS__X
    /* METRICS_LS_COUNT */
    METRICS_LS_COUNT
};

enum {
#define METRICS__X(id, name, n) METRICS_CARD_##id = (n),
    METRICS_LABELSETS(METRICS__X)
#undef METRICS__X
};

enum metrics_type {
    METRICS_COUNTER = 0,
    METRICS_GAUGE,     /* per-worker value, summed over workers */
    METRICS_HISTOGRAM, /* latency: fixed log-linear buckets, observed in microseconds */
    METRICS_GAUGE_FN,  /* values (and label values) produced by a callback at scrape */
    /* METRICS_TYPE_COUNT */
    METRICS_TYPE_COUNT
};

/** Histogram buckets: 50us .. 10s in 1-2.5-5 steps, then +Inf. */
#define METRICS_HIST_BUCKETS 18
/** Slots of one histogram: its buckets (not cumulative) then the sum in microseconds. */
#define METRICS_HIST_WIDTH (METRICS_HIST_BUCKETS + 1)

/* ---- the registry: one line per metric ----------------------------------------------------
 * X(id, name, type, help, labelset 1, labelset 2, labelset 3). Counters end in _total. */
#define METRICS_TABLE(X)                                                                           \
    X(SIP_REQUESTS, "sipedge_sip_requests_total", METRICS_COUNTER,                                 \
      "SIP requests received from clients.", METHOD, NONE, NONE)                                   \
    X(SIP_RESPONSES, "sipedge_sip_responses_total", METRICS_COUNTER,                               \
      "Final SIP responses the edge sent: its own (source edge) or relayed (source upstream: "     \
      "from "                                                                                      \
      "UCM to a client, or from a client to UCM for a request UCM sent it).",                      \
      METHOD, CODE, SOURCE)                                                                        \
    X(SIP_DROPPED, "sipedge_sip_dropped_total", METRICS_COUNTER,                                   \
      "SIP messages dropped by design.", DROP_REASON, NONE, NONE)                                  \
    X(AUTH_RESULTS, "sipedge_auth_results_total", METRICS_COUNTER,                                 \
      "Bearer token decisions by result and by the layer that decided.", AUTH_RESULT, AUTH_LAYER,  \
      NONE)                                                                                        \
    X(AUTH_REFUSED, "sipedge_auth_refused_total", METRICS_COUNTER,                                 \
      "Bearer tokens refused without a verification (source_budget: the source over its budget; "  \
      "worker_budget: the worker over its own, all sources together) and client connections "      \
      "closed after too many rejected tokens.",                                                    \
      AUTH_REFUSAL, NONE, NONE)                                                                    \
    X(REGISTERS_SHED, "sipedge_registers_shed_total", METRICS_COUNTER,                             \
      "REGISTERs (and other requests carrying their own token) answered 503 + Retry-After at "     \
      "once, before their token was checked: upstream_pending, the worker already had "            \
      "upstream.max_pending waiting for UCM (or Redis); queue_delay, the request had waited "      \
      "longer than listen.limits.max_queue_delay_ms since it reached the host (the worker is "     \
      "behind: its CPU is short).",                                                                \
      SHED_REASON, NONE, NONE)                                                                     \
    X(CALLS_FORWARDED, "sipedge_calls_forwarded_total", METRICS_COUNTER,                           \
      "Requests other than REGISTER proxied, by method and direction (to_ucm: from a client).",    \
      METHOD, DIRECTION, NONE)                                                                     \
    X(CALLS_REFUSED, "sipedge_calls_refused_total", METRICS_COUNTER,                               \
      "Client requests other than REGISTER refused by the connection binding (unbound, expired: "  \
      "407; wrong_user, bad_from: 403) or its limit of open transactions (limit: 503).",           \
      CALL_REFUSED, NONE, NONE)                                                                    \
    X(FLOW_FAILURES, "sipedge_flow_failures_total", METRICS_COUNTER,                               \
      "Requests from UCM that could not reach their client (gone: 430 Flow Failed; forged: 403).", \
      FLOW_FAILURE, NONE, NONE)                                                                    \
    X(UCM_PEERS_REFUSED, "sipedge_ucm_peers_refused_total", METRICS_COUNTER,                       \
      "Connections to the UCM listener refused in the handshake, by cause.", UCM_REFUSED, NONE,    \
      NONE)                                                                                        \
    X(AUTH_L1_BYTES, "sipedge_auth_l1_token_bytes", METRICS_GAUGE,                                 \
      "Bytes of valid-token copies held by the L1 caches (bounded by auth.cache.l1_max_bytes "     \
      "per worker).",                                                                              \
      NONE, NONE, NONE)                                                                            \
    X(AUTH_L1_ENTRIES, "sipedge_auth_l1_entries", METRICS_GAUGE,                                   \
      "Entries held by the L1 caches, valid and refused tokens (bounded by "                       \
      "auth.cache.l1_capacity "                                                                    \
      "per worker).",                                                                              \
      NONE, NONE, NONE)                                                                            \
    X(REDIS_RESULTS, "sipedge_redis_results_total", METRICS_COUNTER,                               \
      "Shared token cache operations by result.", REDIS_RESULT, NONE, NONE)                        \
    X(TLS_HANDSHAKES, "sipedge_tls_handshakes_total", METRICS_COUNTER,                             \
      "Completed client TLS handshakes by version and the record layer that carries the "          \
      "connection after it.",                                                                      \
      TLS_VERSION, TLS_RECORDS, NONE)                                                              \
    X(TLS_HANDSHAKE_FAILURES, "sipedge_tls_handshake_failures_total", METRICS_COUNTER,             \
      "Failed TLS handshakes by side and cause.", TLS_SIDE, TLS_CAUSE, NONE)                       \
    X(TLS_HANDSHAKES_IN_FLIGHT, "sipedge_tls_handshakes_in_flight", METRICS_GAUGE,                 \
      "Client TLS handshakes past their first step, waiting for the client (at most "              \
      "listen.limits.max_handshakes_in_flight per worker; further ClientHellos wait).",            \
      NONE, NONE, NONE)                                                                            \
    X(TLS_CLIENT_HELLOS_WAITING, "sipedge_tls_client_hellos_waiting", METRICS_GAUGE,               \
      "Client connections whose first TLS handshake step waits: for the end of the loop turn, "    \
      "for listen.limits.max_handshakes_in_flight or for their source's share of it.",             \
      NONE, NONE, NONE)                                                                            \
    X(TLS_CLIENT_HELLOS_HELD, "sipedge_tls_client_hellos_held_total", METRICS_COUNTER,             \
      "ClientHellos set aside because their source (an IPv4 address, an IPv6 /64) had a "          \
      "sixteenth of listen.limits.max_handshakes_in_flight in flight, or more than that waiting: " \
      "answered after other sources' and only while less than half the cap is in flight.",         \
      NONE, NONE, NONE)                                                                            \
    X(TLS_CLIENT_HELLOS_EXPIRED, "sipedge_tls_client_hellos_expired_total", METRICS_COUNTER,       \
      "Client connections cut at the handshake deadline while their ClientHello still waited for " \
      "the edge (the slice, the cap or their source's share): the workers could not answer a "     \
      "storm within listen.limits.handshake_timeout_ms. Also counted as handshake timeouts.",      \
      NONE, NONE, NONE)                                                                            \
    X(CONNECTIONS_ACCEPTED, "sipedge_connections_accepted_total", METRICS_COUNTER,                 \
      "Client connections accepted.", NONE, NONE, NONE)                                            \
    X(CONNECTIONS_CLOSED, "sipedge_connections_closed_total", METRICS_COUNTER,                     \
      "Client connections closed by reason (garbage: a bad message answered, then closed; "        \
      "unframeable: nothing to answer to, closed without a word).",                                \
      CLOSE_REASON, NONE, NONE)                                                                    \
    X(CONNECTIONS_OPEN, "sipedge_client_connections", METRICS_GAUGE, "Client connections open.",   \
      NONE, NONE, NONE)                                                                            \
    X(TRANSACTIONS_OPEN, "sipedge_transactions", METRICS_GAUGE,                                    \
      "Transactions waiting for an upstream answer.", NONE, NONE, NONE)                            \
    X(UPSTREAM_FAILOVERS, "sipedge_upstream_failovers_total", METRICS_COUNTER,                     \
      "Requests sent past the preferred node because it was down, or sent again after their "      \
      "upstream connection died.",                                                                 \
      NONE, NONE, NONE)                                                                            \
    X(UPSTREAM_CONNECTIONS, "sipedge_upstream_connections", METRICS_GAUGE_FN,                      \
      "Upstream connections by node and state.", DYN_NODE, DYN_STATE, NONE)                        \
    X(RELOAD_LAST_OK, "sipedge_reload_last_successful", METRICS_GAUGE_FN,                          \
      "1 when the last reload of certificates and keys (SIGHUP or a watched file change) "         \
      "succeeded or none was tried, 0 when it failed and the previous ones are still in use.",     \
      NONE, NONE, NONE)                                                                            \
    X(RELOAD_LAST_OK_TIME, "sipedge_reload_last_success_timestamp_seconds", METRICS_GAUGE_FN,      \
      "When certificates and keys were last loaded (start or reload), in Unix seconds.", NONE,     \
      NONE, NONE)                                                                                  \
    X(REGISTER_DURATION, "sipedge_register_duration_seconds", METRICS_HISTOGRAM,                   \
      "REGISTER that went to UCM (or waited on Redis), from its arrival to its final response "    \
      "queued.",                                                                                   \
      NONE, NONE, NONE)                                                                            \
    X(UPSTREAM_DURATION, "sipedge_upstream_duration_seconds", METRICS_HISTOGRAM,                   \
      "Request forwarded to upstream to its final response received.", NONE, NONE, NONE)           \
    X(WORKER_TURN_DURATION, "sipedge_worker_turn_duration_seconds", METRICS_HISTOGRAM,             \
      "One turn of a worker's event loop: from its wake-up to the end of what the wake-up "        \
      "brought (every connection of the worker waits up to that long; long turns mean the "        \
      "worker is saturated, e.g. by a reconnect storm's TLS handshakes).",                         \
      NONE, NONE, NONE)                                                                            \
    X(AUTH_VERIFY_DURATION, "sipedge_auth_verify_duration_seconds", METRICS_HISTOGRAM,             \
      "Full token verification (signature and claims).", NONE, NONE, NONE)

enum metrics_id {
#define METRICS__X(id, ...) METRIC_##id,
    METRICS_TABLE(METRICS__X)
#undef METRICS__X
    /* METRICS_COUNT */
    METRICS_COUNT
};

#define METRICS__WIDTH(type)                                                                       \
    ((type) == METRICS_HISTOGRAM ? METRICS_HIST_WIDTH : (type) == METRICS_GAUGE_FN ? 0 : 1)

/* Slot ranges: METRICS_SLOT_<id> is the first uint64 of a metric in a shard. */
enum metrics_slot {
#define METRICS__X(id, name, type, help, a, b, c)                                                  \
    METRICS_SLOT_##id,                                                                             \
        METRICS_SLOT_LAST_##id =                                                                   \
            METRICS_SLOT_##id +                                                                    \
            METRICS__WIDTH(type) * METRICS_CARD_##a * METRICS_CARD_##b * METRICS_CARD_##c - 1,
    METRICS_TABLE(METRICS__X)
#undef METRICS__X
    /* METRICS_SLOTS */
    METRICS_SLOTS
};

/** One worker's counters. Written only by its worker; read by the scraping thread. */
struct metrics_shard {
    uint64_t v[METRICS_SLOTS];
} __attribute__((aligned(64)));

/** What the registry knows about a metric (metrics_descs[id]). */
struct metrics_desc {
    const char *name;
    const char *help;
    enum metrics_type type;
    uint32_t base;    /* first slot */
    uint8_t ls[3];    /* enum metrics_labelset */
    uint16_t card[3]; /* values per label (1 for NONE) */
};

/** The table, indexed by enum metrics_id. */
extern const struct metrics_desc metrics_descs[METRICS_COUNT];

struct metrics;
struct metrics_sink;

/**
 * A GAUGE_FN callback: called on the scraping thread; emits any number of samples with
 * metrics_sink_put(). Must read worker state only through relaxed atomics or its own locks.
 */
typedef void (*metrics_gauge_fn)(void *arg, struct metrics_sink *sink);

/**
 * Create a registry with `workers` zeroed shards (at least 1). Returns NULL on ENOMEM (start-up
 * only). Free with metrics_free().
 */
struct metrics *metrics_new(unsigned workers);

/** Free `m` (NULL: no-op). No worker may still write its shard. */
void metrics_free(struct metrics *m);

/** Worker `i`'s shard (i < workers); the worker keeps the pointer. */
struct metrics_shard *metrics_shard(struct metrics *m, unsigned i);

/**
 * Register the callback of GAUGE_FN metric `id`. Call before the admin thread starts.
 * Returns 0, or -EINVAL when `id` is not a GAUGE_FN.
 */
int metrics_set_gauge_fn(struct metrics *m, enum metrics_id id, metrics_gauge_fn fn, void *arg);

/**
 * Emit one sample from a gauge callback: `label_values` has one string per label of the metric
 * (escaped here), `value` the gauge value.
 */
void metrics_sink_put(struct metrics_sink *sink, const char *const *label_values, int64_t value);

/**
 * Render every metric, summed over shards, as Prometheus text format 0.0.4 (HELP, TYPE,
 * samples; label values escaped). Any thread. Returns a malloc'd NUL-terminated text (caller
 * frees) with its length in `*len`, or NULL on ENOMEM.
 */
char *metrics_render(struct metrics *m, size_t *len);

/**
 * Write the reference table of every metric (name, type, labels with their values, meaning) as
 * Markdown to `f`: the body of docs/metrics.md, generated so it cannot drift from the table.
 */
void metrics_write_reference(FILE *f);

/** The code label of SIP status `code`: an exact code when listed, else its class. */
enum metrics_code metrics_code_of(int code);

/** Sum of one slot over all shards (tests, readiness). */
uint64_t metrics_sum(struct metrics *m, unsigned slot);

/** The slot of metric `id` at label indexes `a`, `b`, `c` (0 for absent labels). */
static inline unsigned metrics_slot(enum metrics_id id, unsigned a, unsigned b, unsigned c)
{
    const struct metrics_desc *d = &metrics_descs[id];
    assert(a < d->card[0] && b < d->card[1] && c < d->card[2]);
    unsigned w = d->type == METRICS_HISTOGRAM ? METRICS_HIST_WIDTH : 1;
    return d->base + ((a * d->card[1] + b) * d->card[2] + c) * w;
}

static inline void metrics__add_slot(struct metrics_shard *s, unsigned slot, uint64_t n)
{
    uint64_t *p = &s->v[slot];
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

/** Bucket index of an observation of `us` microseconds. */
unsigned metrics_bucket_of(uint64_t us);

static inline void metrics__observe(struct metrics_shard *s, unsigned slot, uint64_t us)
{
    metrics__add_slot(s, slot + metrics_bucket_of(us), 1);
    metrics__add_slot(s, slot + METRICS_HIST_BUCKETS, us);
}

static inline void metrics__set_slot(struct metrics_shard *s, unsigned slot, int64_t v)
{
    __atomic_store_n(&s->v[slot], (uint64_t)v, __ATOMIC_RELAXED);
}

#define METRICS__F4(...)               METRICS__F4_(__VA_ARGS__)
#define METRICS__F4_(id, a, b, c, ...) (id), (a), (b), (c)

/**
 * Worker-side updates (owning worker only; no locks, no contended atomics):
 *   metrics_inc(shard, METRIC_SIP_REQUESTS, METRICS_METHOD_REGISTER);
 *   metrics_add(shard, n, METRIC_X[, a[, b[, c]]]);
 *   metrics_gauge_add(shard, -1, METRIC_CONNECTIONS_OPEN);   (GAUGE: summed over workers)
 *   metrics_gauge_set(shard, v, METRIC_TRANSACTIONS_OPEN);
 *   metrics_observe_us(shard, us, METRIC_REGISTER_DURATION);
 * Label arguments are the label enums in table order; omitted ones are 0.
 */
#define metrics_inc(s, ...)                                                                        \
    metrics__add_slot((s), metrics_slot(METRICS__F4(__VA_ARGS__, 0, 0, 0, 0)), 1)
#define metrics_add(s, n, ...)                                                                     \
    metrics__add_slot((s), metrics_slot(METRICS__F4(__VA_ARGS__, 0, 0, 0, 0)), (n))
#define metrics_gauge_add(s, n, ...)                                                               \
    metrics__add_slot((s), metrics_slot(METRICS__F4(__VA_ARGS__, 0, 0, 0, 0)),                     \
                      (uint64_t)(int64_t)(n))
#define metrics_gauge_set(s, v, ...)                                                               \
    metrics__set_slot((s), metrics_slot(METRICS__F4(__VA_ARGS__, 0, 0, 0, 0)), (int64_t)(v))
#define metrics_observe_us(s, us, ...)                                                             \
    metrics__observe((s), metrics_slot(METRICS__F4(__VA_ARGS__, 0, 0, 0, 0)), (us))

#endif
