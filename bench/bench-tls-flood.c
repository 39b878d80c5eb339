// SPDX-License-Identifier: MIT
// bench-tls-flood: what a TLS 1.3 KeyUpdate(update_requested) flood costs the edge (issue 11).
// An attacker (OpenSSL client) sends KeyUpdates in batches of `batch` records (one "recv" each)
// and never reads; the edge's server connection (sipedge's record layer) reads each batch and its
// output is dropped. When the edge cuts the connection the attacker reconnects (the handshake's
// server-side CPU is counted: it is part of what the flood costs). Only the edge's calls are timed
// (CLOCK_THREAD_CPUTIME_ID). Prints, per MB of flood, the edge's CPU, the bytes it wrote back and
// the connections the attacker needed; median of `runs`.
// Usage: scripts/make-pki.sh DIR && bench-tls-flood DIR [runs=5] [MB=1] [batch=16]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls/tls.h"
#include "tls/tls_priv.h"

static const char *pki;

static const char *path(const char *name)
{
    static char buf[8][512];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof(buf[0]), "%s/%s", pki, name);
    return p;
}

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pump(struct tls_conn *from, struct tls_conn *to)
{
    struct slice s = tls_conn_out(from);
    if (s.len && tls_conn_feed(to, s.base, s.len) == 0)
        tls_conn_out_consume(from, s.len);
}

struct totals {
    uint64_t edge_ns, hs_ns, edge_out, flood, conns, failures;
};

/* A connected pair; the server's handshake CPU goes to t->edge_ns. NULL server on failure. */
static void pair_up(struct tls_ctx *sctx, struct tls_ctx *cctx, struct tls_peer *peer,
                    struct tls_conn **c, struct tls_conn **s, struct totals *t)
{
    *c = tls_conn_new_client(cctx, peer);
    *s = tls_conn_new_server(sctx);
    char buf[64];
    for (int i = 0; i < 16; i++) {
        tls_conn_handshake(*c);
        if (tls_conn_established(*c))
            tls_conn_read(*c, buf, sizeof(buf));
        pump(*c, *s);
        uint64_t t0 = cpu_ns();
        int rs = tls_conn_handshake(*s);
        t->edge_ns += cpu_ns() - t0;
        t->hs_ns += cpu_ns() - t0;
        pump(*s, *c);
        if (rs == 0 && tls_conn_established(*c) && tls_conn_out_len(*c) == 0)
            break;
    }
    t->conns++;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void run(struct tls_ctx *sctx, struct tls_ctx *cctx, size_t flood, int batch,
                struct totals *t)
{
    struct tls_peer peer;
    tls_peer_init(&peer, "localhost");
    struct tls_conn *c = NULL, *s = NULL;
    memset(t, 0, sizeof(*t));
    while (t->flood < flood) {
        if (s == NULL)
            pair_up(sctx, cctx, &peer, &c, &s, t);
        /* the attacker's batch: KeyUpdate(update_requested) records, one after another */
        for (int i = 0; i < batch; i++) {
            if (SSL_key_update(c->ssl, SSL_KEY_UPDATE_REQUESTED) != 1 ||
                SSL_do_handshake(c->ssl) != 1) {
                fprintf(stderr, "attacker cannot send a KeyUpdate\n");
                exit(1);
            }
        }
        struct slice in = tls_conn_out(c);
        t->flood += in.len;
        char buf[4096];
        uint64_t t0 = cpu_ns();
        ssize_t r = tls_conn_feed(s, in.base, in.len);
        while (r == 0 && (r = tls_conn_read(s, buf, sizeof(buf))) > 0)
            ;
        t->edge_out += tls_conn_out_len(s);
        tls_conn_out_consume(s, tls_conn_out_len(s)); /* the attacker never reads it */
        t->edge_ns += cpu_ns() - t0;
        tls_conn_out_consume(c, in.len);
        if (r != TLS_WANT_INPUT) { /* cut: the worker closes it; the attacker reconnects */
            t->failures++;
            tls_conn_free(c);
            tls_conn_free(s);
            c = s = NULL;
        }
    }
    tls_conn_free(c);
    tls_conn_free(s);
    tls_peer_deinit(&peer);
    ERR_clear_error();
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PKI_DIR [runs=5] [MB=1] [batch=16]\n", argv[0]);
        return 2;
    }
    pki = argv[1];
    int runs = argc > 2 ? atoi(argv[2]) : 5, batch = argc > 4 ? atoi(argv[4]) : 16;
    double mb = argc > 3 ? atof(argv[3]) : 1.0;
    if (runs < 1 || batch < 1 || mb <= 0)
        return 2;
    char err[256] = "";
    struct tls_server_opts so = {.cert_file = path("server.crt"), .key_file = path("server.key")};
    struct tls_client_opts co = {.ca_file = path("ca.crt"), .openssl_records = true};
    struct tls_ctx *sctx = NULL, *cctx = NULL;
    if (tls_server_ctx_new(&so, &sctx, err, sizeof(err)) < 0 ||
        tls_client_ctx_new(&co, &cctx, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    size_t flood = (size_t)(mb * 1024 * 1024);
    uint64_t *ns = calloc((size_t)runs, sizeof(*ns)), *hs = calloc((size_t)runs, sizeof(*hs));
    struct totals t = {0};
    for (int i = 0; i < runs; i++) {
        run(sctx, cctx, flood, batch, &t);
        ns[i] = t.edge_ns;
        hs[i] = t.hs_ns;
    }
    qsort(ns, (size_t)runs, sizeof(*ns), cmp_u64);
    qsort(hs, (size_t)runs, sizeof(*hs), cmp_u64);
    double per_mb = (double)(1024 * 1024) / (double)t.flood;
    printf("KeyUpdate(update_requested) flood, TLS 1.3, batches of %d records, %.1f MB, median of "
           "%d runs\n",
           batch, mb, runs);
    printf("edge CPU per MB of flood: %.1f ms (of which the attacker's reconnect handshakes %.1f "
           "ms); edge output per MB: %.0f KB; connections per MB: %.0f\n",
           (double)ns[runs / 2] / 1e6 * per_mb, (double)hs[runs / 2] / 1e6 * per_mb,
           (double)t.edge_out / 1024.0 * per_mb, (double)t.conns * per_mb);
    free(ns);
    free(hs);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
    return 0;
}
