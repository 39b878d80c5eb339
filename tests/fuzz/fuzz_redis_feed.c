// SPDX-License-Identifier: MIT
// libFuzzer driver for the sans-IO Redis client's reply path: arbitrary server bytes, split at
// fuzzer-chosen points, against pipelined commands, a push handler and deadlines.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "auth/redis.h"

static size_t touched;

static void touch(const redisReply *rp, int depth)
{
    if (!rp || depth > 8)
        return;
    if (rp->str)
        for (size_t i = 0; i < rp->len; i++)
            touched += (unsigned char)rp->str[i];
    for (size_t i = 0; i < rp->elements; i++)
        touch(rp->element[i], depth + 1);
}

static void on_reply(void *arg, const redisReply *rp, int err)
{
    (*(int *)arg)++;
    touch(rp, 0);
}

static void on_push(void *arg, const redisReply *rp)
{
    touch(rp, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cache_redis *r = cache_redis_new(&(struct cache_redis_config){.max_pending = 8}, 1);
    if (!r)
        return 0;
    int calls = 0, issued = 0;
    cache_redis_set_push(r, on_push, NULL);
    cache_redis_connected(r, 0);
    const char *argv[] = {"GET", "k"};
    size_t lens[] = {3, 1};
    for (int i = 0; i < 4; i++)
        issued += cache_redis_command(r, 2, argv, lens, 0, on_reply, &calls) == 0;
    /* First byte: chunk size; then the stream. */
    size_t chunk = size ? (data[0] % 16) + 1 : 1;
    int64_t now = 0;
    for (size_t off = 1; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (cache_redis_feed(r, (const char *)data + off, n, now) < 0)
            break;
        if (data[off] == '!')
            cache_redis_tick(r, now += 10); /* expire what is pending */
        if (cache_redis_conn_state(r) == CACHE_REDIS_UP && data[off] == '?')
            issued += cache_redis_command(r, 2, argv, lens, now, on_reply, &calls) == 0;
    }
    cache_redis_free(r);
    if (calls != issued)
        __builtin_trap(); /* every accepted command is answered exactly once */
    return 0;
}
