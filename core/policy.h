// SPDX-License-Identifier: MIT
// Who may send what on a client connection (SIP OAuth, issue 9): a connection becomes bound to an
// identity when a token-verified REGISTER on it gets a 2xx from UCM; until then, and once that
// token has expired, a non-REGISTER request is challenged; on a bound connection the From user
// must be the bound one. Pure functions over a small per-connection record.
#ifndef SIPEDGE_CORE_POLICY_H
#define SIPEDGE_CORE_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/sip.h"
#include "core/slice.h"

#define POLICY_USER_MAX 128 /* bytes of a bound user part; a longer one is never bound */

/** The binding of one client connection (zeroed: unbound). Owned by the connection's glue. */
struct policy_binding {
    bool bound;
    uint8_t user_len;
    char user[POLICY_USER_MAX];
    int64_t exp_s;       /* the binding token's exp (seconds since the epoch) */
    uint32_t flow_tag;   /* the connection's random flow tag (core/flow.h), set by the glue */
    bool has_flow_token; /* flow_token holds this connection's flow token (minted once) */
    uint32_t open_txns;  /* its call transactions still waiting for a final answer */
    char flow_token[32]; /* FLOW_TOKEN_LEN characters, no NUL */
};

enum policy_verdict {
    POLICY_OK = 0,     /* bound, token still valid, From user is the bound user */
    POLICY_UNBOUND,    /* no 2xx to a token-verified REGISTER on this connection yet: 407 */
    POLICY_EXPIRED,    /* the binding token expired (exp + leeway passed): 407 invalid_token */
    POLICY_WRONG_USER, /* From names another user: 403 */
    POLICY_BAD_FROM,   /* From without a user part, or unparseable: 403 */
    /* POLICY_VERDICT_COUNT */
    POLICY_VERDICT_COUNT
};

/** "ok", "unbound", "expired", "wrong_user", "bad_from"; "unknown" out of range. */
const char *policy_verdict_name(enum policy_verdict v);

/** Bind `b` to `user` with token expiry `exp_s`. Returns 0 or -ENAMETOOLONG (`b` unchanged). */
int policy_bind(struct policy_binding *b, struct slice user, int64_t exp_s);

/** Unbind (a de-REGISTER that succeeded); the flow tag stays. */
void policy_unbind(struct policy_binding *b);

/**
 * May `req` (any method but REGISTER) be proxied for the connection bound as `b` at `now_s`?
 * The From URI's user part is compared byte for byte (RFC 3261 §19.1.4) with the bound user.
 */
enum policy_verdict policy_check(const struct policy_binding *b, const struct sip_msg *req,
                                 int64_t now_s, int64_t leeway_s);

/**
 * True when REGISTER `reg` removes bindings only (RFC 3261 §10.2.2): "Contact: *", or an
 * Expires of 0 with no Contact expires other than 0, or every Contact with expires=0. A REGISTER
 * without Contact (a query) is not a de-registration.
 */
bool policy_is_deregister(const struct sip_msg *reg);

#endif
