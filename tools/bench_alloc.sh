#!/usr/bin/env bash
# Allocation throughput: cudaMalloc+cudaFree through the shim (warm caches,
# and cold: every call a vmmd round trip) against mimalloc's malloc+free of
# the same size mix, with 1 and 2 threads.  Runs on the emulator; prints a
# table, the ratios the issue sets targets for, and the median of RUNS runs.
#   tools/bench_alloc.sh [BUILD_DIR] [SECONDS] [RUNS]
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
SEC=${2:-2}
RUNS=${3:-3}
RUN=$(mktemp -d /tmp/vmm-bench-alloc.XXXXXX)
export VMM_SOCKET_DIR=$RUN CUEMU_INSTANCE=bench-alloc-$$ CUEMU_MEM_MB=16384
export LD_LIBRARY_PATH=$B/tests/cuemu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
vmmd_pid=
cleanup() {
  [[ -n "$vmmd_pid" ]] && kill "$vmmd_pid" 2>/dev/null && wait "$vmmd_pid" 2>/dev/null
  rm -rf "$RUN" "/dev/shm/cuemu-bench-alloc-$$-d0"
}
trap cleanup EXIT
printf 'idle_timeout_ms = 0\n' > "$RUN/vmmd.conf"
"$B/daemon/vmmd" --foreground --config "$RUN/vmmd.conf" &
vmmd_pid=$!
for _ in $(seq 100); do [[ -S "$RUN/gpu0.sock" ]] && break; sleep 0.05; done

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
run() {  # name threads env...
  local name=$1 t=$2; shift 2
  for _ in $(seq "$RUNS"); do
    env "$@" "$B/tools/bench_alloc" --mode "${name%%-*}" --threads "$t" --seconds "$SEC" |
      awk '{ print $3 }'
  done | median
}
echo "bench_alloc: $RUNS runs of ${SEC}s each, medians of pairs/s" >&2
m1=$(run mimalloc 1)
m2=$(run mimalloc 2)
echo "  mimalloc done" >&2
s1=$(run cuda-shim 1 LD_PRELOAD="$B/shim/libvmm_client.so")
s2=$(run cuda-shim 2 LD_PRELOAD="$B/shim/libvmm_client.so")
echo "  shim (warm) done" >&2
c1=$(run cuda-cold 1 LD_PRELOAD="$B/shim/libvmm_client.so" VMM_SMALL_MAX=0 VMM_CACHE_MAX=0)
echo "  shim (cold) done" >&2
n1=$(run cuda-native 1)
printf '%-34s %12s %12s\n' "pairs/s (median)" "1 thread" "2 threads"
printf '%-34s %12s %12s\n' "mimalloc malloc+free" "$m1" "$m2"
printf '%-34s %12s %12s\n' "shim cudaMalloc+cudaFree, warm" "$s1" "$s2"
printf '%-34s %12s %12s\n' "shim, cold (every call to vmmd)" "$c1" "-"
printf '%-34s %12s %12s\n' "emulator's own cudaMalloc (no shim)" "$n1" "-"
awk -v s1="$s1" -v s2="$s2" -v m1="$m1" 'BEGIN {
  printf "shim / mimalloc, 1 thread:  %.2f  (target >= 0.5)\n", s1 / m1
  printf "shim 2 threads / 1 thread:  %.2f  (target >= 1.7)\n", s2 / s1 }'
