// SPDX-License-Identifier: MIT
// jwt_verify() on generic JWS tokens: every rejection reason, the attack classics and the
// RFC 7515 appendix A.2 (RS256) / A.3 (ES256) examples.
#include "jwt_testutil.h"

#define NOW 1800000000
#define CLAIMS                                                                                     \
    "{\"sub\":\"alice\",\"exp\":2000000000,\"iat\":1700000000,\"jti\":\"j-1\","                    \
    "\"iss\":\"https://idp\",\"aud\":[\"other\",\"sipedge\"],\"scope\":\"openid sip:register\"}"

static EVP_PKEY *rsa, *ec;
static struct keys_set *ks;
static struct jwt_policy pol;
static char tok[TOK_CAP];
static const char hs_secret[] = "a shared secret of at least 32 bytes!!";

static void setup(void)
{
    rsa = tu_rsa();
    ec = tu_ec();
    ks = keys_set_new();
    tu_add_pub(ks, "rs", rsa);
    tu_add_pub(ks, "ec", ec);
    cr_assert_eq(keys_set_add_hs256(ks, "hs", hs_secret, strlen(hs_secret)), 0);
    cr_assert_eq(keys_set_finish(ks), 0);
    jwt_policy_init(&pol);
}

static void teardown(void)
{
    keys_release(ks);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

TestSuite(jwt, .init = setup, .fini = teardown);

static enum jwt_reason verify_claims(const char *claims)
{
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "ec", NULL, claims);
    return tu_verify(ks, &pol, tok, n, NOW);
}

/* ---- accepted tokens ---- */

Test(jwt, accepts_rs256_and_fills_the_result)
{
    size_t n = tu_mint(tok, KEYS_ALG_RS256, rsa, NULL, "rs", NULL, CLAIMS);
    struct jwt_result r;
    pol.iss = "https://idp";
    pol.aud = "sipedge";
    pol.scopes[0] = "sip:register";
    pol.scopes[1] = "openid";
    pol.n_scopes = 2;
    cr_assert_eq(jwt_verify(ks, &pol, tok, n, NOW, &r), JWT_OK);
    cr_assert_eq(r.reason, JWT_OK);
    cr_assert_str_eq(r.user, "alice");
    cr_assert_eq(r.user_len, 5);
    cr_assert_str_eq(r.jti, "j-1");
    cr_assert_eq(r.exp, 2000000000);
    cr_assert_eq(r.scope_bits, 3);
    cr_assert_not(r.signature_only);
}

Test(jwt, accepts_es256_with_raw_r_s_signature)
{
    struct jwt_result r;
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "ec", NULL, CLAIMS);
    cr_assert_eq(jwt_verify(ks, &pol, tok, n, NOW, &r), JWT_OK);
    cr_assert_str_eq(r.user, "alice");
    cr_assert_str_eq(jwt_reason_name(r.reason), "ok");
}

Test(jwt, accepts_hs256_only_with_a_configured_secret)
{
    size_t n = tu_mint(tok, KEYS_ALG_HS256, NULL, hs_secret, "hs", NULL, CLAIMS);
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_OK);
    n = tu_mint(tok, KEYS_ALG_HS256, NULL, "another secret", "hs", NULL, CLAIMS);
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_BAD_SIGNATURE);
}

Test(jwt, takes_the_token_by_length_not_by_nul)
{
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "ec", NULL, CLAIMS);
    tok[n] = 'x'; /* garbage past `len` must not matter */
    tok[n + 1] = '\0';
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_OK);
}

Test(jwt, reads_scope_as_an_array_and_a_custom_identity_claim)
{
    pol.scopes[0] = "b";
    pol.scopes[1] = "a";
    pol.n_scopes = 2;
    pol.user_claim = "upn";
    struct jwt_result r;
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "ec", NULL,
                       "{\"upn\":\"bob@example.com\",\"exp\":2000000000,\"scope\":[\"a\",\"b\"]}");
    cr_assert_eq(jwt_verify(ks, &pol, tok, n, NOW, &r), JWT_OK);
    cr_assert_str_eq(r.user, "bob@example.com");
    cr_assert_eq(r.scope_bits, 3);
    cr_assert_str_eq(r.jti, "");
}

Test(jwt, accepts_an_audience_given_as_a_string)
{
    pol.aud = "sipedge";
    cr_assert_eq(verify_claims("{\"sub\":\"a\",\"exp\":2000000000,\"aud\":\"sipedge\"}"), JWT_OK);
}

/* ---- key selection and algorithm binding ---- */

Test(jwt, rejects_alg_none_in_every_spelling)
{
    const char *hdrs[] = {"{\"alg\":\"none\",\"kid\":\"rs\"}", "{\"alg\":\"NONE\",\"kid\":\"rs\"}",
                          "{\"alg\":\"None\",\"kid\":\"rs\"}", "{\"alg\":\"none\"}"};
    for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
        size_t n = tu_assemble(tok, hdrs[i], CLAIMS, "");
        cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_ALG_NOT_ALLOWED, "%s", hdrs[i]);
        n = tu_assemble(tok, hdrs[i], CLAIMS, "c2ln");
        cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_ALG_NOT_ALLOWED, "%s", hdrs[i]);
    }
}

Test(jwt, rejects_an_unknown_algorithm)
{
    size_t n =
        tu_mint(tok, KEYS_ALG_RS256, rsa, NULL, NULL, "{\"alg\":\"RS512\",\"kid\":\"rs\"}", CLAIMS);
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_ALG_NOT_ALLOWED);
    n = tu_mint(tok, KEYS_ALG_RS256, rsa, NULL, NULL, "{\"alg\":\"rs256\",\"kid\":\"rs\"}", CLAIMS);
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_ALG_NOT_ALLOWED);
}

Test(jwt, rejects_hs256_signed_with_the_rsa_public_key_pem)
{
    /* The classic confusion: the attacker HMACs with the (public) PEM text of the RSA key. */
    char *pem = tu_pub_pem(rsa, NULL);
    size_t n = tu_mint(tok, KEYS_ALG_HS256, NULL, pem, "rs", NULL, CLAIMS);
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_ALG_NOT_ALLOWED);
    free(pem);
}

Test(jwt, rejects_a_kid_pointing_at_a_key_of_another_alg)
{
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "rs", NULL, CLAIMS);
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_ALG_NOT_ALLOWED);
    n = tu_mint(tok, KEYS_ALG_RS256, rsa, NULL, "hs", NULL, CLAIMS);
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_ALG_NOT_ALLOWED);
}

Test(jwt, rejects_a_signature_by_another_key_of_the_same_alg)
{
    EVP_PKEY *other = tu_ec();
    size_t n = tu_mint(tok, KEYS_ALG_ES256, other, NULL, "ec", NULL, CLAIMS);
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_BAD_SIGNATURE);
    EVP_PKEY_free(other);
}

Test(jwt, rejects_an_unknown_kid)
{
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "nope", NULL, CLAIMS);
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_UNKNOWN_KID);
}

Test(jwt, rejects_a_token_without_kid_unless_a_default_key_is_named)
{
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, NULL, NULL, CLAIMS);
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_UNKNOWN_KID);

    struct keys_set *one = keys_set_new();
    tu_add_pub(one, "ec", ec);
    tu_add_pub(one, "rs", rsa);
    cr_assert_eq(keys_set_set_default(one, "ec"), 0);
    cr_assert_eq(keys_set_finish(one), 0);
    cr_assert_eq(tu_verify(one, &pol, tok, n, NOW), JWT_OK);
    keys_release(one);
}

Test(jwt, rejects_everything_without_a_key_set)
{
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "ec", NULL, CLAIMS);
    cr_assert_eq(tu_verify(NULL, &pol, tok, n, NOW), JWT_E_UNKNOWN_KID);
}

/* ---- signatures ---- */

Test(jwt, rejects_a_tampered_payload)
{
    size_t n = tu_mint(tok, KEYS_ALG_RS256, rsa, NULL, "rs", NULL, CLAIMS);
    char forged[TOK_CAP];
    size_t fn = tu_assemble(forged, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"rs\"}",
                            "{\"sub\":\"mallory\",\"exp\":2000000000}", strrchr(tok, '.') + 1);
    cr_assert_eq(tu_verify(ks, &pol, forged, fn, NOW), JWT_E_BAD_SIGNATURE);
    /* one flipped bit in the middle of the payload */
    char *p = strchr(tok, '.') + 5;
    *p = *p == 'A' ? 'B' : 'A';
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_BAD_SIGNATURE);
}

Test(jwt, rejects_a_der_encoded_ecdsa_signature)
{
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "ec", NULL, CLAIMS);
    /* Re-sign the same input the OpenSSL way (DER) and put that in the token. */
    char *dot = strrchr(tok, '.');
    size_t in_len = (size_t)(dot - tok);
    unsigned char der[128];
    size_t dl = sizeof(der);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    cr_assert_eq(EVP_DigestSignInit(c, NULL, EVP_sha256(), NULL, ec), 1);
    cr_assert_eq(EVP_DigestSign(c, der, &dl, (unsigned char *)tok, in_len), 1);
    EVP_MD_CTX_free(c);
    n = in_len + 1 + jwt_b64url_encode(der, dl, dot + 1);
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_BAD_SIGNATURE);
}

Test(jwt, rejects_an_empty_or_truncated_signature)
{
    size_t n = tu_mint(tok, KEYS_ALG_RS256, rsa, NULL, "rs", NULL, CLAIMS);
    char *dot = strrchr(tok, '.');
    /* 342 characters for 256 bytes; 340 decode cleanly to 255 bytes */
    cr_assert_eq(tu_verify(ks, &pol, tok, n - 2, NOW), JWT_E_BAD_SIGNATURE);
    cr_assert_eq(tu_verify(ks, &pol, tok, (size_t)(dot - tok) + 1, NOW), JWT_E_BAD_SIGNATURE);
    n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "ec", NULL, CLAIMS);
    dot = strrchr(tok, '.');
    cr_assert_eq(tu_verify(ks, &pol, tok, (size_t)(dot - tok) + 1, NOW), JWT_E_BAD_SIGNATURE);
}

/* ---- compact form ---- */

Test(jwt, rejects_missing_or_extra_segments)
{
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "ec", NULL, CLAIMS);
    char buf[TOK_CAP];
    cr_assert_eq(tu_verify(ks, &pol, tok, (size_t)(strrchr(tok, '.') - tok), NOW), JWT_E_MALFORMED);
    cr_assert_eq(tu_verify(ks, &pol, tok, (size_t)(strchr(tok, '.') - tok), NOW), JWT_E_MALFORMED);
    memcpy(buf, tok, n);
    memcpy(buf + n, ".AAAA", 5);
    cr_assert_eq(tu_verify(ks, &pol, buf, n + 5, NOW), JWT_E_MALFORMED);
    cr_assert_eq(tu_verify(ks, &pol, "..", 2, NOW), JWT_E_MALFORMED);
    cr_assert_eq(tu_verify(ks, &pol, "", 0, NOW), JWT_E_MALFORMED);
    cr_assert_eq(tu_verify(ks, &pol, NULL, 0, NOW), JWT_E_MALFORMED);
}

Test(jwt, rejects_an_oversized_token_before_parsing)
{
    static char big[JWT_DEFAULT_MAX_TOKEN + 2];
    memset(big, 'A', sizeof(big));
    big[10] = '.';
    big[20] = '.';
    cr_assert_eq(tu_verify(ks, &pol, big, JWT_DEFAULT_MAX_TOKEN + 1, NOW), JWT_E_TOO_LARGE);
    pol.max_token = 100;
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "ec", NULL, CLAIMS);
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_TOO_LARGE);
}

Test(jwt, rejects_oversized_decoded_parts)
{
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "ec", NULL, CLAIMS);
    pol.max_header = 8;
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_TOO_LARGE);
    jwt_policy_init(&pol);
    pol.max_payload = 16;
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_TOO_LARGE);
}

Test(jwt, rejects_bytes_outside_the_base64url_alphabet)
{
    const char *bad[] = {"+", "/", " ", "=", "\n", "\x80"};
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "ec", NULL, CLAIMS);
    char buf[TOK_CAP];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        for (size_t at = 2; at < n; at += n / 3) {
            memcpy(buf, tok, n);
            if (buf[at] == '.')
                continue;
            buf[at] = bad[i][0];
            cr_assert_eq(tu_verify(ks, &pol, buf, n, NOW), JWT_E_MALFORMED, "byte %02x at %zu",
                         (unsigned char)bad[i][0], at);
        }
    }
}

Test(jwt, rejects_padding_on_any_segment)
{
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "ec", NULL, CLAIMS);
    char buf[TOK_CAP];
    /* padding appended to the signature */
    memcpy(buf, tok, n);
    memcpy(buf + n, "==", 2);
    cr_assert_eq(tu_verify(ks, &pol, buf, n + 2, NOW), JWT_E_MALFORMED);
    /* padding on the header: {"alg":"ES256","kid":"ec"} is 26 bytes → 35 chars + "=" */
    size_t hl = (size_t)(strchr(tok, '.') - tok);
    memcpy(buf, tok, hl);
    buf[hl] = '=';
    memcpy(buf + hl + 1, tok + hl, n - hl);
    cr_assert_eq(tu_verify(ks, &pol, buf, n + 1, NOW), JWT_E_MALFORMED);
}

Test(jwt, rejects_a_header_that_is_not_a_json_object)
{
    size_t n = tu_assemble(tok, "[\"ES256\"]", CLAIMS, "AAAA");
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_MALFORMED);
    n = tu_assemble(tok, "{\"alg\":\"ES256\",\"kid\":\"ec\"", CLAIMS, "AAAA");
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_MALFORMED);
    n = tu_assemble(tok, "{\"alg\":\"ES256\",\"alg\":\"RS256\",\"kid\":\"ec\"}", CLAIMS, "AAAA");
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_MALFORMED);
    n = tu_assemble(tok, "{\"alg\":256,\"kid\":\"ec\"}", CLAIMS, "AAAA");
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_MALFORMED);
}

Test(jwt, rejects_a_critical_header_extension)
{
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, NULL,
                       "{\"alg\":\"ES256\",\"kid\":\"ec\",\"crit\":[\"x\"],\"x\":1}", CLAIMS);
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_MALFORMED);
}

Test(jwt, rejects_a_signed_payload_that_is_not_a_json_object)
{
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "ec", NULL, "not json");
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_MALFORMED);
    n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "ec", NULL, "[1,2]");
    cr_assert_eq(tu_verify(ks, &pol, tok, n, NOW), JWT_E_MALFORMED);
}

/* ---- time claims ---- */

Test(jwt, rejects_an_expired_token_after_the_leeway)
{
    const char *c = "{\"sub\":\"a\",\"exp\":1800000000}";
    size_t n = tu_mint(tok, KEYS_ALG_ES256, ec, NULL, "ec", NULL, c);
    cr_assert_eq(tu_verify(ks, &pol, tok, n, 1800000000 + 59), JWT_OK);
    cr_assert_eq(tu_verify(ks, &pol, tok, n, 1800000000 + 60), JWT_E_EXPIRED);
    pol.leeway = 0;
    cr_assert_eq(tu_verify(ks, &pol, tok, n, 1799999999), JWT_OK);
    cr_assert_eq(tu_verify(ks, &pol, tok, n, 1800000000), JWT_E_EXPIRED);
}

Test(jwt, requires_exp_as_a_number)
{
    cr_assert_eq(verify_claims("{\"sub\":\"a\"}"), JWT_E_MISSING_CLAIM);
    cr_assert_eq(verify_claims("{\"sub\":\"a\",\"exp\":\"2000000000\"}"), JWT_E_MISSING_CLAIM);
    cr_assert_eq(verify_claims("{\"sub\":\"a\",\"exp\":2000000000.5}"), JWT_OK);
}

Test(jwt, rejects_nbf_in_the_future_beyond_the_leeway)
{
    cr_assert_eq(verify_claims("{\"sub\":\"a\",\"exp\":2000000000,\"nbf\":1800000060}"), JWT_OK);
    cr_assert_eq(verify_claims("{\"sub\":\"a\",\"exp\":2000000000,\"nbf\":1800000061}"),
                 JWT_E_NOT_YET_VALID);
    cr_assert_eq(verify_claims("{\"sub\":\"a\",\"exp\":2000000000,\"nbf\":\"x\"}"),
                 JWT_E_MALFORMED);
}

Test(jwt, rejects_iat_in_the_future_beyond_the_leeway)
{
    cr_assert_eq(verify_claims("{\"sub\":\"a\",\"exp\":2000000000,\"iat\":1800000060}"), JWT_OK);
    cr_assert_eq(verify_claims("{\"sub\":\"a\",\"exp\":2000000000,\"iat\":1800000061}"),
                 JWT_E_NOT_YET_VALID);
}

/* ---- issuer, audience, scope, identity ---- */

Test(jwt, rejects_a_wrong_or_missing_issuer_when_configured)
{
    pol.iss = "https://idp";
    cr_assert_eq(verify_claims(CLAIMS), JWT_OK);
    cr_assert_eq(verify_claims("{\"sub\":\"a\",\"exp\":2000000000,\"iss\":\"https://idp/\"}"),
                 JWT_E_BAD_ISSUER);
    cr_assert_eq(verify_claims("{\"sub\":\"a\",\"exp\":2000000000}"), JWT_E_BAD_ISSUER);
}

Test(jwt, rejects_a_wrong_or_missing_audience_when_configured)
{
    pol.aud = "sipedge";
    cr_assert_eq(verify_claims("{\"sub\":\"a\",\"exp\":2000000000,\"aud\":[\"x\",\"y\"]}"),
                 JWT_E_BAD_AUDIENCE);
    cr_assert_eq(verify_claims("{\"sub\":\"a\",\"exp\":2000000000,\"aud\":\"sip\"}"),
                 JWT_E_BAD_AUDIENCE);
    cr_assert_eq(verify_claims("{\"sub\":\"a\",\"exp\":2000000000}"), JWT_E_BAD_AUDIENCE);
}

Test(jwt, rejects_a_token_missing_a_required_scope)
{
    pol.scopes[0] = "sip:register";
    pol.scopes[1] = "admin";
    pol.n_scopes = 2;
    cr_assert_eq(verify_claims(CLAIMS), JWT_E_INSUFFICIENT_SCOPE);
    cr_assert_eq(verify_claims("{\"sub\":\"a\",\"exp\":2000000000}"), JWT_E_INSUFFICIENT_SCOPE);
    cr_assert_eq(verify_claims("{\"sub\":\"a\",\"exp\":2000000000,\"scope\":\"admin "
                               "sip:registerx\"}"),
                 JWT_E_INSUFFICIENT_SCOPE);
    cr_assert_eq(verify_claims("{\"sub\":\"a\",\"exp\":2000000000,\"scope\":\"  admin  "
                               "sip:register \"}"),
                 JWT_OK);
}

Test(jwt, rejects_a_missing_or_non_string_identity)
{
    cr_assert_eq(verify_claims("{\"exp\":2000000000}"), JWT_E_MISSING_CLAIM);
    cr_assert_eq(verify_claims("{\"sub\":42,\"exp\":2000000000}"), JWT_E_MISSING_CLAIM);
    cr_assert_eq(verify_claims("{\"sub\":\"\",\"exp\":2000000000}"), JWT_E_MISSING_CLAIM);
}

Test(jwt, rejects_an_identity_longer_than_jwt_max_user)
{
    char claims[512], user[JWT_MAX_USER + 2];
    memset(user, 'u', sizeof(user) - 1);
    user[JWT_MAX_USER] = '\0';
    snprintf(claims, sizeof(claims), "{\"sub\":\"%s\",\"exp\":2000000000}", user);
    cr_assert_eq(verify_claims(claims), JWT_OK);
    user[JWT_MAX_USER] = 'u';
    user[JWT_MAX_USER + 1] = '\0';
    snprintf(claims, sizeof(claims), "{\"sub\":\"%s\",\"exp\":2000000000}", user);
    cr_assert_eq(verify_claims(claims), JWT_E_TOO_LARGE);
}

Test(jwt, names_every_reason_distinctly)
{
    for (int i = 0; i < JWT_REASON_COUNT; i++)
        for (int j = i + 1; j < JWT_REASON_COUNT; j++)
            cr_assert_str_neq(jwt_reason_name(i), jwt_reason_name(j));
    cr_assert_str_eq(jwt_reason_name(JWT_E_DECRYPT_FAILED), "decrypt_failed");
    cr_assert_str_eq(jwt_reason_name(JWT_REASON_COUNT), "unknown");
}

/* ---- RFC 7515 appendix A ---- */

#define RFC_PAYLOAD                                                                                \
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVl" \
    "fQ"

static const char rfc_a2_token[] =
    "eyJhbGciOiJSUzI1NiJ9." RFC_PAYLOAD "."
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5"
    "jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb"
    "1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QO"
    "YEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

static const char rfc_a2_jwks[] =
    "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"rfc-a2\",\"e\":\"AQAB\",\"n\":"
    "\"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4"
    "d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rex"
    "MdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFv"
    "UK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ\"}]}";

static const char rfc_a3_token[] =
    "eyJhbGciOiJFUzI1NiJ9." RFC_PAYLOAD "."
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

static const char rfc_a3_jwks[] = "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"rfc-a3\","
                                  "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
                                  "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}";

static struct keys_set *jwks_set(const char *json)
{
    struct keys_set *s = keys_set_new();
    char err[256] = "";
    cr_assert_eq(keys_set_add_jwks(s, json, strlen(json), err, sizeof(err), NULL, 0), 1, "%s", err);
    cr_assert_eq(keys_set_finish(s), 0);
    return s;
}

static void rfc_example(const char *json, const char *token)
{
    struct keys_set *s = jwks_set(json); /* one key, no kid in the token: the default */
    struct jwt_result r;
    pol.user_claim = "iss"; /* the example has no sub */
    cr_assert_eq(jwt_verify(s, &pol, token, strlen(token), 1300819380 - 100, &r), JWT_OK);
    cr_assert_str_eq(r.user, "joe");
    cr_assert_eq(r.exp, 1300819380);
    cr_assert_eq(jwt_verify(s, &pol, token, strlen(token), 1300819380 + 60, &r), JWT_E_EXPIRED);
    char buf[1024];
    size_t n = strlen(token);
    memcpy(buf, token, n + 1);
    buf[n - 3] = buf[n - 3] == 'A' ? 'B' : 'A';
    cr_assert_eq(jwt_verify(s, &pol, buf, n, 1300819380 - 100, &r), JWT_E_BAD_SIGNATURE);
    keys_release(s);
}

Test(jwt, verifies_the_rfc_7515_a2_rs256_example)
{
    rfc_example(rfc_a2_jwks, rfc_a2_token);
}

Test(jwt, verifies_the_rfc_7515_a3_es256_example)
{
    rfc_example(rfc_a3_jwks, rfc_a3_token);
}

/* ---- the per-thread verify contexts ---- */

/* More keys than a thread keeps verify contexts for, each key set freed and rebuilt between
 * rounds (so a new key may land where a freed one was), a bad signature between good ones: every
 * answer must stay right (and ASan sees no use of a freed key). */
Test(jwt, keeps_verifying_right_across_many_rotated_keys)
{
    enum { NKEYS = 11 };
    for (int round = 0; round < 4; round++) {
        EVP_PKEY *keys[NKEYS];
        struct keys_set *set = keys_set_new();
        char kid[16];
        for (int i = 0; i < NKEYS; i++) {
            keys[i] = i % 2 ? tu_rsa() : tu_ec();
            snprintf(kid, sizeof(kid), "k%d", i);
            tu_add_pub(set, kid, keys[i]);
        }
        cr_assert_eq(keys_set_finish(set), 0);
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < NKEYS; i++) {
                enum keys_alg alg = i % 2 ? KEYS_ALG_RS256 : KEYS_ALG_ES256;
                snprintf(kid, sizeof(kid), "k%d", i);
                size_t n = tu_mint(tok, alg, keys[i], NULL, kid, NULL, CLAIMS);
                cr_assert_eq(tu_verify(set, &pol, tok, n, NOW), JWT_OK, "round %d key %d", round,
                             i);
                /* signed by another key of the same type: must fail, not poison the next */
                n = tu_mint(tok, alg, keys[(i + 2) % (NKEYS - 1)], NULL, kid, NULL, CLAIMS);
                cr_assert_eq(tu_verify(set, &pol, tok, n, NOW), JWT_E_BAD_SIGNATURE);
            }
        }
        keys_release(set);
        for (int i = 0; i < NKEYS; i++)
            EVP_PKEY_free(keys[i]);
    }
}
