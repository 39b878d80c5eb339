// SPDX-License-Identifier: MIT
// L1 token cache: a seeded multiply-fold hash and an 8-way set-associative table whose hits are
// confirmed by comparing the stored token bytes (a hash collision can never hit another token).
#include "auth/cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* Odd 64-bit constants with well-spread bits (golden ratio and friends). */
#define K0 0x9e3779b97f4a7c15ull
#define K1 0xc2b2ae3d27d4eb4full
#define K2 0x165667b19e3779f9ull
#define K3 0xd6e8feb86659fd93ull

static inline uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline uint64_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* 64x64->128 multiply, high and low halves folded together: every input bit reaches the middle
 * output bits. One step costs a MUL and an XOR. */
static inline uint64_t fold(uint64_t a, uint64_t b)
{
    unsigned __int128 m = (unsigned __int128)a * b;
    return (uint64_t)m ^ (uint64_t)(m >> 64);
}

uint64_t cache_hash(const void *p, size_t len, uint64_t seed)
{
    const uint8_t *b = p;
    size_t n = len;
    /* The per-lane secrets depend on the seed, so an outsider cannot choose words that cancel
     * them (which would zero a product and erase a lane). */
    uint64_t s0 = fold(seed ^ K0, K1), s1 = fold(seed ^ K2, K3);
    uint64_t a0 = seed ^ K2, a1 = s0 ^ K3, a2 = s1 ^ K0, a3 = seed ^ K1;

    /* Four independent lanes, 16 bytes each per round: the multiplies overlap in the pipeline. */
    while (n > 64) {
        a0 = fold(rd64(b) ^ s0, rd64(b + 8) ^ a0);
        a1 = fold(rd64(b + 16) ^ s1, rd64(b + 24) ^ a1);
        a2 = fold(rd64(b + 32) ^ s0, rd64(b + 40) ^ a2);
        a3 = fold(rd64(b + 48) ^ s1, rd64(b + 56) ^ a3);
        b += 64;
        n -= 64;
    }
    while (n > 16) {
        a0 = fold(rd64(b) ^ s1, rd64(b + 8) ^ a0);
        uint64_t t = a0;
        a0 = a1, a1 = a2, a2 = a3, a3 = t;
        b += 16;
        n -= 16;
    }
    /* The last 1..16 bytes; reads may overlap bytes already hashed (never before `p`). */
    uint64_t x, y;
    if (len >= 16) {
        x = rd64(b + n - 16);
        y = rd64(b + n - 8);
    } else if (n >= 8) {
        x = rd64(b);
        y = rd64(b + n - 8);
    } else if (n >= 4) {
        x = rd32(b);
        y = rd32(b + n - 4);
    } else if (n > 0) {
        x = ((uint64_t)b[0] << 16) | ((uint64_t)b[n / 2] << 8) | b[n - 1];
        y = 0;
    } else {
        x = y = 0;
    }
    a0 = fold(x ^ s0 ^ a2, y ^ s1 ^ a0);
    a1 = fold(a1 ^ K0 ^ (uint64_t)len, a3 ^ s0);
    uint64_t h = fold(a0 ^ K1, a1 ^ s1);
    return h ? h : 1;
}

uint64_t cache_random_seed(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
        abort(); /* startup only: no entropy means no secure seed */
    return v;
}

void cache_hex(const uint8_t *in, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* One entry. Invariants: hashes[i] == 0 <=> entry i free (tok_len 0, tok kept for reuse);
 * tok_len <= tok_cap <= max_tok. */
struct l1_entry {
    int64_t expires;
    char *tok; /* owned; capacity tok_cap, reused across replacements */
    uint32_t tok_len;
    uint32_t tok_cap;
    uint32_t jti_len;
    uint8_t digest[CACHE_DIGEST_LEN];
    struct jwt_result res;
};

struct cache_l1 {
    uint64_t *hashes; /* CACHE_L1_WAYS per set, 64-byte aligned: one cache line per probe */
    struct l1_entry *ent;
    uint32_t set_mask;
    uint32_t nent;
    size_t max_tok;
    uint64_t seed;
    size_t count;
};

struct cache_l1 *cache_l1_new(uint32_t capacity, size_t max_token_len, uint64_t seed)
{
    if (capacity < CACHE_L1_WAYS)
        capacity = CACHE_L1_WAYS;
    if (capacity > (1u << 24) || max_token_len == 0 || max_token_len > UINT32_MAX)
        return NULL;
    uint32_t n = CACHE_L1_WAYS;
    while (n < capacity)
        n <<= 1;
    struct cache_l1 *l1 = calloc(1, sizeof(*l1));
    if (!l1)
        return NULL;
    l1->hashes = aligned_alloc(64, (size_t)n * sizeof(uint64_t));
    l1->ent = calloc(n, sizeof(*l1->ent));
    if (!l1->hashes || !l1->ent) {
        free(l1->hashes);
        free(l1->ent);
        free(l1);
        return NULL;
    }
    memset(l1->hashes, 0, (size_t)n * sizeof(uint64_t));
    l1->nent = n;
    l1->set_mask = n / CACHE_L1_WAYS - 1;
    l1->max_tok = max_token_len;
    l1->seed = seed;
    return l1;
}

void cache_l1_free(struct cache_l1 *l1)
{
    if (!l1)
        return;
    for (uint32_t i = 0; i < l1->nent; i++)
        free(l1->ent[i].tok);
    free(l1->ent);
    free(l1->hashes);
    free(l1);
}

uint64_t cache_l1_hash(const struct cache_l1 *l1, const char *tok, size_t len)
{
    return cache_hash(tok, len, l1->seed);
}

static inline uint32_t set_base(const struct cache_l1 *l1, uint64_t h)
{
    /* High bits pick the set: the low bits of the fold product are the weakest. */
    return (uint32_t)((h >> 32) & l1->set_mask) * CACHE_L1_WAYS;
}

static void drop(struct cache_l1 *l1, uint32_t i)
{
    l1->hashes[i] = 0;
    l1->ent[i].tok_len = 0;
    l1->count--;
}

static inline bool same_token(const struct l1_entry *e, const char *tok, size_t len)
{
    return e->tok_len == len && memcmp(e->tok, tok, len) == 0;
}

/* Copies the used part of a result: a whole-struct copy (300 bytes) compiles to `rep movsq`,
 * whose start-up cost was a fifth of an L1 hit. */
static inline void copy_result(struct jwt_result *out, const struct jwt_result *r, size_t jti_len)
{
    out->reason = r->reason;
    out->user_len = r->user_len;
    out->exp = r->exp;
    out->scope_bits = r->scope_bits;
    out->signature_only = r->signature_only;
    memcpy(out->user, r->user, r->user_len + 1);
    memcpy(out->jti, r->jti, jti_len + 1);
}

enum cache_l1_hit cache_l1_lookup(struct cache_l1 *l1, const char *tok, size_t len, uint64_t h,
                                  int64_t now, struct jwt_result *out, uint8_t *digest)
{
    uint32_t base = set_base(l1, h);
    for (uint32_t w = 0; w < CACHE_L1_WAYS; w++) {
        if (l1->hashes[base + w] != h)
            continue;
        struct l1_entry *e = &l1->ent[base + w];
        if (!same_token(e, tok, len))
            continue; /* a collision: keep looking, never a hit */
        if (e->expires <= now) {
            drop(l1, base + w);
            return CACHE_L1_MISS;
        }
        copy_result(out, &e->res, e->jti_len);
        if (digest)
            memcpy(digest, e->digest, CACHE_DIGEST_LEN);
        return e->res.reason == JWT_OK ? CACHE_L1_POSITIVE : CACHE_L1_NEGATIVE;
    }
    return CACHE_L1_MISS;
}

int cache_l1_insert(struct cache_l1 *l1, const char *tok, size_t len, uint64_t h,
                    const uint8_t digest[CACHE_DIGEST_LEN], const struct jwt_result *res,
                    int64_t expires, int64_t now)
{
    if (len > l1->max_tok)
        return -E2BIG;
    if (expires <= now)
        return -EINVAL;
    uint32_t base = set_base(l1, h), pick = UINT32_MAX, oldest = base;
    for (uint32_t w = 0; w < CACHE_L1_WAYS; w++) {
        uint32_t i = base + w;
        if (l1->hashes[i] == h && same_token(&l1->ent[i], tok, len)) {
            pick = i;
            break;
        }
        if (pick == UINT32_MAX && (l1->hashes[i] == 0 || l1->ent[i].expires <= now))
            pick = i; /* keep scanning: the same token may sit further on */
        if (l1->ent[i].expires < l1->ent[oldest].expires)
            oldest = i;
    }
    if (pick == UINT32_MAX)
        pick = oldest;
    struct l1_entry *e = &l1->ent[pick];
    if (e->tok_cap < len || !e->tok) {
        /* Round small tokens up so later replacements rarely reallocate; never above max_tok. */
        size_t cap = len < 1024 ? 1024 : len;
        if (cap > l1->max_tok)
            cap = l1->max_tok;
        if (cap < len)
            cap = len;
        char *nt = malloc(cap ? cap : 1);
        if (!nt)
            return -ENOMEM;
        free(e->tok);
        e->tok = nt;
        e->tok_cap = (uint32_t)cap;
    }
    if (l1->hashes[pick] == 0)
        l1->count++;
    memcpy(e->tok, tok, len);
    e->tok_len = (uint32_t)len;
    e->expires = expires;
    memcpy(e->digest, digest, CACHE_DIGEST_LEN);
    e->res = *res;
    /* Bounded and NUL-terminated, so lookups copy only the used bytes. */
    size_t ul = strnlen(res->user, JWT_MAX_USER);
    e->res.user_len = res->user_len < ul ? res->user_len : ul;
    e->res.user[e->res.user_len] = '\0';
    e->jti_len = (uint32_t)strnlen(res->jti, JWT_MAX_JTI);
    e->res.jti[e->jti_len] = '\0';
    l1->hashes[pick] = h;
    return 0;
}

size_t cache_l1_evict_jti(struct cache_l1 *l1, const char *jti, size_t len)
{
    size_t n = 0;
    if (len == 0)
        return 0; /* tokens without a jti are revoked by digest */
    for (uint32_t i = 0; i < l1->nent; i++) {
        const struct l1_entry *e = &l1->ent[i];
        if (l1->hashes[i] && e->jti_len == len && memcmp(e->res.jti, jti, len) == 0) {
            drop(l1, i);
            n++;
        }
    }
    return n;
}

size_t cache_l1_evict_digest(struct cache_l1 *l1, const uint8_t digest[CACHE_DIGEST_LEN])
{
    size_t n = 0;
    for (uint32_t i = 0; i < l1->nent; i++) {
        if (l1->hashes[i] && memcmp(l1->ent[i].digest, digest, CACHE_DIGEST_LEN) == 0) {
            drop(l1, i);
            n++;
        }
    }
    return n;
}

size_t cache_l1_clear(struct cache_l1 *l1, bool negative)
{
    size_t n = 0;
    for (uint32_t i = 0; i < l1->nent; i++) {
        if (l1->hashes[i] && (negative || l1->ent[i].res.reason == JWT_OK)) {
            drop(l1, i);
            n++;
        }
    }
    return n;
}

size_t cache_l1_count(const struct cache_l1 *l1)
{
    return l1->count;
}
