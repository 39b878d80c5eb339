// SPDX-License-Identifier: MIT
// Zero-copy sub-parsers for SIP header values (RFC 3261 §19.1, §20, §25; RFC 6750/8898 Bearer):
// each takes one value as a slice and fills a caller-owned struct of slices into the same bytes.
#ifndef SIPEDGE_CORE_SIP_PARSE_H
#define SIPEDGE_CORE_SIP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/slice.h"
#include "core/sip.h"

/* ---- results --------------------------------------------------------------------------------
 * Every sip_parse_*() returns 0 on success or -(enum sip_perr). The credential results are named
 * SIP_CRED_* because callers branch on them (407 vs. 400), not only log them. */

/* X(name, short name for logs and metrics, reason phrase for a 400 or a log line) */
#define SIP_PARSE_ERRORS(X)                                                                        \
    X(SIP_PE_OK, "ok", "OK")                                                                       \
    X(SIP_PE_EMPTY, "empty", "Empty Value")                                                        \
    X(SIP_PE_BAD_CHAR, "bad_char", "Invalid Character")                                            \
    X(SIP_PE_BAD_QUOTE, "bad_quote", "Bad Quoted String")                                          \
    X(SIP_PE_BAD_PARAM, "bad_param", "Bad Parameter")                                              \
    X(SIP_PE_BAD_PROTOCOL, "bad_protocol", "Bad Via Protocol")                                     \
    X(SIP_PE_BAD_TRANSPORT, "bad_transport", "Bad Transport")                                      \
    X(SIP_PE_BAD_HOST, "bad_host", "Bad Host")                                                     \
    X(SIP_PE_BAD_PORT, "bad_port", "Bad Port")                                                     \
    X(SIP_PE_BAD_URI, "bad_uri", "Bad URI")                                                        \
    X(SIP_PE_BAD_SCHEME, "bad_scheme", "Bad URI Scheme")                                           \
    X(SIP_PE_BAD_NAME_ADDR, "bad_name_addr", "Bad Name-Addr")                                      \
    X(SIP_PE_BAD_NUMBER, "bad_number", "Bad Number")                                               \
    X(SIP_PE_OUT_OF_RANGE, "out_of_range", "Number Out Of Range")                                  \
    X(SIP_PE_BAD_METHOD, "bad_method", "Bad Method")                                               \
    X(SIP_PE_BAD_CRED, "bad_cred", "Bad Credentials")                                              \
    X(SIP_CRED_NOT_BEARER, "cred_not_bearer", "Credentials Not Bearer")                            \
    X(SIP_CRED_REALM_MISMATCH, "cred_realm_mismatch", "Credentials Realm Mismatch")                \
    X(SIP_CRED_NONE, "cred_none", "No Credentials")                                                \
    X(SIP_CRED_CONFLICT, "cred_conflict", "Conflicting Bearer Credentials")

enum sip_perr {
#define SIP_PERR_ENUM(n, s, r) n,
    SIP_PARSE_ERRORS(SIP_PERR_ENUM)
#undef SIP_PERR_ENUM
    /* SIP_PE_COUNT */
    SIP_PE_COUNT
};

/** Reason phrase for `e` ("Bad Port"); accepts e or -e; never NULL ("Unknown" if out of range). */
const char *sip_perr_reason(int e);
/** Lower-case name of `e` without its prefix ("bad_port", "cred_not_bearer"); accepts e or -e;
 *  never NULL. */
const char *sip_perr_name(int e);

/* ---- generic ;name=value parameters ------------------------------------------------------ */

/** Which grammar a parameter list follows: header params (Via, From/To/Contact: token names,
 *  token/host/quoted-string values, LWS around ';' and '=') or URI params (RFC 3261 paramchar,
 *  escapes left as-is, no quotes, no LWS). */
enum sip_param_mode {
    SIP_PARAM_HEADER = 0,
    SIP_PARAM_URI,
    /* SIP_PARAM_COUNT */
    SIP_PARAM_COUNT
};

/** One parameter. `value` is empty (base NULL) when there was no '='; for a quoted value it
 *  covers the bytes inside the quotes with quoted-pairs left as written. Borrows the input. */
struct sip_param {
    struct slice name;
    struct slice value;
    bool has_value;
    bool quoted;
};

/** Iterator state; fill with sip_params_begin(). */
struct sip_param_iter {
    const char *p;
    const char *end;
    enum sip_param_mode mode;
};

/** Start iterating `s`, which is empty or starts with ';' (LWS before it allowed in header mode)
 *  and runs to the end of the parameter list (the caller cut off anything after it). */
void sip_params_begin(struct sip_param_iter *it, struct slice s, enum sip_param_mode mode);
/**
 * Next parameter into `out`. Returns 1 with `out` filled, 0 at the end, or -(enum sip_perr) on a
 * syntax error (SIP_PE_BAD_PARAM, SIP_PE_BAD_QUOTE, SIP_PE_BAD_CHAR); after an error or the end
 * further calls return 0. Names compare case-insensitively: use sip_param_is().
 */
int sip_params_next(struct sip_param_iter *it, struct sip_param *out);
/** Validate a whole parameter list: 0 or -(enum sip_perr). */
int sip_params_check(struct slice s, enum sip_param_mode mode);
/** True when `p`'s name is `name` (ASCII case-insensitive). */
static inline bool sip_param_is(const struct sip_param *p, struct slice name)
{
    return slice_eqi(p->name, name);
}

/* ---- hosts ----------------------------------------------------------------------------- */

enum sip_host_kind {
    SIP_HOST_NAME = 0, /* hostname (RFC 3261 hostname, lenient on label rules) */
    SIP_HOST_IPV4,
    SIP_HOST_IPV6, /* IPv6reference: `host` includes the brackets */
    /* SIP_HOST_COUNT */
    SIP_HOST_COUNT
};

/* ---- SIP/SIPS URI (RFC 3261 §19.1) -------------------------------------------------------- */

enum sip_uri_scheme {
    SIP_URI_SIP = 0,
    SIP_URI_SIPS,
    SIP_URI_TEL,   /* tel: (RFC 3966): `user` is the number, `params` its ;params; no host */
    SIP_URI_OTHER, /* another absoluteURI scheme: only `scheme` and `opaque` are set */
    /* SIP_URI_COUNT */
    SIP_URI_COUNT
};

/**
 * A parsed URI. All slices borrow the input. `user` keeps %HH escapes as written. A password is
 * reported (`has_password`, `password`), never hidden: the caller decides (the edge rejects it).
 * `params` starts at the first ';' (iterate with SIP_PARAM_URI); `headers` follows the '?'
 * without it. `transport`, `maddr`, `user_param` and `lr` are the common params pulled out while
 * validating.
 */
struct sip_uri {
    enum sip_uri_scheme kind;
    struct slice scheme; /* "sip", "SIPS", "tel" as written */
    struct slice user;
    struct slice password;
    bool has_user;
    bool has_password;
    struct slice host; /* IPv6 with brackets */
    enum sip_host_kind host_kind;
    uint16_t port; /* 0 when absent */
    bool has_port;
    struct slice params;
    struct slice headers;
    struct slice transport;
    struct slice maddr;
    struct slice user_param;
    bool lr;
    struct slice opaque; /* SIP_URI_OTHER and SIP_URI_TEL: everything after "scheme:" */
};

/**
 * Parse `s` (the whole URI, no surrounding LWS or <>) into `out`.
 * Returns 0, or -SIP_PE_EMPTY, -SIP_PE_BAD_SCHEME (no/invalid scheme), -SIP_PE_BAD_URI (bad user,
 * password, headers or stray bytes), -SIP_PE_BAD_HOST, -SIP_PE_BAD_PORT (not 1..65535),
 * -SIP_PE_BAD_PARAM. Reentrant, no allocation.
 */
int sip_parse_uri(struct slice s, struct sip_uri *out);

/* ---- name-addr / addr-spec (From, To, Contact, Route, Path...) ------------------------------ */

/**
 * One From/To/Contact value. `display` is the display name without quotes (quoted-pairs as
 * written, `display_quoted` set) or the token words trimmed; empty when absent. `uri_text` is
 * the URI between <> (or the bare addr-spec up to the first ';'), `uri` its parse. `params`
 * starts at the first ';' after the URI (iterate with SIP_PARAM_HEADER); `tag`, `expires`, `q`
 * are pulled out (value bytes; quotes stripped). `star` is the Contact "*" (nothing else set).
 */
struct sip_name_addr {
    bool star;
    bool angle; /* written as name-addr (with <>) */
    bool display_quoted;
    bool has_tag;
    struct slice display;
    struct slice uri_text;
    struct sip_uri uri;
    struct slice params;
    struct slice tag;
    struct slice expires;
    struct slice q;
};

/**
 * Parse one value `s` (one comma-separated element, trimmed or not) into `out`.
 * Returns 0, -SIP_PE_EMPTY, -SIP_PE_BAD_NAME_ADDR (unbalanced <>, bad display name, stray
 * bytes), -SIP_PE_BAD_QUOTE, or the URI's / params' error.
 */
int sip_parse_name_addr(struct slice s, struct sip_name_addr *out);

/* ---- Via (RFC 3261 §20.42, RFC 3581 rport) ------------------------------------------------ */

enum sip_transport {
    SIP_TRANSPORT_OTHER = 0, /* a valid token we do not know */
    SIP_TRANSPORT_UDP,
    SIP_TRANSPORT_TCP,
    SIP_TRANSPORT_TLS,
    SIP_TRANSPORT_SCTP,
    SIP_TRANSPORT_WS,
    SIP_TRANSPORT_WSS,
    /* SIP_TRANSPORT_COUNT */
    SIP_TRANSPORT_COUNT
};

/** The transport named by `s` (ASCII case-insensitive), SIP_TRANSPORT_OTHER if unknown. */
enum sip_transport sip_transport_from(struct slice s);

/**
 * One Via value. `params` starts at the first ';' (iterate with SIP_PARAM_HEADER to see the
 * others); the known ones are pulled out: `branch`, `received` (IPv6 as written, brackets or
 * not), `maddr`, `rport` (`has_rport`; `rport_port` 0 when written without a value), `ttl`.
 */
struct sip_via {
    struct slice protocol; /* "SIP" */
    struct slice version;  /* "2.0" */
    struct slice transport_text;
    enum sip_transport transport;
    struct slice host; /* IPv6 with brackets */
    enum sip_host_kind host_kind;
    uint16_t port; /* 0 when absent */
    struct slice params;
    struct slice branch;
    struct slice received;
    struct slice maddr;
    bool has_rport;
    uint16_t rport_port;
    bool has_ttl;
    uint8_t ttl;
};

/**
 * Parse one Via value `s` (not a comma list) into `out`.
 * Returns 0, -SIP_PE_EMPTY, -SIP_PE_BAD_PROTOCOL, -SIP_PE_BAD_TRANSPORT, -SIP_PE_BAD_HOST,
 * -SIP_PE_BAD_PORT, -SIP_PE_BAD_PARAM (incl. rport/ttl out of range), -SIP_PE_BAD_QUOTE.
 */
int sip_parse_via(struct slice s, struct sip_via *out);

/* ---- numbers ------------------------------------------------------------------------------ */

/** CSeq: 32-bit sequence number and method token (`method` from sip_method_from(), so an
 *  unknown token is SIP_METHOD_UNKNOWN with its text in `method_text`). */
struct sip_cseq {
    uint32_t seq;
    struct slice method_text;
    enum sip_method method;
};

/** Parse a CSeq value. Returns 0, -SIP_PE_EMPTY, -SIP_PE_BAD_NUMBER, -SIP_PE_OUT_OF_RANGE
 *  (> 2^32-1), -SIP_PE_BAD_METHOD (missing or not a token). */
int sip_parse_cseq(struct slice s, struct sip_cseq *out);
/** Parse a Max-Forwards value into `out` (0..255). Returns 0, -SIP_PE_EMPTY,
 *  -SIP_PE_BAD_NUMBER, -SIP_PE_OUT_OF_RANGE. */
int sip_parse_max_forwards(struct slice s, uint8_t *out);
/** Parse an Expires value (delta-seconds) into `out` (0..2^32-1). Returns 0, -SIP_PE_EMPTY,
 *  -SIP_PE_BAD_NUMBER, -SIP_PE_OUT_OF_RANGE. */
int sip_parse_expires(struct slice s, uint32_t *out);

/* ---- credentials (Proxy-Authorization / Authorization) ------------------------------------ */

/**
 * One credentials value. `scheme` as written (compared case-insensitively). For Bearer, `token`
 * is the token68 (`Bearer <token68>`, RFC 6750/8898) or the value of the `token` auth-param
 * (`Bearer token="<jwt>"`, Cisco), quotes stripped; `realm` is set when a realm auth-param is
 * present (`has_realm`). `params` holds the auth-param list (empty for token68), comma-separated.
 */
struct sip_cred {
    struct slice scheme;
    bool token68;
    bool has_realm;
    struct slice token;
    struct slice realm;
    struct slice params;
    size_t header_index; /* sip_find_bearer(): index in msg->headers */
};

/**
 * Parse one credentials value `s`. Returns 0 for Bearer with a token, -SIP_CRED_NOT_BEARER
 * for any other well-formed scheme (Digest...; `scheme` set), -SIP_PE_EMPTY, or -SIP_PE_BAD_CRED
 * (malformed, Bearer without a token or with two). Never logs or copies the token.
 */
int sip_parse_cred(struct slice s, struct sip_cred *out);

/**
 * Find the Bearer credentials of `msg`: every Proxy-Authorization header first, then every
 * Authorization header, in order. The first Bearer whose realm is absent or equal to `realm`
 * (byte-equal) wins. Returns 0 with `out` set (`out->header_index` names the header);
 * -SIP_CRED_CONFLICT when another such Bearer carries a different token (which one a registrar
 * would read is unknown, so the request must be refused: one identity per request); else the
 * best failure: -SIP_CRED_REALM_MISMATCH (a Bearer for another realm), -SIP_PE_BAD_CRED (a
 * malformed Bearer), -SIP_CRED_NOT_BEARER (only other schemes), -SIP_CRED_NONE (no header).
 * `out` borrows msg's buffer. Reads only msg->headers.
 */
int sip_find_bearer(const struct sip_msg *msg, struct slice realm, struct sip_cred *out);

#endif
