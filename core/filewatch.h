// SPDX-License-Identifier: MIT
// Change detection for the files a reload reads (certificates, keys, token keys): polled stat()
// fingerprints, symlinks followed, so Kubernetes' `..data` symlink swap of a mounted Secret shows.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/cfg.h"

/** Files watched at most (distinct paths; more are ignored by filewatch_add()). */
#define FILEWATCH_MAX 48

/** What stat() said of one path: equal fingerprints mean "the same content, as far as we can
 *  tell" (device, inode, size, mtime and ctime in ns; or the same stat error). */
struct filewatch_print {
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
    int64_t ctime_ns;
    int err; /* errno of a failed stat(), else 0 */
};

/*
 * State per path:  loaded = what the last reload attempt saw (filewatch_mark());
 *                  seen   = what the last filewatch_poll() saw.
 * poll: cur == loaded             -> FILEWATCH_SAME
 *       cur != loaded, cur != seen -> FILEWATCH_CHANGING (a writer may still be at work)
 *       cur != loaded, cur == seen -> FILEWATCH_SETTLED (reload now, then filewatch_mark())
 * A reload that fails is not retried until a file changes again.
 */
struct filewatch {
    size_t n;
    char path[FILEWATCH_MAX][CFG_PATH_MAX];
    struct filewatch_print loaded[FILEWATCH_MAX];
    struct filewatch_print seen[FILEWATCH_MAX];
};

enum filewatch_state {
    FILEWATCH_SAME = 0,
    FILEWATCH_CHANGING,
    FILEWATCH_SETTLED,
    /* FILEWATCH_STATE_COUNT */
    FILEWATCH_STATE_COUNT
};

/** Empty watch. */
void filewatch_init(struct filewatch *fw);

/**
 * Watch `path` (ignored when empty or already watched). Returns 0, or -ENOSPC past
 * FILEWATCH_MAX paths, -ENAMETOOLONG for a path of CFG_PATH_MAX bytes or more.
 */
int filewatch_add(struct filewatch *fw, const char *path);

/** Add every file a reload reads under `c`: listener and upstream certificates, keys and CAs,
 *  the UCM listener's CA, token keys, JWKS, HS256 secret, UCM symmetric key. Returns 0 or the
 *  first error of filewatch_add(). */
int filewatch_add_cfg(struct filewatch *fw, const struct cfg *c);

/** Fingerprint every path now and take it as both `loaded` and `seen`: call right before a
 *  reload reads the files (a change while it reads then shows at the next poll). */
void filewatch_snapshot(struct filewatch *fw);

/**
 * Fingerprint every path and compare (see the table above). On FILEWATCH_SETTLED, `changed`
 * (if `cap` > 0) receives the changed paths, comma-separated, cut to fit and NUL-terminated.
 * Never fails; a stat() error is a fingerprint like any other.
 */
enum filewatch_state filewatch_poll(struct filewatch *fw, char *changed, size_t cap);

/** After a reload attempt made on FILEWATCH_SETTLED: what was seen becomes what was loaded. */
void filewatch_mark(struct filewatch *fw);

/** The fingerprint of `path` now (stat() following symlinks). */
void filewatch_print_of(const char *path, struct filewatch_print *out);
