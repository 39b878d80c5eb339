// SPDX-License-Identifier: MIT
// Token minting (signing side) for the sipedge-token tool, tests and benchmarks: compact JWS with
// RS256 / ES256 / HS256 and the CUCM profile (claims sealed in an A128CBC-HS256 JWE).
#ifndef SIPEDGE_AUTH_JWT_MINT_H
#define SIPEDGE_AUTH_JWT_MINT_H

#include <stddef.h>
#include <sys/types.h>
#include <openssl/evp.h>

#include "auth/jwt.h"
#include "auth/keys.h"

/** What to sign. Borrowed pointers; nothing is kept after jwt_mint() returns. */
struct jwt_mint_spec {
    enum keys_alg alg;           /* RS256, ES256 or HS256 */
    EVP_PKEY *priv;              /* RS256 / ES256 private key */
    const unsigned char *secret; /* HS256 secret */
    size_t secret_len;
    const char *kid;              /* NULL: no kid in the header */
    const char *header_json;      /* NULL: {"alg":..,"typ":"JWT","kid":..}; else used verbatim */
    const char *claims_json;      /* the claims object, JSON text */
    enum jwt_profile profile;     /* JWT_PROFILE_CUCM: claims sealed into {"private": JWE} */
    const unsigned char *sym_key; /* JWT_PROFILE_CUCM: the 32-byte key */
};

/**
 * Sign `spec` into `out` (`cap` bytes, NUL-terminated). Returns the token length, or -EINVAL (bad
 * spec: alg without its key, cucm without sym_key), -ENOSPC, -ENOMEM, -EIO (OpenSSL failed).
 * Not for the hot path (allocates). Any thread.
 */
ssize_t jwt_mint(const struct jwt_mint_spec *spec, char *out, size_t cap);

/**
 * Sign `signing_input` (`len` bytes: "header.payload") with `spec`'s alg and key and write the
 * JWS signature (raw R||S for ES256) into `sig` (`cap` bytes). Returns its length or -errno.
 */
ssize_t jwt_mint_sign(const struct jwt_mint_spec *spec, const char *signing_input, size_t len,
                      unsigned char *sig, size_t cap);

#endif
