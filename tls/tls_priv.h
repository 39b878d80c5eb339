// SPDX-License-Identifier: MIT
// tls: declarations shared by the files of tls/ (context layout, connection layout, diagnostics
// helpers). Not for use outside tls/.
#ifndef SIPEDGE_TLS_TLS_PRIV_H
#define SIPEDGE_TLS_TLS_PRIV_H

#include <stdatomic.h>

#include <openssl/ssl.h>

#include "tls/tls.h"

/* A worker's own SSL_CTX in a library context of its own (tls_ctx.c, "Lanes"). */
struct tls__lane {
    OSSL_LIB_CTX *lib; /* the lane's for the whole process (tls_ctx.c, lane_lib()) */
    SSL_CTX *ssl_ctx;
};

struct tls_ctx {
    SSL_CTX *ssl_ctx;        /* in OpenSSL's default library context: connections without a lane */
    struct tls__lane *lanes; /* server side with opts.lanes > 1: one per worker; else NULL */
    unsigned n_lanes;
    atomic_uint refs;
    uint64_t gen; /* unique per context: sessions of an older context are not offered */
    enum tls_side side;
    bool rec_offload;             /* server side: established TLS 1.3 connections use tls_rec.c */
    uint32_t rekey_records;       /* TLS 1.3 on tls_rec.c: records per key before a KeyUpdate */
    bool own_aead;                /* tls_rec.c: each connection keeps its own AEAD contexts */
    struct tls__tickets *tickets; /* server side: rotating session-ticket keys */
    struct tls__sess *sessions;   /* server side: the session-id cache every lane shares */
    struct tls__vcache *vcache;   /* client side: verifications reused (reuse_verification_s) */
};

struct tls__tickets;
/** Make the rotating ticket keys of a server context (rotated every `period_s`, 0: never). */
int tls__tickets_init(struct tls_ctx *ctx, uint32_t period_s);
/** Seal and open tickets of `sc` (one of ctx's SSL_CTXs, its app data `ctx`) with them. */
void tls__tickets_install(SSL_CTX *sc);
/** Free them (context teardown). */
void tls__tickets_free(struct tls_ctx *ctx);

struct tls__vcache;
/** Reuse verifications on client context `ctx` for `ttl_s` seconds (tls_vcache.c). */
int tls__vcache_init(struct tls_ctx *ctx, uint32_t ttl_s);
void tls__vcache_free(struct tls_ctx *ctx);
uint64_t tls__vcache_reused(const struct tls_ctx *ctx);

struct tls__sess;
/** Make the session-id cache of a server context, `cap` entries (tls_sess.c). */
int tls__sess_init(struct tls_ctx *ctx, uint32_t cap);
/** Keep the sessions of `sc` (one of ctx's SSL_CTXs, its app data `ctx`) there, not in `sc`. */
void tls__sess_install(SSL_CTX *sc);
/** Entries held (tests). */
uint32_t tls__sess_count(struct tls_ctx *ctx);
/** Free it and the sessions it holds (context teardown). */
void tls__sess_free(struct tls_ctx *ctx);

/** "%02x" formatted by __sprintf_chk()'s short path in this thread so far (tls_libc.c; tests). */
uint64_t tls__sprintf_short_calls(void);

/** Makes getpid() answer from memory (tls_libc.c: OpenSSL's random generator asks it on every
 * draw) and registers the fork handler that keeps it true in a child. Idempotent, any thread. */
void tls__getpid_init(void);

/** Ciphertext bytes in one direction; `p` is NULL (and freed) whenever it is empty. */
struct tls__buf {
    uint8_t *p;
    uint32_t off; /* first unread byte */
    uint32_t len; /* bytes after off */
    uint32_t cap;
    bool wipe; /* plaintext was decrypted into it: cleansed before it is freed or reused */
};

/** Facts gathered on failure only (allocated then), so idle connections do not carry them. */
struct tls__fail {
    long verify_error;
    int verify_depth;
    unsigned long ossl_err; /* first OpenSSL error code of the failure */
    char detail[384];
};

/* Connection flags. */
#define TLS_F_ESTABLISHED (1u << 0)
#define TLS_F_FAILED      (1u << 1)
#define TLS_F_SHUTDOWN    (1u << 2) /* our close_notify queued */
#define TLS_F_PEER_CLOSED (1u << 3) /* close_notify received */
#define TLS_F_ALERT_RECV  (1u << 4)
#define TLS_F_ALERT_SENT  (1u << 5)
#define TLS_F_CONFIRMED   (1u << 6) /* the peer accepted the handshake (see tls.h) */

/* ---- our record layer (tls_rec.c) ---- */

#define TLS__REC_SUITES     3  /* TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, CHACHA20 */
#define TLS__REC_SECRET_MAX 48 /* SHA-384 */
/* Limits on records that carry no application data (BoringSSL's: 32 empty records, 4 warning
 * alerts, 32 KeyUpdates): past them the peer is flooding us and the connection fails. */
#define TLS__REC_EMPTY_MAX 32 /* consecutive empty records */
#define TLS__REC_WARN_MAX  4  /* warning alerts / TLS 1.2 renegotiation requests */
#define TLS__REC_HS_MAX    32 /* post-handshake messages (KeyUpdate, NewSessionTicket) */
/* Largest post-handshake message reassembled across records (a NewSessionTicket's ticket and
 * extensions are each at most 2^16 - 1 bytes; real ones are a few hundred). */
#define TLS__REC_HS_MSG_MAX (64u * 1024u)
/* Records under one TLS 1.3 key before we start a KeyUpdate: RFC 8446 §5.5 allows 2^24.5 full
 * records under one AES-GCM key; we re-key at 2^23, well before (ChaCha20 allows far more). */
#define TLS__REC_REKEY_DEFAULT (1u << 23)

/** Record boundaries in one direction of the handshake's byte stream (tls__rec_count()). */
struct tls__recs {
    uint32_t records;   /* records started so far */
    uint32_t after_ccs; /* records after the last change_cipher_spec (TLS 1.2: encrypted ones) */
    uint32_t body_left; /* bytes left of the current record */
    uint8_t hdr[5];
    uint8_t hdr_have;
    bool ccs; /* a change_cipher_spec record went by */
};

/** What the handshake leaves for tls__rec_takeover(), until the switch. */
struct tls__hs {
    uint8_t secret[2][TLS__REC_SECRET_MAX]; /* TLS 1.3 application secrets: [0] read, [1] write */
    uint8_t secret_len[2];
    bool marked[2];        /* TLS 1.3: that direction's application key was installed ... */
    uint32_t mark[2];      /* ... when OpenSSL had read [0] / written [1] this many records */
    struct tls__recs r, w; /* what OpenSSL read / wrote */
    bool ticket_seen;      /* client side: OpenSSL took the server's session ticket */
    bool tainted;          /* OpenSSL saw a KeyUpdate: our secrets are stale, never switch */
};

/** An established connection's record state (TLS 1.3, or TLS 1.2 AEAD) once the SSL is gone. */
struct tls__rec {
    uint8_t secret[2][TLS__REC_SECRET_MAX]; /* current traffic secrets, for KeyUpdate */
    uint8_t key[2][32];
    uint8_t iv[2][12];
    uint64_t seq[2];
    const char *cipher_name;
    uint32_t pend_len;      /* decrypted bytes waiting at the front of c->in (short read buffer) */
    uint32_t pend_skip;     /* then this many bytes (content type, padding, tag) to drop */
    uint32_t rekey_after;   /* TLS 1.3: start a KeyUpdate when a key has sealed/opened this many */
    struct tls__hsfrag *hs; /* a post-handshake message split across records, or NULL */
    EVP_CIPHER_CTX *own[2]; /* [0 read, 1 write]: this connection's own contexts, or NULL */
    bool own_keyed[2];      /* own[d] holds key[d] (false again after a KeyUpdate) */
    uint8_t suite;
    bool resumed;
    bool tls12;      /* TLS 1.2 records: outer content type, GCM explicit nonce, seq in the AAD */
    bool ku_pending; /* the peer asked for a KeyUpdate: ours goes out before our next record */
    bool ku_asked;   /* we asked the peer to update its keys and have not seen it yet */
    uint8_t empty_run, warn_run, hs_run; /* no-op records since the last application data */
};

/** The part of a post-handshake message received so far (message bytes, header included). */
struct tls__hsfrag {
    uint32_t len, cap;
    uint8_t p[];
};

struct tls_conn {
    SSL *ssl;             /* NULL once tls_rec.c took the records over */
    struct tls__rec *rec; /* our record layer, or NULL */
    struct tls__hs *hs;   /* server side during the handshake when records may be taken over */
    struct tls_ctx *ctx;
    struct tls_peer *peer; /* client side only */
    struct tls__buf in, out;
    struct tls__fail *fail;
    uint8_t flags;
    uint8_t side;
    uint8_t cause;      /* enum tls_cause once failed */
    uint8_t alert_recv; /* last fatal alert received */
    uint8_t alert_sent; /* last fatal alert we sent */
    uint8_t lane;       /* server side: its SSL_CTX is ctx->lanes[lane] when ctx has lanes */
};

/** Reserve `n` bytes at the end of `b` (grown as needed); NULL when out of memory. */
uint8_t *tls__buf_reserve(struct tls__buf *b, size_t n);
/** Commit `n` bytes written into the last tls__buf_reserve() area. */
void tls__buf_commit(struct tls__buf *b, size_t n);
/** Drop `n` bytes from the front of `b`; its memory is released when it empties. */
void tls__buf_consume(struct tls__buf *b, size_t n);

/** SSL_CTX key-log callback: keeps the TLS 1.3 application secrets in c->hs. */
void tls__rec_keylog(const SSL *ssl, const char *line);
/** SSL_CTX message callback: marks c->hs tainted when a KeyUpdate goes by. */
void tls__rec_msg(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl,
                  void *arg);
/** Count the records in `n` bytes OpenSSL wrote or read (handshake time). */
void tls__rec_count(struct tls__recs *rc, const uint8_t *p, size_t n);
/**
 * `c` is established (a client: and has its TLS 1.3 ticket): when it is TLS 1.3, or TLS 1.2 with
 * an AEAD suite, that we do and everything was captured, free the SSL and switch `c` to our
 * record layer (returns 1); else keep OpenSSL (returns 0). c->hs is freed either way.
 */
int tls__rec_takeover(struct tls_conn *c);
/**
 * Record state for suite index `suite` (0 AES-128-GCM, 1 AES-256-GCM, 2 CHACHA20-POLY1305) from
 * the two traffic secrets (hash length of the suite), sequence numbers 0. NULL on failure.
 */
struct tls__rec *tls__rec_new(unsigned suite, const uint8_t *read_secret,
                              const uint8_t *write_secret);
/** Append one record of inner content type `type` (≤ 2^14 bytes) to c->out. */
int tls__rec_seal(struct tls_conn *c, uint8_t type, const void *p, size_t n);
/** tls_conn_read() / tls_conn_writev() / tls_conn_shutdown() once taken over. */
ssize_t tls__rec_read(struct tls_conn *c, void *buf, size_t cap);
ssize_t tls__rec_writev(struct tls_conn *c, const struct iovec *iov, int iovcnt);
int tls__rec_shutdown(struct tls_conn *c);
/**
 * Wipe and free. NULL is a no-op. The calling thread's cached AEAD contexts that last held `r`'s
 * keys are re-keyed with zeros, so no key schedule outlives the connection (call it on the
 * connection's thread, as every call on a connection).
 */
void tls__rec_free(struct tls__rec *r);
/** Tests: the calling thread's cached AEAD context for `suite` and direction (`enc` 1: seal). */
EVP_CIPHER_CTX *tls__rec_aead_cached(unsigned suite, int enc);
void tls__hs_free(struct tls__hs *hs);

/** The cause for a fatal alert `alert` received from the peer. */
enum tls_cause tls__cause_from_alert(int alert);
/** The cause for our own verification error `verify_error` (X509_V_ERR_*). */
enum tls_cause tls__cause_from_verify(long verify_error);
/** Record a failure on `c` (first one wins): allocates c->fail if possible. */
void tls__fail(struct tls_conn *c, enum tls_cause cause);
/** c->fail, allocated on demand (NULL when out of memory). */
struct tls__fail *tls__fail_info(struct tls_conn *c);
/** Append to `buf` (NUL-terminated, `cap` bytes) at offset `*pos`, truncating. */
void tls__appendf(char *buf, size_t cap, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/** Append `CN=.. SAN=DNS:..,IP:..` of `x` (an X509 *) to buf at *pos. */
void tls__append_names(char *buf, size_t cap, size_t *pos, const void *x509);

#endif
