// SPDX-License-Identifier: MIT
// Tests for core/flow.c: flow tokens round-trip, resist forgery, honour key rotation and reject
// malformed input with the right verdict.
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "core/flow.h"

static struct flow_keys keys;

static void setup(void)
{
    cr_assert_eq(flow_keys_init(&keys), 0);
}

TestSuite(flow, .init = setup);

static struct slice encode(const struct flow_key *k, const struct flow *f, char *buf)
{
    ssize_t n = flow_encode(k, f, buf, FLOW_TOKEN_LEN);
    cr_assert_eq(n, (ssize_t)FLOW_TOKEN_LEN);
    return slice_make(buf, (size_t)n);
}

Test(flow, round_trips_every_field_including_other_workers_and_extremes)
{
    static const struct flow rows[] = {
        {0, 0, 0},
        {1, 2, 3},
        {7, 1048575, 4095}, /* another worker, the largest slot/gen net/ packs today */
        {65535, UINT32_MAX, UINT32_MAX},
        {300, 0x01020304, 0xa0b0c0d0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char buf[FLOW_TOKEN_LEN];
        struct flow got = {0};
        struct slice t = encode(&keys.cur, &rows[i], buf);
        cr_assert_eq(flow_decode(&keys, t, &got), FLOW_OK, "row %zu", i);
        cr_assert(got.worker == rows[i].worker && got.slot == rows[i].slot &&
                      got.gen == rows[i].gen,
                  "row %zu: got %u/%u/%u", i, got.worker, got.slot, got.gen);
    }
}

Test(flow, token_uses_only_sip_user_unreserved_characters)
{
    char buf[FLOW_TOKEN_LEN];
    struct flow f = {65535, UINT32_MAX, 0};
    struct slice t = encode(&keys.cur, &f, buf);
    for (size_t i = 0; i < t.len; i++) {
        char c = t.base[i];
        cr_assert((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_',
                  "char %zu is %c", i, c);
    }
}

Test(flow, any_changed_character_is_forged)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char buf[FLOW_TOKEN_LEN];
    struct flow f = {3, 77, 9}, got = {1, 1, 1};
    encode(&keys.cur, &f, buf);
    for (size_t i = 0; i < FLOW_TOKEN_LEN; i++) {
        char orig = buf[i];
        for (size_t a = 0; a < sizeof(alphabet) - 1; a++) {
            if (alphabet[a] == orig)
                continue;
            buf[i] = alphabet[a];
            cr_assert_eq(flow_decode(&keys, slice_make(buf, FLOW_TOKEN_LEN), &got), FLOW_FORGED,
                         "pos %zu char %c", i, alphabet[a]);
        }
        buf[i] = orig;
    }
    cr_assert(got.worker == 1 && got.slot == 1 && got.gen == 1, "out untouched on failure");
    cr_assert_eq(flow_decode(&keys, slice_make(buf, FLOW_TOKEN_LEN), &got), FLOW_OK);
}

Test(flow, token_of_another_key_is_forged)
{
    struct flow_keys other;
    char buf[FLOW_TOKEN_LEN];
    struct flow f = {1, 2, 3}, got;
    cr_assert_eq(flow_keys_init(&other), 0);
    struct slice t = encode(&other.cur, &f, buf);
    cr_assert_eq(flow_decode(&keys, t, &got), FLOW_FORGED);
    cr_assert_eq(flow_decode(&other, t, &got), FLOW_OK);
}

Test(flow, previous_key_is_accepted_after_one_rotation_not_two)
{
    char buf[FLOW_TOKEN_LEN], buf2[FLOW_TOKEN_LEN];
    struct flow f = {2, 40, 5}, got;
    struct slice old = encode(&keys.cur, &f, buf);
    cr_assert_eq(flow_keys_rotate(&keys), 0);
    cr_assert(keys.has_prev);
    cr_assert_eq(flow_decode(&keys, old, &got), FLOW_OK);
    cr_assert_eq(got.slot, 40u);
    struct slice fresh = encode(&keys.cur, &f, buf2);
    cr_assert(!slice_eq(old, fresh), "a new key mints a different token");
    cr_assert_eq(flow_decode(&keys, fresh, &got), FLOW_OK);
    cr_assert_eq(flow_keys_rotate(&keys), 0);
    cr_assert_eq(flow_decode(&keys, old, &got), FLOW_FORGED);
    cr_assert_eq(flow_decode(&keys, fresh, &got), FLOW_OK);
}

Test(flow, stale_generation_decodes_and_is_left_to_the_caller)
{
    /* The token is authentic; that the slot now holds generation 6 is for conn_get() to see. */
    char buf[FLOW_TOKEN_LEN];
    struct flow f = {0, 12, 5}, got;
    cr_assert_eq(flow_decode(&keys, encode(&keys.cur, &f, buf), &got), FLOW_OK);
    cr_assert_eq(got.gen, 5u);
    cr_assert_neq(got.gen, 6u);
}

Test(flow, malformed_lengths_and_characters)
{
    char good[FLOW_TOKEN_LEN];
    struct flow f = {1, 1, 1}, got;
    encode(&keys.cur, &f, good);
    char longer[FLOW_TOKEN_LEN + 1];
    memcpy(longer, good, FLOW_TOKEN_LEN);
    longer[FLOW_TOKEN_LEN] = 'A';

    struct {
        struct slice s;
        const char *why;
    } rows[] = {
        {SLICE_NULL, "empty"},
        {slice_make(good, FLOW_TOKEN_LEN - 1), "one short"},
        {slice_make(good, 1), "one char"},
        {slice_make(longer, sizeof(longer)), "one long"},
        {SLICE_LIT("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), "padding"},
        {SLICE_LIT("AAAAAAAAAAAAAAAA+AAAAAAAAAAAAAAA"), "base64 '+' not base64url"},
        {SLICE_LIT("AAAAAAAAAAAAAAAA%41AAAAAAAAAAAAA"), "escape"},
        {SLICE_LIT("AAAAAAAAAAAAAAAA AAAAAAAAAAAAAAA"), "space"},
        {slice_make("AAAAAAAAAAAAAAAA\0AAAAAAAAAAAAAAA", 32), "NUL"},
        {SLICE_LIT("AAAAAAAAAAAAAAAA\xc3\xa9"
                   "AAAAAAAAAAAAAA"),
         "UTF-8"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        cr_assert_eq(flow_decode(&keys, rows[i].s, &got), FLOW_MALFORMED, "%s", rows[i].why);
    cr_assert_eq(flow_decode(&keys, SLICE_LIT("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), &got),
                 FLOW_FORGED, "well-formed zeros are forged, not malformed");
}

Test(flow, encode_reports_a_short_buffer)
{
    char buf[FLOW_TOKEN_LEN];
    struct flow f = {0};
    cr_assert_eq(flow_encode(&keys.cur, &f, buf, FLOW_TOKEN_LEN - 1), -ENOSPC);
}

Test(flow, result_names)
{
    cr_assert_str_eq(flow_result_name(FLOW_OK), "ok");
    cr_assert_str_eq(flow_result_name(FLOW_FORGED), "forged");
    cr_assert_str_eq(flow_result_name(FLOW_MALFORMED), "malformed");
    cr_assert_str_eq(flow_result_name(FLOW_RESULT_COUNT), "unknown");
}
