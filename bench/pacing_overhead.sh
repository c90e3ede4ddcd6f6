#!/usr/bin/env bash
# What CPU pacing costs a small node, and whether it stays faithful (run it alone on a quiet
# host; it prints the load). A one-thread node serves REQS "requests": a sleep of GAP_US
# (virtual), W_US of CPU of a host core (calibrated here without dilation), one write.
# For each cpus and TDF it prints the CPU of the compute alone, the process's whole CPU per
# request, and the virtual time per request; a faithful model gives the same virtual time
# at every TDF (GAP_US + W_US / min(1, cpus), plus the host's own costs, which a TDF-1 run
# of the same cpus shows).
#
#   bench/pacing_overhead.sh                 cpus 0.1 and 1, TDF 1 and 10, W_US 50, GAP_US 500
#   CPUS="0.1" TDFS="1 10" MARGINS="1 3" bench/pacing_overhead.sh   also vary the paced quota margin
set -euo pipefail
cd "$(dirname "$0")/.."
CPUS=${CPUS:-"0.1 1"}
TDFS=${TDFS:-"1 10"}
MARGINS=${MARGINS:-""}
W_US=${W_US:-50}
GAP_US=${GAP_US:-500}
REQS=${REQS:-1000}
SEGMENTS=${SEGMENTS:-1}
scripts/setup >/dev/null
cargo build --release --workspace --all-targets -q
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cc -O2 -o "$work/req" bench/pacing_overhead.c
cc -O2 -pthread -o "$work/burst" tests/dilation/burst.c
iters=$("$work/burst" calibrate "$(awk -v w="$W_US" 'BEGIN { print w / 1000 }')")
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "W_US $W_US GAP_US $GAP_US REQS $REQS; unpaced on the host: $( "$work/req" "$iters" "$REQS" "$GAP_US" "$SEGMENTS" | cut -d' ' -f2-)"
for margin in ${MARGINS:-default}; do
  for cpus in $CPUS; do
    for tdf in $TDFS; do
      cat > "$work/topo.yaml" <<YAML
name: pacing-overhead
duration: 3600s
nodes:
  - name: n
    cpus: $cpus
    main: true
    run: {command: "$work/req $iters $REQS $GAP_US ${SEGMENTS:-1}"}
YAML
      rm -rf "$work/out"
      env_margin=()
      [ "$margin" != default ] && env_margin=(env "DIORAMA_PACED_QUOTA_MARGIN=$margin")
      "${env_margin[@]}" target/release/diorama run "$work/topo.yaml" --tdf "$tdf" --out "$work/out" >/dev/null 2>"$work/err" ||
        { cat "$work/err"; exit 1; }
      printf 'margin %-8s cpus %-4s TDF %-3s %s\n' "$margin" "$cpus" "$tdf" "$(grep '^result' "$work/out/nodes/n/stdout" | cut -d' ' -f2-)"
    done
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
