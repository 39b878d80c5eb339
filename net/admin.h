// SPDX-License-Identifier: MIT
// Admin HTTP on its own thread (libmicrohttpd): /healthz, /readyz (from provider callbacks),
// /metrics (Prometheus text from the metrics registry). GET and HEAD only.
#ifndef SIPEDGE_NET_ADMIN_H
#define SIPEDGE_NET_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics;
struct admin;

/** Text a provider callback appends to; bounded (ADMIN_TEXT_MAX), excess is cut. */
struct admin_text {
    char *buf;
    size_t len, cap;
};

/** Capacity of the /readyz body. */
#define ADMIN_TEXT_MAX 16384

/** Append printf-style to `t` (truncates at capacity, always NUL-terminated). */
__attribute__((format(printf, 2, 3))) void admin_text_printf(struct admin_text *t, const char *fmt,
                                                             ...);

/**
 * Readiness provider: returns true when the edge is ready (listening, keys loaded, at least one
 * upstream node reachable, not draining) and appends one `name: state` line per condition to
 * `out`. Called on the admin thread: read worker state only through atomics or snapshots.
 */
typedef bool (*admin_ready_fn)(void *arg, struct admin_text *out);

/**
 * Status provider: appends one line per upstream node (name, TLS state, last error) to `out`.
 * Admin thread, same rules as admin_ready_fn.
 */
typedef void (*admin_status_fn)(void *arg, struct admin_text *out);

/** What the admin server reads. Any member may be NULL: no metrics -> /metrics is empty; no
 * ready -> /readyz says not ready. */
struct admin_hooks {
    struct metrics *metrics;
    admin_ready_fn ready;
    admin_status_fn status;
    void *arg; /* passed to ready and status */
};

/**
 * Start the admin HTTP server on `address` (IPv4 or IPv6 literal) and `port` (0: ephemeral;
 * read it with admin_port()), serving from its own thread until admin_stop().
 * `hooks` is copied. Returns 0 with `*out` set, -EINVAL for a bad address, -ENOMEM, or the
 * bind error as -errno (-EADDRINUSE...).
 */
int admin_start(const char *address, uint16_t port, const struct admin_hooks *hooks,
                struct admin **out);

/** The bound port. */
uint16_t admin_port(const struct admin *a);

/** Stop serving, join the thread, free `a` (NULL: no-op). */
void admin_stop(struct admin *a);

#endif
