// SPDX-License-Identifier: MIT
// getpid() answered from memory. OpenSSL 3.0's random generator calls getpid() on every draw to
// notice a fork (providers/implementations/rands/drbg.c); six draws per TLS handshake made six of
// the edge's ten system calls per new connection, at about 1 µs each on a paravirtualised guest.
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tls/tls_priv.h"

/* 0 until the first call, and again in a child of fork() (its handler below), so the child
 * reads its own pid and OpenSSL's generators in the child reseed as they would without this.
 * Until tls__getpid_init() has registered that handler every call asks the kernel: a program
 * that forks before (a test runner) must not hand its pid to its children. */
static _Atomic pid_t cached_pid;
static atomic_bool caching;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void forget_pid(void)
{
    atomic_store_explicit(&cached_pid, 0, memory_order_relaxed);
}

static void register_atfork(void)
{
    /* Child handlers run in registration order: one registered before this one (none in this
     * program: it never forks) would still read the parent's pid. */
    if (pthread_atfork(NULL, NULL, forget_pid) == 0)
        atomic_store_explicit(&caching, true, memory_order_release);
}

/* This definition interposes libc's for every shared library of the program: the linker exports
 * it because libcrypto refers to getpid, and the dynamic linker binds libcrypto's reference to
 * the executable's definition first. libc's own internal calls do not go through it. */
pid_t getpid(void)
{
    if (!atomic_load_explicit(&caching, memory_order_acquire))
        return (pid_t)syscall(SYS_getpid);
    pid_t p = atomic_load_explicit(&cached_pid, memory_order_relaxed);
    if (p == 0) {
        p = (pid_t)syscall(SYS_getpid);
        atomic_store_explicit(&cached_pid, p, memory_order_relaxed);
    }
    return p;
}

void tls__getpid_init(void)
{
    pthread_once(&atfork_once, register_atfork);
}
