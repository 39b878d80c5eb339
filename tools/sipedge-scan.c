// SPDX-License-Identifier: MIT
// sipedge-scan FILE...: runs the SIP scanner over each file (one or more messages, CRLF line ends)
// and prints "FILE: ok" plus a JSON object per message, or "FILE: error: <reason> at <pos>".
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/sip.h"

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
        json_object_set_new(jh, "value", jstr(h->value));
        json_array_append_new(hs, jh);
    }
    json_object_set_new(o, "headers", hs);
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
            printf("%s: error: Incomplete Message at %zu\n", path, len);
            rc = 1;
            break;
        }
        if (n < 0) {
            printf("%s: error: %s at %zu\n", path, sip_err_reason(msg.err), off + msg.err_pos);
            rc = 1;
            break;
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
    if (argc < 2) {
        fprintf(stderr,
                "usage: %s FILE...\n"
                "Scans each file as a SIP stream; prints ok + JSON per message or error.\n",
                argv[0]);
        return 2;
    }
    int failed = 0;
    for (int i = 1; i < argc; i++)
        failed |= scan_file(argv[i]);
    return failed;
}
