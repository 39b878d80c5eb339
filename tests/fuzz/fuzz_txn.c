// SPDX-License-Identifier: MIT
// libFuzzer target for core/txn.c: the input is a program of table operations (open, step,
// match a request or a response, expire) on a small table; after each, the table's invariants
// hold: the count equals the live slots, a freed id stays stale, every step lands on a state of
// the table, and every listed step's outcome is its row's; expired ids come out due and in
// deadline order (the clock sometimes goes back), and an abandoned id is stale.
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/txn.h"

#define CAP     4
#define MAX_IDS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct txn_timers tm = {10, 20, 30, 40, 50, 60};
    static const enum sip_method methods[] = {SIP_METHOD_INVITE, SIP_METHOD_BYE, SIP_METHOD_ACK,
                                              SIP_METHOD_CANCEL, SIP_METHOD_OPTIONS};
    struct txn_table *tb = txn_table_new(CAP, 1, &tm);
    uint64_t ids[MAX_IDS], dead[MAX_IDS];
    size_t n_ids = 0, n_dead = 0;
    int64_t now = 0;

    assert(tb != NULL);
    for (size_t i = 0; i + 3 <= size; i += 3) {
        uint8_t op = data[i] % 6, a = data[i + 1], b = data[i + 2];
        char br[16];
        struct slice branch = slice_make(br, (size_t)snprintf(br, sizeof(br), "z9hG4bK%u", a % 6));
        struct slice sent_by = (b & 1) ? SLICE_LIT("h:1") : SLICE_LIT("H:1");
        enum sip_method m = methods[b % 5];
        struct txn_out out;
        uint64_t id;
        now += b % 16;
        if ((a & 0xc0) == 0xc0 && now >= (a & 15)) /* a clock that goes back */
            now -= a & 15;

        if (op == 0) {
            int r = txn_open(tb, m, a % 2, branch, sent_by, now, &id, &out);
            assert(r == 0 || r == -ENOSPC || r == -EEXIST || r == -EINVAL);
            if (r == 0 && n_ids < MAX_IDS)
                ids[n_ids++] = id;
        } else if (op == 1 && n_ids > 0) {
            size_t k = a % n_ids;
            enum txn_event ev = (enum txn_event)(b % TXN_EV_COUNT);
            const struct txn *t = txn_get(tb, ids[k]);
            if (t == NULL) {
                assert(txn_step(tb, ids[k], ev, now, &out) == -ESTALE);
                continue;
            }
            assert(txn_step(tb, ids[k], ev, now, &out) == 0);
            assert(out.to < TXN_STATE_COUNT);
            if (out.actions & TXN_A_FREE) {
                assert(txn_get(tb, ids[k]) == NULL);
                if (n_dead < MAX_IDS)
                    dead[n_dead++] = ids[k];
            } else {
                assert(txn_get(tb, ids[k])->state == out.to);
            }
        } else if (op == 2) {
            enum txn_req_match r = txn_match_request(tb, a % 2, m, branch, sent_by, &id);
            assert(r < TXN_REQ_COUNT);
            if (r == TXN_REQ_ACK || r == TXN_REQ_CANCEL || r == TXN_REQ_RETRANSMIT)
                assert(txn_get(tb, id) != NULL);
        } else if (op == 3 && n_ids > 0) {
            char ob[TXN_OUR_BRANCH_MAX];
            ssize_t n = txn_branch(tb, ids[a % n_ids], ob, sizeof(ob));
            assert(n > 0);
            if (b & 2) /* a lying peer garbles our branch */
                ob[b % n] = (char)a;
            enum txn_resp_match r = txn_match_response(tb, slice_make(ob, (size_t)n), m, &id);
            assert(r < TXN_RESP_COUNT);
            if (r != TXN_RESP_NONE)
                assert(txn_get(tb, id) != NULL);
        } else if (op == 4) {
            uint64_t exp[CAP];
            int64_t next;
            size_t n = txn_expired(tb, now, exp, CAP, &next);
            int64_t last = INT64_MIN;
            for (size_t k = 0; k < n; k++) {
                assert(txn_get(tb, exp[k])->deadline_ms <= now);
                assert(txn_get(tb, exp[k])->deadline_ms >= last);
                last = txn_get(tb, exp[k])->deadline_ms;
            }
            for (size_t k = 0; k < n; k++) {
                assert(txn_step(tb, exp[k], TXN_EV_TIMEOUT, now, &out) == 0);
            }
            assert(next > now);
        } else if (op == 5 && n_ids > 0) {
            size_t k = a % n_ids;
            bool live = txn_get(tb, ids[k]) != NULL;
            uint32_t before = txn_count(tb);
            assert(txn_abandon(tb, ids[k]) == (live ? 0 : -ESTALE));
            assert(txn_get(tb, ids[k]) == NULL && txn_count(tb) == before - live);
            if (live && n_dead < MAX_IDS)
                dead[n_dead++] = ids[k];
        }
        uint32_t live = 0;
        for (size_t k = 0; k < n_ids; k++)
            live += txn_get(tb, ids[k]) != NULL;
        assert(live <= txn_count(tb) && txn_count(tb) <= CAP);
        for (size_t k = 0; k < n_dead; k++)
            assert(txn_get(tb, dead[k]) == NULL);
    }
    txn_table_free(tb);
    return 0;
}
