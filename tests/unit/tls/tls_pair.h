// SPDX-License-Identifier: MIT
// Helpers shared by the tls/ unit tests: a throwaway PKI (scripts/make-pki.sh), contexts, and two
// in-memory tls_conns driven against each other. Included by one test file each (static).
#ifndef SIPEDGE_TESTS_TLS_PAIR_H
#define SIPEDGE_TESTS_TLS_PAIR_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls.h"

#define TLS12 0x0303

static char pki[512];

/* Make the PKI in build/tmp/<name> (one directory per test binary: they may run in parallel). */
static inline void pki_init_at(const char *name)
{
    snprintf(pki, sizeof(pki), "%s/tmp/%s", SIPEDGE_BINARY_DIR, name);
    char cmd[1400];
    snprintf(cmd, sizeof(cmd), "'%s/scripts/make-pki.sh' '%s'", SIPEDGE_SOURCE_DIR, pki);
    cr_assert_eq(system(cmd), 0, "make-pki.sh failed: %s", cmd);
}

static inline void pki_init(void)
{
    pki_init_at("tls-pki");
}

static inline const char *f(const char *name)
{
    static char paths[16][600];
    static int next;
    char *p = paths[next++ % 16];
    snprintf(p, sizeof(paths[0]), "%s/%s", pki, name);
    return p;
}

static inline struct tls_ctx *server_ctx(const char *cert, const char *client_ca, bool require,
                                         uint16_t maxv)
{
    char crt[64], key[64], err[256] = "";
    snprintf(crt, sizeof(crt), "%s.crt", cert);
    snprintf(key, sizeof(key), "%s.key", cert);
    struct tls_server_opts o = {.cert_file = f(crt),
                                .key_file = f(key),
                                .client_ca_file = client_ca ? f(client_ca) : NULL,
                                .require_client_cert = require,
                                .max_version = maxv};
    struct tls_ctx *ctx = NULL;
    int rc = tls_server_ctx_new(&o, &ctx, err, sizeof(err));
    cr_assert_eq(rc, 0, "server ctx: %d %s", rc, err);
    return ctx;
}

static inline struct tls_ctx *client_ctx(const char *cert, const char *ca, uint16_t maxv)
{
    char crt[64], key[64], err[256] = "";
    snprintf(crt, sizeof(crt), "%s.crt", cert ? cert : "");
    snprintf(key, sizeof(key), "%s.key", cert ? cert : "");
    struct tls_client_opts o = {.cert_file = cert ? f(crt) : NULL,
                                .key_file = cert ? f(key) : NULL,
                                .ca_file = f(ca),
                                .max_version = maxv};
    struct tls_ctx *ctx = NULL;
    int rc = tls_client_ctx_new(&o, &ctx, err, sizeof(err));
    cr_assert_eq(rc, 0, "client ctx: %d %s", rc, err);
    return ctx;
}

/* Move `from`'s pending ciphertext to `to`, `step` bytes per feed (0: all at once). */
static inline size_t pump(struct tls_conn *from, struct tls_conn *to, size_t step)
{
    struct slice s = tls_conn_out(from);
    size_t n = s.len;
    for (size_t off = 0; off < s.len;) {
        size_t k = step && step < s.len - off ? step : s.len - off;
        cr_assert_eq(tls_conn_feed(to, s.base + off, k), 0);
        off += k;
    }
    tls_conn_out_consume(from, n);
    return n;
}

struct pair {
    struct tls_conn *c, *s;
    int rc_c, rc_s;
};

/* Drive both handshakes to an end (success or failure), then let each side read once so that a
 * late alert or TLS 1.3 session tickets are processed. */
static inline void run(struct pair *p, size_t step)
{
    for (int i = 0; i < 64; i++) {
        p->rc_c = tls_conn_handshake(p->c);
        size_t moved = pump(p->c, p->s, step);
        p->rc_s = tls_conn_handshake(p->s);
        moved += pump(p->s, p->c, step);
        if (moved == 0 && p->rc_c != TLS_WANT_INPUT && p->rc_s != TLS_WANT_INPUT)
            break;
        if (moved == 0 && (p->rc_c < 0 && p->rc_c != TLS_WANT_INPUT))
            break;
        if (moved == 0 && (p->rc_s < 0 && p->rc_s != TLS_WANT_INPUT))
            break;
    }
    char buf[64];
    for (int i = 0; i < 4; i++) {
        ssize_t r = tls_conn_read(p->c, buf, sizeof(buf));
        if (r < 0 && r != TLS_WANT_INPUT)
            p->rc_c = (int)r;
        pump(p->c, p->s, step);
        r = tls_conn_read(p->s, buf, sizeof(buf));
        if (r < 0 && r != TLS_WANT_INPUT)
            p->rc_s = (int)r;
        pump(p->s, p->c, step);
    }
}

static inline struct pair connect_pair(struct tls_ctx *sctx, struct tls_ctx *cctx,
                                       struct tls_peer *peer, size_t step)
{
    struct pair p = {.c = tls_conn_new_client(cctx, peer), .s = tls_conn_new_server(sctx)};
    cr_assert_not_null(p.c);
    cr_assert_not_null(p.s);
    run(&p, step);
    return p;
}

static inline void free_pair(struct pair *p)
{
    tls_conn_free(p->c);
    tls_conn_free(p->s);
}

/* Write `len` bytes of a pattern from `a` as `nslices` slices, read them on `b`. */
static inline void transfer(struct tls_conn *a, struct tls_conn *b, size_t len, int nslices,
                            size_t step)
{
    char *src = malloc(len), *dst = malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        src[i] = (char)(i * 7 + i / 251);
    struct iovec iov[64];
    cr_assert(nslices > 0 && nslices <= 64);
    size_t off = 0;
    for (int i = 0; i < nslices; i++) {
        size_t n = i == nslices - 1 ? len - off : (len / nslices) + (size_t)(i % 3) - 1;
        if (n > len - off)
            n = len - off;
        iov[i] = (struct iovec){src + off, n};
        off += n;
    }
    cr_assert_eq(tls_conn_writev(a, iov, nslices), (ssize_t)len);
    /* Move the ciphertext in receive-sized pieces, reading as a socket owner would. */
    size_t got = 0;
    for (int i = 0; i < 100000 && got < len; i++) {
        struct slice s = tls_conn_out(a);
        size_t k = s.len < 16384 ? s.len : 16384;
        for (size_t o = 0; o < k;) {
            size_t n = step && step < k - o ? step : k - o;
            cr_assert_eq(tls_conn_feed(b, s.base + o, n), 0);
            o += n;
        }
        tls_conn_out_consume(a, k);
        for (;;) {
            ssize_t r = tls_conn_read(b, dst + got, len + 1 - got);
            if (r == TLS_WANT_INPUT)
                break;
            cr_assert_gt(r, 0, "read: %zd", r);
            got += (size_t)r;
        }
        if (k == 0)
            break;
    }
    cr_assert_eq(got, len);
    cr_assert(memcmp(src, dst, len) == 0, "plaintext differs");
    free(src);
    free(dst);
}

#endif
