// SPDX-License-Identifier: MIT
// libFuzzer target for core/route.c: the input (each "TOK" turned into a valid flow token) is
// the first header lines of a request whose Request-URI the first byte picks; route_decide()
// runs, and a forwarded request's edits are applied: every output slice lies inside the message
// or an edit's insert, every byte is read, and the length adds up. The INVITE's CANCEL
// (core/txn_hop.c) is built too and must scan back as one CANCEL.
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/route.h"
#include "core/sip_build.h"
#include "core/txn_hop.h"

static volatile unsigned sink;

static void touch(struct slice s)
{
    for (size_t i = 0; i < s.len; i++)
        sink += (unsigned char)s.base[i];
}

static bool inside(struct slice s, const char *b, size_t n)
{
    return s.len == 0 || (s.base >= b && s.len <= n && (size_t)(s.base - b) <= n - s.len);
}

static const char *const ruris[] = {
    "sip:8002@ucm.example.com",
    "sip:TOK@edge.example.com:5061;transport=tls;lr",
    "sip:10.0.0.1:5062;se-node=2",
    "sip:edge.example.com:5061",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct flow_keys keys;
    static char tok[FLOW_TOKEN_LEN];
    static const struct route_addr addrs[] = {
        {{"edge.example.com", 16}, 5061}, {{"10.0.0.1", 8}, 5062}, {{"[2001:db8::1]", 13}, 5061}};
    static const struct route_self self = {addrs, 3, &keys};
    static char buf[32768], hdrs[22000];
    struct sip_header h[64];
    struct sip_msg msg;
    struct route_decision d;
    size_t hl = 0;

    if (keys.cur.secret[0] == 0) {
        struct flow f = {1, 2, 3};
        memset(keys.cur.secret, 0x5a, sizeof(keys.cur.secret));
        assert(flow_encode(&keys.cur, &f, tok, sizeof(tok)) == (ssize_t)FLOW_TOKEN_LEN);
    }
    if (size < 1 || size > 2048)
        return 0;
    for (size_t i = 1; i < size;) { /* expand TOK (2047 * 32 / 3 bytes at most) */
        if (i + 3 <= size && memcmp(data + i, "TOK", 3) == 0) {
            memcpy(hdrs + hl, tok, FLOW_TOKEN_LEN);
            hl += FLOW_TOKEN_LEN;
            i += 3;
        } else {
            hdrs[hl++] = (char)data[i++];
        }
    }
    char ruri[128];
    const char *rt = ruris[data[0] % 4];
    const char *t = strstr(rt, "TOK");
    if (t != NULL)
        snprintf(ruri, sizeof(ruri), "%.*s%.*s%s", (int)(t - rt), rt, (int)FLOW_TOKEN_LEN, tok,
                 t + 3);
    else
        snprintf(ruri, sizeof(ruri), "%s", rt);
    int n = snprintf(buf, sizeof(buf),
                     "INVITE %s SIP/2.0\r\n%.*sVia: SIP/2.0/TLS h;branch=z9hG4bK-1\r\n"
                     "From: <sip:a>;tag=1\r\nTo: <sip:b>\r\nCSeq: 1 INVITE\r\n"
                     "Call-ID: c\r\nContent-Length: 0\r\n\r\n",
                     ruri, (int)hl, hdrs);
    assert(n > 0 && (size_t)n < sizeof(buf));
    sip_msg_init(&msg, h, 64);
    if (sip_scan(buf, (size_t)n, 0, &msg) != n)
        return 0;

    /* the CANCEL of this INVITE (core/txn_hop.c) is one well-framed message, whatever the
     * headers held */
    static char cancel[sizeof(buf) + 256];
    ssize_t cl = txn_hop_build(&msg, SIP_METHOD_CANCEL, NULL, cancel, sizeof(cancel));
    assert(cl > 0 || cl == -EINVAL);
    if (cl > 0) { /* the CANCEL adds Max-Forwards: one header more than the INVITE may have */
        struct sip_header ch[65];
        struct sip_msg cm;
        sip_msg_init(&cm, ch, 65);
        cm.limits.max_size = cm.limits.max_line = sizeof(cancel);
        assert(sip_scan(cancel, (size_t)cl, 0, &cm) == cl && cm.method == SIP_METHOD_CANCEL);
    }

    enum route_verdict v = route_decide(&self, &msg, &d);
    assert(v < ROUTE_VERDICT_COUNT && v == d.verdict);
    assert(d.n_values <= ROUTE_MAX_VALUES && d.n_ours <= d.n_values);
    for (size_t i = 0; i < d.n_values; i++) {
        assert(inside(d.values[i], buf, (size_t)n));
        touch(d.values[i]);
    }
    if (v != ROUTE_FORWARD)
        return 0;
    assert(inside(d.next_hop, buf, (size_t)n) && d.next_hop.len > 0);
    touch(d.next_hop);
    touch(d.new_ruri);

    static const struct slice rr = SLICE_LIT("Record-Route: <sip:x;lr>\r\n");
    struct route_edit ed[2 * ROUTE_MAX_VALUES + 2];
    struct slice in = slice_make(buf, (size_t)n), out[2 * (2 * ROUTE_MAX_VALUES + 2) + 1];
    ssize_t ne =
        route_edits(&msg, &d, (data[0] & 4) ? rr : SLICE_NULL, ed, 2 * ROUTE_MAX_VALUES + 2);
    assert(ne >= 0);
    size_t want = (size_t)n;
    for (ssize_t i = 0; i < ne; i++) {
        assert(inside(ed[i].cut, buf, (size_t)n));
        assert(i == 0 || ed[i - 1].cut.base + ed[i - 1].cut.len <= ed[i].cut.base);
        want = want - ed[i].cut.len + ed[i].insert.len;
    }
    ssize_t no = route_apply(&in, 1, ed, (size_t)ne, out, sizeof(out) / sizeof(out[0]));
    assert(no >= 0);
    size_t got = 0;
    for (ssize_t i = 0; i < no; i++) {
        bool in_ins = false;
        for (ssize_t k = 0; k < ne; k++)
            in_ins |= ed[k].insert.len && inside(out[i], ed[k].insert.base, ed[k].insert.len);
        assert(in_ins || inside(out[i], buf, (size_t)n));
        touch(out[i]);
        got += out[i].len;
    }
    assert(got == want);

    /* the same edits over the gather list of the real rewrite (our Via, Max-Forwards): the
     * cuts must land inside its slices wherever it split the message */
    struct sip_rewrite rw = {.via = SLICE_LIT("SIP/2.0/TLS e;branch=z9hG4bK-e"),
                             .max_forwards = true};
    struct slice rwi[64];
    char scratch[256];
    ssize_t nr = sip_rewrite_request(&msg, &rw, rwi, 64, scratch, sizeof(scratch));
    if (nr < 0)
        return 0;
    want = sip_iov_len(rwi, (size_t)nr);
    for (ssize_t i = 0; i < ne; i++)
        want = want - ed[i].cut.len + ed[i].insert.len;
    no = route_apply(rwi, (size_t)nr, ed, (size_t)ne, out, sizeof(out) / sizeof(out[0]));
    assert(no >= 0);
    assert(sip_iov_len(out, (size_t)no) == want);
    return 0;
}
