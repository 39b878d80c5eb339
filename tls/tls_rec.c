// SPDX-License-Identifier: MIT
// tls: our own record layer for established server-side connections: TLS 1.3 (RFC 8446 §5) and
// TLS 1.2 AEAD suites (RFC 5246 §6.2.3.3, RFC 5288, RFC 7905). Once a handshake is done, OpenSSL's
// SSL object (≈ 14 KB per connection) is freed and records are protected here with the keys
// OpenSSL derived, through one AEAD context per thread.
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/obj_mac.h>

#include "tls/tls_priv.h"

enum {
    REC_HDR = 5,
    REC_TAG = 16,
    REC_PLAIN_MAX = 16384,                   /* 2^14: largest content per record */
    REC_CIPHER_MAX = REC_PLAIN_MAX + 256,    /* 2^14 + 256: largest TLSCiphertext.length */
    REC12_CIPHER_MAX = REC_PLAIN_MAX + 2048, /* TLS 1.2 allows 2^14 + 2048 */
    GCM_EXPLICIT = 8,                        /* TLS 1.2 AES-GCM: explicit nonce per record */
    REC_NONCE = 12,
    CT_CCS = 20,
    CT_ALERT = 21,
    CT_HANDSHAKE = 22,
    CT_APPDATA = 23,
    HS_NEW_SESSION_TICKET = 4,
    HS_KEY_UPDATE = 24,
    AD_CLOSE_NOTIFY = 0,
    AD_UNEXPECTED_MESSAGE = 10,
    AD_BAD_RECORD_MAC = 20,
    AD_RECORD_OVERFLOW = 22,
    AD_ILLEGAL_PARAMETER = 47,
    AD_DECODE_ERROR = 50,
    AD_INTERNAL_ERROR = 80,
    AD_PROTOCOL_VERSION = 70,
    AD_USER_CANCELED = 90,
    AD_NO_RENEGOTIATION = 100,
};

/* ---- suites and per-thread AEAD contexts ---- */

/* By AEAD: the TLS 1.3 suite with that AEAD (its hash), and the TLS 1.2 suites with it (any key
 * exchange: the record layer is the same). */
struct suite {
    int nid; /* the AEAD */
    const char *cipher, *digest;
    uint8_t key_len, hash_len;
    uint8_t iv12_len; /* TLS 1.2 implicit IV: the GCM salt, or ChaCha20's whole nonce mask */
};

static const struct suite suites[TLS__REC_SUITES] = {
    {NID_aes_128_gcm, "AES-128-GCM", "SHA256", 16, 32, 4},
    {NID_aes_256_gcm, "AES-256-GCM", "SHA384", 32, 48, 4},
    {NID_chacha20_poly1305, "ChaCha20-Poly1305", "SHA256", 32, 32, 12},
};

static EVP_CIPHER *ciphers[TLS__REC_SUITES];
static EVP_KDF *hkdf, *tls1_prf;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static bool fetch_ok;

static void fetch_init(void)
{
    hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    tls1_prf = EVP_KDF_fetch(NULL, "TLS1-PRF", NULL);
    bool ok = hkdf != NULL && tls1_prf != NULL;
    for (int i = 0; i < TLS__REC_SUITES; i++) {
        ciphers[i] = EVP_CIPHER_fetch(NULL, suites[i].cipher, NULL);
        ok = ok && ciphers[i];
    }
    fetch_ok = ok;
    ERR_clear_error();
}

/* One AEAD context per suite and direction per thread, keyed anew for each record: a key
 * schedule costs ≈ 0.25 µs, a context per connection would cost ≈ 1.1 KB. */
struct aead_cache {
    EVP_CIPHER_CTX *ctx[TLS__REC_SUITES][2];          /* [suite][0 decrypt, 1 encrypt] */
    const struct tls__rec *owner[TLS__REC_SUITES][2]; /* whose key it holds (wiped at its free) */
    bool keyed;
};

static _Thread_local struct aead_cache aead_cache;
static pthread_key_t aead_key;
static pthread_once_t aead_key_once = PTHREAD_ONCE_INIT;
static bool aead_key_ok;

static void aead_cache_free(void *arg)
{
    struct aead_cache *a = arg;
    for (int i = 0; i < TLS__REC_SUITES; i++)
        for (int d = 0; d < 2; d++) {
            EVP_CIPHER_CTX_free(a->ctx[i][d]);
            a->ctx[i][d] = NULL;
        }
    a->keyed = false;
}

static void aead_key_init(void)
{
    aead_key_ok = pthread_key_create(&aead_key, aead_cache_free) == 0;
}

static EVP_CIPHER_CTX *aead_ctx(unsigned suite, int enc)
{
    struct aead_cache *a = &aead_cache;
    if (a->ctx[suite][enc])
        return a->ctx[suite][enc];
    if (!a->keyed) {
        pthread_once(&aead_key_once, aead_key_init);
        if (!aead_key_ok || pthread_setspecific(aead_key, a) != 0)
            return NULL; /* without a destructor the context would leak at thread exit */
        a->keyed = true;
    }
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    if (x == NULL || !EVP_CipherInit_ex2(x, ciphers[suite], NULL, NULL, enc, NULL)) {
        EVP_CIPHER_CTX_free(x);
        return NULL;
    }
    a->ctx[suite][enc] = x;
    return x;
}

EVP_CIPHER_CTX *tls__rec_aead_cached(unsigned suite, int enc)
{
    return suite < TLS__REC_SUITES ? aead_cache.ctx[suite][enc != 0] : NULL;
}

/* The AEAD context that protects direction `d` (0 read, 1 write) of `r`: its own, which keeps
 * its key from record to record (`*keyed`), or this thread's for its suite, which is keyed anew
 * for each record. NULL when out of memory. */
static EVP_CIPHER_CTX *rec_aead(struct tls__rec *r, int d, bool *keyed)
{
    if (r->own[d]) {
        *keyed = r->own_keyed[d];
        return r->own[d];
    }
    *keyed = false;
    aead_cache.owner[r->suite][d] = r;
    return aead_ctx(r->suite, d);
}

/* Contexts of its own for `r` (tls_ctx own_aead: the few hot connections to and from UCM): no key
 * schedule per record, ≈ 1 KB per direction. Without them (out of memory) the thread's serve. */
static void rec_own_aead(struct tls__rec *r)
{
    for (int d = 0; d < 2; d++) {
        EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
        if (x && !EVP_CipherInit_ex2(x, ciphers[r->suite], NULL, NULL, d, NULL)) {
            EVP_CIPHER_CTX_free(x);
            x = NULL;
        }
        r->own[d] = x;
        r->own_keyed[d] = false;
    }
    ERR_clear_error();
}

/* `r` is going away: the contexts of this thread keyed with its keys get an all-zero key (the
 * key schedule, GCM's hash key, ChaCha20's key are overwritten in place). */
static void aead_cache_forget(const struct tls__rec *r)
{
    static const uint8_t zero[32], zero_iv[REC_NONCE];
    struct aead_cache *a = &aead_cache;
    for (int i = 0; i < TLS__REC_SUITES; i++)
        for (int d = 0; d < 2; d++) {
            if (a->owner[i][d] != r)
                continue;
            a->owner[i][d] = NULL;
            if (a->ctx[i][d] && !EVP_CipherInit_ex(a->ctx[i][d], NULL, NULL, zero, zero_iv, d)) {
                EVP_CIPHER_CTX_free(a->ctx[i][d]); /* could not wipe it: drop it */
                a->ctx[i][d] = NULL;
            }
        }
    ERR_clear_error();
}

/* ---- key schedule (RFC 8446 §7.1, §7.3) ---- */

/* HKDF-Expand-Label(secret, label, "", out_len). */
static bool expand_label(unsigned suite, const uint8_t *secret, const char *label, uint8_t *out,
                         size_t out_len)
{
    uint8_t info[2 + 1 + 6 + 16 + 1];
    size_t ll = strlen(label);
    assert(ll <= 16);
    info[0] = (uint8_t)(out_len >> 8);
    info[1] = (uint8_t)out_len;
    info[2] = (uint8_t)(6 + ll);
    memcpy(info + 3, "tls13 ", 6);
    memcpy(info + 9, label, ll);
    info[9 + ll] = 0; /* empty context */
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)suites[suite].digest, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret,
                                          suites[suite].hash_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, 10 + ll),
        OSSL_PARAM_construct_end(),
    };
    EVP_KDF_CTX *k = EVP_KDF_CTX_new(hkdf);
    bool ok = k && EVP_KDF_derive(k, out, out_len, params) == 1;
    EVP_KDF_CTX_free(k);
    return ok;
}

/* Key and IV of direction `d` from its current secret; the sequence number restarts. */
static bool install_keys(struct tls__rec *r, int d)
{
    r->seq[d] = 0;
    r->own_keyed[d] = false;
    return expand_label(r->suite, r->secret[d], "key", r->key[d], suites[r->suite].key_len) &&
           expand_label(r->suite, r->secret[d], "iv", r->iv[d], REC_NONCE);
}

/* application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length) */
static bool update_secret(struct tls__rec *r, int d)
{
    uint8_t next[TLS__REC_SECRET_MAX];
    if (!expand_label(r->suite, r->secret[d], "traffic upd", next, suites[r->suite].hash_len))
        return false;
    memcpy(r->secret[d], next, suites[r->suite].hash_len);
    OPENSSL_cleanse(next, sizeof(next));
    return install_keys(r, d);
}

/* ---- handshake-time capture: secrets from the key log, records written by OpenSSL ---- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

void tls__rec_keylog(const SSL *ssl, const char *line)
{
    struct tls_conn *c = SSL_get_app_data(ssl);
    if (c == NULL || c->hs == NULL)
        return;
    struct tls__hs *hs = c->hs;
    bool client_secret;
    if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0)
        client_secret = true;
    else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0)
        client_secret = false;
    else
        return;
    /* the client's secret is what a server reads and a client writes */
    int d = client_secret == (c->side == TLS_SIDE_CLIENT) ? 1 : 0;
    /* Logged when OpenSSL installs that key: right after our Finished went to the BIO (write),
     * or right after the peer's Finished record was read (read, OpenSSL reads one record at a
     * time). Every later record in that direction uses this secret. */
    hs->mark[d] = d ? hs->w.records : hs->r.records;
    hs->marked[d] = true;
    const char *p = strchr(line + 24, ' '); /* skip the client random */
    if (p == NULL)
        return;
    p++;
    size_t n = 0;
    while (p[0] && p[1] && n < TLS__REC_SECRET_MAX) {
        int hi = hexval(p[0]), lo = hexval(p[1]);
        if (hi < 0 || lo < 0)
            return;
        hs->secret[d][n++] = (uint8_t)(hi << 4 | lo);
        p += 2;
    }
    if (*p != '\0')
        return;
    hs->secret_len[d] = (uint8_t)n;
}

void tls__rec_msg(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl,
                  void *arg)
{
    (void)write_p; /* either direction: a KeyUpdate sent or received changes a secret */
    (void)version;
    (void)arg;
    struct tls_conn *c = SSL_get_app_data(ssl);
    const uint8_t *m = buf;
    if (c && c->hs && content_type == SSL3_RT_HANDSHAKE && len > 0 && m[0] == HS_KEY_UPDATE)
        c->hs->tainted = true;
}

void tls__rec_count(struct tls__recs *rc, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (rc->body_left > 0) {
            size_t k = n < rc->body_left ? n : rc->body_left;
            rc->body_left -= (uint32_t)k;
            p += k;
            n -= k;
            continue;
        }
        rc->hdr[rc->hdr_have++] = *p++;
        n--;
        if (rc->hdr_have == REC_HDR) {
            rc->records++;
            if (rc->hdr[0] == CT_CCS) {
                rc->ccs = true;
                rc->after_ccs = 0;
            } else if (rc->ccs) {
                rc->after_ccs++;
            }
            rc->body_left = (uint32_t)rc->hdr[3] << 8 | rc->hdr[4];
            rc->hdr_have = 0;
        }
    }
}

void tls__hs_free(struct tls__hs *hs)
{
    if (hs == NULL)
        return;
    OPENSSL_cleanse(hs, sizeof(*hs));
    free(hs);
}

static void hsfrag_free(struct tls__rec *r)
{
    if (r->hs == NULL)
        return;
    OPENSSL_cleanse(r->hs, sizeof(*r->hs) + r->hs->cap);
    free(r->hs);
    r->hs = NULL;
}

void tls__rec_free(struct tls__rec *r)
{
    if (r == NULL)
        return;
    aead_cache_forget(r);
    for (int d = 0; d < 2; d++)
        EVP_CIPHER_CTX_free(r->own[d]); /* the provider wipes the key schedule as it frees */
    hsfrag_free(r);
    OPENSSL_cleanse(r, sizeof(*r));
    free(r);
}

struct tls__rec *tls__rec_new(unsigned suite, const uint8_t *read_secret,
                              const uint8_t *write_secret)
{
    pthread_once(&fetch_once, fetch_init);
    if (!fetch_ok || suite >= TLS__REC_SUITES)
        return NULL;
    struct tls__rec *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->suite = (uint8_t)suite;
    r->rekey_after = TLS__REC_REKEY_DEFAULT;
    r->cipher_name = suites[suite].cipher;
    memcpy(r->secret[0], read_secret, suites[suite].hash_len);
    memcpy(r->secret[1], write_secret, suites[suite].hash_len);
    if (!install_keys(r, 0) || !install_keys(r, 1)) {
        tls__rec_free(r);
        ERR_clear_error();
        return NULL;
    }
    return r;
}

/* TLS 1.2: key_block = PRF(master_secret, "key expansion", server_random + client_random)
 * = client_write_key, server_write_key, client_write_IV, server_write_IV (RFC 5246 §6.3; AEAD
 * suites have no MAC keys). A server reads with the client's and writes with its own; a client
 * the other way round. */
static struct tls__rec *rec_new_tls12(unsigned suite, SSL *ssl, bool client)
{
    const struct suite *su = &suites[suite];
    const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
    const EVP_MD *md = cipher ? SSL_CIPHER_get_handshake_digest(cipher) : NULL;
    SSL_SESSION *sess = SSL_get_session(ssl);
    uint8_t master[48], srand[32], crand[32], block[2 * 32 + 2 * 12];
    if (md == NULL || sess == NULL || SSL_SESSION_get_master_key(sess, master, 48) != 48 ||
        SSL_get_server_random(ssl, srand, 32) != 32 || SSL_get_client_random(ssl, crand, 32) != 32)
        return NULL;
    size_t need = 2u * su->key_len + 2u * su->iv12_len;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)EVP_MD_get0_name(md), 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, master, sizeof(master)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, (void *)"key expansion", 13),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, srand, sizeof(srand)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, crand, sizeof(crand)),
        OSSL_PARAM_construct_end(),
    };
    EVP_KDF_CTX *k = tls1_prf ? EVP_KDF_CTX_new(tls1_prf) : NULL;
    bool ok = k && EVP_KDF_derive(k, block, need, params) == 1;
    EVP_KDF_CTX_free(k);
    OPENSSL_cleanse(master, sizeof(master));
    struct tls__rec *r = ok ? calloc(1, sizeof(*r)) : NULL;
    if (r != NULL) {
        r->suite = (uint8_t)suite;
        r->rekey_after = TLS__REC_REKEY_DEFAULT;
        r->tls12 = true;
        const uint8_t *q = block;
        int cw = client ? 1 : 0; /* the direction that uses the client_write key */
        memcpy(r->key[cw], q, su->key_len);
        memcpy(r->key[!cw], q + su->key_len, su->key_len);
        q += 2 * su->key_len;
        memcpy(r->iv[cw], q, su->iv12_len);
        memcpy(r->iv[!cw], q + su->iv12_len, su->iv12_len);
    }
    OPENSSL_cleanse(block, sizeof(block));
    return r;
}

int tls__rec_takeover(struct tls_conn *c)
{
    struct tls__hs *hs = c->hs;
    SSL *ssl = c->ssl;
    c->hs = NULL;
    if (hs == NULL)
        return 0;
    pthread_once(&fetch_once, fetch_init);
    const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
    int nid = cipher ? SSL_CIPHER_get_cipher_nid(cipher) : NID_undef;
    int suite = -1;
    for (int i = 0; i < TLS__REC_SUITES; i++)
        if (suites[i].nid == nid)
            suite = i;
    int version = SSL_version(ssl);
    /* Anything we cannot prove we continue exactly stays with OpenSSL: another version or
     * suite, a missing secret, bytes OpenSSL already buffered, a half-written or half-read
     * record. */
    bool ok = fetch_ok && suite >= 0 && !hs->tainted && !SSL_has_pending(ssl) && !hs->w.hdr_have &&
              !hs->w.body_left && !hs->r.hdr_have && !hs->r.body_left;
    struct tls__rec *r = NULL;
    uint64_t wseq = 0, rseq = 0;
    if (ok && version == TLS1_3_VERSION && hs->marked[0] && hs->marked[1] &&
        hs->secret_len[0] == suites[suite].hash_len &&
        hs->secret_len[1] == suites[suite].hash_len) {
        /* the records each way since that direction's application key was installed: a
         * server has written its session ticket and read nothing yet; a client has read the
         * server's ticket(s) and written whatever went out before */
        wseq = hs->w.records - hs->mark[1];
        rseq = hs->r.records - hs->mark[0];
        r = tls__rec_new((unsigned)suite, hs->secret[0], hs->secret[1]);
    } else if (ok && version == TLS1_2_VERSION && hs->w.ccs && hs->r.ccs) {
        /* every record after each side's change_cipher_spec is encrypted: the Finished */
        wseq = hs->w.after_ccs;
        rseq = hs->r.after_ccs;
        r = rec_new_tls12((unsigned)suite, ssl, c->side == TLS_SIDE_CLIENT);
    }
    tls__hs_free(hs);
    if (r == NULL) {
        ERR_clear_error();
        return 0;
    }
    r->cipher_name = SSL_CIPHER_get_name(cipher); /* static table entry: outlives the SSL */
    r->resumed = SSL_session_reused(ssl) != 0;
    r->seq[0] = rseq;
    r->seq[1] = wseq;
    if (c->ctx && c->ctx->rekey_records)
        r->rekey_after = c->ctx->rekey_records;
    if (c->ctx && c->ctx->own_aead)
        rec_own_aead(r);
    /* Freed like a connection that ends cleanly: its session stays resumable. */
    SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
    SSL_free(ssl);
    c->ssl = NULL;
    c->rec = r;
    return 1;
}

/* ---- records ---- */

/* The per-record nonce of direction `d`: TLS 1.3 and TLS 1.2 ChaCha20 XOR the sequence number
 * into the IV; TLS 1.2 AES-GCM is the 4-byte salt then the 8-byte explicit nonce (which we set
 * to the sequence number, as OpenSSL does, and read from the record). */
static void make_nonce(const struct tls__rec *r, int d, const uint8_t *explicit,
                       uint8_t nonce[REC_NONCE])
{
    uint64_t s = r->seq[d];
    if (r->tls12 && suites[r->suite].iv12_len == 4) {
        memcpy(nonce, r->iv[d], 4);
        memcpy(nonce + 4, explicit, GCM_EXPLICIT);
        return;
    }
    memcpy(nonce, r->iv[d], REC_NONCE);
    for (int i = 0; i < 8; i++)
        nonce[REC_NONCE - 1 - i] ^= (uint8_t)(s >> (8 * i));
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* TLS 1.2 additional data: seq_num || type || version || length of the plaintext. */
static void aad12(uint64_t seq, uint8_t type, size_t plen, uint8_t aad[13])
{
    put_be64(aad, seq);
    aad[8] = type;
    aad[9] = 3;
    aad[10] = 3;
    aad[11] = (uint8_t)(plen >> 8);
    aad[12] = (uint8_t)plen;
}

static bool explicit_nonce(const struct tls__rec *r)
{
    return r->tls12 && suites[r->suite].iv12_len == 4;
}

/* Encrypt one record of content type `type` from `iov` (total `len` ≤ 2^14 bytes, gathered)
 * onto the end of c->out. TLS 1.3: outer type application_data, the real type inside; TLS 1.2:
 * the type outside, authenticated with the sequence number. */
static int seal(struct tls_conn *c, uint8_t type, const struct iovec *iov, int iovcnt, size_t len)
{
    struct tls__rec *r = c->rec;
    if (r->seq[1] == UINT64_MAX)
        return -EPROTO; /* RFC 8446 §5.3: never wrap; the connection must end */
    size_t pre = explicit_nonce(r) ? GCM_EXPLICIT : 0;
    size_t clen = pre + len + (r->tls12 ? 0 : 1) + REC_TAG;
    uint8_t *o = tls__buf_reserve(&c->out, REC_HDR + clen);
    if (o == NULL)
        return -ENOMEM;
    o[0] = r->tls12 ? type : CT_APPDATA;
    o[1] = 3;
    o[2] = 3;
    o[3] = (uint8_t)(clen >> 8);
    o[4] = (uint8_t)clen;
    if (pre)
        put_be64(o + REC_HDR, r->seq[1]);
    uint8_t nonce[REC_NONCE], aad[13];
    make_nonce(r, 1, o + REC_HDR, nonce);
    if (r->tls12)
        aad12(r->seq[1], type, len, aad);
    bool keyed;
    EVP_CIPHER_CTX *x = rec_aead(r, 1, &keyed);
    int l;
    if (x == NULL || !EVP_EncryptInit_ex(x, NULL, NULL, keyed ? NULL : r->key[1], nonce) ||
        !EVP_EncryptUpdate(x, NULL, &l, r->tls12 ? aad : o, r->tls12 ? 13 : REC_HDR))
        goto fail;
    uint8_t *q = o + REC_HDR + pre;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len == 0)
            continue;
        if (!EVP_EncryptUpdate(x, q, &l, iov[i].iov_base, (int)iov[i].iov_len))
            goto fail;
        q += l;
    }
    if (!r->tls12) {
        if (!EVP_EncryptUpdate(x, q, &l, &type, 1))
            goto fail;
        q += l;
    }
    if (!EVP_EncryptFinal_ex(x, q, &l))
        goto fail;
    q += l;
    if (!EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, REC_TAG, q))
        goto fail;
    r->own_keyed[1] = r->own[1] != NULL; /* keyed: later records set only the nonce */
    r->seq[1]++;
    tls__buf_commit(&c->out, REC_HDR + clen);
    return 0;
fail:
    ERR_clear_error();
    return -EPROTO;
}

int tls__rec_seal(struct tls_conn *c, uint8_t type, const void *p, size_t n)
{
    struct iovec v = {(void *)p, n};
    return seal(c, type, &v, 1, n);
}

/* Queue fatal alert `desc` (best effort: the caller flushes it before closing, RFC 8446 §6.2) and
 * fail the connection with `cause`; `why` names the broken rule in the diagnosis. */
static int fatal(struct tls_conn *c, uint8_t desc, enum tls_cause cause, const char *why)
{
    uint8_t a[2] = {2, desc};
    tls__rec_seal(c, CT_ALERT, a, sizeof(a));
    c->flags |= TLS_F_ALERT_SENT;
    c->alert_sent = desc;
    bool first = !(c->flags & TLS_F_FAILED);
    tls__fail(c, cause);
    struct tls__fail *f = first ? tls__fail_info(c) : NULL;
    if (f != NULL && f->detail[0] == '\0') {
        size_t pos = 0;
        tls__appendf(f->detail, sizeof(f->detail), &pos, "record layer: %s", why);
    }
    return -EPROTO;
}

static int protocol_error(struct tls_conn *c, uint8_t desc, const char *why)
{
    return fatal(c, desc, TLS_CAUSE_PROTOCOL_ERROR, why);
}

/* A warning alert (close_notify, no_renegotiation): the connection goes on. */
static int warning(struct tls_conn *c, uint8_t desc)
{
    uint8_t a[2] = {1, desc};
    return tls__rec_seal(c, CT_ALERT, a, sizeof(a));
}

/* Send our KeyUpdate (asking the peer to update its keys too when `ask`), then switch our write
 * keys (RFC 8446 §4.6.3). */
static int send_key_update(struct tls_conn *c, bool ask)
{
    struct tls__rec *r = c->rec;
    const uint8_t ku[5] = {HS_KEY_UPDATE, 0, 0, 1, ask ? 1 : 0};
    int rc = tls__rec_seal(c, CT_HANDSHAKE, ku, sizeof(ku));
    if (rc < 0)
        return rc;
    if (!update_secret(r, 1))
        return fatal(c, AD_INTERNAL_ERROR, TLS_CAUSE_INTERNAL, "cannot derive the next write key");
    r->ku_pending = false;
    r->ku_asked = r->ku_asked || ask;
    return 0;
}

/* Before a record of ours (TLS 1.3): one KeyUpdate answers every request read since our last
 * one; and a key that has sealed `rekey_after` records is replaced, as is (by asking the peer)
 * one that has opened as many (RFC 8446 §5.5: well before the AEAD's usage limit). */
static int key_update_due(struct tls_conn *c)
{
    struct tls__rec *r = c->rec;
    if (r->tls12 || (c->flags & (TLS_F_SHUTDOWN | TLS_F_FAILED)))
        return 0;
    bool ask = r->seq[0] >= r->rekey_after && !r->ku_asked;
    if (!r->ku_pending && !ask && r->seq[1] < r->rekey_after)
        return 0;
    return send_key_update(c, ask);
}

static int seal_data(struct tls_conn *c, const struct iovec *iov, int iovcnt, size_t len)
{
    int rc = key_update_due(c);
    return rc < 0 ? rc : seal(c, CT_APPDATA, iov, iovcnt, len);
}

ssize_t tls__rec_writev(struct tls_conn *c, const struct iovec *iov, int iovcnt)
{
    /* Gather the slices into records of up to 2^14 bytes without copying them first. */
    struct iovec part[16];
    size_t total = 0, fill = 0;
    int np = 0, rc;
    for (int i = 0; i < iovcnt; i++) {
        const char *p = iov[i].iov_base;
        size_t len = iov[i].iov_len;
        total += len;
        while (len > 0) {
            size_t k = REC_PLAIN_MAX - fill < len ? REC_PLAIN_MAX - fill : len;
            part[np].iov_base = (void *)p;
            part[np].iov_len = k;
            np++;
            fill += k;
            p += k;
            len -= k;
            if (fill == REC_PLAIN_MAX || np == (int)(sizeof(part) / sizeof(part[0]))) {
                if ((rc = seal_data(c, part, np, fill)) < 0)
                    return rc;
                np = 0;
                fill = 0;
            }
        }
    }
    if (fill > 0 && (rc = seal_data(c, part, np, fill)) < 0)
        return rc;
    return (ssize_t)total;
}

int tls__rec_shutdown(struct tls_conn *c)
{
    return warning(c, AD_CLOSE_NOTIFY);
}

/* Decrypt the record of ciphertext length `clen` at `ct` (header at ct - REC_HDR) into `out`
 * (may equal `ct` + the explicit nonce's length: in place). Returns the plaintext length (TLS
 * 1.3: the inner plaintext, with its type and padding) or -EPROTO (bad_record_mac). */
static ssize_t open_record(struct tls__rec *r, const uint8_t *ct, size_t clen, uint8_t *out)
{
    if (r->seq[0] == UINT64_MAX)
        return -EPROTO;
    size_t pre = explicit_nonce(r) ? GCM_EXPLICIT : 0;
    size_t plen = clen - pre - REC_TAG;
    uint8_t nonce[REC_NONCE], aad[13];
    make_nonce(r, 0, ct, nonce);
    if (r->tls12)
        aad12(r->seq[0], ct[-REC_HDR], plen, aad);
    bool keyed;
    EVP_CIPHER_CTX *x = rec_aead(r, 0, &keyed);
    int l;
    if (x == NULL || !EVP_DecryptInit_ex(x, NULL, NULL, keyed ? NULL : r->key[0], nonce) ||
        !EVP_DecryptUpdate(x, NULL, &l, r->tls12 ? aad : ct - REC_HDR, r->tls12 ? 13 : REC_HDR) ||
        !EVP_DecryptUpdate(x, out, &l, ct + pre, (int)plen) ||
        !EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, REC_TAG, (void *)(ct + pre + plen)) ||
        EVP_DecryptFinal_ex(x, out + l, &l) <= 0) {
        ERR_clear_error();
        return -EPROTO;
    }
    r->own_keyed[0] = r->own[0] != NULL; /* keyed: later records set only the nonce */
    r->seq[0]++;
    return (ssize_t)plen;
}

/* ---- post-handshake messages ---- */

static size_t be24(const uint8_t *p)
{
    return (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2];
}

/* The header of a post-handshake message, as soon as it is known: only a KeyUpdate (any side)
 * or a NewSessionTicket (from a server, bounded) may follow the handshake (RFC 8446 §4.6). */
static int hs_header_check(struct tls_conn *c, const uint8_t *h)
{
    size_t mlen = be24(h + 1);
    if (h[0] == HS_KEY_UPDATE)
        return mlen == 1 ? 0 : protocol_error(c, AD_DECODE_ERROR, "KeyUpdate of a bad length");
    if (h[0] == HS_NEW_SESSION_TICKET && c->side == TLS_SIDE_CLIENT)
        return mlen <= TLS__REC_HS_MSG_MAX - 4
                   ? 0
                   : protocol_error(c, AD_ILLEGAL_PARAMETER, "NewSessionTicket over 64 KiB");
    return protocol_error(c, AD_UNEXPECTED_MESSAGE, "handshake message after the handshake");
}

/* One whole post-handshake message `m` (header + body, `len` bytes, header checked); `last`: it
 * ends its record. */
static int on_hs_message(struct tls_conn *c, const uint8_t *m, size_t len, bool last)
{
    struct tls__rec *r = c->rec;
    if (++r->hs_run > TLS__REC_HS_MAX)
        return protocol_error(c, AD_UNEXPECTED_MESSAGE,
                              "more than 32 KeyUpdate/NewSessionTicket without application data");
    if (m[0] == HS_NEW_SESSION_TICKET)
        return 0; /* more tickets: the one OpenSSL kept before the switch serves */
    assert(m[0] == HS_KEY_UPDATE && len == 5);
    if (m[4] > 1) /* RFC 8446 §4.6.3 */
        return protocol_error(c, AD_ILLEGAL_PARAMETER, "KeyUpdate request_update not 0 or 1");
    if (!last) /* RFC 8446 §5.1: a key change must end its record */
        return protocol_error(c, AD_UNEXPECTED_MESSAGE, "record goes on after a KeyUpdate");
    if (!update_secret(r, 0))
        return fatal(c, AD_INTERNAL_ERROR, TLS_CAUSE_INTERNAL, "cannot derive the next read key");
    r->ku_asked = false;
    /* update_requested: one KeyUpdate of ours answers this and any other request, sent before
     * our next record (key_update_due(), RFC 8446 §4.6.3): a flood of requests costs no output
     * on the read path and at most one reply */
    if (m[4] == 1)
        r->ku_pending = true;
    return 0;
}

/* Append to the message being reassembled (r->hs, created when NULL) from `*m`, `*n`. Returns 1
 * when it is whole, 0 when the record ended first, or -EPROTO / -ENOMEM. */
static int hs_gather(struct tls_conn *c, const uint8_t **m, size_t *n)
{
    struct tls__rec *r = c->rec;
    struct tls__hsfrag *f = r->hs;
    if (f == NULL) {
        size_t cap = *n >= 4 ? 4 + be24(*m + 1) : 4;
        if ((f = malloc(sizeof(*f) + cap)) == NULL)
            return -ENOMEM;
        f->len = 0;
        f->cap = (uint32_t)cap;
        r->hs = f;
    }
    if (f->len < 4) {
        size_t k = 4 - f->len < *n ? 4 - f->len : *n;
        memcpy(f->p + f->len, *m, k);
        f->len += (uint32_t)k;
        *m += k;
        *n -= k;
        if (f->len < 4)
            return 0;
        int rc = hs_header_check(c, f->p);
        if (rc < 0)
            return rc;
        size_t cap = 4 + be24(f->p + 1);
        if (cap > f->cap) { /* a fresh block: the old one is wiped, not realloc'ed */
            struct tls__hsfrag *g = malloc(sizeof(*g) + cap);
            if (g == NULL)
                return -ENOMEM;
            memcpy(g, f, sizeof(*f) + f->len);
            g->cap = (uint32_t)cap;
            hsfrag_free(r);
            r->hs = f = g;
        }
    }
    size_t k = f->cap - f->len < *n ? f->cap - f->len : *n;
    memcpy(f->p + f->len, *m, k);
    f->len += (uint32_t)k;
    *m += k;
    *n -= k;
    return f->len == f->cap;
}

/* The plaintext of a handshake record (non-empty). TLS 1.3: KeyUpdate from either peer,
 * NewSessionTicket from a server, reassembled across records when split (RFC 8446 §5.1); TLS
 * 1.2: a request to renegotiate, declined with a warning (RFC 5246 §7.2.2), a few times. */
static int on_handshake(struct tls_conn *c, const uint8_t *m, size_t n)
{
    struct tls__rec *r = c->rec;
    if (r->tls12)
        return ++r->warn_run > TLS__REC_WARN_MAX
                   ? protocol_error(c, AD_UNEXPECTED_MESSAGE, "repeated renegotiation requests")
                   : warning(c, AD_NO_RENEGOTIATION);
    while (n > 0) {
        int rc;
        if (r->hs == NULL && n >= 4 && (rc = hs_header_check(c, m)) < 0)
            return rc;                                         /* before anything is kept */
        if (r->hs == NULL && n >= 4 && n >= 4 + be24(m + 1)) { /* whole: no copy */
            size_t len = 4 + be24(m + 1);
            if ((rc = on_hs_message(c, m, len, n == len)) < 0)
                return rc;
            m += len;
            n -= len;
            continue;
        }
        if ((rc = hs_gather(c, &m, &n)) < 0)
            return rc == -ENOMEM ? fatal(c, AD_INTERNAL_ERROR, TLS_CAUSE_INTERNAL, "out of memory")
                                 : rc;
        if (rc == 0)
            return 0; /* continues in the next record */
        struct tls__hsfrag *f = r->hs;
        rc = on_hs_message(c, f->p, f->len, n == 0);
        hsfrag_free(r);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The plaintext of an alert record (non-empty): close_notify ends the stream; a warning (TLS
 * 1.2) or user_canceled (TLS 1.3) is ignored, a few times; anything else is fatal (RFC 8446 §6).
 * Returns 1 to go on, 0 at close_notify, -EPROTO. */
static int on_alert(struct tls_conn *c, const uint8_t *a, size_t n)
{
    struct tls__rec *r = c->rec;
    if (n != 2)
        return protocol_error(c, AD_DECODE_ERROR, "alert record not 2 bytes");
    if (a[1] == AD_CLOSE_NOTIFY) {
        c->flags |= TLS_F_PEER_CLOSED;
        return 0;
    }
    if (r->tls12 ? a[0] == 1 : a[1] == AD_USER_CANCELED)
        return ++r->warn_run > TLS__REC_WARN_MAX
                   ? protocol_error(c, AD_UNEXPECTED_MESSAGE, "too many warning alerts")
                   : 1;
    c->flags |= TLS_F_ALERT_RECV;
    c->alert_recv = a[1];
    tls__fail(c, tls__cause_from_alert(a[1]));
    return -EPROTO;
}

/* ---- reading ---- */

/* Check the header `h` of the next record (RFC 8446 §5.1-5.2, RFC 5246 §6.2). */
static int check_header(struct tls_conn *c, const uint8_t *h, size_t clen)
{
    struct tls__rec *r = c->rec;
    size_t pre = explicit_nonce(r) ? GCM_EXPLICIT : 0;
    if (r->tls12 ? h[0] != CT_APPDATA && h[0] != CT_ALERT && h[0] != CT_HANDSHAKE
                 : h[0] != CT_APPDATA)
        return protocol_error(c, AD_UNEXPECTED_MESSAGE, "record of an unexpected type");
    if (r->tls12 && (h[1] != 3 || h[2] != 3))
        return protocol_error(c, AD_PROTOCOL_VERSION, "record of another version");
    if (clen > (r->tls12 ? REC12_CIPHER_MAX : REC_CIPHER_MAX))
        return protocol_error(c, AD_RECORD_OVERFLOW, "record longer than allowed");
    if (clen < pre + REC_TAG + (r->tls12 ? 0 : 1))
        return protocol_error(c, AD_DECODE_ERROR, "record too short for its tag");
    return 0;
}

/* The decrypted record at `pt` (`got` bytes; `*type`: the outer type) reduced to its content:
 * TLS 1.3 padding and inner type removed (RFC 8446 §5.4). Returns its length or -EPROTO. */
static ssize_t content_of(struct tls_conn *c, const uint8_t *pt, size_t got, uint8_t *type)
{
    struct tls__rec *r = c->rec;
    size_t n = got;
    if (!r->tls12) {
        if (n > REC_PLAIN_MAX + 1) /* the limit counts the padding: check before stripping */
            return protocol_error(c, AD_RECORD_OVERFLOW, "TLSInnerPlaintext over 2^14 + 1 bytes");
        while (n > 0 && pt[n - 1] == 0)
            n--;
        if (n == 0)
            return protocol_error(c, AD_UNEXPECTED_MESSAGE, "record without a content type");
        *type = pt[--n];
    }
    if (n > REC_PLAIN_MAX)
        return protocol_error(c, AD_RECORD_OVERFLOW, "plaintext over 2^14 bytes");
    if (r->hs != NULL && *type != CT_HANDSHAKE) /* RFC 8446 §5.1 */
        return protocol_error(c, AD_UNEXPECTED_MESSAGE, "record inside a split handshake message");
    if (n == 0 && *type != CT_APPDATA) /* RFC 8446 §5.4 */
        return protocol_error(c, AD_UNEXPECTED_MESSAGE, "empty handshake or alert record");
    if (n == 0 && *type == CT_APPDATA && ++r->empty_run > TLS__REC_EMPTY_MAX)
        return protocol_error(c, AD_UNEXPECTED_MESSAGE, "more than 32 empty records in a row");
    return (ssize_t)n;
}

ssize_t tls__rec_read(struct tls_conn *c, void *buf, size_t cap)
{
    struct tls__rec *r = c->rec;
    for (;;) {
        if (r->pend_len > 0) { /* plaintext of an earlier record that did not fit */
            size_t k = cap < r->pend_len ? cap : r->pend_len;
            memcpy(buf, c->in.p + c->in.off, k);
            r->pend_len -= (uint32_t)k;
            tls__buf_consume(&c->in, k + (r->pend_len == 0 ? r->pend_skip : 0));
            return (ssize_t)k;
        }
        if (c->in.len < REC_HDR)
            return TLS_WANT_INPUT;
        const uint8_t *h = c->in.p + c->in.off;
        size_t clen = (size_t)h[3] << 8 | h[4];
        size_t pre = explicit_nonce(r) ? GCM_EXPLICIT : 0;
        if (check_header(c, h, clen) < 0)
            return -EPROTO;
        if (c->in.len < REC_HDR + clen)
            return TLS_WANT_INPUT;
        uint8_t *ct = c->in.p + c->in.off + REC_HDR;
        size_t plen = clen - pre - REC_TAG;
        /* Straight into the caller's buffer when the record fits, else in place (the buffer is
         * then wiped when released). */
        uint8_t *pt = plen <= cap ? buf : ct + pre;
        if (pt != buf)
            c->in.wipe = true;
        ssize_t got = open_record(r, ct, clen, pt);
        if (got < 0)
            return protocol_error(c, AD_BAD_RECORD_MAC, "record failed authentication");
        uint8_t type = h[0];
        ssize_t sn = content_of(c, pt, (size_t)got, &type);
        if (sn < 0)
            return sn;
        size_t n = (size_t)sn;
        c->flags |= TLS_F_CONFIRMED;
        int rc;
        switch (type) {
        case CT_APPDATA:
            if (n == 0)
                break;
            r->empty_run = r->warn_run = r->hs_run = 0;
            if (pt == buf) {
                tls__buf_consume(&c->in, REC_HDR + clen);
                return (ssize_t)n;
            }
            /* the plaintext now starts at c->in.off */
            tls__buf_consume(&c->in, REC_HDR + pre);
            r->pend_len = (uint32_t)n;
            r->pend_skip = (uint32_t)(clen - pre - n);
            continue;
        case CT_ALERT:
            rc = on_alert(c, pt, n);
            if (rc <= 0) {
                tls__buf_consume(&c->in, REC_HDR + clen);
                return rc;
            }
            break;
        case CT_HANDSHAKE:
            if ((rc = on_handshake(c, pt, n)) < 0)
                return rc;
            break;
        default:
            return protocol_error(c, AD_UNEXPECTED_MESSAGE, "unknown inner content type");
        }
        if (pt == buf) /* a caller's buffer keeps no record-layer plaintext */
            OPENSSL_cleanse(buf, n);
        tls__buf_consume(&c->in, REC_HDR + clen);
    }
}
