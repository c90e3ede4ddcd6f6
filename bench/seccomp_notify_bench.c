/* Round trip of a seccomp user notification (option B of decision 020), for comparison with
 * the trap's ptrace stop: a clock_gettime syscall answered by a supervisor process that
 * replies at once (no memory written). Prints the wall ns per call, timed with CLOCK_MONOTONIC
 * read through the vDSO (not trapped: the filter only sees syscalls).
 *   seccomp_notify_bench N [sync]    sync: SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux ≥ 6.6) */
#define _GNU_SOURCE
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1ULL
#endif

static long raw_clock(struct timespec *t) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(SYS_clock_gettime), "D"(CLOCK_MONOTONIC), "S"(t) : "rcx", "r11", "memory");
    return r;
}
static long long ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 20000;
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clock_gettime, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    int fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (fd < 0) { perror("seccomp"); return 1; }
    if (argc > 2 && ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)) perror("sync wake-up");
    pid_t sup = fork();
    if (sup == 0) {
        struct seccomp_notif req; struct seccomp_notif_resp resp;
        for (;;) {
            memset(&req, 0, sizeof req);
            if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req)) _exit(0);
            memset(&resp, 0, sizeof resp);
            resp.id = req.id;
            ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
        }
    }
    struct timespec t;
    long long a = ns();
    for (long i = 0; i < n; i++) raw_clock(&t);
    long long b = ns();
    printf("%.1f\n", (double)(b - a) / n);
    kill(sup, SIGKILL);
    return 0;
}
