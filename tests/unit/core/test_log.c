// SPDX-License-Identifier: MIT
// Tests for core/log.c: exact kv and JSON lines, escaping, digests instead of secrets, the level
// filter, truncation, and whole lines from concurrent threads.
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

static const struct timespec ts = {1795751471, 123456789}; /* 2026-11-27T03:51:11.123Z */

static char line[LOG_LINE_MAX + 1];

static const char *fmt(enum log_format f, enum log_level lvl, const char *ev,
                       const struct log_field *fl, size_t n)
{
    size_t len = log_format(line, sizeof(line), f, &ts, lvl, ev, fl, n);
    line[len] = 0;
    return line;
}

Test(log, formats_key_value_line)
{
    const struct log_field f[] = {LOG_S("node", "ucm1"), LOG_U("port", 5091), LOG_I("delta", -3),
                                  LOG_B("ok", false), LOG_SL("m", SLICE_LIT("REGISTER"))};
    cr_assert_str_eq(fmt(LOG_FORMAT_KV, LOG_WARN, "upstream_down", f, 5),
                     "ts=2026-11-27T03:51:11.123Z level=warn event=upstream_down node=ucm1 "
                     "port=5091 delta=-3 ok=false m=REGISTER\n");
}

Test(log, quotes_and_escapes_kv_values_that_need_it)
{
    const struct log_field f[] = {LOG_S("why", "alert \"unknown_ca\"\n"), LOG_S("e", ""),
                                  LOG_S("eq", "a=b"), LOG_SL("bin", slice_make("\x01\xff", 2))};
    cr_assert_str_eq(fmt(LOG_FORMAT_KV, LOG_ERROR, "x", f, 4),
                     "ts=2026-11-27T03:51:11.123Z level=error event=x "
                     "why=\"alert \\\"unknown_ca\\\"\\n\" e=\"\" eq=\"a=b\" bin=\"\\x01\\xff\"\n");
}

Test(log, formats_json_line)
{
    const struct log_field f[] = {LOG_S("why", "a\"b\\c\n"), LOG_U("n", 7), LOG_B("t", true),
                                  LOG_SL("bin", slice_make("\x01\xc3", 2))};
    cr_assert_str_eq(fmt(LOG_FORMAT_JSON, LOG_INFO, "ev", f, 4),
                     "{\"ts\":\"2026-11-27T03:51:11.123Z\",\"level\":\"info\",\"event\":\"ev\","
                     "\"why\":\"a\\\"b\\\\c\\n\",\"n\":7,\"t\":true,\"bin\":\"\\u0001\\u00c3\"}\n");
}

Test(log, logs_a_digest_never_the_secret)
{
    const char *tok = "eyJhbGciOiJSUzI1NiJ9.secret.sig";
    const struct log_field f[] = {LOG_DIGEST("token", tok, strlen(tok))};
    fmt(LOG_FORMAT_KV, LOG_INFO, "auth_fail", f, 1);
    cr_assert_null(strstr(line, "secret"));
    char d[13];
    log_digest(tok, strlen(tok), d);
    char want[64];
    snprintf(want, sizeof(want), " token=%s\n", d);
    cr_assert(strstr(line, want), "%s", line);
    /* SHA-256("abc") = ba7816bf8f01cfea... */
    log_digest("abc", 3, d);
    cr_assert_str_eq(d, "ba7816bf8f01");
}

Test(log, drops_fields_that_do_not_fit_and_marks_truncation)
{
    static char big[LOG_LINE_MAX];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    const struct log_field f[] = {LOG_S("small", "x"), LOG_S("big", big)};
    fmt(LOG_FORMAT_KV, LOG_INFO, "ev", f, 2);
    size_t n = strlen(line);
    cr_assert_leq(n, LOG_LINE_MAX);
    cr_assert(strstr(line, " small=x truncated=true\n"), "%s", line);
    fmt(LOG_FORMAT_JSON, LOG_INFO, "ev", f, 2);
    cr_assert(strstr(line, ",\"small\":\"x\",\"truncated\":true}\n"), "%s", line);
}

Test(log, filters_below_the_level)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    log_init(p[1], LOG_WARN, LOG_FORMAT_KV);
    log_event(LOG_INFO, "hidden", LOG_S("a", "b"));
    log_event(LOG_ERROR, "shown", LOG_S("a", "b"));
    cr_assert_not(log_enabled(LOG_DEBUG));
    log_set_level(LOG_DEBUG);
    cr_assert(log_enabled(LOG_DEBUG));
    close(p[1]);
    char buf[1024];
    ssize_t n = read(p[0], buf, sizeof(buf) - 1);
    cr_assert_gt(n, 0);
    buf[n] = 0;
    cr_assert_null(strstr(buf, "hidden"));
    cr_assert(strstr(buf, "level=error event=shown a=b\n"), "%s", buf);
    close(p[0]);
}

static void *spam(void *arg)
{
    char fill[1000];
    memset(fill, 'a' + (int)(intptr_t)arg, sizeof(fill) - 1);
    fill[sizeof(fill) - 1] = 0;
    for (int i = 0; i < 200; i++)
        log_event(LOG_INFO, "spam", LOG_I("t", (intptr_t)arg), LOG_S("fill", fill));
    return NULL;
}

Test(log, lines_from_threads_never_interleave)
{
    char path[] = "/tmp/sipedge-log-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    log_init(fd, LOG_INFO, LOG_FORMAT_KV);
    pthread_t th[4];
    for (intptr_t i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, spam, (void *)i);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    lseek(fd, 0, SEEK_SET);
    FILE *f = fdopen(fd, "r");
    static char l[4096];
    int lines = 0;
    while (fgets(l, sizeof(l), f)) {
        lines++;
        char t = l[strlen(l) - 2];
        const char *tp = strstr(l, " t=");
        cr_assert(tp, "%s", l);
        cr_assert_eq(t, 'a' + (tp[3] - '0'), "line mixes threads: %s", l);
        cr_assert_eq(strlen(strstr(l, "fill=") + 5), 999 + 1);
    }
    fclose(f);
    cr_assert_eq(lines, 800);
}
