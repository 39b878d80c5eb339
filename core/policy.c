// SPDX-License-Identifier: MIT
// Connection binding for SIP OAuth (core/policy.h).
#include "core/policy.h"

#include <errno.h>
#include <string.h>

#include "core/sip_parse.h"

const char *policy_verdict_name(enum policy_verdict v)
{
    static const char *const names[POLICY_VERDICT_COUNT] = {"ok", "unbound", "expired",
                                                            "wrong_user", "bad_from"};
    return (unsigned)v < POLICY_VERDICT_COUNT ? names[v] : "unknown";
}

int policy_bind(struct policy_binding *b, struct slice user, int64_t exp_s)
{
    if (user.len == 0 || user.len > POLICY_USER_MAX)
        return -ENAMETOOLONG;
    memcpy(b->user, user.base, user.len);
    b->user_len = (uint8_t)user.len;
    b->exp_s = exp_s;
    b->bound = true;
    return 0;
}

void policy_unbind(struct policy_binding *b)
{
    b->bound = false;
    b->user_len = 0;
    b->exp_s = 0; /* the flow tag, token and open count stay: they are the connection's */
}

enum policy_verdict policy_check(const struct policy_binding *b, const struct sip_msg *req,
                                 int64_t now_s, int64_t leeway_s)
{
    if (b == NULL || !b->bound)
        return POLICY_UNBOUND;
    if (now_s > b->exp_s + leeway_s)
        return POLICY_EXPIRED;
    const struct sip_header *from = sip_first(req, SIP_HDR_FROM);
    struct sip_name_addr na;
    if (from == NULL || sip_parse_name_addr(from->value, &na) < 0 || !na.uri.has_user)
        return POLICY_BAD_FROM;
    if (!slice_eq(na.uri.user, slice_make(b->user, b->user_len)))
        return POLICY_WRONG_USER;
    return POLICY_OK;
}

/* An expires value of 0 ("0", "00"...). */
static bool is_zero(struct slice s)
{
    uint32_t v;
    return s.len > 0 && sip_parse_expires(s, &v) == 0 && v == 0;
}

bool policy_is_deregister(const struct sip_msg *reg)
{
    const struct sip_header *exp = sip_first(reg, SIP_HDR_EXPIRES);
    bool expires0 = exp != NULL && is_zero(exp->value);
    struct sip_value_iter it;
    struct slice v;
    size_t contacts = 0, zero = 0;
    sip_values_begin(&it, reg, SIP_HDR_CONTACT);
    while (sip_values_next(&it, &v)) {
        struct sip_name_addr na;
        if (sip_parse_name_addr(v, &na) < 0)
            return false; /* UCM answers it; the binding stays as it is */
        if (na.star)
            return true;
        contacts++;
        if (na.expires.len > 0 ? is_zero(na.expires) : expires0)
            zero++;
    }
    return contacts > 0 && zero == contacts;
}
