// SPDX-License-Identifier: MIT
// jwt_verify(): compact JWS on pre-parsed keys (RS256, ES256, HS256 when configured), claim checks
// and the CUCM profile (outer RS256 JWS, inner A128CBC-HS256 JWE in the `private` claim).
#include "auth/jwt.h"
#include "auth/jwt_priv.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static const char *const reason_names[JWT_REASON_COUNT] = {
#define JWT_REASON_NAME(n, s) [n] = s,
    JWT_REASONS(JWT_REASON_NAME)
#undef JWT_REASON_NAME
};

const char *jwt_reason_name(enum jwt_reason r)
{
    return (unsigned)r < JWT_REASON_COUNT ? reason_names[r] : "unknown";
}

void jwt_policy_init(struct jwt_policy *pol)
{
    memset(pol, 0, sizeof(*pol));
    pol->profile = JWT_PROFILE_GENERIC;
    pol->leeway = JWT_DEFAULT_LEEWAY;
    pol->user_claim = "sub";
    pol->exp_claim = "exp";
    pol->scope_claim = "scope";
    pol->max_token = JWT_DEFAULT_MAX_TOKEN;
    pol->max_header = JWT_DEFAULT_MAX_HEADER;
    pol->max_payload = JWT_DEFAULT_MAX_PAYLOAD;
}

#define HEADER_CAP  4096                        /* decoded header scratch (stack) */
#define PAYLOAD_CAP (JWT_MAX_TOKEN_CAP / 4 * 3) /* decoded payload scratch (per thread) */
#define SIG_CAP     1024                        /* RSA-8192 signatures fit */

/* Per-thread scratch for the decoded payload and the JWE plaintext: no malloc per verify, no
 * 90 KiB on a worker's stack. Only ever used within one jwt_verify() call. */
static _Thread_local unsigned char payload_scratch[PAYLOAD_CAP];
static _Thread_local unsigned char plain_scratch[PAYLOAD_CAP];

static size_t bound(size_t v, size_t dflt, size_t cap)
{
    if (v == 0)
        v = dflt;
    return v < cap ? v : cap;
}

/* ---- signatures ---- */

/* DER INTEGER of a 32-byte big-endian unsigned value into `o`; returns the bytes written. */
static size_t der_int32(const unsigned char *v, unsigned char *o)
{
    size_t skip = 0;
    while (skip < 31 && v[skip] == 0)
        skip++;
    size_t n = 32 - skip;
    bool pad = (v[skip] & 0x80) != 0;
    o[0] = 0x02;
    o[1] = (unsigned char)(n + pad);
    if (pad)
        o[2] = 0;
    memcpy(o + 2 + pad, v + skip, n);
    return 2 + pad + n;
}

/* OpenSSL 3 sets up an EVP_PKEY_CTX (algorithm fetch, provider key import) on every
 * EVP_DigestVerifyInit: ≈ 8 µs per check here, a quarter of an RS256 verify. Each thread keeps the
 * verify context of its last few keys instead (the context holds a reference on its key, so a
 * rotated-out key's address cannot be reused while cached) and one digest context. */
enum { VERIFY_SLOTS = 8 };

struct verify_cache {
    struct {
        EVP_PKEY *pkey;
        EVP_PKEY_CTX *pctx;
    } slot[VERIFY_SLOTS];
    unsigned next;
    EVP_MD_CTX *md_ctx;
    bool keyed;
};

static _Thread_local struct verify_cache vcache;
static pthread_key_t vcache_key;
static pthread_once_t vcache_once = PTHREAD_ONCE_INIT;
static bool vcache_key_ok;
static EVP_MD *sha256_md;

static void vcache_free(void *arg)
{
    struct verify_cache *v = arg;
    for (unsigned i = 0; i < VERIFY_SLOTS; i++) {
        EVP_PKEY_CTX_free(v->slot[i].pctx);
        v->slot[i].pctx = NULL;
        v->slot[i].pkey = NULL;
    }
    EVP_MD_CTX_free(v->md_ctx);
    v->md_ctx = NULL;
    v->keyed = false;
}

static void vcache_init(void)
{
    vcache_key_ok = pthread_key_create(&vcache_key, vcache_free) == 0;
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* This thread's verify context for `pkey`, made on first use; NULL when unavailable. */
static EVP_PKEY_CTX *verify_ctx(EVP_PKEY *pkey)
{
    struct verify_cache *v = &vcache;
    if (!v->keyed) {
        pthread_once(&vcache_once, vcache_init);
        if (!vcache_key_ok || sha256_md == NULL || pthread_setspecific(vcache_key, v) != 0)
            return NULL;
        v->keyed = true;
    }
    for (unsigned i = 0; i < VERIFY_SLOTS; i++)
        if (v->slot[i].pkey == pkey)
            return v->slot[i].pctx;
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (pctx == NULL || EVP_PKEY_verify_init(pctx) != 1 ||
        EVP_PKEY_CTX_set_signature_md(pctx, sha256_md) != 1) {
        EVP_PKEY_CTX_free(pctx);
        ERR_clear_error();
        return NULL;
    }
    unsigned i = v->next++ % VERIFY_SLOTS;
    EVP_PKEY_CTX_free(v->slot[i].pctx);
    v->slot[i].pkey = pkey;
    v->slot[i].pctx = pctx;
    return pctx;
}

static bool verify_digest(EVP_PKEY *pkey, const unsigned char *sig, size_t siglen, const char *data,
                          size_t len)
{
    EVP_PKEY_CTX *pctx = verify_ctx(pkey);
    if (pctx == NULL) { /* no per-thread cache: the one-shot way */
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        bool ok = ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
                  EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)data, len) == 1;
        EVP_MD_CTX_free(ctx);
        return ok;
    }
    struct verify_cache *v = &vcache;
    if (v->md_ctx == NULL && (v->md_ctx = EVP_MD_CTX_new()) == NULL)
        return false;
    unsigned char dgst[32];
    unsigned int dlen = 0;
    if (EVP_DigestInit_ex(v->md_ctx, sha256_md, NULL) != 1 ||
        EVP_DigestUpdate(v->md_ctx, data, len) != 1 ||
        EVP_DigestFinal_ex(v->md_ctx, dgst, &dlen) != 1 || dlen != sizeof(dgst))
        return false;
    bool ok = EVP_PKEY_verify(pctx, sig, siglen, dgst, sizeof(dgst)) == 1;
    if (!ok)
        ERR_clear_error(); /* a bad signature leaves its reason on this thread's queue */
    return ok;
}

static bool verify_sig(const struct keys_key *k, const unsigned char *sig, size_t siglen,
                       const char *data, size_t len)
{
    switch (k->alg) {
    case KEYS_ALG_RS256:
        if ((int)siglen != EVP_PKEY_get_size(k->pkey))
            return false;
        return verify_digest(k->pkey, sig, siglen, data, len);
    case KEYS_ALG_ES256: {
        /* JWS carries raw R || S (RFC 7518 3.4); OpenSSL wants DER. Anything but 64 bytes,
         * a DER signature included, is refused. */
        if (siglen != 64)
            return false;
        unsigned char der[2 + 2 * 35];
        size_t n = der_int32(sig, der + 2);
        n += der_int32(sig + 32, der + 2 + n);
        der[0] = 0x30;
        der[1] = (unsigned char)n;
        return verify_digest(k->pkey, der, n + 2, data, len);
    }
    case KEYS_ALG_HS256: {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen = 0;
        if (siglen != 32 || k->secret == NULL ||
            HMAC(EVP_sha256(), k->secret, (int)k->secret_len, (const unsigned char *)data, len, mac,
                 &maclen) == NULL ||
            maclen != 32)
            return false;
        return CRYPTO_memcmp(mac, sig, 32) == 0;
    }
    default:
        return false;
    }
}

/* ---- claims ---- */

/* A NumericDate claim: 1 number stored, 0 absent, -1 present but not a usable number. */
static int num_claim(const struct jwt__obj *claims, const char *name, int64_t *v)
{
    const struct jwt__jval *j = jwt__obj_get(claims, name);
    if (j == NULL)
        return 0;
    return jwt__num(j, v) == 0 ? 1 : -1;
}

static bool str_is(const struct jwt__jval *j, const char *want)
{
    return jwt__str_eq(j, want, strlen(want));
}

static bool aud_ok(const struct jwt__jval *aud, const char *want)
{
    if (aud == NULL)
        return false;
    if (aud->type == JWT__J_STRING)
        return str_is(aud, want);
    size_t pos = 0;
    struct jwt__jval v;
    while (jwt__arr_next(aud, &pos, &v))
        if (str_is(&v, want))
            return true;
    return false;
}

static void scope_mark(const struct jwt_policy *pol, const char *s, size_t len, uint64_t *bits)
{
    for (size_t i = 0; i < pol->n_scopes && i < JWT_MAX_SCOPES; i++) {
        const char *want = pol->scopes[i];
        if (want != NULL && strlen(want) == len && memcmp(want, s, len) == 0)
            *bits |= 1ull << i;
    }
}

#define SCOPE_CAP 4096 /* bytes of one unescaped scope string (longer: no scope matches) */

static uint64_t scope_bits(const struct jwt_policy *pol, const struct jwt__jval *scope)
{
    uint64_t bits = 0;
    char buf[SCOPE_CAP];
    if (scope == NULL)
        return 0;
    if (scope->type == JWT__J_STRING) {
        ssize_t n = jwt__str(scope, buf, sizeof(buf));
        const char *s = buf, *end = buf + (n > 0 ? n : 0);
        while (s < end) {
            while (s < end && *s == ' ')
                s++;
            const char *w = s;
            while (s < end && *s != ' ')
                s++;
            if (s > w)
                scope_mark(pol, w, (size_t)(s - w), &bits);
        }
    } else if (scope->type == JWT__J_ARRAY) {
        size_t pos = 0;
        struct jwt__jval v;
        while (jwt__arr_next(scope, &pos, &v)) {
            ssize_t n = v.type == JWT__J_STRING ? jwt__str(&v, buf, sizeof(buf)) : -1;
            if (n > 0)
                scope_mark(pol, buf, (size_t)n, &bits);
        }
    }
    return bits;
}

/* Copy a string claim into `dst` (cap+1 bytes). JWT_OK, missing_claim (absent, not a string,
 * empty, holds NUL) or too_large. */
static enum jwt_reason copy_str(const struct jwt__jval *j, char *dst, size_t cap, size_t *out_len)
{
    if (j == NULL || j->type != JWT__J_STRING)
        return JWT_E_MISSING_CLAIM;
    ssize_t l = jwt__str(j, dst, cap);
    if (l == -ENOSPC)
        return JWT_E_TOO_LARGE;
    if (l <= 0 || memchr(dst, '\0', (size_t)l) != NULL)
        return JWT_E_MISSING_CLAIM;
    dst[l] = '\0';
    if (out_len)
        *out_len = (size_t)l;
    return JWT_OK;
}

static enum jwt_reason check_claims(const struct jwt_policy *pol, const struct jwt__obj *claims,
                                    int64_t now, struct jwt_result *out)
{
    int64_t exp = 0, nbf = 0, iat = 0, lw = pol->leeway > 0 ? pol->leeway : 0;
    const char *exp_name = pol->exp_claim ? pol->exp_claim : "exp";
    if (num_claim(claims, exp_name, &exp) != 1)
        return JWT_E_MISSING_CLAIM;
    if (now >= exp && now - exp >= lw)
        return JWT_E_EXPIRED;
    int r = num_claim(claims, "nbf", &nbf);
    if (r < 0)
        return JWT_E_MALFORMED;
    if (r == 1 && nbf > now && nbf - now > lw)
        return JWT_E_NOT_YET_VALID;
    r = num_claim(claims, "iat", &iat);
    if (r < 0)
        return JWT_E_MALFORMED;
    if (r == 1 && iat > now && iat - now > lw)
        return JWT_E_NOT_YET_VALID;
    if (pol->iss != NULL && !str_is(jwt__obj_get(claims, "iss"), pol->iss))
        return JWT_E_BAD_ISSUER;
    if (pol->aud != NULL && !aud_ok(jwt__obj_get(claims, "aud"), pol->aud))
        return JWT_E_BAD_AUDIENCE;
    if (pol->n_scopes > 0) {
        size_t n = pol->n_scopes < JWT_MAX_SCOPES ? pol->n_scopes : JWT_MAX_SCOPES;
        uint64_t all = n == 64 ? ~0ull : (1ull << n) - 1;
        out->scope_bits =
            scope_bits(pol, jwt__obj_get(claims, pol->scope_claim ? pol->scope_claim : "scope"));
        if ((out->scope_bits & all) != all)
            return JWT_E_INSUFFICIENT_SCOPE;
    }
    enum jwt_reason rr = copy_str(jwt__obj_get(claims, pol->user_claim ? pol->user_claim : "sub"),
                                  out->user, JWT_MAX_USER, &out->user_len);
    if (rr != JWT_OK)
        return rr;
    const struct jwt__jval *jti = jwt__obj_get(claims, "jti");
    if (jti != NULL) {
        rr = copy_str(jti, out->jti, JWT_MAX_JTI, NULL);
        if (rr != JWT_OK)
            return rr == JWT_E_TOO_LARGE ? rr : JWT_E_MALFORMED;
    }
    out->exp = exp;
    return JWT_OK;
}

/* ---- the CUCM profile ---- */

static enum jwt_reason verify_cucm(const struct keys_set *ks, const struct jwt_policy *pol,
                                   const struct jwt__obj *outer, int64_t now, size_t max_payload,
                                   struct jwt_result *out)
{
    const struct jwt__jval *priv = jwt__obj_get(outer, "private");
    if (priv == NULL || priv->type != JWT__J_STRING)
        return JWT_E_MISSING_CLAIM;
    if (priv->esc) /* a compact JWE is base64url and dots: nothing to escape */
        return JWT_E_MALFORMED;
    int64_t oexp = 0;
    int r = num_claim(outer, pol->exp_claim ? pol->exp_claim : "exp", &oexp);
    if (r < 0)
        return JWT_E_MALFORMED;
    int64_t lw = pol->leeway > 0 ? pol->leeway : 0;
    if (r == 1 && now >= oexp && now - oexp >= lw)
        return JWT_E_EXPIRED;

    const unsigned char *sym = keys_sym(ks);
    if (sym == NULL) {
        /* Signature checked, claims unreadable: the caller forwards and caps its cache TTL. */
        out->signature_only = true;
        out->exp = r == 1 ? oexp : 0;
        const struct jwt__jval *u = jwt__obj_get(outer, pol->user_claim ? pol->user_claim : "sub");
        if (copy_str(u, out->user, JWT_MAX_USER, &out->user_len) != JWT_OK) {
            out->user[0] = '\0';
            out->user_len = 0;
        }
        return JWT_OK;
    }
    ssize_t n = jwt_jwe_open(sym, priv->p, priv->len, plain_scratch, max_payload);
    if (n < 0)
        return (enum jwt_reason)(-n);
    /* The plaintext is the claims JSON; a compact JWS is also accepted and its payload read (its
     * own signature is not checked: the JWE tag already authenticates every byte). */
    const char *pt = (const char *)plain_scratch;
    size_t pl = (size_t)n;
    while (pl && (*pt == ' ' || *pt == '\t' || *pt == '\r' || *pt == '\n')) {
        pt++;
        pl--;
    }
    size_t cl = pl;
    const char *cj = pt;
    if (pl > 0 && *pt != '{') {
        const char *d1 = memchr(pt, '.', pl);
        const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(pt + pl - d1 - 1)) : NULL;
        if (d2 == NULL || memchr(d2 + 1, '.', (size_t)(pt + pl - d2 - 1)) != NULL) {
            OPENSSL_cleanse(plain_scratch, (size_t)n);
            return JWT_E_MALFORMED;
        }
        /* decode in place: the decoded payload is shorter than its encoding and starts earlier */
        ssize_t dl =
            jwt_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), plain_scratch, (size_t)(d2 - d1 - 1));
        if (dl <= 0) {
            OPENSSL_cleanse(plain_scratch, (size_t)n);
            return JWT_E_MALFORMED;
        }
        cj = (const char *)plain_scratch;
        cl = (size_t)dl;
    }
    struct jwt__obj inner;
    enum jwt_reason rr =
        jwt__obj_parse(&inner, cj, cl) == 0 ? check_claims(pol, &inner, now, out) : JWT_E_MALFORMED;
    OPENSSL_cleanse(plain_scratch, (size_t)n);
    if (rr == JWT_OK && r == 1 && oexp < out->exp)
        out->exp = oexp;
    return rr;
}

/* ---- verify ---- */

static enum jwt_reason verify(const struct keys_set *ks, const struct jwt_policy *pol,
                              const char *token, size_t len, int64_t now, struct jwt_result *out)
{
    size_t max_token = bound(pol->max_token, JWT_DEFAULT_MAX_TOKEN, JWT_MAX_TOKEN_CAP);
    size_t max_header = bound(pol->max_header, JWT_DEFAULT_MAX_HEADER, HEADER_CAP);
    size_t max_payload = bound(pol->max_payload, JWT_DEFAULT_MAX_PAYLOAD, PAYLOAD_CAP);
    if (token == NULL || len == 0)
        return JWT_E_MALFORMED;
    if (len > max_token)
        return JWT_E_TOO_LARGE;

    /* split without copying: exactly three segments */
    const char *d1 = memchr(token, '.', len);
    if (d1 == NULL)
        return JWT_E_MALFORMED;
    const char *end = token + len;
    const char *d2 = memchr(d1 + 1, '.', (size_t)(end - d1 - 1));
    if (d2 == NULL || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)) != NULL)
        return JWT_E_MALFORMED;
    const char *h = token, *p = d1 + 1, *s = d2 + 1;
    size_t hl = (size_t)(d1 - h), pl = (size_t)(d2 - p), sl = (size_t)(end - s);
    if (hl == 0 || pl == 0)
        return JWT_E_MALFORMED;

    unsigned char hdr[HEADER_CAP];
    ssize_t n = jwt_b64url_decode(h, hl, hdr, max_header);
    if (n == -ENOSPC)
        return JWT_E_TOO_LARGE;
    if (n <= 0)
        return JWT_E_MALFORMED;
    struct jwt__obj hj;
    if (jwt__obj_parse(&hj, (const char *)hdr, (size_t)n) < 0)
        return JWT_E_MALFORMED;
    const struct jwt__jval *alg = jwt__obj_get(&hj, "alg"), *kid = jwt__obj_get(&hj, "kid");
    char algbuf[16], kidbuf[KEYS_MAX_KID];
    ssize_t algl = -1, kidl = -1;
    if (alg == NULL || alg->type != JWT__J_STRING || (kid != NULL && kid->type != JWT__J_STRING) ||
        jwt__obj_get(&hj, "crit") != NULL)
        return JWT_E_MALFORMED;
    enum keys_alg a = KEYS_ALG_NONE;
    if ((algl = jwt__str(alg, algbuf, sizeof(algbuf))) < 0 ||
        (a = keys_alg_from_name(algbuf, (size_t)algl)) == KEYS_ALG_NONE)
        return JWT_E_ALG_NOT_ALLOWED;
    const struct keys_key *k = NULL;
    if (kid != NULL)
        kidl = jwt__str(kid, kidbuf, sizeof(kidbuf));
    if (kid != NULL ? kidl < 0 || (k = keys_find(ks, kidbuf, (size_t)kidl)) == NULL
                    : (k = keys_default(ks)) == NULL)
        return JWT_E_UNKNOWN_KID;
    if (k->alg != a)
        return JWT_E_ALG_NOT_ALLOWED;

    /* Decode (not parse) the payload first so that a bad encoding anywhere is "malformed". */
    ssize_t pn = jwt_b64url_decode(p, pl, payload_scratch, max_payload);
    if (pn == -ENOSPC)
        return JWT_E_TOO_LARGE;
    if (pn <= 0)
        return JWT_E_MALFORMED;
    unsigned char sig[SIG_CAP];
    n = jwt_b64url_decode(s, sl, sig, sizeof(sig));
    if (n == -EINVAL)
        return JWT_E_MALFORMED;
    if (n < 0 || !verify_sig(k, sig, (size_t)n, token, hl + 1 + pl))
        return JWT_E_BAD_SIGNATURE;

    /* Only authenticated bytes are parsed from here on. */
    struct jwt__obj claims;
    if (jwt__obj_parse(&claims, (const char *)payload_scratch, (size_t)pn) < 0)
        return JWT_E_MALFORMED;
    enum jwt_profile prof = pol->profile;
    if (prof == JWT_PROFILE_AUTO) {
        const struct jwt__jval *pv = jwt__obj_get(&claims, "private");
        prof = pv != NULL && pv->type == JWT__J_STRING ? JWT_PROFILE_CUCM : JWT_PROFILE_GENERIC;
    }
    if (prof == JWT_PROFILE_CUCM)
        return verify_cucm(ks, pol, &claims, now, max_payload, out);
    return check_claims(pol, &claims, now, out);
}

enum jwt_reason jwt_verify(const struct keys_set *ks, const struct jwt_policy *pol,
                           const char *token, size_t len, int64_t now, struct jwt_result *out)
{
    struct jwt_policy dflt;
    if (pol == NULL) {
        jwt_policy_init(&dflt);
        pol = &dflt;
    }
    out->reason = JWT_OK;
    out->user[0] = '\0';
    out->user_len = 0;
    out->jti[0] = '\0';
    out->exp = 0;
    out->scope_bits = 0;
    out->signature_only = false;
    enum jwt_reason r = ks == NULL ? JWT_E_UNKNOWN_KID : verify(ks, pol, token, len, now, out);
    out->reason = r;
    return r;
}

size_t jwt_peek_jti(const char *token, size_t len, char out[JWT_MAX_JTI + 1])
{
    out[0] = '\0';
    if (token == NULL || len == 0 || len > JWT_MAX_TOKEN_CAP)
        return 0;
    const char *d1 = memchr(token, '.', len);
    const char *end = token + len;
    const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(end - d1 - 1)) : NULL;
    if (d2 == NULL)
        return 0;
    ssize_t pn = jwt_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), plain_scratch, PAYLOAD_CAP);
    struct jwt__obj o;
    if (pn <= 0 || jwt__obj_parse(&o, (const char *)plain_scratch, (size_t)pn) < 0)
        return 0;
    const struct jwt__jval *jti = jwt__obj_get(&o, "jti");
    ssize_t n = jti && jti->type == JWT__J_STRING ? jwt__str(jti, out, JWT_MAX_JTI) : -1;
    if (n <= 0 || memchr(out, '\0', (size_t)n) != NULL) {
        out[0] = '\0';
        return 0;
    }
    out[n] = '\0';
    return (size_t)n;
}
