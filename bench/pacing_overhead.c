/* A request-like loop for bench/pacing_overhead.sh:
 *
 *   pacing_overhead ITERS REQS GAP_US [SEGMENTS]
 *
 * REQS times: sleep GAP_US (virtual), compute ITERS iterations in SEGMENTS pieces (default
 * 1), each followed by a clock read (a pay point once 20 µs passed), write one byte to
 * /dev/null (a pay point). Prints the CPU of the compute alone (read with a raw syscall, so
 * that the shim's clock hook does not pay inside it), the process's whole CPU per request
 * (getrusage: compute + sleeps + the pacing's own work), and the virtual time per request. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/resource.h>
static volatile uint64_t sink;
static void work(uint64_t n){uint64_t x=sink+0x9e3779b97f4a7c15ull;for(uint64_t i=0;i<n;i++){x^=x<<13;x^=x>>7;x^=x<<17;}sink=x;}
static long rawcpu(void){struct timespec t;long r;__asm__ volatile("syscall":"=a"(r):"0"(228L),"D"((long)CLOCK_THREAD_CPUTIME_ID),"S"(&t):"rcx","r11","memory");return t.tv_sec*1000000000L+t.tv_nsec;}
static double now(clockid_t c){struct timespec t;clock_gettime(c,&t);return t.tv_sec*1e3+t.tv_nsec/1e6;}
int main(int argc,char**argv){
  uint64_t n=strtoull(argv[1],0,10); int reqs=atoi(argv[2]); double gap=atof(argv[3]); int segs=argc>4?atoi(argv[4]):1; if(segs<1)segs=1;
  int fd=open("/dev/null",O_WRONLY);
  struct timespec g={0,(long)(gap*1e3)};
  struct rusage a,b; getrusage(RUSAGE_SELF,&a); double t0=now(CLOCK_MONOTONIC);
  long wsum=0; for(int r=0;r<reqs;r++){ nanosleep(&g,0); for(int k=0;k<segs;k++){ long c0=rawcpu(); work(n/segs); wsum+=rawcpu()-c0; if(segs>1) now(CLOCK_MONOTONIC); } write(fd,"x",1); }
  double t1=now(CLOCK_MONOTONIC); getrusage(RUSAGE_SELF,&b);
  double cpu=(b.ru_utime.tv_sec-a.ru_utime.tv_sec)*1e6+(b.ru_utime.tv_usec-a.ru_utime.tv_usec)+(b.ru_stime.tv_sec-a.ru_stime.tv_sec)*1e6+(b.ru_stime.tv_usec-a.ru_stime.tv_usec);
  double sys=(b.ru_stime.tv_sec-a.ru_stime.tv_sec)*1e6+(b.ru_stime.tv_usec-a.ru_stime.tv_usec);
  printf("result work_us %.1f cpu_us_per_req %.1f sys_us_per_req %.1f virt_ms_per_req %.3f nivcsw %ld nvcsw %ld\n",wsum/1e3/reqs,cpu/reqs,sys/reqs,(t1-t0)/reqs,b.ru_nivcsw-a.ru_nivcsw,b.ru_nvcsw-a.ru_nvcsw);
  return 0;}
