// SPDX-License-Identifier: MIT
// base64url and the compact JWE of the CUCM token profile: alg "dir", enc "A128CBC-HS256"
// (RFC 7518 5.2.2.1 / 5.2.3), tag checked in constant time before any decryption.
#include "auth/jwt.h"
#include "auth/jwt_priv.h"

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

/* 0..63 for a byte of the base64url alphabet, 0xff for anything else ('=' included). */
static inline unsigned b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return 0xff;
}

static const char b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

ssize_t jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    if (len % 4 == 1)
        return -EINVAL;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > cap)
        return -ENOSPC;
    const unsigned char *p = (const unsigned char *)in;
    size_t o = 0, i = 0;
    for (; i + 4 <= len; i += 4) {
        unsigned a = b64url_val(p[i]), b = b64url_val(p[i + 1]), c = b64url_val(p[i + 2]),
                 d = b64url_val(p[i + 3]);
        if ((a | b | c | d) & 0x80)
            return -EINVAL;
        uint32_t v = a << 18 | b << 12 | c << 6 | d;
        out[o++] = (unsigned char)(v >> 16);
        out[o++] = (unsigned char)(v >> 8);
        out[o++] = (unsigned char)v;
    }
    size_t rest = len - i;
    if (rest >= 2) {
        unsigned a = b64url_val(p[i]), b = b64url_val(p[i + 1]);
        unsigned c = rest == 3 ? b64url_val(p[i + 2]) : 0;
        if ((a | b | c) & 0x80)
            return -EINVAL;
        uint32_t v = a << 18 | b << 12 | c << 6;
        /* non-zero bits past the last byte: not the canonical encoding */
        if ((rest == 2 && (v & 0xffff)) || (rest == 3 && (v & 0xff)))
            return -EINVAL;
        out[o++] = (unsigned char)(v >> 16);
        if (rest == 3)
            out[o++] = (unsigned char)(v >> 8);
    }
    return (ssize_t)o;
}

size_t jwt_b64url_encode(const void *in, size_t n, char *out)
{
    const unsigned char *p = in;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64url_chars[v >> 18];
        out[o++] = b64url_chars[(v >> 12) & 63];
        out[o++] = b64url_chars[(v >> 6) & 63];
        out[o++] = b64url_chars[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = b64url_chars[v >> 18];
        out[o++] = b64url_chars[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = b64url_chars[v >> 18];
        out[o++] = b64url_chars[(v >> 12) & 63];
        out[o++] = b64url_chars[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

/* HMAC-SHA-256(MAC_KEY, AAD || IV || CT || AL), first 16 bytes into `tag`. */
static int cbc_hs256_tag(const unsigned char key[32], const unsigned char iv[16], const void *aad,
                         size_t aad_len, const unsigned char *ct, size_t n, unsigned char tag[16])
{
    unsigned char al[8], mac[EVP_MAX_MD_SIZE];
    uint64_t bits = (uint64_t)aad_len * 8;
    for (int i = 0; i < 8; i++)
        al[i] = (unsigned char)(bits >> (56 - 8 * i));
    size_t maclen = 0;
    int ok = 0;
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    if (ctx && EVP_MAC_init(ctx, key, 16, params) == 1 && EVP_MAC_update(ctx, aad, aad_len) == 1 &&
        EVP_MAC_update(ctx, iv, 16) == 1 && EVP_MAC_update(ctx, ct, n) == 1 &&
        EVP_MAC_update(ctx, al, sizeof(al)) == 1 &&
        EVP_MAC_final(ctx, mac, &maclen, sizeof(mac)) == 1 && maclen == 32) {
        memcpy(tag, mac, 16);
        ok = 1;
    }
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(m);
    OPENSSL_cleanse(mac, sizeof(mac));
    return ok ? 0 : -EIO;
}

ssize_t jwt_a128cbc_hs256_encrypt(const unsigned char key[JWT_A128CBC_HS256_KEY],
                                  const unsigned char iv[JWT_A128CBC_HS256_IV], const void *aad,
                                  size_t aad_len, const void *pt, size_t n, unsigned char *ct,
                                  size_t cap, unsigned char tag[JWT_A128CBC_HS256_TAG])
{
    size_t need = n / 16 * 16 + 16;
    if (cap < need || n > INT32_MAX - 32)
        return -ENOSPC;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0,
        ok = c && EVP_EncryptInit_ex(c, EVP_aes_128_cbc(), NULL, key + 16, iv) == 1 &&
             EVP_EncryptUpdate(c, ct, &l1, pt, (int)n) == 1 &&
             EVP_EncryptFinal_ex(c, ct + l1, &l2) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok || (size_t)(l1 + l2) != need)
        return -EIO;
    if (cbc_hs256_tag(key, iv, aad, aad_len, ct, need, tag) < 0)
        return -EIO;
    return (ssize_t)need;
}

ssize_t jwt_a128cbc_hs256_decrypt(const unsigned char key[JWT_A128CBC_HS256_KEY],
                                  const unsigned char iv[JWT_A128CBC_HS256_IV], const void *aad,
                                  size_t aad_len, const unsigned char *ct, size_t n,
                                  const unsigned char tag[JWT_A128CBC_HS256_TAG], unsigned char *pt,
                                  size_t cap)
{
    if (n == 0 || n % 16 != 0 || n > INT32_MAX)
        return -EINVAL;
    if (cap < n)
        return -ENOSPC;
    unsigned char want[16];
    if (cbc_hs256_tag(key, iv, aad, aad_len, ct, n, want) < 0)
        return -EIO;
    if (CRYPTO_memcmp(want, tag, 16) != 0)
        return -EBADMSG; /* nothing decrypted */
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0,
        ok = c && EVP_DecryptInit_ex(c, EVP_aes_128_cbc(), NULL, key + 16, iv) == 1 &&
             EVP_DecryptUpdate(c, pt, &l1, ct, (int)n) == 1 &&
             EVP_DecryptFinal_ex(c, pt + l1, &l2) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        OPENSSL_cleanse(pt, n);
        return -EBADMSG;
    }
    return l1 + l2;
}

#define JWE_HEADER "{\"alg\":\"dir\",\"enc\":\"A128CBC-HS256\"}"

ssize_t jwt_jwe_seal(const unsigned char key[JWT_A128CBC_HS256_KEY], const void *pt, size_t n,
                     char *out, size_t cap)
{
    unsigned char iv[16], tag[16];
    if (RAND_bytes(iv, sizeof(iv)) != 1)
        return -EIO;
    size_t ctlen = n / 16 * 16 + 16;
    size_t hl = JWT_B64URL_LEN(sizeof(JWE_HEADER) - 1);
    size_t need =
        hl + 2 + JWT_B64URL_LEN(16) + 1 + JWT_B64URL_LEN(ctlen) + 1 + JWT_B64URL_LEN(16) + 1;
    if (cap < need || n > 1 << 20)
        return -ENOSPC;
    size_t o = jwt_b64url_encode(JWE_HEADER, sizeof(JWE_HEADER) - 1, out);
    unsigned char *ct = OPENSSL_malloc(ctlen);
    if (ct == NULL)
        return -ENOMEM;
    ssize_t r = jwt_a128cbc_hs256_encrypt(key, iv, out, o, pt, n, ct, ctlen, tag);
    if (r < 0) {
        OPENSSL_free(ct);
        return r;
    }
    out[o++] = '.'; /* empty encrypted key for "dir" */
    out[o++] = '.';
    o += jwt_b64url_encode(iv, 16, out + o);
    out[o++] = '.';
    o += jwt_b64url_encode(ct, (size_t)r, out + o);
    out[o++] = '.';
    o += jwt_b64url_encode(tag, 16, out + o);
    OPENSSL_free(ct);
    return (ssize_t)o;
}

ssize_t jwt_jwe_open(const unsigned char key[JWT_A128CBC_HS256_KEY], const char *jwe, size_t len,
                     unsigned char *pt, size_t cap)
{
    const char *seg[5];
    size_t seglen[5], n = 0;
    const char *p = jwe, *end = jwe + len;
    seg[0] = p;
    for (const char *q = p; q < end; q++) {
        if (*q == '.') {
            if (n == 4)
                return -JWT_E_MALFORMED;
            seglen[n] = (size_t)(q - seg[n]);
            seg[++n] = q + 1;
        }
    }
    if (n != 4)
        return -JWT_E_MALFORMED;
    seglen[4] = (size_t)(end - seg[4]);

    unsigned char hdr[512];
    ssize_t hl = jwt_b64url_decode(seg[0], seglen[0], hdr, sizeof(hdr));
    if (hl == -ENOSPC)
        return -JWT_E_TOO_LARGE;
    if (hl <= 0)
        return -JWT_E_MALFORMED;
    struct jwt__obj h;
    if (jwt__obj_parse(&h, (const char *)hdr, (size_t)hl) < 0)
        return -JWT_E_MALFORMED;
    const struct jwt__jval *alg = jwt__obj_get(&h, "alg"), *enc = jwt__obj_get(&h, "enc");
    if (alg == NULL || alg->type != JWT__J_STRING || enc == NULL || enc->type != JWT__J_STRING)
        return -JWT_E_MALFORMED;
    if (!jwt__str_eq(alg, "dir", 3) || !jwt__str_eq(enc, "A128CBC-HS256", 13) ||
        jwt__obj_get(&h, "zip") != NULL)
        return -JWT_E_ALG_NOT_ALLOWED;
    if (jwt__obj_get(&h, "crit") != NULL)
        return -JWT_E_MALFORMED;
    if (seglen[1] != 0) /* "dir": no encrypted key */
        return -JWT_E_MALFORMED;

    unsigned char iv[16], tag[16];
    if (jwt_b64url_decode(seg[2], seglen[2], iv, sizeof(iv)) != 16 ||
        jwt_b64url_decode(seg[4], seglen[4], tag, sizeof(tag)) != 16)
        return -JWT_E_MALFORMED;
    /* decode the ciphertext in place at the end of `pt` (decoded bytes <= encoded length) */
    size_t ctcap = seglen[3] / 4 * 3 + 3;
    if (ctcap > cap)
        return -JWT_E_TOO_LARGE;
    unsigned char *ct = pt + cap - ctcap;
    ssize_t cl = jwt_b64url_decode(seg[3], seglen[3], ct, ctcap);
    if (cl < 0)
        return -JWT_E_MALFORMED;
    if (cl == 0 || cl % 16 != 0)
        return -JWT_E_DECRYPT_FAILED;
    /* CBC decrypts block by block, so the output may overlap the input only if it starts at or
     * before it; move the ciphertext to the front first to keep it simple. */
    memmove(pt, ct, (size_t)cl);
    unsigned char ctbuf_tag[16];
    memcpy(ctbuf_tag, tag, 16);
    ssize_t r =
        jwt_a128cbc_hs256_decrypt(key, iv, seg[0], seglen[0], pt, (size_t)cl, ctbuf_tag, pt, cap);
    if (r == -EBADMSG || r == -EINVAL)
        return -JWT_E_DECRYPT_FAILED;
    if (r < 0)
        return -JWT_E_MALFORMED;
    return r;
}
