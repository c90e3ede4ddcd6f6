/* A calibrated CPU burst, timed by the (dilated) monotonic clock.
 *
 *   burst calibrate W_MS          prints the iterations of W_MS of CPU on this host
 *   burst run ITERS W_MS [REPEATS] [GAP_MS]
 *   burst pair ITERS W_MS [REPEATS] [GAP_MS]
 *
 * Calibrate without dilation: pacing would add its own overhead to the thread's CPU time.
 * `run` executes bursts of ITERS iterations (W_MS is only echoed), each after a GAP_MS
 * sleep (virtual), and prints one line per burst:
 * "burst <w_ms> <elapsed_virtual_ms> <cpu_ms>".
 * `pair` runs each burst in two threads at once and prints "pair <w_ms> <elapsed_virtual_ms>"
 * until both are done: on a node of one core the two share it (twice a burst's time), on
 * a node of two cores they do not.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>

static volatile uint64_t sink;

static double now_ms(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void work(uint64_t n) {
    uint64_t x = sink + 0x9e3779b97f4a7c15ull;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    }
    sink = x;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t calibrate(double w) {
    /* Iterations per CPU ms: the median of 9 runs of about 2 ms. */
    uint64_t probe = 200000;
    double per_ms[9];
    for (int i = 0; i < 9; i++) {
        double c0 = now_ms(CLOCK_THREAD_CPUTIME_ID);
        work(probe);
        double c1 = now_ms(CLOCK_THREAD_CPUTIME_ID);
        per_ms[i] = probe / (c1 - c0);
        probe = (uint64_t)(per_ms[i] * 2.0);
    }
    qsort(per_ms, 9, sizeof per_ms[0], cmp);
    return (uint64_t)(per_ms[4] * w);
}

static pthread_barrier_t start;
static uint64_t pair_iters;

static void *pair_half(void *arg) {
    (void)arg;
    pthread_barrier_wait(&start);
    work(pair_iters);
    /* A worker reports its end (a clock read, a pay point): CPU after a thread's last pay
     * point is not paced when the thread just exits. */
    (void)now_ms(CLOCK_MONOTONIC);
    return NULL;
}

/* One pair: both threads start together (the barrier), the pair ends when both joined. */
static double pair(uint64_t n) {
    pthread_t t[2];
    pair_iters = n;
    pthread_barrier_init(&start, NULL, 3);
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, pair_half, NULL);
    pthread_barrier_wait(&start);
    double t0 = now_ms(CLOCK_MONOTONIC);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    double t1 = now_ms(CLOCK_MONOTONIC);
    pthread_barrier_destroy(&start);
    return t1 - t0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "calibrate") && atof(argv[2]) > 0) {
        printf("%llu\n", (unsigned long long)calibrate(atof(argv[2])));
        return 0;
    }
    int is_pair = argc >= 4 && !strcmp(argv[1], "pair");
    if (argc < 4 || (strcmp(argv[1], "run") && !is_pair)) {
        fprintf(stderr, "usage: burst calibrate W_MS | burst run|pair ITERS W_MS [REPEATS] [GAP_MS]\n");
        return 2;
    }
    uint64_t n = strtoull(argv[2], NULL, 10);
    double w = atof(argv[3]);
    int reps = argc > 4 ? atoi(argv[4]) : 21;
    double gap = argc > 5 ? atof(argv[5]) : 2.0;
    if (n == 0 || reps <= 0 || gap < 0) { fprintf(stderr, "burst: bad arguments\n"); return 2; }
    struct timespec g = { (time_t)(gap / 1e3), (long)((gap - (time_t)(gap / 1e3) * 1e3) * 1e6) };
    for (int r = 0; r < reps; r++) {
        nanosleep(&g, NULL);
        if (is_pair) {
            printf("pair %g %.4f\n", w, pair(n));
            continue;
        }
        double c0 = now_ms(CLOCK_THREAD_CPUTIME_ID);
        double t0 = now_ms(CLOCK_MONOTONIC);
        work(n);
        double t1 = now_ms(CLOCK_MONOTONIC);
        double c1 = now_ms(CLOCK_THREAD_CPUTIME_ID);
        printf("burst %g %.4f %.4f\n", w, t1 - t0, c1 - c0);
    }
    return 0;
}
