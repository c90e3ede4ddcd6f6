#!/usr/bin/env bash
# Benchmark of the dilated TCP clock (crate tcpclock): a loss-limited TCP flow under
# `diorama run` (100 Mbit/s, 20 ms RTT, 5% loss on the data direction, 1.5 MB), RUNS runs
# per leg (default 4), TDF 1 against TDF 10, for
#  1. the dilated CUBIC (cubic_d1 / cubic_d10, BPF struct_ops);
#  2. the kernel's CUBIC on real time, for comparison.
# Target: the dilated CUBIC's TDF-10 mean within 5% of its TDF-1 mean.
# Prints the host's load average before and after: figures from a busy host say so.
# Usage (root): bench/tcp_clock.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-4}
echo "# host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)"
cargo build --release --workspace --all-targets -q
TCPCLOCK_RUNS=$RUNS TCPCLOCK_KERNEL_CUBIC=1 cargo test --release -q -p diorama-tests --test tcp_clock -- \
  --test-threads=1 --nocapture dilated_cubic_keeps_its_lossy_goodput_at_tdf_10 2>&1 | grep -E '5% loss|kernel cubic|test result'
echo "# after: load average $(cut -d' ' -f1-3 /proc/loadavg)"
