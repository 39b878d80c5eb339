// SPDX-License-Identifier: MIT
// libFuzzer target for auth/jwt: the input is parsed by the JSON reader (every member read back),
// verified as a raw token, and signed with a known HS256 secret as claims so that the claim checks
// after the signature are reached too. Must never crash, leak or read out of bounds.
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <openssl/hmac.h>

#include "auth/jwt.h"
#include "auth/jwt_priv.h"
#include "auth/keys.h"

static struct keys_set *ks;
static const char secret[] = "fuzz secret";

static void touch_value(const struct jwt__jval *v)
{
    char buf[8192];
    int64_t n;
    if (v->type == JWT__J_STRING) {
        ssize_t l = jwt__str(v, buf, sizeof(buf));
        assert(l == -ENOSPC || (l >= 0 && (size_t)l <= v->len));
        (void)jwt__str_eq(v, "sub", 3);
    } else if (v->type == JWT__J_NUMBER) {
        (void)jwt__num(v, &n);
    } else if (v->type == JWT__J_ARRAY) {
        size_t pos = 0, count = 0;
        struct jwt__jval el;
        while (jwt__arr_next(v, &pos, &el)) {
            assert(el.p >= v->p && el.p + el.len <= v->p + v->len);
            assert(++count <= v->len);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ks == NULL) {
        ks = keys_set_new();
        keys_set_add_hs256(ks, "k", secret, strlen(secret));
        keys_set_finish(ks);
    }
    struct jwt__obj o;
    if (jwt__obj_parse(&o, (const char *)data, size) == 0) {
        assert(o.n <= JWT__MAX_MEMBERS);
        for (size_t i = 0; i < o.n; i++) {
            assert(o.m[i].v.p >= (const char *)data &&
                   o.m[i].v.p + o.m[i].v.len <= (const char *)data + size);
            touch_value(&o.m[i].v);
        }
    }

    struct jwt_policy pol;
    jwt_policy_init(&pol);
    pol.aud = "sipedge";
    pol.scopes[0] = "sip:register";
    pol.n_scopes = 1;
    pol.profile = JWT_PROFILE_AUTO;
    struct jwt_result r;
    (void)jwt_verify(ks, &pol, (const char *)data, size, 1800000000, &r);

    /* the input as claims under a valid signature */
    static char tok[3 * 8192];
    static const char hdr[] = "{\"alg\":\"HS256\",\"kid\":\"k\"}";
    if (size > 6000)
        return 0;
    size_t t = jwt_b64url_encode(hdr, sizeof(hdr) - 1, tok);
    tok[t++] = '.';
    t += jwt_b64url_encode(data, size, tok + t);
    unsigned char mac[32];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)tok, t, mac, &ml);
    tok[t++] = '.';
    t += jwt_b64url_encode(mac, ml, tok + t);
    enum jwt_reason why = jwt_verify(ks, &pol, tok, t, 1800000000, &r);
    if (why == JWT_OK && !r.signature_only) { /* no sym key: a cucm token is signature-only */
        assert(r.user_len > 0 && r.user_len <= JWT_MAX_USER && r.user[r.user_len] == '\0');
        assert(r.scope_bits & 1);
    }
    return 0;
}
