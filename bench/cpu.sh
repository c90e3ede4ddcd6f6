#!/usr/bin/env bash
# Calibration benchmark of CPU pacing (run it alone on a quiet host; it prints the load).
#
# A node with `cpus: 1` runs calibrated CPU bursts of W ms of one host core
# (tests/dilation/burst.c, calibrated on this host without dilation) and times each burst
# with its own dilated monotonic clock. A faithful scale model gives W virtual ms at every
# TDF; a CFS quota alone gives W/TDF for bursts that fit in the quota. Prints, per TDF and
# W, the median and the 10th/90th percentiles of virtual/expected over REPS bursts.
#
#   bench/cpu.sh                  TDFs 1 10 50, W 0.1 1 10 100 ms, REPS 11
#   TDFS="10" WIDTHS="1 10" REPS=21 bench/cpu.sh
#   QUANTUM_US=200 bench/cpu.sh   pacing quantum (DILATION_CPU_QUANTUM_US) for the node
#   TRAP=1 bench/cpu.sh           the probe linked statically: it runs under the syscall
#                                 trap, whose tracer paces it (bench/cpu_trap.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
TDFS=${TDFS:-"1 10 50"}
WIDTHS=${WIDTHS:-"0.1 1 10 100"}
REPS=${REPS:-11}
scripts/setup >/dev/null
cargo build --release --workspace --all-targets -q
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
if [ -n "${TRAP:-}" ]; then
  cc -O2 -static -pthread -o "$work/burst" tests/dilation/burst.c
  mechanism=trap
else
  cc -O2 -pthread -o "$work/burst" tests/dilation/burst.c
  mechanism=shim
fi
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "burst: virtual/expected duration (p50 [p10, p90]) of $REPS bursts; cpus ${CPUS:-1}; under the $mechanism"
printf '  %-6s' "TDF"; for w in $WIDTHS; do printf '%24s' "$w ms"; done; echo
for tdf in $TDFS; do
  cmds=()
  for w in $WIDTHS; do cmds+=("$work/burst run $("$work/burst" calibrate "$w") $w $REPS 2"); done
  env_part=""
  [ -n "${QUANTUM_US:-}" ] && env_part=", env: {DILATION_CPU_QUANTUM_US: \"$QUANTUM_US\"}"
  cat > "$work/topo.yaml" <<YAML
name: cpu-bench
duration: 3600s
nodes:
  - name: cruncher
    cpus: ${CPUS:-1}
    main: true
    run: {command: "$(IFS='&'; echo "${cmds[*]}" | sed 's/&/ \&\& /g')"$env_part}
YAML
  rm -rf "$work/out"
  target/release/diorama run "$work/topo.yaml" --tdf "$tdf" --out "$work/out" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }
  grep -q "\"mechanism\": *\"$mechanism\"" "$work/out/run.json" || { echo "the node did not run under the $mechanism"; exit 1; }
  printf '  %-6s' "$tdf"
  for w in $WIDTHS; do
    awk -v w="$w" '$1 == "burst" && $2 == w { print $3 / w }' "$work/out/nodes/cruncher/stdout" | sort -g |
      awk '{ a[NR] = $1 } END { if (NR == 0) { printf "%24s", "none" } else {
        printf "%24s", sprintf("%.3f [%.3f, %.3f]", a[int((NR + 1) / 2)], a[int(NR * 0.1) + 1], a[int(NR * 0.9 + 0.5)]) } }'
  done
  echo
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
