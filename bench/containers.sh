#!/usr/bin/env bash
# Benchmark: wall time to start and to tear down N trivial nodes, and the harness's peak RSS.
# Usage (root): bench/containers.sh [N…]   (default: 100 1000). Prints one line per N.
# Figures come from run.json's `timings`, measured by the harness around each phase.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace -q
bin=target/release/diorama
counts=("$@"); [ ${#counts[@]} -eq 0 ] && counts=(100 1000)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
printf '%-6s %12s %12s %12s\n' nodes start_s teardown_s peak_rss_MiB
for n in "${counts[@]}"; do
  cat > "$work/t$n.yaml" <<YAML
name: bench$n
duration: 1s
defaults: {cpus: 0.01, memory: 16MiB}
nodes:
  - name: n[0..$n]
    run: {command: ["sleep", "600"]}
YAML
  "$bin" run "$work/t$n.yaml" --out "$work/r$n" --log warn >/dev/null 2>"$work/log$n" || { cat "$work/log$n"; exit 1; }
  python3 - "$work/r$n/run.json" "$n" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); t = r["timings"]
# start: creating every node's cgroups, files and processes until all run;
# teardown: SIGTERM to every node until all exited, then removing every cgroup.
start = t["prepare_s"] + t["start_s"]
teardown = t["stop_s"] + t["teardown_s"]
print(f'{sys.argv[2]:<6} {start:12.2f} {teardown:12.2f} {t["harness_peak_rss_kib"]/1024:12.1f}')
PY
done
"$bin" clean --check
