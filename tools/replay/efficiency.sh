#!/usr/bin/env bash
# Issue 12's memory targets, on every trace: each replayed through the shim
# and vmmd on the emulator (tools/replay/run.sh: exact figures from vmmd's
# high-water marks and counters), once with the device sized to 1.1 x the
# trace's peak and once on a device 10 x larger.  A benchmark: it reports
# (a markdown table on stdout, a progress line per run on stderr) and marks
# each target met or MISSED; it asserts nothing (exit 0 unless a run could
# not start).
#
#   tools/replay/efficiency.sh [-b BUILD] [-t TRACES_DIR] [-o 'config line'] [TRACE...]
#
# Default: every *.csv of ../shared/traces (beside the repository) and the
# generated tools/replay/*.trace.  Targets (issue 12):
#   ratio = peak physical / peak requested <= 1.05 (under 1 GiB of peak,
#           1.05 x peak + 16 MiB);
#   created / peak physical <= 1.25 on the large device.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=$here/../../build
TR=$here/../../../shared/traces
extra=()
while getopts "b:t:o:" opt; do
  case $opt in
    b) B=$OPTARG ;;
    t) TR=$OPTARG ;;
    o) extra+=(-o "$OPTARG") ;;
    *) echo "usage: efficiency.sh [-b BUILD] [-t TRACES] [-o LINE] [TRACE...]" >&2; exit 1 ;;
  esac
done
shift $((OPTIND - 1))
traces=("$@")
if ((${#traces[@]} == 0)); then
  traces=("$TR"/*.csv "$here"/*.trace)
fi
W=$(mktemp -d /tmp/vmm-efficiency.XXXXXX)
trap 'rm -rf "$W"' EXIT

# The peak of live bytes a trace requests (both formats, FORMAT.md).
peak_of() {
  python3 - "$1" <<'PY'
import csv, sys
path = sys.argv[1]
live, cur, peak = {}, 0, 0
if path.endswith(".csv"):
    for r in csv.DictReader(open(path)):
        a, p, s = r["Action"], r["Pointer"], int(r["Size"])
        if a == "allocate":
            live[p] = s; cur += s; peak = max(peak, cur)
        elif a in ("free", "deallocate") and p in live:
            cur -= live.pop(p)
else:
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    def size(tok):
        tok = tok.upper().replace("IB", "").replace("B", "")
        num = tok.rstrip("KMGT")
        return int(num) * mult[tok[len(num):]]
    for line in open(path):
        f = line.split("#", 1)[0].split()
        if not f:
            continue
        if f[0] == "alloc":
            live[f[1]] = size(f[2]); cur += live[f[1]]; peak = max(peak, cur)
        elif f[0] == "free" and f[1] in live:
            cur -= live.pop(f[1])
        elif f[0] == "realloc" and f[1] in live:
            cur += size(f[2]) - live[f[1]]; live[f[1]] = size(f[2]); peak = max(peak, cur)
print(peak)
PY
}
get() { awk -v k="$2" '$1 == k { print $2; exit }' "$1"; }

printf '| trace | device | peak requested | peak physical | ratio | target | created / physical | creates | given back | alloc p99 µs |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n'
n=0
for t in "${traces[@]}"; do
  [[ -f "$t" ]] || continue
  peak=$(peak_of "$t")
  for size in small large; do
    n=$((n + 1))
    if [[ $size == small ]]; then
      mb=$(awk -v p="$peak" 'BEGIN { m = int(p * 1.1 / 1048576) + 1; print (m < 64 ? 64 : m) }')
    else
      mb=$(awk -v p="$peak" 'BEGIN { m = int(p * 10 / 1048576) + 1; print (m < 64 ? 64 : m) }')
    fi
    echo "efficiency: run $n: $(basename "$t") on a ${mb} MiB device" >&2
    out=$W/run.out
    if ! "$here/run.sh" -b "$B" -m "$mb" "${extra[@]}" "$t" > "$out" 2>&1; then
      printf '| %s | %s MiB | - | - | - | run failed: %s | | | | |\n' "$(basename "$t")" "$mb" \
        "$(tail -1 "$out" | tr '|' '/')"
      continue
    fi
    awk -v t="$(basename "$t")" -v mb="$mb" -v size="$size" \
        -v req="$(get "$out" peak_requested_bytes)" -v phys="$(get "$out" peak_physical_bytes)" \
        -v created="$(get "$out" bytes_created)" -v creates="$(get "$out" daemon_creates)" \
        -v destroys="$(get "$out" daemon_gpu_releases)" -v p99="$(get "$out" alloc_p99_us)" '
      function mib(x) { return sprintf("%.1f MiB", x / 1048576) }
      BEGIN {
        ratio = req > 0 ? phys / req : 0
        limit = req < 1073741824 ? (1.05 * req + 16777216) / req : 1.05
        met = ratio <= limit ? "met" : "MISSED"
        cr = phys > 0 ? created / phys : 0
        crt = size == "large" ? (cr <= 1.25 ? " (met)" : " (MISSED)") : ""
        printf "| %s | %s MiB | %s | %s | %.3f | <= %.3f %s | %.2f%s | %d | %d | %s |\n",
          t, mb, mib(req), mib(phys), ratio, limit, met, cr, crt, creates, destroys, p99
      }'
  done
done
