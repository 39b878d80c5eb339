// SPDX-License-Identifier: MIT
// tls/tls_rec.c reads records that another implementation sealed: the fuzz seeds of
// tests/fuzz/corpus/tls_rec/capt-* were captured from Python ssl clients (OpenSSL's own record
// layer) after real TLS 1.3 handshakes, with the client's traffic secret from the key log
// (tests/fuzz/capture_tls_rec.py). Each must decrypt to what the client wrote, in every suite.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls_priv.h"

#define REGISTER_START "REGISTER sip:ucm.example.com SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.10:50123"

static size_t load(const char *name, uint8_t *buf, size_t cap)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/tls_rec/%s", SIPEDGE_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s (tests/fuzz/capture_tls_rec.py writes it)", path);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* Reads the seed `name` through a server record layer keyed by its secret: the plaintext into
 * `out` (its length returned), `*end` the last tls_conn_read() result. */
static size_t read_seed(const char *name, char *out, size_t cap, ssize_t *end)
{
    static uint8_t seed[1 << 16];
    size_t n = load(name, seed, sizeof(seed));
    cr_assert_gt(n, 5);
    cr_assert_eq(memcmp(seed, "CAPT", 4), 0);
    unsigned suite = seed[4];
    size_t hlen = suite == 1 ? 48 : 32;
    cr_assert_lt(suite, TLS__REC_SUITES);
    static const uint8_t zeros[48];
    struct tls_conn *c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    c->rec = tls__rec_new(suite, seed + 5, zeros);
    cr_assert_not_null(c->rec);
    c->flags = TLS_F_ESTABLISHED | TLS_F_CONFIRMED;
    cr_assert_eq(tls_conn_feed(c, seed + 5 + hlen, n - 5 - hlen), 0);
    size_t got = 0;
    for (;;) {
        ssize_t r = tls_conn_read(c, out + got, cap - got);
        if (r <= 0) {
            *end = r;
            break;
        }
        got += (size_t)r;
    }
    tls_conn_free(c);
    return got;
}

Test(tls_rec_captured, openssl_records_of_every_suite_decrypt_to_what_was_written)
{
    static char got[1 << 16];
    for (unsigned suite = 0; suite < TLS__REC_SUITES; suite++) {
        char name[64];
        ssize_t end;
        snprintf(name, sizeof(name), "capt-%u-register", suite);
        size_t n = read_seed(name, got, sizeof(got), &end);
        cr_assert_eq(end, TLS_WANT_INPUT, "%s: waits for more", name);
        cr_assert_gt(n, 300, "%s", name);
        cr_assert_eq(memcmp(got, REGISTER_START, strlen(REGISTER_START)), 0, "%s", name);
        cr_assert_eq(memcmp(got + n - 4, "\r\n\r\n", 4), 0, "%s: the whole message", name);

        snprintf(name, sizeof(name), "capt-%u-keepalive", suite);
        n = read_seed(name, got, sizeof(got), &end);
        cr_assert_eq(n, 12, "%s: three CRLFCRLF", name);
        cr_assert_eq(memcmp(got, "\r\n\r\n\r\n\r\n\r\n\r\n", 12), 0);

        snprintf(name, sizeof(name), "capt-%u-large", suite);
        n = read_seed(name, got, sizeof(got), &end);
        cr_assert_eq(end, TLS_WANT_INPUT);
        cr_assert_gt(n, 18000, "%s: a full record and the rest", name);
        cr_assert_eq(memcmp(got, REGISTER_START, strlen(REGISTER_START)), 0);
        for (size_t i = n - 18000; i < n; i++)
            cr_assert_eq(got[i], 'x', "%s: byte %zu", name, i);

        snprintf(name, sizeof(name), "capt-%u-tiny", suite);
        n = read_seed(name, got, sizeof(got), &end);
        cr_assert_eq(n, 40, "%s: forty one-byte records", name);
        cr_assert_eq(memcmp(got, REGISTER_START, 40), 0);

        snprintf(name, sizeof(name), "capt-%u-close", suite);
        n = read_seed(name, got, sizeof(got), &end);
        cr_assert_eq(end, 0, "%s: close_notify ends the stream", name);
        cr_assert_eq(memcmp(got, REGISTER_START, strlen(REGISTER_START)), 0);
    }
}
