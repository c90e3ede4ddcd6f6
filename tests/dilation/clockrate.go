// Clock-rate probe for the vDSO fast path (built by tests/tests/vdso_fast_path.rs).
// Reads time.Now in a tight loop for DURATION_MS of its own (virtual) monotonic time and
// prints "t <monotonic ns since start> <wall ns since start> <reads so far>" every
// STEP_MS, then "reads <total>". The test stamps each line with real time from outside.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	duration, step := 1000, 20
	if len(os.Args) > 2 {
		duration, _ = strconv.Atoi(os.Args[1])
		step, _ = strconv.Atoi(os.Args[2])
	}
	start := time.Now()
	next := time.Duration(step) * time.Millisecond
	reads := 0
	for {
		now := time.Now()
		reads++
		mono := now.Sub(start)
		if mono >= next {
			wall := now.Round(0).Sub(start.Round(0))
			fmt.Printf("t %d %d %d\n", mono.Nanoseconds(), wall.Nanoseconds(), reads)
			next += time.Duration(step) * time.Millisecond
		}
		if mono >= time.Duration(duration)*time.Millisecond {
			break
		}
	}
	fmt.Printf("reads %d\n", reads)
}
