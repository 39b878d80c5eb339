// SPDX-License-Identifier: MIT
// The REGISTER proxy of one worker (SPEC.md sections 3 and 4), sans IO: it takes scanned SIP
// messages from clients and from UCM, decides, and hands gather lists back to the glue that owns
// the connections. A per-worker transaction table maps our Via branch back to the client.
#ifndef SIPEDGE_CORE_PROXY_H
#define SIPEDGE_CORE_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/flow.h"
#include "core/sip.h"
#include "core/slice.h"

struct auth_worker;
struct policy_binding;

/** Retry-After of the 503 for a source over its verification budget (buckets refill each second).
 */
#define PROXY_THROTTLE_RETRY_S 1
struct metrics_shard;

/** Where the glue's pool put a request (filled by `upstream_send` / `upstream_pick`). */
struct proxy_sent {
    uint32_t conn_id; /* the upstream connection: proxy_on_upstream_gone() names it */
    bool failover;    /* sent past the preferred node because that one is not up */
    int node;         /* upstream_pick: the node index */
};

/** What the proxy needs from the worker that owns the sockets. All called on the worker thread. */
struct proxy_env {
    void *ctx;
    /**
     * Encrypt and queue `iov[0..n)` (one whole SIP message) to client connection `client_id`.
     * Returns >= 0, or -ENOTCONN when that client is gone (the proxy counts a drop), or another
     * -errno (the glue closes that client).
     */
    int (*client_send)(void *ctx, uint32_t client_id, const struct slice *iov, size_t n);
    /**
     * Queue one whole request to a healthy upstream node (the glue's pool chooses node and
     * connection, and says which in `*sent`). Returns >= 0, or -EHOSTUNREACH when no node is
     * usable (the proxy answers 503 with Retry-After), or another -errno (also 503).
     */
    int (*upstream_send)(void *ctx, const struct slice *iov, size_t n, struct proxy_sent *sent);
    /**
     * Optional (NULL: no per-source budget). Fills `addr` (16 bytes, budget_addr_of_fd()) with
     * the source address of client `client_id`; returns false when unknown.
     */
    bool (*client_source)(void *ctx, uint32_t client_id, uint8_t *addr);
    /**
     * Optional. Client `client_id` was just answered for a rejected token (its 407/403 is queued);
     * the glue counts and may close the connection once the answer is out.
     */
    void (*client_token_failed)(void *ctx, uint32_t client_id);
    /**
     * Optional (NULL: no admission by queueing delay). How long the request being handled from
     * client `client_id` has waited since its last byte reached the host, in microseconds; 0 when
     * not known.
     */
    uint64_t (*client_waited_us)(void *ctx, uint32_t client_id);

    /* ---- calls (issue 9). Optional: without them only REGISTER and OPTIONS are served and
     * every other request is answered 501 (the REGISTER unit tests run so). ---- */
    /** The binding record of client `client_id` (core/policy.h), NULL when it is gone. */
    struct policy_binding *(*client_binding)(void *ctx, uint32_t client_id);
    /** Choose an upstream connection: node `node` only (>= 0) or by policy (-1); fills `sent`
     *  (conn_id, node, failover) and returns the node, or -EHOSTUNREACH / another -errno. */
    int (*upstream_pick)(void *ctx, int node, struct proxy_sent *sent);
    /** Queue one whole message on UCM-side connection `conn_id` of this worker (a pooled
     *  upstream connection or one UCM opened to the UCM listener). -ENOTCONN when gone. */
    int (*peer_send)(void *ctx, uint32_t conn_id, const struct slice *iov, size_t n);
    /**
     * Deliver one whole request to the client connection flow `f` names, on whichever worker
     * owns it. Returns 0 when sent (this worker) or handed over (another worker: if that one
     * finds the connection gone it calls proxy_on_flow_failed(`txn_id`) here later; UINT64_MAX
     * means no callback), -ENOTCONN when the connection is gone (this worker), -ESRCH for a worker
     * index that does not exist.
     */
    int (*flow_send)(void *ctx, const struct flow *f, uint64_t txn_id, const struct slice *iov,
                     size_t n);
    /** Hand a client's response (whole message) for a transaction of worker `worker` to that
     *  worker, which calls proxy_on_posted_response() with `client_id` (this worker's index
     *  and the client's connection id, to check the response came from the flow it was sent
     *  to). */
    void (*response_post)(void *ctx, unsigned worker, uint32_t client_id, const struct slice *iov,
                          size_t n);
};

/** Per-worker settings (copied by proxy_new; strings are copied too). */
struct proxy_cfg {
    unsigned worker;        /* this worker's index: encoded in our Via branch */
    const char *realm;      /* "ccmsipline" */
    const char *server;     /* Server header value, "sipedge/0.1" */
    const char *via_host;   /* sent-by of our Via and host of our Path, e.g. "edge.example.com" */
    uint16_t via_port;      /* port of our Via and Path (0: leave it out) */
    bool add_path;          /* insert Path: <sip:via_host:via_port;transport=tls;lr> */
    bool forward_auth;      /* forward Proxy-Authorization to UCM (else strip it) */
    uint32_t timer_f_ms;    /* no final response from UCM within this → 408 (32000) */
    uint32_t retry_after_s; /* Retry-After of our 503 (30) */
    uint32_t max_transactions; /* transaction slots of this worker (power of two, 65536) */
    uint32_t max_pending; /* REGISTERs waiting for UCM or Redis at once; more: 503 (0: no bound) */
    uint32_t max_queue_delay_ms; /* a REGISTER that waited longer before we read it: 503 (0: off) */
    const char *challenge_scope; /* adds scope="…" to the challenge when not NULL */
    const char *challenge_authz_server; /* adds authz_server="…" when not NULL */
    /* calls (issue 9) */
    const char *ucm_host;              /* host UCM reaches the edge by (Path, Via to UCM, the
                                          UCM-side Record-Route); NULL: via_host */
    uint16_t ucm_port;                 /* its port (0: via_port) */
    const struct flow_keys *flow_keys; /* the pod's flow secrets (borrowed); NULL: own random */
    uint32_t t1_ms;                    /* RFC 3261 T1 (500): timers B, F, H, L, CANCEL = 64*T1 */
    uint32_t timer_c_ms;               /* INVITE after a provisional (180000) */
    int64_t leeway_s;                  /* token exp leeway for bound connections (60) */
    uint32_t max_txn_per_conn;         /* open call transactions per client connection (256) */
};

/** Counters of one worker (monotonic; any thread may read them, torn reads are acceptable). */
struct proxy_stats {
    uint64_t requests[SIP_METHOD_COUNT];
    uint64_t answered_by_edge[7]; /* by class: index status/100 (1..6) */
    uint64_t relayed[7];          /* upstream responses relayed, by class */
    uint64_t forwarded;           /* requests sent upstream */
    uint64_t shed;                /* REGISTERs answered 503 over max_pending */
    uint64_t shed_delay;          /* REGISTERs answered 503 over max_queue_delay_ms */
    uint64_t timer_f;             /* 408s made by Timer F */
    uint64_t no_upstream;         /* 503s for no usable node */
    uint64_t resent;              /* requests sent again after their connection closed */
    uint64_t drop_via_not_ours, drop_client_gone, drop_stale, drop_unexpected;
    uint64_t auth_pending;      /* checks parked on Redis */
    uint64_t identity_mismatch; /* valid token, other user: 403 */
    uint64_t transactions_open; /* gauge */
    /* calls */
    uint64_t calls_forwarded[2]; /* requests proxied: [0] client → UCM, [1] UCM → client */
    uint64_t policy_refused[5];  /* by enum policy_verdict (unbound, expired, wrong user...) */
    uint64_t flow_failed;        /* 430s: the flow's connection is gone */
    uint64_t flow_forged;        /* 403s: a forged or malformed flow token */
    uint64_t cancel_no_match;    /* 481s */
    uint64_t txn_limit;          /* 503s: a connection at max_txn_per_conn */
    uint64_t calls_open;         /* gauge: call transactions open */
    uint64_t calls_pending;      /* gauge: ... whose sender has no final answer yet */
};

struct proxy;

/** A worker's proxy. `aw` (borrowed, may be NULL in tests: every Bearer is then invalid) checks
 * tokens; `metrics` (borrowed, may be NULL) is this worker's shard. NULL on ENOMEM. */
struct proxy *proxy_new(const struct proxy_cfg *cfg, const struct proxy_env *env,
                        struct auth_worker *aw, struct metrics_shard *metrics);

/** Answers every open transaction's client with 503 (shutdown) and frees. NULL: no-op. */
void proxy_free(struct proxy *p);

/**
 * One complete request from client `client_id`: `msg` was filled by sip_scan() over `buf`, which
 * the call may read until it returns (it copies what must outlive the call, e.g. a REGISTER parked
 * on a Redis lookup). Every request gets exactly one final response in time: the edge's own (407,
 * 403, 400, 416, 420, 483, 501, 503, 408; the checks and their order are sip_check_request()'s,
 * docs/sip-checks.md) or UCM's relayed one; an ACK gets none. A REGISTER whose token would need a
 * verification while its source, or the worker, is over its budget gets 503 with Retry-After: 1
 * (PROXY_THROTTLE_RETRY_S), counted in sipedge_auth_refused_total{reason="source_budget"} or
 * {reason="worker_budget"}. `now_ms` is monotonic milliseconds.
 */
void proxy_on_client_request(struct proxy *p, uint32_t client_id, const struct sip_msg *msg,
                             int64_t now_ms);

/**
 * A request that sip_scan() rejected (`msg->err`, `msg->err_pos`): answers as sip_check_garbage()
 * decides (505 for another SIP version, 513 over the size limit, else 400 with the fault as
 * reason) when the headers a response needs were read, and returns true; false when nothing can
 * be answered. The glue closes the connection either way (counted apart: garbage / unframeable).
 */
bool proxy_on_client_garbage(struct proxy *p, uint32_t client_id, const struct sip_msg *msg);

/**
 * One complete message from UCM on connection `conn_id` (a pooled upstream connection or one
 * from the UCM listener) of node `node` (-1: unknown). A response is routed back by our Via; a
 * request is proxied to the client its Route's flow token names (docs/internals/calls.md):
 * 430 when that connection is gone, 403 for a forged token, 404 without a flow.
 */
void proxy_on_upstream_message(struct proxy *p, uint32_t conn_id, int node,
                               const struct sip_msg *msg, int64_t now_ms);

/** A response from client `client_id` (to a request UCM sent it through the edge). */
void proxy_on_client_response(struct proxy *p, uint32_t client_id, const struct sip_msg *msg,
                              int64_t now_ms);

/** A client's response another worker handed over (env.response_post): `from_worker` and
 *  `client_id` name the connection it came from. */
void proxy_on_posted_response(struct proxy *p, unsigned from_worker, uint32_t client_id,
                              const struct sip_msg *msg, int64_t now_ms);

/** The request of transaction `txn_id` could not be delivered by another worker (the flow's
 *  connection is gone): it is answered 430 Flow Failed. */
void proxy_on_flow_failed(struct proxy *p, uint64_t txn_id, int64_t now_ms);

/** Client `client_id` closed: its pending auth checks are cancelled, its transactions orphaned
 * (their responses will be dropped and counted). */
void proxy_on_client_gone(struct proxy *p, uint32_t client_id);

/**
 * Upstream connection `conn_id` closed (peer, error, keep-alive deadline): the requests forwarded
 * on it will get no answer there. Each is sent again, with the same branch, on another
 * connection (another node when its own is down; counted in sipedge_upstream_failovers_total),
 * or answered 503 + Retry-After at once when no node is usable. Timer F keeps its deadline.
 */
void proxy_on_upstream_gone(struct proxy *p, uint32_t conn_id, int64_t now_ms);

/** Runs Timer F. Returns the next deadline (monotonic ms) or INT64_MAX. Call by then. */
int64_t proxy_tick(struct proxy *p, int64_t now_ms);

/** This worker's counters (live). */
const struct proxy_stats *proxy_stats(const struct proxy *p);

#endif
