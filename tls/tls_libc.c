// SPDX-License-Identifier: MIT
// Two libc functions the program defines for OpenSSL, each the same answer in less time:
// - getpid() answered from memory. OpenSSL 3.0's random generator calls getpid() on every draw to
//   notice a fork (providers/implementations/rands/drbg.c); six draws per TLS handshake made six
//   of the edge's ten system calls per new connection, at about 1 µs each on a paravirtualised
//   guest.
// - __sprintf_chk() with a short path for "%02x". libssl writes each secret it hands to the
//   key-log callback (how tls_rec.c gets the TLS 1.3 traffic secrets) one byte at a time with
//   sprintf(cursor, "%02x", byte) (ssl/ssl_lib.c, nss_keylog_int(); _FORTIFY_SOURCE makes it
//   __sprintf_chk): five lines of 80 to 112 bytes per TLS 1.3 handshake, ≈ 500 calls through
//   glibc's whole printf machinery, 8 % of a server handshake's instructions (callgrind,
//   docs/BENCHMARKS.md). Every other format goes to glibc's __vsprintf_chk unchanged.
// Both definitions interpose glibc's for every shared library of the program: the linker exports
// them because libcrypto and libssl refer to them, and the dynamic linker binds those references
// to the executable's definitions first. libc's own internal calls do not go through them. They
// are in one file with tls__getpid_init(), which every context calls, so that the linker takes
// them from the static library.
#include <pthread.h>
#include <stdarg.h>
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

/* ---- __sprintf_chk ---- */

/* glibc's, exported since GLIBC_2.3.4; declared in no public header. */
extern int __vsprintf_chk(char *s, int flag, size_t slen, const char *format, va_list ap);
extern void __chk_fail(void) __attribute__((noreturn));

static _Thread_local uint64_t short_calls; /* per thread: no cache line shared by the workers */

int __sprintf_chk(char *s, int flag, size_t slen, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    if (format[0] == '%' && format[1] == '0' && format[2] == '2' && format[3] == 'x' &&
        format[4] == '\0') {
        unsigned v = va_arg(ap, unsigned);
        va_end(ap);
        if (v <= 0xff) { /* two digits, as printf writes them; wider values take glibc's path */
            static const char hex[] = "0123456789abcdef";
            if (slen < 3)
                __chk_fail(); /* as glibc: the result would overflow the object */
            s[0] = hex[v >> 4];
            s[1] = hex[v & 15];
            s[2] = '\0';
            short_calls++;
            return 2;
        }
        va_start(ap, format);
    }
    int n = __vsprintf_chk(s, flag, slen, format, ap);
    va_end(ap);
    return n;
}

uint64_t tls__sprintf_short_calls(void)
{
    return short_calls;
}
