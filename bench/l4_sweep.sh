#!/usr/bin/env bash
# Rate sweep of the L4 inflation experiment (issue 14, docs/l4lb.md): for each open-loop
# client rate and each repetition, runs `lb_inflation_l4_<POLICY>` (TDF 10, then the
# reference TDF) with the client replaced by an open loop, and prints one row per run and
# one verdict per pair, every figure measured in this run. Run it on a quiet host (root,
# memcached).
# Usage: bench/l4_sweep.sh [POLICY] [RATES] [REPS]
#   e.g. bench/l4_sweep.sh inband "3000 4000 6000" 3
#   TDFS=10,1 (default) compares TDF 10 with TDF 1; CONNECTIONS=64.
set -euo pipefail
cd "$(dirname "$0")/.."
POLICY=${1:-inband}; RATES=${2:-"3000 4000 6000"}; REPS=${3:-3}
TDFS=${TDFS:-10,1}; CONNECTIONS=${CONNECTIONS:-64}
# The whole workspace selected, as scripts/test does: the same feature resolution, no rebuild.
cargo test --release --workspace --locked --test lb_inflation --no-run -q 2>/dev/null
echo "# host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r); policy $POLICY, TDFs $TDFS"
for rate in $RATES; do
  for rep in $(seq 1 "$REPS"); do
    echo "## rate $rate/s, connections $CONNECTIONS, repetition $rep ($(date -u +%T))"
    DIORAMA_LB_L4_CLIENT="mode: open, rate: $rate, connections: $CONNECTIONS" DIORAMA_LB_L4_TDFS="$TDFS" \
      cargo test --release -q --workspace --locked --test lb_inflation -- --include-ignored --test-threads=1 \
      --nocapture "lb_inflation_l4_${POLICY}" 2>&1 | grep -E '^(l4-row|l4-verdict)' || true
  done
done
