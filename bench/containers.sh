#!/usr/bin/env bash
# Benchmark: wall time to start and to tear down N trivial nodes, and the harness's peak RSS,
# without links and with every node linked to one switch (userspace network backend: one
# namespace and one TUN device per node).
# Usage (root): bench/containers.sh [N…]   (default: 100 1000). Prints one line per N and kind.
# BENCH_KINDS="plain linked" (default) picks the kinds.
# Each node's memory limit is 16 MiB, or less where N × 16 MiB does not fit in 90% of this
# host's memory (memory is not scaled by the TDF): 5,000 nodes on 24 GiB get 4 MiB (a
# `sleep` and its init use about 1 MiB). Where N nodes at the kernel's smallest quota (1 ms
# a 1 s period, 0.001 cores) exceed 90% of this host's cores, the run is planned at TDF 10
# with the headroom raised to fit (`--headroom`): 5,000 such nodes need 5 cores, which a
# 2-core host over-commits; the nodes only sleep, and start and teardown use no node CPU.
# Figures come from run.json's `timings`, measured by the harness around each phase.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --all-targets -q
bin=target/release/diorama
counts=("$@"); [ ${#counts[@]} -eq 0 ] && counts=(100 1000)
read -r -a kinds <<< "${BENCH_KINDS:-plain linked}"
host_mib=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
cores=$(nproc)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
printf '%-6s %-7s %12s %12s %12s\n' nodes kind start_s teardown_s peak_rss_MiB
for n in "${counts[@]}"; do
  mem=16
  while [ "$mem" -gt 2 ] && [ $(( n * mem )) -gt $(( host_mib * 9 / 10 )) ]; do mem=$(( mem / 2 )); done
  plan=()
  if [ $(( n * 10 )) -gt $(( cores * 9000 )) ]; then
    plan=(--tdf 10 --headroom "$(python3 -c "print(round($n * 0.001 * 1.05 / $cores, 2))")")
    echo "($n nodes: ${plan[*]}, over-committing this host's $cores cores)" >&2
  fi
  for kind in "${kinds[@]}"; do
    case $kind in
      plain) switches=""; link="" ;;
      linked) switches="switches: [sw]"; link="    link: {to: sw, rate: 100Mbit, delay: 1ms}" ;;
      *) echo "unknown kind $kind (plain, linked)" >&2; exit 2 ;;
    esac
    cat > "$work/t$n$kind.yaml" <<YAML
name: bench$n$kind
duration: 1s
defaults: {cpus: 0.01, memory: ${mem}MiB}
$switches
nodes:
  - name: n[0..$n]
    run: {command: ["sleep", "600"]}
$link
YAML
    "$bin" run "$work/t$n$kind.yaml" --net userspace "${plan[@]}" --out "$work/r$n$kind" --log warn >/dev/null 2>"$work/log$n$kind" \
      || { cat "$work/log$n$kind"; exit 1; }
    [ "$mem" -lt 16 ] && echo "($n nodes: memory limit ${mem} MiB a node to fit this host)" >&2
    python3 - "$work/r$n$kind/run.json" "$n" "$kind" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); t = r["timings"]
# start: creating every node's cgroups, namespaces, devices, files and processes until all
# run; teardown: SIGTERM to every node until all exited, then removing every device,
# namespace and cgroup.
start = t["prepare_s"] + t["start_s"]
teardown = t["stop_s"] + t["teardown_s"]
print(f'{sys.argv[2]:<6} {sys.argv[3]:<7} {start:12.2f} {teardown:12.2f} {t["harness_peak_rss_kib"]/1024:12.1f}')
PY
  done
done
"$bin" clean --check
