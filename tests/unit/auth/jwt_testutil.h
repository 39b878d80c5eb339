// SPDX-License-Identifier: MIT
// Helpers shared by the auth JWT tests: throw-away keys made with the OpenSSL API, public PEM
// export, and token minting / hand-assembly around auth/jwt_mint.h. Test code only.
#ifndef SIPEDGE_TESTS_JWT_TESTUTIL_H
#define SIPEDGE_TESTS_JWT_TESTUTIL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth/jwt.h"
#include "auth/jwt_mint.h"
#include "auth/keys.h"

#define TOK_CAP 16384

static inline EVP_PKEY *tu_rsa(void)
{
    EVP_PKEY *k = EVP_RSA_gen(2048);
    cr_assert_not_null(k);
    return k;
}

static inline EVP_PKEY *tu_ec(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    cr_assert_not_null(k);
    return k;
}

/* The public half of `k` as a PEM (SubjectPublicKeyInfo) string; free() it. */
static inline char *tu_pub_pem(EVP_PKEY *k, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    cr_assert_not_null(b);
    cr_assert_eq(PEM_write_bio_PUBKEY(b, k), 1);
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    char *out = malloc((size_t)n + 1);
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    BIO_free(b);
    if (len)
        *len = (size_t)n;
    return out;
}

/* Add the public half of `k` to `set` under `kid` (alg inferred). */
static inline void tu_add_pub(struct keys_set *set, const char *kid, EVP_PKEY *k)
{
    size_t n = 0;
    char *pem = tu_pub_pem(k, &n);
    cr_assert_eq(keys_set_add_pem(set, kid, pem, n, KEYS_ALG_NONE), 0);
    free(pem);
}

/* Mint `claims` with `alg` / `priv` (or HS256 `secret`) and header kid `kid` into `out`. */
static inline size_t tu_mint(char *out, enum keys_alg alg, EVP_PKEY *priv, const char *secret,
                             const char *kid, const char *header, const char *claims)
{
    struct jwt_mint_spec spec = {
        .alg = alg,
        .priv = priv,
        .secret = (const unsigned char *)secret,
        .secret_len = secret ? strlen(secret) : 0,
        .kid = kid,
        .header_json = header,
        .claims_json = claims,
    };
    ssize_t n = jwt_mint(&spec, out, TOK_CAP);
    cr_assert_gt(n, 0, "jwt_mint: %zd", n);
    return (size_t)n;
}

/* Assemble b64(header).b64(payload).`sig_b64` by hand (no signing). */
static inline size_t tu_assemble(char *out, const char *header, const char *payload,
                                 const char *sig_b64)
{
    size_t o = jwt_b64url_encode(header, strlen(header), out);
    out[o++] = '.';
    o += jwt_b64url_encode(payload, strlen(payload), out + o);
    out[o++] = '.';
    size_t sl = strlen(sig_b64);
    memcpy(out + o, sig_b64, sl + 1);
    return o + sl;
}

static inline enum jwt_reason tu_verify(const struct keys_set *ks, const struct jwt_policy *pol,
                                        const char *tok, size_t len, int64_t now)
{
    struct jwt_result r;
    return jwt_verify(ks, pol, tok, len, now, &r);
}

#endif
