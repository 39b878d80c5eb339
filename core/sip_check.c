// SPDX-License-Identifier: MIT
// Request checks shared by the proxy and sipedge-scan: header cardinality (RFC 3261 §7.3.1, §20).
#include "core/sip_check.h"

#include <stdint.h>
#include <string.h>

/* True when `v` holds a comma outside a quoted string (with quoted-pairs) and outside <...>. */
static bool has_top_comma(struct slice v)
{
    const char *p = v.base, *e = v.base + v.len;
    bool angle = false;
    for (; p < e; p++) {
        if (*p == '"' && !angle) {
            for (p++; p < e && *p != '"'; p++)
                if (*p == '\\' && p + 1 < e)
                    p++;
            if (p == e) /* unterminated: malformed anyway, and a comma may hide behind it */
                return memchr(v.base, ',', v.len) != NULL;
        } else if (*p == '<') {
            angle = true;
        } else if (*p == '>') {
            angle = false;
        } else if (*p == ',' && !angle) {
            return true;
        }
    }
    return false;
}

enum sip_hdr sip_check_single(const struct sip_msg *msg)
{
    uint8_t seen[SIP_HDR_COUNT] = {0};
    for (size_t i = 0; i < msg->header_count; i++) {
        const struct sip_header *h = &msg->headers[i];
        enum sip_hdr_card card = sip_hdr_card((enum sip_hdr)h->id);
        if (card == SIP_HDR_CARD_MANY)
            continue;
        if (seen[h->id]++ || (card == SIP_HDR_CARD_ONE && has_top_comma(h->value)))
            return (enum sip_hdr)h->id;
    }
    return SIP_HDR_OTHER;
}
