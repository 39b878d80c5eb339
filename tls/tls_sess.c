// SPDX-License-Identifier: MIT
// tls: the session cache of a server context (TLS 1.2 clients that resume by session id), kept
// here instead of in OpenSSL: OpenSSL's cache belongs to one SSL_CTX, and a context with lanes
// (tls_ctx.c) has an SSL_CTX per worker, while a client's next connection may land on any worker.
// Bounded: when full, the oldest entry goes; an entry past its timeout misses and goes. TLS 1.3
// sessions are not kept: they resume by ticket only (tls_ticket.c).
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "tls/tls_priv.h"

struct sess_ent {
    SSL_SESSION *s; /* NULL: a free slot */
    uint32_t next;  /* the next entry of its bucket, index + 1; 0: none */
    uint8_t id_len;
    uint8_t id[SSL_MAX_SSL_SESSION_ID_LENGTH];
};

struct tls__sess {
    pthread_mutex_t lock; /* handshakes of every worker share it: one lock per full handshake */
    uint32_t cap;         /* entries */
    uint32_t mask;        /* buckets - 1 (a power of two, at least cap) */
    uint64_t seq;         /* insertions so far: the next goes to slot seq % cap (the oldest) */
    uint64_t seed;        /* the bucket hash's key: ids a client sends cannot aim at a bucket */
    uint32_t count;
    uint32_t *buckets; /* first entry, index + 1; 0: empty */
    struct sess_ent *ents;
};

static uint32_t bucket_of(const struct tls__sess *t, const uint8_t *id, size_t len)
{
    uint64_t h = t->seed ^ (len * 0x9e3779b97f4a7c15u);
    for (size_t i = 0; i < len; i++) {
        h ^= id[i];
        h *= 0x100000001b3u;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9u;
    h ^= h >> 32;
    return (uint32_t)h & t->mask;
}

/* The entry holding `id`, index + 1, and the link that points at it; 0 when absent. */
static uint32_t find(struct tls__sess *t, const uint8_t *id, size_t len, uint32_t **link)
{
    uint32_t *l = &t->buckets[bucket_of(t, id, len)];
    while (*l) {
        struct sess_ent *e = &t->ents[*l - 1];
        if (e->id_len == len && memcmp(e->id, id, len) == 0) {
            if (link)
                *link = l;
            return *l;
        }
        l = &e->next;
    }
    return 0;
}

/* Unlink entry `i` (index + 1) found through `link` and drop our reference. */
static void drop(struct tls__sess *t, uint32_t *link, uint32_t i)
{
    struct sess_ent *e = &t->ents[i - 1];
    *link = e->next;
    SSL_SESSION_free(e->s);
    memset(e, 0, sizeof(*e));
    t->count--;
}

/* Ids are unique in the table (on_new replaces an entry with the same id): the lookup by the
 * slot's own id finds the slot. */
static void drop_slot(struct tls__sess *t, uint32_t slot)
{
    struct sess_ent *e = &t->ents[slot];
    uint32_t *link;
    if (e->s != NULL && find(t, e->id, e->id_len, &link) == slot + 1)
        drop(t, link, slot + 1);
}

static bool expired(const SSL_SESSION *s, time_t now)
{
    return (time_t)SSL_SESSION_get_time(s) + (time_t)SSL_SESSION_get_timeout(s) <= now;
}

static struct tls__sess *store_of(SSL_CTX *sc)
{
    struct tls_ctx *ctx = sc ? SSL_CTX_get_app_data(sc) : NULL;
    return ctx ? ctx->sessions : NULL;
}

/* OpenSSL hands us a reference to every new session (SSL_CTX_sess_set_new_cb): 1 keeps it. */
static int on_new(SSL *ssl, SSL_SESSION *sess)
{
    struct tls__sess *t = store_of(SSL_get_SSL_CTX(ssl));
    unsigned len = 0;
    const unsigned char *id = SSL_SESSION_get_id(sess, &len);
    if (t == NULL || len == 0 || len > SSL_MAX_SSL_SESSION_ID_LENGTH ||
        SSL_SESSION_get_protocol_version(sess) >= TLS1_3_VERSION)
        return 0;
    pthread_mutex_lock(&t->lock);
    uint32_t *link;
    uint32_t i = find(t, id, len, &link);
    if (i)
        drop(t, link, i);
    uint32_t slot = (uint32_t)(t->seq++ % t->cap);
    drop_slot(t, slot); /* the oldest entry, unless it went already */
    struct sess_ent *e = &t->ents[slot];
    e->s = sess;
    e->id_len = (uint8_t)len;
    memcpy(e->id, id, len);
    uint32_t b = bucket_of(t, id, len);
    e->next = t->buckets[b];
    t->buckets[b] = slot + 1;
    t->count++;
    pthread_mutex_unlock(&t->lock);
    return 1;
}

/* A ClientHello's session id (SSL_CTX_sess_set_get_cb): the session with a reference for the
 * caller (*copy = 0: OpenSSL takes ours), or NULL. The reference is taken under the lock: once
 * it is released another worker may evict the entry. */
static SSL_SESSION *on_get(SSL *ssl, const unsigned char *id, int len, int *copy)
{
    struct tls__sess *t = store_of(SSL_get_SSL_CTX(ssl));
    *copy = 0;
    if (t == NULL || len <= 0 || len > SSL_MAX_SSL_SESSION_ID_LENGTH)
        return NULL;
    SSL_SESSION *s = NULL;
    pthread_mutex_lock(&t->lock);
    uint32_t *link;
    uint32_t i = find(t, id, (size_t)len, &link);
    if (i && expired(t->ents[i - 1].s, time(NULL)))
        drop(t, link, i);
    else if (i && SSL_SESSION_up_ref(t->ents[i - 1].s))
        s = t->ents[i - 1].s;
    pthread_mutex_unlock(&t->lock);
    return s;
}

/* OpenSSL gives up on a session (a fatal alert during a handshake that used it, a timeout): the
 * entry with its id goes, as from OpenSSL's own cache. */
static void on_remove(SSL_CTX *sc, SSL_SESSION *sess)
{
    struct tls__sess *t = store_of(sc);
    unsigned len = 0;
    const unsigned char *id = SSL_SESSION_get_id(sess, &len);
    if (t == NULL || len == 0 || len > SSL_MAX_SSL_SESSION_ID_LENGTH)
        return;
    pthread_mutex_lock(&t->lock);
    uint32_t *link;
    uint32_t i = find(t, id, len, &link);
    if (i)
        drop(t, link, i);
    pthread_mutex_unlock(&t->lock);
}

int tls__sess_init(struct tls_ctx *ctx, uint32_t cap)
{
    struct tls__sess *t = calloc(1, sizeof(*t));
    if (t == NULL || cap == 0 || cap > (1u << 24))
        goto fail;
    uint32_t nb = 1;
    while (nb < cap)
        nb <<= 1;
    t->cap = cap;
    t->mask = nb - 1;
    t->buckets = calloc(nb, sizeof(*t->buckets));
    t->ents = calloc(cap, sizeof(*t->ents));
    if (t->buckets == NULL || t->ents == NULL ||
        RAND_bytes((unsigned char *)&t->seed, sizeof(t->seed)) != 1)
        goto fail;
    pthread_mutex_init(&t->lock, NULL);
    ctx->sessions = t;
    return 0;
fail:
    if (t) {
        free(t->buckets);
        free(t->ents);
        free(t);
    }
    return cap == 0 ? -EINVAL : -ENOMEM;
}

void tls__sess_install(SSL_CTX *sc)
{
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(sc, on_new);
    SSL_CTX_sess_set_get_cb(sc, on_get);
    SSL_CTX_sess_set_remove_cb(sc, on_remove);
}

uint32_t tls__sess_count(struct tls_ctx *ctx)
{
    struct tls__sess *t = ctx->sessions;
    if (t == NULL)
        return 0;
    pthread_mutex_lock(&t->lock);
    uint32_t n = t->count;
    pthread_mutex_unlock(&t->lock);
    return n;
}

void tls__sess_free(struct tls_ctx *ctx)
{
    struct tls__sess *t = ctx->sessions;
    if (t == NULL)
        return;
    for (uint32_t i = 0; i < t->cap; i++)
        SSL_SESSION_free(t->ents[i].s);
    pthread_mutex_destroy(&t->lock);
    free(t->buckets);
    free(t->ents);
    free(t);
    ctx->sessions = NULL;
}
