// Sleep and clock probe for the syscall trap (built by tests/tests/dilation_go.rs).
// Prints "sleep <requested ns> <perceived ns>" per sleep (time.Sleep, a timer, a ticker),
// then "clock <monotonic elapsed ns> <wall elapsed ns>" over the run. With SPIN=1 a
// goroutine spins on the only P, so the sleeper only runs through SIGURG preemption.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

var spins uint64

func main() {
	n10, n100 := 30, 8
	if len(os.Args) > 2 {
		n10, _ = strconv.Atoi(os.Args[1])
		n100, _ = strconv.Atoi(os.Args[2])
	}
	// SPIN=1: one P and a goroutine that never yields, so every wake-up of the sleeper
	// needs the runtime's asynchronous preemption (SIGURG).
	if os.Getenv("SPIN") == "1" {
		runtime.GOMAXPROCS(1)
		go func() {
			for {
				spins++
			}
		}()
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	for i := 0; i < n10+n100; i++ {
		req := 10 * time.Millisecond
		if i >= n10 {
			req = 100 * time.Millisecond
		}
		a := time.Now()
		switch i % 3 {
		case 0:
			time.Sleep(req)
		case 1:
			<-time.NewTimer(req).C
		default:
			t := time.NewTicker(req)
			<-t.C
			t.Stop()
		}
		fmt.Printf("sleep %d %d\n", req.Nanoseconds(), time.Since(a).Nanoseconds())
	}
	end := time.Now()
	fmt.Printf("clock %d %d\n", end.Sub(start).Nanoseconds(), end.Round(0).Sub(start.Round(0)).Nanoseconds())
	fmt.Printf("time %d %d\n", time.Now().Unix(), time.Now().Unix())
}
