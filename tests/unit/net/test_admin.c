// SPDX-License-Identifier: MIT
// Tests for net/admin.c: real HTTP requests over 127.0.0.1 to an ephemeral port.
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/metrics.h"
#include "net/admin.h"

static struct admin *adm;
static struct metrics *met;
static atomic_bool is_ready;
static char resp[65536 * 8];

static bool on_ready(void *arg, struct admin_text *out)
{
    cr_assert_eq(arg, (void *)&is_ready);
    bool r = atomic_load(&is_ready);
    admin_text_printf(out, "listening: yes\nkeys: 2 loaded\nupstream: %s\n",
                      r ? "1 of 2 nodes up" : "0 of 2 nodes up");
    return r;
}

static void on_status(void *arg, struct admin_text *out)
{
    admin_text_printf(out, "node ucm1.example:5091 tls=up last_error=none\n");
    admin_text_printf(out, "node ucm2.example:5091 tls=failed last_error=\"alert unknown_ca\"\n");
}

static void setup(void)
{
    met = metrics_new(2);
    struct admin_hooks h = {met, on_ready, on_status, &is_ready};
    cr_assert_eq(admin_start("127.0.0.1", 0, &h, &adm), 0);
    cr_assert_neq(admin_port(adm), 0);
}

static void teardown(void)
{
    admin_stop(adm);
    metrics_free(met);
}

/* One HTTP/1.0 exchange; returns the status code, the body starts at *body. */
static int http(const char *method, const char *path, const char **body)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(admin_port(adm))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
    char req[256];
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: x\r\n\r\n", method, path);
    cr_assert_eq(write(fd, req, (size_t)n), n);
    size_t len = 0;
    for (int i = 0; i < 10000 && len < sizeof(resp) - 1; i++) {
        ssize_t r = read(fd, resp + len, sizeof(resp) - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    resp[len] = 0;
    int code = 0;
    cr_assert_eq(sscanf(resp, "HTTP/1.%*d %d", &code), 1, "%s", resp);
    const char *b = strstr(resp, "\r\n\r\n");
    cr_assert(b);
    *body = b + 4;
    return code;
}

TestSuite(admin, .init = setup, .fini = teardown);

Test(admin, healthz_answers_ok)
{
    const char *b;
    cr_assert_eq(http("GET", "/healthz", &b), 200);
    cr_assert_str_eq(b, "ok\n");
}

Test(admin, readyz_follows_the_provider_and_lists_nodes)
{
    const char *b;
    atomic_store(&is_ready, false);
    cr_assert_eq(http("GET", "/readyz", &b), 503);
    cr_assert_str_eq(b, "not ready\nlistening: yes\nkeys: 2 loaded\nupstream: 0 of 2 nodes up\n"
                        "node ucm1.example:5091 tls=up last_error=none\n"
                        "node ucm2.example:5091 tls=failed last_error=\"alert unknown_ca\"\n");
    atomic_store(&is_ready, true);
    cr_assert_eq(http("GET", "/readyz", &b), 200);
    cr_assert(!strncmp(b, "ready\nlistening: yes\n", 21), "%s", b);
}

Test(admin, metrics_serves_the_registry_text)
{
    const char *b;
    metrics_inc(metrics_shard(met, 1), METRIC_SIP_REQUESTS, METRICS_METHOD_REGISTER);
    cr_assert_eq(http("GET", "/metrics", &b), 200);
    cr_assert(strstr(resp, "Content-Type: text/plain; version=0.0.4"), "%s", resp);
    cr_assert(strstr(b, "\nsipedge_sip_requests_total{method=\"REGISTER\"} 1\n"));
    size_t len = 0;
    char *want = metrics_render(met, &len);
    cr_assert_str_eq(b, want);
    free(want);
}

Test(admin, head_has_no_body_and_unknown_paths_are_404)
{
    const char *b;
    cr_assert_eq(http("HEAD", "/healthz", &b), 200);
    cr_assert_str_eq(b, "");
    cr_assert_eq(http("GET", "/nope", &b), 404);
    cr_assert_eq(http("GET", "/healthz/x", &b), 404);
}

Test(admin, other_methods_are_refused)
{
    const char *b;
    cr_assert_eq(http("POST", "/healthz", &b), 405);
    cr_assert(strstr(resp, "Allow: GET, HEAD"), "%s", resp);
    cr_assert_eq(http("DELETE", "/metrics", &b), 405);
}

Test(admin, refuses_a_bad_address_and_a_busy_port)
{
    struct admin *b = NULL;
    struct admin_hooks h = {0};
    cr_assert_eq(admin_start("not-an-ip", 0, &h, &b), -EINVAL);
    int rc = admin_start("127.0.0.1", admin_port(adm), &h, &b);
    cr_assert_eq(rc, -EADDRINUSE, "second bind on the same port must fail: %d", rc);
}

Test(admin, serves_ipv6_loopback)
{
    struct admin *b = NULL;
    struct admin_hooks h = {0};
    int rc = admin_start("::1", 0, &h, &b);
    if (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT)
        cr_skip_test("no IPv6 loopback here");
    cr_assert_eq(rc, 0);
    cr_assert_neq(admin_port(b), 0);
    admin_stop(b);
}
