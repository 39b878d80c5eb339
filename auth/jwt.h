// SPDX-License-Identifier: MIT
// JWT verification on pre-parsed keys: compact JWS (RS256, ES256, HS256 when configured) and the
// CUCM token profile (an RS256 JWS whose `private` claim is an A128CBC-HS256 JWE).
#ifndef SIPEDGE_AUTH_JWT_H
#define SIPEDGE_AUTH_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "auth/keys.h"

/* X(enum name, reason code as logged and counted) */
#define JWT_REASONS(X)                                                                             \
    X(JWT_OK, "ok")                                                                                \
    X(JWT_E_MALFORMED, "malformed")                                                                \
    X(JWT_E_BAD_SIGNATURE, "bad_signature")                                                        \
    X(JWT_E_UNKNOWN_KID, "unknown_kid")                                                            \
    X(JWT_E_ALG_NOT_ALLOWED, "alg_not_allowed")                                                    \
    X(JWT_E_EXPIRED, "expired")                                                                    \
    X(JWT_E_NOT_YET_VALID, "not_yet_valid")                                                        \
    X(JWT_E_BAD_ISSUER, "bad_issuer")                                                              \
    X(JWT_E_BAD_AUDIENCE, "bad_audience")                                                          \
    X(JWT_E_MISSING_CLAIM, "missing_claim")                                                        \
    X(JWT_E_INSUFFICIENT_SCOPE, "insufficient_scope")                                              \
    X(JWT_E_REVOKED, "revoked")                                                                    \
    X(JWT_E_TOO_LARGE, "too_large")                                                                \
    X(JWT_E_DECRYPT_FAILED, "decrypt_failed")

enum jwt_reason {
#define JWT_REASON_ENUM(n, s) n,
    JWT_REASONS(JWT_REASON_ENUM)
#undef JWT_REASON_ENUM
    /* JWT_REASON_COUNT */
    JWT_REASON_COUNT
};

/** The reason code string of `r` ("bad_signature"); never NULL. */
const char *jwt_reason_name(enum jwt_reason r);

#define JWT_MAX_USER 128
#define JWT_MAX_JTI  128

/** What a successful (or signature-only) verification established. Plain data: copyable. */
struct jwt_result {
    enum jwt_reason reason;
    char user[JWT_MAX_USER + 1]; /* identity claim, NUL-terminated */
    size_t user_len;
    char jti[JWT_MAX_JTI + 1]; /* "" when the token has none */
    int64_t exp;               /* token expiry, seconds since the epoch */
    uint64_t scope_bits;       /* bit i set: policy scope i present */
    bool signature_only;       /* cucm profile without the symmetric key: claims unchecked */
};

/** Which token shape jwt_verify() expects. */
enum jwt_profile {
    JWT_PROFILE_GENERIC = 0, /* signed JWT whose claims are readable */
    JWT_PROFILE_CUCM,        /* RS256 JWS whose `private` claim is an A128CBC-HS256 JWE */
    JWT_PROFILE_AUTO, /* cucm when the payload holds a string `private` claim, else generic */
    /* JWT_PROFILE_COUNT */
    JWT_PROFILE_COUNT
};

#define JWT_MAX_SCOPES          16          /* required scopes in a policy (bits of scope_bits) */
#define JWT_MAX_TOKEN_CAP       (64 * 1024) /* hard cap on max_token, whatever the policy says */
#define JWT_DEFAULT_MAX_TOKEN   8192
#define JWT_DEFAULT_MAX_HEADER  1024 /* decoded header bytes */
#define JWT_DEFAULT_MAX_PAYLOAD 6144 /* decoded payload bytes (also the JWE plaintext bound) */
#define JWT_DEFAULT_LEEWAY      60

/**
 * What a token must satisfy. Strings are borrowed (NUL-terminated) and must outlive every
 * jwt_verify() call that uses the policy; a policy is read-only during verification, so one policy
 * may be shared by all threads. Initialise with jwt_policy_init() and override fields.
 */
struct jwt_policy {
    enum jwt_profile profile;
    int64_t leeway;  /* seconds of clock skew tolerated on exp / nbf / iat */
    const char *iss; /* NULL: not checked; else the `iss` claim must equal it */
    const char *aud; /* NULL: not checked; else `aud` (string or array) must hold it */
    const char *scopes[JWT_MAX_SCOPES]; /* all required; `scope` as "a b c" or ["a","b"] */
    size_t n_scopes;
    const char *user_claim;  /* identity claim (default "sub") */
    const char *exp_claim;   /* expiry claim (default "exp"); e.g. "expiry" for CUCM tokens */
    const char *scope_claim; /* scope claim (default "scope") */
    size_t max_token;        /* bytes of the compact token (default 8 KiB, capped at 64 KiB) */
    size_t max_header;       /* decoded JOSE header bytes (default 1 KiB) */
    size_t max_payload;      /* decoded payload / JWE plaintext bytes (default 6 KiB) */
};

/** Fill `pol` with the defaults: generic profile, leeway 60 s, nothing required but exp/sub. */
void jwt_policy_init(struct jwt_policy *pol);

/**
 * Verify the compact token `token` (`len` bytes, need not be NUL-terminated) against the keys of
 * `ks` and the policy `pol` at time `now` (seconds since the epoch). Returns the reason (also
 * stored in `out->reason`): JWT_OK when the signature and every claim check out (or, cucm profile
 * without the symmetric key, when the signature checks out: then `out->signature_only` is true and
 * `out->exp` is the outer `exp`, or 0 if there is none: the caller must cap its cache TTL).
 * On JWT_OK `out` holds the identity, jti, exp and scope bits; on failure its contents other than
 * `reason` are unspecified. Rejects (each a distinct reason): malformed compact form, base64url
 * with padding or foreign bytes, bad JSON, `crit` (malformed); `alg` none / unknown / not the key's
 * (alg_not_allowed); unknown `kid` or no `kid` without a default key (unknown_kid); bad signature,
 * including a DER-encoded ES256 signature (bad_signature); exp missing or not a number, identity
 * missing or not a string (missing_claim); exp past (expired); nbf or iat in the future beyond the
 * leeway (not_yet_valid); iss / aud mismatch or absence when configured; a required scope absent
 * (insufficient_scope); token, part or identity over its bound (too_large); a JWE whose tag does
 * not check out or whose padding is wrong (decrypt_failed). Never allocates on its own; jansson
 * allocates while parsing. Thread-safe: any thread holding a reference on `ks`.
 */
enum jwt_reason jwt_verify(const struct keys_set *ks, const struct jwt_policy *pol,
                           const char *token, size_t len, int64_t now, struct jwt_result *out);

/**
 * The `jti` claim of a compact JWS's payload, read WITHOUT checking anything: for naming a Redis
 * revocation key before the signature is checked (auth/auth.c looks it up in the same round trip
 * as the cache entry and uses the answer only when the verified jti is the same string). Copies
 * at most JWT_MAX_JTI bytes + NUL into `out`. Returns the length, 0 when there is none (or it is
 * too long, not a string, or the token is not a 3-part JWS with a JSON object payload).
 */
size_t jwt_peek_jti(const char *token, size_t len, char out[JWT_MAX_JTI + 1]);

/* ---- encoding and A128CBC-HS256 helpers (shared with the token tool and the tests) ---- */

/** Bytes needed to base64url-encode `n` bytes without padding (no NUL). */
#define JWT_B64URL_LEN(n) (((n) / 3) * 4 + (((n) % 3) ? ((n) % 3) + 1 : 0))

/**
 * Decode unpadded base64url `in` (`len` bytes) into `out` (`cap` bytes). Returns the decoded
 * length, or -EINVAL (padding, a byte outside the alphabet, an impossible length, non-zero trailing
 * bits), or -ENOSPC (does not fit).
 */
ssize_t jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap);

/** Encode `n` bytes as unpadded base64url into `out` (JWT_B64URL_LEN(n) + 1 bytes, NUL added).
 * Returns the encoded length. */
size_t jwt_b64url_encode(const void *in, size_t n, char *out);

#define JWT_A128CBC_HS256_KEY 32
#define JWT_A128CBC_HS256_IV  16
#define JWT_A128CBC_HS256_TAG 16

/**
 * RFC 7518 5.2.2.1 with AES-128-CBC and HMAC-SHA-256 (5.2.3): encrypt `pt` (`n` bytes) with PKCS#7
 * padding into `ct` (capacity `cap` >= n/16*16 + 16), MAC over `aad` || `iv` || ct || AL and store
 * the first 16 bytes in `tag`. Returns the ciphertext length or -ENOSPC / -EIO.
 */
ssize_t jwt_a128cbc_hs256_encrypt(const unsigned char key[JWT_A128CBC_HS256_KEY],
                                  const unsigned char iv[JWT_A128CBC_HS256_IV], const void *aad,
                                  size_t aad_len, const void *pt, size_t n, unsigned char *ct,
                                  size_t cap, unsigned char tag[JWT_A128CBC_HS256_TAG]);

/**
 * The inverse: check `tag` in constant time over `aad` || `iv` || ct || AL first, and only then
 * decrypt `ct` (`n` bytes, a multiple of 16) into `pt` (capacity `cap` >= n) and strip the
 * padding. Returns the plaintext length, -EBADMSG (tag or padding wrong), -EINVAL (length),
 * -ENOSPC.
 */
ssize_t jwt_a128cbc_hs256_decrypt(const unsigned char key[JWT_A128CBC_HS256_KEY],
                                  const unsigned char iv[JWT_A128CBC_HS256_IV], const void *aad,
                                  size_t aad_len, const unsigned char *ct, size_t n,
                                  const unsigned char tag[JWT_A128CBC_HS256_TAG], unsigned char *pt,
                                  size_t cap);

/**
 * Build a compact JWE {"alg":"dir","enc":"A128CBC-HS256"} of `pt` (`n` bytes) with a random IV
 * into `out` (`cap` bytes, NUL-terminated). Returns the length, -ENOSPC or -EIO. Tools and tests.
 */
ssize_t jwt_jwe_seal(const unsigned char key[JWT_A128CBC_HS256_KEY], const void *pt, size_t n,
                     char *out, size_t cap);

/**
 * Open a compact JWE `jwe` (`len` bytes; alg dir, enc A128CBC-HS256, empty encrypted key, 16-byte
 * IV and tag) into `pt` (`cap` bytes). Returns the plaintext length or a negative jwt_reason:
 * -JWT_E_MALFORMED, -JWT_E_ALG_NOT_ALLOWED (other alg / enc, zip), -JWT_E_TOO_LARGE,
 * -JWT_E_DECRYPT_FAILED (tag or padding).
 */
ssize_t jwt_jwe_open(const unsigned char key[JWT_A128CBC_HS256_KEY], const char *jwe, size_t len,
                     unsigned char *pt, size_t cap);

#endif
