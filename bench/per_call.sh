# Sourced by bench scripts: timing a program from outside (a dilated process cannot time
# itself in real time).
now() { date +%s%N; }
# per_call N CALLS_PER_N CMD...: (T(N) − T(0)) / (N × CALLS_PER_N) in ns, best of
# ${ROUNDS:-3}; @N@ in CMD is replaced by the count.
per_call() {
  local n=$1 rounds=$2; shift 2; local best=""
  for _ in $(seq "${ROUNDS:-3}"); do
    local a b c d
    a=$(now); "${@//@N@/0}" >/dev/null 2>&1; b=$(now)
    c=$(now); "${@//@N@/$n}" >/dev/null 2>&1; d=$(now)
    local per; per=$(echo "(($d - $c) - ($b - $a)) / ($n * $rounds)" | bc -l)
    if [ -z "$best" ] || (( $(echo "$per < $best" | bc -l) )); then best=$per; fi
  done
  printf '%.1f' "$best"
}
