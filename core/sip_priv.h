// SPDX-License-Identifier: MIT
// core/ private declarations shared by the SIP scanner and its generated header-name table.
#ifndef SIPEDGE_CORE_SIP_PRIV_H
#define SIPEDGE_CORE_SIP_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "core/sip.h"

/** ASCII lowercase of every byte (other bytes unchanged; sip_hdr_table.c). */
extern const uint8_t sip__lower[256];
/** Canonical header names and their lengths by enum sip_hdr (sip_hdr_table.c, generated). */
extern const char *const sip__hdr_names[SIP_HDR_COUNT];
extern const uint8_t sip__hdr_lens[SIP_HDR_COUNT];
/** The id of the header called `name[0..len)` (compact or long form, any case), SIP_HDR_OTHER
 *  if unknown (sip_hdr_table.c, generated). `name` must hold token characters only (the scanner
 *  checked them; sip_hdr_from() checks them for other callers). */
enum sip_hdr sip__hdr_lookup(const char *name, size_t len);

#endif
