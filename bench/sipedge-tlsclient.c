// SPDX-License-Identifier: MIT
// sipedge-tlsclient: a scripted TLS client for the end-to-end tests: sends files' bytes, reads
// exact byte counts or SIP header blocks, waits for the peer to close; every wait is bounded.
// For what SIPp cannot do (garbage, keep-alive pings, requests without a Call-ID).
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define TC_EXIT_FAIL    1
#define TC_EXIT_USAGE   2
#define TC_EXIT_TIMEOUT 3
#define TC_MAX_FILE     (1 << 20)

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(void)
{
    fputs("usage: sipedge-tlsclient --connect HOST:PORT [--ca PEM] [--name HOST] [--timeout-ms N]\n"
          "                         [--cert PEM --key PEM] STEP...\n"
          "steps, run in order; what is read goes to stdout:\n"
          "  send:FILE   write the bytes of FILE\n"
          "  read:N      read exactly N bytes\n"
          "  head        read up to and including the first empty line (CRLF CRLF)\n"
          "  eof         wait until the peer closes the connection\n"
          "exit: 0 every step done, 1 error, 2 usage, 3 a step timed out\n",
          stderr);
    exit(TC_EXIT_USAGE);
}

static int connect_to(const char *hostport)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || (size_t)(colon - hostport) >= sizeof(host))
        return -EINVAL;
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = 0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
        return -EINVAL;
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        int e = errno;
        close(fd);
        fd = -e;
    } else if (fd < 0) {
        fd = -errno;
    }
    freeaddrinfo(ai);
    return fd;
}

/* Waits until `fd` is readable or the deadline passes: 1 readable, 0 timed out. */
static int wait_readable(int fd, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return 1; /* let SSL_read report it */
    }
}

/* Reads one byte: 1 got it, 0 the peer closed, -ETIMEDOUT, -EIO. */
static int read_byte(SSL *ssl, int fd, int64_t deadline, char *c)
{
    for (;;) {
        if (SSL_pending(ssl) == 0 && !wait_readable(fd, deadline))
            return -ETIMEDOUT;
        int r = SSL_read(ssl, c, 1);
        if (r == 1)
            return 1;
        int e = SSL_get_error(ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            continue;
        if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL)
            return 0; /* close_notify, or the TCP connection ended without one */
        return -EIO;
    }
}

static int step_send(SSL *ssl, const char *path)
{
    static char buf[TC_MAX_FILE];
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "sipedge-tlsclient: %s: %s\n", path, strerror(errno));
        return TC_EXIT_FAIL;
    }
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    if (n > 0 && SSL_write(ssl, buf, (int)n) != (int)n) {
        fprintf(stderr, "sipedge-tlsclient: send %s failed\n", path);
        return TC_EXIT_FAIL;
    }
    return 0;
}

/* Reads `n` bytes (n > 0), or until CRLF CRLF (n == 0), or until the peer closes (n < 0). */
static int step_read(SSL *ssl, int fd, long n, int64_t deadline)
{
    const char *what = n > 0 ? "read" : n == 0 ? "head" : "eof";
    char last[4] = {0};
    for (long got = 0; n <= 0 || got < n; got++) {
        char c;
        int r = read_byte(ssl, fd, deadline, &c);
        if (r == -ETIMEDOUT) {
            fprintf(stderr, "sipedge-tlsclient: %s: timed out after %ld bytes\n", what, got);
            return TC_EXIT_TIMEOUT;
        }
        if (r <= 0) {
            if (n < 0)
                return 0;
            fprintf(stderr, "sipedge-tlsclient: %s: connection %s after %ld bytes\n", what,
                    r == 0 ? "closed" : "failed", got);
            return TC_EXIT_FAIL;
        }
        putchar(c);
        memmove(last, last + 1, 3);
        last[3] = c;
        if (n == 0 && memcmp(last, "\r\n\r\n", 4) == 0)
            return 0;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *addr = NULL, *ca = NULL, *name = NULL, *cert = NULL, *key = NULL;
    long timeout_ms = 10000;
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--connect") == 0)
            addr = argv[i + 1];
        else if (strcmp(argv[i], "--ca") == 0)
            ca = argv[i + 1];
        else if (strcmp(argv[i], "--name") == 0)
            name = argv[i + 1];
        else if (strcmp(argv[i], "--cert") == 0)
            cert = argv[i + 1];
        else if (strcmp(argv[i], "--key") == 0)
            key = argv[i + 1];
        else if (strcmp(argv[i], "--timeout-ms") == 0)
            timeout_ms = strtol(argv[i + 1], NULL, 10);
        else
            usage();
    }
    if (addr == NULL || i >= argc || timeout_ms <= 0)
        usage();
    signal(SIGPIPE, SIG_IGN); /* a peer that closed first makes SSL_write fail, not kill us */
    int fd = connect_to(addr);
    if (fd < 0) {
        fprintf(stderr, "sipedge-tlsclient: connect %s: %s\n", addr, strerror(-fd));
        return TC_EXIT_FAIL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = ctx == NULL ? NULL : SSL_new(ctx);
    if (ssl == NULL || (ca != NULL && SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1))
        goto tls_error;
    if (cert != NULL && (SSL_use_certificate_chain_file(ssl, cert) != 1 ||
                         SSL_use_PrivateKey_file(ssl, key ? key : cert, SSL_FILETYPE_PEM) != 1))
        goto tls_error;
    if (ca != NULL)
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    if (name != NULL && (SSL_set1_host(ssl, name) != 1 || SSL_set_tlsext_host_name(ssl, name) != 1))
        goto tls_error;
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1)
        goto tls_error;
    int rc = 0;
    for (; i < argc && rc == 0; i++) {
        int64_t deadline = now_ms() + timeout_ms;
        if (strncmp(argv[i], "send:", 5) == 0)
            rc = step_send(ssl, argv[i] + 5);
        else if (strncmp(argv[i], "read:", 5) == 0 && atol(argv[i] + 5) > 0)
            rc = step_read(ssl, fd, atol(argv[i] + 5), deadline);
        else if (strcmp(argv[i], "head") == 0)
            rc = step_read(ssl, fd, 0, deadline);
        else if (strcmp(argv[i], "eof") == 0)
            rc = step_read(ssl, fd, -1, deadline);
        else
            usage();
        fflush(stdout);
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return rc;
tls_error:
    fputs("sipedge-tlsclient: TLS setup or handshake failed\n", stderr);
    ERR_print_errors_fp(stderr);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return TC_EXIT_FAIL;
}
