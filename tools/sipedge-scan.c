// SPDX-License-Identifier: MIT
// sipedge-scan FILE...: runs the SIP scanner over each file (one or more messages, CRLF line ends)
// and prints "FILE: ok" plus a JSON object per message, or "FILE: error: <reason> at <pos>".
// The JSON adds what the sub-parsers of core/sip_parse.h read: Via params, From/To/Contact URIs
// and tags, CSeq, Max-Forwards, Expires and the Bearer credentials (a value they reject shows
// as {"error": reason} and does not fail the file: only the scanner decides that).
// --verdict prints instead what the edge answers to each request, decided by the code the edge
// runs (core/sip_check.h): "FILE: verdict: 400 Duplicate To", "... 407 challenge", "... auth".
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "auth/auth.h"
#include "core/sip.h"
#include "core/sip_check.h"
#include "core/sip_parse.h"

/* Bearer tokens are credentials: printed only with --show-token, else as length and digest. */
static int show_token;
/* --verdict: print the edge's decision instead of the JSON; --realm: the Bearer realm it uses. */
static int verdict_mode;
static const char *realm = "ccmsipline";

#define MAX_HEADERS 256
#define MAX_FILE    (1u << 24)

/* A JSON string from bytes that may not be UTF-8: invalid bytes become "\xNN" text. */
static json_t *jstr(struct slice s)
{
    json_t *j = json_stringn(s.base ? s.base : "", s.len);
    if (j)
        return j;
    char *tmp = malloc(s.len * 4 + 1);
    if (!tmp)
        return json_null();
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.base[i];
        if (c < 0x80)
            tmp[n++] = (char)c;
        else
            n += (size_t)sprintf(tmp + n, "\\x%02x", c);
    }
    j = json_stringn(tmp, n);
    free(tmp);
    return j ? j : json_null();
}

static json_t *perr(int rc)
{
    json_t *o = json_object();
    json_object_set_new(o, "error", json_string(sip_perr_reason(-rc)));
    return o;
}

static void set_opt(json_t *o, const char *key, struct slice s)
{
    if (s.base)
        json_object_set_new(o, key, jstr(s));
}

static json_t *uri_json(const struct sip_uri *u)
{
    json_t *o = json_object();
    json_object_set_new(o, "scheme", jstr(u->scheme));
    if (u->kind == SIP_URI_OTHER) {
        json_object_set_new(o, "opaque", jstr(u->opaque));
        return o;
    }
    if (u->has_user)
        json_object_set_new(o, "user", jstr(u->user));
    set_opt(o, "host", u->host);
    if (u->has_port)
        json_object_set_new(o, "port", json_integer(u->port));
    set_opt(o, "params", u->params);
    set_opt(o, "headers", u->headers);
    set_opt(o, "transport", u->transport);
    if (u->lr)
        json_object_set_new(o, "lr", json_true());
    return o;
}

static json_t *name_addr_json(struct slice v)
{
    struct sip_name_addr na;
    int rc = sip_parse_name_addr(v, &na);
    if (rc < 0)
        return perr(rc);
    json_t *o = json_object();
    if (na.star) {
        json_object_set_new(o, "star", json_true());
        return o;
    }
    if (na.display.len)
        json_object_set_new(o, "display", jstr(na.display));
    json_object_set_new(o, "uri", jstr(na.uri_text));
    json_object_set_new(o, "parsed", uri_json(&na.uri));
    if (na.has_tag)
        json_object_set_new(o, "tag", jstr(na.tag));
    if (na.params.len)
        json_object_set_new(o, "params", jstr(na.params));
    return o;
}

static json_t *via_json(struct slice v)
{
    struct sip_via via;
    int rc = sip_parse_via(v, &via);
    if (rc < 0)
        return perr(rc);
    json_t *o = json_object();
    json_object_set_new(o, "transport", jstr(via.transport_text));
    json_object_set_new(o, "host", jstr(via.host));
    if (via.port)
        json_object_set_new(o, "port", json_integer(via.port));
    set_opt(o, "branch", via.branch);
    set_opt(o, "received", via.received);
    set_opt(o, "maddr", via.maddr);
    if (via.has_rport)
        json_object_set_new(o, "rport",
                            via.rport_port ? json_integer(via.rport_port) : json_true());
    if (via.params.len)
        json_object_set_new(o, "params", jstr(via.params));
    return o;
}

/* Every value of header `id`, each through `fn`, as an array. */
static json_t *list_json(const struct sip_msg *m, enum sip_hdr id, json_t *(*fn)(struct slice))
{
    json_t *a = json_array();
    struct sip_value_iter it;
    struct slice v;
    sip_values_begin(&it, m, id);
    while (sip_values_next(&it, &v))
        json_array_append_new(a, fn(v));
    return a;
}

static void add_parsed(json_t *o, const struct sip_msg *m)
{
    const struct sip_header *h;
    if (m->via_count)
        json_object_set_new(o, "via", list_json(m, SIP_HDR_VIA, via_json));
    if ((h = sip_first(m, SIP_HDR_FROM)))
        json_object_set_new(o, "from", name_addr_json(h->value));
    if ((h = sip_first(m, SIP_HDR_TO)))
        json_object_set_new(o, "to", name_addr_json(h->value));
    if (sip_first(m, SIP_HDR_CONTACT))
        json_object_set_new(o, "contact", list_json(m, SIP_HDR_CONTACT, name_addr_json));
    if ((h = sip_first(m, SIP_HDR_CSEQ))) {
        struct sip_cseq cs;
        int rc = sip_parse_cseq(h->value, &cs);
        json_t *c = rc < 0 ? perr(rc) : json_object();
        if (rc == 0) {
            json_object_set_new(c, "seq", json_integer(cs.seq));
            json_object_set_new(c, "method", jstr(cs.method_text));
        }
        json_object_set_new(o, "cseq", c);
    }
    if ((h = sip_first(m, SIP_HDR_MAX_FORWARDS))) {
        uint8_t mf;
        int rc = sip_parse_max_forwards(h->value, &mf);
        json_object_set_new(o, "max_forwards", rc < 0 ? perr(rc) : json_integer(mf));
    }
    if ((h = sip_first(m, SIP_HDR_EXPIRES))) {
        uint32_t ex;
        int rc = sip_parse_expires(h->value, &ex);
        json_object_set_new(o, "expires", rc < 0 ? perr(rc) : json_integer(ex));
    }
    /* the first Bearer of any realm, Proxy-Authorization before Authorization */
    static const enum sip_hdr cred_ids[] = {SIP_HDR_PROXY_AUTHORIZATION, SIP_HDR_AUTHORIZATION};
    json_t *bearer = NULL;
    for (size_t k = 0; k < 2 && !bearer; k++) {
        for (size_t i = 0; i < m->header_count && !bearer; i++) {
            if (m->headers[i].id != cred_ids[k])
                continue;
            struct sip_cred cred;
            int rc = sip_parse_cred(m->headers[i].value, &cred);
            if (rc == -SIP_CRED_NOT_BEARER)
                continue;
            bearer = rc < 0 ? perr(rc) : json_object();
            json_object_set_new(bearer, "header", jstr(m->headers[i].name));
            if (rc < 0)
                break;
            json_object_set_new(bearer, "form",
                                json_string(cred.token68 ? "token68" : "token-param"));
            if (cred.has_realm)
                json_object_set_new(bearer, "realm", jstr(cred.realm));
            if (show_token) {
                json_object_set_new(bearer, "token", jstr(cred.token));
            } else {
                /* the digest the edge logs and keys its caches and revocations by */
                char hex[2 * CACHE_DIGEST_LEN + 1];
                auth_token_digest_hex(cred.token.base, cred.token.len, hex);
                json_object_set_new(bearer, "token_sha256", json_string(hex));
            }
            json_object_set_new(bearer, "token_length", json_integer((json_int_t)cred.token.len));
        }
    }
    if (bearer)
        json_object_set_new(o, "bearer", bearer);
}

static json_t *msg_json(const struct sip_msg *m)
{
    json_t *o = json_object();
    if (m->is_request) {
        json_object_set_new(o, "method", jstr(m->method_text));
        json_object_set_new(o, "method_known", json_boolean(m->method != SIP_METHOD_UNKNOWN));
        json_object_set_new(o, "uri", jstr(m->uri));
    } else {
        json_object_set_new(o, "status", json_integer(m->status));
        json_object_set_new(o, "reason", jstr(m->reason));
    }
    json_object_set_new(o, "version", jstr(m->version));
    json_t *hs = json_array();
    for (size_t i = 0; i < m->header_count; i++) {
        const struct sip_header *h = &m->headers[i];
        json_t *jh = json_object();
        json_object_set_new(jh, "id", json_string(h->id ? sip_hdr_name(h->id) : "other"));
        json_object_set_new(jh, "name", jstr(h->name));
        if (!show_token &&
            (h->id == SIP_HDR_PROXY_AUTHORIZATION || h->id == SIP_HDR_AUTHORIZATION)) {
            /* credentials: the scheme and the size, not the secret (see "bearer") */
            char red[96];
            size_t sp = 0;
            while (sp < h->value.len && h->value.base[sp] != ' ' && sp < 32)
                sp++;
            snprintf(red, sizeof(red), "%.*s <%zu bytes of credentials not shown>", (int)sp,
                     h->value.base, h->value.len);
            json_object_set_new(jh, "value", json_string(red));
        } else {
            json_object_set_new(jh, "value", jstr(h->value));
        }
        json_array_append_new(hs, jh);
    }
    json_object_set_new(o, "headers", hs);
    add_parsed(o, m);
    json_object_set_new(o, "via_count", json_integer(m->via_count));
    if (m->via_first.base)
        json_object_set_new(o, "via_first", jstr(m->via_first));
    json_object_set_new(o, "header_length", json_integer((json_int_t)m->header_len));
    json_object_set_new(o, "content_length", json_integer((json_int_t)m->content_length));
    json_object_set_new(o, "body_length", json_integer((json_int_t)m->body.len));
    return o;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(MAX_FILE);
    size_t n = buf ? fread(buf, 1, MAX_FILE, f) : 0;
    int bad = ferror(f) || !feof(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        errno = bad ? EFBIG : ENOMEM;
        return NULL;
    }
    *len = n;
    return buf;
}

/* "FILE: verdict: <what the edge does>", from the one decision the edge makes. */
static void print_verdict(const char *path, const struct sip_verdict *v, bool closes, bool ack)
{
    printf("%s: verdict: ", path);
    switch (v->action) {
    case SIP_CHECK_ANSWER:
        printf("%d %s", v->status, v->reason);
        for (size_t i = 0; i < v->n_extra; i++)
            printf(" [%.*s]", (int)v->extra[i].len, v->extra[i].base);
        break;
    case SIP_CHECK_CHALLENGE:
        printf("%d challenge%s%s", v->status, v->error ? " " : "", v->error ? v->error : "");
        break;
    case SIP_CHECK_FORWARD:
        /* what a fresh connection gets: proxied only once bound by a REGISTER (core/policy.h) */
        if (ack)
            printf("forward [an ACK: routed once the connection is bound, never answered]");
        else if (v->has_cred)
            printf("auth [its own Bearer is verified, then it is forwarded]");
        else
            printf("407 challenge [unbound connection; forwarded once bound]");
        break;
    default:
        printf("%s", sip_check_action_name(v->action));
        break;
    }
    printf("%s\n", closes && v->action != SIP_CHECK_CLOSE ? ", then close" : "");
}

/* Scans every message of one file; 0 when all were valid. */
static int scan_file(const char *path)
{
    size_t len;
    char *buf = read_file(path, &len);
    if (!buf) {
        printf("%s: error: %s\n", path, strerror(errno));
        return 1;
    }
    struct sip_header headers[MAX_HEADERS];
    struct sip_msg msg;
    sip_msg_init(&msg, headers, MAX_HEADERS);
    size_t off = 0;
    int rc = 0, count = 0;
    while (off < len) {
        off += sip_keepalive_len(buf + off, len - off);
        if (off == len && count > 0)
            break;
        ssize_t n = sip_scan(buf + off, len - off, 0, &msg);
        if (n == SIP_INCOMPLETE) {
            if (verdict_mode)
                printf("%s: verdict: wait (incomplete)\n", path);
            printf("%s: error: Incomplete Message at %zu\n", path, len);
            rc = 1;
            break;
        }
        if (n < 0) {
            if (verdict_mode) {
                struct sip_verdict v;
                sip_check_garbage(&msg, &v);
                print_verdict(path, &v, true, false);
            }
            printf("%s: error: %s at %zu\n", path, sip_err_reason(msg.err), off + msg.err_pos);
            rc = 1;
            break;
        }
        if (verdict_mode) {
            struct sip_verdict v;
            sip_check_request(&msg, slice_make(realm, strlen(realm)), &v);
            print_verdict(path, &v, false, msg.method == SIP_METHOD_ACK);
            off += (size_t)n;
            count++;
            continue;
        }
        json_t *j = msg_json(&msg);
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s: ok\n%s\n", path, s ? s : "null");
        free(s);
        json_decref(j);
        off += (size_t)n;
        count++;
    }
    if (len == 0) {
        printf("%s: error: Empty File at 0\n", path);
        rc = 1;
    }
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    int first = 1;
    for (; first < argc; first++) {
        if (strcmp(argv[first], "--show-token") == 0)
            show_token = 1;
        else if (strcmp(argv[first], "--verdict") == 0)
            verdict_mode = 1;
        else if (strcmp(argv[first], "--realm") == 0 && first + 1 < argc)
            realm = argv[++first];
        else
            break;
    }
    if (argc <= first) {
        fprintf(stderr,
                "usage: %s [--show-token] [--verdict [--realm R]] FILE...\n"
                "Scans each file as a SIP stream; prints ok + JSON per message or error.\n"
                "A bearer token is shown as its length and SHA-256 (the digest sipedge logs);\n"
                "--show-token prints the token itself.\n"
                "--verdict prints what sipedge answers to each request instead of the JSON\n"
                "(\"FILE: verdict: 400 Duplicate To\"; 407 challenge; auth: the token is checked,\n"
                "then the REGISTER forwarded; drop; close), decided by the edge's own code;\n"
                "--realm sets the Bearer realm it expects (ccmsipline).\n",
                argv[0]);
        return 2;
    }
    int failed = 0;
    for (int i = first; i < argc; i++)
        failed |= scan_file(argv[i]);
    return failed;
}
