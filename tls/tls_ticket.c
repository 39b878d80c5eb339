// SPDX-License-Identifier: MIT
// tls: session-ticket keys of a server context, rotated: new tickets are sealed with the current
// key; tickets under the previous key are still accepted (and renewed), older ones are not. So a
// stolen ticket key exposes at most two rotation periods of resumed sessions.
#include <pthread.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "tls/tls_priv.h"

struct tls__ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

struct tls__tickets {
    pthread_mutex_t lock; /* handshakes of every worker share the context */
    struct tls__ticket_key cur, prev;
    bool have_prev;
    uint32_t period_s;
    time_t rotated_at; /* CLOCK_MONOTONIC seconds */
};

static time_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static int new_key(struct tls__ticket_key *k)
{
    return RAND_bytes(k->name, sizeof(k->name)) == 1 && RAND_bytes(k->aes, sizeof(k->aes)) == 1 &&
                   RAND_bytes(k->hmac, sizeof(k->hmac)) == 1
               ? 0
               : -EIO;
}

/* Caller holds the lock. */
static int rotate_locked(struct tls__tickets *t)
{
    struct tls__ticket_key k;
    if (new_key(&k) < 0)
        return -EIO;
    t->prev = t->cur;
    t->have_prev = true;
    t->cur = k;
    t->rotated_at = mono_s();
    return 0;
}

/* AES-256-CBC fetched once: EVP_aes_256_cbc() would make OpenSSL 3 look the implementation up
 * again (by name, under its store's lock) on every ticket sealed or opened. */
static EVP_CIPHER *cbc;
static pthread_once_t cbc_once = PTHREAD_ONCE_INIT;

static void cbc_fetch(void)
{
    cbc = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
}

static int mac_init(EVP_MAC_CTX *hctx, const unsigned char *key)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_init(hctx, key, 32, params);
}

static int ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    struct tls_ctx *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    struct tls__tickets *t = ctx ? ctx->tickets : NULL;
    if (t == NULL)
        return -1;
    struct tls__ticket_key k;
    int rc = 1;
    pthread_mutex_lock(&t->lock);
    if (t->period_s && mono_s() - t->rotated_at >= (time_t)t->period_s)
        rotate_locked(t); /* on failure the current key stays: still correct, just older */
    if (enc) {
        k = t->cur;
    } else if (memcmp(key_name, t->cur.name, 16) == 0) {
        k = t->cur;
        /* A TLS 1.3 client uses a ticket once: always hand out the next one. */
        rc = SSL_version(ssl) == TLS1_3_VERSION ? 2 : 1;
    } else if (t->have_prev && memcmp(key_name, t->prev.name, 16) == 0) {
        k = t->prev;
        rc = 2; /* valid, but issue a ticket under the current key */
    } else {
        rc = 0; /* unknown or retired key: full handshake */
    }
    pthread_mutex_unlock(&t->lock);
    if (rc == 0)
        return 0;
    pthread_once(&cbc_once, cbc_fetch);
    if (cbc == NULL)
        rc = -1;
    else if (enc) {
        if (RAND_bytes(iv, 16) != 1)
            rc = -1;
        else {
            memcpy(key_name, k.name, 16);
            if (EVP_EncryptInit_ex(cctx, cbc, NULL, k.aes, iv) != 1 || mac_init(hctx, k.hmac) != 1)
                rc = -1;
        }
    } else if (EVP_DecryptInit_ex(cctx, cbc, NULL, k.aes, iv) != 1 || mac_init(hctx, k.hmac) != 1) {
        rc = -1;
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

int tls__tickets_init(struct tls_ctx *ctx, uint32_t period_s)
{
    struct tls__tickets *t = OPENSSL_zalloc(sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    if (new_key(&t->cur) < 0) {
        OPENSSL_free(t);
        return -EIO;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->period_s = period_s;
    t->rotated_at = mono_s();
    ctx->tickets = t;
    return 0;
}

void tls__tickets_install(SSL_CTX *sc)
{
    SSL_CTX_set_tlsext_ticket_key_evp_cb(sc, ticket_cb);
}

void tls__tickets_free(struct tls_ctx *ctx)
{
    struct tls__tickets *t = ctx->tickets;
    if (t == NULL)
        return;
    pthread_mutex_destroy(&t->lock);
    OPENSSL_clear_free(t, sizeof(*t));
    ctx->tickets = NULL;
}

int tls_ctx_rotate_ticket_key(struct tls_ctx *ctx)
{
    struct tls__tickets *t = ctx->tickets;
    if (t == NULL)
        return -EINVAL;
    pthread_mutex_lock(&t->lock);
    int rc = rotate_locked(t);
    pthread_mutex_unlock(&t->lock);
    return rc;
}
