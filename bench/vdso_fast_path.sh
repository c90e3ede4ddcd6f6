#!/usr/bin/env bash
# Benchmark of the vDSO fast path of the syscall trap (decision 022): the cost of one Go
# time.Now (two clock reads: wall and monotonic), all measured in this run on this machine:
#   native (the real vDSO), under dilation-trap with the fast path (--vdso fast, opt-in), and
#   under dilation-trap with the vDSO hidden (DILATION_TRAP_VDSO=hide: every read a
#   trapped syscall), at TDF 10; printed as ns per call and as ratios to native.
# Timed from outside the process (a dilated process cannot time itself in real time):
# (T(N calls) − T(0 calls)) / N, best of ROUNDS. Also C clock_gettime(CLOCK_MONOTONIC)
# from a static binary (glibc's vDSO path) native and through the fast path.
#   N=…        time.Now calls natively and through the fast path (default 5,000,000)
#   N_TRAP=…   calls through the hidden vDSO (default 20,000)
#   ROUNDS=…   repetitions, best kept (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000000}; N_TRAP=${N_TRAP:-20000}; export ROUNDS=${ROUNDS:-5}
cargo build --release -p dilation-trap -q
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cc -O2 -static -o "$work/c-static" bench/dilation_bench.c
(cd "$work" && HOME=$work GOCACHE=$work/gocache GO111MODULE=off CGO_ENABLED=0 go build -o go-bench "$OLDPWD/bench/dilation_trap_bench.go")
trapbin=$PWD/target/release/dilation-trap
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

. bench/per_call.sh

# The fast path must actually be taken (else the figures would be the trap's).
"$trapbin" --vdso fast --tdf 10 --stats -- "$work/go-bench" now 1000 2>"$work/stats" >/dev/null
grep -q 'vdso_injected=1 ' "$work/stats" || { echo "the fast path was not injected: $(cat "$work/stats")"; exit 1; }

go_native=$(per_call "$N" 1 "$work/go-bench" now @N@)
go_fast=$(per_call "$N" 1 "$trapbin" --vdso fast --tdf 10 -- "$work/go-bench" now @N@)
go_hide=$(per_call "$N_TRAP" 1 "$trapbin" --vdso hide --tdf 10 -- "$work/go-bench" now @N@)
c_native=$(per_call "$N" 5 "$work/c-static" calls @N@)
c_fast=$(per_call "$N" 5 "$trapbin" --vdso fast --tdf 10 -- "$work/c-static" calls @N@)
echo "wall ns per call at TDF 10 (best of $ROUNDS):"
printf '  %-44s %10s\n' "Go time.Now, native (vDSO)" "$go_native"
printf '  %-44s %10s   %.2f× native\n' "Go time.Now, trap, vDSO fast path" "$go_fast" "$(echo "$go_fast / $go_native" | bc -l)"
printf '  %-44s %10s   %.0f× native\n' "Go time.Now, trap, vDSO hidden (old path)" "$go_hide" "$(echo "$go_hide / $go_native" | bc -l)"
printf '  %-44s %10s\n' "C clock_gettime (static), native" "$c_native"
printf '  %-44s %10s   %.2f× native\n' "C clock_gettime (static), trap, fast path" "$c_fast" "$(echo "$c_fast / $c_native" | bc -l)"
echo "target (issue 12): Go time.Now through the patched vDSO ≤ 3× native"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
