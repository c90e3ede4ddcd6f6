#!/usr/bin/env bash
# The fidelity validations of docs/fidelity.md, one after the other, each printed as a table
# row per leg. Run it alone on a quiet host: it prints the load average before and after
# every validation, and the harness's own fidelity verdict of every leg.
#
#   bench/fidelity.sh                          the default set below, at TDF 10
#   bench/fidelity.sh cpu-burst:10 isaac-cpu:20   NAME:TDF pairs from topologies/validation/
#
# Each validation's directory (validate.json, compare-*/compare.html, every leg's results)
# is kept under $OUT (default: results/fidelity-<date>).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/fidelity-$(date +%Y%m%d-%H%M%S)}
SETS=("$@")
[ ${#SETS[@]} -eq 0 ] && SETS=(cpu-burst:10 isaac-cpu:10 dumbbell:10)
cargo build --release --workspace --all-targets -q
mkdir -p "$OUT"
row() { # leg, compare.json or "", fidelity json
  python3 - "$@" <<'PY'
import json, sys
leg, cmp_path, fid = sys.argv[1], sys.argv[2], json.loads(sys.argv[3] or "null")
decay = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] not in ("", "None") else None
flags = ",".join(sorted({f["kind"] for f in (fid or {}).get("flags", [])})) or "-"
if decay:
    flags += f" cache-decay x{float(decay):.2f}"
verdict = (fid or {}).get("verdict", "?")
if not cmp_path:
    print(f"  {leg:<9} {'(reference)':<62} fidelity {verdict} {flags}")
    sys.exit()
c = json.load(open(cmp_path))
k = {x["name"]: x for x in c["checks"]}
def rel(n):
    x = k.get(n)
    if not x or x.get("a") is None: return "      -"
    sign = 1 if (x["b"] or 0) >= (x["a"] or 0) else -1
    return f"{sign * x['value'] * 100:+6.1f}%"
def val(n):
    x = k.get(n); return f"{x['value']:.3f}" if x and x.get("value") is not None else "-"
print(f"  {leg:<9} p50 {rel('p50')} p90 {rel('p90')} thr {rel('throughput')} dist {val('distance')} ks {val('ks')}"
      f"  {'PASS' if c['pass'] else 'FAIL'}  fidelity {verdict} {flags}")
PY
}
for set in "${SETS[@]}"; do
  name=${set%%:*}; tdf=${set##*:}
  dir="$OUT/$name-tdf$tdf"
  echo "== $name at TDF $tdf (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
  start=$(date +%s)
  target/release/diorama validate "topologies/validation/$name.yaml" --tdf "$tdf" --out "$dir" >"$dir.log" 2>&1 || true
  echo "   $(($(date +%s) - start)) s real; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ ! -f "$dir/validate.json" ]; then echo "   no validate.json: see $dir.log"; tail -3 "$dir.log"; continue; fi
  v="$dir/validate.json"
  for leg in baseline scaled naive; do
    fid=$(python3 -c "import json,sys; l=[x for x in json.load(open('$v'))['legs'] if x['name']=='$leg']; print(json.dumps(l[0]['fidelity']) if l else '')")
    cmp=""; [ "$leg" != baseline ] && cmp="$dir/compare-$leg/compare.json"
    [ -n "$cmp" ] && [ ! -f "$cmp" ] && { echo "  $leg: no comparison"; continue; }
    decay=$(python3 -c "import json; l=[x for x in json.load(open('$v'))['legs'] if x['name']=='$leg']; print(l[0].get('host_cache_decay') if l else '')")
    row "$leg" "$cmp" "$fid" "$decay"
  done
  python3 -c "import json; print('   verdict:', json.load(open('$v'))['verdict'])"
done
