/* Every system call with a timeout or a clock that the syscall trap converts (issue 12), each
 * made as a raw system call, for tests/tests/dilation_timeouts.rs (built there with -static).
 *
 * Usage: timeouts [REQ_MS]   (default 100: every wait asks for REQ_MS of virtual time; alarm,
 * whose unit is the second, for 1 s).
 *
 * One line each, on a line-buffered stdout so that the test can time the lines in real time:
 *   begin NAME                          just before a wait
 *   wait NAME REQ_NS ELAPSED_NS RET     after it: the virtual time asked for, the time that passed
 *                                       on the process's own CLOCK_MONOTONIC, the return (-errno)
 *   woken NAME REQ_NS ELAPSED_NS RET    the same for a wait that another thread ends halfway (a
 *                                       signal, a byte in a pipe)
 *   value NAME EXPECTED_NS GOT_NS       a time the kernel hands back (a remainder, a timer read
 *                                       back, an old timer value), against what virtual time
 *                                       expects (for a remainder: the request less the elapsed)
 *   skip NAME REASON                    a call this kernel cannot make
 *   foreign NAME RET                    a call through the i386 ABI (`int $0x80` from this 64-bit
 *                                       program): its return; the trap must refuse the clock and
 *                                       timeout ones (-ENOSYS) and pass the others
 *   done
 * The program exits 1 when a call fails in a way that is not its timeout. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/futex.h>
#include <mqueue.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/sem.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441
#endif
#ifndef SYS_io_pgetevents
#define SYS_io_pgetevents 333
#endif
#ifndef FUTEX_LOCK_PI2
#define FUTEX_LOCK_PI2 13
#endif
#define FUTEX2_SIZE_U32 0x02
#define FUTEX2_PRIVATE 128
#define NS 1000000000LL

struct waitv {
    uint64_t val, uaddr;
    uint32_t flags, reserved;
};

static long long req; /* ns of virtual time every wait asks for */
static int failed;

static long long now(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec * NS + t.tv_nsec;
}
static long long mono(void) { return now(CLOCK_MONOTONIC); }
static struct timespec ts_of(long long ns) { return (struct timespec){ns / NS, ns % NS}; }
static long long ns_of(struct timespec t) { return t.tv_sec * NS + t.tv_nsec; }
static long long ns_tv(struct timeval t) { return t.tv_sec * NS + t.tv_usec * 1000LL; }
static long sys(long r) { return r == -1 ? -errno : r; }

static long long t0;
static void begin(const char *name) {
    printf("begin %s\n", name);
    t0 = mono();
}
/* Reports a wait that must end with `want` (0 or a -errno), else the probe fails. */
static long long end(const char *name, long long asked, long ret, long want) {
    long long elapsed = mono() - t0;
    printf("wait %s %lld %lld %ld\n", name, asked, elapsed, ret);
    if (ret != want) {
        printf("error %s returned %ld, expected %ld\n", name, ret, want);
        failed = 1;
    }
    return elapsed;
}
/* Reports a wait that another thread ended early. */
static long long woken(const char *name, long ret, long want) {
    long long elapsed = mono() - t0;
    printf("woken %s %lld %lld %ld\n", name, req, elapsed, ret);
    if (ret != want) {
        printf("error %s returned %ld, expected %ld\n", name, ret, want);
        failed = 1;
    }
    return elapsed;
}
static void value(const char *name, long long expected, long long got) {
    printf("value %s %lld %lld\n", name, expected, got);
}
static void skip(const char *name, const char *why) { printf("skip %s %s\n", name, why); }
static void must(int ok, const char *what) {
    if (!ok) {
        printf("error setup %s: %s\n", what, strerror(errno));
        exit(1);
    }
}

/* ---- helpers on other threads ---- */

static pid_t main_tid;
static int wake_pipe[2];

/* After `ms` of virtual time: a byte into the pipe (early return of a poll), or a signal to the
 * main thread (an interrupted sleep). */
struct later {
    long long ns;
    int signal;
};
static void *do_later(void *arg) {
    struct later *l = arg;
    struct timespec t = ts_of(l->ns);
    syscall(SYS_nanosleep, &t, NULL);
    if (l->signal)
        syscall(SYS_tgkill, getpid(), main_tid, l->signal);
    else
        must(write(wake_pipe[1], "x", 1) == 1, "write the pipe");
    return NULL;
}
static pthread_t later(struct later *l) {
    pthread_t t;
    must(pthread_create(&t, NULL, do_later, l) == 0, "start a thread");
    return t;
}
static void drain(void) {
    char b[8];
    must(read(wake_pipe[0], b, 1) == 1, "drain the pipe");
}
static void on_signal(int sig) { (void)sig; }

/* A thread that owns PI futexes while the main thread times out on them: it reports its id
 * through one pipe and waits for the other to close. */
static int owner_pipe[2], end_pipe[2];
static void *owner(void *arg) {
    (void)arg;
    pid_t tid = syscall(SYS_gettid);
    char b;
    must(write(owner_pipe[1], &tid, sizeof tid) == sizeof tid, "report the owner");
    must(read(end_pipe[0], &b, 1) >= 0, "wait for the end");
    return NULL;
}

/* UDP datagrams every millisecond of virtual time until told to stop (recvmmsg). */
static volatile int sending;
static int tx;
static void *sender(void *arg) {
    (void)arg;
    struct timespec t = ts_of(1000000);
    while (sending) {
        send(tx, "d", 1, 0);
        syscall(SYS_nanosleep, &t, NULL);
    }
    return NULL;
}

/* ---- the calls ---- */

static void sleeps(void) {
    struct timespec t = ts_of(req), rem;
    begin("nanosleep");
    end("nanosleep", req, sys(syscall(SYS_nanosleep, &t, NULL)), 0);
    value("nanosleep_request_untouched", req, ns_of(t));

    static const struct {
        const char *name;
        clockid_t clock;
    } rel[] = {{"clock_nanosleep_monotonic", CLOCK_MONOTONIC},
               {"clock_nanosleep_realtime", CLOCK_REALTIME},
               {"clock_nanosleep_boottime", CLOCK_BOOTTIME}};
    for (unsigned i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        begin(rel[i].name);
        end(rel[i].name, req, sys(syscall(SYS_clock_nanosleep, rel[i].clock, 0, &t, NULL)), 0);
    }
    static const struct {
        const char *name;
        clockid_t clock;
    } abs[] = {{"clock_nanosleep_monotonic_abstime", CLOCK_MONOTONIC},
               {"clock_nanosleep_realtime_abstime", CLOCK_REALTIME}};
    for (unsigned i = 0; i < sizeof abs / sizeof abs[0]; i++) {
        begin(abs[i].name);
        struct timespec d = ts_of(now(abs[i].clock) + req);
        end(abs[i].name, req, sys(syscall(SYS_clock_nanosleep, abs[i].clock, TIMER_ABSTIME, &d, NULL)), 0);
    }

    /* Interrupted halfway by a signal: the remainder is virtual. */
    struct later half = {req / 2, SIGUSR1};
    pthread_t th = later(&half);
    begin("nanosleep_interrupted");
    long long e = woken("nanosleep_interrupted", sys(syscall(SYS_nanosleep, &t, &rem)), -EINTR);
    value("nanosleep_rem", req - e, ns_of(rem));
    pthread_join(th, NULL);
    th = later(&half);
    begin("clock_nanosleep_interrupted");
    e = woken("clock_nanosleep_interrupted", sys(syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &t, &rem)), -EINTR);
    value("clock_nanosleep_rem", req - e, ns_of(rem));
    pthread_join(th, NULL);
}

static void futexes(void) {
    uint32_t w = 0;
    struct timespec t = ts_of(req);
    begin("futex_wait");
    end("futex_wait", req, sys(syscall(SYS_futex, &w, FUTEX_WAIT_PRIVATE, 0, &t, NULL, 0)), -ETIMEDOUT);

    struct timespec d;
    begin("futex_wait_bitset_monotonic_abstime");
    d = ts_of(now(CLOCK_MONOTONIC) + req);
    end("futex_wait_bitset_monotonic_abstime", req,
        sys(syscall(SYS_futex, &w, FUTEX_WAIT_BITSET_PRIVATE, 0, &d, NULL, FUTEX_BITSET_MATCH_ANY)), -ETIMEDOUT);
    begin("futex_wait_bitset_realtime_abstime");
    d = ts_of(now(CLOCK_REALTIME) + req);
    end("futex_wait_bitset_realtime_abstime", req,
        sys(syscall(SYS_futex, &w, FUTEX_WAIT_BITSET_PRIVATE | FUTEX_CLOCK_REALTIME, 0, &d, NULL,
                    FUTEX_BITSET_MATCH_ANY)),
        -ETIMEDOUT);

    /* PI futexes owned by another thread. */
    pthread_t th;
    pid_t tid;
    must(pipe(owner_pipe) == 0 && pipe(end_pipe) == 0, "pipe");
    must(pthread_create(&th, NULL, owner, NULL) == 0, "start the owner");
    must(read(owner_pipe[0], &tid, sizeof tid) == sizeof tid, "read the owner");
    uint32_t pi = tid;
    begin("futex_lock_pi_realtime_abstime");
    d = ts_of(now(CLOCK_REALTIME) + req);
    end("futex_lock_pi_realtime_abstime", req, sys(syscall(SYS_futex, &pi, FUTEX_LOCK_PI_PRIVATE, 0, &d, NULL, 0)),
        -ETIMEDOUT);
    uint32_t pi2 = tid;
    d = ts_of(now(CLOCK_MONOTONIC) + req);
    long r = sys(syscall(SYS_futex, &pi2, FUTEX_LOCK_PI2 | FUTEX_PRIVATE_FLAG, 0, &(struct timespec){0, 0}, NULL, 0));
    if (r == -ENOSYS || r == -EINVAL) {
        skip("futex_lock_pi2_monotonic_abstime", "FUTEX_LOCK_PI2 needs Linux 5.14");
    } else {
        begin("futex_lock_pi2_monotonic_abstime");
        d = ts_of(now(CLOCK_MONOTONIC) + req);
        end("futex_lock_pi2_monotonic_abstime", req,
            sys(syscall(SYS_futex, &pi2, FUTEX_LOCK_PI2 | FUTEX_PRIVATE_FLAG, 0, &d, NULL, 0)), -ETIMEDOUT);
    }
    close(end_pipe[1]);
    pthread_join(th, NULL);
    close(end_pipe[0]);
    close(owner_pipe[0]);
    close(owner_pipe[1]);

    uint32_t target = 0;
    begin("futex_wait_requeue_pi_monotonic_abstime");
    d = ts_of(now(CLOCK_MONOTONIC) + req);
    end("futex_wait_requeue_pi_monotonic_abstime", req,
        sys(syscall(SYS_futex, &w, FUTEX_WAIT_REQUEUE_PI_PRIVATE, 0, &d, &target, 0)), -ETIMEDOUT);

    struct waitv v = {0, (uintptr_t)&w, FUTEX2_SIZE_U32 | FUTEX2_PRIVATE, 0};
    static const struct {
        const char *name;
        clockid_t clock;
    } vc[] = {{"futex_waitv_monotonic_abstime", CLOCK_MONOTONIC}, {"futex_waitv_realtime_abstime", CLOCK_REALTIME}};
    for (unsigned i = 0; i < sizeof vc / sizeof vc[0]; i++) {
        d = ts_of(now(vc[i].clock));
        if (sys(syscall(SYS_futex_waitv, &v, 1, 0, &d, vc[i].clock)) == -ENOSYS) {
            skip(vc[i].name, "futex_waitv needs Linux 5.16");
            continue;
        }
        begin(vc[i].name);
        d = ts_of(now(vc[i].clock) + req);
        end(vc[i].name, req, sys(syscall(SYS_futex_waitv, &v, 1, 0, &d, vc[i].clock)), -ETIMEDOUT);
    }
}

static void polls(void) {
    int ms = (int)(req / 1000000);
    long long asked = ms * 1000000LL;
    struct epoll_event ev[4];
    int ep = epoll_create1(0);
    must(ep >= 0, "epoll_create1");
    must(pipe(wake_pipe) == 0, "pipe");
    struct epoll_event in = {.events = EPOLLIN, .data.fd = wake_pipe[0]};
    must(epoll_ctl(ep, EPOLL_CTL_ADD, wake_pipe[0], &in) == 0, "epoll_ctl");
    begin("epoll_wait");
    end("epoll_wait", asked, sys(syscall(SYS_epoll_wait, ep, ev, 4, ms)), 0);
    begin("epoll_pwait");
    end("epoll_pwait", asked, sys(syscall(SYS_epoll_pwait, ep, ev, 4, ms, NULL, 8)), 0);
    struct timespec t = ts_of(req);
    begin("epoll_pwait2");
    end("epoll_pwait2", req, sys(syscall(SYS_epoll_pwait2, ep, ev, 4, &t, NULL, 8)), 0);
    close(ep);

    struct pollfd p = {wake_pipe[0], POLLIN, 0};
    begin("poll");
    end("poll", asked, sys(syscall(SYS_poll, &p, 1, ms)), 0);
    begin("ppoll");
    t = ts_of(req);
    end("ppoll", req, sys(syscall(SYS_ppoll, &p, 1, &t, NULL, 8)), 0);
    value("ppoll_remaining", 0, ns_of(t));

    fd_set r;
    FD_ZERO(&r);
    FD_SET(wake_pipe[0], &r);
    struct timeval tv = {req / NS, req % NS / 1000};
    begin("select");
    end("select", req, sys(syscall(SYS_select, wake_pipe[0] + 1, &r, NULL, NULL, &tv)), 0);
    value("select_remaining", 0, ns_tv(tv));
    FD_SET(wake_pipe[0], &r);
    t = ts_of(req);
    begin("pselect6");
    end("pselect6", req, sys(syscall(SYS_pselect6, wake_pipe[0] + 1, &r, NULL, NULL, &t, NULL)), 0);
    value("pselect6_remaining", 0, ns_of(t));

    /* Woken halfway by the pipe: the remaining time the kernel writes back is virtual. */
    struct later half = {req / 2, 0};
    pthread_t th = later(&half);
    t = ts_of(req);
    begin("ppoll_woken");
    long long e = woken("ppoll_woken", sys(syscall(SYS_ppoll, &p, 1, &t, NULL, 8)), 1);
    value("ppoll_woken_remaining", req - e, ns_of(t));
    pthread_join(th, NULL);
    drain();
    th = later(&half);
    FD_SET(wake_pipe[0], &r);
    tv = (struct timeval){req / NS, req % NS / 1000};
    begin("select_woken");
    e = woken("select_woken", sys(syscall(SYS_select, wake_pipe[0] + 1, &r, NULL, NULL, &tv)), 1);
    value("select_woken_remaining", req - e, ns_tv(tv));
    pthread_join(th, NULL);
    drain();
    th = later(&half);
    FD_SET(wake_pipe[0], &r);
    t = ts_of(req);
    begin("pselect6_woken");
    e = woken("pselect6_woken", sys(syscall(SYS_pselect6, wake_pipe[0] + 1, &r, NULL, NULL, &t, NULL)), 1);
    value("pselect6_woken_remaining", req - e, ns_of(t));
    pthread_join(th, NULL);
    drain();
}

/* Waits for one (blocked) signal without a timeout: rt_sigtimedwait with no timeout is not
 * trapped. */
static long wait_signal(int sig) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    return sys(syscall(SYS_rt_sigtimedwait, &s, NULL, NULL, 8));
}

static void timers(void) {
    struct itimerspec its = {ts_of(3 * req), ts_of(req)}, cur, old, zero = {{0, 0}, {0, 0}};
    uint64_t n;

    /* timerfd, relative, with the readbacks: gettime right after arming, the old value when
     * disarming. */
    int fd = timerfd_create(CLOCK_MONOTONIC, 0);
    must(fd >= 0, "timerfd_create");
    begin("timerfd_settime");
    must(syscall(SYS_timerfd_settime, fd, 0, &its, NULL) == 0, "timerfd_settime");
    must(syscall(SYS_timerfd_gettime, fd, &cur) == 0, "timerfd_gettime");
    long long armed = mono() - t0;
    end("timerfd_settime", req, sys(read(fd, &n, sizeof n)), sizeof n);
    value("timerfd_gettime_value", req - armed, ns_of(cur.it_value));
    value("timerfd_gettime_interval", 3 * req, ns_of(cur.it_interval));
    must(syscall(SYS_timerfd_settime, fd, 0, &zero, &old) == 0, "disarm the timerfd");
    value("timerfd_settime_old_value", 3 * req, ns_of(old.it_value));
    value("timerfd_settime_old_interval", 3 * req, ns_of(old.it_interval));
    close(fd);
    static const struct {
        const char *name;
        clockid_t clock;
    } tc[] = {{"timerfd_settime_monotonic_abstime", CLOCK_MONOTONIC},
              {"timerfd_settime_realtime_abstime", CLOCK_REALTIME}};
    for (unsigned i = 0; i < sizeof tc / sizeof tc[0]; i++) {
        fd = timerfd_create(tc[i].clock, 0);
        must(fd >= 0, "timerfd_create");
        begin(tc[i].name);
        struct itimerspec a = {{0, 0}, ts_of(now(tc[i].clock) + req)};
        must(syscall(SYS_timerfd_settime, fd, TFD_TIMER_ABSTIME, &a, NULL) == 0, "timerfd_settime");
        must(syscall(SYS_timerfd_gettime, fd, &cur) == 0, "timerfd_gettime");
        armed = mono() - t0;
        end(tc[i].name, req, sys(read(fd, &n, sizeof n)), sizeof n);
        value(i ? "timerfd_gettime_realtime_abstime" : "timerfd_gettime_monotonic_abstime", req - armed,
              ns_of(cur.it_value));
        close(fd);
    }

    /* POSIX timers (the kernel's timer ids: raw system calls), signalling a blocked SIGUSR2. */
    static const struct {
        const char *name, *read_name;
        clockid_t clock;
        int flags;
    } pc[] = {{"timer_settime", "timer_gettime_value", CLOCK_MONOTONIC, 0},
              {"timer_settime_monotonic_abstime", "timer_gettime_monotonic_abstime", CLOCK_MONOTONIC, TIMER_ABSTIME},
              {"timer_settime_realtime_abstime", "timer_gettime_realtime_abstime", CLOCK_REALTIME, TIMER_ABSTIME}};
    for (unsigned i = 0; i < sizeof pc / sizeof pc[0]; i++) {
        struct sigevent sev;
        memset(&sev, 0, sizeof sev);
        sev.sigev_notify = SIGEV_SIGNAL;
        sev.sigev_signo = SIGUSR2;
        int id;
        must(syscall(SYS_timer_create, pc[i].clock, &sev, &id) == 0, "timer_create");
        struct itimerspec a = its;
        begin(pc[i].name);
        if (pc[i].flags)
            a.it_value = ts_of(now(pc[i].clock) + req);
        must(syscall(SYS_timer_settime, id, pc[i].flags, &a, NULL) == 0, "timer_settime");
        must(syscall(SYS_timer_gettime, id, &cur) == 0, "timer_gettime");
        armed = mono() - t0;
        end(pc[i].name, req, wait_signal(SIGUSR2), SIGUSR2);
        value(pc[i].read_name, req - armed, ns_of(cur.it_value));
        if (!pc[i].flags) {
            value("timer_gettime_interval", 3 * req, ns_of(cur.it_interval));
            must(syscall(SYS_timer_settime, id, 0, &zero, &old) == 0, "disarm the timer");
            value("timer_settime_old_value", 3 * req, ns_of(old.it_value));
        }
        must(syscall(SYS_timer_delete, id) == 0, "timer_delete");
    }

    /* setitimer(ITIMER_REAL) and alarm: SIGALRM, blocked. */
    struct itimerval iv = {{(3 * req) / NS, (3 * req) % NS / 1000}, {req / NS, req % NS / 1000}}, icur, iold,
                     izero = {{0, 0}, {0, 0}};
    begin("setitimer");
    must(syscall(SYS_setitimer, ITIMER_REAL, &iv, NULL) == 0, "setitimer");
    must(syscall(SYS_getitimer, ITIMER_REAL, &icur) == 0, "getitimer");
    armed = mono() - t0;
    end("setitimer", req, wait_signal(SIGALRM), SIGALRM);
    value("getitimer_value", req - armed, ns_tv(icur.it_value));
    value("getitimer_interval", 3 * req, ns_tv(icur.it_interval));
    must(syscall(SYS_setitimer, ITIMER_REAL, &izero, &iold) == 0, "disarm the itimer");
    value("setitimer_old_value", 3 * req, ns_tv(iold.it_value));

    begin("alarm");
    syscall(SYS_alarm, 1);
    /* Re-armed at once: the old alarm's remainder, in whole virtual seconds. */
    value("alarm_return", NS, syscall(SYS_alarm, 1) * NS);
    end("alarm", NS, wait_signal(SIGALRM), SIGALRM);
}

static void others(void) {
    struct timespec t = ts_of(req);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGWINCH); /* blocked, never sent */
    begin("rt_sigtimedwait");
    end("rt_sigtimedwait", req, sys(syscall(SYS_rt_sigtimedwait, &s, NULL, &t, 8)), -EAGAIN);

    /* recvmmsg checks its timeout after each datagram: datagrams arrive every virtual ms. */
    int rx = socket(AF_INET, SOCK_DGRAM, 0);
    tx = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    must(rx >= 0 && tx >= 0, "socket");
    must(bind(rx, (struct sockaddr *)&a, sizeof a) == 0, "bind");
    must(getsockname(rx, (struct sockaddr *)&a, &al) == 0, "getsockname");
    must(connect(tx, (struct sockaddr *)&a, sizeof a) == 0, "connect");
    enum { VLEN = 1024 };
    static struct mmsghdr msgs[VLEN];
    static struct iovec iov[VLEN];
    static char bufs[VLEN][8];
    for (int i = 0; i < VLEN; i++) {
        iov[i] = (struct iovec){bufs[i], sizeof bufs[i]};
        msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
    }
    sending = 1;
    pthread_t th;
    must(pthread_create(&th, NULL, sender, NULL) == 0, "start the sender");
    t = ts_of(req);
    begin("recvmmsg");
    long r = sys(syscall(SYS_recvmmsg, rx, msgs, VLEN, 0, &t));
    end("recvmmsg", req, r > 0 ? 0 : r, 0);
    value("recvmmsg_remaining", 0, ns_of(t));
    sending = 0;
    pthread_join(th, NULL);
    close(rx);
    close(tx);

    aio_context_t ctx = 0;
    struct io_event ev[1];
    if (sys(syscall(SYS_io_setup, 4, &ctx)) < 0) {
        skip("io_getevents", "io_setup failed (no AIO in this kernel, or aio-max-nr reached)");
        skip("io_pgetevents", "io_setup failed");
    } else {
        t = ts_of(req);
        begin("io_getevents");
        end("io_getevents", req, sys(syscall(SYS_io_getevents, ctx, 1, 1, ev, &t)), 0);
        t = ts_of(req);
        begin("io_pgetevents");
        end("io_pgetevents", req, sys(syscall(SYS_io_pgetevents, ctx, 1, 1, ev, &t, NULL)), 0);
        syscall(SYS_io_destroy, ctx);
    }

    int sem = semget(IPC_PRIVATE, 1, 0600);
    if (sem < 0) {
        skip("semtimedop", "semget failed (no System V IPC in this kernel)");
    } else {
        struct sembuf op = {0, -1, 0};
        t = ts_of(req);
        begin("semtimedop");
        end("semtimedop", req, sys(syscall(SYS_semtimedop, sem, &op, 1, &t)), -EAGAIN);
        semctl(sem, 0, IPC_RMID);
    }

    /* POSIX message queues through the system calls (no /dev/mqueue mount needed). */
    char name[64];
    snprintf(name, sizeof name, "diorama-timeouts-%d", (int)getpid());
    struct mq_attr qa = {.mq_maxmsg = 1, .mq_msgsize = 8};
    int q = sys(syscall(SYS_mq_open, name, O_CREAT | O_EXCL | O_RDWR, 0600, &qa));
    if (q < 0) {
        skip("mq_timedreceive_realtime_abstime", "mq_open failed (no POSIX message queues in this kernel)");
        skip("mq_timedsend_realtime_abstime", "mq_open failed");
    } else {
        char buf[8];
        begin("mq_timedreceive_realtime_abstime");
        struct timespec d = ts_of(now(CLOCK_REALTIME) + req);
        end("mq_timedreceive_realtime_abstime", req, sys(syscall(SYS_mq_timedreceive, q, buf, sizeof buf, NULL, &d)),
            -ETIMEDOUT);
        must(syscall(SYS_mq_timedsend, q, "m", 1, 0, NULL) == 0, "fill the queue");
        begin("mq_timedsend_realtime_abstime");
        d = ts_of(now(CLOCK_REALTIME) + req);
        end("mq_timedsend_realtime_abstime", req, sys(syscall(SYS_mq_timedsend, q, "m", 1, 0, &d)), -ETIMEDOUT);
        close(q);
        syscall(SYS_mq_unlink, name);
    }
}

/* An i386 system call from this 64-bit program: seccomp sees AUDIT_ARCH_I386 and the i386
 * numbers (asm/unistd_32.h), which is what a 32-bit image would make. */
static int int80(long nr, long a, long b) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b) : "memory", "r8", "r9", "r10", "r11");
    return (int)ret;
}

static void foreign(void) {
    /* The i386 ABI takes 32-bit pointers. */
    struct timespec32 {
        int32_t sec, nsec;
    } *t = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    must(t != MAP_FAILED, "mmap below 4 GiB");
    if (int80(20 /* getpid */, 0, 0) != getpid()) {
        skip("i386_abi", "int $0x80 does not work here (no IA32 emulation in this kernel)");
        return;
    }
    printf("foreign i386_getpid 0\n");
    printf("foreign i386_clock_gettime %d\n", int80(265, CLOCK_MONOTONIC, (long)t));
    printf("foreign i386_clock_gettime_cputime %d\n", int80(265, CLOCK_PROCESS_CPUTIME_ID, (long)t));
    t[1] = (struct timespec32){0, 1000};
    printf("foreign i386_nanosleep %d\n", int80(162, (long)&t[1], 0));
    printf("foreign i386_gettimeofday %d\n", int80(78, (long)t, 0));
    int r = int80(13 /* time */, 0, 0);
    printf("foreign i386_time %d\n", r < 0 ? r : 0); /* the seconds, else -errno */
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    req = (argc > 1 ? atoll(argv[1]) : 100) * 1000000LL;
    main_tid = syscall(SYS_gettid);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: the sleep returns EINTR */
    sigaction(SIGUSR1, &sa, NULL);
    /* Timer signals are taken with sigwaitinfo; every thread inherits the mask. */
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGUSR2);
    sigaddset(&blocked, SIGALRM);
    sigaddset(&blocked, SIGWINCH);
    sigprocmask(SIG_BLOCK, &blocked, NULL);

    sleeps();
    futexes();
    polls();
    timers();
    others();
    foreign();
    printf("done\n");
    return failed;
}
