#!/usr/bin/env bash
# vmm-replay through the real shim against a real vmmd on the emulator,
# driven by tools/replay/run.sh: the peak requested bytes it reports are
# exactly those of a hand-computed trace, in one process and in two, and
# every process's data checks pass.
#   replay_test.sh CASE      (env: VMM_BUILD_DIR, VMM_SOURCE_DIR, and
#                             VMM_REPLAY_PRELOAD for sanitizer builds)
set -euo pipefail
case_=$1
B=$VMM_BUILD_DIR
RUNSH=$VMM_SOURCE_DIR/tools/replay/run.sh
T=$(mktemp -d /tmp/vmm-replay-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL [$case_]: $*" >&2; [[ -f $T/out ]] && cat "$T/out" >&2; exit 1; }
want() {  # KEY VALUE: run.sh's output has it
  local got
  got=$(awk -v k="$1" '$1 == k { print $2 }' "$T/out")
  [[ "$got" == "$2" ]] || fail "$1 = '$got', want '$2'"
}
num() { awk -v k="$1" '$1 == k { print $2 }' "$T/out"; }
# run.sh keeps its files for a post-mortem in the test's own directory.
K=${VMM_TEST_TMPDIR:-$T}/run
rm -rf "$K"

# Hand-computed: live requested bytes after each line on the right.
cat > "$T/hand.trace" <<'TRACE'
alloc w 6M          # 6291456
alloc a 3M          # 9437184
alloc s1 1000       # 9438184
realloc a 10M       # 6291456 + 10485760 + 1000 = 16778216
free s1             # 16777216
alloc b 1536K       # 18350080  <- the peak
free a              # 7864320
realloc b 100       # 6291556
free b              # 6291456
alloc c 2M          # 8388608
free c              # 6291456
free w              # 0
TRACE
PEAK=18350080

case $case_ in
one)
  "$RUNSH" -b "$B" -m 1024 -k "$K" -w 50 "$T/hand.trace" > "$T/out" 2>&1 || fail "run.sh exit $?"
  want mode broker; want replay_exit 0; want failed_procs 0; want ops 12
  want peak_requested_bytes $PEAK; want realloc_via vmm_realloc
  [[ $(num daemon_round_trips) -ge 1 ]] || fail "no round trip to vmmd"
  [[ $(num peak_physical_bytes) -ge $PEAK ]] || fail "peak physical below the demand"
  [[ $(num daemon_log_GRANT) -ge 1 && $(num client_log_ALLOC) -ge 1 ]] || fail "no log lines counted"
  ;;
procs2)
  "$RUNSH" -b "$B" -m 1024 -k "$K" -w 50 -n 2 "$T/hand.trace" > "$T/out" 2>&1 || fail "run.sh exit $?"
  want replay_exit 0; want failed_procs 0; want ops 24
  want sum_of_peaks_bytes $((2 * PEAK))
  p=$(num peak_requested_bytes)
  [[ $p -ge $PEAK && $p -le $((2 * PEAK)) ]] || fail "concurrent peak $p out of [$PEAK, $((2 * PEAK))]"
  [[ $(num daemon_sessions_accepted) -ge 3 ]] || fail "fewer than 2 replaying sessions"
  ;;
native)
  "$RUNSH" -b "$B" -m 1024 -k "$K" -w 50 -N "$T/hand.trace" > "$T/out" 2>&1 || fail "run.sh exit $?"
  want mode native; want replay_exit 0; want ops 12; want peak_requested_bytes $PEAK
  want realloc_via cudaMalloc+cudaMemcpy+cudaFree
  ;;
csv)
  printf '%s\n' Thread,Time,Action,Pointer,Size,Stream \
    1,0,allocate,0x10,4194304,0 1,0,allocate,0x20,512,0 1,0,free,0x10,4194304,0 \
    1,0,allocate,0x10,6291456,0 1,0,deallocate,0x20,512,0 > "$T/t.csv"
  "$RUNSH" -b "$B" -m 1024 -k "$K" -w 50 "$T/t.csv" > "$T/out" 2>&1 || fail "run.sh exit $?"
  want replay_exit 0; want ops 5; want peak_requested_bytes $((6291456 + 512))
  ;;
torch)
  # PyTorch's pluggable-allocator entry points (vmm_torch_malloc/free),
  # stream-ordered: same peak, data checked, no synchronization at all.
  "$RUNSH" -b "$B" -m 1024 -k "$K" -w 50 -a --torch "$T/hand.trace" > "$T/out" 2>&1 || fail "run.sh exit $?"
  want mode broker; want replay_exit 0; want failed_procs 0; want ops 12
  want peak_requested_bytes $PEAK; want realloc_via cudaMalloc+cudaMemcpy+cudaFree
  [[ $(num daemon_round_trips) -ge 1 ]] || fail "no round trip to vmmd"
  # Allocations and frees only (the resizes above go through cudaFree):
  # memory freed on the stream is reused without any synchronization.
  printf 'alloc a 6M\nfree a\nalloc b 6M\nalloc c 1000\nfree c\nalloc d 1000\nfree b\nfree d\n' > "$T/ordered.trace"
  rm -rf "$K"
  "$RUNSH" -b "$B" -m 1024 -k "$K" -w 50 -a --torch "$T/ordered.trace" > "$T/out" 2>&1 || fail "run.sh exit $?"
  want replay_exit 0; want ops 8; want syncs 0
  # Without the library the entry points are missing: a clear failure.
  if LD_LIBRARY_PATH=$B/tests/cuemu/lib CUEMU_INSTANCE=vmm-replay-torch-$$ \
     "$B/tools/vmm-replay" --torch "$T/hand.trace" > "$T/out" 2>&1; then
    fail "--torch without the library succeeded"
  fi
  grep -q 'vmm_torch_malloc and vmm_torch_free not found' "$T/out" || fail "no clear error"
  ;;
*) fail "unknown case" ;;
esac
echo "ok [$case_]"
