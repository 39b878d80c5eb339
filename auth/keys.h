// SPDX-License-Identifier: MIT
// Verification key sets: PEM public keys, a JWKS file, explicit HS256 secrets and the CUCM
// symmetric key, each parsed once and bound to one algorithm; swapped atomically on reload.
#ifndef SIPEDGE_AUTH_KEYS_H
#define SIPEDGE_AUTH_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

/** The one signature algorithm a key may be used with. */
enum keys_alg {
    KEYS_ALG_NONE = 0, /* never accepted; "no algorithm" */
    KEYS_ALG_RS256,
    KEYS_ALG_ES256,
    KEYS_ALG_HS256,
    /* KEYS_ALG_COUNT */
    KEYS_ALG_COUNT
};

#define KEYS_MAX_KID       255       /* bytes of a key id */
#define KEYS_MAX_KEYS      1024      /* keys in one set */
#define KEYS_MAX_FILE      (1 << 20) /* bytes of any key or JWKS file */
#define KEYS_SYM_LEN       32        /* the CUCM A128CBC-HS256 key */
#define KEYS_MAX_HS_SECRET 4096      /* bytes of an HS256 secret */

/** The JWS name of `alg` ("RS256"), "none" for KEYS_ALG_NONE; never NULL. */
const char *keys_alg_name(enum keys_alg alg);

/** The algorithm named `name` (`len` bytes, exact, case-sensitive), KEYS_ALG_NONE if unknown. */
enum keys_alg keys_alg_from_name(const char *name, size_t len);

/** One verification key. Read-only once its set is finished; lives as long as its set. */
struct keys_key {
    char kid[KEYS_MAX_KID + 1]; /* NUL-terminated; may be "" for a PEM key without kid */
    size_t kid_len;
    enum keys_alg alg;
    EVP_PKEY *pkey;        /* RS256 / ES256: the public key */
    unsigned char *secret; /* HS256: the shared secret */
    size_t secret_len;
};

struct keys_set;

/** One PEM public key file of the configuration. */
struct keys_pem_spec {
    const char *path;
    const char *kid; /* NULL or "": no kid (usable only as the default key) */
    const char *alg; /* NULL: inferred from the key type (RSA → RS256, EC P-256 → ES256) */
};

/** One HS256 secret file (raw bytes, used as they are, trailing newline NOT stripped). */
struct keys_hs_spec {
    const char *path;
    const char *kid;
};

/** Everything a key set is built from. Any part may be absent (NULL / 0). */
struct keys_config {
    const struct keys_pem_spec *pems;
    size_t n_pems;
    const char *jwks_path;                 /* RFC 7517 JWK Set */
    const struct keys_hs_spec *hs_secrets; /* HS256 only when listed here */
    size_t n_hs_secrets;
    const char *sym_key_path; /* CUCM symmetric key: 32 raw bytes, 64 hex or base64(url) */
    const char *default_kid;  /* key tried for tokens without `kid` (NULL: none, unless the
                                 set holds exactly one key) */
};

/**
 * Build a key set from `cfg`: read and parse every file. On success stores a new set with
 * reference count 1 in `*out` and returns 0. On failure returns -errno (-ENOENT, -EACCES,
 * -EINVAL for bad contents, -EFBIG, -ENOMEM), writes a message naming the file and the problem to
 * `err` (`errlen` bytes, NUL-terminated) and leaves `*out` NULL. JWKS entries of unsupported type
 * or curve, or with `use` other than "sig", are skipped; each skip is described in `warn` (may be
 * NULL; lines separated by '\n', truncated to `warnlen`). Startup / reload thread only: blocks on
 * file I/O.
 */
int keys_set_load(const struct keys_config *cfg, struct keys_set **out, char *err, size_t errlen,
                  char *warn, size_t warnlen);

/** An empty, unfinished set (reference count 1), or NULL on allocation failure. */
struct keys_set *keys_set_new(void);

/**
 * Add a public key to an unfinished set. Takes ownership of `pkey` on success (returns 0) and on
 * failure (-EINVAL: alg does not fit the key type or curve, or duplicate/oversized kid; -ENOSPC;
 * -ENOMEM). `alg` KEYS_ALG_NONE infers it from the key type. `kid` may be NULL ("").
 */
int keys_set_add_pkey(struct keys_set *set, const char *kid, EVP_PKEY *pkey, enum keys_alg alg);

/** Add a PEM public key (SubjectPublicKeyInfo or X.509 certificate) held in memory; as above. */
int keys_set_add_pem(struct keys_set *set, const char *kid, const char *pem, size_t len,
                     enum keys_alg alg);

/** Add an HS256 secret (copied). Returns 0, -EINVAL (empty, too long, duplicate kid), -ENOMEM. */
int keys_set_add_hs256(struct keys_set *set, const char *kid, const void *secret, size_t len);

/**
 * Add the keys of a JWK Set (JSON text, `len` bytes). Returns the number of keys added (>= 0) or
 * -EINVAL with a message in `err` when the JSON or a supported entry is malformed. Skipped entries
 * are described in `warn` (may be NULL).
 */
int keys_set_add_jwks(struct keys_set *set, const char *json, size_t len, char *err, size_t errlen,
                      char *warn, size_t warnlen);

/** Set the 32-byte CUCM symmetric key (copied). */
void keys_set_set_sym(struct keys_set *set, const unsigned char key[KEYS_SYM_LEN]);

/**
 * Parse a symmetric key file's contents: exactly 32 raw bytes, or (ignoring surrounding
 * whitespace) 64 hex digits, or base64 / base64url text of 32 bytes. Returns 0 or -EINVAL.
 */
int keys_parse_sym(const char *text, size_t len, unsigned char key[KEYS_SYM_LEN]);

/** Name the default key for tokens without `kid`. Returns 0 or -EINVAL (too long). */
int keys_set_set_default(struct keys_set *set, const char *kid);

/**
 * Finish `set`: sort for lookup, resolve the default key and compute the fingerprint. Returns 0,
 * -ENOENT when a named default kid is not in the set, or -ENOMEM. After this the set is read-only
 * and may be shared by threads.
 */
int keys_set_finish(struct keys_set *set);

#define KEYS_FP_LEN 32 /* bytes of a key set fingerprint (SHA-256) */

/**
 * The content fingerprint of a finished set: SHA-256 over every key in kid order (kid, alg, the
 * DER SubjectPublicKeyInfo or the HS256 secret), the default kid and the CUCM symmetric key. The
 * same key files give the same fingerprint in every process; any added, removed or changed key
 * changes it. Returns KEYS_FP_LEN bytes owned by the set, or NULL for NULL or an unfinished set.
 * Any thread holding a reference.
 */
const uint8_t *keys_set_fingerprint(const struct keys_set *set);

/** The key with id `kid` (`len` bytes), or NULL. O(log n). Any thread holding a reference. */
const struct keys_key *keys_find(const struct keys_set *set, const char *kid, size_t len);

/**
 * The key for tokens without `kid`: the configured default, or the only key of a one-key set;
 * NULL otherwise.
 */
const struct keys_key *keys_default(const struct keys_set *set);

/** The CUCM symmetric key (32 bytes), or NULL when none is configured. */
const unsigned char *keys_sym(const struct keys_set *set);

/** Number of keys in the set. */
size_t keys_count(const struct keys_set *set);

/** Key number `i` (< keys_count()), in lookup (kid) order. */
const struct keys_key *keys_at(const struct keys_set *set, size_t i);

/** Take another reference on `set` (any thread). Returns `set`. */
struct keys_set *keys_set_ref(struct keys_set *set);

/** Drop a reference; the last one frees the set and its keys. NULL is a no-op. Any thread. */
void keys_release(struct keys_set *set);

/**
 * The current key set, swapped atomically on reload. Readers take a reference with
 * keys_acquire(), use it for as long as they like (one verify, or one event-loop turn) and drop it
 * with keys_release(): a verify in flight sees the old set or the new one, never a mix, and the old
 * set is freed when its last reader lets go. acquire is a short mutex section (pointer load plus
 * reference increment); keys_store_generation() lets a worker keep its reference across turns and
 * re-acquire only when the set changed.
 */
struct keys_store;

/** A store holding `initial` (its reference is taken over; may be NULL). NULL on ENOMEM. */
struct keys_store *keys_store_new(struct keys_set *initial);

/** Free the store and drop its reference on the current set. NULL is a no-op. */
void keys_store_free(struct keys_store *store);

/**
 * Make `set` (finished; its reference is taken over) the current set, and drop the store's
 * reference on the previous one (freed once no reader holds it). Any thread.
 */
void keys_store_swap(struct keys_store *store, struct keys_set *set);

/** A new reference on the current set (NULL when the store is empty). Release with keys_release. */
struct keys_set *keys_acquire(struct keys_store *store);

/** Incremented by every swap: compare to decide whether a held set is stale (relaxed load). */
uint64_t keys_store_generation(const struct keys_store *store);

#endif
