// SPDX-License-Identifier: MIT
// Admin HTTP server: libmicrohttpd with its internal polling thread, bound to the configured
// (loopback) address; every answer is built per request from the registered hooks.
#include "net/admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/metrics.h"

struct admin {
    struct MHD_Daemon *d;
    struct admin_hooks h;
    uint16_t port;
};

void admin_text_printf(struct admin_text *t, const char *fmt, ...)
{
    if (t->len + 1 >= t->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n < t->cap - t->len ? (size_t)n : t->cap - t->len - 1;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, char *body, size_t len,
                             const char *ctype)
{
    /* body is malloc'd and handed over */
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, body, free);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result reply_str(struct MHD_Connection *c, unsigned code, const char *s)
{
    char *b = strdup(s);
    if (!b)
        return MHD_NO;
    return reply(c, code, b, strlen(b), "text/plain; charset=utf-8");
}

static enum MHD_Result readyz(struct admin *a, struct MHD_Connection *c)
{
    struct admin_text t = {malloc(ADMIN_TEXT_MAX), 0, ADMIN_TEXT_MAX};
    if (!t.buf)
        return MHD_NO;
    t.buf[0] = 0;
    /* leave room for the verdict line, written first once known */
    static const size_t head = 16;
    t.len = head;
    bool ok = a->h.ready ? a->h.ready(a->h.arg, &t) : false;
    if (!a->h.ready)
        admin_text_printf(&t, "provider: none registered\n");
    if (a->h.status)
        a->h.status(a->h.arg, &t);
    const char *verdict = ok ? "ready\n" : "not ready\n";
    size_t vlen = strlen(verdict);
    memmove(t.buf + vlen, t.buf + head, t.len - head);
    memcpy(t.buf, verdict, vlen);
    t.len = t.len - head + vlen;
    return reply(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, t.buf, t.len,
                 "text/plain; charset=utf-8");
}

static enum MHD_Result metricsz(struct admin *a, struct MHD_Connection *c)
{
    size_t len = 0;
    char *text = a->h.metrics ? metrics_render(a->h.metrics, &len) : strdup("");
    if (!text)
        return reply_str(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    return reply(c, MHD_HTTP_OK, text, len, "text/plain; version=0.0.4; charset=utf-8");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    static int first;
    struct admin *a = cls;
    if (!*req_cls) { /* first call: headers only */
        *req_cls = &first;
        return MHD_YES;
    }
    if (*upload_data_size) { /* a body: ignored, the method is refused below */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_str(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (!strcmp(url, "/healthz"))
        return reply_str(c, MHD_HTTP_OK, "ok\n");
    if (!strcmp(url, "/readyz"))
        return readyz(a, c);
    if (!strcmp(url, "/metrics"))
        return metricsz(a, c);
    return reply_str(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

int admin_start(const char *address, uint16_t port, const struct admin_hooks *hooks,
                struct admin **out)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, address, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
    } else if (inet_pton(AF_INET6, address, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        flags |= MHD_USE_IPv6;
    } else {
        return -EINVAL;
    }
    struct admin *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    if (hooks)
        a->h = *hooks;
    errno = 0;
    a->d = MHD_start_daemon(flags, port, NULL, NULL, on_request, a, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, 32u,
                            MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!a->d) {
        int e = errno ? errno : EIO;
        free(a);
        return -e;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->d, MHD_DAEMON_INFO_BIND_PORT);
    a->port = info ? info->port : port;
    *out = a;
    return 0;
}

uint16_t admin_port(const struct admin *a)
{
    return a->port;
}

void admin_stop(struct admin *a)
{
    if (!a)
        return;
    MHD_stop_daemon(a->d);
    free(a);
}
