// SPDX-License-Identifier: MIT
// Key sets: PEM / JWKS / HS256 secret / symmetric key loading with file-naming errors, kid lookup,
// and an atomic reload while other threads verify.
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "jwt_testutil.h"

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/sipedge-keys-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

TestSuite(keys, .init = setup, .fini = teardown);

/* Write `len` bytes to dir/name; returns the path (static buffer rotation of 4). */
static const char *put(const char *name, const void *data, size_t len)
{
    static char paths[4][256];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, 256, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
    return p;
}

static const char *put_pub(const char *name, EVP_PKEY *k)
{
    size_t n = 0;
    char *pem = tu_pub_pem(k, &n);
    const char *p = put(name, pem, n);
    free(pem);
    return p;
}

Test(keys, loads_pem_keys_and_infers_their_alg)
{
    EVP_PKEY *rsa = tu_rsa(), *ec = tu_ec();
    struct keys_pem_spec pems[2] = {{.path = put_pub("rs.pem", rsa), .kid = "r1"},
                                    {.path = put_pub("ec.pem", ec), .kid = "e1", .alg = "ES256"}};
    struct keys_config cfg = {.pems = pems, .n_pems = 2};
    struct keys_set *s = NULL;
    char err[256] = "";
    cr_assert_eq(keys_set_load(&cfg, &s, err, sizeof(err), NULL, 0), 0, "%s", err);
    cr_assert_eq(keys_count(s), 2);
    const struct keys_key *k = keys_find(s, "r1", 2);
    cr_assert_not_null(k);
    cr_assert_eq(k->alg, KEYS_ALG_RS256);
    cr_assert_eq(keys_find(s, "e1", 2)->alg, KEYS_ALG_ES256);
    cr_assert_null(keys_find(s, "e", 1));
    cr_assert_null(keys_find(s, "e1x", 3));
    cr_assert_null(keys_default(s), "two keys and no default name: no default");
    cr_assert_null(keys_sym(s));
    keys_release(s);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

Test(keys, names_the_file_and_the_problem_on_errors)
{
    EVP_PKEY *ec = tu_ec();
    struct keys_pem_spec pem = {.path = put_pub("ec.pem", ec), .kid = "e", .alg = "RS256"};
    struct keys_config cfg = {.pems = &pem, .n_pems = 1};
    struct keys_set *s = NULL;
    char err[256] = "";
    cr_assert_eq(keys_set_load(&cfg, &s, err, sizeof(err), NULL, 0), -EINVAL);
    cr_assert_null(s);
    cr_assert(strstr(err, "ec.pem") != NULL && strstr(err, "RS256") != NULL, "%s", err);

    pem.alg = "HS256";
    cr_assert_eq(keys_set_load(&cfg, &s, err, sizeof(err), NULL, 0), -EINVAL);
    cr_assert(strstr(err, "HS256") != NULL, "%s", err);

    pem.alg = NULL;
    pem.path = put("junk.pem", "hello", 5);
    cr_assert_eq(keys_set_load(&cfg, &s, err, sizeof(err), NULL, 0), -EINVAL);
    cr_assert(strstr(err, "junk.pem") != NULL, "%s", err);

    pem.path = "/nonexistent/key.pem";
    cr_assert_eq(keys_set_load(&cfg, &s, err, sizeof(err), NULL, 0), -ENOENT);
    cr_assert(strstr(err, "/nonexistent/key.pem") != NULL, "%s", err);

    struct keys_config c2 = {.jwks_path = put("bad.jwks", "{\"keys\":", 8)};
    cr_assert_eq(keys_set_load(&c2, &s, err, sizeof(err), NULL, 0), -EINVAL);
    cr_assert(strstr(err, "bad.jwks") != NULL, "%s", err);

    struct keys_config c3 = {.pems = &pem, .n_pems = 1, .default_kid = "zz"};
    pem.path = put_pub("ec2.pem", ec);
    cr_assert_eq(keys_set_load(&c3, &s, err, sizeof(err), NULL, 0), -ENOENT);
    cr_assert(strstr(err, "zz") != NULL, "%s", err);
    EVP_PKEY_free(ec);
}

Test(keys, rejects_duplicate_kids_and_small_rsa_keys)
{
    EVP_PKEY *ec = tu_ec();
    struct keys_set *s = keys_set_new();
    tu_add_pub(s, "a", ec);
    size_t n = 0;
    char *pem = tu_pub_pem(ec, &n);
    cr_assert_eq(keys_set_add_pem(s, "a", pem, n, KEYS_ALG_NONE), -EINVAL);
    cr_assert_eq(keys_set_add_pem(s, "b", pem, n, KEYS_ALG_RS256), -EINVAL);
    cr_assert_eq(keys_set_add_hs256(s, "a", "x", 1), -EINVAL);
    free(pem);
    EVP_PKEY *small = EVP_RSA_gen(1024);
    cr_assert_eq(keys_set_add_pkey(s, "small", small, KEYS_ALG_NONE), -EINVAL);
    cr_assert_eq(keys_set_finish(s), 0);
    cr_assert_eq(keys_count(s), 1);
    cr_assert_eq(keys_default(s), keys_find(s, "a", 1), "a one-key set defaults to its key");
    keys_release(s);
    EVP_PKEY_free(ec);
}

Test(keys, parses_a_jwks_and_skips_unsupported_entries_with_a_reason)
{
    const char *jwks =
        "{\"keys\":["
        "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"ec\",\"use\":\"sig\",\"alg\":\"ES256\","
        "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
        "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"},"
        "{\"kty\":\"EC\",\"crv\":\"P-384\",\"kid\":\"p384\",\"x\":\"AA\",\"y\":\"AA\"},"
        "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"enc\",\"use\":\"enc\",\"x\":\"AA\",\"y\":"
        "\"AA\"},"
        "{\"kty\":\"oct\",\"kid\":\"sym\",\"k\":\"c2VjcmV0\"},"
        "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"ed\",\"x\":\"AA\"},"
        "{\"kty\":\"RSA\",\"kid\":\"ps\",\"alg\":\"PS256\",\"n\":\"AA\",\"e\":\"AQAB\"}"
        "]}";
    struct keys_set *s = keys_set_new();
    char err[256] = "", warn[1024] = "";
    cr_assert_eq(keys_set_add_jwks(s, jwks, strlen(jwks), err, sizeof(err), warn, sizeof(warn)), 1,
                 "%s", err);
    cr_assert_eq(keys_set_finish(s), 0);
    cr_assert_eq(keys_find(s, "ec", 2)->alg, KEYS_ALG_ES256);
    const char *expect[] = {"p384", "P-384", "enc", "\"sig\"", "sym", "oct", "ed", "OKP", "PS256"};
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
        cr_assert(strstr(warn, expect[i]) != NULL, "'%s' not in warnings:\n%s", expect[i], warn);
    keys_release(s);
}

Test(keys, rejects_malformed_supported_jwks_entries)
{
    const char *bad[] = {
        "[]",
        "{\"nokeys\":[]}",
        "{\"keys\":[42]}",
        "{\"keys\":[{\"kid\":\"x\"}]}",
        /* a point that is not on the curve */
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"x\","
        "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
        "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a1\"}]}",
        /* short coordinates */
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"x\",\"x\":\"AAAA\",\"y\":\"AAAA\"}]"
        "}",
        /* RSA without e, and with padding in n */
        "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"AQAB\"}]}",
        "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"AQ==\",\"e\":\"AQAB\"}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct keys_set *s = keys_set_new();
        char err[256] = "";
        cr_assert_eq(keys_set_add_jwks(s, bad[i], strlen(bad[i]), err, sizeof(err), NULL, 0),
                     -EINVAL, "%s", bad[i]);
        cr_assert_neq(err[0], '\0', "no message for %s", bad[i]);
        keys_release(s);
    }
}

Test(keys, loads_hs256_secrets_only_from_their_own_file)
{
    struct keys_hs_spec hs = {.path = put("hs.secret", "s3cret-bytes", 12), .kid = "h"};
    struct keys_config cfg = {.hs_secrets = &hs, .n_hs_secrets = 1};
    struct keys_set *s = NULL;
    char err[256] = "";
    cr_assert_eq(keys_set_load(&cfg, &s, err, sizeof(err), NULL, 0), 0, "%s", err);
    const struct keys_key *k = keys_find(s, "h", 1);
    cr_assert_eq(k->alg, KEYS_ALG_HS256);
    cr_assert_eq(k->secret_len, 12);
    cr_assert_eq(memcmp(k->secret, "s3cret-bytes", 12), 0);
    keys_release(s);

    hs.path = put("empty.secret", "", 0);
    cr_assert_eq(keys_set_load(&cfg, &s, err, sizeof(err), NULL, 0), -EINVAL);
    cr_assert(strstr(err, "empty.secret") != NULL, "%s", err);
}

Test(keys, parses_the_symmetric_key_as_raw_hex_or_base64)
{
    unsigned char want[32], got[32];
    for (int i = 0; i < 32; i++)
        want[i] = (unsigned char)(i * 7 + 1);
    char hex[80], b64[64];
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02X", want[i]);
    strcat(hex, "\n");
    jwt_b64url_encode(want, 32, b64);

    cr_assert_eq(keys_parse_sym((const char *)want, 32, got), 0);
    cr_assert_eq(memcmp(want, got, 32), 0);
    memset(got, 0, 32);
    cr_assert_eq(keys_parse_sym(hex, strlen(hex), got), 0);
    cr_assert_eq(memcmp(want, got, 32), 0);
    memset(got, 0, 32);
    cr_assert_eq(keys_parse_sym(b64, strlen(b64), got), 0);
    cr_assert_eq(memcmp(want, got, 32), 0);
    /* standard base64 with padding */
    char std[64];
    strcpy(std, b64);
    for (char *p = std; *p; p++)
        *p = *p == '-' ? '+' : *p == '_' ? '/' : *p;
    strcat(std, "=\n");
    memset(got, 0, 32);
    cr_assert_eq(keys_parse_sym(std, strlen(std), got), 0);
    cr_assert_eq(memcmp(want, got, 32), 0);

    cr_assert_eq(keys_parse_sym("abcd", 4, got), -EINVAL);
    hex[5] = 'x';
    cr_assert_eq(keys_parse_sym(hex, strlen(hex), got), -EINVAL);

    struct keys_config cfg = {.sym_key_path = put("sym.key", b64, strlen(b64))};
    struct keys_set *s = NULL;
    char err[256] = "";
    cr_assert_eq(keys_set_load(&cfg, &s, err, sizeof(err), NULL, 0), 0, "%s", err);
    cr_assert_eq(memcmp(keys_sym(s), want, 32), 0);
    keys_release(s);
    cfg.sym_key_path = put("short.key", "0123", 4);
    cr_assert_eq(keys_set_load(&cfg, &s, err, sizeof(err), NULL, 0), -EINVAL);
    cr_assert(strstr(err, "short.key") != NULL, "%s", err);
}

Test(keys, maps_alg_names_exactly)
{
    cr_assert_eq(keys_alg_from_name("RS256", 5), KEYS_ALG_RS256);
    cr_assert_eq(keys_alg_from_name("ES256", 5), KEYS_ALG_ES256);
    cr_assert_eq(keys_alg_from_name("HS256", 5), KEYS_ALG_HS256);
    cr_assert_eq(keys_alg_from_name("none", 4), KEYS_ALG_NONE);
    cr_assert_eq(keys_alg_from_name("RS2560", 6), KEYS_ALG_NONE);
    cr_assert_eq(keys_alg_from_name("RS25", 4), KEYS_ALG_NONE);
    cr_assert_str_eq(keys_alg_name(KEYS_ALG_ES256), "ES256");
    cr_assert_str_eq(keys_alg_name(KEYS_ALG_COUNT), "none");
}

/* ---- reload while verifying ---- */

#define N_READERS 4

struct reload_ctx {
    struct keys_store *store;
    const char *tok[2];
    size_t len[2];
    atomic_bool stop;
    atomic_long verified, mixed;
};

/* Set A holds key kA under "k"; set B holds kB under "k". A token signed by kA verifies only with
 * set A, one by kB only with B: exactly one of the two must verify against any set a reader
 * holds, or the reader saw a mix. */
static void *reader(void *arg)
{
    struct reload_ctx *c = arg;
    struct jwt_policy pol;
    jwt_policy_init(&pol);
    while (!atomic_load(&c->stop)) {
        struct keys_set *s = keys_acquire(c->store);
        struct jwt_result r;
        int ok = (jwt_verify(s, &pol, c->tok[0], c->len[0], 1800000000, &r) == JWT_OK) +
                 (jwt_verify(s, &pol, c->tok[1], c->len[1], 1800000000, &r) == JWT_OK);
        if (ok != 1)
            atomic_fetch_add(&c->mixed, 1);
        keys_release(s);
        atomic_fetch_add(&c->verified, 1);
    }
    return NULL;
}

static struct keys_set *one_key_set(EVP_PKEY *k)
{
    struct keys_set *s = keys_set_new();
    tu_add_pub(s, "k", k);
    cr_assert_eq(keys_set_finish(s), 0);
    return s;
}

Test(keys, reload_while_verifying_shows_old_or_new_never_a_mix)
{
    EVP_PKEY *ka = tu_ec(), *kb = tu_ec();
    static char ta[TOK_CAP], tb[TOK_CAP];
    const char *claims = "{\"sub\":\"a\",\"exp\":2000000000}";
    struct reload_ctx c = {.store = keys_store_new(one_key_set(ka)), .tok = {ta, tb}};
    c.len[0] = tu_mint(ta, KEYS_ALG_ES256, ka, NULL, "k", NULL, claims);
    c.len[1] = tu_mint(tb, KEYS_ALG_ES256, kb, NULL, "k", NULL, claims);
    cr_assert_not_null(c.store);
    uint64_t gen0 = keys_store_generation(c.store);

    pthread_t th[N_READERS];
    for (int i = 0; i < N_READERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, reader, &c), 0);
    int swaps = 0;
    /* bounded: a hundred swaps of freshly built sets, with verifies in between */
    for (; swaps < 100; swaps++) {
        keys_store_swap(c.store, one_key_set(swaps % 2 ? ka : kb));
        if (swaps % 10 == 0)
            usleep(1000);
    }
    while (atomic_load(&c.verified) < 50)
        usleep(1000);
    atomic_store(&c.stop, true);
    for (int i = 0; i < N_READERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&c.mixed), 0);
    cr_assert_eq(keys_store_generation(c.store), gen0 + (uint64_t)swaps);

    /* a reference held across a swap keeps its set alive and unchanged */
    struct keys_set *held = keys_acquire(c.store);
    keys_store_swap(c.store, one_key_set(kb));
    keys_store_swap(c.store, one_key_set(ka));
    struct jwt_policy pol;
    jwt_policy_init(&pol);
    struct jwt_result r;
    enum jwt_reason ra = jwt_verify(held, &pol, ta, c.len[0], 1800000000, &r);
    enum jwt_reason rb = jwt_verify(held, &pol, tb, c.len[1], 1800000000, &r);
    cr_assert((ra == JWT_OK) != (rb == JWT_OK));
    keys_release(held);

    keys_store_swap(c.store, NULL);
    cr_assert_null(keys_acquire(c.store));
    keys_store_free(c.store);
    keys_store_free(NULL);
    keys_release(NULL);
    EVP_PKEY_free(ka);
    EVP_PKEY_free(kb);
}

Test(keys, fingerprints_equal_files_alike_and_any_key_change_differently)
{
    EVP_PKEY *ka = tu_ec(), *kb = tu_ec();
    struct keys_pem_spec pa = {.path = put_pub("a.pem", ka), .kid = "a"};
    struct keys_pem_spec pb = {.path = put_pub("b.pem", kb), .kid = "b"};
    struct keys_pem_spec both[2] = {pb, pa}; /* order of the configuration does not matter */
    struct keys_pem_spec both_sorted[2] = {pa, pb};
    struct keys_config c1 = {.pems = both, .n_pems = 2};
    struct keys_config c2 = {.pems = both_sorted, .n_pems = 2};
    struct keys_config c3 = {.pems = &pa, .n_pems = 1};
    struct keys_pem_spec renamed = {.path = pa.path, .kid = "a2"};
    struct keys_config c4 = {.pems = &renamed, .n_pems = 1};
    struct keys_set *s1 = NULL, *s2 = NULL, *s3 = NULL, *s4 = NULL;
    char err[256];
    cr_assert_eq(keys_set_load(&c1, &s1, err, sizeof(err), NULL, 0), 0, "%s", err);
    cr_assert_eq(keys_set_load(&c2, &s2, err, sizeof(err), NULL, 0), 0, "%s", err);
    cr_assert_eq(keys_set_load(&c3, &s3, err, sizeof(err), NULL, 0), 0, "%s", err);
    cr_assert_eq(keys_set_load(&c4, &s4, err, sizeof(err), NULL, 0), 0, "%s", err);
    cr_assert_eq(memcmp(keys_set_fingerprint(s1), keys_set_fingerprint(s2), KEYS_FP_LEN), 0);
    cr_assert_neq(memcmp(keys_set_fingerprint(s1), keys_set_fingerprint(s3), KEYS_FP_LEN), 0);
    cr_assert_neq(memcmp(keys_set_fingerprint(s3), keys_set_fingerprint(s4), KEYS_FP_LEN), 0);
    struct keys_set *s5 = keys_set_new();
    cr_assert_null(keys_set_fingerprint(s5), "unfinished");
    cr_assert_eq(keys_set_add_pkey(s5, "a", EVP_PKEY_dup(ka), KEYS_ALG_NONE), 0);
    unsigned char sym[KEYS_SYM_LEN] = {1};
    keys_set_set_sym(s5, sym);
    cr_assert_eq(keys_set_finish(s5), 0);
    cr_assert_neq(memcmp(keys_set_fingerprint(s3), keys_set_fingerprint(s5), KEYS_FP_LEN), 0,
                  "the symmetric key counts");
    keys_release(s1);
    keys_release(s2);
    keys_release(s3);
    keys_release(s4);
    keys_release(s5);
    EVP_PKEY_free(ka);
    EVP_PKEY_free(kb);
}
