// SPDX-License-Identifier: MIT
// Tests for core/route.c: which Route entries are the edge's, loose and strict routing, the
// edits that remove them and insert the double Record-Route, all on requests scanned by sip_scan.
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/route.h"
#include "core/sip_build.h"

#define MAX_HDRS 48

struct scanned {
    char buf[4096];
    struct sip_header hdrs[MAX_HDRS];
    struct sip_msg msg;
};

static struct flow_keys keys;
static const struct route_addr addrs[] = {
    {{"edge.example.com", 16}, 5061},
    {{"10.0.0.1", 8}, 5062},
    {{"[2001:db8::1]", 13}, 5061},
};
static const struct route_self self = {addrs, 3, &keys};
static const struct flow the_flow = {2, 345, 6};
static char tok[FLOW_TOKEN_LEN + 1];

static void setup(void)
{
    memset(&keys, 0, sizeof(keys));
    memset(keys.cur.secret, 7, sizeof(keys.cur.secret));
    cr_assert_eq(flow_encode(&keys.cur, &the_flow, tok, FLOW_TOKEN_LEN), (ssize_t)FLOW_TOKEN_LEN);
    tok[FLOW_TOKEN_LEN] = '\0';
}

TestSuite(route, .init = setup);

/* `tmpl` with every "TOK" replaced by the flow token and every "BAD" by a forged one. */
static void expand(const char *tmpl, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = tmpl; *p;) {
        const char *ins = NULL;
        if (strncmp(p, "TOK", 3) == 0)
            ins = tok;
        else if (strncmp(p, "BAD", 3) == 0)
            ins = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        if (ins != NULL) {
            cr_assert_lt(o + strlen(ins), cap);
            memcpy(out + o, ins, strlen(ins));
            o += strlen(ins);
            p += 3;
        } else {
            cr_assert_lt(o + 1, cap);
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

/* Scan request line `rl` + `hdrs` (CRLF-separated lines) + the fixed headers. */
static void scan(struct scanned *s, const char *rl, const char *hdrs)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp),
             "%s\r\nVia: SIP/2.0/TLS 10.9.9.9:50000;branch=z9hG4bK-c1\r\n%sMax-Forwards: 70\r\n"
             "From: <sip:8001@ucm.example.com>;tag=f1\r\nTo: <sip:8002@ucm.example.com>\r\n"
             "Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
             rl, hdrs);
    expand(tmp, s->buf, sizeof(s->buf));
    size_t n = strlen(s->buf);
    sip_msg_init(&s->msg, s->hdrs, MAX_HDRS);
    cr_assert_eq(sip_scan(s->buf, n, 0, &s->msg), (ssize_t)n, "scan: %s", s->buf);
}

struct decide_row {
    const char *why, *rl, *hdrs;
    enum route_verdict verdict;
    size_t n_ours;
    bool strict, flow, node, is_route;
    const char *next_hop; /* expanded */
};

static const char inv[] = "INVITE sip:8002@ucm.example.com SIP/2.0";
static const struct decide_row decide_rows[] = {
    {"no Route: the Request-URI", inv, "", ROUTE_FORWARD, 0, 0, 0, 0, 0,
     "sip:8002@ucm.example.com"},
    {"a Route of another host", inv, "Route: <sip:ucm1.example.com;lr>\r\n", ROUTE_FORWARD, 0, 0, 0,
     0, 1, "sip:ucm1.example.com;lr"},
    {"ours then theirs, one comma list", inv,
     "Route: <sip:edge.example.com:5061;transport=tls;lr>, <sip:ucm1.example.com;lr>\r\n",
     ROUTE_FORWARD, 1, 0, 0, 0, 1, "sip:ucm1.example.com;lr"},
    {"double RR over two lines, then theirs", inv,
     "Route: <sip:TOK@edge.example.com:5061;transport=tls;lr>\r\n"
     "Route: <sip:10.0.0.1:5062;transport=tls;lr;se-node=3>,<sip:ucm1;lr>\r\n",
     ROUTE_FORWARD, 2, 0, 1, 1, 1, "sip:ucm1;lr"},
    {"only our double RR: the Request-URI is next", inv,
     "Route: <sip:10.0.0.1:5062;transport=tls;lr;se-node=0>, "
     "<sip:TOK@edge.example.com:5061;transport=tls;lr>\r\n",
     ROUTE_FORWARD, 2, 0, 1, 1, 0, "sip:8002@ucm.example.com"},
    {"IPv6 written another way is ours", inv,
     "Route: <sip:[2001:DB8:0::1]:5061;lr>, <sip:[2001:db8::2]:5061;lr>\r\n", ROUTE_FORWARD, 1, 0,
     0, 0, 1, "sip:[2001:db8::2]:5061;lr"},
    {"our host on another port is not ours", inv, "Route: <sip:edge.example.com:5070;lr>\r\n",
     ROUTE_FORWARD, 0, 0, 0, 0, 1, "sip:edge.example.com:5070;lr"},
    {"sips without a port defaults to 5061: ours", inv,
     "Route: <sips:EDGE.example.com;lr>\r\nRoute: <sip:u;lr>\r\n", ROUTE_FORWARD, 1, 0, 0, 0, 1,
     "sip:u;lr"},
    {"sip without a port defaults to 5060: not ours", inv, "Route: <sip:edge.example.com;lr>\r\n",
     ROUTE_FORWARD, 0, 0, 0, 0, 1, "sip:edge.example.com;lr"},
    {"our token under another name, with lr: ours", inv,
     "Route: <sip:TOK@edge-lb.example.net;lr>, <sip:ucm1;lr>\r\n", ROUTE_FORWARD, 1, 0, 1, 0, 1,
     "sip:ucm1;lr"},
    {"our token under another name, no lr: not ours", inv,
     "Route: <sip:TOK@edge-lb.example.net>\r\n", ROUTE_FORWARD, 0, 0, 0, 0, 1,
     "sip:TOK@edge-lb.example.net"},
    {"a forged token on our host", inv, "Route: <sip:BAD@edge.example.com:5061;lr>\r\n",
     ROUTE_FORGED, 0, 0, 0, 0, 0, ""},
    {"a non-token user on our host", inv, "Route: <sip:alice@10.0.0.1:5062;lr>\r\n", ROUTE_FORGED,
     0, 0, 0, 0, 0, ""},
    {"a forged token elsewhere is someone else's", inv, "Route: <sip:BAD@ucm1.example.com;lr>\r\n",
     ROUTE_FORWARD, 0, 0, 0, 0, 1, "sip:BAD@ucm1.example.com;lr"},
    {"strict router: R-URI is our RR, last Route is the target",
     "INVITE sip:TOK@edge.example.com:5061;transport=tls;lr SIP/2.0",
     "Route: <sip:ucm1.example.com>, <sip:8002@10.1.1.1:5060>\r\n", ROUTE_FORWARD, 0, 1, 1, 0, 1,
     "sip:ucm1.example.com"},
    {"strict router, one Route: it becomes the R-URI and next hop",
     "BYE sip:10.0.0.1:5062;se-node=4 SIP/2.0", "Route: <sip:8002@10.1.1.1:5060>\r\n",
     ROUTE_FORWARD, 0, 1, 0, 1, 0, "sip:8002@10.1.1.1:5060"},
    {"addressed to the edge itself", "OPTIONS sip:edge.example.com:5061 SIP/2.0", "", ROUTE_LOCAL,
     0, 0, 0, 0, 0, "sip:edge.example.com:5061"},
    {"an AOR at our host is not ours", "INVITE sip:8002@edge.example.com:5061 SIP/2.0", "",
     ROUTE_FORWARD, 0, 0, 0, 0, 0, "sip:8002@edge.example.com:5061"},
    {"a quoted display name with a comma and '>' is one value", inv,
     "Route: \"edge, \\\"the >\\\"\" <sip:edge.example.com:5061;LR>;x=\"a,b\", <sip:u2;lr>\r\n",
     ROUTE_FORWARD, 1, 0, 0, 0, 1, "sip:u2;lr"},
    {"an addr-spec without <> is still looked at", inv,
     "Route: sip:10.0.0.1:5062;lr, <sip:u3;lr>\r\n", ROUTE_FORWARD, 1, 0, 0, 0, 1, "sip:u3;lr"},
    {"empty Route lines and empty elements are skipped", inv,
     "Route: ,, <sip:edge.example.com:5061;lr> ,\r\nRoute:\r\nRoute: <sip:u4>\r\n", ROUTE_FORWARD,
     1, 0, 0, 0, 1, "sip:u4"},
    {"a Route that does not parse", inv, "Route: <sip:ucm1;lr\r\n", ROUTE_BAD, 0, 0, 0, 0, 0, ""},
    {"Route: *", inv, "Route: *\r\n", ROUTE_BAD, 0, 0, 0, 0, 0, ""},
    {"a bad Route after ours", inv, "Route: <sip:edge.example.com:5061;lr>, <sip:[::1;lr>\r\n",
     ROUTE_BAD, 0, 0, 0, 0, 0, ""},
};

Test(route, decides_every_row_of_the_table)
{
    for (size_t i = 0; i < sizeof(decide_rows) / sizeof(decide_rows[0]); i++) {
        const struct decide_row *r = &decide_rows[i];
        struct scanned s;
        struct route_decision d;
        char want[256];
        scan(&s, r->rl, r->hdrs);
        enum route_verdict v = route_decide(&self, &s.msg, &d);
        cr_assert_eq(v, r->verdict, "%s: %s", r->why, route_verdict_name(v));
        cr_assert_eq(d.verdict, v);
        if (v == ROUTE_BAD) {
            cr_assert_lt(d.perr, 0, "%s", r->why);
            continue;
        }
        if (v == ROUTE_FORGED)
            continue;
        cr_assert_eq(d.n_ours, r->n_ours, "%s: n_ours %zu", r->why, d.n_ours);
        cr_assert_eq(d.strict, r->strict, "%s", r->why);
        cr_assert_eq(d.has_flow, r->flow, "%s", r->why);
        cr_assert_eq(d.has_node, r->node, "%s", r->why);
        cr_assert_eq(d.next_hop_is_route, r->is_route, "%s", r->why);
        expand(r->next_hop, want, sizeof(want));
        cr_assert(slice_eq(d.next_hop, slice_make(want, strlen(want))), "%s: next hop %.*s", r->why,
                  (int)d.next_hop.len, d.next_hop.base);
        if (r->flow)
            cr_assert(d.flow.worker == 2 && d.flow.slot == 345 && d.flow.gen == 6, "%s", r->why);
    }
}

Test(route, node_and_strict_target_are_reported)
{
    struct scanned s;
    struct route_decision d;
    scan(&s, inv,
         "Route: <sip:TOK@edge.example.com:5061;transport=tls;lr>\r\n"
         "Route: <sip:10.0.0.1:5062;transport=tls;lr;se-node=3>,<sip:ucm1;lr>\r\n");
    cr_assert_eq(route_decide(&self, &s.msg, &d), ROUTE_FORWARD);
    cr_assert_eq(d.node, 3u);
    cr_assert_eq(d.n_values, 3u);
    cr_assert_eq(d.value_hdr[0] + 1, d.value_hdr[1]);
    cr_assert_eq(d.value_hdr[1], d.value_hdr[2]);

    scan(&s, "BYE sip:10.0.0.1:5062;se-node=4 SIP/2.0", "Route: <sip:8002@10.1.1.1:5060>\r\n");
    cr_assert_eq(route_decide(&self, &s.msg, &d), ROUTE_FORWARD);
    cr_assert_eq(d.node, 4u);
    cr_assert(slice_eq(d.new_ruri, SLICE_LIT("sip:8002@10.1.1.1:5060")));
}

Test(route, more_than_the_limit_of_values_is_bad)
{
    struct scanned s;
    struct route_decision d;
    char hdrs[2048] = "";
    for (int i = 0; i <= ROUTE_MAX_VALUES; i++)
        strcat(hdrs, "Route: <sip:ucm1;lr>\r\n");
    scan(&s, inv, hdrs);
    cr_assert_eq(route_decide(&self, &s.msg, &d), ROUTE_BAD);
    cr_assert_eq(d.perr, -SIP_PE_OUT_OF_RANGE);
}

/* ---- edits, byte for byte ----------------------------------------------------------------- */

/* rewrite (our Via, Max-Forwards) + route edits (+ `rr`) joined into `out`. */
static void forward_text(struct scanned *s, struct slice rr, char *out, size_t cap)
{
    struct slice iov[64], iov2[96];
    struct route_edit ed[2 * ROUTE_MAX_VALUES + 2];
    char scratch[512];
    struct route_decision d;
    struct sip_rewrite rw = {.via = SLICE_LIT("SIP/2.0/TLS e;branch=z9hG4bK-e1"),
                             .max_forwards = true};
    cr_assert_eq(route_decide(&self, &s->msg, &d), ROUTE_FORWARD);
    ssize_t n = sip_rewrite_request(&s->msg, &rw, iov, 64, scratch, sizeof(scratch));
    cr_assert_gt(n, 0);
    ssize_t ne = route_edits(&s->msg, &d, rr, ed, sizeof(ed) / sizeof(ed[0]));
    cr_assert_geq(ne, 0);
    ssize_t n2 = route_apply(iov, (size_t)n, ed, (size_t)ne, iov2, 96);
    cr_assert_gt(n2, 0, "route_apply: %zd", n2);
    size_t len = 0;
    for (ssize_t i = 0; i < n2; i++) {
        cr_assert_lt(len + iov2[i].len, cap);
        memcpy(out + len, iov2[i].base, iov2[i].len);
        len += iov2[i].len;
    }
    out[len] = '\0';
}

#define TAIL                                                                                       \
    "Max-Forwards: 69\r\nFrom: <sip:8001@ucm.example.com>;tag=f1\r\n"                              \
    "To: <sip:8002@ucm.example.com>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n"
#define VIAS                                                                                       \
    "Via: SIP/2.0/TLS e;branch=z9hG4bK-e1\r\nVia: SIP/2.0/TLS "                                    \
    "10.9.9.9:50000;branch=z9hG4bK-c1\r\n"

struct edit_row {
    const char *why, *rl, *hdrs, *want; /* want is expanded */
};

static const struct edit_row edit_rows[] = {
    {"a whole line and the head of the next go", inv,
     "Route: <sip:TOK@edge.example.com:5061;transport=tls;lr>\r\n"
     "Route: <sip:10.0.0.1:5062;lr;se-node=3>, <sip:ucm1;lr>\r\n",
     "INVITE sip:8002@ucm.example.com SIP/2.0\r\n" VIAS "Route: <sip:ucm1;lr>\r\n" TAIL "\r\n"},
    {"the head of a comma list goes", inv,
     "Route: <sip:edge.example.com:5061;lr>,  <sip:a;lr> ,<sip:b;lr>\r\n",
     "INVITE sip:8002@ucm.example.com SIP/2.0\r\n" VIAS "Route: <sip:a;lr> ,<sip:b;lr>\r\n" TAIL
     "\r\n"},
    {"nothing of ours: unchanged but for Via and Max-Forwards", inv,
     "Route: <sip:a;lr>, <sip:b;lr>\r\n",
     "INVITE sip:8002@ucm.example.com SIP/2.0\r\n" VIAS "Route: <sip:a;lr>, <sip:b;lr>\r\n" TAIL
     "\r\n"},
    {"ours behind a quoted comma: the whole value goes, the next stays", inv,
     "Route: \"a, b\" <sip:edge.example.com:5061;lr>, <sip:u2;lr>\r\n",
     "INVITE sip:8002@ucm.example.com SIP/2.0\r\n" VIAS "Route: <sip:u2;lr>\r\n" TAIL "\r\n"},
    {"strict: the last value becomes the Request-URI",
     "INVITE sip:TOK@edge.example.com:5061;transport=tls;lr SIP/2.0",
     "Route: <sip:ucm1.example.com>, <sip:8002@10.1.1.1:5060>\r\n",
     "INVITE sip:8002@10.1.1.1:5060 SIP/2.0\r\n" VIAS "Route: <sip:ucm1.example.com>\r\n" TAIL
     "\r\n"},
    {"strict with ours on top: both ends of the set go",
     "INVITE sip:TOK@edge.example.com:5061;transport=tls;lr SIP/2.0",
     "Route: <sip:10.0.0.1:5062;lr>\r\nRoute: <sip:x;lr>, <sip:y>\r\nRoute: <sip:8002@h>\r\n",
     "INVITE sip:8002@h SIP/2.0\r\n" VIAS "Route: <sip:x;lr>, <sip:y>\r\n" TAIL "\r\n"},
};

Test(route, edits_remove_our_values_byte_for_byte)
{
    for (size_t i = 0; i < sizeof(edit_rows) / sizeof(edit_rows[0]); i++) {
        struct scanned s;
        char got[4096], want[4096];
        scan(&s, edit_rows[i].rl, edit_rows[i].hdrs);
        forward_text(&s, SLICE_NULL, got, sizeof(got));
        expand(edit_rows[i].want, want, sizeof(want));
        cr_assert_str_eq(got, want, "%s", edit_rows[i].why);
    }
}

Test(route, a_route_line_right_after_the_start_line_is_cut_across_the_via_insertion)
{
    /* sip_rewrite_request() splits the gather list where our Via goes: after the start line,
     * which is where a first-header Route line starts. */
    struct scanned s;
    char got[4096], tmp[1024];
    snprintf(tmp, sizeof(tmp), "%s",
             "INVITE sip:8002@ucm.example.com SIP/2.0\r\n"
             "Route: <sip:TOK@edge.example.com:5061;transport=tls;lr>\r\n"
             "Via: SIP/2.0/TLS 10.9.9.9:50000;branch=z9hG4bK-c1\r\nMax-Forwards: 70\r\n"
             "From: <sip:8001@ucm.example.com>;tag=f1\r\nTo: <sip:8002@ucm.example.com>\r\n"
             "Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n");
    expand(tmp, s.buf, sizeof(s.buf));
    sip_msg_init(&s.msg, s.hdrs, MAX_HDRS);
    cr_assert_eq(sip_scan(s.buf, strlen(s.buf), 0, &s.msg), (ssize_t)strlen(s.buf));
    forward_text(&s, SLICE_NULL, got, sizeof(got));
    cr_assert_str_eq(got, "INVITE sip:8002@ucm.example.com SIP/2.0\r\n" VIAS TAIL "\r\n");
}

Test(route, record_route_goes_above_the_first_record_route_or_at_the_end)
{
    struct scanned s;
    char got[4096];
    struct slice rr = SLICE_LIT("Record-Route: <sip:X>\r\n");

    scan(&s, inv, "Record-Route: <sip:p2;lr>\r\nRoute: <sip:edge.example.com:5061;lr>\r\n");
    forward_text(&s, rr, got, sizeof(got));
    cr_assert_str_eq(got, "INVITE sip:8002@ucm.example.com SIP/2.0\r\n" VIAS
                          "Record-Route: <sip:X>\r\nRecord-Route: <sip:p2;lr>\r\n" TAIL "\r\n");

    scan(&s, inv, "Route: <sip:edge.example.com:5061;lr>\r\n");
    forward_text(&s, rr, got, sizeof(got));
    cr_assert_str_eq(got, "INVITE sip:8002@ucm.example.com SIP/2.0\r\n" VIAS TAIL
                          "Record-Route: <sip:X>\r\n\r\n");
}

Test(route, apply_rejects_edits_out_of_order_or_outside_and_reports_space)
{
    static const char buf[] = "0123456789";
    struct slice in[1] = {slice_make(buf, 10)}, out[8];
    struct route_edit e[2] = {{slice_make(buf + 5, 1), SLICE_NULL},
                              {slice_make(buf + 2, 1), SLICE_NULL}};
    cr_assert_eq(route_apply(in, 1, e, 2, out, 8), -EINVAL, "unsorted");
    struct route_edit across = {slice_make(buf + 8, 5), SLICE_NULL};
    cr_assert_eq(route_apply(in, 1, &across, 1, out, 8), -EINVAL, "past the slice");
    static const char other[] = "x";
    struct route_edit outside = {slice_make(other, 1), SLICE_NULL};
    cr_assert_eq(route_apply(in, 1, &outside, 1, out, 8), -EINVAL, "not in the list");
    struct route_edit ok = {slice_make(buf + 2, 1), SLICE_LIT("AB")};
    cr_assert_eq(route_apply(in, 1, &ok, 1, out, 2), -ENOSPC);
    cr_assert_eq(route_apply(in, 1, &ok, 1, out, 3), 3);
    cr_assert(slice_eq(out[1], SLICE_LIT("AB")) && slice_eq(out[2], SLICE_LIT("3456789")));
}

/* ---- builders ---------------------------------------------------------------------------- */

Test(route, builds_double_record_route_in_both_orders_byte_for_byte)
{
    struct route_rr rr = {{{"edge.example.com", 16}, 5061},
                          {{"10.0.0.1", 8}, 5062},
                          &keys.cur,
                          the_flow,
                          3,
                          true,
                          NULL};
    char got[512], want[512];
    ssize_t n = route_build_rr(&rr, got, sizeof(got));
    snprintf(want, sizeof(want),
             "Record-Route: <sip:10.0.0.1:5062;transport=tls;lr;se-node=3>, "
             "<sip:%s@edge.example.com:5061;transport=tls;lr>\r\n",
             tok);
    cr_assert_eq(n, (ssize_t)strlen(want));
    cr_assert(memcmp(got, want, (size_t)n) == 0, "%.*s", (int)n, got);

    rr.toward_ucm = false;
    rr.node = 4294967295u;
    rr.ucm_side.port = 0;
    n = route_build_rr(&rr, got, sizeof(got));
    snprintf(want, sizeof(want),
             "Record-Route: <sip:%s@edge.example.com:5061;transport=tls;lr>, "
             "<sip:10.0.0.1;transport=tls;lr;se-node=4294967295>\r\n",
             tok);
    cr_assert_eq(n, (ssize_t)strlen(want));
    cr_assert(memcmp(got, want, (size_t)n) == 0, "%.*s", (int)n, got);
    cr_assert_eq(route_build_rr(&rr, got, (size_t)n - 1), -ENOSPC);
    rr.ucm_side.host = SLICE_LIT("a\r\nX: y");
    cr_assert_eq(route_build_rr(&rr, got, sizeof(got)), -EINVAL);
}

Test(route, built_entries_route_back_to_the_flow_and_node)
{
    /* What the edge writes must be what it recognises: the client's route set is the RR list
     * reversed, so its in-dialog request carries the client-side entry first. */
    struct route_rr rr = {{{"edge.example.com", 16}, 5061},
                          {{"10.0.0.1", 8}, 5062},
                          &keys.cur,
                          the_flow,
                          9,
                          true,
                          NULL};
    char line[512], hdrs[1024];
    ssize_t n = route_build_rr(&rr, line, sizeof(line));
    cr_assert_gt(n, 0);
    const char *comma = strstr(line, ">, <");
    cr_assert_not_null(comma);
    snprintf(hdrs, sizeof(hdrs), "Route: %.*s, %.*s\r\nRoute: <sip:ucm-contact;lr>\r\n",
             (int)(line + n - 2 - (comma + 3)), comma + 3, (int)(comma + 1 - (line + 14)),
             line + 14);
    struct scanned s;
    struct route_decision d;
    scan(&s, "BYE sip:8002@10.1.1.1 SIP/2.0", hdrs);
    cr_assert_eq(route_decide(&self, &s.msg, &d), ROUTE_FORWARD);
    cr_assert_eq(d.n_ours, 2u);
    cr_assert(d.has_flow && d.flow.slot == 345 && d.has_node && d.node == 9);
    cr_assert(slice_eq(d.next_hop, SLICE_LIT("sip:ucm-contact;lr")));
}

Test(route, builds_the_path_value)
{
    struct route_addr a = {{"[2001:db8::1]", 13}, 5061};
    char got[256], want[256];
    ssize_t n = route_build_path(&a, &keys.cur, &the_flow, got, sizeof(got));
    snprintf(want, sizeof(want), "<sip:%s@[2001:db8::1]:5061;transport=tls;lr;ob>", tok);
    cr_assert_eq(n, (ssize_t)strlen(want));
    cr_assert(memcmp(got, want, (size_t)n) == 0);
    cr_assert_eq(route_build_path(&a, &keys.cur, &the_flow, got, (size_t)n - 1), -ENOSPC);
    struct sip_uri u;
    cr_assert_eq(sip_parse_uri(slice_make(got + 1, (size_t)n - 2), &u), 0, "a valid URI");
    cr_assert(u.lr);
}

Test(route, a_token_minted_once_gives_the_same_path_and_record_route)
{
    struct flow_keys k2;
    cr_assert_eq(flow_keys_init(&k2), 0);
    struct flow f = {.worker = 1, .slot = 77, .gen = 0xabcdef01u};
    struct route_addr a = {{"edge.example.com", 16}, 5061};
    char t2[FLOW_TOKEN_LEN], p1[256], p2[256];
    cr_assert_eq(flow_encode(&k2.cur, &f, t2, sizeof(t2)), FLOW_TOKEN_LEN);
    ssize_t n1 = route_build_path(&a, &k2.cur, &f, p1, sizeof(p1));
    ssize_t n2 = route_build_path_token(&a, t2, p2, sizeof(p2));
    cr_assert_gt(n1, 0);
    cr_assert_eq(n1, n2);
    cr_assert(memcmp(p1, p2, (size_t)n1) == 0);
    struct route_rr rr = {a, {{"10.0.0.1", 8}, 5062}, &k2.cur, f, 2, true, NULL};
    n1 = route_build_rr(&rr, p1, sizeof(p1));
    rr.token = t2;
    n2 = route_build_rr(&rr, p2, sizeof(p2));
    cr_assert_gt(n1, 0);
    cr_assert_eq(n1, n2);
    cr_assert(memcmp(p1, p2, (size_t)n1) == 0);
    cr_assert_eq(route_build_path_token(&a, t2, p2, 20), -ENOSPC);
}
