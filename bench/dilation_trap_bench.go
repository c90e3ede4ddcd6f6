// Benchmark program for the syscall trap (run by bench/dilation_trap.sh).
//   now N        N calls of time.Now (timed from outside the process)
//   sleep MS N   error of N time.Sleep(MS ms) in the process's (virtual) time: p50 p99 in µs
package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"
)

var sink int64

func main() {
	if len(os.Args) >= 3 && os.Args[1] == "now" {
		n, _ := strconv.Atoi(os.Args[2])
		for i := 0; i < n; i++ {
			sink += time.Now().UnixNano()
		}
		return
	}
	if len(os.Args) >= 4 && os.Args[1] == "sleep" {
		ms, _ := strconv.Atoi(os.Args[2])
		n, _ := strconv.Atoi(os.Args[3])
		req := time.Duration(ms) * time.Millisecond
		errs := make([]float64, n)
		for i := range errs {
			a := time.Now()
			time.Sleep(req)
			errs[i] = float64(time.Since(a)-req) / 1e3
		}
		sort.Float64s(errs)
		fmt.Printf("%.1f %.1f\n", errs[n/2], errs[n*99/100])
		return
	}
	fmt.Fprintln(os.Stderr, "usage: dilation_trap_bench now N | sleep MS N")
	os.Exit(2)
}
