// SPDX-License-Identifier: MIT
// The transaction table of a stateful proxy on reliable transports (RFC 3261 §16, §17; RFC 6026):
// a pure state machine per transaction (event in, new state and actions out, no I/O), a
// per-worker fixed-capacity table with slot+generation ids, and the matching of responses (by
// our branch), CANCEL and ACK (RFC 3261 §17.2.3) to the transaction they belong to.
#ifndef SIPEDGE_CORE_TXN_H
#define SIPEDGE_CORE_TXN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/sip.h"
#include "core/slice.h"

/* ---- the state machine -------------------------------------------------------------------
 * One proxy transaction pairs the server transaction towards the sender (the "client" of this
 * request: a Jabber client, or UCM for its requests) with one client transaction towards the
 * next hop. Transports are TLS/TCP only, so no retransmission timers (A, E, G) and the
 * "wait for retransmissions" timers D, I, J, K are zero: the transaction ends at once.
 *
 * Timers (one armed per transaction): B (INVITE, no response: 64*T1), F (non-INVITE: 64*T1),
 * C (INVITE after a provisional, RFC 3261 §16.6 step 11: > 3 min, reset by 101..199 but not by
 * 100), H (INVITE non-2xx relayed, waiting for the sender's ACK: 64*T1), L (RFC 6026 Accepted:
 * 2xx retransmissions relayed: 64*T1), CANCEL (RFC 3261 §9.1: the final after our CANCEL: 64*T1).
 */
enum txn_kind {
    TXN_KIND_INVITE = 0,
    TXN_KIND_NON_INVITE,
    /* TXN_KIND_COUNT */
    TXN_KIND_COUNT
};

enum txn_state {
    TXN_FREE = 0,       /* slot unused */
    TXN_CALLING,        /* INVITE forwarded, nothing back (B) */
    TXN_PROCEEDING,     /* INVITE got a provisional (C) */
    TXN_CANCEL_PENDING, /* sender CANCELled before any provisional: CANCEL goes on the first */
    TXN_CANCELLING,     /* our CANCEL is out, waiting for the final (487) (CANCEL) */
    TXN_TIMED_OUT,      /* Timer C fired: 408 sent back, CANCEL sent on (CANCEL) */
    TXN_COMPLETED,      /* non-2xx final relayed and ACKed hop by hop, waiting for ACK (H) */
    TXN_ACCEPTED,       /* 2xx relayed; later 2xx relayed too (L) */
    TXN_TRYING,         /* non-INVITE forwarded (F) */
    TXN_NI_PROCEEDING,  /* non-INVITE got a provisional (F keeps running) */
    /* TXN_STATE_COUNT */
    TXN_STATE_COUNT
};

enum txn_event {
    TXN_EV_100 = 0,     /* 100 Trying from the next hop */
    TXN_EV_1XX,         /* 101..199 from the next hop */
    TXN_EV_2XX,         /* 200..299 from the next hop */
    TXN_EV_FINAL,       /* 300..699 from the next hop */
    TXN_EV_CANCEL,      /* the sender's CANCEL matched this transaction */
    TXN_EV_ACK,         /* the sender's ACK matched this transaction (non-2xx ACK) */
    TXN_EV_TIMEOUT,     /* the armed timer ran out (see txn_expired()) */
    TXN_EV_SEND_FAILED, /* the next hop's connection failed: as a 503 (RFC 3261 §16.7, §18.4) */
    /* TXN_EV_COUNT */
    TXN_EV_COUNT
};

enum txn_timer {
    TXN_TIMER_NONE = 0,
    TXN_TIMER_B,
    TXN_TIMER_C,
    TXN_TIMER_F,
    TXN_TIMER_H,
    TXN_TIMER_L,
    TXN_TIMER_CANCEL,
    TXN_TIMER_KEEP, /* table only: leave the armed timer and deadline as they are */
    /* TXN_TIMER_COUNT */
    TXN_TIMER_COUNT
};

/** What the caller does after a step, as flags. */
enum txn_action {
    TXN_A_SEND_100 = 1u << 0,    /* answer 100 Trying to the sender (on opening an INVITE) */
    TXN_A_RELAY = 1u << 1,       /* relay this response to the sender (our Via popped) */
    TXN_A_ABSORB = 1u << 2,      /* drop the message of this event: nothing goes out for it */
    TXN_A_CANCEL_200 = 1u << 3,  /* answer the sender's CANCEL with 200, hop by hop */
    TXN_A_SEND_CANCEL = 1u << 4, /* send CANCEL to the next hop on the INVITE's branch */
    TXN_A_SEND_ACK = 1u << 5,    /* ACK the non-2xx final to the next hop, hop by hop */
    TXN_A_REPLY_408 = 1u << 6,   /* the edge's own final to the sender: 408 Request Timeout */
    TXN_A_REPLY_487 = 1u << 7,   /* ... 487 Request Terminated */
    TXN_A_REPLY_503 = 1u << 8,   /* ... 503 Service Unavailable */
    TXN_A_FREE = 1u << 9,        /* the slot is freed: the id is stale from now on */
};

#define TXN_ACT(x) TXN_A_##x
/*
 * The transition table: X(kind, state, event, next state, actions, timer to arm).
 * A (state, event) pair not listed is absorbed (TXN_A_ABSORB, state and timer unchanged): a late
 * or duplicate message. Timeouts end in the edge's own answer: Timer B 408, Timer C CANCEL + 408
 * (Kamailio's choice: the sender gets its answer now, the next hop's 487 is ACKed and dropped),
 * no final after our CANCEL 487. A 2xx is relayed in every INVITE state (RFC 3261 §16.7 step 5),
 * even after our 408: the caller then gets ACK and BYE from the UAC.
 */
#define TXN_TRANSITIONS(X)                                                                         \
    /* INVITE: Calling (Timer B) */                                                                \
    X(INVITE, CALLING, 100, PROCEEDING, TXN_ACT(ABSORB), C)                                        \
    X(INVITE, CALLING, 1XX, PROCEEDING, TXN_ACT(RELAY), C)                                         \
    X(INVITE, CALLING, 2XX, ACCEPTED, TXN_ACT(RELAY), L)                                           \
    X(INVITE, CALLING, FINAL, COMPLETED, TXN_ACT(RELAY) | TXN_ACT(SEND_ACK), H)                    \
    X(INVITE, CALLING, CANCEL, CANCEL_PENDING, TXN_ACT(CANCEL_200), KEEP)                          \
    X(INVITE, CALLING, TIMEOUT, FREE, TXN_ACT(REPLY_408) | TXN_ACT(FREE), NONE)                    \
    X(INVITE, CALLING, SEND_FAILED, FREE, TXN_ACT(REPLY_503) | TXN_ACT(FREE), NONE)                \
    /* INVITE: CANCELled before any provisional (Timer B still) */                                 \
    X(INVITE, CANCEL_PENDING, 100, CANCELLING, TXN_ACT(ABSORB) | TXN_ACT(SEND_CANCEL), CANCEL)     \
    X(INVITE, CANCEL_PENDING, 1XX, CANCELLING, TXN_ACT(RELAY) | TXN_ACT(SEND_CANCEL), CANCEL)      \
    X(INVITE, CANCEL_PENDING, 2XX, ACCEPTED, TXN_ACT(RELAY), L)                                    \
    X(INVITE, CANCEL_PENDING, FINAL, COMPLETED, TXN_ACT(RELAY) | TXN_ACT(SEND_ACK), H)             \
    X(INVITE, CANCEL_PENDING, CANCEL, CANCEL_PENDING, TXN_ACT(CANCEL_200), KEEP)                   \
    X(INVITE, CANCEL_PENDING, TIMEOUT, FREE, TXN_ACT(REPLY_487) | TXN_ACT(FREE), NONE)             \
    X(INVITE, CANCEL_PENDING, SEND_FAILED, FREE, TXN_ACT(REPLY_487) | TXN_ACT(FREE), NONE)         \
    /* INVITE: Proceeding (Timer C) */                                                             \
    X(INVITE, PROCEEDING, 100, PROCEEDING, TXN_ACT(ABSORB), KEEP)                                  \
    X(INVITE, PROCEEDING, 1XX, PROCEEDING, TXN_ACT(RELAY), C)                                      \
    X(INVITE, PROCEEDING, 2XX, ACCEPTED, TXN_ACT(RELAY), L)                                        \
    X(INVITE, PROCEEDING, FINAL, COMPLETED, TXN_ACT(RELAY) | TXN_ACT(SEND_ACK), H)                 \
    X(INVITE, PROCEEDING, CANCEL, CANCELLING, TXN_ACT(CANCEL_200) | TXN_ACT(SEND_CANCEL), CANCEL)  \
    X(INVITE, PROCEEDING, TIMEOUT, TIMED_OUT, TXN_ACT(SEND_CANCEL) | TXN_ACT(REPLY_408), CANCEL)   \
    X(INVITE, PROCEEDING, SEND_FAILED, FREE, TXN_ACT(REPLY_503) | TXN_ACT(FREE), NONE)             \
    /* INVITE: our CANCEL is out */                                                                \
    X(INVITE, CANCELLING, 1XX, CANCELLING, TXN_ACT(RELAY), KEEP)                                   \
    X(INVITE, CANCELLING, 2XX, ACCEPTED, TXN_ACT(RELAY), L)                                        \
    X(INVITE, CANCELLING, FINAL, COMPLETED, TXN_ACT(RELAY) | TXN_ACT(SEND_ACK), H)                 \
    X(INVITE, CANCELLING, CANCEL, CANCELLING, TXN_ACT(CANCEL_200), KEEP)                           \
    X(INVITE, CANCELLING, TIMEOUT, FREE, TXN_ACT(REPLY_487) | TXN_ACT(FREE), NONE)                 \
    X(INVITE, CANCELLING, SEND_FAILED, FREE, TXN_ACT(REPLY_487) | TXN_ACT(FREE), NONE)             \
    /* INVITE: Timer C fired, 408 sent, our CANCEL out */                                          \
    X(INVITE, TIMED_OUT, 2XX, ACCEPTED, TXN_ACT(RELAY), L)                                         \
    X(INVITE, TIMED_OUT, FINAL, COMPLETED, TXN_ACT(ABSORB) | TXN_ACT(SEND_ACK), H)                 \
    X(INVITE, TIMED_OUT, CANCEL, TIMED_OUT, TXN_ACT(CANCEL_200), KEEP)                             \
    X(INVITE, TIMED_OUT, TIMEOUT, FREE, TXN_ACT(FREE), NONE)                                       \
    X(INVITE, TIMED_OUT, SEND_FAILED, FREE, TXN_ACT(FREE), NONE)                                   \
    /* INVITE: Completed (Timer H) */                                                              \
    X(INVITE, COMPLETED, FINAL, COMPLETED, TXN_ACT(ABSORB) | TXN_ACT(SEND_ACK), KEEP)              \
    X(INVITE, COMPLETED, ACK, FREE, TXN_ACT(ABSORB) | TXN_ACT(FREE), NONE)                         \
    X(INVITE, COMPLETED, CANCEL, COMPLETED, TXN_ACT(CANCEL_200), KEEP)                             \
    X(INVITE, COMPLETED, TIMEOUT, FREE, TXN_ACT(FREE), NONE)                                       \
    /* INVITE: Accepted (Timer L) */                                                               \
    X(INVITE, ACCEPTED, 2XX, ACCEPTED, TXN_ACT(RELAY), KEEP)                                       \
    X(INVITE, ACCEPTED, CANCEL, ACCEPTED, TXN_ACT(CANCEL_200), KEEP)                               \
    X(INVITE, ACCEPTED, TIMEOUT, FREE, TXN_ACT(FREE), NONE)                                        \
    /* non-INVITE: Trying and Proceeding (Timer F throughout) */                                   \
    X(NON_INVITE, TRYING, 100, NI_PROCEEDING, TXN_ACT(ABSORB), KEEP)                               \
    X(NON_INVITE, TRYING, 1XX, NI_PROCEEDING, TXN_ACT(RELAY), KEEP)                                \
    X(NON_INVITE, TRYING, 2XX, FREE, TXN_ACT(RELAY) | TXN_ACT(FREE), NONE)                         \
    X(NON_INVITE, TRYING, FINAL, FREE, TXN_ACT(RELAY) | TXN_ACT(FREE), NONE)                       \
    X(NON_INVITE, TRYING, CANCEL, TRYING, TXN_ACT(CANCEL_200), KEEP)                               \
    X(NON_INVITE, TRYING, TIMEOUT, FREE, TXN_ACT(REPLY_408) | TXN_ACT(FREE), NONE)                 \
    X(NON_INVITE, TRYING, SEND_FAILED, FREE, TXN_ACT(REPLY_503) | TXN_ACT(FREE), NONE)             \
    X(NON_INVITE, NI_PROCEEDING, 1XX, NI_PROCEEDING, TXN_ACT(RELAY), KEEP)                         \
    X(NON_INVITE, NI_PROCEEDING, 2XX, FREE, TXN_ACT(RELAY) | TXN_ACT(FREE), NONE)                  \
    X(NON_INVITE, NI_PROCEEDING, FINAL, FREE, TXN_ACT(RELAY) | TXN_ACT(FREE), NONE)                \
    X(NON_INVITE, NI_PROCEEDING, CANCEL, NI_PROCEEDING, TXN_ACT(CANCEL_200), KEEP)                 \
    X(NON_INVITE, NI_PROCEEDING, TIMEOUT, FREE, TXN_ACT(REPLY_408) | TXN_ACT(FREE), NONE)          \
    X(NON_INVITE, NI_PROCEEDING, SEND_FAILED, FREE, TXN_ACT(REPLY_503) | TXN_ACT(FREE), NONE)

/** One row of TXN_TRANSITIONS, as data. */
struct txn_row {
    enum txn_kind kind;
    enum txn_state state;
    enum txn_event event;
    enum txn_state next;
    unsigned actions;
    enum txn_timer timer;
};

/** The rows of TXN_TRANSITIONS in order; `*n` gets their count. Static. */
const struct txn_row *txn_rows(size_t *n);

/** Lower-case names ("calling", "timeout", "timer_c"); "unknown" out of range. Static. */
const char *txn_state_name(enum txn_state s);
const char *txn_event_name(enum txn_event e);
const char *txn_timer_name(enum txn_timer t);

/** The event a response with status `status` (100..699) is; TXN_EV_COUNT outside that range. */
enum txn_event txn_event_of_status(int status);

/* ---- the table ------------------------------------------------------------------------- */

#define TXN_BRANCH_MAX     128 /* the sender's branch we keep to match its CANCEL/ACK */
#define TXN_SENT_BY_MAX    96  /* the sender's top Via sent-by (host[:port]) */
#define TXN_OUR_BRANCH_MAX 48

/** Timer durations in ms (RFC 3261 defaults with T1 = 500 ms: 64*T1 = 32 s; C = 3 min). */
struct txn_timers {
    uint32_t b_ms, c_ms, f_ms, h_ms, l_ms, cancel_ms;
};
#define TXN_TIMERS_DEFAULT ((struct txn_timers){32000, 180000, 32000, 32000, 32000, 32000})

/** One transaction. Read-only for callers (txn_get()); `user` is theirs. */
struct txn {
    uint32_t gen;          /* bumped when freed */
    uint8_t state;         /* enum txn_state */
    uint8_t kind;          /* enum txn_kind */
    uint8_t timer;         /* enum txn_timer armed (TXN_TIMER_NONE: none) */
    uint8_t method;        /* enum sip_method that opened it */
    int64_t deadline_ms;   /* when `timer` runs out (monotonic ms) */
    uint32_t client_id;    /* the sender's connection (the caller's id, opaque here) */
    uint32_t next;         /* hash chain or free list */
    uint32_t tprev, tnext; /* the queue of its armed timer (one FIFO per timer kind) */
    uint64_t user;         /* the caller's */
    uint8_t branch_len, sent_by_len;
    char branch[TXN_BRANCH_MAX];
    char sent_by[TXN_SENT_BY_MAX];
};

/** The outcome of one step. */
struct txn_out {
    enum txn_state from, to;
    unsigned actions; /* enum txn_action flags */
    bool listed;      /* a row of the table applied (false: absorbed by default) */
};

struct txn_table;

/**
 * A table of `cap` transactions (1..2^24) for worker `worker`, timers `t` (copied). The hash key
 * and the branch nonce come from RAND_bytes. NULL on ENOMEM or failure. Owned by one worker:
 * no function below may be called from another thread.
 */
struct txn_table *txn_table_new(uint32_t cap, unsigned worker, const struct txn_timers *t);
/** Frees `tb` (no answers are sent: the caller answers open transactions first). NULL: no-op. */
void txn_table_free(struct txn_table *tb);
/** Transactions open now. */
uint32_t txn_count(const struct txn_table *tb);
/**
 * Slots handed out so far, a high-water mark: every live transaction's slot is below it, and no
 * slot at or above it was ever used (nor its memory touched). Never decreases. A walk over the
 * slots (and over arrays indexed like them) stops here instead of at the capacity.
 */
uint32_t txn_slots_used(const struct txn_table *tb);

/**
 * Open the transaction of request `method` (not ACK, not CANCEL: those are matched) from
 * connection `client_id`, keyed by the sender's top Via `branch` and `sent_by`. On success `*id`
 * is its id, `out` holds TXN_A_SEND_100 for an INVITE and the state (Calling / Trying), and Timer
 * B or F is armed from `now_ms`. Returns 0, -ENOSPC (table full: answer 503), -EEXIST (the same
 * request again: a retransmission, absorb it), -EPROTO (branch without the RFC 3261 magic
 * cookie: the RFC 2543 matching is not supported: answer 400), -ENAMETOOLONG (branch or sent-by
 * over the limits above: 400), -EINVAL (ACK, CANCEL).
 */
int txn_open(struct txn_table *tb, enum sip_method method, uint32_t client_id, struct slice branch,
             struct slice sent_by, int64_t now_ms, uint64_t *id, struct txn_out *out);

/**
 * Free the live transaction `id` with no action and no answer: the caller answered the sender
 * on its own (e.g. 430 Flow Failed) or the sender's connection is gone. Its timer is disarmed
 * and `id` is stale from now on. Returns 0 or -ESTALE (`id` is not live).
 */
int txn_abandon(struct txn_table *tb, uint64_t id);

/** The live transaction `id`, or NULL when freed or reused (stale). Valid until the next step. */
const struct txn *txn_get(const struct txn_table *tb, uint64_t id);

/**
 * Apply `ev` to transaction `id` at `now_ms`: looks the (kind, state, event) row up, moves the
 * state, arms the row's timer, frees the slot on TXN_A_FREE, and reports in `out`. Returns 0,
 * -ESTALE (`id` is not live), -EINVAL (event out of range).
 */
int txn_step(struct txn_table *tb, uint64_t id, enum txn_event ev, int64_t now_ms,
             struct txn_out *out);

/** Our Via branch for transaction `id`: "z9hG4bK-st<nonce>.<worker>.<id>" (hex) into
 *  `buf[0..cap)`. Returns its length or -ENOSPC (TXN_OUR_BRANCH_MAX always suffices). */
ssize_t txn_branch(const struct txn_table *tb, uint64_t id, char *buf, size_t cap);

enum txn_resp_match {
    TXN_RESP_NONE = 0, /* not our branch, another worker's, or stale: drop and count */
    TXN_RESP_TXN,      /* the response of transaction `*id`: step it with its status event */
    TXN_RESP_CANCEL,   /* the response to our CANCEL for INVITE `*id`: absorb (hop by hop) */
    /* TXN_RESP_COUNT */
    TXN_RESP_COUNT
};

/** Match a response by the branch of its top Via (ours) and its CSeq method (RFC 3261
 *  §17.1.3). A CSeq method that is neither the transaction's nor CANCEL is TXN_RESP_NONE. */
enum txn_resp_match txn_match_response(const struct txn_table *tb, struct slice branch,
                                       enum sip_method cseq_method, uint64_t *id);

enum txn_req_match {
    TXN_REQ_NEW = 0,         /* no transaction: open one, or (ACK) forward it as a new request */
    TXN_REQ_RETRANSMIT,      /* the request of an open transaction again: absorb */
    TXN_REQ_ACK,             /* an ACK for transaction `*id` (non-2xx): step TXN_EV_ACK */
    TXN_REQ_CANCEL,          /* a CANCEL for transaction `*id`: step TXN_EV_CANCEL */
    TXN_REQ_CANCEL_NO_MATCH, /* a CANCEL for nothing: answer 481 */
    /* TXN_REQ_COUNT */
    TXN_REQ_COUNT
};

/**
 * Match a request from `client_id` to an open transaction by RFC 3261 §17.2.3: the top Via's
 * branch (byte-equal) and sent-by (case-insensitive), and the method (an ACK matches an INVITE;
 * a CANCEL matches any). An ACK matching an INVITE in Accepted is TXN_REQ_NEW: an ACK for a 2xx
 * is end-to-end (RFC 6026) and routed by its Route like any in-dialog request.
 */
enum txn_req_match txn_match_request(const struct txn_table *tb, uint32_t client_id,
                                     enum sip_method method, struct slice branch,
                                     struct slice sent_by, uint64_t *id);

/**
 * Ids of transactions whose timer ran out by `now_ms` into `ids[0..cap)`, earliest deadline
 * first across timer kinds (at most `cap`). Nothing is removed: the caller steps each with
 * TXN_EV_TIMEOUT, which frees it or moves its timer, and calls again if it returned `cap` (an id
 * not stepped comes back). `*next_ms` gets the earliest deadline of a timer not returned
 * (INT64_MAX if none; <= now_ms when `cap` cut the due list short). Every timer of one kind has
 * the same duration, so each kind is a FIFO in deadline order (arming appends, re-arming moves
 * to the tail; a clock that goes back walks back from the tail): arming is O(1) and this call
 * O(returned + timer kinds), not a walk of the table.
 */
size_t txn_expired(const struct txn_table *tb, int64_t now_ms, uint64_t *ids, size_t cap,
                   int64_t *next_ms);

#endif
