// SPDX-License-Identifier: MIT
// tls: declarations shared by the files of tls/ (context layout, connection layout, diagnostics
// helpers). Not for use outside tls/.
#ifndef SIPEDGE_TLS_TLS_PRIV_H
#define SIPEDGE_TLS_TLS_PRIV_H

#include <stdatomic.h>

#include <openssl/ssl.h>

#include "tls/tls.h"

struct tls_ctx {
    SSL_CTX *ssl_ctx;
    atomic_uint refs;
    uint64_t gen; /* unique per context: sessions of an older context are not offered */
    enum tls_side side;
    struct tls__tickets *tickets; /* server side: rotating session-ticket keys */
};

struct tls__tickets;
/** Install rotating ticket keys on a server context (rotated every `period_s`, 0: never). */
int tls__tickets_init(struct tls_ctx *ctx, uint32_t period_s);
/** Free them (context teardown). */
void tls__tickets_free(struct tls_ctx *ctx);

/** Ciphertext bytes in one direction; `p` is NULL (and freed) whenever it is empty. */
struct tls__buf {
    uint8_t *p;
    uint32_t off; /* first unread byte */
    uint32_t len; /* bytes after off */
    uint32_t cap;
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

struct tls_conn {
    SSL *ssl;
    struct tls_ctx *ctx;
    struct tls_peer *peer; /* client side only */
    struct tls__buf in, out;
    struct tls__fail *fail;
    uint8_t flags;
    uint8_t side;
    uint8_t cause;      /* enum tls_cause once failed */
    uint8_t alert_recv; /* last fatal alert received */
    uint8_t alert_sent; /* last fatal alert we sent */
};

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
