#!/usr/bin/env bash
# Does this host's cache keep a node's working set while the node is paced or idle? A fixed
# unit of work (walking SETS bytes) is timed by its thread's CPU clock after pauses of 0 µs
# to 30 ms, slept and spun. On a host whose caches decay in real time (shared L3 of a cloud
# VM, other tenants), a unit after a long pause costs several times its warm CPU: time
# dilation makes every pause of a node TDF times longer in real time, so a paced node at
# TDF 10 pays more CPU for the same work than at TDF 1 (docs/fidelity.md). Run it alone on
# a quiet host; it prints the load average before and after. Pinned to the last CPU.
#
#   bench/cache_decay.sh                       working sets 64 KiB, 1 MiB, 4 MiB
#   SETS="2097152" REPS=400 bench/cache_decay.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SETS=${SETS:-"65536 1048576 4194304"}
REPS=${REPS:-200}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cc -O2 -o "$work/cache_decay" bench/cache_decay.c
cpu=$(( $(nproc) - 1 ))
lscpu | grep -E '^(Model name|Hypervisor vendor|L2 cache|L3 cache):' | sed 's/  */ /g'
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for set in $SETS; do
  for how in sleep spin; do
    echo "== working set $set bytes, pause by $how (CPU $cpu)"
    taskset -c "$cpu" "$work/cache_decay" "$set" "$REPS" "$how"
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
