// SPDX-License-Identifier: MIT
// Request checks shared by the proxy and sipedge-scan (RFC 3261 §8.2, §16.3): header cardinality,
// the headers the edge relies on, Request-URI, Max-Forwards, option-tags, then the method.
#include "core/sip_check.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/sip_parse.h"
#include "core/sip_priv.h"

/* True when `v` holds a comma outside a quoted string (with quoted-pairs) and outside <...>. */
static bool has_top_comma(struct slice v)
{
    const char *p = v.base, *e = v.base + v.len;
    bool angle = false;
    for (; p < e; p++) {
        if (*p == '"' && !angle) {
            for (p++; p < e && *p != '"'; p++)
                if (*p == '\\' && p + 1 < e)
                    p++;
            if (p == e) /* unterminated: malformed anyway, and a comma may hide behind it */
                return memchr(v.base, ',', v.len) != NULL;
        } else if (*p == '<') {
            angle = true;
        } else if (*p == '>') {
            angle = false;
        } else if (*p == ',' && !angle) {
            return true;
        }
    }
    return false;
}

enum sip_hdr sip_check_single(const struct sip_msg *msg)
{
    uint8_t seen[SIP_HDR_COUNT] = {0};
    for (size_t i = 0; i < msg->header_count; i++) {
        const struct sip_header *h = &msg->headers[i];
        unsigned id = h->id < SIP_HDR_COUNT ? h->id : SIP_HDR_OTHER;
        unsigned card = sip__hdr_card[id];
        if (card == SIP_HDR_CARD_MANY)
            continue;
        /* most values hold no comma at all: memchr first, the quote-aware walk only then */
        if (seen[id]++ || (card == SIP_HDR_CARD_ONE && memchr(h->value.base, ',', h->value.len) &&
                           has_top_comma(h->value)))
            return (enum sip_hdr)id;
    }
    return SIP_HDR_OTHER;
}

/* ---- the verdict --------------------------------------------------------------------------- */

static void answer(struct sip_verdict *v, int status, const char *reason)
{
    v->action = SIP_CHECK_ANSWER;
    v->status = status;
    v->reason = reason;
}

/* Answer `status` with the reason "<what> <header name>" ("Duplicate To"), kept in v->buf. */
static void answer_hdr(struct sip_verdict *v, int status, const char *what, enum sip_hdr id)
{
    snprintf(v->buf, sizeof(v->buf), "%s %s", what, sip_hdr_name(id));
    answer(v, status, v->buf);
}

static bool is_token(struct slice s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.base[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("-.!%*_+`'~", c) != NULL) ||
            c == 0)
            return false;
    }
    return true;
}

static bool tag_supported(struct slice tag)
{
    static const struct slice supported[] = {SLICE_LIT(SIP_CHECK_SUPPORTED)};
    for (size_t i = 0; i < sizeof(supported) / sizeof(supported[0]); i++)
        if (slice_eqi(tag, supported[i]))
            return true;
    return false;
}

/* 420 with "Unsupported: <every tag of header `id` we lack>" (RFC 3261 §8.2.2.3, §20.40); false
 * when every tag is supported. A value that is no token is listed too (bounded, as written). */
static bool check_option_tags(const struct sip_msg *msg, enum sip_hdr id, struct sip_verdict *v)
{
    struct sip_value_iter it;
    struct slice tag;
    size_t n = 0, cap = sizeof(v->buf);
    bool any = false;
    sip_values_begin(&it, msg, id);
    while (sip_values_next(&it, &tag)) {
        if (is_token(tag) && tag_supported(tag))
            continue;
        if (!any)
            n = (size_t)snprintf(v->buf, cap, "Unsupported: ");
        else if (n + 2 < cap)
            n += (size_t)snprintf(v->buf + n, cap - n, ", ");
        for (size_t i = 0; i < tag.len && n + 1 < cap; i++) {
            unsigned char c = (unsigned char)tag.base[i];
            v->buf[n++] = c < 0x20 || c == 0x7f ? '?' : (char)c; /* never inject a line */
        }
        any = true;
    }
    if (!any)
        return false;
    v->buf[n < cap ? n : cap - 1] = '\0';
    answer(v, 420, "Bad Extension");
    v->extra[0] = slice_make(v->buf, strlen(v->buf));
    v->n_extra = 1;
    return true;
}

/* Via, From, To, Call-ID, CSeq: present, CSeq matching the method, and parseable where the edge
 * reads them (RFC 3261 §8.1.1, §16.3 step 1). False with `v` set at the first fault. */
static bool check_headers(const struct sip_msg *msg, struct sip_verdict *v)
{
    static const enum sip_hdr required[] = {SIP_HDR_VIA, SIP_HDR_FROM, SIP_HDR_TO, SIP_HDR_CALL_ID,
                                            SIP_HDR_CSEQ};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (sip_first(msg, required[i]) == NULL) {
            answer_hdr(v, 400, "Missing", required[i]);
            return false;
        }
    }
    struct sip_cseq cseq;
    if (sip_parse_cseq(sip_first(msg, SIP_HDR_CSEQ)->value, &cseq) < 0 ||
        !slice_eq(cseq.method_text, msg->method_text)) {
        answer(v, 400, "Bad CSeq");
        return false;
    }
    struct sip_via via;
    struct sip_name_addr na;
    if (msg->via_count == 0 || sip_parse_via(msg->via_first, &via) < 0) {
        answer(v, 400, "Bad Via");
        return false;
    }
    if (sip_parse_name_addr(sip_first(msg, SIP_HDR_FROM)->value, &na) < 0 || na.star) {
        answer(v, 400, "Bad From");
        return false;
    }
    if (sip_parse_name_addr(sip_first(msg, SIP_HDR_TO)->value, &na) < 0 || na.star) {
        answer(v, 400, "Bad To");
        return false;
    }
    return true;
}

/* An OPTIONS the edge answers itself: one with no Route whose Request-URI names no user (a
 * keep-alive or capability query to the server it is connected to). One with a user part
 * (sip:bob@...) or a Route is for someone behind the edge and is proxied. */
static bool options_is_local(const struct sip_msg *msg)
{
    struct sip_uri uri;
    return sip_first(msg, SIP_HDR_ROUTE) == NULL && sip_parse_uri(msg->uri, &uri) == 0 &&
           !uri.has_user;
}

/* The Request-URI (RFC 3261 §16.3 step 2, §8.2.2.1) and Max-Forwards (§16.3 step 3). */
static bool check_uri_and_hops(const struct sip_msg *msg, struct sip_verdict *v)
{
    enum sip_method m = msg->method;
    struct sip_uri uri;
    int r = sip_parse_uri(msg->uri, &uri);
    if (r == 0 &&
        (uri.kind == SIP_URI_OTHER ||
         (uri.kind == SIP_URI_TEL && (m == SIP_METHOD_OPTIONS || m == SIP_METHOD_REGISTER)))) {
        answer(v, 416, "Unsupported URI Scheme");
        return false;
    }
    if (r < 0 || uri.has_password) {
        answer(v, 400, "Bad Request-URI");
        return false;
    }
    const struct sip_header *mf = sip_first(msg, SIP_HDR_MAX_FORWARDS);
    uint8_t hops;
    if (mf != NULL && sip_parse_max_forwards(mf->value, &hops) < 0) {
        answer(v, 400, "Bad Max-Forwards");
        return false;
    }
    /* OPTIONS to the edge is answered at any Max-Forwards (RFC 3261 §16.3 step 3 lets a proxy
     * act as the UAS of an OPTIONS at zero); everything else would be forwarded. */
    if (mf != NULL && hops == 0 && m != SIP_METHOD_OPTIONS) {
        answer(v, 483, "Too Many Hops");
        return false;
    }
    return true;
}

/* The credentials of a REGISTER (`register_`) or of a request to forward (FORWARD, with its own
 * Bearer when it carries one, RFC 8898). */
static void check_credentials(const struct sip_msg *msg, struct slice realm, bool register_,
                              struct sip_verdict *v)
{
    enum sip_method m = msg->method;
    int r = !register_ && (m == SIP_METHOD_ACK || m == SIP_METHOD_CANCEL)
                ? -SIP_CRED_NONE
                : sip_find_bearer(msg, realm, &v->cred);
    if (r == -SIP_CRED_CONFLICT) {
        answer(v, 400, sip_perr_reason(-r));
    } else if (r == 0) {
        v->action = register_ ? SIP_CHECK_AUTH : SIP_CHECK_FORWARD;
        v->has_cred = !register_;
    } else if (!register_ && (r == -SIP_CRED_NONE || r == -SIP_CRED_NOT_BEARER)) {
        v->action = SIP_CHECK_FORWARD; /* the connection's binding decides (core/policy.h) */
    } else {
        v->action = SIP_CHECK_CHALLENGE;
        v->status = 407;
        /* a malformed Bearer, or one for another realm, is an invalid token */
        v->error = r == -SIP_CRED_NONE || r == -SIP_CRED_NOT_BEARER ? NULL : "invalid_token";
    }
}

/* The checks of a request from a client, or (`from_ucm`) from UCM: no credentials there, its
 * mutual TLS vouches for it. */
static void check_request(const struct sip_msg *msg, struct slice realm, bool from_ucm,
                          struct sip_verdict *v)
{
    memset(v, 0, offsetof(struct sip_verdict, cred));
    v->buf[0] = '\0';
    enum sip_method m = msg->method;
    if (!msg->is_request) {
        v->action = SIP_CHECK_DROP;
        return;
    }
    enum sip_hdr dup = sip_check_single(msg);
    if (dup != SIP_HDR_OTHER)
        answer_hdr(v, 400, "Duplicate", dup);
    else if (!check_headers(msg, v) || !check_uri_and_hops(msg, v))
        ;
    else if (m != SIP_METHOD_ACK && m != SIP_METHOD_CANCEL &&
             check_option_tags(msg, SIP_HDR_PROXY_REQUIRE, v))
        ;
    else if (m == SIP_METHOD_OPTIONS && options_is_local(msg)) {
        if (!check_option_tags(msg, SIP_HDR_REQUIRE, v)) {
            answer(v, 200, "OK");
            v->extra[0] = SLICE_LIT("Allow: " SIP_CHECK_ALLOW);
            v->extra[1] = SLICE_LIT("Supported: " SIP_CHECK_SUPPORTED);
            v->n_extra = 2;
        }
    } else if (from_ucm) {
        v->action = SIP_CHECK_FORWARD;
    } else {
        /* REGISTER needs a token; every other method, known or not, is proxied (RFC 3261 §16) */
        check_credentials(msg, realm, m == SIP_METHOD_REGISTER, v);
    }
    if (m == SIP_METHOD_ACK && v->action != SIP_CHECK_FORWARD) {
        /* never answered (RFC 3261 17.2.3), valid or not: a bad one is dropped */
        memset(v, 0, offsetof(struct sip_verdict, cred));
        v->action = SIP_CHECK_DROP;
    }
}

void sip_check_request(const struct sip_msg *msg, struct slice realm, struct sip_verdict *v)
{
    check_request(msg, realm, false, v);
}

void sip_check_ucm_request(const struct sip_msg *msg, struct sip_verdict *v)
{
    check_request(msg, SLICE_LIT(""), true, v);
}

/* "SIP/<digits>.<digits>" in any case of "SIP": a version, if not ours (RFC 3261 §21.5.6). */
static bool is_other_version(struct slice s)
{
    const char *p = s.base, *e = s.base + s.len;
    if (s.len < 7 || (p[0] | 0x20) != 's' || (p[1] | 0x20) != 'i' || (p[2] | 0x20) != 'p' ||
        p[3] != '/')
        return false;
    p += 4;
    const char *d = p;
    while (p < e && *p >= '0' && *p <= '9')
        p++;
    if (p == d || p == e || *p != '.')
        return false;
    d = ++p;
    while (p < e && *p >= '0' && *p <= '9')
        p++;
    return p != d && p == e;
}

void sip_check_garbage(const struct sip_msg *msg, struct sip_verdict *v)
{
    memset(v, 0, offsetof(struct sip_verdict, cred));
    v->buf[0] = '\0';
    v->action = SIP_CHECK_CLOSE;
    if (!msg->is_request || msg->method == SIP_METHOD_ACK)
        return;
    static const enum sip_hdr required[] = {SIP_HDR_VIA, SIP_HDR_FROM, SIP_HDR_TO, SIP_HDR_CALL_ID,
                                            SIP_HDR_CSEQ};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (sip_first(msg, required[i]) == NULL)
            return;
    if (msg->err == SIP_E_BAD_VERSION && is_other_version(msg->version))
        answer(v, 505, "Version Not Supported");
    else
        answer(v, msg->err == SIP_E_TOO_LARGE ? 513 : 400, sip_err_reason(msg->err));
}

const char *sip_check_action_name(enum sip_check_action a)
{
    static const char *const names[SIP_CHECK_ACTION_COUNT] = {"answer", "challenge", "auth",
                                                              "drop",   "close",     "forward"};
    return (unsigned)a < SIP_CHECK_ACTION_COUNT ? names[a] : "";
}
