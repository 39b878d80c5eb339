// SPDX-License-Identifier: MIT
// libFuzzer target: arbitrary bytes fed, in input-chosen pieces, to a server-side tls_conn
// (handshake, then reads). It must fail cleanly, never crash or leak.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tls/tls.h"

static struct tls_ctx *ctx;

/* A self-signed P-256 certificate written to a private temp dir: the target needs no PKI. */
static void make_ctx(void)
{
    char dir[] = "/tmp/fuzz_tls_XXXXXX", crt[64], key[64];
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(crt, sizeof(crt), "%s/c.pem", dir);
    snprintf(key, sizeof(key), "%s/k.pem", dir);
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (pk == NULL || x == NULL)
        abort();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"fuzz", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, pk);
    if (!X509_sign(x, pk, EVP_sha256()))
        abort();
    FILE *fc = fopen(crt, "w"), *fk = fopen(key, "w");
    if (fc == NULL || fk == NULL || !PEM_write_X509(fc, x) ||
        !PEM_write_PrivateKey(fk, pk, NULL, NULL, 0, NULL, NULL))
        abort();
    fclose(fc);
    fclose(fk);
    X509_free(x);
    EVP_PKEY_free(pk);
    struct tls_server_opts o = {.cert_file = crt, .key_file = key};
    char err[256];
    if (tls_server_ctx_new(&o, &ctx, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_tls_server: %s\n", err);
        abort();
    }
    unlink(crt);
    unlink(key);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ctx == NULL)
        make_ctx();
    struct tls_conn *c = tls_conn_new_server(ctx);
    if (c == NULL)
        return 0;
    /* First byte: piece size (0 = all at once). */
    size_t step = size ? data[0] : 0, off = size ? 1 : 0;
    char buf[4096];
    unsigned sum = 0;
    while (off < size) {
        size_t n = step && step < size - off ? step : size - off;
        if (tls_conn_feed(c, data + off, n) < 0)
            break;
        off += n;
        int rc = tls_conn_handshake(c);
        struct slice out = tls_conn_out(c);
        for (size_t i = 0; i < out.len; i++)
            sum += (unsigned char)out.base[i];
        tls_conn_out_consume(c, out.len);
        if (rc == -EPROTO || (rc != 0 && rc != TLS_WANT_INPUT))
            break;
        ssize_t r;
        while ((r = tls_conn_read(c, buf, sizeof(buf))) > 0)
            for (ssize_t i = 0; i < r; i++)
                sum += (unsigned char)buf[i];
        if (r != TLS_WANT_INPUT)
            break;
    }
    struct tls_diag d;
    char line[1024];
    tls_conn_diag(c, &d);
    if (tls_diag_format(&d, "fuzz", line, sizeof(line)) < 0 || strlen(line) >= sizeof(line))
        abort();
    tls_conn_free(c);
    return (int)(sum & 0);
}
