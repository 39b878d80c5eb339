// SPDX-License-Identifier: MIT
// Tests for a server context's lanes (an SSL_CTX per worker, each in an OpenSSL library context of
// its own) and the session-id cache they share (tls/tls_sess.c): a client resumes whichever lane
// its next connection lands on, by ticket (TLS 1.3, 1.2) or by session id (TLS 1.2 without
// tickets); the cache keeps at most its size, drops what OpenSSL gives up and what has expired.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "tls/tls.h"
#include "tls/tls_priv.h"
#include "tls_pair.h"

static struct tls_ctx *lanes_ctx(unsigned lanes, uint32_t cache, uint32_t timeout_s)
{
    char err[256] = "";
    struct tls_server_opts o = {.cert_file = f("ucm.crt"),
                                .key_file = f("ucm.key"),
                                .lanes = lanes,
                                .session_cache_size = cache,
                                .session_timeout_s = timeout_s};
    struct tls_ctx *ctx = NULL;
    cr_assert_eq(tls_server_ctx_new(&o, &ctx, err, sizeof(err)), 0, "%s", err);
    return ctx;
}

/* A client that resumes by session id only (no tickets), as some TLS 1.2 stacks do. */
static struct tls_ctx *id_only_client(void)
{
    struct tls_ctx *c = client_ctx(NULL, "ucm-ca.crt", TLS12);
    SSL_CTX_set_options(c->ssl_ctx, SSL_OP_NO_TICKET);
    return c;
}

static struct pair connect_on(struct tls_ctx *s, unsigned lane, struct tls_ctx *c,
                              struct tls_peer *node)
{
    struct pair p = {.c = tls_conn_new_client(c, node), .s = tls_conn_new_server_lane(s, lane)};
    cr_assert_not_null(p.c);
    cr_assert_not_null(p.s);
    run(&p, 0);
    cr_assert_eq(p.rc_c, 0, "client %d", p.rc_c);
    cr_assert_eq(p.rc_s, 0, "server %d", p.rc_s);
    return p;
}

/* The lane a server connection's SSL object belongs to (its SSL_CTX), -1 for the shared one. */
static int lane_of(const struct tls_ctx *s, const struct tls_conn *c)
{
    SSL_CTX *sc = SSL_get_SSL_CTX(c->ssl);
    for (unsigned i = 0; i < s->n_lanes; i++)
        if (s->lanes[i].ssl_ctx == sc)
            return (int)i;
    return sc == s->ssl_ctx ? -1 : -2;
}

TestSuite(tls_lanes, .init = pki_init, .timeout = 120);

Test(tls_lanes, gives_each_lane_its_own_ssl_ctx_and_library_context)
{
    struct tls_ctx *s = lanes_ctx(3, 0, 0);
    cr_assert_eq(tls_ctx_lanes(s), 3);
    struct tls_ctx *c = client_ctx(NULL, "ucm-ca.crt", 0);
    for (unsigned lane = 0; lane < 5; lane++) {
        struct tls_peer node;
        cr_assert_eq(tls_peer_init(&node, "ucm1.example.test"), 0);
        struct pair p = {.c = tls_conn_new_client(c, &node),
                         .s = tls_conn_new_server_lane(s, lane)};
        /* the SSL object comes at the first step: look while the handshake runs */
        tls_conn_handshake(p.c);
        pump(p.c, p.s, 0);
        tls_conn_handshake(p.s);
        cr_assert_eq(lane_of(s, p.s), (int)(lane % 3), "lane %u", lane);
        run(&p, 0);
        cr_assert_eq(p.rc_s, 0);
        transfer(p.c, p.s, 3000, 3, 0);
        transfer(p.s, p.c, 3000, 3, 0);
        free_pair(&p);
        tls_peer_deinit(&node);
    }
    for (unsigned i = 0; i < 3; i++) {
        cr_assert_not_null(s->lanes[i].lib);
        for (unsigned j = 0; j < i; j++)
            cr_assert_neq(s->lanes[i].lib, s->lanes[j].lib);
        cr_assert_eq(SSL_CTX_get_app_data(s->lanes[i].ssl_ctx), s);
    }
    tls_ctx_unref(c);
    tls_ctx_unref(s);
}

Test(tls_lanes, makes_no_lanes_for_one_worker)
{
    struct tls_ctx *s = lanes_ctx(1, 0, 0);
    cr_assert_eq(tls_ctx_lanes(s), 0);
    cr_assert_null(s->lanes);
    tls_ctx_unref(s);
}

/* Full handshake on one lane, the next connection on another: it resumes, each version and way. */
Test(tls_lanes, resumes_on_another_lane_by_ticket_and_by_session_id)
{
    struct tls_ctx *s = lanes_ctx(2, 0, 0);
    struct {
        const char *what;
        struct tls_ctx *c;
    } cases[] = {
        {"TLS 1.3 ticket", client_ctx(NULL, "ucm-ca.crt", 0)},
        {"TLS 1.2 ticket", client_ctx(NULL, "ucm-ca.crt", TLS12)},
        {"TLS 1.2 session id", id_only_client()},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct tls_peer node;
        cr_assert_eq(tls_peer_init(&node, "ucm1.example.test"), 0);
        for (unsigned i = 0; i < 4; i++) {
            struct pair p = connect_on(s, i, cases[k].c, &node);
            cr_assert_eq(tls_conn_resumed(p.s), i > 0, "%s, connection %u", cases[k].what, i);
            free_pair(&p);
        }
        tls_peer_deinit(&node);
        tls_ctx_unref(cases[k].c);
    }
    /* Only the session-id client's session is kept (one full handshake, one entry): TLS 1.3
     * sessions never are, and a TLS 1.2 client that takes a ticket resumes with it. */
    cr_assert_eq(tls__sess_count(s), 1, "%u entries", tls__sess_count(s));
    tls_ctx_unref(s);
}

/* Without lanes the same cache serves: one code path for every server context. */
Test(tls_lanes, resumes_by_session_id_without_lanes)
{
    struct tls_ctx *s = lanes_ctx(0, 0, 0), *c = id_only_client();
    struct tls_peer node;
    cr_assert_eq(tls_peer_init(&node, "ucm1.example.test"), 0);
    for (unsigned i = 0; i < 3; i++) {
        struct pair p = connect_on(s, 0, c, &node);
        cr_assert_eq(tls_conn_resumed(p.s), i > 0, "connection %u", i);
        free_pair(&p);
    }
    cr_assert_eq(tls__sess_count(s), 1);
    tls_peer_deinit(&node);
    tls_ctx_unref(c);
    tls_ctx_unref(s);
}

Test(tls_lanes, keeps_no_tls_13_session_in_the_cache)
{
    struct tls_ctx *s = lanes_ctx(2, 0, 0), *c = client_ctx(NULL, "ucm-ca.crt", 0);
    struct tls_peer node;
    cr_assert_eq(tls_peer_init(&node, "ucm1.example.test"), 0);
    for (unsigned i = 0; i < 3; i++) {
        struct pair p = connect_on(s, i, c, &node);
        free_pair(&p);
    }
    cr_assert_eq(tls__sess_count(s), 0);
    tls_peer_deinit(&node);
    tls_ctx_unref(c);
    tls_ctx_unref(s);
}

/* A cache of 4: five clients, the first one's session is gone (oldest out), the last four
 * resume. */
Test(tls_lanes, holds_at_most_its_size_and_lets_the_oldest_go)
{
    struct tls_ctx *s = lanes_ctx(2, 4, 0), *c = id_only_client();
    struct tls_peer node[5];
    for (unsigned i = 0; i < 5; i++) {
        cr_assert_eq(tls_peer_init(&node[i], "ucm1.example.test"), 0);
        struct pair p = connect_on(s, i, c, &node[i]);
        free_pair(&p);
        cr_assert_eq(tls__sess_count(s), i < 4 ? i + 1 : 4);
    }
    /* newest first: a resumption adds nothing, so the four kept ones all resume; then the first
     * client's full handshake adds its session and pushes the oldest out: still four */
    for (unsigned i = 5; i-- > 0;) {
        struct pair p = connect_on(s, i + 1, c, &node[i]);
        cr_assert_eq(tls_conn_resumed(p.s), i > 0, "client %u", i);
        free_pair(&p);
    }
    cr_assert_eq(tls__sess_count(s), 4);
    for (unsigned i = 0; i < 5; i++)
        tls_peer_deinit(&node[i]);
    tls_ctx_unref(c);
    tls_ctx_unref(s);
}

/* A session-id client's first connection, on lane 0: the cache holds its session. */
static void first_session(struct tls_ctx *s, struct tls_ctx *c, struct tls_peer *node)
{
    cr_assert_eq(tls_peer_init(node, "ucm1.example.test"), 0);
    struct pair p = connect_on(s, 0, c, node);
    free_pair(&p);
    cr_assert_not_null(node->session);
    cr_assert_eq(tls__sess_count(s), 1);
}

/* A session past its timeout does not resume and leaves the cache. */
Test(tls_lanes, lets_an_expired_session_go)
{
    struct tls_ctx *s = lanes_ctx(2, 0, 1), *c = id_only_client();
    struct tls_peer node;
    first_session(s, c, &node);
    sleep(2); /* the session's lifetime is 1 s */
    struct pair p = connect_on(s, 1, c, &node);
    cr_assert_not(tls_conn_resumed(p.s), "an expired session resumed");
    free_pair(&p);
    /* the expired entry went and the new full handshake's session came */
    cr_assert_eq(tls__sess_count(s), 1);
    tls_peer_deinit(&node);
    tls_ctx_unref(c);
    tls_ctx_unref(s);
}

/* OpenSSL gives a session up when a handshake that resumed it fails (SSL_CTX_remove_session):
 * it leaves the cache. */
Test(tls_lanes, forgets_a_session_openssl_removes)
{
    struct tls_ctx *s = lanes_ctx(2, 0, 0), *c = id_only_client();
    struct tls_peer node;
    first_session(s, c, &node);
    /* as OpenSSL does it, by id (the client's copy has the server's id) */
    cr_assert_eq(SSL_CTX_remove_session(s->lanes[1].ssl_ctx, node.session), 0); /* not in its own */
    cr_assert_eq(tls__sess_count(s), 0);
    struct pair p = connect_on(s, 1, c, &node);
    cr_assert_not(tls_conn_resumed(p.s));
    free_pair(&p);
    tls_peer_deinit(&node);
    tls_ctx_unref(c);
    tls_ctx_unref(s);
}
