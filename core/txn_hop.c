// SPDX-License-Identifier: MIT
// CANCEL and hop-by-hop ACK built from the forwarded INVITE (see core/txn_hop.h).
#include "core/txn_hop.h"
#include "core/writer.h"

#include <errno.h>
#include <string.h>

#include "core/sip_parse.h"

static const struct sip_header *hdr(const struct sip_msg *m, enum sip_hdr id)
{
    return sip_first(m, id);
}

/* The CSeq of `m` when it parses and names INVITE. */
static bool invite_cseq(const struct sip_msg *m, uint32_t *seq)
{
    const struct sip_header *h = hdr(m, SIP_HDR_CSEQ);
    struct sip_cseq c;

    if (h == NULL || sip_parse_cseq(h->value, &c) < 0 || c.method != SIP_METHOD_INVITE)
        return false;
    *seq = c.seq;
    return true;
}

static bool ack_response_ok(const struct sip_msg *resp, const struct sip_header *call_id,
                            uint32_t seq)
{
    const struct sip_header *rc = resp ? hdr(resp, SIP_HDR_CALL_ID) : NULL;
    uint32_t rseq;

    return resp != NULL && !resp->is_request && resp->status >= 300 && resp->status <= 699 &&
           hdr(resp, SIP_HDR_TO) != NULL && rc != NULL && slice_eq(rc->value, call_id->value) &&
           invite_cseq(resp, &rseq) && rseq == seq;
}

ssize_t txn_hop_build(const struct sip_msg *inv, enum sip_method method, const struct sip_msg *resp,
                      char *out, size_t cap)
{
    const struct sip_header *from = hdr(inv, SIP_HDR_FROM), *to = hdr(inv, SIP_HDR_TO);
    const struct sip_header *call_id = hdr(inv, SIP_HDR_CALL_ID);
    struct writer w = {out, out + cap, false};
    uint32_t seq;

    if (!inv->is_request || inv->method != SIP_METHOD_INVITE || inv->via_first.len == 0 ||
        from == NULL || to == NULL || call_id == NULL || !invite_cseq(inv, &seq))
        return -EINVAL;
    if (method == SIP_METHOD_ACK) {
        if (!ack_response_ok(resp, call_id, seq))
            return -EINVAL;
        to = hdr(resp, SIP_HDR_TO);
    } else if (method != SIP_METHOD_CANCEL) {
        return -EINVAL;
    }
    const char *name = sip_method_name(method);

    put(&w, name, strlen(name));
    PUT_LIT(&w, " ");
    put_s(&w, inv->uri);
    PUT_LIT(&w, " SIP/2.0\r\nVia: ");
    put_s(&w, inv->via_first);
    PUT_LIT(&w, "\r\n");
    for (size_t i = 0; i < inv->header_count; i++) {
        if (inv->headers[i].id != SIP_HDR_ROUTE || inv->headers[i].value.len == 0)
            continue;
        PUT_LIT(&w, "Route: ");
        put_s(&w, inv->headers[i].value);
        PUT_LIT(&w, "\r\n");
    }
    PUT_LIT(&w, "Max-Forwards: 70\r\nFrom: ");
    put_s(&w, from->value);
    PUT_LIT(&w, "\r\nTo: ");
    put_s(&w, to->value);
    PUT_LIT(&w, "\r\nCall-ID: ");
    put_s(&w, call_id->value);
    PUT_LIT(&w, "\r\nCSeq: ");
    put_uint(&w, seq);
    PUT_LIT(&w, " ");
    put(&w, name, strlen(name));
    PUT_LIT(&w, "\r\nContent-Length: 0\r\n\r\n");
    return w.over ? -ENOSPC : (ssize_t)(w.p - out);
}
