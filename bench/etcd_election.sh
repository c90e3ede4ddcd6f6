#!/usr/bin/env bash
# Time to a new etcd leader after the leader is killed, in virtual time, for three runs of a
# three-member cluster on loopback (Debian's etcd, heartbeat 100 ms, election timeout 1000 ms):
#   baseline  TDF 1,  each member 1 CPU   (native, no dilation)
#   scaled    TDF 10, each member 0.1 CPU (dilation-trap)
#   naive     TDF 1,  each member 0.1 CPU (native: the quota divided by 10, no dilation)
# TRIALS kills per run: kill -9 the leader, time the new leader from its logged timestamp
# (etcd's own clock, i.e. virtual time) against the virtual instant of the kill, restart the
# killed member, let the cluster settle, repeat. Prints each trial and the mean and median.
# Standalone (cgroups directly, v2 or v1) until the harness can run Go nodes under the trap.
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${TRIALS:-10}
command -v etcd >/dev/null || { echo "etcd is not installed (scripts/setup installs etcd-server)"; exit 1; }
cargo build --release -p dilation-trap -q
trapbin=$PWD/target/release/dilation-trap
# cgroup v2 when its root offers the cpu controller, else the v1 cpu hierarchy.
if grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
  v2=1; cg=/sys/fs/cgroup/etcd-election-$$
else
  v2=0; cg=/sys/fs/cgroup/cpu/etcd-election-$$
  [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ] || { echo "no cgroup cpu controller"; exit 1; }
fi
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  sleep 0.5
  for d in "$cg"/m*; do if [ -d "$d" ]; then rmdir "$d" 2>/dev/null || true; fi; done
  rmdir "$cg" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$cg"
if [ "$v2" = 1 ]; then
  grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu > /sys/fs/cgroup/cgroup.subtree_control
  echo +cpu > "$cg/cgroup.subtree_control"
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

cluster="e1=http://127.0.0.1:32411,e2=http://127.0.0.1:32412,e3=http://127.0.0.1:32413"
# start MODE TDF QUOTA_US EPOCH I
start() {
  local mode=$1 tdf=$2 quota=$3 epoch=$4 i=$5
  mkdir -p "$cg/m$i"
  if [ "$v2" = 1 ]; then echo "$quota 100000" > "$cg/m$i/cpu.max"
  else echo 100000 > "$cg/m$i/cpu.cfs_period_us"; echo "$quota" > "$cg/m$i/cpu.cfs_quota_us"; fi
  local wrap=()
  [ "$mode" = scaled ] && wrap=("$trapbin" --tdf "$tdf" --epoch "$epoch" --)
  sh -c 'echo $$ > "$0/cgroup.procs"; shift; exec "$@"' "$cg/m$i" x "${wrap[@]}" etcd --name "e$i" \
    --data-dir "$work/$mode/e$i" --logger zap --log-outputs stderr \
    --listen-peer-urls "http://127.0.0.1:3241$i" --initial-advertise-peer-urls "http://127.0.0.1:3241$i" \
    --listen-client-urls "http://127.0.0.1:3240$i" --advertise-client-urls "http://127.0.0.1:3240$i" \
    --initial-cluster "$cluster" --initial-cluster-state new \
    --heartbeat-interval 100 --election-timeout 1000 2>>"$work/$mode-e$i.log" &
  pids[$i]=$!
}
# Highest "became leader" term and its member and timestamp: "TERM MEMBER TS".
leader() {
  local mode=$1
  for i in 1 2 3; do
    sed -n -E "s/.*\"ts\":\"([^\"]*)\".*became leader at term ([0-9]+).*/\2 $i \1/p" "$work/$mode-e$i.log" 2>/dev/null || true
  done | sort -n | tail -1
}
wait_term_above() {
  local mode=$1 term=$2 deadline=$((SECONDS + 180))
  while [ $SECONDS -lt $deadline ]; do
    local l; l=$(leader "$mode")
    if [ -n "$l" ] && [ "${l%% *}" -gt "$term" ]; then echo "$l"; return 0; fi
    sleep 0.05
  done
  return 1
}

run() {
  local mode=$1 tdf=$2 quota=$3
  local epoch; epoch=$(date +%s%N)
  mkdir -p "$work/$mode"
  for i in 1 2 3; do start "$mode" "$tdf" "$quota" "$epoch" "$i"; done
  local l; l=$(wait_term_above "$mode" 0) || { echo "$mode: no leader"; return 1; }
  sleep "$(echo "3 * $tdf" | bc)"
  local results=()
  for t in $(seq 1 "$TRIALS"); do
    l=$(leader "$mode"); local term=${l%% *} rest=${l#* }; local who=${rest%% *}
    local kill_ns; kill_ns=$(date +%s%N)
    kill -9 "${pids[$who]}"; wait "${pids[$who]}" 2>/dev/null || true
    l=$(wait_term_above "$mode" "$term") || { echo "$mode: no new leader"; return 1; }
    local ts=${l##* }
    local ts_ns; ts_ns=$(date -d "$ts" +%s%N)
    local vkill; vkill=$(echo "$epoch + ($kill_ns - $epoch) / $tdf" | bc)
    local ttl; ttl=$(echo "($ts_ns - $vkill) / 1000000" | bc)
    results+=("$ttl")
    printf '  %-8s trial %2d: killed e%s (term %s), new leader after %5d ms virtual\n' "$mode" "$t" "$who" "$term" "$ttl"
    # Restart the killed member from its data and let it rejoin (3 s virtual).
    start "$mode" "$tdf" "$quota" "$epoch" "$who"
    sleep "$(echo "3 * $tdf" | bc)"
  done
  for i in 1 2 3; do kill -9 "${pids[$i]}" 2>/dev/null || true; wait "${pids[$i]}" 2>/dev/null || true; done
  printf '%s\n' "${results[@]}" | sort -n | awk -v m="$mode" '{a[NR]=$1; s+=$1} END {printf "%s: mean %.0f ms, median %.0f ms, min %d, max %d (n=%d)\n", m, s/NR, (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2), a[1], a[NR], NR}' | tee -a "$work/summary"
}

run baseline 1 100000
run scaled 10 10000
run naive 1 10000
echo "---"; cat "$work/summary"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
