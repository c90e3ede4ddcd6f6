#!/usr/bin/env bash
# CPU pacing of trapped programs (run it alone on a quiet host; it prints the load): the
# burst probe of bench/cpu.sh linked statically, so that it runs under the syscall trap
# (dilation-trap), whose tracer paces it. Prints virtual/expected duration of bursts of
# 0.1, 1, 10 and 100 ms at TDF 1, 10 and 50 (cpus 1: TDF 1 is not paced, as in the shim).
# The variables of bench/cpu.sh apply (TDFS, WIDTHS, REPS, CPUS, QUANTUM_US).
set -euo pipefail
cd "$(dirname "$0")/.."
TRAP=1 exec bench/cpu.sh "$@"
