// SPDX-License-Identifier: MIT
// tls: verifications reused by a client context (tls_client_opts.reuse_verification_s), for
// sipedge-bench: one machine makes the handshakes of thousands of devices, and walking the
// server's chain (X509_verify_cert) was 40 % of a client's full TLS 1.3 handshake. A leaf
// certificate verified for a peer name (chain to a trusted CA, validity, the name) is accepted
// again for that same name without the walk, for ttl_s seconds and never past its notAfter. The
// handshake still checks the server's CertificateVerify (TLS 1.3) or ServerKeyExchange (1.2)
// signature with that certificate's key, so a server without its private key still fails.
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>

#include "tls/tls_priv.h"

#define VCACHE_ENTRIES 8 /* a generator talks to a few edges */

struct vc_ent {
    X509 *leaf; /* NULL: free */
    char name[sizeof(((struct tls_peer *)0)->name)];
    time_t until;
};

struct tls__vcache {
    pthread_mutex_t lock;
    uint32_t ttl_s;
    unsigned next; /* the entry the next new one replaces */
    struct vc_ent ent[VCACHE_ENTRIES];
    atomic_uint_fast64_t reused;
};

static time_t not_after(const X509 *x)
{
    struct tm tm;
    const ASN1_TIME *t = X509_get0_notAfter(x);
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
}

static bool lookup(struct tls__vcache *v, X509 *leaf, const char *name, time_t now)
{
    bool hit = false;
    pthread_mutex_lock(&v->lock);
    for (unsigned i = 0; i < VCACHE_ENTRIES && !hit; i++) {
        struct vc_ent *e = &v->ent[i];
        hit = e->leaf != NULL && now < e->until && strcmp(e->name, name) == 0 &&
              X509_cmp(e->leaf, leaf) == 0;
    }
    pthread_mutex_unlock(&v->lock);
    return hit;
}

static void remember(struct tls__vcache *v, X509 *leaf, const char *name, time_t now)
{
    time_t until = now + (time_t)v->ttl_s, end = not_after(leaf);
    if (end < until)
        until = end;
    if (until <= now || strlen(name) >= sizeof(v->ent[0].name) || X509_up_ref(leaf) != 1)
        return;
    pthread_mutex_lock(&v->lock);
    struct vc_ent *e = NULL;
    for (unsigned i = 0; i < VCACHE_ENTRIES && e == NULL; i++)
        if (v->ent[i].leaf != NULL && strcmp(v->ent[i].name, name) == 0 &&
            X509_cmp(v->ent[i].leaf, leaf) == 0)
            e = &v->ent[i]; /* the same: renewed */
    if (e == NULL)
        e = &v->ent[v->next++ % VCACHE_ENTRIES];
    X509_free(e->leaf);
    e->leaf = leaf;
    strcpy(e->name, name);
    e->until = until;
    pthread_mutex_unlock(&v->lock);
}

/* SSL_CTX_set_cert_verify_callback: in place of X509_verify_cert() for the server's chain. */
static int verify_reusing(X509_STORE_CTX *xs, void *arg)
{
    (void)arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
    struct tls__vcache *v = c && c->ctx ? c->ctx->vcache : NULL;
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    if (v == NULL || c->peer == NULL || leaf == NULL)
        return X509_verify_cert(xs);
    time_t now = time(NULL);
    if (lookup(v, leaf, c->peer->name, now)) {
        X509_STORE_CTX_set_error(xs, X509_V_OK);
        atomic_fetch_add_explicit(&v->reused, 1, memory_order_relaxed);
        return 1;
    }
    int ok = X509_verify_cert(xs);
    if (ok == 1)
        remember(v, leaf, c->peer->name, now);
    return ok;
}

int tls__vcache_init(struct tls_ctx *ctx, uint32_t ttl_s)
{
    struct tls__vcache *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    pthread_mutex_init(&v->lock, NULL);
    v->ttl_s = ttl_s;
    ctx->vcache = v;
    SSL_CTX_set_cert_verify_callback(ctx->ssl_ctx, verify_reusing, NULL);
    return 0;
}

void tls__vcache_free(struct tls_ctx *ctx)
{
    struct tls__vcache *v = ctx->vcache;
    if (v == NULL)
        return;
    for (unsigned i = 0; i < VCACHE_ENTRIES; i++)
        X509_free(v->ent[i].leaf);
    pthread_mutex_destroy(&v->lock);
    free(v);
    ctx->vcache = NULL;
}

uint64_t tls__vcache_reused(const struct tls_ctx *ctx)
{
    return ctx->vcache ? atomic_load_explicit(&ctx->vcache->reused, memory_order_relaxed) : 0;
}
