// SPDX-License-Identifier: MIT
// Event logging: one line per event (`ts=... level=... event=... key=value ...` or one JSON
// object), written with one write(2) so lines from different threads never interleave.
#ifndef SIPEDGE_CORE_LOG_H
#define SIPEDGE_CORE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/slice.h"

/** Severity; same values as enum cfg_log_level so a config value casts over. */
enum log_level {
    LOG_DEBUG = 0,
    LOG_INFO,
    LOG_WARN,
    LOG_ERROR,
    /* LOG_LEVEL_COUNT */
    LOG_LEVEL_COUNT
};

/** Line format; same values as enum cfg_log_format. */
enum log_format {
    LOG_FORMAT_KV = 0,
    LOG_FORMAT_JSON,
    /* LOG_FORMAT_COUNT */
    LOG_FORMAT_COUNT
};

enum log_ftype {
    LOG_T_STR = 0, /* NUL-terminated string (NULL prints as empty) */
    LOG_T_SLICE,   /* borrowed bytes */
    LOG_T_INT,
    LOG_T_UINT,
    LOG_T_BOOL,
    LOG_T_DIGEST, /* bytes logged only as the first 12 hex digits of their SHA-256 */
    /* LOG_T_COUNT */
    LOG_T_COUNT
};

/** One key=value of an event. Build with the LOG_* macros below; `key` must be a literal-like
 * string of [a-z0-9_] (not escaped). Values are escaped/quoted as the format needs. */
struct log_field {
    const char *key;
    enum log_ftype type;
    union {
        const char *s;
        struct slice sl;
        int64_t i;
        uint64_t u;
        bool b;
    };
};

#define LOG_S(k, v)  ((struct log_field){.key = (k), .type = LOG_T_STR, .s = (v)})
#define LOG_SL(k, v) ((struct log_field){.key = (k), .type = LOG_T_SLICE, .sl = (v)})
#define LOG_I(k, v)  ((struct log_field){.key = (k), .type = LOG_T_INT, .i = (int64_t)(v)})
#define LOG_U(k, v)  ((struct log_field){.key = (k), .type = LOG_T_UINT, .u = (uint64_t)(v)})
#define LOG_B(k, v)  ((struct log_field){.key = (k), .type = LOG_T_BOOL, .b = (v)})
/** A secret (token) logged as its digest: `key=<12 hex of SHA-256>`; the bytes never appear. */
#define LOG_DIGEST(k, p, n)                                                                        \
    ((struct log_field){.key = (k), .type = LOG_T_DIGEST, .sl = slice_make((p), (n))})

/** Longest line written, newline included (PIPE_BUF: atomic on pipes). Longer events lose
 * their last fields and get `truncated=true`. */
#define LOG_LINE_MAX 4096

/**
 * Set the destination fd (default 2), minimum level (default LOG_INFO) and format (default
 * kv). Call at start-up before threads log; the fd stays owned by the caller.
 */
void log_init(int fd, enum log_level level, enum log_format format);

/** Change the minimum level at run time (SIGHUP); any thread. */
void log_set_level(enum log_level level);

/** True when an event at `level` would be written; any thread, cheap. */
bool log_enabled(enum log_level level);

/**
 * Write one event: `n` fields from `f`. Any thread; one write(2) per line (retried on a short
 * write or EINTR, bounded). Write errors are ignored (logging must not fail the caller).
 */
void log_emit(enum log_level level, const char *event, const struct log_field *f, size_t n);

/**
 * Format one event for time `ts` into `buf` (capacity `cap`, at most LOG_LINE_MAX used),
 * newline-terminated, no NUL. Returns the length. Pure: for tests and for log_emit().
 */
size_t log_format(char *buf, size_t cap, enum log_format fmt, const struct timespec *ts,
                  enum log_level level, const char *event, const struct log_field *f, size_t n);

/** The first 12 hex digits of SHA-256(`p`, `n`) into `out` (NUL-terminated). */
void log_digest(const void *p, size_t n, char out[13]);

/** "debug", "info", "warn", "error". */
const char *log_level_name(enum log_level level);

/**
 * Log an event if its level is enabled: `log_event(LOG_WARN, "upstream_tls_alert",
 * LOG_S("node", name), LOG_S("alert", "unknown_ca"))`. Fields are built only when enabled.
 */
#define log_event(level, event, ...)                                                               \
    do {                                                                                           \
        if (log_enabled(level)) {                                                                  \
            const struct log_field log__f[] = {__VA_ARGS__};                                       \
            log_emit((level), (event), log__f, sizeof(log__f) / sizeof(log__f[0]));                \
        }                                                                                          \
    } while (0)

#endif
