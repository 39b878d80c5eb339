// SPDX-License-Identifier: MIT
// The checks the edge makes on a request from a client before it acts on it (RFC 3261 §8.2,
// §16.3), in one place: the proxy answers by them and sipedge-scan reports them.
#ifndef SIPEDGE_CORE_SIP_CHECK_H
#define SIPEDGE_CORE_SIP_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "core/sip.h"
#include "core/slice.h"

/**
 * The first header of `msg` that appears more often than RFC 3261 allows (the cardinality table
 * sip_hdr_card(), generated from SINGLE in scripts/gen-sip-headers.py): a second line of a
 * SIP_HDR_CARD_ONE or SIP_HDR_CARD_ONCE header, or a SIP_HDR_CARD_ONE value holding a comma
 * outside "..." and <...> (a second value on one line: "To: <sip:a@x>, <sip:b@x>").
 * Returns its id, or SIP_HDR_OTHER when every header is within bounds. Reads msg->headers only.
 */
enum sip_hdr sip_check_single(const struct sip_msg *msg);

#endif
