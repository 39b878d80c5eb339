// SPDX-License-Identifier: MIT
// Token minting for tools, tests and benchmarks (OpenSSL signing; the JWE sealing lives in jwe.c).
#include "auth/jwt_mint.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>

static ssize_t sign_digest(EVP_PKEY *pkey, const char *data, size_t len, unsigned char *sig,
                           size_t cap)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t sl = cap;
    int ok = ctx != NULL && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
             EVP_DigestSign(ctx, sig, &sl, (const unsigned char *)data, len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? (ssize_t)sl : -EIO;
}

ssize_t jwt_mint_sign(const struct jwt_mint_spec *spec, const char *signing_input, size_t len,
                      unsigned char *sig, size_t cap)
{
    switch (spec->alg) {
    case KEYS_ALG_RS256:
        if (spec->priv == NULL)
            return -EINVAL;
        if ((size_t)EVP_PKEY_get_size(spec->priv) > cap)
            return -ENOSPC;
        return sign_digest(spec->priv, signing_input, len, sig, cap);
    case KEYS_ALG_ES256: {
        if (spec->priv == NULL)
            return -EINVAL;
        if (cap < 64)
            return -ENOSPC;
        unsigned char der[160];
        ssize_t n = sign_digest(spec->priv, signing_input, len, der, sizeof(der));
        if (n < 0)
            return n;
        const unsigned char *p = der;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, n);
        if (es == NULL)
            return -EIO;
        const BIGNUM *r = NULL, *s = NULL;
        ECDSA_SIG_get0(es, &r, &s);
        int ok = BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(s, sig + 32, 32) == 32;
        ECDSA_SIG_free(es);
        return ok ? 64 : -EIO;
    }
    case KEYS_ALG_HS256: {
        unsigned int ml = 0;
        if (spec->secret == NULL || spec->secret_len == 0)
            return -EINVAL;
        if (cap < 32)
            return -ENOSPC;
        if (HMAC(EVP_sha256(), spec->secret, (int)spec->secret_len,
                 (const unsigned char *)signing_input, len, sig, &ml) == NULL)
            return -EIO;
        return (ssize_t)ml;
    }
    default:
        return -EINVAL;
    }
}

/* Append base64url(`data`) to out at *o; false when it does not fit. */
static bool put_b64(char *out, size_t cap, size_t *o, const void *data, size_t n)
{
    if (*o + JWT_B64URL_LEN(n) + 1 > cap)
        return false;
    *o += jwt_b64url_encode(data, n, out + *o);
    return true;
}

ssize_t jwt_mint(const struct jwt_mint_spec *spec, char *out, size_t cap)
{
    if (spec->claims_json == NULL)
        return -EINVAL;
    char *hdr = NULL, *payload = NULL;
    ssize_t rc = 0;
    if (spec->header_json != NULL) {
        hdr = strdup(spec->header_json);
    } else {
        json_t *h = json_pack("{s:s, s:s}", "alg", keys_alg_name(spec->alg), "typ", "JWT");
        if (h != NULL && spec->kid != NULL)
            json_object_set_new(h, "kid", json_string(spec->kid));
        hdr = h ? json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(h);
    }
    if (spec->profile == JWT_PROFILE_CUCM) {
        if (spec->sym_key == NULL) {
            free(hdr);
            return -EINVAL;
        }
        size_t cl = strlen(spec->claims_json);
        size_t jcap = JWT_B64URL_LEN(cl + 16) + 256;
        char *jwe = malloc(jcap);
        ssize_t jl = jwe ? jwt_jwe_seal(spec->sym_key, spec->claims_json, cl, jwe, jcap) : -ENOMEM;
        if (jl >= 0) {
            json_t *o = json_pack("{s:s}", "private", jwe);
            payload = o ? json_dumps(o, JSON_COMPACT) : NULL;
            json_decref(o);
        } else {
            rc = jl;
        }
        free(jwe);
    } else {
        payload = strdup(spec->claims_json);
    }
    if (rc == 0 && (hdr == NULL || payload == NULL))
        rc = -ENOMEM;
    size_t o = 0;
    if (rc == 0 && (!put_b64(out, cap, &o, hdr, strlen(hdr)) || o + 1 >= cap))
        rc = -ENOSPC;
    if (rc == 0) {
        out[o++] = '.';
        if (!put_b64(out, cap, &o, payload, strlen(payload)))
            rc = -ENOSPC;
    }
    unsigned char sig[1024];
    ssize_t sl = rc == 0 ? jwt_mint_sign(spec, out, o, sig, sizeof(sig)) : rc;
    if (sl < 0)
        rc = sl;
    if (rc == 0) {
        if (o + 1 >= cap) {
            rc = -ENOSPC;
        } else {
            out[o++] = '.';
            if (!put_b64(out, cap, &o, sig, (size_t)sl))
                rc = -ENOSPC;
        }
    }
    free(hdr);
    free(payload);
    return rc < 0 ? rc : (ssize_t)o;
}
