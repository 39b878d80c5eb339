// SPDX-License-Identifier: MIT
// tls/tls_getpid.c: getpid() from memory stays the process's pid, in a child of fork() too, and
// OpenSSL's random generator still notices the fork (the child's bytes are not the parent's).
#include <criterion/criterion.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "tls/tls_priv.h"

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
