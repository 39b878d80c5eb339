// SPDX-License-Identifier: MIT
// SIP builders: responses into a bounded buffer, request rewrites and Via pops as gather lists
// of slices into the scanned message. See core/sip_build.h.
#include "core/sip_build.h"
#include "core/writer.h"

#include <errno.h>
#include <string.h>

#include "core/sip_parse.h"

/* ---- the message's layout ------------------------------------------------------------------ */

/* First byte of the message: the start line begins the buffer sip_scan() was given. */
static const char *msg_start(const struct sip_msg *m)
{
    return m->is_request ? m->method_text.base : m->version.base;
}

/* One past the last byte of the message (headers, empty line, body). */
static const char *msg_end(const struct sip_msg *m)
{
    return msg_start(m) + m->header_len + m->content_length;
}

/* One past the empty line's start: where the header block ends (the empty line begins here). */
static const char *hdrs_end(const struct sip_msg *m)
{
    return msg_start(m) + m->header_len - 2; /* the empty line is CRLF (sip_scan is strict) */
}

/* The whole line of header `h` including its CRLF; folds are already spaces, so the first LF
 * after the value ends the line. */
static struct slice line_of(const struct sip_msg *m, const struct sip_header *h)
{
    const char *b = h->name.base, *from = h->name.base + h->name.len, *lim = hdrs_end(m), *lf;

    if (h->value.base != NULL && h->value.base + h->value.len > from)
        from = h->value.base + h->value.len;
    lf = from < lim ? memchr(from, '\n', (size_t)(lim - from)) : NULL;
    return slice_make(b, (size_t)((lf != NULL ? lf + 1 : lim) - b));
}

static bool has_crlf(struct slice s)
{
    return s.len != 0 && (memchr(s.base, '\r', s.len) != NULL || memchr(s.base, '\n', s.len));
}

/* ---- response ------------------------------------------------------------------------------ */

ssize_t sip_build_response(const struct sip_msg *req, int status, struct slice reason,
                           struct slice to_tag, const struct slice *extra, size_t n_extra,
                           char *out, size_t cap)
{
    struct writer w = {out, out + cap, false};
    const struct sip_header *from = NULL, *to = NULL, *call_id = NULL, *cseq = NULL;

    if (!req->is_request || status < 100 || status > 699 || has_crlf(reason) || has_crlf(to_tag))
        return -EINVAL;
    for (size_t i = 0; i < n_extra; i++)
        if (has_crlf(extra[i]))
            return -EINVAL;

    PUT_LIT(&w, "SIP/2.0 ");
    put_uint(&w, (unsigned)status);
    PUT_LIT(&w, " ");
    put_s(&w, reason);
    PUT_LIT(&w, "\r\n");
    for (size_t i = 0; i < req->header_count; i++) {
        const struct sip_header *h = &req->headers[i];
        switch (h->id) {
        case SIP_HDR_VIA:
            PUT_LIT(&w, "Via: ");
            put_s(&w, h->value);
            PUT_LIT(&w, "\r\n");
            break;
        case SIP_HDR_FROM:
            from = from ? from : h;
            break;
        case SIP_HDR_TO:
            to = to ? to : h;
            break;
        case SIP_HDR_CALL_ID:
            call_id = call_id ? call_id : h;
            break;
        case SIP_HDR_CSEQ:
            cseq = cseq ? cseq : h;
            break;
        default:
            break;
        }
    }
    if (from != NULL) {
        PUT_LIT(&w, "From: ");
        put_s(&w, from->value);
        PUT_LIT(&w, "\r\n");
    }
    if (to != NULL) {
        struct sip_name_addr na;
        PUT_LIT(&w, "To: ");
        put_s(&w, to->value);
        if (to_tag.len != 0 && sip_parse_name_addr(to->value, &na) == 0 && !na.has_tag) {
            PUT_LIT(&w, ";tag=");
            put_s(&w, to_tag);
        }
        PUT_LIT(&w, "\r\n");
    }
    if (call_id != NULL) {
        PUT_LIT(&w, "Call-ID: ");
        put_s(&w, call_id->value);
        PUT_LIT(&w, "\r\n");
    }
    if (cseq != NULL) {
        PUT_LIT(&w, "CSeq: ");
        put_s(&w, cseq->value);
        PUT_LIT(&w, "\r\n");
    }
    for (size_t i = 0; i < n_extra; i++) {
        put_s(&w, extra[i]);
        PUT_LIT(&w, "\r\n");
    }
    PUT_LIT(&w, "Content-Length: 0\r\n\r\n");
    if (w.over)
        return -ENOSPC;
    return w.p - out;
}

/* ---- gather lists -------------------------------------------------------------------------- */

struct gather {
    struct slice *iov;
    size_t n;
    size_t cap;
    bool over;
    const char *run_b; /* pending run of original bytes, merged while contiguous */
    const char *run_e;
};

static void g_flush(struct gather *g)
{
    if (g->run_b == NULL || g->run_e == g->run_b) {
        g->run_b = g->run_e = NULL;
        return;
    }
    if (g->n == g->cap)
        g->over = true;
    else
        g->iov[g->n++] = slice_make(g->run_b, (size_t)(g->run_e - g->run_b));
    g->run_b = g->run_e = NULL;
}

static void g_orig(struct gather *g, const char *b, const char *e)
{
    if (g->run_b != NULL && g->run_e == b) {
        g->run_e = e;
        return;
    }
    g_flush(g);
    g->run_b = b;
    g->run_e = e;
}

static void g_new(struct gather *g, const char *b, const char *e)
{
    if (e == b)
        return;
    g_flush(g);
    if (g->n == g->cap)
        g->over = true;
    else
        g->iov[g->n++] = slice_make(b, (size_t)(e - b));
}

static bool dropped(const struct sip_rewrite *rw, uint16_t id)
{
    for (size_t i = 0; i < rw->n_drop; i++)
        if (rw->drop[i] == id)
            return true;
    return false;
}

ssize_t sip_rewrite_request(const struct sip_msg *req, const struct sip_rewrite *rw,
                            struct slice *iov, size_t iov_cap, char *scratch, size_t scratch_cap)
{
    struct gather g = {iov, 0, iov_cap, false, NULL, NULL};
    struct writer w = {scratch, scratch + scratch_cap, false};
    const struct sip_header *mf = NULL;
    const char *start = msg_start(req), *top, *mark;
    bool path_done = rw->path.len == 0, mf_done = false;
    uint8_t hops = 0;

    if (!req->is_request || has_crlf(rw->via) || has_crlf(rw->path))
        return -EINVAL;
    if (rw->max_forwards) {
        for (size_t i = 0; i < req->header_count && mf == NULL; i++)
            if (req->headers[i].id == SIP_HDR_MAX_FORWARDS)
                mf = &req->headers[i];
        if (mf != NULL) {
            int r = sip_parse_max_forwards(mf->value, &hops);
            if (r < 0)
                return -EBADMSG;
            if (hops == 0)
                return -ELOOP;
        }
    }

    top = req->header_count != 0 ? req->headers[0].name.base : hdrs_end(req);
    g_orig(&g, start, top);

    mark = w.p;
    if (rw->via.len != 0) {
        PUT_LIT(&w, "Via: ");
        put_s(&w, rw->via);
        PUT_LIT(&w, "\r\n");
    }
    if (rw->max_forwards && mf == NULL) {
        PUT_LIT(&w, "Max-Forwards: 69\r\n");
        mf_done = true;
    }
    if (!w.over)
        g_new(&g, mark, w.p);

    for (size_t i = 0; i < req->header_count; i++) {
        const struct sip_header *h = &req->headers[i];
        struct slice line = line_of(req, h);

        if (rw->n_drop != 0 && dropped(rw, h->id))
            continue;
        if (rw->max_forwards && h->id == SIP_HDR_MAX_FORWARDS) {
            if (mf_done)
                continue; /* a second Max-Forwards line would contradict ours */
            mark = w.p;
            PUT_LIT(&w, "Max-Forwards: ");
            put_uint(&w, (unsigned)hops - 1);
            PUT_LIT(&w, "\r\n");
            if (!w.over)
                g_new(&g, mark, w.p);
            mf_done = true;
            continue;
        }
        if (!path_done && h->id == SIP_HDR_PATH) {
            mark = w.p;
            PUT_LIT(&w, "Path: ");
            put_s(&w, rw->path);
            PUT_LIT(&w, "\r\n");
            if (!w.over)
                g_new(&g, mark, w.p);
            path_done = true;
        }
        g_orig(&g, line.base, line.base + line.len);
    }
    if (!path_done) {
        mark = w.p;
        PUT_LIT(&w, "Path: ");
        put_s(&w, rw->path);
        PUT_LIT(&w, "\r\n");
        if (!w.over)
            g_new(&g, mark, w.p);
    }
    g_orig(&g, hdrs_end(req), msg_end(req));
    g_flush(&g);
    if (g.over || w.over)
        return -ENOSPC;
    return (ssize_t)g.n;
}

ssize_t sip_pop_via(const struct sip_msg *resp, struct slice *iov, size_t iov_cap,
                    struct slice *popped)
{
    const struct sip_header *via = NULL;
    const char *start = msg_start(resp), *cut_b, *cut_e, *p, *end;
    struct slice first;
    bool quoted = false;

    for (size_t i = 0; i < resp->header_count && via == NULL; i++)
        if (resp->headers[i].id == SIP_HDR_VIA)
            via = &resp->headers[i];
    if (via == NULL)
        return -ENOENT;
    if (iov_cap < 2)
        return -ENOSPC;

    /* the first value ends at the first comma outside a quoted string */
    p = via->value.base;
    end = p + via->value.len;
    for (; p < end; p++) {
        if (quoted && *p == '\\' && p + 1 < end)
            p++;
        else if (*p == '"')
            quoted = !quoted;
        else if (*p == ',' && !quoted)
            break;
    }
    first = slice_trim(slice_make(via->value.base, (size_t)(p - via->value.base)));
    struct slice line = line_of(resp, via);
    cut_b = line.base; /* one value: the whole line goes */
    cut_e = line.base + line.len;
    if (p < end) {
        const char *next = p + 1;
        while (next < end && (*next == ' ' || *next == '\t'))
            next++;
        if (next < end) {
            cut_b = via->value.base; /* "Via: a, b" -> "Via: b" */
            cut_e = next;
        }
    }
    if (popped != NULL)
        *popped = first;
    iov[0] = slice_make(start, (size_t)(cut_b - start));
    iov[1] = slice_make(cut_e, (size_t)(msg_end(resp) - cut_e));
    return 2;
}

size_t sip_iov_len(const struct slice *iov, size_t n)
{
    size_t t = 0;
    for (size_t i = 0; i < n; i++)
        t += iov[i].len;
    return t;
}
