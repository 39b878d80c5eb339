// SPDX-License-Identifier: MIT
// Route / Record-Route / Path processing of the edge (see core/route.h): classification of URIs
// as the edge's own, the loose/strict routing decision, and edits over the request's bytes.
#include "core/route.h"
#include "core/writer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

const char *route_verdict_name(enum route_verdict v)
{
    switch (v) {
    case ROUTE_FORWARD:
        return "forward";
    case ROUTE_LOCAL:
        return "local";
    case ROUTE_BAD:
        return "bad";
    case ROUTE_FORGED:
        return "forged";
    default:
        return "unknown";
    }
}

/* ---- classification ------------------------------------------------------------------------ */

/* `s` is "[v6]": its 16 bytes into `out`. */
static bool v6_bytes(struct slice s, unsigned char out[16])
{
    char tmp[INET6_ADDRSTRLEN + 1];

    if (s.len < 3 || s.base[0] != '[' || s.base[s.len - 1] != ']' || s.len - 2 >= sizeof(tmp))
        return false;
    memcpy(tmp, s.base + 1, s.len - 2);
    tmp[s.len - 2] = '\0';
    return inet_pton(AF_INET6, tmp, out) == 1;
}

static bool host_eq(struct slice cfg, struct slice host, enum sip_host_kind kind)
{
    unsigned char a[16], b[16];

    if (kind == SIP_HOST_IPV6)
        return v6_bytes(cfg, a) && v6_bytes(host, b) && memcmp(a, b, 16) == 0;
    return slice_eqi(cfg, host);
}

static bool addr_match(const struct route_self *self, const struct sip_uri *u)
{
    uint16_t def =
        (u->kind == SIP_URI_SIPS || slice_eqi(u->transport, SLICE_LIT("tls"))) ? 5061 : 5060;
    uint16_t port = u->has_port ? u->port : def;

    for (size_t i = 0; i < self->n_addrs; i++) {
        const struct route_addr *a = &self->addrs[i];
        if ((a->port ? a->port : def) == port && host_eq(a->host, u->host, u->host_kind))
            return true;
    }
    return false;
}

/* ROUTE_NODE_PARAM's decimal value, if present and in range. */
static bool node_param(struct slice params, uint32_t *node)
{
    struct sip_param_iter it;
    struct sip_param p;

    sip_params_begin(&it, params, SIP_PARAM_URI);
    while (sip_params_next(&it, &p) > 0) {
        if (!sip_param_is(&p, SLICE_LIT(ROUTE_NODE_PARAM)) || !p.has_value || p.value.len == 0 ||
            p.value.len > 9)
            continue;
        uint32_t v = 0;
        size_t i = 0;
        for (; i < p.value.len && p.value.base[i] >= '0' && p.value.base[i] <= '9'; i++)
            v = v * 10 + (uint32_t)(p.value.base[i] - '0');
        if (i == p.value.len) {
            *node = v;
            return true;
        }
    }
    return false;
}

int route_classify_uri(const struct route_self *self, struct slice uri_text, struct route_hop *out)
{
    struct sip_uri u;

    memset(out, 0, sizeof(*out));
    out->uri_text = uri_text;
    int r = sip_parse_uri(uri_text, &u);
    if (r < 0)
        return r;
    if (u.kind != SIP_URI_SIP && u.kind != SIP_URI_SIPS)
        return 0;
    bool by_host = addr_match(self, &u);
    if (u.has_user && (by_host || u.lr)) {
        struct flow f;
        enum flow_result fr = flow_decode(self->keys, u.user, &f);
        if (by_host || fr == FLOW_OK) {
            out->has_flow = true;
            out->flow_res = fr;
            if (fr == FLOW_OK)
                out->flow = f;
        }
    }
    out->ours = by_host || (out->has_flow && out->flow_res == FLOW_OK);
    if (out->ours)
        out->has_node = node_param(u.params, &out->node);
    return 0;
}

/* ---- the decision -------------------------------------------------------------------------- */

static void take_hints(struct route_decision *d, const struct route_hop *h)
{
    if (h->has_flow && h->flow_res == FLOW_OK && !d->has_flow) {
        d->has_flow = true;
        d->flow = h->flow;
    }
    if (h->has_node && !d->has_node) {
        d->has_node = true;
        d->node = h->node;
    }
}

static enum route_verdict verdict(struct route_decision *d, enum route_verdict v, int perr)
{
    d->verdict = v;
    d->perr = perr;
    return v;
}

/* Collect the Route values of `req` and the URI text of each. */
static int collect(const struct sip_msg *req, struct route_decision *d,
                   struct slice uris[ROUTE_MAX_VALUES])
{
    struct sip_value_iter it;
    struct slice v;

    sip_values_begin(&it, req, SIP_HDR_ROUTE);
    while (sip_values_next(&it, &v)) {
        struct sip_name_addr na;
        if (d->n_values == ROUTE_MAX_VALUES)
            return -SIP_PE_OUT_OF_RANGE;
        int r = sip_parse_name_addr(v, &na);
        if (r < 0)
            return r;
        if (na.star)
            return -SIP_PE_BAD_NAME_ADDR;
        d->values[d->n_values] = v;
        d->value_hdr[d->n_values] = (uint16_t)(it.hdr - 1);
        uris[d->n_values++] = na.uri_text;
    }
    return 0;
}

enum route_verdict route_decide(const struct route_self *self, const struct sip_msg *req,
                                struct route_decision *out)
{
    struct slice uris[ROUTE_MAX_VALUES];
    struct route_hop ruri, hop;
    size_t end;
    int r;

    memset(out, 0, sizeof(*out));
    if ((r = collect(req, out, uris)) < 0)
        return verdict(out, ROUTE_BAD, r);
    if ((r = route_classify_uri(self, req->uri, &ruri)) < 0)
        return verdict(out, ROUTE_BAD, r);
    /* A Request-URI with our host but a user that is not our token is someone's AOR, not ours. */
    bool ruri_ours = ruri.ours && (!ruri.has_flow || ruri.flow_res == FLOW_OK);
    end = out->n_values;
    if (ruri_ours && out->n_values > 0) { /* §16.4: the previous hop is a strict router */
        out->strict = true;
        out->new_ruri = uris[out->n_values - 1];
        end--;
        take_hints(out, &ruri);
    }
    for (out->n_ours = 0; out->n_ours < end; out->n_ours++) {
        if ((r = route_classify_uri(self, uris[out->n_ours], &hop)) < 0)
            return verdict(out, ROUTE_BAD, r);
        if (!hop.ours)
            break;
        if (hop.has_flow && hop.flow_res != FLOW_OK)
            return verdict(out, ROUTE_FORGED, 0);
        take_hints(out, &hop);
    }
    if (out->n_ours < end) {
        out->next_hop = uris[out->n_ours];
        out->next_hop_is_route = true;
    } else {
        out->next_hop = out->strict ? out->new_ruri : req->uri;
    }
    if (ruri_ours && !out->strict) {
        take_hints(out, &ruri);
        if (out->n_ours == end)
            return verdict(out, ROUTE_LOCAL, 0);
    }
    return verdict(out, ROUTE_FORWARD, 0);
}

/* ---- edits ------------------------------------------------------------------------------- */

static const char *hdrs_end(const struct sip_msg *m)
{
    return m->method_text.base + m->header_len - 2; /* the empty line is CRLF */
}

/* Header `h`'s whole line including CRLF (folds are spaces after sip_scan()). */
static struct slice line_of(const struct sip_msg *m, const struct sip_header *h)
{
    const char *from = h->name.base + h->name.len, *lim = hdrs_end(m), *lf;

    if (h->value.base != NULL && h->value.base + h->value.len > from)
        from = h->value.base + h->value.len;
    lf = from < lim ? memchr(from, '\n', (size_t)(lim - from)) : NULL;
    return slice_make(h->name.base, (size_t)((lf != NULL ? lf + 1 : lim) - h->name.base));
}

static bool removed(const struct route_decision *d, size_t i)
{
    return i < d->n_ours || (d->strict && i == d->n_values - 1);
}

static int add_edit(struct route_edit *out, size_t cap, size_t *n, const char *b, const char *e,
                    struct slice ins)
{
    if (*n == cap)
        return -ENOSPC;
    out[(*n)++] = (struct route_edit){slice_make(b, (size_t)(e - b)), ins};
    return 0;
}

/* The Route cuts of the values [i0, i1] that share header line `h`. */
static int line_cuts(const struct sip_msg *req, const struct route_decision *d, size_t i0,
                     size_t i1, struct route_edit *out, size_t cap, size_t *n)
{
    size_t all = 0;
    for (size_t i = i0; i <= i1; i++)
        all += removed(d, i);
    if (all == i1 - i0 + 1) {
        struct slice line = line_of(req, &req->headers[d->value_hdr[i0]]);
        return add_edit(out, cap, n, line.base, line.base + line.len, SLICE_NULL);
    }
    for (size_t a = i0; a <= i1; a++) {
        if (!removed(d, a))
            continue;
        size_t b = a;
        while (b + 1 <= i1 && removed(d, b + 1))
            b++;
        const struct slice *v = d->values;
        int r = b < i1 ? add_edit(out, cap, n, v[a].base, v[b + 1].base, SLICE_NULL)
                       : add_edit(out, cap, n, v[a - 1].base + v[a - 1].len, v[b].base + v[b].len,
                                  SLICE_NULL);
        if (r < 0)
            return r;
        a = b;
    }
    return 0;
}

ssize_t route_edits(const struct sip_msg *req, const struct route_decision *d, struct slice rr_line,
                    struct route_edit *out, size_t cap)
{
    size_t n = 0;
    int r;

    if (d->strict &&
        (r = add_edit(out, cap, &n, req->uri.base, req->uri.base + req->uri.len, d->new_ruri)) < 0)
        return r;
    for (size_t i0 = 0; i0 < d->n_values;) {
        size_t i1 = i0;
        while (i1 + 1 < d->n_values && d->value_hdr[i1 + 1] == d->value_hdr[i0])
            i1++;
        if ((r = line_cuts(req, d, i0, i1, out, cap, &n)) < 0)
            return r;
        i0 = i1 + 1;
    }
    if (rr_line.len) {
        const struct sip_header *rr = sip_first(req, SIP_HDR_RECORD_ROUTE);
        const char *at = rr != NULL ? rr->name.base : hdrs_end(req);
        if ((r = add_edit(out, cap, &n, at, at, rr_line)) < 0)
            return r;
        /* keep buffer order: the insertion point may precede some Route cuts */
        for (size_t i = n - 1; i > 0 && out[i].cut.base < out[i - 1].cut.base; i--) {
            struct route_edit t = out[i];
            out[i] = out[i - 1];
            out[i - 1] = t;
        }
    }
    return (ssize_t)n;
}

static int push(struct slice *out, size_t cap, size_t *o, const char *b, size_t len)
{
    if (len == 0)
        return 0;
    if (*o == cap)
        return -ENOSPC;
    out[(*o)++] = slice_make(b, len);
    return 0;
}

ssize_t route_apply(const struct slice *in, size_t n_in, const struct route_edit *e, size_t n_e,
                    struct slice *out, size_t cap)
{
    size_t o = 0, k = 0;
    int r;

    for (size_t i = 0; i < n_in; i++) {
        uintptr_t cur = (uintptr_t)in[i].base, end = cur + in[i].len;
        while (k < n_e) {
            uintptr_t cb = (uintptr_t)e[k].cut.base, ce = cb + e[k].cut.len;
            /* a cut starting at this slice's end belongs to the next slice; an insertion
             * there goes here */
            if (cb < (uintptr_t)in[i].base || cb > end || (cb == end && ce > cb))
                break; /* not in this slice */
            if (cb < cur || ce > end)
                return -EINVAL;
            if ((r = push(out, cap, &o, (const char *)cur, cb - cur)) < 0 ||
                (r = push(out, cap, &o, e[k].insert.base, e[k].insert.len)) < 0)
                return r;
            cur = ce;
            k++;
        }
        if ((r = push(out, cap, &o, (const char *)cur, end - cur)) < 0)
            return r;
    }
    return k == n_e ? (ssize_t)o : -EINVAL;
}

/* ---- builders ------------------------------------------------------------------------------ */

static bool host_ok(struct slice h)
{
    if (h.len == 0)
        return false;
    for (size_t i = 0; i < h.len; i++) {
        char c = h.base[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
            return false;
    }
    return true;
}

static void put_hostport(struct writer *w, const struct route_addr *a)
{
    put(w, a->host.base, a->host.len);
    if (a->port) {
        PUT_LIT(w, ":");
        put_uint(w, a->port);
    }
}

/* "<sip:TOKEN@host:port;transport=tls;lr" (no closing '>'); 0 or -EIO. */
/* `pre`: the token already encoded (FLOW_TOKEN_LEN characters), or NULL to encode `f`. */
static int put_flow_uri(struct writer *w, const struct route_addr *a, const struct flow_key *key,
                        const struct flow *f, const char *pre)
{
    char tok[FLOW_TOKEN_LEN];

    if (pre != NULL)
        memcpy(tok, pre, sizeof(tok));
    else if (flow_encode(key, f, tok, sizeof(tok)) < 0)
        return -EIO;
    PUT_LIT(w, "<sip:");
    put(w, tok, sizeof(tok));
    PUT_LIT(w, "@");
    put_hostport(w, a);
    PUT_LIT(w, ";transport=tls;lr");
    return 0;
}

ssize_t route_build_rr(const struct route_rr *rr, char *buf, size_t cap)
{
    struct writer w = {buf, buf + cap, false};

    if (!host_ok(rr->client_side.host) || !host_ok(rr->ucm_side.host))
        return -EINVAL;
    PUT_LIT(&w, "Record-Route: ");
    for (int i = 0; i < 2; i++) {
        if (i == 1)
            PUT_LIT(&w, ", ");
        if ((i == 0) != rr->toward_ucm) { /* the client-side entry */
            if (put_flow_uri(&w, &rr->client_side, rr->key, &rr->flow, rr->token) < 0)
                return -EIO;
            PUT_LIT(&w, ">");
        } else {
            PUT_LIT(&w, "<sip:");
            put_hostport(&w, &rr->ucm_side);
            PUT_LIT(&w, ";transport=tls;lr;" ROUTE_NODE_PARAM "=");
            put_uint(&w, rr->node);
            PUT_LIT(&w, ">");
        }
    }
    PUT_LIT(&w, "\r\n");
    return w.over ? -ENOSPC : (ssize_t)(w.p - buf);
}

ssize_t route_build_path_token(const struct route_addr *addr, const char *token, char *buf,
                               size_t cap)
{
    struct writer w = {buf, buf + cap, false};

    if (!host_ok(addr->host))
        return -EINVAL;
    put_flow_uri(&w, addr, NULL, NULL, token);
    PUT_LIT(&w, ";ob>");
    return w.over ? -ENOSPC : (ssize_t)(w.p - buf);
}

ssize_t route_build_path(const struct route_addr *addr, const struct flow_key *key,
                         const struct flow *f, char *buf, size_t cap)
{
    struct writer w = {buf, buf + cap, false};

    if (!host_ok(addr->host))
        return -EINVAL;
    if (put_flow_uri(&w, addr, key, f, NULL) < 0)
        return -EIO;
    PUT_LIT(&w, ";ob>");
    return w.over ? -ENOSPC : (ssize_t)(w.p - buf);
}
