#!/usr/bin/env bash
# Copy throughput of one replicator function instance across the emulated WAN (docs/benchmarks.md).
#
# For each size, a two-region topology (that of topologies/replica-small.yaml, generated here)
# runs at a fixed TDF: the writer PUTs one object of SIZE MiB to the source store (multipart),
# the coordinator plans a copy with at most one instance (the object is above the part
# threshold, so that instance pulls every part from the pool and uploads it to the destination
# store across the WAN link), and the writer waits until the destination holds it. The
# instance's timing is the platform's record of its attempt (`invocations.jsonl`: billed
# duration from its slot to its end, less the modelled ready delay D), in the nodes' virtual
# time. Prints per size: the virtual copy time, the achieved rate in Mbit/s and its ratio to
# the WAN link's configured rate, the attempts, and the host load average before and after.
#
# Usage (root, like every `diorama run`; run it alone on a quiet host):
#   bench/replica_copy.sh [--tdf N] [--rate 200Mbit] [--delay 40ms] [--cpus 0.25] [SIZE_MIB ...]
# Defaults: TDF 10, the small topology's WAN (200Mbit, 40 ms), its 0.25 cpus per node, sizes 64 256.
set -euo pipefail
cd "$(dirname "$0")/.."
tdf=10
rate=200Mbit
delay=40ms
cpus=0.25
sizes=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tdf) tdf="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --delay) delay="$2"; shift 2 ;;
    --cpus) cpus="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) sizes+=("$1"); shift ;;
  esac
done
[ ${#sizes[@]} -gt 0 ] || sizes=(64 256)
rate_bps=$(python3 -c '
import re, sys
m = re.fullmatch(r"([0-9.]+)\s*([kKmMgG]?)(bit|bps)?", sys.argv[1])
if not m: sys.exit("--rate: like 200Mbit")
print(float(m[1]) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m[2].lower()])' "$rate")
scripts/setup >/dev/null
cargo build --release -p harness -p replica -q
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

# The function platforms' delays, which the coordinator's planner assumes too.
invoke="lognormal:-3.0,0.3"
ready="normal:0.1,0.02"

# A region's function platform node: NAME REGION TIME_LIMIT_S (one instance at a time, no retries).
platform_node() {
  cat <<YAML
  - name: $1
    run: {workload: replica, args: {role: platform, listen: "0.0.0.0:9200",
          invoke: "$invoke", ready: "$ready", concurrency: 1, time_limit: $3, retries: 0,
          memory_mb: 512}}
    ready: {tcp: 9200}
    link: {to: $2, rate: 1Gbit, delay: 1ms}
YAML
}

echo "== replica copy throughput: TDF $tdf, WAN $rate ($rate_bps bit/s) delay $delay, cpus $cpus per node, $(nproc) host cores"
printf '%9s %12s %14s %8s %9s %16s %16s\n' size_MiB copy_s_virt rate_Mbit_s ratio attempts load_before load_after
for mib in "${sizes[@]}"; do
  bytes=$((mib * 1024 * 1024))
  # Long enough for the copy at a tenth of the link's rate, in virtual seconds.
  wait_s=$(python3 -c "print(int($bytes * 8 / $rate_bps * 10 + 60))")
  cat > "$work/topo.yaml" <<YAML
name: replica-copy-bench
tdf: $tdf
duration: $((wait_s + 120))s
defaults: {cpus: $cpus, memory: 1GiB}
switches: [region-a, region-b]
nodes:
  - name: replicator
    run: {workload: replica, args: {role: coordinator, listen: "0.0.0.0:9100", root: state,
          coordinator_url: "http://replicator:9100", src: "http://store-a:9000", dst: "http://store-b:9000",
          src_platform: "http://fn-a:9200", dst_platform: "http://fn-b:9200",
          threshold: 1048576, part_size: 8388608, max_instances: 1, lease: 30, slo: 3600,
          bandwidth: $(python3 -c "print(int($rate_bps / 8))"), invoke: "$invoke", ready: "$ready",
          reconcile: 0, changelog: "off"}}
    ready: {tcp: 9100}
    link: {to: region-a, rate: 1Gbit, delay: 1ms}
  - name: store-a
    run: {workload: replica, args: {role: store, listen: "0.0.0.0:9000", region: region-a, root: objects,
          notify: "http://replicator:9100/events"}}
    ready: {tcp: 9000}
    link: {to: region-a, rate: 1Gbit, delay: 1ms}
  - name: store-b
    run: {workload: replica, args: {role: store, listen: "0.0.0.0:9000", region: region-b, root: objects}}
    ready: {tcp: 9000}
    link: {to: region-b, rate: 1Gbit, delay: 1ms}
$(platform_node fn-a region-a "$wait_s")
$(platform_node fn-b region-b "$wait_s")
  - name: writer
    main: true
    memory: 2GiB
    depends_on: [replicator, store-a, store-b, fn-a, fn-b]
    run: {workload: replica, args: {role: writer, src: "http://store-a:9000", dst: "http://store-b:9000",
          ops: 1, keys: 1, hot: 0, large_size: $bytes, large_every: 1, delete_every: 0, hint_every: 0,
          part_size: 8388608, threshold: 1048576, pause_ms: 0, wait: $wait_s, out: verdict.json}}
    link: {to: region-a, rate: 1Gbit, delay: 1ms}
links:
  - {between: [region-a, region-b], rate: $rate, delay: $delay}
YAML
  out="$work/out-$mib"
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  target/release/diorama run "$work/topo.yaml" --out "$out" >"$work/run-$mib.log" 2>&1 ||
    { echo "diorama run failed for $mib MiB:" >&2; tail -20 "$work/run-$mib.log" >&2; exit 1; }
  load_after=$(cut -d' ' -f1-3 /proc/loadavg)
  python3 - "$out" "$bytes" "$rate_bps" "$mib" "$load_before" "$load_after" <<'PY'
import glob, json, os, sys
out, size, link_bps, mib, before, after = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
verdict = json.load(open(os.path.join(out, "nodes", "writer", "verdict.json")))
attempts = []
for path in glob.glob(os.path.join(out, "nodes", "fn-*", "**", "invocations.jsonl"), recursive=True):
    for line in open(path):
        if line.strip():
            attempts.append(json.loads(line))
mine = [a for a in attempts if a.get("size") == size]
done = [a for a in mine if a.get("ok")]
if len(done) != 1:
    sys.exit(f"{mib} MiB: expected one successful attempt for the object, found {len(done)} of {len(mine)}; verdict {verdict}")
a = done[0]
copy_s = a["duration_s"] - a["ready_s"]
mbit = size * 8 / copy_s / 1e6
print(f"{mib:>9} {copy_s:12.3f} {mbit:14.3f} {mbit * 1e6 / link_bps:8.3f} {len(mine):9d} {before:>16} {after:>16}")
v = verdict["verdict"]
if v["mismatched"] or v["equal"] != v["source_objects"]:
    print(f"  warning: the destination does not match the source: {v}")
PY
done
