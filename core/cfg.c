// SPDX-License-Identifier: MIT
// Configuration loading: one table describes every key (path, type, field, default, range,
// meaning); the YAML walker (libyaml document API, for line marks), the SIPEDGE_* environment
// overrides, the defaults and docs/config.md are all driven by that table.
#include "core/cfg.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

enum cfg_type {
    T_U32 = 0,
    T_BOOL,
    T_STR,
    T_FILE, /* a string naming a file that must be readable when set */
    T_ENUM,
    T_STRLIST,
    T_LIST, /* a sequence of mappings, described by a struct cfg_list */
    /* T_COUNT */
    T_COUNT
};

#define F_REQ 1u /* must be set (lists: non-empty; strings: non-empty) */

struct cfg_list;

struct cfg_field {
    const char *path; /* full dotted path, or the leaf name inside a list item */
    enum cfg_type type;
    size_t off;
    size_t size;
    uint32_t min, max;
    unsigned flags;
    const char *def;
    const void *aux; /* T_ENUM: NULL-terminated names; T_LIST: struct cfg_list */
    const char *help;
};

struct cfg_list {
    const struct cfg_field *fields;
    size_t nfields;
    size_t item_size;
    size_t count_off; /* uint32_t count in struct cfg */
    size_t line_off;  /* uint32_t line in the item */
    uint32_t max;
    char sep;             /* field separator of the compact environment form */
    const char *env_form; /* documented compact form */
};

static const char *const policy_names[] = {"ordered", "round_robin", NULL};
static const char *const profile_names[] = {"generic", "cucm", "auto", NULL};
static const char *const alg_names[] = {"auto", "RS256", "ES256", NULL};
static const char *const level_names[] = {"debug", "info", "warn", "error", NULL};
static const char *const format_names[] = {"kv", "json", NULL};

#define FLD(st, p, t, m, d, lo, hi, fl, aux, help)                                                 \
    {                                                                                              \
        p, t, offsetof(st, m), sizeof(((st *)0)->m), lo, hi, fl, d, aux, help                      \
    }

static const struct cfg_field node_fields[] = {
    FLD(struct cfg_node, "host", T_STR, host, "", 0, 0, F_REQ, NULL,
        "UCM node to connect to (DNS name or IP literal)"),
    FLD(struct cfg_node, "port", T_U32, port, "5091", 1, 65535, 0, NULL, "UCM SIP MRA OAuth port"),
    FLD(struct cfg_node, "name", T_STR, name, "", 0, 0, 0, NULL,
        "name expected in the node certificate's SAN (empty: host)"),
};
static const struct cfg_list nodes_list = {node_fields,
                                           3,
                                           sizeof(struct cfg_node),
                                           offsetof(struct cfg, upstream.node_count),
                                           offsetof(struct cfg_node, line),
                                           CFG_MAX_NODES,
                                           ':',
                                           "host[:port[:name]],... (IPv6 as [addr])"};

static const struct cfg_field key_fields[] = {
    FLD(struct cfg_key, "file", T_FILE, file, "", 0, 0, F_REQ, NULL,
        "PEM public key or certificate"),
    FLD(struct cfg_key, "kid", T_STR, kid, "", 0, 0, 0, NULL,
        "the token `kid` this key answers to (empty: tokens without kid)"),
    FLD(struct cfg_key, "alg", T_ENUM, alg, "auto", 0, 0, 0, alg_names,
        "auto (from the key type), RS256 or ES256"),
};
static const struct cfg_list keys_list = {key_fields,
                                          3,
                                          sizeof(struct cfg_key),
                                          offsetof(struct cfg, auth.key_count),
                                          offsetof(struct cfg_key, line),
                                          CFG_MAX_KEYS,
                                          ';',
                                          "file[;kid[;alg]],..."};

/* X(id, path, type, member, default, min, max, flags, aux, help) */
#define CFG_KEYS(X)                                                                                \
    X(WORKERS, "workers", T_U32, workers, "0", 0, 1024, 0, NULL,                                   \
      "worker threads (0: one per online CPU)")                                                    \
    X(LISTEN_ADDRESS, "listen.address", T_STR, listen.address, "0.0.0.0", 0, 0, 0, NULL,           \
      "address clients connect to")                                                                \
    X(LISTEN_PORT, "listen.port", T_U32, listen.port, "5061", 1, 65535, 0, NULL, "SIP TLS port")   \
    X(LISTEN_BACKLOG, "listen.backlog", T_U32, listen.backlog, "4096", 1, 65535, 0, NULL,          \
      "connections the kernel holds completed for each worker's listener until it accepts them "   \
      "(listen(2); capped at net.core.somaxconn): a reconnect storm past it has SYNs dropped "     \
      "and its clients retry after 1, 3, 7 s")                                                     \
    X(LISTEN_PLAIN_TCP, "listen.plain_tcp", T_BOOL, listen.plain_tcp, "false", 0, 0, 0, NULL,      \
      "serve clients over plain TCP (labs and tests only)")                                        \
    X(LISTEN_TLS_CERT, "listen.tls.cert", T_FILE, listen.tls.cert, "", 0, 0, 0, NULL,              \
      "server certificate chain (PEM); required unless plain_tcp")                                 \
    X(LISTEN_TLS_KEY, "listen.tls.key", T_FILE, listen.tls.key, "", 0, 0, 0, NULL,                 \
      "server private key (PEM); required unless plain_tcp")                                       \
    X(LISTEN_TLS_CLIENT_CA, "listen.tls.client_ca", T_FILE, listen.tls.client_ca, "", 0, 0, 0,     \
      NULL, "CA bundle for client certificates (empty: none requested)")                           \
    X(LISTEN_TLS_VERIFY_CLIENT, "listen.tls.verify_client", T_BOOL, listen.tls.verify_client,      \
      "false", 0, 0, 0, NULL, "require a client certificate chained to client_ca")                 \
    X(LISTEN_TLS_OPENSSL_RECORDS, "listen.tls.openssl_records", T_BOOL,                            \
      listen.tls.openssl_records, "false", 0, 0, 0, NULL,                                          \
      "keep OpenSSL's record layer on established client connections (default: TLS 1.3 ones "      \
      "move to sipedge's own and free their SSL object)")                                          \
    X(LIMITS_MAX_MESSAGE, "listen.limits.max_message", T_U32, listen.limits.max_message, "65536",  \
      1024, 16777216, 0, NULL, "bytes of one SIP message (headers + body)")                        \
    X(LIMITS_MAX_HEADERS, "listen.limits.max_headers", T_U32, listen.limits.max_headers, "64", 8,  \
      1024, 0, NULL, "header fields per message")                                                  \
    X(LIMITS_MAX_LINE, "listen.limits.max_line", T_U32, listen.limits.max_line, "8192", 256,       \
      1048576, 0, NULL, "bytes of one header line")                                                \
    X(LIMITS_MAX_TOKEN, "listen.limits.max_token", T_U32, listen.limits.max_token, "8192", 256,    \
      1048576, 0, NULL, "bytes of a bearer token")                                                 \
    X(LIMITS_MAX_CONNS_PER_IP, "listen.limits.max_conns_per_ip", T_U32,                            \
      listen.limits.max_conns_per_ip, "0", 0, 1000000, 0, NULL,                                    \
      "client connections per source address per worker (0: unlimited; keep 0 behind SNAT)")       \
    X(LIMITS_MAX_CONNS_PER_WORKER, "listen.limits.max_conns_per_worker", T_U32,                    \
      listen.limits.max_conns_per_worker, "65536", 1, 1000000, 0, NULL,                            \
      "client connections per worker")                                                             \
    X(LIMITS_HANDSHAKE_TIMEOUT_MS, "listen.limits.handshake_timeout_ms", T_U32,                    \
      listen.limits.handshake_timeout_ms, "5000", 100, 120000, 0, NULL,                            \
      "TLS handshake deadline, twice: from the accept until the edge answers the ClientHello, "    \
      "then from that answer until the handshake ends (a ClientHello's wait in the edge does not " \
      "shorten its client's time)")                                                                \
    X(LIMITS_MAX_HANDSHAKES_IN_FLIGHT, "listen.limits.max_handshakes_in_flight", T_U32,            \
      listen.limits.max_handshakes_in_flight, "512", 0, 1000000, 0, NULL,                          \
      "TLS handshakes per worker past their first step, waiting for the client (each holds "       \
      "about 35 KB of OpenSSL state): at the cap further ClientHellos wait, a few hundred bytes "  \
      "each, until one ends; bounds a reconnect storm's memory peak. A source (IPv4 address, "     \
      "IPv6 /64) with a sixteenth of the cap in flight, or more waiting, gets further answers "    \
      "only below half of it, after other sources' (0: no cap)")                                   \
    X(LIMITS_IDLE_TIMEOUT_MS, "listen.limits.idle_timeout_ms", T_U32,                              \
      listen.limits.idle_timeout_ms, "600000", 1000, 86400000, 0, NULL,                            \
      "close a silent client connection after (longer than the re-REGISTER interval)")             \
    X(LIMITS_OUT_QUEUE_MAX, "listen.limits.out_queue_max", T_U32, listen.limits.out_queue_max,     \
      "262144", 4096, 67108864, 0, NULL,                                                           \
      "bytes queued towards one client before the connection is cut (UCM's connections: "          \
      "upstream.out_queue_max)")                                                                   \
    X(LIMITS_MESSAGE_TIMEOUT_MS, "listen.limits.message_timeout_ms", T_U32,                        \
      listen.limits.message_timeout_ms, "10000", 100, 600000, 0, NULL,                             \
      "a message must be complete this long after its first byte (slowloris), else the "           \
      "connection is cut")                                                                         \
    X(LIMITS_MAX_TRANSACTIONS_PER_CONN, "listen.limits.max_transactions_per_conn", T_U32,          \
      listen.limits.max_transactions_per_conn, "256", 1, 65536, 0, NULL,                           \
      "requests other than REGISTER one client connection may have open at once (more: 503)")      \
    X(LIMITS_MAX_QUEUE_DELAY_MS, "listen.limits.max_queue_delay_ms", T_U32,                        \
      listen.limits.max_queue_delay_ms, "200", 0, 60000, 0, NULL,                                  \
      "a REGISTER (or a request carrying its own token) on a registered connection that waited "   \
      "longer than this between reaching the host (kernel receive timestamp) and its worker "      \
      "reading it is answered 503 + Retry-After at once, without a token check: the worker is "    \
      "behind, so that the ones it accepts keep a bounded latency; a connection's first "          \
      "REGISTER (its handshake is paid) is not shed for this (0: off)")                            \
    X(LISTEN_DRAIN_TIMEOUT_MS, "listen.drain_timeout_ms", T_U32, listen.drain_timeout_ms, "10000", \
      0, 600000, 0, NULL,                                                                          \
      "SIGTERM: keep serving open connections this long (less once every client left), then "      \
      "answer what is open with 503 and close")                                                    \
    X(UCM_LISTEN_PORT, "ucm_listen.port", T_U32, ucm_listen.port, "0", 0, 65535, 0, NULL,          \
      "mutual-TLS port UCM connects to for its requests to clients (0: off; UCM then reuses the "  \
      "edge's own connections, RFC 5923)")                                                         \
    X(UCM_LISTEN_ADDRESS, "ucm_listen.address", T_STR, ucm_listen.address, "", 0, 0, 0, NULL,      \
      "bind address of the UCM port (empty: listen.address)")                                      \
    X(UCM_LISTEN_HOST, "ucm_listen.host", T_STR, ucm_listen.host, "", 0, 0, 0, NULL,               \
      "host UCM reaches the edge by, in our Path, Record-Route and Via towards UCM (empty: "       \
      "sip.edge_host)")                                                                            \
    X(UCM_LISTEN_TLS_CA, "ucm_listen.tls.ca", T_FILE, ucm_listen.ca, "", 0, 0, 0, NULL,            \
      "CA bundle UCM certificates must chain to; required with ucm_listen.port")                   \
    X(UCM_LISTEN_NODE_NAMES, "ucm_listen.node_names", T_STRLIST, ucm_listen.node_names, "", 0, 0,  \
      0, NULL,                                                                                     \
      "names a UCM certificate must carry one of (SAN DNS name, or CN without DNS SAN; no "        \
      "wildcards); required with ucm_listen.port")                                                 \
    X(SIP_REALM, "sip.realm", T_STR, sip.realm, "ccmsipline", 0, 0, F_REQ, NULL,                   \
      "realm of the Bearer challenge")                                                             \
    X(SIP_SERVER_HEADER, "sip.server_header", T_STR, sip.server_header,                            \
      "sipedge/" SIPEDGE_VERSION, 0, 0, 0, NULL, "Server header of responses the edge makes")      \
    X(SIP_EDGE_HOST, "sip.edge_host", T_STR, sip.edge_host, "", 0, 0, 0, NULL,                     \
      "host in our Via and Path (empty: the machine's host name)")                                 \
    X(SIP_PATH, "sip.path", T_BOOL, sip.path, "true", 0, 0, 0, NULL,                               \
      "add a Path header (RFC 3327) to forwarded REGISTERs")                                       \
    X(SIP_FORWARD_AUTHORIZATION, "sip.forward_authorization", T_BOOL, sip.forward_authorization,   \
      "true", 0, 0, 0, NULL, "forward Proxy-Authorization to UCM (false: strip it)")               \
    X(SIP_TIMER_T1_MS, "sip.timer_t1_ms", T_U32, sip.timer_t1_ms, "500", 50, 10000, 0, NULL,       \
      "RFC 3261 T1")                                                                               \
    X(SIP_TIMER_F_MS, "sip.timer_f_ms", T_U32, sip.timer_f_ms, "0", 0, 600000, 0, NULL,            \
      "no final answer from UCM within this -> 408 (0: 64*T1)")                                    \
    X(SIP_TIMER_C_MS, "sip.timer_c_ms", T_U32, sip.timer_c_ms, "180000", 1000, 3600000, 0, NULL,   \
      "INVITE proxy Timer C: no final answer within this after a provisional -> CANCEL + 408")     \
    X(SIP_RETRY_AFTER_S, "sip.retry_after_s", T_U32, sip.retry_after_s, "30", 1, 86400, 0, NULL,   \
      "Retry-After of the 503 sent when no UCM node is reachable")                                 \
    X(SIP_CHALLENGE_SCOPE, "sip.challenge.scope", T_STR, sip.challenge.scope, "", 0, 0, 0, NULL,   \
      "scope=\"...\" in the challenge (RFC 8898; empty: omitted)")                                 \
    X(SIP_CHALLENGE_AUTHZ_SERVER, "sip.challenge.authz_server", T_STR, sip.challenge.authz_server, \
      "", 0, 0, 0, NULL,                                                                           \
      "authz_server=\"https://...\" in the challenge (RFC 8898; empty: omitted)")                  \
    X(UPSTREAM_NODES, "upstream.nodes", T_LIST, upstream.nodes, "", 0, 0, F_REQ, &nodes_list,      \
      "UCM nodes of the zone, in order")                                                           \
    X(UPSTREAM_POLICY, "upstream.policy", T_ENUM, upstream.policy, "ordered", 0, 0, 0,             \
      policy_names, "ordered (failover in list order) or round_robin")                             \
    X(UPSTREAM_POOL_SIZE, "upstream.pool_size", T_U32, upstream.pool_size, "2", 1, 64, 0, NULL,    \
      "mTLS connections per worker per node")                                                      \
    X(UPSTREAM_TLS_CERT, "upstream.tls.cert", T_FILE, upstream.tls.cert, "", 0, 0, 0, NULL,        \
      "our client certificate chain presented to UCM (PEM); required")                             \
    X(UPSTREAM_TLS_KEY, "upstream.tls.key", T_FILE, upstream.tls.key, "", 0, 0, 0, NULL,           \
      "its private key (PEM); required")                                                           \
    X(UPSTREAM_TLS_CA, "upstream.tls.ca", T_FILE, upstream.tls.ca, "", 0, 0, 0, NULL,              \
      "CA bundle UCM certificates must chain to; required")                                        \
    X(UPSTREAM_TLS_OPENSSL_RECORDS, "upstream.tls.openssl_records", T_BOOL,                        \
      upstream.tls.openssl_records, "false", 0, 0, 0, NULL,                                        \
      "keep OpenSSL's record layer on UCM connections (default: they move to sipedge's own "       \
      "once established)")                                                                         \
    X(UPSTREAM_TLS_REKEY_RECORDS, "upstream.tls.rekey_records", T_U32, upstream.tls.rekey_records, \
      "8388608", 1, 8388608, 0, NULL,                                                              \
      "TLS 1.3 records under one key before we send a KeyUpdate to UCM (RFC 8446 5.5)")            \
    X(UPSTREAM_MAX_PENDING, "upstream.max_pending", T_U32, upstream.max_pending, "1024", 0,        \
      1000000, 0, NULL,                                                                            \
      "REGISTERs per worker waiting for UCM's answer (or Redis) at once; more are answered 503 + " \
      "Retry-After at once, so that accepted ones wait at most this many / UCM's rate (0: no "     \
      "bound)")                                                                                    \
    X(UPSTREAM_OUT_QUEUE_MAX, "upstream.out_queue_max", T_U32, upstream.out_queue_max, "4194304",  \
      65536, 268435456, 0, NULL,                                                                   \
      "bytes queued towards one UCM connection (they carry every client's traffic; never paused "  \
      "for backpressure): the pool passes a full one over for another, UCM's own (ucm_listen) is " \
      "cut")                                                                                       \
    X(UPSTREAM_KEEPALIVE_INTERVAL_MS, "upstream.keepalive_interval_ms", T_U32,                     \
      upstream.keepalive_interval_ms, "30000", 0, 3600000, 0, NULL,                                \
      "OPTIONS ping period per connection (0: off)")                                               \
    X(UPSTREAM_CONNECT_TIMEOUT_MS, "upstream.connect_timeout_ms", T_U32,                           \
      upstream.connect_timeout_ms, "3000", 100, 60000, 0, NULL, "TCP connect + TLS handshake")     \
    X(UPSTREAM_BACKOFF_MIN_MS, "upstream.backoff_min_ms", T_U32, upstream.backoff_min_ms, "100",   \
      10, 600000, 0, NULL, "first reconnect delay (doubles, with jitter)")                         \
    X(UPSTREAM_BACKOFF_MAX_MS, "upstream.backoff_max_ms", T_U32, upstream.backoff_max_ms, "30000", \
      10, 3600000, 0, NULL, "largest reconnect delay")                                             \
    X(AUTH_KEYS, "auth.keys", T_LIST, auth.keys, "", 0, 0, 0, &keys_list,                          \
      "public keys for token signatures")                                                          \
    X(AUTH_JWKS, "auth.jwks", T_FILE, auth.jwks, "", 0, 0, 0, NULL, "JWKS file (RFC 7517)")        \
    X(AUTH_HS256_SECRET, "auth.hs256_secret", T_FILE, auth.hs256_secret, "", 0, 0, 0, NULL,        \
      "file with an HS256 shared secret (empty: HS256 refused)")                                   \
    X(AUTH_CUCM_KEY, "auth.cucm_key", T_FILE, auth.cucm_key, "", 0, 0, 0, NULL,                    \
      "file with the UCM cluster symmetric key (cucm profile)")                                    \
    X(AUTH_DEFAULT_KID, "auth.default_kid", T_STR, auth.default_kid, "", 0, 0, 0, NULL,            \
      "key used for tokens without kid (empty: none)")                                             \
    X(AUTH_PROFILE, "auth.profile", T_ENUM, auth.profile, "generic", 0, 0, 0, profile_names,       \
      "token profile: generic, cucm or auto")                                                      \
    X(AUTH_ISS, "auth.iss", T_STR, auth.iss, "", 0, 0, 0, NULL,                                    \
      "required `iss` (empty: not checked)")                                                       \
    X(AUTH_AUD, "auth.aud", T_STR, auth.aud, "", 0, 0, 0, NULL,                                    \
      "required `aud` (empty: not checked)")                                                       \
    X(AUTH_SCOPES, "auth.scopes", T_STRLIST, auth.scopes, "", 0, 0, 0, NULL,                       \
      "scopes a token must all carry (empty: not checked)")                                        \
    X(AUTH_LEEWAY_S, "auth.leeway_s", T_U32, auth.leeway_s, "60", 0, 3600, 0, NULL,                \
      "clock leeway for exp/nbf/iat")                                                              \
    X(AUTH_IDENTITY_CLAIM, "auth.identity_claim", T_STR, auth.identity_claim, "sub", 0, 0, F_REQ,  \
      NULL, "claim holding the user bound to the REGISTER's AOR")                                  \
    X(CACHE_L1_CAPACITY, "auth.cache.l1_capacity", T_U32, auth.cache.l1_capacity, "65536", 16,     \
      16777216, 0, NULL, "verified-token entries per worker")                                      \
    X(CACHE_L1_MAX_BYTES, "auth.cache.l1_max_bytes", T_U32, auth.cache.l1_max_bytes, "33554432",   \
      65536, 4294967295u, 0, NULL, "bound on a worker's copies of valid tokens in its L1")         \
    X(CACHE_TTL_S, "auth.cache.ttl_s", T_U32, auth.cache.ttl_s, "300", 1, 86400, 0, NULL,          \
      "longest time a verified token is trusted without verifying (capped by exp)")                \
    X(CACHE_NEGATIVE_TTL_S, "auth.cache.negative_ttl_s", T_U32, auth.cache.negative_ttl_s, "5", 0, \
      3600, 0, NULL, "time a failed token stays failed")                                           \
    X(CACHE_SIGNATURE_ONLY_TTL_S, "auth.cache.signature_only_ttl_s", T_U32,                        \
      auth.cache.signature_only_ttl_s, "30", 0, 3600, 0, NULL,                                     \
      "cache cap for cucm tokens checked by signature only")                                       \
    X(REDIS_ENABLED, "auth.redis.enabled", T_BOOL, auth.redis.enabled, "false", 0, 0, 0, NULL,     \
      "share verified tokens between pods through Redis")                                          \
    X(REDIS_HOST, "auth.redis.host", T_STR, auth.redis.host, "127.0.0.1", 0, 0, 0, NULL,           \
      "Redis host (IP literal or name resolved at start)")                                         \
    X(REDIS_PORT, "auth.redis.port", T_U32, auth.redis.port, "6379", 1, 65535, 0, NULL,            \
      "Redis port")                                                                                \
    X(REDIS_TIMEOUT_MS, "auth.redis.timeout_ms", T_U32, auth.redis.timeout_ms, "5", 1, 10000, 0,   \
      NULL, "a Redis reply later than this is a miss (verify locally)")                            \
    X(REDIS_HMAC_KEY, "auth.redis.hmac_key", T_FILE, auth.redis.hmac_key, "", 0, 0, 0, NULL,       \
      "file with the key authenticating shared entries; required when enabled")                    \
    X(REDIS_PASSWORD_FILE, "auth.redis.password_file", T_FILE, auth.redis.password_file, "", 0, 0, \
      0, NULL, "file with the Redis AUTH password (empty: none)")                                  \
    X(REDIS_PREFIX, "auth.redis.prefix", T_STR, auth.redis.prefix, "sipedge:", 0, 0, 0, NULL,      \
      "prefix of every Redis key")                                                                 \
    X(REDIS_BREAKER_FAILURES, "auth.redis.breaker.failures", T_U32, auth.redis.breaker.failures,   \
      "5", 1, 1000, 0, NULL, "consecutive failures that stop Redis use")                           \
    X(REDIS_BREAKER_OPEN_MS, "auth.redis.breaker.open_ms", T_U32, auth.redis.breaker.open_ms,      \
      "1000", 10, 600000, 0, NULL, "pause before Redis is tried again")                            \
    X(AUTH_MAX_FAILED_PER_CONN, "auth.max_failed_tokens_per_conn", T_U32,                          \
      auth.max_failed_tokens_per_conn, "5", 0, 1000000, 0, NULL,                                   \
      "close a client connection after this many rejected tokens (0: never)")                      \
    X(AUTH_SOURCE_RATE, "auth.source_budget.rate", T_U32, auth.source_rate, "200", 0, 1000000, 0,  \
      NULL, "token verifications per second per source address and worker (0: no budget)")         \
    X(AUTH_SOURCE_BURST, "auth.source_budget.burst", T_U32, auth.source_burst, "400", 1, 1000000,  \
      0, NULL, "verifications a source may spend at once")                                         \
    X(AUTH_SOURCE_TABLE, "auth.source_budget.sources", T_U32, auth.source_table, "4096", 4,        \
      1048576, 0, NULL, "source addresses tracked per worker (least recently used reused)")        \
    X(AUTH_WORKER_RATE, "auth.worker_budget.rate", T_U32, auth.worker_rate, "4000", 0, 1000000, 0, \
      NULL,                                                                                        \
      "token verifications per second per worker, every source together (0: no budget); over it "  \
      "503 + Retry-After without a verify, so a flood of new tokens from many sources leaves the " \
      "CPU to known clients")                                                                      \
    X(AUTH_WORKER_BURST, "auth.worker_budget.burst", T_U32, auth.worker_burst, "8000", 1, 1000000, \
      0, NULL, "verifications a worker may spend at once")                                         \
    X(RELOAD_WATCH_INTERVAL_MS, "reload.watch_interval_ms", T_U32, reload.watch_interval_ms,       \
      "2000", 0, 3600000, 0, NULL,                                                                 \
      "poll the certificate and key files this often and reload when they changed and held "       \
      "still for one poll (Kubernetes Secret rotation; 0: only on SIGHUP; else at least 100)")     \
    X(ADMIN_ENABLED, "admin.enabled", T_BOOL, admin.enabled, "true", 0, 0, 0, NULL,                \
      "serve /healthz /readyz /metrics")                                                           \
    X(ADMIN_ADDRESS, "admin.address", T_STR, admin.address, "127.0.0.1", 0, 0, 0, NULL,            \
      "admin HTTP address")                                                                        \
    X(ADMIN_PORT, "admin.port", T_U32, admin.port, "9090", 0, 65535, 0, NULL,                      \
      "admin HTTP port (0: ephemeral)")                                                            \
    X(LOG_LEVEL, "log.level", T_ENUM, log.level, "info", 0, 0, 0, level_names,                     \
      "debug, info, warn or error")                                                                \
    X(LOG_FORMAT, "log.format", T_ENUM, log.format, "kv", 0, 0, 0, format_names,                   \
      "kv (key=value) or json")

enum cfg_key_id {
#define X(id, ...) CFG_K_##id,
    CFG_KEYS(X)
#undef X
    /* CFG_K_COUNT */
    CFG_K_COUNT
};
_Static_assert(CFG_K_COUNT <= CFG_ORIGIN_MAX, "grow CFG_ORIGIN_MAX");

static const struct cfg_field cfg_fields[CFG_K_COUNT] = {
#define X(id, p, t, m, d, lo, hi, fl, aux, help) FLD(struct cfg, p, t, m, d, lo, hi, fl, aux, help),
    CFG_KEYS(X)
#undef X
};

/* ---- errors ------------------------------------------------------------------------------ */

/* Where a value came from, for a message: a file position or an environment variable. */
struct loc {
    const char *file;
    uint32_t line, col;
    const char *env;
};

struct ld {
    struct cfg *c;
    char *err;
    size_t errlen;
    const char *file;
    char dir[CFG_PATH_MAX]; /* directory of the file, for relative paths ("" = cwd) */
    yaml_document_t *doc;
    unsigned visited; /* nodes walked: bounds alias expansion */
};

static void vfmt_err(char *err, size_t errlen, const struct loc *l, const char *key,
                     const char *fmt, va_list ap)
{
    if (!errlen)
        return;
    int n;
    if (l->env)
        n = snprintf(err, errlen, "environment %s: ", l->env);
    else if (l->file && l->line)
        n = snprintf(err, errlen, "%s:%u:%u: ", l->file, l->line, l->col);
    else if (l->file)
        n = snprintf(err, errlen, "%s: ", l->file);
    else
        n = snprintf(err, errlen, "config: ");
    if (n < 0 || (size_t)n >= errlen)
        return;
    if (key && *key) {
        int m = snprintf(err + n, errlen - n, "%s: ", key);
        if (m < 0 || (size_t)(n + m) >= errlen)
            return;
        n += m;
    }
    vsnprintf(err + n, errlen - n, fmt, ap);
}

__attribute__((format(printf, 5, 6))) static int fail(char *err, size_t errlen, const struct loc *l,
                                                      const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfmt_err(err, errlen, l, key, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* A value echoed in a message: at most 64 bytes, non-printables as '?'. */
static const char *echo(const char *s, char *buf, size_t cap)
{
    size_t n = 0, i;
    for (i = 0; s[i] && n + 4 < cap && i < 64; i++)
        buf[n++] = isprint((unsigned char)s[i]) ? s[i] : '?';
    if (s[i] && n + 4 <= cap) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = 0;
    return buf;
}

/* ---- values ------------------------------------------------------------------------------ */

/* Store the text `s` into field `f` of `base`. On failure writes the problem into `why`. */
static int set_value(const struct cfg_field *f, void *base, const char *s, char *why, size_t wl)
{
    char e[80];
    char *p = (char *)base + f->off;
    switch (f->type) {
    case T_U32: {
        const char *q = s;
        unsigned long long v = 0;
        if (!*q) {
            snprintf(why, wl, "expected an integer, got nothing");
            return -1;
        }
        if (*q == '-' && q[1] >= '0' && q[1] <= '9') {
            snprintf(why, wl, "value %s out of range %u..%u", echo(s, e, sizeof(e)), f->min,
                     f->max);
            return -1;
        }
        for (; *q; q++) {
            if (*q < '0' || *q > '9') {
                snprintf(why, wl, "expected an integer, got \"%s\"", echo(s, e, sizeof(e)));
                return -1;
            }
            if (v < 100000000000ull)
                v = v * 10 + (unsigned)(*q - '0');
        }
        if (v < f->min || v > f->max) {
            snprintf(why, wl, "value %s out of range %u..%u", echo(s, e, sizeof(e)), f->min,
                     f->max);
            return -1;
        }
        *(uint32_t *)p = (uint32_t)v;
        return 0;
    }
    case T_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", "1"};
        static const char *const no[] = {"false", "no", "off", "0"};
        for (size_t i = 0; i < 4; i++) {
            if (!strcasecmp(s, yes[i])) {
                *(bool *)p = true;
                return 0;
            }
            if (!strcasecmp(s, no[i])) {
                *(bool *)p = false;
                return 0;
            }
        }
        snprintf(why, wl, "expected true or false, got \"%s\"", echo(s, e, sizeof(e)));
        return -1;
    }
    case T_STR:
    case T_FILE: {
        size_t n = strlen(s);
        if (n >= f->size) {
            snprintf(why, wl, "too long (%zu bytes, at most %zu)", n, f->size - 1);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
                snprintf(why, wl, "contains a control character");
                return -1;
            }
        }
        memcpy(p, s, n + 1);
        return 0;
    }
    case T_ENUM: {
        const char *const *names = f->aux;
        for (size_t i = 0; names[i]; i++) {
            if (!strcasecmp(s, names[i])) {
                *(int *)p = (int)i;
                return 0;
            }
        }
        size_t k = (size_t)snprintf(why, wl, "expected one of");
        for (size_t i = 0; names[i] && k < wl; i++)
            k += (size_t)snprintf(why + k, wl - k, "%s %s", i ? "," : "", names[i]);
        if (k < wl)
            snprintf(why + k, wl - k, "; got \"%s\"", echo(s, e, sizeof(e)));
        return -1;
    }
    default:
        snprintf(why, wl, "internal: not a scalar key");
        return -1;
    }
}

_Static_assert(sizeof(enum cfg_policy) == sizeof(int), "enums are stored as int");

static void set_item_defaults(const struct cfg_list *l, void *item)
{
    char why[160];
    memset(item, 0, l->item_size);
    for (size_t i = 0; i < l->nfields; i++) {
        int rc = set_value(&l->fields[i], item, l->fields[i].def, why, sizeof(why));
        (void)rc;
    }
}

void cfg_defaults(struct cfg *out)
{
    char why[160];
    memset(out, 0, sizeof(*out));
    for (size_t k = 0; k < CFG_K_COUNT; k++) {
        const struct cfg_field *f = &cfg_fields[k];
        if (f->type == T_LIST || f->type == T_STRLIST)
            continue; /* empty */
        int rc = set_value(f, out, f->def, why, sizeof(why));
        (void)rc;
    }
}

/* ---- YAML walk --------------------------------------------------------------------------- */

static struct loc node_loc(const struct ld *ld, const yaml_node_t *n)
{
    return (struct loc){ld->file, (uint32_t)n->start_mark.line + 1,
                        (uint32_t)n->start_mark.column + 1, NULL};
}

static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a scalar";
    }
}

static const char *type_name(const struct cfg_field *f)
{
    switch (f->type) {
    case T_U32:
        return "an integer";
    case T_BOOL:
        return "true or false";
    case T_ENUM:
        return "a name";
    case T_STRLIST:
        return "a list of strings";
    case T_LIST:
        return "a list of mappings";
    default:
        return "a string";
    }
}

static int find_field(const char *path)
{
    for (size_t k = 0; k < CFG_K_COUNT; k++)
        if (!strcmp(cfg_fields[k].path, path))
            return (int)k;
    return -1;
}

/* True when some key lives below `path` (it names a section such as `listen.tls`). */
static bool is_section(const char *path)
{
    size_t n = strlen(path);
    for (size_t k = 0; k < CFG_K_COUNT; k++)
        if (!strncmp(cfg_fields[k].path, path, n) && cfg_fields[k].path[n] == '.')
            return true;
    return false;
}

/* Edit distance of two short strings (bounded at 64 bytes each; longer ones never match). */
static unsigned edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned row[65];
    if (la > 64 || lb > 64)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = (unsigned)j;
    for (size_t i = 1; i <= la; i++) {
        unsigned diag = row[0];
        row[0] = (unsigned)i;
        for (size_t j = 1; j <= lb; j++) {
            unsigned up = row[j];
            unsigned best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The closest known name for a mistyped `name` under `prefix` ("" at the top): a key or a
 * section one level below `prefix`, within an edit distance of 2. NULL when none is close. */
static const char *suggest(const char *prefix, const char *name, char *buf, size_t cap)
{
    size_t pl = strlen(prefix);
    unsigned best = 3;
    for (size_t k = 0; k < CFG_K_COUNT; k++) {
        const char *p = cfg_fields[k].path;
        if (pl && (strncmp(p, prefix, pl) != 0 || p[pl] != '.'))
            continue;
        const char *leaf = pl ? p + pl + 1 : p;
        char cand[64];
        size_t n = strcspn(leaf, ".");
        if (n >= sizeof(cand))
            continue;
        memcpy(cand, leaf, n);
        cand[n] = 0;
        unsigned d = edit_distance(name, cand);
        if (d < best) {
            best = d;
            snprintf(buf, cap, "%s", cand);
        }
    }
    return best < 3 ? buf : NULL;
}

static const char *suggest_item(const struct cfg_list *li, const char *name, char *buf, size_t cap)
{
    unsigned best = 3;
    for (size_t i = 0; i < li->nfields; i++) {
        unsigned d = edit_distance(name, li->fields[i].path);
        if (d < best) {
            best = d;
            snprintf(buf, cap, "%s", li->fields[i].path);
        }
    }
    return best < 3 ? buf : NULL;
}

/* Scalar value of a node for field `f` (stored at `base`); `key` names it in messages. */
static int scalar_into(struct ld *ld, const struct cfg_field *f, void *base, yaml_node_t *v,
                       const char *key)
{
    struct loc l = node_loc(ld, v);
    char why[200];
    if (v->type != YAML_SCALAR_NODE)
        return fail(ld->err, ld->errlen, &l, key, "expected %s, got %s", type_name(f),
                    node_kind(v));
    const char *s = (const char *)v->data.scalar.value;
    if (is_null(v)) {
        if (f->type == T_STR || f->type == T_FILE)
            s = "";
        else
            return fail(ld->err, ld->errlen, &l, key, "missing value (expected %s)", type_name(f));
    }
    if (strlen(s) != v->data.scalar.length)
        return fail(ld->err, ld->errlen, &l, key, "contains a NUL byte");
    if (set_value(f, base, s, why, sizeof(why)))
        return fail(ld->err, ld->errlen, &l, key, "%s", why);
    return 0;
}

static int check_dup_keys(struct ld *ld, yaml_node_t *map, const char *prefix)
{
    for (yaml_node_pair_t *a = map->data.mapping.pairs.start; a < map->data.mapping.pairs.top;
         a++) {
        yaml_node_t *ka = yaml_document_get_node(ld->doc, a->key);
        if (!ka || ka->type != YAML_SCALAR_NODE) {
            struct loc l = ka ? node_loc(ld, ka) : (struct loc){ld->file, 0, 0, NULL};
            return fail(ld->err, ld->errlen, &l, prefix, "a key must be a plain string");
        }
        for (yaml_node_pair_t *b = map->data.mapping.pairs.start; b < a; b++) {
            yaml_node_t *kb = yaml_document_get_node(ld->doc, b->key);
            if (!strcmp((char *)ka->data.scalar.value, (char *)kb->data.scalar.value)) {
                struct loc l = node_loc(ld, ka);
                char key[256];
                snprintf(key, sizeof(key), "%s%s%s", prefix, *prefix ? "." : "",
                         (char *)ka->data.scalar.value);
                return fail(ld->err, ld->errlen, &l, key, "duplicate key (first on line %u)",
                            (unsigned)kb->start_mark.line + 1);
            }
        }
    }
    return 0;
}

static int list_item_map(struct ld *ld, const struct cfg_list *li, void *item, yaml_node_t *m,
                         const char *ipath)
{
    int rc = check_dup_keys(ld, m, ipath);
    if (rc)
        return rc;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(ld->doc, p->value);
        const char *name = (const char *)k->data.scalar.value;
        char key[300];
        snprintf(key, sizeof(key), "%s.%s", ipath, name);
        const struct cfg_field *f = NULL;
        for (size_t i = 0; i < li->nfields; i++)
            if (!strcmp(li->fields[i].path, name))
                f = &li->fields[i];
        if (!f) {
            struct loc l = node_loc(ld, k);
            char hint[64];
            const char *h = suggest_item(li, name, hint, sizeof(hint));
            return fail(ld->err, ld->errlen, &l, key, "unknown key%s%s%s",
                        h ? " (did you mean " : "", h ? h : "", h ? "?)" : "");
        }
        if ((rc = scalar_into(ld, f, item, v, key)))
            return rc;
    }
    return 0;
}

static int parse_compact_item(const struct cfg_list *li, void *item, const char *s, char *why,
                              size_t wl, const char **bad_field);

static int walk_list(struct ld *ld, const struct cfg_field *f, yaml_node_t *v, int kid)
{
    const struct cfg_list *li = f->aux;
    struct loc l = node_loc(ld, v);
    uint32_t *count = (uint32_t *)((char *)ld->c + li->count_off);
    *count = 0;
    if (is_null(v))
        return 0;
    if (v->type != YAML_SEQUENCE_NODE)
        return fail(ld->err, ld->errlen, &l, f->path, "expected %s, got %s", type_name(f),
                    node_kind(v));
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n > li->max)
        return fail(ld->err, ld->errlen, &l, f->path, "%zu items, at most %u", n, li->max);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *it = yaml_document_get_node(ld->doc, v->data.sequence.items.start[i]);
        char ipath[200];
        snprintf(ipath, sizeof(ipath), "%s[%zu]", f->path, i);
        void *item = (char *)ld->c + f->off + i * li->item_size;
        set_item_defaults(li, item);
        struct loc il = node_loc(ld, it);
        *(uint32_t *)((char *)item + li->line_off) = il.line;
        int rc;
        if (it->type == YAML_MAPPING_NODE) {
            rc = list_item_map(ld, li, item, it, ipath);
        } else if (it->type == YAML_SCALAR_NODE && !is_null(it)) {
            char why[200];
            const char *bad = NULL;
            rc = parse_compact_item(li, item, (const char *)it->data.scalar.value, why, sizeof(why),
                                    &bad);
            if (rc) {
                char key[300];
                snprintf(key, sizeof(key), "%s%s%s", ipath, bad ? "." : "", bad ? bad : "");
                rc = fail(ld->err, ld->errlen, &il, key, "%s", why);
            }
        } else {
            rc = fail(ld->err, ld->errlen, &il, ipath, "expected a mapping, got %s", node_kind(it));
        }
        if (rc)
            return rc;
        *count = (uint32_t)i + 1;
    }
    (void)kid;
    return 0;
}

static int walk_strlist(struct ld *ld, const struct cfg_field *f, yaml_node_t *v)
{
    struct cfg_strlist *sl = (struct cfg_strlist *)((char *)ld->c + f->off);
    struct loc l = node_loc(ld, v);
    sl->count = 0;
    if (is_null(v))
        return 0;
    if (v->type != YAML_SEQUENCE_NODE)
        return fail(ld->err, ld->errlen, &l, f->path, "expected %s, got %s", type_name(f),
                    node_kind(v));
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n > CFG_MAX_SCOPES)
        return fail(ld->err, ld->errlen, &l, f->path, "%zu items, at most %d", n, CFG_MAX_SCOPES);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *it = yaml_document_get_node(ld->doc, v->data.sequence.items.start[i]);
        char ipath[200];
        snprintf(ipath, sizeof(ipath), "%s[%zu]", f->path, i);
        struct loc il = node_loc(ld, it);
        if (it->type != YAML_SCALAR_NODE || is_null(it))
            return fail(ld->err, ld->errlen, &il, ipath, "expected a string, got %s",
                        is_null(it) ? "nothing" : node_kind(it));
        const char *s = (const char *)it->data.scalar.value;
        if (strlen(s) >= CFG_STR_MAX)
            return fail(ld->err, ld->errlen, &il, ipath, "too long (at most %d bytes)",
                        CFG_STR_MAX - 1);
        memcpy(sl->v[i], s, strlen(s) + 1);
        sl->count = (uint32_t)i + 1;
    }
    return 0;
}

static int walk_map(struct ld *ld, yaml_node_t *map, const char *prefix, int depth)
{
    int rc = check_dup_keys(ld, map, prefix);
    if (rc)
        return rc;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(ld->doc, p->value);
        struct loc kl = node_loc(ld, k);
        if (++ld->visited > 10000)
            return fail(ld->err, ld->errlen, &kl, prefix, "document too large (aliases?)");
        char path[256];
        int n = snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "",
                         (const char *)k->data.scalar.value);
        if (n < 0 || (size_t)n >= sizeof(path))
            return fail(ld->err, ld->errlen, &kl, prefix, "key too long");
        int id = find_field(path);
        if (id >= 0) {
            const struct cfg_field *f = &cfg_fields[id];
            if (f->type == T_LIST)
                rc = walk_list(ld, f, v, id);
            else if (f->type == T_STRLIST)
                rc = walk_strlist(ld, f, v);
            else
                rc = scalar_into(ld, f, ld->c, v, path);
            if (rc)
                return rc;
            ld->c->origin[id] = (struct cfg_origin){kl.line, CFG_SRC_FILE};
        } else if (is_section(path)) {
            if (is_null(v))
                continue;
            if (v->type != YAML_MAPPING_NODE) {
                struct loc vl = node_loc(ld, v);
                return fail(ld->err, ld->errlen, &vl, path, "expected a mapping, got %s",
                            node_kind(v));
            }
            if (depth > 8)
                return fail(ld->err, ld->errlen, &kl, path, "nested too deep");
            if ((rc = walk_map(ld, v, path, depth + 1)))
                return rc;
        } else {
            char hint[64];
            const char *h = suggest(prefix, (const char *)k->data.scalar.value, hint, sizeof(hint));
            return fail(ld->err, ld->errlen, &kl, path, "unknown key%s%s%s",
                        h ? " (did you mean " : "", h ? h : "", h ? "?)" : "");
        }
    }
    return 0;
}

static int load_file(struct ld *ld, const char *path)
{
    struct loc fl = {path, 0, 0, NULL};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        fail(ld->err, ld->errlen, &fl, NULL, "cannot open: %s", strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > (1 << 20)) {
        close(fd);
        fail(ld->err, ld->errlen, &fl, NULL, "not a regular file of at most 1 MiB");
        return -EFBIG;
    }
    FILE *fp = fdopen(fd, "r");
    if (!fp) {
        close(fd);
        return fail(ld->err, ld->errlen, &fl, NULL, "cannot read");
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = 0;
    if (!yaml_parser_initialize(&parser)) {
        fclose(fp);
        return fail(ld->err, ld->errlen, &fl, NULL, "out of memory");
    }
    yaml_parser_set_input_file(&parser, fp);
    if (!yaml_parser_load(&parser, &doc)) {
        struct loc l = {path, (uint32_t)parser.problem_mark.line + 1,
                        (uint32_t)parser.problem_mark.column + 1, NULL};
        rc = fail(ld->err, ld->errlen, &l, NULL, "YAML syntax: %s%s%s",
                  parser.problem ? parser.problem : "error", parser.context ? " " : "",
                  parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        fclose(fp);
        return rc;
    }
    ld->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && !is_null(root)) {
        if (root->type != YAML_MAPPING_NODE) {
            struct loc l = node_loc(ld, root);
            rc = fail(ld->err, ld->errlen, &l, NULL, "the document must be a mapping, got %s",
                      node_kind(root));
        } else {
            rc = walk_map(ld, root, "", 0);
        }
    }
    ld->doc = NULL;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(fp);
    return rc;
}

/* ---- environment ------------------------------------------------------------------------- */

/* SIPEDGE_ + upper-cased path with '.', '[', ']' turned into '_' (runs squeezed). */
static void env_name(const char *path, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "SIPEDGE_");
    for (const char *p = path; *p && n + 1 < cap; p++) {
        char ch = *p;
        if (ch == '.' || ch == '[' || ch == ']') {
            if (out[n - 1] != '_')
                out[n++] = '_';
            continue;
        }
        out[n++] = (char)toupper((unsigned char)ch);
    }
    while (n > 0 && out[n - 1] == '_')
        n--;
    out[n] = 0;
}

/* One item of the compact list form: fields in table order separated by li->sep; empty fields
 * keep their default. For the ':' form, a leading "[v6addr]" is one field. */
static int parse_compact_item(const struct cfg_list *li, void *item, const char *s, char *why,
                              size_t wl, const char **bad_field)
{
    char buf[1024];
    size_t n = strlen(s);
    *bad_field = NULL;
    if (n >= sizeof(buf)) {
        snprintf(why, wl, "item too long");
        return -1;
    }
    memcpy(buf, s, n + 1);
    char *p = buf;
    for (size_t i = 0; i < li->nfields; i++) {
        char *field = p, *end;
        if (*p == '[' && li->sep == ':' && (end = strchr(p, ']'))) {
            field = p + 1;
            *end = 0;
            p = end + 1;
            if (*p && *p != li->sep) {
                snprintf(why, wl, "expected '%c' after ']'", li->sep);
                return -1;
            }
        } else {
            end = strchr(p, li->sep);
            p = end ? end : p + strlen(p);
        }
        bool more = *p == li->sep;
        *p = 0;
        if (*field && set_value(&li->fields[i], item, field, why, wl)) {
            *bad_field = li->fields[i].path;
            return -1;
        }
        if (!more) {
            return 0;
        }
        p++;
    }
    snprintf(why, wl, "too many fields (at most %zu separated by '%c')", li->nfields, li->sep);
    return -1;
}

static int env_list(struct ld *ld, const struct cfg_field *f, int id)
{
    const struct cfg_list *li = f->aux;
    uint32_t *count = (uint32_t *)((char *)ld->c + li->count_off);
    char name[128], why[200];
    env_name(f->path, name, sizeof(name));
    const char *v = getenv(name);
    if (v) {
        struct loc l = {NULL, 0, 0, name};
        *count = 0;
        char buf[8192];
        if (strlen(v) >= sizeof(buf))
            return fail(ld->err, ld->errlen, &l, f->path, "value too long");
        strcpy(buf, v);
        char *save = NULL;
        uint32_t i = 0;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            char ipath[200];
            snprintf(ipath, sizeof(ipath), "%s[%u]", f->path, i);
            if (i >= li->max)
                return fail(ld->err, ld->errlen, &l, f->path, "more than %u items", li->max);
            void *item = (char *)ld->c + f->off + i * li->item_size;
            set_item_defaults(li, item);
            const char *bad = NULL;
            if (parse_compact_item(li, item, tok, why, sizeof(why), &bad)) {
                char key[300];
                snprintf(key, sizeof(key), "%s%s%s", ipath, bad ? "." : "", bad ? bad : "");
                return fail(ld->err, ld->errlen, &l, key, "%s", why);
            }
            *count = ++i;
        }
        ld->c->origin[id] = (struct cfg_origin){0, CFG_SRC_ENV};
    }
    /* Indexed form: SIPEDGE_UPSTREAM_NODES_<i>_<FIELD> changes or appends item i. */
    for (uint32_t i = 0; i < li->max; i++) {
        for (size_t j = 0; j < li->nfields; j++) {
            char path[200];
            snprintf(path, sizeof(path), "%s[%u].%s", f->path, i, li->fields[j].path);
            env_name(path, name, sizeof(name));
            const char *iv = getenv(name);
            if (!iv)
                continue;
            struct loc l = {NULL, 0, 0, name};
            if (i > *count)
                return fail(ld->err, ld->errlen, &l, path, "index past the end (list has %u)",
                            *count);
            void *item = (char *)ld->c + f->off + i * li->item_size;
            if (i == *count) {
                set_item_defaults(li, item);
                *count = i + 1;
            }
            *(uint32_t *)((char *)item + li->line_off) = 0;
            if (set_value(&li->fields[j], item, iv, why, sizeof(why)))
                return fail(ld->err, ld->errlen, &l, path, "%s", why);
            ld->c->origin[id] = (struct cfg_origin){0, CFG_SRC_ENV};
        }
    }
    return 0;
}

static int apply_env(struct ld *ld)
{
    char name[128], why[200];
    for (size_t k = 0; k < CFG_K_COUNT; k++) {
        const struct cfg_field *f = &cfg_fields[k];
        int rc;
        if (f->type == T_LIST) {
            if ((rc = env_list(ld, f, (int)k)))
                return rc;
            continue;
        }
        env_name(f->path, name, sizeof(name));
        const char *v = getenv(name);
        if (!v)
            continue;
        struct loc l = {NULL, 0, 0, name};
        if (f->type == T_STRLIST) {
            struct cfg_strlist *sl = (struct cfg_strlist *)((char *)ld->c + f->off);
            sl->count = 0;
            const char *p = v;
            while (*p) {
                const char *e = strchr(p, ',');
                size_t n = e ? (size_t)(e - p) : strlen(p);
                if (sl->count >= CFG_MAX_SCOPES)
                    return fail(ld->err, ld->errlen, &l, f->path, "more than %d items",
                                CFG_MAX_SCOPES);
                if (n >= CFG_STR_MAX)
                    return fail(ld->err, ld->errlen, &l, f->path, "item too long");
                if (n) {
                    memcpy(sl->v[sl->count], p, n);
                    sl->v[sl->count++][n] = 0;
                }
                p += n + (e ? 1 : 0);
            }
        } else if (set_value(f, ld->c, v, why, sizeof(why))) {
            return fail(ld->err, ld->errlen, &l, f->path, "%s", why);
        }
        ld->c->origin[k] = (struct cfg_origin){0, CFG_SRC_ENV};
    }
    return 0;
}

/* ---- after loading ----------------------------------------------------------------------- */

static struct loc origin_loc(const struct cfg *c, int id, char *env, size_t envcap)
{
    const struct cfg_origin *o = &c->origin[id];
    if (o->src == CFG_SRC_ENV) {
        env_name(cfg_fields[id].path, env, envcap);
        return (struct loc){NULL, 0, 0, env};
    }
    return (struct loc){c->source[0] ? c->source : NULL, o->line, o->line ? 1 : 0, NULL};
}

static struct loc item_loc(const struct cfg *c, int id, uint32_t line, const char *ipath, char *env,
                           size_t envcap)
{
    if (!line && c->origin[id].src == CFG_SRC_ENV) {
        (void)ipath;
        env_name(cfg_fields[id].path, env, envcap);
        return (struct loc){NULL, 0, 0, env};
    }
    return (struct loc){c->source[0] ? c->source : NULL, line, line ? 1 : 0, NULL};
}

/* Resolve a relative path against the config file's directory and check it can be read. */
static int check_file(struct ld *ld, char *p, size_t cap, const struct loc *l, const char *key,
                      bool from_file)
{
    if (!*p)
        return 0;
    if (p[0] != '/' && from_file && ld->dir[0]) {
        char tmp[CFG_PATH_MAX];
        int n = snprintf(tmp, sizeof(tmp), "%s/%s", ld->dir, p);
        if (n < 0 || (size_t)n >= cap)
            return fail(ld->err, ld->errlen, l, key, "path too long once made absolute");
        memcpy(p, tmp, (size_t)n + 1);
    }
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return fail(ld->err, ld->errlen, l, key, "cannot read file %s: %s", p, strerror(e));
    }
    struct stat st;
    bool reg = !fstat(fd, &st) && S_ISREG(st.st_mode);
    close(fd);
    if (!reg)
        return fail(ld->err, ld->errlen, l, key, "%s is not a regular file", p);
    return 0;
}

static int finish(struct ld *ld)
{
    struct cfg *c = ld->c;
    char env[128];
    int rc;
    for (size_t k = 0; k < CFG_K_COUNT; k++) {
        const struct cfg_field *f = &cfg_fields[k];
        struct loc l = origin_loc(c, (int)k, env, sizeof(env));
        if (f->type == T_FILE) {
            if ((rc = check_file(ld, (char *)c + f->off, f->size, &l, f->path,
                                 c->origin[k].src == CFG_SRC_FILE)))
                return rc;
        } else if (f->type == T_LIST) {
            const struct cfg_list *li = f->aux;
            uint32_t count = *(uint32_t *)((char *)c + li->count_off);
            if ((f->flags & F_REQ) && !count)
                return fail(ld->err, ld->errlen, &l, f->path,
                            "required key missing (at least one item)");
            for (uint32_t i = 0; i < count; i++) {
                char *item = (char *)c + f->off + i * li->item_size;
                uint32_t line = *(uint32_t *)(item + li->line_off);
                for (size_t j = 0; j < li->nfields; j++) {
                    const struct cfg_field *g = &li->fields[j];
                    char ipath[200];
                    snprintf(ipath, sizeof(ipath), "%s[%u].%s", f->path, i, g->path);
                    struct loc il = item_loc(c, (int)k, line, ipath, env, sizeof(env));
                    if (!line) {
                        char ie[128];
                        env_name(ipath, ie, sizeof(ie));
                        if (getenv(ie)) {
                            memcpy(env, ie, strlen(ie) + 1);
                            il = (struct loc){NULL, 0, 0, env};
                        }
                    }
                    if ((g->flags & F_REQ) && (g->type == T_STR || g->type == T_FILE) &&
                        !item[g->off])
                        return fail(ld->err, ld->errlen, &il, ipath, "required key missing");
                    if (g->type == T_FILE &&
                        (rc = check_file(ld, item + g->off, g->size, &il, ipath, line != 0)))
                        return rc;
                }
            }
        } else if ((f->flags & F_REQ) && (f->type == T_STR) && !((char *)c + f->off)[0]) {
            return fail(ld->err, ld->errlen, &l, f->path, "must not be empty");
        }
    }
    /* quoted-string safety of what goes into the challenge header */
    static const int quoted[] = {CFG_K_SIP_REALM, CFG_K_SIP_CHALLENGE_SCOPE,
                                 CFG_K_SIP_CHALLENGE_AUTHZ_SERVER};
    for (size_t i = 0; i < sizeof(quoted) / sizeof(quoted[0]); i++) {
        const char *s = (char *)c + cfg_fields[quoted[i]].off;
        if (strpbrk(s, "\"\\")) {
            struct loc l = origin_loc(c, quoted[i], env, sizeof(env));
            return fail(ld->err, ld->errlen, &l, cfg_fields[quoted[i]].path,
                        "must not contain '\"' or '\\'");
        }
    }
    if (!c->workers) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = n > 0 && n <= 1024 ? (uint32_t)n : 1;
    }
    if (!c->sip.timer_f_ms)
        c->sip.timer_f_ms = 64 * c->sip.timer_t1_ms;
    if (!c->sip.edge_host[0] && gethostname(c->sip.edge_host, sizeof(c->sip.edge_host)))
        memcpy(c->sip.edge_host, "localhost", sizeof("localhost"));
    c->sip.edge_host[sizeof(c->sip.edge_host) - 1] = 0;
    return 0;
}

int cfg_load(const char *path, struct cfg *out, char *err, size_t errlen)
{
    struct ld ld = {.c = out, .err = err, .errlen = errlen, .file = path};
    if (errlen)
        err[0] = 0;
    cfg_defaults(out);
    if (path) {
        if (strlen(path) >= sizeof(out->source)) {
            struct loc l = {NULL, 0, 0, NULL};
            return fail(err, errlen, &l, NULL, "config path too long");
        }
        memcpy(out->source, path, strlen(path) + 1);
        const char *slash = strrchr(path, '/');
        if (slash) {
            size_t n = slash == path ? 1 : (size_t)(slash - path);
            memcpy(ld.dir, path, n);
            ld.dir[n] = 0;
        }
        int rc = load_file(&ld, path);
        if (rc)
            return rc;
    }
    int rc = apply_env(&ld);
    if (rc)
        return rc;
    return finish(&ld);
}

/* ---- semantic checks --------------------------------------------------------------------- */

static int check_fail(const struct cfg *c, char *err, size_t errlen, int id, const char *msg)
{
    char env[128];
    struct loc l = origin_loc(c, id, env, sizeof(env));
    if (!l.env && !l.file)
        l.file = "config";
    return fail(err, errlen, &l, cfg_fields[id].path, "%s", msg);
}

int cfg_check(const struct cfg *c, char *err, size_t errlen)
{
    if (errlen)
        err[0] = 0;
    if (!c->listen.plain_tcp) {
        if (!c->listen.tls.cert[0])
            return check_fail(c, err, errlen, CFG_K_LISTEN_TLS_CERT,
                              "required (unless listen.plain_tcp is true)");
        if (!c->listen.tls.key[0])
            return check_fail(c, err, errlen, CFG_K_LISTEN_TLS_KEY,
                              "required (unless listen.plain_tcp is true)");
    }
    if (c->listen.tls.verify_client && !c->listen.tls.client_ca[0])
        return check_fail(c, err, errlen, CFG_K_LISTEN_TLS_VERIFY_CLIENT,
                          "needs listen.tls.client_ca");
    if (c->ucm_listen.port) {
        if (c->listen.plain_tcp)
            return check_fail(c, err, errlen, CFG_K_UCM_LISTEN_PORT,
                              "needs TLS towards clients (listen.plain_tcp is true)");
        if (!c->ucm_listen.ca[0])
            return check_fail(c, err, errlen, CFG_K_UCM_LISTEN_TLS_CA,
                              "required with ucm_listen.port: UCM's certificate must be verified");
        if (!c->ucm_listen.node_names.count)
            return check_fail(c, err, errlen, CFG_K_UCM_LISTEN_NODE_NAMES,
                              "required with ucm_listen.port: the names UCM nodes may present");
        if (c->ucm_listen.port == c->listen.port)
            return check_fail(c, err, errlen, CFG_K_UCM_LISTEN_PORT, "the same as listen.port");
    }
    if (!c->upstream.node_count)
        return check_fail(c, err, errlen, CFG_K_UPSTREAM_NODES, "at least one node required");
    if (!c->upstream.tls.cert[0])
        return check_fail(c, err, errlen, CFG_K_UPSTREAM_TLS_CERT,
                          "required: UCM 5091 demands our client certificate");
    if (!c->upstream.tls.key[0])
        return check_fail(c, err, errlen, CFG_K_UPSTREAM_TLS_KEY, "required");
    if (!c->upstream.tls.ca[0])
        return check_fail(c, err, errlen, CFG_K_UPSTREAM_TLS_CA,
                          "required: UCM's certificate must be verified");
    if (c->upstream.backoff_min_ms > c->upstream.backoff_max_ms)
        return check_fail(c, err, errlen, CFG_K_UPSTREAM_BACKOFF_MIN_MS,
                          "greater than upstream.backoff_max_ms");
    if (c->sip.timer_f_ms && c->sip.timer_f_ms < c->sip.timer_t1_ms)
        return check_fail(c, err, errlen, CFG_K_SIP_TIMER_F_MS, "shorter than sip.timer_t1_ms");
    if (c->listen.limits.handshake_timeout_ms >= c->listen.limits.idle_timeout_ms)
        return check_fail(c, err, errlen, CFG_K_LIMITS_HANDSHAKE_TIMEOUT_MS,
                          "not shorter than listen.limits.idle_timeout_ms");
    if (c->listen.limits.max_line > c->listen.limits.max_message)
        return check_fail(c, err, errlen, CFG_K_LIMITS_MAX_LINE,
                          "larger than listen.limits.max_message");
    if (!c->auth.key_count && !c->auth.jwks[0] && !c->auth.hs256_secret[0])
        return check_fail(c, err, errlen, CFG_K_AUTH_KEYS,
                          "no token key: set auth.keys, auth.jwks or auth.hs256_secret");
    if (c->auth.default_kid[0]) {
        bool found = c->auth.jwks[0] != 0; /* the JWKS may hold it: checked when loaded */
        for (uint32_t i = 0; i < c->auth.key_count && !found; i++)
            found = !strcmp(c->auth.keys[i].kid, c->auth.default_kid);
        if (!found)
            return check_fail(c, err, errlen, CFG_K_AUTH_DEFAULT_KID, "names no kid of auth.keys");
    }
    for (uint32_t i = 0; i < c->auth.key_count; i++)
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(c->auth.keys[i].kid, c->auth.keys[j].kid)) {
                char msg[CFG_STR_MAX + 64];
                snprintf(msg, sizeof(msg), "kid \"%s\" used by items %u and %u",
                         c->auth.keys[i].kid, j, i);
                return check_fail(c, err, errlen, CFG_K_AUTH_KEYS, msg);
            }
    if (c->auth.profile == CFG_PROFILE_CUCM && !c->auth.cucm_key[0] &&
        !c->auth.cache.signature_only_ttl_s)
        return check_fail(c, err, errlen, CFG_K_AUTH_CUCM_KEY,
                          "profile cucm without auth.cucm_key needs "
                          "auth.cache.signature_only_ttl_s > 0");
    if (c->auth.redis.enabled && !c->auth.redis.hmac_key[0])
        return check_fail(c, err, errlen, CFG_K_REDIS_HMAC_KEY, "required when auth.redis.enabled");
    if (c->sip.challenge.authz_server[0] &&
        strncmp(c->sip.challenge.authz_server, "https://", 8) != 0)
        return check_fail(c, err, errlen, CFG_K_SIP_CHALLENGE_AUTHZ_SERVER,
                          "must start with https://");
    if (c->reload.watch_interval_ms && c->reload.watch_interval_ms < 100)
        return check_fail(c, err, errlen, CFG_K_RELOAD_WATCH_INTERVAL_MS,
                          "below 100 ms (0 turns the watch off)");
    if (c->admin.enabled && c->admin.port && c->admin.port == c->listen.port)
        return check_fail(c, err, errlen, CFG_K_ADMIN_PORT, "same as listen.port");
    return 0;
}

int cfg_check_main(int argc, char **argv)
{
    if (argc < 2 || !argv[1] || !*argv[1]) {
        fprintf(stderr, "usage: sipedge --check-config FILE\n");
        return 2;
    }
    struct cfg *c = malloc(sizeof(*c));
    char err[1024];
    if (!c) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    int rc = cfg_load(argv[1], c, err, sizeof(err));
    if (!rc)
        rc = cfg_check(c, err, sizeof(err));
    free(c);
    if (rc) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("ok\n");
    return 0;
}

/* ---- names and reference ----------------------------------------------------------------- */

const char *cfg_policy_name(enum cfg_policy v)
{
    return (unsigned)v < CFG_POLICY_COUNT ? policy_names[v] : "?";
}

const char *cfg_profile_name(enum cfg_profile v)
{
    return (unsigned)v < CFG_PROFILE_COUNT ? profile_names[v] : "?";
}

const char *cfg_alg_name(enum cfg_alg v)
{
    return (unsigned)v < CFG_ALG_COUNT ? alg_names[v] : "?";
}

const char *cfg_log_level_name(enum cfg_log_level v)
{
    return (unsigned)v < CFG_LOG_LEVEL_COUNT ? level_names[v] : "?";
}

static void ref_row(FILE *f, const char *path, const char *env, const struct cfg_field *fd)
{
    const char *def = fd->def;
    fprintf(f, "| `%s` | `%s` | %s%s%s | %s", path, env, *def ? "`" : "", *def ? def : "(empty)",
            *def ? "`" : "", fd->help);
    if (fd->type == T_U32)
        fprintf(f, "; %u..%u", fd->min, fd->max);
    if (fd->flags & F_REQ)
        fprintf(f, "; required");
    fprintf(f, " |\n");
}

void cfg_write_reference(FILE *f)
{
    char env[160];
    fprintf(f, "| key | environment | default | meaning |\n|---|---|---|---|\n");
    for (size_t k = 0; k < CFG_K_COUNT; k++) {
        const struct cfg_field *fd = &cfg_fields[k];
        env_name(fd->path, env, sizeof(env));
        if (fd->type == T_LIST) {
            const struct cfg_list *li = fd->aux;
            fprintf(f, "| `%s` | `%s` = `%s` | (empty) | %s; at most %u items%s |\n", fd->path, env,
                    li->env_form, fd->help, li->max, fd->flags & F_REQ ? "; required" : "");
            for (size_t j = 0; j < li->nfields; j++) {
                char path[200], ienv[200];
                snprintf(path, sizeof(path), "%s[i].%s", fd->path, li->fields[j].path);
                snprintf(ienv, sizeof(ienv), "%s_<i>_", env);
                for (const char *p = li->fields[j].path; *p; p++) {
                    size_t n = strlen(ienv);
                    ienv[n] = (char)toupper((unsigned char)*p);
                    ienv[n + 1] = 0;
                }
                ref_row(f, path, ienv, &li->fields[j]);
            }
        } else if (fd->type == T_STRLIST) {
            fprintf(f, "| `%s` | `%s` = `a,b,...` | (empty) | %s; at most %d items |\n", fd->path,
                    env, fd->help, CFG_MAX_SCOPES);
        } else {
            ref_row(f, fd->path, env, fd);
        }
    }
}
