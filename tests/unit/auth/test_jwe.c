// SPDX-License-Identifier: MIT
// A128CBC-HS256 against RFC 7518 appendix B.1, the compact JWE of the CUCM profile, and cucm
// tokens end to end through jwt_verify(): round trip, wrong key, tampered tag, no key.
#include <errno.h>

#include <openssl/hmac.h>

#include "jwt_testutil.h"

#define NOW 1800000000

/* ---- RFC 7518 B.1 ---- */

static const unsigned char b1_k[32] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};
static const char b1_p[] = "A cipher system must not be required to be secret, and it must be "
                           "able to fall into the hands of the enemy without inconvenience";
static const unsigned char b1_iv[16] = {0x1a, 0xf3, 0x8c, 0x2d, 0xc2, 0xb9, 0x6f, 0xfd,
                                        0xd8, 0x66, 0x94, 0x09, 0x23, 0x41, 0xbc, 0x04};
static const char b1_a[] = "The second principle of Auguste Kerckhoffs";
static const unsigned char b1_e[144] = {
    0xc8, 0x0e, 0xdf, 0xa3, 0x2d, 0xdf, 0x39, 0xd5, 0xef, 0x00, 0xc0, 0xb4, 0x68, 0x83, 0x42, 0x79,
    0xa2, 0xe4, 0x6a, 0x1b, 0x80, 0x49, 0xf7, 0x92, 0xf7, 0x6b, 0xfe, 0x54, 0xb9, 0x03, 0xa9, 0xc9,
    0xa9, 0x4a, 0xc9, 0xb4, 0x7a, 0xd2, 0x65, 0x5c, 0x5f, 0x10, 0xf9, 0xae, 0xf7, 0x14, 0x27, 0xe2,
    0xfc, 0x6f, 0x9b, 0x3f, 0x39, 0x9a, 0x22, 0x14, 0x89, 0xf1, 0x63, 0x62, 0xc7, 0x03, 0x23, 0x36,
    0x09, 0xd4, 0x5a, 0xc6, 0x98, 0x64, 0xe3, 0x32, 0x1c, 0xf8, 0x29, 0x35, 0xac, 0x40, 0x96, 0xc8,
    0x6e, 0x13, 0x33, 0x14, 0xc5, 0x40, 0x19, 0xe8, 0xca, 0x79, 0x80, 0xdf, 0xa4, 0xb9, 0xcf, 0x1b,
    0x38, 0x4c, 0x48, 0x6f, 0x3a, 0x54, 0xc5, 0x10, 0x78, 0x15, 0x8e, 0xe5, 0xd7, 0x9d, 0xe5, 0x9f,
    0xbd, 0x34, 0xd8, 0x48, 0xb3, 0xd6, 0x95, 0x50, 0xa6, 0x76, 0x46, 0x34, 0x44, 0x27, 0xad, 0xe5,
    0x4b, 0x88, 0x51, 0xff, 0xb5, 0x98, 0xf7, 0xf8, 0x00, 0x74, 0xb9, 0x47, 0x3c, 0x82, 0xe2, 0xdb};
static const unsigned char b1_t[16] = {0x65, 0x2c, 0x3f, 0xa3, 0x6b, 0x0a, 0x7c, 0x5b,
                                       0x32, 0x19, 0xfa, 0xb3, 0xa3, 0x0b, 0xc1, 0xc4};

Test(jwe, encrypts_the_rfc_7518_b1_vector)
{
    unsigned char ct[160], tag[16];
    ssize_t n = jwt_a128cbc_hs256_encrypt(b1_k, b1_iv, b1_a, strlen(b1_a), b1_p, strlen(b1_p), ct,
                                          sizeof(ct), tag);
    cr_assert_eq(n, 144);
    cr_assert_eq(memcmp(ct, b1_e, 144), 0);
    cr_assert_eq(memcmp(tag, b1_t, 16), 0);
}

Test(jwe, decrypts_the_rfc_7518_b1_vector)
{
    unsigned char pt[160];
    ssize_t n = jwt_a128cbc_hs256_decrypt(b1_k, b1_iv, b1_a, strlen(b1_a), b1_e, sizeof(b1_e), b1_t,
                                          pt, sizeof(pt));
    cr_assert_eq(n, (ssize_t)strlen(b1_p));
    cr_assert_eq(memcmp(pt, b1_p, (size_t)n), 0);
}

Test(jwe, refuses_to_decrypt_when_tag_aad_or_ciphertext_changed)
{
    unsigned char pt[160], tag[16], ct[144];
    memcpy(tag, b1_t, 16);
    tag[15] ^= 1;
    memset(pt, 0x5a, sizeof(pt));
    cr_assert_eq(jwt_a128cbc_hs256_decrypt(b1_k, b1_iv, b1_a, strlen(b1_a), b1_e, sizeof(b1_e), tag,
                                           pt, sizeof(pt)),
                 -EBADMSG);
    for (size_t i = 0; i < sizeof(pt); i++)
        cr_assert_eq(pt[i], 0x5a, "nothing may be decrypted before the tag checks out");
    cr_assert_eq(jwt_a128cbc_hs256_decrypt(b1_k, b1_iv, b1_a, strlen(b1_a) - 1, b1_e, sizeof(b1_e),
                                           b1_t, pt, sizeof(pt)),
                 -EBADMSG);
    memcpy(ct, b1_e, sizeof(ct));
    ct[0] ^= 0x80;
    cr_assert_eq(jwt_a128cbc_hs256_decrypt(b1_k, b1_iv, b1_a, strlen(b1_a), ct, sizeof(ct), b1_t,
                                           pt, sizeof(pt)),
                 -EBADMSG);
    cr_assert_eq(
        jwt_a128cbc_hs256_decrypt(b1_k, b1_iv, b1_a, strlen(b1_a), b1_e, 100, b1_t, pt, sizeof(pt)),
        -EINVAL);
}

Test(jwe, rejects_bad_padding_even_with_a_valid_tag)
{
    /* Encrypt 32 bytes whose last block is not valid PKCS#7 by hand (no padding), MAC it
     * properly: the tag verifies, the padding check must still fail. */
    unsigned char block[32], ct[32], pt[64];
    memset(block, 0x41, sizeof(block));
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int l = 0;
    cr_assert_eq(EVP_EncryptInit_ex(c, EVP_aes_128_cbc(), NULL, b1_k + 16, b1_iv), 1);
    EVP_CIPHER_CTX_set_padding(c, 0);
    cr_assert_eq(EVP_EncryptUpdate(c, ct, &l, block, 32), 1);
    EVP_CIPHER_CTX_free(c);
    /* tag = HMAC-SHA-256(MAC_KEY, AAD (empty) || IV || CT || AL (0)), first 16 bytes */
    unsigned char mac_in[16 + 32 + 8] = {0};
    memcpy(mac_in, b1_iv, 16);
    memcpy(mac_in + 16, ct, 32);
    unsigned char full[32];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), b1_k, 16, mac_in, sizeof(mac_in), full, &ml);
    cr_assert_eq(jwt_a128cbc_hs256_decrypt(b1_k, b1_iv, "", 0, ct, 32, full, pt, sizeof(pt)),
                 -EBADMSG);
}

/* ---- compact JWE ---- */

static const unsigned char sym[32] = "0123456789abcdef0123456789ABCDEF";

Test(jwe, seals_and_opens_a_compact_jwe)
{
    char jwe[1024];
    unsigned char pt[512];
    const char *msg = "{\"sub\":\"alice\"}";
    ssize_t n = jwt_jwe_seal(sym, msg, strlen(msg), jwe, sizeof(jwe));
    cr_assert_gt(n, 0);
    int dots = 0;
    for (ssize_t i = 0; i < n; i++)
        dots += jwe[i] == '.';
    cr_assert_eq(dots, 4);
    cr_assert(strstr(jwe, "..") != NULL, "empty encrypted key for alg dir");
    ssize_t m = jwt_jwe_open(sym, jwe, (size_t)n, pt, sizeof(pt));
    cr_assert_eq(m, (ssize_t)strlen(msg));
    cr_assert_eq(memcmp(pt, msg, (size_t)m), 0);
    unsigned char other[32];
    memcpy(other, sym, 32);
    other[31] ^= 1;
    cr_assert_eq(jwt_jwe_open(other, jwe, (size_t)n, pt, sizeof(pt)), -JWT_E_DECRYPT_FAILED);
    cr_assert_eq(jwt_jwe_open(sym, jwe, (size_t)n - 2, pt, sizeof(pt)), -JWT_E_MALFORMED);
    cr_assert_eq(jwt_jwe_open(sym, jwe, (size_t)n, pt, 8), -JWT_E_TOO_LARGE);
}

Test(jwe, rejects_other_algorithms_and_an_encrypted_key)
{
    char jwe[1024];
    unsigned char pt[512];
    ssize_t n = jwt_jwe_seal(sym, "{}", 2, jwe, sizeof(jwe));
    cr_assert_gt(n, 0);
    const char *rest = strchr(jwe, '.'); /* ".<iv>.<ct>.<tag>" with an empty key before */
    const char *hdrs[] = {"{\"alg\":\"RSA-OAEP\",\"enc\":\"A128CBC-HS256\"}",
                          "{\"alg\":\"dir\",\"enc\":\"A256GCM\"}",
                          "{\"alg\":\"dir\",\"enc\":\"A128CBC-HS256\",\"zip\":\"DEF\"}"};
    char buf[1200];
    for (size_t i = 0; i < 3; i++) {
        size_t o = jwt_b64url_encode(hdrs[i], strlen(hdrs[i]), buf);
        strcpy(buf + o, rest);
        cr_assert_eq(jwt_jwe_open(sym, buf, strlen(buf), pt, sizeof(pt)), -JWT_E_ALG_NOT_ALLOWED,
                     "%s", hdrs[i]);
    }
    size_t hl = (size_t)(rest - jwe);
    memcpy(buf, jwe, hl);
    strcpy(buf + hl, ".AAAA");
    strcat(buf, rest + 1);
    cr_assert_eq(jwt_jwe_open(sym, buf, strlen(buf), pt, sizeof(pt)), -JWT_E_MALFORMED);
}

/* ---- cucm tokens through jwt_verify ---- */

#define INNER "{\"sub\":\"alice\",\"exp\":2000000000,\"scope\":\"sip:register\",\"jti\":\"c-1\"}"

static EVP_PKEY *rsa;
static struct jwt_policy pol;
static char tok[TOK_CAP];

static void setup(void)
{
    rsa = tu_rsa();
    jwt_policy_init(&pol);
    pol.profile = JWT_PROFILE_CUCM;
}

static void teardown(void)
{
    EVP_PKEY_free(rsa);
}

TestSuite(cucm, .init = setup, .fini = teardown);

static struct keys_set *cucm_set(const unsigned char *key)
{
    struct keys_set *s = keys_set_new();
    tu_add_pub(s, "uuid:abc", rsa);
    if (key)
        keys_set_set_sym(s, key);
    cr_assert_eq(keys_set_finish(s), 0);
    return s;
}

static size_t mint_cucm(const char *inner)
{
    struct jwt_mint_spec spec = {.alg = KEYS_ALG_RS256,
                                 .priv = rsa,
                                 .kid = "uuid:abc",
                                 .claims_json = inner,
                                 .profile = JWT_PROFILE_CUCM,
                                 .sym_key = sym};
    ssize_t n = jwt_mint(&spec, tok, TOK_CAP);
    cr_assert_gt(n, 0);
    return (size_t)n;
}

/* An outer RS256 JWS whose claims are `outer_json` verbatim (for hand-made JWEs). */
static size_t mint_outer(const char *outer_json)
{
    return tu_mint(tok, KEYS_ALG_RS256, rsa, NULL, "uuid:abc", NULL, outer_json);
}

Test(cucm, verifies_a_minted_token_round_trip)
{
    struct keys_set *s = cucm_set(sym);
    size_t n = mint_cucm(INNER);
    struct jwt_result r;
    pol.scopes[0] = "sip:register";
    pol.n_scopes = 1;
    cr_assert_eq(jwt_verify(s, &pol, tok, n, NOW, &r), JWT_OK);
    cr_assert_str_eq(r.user, "alice");
    cr_assert_str_eq(r.jti, "c-1");
    cr_assert_eq(r.exp, 2000000000);
    cr_assert_eq(r.scope_bits, 1);
    cr_assert_not(r.signature_only);
    pol.profile = JWT_PROFILE_AUTO;
    cr_assert_eq(jwt_verify(s, &pol, tok, n, NOW, &r), JWT_OK);
    cr_assert_str_eq(r.user, "alice");
    cr_assert_eq(jwt_verify(s, &pol, tok, n, 2000000000 + 60, &r), JWT_E_EXPIRED);
    keys_release(s);
}

Test(cucm, reads_configured_claim_names_inside)
{
    struct keys_set *s = cucm_set(sym);
    size_t n = mint_cucm("{\"user\":\"bob\",\"expiry\":2000000000,\"scp\":[\"a\",\"b\"]}");
    pol.user_claim = "user";
    pol.exp_claim = "expiry";
    pol.scope_claim = "scp";
    pol.scopes[0] = "b";
    pol.n_scopes = 1;
    struct jwt_result r;
    cr_assert_eq(jwt_verify(s, &pol, tok, n, NOW, &r), JWT_OK);
    cr_assert_str_eq(r.user, "bob");
    cr_assert_eq(r.exp, 2000000000);
    keys_release(s);
}

Test(cucm, rejects_a_wrong_symmetric_key_as_decrypt_failed)
{
    unsigned char other[32];
    memcpy(other, sym, 32);
    other[0] ^= 0xff;
    struct keys_set *s = cucm_set(other);
    size_t n = mint_cucm(INNER);
    cr_assert_eq(tu_verify(s, &pol, tok, n, NOW), JWT_E_DECRYPT_FAILED);
    keys_release(s);
}

Test(cucm, rejects_a_tampered_tag_under_a_valid_outer_signature)
{
    char jwe[2048], outer[2200];
    ssize_t jl = jwt_jwe_seal(sym, INNER, strlen(INNER), jwe, sizeof(jwe));
    cr_assert_gt(jl, 0);
    jwe[jl - 3] = jwe[jl - 3] == 'A' ? 'B' : 'A'; /* inside the tag segment */
    snprintf(outer, sizeof(outer), "{\"private\":\"%s\"}", jwe);
    struct keys_set *s = cucm_set(sym);
    size_t n = mint_outer(outer);
    cr_assert_eq(tu_verify(s, &pol, tok, n, NOW), JWT_E_DECRYPT_FAILED);
    keys_release(s);
}

Test(cucm, rejects_tampering_with_the_outer_signature_first)
{
    struct keys_set *s = cucm_set(sym);
    size_t n = mint_cucm(INNER);
    char *p = strchr(tok, '.') + 20;
    *p = *p == 'A' ? 'B' : 'A';
    cr_assert_eq(tu_verify(s, &pol, tok, n, NOW), JWT_E_BAD_SIGNATURE);
    keys_release(s);
}

Test(cucm, checks_only_the_signature_without_the_symmetric_key)
{
    struct keys_set *s = cucm_set(NULL);
    size_t n = mint_cucm(INNER);
    struct jwt_result r;
    cr_assert_eq(jwt_verify(s, &pol, tok, n, NOW, &r), JWT_OK);
    cr_assert(r.signature_only);
    cr_assert_eq(r.exp, 0, "no outer exp: the caller caps the TTL");
    cr_assert_str_eq(r.user, "");

    /* an outer exp, when present, is honoured and reported */
    char jwe[2048], outer[2300];
    ssize_t jl = jwt_jwe_seal(sym, INNER, strlen(INNER), jwe, sizeof(jwe));
    cr_assert_gt(jl, 0);
    snprintf(outer, sizeof(outer), "{\"private\":\"%s\",\"exp\":1900000000}", jwe);
    n = mint_outer(outer);
    cr_assert_eq(jwt_verify(s, &pol, tok, n, NOW, &r), JWT_OK);
    cr_assert(r.signature_only);
    cr_assert_eq(r.exp, 1900000000);
    cr_assert_eq(jwt_verify(s, &pol, tok, n, 1900000000 + 60, &r), JWT_E_EXPIRED);
    keys_release(s);
}

Test(cucm, requires_the_private_claim)
{
    struct keys_set *s = cucm_set(sym);
    size_t n = mint_outer("{\"sub\":\"alice\",\"exp\":2000000000}");
    cr_assert_eq(tu_verify(s, &pol, tok, n, NOW), JWT_E_MISSING_CLAIM);
    pol.profile = JWT_PROFILE_AUTO; /* no private claim: generic rules apply */
    cr_assert_eq(tu_verify(s, &pol, tok, n, NOW), JWT_OK);
    keys_release(s);
}

Test(cucm, applies_the_claim_checks_to_the_inner_claims)
{
    struct keys_set *s = cucm_set(sym);
    size_t n = mint_cucm("{\"sub\":\"alice\",\"exp\":1700000000}");
    cr_assert_eq(tu_verify(s, &pol, tok, n, NOW), JWT_E_EXPIRED);
    n = mint_cucm("{\"exp\":2000000000}");
    cr_assert_eq(tu_verify(s, &pol, tok, n, NOW), JWT_E_MISSING_CLAIM);
    n = mint_cucm("not json");
    cr_assert_eq(tu_verify(s, &pol, tok, n, NOW), JWT_E_MALFORMED);
    pol.iss = "ucm";
    n = mint_cucm(INNER);
    cr_assert_eq(tu_verify(s, &pol, tok, n, NOW), JWT_E_BAD_ISSUER);
    keys_release(s);
}
