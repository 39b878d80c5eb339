// SPDX-License-Identifier: MIT
// JWT verification per core: jwt_verify() on pre-parsed keys vs a bare EVP_DigestVerify on the
// same EVP_PKEY vs libjwt's jwt_decode() with a PEM key, RS256 and ES256, in one run.
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jwt.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth/jwt.h"
#include "auth/jwt_mint.h"
#include "auth/keys.h"

#define NOW        1800000000
#define MAX_ROUNDS 101

struct fixture {
    const char *name;
    EVP_PKEY *priv;
    struct keys_set *ks;
    char *pub_pem;
    size_t pub_len;
    char tok[4096];
    size_t tok_len;
    size_t input_len;       /* bytes of "header.payload" */
    unsigned char sig[512]; /* what OpenSSL verifies: PKCS#1 v1.5 or DER ECDSA */
    size_t sig_len;
};

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fail(const char *what)
{
    fprintf(stderr, "bench-jwt: %s\n", what);
    exit(1);
}

/* Each variant does one verification and returns true on success (a failure aborts: a
 * benchmark of something that does not verify measures nothing). */
static bool run_jwt_verify(struct fixture *f)
{
    static struct jwt_policy pol;
    static bool init;
    if (!init) {
        jwt_policy_init(&pol);
        init = true;
    }
    struct jwt_result r;
    return jwt_verify(f->ks, &pol, f->tok, f->tok_len, NOW, &r) == JWT_OK;
}

static bool run_bare(struct fixture *f)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok =
        ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, keys_at(f->ks, 0)->pkey) == 1 &&
        EVP_DigestVerify(ctx, f->sig, f->sig_len, (const unsigned char *)f->tok, f->input_len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

static bool run_libjwt(struct fixture *f)
{
    jwt_t *j = NULL;
    int rc = jwt_decode(&j, f->tok, (const unsigned char *)f->pub_pem, (int)f->pub_len);
    jwt_free(j);
    return rc == 0;
}

typedef bool (*variant_fn)(struct fixture *);

/* One batch of `n` calls: verifies per CPU-second. */
static double batch_rate(variant_fn fn, struct fixture *f, int n)
{
    double t0 = cpu_now();
    for (int i = 0; i < n; i++)
        if (!fn(f))
            fail("verification failed");
    double dt = cpu_now() - t0;
    return dt > 0 ? n / dt : 0;
}

/* Median verifies per CPU-second of each variant over `rounds` rounds; the variants take turns
 * within a round so that load changes on a shared machine hit all of them alike. */
static void measure(const variant_fn *fns, const int *batch, size_t nv, struct fixture *f,
                    int rounds, double *median)
{
    static double rates[8][MAX_ROUNDS];
    for (size_t v = 0; v < nv; v++)
        (void)batch_rate(fns[v], f, batch[v] / 4 + 1); /* warm-up */
    for (int r = 0; r < rounds; r++)
        for (size_t v = 0; v < nv; v++)
            rates[v][r] = batch_rate(fns[v], f, batch[v]);
    for (size_t v = 0; v < nv; v++) {
        qsort(rates[v], (size_t)rounds, sizeof(double), cmp_double);
        median[v] = rates[v][rounds / 2];
    }
}

static void setup(struct fixture *f, const char *name, enum keys_alg alg)
{
    f->name = name;
    f->priv = alg == KEYS_ALG_RS256 ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    if (f->priv == NULL)
        fail("keygen");
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, f->priv);
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    f->pub_pem = malloc((size_t)n + 1);
    memcpy(f->pub_pem, p, (size_t)n);
    f->pub_pem[n] = '\0';
    f->pub_len = (size_t)n;
    BIO_free(b);

    f->ks = keys_set_new();
    if (keys_set_add_pem(f->ks, "k1", f->pub_pem, f->pub_len, alg) < 0 ||
        keys_set_finish(f->ks) < 0)
        fail("key set");
    /* a realistic access token: ~800 bytes with RS256 */
    const char *claims =
        "{\"sub\":\"alice@example.com\",\"exp\":2000000000,\"iat\":1799999000,"
        "\"iss\":\"https://idp.example.com/realms/voice\",\"aud\":[\"sipedge\",\"ucm\"],"
        "\"scope\":\"openid sip:register sip:invite\",\"jti\":\"7f0c2a4e-1d3b-4c5e-9a8f-"
        "2b6d7e8f9a0b\",\"azp\":\"jabber-client\",\"name\":\"Alice Example\"}";
    struct jwt_mint_spec spec = {.alg = alg, .priv = f->priv, .kid = "k1", .claims_json = claims};
    ssize_t tl = jwt_mint(&spec, f->tok, sizeof(f->tok));
    if (tl < 0)
        fail("mint");
    f->tok_len = (size_t)tl;
    const char *dot = strrchr(f->tok, '.');
    f->input_len = (size_t)(dot - f->tok);
    unsigned char raw[512];
    ssize_t sl = jwt_b64url_decode(dot + 1, strlen(dot + 1), raw, sizeof(raw));
    if (sl < 0)
        fail("signature decode");
    if (alg == KEYS_ALG_ES256) { /* bare OpenSSL verifies DER: convert once, outside the loop */
        ECDSA_SIG *es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL));
        unsigned char *o = f->sig;
        f->sig_len = (size_t)i2d_ECDSA_SIG(es, &o);
        ECDSA_SIG_free(es);
    } else {
        memcpy(f->sig, raw, (size_t)sl);
        f->sig_len = (size_t)sl;
    }
}

int main(int argc, char **argv)
{
    int rounds = 15, batch = 400, c;
    while ((c = getopt(argc, argv, "r:n:")) != -1) {
        if (c == 'r')
            rounds = atoi(optarg);
        else if (c == 'n')
            batch = atoi(optarg);
        else {
            fprintf(stderr, "usage: bench-jwt [-r rounds (<= %d)] [-n verifies per round]\n",
                    MAX_ROUNDS);
            return 2;
        }
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || batch < 1)
        fail("bad -r / -n");

    struct fixture fx[2];
    setup(&fx[0], "RS256", KEYS_ALG_RS256);
    setup(&fx[1], "ES256", KEYS_ALG_ES256);

    printf("verifies per CPU-second on one core, median of %d rounds x %d (thread CPU time)\n",
           rounds, batch);
    printf("%-6s %6s %16s %16s %16s %9s %12s\n", "alg", "token", "jwt_verify", "bare EVP",
           "libjwt+PEM", "jwt/bare", "libjwt/bare");
    for (int i = 0; i < 2; i++) {
        struct fixture *f = &fx[i];
        static const variant_fn fns[3] = {run_jwt_verify, run_bare, run_libjwt};
        const int batches[3] = {batch, batch, batch / 4 + 1}; /* libjwt is ~15x slower */
        double m[3];
        measure(fns, batches, 3, f, rounds, m);
        double v = m[0], b = m[1], l = m[2];
        printf("%-6s %5zuB %16.0f %16.0f %16.0f %8.1f%% %11.1f%%\n", f->name, f->tok_len, v, b, l,
               100.0 * v / b, 100.0 * l / b);
        printf("%-6s %6s %13.2f us %13.2f us %13.2f us\n", "", "", 1e6 / v, 1e6 / b, 1e6 / l);
    }
    for (int i = 0; i < 2; i++) {
        keys_release(fx[i].ks);
        EVP_PKEY_free(fx[i].priv);
        free(fx[i].pub_pem);
    }
    return 0;
}
