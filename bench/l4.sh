#!/usr/bin/env bash
# Benchmark of the L4 balancer (issue 14, docs/l4lb.md), every figure measured in this run
# on this machine; run it on a quiet host:
#  1. per-packet decision cost (ns, wall and thread CPU) of `Balancer::route` for packets of
#     known connections and opening SYNs, `maglev` and `inband`; the Maglev table build for
#     65,537 slots (2, 10, 100 backends); a controller step (balancer-bench, REPS
#     repetitions, default 7);
#  2. single-flow TCP throughput (iperf3, SECS seconds, default 5) through the userspace
#     core to a node, and to an L4 VIP whose backend is that node, and their ratio
#     (target ≥ 0.8), for `maglev` and `inband` (root; iperf3 and nsenter).
# Usage (root): bench/l4.sh          tiny check: SECS=1 REPS=1 FLOWS=100 bench/l4.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-5}; REPS=${REPS:-7}; FLOWS=${FLOWS:-10000}
command -v iperf3 >/dev/null || { echo "iperf3 is missing (scripts/setup installs it)"; exit 1; }
cargo build --release -p balancer -p netemu -q
echo "# host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)"
echo "## decision cost and Maglev build (balancer-bench, ${REPS} repetitions, ${FLOWS} flows)"
target/release/balancer-bench --reps "$REPS" --flows "$FLOWS"
for policy in maglev inband; do
  echo "## single-flow throughput, ${policy} (iperf3, ${SECS}s)"
  target/release/netemu-bench l4-throughput --secs "$SECS" --policy "$policy"
done
