// SPDX-License-Identifier: MIT
// auth_check(): L1, then Redis L2 (HMAC-authenticated entries, revocation keys), then local verify;
// a subscribed second connection evicts revoked tokens from L1. Never fails open.
#include "auth/auth.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define KEY_TOK        "sipedge:v1:tok:"
#define KEY_REV        "sipedge:v1:rev:"
#define REVOKE_CHANNEL "sipedge:v1:revoke"
#define HEX_LEN        (2 * CACHE_DIGEST_LEN)
#define MAC_LEN        32
#define TOK_KEY_LEN    (sizeof(KEY_TOK) - 1 + AUTH_FP_HEX + 1 + HEX_LEN)

static const char no_fp[AUTH_FP_HEX + 1] = "0000000000000000";

/*
 * L2 key: "sipedge:v1:tok:<key set tag, 16 hex>:<token digest, 64 hex>".
 * L2 value (binary, big-endian integers), authenticated by HMAC-SHA-256(pods' key,
 * key set tag (16) || token digest (32) || bytes [0, 30 + ulen + jlen)):
 *   "SE1" | flags (1: signature_only) | cache expiry i64 | token exp i64 | scope bits u64 |
 *   ulen u8 | jlen u8 | user | jti | mac (32)
 */
#define L2_HDR       30
#define L2_MAX       (L2_HDR + JWT_MAX_USER + JWT_MAX_JTI + MAC_LEN)
#define L2_F_SIGONLY 1u

/* A check waiting on Redis. States: free (on the free list) -> stage 1 (MGET tok + digest
 * revocation key [+ the jti revocation key of the jti read from the unverified payload] in flight)
 * -> [stage 2 (EXISTS jti revocation key in flight), only when the verified jti is not the one
 * looked up] -> free. The slot stays allocated while a command refers to it, even when the caller
 * cancelled the check. */
struct auth_slot {
    struct auth_worker *aw;
    auth_done_fn cb; /* NULL once cancelled */
    void *arg;
    char *tok; /* copy, capacity cap */
    uint32_t len, cap;
    uint32_t next_free;
    uint8_t stage;
    bool used;
    bool from_verify;
    bool peek_revoked;              /* stage 1 found the revocation key of `peek_jti` */
    char peek_jti[JWT_MAX_JTI + 1]; /* "" when none was looked up */
    uint64_t h;
    bool fp_moved; /* the key set changed between the L2 lookup and the verify: do not store */
    uint8_t digest[CACHE_DIGEST_LEN];
    char fp[AUTH_FP_HEX]; /* key set tag the L2 lookup used */
    struct jwt_result res;
};

struct auth_worker {
    struct auth_config cfg;
    uint8_t key[64];
    struct cache_l1 *l1;
    struct budget *budget;    /* NULL: no per-source budget */
    struct budget *overall;   /* NULL: no budget for the worker (one bucket, all sources) */
    int64_t next_sweep;       /* epoch ms */
    int64_t last_trim;        /* epoch ms of the last malloc_trim() */
    uint64_t freed_untrimmed; /* bytes the sweeps freed since the last trim */
    struct cache_redis *cmd, *sub;
    EVP_MD *sha256;
    EVP_MD_CTX *md;
    EVP_MAC *mac;
    EVP_MAC_CTX *macctx;
    struct auth_slot *slots;
    uint32_t free_head; /* UINT32_MAX: none */
    bool subscribed, sub_inflight, ping_inflight, closing;
    int64_t next_ping;
    int64_t now_ms; /* of the current entry point, for callbacks */
    enum auth_layer last_layer;
    struct auth_counters c;
};

int64_t auth_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void log_event(struct auth_worker *aw, const char *event, const uint8_t *digest)
{
    char hex[17];
    cache_hex(digest, 8, hex);
    if (aw->cfg.log)
        aw->cfg.log(aw->cfg.log_ctx, event, hex);
    else
        fprintf(stderr, "level=warn module=auth event=%s token_sha256=%s\n", event, hex);
}

static void digest_of(struct auth_worker *aw, const char *tok, size_t len, uint8_t *out)
{
    unsigned int n = 0;
    if (EVP_DigestInit_ex2(aw->md, aw->sha256, NULL) != 1 ||
        EVP_DigestUpdate(aw->md, tok, len) != 1 || EVP_DigestFinal_ex(aw->md, out, &n) != 1)
        abort(); /* SHA-256 over memory cannot fail short of memory corruption */
}

void auth_token_digest_hex(const char *tok, size_t len, char hex[2 * CACHE_DIGEST_LEN + 1])
{
    uint8_t d[CACHE_DIGEST_LEN];
    unsigned int n = 0;
    if (EVP_Digest(tok, len, d, &n, EVP_sha256(), NULL) != 1)
        abort();
    cache_hex(d, CACHE_DIGEST_LEN, hex);
}

/* The tag of the verifier's current key set (AUTH_FP_HEX chars). */
static const char *key_fp(struct auth_worker *aw)
{
    return aw->cfg.key_fp ? aw->cfg.key_fp(aw->cfg.verify_ctx) : no_fp;
}

/* "sipedge:v1:tok:<fp>:<digest hex>" into `key` (TOK_KEY_LEN + 1 bytes); returns the length. */
static size_t tok_key(const char *fp, const uint8_t *digest, char *key)
{
    size_t o = sizeof(KEY_TOK) - 1;
    memcpy(key, KEY_TOK, o);
    memcpy(key + o, fp, AUTH_FP_HEX);
    o += AUTH_FP_HEX;
    key[o++] = ':';
    cache_hex(digest, CACHE_DIGEST_LEN, key + o);
    return TOK_KEY_LEN;
}

static void l2_mac(struct auth_worker *aw, const char *fp, const uint8_t *digest,
                   const uint8_t *body, size_t n, uint8_t *out)
{
    size_t ol = 0;
    if (EVP_MAC_init(aw->macctx, NULL, 0, NULL) != 1 ||
        EVP_MAC_update(aw->macctx, (const uint8_t *)fp, AUTH_FP_HEX) != 1 ||
        EVP_MAC_update(aw->macctx, digest, CACHE_DIGEST_LEN) != 1 ||
        EVP_MAC_update(aw->macctx, body, n) != 1 ||
        EVP_MAC_final(aw->macctx, out, &ol, MAC_LEN) != 1)
        abort();
}

static size_t l2_encode(struct auth_worker *aw, const char *fp, const uint8_t *digest,
                        const struct jwt_result *r, int64_t expires, uint8_t *buf)
{
    size_t ul = r->user_len <= JWT_MAX_USER ? r->user_len : JWT_MAX_USER;
    size_t jl = strnlen(r->jti, JWT_MAX_JTI);
    memcpy(buf, "SE1", 3);
    buf[3] = r->signature_only ? L2_F_SIGONLY : 0;
    put_be64(buf + 4, (uint64_t)expires);
    put_be64(buf + 12, (uint64_t)r->exp);
    put_be64(buf + 20, r->scope_bits);
    buf[28] = (uint8_t)ul;
    buf[29] = (uint8_t)jl;
    memcpy(buf + L2_HDR, r->user, ul);
    memcpy(buf + L2_HDR + ul, r->jti, jl);
    l2_mac(aw, fp, digest, buf, L2_HDR + ul + jl, buf + L2_HDR + ul + jl);
    return L2_HDR + ul + jl + MAC_LEN;
}

/* 0 and `out`/`expires` filled, or -EBADMSG (wrong shape or MAC: forged or corrupt). */
static int l2_decode(struct auth_worker *aw, const char *fp, const uint8_t *digest,
                     const uint8_t *v, size_t n, struct jwt_result *out, int64_t *expires)
{
    if (n < L2_HDR + MAC_LEN || memcmp(v, "SE1", 3) != 0)
        return -EBADMSG;
    size_t ul = v[28], jl = v[29];
    if (ul > JWT_MAX_USER || jl > JWT_MAX_JTI || n != L2_HDR + ul + jl + MAC_LEN)
        return -EBADMSG;
    uint8_t mac[MAC_LEN];
    l2_mac(aw, fp, digest, v, L2_HDR + ul + jl, mac);
    if (CRYPTO_memcmp(mac, v + L2_HDR + ul + jl, MAC_LEN) != 0)
        return -EBADMSG;
    memset(out, 0, sizeof(*out));
    out->reason = JWT_OK;
    out->signature_only = (v[3] & L2_F_SIGONLY) != 0;
    *expires = (int64_t)get_be64(v + 4);
    out->exp = (int64_t)get_be64(v + 12);
    out->scope_bits = get_be64(v + 20);
    memcpy(out->user, v + L2_HDR, ul);
    out->user[ul] = '\0';
    out->user_len = ul;
    memcpy(out->jti, v + L2_HDR + ul, jl);
    out->jti[jl] = '\0';
    return 0;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* How long a positive result may live in a cache, before the degraded cap. */
static int64_t positive_expiry(const struct auth_worker *aw, const struct jwt_result *r,
                               int64_t now_s)
{
    int64_t cap = now_s + (r->signature_only ? aw->cfg.signature_only_ttl_s : aw->cfg.ttl_s);
    /* A signature-only cucm token may carry no outer exp (0): then the short cap alone rules. */
    if (r->signature_only && r->exp <= 0)
        return cap;
    return min64(r->exp, cap);
}

static enum jwt_reason verify_local(struct auth_worker *aw, const char *tok, size_t len,
                                    int64_t now_ms, struct jwt_result *out)
{
    memset(out, 0, sizeof(*out));
    aw->c.verified++;
    enum jwt_reason r = aw->cfg.verify(aw->cfg.verify_ctx, tok, len, now_ms / 1000, out);
    out->reason = r < JWT_REASON_COUNT ? r : JWT_E_MALFORMED;
    return out->reason;
}

/* Cheap liveness check without touching the breaker. */
static bool l2_usable(const struct auth_worker *aw, int64_t now_ms)
{
    return aw->cmd && cache_redis_usable(aw->cmd, now_ms);
}

static void l2_store(struct auth_worker *aw, const char *fp, const uint8_t *digest,
                     const struct jwt_result *r, int64_t now_ms)
{
    int64_t now_s = now_ms / 1000, exp = positive_expiry(aw, r, now_s);
    if (exp <= now_s || !l2_usable(aw, now_ms))
        return;
    uint8_t val[L2_MAX];
    char key[TOK_KEY_LEN + 1], ttl[24];
    size_t kl = tok_key(fp, digest, key);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)(exp - now_s));
    size_t vl = l2_encode(aw, fp, digest, r, exp, val);
    const char *argv[] = {"SET", key, (const char *)val, "EX", ttl};
    size_t lens[] = {3, kl, vl, 2, strlen(ttl)};
    if (cache_redis_command(aw->cmd, 5, argv, lens, now_ms, NULL, NULL) == 0)
        aw->c.l2_store++;
}

/* Caches and counts the final result; `degraded`: revocation could not be checked. */
static enum auth_status conclude(struct auth_worker *aw, const char *tok, size_t len, uint64_t h,
                                 const uint8_t *digest, const struct jwt_result *res, bool degraded,
                                 const char *store_fp, int64_t now_ms)
{
    int64_t now_s = now_ms / 1000, exp;
    if (res->reason == JWT_OK) {
        exp = positive_expiry(aw, res, now_s);
        if (degraded || (aw->cmd && !aw->subscribed))
            exp = min64(exp, now_s + aw->cfg.degraded_ttl_s);
        if (store_fp != NULL && !degraded)
            l2_store(aw, store_fp, digest, res, now_ms);
        aw->c.ok++;
    } else {
        exp = now_s + aw->cfg.negative_ttl_s;
        aw->c.fail[res->reason]++;
        if (res->reason == JWT_E_REVOKED)
            aw->c.revoked++;
    }
    if (exp > now_s)
        cache_l1_insert(aw->l1, tok, len, h, digest, res, exp, now_s);
    aw->c.l1_bytes = cache_l1_bytes(aw->l1);
    return res->reason == JWT_OK ? AUTH_OK : AUTH_FAIL;
}

static void slot_release(struct auth_worker *aw, struct auth_slot *s)
{
    s->used = false;
    s->cb = NULL;
    s->arg = NULL;
    s->next_free = aw->free_head;
    aw->free_head = (uint32_t)(s - aw->slots);
}

/* Ends a pending check: caches, releases the slot, then calls back (the callback may start new
 * checks and reuse the slot). */
static void slot_finish(struct auth_slot *s, bool degraded, bool store)
{
    struct auth_worker *aw = s->aw;
    struct jwt_result res = s->res;
    const char *store_fp = store && !s->fp_moved ? s->fp : NULL;
    enum auth_status st =
        conclude(aw, s->tok, s->len, s->h, s->digest, &res, degraded, store_fp, aw->now_ms);
    auth_done_fn cb = s->cb;
    void *arg = s->arg;
    aw->last_layer = s->from_verify ? AUTH_LAYER_VERIFY : AUTH_LAYER_L2;
    slot_release(aw, s);
    if (cb)
        cb(arg, st, &res);
}

static void on_l2_reply(void *arg, const redisReply *rp, int err);

/* Ends a check Redis says is revoked (by digest or jti): nothing is cached from it. */
static void finish_revoked(struct auth_slot *s)
{
    s->aw->c.l2_revoked++;
    memset(&s->res, 0, sizeof(s->res));
    s->res.reason = JWT_E_REVOKED;
    slot_finish(s, false, false);
}

/* Ends a check whose jti revocation key was looked up: revoked, or the result stands. */
static void finish_jti(struct auth_slot *s, bool revoked)
{
    if (revoked)
        finish_revoked(s);
    else
        slot_finish(s, false, s->from_verify);
}

static int issue_jti_check(struct auth_slot *s)
{
    struct auth_worker *aw = s->aw;
    char key[sizeof(KEY_REV) + 4 + JWT_MAX_JTI];
    size_t jl = strnlen(s->res.jti, JWT_MAX_JTI);
    size_t kl = (size_t)snprintf(key, sizeof(key), KEY_REV "jti:%.*s", (int)jl, s->res.jti);
    const char *argv[] = {"EXISTS", key};
    size_t lens[] = {6, kl};
    s->stage = 2;
    aw->c.l2_jti_lookups++;
    return cache_redis_command(aw->cmd, 2, argv, lens, aw->now_ms, on_l2_reply, s);
}

/* After stage 1 decided the result (from L2 or a verify): check the jti revocation key, or end. */
static void after_result(struct auth_slot *s, bool degraded)
{
    if (s->res.reason == JWT_OK && s->res.jti[0] && !degraded && s->peek_jti[0] &&
        strcmp(s->res.jti, s->peek_jti) == 0) {
        /* the jti looked up in stage 1 is the verified one: its answer stands */
        finish_jti(s, s->peek_revoked);
        return;
    }
    if (s->res.reason == JWT_OK && s->res.jti[0] && !degraded) {
        if (issue_jti_check(s) == 0)
            return;
        s->aw->c.l2_error++;
        degraded = true;
    }
    slot_finish(s, degraded, s->from_verify);
}

static void on_l2_reply(void *arg, const redisReply *rp, int err)
{
    struct auth_slot *s = arg;
    struct auth_worker *aw = s->aw;
    if (err == -ECANCELED || aw->closing) {
        /* auth_worker_free(): no decision, say so once */
        auth_done_fn cb = s->cb;
        void *cbarg = s->arg;
        slot_release(aw, s);
        if (cb) {
            aw->c.cancelled++;
            aw->last_layer = AUTH_LAYER_NONE;
            cb(cbarg, AUTH_CANCELLED, NULL);
        }
        return;
    }
    if (!s->cb) { /* cancelled by the caller: nobody waits, cache nothing */
        slot_release(aw, s);
        return;
    }
    int64_t now_s = aw->now_ms / 1000;
    if (s->stage == 2) {
        if (err || !rp || rp->type != REDIS_REPLY_INTEGER) {
            aw->c.l2_error++;
            slot_finish(s, true, false);
        } else {
            finish_jti(s, rp->integer != 0);
        }
        return;
    }
    if (err || !rp || rp->type != REDIS_REPLY_ARRAY || rp->elements != 2u + !!s->peek_jti[0]) {
        aw->c.l2_error++;
        s->from_verify = true;
        verify_local(aw, s->tok, s->len, aw->now_ms, &s->res);
        slot_finish(s, true, false);
        return;
    }
    if (rp->element[1]->type != REDIS_REPLY_NIL) {
        finish_revoked(s);
        return;
    }
    s->peek_revoked = s->peek_jti[0] && rp->element[2]->type != REDIS_REPLY_NIL;
    const redisReply *v = rp->element[0];
    int64_t expires = 0;
    if (v->type == REDIS_REPLY_STRING) {
        if (l2_decode(aw, s->fp, s->digest, (const uint8_t *)v->str, v->len, &s->res, &expires) !=
            0) {
            aw->c.l2_bad_hmac++;
            log_event(aw, "l2_bad_hmac", s->digest);
        } else if (expires > now_s && (s->res.exp > now_s || s->res.signature_only)) {
            aw->c.l2_hit++;
            s->from_verify = false;
            after_result(s, false);
            return;
        } else {
            aw->c.l2_miss++;
        }
    } else {
        aw->c.l2_miss++;
    }
    s->from_verify = true;
    verify_local(aw, s->tok, s->len, aw->now_ms, &s->res);
    /* A reload between the lookup and the verify: the result belongs to another key set. */
    s->fp_moved = memcmp(key_fp(aw), s->fp, AUTH_FP_HEX) != 0;
    after_result(s, false);
}

enum auth_status auth_check(struct auth_worker *aw, const char *tok, size_t len, int64_t now_ms,
                            auth_done_fn cb, void *arg, struct jwt_result *out)
{
    return auth_check_from(aw, tok, len, NULL, now_ms, cb, arg, out);
}

enum auth_status auth_check_from(struct auth_worker *aw, const char *tok, size_t len,
                                 const uint8_t *src, int64_t now_ms, auth_done_fn cb, void *arg,
                                 struct jwt_result *out)
{
    aw->now_ms = now_ms;
    aw->c.checks++;
    int64_t now_s = now_ms / 1000;
    if (len > aw->cfg.max_token_len) {
        /* not cacheable: the verifier decides (it rejects oversized tokens) */
        aw->last_layer = AUTH_LAYER_VERIFY;
        verify_local(aw, tok, len, now_ms, out);
        if (out->reason == JWT_OK) {
            aw->c.ok++;
            return AUTH_OK;
        }
        aw->c.fail[out->reason]++;
        return AUTH_FAIL;
    }
    uint64_t h = cache_l1_hash(aw->l1, tok, len);
    aw->last_layer = AUTH_LAYER_L1;
    switch (cache_l1_lookup(aw->l1, tok, len, h, now_s, out, NULL)) {
    case CACHE_L1_POSITIVE:
        aw->c.l1_hit++;
        aw->c.ok++;
        return AUTH_OK;
    case CACHE_L1_NEGATIVE:
        aw->c.l1_negative_hit++;
        aw->c.fail[out->reason]++;
        if (out->reason == JWT_E_REVOKED)
            aw->c.revoked++;
        return AUTH_FAIL;
    default:
        break;
    }
    aw->c.l1_miss++;
    if (src && aw->budget && !budget_take(aw->budget, src, now_ms)) {
        /* over the source's budget: no L2 lookup, no verify, nothing cached */
        aw->c.throttled++;
        aw->last_layer = AUTH_LAYER_NONE;
        memset(out, 0, sizeof(*out));
        return AUTH_THROTTLED;
    }
    static const uint8_t everyone[BUDGET_ADDR_LEN];
    if (aw->overall && !budget_take(aw->overall, everyone, now_ms)) {
        /* over the worker's budget: the verifications it can afford go to warm-up, not floods */
        aw->c.overloaded++;
        aw->last_layer = AUTH_LAYER_NONE;
        memset(out, 0, sizeof(*out));
        return AUTH_OVERLOADED;
    }
    uint8_t digest[CACHE_DIGEST_LEN];
    digest_of(aw, tok, len, digest);
    bool degraded = false;
    if (aw->cmd) {
        if (cb && aw->free_head != UINT32_MAX && l2_usable(aw, now_ms)) {
            struct auth_slot *s = &aw->slots[aw->free_head];
            if (s->cap < len) {
                char *nt = realloc(s->tok, len);
                if (!nt)
                    goto local;
                s->tok = nt;
                s->cap = (uint32_t)len;
            }
            memcpy(s->tok, tok, len);
            s->len = (uint32_t)len;
            s->h = h;
            memcpy(s->digest, digest, CACHE_DIGEST_LEN);
            memcpy(s->fp, key_fp(aw), AUTH_FP_HEX);
            s->fp_moved = false;
            char ktok[TOK_KEY_LEN + 1], krev[sizeof(KEY_REV) + 4 + HEX_LEN];
            char kjti[sizeof(KEY_REV) + 4 + JWT_MAX_JTI];
            size_t ktl = tok_key(s->fp, digest, ktok);
            memcpy(krev, KEY_REV "dig:", sizeof(KEY_REV) + 3);
            cache_hex(digest, CACHE_DIGEST_LEN, krev + sizeof(KEY_REV) + 3);
            /* The jti's revocation key too, from the unverified payload: one round trip instead
             * of two; the answer counts only if the verified jti is the same (after_result). */
            size_t jl = jwt_peek_jti(tok, len, s->peek_jti);
            memcpy(kjti, KEY_REV "jti:", sizeof(KEY_REV) + 3);
            memcpy(kjti + sizeof(KEY_REV) + 3, s->peek_jti, jl);
            const char *argv[] = {"MGET", ktok, krev, kjti};
            size_t lens[] = {4, ktl, strlen(krev), sizeof(KEY_REV) + 3 + jl};
            s->stage = 1;
            s->from_verify = false;
            s->peek_revoked = false;
            if (cache_redis_command(aw->cmd, jl ? 4 : 3, argv, lens, now_ms, on_l2_reply, s) == 0) {
                aw->free_head = s->next_free;
                s->used = true;
                /* No callback during the flush: if its write finds Redis gone, the lookup fails
                 * at once (on_l2_reply with no callback releases the slot) and this check is
                 * decided here instead; the caller never hears of it twice, nor before it has
                 * kept what it needs. Nothing can take the slot meanwhile: a connection that
                 * failed refuses new commands. */
                s->cb = NULL;
                s->arg = NULL;
                cache_redis_fd_flush(aw->cmd, now_ms);
                if (s->used) {
                    s->cb = cb;
                    s->arg = arg;
                    aw->last_layer = AUTH_LAYER_NONE;
                    return AUTH_PENDING;
                }
                aw->c.l2_error++;
                degraded = true;
                goto verify;
            }
        }
    local:
        aw->c.l2_unusable++;
        degraded = true;
    }
verify:
    aw->last_layer = AUTH_LAYER_VERIFY;
    verify_local(aw, tok, len, now_ms, out);
    return conclude(aw, tok, len, h, digest, out, degraded, NULL, now_ms);
}

size_t auth_cancel(struct auth_worker *aw, void *arg)
{
    size_t n = 0;
    for (uint32_t i = 0; i < aw->cfg.max_pending; i++) {
        if (aw->slots[i].used && aw->slots[i].cb && aw->slots[i].arg == arg) {
            aw->slots[i].cb = NULL; /* the slot is released when its reply or timeout comes */
            n++;
        }
    }
    return n;
}

/* ---- revocation subscription ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool parse_digest(const char *hex, size_t len, uint8_t *out)
{
    if (len != HEX_LEN)
        return false;
    for (size_t i = 0; i < CACHE_DIGEST_LEN; i++) {
        int a = hexval(hex[2 * i]), b = hexval(hex[2 * i + 1]);
        if (a < 0 || b < 0)
            return false;
        out[i] = (uint8_t)(a << 4 | b);
    }
    return true;
}

static size_t evict(struct auth_worker *aw, enum auth_revoke_kind kind, const char *id, size_t len)
{
    uint8_t d[CACHE_DIGEST_LEN];
    size_t n = 0;
    if (kind == AUTH_REVOKE_JTI)
        n = cache_l1_evict_jti(aw->l1, id, len);
    else if (parse_digest(id, len, d))
        n = cache_l1_evict_digest(aw->l1, d);
    aw->c.l1_evicted += n;
    return n;
}

static void on_revoke_msg(void *arg, const redisReply *rp)
{
    struct auth_worker *aw = arg;
    const redisReply *m = rp->element[rp->elements - 1];
    if (m->type != REDIS_REPLY_STRING || m->len < 4)
        return;
    aw->c.revocation_events++;
    if (memcmp(m->str, "jti:", 4) == 0)
        evict(aw, AUTH_REVOKE_JTI, m->str + 4, m->len - 4);
    else if (memcmp(m->str, "dig:", 4) == 0)
        evict(aw, AUTH_REVOKE_DIGEST, m->str + 4, m->len - 4);
}

static void on_subscribed(void *arg, const redisReply *rp, int err)
{
    struct auth_worker *aw = arg;
    aw->sub_inflight = false;
    if (err || aw->closing || !rp || rp->type != REDIS_REPLY_ARRAY || rp->elements < 3)
        return;
    /* Revocations published while we were not listening are lost: forget what we trusted. */
    aw->subscribed = true;
    aw->c.resubscribes++;
    cache_l1_clear(aw->l1, false);
    aw->next_ping = aw->now_ms + aw->cfg.ping_interval_ms;
}

static void on_pong(void *arg, const redisReply *rp, int err)
{
    struct auth_worker *aw = arg;
    aw->ping_inflight = false;
}

static void sub_maintain(struct auth_worker *aw, int64_t now_ms)
{
    if (!aw->sub || aw->closing)
        return;
    if (cache_redis_conn_state(aw->sub) != CACHE_REDIS_UP) {
        if (aw->subscribed) {
            aw->subscribed = false;
            cache_l1_clear(aw->l1, false);
        }
        aw->sub_inflight = aw->ping_inflight = false;
        return;
    }
    if (!aw->subscribed && !aw->sub_inflight) {
        const char *argv[] = {"SUBSCRIBE", REVOKE_CHANNEL};
        size_t lens[] = {9, sizeof(REVOKE_CHANNEL) - 1};
        if (cache_redis_command(aw->sub, 2, argv, lens, now_ms, on_subscribed, aw) == 0) {
            aw->sub_inflight = true;
            cache_redis_fd_flush(aw->sub, now_ms);
        }
    } else if (aw->subscribed && !aw->ping_inflight && now_ms >= aw->next_ping) {
        const char *argv[] = {"PING"};
        size_t lens[] = {4};
        aw->next_ping = now_ms + aw->cfg.ping_interval_ms;
        if (cache_redis_command(aw->sub, 1, argv, lens, now_ms, on_pong, aw) == 0) {
            aw->ping_inflight = true;
            cache_redis_fd_flush(aw->sub, now_ms);
        }
    }
}

/* ---- lifecycle and loop glue ---- */

struct auth_worker *auth_worker_new(const struct auth_config *cfg, int64_t now_ms)
{
    if (!cfg->verify)
        return NULL;
    if (cfg->redis_host && (!cfg->hmac_key || cfg->hmac_key_len < 16 || cfg->hmac_key_len > 64))
        return NULL;
    struct auth_worker *aw = calloc(1, sizeof(*aw));
    if (!aw)
        return NULL;
    aw->cfg = *cfg;
    if (aw->cfg.key_fp == NULL && aw->cfg.verify == auth_jwt_verify)
        aw->cfg.key_fp = auth_jwt_verifier_fp;
    struct auth_config *c = &aw->cfg;
    if (!c->l1_capacity)
        c->l1_capacity = 4096;
    if (!c->max_token_len)
        c->max_token_len = 8192;
    if (!c->ttl_s)
        c->ttl_s = 300;
    if (!c->negative_ttl_s)
        c->negative_ttl_s = 5;
    if (!c->signature_only_ttl_s)
        c->signature_only_ttl_s = 30;
    if (!c->degraded_ttl_s)
        c->degraded_ttl_s = 5;
    if (!c->max_pending)
        c->max_pending = 1024;
    if (!c->ping_interval_ms)
        c->ping_interval_ms = 1000;
    if (cfg->hmac_key) {
        memcpy(aw->key, cfg->hmac_key, cfg->hmac_key_len);
        c->hmac_key = aw->key;
    }
    aw->now_ms = now_ms;
    uint64_t seed = cache_random_seed();
    aw->l1 = cache_l1_new(c->l1_capacity, c->max_token_len, seed);
    if (aw->l1 && c->l1_max_bytes)
        cache_l1_set_max_bytes(aw->l1, (size_t)c->l1_max_bytes);
    if (c->source_rate) {
        aw->budget = budget_new(c->source_rate, c->source_burst,
                                c->source_slots ? c->source_slots : 4096, seed ^ 0x9e3779b9u);
        if (!aw->budget)
            goto fail;
    }
    if (c->worker_rate) {
        aw->overall = budget_new(c->worker_rate, c->worker_burst, BUDGET_WAYS, seed ^ 0x85ebca6bu);
        if (!aw->overall)
            goto fail;
    }
    aw->slots = calloc(c->max_pending, sizeof(*aw->slots));
    aw->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    aw->md = EVP_MD_CTX_new();
    aw->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    aw->macctx = aw->mac ? EVP_MAC_CTX_new(aw->mac) : NULL;
    if (!aw->l1 || !aw->slots || !aw->sha256 || !aw->md || !aw->macctx)
        goto fail;
    if (c->redis_host) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_end()};
        if (EVP_MAC_init(aw->macctx, aw->key, c->hmac_key_len, params) != 1)
            goto fail;
    }
    aw->free_head = UINT32_MAX;
    for (uint32_t i = c->max_pending; i-- > 0;) {
        aw->slots[i].aw = aw;
        aw->slots[i].next_free = aw->free_head;
        aw->free_head = i;
    }
    if (c->redis_host) {
        aw->cmd = cache_redis_new(&c->redis, seed ^ 0x5bd1e995u);
        aw->sub = cache_redis_new(&c->redis, seed ^ 0x27d4eb2fu);
        if (!aw->cmd || !aw->sub)
            goto fail;
        cache_redis_set_push(aw->sub, on_revoke_msg, aw);
        /* a failed first connect is retried by tick() with backoff */
        cache_redis_fd_connect(aw->cmd, c->redis_host, c->redis_port, now_ms);
        cache_redis_fd_connect(aw->sub, c->redis_host, c->redis_port, now_ms);
    }
    return aw;
fail:
    auth_worker_free(aw);
    return NULL;
}

void auth_worker_free(struct auth_worker *aw)
{
    if (!aw)
        return;
    aw->closing = true;
    cache_redis_free(aw->cmd); /* pending checks: AUTH_CANCELLED via on_l2_reply */
    cache_redis_free(aw->sub);
    if (aw->slots)
        for (uint32_t i = 0; i < aw->cfg.max_pending; i++)
            free(aw->slots[i].tok);
    free(aw->slots);
    cache_l1_free(aw->l1);
    budget_free(aw->budget);
    budget_free(aw->overall);
    EVP_MAC_CTX_free(aw->macctx);
    EVP_MAC_free(aw->mac);
    EVP_MD_CTX_free(aw->md);
    EVP_MD_free(aw->sha256);
    OPENSSL_cleanse(aw->key, sizeof(aw->key));
    free(aw);
}

int auth_worker_pollfds(const struct auth_worker *aw, struct pollfd fds[2])
{
    struct cache_redis *rs[2] = {aw->cmd, aw->sub};
    for (int i = 0; i < 2; i++) {
        fds[i].fd = rs[i] ? cache_redis_fd(rs[i]) : -1;
        fds[i].events = rs[i] ? cache_redis_fd_events(rs[i]) : 0;
        fds[i].revents = 0;
        if (!fds[i].events)
            fds[i].fd = -1;
    }
    return 2;
}

void auth_worker_on_poll(struct auth_worker *aw, const struct pollfd fds[2], int64_t now_ms)
{
    aw->now_ms = now_ms;
    struct cache_redis *rs[2] = {aw->cmd, aw->sub};
    for (int i = 0; i < 2; i++)
        if (rs[i] && fds[i].fd >= 0 && fds[i].fd == cache_redis_fd(rs[i]) && fds[i].revents)
            cache_redis_fd_io(rs[i], fds[i].revents, now_ms);
    sub_maintain(aw, now_ms);
}

/* The periodic L1 sweep and, once it freed enough, a malloc_trim(): expired token copies of
 * tokens never seen again go back to the system. Returns the next sweep time or INT64_MAX. */
static int64_t sweep_tick(struct auth_worker *aw, int64_t now_ms)
{
    if (now_ms >= aw->next_sweep) {
        uint64_t before = cache_l1_stats(aw->l1)->swept;
        aw->freed_untrimmed += cache_l1_sweep(aw->l1, now_ms / 1000, AUTH_SWEEP_N);
        aw->c.l1_swept += cache_l1_stats(aw->l1)->swept - before;
        aw->c.l1_bytes = cache_l1_bytes(aw->l1);
        aw->next_sweep = now_ms + AUTH_SWEEP_MS;
    }
    if (aw->freed_untrimmed >= AUTH_TRIM_BYTES && now_ms - aw->last_trim >= 1000) {
        malloc_trim(0); /* freed chunks mid-heap are not returned otherwise */
        aw->c.trims++;
        aw->last_trim = now_ms;
        aw->freed_untrimmed = 0;
    }
    if (cache_l1_count(aw->l1) == 0 && aw->freed_untrimmed < AUTH_TRIM_BYTES)
        return INT64_MAX;
    return aw->freed_untrimmed >= AUTH_TRIM_BYTES ? min64(aw->next_sweep, aw->last_trim + 1000)
                                                  : aw->next_sweep;
}

int64_t auth_worker_tick(struct auth_worker *aw, int64_t now_ms)
{
    aw->now_ms = now_ms;
    int64_t sweep = sweep_tick(aw, now_ms);
    if (!aw->cmd)
        return sweep;
    int64_t next = min64(sweep, cache_redis_fd_tick(aw->cmd, now_ms));
    next = min64(next, cache_redis_fd_tick(aw->sub, now_ms));
    sub_maintain(aw, now_ms);
    if (aw->subscribed && !aw->ping_inflight)
        next = min64(next, aw->next_ping);
    return next;
}

enum auth_layer auth_last_layer(const struct auth_worker *aw)
{
    return aw->last_layer;
}

const struct auth_counters *auth_worker_counters(const struct auth_worker *aw)
{
    return &aw->c;
}

size_t auth_worker_l1_entries(const struct auth_worker *aw)
{
    return cache_l1_count(aw->l1);
}

bool auth_worker_subscribed(const struct auth_worker *aw)
{
    return aw->subscribed;
}

struct cache_redis *auth_worker_redis(const struct auth_worker *aw, bool subscriber)
{
    return subscriber ? aw->sub : aw->cmd;
}

void auth_worker_flush(struct auth_worker *aw)
{
    cache_l1_clear(aw->l1, true);
}

/* Moves the verifier to the store's current set (generation `gen`) and computes its tag. */
static void verifier_sync(struct auth_jwt_verifier *v, uint64_t gen)
{
    struct keys_set *ks = keys_acquire(v->store);
    keys_release(v->held);
    v->held = ks;
    v->gen = gen;
    const uint8_t *fp = keys_set_fingerprint(ks);
    if (fp != NULL)
        cache_hex(fp, AUTH_FP_HEX / 2, v->fp_hex);
    else
        memcpy(v->fp_hex, no_fp, sizeof(no_fp));
}

enum jwt_reason auth_jwt_verify(void *ctx, const char *tok, size_t len, int64_t now,
                                struct jwt_result *out)
{
    struct auth_jwt_verifier *v = ctx;
    uint64_t gen = keys_store_generation(v->store);
    if (!v->held || gen != v->gen)
        verifier_sync(v, gen);
    if (!v->held)
        return out->reason = JWT_E_UNKNOWN_KID;
    return jwt_verify(v->held, v->pol, tok, len, now, out);
}

const char *auth_jwt_verifier_fp(void *ctx)
{
    struct auth_jwt_verifier *v = ctx;
    uint64_t gen = keys_store_generation(v->store);
    if (!v->held || gen != v->gen)
        verifier_sync(v, gen);
    return v->fp_hex;
}

void auth_jwt_verifier_deinit(struct auth_jwt_verifier *v)
{
    keys_release(v->held);
    v->held = NULL;
}

/* ---- revocation ---- */

/* Builds "<kind>:<id>" into `out`; returns its length or 0 when `id` is not acceptable. */
static size_t revoke_name(enum auth_revoke_kind kind, const char *id, size_t len, char *out)
{
    uint8_t d[CACHE_DIGEST_LEN];
    if (kind == AUTH_REVOKE_JTI) {
        if (len == 0 || len > JWT_MAX_JTI)
            return 0;
        memcpy(out, "jti:", 4);
    } else if (kind == AUTH_REVOKE_DIGEST) {
        if (!parse_digest(id, len, d))
            return 0;
        memcpy(out, "dig:", 4);
    } else {
        return 0;
    }
    memcpy(out + 4, id, len);
    return 4 + len;
}

int auth_revoke(struct auth_worker *aw, enum auth_revoke_kind kind, const char *id, size_t len,
                uint32_t ttl_s, int64_t now_ms)
{
    char name[4 + JWT_MAX_JTI + HEX_LEN], key[sizeof(KEY_REV) + sizeof(name)], ttl[16];
    size_t nl = revoke_name(kind, id, len, name);
    if (!nl || !ttl_s)
        return -EINVAL;
    aw->now_ms = now_ms;
    evict(aw, kind, id, len);
    if (!l2_usable(aw, now_ms))
        return -EAGAIN;
    memcpy(key, KEY_REV, sizeof(KEY_REV) - 1);
    memcpy(key + sizeof(KEY_REV) - 1, name, nl);
    snprintf(ttl, sizeof(ttl), "%u", ttl_s);
    const char *set[] = {"SET", key, "1", "EX", ttl};
    size_t setl[] = {3, sizeof(KEY_REV) - 1 + nl, 1, 2, strlen(ttl)};
    const char *pub[] = {"PUBLISH", REVOKE_CHANNEL, name};
    size_t publ[] = {7, sizeof(REVOKE_CHANNEL) - 1, nl};
    int rc = cache_redis_command(aw->cmd, 5, set, setl, now_ms, NULL, NULL);
    if (rc == 0)
        rc = cache_redis_command(aw->cmd, 3, pub, publ, now_ms, NULL, NULL);
    cache_redis_fd_flush(aw->cmd, now_ms);
    return rc;
}

int auth_revoke_blocking(const char *host, uint16_t port, enum auth_revoke_kind kind,
                         const char *id, size_t len, uint32_t ttl_s, uint32_t timeout_ms)
{
    char name[4 + JWT_MAX_JTI + HEX_LEN], key[sizeof(KEY_REV) + sizeof(name)], ttl[16];
    size_t nl = revoke_name(kind, id, len, name);
    if (!nl || !ttl_s)
        return -EINVAL;
    memcpy(key, KEY_REV, sizeof(KEY_REV) - 1);
    memcpy(key + sizeof(KEY_REV) - 1, name, nl);
    snprintf(ttl, sizeof(ttl), "%u", ttl_s);
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *rc = redisConnectWithTimeout(host, port, tv);
    if (!rc || rc->err) {
        int e = rc && rc->err == REDIS_ERR_IO && errno == EINPROGRESS ? -ETIMEDOUT : -ECONNREFUSED;
        redisFree(rc);
        return e;
    }
    redisSetTimeout(rc, tv);
    const char *set[] = {"SET", key, "1", "EX", ttl};
    size_t setl[] = {3, sizeof(KEY_REV) - 1 + nl, 1, 2, strlen(ttl)};
    const char *pub[] = {"PUBLISH", REVOKE_CHANNEL, name};
    size_t publ[] = {7, sizeof(REVOKE_CHANNEL) - 1, nl};
    int ret = -EIO;
    redisReply *r1 = redisCommandArgv(rc, 5, set, setl);
    if (r1 && r1->type == REDIS_REPLY_STATUS) {
        redisReply *r2 = redisCommandArgv(rc, 3, pub, publ);
        if (r2 && r2->type == REDIS_REPLY_INTEGER)
            ret = r2->integer > INT32_MAX ? INT32_MAX : (int)r2->integer;
        if (r2)
            freeReplyObject(r2);
    }
    if (r1)
        freeReplyObject(r1);
    redisFree(rc);
    return ret;
}
