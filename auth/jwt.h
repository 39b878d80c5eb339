// SPDX-License-Identifier: MIT
// JWT verification on pre-parsed keys: compact JWS (RS256, ES256, HS256 when configured) and the
// CUCM token profile (an RS256 JWS whose `private` claim is an A128CBC-HS256 JWE).
#ifndef SIPEDGE_AUTH_JWT_H
#define SIPEDGE_AUTH_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
#define JWT_MAX_JTI 128

/** What a successful (or signature-only) verification established. Plain data: copyable. */
struct jwt_result {
    enum jwt_reason reason;
    char user[JWT_MAX_USER + 1]; /* identity claim, NUL-terminated */
    size_t user_len;
    char jti[JWT_MAX_JTI + 1];   /* "" when the token has none */
    int64_t exp;                 /* token expiry, seconds since the epoch */
    uint64_t scope_bits;         /* bit i set: policy scope i present */
    bool signature_only;         /* cucm profile without the symmetric key: claims unchecked */
};

#endif
