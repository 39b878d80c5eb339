// SPDX-License-Identifier: MIT
// tls/tls_rec.c against a peer that lies (issue 11): after a real handshake with OpenSSL, a
// crafted-record peer (rec_craft.h, keys from the handshake) floods KeyUpdates, empty records,
// warnings and renegotiation requests, splits post-handshake messages, sends wrong lengths and
// oversized plaintexts; each on both sides (our server, our upstream client) and both versions
// where they apply. Also key hygiene (cached AEAD keys, pooled plaintext) and our own re-keying.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>

#include "tls/tls.h"
#include "tls/tls_priv.h"
#include "tls_pair.h"
#include "rec_craft.h"

enum { AD_UNEXPECTED = 10, AD_OVERFLOW = 22, AD_ILLEGAL = 47, AD_DECODE = 50 };

/* The TLS 1.3 traffic secrets of the OpenSSL peer, from its key-log callback. */
static struct {
    uint8_t client[48], server[48];
} keylog;

static void keylog_cb(const SSL *ssl, const char *line)
{
    (void)ssl;
    uint8_t *dst = strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0   ? keylog.client
                   : strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0 ? keylog.server
                                                                        : NULL;
    if (dst == NULL)
        return;
    const char *hex = strchr(line + 24, ' ') + 1;
    for (size_t i = 0; i < 48 && hex[2 * i] && hex[2 * i + 1]; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        dst[i] = (uint8_t)v;
    }
}

static void setup(void)
{
    pki_init_at("tls-hostile-pki");
}

TestSuite(tls_hostile, .init = setup, .timeout = 120);

/* `me` is our record layer (server or upstream client); the crafted peer writes with `tx` and
 * reads what we send with `rx`. */
struct hostile {
    struct tls_ctx *sctx, *cctx;
    struct tls_peer node;
    struct pair p;
    struct tls_conn *me, *peer;
    struct craft tx, rx;
    bool tls12, server;
    int alert;       /* last alert we sent (level << 8 | desc), -1: none */
    int key_updates; /* KeyUpdates we sent */
    int last_ku_req; /* request_update of the last one */
    size_t data;     /* application data bytes we sent */
    uint8_t last[64];
};

static void hostile_open(struct hostile *h, bool server, uint16_t maxv, uint32_t rekey)
{
    memset(h, 0, sizeof(*h));
    memset(&keylog, 0, sizeof(keylog));
    char err[256] = "";
    struct tls_server_opts so = {.cert_file = f("ucm.crt"),
                                 .key_file = f("ucm.key"),
                                 .max_version = maxv,
                                 .openssl_records = !server};
    cr_assert_eq(tls_server_ctx_new(&so, &h->sctx, err, sizeof(err)), 0, "%s", err);
    struct tls_client_opts co = {.cert_file = f("client.crt"),
                                 .key_file = f("client.key"),
                                 .ca_file = f("ucm-ca.crt"),
                                 .max_version = maxv,
                                 .openssl_records = server,
                                 .rekey_records = rekey};
    cr_assert_eq(tls_client_ctx_new(&co, &h->cctx, err, sizeof(err)), 0, "%s", err);
    /* the OpenSSL peer logs its secrets to us */
    SSL_CTX_set_keylog_callback((server ? h->cctx : h->sctx)->ssl_ctx, keylog_cb);
    cr_assert_eq(tls_peer_init(&h->node, "ucm1.example.test"), 0);
    h->p = connect_pair(h->sctx, h->cctx, &h->node, 0);
    cr_assert_eq(h->p.rc_c, 0);
    cr_assert_eq(h->p.rc_s, 0);
    h->server = server;
    h->me = server ? h->p.s : h->p.c;
    h->peer = server ? h->p.c : h->p.s;
    cr_assert(tls_conn_own_records(h->me), "not on our record layer");
    SSL *ssl = h->peer->ssl;
    cr_assert_not_null(ssl);
    craft_suite(&h->tx, ssl);
    craft_suite(&h->rx, ssl);
    h->tls12 = h->tx.tls12;
    h->alert = -1;
    if (h->tls12) { /* after each side's Finished */
        craft_tls12_keys(&h->tx, ssl, server);
        craft_tls12_keys(&h->rx, ssl, !server);
        h->tx.seq = h->rx.seq = 1;
    } else {
        memcpy(h->tx.secret, server ? keylog.client : keylog.server, h->tx.hash_len);
        memcpy(h->rx.secret, server ? keylog.server : keylog.client, h->rx.hash_len);
        craft_install(&h->tx);
        craft_install(&h->rx);
        h->tx.seq = server ? 0 : 1; /* the server wrote its one session ticket */
        h->rx.seq = server ? 1 : 0;
    }
    /* the state we derived on our own is the state of the connection under test */
    cr_assert_eq(h->tx.seq, h->me->rec->seq[0]);
    cr_assert_eq(h->rx.seq, h->me->rec->seq[1]);
}

static void hostile_close(struct hostile *h)
{
    free_pair(&h->p);
    tls_peer_deinit(&h->node);
    tls_ctx_unref(h->sctx);
    tls_ctx_unref(h->cctx);
    craft_free(&h->tx);
    craft_free(&h->rx);
}

/* The peer sends one record (TLS 1.3: `pad` bytes of padding). */
static void send_rec(struct hostile *h, uint8_t type, const void *p, size_t n, size_t pad)
{
    static uint8_t rec[70000];
    size_t len = craft_seal(&h->tx, type, p, n, pad, rec, sizeof(rec));
    cr_assert_eq(tls_conn_feed(h->me, rec, len), 0);
}

static void send_key_update(struct hostile *h, uint8_t req)
{
    const uint8_t ku[5] = {24, 0, 0, 1, req};
    send_rec(h, 22, ku, sizeof(ku), 0);
    craft_update(&h->tx);
}

/* We read until we want input or fail; returns that result, the data read goes to `out`. */
static ssize_t read_all(struct hostile *h, char *out, size_t cap, size_t *got)
{
    size_t n = 0;
    for (int i = 0; i < 100000; i++) {
        char tmp[512];
        ssize_t r = tls_conn_read(h->me, tmp, sizeof(tmp));
        if (r <= 0) {
            if (got)
                *got = n;
            return r;
        }
        cr_assert_leq(n + (size_t)r, cap);
        memcpy(out + n, tmp, (size_t)r);
        n += (size_t)r;
    }
    cr_assert_fail("read does not end");
    return 0;
}

/* The peer opens everything we sent: counts our KeyUpdates (and follows them), notes alerts. */
static void take_output(struct hostile *h)
{
    struct slice s = tls_conn_out(h->me);
    static uint8_t plain[70000];
    size_t off = 0;
    while (off < s.len) {
        uint8_t type;
        size_t n;
        off += craft_open(&h->rx, (const uint8_t *)s.base + off, s.len - off, &type, plain, &n);
        if (type == 22) {
            cr_assert_eq(n, 5, "handshake message from us of %zu bytes", n);
            cr_assert_eq(plain[0], 24);
            h->key_updates++;
            h->last_ku_req = plain[4];
            craft_update(&h->rx);
        } else if (type == 21) {
            cr_assert_eq(n, 2);
            h->alert = plain[0] << 8 | plain[1];
        } else {
            cr_assert_eq(type, 23);
            memcpy(h->last, plain, n < sizeof(h->last) ? n : sizeof(h->last));
            h->data += n;
        }
    }
    tls_conn_out_consume(h->me, s.len);
}

/* We wrote `msg` and the peer reads it (under whatever keys we use now). */
static void we_say(struct hostile *h, const char *msg)
{
    struct iovec iov = {(void *)msg, strlen(msg)};
    cr_assert_eq(tls_conn_writev(h->me, &iov, 1), (ssize_t)strlen(msg));
    size_t before = h->data;
    take_output(h);
    cr_assert_eq(h->data - before, strlen(msg));
    cr_assert(memcmp(h->last, msg, strlen(msg)) == 0);
}

/* The peer says `msg` and we read exactly that. */
static void peer_says(struct hostile *h, const char *msg)
{
    send_rec(h, 23, msg, strlen(msg), 0);
    char buf[256];
    size_t got = 0;
    cr_assert_eq(read_all(h, buf, sizeof(buf), &got), TLS_WANT_INPUT);
    cr_assert_eq(got, strlen(msg));
    cr_assert(memcmp(buf, msg, got) == 0);
}

/* We failed with fatal alert `alert`, and that alert is queued, sealed under our current keys. */
static void expect_fatal(struct hostile *h, ssize_t rc, int alert, const char *what)
{
    cr_assert_eq(rc, -EPROTO, "%s: read %zd", what, rc);
    struct tls_diag d;
    cr_assert_eq(tls_conn_diag(h->me, &d), TLS_CAUSE_PROTOCOL_ERROR, "%s: cause %s", what,
                 tls_cause_name(d.cause));
    cr_assert_eq(d.alert, alert, "%s: alert %d, want %d", what, d.alert, alert);
    cr_assert_not(d.alert_from_peer);
    cr_assert_neq(d.detail[0], '\0', "%s: no detail for the log", what);
    take_output(h);
    cr_assert_eq(h->alert, 2 << 8 | alert, "%s: alert sent 0x%x", what, h->alert);
}

static ssize_t read_rc(struct hostile *h)
{
    char buf[20000];
    return read_all(h, buf, sizeof(buf), NULL);
}

#define FOR_SIDES(v) for (int v = 0; v < 2; v++)

/* ---- 1. KeyUpdate flood ---- */

Test(tls_hostile, answers_a_run_of_key_update_requests_with_one_key_update)
{
    FOR_SIDES(server)
    {
        struct hostile h;
        hostile_open(&h, server, 0, 0);
        for (int i = 0; i < 10; i++)
            send_key_update(&h, 1);
        cr_assert_eq(read_rc(&h), TLS_WANT_INPUT);
        cr_assert_eq(tls_conn_out_len(h.me), 0, "output on the read path");
        peer_says(&h, "after ten updates");
        we_say(&h, "our reply under our new key");
        cr_assert_eq(h.key_updates, 1, "side %d: %d KeyUpdates for 10 requests", server,
                     h.key_updates);
        cr_assert_eq(h.last_ku_req, 0, "our answer must not request one back");
        we_say(&h, "and no more");
        cr_assert_eq(h.key_updates, 1);
        hostile_close(&h);
    }
}

Test(tls_hostile, fails_more_than_32_key_updates_without_data_between)
{
    FOR_SIDES(server)
    {
        struct hostile h;
        hostile_open(&h, server, 0, 0);
        for (int i = 0; i < 32; i++)
            send_key_update(&h, i & 1);
        cr_assert_eq(read_rc(&h), TLS_WANT_INPUT, "32 in a row are allowed");
        take_output(&h);
        peer_says(&h, "x"); /* application data resets the count */
        for (int i = 0; i < 32; i++)
            send_key_update(&h, 0);
        cr_assert_eq(read_rc(&h), TLS_WANT_INPUT);
        send_key_update(&h, 1);
        expect_fatal(&h, read_rc(&h), AD_UNEXPECTED, "33rd KeyUpdate");
        hostile_close(&h);
    }
}

Test(tls_hostile, answers_key_update_requests_only_with_its_next_record)
{
    FOR_SIDES(server)
    {
        struct hostile h;
        hostile_open(&h, server, 0, 0);
        static char big[65536];
        struct iovec iov = {big, sizeof(big)};
        while (tls_conn_writev(h.me, &iov, 1) > 0)
            ;
        size_t out = tls_conn_out_len(h.me);
        cr_assert_geq(out, TLS_OUT_MAX);
        send_key_update(&h, 1);
        cr_assert_eq(read_rc(&h), TLS_WANT_INPUT);
        cr_assert_eq(tls_conn_out_len(h.me), out, "the read path grew a full output");
        take_output(&h);
        cr_assert_eq(h.key_updates, 0);
        we_say(&h, "now the answer goes first");
        cr_assert_eq(h.key_updates, 1);
        hostile_close(&h);
    }
}

/* ---- 3. the right alert for each wrong message ---- */

struct bad_case {
    bool tls12;
    int side; /* -1 both, 0 our upstream client, 1 our server */
    uint8_t type;
    uint8_t msg[8];
    size_t len; /* > 8: that many bytes of 'A' */
    size_t pad; /* TLS 1.3 padding */
    int alert;  /* 0: accepted */
    const char *why;
};

static const struct bad_case bad_cases[] = {
    {false, -1, 22, {24, 0, 0, 1, 2}, 5, 0, AD_ILLEGAL, "request_update 2 (RFC 8446 4.6.3)"},
    {false, -1, 22, {24, 0, 0, 1, 255}, 5, 0, AD_ILLEGAL, "request_update 255"},
    {false, -1, 22, {24, 0, 0, 2, 0, 0}, 6, 0, AD_DECODE, "KeyUpdate of 2 bytes"},
    {false, -1, 22, {0}, 0, 0, AD_UNEXPECTED, "empty handshake record (5.4)"},
    {false, -1, 22, {0}, 0, 7, AD_UNEXPECTED, "empty handshake record, padded"},
    {false, -1, 21, {0}, 0, 0, AD_UNEXPECTED, "empty alert record (5.4)"},
    {true, -1, 22, {0}, 0, 0, AD_UNEXPECTED, "TLS 1.2 empty handshake record"},
    {true, -1, 21, {0}, 0, 0, AD_UNEXPECTED, "TLS 1.2 empty alert record"},
    {false, -1, 21, {1, 0, 0}, 3, 0, AD_DECODE, "alert of 3 bytes"},
    {false, -1, 23, {0}, 16384, 1, AD_OVERFLOW, "2^14 + type + 1 padding byte (5.4)"},
    {false, -1, 23, {0}, 16000, 400, AD_OVERFLOW, "padding over the limit"},
    {false, -1, 23, {0}, 16384, 0, 0, "2^14 + type: the largest record"},
    {false, -1, 23, {0}, 16383, 1, 0, "2^14 - 1 + type + 1 padding byte"},
    {true, -1, 23, {0}, 16385, 0, AD_OVERFLOW, "TLS 1.2 plaintext over 2^14"},
    {true, -1, 23, {0}, 16384, 0, 0, "TLS 1.2 2^14 bytes"},
    {false, -1, 22, {1, 0, 0, 0}, 4, 0, AD_UNEXPECTED, "ClientHello after the handshake"},
    {false, 1, 22, {4, 0, 0, 1, 0}, 5, 0, AD_UNEXPECTED, "NewSessionTicket from a client"},
    {false, 0, 22, {4, 1, 0, 0}, 4, 0, AD_ILLEGAL, "NewSessionTicket of 64 KiB"},
    {false, -1, 22, {24, 0, 0, 1, 0, 24, 0, 0}, 8, 0, AD_UNEXPECTED, "bytes after a KeyUpdate"},
    {false, -1, 25, {1}, 1, 0, AD_UNEXPECTED, "unknown inner content type"},
};

Test(tls_hostile, answers_each_wrong_record_with_the_right_alert)
{
    static uint8_t big[16400];
    memset(big, 'A', sizeof(big));
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *b = &bad_cases[i];
        FOR_SIDES(server)
        {
            if (b->side >= 0 && b->side != server)
                continue;
            struct hostile h;
            hostile_open(&h, server, b->tls12 ? TLS12 : 0, 0);
            send_rec(&h, b->type, b->len > 8 ? big : b->msg, b->len, b->pad);
            char buf[20000];
            size_t got = 0;
            ssize_t rc = read_all(&h, buf, sizeof(buf), &got);
            if (b->alert == 0) {
                cr_assert_eq(rc, TLS_WANT_INPUT, "%s: %zd", b->why, rc);
                cr_assert_eq(got, b->len, "%s", b->why);
                peer_says(&h, "still fine");
            } else {
                expect_fatal(&h, rc, b->alert, b->why);
            }
            hostile_close(&h);
        }
    }
}

/* ---- 5. no-op records ---- */

Test(tls_hostile, caps_runs_of_empty_records_in_both_versions)
{
    for (int v = 0; v < 2; v++)
        FOR_SIDES(server)
        {
            struct hostile h;
            hostile_open(&h, server, v ? TLS12 : 0, 0);
            for (int i = 0; i < 32; i++)
                send_rec(&h, 23, NULL, 0, (size_t)i % 3);
            cr_assert_eq(read_rc(&h), TLS_WANT_INPUT, "32 empty records are allowed");
            peer_says(&h, "data resets the count");
            for (int i = 0; i < 33; i++)
                send_rec(&h, 23, NULL, 0, 0);
            expect_fatal(&h, read_rc(&h), AD_UNEXPECTED, "33 empty records");
            hostile_close(&h);
        }
}

Test(tls_hostile, caps_warning_alerts_and_renegotiation_requests)
{
    /* TLS 1.2 warnings, TLS 1.3 user_canceled, TLS 1.2 handshake records (renegotiation) */
    static const struct {
        bool tls12;
        uint8_t type, msg[4];
        size_t len;
        int answers; /* warnings we send back for each */
    } kinds[] = {
        {true, 21, {1, 90}, 2, 0},
        {true, 21, {1, 100}, 2, 0},
        {false, 21, {1, 90}, 2, 0},
        {true, 22, {0, 0, 0, 0}, 4, 1}, /* HelloRequest / a ClientHello's first bytes */
    };
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
        FOR_SIDES(server)
        {
            struct hostile h;
            hostile_open(&h, server, kinds[k].tls12 ? TLS12 : 0, 0);
            for (int round = 0; round < 2; round++) {
                for (int i = 0; i < 4; i++)
                    send_rec(&h, kinds[k].type, kinds[k].msg, kinds[k].len, 0);
                cr_assert_eq(read_rc(&h), TLS_WANT_INPUT, "kind %zu: 4 are allowed", k);
                take_output(&h);
                if (kinds[k].answers)
                    cr_assert_eq(h.alert, 1 << 8 | 100, "no no_renegotiation warning");
                peer_says(&h, "data resets the count");
            }
            for (int i = 0; i < 5; i++)
                send_rec(&h, kinds[k].type, kinds[k].msg, kinds[k].len, 0);
            expect_fatal(&h, read_rc(&h), AD_UNEXPECTED, "5 in a row");
            hostile_close(&h);
        }
}

/* ---- 6. post-handshake messages split across records ---- */

Test(tls_hostile, reassembles_a_new_session_ticket_split_across_records)
{
    uint8_t nst[4 + 300];
    nst[0] = 4;
    nst[1] = 0;
    nst[2] = 300 >> 8;
    nst[3] = 300 & 0xff;
    for (int i = 4; i < (int)sizeof(nst); i++)
        nst[i] = (uint8_t)i;
    static const size_t cuts[][3] = {{10, 304, 0}, {2, 3, 304}, {4, 5, 304}, {1, 303, 304}};
    for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
        struct hostile h;
        hostile_open(&h, false, 0, 0);
        size_t at = 0;
        for (int k = 0; k < 3 && cuts[c][k]; k++) {
            send_rec(&h, 22, nst + at, cuts[c][k] - at, 0);
            at = cuts[c][k];
            if (at < sizeof(nst)) /* a part: nothing to read, nothing fails */
                cr_assert_eq(read_rc(&h), TLS_WANT_INPUT, "cut %zu", c);
        }
        peer_says(&h, "data after the whole ticket");
        /* one byte per record, then a ticket and a KeyUpdate in one record */
        for (size_t i = 0; i < sizeof(nst); i++)
            send_rec(&h, 22, nst + i, 1, 0);
        cr_assert_eq(read_rc(&h), TLS_WANT_INPUT);
        uint8_t two[sizeof(nst) + 5];
        memcpy(two, nst, sizeof(nst));
        memcpy(two + sizeof(nst), (uint8_t[]){24, 0, 0, 1, 1}, 5);
        send_rec(&h, 22, two, sizeof(two), 0);
        craft_update(&h.tx);
        cr_assert_eq(read_rc(&h), TLS_WANT_INPUT);
        we_say(&h, "our KeyUpdate goes first");
        cr_assert_eq(h.key_updates, 1);
        peer_says(&h, "and after the KeyUpdate");
        hostile_close(&h);
    }
}

Test(tls_hostile, reassembles_a_split_key_update_on_both_sides)
{
    FOR_SIDES(server)
    {
        struct hostile h;
        hostile_open(&h, server, 0, 0);
        send_rec(&h, 22, (uint8_t[]){24, 0}, 2, 0);
        send_rec(&h, 22, (uint8_t[]){0, 1, 1}, 3, 0);
        craft_update(&h.tx);
        cr_assert_eq(read_rc(&h), TLS_WANT_INPUT);
        we_say(&h, "our KeyUpdate goes first");
        cr_assert_eq(h.key_updates, 1);
        peer_says(&h, "under the new key");
        we_say(&h, "and ours");
        hostile_close(&h);
    }
}

Test(tls_hostile, refuses_other_records_inside_a_split_message)
{
    static const uint8_t types[] = {23, 21};
    for (size_t t = 0; t < sizeof(types); t++)
        FOR_SIDES(server)
        {
            struct hostile h;
            hostile_open(&h, server, 0, 0);
            send_rec(&h, 22, (uint8_t[]){24, 0, 0}, 3, 0);
            send_rec(&h, types[t], (uint8_t[]){1, 90}, 2, 0);
            expect_fatal(&h, read_rc(&h), AD_UNEXPECTED, "interleaved record");
            hostile_close(&h);
        }
}

/* ---- 7. key hygiene ---- */

/* What `x` (a decryption context) makes of a zero block under `iv` with the key it holds. */
static void keystream(EVP_CIPHER_CTX *x, const uint8_t iv[12], uint8_t out[32])
{
    static const uint8_t zero[32];
    int l;
    cr_assert(EVP_DecryptInit_ex(x, NULL, NULL, NULL, iv));
    cr_assert(EVP_DecryptUpdate(x, out, &l, zero, 32));
}

static void wipes_cached_keys(bool server, uint16_t maxv)
{
    struct hostile h;
    hostile_open(&h, server, maxv, 0);
    peer_says(&h, "keyed");
    we_say(&h, "keyed too");
    unsigned suite = h.me->rec->suite;
    uint8_t key[2][32], ks_old[2][32], ks_zero[2][32], ks_now[2][32];
    static const uint8_t iv[12] = {1, 2, 3}, zero_key[32];
    memcpy(key, h.me->rec->key, sizeof(key));
    for (int d = 0; d < 2; d++) {
        EVP_CIPHER_CTX *ref = EVP_CIPHER_CTX_new();
        cr_assert(EVP_DecryptInit_ex2(ref, h.tx.cipher, key[d], iv, NULL));
        keystream(ref, iv, ks_old[d]);
        cr_assert(EVP_DecryptInit_ex2(ref, h.tx.cipher, zero_key, iv, NULL));
        keystream(ref, iv, ks_zero[d]);
        EVP_CIPHER_CTX_free(ref);
    }
    hostile_close(&h);
    for (int d = 0; d < 2; d++) {
        EVP_CIPHER_CTX *x = tls__rec_aead_cached(suite, d);
        cr_assert_not_null(x, "the thread's context is kept (and reused)");
        keystream(x, iv, ks_now[d]);
        cr_assert(memcmp(ks_now[d], ks_old[d], 32) != 0, "direction %d: the key outlived us", d);
        cr_assert(memcmp(ks_now[d], ks_zero[d], 32) == 0, "direction %d: not re-keyed", d);
    }
}

Test(tls_hostile, wipes_the_cached_aead_keys_when_the_connection_goes)
{
    for (int v = 0; v < 2; v++)
        FOR_SIDES(server)
        {
            wipes_cached_keys(server, v ? TLS12 : 0);
        }
}

static void wipes_plaintext(bool server, uint16_t maxv)
{
    struct hostile h;
    hostile_open(&h, server, maxv, 0);
    static uint8_t secret[3000];
    memset(secret, 0x5a, sizeof(secret));
    memcpy(secret, "Authorization: Bearer ", 22);
    send_rec(&h, 23, secret, sizeof(secret), 0);
    char piece[100];
    ssize_t r = tls_conn_read(h.me, piece, sizeof(piece)); /* short buffer: decrypted in place */
    cr_assert_eq(r, (ssize_t)sizeof(piece));
    uint8_t *block = h.me->in.p;
    cr_assert_not_null(block);
    size_t got = (size_t)r;
    while ((r = tls_conn_read(h.me, piece, sizeof(piece))) > 0)
        got += (size_t)r;
    cr_assert_eq(got, sizeof(secret));
    cr_assert_null(h.me->in.p, "the buffer was released");
    /* the pool hands the same block out next (LIFO): it must not hold the plaintext */
    struct tls__buf b = {0};
    uint8_t *q = tls__buf_reserve(&b, 16);
    cr_assert_eq(q, block, "not the pooled block");
    cr_assert_null(memmem(q + 16, b.cap - 16, "Bearer", 6), "plaintext left in a pooled buffer");
    cr_assert_null(memmem(q + 16, b.cap - 16, "ZZZZZZZZZZZZZZZZ", 16), "plaintext left");
    tls__buf_commit(&b, 1);
    tls__buf_consume(&b, 1);
    hostile_close(&h);
}

Test(tls_hostile, wipes_plaintext_decrypted_in_place_before_the_buffer_is_pooled)
{
    for (int v = 0; v < 2; v++)
        FOR_SIDES(server)
        {
            wipes_plaintext(server, v ? TLS12 : 0);
        }
}

/* ---- 8. our own KeyUpdate (RFC 8446 §5.5), against real OpenSSL ---- */

Test(tls_hostile, re_keys_an_upstream_connection_after_rekey_records)
{
    struct hostile h;
    hostile_open(&h, false, 0, 4);
    /* ten records of ours: a KeyUpdate before the 5th and the 9th; the real server follows */
    for (int i = 0; i < 10; i++) {
        struct iovec iov = {"REGISTER", 8};
        cr_assert_eq(tls_conn_writev(h.me, &iov, 1), 8);
        struct slice s = tls_conn_out(h.me);
        static uint8_t copy[4096];
        memcpy(copy, s.base, s.len);
        size_t n = s.len;
        take_output(&h); /* the crafted peer counts, then the real one reads the same bytes */
        cr_assert_eq(tls_conn_feed(h.peer, copy, n), 0);
        char buf[64];
        cr_assert_eq(tls_conn_read(h.peer, buf, sizeof(buf)), 8, "record %d", i);
    }
    cr_assert_eq(h.key_updates, 2, "%d KeyUpdates", h.key_updates);
    cr_assert_eq(h.last_ku_req, 0);
    /* the server's key: after 4 records from it we ask it to update, once */
    transfer(h.peer, h.me, 100, 1, 0);
    cr_assert_eq(tls_conn_out_len(h.me), 0);
    for (int i = 0; i < 3; i++)
        transfer(h.peer, h.me, 100, 1, 0);
    cr_assert_eq(tls_conn_out_len(h.me), 0, "nothing on the read path");
    struct iovec iov = {"OPTIONS", 7}; /* our next record asks first */
    cr_assert_eq(tls_conn_writev(h.me, &iov, 1), 7);
    struct slice s = tls_conn_out(h.me);
    cr_assert_gt(s.len, 0, "no KeyUpdate asked of the server");
    static uint8_t copy[4096];
    memcpy(copy, s.base, s.len);
    size_t n = s.len;
    take_output(&h);
    cr_assert_eq(h.key_updates, 3);
    cr_assert_eq(h.last_ku_req, 1, "the server was not asked to update");
    cr_assert_eq(tls_conn_feed(h.peer, copy, n), 0);
    char buf[64];
    cr_assert_eq(tls_conn_read(h.peer, buf, sizeof(buf)), 7);
    cr_assert(h.me->rec->ku_asked);
    transfer(h.peer, h.me, 300, 2, 0); /* its KeyUpdate, then data under its new key */
    cr_assert_not(h.me->rec->ku_asked, "the server's KeyUpdate was not seen");
    cr_assert_eq(h.me->rec->seq[0], 1);
    transfer(h.me, h.peer, 300, 2, 0);
    hostile_close(&h);
}

/* ---- seeds for tests/fuzz/fuzz_tls_rec.c ---- */

/* The fuzz target's server reads with the secret {1, 2, 3, 0...} (suite `data[0] % 3`, TLS 1.2
 * records when bit 7 is set) and takes raw bytes in ops (op < 64, length, bytes). A seed: the
 * crafted records of one class, sealed under that key by our own builder. */
struct seed {
    uint8_t buf[40000];
    size_t len;
    struct craft k;
};

static void seed_begin(struct seed *sd, unsigned suite, bool tls12, uint8_t cap)
{
    static const char *ciphers[] = {"AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305"};
    static const uint8_t a[48] = {1, 2, 3};
    memset(sd, 0, sizeof(*sd));
    sd->k.cipher = EVP_CIPHER_fetch(NULL, ciphers[suite], NULL);
    sd->k.key_len = suite == 0 ? 16 : 32;
    sd->k.digest = suite == 1 ? "SHA384" : "SHA256";
    sd->k.hash_len = suite == 1 ? 48 : 32;
    memcpy(sd->k.secret, a, sd->k.hash_len);
    craft_install(&sd->k);
    sd->k.tls12 = tls12;
    sd->k.explicit_nonce = tls12 && suite != 2;
    /* the target takes the suite as data[0] % 3, the bit 7 included */
    sd->buf[0] = (uint8_t)(tls12 ? 0x80 + (suite + 1) % 3 : suite);
    cr_assert_eq(sd->buf[0] % 3, suite);
    sd->buf[1] = cap;
    sd->len = 2;
}

static void seed_rec(struct seed *sd, uint8_t type, const void *p, size_t n, size_t pad)
{
    static uint8_t rec[17000];
    size_t len = craft_seal(&sd->k, type, p, n, pad, rec, sizeof(rec));
    for (size_t off = 0; off < len;) {
        size_t k = len - off < 255 ? len - off : 255;
        cr_assert_lt(sd->len + 2 + k, sizeof(sd->buf));
        sd->buf[sd->len++] = (uint8_t)(off % 64); /* an op below 64: raw bytes */
        sd->buf[sd->len++] = (uint8_t)k;
        memcpy(sd->buf + sd->len, rec + off, k);
        sd->len += k;
        off += k;
    }
}

/* Feed the seed's bytes to a server keyed as the fuzz target's, read as it reads; write it to
 * build/tmp/tls_rec_seeds/NAME; returns the alert it failed with (0: none). */
static int seed_end(struct seed *sd, const char *name)
{
    static const uint8_t a[48] = {1, 2, 3}, b[48] = {4, 5, 6};
    struct tls_conn *s = calloc(1, sizeof(*s));
    s->rec = tls__rec_new(sd->buf[0] % 3, a, b);
    s->rec->tls12 = sd->buf[0] & 0x80;
    s->flags = TLS_F_ESTABLISHED | TLS_F_CONFIRMED;
    size_t cap = (size_t)sd->buf[1] * 67 + 1;
    char *buf = malloc(cap);
    for (size_t off = 2; off + 2 <= sd->len;) {
        size_t n = sd->buf[off + 1];
        cr_assert_eq(tls_conn_feed(s, sd->buf + off + 2, n), 0);
        off += 2 + n;
    }
    ssize_t r;
    while ((r = tls_conn_read(s, buf, cap)) > 0)
        ;
    struct tls_diag d;
    tls_conn_diag(s, &d);
    int alert = r == -EPROTO ? d.alert : 0;
    free(buf);
    tls_conn_free(s);
    char dir[600], path[700];
    snprintf(dir, sizeof(dir), "%s/tmp/tls_rec_seeds", SIPEDGE_BINARY_DIR);
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/issue11-%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(sd->buf, 1, sd->len, f), sd->len);
    fclose(f);
    craft_free(&sd->k);
    return alert;
}

Test(tls_hostile, fuzz_seeds_of_each_class_fail_as_the_tests_say)
{
    static struct seed sd;
    static uint8_t big[16400];
    memset(big, 'A', sizeof(big));
    const uint8_t ku_req[5] = {24, 0, 0, 1, 1}, ku_bad[5] = {24, 0, 0, 1, 2};
    for (unsigned suite = 0; suite < 3; suite++) {
        char name[64];
        seed_begin(&sd, suite, false, 3);
        for (int i = 0; i < 33; i++) {
            seed_rec(&sd, 22, ku_req, 5, 0);
            craft_update(&sd.k);
        }
        snprintf(name, sizeof(name), "ku-flood-%u", suite);
        cr_assert_eq(seed_end(&sd, name), AD_UNEXPECTED);

        seed_begin(&sd, suite, false, 0);
        seed_rec(&sd, 22, ku_bad, 5, 0);
        snprintf(name, sizeof(name), "ku-request-2-%u", suite);
        cr_assert_eq(seed_end(&sd, name), AD_ILLEGAL);

        seed_begin(&sd, suite, false, 255);
        seed_rec(&sd, 23, big, 16384, 1);
        snprintf(name, sizeof(name), "inner-overflow-%u", suite);
        cr_assert_eq(seed_end(&sd, name), AD_OVERFLOW);

        seed_begin(&sd, suite, false, 1);
        seed_rec(&sd, 22, ku_req, 2, 0);
        seed_rec(&sd, 22, ku_req + 2, 3, 0);
        craft_update(&sd.k);
        seed_rec(&sd, 23, "after", 5, 0);
        seed_rec(&sd, 22, ku_req, 3, 0);
        seed_rec(&sd, 23, "inside", 6, 0);
        snprintf(name, sizeof(name), "split-ku-%u", suite);
        cr_assert_eq(seed_end(&sd, name), AD_UNEXPECTED);

        for (int v = 0; v < 2; v++) {
            seed_begin(&sd, suite, v, 2);
            for (int i = 0; i < 33; i++)
                seed_rec(&sd, 23, NULL, 0, (size_t)i % 4);
            snprintf(name, sizeof(name), "empty-flood-%s-%u", v ? "tls12" : "tls13", suite);
            int alert = seed_end(&sd, name);
            cr_assert_eq(alert, AD_UNEXPECTED, "%s: %d", name, alert);

            seed_begin(&sd, suite, v, 2);
            seed_rec(&sd, 22, NULL, 0, 0);
            snprintf(name, sizeof(name), "empty-handshake-%s-%u", v ? "tls12" : "tls13", suite);
            cr_assert_eq(seed_end(&sd, name), AD_UNEXPECTED);
        }
        seed_begin(&sd, suite, true, 4);
        for (int i = 0; i < 5; i++)
            seed_rec(&sd, 21, (uint8_t[]){1, 90}, 2, 0);
        snprintf(name, sizeof(name), "warning-flood-tls12-%u", suite);
        cr_assert_eq(seed_end(&sd, name), AD_UNEXPECTED);

        seed_begin(&sd, suite, true, 4);
        for (int i = 0; i < 5; i++)
            seed_rec(&sd, 22, (uint8_t[]){1, 0, 0, 0}, 4, 0);
        snprintf(name, sizeof(name), "renegotiation-flood-tls12-%u", suite);
        cr_assert_eq(seed_end(&sd, name), AD_UNEXPECTED);
    }
}
