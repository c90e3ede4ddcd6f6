#!/usr/bin/env bash
# Benchmark of the userspace network core against a plain veth pair between two network
# namespaces, every figure measured in this run on this machine (root; iperf3 and nsenter):
#  1. single-flow TCP throughput (iperf3, SECS seconds, default 5) over a veth pair and through
#     the core (one unconstrained link, MTU 1500, TSO offloads on), and their ratio;
#  2. UDP round trips (COUNT, default 20,000): veth vs core; the latency the core adds per
#     traversal (half the round-trip difference), p50 and p99;
#  3. the core's lateness (handled − scheduled) p50/p99/p99.9 while forwarding a paced UDP
#     load (MBPS, default 1000 Mbit/s offered) between 50 node pairs across 100 links;
#  4. idle cost with NODES (default 1,000) idle nodes: CPU of the core over 10 s, and the
#     core's resident memory per node.
# Usage (root): bench/netem.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-5}; COUNT=${COUNT:-20000}; MBPS=${MBPS:-1000}; NODES=${NODES:-1000}
command -v iperf3 >/dev/null || { echo "iperf3 is missing (scripts/setup installs it)"; exit 1; }
cargo build --release -p netemu -q
bin=target/release/netemu-bench
echo "# host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)"
echo "## throughput (iperf3, ${SECS}s, one TCP flow)"
"$bin" throughput --secs "$SECS"
echo "## latency (${COUNT} UDP round trips of 64 bytes)"
"$bin" latency --count "$COUNT"
echo "## lateness (${MBPS} Mbit/s offered, 50 flows, 100 links of 1 ms)"
"$bin" lateness --mbps "$MBPS" --secs 5
echo "## idle (${NODES} nodes)"
"$bin" idle --nodes "$NODES" --secs 10
