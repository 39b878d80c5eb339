// SPDX-License-Identifier: MIT
// sipedge-ucmsim: the UAS side of calls, included by sipedge-ucmsim.c (it needs that file's
// worker, text and queue helpers). Stateless: INVITE -> 180 + 200 (SDP answer, own Contact, a To
// tag derived from the Call-ID, Record-Route copied as RFC 3261 §12.1.1 asks), ACK -> nothing,
// BYE and other in-dialog requests -> 200, CANCEL -> 200 + 487. The called user picks a
// behaviour: "busy..." -> 486, "ring..." -> 180 only (the call waits for a CANCEL).
#ifndef SIPEDGE_BENCH_UCMSIM_CALLS_H
#define SIPEDGE_BENCH_UCMSIM_CALLS_H

static const char sim_sdp[] = "v=0\r\n"
                              "o=ucmsim 1 1 IN IP4 127.0.0.1\r\n"
                              "s=-\r\n"
                              "c=IN IP4 127.0.0.1\r\n"
                              "t=0 0\r\n"
                              "m=audio 20000 RTP/AVP 0\r\n"
                              "a=rtpmap:0 PCMU/8000\r\n";

/** FNV-1a of the Call-ID: the To tag of every answer of one dialog, without keeping state. */
static uint32_t call_tag(const struct sip_msg *m)
{
    const struct sip_header *h = sip_first(m, SIP_HDR_CALL_ID);
    uint32_t x = 2166136261u;
    for (size_t i = 0; h && i < h->value.len; i++)
        x = (x ^ (unsigned char)h->value.base[i]) * 16777619u;
    return x;
}

static bool slice_has(struct slice s, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= s.len; i++)
        if (strncasecmp(s.base + i, needle, n) == 0)
            return true;
    return false;
}

/** The user part of the Request-URI starts with `prefix`? */
static bool ruri_user_is(const struct sip_msg *m, const char *prefix)
{
    struct slice u = m->uri;
    size_t n = strlen(prefix), colon = 0;
    while (colon < u.len && u.base[colon] != ':')
        colon++;
    return colon + 1 + n <= u.len && strncasecmp(u.base + colon + 1, prefix, n) == 0;
}

struct call_resp {
    int status;
    const char *reason;
    const char *cseq_method; /* NULL: as in the request */
    bool dialog;             /* To tag, Contact, Record-Route */
    bool sdp;
};

/** A response to `m` in `t`: Vias, (Record-Route), From, To (+tag), Call-ID, CSeq, (Contact). */
static void call_build(struct worker *w, const struct sip_msg *m, const struct call_resp *r,
                       struct text *t)
{
    text_fmt(t, "SIP/2.0 %d %s\r\n", r->status, r->reason);
    for (size_t i = 0; i < m->header_count; i++) {
        const struct sip_header *h = &m->headers[i];
        switch (h->id) {
        case SIP_HDR_RECORD_ROUTE:
            if (!r->dialog)
                break;
            /* fall through */
        case SIP_HDR_VIA:
        case SIP_HDR_FROM:
        case SIP_HDR_CALL_ID:
            text_slice(t, h->name);
            text_str(t, ": ");
            text_slice(t, h->value);
            text_str(t, "\r\n");
            break;
        case SIP_HDR_TO:
            text_str(t, "To: ");
            text_slice(t, h->value);
            if (!slice_has(h->value, ";tag="))
                text_fmt(t, ";tag=u%08x", call_tag(m));
            text_str(t, "\r\n");
            break;
        case SIP_HDR_CSEQ: {
            size_t d = 0;
            while (d < h->value.len && h->value.base[d] >= '0' && h->value.base[d] <= '9')
                d++;
            text_str(t, "CSeq: ");
            text_put(t, h->value.base, d);
            text_str(t, " ");
            if (r->cseq_method)
                text_str(t, r->cseq_method);
            else
                text_slice(t, m->method_text);
            text_str(t, "\r\n");
            break;
        }
        default:
            break;
        }
    }
    if (r->dialog)
        text_fmt(t, "Contact: <sip:ucm@%s:%u;transport=tls>\r\n", w->o->addr, w->o->port);
    text_str(t, "Server: sipedge-ucmsim\r\n");
    if (r->sdp)
        text_fmt(t, "Content-Type: application/sdp\r\nContent-Length: %zu\r\n\r\n%s",
                 sizeof sim_sdp - 1, sim_sdp);
    else
        text_str(t, "Content-Length: 0\r\n\r\n");
}

static int call_send(struct worker *w, struct conn *c, const struct sip_msg *m,
                     const struct call_resp *r)
{
    char buf[16384];
    struct text t = {.p = buf, .cap = sizeof buf};
    call_build(w, m, r, &t);
    if (t.overflow) {
        sim_log("ucmsim[%u] call answer too large peer=%s", w->id, c->peer);
        return 0;
    }
    return conn_queue(c, t.p, t.len);
}

/** Is `m` a call request this file answers? Then answers it: 0, or <0 to close the conn. */
static bool call_handles(const struct sip_msg *m)
{
    switch (m->method) {
    case SIP_METHOD_INVITE:
    case SIP_METHOD_ACK:
    case SIP_METHOD_BYE:
    case SIP_METHOD_CANCEL:
    case SIP_METHOD_UPDATE:
    case SIP_METHOD_INFO:
    case SIP_METHOD_PRACK:
        return true;
    default:
        return false;
    }
}

static int call_answer(struct worker *w, struct conn *c, const struct sip_msg *m)
{
    const struct call_resp ringing = {180, "Ringing", NULL, true, false};
    const struct call_resp ok_sdp = {200, "OK", NULL, true, true};
    const struct call_resp ok = {200, "OK", NULL, false, false};
    int rc = 0;
    switch (m->method) {
    case SIP_METHOD_INVITE:
        w->ctr[SIM_C_INVITE]++;
        if (ruri_user_is(m, "busy")) {
            w->ctr[SIM_C_ANSWER_486]++;
            const struct call_resp busy = {486, "Busy Here", NULL, false, false};
            return call_send(w, c, m, &busy);
        }
        w->ctr[SIM_C_ANSWER_180]++;
        rc = call_send(w, c, m, &ringing);
        if (rc < 0 || ruri_user_is(m, "ring"))
            return rc;
        w->ctr[SIM_C_ANSWER_200]++;
        return call_send(w, c, m, &ok_sdp);
    case SIP_METHOD_ACK:
        w->ctr[SIM_C_ACK]++;
        return 0;
    case SIP_METHOD_CANCEL: {
        w->ctr[SIM_C_CANCEL]++;
        w->ctr[SIM_C_ANSWER_200]++;
        rc = call_send(w, c, m, &ok);
        if (rc < 0)
            return rc;
        w->ctr[SIM_C_ANSWER_487]++;
        const struct call_resp term = {487, "Request Terminated", "INVITE", false, false};
        return call_send(w, c, m, &term);
    }
    default:
        w->ctr[m->method == SIP_METHOD_BYE ? SIM_C_BYE : SIM_C_OTHER_METHOD]++;
        w->ctr[SIM_C_ANSWER_200]++;
        return call_send(w, c, m, &ok);
    }
}

#endif
