// SPDX-License-Identifier: MIT
// tls: sans-IO TLS for the edge (OpenSSL 3). Refcounted server and mTLS client contexts, a
// per-connection `struct tls_conn` that turns received ciphertext into plaintext and plaintext
// slices into ciphertext to send, and handshake-failure diagnostics that name the fix.
#ifndef SIPEDGE_TLS_TLS_H
#define SIPEDGE_TLS_TLS_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "core/slice.h"

/** Result of tls_conn_handshake() / tls_conn_read(): all fed ciphertext is used up, feed more. */
#define TLS_WANT_INPUT (-EAGAIN)
/** Largest amount of ciphertext a connection buffers before tls_conn_feed() says -ENOBUFS. */
#define TLS_IN_MAX (64u * 1024u)
/** Largest amount of pending ciphertext before tls_conn_writev() says -ENOBUFS. */
#define TLS_OUT_MAX (1024u * 1024u)
/** Bytes tls_conn_writev() coalesces on the stack before one SSL_write (one full record). */
#define TLS_WRITE_CHUNK (16u * 1024u)

/** Which end of the handshake we are. */
enum tls_side {
    TLS_SIDE_SERVER = 0, /**< we accepted the connection (SIP client → edge) */
    TLS_SIDE_CLIENT,     /**< we connected (edge → UCM 5091) */
    /* TLS_SIDE_COUNT */ TLS_SIDE_COUNT
};

/**
 * Why a handshake (or an established connection) failed. X(id, short_name, text) — the short
 * name is stable (metrics label, log key); the operator fix depends on the side and is given by
 * tls_cause_fix().
 */
#define TLS_CAUSES(X)                                                                              \
    X(NONE, "none", "no failure")                                                                  \
    X(ALERT_UNKNOWN_CA, "unknown_ca", "peer does not trust the CA that issued our certificate")    \
    X(ALERT_BAD_CERTIFICATE, "bad_certificate", "peer rejected our certificate as bad")            \
    X(ALERT_CERTIFICATE_UNKNOWN, "certificate_unknown",                                            \
      "peer rejected our certificate (certificate_unknown)")                                       \
    X(ALERT_CERTIFICATE_EXPIRED, "certificate_expired", "peer says our certificate has expired")   \
    X(ALERT_CERTIFICATE_REVOKED, "certificate_revoked", "peer says our certificate is revoked")    \
    X(ALERT_CERTIFICATE_REQUIRED, "certificate_required",                                          \
      "peer requires a client certificate and we sent none")                                       \
    X(ALERT_ACCESS_DENIED, "access_denied", "peer accepted our certificate but denies access")     \
    X(ALERT_HANDSHAKE_FAILURE, "handshake_failure",                                                \
      "peer aborted the handshake (handshake_failure)")                                            \
    X(ALERT_PROTOCOL_VERSION, "protocol_version", "peer does not accept our TLS versions")         \
    X(ALERT_INSUFFICIENT_SECURITY, "insufficient_security",                                        \
      "peer finds our ciphers or keys too weak")                                                   \
    X(ALERT_DECRYPT_ERROR, "decrypt_error", "peer could not verify our handshake signature")       \
    X(ALERT_OTHER, "alert", "peer sent a fatal TLS alert")                                         \
    X(PEER_UNTRUSTED_ISSUER, "untrusted_issuer",                                                   \
      "peer certificate is not issued by a CA in our bundle")                                      \
    X(PEER_SELF_SIGNED, "self_signed", "peer certificate is self-signed and not in our bundle")    \
    X(PEER_HOSTNAME_MISMATCH, "hostname_mismatch",                                                 \
      "peer certificate does not carry the expected name in its SAN")                              \
    X(PEER_EXPIRED, "expired", "peer certificate (or one of its CAs) has expired")                 \
    X(PEER_NOT_YET_VALID, "not_yet_valid", "peer certificate is not yet valid")                    \
    X(PEER_NO_CERTIFICATE, "no_peer_certificate", "peer sent no certificate but one is required")  \
    X(PEER_VERIFY_OTHER, "verify_failed", "peer certificate failed verification")                  \
    X(NO_SHARED_CIPHER, "no_shared_cipher", "no cipher suite in common with the peer")             \
    X(NO_SHARED_PROTOCOL, "no_shared_protocol", "no TLS version in common with the peer")          \
    X(PEER_CLOSED, "peer_closed", "peer closed the connection during the handshake")               \
    X(TIMEOUT, "timeout", "handshake did not finish in time")                                      \
    X(PROTOCOL_ERROR, "protocol_error", "peer sent bytes that are not valid TLS")                  \
    X(INTERNAL, "internal", "local TLS error (memory or configuration)")

/** A handshake failure cause; names in TLS_CAUSES. */
enum tls_cause {
#define TLS_CAUSE_ENUM_(id, name, text) TLS_CAUSE_##id,
    TLS_CAUSES(TLS_CAUSE_ENUM_)
#undef TLS_CAUSE_ENUM_
    /* TLS_CAUSE_COUNT */ TLS_CAUSE_COUNT
};

/**
 * What went wrong in one handshake, filled by tls_conn_diag(). Self-contained (no pointers), so it
 * can be copied to another thread (e.g. /readyz). `expected` and `detail` are NUL-terminated.
 */
struct tls_diag {
    enum tls_side side;
    enum tls_cause cause;
    int alert;            /**< TLS alert number received (ALERT_* causes) or sent, else -1 */
    bool alert_from_peer; /**< `alert` was received (true) or sent by us (false) */
    long verify_error;    /**< X509_V_ERR_* of our verification of the peer, 0 if none */
    char expected[128];   /**< the name we expected in the peer certificate (client side) */
    char detail[384]; /**< facts: the peer certificate's subject/issuer/SAN/dates, OpenSSL reason */
};

/** The stable short name of `cause` ("unknown_ca"); "?" when out of range. */
const char *tls_cause_name(enum tls_cause cause);
/** One-sentence human description of `cause`; never NULL. */
const char *tls_cause_text(enum tls_cause cause);
/**
 * What the operator should do about `cause` seen on `side` (e.g. unknown_ca while we are the
 * client: "upload our CA to UCM's tomcat-trust ..."); never NULL.
 */
const char *tls_cause_fix(enum tls_cause cause, enum tls_side side);
/** "server" or "client". */
const char *tls_side_name(enum tls_side side);

/**
 * Format `d` as one key=value log line (no trailing newline) into `buf`:
 * `tls_handshake_failed side=client peer=<peer> cause=unknown_ca alert=unknown_ca
 * expected=... detail="..." text="..." fix="..."`. `peer` names the node or client address
 * (may be NULL). Returns the length written (truncated to `cap - 1`, always NUL-terminated when
 * `cap > 0`) or -EINVAL when `buf` is NULL or `cap` is 0.
 */
int tls_diag_format(const struct tls_diag *d, const char *peer, char *buf, size_t cap);

/* ------------------------------------------------------------------------------------------ */
/* Contexts                                                                                   */

/** A refcounted SSL_CTX plus what our connections need from it. Opaque. */
struct tls_ctx;

/** Server side (clients → edge :5061) configuration. Only `cert_file` and `key_file` required. */
struct tls_server_opts {
    const char *cert_file; /**< PEM: our certificate, then its chain */
    const char *key_file;  /**< PEM private key */
    const char
        *client_ca_file;      /**< PEM CA bundle to verify client certificates; NULL: none asked */
    bool require_client_cert; /**< with `client_ca_file`: fail the handshake without one */
    /**
     * With `client_ca_file`: the client certificate must also carry one of these names (a SAN
     * DNS name, or the CN when it has no DNS SAN; no wildcards), checked by OpenSSL during the
     * handshake (X509_VERIFY_PARAM hosts): another name fails it with a certificate alert and
     * the diagnosis TLS_CAUSE_PEER_HOSTNAME_MISMATCH. NULL/0: any name (the UCM listener sets it).
     */
    const char *const *peer_names;
    size_t n_peer_names;
    const char *ciphers;         /**< TLS 1.2 cipher list; NULL: ECDHE with AES-GCM/CHACHA20 */
    const char *ciphersuites;    /**< TLS 1.3 suites; NULL: AES-128-GCM, AES-256-GCM, CHACHA20 */
    uint16_t max_version;        /**< 0: up to TLS 1.3; 0x0303: TLS 1.2 only (tests, old peers) */
    uint32_t session_cache_size; /**< server session cache entries; 0: 4096 */
    uint32_t session_timeout_s;  /**< session / ticket lifetime; 0: 7200 s */
    uint32_t ticket_rotate_s;    /**< ticket key rotation period; 0: 3600 s (previous key kept) */
    /**
     * Workers that will make connections on this context (tls_conn_new_server_lane()): with more
     * than one, each gets an SSL_CTX of its own in an OpenSSL library context of its own, so
     * that their handshakes do not share OpenSSL's lookup locks. Made only when OpenSSL runs on
     * its default provider alone (tls_ctx_lanes() says whether they were). 0 or 1: none.
     */
    unsigned lanes;
    /**
     * Keep OpenSSL's record layer for the whole connection. By default an established TLS 1.3
     * connection (AES-GCM or CHACHA20-POLY1305) moves to tls/'s own record layer and its SSL
     * object (≈ 14 KB) is freed: docs/tls.md, "Record layer".
     */
    bool openssl_records;
    /**
     * On our record layer, each connection keeps its own AEAD contexts (≈ 1 KB per direction)
     * instead of sharing its thread's, keyed anew for every record: for the few hot connections
     * (UCM's), not for thousands of mostly idle clients.
     */
    bool own_aead;
};

/** Client side (edge → UCM :5091, mutual TLS) configuration. `ca_file` required. */
struct tls_client_opts {
    const char *cert_file; /**< PEM: our client certificate, then its chain; NULL: no client cert */
    const char *key_file;  /**< PEM private key (required with `cert_file`) */
    const char *ca_file;   /**< PEM bundle of the CAs we trust for UCM (its Tomcat signer) */
    uint16_t max_version;  /**< 0: up to TLS 1.3; 0x0303: TLS 1.2 only (tests, old peers) */
    const char *ciphers;   /**< TLS 1.2 cipher list; NULL: ECDHE with AES-GCM/CHACHA20 */
    const char *ciphersuites; /**< TLS 1.3 suites; NULL: AES-128-GCM, AES-256-GCM, CHACHA20 */
    /**
     * Keep OpenSSL's record layer for the whole connection. By default an established AEAD
     * connection moves to tls/'s own record layer once it has the server's first session
     * ticket (TLS 1.3) or at the end of the handshake (TLS 1.2): docs/tls.md, "Record layer".
     */
    bool openssl_records;
    /**
     * TLS 1.3 on our record layer: after this many records under one key (sent, or received)
     * we send a KeyUpdate (asking the server to update too when it is its key). 0: 2^23, well
     * below the AES-GCM limit of RFC 8446 §5.5. Tests set it low.
     */
    uint32_t rekey_records;
    /** As in tls_server_opts: connections keep their own AEAD contexts (the UCM pool's). */
    bool own_aead;
    /**
     * For a load generator, whose one machine stands in for thousands of devices: a server
     * certificate whose chain and name were verified is accepted again for the same peer name
     * without walking the chain, for this many seconds (and never past its notAfter). Every
     * handshake still checks the server's signature with the certificate's key. 0: verify every
     * handshake (the edge's own connections).
     */
    uint32_t reuse_verification_s;
};

/**
 * Build a server context from files. TLS 1.2 and 1.3 only, server cipher preference, no
 * renegotiation, no compression, session tickets under rotating keys (fresh for every context)
 * plus a bounded server session cache, SSL_MODE_RELEASE_BUFFERS.
 * On success stores a context with one reference in `*out` and returns 0. On failure returns
 * -ENOENT (a file is missing or unreadable), -EINVAL (bad PEM, key does not match the
 * certificate, bad cipher list) or -ENOMEM, and writes the reason into `err` (`errlen` bytes, may
 * be NULL/0). Any thread; the context may then be shared by all threads.
 */
int tls_server_ctx_new(const struct tls_server_opts *opts, struct tls_ctx **out, char *err,
                       size_t errlen);

/** As tls_server_ctx_new(), for the mTLS client context toward UCM. Peer verification is on. */
int tls_client_ctx_new(const struct tls_client_opts *opts, struct tls_ctx **out, char *err,
                       size_t errlen);

/**
 * Start a new session-ticket key on server context `ctx` now (also done every
 * `ticket_rotate_s`): tickets under the previous key still resume and are reissued, older ones
 * fall back to a full handshake. Returns 0, -EINVAL for a client context, -EIO when the random
 * generator fails. Any thread.
 */
int tls_ctx_rotate_ticket_key(struct tls_ctx *ctx);
/** Handshakes of a client context that reused a verification (tls_client_opts). */
uint64_t tls_ctx_verifications_reused(const struct tls_ctx *ctx);
/** The lanes `ctx` has (tls_server_opts.lanes): 0 when it has none. */
unsigned tls_ctx_lanes(const struct tls_ctx *ctx);

/** Take one more reference on `ctx` (atomic; any thread). Returns `ctx`. */
struct tls_ctx *tls_ctx_ref(struct tls_ctx *ctx);
/** Drop a reference; the last one frees the context. NULL is a no-op. Any thread. */
void tls_ctx_unref(struct tls_ctx *ctx);
/**
 * Reload helper: store `next` (whose reference the caller hands over) into `*slot` and drop the
 * reference of the context it replaces. Connections already made keep the old context alive
 * through their own reference; new ones get `next`. Not atomic: the owner of `*slot` calls it.
 */
void tls_ctx_swap(struct tls_ctx **slot, struct tls_ctx *next);
/** TLS_SIDE_SERVER or TLS_SIDE_CLIENT: what `ctx` was built for. */
enum tls_side tls_ctx_side(const struct tls_ctx *ctx);

/**
 * Write the names of the context's own certificate as `CN=<cn> SAN=DNS:a,DNS:b,IP:127.0.0.1`
 * into `buf` (NUL-terminated): for the client context, what the UCM admin must enter under
 * Device > Expressway-C. Returns the length (truncated to `cap - 1`), -ENOENT when the context
 * has no certificate, -EINVAL when `cap` is 0.
 */
int tls_ctx_cert_names(const struct tls_ctx *ctx, char *buf, size_t cap);

/* ------------------------------------------------------------------------------------------ */
/* Upstream peers (client side): expected name and the session kept for resumption            */

/**
 * One upstream node as the TLS client sees it: the name its certificate must carry (DNS or IP
 * SAN) and the last session it gave us, reused by the next connection (TLS 1.2 session id or
 * ticket, TLS 1.3 ticket delivered after the handshake). Embedded in the caller's per-worker node
 * state; used by one thread only. Must outlive every tls_conn made with it.
 */
struct tls_peer {
    char name[128];       /**< expected SAN: DNS name or IP address literal */
    bool name_is_ip;      /**< `name` parsed as an IPv4/IPv6 literal */
    void *session;        /**< SSL_SESSION * to resume, or NULL */
    uint64_t session_gen; /**< generation of the tls_ctx the session was made with */
};

/**
 * Set `peer` up for `name` (copied; IP literals are matched against IP SANs, anything else
 * against DNS SANs). Returns 0, or -EINVAL when `name` is empty or longer than 127 bytes.
 */
int tls_peer_init(struct tls_peer *peer, const char *name);
/** Forget the kept session (e.g. after UCM's certificate changed). */
void tls_peer_forget_session(struct tls_peer *peer);
/** Free the kept session. `peer` may then be re-initialised or dropped. */
void tls_peer_deinit(struct tls_peer *peer);

/* ------------------------------------------------------------------------------------------ */
/* Connections                                                                                */

/**
 * One TLS connection, sans IO: the caller moves bytes. Life of a connection:
 *
 * | state       | caller does                                   | then                        |
 * |-------------|-----------------------------------------------|-----------------------------|
 * | handshake   | feed(), handshake(); send tls_conn_out() bytes | 0 → open; -EPROTO → failed  |
 * | open        | feed(), read() plaintext; writev(); send out   | read() 0 → peer closed      |
 * | failed      | send out() (our alert), then close; diag()      | —                           |
 *
 * Owned by one thread (the worker that owns the socket). Idle memory is the SSL object and its
 * session: the ciphertext buffers are freed whenever they become empty.
 */
struct tls_conn;

/**
 * A server-side connection on `ctx` (takes a reference). Returns NULL on allocation failure.
 * It makes its SSL object at its first tls_conn_handshake() or tls_conn_read(); until then it
 * holds only what was fed to it (a waiting ClientHello costs its own size).
 */
struct tls_conn *tls_conn_new_server(struct tls_ctx *ctx);
/** As tls_conn_new_server(), for worker `lane` (0 ..): on its lane when `ctx` has lanes. */
struct tls_conn *tls_conn_new_server_lane(struct tls_ctx *ctx, unsigned lane);

/**
 * A client-side connection on `ctx` (takes a reference) toward `peer`: SNI (for DNS names) and
 * the SAN check use `peer->name`; the peer's kept session is offered for resumption, and new
 * sessions the server gives are stored back into `peer`. Returns NULL on allocation failure or
 * when `ctx` is not a client context. Call tls_conn_handshake() to produce the ClientHello.
 */
struct tls_conn *tls_conn_new_client(struct tls_ctx *ctx, struct tls_peer *peer);

/** Free `c` (without sending anything) and drop its context reference. NULL is a no-op. */
void tls_conn_free(struct tls_conn *c);

/**
 * Hand received ciphertext to the connection (copied; `buf` may be reused on return).
 * Returns 0, -ENOBUFS when more than TLS_IN_MAX bytes would be waiting (the peer floods us
 * faster than the caller reads: close), -ENOMEM.
 */
int tls_conn_feed(struct tls_conn *c, const void *buf, size_t len);

/**
 * Drive the handshake with what was fed. Returns 0 once established (and on every later call),
 * TLS_WANT_INPUT when it needs more ciphertext (send tls_conn_out() first: it may hold our
 * flight), -EPROTO on failure (see tls_conn_diag(); tls_conn_out() may hold our alert, send it
 * before closing), -ENOMEM.
 */
int tls_conn_handshake(struct tls_conn *c);

/** True once the handshake has completed (and nothing failed since). */
bool tls_conn_established(const struct tls_conn *c);

/**
 * True once the peer is known to have accepted the handshake. Equal to tls_conn_established()
 * on the server side and for TLS 1.2. A TLS 1.3 client finishes before the server has checked
 * its certificate: a rejection (unknown_ca, certificate_required...) then arrives as -EPROTO from
 * a later tls_conn_read(). Such a connection becomes confirmed when the server's first
 * post-handshake record (a session ticket, or data) is read. Use it to call an upstream node up.
 */
bool tls_conn_confirmed(const struct tls_conn *c);

/**
 * Decrypt up to `cap` bytes of plaintext into `buf` (drives the handshake first if needed).
 * Returns > 0 bytes, 0 when the peer sent close_notify (no more data will come), TLS_WANT_INPUT
 * when all fed ciphertext is used up, -EPROTO on a TLS error (tls_conn_diag()), -EINVAL when
 * `cap` is 0, -ENOMEM. Call it until it returns TLS_WANT_INPUT (or the caller's buffer is full:
 * undecrypted ciphertext stays buffered). May produce output (OpenSSL's key update answer, a
 * TLS 1.2 no_renegotiation warning, and on -EPROTO our fatal alert): send tls_conn_out()
 * before closing. On sipedge's record layer a requested KeyUpdate is answered with the next
 * tls_conn_writev(), and a peer flooding records that carry no data (KeyUpdates, empty records,
 * warnings) fails with -EPROTO after a few dozen (docs/tls.md, "Record layer").
 */
ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t cap);

/**
 * Encrypt the gathered plaintext `iov[0..iovcnt)` (equal in layout to an array of struct slice).
 * Slices are coalesced into a TLS_WRITE_CHUNK stack buffer, so records are full-size, not one per
 * slice. Returns the number of plaintext bytes taken (all of them), -ENOTCONN before the
 * handshake completed or after close, -ENOBUFS when TLS_OUT_MAX bytes of ciphertext already wait
 * to be sent (backpressure: nothing taken), -EPROTO on a TLS error, -ENOMEM.
 */
ssize_t tls_conn_writev(struct tls_conn *c, const struct iovec *iov, int iovcnt);

/**
 * The ciphertext waiting to be sent (SLICE_NULL when none). Borrowed: valid until the next call
 * on `c` other than tls_conn_out() / tls_conn_out_len(); the caller that sends it asynchronously
 * copies it or makes no other call until the send completes. Mark sent bytes with
 * tls_conn_out_consume().
 */
struct slice tls_conn_out(const struct tls_conn *c);
/** Number of ciphertext bytes waiting to be sent. */
size_t tls_conn_out_len(const struct tls_conn *c);
/** Mark `n` bytes (at most tls_conn_out_len()) as sent; the buffer is freed when empty. */
void tls_conn_out_consume(struct tls_conn *c, size_t n);

/**
 * Queue our close_notify (once; after the handshake only, else nothing to say). Returns 0 when
 * queued or already sent (send tls_conn_out(), then close the socket), -ENOTCONN before the
 * handshake completed, -ENOMEM.
 */
int tls_conn_shutdown(struct tls_conn *c);

/**
 * Record a failure the caller observed: TLS_CAUSE_PEER_CLOSED (the socket hit EOF during the
 * handshake) or TLS_CAUSE_TIMEOUT (the handshake timer fired). Later calls return -EPROTO and
 * tls_conn_diag() reports `cause`. A failure already recorded is kept.
 */
void tls_conn_abort(struct tls_conn *c, enum tls_cause cause);

/**
 * Describe why the connection failed into `*d` (`cause` TLS_CAUSE_NONE while nothing failed).
 * Includes the alert received, our verification error with the certificate's subject, issuer,
 * SAN or dates, and the expected name. Returns the cause.
 */
enum tls_cause tls_conn_diag(const struct tls_conn *c, struct tls_diag *d);

/** True when the established session was resumed (no certificate exchange). */
bool tls_conn_resumed(const struct tls_conn *c);
/** The negotiated protocol ("TLSv1.3") or "none" before the handshake. */
const char *tls_conn_version(const struct tls_conn *c);
/** The negotiated cipher suite name, or "none". */
const char *tls_conn_cipher(const struct tls_conn *c);
/** TLS_SIDE_SERVER or TLS_SIDE_CLIENT. */
enum tls_side tls_conn_side(const struct tls_conn *c);
/** True when tls/'s own record layer carries the connection (its SSL object is freed). */
bool tls_conn_own_records(const struct tls_conn *c);

#endif
