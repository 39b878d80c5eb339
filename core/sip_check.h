// SPDX-License-Identifier: MIT
// The checks the edge makes on a request from a client before it acts on it (RFC 3261 §8.2,
// §16.3), in one place: the proxy answers by them and sipedge-scan reports them.
#ifndef SIPEDGE_CORE_SIP_CHECK_H
#define SIPEDGE_CORE_SIP_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "core/sip.h"
#include "core/sip_parse.h"
#include "core/slice.h"

/**
 * The first header of `msg` that appears more often than RFC 3261 allows (the cardinality table
 * sip_hdr_card(), generated from SINGLE in scripts/gen-sip-headers.py): a second line of a
 * SIP_HDR_CARD_ONE or SIP_HDR_CARD_ONCE header, or a SIP_HDR_CARD_ONE value holding a comma
 * outside "..." and <...> (a second value on one line: "To: <sip:a@x>, <sip:b@x>").
 * Returns its id, or SIP_HDR_OTHER when every header is within bounds. Reads msg->headers only.
 */
enum sip_hdr sip_check_single(const struct sip_msg *msg);

/** What the edge does with a request (or with bytes sip_scan() rejected). */
enum sip_check_action {
    SIP_CHECK_ANSWER = 0, /* the edge answers `status` `reason` with `extra` lines */
    SIP_CHECK_CHALLENGE,  /* 407 with the Bearer challenge (`error`: NULL or "invalid_token") */
    SIP_CHECK_AUTH,       /* a REGISTER with Bearer credentials: check the token, then forward */
    SIP_CHECK_DROP,       /* no answer and nothing forwarded (an ACK; a response) */
    SIP_CHECK_CLOSE,      /* scan error with nothing to answer to: close without a word */
    SIP_CHECK_FORWARD,    /* proxy it (any method but REGISTER and a local OPTIONS): binding,
                             routing and transactions decide (core/calls.c) */
    /* SIP_CHECK_ACTION_COUNT */
    SIP_CHECK_ACTION_COUNT
};

#define SIP_CHECK_EXTRA_MAX 2

/** A decision. `reason` and `extra` point into the verdict itself or to static strings: valid
 *  while the verdict lives (and, for SIP_CHECK_ANSWER of a scan error, while msg's buffer). */
struct sip_verdict {
    enum sip_check_action action;
    int status;                              /* ANSWER: 100..699; CHALLENGE: 407; else 0 */
    const char *reason;                      /* ANSWER: the reason phrase ("Duplicate To") */
    const char *error;                       /* CHALLENGE: NULL (no credentials) or error= */
    struct slice extra[SIP_CHECK_EXTRA_MAX]; /* header lines without CRLF ("Unsupported: x") */
    size_t n_extra;
    bool has_cred;        /* FORWARD: the request carries Bearer credentials of its own */
    struct sip_cred cred; /* AUTH, FORWARD with has_cred: the Bearer credentials (borrow msg) */
    char buf[320];        /* storage for reason and extra */
};

/**
 * The option-tags the edge supports (RFC 3261 §8.2.2.3, §16.3 step 6): "path" (it inserts
 * Path, RFC 3327). Any other tag in Proxy-Require, or in Require of a request the edge answers
 * itself (OPTIONS), is answered 420 with Unsupported. docs/sip-checks.md says why.
 */
#define SIP_CHECK_SUPPORTED "path"

/** The methods the edge handles (its own OPTIONS answer's Allow): it proxies the rest too. */
#define SIP_CHECK_ALLOW                                                                            \
    "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, UPDATE, PRACK, INFO, REFER, NOTIFY, SUBSCRIBE, " \
    "MESSAGE, PUBLISH"

/**
 * Decide what the edge does with request `msg` (a complete message from sip_scan()), in the
 * order of RFC 3261 §16.3 then §8.2: header cardinality (400 Duplicate X), the headers every
 * response needs (400 Missing X), CSeq, top Via, From, To (400 Bad X), the Request-URI (400 Bad
 * Request-URI; 416 for a scheme other than sip/sips, tel also allowed for methods the edge
 * forwards other than REGISTER), Max-Forwards (400; 483 at 0 for a request the edge forwards),
 * Proxy-Require (420; not for ACK, CANCEL), then by method: an OPTIONS without Route whose
 * Request-URI has no user part is answered by the edge (Require: 420; else 200 with Allow and
 * Supported), REGISTER needs Bearer credentials for `realm` (CHALLENGE without, AUTH with), any
 * other method is FORWARD (`has_cred` when it carries a Bearer for `realm` of its own: it is
 * verified like a REGISTER's; a malformed one is CHALLENGE invalid_token; two different ones
 * 400). An ACK is never answered: one that fails a check is DROP. Reads `msg` and its buffer
 * only; fills `v`. Pure and reentrant.
 */
void sip_check_request(const struct sip_msg *msg, struct slice realm, struct sip_verdict *v);

/**
 * The checks of sip_check_request() for a request UCM sends towards a client: cardinality,
 * headers, Request-URI, Max-Forwards, Proxy-Require; OPTIONS without Route and user part is
 * answered 200 (UCM's keep-alive); anything else is FORWARD (no credentials: UCM is trusted by
 * its mutual TLS). Pure and reentrant.
 */
void sip_check_ucm_request(const struct sip_msg *msg, struct sip_verdict *v);

/**
 * Decide what the edge does with bytes sip_scan() rejected (`msg->err`): a request whose Via,
 * From, To, Call-ID and CSeq were found is answered (505 for a SIP version other than 2.0, 513
 * for a message over the size limit, else 400 naming the fault); anything else, an ACK or a
 * response gets SIP_CHECK_CLOSE (the connection is closed without a word). The connection is
 * closed after the answer too: the stream cannot be trusted past a scan error.
 */
void sip_check_garbage(const struct sip_msg *msg, struct sip_verdict *v);

/** "answer", "challenge", "auth", "drop", "close"; "" out of range. */
const char *sip_check_action_name(enum sip_check_action a);

#endif
