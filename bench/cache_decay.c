// How much CPU a fixed unit of work costs after the thread was away for a while: the
// host's caches decay in *real* time, and time dilation stretches every pause of a node
// TDF times in real time. One unit walks a working set (one byte per 64-byte line), then the
// thread waits (sleeps, or spins on the clock) for a given time; the unit's own thread CPU
// is recorded. The 0 µs row is the warm reference measured in the same run.
//
//   cache_decay SET_BYTES REPS sleep|spin
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(clockid_t c) {
  struct timespec t;
  clock_gettime(c, &t);
  return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static volatile uint64_t sink;

static void unit(const unsigned char *set, long bytes) {
  uint64_t h = 1469598103934665603ULL;
  for (long i = 0; i < bytes; i += 64) {
    h ^= set[i];
    h *= 1099511628211ULL;
  }
  sink = h;
}

static void pause_for(long us, int spin) {
  if (us == 0) return;
  if (spin) {
    int64_t end = now_ns(CLOCK_MONOTONIC) + us * 1000;
    while (now_ns(CLOCK_MONOTONIC) < end) {
    }
  } else {
    struct timespec t = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&t, 0);
  }
}

static int cmp(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: cache_decay SET_BYTES REPS sleep|spin\n");
    return 2;
  }
  long bytes = atol(argv[1]);
  int reps = atoi(argv[2]);
  int spin = strcmp(argv[3], "spin") == 0;
  if (bytes < 64 || reps < 10) return 2;
  unsigned char *set = malloc(bytes);
  int64_t *v = malloc(sizeof *v * reps);
  if (!set || !v) return 1;
  memset(set, 1, bytes);
  static const long waits[] = {0, 100, 300, 1000, 3000, 10000, 30000};
  double ref = 0;
  for (unsigned k = 0; k < sizeof waits / sizeof *waits; k++) {
    unit(set, bytes);
    for (int r = 0; r < reps; r++) {
      pause_for(waits[k], spin);
      int64_t c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
      unit(set, bytes);
      v[r] = now_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
    }
    qsort(v, reps, sizeof *v, cmp);
    double p50 = v[reps / 2] / 1e3;
    if (k == 0) ref = p50;
    printf("%-5s %6ld us  unit CPU p50 %8.1f us  p90 %8.1f us  x%.2f of warm\n", argv[3], waits[k], p50,
           v[reps * 9 / 10] / 1e3, p50 / ref);
  }
  return 0;
}
