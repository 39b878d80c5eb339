// SPDX-License-Identifier: MIT
// End-to-end tests of bench/sipedge-ucmsim: the real process on a loopback ephemeral port, a
// throwaway PKI (bench/ucmsim-pki.sh), and an OpenSSL client with or without a certificate.
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/sip.h"
#include "core/sip_build.h"

#define PKI_DIR SIPEDGE_BINARY_DIR "/test-ucmsim/pki"
#define SIM_BIN SIPEDGE_BINARY_DIR "/sipedge-ucmsim"

/* ---- the simulator process ------------------------------------------------------------ */

struct sim {
    pid_t pid;
    unsigned port;
    char dir[512];
    char record[600];
    char out[600];
    char err[600];
};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void make_pki(void)
{
    int rc = system("bash " SIPEDGE_SOURCE_DIR "/bench/ucmsim-pki.sh " PKI_DIR);
    cr_assert_eq(rc, 0, "ucmsim-pki.sh failed");
}

/** The TLS material a simulator and its clients use. */
struct pki {
    const char *server_cert, *server_key, *ca; /* the simulator's */
    const char *client_ca;                     /* what clients trust */
    const char *server_name;                   /* what clients check */
};

static const struct pki test_pki = {PKI_DIR "/ucm.pem", PKI_DIR "/ucm.key", PKI_DIR "/ca.pem",
                                    PKI_DIR "/ca.pem", "ucm.example.test"};

/** Starts sipedge-ucmsim with `pki`, the allowlist {edge.example.test} plus `extra`
 *  (NULL-ended). */
static void sim_start_pki(struct sim *s, const struct pki *pki, const char *const *extra)
{
    /* a fresh directory per run: a reused PID must not find an old port or record file */
    mkdir(SIPEDGE_BINARY_DIR "/test-ucmsim", 0755);
    snprintf(s->dir, sizeof s->dir, SIPEDGE_BINARY_DIR "/test-ucmsim/run-XXXXXX");
    cr_assert_not_null(mkdtemp(s->dir), "mkdtemp %s: %s", s->dir, strerror(errno));
    char port_file[600];
    snprintf(port_file, sizeof port_file, "%s/port", s->dir);
    snprintf(s->record, sizeof s->record, "%s/record.jsonl", s->dir);
    snprintf(s->out, sizeof s->out, "%s/stdout", s->dir);
    snprintf(s->err, sizeof s->err, "%s/stderr", s->dir);

    const char *argv[64] = {SIM_BIN,
                            "--port",
                            "0",
                            "--port-file",
                            port_file,
                            "--cert",
                            pki->server_cert,
                            "--key",
                            pki->server_key,
                            "--ca",
                            pki->ca,
                            "--allow",
                            "edge.example.test",
                            "--record",
                            s->record};
    size_t n = 15;
    for (size_t i = 0; extra && extra[i] && n < 63; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;

    s->pid = fork();
    cr_assert_geq(s->pid, 0);
    if (s->pid == 0) {
        int o = open(s->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(s->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(o, 1);
        dup2(e, 2);
        execv(SIM_BIN, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) { /* bounded: 10 s */
        FILE *f = fopen(port_file, "r");
        if (f) {
            int ok = fscanf(f, "%u", &s->port);
            fclose(f);
            if (ok == 1 && s->port)
                return;
        }
        int st;
        cr_assert_eq(waitpid(s->pid, &st, WNOHANG), 0, "sipedge-ucmsim exited at start");
        sleep_ms(50);
    }
    cr_assert_fail("sipedge-ucmsim did not write its port file");
}

static void sim_start(struct sim *s, const char *const *extra)
{
    make_pki();
    sim_start_pki(s, &test_pki, extra);
}

/** SIGTERM, wait (bounded), and return its stdout (the counters line); asserts exit 0. */
static char *sim_stop(struct sim *s)
{
    kill(s->pid, SIGTERM);
    int st = 0;
    pid_t r = 0;
    for (int i = 0; i < 200 && (r = waitpid(s->pid, &st, WNOHANG)) == 0; i++)
        sleep_ms(50);
    if (r == 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &st, 0);
        cr_assert_fail("sipedge-ucmsim did not stop on SIGTERM");
    }
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sipedge-ucmsim exit status %d", st);
    static char buf[4096];
    FILE *f = fopen(s->out, "r");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static char *read_file(const char *path)
{
    static char buf[1 << 16];
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

/* ---- the client ------------------------------------------------------------------------ */

struct cli {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
    int alert; /* last alert received, -1 if none */
    char in[65536];
    size_t in_len;
    char resp[65536];
    struct sip_header hdrs[64];
    struct sip_msg msg;
};

static void on_info(const SSL *ssl, int where, int ret)
{
    struct cli *c = SSL_get_app_data(ssl);
    if ((where & SSL_CB_READ_ALERT) && (ret & 0xff) != 0)
        c->alert = ret & 0xff;
}

/** TLS to the simulator with client certificate `cert`/`key` (NULL: none), trusting
 *  pki->client_ca and checking pki->server_name. Returns SSL_connect's result; c->alert holds an
 *  alert received during it. */
static int cli_connect_pki(struct cli *c, unsigned port, const struct pki *pki, const char *cert,
                           const char *key, int max_tls)
{
    memset(c, 0, sizeof *c);
    c->alert = -1;
    c->ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    if (max_tls)
        SSL_CTX_set_max_proto_version(c->ctx, max_tls);
    cr_assert_eq(SSL_CTX_load_verify_locations(c->ctx, pki->client_ca, NULL), 1);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (cert) {
        cr_assert_eq(SSL_CTX_use_certificate_file(c->ctx, cert, SSL_FILETYPE_PEM), 1);
        cr_assert_eq(SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM), 1);
    }
    SSL_CTX_set_info_callback(c->ctx, on_info);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(c->fd, 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv); /* no test waits forever */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s",
                 strerror(errno));
    c->ssl = SSL_new(c->ctx);
    SSL_set_app_data(c->ssl, c);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, pki->server_name);
    SSL_set1_host(c->ssl, pki->server_name);
    int r = SSL_connect(c->ssl);
    ERR_clear_error();
    return r;
}

/** cli_connect_pki() with the test PKI's certificate `who` ("edge", "other", "san", "rogue" or
 *  NULL for none). */
static int cli_connect(struct cli *c, unsigned port, const char *who, int max_tls)
{
    char cert[600], key[600];
    snprintf(cert, sizeof cert, PKI_DIR "/%s.pem", who ? who : "");
    snprintf(key, sizeof key, PKI_DIR "/%s.key", who ? who : "");
    return cli_connect_pki(c, port, &test_pki, who ? cert : NULL, who ? key : NULL, max_tls);
}

static void cli_close(struct cli *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd > 0)
        close(c->fd);
    SSL_CTX_free(c->ctx);
    c->ssl = NULL;
}

static void cli_send(struct cli *c, const char *text)
{
    int n = (int)strlen(text);
    cr_assert_eq(SSL_write(c->ssl, text, n), n);
}

/** Reads one SIP message; true with c->resp (NUL-ended) and c->msg set, false when the
 *  connection ends first (c->alert tells why). */
static bool cli_recv(struct cli *c)
{
    for (;;) {
        if (c->in_len) {
            memcpy(c->resp, c->in, c->in_len);
            sip_msg_init(&c->msg, c->hdrs, 64);
            ssize_t r = sip_scan(c->resp, c->in_len, 0, &c->msg);
            cr_assert(r == SIP_INCOMPLETE || r > 0, "bad SIP from the simulator: %zd", r);
            if (r > 0) {
                c->resp[r] = 0;
                memmove(c->in, c->in + r, c->in_len - (size_t)r);
                c->in_len -= (size_t)r;
                /* rescan the NUL-ended copy so the slices are stable until the next call */
                sip_msg_init(&c->msg, c->hdrs, 64);
                cr_assert_eq(sip_scan(c->resp, (size_t)r, 0, &c->msg), r);
                return true;
            }
        }
        int n = SSL_read(c->ssl, c->in + c->in_len, (int)(sizeof c->in - 1 - c->in_len));
        if (n <= 0) {
            ERR_clear_error();
            return false;
        }
        c->in_len += (size_t)n;
    }
}

/** Header `id` of the last message as a NUL-ended string ("" when absent). */
static const char *hdr(struct cli *c, enum sip_hdr id)
{
    static char buf[4096];
    const struct sip_header *h = sip_first(&c->msg, id);
    if (!h)
        return "";
    snprintf(buf, sizeof buf, "%.*s", (int)h->value.len, h->value.base);
    return buf;
}

static void make_register(char *buf, size_t cap, const char *call_id, unsigned cseq,
                          const char *extra)
{
    snprintf(buf, cap,
             "REGISTER sip:ucm.example.test SIP/2.0\r\n"
             "Via: SIP/2.0/TLS edge.example.test:5061;branch=z9hG4bKedge%u\r\n"
             "Via: SIP/2.0/TLS 192.0.2.10:51234;received=192.0.2.10;branch=z9hG4bKjab%u\r\n"
             "Max-Forwards: 69\r\n"
             "From: <sip:alice@example.test>;tag=af\r\n"
             "To: <sip:alice@example.test>\r\n"
             "Call-ID: %s\r\n"
             "CSeq: %u REGISTER\r\n"
             "%s"
             "Content-Length: 0\r\n\r\n",
             cseq, cseq, call_id, cseq,
             extra ? extra
                   : "Contact: <sip:alice@192.0.2.10:51234;transport=tls>;"
                     "+sip.instance=\"<urn:uuid:1>\"\r\nExpires: 3600\r\n");
}

static const char *const OPTIONS_REQ =
    "OPTIONS sip:ucm.example.test SIP/2.0\r\n"
    "Via: SIP/2.0/TLS edge.example.test:5061;branch=z9hG4bKo1\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:edge@edge.example.test>;tag=o1\r\n"
    "To: <sip:ucm.example.test>\r\n"
    "Call-ID: options-1\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n\r\n";

/* ---- REGISTER / OPTIONS / others ------------------------------------------------------- */

Test(ucmsim, answers_register_200_with_expires_capped_and_contact_echoed)
{
    struct sim s;
    sim_start(&s, NULL);
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    char req[2048];
    make_register(req, sizeof req, "reg-1@192.0.2.10", 1, NULL);
    cli_send(&c, req);
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 200);
    cr_assert_str_eq(hdr(&c, SIP_HDR_EXPIRES), "120");
    cr_assert_str_eq(hdr(&c, SIP_HDR_CONTACT), "<sip:alice@192.0.2.10:51234;transport=tls>;"
                                               "+sip.instance=\"<urn:uuid:1>\";expires=120");
    cr_assert_str_eq(hdr(&c, SIP_HDR_CALL_ID), "reg-1@192.0.2.10");
    cr_assert_str_eq(hdr(&c, SIP_HDR_CSEQ), "1 REGISTER");
    cr_assert_str_eq(hdr(&c, SIP_HDR_FROM), "<sip:alice@example.test>;tag=af");
    cr_assert(strncmp(hdr(&c, SIP_HDR_TO), "<sip:alice@example.test>;tag=", 29) == 0);
    cr_assert_eq(c.msg.via_count, 2, "both Vias are copied");
    cr_assert_str_eq(hdr(&c, SIP_HDR_VIA),
                     "SIP/2.0/TLS edge.example.test:5061;branch=z9hG4bKedge1");
    cr_assert_str_eq(hdr(&c, SIP_HDR_CONTENT_LENGTH), "0");
    cli_close(&c);
    cr_assert_not_null(strstr(sim_stop(&s), " answer_200=1 "));
}

Test(ucmsim, grants_a_shorter_contact_expires_and_honours_max_expires)
{
    struct sim s;
    sim_start(&s, (const char *const[]){"--max-expires", "300", NULL});
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    char req[2048];
    make_register(req, sizeof req, "reg-2", 1,
                  "Contact: <sip:alice@192.0.2.10:51234;transport=tls>;expires=60\r\n"
                  "Expires: 3600\r\n");
    cli_send(&c, req);
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 200);
    cr_assert_str_eq(hdr(&c, SIP_HDR_EXPIRES), "60");
    cr_assert_str_eq(hdr(&c, SIP_HDR_CONTACT),
                     "<sip:alice@192.0.2.10:51234;transport=tls>;expires=60");
    make_register(req, sizeof req, "reg-3", 2, NULL);
    cli_send(&c, req);
    cr_assert(cli_recv(&c));
    cr_assert_str_eq(hdr(&c, SIP_HDR_EXPIRES), "300");
    cli_close(&c);
    sim_stop(&s);
}

Test(ucmsim, answers_options_200_and_other_methods_501)
{
    struct sim s;
    sim_start(&s, NULL);
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    cli_send(&c, OPTIONS_REQ);
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 200);
    cr_assert_str_eq(hdr(&c, SIP_HDR_CSEQ), "1 OPTIONS");
    cli_send(&c, "SUBSCRIBE sip:ucm.example.test SIP/2.0\r\n"
                 "Via: SIP/2.0/TLS edge.example.test:5061;branch=z9hG4bKs1\r\n"
                 "From: <sip:a@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: sub-1\r\n"
                 "CSeq: 7 SUBSCRIBE\r\nContent-Length: 0\r\n\r\n");
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 501);
    cr_assert_str_eq(hdr(&c, SIP_HDR_CALL_ID), "sub-1");
    cli_close(&c);
    sim_stop(&s);
}

static void send_call_req(struct cli *c, const char *method, const char *user, unsigned cseq,
                          const char *to_tag)
{
    char req[2048];
    snprintf(req, sizeof req,
             "%s sip:%s@ucm.example.test SIP/2.0\r\n"
             "Via: SIP/2.0/TLS edge.example.test:5061;branch=z9hG4bKe%s%u\r\n"
             "Via: SIP/2.0/TLS 192.0.2.10:51234;branch=z9hG4bKj%s%u\r\n"
             "Record-Route: <sip:edge.example.test:5061;transport=tls;lr;se-node=1>\r\n"
             "Record-Route: <sip:TOK@edge.example.test:5061;transport=tls;lr>\r\n"
             "From: <sip:alice@example.test>;tag=af\r\n"
             "To: <sip:%s@example.test>%s%s\r\n"
             "Call-ID: call-1\r\nCSeq: %u %s\r\nContact: <sip:alice@192.0.2.10:51234>\r\n"
             "Content-Length: 0\r\n\r\n",
             method, user, method, cseq, method, cseq, user, to_tag ? ";tag=" : "",
             to_tag ? to_tag : "", cseq, strcmp(method, "ACK") == 0 ? "ACK" : method);
    cli_send(c, req);
}

Test(ucmsim, answers_a_call_180_200_with_record_route_then_bye_200)
{
    struct sim s;
    sim_start(&s, NULL);
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    send_call_req(&c, "INVITE", "bob", 1, NULL);
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 180);
    char tag180[256];
    int n = snprintf(tag180, sizeof tag180, "%s", hdr(&c, SIP_HDR_TO));
    cr_assert(n > 0 && (size_t)n < sizeof tag180, "the 180's To fits");
    cr_assert_not_null(strstr(tag180, ";tag="));
    cr_assert_str_eq(hdr(&c, SIP_HDR_RECORD_ROUTE),
                     "<sip:edge.example.test:5061;transport=tls;lr;se-node=1>");
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 200);
    cr_assert_str_eq(hdr(&c, SIP_HDR_TO), tag180, "the 200 keeps the 180's To tag");
    cr_assert_str_eq(hdr(&c, SIP_HDR_CSEQ), "1 INVITE");
    cr_assert_eq(c.msg.via_count, 2);
    unsigned rr = 0;
    for (size_t i = 0; i < c.msg.header_count; i++)
        rr += c.msg.headers[i].id == SIP_HDR_RECORD_ROUTE;
    cr_assert_eq(rr, 2, "both Record-Route entries copied");
    cr_assert_str_eq(hdr(&c, SIP_HDR_CONTENT_TYPE), "application/sdp");
    cr_assert_not_null(strstr(c.resp, "\r\n\r\nv=0\r\n"));
    cr_assert_str_not_empty(hdr(&c, SIP_HDR_CONTACT));
    const char *tag = strstr(tag180, ";tag=") + 5;
    send_call_req(&c, "ACK", "bob", 1, tag);
    send_call_req(&c, "BYE", "bob", 2, tag);
    cr_assert(cli_recv(&c), "the ACK gets no answer, the BYE its 200");
    cr_assert_eq(c.msg.status, 200);
    cr_assert_str_eq(hdr(&c, SIP_HDR_CSEQ), "2 BYE");
    cli_close(&c);
    char *out = sim_stop(&s);
    cr_assert_not_null(strstr(out, " invite=1 "), "%s", out);
    cr_assert_not_null(strstr(out, " ack=1 "), "%s", out);
    cr_assert_not_null(strstr(out, " bye=1 "), "%s", out);
}

Test(ucmsim, answers_busy_486_and_cancel_200_then_487)
{
    struct sim s;
    sim_start(&s, NULL);
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    send_call_req(&c, "INVITE", "busy1", 1, NULL);
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 486);
    send_call_req(&c, "INVITE", "ring1", 3, NULL);
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 180);
    send_call_req(&c, "CANCEL", "ring1", 3, NULL);
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 200);
    cr_assert_str_eq(hdr(&c, SIP_HDR_CSEQ), "3 CANCEL");
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 487);
    cr_assert_str_eq(hdr(&c, SIP_HDR_CSEQ), "3 INVITE");
    cli_close(&c);
    sim_stop(&s);
}

/** Answers the last received request with `status`, `extra` header lines (NULL-ended). */
static void cli_answer(struct cli *c, int status, const char *reason, const char *const *extra)
{
    struct slice x[8];
    size_t n = 0;
    for (; extra && extra[n] && n < 8; n++)
        x[n] = slice_make(extra[n], strlen(extra[n]));
    char out[8192];
    ssize_t len = sip_build_response(&c->msg, status, slice_make(reason, strlen(reason)),
                                     SLICE_LIT("cb1"), x, n, out, sizeof out - 1);
    cr_assert_gt(len, 0);
    out[len] = 0;
    cli_send(c, out);
}

static const char *const PATH_REG = "Contact: <sip:alice@192.0.2.10:51234;transport=tls>\r\n"
                                    "Path: <sip:TOK@edge.example.test:5061;transport=tls;lr;ob>\r\n"
                                    "Expires: 3600\r\n";

Test(ucmsim, call_out_invites_a_registered_client_by_its_path_then_acks_and_byes)
{
    struct sim s;
    const char *const extra[] = {"--call-out",    "50", "--out-count", "1",
                                 "--out-hold-ms", "10", NULL};
    sim_start(&s, extra);
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    char req[2048];
    make_register(req, sizeof req, "reg-co", 1, PATH_REG);
    cli_send(&c, req);
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 200);
    cr_assert(cli_recv(&c), "no INVITE from --call-out");
    cr_assert(c.msg.is_request);
    cr_assert_eq(c.msg.method, SIP_METHOD_INVITE);
    cr_assert(c.msg.uri.len == strlen("sip:alice@192.0.2.10:51234;transport=tls") &&
              memcmp(c.msg.uri.base, "sip:alice@192.0.2.10:51234;transport=tls", c.msg.uri.len) ==
                  0);
    cr_assert_str_eq(hdr(&c, SIP_HDR_ROUTE),
                     "<sip:TOK@edge.example.test:5061;transport=tls;lr;ob>");
    cr_assert_str_eq(hdr(&c, SIP_HDR_TO), "<sip:alice@example.test>");
    const char *const rr[] = {
        "Record-Route: <sip:edge.example.test:5061;transport=tls;lr;se-node=1>",
        "Record-Route: <sip:TOK@edge.example.test:5061;transport=tls;lr>",
        "Contact: <sip:alice@192.0.2.10:51234;transport=tls>", NULL};
    cli_answer(&c, 180, "Ringing", rr);
    cli_answer(&c, 200, "OK", rr);
    cr_assert(cli_recv(&c), "no ACK");
    cr_assert_eq(c.msg.method, SIP_METHOD_ACK);
    cr_assert_str_eq(hdr(&c, SIP_HDR_ROUTE), "<sip:TOK@edge.example.test:5061;transport=tls;lr>",
                     "the Route set is the Record-Route reversed");
    cr_assert_not_null(strstr(hdr(&c, SIP_HDR_TO), "tag=cb1"));
    cr_assert(cli_recv(&c), "no BYE");
    cr_assert_eq(c.msg.method, SIP_METHOD_BYE);
    cr_assert_str_eq(hdr(&c, SIP_HDR_CSEQ), "2 BYE");
    cli_answer(&c, 200, "OK", NULL);
    sleep_ms(100);
    cli_close(&c);
    char *out = sim_stop(&s);
    cr_assert_not_null(strstr(out, " out_invite=1 out_180=1 out_200=1 out_bye=1 out_ok=1 "), "%s",
                       out);
    cr_assert_not_null(strstr(out, " out_setup_n=1 "), "%s", out);
}

Test(ucmsim, notify_mode_sends_message_summary_to_a_registered_client)
{
    struct sim s;
    const char *const extra[] = {"--notify", "50", "--out-count", "1", NULL};
    sim_start(&s, extra);
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    char req[2048];
    make_register(req, sizeof req, "reg-n", 1, PATH_REG);
    cli_send(&c, req);
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 200);
    cr_assert(cli_recv(&c), "no NOTIFY");
    cr_assert_eq(c.msg.method, SIP_METHOD_NOTIFY);
    cr_assert_str_eq(hdr(&c, SIP_HDR_EVENT), "message-summary");
    cr_assert_not_null(strstr(c.resp, "Messages-Waiting: yes"));
    cli_answer(&c, 200, "OK", NULL);
    sleep_ms(100);
    cli_close(&c);
    char *out = sim_stop(&s);
    cr_assert_not_null(strstr(out, " notify_sent=1 notify_ok=1 notify_fail=0"), "%s", out);
}

Test(ucmsim, answers_a_double_crlf_keepalive_with_one_crlf)
{
    struct sim s;
    sim_start(&s, NULL);
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    cli_send(&c, "\r\n\r\n");
    char buf[8];
    int n = SSL_read(c.ssl, buf, sizeof buf);
    cr_assert_eq(n, 2);
    cr_assert(memcmp(buf, "\r\n", 2) == 0);
    cli_close(&c);
    cr_assert_not_null(strstr(sim_stop(&s), " keepalive=1 "));
}

/* ---- mutual TLS ------------------------------------------------------------------------ */

/** Sends OPTIONS and expects the connection to end with alert `want` (TLS 1.3 clients learn
 *  that the server rejected their certificate only on their first read). */
static void expect_alert(struct cli *c, int connect_rc, int want)
{
    if (connect_rc == 1) {
        SSL_write(c->ssl, OPTIONS_REQ, (int)strlen(OPTIONS_REQ));
        cr_assert_not(cli_recv(c), "the simulator answered a rejected client");
    }
    cr_assert_eq(c->alert, want, "alert %d (%s), expected %d", c->alert,
                 c->alert >= 0 ? SSL_alert_desc_string_long(c->alert) : "none", want);
}

Test(ucmsim, rejects_a_client_of_an_unknown_ca_with_unknown_ca)
{
    struct sim s;
    sim_start(&s, NULL);
    struct cli c;
    expect_alert(&c, cli_connect(&c, s.port, "rogue", 0), SSL_AD_UNKNOWN_CA);
    cli_close(&c);
    expect_alert(&c, cli_connect(&c, s.port, "rogue", TLS1_2_VERSION), SSL_AD_UNKNOWN_CA);
    cli_close(&c);
    cr_assert_not_null(strstr(sim_stop(&s), " tls_fail_unknown_ca=2 "));
    char *err = read_file(s.err);
    cr_assert_not_null(strstr(err, "cause=unknown_ca alert_sent=unknown_ca"), "%s", err);
}

Test(ucmsim, rejects_a_chained_client_not_in_the_allowlist_with_bad_certificate)
{
    struct sim s;
    sim_start(&s, NULL);
    struct cli c;
    expect_alert(&c, cli_connect(&c, s.port, "other", 0), SSL_AD_BAD_CERTIFICATE);
    cli_close(&c);
    expect_alert(&c, cli_connect(&c, s.port, "other", TLS1_2_VERSION), SSL_AD_BAD_CERTIFICATE);
    cli_close(&c);
    cr_assert_not_null(strstr(sim_stop(&s), " tls_fail_not_allowed=2 "));
    char *err = read_file(s.err);
    cr_assert_not_null(strstr(err, "cause=not_in_allowlist alert_sent=bad_certificate"));
    cr_assert_not_null(strstr(err, "names=\"stranger.example.test\""), "%s", err);
}

Test(ucmsim, sends_the_configured_alert_for_a_client_not_in_the_allowlist)
{
    struct sim s;
    sim_start(&s, (const char *const[]){"--reject-alert", "certificate_unknown", NULL});
    struct cli c;
    expect_alert(&c, cli_connect(&c, s.port, "other", 0), SSL_AD_CERTIFICATE_UNKNOWN);
    cli_close(&c);
    sim_stop(&s);
}

/** Connects with certificate "san" (CN edge-cn.example.test, DNS SAN edge-san.example.test) to a
 *  simulator listing `name`, and returns the status of an OPTIONS (0 when rejected). */
static int status_with_listed_name(const char *name)
{
    struct sim s;
    sim_start(&s, (const char *const[]){"--allow", name, NULL});
    struct cli c;
    int status = 0;
    if (cli_connect(&c, s.port, "san", 0) == 1) {
        SSL_write(c.ssl, OPTIONS_REQ, (int)strlen(OPTIONS_REQ));
        if (cli_recv(&c))
            status = c.msg.status;
    }
    cli_close(&c);
    sim_stop(&s);
    return status;
}

Test(ucmsim, accepts_a_client_whose_cn_or_dns_san_is_listed)
{
    cr_assert_eq(status_with_listed_name("edge-san.example.test"), 200);
    cr_assert_eq(status_with_listed_name("EDGE-CN.example.test"), 200);
    cr_assert_eq(status_with_listed_name("example.test"), 0);
}

Test(ucmsim, requires_a_client_certificate)
{
    struct sim s;
    sim_start(&s, NULL);
    struct cli c;
    expect_alert(&c, cli_connect(&c, s.port, NULL, 0), 116 /* certificate_required */);
    cli_close(&c);
    expect_alert(&c, cli_connect(&c, s.port, NULL, TLS1_2_VERSION), SSL_AD_HANDSHAKE_FAILURE);
    cli_close(&c);
    cr_assert_not_null(strstr(sim_stop(&s), " tls_fail_no_cert=2 "));
}

/* ---- modes ----------------------------------------------------------------------------- */

Test(ucmsim, port_mismatch_mode_answers_the_exact_403)
{
    struct sim s;
    sim_start(&s, (const char *const[]){"--mode", "port-mismatch", "--node", "ucm-a", NULL});
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    char req[2048];
    make_register(req, sizeof req, "mm-1", 5, NULL);
    cli_send(&c, req);
    cr_assert(cli_recv(&c));
    const char *want =
        "SIP/2.0 403 Forbidden\r\n"
        "Via: SIP/2.0/TLS edge.example.test:5061;branch=z9hG4bKedge5\r\n"
        "Via: SIP/2.0/TLS 192.0.2.10:51234;received=192.0.2.10;branch=z9hG4bKjab5\r\n"
        "From: <sip:alice@example.test>;tag=af\r\n"
        "To: <sip:alice@example.test>;tag=ucm0-1\r\n"
        "Call-ID: mm-1\r\n"
        "CSeq: 5 REGISTER\r\n"
        "Retry-After: 35\r\n"
        "Warning: 399 ucm-a \"SIP OAuth Registration port Mismatch\"\r\n"
        "Server: sipedge-ucmsim\r\n"
        "Content-Length: 0\r\n\r\n";
    cr_assert_str_eq(c.resp, want);
    cli_send(&c, OPTIONS_REQ); /* keep-alives still get 200 */
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 200);
    cli_close(&c);
    cr_assert_not_null(strstr(sim_stop(&s), " answer_403=1 "));
}

Test(ucmsim, delay_mode_answers_later_without_stalling_other_requests)
{
    struct sim s;
    sim_start(&s, (const char *const[]){"--delay-ms", "1000", "--delay-every", "2", NULL});
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    char req[2048];
    for (unsigned i = 1; i <= 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "d-%u", i);
        make_register(req, sizeof req, id, i, NULL);
        cli_send(&c, req);
    }
    /* the 2nd waits on the timer while the 3rd is answered at once */
    const char *order[] = {"d-1", "d-3", "d-2"};
    for (int i = 0; i < 3; i++) {
        cr_assert(cli_recv(&c));
        cr_assert_eq(c.msg.status, 200);
        cr_assert_str_eq(hdr(&c, SIP_HDR_CALL_ID), order[i]);
    }
    cli_close(&c);
    cr_assert_not_null(strstr(sim_stop(&s), " delayed=1 "));
}

Test(ucmsim, drop_mode_never_answers_the_dropped_requests)
{
    struct sim s;
    sim_start(&s, (const char *const[]){"--drop-every", "2", NULL});
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    char req[2048];
    for (unsigned i = 1; i <= 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "x-%u", i);
        make_register(req, sizeof req, id, i, NULL);
        cli_send(&c, req);
    }
    cli_send(&c, OPTIONS_REQ);
    const char *order[] = {"x-1", "x-3", "options-1"};
    for (int i = 0; i < 3; i++) {
        cr_assert(cli_recv(&c));
        cr_assert_str_eq(hdr(&c, SIP_HDR_CALL_ID), order[i]);
    }
    cli_close(&c);
    cr_assert_not_null(strstr(sim_stop(&s), " dropped=1 "));
}

Test(ucmsim, fail_after_answers_503_with_retry_after)
{
    struct sim s;
    sim_start(&s, (const char *const[]){"--fail-after", "1", NULL});
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    char req[2048];
    make_register(req, sizeof req, "f-1", 1, NULL);
    cli_send(&c, req);
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 200);
    make_register(req, sizeof req, "f-2", 2, NULL);
    cli_send(&c, req);
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 503);
    cr_assert_str_eq(hdr(&c, SIP_HDR_CALL_ID), "f-2");
    cr_assert_not_null(strstr(c.resp, "\r\nRetry-After: 35\r\n"));
    cli_close(&c);
    sim_stop(&s);
}

/* ---- record, threads, robustness ------------------------------------------------------- */

Test(ucmsim, records_each_request_with_its_via_path_and_credentials)
{
    struct sim s;
    sim_start(&s, (const char *const[]){"--record-raw", NULL});
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    char req[2048];
    make_register(req, sizeof req, "rec-1", 9,
                  "Path: <sip:edge.example.test:5061;transport=tls;lr>\r\n"
                  "Contact: <sip:alice@192.0.2.10:51234;transport=tls>\r\n"
                  "Proxy-Authorization: Bearer token=\"abc\"\r\n"
                  "Expires: 3600\r\n");
    cli_send(&c, req);
    cr_assert(cli_recv(&c)); /* the line is written before the answer is sent */
    cli_close(&c);
    sim_stop(&s);

    json_error_t jerr;
    json_t *j = json_loads(read_file(s.record), JSON_DISABLE_EOF_CHECK, &jerr);
    cr_assert_not_null(j, "record is not JSON: %s", jerr.text);
    cr_assert_str_eq(json_string_value(json_object_get(j, "method")), "REGISTER");
    cr_assert_str_eq(json_string_value(json_object_get(j, "call_id")), "rec-1");
    cr_assert_str_eq(json_string_value(json_object_get(j, "cseq")), "9 REGISTER");
    cr_assert_str_eq(json_string_value(json_object_get(j, "via_top")),
                     "SIP/2.0/TLS edge.example.test:5061;branch=z9hG4bKedge9");
    json_t *via = json_object_get(j, "via");
    cr_assert_eq(json_array_size(via), 2);
    cr_assert_str_eq(json_string_value(json_array_get(via, 1)),
                     "SIP/2.0/TLS 192.0.2.10:51234;received=192.0.2.10;branch=z9hG4bKjab9");
    json_t *path = json_object_get(j, "path");
    cr_assert_eq(json_array_size(path), 1);
    cr_assert_str_eq(json_string_value(json_array_get(path, 0)),
                     "<sip:edge.example.test:5061;transport=tls;lr>");
    cr_assert(json_is_true(json_object_get(j, "proxy_authorization")));
    cr_assert_str_eq(json_string_value(json_object_get(j, "max_forwards")), "69");
    cr_assert_str_eq(json_string_value(json_object_get(j, "answer")), "200");
    cr_assert_str_eq(json_string_value(json_object_get(j, "peer_names")), "edge.example.test");
    cr_assert_str_eq(json_string_value(json_object_get(j, "raw")), req);
    json_decref(j);
}

Test(ucmsim, serves_many_connections_on_several_threads)
{
    struct sim s;
    sim_start(&s, (const char *const[]){"--threads", "3", NULL});
    enum { N = 12 };
    static struct cli c[N];
    char req[2048], id[32];
    for (int i = 0; i < N; i++) {
        cr_assert_eq(cli_connect(&c[i], s.port, "edge", 0), 1);
        snprintf(id, sizeof id, "t-%d", i);
        make_register(req, sizeof req, id, (unsigned)i + 1, NULL);
        cli_send(&c[i], req);
    }
    for (int i = 0; i < N; i++) {
        cr_assert(cli_recv(&c[i]));
        snprintf(id, sizeof id, "t-%d", i);
        cr_assert_str_eq(hdr(&c[i], SIP_HDR_CALL_ID), id);
        cli_close(&c[i]);
    }
    cr_assert_not_null(strstr(sim_stop(&s), " answer_200=12 "));
}

Test(ucmsim, closes_a_connection_that_sends_garbage_and_keeps_serving)
{
    struct sim s;
    sim_start(&s, NULL);
    struct cli bad, good;
    cr_assert_eq(cli_connect(&bad, s.port, "edge", 0), 1);
    cr_assert_eq(cli_connect(&good, s.port, "edge", 0), 1);
    cli_send(&bad, "\x01\x02 not sip at all\r\n\r\n");
    cr_assert_not(cli_recv(&bad));
    cli_send(&good, OPTIONS_REQ);
    cr_assert(cli_recv(&good));
    cr_assert_eq(good.msg.status, 200);
    cli_close(&bad);
    cli_close(&good);
    cr_assert_not_null(strstr(sim_stop(&s), " bad_message=1 "));
}

Test(ucmsim, answers_a_request_split_across_many_tls_records)
{
    struct sim s;
    sim_start(&s, NULL);
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    char req[2048];
    make_register(req, sizeof req, "split-1", 1, NULL);
    for (size_t i = 0; req[i]; i += 7) {
        char part[8] = {0};
        memcpy(part, req + i, strnlen(req + i, 7));
        cli_send(&c, part);
    }
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 200);
    cr_assert_str_eq(hdr(&c, SIP_HDR_CALL_ID), "split-1");
    cli_close(&c);
    sim_stop(&s);
}

/* ---- the project's PKI (scripts/make-pki.sh), as the edge's end-to-end tests use it -------- */

Test(ucmsim, works_with_the_pki_of_make_pki_sh)
{
#define MK SIPEDGE_BINARY_DIR "/test-ucmsim/make-pki"
    cr_assert_eq(system("bash " SIPEDGE_SOURCE_DIR "/scripts/make-pki.sh " MK), 0);
    /* UCM's Tomcat certificate from ucm-ca; UCM trusts the edge's CA for client certificates */
    const struct pki mk = {MK "/ucm.crt", MK "/ucm.key", MK "/ca.crt", MK "/ucm-ca.crt",
                           "ucm1.example.test"};
    struct sim s;
    sim_start_pki(&s, &mk, NULL);
    struct cli c;
    cr_assert_eq(cli_connect_pki(&c, s.port, &mk, MK "/client.crt", MK "/client.key", 0), 1);
    cli_send(&c, OPTIONS_REQ);
    cr_assert(cli_recv(&c));
    cr_assert_eq(c.msg.status, 200);
    cli_close(&c);
    expect_alert(&c, cli_connect_pki(&c, s.port, &mk, MK "/untrusted.crt", MK "/untrusted.key", 0),
                 SSL_AD_UNKNOWN_CA);
    cli_close(&c);
    /* a self-signed client certificate is an unknown CA too */
    expect_alert(&c,
                 cli_connect_pki(&c, s.port, &mk, MK "/selfsigned.crt", MK "/selfsigned.key", 0),
                 SSL_AD_UNKNOWN_CA);
    cli_close(&c);
    sim_stop(&s);
#undef MK
}

/* ---- backpressure ------------------------------------------------------------------------ */

Test(ucmsim, stops_reading_a_client_that_does_not_read_and_resumes_when_it_does)
{
    struct sim s;
    /* small socket buffers on both sides, so the simulator's own 1 MiB mark is what stops it */
    sim_start(&s, (const char *const[]){"--sockbuf", "65536", NULL});
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    int b = 65536;
    setsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &b, sizeof b);
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &b, sizeof b);
    cr_assert_eq(fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK), 0);
    enum { N = 6000 }; /* ~3.5 MB of answers: past the simulator's 1 MiB mark and the sockets */
    static char req[2048];
    unsigned sent = 0, got = 0;
    int req_len = 0;
    bool reading = false;
    struct pollfd pfd = {.fd = c.fd};
    while (got < N) {
        while (sent < N) {
            if (!req_len) {
                char id[32];
                snprintf(id, sizeof id, "bp-%u", sent);
                make_register(req, sizeof req, id, sent + 1, NULL);
                req_len = (int)strlen(req);
            }
            int n = SSL_write(c.ssl, req, req_len); /* a retry repeats the same bytes */
            if (n <= 0) {
                cr_assert_eq(SSL_get_error(c.ssl, n), SSL_ERROR_WANT_WRITE);
                break;
            }
            req_len = 0;
            sent++;
        }
        if (reading) {
            for (;;) {
                int n = SSL_read(c.ssl, c.in + c.in_len, (int)(sizeof c.in - 1 - c.in_len));
                if (n <= 0) {
                    cr_assert_eq(SSL_get_error(c.ssl, n), SSL_ERROR_WANT_READ);
                    break;
                }
                c.in_len += (size_t)n;
                size_t off = 0;
                for (;;) {
                    struct sip_header h[32];
                    struct sip_msg m;
                    sip_msg_init(&m, h, 32);
                    ssize_t r = sip_scan(c.in + off, c.in_len - off, 0, &m);
                    if (r == SIP_INCOMPLETE)
                        break;
                    cr_assert_gt(r, 0);
                    const struct sip_header *cs = sip_first(&m, SIP_HDR_CSEQ);
                    cr_assert_not_null(cs);
                    cr_assert_eq(strtoul(cs->value.base, NULL, 10), got + 1, "answers in order");
                    cr_assert_eq(m.status, 200);
                    got++;
                    off += (size_t)r;
                }
                memmove(c.in, c.in + off, c.in_len - off);
                c.in_len -= off;
            }
        }
        if (got == N)
            break;
        pfd.events = (short)((sent < N ? POLLOUT : 0) | (reading ? POLLIN : 0));
        int pr = poll(&pfd, 1, reading ? 10000 : 300);
        cr_assert_geq(pr, 0);
        if (pr == 0) {
            /* the simulator stopped reading us: from now on read the answers too */
            cr_assert_not(reading, "no progress for 10 s (sent %u, answered %u)", sent, got);
            cr_assert_lt(sent, N, "the simulator should have stopped reading before the end");
            reading = true;
        }
    }
    cli_close(&c);
    cr_assert_not_null(strstr(sim_stop(&s), " answer_200=6000 "));
}

/* ---- fractions and scope of the modes ----------------------------------------------------- */

Test(ucmsim, mismatch_every_k_answers_403_to_every_kth_register_only)
{
    struct sim s;
    sim_start(&s, (const char *const[]){"--mismatch-every", "2", NULL});
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    char req[2048];
    const int want[] = {200, 403, 200, 403};
    for (unsigned i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "k-%u", i);
        make_register(req, sizeof req, id, i + 1, NULL);
        cli_send(&c, req);
        cr_assert(cli_recv(&c));
        cr_assert_eq(c.msg.status, want[i], "REGISTER %u", i + 1);
        cli_send(&c, OPTIONS_REQ); /* not counted: modes act on REGISTERs by default */
        cr_assert(cli_recv(&c));
        cr_assert_eq(c.msg.status, 200);
    }
    cli_close(&c);
    sim_stop(&s);
}

Test(ucmsim, apply_to_all_lets_the_modes_act_on_options_too)
{
    struct sim s;
    sim_start(&s, (const char *const[]){"--apply-to", "all", "--drop-every", "2", NULL});
    struct cli c;
    cr_assert_eq(cli_connect(&c, s.port, "edge", 0), 1);
    for (int i = 1; i <= 3; i++) {
        char req[512];
        snprintf(req, sizeof req,
                 "OPTIONS sip:ucm.example.test SIP/2.0\r\n"
                 "Via: SIP/2.0/TLS edge.example.test:5061;branch=z9hG4bKo%d\r\n"
                 "From: <sip:edge@edge.example.test>;tag=o\r\nTo: <sip:ucm.example.test>\r\n"
                 "Call-ID: opt-%d\r\nCSeq: %d OPTIONS\r\nContent-Length: 0\r\n\r\n",
                 i, i, i);
        cli_send(&c, req);
    }
    cr_assert(cli_recv(&c));
    cr_assert_str_eq(hdr(&c, SIP_HDR_CALL_ID), "opt-1");
    cr_assert(cli_recv(&c));
    cr_assert_str_eq(hdr(&c, SIP_HDR_CALL_ID), "opt-3", "the 2nd OPTIONS is dropped");
    cli_close(&c);
    cr_assert_not_null(strstr(sim_stop(&s), " dropped=1 "));
}
