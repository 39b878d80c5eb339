// SPDX-License-Identifier: MIT
// sipedge-ucmsim --call-out RATE / --notify RATE: UCM calling (or notifying) the registered
// clients, included by sipedge-ucmsim.c. Each answered REGISTER stores, per AoR (its To), the
// Contact, the Path (edge) and the connection it came on (RFC 5923 connection reuse). A 5 ms tick
// originates at RATE (split over the threads), round-robin over the stored AoRs: INVITE on the
// stored connection with Route: <Path> and Request-URI = Contact; 180, 200 -> ACK (Route = the
// 2xx's Record-Route reversed, RFC 3261 §12.1.2; Request-URI = its Contact), BYE after
// --out-hold-ms, 200. NOTIFY (Event: message-summary) -> 200. Bounded by --out-count (total)
// and --out-timeout-ms per exchange; the set-up latency INVITE -> 200 goes into a histogram.
#ifndef SIPEDGE_BENCH_UCMSIM_OUT_H
#define SIPEDGE_BENCH_UCMSIM_OUT_H

#define OUT_REGS    8192 /* stored AoRs per thread (open addressing) */
#define OUT_CALLS   8192 /* exchanges in flight per thread */
#define OUT_TICK_MS 5
#define OUT_MAX_RR  8

struct out_reg {
    bool used;
    uint32_t slot, gen;
    char aor[160];     /* the To of the REGISTER (key) */
    char contact[256]; /* the Contact URI */
    char route[512];   /* the Path values, in order, as a Route header value ("" = none) */
};

enum out_phase { OUT_FREE = 0, OUT_INVITING, OUT_HOLDING, OUT_BYE, OUT_NOTIFYING };

struct out_call {
    uint8_t state;
    uint64_t seq;
    uint32_t reg, slot, gen;
    uint64_t t0_ns, due_ns;
    uint16_t bye_len;
    char bye[1536]; /* the BYE, built when the 2xx arrives */
};

struct out_state {
    struct out_reg regs[OUT_REGS];
    struct out_call calls[OUT_CALLS];
    uint32_t rr_next;     /* round-robin cursor over regs */
    uint64_t seq, oldest; /* exchanges started; the oldest maybe still in flight */
    uint64_t t_start_ns;  /* first tick */
    uint64_t calls_started, notifies_started;
    struct bench_hist setup; /* INVITE sent -> 200 received, µs */
    int tfd;
};

static _Atomic uint64_t out_budget_used; /* --out-count: exchanges started, all threads */

static uint32_t out_hash(const char *s, size_t n)
{
    uint32_t x = 2166136261u;
    for (size_t i = 0; i < n; i++)
        x = (x ^ (unsigned char)s[i]) * 16777619u;
    return x;
}

static void copy_slice(char *dst, size_t cap, struct slice s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(dst, s.base, n);
    dst[n] = 0;
}

/** A REGISTER answered 200 on `c`: remember its AoR's Contact, Path and connection. */
static void out_register(struct worker *w, struct conn *c, const struct sip_msg *m)
{
    struct out_state *os = w->out;
    const struct sip_header *to = sip_first(m, SIP_HDR_TO);
    struct sip_value_iter it;
    struct slice v;
    struct sip_name_addr na;
    sip_values_begin(&it, m, SIP_HDR_CONTACT);
    if (!to || to->value.len >= sizeof os->regs[0].aor || !sip_values_next(&it, &v) ||
        sip_parse_name_addr(v, &na) != 0 || na.star)
        return;
    uint32_t h = out_hash(to->value.base, to->value.len) % OUT_REGS;
    struct out_reg *r = NULL;
    for (uint32_t k = 0; k < OUT_REGS; k++) {
        struct out_reg *e = &os->regs[(h + k) % OUT_REGS];
        if (!e->used || (strlen(e->aor) == to->value.len &&
                         memcmp(e->aor, to->value.base, to->value.len) == 0)) {
            r = e;
            break;
        }
    }
    if (!r) {
        w->ctr[SIM_C_OUT_NO_ROOM]++;
        return;
    }
    r->used = true;
    r->slot = c->slot;
    r->gen = c->gen;
    copy_slice(r->aor, sizeof r->aor, to->value);
    copy_slice(r->contact, sizeof r->contact, na.uri_text);
    struct text t = {.p = r->route, .cap = sizeof r->route - 1};
    sip_values_begin(&it, m, SIP_HDR_PATH);
    while (sip_values_next(&it, &v)) {
        text_str(&t, t.len ? ", " : "");
        text_slice(&t, v);
    }
    r->route[t.overflow ? 0 : t.len] = 0;
}

static struct conn *out_conn(struct worker *w, uint32_t slot, uint32_t gen)
{
    struct conn *c = slot < w->slot_count ? w->conns[slot] : NULL;
    return c && c->gen == gen && c->state == CONN_OPEN ? c : NULL;
}

static void out_send(struct worker *w, struct conn *c, const char *p, size_t len)
{
    if (conn_queue(c, p, len) < 0 || conn_flush(w, c) < 0)
        conn_free(w, c);
}

static bool out_budget(struct worker *w)
{
    return !w->o->out_count || atomic_fetch_add(&out_budget_used, 1) < w->o->out_count;
}

/** Starts one INVITE or NOTIFY to the next stored AoR with a live connection. */
static bool out_start(struct worker *w, bool notify)
{
    struct out_state *os = w->out;
    const struct sim_opts *o = w->o;
    struct out_call *x = &os->calls[os->seq % OUT_CALLS];
    if (x->state != OUT_FREE) {
        w->ctr[SIM_C_OUT_OVERLOAD]++;
        return false;
    }
    struct out_reg *r = NULL;
    struct conn *c = NULL;
    for (uint32_t k = 0; k < OUT_REGS && !c; k++) {
        r = &os->regs[os->rr_next++ % OUT_REGS];
        if (r->used)
            c = out_conn(w, r->slot, r->gen);
    }
    if (!c) {
        w->ctr[SIM_C_OUT_NO_TARGET]++;
        return false;
    }
    if (!out_budget(w))
        return false;
    uint64_t seq = os->seq++;
    char buf[4096];
    struct text t = {.p = buf, .cap = sizeof buf};
    text_fmt(&t, "%s %s SIP/2.0\r\n", notify ? "NOTIFY" : "INVITE", r->contact);
    text_fmt(&t, "Via: SIP/2.0/TLS %s:%u;branch=z9hG4bK-uo%u.%" PRIu64 "\r\n", o->addr, o->port,
             w->id, seq);
    text_str(&t, "Max-Forwards: 70\r\n");
    if (r->route[0])
        text_fmt(&t, "Route: %s\r\n", r->route);
    text_fmt(&t, "From: <sip:ucm@%s>;tag=uo%u.%" PRIu64 "\r\nTo: %s\r\n", o->addr, w->id, seq,
             r->aor);
    text_fmt(&t, "Call-ID: uo-%u-%" PRIu64 "@ucmsim\r\nCSeq: 1 %s\r\n", w->id, seq,
             notify ? "NOTIFY" : "INVITE");
    text_fmt(&t, "Contact: <sip:ucm@%s:%u;transport=tls>\r\n", o->addr, o->port);
    static const char mwi[] = "Messages-Waiting: yes\r\nVoice-Message: 1/0 (0/0)\r\n";
    if (notify)
        text_fmt(
            &t,
            "Event: message-summary\r\nSubscription-State: active\r\n"
            "Content-Type: application/simple-message-summary\r\nContent-Length: %zu\r\n\r\n%s",
            sizeof mwi - 1, mwi);
    else
        text_fmt(&t, "Content-Type: application/sdp\r\nContent-Length: %zu\r\n\r\n%s",
                 sizeof sim_sdp - 1, sim_sdp);
    if (t.overflow)
        return false;
    *x = (struct out_call){.state = notify ? OUT_NOTIFYING : OUT_INVITING,
                           .seq = seq,
                           .reg = (uint32_t)(r - os->regs),
                           .slot = c->slot,
                           .gen = c->gen,
                           .t0_ns = now_ns()};
    w->ctr[notify ? SIM_C_NOTIFY_SENT : SIM_C_OUT_INVITE]++;
    out_send(w, c, t.p, t.len);
    return true;
}

/** ACK (and the BYE kept for later) of the call answered 2xx by `m`. */
static void out_ack(struct worker *w, struct conn *c, struct out_call *x, const struct sip_msg *m)
{
    const struct sim_opts *o = w->o;
    struct out_reg *r = &w->out->regs[x->reg];
    char ruri[256];
    snprintf(ruri, sizeof ruri, "%s", r->contact);
    struct sip_value_iter it;
    struct slice v, rr[OUT_MAX_RR];
    struct sip_name_addr na;
    sip_values_begin(&it, m, SIP_HDR_CONTACT);
    if (sip_values_next(&it, &v) && sip_parse_name_addr(v, &na) == 0 && !na.star)
        copy_slice(ruri, sizeof ruri, na.uri_text);
    size_t nrr = 0;
    sip_values_begin(&it, m, SIP_HDR_RECORD_ROUTE);
    while (nrr < OUT_MAX_RR && sip_values_next(&it, &v))
        rr[nrr++] = v;
    const struct sip_header *to = sip_first(m, SIP_HDR_TO);
    char ack[2048];
    for (int k = 0; k < 2; k++) {
        bool bye = k == 1;
        struct text t = {.p = bye ? x->bye : ack, .cap = bye ? sizeof x->bye : sizeof ack};
        text_fmt(&t, "%s %s SIP/2.0\r\n", bye ? "BYE" : "ACK", ruri);
        text_fmt(&t, "Via: SIP/2.0/TLS %s:%u;branch=z9hG4bK-u%c%u.%" PRIu64 "\r\n", o->addr,
                 o->port, bye ? 'b' : 'a', w->id, x->seq);
        text_str(&t, "Max-Forwards: 70\r\n");
        for (size_t i = nrr; i-- > 0;) {
            text_str(&t, "Route: ");
            text_slice(&t, rr[i]);
            text_str(&t, "\r\n");
        }
        text_fmt(&t, "From: <sip:ucm@%s>;tag=uo%u.%" PRIu64 "\r\nTo: ", o->addr, w->id, x->seq);
        if (to)
            text_slice(&t, to->value);
        text_fmt(&t, "\r\nCall-ID: uo-%u-%" PRIu64 "@ucmsim\r\nCSeq: %d %s\r\n", w->id, x->seq,
                 bye ? 2 : 1, bye ? "BYE" : "ACK");
        text_str(&t, "Content-Length: 0\r\n\r\n");
        if (t.overflow) {
            w->ctr[SIM_C_OUT_FAIL]++;
            x->state = OUT_FREE;
            return;
        }
        if (bye)
            x->bye_len = (uint16_t)t.len;
        else
            out_send(w, c, t.p, t.len);
    }
    x->state = OUT_HOLDING;
    x->due_ns = now_ns() + (uint64_t)o->out_hold_ms * 1000000u;
}

/** A response on `c`: one of our exchanges? */
static void out_response(struct worker *w, struct conn *c, const struct sip_msg *m)
{
    struct out_state *os = w->out;
    const struct sip_header *h = sip_first(m, SIP_HDR_CALL_ID);
    unsigned wid;
    uint64_t seq;
    char cid[64];
    if (!os || !h || h->value.len >= sizeof cid)
        return;
    copy_slice(cid, sizeof cid, h->value);
    if (sscanf(cid, "uo-%u-%" SCNu64 "@", &wid, &seq) != 2 || wid != w->id)
        return;
    struct out_call *x = &os->calls[seq % OUT_CALLS];
    if (x->state == OUT_FREE || x->seq != seq || m->status < 180)
        return;
    if (x->state == OUT_INVITING && m->status < 200) {
        w->ctr[SIM_C_OUT_180]++;
        return;
    }
    if (x->state == OUT_INVITING && m->status < 300) {
        w->ctr[SIM_C_OUT_200]++;
        bench_hist_add(&os->setup, (now_ns() - x->t0_ns) / 1000u);
        out_ack(w, c, x, m);
        return;
    }
    if (x->state == OUT_HOLDING || m->status < 200)
        return; /* a 2xx retransmission */
    bool ok = m->status < 300;
    if (x->state == OUT_NOTIFYING)
        w->ctr[ok ? SIM_C_NOTIFY_OK : SIM_C_NOTIFY_FAIL]++;
    else
        w->ctr[ok ? SIM_C_OUT_OK : SIM_C_OUT_FAIL]++;
    if (!ok)
        sim_log("ucmsim[%u] out %s %" PRIu64 " failed: %d", w->id,
                x->state == OUT_NOTIFYING ? "NOTIFY" : "call", seq, m->status);
    x->state = OUT_FREE;
}

/** Started so far vs due at `rate` (per thread) since the first tick, within the budget. */
static unsigned out_due(struct worker *w, double rate, uint64_t started, uint64_t now)
{
    double el = (double)(now - w->out->t_start_ns) / 1e9;
    double want = rate / w->o->threads * el;
    if (want <= (double)started)
        return 0;
    double d = want - (double)started;
    return d > 256 ? 256 : (unsigned)d;
}

static void out_tick(struct worker *w)
{
    struct out_state *os = w->out;
    uint64_t ticks;
    ssize_t rd = read(os->tfd, &ticks, sizeof ticks);
    (void)rd;
    uint64_t now = now_ns();
    if (!os->t_start_ns)
        os->t_start_ns = now;
    for (unsigned n = out_due(w, w->o->call_out_rate, os->calls_started, now); n--;) {
        os->calls_started++; /* a slot skipped still counts: open loop, no catch-up burst */
        out_start(w, false);
    }
    for (unsigned n = out_due(w, w->o->notify_rate, os->notifies_started, now); n--;) {
        os->notifies_started++;
        out_start(w, true);
    }
    uint64_t timeout = (uint64_t)w->o->out_timeout_ms * 1000000u;
    for (uint64_t s = os->oldest; s < os->seq; s++) {
        struct out_call *x = &os->calls[s % OUT_CALLS];
        if (x->state == OUT_FREE || x->seq != s) {
            if (s == os->oldest)
                os->oldest++;
            continue;
        }
        if (x->state == OUT_HOLDING && x->due_ns <= now) {
            struct conn *c = out_conn(w, x->slot, x->gen);
            if (c) {
                w->ctr[SIM_C_OUT_BYE]++;
                x->state = OUT_BYE;
                x->t0_ns = now;
                out_send(w, c, x->bye, x->bye_len);
            } else {
                w->ctr[SIM_C_OUT_FAIL]++;
                x->state = OUT_FREE;
            }
        } else if (x->state != OUT_HOLDING && now > x->t0_ns && now - x->t0_ns > timeout) {
            w->ctr[SIM_C_OUT_TIMEOUT]++;
            x->state = OUT_FREE;
        }
    }
}

static int out_init(struct worker *w)
{
    if (w->o->call_out_rate <= 0 && w->o->notify_rate <= 0)
        return 0;
    w->out = calloc(1, sizeof *w->out);
    if (!w->out)
        return -ENOMEM;
    bench_hist_reset(&w->out->setup);
    w->out->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (w->out->tfd < 0)
        return -errno;
    struct itimerspec its = {.it_interval = {0, OUT_TICK_MS * 1000000L},
                             .it_value = {0, OUT_TICK_MS * 1000000L}};
    timerfd_settime(w->out->tfd, 0, &its, NULL);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = TAG_OUT};
    return epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->out->tfd, &e) < 0 ? -errno : 0;
}

static void out_deinit(struct worker *w)
{
    if (!w->out)
        return;
    if (w->out->tfd >= 0)
        close(w->out->tfd);
    free(w->out);
    w->out = NULL;
}

#endif
