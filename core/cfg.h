// SPDX-License-Identifier: MIT
// The edge's configuration: one YAML file (what a Kubernetes ConfigMap carries) plus
// SIPEDGE_* environment overrides for every key, loaded into plain data (struct cfg).
#ifndef SIPEDGE_CORE_CFG_H
#define SIPEDGE_CORE_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef SIPEDGE_VERSION
#define SIPEDGE_VERSION "0.1.0"
#endif

/* Sizes of the fixed buffers in struct cfg (bytes including the NUL, or item counts). A value
 * that does not fit is rejected with an error naming the key, never truncated. */
#define CFG_PATH_MAX   512 /* file paths */
#define CFG_HOST_MAX   256 /* host names and addresses */
#define CFG_STR_MAX    256 /* other strings (realm, kid, claim names...) */
#define CFG_MAX_NODES  16  /* upstream.nodes */
#define CFG_MAX_KEYS   32  /* auth.keys */
#define CFG_MAX_SCOPES 16  /* auth.scopes */

/** Where upstream requests go among healthy nodes. */
enum cfg_policy {
    CFG_POLICY_ORDERED = 0, /* the first healthy node in list order (failover) */
    CFG_POLICY_ROUND_ROBIN, /* rotate over healthy nodes */
    /* CFG_POLICY_COUNT */
    CFG_POLICY_COUNT
};

/** Token profile (SPEC.md 5.1). */
enum cfg_profile {
    CFG_PROFILE_GENERIC = 0, /* a JWS whose claims are readable */
    CFG_PROFILE_CUCM,        /* Unified CM: JWS around a JWE in claim `private` */
    CFG_PROFILE_AUTO,        /* decide per token (a `private` claim means cucm) */
    /* CFG_PROFILE_COUNT */
    CFG_PROFILE_COUNT
};

/** The algorithm bound to a configured public key. */
enum cfg_alg {
    CFG_ALG_AUTO = 0, /* from the key type: RSA -> RS256, EC P-256 -> ES256 */
    CFG_ALG_RS256,
    CFG_ALG_ES256,
    /* CFG_ALG_COUNT */
    CFG_ALG_COUNT
};

/** Log level; a line is written when its level >= the configured one. */
enum cfg_log_level {
    CFG_LOG_DEBUG = 0,
    CFG_LOG_INFO,
    CFG_LOG_WARN,
    CFG_LOG_ERROR,
    /* CFG_LOG_LEVEL_COUNT */
    CFG_LOG_LEVEL_COUNT
};

/** Log line format. */
enum cfg_log_format {
    CFG_LOG_KV = 0, /* ts=... level=... event=... key=value */
    CFG_LOG_JSON,   /* one JSON object per line */
    /* CFG_LOG_FORMAT_COUNT */
    CFG_LOG_FORMAT_COUNT
};

/** Where a value came from (for error messages of cfg_check()). */
enum cfg_src {
    CFG_SRC_DEFAULT = 0,
    CFG_SRC_FILE,
    CFG_SRC_ENV,
    /* CFG_SRC_COUNT */
    CFG_SRC_COUNT
};

/** One UCM node of the upstream zone. */
struct cfg_node {
    char host[CFG_HOST_MAX]; /* DNS name or IP literal to connect to */
    uint32_t port;           /* default 5091 */
    char name[CFG_HOST_MAX]; /* name expected in the node certificate's SAN; "" = host */
    uint32_t line;           /* line in the file (0 = from the environment) */
};

/** One public key file for token signatures. */
struct cfg_key {
    char file[CFG_PATH_MAX]; /* PEM public key or certificate */
    char kid[CFG_STR_MAX];   /* the `kid` it answers to; "" = any token without a kid */
    enum cfg_alg alg;
    uint32_t line;
};

/** A short list of strings (auth.scopes). */
struct cfg_strlist {
    uint32_t count;
    char v[CFG_MAX_SCOPES][CFG_STR_MAX];
};

struct cfg_limits {
    uint32_t max_message;               /* bytes of one SIP message, headers + body */
    uint32_t max_headers;               /* header fields per message */
    uint32_t max_line;                  /* bytes of one header line (after unfolding) */
    uint32_t max_token;                 /* bytes of a bearer token */
    uint32_t max_conns_per_ip;          /* 0 = unlimited */
    uint32_t max_conns_per_worker;      /* client connections per worker */
    uint32_t handshake_timeout_ms;      /* until the ClientHello is answered, then until the end */
    uint32_t max_handshakes_in_flight;  /* per worker, past the first step (0: no cap) */
    uint32_t idle_timeout_ms;           /* close a client connection silent this long */
    uint32_t out_queue_max;             /* bytes queued towards one peer before it is cut off */
    uint32_t message_timeout_ms;        /* first byte of a message -> complete, else cut */
    uint32_t max_transactions_per_conn; /* open call transactions of one client connection */
    uint32_t max_queue_delay_ms; /* a REGISTER that waited longer before being read: 503 (0: off) */
};

struct cfg_listen_tls {
    char cert[CFG_PATH_MAX];      /* server certificate chain (PEM) */
    char key[CFG_PATH_MAX];       /* its private key (PEM) */
    char client_ca[CFG_PATH_MAX]; /* CA bundle for client certificates ("" = none) */
    bool verify_client;           /* require a client certificate chained to client_ca */
    bool openssl_records;         /* no takeover of TLS 1.3 records by tls/tls_rec.c */
};

struct cfg_listen {
    char address[CFG_HOST_MAX];
    uint32_t port;
    uint32_t backlog; /* listen(2) backlog per worker's listener (the kernel caps it) */
    bool plain_tcp;   /* no TLS towards clients: labs and tests only */
    struct cfg_listen_tls tls;
    struct cfg_limits limits;
    uint32_t drain_timeout_ms; /* SIGTERM: serve open connections at most this long */
};

/** The mutual-TLS listener UCM opens connections to (issue 9). */
struct cfg_ucm_listen {
    uint32_t port;                 /* 0: off */
    char address[CFG_HOST_MAX];    /* bind address ("": listen.address) */
    char host[CFG_HOST_MAX];       /* host UCM reaches the edge by ("": sip.edge_host) */
    char ca[CFG_PATH_MAX];         /* UCM CA bundle */
    struct cfg_strlist node_names; /* a UCM certificate must carry one (SAN DNS, or CN) */
};

struct cfg_challenge {
    char scope[CFG_STR_MAX];        /* RFC 8898 scope="..." in the challenge ("" = omitted) */
    char authz_server[CFG_STR_MAX]; /* RFC 8898 authz_server="https://..." ("" = omitted) */
};

struct cfg_sip {
    char realm[CFG_STR_MAX];
    char server_header[CFG_STR_MAX];
    char edge_host[CFG_HOST_MAX]; /* host in our Via and Path; filled from gethostname() if "" */
    bool path;                    /* add a Path header (RFC 3327) to forwarded REGISTERs */
    bool forward_authorization;   /* false: strip Proxy-Authorization before forwarding */
    uint32_t timer_t1_ms;
    uint32_t timer_f_ms; /* 64*T1 when not set */
    uint32_t timer_c_ms; /* INVITE Timer C (RFC 3261 §16.6 step 11: more than 3 minutes) */
    uint32_t retry_after_s;
    struct cfg_challenge challenge;
};

struct cfg_upstream_tls {
    char cert[CFG_PATH_MAX]; /* our client certificate chain, presented to UCM */
    char key[CFG_PATH_MAX];
    char ca[CFG_PATH_MAX];  /* CA bundle that UCM's certificates must chain to */
    bool openssl_records;   /* no switch of established connections to tls/tls_rec.c */
    uint32_t rekey_records; /* TLS 1.3 records per key before our KeyUpdate (tls_rec.c) */
};

struct cfg_upstream {
    uint32_t node_count;
    struct cfg_node nodes[CFG_MAX_NODES];
    enum cfg_policy policy;
    uint32_t pool_size; /* connections per worker per node */
    struct cfg_upstream_tls tls;
    uint32_t keepalive_interval_ms; /* OPTIONS ping period, 0 = off */
    uint32_t connect_timeout_ms;    /* TCP connect + TLS handshake */
    uint32_t backoff_min_ms;
    uint32_t backoff_max_ms;
    uint32_t max_pending;   /* REGISTERs per worker waiting for UCM or Redis; more: 503 (0 = off) */
    uint32_t out_queue_max; /* bytes queued towards one UCM connection (a trunk: net/conn.h) */
};

struct cfg_auth_cache {
    uint32_t l1_capacity;  /* entries per worker */
    uint32_t l1_max_bytes; /* bound on a worker's copies of valid tokens */
    uint32_t ttl_s;
    uint32_t negative_ttl_s;
    uint32_t signature_only_ttl_s; /* cap when a cucm token's claims cannot be read */
};

struct cfg_redis_breaker {
    uint32_t failures; /* consecutive failures that open the breaker */
    uint32_t open_ms;  /* time open before one probe */
};

struct cfg_redis {
    bool enabled;
    char host[CFG_HOST_MAX];
    uint32_t port;
    uint32_t timeout_ms;
    char hmac_key[CFG_PATH_MAX];      /* file with the key that authenticates entries */
    char password_file[CFG_PATH_MAX]; /* file with the AUTH password ("" = none) */
    char prefix[CFG_STR_MAX];         /* key prefix */
    struct cfg_redis_breaker breaker;
};

struct cfg_auth {
    uint32_t key_count;
    struct cfg_key keys[CFG_MAX_KEYS];
    char jwks[CFG_PATH_MAX];
    char hs256_secret[CFG_PATH_MAX];
    char cucm_key[CFG_PATH_MAX]; /* cluster symmetric key (32 bytes, raw or hex or base64) */
    char default_kid[CFG_STR_MAX];
    enum cfg_profile profile;
    char iss[CFG_STR_MAX];
    char aud[CFG_STR_MAX];
    struct cfg_strlist scopes;
    uint32_t leeway_s;
    char identity_claim[CFG_STR_MAX];
    struct cfg_auth_cache cache;
    struct cfg_redis redis;
    uint32_t max_failed_tokens_per_conn; /* close a connection after this many; 0 = never */
    uint32_t source_rate; /* verifications/s per source address and worker; 0 = off */
    uint32_t source_burst;
    uint32_t source_table; /* source addresses tracked per worker */
    uint32_t worker_rate;  /* verifications/s per worker, all sources together; 0 = off */
    uint32_t worker_burst;
};

struct cfg_reload {
    uint32_t watch_interval_ms; /* poll the files reload() reads (0: SIGHUP only) */
};

struct cfg_admin {
    bool enabled;
    char address[CFG_HOST_MAX];
    uint32_t port; /* 0 = ephemeral (tests) */
};

struct cfg_log {
    enum cfg_log_level level;
    enum cfg_log_format format;
};

/** Where each top-level key's value came from (indexed by enum cfg_key_id, see cfg.c). */
struct cfg_origin {
    uint32_t line; /* 0 unless src == CFG_SRC_FILE */
    uint8_t src;   /* enum cfg_src */
};

#define CFG_ORIGIN_MAX 96

/**
 * The whole configuration, plain data: copy it with `=`, nothing to free. Every field holds its
 * documented default unless the file or the environment set it (docs/config.md).
 */
struct cfg {
    uint32_t workers; /* 0 in the file = online CPUs; resolved by cfg_load() */
    struct cfg_listen listen;
    struct cfg_ucm_listen ucm_listen;
    struct cfg_sip sip;
    struct cfg_upstream upstream;
    struct cfg_auth auth;
    struct cfg_reload reload;
    struct cfg_admin admin;
    struct cfg_log log;
    /* provenance, for messages */
    char source[CFG_PATH_MAX];
    struct cfg_origin origin[CFG_ORIGIN_MAX];
};

/**
 * Fill `out` with every default (no file, no environment). Required keys stay empty, so the
 * result does not pass cfg_check(). Never fails.
 */
void cfg_defaults(struct cfg *out);

/**
 * Load the YAML file `path` over the defaults, then apply SIPEDGE_* environment overrides.
 * Rejects, with one message in `err` naming the file and line (or the variable), the key path
 * (e.g. `upstream.nodes[1].port`) and the problem: YAML syntax errors, unknown keys, duplicate
 * keys, wrong types, values out of range or too long, missing required keys (upstream.nodes and
 * the host of each node), referenced files that cannot be read. `path` NULL means no file
 * (defaults + environment). Resolves workers=0 to the online CPU count, sip.timer_f_ms=0 to
 * 64*T1 and an empty sip.edge_host to the host name.
 * Returns 0, or -EINVAL (bad config), -ENOENT/-EACCES/-EFBIG (file) with `err` set.
 * `err` may be NULL only when `errlen` is 0. Not thread-safe against setenv() (reads environ).
 */
int cfg_load(const char *path, struct cfg *out, char *err, size_t errlen);

/**
 * Semantic checks that span keys, on a loaded config: TLS certificate and key for the listener
 * unless listen.plain_tcp, a client CA when verify_client, the upstream certificate, key and
 * CA, at least one token key source, auth.default_kid among auth.keys, the cucm symmetric key
 * for profile cucm, redis hmac_key when redis is enabled, backoff_min <= backoff_max,
 * timer_f >= timer_t1, handshake timeout < idle timeout, distinct listen/admin ports.
 * Returns 0, or -EINVAL with `err` naming the key, its line (or variable) and the problem.
 */
int cfg_check(const struct cfg *c, char *err, size_t errlen);

/**
 * `sipedge --check-config FILE`: `argv[1]` is the file (argv[0] is ignored). Prints `ok` on
 * stdout and returns 0, or prints the error on stderr and returns 1 (2 for a usage error).
 */
int cfg_check_main(int argc, char **argv);

/**
 * Write the reference table of every key (key, environment variable, default, meaning) as
 * Markdown to `f`: the body of docs/config.md, generated so it cannot drift from the code.
 */
void cfg_write_reference(FILE *f);

/** The name of `v` as written in the file ("round_robin", "cucm", "RS256", "info", "json"). */
const char *cfg_policy_name(enum cfg_policy v);
/** See cfg_policy_name(). */
const char *cfg_profile_name(enum cfg_profile v);
/** See cfg_policy_name(); "auto" for CFG_ALG_AUTO. */
const char *cfg_alg_name(enum cfg_alg v);
/** See cfg_policy_name(). */
const char *cfg_log_level_name(enum cfg_log_level v);

#endif
