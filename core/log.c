// SPDX-License-Identifier: MIT
// Event logging: formats a line on the stack, writes it with one write(2). No locks: the only
// shared state is the destination set at start-up and the level (relaxed atomic).
#include "core/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "core/cfg.h"

_Static_assert((int)LOG_ERROR == (int)CFG_LOG_ERROR && (int)LOG_DEBUG == (int)CFG_LOG_DEBUG,
               "log levels mirror cfg levels");
_Static_assert((int)LOG_FORMAT_JSON == (int)CFG_LOG_JSON, "log formats mirror cfg formats");

static int log_fd = 2;
static int log_level_min = LOG_INFO;
static enum log_format log_fmt = LOG_FORMAT_KV;

static const char *const level_names[LOG_LEVEL_COUNT] = {"debug", "info", "warn", "error"};

void log_init(int fd, enum log_level level, enum log_format format)
{
    log_fd = fd;
    log_fmt = format;
    __atomic_store_n(&log_level_min, (int)level, __ATOMIC_RELAXED);
}

void log_set_level(enum log_level level)
{
    __atomic_store_n(&log_level_min, (int)level, __ATOMIC_RELAXED);
}

bool log_enabled(enum log_level level)
{
    return (int)level >= __atomic_load_n(&log_level_min, __ATOMIC_RELAXED);
}

const char *log_level_name(enum log_level level)
{
    return (unsigned)level < LOG_LEVEL_COUNT ? level_names[level] : "?";
}

/* Fetched once: an implicit fetch per digest (EVP_sha256()) costs microseconds in OpenSSL 3. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void log_digest(const void *p, size_t n, char out[13])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    pthread_once(&sha256_once, sha256_fetch);
    if (!sha256_md || !EVP_Digest(p, n, md, &mdlen, sha256_md, NULL) || mdlen < 6) {
        memcpy(out, "000000000000", 13);
        return;
    }
    for (int i = 0; i < 6; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[12] = 0;
}

/* A bounded writer: once a write does not fit, `full` is set and nothing more is added. */
struct lbuf {
    char *p;
    size_t len, cap;
    bool full;
};

static void put(struct lbuf *b, const char *s, size_t n)
{
    if (b->full || b->len + n > b->cap) {
        b->full = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_(struct lbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void putc_(struct lbuf *b, char c)
{
    put(b, &c, 1);
}

static void put_hex_byte(struct lbuf *b, const char *prefix, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    puts_(b, prefix);
    putc_(b, hex[c >> 4]);
    putc_(b, hex[c & 15]);
}

static bool kv_needs_quotes(const char *s, size_t n)
{
    if (!n)
        return true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\')
            return true;
    }
    return false;
}

/* Writes `s` quoted, with quote, backslash and control escapes; other bytes outside printable
 * ASCII become `hex_prefix` + two hex digits ("\x" for kv, "\u00" for JSON: one \u00XX per
 * byte keeps the line valid JSON whatever the input bytes). */
static void put_quoted(struct lbuf *b, const char *s, size_t n, const char *hex_prefix)
{
    putc_(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            puts_(b, "\\\"");
            break;
        case '\\':
            puts_(b, "\\\\");
            break;
        case '\n':
            puts_(b, "\\n");
            break;
        case '\r':
            puts_(b, "\\r");
            break;
        case '\t':
            puts_(b, "\\t");
            break;
        default:
            if (c < ' ' || c >= 0x7f)
                put_hex_byte(b, hex_prefix, c);
            else
                putc_(b, (char)c);
        }
    }
    putc_(b, '"');
}

static void put_kv_str(struct lbuf *b, const char *s, size_t n)
{
    if (kv_needs_quotes(s, n))
        put_quoted(b, s, n, "\\x");
    else
        put(b, s, n);
}

static void put_json_str(struct lbuf *b, const char *s, size_t n)
{
    put_quoted(b, s, n, "\\u00");
}

static void put_value(struct lbuf *b, enum log_format fmt, const struct log_field *f)
{
    char num[32];
    bool json = fmt == LOG_FORMAT_JSON;
    switch (f->type) {
    case LOG_T_STR: {
        const char *s = f->s ? f->s : "";
        json ? put_json_str(b, s, strlen(s)) : put_kv_str(b, s, strlen(s));
        break;
    }
    case LOG_T_SLICE:
        json ? put_json_str(b, f->sl.base, f->sl.len) : put_kv_str(b, f->sl.base, f->sl.len);
        break;
    case LOG_T_INT:
        snprintf(num, sizeof(num), "%lld", (long long)f->i);
        puts_(b, num);
        break;
    case LOG_T_UINT:
        snprintf(num, sizeof(num), "%llu", (unsigned long long)f->u);
        puts_(b, num);
        break;
    case LOG_T_BOOL:
        puts_(b, f->b ? "true" : "false");
        break;
    case LOG_T_DIGEST: {
        char d[13];
        log_digest(f->sl.base, f->sl.len, d);
        json ? put_json_str(b, d, 12) : puts_(b, d);
        break;
    }
    default:
        puts_(b, json ? "null" : "?");
    }
}

static void put_key(struct lbuf *b, enum log_format fmt, const char *key, bool first)
{
    if (fmt == LOG_FORMAT_JSON) {
        if (!first)
            putc_(b, ',');
        putc_(b, '"');
        puts_(b, key);
        puts_(b, "\":");
    } else {
        if (!first)
            putc_(b, ' ');
        puts_(b, key);
        putc_(b, '=');
    }
}

size_t log_format(char *buf, size_t cap, enum log_format fmt, const struct timespec *ts,
                  enum log_level level, const char *event, const struct log_field *f, size_t n)
{
    static const char trunc_kv[] = " truncated=true";
    static const char trunc_json[] = ",\"truncated\":true";
    if (cap > LOG_LINE_MAX)
        cap = LOG_LINE_MAX;
    if (cap < 64)
        return 0;
    /* keep room for the truncation mark and the line end */
    struct lbuf b = {buf, 0, cap - sizeof(trunc_json) - 2, false};
    char tsb[96];
    struct tm tm;
    time_t sec = ts->tv_sec;
    gmtime_r(&sec, &tm);
    snprintf(tsb, sizeof(tsb), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long)(ts->tv_nsec / 1000000));
    const struct log_field head[3] = {LOG_S("ts", tsb), LOG_S("level", log_level_name(level)),
                                      LOG_S("event", event)};
    if (fmt == LOG_FORMAT_JSON)
        putc_(&b, '{');
    for (size_t i = 0; i < 3; i++) {
        put_key(&b, fmt, head[i].key, i == 0);
        put_value(&b, fmt, &head[i]);
    }
    bool truncated = b.full;
    for (size_t i = 0; i < n && !truncated; i++) {
        size_t mark = b.len;
        put_key(&b, fmt, f[i].key, false);
        put_value(&b, fmt, &f[i]);
        if (b.full) {
            b.len = mark;
            truncated = true;
        }
    }
    b.full = false;
    b.cap = cap;
    if (truncated)
        puts_(&b, fmt == LOG_FORMAT_JSON ? trunc_json : trunc_kv);
    if (fmt == LOG_FORMAT_JSON)
        putc_(&b, '}');
    putc_(&b, '\n');
    return b.len;
}

void log_emit(enum log_level level, const char *event, const struct log_field *f, size_t n)
{
    char buf[LOG_LINE_MAX];
    struct timespec ts;
    if (!log_enabled(level))
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    size_t len = log_format(buf, sizeof(buf), log_fmt, &ts, level, event, f, n);
    size_t off = 0;
    for (int tries = 0; off < len && tries < 8; tries++) {
        ssize_t w = write(log_fd, buf + off, len - off);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno != EINTR && errno != EAGAIN)
            break;
    }
}
