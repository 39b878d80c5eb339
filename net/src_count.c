// SPDX-License-Identifier: MIT
// A count per source address: see net/src_count.h.
#include "net/src_count.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* murmur3's finaliser: every input bit reaches every output bit */
static uint64_t fmix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static uint32_t home_of(const struct src_count *t, const uint8_t *key)
{
    uint64_t x, y;
    memcpy(&x, key, 8);
    memcpy(&y, key + 8, 8);
    return (uint32_t)fmix64(fmix64(x ^ t->seed[0]) ^ y ^ t->seed[1]) & t->mask;
}

/* The bucket of `key`, or the empty one where it would go: the table is never full (at most
 * `max` keys in at least 2 × `max` buckets), so the probe ends. */
static uint32_t find(const struct src_count *t, const uint8_t *key)
{
    uint32_t i = home_of(t, key);
    while (t->e[i].n != 0 && memcmp(t->e[i].key, key, SRC_COUNT_KEY_LEN) != 0)
        i = (i + 1) & t->mask;
    return i;
}

void src_count_key_of_peer(const uint8_t addr[SRC_COUNT_KEY_LEN], uint8_t key[SRC_COUNT_KEY_LEN])
{
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memcpy(key, addr, SRC_COUNT_KEY_LEN);
    if (memcmp(key, v4_mapped, sizeof(v4_mapped)) != 0)
        memset(key + 8, 0, 8);
}

int src_count_init(struct src_count *t, uint32_t max)
{
    memset(t, 0, sizeof(*t));
    uint32_t cap = 16;
    while (cap < 2 * (uint64_t)max && cap < (1u << 31))
        cap <<= 1;
    t->e = calloc(cap, sizeof(*t->e));
    if (t->e == NULL)
        return -ENOMEM;
    t->mask = cap - 1;
    t->max = max < cap / 2 ? max : cap / 2;
    if (getrandom(t->seed, sizeof(t->seed), GRND_NONBLOCK) != (ssize_t)sizeof(t->seed)) {
        uintptr_t a = (uintptr_t)t->e; /* no entropy yet (early boot): the heap's address */
        t->seed[0] = fmix64(a);
        t->seed[1] = fmix64(a ^ 0x9e3779b97f4a7c15ull);
    }
    return 0;
}

void src_count_deinit(struct src_count *t)
{
    free(t->e);
    memset(t, 0, sizeof(*t));
}

uint32_t src_count_get(const struct src_count *t, const uint8_t key[SRC_COUNT_KEY_LEN])
{
    return t->e[find(t, key)].n;
}

uint32_t src_count_inc(struct src_count *t, const uint8_t key[SRC_COUNT_KEY_LEN])
{
    struct src_count_entry *e = &t->e[find(t, key)];
    if (e->n == 0) {
        if (t->used >= t->max)
            return 0;
        t->used++;
        memcpy(e->key, key, SRC_COUNT_KEY_LEN);
    }
    return ++e->n;
}

void src_count_dec(struct src_count *t, const uint8_t key[SRC_COUNT_KEY_LEN])
{
    uint32_t i = find(t, key);
    if (t->e[i].n == 0 || --t->e[i].n > 0)
        return;
    t->used--;
    /* backward shift: move each later key of the run into the hole unless its home lies
     * cyclically in (hole, j] (then it must stay where a probe from its home finds it) */
    for (uint32_t j = (i + 1) & t->mask; t->e[j].n != 0; j = (j + 1) & t->mask) {
        uint32_t home = home_of(t, t->e[j].key);
        if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
            t->e[i] = t->e[j];
            t->e[j].n = 0;
            i = j;
        }
    }
}
