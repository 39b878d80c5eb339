// SPDX-License-Identifier: MIT
// Routing of a stateful record-routing proxy (RFC 3261 §16.4, §16.6, §16.12; RFC 5658 double
// Record-Route; RFC 3327 Path with RFC 5626 flow tokens): which top Route entries are the edge's,
// where the request goes next, and the edits (Route removal, strict-route fix-up, Record-Route
// insertion) expressed over the request's own bytes. Sans IO, no allocation.
#ifndef SIPEDGE_CORE_ROUTE_H
#define SIPEDGE_CORE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/flow.h"
#include "core/sip.h"
#include "core/sip_parse.h"
#include "core/slice.h"

/** Route values one request may carry; more is ROUTE_BAD (a dialog's route set is short). */
#define ROUTE_MAX_VALUES 16
/** The URI parameter naming the UCM node in the edge's UCM-side Record-Route entry. */
#define ROUTE_NODE_PARAM "se-node"

/** One address of the edge as it appears in its Record-Route, Path and Via URIs. `host` as
 *  written in config (IPv6 with brackets); `port` 0 means the URI's default (5061 for sips: or
 *  transport=tls, else 5060). */
struct route_addr {
    struct slice host;
    uint16_t port;
};

/** What "ours" means: every client-facing and UCM-facing address, and the flow keys. Borrowed,
 *  read-only; any worker may share one. */
struct route_self {
    const struct route_addr *addrs;
    size_t n_addrs;
    const struct flow_keys *keys;
};

/** One Route (or Request-URI) entry, classified. Slices borrow the message. */
struct route_hop {
    struct slice uri_text; /* the URI without <> */
    bool ours;             /* host:port is ours, or its user is an authentic flow token and lr */
    bool has_flow;         /* the user part was looked at as a flow token: see flow_res */
    enum flow_result flow_res;
    struct flow flow; /* when flow_res == FLOW_OK */
    bool has_node;    /* ROUTE_NODE_PARAM present with a decimal value */
    uint32_t node;
};

/**
 * Classify one URI (`uri_text` without <>) against `self`. A URI that is ours by host:port with a
 * user part gets that user decoded as a flow token (`has_flow`, `flow_res`); a URI with another
 * host is ours only when it has `lr` and its user is an authentic flow token (so a token names
 * this pod even behind a name the config does not list). Returns 0 or -(enum sip_perr).
 */
int route_classify_uri(const struct route_self *self, struct slice uri_text, struct route_hop *out);

enum route_verdict {
    ROUTE_FORWARD = 0, /* send to `next_hop` (with flow / node hints); apply route_edits() */
    ROUTE_LOCAL,       /* the Request-URI is ours and no Route is left: the edge is the target */
    ROUTE_BAD,         /* a Route value or the Request-URI does not parse, or too many: 400 */
    ROUTE_FORGED,      /* one of our entries carries a forged or malformed flow token: 403 */
    /* ROUTE_VERDICT_COUNT */
    ROUTE_VERDICT_COUNT
};

/** "forward", "local", "bad", "forged"; "unknown" out of range. Static. */
const char *route_verdict_name(enum route_verdict v);

/**
 * The routing decision for one request. Slices borrow the request's buffer.
 *
 * Both of the edge's double Record-Route entries come back as Route entries in-dialog, one after
 * the other (client side with the flow, UCM side with the node): every leading entry that is ours
 * is removed (`n_ours`), and what they carried is reported. The caller picks by direction: a
 * request from a client goes to UCM node `node` (when `has_node`), one from UCM goes to the
 * client connection `flow` (when `has_flow`; its generation is the caller's check: 430).
 */
struct route_decision {
    enum route_verdict verdict;
    int perr;        /* ROUTE_BAD: -(enum sip_perr), or -SIP_PE_OUT_OF_RANGE (too many) */
    size_t n_values; /* Route values in the request */
    struct slice values[ROUTE_MAX_VALUES];
    uint16_t value_hdr[ROUTE_MAX_VALUES]; /* header index of each value */
    size_t n_ours;                        /* leading values removed as ours */
    bool strict;            /* RFC 3261 §16.4: R-URI was ours; the last Route value replaces it */
    struct slice new_ruri;  /* strict: the last Route value's URI */
    struct slice next_hop;  /* URI of the first remaining Route, or the (new) Request-URI */
    bool next_hop_is_route; /* next_hop came from a Route value (loose routing) */
    bool has_flow;          /* an authentic flow from a removed entry or the R-URI */
    struct flow flow;
    bool has_node;
    uint32_t node;
};

/**
 * Decide how `req` (scanned by sip_scan()) is routed: RFC 3261 §16.4 (strict-route fix-up when
 * the Request-URI is ours and there are Route values; removal of our own top Route values) and
 * §16.12 (the next hop is the first remaining Route value, else the Request-URI). Returns the
 * verdict (also in `out->verdict`). Reentrant, no allocation; costs one HMAC per flow token.
 */
enum route_verdict route_decide(const struct route_self *self, const struct sip_msg *req,
                                struct route_decision *out);

/** One change to the request's bytes: replace `cut` (a range of the message buffer; may be empty
 *  to insert at `cut.base`) with `insert` (any bytes, may be empty). */
struct route_edit {
    struct slice cut;
    struct slice insert;
};

/**
 * The edits that carry out `d` on `req`, in buffer order: remove the `n_ours` leading Route
 * values (a line whose values all go is removed whole, else only the values and their commas),
 * the strict-route fix-up (the last Route value removed, the Request-URI replaced), and, when
 * `rr_line` is not empty, that Record-Route line (from route_build_rr()) inserted before the
 * first Record-Route line, or at the end of the headers. Returns the number of edits or
 * -ENOSPC (a `cap` of 2 * ROUTE_MAX_VALUES + 2 always suffices).
 */
ssize_t route_edits(const struct sip_msg *req, const struct route_decision *d, struct slice rr_line,
                    struct route_edit *out, size_t cap);

/**
 * Apply edits `e[0..n_e)` (in buffer order, not overlapping) to gather list `in[0..n_in)` (from
 * sip_rewrite_request(), whose slices of original bytes point into the same buffer as the
 * edits) into `out[0..cap)`. An insertion at a slice boundary goes after the earlier slice; a
 * cut that starts there belongs to the later one.
 * Returns the number of slices, -ENOSPC, or -EINVAL when an edit's cut is not inside one input
 * slice (an edit left unapplied). Slices borrow `in`'s and the edits' bytes.
 */
ssize_t route_apply(const struct slice *in, size_t n_in, const struct route_edit *e, size_t n_e,
                    struct slice *out, size_t cap);

/** The edge's two Record-Route entries (RFC 5658 double record-routing). */
struct route_rr {
    struct route_addr client_side; /* the address clients reach the edge on (TLS) */
    struct route_addr ucm_side;    /* the address UCM reaches the edge on (TLS) */
    const struct flow_key *key;    /* mints the client-side token */
    struct flow flow;              /* the client connection of the dialog */
    uint32_t node;                 /* the UCM node of the dialog */
    bool toward_ucm;   /* the request goes client → UCM: the UCM-side entry comes first (the UAS
                          reads the set top-down, the UAC bottom-up) */
    const char *token; /* optional: `flow` already encoded under `key` (FLOW_TOKEN_LEN chars) */
};

/**
 * Write one header line "Record-Route: <sip:TOKEN@client;transport=tls;lr>,
 * <sip:ucm;transport=tls;lr;se-node=N>\r\n" (order per `toward_ucm`) into `buf[0..cap)`.
 * Returns its length, -ENOSPC, -EINVAL (a host with bytes outside a SIP host), -EIO (HMAC).
 */
ssize_t route_build_rr(const struct route_rr *rr, char *buf, size_t cap);

/**
 * Write the Path value "<sip:TOKEN@host:port;transport=tls;lr;ob>" for the REGISTER of flow
 * `f` (for struct sip_rewrite's `path`). Returns its length, -ENOSPC, -EINVAL, -EIO.
 */
ssize_t route_build_path(const struct route_addr *addr, const struct flow_key *key,
                         const struct flow *f, char *buf, size_t cap);

/** route_build_path() with the token already encoded (FLOW_TOKEN_LEN characters). */
ssize_t route_build_path_token(const struct route_addr *addr, const char *token, char *buf,
                               size_t cap);

#endif
