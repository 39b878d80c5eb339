// SPDX-License-Identifier: MIT
// tls/tls_libc.c: getpid() from memory stays the process's pid, in a child of fork() too, and
// OpenSSL's random generator still notices the fork (the child's bytes are not the parent's);
// __sprintf_chk() writes what glibc's writes, still stops an overflow, and is the one libssl's key
// log calls.
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "tls/tls_priv.h"
#include "tls_pair.h"

int __sprintf_chk(char *s, int flag, size_t slen, const char *format, ...);

Test(tls_getpid, answers_the_kernels_pid)
{
    tls__getpid_init();
    cr_assert_eq(getpid(), (pid_t)syscall(SYS_getpid));
    cr_assert_eq(getpid(), (pid_t)syscall(SYS_getpid), "the second answer (from memory) as well");
}

/* Runs in a child of fork(): 0 when its getpid() is its own pid and not the parent's. */
static int child_checks(pid_t parent, int fd)
{
    pid_t mine = (pid_t)syscall(SYS_getpid);
    if (getpid() != mine || getpid() == parent)
        return 1;
    uint8_t b[32];
    if (RAND_bytes(b, sizeof(b)) != 1 || write(fd, b, sizeof(b)) != (ssize_t)sizeof(b))
        return 2;
    return 0;
}

Test(tls_getpid, a_forked_child_reads_its_own_pid_and_openssl_reseeds_in_it)
{
    tls__getpid_init();
    pid_t parent = getpid();
    uint8_t warm[32];
    /* the generator exists and has state before the fork, as in a running edge */
    cr_assert_eq(RAND_bytes(warm, sizeof(warm)), 1);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0)
        _exit(child_checks(parent, p[1]));
    close(p[1]);
    int status = 0;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 0, "child check %d failed", WEXITSTATUS(status));
    uint8_t from_child[32], mine[32];
    cr_assert_eq(read(p[0], from_child, sizeof(from_child)), (ssize_t)sizeof(from_child));
    close(p[0]);
    cr_assert_eq(getpid(), parent, "the parent's pid is unchanged");
    cr_assert_eq(RAND_bytes(mine, sizeof(mine)), 1);
    /* Without the reseed on fork both generators would continue from the same state. */
    cr_assert_neq(memcmp(mine, from_child, sizeof(mine)), 0,
                  "the child drew the same random bytes as its parent");
}

Test(tls_sprintf, writes_every_byte_as_glibc_does)
{
    char got[16], want[16];
    uint64_t before = tls__sprintf_short_calls();
    for (unsigned v = 0; v < 256; v++) {
        memset(got, 'x', sizeof(got));
        cr_assert_eq(__sprintf_chk(got, 1, sizeof(got), "%02x", v), 2);
        snprintf(want, sizeof(want), "%02x", v);
        cr_assert_str_eq(got, want, "byte %u", v);
        cr_assert_eq(got[3], 'x', "byte %u: wrote past the terminator", v);
    }
    cr_assert_eq(tls__sprintf_short_calls() - before, 256);
    /* (size_t)-1: the size the compiler passes when it does not know the object's */
    cr_assert_eq(__sprintf_chk(got, 1, (size_t)-1, "%02x", 0xa5u), 2);
    cr_assert_str_eq(got, "a5");
}

Test(tls_sprintf, hands_every_other_format_to_glibc)
{
    char got[64];
    uint64_t before = tls__sprintf_short_calls();
    cr_assert_eq(__sprintf_chk(got, 1, sizeof(got), "%02x", 0x1234u), 4);
    cr_assert_str_eq(got, "1234");
    cr_assert_eq(__sprintf_chk(got, 1, sizeof(got), "%02X", 0xabu), 2);
    cr_assert_str_eq(got, "AB");
    cr_assert_eq(__sprintf_chk(got, 1, sizeof(got), "%02x%s", 7u, "-tail"), 7);
    cr_assert_str_eq(got, "07-tail");
    cr_assert_eq(__sprintf_chk(got, 1, sizeof(got), "%s=%d", "n", -42), 5);
    cr_assert_str_eq(got, "n=-42");
    cr_assert_eq(tls__sprintf_short_calls(), before, "none of these is the short path's");
}

/* The short path stops a write past the object as glibc's does (abort). The compiler sees the
 * overflow this call makes on purpose. */
#pragma GCC diagnostic push
#if defined(__clang__)
#pragma GCC diagnostic ignored "-Wfortify-source"
#else
#pragma GCC diagnostic ignored "-Wformat-overflow"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif
Test(tls_sprintf, aborts_on_an_overflow_like_glibc, .signal = SIGABRT)
{
    char got[2];
    __sprintf_chk(got, 1, sizeof(got), "%02x", 0x10u);
}

#pragma GCC diagnostic pop

/* libssl's key log reaches the short path: a TLS 1.3 handshake logs five secrets (client random
 * and secret, 64 to 80 bytes each line) when the server context keeps its records itself. */
Test(tls_sprintf, is_what_libssl_calls_for_its_key_log)
{
    pki_init_at("tls-libc-pki");
    struct tls_ctx *s = server_ctx("ucm", NULL, false, 0), *c = client_ctx(NULL, "ucm-ca.crt", 0);
    struct tls_peer node;
    cr_assert_eq(tls_peer_init(&node, "ucm1.example.test"), 0);
    uint64_t before = tls__sprintf_short_calls();
    struct pair p = connect_pair(s, c, &node, 0);
    cr_assert_eq(p.rc_s, 0);
    cr_assert_eq(p.rc_c, 0);
    uint64_t n = tls__sprintf_short_calls() - before;
    /* the server's five lines (and the client's, both sides key-log): at least 5 x 64 bytes */
    cr_assert_geq(n, 5 * 64, "%llu bytes formatted on the short path", (unsigned long long)n);
    transfer(p.c, p.s, 2000, 2, 0); /* and the secrets it carried are the right ones */
    free_pair(&p);
    tls_peer_deinit(&node);
    tls_ctx_unref(c);
    tls_ctx_unref(s);
}
