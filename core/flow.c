// SPDX-License-Identifier: MIT
// Flow tokens: worker, slot and generation of a client connection, authenticated with a
// truncated HMAC-SHA256 under the pod's secret and written in base64url (see core/flow.h).
#include "core/flow.h"
#include "auth/jwt.h" /* jwt_b64url_*: the one base64url of the project */

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define FLOW_BODY_LEN 11u /* version, worker, slot, gen */

_Static_assert(FLOW_RAW_LEN % 3 == 0, "the token is base64 without padding");
_Static_assert(FLOW_TOKEN_LEN == FLOW_RAW_LEN / 3 * 4, "FLOW_TOKEN_LEN");

const char *flow_result_name(enum flow_result r)
{
    switch (r) {
    case FLOW_OK:
        return "ok";
    case FLOW_FORGED:
        return "forged";
    case FLOW_MALFORMED:
        return "malformed";
    default:
        return "unknown";
    }
}

int flow_keys_init(struct flow_keys *keys)
{
    struct flow_key k;

    if (RAND_bytes(k.secret, sizeof(k.secret)) != 1)
        return -EIO;
    memset(keys, 0, sizeof(*keys));
    keys->cur = k;
    OPENSSL_cleanse(&k, sizeof(k));
    return 0;
}

int flow_keys_rotate(struct flow_keys *keys)
{
    struct flow_key k;

    if (RAND_bytes(k.secret, sizeof(k.secret)) != 1)
        return -EIO;
    keys->prev = keys->cur;
    keys->has_prev = true;
    keys->cur = k;
    OPENSSL_cleanse(&k, sizeof(k));
    return 0;
}

/* mac = HMAC-SHA256(key, body)[0..FLOW_MAC_LEN); false when OpenSSL fails. */
static bool mac_of(const struct flow_key *key, const uint8_t *body, uint8_t *mac)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;

    if (HMAC(EVP_sha256(), key->secret, (int)sizeof(key->secret), body, FLOW_BODY_LEN, md,
             &md_len) == NULL ||
        md_len < FLOW_MAC_LEN)
        return false;
    memcpy(mac, md, FLOW_MAC_LEN);
    return true;
}

static void put_be(uint8_t *p, uint32_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static uint32_t get_be(const uint8_t *p, unsigned n)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

ssize_t flow_encode(const struct flow_key *key, const struct flow *f, char *buf, size_t cap)
{
    uint8_t raw[FLOW_RAW_LEN];

    if (cap < FLOW_TOKEN_LEN)
        return -ENOSPC;
    raw[0] = FLOW_VERSION;
    put_be(raw + 1, f->worker, 2);
    put_be(raw + 3, f->slot, 4);
    put_be(raw + 7, f->gen, 4);
    if (!mac_of(key, raw, raw + FLOW_BODY_LEN))
        return -EIO;
    char tok[FLOW_TOKEN_LEN + 1]; /* jwt_b64url_encode() adds a NUL; `buf` need not have room */
    jwt_b64url_encode(raw, FLOW_RAW_LEN, tok);
    memcpy(buf, tok, FLOW_TOKEN_LEN);
    return FLOW_TOKEN_LEN;
}

static bool authentic(const struct flow_key *key, const uint8_t *raw)
{
    uint8_t mac[FLOW_MAC_LEN];

    if (!mac_of(key, raw, mac))
        return false;
    return CRYPTO_memcmp(mac, raw + FLOW_BODY_LEN, FLOW_MAC_LEN) == 0;
}

enum flow_result flow_decode(const struct flow_keys *keys, struct slice s, struct flow *out)
{
    uint8_t raw[FLOW_RAW_LEN];

    if (s.len != FLOW_TOKEN_LEN || s.base == NULL)
        return FLOW_MALFORMED;
    if (jwt_b64url_decode(s.base, s.len, raw, sizeof(raw)) != (ssize_t)FLOW_RAW_LEN)
        return FLOW_MALFORMED;
    /* Both keys are tried whatever the first says, so timing does not tell which one matched. */
    bool ok_cur = authentic(&keys->cur, raw);
    bool ok_prev = keys->has_prev && authentic(&keys->prev, raw);
    if (!(ok_cur || ok_prev) || raw[0] != FLOW_VERSION)
        return FLOW_FORGED;
    out->worker = (uint16_t)get_be(raw + 1, 2);
    out->slot = get_be(raw + 3, 4);
    out->gen = get_be(raw + 7, 4);
    return FLOW_OK;
}
