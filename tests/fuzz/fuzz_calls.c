// SPDX-License-Identifier: MIT
// libFuzzer target for the call path of the proxy (core/calls.c with core/proxy.c): the input is a
// program of records, each a message from a client or from UCM, an answer built by the harness to
// the last request one side got (so the fuzzer reaches every transaction state with our own
// branches), a timer tick or a failed hand-over. Checks: no crash, no leak (ASan), the books hold
// (pending <= open), and proxy_free() answers and frees everything.
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/flow.h"
#include "core/log.h"
#include "core/policy.h"
#include "core/proxy.h"
#include "core/sip.h"

#define LAST_MAX 8192

static char last_ucm[LAST_MAX], last_client[LAST_MAX]; /* the last request each side got */
static size_t last_ucm_len, last_client_len;
static uint32_t last_client_id;
static struct policy_binding bindings[4];
static uint64_t handed_txn = UINT64_MAX;

static void keep_last(char *dst, size_t *len, const struct slice *iov, size_t n)
{
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (off + iov[i].len > LAST_MAX)
            return;
        memcpy(dst + off, iov[i].base, iov[i].len);
        off += iov[i].len;
    }
    if (off > 4 && memcmp(dst, "SIP/", 4) != 0) /* requests only */
        *len = off;
}

static int f_client_send(void *ctx, uint32_t id, const struct slice *iov, size_t n)
{
    (void)ctx;
    if (id == 0 || id > 3)
        return -ENOTCONN;
    last_client_id = id;
    keep_last(last_client, &last_client_len, iov, n);
    return 0;
}

static int f_upstream_send(void *ctx, const struct slice *iov, size_t n, struct proxy_sent *sent)
{
    (void)ctx;
    keep_last(last_ucm, &last_ucm_len, iov, n);
    sent->conn_id = 100;
    return 0;
}

static struct policy_binding *f_binding(void *ctx, uint32_t id)
{
    (void)ctx;
    return id >= 1 && id <= 3 ? &bindings[id] : NULL;
}

static int f_pick(void *ctx, int node, struct proxy_sent *sent)
{
    (void)ctx;
    if (node > 1)
        return -EINVAL;
    sent->conn_id = 100 + (uint32_t)(node < 0 ? 0 : node);
    sent->node = node < 0 ? 0 : node;
    return sent->node;
}

static int f_peer_send(void *ctx, uint32_t conn, const struct slice *iov, size_t n)
{
    (void)ctx;
    if (conn != 100 && conn != 101)
        return -ENOTCONN;
    keep_last(last_ucm, &last_ucm_len, iov, n);
    return 0;
}

static int f_flow_send(void *ctx, const struct flow *f, uint64_t txn_id, const struct slice *iov,
                       size_t n)
{
    if (f->worker != 0) {
        handed_txn = txn_id;
        return 0;
    }
    uint32_t id = flow_conn_id(f);
    if (id == 0 || id > 3 || bindings[id].flow_tag != f->gen)
        return -ENOTCONN;
    return f_client_send(ctx, id, iov, n) < 0 ? -ENOTCONN : 0;
}

static void f_response_post(void *ctx, unsigned worker, uint32_t client_id, const struct slice *iov,
                            size_t n)
{
    (void)ctx;
    (void)worker;
    (void)client_id;
    (void)iov;
    (void)n;
}

/* An answer `status` to the request in `req` (its Vias, From, To with a tag, Call-ID, CSeq). */
static size_t answer(const char *req, size_t len, int status, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "SIP/2.0 %d X\r\n", status);
    static const char *const keep[] = {
        "Via:", "From:", "To:", "Call-ID:", "CSeq:", "Record-Route:"};
    const char *p = req, *end = req + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL || eol == p + 1)
            break;
        size_t l = (size_t)(eol - p + 1);
        for (size_t k = 0; k < sizeof(keep) / sizeof(keep[0]); k++) {
            size_t kl = strlen(keep[k]);
            if (l > kl && strncasecmp(p, keep[k], kl) == 0 && o + l + 16 < cap) {
                bool to = k == 2 && memmem(p, l, "tag=", 4) == NULL;
                memcpy(out + o, p, l - (to ? 2 : 0));
                o += l - (to ? 2 : 0);
                if (to)
                    o += (size_t)snprintf(out + o, cap - o, ";tag=fz\r\n");
            }
        }
        p = eol + 1;
    }
    o += (size_t)snprintf(out + o, cap - o, "Content-Length: 0\r\n\r\n");
    return o;
}

static void feed(struct proxy *p, int side, uint32_t who, char *buf, size_t len, int64_t now)
{
    struct sip_header hdrs[64];
    struct sip_msg msg;
    sip_msg_init(&msg, hdrs, 64);
    msg.limits.max_size = len + 1;
    if (sip_scan(buf, len, 0, &msg) <= 0)
        return;
    if (side == 0) {
        if (msg.is_request)
            proxy_on_client_request(p, who, &msg, now);
        else
            proxy_on_client_response(p, who, &msg, now);
    } else if (side == 1) {
        proxy_on_upstream_message(p, 100 + who % 2, (int)(who % 3) - 1, &msg, now);
    } else {
        proxy_on_posted_response(p, who % 2, who, &msg, now);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct flow_keys keys;
    static bool init;
    if (!init) {
        log_init(2, LOG_ERROR, LOG_FORMAT_KV);
        flow_keys_init(&keys);
        init = true;
    }
    struct proxy_cfg cfg = {.worker = 0,
                            .realm = "ccmsipline",
                            .via_host = "edge.example.com",
                            .via_port = 5061,
                            .add_path = true,
                            .max_transactions = 8,
                            .flow_keys = &keys};
    struct proxy_env env = {.client_send = f_client_send,
                            .upstream_send = f_upstream_send,
                            .client_binding = f_binding,
                            .upstream_pick = f_pick,
                            .peer_send = f_peer_send,
                            .flow_send = f_flow_send,
                            .response_post = f_response_post};
    memset(bindings, 0, sizeof(bindings));
    for (uint32_t i = 1; i <= 3; i++)
        policy_bind(&bindings[i], SLICE_LIT("alice"), INT64_MAX / 4);
    last_ucm_len = last_client_len = 0;
    handed_txn = UINT64_MAX;
    struct proxy *p = proxy_new(&cfg, &env, NULL, NULL);
    assert(p != NULL);
    int64_t now = 1000;
    size_t i = 0;
    while (i + 3 <= size) {
        uint8_t op = data[i];
        size_t len = (size_t)data[i + 1] << 8 | data[i + 2];
        i += 3;
        if (len > size - i)
            len = size - i;
        char buf[LAST_MAX + 64];
        switch (op % 7) {
        case 0: /* a client's message */
        case 1: /* a message from UCM */
        case 2: /* a response handed over by another worker */
            if (len > LAST_MAX)
                len = LAST_MAX;
            memcpy(buf, data + i, len);
            feed(p, op % 7, 1 + (op >> 3) % 3, buf, len, now);
            i += len;
            break;
        case 3: /* UCM answers the last request it got, status from len */
            if (last_ucm_len > 0)
                feed(p, 1, 0, buf,
                     answer(last_ucm, last_ucm_len, 100 + (int)(len % 600), buf, sizeof(buf)), now);
            break;
        case 4: /* the client answers the last request it got */
            if (last_client_len > 0)
                feed(p, 0, last_client_id, buf,
                     answer(last_client, last_client_len, 100 + (int)(len % 600), buf, sizeof(buf)),
                     now);
            break;
        case 5: /* time passes */
            now += (int64_t)len * 100;
            proxy_tick(p, now);
            break;
        default: /* a hand-over failed */
            if (handed_txn != UINT64_MAX)
                proxy_on_flow_failed(p, handed_txn, now);
            break;
        }
        const struct proxy_stats *st = proxy_stats(p);
        assert(st->calls_pending <= st->calls_open);
    }
    proxy_free(p);
    return 0;
}
