// SPDX-License-Identifier: MIT
// Tests for tls/: real OpenSSL handshakes between two in-memory tls_conns (server and mTLS
// client) over a throwaway PKI made by scripts/make-pki.sh; diagnostics for each failure.
#include <criterion/criterion.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls.h"
#include "tls/tls_priv.h"
#include "tls_pair.h"

static struct tls_ctx *sctx, *cctx;
static struct tls_peer peer;

static void setup_mtls(void)
{
    pki_init();
    sctx = server_ctx("ucm", "ca.crt", true, 0);
    cctx = client_ctx("client", "ucm-ca.crt", 0);
    cr_assert_eq(tls_peer_init(&peer, "ucm1.example.test"), 0);
}

static void teardown_mtls(void)
{
    tls_peer_deinit(&peer);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
}

static void expect_diag(struct tls_conn *c, enum tls_cause cause, const char *needle)
{
    struct tls_diag d;
    cr_assert_eq(tls_conn_diag(c, &d), cause, "cause %s, want %s (detail: %s)",
                 tls_cause_name(d.cause), tls_cause_name(cause), d.detail);
    char line[2048];
    cr_assert_gt(tls_diag_format(&d, "ucm1.example.test:5091", line, sizeof(line)), 0);
    cr_assert_not_null(strstr(line, tls_cause_name(cause)), "%s", line);
    if (needle)
        cr_assert_not_null(strstr(line, needle), "'%s' not in: %s", needle, line);
}

TestSuite(tls, .init = setup_mtls, .fini = teardown_mtls, .timeout = 60);

Test(tls, completes_mutual_tls_13_and_moves_data_both_ways)
{
    struct pair p = connect_pair(sctx, cctx, &peer, 0);
    cr_assert_eq(p.rc_c, 0);
    cr_assert_eq(p.rc_s, 0);
    cr_assert(tls_conn_established(p.c) && tls_conn_established(p.s));
    cr_assert_str_eq(tls_conn_version(p.c), "TLSv1.3");
    cr_assert_not(tls_conn_resumed(p.c));
    transfer(p.c, p.s, 1000, 3, 0);
    transfer(p.s, p.c, 5000, 7, 0);
    struct tls_diag d;
    cr_assert_eq(tls_conn_diag(p.c, &d), TLS_CAUSE_NONE);
    free_pair(&p);
}

Test(tls, completes_tls_12_with_an_ecdhe_gcm_suite)
{
    struct tls_ctx *c12 = client_ctx("client", "ucm-ca.crt", TLS12);
    struct pair p = connect_pair(sctx, c12, &peer, 0);
    cr_assert_eq(p.rc_c, 0);
    cr_assert_eq(p.rc_s, 0);
    cr_assert_str_eq(tls_conn_version(p.s), "TLSv1.2");
    cr_assert_not_null(strstr(tls_conn_cipher(p.s), "ECDHE-ECDSA-AES128-GCM"), "%s",
                       tls_conn_cipher(p.s));
    transfer(p.s, p.c, 70000, 9, 0);
    free_pair(&p);
    tls_ctx_unref(c12);
}

/* The server picks TLS_AES_128_GCM_SHA256 whatever the client's order (OpenSSL's own default,
 * AES-256 first, here), as it picks ECDHE-*-AES128-GCM in TLS 1.2, and still takes a client that
 * offers only another suite. */
Test(tls, prefers_aes_128_gcm_sha256_in_tls_13_and_takes_the_others)
{
    static const struct {
        const char *offer, *want;
    } cases[] = {
        {"TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
         "TLS_AES_128_GCM_SHA256"},
        {"TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"},
        {"TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256] = "";
        struct tls_client_opts o = {.cert_file = f("client.crt"),
                                    .key_file = f("client.key"),
                                    .ca_file = f("ucm-ca.crt"),
                                    .ciphersuites = cases[i].offer};
        struct tls_ctx *c = NULL;
        cr_assert_eq(tls_client_ctx_new(&o, &c, err, sizeof(err)), 0, "%s", err);
        struct tls_peer node;
        cr_assert_eq(tls_peer_init(&node, "ucm1.example.test"), 0);
        struct pair p = connect_pair(sctx, c, &node, 0);
        cr_assert_eq(p.rc_c, 0, "offer %s: client %d", cases[i].offer, p.rc_c);
        cr_assert_eq(p.rc_s, 0, "offer %s: server %d", cases[i].offer, p.rc_s);
        cr_assert_str_eq(tls_conn_cipher(p.s), cases[i].want, "offer %s", cases[i].offer);
        cr_assert_str_eq(tls_conn_cipher(p.c), cases[i].want);
        transfer(p.c, p.s, 3000, 3, 0);
        free_pair(&p);
        tls_peer_deinit(&node);
        tls_ctx_unref(c);
    }
}

Test(tls, encrypts_a_large_gather_write_without_losing_a_byte)
{
    struct pair p = connect_pair(sctx, cctx, &peer, 0);
    cr_assert_eq(p.rc_c, 0);
    /* 64 slices, some larger than a record, crossing the 16 KiB chunk boundaries. */
    transfer(p.c, p.s, 300000, 64, 0);
    transfer(p.s, p.c, 16384 * 3, 2, 0);
    transfer(p.s, p.c, 1, 1, 0);
    free_pair(&p);
}

Test(tls, survives_one_byte_feeds_in_handshake_and_data)
{
    struct pair p = connect_pair(sctx, cctx, &peer, 1);
    cr_assert_eq(p.rc_c, 0);
    cr_assert_eq(p.rc_s, 0);
    transfer(p.c, p.s, 3000, 5, 1);
    transfer(p.s, p.c, 20000, 5, 1);
    free_pair(&p);
}

Test(tls, reports_missing_client_certificate_on_both_sides)
{
    struct tls_ctx *anon = client_ctx(NULL, "ucm-ca.crt", 0);
    struct pair p = connect_pair(sctx, anon, &peer, 0);
    cr_assert_eq(p.rc_s, -EPROTO);
    cr_assert_eq(p.rc_c, -EPROTO);
    expect_diag(p.s, TLS_CAUSE_PEER_NO_CERTIFICATE, "require_client_cert");
    expect_diag(p.c, TLS_CAUSE_ALERT_CERTIFICATE_REQUIRED, "upstream cert_file");
    free_pair(&p);
    tls_ctx_unref(anon);

    anon = client_ctx(NULL, "ucm-ca.crt", TLS12);
    p = connect_pair(sctx, anon, &peer, 0);
    expect_diag(p.s, TLS_CAUSE_PEER_NO_CERTIFICATE, NULL);
    expect_diag(p.c, TLS_CAUSE_ALERT_HANDSHAKE_FAILURE, NULL);
    free_pair(&p);
    tls_ctx_unref(anon);
}

Test(tls, tells_the_client_unknown_ca_when_its_certificate_is_from_an_untrusted_ca)
{
    for (int v = 0; v < 2; v++) {
        struct tls_ctx *bad = client_ctx("untrusted", "ucm-ca.crt", v ? TLS12 : 0);
        struct pair p = connect_pair(sctx, bad, &peer, 0);
        cr_assert_eq(p.rc_c, -EPROTO);
        cr_assert_eq(p.rc_s, -EPROTO);
        expect_diag(p.c, TLS_CAUSE_ALERT_UNKNOWN_CA, "tomcat-trust");
        expect_diag(p.c, TLS_CAUSE_ALERT_UNKNOWN_CA, "Device > Expressway-C");
        expect_diag(p.s, TLS_CAUSE_PEER_UNTRUSTED_ISSUER, "untrusted test CA");
        struct tls_diag d;
        tls_conn_diag(p.c, &d);
        cr_assert(d.alert_from_peer);
        cr_assert_eq(d.alert, 48);
        free_pair(&p);
        tls_ctx_unref(bad);
    }
}

Test(tls, names_expected_and_actual_names_on_a_hostname_mismatch)
{
    struct tls_peer other;
    cr_assert_eq(tls_peer_init(&other, "ucm9.example.test"), 0);
    struct pair p = connect_pair(sctx, cctx, &other, 0);
    cr_assert_eq(p.rc_c, -EPROTO);
    expect_diag(p.c, TLS_CAUSE_PEER_HOSTNAME_MISMATCH, "expected=ucm9.example.test");
    expect_diag(p.c, TLS_CAUSE_PEER_HOSTNAME_MISMATCH, "DNS:ucm1.example.test");
    cr_assert_neq(p.rc_s, 0);
    free_pair(&p);
    tls_peer_deinit(&other);
}

Test(tls, checks_ip_literals_against_ip_sans)
{
    struct tls_peer ip;
    cr_assert_eq(tls_peer_init(&ip, "127.0.0.1"), 0);
    cr_assert(ip.name_is_ip);
    struct pair p = connect_pair(sctx, cctx, &ip, 0);
    cr_assert_eq(p.rc_c, 0);
    free_pair(&p);
    tls_peer_deinit(&ip);

    cr_assert_eq(tls_peer_init(&ip, "127.0.0.2"), 0);
    p = connect_pair(sctx, cctx, &ip, 0);
    expect_diag(p.c, TLS_CAUSE_PEER_HOSTNAME_MISMATCH, "IP:127.0.0.1");
    free_pair(&p);
    tls_peer_deinit(&ip);
}

Test(tls, does_not_accept_a_name_found_only_in_the_subject_cn)
{
    /* client.crt has CN=SAN=edge.example.test; the server cert's CN is ucm1 but SANs decide. */
    struct tls_ctx *s = server_ctx("client", NULL, false, 0);
    struct tls_ctx *c = client_ctx(NULL, "ca.crt", 0);
    struct tls_peer cnonly;
    cr_assert_eq(tls_peer_init(&cnonly, "edge.example.test"), 0);
    struct pair p = connect_pair(s, c, &cnonly, 0);
    /* client.crt is clientAuth only: a server using it fails the purpose check, not the name. */
    cr_assert_eq(p.rc_c, -EPROTO);
    free_pair(&p);
    tls_peer_deinit(&cnonly);
    tls_ctx_unref(s);
    tls_ctx_unref(c);
}

Test(tls, reports_an_untrusted_server_issuer_with_its_name)
{
    struct tls_ctx *s = server_ctx("untrusted", NULL, false, 0);
    struct pair p = connect_pair(s, cctx, &peer, 0);
    cr_assert_eq(p.rc_c, -EPROTO);
    expect_diag(p.c, TLS_CAUSE_PEER_UNTRUSTED_ISSUER, "untrusted test CA");
    expect_diag(p.c, TLS_CAUSE_PEER_UNTRUSTED_ISSUER, "ca_file");
    expect_diag(p.s, TLS_CAUSE_ALERT_UNKNOWN_CA, NULL);
    free_pair(&p);
    tls_ctx_unref(s);
}

Test(tls, reports_an_expired_server_certificate_with_its_dates)
{
    struct tls_ctx *s = server_ctx("expired", NULL, false, 0);
    struct pair p = connect_pair(s, cctx, &peer, 0);
    cr_assert_eq(p.rc_c, -EPROTO);
    expect_diag(p.c, TLS_CAUSE_PEER_EXPIRED, "notAfter=2020-02-01");
    free_pair(&p);
    tls_ctx_unref(s);
}

Test(tls, reports_a_self_signed_server_certificate)
{
    struct tls_ctx *s = server_ctx("selfsigned", NULL, false, 0);
    struct pair p = connect_pair(s, cctx, &peer, 0);
    expect_diag(p.c, TLS_CAUSE_PEER_SELF_SIGNED, "self-signed");
    free_pair(&p);
    tls_ctx_unref(s);
}

static void check_resumption(uint16_t maxv)
{
    struct tls_ctx *c = client_ctx("client", "ucm-ca.crt", maxv);
    struct tls_peer node;
    cr_assert_eq(tls_peer_init(&node, "ucm1.example.test"), 0);
    struct pair p = connect_pair(sctx, c, &node, 0);
    cr_assert_eq(p.rc_c, 0);
    cr_assert_not(tls_conn_resumed(p.c));
    cr_assert_not_null(node.session, "no session kept after the first handshake");
    free_pair(&p);

    p = connect_pair(sctx, c, &node, 0);
    cr_assert_eq(p.rc_c, 0);
    cr_assert_eq(p.rc_s, 0);
    cr_assert(tls_conn_resumed(p.c), "client did not resume (%s)", tls_conn_version(p.c));
    cr_assert(tls_conn_resumed(p.s), "server did not resume");
    transfer(p.c, p.s, 500, 2, 0);
    free_pair(&p);
    tls_peer_deinit(&node);
    tls_ctx_unref(c);
}

Test(tls, resumes_the_kept_session_with_tls_13)
{
    check_resumption(0);
}

Test(tls, resumes_the_kept_session_with_tls_12)
{
    check_resumption(TLS12);
}

Test(tls, swaps_in_a_reloaded_context_while_old_connections_keep_theirs)
{
    struct tls_ctx *slot = tls_ctx_ref(sctx);
    struct pair old = connect_pair(slot, cctx, &peer, 0);
    cr_assert_eq(old.rc_c, 0);

    struct tls_ctx *next = server_ctx("untrusted", NULL, false, 0);
    tls_ctx_swap(&slot, next);
    /* The new context presents the untrusted certificate: a new connection fails... */
    struct tls_peer fresh;
    cr_assert_eq(tls_peer_init(&fresh, "ucm1.example.test"), 0);
    struct pair p = connect_pair(slot, cctx, &fresh, 0);
    expect_diag(p.c, TLS_CAUSE_PEER_UNTRUSTED_ISSUER, NULL);
    free_pair(&p);
    tls_peer_deinit(&fresh);
    /* ...while the old connection still works on the old one. */
    transfer(old.c, old.s, 4000, 4, 0);
    transfer(old.s, old.c, 4000, 4, 0);
    free_pair(&old);
    tls_ctx_unref(slot);
}

Test(tls, drops_a_kept_session_made_with_an_older_client_context)
{
    struct pair p = connect_pair(sctx, cctx, &peer, 0);
    cr_assert_not_null(peer.session);
    free_pair(&p);
    struct tls_ctx *reloaded = client_ctx("client", "ucm-ca.crt", 0);
    p = connect_pair(sctx, reloaded, &peer, 0);
    cr_assert_eq(p.rc_c, 0);
    cr_assert_not(tls_conn_resumed(p.c));
    free_pair(&p);
    tls_ctx_unref(reloaded);
}

Test(tls, delivers_close_notify_as_end_of_stream)
{
    struct pair p = connect_pair(sctx, cctx, &peer, 0);
    cr_assert_eq(tls_conn_shutdown(p.c), 0);
    cr_assert_gt(tls_conn_out_len(p.c), 0);
    cr_assert_eq(tls_conn_shutdown(p.c), 0);
    pump(p.c, p.s, 0);
    char buf[16];
    cr_assert_eq(tls_conn_read(p.s, buf, sizeof(buf)), 0);
    cr_assert_eq(tls_conn_read(p.s, buf, sizeof(buf)), 0);
    struct iovec iov = {"x", 1};
    cr_assert_eq(tls_conn_writev(p.c, &iov, 1), -ENOTCONN);
    free_pair(&p);
}

Test(tls, fails_on_garbage_input_without_crashing)
{
    struct tls_conn *s = tls_conn_new_server(sctx);
    const char junk[] = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP x\r\n\r\n";
    cr_assert_eq(tls_conn_feed(s, junk, sizeof(junk) - 1), 0);
    cr_assert_eq(tls_conn_handshake(s), -EPROTO);
    char buf[32];
    cr_assert_eq(tls_conn_read(s, buf, sizeof(buf)), -EPROTO);
    expect_diag(s, TLS_CAUSE_PROTOCOL_ERROR, "not speaking TLS");
    tls_conn_free(s);

    /* Random bytes in random sizes, on the server and on a client. */
    srand(42);
    for (int round = 0; round < 50; round++) {
        struct tls_conn *c =
            round % 2 ? tls_conn_new_server(sctx) : tls_conn_new_client(cctx, &peer);
        tls_conn_handshake(c);
        tls_conn_out_consume(c, tls_conn_out_len(c));
        for (int i = 0; i < 8; i++) {
            unsigned char rnd[300];
            size_t n = (size_t)(rand() % (int)sizeof(rnd)) + 1;
            for (size_t k = 0; k < n; k++)
                rnd[k] = (unsigned char)rand();
            if (i == 0 && round % 4 == 1)
                memcpy(rnd, "\x16\x03\x01\x00\xff\x01", 6); /* a plausible record start */
            if (tls_conn_feed(c, rnd, n) < 0)
                break;
            int rc = tls_conn_handshake(c);
            cr_assert(rc == TLS_WANT_INPUT || rc == -EPROTO, "rc %d", rc);
            if (rc == -EPROTO)
                break;
        }
        tls_conn_free(c);
    }
}

Test(tls, records_caller_signalled_timeout_and_peer_close)
{
    struct tls_conn *c = tls_conn_new_client(cctx, &peer);
    cr_assert_eq(tls_conn_handshake(c), TLS_WANT_INPUT);
    cr_assert_gt(tls_conn_out_len(c), 0, "no ClientHello produced");
    tls_conn_abort(c, TLS_CAUSE_TIMEOUT);
    tls_conn_abort(c, TLS_CAUSE_PEER_CLOSED); /* the first cause stays */
    cr_assert_eq(tls_conn_handshake(c), -EPROTO);
    expect_diag(c, TLS_CAUSE_TIMEOUT, "expected=ucm1.example.test");
    tls_conn_free(c);

    struct tls_conn *s = tls_conn_new_server(sctx);
    tls_conn_abort(s, TLS_CAUSE_PEER_CLOSED);
    struct tls_diag d;
    cr_assert_eq(tls_conn_diag(s, &d), TLS_CAUSE_PEER_CLOSED);
    cr_assert_eq(d.side, TLS_SIDE_SERVER);
    tls_conn_free(s);
}

Test(tls, lists_the_client_certificate_names_for_the_ucm_admin)
{
    char buf[256];
    int n = tls_ctx_cert_names(cctx, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    cr_assert_str_eq(buf, "CN=edge.example.test SAN=DNS:edge.example.test");
    n = tls_ctx_cert_names(sctx, buf, sizeof(buf));
    cr_assert_not_null(strstr(buf, "DNS:ucm2.example.test"), "%s", buf);
    cr_assert_not_null(strstr(buf, "IP:127.0.0.1"), "%s", buf);
    cr_assert_eq(tls_ctx_cert_names(cctx, buf, 0), -EINVAL);
    cr_assert_eq(tls_ctx_cert_names(cctx, buf, 8), 7); /* truncated, NUL-terminated */
    cr_assert_str_eq(buf, "CN=edge");
}

Test(tls, refuses_bad_files_with_a_reason)
{
    char err[256];
    struct tls_ctx *ctx = (struct tls_ctx *)1;
    struct tls_server_opts o = {.cert_file = f("nope.crt"), .key_file = f("server.key")};
    cr_assert_eq(tls_server_ctx_new(&o, &ctx, err, sizeof(err)), -ENOENT);
    cr_assert_null(ctx);
    cr_assert_not_null(strstr(err, "nope.crt"), "%s", err);
    o.cert_file = f("server.crt");
    o.key_file = f("client.key");
    cr_assert_eq(tls_server_ctx_new(&o, &ctx, err, sizeof(err)), -EINVAL);
    cr_assert_not_null(strstr(err, "does not match"), "%s", err);
    o.key_file = f("server.key");
    o.ciphers = "NOT-A-CIPHER";
    cr_assert_eq(tls_server_ctx_new(&o, &ctx, err, sizeof(err)), -EINVAL);
    struct tls_client_opts co = {.ca_file = NULL};
    cr_assert_eq(tls_client_ctx_new(&co, &ctx, err, sizeof(err)), -EINVAL);
    cr_assert_null(tls_conn_new_client(sctx, &peer), "a server context must not make clients");
    cr_assert_null(tls_conn_new_server(cctx));
}

Test(tls, rejects_a_feed_beyond_the_input_cap)
{
    struct tls_conn *s = tls_conn_new_server(sctx);
    static char big[TLS_IN_MAX];
    cr_assert_eq(tls_conn_feed(s, big, sizeof(big)), 0);
    cr_assert_eq(tls_conn_feed(s, big, 1), -ENOBUFS);
    tls_conn_free(s);
}

Test(tls, keeps_no_ciphertext_buffer_on_an_idle_connection)
{
    struct pair p = connect_pair(sctx, cctx, &peer, 0);
    transfer(p.c, p.s, 2000, 2, 0);
    cr_assert_eq(tls_conn_out_len(p.c), 0);
    cr_assert_eq(tls_conn_out(p.s).base, NULL);
    free_pair(&p);
}

/* A server connection waits for its first handshake step (the worker's slice, in a reconnect
 * storm thousands of them) with its ClientHello and nothing else: no SSL object yet, the bytes
 * in a block of their size. Then the handshake runs as usual. */
Test(tls, a_server_connection_holds_only_its_clienthello_until_its_first_step)
{
    struct tls_conn *cl = tls_conn_new_client(cctx, &peer);
    cr_assert_eq(tls_conn_handshake(cl), TLS_WANT_INPUT);
    struct slice hello = tls_conn_out(cl);
    cr_assert_gt(hello.len, 100);
    enum { N = 500 };
    static struct tls_conn *waiting[N];
    struct mallinfo2 before = mallinfo2();
    for (int i = 0; i < N; i++) {
        waiting[i] = tls_conn_new_server(sctx);
        cr_assert_not_null(waiting[i]);
        cr_assert_eq(tls_conn_feed(waiting[i], hello.base, hello.len), 0);
        cr_assert_null(waiting[i]->ssl, "an SSL object before the first step");
        cr_assert_null(waiting[i]->hs);
        cr_assert_eq(waiting[i]->in.cap, hello.len, "a %u-byte block for %zu bytes",
                     waiting[i]->in.cap, hello.len);
    }
    struct mallinfo2 after = mallinfo2(); /* all zeros under ASan, which has its own heap */
    size_t per = (after.uordblks - before.uordblks) / N;
    cr_assert_lt(per, 2 * hello.len + 512, "%zu heap bytes per waiting connection (hello %zu)", per,
                 hello.len);
    /* one of them goes on: its first step answers the ClientHello */
    struct pair p = {.c = cl, .s = waiting[0]};
    tls_conn_out_consume(cl, hello.len);
    run(&p, 0);
    cr_assert_eq(p.rc_c, 0, "client %d", p.rc_c);
    cr_assert_eq(p.rc_s, 0, "server %d", p.rc_s);
    transfer(p.c, p.s, 1000, 2, 0);
    transfer(p.s, p.c, 1000, 2, 0);
    free_pair(&p);
    for (int i = 1; i < N; i++) /* freed before their step: nothing else to release */
        tls_conn_free(waiting[i]);
}

Test(tls, names_every_cause_and_fix)
{
    for (int i = 0; i < TLS_CAUSE_COUNT; i++) {
        cr_assert_neq(strcmp(tls_cause_name(i), "?"), 0);
        cr_assert_not_null(tls_cause_fix(i, TLS_SIDE_SERVER), "fix %d", i);
        cr_assert_not_null(tls_cause_fix(i, TLS_SIDE_CLIENT), "fix %d", i);
    }
    cr_assert_str_eq(tls_cause_name(TLS_CAUSE_ALERT_UNKNOWN_CA), "unknown_ca");
    cr_assert_str_eq(tls_cause_name(TLS_CAUSE_COUNT), "?");
}

Test(tls, confirms_a_tls_13_client_only_after_the_server_accepted_its_certificate)
{
    struct tls_ctx *ctxs[2] = {cctx, client_ctx("untrusted", "ucm-ca.crt", 0)};
    for (int bad = 0; bad < 2; bad++) {
        struct tls_conn *c = tls_conn_new_client(ctxs[bad], &peer), *s = tls_conn_new_server(sctx);
        cr_assert_eq(tls_conn_handshake(c), TLS_WANT_INPUT);
        pump(c, s, 0);
        cr_assert_eq(tls_conn_handshake(s), TLS_WANT_INPUT);
        pump(s, c, 0);
        cr_assert_eq(tls_conn_handshake(c), 0, "a TLS 1.3 client finishes first");
        cr_assert(tls_conn_established(c));
        cr_assert_not(tls_conn_confirmed(c));
        pump(c, s, 0);
        cr_assert_eq(tls_conn_handshake(s), bad ? -EPROTO : 0);
        cr_assert_eq(tls_conn_confirmed(s), !bad);
        pump(s, c, 0);
        char buf[16];
        cr_assert_eq(tls_conn_read(c, buf, sizeof(buf)), bad ? -EPROTO : TLS_WANT_INPUT);
        cr_assert_eq(tls_conn_confirmed(c), !bad, "the ticket confirms, the alert does not");
        if (bad)
            expect_diag(c, TLS_CAUSE_ALERT_UNKNOWN_CA, NULL);
        tls_conn_free(c);
        tls_conn_free(s);
    }
    tls_ctx_unref(ctxs[1]);
}

Test(tls, confirms_a_tls_12_client_at_the_end_of_the_handshake)
{
    struct tls_ctx *c12 = client_ctx("client", "ucm-ca.crt", TLS12);
    struct pair p = connect_pair(sctx, c12, &peer, 0);
    cr_assert(tls_conn_confirmed(p.c));
    cr_assert(tls_conn_confirmed(p.s));
    free_pair(&p);
    tls_ctx_unref(c12);
}

Test(tls, formats_a_diag_line_within_the_buffer_and_without_stray_quotes)
{
    struct tls_diag d = {
        .side = TLS_SIDE_CLIENT, .cause = TLS_CAUSE_PEER_UNTRUSTED_ISSUER, .alert = -1};
    snprintf(d.detail, sizeof(d.detail), "subject=/CN=a \"quoted\" name");
    snprintf(d.expected, sizeof(d.expected), "ucm1.example.test");
    char line[1024];
    int n = tls_diag_format(&d, "ucm1:5091", line, sizeof(line));
    cr_assert_eq((size_t)n, strlen(line));
    cr_assert_not_null(strstr(line, "detail=\"subject=/CN=a 'quoted' name\""), "%s", line);
    cr_assert_not_null(strstr(line, "peer=ucm1:5091"), "%s", line);
    char small[40];
    n = tls_diag_format(&d, "ucm1:5091", small, sizeof(small));
    cr_assert_eq(n, (int)sizeof(small) - 1);
    cr_assert_eq(strlen(small), sizeof(small) - 1);
    cr_assert_eq(tls_diag_format(&d, NULL, small, 0), -EINVAL);
}

static bool resumes_after_rotations(uint16_t maxv, int rotations)
{
    struct tls_ctx *c = client_ctx("client", "ucm-ca.crt", maxv);
    struct tls_peer node;
    cr_assert_eq(tls_peer_init(&node, "ucm1.example.test"), 0);
    struct pair p = connect_pair(sctx, c, &node, 0);
    cr_assert_eq(p.rc_c, 0);
    free_pair(&p);
    for (int i = 0; i < rotations; i++)
        cr_assert_eq(tls_ctx_rotate_ticket_key(sctx), 0);
    p = connect_pair(sctx, c, &node, 0);
    cr_assert_eq(p.rc_c, 0);
    cr_assert_eq(p.rc_s, 0);
    bool resumed = tls_conn_resumed(p.s);
    free_pair(&p);
    tls_peer_deinit(&node);
    tls_ctx_unref(c);
    return resumed;
}

Test(tls, accepts_tickets_of_the_previous_ticket_key_only)
{
    cr_assert(resumes_after_rotations(0, 1), "previous key must still resume (TLS 1.3)");
    cr_assert_not(resumes_after_rotations(0, 2), "a retired key must not resume (TLS 1.3)");
    cr_assert(resumes_after_rotations(TLS12, 1), "previous key must still resume (TLS 1.2)");
    cr_assert_eq(tls_ctx_rotate_ticket_key(cctx), -EINVAL);
}

Test(tls, keeps_resuming_connection_after_connection)
{
    for (int v = 0; v < 2; v++) {
        struct tls_ctx *c = client_ctx("client", "ucm-ca.crt", v ? TLS12 : 0);
        struct tls_peer node;
        cr_assert_eq(tls_peer_init(&node, "ucm1.example.test"), 0);
        for (int i = 0; i < 4; i++) {
            struct pair p = connect_pair(sctx, c, &node, 0);
            cr_assert_eq(p.rc_c, 0);
            cr_assert_eq(tls_conn_resumed(p.c), i > 0, "round %d (TLS1.%d)", i, v ? 2 : 3);
            free_pair(&p);
        }
        tls_peer_deinit(&node);
        tls_ctx_unref(c);
    }
}

/* A server context asking for a client certificate from ca.crt carrying one of `names`. */
static struct tls_ctx *named_server_ctx(const char *const *names, size_t n, uint16_t maxv)
{
    char err[256] = "";
    struct tls_server_opts o = {.cert_file = f("ucm.crt"),
                                .key_file = f("ucm.key"),
                                .client_ca_file = f("ca.crt"),
                                .require_client_cert = true,
                                .peer_names = names,
                                .n_peer_names = n,
                                .max_version = maxv};
    struct tls_ctx *ctx = NULL;
    cr_assert_eq(tls_server_ctx_new(&o, &ctx, err, sizeof(err)), 0, "%s", err);
    return ctx;
}

Test(tls, admits_a_client_certificate_only_with_one_of_the_listed_names)
{
    /* the client certificate: CN = SAN DNS = edge.example.test (make-pki.sh) */
    static const char *const listed[] = {"ucm9.example.test", "edge.example.test"};
    static const char *const unlisted[] = {"ucm1.example.test", "example.test"};
    static const char *const wildcard[] = {"*.example.test"};
    for (int v = 0; v < 2; v++) {
        struct tls_ctx *ok = named_server_ctx(listed, 2, v ? TLS12 : 0);
        struct pair p = connect_pair(ok, cctx, &peer, 0);
        cr_assert_eq(p.rc_s, 0, "the second listed name admits");
        cr_assert_eq(p.rc_c, 0);
        free_pair(&p);
        tls_ctx_unref(ok);

        struct tls_ctx *no = named_server_ctx(unlisted, 2, v ? TLS12 : 0);
        p = connect_pair(no, cctx, &peer, 0);
        cr_assert_eq(p.rc_s, -EPROTO, "no listed name: refused");
        expect_diag(p.s, TLS_CAUSE_PEER_HOSTNAME_MISMATCH, "edge.example.test");
        free_pair(&p);
        tls_ctx_unref(no);

        struct tls_ctx *wc = named_server_ctx(wildcard, 1, v ? TLS12 : 0);
        p = connect_pair(wc, cctx, &peer, 0);
        cr_assert_eq(p.rc_s, -EPROTO, "a listed name is a name, never a pattern");
        free_pair(&p);
        tls_ctx_unref(wc);
    }
}
