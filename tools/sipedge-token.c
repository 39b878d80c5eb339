// SPDX-License-Identifier: MIT
// sipedge-token: make keys, mint tokens (generic or CUCM profile), export JWKS and verify tokens
// with the same code the edge runs, and revoke tokens in Redis. For tests, benchmarks and the demo.
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "auth/auth.h"
#include "auth/jwt.h"
#include "auth/jwt_mint.h"
#include "auth/keys.h"

#define MAX_LIST   16
#define TOKEN_CAP  (JWT_MAX_TOKEN_CAP + 1)
#define EXIT_USAGE 2

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sipedge-token: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(EXIT_USAGE);
}

static int64_t parse_i64(const char *s, const char *what)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        die("%s: not an integer: %s", what, s);
    return (int64_t)v;
}

/* Read a whole (small) file; NUL-terminated; exits on error. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL)
        die("%s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= KEYS_MAX_FILE)
                die("%s: larger than %d bytes", path, KEYS_MAX_FILE);
            cap *= 2;
            buf = realloc(buf, cap);
        }
        if (buf == NULL)
            die("out of memory");
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        if (r == 0)
            break;
        n += r;
    }
    if (f != stdin)
        fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Create `path` with mode `mode` (fails if the directory is missing) and write `data`. */
static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        die("%s: %s", path, strerror(errno));
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("%s: %s", path, strerror(errno));
        p += w;
        len -= (size_t)w;
    }
    if (close(fd) < 0)
        die("%s: %s", path, strerror(errno));
}

/* "FILE.pem" -> "FILE.pub.pem", anything else -> "<name>.pub.pem". */
static void pub_path(const char *priv, char *out, size_t cap)
{
    size_t n = strlen(priv);
    if (n > 4 && strcmp(priv + n - 4, ".pem") == 0)
        snprintf(out, cap, "%.*s.pub.pem", (int)(n - 4), priv);
    else
        snprintf(out, cap, "%s.pub.pem", priv);
}

static char *pem_of(EVP_PKEY *k, bool priv, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL || (priv ? PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)
                           : PEM_write_bio_PUBKEY(b, k)) != 1)
        die("cannot encode the key as PEM");
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    char *out = malloc((size_t)n + 1);
    if (out == NULL)
        die("out of memory");
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    *len = (size_t)n;
    BIO_free(b);
    return out;
}

/* ---- keygen ---- */

static int cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {
        {"type", required_argument, NULL, 't'}, {"out", required_argument, NULL, 'o'}, {0}};
    const char *type = NULL, *out = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 't')
            type = optarg;
        else if (c == 'o')
            out = optarg;
        else
            return EXIT_USAGE;
    }
    if (type == NULL || out == NULL)
        die("usage: keygen --type rsa|ec|sym --out FILE");
    if (strcmp(type, "sym") == 0) {
        unsigned char key[KEYS_SYM_LEN];
        char text[JWT_B64URL_LEN(KEYS_SYM_LEN) + 2];
        if (RAND_bytes(key, sizeof(key)) != 1)
            die("RAND_bytes failed");
        size_t n = jwt_b64url_encode(key, sizeof(key), text);
        text[n++] = '\n';
        write_file(out, text, n, 0600);
        OPENSSL_cleanse(key, sizeof(key));
        OPENSSL_cleanse(text, sizeof(text));
        printf("%s\n", out);
        return 0;
    }
    EVP_PKEY *k = NULL;
    if (strcmp(type, "rsa") == 0)
        k = EVP_RSA_gen(2048);
    else if (strcmp(type, "ec") == 0)
        k = EVP_EC_gen("P-256");
    else
        die("keygen: --type must be rsa, ec or sym");
    if (k == NULL)
        die("key generation failed");
    size_t n = 0;
    char *pem = pem_of(k, true, &n), pub[4096];
    write_file(out, pem, n, 0600);
    OPENSSL_cleanse(pem, n);
    free(pem);
    pub_path(out, pub, sizeof(pub));
    pem = pem_of(k, false, &n);
    write_file(pub, pem, n, 0644);
    free(pem);
    EVP_PKEY_free(k);
    printf("%s\n%s\n", out, pub);
    return 0;
}

/* ---- mint ---- */

static EVP_PKEY *load_private(const char *path)
{
    size_t n = 0;
    char *pem = slurp(path, &n);
    BIO *b = BIO_new_mem_buf(pem, (int)n);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    OPENSSL_cleanse(pem, n);
    free(pem);
    if (k == NULL)
        die("%s: no PEM private key", path);
    return k;
}

static void load_sym(const char *path, unsigned char key[KEYS_SYM_LEN])
{
    size_t n = 0;
    char *text = slurp(path, &n);
    if (keys_parse_sym(text, n, key) < 0)
        die("%s: not a 32-byte key (32 raw bytes, 64 hex digits or base64 of 32 bytes)", path);
    OPENSSL_cleanse(text, n);
    free(text);
}

/* The scope claim: "a b" stays a string. */
static int cmd_mint(int argc, char **argv)
{
    enum {
        O_KEY = 1,
        O_USER,
        O_KID,
        O_ALG,
        O_ISS,
        O_AUD,
        O_SCOPE,
        O_LIFE,
        O_EXP,
        O_NBF,
        O_IAT,
        O_JTI,
        O_PROFILE,
        O_SYM,
        O_NOW,
        O_USER_CLAIM
    };
    static const struct option opts[] = {{"key", required_argument, NULL, O_KEY},
                                         {"user", required_argument, NULL, O_USER},
                                         {"kid", required_argument, NULL, O_KID},
                                         {"alg", required_argument, NULL, O_ALG},
                                         {"iss", required_argument, NULL, O_ISS},
                                         {"aud", required_argument, NULL, O_AUD},
                                         {"scope", required_argument, NULL, O_SCOPE},
                                         {"lifetime", required_argument, NULL, O_LIFE},
                                         {"exp", required_argument, NULL, O_EXP},
                                         {"nbf", required_argument, NULL, O_NBF},
                                         {"iat", required_argument, NULL, O_IAT},
                                         {"jti", required_argument, NULL, O_JTI},
                                         {"profile", required_argument, NULL, O_PROFILE},
                                         {"sym-key", required_argument, NULL, O_SYM},
                                         {"now", required_argument, NULL, O_NOW},
                                         {"user-claim", required_argument, NULL, O_USER_CLAIM},
                                         {0}};
    const char *key = NULL, *user = NULL, *kid = NULL, *alg = NULL, *iss = NULL, *scope = NULL,
               *jti = NULL, *profile = "generic", *sym = NULL, *user_claim = "sub";
    const char *aud[MAX_LIST];
    size_t n_aud = 0;
    int64_t now = (int64_t)time(NULL), life = 3600, exp = 0, nbf = 0, iat = 0;
    bool has_exp = false, has_nbf = false, has_iat = false;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_KEY:
            key = optarg;
            break;
        case O_USER:
            user = optarg;
            break;
        case O_KID:
            kid = optarg;
            break;
        case O_ALG:
            alg = optarg;
            break;
        case O_ISS:
            iss = optarg;
            break;
        case O_AUD:
            if (n_aud == MAX_LIST)
                die("too many --aud");
            aud[n_aud++] = optarg;
            break;
        case O_SCOPE:
            scope = optarg;
            break;
        case O_LIFE:
            life = parse_i64(optarg, "--lifetime");
            break;
        case O_EXP:
            exp = parse_i64(optarg, "--exp"), has_exp = true;
            break;
        case O_NBF:
            nbf = parse_i64(optarg, "--nbf"), has_nbf = true;
            break;
        case O_IAT:
            iat = parse_i64(optarg, "--iat"), has_iat = true;
            break;
        case O_JTI:
            jti = optarg;
            break;
        case O_PROFILE:
            profile = optarg;
            break;
        case O_SYM:
            sym = optarg;
            break;
        case O_NOW:
            now = parse_i64(optarg, "--now");
            break;
        case O_USER_CLAIM:
            user_claim = optarg;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    if (key == NULL || user == NULL)
        die("usage: mint --key FILE --user U [--kid K] [--alg RS256|ES256|HS256] [--iss I] "
            "[--aud A]... [--scope 'a b'] [--lifetime S | --exp T] [--nbf T] [--iat T] "
            "[--jti J] [--profile generic|cucm --sym-key FILE] [--now T]");

    struct jwt_mint_spec spec = {.kid = kid};
    enum keys_alg a = alg ? keys_alg_from_name(alg, strlen(alg)) : KEYS_ALG_NONE;
    if (alg != NULL && a == KEYS_ALG_NONE)
        die("--alg must be RS256, ES256 or HS256");
    char *secret = NULL;
    size_t secret_len = 0;
    if (a == KEYS_ALG_HS256) {
        secret = slurp(key, &secret_len);
        spec.secret = (const unsigned char *)secret;
        spec.secret_len = secret_len;
    } else {
        spec.priv = load_private(key);
        int id = EVP_PKEY_get_base_id(spec.priv);
        enum keys_alg fit = id == EVP_PKEY_RSA  ? KEYS_ALG_RS256
                            : id == EVP_PKEY_EC ? KEYS_ALG_ES256
                                                : KEYS_ALG_NONE;
        if (fit == KEYS_ALG_NONE || (a != KEYS_ALG_NONE && a != fit))
            die("%s: key type does not fit %s", key, alg ? alg : "RS256/ES256");
        a = fit;
    }
    spec.alg = a;

    json_t *cl = json_object();
    json_object_set_new(cl, user_claim, json_string(user));
    json_object_set_new(cl, "exp", json_integer(has_exp ? exp : now + life));
    json_object_set_new(cl, "iat", json_integer(has_iat ? iat : now));
    if (has_nbf)
        json_object_set_new(cl, "nbf", json_integer(nbf));
    if (iss)
        json_object_set_new(cl, "iss", json_string(iss));
    if (n_aud == 1) {
        json_object_set_new(cl, "aud", json_string(aud[0]));
    } else if (n_aud > 1) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n_aud; i++)
            json_array_append_new(arr, json_string(aud[i]));
        json_object_set_new(cl, "aud", arr);
    }
    if (scope)
        json_object_set_new(cl, "scope", json_string(scope));
    if (jti)
        json_object_set_new(cl, "jti", json_string(jti));
    char *claims = json_dumps(cl, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(cl);
    if (claims == NULL)
        die("cannot encode the claims (is --user valid UTF-8?)");
    spec.claims_json = claims;

    unsigned char symkey[KEYS_SYM_LEN];
    if (strcmp(profile, "cucm") == 0) {
        if (sym == NULL)
            die("--profile cucm needs --sym-key FILE");
        if (a != KEYS_ALG_RS256)
            die("--profile cucm tokens are RS256: use an RSA key");
        load_sym(sym, symkey);
        spec.profile = JWT_PROFILE_CUCM;
        spec.sym_key = symkey;
    } else if (strcmp(profile, "generic") != 0) {
        die("--profile must be generic or cucm");
    }
    static char out[TOKEN_CAP];
    ssize_t n = jwt_mint(&spec, out, sizeof(out));
    OPENSSL_cleanse(symkey, sizeof(symkey));
    if (secret) {
        OPENSSL_cleanse(secret, secret_len);
        free(secret);
    }
    free(claims);
    EVP_PKEY_free(spec.priv);
    if (n < 0)
        die("mint failed: %s", strerror((int)-n));
    printf("%s\n", out);
    return 0;
}

/* ---- jwks ---- */

static void put_bn(json_t *o, const char *name, EVP_PKEY *k, const char *param, size_t pad)
{
    BIGNUM *bn = NULL;
    if (EVP_PKEY_get_bn_param(k, param, &bn) != 1)
        die("cannot read %s of a key", name);
    size_t n = (size_t)BN_num_bytes(bn);
    if (pad > n)
        n = pad;
    unsigned char *bin = malloc(n);
    char *b64 = malloc(JWT_B64URL_LEN(n) + 1);
    if (bin == NULL || b64 == NULL || BN_bn2binpad(bn, bin, (int)n) < 0)
        die("out of memory");
    jwt_b64url_encode(bin, n, b64);
    json_object_set_new(o, name, json_string(b64));
    free(bin);
    free(b64);
    BN_free(bn);
}

/* RFC 7638 thumbprint of the required members, base64url of SHA-256: the default kid. */
static void thumbprint(json_t *jwk, char *out)
{
    json_t *req = json_object();
    const char *names[] = {"crv", "e", "kty", "n", "x", "y"};
    for (size_t i = 0; i < 6; i++) {
        json_t *v = json_object_get(jwk, names[i]);
        if (v)
            json_object_set(req, names[i], v);
    }
    char *s = json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS);
    unsigned char md[32];
    unsigned int ml = 0;
    EVP_Digest(s, strlen(s), md, &ml, EVP_sha256(), NULL);
    jwt_b64url_encode(md, 32, out);
    free(s);
    json_decref(req);
}

static int cmd_jwks(int argc, char **argv)
{
    if (argc < 2)
        die("usage: jwks PUBLIC.pem[:kid]... > jwks.json");
    json_t *keys = json_array();
    for (int i = 1; i < argc; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s", argv[i]);
        char *colon = strchr(path, ':');
        const char *kid = NULL;
        if (colon) {
            *colon = '\0';
            kid = colon + 1;
        }
        size_t n = 0;
        char *pem = slurp(path, &n);
        struct keys_set *s = keys_set_new();
        if (s == NULL || keys_set_add_pem(s, "", pem, n, KEYS_ALG_NONE) < 0)
            die("%s: not an RSA (>= 2048 bits) or EC P-256 public key PEM", path);
        free(pem);
        keys_set_finish(s);
        const struct keys_key *k = keys_at(s, 0);
        json_t *o = json_object();
        if (k->alg == KEYS_ALG_RS256) {
            json_object_set_new(o, "kty", json_string("RSA"));
            put_bn(o, "n", k->pkey, OSSL_PKEY_PARAM_RSA_N, 0);
            put_bn(o, "e", k->pkey, OSSL_PKEY_PARAM_RSA_E, 0);
        } else {
            json_object_set_new(o, "kty", json_string("EC"));
            json_object_set_new(o, "crv", json_string("P-256"));
            put_bn(o, "x", k->pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32);
            put_bn(o, "y", k->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
        }
        char tp[64];
        thumbprint(o, tp);
        json_object_set_new(o, "kid", json_string(kid && *kid ? kid : tp));
        json_object_set_new(o, "use", json_string("sig"));
        json_object_set_new(o, "alg", json_string(keys_alg_name(k->alg)));
        json_array_append_new(keys, o);
        keys_release(s);
    }
    json_t *root = json_pack("{s:o}", "keys", keys);
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", s);
    free(s);
    json_decref(root);
    return 0;
}

/* ---- verify ---- */

/* Split "path[:kid]" in place (kid is everything after the first ':'; CUCM kids hold ':'). */
static void split_kid(char *arg, const char **path, const char **kid)
{
    char *colon = strchr(arg, ':');
    *path = arg;
    *kid = NULL;
    if (colon) {
        *colon = '\0';
        *kid = colon + 1;
    }
}

static int cmd_verify(int argc, char **argv)
{
    enum {
        O_PUB = 1,
        O_JWKS,
        O_HS,
        O_SYM,
        O_ISS,
        O_AUD,
        O_SCOPE,
        O_LEEWAY,
        O_NOW,
        O_PROFILE,
        O_DEFAULT,
        O_USER_CLAIM,
        O_EXP_CLAIM,
        O_SCOPE_CLAIM
    };
    static const struct option opts[] = {{"pub", required_argument, NULL, O_PUB},
                                         {"jwks", required_argument, NULL, O_JWKS},
                                         {"hs-secret", required_argument, NULL, O_HS},
                                         {"sym-key", required_argument, NULL, O_SYM},
                                         {"iss", required_argument, NULL, O_ISS},
                                         {"aud", required_argument, NULL, O_AUD},
                                         {"scope", required_argument, NULL, O_SCOPE},
                                         {"leeway", required_argument, NULL, O_LEEWAY},
                                         {"now", required_argument, NULL, O_NOW},
                                         {"profile", required_argument, NULL, O_PROFILE},
                                         {"default-kid", required_argument, NULL, O_DEFAULT},
                                         {"user-claim", required_argument, NULL, O_USER_CLAIM},
                                         {"exp-claim", required_argument, NULL, O_EXP_CLAIM},
                                         {"scope-claim", required_argument, NULL, O_SCOPE_CLAIM},
                                         {0}};
    struct keys_pem_spec pems[MAX_LIST];
    struct keys_hs_spec hs[MAX_LIST];
    struct keys_config cfg = {.pems = pems, .hs_secrets = hs};
    struct jwt_policy pol;
    jwt_policy_init(&pol);
    pol.profile = JWT_PROFILE_AUTO;
    int64_t now = (int64_t)time(NULL);
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_PUB:
            if (cfg.n_pems == MAX_LIST)
                die("too many --pub");
            memset(&pems[cfg.n_pems], 0, sizeof(pems[0]));
            split_kid(optarg, &pems[cfg.n_pems].path, &pems[cfg.n_pems].kid);
            cfg.n_pems++;
            break;
        case O_JWKS:
            cfg.jwks_path = optarg;
            break;
        case O_HS:
            if (cfg.n_hs_secrets == MAX_LIST)
                die("too many --hs-secret");
            split_kid(optarg, &hs[cfg.n_hs_secrets].path, &hs[cfg.n_hs_secrets].kid);
            cfg.n_hs_secrets++;
            break;
        case O_SYM:
            cfg.sym_key_path = optarg;
            break;
        case O_ISS:
            pol.iss = optarg;
            break;
        case O_AUD:
            pol.aud = optarg;
            break;
        case O_SCOPE:
            for (char *save = NULL, *w = strtok_r(optarg, " ", &save); w;
                 w = strtok_r(NULL, " ", &save)) {
                if (pol.n_scopes == JWT_MAX_SCOPES)
                    die("too many scopes (max %d)", JWT_MAX_SCOPES);
                pol.scopes[pol.n_scopes++] = w;
            }
            break;
        case O_LEEWAY:
            pol.leeway = parse_i64(optarg, "--leeway");
            break;
        case O_NOW:
            now = parse_i64(optarg, "--now");
            break;
        case O_PROFILE:
            if (strcmp(optarg, "generic") == 0)
                pol.profile = JWT_PROFILE_GENERIC;
            else if (strcmp(optarg, "cucm") == 0)
                pol.profile = JWT_PROFILE_CUCM;
            else if (strcmp(optarg, "auto") == 0)
                pol.profile = JWT_PROFILE_AUTO;
            else
                die("--profile must be generic, cucm or auto");
            break;
        case O_DEFAULT:
            cfg.default_kid = optarg;
            break;
        case O_USER_CLAIM:
            pol.user_claim = optarg;
            break;
        case O_EXP_CLAIM:
            pol.exp_claim = optarg;
            break;
        case O_SCOPE_CLAIM:
            pol.scope_claim = optarg;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    if (cfg.n_pems == 0 && cfg.jwks_path == NULL && cfg.n_hs_secrets == 0)
        die("usage: verify (--pub FILE[:kid] | --jwks FILE | --hs-secret FILE[:kid])... "
            "[--sym-key FILE] [--iss I] [--aud A] [--scope 'a b'] [--leeway S] [--now T] "
            "[--profile generic|cucm|auto] [TOKEN | < token]");
    if (optind + 1 < argc)
        die("verify: one token at most");

    struct keys_set *ks = NULL;
    char err[512] = "", warn[2048] = "";
    int rc = keys_set_load(&cfg, &ks, err, sizeof(err), warn, sizeof(warn));
    if (warn[0])
        fprintf(stderr, "sipedge-token: %s\n", warn);
    if (rc < 0)
        die("%s", err);

    char *tok = NULL;
    size_t len = 0;
    if (optind < argc) {
        tok = strdup(argv[optind]);
        len = strlen(argv[optind]);
    } else {
        tok = slurp("-", &len);
    }
    while (len > 0 && (tok[len - 1] == '\n' || tok[len - 1] == '\r' || tok[len - 1] == ' '))
        len--;
    struct jwt_result r;
    enum jwt_reason why = jwt_verify(ks, &pol, tok, len, now, &r);
    free(tok);
    keys_release(ks);
    if (why != JWT_OK) {
        printf("invalid: %s\n", jwt_reason_name(why));
        return 1;
    }
    printf("valid user=%s exp=%" PRId64 "%s\n", r.user, r.exp,
           r.signature_only ? " signature-only" : "");
    return 0;
}

/* ---- revoke ---- */

/* The `exp` claim of a compact JWS, read without verifying (only to size a revocation's TTL: a
 * token whose signature does not verify is rejected anyway). 0 when absent or unreadable. */
static int64_t unverified_exp(const char *tok, size_t len)
{
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (!d1 || !d2 || (size_t)(d2 - d1 - 1) > 8192)
        return 0;
    unsigned char buf[8192];
    ssize_t n = jwt_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf, sizeof(buf));
    if (n <= 0)
        return 0;
    json_t *claims = json_loadb((const char *)buf, (size_t)n, 0, NULL);
    json_t *exp = claims ? json_object_get(claims, "exp") : NULL;
    int64_t v = json_is_integer(exp) ? (int64_t)json_integer_value(exp) : 0;
    json_decref(claims);
    return v;
}

static int cmd_revoke(int argc, char **argv)
{
    enum { O_REDIS = 1, O_JTI, O_TOKEN, O_TTL, O_TIMEOUT, O_NOW };
    static const struct option opts[] = {{"redis", required_argument, NULL, O_REDIS},
                                         {"jti", required_argument, NULL, O_JTI},
                                         {"token", required_argument, NULL, O_TOKEN},
                                         {"ttl", required_argument, NULL, O_TTL},
                                         {"timeout-ms", required_argument, NULL, O_TIMEOUT},
                                         {"now", required_argument, NULL, O_NOW},
                                         {0}};
    const char *redis = NULL, *jti = NULL, *token = NULL;
    int64_t ttl = 0, timeout_ms = 1000, now = (int64_t)time(NULL);
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_REDIS:
            redis = optarg;
            break;
        case O_JTI:
            jti = optarg;
            break;
        case O_TOKEN:
            token = optarg;
            break;
        case O_TTL:
            ttl = parse_i64(optarg, "--ttl");
            break;
        case O_TIMEOUT:
            timeout_ms = parse_i64(optarg, "--timeout-ms");
            break;
        case O_NOW:
            now = parse_i64(optarg, "--now");
            break;
        default:
            return EXIT_USAGE;
        }
    }
    if (!redis || (!jti == !token) || optind < argc)
        die("usage: revoke --redis HOST:PORT (--jti ID | --token TOKEN|-) [--ttl S] "
            "[--timeout-ms MS]");
    char host[256];
    int port = 0;
    if (sscanf(redis, "%255[^:]:%d", host, &port) != 2 || port <= 0 || port > 65535)
        die("--redis: HOST:PORT expected, got %s", redis);
    if (timeout_ms <= 0 || timeout_ms > 60000)
        die("--timeout-ms: 1..60000");

    char *tok = NULL, id[JWT_MAX_JTI + 1];
    size_t len = 0;
    enum auth_revoke_kind kind;
    if (token) {
        tok = strcmp(token, "-") == 0 ? slurp("-", &len) : strdup(token);
        if (!tok)
            die("out of memory");
        if (strcmp(token, "-") != 0)
            len = strlen(tok);
        while (len > 0 && (tok[len - 1] == '\n' || tok[len - 1] == '\r' || tok[len - 1] == ' '))
            len--;
        /* By digest: works for every token, with or without a jti. */
        char hex[2 * CACHE_DIGEST_LEN + 1];
        auth_token_digest_hex(tok, len, hex);
        memcpy(id, hex, sizeof(hex));
        kind = AUTH_REVOKE_DIGEST;
        if (ttl == 0) {
            int64_t exp = unverified_exp(tok, len);
            ttl = exp > now ? exp - now : 0;
        }
        free(tok);
    } else {
        if (strlen(jti) > JWT_MAX_JTI)
            die("--jti: longer than %d bytes", JWT_MAX_JTI);
        snprintf(id, sizeof(id), "%s", jti);
        kind = AUTH_REVOKE_JTI;
    }
    if (ttl == 0)
        ttl = 86400; /* no exp to go by: a day, longer than any access token lives */
    if (ttl < 0 || ttl > INT32_MAX)
        die("--ttl: 1..%d", INT32_MAX);
    int rc = auth_revoke_blocking(host, (uint16_t)port, kind, id, strlen(id), (uint32_t)ttl,
                                  (uint32_t)timeout_ms);
    if (rc < 0) {
        fprintf(stderr, "sipedge-token: revoke failed: %s\n", strerror(-rc));
        return 1;
    }
    printf("revoked %s:%s ttl=%" PRId64 " subscribers=%d\n",
           kind == AUTH_REVOKE_JTI ? "jti" : "dig", id, ttl, rc);
    return 0;
}

static void usage(void)
{
    fputs("usage: sipedge-token keygen|mint|jwks|verify|revoke [options]\n"
          "  keygen --type rsa|ec|sym --out FILE\n"
          "  mint   --key FILE --user U [--kid K] [--alg A] [--iss I] [--aud A]... [--scope S]\n"
          "         [--lifetime S | --exp T] [--nbf T] [--iat T] [--jti J] [--now T]\n"
          "         [--profile generic|cucm --sym-key FILE]\n"
          "  jwks   PUBLIC.pem[:kid]...\n"
          "  verify (--pub FILE[:kid] | --jwks FILE | --hs-secret FILE[:kid])... [--sym-key F]\n"
          "         [--iss I] [--aud A] [--scope S] [--leeway S] [--now T] [TOKEN | < token]\n"
          "  revoke --redis HOST:PORT (--jti ID | --token TOKEN|-) [--ttl S] [--timeout-ms MS]\n"
          "see docs/auth.md, docs/auth-cache.md\n",
          stderr);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    argc--;
    argv++;
    if (strcmp(cmd, "keygen") == 0)
        return cmd_keygen(argc, argv);
    if (strcmp(cmd, "mint") == 0)
        return cmd_mint(argc, argv);
    if (strcmp(cmd, "jwks") == 0)
        return cmd_jwks(argc, argv);
    if (strcmp(cmd, "verify") == 0)
        return cmd_verify(argc, argv);
    if (strcmp(cmd, "revoke") == 0)
        return cmd_revoke(argc, argv);
    usage();
    return EXIT_USAGE;
}
