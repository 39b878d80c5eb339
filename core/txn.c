// SPDX-License-Identifier: MIT
// The proxy transaction table (see core/txn.h): the TXN_TRANSITIONS table compiled into a
// lookup, slots with generations, a SipHash-keyed index of the senders' branches.
#include "core/txn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#define NIL           UINT32_MAX
#define BRANCH_COOKIE "z9hG4bK"
#define OUR_PREFIX    "z9hG4bK-st"

struct txn_table {
    struct txn *slots;
    uint32_t *buckets; /* head of each hash chain (slot index or NIL) */
    uint32_t cap, mask, free_head, count;
    uint32_t fresh; /* slots below it have been used; above it, never touched (no RSS) */
    unsigned worker;
    uint64_t k0, k1; /* SipHash key */
    char nonce[8];   /* hex: our branches are not guessable */
    struct txn_timers timers;
    uint32_t qhead[TXN_TIMER_COUNT], qtail[TXN_TIMER_COUNT]; /* FIFO per timer kind */
};

/* ---- the table as data -------------------------------------------------------------------- */

static const struct txn_row rows[] = {
#define TXN_ROW(k, s, e, n, a, t)                                                                  \
    {TXN_KIND_##k, TXN_##s, TXN_EV_##e, TXN_##n, (unsigned)(a), TXN_TIMER_##t},
    TXN_TRANSITIONS(TXN_ROW)
#undef TXN_ROW
};

/* lookup[kind][state][event]: index+1 into rows, 0 when not listed */
static uint8_t lookup[TXN_KIND_COUNT][TXN_STATE_COUNT][TXN_EV_COUNT];
_Static_assert(sizeof(rows) / sizeof(rows[0]) < 255, "row index fits the lookup");

__attribute__((constructor)) static void build_lookup(void)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        lookup[rows[i].kind][rows[i].state][rows[i].event] = (uint8_t)(i + 1);
}

const struct txn_row *txn_rows(size_t *n)
{
    *n = sizeof(rows) / sizeof(rows[0]);
    return rows;
}

static const char *const state_names[] = {
    "free",      "calling",   "proceeding", "cancel_pending", "cancelling",
    "timed_out", "completed", "accepted",   "trying",         "ni_proceeding"};
static const char *const event_names[] = {"100",    "1xx", "2xx",     "final",
                                          "cancel", "ack", "timeout", "send_failed"};
static const char *const timer_names[] = {"none",    "timer_b", "timer_c",      "timer_f",
                                          "timer_h", "timer_l", "timer_cancel", "keep"};
_Static_assert(sizeof(state_names) / sizeof(state_names[0]) == TXN_STATE_COUNT, "names");
_Static_assert(sizeof(event_names) / sizeof(event_names[0]) == TXN_EV_COUNT, "names");
_Static_assert(sizeof(timer_names) / sizeof(timer_names[0]) == TXN_TIMER_COUNT, "names");

const char *txn_state_name(enum txn_state s)
{
    return (unsigned)s < TXN_STATE_COUNT ? state_names[s] : "unknown";
}

const char *txn_event_name(enum txn_event e)
{
    return (unsigned)e < TXN_EV_COUNT ? event_names[e] : "unknown";
}

const char *txn_timer_name(enum txn_timer t)
{
    return (unsigned)t < TXN_TIMER_COUNT ? timer_names[t] : "unknown";
}

enum txn_event txn_event_of_status(int status)
{
    if (status == 100)
        return TXN_EV_100;
    if (status > 100 && status < 200)
        return TXN_EV_1XX;
    if (status >= 200 && status < 300)
        return TXN_EV_2XX;
    if (status >= 300 && status < 700)
        return TXN_EV_FINAL;
    return TXN_EV_COUNT;
}

/* ---- SipHash-2-4 (the index must not be floodable by a sender choosing branches) ---------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1, v1 = ROTL(v1, 13), v1 ^= v0, v0 = ROTL(v0, 32);                                  \
        v2 += v3, v3 = ROTL(v3, 16), v3 ^= v2;                                                     \
        v0 += v3, v3 = ROTL(v3, 21), v3 ^= v0;                                                     \
        v2 += v1, v1 = ROTL(v1, 17), v1 ^= v2, v2 = ROTL(v2, 32);                                  \
    } while (0)

static uint64_t siphash(uint64_t k0, uint64_t k1, const uint8_t *p, size_t n)
{
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1, m, b;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        m = 0;
        for (int j = 7; j >= 0; j--)
            m = m << 8 | p[i + (size_t)j];
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    b = (uint64_t)n << 56;
    for (size_t j = 0; i + j < n; j++)
        b |= (uint64_t)p[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint32_t bucket_of(const struct txn_table *tb, uint32_t client_id, struct slice branch)
{
    uint8_t key[4 + TXN_BRANCH_MAX];
    memcpy(key, &client_id, 4);
    memcpy(key + 4, branch.base, branch.len);
    return (uint32_t)siphash(tb->k0, tb->k1, key, 4 + branch.len) & tb->mask;
}

/* ---- slots ----------------------------------------------------------------------------------- */

struct txn_table *txn_table_new(uint32_t cap, unsigned worker, const struct txn_timers *t)
{
    uint8_t rnd[20];
    struct txn_table *tb;
    uint32_t nb = 1;

    if (cap == 0 || cap > (1u << 24) || RAND_bytes(rnd, sizeof(rnd)) != 1)
        return NULL;
    while (nb < cap)
        nb <<= 1;
    if ((tb = calloc(1, sizeof(*tb))) == NULL)
        return NULL;
    tb->slots = calloc(cap, sizeof(*tb->slots));
    tb->buckets = malloc(nb * sizeof(*tb->buckets));
    if (tb->slots == NULL || tb->buckets == NULL) {
        txn_table_free(tb);
        return NULL;
    }
    tb->cap = cap;
    tb->mask = nb - 1;
    tb->worker = worker;
    tb->timers = *t;
    memcpy(&tb->k0, rnd, 8);
    memcpy(&tb->k1, rnd + 8, 8);
    for (int i = 0; i < 4; i++) {
        tb->nonce[2 * i] = "0123456789abcdef"[rnd[16 + i] >> 4];
        tb->nonce[2 * i + 1] = "0123456789abcdef"[rnd[16 + i] & 15];
    }
    for (uint32_t i = 0; i < nb; i++)
        tb->buckets[i] = NIL;
    for (int k = 0; k < TXN_TIMER_COUNT; k++)
        tb->qhead[k] = tb->qtail[k] = NIL;
    tb->free_head = NIL; /* freed slots; never-used ones come from `fresh`, untouched till then */
    tb->fresh = 0;
    return tb;
}

void txn_table_free(struct txn_table *tb)
{
    if (tb == NULL)
        return;
    free(tb->slots);
    free(tb->buckets);
    free(tb);
}

uint32_t txn_count(const struct txn_table *tb)
{
    return tb->count;
}

uint32_t txn_slots_used(const struct txn_table *tb)
{
    return tb->fresh;
}

static uint64_t id_of(const struct txn_table *tb, uint32_t slot)
{
    return (uint64_t)tb->slots[slot].gen << 32 | slot;
}

const struct txn *txn_get(const struct txn_table *tb, uint64_t id)
{
    uint32_t slot = (uint32_t)id;
    if (slot >= tb->cap)
        return NULL;
    const struct txn *t = &tb->slots[slot];
    return t->state != TXN_FREE && t->gen == (uint32_t)(id >> 32) ? t : NULL;
}

/* Takes slot `s` off the queue of its armed timer (none: no-op). */
static void dequeue(struct txn_table *tb, uint32_t s)
{
    struct txn *t = &tb->slots[s];
    unsigned k = t->timer;
    if (k == TXN_TIMER_NONE || k >= TXN_TIMER_KEEP)
        return;
    if (t->tprev != NIL)
        tb->slots[t->tprev].tnext = t->tnext;
    else
        tb->qhead[k] = t->tnext;
    if (t->tnext != NIL)
        tb->slots[t->tnext].tprev = t->tprev;
    else
        tb->qtail[k] = t->tprev;
    t->tprev = t->tnext = NIL;
}

/* Links slot `s` (deadline set) into the queue of timer `k`: at the tail when the clock only goes
 * forward (O(1)); a deadline earlier than the tail's (a clock that went back) walks back to its
 * place, so each queue is always in deadline order. */
static void enqueue(struct txn_table *tb, uint32_t s, unsigned k)
{
    struct txn *t = &tb->slots[s];
    uint32_t after = tb->qtail[k];

    while (after != NIL && tb->slots[after].deadline_ms > t->deadline_ms)
        after = tb->slots[after].tprev;
    t->tprev = after;
    t->tnext = after == NIL ? tb->qhead[k] : tb->slots[after].tnext;
    if (after == NIL)
        tb->qhead[k] = s;
    else
        tb->slots[after].tnext = s;
    if (t->tnext == NIL)
        tb->qtail[k] = s;
    else
        tb->slots[t->tnext].tprev = s;
}

static void unlink_slot(struct txn_table *tb, uint32_t slot)
{
    dequeue(tb, slot);
    struct txn *t = &tb->slots[slot];
    uint32_t *pp = &tb->buckets[bucket_of(tb, t->client_id, slice_make(t->branch, t->branch_len))];

    while (*pp != slot)
        pp = &tb->slots[*pp].next;
    *pp = t->next;
    t->state = TXN_FREE;
    t->timer = TXN_TIMER_NONE;
    t->gen++;
    t->next = tb->free_head;
    tb->free_head = slot;
    tb->count--;
}

static void arm(struct txn_table *tb, struct txn *t, enum txn_timer timer, int64_t now)
{
    static const size_t off[TXN_TIMER_COUNT] = {
        [TXN_TIMER_B] = offsetof(struct txn_timers, b_ms),
        [TXN_TIMER_C] = offsetof(struct txn_timers, c_ms),
        [TXN_TIMER_F] = offsetof(struct txn_timers, f_ms),
        [TXN_TIMER_H] = offsetof(struct txn_timers, h_ms),
        [TXN_TIMER_L] = offsetof(struct txn_timers, l_ms),
        [TXN_TIMER_CANCEL] = offsetof(struct txn_timers, cancel_ms),
    };
    if (timer == TXN_TIMER_KEEP)
        return;
    uint32_t slot = (uint32_t)(t - tb->slots);
    dequeue(tb, slot);
    t->timer = (uint8_t)timer;
    if (timer == TXN_TIMER_NONE) {
        t->deadline_ms = INT64_MAX;
        return;
    }
    uint32_t ms;
    memcpy(&ms, (const char *)&tb->timers + off[timer], sizeof(ms));
    t->deadline_ms = now > INT64_MAX - (int64_t)ms ? INT64_MAX : now + ms;
    enqueue(tb, slot, timer);
}

/* ---- matching -------------------------------------------------------------------------------- */

/* The slot of the transaction from `client_id` keyed (branch, sent_by, method), or NIL. An ACK
 * looks for an INVITE; a CANCEL (`method` SIP_METHOD_CANCEL) for any method. */
static uint32_t find(const struct txn_table *tb, uint32_t client_id, struct slice branch,
                     struct slice sent_by, enum sip_method method)
{
    if (branch.len > TXN_BRANCH_MAX)
        return NIL;
    for (uint32_t s = tb->buckets[bucket_of(tb, client_id, branch)]; s != NIL;
         s = tb->slots[s].next) {
        const struct txn *t = &tb->slots[s];
        if (t->client_id == client_id && slice_eq(slice_make(t->branch, t->branch_len), branch) &&
            slice_eqi(slice_make(t->sent_by, t->sent_by_len), sent_by) &&
            (method == SIP_METHOD_CANCEL || t->method == method))
            return s;
    }
    return NIL;
}

int txn_open(struct txn_table *tb, enum sip_method method, uint32_t client_id, struct slice branch,
             struct slice sent_by, int64_t now_ms, uint64_t *id, struct txn_out *out)
{
    if (method == SIP_METHOD_ACK || method == SIP_METHOD_CANCEL || (unsigned)method >= 256)
        return -EINVAL;
    if (branch.len < sizeof(BRANCH_COOKIE) - 1 ||
        memcmp(branch.base, BRANCH_COOKIE, sizeof(BRANCH_COOKIE) - 1) != 0)
        return -EPROTO;
    if (branch.len > TXN_BRANCH_MAX || sent_by.len > TXN_SENT_BY_MAX)
        return -ENAMETOOLONG;
    if (find(tb, client_id, branch, sent_by, method) != NIL)
        return -EEXIST;
    if (tb->free_head == NIL && tb->fresh == tb->cap)
        return -ENOSPC;

    uint32_t slot = tb->free_head != NIL ? tb->free_head : tb->fresh++;
    uint32_t b = bucket_of(tb, client_id, branch);
    struct txn *t = &tb->slots[slot];
    if (slot == tb->free_head)
        tb->free_head = t->next;
    t->kind = method == SIP_METHOD_INVITE ? TXN_KIND_INVITE : TXN_KIND_NON_INVITE;
    t->state = t->kind == TXN_KIND_INVITE ? TXN_CALLING : TXN_TRYING;
    t->method = (uint8_t)method;
    t->client_id = client_id;
    t->user = 0;
    t->branch_len = (uint8_t)branch.len;
    memcpy(t->branch, branch.base, branch.len);
    t->sent_by_len = (uint8_t)sent_by.len;
    if (sent_by.len)
        memcpy(t->sent_by, sent_by.base, sent_by.len);
    arm(tb, t, t->kind == TXN_KIND_INVITE ? TXN_TIMER_B : TXN_TIMER_F, now_ms);
    t->next = tb->buckets[b];
    tb->buckets[b] = slot;
    tb->count++;
    *id = id_of(tb, slot);
    *out =
        (struct txn_out){TXN_FREE, t->state, t->kind == TXN_KIND_INVITE ? TXN_A_SEND_100 : 0, true};
    return 0;
}

int txn_step(struct txn_table *tb, uint64_t id, enum txn_event ev, int64_t now_ms,
             struct txn_out *out)
{
    if ((unsigned)ev >= TXN_EV_COUNT)
        return -EINVAL;
    if (txn_get(tb, id) == NULL)
        return -ESTALE;
    uint32_t slot = (uint32_t)id;
    struct txn *t = &tb->slots[slot];
    unsigned r = lookup[t->kind][t->state][ev];

    out->from = (enum txn_state)t->state;
    if (r == 0) {
        *out = (struct txn_out){out->from, out->from, TXN_A_ABSORB, false};
        if (ev == TXN_EV_TIMEOUT) /* a timer no row handles must not fire again and again */
            arm(tb, t, TXN_TIMER_NONE, now_ms);
        return 0;
    }
    const struct txn_row *row = &rows[r - 1];
    *out = (struct txn_out){out->from, row->next, row->actions, true};
    if (row->actions & TXN_A_FREE) {
        unlink_slot(tb, slot);
        return 0;
    }
    t->state = (uint8_t)row->next;
    arm(tb, t, row->timer, now_ms);
    return 0;
}

int txn_abandon(struct txn_table *tb, uint64_t id)
{
    if (txn_get(tb, id) == NULL)
        return -ESTALE;
    unlink_slot(tb, (uint32_t)id);
    return 0;
}

static size_t put_hex(char *p, uint64_t v)
{
    char tmp[16];
    size_t n = 0;
    do
        tmp[n++] = "0123456789abcdef"[v & 15];
    while ((v >>= 4) != 0);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

ssize_t txn_branch(const struct txn_table *tb, uint64_t id, char *buf, size_t cap)
{
    char tmp[TXN_OUR_BRANCH_MAX];
    size_t n = sizeof(OUR_PREFIX) - 1;

    memcpy(tmp, OUR_PREFIX, n);
    memcpy(tmp + n, tb->nonce, 8);
    n += 8;
    tmp[n++] = '.';
    n += put_hex(tmp + n, tb->worker);
    tmp[n++] = '.';
    n += put_hex(tmp + n, id);
    if (n > cap)
        return -ENOSPC;
    memcpy(buf, tmp, n);
    return (ssize_t)n;
}

/* Parse 1..16 lower-case hex digits from *p up to `end` or `stop`. */
static bool get_hex(const char **p, const char *end, char stop, uint64_t *v)
{
    const char *s = *p;
    *v = 0;
    while (*p < end && **p != stop) {
        char c = **p;
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                            : 16u;
        if (d == 16 || *p - s == 16)
            return false;
        *v = *v << 4 | d;
        (*p)++;
    }
    return *p > s;
}

enum txn_resp_match txn_match_response(const struct txn_table *tb, struct slice branch,
                                       enum sip_method cseq_method, uint64_t *id)
{
    size_t pre = sizeof(OUR_PREFIX) - 1;
    const char *p = branch.base + pre + 8, *end = branch.base + branch.len;
    uint64_t w, v;

    if (branch.len < pre + 8 + 4 || memcmp(branch.base, OUR_PREFIX, pre) != 0 ||
        memcmp(branch.base + pre, tb->nonce, 8) != 0 || *p++ != '.')
        return TXN_RESP_NONE;
    if (!get_hex(&p, end, '.', &w) || w != tb->worker || p == end || *p++ != '.' ||
        !get_hex(&p, end, '\0', &v) || p != end)
        return TXN_RESP_NONE;
    const struct txn *t = txn_get(tb, v);
    if (t == NULL)
        return TXN_RESP_NONE;
    *id = v;
    if (cseq_method == (enum sip_method)t->method)
        return TXN_RESP_TXN;
    if (cseq_method == SIP_METHOD_CANCEL && t->kind == TXN_KIND_INVITE)
        return TXN_RESP_CANCEL;
    return TXN_RESP_NONE;
}

enum txn_req_match txn_match_request(const struct txn_table *tb, uint32_t client_id,
                                     enum sip_method method, struct slice branch,
                                     struct slice sent_by, uint64_t *id)
{
    enum sip_method want = method == SIP_METHOD_ACK ? SIP_METHOD_INVITE : method;
    uint32_t s = find(tb, client_id, branch, sent_by, want);

    if (s == NIL)
        return method == SIP_METHOD_CANCEL ? TXN_REQ_CANCEL_NO_MATCH : TXN_REQ_NEW;
    *id = id_of(tb, s);
    if (method == SIP_METHOD_CANCEL)
        return TXN_REQ_CANCEL;
    if (method == SIP_METHOD_ACK)
        return tb->slots[s].state == TXN_ACCEPTED ? TXN_REQ_NEW : TXN_REQ_ACK;
    return TXN_REQ_RETRANSMIT;
}

/* A merge of the queues' heads: each queue is in deadline order, so the due transactions are a
 * prefix of each; they come out in deadline order across kinds (ties: B, C, F, H, L, CANCEL).
 * Nothing is unlinked here: the caller's TXN_EV_TIMEOUT step frees or re-arms. */
size_t txn_expired(const struct txn_table *tb, int64_t now_ms, uint64_t *ids, size_t cap,
                   int64_t *next_ms)
{
    uint32_t cur[TXN_TIMER_KEEP];
    size_t n = 0;
    int64_t next = INT64_MAX;

    for (unsigned k = TXN_TIMER_NONE + 1; k < TXN_TIMER_KEEP; k++)
        cur[k] = tb->qhead[k];
    while (n < cap) {
        unsigned best = TXN_TIMER_NONE;
        for (unsigned k = TXN_TIMER_NONE + 1; k < TXN_TIMER_KEEP; k++)
            if (cur[k] != NIL && tb->slots[cur[k]].deadline_ms <= now_ms &&
                (best == TXN_TIMER_NONE ||
                 tb->slots[cur[k]].deadline_ms < tb->slots[cur[best]].deadline_ms))
                best = k;
        if (best == TXN_TIMER_NONE)
            break;
        ids[n++] = id_of(tb, cur[best]);
        cur[best] = tb->slots[cur[best]].tnext;
    }
    for (unsigned k = TXN_TIMER_NONE + 1; k < TXN_TIMER_KEEP; k++)
        if (cur[k] != NIL && tb->slots[cur[k]].deadline_ms < next)
            next = tb->slots[cur[k]].deadline_ms;
    *next_ms = next;
    return n;
}
