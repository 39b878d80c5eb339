// SPDX-License-Identifier: MIT
// The proxy's state, shared by its two halves: core/proxy.c (REGISTER, OPTIONS, the edge's own
// answers, response dispatch) and core/calls.c (every other method, both directions).
#ifndef SIPEDGE_CORE_PROXY_PRIV_H
#define SIPEDGE_CORE_PROXY_PRIV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/flow.h"
#include "core/metrics.h"
#include "core/policy.h"
#include "core/proxy.h"
#include "core/route.h"
#include "core/sip.h"
#include "core/sip_check.h"
#include "core/txn.h"

#define PROXY_BRANCH_PREFIX "z9hG4bK-se"
#define PROXY_MAX_HEADERS   128
#define PROXY_RESP_MAX      (16u * 1024u) /* our responses: copied Vias + a few headers */
#define PROXY_IOV_MAX       (PROXY_MAX_HEADERS + 8)
#define PROXY_NIL           UINT32_MAX
#define PROXY_VIA_MAX       (CFG_VIA_HOST_MAX + 64)
#define CFG_VIA_HOST_MAX    256

/**
 * A transaction slot. Free slots are on a LIFO list (hot slots get reused, so the memory touched
 * stays small); live ones are on a FIFO ordered by Timer F deadline (every transaction gets the
 * same timeout, so arrival order is deadline order: O(1) insert, remove and expiry).
 *
 * | state     | req holds                        | leaves by                              |
 * |-----------|----------------------------------|----------------------------------------|
 * | FREE      | nothing                          | proxy_on_client_request (alloc)        |
 * | AUTH_WAIT | the whole request (parked)       | auth callback → FORWARDED or answered  |
 * | FORWARDED | the request (for a 408/503 later)| final response, Timer F                |
 */
enum reg_state {
    REG_FREE = 0,
    REG_AUTH_WAIT,
    REG_FORWARDED,
    /* REG_STATE_COUNT */
    REG_STATE_COUNT
};

struct reg_txn {
    uint32_t slot;
    uint32_t gen; /* bumped when freed: a late response or callback for an old use is stale */
    uint32_t client_id;
    uint8_t state;
    uint32_t prev, next; /* FIFO (live) or free list (next only) */
    int64_t deadline;    /* Timer F, monotonic ms */
    int64_t started;     /* the request arrived (monotonic ms) */
    int64_t forwarded;   /* it last went to UCM */
    char *req;           /* copy of the request (malloc; kept small: see reg_keep) */
    uint32_t req_len;
    /* a token-verified REGISTER: the binding its 2xx makes (core/policy.h) */
    int64_t bind_exp; /* its token's exp (0: nothing to bind); the user is the kept To's */
    uint32_t up_conn; /* FORWARDED: the upstream connection it went out on */
};

struct proxy {
    struct proxy_cfg cfg;
    struct proxy_env env;
    struct auth_worker *aw;
    struct metrics_shard *shard;
    struct metrics_shard *own_shard; /* when the caller gave none (tests) */
    struct proxy_stats stats;
    char *realm, *server, *via_host, *scope, *authz;
    char nonce[9]; /* per-process random: our branches are not guessable nor another edge's */
    char via[PROXY_VIA_MAX]; /* "SIP/2.0/TLS host:port;branch=z9hG4bK-se<nonce>" */
    size_t via_len;
    char path[PROXY_VIA_MAX]; /* "<sip:host:port;transport=tls;lr>" or empty */
    size_t path_len;
    uint64_t tag_seq;
    int64_t last_mismatch_log;
    int64_t last_503_log;
    int64_t last_shed_log;
    int64_t last_delay_log;
    bool resending; /* inside proxy_on_upstream_gone() */
    uint32_t cap, mask;
    uint32_t free_head;
    uint32_t fresh; /* slots from here on were never used (untouched memory) */
    uint32_t fifo_head, fifo_tail;
    char resp[PROXY_RESP_MAX];
    /* calls (core/calls.c) */
    struct txn_table *tb;    /* NULL: calls not served (env without them) */
    struct call_slot *calls; /* per transaction slot of tb */
    uint32_t calls_cap;
    struct flow_keys own_keys;
    const struct flow_keys *keys;
    char *ucm_host;
    struct route_addr addrs[2]; /* [0] client side, [1] UCM side */
    struct route_self self;
    char via_cli[PROXY_VIA_MAX]; /* "SIP/2.0/TLS host:port;branch=" towards clients */
    size_t via_cli_len;
    char via_ucm[PROXY_VIA_MAX]; /* "SIP/2.0/TLS host:port;alias;branch=" towards UCM */
    size_t via_ucm_len;
    char rr[512]; /* a Record-Route line being built */
    struct sip_header hdrs[PROXY_MAX_HEADERS];
    struct reg_txn txns[];
};

/** What calls.c keeps per call transaction (parallel to the txn table's slots). */
struct call_slot {
    uint64_t id; /* the transaction (txn_get) */
    char *req;   /* the sender's request, headers only: the edge's own answers */
    uint32_t req_len;
    char *fwd; /* an INVITE as forwarded, headers only: its CANCEL and ACK */
    uint32_t fwd_len;
    uint32_t sender;     /* the sender's connection: UCM-side (to_client) or the client's */
    uint32_t next_conn;  /* client → UCM: the upstream connection it went out on */
    struct flow flow;    /* UCM → client: the client connection it went to */
    bool to_client;      /* direction: UCM → client */
    bool answered;       /* the sender has its final answer (relayed or the edge's own) */
    uint32_t sender_tag; /* client → UCM: the sender's flow tag (its open count is decremented
                            only on the same connection) */
    int node;            /* the UCM node (client → UCM: where it went; else where it came from) */
    int64_t started;
};

/* ---- proxy.c, for calls.c ---- */
void proxy_respond(struct proxy *p, uint32_t cid, const struct sip_msg *req, int status,
                   const char *reason, const struct slice *extra, size_t n_extra);
/* The response to `req` into p->resp; returns its length or < 0 (logged). */
ssize_t proxy_build_response(struct proxy *p, const struct sip_msg *req, int status,
                             const char *reason, const struct slice *extra, size_t n_extra);
void proxy_challenge(struct proxy *p, uint32_t cid, const struct sip_msg *req, int status,
                     const char *error);
void proxy_respond_503(struct proxy *p, uint32_t cid, const struct sip_msg *req);
enum metrics_method proxy_metrics_method(enum sip_method m);
/* Verify the Bearer token a non-REGISTER request carries (RFC 8898), then forward it. */
void proxy_verify_request(struct proxy *p, uint32_t cid, const struct sip_msg *req,
                          const struct sip_cred *cred, int64_t now);
void proxy_count_response(struct proxy *p, enum sip_method m, int status, bool upstream);

/* ---- calls.c ---- */
/* The flow of client connection `cid` of this worker (with its tag). */
struct flow client_flow(struct proxy *p, uint32_t cid);
/* Its flow token (FLOW_TOKEN_LEN characters, cached in its binding record; `tmp` holds it when
 * there is no record); NULL when the HMAC failed. */
const char *client_token(struct proxy *p, uint32_t cid, char *tmp);
int calls_init(struct proxy *p);
void calls_free(struct proxy *p);
/* A FORWARD verdict of sip_check_request() from client `cid` (binding, matching, routing). */
void calls_client_request(struct proxy *p, uint32_t cid, const struct sip_msg *req,
                          const struct sip_verdict *v, int64_t now);
/* A request whose own Bearer token was verified for its From user: route and send. */
void calls_forward_verified(struct proxy *p, uint32_t cid, const struct sip_msg *req, int64_t now);
void calls_ucm_request(struct proxy *p, uint32_t conn_id, int node, const struct sip_msg *req,
                       int64_t now);
/* A response whose top Via is ours with a call branch ("z9hG4bK-st"): true when it was (handled
 * or dropped), false when it is not a call branch. `from_client`: came from client connection
 * `conn` of worker `from_worker`; else from UCM-side connection `conn`. */
bool calls_response(struct proxy *p, bool from_client, unsigned from_worker, uint32_t conn,
                    const struct sip_msg *resp, int64_t now);
void calls_flow_failed(struct proxy *p, uint64_t txn_id, int64_t now);
int64_t calls_tick(struct proxy *p, int64_t now);
/* Upstream connection `conn_id` closed: its unanswered call transactions get 503. */
void calls_upstream_gone(struct proxy *p, uint32_t conn_id, int64_t now);

#endif
