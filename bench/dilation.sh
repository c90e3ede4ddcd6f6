#!/usr/bin/env bash
# Benchmark of the clock shim, every figure measured in this run on this machine:
#  1. CPU cost of one clock_gettime(CLOCK_MONOTONIC): native (vDSO), libdilation.so at TDF 10,
#     and Debian's libfaketime with FAKETIME="+0 x0.1" (the same 10× slow-down); wall time
#     per call, best of 5 runs of CALLS calls, timed by a raw syscall no preload can see.
#  2. Sleep accuracy at TDF 10: error in virtual time of nanosleep(1 ms, 10 ms, 100 ms),
#     SAMPLES_1/SAMPLES_10/SAMPLES_100 samples each (defaults 1000/1000/100: 1,000 samples of
#     100 ms at TDF 10 take 17 minutes; set SAMPLES_100=1000 for the full figure).
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-10000000}
S1=${SAMPLES_1:-1000}; S10=${SAMPLES_10:-1000}; S100=${SAMPLES_100:-100}
scripts/setup >/dev/null
cargo build --release -p dilation-shim -q
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cc -O2 -o "$work/bench" bench/dilation_bench.c
shim=$PWD/target/release/libdilation.so
faketime=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -1)
native=$("$work/bench" calls "$CALLS")
ours=$(LD_PRELOAD=$shim DILATION_TDF=10 "$work/bench" calls "$CALLS")
echo "clock_gettime(CLOCK_MONOTONIC), wall ns per call (best of 5 × $CALLS calls):"
printf '  %-28s %8s\n' "native (vDSO)" "$native"
printf '  %-28s %8s   %.2f× native\n' "libdilation.so, TDF 10" "$ours" "$(echo "$ours / $native" | bc -l)"
if [ -n "$faketime" ]; then
  theirs=$(LD_PRELOAD=$faketime FAKETIME="+0 x0.1" FAKETIME_NO_CACHE=0 "$work/bench" calls "$CALLS")
  printf '  %-28s %8s   %.2f× native\n' "libfaketime, x0.1" "$theirs" "$(echo "$theirs / $native" | bc -l)"
  printf '  %-28s %8.2f\n' "libdilation / libfaketime" "$(echo "$ours / $theirs" | bc -l)"
else
  echo "  libfaketime: not installed (scripts/setup installs it)"
fi
echo "nanosleep error in virtual time at TDF 10 (µs): p50 p99, as % of the request"
for spec in "1 $S1" "10 $S10" "100 $S100"; do
  set -- $spec
  read -r p50 p99 < <(LD_PRELOAD=$shim DILATION_TDF=10 "$work/bench" sleep "$1" "$2")
  printf '  %4s ms × %-5s  p50 %8s µs  p99 %8s µs  (p99 %.3f%%)\n' "$1" "$2" "$p50" "$p99" "$(echo "$p99 / ($1 * 10)" | bc -l)"
done
