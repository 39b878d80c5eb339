// SPDX-License-Identifier: MIT
// Tests for core/cfg.c: defaults, a full file, every error kind naming file, line and key,
// environment overrides (scalars, both list forms) and the generated reference.
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cfg.h"

static char dir[256];
static struct cfg c;
static char err[1024];

static void write_file(const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    cr_assert(f, "cannot write %s", p);
    fputs(text, f);
    fclose(f);
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/sipedge-cfg-XXXXXX");
    cr_assert(mkdtemp(dir));
    write_file("cert.pem", "x\n");
    write_file("key.pem", "x\n");
    write_file("ca.pem", "x\n");
    write_file("jwt.pem", "x\n");
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    int rc = system(cmd);
    (void)rc;
}

static const char minimal[] = "listen:\n"
                              "  tls:\n"
                              "    cert: cert.pem\n"
                              "    key: key.pem\n"
                              "upstream:\n"
                              "  nodes:\n"
                              "    - host: ucm1.example\n"
                              "  tls:\n"
                              "    cert: cert.pem\n"
                              "    key: key.pem\n"
                              "    ca: ca.pem\n"
                              "auth:\n"
                              "  keys:\n"
                              "    - file: jwt.pem\n"
                              "      kid: k1\n";

static int load_text(const char *yaml)
{
    char p[512];
    write_file("t.yaml", yaml);
    snprintf(p, sizeof(p), "%s/t.yaml", dir);
    return cfg_load(p, &c, err, sizeof(err));
}

/* err must contain "t.yaml:<line>:" and `key` and `what`. */
static void assert_err(int line, const char *key, const char *what)
{
    char at[32];
    snprintf(at, sizeof(at), "t.yaml:%d:", line);
    cr_assert(strstr(err, at), "want %s in: %s", at, err);
    cr_assert(strstr(err, key), "want key %s in: %s", key, err);
    cr_assert(strstr(err, what), "want '%s' in: %s", what, err);
}

TestSuite(cfg, .init = setup, .fini = teardown);

Test(cfg, defaults_match_the_documented_values)
{
    cfg_defaults(&c);
    cr_assert_eq(c.listen.port, 5061);
    cr_assert_str_eq(c.listen.address, "0.0.0.0");
    cr_assert_not(c.listen.plain_tcp);
    cr_assert_eq(c.listen.limits.max_message, 65536);
    cr_assert_eq(c.listen.limits.max_headers, 64);
    cr_assert_eq(c.listen.limits.handshake_timeout_ms, 5000);
    cr_assert_eq(c.listen.limits.idle_timeout_ms, 600000);
    cr_assert_str_eq(c.sip.realm, "ccmsipline");
    cr_assert_str_eq(c.sip.server_header, "sipedge/" SIPEDGE_VERSION);
    cr_assert(c.sip.path && c.sip.forward_authorization);
    cr_assert_eq(c.sip.timer_t1_ms, 500);
    cr_assert_eq(c.upstream.pool_size, 2);
    cr_assert_eq(c.upstream.policy, CFG_POLICY_ORDERED);
    cr_assert_eq(c.auth.leeway_s, 60);
    cr_assert_str_eq(c.auth.identity_claim, "sub");
    cr_assert_eq(c.auth.cache.l1_capacity, 65536);
    cr_assert_eq(c.auth.cache.ttl_s, 300);
    cr_assert_eq(c.auth.cache.negative_ttl_s, 5);
    cr_assert_eq(c.auth.redis.timeout_ms, 5);
    cr_assert_str_eq(c.admin.address, "127.0.0.1");
    cr_assert_eq(c.admin.port, 9090);
    cr_assert_eq(c.log.level, CFG_LOG_INFO);
    cr_assert_eq(c.log.format, CFG_LOG_KV);
    cr_assert_eq(c.upstream.node_count, 0);
}

Test(cfg, minimal_file_loads_resolves_derived_values_and_passes_check)
{
    cr_assert_eq(load_text(minimal), 0, "%s", err);
    cr_assert_eq(cfg_check(&c, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(c.upstream.node_count, 1);
    cr_assert_str_eq(c.upstream.nodes[0].host, "ucm1.example");
    cr_assert_eq(c.upstream.nodes[0].port, 5091);
    cr_assert_eq(c.upstream.nodes[0].line, 7);
    cr_assert_eq(c.sip.timer_f_ms, 64 * 500);
    cr_assert_gt(c.workers, 0);
    cr_assert_neq(c.sip.edge_host[0], 0);
    char want[512];
    snprintf(want, sizeof(want), "%s/cert.pem", dir);
    cr_assert_str_eq(c.listen.tls.cert, want, "relative paths resolve against the file's dir");
    cr_assert_eq(c.auth.key_count, 1);
    cr_assert_str_eq(c.auth.keys[0].kid, "k1");
    cr_assert_eq(c.auth.keys[0].alg, CFG_ALG_AUTO);
}

/* The example in deploy/ sets every key: load it with its /etc/sipedge/ files made here. */
Test(cfg, example_file_sets_every_key_and_loads)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/deploy/sipedge.example.yaml", SIPEDGE_SOURCE_DIR);
    FILE *f = fopen(p, "r");
    cr_assert(f);
    static char text[65536], out[70000];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = 0;
    size_t o = 0;
    for (const char *s = text; *s;) {
        if (!strncmp(s, "/etc/sipedge/", 13)) {
            o += (size_t)snprintf(out + o, sizeof(out) - o, "%s/", dir);
            s += 13;
        } else {
            out[o++] = *s++;
        }
    }
    out[o] = 0;
    const char *files[] = {"server.pem",      "server.key",   "clients-ca.pem", "edge-client.pem",
                           "edge-client.key", "ucm-ca.pem",   "jwt-rs.pem",     "jwt-es.pem",
                           "jwks.json",       "hs256.secret", "cucm.key",       "redis-hmac.key",
                           "redis-password"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        write_file(files[i], "x\n");
    cr_assert_eq(load_text(out), 0, "%s", err);
    cr_assert_eq(cfg_check(&c, err, sizeof(err)), 0, "%s", err);
    size_t set = 0;
    for (size_t k = 0; k < CFG_ORIGIN_MAX; k++)
        set += c.origin[k].src == CFG_SRC_FILE;
    static char ref[65536];
    FILE *rf = fmemopen(ref, sizeof(ref) - 1, "w");
    cfg_write_reference(rf);
    fclose(rf);
    size_t rows = 0; /* one row per key; list item fields are rows of their own: skip them */
    for (char *line = strtok(ref, "\n"); line; line = strtok(NULL, "\n"))
        rows += !strncmp(line, "| `", 3) && !strstr(line, "[i].");
    cr_assert_eq(set, rows, "example sets %zu keys, reference lists %zu", set, rows);
    cr_assert_eq(c.upstream.node_count, 2);
    cr_assert_eq(c.upstream.policy, CFG_POLICY_ROUND_ROBIN);
    cr_assert_eq(c.auth.scopes.count, 1);
}

Test(cfg, unknown_key_names_path_and_line)
{
    cr_assert_eq(load_text("listen:\n  port: 5061\n  tls:\n    certt: x\n"), -EINVAL);
    assert_err(4, "listen.tls.certt", "unknown key (did you mean cert?)");
    cr_assert_eq(load_text("upstrem:\n  pool_size: 2\n"), -EINVAL);
    assert_err(1, "upstrem", "unknown key (did you mean upstream?)");
    cr_assert_eq(load_text("upstream:\n  nodes:\n    - hots: a\n"), -EINVAL);
    assert_err(3, "upstream.nodes[0].hots", "unknown key (did you mean host?)");
    cr_assert_eq(load_text("colour: blue\n"), -EINVAL);
    assert_err(1, "colour", "unknown key");
    cr_assert_null(strstr(err, "did you mean"), "%s", err);
}

Test(cfg, wrong_type_names_path_and_line)
{
    cr_assert_eq(load_text("workers: four\n"), -EINVAL);
    assert_err(1, "workers", "expected an integer");
    cr_assert_eq(load_text("listen:\n  plain_tcp: maybe\n"), -EINVAL);
    assert_err(2, "listen.plain_tcp", "expected true or false");
    cr_assert_eq(load_text("listen:\n  port:\n    - 1\n"), -EINVAL);
    assert_err(3, "listen.port", "got a list");
    cr_assert_eq(load_text("listen: 5061\n"), -EINVAL);
    assert_err(1, "listen", "expected a mapping");
}

Test(cfg, out_of_range_in_a_list_item_names_the_index)
{
    cr_assert_eq(load_text("upstream:\n"
                           "  nodes:\n"
                           "    - host: a\n"
                           "    - host: b\n"
                           "      port: 70000\n"),
                 -EINVAL);
    assert_err(5, "upstream.nodes[1].port", "out of range 1..65535");
}

Test(cfg, bad_enum_lists_the_choices)
{
    cr_assert_eq(load_text("upstream:\n  policy: random\n"), -EINVAL);
    assert_err(2, "upstream.policy", "ordered, round_robin");
}

Test(cfg, missing_required_keys_are_named)
{
    cr_assert_eq(load_text("listen:\n  port: 5061\n"), -EINVAL);
    cr_assert(strstr(err, "upstream.nodes: required"), "%s", err);
    cr_assert_eq(load_text("upstream:\n  nodes:\n    - port: 5091\n"), -EINVAL);
    assert_err(3, "upstream.nodes[0].host", "required key missing");
}

Test(cfg, unreadable_file_names_key_line_and_path)
{
    cr_assert_eq(load_text("listen:\n  tls:\n    cert: nope.pem\n"), -EINVAL);
    assert_err(3, "listen.tls.cert", "cannot read file");
    cr_assert(strstr(err, "nope.pem: No such file"), "%s", err);
    cr_assert_eq(load_text("upstream:\n  nodes: [a]\nauth:\n  keys:\n    - file: /\n"), -EINVAL);
    assert_err(5, "auth.keys[0].file", "not a regular file");
}

Test(cfg, duplicate_key_and_syntax_error_are_reported)
{
    cr_assert_eq(load_text("admin:\n  port: 1\n  port: 2\n"), -EINVAL);
    assert_err(3, "admin.port", "duplicate key (first on line 2)");
    cr_assert_eq(load_text("admin:\n  port: [1\n"), -EINVAL);
    cr_assert(strstr(err, "t.yaml:") && strstr(err, "YAML syntax"), "%s", err);
}

Test(cfg, too_long_string_is_rejected_not_truncated)
{
    char y[600];
    memset(y, 0, sizeof(y));
    strcpy(y, "sip:\n  realm: ");
    memset(y + strlen(y), 'r', 300);
    strcat(y, "\n");
    cr_assert_eq(load_text(y), -EINVAL);
    assert_err(2, "sip.realm", "too long (300 bytes, at most 255)");
}

Test(cfg, quote_in_realm_is_refused)
{
    char y[1024];
    snprintf(y, sizeof(y), "%ssip:\n  realm: 'a\"b'\n", minimal);
    cr_assert_eq(load_text(y), -EINVAL);
    assert_err(17, "sip.realm", "must not contain");
}

Test(cfg, missing_file_is_an_error_naming_it)
{
    cr_assert_eq(cfg_load("/nonexistent/sipedge.yaml", &c, err, sizeof(err)), -ENOENT);
    cr_assert(strstr(err, "/nonexistent/sipedge.yaml: cannot open"), "%s", err);
}

Test(cfg, env_overrides_scalars)
{
    setenv("SIPEDGE_LISTEN_ADDRESS", "127.0.0.1", 1);
    setenv("SIPEDGE_UPSTREAM_POOL_SIZE", "4", 1);
    setenv("SIPEDGE_AUTH_REDIS_HOST", "redis.svc", 1);
    setenv("SIPEDGE_AUTH_REDIS_ENABLED", "yes", 1);
    setenv("SIPEDGE_LOG_FORMAT", "json", 1);
    setenv("SIPEDGE_AUTH_SCOPES", "sip,register", 1);
    cr_assert_eq(load_text(minimal), 0, "%s", err);
    cr_assert_str_eq(c.listen.address, "127.0.0.1");
    cr_assert_eq(c.upstream.pool_size, 4);
    cr_assert_str_eq(c.auth.redis.host, "redis.svc");
    cr_assert(c.auth.redis.enabled);
    cr_assert_eq(c.log.format, CFG_LOG_JSON);
    cr_assert_eq(c.auth.scopes.count, 2);
    cr_assert_str_eq(c.auth.scopes.v[1], "register");
    /* redis on without its key: cfg_check names the key */
    cr_assert_eq(cfg_check(&c, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "auth.redis.hmac_key: required"), "%s", err);
}

Test(cfg, env_compact_list_replaces_the_file_list)
{
    setenv("SIPEDGE_UPSTREAM_NODES", "ucm1.example:5091:ucm1.example,[::1]:6000,ucm3::san3", 1);
    cr_assert_eq(load_text(minimal), 0, "%s", err);
    cr_assert_eq(c.upstream.node_count, 3);
    cr_assert_str_eq(c.upstream.nodes[0].name, "ucm1.example");
    cr_assert_str_eq(c.upstream.nodes[1].host, "::1");
    cr_assert_eq(c.upstream.nodes[1].port, 6000);
    cr_assert_str_eq(c.upstream.nodes[2].host, "ucm3");
    cr_assert_eq(c.upstream.nodes[2].port, 5091);
    cr_assert_str_eq(c.upstream.nodes[2].name, "san3");
    cr_assert_eq(c.upstream.nodes[2].line, 0);
}

Test(cfg, env_indexed_form_changes_and_appends_items)
{
    setenv("SIPEDGE_UPSTREAM_NODES_0_PORT", "5092", 1);
    setenv("SIPEDGE_UPSTREAM_NODES_1_HOST", "ucm2.example", 1);
    char keyp[512];
    snprintf(keyp, sizeof(keyp), "%s/jwt.pem;kid2;ES256", dir);
    setenv("SIPEDGE_AUTH_KEYS", keyp, 1);
    cr_assert_eq(load_text(minimal), 0, "%s", err);
    cr_assert_eq(c.upstream.node_count, 2);
    cr_assert_eq(c.upstream.nodes[0].port, 5092);
    cr_assert_str_eq(c.upstream.nodes[0].host, "ucm1.example");
    cr_assert_str_eq(c.upstream.nodes[1].host, "ucm2.example");
    cr_assert_eq(c.auth.key_count, 1);
    cr_assert_str_eq(c.auth.keys[0].kid, "kid2");
    cr_assert_eq(c.auth.keys[0].alg, CFG_ALG_ES256);
}

Test(cfg, bad_env_value_names_the_variable)
{
    setenv("SIPEDGE_LISTEN_PORT", "http", 1);
    cr_assert_eq(load_text(minimal), -EINVAL);
    cr_assert(strstr(err, "environment SIPEDGE_LISTEN_PORT: listen.port: expected an integer"),
              "%s", err);
}

Test(cfg, bad_env_list_item_names_variable_and_index)
{
    setenv("SIPEDGE_UPSTREAM_NODES", "a:5091,b:99999", 1);
    cr_assert_eq(load_text(minimal), -EINVAL);
    cr_assert(strstr(err, "environment SIPEDGE_UPSTREAM_NODES: upstream.nodes[1].port: value "
                          "99999 out of range"),
              "%s", err);
    setenv("SIPEDGE_UPSTREAM_NODES", "a", 1);
    setenv("SIPEDGE_UPSTREAM_NODES_3_HOST", "x", 1);
    cr_assert_eq(load_text(minimal), -EINVAL);
    cr_assert(strstr(err, "SIPEDGE_UPSTREAM_NODES_3_HOST: upstream.nodes[3].host: index past"),
              "%s", err);
}

Test(cfg, env_file_key_that_cannot_be_read_names_the_variable)
{
    setenv("SIPEDGE_AUTH_JWKS", "/nonexistent/jwks.json", 1);
    cr_assert_eq(load_text(minimal), -EINVAL);
    cr_assert(strstr(err, "environment SIPEDGE_AUTH_JWKS: auth.jwks: cannot read file"), "%s", err);
}

Test(cfg, check_names_cross_key_problems_with_their_line)
{
    char y[1024];
    snprintf(y, sizeof(y),
             "upstream:\n  backoff_min_ms: 5000\n  backoff_max_ms: 100\n  nodes: [ucm1]\n"
             "  tls: {cert: cert.pem, key: key.pem, ca: ca.pem}\n"
             "listen: {plain_tcp: true}\nauth: {jwks: jwt.pem}\n");
    cr_assert_eq(load_text(y), 0, "%s", err);
    cr_assert_eq(cfg_check(&c, err, sizeof(err)), -EINVAL);
    assert_err(2, "upstream.backoff_min_ms", "greater than upstream.backoff_max_ms");
}

Test(cfg, check_requires_listener_certificate_unless_plain_tcp)
{
    cr_assert_eq(load_text("upstream:\n  nodes: [ucm1]\n"
                           "  tls: {cert: cert.pem, key: key.pem, ca: ca.pem}\n"
                           "auth: {jwks: jwt.pem}\n"),
                 0, "%s", err);
    cr_assert_eq(cfg_check(&c, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "listen.tls.cert: required (unless listen.plain_tcp"), "%s", err);
}

Test(cfg, check_requires_the_ucm_listeners_ca_and_node_names)
{
    static const char base[] = "upstream:\n  nodes: [ucm1]\n"
                               "  tls: {cert: cert.pem, key: key.pem, ca: ca.pem}\n"
                               "auth: {jwks: jwt.pem}\n"
                               "listen: {port: 5061, tls: {cert: c.pem, key: k.pem}}\n";
    char y[1024];
    write_file("c.pem", "x\n");
    write_file("k.pem", "x\n");
    snprintf(y, sizeof(y), "%sucm_listen:\n  port: 5062\n", base);
    cr_assert_eq(load_text(y), 0, "%s", err);
    cr_assert_eq(cfg_check(&c, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "ucm_listen.tls.ca: required with ucm_listen.port"), "%s", err);
    write_file("ucm-ca.pem", "x\n");
    snprintf(y, sizeof(y), "%sucm_listen:\n  port: 5062\n  tls: {ca: ucm-ca.pem}\n", base);
    cr_assert_eq(load_text(y), 0, "%s", err);
    cr_assert_eq(cfg_check(&c, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "ucm_listen.node_names: required with ucm_listen.port"), "%s", err);
    snprintf(y, sizeof(y),
             "%sucm_listen:\n  port: 5061\n  tls: {ca: ucm-ca.pem}\n  node_names: [ucm1]\n", base);
    cr_assert_eq(load_text(y), 0, "%s", err);
    cr_assert_eq(cfg_check(&c, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "ucm_listen.port: the same as listen.port"), "%s", err);
    snprintf(y, sizeof(y),
             "%sucm_listen:\n  port: 5062\n  tls: {ca: ucm-ca.pem}\n  node_names: [ucm1, ucm2]\n",
             base);
    cr_assert_eq(load_text(y), 0, "%s", err);
    cr_assert_eq(cfg_check(&c, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(c.ucm_listen.node_names.count, 2);
}

Test(cfg, check_main_prints_ok_or_the_error)
{
    char p[512];
    write_file("good.yaml", minimal);
    snprintf(p, sizeof(p), "%s/good.yaml", dir);
    char *argv_ok[] = {"--check-config", p, NULL};
    cr_assert_eq(cfg_check_main(2, argv_ok), 0);
    write_file("bad.yaml", "nope: 1\n");
    snprintf(p, sizeof(p), "%s/bad.yaml", dir);
    char *argv_bad[] = {"--check-config", p, NULL};
    cr_assert_eq(cfg_check_main(2, argv_bad), 1);
    char *argv_none[] = {"--check-config", NULL};
    cr_assert_eq(cfg_check_main(1, argv_none), 2);
}

Test(cfg, docs_contain_the_generated_reference)
{
    static char ref[65536], doc[131072];
    FILE *f = fmemopen(ref, sizeof(ref) - 1, "w");
    cfg_write_reference(f);
    fclose(f);
    char p[512];
    snprintf(p, sizeof(p), "%s/docs/config.md", SIPEDGE_SOURCE_DIR);
    FILE *d = fopen(p, "r");
    cr_assert(d);
    size_t n = fread(doc, 1, sizeof(doc) - 1, d);
    fclose(d);
    doc[n] = 0;
    cr_assert(strstr(doc, ref),
              "docs/config.md is stale: regenerate the table with cfg_write_reference()");
}
