// SPDX-License-Identifier: MIT
// Per-source token buckets in a bounded 4-way set-associative table (see auth/budget.h).
#include "auth/budget.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "auth/cache.h"

/* Tokens are kept in thousandths so that a refill of rate/1000 per ms needs no division. */
#define MILLI 1000u

/* One bucket. used == false <=> free; tokens <= burst * MILLI. */
struct bucket {
    uint8_t addr[BUDGET_ADDR_LEN];
    int64_t last_ms; /* last refill */
    uint64_t tokens; /* thousandths of a token */
    bool used;
};

struct budget {
    struct bucket *b;
    uint32_t mask; /* sets - 1 */
    uint32_t nslots;
    uint64_t rate; /* tokens per second == thousandths per ms */
    uint64_t cap;  /* burst * MILLI */
    uint64_t seed;
    size_t count;
};

struct budget *budget_new(uint32_t rate_per_s, uint32_t burst, uint32_t slots, uint64_t seed)
{
    if (rate_per_s == 0 || slots > (1u << 20))
        return NULL;
    uint32_t n = BUDGET_WAYS;
    while (n < slots)
        n <<= 1;
    struct budget *bg = calloc(1, sizeof(*bg));
    if (!bg)
        return NULL;
    bg->b = calloc(n, sizeof(*bg->b));
    if (!bg->b) {
        free(bg);
        return NULL;
    }
    bg->nslots = n;
    bg->mask = n / BUDGET_WAYS - 1;
    bg->rate = rate_per_s;
    bg->cap = (uint64_t)(burst ? burst : rate_per_s) * MILLI;
    bg->seed = seed;
    return bg;
}

void budget_free(struct budget *b)
{
    if (!b)
        return;
    free(b->b);
    free(b);
}

/* The bucket of `addr`: its own, else a free one of the set (filled), else the set's least
 * recently refilled one (reset to full). */
static struct bucket *bucket_of(struct budget *bg, const uint8_t *addr, int64_t now_ms)
{
    uint64_t h = cache_hash(addr, BUDGET_ADDR_LEN, bg->seed);
    struct bucket *set = &bg->b[(size_t)((h >> 32) & bg->mask) * BUDGET_WAYS];
    struct bucket *pick = NULL;
    for (unsigned w = 0; w < BUDGET_WAYS; w++) {
        struct bucket *k = &set[w];
        if (k->used && memcmp(k->addr, addr, BUDGET_ADDR_LEN) == 0)
            return k;
        if (!k->used) {
            if (!pick || pick->used)
                pick = k;
        } else if (!pick || (pick->used && k->last_ms < pick->last_ms)) {
            pick = k;
        }
    }
    if (!pick->used)
        bg->count++;
    memcpy(pick->addr, addr, BUDGET_ADDR_LEN);
    pick->used = true;
    pick->tokens = bg->cap;
    pick->last_ms = now_ms;
    return pick;
}

bool budget_take(struct budget *bg, const uint8_t addr[BUDGET_ADDR_LEN], int64_t now_ms)
{
    struct bucket *k = bucket_of(bg, addr, now_ms);
    if (now_ms > k->last_ms) {
        uint64_t dt = (uint64_t)(now_ms - k->last_ms);
        /* dt * rate overflows only after centuries at any u32 rate */
        uint64_t add = dt < bg->cap ? dt * bg->rate : bg->cap;
        k->tokens = k->tokens + add > bg->cap ? bg->cap : k->tokens + add;
        k->last_ms = now_ms;
    }
    if (k->tokens < MILLI)
        return false;
    k->tokens -= MILLI;
    return true;
}

size_t budget_count(const struct budget *b)
{
    return b->count;
}

size_t budget_capacity(const struct budget *b)
{
    return b->nslots;
}

int budget_addr_parse(const char *text, uint8_t out[BUDGET_ADDR_LEN])
{
    struct in_addr a4;
    memset(out, 0, BUDGET_ADDR_LEN);
    if (inet_pton(AF_INET, text, &a4) == 1) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        return 0;
    }
    return inet_pton(AF_INET6, text, out) == 1 ? 0 : -EINVAL;
}

void budget_addr_format(const uint8_t addr[BUDGET_ADDR_LEN], char *buf, size_t cap)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(addr, v4mapped, 12) == 0)
        inet_ntop(AF_INET, addr + 12, buf, (socklen_t)cap);
    else
        inet_ntop(AF_INET6, addr, buf, (socklen_t)cap);
}

int budget_addr_of_fd(int fd, uint8_t out[BUDGET_ADDR_LEN])
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    memset(out, 0, BUDGET_ADDR_LEN);
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
        return -errno;
    if (ss.ss_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)&ss)->sin6_addr, BUDGET_ADDR_LEN);
    } else if (ss.ss_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)&ss)->sin_addr, 4);
    } else {
        return -EAFNOSUPPORT;
    }
    return 0;
}
