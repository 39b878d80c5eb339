// SPDX-License-Identifier: MIT
// L1 token cache: a seeded multiply-fold hash and an 8-way set-associative table. Positive hits
// are confirmed by comparing the stored token bytes, negative ones by the token's SHA-256 (a
// rejected token is never copied); token copies count against a byte bound and are freed on drop.
#include "auth/cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/evp.h>

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

/* tok_len of a negative entry: no token bytes, the digest identifies the token. */
#define NEG_LEN UINT32_MAX

/* One entry. Slot i of the table (hashes[i]) holds one when hashes[i] != 0: slot[i] is then
 * its index in the pool + 1. The pool is allocated by chunks as entries are needed and entries
 * are reused through a free list, so the memory touched follows the live entries, not the
 * table's capacity (a slot's place is random: entries in the table itself touched a page per
 * entry, ≈ 14 of the 24 MiB per worker by 5,000 tokens with the default 65,536 slots).
 *
 * | state    | hashes[i] | slot[i] | tok            | tok_len  | bytes counted |
 * |----------|-----------|---------|----------------|----------|---------------|
 * | free     | 0         | 0       | -              | -        | 0             |
 * | positive | != 0      | e + 1   | owned, tok_cap | <= cap   | tok_cap       |
 * | negative | != 0      | e + 1   | NULL           | NEG_LEN  | 0             |
 *
 * A pool entry on the free list has tok NULL and keeps the index of the next free one + 1 in
 * `expires`. */
struct l1_entry {
    int64_t expires;
    char *tok; /* owned copy of a positive token, exactly tok_cap bytes */
    uint32_t tok_len;
    uint32_t tok_cap;
    uint32_t jti_len;
    uint8_t digest[CACHE_DIGEST_LEN];
    struct jwt_result res;
};

#define L1_CHUNK 128u /* pool entries per chunk (46 KiB) */

struct cache_l1 {
    uint64_t *hashes;        /* CACHE_L1_WAYS per set, 64-byte aligned: one cache line per probe */
    uint32_t *slot;          /* pool index + 1 of each slot's entry, 0 when the slot is free */
    struct l1_entry **chunk; /* the pool: nent / L1_CHUNK chunks, allocated when first needed */
    uint32_t pool_used;      /* pool entries ever handed out (all below are in chunks) */
    uint32_t free_head;      /* first pool entry on the free list + 1, 0: none */
    uint32_t set_mask;
    uint32_t nent;
    uint32_t hand; /* next entry cache_l1_sweep() looks at */
    size_t max_tok;
    size_t max_bytes; /* bound on the sum of token copies */
    size_t bytes;     /* sum of tok_cap of live entries */
    uint64_t seed;
    size_t count;
    struct cache_l1_stats st;
    EVP_MD *sha256;
    EVP_MD_CTX *md;
};

/* Pool entry `k` (index + 1, as slot[] and free_head hold it). */
static inline struct l1_entry *pool_ent(const struct cache_l1 *l1, uint32_t k)
{
    return &l1->chunk[(k - 1) / L1_CHUNK][(k - 1) % L1_CHUNK];
}

struct cache_l1 *cache_l1_new(uint32_t capacity, size_t max_token_len, uint64_t seed)
{
    if (capacity < CACHE_L1_WAYS)
        capacity = CACHE_L1_WAYS;
    if (capacity > (1u << 24) || max_token_len == 0 || max_token_len >= NEG_LEN)
        return NULL;
    uint32_t n = CACHE_L1_WAYS;
    while (n < capacity)
        n <<= 1;
    struct cache_l1 *l1 = calloc(1, sizeof(*l1));
    if (!l1)
        return NULL;
    l1->hashes = aligned_alloc(64, (size_t)n * sizeof(uint64_t));
    l1->slot = calloc(n, sizeof(*l1->slot));
    l1->chunk = calloc((n + L1_CHUNK - 1) / L1_CHUNK, sizeof(*l1->chunk));
    l1->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    l1->md = EVP_MD_CTX_new();
    if (!l1->hashes || !l1->slot || !l1->chunk || !l1->sha256 || !l1->md) {
        cache_l1_free(l1);
        return NULL;
    }
    memset(l1->hashes, 0, (size_t)n * sizeof(uint64_t));
    l1->nent = n;
    l1->set_mask = n / CACHE_L1_WAYS - 1;
    l1->max_tok = max_token_len;
    l1->max_bytes = (size_t)n * max_token_len;
    l1->seed = seed;
    return l1;
}

void cache_l1_set_max_bytes(struct cache_l1 *l1, size_t max_bytes)
{
    l1->max_bytes = max_bytes;
}

void cache_l1_free(struct cache_l1 *l1)
{
    if (!l1)
        return;
    for (uint32_t k = 1; l1->chunk && k <= l1->pool_used; k++)
        free(pool_ent(l1, k)->tok);
    for (uint32_t c = 0; l1->chunk && c * L1_CHUNK < l1->pool_used; c++)
        free(l1->chunk[c]);
    EVP_MD_CTX_free(l1->md);
    EVP_MD_free(l1->sha256);
    free(l1->chunk);
    free(l1->slot);
    free(l1->hashes);
    free(l1);
}

uint64_t cache_l1_hash(const struct cache_l1 *l1, const char *tok, size_t len)
{
    return cache_hash(tok, len, l1->seed);
}

/* The entry of occupied slot `i`. */
static inline struct l1_entry *ent(const struct cache_l1 *l1, uint32_t i)
{
    return pool_ent(l1, l1->slot[i]);
}

/* A pool entry for a slot being filled: its index + 1, 0 without memory. Its tok is NULL. */
static uint32_t pool_take(struct cache_l1 *l1)
{
    if (l1->free_head) {
        uint32_t k = l1->free_head;
        l1->free_head = (uint32_t)pool_ent(l1, k)->expires;
        return k;
    }
    uint32_t k = l1->pool_used;
    if (k >= l1->nent)
        return 0; /* cannot happen: a live entry per occupied slot, nent slots */
    if (k % L1_CHUNK == 0 && l1->chunk[k / L1_CHUNK] == NULL &&
        (l1->chunk[k / L1_CHUNK] = calloc(L1_CHUNK, sizeof(struct l1_entry))) == NULL)
        return 0;
    l1->pool_used++;
    l1->st.pool = l1->pool_used;
    return k + 1;
}

/* Pool entry `k` (index + 1, its token copy released) goes back on the free list. */
static void pool_put(struct cache_l1 *l1, uint32_t k)
{
    pool_ent(l1, k)->expires = l1->free_head;
    l1->free_head = k;
}

static inline uint32_t set_base(const struct cache_l1 *l1, uint64_t h)
{
    /* High bits pick the set: the low bits of the fold product are the weakest. */
    return (uint32_t)((h >> 32) & l1->set_mask) * CACHE_L1_WAYS;
}

/* Gives a positive entry's token copy back to the allocator. */
static void release_tok(struct cache_l1 *l1, struct l1_entry *e)
{
    if (e->tok) {
        l1->bytes -= e->tok_cap;
        l1->st.bytes_freed += e->tok_cap;
        free(e->tok);
        e->tok = NULL;
    }
    e->tok_cap = 0;
    e->tok_len = 0;
}

static void drop(struct cache_l1 *l1, uint32_t i)
{
    release_tok(l1, ent(l1, i));
    pool_put(l1, l1->slot[i]);
    l1->slot[i] = 0;
    l1->hashes[i] = 0;
    l1->count--;
}

/* Positive entries only: a negative one has tok_len NEG_LEN, which no token length equals. */
static inline bool same_token(const struct l1_entry *e, const char *tok, size_t len)
{
    return e->tok_len == len && memcmp(e->tok, tok, len) == 0;
}

static void sha256_of(struct cache_l1 *l1, const char *tok, size_t len, uint8_t *out)
{
    unsigned int n = 0;
    if (EVP_DigestInit_ex2(l1->md, l1->sha256, NULL) != 1 ||
        EVP_DigestUpdate(l1->md, tok, len) != 1 || EVP_DigestFinal_ex(l1->md, out, &n) != 1)
        abort(); /* SHA-256 over memory cannot fail short of memory corruption */
}

/* Is entry `e` (whose hash matched) the token? Positive: its bytes; negative: its digest, computed
 * once per lookup into `d` (`*have` says whether it is there yet). */
static inline bool entry_is(struct cache_l1 *l1, const struct l1_entry *e, const char *tok,
                            size_t len, uint8_t *d, bool *have)
{
    if (same_token(e, tok, len))
        return true;
    if (e->tok_len != NEG_LEN)
        return false;
    if (!*have) {
        sha256_of(l1, tok, len, d);
        *have = true;
    }
    return memcmp(e->digest, d, CACHE_DIGEST_LEN) == 0;
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
    uint8_t d[CACHE_DIGEST_LEN];
    bool have = false;
    for (uint32_t w = 0; w < CACHE_L1_WAYS; w++) {
        if (l1->hashes[base + w] != h)
            continue;
        struct l1_entry *e = ent(l1, base + w);
        if (!entry_is(l1, e, tok, len, d, &have))
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

/* Makes room for `need` more bytes of token copies: drops expired entries (up to a bounded scan).
 * True when the bound then allows it. */
static bool room_for(struct cache_l1 *l1, size_t need, int64_t now)
{
    if (l1->bytes + need <= l1->max_bytes)
        return true;
    cache_l1_sweep(l1, now, 1024);
    return l1->bytes + need <= l1->max_bytes;
}

/* The way of the set to (re)use for the token: its own entry, else a free or expired way, else
 * the way that expires first. */
static uint32_t pick_way(struct cache_l1 *l1, uint32_t base, const char *tok, size_t len,
                         uint64_t h, const uint8_t *digest, int64_t now)
{
    uint32_t pick = UINT32_MAX, oldest = UINT32_MAX;
    int64_t oldest_exp = 0;
    for (uint32_t w = 0; w < CACHE_L1_WAYS; w++) {
        uint32_t i = base + w;
        if (l1->hashes[i] == 0) {
            if (pick == UINT32_MAX)
                pick = i; /* keep scanning: the same token may sit further on */
            continue;
        }
        const struct l1_entry *e = ent(l1, i);
        if (l1->hashes[i] == h &&
            (same_token(e, tok, len) ||
             (e->tok_len == NEG_LEN && memcmp(e->digest, digest, CACHE_DIGEST_LEN) == 0)))
            return i;
        if (pick == UINT32_MAX && e->expires <= now)
            pick = i;
        if (oldest == UINT32_MAX || e->expires < oldest_exp) {
            oldest = i;
            oldest_exp = e->expires;
        }
    }
    return pick == UINT32_MAX ? oldest : pick;
}

int cache_l1_insert(struct cache_l1 *l1, const char *tok, size_t len, uint64_t h,
                    const uint8_t digest[CACHE_DIGEST_LEN], const struct jwt_result *res,
                    int64_t expires, int64_t now)
{
    if (len > l1->max_tok)
        return -E2BIG;
    if (expires <= now)
        return -EINVAL;
    bool positive = res->reason == JWT_OK;
    uint32_t pick = pick_way(l1, set_base(l1, h), tok, len, h, digest, now);
    if (l1->hashes[pick] != 0)
        drop(l1, pick); /* replaced or evicted: its copy goes back at once */
    uint32_t k = pool_take(l1);
    if (k == 0)
        return -ENOMEM;
    struct l1_entry *e = pool_ent(l1, k);
    if (positive) {
        /* A copy of exactly `len` bytes: entries are dropped with their copy, so nothing is
         * kept for reuse and rounding up would only hold memory. */
        if (!room_for(l1, len, now)) {
            pool_put(l1, k);
            l1->st.refused_bytes++;
            return -ENOSPC;
        }
        char *nt = malloc(len ? len : 1);
        if (!nt) {
            pool_put(l1, k);
            return -ENOMEM;
        }
        memcpy(nt, tok, len);
        e->tok = nt;
        e->tok_cap = (uint32_t)len;
        e->tok_len = (uint32_t)len;
        l1->bytes += len;
    } else {
        e->tok_len = NEG_LEN; /* identified by `digest` alone */
    }
    l1->count++;
    e->expires = expires;
    memcpy(e->digest, digest, CACHE_DIGEST_LEN);
    e->res = *res;
    /* Bounded and NUL-terminated, so lookups copy only the used bytes. */
    size_t ul = strnlen(res->user, JWT_MAX_USER);
    e->res.user_len = res->user_len < ul ? res->user_len : ul;
    e->res.user[e->res.user_len] = '\0';
    e->jti_len = (uint32_t)strnlen(res->jti, JWT_MAX_JTI);
    e->res.jti[e->jti_len] = '\0';
    l1->slot[pick] = k;
    l1->hashes[pick] = h;
    return 0;
}

size_t cache_l1_sweep(struct cache_l1 *l1, int64_t now, uint32_t max_entries)
{
    size_t freed = l1->st.bytes_freed;
    if (max_entries > l1->nent)
        max_entries = l1->nent;
    for (uint32_t k = 0; k < max_entries; k++) {
        uint32_t i = l1->hand;
        l1->hand = (l1->hand + 1) & (l1->nent - 1);
        if (l1->hashes[i] != 0 && ent(l1, i)->expires <= now) {
            drop(l1, i);
            l1->st.swept++;
        }
    }
    return l1->st.bytes_freed - freed;
}

size_t cache_l1_bytes(const struct cache_l1 *l1)
{
    return l1->bytes;
}

const struct cache_l1_stats *cache_l1_stats(const struct cache_l1 *l1)
{
    return &l1->st;
}

size_t cache_l1_evict_jti(struct cache_l1 *l1, const char *jti, size_t len)
{
    size_t n = 0;
    if (len == 0)
        return 0; /* tokens without a jti are revoked by digest */
    for (uint32_t i = 0; i < l1->nent; i++) {
        if (l1->hashes[i] == 0)
            continue;
        const struct l1_entry *e = ent(l1, i);
        if (e->jti_len == len && memcmp(e->res.jti, jti, len) == 0) {
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
        if (l1->hashes[i] && memcmp(ent(l1, i)->digest, digest, CACHE_DIGEST_LEN) == 0) {
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
        if (l1->hashes[i] && (negative || ent(l1, i)->res.reason == JWT_OK)) {
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
