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
printf '%-6s %10s %10s %10s %12s\n' nodes prepare_s start_s teardown_s peak_rss_MiB
for n in "${counts[@]}"; do
  cat > "$work/t$n.yaml" <<YAML
name: bench$n
tdf: 1
duration: 1s
defaults: {cpus: 0.001, memory: 16MiB}
nodes:
  - name: n[0..$n]
    run: {command: ["sleep", "600"]}
YAML
  "$bin" run "$work/t$n.yaml" --out "$work/r$n" --log warn >/dev/null
  python3 - "$work/r$n/run.json" "$n" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); t = r["timings"]
stop_and_teardown = t["stop_s"] + t["teardown_s"]
print(f'{sys.argv[2]:<6} {t["prepare_s"]:10.2f} {t["start_s"]:10.2f} {stop_and_teardown:10.2f} {t["harness_peak_rss_kib"]/1024:12.1f}')
PY
done
"$bin" clean --check
