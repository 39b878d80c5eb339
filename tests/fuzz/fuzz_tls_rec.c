// SPDX-License-Identifier: MIT
// libFuzzer driver for tls/tls_rec.c, our record layer (TLS 1.3, or TLS 1.2 AEAD when the first
// byte's top bit is set): a server connection reads what a peer with the same keys seals (any
// content type, any size) mixed with raw bytes, split at fuzzer-chosen points and read through
// fuzzer-chosen buffer sizes. Without raw bytes, the application data read must be exactly the
// application data sealed. Inputs starting "CAPT" are records captured from OpenSSL with the key
// that reads them (tests/fuzz/capture_tls_rec.py; seeds capt-* in the corpus).
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls_priv.h"

static struct tls_conn *conn(unsigned suite, const uint8_t *rd, const uint8_t *wr)
{
    struct tls_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->rec = tls__rec_new(suite, rd, wr);
    if (c->rec == NULL) {
        free(c);
        return NULL;
    }
    c->flags = TLS_F_ESTABLISHED | TLS_F_CONFIRMED;
    return c;
}

/* "CAPT" | suite | client traffic secret | records captured from OpenSSL (capture_tls_rec.py):
 * a server keyed by that secret reads them, as mutated, through a buffer of `cap` bytes. What it
 * reads is never more than what came in. */
static void captured(const uint8_t *d, size_t n)
{
    static const uint8_t zeros[48];
    static uint8_t buf[17100];
    if (n < 1)
        return;
    unsigned suite = d[0] % TLS__REC_SUITES;
    size_t hlen = suite == 1 ? 48 : 32;
    if (n < 1 + hlen)
        return;
    struct tls_conn *s = conn(suite, d + 1, zeros);
    if (s == NULL)
        return;
    const uint8_t *p = d + 1 + hlen;
    size_t len = n - 1 - hlen, got = 0;
    while (len > 0) { /* in pieces cut where the data says (a byte of each piece) */
        size_t piece = 1 + (size_t)p[0] * 64;
        if (piece > len)
            piece = len;
        if (tls_conn_feed(s, p, piece) < 0)
            break;
        p += piece;
        len -= piece;
        ssize_t r;
        while ((r = tls_conn_read(s, buf, sizeof(buf))) > 0)
            got += (size_t)r;
        if (r != TLS_WANT_INPUT)
            break;
    }
    if (got > n)
        __builtin_trap();
    tls_conn_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 4 && memcmp(data, "CAPT", 4) == 0) {
        captured(data + 4, size - 4);
        return 0;
    }
    if (size < 2)
        return 0;
    static const uint8_t a[48] = {1, 2, 3}, b[48] = {4, 5, 6};
    unsigned suite = data[0] % TLS__REC_SUITES;
    size_t cap = (size_t)data[1] * 67 + 1; /* read buffer: 1 .. 17,086 bytes */
    struct tls_conn *s = conn(suite, a, b), *peer = conn(suite, b, a);
    if (s && peer && (data[0] & 0x80))
        s->rec->tls12 = peer->rec->tls12 = true;
    static uint8_t sent[1 << 16], got[1 << 16], buf[17100];
    size_t nsent = 0, ngot = 0;
    bool raw = false, failed = false;
    size_t off = 2;
    while (s && peer && off + 2 <= size && !failed) {
        uint8_t op = data[off], len = data[off + 1];
        off += 2;
        size_t n = len < size - off ? len : size - off;
        const uint8_t *p = data + off;
        off += n;
        if (op < 64) { /* raw bytes straight into the server */
            raw = true;
            if (tls_conn_feed(s, p, n) < 0)
                break;
        } else {
            uint8_t type = op < 192 ? 23 : (op & 0x1f) ? (uint8_t)(op & 0x1f) : 22;
            if (type == 23 && n > 0) {
                if (nsent + n > sizeof(sent))
                    break;
                memcpy(sent + nsent, p, n);
                nsent += n;
            }
            if (type != 23 || n > 0) {
                if (tls__rec_seal(peer, type, p, n) < 0)
                    break;
                struct slice out = tls_conn_out(peer);
                if (tls_conn_feed(s, out.base, out.len) < 0)
                    break;
                tls_conn_out_consume(peer, out.len);
            }
        }
        for (;;) {
            ssize_t r = tls_conn_read(s, buf, cap);
            if (r > 0) {
                if (ngot + (size_t)r > sizeof(got))
                    __builtin_trap();
                memcpy(got + ngot, buf, (size_t)r);
                ngot += (size_t)r;
                continue;
            }
            if (r != TLS_WANT_INPUT)
                failed = true; /* close_notify, an alert, a bad record: the stream ends */
            break;
        }
        /* What the server wrote (KeyUpdate answer, alerts) must decrypt at the peer. */
        struct slice out = tls_conn_out(s);
        if (out.len && !raw) {
            if (tls_conn_feed(peer, out.base, out.len) < 0)
                __builtin_trap();
            tls_conn_out_consume(s, out.len);
            /* the peer only checks that it can read our records: the server's warnings (no
             * application data comes from it) must not trip the peer's own no-op limits */
            peer->rec->empty_run = peer->rec->warn_run = peer->rec->hs_run = 0;
            ssize_t r;
            while ((r = tls_conn_read(peer, buf, sizeof(buf))) > 0)
                ;
            if (r == -EPROTO && !(s->flags & TLS_F_FAILED))
                __builtin_trap(); /* the peer could not read a healthy server's records */
        } else if (out.len) {
            tls_conn_out_consume(s, out.len);
        }
    }
    if (!raw && !failed && ngot != nsent)
        __builtin_trap();
    if (!raw && memcmp(sent, got, ngot < nsent ? ngot : nsent) != 0)
        __builtin_trap();
    tls_conn_free(s);
    tls_conn_free(peer);
    return 0;
}
