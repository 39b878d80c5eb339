// SPDX-License-Identifier: MIT
// tls: our own TLS 1.3 record layer (RFC 8446 §5) for established server-side connections. Once a
// handshake is done, OpenSSL's SSL object (≈ 14 KB per connection) is freed and records are
// protected here with the traffic secrets OpenSSL derived, through one AEAD context per thread.
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "tls/tls_priv.h"

enum {
    REC_HDR = 5,
    REC_TAG = 16,
    REC_PLAIN_MAX = 16384,                /* 2^14: largest content per record */
    REC_CIPHER_MAX = REC_PLAIN_MAX + 256, /* 2^14 + 256: largest TLSCiphertext.length */
    REC_NONCE = 12,
    CT_ALERT = 21,
    CT_HANDSHAKE = 22,
    CT_APPDATA = 23,
    HS_KEY_UPDATE = 24,
    AD_CLOSE_NOTIFY = 0,
    AD_UNEXPECTED_MESSAGE = 10,
    AD_BAD_RECORD_MAC = 20,
    AD_RECORD_OVERFLOW = 22,
    AD_DECODE_ERROR = 50,
    AD_USER_CANCELED = 90,
};

/* ---- suites and per-thread AEAD contexts ---- */

struct suite {
    uint16_t id; /* IANA cipher suite number */
    const char *cipher, *digest;
    uint8_t key_len, hash_len;
};

static const struct suite suites[TLS__REC_SUITES] = {
    {0x1301, "AES-128-GCM", "SHA256", 16, 32},
    {0x1302, "AES-256-GCM", "SHA384", 32, 48},
    {0x1303, "ChaCha20-Poly1305", "SHA256", 32, 32},
};

static EVP_CIPHER *ciphers[TLS__REC_SUITES];
static EVP_MD *digests[TLS__REC_SUITES];
static EVP_KDF *hkdf;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static bool fetch_ok;

static void fetch_init(void)
{
    hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    bool ok = hkdf != NULL;
    for (int i = 0; i < TLS__REC_SUITES; i++) {
        ciphers[i] = EVP_CIPHER_fetch(NULL, suites[i].cipher, NULL);
        digests[i] = EVP_MD_fetch(NULL, suites[i].digest, NULL);
        ok = ok && ciphers[i] && digests[i];
    }
    fetch_ok = ok;
    ERR_clear_error();
}

/* One AEAD context per suite and direction per thread, keyed anew for each record: a key
 * schedule costs ≈ 0.25 µs, a context per connection would cost ≈ 1.1 KB. */
struct aead_cache {
    EVP_CIPHER_CTX *ctx[TLS__REC_SUITES][2]; /* [suite][0 decrypt, 1 encrypt] */
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
    int d;
    const char *p;
    if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0) {
        d = 0, p = line + 24;
    } else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0) {
        d = 1, p = line + 24;
        /* Logged when the server's application keys are installed, right after its Finished
         * went to the BIO: every record OpenSSL writes from now on uses this secret. */
        hs->mark = hs->records;
        hs->marked = true;
    } else {
        return;
    }
    p = strchr(p, ' '); /* skip the client random */
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

void tls__rec_count(struct tls__hs *hs, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (hs->body_left > 0) {
            size_t k = n < hs->body_left ? n : hs->body_left;
            hs->body_left -= (uint32_t)k;
            p += k;
            n -= k;
            continue;
        }
        hs->hdr[hs->hdr_have++] = *p++;
        n--;
        if (hs->hdr_have == REC_HDR) {
            hs->records++;
            hs->body_left = (uint32_t)hs->hdr[3] << 8 | hs->hdr[4];
            hs->hdr_have = 0;
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

void tls__rec_free(struct tls__rec *r)
{
    if (r == NULL)
        return;
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

int tls__rec_takeover(struct tls_conn *c)
{
    struct tls__hs *hs = c->hs;
    SSL *ssl = c->ssl;
    c->hs = NULL;
    if (hs == NULL)
        return 0;
    pthread_once(&fetch_once, fetch_init);
    const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
    uint16_t id = cipher ? (uint16_t)(SSL_CIPHER_get_id(cipher) & 0xffff) : 0;
    int suite = -1;
    for (int i = 0; i < TLS__REC_SUITES; i++)
        if (suites[i].id == id)
            suite = i;
    /* Anything we cannot prove we continue exactly stays with OpenSSL: another version or
     * suite, a missing secret, bytes OpenSSL already buffered, a half-written record. */
    if (!fetch_ok || SSL_version(ssl) != TLS1_3_VERSION || suite < 0 || !hs->marked ||
        hs->secret_len[0] != suites[suite].hash_len ||
        hs->secret_len[1] != suites[suite].hash_len || SSL_has_pending(ssl) || hs->hdr_have ||
        hs->body_left) {
        tls__hs_free(hs);
        return 0;
    }
    uint32_t written = hs->records - hs->mark; /* our session tickets */
    struct tls__rec *r = tls__rec_new((unsigned)suite, hs->secret[0], hs->secret[1]);
    tls__hs_free(hs);
    if (r == NULL)
        return 0;
    r->cipher_name = SSL_CIPHER_get_name(cipher); /* static table entry: outlives the SSL */
    r->resumed = SSL_session_reused(ssl) != 0;
    r->seq[1] = written;
    /* Freed like a connection that ends cleanly: its session stays resumable. */
    SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
    SSL_free(ssl);
    c->ssl = NULL;
    c->rec = r;
    return 1;
}

/* ---- records ---- */

static void make_nonce(const struct tls__rec *r, int d, uint8_t nonce[REC_NONCE])
{
    memcpy(nonce, r->iv[d], REC_NONCE);
    uint64_t s = r->seq[d];
    for (int i = 0; i < 8; i++)
        nonce[REC_NONCE - 1 - i] ^= (uint8_t)(s >> (8 * i));
}

/* Encrypt one record of content type `type` from `iov` (total `len` ≤ 2^14 bytes, gathered)
 * onto the end of c->out. */
static int seal(struct tls_conn *c, uint8_t type, const struct iovec *iov, int iovcnt, size_t len)
{
    struct tls__rec *r = c->rec;
    if (r->seq[1] == UINT64_MAX)
        return -EPROTO; /* RFC 8446 §5.3: never wrap; the connection must end */
    size_t clen = len + 1 + REC_TAG;
    uint8_t *o = tls__buf_reserve(&c->out, REC_HDR + clen);
    if (o == NULL)
        return -ENOMEM;
    o[0] = CT_APPDATA;
    o[1] = 3;
    o[2] = 3;
    o[3] = (uint8_t)(clen >> 8);
    o[4] = (uint8_t)clen;
    uint8_t nonce[REC_NONCE];
    make_nonce(r, 1, nonce);
    EVP_CIPHER_CTX *x = aead_ctx(r->suite, 1);
    int l;
    if (x == NULL || !EVP_EncryptInit_ex(x, NULL, NULL, r->key[1], nonce) ||
        !EVP_EncryptUpdate(x, NULL, &l, o, REC_HDR))
        goto fail;
    uint8_t *q = o + REC_HDR;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len == 0)
            continue;
        if (!EVP_EncryptUpdate(x, q, &l, iov[i].iov_base, (int)iov[i].iov_len))
            goto fail;
        q += l;
    }
    if (!EVP_EncryptUpdate(x, q, &l, &type, 1))
        goto fail;
    q += l;
    if (!EVP_EncryptFinal_ex(x, q, &l))
        goto fail;
    q += l;
    if (!EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, REC_TAG, q))
        goto fail;
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

/* Queue an alert (fatal unless close_notify) and, when fatal, fail the connection. */
static int send_alert(struct tls_conn *c, uint8_t desc, enum tls_cause cause)
{
    uint8_t a[2] = {desc == AD_CLOSE_NOTIFY ? 1 : 2, desc};
    int rc = tls__rec_seal(c, CT_ALERT, a, sizeof(a));
    if (desc != AD_CLOSE_NOTIFY) {
        c->flags |= TLS_F_ALERT_SENT;
        c->alert_sent = desc;
        tls__fail(c, cause);
        return -EPROTO;
    }
    return rc;
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
                if ((rc = seal(c, CT_APPDATA, part, np, fill)) < 0)
                    return rc;
                np = 0;
                fill = 0;
            }
        }
    }
    if (fill > 0 && (rc = seal(c, CT_APPDATA, part, np, fill)) < 0)
        return rc;
    return (ssize_t)total;
}

int tls__rec_shutdown(struct tls_conn *c)
{
    return send_alert(c, AD_CLOSE_NOTIFY, TLS_CAUSE_NONE);
}

/* Decrypt the record of ciphertext length `clen` at `ct` (header at ct - REC_HDR) into `out`
 * (may equal `ct`). Returns the inner plaintext length or -EPROTO (bad_record_mac). */
static ssize_t open_record(struct tls__rec *r, const uint8_t *ct, size_t clen, uint8_t *out)
{
    if (r->seq[0] == UINT64_MAX)
        return -EPROTO;
    uint8_t nonce[REC_NONCE];
    make_nonce(r, 0, nonce);
    EVP_CIPHER_CTX *x = aead_ctx(r->suite, 0);
    size_t plen = clen - REC_TAG;
    int l;
    if (x == NULL || !EVP_DecryptInit_ex(x, NULL, NULL, r->key[0], nonce) ||
        !EVP_DecryptUpdate(x, NULL, &l, ct - REC_HDR, REC_HDR) ||
        !EVP_DecryptUpdate(x, out, &l, ct, (int)plen) ||
        !EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, REC_TAG, (void *)(ct + plen)) ||
        EVP_DecryptFinal_ex(x, out + l, &l) <= 0) {
        ERR_clear_error();
        return -EPROTO;
    }
    r->seq[0]++;
    return (ssize_t)plen;
}

/* A post-handshake handshake message: only KeyUpdate is expected from a client. */
static int on_handshake(struct tls_conn *c, const uint8_t *m, size_t n)
{
    struct tls__rec *r = c->rec;
    while (n > 0) {
        if (n < 4)
            return send_alert(c, AD_UNEXPECTED_MESSAGE, TLS_CAUSE_PROTOCOL_ERROR);
        size_t mlen = (size_t)m[1] << 16 | (size_t)m[2] << 8 | m[3];
        if (m[0] != HS_KEY_UPDATE)
            return send_alert(c, AD_UNEXPECTED_MESSAGE, TLS_CAUSE_PROTOCOL_ERROR);
        if (mlen != 1 || n < 5 || m[4] > 1)
            return send_alert(c, AD_DECODE_ERROR, TLS_CAUSE_PROTOCOL_ERROR);
        if (!update_secret(r, 0))
            return send_alert(c, AD_UNEXPECTED_MESSAGE, TLS_CAUSE_INTERNAL);
        if (m[4] == 1 && !(c->flags & TLS_F_SHUTDOWN)) {
            /* update_requested: answer with our own KeyUpdate, then switch our keys */
            static const uint8_t ku[5] = {HS_KEY_UPDATE, 0, 0, 1, 0};
            int rc = tls__rec_seal(c, CT_HANDSHAKE, ku, sizeof(ku));
            if (rc < 0)
                return rc;
            if (!update_secret(r, 1))
                return send_alert(c, AD_UNEXPECTED_MESSAGE, TLS_CAUSE_INTERNAL);
        }
        m += 5;
        n -= 5;
    }
    return 0;
}

/* An alert record: close_notify ends the stream, user_canceled is ignored, anything else is
 * fatal (RFC 8446 §6). */
static int on_alert(struct tls_conn *c, const uint8_t *a, size_t n)
{
    if (n != 2)
        return send_alert(c, AD_DECODE_ERROR, TLS_CAUSE_PROTOCOL_ERROR);
    if (a[1] == AD_CLOSE_NOTIFY) {
        c->flags |= TLS_F_PEER_CLOSED;
        return 0;
    }
    if (a[1] == AD_USER_CANCELED)
        return 1;
    c->flags |= TLS_F_ALERT_RECV;
    c->alert_recv = a[1];
    tls__fail(c, tls__cause_from_alert(a[1]));
    return -EPROTO;
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
        if (h[0] != CT_APPDATA)
            return send_alert(c, AD_UNEXPECTED_MESSAGE, TLS_CAUSE_PROTOCOL_ERROR);
        if (clen > REC_CIPHER_MAX)
            return send_alert(c, AD_RECORD_OVERFLOW, TLS_CAUSE_PROTOCOL_ERROR);
        if (clen < REC_TAG + 1)
            return send_alert(c, AD_DECODE_ERROR, TLS_CAUSE_PROTOCOL_ERROR);
        if (c->in.len < REC_HDR + clen)
            return TLS_WANT_INPUT;
        uint8_t *ct = c->in.p + c->in.off + REC_HDR;
        size_t plen = clen - REC_TAG;
        /* Straight into the caller's buffer when the record fits, else in place. */
        uint8_t *pt = plen <= cap ? buf : ct;
        ssize_t got = open_record(r, ct, clen, pt);
        if (got < 0)
            return send_alert(c, AD_BAD_RECORD_MAC, TLS_CAUSE_PROTOCOL_ERROR);
        size_t n = (size_t)got;
        while (n > 0 && pt[n - 1] == 0) /* strip the padding, then the real content type */
            n--;
        if (n == 0)
            return send_alert(c, AD_UNEXPECTED_MESSAGE, TLS_CAUSE_PROTOCOL_ERROR);
        uint8_t type = pt[--n];
        if (n > REC_PLAIN_MAX)
            return send_alert(c, AD_RECORD_OVERFLOW, TLS_CAUSE_PROTOCOL_ERROR);
        c->flags |= TLS_F_CONFIRMED;
        int rc;
        switch (type) {
        case CT_APPDATA:
            if (n == 0)
                break;
            if (pt == buf) {
                tls__buf_consume(&c->in, REC_HDR + clen);
                return (ssize_t)n;
            }
            tls__buf_consume(&c->in, REC_HDR); /* plaintext now starts at c->in.off */
            r->pend_len = (uint32_t)n;
            r->pend_skip = (uint32_t)(clen - n);
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
            return send_alert(c, AD_UNEXPECTED_MESSAGE, TLS_CAUSE_PROTOCOL_ERROR);
        }
        tls__buf_consume(&c->in, REC_HDR + clen);
    }
}
