// SPDX-License-Identifier: MIT
// Tests for core/filewatch.c: a rewrite in place, a Kubernetes-style `..data` symlink swap, a file
// that vanishes and comes back are seen; a change is reported only once it held still for a poll;
// a reload attempt (mark) or a SIGHUP (snapshot) resets the watch; the config's files are listed.
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/filewatch.h"

static char dir[] = "/tmp/sipedge-fw-XXXXXX";
static struct filewatch fw;

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    filewatch_init(&fw);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
    memcpy(dir + strlen(dir) - 6, "XXXXXX", 6);
}

TestSuite(filewatch, .init = setup, .fini = teardown);

static const char *at(const char *name)
{
    static char p[4][256];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
    return p[i];
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

static enum filewatch_state poll_once(char *changed, size_t cap)
{
    return filewatch_poll(&fw, changed, cap);
}

Test(filewatch, a_file_rewritten_in_place_is_reported_once_it_held_still)
{
    char changed[256];
    put(at("tls.crt"), "one");
    put(at("tls.key"), "key");
    cr_assert_eq(filewatch_add(&fw, at("tls.crt")), 0);
    cr_assert_eq(filewatch_add(&fw, at("tls.key")), 0);
    cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_SAME);

    put(at("tls.crt"), "two, longer"); /* same inode, new size and mtime */
    cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_CHANGING,
                 "the first poll that sees it waits: the writer may not be done");
    cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_SETTLED);
    cr_assert_str_eq(changed, at("tls.crt"), "only the changed file is named");
    filewatch_mark(&fw);
    cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_SAME, "reported once");
}

Test(filewatch, a_file_still_being_written_waits_until_it_stops)
{
    char changed[256];
    put(at("k"), "a");
    cr_assert_eq(filewatch_add(&fw, at("k")), 0);
    for (int i = 0; i < 3; i++) {
        char text[16];
        snprintf(text, sizeof(text), "%.*s", i + 2, "bbbbbb");
        put(at("k"), text);
        cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_CHANGING, "write %d", i);
    }
    cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_SETTLED);
}

/* What the kubelet's atomic writer does: files are links into `..data`, itself a link to a
 * timestamped directory; a new version is a new directory and a rename() over `..data`. */
static void k8s_version(const char *ts, const char *crt)
{
    char d[256], tmp[300];
    snprintf(d, sizeof(d), "%s/%s", dir, ts);
    cr_assert_eq(mkdir(d, 0755), 0);
    snprintf(tmp, sizeof(tmp), "%s/tls.crt", d);
    put(tmp, crt);
    snprintf(tmp, sizeof(tmp), "%s/..data_tmp", dir);
    cr_assert_eq(symlink(ts, tmp), 0);
    cr_assert_eq(rename(tmp, at("..data")), 0);
}

Test(filewatch, a_kubernetes_data_symlink_swap_is_seen_through_the_links)
{
    char changed[256];
    k8s_version("..2026_12_04_10_00_00.1", "same size");
    cr_assert_eq(symlink("..data/tls.crt", at("tls.crt")), 0);
    cr_assert_eq(filewatch_add(&fw, at("tls.crt")), 0);
    cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_SAME);

    k8s_version("..2026_12_04_11_00_00.2", "same SIZE"); /* same length: the inode tells */
    cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_CHANGING);
    cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_SETTLED);
    cr_assert_str_eq(changed, at("tls.crt"));
}

Test(filewatch, a_file_that_vanishes_and_comes_back_is_a_change_each_time)
{
    char changed[256];
    put(at("jwks.json"), "{}");
    cr_assert_eq(filewatch_add(&fw, at("jwks.json")), 0);
    cr_assert_eq(unlink(at("jwks.json")), 0);
    cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_CHANGING);
    cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_SETTLED,
                 "gone is a state too: the reload that follows fails and says so");
    filewatch_mark(&fw);
    cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_SAME,
                 "a failed reload is not retried while nothing changes");
    put(at("jwks.json"), "{\"keys\":[]}");
    cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_CHANGING);
    cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_SETTLED);
}

Test(filewatch, a_snapshot_before_a_sighup_reload_absorbs_the_change)
{
    char changed[256];
    put(at("a"), "1");
    cr_assert_eq(filewatch_add(&fw, at("a")), 0);
    put(at("a"), "22");
    filewatch_snapshot(&fw); /* SIGHUP: the reload reads the new file */
    cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_SAME);
}

Test(filewatch, the_changed_list_names_several_files_and_is_cut_to_fit)
{
    char changed[256], small[12];
    put(at("a"), "1");
    put(at("b"), "1");
    put(at("c"), "1");
    cr_assert_eq(filewatch_add(&fw, at("a")), 0);
    cr_assert_eq(filewatch_add(&fw, at("b")), 0);
    cr_assert_eq(filewatch_add(&fw, at("c")), 0);
    put(at("a"), "22");
    put(at("c"), "22");
    cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_CHANGING);
    cr_assert_eq(poll_once(changed, sizeof(changed)), FILEWATCH_SETTLED);
    char want[600];
    snprintf(want, sizeof(want), "%s,%s", at("a"), at("c"));
    cr_assert_str_eq(changed, want);
    put(at("b"), "22");
    put(at("c"), "333");
    cr_assert_eq(poll_once(small, sizeof(small)), FILEWATCH_CHANGING);
    memset(small, 'x', sizeof(small));
    cr_assert_eq(poll_once(small, sizeof(small)), FILEWATCH_SETTLED);
    cr_assert_eq(strlen(small), sizeof(small) - 1, "cut, and terminated");
    cr_assert_eq(strncmp(small, at("a"), sizeof(small) - 1), 0,
                 "a is still unmarked, so it leads the list");
}

Test(filewatch, paths_are_deduplicated_and_bounded)
{
    cr_assert_eq(filewatch_add(&fw, ""), 0);
    cr_assert_eq(fw.n, 0u, "an unset path is not watched");
    cr_assert_eq(filewatch_add(&fw, "/x"), 0);
    cr_assert_eq(filewatch_add(&fw, "/x"), 0);
    cr_assert_eq(fw.n, 1u);
    char big[CFG_PATH_MAX + 1];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(filewatch_add(&fw, big), -ENAMETOOLONG);
    for (int i = 1; i < FILEWATCH_MAX; i++) {
        char p[32];
        snprintf(p, sizeof(p), "/y%d", i);
        cr_assert_eq(filewatch_add(&fw, p), 0);
    }
    cr_assert_eq(fw.n, (size_t)FILEWATCH_MAX);
    cr_assert_eq(filewatch_add(&fw, "/one-too-many"), -ENOSPC);
}

Test(filewatch, the_config_lists_every_file_a_reload_reads_once)
{
    struct cfg *c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    cfg_defaults(c);
    strcpy(c->listen.tls.cert, "/s/server.crt");
    strcpy(c->listen.tls.key, "/s/server.key");
    strcpy(c->upstream.tls.cert, "/u/client.crt");
    strcpy(c->upstream.tls.key, "/u/client.key");
    strcpy(c->upstream.tls.ca, "/u/ca.crt");
    strcpy(c->ucm_listen.ca, "/u/ca.crt"); /* same file twice: watched once */
    c->ucm_listen.port = 5062;
    strcpy(c->auth.jwks, "/k/jwks.json");
    c->auth.key_count = 2;
    strcpy(c->auth.keys[0].file, "/k/a.pem");
    strcpy(c->auth.keys[1].file, "/k/b.pem");
    cr_assert_eq(filewatch_add_cfg(&fw, c), 0);
    static const char *const want[] = {"/s/server.crt", "/s/server.key", "/u/client.crt",
                                       "/u/client.key", "/u/ca.crt",     "/k/jwks.json",
                                       "/k/a.pem",      "/k/b.pem"};
    cr_assert_eq(fw.n, sizeof(want) / sizeof(*want));
    for (size_t i = 0; i < fw.n; i++)
        cr_assert_str_eq(fw.path[i], want[i]);

    filewatch_init(&fw);
    c->listen.plain_tcp = true;
    c->ucm_listen.port = 0;
    strcpy(c->ucm_listen.ca, "/u/other-ca.crt");
    cr_assert_eq(filewatch_add_cfg(&fw, c), 0);
    for (size_t i = 0; i < fw.n; i++) {
        cr_assert(strncmp(fw.path[i], "/s/", 3) != 0, "plain TCP reads no server certificate");
        cr_assert_str_neq(fw.path[i], "/u/other-ca.crt", "the UCM listener is off");
    }
    free(c);
}
