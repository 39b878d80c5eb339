// SPDX-License-Identifier: MIT
// sipedge-ucmsim: a Unified CM stand-in on the SIP MRA OAuth port (5091) for tests and benchmarks.
// Mutual TLS with a CA bundle and an allowlist of edge names (UCM's Device > Expressway-C list),
// REGISTER answered 200 with a capped Expires, failure modes, and a record of what it received.
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "bench/bench_hist.h"
#include "core/sip.h"
#include "core/sip_build.h"
#include "core/sip_parse.h"

#define SIM_MAX_HEADERS  128
#define SIM_IN_INITIAL   4096
#define SIM_IN_MAX       (128 * 1024)  /* above the scanner's 64 KiB message limit */
#define SIM_OUT_HIGH     (1024 * 1024) /* stop reading a client that does not read its answers */
#define SIM_MAX_CONNS    65536         /* per thread */
#define SIM_MAX_DELAYED  (1u << 20)    /* pending delayed answers per thread */
#define SIM_MAX_THREADS  64
#define SIM_MAX_ALLOW    64
#define SIM_MAX_CONTACTS 32 /* echoed in a 200 to a REGISTER */
#define SIM_EPOLL_BATCH  256
#define SIM_RESP_MAX     (64 * 1024)

/* ---- options ------------------------------------------------------------------------------ */

enum sim_apply {
    SIM_APPLY_REGISTER = 0, /* modes act on REGISTERs; OPTIONS keep-alives are always answered */
    SIM_APPLY_ALL,
    /* SIM_APPLY_COUNT */
    SIM_APPLY_COUNT
};

struct sim_opts {
    const char *addr;
    unsigned port;
    unsigned threads;
    const char *cert, *key, *ca;
    const char *allow[SIM_MAX_ALLOW];
    size_t allow_count;
    int reject_verify_err; /* X509_V_ERR_* set for a chained certificate not in the allowlist */
    const char *reject_alert;
    int max_tls; /* 0 = highest the library offers */
    uint32_t max_expires;
    const char *node; /* the node name in the Warning header */
    unsigned mismatch_every;
    unsigned delay_ms, delay_every;
    unsigned drop_every;
    uint64_t fail_after; /* 0 = never */
    enum sim_apply apply;
    const char *record, *port_file, *pid_file;
    bool record_raw;
    unsigned sockbuf; /* SO_SNDBUF/SO_RCVBUF of accepted sockets, 0 = the kernel's autotuning */
    unsigned call_out_rate, notify_rate; /* UCM -> client INVITEs / NOTIFYs per second */
    uint64_t out_count;                  /* at most this many of them (0 = no limit) */
    unsigned out_hold_ms, out_timeout_ms;
};

/* ---- counters ----------------------------------------------------------------------------- */

#define SIM_COUNTERS(X)                                                                            \
    X(CONNS, "conns")                                                                              \
    X(TLS_OK, "tls_ok")                                                                            \
    X(TLS_NO_CERT, "tls_fail_no_cert")                                                             \
    X(TLS_UNKNOWN_CA, "tls_fail_unknown_ca")                                                       \
    X(TLS_NOT_ALLOWED, "tls_fail_not_allowed")                                                     \
    X(TLS_BAD_CERT, "tls_fail_bad_cert")                                                           \
    X(TLS_OTHER, "tls_fail_other")                                                                 \
    X(REQUESTS, "requests")                                                                        \
    X(REGISTER, "register")                                                                        \
    X(OPTIONS, "options")                                                                          \
    X(OTHER_METHOD, "other_method")                                                                \
    X(INVITE, "invite")                                                                            \
    X(ACK, "ack")                                                                                  \
    X(BYE, "bye")                                                                                  \
    X(CANCEL, "cancel")                                                                            \
    X(ANSWER_180, "answer_180")                                                                    \
    X(ANSWER_486, "answer_486")                                                                    \
    X(ANSWER_487, "answer_487")                                                                    \
    X(OUT_INVITE, "out_invite")                                                                    \
    X(OUT_180, "out_180")                                                                          \
    X(OUT_200, "out_200")                                                                          \
    X(OUT_BYE, "out_bye")                                                                          \
    X(OUT_OK, "out_ok")                                                                            \
    X(OUT_FAIL, "out_fail")                                                                        \
    X(OUT_TIMEOUT, "out_timeout")                                                                  \
    X(OUT_NO_TARGET, "out_no_target")                                                              \
    X(OUT_OVERLOAD, "out_overload")                                                                \
    X(OUT_NO_ROOM, "out_no_room")                                                                  \
    X(NOTIFY_SENT, "notify_sent")                                                                  \
    X(NOTIFY_OK, "notify_ok")                                                                      \
    X(NOTIFY_FAIL, "notify_fail")                                                                  \
    X(RESPONSES_IN, "responses_received")                                                          \
    X(KEEPALIVE, "keepalive")                                                                      \
    X(ANSWER_200, "answer_200")                                                                    \
    X(ANSWER_403, "answer_403")                                                                    \
    X(ANSWER_501, "answer_501")                                                                    \
    X(ANSWER_503, "answer_503")                                                                    \
    X(DROPPED, "dropped")                                                                          \
    X(DELAYED, "delayed")                                                                          \
    X(DELAYED_GONE, "delayed_conn_gone")                                                           \
    X(BAD_MESSAGE, "bad_message")                                                                  \
    X(OVERLOAD, "overload")

enum sim_ctr {
#define SIM_CTR_ENUM(n, s) SIM_C_##n,
    SIM_COUNTERS(SIM_CTR_ENUM)
#undef SIM_CTR_ENUM
    /* SIM_C_COUNT */
    SIM_C_COUNT
};

static const char *const sim_ctr_names[SIM_C_COUNT] = {
#define SIM_CTR_NAME(n, s) s,
    SIM_COUNTERS(SIM_CTR_NAME)
#undef SIM_CTR_NAME
};

/* ---- per-thread state ----------------------------------------------------------------------- */

enum conn_state {
    CONN_HANDSHAKE = 0,
    CONN_OPEN,
    /* CONN_STATE_COUNT */
    CONN_STATE_COUNT
};

enum tls_cause {
    TLS_CAUSE_NONE = 0,
    TLS_CAUSE_UNKNOWN_CA,
    TLS_CAUSE_NOT_ALLOWED,
    TLS_CAUSE_BAD_CERT,
    /* TLS_CAUSE_COUNT */
    TLS_CAUSE_COUNT
};

struct conn {
    int fd;
    uint32_t slot, gen;
    enum conn_state state;
    SSL *ssl;
    char peer[64];
    enum tls_cause cause;
    int verify_err;
    int alert_sent, alert_recv; /* -1 when none */
    char subject[256];
    char names[256];
    uint32_t events;       /* registered epoll events */
    bool read_wants_write; /* SSL_read needs the socket writable (post-handshake messages) */
    char *in;
    size_t in_len, in_cap, scan_last;
    char *out;
    size_t out_len, out_cap;
};

struct delayed {
    uint64_t due_ns;
    uint32_t slot, gen;
    char *data;
    size_t len;
};

struct out_state;

struct worker {
    unsigned id;
    pthread_t thread;
    const struct sim_opts *o;
    SSL_CTX *ctx;
    int lfd, epfd, stopfd, timerfd;
    struct conn **conns; /* slot table */
    uint32_t *gens;      /* generation per slot, survives the conn */
    uint32_t *free_slots;
    size_t free_count, slot_count;
    struct delayed *heap;
    size_t heap_len;
    uint64_t mode_seq;
    uint64_t tag_seq;
    uint64_t ctr[SIM_C_COUNT];
    int record_fd;
    char *rec; /* record lines of this batch, written before any answer goes out */
    size_t rec_len, rec_cap;
    struct out_state *out; /* --call-out / --notify, else NULL */
};

/* Process-wide: the fail-after budget (one atomic decrement per request only when configured). */
static atomic_uint_fast64_t sim_answered;

#define TAG_LISTEN UINT32_MAX
#define TAG_STOP   (UINT32_MAX - 1)
#define TAG_TIMER  (UINT32_MAX - 2)
#define TAG_OUT    (UINT32_MAX - 3)

static void sim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sim_log(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    /* one write per line so lines of several threads do not interleave */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- buffers ------------------------------------------------------------------------------ */

/** Grow `*buf` (capacity `*cap`) to hold `need` bytes, at most `max`. 0 or -ENOMEM/-E2BIG. */
static int buf_reserve(char **buf, size_t *cap, size_t need, size_t max)
{
    if (need <= *cap)
        return 0;
    if (need > max)
        return -E2BIG;
    size_t n = *cap ? *cap : SIM_IN_INITIAL;
    while (n < need)
        n *= 2;
    if (n > max)
        n = max;
    char *p = realloc(*buf, n);
    if (!p)
        return -ENOMEM;
    *buf = p;
    *cap = n;
    return 0;
}

/** A bounded append-only text buffer for one answer or one record line. */
struct text {
    char *p;
    size_t len, cap;
    bool overflow;
};

static void text_put(struct text *t, const char *s, size_t n)
{
    if (n == 0)
        return;
    if (t->overflow || n > t->cap - t->len) {
        t->overflow = true;
        return;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
}

static void text_slice(struct text *t, struct slice s)
{
    text_put(t, s.base, s.len);
}

static void text_str(struct text *t, const char *s)
{
    text_put(t, s, strlen(s));
}

static void text_fmt(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_fmt(struct text *t, const char *fmt, ...)
{
    if (t->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= t->cap - t->len) {
        t->overflow = true;
        return;
    }
    t->len += (size_t)n;
}

/** JSON string of `s` (quotes included), control bytes and non-ASCII escaped as \u00XX. */
static void text_json(struct text *t, struct slice s)
{
    text_put(t, "\"", 1);
    size_t run = 0; /* bytes before i that need no escape, copied in one go */
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.base[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            run++;
            continue;
        }
        text_put(t, s.base + i - run, run);
        run = 0;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            text_put(t, e, 2);
        } else {
            text_fmt(t, "\\u%04x", c);
        }
    }
    text_put(t, s.base + s.len - run, run);
    text_put(t, "\"", 1);
}

/* ---- TLS ---------------------------------------------------------------------------------- */

static int sim_ssl_idx = -1; /* ex_data index of the worker options on the SSL_CTX; set once */

static bool name_allowed(const struct sim_opts *o, const char *name, size_t len)
{
    for (size_t i = 0; i < o->allow_count; i++)
        if (strlen(o->allow[i]) == len && strncasecmp(o->allow[i], name, len) == 0)
            return true;
    return false;
}

/** Appends `name` to c->names (comma-separated, truncated at the buffer's end). */
static void conn_note_name(struct conn *c, const char *name, size_t len)
{
    size_t have = strlen(c->names);
    for (const char *p = c->names; *p;) { /* CN and SAN are often the same name: list it once */
        size_t n = strcspn(p, ",");
        if (n == len && strncasecmp(p, name, len) == 0)
            return;
        p += n + (p[n] == ',');
    }
    int n = snprintf(c->names + have, sizeof c->names - have, "%s%.*s", have ? "," : "", (int)len,
                     name);
    (void)n;
}

/** True when the leaf's CN or one of its DNS SANs is in the allowlist; fills c->names. */
static bool leaf_allowed(const struct sim_opts *o, struct conn *c, X509 *leaf)
{
    bool ok = false;
    X509_NAME *subj = X509_get_subject_name(leaf);
    X509_NAME_oneline(subj, c->subject, sizeof c->subject);
    for (int i = -1; (i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0;) {
        ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
        unsigned char *u = NULL;
        int n = ASN1_STRING_to_UTF8(&u, d);
        if (n > 0) {
            conn_note_name(c, (const char *)u, (size_t)n);
            ok = ok || name_allowed(o, (const char *)u, (size_t)n);
        }
        OPENSSL_free(u);
    }
    GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS)
            continue;
        const char *s = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
        size_t n = (size_t)ASN1_STRING_length(g->d.dNSName);
        conn_note_name(c, s, n);
        ok = ok || name_allowed(o, s, n);
    }
    GENERAL_NAMES_free(sans);
    return ok || o->allow_count == 0;
}

static bool verify_err_is_unknown_ca(int e)
{
    switch (e) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
        return true;
    default:
        return false;
    }
}

/* The chain check is OpenSSL's; on top, the leaf's CN/DNS SAN must be listed. A listed-name
 * failure sets the configured X509_V_ERR_* so that OpenSSL sends the matching alert. */
static int on_verify(int preverify_ok, X509_STORE_CTX *x)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct conn *c = SSL_get_app_data(ssl);
    const struct sim_opts *o = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), sim_ssl_idx);
    if (!preverify_ok) {
        int e = X509_STORE_CTX_get_error(x);
        if (X509_STORE_CTX_get_error_depth(x) == 0 && !c->names[0])
            (void)leaf_allowed(o, c, X509_STORE_CTX_get_current_cert(x)); /* names for the log */
        if (c->cause == TLS_CAUSE_NONE) {
            c->cause = verify_err_is_unknown_ca(e) ? TLS_CAUSE_UNKNOWN_CA : TLS_CAUSE_BAD_CERT;
            c->verify_err = e;
            X509 *cur = X509_STORE_CTX_get_current_cert(x);
            if (cur && !c->subject[0])
                X509_NAME_oneline(X509_get_subject_name(cur), c->subject, sizeof c->subject);
        }
        return 0;
    }
    if (X509_STORE_CTX_get_error_depth(x) != 0)
        return 1;
    if (leaf_allowed(o, c, X509_STORE_CTX_get_current_cert(x)))
        return 1;
    c->cause = TLS_CAUSE_NOT_ALLOWED;
    c->verify_err = o->reject_verify_err;
    X509_STORE_CTX_set_error(x, o->reject_verify_err);
    return 0;
}

static void on_tls_info(const SSL *ssl, int where, int ret)
{
    struct conn *c = SSL_get_app_data(ssl);
    if (!c)
        return;
    /* SSL_CB_READ_ALERT and SSL_CB_WRITE_ALERT share the SSL_CB_ALERT bit: test the direction */
    if (!(where & SSL_CB_ALERT))
        return;
    if (where & SSL_CB_WRITE)
        c->alert_sent = ret & 0xff;
    else if (where & SSL_CB_READ)
        c->alert_recv = ret & 0xff;
}

static SSL_CTX *tls_ctx_new(const struct sim_opts *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (o->max_tls)
        SSL_CTX_set_max_proto_version(ctx, o->max_tls);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* read-ahead: one read() takes every record the socket holds, not one syscall per record */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1 || SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1)
        goto fail;
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca);
    if (names)
        SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, on_verify);
    SSL_CTX_set_verify_depth(ctx, 8);
    SSL_CTX_set_info_callback(ctx, on_tls_info);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"ucmsim", 6);
    SSL_CTX_set_ex_data(ctx, sim_ssl_idx, (void *)o);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/** RFC 8446 §6 name of alert `a` ("unknown_ca"), "none" for -1. */
static const char *alert_name(int a)
{
    switch (a) {
    case -1:
        return "none";
    case 0:
        return "close_notify";
    case 10:
        return "unexpected_message";
    case 20:
        return "bad_record_mac";
    case 22:
        return "record_overflow";
    case 40:
        return "handshake_failure";
    case 42:
        return "bad_certificate";
    case 43:
        return "unsupported_certificate";
    case 44:
        return "certificate_revoked";
    case 45:
        return "certificate_expired";
    case 46:
        return "certificate_unknown";
    case 47:
        return "illegal_parameter";
    case 48:
        return "unknown_ca";
    case 49:
        return "access_denied";
    case 50:
        return "decode_error";
    case 51:
        return "decrypt_error";
    case 70:
        return "protocol_version";
    case 71:
        return "insufficient_security";
    case 80:
        return "internal_error";
    case 90:
        return "user_canceled";
    case 109:
        return "missing_extension";
    case 110:
        return "unsupported_extension";
    case 112:
        return "unrecognized_name";
    case 116:
        return "certificate_required";
    case 120:
        return "no_application_protocol";
    default:
        return "other";
    }
}

/** One log line for a failed handshake, and its counter. */
static void log_tls_failure(struct worker *w, struct conn *c)
{
    unsigned long e = ERR_peek_error();
    const char *cause;
    enum sim_ctr ctr;
    if (c->cause == TLS_CAUSE_UNKNOWN_CA) {
        cause = "unknown_ca";
        ctr = SIM_C_TLS_UNKNOWN_CA;
    } else if (c->cause == TLS_CAUSE_NOT_ALLOWED) {
        cause = "not_in_allowlist";
        ctr = SIM_C_TLS_NOT_ALLOWED;
    } else if (c->cause == TLS_CAUSE_BAD_CERT) {
        cause = "bad_certificate";
        ctr = SIM_C_TLS_BAD_CERT;
    } else if (ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        cause = "no_client_certificate";
        ctr = SIM_C_TLS_NO_CERT;
    } else {
        cause = "other";
        ctr = SIM_C_TLS_OTHER;
    }
    w->ctr[ctr]++;
    char err[160] = "";
    if (e)
        ERR_error_string_n(e, err, sizeof err);
    sim_log("ucmsim[%u] tls_handshake_failed peer=%s cause=%s alert_sent=%s alert_received=%s "
            "subject=\"%s\" names=\"%s\" verify=\"%s\" error=\"%s\"",
            w->id, c->peer, cause, alert_name(c->alert_sent), alert_name(c->alert_recv), c->subject,
            c->names, c->verify_err ? X509_verify_cert_error_string(c->verify_err) : "", err);
    ERR_clear_error();
}

/* ---- connections -------------------------------------------------------------------------- */

static uint64_t conn_tag(const struct conn *c)
{
    return ((uint64_t)c->gen << 32) | c->slot;
}

static void conn_free(struct worker *w, struct conn *c)
{
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl) {
        SSL_set_app_data(c->ssl, NULL);
        SSL_free(c->ssl);
    }
    close(c->fd);
    w->conns[c->slot] = NULL;
    w->gens[c->slot]++;
    w->free_slots[w->free_count++] = c->slot;
    free(c->in);
    free(c->out);
    free(c);
}

static void conn_set_events(struct worker *w, struct conn *c, uint32_t ev)
{
    if (ev == c->events)
        return;
    struct epoll_event e = {.events = ev, .data.u64 = conn_tag(c)};
    if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &e) == 0)
        c->events = ev;
}

/** Queue `len` bytes of answer on `c`. 0, or -E2BIG/-ENOMEM (the caller closes). */
static int conn_queue(struct conn *c, const char *p, size_t len)
{
    int r = buf_reserve(&c->out, &c->out_cap, c->out_len + len, 64u * 1024 * 1024);
    if (r < 0)
        return r;
    memcpy(c->out + c->out_len, p, len);
    c->out_len += len;
    return 0;
}

/** Write what is queued. 0 when done or waiting for EPOLLOUT, -EIO when the conn is dead. */
static void record_flush(struct worker *w);

static int conn_flush(struct worker *w, struct conn *c)
{
    if (w->rec_len)
        record_flush(w);
    size_t off = 0;
    int rc = 0;
    bool want_write = false;
    while (off < c->out_len) {
        size_t chunk = c->out_len - off;
        if (chunk > INT_MAX)
            chunk = INT_MAX;
        int n = SSL_write(c->ssl, c->out + off, (int)chunk);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE) {
            want_write = true;
            break;
        }
        if (e == SSL_ERROR_WANT_READ)
            break;
        rc = -EIO;
        break;
    }
    if (off) {
        memmove(c->out, c->out + off, c->out_len - off);
        c->out_len -= off;
    }
    if (rc == 0) {
        /* a client that does not read its answers is not read either (no busy loop on EPOLLIN) */
        uint32_t ev = c->out_len < SIM_OUT_HIGH || !want_write ? EPOLLIN : 0;
        conn_set_events(w, c, ev | (want_write || c->read_wants_write ? EPOLLOUT : 0));
    }
    return rc;
}

/* ---- SIP ---------------------------------------------------------------------------------- */

enum answer {
    ANSWER_NONE = 0, /* ACK: nothing to say */
    ANSWER_OK,
    ANSWER_MISMATCH,
    ANSWER_UNAVAILABLE,
    ANSWER_NOT_IMPLEMENTED,
    ANSWER_DROP,
    /* ANSWER_COUNT */
    ANSWER_COUNT
};

static bool every(uint64_t n, unsigned k)
{
    return k && n % k == 0;
}

/** The requested expiry of the first Contact (its expires param, else the Expires header). */
static bool requested_expires(const struct sip_msg *m, uint32_t *out)
{
    struct sip_value_iter it;
    struct slice v;
    sip_values_begin(&it, m, SIP_HDR_CONTACT);
    if (sip_values_next(&it, &v)) {
        struct sip_name_addr na;
        if (sip_parse_name_addr(v, &na) == 0 && na.expires.len &&
            sip_parse_expires(na.expires, out) == 0)
            return true;
    }
    const struct sip_header *h = sip_first(m, SIP_HDR_EXPIRES);
    return h && sip_parse_expires(h->value, out) == 0;
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

/** Extra header lines of an answer: each written into `t` and listed as a slice for the builder. */
struct extras {
    struct text t;
    struct slice line[SIM_MAX_CONTACTS + 4];
    size_t n;
    size_t start; /* where the line being written began in t */
};

static void extra_begin(struct extras *x)
{
    x->start = x->t.len;
}

static void extra_end(struct extras *x)
{
    if (x->n < sizeof x->line / sizeof x->line[0] && !x->t.overflow)
        x->line[x->n++] = slice_make(x->t.p + x->start, x->t.len - x->start);
}

/** The Contacts of a REGISTER echoed in its 200, each with ;expires=N (its own ask, capped). */
static void put_contacts(struct extras *x, const struct sip_msg *m, uint32_t max, uint32_t dflt)
{
    struct sip_value_iter it;
    struct slice v;
    size_t count = 0;
    sip_values_begin(&it, m, SIP_HDR_CONTACT);
    while (count < SIM_MAX_CONTACTS && sip_values_next(&it, &v)) {
        struct sip_name_addr na;
        if (sip_parse_name_addr(v, &na) != 0 || na.star)
            continue;
        uint32_t e = dflt;
        if (na.expires.len && sip_parse_expires(na.expires, &e) != 0)
            e = dflt;
        count++;
        struct text *t = &x->t;
        extra_begin(x);
        text_str(t, "Contact: ");
        if (na.display.len) {
            text_str(t, na.display_quoted ? "\"" : "");
            text_slice(t, na.display);
            text_str(t, na.display_quoted ? "\" " : " ");
        }
        text_str(t, "<");
        text_slice(t, na.uri_text);
        text_str(t, ">");
        struct sip_param_iter pi;
        struct sip_param p;
        sip_params_begin(&pi, na.params, SIP_PARAM_HEADER);
        while (sip_params_next(&pi, &p) == 1) {
            if (sip_param_is(&p, SLICE_LIT("expires")))
                continue;
            text_str(t, ";");
            text_slice(t, p.name);
            if (p.has_value) {
                text_str(t, p.quoted ? "=\"" : "=");
                text_slice(t, p.value);
                text_str(t, p.quoted ? "\"" : "");
            }
        }
        text_fmt(t, ";expires=%" PRIu32, min_u32(e, max));
        extra_end(x);
    }
}

/**
 * The answer `a` to request `m` into `out[0..cap)`, by sip_build_response(): status line, Via
 * (all), From, To (+tag), Call-ID, CSeq copied, then the mode's headers. Length or -errno.
 */
static ssize_t build_answer(struct worker *w, const struct sip_msg *m, enum answer a, char *scratch,
                            size_t scratch_cap, char *out, size_t cap)
{
    const struct sim_opts *o = w->o;
    static const struct {
        int status;
        const char *reason;
    } st[ANSWER_COUNT] = {
        [ANSWER_OK] = {200, "OK"},
        [ANSWER_MISMATCH] = {403, "Forbidden"},
        [ANSWER_UNAVAILABLE] = {503, "Service Unavailable"},
        [ANSWER_NOT_IMPLEMENTED] = {501, "Not Implemented"},
    };
    struct extras x = {.t = {.p = scratch, .cap = scratch_cap}};
    if (a == ANSWER_OK && m->method == SIP_METHOD_REGISTER) {
        uint32_t req = o->max_expires;
        if (!requested_expires(m, &req))
            req = o->max_expires;
        uint32_t granted = min_u32(req, o->max_expires);
        put_contacts(&x, m, o->max_expires, granted);
        extra_begin(&x);
        text_fmt(&x.t, "Expires: %" PRIu32, granted);
        extra_end(&x);
    } else if (a == ANSWER_MISMATCH) {
        extra_begin(&x);
        text_str(&x.t, "Retry-After: 35");
        extra_end(&x);
        extra_begin(&x);
        text_fmt(&x.t, "Warning: 399 %s \"SIP OAuth Registration port Mismatch\"", o->node);
        extra_end(&x);
    } else if (a == ANSWER_UNAVAILABLE) {
        extra_begin(&x);
        text_str(&x.t, "Retry-After: 35");
        extra_end(&x);
    } else if (a == ANSWER_OK && m->method == SIP_METHOD_OPTIONS) {
        extra_begin(&x);
        text_str(&x.t, "Allow: REGISTER, OPTIONS");
        extra_end(&x);
    }
    extra_begin(&x);
    text_str(&x.t, "Server: sipedge-ucmsim");
    extra_end(&x);
    if (x.t.overflow)
        return -ENOSPC;
    char tag[40];
    int tl = snprintf(tag, sizeof tag, "ucm%x-%" PRIx64, w->id, ++w->tag_seq);
    return sip_build_response(m, st[a].status, slice_make(st[a].reason, strlen(st[a].reason)),
                              slice_make(tag, (size_t)tl), x.line, x.n, out, cap);
}

static const char *answer_name(enum answer a, bool delayed)
{
    static const char *const names[ANSWER_COUNT] = {
        [ANSWER_NONE] = "none",           [ANSWER_OK] = "200",
        [ANSWER_MISMATCH] = "403",        [ANSWER_UNAVAILABLE] = "503",
        [ANSWER_NOT_IMPLEMENTED] = "501", [ANSWER_DROP] = "drop",
    };
    (void)delayed;
    return names[a];
}

static void json_header_values(struct text *t, const struct sip_msg *m, enum sip_hdr id)
{
    struct sip_value_iter it;
    struct slice v;
    bool first = true;
    text_str(t, "[");
    sip_values_begin(&it, m, id);
    while (sip_values_next(&it, &v)) {
        if (!first)
            text_str(t, ",");
        first = false;
        text_json(t, v);
    }
    text_str(t, "]");
}

static void json_header(struct text *t, const struct sip_msg *m, const char *key, enum sip_hdr id)
{
    const struct sip_header *h = sip_first(m, id);
    text_fmt(t, ",\"%s\":", key);
    if (h)
        text_json(t, h->value);
    else
        text_str(t, "null");
}

/** Appends one JSON line describing request `m` (raw bytes `raw`) to the record file. */
static void record_request(struct worker *w, struct conn *c, const struct sip_msg *m,
                           struct slice raw, enum answer a, bool delayed)
{
    size_t cap = 4096 + raw.len * 13; /* values and raw, each escaped at most 6-fold */
    if (buf_reserve(&w->rec, &w->rec_cap, w->rec_len + cap, SIZE_MAX / 2) < 0)
        return;
    struct text t = {.p = w->rec + w->rec_len, .cap = cap};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    text_fmt(&t, "{\"ts\":%lld.%06ld,\"thread\":%u,\"peer\":", (long long)ts.tv_sec,
             ts.tv_nsec / 1000, w->id);
    text_json(&t, slice_make(c->peer, strlen(c->peer)));
    text_str(&t, ",\"peer_names\":");
    text_json(&t, slice_make(c->names, strlen(c->names)));
    text_str(&t, ",\"method\":");
    text_json(&t, m->method_text);
    text_str(&t, ",\"uri\":");
    text_json(&t, m->uri);
    json_header(&t, m, "call_id", SIP_HDR_CALL_ID);
    json_header(&t, m, "cseq", SIP_HDR_CSEQ);
    json_header(&t, m, "from", SIP_HDR_FROM);
    json_header(&t, m, "to", SIP_HDR_TO);
    struct sip_value_iter it;
    struct slice top = SLICE_NULL;
    sip_values_begin(&it, m, SIP_HDR_VIA);
    text_str(&t, ",\"via_top\":");
    if (sip_values_next(&it, &top))
        text_json(&t, top);
    else
        text_str(&t, "null");
    text_str(&t, ",\"via\":");
    json_header_values(&t, m, SIP_HDR_VIA);
    text_str(&t, ",\"path\":");
    json_header_values(&t, m, SIP_HDR_PATH);
    text_str(&t, ",\"contact\":");
    json_header_values(&t, m, SIP_HDR_CONTACT);
    json_header(&t, m, "expires", SIP_HDR_EXPIRES);
    json_header(&t, m, "max_forwards", SIP_HDR_MAX_FORWARDS);
    text_fmt(&t, ",\"proxy_authorization\":%s,\"authorization\":%s",
             sip_first(m, SIP_HDR_PROXY_AUTHORIZATION) ? "true" : "false",
             sip_first(m, SIP_HDR_AUTHORIZATION) ? "true" : "false");
    text_fmt(&t, ",\"answer\":\"%s\",\"delayed\":%s", answer_name(a, delayed),
             delayed ? "true" : "false");
    if (w->o->record_raw) {
        text_str(&t, ",\"raw\":");
        text_json(&t, raw);
    }
    text_str(&t, "}\n");
    if (!t.overflow)
        w->rec_len += t.len;
}

/** Write the buffered record lines: whole lines in one write() on the O_APPEND file, so lines
 *  of several threads never interleave. Called before any answer is sent. */
static void record_flush(struct worker *w)
{
    size_t off = 0;
    while (off < w->rec_len) {
        ssize_t n = write(w->record_fd, w->rec + off, w->rec_len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            sim_log("ucmsim[%u] record write failed: %s", w->id, strerror(errno));
            break;
        }
        off += (size_t)n;
    }
    w->rec_len = 0;
}

/** Which answer request `m` gets, by the configured modes. */
static enum answer decide(struct worker *w, const struct sip_msg *m, bool *delay)
{
    const struct sim_opts *o = w->o;
    *delay = false;
    if (m->method == SIP_METHOD_ACK)
        return ANSWER_NONE;
    bool known = m->method == SIP_METHOD_REGISTER || m->method == SIP_METHOD_OPTIONS;
    bool modes = m->method == SIP_METHOD_REGISTER || o->apply == SIM_APPLY_ALL;
    if (!modes)
        return known ? ANSWER_OK : ANSWER_NOT_IMPLEMENTED;
    uint64_t n = ++w->mode_seq;
    if (o->fail_after && atomic_fetch_add(&sim_answered, 1) >= o->fail_after)
        return ANSWER_UNAVAILABLE;
    if (every(n, o->drop_every))
        return ANSWER_DROP;
    *delay = o->delay_ms && every(n, o->delay_every);
    if (!known)
        return ANSWER_NOT_IMPLEMENTED;
    if (m->method == SIP_METHOD_REGISTER && every(n, o->mismatch_every))
        return ANSWER_MISMATCH;
    return ANSWER_OK;
}

static void heap_swap(struct delayed *h, size_t a, size_t b)
{
    struct delayed t = h[a];
    h[a] = h[b];
    h[b] = t;
}

static void timer_arm(struct worker *w)
{
    struct itimerspec its = {0};
    if (w->heap_len) {
        uint64_t due = w->heap[0].due_ns;
        its.it_value.tv_sec = (time_t)(due / 1000000000u);
        its.it_value.tv_nsec = (long)(due % 1000000000u);
        if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
            its.it_value.tv_nsec = 1;
    }
    timerfd_settime(w->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/** Park an answer for `delay_ms`. 0 or -ENOMEM/-ENOSPC (the caller answers at once instead). */
static int delay_push(struct worker *w, struct conn *c, const char *p, size_t len)
{
    if (w->heap_len >= SIM_MAX_DELAYED)
        return -ENOSPC;
    char *copy = malloc(len);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, p, len);
    struct delayed d = {now_ns() + (uint64_t)w->o->delay_ms * 1000000u, c->slot, c->gen, copy, len};
    size_t i = w->heap_len++;
    w->heap[i] = d;
    while (i && w->heap[(i - 1) / 2].due_ns > w->heap[i].due_ns) {
        heap_swap(w->heap, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    if (i == 0)
        timer_arm(w);
    return 0;
}

static struct delayed delay_pop(struct worker *w)
{
    struct delayed top = w->heap[0];
    w->heap[0] = w->heap[--w->heap_len];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->heap_len && w->heap[l].due_ns < w->heap[m].due_ns)
            m = l;
        if (r < w->heap_len && w->heap[r].due_ns < w->heap[m].due_ns)
            m = r;
        if (m == i)
            break;
        heap_swap(w->heap, i, m);
        i = m;
    }
    return top;
}

static void on_timer(struct worker *w)
{
    uint64_t ticks;
    ssize_t r = read(w->timerfd, &ticks, sizeof ticks);
    (void)r;
    uint64_t now = now_ns();
    while (w->heap_len && w->heap[0].due_ns <= now) {
        struct delayed d = delay_pop(w);
        struct conn *c = d.slot < w->slot_count ? w->conns[d.slot] : NULL;
        if (c && c->gen == d.gen && c->state == CONN_OPEN) {
            if (conn_queue(c, d.data, d.len) < 0 || conn_flush(w, c) < 0)
                conn_free(w, c);
        } else {
            w->ctr[SIM_C_DELAYED_GONE]++;
        }
        free(d.data);
    }
    timer_arm(w);
}

#include "bench/ucmsim_calls.h"
#include "bench/ucmsim_out.h"

/** Handle one framed request. 0, or <0 when the connection must close. */
static int handle_request(struct worker *w, struct conn *c, const struct sip_msg *m,
                          struct slice raw)
{
    w->ctr[SIM_C_REQUESTS]++;
    if (call_handles(m) && w->o->apply != SIM_APPLY_ALL) {
        if (w->record_fd >= 0)
            record_request(w, c, m, raw, m->method == SIP_METHOD_ACK ? ANSWER_NONE : ANSWER_OK,
                           false);
        return call_answer(w, c, m);
    }
    w->ctr[m->method == SIP_METHOD_REGISTER  ? SIM_C_REGISTER
           : m->method == SIP_METHOD_OPTIONS ? SIM_C_OPTIONS
                                             : SIM_C_OTHER_METHOD]++;
    bool delay;
    enum answer a = decide(w, m, &delay);
    if (w->out && a == ANSWER_OK && m->method == SIP_METHOD_REGISTER)
        out_register(w, c, m);
    if (w->record_fd >= 0)
        record_request(w, c, m, raw, a, delay);
    if (a == ANSWER_NONE)
        return 0;
    if (a == ANSWER_DROP) {
        w->ctr[SIM_C_DROPPED]++;
        return 0;
    }
    static const enum sim_ctr ctr[ANSWER_COUNT] = {
        [ANSWER_OK] = SIM_C_ANSWER_200,
        [ANSWER_MISMATCH] = SIM_C_ANSWER_403,
        [ANSWER_UNAVAILABLE] = SIM_C_ANSWER_503,
        [ANSWER_NOT_IMPLEMENTED] = SIM_C_ANSWER_501,
    };
    w->ctr[ctr[a]]++;
    char scratch[4096], buf[8192];
    ssize_t len = build_answer(w, m, a, scratch, sizeof scratch, buf, sizeof buf);
    char *big = NULL, *p = buf;
    if (len == -ENOSPC) { /* many Vias or Contacts: retry with room for all of them */
        size_t cap = SIM_RESP_MAX + 2 * raw.len;
        big = malloc(2 * cap);
        if (!big)
            return -ENOMEM;
        p = big + cap;
        len = build_answer(w, m, a, big, cap, p, cap);
    }
    int rc = 0;
    if (len < 0) {
        sim_log("ucmsim[%u] cannot build answer peer=%s: %s", w->id, c->peer, strerror((int)-len));
    } else if (delay && delay_push(w, c, p, (size_t)len) == 0) {
        w->ctr[SIM_C_DELAYED]++;
    } else {
        rc = conn_queue(c, p, (size_t)len);
    }
    free(big);
    return rc;
}

/** Frames and answers every complete message in c->in. 0, or <0 when the conn must close. */
static int process_input(struct worker *w, struct conn *c)
{
    struct sip_header hdrs[SIM_MAX_HEADERS];
    struct sip_msg m;
    size_t off = 0;
    int rc = 0;
    while (off < c->in_len && c->out_len < SIM_OUT_HIGH) {
        char *p = c->in + off;
        size_t len = c->in_len - off;
        /* RFC 5626 keep-alive: a double CRLF is answered with one CRLF; lone CRLFs skipped */
        if (p[0] == '\r' || p[0] == '\n') {
            if (len >= 4 && memcmp(p, "\r\n\r\n", 4) == 0) {
                w->ctr[SIM_C_KEEPALIVE]++;
                rc = conn_queue(c, "\r\n", 2);
                off += 4;
            } else if (len < 4 && memcmp(p, "\r\n\r\n", len) == 0) {
                break; /* may still become a keep-alive */
            } else {
                off += len >= 2 && p[0] == '\r' && p[1] == '\n' ? 2 : 1;
            }
            if (rc < 0)
                break;
            c->scan_last = 0;
            continue;
        }
        sip_msg_init(&m, hdrs, SIM_MAX_HEADERS);
        ssize_t n = sip_scan(p, len, off == 0 ? c->scan_last : 0, &m);
        if (n == SIP_INCOMPLETE) {
            c->scan_last = len;
            break;
        }
        if (n < 0) {
            w->ctr[SIM_C_BAD_MESSAGE]++;
            sim_log("ucmsim[%u] bad_message peer=%s error=%s at=%zu", w->id, c->peer,
                    sip_err_name((enum sip_err) - n), m.err_pos);
            rc = -EPROTO;
            break;
        }
        c->scan_last = 0;
        if (m.is_request)
            rc = handle_request(w, c, &m, slice_make(p, (size_t)n));
        else {
            w->ctr[SIM_C_RESPONSES_IN]++;
            if (w->out)
                out_response(w, c, &m);
        }
        off += (size_t)n;
        if (rc < 0)
            break;
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    return rc;
}

/** Read and answer until the socket is drained (or the client is not reading). */
static void conn_readable(struct worker *w, struct conn *c)
{
    if (c->state == CONN_HANDSHAKE) {
        int r = SSL_accept(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) {
                conn_set_events(w, c, EPOLLIN);
                return;
            }
            if (e == SSL_ERROR_WANT_WRITE) {
                conn_set_events(w, c, EPOLLIN | EPOLLOUT);
                return;
            }
            log_tls_failure(w, c);
            conn_free(w, c);
            return;
        }
        c->state = CONN_OPEN;
        w->ctr[SIM_C_TLS_OK]++;
        conn_set_events(w, c, EPOLLIN);
    }
    for (;;) {
        bool full = false; /* stopped reading: answers above the mark */
        for (;;) {
            if (c->out_len >= SIM_OUT_HIGH) {
                full = true;
                break;
            }
            if (c->in_len == c->in_cap &&
                buf_reserve(&c->in, &c->in_cap, c->in_len + SIM_IN_INITIAL, SIM_IN_MAX) < 0) {
                sim_log("ucmsim[%u] message_too_large peer=%s", w->id, c->peer);
                w->ctr[SIM_C_BAD_MESSAGE]++;
                conn_free(w, c);
                return;
            }
            int n = SSL_read(c->ssl, c->in + c->in_len, (int)(c->in_cap - c->in_len));
            if (n > 0) {
                c->in_len += (size_t)n;
                if (process_input(w, c) < 0) {
                    conn_flush(w, c);
                    conn_free(w, c);
                    return;
                }
                continue;
            }
            int e = SSL_get_error(c->ssl, n);
            c->read_wants_write = e == SSL_ERROR_WANT_WRITE;
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                break;
            if (e != SSL_ERROR_ZERO_RETURN && c->alert_recv >= 0)
                sim_log("ucmsim[%u] tls_closed peer=%s alert_received=%s", w->id, c->peer,
                        alert_name(c->alert_recv));
            ERR_clear_error();
            conn_free(w, c);
            return;
        }
        if (conn_flush(w, c) < 0) {
            conn_free(w, c);
            return;
        }
        /* Drained everything, or wait for EPOLLOUT (conn_writable resumes). If the flush went
         * below the mark, requests may wait in c->in or inside SSL (read-ahead) where epoll
         * cannot see them: go on here. Each extra round follows bytes written, so it ends. */
        if (!full || c->out_len >= SIM_OUT_HIGH)
            return;
        if (process_input(w, c) < 0) {
            conn_flush(w, c);
            conn_free(w, c);
            return;
        }
    }
}

static void conn_writable(struct worker *w, struct conn *c)
{
    if (c->state == CONN_HANDSHAKE || c->read_wants_write) {
        conn_readable(w, c);
        return;
    }
    bool was_full = c->out_len >= SIM_OUT_HIGH;
    if (conn_flush(w, c) < 0) {
        conn_free(w, c);
        return;
    }
    /* answers drained below the mark: bytes may wait inside SSL where epoll cannot see them */
    if (was_full && c->out_len < SIM_OUT_HIGH) {
        if (process_input(w, c) < 0) {
            conn_free(w, c);
            return;
        }
        conn_readable(w, c);
    }
}

static void on_accept(struct worker *w)
{
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(w->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (w->free_count == 0) {
            w->ctr[SIM_C_OVERLOAD]++;
            close(fd);
            continue;
        }
        struct conn *c = calloc(1, sizeof *c);
        SSL *ssl = c ? SSL_new(w->ctx) : NULL;
        if (!ssl) {
            free(c);
            close(fd);
            w->ctr[SIM_C_OVERLOAD]++;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (w->o->sockbuf) {
            int b = (int)w->o->sockbuf;
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &b, sizeof b);
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &b, sizeof b);
        }
        c->fd = fd;
        c->ssl = ssl;
        c->slot = w->free_slots[--w->free_count];
        c->gen = w->gens[c->slot];
        c->alert_sent = c->alert_recv = -1;
        char host[INET6_ADDRSTRLEN] = "?";
        unsigned port = 0;
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            port = ntohs(a->sin6_port);
        }
        snprintf(c->peer, sizeof c->peer, "%s:%u", host, port);
        SSL_set_fd(ssl, fd);
        SSL_set_app_data(ssl, c);
        SSL_set_accept_state(ssl);
        w->conns[c->slot] = c;
        w->ctr[SIM_C_CONNS]++;
        struct epoll_event e = {.events = EPOLLIN, .data.u64 = conn_tag(c)};
        c->events = EPOLLIN;
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
            conn_free(w, c);
            continue;
        }
    }
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct epoll_event evs[SIM_EPOLL_BATCH];
    bool stop = false;
    while (!stop) {
        int n = epoll_wait(w->epfd, evs, SIM_EPOLL_BATCH, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            sim_log("ucmsim[%u] epoll_wait: %s", w->id, strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            uint32_t slot = (uint32_t)evs[i].data.u64;
            uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
            if (slot == TAG_LISTEN) {
                on_accept(w);
                continue;
            }
            if (slot == TAG_STOP) {
                stop = true;
                continue;
            }
            if (slot == TAG_TIMER) {
                on_timer(w);
                continue;
            }
            if (slot == TAG_OUT) {
                out_tick(w);
                continue;
            }
            struct conn *c = slot < w->slot_count ? w->conns[slot] : NULL;
            if (!c || c->gen != gen)
                continue; /* closed earlier in this batch */
            if (evs[i].events & (EPOLLERR | EPOLLHUP | EPOLLIN))
                conn_readable(w, c);
            /* conn_readable may have freed c: look it up again before the write side */
            c = w->conns[slot];
            if (c && c->gen == gen && (evs[i].events & EPOLLOUT))
                conn_writable(w, c);
        }
        if (w->rec_len)
            record_flush(w);
    }
    return NULL;
}

/* ---- set-up ------------------------------------------------------------------------------- */

static int listen_socket(const struct sim_opts *o, unsigned port)
{
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, o->addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        sl = sizeof *a4;
    } else if (inet_pton(AF_INET6, o->addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        sl = sizeof *a6;
    } else {
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 4096) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return -errno;
    return ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                   : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static int worker_init(struct worker *w, const struct sim_opts *o, SSL_CTX *ctx, int lfd,
                       int record_fd)
{
    w->o = o;
    w->ctx = ctx;
    w->lfd = lfd;
    w->record_fd = record_fd;
    w->slot_count = SIM_MAX_CONNS;
    w->conns = calloc(SIM_MAX_CONNS, sizeof *w->conns);
    w->gens = calloc(SIM_MAX_CONNS, sizeof *w->gens);
    w->free_slots = calloc(SIM_MAX_CONNS, sizeof *w->free_slots);
    w->heap = o->delay_ms ? calloc(SIM_MAX_DELAYED, sizeof *w->heap) : NULL;
    if (!w->conns || !w->gens || !w->free_slots || (o->delay_ms && !w->heap))
        return -ENOMEM;
    for (uint32_t i = 0; i < SIM_MAX_CONNS; i++)
        w->free_slots[w->free_count++] = SIM_MAX_CONNS - 1 - i;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (w->epfd < 0 || w->stopfd < 0 || w->timerfd < 0)
        return -errno;
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
    epoll_ctl(w->epfd, EPOLL_CTL_ADD, lfd, &e);
    e.data.u64 = TAG_STOP;
    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->stopfd, &e);
    e.data.u64 = TAG_TIMER;
    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->timerfd, &e);
    return out_init(w);
}

static void worker_deinit(struct worker *w)
{
    out_deinit(w);
    for (size_t i = 0; w->conns && i < w->slot_count; i++)
        if (w->conns[i])
            conn_free(w, w->conns[i]);
    while (w->heap_len)
        free(delay_pop(w).data);
    free(w->conns);
    free(w->gens);
    free(w->free_slots);
    free(w->heap);
    if (w->rec_len)
        record_flush(w);
    free(w->rec);
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->stopfd >= 0)
        close(w->stopfd);
    if (w->timerfd >= 0)
        close(w->timerfd);
    if (w->lfd >= 0)
        close(w->lfd);
}

static int write_file(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int write_file(const char *path, const char *fmt, ...)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    if (fclose(f) != 0 || rename(tmp, path) != 0) /* rename: readers never see half a file */
        return -errno;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: sipedge-ucmsim --cert PEM --key PEM --ca PEM [options]\n"
               "  --addr IP              listen address (default 127.0.0.1)\n"
               "  --port N               listen port, 0 = ephemeral (default 5091)\n"
               "  --threads N            event-loop threads, SO_REUSEPORT (default 1)\n"
               "  --cert/--key PEM       the server (\"Tomcat\") certificate chain and key\n"
               "  --ca PEM               CA bundle client certificates must chain to\n"
               "  --allow NAME           accepted client CN or DNS SAN (repeatable; none = any)\n"
               "  --reject-alert A       alert for a chained but unlisted client: bad_certificate\n"
               "                         (default), certificate_unknown, unsupported_certificate,\n"
               "                         handshake_failure\n"
               "  --max-tls 1.2|1.3      highest TLS version offered (default 1.3)\n"
               "  --max-expires N        cap on granted Expires (default 120)\n"
               "  --node NAME            node name in the Warning header (default ucmsim)\n"
               "  --mode ok|port-mismatch            answer of every REGISTER (default ok)\n"
               "  --mismatch-every K     port-mismatch 403 for every K-th request\n"
               "  --delay-ms N           answer after N ms (timer; the loop keeps running)\n"
               "  --delay-every K        delay only every K-th request (default 1 = all)\n"
               "  --drop | --drop-every K            never answer (every K-th) request\n"
               "  --fail-after N         after N requests answer 503 + Retry-After: 35\n"
               "  --apply-to register|all            requests the modes act on (default register)\n"
               "  --record FILE          append one JSON line per received request\n"
               "  --record-raw           include the raw request in each JSON line\n"
               "  --port-file FILE       write the bound port; --pid-file FILE: the pid\n"
               "  --sockbuf BYTES        SO_SNDBUF/SO_RCVBUF of accepted sockets (tests)\n"
               "  --call-out RATE        INVITE registered clients (Route: Path, on their\n"
               "                         connection) RATE/s: 180/200 -> ACK, BYE after the hold\n"
               "  --notify RATE          NOTIFY (Event: message-summary) them RATE/s\n"
               "  --out-count N          at most N INVITEs + NOTIFYs in all (default: no limit)\n"
               "  --out-hold-ms MS       call hold before the BYE (default 0)\n"
               "  --out-timeout-ms MS    an unanswered INVITE/BYE/NOTIFY fails (default 5000)\n");
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v > max || *s == '-')
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_opts(int argc, char **argv, struct sim_opts *o)
{
    enum {
        O_ADDR = 256,
        O_PORT,
        O_THREADS,
        O_CERT,
        O_KEY,
        O_CA,
        O_ALLOW,
        O_REJECT_ALERT,
        O_MAX_TLS,
        O_MAX_EXPIRES,
        O_NODE,
        O_MODE,
        O_MISMATCH_EVERY,
        O_DELAY_MS,
        O_DELAY_EVERY,
        O_DROP,
        O_DROP_EVERY,
        O_FAIL_AFTER,
        O_APPLY_TO,
        O_RECORD,
        O_RECORD_RAW,
        O_PORT_FILE,
        O_PID_FILE,
        O_SOCKBUF,
        O_CALL_OUT,
        O_NOTIFY,
        O_OUT_COUNT,
        O_OUT_HOLD,
        O_OUT_TIMEOUT,
        O_HELP,
    };
    static const struct option lo[] = {
        {"addr", required_argument, NULL, O_ADDR},
        {"port", required_argument, NULL, O_PORT},
        {"threads", required_argument, NULL, O_THREADS},
        {"cert", required_argument, NULL, O_CERT},
        {"key", required_argument, NULL, O_KEY},
        {"ca", required_argument, NULL, O_CA},
        {"allow", required_argument, NULL, O_ALLOW},
        {"reject-alert", required_argument, NULL, O_REJECT_ALERT},
        {"max-tls", required_argument, NULL, O_MAX_TLS},
        {"max-expires", required_argument, NULL, O_MAX_EXPIRES},
        {"node", required_argument, NULL, O_NODE},
        {"mode", required_argument, NULL, O_MODE},
        {"mismatch-every", required_argument, NULL, O_MISMATCH_EVERY},
        {"delay-ms", required_argument, NULL, O_DELAY_MS},
        {"delay-every", required_argument, NULL, O_DELAY_EVERY},
        {"drop", no_argument, NULL, O_DROP},
        {"drop-every", required_argument, NULL, O_DROP_EVERY},
        {"fail-after", required_argument, NULL, O_FAIL_AFTER},
        {"apply-to", required_argument, NULL, O_APPLY_TO},
        {"record", required_argument, NULL, O_RECORD},
        {"record-raw", no_argument, NULL, O_RECORD_RAW},
        {"port-file", required_argument, NULL, O_PORT_FILE},
        {"pid-file", required_argument, NULL, O_PID_FILE},
        {"sockbuf", required_argument, NULL, O_SOCKBUF},
        {"call-out", required_argument, NULL, O_CALL_OUT},
        {"notify", required_argument, NULL, O_NOTIFY},
        {"out-count", required_argument, NULL, O_OUT_COUNT},
        {"out-hold-ms", required_argument, NULL, O_OUT_HOLD},
        {"out-timeout-ms", required_argument, NULL, O_OUT_TIMEOUT},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    *o = (struct sim_opts){
        .addr = "127.0.0.1",
        .port = 5091,
        .threads = 1,
        .reject_verify_err = X509_V_ERR_CERT_REJECTED,
        .reject_alert = "bad_certificate",
        .max_expires = 120,
        .node = "ucmsim",
        .delay_every = 1,
        .out_timeout_ms = 5000,
    };
    int ch;
    unsigned long long v;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case O_ADDR:
            o->addr = optarg;
            break;
        case O_PORT:
            if (parse_uint(optarg, 65535, &v) < 0)
                goto bad;
            o->port = (unsigned)v;
            break;
        case O_THREADS:
            if (parse_uint(optarg, SIM_MAX_THREADS, &v) < 0 || v == 0)
                goto bad;
            o->threads = (unsigned)v;
            break;
        case O_CERT:
            o->cert = optarg;
            break;
        case O_KEY:
            o->key = optarg;
            break;
        case O_CA:
            o->ca = optarg;
            break;
        case O_ALLOW:
            if (o->allow_count == SIM_MAX_ALLOW)
                goto bad;
            o->allow[o->allow_count++] = optarg;
            break;
        case O_REJECT_ALERT:
            /* OpenSSL turns the verify error into the alert (ssl_verify_alarm_type) */
            if (strcmp(optarg, "bad_certificate") == 0)
                o->reject_verify_err = X509_V_ERR_CERT_REJECTED;
            else if (strcmp(optarg, "certificate_unknown") == 0)
                o->reject_verify_err = X509_V_ERR_INVALID_NON_CA;
            else if (strcmp(optarg, "unsupported_certificate") == 0)
                o->reject_verify_err = X509_V_ERR_INVALID_PURPOSE;
            else if (strcmp(optarg, "handshake_failure") == 0)
                o->reject_verify_err = X509_V_ERR_APPLICATION_VERIFICATION;
            else
                goto bad;
            o->reject_alert = optarg;
            break;
        case O_MAX_TLS:
            if (strcmp(optarg, "1.2") == 0)
                o->max_tls = TLS1_2_VERSION;
            else if (strcmp(optarg, "1.3") == 0)
                o->max_tls = TLS1_3_VERSION;
            else
                goto bad;
            break;
        case O_MAX_EXPIRES:
            if (parse_uint(optarg, UINT32_MAX, &v) < 0)
                goto bad;
            o->max_expires = (uint32_t)v;
            break;
        case O_NODE:
            o->node = optarg;
            break;
        case O_MODE:
            if (strcmp(optarg, "ok") == 0)
                o->mismatch_every = 0;
            else if (strcmp(optarg, "port-mismatch") == 0)
                o->mismatch_every = 1;
            else
                goto bad;
            break;
        case O_MISMATCH_EVERY:
        case O_DELAY_EVERY:
        case O_DROP_EVERY:
            if (parse_uint(optarg, UINT_MAX, &v) < 0 || v == 0)
                goto bad;
            if (ch == O_MISMATCH_EVERY)
                o->mismatch_every = (unsigned)v;
            else if (ch == O_DELAY_EVERY)
                o->delay_every = (unsigned)v;
            else
                o->drop_every = (unsigned)v;
            break;
        case O_DELAY_MS:
            if (parse_uint(optarg, 3600000, &v) < 0)
                goto bad;
            o->delay_ms = (unsigned)v;
            break;
        case O_DROP:
            o->drop_every = 1;
            break;
        case O_FAIL_AFTER:
            if (parse_uint(optarg, UINT64_MAX, &v) < 0)
                goto bad;
            o->fail_after = v;
            break;
        case O_APPLY_TO:
            if (strcmp(optarg, "register") == 0)
                o->apply = SIM_APPLY_REGISTER;
            else if (strcmp(optarg, "all") == 0)
                o->apply = SIM_APPLY_ALL;
            else
                goto bad;
            break;
        case O_RECORD:
            o->record = optarg;
            break;
        case O_RECORD_RAW:
            o->record_raw = true;
            break;
        case O_PORT_FILE:
            o->port_file = optarg;
            break;
        case O_PID_FILE:
            o->pid_file = optarg;
            break;
        case O_SOCKBUF:
            if (parse_uint(optarg, 64u * 1024 * 1024, &v) < 0)
                goto bad;
            o->sockbuf = (unsigned)v;
            break;
        case O_CALL_OUT:
        case O_NOTIFY:
        case O_OUT_HOLD:
        case O_OUT_TIMEOUT:
            if (parse_uint(optarg, 10000000, &v) < 0)
                goto bad;
            *(ch == O_CALL_OUT   ? &o->call_out_rate
              : ch == O_NOTIFY   ? &o->notify_rate
              : ch == O_OUT_HOLD ? &o->out_hold_ms
                                 : &o->out_timeout_ms) = (unsigned)v;
            break;
        case O_OUT_COUNT:
            if (parse_uint(optarg, UINT64_MAX, &v) < 0)
                goto bad;
            o->out_count = v;
            break;
        case O_HELP:
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    if (optind != argc || !o->cert || !o->key || !o->ca) {
        usage(stderr);
        return -EINVAL;
    }
    return 0;
bad:
    fprintf(stderr, "sipedge-ucmsim: bad value for --%s: %s\n", lo[ch - O_ADDR].name,
            optarg ? optarg : "");
    return -EINVAL;
}

int main(int argc, char **argv)
{
    struct sim_opts o;
    if (parse_opts(argc, argv, &o) < 0)
        return 2;

    /* signals are taken by sigwait() in this thread; workers never see them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    sim_ssl_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    SSL_CTX *ctx = tls_ctx_new(&o);
    if (!ctx) {
        char err[256];
        ERR_error_string_n(ERR_get_error(), err, sizeof err);
        sim_log("ucmsim: cannot load TLS material (cert %s, key %s, ca %s): %s", o.cert, o.key,
                o.ca, err);
        return 1;
    }
    int record_fd = -1;
    if (o.record) {
        record_fd = open(o.record, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (record_fd < 0) {
            sim_log("ucmsim: cannot open record file %s: %s", o.record, strerror(errno));
            return 1;
        }
    }

    static struct worker workers[SIM_MAX_THREADS];
    static struct bench_hist out_setup; /* --call-out: INVITE -> 200, all threads */
    bench_hist_reset(&out_setup);
    unsigned port = o.port;
    for (unsigned i = 0; i < o.threads; i++) {
        struct worker *w = &workers[i];
        w->id = i;
        w->epfd = w->stopfd = w->timerfd = -1;
        int fd = listen_socket(&o, port);
        if (fd < 0) {
            sim_log("ucmsim: cannot listen on %s:%u: %s", o.addr, port, strerror(-fd));
            return 1;
        }
        if (port == 0) { /* the other threads join the port the first one got */
            port = (unsigned)bound_port(fd);
            o.port = port; /* the Contact of the call answers names it */
        }
        int r = worker_init(w, &o, ctx, fd, record_fd);
        if (r < 0) {
            sim_log("ucmsim: worker set-up: %s", strerror(-r));
            return 1;
        }
    }
    for (unsigned i = 0; i < o.threads; i++)
        if (pthread_create(&workers[i].thread, NULL, worker_run, &workers[i]) != 0) {
            sim_log("ucmsim: cannot start thread %u", i);
            return 1;
        }
    char allow[1024] = "";
    for (size_t i = 0, n = 0; i < o.allow_count && n < sizeof allow; i++)
        n += (size_t)snprintf(allow + n, sizeof allow - n, "%s%s", i ? "," : "", o.allow[i]);
    sim_log("ucmsim listening addr=%s port=%u threads=%u allow=\"%s\" reject_alert=%s "
            "max_expires=%" PRIu32 " node=%s",
            o.addr, port, o.threads, o.allow_count ? allow : "(any chained certificate)",
            o.reject_alert, o.max_expires, o.node);
    if (o.pid_file && write_file(o.pid_file, "%d\n", (int)getpid()) < 0)
        sim_log("ucmsim: cannot write %s", o.pid_file);
    if (o.port_file && write_file(o.port_file, "%u\n", port) < 0)
        sim_log("ucmsim: cannot write %s", o.port_file);

    int sig = 0;
    sigwait(&set, &sig);
    for (unsigned i = 0; i < o.threads; i++) {
        uint64_t one = 1;
        ssize_t n = write(workers[i].stopfd, &one, sizeof one);
        (void)n;
    }
    uint64_t total[SIM_C_COUNT] = {0};
    for (unsigned i = 0; i < o.threads; i++) {
        pthread_join(workers[i].thread, NULL);
        for (int k = 0; k < SIM_C_COUNT; k++)
            total[k] += workers[i].ctr[k];
        if (workers[i].out)
            bench_hist_merge(&out_setup, &workers[i].out->setup);
        worker_deinit(&workers[i]);
    }
    printf("ucmsim counters");
    for (int k = 0; k < SIM_C_COUNT; k++)
        printf(" %s=%" PRIu64, sim_ctr_names[k], total[k]);
    if (o.call_out_rate)
        printf(" out_setup_n=%" PRIu64 " out_setup_p50_us=%" PRIu64 " out_setup_p90_us=%" PRIu64
               " out_setup_p99_us=%" PRIu64,
               out_setup.count, bench_hist_pct(&out_setup, 50), bench_hist_pct(&out_setup, 90),
               bench_hist_pct(&out_setup, 99));
    printf("\n");
    fflush(stdout);
    if (record_fd >= 0)
        close(record_fd);
    SSL_CTX_free(ctx);
    if (o.pid_file)
        unlink(o.pid_file);
    return 0;
}
