// SPDX-License-Identifier: MIT
// Zero-copy sub-parsers for SIP header values: one pass over the bytes, character classes from a
// compile-time table, results as slices into the caller's buffer. See core/sip_parse.h.
#include "core/sip_parse.h"

#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ---- character classes --------------------------------------------------------------------
 * One 16-bit mask per byte, computed by the compiler from the RFC 3261 §25 rules below so the
 * table cannot drift from the grammar it encodes. */

enum {
    C_TOKEN = 1u << 0,   /* token: alphanum - . ! % * _ + ` ' ~ */
    C_UNRES = 1u << 1,   /* unreserved: alphanum mark */
    C_USER = 1u << 2,    /* unreserved + user-unreserved (escapes apart) */
    C_PASS = 1u << 3,    /* unreserved + & = + $ , */
    C_PARAM = 1u << 4,   /* paramchar: unreserved + [ ] / : & + $ */
    C_HNV = 1u << 5,     /* URI header name/value: unreserved + [ ] / ? : + $ */
    C_HOST = 1u << 6,    /* hostname / IPv4 bytes: alphanum - . */
    C_DIGIT = 1u << 7,   /* 0-9 */
    C_HEX = 1u << 8,     /* 0-9 a-f A-F */
    C_T68 = 1u << 9,     /* token68 body: alphanum - . _ ~ + / */
    C_QD = 1u << 10,     /* qdtext: SP HT %x21 %x23-5B %x5D-7E UTF8-NONASCII */
    C_WS = 1u << 11,     /* SP HT */
    C_HVAL = 1u << 12,   /* unquoted header param value: token + [ ] : (gen-value host) */
    C_SCHEME = 1u << 13, /* scheme after its first letter: alphanum + - . */
    C_TEL = 1u << 14,    /* tel: number: hex digits - . ( ) + * # */
    C_OPAQUE = 1u << 15, /* other-scheme bytes: visible ASCII but < > " */
};

#define IS_LOWER(c) ((c) >= 'a' && (c) <= 'z')
#define IS_UPPER(c) ((c) >= 'A' && (c) <= 'Z')
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define IS_ALNUM(c) (IS_LOWER(c) || IS_UPPER(c) || IS_DIGIT(c))
#define IS_HEX(c)   (IS_DIGIT(c) || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F'))
#define IS_MARK(c)                                                                                 \
    ((c) == '-' || (c) == '_' || (c) == '.' || (c) == '!' || (c) == '~' || (c) == '*' ||           \
     (c) == '\'' || (c) == '(' || (c) == ')')
#define IS_UNRES(c) (IS_ALNUM(c) || IS_MARK(c))
#define IS_TOKEN(c)                                                                                \
    (IS_ALNUM(c) || (c) == '-' || (c) == '.' || (c) == '!' || (c) == '%' || (c) == '*' ||          \
     (c) == '_' || (c) == '+' || (c) == '`' || (c) == '\'' || (c) == '~')
#define IS_USER(c)                                                                                 \
    (IS_UNRES(c) || (c) == '&' || (c) == '=' || (c) == '+' || (c) == '$' || (c) == ',' ||          \
     (c) == ';' || (c) == '?' || (c) == '/')
#define IS_PASS(c)                                                                                 \
    (IS_UNRES(c) || (c) == '&' || (c) == '=' || (c) == '+' || (c) == '$' || (c) == ',')
#define IS_PARAM(c)                                                                                \
    (IS_UNRES(c) || (c) == '[' || (c) == ']' || (c) == '/' || (c) == ':' || (c) == '&' ||          \
     (c) == '+' || (c) == '$')
#define IS_HNV(c)                                                                                  \
    (IS_UNRES(c) || (c) == '[' || (c) == ']' || (c) == '/' || (c) == '?' || (c) == ':' ||          \
     (c) == '+' || (c) == '$')
#define IS_HOST(c) (IS_ALNUM(c) || (c) == '-' || (c) == '.')
#define IS_T68(c)                                                                                  \
    (IS_ALNUM(c) || (c) == '-' || (c) == '.' || (c) == '_' || (c) == '~' || (c) == '+' ||          \
     (c) == '/')
#define IS_QD(c)                                                                                   \
    ((c) == ' ' || (c) == '\t' || (c) == 0x21 || ((c) >= 0x23 && (c) <= 0x5b) ||                   \
     ((c) >= 0x5d && (c) <= 0x7e) || (c) >= 0x80)
#define IS_WS(c)     ((c) == ' ' || (c) == '\t')
#define IS_HVAL(c)   (IS_TOKEN(c) || (c) == '[' || (c) == ']' || (c) == ':')
#define IS_SCHEME(c) (IS_ALNUM(c) || (c) == '+' || (c) == '-' || (c) == '.')
#define IS_TEL(c)                                                                                  \
    (IS_HEX(c) || (c) == '-' || (c) == '.' || (c) == '(' || (c) == ')' || (c) == '+' ||            \
     (c) == '*' || (c) == '#')
#define IS_OPAQUE(c) ((c) > 0x20 && (c) < 0x7f && (c) != '<' && (c) != '>' && (c) != '"')

#define CLS(c)                                                                                     \
    (uint16_t)((IS_TOKEN(c) ? C_TOKEN : 0) | (IS_UNRES(c) ? C_UNRES : 0) |                         \
               (IS_USER(c) ? C_USER : 0) | (IS_PASS(c) ? C_PASS : 0) |                             \
               (IS_PARAM(c) ? C_PARAM : 0) | (IS_HNV(c) ? C_HNV : 0) | (IS_HOST(c) ? C_HOST : 0) | \
               (IS_DIGIT(c) ? C_DIGIT : 0) | (IS_HEX(c) ? C_HEX : 0) | (IS_T68(c) ? C_T68 : 0) |   \
               (IS_QD(c) ? C_QD : 0) | (IS_WS(c) ? C_WS : 0) | (IS_HVAL(c) ? C_HVAL : 0) |         \
               (IS_SCHEME(c) ? C_SCHEME : 0) | (IS_TEL(c) ? C_TEL : 0) |                           \
               (IS_OPAQUE(c) ? C_OPAQUE : 0))
#define R4(b)  CLS(b), CLS((b) + 1), CLS((b) + 2), CLS((b) + 3)
#define R16(b) R4(b), R4((b) + 4), R4((b) + 8), R4((b) + 12)
#define R64(b) R16(b), R16((b) + 16), R16((b) + 32), R16((b) + 48)

static const uint16_t cls[256] = {R64(0), R64(64), R64(128), R64(192)};

static inline bool is(const char *p, uint16_t mask)
{
    return (cls[(unsigned char)*p] & mask) != 0;
}

/* Advance over bytes of class `mask` (and %HH escapes when `esc`); NULL on a broken escape. */
static inline const char *span(const char *p, const char *end, uint16_t mask, bool esc)
{
    while (p < end) {
        if (is(p, mask)) {
            p++;
        } else if (esc && *p == '%') {
            if (end - p < 3 || !is(p + 1, C_HEX) || !is(p + 2, C_HEX))
                return NULL;
            p += 3;
        } else {
            break;
        }
    }
    return p;
}

static inline const char *skip_ws(const char *p, const char *end)
{
    while (p < end && is(p, C_WS))
        p++;
    return p;
}

/* First `c` in [p, end) or NULL; tolerates p == end. */
static inline const char *find(const char *p, const char *end, char c)
{
    return p < end ? memchr(p, c, (size_t)(end - p)) : NULL;
}

static inline struct slice mk(const char *b, const char *e)
{
    return (struct slice){b, (size_t)(e - b)};
}

/* `s` equals `lit` ignoring case; `lit` is lower-case letters only, which makes OR-ing 0x20 an
 * exact case fold (no libc call: these compares run several times per header value). */
static inline bool name_is(struct slice s, const char *lit, size_t n)
{
    if (s.len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((s.base[i] | 0x20) != lit[i])
            return false;
    return true;
}
#define NAME_IS(s, lit) name_is((s), (lit), sizeof(lit) - 1)

/* `p` at '"': the byte after the closing quote, or NULL (unterminated, CR/LF/NUL/CTL inside).
 * Quoted strings carry the bulk of a request's value bytes (a JWT in token="..."), so runs of
 * plain qdtext are skipped 16 bytes at a time where SSE2 exists (all x86-64); the scalar loop
 * decides every byte the vector test stops at, so both paths accept the same strings. */
static const char *scan_quoted(const char *p, const char *end)
{
    p++;
    for (;;) {
#if defined(__SSE2__)
        const __m128i dq = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
        const __m128i ctl = _mm_set1_epi8(0x1f), del = _mm_set1_epi8(0x7f);
        while (end - p >= 16) {
            __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
            __m128i stop = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(x, dq), _mm_cmpeq_epi8(x, bs)),
                _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(x, ctl), x), _mm_cmpeq_epi8(x, del)));
            unsigned m = (unsigned)_mm_movemask_epi8(stop);
            if (m != 0) {
                p += __builtin_ctz(m);
                break;
            }
            p += 16;
        }
#endif
        if (p >= end)
            return NULL;
        if (*p == '"')
            return p + 1;
        if (*p == '\\') {
            unsigned char n;
            if (++p == end)
                return NULL;
            n = (unsigned char)*p;
            if (n == '\r' || n == '\n' || n > 0x7f)
                return NULL;
        } else if (!is(p, C_QD)) {
            return NULL;
        }
        p++;
    }
}

/* ---- errors ----------------------------------------------------------------------------- */

static const char *const perr_reasons[] = {
#define SIP_PERR_REASON(n, s, r) r,
    SIP_PARSE_ERRORS(SIP_PERR_REASON)
#undef SIP_PERR_REASON
};
static const char *const perr_names[] = {
#define SIP_PERR_NAME(n, s, r) s,
    SIP_PARSE_ERRORS(SIP_PERR_NAME)
#undef SIP_PERR_NAME
};

const char *sip_perr_reason(int e)
{
    if (e < 0)
        e = -e;
    return e < SIP_PE_COUNT ? perr_reasons[e] : "Unknown";
}

const char *sip_perr_name(int e)
{
    if (e < 0)
        e = -e;
    return e < SIP_PE_COUNT ? perr_names[e] : "unknown";
}

/* ---- parameters ------------------------------------------------------------------------- */

void sip_params_begin(struct sip_param_iter *it, struct slice s, enum sip_param_mode mode)
{
    it->p = s.base;
    it->end = s.base != NULL ? s.base + s.len : NULL;
    it->mode = mode;
}

static int param_fail(struct sip_param_iter *it, int err)
{
    it->p = it->end;
    return -err;
}

int sip_params_next(struct sip_param_iter *it, struct sip_param *out)
{
    const char *p = it->p, *end = it->end, *q;
    bool hdr = it->mode == SIP_PARAM_HEADER;

    if (p == NULL)
        return 0;
    if (hdr)
        p = skip_ws(p, end);
    if (p >= end) {
        it->p = end;
        return 0;
    }
    if (*p != ';')
        return param_fail(it, SIP_PE_BAD_PARAM);
    p++;
    if (hdr)
        p = skip_ws(p, end);
    q = p;
    p = hdr ? span(p, end, C_TOKEN, false) : span(p, end, C_PARAM, true);
    if (p == NULL || p == q)
        return param_fail(it, SIP_PE_BAD_PARAM);
    out->name = mk(q, p);
    out->value = SLICE_NULL;
    out->has_value = false;
    out->quoted = false;

    q = hdr ? skip_ws(p, end) : p;
    if (q < end && *q == '=') {
        p = hdr ? skip_ws(q + 1, end) : q + 1;
        out->has_value = true;
        if (hdr && p < end && *p == '"') {
            q = scan_quoted(p, end);
            if (q == NULL)
                return param_fail(it, SIP_PE_BAD_QUOTE);
            out->value = mk(p + 1, q - 1);
            out->quoted = true;
            p = q;
        } else {
            q = p;
            p = hdr ? span(p, end, C_HVAL, false) : span(p, end, C_PARAM, true);
            if (p == NULL || p == q)
                return param_fail(it, SIP_PE_BAD_PARAM);
            out->value = mk(q, p);
        }
    }
    q = hdr ? skip_ws(p, end) : p;
    if (q < end && *q != ';')
        return param_fail(it, SIP_PE_BAD_PARAM);
    it->p = q;
    return 1;
}

int sip_params_check(struct slice s, enum sip_param_mode mode)
{
    struct sip_param_iter it;
    struct sip_param prm;
    int r;

    sip_params_begin(&it, s, mode);
    while ((r = sip_params_next(&it, &prm)) > 0)
        ;
    return r;
}

/* ---- numbers and hosts ----------------------------------------------------------------- */

/* Decimal digits in [p, end) into *out; 0, -SIP_PE_BAD_NUMBER or -SIP_PE_OUT_OF_RANGE (> max). */
static int parse_uint(const char *p, const char *end, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    bool over = false;

    if (p == end)
        return -SIP_PE_BAD_NUMBER;
    for (; p < end; p++) {
        if (!is(p, C_DIGIT))
            return -SIP_PE_BAD_NUMBER;
        if (!over) {
            v = v * 10 + (uint64_t)(*p - '0');
            over = v > max;
        }
    }
    if (over)
        return -SIP_PE_OUT_OF_RANGE;
    *out = v;
    return 0;
}

static bool ipv4_ok(const char *p, const char *end)
{
    int parts = 0;

    for (;;) {
        const char *s = p;
        unsigned v = 0;
        while (p < end && is(p, C_DIGIT) && p - s < 3)
            v = v * 10 + (unsigned)(*p++ - '0');
        if (p == s || v > 255 || (p < end && is(p, C_DIGIT)))
            return false;
        if (++parts == 4)
            return p == end;
        if (p == end || *p != '.')
            return false;
        p++;
    }
}

/* RFC 4291 text form without brackets: up to 8 groups, one "::", an optional IPv4 tail. */
static bool ipv6_ok(const char *p, const char *end)
{
    int groups = 0;
    bool dbl = false;

    if (end - p >= 2 && p[0] == ':' && p[1] == ':') {
        dbl = true;
        p += 2;
        if (p == end)
            return true;
    }
    for (;;) {
        const char *s = p;
        while (p < end && is(p, C_HEX) && p - s < 5)
            p++;
        if (p < end && *p == '.') {
            if (!ipv4_ok(s, end))
                return false;
            groups += 2;
            break;
        }
        if (p == s || p - s > 4)
            return false;
        groups++;
        if (p == end)
            break;
        if (*p != ':')
            return false;
        p++;
        if (p < end && *p == ':') {
            if (dbl)
                return false;
            dbl = true;
            p++;
            if (p == end)
                break;
        } else if (p == end) {
            return false;
        }
        if (groups > 8)
            return false;
    }
    return dbl ? groups <= 7 : groups == 8;
}

/* A host at `p`: IPv6 reference, IPv4 or hostname. Returns the byte after it or NULL. */
static const char *parse_host(const char *p, const char *end, struct slice *host,
                              enum sip_host_kind *kind)
{
    const char *s = p;

    if (p < end && *p == '[') {
        const char *close = find(p, end, ']');
        if (close == NULL || close - p > 47 || !ipv6_ok(p + 1, close))
            return NULL;
        *host = mk(p, close + 1);
        *kind = SIP_HOST_IPV6;
        return close + 1;
    }
    bool numeric = true, prev_dot = true;
    while (p < end && is(p, C_HOST)) {
        if (*p == '.') {
            if (prev_dot)
                return NULL; /* leading dot or ".." */
            prev_dot = true;
        } else {
            if (prev_dot && *p == '-')
                return NULL; /* label starting with '-' */
            prev_dot = false;
            if (!is(p, C_DIGIT))
                numeric = false;
        }
        p++;
    }
    if (p == s)
        return NULL;
    if (numeric) {
        if (!ipv4_ok(s, p))
            return NULL;
        *kind = SIP_HOST_IPV4;
    } else {
        *kind = SIP_HOST_NAME;
    }
    *host = mk(s, p);
    return p;
}

/* `p` just after ':': 1..65535 into *port. Returns the byte after the digits or NULL. */
static const char *parse_port(const char *p, const char *end, uint16_t *port)
{
    const char *s = p;
    uint64_t v;

    while (p < end && is(p, C_DIGIT) && p - s < 6)
        p++;
    if (parse_uint(s, p, 65535, &v) != 0 || v == 0)
        return NULL;
    *port = (uint16_t)v;
    return p;
}

/* ---- URI --------------------------------------------------------------------------------- */

static int uri_params(struct sip_uri *out)
{
    struct sip_param_iter it;
    struct sip_param prm;
    int r;

    sip_params_begin(&it, out->params, SIP_PARAM_URI);
    while ((r = sip_params_next(&it, &prm)) > 0) {
        if (NAME_IS(prm.name, "transport") && out->transport.base == NULL)
            out->transport = prm.value;
        else if (NAME_IS(prm.name, "maddr") && out->maddr.base == NULL)
            out->maddr = prm.value;
        else if (NAME_IS(prm.name, "user") && out->user_param.base == NULL)
            out->user_param = prm.value;
        else if (NAME_IS(prm.name, "lr"))
            out->lr = true;
    }
    return r;
}

int sip_parse_uri(struct slice s, struct sip_uri *out)
{
    const char *p = s.base, *end = s.base + s.len, *q, *at, *qm;
    int r;

    memset(out, 0, sizeof(*out));
    if (s.len == 0)
        return -SIP_PE_EMPTY;
    if (!IS_LOWER(*p) && !IS_UPPER(*p))
        return -SIP_PE_BAD_SCHEME;
    q = span(p + 1, end, C_SCHEME, false);
    if (q == end || *q != ':')
        return -SIP_PE_BAD_SCHEME;
    out->scheme = mk(p, q);
    p = q + 1;
    out->opaque = mk(p, end);

    if (NAME_IS(out->scheme, "sip")) {
        out->kind = SIP_URI_SIP;
    } else if (NAME_IS(out->scheme, "sips")) {
        out->kind = SIP_URI_SIPS;
    } else if (NAME_IS(out->scheme, "tel")) {
        out->kind = SIP_URI_TEL;
        q = span(p, end, C_TEL, false);
        if (q == p)
            return -SIP_PE_BAD_URI;
        out->user = mk(p, q);
        out->has_user = true;
        out->params = mk(q, end);
        return uri_params(out);
    } else {
        out->kind = SIP_URI_OTHER;
        if (p == end || span(p, end, C_OPAQUE, false) != end)
            return -SIP_PE_BAD_URI;
        return 0;
    }
    out->opaque = SLICE_NULL;

    at = find(p, end, '@');
    if (at != NULL) {
        q = span(p, at, C_USER, true);
        if (q == NULL || q == p)
            return -SIP_PE_BAD_URI;
        out->user = mk(p, q);
        out->has_user = true;
        if (q < at) {
            if (*q != ':')
                return -SIP_PE_BAD_URI;
            p = q + 1;
            q = span(p, at, C_PASS, true);
            if (q != at)
                return -SIP_PE_BAD_URI;
            out->password = mk(p, q);
            out->has_password = true;
        }
        p = at + 1;
    }
    p = parse_host(p, end, &out->host, &out->host_kind);
    if (p == NULL)
        return -SIP_PE_BAD_HOST;
    if (p < end && *p == ':') {
        p = parse_port(p + 1, end, &out->port);
        if (p == NULL)
            return -SIP_PE_BAD_PORT;
        out->has_port = true;
    }
    qm = find(p, end, '?');
    if (qm == NULL)
        qm = end;
    if (p < qm) {
        if (*p != ';')
            return p < end && !is(p, C_PARAM) ? -SIP_PE_BAD_URI : -SIP_PE_BAD_HOST;
        out->params = mk(p, qm);
        if ((r = uri_params(out)) < 0)
            return r;
    }
    if (qm < end) {
        /* headers = hname "=" hvalue *("&" hname "=" hvalue), both may hold escapes */
        p = qm + 1;
        q = p;
        while (p < end) {
            const char *n = span(p, end, C_HNV, true);
            if (n == NULL || n == p || n == end || *n != '=')
                return -SIP_PE_BAD_URI;
            p = span(n + 1, end, C_HNV, true);
            if (p == NULL)
                return -SIP_PE_BAD_URI;
            if (p < end) {
                if (*p != '&' || p + 1 == end)
                    return -SIP_PE_BAD_URI;
                p++;
            }
        }
        if (q == end)
            return -SIP_PE_BAD_URI;
        out->headers = mk(q, end);
    }
    return 0;
}

/* ---- name-addr / addr-spec ----------------------------------------------------------------- */

int sip_parse_name_addr(struct slice s, struct sip_name_addr *out)
{
    struct sip_param_iter it;
    struct sip_param prm;
    const char *p, *end, *q, *gt;
    int r;

    memset(out, 0, sizeof(*out));
    s = slice_trim(s);
    if (s.len == 0)
        return -SIP_PE_EMPTY;
    p = s.base;
    end = s.base + s.len;
    if (s.len == 1 && *p == '*') {
        out->star = true;
        return 0;
    }

    if (*p == '"') {
        q = scan_quoted(p, end);
        if (q == NULL)
            return -SIP_PE_BAD_QUOTE;
        out->display = mk(p + 1, q - 1);
        out->display_quoted = true;
        p = skip_ws(q, end);
        if (p == end || *p != '<')
            return -SIP_PE_BAD_NAME_ADDR;
    } else if (*p != '<') {
        /* *(token LWS) "<" or an addr-spec: decided by the first byte that is no token/LWS */
        q = p;
        while (q < end && is(q, C_TOKEN | C_WS))
            q++;
        if (q < end && *q == '<') {
            struct slice d = slice_trim(mk(p, q));
            out->display = d;
            p = q;
        }
    }

    if (*p == '<') {
        out->angle = true;
        gt = find(p + 1, end, '>');
        if (gt == NULL)
            return -SIP_PE_BAD_NAME_ADDR;
        out->uri_text = mk(p + 1, gt);
        p = gt + 1;
    } else {
        /* RFC 3261 §20.10: a bare addr-spec ends at the first ';' (which starts the params) */
        q = p;
        while (q < end && *q != ';' && !is(q, C_WS))
            q++;
        out->uri_text = mk(p, q);
        p = q;
    }
    if ((r = sip_parse_uri(out->uri_text, &out->uri)) < 0)
        return r;

    p = skip_ws(p, end);
    if (p < end && *p != ';')
        return -SIP_PE_BAD_NAME_ADDR;
    out->params = mk(p, end);
    sip_params_begin(&it, out->params, SIP_PARAM_HEADER);
    while ((r = sip_params_next(&it, &prm)) > 0) {
        if (NAME_IS(prm.name, "tag")) {
            if (out->has_tag || !prm.has_value || prm.quoted)
                return -SIP_PE_BAD_PARAM;
            out->tag = prm.value;
            out->has_tag = true;
        } else if (NAME_IS(prm.name, "expires") && out->expires.base == NULL) {
            out->expires = prm.value;
        } else if (NAME_IS(prm.name, "q") && out->q.base == NULL) {
            out->q = prm.value;
        }
    }
    return r;
}

/* ---- Via ----------------------------------------------------------------------------------- */

enum sip_transport sip_transport_from(struct slice s)
{
    static const struct {
        const char *name;
        size_t len;
        enum sip_transport t;
    } known[] = {
        {"udp", 3, SIP_TRANSPORT_UDP}, {"tcp", 3, SIP_TRANSPORT_TCP},
        {"tls", 3, SIP_TRANSPORT_TLS}, {"sctp", 4, SIP_TRANSPORT_SCTP},
        {"ws", 2, SIP_TRANSPORT_WS},   {"wss", 3, SIP_TRANSPORT_WSS},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (name_is(s, known[i].name, known[i].len))
            return known[i].t;
    return SIP_TRANSPORT_OTHER;
}

/* token, then optional LWS and '/' (when `slash`); returns the byte after or NULL */
static const char *via_part(const char *p, const char *end, struct slice *out, bool slash)
{
    const char *q = span(p, end, C_TOKEN, false);
    if (q == p)
        return NULL;
    *out = mk(p, q);
    if (!slash)
        return q;
    q = skip_ws(q, end);
    if (q == end || *q != '/')
        return NULL;
    return skip_ws(q + 1, end);
}

static bool received_ok(struct slice v)
{
    const char *end = v.base + v.len;

    if (v.len > 2 && v.base[0] == '[' && end[-1] == ']')
        return ipv6_ok(v.base + 1, end - 1);
    if (memchr(v.base, ':', v.len) != NULL)
        return ipv6_ok(v.base, end);
    return ipv4_ok(v.base, end);
}

int sip_parse_via(struct slice s, struct sip_via *out)
{
    struct sip_param_iter it;
    struct sip_param prm;
    const char *p, *end, *q;
    uint64_t v;
    int r;

    memset(out, 0, sizeof(*out));
    s = slice_trim(s);
    if (s.len == 0)
        return -SIP_PE_EMPTY;
    p = s.base;
    end = s.base + s.len;

    if ((p = via_part(p, end, &out->protocol, true)) == NULL ||
        (p = via_part(p, end, &out->version, true)) == NULL)
        return -SIP_PE_BAD_PROTOCOL;
    if ((p = via_part(p, end, &out->transport_text, false)) == NULL)
        return -SIP_PE_BAD_TRANSPORT;
    out->transport = sip_transport_from(out->transport_text);
    q = skip_ws(p, end);
    if (q == p)
        return q == end ? -SIP_PE_BAD_HOST : -SIP_PE_BAD_TRANSPORT;
    p = parse_host(q, end, &out->host, &out->host_kind);
    if (p == NULL)
        return -SIP_PE_BAD_HOST;
    q = skip_ws(p, end);
    if (q < end && *q == ':') {
        p = parse_port(skip_ws(q + 1, end), end, &out->port);
        if (p == NULL)
            return -SIP_PE_BAD_PORT;
        q = skip_ws(p, end);
    }
    if (q < end && *q != ';')
        return -SIP_PE_BAD_HOST;
    out->params = mk(q, end);

    sip_params_begin(&it, out->params, SIP_PARAM_HEADER);
    while ((r = sip_params_next(&it, &prm)) > 0) {
        if (NAME_IS(prm.name, "branch")) {
            if (out->branch.base != NULL || !prm.has_value || prm.quoted)
                return -SIP_PE_BAD_PARAM;
            out->branch = prm.value;
        } else if (NAME_IS(prm.name, "received")) {
            if (!prm.has_value || prm.quoted || !received_ok(prm.value))
                return -SIP_PE_BAD_PARAM;
            out->received = prm.value;
        } else if (NAME_IS(prm.name, "maddr")) {
            struct slice h;
            enum sip_host_kind k;
            if (!prm.has_value || prm.quoted ||
                parse_host(prm.value.base, prm.value.base + prm.value.len, &h, &k) !=
                    prm.value.base + prm.value.len)
                return -SIP_PE_BAD_PARAM;
            out->maddr = prm.value;
        } else if (NAME_IS(prm.name, "rport")) {
            out->has_rport = true;
            out->rport_port = 0;
            if (prm.has_value) {
                const char *ve = prm.value.base + prm.value.len;
                if (prm.quoted || parse_port(prm.value.base, ve, &out->rport_port) != ve)
                    return -SIP_PE_BAD_PARAM;
            }
        } else if (NAME_IS(prm.name, "ttl")) {
            if (!prm.has_value || prm.quoted ||
                parse_uint(prm.value.base, prm.value.base + prm.value.len, 255, &v) != 0)
                return -SIP_PE_BAD_PARAM;
            out->has_ttl = true;
            out->ttl = (uint8_t)v;
        }
    }
    return r;
}

/* ---- numbers ------------------------------------------------------------------------------- */

int sip_parse_cseq(struct slice s, struct sip_cseq *out)
{
    const char *p, *end, *q;
    uint64_t v;
    int r;

    memset(out, 0, sizeof(*out));
    s = slice_trim(s);
    if (s.len == 0)
        return -SIP_PE_EMPTY;
    p = s.base;
    end = s.base + s.len;
    q = p;
    while (q < end && is(q, C_DIGIT))
        q++;
    if ((r = parse_uint(p, q, UINT32_MAX, &v)) < 0)
        return r;
    p = skip_ws(q, end);
    if (p == q)
        return q == end ? -SIP_PE_BAD_METHOD : -SIP_PE_BAD_NUMBER;
    q = span(p, end, C_TOKEN, false);
    if (q == p || q != end)
        return -SIP_PE_BAD_METHOD;
    out->seq = (uint32_t)v;
    out->method_text = mk(p, q);
    out->method = sip_method_from(out->method_text);
    return 0;
}

static int parse_number(struct slice s, uint64_t max, uint64_t *v)
{
    s = slice_trim(s);
    if (s.len == 0)
        return -SIP_PE_EMPTY;
    return parse_uint(s.base, s.base + s.len, max, v);
}

int sip_parse_max_forwards(struct slice s, uint8_t *out)
{
    uint64_t v;
    int r = parse_number(s, 255, &v);
    if (r == 0)
        *out = (uint8_t)v;
    return r;
}

int sip_parse_expires(struct slice s, uint32_t *out)
{
    uint64_t v;
    int r = parse_number(s, UINT32_MAX, &v);
    if (r == 0)
        *out = (uint32_t)v;
    return r;
}

/* ---- credentials --------------------------------------------------------------------------- */

int sip_parse_cred(struct slice s, struct sip_cred *out)
{
    const char *p, *end, *q;

    memset(out, 0, sizeof(*out));
    s = slice_trim(s);
    if (s.len == 0)
        return -SIP_PE_EMPTY;
    p = s.base;
    end = s.base + s.len;
    q = span(p, end, C_TOKEN, false);
    if (q == p)
        return -SIP_PE_BAD_CRED;
    out->scheme = mk(p, q);
    p = skip_ws(q, end);
    if (p == q && q < end)
        return -SIP_PE_BAD_CRED; /* scheme not followed by LWS */
    out->params = mk(p, end);
    if (!NAME_IS(out->scheme, "bearer"))
        return -SIP_CRED_NOT_BEARER;
    if (p == end)
        return -SIP_PE_BAD_CRED;

    /* token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" and nothing after */
    q = span(p, end, C_T68, false);
    if (q > p) {
        while (q < end && *q == '=')
            q++;
        if (skip_ws(q, end) == end) {
            out->token = mk(p, q);
            out->token68 = true;
            out->params = SLICE_NULL;
            return 0;
        }
    }

    /* auth-param *(COMMA auth-param), auth-param = token LWS "=" LWS ( token / quoted-string ) */
    bool has_token = false;
    while (p < end) {
        struct slice name, val;
        q = span(p, end, C_TOKEN, false);
        if (q == p)
            return -SIP_PE_BAD_CRED;
        name = mk(p, q);
        p = skip_ws(q, end);
        if (p == end || *p != '=')
            return -SIP_PE_BAD_CRED;
        p = skip_ws(p + 1, end);
        if (p < end && *p == '"') {
            q = scan_quoted(p, end);
            if (q == NULL)
                return -SIP_PE_BAD_CRED;
            val = mk(p + 1, q - 1);
        } else {
            /* token, or a bare token68-shaped value such as token=abc.def-ghi_ */
            q = span(p, end, C_TOKEN | C_T68, false);
            while (q < end && *q == '=')
                q++;
            if (q == p)
                return -SIP_PE_BAD_CRED;
            val = mk(p, q);
        }
        if (NAME_IS(name, "token")) {
            if (has_token || val.len == 0)
                return -SIP_PE_BAD_CRED;
            out->token = val;
            has_token = true;
        } else if (NAME_IS(name, "realm")) {
            if (out->has_realm)
                return -SIP_PE_BAD_CRED;
            out->realm = val;
            out->has_realm = true;
        }
        p = skip_ws(q, end);
        if (p < end) {
            if (*p != ',')
                return -SIP_PE_BAD_CRED;
            p = skip_ws(p + 1, end);
            if (p == end)
                return -SIP_PE_BAD_CRED;
        }
    }
    return has_token ? 0 : -SIP_PE_BAD_CRED;
}

int sip_find_bearer(const struct sip_msg *msg, struct slice realm, struct sip_cred *out)
{
    static const enum sip_hdr ids[2] = {SIP_HDR_PROXY_AUTHORIZATION, SIP_HDR_AUTHORIZATION};
    int best = -SIP_CRED_NONE, best_rank = 0;
    bool found = false;
    struct sip_cred c;

    for (size_t pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < msg->header_count && i < msg->headers_cap; i++) {
            int r, rank;
            if (msg->headers[i].id != ids[pass])
                continue;
            r = sip_parse_cred(msg->headers[i].value, &c);
            if (r == 0) {
                if (!c.has_realm || slice_eq(c.realm, realm)) {
                    if (!found) {
                        c.header_index = i;
                        *out = c;
                        found = true;
                    } else if (!slice_eq(c.token, out->token)) {
                        return -SIP_CRED_CONFLICT;
                    }
                    continue;
                }
                r = -SIP_CRED_REALM_MISMATCH;
                rank = 3;
            } else if (r == -SIP_CRED_NOT_BEARER) {
                rank = 1;
            } else {
                r = -SIP_PE_BAD_CRED;
                rank = 2;
            }
            if (rank > best_rank) {
                best_rank = rank;
                best = r;
            }
        }
    }
    return found ? 0 : best;
}
