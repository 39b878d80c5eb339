// SPDX-License-Identifier: MIT
// Process-wide state of a running edge, shared read-mostly by the workers and the admin thread:
// configuration, TLS contexts and key store (swapped on SIGHUP), metrics, readiness snapshots.
#ifndef SIPEDGE_CORE_EDGE_H
#define SIPEDGE_CORE_EDGE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "auth/jwt.h"
#include "core/cfg.h"
#include "core/flow.h"
#include "net/upstream.h"

struct tls_ctx;
struct keys_store;
struct metrics;
struct loop_group;
struct worker;

#define EDGE_MAX_WORKERS 256

/** What one worker last saw of one upstream node (copied under `mu` for the admin thread). */
struct edge_node_view {
    struct upstream_node_status st;
    bool valid;
};

struct edge {
    struct cfg cfg; /* read-only once workers start */
    struct jwt_policy policy;
    char *scopes_storage; /* policy.scopes point into cfg */
    uint8_t hmac_key[256];
    size_t hmac_key_len;
    struct flow_keys flow_keys; /* the pod's flow token secrets (random at start) */

    pthread_mutex_t mu;         /* guards the pointers below and `nodes` */
    struct tls_ctx *server_tls; /* NULL with listen.plain_tcp */
    struct tls_ctx *client_tls;
    struct tls_ctx *ucm_tls; /* the UCM listener's (ucm_listen.port), NULL when off */
    uint64_t tls_gen;        /* bumped on reload: workers pick the new contexts up */
    struct keys_store *keys;
    struct edge_node_view nodes[EDGE_MAX_WORKERS][UPSTREAM_MAX_NODES];

    struct metrics *metrics;
    struct loop_group *group;
    struct worker *workers[EDGE_MAX_WORKERS];
    unsigned n_workers;
    uint16_t port; /* the bound SIP port */

    atomic_uint workers_ready;
    atomic_bool draining;
    atomic_bool keys_loaded;
    /* the last reload (SIGHUP or file watch): its outcome, and when files were last loaded */
    atomic_bool reload_ok;
    atomic_int_least64_t loaded_at; /* unix seconds */
};

/** The contexts to use for new connections, each with a reference the caller drops
 * (tls_ctx_unref). Any thread. */
void edge_tls_get(struct edge *e, struct tls_ctx **server, struct tls_ctx **client, uint64_t *gen);

/** The UCM listener's context with a reference (NULL when off). Any thread. */
struct tls_ctx *edge_ucm_tls_get(struct edge *e);

/** Parse `address` (an IPv4 or IPv6 literal) and `port` into `ss`; its length, or 0. */
socklen_t edge_sockaddr(const char *address, uint32_t port, struct sockaddr_storage *ss);

#endif
