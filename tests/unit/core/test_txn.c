// SPDX-License-Identifier: MIT
// Tests for core/txn.c: every row of the transition table reached by a real event sequence and
// checked against expectations written here from RFC 3261/6026, the timers each row arms,
// CANCEL and ACK matching (RFC 3261 §17.2.3), response matching by our branch, Timer C, table full.
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/txn.h"

/* distinct durations, so a deadline names the timer that set it */
static const struct txn_timers timers = {1000, 2000, 3000, 4000, 5000, 6000};
static struct txn_table *tb;

static void setup(void)
{
    tb = txn_table_new(8, 3, &timers);
    cr_assert_not_null(tb);
}

static void teardown(void)
{
    txn_table_free(tb);
}

TestSuite(txn, .init = setup, .fini = teardown);

#define A(x)  TXN_A_##x
#define K_INV TXN_KIND_INVITE
#define K_NI  TXN_KIND_NON_INVITE

/* Expected rows, written out from the RFCs (not generated from the header's table). */
static const struct txn_row want[] = {
    {K_INV, TXN_CALLING, TXN_EV_100, TXN_PROCEEDING, A(ABSORB), TXN_TIMER_C},
    {K_INV, TXN_CALLING, TXN_EV_1XX, TXN_PROCEEDING, A(RELAY), TXN_TIMER_C},
    {K_INV, TXN_CALLING, TXN_EV_2XX, TXN_ACCEPTED, A(RELAY), TXN_TIMER_L},
    {K_INV, TXN_CALLING, TXN_EV_FINAL, TXN_COMPLETED, A(RELAY) | A(SEND_ACK), TXN_TIMER_H},
    {K_INV, TXN_CALLING, TXN_EV_CANCEL, TXN_CANCEL_PENDING, A(CANCEL_200), TXN_TIMER_KEEP},
    {K_INV, TXN_CALLING, TXN_EV_TIMEOUT, TXN_FREE, A(REPLY_408) | A(FREE), TXN_TIMER_NONE},
    {K_INV, TXN_CALLING, TXN_EV_SEND_FAILED, TXN_FREE, A(REPLY_503) | A(FREE), TXN_TIMER_NONE},
    {K_INV, TXN_CANCEL_PENDING, TXN_EV_100, TXN_CANCELLING, A(ABSORB) | A(SEND_CANCEL),
     TXN_TIMER_CANCEL},
    {K_INV, TXN_CANCEL_PENDING, TXN_EV_1XX, TXN_CANCELLING, A(RELAY) | A(SEND_CANCEL),
     TXN_TIMER_CANCEL},
    {K_INV, TXN_CANCEL_PENDING, TXN_EV_2XX, TXN_ACCEPTED, A(RELAY), TXN_TIMER_L},
    {K_INV, TXN_CANCEL_PENDING, TXN_EV_FINAL, TXN_COMPLETED, A(RELAY) | A(SEND_ACK), TXN_TIMER_H},
    {K_INV, TXN_CANCEL_PENDING, TXN_EV_CANCEL, TXN_CANCEL_PENDING, A(CANCEL_200), TXN_TIMER_KEEP},
    {K_INV, TXN_CANCEL_PENDING, TXN_EV_TIMEOUT, TXN_FREE, A(REPLY_487) | A(FREE), TXN_TIMER_NONE},
    {K_INV, TXN_CANCEL_PENDING, TXN_EV_SEND_FAILED, TXN_FREE, A(REPLY_487) | A(FREE),
     TXN_TIMER_NONE},
    {K_INV, TXN_PROCEEDING, TXN_EV_100, TXN_PROCEEDING, A(ABSORB), TXN_TIMER_KEEP},
    {K_INV, TXN_PROCEEDING, TXN_EV_1XX, TXN_PROCEEDING, A(RELAY), TXN_TIMER_C},
    {K_INV, TXN_PROCEEDING, TXN_EV_2XX, TXN_ACCEPTED, A(RELAY), TXN_TIMER_L},
    {K_INV, TXN_PROCEEDING, TXN_EV_FINAL, TXN_COMPLETED, A(RELAY) | A(SEND_ACK), TXN_TIMER_H},
    {K_INV, TXN_PROCEEDING, TXN_EV_CANCEL, TXN_CANCELLING, A(CANCEL_200) | A(SEND_CANCEL),
     TXN_TIMER_CANCEL},
    {K_INV, TXN_PROCEEDING, TXN_EV_TIMEOUT, TXN_TIMED_OUT, A(SEND_CANCEL) | A(REPLY_408),
     TXN_TIMER_CANCEL},
    {K_INV, TXN_PROCEEDING, TXN_EV_SEND_FAILED, TXN_FREE, A(REPLY_503) | A(FREE), TXN_TIMER_NONE},
    {K_INV, TXN_CANCELLING, TXN_EV_1XX, TXN_CANCELLING, A(RELAY), TXN_TIMER_KEEP},
    {K_INV, TXN_CANCELLING, TXN_EV_2XX, TXN_ACCEPTED, A(RELAY), TXN_TIMER_L},
    {K_INV, TXN_CANCELLING, TXN_EV_FINAL, TXN_COMPLETED, A(RELAY) | A(SEND_ACK), TXN_TIMER_H},
    {K_INV, TXN_CANCELLING, TXN_EV_CANCEL, TXN_CANCELLING, A(CANCEL_200), TXN_TIMER_KEEP},
    {K_INV, TXN_CANCELLING, TXN_EV_TIMEOUT, TXN_FREE, A(REPLY_487) | A(FREE), TXN_TIMER_NONE},
    {K_INV, TXN_CANCELLING, TXN_EV_SEND_FAILED, TXN_FREE, A(REPLY_487) | A(FREE), TXN_TIMER_NONE},
    {K_INV, TXN_TIMED_OUT, TXN_EV_2XX, TXN_ACCEPTED, A(RELAY), TXN_TIMER_L},
    {K_INV, TXN_TIMED_OUT, TXN_EV_FINAL, TXN_COMPLETED, A(ABSORB) | A(SEND_ACK), TXN_TIMER_H},
    {K_INV, TXN_TIMED_OUT, TXN_EV_CANCEL, TXN_TIMED_OUT, A(CANCEL_200), TXN_TIMER_KEEP},
    {K_INV, TXN_TIMED_OUT, TXN_EV_TIMEOUT, TXN_FREE, A(FREE), TXN_TIMER_NONE},
    {K_INV, TXN_TIMED_OUT, TXN_EV_SEND_FAILED, TXN_FREE, A(FREE), TXN_TIMER_NONE},
    {K_INV, TXN_COMPLETED, TXN_EV_FINAL, TXN_COMPLETED, A(ABSORB) | A(SEND_ACK), TXN_TIMER_KEEP},
    {K_INV, TXN_COMPLETED, TXN_EV_ACK, TXN_FREE, A(ABSORB) | A(FREE), TXN_TIMER_NONE},
    {K_INV, TXN_COMPLETED, TXN_EV_CANCEL, TXN_COMPLETED, A(CANCEL_200), TXN_TIMER_KEEP},
    {K_INV, TXN_COMPLETED, TXN_EV_TIMEOUT, TXN_FREE, A(FREE), TXN_TIMER_NONE},
    {K_INV, TXN_ACCEPTED, TXN_EV_2XX, TXN_ACCEPTED, A(RELAY), TXN_TIMER_KEEP},
    {K_INV, TXN_ACCEPTED, TXN_EV_CANCEL, TXN_ACCEPTED, A(CANCEL_200), TXN_TIMER_KEEP},
    {K_INV, TXN_ACCEPTED, TXN_EV_TIMEOUT, TXN_FREE, A(FREE), TXN_TIMER_NONE},
    {K_NI, TXN_TRYING, TXN_EV_100, TXN_NI_PROCEEDING, A(ABSORB), TXN_TIMER_KEEP},
    {K_NI, TXN_TRYING, TXN_EV_1XX, TXN_NI_PROCEEDING, A(RELAY), TXN_TIMER_KEEP},
    {K_NI, TXN_TRYING, TXN_EV_2XX, TXN_FREE, A(RELAY) | A(FREE), TXN_TIMER_NONE},
    {K_NI, TXN_TRYING, TXN_EV_FINAL, TXN_FREE, A(RELAY) | A(FREE), TXN_TIMER_NONE},
    {K_NI, TXN_TRYING, TXN_EV_CANCEL, TXN_TRYING, A(CANCEL_200), TXN_TIMER_KEEP},
    {K_NI, TXN_TRYING, TXN_EV_TIMEOUT, TXN_FREE, A(REPLY_408) | A(FREE), TXN_TIMER_NONE},
    {K_NI, TXN_TRYING, TXN_EV_SEND_FAILED, TXN_FREE, A(REPLY_503) | A(FREE), TXN_TIMER_NONE},
    {K_NI, TXN_NI_PROCEEDING, TXN_EV_1XX, TXN_NI_PROCEEDING, A(RELAY), TXN_TIMER_KEEP},
    {K_NI, TXN_NI_PROCEEDING, TXN_EV_2XX, TXN_FREE, A(RELAY) | A(FREE), TXN_TIMER_NONE},
    {K_NI, TXN_NI_PROCEEDING, TXN_EV_FINAL, TXN_FREE, A(RELAY) | A(FREE), TXN_TIMER_NONE},
    {K_NI, TXN_NI_PROCEEDING, TXN_EV_CANCEL, TXN_NI_PROCEEDING, A(CANCEL_200), TXN_TIMER_KEEP},
    {K_NI, TXN_NI_PROCEEDING, TXN_EV_TIMEOUT, TXN_FREE, A(REPLY_408) | A(FREE), TXN_TIMER_NONE},
    {K_NI, TXN_NI_PROCEEDING, TXN_EV_SEND_FAILED, TXN_FREE, A(REPLY_503) | A(FREE), TXN_TIMER_NONE},
};
#define N_WANT (sizeof(want) / sizeof(want[0]))

static const struct txn_row *find_want(enum txn_kind kind, enum txn_state s, enum txn_event e)
{
    for (size_t i = 0; i < N_WANT; i++)
        if (want[i].kind == kind && want[i].state == s && want[i].event == e)
            return &want[i];
    return NULL;
}

/* Events that lead from a fresh transaction of `kind` to state `s`. */
static size_t path_to(enum txn_kind kind, enum txn_state s, enum txn_event *ev)
{
    if (kind == K_NI)
        return s == TXN_NI_PROCEEDING ? (ev[0] = TXN_EV_1XX, 1u) : 0u;
    switch (s) {
    case TXN_PROCEEDING:
        return ev[0] = TXN_EV_1XX, 1;
    case TXN_CANCEL_PENDING:
        return ev[0] = TXN_EV_CANCEL, 1;
    case TXN_CANCELLING:
        return ev[0] = TXN_EV_1XX, ev[1] = TXN_EV_CANCEL, 2;
    case TXN_TIMED_OUT:
        return ev[0] = TXN_EV_1XX, ev[1] = TXN_EV_TIMEOUT, 2;
    case TXN_COMPLETED:
        return ev[0] = TXN_EV_FINAL, 1;
    case TXN_ACCEPTED:
        return ev[0] = TXN_EV_2XX, 1;
    default:
        return 0;
    }
}

static uint64_t open_txn(enum sip_method m, const char *branch, int64_t now)
{
    uint64_t id;
    struct txn_out out;
    cr_assert_eq(txn_open(tb, m, 42, slice_make(branch, strlen(branch)), SLICE_LIT("10.0.0.9:5061"),
                          now, &id, &out),
                 0);
    return id;
}

static int64_t duration(enum txn_timer t)
{
    switch (t) {
    case TXN_TIMER_B:
        return timers.b_ms;
    case TXN_TIMER_C:
        return timers.c_ms;
    case TXN_TIMER_F:
        return timers.f_ms;
    case TXN_TIMER_H:
        return timers.h_ms;
    case TXN_TIMER_L:
        return timers.l_ms;
    case TXN_TIMER_CANCEL:
        return timers.cancel_ms;
    default:
        return -1;
    }
}

/* Drive (kind, state, event) from a fresh transaction and check the outcome against `w`, or
 * against "absorbed, nothing changes" when `w` is NULL. */
static void drive(enum txn_kind kind, enum txn_state s, enum txn_event e, const struct txn_row *w)
{
    enum txn_event path[4];
    struct txn_out out;
    uint64_t id = open_txn(kind == K_INV ? SIP_METHOD_INVITE : SIP_METHOD_BYE, "z9hG4bK-x", 0);
    size_t n = path_to(kind, s, path);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(txn_step(tb, id, path[i], 10 * (int64_t)(i + 1), &out), 0);
    const struct txn *t = txn_get(tb, id);
    cr_assert_not_null(t);
    cr_assert_eq(t->state, s, "path to %s", txn_state_name(s));
    int64_t before = t->deadline_ms;
    enum txn_timer timer_before = (enum txn_timer)t->timer;

    cr_assert_eq(txn_step(tb, id, e, 100, &out), 0);
    const char *why = txn_event_name(e);
    cr_assert_eq(out.from, s, "%s/%s", txn_state_name(s), why);
    if (w == NULL) {
        cr_assert(!out.listed && out.actions == TXN_A_ABSORB && out.to == s, "%s/%s default",
                  txn_state_name(s), why);
        t = txn_get(tb, id);
        cr_assert(t && t->state == s && t->deadline_ms == before);
    } else {
        cr_assert(out.listed, "%s/%s", txn_state_name(s), why);
        cr_assert_eq(out.to, w->next, "%s/%s -> %s", txn_state_name(s), why,
                     txn_state_name(out.to));
        cr_assert_eq(out.actions, w->actions, "%s/%s actions %#x", txn_state_name(s), why,
                     out.actions);
        t = txn_get(tb, id);
        if (w->actions & TXN_A_FREE) {
            cr_assert_null(t, "%s/%s frees", txn_state_name(s), why);
        } else if (w->timer == TXN_TIMER_KEEP) {
            cr_assert(t->deadline_ms == before && t->timer == timer_before, "%s/%s keeps",
                      txn_state_name(s), why);
        } else {
            cr_assert_eq(t->timer, w->timer, "%s/%s timer", txn_state_name(s), why);
            cr_assert_eq(t->deadline_ms, 100 + duration(w->timer), "%s/%s deadline",
                         txn_state_name(s), why);
        }
    }
    if (txn_get(tb, id) != NULL) { /* clean up: the slot must be reusable by the next row */
        while (txn_get(tb, id) != NULL)
            cr_assert_eq(txn_step(tb, id, TXN_EV_TIMEOUT, INT64_MAX / 2, &out), 0);
    }
    cr_assert_eq(txn_count(tb), 0);
}

Test(txn, every_state_and_event_behaves_as_written)
{
    static const enum txn_state inv_states[] = {TXN_CALLING,    TXN_PROCEEDING, TXN_CANCEL_PENDING,
                                                TXN_CANCELLING, TXN_TIMED_OUT,  TXN_COMPLETED,
                                                TXN_ACCEPTED};
    static const enum txn_state ni_states[] = {TXN_TRYING, TXN_NI_PROCEEDING};
    for (size_t i = 0; i < sizeof(inv_states) / sizeof(inv_states[0]); i++)
        for (int e = 0; e < TXN_EV_COUNT; e++)
            drive(K_INV, inv_states[i], e, find_want(K_INV, inv_states[i], e));
    for (size_t i = 0; i < sizeof(ni_states) / sizeof(ni_states[0]); i++)
        for (int e = 0; e < TXN_EV_COUNT; e++)
            drive(K_NI, ni_states[i], e, find_want(K_NI, ni_states[i], e));
}

Test(txn, the_header_table_is_exactly_the_expected_rows)
{
    size_t n;
    const struct txn_row *rows = txn_rows(&n);
    cr_assert_eq(n, N_WANT);
    for (size_t i = 0; i < n; i++) {
        const struct txn_row *w = find_want(rows[i].kind, rows[i].state, rows[i].event);
        cr_assert_not_null(w, "row %zu not expected", i);
        cr_assert(
            w->next == rows[i].next && w->actions == rows[i].actions && w->timer == rows[i].timer,
            "row %zu: %s/%s", i, txn_state_name(rows[i].state), txn_event_name(rows[i].event));
    }
}

Test(txn, open_arms_b_or_f_and_sends_100_for_invite_only)
{
    uint64_t id;
    struct txn_out out;
    cr_assert_eq(
        txn_open(tb, SIP_METHOD_INVITE, 1, SLICE_LIT("z9hG4bK-a"), SLICE_LIT("h"), 7, &id, &out),
        0);
    cr_assert(out.to == TXN_CALLING && out.actions == TXN_A_SEND_100);
    cr_assert(txn_get(tb, id)->timer == TXN_TIMER_B && txn_get(tb, id)->deadline_ms == 1007);
    cr_assert_eq(
        txn_open(tb, SIP_METHOD_SUBSCRIBE, 1, SLICE_LIT("z9hG4bK-b"), SLICE_LIT("h"), 7, &id, &out),
        0);
    cr_assert(out.to == TXN_TRYING && out.actions == 0);
    cr_assert(txn_get(tb, id)->timer == TXN_TIMER_F && txn_get(tb, id)->deadline_ms == 3007);
}

Test(txn, open_rejects_what_it_cannot_match_later)
{
    uint64_t id;
    struct txn_out out;
    char longb[TXN_BRANCH_MAX + 2];
    memset(longb, 'x', sizeof(longb));
    memcpy(longb, "z9hG4bK", 7);
    cr_assert_eq(
        txn_open(tb, SIP_METHOD_INVITE, 1, SLICE_LIT("1234"), SLICE_LIT("h"), 0, &id, &out),
        -EPROTO, "RFC 2543 branch");
    cr_assert_eq(
        txn_open(tb, SIP_METHOD_INVITE, 1, SLICE_LIT("Z9HG4BK-a"), SLICE_LIT("h"), 0, &id, &out),
        -EPROTO, "the cookie is case-sensitive");
    cr_assert_eq(txn_open(tb, SIP_METHOD_INVITE, 1, slice_make(longb, sizeof(longb)),
                          SLICE_LIT("h"), 0, &id, &out),
                 -ENAMETOOLONG);
    cr_assert_eq(
        txn_open(tb, SIP_METHOD_ACK, 1, SLICE_LIT("z9hG4bK-a"), SLICE_LIT("h"), 0, &id, &out),
        -EINVAL);
    cr_assert_eq(
        txn_open(tb, SIP_METHOD_CANCEL, 1, SLICE_LIT("z9hG4bK-a"), SLICE_LIT("h"), 0, &id, &out),
        -EINVAL);
    open_txn(SIP_METHOD_INVITE, "z9hG4bK-dup", 0);
    cr_assert_eq(txn_open(tb, SIP_METHOD_INVITE, 42, SLICE_LIT("z9hG4bK-dup"),
                          SLICE_LIT("10.0.0.9:5061"), 0, &id, &out),
                 -EEXIST, "a retransmission");
    cr_assert_eq(txn_count(tb), 1);
}

Test(txn, a_full_table_is_enospc_and_a_freed_slot_is_stale)
{
    uint64_t ids[8], id;
    struct txn_out out;
    char b[32];
    for (int i = 0; i < 8; i++) {
        snprintf(b, sizeof(b), "z9hG4bK-%d", i);
        ids[i] = open_txn(SIP_METHOD_OPTIONS, b, 0);
    }
    cr_assert_eq(
        txn_open(tb, SIP_METHOD_OPTIONS, 42, SLICE_LIT("z9hG4bK-9"), SLICE_LIT("h"), 0, &id, &out),
        -ENOSPC, "the caller answers 503");
    cr_assert_eq(txn_step(tb, ids[3], TXN_EV_2XX, 1, &out), 0);
    cr_assert(out.actions & TXN_A_FREE);
    cr_assert_null(txn_get(tb, ids[3]));
    cr_assert_eq(txn_step(tb, ids[3], TXN_EV_2XX, 1, &out), -ESTALE);
    uint64_t again = open_txn(SIP_METHOD_OPTIONS, "z9hG4bK-new", 0);
    cr_assert_eq((uint32_t)again, (uint32_t)ids[3], "the slot is reused");
    cr_assert_neq(again, ids[3], "with a new generation");
    cr_assert_null(txn_get(tb, ids[3]));
}

Test(txn, responses_match_by_our_branch_and_cseq_method)
{
    char br[TXN_OUR_BRANCH_MAX];
    uint64_t id = open_txn(SIP_METHOD_INVITE, "z9hG4bK-c", 0), got = 0;
    ssize_t n = txn_branch(tb, id, br, sizeof(br));
    cr_assert_gt(n, 0);
    cr_assert(strncmp(br, "z9hG4bK-st", 10) == 0);
    struct slice b = slice_make(br, (size_t)n);
    cr_assert_eq(txn_match_response(tb, b, SIP_METHOD_INVITE, &got), TXN_RESP_TXN);
    cr_assert_eq(got, id);
    cr_assert_eq(txn_match_response(tb, b, SIP_METHOD_CANCEL, &got), TXN_RESP_CANCEL,
                 "UCM's 200 to our CANCEL carries the INVITE's branch");
    cr_assert_eq(txn_match_response(tb, b, SIP_METHOD_BYE, &got), TXN_RESP_NONE);
    br[n - 1] ^= 1; /* another id */
    cr_assert_eq(txn_match_response(tb, b, SIP_METHOD_INVITE, &got), TXN_RESP_NONE);
    br[n - 1] ^= 1;
    br[12] = br[12] == 'a' ? 'b' : 'a'; /* another nonce: another process */
    cr_assert_eq(txn_match_response(tb, b, SIP_METHOD_INVITE, &got), TXN_RESP_NONE);
    cr_assert_eq(txn_match_response(tb, SLICE_LIT("z9hG4bK-c"), SIP_METHOD_INVITE, &got),
                 TXN_RESP_NONE);

    struct txn_table *other = txn_table_new(8, 4, &timers);
    cr_assert_eq(txn_match_response(other, slice_make(br, 0), SIP_METHOD_INVITE, &got),
                 TXN_RESP_NONE);
    txn_table_free(other);
}

Test(txn, cancel_matches_its_invite_by_branch_sent_by_and_connection)
{
    uint64_t inv = open_txn(SIP_METHOD_INVITE, "z9hG4bK-inv", 0), got = 0;
    struct txn_out out;
    struct slice sb = SLICE_LIT("10.0.0.9:5061");
    cr_assert_eq(txn_match_request(tb, 42, SIP_METHOD_CANCEL, SLICE_LIT("z9hG4bK-inv"),
                                   SLICE_LIT("10.0.0.9:5061"), &got),
                 TXN_REQ_CANCEL);
    cr_assert_eq(got, inv);
    cr_assert_eq(txn_match_request(tb, 42, SIP_METHOD_CANCEL, SLICE_LIT("z9hG4bK-inv"),
                                   SLICE_LIT("10.0.0.9:5062"), &got),
                 TXN_REQ_CANCEL_NO_MATCH, "another sent-by");
    cr_assert_eq(txn_match_request(tb, 43, SIP_METHOD_CANCEL, SLICE_LIT("z9hG4bK-inv"), sb, &got),
                 TXN_REQ_CANCEL_NO_MATCH, "another connection cannot cancel it");
    cr_assert_eq(txn_match_request(tb, 42, SIP_METHOD_CANCEL, SLICE_LIT("z9hG4bK-INV"), sb, &got),
                 TXN_REQ_CANCEL_NO_MATCH, "branch is byte-equal");
    cr_assert_eq(txn_match_request(tb, 42, SIP_METHOD_INVITE, SLICE_LIT("z9hG4bK-inv"), sb, &got),
                 TXN_REQ_RETRANSMIT);
    /* the whole CANCEL flow: 200 hop by hop at once, CANCEL forwarded, 487 relayed and ACKed */
    cr_assert_eq(txn_step(tb, inv, TXN_EV_1XX, 1, &out), 0);
    cr_assert_eq(txn_step(tb, inv, TXN_EV_CANCEL, 2, &out), 0);
    cr_assert_eq(out.actions, TXN_A_CANCEL_200 | TXN_A_SEND_CANCEL);
    cr_assert_eq(txn_step(tb, inv, TXN_EV_FINAL, 3, &out), 0);
    cr_assert_eq(out.actions, TXN_A_RELAY | TXN_A_SEND_ACK);
    cr_assert_eq(txn_match_request(tb, 42, SIP_METHOD_ACK, SLICE_LIT("z9hG4bK-inv"), sb, &got),
                 TXN_REQ_ACK);
    cr_assert_eq(txn_step(tb, got, TXN_EV_ACK, 4, &out), 0);
    cr_assert(out.actions & TXN_A_ABSORB && out.actions & TXN_A_FREE);
    cr_assert_eq(txn_match_request(tb, 42, SIP_METHOD_CANCEL, SLICE_LIT("z9hG4bK-inv"), sb, &got),
                 TXN_REQ_CANCEL_NO_MATCH, "gone: 481");
}

Test(txn, ack_for_non_2xx_is_absorbed_and_for_2xx_passes_as_a_new_request)
{
    uint64_t a = open_txn(SIP_METHOD_INVITE, "z9hG4bK-a", 0);
    uint64_t b = open_txn(SIP_METHOD_INVITE, "z9hG4bK-b", 0), got;
    struct txn_out out;
    struct slice sb = SLICE_LIT("10.0.0.9:5061");
    cr_assert_eq(txn_step(tb, a, TXN_EV_FINAL, 1, &out), 0); /* 486 */
    cr_assert_eq(txn_step(tb, b, TXN_EV_2XX, 1, &out), 0);
    cr_assert_eq(txn_match_request(tb, 42, SIP_METHOD_ACK, SLICE_LIT("z9hG4bK-a"), sb, &got),
                 TXN_REQ_ACK);
    cr_assert_eq(got, a);
    cr_assert_eq(txn_match_request(tb, 42, SIP_METHOD_ACK, SLICE_LIT("z9hG4bK-b"), sb, &got),
                 TXN_REQ_NEW, "a (buggy) 2xx ACK on the INVITE's branch is still end to end");
    cr_assert_eq(txn_match_request(tb, 42, SIP_METHOD_ACK, SLICE_LIT("z9hG4bK-new"), sb, &got),
                 TXN_REQ_NEW, "the 2xx ACK's own branch");
    cr_assert_eq(txn_match_request(tb, 42, SIP_METHOD_BYE, SLICE_LIT("z9hG4bK-a"), sb, &got),
                 TXN_REQ_NEW, "another method on the same branch is another transaction");
}

Test(txn, timer_c_expiry_cancels_downstream_and_answers_408)
{
    uint64_t id = open_txn(SIP_METHOD_INVITE, "z9hG4bK-c", 0), ids[4];
    struct txn_out out;
    int64_t next;
    cr_assert_eq(txn_step(tb, id, TXN_EV_1XX, 500, &out), 0); /* 180 at 0.5 s: C to 2.5 s */
    cr_assert_eq(txn_step(tb, id, TXN_EV_100, 900, &out), 0); /* 100 does not reset C */
    cr_assert_eq(txn_expired(tb, 2499, ids, 4, &next), 0u);
    cr_assert_eq(next, 2500);
    cr_assert_eq(txn_expired(tb, 2500, ids, 4, &next), 1u);
    cr_assert_eq(ids[0], id);
    cr_assert_eq(txn_step(tb, id, TXN_EV_TIMEOUT, 2500, &out), 0);
    cr_assert_eq(out.to, TXN_TIMED_OUT);
    cr_assert_eq(out.actions, TXN_A_SEND_CANCEL | TXN_A_REPLY_408);
    cr_assert_eq(txn_step(tb, id, TXN_EV_FINAL, 2600, &out), 0); /* UCM's 487 */
    cr_assert_eq(out.actions, TXN_A_ABSORB | TXN_A_SEND_ACK, "ACKed, not relayed after our 408");
    cr_assert_eq(txn_get(tb, id)->deadline_ms, 2600 + timers.h_ms);
}

Test(txn, timer_b_without_any_response_answers_408)
{
    uint64_t id = open_txn(SIP_METHOD_INVITE, "z9hG4bK-b", 0), ids[2];
    struct txn_out out;
    int64_t next;
    cr_assert_eq(txn_expired(tb, 1000, ids, 2, &next), 1u);
    cr_assert_eq(txn_step(tb, ids[0], TXN_EV_TIMEOUT, 1000, &out), 0);
    cr_assert_eq(out.actions, TXN_A_REPLY_408 | TXN_A_FREE);
    cr_assert_null(txn_get(tb, id));
    cr_assert_eq(txn_expired(tb, 5000, ids, 2, &next), 0u);
    cr_assert_eq(next, INT64_MAX);
}

Test(txn, status_to_event_and_names)
{
    cr_assert_eq(txn_event_of_status(100), TXN_EV_100);
    cr_assert_eq(txn_event_of_status(183), TXN_EV_1XX);
    cr_assert_eq(txn_event_of_status(200), TXN_EV_2XX);
    cr_assert_eq(txn_event_of_status(487), TXN_EV_FINAL);
    cr_assert_eq(txn_event_of_status(700), TXN_EV_COUNT);
    cr_assert_eq(txn_event_of_status(99), TXN_EV_COUNT);
    cr_assert_str_eq(txn_state_name(TXN_TIMED_OUT), "timed_out");
    cr_assert_str_eq(txn_timer_name(TXN_TIMER_C), "timer_c");
    cr_assert_str_eq(txn_event_name(TXN_EV_COUNT), "unknown");
}

/* Many transactions with every timer kind, re-armed Timer C included: txn_expired() returns
 * exactly the live ones whose deadline passed (a brute-force walk of the ids says which), in
 * batches when `cap` is small, and nothing is returned twice once stepped. */
Test(txn, expiry_by_timer_queues_matches_a_brute_force_walk)
{
    enum { N = 3000 };
    static uint64_t ids[N];
    struct txn_table *big = txn_table_new(N, 1, &timers);
    cr_assert_not_null(big);
    int64_t now = 0;
    for (int i = 0; i < N; i++) {
        char br[32];
        snprintf(br, sizeof(br), "z9hG4bKq%d", i);
        struct txn_out o;
        now += i % 3;
        enum sip_method m = i % 2 ? SIP_METHOD_INVITE : SIP_METHOD_BYE;
        cr_assert_eq(
            txn_open(big, m, 1, slice_make(br, strlen(br)), SLICE_LIT("h"), now, &ids[i], &o), 0);
        if (m == SIP_METHOD_INVITE && i % 5 == 1) /* Timer C, then re-armed later */
            txn_step(big, ids[i], TXN_EV_1XX, now, &o);
        if (m == SIP_METHOD_INVITE && i % 7 == 3) /* Timer L */
            txn_step(big, ids[i], TXN_EV_2XX, now, &o);
        if (m == SIP_METHOD_INVITE && i % 11 == 5) /* Timer H */
            txn_step(big, ids[i], TXN_EV_FINAL, now, &o);
        if (i % 13 == 0 && i > 0 && txn_get(big, ids[i - 13]) != NULL &&
            txn_get(big, ids[i - 13])->timer == TXN_TIMER_C)
            txn_step(big, ids[i - 13], TXN_EV_1XX, now, &o); /* C moves to the queue's tail */
    }
    size_t fired = 0;
    for (int64_t t = 0; t <= now + 200000; t += 250) {
        /* brute force: which live transactions are due now */
        size_t due = 0;
        for (int i = 0; i < N; i++) {
            const struct txn *x = txn_get(big, ids[i]);
            if (x != NULL && x->timer != TXN_TIMER_NONE && x->deadline_ms <= t)
                due++;
        }
        size_t got = 0;
        for (;;) {
            uint64_t batch[7];
            int64_t next;
            size_t n = txn_expired(big, t, batch, 7, &next);
            for (size_t k = 0; k < n; k++) {
                const struct txn *x = txn_get(big, batch[k]);
                cr_assert_not_null(x);
                cr_assert_leq(x->deadline_ms, t);
                struct txn_out o;
                cr_assert_eq(txn_step(big, batch[k], TXN_EV_TIMEOUT, t, &o), 0);
                cr_assert(o.listed, "a timer fired in a state without a timeout row");
            }
            got += n;
            if (n < 7) {
                cr_assert_gt(next, t, "what is left is in the future");
                break;
            }
        }
        /* a TIMEOUT may arm the next timer (Timed-Out waits CANCEL): those count later */
        cr_assert_geq(got, due > 0 ? 1 : 0);
        cr_assert_leq(got, due + (size_t)N);
        fired += got;
        for (int i = 0; i < N; i++) { /* nothing due is left behind */
            const struct txn *x = txn_get(big, ids[i]);
            cr_assert(x == NULL || x->timer == TXN_TIMER_NONE || x->deadline_ms > t,
                      "slot %d due at %lld left at %lld", i, (long long)x->deadline_ms,
                      (long long)t);
        }
    }
    cr_assert_eq(txn_count(big), 0, "every transaction ended by its timers");
    cr_assert_geq(fired, N);
    txn_table_free(big);
}

/* ---- the timer queues ------------------------------------------------------------------- */

static void step_ok(uint64_t id, enum txn_event ev, int64_t now)
{
    struct txn_out out;
    cr_assert_eq(txn_step(tb, id, ev, now, &out), 0);
}

Test(txn, expiry_comes_out_in_deadline_order_across_kinds)
{
    /* B 1000, C 2000, F 3000, H 4000, L 5000, CANCEL 6000 from different start times */
    uint64_t l = open_txn(SIP_METHOD_INVITE, "z9hG4bK-l", 0);
    step_ok(l, TXN_EV_2XX, 0);                                   /* L at 5000 */
    uint64_t f = open_txn(SIP_METHOD_BYE, "z9hG4bK-f", 100);     /* F at 3100 */
    uint64_t b = open_txn(SIP_METHOD_INVITE, "z9hG4bK-b", 3050); /* B at 4050 */
    uint64_t c = open_txn(SIP_METHOD_INVITE, "z9hG4bK-c", 0);
    step_ok(c, TXN_EV_1XX, 1000); /* C at 3000 */
    uint64_t h = open_txn(SIP_METHOD_INVITE, "z9hG4bK-h", 0);
    step_ok(h, TXN_EV_FINAL, 10); /* H at 4010 */
    uint64_t x = open_txn(SIP_METHOD_INVITE, "z9hG4bK-x", 0);
    step_ok(x, TXN_EV_100, 0);
    step_ok(x, TXN_EV_CANCEL, 0); /* CANCEL at 6000 */
    uint64_t ids[8], want_ids[] = {c, f, h, b, l, x};
    int64_t next;
    cr_assert_eq(txn_expired(tb, 2999, ids, 8, &next), 0u);
    cr_assert_eq(next, 3000);
    cr_assert_eq(txn_expired(tb, 6000, ids, 8, &next), 6u);
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(ids[i], want_ids[i], "position %zu", i);
    cr_assert_eq(next, INT64_MAX);
    cr_assert_eq(txn_expired(tb, 4010, ids, 8, &next), 3u);
    cr_assert_eq(next, 4050);
}

Test(txn, timer_c_reset_moves_the_deadline_behind_later_ones)
{
    uint64_t a = open_txn(SIP_METHOD_INVITE, "z9hG4bK-a", 0), ids[4];
    uint64_t b = open_txn(SIP_METHOD_INVITE, "z9hG4bK-b", 0);
    int64_t next;
    step_ok(a, TXN_EV_1XX, 100); /* C at 2100 */
    step_ok(b, TXN_EV_1XX, 200); /* C at 2200 */
    step_ok(a, TXN_EV_1XX, 300); /* 183: a's C moves to 2300, behind b */
    step_ok(a, TXN_EV_100, 400); /* 100 does not reset */
    cr_assert_eq(txn_get(tb, a)->deadline_ms, 2300);
    cr_assert_eq(txn_expired(tb, 2299, ids, 4, &next), 1u);
    cr_assert_eq(ids[0], b);
    cr_assert_eq(next, 2300, "a's old deadline 2100 is gone");
    cr_assert_eq(txn_expired(tb, 2300, ids, 4, &next), 2u);
    cr_assert(ids[0] == b && ids[1] == a);
}

Test(txn, a_small_cap_returns_the_rest_on_the_next_call)
{
    uint64_t id[6], got[2], all[6];
    char br[32];
    int64_t next;
    for (int i = 0; i < 6; i++) {
        snprintf(br, sizeof(br), "z9hG4bK-%d", i);
        id[i] = open_txn(SIP_METHOD_OPTIONS, br, i); /* F at 3000 + i */
    }
    cr_assert_eq(txn_expired(tb, 3004, got, 2, &next), 2u);
    cr_assert(got[0] == id[0] && got[1] == id[1]);
    cr_assert_leq(next, 3004, "more are due");
    cr_assert_eq(txn_expired(tb, 3004, all, 2, &next), 2u, "nothing stepped: the same again");
    cr_assert(all[0] == id[0] && all[1] == id[1]);
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < 2; k++)
            step_ok(got[k], TXN_EV_TIMEOUT, 3004);
        cr_assert_eq(txn_expired(tb, 3004, got, 2, &next), round == 0 ? 2u : 1u);
        cr_assert_eq(got[0], id[2 + 2 * round]);
        if (round == 0)
            cr_assert_eq(got[1], id[3]);
    }
    cr_assert_eq(next, 3005);
    step_ok(got[0], TXN_EV_TIMEOUT, 3004);
    cr_assert_eq(txn_expired(tb, 3005, got, 2, &next), 1u);
    cr_assert_eq(got[0], id[5]);
}

/* the reference: every live transaction's (deadline, id), by a scan over the ids opened */
struct ref {
    int64_t deadline;
    uint64_t id;
};

static int ref_cmp(const void *a, const void *b)
{
    const struct ref *x = a, *y = b;
    return x->deadline < y->deadline   ? -1
           : x->deadline > y->deadline ? 1
                                       : (x->id > y->id) - (x->id < y->id);
}

static int id_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

Test(txn, fifty_thousand_mixed_timers_expire_exactly_at_their_deadlines)
{
    enum { N = 50000, BATCH = 97 };
    struct txn_table *big = txn_table_new(N, 1, &timers);
    uint64_t *ids = malloc(N * sizeof(*ids)), *got = malloc(N * sizeof(*got));
    struct ref *ref = malloc(N * sizeof(*ref));
    struct txn_out out;
    char br[32];
    unsigned seed = 12345;
    cr_assert(big && ids && got && ref);

    /* open over 0..9999 ms, then step a random event at a later time: every timer kind */
    for (int i = 0; i < N; i++) {
        int64_t t0 = i / 5;
        int n = snprintf(br, sizeof(br), "z9hG4bK-%d", i);
        enum sip_method m = i % 4 == 3 ? SIP_METHOD_MESSAGE : SIP_METHOD_INVITE;
        cr_assert_eq(
            txn_open(big, m, 7, slice_make(br, (size_t)n), SLICE_LIT("h"), t0, &ids[i], &out), 0);
        seed = seed * 1103515245u + 12345u;
        static const enum txn_event evs[] = {TXN_EV_100,   TXN_EV_1XX,    TXN_EV_2XX,
                                             TXN_EV_FINAL, TXN_EV_CANCEL, TXN_EV_1XX};
        enum txn_event ev = evs[(seed >> 16) % 6];
        if (ev != TXN_EV_CANCEL || i % 2 == 0) /* half the C timers get a 183 later: reset */
            cr_assert_eq(txn_step(big, ids[i], ev, t0 + 1, &out), 0);
        if (i % 7 == 0 && txn_get(big, ids[i]) && txn_get(big, ids[i])->timer == TXN_TIMER_C)
            cr_assert_eq(txn_step(big, ids[i], TXN_EV_1XX, t0 + 2 + i % 11, &out), 0);
    }
    /* walk time in steps; at each, what comes out must be exactly the reference's due set */
    for (int64_t now = 0; now <= 30000; now += 37) {
        size_t nref = 0, ngot = 0, n;
        int64_t next, ref_next;
        for (int i = 0; i < N; i++) {
            const struct txn *t = txn_get(big, ids[i]);
            if (t != NULL && t->timer != TXN_TIMER_NONE && t->deadline_ms <= now)
                ref[nref++] = (struct ref){t->deadline_ms, ids[i]};
        }
        do { /* small batches, stepping none until all are read: ids come back unless stepped */
            n = txn_expired(big, now, got + ngot, BATCH, &next);
            int64_t last = INT64_MIN;
            for (size_t k = 0; k < n; k++) {
                const struct txn *t = txn_get(big, got[ngot + k]);
                cr_assert(t && t->deadline_ms <= now && t->deadline_ms >= last, "in order");
                last = t->deadline_ms;
                cr_assert_eq(txn_step(big, got[ngot + k], TXN_EV_TIMEOUT, now, &out), 0);
            }
            ngot += n;
        } while (n == BATCH);
        cr_assert_eq(ngot, nref, "at %ld: %zu due, %zu returned", (long)now, nref, ngot);
        qsort(ref, nref, sizeof(*ref), ref_cmp);
        uint64_t *rid = malloc((nref + 1) * sizeof(*rid));
        for (size_t k = 0; k < nref; k++)
            rid[k] = ref[k].id;
        qsort(rid, nref, sizeof(*rid), id_cmp);
        qsort(got, ngot, sizeof(*got), id_cmp);
        cr_assert(memcmp(rid, got, nref * sizeof(*rid)) == 0, "at %ld: another set", (long)now);
        free(rid);
        ref_next = INT64_MAX; /* after the steps: Timer C's expiry armed CANCEL timers */
        for (int i = 0; i < N; i++) {
            const struct txn *t = txn_get(big, ids[i]);
            if (t != NULL && t->timer != TXN_TIMER_NONE && t->deadline_ms < ref_next)
                ref_next = t->deadline_ms;
        }
        cr_assert_eq(txn_expired(big, now, got, 1, &next), 0u);
        cr_assert_eq(next, ref_next, "at %ld: next", (long)now);
    }
    cr_assert_eq(txn_count(big), 0);
    free(ids), free(got), free(ref);
    txn_table_free(big);
}

Test(txn, abandon_frees_without_action_and_the_id_goes_stale)
{
    uint64_t a = open_txn(SIP_METHOD_INVITE, "z9hG4bK-a", 0), ids[4];
    uint64_t b = open_txn(SIP_METHOD_INVITE, "z9hG4bK-b", 10);
    struct txn_out out;
    int64_t next;
    step_ok(a, TXN_EV_1XX, 0);
    cr_assert_eq(txn_abandon(tb, a), 0);
    cr_assert_null(txn_get(tb, a));
    cr_assert_eq(txn_count(tb), 1);
    cr_assert_eq(txn_abandon(tb, a), -ESTALE);
    cr_assert_eq(txn_step(tb, a, TXN_EV_2XX, 1, &out), -ESTALE);
    cr_assert_eq(txn_abandon(tb, (uint64_t)1 << 40 | 99), -ESTALE, "slot out of range");
    uint64_t got;
    cr_assert_eq(txn_match_request(tb, 42, SIP_METHOD_CANCEL, SLICE_LIT("z9hG4bK-a"),
                                   SLICE_LIT("10.0.0.9:5061"), &got),
                 TXN_REQ_CANCEL_NO_MATCH, "out of the index");
    cr_assert_eq(txn_expired(tb, 100000, ids, 4, &next), 1u, "out of the timer queue");
    cr_assert_eq(ids[0], b);
    cr_assert_eq(txn_abandon(tb, b), 0);
    cr_assert_eq(txn_expired(tb, 100000, ids, 4, &next), 0u);
    cr_assert_eq(next, INT64_MAX);
}

Test(txn, slots_used_is_a_high_water_mark_above_every_live_slot)
{
    struct txn_out out;
    cr_assert_eq(txn_slots_used(tb), 0u, "a new table has used no slot");
    uint64_t a = open_txn(SIP_METHOD_OPTIONS, "z9hG4bK-hw-a", 0);
    uint64_t b = open_txn(SIP_METHOD_OPTIONS, "z9hG4bK-hw-b", 0);
    uint64_t c = open_txn(SIP_METHOD_OPTIONS, "z9hG4bK-hw-c", 0);
    cr_assert_eq(txn_slots_used(tb), 3u);
    cr_assert((uint32_t)a < 3 && (uint32_t)b < 3 && (uint32_t)c < 3, "live slots are below it");
    cr_assert_eq(txn_step(tb, b, TXN_EV_2XX, 1, &out), 0);
    cr_assert(out.actions & TXN_A_FREE);
    cr_assert_eq(txn_slots_used(tb), 3u, "a freed slot does not lower it");
    uint64_t d = open_txn(SIP_METHOD_OPTIONS, "z9hG4bK-hw-d", 0);
    cr_assert_eq((uint32_t)d, (uint32_t)b, "the freed slot is reused");
    cr_assert_eq(txn_slots_used(tb), 3u, "reusing a slot does not raise it");
    char br[32];
    for (int i = 0; i < 5; i++) {
        snprintf(br, sizeof(br), "z9hG4bK-hw-%d", i);
        uint64_t id = open_txn(SIP_METHOD_OPTIONS, br, 0);
        cr_assert_lt((uint32_t)id, txn_slots_used(tb));
    }
    cr_assert_eq(txn_slots_used(tb), 8u, "a full table has used every slot");
}
