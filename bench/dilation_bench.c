/* Benchmark of libdilation.so (run by bench/dilation.sh under different LD_PRELOADs).
 *   dilation_bench calls N       wall ns per clock_gettime(CLOCK_MONOTONIC) call, best of 5 runs
 *   dilation_bench sleep MS N    error of N sleeps of MS virtual ms: p50 and p99, in µs */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }
/* The stopwatch: CLOCK_MONOTONIC through a raw syscall instruction, which no preloaded
   library can intercept (libfaketime scales even the CPU-time clocks). */
static long long stopwatch(void) {
    struct timespec t; long ret;
#if defined(__x86_64__)
    __asm__ volatile("syscall" : "=a"(ret) : "a"(228), "D"(CLOCK_MONOTONIC), "S"(&t) : "rcx", "r11", "memory");
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = 113; register long x0 __asm__("x0") = CLOCK_MONOTONIC; register long x1 __asm__("x1") = (long)&t;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1) : "memory"); ret = x0;
#endif
    (void)ret;
    return ns(t);
}
static int cmp(const void *a, const void *b) { long long x = *(long long *)a, y = *(long long *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "calls") == 0) {
        long n = atol(argv[2]);
        double best = 1e18;
        for (int r = 0; r < 5; r++) {
            struct timespec t;
            long long a = stopwatch();
            for (long i = 0; i < n; i++) { clock_gettime(CLOCK_MONOTONIC, &t); __asm__ volatile("" ::: "memory"); }
            long long b = stopwatch();
            double per = (double)(b - a) / n;
            if (per < best) best = per;
        }
        printf("%.2f\n", best);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "sleep") == 0) {
        long long req = atoll(argv[2]) * 1000000LL;
        int n = atoi(argv[3]);
        long long *err = malloc(sizeof(long long) * n);
        for (int i = 0; i < n; i++) {
            struct timespec a, b, r = {req / 1000000000LL, req % 1000000000LL};
            clock_gettime(CLOCK_MONOTONIC, &a);
            nanosleep(&r, NULL);
            clock_gettime(CLOCK_MONOTONIC, &b);
            err[i] = ns(b) - ns(a) - req;
        }
        qsort(err, n, sizeof *err, cmp);
        printf("%.1f %.1f\n", err[n / 2] / 1e3, err[(n * 99) / 100] / 1e3);
        return 0;
    }
    fprintf(stderr, "usage: dilation_bench calls N | sleep MS N\n");
    return 2;
}
