// SPDX-License-Identifier: MIT
// tls: one connection over a custom BIO whose ciphertext buffers belong to the connection and are
// freed whenever they empty (an idle connection carries no buffer); handshake, read, gather
// write, close_notify, and the failure facts that tls_conn_diag() turns into a diagnosis.
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls/tls_priv.h"

/* ---- ciphertext buffers ----
 * A buffer that fits a full TLS record gets exactly BUF_POOL_CAP bytes; freed ones go to a small
 * per-thread free list instead of back to malloc, so a record costs no malloc/free. The list is
 * bounded (BUF_POOL_MAX), so the memory it holds is too; connections still drop their buffer
 * whenever it empties. Larger buffers (a backlog) come from and go back to malloc. */

enum { BUF_POOL_CAP = 17 * 1024 + 512, BUF_POOL_MAX = 64 };

struct buf_pool {
    void *head; /* free buffers; the first bytes of each hold the next pointer */
    unsigned count;
    bool keyed; /* the thread-exit destructor is armed */
};

static _Thread_local struct buf_pool buf_pool;
static pthread_key_t buf_pool_key;
static pthread_once_t buf_pool_once = PTHREAD_ONCE_INIT;
static bool buf_pool_key_ok;

static void buf_pool_drain(void *arg)
{
    struct buf_pool *pool = arg;
    while (pool->head) {
        void *next;
        memcpy(&next, pool->head, sizeof(next));
        free(pool->head);
        pool->head = next;
    }
    pool->count = 0;
    pool->keyed = false; /* a later put on this thread re-arms it */
}

static void buf_pool_key_init(void)
{
    buf_pool_key_ok = pthread_key_create(&buf_pool_key, buf_pool_drain) == 0;
}

static uint8_t *buf_pool_get(void)
{
    struct buf_pool *pool = &buf_pool;
    if (pool->head == NULL)
        return malloc(BUF_POOL_CAP);
    uint8_t *p = pool->head;
    memcpy(&pool->head, p, sizeof(pool->head));
    pool->count--;
    return p;
}

static void buf_pool_put(uint8_t *p)
{
    struct buf_pool *pool = &buf_pool;
    if (!pool->keyed) {
        pthread_once(&buf_pool_once, buf_pool_key_init);
        pool->keyed = buf_pool_key_ok && pthread_setspecific(buf_pool_key, pool) == 0;
    }
    if (!pool->keyed || pool->count >= BUF_POOL_MAX) {
        free(p);
        return;
    }
    memcpy(p, &pool->head, sizeof(pool->head));
    pool->head = p;
    pool->count++;
}

static void buf_free(struct tls__buf *b)
{
    if (b->wipe && b->p != NULL) /* decrypted bytes: never left in a pooled or freed block */
        OPENSSL_cleanse(b->p, b->cap);
    if (b->cap == BUF_POOL_CAP)
        buf_pool_put(b->p);
    else
        free(b->p);
    memset(b, 0, sizeof(*b));
}

/* realloc() for a buffer that held plaintext: the old block is wiped before it goes. */
static uint8_t *buf_move(struct tls__buf *b, size_t cap)
{
    uint8_t *q = malloc(cap);
    if (q == NULL)
        return NULL;
    memcpy(q, b->p, b->len);
    struct tls__buf old = *b;
    buf_free(&old);
    return q;
}

uint8_t *tls__buf_reserve(struct tls__buf *b, size_t n)
{
    if ((size_t)b->off + b->len + n > b->cap) {
        if (b->off != 0) {
            memmove(b->p, b->p + b->off, b->len);
            b->off = 0;
        }
        if ((size_t)b->len + n > b->cap) {
            size_t need = (size_t)b->len + n;
            uint8_t *q;
            size_t cap;
            if (b->cap == 0 && need <= BUF_POOL_CAP) {
                cap = BUF_POOL_CAP;
                q = buf_pool_get();
            } else {
                cap = b->cap ? b->cap : 2048;
                while (cap < need)
                    cap *= 2;
                if (cap > UINT32_MAX)
                    return NULL;
                q = b->wipe ? buf_move(b, cap) : realloc(b->p, cap);
            }
            if (q == NULL)
                return NULL;
            b->p = q;
            b->cap = (uint32_t)cap;
        }
    }
    return b->p + b->off + b->len;
}

void tls__buf_commit(struct tls__buf *b, size_t n)
{
    assert((size_t)b->off + b->len + n <= b->cap);
    b->len += (uint32_t)n;
}

static int buf_append(struct tls__buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    uint8_t *q = tls__buf_reserve(b, n);
    if (q == NULL)
        return -ENOMEM;
    memcpy(q, p, n);
    tls__buf_commit(b, n);
    return 0;
}

/* Into an empty `b`, a block of exactly `n` bytes rather than a record-sized one: for bytes that
 * may wait long (a ClientHello queued for its handshake step). Growing it later reallocates. */
static int buf_append_exact(struct tls__buf *b, const void *p, size_t n)
{
    if (b->cap != 0 || n == 0)
        return buf_append(b, p, n);
    if ((b->p = malloc(n)) == NULL)
        return -ENOMEM;
    memcpy(b->p, p, n);
    b->cap = b->len = (uint32_t)n;
    b->off = 0;
    return 0;
}

void tls__buf_consume(struct tls__buf *b, size_t n)
{
    assert(n <= b->len);
    b->off += (uint32_t)n;
    b->len -= (uint32_t)n;
    if (b->len == 0)
        buf_free(b);
}

/* Empty this thread's OpenSSL error queue (SSL_get_error() needs it empty before each call):
 * peeking is much cheaper than ERR_clear_error() walking every slot, and the queue is almost
 * always empty already. */
static inline void err_clear(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/* ---- the BIO ---- */

static int bio_read(BIO *bio, char *out, int len)
{
    struct tls_conn *c = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (c->in.len == 0) {
        BIO_set_retry_read(bio);
        return -1;
    }
    size_t n = (size_t)len < c->in.len ? (size_t)len : c->in.len;
    memcpy(out, c->in.p + c->in.off, n);
    if (c->hs)
        tls__rec_count(&c->hs->r, (const uint8_t *)out, n);
    tls__buf_consume(&c->in, n);
    return (int)n;
}

static int bio_write(BIO *bio, const char *data, int len)
{
    struct tls_conn *c = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (len <= 0)
        return 0;
    if (buf_append(&c->out, data, (size_t)len) < 0)
        return -1;
    if (c->hs)
        tls__rec_count(&c->hs->w, (const uint8_t *)data, (size_t)len);
    return len;
}

static long bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    struct tls_conn *c = BIO_get_data(bio);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return c ? (long)c->in.len : 0;
    case BIO_CTRL_WPENDING:
        return c ? (long)c->out.len : 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sipedge_tls");
    if (m == NULL)
        return;
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    bio_method = m;
}

/* ---- failure facts ---- */

struct tls__fail *tls__fail_info(struct tls_conn *c)
{
    if (c->fail == NULL)
        c->fail = calloc(1, sizeof(*c->fail));
    return c->fail;
}

void tls__fail(struct tls_conn *c, enum tls_cause cause)
{
    if (c->flags & TLS_F_FAILED)
        return;
    c->flags |= TLS_F_FAILED;
    c->cause = (uint8_t)cause;
    tls__fail_info(c);
}

static void info_cb(const SSL *ssl, int where, int ret)
{
    if (!(where & SSL_CB_ALERT))
        return;
    struct tls_conn *c = SSL_get_app_data(ssl);
    int level = (ret >> 8) & 0xff, desc = ret & 0xff;
    if (c == NULL || (level != SSL3_AL_FATAL && desc != SSL_AD_CLOSE_NOTIFY))
        return;
    if (where & SSL_CB_READ) {
        if (desc == SSL_AD_CLOSE_NOTIFY)
            return;
        c->flags |= TLS_F_ALERT_RECV;
        c->alert_recv = (uint8_t)desc;
    } else if (desc != SSL_AD_CLOSE_NOTIFY) {
        c->flags |= TLS_F_ALERT_SENT;
        c->alert_sent = (uint8_t)desc;
    }
}

static void append_time(char *buf, size_t cap, size_t *pos, const char *key, const ASN1_TIME *t)
{
    struct tm tm;
    if (t && ASN1_TIME_to_tm(t, &tm) == 1)
        tls__appendf(buf, cap, pos, " %s=%04d-%02d-%02dT%02d:%02d:%02dZ", key, tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void append_dn(char *buf, size_t cap, size_t *pos, const char *key, const X509_NAME *n)
{
    char tmp[160];
    if (n == NULL)
        return;
    X509_NAME_oneline(n, tmp, sizeof(tmp));
    tls__appendf(buf, cap, pos, " %s=%s", key, tmp);
}

/* Our verification of the peer failed: keep the first error and the facts an operator needs. */
static int verify_cb(int ok, X509_STORE_CTX *store)
{
    if (ok)
        return 1;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
    struct tls__fail *f = c ? tls__fail_info(c) : NULL;
    if (f == NULL || f->verify_error != 0)
        return 0;
    int err = X509_STORE_CTX_get_error(store);
    f->verify_error = err;
    f->verify_depth = X509_STORE_CTX_get_error_depth(store);
    X509 *cur = X509_STORE_CTX_get_current_cert(store);
    X509 *leaf = X509_STORE_CTX_get0_cert(store);
    char *d = f->detail;
    size_t cap = sizeof(f->detail), pos = 0;
    tls__appendf(d, cap, &pos, "%s (depth %d):", X509_verify_cert_error_string(err),
                 f->verify_depth);
    switch (tls__cause_from_verify(err)) {
    case TLS_CAUSE_PEER_HOSTNAME_MISMATCH:
        if (c->peer)
            tls__appendf(d, cap, &pos, " expected %s, certificate has", c->peer->name);
        tls__appendf(d, cap, &pos, " ");
        tls__append_names(d, cap, &pos, leaf);
        break;
    case TLS_CAUSE_PEER_EXPIRED:
    case TLS_CAUSE_PEER_NOT_YET_VALID:
        if (cur) {
            append_dn(d, cap, &pos, "subject", X509_get_subject_name(cur));
            append_time(d, cap, &pos, "notBefore", X509_get0_notBefore(cur));
            append_time(d, cap, &pos, "notAfter", X509_get0_notAfter(cur));
        }
        break;
    default:
        if (cur) {
            append_dn(d, cap, &pos, "subject", X509_get_subject_name(cur));
            append_dn(d, cap, &pos, "issuer", X509_get_issuer_name(cur));
        }
        break;
    }
    return 0;
}

/* Decide why the last SSL call failed, from what we saw (alerts, verification) and the OpenSSL
 * error queue, and remember it. */
static void classify(struct tls_conn *c)
{
    unsigned long e = ERR_peek_error();
    int reason = ERR_GET_REASON(e);
    enum tls_cause cause;
    struct tls__fail *f = tls__fail_info(c);
    long verr = f && f->verify_error ? f->verify_error : SSL_get_verify_result(c->ssl);

    if (c->flags & TLS_F_ALERT_RECV)
        cause = tls__cause_from_alert(c->alert_recv);
    else if (verr != X509_V_OK)
        cause = tls__cause_from_verify(verr);
    else if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        cause = (e == 0) ? TLS_CAUSE_PROTOCOL_ERROR : TLS_CAUSE_INTERNAL;
    else {
        switch (reason) {
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            cause = TLS_CAUSE_PEER_NO_CERTIFICATE;
            break;
        case SSL_R_NO_SHARED_CIPHER:
        case SSL_R_NO_CIPHERS_AVAILABLE:
        case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
        case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
        case SSL_R_NO_SUITABLE_KEY_SHARE:
            cause = TLS_CAUSE_NO_SHARED_CIPHER;
            break;
        case SSL_R_UNSUPPORTED_PROTOCOL:
        case SSL_R_NO_PROTOCOLS_AVAILABLE:
        case SSL_R_VERSION_TOO_LOW:
        case SSL_R_VERSION_TOO_HIGH:
        case SSL_R_UNSUPPORTED_SSL_VERSION:
            cause = TLS_CAUSE_NO_SHARED_PROTOCOL;
            break;
        default:
            cause = TLS_CAUSE_PROTOCOL_ERROR;
            break;
        }
    }
    if (f && f->ossl_err == 0 && e != 0) {
        f->ossl_err = e;
        if (f->detail[0] == '\0') {
            size_t pos = 0;
            char tmp[200];
            ERR_error_string_n(e, tmp, sizeof(tmp));
            tls__appendf(f->detail, sizeof(f->detail), &pos, "%s", tmp);
        }
    }
    tls__fail(c, cause);
    err_clear();
}

/* Map the result `r` of an SSL call. */
static int ssl_result(struct tls_conn *c, int r)
{
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        err_clear();
        return TLS_WANT_INPUT;
    case SSL_ERROR_ZERO_RETURN:
        err_clear();
        c->flags |= TLS_F_PEER_CLOSED;
        if (!(c->flags & TLS_F_ESTABLISHED)) {
            tls__fail(c, TLS_CAUSE_PEER_CLOSED);
            return -EPROTO;
        }
        return 0;
    case SSL_ERROR_SYSCALL:
        /* Our BIO fails only when appending ciphertext cannot allocate. */
        err_clear();
        tls__fail(c, TLS_CAUSE_INTERNAL);
        return -ENOMEM;
    default:
        classify(c);
        return -EPROTO;
    }
}

/* Mark the handshake done. A server, and a TLS 1.2 client (the server's Finished came after it
 * checked our certificate), know the peer accepted it; a TLS 1.3 client learns it later. */
static void set_established(struct tls_conn *c)
{
    c->flags |= TLS_F_ESTABLISHED;
    if (c->side == TLS_SIDE_SERVER || SSL_version(c->ssl) != TLS1_3_VERSION)
        c->flags |= TLS_F_CONFIRMED;
    /* A TLS 1.3 client switches later, once OpenSSL has taken the server's ticket. */
    if (c->hs && (c->side == TLS_SIDE_SERVER || SSL_version(c->ssl) != TLS1_3_VERSION))
        tls__rec_takeover(c);
}

/* A TLS 1.3 client with its ticket, between records: switch now. */
static void client_switch(struct tls_conn *c)
{
    const struct tls__hs *hs = c->hs;
    if (hs && hs->ticket_seen && !hs->r.hdr_have && !hs->r.body_left && !hs->w.hdr_have &&
        !hs->w.body_left && !SSL_has_pending(c->ssl))
        tls__rec_takeover(c);
}

static void check_established(struct tls_conn *c)
{
    if (!(c->flags & TLS_F_ESTABLISHED) && c->ssl && SSL_is_init_finished(c->ssl))
        set_established(c);
}

/* ---- public API ---- */

/* The SSL object of `c`, over our BIO. false when out of memory (nothing attached then). */
static bool ssl_attach(struct tls_conn *c)
{
    pthread_once(&bio_once, bio_method_init);
    if (bio_method == NULL)
        return false;
    const struct tls_ctx *ctx = c->ctx;
    SSL *ssl = SSL_new(ctx->n_lanes ? ctx->lanes[c->lane].ssl_ctx : ctx->ssl_ctx);
    BIO *bio = BIO_new(bio_method);
    if (ssl == NULL || bio == NULL) {
        BIO_free(bio);
        SSL_free(ssl);
        err_clear();
        return false;
    }
    c->ssl = ssl;
    BIO_set_data(bio, c);
    SSL_set_bio(c->ssl, bio, bio); /* one BIO both ways: SSL_set_bio consumes its one reference */
    SSL_set_app_data(c->ssl, c);
    SSL_set_info_callback(c->ssl, info_cb);
    SSL_set_verify(c->ssl, SSL_get_verify_mode(c->ssl), verify_cb);
    return true;
}

static struct tls_conn *conn_alloc(struct tls_ctx *ctx)
{
    struct tls_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->ctx = tls_ctx_ref(ctx);
    c->side = (uint8_t)ctx->side;
    return c;
}

/* A server connection gets its SSL object (≈ 8.5 KB) and handshake state when its first
 * handshake step runs, not when it is accepted: in a reconnect storm thousands of accepted
 * connections wait for the handshake slice (core/worker.c) holding only their ClientHello. */
static bool not_started(const struct tls_conn *c)
{
    return c->ssl == NULL && c->rec == NULL;
}

static int server_start(struct tls_conn *c)
{
    bool ok = ssl_attach(c);
    if (ok && c->ctx->rec_offload) {
        ok = (c->hs = calloc(1, sizeof(*c->hs))) != NULL;
        if (ok)
            SSL_set_msg_callback(c->ssl, tls__rec_msg);
    }
    if (!ok) {
        SSL_free(c->ssl);
        c->ssl = NULL;
        tls__fail(c, TLS_CAUSE_INTERNAL);
        return -ENOMEM;
    }
    SSL_set_accept_state(c->ssl);
    return 0;
}

struct tls_conn *tls_conn_new_server_lane(struct tls_ctx *ctx, unsigned lane)
{
    if (ctx->side != TLS_SIDE_SERVER)
        return NULL;
    struct tls_conn *c = conn_alloc(ctx);
    if (c != NULL && ctx->n_lanes)
        c->lane = (uint8_t)(lane % ctx->n_lanes);
    return c;
}

struct tls_conn *tls_conn_new_server(struct tls_ctx *ctx)
{
    return tls_conn_new_server_lane(ctx, 0);
}

struct tls_conn *tls_conn_new_client(struct tls_ctx *ctx, struct tls_peer *peer)
{
    if (ctx->side != TLS_SIDE_CLIENT || peer == NULL || peer->name[0] == '\0')
        return NULL;
    struct tls_conn *c = conn_alloc(ctx);
    if (c == NULL)
        return NULL;
    if (!ssl_attach(c)) {
        tls_conn_free(c);
        return NULL;
    }
    c->peer = peer;
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    /* Names are checked by SAN only, as Expressway does: never fall back to the subject CN. */
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                            X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
    int ok = peer->name_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, peer->name)
                              : X509_VERIFY_PARAM_set1_host(vp, peer->name, 0) &&
                                    SSL_set_tlsext_host_name(c->ssl, peer->name);
    if (ok && peer->session) {
        if (peer->session_gen == ctx->gen)
            ok = SSL_set_session(c->ssl, peer->session);
        else
            tls_peer_forget_session(peer);
    }
    if (ok && ctx->rec_offload) {
        ok = (c->hs = calloc(1, sizeof(*c->hs))) != NULL;
        SSL_set_msg_callback(c->ssl, tls__rec_msg);
    }
    if (!ok) {
        tls_conn_free(c);
        err_clear();
        return NULL;
    }
    SSL_set_connect_state(c->ssl);
    return c;
}

void tls_conn_free(struct tls_conn *c)
{
    if (c == NULL)
        return;
    /* OpenSSL marks the session of an SSL freed without close_notify as not resumable; a
     * connection that simply ends (idle close, socket error) keeps its session usable. One that
     * failed with a fatal alert was already removed by OpenSSL. */
    if (c->ssl && !(c->flags & TLS_F_FAILED) && (c->flags & TLS_F_ESTABLISHED))
        SSL_set_shutdown(c->ssl, SSL_get_shutdown(c->ssl) | SSL_SENT_SHUTDOWN);
    SSL_free(c->ssl);
    tls__rec_free(c->rec);
    tls__hs_free(c->hs);
    buf_free(&c->in);
    buf_free(&c->out);
    free(c->fail);
    tls_ctx_unref(c->ctx);
    free(c);
}

int tls_conn_feed(struct tls_conn *c, const void *buf, size_t len)
{
    if ((size_t)c->in.len + len > TLS_IN_MAX)
        return -ENOBUFS;
    if (not_started(c)) /* a ClientHello waiting for its step */
        return buf_append_exact(&c->in, buf, len);
    return buf_append(&c->in, buf, len);
}

int tls_conn_handshake(struct tls_conn *c)
{
    if (c->flags & TLS_F_FAILED)
        return -EPROTO;
    if (c->flags & TLS_F_ESTABLISHED)
        return 0;
    if (not_started(c) && server_start(c) < 0)
        return -ENOMEM;
    err_clear();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        set_established(c);
        return 0;
    }
    r = ssl_result(c, r);
    return r == 0 ? -EPROTO : r;
}

bool tls_conn_established(const struct tls_conn *c)
{
    return (c->flags & TLS_F_ESTABLISHED) && !(c->flags & TLS_F_FAILED);
}

ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t cap)
{
    if (c->flags & TLS_F_FAILED)
        return -EPROTO;
    if (c->flags & TLS_F_PEER_CLOSED)
        return 0;
    if (cap == 0)
        return -EINVAL;
    if (c->rec)
        return tls__rec_read(c, buf, cap);
    if (not_started(c) && server_start(c) < 0)
        return -ENOMEM;
    err_clear();
    size_t n = 0;
    int r = SSL_read_ex(c->ssl, buf, cap, &n);
    check_established(c);
    if (c->rec) { /* the handshake completed in this call and the records are ours now */
        if (r == 1)
            return (ssize_t)n;
        return tls__rec_read(c, buf, cap);
    }
    if (r == 1) {
        c->flags |= TLS_F_CONFIRMED;
        if (c->hs && (c->flags & TLS_F_ESTABLISHED))
            client_switch(c);
        return (ssize_t)n;
    }
    ssize_t rc = ssl_result(c, r);
    if (rc == TLS_WANT_INPUT && c->hs && (c->flags & TLS_F_ESTABLISHED)) {
        client_switch(c);
        if (c->rec) /* records fed after the ticket are ours to read now */
            return tls__rec_read(c, buf, cap);
    }
    return rc;
}

static int write_chunk(struct tls_conn *c, const void *p, size_t n)
{
    size_t done = 0;
    err_clear();
    while (done < n) {
        size_t w = 0;
        int r = SSL_write_ex(c->ssl, (const char *)p + done, n - done, &w);
        if (r != 1) {
            int rc = ssl_result(c, r);
            return rc == TLS_WANT_INPUT || rc == 0 ? -EPROTO : rc;
        }
        done += w;
    }
    return 0;
}

ssize_t tls_conn_writev(struct tls_conn *c, const struct iovec *iov, int iovcnt)
{
    if (c->flags & TLS_F_FAILED)
        return -EPROTO;
    if (!(c->flags & TLS_F_ESTABLISHED) || (c->flags & TLS_F_SHUTDOWN))
        return -ENOTCONN;
    if (c->out.len >= TLS_OUT_MAX)
        return -ENOBUFS;
    if (c->rec)
        return tls__rec_writev(c, iov, iovcnt);
    char chunk[TLS_WRITE_CHUNK];
    size_t fill = 0, total = 0;
    int rc;
    for (int i = 0; i < iovcnt; i++) {
        const char *p = iov[i].iov_base;
        size_t len = iov[i].iov_len;
        total += len;
        while (len > 0) {
            if (fill == 0 && (len >= TLS_WRITE_CHUNK || i == iovcnt - 1)) {
                /* Whole records, or the last slice with nothing to coalesce it with, straight
                 * from the caller's bytes: no point copying them. */
                size_t n = i == iovcnt - 1 ? len : len - len % TLS_WRITE_CHUNK;
                if ((rc = write_chunk(c, p, n)) < 0)
                    return rc;
                p += n;
                len -= n;
                continue;
            }
            size_t n = TLS_WRITE_CHUNK - fill < len ? TLS_WRITE_CHUNK - fill : len;
            memcpy(chunk + fill, p, n);
            fill += n;
            p += n;
            len -= n;
            if (fill == TLS_WRITE_CHUNK) {
                if ((rc = write_chunk(c, chunk, fill)) < 0)
                    return rc;
                fill = 0;
            }
        }
    }
    if (fill > 0 && (rc = write_chunk(c, chunk, fill)) < 0)
        return rc;
    return (ssize_t)total;
}

struct slice tls_conn_out(const struct tls_conn *c)
{
    if (c->out.len == 0)
        return SLICE_NULL;
    return slice_make((const char *)c->out.p + c->out.off, c->out.len);
}

size_t tls_conn_out_len(const struct tls_conn *c)
{
    return c->out.len;
}

void tls_conn_out_consume(struct tls_conn *c, size_t n)
{
    tls__buf_consume(&c->out, n < c->out.len ? n : c->out.len);
}

int tls_conn_shutdown(struct tls_conn *c)
{
    if (!(c->flags & TLS_F_ESTABLISHED) || (c->flags & TLS_F_FAILED))
        return -ENOTCONN;
    if (c->flags & TLS_F_SHUTDOWN)
        return 0;
    if (c->rec) {
        int rc = tls__rec_shutdown(c);
        if (rc == 0)
            c->flags |= TLS_F_SHUTDOWN;
        return rc == 0 ? 0 : -ENOMEM;
    }
    err_clear();
    int r = SSL_shutdown(c->ssl);
    if (r < 0) {
        int e = SSL_get_error(c->ssl, r);
        err_clear();
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return c->out.len ? 0 : -ENOMEM;
    }
    c->flags |= TLS_F_SHUTDOWN;
    return 0;
}

void tls_conn_abort(struct tls_conn *c, enum tls_cause cause)
{
    tls__fail(c, cause);
}

enum tls_cause tls_conn_diag(const struct tls_conn *c, struct tls_diag *d)
{
    memset(d, 0, sizeof(*d));
    d->side = (enum tls_side)c->side;
    d->cause = (c->flags & TLS_F_FAILED) ? (enum tls_cause)c->cause : TLS_CAUSE_NONE;
    d->alert = -1;
    if (c->flags & TLS_F_ALERT_RECV) {
        d->alert = c->alert_recv;
        d->alert_from_peer = true;
    } else if (c->flags & TLS_F_ALERT_SENT) {
        d->alert = c->alert_sent;
    }
    if (c->fail) {
        d->verify_error = c->fail->verify_error;
        memcpy(d->detail, c->fail->detail, sizeof(d->detail));
        d->detail[sizeof(d->detail) - 1] = '\0';
    }
    if (c->peer) {
        size_t n = strnlen(c->peer->name, sizeof(d->expected) - 1);
        memcpy(d->expected, c->peer->name, n);
        d->expected[n] = '\0';
    }
    return d->cause;
}

bool tls_conn_confirmed(const struct tls_conn *c)
{
    return tls_conn_established(c) && (c->flags & TLS_F_CONFIRMED);
}

bool tls_conn_resumed(const struct tls_conn *c)
{
    if (c->rec)
        return tls_conn_established(c) && c->rec->resumed;
    return tls_conn_established(c) && SSL_session_reused(c->ssl);
}

const char *tls_conn_version(const struct tls_conn *c)
{
    if (c->rec)
        return c->rec->tls12 ? "TLSv1.2" : "TLSv1.3";
    return (c->flags & TLS_F_ESTABLISHED) ? SSL_get_version(c->ssl) : "none";
}

const char *tls_conn_cipher(const struct tls_conn *c)
{
    if (c->rec)
        return c->rec->cipher_name;
    const char *s = (c->flags & TLS_F_ESTABLISHED) ? SSL_get_cipher_name(c->ssl) : NULL;
    return s ? s : "none";
}

enum tls_side tls_conn_side(const struct tls_conn *c)
{
    return (enum tls_side)c->side;
}

bool tls_conn_own_records(const struct tls_conn *c)
{
    return c->rec != NULL;
}
