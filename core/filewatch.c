// SPDX-License-Identifier: MIT
// Polled stat() fingerprints of the files a reload reads (see core/filewatch.h).
#include "core/filewatch.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

void filewatch_init(struct filewatch *fw)
{
    fw->n = 0;
}

int filewatch_add(struct filewatch *fw, const char *path)
{
    size_t len = strlen(path);
    if (len == 0)
        return 0;
    if (len >= CFG_PATH_MAX)
        return -ENAMETOOLONG;
    for (size_t i = 0; i < fw->n; i++)
        if (strcmp(fw->path[i], path) == 0)
            return 0;
    if (fw->n == FILEWATCH_MAX)
        return -ENOSPC;
    memcpy(fw->path[fw->n], path, len + 1);
    filewatch_print_of(path, &fw->loaded[fw->n]);
    fw->seen[fw->n] = fw->loaded[fw->n];
    fw->n++;
    return 0;
}

int filewatch_add_cfg(struct filewatch *fw, const struct cfg *c)
{
    const char *paths[] = {
        c->listen.plain_tcp ? "" : c->listen.tls.cert,
        c->listen.plain_tcp ? "" : c->listen.tls.key,
        c->listen.plain_tcp ? "" : c->listen.tls.client_ca,
        c->upstream.tls.cert,
        c->upstream.tls.key,
        c->upstream.tls.ca,
        c->ucm_listen.port ? c->ucm_listen.ca : "",
        c->auth.jwks,
        c->auth.hs256_secret,
        c->auth.cucm_key,
    };
    int r = 0;
    for (size_t i = 0; i < sizeof(paths) / sizeof(*paths) && r == 0; i++)
        r = filewatch_add(fw, paths[i]);
    for (uint32_t i = 0; i < c->auth.key_count && r == 0; i++)
        r = filewatch_add(fw, c->auth.keys[i].file);
    return r;
}

void filewatch_print_of(const char *path, struct filewatch_print *out)
{
    struct stat st;

    memset(out, 0, sizeof(*out));
    if (stat(path, &st) < 0) {
        out->err = errno;
        return;
    }
    out->dev = st.st_dev;
    out->ino = st.st_ino;
    out->size = st.st_size;
    out->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    out->ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
}

static bool same(const struct filewatch_print *a, const struct filewatch_print *b)
{
    return a->err == b->err && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

void filewatch_snapshot(struct filewatch *fw)
{
    for (size_t i = 0; i < fw->n; i++) {
        filewatch_print_of(fw->path[i], &fw->loaded[i]);
        fw->seen[i] = fw->loaded[i];
    }
}

/* Append `s` to the comma-separated list in `out` (`*len` bytes so far), cut to fit `cap`. */
static void list_add(char *out, size_t cap, size_t *len, const char *s)
{
    if (*len > 0 && *len + 1 < cap)
        out[(*len)++] = ',';
    size_t n = strlen(s);
    if (*len + n >= cap)
        n = cap - 1 - *len;
    memcpy(out + *len, s, n);
    *len += n;
    out[*len] = '\0';
}

enum filewatch_state filewatch_poll(struct filewatch *fw, char *changed, size_t cap)
{
    bool differs = false, moving = false;

    for (size_t i = 0; i < fw->n; i++) {
        struct filewatch_print cur;
        filewatch_print_of(fw->path[i], &cur);
        if (!same(&cur, &fw->loaded[i]))
            differs = true;
        if (!same(&cur, &fw->seen[i]))
            moving = true;
        fw->seen[i] = cur;
    }
    if (!differs)
        return FILEWATCH_SAME;
    if (moving)
        return FILEWATCH_CHANGING;
    size_t len = 0;
    if (cap > 0)
        changed[0] = '\0';
    for (size_t i = 0; i < fw->n && cap > 0; i++)
        if (!same(&fw->seen[i], &fw->loaded[i]))
            list_add(changed, cap, &len, fw->path[i]);
    return FILEWATCH_SETTLED;
}

void filewatch_mark(struct filewatch *fw)
{
    for (size_t i = 0; i < fw->n; i++)
        fw->loaded[i] = fw->seen[i];
}
