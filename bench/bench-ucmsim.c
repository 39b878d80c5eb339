// SPDX-License-Identifier: MIT
// bench-ucmsim: sends N REGISTERs (edge-shaped: two Vias, Path, a Bearer token) over one mTLS
// connection to sipedge-ucmsim, a window of them in flight, and prints requests/s and the
// simulator's CPU time per request read from /proc/<pid>/stat (and schedstat, in ns).
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/sip.h"

#define BENCH_MAX_RUNS 32

struct bench_opts {
    const char *host;
    unsigned port;
    const char *port_file, *pid_file;
    const char *cert, *key, *ca;
    long pid;
    unsigned long requests;
    unsigned window;
    unsigned runs;
};

struct cpu {
    uint64_t ticks_us; /* utime + stime from /proc/<pid>/stat, in µs (tick resolution) */
    uint64_t sched_ns; /* sum over threads of /proc/<pid>/task/<tid>/schedstat field 1 */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int read_cpu(long pid, struct cpu *out)
{
    char path[64], buf[4096];
    *out = (struct cpu){0};
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* fields after the ")" that ends comm: 3=state ... 14=utime 15=stime */
    char *p = strrchr(buf, ')');
    if (!p)
        return -EINVAL;
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -EINVAL;
    long hz = sysconf(_SC_CLK_TCK);
    out->ticks_us = (ut + st) * 1000000ull / (unsigned long long)(hz > 0 ? hz : 100);
    snprintf(path, sizeof path, "/proc/%ld/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char sp[300];
        snprintf(sp, sizeof sp, "/proc/%ld/task/%s/schedstat", pid, de->d_name);
        FILE *sf = fopen(sp, "r");
        if (!sf)
            continue;
        unsigned long long ns = 0;
        if (fscanf(sf, "%llu", &ns) == 1)
            out->sched_ns += ns;
        fclose(sf);
    }
    closedir(d);
    return 0;
}

/** This process's CPU time (user + system) in µs. */
static double self_cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static long read_number_file(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static SSL *connect_tls(SSL_CTX *ctx, const struct bench_opts *o)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->host, &a.sin_addr) != 1)
        return NULL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
               sizeof tv); /* bounded: a lost answer ends the run */
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return NULL;
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1) {
        ERR_print_errors_fp(stderr);
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    return ssl;
}

static void close_tls(SSL *ssl)
{
    int fd = SSL_get_fd(ssl);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
}

/** One REGISTER as the edge forwards it (~1.3 KB with the token). */
static int make_register(char *buf, size_t cap, unsigned run, unsigned long i, const char *token)
{
    return snprintf(
        buf, cap,
        "REGISTER sip:ucm.example.test SIP/2.0\r\n"
        "Via: SIP/2.0/TLS edge.example.test:5061;branch=z9hG4bKedge%u.%lu\r\n"
        "Via: SIP/2.0/TLS 192.0.2.10:51234;received=192.0.2.10;branch=z9hG4bKjab%lu;rport=51234\r\n"
        "Max-Forwards: 69\r\n"
        "Path: <sip:edge.example.test:5061;transport=tls;lr>\r\n"
        "From: <sip:user%lu@example.test>;tag=f%lu\r\n"
        "To: <sip:user%lu@example.test>\r\n"
        "Call-ID: bench-%u-%lu@192.0.2.10\r\n"
        "CSeq: %lu REGISTER\r\n"
        "Contact: <sip:user%lu@192.0.2.10:51234;transport=tls>;+sip.instance=\"<urn:uuid:00000000-"
        "0000-0000-0000-%012lu>\";+u.sip!devicename.ccm.cisco.com=\"CSFuser%lu\"\r\n"
        "Expires: 3600\r\n"
        "Proxy-Authorization: Bearer token=\"%s\"\r\n"
        "User-Agent: bench-ucmsim\r\n"
        "Content-Length: 0\r\n\r\n",
        run, i, i, i % 1000, i, i % 1000, run, i, i + 1, i % 1000, i, i % 1000, token);
}

/** Runs one connection: `n` REGISTERs, `window` in flight. Returns 200s seen, <0 on error. */
static long run_once(SSL_CTX *ctx, const struct bench_opts *o, unsigned run, const char *token,
                     uint64_t *elapsed_ns)
{
    SSL *ssl = connect_tls(ctx, o);
    if (!ssl)
        return -ECONNREFUSED;
    static char in[1 << 20];
    size_t in_len = 0, last = 0;
    unsigned long sent = 0, recvd = 0;
    long ok = 0;
    char req[4096];
    uint64_t t0 = now_ns();
    while (recvd < o->requests) {
        while (sent < o->requests && sent - recvd < o->window) {
            int n = make_register(req, sizeof req, run, sent, token);
            if (SSL_write(ssl, req, n) != n)
                goto fail;
            sent++;
        }
        int n = SSL_read(ssl, in + in_len, (int)(sizeof in - in_len));
        if (n <= 0)
            goto fail;
        in_len += (size_t)n;
        size_t off = 0;
        for (;;) {
            struct sip_header hdrs[64];
            struct sip_msg m;
            sip_msg_init(&m, hdrs, 64);
            ssize_t r = sip_scan(in + off, in_len - off, off == 0 ? last : 0, &m);
            if (r == SIP_INCOMPLETE) {
                last = in_len - off;
                break;
            }
            if (r < 0)
                goto fail;
            last = 0;
            recvd++;
            ok += !m.is_request && m.status == 200;
            off += (size_t)r;
        }
        memmove(in, in + off, in_len - off);
        in_len -= off; /* `last` stays: it is relative to the message start, now at 0 */
    }
    *elapsed_ns = now_ns() - t0;
    close_tls(ssl);
    return ok;
fail:
    fprintf(stderr, "bench-ucmsim: connection failed after %lu answers\n", recvd);
    close_tls(ssl);
    return -EIO;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    struct bench_opts o = {
        .host = "127.0.0.1", .port = 5091, .requests = 20000, .window = 32, .runs = 5, .pid = -1};
    static const struct option lo[] = {
        {"host", required_argument, NULL, 'H'},      {"port", required_argument, NULL, 'p'},
        {"port-file", required_argument, NULL, 'P'}, {"pid", required_argument, NULL, 'i'},
        {"pid-file", required_argument, NULL, 'I'},  {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},       {"ca", required_argument, NULL, 'a'},
        {"requests", required_argument, NULL, 'n'},  {"window", required_argument, NULL, 'w'},
        {"runs", required_argument, NULL, 'r'},      {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'H':
            o.host = optarg;
            break;
        case 'p':
            o.port = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'P':
            o.port_file = optarg;
            break;
        case 'i':
            o.pid = strtol(optarg, NULL, 10);
            break;
        case 'I':
            o.pid_file = optarg;
            break;
        case 'c':
            o.cert = optarg;
            break;
        case 'k':
            o.key = optarg;
            break;
        case 'a':
            o.ca = optarg;
            break;
        case 'n':
            o.requests = strtoul(optarg, NULL, 10);
            break;
        case 'w':
            o.window = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            o.runs = (unsigned)strtoul(optarg, NULL, 10);
            break;
        default:
            goto usage;
        }
    }
    if (o.port_file)
        o.port = (unsigned)read_number_file(o.port_file);
    if (o.pid_file)
        o.pid = read_number_file(o.pid_file);
    if (!o.cert || !o.key || !o.ca || !o.requests || !o.window || !o.runs ||
        o.runs > BENCH_MAX_RUNS || o.port == 0 || o.port > 65535)
        goto usage;

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, o.cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, o.key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(ctx, o.ca, NULL) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);

    char token[1025];
    memset(token, 'A', sizeof token - 1); /* a CUCM access token is about 1 KB of base64url */
    token[sizeof token - 1] = 0;
    double rps[BENCH_MAX_RUNS], cpu_tick[BENCH_MAX_RUNS], cpu_ns[BENCH_MAX_RUNS];
    double cli[BENCH_MAX_RUNS];
    for (unsigned r = 0; r < o.runs; r++) {
        struct cpu c0 = {0}, c1 = {0};
        if (o.pid > 0)
            read_cpu(o.pid, &c0);
        uint64_t ns = 0;
        double u0 = self_cpu_us();
        long ok = run_once(ctx, &o, r, token, &ns);
        if (o.pid > 0)
            read_cpu(o.pid, &c1);
        if (ok < 0)
            return 1;
        rps[r] = (double)o.requests * 1e9 / (double)(ns ? ns : 1);
        cpu_tick[r] = (double)(c1.ticks_us - c0.ticks_us) / (double)o.requests;
        cpu_ns[r] = (double)(c1.sched_ns - c0.sched_ns) / 1000.0 / (double)o.requests;
        cli[r] = (self_cpu_us() - u0) / (double)o.requests;
        printf("run %u: %lu requests (%ld x 200) in %.3f s: %.0f req/s; simulator CPU %.2f us/req "
               "(stat) %.2f us/req (schedstat); client CPU %.2f us/req\n",
               r, o.requests, ok, (double)ns / 1e9, rps[r], cpu_tick[r], cpu_ns[r], cli[r]);
        if ((unsigned long)ok != o.requests) {
            fprintf(stderr, "bench-ucmsim: expected %lu x 200, got %ld\n", o.requests, ok);
            return 1;
        }
    }
    printf("median of %u runs (window %u, 1 connection): %.0f req/s; simulator CPU %.2f us/req "
           "(stat), %.2f us/req (schedstat); client CPU %.2f us/req\n",
           o.runs, o.window, median(rps, o.runs), median(cpu_tick, o.runs), median(cpu_ns, o.runs),
           median(cli, o.runs));
    SSL_CTX_free(ctx);
    return 0;
usage:
    fprintf(stderr, "usage: bench-ucmsim --cert PEM --key PEM --ca PEM (--port N | --port-file F)\n"
                    "  [--host IP] [--pid N | --pid-file F] [--requests N] [--window W] "
                    "[--runs R]\n");
    return 2;
}
