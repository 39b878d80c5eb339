// SPDX-License-Identifier: MIT
// sipedge-bench --calls: the call legs of a registered client, included by sipedge-bench.c (it
// needs that file's client, thread and stats types). As UAC a measured unit is one whole call:
// INVITE -> (100) 180 200 -> ACK + BYE -> 200; the set-up latency is INVITE sent -> 200 received.
// As UAS (UCM calls the client, sipedge-ucmsim --call-out) it answers INVITE 180 + 200 (SDP,
// Record-Route copied, RFC 3261 §12.1.1), BYE/NOTIFY/others 200, and counts what it got.
#ifndef SIPEDGE_BENCH_BENCH_CALLS_H
#define SIPEDGE_BENCH_BENCH_CALLS_H

#include "core/sip_build.h"
#include "core/sip_parse.h"

#define CALL_MAX_RR 8

static const char call_sdp[] = "v=0\r\n"
                               "o=bench 1 1 IN IP4 127.0.0.1\r\n"
                               "s=-\r\n"
                               "c=IN IP4 127.0.0.1\r\n"
                               "t=0 0\r\n"
                               "m=audio 30000 RTP/AVP 0\r\n"
                               "a=rtpmap:0 PCMU/8000\r\n";

/* Writes `len` bytes of t->msg to the client's TLS connection. 0 or -errno. */
static int call_write(struct client *cl, size_t len)
{
    struct iovec iov = {cl->t->msg, len};
    ssize_t r = tls_conn_writev(cl->tls, &iov, 1);
    if (r < 0)
        return (int)r;
    return client_flush(cl);
}

static void callee_name(const struct bench_opts *o, const struct client *cl, char *out, size_t cap)
{
    if (o->call_to) {
        snprintf(out, cap, "%s", o->call_to);
        return;
    }
    unsigned users = o->users ? o->users : 1;
    user_name(o, (cl->user + 1) % users, out, cap); /* pairs: each calls its neighbour's AoR */
}

/* Sends the INVITE of a new measured call. 0 or -errno. */
static int call_send_invite(struct client *cl)
{
    struct gthread *t = cl->t;
    const struct bench_opts *o = &t->b->o;
    char me[64], callee[64];
    user_name(o, cl->user, me, sizeof me);
    callee_name(o, cl, callee, sizeof callee);
    cl->cseq++;
    cl->call_seq++;
    cl->call_bye = false;
    int n = snprintf(t->msg, sizeof t->msg,
                     "INVITE sip:%s@example.test SIP/2.0\r\n"
                     "Via: SIP/2.0/TLS 127.0.0.1:%u;branch=z9hG4bK-sc%u.%u.%u;rport\r\n"
                     "Max-Forwards: 70\r\n"
                     "From: <sip:%s@example.test>;tag=sc%u.%u\r\n"
                     "To: <sip:%s@example.test>\r\n"
                     "Call-ID: sc-%d-%u.%u.%u@127.0.0.1\r\n"
                     "CSeq: %u INVITE\r\n"
                     "Contact: <sip:%s@127.0.0.1:%u;transport=tls>\r\n"
                     "Allow: INVITE, ACK, BYE, CANCEL, NOTIFY, UPDATE, INFO\r\n"
                     "Content-Type: application/sdp\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     callee, cl->lport, t->idx, cl->idx, cl->cseq, me, cl->idx, cl->call_seq,
                     callee, (int)getpid(), t->idx, cl->idx, cl->call_seq, cl->cseq, me, cl->lport,
                     sizeof call_sdp - 1, call_sdp);
    if (n < 0 || (size_t)n >= sizeof t->msg)
        return -ENOSPC;
    int rc = call_write(cl, (size_t)n);
    if (rc == 0)
        loop_timer_arm(t->loop, &cl->timer, loop_now_ms(t->loop) + o->timeout_ms,
                       client_timeout_cb);
    return rc;
}

/* Header `id`'s first value of `m` as a slice (empty when absent). */
static struct slice call_hdr(const struct sip_msg *m, enum sip_hdr id)
{
    const struct sip_header *h = sip_first(m, id);
    return h ? h->value : slice_make("", 0);
}

/* CSeq method of response `m` is `want`? */
static bool call_cseq_is(const struct sip_msg *m, const char *want)
{
    struct slice v = call_hdr(m, SIP_HDR_CSEQ);
    size_t n = strlen(want);
    return v.len >= n && memcmp(v.base + v.len - n, want, n) == 0;
}

/*
 * The ACK (and, after a 2xx, the BYE) of the call answered by `m`. After a 2xx: Request-URI =
 * the 2xx's Contact, Route = its Record-Route reversed (RFC 3261 §12.1.2), new branches; after a
 * failure: the ACK of the INVITE's transaction (same branch, RFC 3261 §17.1.1.3).
 */
static int call_send_ack_bye(struct client *cl, const struct sip_msg *m, bool ok)
{
    struct gthread *t = cl->t;
    const struct bench_opts *o = &t->b->o;
    char me[64], callee[64], ruri[512];
    user_name(o, cl->user, me, sizeof me);
    callee_name(o, cl, callee, sizeof callee);
    snprintf(ruri, sizeof ruri, "sip:%s@example.test", callee);
    struct slice rr[CALL_MAX_RR];
    size_t nrr = 0;
    if (ok) {
        struct sip_value_iter it;
        struct slice v;
        sip_values_begin(&it, m, SIP_HDR_CONTACT);
        struct sip_name_addr na;
        if (sip_values_next(&it, &v) && sip_parse_name_addr(v, &na) == 0 && !na.star &&
            na.uri_text.len < sizeof ruri)
            snprintf(ruri, sizeof ruri, "%.*s", (int)na.uri_text.len, na.uri_text.base);
        sip_values_begin(&it, m, SIP_HDR_RECORD_ROUTE);
        while (nrr < CALL_MAX_RR && sip_values_next(&it, &v))
            rr[nrr++] = v;
    }
    struct slice to = call_hdr(m, SIP_HDR_TO);
    size_t len = 0;
    for (int k = 0; k < (ok ? 2 : 1); k++) {
        bool bye = k == 1;
        int n = snprintf(t->msg + len, sizeof t->msg - len,
                         "%s %s SIP/2.0\r\n"
                         "Via: SIP/2.0/TLS 127.0.0.1:%u;branch=z9hG4bK-s%s%u.%u.%u;rport\r\n"
                         "Max-Forwards: 70\r\n"
                         "From: <sip:%s@example.test>;tag=sc%u.%u\r\n"
                         "To: %.*s\r\n"
                         "Call-ID: sc-%d-%u.%u.%u@127.0.0.1\r\n"
                         "CSeq: %u %s\r\n",
                         bye ? "BYE" : "ACK", ruri, cl->lport,
                         !ok   ? "c"
                         : bye ? "b"
                               : "a",
                         t->idx, cl->idx, cl->cseq + (bye ? 1u : 0u), me, cl->idx, cl->call_seq,
                         (int)to.len, to.base, (int)getpid(), t->idx, cl->idx, cl->call_seq,
                         cl->cseq + (bye ? 1u : 0u), bye ? "BYE" : "ACK");
        if (n < 0 || (size_t)n >= sizeof t->msg - len)
            return -ENOSPC;
        len += (size_t)n;
        for (size_t i = nrr; i-- > 0;) {
            n = snprintf(t->msg + len, sizeof t->msg - len, "Route: %.*s\r\n", (int)rr[i].len,
                         rr[i].base);
            if (n < 0 || (size_t)n >= sizeof t->msg - len)
                return -ENOSPC;
            len += (size_t)n;
        }
        if (len + 24 > sizeof t->msg)
            return -ENOSPC;
        memcpy(t->msg + len, "Content-Length: 0\r\n\r\n", 21);
        len += 21;
    }
    if (ok) {
        cl->cseq++;
        cl->call_bye = true;
    }
    return call_write(cl, len);
}

/* A response on a client in a measured call (CS_BUSY). */
static void call_on_response(struct client *cl, const struct sip_msg *m)
{
    struct gthread *t = cl->t;
    const struct bench_opts *o = &t->b->o;
    if (cseq_number(m) != cl->cseq)
        return; /* a stale answer, or a 2xx retransmission of an INVITE already ACKed */
    bool invite = call_cseq_is(m, "INVITE");
    if (invite == cl->call_bye || m->status < 200) {
        if (invite && m->status == 180)
            t->st.call_ringing++;
        return;
    }
    uint64_t now = now_us();
    int st = m->status < BENCH_STATUS_CODES ? m->status : 0;
    if (invite) {
        bool ok = m->status < 300;
        if (ok)
            bench_hist_add(&t->st.req, now - cl->t_sent);
        else
            t->st.status[st]++;
        if (call_send_ack_bye(cl, m, ok) < 0) {
            client_fail(cl, ERR_CLOSED);
            return;
        }
        if (ok) {
            loop_timer_arm(t->loop, &cl->timer, loop_now_ms(t->loop) + o->timeout_ms,
                           client_timeout_cb);
            return;
        }
    }
    loop_timer_cancel(t->loop, &cl->timer);
    t->outstanding--;
    t->st.done++;
    t->st.last_us = now;
    cl->measured = false;
    req_ended(t, REQ_FINAL, invite ? 0 : m->status, now);
    if (invite) {
        t->st.errors[ERR_STATUS]++;
    } else {
        t->st.status[st]++;
        bench_hist_add(&t->st.call, now - cl->t_sent);
        if (m->status == 200)
            t->st.ok++;
        else
            t->st.errors[ERR_STATUS]++;
    }
    client_ready(cl);
}

/* A request on a client connection (UCM calling or notifying the client): answer it. */
static void call_uas(struct client *cl, const struct sip_msg *m)
{
    struct gthread *t = cl->t;
    switch (m->method) {
    case SIP_METHOD_INVITE:
        t->st.uas_invite++;
        break;
    case SIP_METHOD_ACK:
        t->st.uas_ack++;
        return;
    case SIP_METHOD_BYE:
        t->st.uas_bye++;
        break;
    case SIP_METHOD_NOTIFY:
        t->st.uas_notify++;
        break;
    default:
        t->st.uas_other++;
        break;
    }
    char extra_buf[4096];
    struct slice extra[CALL_MAX_RR + 2];
    size_t nx = 0, used = 0;
    if (m->method == SIP_METHOD_INVITE) {
        char me[64];
        user_name(&t->b->o, cl->user, me, sizeof me);
        int n = snprintf(extra_buf, sizeof extra_buf,
                         "Contact: <sip:%s@127.0.0.1:%u;transport=tls>", me, cl->lport);
        extra[nx++] = slice_make(extra_buf, (size_t)n);
        used = (size_t)n;
        struct sip_value_iter it;
        struct slice v;
        sip_values_begin(&it, m, SIP_HDR_RECORD_ROUTE);
        while (nx < CALL_MAX_RR + 1 && sip_values_next(&it, &v)) {
            n = snprintf(extra_buf + used, sizeof extra_buf - used, "Record-Route: %.*s",
                         (int)v.len, v.base);
            if (n < 0 || (size_t)n >= sizeof extra_buf - used)
                break;
            extra[nx++] = slice_make(extra_buf + used, (size_t)n);
            used += (size_t)n;
        }
    }
    char tag[32];
    int tl = snprintf(tag, sizeof tag, "bc%u.%" PRIu64, cl->idx, t->st.uas_invite);
    struct slice to_tag = slice_make(tag, (size_t)tl);
    size_t len = 0;
    if (m->method == SIP_METHOD_INVITE) {
        ssize_t r = sip_build_response(m, 180, SLICE_LIT("Ringing"), to_tag, extra, nx, t->msg,
                                       sizeof t->msg);
        if (r < 0)
            return;
        len = (size_t)r;
    }
    ssize_t r = sip_build_response(m, 200, SLICE_LIT("OK"), to_tag, extra, nx, t->msg + len,
                                   sizeof t->msg - len);
    if (r < 0)
        return;
    if (call_write(cl, len + (size_t)r) < 0)
        client_fail(cl, ERR_CLOSED);
}

#endif
