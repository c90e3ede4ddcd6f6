/* Sleep and clock probe for the syscall trap (built with -static by tests/tests/dilation_go.rs).
 * Prints one line per sleep: "sleep <requested ns> <perceived ns>" (perceived on
 * CLOCK_MONOTONIC), then "clock <monotonic elapsed ns> <realtime elapsed ns>" over the run. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/time.h>

static long long ns(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    int n10 = argc > 1 ? atoi(argv[1]) : 30, n100 = argc > 2 ? atoi(argv[2]) : 8;
    long long m0 = ns(CLOCK_MONOTONIC), r0 = ns(CLOCK_REALTIME);
    for (int i = 0; i < n10 + n100; i++) {
        long long req = i < n10 ? 10000000LL : 100000000LL;
        struct timespec ts = {req / 1000000000LL, req % 1000000000LL};
        long long a = ns(CLOCK_MONOTONIC);
        if (i % 2)
            nanosleep(&ts, NULL);
        else
            clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
        printf("sleep %lld %lld\n", req, ns(CLOCK_MONOTONIC) - a);
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    printf("clock %lld %lld\n", ns(CLOCK_MONOTONIC) - m0, ns(CLOCK_REALTIME) - r0);
    printf("time %ld %ld\n", (long)time(NULL), (long)tv.tv_sec);
    return 0;
}
