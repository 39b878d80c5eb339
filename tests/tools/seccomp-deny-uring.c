// SPDX-License-Identifier: MIT
// Test helper: run a program under a seccomp filter that answers io_uring_setup with EPERM (what
// Docker's and containerd's default profiles do) and allows every other call.
//   seccomp-deny-uring [--errno N] PROGRAM [ARGS...]
// Classic BPF through prctl(PR_SET_SECCOMP); x86-64 only (any other arch is refused: exit 126).
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
#if !defined(__x86_64__)
    fprintf(stderr, "seccomp-deny-uring: x86-64 only\n");
    return 126;
#else
    int err = EPERM;
    int a = 1;
    if (argc > 2 && strcmp(argv[1], "--errno") == 0) {
        err = atoi(argv[2]);
        a = 3;
    }
    if (a >= argc || err <= 0 || err > 4095) {
        fprintf(stderr, "usage: seccomp-deny-uring [--errno N] PROGRAM [ARGS...]\n");
        return 2;
    }
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = (unsigned short)(sizeof(f) / sizeof(f[0])), .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        fprintf(stderr, "seccomp-deny-uring: %s\n", strerror(errno));
        return 126;
    }
    execvp(argv[a], argv + a);
    fprintf(stderr, "seccomp-deny-uring: %s: %s\n", argv[a], strerror(errno));
    return 127;
#endif
}
