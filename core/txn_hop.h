// SPDX-License-Identifier: MIT
// The requests a stateful proxy makes on its own towards the next hop: the CANCEL of a pending
// INVITE (RFC 3261 §9.1) and the hop-by-hop ACK of a non-2xx final (§17.1.1.3), for the
// TXN_A_SEND_CANCEL and TXN_A_SEND_ACK actions of core/txn.h.
#ifndef SIPEDGE_CORE_TXN_HOP_H
#define SIPEDGE_CORE_TXN_HOP_H

#include <stddef.h>
#include <sys/types.h>

#include "core/sip.h"

/**
 * Build the CANCEL (`method` SIP_METHOD_CANCEL, `resp` NULL) or the ACK (SIP_METHOD_ACK, `resp`
 * the 300..699 final) of `inv`, the INVITE as the edge forwarded it (scanned: our Via on top, the
 * Route set after our edits), into `out[0..cap)`:
 *
 *     CANCEL|ACK <Request-URI of inv> SIP/2.0
 *     Via: <inv's top Via value>              (same branch: it matches the INVITE's transaction)
 *     Route: ...                              (every Route line of inv, values as written)
 *     Max-Forwards: 70
 *     From: <inv's>
 *     To: <inv's> (CANCEL) | <resp's, with its tag> (ACK)
 *     Call-ID: <inv's>
 *     CSeq: <inv's number> CANCEL|ACK
 *     Content-Length: 0
 *
 * Returns the length (no NUL), -ENOSPC, or -EINVAL: `inv` not an INVITE request or missing
 * Via/From/To/Call-ID/CSeq, `method` neither, or for an ACK `resp` not a 300..699 response with
 * the INVITE's Call-ID and CSeq (number and INVITE) and a To. Reentrant, no allocation.
 */
ssize_t txn_hop_build(const struct sip_msg *inv, enum sip_method method, const struct sip_msg *resp,
                      char *out, size_t cap);

#endif
