// SPDX-License-Identifier: MIT
// tls: server and mTLS client contexts (built from PEM files, refcounted for reload), upstream
// peers with their kept session, and the certificate-name listing logged at start.
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/x509v3.h>

#include "tls/tls_priv.h"

#define TLS_DEFAULT_CIPHERS                                                                        \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_DEFAULT_SUITES                                                                         \
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define TLS_DEFAULT_CACHE   4096u
#define TLS_DEFAULT_TIMEOUT 7200u
#define TLS_DEFAULT_ROTATE  3600u
#define TLS_MAX_LANES       255u /* tls_conn.lane is a byte */

static const unsigned char sid_ctx[] = "sipedge";
static atomic_uint_fast64_t ctx_gen;

static void set_err(char *err, size_t errlen, const char *what, const char *file)
{
    if (err == NULL || errlen == 0)
        return;
    unsigned long e = ERR_peek_last_error();
    char reason[160] = "";
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    snprintf(err, errlen, "%s%s%s%s%s", what, file ? " " : "", file ? file : "", e ? ": " : "",
             reason);
}

/* A missing file reads as -ENOENT, anything else that failed while loading as -EINVAL. */
static int file_check(const char *file, const char *what, char *err, size_t errlen)
{
    if (file == NULL || *file == '\0') {
        if (err && errlen)
            snprintf(err, errlen, "%s: no file configured", what);
        return -EINVAL;
    }
    if (access(file, R_OK) != 0) {
        int e = errno;
        if (err && errlen)
            snprintf(err, errlen, "%s %s: %s", what, file, strerror(e));
        return -ENOENT;
    }
    return 0;
}

static int ctx_common(SSL_CTX *sc, const char *ciphers, const char *suites, uint16_t max_version,
                      char *err, size_t errlen)
{
    if (!SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION) ||
        (max_version && !SSL_CTX_set_max_proto_version(sc, max_version))) {
        set_err(err, errlen, "cannot set minimum TLS version", NULL);
        return -EINVAL;
    }
    if (!SSL_CTX_set_cipher_list(sc, ciphers ? ciphers : TLS_DEFAULT_CIPHERS)) {
        set_err(err, errlen, "bad TLS 1.2 cipher list", ciphers);
        return -EINVAL;
    }
    if (!SSL_CTX_set_ciphersuites(sc, suites ? suites : TLS_DEFAULT_SUITES)) {
        set_err(err, errlen, "bad TLS 1.3 cipher suites", suites);
        return -EINVAL;
    }
    SSL_CTX_set_options(sc, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* RELEASE_BUFFERS: the 16 KiB record buffers live only while a record is in flight. */
    SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                             SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return 0;
}

static int load_cert_key(SSL_CTX *sc, const char *cert, const char *key, char *err, size_t errlen)
{
    int rc;
    if ((rc = file_check(cert, "certificate", err, errlen)) < 0 ||
        (rc = file_check(key, "private key", err, errlen)) < 0)
        return rc;
    if (SSL_CTX_use_certificate_chain_file(sc, cert) != 1) {
        set_err(err, errlen, "cannot load certificate chain", cert);
        return -EINVAL;
    }
    if (SSL_CTX_use_PrivateKey_file(sc, key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            set_err(err, errlen, "private key does not match certificate", key);
        else
            set_err(err, errlen, "cannot load private key", key);
        return -EINVAL;
    }
    if (SSL_CTX_check_private_key(sc) != 1) {
        set_err(err, errlen, "private key does not match certificate", cert);
        return -EINVAL;
    }
    return 0;
}

static int load_ca(SSL_CTX *sc, const char *ca, char *err, size_t errlen)
{
    int rc = file_check(ca, "CA bundle", err, errlen);
    if (rc < 0)
        return rc;
    if (SSL_CTX_load_verify_locations(sc, ca, NULL) != 1) {
        set_err(err, errlen, "cannot load CA bundle", ca);
        return -EINVAL;
    }
    return 0;
}

/* The names a client certificate must carry one of (OpenSSL checks them as "hosts"). */
static int set_peer_names(SSL_CTX *sc, const char *const *names, size_t n, char *err, size_t errlen)
{
    if (n == 0)
        return 0;
    X509_VERIFY_PARAM *vp = SSL_CTX_get0_param(sc);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_WILDCARDS);
    for (size_t i = 0; i < n; i++) {
        int ok = i == 0 ? X509_VERIFY_PARAM_set1_host(vp, names[i], 0)
                        : X509_VERIFY_PARAM_add1_host(vp, names[i], 0);
        if (ok != 1) {
            set_err(err, errlen, "bad peer name", names[i]);
            return -EINVAL;
        }
    }
    return 0;
}

static struct tls_ctx *wrap(SSL_CTX *sc, enum tls_side side)
{
    struct tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
    ctx->ssl_ctx = sc;
    ctx->side = side;
    atomic_init(&ctx->refs, 1);
    ctx->gen = atomic_fetch_add(&ctx_gen, 1) + 1;
    return ctx;
}

/* One SSL_CTX of server context `ctx`, in library context `lib` (NULL: OpenSSL's default). */
static int server_ssl_ctx(const struct tls_server_opts *o, OSSL_LIB_CTX *lib, struct tls_ctx *ctx,
                          SSL_CTX **out, char *err, size_t errlen)
{
    SSL_CTX *sc = *out = SSL_CTX_new_ex(lib, NULL, TLS_server_method());
    if (sc == NULL) {
        set_err(err, errlen, "SSL_CTX_new failed", NULL);
        return -ENOMEM;
    }
    SSL_CTX_set_app_data(sc, ctx);
    int rc = ctx_common(sc, o->ciphers, o->ciphersuites, o->max_version, err, errlen);
    if (rc == 0)
        rc = load_cert_key(sc, o->cert_file, o->key_file, err, errlen);
    if (rc == 0 && o->client_ca_file) {
        rc = load_ca(sc, o->client_ca_file, err, errlen);
        if (rc == 0) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file_ex(o->client_ca_file, lib, NULL);
            if (names)
                SSL_CTX_set_client_CA_list(sc, names);
            int mode = SSL_VERIFY_PEER;
            if (o->require_client_cert)
                mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
            SSL_CTX_set_verify(sc, mode, NULL);
            rc = set_peer_names(sc, o->peer_names, o->n_peer_names, err, errlen);
        }
    }
    if (rc < 0)
        return rc;
    /* Stateless tickets for TLS 1.2 and 1.3 (keys rotated, tls_ticket.c); the session-id cache
     * (tls_sess.c) serves TLS 1.2 clients that resume by session id. */
    tls__sess_install(sc);
    tls__tickets_install(sc);
    SSL_CTX_set_timeout(sc, o->session_timeout_s ? o->session_timeout_s : TLS_DEFAULT_TIMEOUT);
    SSL_CTX_set_session_id_context(sc, sid_ctx, sizeof(sid_ctx) - 1);
    /* One ticket per handshake is enough for a client that keeps one connection. */
    SSL_CTX_set_num_tickets(sc, 1);
    /* The key log is how the TLS 1.3 application secrets reach tls_rec.c. */
    if (ctx->rec_offload)
        SSL_CTX_set_keylog_callback(sc, tls__rec_keylog);
    return 0;
}

static int provider_name(OSSL_PROVIDER *p, void *arg)
{
    if (strcmp(OSSL_PROVIDER_get0_name(p), "default") != 0)
        *(bool *)arg = false;
    return 1;
}

/* Lanes: with several workers, each gets an SSL_CTX of its own in a library context of its own.
 * OpenSSL 3.0 looks algorithms up by name dozens of times per handshake (every HKDF step of the
 * key schedule fetches its KDF and digest), each lookup under read locks of the library context;
 * workers that share one context bounce those locks' cache lines between CPUs: with two threads
 * handshaking at once, lanes take 10-17 % off the server's CPU per TLS 1.3 handshake (bench-tls
 * lanes; docs/BENCHMARKS.md, storm, twelfth session). Made only
 * when OpenSSL runs on its default provider alone (the Debian configuration): a lane loads that
 * provider, and another set-up (FIPS) would not be what the operator configured. */
static bool lanes_possible(void)
{
    bool only_default = true;
    OSSL_PROVIDER_do_all(NULL, provider_name, &only_default);
    return only_default && !EVP_default_properties_is_fips_enabled(NULL);
}

/* Lane i's library context, made at the first context with that lane and kept until the process
 * ends. OpenSSL 3.0 keeps per-thread state (random generators) for each library context a thread
 * used and frees it when the thread exits: a library context freed while the workers that used it
 * still run (the old context after a reload) made them crash at their exit. */
static OSSL_LIB_CTX *lane_libs[TLS_MAX_LANES];
static pthread_mutex_t lane_libs_lock = PTHREAD_MUTEX_INITIALIZER;

static OSSL_LIB_CTX *lane_lib(unsigned i)
{
    pthread_mutex_lock(&lane_libs_lock);
    if (lane_libs[i] == NULL) {
        OSSL_LIB_CTX *lib = OSSL_LIB_CTX_new();
        if (lib != NULL && OSSL_PROVIDER_load(lib, "default") != NULL)
            lane_libs[i] = lib;
        else
            OSSL_LIB_CTX_free(lib);
    }
    OSSL_LIB_CTX *lib = lane_libs[i];
    pthread_mutex_unlock(&lane_libs_lock);
    return lib;
}

static int make_lanes(const struct tls_server_opts *o, struct tls_ctx *ctx, char *err,
                      size_t errlen)
{
    unsigned n = o->lanes > TLS_MAX_LANES ? TLS_MAX_LANES : o->lanes; /* workers share beyond */
    ctx->lanes = calloc(n, sizeof(*ctx->lanes));
    if (ctx->lanes == NULL)
        return -ENOMEM;
    ctx->n_lanes = n;
    X509 *leaf = SSL_CTX_get0_certificate(ctx->ssl_ctx);
    for (unsigned i = 0; i < ctx->n_lanes; i++) {
        struct tls__lane *l = &ctx->lanes[i];
        if ((l->lib = lane_lib(i)) == NULL) {
            set_err(err, errlen, "cannot make an OpenSSL library context", NULL);
            return -ENOMEM;
        }
        int rc = server_ssl_ctx(o, l->lib, ctx, &l->ssl_ctx, err, errlen);
        if (rc < 0)
            return rc;
        /* Each lane read the files anew: all must serve what the first one loaded. */
        X509 *x = SSL_CTX_get0_certificate(l->ssl_ctx);
        if (leaf == NULL || x == NULL || X509_cmp(leaf, x) != 0) {
            snprintf(err, errlen, "certificate %s changed while it was being loaded", o->cert_file);
            return -EAGAIN;
        }
    }
    return 0;
}

int tls_server_ctx_new(const struct tls_server_opts *o, struct tls_ctx **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    tls__getpid_init();
    ERR_clear_error();
    struct tls_ctx *ctx = wrap(NULL, TLS_SIDE_SERVER);
    if (ctx == NULL) {
        set_err(err, errlen, "out of memory", NULL);
        return -ENOMEM;
    }
    ctx->rec_offload = !o->openssl_records;
    ctx->own_aead = o->own_aead;
    int rc = tls__tickets_init(ctx, o->ticket_rotate_s ? o->ticket_rotate_s : TLS_DEFAULT_ROTATE);
    if (rc < 0)
        set_err(err, errlen, "cannot make session ticket keys", NULL);
    if (rc == 0 && (rc = tls__sess_init(ctx, o->session_cache_size ? o->session_cache_size
                                                                   : TLS_DEFAULT_CACHE)) < 0)
        set_err(err, errlen, "cannot make the session cache", NULL);
    if (rc == 0)
        rc = server_ssl_ctx(o, NULL, ctx, &ctx->ssl_ctx, err, errlen);
    if (rc == 0 && o->lanes > 1 && lanes_possible())
        rc = make_lanes(o, ctx, err, errlen);
    if (rc < 0)
        tls_ctx_unref(ctx);
    else
        *out = ctx;
    ERR_clear_error();
    return rc;
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess);

int tls_client_ctx_new(const struct tls_client_opts *o, struct tls_ctx **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    tls__getpid_init();
    ERR_clear_error();
    SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
    if (sc == NULL) {
        set_err(err, errlen, "SSL_CTX_new failed", NULL);
        return -ENOMEM;
    }
    int rc = ctx_common(sc, o->ciphers, o->ciphersuites, o->max_version, err, errlen);
    if (rc == 0 && (o->cert_file || o->key_file))
        rc = load_cert_key(sc, o->cert_file, o->key_file, err, errlen);
    if (rc == 0)
        rc = load_ca(sc, o->ca_file, err, errlen);
    if (rc == 0) {
        SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
        /* The client keeps sessions itself (one per upstream node, struct tls_peer): no internal
         * cache, but the new-session callback sees every session, including TLS 1.3 tickets. */
        SSL_CTX_set_session_cache_mode(sc,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(sc, on_new_session);
    }
    if (rc == 0 && (*out = wrap(sc, TLS_SIDE_CLIENT)) == NULL)
        rc = -ENOMEM;
    if (rc == 0 && !o->openssl_records) {
        (*out)->rec_offload = true;
        (*out)->rekey_records = o->rekey_records;
        (*out)->own_aead = o->own_aead;
        SSL_CTX_set_keylog_callback(sc, tls__rec_keylog);
    }
    if (rc == 0 && o->reuse_verification_s && tls__vcache_init(*out, o->reuse_verification_s) < 0) {
        set_err(err, errlen, "out of memory", NULL);
        tls_ctx_unref(*out);
        *out = NULL;
        return -ENOMEM; /* the context freed its SSL_CTX */
    }
    if (rc < 0)
        SSL_CTX_free(sc);
    ERR_clear_error();
    return rc;
}

struct tls_ctx *tls_ctx_ref(struct tls_ctx *ctx)
{
    atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
    return ctx;
}

void tls_ctx_unref(struct tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    if (atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) == 1) {
        tls__sess_free(ctx); /* its sessions may come from any lane: before the lanes go */
        tls__vcache_free(ctx);
        SSL_CTX_free(ctx->ssl_ctx);
        for (unsigned i = 0; i < ctx->n_lanes; i++) {
            SSL_CTX_free(ctx->lanes[i].ssl_ctx); /* not its library context: lane_lib() */
        }
        free(ctx->lanes);
        tls__tickets_free(ctx);
        free(ctx);
    }
}

void tls_ctx_swap(struct tls_ctx **slot, struct tls_ctx *next)
{
    struct tls_ctx *old = *slot;
    *slot = next;
    tls_ctx_unref(old);
}

uint64_t tls_ctx_verifications_reused(const struct tls_ctx *ctx)
{
    return tls__vcache_reused(ctx);
}

unsigned tls_ctx_lanes(const struct tls_ctx *ctx)
{
    return ctx->n_lanes;
}

enum tls_side tls_ctx_side(const struct tls_ctx *ctx)
{
    return ctx->side;
}

int tls_ctx_cert_names(const struct tls_ctx *ctx, char *buf, size_t cap)
{
    if (buf == NULL || cap == 0)
        return -EINVAL;
    buf[0] = '\0';
    X509 *x = SSL_CTX_get0_certificate(ctx->ssl_ctx);
    if (x == NULL)
        return -ENOENT;
    size_t pos = 0;
    tls__append_names(buf, cap, &pos, x);
    return (int)pos;
}

/* ---- peers ---- */

int tls_peer_init(struct tls_peer *peer, const char *name)
{
    memset(peer, 0, sizeof(*peer));
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= sizeof(peer->name))
        return -EINVAL;
    memcpy(peer->name, name, n + 1);
    unsigned char addr[16];
    peer->name_is_ip = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
    return 0;
}

void tls_peer_forget_session(struct tls_peer *peer)
{
    SSL_SESSION_free(peer->session);
    peer->session = NULL;
    peer->session_gen = 0;
}

void tls_peer_deinit(struct tls_peer *peer)
{
    tls_peer_forget_session(peer);
}

/* Every session the server hands us (after a TLS 1.2 handshake, or as a TLS 1.3 ticket after it)
 * replaces the one kept for the node. Returning 1 keeps our reference. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct tls_conn *c = SSL_get_app_data(ssl);
    if (c == NULL)
        return 0;
    c->flags |= TLS_F_CONFIRMED; /* a ticket comes only after the server accepted our Finished */
    if (c->hs)
        c->hs->ticket_seen = true; /* the record layer may switch now (tls_conn_read) */
    if (c->peer == NULL || !SSL_SESSION_is_resumable(sess))
        return 0;
    tls_peer_forget_session(c->peer);
    c->peer->session = sess;
    c->peer->session_gen = c->ctx->gen;
    return 1;
}
