// SPDX-License-Identifier: MIT
// Tests for verifications reused by a client context (tls/tls_vcache.c, the load generator's):
// a chain verified for a name is not walked again for that name while the entry lasts, and
// nothing else passes that would not pass without it: another name, another certificate, an
// expired entry all get the full verification.
#include <criterion/criterion.h>
#include <unistd.h>

#include "tls/tls.h"
#include "tls/tls_priv.h"
#include "tls_pair.h"

static struct tls_ctx *sctx;

static void setup(void)
{
    pki_init_at("tls-vcache-pki");
    sctx = server_ctx("ucm", NULL, false, 0);
}

static void teardown(void)
{
    tls_ctx_unref(sctx);
}

TestSuite(tls_vcache, .init = setup, .fini = teardown, .timeout = 60);

static struct tls_ctx *reusing_client(uint32_t ttl_s, uint16_t maxv)
{
    char err[256] = "";
    struct tls_client_opts o = {
        .ca_file = f("ucm-ca.crt"), .max_version = maxv, .reuse_verification_s = ttl_s};
    struct tls_ctx *c = NULL;
    cr_assert_eq(tls_client_ctx_new(&o, &c, err, sizeof(err)), 0, "%s", err);
    return c;
}

/* A full handshake (no session offered) from `c` to `s` for `name`; returns the pair. The
 * peers live as long as the test: a connection points at its own. */
static struct pair full_handshake(struct tls_ctx *s, struct tls_ctx *c, const char *name)
{
    static struct tls_peer nodes[16];
    static unsigned next;
    struct tls_peer *node = &nodes[next++ % 16];
    tls_peer_deinit(node);
    cr_assert_eq(tls_peer_init(node, name), 0);
    struct pair p = connect_pair(s, c, node, 0);
    cr_assert_not(tls_conn_resumed(p.c));
    return p;
}

Test(tls_vcache, reuses_a_verified_chain_for_the_same_name)
{
    for (int v = 0; v < 2; v++) {
        struct tls_ctx *c = reusing_client(60, v ? TLS12 : 0);
        for (int i = 0; i < 3; i++) {
            struct pair p = full_handshake(sctx, c, "ucm1.example.test");
            cr_assert_eq(p.rc_c, 0, "TLS1.%d connection %d: %d", v ? 2 : 3, i, p.rc_c);
            cr_assert_eq(p.rc_s, 0);
            transfer(p.c, p.s, 1000, 2, 0);
            free_pair(&p);
            cr_assert_eq(tls_ctx_verifications_reused(c), (uint64_t)i, "TLS1.%d", v ? 2 : 3);
        }
        tls_ctx_unref(c);
    }
}

/* A client whose first handshake verified the server's chain for ucm1.example.test. */
static struct tls_ctx *verified_once(void)
{
    struct tls_ctx *c = reusing_client(60, 0);
    struct pair p = full_handshake(sctx, c, "ucm1.example.test");
    cr_assert_eq(p.rc_c, 0);
    free_pair(&p);
    return c;
}

Test(tls_vcache, still_fails_another_name_with_the_cached_certificate)
{
    struct tls_ctx *c = verified_once();
    struct pair p = full_handshake(sctx, c, "ucm9.example.test");
    cr_assert_neq(p.rc_c, 0, "a name the certificate does not carry passed");
    struct tls_diag d;
    cr_assert_eq(tls_conn_diag(p.c, &d), TLS_CAUSE_PEER_HOSTNAME_MISMATCH);
    free_pair(&p);
    /* a second name it does carry is verified in full, not taken from ucm1's entry */
    p = full_handshake(sctx, c, "ucm2.example.test");
    cr_assert_eq(p.rc_c, 0);
    free_pair(&p);
    cr_assert_eq(tls_ctx_verifications_reused(c), 0);
    tls_ctx_unref(c);
}

Test(tls_vcache, still_fails_another_certificate_for_the_cached_name)
{
    struct tls_ctx *c = verified_once();
    /* same names, from a CA the client does not trust */
    struct tls_ctx *bad = server_ctx("untrusted", NULL, false, 0);
    struct pair p = full_handshake(bad, c, "ucm1.example.test");
    cr_assert_neq(p.rc_c, 0, "an untrusted certificate passed");
    struct tls_diag d;
    cr_assert_eq(tls_conn_diag(p.c, &d), TLS_CAUSE_PEER_UNTRUSTED_ISSUER);
    free_pair(&p);
    cr_assert_eq(tls_ctx_verifications_reused(c), 0);
    tls_ctx_unref(bad);
    tls_ctx_unref(c);
}

Test(tls_vcache, verifies_again_once_the_entry_has_expired)
{
    struct tls_ctx *c = reusing_client(1, 0);
    struct pair p = full_handshake(sctx, c, "ucm1.example.test");
    free_pair(&p);
    p = full_handshake(sctx, c, "ucm1.example.test");
    free_pair(&p);
    cr_assert_eq(tls_ctx_verifications_reused(c), 1);
    sleep(2);
    p = full_handshake(sctx, c, "ucm1.example.test");
    cr_assert_eq(p.rc_c, 0);
    free_pair(&p);
    cr_assert_eq(tls_ctx_verifications_reused(c), 1, "an expired entry was reused");
    p = full_handshake(sctx, c, "ucm1.example.test");
    free_pair(&p);
    cr_assert_eq(tls_ctx_verifications_reused(c), 2, "the fresh verification was not kept");
    tls_ctx_unref(c);
}

Test(tls_vcache, is_off_unless_asked)
{
    struct tls_ctx *c = reusing_client(0, 0);
    for (int i = 0; i < 2; i++) {
        struct pair p = full_handshake(sctx, c, "ucm1.example.test");
        cr_assert_eq(p.rc_c, 0);
        free_pair(&p);
    }
    cr_assert_eq(tls_ctx_verifications_reused(c), 0);
    cr_assert_null(c->vcache);
    tls_ctx_unref(c);
}
