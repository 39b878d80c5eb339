// SPDX-License-Identifier: MIT
// Tests for tls/tls_rec.c, our record layer on established server connections (TLS 1.3 and
// TLS 1.2 AEAD): the peer is always real OpenSSL (a tls_conn client), so every record we write
// must decrypt there and every record it writes must decrypt here: data, tickets, KeyUpdate,
// renegotiation, alerts, tampering.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "tls/tls.h"
#include "tls/tls_priv.h"
#include "tls_pair.h"

/* cctx: a client on OpenSSL's records all along (the reference peer, and the one whose SSL the
 * tests poke: KeyUpdate, renegotiation); ours: a client that switches to our record layer. */
static struct tls_ctx *cctx, *ours;
static struct tls_peer peer;
/* the contexts made from here on keep an AEAD context per connection (tls_ctx own_aead) */
static bool own;

static struct tls_ctx *client_with(bool openssl_records, uint16_t maxv)
{
    char err[256] = "";
    struct tls_client_opts o = {.cert_file = f("client.crt"),
                                .key_file = f("client.key"),
                                .ca_file = f("ucm-ca.crt"),
                                .max_version = maxv,
                                .openssl_records = openssl_records,
                                .own_aead = own};
    struct tls_ctx *ctx = NULL;
    cr_assert_eq(tls_client_ctx_new(&o, &ctx, err, sizeof(err)), 0, "%s", err);
    return ctx;
}

static void setup(void)
{
    pki_init_at("tls-rec-pki");
    cctx = client_with(true, 0);
    ours = client_with(false, 0);
    cr_assert_eq(tls_peer_init(&peer, "ucm1.example.test"), 0);
}

static void teardown(void)
{
    tls_peer_deinit(&peer);
    tls_ctx_unref(cctx);
    tls_ctx_unref(ours);
}

TestSuite(tls_rec, .init = setup, .fini = teardown, .timeout = 60);

/* A server context with the UCM test certificate; `suites` NULL: OpenSSL's default (a TLS 1.2
 * cipher list when `maxv` is TLS 1.2). */
static struct tls_ctx *sctx_with(const char *suites, bool openssl_records, uint16_t maxv)
{
    char err[256] = "";
    struct tls_server_opts o = {.cert_file = f("ucm.crt"),
                                .key_file = f("ucm.key"),
                                .ciphersuites = maxv == TLS12 ? NULL : suites,
                                .ciphers = maxv == TLS12 ? suites : NULL,
                                .max_version = maxv,
                                .openssl_records = openssl_records,
                                .own_aead = own};
    struct tls_ctx *ctx = NULL;
    cr_assert_eq(tls_server_ctx_new(&o, &ctx, err, sizeof(err)), 0, "%s", err);
    return ctx;
}

static struct pair established(struct tls_ctx *s)
{
    struct pair p = connect_pair(s, cctx, &peer, 0);
    cr_assert_eq(p.rc_c, 0, "client %d", p.rc_c);
    cr_assert_eq(p.rc_s, 0, "server %d", p.rc_s);
    return p;
}

/* With `own`, a connection on our records has both contexts of its own. */
static void check_own(const struct tls_conn *c)
{
    if (own && tls_conn_own_records(c))
        cr_assert(c->rec->own[0] && c->rec->own[1], "no AEAD contexts of its own");
}

static void both_ways(struct pair *p)
{
    check_own(p->c);
    check_own(p->s);
    transfer(p->c, p->s, 1, 1, 0);
    transfer(p->s, p->c, 1, 1, 0);
    transfer(p->c, p->s, 1400, 3, 0);
    transfer(p->s, p->c, 1400, 5, 0);
    transfer(p->s, p->c, 200000, 64, 0); /* many full records, gathered from 64 slices */
    transfer(p->c, p->s, 100000, 7, 0);
    transfer(p->s, p->c, 3000, 4, 1); /* fed to the peer one byte at a time */
    transfer(p->c, p->s, 3000, 4, 1);
}

/* The tests below again with connections that keep their own AEAD contexts (the edge's UCM
 * connections): from here on contexts are made so, and the thread's shared ones stay unused. */
static void use_own_aead(void)
{
    own = true;
    tls_ctx_unref(ours);
    ours = client_with(false, 0);
}

static void shared_contexts_unused(void)
{
    for (unsigned suite = 0; suite < TLS__REC_SUITES; suite++)
        for (int d = 0; d < 2; d++)
            cr_assert_null(tls__rec_aead_cached(suite, d), "suite %u: a shared context was used",
                           suite);
}

static void tls13_suites_both_ways(void)
{
    const char *list[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                          "TLS_CHACHA20_POLY1305_SHA256"};
    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++) {
        struct tls_ctx *s = sctx_with(list[i], false, 0);
        struct pair p = established(s);
        cr_assert(tls_conn_own_records(p.s), "%s not taken over", list[i]);
        cr_assert_not(tls_conn_own_records(p.c), "this client keeps OpenSSL's records");
        cr_assert_null(p.s->ssl, "SSL object not freed");
        cr_assert_str_eq(tls_conn_cipher(p.s), list[i]);
        cr_assert_str_eq(tls_conn_version(p.s), "TLSv1.3");
        both_ways(&p);
        free_pair(&p);
        tls_ctx_unref(s);
    }
}

Test(tls_rec, takes_over_each_tls13_suite_and_moves_data_both_ways)
{
    tls13_suites_both_ways();
}

Test(tls_rec, own_aead_takes_over_each_tls13_suite_and_moves_data_both_ways)
{
    use_own_aead();
    tls13_suites_both_ways();
    shared_contexts_unused();
}

/* The client side (edge -> UCM) switches too: a TLS 1.3 client once OpenSSL has taken the
 * server's ticket, a TLS 1.2 one at the end of the handshake; against a server on OpenSSL's
 * records and against one on ours, every suite; the kept session still resumes. */
static void client_side_switches(void)
{
    const char *list[] = {"TLS_AES_128_GCM_SHA256",        "TLS_AES_256_GCM_SHA384",
                          "TLS_CHACHA20_POLY1305_SHA256",  "ECDHE-ECDSA-AES128-GCM-SHA256",
                          "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"};
    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++) {
        uint16_t maxv = i < 3 ? 0 : TLS12;
        for (int server_ours = 0; server_ours < 2; server_ours++) {
            struct tls_ctx *s = sctx_with(list[i], !server_ours, maxv);
            struct tls_peer node;
            cr_assert_eq(tls_peer_init(&node, "ucm1.example.test"), 0);
            for (int round = 0; round < 2; round++) {
                struct pair p = connect_pair(s, ours, &node, 0);
                cr_assert_eq(p.rc_c, 0, "%s: client %d", list[i], p.rc_c);
                cr_assert_eq(p.rc_s, 0);
                cr_assert(tls_conn_own_records(p.c), "%s: client not switched", list[i]);
                cr_assert_null(p.c->ssl);
                cr_assert_eq(tls_conn_own_records(p.s), server_ours);
                cr_assert_str_eq(tls_conn_cipher(p.c), list[i]);
                cr_assert_eq(tls_conn_resumed(p.c), round == 1, "%s round %d", list[i], round);
                cr_assert(tls_conn_confirmed(p.c));
                both_ways(&p);
                free_pair(&p);
            }
            tls_peer_deinit(&node);
            tls_ctx_unref(s);
        }
    }
}

Test(tls_rec, switches_the_client_side_too_against_either_server)
{
    client_side_switches();
}

Test(tls_rec, own_aead_switches_the_client_side_too_against_either_server)
{
    use_own_aead();
    client_side_switches();
    shared_contexts_unused();
}

/* Both handshakes driven by tls_conn_read() alone (the handshake then completes, and the records
 * switch, inside an SSL_read), with the client's first data right behind its Finished. */
Test(tls_rec, switches_when_the_handshake_completes_inside_a_read)
{
    for (int v = 0; v < 2; v++) {
        uint16_t maxv = v ? TLS12 : 0;
        struct tls_ctx *s = sctx_with(NULL, false, maxv);
        struct tls_ctx *c = client_with(false, maxv);
        struct pair p = {.c = tls_conn_new_client(c, &peer), .s = tls_conn_new_server(s)};
        char buf[512];
        bool sent = false;
        size_t got = 0;
        for (int i = 0; i < 40 && got < 5; i++) {
            ssize_t rc = tls_conn_read(p.c, buf, sizeof(buf));
            cr_assert(rc == TLS_WANT_INPUT || rc > 0, "client read %zd", rc);
            if (!sent && tls_conn_established(p.c)) {
                struct iovec iov = {"hello", 5};
                cr_assert_eq(tls_conn_writev(p.c, &iov, 1), 5);
                sent = true;
            }
            pump(p.c, p.s, 0);
            rc = tls_conn_read(p.s, buf + got, sizeof(buf) - got);
            cr_assert(rc == TLS_WANT_INPUT || rc > 0, "server read %zd", rc);
            if (rc > 0)
                got += (size_t)rc;
            pump(p.s, p.c, 0);
        }
        cr_assert_eq(got, 5, "v%d: the first data was lost", v);
        cr_assert(memcmp(buf, "hello", 5) == 0);
        cr_assert(tls_conn_own_records(p.s));
        transfer(p.s, p.c, 1000, 2, 0); /* the client reads the ticket, switches, reads on */
        transfer(p.c, p.s, 1000, 2, 0);
        cr_assert(tls_conn_own_records(p.c));
        free_pair(&p);
        tls_ctx_unref(c);
        tls_ctx_unref(s);
    }
}

static void client_follows_server_key_update(void)
{
    struct tls_ctx *s = sctx_with(NULL, true, 0); /* OpenSSL server: we poke its SSL */
    struct pair p = connect_pair(s, ours, &peer, 0);
    cr_assert_eq(p.rc_c, 0);
    cr_assert(tls_conn_own_records(p.c));
    for (int round = 0; round < 3; round++) {
        if (round == 2) {
            cr_assert_eq(SSL_new_session_ticket(p.s->ssl), 1); /* sent with the next write */
        } else {
            int type = round ? SSL_KEY_UPDATE_NOT_REQUESTED : SSL_KEY_UPDATE_REQUESTED;
            cr_assert_eq(SSL_key_update(p.s->ssl, type), 1);
        }
        transfer(p.s, p.c, 800, 2, 0);
        transfer(p.c, p.s, 900, 3, 0);
        transfer(p.s, p.c, 700, 1, 0);
    }
    free_pair(&p);
    tls_ctx_unref(s);
}

Test(tls_rec, a_switched_client_follows_a_server_key_update_and_more_tickets)
{
    client_follows_server_key_update();
}

/* keyed once, and again after each KeyUpdate */
Test(tls_rec, own_aead_client_follows_a_server_key_update_and_more_tickets)
{
    use_own_aead();
    client_follows_server_key_update();
    shared_contexts_unused();
}

static void tls12_suites_both_ways(void)
{
    const char *list[] = {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                          "ECDHE-ECDSA-CHACHA20-POLY1305"};
    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++) {
        struct tls_ctx *s = sctx_with(list[i], false, TLS12);
        struct pair p = established(s);
        cr_assert_str_eq(tls_conn_version(p.s), "TLSv1.2");
        cr_assert(tls_conn_own_records(p.s), "%s not taken over", list[i]);
        cr_assert_null(p.s->ssl);
        cr_assert_str_eq(tls_conn_cipher(p.s), list[i]);
        both_ways(&p);
        free_pair(&p);
        tls_ctx_unref(s);
    }
}

Test(tls_rec, takes_over_each_tls12_aead_suite_and_moves_data_both_ways)
{
    tls12_suites_both_ways();
}

Test(tls_rec, own_aead_takes_over_each_tls12_aead_suite_and_moves_data_both_ways)
{
    use_own_aead();
    tls12_suites_both_ways();
    shared_contexts_unused();
}

Test(tls_rec, keeps_openssl_when_asked_or_for_a_cbc_suite)
{
    struct tls_ctx *s = sctx_with(NULL, true, 0);
    struct pair p = established(s);
    cr_assert_not(tls_conn_own_records(p.s));
    cr_assert_not_null(p.s->ssl);
    both_ways(&p);
    free_pair(&p);
    tls_ctx_unref(s);

    /* a CBC suite is not ours: OpenSSL keeps the connection (and still works) */
    char err[256] = "";
    struct tls_server_opts o = {.cert_file = f("ucm.crt"),
                                .key_file = f("ucm.key"),
                                .ciphers = "ECDHE-ECDSA-AES128-SHA256",
                                .max_version = TLS12};
    cr_assert_eq(tls_server_ctx_new(&o, &s, err, sizeof(err)), 0, "%s", err);
    struct tls_client_opts co = {
        .ca_file = f("ucm-ca.crt"), .max_version = TLS12, .ciphers = "ECDHE-ECDSA-AES128-SHA256"};
    struct tls_ctx *cbc = NULL;
    cr_assert_eq(tls_client_ctx_new(&co, &cbc, err, sizeof(err)), 0, "%s", err);
    p = connect_pair(s, cbc, &peer, 0);
    cr_assert_eq(p.rc_s, 0);
    cr_assert_not(tls_conn_own_records(p.s));
    both_ways(&p);
    free_pair(&p);
    tls_ctx_unref(cbc);
    tls_ctx_unref(s);
}

Test(tls_rec, resumes_tls12_sessions_and_takes_them_over_too)
{
    struct tls_ctx *s = sctx_with(NULL, false, TLS12);
    struct tls_ctx *c12 = client_ctx("client", "ucm-ca.crt", TLS12);
    struct tls_peer node;
    cr_assert_eq(tls_peer_init(&node, "ucm1.example.test"), 0);
    for (int i = 0; i < 3; i++) {
        struct pair p = connect_pair(s, c12, &node, 0);
        cr_assert_eq(p.rc_s, 0);
        cr_assert(tls_conn_own_records(p.s));
        cr_assert_eq(tls_conn_resumed(p.s), i > 0, "round %d", i);
        both_ways(&p);
        free_pair(&p);
    }
    tls_peer_deinit(&node);
    tls_ctx_unref(c12);
    tls_ctx_unref(s);
}

Test(tls_rec, declines_a_tls12_renegotiation_and_keeps_the_connection)
{
    struct tls_ctx *s = sctx_with(NULL, false, TLS12);
    struct pair p = established(s);
    cr_assert(tls_conn_own_records(p.s));
    /* the client asks to renegotiate: its ClientHello goes out encrypted */
    SSL_clear_options(p.c->ssl, SSL_OP_NO_RENEGOTIATION);
    cr_assert_eq(SSL_renegotiate(p.c->ssl), 1);
    cr_assert_neq(SSL_do_handshake(p.c->ssl), 1);
    ERR_clear_error();
    pump(p.c, p.s, 0);
    char buf[64];
    cr_assert_eq(tls_conn_read(p.s, buf, sizeof(buf)), TLS_WANT_INPUT);
    struct tls_diag d;
    cr_assert_eq(tls_conn_diag(p.s, &d), TLS_CAUSE_NONE, "%s", tls_cause_name(d.cause));
    cr_assert_gt(tls_conn_out_len(p.s), 0, "no no_renegotiation warning sent");
    free_pair(&p);
    tls_ctx_unref(s);
}

Test(tls_rec, sends_the_ticket_before_taking_over_so_the_client_resumes)
{
    struct tls_ctx *s = sctx_with(NULL, false, 0);
    struct tls_peer node;
    cr_assert_eq(tls_peer_init(&node, "ucm1.example.test"), 0);
    for (int i = 0; i < 3; i++) {
        struct pair p = connect_pair(s, cctx, &node, 0);
        cr_assert_eq(p.rc_s, 0);
        cr_assert(tls_conn_own_records(p.s));
        cr_assert_eq(tls_conn_resumed(p.s), i > 0, "round %d resumed %d", i, tls_conn_resumed(p.s));
        cr_assert_eq(tls_conn_resumed(p.c), i > 0);
        cr_assert_not_null(node.session, "the ticket written before the takeover was not read");
        transfer(p.s, p.c, 500, 1, 0); /* our first record follows the ticket's sequence number */
        transfer(p.c, p.s, 500, 1, 0);
        free_pair(&p);
    }
    tls_peer_deinit(&node);
    tls_ctx_unref(s);
}

static void server_follows_client_key_update(void)
{
    struct tls_ctx *s = sctx_with(NULL, false, 0);
    struct pair p = established(s);
    cr_assert(tls_conn_own_records(p.s));
    for (int round = 0; round < 3; round++) {
        int type = round == 1 ? SSL_KEY_UPDATE_NOT_REQUESTED : SSL_KEY_UPDATE_REQUESTED;
        cr_assert_eq(SSL_key_update(p.c->ssl, type), 1);
        transfer(p.c, p.s, 700, 2, 0); /* the KeyUpdate goes out before this data */
        /* nothing on the read path: our KeyUpdate (when requested) precedes our next record */
        cr_assert_eq(tls_conn_out_len(p.s), 0);
        uint8_t key[32];
        memcpy(key, p.s->rec->key[1], sizeof(key));
        transfer(p.s, p.c, 900, 3, 0); /* the client must follow our new keys */
        bool changed = memcmp(key, p.s->rec->key[1], sizeof(key)) != 0;
        cr_assert_eq(changed, type == SSL_KEY_UPDATE_REQUESTED, "round %d: KeyUpdate sent %d",
                     round, changed);
        transfer(p.c, p.s, 900, 3, 0);
    }
    free_pair(&p);
    tls_ctx_unref(s);
}

Test(tls_rec, follows_a_client_key_update_and_answers_a_requested_one)
{
    server_follows_client_key_update();
}

Test(tls_rec, own_aead_follows_a_client_key_update_and_answers_a_requested_one)
{
    use_own_aead();
    server_follows_client_key_update();
    shared_contexts_unused();
}

Test(tls_rec, returns_a_record_in_pieces_to_a_short_read_buffer)
{
    struct tls_ctx *s = sctx_with(NULL, false, 0);
    struct pair p = established(s);
    char src[5000], dst[5000];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (char)(i * 13);
    struct iovec iov = {src, sizeof(src)};
    cr_assert_eq(tls_conn_writev(p.c, &iov, 1), (ssize_t)sizeof(src));
    cr_assert_eq(tls_conn_writev(p.c, &iov, 1), (ssize_t)sizeof(src));
    pump(p.c, p.s, 0);
    size_t got = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t off = 0;
        while (off < sizeof(dst)) {
            ssize_t r = tls_conn_read(p.s, dst + off, 333);
            cr_assert_gt(r, 0, "read %zd at %zu", r, off);
            cr_assert_leq(r, 333);
            off += (size_t)r;
        }
        cr_assert_eq(off, sizeof(dst));
        cr_assert(memcmp(src, dst, sizeof(src)) == 0, "pass %d differs", pass);
        got += off;
    }
    cr_assert_eq(got, 2 * sizeof(src));
    cr_assert_eq(tls_conn_read(p.s, dst, 333), TLS_WANT_INPUT);
    cr_assert_eq(tls_conn_out_len(p.s), 0);
    free_pair(&p);
    tls_ctx_unref(s);
}

Test(tls_rec, delivers_close_notify_both_ways)
{
    struct tls_ctx *s = sctx_with(NULL, false, 0);
    struct pair p = established(s);
    transfer(p.c, p.s, 100, 1, 0);
    cr_assert_eq(tls_conn_shutdown(p.c), 0);
    pump(p.c, p.s, 0);
    char buf[64];
    cr_assert_eq(tls_conn_read(p.s, buf, sizeof(buf)), 0);
    cr_assert_eq(tls_conn_read(p.s, buf, sizeof(buf)), 0);
    cr_assert_eq(tls_conn_shutdown(p.s), 0);
    cr_assert_eq(tls_conn_shutdown(p.s), 0, "a second shutdown queues nothing more");
    size_t n = pump(p.s, p.c, 0);
    cr_assert_gt(n, 0);
    cr_assert_eq(tls_conn_read(p.c, buf, sizeof(buf)), 0, "client did not see our close_notify");
    struct iovec iov = {"x", 1};
    cr_assert_eq(tls_conn_writev(p.s, &iov, 1), -ENOTCONN);
    free_pair(&p);
    tls_ctx_unref(s);
}

/* Flip one bit of the next record the client sends, at byte `at` of it (negative: from the
 * end), on a connection of version `maxv` (0: TLS 1.3). */
static void tamper_and_expect_failure(uint16_t maxv, long at, enum tls_cause cause, int alert)
{
    struct tls_ctx *s = sctx_with(NULL, false, maxv);
    struct pair p = established(s);
    struct iovec iov = {"REGISTER sip:x SIP/2.0\r\n", 24};
    cr_assert_eq(tls_conn_writev(p.c, &iov, 1), 24);
    struct slice out = tls_conn_out(p.c);
    char rec[256];
    cr_assert_lt(out.len, sizeof(rec));
    memcpy(rec, out.base, out.len);
    rec[at < 0 ? (long)out.len + at : at] ^= 0x40;
    cr_assert_eq(tls_conn_feed(p.s, rec, out.len), 0);
    tls_conn_out_consume(p.c, out.len);
    char buf[64];
    cr_assert_eq(tls_conn_read(p.s, buf, sizeof(buf)), -EPROTO);
    cr_assert_eq(tls_conn_read(p.s, buf, sizeof(buf)), -EPROTO, "failure is sticky");
    struct tls_diag d;
    cr_assert_eq(tls_conn_diag(p.s, &d), cause, "cause %s", tls_cause_name(d.cause));
    cr_assert_eq(d.alert, alert);
    cr_assert_not(d.alert_from_peer);
    /* Our alert is encrypted under the keys the client expects: it reports it. */
    cr_assert_gt(pump(p.s, p.c, 0), 0, "no alert queued");
    cr_assert_eq(tls_conn_read(p.c, buf, sizeof(buf)), -EPROTO);
    struct tls_diag dc;
    tls_conn_diag(p.c, &dc);
    cr_assert(dc.alert_from_peer);
    cr_assert_eq(dc.alert, alert);
    free_pair(&p);
    tls_ctx_unref(s);
}

static void tampered_records_refused(void)
{
    for (int v = 0; v < 2; v++) {
        uint16_t maxv = v ? TLS12 : 0;
        tamper_and_expect_failure(maxv, 16, TLS_CAUSE_PROTOCOL_ERROR, 20); /* ciphertext */
        tamper_and_expect_failure(maxv, -1, TLS_CAUSE_PROTOCOL_ERROR, 20); /* the tag */
        /* the header's version bytes are authenticated in TLS 1.3; TLS 1.2 authenticates the
         * content type: a 23 turned into 87 is refused before decryption, so flip the nonce */
        tamper_and_expect_failure(maxv, v ? 6 : 2, TLS_CAUSE_PROTOCOL_ERROR, 20);
    }
}

Test(tls_rec, rejects_a_tampered_record_with_bad_record_mac)
{
    tampered_records_refused();
}

Test(tls_rec, own_aead_rejects_a_tampered_record_with_bad_record_mac)
{
    use_own_aead();
    tampered_records_refused();
    shared_contexts_unused();
}

Test(tls_rec, rejects_bad_record_types_and_sizes_with_an_alert)
{
    static const struct {
        uint16_t maxv;
        unsigned char hdr[5];
        int alert;
    } cases[] = {
        {0, {22, 3, 3, 0, 40}, 10},       /* TLS 1.3: plaintext handshake after the handshake */
        {0, {20, 3, 3, 0, 1}, 10},        /* change_cipher_spec after the handshake */
        {0, {23, 3, 3, 0x41, 1}, 22},     /* longer than 2^14 + 256 */
        {0, {23, 3, 3, 0, 16}, 50},       /* too short to hold a tag and a type */
        {TLS12, {20, 3, 3, 0, 1}, 10},    /* TLS 1.2: change_cipher_spec after the handshake */
        {TLS12, {24, 3, 3, 0, 30}, 10},   /* heartbeat: not a type we take */
        {TLS12, {23, 3, 3, 0x48, 1}, 22}, /* longer than 2^14 + 2048 */
        {TLS12, {23, 3, 3, 0, 23}, 50},   /* too short for the explicit nonce and the tag */
        {TLS12, {23, 3, 1, 0, 40}, 70},   /* not the negotiated version */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tls_ctx *s = sctx_with(NULL, false, cases[i].maxv);
        struct pair p = established(s);
        cr_assert_eq(tls_conn_feed(p.s, cases[i].hdr, 5), 0);
        char buf[32];
        cr_assert_eq(tls_conn_read(p.s, buf, sizeof(buf)), -EPROTO, "case %zu", i);
        struct tls_diag d;
        cr_assert_eq(tls_conn_diag(p.s, &d), TLS_CAUSE_PROTOCOL_ERROR);
        cr_assert_eq(d.alert, cases[i].alert, "case %zu alert %d", i, d.alert);
        cr_assert_gt(tls_conn_out_len(p.s), 0);
        free_pair(&p);
        tls_ctx_unref(s);
    }
}

Test(tls_rec, reports_a_fatal_alert_from_the_client)
{
    struct tls_ctx *s = sctx_with(NULL, false, 0);
    struct pair p = established(s);
    /* Make the client fail (a record of ours damaged on the way): it answers with an encrypted
     * bad_record_mac alert, which we must decrypt and report as the peer's. */
    struct iovec iov = {"SIP/2.0 200 OK\r\n", 16};
    cr_assert_eq(tls_conn_writev(p.s, &iov, 1), 16);
    struct slice out = tls_conn_out(p.s);
    char rec[128];
    memcpy(rec, out.base, out.len);
    rec[out.len - 1] ^= 1;
    cr_assert_eq(tls_conn_feed(p.c, rec, out.len), 0);
    tls_conn_out_consume(p.s, out.len);
    char buf[32];
    cr_assert_eq(tls_conn_read(p.c, buf, sizeof(buf)), -EPROTO);
    cr_assert_gt(pump(p.c, p.s, 0), 0, "the client sent no alert");
    cr_assert_eq(tls_conn_read(p.s, buf, sizeof(buf)), -EPROTO);
    struct tls_diag d;
    tls_conn_diag(p.s, &d);
    cr_assert(d.alert_from_peer);
    cr_assert_eq(d.alert, 20, "alert %d", d.alert);
    free_pair(&p);
    tls_ctx_unref(s);
}

Test(tls_rec, uses_a_few_hundred_bytes_per_idle_connection)
{
    struct tls_ctx *s = sctx_with(NULL, false, 0);
    struct pair p = established(s);
    transfer(p.c, p.s, 1400, 1, 0);
    transfer(p.s, p.c, 600, 1, 0);
    cr_assert(tls_conn_own_records(p.s));
    cr_assert_null(p.s->in.p, "input buffer kept while idle");
    cr_assert_null(p.s->out.p, "output buffer kept while idle");
    cr_assert_null(p.s->hs);
    cr_assert_lt(sizeof(*p.s) + sizeof(*p.s->rec), 512);
    free_pair(&p);
    tls_ctx_unref(s);
}

/* Two record layers keyed against each other, without a handshake (as the fuzz target does). */
static struct tls_conn *keyed_conn(const uint8_t *rd, const uint8_t *wr)
{
    struct tls_conn *c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    c->rec = tls__rec_new(0, rd, wr);
    cr_assert_not_null(c->rec);
    c->flags = TLS_F_ESTABLISHED | TLS_F_CONFIRMED;
    return c;
}

Test(tls_rec, refuses_data_after_a_key_update_in_the_same_record)
{
    static const uint8_t a[48] = {7}, b[48] = {9};
    struct tls_conn *s = keyed_conn(a, b), *other = keyed_conn(b, a);
    static const uint8_t two[10] = {24, 0, 0, 1, 0, 24, 0, 0, 1, 0};
    cr_assert_eq(tls__rec_seal(other, 22, two, sizeof(two)), 0);
    pump(other, s, 0);
    char buf[32];
    cr_assert_eq(tls_conn_read(s, buf, sizeof(buf)), -EPROTO);
    struct tls_diag d;
    cr_assert_eq(tls_conn_diag(s, &d), TLS_CAUSE_PROTOCOL_ERROR);
    cr_assert_eq(d.alert, 10, "alert %d", d.alert);
    tls_conn_free(s);
    tls_conn_free(other);
}
