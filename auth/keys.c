// SPDX-License-Identifier: MIT
// Key sets: PEM / JWKS / HS256 secret / CUCM symmetric key loading, kid lookup (sorted array,
// binary search) and the reference-counted store that swaps sets atomically on reload.
#include "auth/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "auth/jwt.h"

struct keys_set {
    atomic_uint refs;
    bool finished;
    bool has_sym;
    bool has_default_name;
    size_t n, cap;
    struct keys_key *keys; /* sorted by kid once finished */
    const struct keys_key *dflt;
    char default_kid[KEYS_MAX_KID + 1];
    unsigned char sym[KEYS_SYM_LEN];
    uint8_t fp[KEYS_FP_LEN];
};

struct keys_store {
    pthread_mutex_t lock;
    struct keys_set *cur; /* guarded by lock */
    atomic_uint_fast64_t gen;
};

static const char *const alg_names[KEYS_ALG_COUNT] = {
    [KEYS_ALG_NONE] = "none",
    [KEYS_ALG_RS256] = "RS256",
    [KEYS_ALG_ES256] = "ES256",
    [KEYS_ALG_HS256] = "HS256",
};

const char *keys_alg_name(enum keys_alg alg)
{
    return (unsigned)alg < KEYS_ALG_COUNT ? alg_names[alg] : "none";
}

enum keys_alg keys_alg_from_name(const char *name, size_t len)
{
    for (int a = KEYS_ALG_RS256; a < KEYS_ALG_COUNT; a++)
        if (strlen(alg_names[a]) == len && memcmp(alg_names[a], name, len) == 0)
            return (enum keys_alg)a;
    return KEYS_ALG_NONE;
}

static void msg(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void msg(char *buf, size_t len, const char *fmt, ...)
{
    if (buf == NULL || len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* Append one line to the warning buffer (truncating silently). */
static void warn_add(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warn_add(char *buf, size_t len, const char *fmt, ...)
{
    if (buf == NULL || len == 0)
        return;
    size_t used = strnlen(buf, len);
    if (used + 1 >= len)
        return;
    if (used > 0)
        buf[used++] = '\n';
    buf[used] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
}

/* ---- the set ---- */

struct keys_set *keys_set_new(void)
{
    struct keys_set *s = calloc(1, sizeof(*s));
    if (s != NULL)
        atomic_init(&s->refs, 1);
    return s;
}

static void set_free(struct keys_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        EVP_PKEY_free(s->keys[i].pkey);
        if (s->keys[i].secret != NULL) {
            OPENSSL_cleanse(s->keys[i].secret, s->keys[i].secret_len);
            free(s->keys[i].secret);
        }
    }
    free(s->keys);
    OPENSSL_cleanse(s->sym, sizeof(s->sym));
    free(s);
}

struct keys_set *keys_set_ref(struct keys_set *set)
{
    atomic_fetch_add_explicit(&set->refs, 1, memory_order_relaxed);
    return set;
}

void keys_release(struct keys_set *set)
{
    if (set == NULL)
        return;
    if (atomic_fetch_sub_explicit(&set->refs, 1, memory_order_acq_rel) == 1)
        set_free(set);
}

/* Reserve a slot with `kid`; NULL with *err set when the kid is bad or the set is full. */
static struct keys_key *set_slot(struct keys_set *s, const char *kid, int *err)
{
    if (kid == NULL)
        kid = "";
    size_t kl = strlen(kid);
    if (s->finished || kl > KEYS_MAX_KID) {
        *err = -EINVAL;
        return NULL;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (s->keys[i].kid_len == kl && memcmp(s->keys[i].kid, kid, kl) == 0) {
            *err = -EINVAL; /* duplicate kid */
            return NULL;
        }
    }
    if (s->n == KEYS_MAX_KEYS) {
        *err = -ENOSPC;
        return NULL;
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 8;
        struct keys_key *nk = realloc(s->keys, nc * sizeof(*nk));
        if (nk == NULL) {
            *err = -ENOMEM;
            return NULL;
        }
        s->keys = nk;
        s->cap = nc;
    }
    struct keys_key *k = &s->keys[s->n];
    memset(k, 0, sizeof(*k));
    memcpy(k->kid, kid, kl + 1);
    k->kid_len = kl;
    return k;
}

/* The algorithm `pkey` supports, KEYS_ALG_NONE if none (wrong type, curve or RSA < 2048 bits). */
static enum keys_alg pkey_alg(EVP_PKEY *pkey)
{
    int id = EVP_PKEY_get_base_id(pkey);
    if (id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS)
        return EVP_PKEY_get_bits(pkey) >= 2048 && id == EVP_PKEY_RSA ? KEYS_ALG_RS256
                                                                     : KEYS_ALG_NONE;
    if (id == EVP_PKEY_EC) {
        char group[64];
        size_t gl = 0;
        if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &gl) == 1 &&
            (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0))
            return KEYS_ALG_ES256;
    }
    return KEYS_ALG_NONE;
}

int keys_set_add_pkey(struct keys_set *set, const char *kid, EVP_PKEY *pkey, enum keys_alg alg)
{
    enum keys_alg fit = pkey ? pkey_alg(pkey) : KEYS_ALG_NONE;
    if (fit == KEYS_ALG_NONE || (alg != KEYS_ALG_NONE && alg != fit)) {
        EVP_PKEY_free(pkey);
        return -EINVAL;
    }
    int err = 0;
    struct keys_key *k = set_slot(set, kid, &err);
    if (k == NULL) {
        EVP_PKEY_free(pkey);
        return err;
    }
    k->alg = fit;
    k->pkey = pkey;
    set->n++;
    return 0;
}

static EVP_PKEY *pem_parse(const char *pem, size_t len)
{
    if (len > INT32_MAX)
        return NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        return NULL;
    EVP_PKEY *pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    if (pkey == NULL) {
        (void)BIO_reset(bio);
        X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (x != NULL) {
            pkey = X509_get_pubkey(x);
            X509_free(x);
        }
    }
    BIO_free(bio);
    return pkey;
}

int keys_set_add_pem(struct keys_set *set, const char *kid, const char *pem, size_t len,
                     enum keys_alg alg)
{
    EVP_PKEY *pkey = pem_parse(pem, len);
    if (pkey == NULL)
        return -EINVAL;
    return keys_set_add_pkey(set, kid, pkey, alg);
}

int keys_set_add_hs256(struct keys_set *set, const char *kid, const void *secret, size_t len)
{
    if (len == 0 || len > KEYS_MAX_HS_SECRET)
        return -EINVAL;
    int err = 0;
    struct keys_key *k = set_slot(set, kid, &err);
    if (k == NULL)
        return err;
    k->secret = malloc(len);
    if (k->secret == NULL)
        return -ENOMEM;
    memcpy(k->secret, secret, len);
    k->secret_len = len;
    k->alg = KEYS_ALG_HS256;
    set->n++;
    return 0;
}

void keys_set_set_sym(struct keys_set *set, const unsigned char key[KEYS_SYM_LEN])
{
    memcpy(set->sym, key, KEYS_SYM_LEN);
    set->has_sym = true;
}

int keys_set_set_default(struct keys_set *set, const char *kid)
{
    if (kid == NULL) {
        set->has_default_name = false;
        return 0;
    }
    size_t kl = strlen(kid);
    if (kl > KEYS_MAX_KID)
        return -EINVAL;
    memcpy(set->default_kid, kid, kl + 1);
    set->has_default_name = true;
    return 0;
}

static int key_cmp(const void *a, const void *b)
{
    const struct keys_key *x = a, *y = b;
    size_t n = x->kid_len < y->kid_len ? x->kid_len : y->kid_len;
    int c = memcmp(x->kid, y->kid, n);
    if (c != 0)
        return c;
    return (x->kid_len > y->kid_len) - (x->kid_len < y->kid_len);
}

static void fp_u32(EVP_MD_CTX *md, size_t v, int *ok)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    *ok &= EVP_DigestUpdate(md, b, sizeof(b));
}

/* Length-prefixed fields, so that no two different sets hash the same byte stream. */
static void fp_field(EVP_MD_CTX *md, const void *p, size_t n, int *ok)
{
    fp_u32(md, n, ok);
    if (n > 0)
        *ok &= EVP_DigestUpdate(md, p, n);
}

static int set_fingerprint(struct keys_set *set)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL && EVP_DigestInit_ex2(md, EVP_sha256(), NULL) == 1;
    fp_field(md, "sipedge keys v1", 15, &ok);
    fp_u32(md, set->n, &ok);
    for (size_t i = 0; i < set->n && ok; i++) {
        const struct keys_key *k = &set->keys[i];
        fp_field(md, k->kid, k->kid_len, &ok);
        fp_u32(md, (size_t)k->alg, &ok);
        if (k->pkey != NULL) {
            unsigned char *der = NULL;
            int dl = i2d_PUBKEY(k->pkey, &der);
            ok &= dl > 0;
            if (dl > 0)
                fp_field(md, der, (size_t)dl, &ok);
            OPENSSL_free(der);
        } else {
            fp_field(md, k->secret, k->secret_len, &ok);
        }
    }
    fp_field(md, set->dflt ? set->dflt->kid : "", set->dflt ? set->dflt->kid_len : 0, &ok);
    fp_u32(md, set->dflt != NULL, &ok);
    fp_field(md, set->sym, set->has_sym ? KEYS_SYM_LEN : 0, &ok);
    unsigned int n = 0;
    ok = ok && EVP_DigestFinal_ex(md, set->fp, &n) == 1 && n == KEYS_FP_LEN;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -ENOMEM;
}

const uint8_t *keys_set_fingerprint(const struct keys_set *set)
{
    return set && set->finished ? set->fp : NULL;
}

int keys_set_finish(struct keys_set *set)
{
    if (set->n > 1)
        qsort(set->keys, set->n, sizeof(*set->keys), key_cmp);
    set->finished = true;
    set->dflt = NULL;
    if (set->has_default_name) {
        set->dflt = keys_find(set, set->default_kid, strlen(set->default_kid));
        if (set->dflt == NULL)
            return -ENOENT;
    } else if (set->n == 1) {
        set->dflt = &set->keys[0];
    }
    return set_fingerprint(set);
}

const struct keys_key *keys_find(const struct keys_set *set, const char *kid, size_t len)
{
    if (set == NULL || len > KEYS_MAX_KID)
        return NULL;
    size_t lo = 0, hi = set->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct keys_key *k = &set->keys[mid];
        size_t n = k->kid_len < len ? k->kid_len : len;
        int c = memcmp(k->kid, kid, n);
        if (c == 0)
            c = (k->kid_len > len) - (k->kid_len < len);
        if (c == 0)
            return k;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const struct keys_key *keys_default(const struct keys_set *set)
{
    return set ? set->dflt : NULL;
}

const unsigned char *keys_sym(const struct keys_set *set)
{
    return set && set->has_sym ? set->sym : NULL;
}

size_t keys_count(const struct keys_set *set)
{
    return set ? set->n : 0;
}

const struct keys_key *keys_at(const struct keys_set *set, size_t i)
{
    return set && i < set->n ? &set->keys[i] : NULL;
}

/* ---- JWKS ---- */

/* Decode a base64url JWK member into a fresh buffer; NULL when absent or malformed. */
static unsigned char *jwk_b64(json_t *jwk, const char *name, size_t *out_len)
{
    json_t *v = json_object_get(jwk, name);
    if (!json_is_string(v))
        return NULL;
    const char *s = json_string_value(v);
    size_t l = json_string_length(v);
    if (l == 0 || l > 4096)
        return NULL;
    unsigned char *buf = malloc(l);
    if (buf == NULL)
        return NULL;
    ssize_t n = jwt_b64url_decode(s, l, buf, l);
    if (n <= 0) {
        free(buf);
        return NULL;
    }
    *out_len = (size_t)n;
    return buf;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params != NULL && ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1)
        (void)EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *jwk_rsa(json_t *jwk, const char **why)
{
    size_t nl = 0, el = 0;
    unsigned char *n = jwk_b64(jwk, "n", &nl), *e = jwk_b64(jwk, "e", &el);
    EVP_PKEY *pkey = NULL;
    *why = "RSA key needs base64url members n and e";
    if (n != NULL && e != NULL) {
        *why = "RSA key rejected by OpenSSL";
        BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1 &&
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1)
            pkey = pkey_fromdata("RSA", bld);
        OSSL_PARAM_BLD_free(bld);
        BN_free(bn);
        BN_free(be);
    }
    free(n);
    free(e);
    return pkey;
}

static EVP_PKEY *jwk_ec(json_t *jwk, const char **why)
{
    size_t xl = 0, yl = 0;
    unsigned char *x = jwk_b64(jwk, "x", &xl), *y = jwk_b64(jwk, "y", &yl);
    EVP_PKEY *pkey = NULL;
    *why = "EC P-256 key needs base64url x and y of 32 bytes each";
    if (x != NULL && y != NULL && xl == 32 && yl == 32) {
        *why = "EC point rejected by OpenSSL (not on P-256?)";
        unsigned char pt[65];
        pt[0] = 0x04;
        memcpy(pt + 1, x, 32);
        memcpy(pt + 33, y, 32);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bld &&
            OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ==
                1 &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt)) == 1)
            pkey = pkey_fromdata("EC", bld);
        OSSL_PARAM_BLD_free(bld);
        /* fromdata does not check the point is on the curve: do it. */
        if (pkey != NULL) {
            EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
            if (c == NULL || EVP_PKEY_public_check(c) != 1) {
                EVP_PKEY_free(pkey);
                pkey = NULL;
            }
            EVP_PKEY_CTX_free(c);
        }
    }
    free(x);
    free(y);
    return pkey;
}

static const char *jstr(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int keys_set_add_jwks(struct keys_set *set, const char *json, size_t len, char *err, size_t errlen,
                      char *warn, size_t warnlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        msg(err, errlen, "not JSON: %s (line %d)", jerr.text, jerr.line);
        return -EINVAL;
    }
    json_t *keys = json_object_get(root, "keys");
    if (!json_is_array(keys)) {
        msg(err, errlen, "no \"keys\" array (RFC 7517 JWK Set)");
        json_decref(root);
        return -EINVAL;
    }
    int added = 0, rc = 0;
    size_t i;
    json_t *jwk;
    json_array_foreach(keys, i, jwk)
    {
        if (!json_is_object(jwk)) {
            msg(err, errlen, "keys[%zu]: not an object", i);
            rc = -EINVAL;
            break;
        }
        const char *kty = jstr(jwk, "kty"), *kid = jstr(jwk, "kid"), *use = jstr(jwk, "use"),
                   *alg = jstr(jwk, "alg");
        const char *label = kid ? kid : "(no kid)";
        if (kty == NULL) {
            msg(err, errlen, "keys[%zu] %s: no \"kty\"", i, label);
            rc = -EINVAL;
            break;
        }
        if (use != NULL && strcmp(use, "sig") != 0) {
            warn_add(warn, warnlen, "keys[%zu] %s skipped: use \"%s\" is not \"sig\"", i, label,
                     use);
            continue;
        }
        enum keys_alg want;
        if (strcmp(kty, "RSA") == 0) {
            want = KEYS_ALG_RS256;
        } else if (strcmp(kty, "EC") == 0) {
            const char *crv = jstr(jwk, "crv");
            if (crv == NULL || strcmp(crv, "P-256") != 0) {
                warn_add(warn, warnlen, "keys[%zu] %s skipped: curve %s is not supported", i, label,
                         crv ? crv : "(none)");
                continue;
            }
            want = KEYS_ALG_ES256;
        } else {
            warn_add(warn, warnlen, "keys[%zu] %s skipped: kty \"%s\" is not supported%s", i, label,
                     kty,
                     strcmp(kty, "oct") == 0 ? " (HS256 secrets only from a secret file)" : "");
            continue;
        }
        if (alg != NULL && strcmp(alg, keys_alg_name(want)) != 0) {
            warn_add(warn, warnlen, "keys[%zu] %s skipped: alg \"%s\" is not supported for %s", i,
                     label, alg, kty);
            continue;
        }
        const char *why = NULL;
        EVP_PKEY *pkey = want == KEYS_ALG_RS256 ? jwk_rsa(jwk, &why) : jwk_ec(jwk, &why);
        if (pkey == NULL) {
            msg(err, errlen, "keys[%zu] %s: %s", i, label, why);
            rc = -EINVAL;
            break;
        }
        int r = keys_set_add_pkey(set, kid, pkey, want);
        if (r < 0) {
            msg(err, errlen, "keys[%zu] %s: %s", i, label,
                r == -EINVAL ? "duplicate or oversized kid, or RSA key under 2048 bits"
                             : strerror(-r));
            rc = r;
            break;
        }
        added++;
    }
    json_decref(root);
    return rc < 0 ? rc : added;
}

/* ---- files ---- */

/* Read a whole file (bounded) into a fresh NUL-terminated buffer. */
static int read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        msg(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > KEYS_MAX_FILE) {
        msg(err, errlen, "%s: not a regular file of at most %d bytes", path, KEYS_MAX_FILE);
        close(fd);
        return -EFBIG;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int keys_parse_sym(const char *text, size_t len, unsigned char key[KEYS_SYM_LEN])
{
    if (len == KEYS_SYM_LEN) {
        memcpy(key, text, KEYS_SYM_LEN);
        return 0;
    }
    while (len && is_space(*text)) {
        text++;
        len--;
    }
    while (len && is_space(text[len - 1]))
        len--;
    if (len == 2 * KEYS_SYM_LEN) {
        bool ok = true;
        for (size_t i = 0; i < KEYS_SYM_LEN && ok; i++) {
            int h = hexval(text[2 * i]), l = hexval(text[2 * i + 1]);
            ok = h >= 0 && l >= 0;
            key[i] = (unsigned char)(h << 4 | l);
        }
        if (ok)
            return 0;
    }
    /* base64 or base64url, with or without padding */
    char tmp[64];
    if (len > 44 || len < 43)
        return -EINVAL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '=')
            break;
        tmp[n++] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    unsigned char out[KEYS_SYM_LEN + 2];
    if (jwt_b64url_decode(tmp, n, out, sizeof(out)) != KEYS_SYM_LEN)
        return -EINVAL;
    memcpy(key, out, KEYS_SYM_LEN);
    OPENSSL_cleanse(out, sizeof(out));
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return 0;
}

int keys_set_load(const struct keys_config *cfg, struct keys_set **out, char *err, size_t errlen,
                  char *warn, size_t warnlen)
{
    *out = NULL;
    if (warn && warnlen)
        warn[0] = '\0';
    struct keys_set *s = keys_set_new();
    if (s == NULL)
        return -ENOMEM;
    char *buf = NULL;
    size_t len = 0;
    int rc = 0;
    for (size_t i = 0; i < cfg->n_pems && rc == 0; i++) {
        const struct keys_pem_spec *p = &cfg->pems[i];
        if ((rc = read_file(p->path, &buf, &len, err, errlen)) < 0)
            break;
        enum keys_alg alg = KEYS_ALG_NONE;
        if (p->alg != NULL && *p->alg) {
            alg = keys_alg_from_name(p->alg, strlen(p->alg));
            if (alg == KEYS_ALG_NONE || alg == KEYS_ALG_HS256) {
                msg(err, errlen, "%s: alg \"%s\" is not RS256 or ES256", p->path, p->alg);
                rc = -EINVAL;
            }
        }
        EVP_PKEY *pkey = rc == 0 ? pem_parse(buf, len) : NULL;
        if (rc == 0 && pkey == NULL) {
            msg(err, errlen, "%s: no PEM public key or certificate found", p->path);
            rc = -EINVAL;
        } else if (rc == 0) {
            enum keys_alg fit = pkey_alg(pkey);
            if (fit == KEYS_ALG_NONE || (alg != KEYS_ALG_NONE && alg != fit)) {
                msg(err, errlen,
                    "%s: key type does not fit %s (need RSA >= 2048 bits for RS256, EC P-256 "
                    "for ES256)",
                    p->path, alg != KEYS_ALG_NONE ? p->alg : "RS256/ES256");
                EVP_PKEY_free(pkey);
                rc = -EINVAL;
            } else if ((rc = keys_set_add_pkey(s, p->kid, pkey, fit)) < 0) {
                msg(err, errlen, "%s: kid \"%s\" duplicate or too long", p->path,
                    p->kid ? p->kid : "");
            }
        }
        free(buf);
        buf = NULL;
    }
    if (rc == 0 && cfg->jwks_path != NULL) {
        if ((rc = read_file(cfg->jwks_path, &buf, &len, err, errlen)) == 0) {
            char e2[256] = "";
            rc = keys_set_add_jwks(s, buf, len, e2, sizeof(e2), warn, warnlen);
            if (rc < 0)
                msg(err, errlen, "%s: %s", cfg->jwks_path, e2);
            else
                rc = 0;
            free(buf);
            buf = NULL;
        }
    }
    for (size_t i = 0; i < cfg->n_hs_secrets && rc == 0; i++) {
        const struct keys_hs_spec *h = &cfg->hs_secrets[i];
        if ((rc = read_file(h->path, &buf, &len, err, errlen)) < 0)
            break;
        if ((rc = keys_set_add_hs256(s, h->kid, buf, len)) < 0)
            msg(err, errlen, "%s: HS256 secret empty, over %d bytes, or kid duplicate", h->path,
                KEYS_MAX_HS_SECRET);
        OPENSSL_cleanse(buf, len);
        free(buf);
        buf = NULL;
    }
    if (rc == 0 && cfg->sym_key_path != NULL) {
        if ((rc = read_file(cfg->sym_key_path, &buf, &len, err, errlen)) == 0) {
            unsigned char key[KEYS_SYM_LEN];
            if (keys_parse_sym(buf, len, key) < 0) {
                msg(err, errlen,
                    "%s: not a 32-byte key (32 raw bytes, 64 hex digits or base64 of 32 bytes)",
                    cfg->sym_key_path);
                rc = -EINVAL;
            } else {
                keys_set_set_sym(s, key);
            }
            OPENSSL_cleanse(key, sizeof(key));
            OPENSSL_cleanse(buf, len);
            free(buf);
            buf = NULL;
        }
    }
    if (rc == 0 && cfg->default_kid != NULL && keys_set_set_default(s, cfg->default_kid) < 0) {
        msg(err, errlen, "default kid too long");
        rc = -EINVAL;
    }
    if (rc == 0 && (rc = keys_set_finish(s)) == -ENOENT)
        msg(err, errlen, "default kid \"%s\" is not in the key set", cfg->default_kid);
    if (rc < 0) {
        keys_release(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* ---- the store ---- */

struct keys_store *keys_store_new(struct keys_set *initial)
{
    struct keys_store *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NULL;
    pthread_mutex_init(&st->lock, NULL);
    st->cur = initial;
    atomic_init(&st->gen, 1);
    return st;
}

void keys_store_free(struct keys_store *store)
{
    if (store == NULL)
        return;
    keys_release(store->cur);
    pthread_mutex_destroy(&store->lock);
    free(store);
}

void keys_store_swap(struct keys_store *store, struct keys_set *set)
{
    pthread_mutex_lock(&store->lock);
    struct keys_set *old = store->cur;
    store->cur = set;
    atomic_fetch_add_explicit(&store->gen, 1, memory_order_release);
    pthread_mutex_unlock(&store->lock);
    keys_release(old); /* outside the lock: freeing may take a while */
}

struct keys_set *keys_acquire(struct keys_store *store)
{
    pthread_mutex_lock(&store->lock);
    struct keys_set *s = store->cur;
    if (s != NULL)
        keys_set_ref(s);
    pthread_mutex_unlock(&store->lock);
    return s;
}

uint64_t keys_store_generation(const struct keys_store *store)
{
    return atomic_load_explicit(&((struct keys_store *)store)->gen, memory_order_acquire);
}
