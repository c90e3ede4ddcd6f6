/* Calls every function libdilation.so interposes and reports, per check:
 *   B <name>                          before the wait (the driver timestamps it in real time)
 *   E <name> <requested_ns> <perceived_ns>   after it
 *   V <name> <expected> <got> <tolerance>    a value check
 *   BACK <clock>                      a clock went backwards
 *   X <virtual_realtime_ns> <real_realtime_ns> <virtual_mono_ns> <real_mono_ns>
 * Real time is read with a raw syscall instruction, which the shim cannot see. */
#define _GNU_SOURCE
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timeb.h>
#include <sys/timerfd.h>
#include <sys/times.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>

#define MS 1000000LL
static long long REQ = 50 * MS; /* every wait asks for this much virtual time */
static long long last_mono;

static long raw_clock(int clk, struct timespec *ts) {
    long ret;
#if defined(__x86_64__)
    __asm__ volatile("syscall" : "=a"(ret) : "a"(SYS_clock_gettime), "D"(clk), "S"(ts) : "rcx", "r11", "memory");
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = SYS_clock_gettime;
    register long x0 __asm__("x0") = clk;
    register long x1 __asm__("x1") = (long)ts;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1) : "memory");
    ret = x0;
#endif
    return ret;
}
static long raw_getsockopt(int fd, int level, int name, void *val, socklen_t *len) {
    long ret;
#if defined(__x86_64__)
    register long r10 __asm__("r10") = (long)val;
    register long r8 __asm__("r8") = (long)len;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(SYS_getsockopt), "D"(fd), "S"(level), "d"(name), "r"(r10), "r"(r8) : "rcx", "r11", "memory");
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = SYS_getsockopt;
    register long x0 __asm__("x0") = fd;
    register long x1 __asm__("x1") = level, x2 __asm__("x2") = name, x3 __asm__("x3") = (long)val, x4 __asm__("x4") = (long)len;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory");
    ret = x0;
#endif
    return ret;
}
static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }
static struct timespec ts_of(long long n) { struct timespec t = {n / 1000000000LL, n % 1000000000LL}; return t; }
static long long vnow(int clk) {
    struct timespec t; clock_gettime(clk, &t);
    long long v = ns(t);
    if (clk == CLOCK_MONOTONIC) { if (v < last_mono) printf("BACK monotonic\n"); last_mono = v; }
    return v;
}
static long long rnow(int clk) { struct timespec t; raw_clock(clk, &t); return ns(t); }
static struct timespec vdeadline(int clk, long long in) { return ts_of(vnow(clk) + in); }

#define CHECK(name, req, ...) do { printf("B %s\n", name); fflush(stdout); \
    long long v0_ = vnow(CLOCK_MONOTONIC); __VA_ARGS__; long long v1_ = vnow(CLOCK_MONOTONIC); \
    printf("E %s %lld %lld\n", name, (long long)(req), v1_ - v0_); fflush(stdout); } while (0)
#define VALUE(name, expected, got, tol) do { printf("V %s %lld %lld %lld\n", name, (long long)(expected), (long long)(got), (long long)(tol)); fflush(stdout); } while (0)

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t wheld = PTHREAD_RWLOCK_INITIALIZER;
static volatile int release_all;
static void *holder(void *arg) {
    (void)arg;
    pthread_mutex_lock(&held); pthread_rwlock_wrlock(&wheld);
    while (!release_all) usleep(1000);
    pthread_rwlock_unlock(&wheld); pthread_mutex_unlock(&held);
    return NULL;
}
static void *sleeper(void *arg) { (void)arg; while (!release_all) usleep(1000); return NULL; }

static int futex_word;

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "clock") == 0) {
        /* Cross-process agreement: one sample of virtual and real clocks. */
        long long rr = rnow(CLOCK_REALTIME), vr = vnow(CLOCK_REALTIME);
        long long rm = rnow(CLOCK_MONOTONIC), vm = vnow(CLOCK_MONOTONIC);
        printf("X %lld %lld %lld %lld\n", vr, rr, vm, rm);
        return 0;
    }
    if (argc > 1) REQ = atoll(argv[1]) * MS;
    vnow(CLOCK_MONOTONIC);
    sigset_t sigs; sigemptyset(&sigs); sigaddset(&sigs, SIGALRM); sigaddset(&sigs, SIGUSR1);
    sigprocmask(SIG_BLOCK, &sigs, NULL);

    /* Clocks: every wall-clock source agrees with clock_gettime(CLOCK_REALTIME). */
    { struct timeval tv; gettimeofday(&tv, NULL); VALUE("gettimeofday", vnow(CLOCK_REALTIME) / 1000, tv.tv_sec * 1000000LL + tv.tv_usec, 1000); }
    { time_t t = time(NULL); VALUE("time", vnow(CLOCK_REALTIME) / 1000000000LL, t, 1); }
    { struct timeb tb; ftime(&tb); VALUE("ftime", vnow(CLOCK_REALTIME) / MS, tb.time * 1000LL + tb.millitm, 2); }
    { struct timespec t; timespec_get(&t, TIME_UTC); VALUE("timespec_get", vnow(CLOCK_REALTIME) / 1000, ns(t) / 1000, 1000); }
    { struct timespec t; syscall(SYS_clock_gettime, CLOCK_REALTIME, &t); VALUE("syscall_clock_gettime", vnow(CLOCK_REALTIME) / 1000, ns(t) / 1000, 1000); }
    int clocks[] = {CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_TAI};
    const char *cnames[] = {"realtime", "monotonic", "boottime", "monotonic_raw", "realtime_coarse", "monotonic_coarse", "tai"};
    long long before[7];
    for (int i = 0; i < 7; i++) before[i] = vnow(clocks[i]);

    CHECK("nanosleep", REQ, { struct timespec t = ts_of(REQ); nanosleep(&t, NULL); });
    for (int i = 0; i < 7; i++) {
        char name[64]; snprintf(name, sizeof name, "clock_%s", cnames[i]);
        /* coarse clocks tick every few ms (real); allow their resolution */
        VALUE(name, REQ, vnow(clocks[i]) - before[i], REQ / 2);
    }
    { struct tms b; clock_t t0 = times(&b); struct timespec t = ts_of(20 * REQ / 10); nanosleep(&t, NULL); clock_t t1 = times(&b);
      VALUE("times", 2 * REQ / (1000000000LL / sysconf(_SC_CLK_TCK)), t1 - t0, 2); }
    CHECK("clock_nanosleep_rel", REQ, { struct timespec t = ts_of(REQ); clock_nanosleep(CLOCK_MONOTONIC, 0, &t, NULL); });
    CHECK("clock_nanosleep_abs_mono", REQ, { struct timespec d = vdeadline(CLOCK_MONOTONIC, REQ); clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &d, NULL); });
    CHECK("clock_nanosleep_abs_real", REQ, { struct timespec d = vdeadline(CLOCK_REALTIME, REQ); clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &d, NULL); });
    CHECK("usleep", REQ, usleep(REQ / 1000));
    CHECK("sleep", 1000 * MS, sleep(1));
    CHECK("syscall_clock_nanosleep", REQ, { struct timespec t = ts_of(REQ); syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &t, NULL); });
    CHECK("syscall_nanosleep", REQ, { struct timespec t = ts_of(REQ); syscall(SYS_nanosleep, &t, NULL); });

    CHECK("select", REQ, { struct timeval tv = {0, REQ / 1000}; select(0, NULL, NULL, NULL, &tv); });
    CHECK("pselect", REQ, { struct timespec t = ts_of(REQ); pselect(0, NULL, NULL, NULL, &t, NULL); });
    CHECK("poll", REQ, poll(NULL, 0, REQ / MS));
    CHECK("ppoll", REQ, { struct timespec t = ts_of(REQ); ppoll(NULL, 0, &t, NULL); });
    int ep = epoll_create1(0);
    struct epoll_event evs[1];
    CHECK("epoll_wait", REQ, epoll_wait(ep, evs, 1, REQ / MS));
    CHECK("epoll_pwait", REQ, epoll_pwait(ep, evs, 1, REQ / MS, NULL));
    CHECK("epoll_pwait2", REQ, { struct timespec t = ts_of(REQ); epoll_pwait2(ep, evs, 1, &t, NULL); });

    sem_t sem; sem_init(&sem, 0, 0);
    CHECK("sem_timedwait", REQ, { struct timespec d = vdeadline(CLOCK_REALTIME, REQ); sem_timedwait(&sem, &d); });
    CHECK("sem_clockwait", REQ, { struct timespec d = vdeadline(CLOCK_MONOTONIC, REQ); sem_clockwait(&sem, CLOCK_MONOTONIC, &d); });

    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c_real = PTHREAD_COND_INITIALIZER, c_mono;
    pthread_condattr_t ca; pthread_condattr_init(&ca); pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); pthread_cond_init(&c_mono, &ca);
    pthread_mutex_lock(&m);
    CHECK("pthread_cond_timedwait_realtime", REQ, { struct timespec d = vdeadline(CLOCK_REALTIME, REQ); while (pthread_cond_timedwait(&c_real, &m, &d) != ETIMEDOUT) {} });
    CHECK("pthread_cond_timedwait_monotonic", REQ, { struct timespec d = vdeadline(CLOCK_MONOTONIC, REQ); while (pthread_cond_timedwait(&c_mono, &m, &d) != ETIMEDOUT) {} });
    CHECK("pthread_cond_clockwait", REQ, { struct timespec d = vdeadline(CLOCK_MONOTONIC, REQ); while (pthread_cond_clockwait(&c_real, &m, CLOCK_MONOTONIC, &d) != ETIMEDOUT) {} });
    pthread_mutex_unlock(&m);

    pthread_t h; pthread_create(&h, NULL, holder, NULL);
    while (pthread_mutex_trylock(&held) == 0) { pthread_mutex_unlock(&held); usleep(100); }
    while (pthread_rwlock_tryrdlock(&wheld) == 0) { pthread_rwlock_unlock(&wheld); usleep(100); }
    CHECK("pthread_mutex_timedlock", REQ, { struct timespec d = vdeadline(CLOCK_REALTIME, REQ); pthread_mutex_timedlock(&held, &d); });
    CHECK("pthread_mutex_clocklock", REQ, { struct timespec d = vdeadline(CLOCK_MONOTONIC, REQ); pthread_mutex_clocklock(&held, CLOCK_MONOTONIC, &d); });
    CHECK("pthread_rwlock_timedrdlock", REQ, { struct timespec d = vdeadline(CLOCK_REALTIME, REQ); pthread_rwlock_timedrdlock(&wheld, &d); });
    CHECK("pthread_rwlock_timedwrlock", REQ, { struct timespec d = vdeadline(CLOCK_REALTIME, REQ); pthread_rwlock_timedwrlock(&wheld, &d); });
    CHECK("pthread_rwlock_clockrdlock", REQ, { struct timespec d = vdeadline(CLOCK_MONOTONIC, REQ); pthread_rwlock_clockrdlock(&wheld, CLOCK_MONOTONIC, &d); });
    CHECK("pthread_rwlock_clockwrlock", REQ, { struct timespec d = vdeadline(CLOCK_MONOTONIC, REQ); pthread_rwlock_clockwrlock(&wheld, CLOCK_MONOTONIC, &d); });
    pthread_t s; pthread_create(&s, NULL, sleeper, NULL);
    CHECK("pthread_timedjoin_np", REQ, { struct timespec d = vdeadline(CLOCK_REALTIME, REQ); pthread_timedjoin_np(s, NULL, &d); });
    CHECK("pthread_clockjoin_np", REQ, { struct timespec d = vdeadline(CLOCK_MONOTONIC, REQ); pthread_clockjoin_np(s, NULL, CLOCK_MONOTONIC, &d); });
    release_all = 1; pthread_join(h, NULL); pthread_join(s, NULL);

    CHECK("sigtimedwait", REQ, { struct timespec t = ts_of(REQ); sigset_t u; sigemptyset(&u); sigaddset(&u, SIGUSR1); sigtimedwait(&u, NULL, &t); });

    char qname[64]; snprintf(qname, sizeof qname, "/diorama-probe-%d", getpid());
    struct mq_attr qa = {0, 1, 16, 0};
    mqd_t q = mq_open(qname, O_CREAT | O_RDWR, 0600, &qa);
    if (q != (mqd_t)-1) {
        char buf[16] = "x";
        CHECK("mq_timedreceive", REQ, { struct timespec d = vdeadline(CLOCK_REALTIME, REQ); mq_timedreceive(q, buf, sizeof buf, NULL, &d); });
        mq_send(q, buf, 1, 0);
        CHECK("mq_timedsend", REQ, { struct timespec d = vdeadline(CLOCK_REALTIME, REQ); mq_timedsend(q, buf, 1, 0, &d); });
        mq_close(q); mq_unlink(qname);
    } else {
        printf("V mq_open 0 %d 0\n", errno);
    }

    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    CHECK("timerfd_settime_rel", REQ, { struct itimerspec it = {{0, 0}, ts_of(REQ)}; timerfd_settime(tfd, 0, &it, NULL); unsigned long long x; read(tfd, &x, 8); });
    CHECK("timerfd_settime_abs", REQ, { struct itimerspec it = {{0, 0}, vdeadline(CLOCK_MONOTONIC, REQ)}; timerfd_settime(tfd, TFD_TIMER_ABSTIME, &it, NULL); unsigned long long x; read(tfd, &x, 8); });
    CHECK("timerfd_interval", 3 * REQ, { struct itimerspec it = {ts_of(REQ), ts_of(REQ)}; timerfd_settime(tfd, 0, &it, NULL);
        unsigned long long n = 0, x; while (n < 3) { read(tfd, &x, 8); n += x; } struct itimerspec off = {{0, 0}, {0, 0}}; timerfd_settime(tfd, 0, &off, NULL); });
    { struct itimerspec it = {{0, 0}, ts_of(10 * REQ)}, cur; timerfd_settime(tfd, 0, &it, NULL); timerfd_gettime(tfd, &cur);
      VALUE("timerfd_gettime", 10 * REQ, ns(cur.it_value), REQ / 5); }

    timer_t tid; struct sigevent sev; memset(&sev, 0, sizeof sev); sev.sigev_notify = SIGEV_SIGNAL; sev.sigev_signo = SIGUSR1;
    timer_create(CLOCK_MONOTONIC, &sev, &tid);
    CHECK("timer_settime", REQ, { struct itimerspec it = {{0, 0}, ts_of(REQ)}; timer_settime(tid, 0, &it, NULL); int sig; sigset_t u; sigemptyset(&u); sigaddset(&u, SIGUSR1); sigwait(&u, &sig); });
    CHECK("timer_settime_abs", REQ, { struct itimerspec it = {{0, 0}, vdeadline(CLOCK_MONOTONIC, REQ)}; timer_settime(tid, TIMER_ABSTIME, &it, NULL); int sig; sigset_t u; sigemptyset(&u); sigaddset(&u, SIGUSR1); sigwait(&u, &sig); });
    { struct itimerspec it = {{0, 0}, ts_of(10 * REQ)}, cur; timer_settime(tid, 0, &it, NULL); timer_gettime(tid, &cur);
      VALUE("timer_gettime", 10 * REQ, ns(cur.it_value), REQ / 5); struct itimerspec off = {{0, 0}, {0, 0}}; timer_settime(tid, 0, &off, NULL); }

    sigset_t alrm; sigemptyset(&alrm); sigaddset(&alrm, SIGALRM);
    CHECK("alarm", 1000 * MS, { alarm(1); int sig; sigwait(&alrm, &sig); });
    CHECK("ualarm", REQ, { ualarm(REQ / 1000, 0); int sig; sigwait(&alrm, &sig); });
    CHECK("setitimer", REQ, { struct itimerval it = {{0, 0}, {0, REQ / 1000}}; setitimer(ITIMER_REAL, &it, NULL); int sig; sigwait(&alrm, &sig); });
    { struct itimerval it = {{0, 0}, {0, 10 * REQ / 1000}}, cur; setitimer(ITIMER_REAL, &it, NULL); getitimer(ITIMER_REAL, &cur);
      VALUE("getitimer", 10 * REQ / 1000, cur.it_value.tv_sec * 1000000LL + cur.it_value.tv_usec, REQ / 5000);
      struct itimerval off = {{0, 0}, {0, 0}}; setitimer(ITIMER_REAL, &off, NULL); }

    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(u, (struct sockaddr *)&a, sizeof a); socklen_t al = sizeof a; getsockname(u, (struct sockaddr *)&a, &al);
    /* Socket timeouts run on the kernel's jiffy timer wheel, which fires long timeouts late
       by up to 1/8 of their length; the driver allows that for `so_*` checks. What the shim
       must get exactly right is the value the kernel stores: read it back with a raw
       getsockopt that bypasses the shim. */
    struct timeval rto = {0, 4 * REQ / 1000}; setsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto);
    { struct timeval got; socklen_t gl = sizeof got; getsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &got, &gl);
      VALUE("getsockopt_rcvtimeo", 4 * REQ / 1000, got.tv_sec * 1000000LL + got.tv_usec, 1000);
      const char *t = getenv("DILATION_TDF"); double tdf = t ? atof(t) : 1.0;
      long r = raw_getsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &got, &gl);
      VALUE("so_rcvtimeo_in_kernel", (long long)(tdf * 4 * REQ / 1000), r == 0 ? got.tv_sec * 1000000LL + got.tv_usec : -1, 1000); }
    CHECK("so_rcvtimeo", 4 * REQ, { char b[8]; recv(u, b, sizeof b, 0); });
    { int w = socket(AF_INET, SOCK_DGRAM, 0); struct timeval sto = {0, REQ / 1000}; setsockopt(w, SOL_SOCKET, SO_SNDTIMEO, &sto, sizeof sto);
      struct timeval got; socklen_t gl = sizeof got; getsockopt(w, SOL_SOCKET, SO_SNDTIMEO, &got, &gl);
      VALUE("getsockopt_sndtimeo", REQ / 1000, got.tv_sec * 1000000LL + got.tv_usec, 1000); close(w); }
    { struct timeval short_to = {0, REQ / 1000}; setsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &short_to, sizeof short_to);
      sendto(u, "x", 1, 0, (struct sockaddr *)&a, sizeof a);
      struct mmsghdr msgs[2]; struct iovec io[2]; char b[2][8]; memset(msgs, 0, sizeof msgs);
      for (int i = 0; i < 2; i++) { io[i].iov_base = b[i]; io[i].iov_len = 8; msgs[i].msg_hdr.msg_iov = &io[i]; msgs[i].msg_hdr.msg_iovlen = 1; }
      struct timespec to = ts_of(20 * REQ);
      long long v0 = vnow(CLOCK_MONOTONIC); recvmmsg(u, msgs, 2, 0, &to); long long waited = vnow(CLOCK_MONOTONIC) - v0;
      /* The kernel may leave the timeout untouched when SO_RCVTIMEO ends the wait; either way
         what comes back must be virtual time: between (requested − waited) and requested. */
      VALUE("recvmmsg_timeout_left", 20 * REQ - waited / 2, ns(to), waited / 2 + REQ / 5); }
    struct timeval rto2 = {0, REQ / 1000}; setsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &rto2, sizeof rto2);
    close(u);

    CHECK("futex_wait", REQ, { struct timespec t = ts_of(REQ); syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, &t, NULL, 0); });
    CHECK("futex_wait_bitset", REQ, { struct timespec d = vdeadline(CLOCK_MONOTONIC, REQ); syscall(SYS_futex, &futex_word, FUTEX_WAIT_BITSET_PRIVATE, 0, &d, NULL, FUTEX_BITSET_MATCH_ANY); });
    CHECK("futex_wait_bitset_realtime", REQ, { struct timespec d = vdeadline(CLOCK_REALTIME, REQ); syscall(SYS_futex, &futex_word, FUTEX_WAIT_BITSET_PRIVATE | FUTEX_CLOCK_REALTIME, 0, &d, NULL, FUTEX_BITSET_MATCH_ANY); });

    /* CPU-time clocks pass through: after burning some CPU, the CPU clock the program sees
       equals the kernel's, read with a raw syscall the shim cannot see. */
    { long long r0 = rnow(CLOCK_MONOTONIC); while (rnow(CLOCK_MONOTONIC) - r0 < 20 * MS) {}
      struct timespec seen, kernel; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &seen); raw_clock(CLOCK_PROCESS_CPUTIME_ID, &kernel);
      VALUE("cputime_not_dilated", ns(kernel) / 1000, ns(seen) / 1000, 1000); }
    printf("DONE\n");
    return 0;
}
