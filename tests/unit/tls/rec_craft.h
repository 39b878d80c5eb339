// SPDX-License-Identifier: MIT
// A hostile TLS peer for the record-layer tests: seals records of any type, size and padding,
// and opens what the edge sends back, with its own key schedule on OpenSSL's EVP AEAD (written
// apart from tls/tls_rec.c: HkdfLabel, nonces and additional data are built here). Keys come from
// a real handshake: TLS 1.3 traffic secrets through the peer's key-log callback, TLS 1.2 keys from
// the peer's master secret and randoms (RFC 5246 §6.3).
#ifndef SIPEDGE_TESTS_REC_CRAFT_H
#define SIPEDGE_TESTS_REC_CRAFT_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>

/* One direction of a record stream. */
struct craft {
    EVP_CIPHER *cipher;
    const char *digest;
    size_t key_len, hash_len;
    bool tls12, explicit_nonce; /* TLS 1.2 AES-GCM: 4-byte salt + 8-byte explicit nonce */
    uint8_t secret[48], key[32], iv[12];
    uint64_t seq;
};

static inline void craft_free(struct craft *k)
{
    EVP_CIPHER_free(k->cipher);
    memset(k, 0, sizeof(*k));
}

/* HKDF-Expand-Label(secret, label, "", len) of RFC 8446 §7.1. */
static inline void craft_label(const struct craft *k, const uint8_t *secret, const char *label,
                               uint8_t *out, size_t len)
{
    uint8_t info[64];
    size_t ll = strlen("tls13 ") + strlen(label), i = 0;
    info[i++] = (uint8_t)(len >> 8);
    info[i++] = (uint8_t)len;
    info[i++] = (uint8_t)ll;
    memcpy(info + i, "tls13 ", 6);
    memcpy(info + i + 6, label, strlen(label));
    i += ll;
    info[i++] = 0;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kc = EVP_KDF_CTX_new(kdf);
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)k->digest, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, k->hash_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, i),
        OSSL_PARAM_construct_end(),
    };
    cr_assert_eq(EVP_KDF_derive(kc, out, len, p), 1, "HKDF-Expand-Label %s", label);
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
}

static inline void craft_install(struct craft *k)
{
    craft_label(k, k->secret, "key", k->key, k->key_len);
    craft_label(k, k->secret, "iv", k->iv, 12);
    k->seq = 0;
}

/* KeyUpdate: application_traffic_secret_N+1 (RFC 8446 §7.2). */
static inline void craft_update(struct craft *k)
{
    uint8_t next[48];
    craft_label(k, k->secret, "traffic upd", next, k->hash_len);
    memcpy(k->secret, next, k->hash_len);
    craft_install(k);
}

/* The suite's AEAD and hash from the peer's negotiated cipher. */
static inline void craft_suite(struct craft *k, const SSL *ssl)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    cr_assert_not_null(c);
    int nid = SSL_CIPHER_get_cipher_nid(c);
    const char *name = nid == NID_aes_128_gcm   ? "AES-128-GCM"
                       : nid == NID_aes_256_gcm ? "AES-256-GCM"
                                                : "ChaCha20-Poly1305";
    cr_assert(nid == NID_aes_128_gcm || nid == NID_aes_256_gcm || nid == NID_chacha20_poly1305);
    k->cipher = EVP_CIPHER_fetch(NULL, name, NULL);
    k->key_len = (size_t)EVP_CIPHER_get_key_length(k->cipher);
    const EVP_MD *md = SSL_CIPHER_get_handshake_digest(c);
    k->digest = EVP_MD_get0_name(md);
    k->hash_len = (size_t)EVP_MD_get_size(md);
    k->tls12 = SSL_version(ssl) == TLS1_2_VERSION;
    k->explicit_nonce = k->tls12 && nid != NID_chacha20_poly1305;
}

/* TLS 1.2: key_block = PRF(master, "key expansion", server_random + client_random) =
 * client key, server key, client IV, server IV. `client_writes`: this direction is the client's. */
static inline void craft_tls12_keys(struct craft *k, const SSL *ssl, bool client_writes)
{
    uint8_t master[48], sr[32], cr[32], block[2 * 32 + 2 * 12];
    cr_assert_eq(SSL_SESSION_get_master_key(SSL_get_session(ssl), master, 48), 48);
    SSL_get_server_random(ssl, sr, 32);
    SSL_get_client_random(ssl, cr, 32);
    size_t ivl = k->explicit_nonce ? 4 : 12;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "TLS1-PRF", NULL);
    EVP_KDF_CTX *kc = EVP_KDF_CTX_new(kdf);
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)k->digest, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, master, 48),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, (void *)"key expansion", 13),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, sr, 32),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, cr, 32),
        OSSL_PARAM_construct_end(),
    };
    cr_assert_eq(EVP_KDF_derive(kc, block, 2 * k->key_len + 2 * ivl, p), 1);
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
    memcpy(k->key, block + (client_writes ? 0 : k->key_len), k->key_len);
    memcpy(k->iv, block + 2 * k->key_len + (client_writes ? 0 : ivl), ivl);
}

static inline void craft_nonce(const struct craft *k, uint8_t nonce[12])
{
    if (k->explicit_nonce) {
        memcpy(nonce, k->iv, 4);
        for (int i = 0; i < 8; i++)
            nonce[4 + i] = (uint8_t)(k->seq >> (56 - 8 * i));
        return;
    }
    memcpy(nonce, k->iv, 12);
    for (int i = 0; i < 8; i++)
        nonce[11 - i] ^= (uint8_t)(k->seq >> (8 * i));
}

/* Seal one record of content type `type` carrying `len` bytes of `p` (and, TLS 1.3, `pad` zero
 * bytes of padding) into `out`; returns its length. */
static inline size_t craft_seal(struct craft *k, uint8_t type, const void *p, size_t len,
                                size_t pad, uint8_t *out, size_t cap)
{
    size_t pre = k->explicit_nonce ? 8 : 0;
    size_t inner = len + (k->tls12 ? 0 : 1 + pad);
    size_t clen = pre + inner + 16;
    cr_assert_leq(5 + clen, cap);
    cr_assert_leq(clen, 0xffff);
    uint8_t *plain = calloc(1, inner + 1);
    if (len)
        memcpy(plain, p, len);
    if (!k->tls12)
        plain[len] = type;
    out[0] = k->tls12 ? type : 23;
    out[1] = 3;
    out[2] = 3;
    out[3] = (uint8_t)(clen >> 8);
    out[4] = (uint8_t)clen;
    uint8_t nonce[12], aad[13];
    craft_nonce(k, nonce);
    if (pre)
        memcpy(out + 5, nonce + 4, 8);
    const uint8_t *ad = out;
    size_t adlen = 5;
    if (k->tls12) {
        for (int i = 0; i < 8; i++)
            aad[i] = (uint8_t)(k->seq >> (56 - 8 * i));
        aad[8] = type;
        aad[9] = 3;
        aad[10] = 3;
        aad[11] = (uint8_t)(len >> 8);
        aad[12] = (uint8_t)len;
        ad = aad;
        adlen = 13;
    }
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int l;
    cr_assert(EVP_EncryptInit_ex2(x, k->cipher, k->key, nonce, NULL));
    cr_assert(EVP_EncryptUpdate(x, NULL, &l, ad, (int)adlen));
    cr_assert(EVP_EncryptUpdate(x, out + 5 + pre, &l, plain, (int)inner));
    cr_assert(EVP_EncryptFinal_ex(x, out + 5 + pre + l, &l));
    cr_assert(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, 16, out + 5 + pre + inner));
    EVP_CIPHER_CTX_free(x);
    free(plain);
    k->seq++;
    return 5 + clen;
}

/* Open the record at `rec` (`avail` bytes available): its content (padding stripped) into
 * `out`, its type in `*type`. Returns the record's length on the wire. */
static inline size_t craft_open(struct craft *k, const uint8_t *rec, size_t avail, uint8_t *type,
                                uint8_t *out, size_t *outlen)
{
    cr_assert_geq(avail, 5);
    size_t clen = (size_t)rec[3] << 8 | rec[4], pre = k->explicit_nonce ? 8 : 0;
    cr_assert_geq(avail, 5 + clen);
    size_t plen = clen - pre - 16;
    uint8_t nonce[12], aad[13];
    craft_nonce(k, nonce);
    if (pre)
        memcpy(nonce + 4, rec + 5, 8);
    const uint8_t *ad = rec;
    size_t adlen = 5;
    if (k->tls12) {
        for (int i = 0; i < 8; i++)
            aad[i] = (uint8_t)(k->seq >> (56 - 8 * i));
        memcpy(aad + 8, rec, 3);
        aad[11] = (uint8_t)(plen >> 8);
        aad[12] = (uint8_t)plen;
        ad = aad;
        adlen = 13;
    }
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int l;
    cr_assert(EVP_DecryptInit_ex2(x, k->cipher, k->key, nonce, NULL));
    cr_assert(EVP_DecryptUpdate(x, NULL, &l, ad, (int)adlen));
    cr_assert(EVP_DecryptUpdate(x, out, &l, rec + 5 + pre, (int)plen));
    cr_assert(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, 16, (void *)(rec + 5 + pre + plen)));
    cr_assert_gt(EVP_DecryptFinal_ex(x, out + l, &l), 0, "record %llu from the edge: bad tag",
                 (unsigned long long)k->seq);
    EVP_CIPHER_CTX_free(x);
    k->seq++;
    *type = rec[0];
    if (!k->tls12) {
        while (plen > 0 && out[plen - 1] == 0)
            plen--;
        cr_assert_gt(plen, 0);
        *type = out[--plen];
    }
    *outlen = plen;
    return 5 + clen;
}

#endif
