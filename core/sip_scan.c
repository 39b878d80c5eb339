// SPDX-License-Identifier: MIT
// sip_scan(): frames the first SIP message of a stream buffer by Content-Length and indexes its
// start line and headers as slices into the buffer, without copying (picohttpparser's shape).
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SIP_X86 1
#endif

#include "core/sip.h"
#include "core/sip_priv.h"

/* ---- byte classes ------------------------------------------------------------------------- */

#define C_TOKEN 1u /* RFC 3261 token: alphanum - . ! % * _ + ` ' ~ */
#define C_CTL   2u /* 0x00-0x1f and 0x7f: CR, LF, HTAB or a fault; the SIMD paths find these */
#define C_WSP   4u /* SP, HTAB */
#define C_DIGIT 8u

static const uint8_t cls[256] = {
    [0x00 ... 0x08] = C_CTL, ['\t'] = C_CTL | C_WSP, [0x0a ... 0x1f] = C_CTL,
    [' '] = C_WSP,           ['!'] = C_TOKEN,        ['%'] = C_TOKEN,
    ['\''] = C_TOKEN,        ['*'] = C_TOKEN,        ['+'] = C_TOKEN,
    ['-'] = C_TOKEN,         ['.'] = C_TOKEN,        ['0' ... '9'] = C_TOKEN | C_DIGIT,
    ['A' ... 'Z'] = C_TOKEN, ['_'] = C_TOKEN,        ['`'] = C_TOKEN,
    ['a' ... 'z'] = C_TOKEN, ['~'] = C_TOKEN,        [0x7f] = C_CTL,
};

#define IS(c, k)  ((cls[(uint8_t)(c)] & (k)) != 0)
#define IS_WSP(c) ((c) == ' ' || (c) == '\t')

/* ---- finding control bytes: the only loop over most of the bytes ------------------------------
 * Each returns the first byte in [p, end) that is C_CTL, or `end`. All give the same answer. */

static inline const char *find_ctl_scalar(const char *p, const char *end)
{
    while (end - p >= 8) {
        if (IS(p[0], C_CTL))
            return p;
        if (IS(p[1], C_CTL))
            return p + 1;
        if (IS(p[2], C_CTL))
            return p + 2;
        if (IS(p[3], C_CTL))
            return p + 3;
        if (IS(p[4], C_CTL))
            return p + 4;
        if (IS(p[5], C_CTL))
            return p + 5;
        if (IS(p[6], C_CTL))
            return p + 6;
        if (IS(p[7], C_CTL))
            return p + 7;
        p += 8;
    }
    while (p < end && !IS(*p, C_CTL))
        p++;
    return p;
}

/* The first byte in [p, end) that is not a token character, or `end`. */
static inline const char *find_nontoken_scalar(const char *p, const char *end)
{
    while (p < end && IS(*p, C_TOKEN))
        p++;
    return p;
}

#ifdef SIP_X86
/* Token test by nibbles (PSHUFB): byte b is a token character iff LO[b & 15] & HI[b >> 4] != 0;
 * one bit per high nibble 2..7, generated from the RFC 3261 token set and checked against
 * cls[] for all 256 bytes by the differential tests. */
#define TOKEN_LO                                                                                   \
    0x3a, 0x3f, 0x3e, 0x3e, 0x3e, 0x3f, 0x3e, 0x3f, 0x3e, 0x3e, 0x3d, 0x15, 0x14, 0x15, 0x35, 0x1c
#define TOKEN_HI 0, 0, 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0, 0, 0, 0, 0, 0, 0, 0

__attribute__((target("sse4.2"))) static inline const char *find_nontoken_sse42(const char *p,
                                                                                const char *end)
{
    const __m128i lo_lut = _mm_setr_epi8(TOKEN_LO), hi_lut = _mm_setr_epi8(TOKEN_HI);
    const __m128i m0f = _mm_set1_epi8(0x0f), zero = _mm_setzero_si128();
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i lo = _mm_shuffle_epi8(lo_lut, _mm_and_si128(v, m0f));
        __m128i hi = _mm_shuffle_epi8(hi_lut, _mm_and_si128(_mm_srli_epi16(v, 4), m0f));
        uint32_t m = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_and_si128(lo, hi), zero));
        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
    return find_nontoken_scalar(p, end);
}

__attribute__((target("avx2"))) static inline const char *find_nontoken_avx2(const char *p,
                                                                             const char *end)
{
    const __m256i lo_lut = _mm256_setr_epi8(TOKEN_LO, TOKEN_LO);
    const __m256i hi_lut = _mm256_setr_epi8(TOKEN_HI, TOKEN_HI);
    const __m256i m0f = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    while (end - p >= 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)p);
        __m256i lo = _mm256_shuffle_epi8(lo_lut, _mm256_and_si256(v, m0f));
        __m256i hi = _mm256_shuffle_epi8(hi_lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f));
        uint32_t m =
            (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(lo, hi), zero));
        if (m)
            return p + __builtin_ctz(m);
        p += 32;
    }
    return find_nontoken_sse42(p, end);
}

/* PCMPESTRI with ranges (picohttpparser's findchar_fast) would do, but it is slow on AMD and
 * valgrind cannot run it; compares are faster on every core we have. */
__attribute__((target("sse4.2"))) static inline const char *find_ctl_sse42(const char *p,
                                                                           const char *end)
{
    const __m128i k1f = _mm_set1_epi8(0x1f), k7f = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i ctl = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(v, k1f), v), _mm_cmpeq_epi8(v, k7f));
        uint32_t m = (uint32_t)_mm_movemask_epi8(ctl);
        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
    return find_ctl_scalar(p, end);
}

__attribute__((target("avx2"))) static inline const char *find_ctl_avx2(const char *p,
                                                                        const char *end)
{
    const __m256i k1f = _mm256_set1_epi8(0x1f), k7f = _mm256_set1_epi8(0x7f);
    while (end - p >= 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)p);
        __m256i ctl = _mm256_cmpeq_epi8(_mm256_min_epu8(v, k1f), v); /* v <= 0x1f */
        ctl = _mm256_or_si256(ctl, _mm256_cmpeq_epi8(v, k7f));
        uint32_t m = (uint32_t)_mm256_movemask_epi8(ctl);
        if (m)
            return p + __builtin_ctz(m);
        p += 32;
    }
    if (end - p >= 16) {
        const __m128i s1f = _mm_set1_epi8(0x1f), s7f = _mm_set1_epi8(0x7f);
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i ctl = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(v, s1f), v), _mm_cmpeq_epi8(v, s7f));
        uint32_t m = (uint32_t)_mm_movemask_epi8(ctl);
        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
    return find_ctl_scalar(p, end);
}
#endif

/* ---- the implementation choice (set before main(), read on the hot path) ------------------ */

static enum sip_scan_impl scan_impl = SIP_SCAN_SCALAR;
static char err_names[SIP_E_COUNT][32];

static bool cpu_has(enum sip_scan_impl impl)
{
    switch (impl) {
    case SIP_SCAN_SCALAR:
        return true;
#ifdef SIP_X86
    case SIP_SCAN_SSE42:
        return __builtin_cpu_supports("sse4.2");
    case SIP_SCAN_AVX2:
        return __builtin_cpu_supports("avx2");
#endif
    default:
        return false;
    }
}

/* Zen 1 runs each 256-bit operation as two 128-bit halves: there, on SIP's short lines, the
 * SSE4.2 path measured faster (docs/BENCHMARKS.md: 435 vs 455 ns per REGISTER). */
static bool avx2_is_split(void)
{
#ifdef SIP_X86
    return __builtin_cpu_is("znver1");
#else
    return false;
#endif
}

int sip_scan_set_impl(enum sip_scan_impl impl)
{
    if ((unsigned)impl >= SIP_SCAN_IMPL_COUNT)
        return -EINVAL;
    if (impl == SIP_SCAN_AUTO)
        impl = cpu_has(SIP_SCAN_AVX2) && !avx2_is_split() ? SIP_SCAN_AVX2
               : cpu_has(SIP_SCAN_SSE42)                  ? SIP_SCAN_SSE42
                                                          : SIP_SCAN_SCALAR;
    if (!cpu_has(impl))
        return -ENOTSUP;
    scan_impl = impl;
    return 0;
}

enum sip_scan_impl sip_scan_get_impl(void)
{
    return scan_impl;
}

const char *sip_scan_impl_name(enum sip_scan_impl impl)
{
    static const char *const names[SIP_SCAN_IMPL_COUNT] = {"auto", "scalar", "sse42", "avx2"};
    return (unsigned)impl < SIP_SCAN_IMPL_COUNT ? names[impl] : "";
}

__attribute__((constructor)) static void sip_scan_startup(void)
{
#ifdef SIP_X86
    __builtin_cpu_init();
#endif
    enum sip_scan_impl want = SIP_SCAN_AUTO;
    const char *env = getenv("SIPEDGE_SCAN_IMPL");
    for (int i = 0; env && i < SIP_SCAN_IMPL_COUNT; i++)
        if (strcmp(env, sip_scan_impl_name((enum sip_scan_impl)i)) == 0)
            want = (enum sip_scan_impl)i;
    if (sip_scan_set_impl(want) != 0)
        sip_scan_set_impl(SIP_SCAN_AUTO);

    static const char *const upper[SIP_E_COUNT] = {
#define SIP_ERR_NAME(n, r) #n,
        SIP_ERRORS(SIP_ERR_NAME)
#undef SIP_ERR_NAME
    };
    for (int e = 0; e < SIP_E_COUNT; e++) {
        const char *s = upper[e] + sizeof("SIP_E_") - 1;
        size_t i = 0;
        for (; s[i] && i + 1 < sizeof(err_names[e]); i++)
            err_names[e][i] = (char)sip__lower[(uint8_t)s[i]];
        while (i > 0 && err_names[e][i - 1] == '_') /* SIP_E_INCOMPLETE_ */
            i--;
        err_names[e][i] = '\0';
    }
}

/* ---- small public helpers ----------------------------------------------------------------- */

const char *sip_err_reason(enum sip_err e)
{
    static const char *const reasons[SIP_E_COUNT] = {
#define SIP_ERR_REASON(n, r) r,
        SIP_ERRORS(SIP_ERR_REASON)
#undef SIP_ERR_REASON
    };
    return (unsigned)e < SIP_E_COUNT ? reasons[e] : "Unknown Error";
}

const char *sip_err_name(enum sip_err e)
{
    return (unsigned)e < SIP_E_COUNT ? err_names[e] : "unknown";
}

const char *sip_hdr_name(enum sip_hdr id)
{
    return (unsigned)id < SIP_HDR_COUNT ? sip__hdr_names[id] : "";
}

enum sip_hdr_card sip_hdr_card(enum sip_hdr id)
{
    return (unsigned)id < SIP_HDR_COUNT ? (enum sip_hdr_card)sip__hdr_card[id] : SIP_HDR_CARD_MANY;
}

enum sip_hdr sip_hdr_from(struct slice name)
{
    for (size_t i = 0; i < name.len; i++)
        if (!IS(name.base[i], C_TOKEN))
            return SIP_HDR_OTHER;
    return name.len ? sip__hdr_lookup(name.base, name.len) : SIP_HDR_OTHER;
}

static const char *const method_names[SIP_METHOD_COUNT] = {
    [SIP_METHOD_UNKNOWN] = "",
    [SIP_METHOD_INVITE] = "INVITE",
    [SIP_METHOD_ACK] = "ACK",
    [SIP_METHOD_BYE] = "BYE",
    [SIP_METHOD_CANCEL] = "CANCEL",
    [SIP_METHOD_REGISTER] = "REGISTER",
    [SIP_METHOD_OPTIONS] = "OPTIONS",
    [SIP_METHOD_INFO] = "INFO",
    [SIP_METHOD_UPDATE] = "UPDATE",
    [SIP_METHOD_PRACK] = "PRACK",
    [SIP_METHOD_SUBSCRIBE] = "SUBSCRIBE",
    [SIP_METHOD_NOTIFY] = "NOTIFY",
    [SIP_METHOD_REFER] = "REFER",
    [SIP_METHOD_MESSAGE] = "MESSAGE",
    [SIP_METHOD_PUBLISH] = "PUBLISH",
};

const char *sip_method_name(enum sip_method m)
{
    return (unsigned)m < SIP_METHOD_COUNT ? method_names[m] : "";
}

enum sip_method sip_method_from(struct slice s)
{
    /* the first byte and the length pick the one candidate; memcmp confirms */
    enum sip_method m = SIP_METHOD_UNKNOWN;
    if (s.len < 3 || s.len > 9)
        return m;
    switch (s.base[0]) {
    case 'I':
        m = s.len == 6 ? SIP_METHOD_INVITE : SIP_METHOD_INFO;
        break;
    case 'A':
        m = SIP_METHOD_ACK;
        break;
    case 'B':
        m = SIP_METHOD_BYE;
        break;
    case 'C':
        m = SIP_METHOD_CANCEL;
        break;
    case 'R':
        m = s.len == 8 ? SIP_METHOD_REGISTER : SIP_METHOD_REFER;
        break;
    case 'O':
        m = SIP_METHOD_OPTIONS;
        break;
    case 'U':
        m = SIP_METHOD_UPDATE;
        break;
    case 'P':
        m = s.len == 5 ? SIP_METHOD_PRACK : SIP_METHOD_PUBLISH;
        break;
    case 'S':
        m = SIP_METHOD_SUBSCRIBE;
        break;
    case 'N':
        m = SIP_METHOD_NOTIFY;
        break;
    case 'M':
        m = SIP_METHOD_MESSAGE;
        break;
    default:
        return SIP_METHOD_UNKNOWN;
    }
    const char *n = method_names[m];
    return strlen(n) == s.len && memcmp(n, s.base, s.len) == 0 ? m : SIP_METHOD_UNKNOWN;
}

void sip_msg_init(struct sip_msg *msg, struct sip_header *headers, size_t cap)
{
    memset(msg, 0, sizeof(*msg));
    msg->headers = headers;
    msg->headers_cap = cap;
    msg->limits.max_size = SIP_DEFAULT_MAX_SIZE;
    msg->limits.max_line = SIP_DEFAULT_MAX_LINE;
    msg->limits.max_body = SIP_DEFAULT_MAX_BODY;
}

const struct sip_header *sip_first(const struct sip_msg *msg, enum sip_hdr id)
{
    if ((unsigned)id >= SIP_HDR_COUNT || msg->first[id] == 0)
        return NULL;
    return &msg->headers[msg->first[id] - 1];
}

size_t sip_keepalive_len(const char *buf, size_t len)
{
    size_t n = 0;
    while (n + 2 <= len && buf[n] == '\r' && buf[n + 1] == '\n')
        n += 2;
    return n;
}

/* ---- values ------------------------------------------------------------------------------- */

/* The next non-empty comma-separated element of [*pp, e), trimmed; commas inside "..." (with
 * \-escapes) and <...> do not split. Leaves *pp at the comma or at `e`. */
static bool next_elem(const char **pp, const char *e, struct slice *out)
{
    const char *p = *pp;
    while (p < e && (IS_WSP(*p) || *p == ','))
        p++;
    if (p == e) {
        *pp = p;
        return false;
    }
    const char *s = p;
    bool angle = false;
    while (p < e) {
        char c = *p;
        if (c == '"') {
            for (p++; p < e && *p != '"'; p++)
                if (*p == '\\' && p + 1 < e)
                    p++;
            if (p < e)
                p++;
            continue;
        }
        if (c == '<')
            angle = true;
        else if (c == '>')
            angle = false;
        else if (c == ',' && !angle)
            break;
        p++;
    }
    const char *t = p;
    while (t > s && IS_WSP(t[-1]))
        t--;
    *out = slice_make(s, (size_t)(t - s));
    *pp = p;
    return true;
}

void sip_values_begin(struct sip_value_iter *it, const struct sip_msg *msg, enum sip_hdr id)
{
    it->msg = msg;
    it->id = id;
    it->hdr = (unsigned)id < SIP_HDR_COUNT && id != SIP_HDR_OTHER && msg->first[id]
                  ? msg->first[id] - 1u
                  : msg->header_count;
    it->rest = SLICE_NULL;
}

bool sip_values_next(struct sip_value_iter *it, struct slice *out)
{
    for (;;) {
        if (it->rest.base) {
            const char *p = it->rest.base, *e = p + it->rest.len;
            bool got = next_elem(&p, e, out);
            it->rest = slice_make(p, (size_t)(e - p));
            if (got)
                return true;
            it->rest = SLICE_NULL;
        }
        while (it->hdr < it->msg->header_count && it->msg->headers[it->hdr].id != it->id)
            it->hdr++;
        if (it->hdr >= it->msg->header_count)
            return false;
        it->rest = it->msg->headers[it->hdr++].value;
        if (!it->rest.base) /* an empty value of length 0 still has a base: never NULL */
            it->rest = slice_make("", 0);
    }
}

/* ---- the scanner -------------------------------------------------------------------------- */

static ssize_t fail(struct sip_msg *msg, enum sip_err e, const char *buf, const char *at)
{
    msg->err = e;
    msg->err_pos = (size_t)(at - buf);
    return -(ssize_t)e;
}

/* More bytes are needed: that is a wait below the size limit and an error at it. */
static ssize_t need_more(struct sip_msg *msg, const char *buf, size_t len)
{
    if (len >= msg->limits.max_size)
        return fail(msg, SIP_E_TOO_LARGE, buf, buf + msg->limits.max_size);
    return SIP_INCOMPLETE;
}

/* True when [p, end) holds the CRLFCRLF that ends the headers. */
static bool has_header_end(const char *p, const char *end)
{
    while (end - p >= 4) {
        const char *cr = memchr(p, '\r', (size_t)(end - p) - 3);
        if (!cr)
            return false;
        if (cr[1] == '\n' && cr[2] == '\r' && cr[3] == '\n')
            return true;
        p = cr + 1;
    }
    return false;
}

#define FIND_CTL(p, end)                                                                           \
    (impl == SIP_SCAN_AVX2    ? find_ctl_avx2(p, end)                                              \
     : impl == SIP_SCAN_SSE42 ? find_ctl_sse42(p, end)                                             \
                              : find_ctl_scalar(p, end))
#define FIND_NONTOKEN(p, end)                                                                      \
    (impl == SIP_SCAN_AVX2    ? find_nontoken_avx2(p, end)                                         \
     : impl == SIP_SCAN_SSE42 ? find_nontoken_sse42(p, end)                                        \
                              : find_nontoken_scalar(p, end))
#ifndef SIP_X86
#define find_nontoken_avx2  find_nontoken_scalar
#define find_nontoken_sse42 find_nontoken_scalar
#define find_ctl_avx2       find_ctl_scalar
#define find_ctl_sse42      find_ctl_scalar
#endif

/* Quote state of a header value, walked forward only as far as a control byte is found (so a
 * line costs one pass however many escapes it holds). */
struct quote_walk {
    const char *at; /* bytes before `at` are walked */
    bool in_quote;
};

/* True when the control byte at `x` is the second byte of a quoted-pair inside a quoted string
 * (RFC 3261 §25.1: quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F); the caller excludes CR and
 * LF). Walks [w->at, x] and leaves `w` after `x`. Cold: control bytes are rare in values. */
static __attribute__((noinline)) bool quoted_pair_at(struct quote_walk *w, const char *x)
{
    const char *c = w->at;
    bool escaped = false;
    for (; c < x; c++) {
        if (!w->in_quote) {
            w->in_quote = *c == '"';
        } else if (*c == '\\') {
            if (c + 1 == x) {
                escaped = true;
                break;
            }
            c++; /* the escaped byte, whatever it is */
        } else if (*c == '"') {
            w->in_quote = false;
        }
    }
    w->at = x + 1;
    return escaped;
}

/* Where the line that starts at `line` ends, scanning from `p`: the CR of its CRLF, with the
 * LF present. When `fold` (a header; `p` is its value), a CRLF followed by SP/HTAB is a
 * continuation: it becomes two spaces and the line goes on, and a control byte escaped by a
 * quoted-pair inside a quoted string is value. NULL with *res set (SIP_INCOMPLETE or an
 * error) otherwise. */
static inline __attribute__((always_inline)) char *line_end(char *buf, char *line, char *p,
                                                            char *end, bool fold,
                                                            struct sip_msg *msg, ssize_t *res,
                                                            const enum sip_scan_impl impl)
{
    char *lim = end;
    struct quote_walk qw = {p, false};
    if ((size_t)(end - line) > msg->limits.max_line + 1)
        lim = line + msg->limits.max_line + 1; /* the CR may sit at line + max_line */
    for (;;) {
        p = (char *)FIND_CTL(p, lim);
        if (p >= lim) {
            *res = lim == end ? SIP_INCOMPLETE : fail(msg, SIP_E_LINE_TOO_LONG, buf, line);
            return NULL;
        }
        if (*p == '\t' || (fold && *p != '\r' && *p != '\n' && quoted_pair_at(&qw, p))) {
            p++;
            continue;
        }
        if (*p != '\r') {
            *res = fail(msg, *p == '\n' ? SIP_E_BARE_LF : SIP_E_BAD_CHAR, buf, p);
            return NULL;
        }
        if (end - p < 2 + fold) { /* the LF, and for a header the byte after it */
            *res = end - p >= 2 && p[1] != '\n' ? fail(msg, SIP_E_BARE_CR, buf, p) : SIP_INCOMPLETE;
            return NULL;
        }
        if (p[1] != '\n') {
            *res = fail(msg, SIP_E_BARE_CR, buf, p);
            return NULL;
        }
        if (!fold || !IS_WSP(p[2]))
            return p;
        p[0] = p[1] = ' '; /* the fold: same length, same meaning, one slice */
        p += 3;
    }
}

static ssize_t start_line(char *buf, char *cr, struct sip_msg *msg)
{
    char *s = buf;
    size_t n = (size_t)(cr - s);
    msg->is_request = false;
    msg->method = SIP_METHOD_UNKNOWN;
    if (n == 0)
        return fail(msg, SIP_E_BAD_START_LINE, buf, s);
    if (n >= 4 && (s[0] | 0x20) == 's' && (s[1] | 0x20) == 'i' && (s[2] | 0x20) == 'p' &&
        s[3] == '/') {
        /* Status-Line = SIP-Version SP Status-Code SP Reason-Phrase */
        if (n < 7 || memcmp(s + 3, "/2.0", 4) != 0 || (n > 7 && s[7] != ' '))
            return fail(msg, SIP_E_BAD_VERSION, buf, s);
        const char *c = s + 8;
        if (n < 11 || !IS(c[0], C_DIGIT) || !IS(c[1], C_DIGIT) || !IS(c[2], C_DIGIT) ||
            (n > 11 && c[3] != ' '))
            return fail(msg, SIP_E_BAD_STATUS, buf, n < 8 ? cr : c);
        int code = (c[0] - '0') * 100 + (c[1] - '0') * 10 + (c[2] - '0');
        if (code < 100 || code > 699)
            return fail(msg, SIP_E_BAD_STATUS, buf, c);
        msg->is_request = false;
        msg->method = SIP_METHOD_UNKNOWN;
        msg->method_text = msg->uri = SLICE_NULL;
        msg->version = slice_make(s, 7);
        msg->status = code;
        msg->reason = n > 12 ? slice_make(c + 4, n - 12) : slice_make(cr, 0);
        return 0;
    }
    /* Request-Line = Method SP Request-URI SP SIP-Version. Trailing SP/HTAB is tolerated: the
     * version is still exactly "SIP/2.0" and no element changes meaning. The fields are set as
     * they are found, so that a bad line still says what it could (method, version). */
    msg->is_request = true;
    msg->method = SIP_METHOD_UNKNOWN;
    msg->method_text = slice_make(s, 0); /* its base is the message start, even on a fault */
    msg->uri = msg->version = SLICE_NULL;
    msg->status = 0;
    msg->reason = SLICE_NULL;
    const char *e = cr;
    while (e > s && IS_WSP(e[-1]))
        e--;
    if (IS_WSP(*s))
        return fail(msg, SIP_E_BAD_SPACING, buf, s);
    const char *p = s;
    while (p < e && IS(*p, C_TOKEN))
        p++;
    if (p == s || p == e || (*p != ' ' && !IS_WSP(*p)))
        return fail(msg, SIP_E_BAD_METHOD, buf, p);
    msg->method_text = slice_make(s, (size_t)(p - s));
    msg->method = sip_method_from(msg->method_text);
    if (*p != ' ')
        return fail(msg, SIP_E_BAD_SPACING, buf, p);
    const char *u = p + 1;
    const char *sp = memrchr(u, ' ', (size_t)(e - u)); /* the version follows the last SP */
    if (!sp)
        return fail(msg, SIP_E_BAD_START_LINE, buf, cr);
    const char *v = sp + 1;
    msg->version = slice_make(v, (size_t)(e - v));
    if (sp == u)
        return fail(msg, SIP_E_BAD_URI, buf, u); /* "OPTIONS  SIP/2.0": no URI at all */
    if (IS_WSP(*u) || IS_WSP(sp[-1]))
        return fail(msg, SIP_E_BAD_SPACING, buf, IS_WSP(*u) ? u : sp - 1);
    if (memchr(u, ' ', (size_t)(sp - u)) || memchr(u, '\t', (size_t)(sp - u)))
        return fail(msg, SIP_E_BAD_URI, buf, u);
    msg->uri = slice_make(u, (size_t)(sp - u));
    if (e - v != 7 || (v[0] | 0x20) != 's' || (v[1] | 0x20) != 'i' || (v[2] | 0x20) != 'p' ||
        memcmp(v + 3, "/2.0", 4) != 0)
        return fail(msg, SIP_E_BAD_VERSION, buf, v);
    msg->version = slice_make(v, 7);
    return 0;
}

/* Start-line faults after which the headers are still read, so that a framed request can be
 * answered (RFC 3261 §8.2: 400 or 505) instead of dropped: the line ended with CRLF and held no
 * control byte, only its grammar is wrong. */
static bool start_fault_recoverable(enum sip_err e, size_t line_len)
{
    return line_len > 0 &&
           (e == SIP_E_BAD_START_LINE || e == SIP_E_BAD_METHOD || e == SIP_E_BAD_URI ||
            e == SIP_E_BAD_VERSION || e == SIP_E_BAD_STATUS || e == SIP_E_BAD_SPACING);
}

static inline __attribute__((always_inline)) ssize_t
scan(char *buf, size_t len, size_t last_len, struct sip_msg *msg, const enum sip_scan_impl impl)
{
    char *end = buf + len;
    ssize_t res;

    msg->header_len = 0;
    msg->err = SIP_E_NONE;
    msg->err_pos = 0;
    /* Restart hint: the previous call saw no end of headers in its `last_len` bytes, so only the
     * new ones (and the 3 before, for a CRLFCRLF cut in two) can hold it. Not at the size limit:
     * the full scan then indexes the headers it can, so that the 513 can still be answered. */
    if (last_len > 0 && last_len < len && len < msg->limits.max_size &&
        !has_header_end(buf + (last_len > 3 ? last_len - 3 : 0), end))
        return SIP_INCOMPLETE;

    char *cr = line_end(buf, buf, buf, end, false, msg, &res, impl);
    if (!cr)
        return res == SIP_INCOMPLETE ? need_more(msg, buf, len) : res;
    enum sip_err start_err = SIP_E_NONE; /* a start-line fault, reported once framed */
    size_t start_pos = 0;
    if ((res = start_line(buf, cr, msg)) < 0) {
        if (!start_fault_recoverable(msg->err, (size_t)(cr - buf)))
            return res;
        start_err = msg->err;
        start_pos = msg->err_pos;
        msg->err = SIP_E_NONE;
        msg->err_pos = 0;
    }

    memset(msg->first, 0, sizeof(msg->first));
    msg->header_count = 0;
    msg->via_count = 0;
    msg->via_first = SLICE_NULL;
    msg->content_length = 0;
    msg->body = SLICE_NULL;
    const char *cl_at = NULL; /* the Content-Length value */
    struct sip_header *h = msg->headers;
    const size_t cap = msg->headers_cap < UINT16_MAX ? msg->headers_cap : UINT16_MAX - 1;
    const size_t max_line = msg->limits.max_line;
    char *line = cr + 2;

    for (;;) {
        if (line >= end)
            return need_more(msg, buf, len);
        if (*line == '\r') {
            if (line + 1 == end)
                return need_more(msg, buf, len);
            if (line[1] != '\n')
                return fail(msg, SIP_E_BARE_CR, buf, line);
            line += 2;
            break;
        }
        /* header-name *(SP/HTAB) ":" */
        char *q = (char *)FIND_NONTOKEN(line, end);
        size_t name_len = (size_t)(q - line);
        if (q + 1 < end && q[0] == ':' && name_len) { /* the usual "Name: value" */
            q += 1 + (q[1] == ' ');
        } else {
            while (q < end && IS_WSP(*q))
                q++;
            if (q == end)
                return (size_t)(q - line) > max_line ? fail(msg, SIP_E_LINE_TOO_LONG, buf, line)
                                                     : need_more(msg, buf, len);
            if (*q != ':') {
                if (name_len == 0 && IS_WSP(*line))
                    return fail(msg, SIP_E_BAD_FOLD, buf, line);
                if (*q == '\n')
                    return fail(msg, SIP_E_BARE_LF, buf, q);
                if (name_len == 0 || !IS(*q, C_CTL))
                    return fail(msg, SIP_E_BAD_HEADER_NAME, buf, q);
                return fail(msg, SIP_E_MISSING_COLON, buf, q);
            }
            if (name_len == 0)
                return fail(msg, SIP_E_BAD_HEADER_NAME, buf, line);
            q++;
        }
        while (q < end && IS_WSP(*q))
            q++;
        char *v = q;
        if (!(cr = line_end(buf, line, q, end, true, msg, &res, impl)))
            return res == SIP_INCOMPLETE ? need_more(msg, buf, len) : res;
        char *ve = cr;
        while (ve > v && IS_WSP(ve[-1]))
            ve--;
        while (v < ve && IS_WSP(*v)) /* a fold right after the colon */
            v++;
        if (msg->header_count == cap)
            return fail(msg, SIP_E_TOO_MANY_HEADERS, buf, line);
        enum sip_hdr id = sip__hdr_lookup(line, name_len);
        h->id = (uint16_t)id;
        h->name = slice_make(line, name_len);
        h->value = slice_make(v, (size_t)(ve - v));
        if (!msg->first[id])
            msg->first[id] = (uint16_t)(msg->header_count + 1);
        msg->header_count++;
        h++;
        if (id == SIP_HDR_CONTENT_LENGTH) {
            if (cl_at)
                return fail(msg, SIP_E_DUP_CONTENT_LENGTH, buf, line);
            cl_at = v;
            if (v == ve)
                return fail(msg, SIP_E_BAD_CONTENT_LENGTH, buf, v);
            size_t cl = 0;
            for (const char *d = v; d < ve; d++) {
                if (!IS(*d, C_DIGIT))
                    return fail(msg, SIP_E_BAD_CONTENT_LENGTH, buf, d);
                cl = cl * 10 + (size_t)(*d - '0');
                if (cl > msg->limits.max_body)
                    return fail(msg, SIP_E_BODY_TOO_LARGE, buf, v);
            }
            msg->content_length = cl;
        } else if (id == SIP_HDR_VIA) {
            if (!memchr(v, ',', (size_t)(ve - v))) { /* the usual case: one value per line */
                if (v != ve && msg->via_count++ == 0)
                    msg->via_first = slice_make(v, (size_t)(ve - v));
            } else {
                const char *p = v;
                struct slice e;
                while (next_elem(&p, ve, &e))
                    if (msg->via_count++ == 0)
                        msg->via_first = e;
            }
        }
        line = cr + 2;
    }

    size_t hl = (size_t)(line - buf);
    if (hl > msg->limits.max_size)
        return fail(msg, SIP_E_TOO_LARGE, buf, buf + msg->limits.max_size);
    if (!cl_at)
        return fail(msg, SIP_E_NO_CONTENT_LENGTH, buf, line - 2);
    size_t total = hl + msg->content_length;
    if (total > msg->limits.max_size)
        return fail(msg, SIP_E_TOO_LARGE, buf, cl_at);
    msg->header_len = hl;
    if (len < total)
        return SIP_INCOMPLETE; /* len < total <= max_size */
    msg->body = slice_make(line, msg->content_length);
    if (start_err != SIP_E_NONE)
        return fail(msg, start_err, buf, buf + start_pos);
    return (ssize_t)total;
}

static ssize_t scan_scalar(char *buf, size_t len, size_t last_len, struct sip_msg *msg)
{
    return scan(buf, len, last_len, msg, SIP_SCAN_SCALAR);
}

#ifdef SIP_X86
__attribute__((target("sse4.2"))) static ssize_t scan_sse42(char *buf, size_t len, size_t last_len,
                                                            struct sip_msg *msg)
{
    return scan(buf, len, last_len, msg, SIP_SCAN_SSE42);
}

__attribute__((target("avx2"))) static ssize_t scan_avx2(char *buf, size_t len, size_t last_len,
                                                         struct sip_msg *msg)
{
    return scan(buf, len, last_len, msg, SIP_SCAN_AVX2);
}
#endif

ssize_t sip_scan(char *buf, size_t len, size_t last_len, struct sip_msg *msg)
{
#ifdef SIP_X86
    if (scan_impl == SIP_SCAN_AVX2)
        return scan_avx2(buf, len, last_len, msg);
    if (scan_impl == SIP_SCAN_SSE42)
        return scan_sse42(buf, len, last_len, msg);
#endif
    return scan_scalar(buf, len, last_len, msg);
}
