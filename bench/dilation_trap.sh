#!/usr/bin/env bash
# Benchmark of the syscall trap (dilation-trap) against native and the LD_PRELOAD shim;
# every figure measured in this run on this machine.
#  1. Cost of one clock read: Go's time.Now (two clock reads: wall and monotonic) and C's
#     clock_gettime(CLOCK_MONOTONIC), native, under the shim (C only: the shim cannot reach
#     Go) and under the trap, at TDF 10. Timed from outside the process (a trapped process
#     cannot time itself in real time): (T(N calls) − T(0 calls)) / N, best of 3 (the C
#     program makes 5 rounds of N calls).
#     For comparison, the round trip of a seccomp user notification (bench/seccomp_notify_bench.c).
#  2. Real cost of one dilated sleep: wall time per sleep of 1 ms virtual at TDF 10 minus the
#     10 ms it must last, against native sleeps of 10 ms.
#  3. Sleep accuracy at TDF 10 in virtual time: p50/p99 error of 10 ms and 100 ms sleeps
#     (C nanosleep statically linked and Go time.Sleep under the trap, C under the shim),
#     SAMPLES_10/SAMPLES_100 each; and native Go's own error in real time, for reference.
set -euo pipefail
cd "$(dirname "$0")/.."
N_TRAP=${N_TRAP:-20000}; N_NATIVE=${N_NATIVE:-5000000}; SLEEPS=${SLEEPS:-200}
S10=${SAMPLES_10:-300}; S100=${SAMPLES_100:-100}
cargo build --release -p dilation-trap -p dilation-shim -q
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cc -O2 -o "$work/c-dyn" bench/dilation_bench.c
cc -O2 -static -o "$work/c-static" bench/dilation_bench.c
cc -O2 -o "$work/notify" bench/seccomp_notify_bench.c
(cd "$work" && HOME=$work GOCACHE=$work/gocache GO111MODULE=off CGO_ENABLED=0 go build -o go-bench "$OLDPWD/bench/dilation_trap_bench.go")
shim=$PWD/target/release/libdilation.so
trapbin=$PWD/target/release/dilation-trap
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

. bench/per_call.sh

echo "1. clock read, wall ns per call at TDF 10 (best of 3):"
go_native=$(per_call "$N_NATIVE" 1 "$work/go-bench" now @N@)
go_trap=$(per_call "$N_TRAP" 1 "$trapbin" --tdf 10 -- "$work/go-bench" now @N@)
c_native=$(per_call "$N_NATIVE" 5 "$work/c-dyn" calls @N@)
c_shim=$(per_call "$N_NATIVE" 5 env LD_PRELOAD="$shim" DILATION_TDF=10 "$work/c-dyn" calls @N@)
c_trap=$(per_call "$N_TRAP" 5 "$trapbin" --tdf 10 -- "$work/c-static" calls @N@)
printf '  %-40s %10s\n' "Go time.Now, native (vDSO)" "$go_native"
printf '  %-40s %10s   %.0f× native\n' "Go time.Now, trap" "$go_trap" "$(echo "$go_trap / $go_native" | bc -l)"
printf '  %-40s %10s\n' "C clock_gettime, native (vDSO)" "$c_native"
printf '  %-40s %10s   %.2f× native\n' "C clock_gettime, LD_PRELOAD shim" "$c_shim" "$(echo "$c_shim / $c_native" | bc -l)"
printf '  %-40s %10s   %.0f× native\n' "C clock_gettime (static), trap" "$c_trap" "$(echo "$c_trap / $c_native" | bc -l)"

printf '  %-40s %10s\n' "seccomp user notification round trip" "$("$work/notify" "$N_TRAP")"
echo "   (option B of decision 020, for comparison: a trapped clock_gettime answered at once)"

echo "2. real cost of one dilated sleep at TDF 10 (µs beyond the 10 ms real it must last; $SLEEPS sleeps):"
sleep_cost() { local a b; a=$(now); "$@" >/dev/null 2>&1; b=$(now); echo "($b - $a) / $SLEEPS / 1000 - 10000" | bc -l; }
printf '  %-40s %10.1f\n' "C nanosleep(10 ms), native" "$(sleep_cost "$work/c-dyn" sleep 10 "$SLEEPS")"
printf '  %-40s %10.1f\n' "C nanosleep(1 ms), shim" "$(sleep_cost env LD_PRELOAD="$shim" DILATION_TDF=10 "$work/c-dyn" sleep 1 "$SLEEPS")"
printf '  %-40s %10.1f\n' "C nanosleep(1 ms), static, trap" "$(sleep_cost "$trapbin" --tdf 10 -- "$work/c-static" sleep 1 "$SLEEPS")"
printf '  %-40s %10.1f\n' "Go time.Sleep(10 ms), native" "$(sleep_cost "$work/go-bench" sleep 10 "$SLEEPS")"
printf '  %-40s %10.1f\n' "Go time.Sleep(1 ms), trap" "$(sleep_cost "$trapbin" --tdf 10 -- "$work/go-bench" sleep 1 "$SLEEPS")"

echo "3. sleep error in virtual time at TDF 10 (µs): p50 p99, p99 as % of the request (target ≤ 2%)"
for spec in "10 $S10" "100 $S100"; do
  set -- $spec
  read -r p50 p99 < <("$trapbin" --tdf 10 -- "$work/c-static" sleep "$1" "$2")
  printf '  C static, trap, %4s ms × %-4s p50 %8s  p99 %8s  (%.3f%%)\n' "$1" "$2" "$p50" "$p99" "$(echo "$p99 / ($1 * 10)" | bc -l)"
  read -r p50 p99 < <("$trapbin" --tdf 10 -- "$work/go-bench" sleep "$1" "$2")
  printf '  Go, trap,       %4s ms × %-4s p50 %8s  p99 %8s  (%.3f%%)\n' "$1" "$2" "$p50" "$p99" "$(echo "$p99 / ($1 * 10)" | bc -l)"
  read -r p50 p99 < <(LD_PRELOAD="$shim" DILATION_TDF=10 "$work/c-dyn" sleep "$1" "$2")
  printf '  C dynamic, shim %4s ms × %-4s p50 %8s  p99 %8s  (%.3f%%)\n' "$1" "$2" "$p50" "$p99" "$(echo "$p99 / ($1 * 10)" | bc -l)"
done
echo "   reference, undilated (error in real time, as % of the request):"
for spec in "10 $S10" "100 $S100"; do
  set -- $spec
  read -r p50 p99 < <("$work/go-bench" sleep "$1" "$2")
  printf '  Go, native      %4s ms × %-4s p50 %8s  p99 %8s  (%.3f%%)\n' "$1" "$2" "$p50" "$p99" "$(echo "$p99 / ($1 * 10)" | bc -l)"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
