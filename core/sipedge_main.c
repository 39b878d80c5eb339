// SPDX-License-Identifier: MIT
// sipedge: the SIP OAuth edge. Loads the configuration, builds the shared state (TLS contexts,
// key store, metrics), starts one io_uring worker per core and the admin HTTP thread, then
// handles signals and file changes: SIGHUP or a changed certificate/key file (core/filewatch.h)
// reloads certificates and keys, SIGTERM/SIGINT drain and exit 0.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "auth/keys.h"
#include "core/cfg.h"
#include "core/drain.h"
#include "core/edge.h"
#include "core/filewatch.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/worker.h"
#include "net/admin.h"
#include "net/conn.h"
#include "net/loop.h"
#include "net/uring_check.h"
#include "tls/tls.h"

void edge_tls_get(struct edge *e, struct tls_ctx **server, struct tls_ctx **client, uint64_t *gen)
{
    pthread_mutex_lock(&e->mu);
    *server = e->server_tls != NULL ? tls_ctx_ref(e->server_tls) : NULL;
    *client = e->client_tls != NULL ? tls_ctx_ref(e->client_tls) : NULL;
    *gen = e->tls_gen;
    pthread_mutex_unlock(&e->mu);
}

struct tls_ctx *edge_ucm_tls_get(struct edge *e)
{
    pthread_mutex_lock(&e->mu);
    struct tls_ctx *t = e->ucm_tls != NULL ? tls_ctx_ref(e->ucm_tls) : NULL;
    pthread_mutex_unlock(&e->mu);
    return t;
}

socklen_t edge_sockaddr(const char *address, uint32_t port, struct sockaddr_storage *ss)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, address, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        return sizeof(*s4);
    }
    if (inet_pton(AF_INET6, address, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        return sizeof(*s6);
    }
    return 0;
}

/* The UCM listener's context: our server certificate, UCM's CA, its node names (issue 9). */
static int load_ucm_tls(struct edge *e, struct tls_ctx **out)
{
    const struct cfg *c = &e->cfg;
    *out = NULL;
    if (!c->ucm_listen.port)
        return 0;
    const char *names[CFG_MAX_SCOPES];
    for (uint32_t i = 0; i < c->ucm_listen.node_names.count; i++)
        names[i] = c->ucm_listen.node_names.v[i];
    struct tls_server_opts so = {
        .cert_file = c->listen.tls.cert,
        .key_file = c->listen.tls.key,
        .client_ca_file = c->ucm_listen.ca,
        .require_client_cert = true,
        .peer_names = names,
        .n_peer_names = c->ucm_listen.node_names.count,
        .openssl_records = c->listen.tls.openssl_records,
        .own_aead = true, /* a few connections, each carrying many clients' traffic */
    };
    char err[512];
    if (tls_server_ctx_new(&so, out, err, sizeof(err)) < 0) {
        log_event(LOG_ERROR, "tls_ucm_listen_config", LOG_S("error", err));
        return -1;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: sipedge CONFIG.yaml          run the edge\n"
               "       sipedge --check-config FILE  validate a configuration and exit\n"
               "       sipedge --config-reference   print every key with its default\n"
               "       sipedge --version\n");
}

/* ---- loading ------------------------------------------------------------------------------ */

static int load_tls(struct edge *e, struct tls_ctx **server, struct tls_ctx **client)
{
    const struct cfg *c = &e->cfg;
    char err[512];
    *server = *client = NULL;
    if (!c->listen.plain_tcp) {
        struct tls_server_opts so = {
            .cert_file = c->listen.tls.cert,
            .key_file = c->listen.tls.key,
            .client_ca_file = c->listen.tls.client_ca[0] ? c->listen.tls.client_ca : NULL,
            .require_client_cert = c->listen.tls.verify_client,
            .openssl_records = c->listen.tls.openssl_records,
            /* a TLS lane per worker, ≈ 320 KiB each; not for UCM's listener (few handshakes) */
            .lanes = e->n_workers,
        };
        if (tls_server_ctx_new(&so, server, err, sizeof(err)) < 0) {
            log_event(LOG_ERROR, "tls_server_config", LOG_S("error", err));
            return -1;
        }
    }
    struct tls_client_opts co = {
        .cert_file = c->upstream.tls.cert,
        .key_file = c->upstream.tls.key,
        .ca_file = c->upstream.tls.ca,
        .openssl_records = c->upstream.tls.openssl_records,
        .rekey_records = c->upstream.tls.rekey_records,
        .own_aead = true, /* the UCM pool: a few connections carry every REGISTER */
    };
    if (tls_client_ctx_new(&co, client, err, sizeof(err)) < 0) {
        log_event(LOG_ERROR, "tls_client_config", LOG_S("error", err));
        tls_ctx_unref(*server);
        *server = NULL;
        return -1;
    }
    return 0;
}

static int load_keys(struct edge *e, struct keys_set **out)
{
    const struct cfg_auth *a = &e->cfg.auth;
    struct keys_pem_spec pems[CFG_MAX_KEYS];
    for (uint32_t i = 0; i < a->key_count; i++) {
        pems[i].path = a->keys[i].file;
        pems[i].kid = a->keys[i].kid;
        pems[i].alg = a->keys[i].alg == CFG_ALG_AUTO ? NULL : cfg_alg_name(a->keys[i].alg);
    }
    struct keys_hs_spec hs = {.path = a->hs256_secret, .kid = a->default_kid};
    struct keys_config kc = {
        .pems = pems,
        .n_pems = a->key_count,
        .jwks_path = a->jwks[0] ? a->jwks : NULL,
        .hs_secrets = a->hs256_secret[0] ? &hs : NULL,
        .n_hs_secrets = a->hs256_secret[0] ? 1 : 0,
        .sym_key_path = a->cucm_key[0] ? a->cucm_key : NULL,
        .default_kid = a->default_kid[0] ? a->default_kid : NULL,
    };
    char err[512], warn[1024] = "";
    int r = keys_set_load(&kc, out, err, sizeof(err), warn, sizeof(warn));
    if (warn[0])
        log_event(LOG_WARN, "keys_skipped", LOG_S("detail", warn));
    if (r < 0) {
        log_event(LOG_ERROR, "keys_load_failed", LOG_S("error", err));
        return -1;
    }
    return 0;
}

static int load_hmac_key(struct edge *e)
{
    const struct cfg_redis *r = &e->cfg.auth.redis;
    if (!r->enabled)
        return 0;
    int fd = open(r->hmac_key, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_event(LOG_ERROR, "redis_hmac_key", LOG_S("file", r->hmac_key),
                  LOG_S("error", strerror(errno)));
        return -1;
    }
    ssize_t n = read(fd, e->hmac_key, sizeof(e->hmac_key));
    close(fd);
    while (n > 0 && (e->hmac_key[n - 1] == '\n' || e->hmac_key[n - 1] == '\r'))
        n--;
    if (n < 16) {
        log_event(LOG_ERROR, "redis_hmac_key", LOG_S("file", r->hmac_key),
                  LOG_S("error", "shorter than 16 bytes"));
        return -1;
    }
    e->hmac_key_len = (size_t)n;
    return 0;
}

static void build_policy(struct edge *e)
{
    const struct cfg_auth *a = &e->cfg.auth;
    jwt_policy_init(&e->policy);
    e->policy.profile = a->profile == CFG_PROFILE_CUCM   ? JWT_PROFILE_CUCM
                        : a->profile == CFG_PROFILE_AUTO ? JWT_PROFILE_AUTO
                                                         : JWT_PROFILE_GENERIC;
    e->policy.leeway = a->leeway_s;
    e->policy.iss = a->iss[0] ? a->iss : NULL;
    e->policy.aud = a->aud[0] ? a->aud : NULL;
    for (uint32_t i = 0; i < a->scopes.count && i < JWT_MAX_SCOPES; i++)
        e->policy.scopes[e->policy.n_scopes++] = a->scopes.v[i];
    if (a->identity_claim[0])
        e->policy.user_claim = a->identity_claim;
    e->policy.max_token = e->cfg.listen.limits.max_token;
}

/* Upstream hosts are resolved once here: workers never do DNS. The expected certificate name
 * stays the configured host unless a name was given. */
static int resolve_nodes(struct cfg *c)
{
    for (uint32_t i = 0; i < c->upstream.node_count; i++) {
        struct cfg_node *n = &c->upstream.nodes[i];
        if (n->name[0] == 0)
            memcpy(n->name, n->host, sizeof(n->name));
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        int r = getaddrinfo(n->host, NULL, &hints, &res);
        if (r != 0 || res == NULL) {
            log_event(LOG_ERROR, "upstream_resolve_failed", LOG_S("host", n->host),
                      LOG_S("error", gai_strerror(r)));
            return -1;
        }
        char ip[INET6_ADDRSTRLEN];
        const void *a = res->ai_family == AF_INET6
                            ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                            : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
        inet_ntop(res->ai_family, a, ip, sizeof(ip));
        freeaddrinfo(res);
        memcpy(n->host, ip, strlen(ip) + 1);
    }
    return 0;
}

/* listen(2) silently caps the backlog at net.core.somaxconn (of this network namespace): say so,
 * since a reconnect storm past the real figure has its SYNs dropped. */
static void warn_backlog_capped(uint32_t backlog)
{
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
    unsigned long max = 0;
    bool read_ok = f && fscanf(f, "%lu", &max) == 1;
    if (f)
        fclose(f);
    if (read_ok && backlog > max)
        log_event(LOG_WARN, "listen_backlog_capped", LOG_S("key", "listen.backlog"),
                  LOG_U("backlog", backlog), LOG_U("somaxconn", max),
                  LOG_S("hint", "raise the sysctl net.core.somaxconn (per network namespace: the "
                                "pod's) or lower listen.backlog"));
}

/* ---- readiness for /readyz ------------------------------------------------------------------ */

static bool ready_fn(void *arg, struct admin_text *out)
{
    struct edge *e = arg;
    bool listening = atomic_load(&e->workers_ready) == e->n_workers && e->port != 0;
    bool keys = atomic_load(&e->keys_loaded);
    bool draining = atomic_load(&e->draining);
    unsigned up_nodes = 0;
    pthread_mutex_lock(&e->mu);
    for (uint32_t n = 0; n < e->cfg.upstream.node_count; n++)
        for (unsigned w = 0; w < e->n_workers; w++)
            if (e->nodes[w][n].valid && e->nodes[w][n].st.state == UPSTREAM_UP) {
                up_nodes++;
                break;
            }
    pthread_mutex_unlock(&e->mu);
    admin_text_printf(out, "listening: %s\n", listening ? "yes" : "no");
    admin_text_printf(out, "keys_loaded: %s\n", keys ? "yes" : "no");
    admin_text_printf(out, "upstream_nodes_up: %u of %u\n", up_nodes,
                      (unsigned)e->cfg.upstream.node_count);
    admin_text_printf(out, "draining: %s\n", draining ? "yes" : "no");
    return listening && keys && up_nodes > 0 && !draining;
}

static void status_fn(void *arg, struct admin_text *out)
{
    struct edge *e = arg;
    pthread_mutex_lock(&e->mu);
    for (uint32_t n = 0; n < e->cfg.upstream.node_count; n++) {
        const struct cfg_node *cn = &e->cfg.upstream.nodes[n];
        /* The best state any worker has, and the last failure any worker saw. */
        enum upstream_state best = UPSTREAM_DOWN;
        unsigned up = 0;
        const struct upstream_node_status *failed = NULL;
        for (unsigned w = 0; w < e->n_workers; w++) {
            const struct edge_node_view *v = &e->nodes[w][n];
            if (!v->valid)
                continue;
            up += v->st.conns_up;
            if (v->st.state == UPSTREAM_UP || best != UPSTREAM_UP)
                best = v->st.state > best || v->st.state == UPSTREAM_UP ? v->st.state : best;
            if (v->st.last_diag.cause != TLS_CAUSE_NONE || v->st.last_errno != 0)
                failed = &v->st;
        }
        admin_text_printf(out, "node %s:%u name=%s state=%s conns_up=%u", cn->host,
                          (unsigned)cn->port, cn->name, upstream_state_name(best), up);
        if (failed != NULL && failed->last_diag.cause != TLS_CAUSE_NONE) {
            char line[1536];
            tls_diag_format(&failed->last_diag, cn->name, line, sizeof(line));
            admin_text_printf(out, " last_error=\"%s\"", line);
        } else if (failed != NULL) {
            admin_text_printf(out, " last_error=\"%s\"", strerror(failed->last_errno));
        }
        admin_text_printf(out, "\n");
    }
    pthread_mutex_unlock(&e->mu);
}

/* sipedge_upstream_connections{node,state}: summed over the workers' last snapshots. */
static void upstream_gauge_fn(void *arg, struct metrics_sink *sink)
{
    struct edge *e = arg;
    pthread_mutex_lock(&e->mu);
    for (uint32_t n = 0; n < e->cfg.upstream.node_count; n++) {
        int64_t up = 0, connecting = 0;
        for (unsigned w = 0; w < e->n_workers; w++) {
            if (!e->nodes[w][n].valid)
                continue;
            up += e->nodes[w][n].st.conns_up;
            connecting += e->nodes[w][n].st.conns_connecting;
        }
        char node[CFG_HOST_MAX + 8];
        snprintf(node, sizeof(node), "%s:%u", e->cfg.upstream.nodes[n].host,
                 (unsigned)e->cfg.upstream.nodes[n].port);
        metrics_sink_put(sink, (const char *const[]){node, "up"}, up);
        metrics_sink_put(sink, (const char *const[]){node, "connecting"}, connecting);
    }
    pthread_mutex_unlock(&e->mu);
}

static void reload_ok_fn(void *arg, struct metrics_sink *sink)
{
    struct edge *e = arg;
    metrics_sink_put(sink, NULL, atomic_load(&e->reload_ok) ? 1 : 0);
}

static void reload_time_fn(void *arg, struct metrics_sink *sink)
{
    struct edge *e = arg;
    metrics_sink_put(sink, NULL, atomic_load(&e->loaded_at));
}

/* ---- workers -------------------------------------------------------------------------------- */

struct worker_start {
    struct edge *e;
    unsigned idx;
};

static void worker_start_cb(struct loop *loop, void *arg)
{
    struct worker_start *ws = arg;
    struct edge *e = ws->e;
    e->workers[ws->idx] = worker_new(e, loop, ws->idx);
    if (e->workers[ws->idx] != NULL)
        atomic_fetch_add(&e->workers_ready, 1);
    else
        log_event(LOG_ERROR, "worker_start_failed", LOG_U("worker", ws->idx));
    free(ws);
}

static void worker_reload_cb(struct loop *loop, void *arg)
{
    struct worker *w = loop_user(loop);
    if (w != NULL)
        worker_reload(w);
}

static void post_all(struct edge *e, void (*fn)(struct loop *, void *), void *arg)
{
    for (unsigned i = 0; i < e->n_workers; i++)
        loop_post(loop_group_loop(e->group, i), fn, arg);
}

/* Load every certificate and key again; `trigger` is "signal" or "watch", `files` the changed
 * files that triggered it ("" for a signal). Any failure keeps the previous set. */
static void reload(struct edge *e, const char *trigger, const char *files)
{
    log_event(LOG_INFO, "reload_start", LOG_S("trigger", trigger), LOG_S("files", files));
    struct tls_ctx *server = NULL, *client = NULL, *ucm = NULL;
    struct keys_set *ks = NULL;
    if (load_tls(e, &server, &client) < 0 || load_ucm_tls(e, &ucm) < 0 || load_keys(e, &ks) < 0) {
        log_event(LOG_ERROR, "reload_failed", LOG_S("trigger", trigger),
                  LOG_S("kept", "previous certificates and keys"));
        atomic_store(&e->reload_ok, false);
        tls_ctx_unref(server);
        tls_ctx_unref(client);
        tls_ctx_unref(ucm);
        return;
    }
    keys_store_swap(e->keys, ks);
    pthread_mutex_lock(&e->mu);
    tls_ctx_swap(&e->server_tls, server);
    tls_ctx_swap(&e->client_tls, client);
    tls_ctx_swap(&e->ucm_tls, ucm);
    e->tls_gen++;
    pthread_mutex_unlock(&e->mu);
    post_all(e, worker_reload_cb, NULL);
    atomic_store(&e->reload_ok, true);
    atomic_store(&e->loaded_at, (int64_t)time(NULL));
    log_event(LOG_INFO, "reload_done", LOG_S("trigger", trigger));
}

/* The main thread's wait: signals (SIGHUP reloads; SIGTERM/SIGINT return) and, every
 * reload.watch_interval_ms, a look at the files a reload reads (core/filewatch.h). */
static void wait_signals(struct edge *e, struct filewatch *fw, int sfd)
{
    uint32_t every = e->cfg.reload.watch_interval_ms;
    uint64_t next = loop_clock_ms() + every; /* signals do not postpone the watch */

    for (;;) {
        int wait = -1;
        if (every) {
            uint64_t now = loop_clock_ms();
            if (now >= next) {
                char changed[1024];
                if (filewatch_poll(fw, changed, sizeof(changed)) == FILEWATCH_SETTLED) {
                    reload(e, "watch", changed);
                    filewatch_mark(fw);
                }
                next = loop_clock_ms() + every;
                now = next - every;
            }
            wait = (int)(next - now);
        }
        struct pollfd p = {.fd = sfd, .events = POLLIN};
        int r = poll(&p, 1, wait);
        if (r < 0 && errno != EINTR)
            return;
        if (r <= 0)
            continue;
        struct signalfd_siginfo si;
        ssize_t n = read(sfd, &si, sizeof(si));
        if (n != sizeof(si)) {
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            return;
        }
        if (si.ssi_signo != SIGHUP)
            return; /* SIGTERM / SIGINT */
        filewatch_snapshot(fw);
        reload(e, "signal", "");
    }
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--check-config") == 0) {
        int rc = cfg_check_main(argc - 1, argv + 1);
        return rc == 0 && uring_require("check_failed") < 0 ? 1 : rc;
    }
    if (argc >= 2 && strcmp(argv[1], "--config-reference") == 0) {
        cfg_write_reference(stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("sipedge %s\n", SIPEDGE_VERSION);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    static struct edge edge; /* large (node views): not on the stack */
    struct edge *e = &edge;
    pthread_mutex_init(&e->mu, NULL);
    char err[1024];
    if (cfg_load(argv[1], &e->cfg, err, sizeof(err)) < 0 ||
        cfg_check(&e->cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "sipedge: %s\n", err);
        return 1;
    }
    log_init(STDERR_FILENO, (enum log_level)e->cfg.log.level, (enum log_format)e->cfg.log.format);
    if (uring_require("startup_failed") < 0)
        return 1;
    if (resolve_nodes(&e->cfg) < 0)
        return 1;
    build_policy(e);
    /* fingerprinted before the first load: a change while it reads shows at the first poll */
    static struct filewatch watch; /* ~50 KB of paths: not on the stack */
    filewatch_init(&watch);
    if (e->cfg.reload.watch_interval_ms && filewatch_add_cfg(&watch, &e->cfg) < 0)
        log_event(LOG_WARN, "reload_watch", LOG_U("files", watch.n),
                  LOG_S("error", "too many files: the rest are not watched"));
    if (load_hmac_key(e) < 0)
        return 1;
    if (flow_keys_init(&e->flow_keys) < 0) {
        log_event(LOG_ERROR, "startup_failed", LOG_S("error", "no entropy for the flow key"));
        return 1;
    }
    e->n_workers = e->cfg.workers > EDGE_MAX_WORKERS ? EDGE_MAX_WORKERS : e->cfg.workers;
    if (load_tls(e, &e->server_tls, &e->client_tls) < 0 || load_ucm_tls(e, &e->ucm_tls) < 0)
        return 1;
    struct keys_set *ks = NULL;
    if (load_keys(e, &ks) < 0)
        return 1;
    e->keys = keys_store_new(ks); /* takes our reference over */
    atomic_store(&e->keys_loaded, true);
    atomic_store(&e->reload_ok, true);
    atomic_store(&e->loaded_at, (int64_t)time(NULL));

    char names[512];
    if (tls_ctx_cert_names(e->client_tls, names, sizeof(names)) >= 0)
        log_event(LOG_INFO, "upstream_client_certificate", LOG_S("names", names),
                  LOG_S("hint", "enter these in UCM under Device > Expressway-C"));
    if (e->server_tls != NULL && e->n_workers > 1 && tls_ctx_lanes(e->server_tls) == 0)
        log_event(LOG_WARN, "tls_lanes_off",
                  LOG_S("cause", "OpenSSL runs other providers than its default one (FIPS?)"),
                  LOG_S("effect", "the workers share one OpenSSL context: handshakes cost more"));

    struct loop_cfg lc;
    loop_cfg_default(&lc);
    lc.max_conns = e->cfg.listen.limits.max_conns_per_worker;
    lc.backlog = (int)e->cfg.listen.backlog;
    warn_backlog_capped(e->cfg.listen.backlog);
    lc.max_conns_per_source = e->cfg.listen.limits.max_conns_per_ip;
    lc.out_cap = e->cfg.listen.limits.out_queue_max;
    if (lc.out_high > lc.out_cap / 2)
        lc.out_high = lc.out_cap / 2;
    if (lc.out_low > lc.out_high / 4)
        lc.out_low = lc.out_high / 4;
    if (e->cfg.listen.limits.max_queue_delay_ms)
        lc.flags |= LOOP_CFG_F_RX_TIMESTAMPS; /* how long input waited: admission by delay */
    lc.out_cap_trunk = e->cfg.upstream.out_queue_max;
    lc.out_high_trunk = lc.out_cap_trunk / 4;
    e->metrics = metrics_new(e->n_workers);
    e->group = loop_group_new(&lc, e->n_workers);
    if (e->metrics == NULL || e->group == NULL) {
        log_event(LOG_ERROR, "startup_failed", LOG_S("error", strerror(errno)));
        return 1;
    }
    for (unsigned i = 0; i < e->n_workers; i++) {
        struct worker_start *ws = malloc(sizeof(*ws));
        if (ws == NULL)
            return 1;
        ws->e = e;
        ws->idx = i;
        loop_post(loop_group_loop(e->group, i), worker_start_cb, ws);
    }

    struct sockaddr_storage ss;
    socklen_t sl = edge_sockaddr(e->cfg.listen.address, e->cfg.listen.port, &ss);
    if (sl == 0) {
        log_event(LOG_ERROR, "listen_address", LOG_S("address", e->cfg.listen.address),
                  LOG_S("error", "not an IPv4 or IPv6 literal"));
        return 1;
    }
    int port = loop_group_listen(e->group, (struct sockaddr *)&ss, sl, &worker_client_ops, e);
    if (port < 0) {
        log_event(LOG_ERROR, "listen_failed", LOG_S("address", e->cfg.listen.address),
                  LOG_U("port", e->cfg.listen.port), LOG_S("error", strerror(-port)));
        return 1;
    }
    e->port = (uint16_t)port;
    if (e->cfg.ucm_listen.port) { /* UCM's own connections for its requests (issue 9) */
        const char *ua =
            e->cfg.ucm_listen.address[0] ? e->cfg.ucm_listen.address : e->cfg.listen.address;
        sl = edge_sockaddr(ua, e->cfg.ucm_listen.port, &ss);
        int up = sl == 0
                     ? -EINVAL
                     : loop_group_listen(e->group, (struct sockaddr *)&ss, sl, &worker_ucm_ops, e);
        if (up < 0) {
            log_event(LOG_ERROR, "listen_failed", LOG_S("address", ua),
                      LOG_U("port", e->cfg.ucm_listen.port), LOG_S("error", strerror(-up)));
            return 1;
        }
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before threads start: they inherit the mask */
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);

    metrics_set_gauge_fn(e->metrics, METRIC_UPSTREAM_CONNECTIONS, upstream_gauge_fn, e);
    metrics_set_gauge_fn(e->metrics, METRIC_RELOAD_LAST_OK, reload_ok_fn, e);
    metrics_set_gauge_fn(e->metrics, METRIC_RELOAD_LAST_OK_TIME, reload_time_fn, e);
    struct admin *admin = NULL;
    if (e->cfg.admin.enabled) {
        struct admin_hooks hooks = {
            .metrics = e->metrics, .ready = ready_fn, .status = status_fn, .arg = e};
        int r = admin_start(e->cfg.admin.address, (uint16_t)e->cfg.admin.port, &hooks, &admin);
        if (r < 0) {
            log_event(LOG_ERROR, "admin_failed", LOG_S("address", e->cfg.admin.address),
                      LOG_U("port", e->cfg.admin.port), LOG_S("error", strerror(-r)));
            return 1;
        }
    }
    if (loop_group_start(e->group, false) < 0) {
        log_event(LOG_ERROR, "workers_failed");
        return 1;
    }
    log_event(LOG_INFO, "started", LOG_S("version", SIPEDGE_VERSION), LOG_U("port", e->port),
              LOG_U("workers", e->n_workers), LOG_U("admin_port", admin ? admin_port(admin) : 0),
              LOG_B("tls", !e->cfg.listen.plain_tcp), LOG_B("redis", e->cfg.auth.redis.enabled));

    wait_signals(e, &watch, sfd);

    /* Drain (core/drain.c): every connection is closed and every worker freed on its own
     * thread before the loops stop. */
    edge_drain(e);
    loop_group_free(e->group); /* stops and joins the threads */
    if (admin != NULL)
        admin_stop(admin);
    metrics_free(e->metrics);
    keys_store_free(e->keys);
    tls_ctx_unref(e->server_tls);
    tls_ctx_unref(e->client_tls);
    tls_ctx_unref(e->ucm_tls);
    close(sfd);
    log_event(LOG_INFO, "stopped");
    return 0;
}
