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
passes)
  # Two passes in one process, vmmd's counters read after each (run.sh
  # -p), and the timeline: an event per op, exactly the hand-computed
  # live bytes, times increasing.
  "$RUNSH" -b "$B" -m 1024 -k "$K" -i 0 -p 2 -a "--events=$T/ev" "$T/hand.trace" > "$T/out" 2>&1 ||
    fail "run.sh exit $?"
  want replay_exit 0; want ops 24; want peak_requested_bytes $PEAK
  want pass1_allocs 5; want pass2_allocs 5
  [[ $(num pass1_creates) -ge 1 ]] || fail "pass 1 created nothing"
  total=$(( $(num pass1_creates) + $(num pass2_creates) ))
  [[ $total -eq $(num daemon_creates) ]] || fail "passes' creates $total != vmmd's $(num daemon_creates)"
  [[ $(num pass1_time_ms) != "" && $(num pass2_alloc_p99_us) != "" ]] || fail "no per-pass figures"
  # Everything came from vmmd: the replayer created nothing itself; the
  # driver time charged per allocation is there (0: no latency profile).
  want pass1_process_creates 0; want pass2_process_creates 0
  want pass2_alloc_driver_p99_us 0.0
  # vmmd never ran short (1 GiB device): no out-of-memory, no recall wait.
  want pass2_oom_failures 0; want pass2_oom_recoveries 0; want pass2_recall_waits 0
  [[ -f $K/pass-1.json ]] || fail "no stats after pass 1"
  want_live="6291456 9437184 9438184 16778216 16777216 18350080 7864320 6291556 6291456 8388608 6291456 0"
  got=$(grep -v '^#' "$T/ev" | awk '{ printf "%s%s", (NR > 1 ? " " : ""), $3 }')
  [[ $got == "$want_live $want_live" ]] || fail "timeline: $got"
  grep -v '^#' "$T/ev" | awk '$1 != 0 || $2 <= t { exit 1 } { t = $2 }' || fail "times not increasing"
  ;;
between)
  # --between runs between passes, without the preload, told the pass.
  "$RUNSH" -b "$B" -m 1024 -k "$K" -i 0 -a --passes=3 \
    -a "--between=echo \$VMM_REPLAY_PASS \${LD_PRELOAD:-none} >> $T/hook" "$T/hand.trace" > "$T/out" 2>&1 ||
    fail "run.sh exit $?"
  want replay_exit 0; want ops 36
  [[ $(cat "$T/hook") == $'1 none\n2 none' ]] || fail "hook ran as: $(cat "$T/hook")"
  # A failing command stops the replay, and says so.
  rm -rf "$K"
  rc=0; "$RUNSH" -b "$B" -m 1024 -k "$K" -i 0 -a --passes=2 -a --between=false "$T/hand.trace" > "$T/out" 2>&1 || rc=$?
  [[ $rc -ne 0 ]] || fail "a failing --between command went unnoticed"
  want replay_exit 1
  grep -q -- '--between command after pass 1 failed' "$T/out" || fail "no message"
  ;;
hits)
  # Pool hits, per allocation (run.sh -p): an allocation of pass 2..N is
  # one if no create ran anywhere in the emulated machine while it was
  # made.  After pass 1, another process of the machine begins one long
  # create (8 GiB under a100: about 0.8 s paid, begun before pass 2
  # starts: creator's READY); after pass 2 it is waited for (DONE).  So
  # pass 2's first allocation, at least, ran during a create of another
  # process, begun before it: excluded; pass 3's are all hits.
  cat > "$T/between.sh" <<EOF
if [ "\$VMM_REPLAY_PASS" = 1 ]; then
  CUEMU_LATENCY=a100 "$B/tools/vmm_replay_creator" 8192 "$T/ready" "$T/done" > "$T/creator.log" 2>&1 &
  for i in \$(seq 3000); do [ -e "$T/ready" ] && exit 0; kill -0 \$! 2> /dev/null || exit 1; sleep 0.01; done
  exit 1
fi
for i in \$(seq 3000); do [ -e "$T/done" ] && exit 0; sleep 0.01; done
exit 1
EOF
  # No idle timer gives memory back while a pass waits for the creator
  # (a loaded machine): vmmd has no reason to create after pass 1.
  "$RUNSH" -b "$B" -m 16384 -k "$K" -i 0 -p 3 -B "sh $T/between.sh" -e VMM_IDLE_MS=0 \
    -o 'idle_timeout_ms = 0' -o 'swap_idle = 0' "$T/hand.trace" > "$T/out" 2>&1 || fail "run.sh exit $?"
  want replay_exit 0; want ops 36
  [[ -f $T/done ]] || fail "the creator did not finish: $(cat "$T/creator.log")"
  want pass1_allocs 5; want pass2_allocs 5; want pass3_allocs 5
  [[ $(num pass1_creates) -ge 1 ]] || fail "pass 1 created nothing"
  # vmmd created nothing after pass 1 and never ran short: only the other
  # process's create can exclude an allocation.
  want pass2_creates 0; want pass3_creates 0
  want pass2_process_creates 0; want pass3_process_creates 0
  [[ $(num pass1_allocs_during_create) -ge 1 ]] || fail "no allocation of pass 1 met a create"
  want pass3_allocs_during_create 0
  d2=$(num pass2_allocs_during_create)
  [[ $d2 -ge 1 ]] || fail "no allocation of pass 2 ran during the other process's create"
  want pool_hit_excluded_create "$d2"; want pool_hit_excluded_short 0
  want pool_hit_allocs $((10 - d2))
  # The records: pass 2's first allocation is the one that must have met
  # the create.
  awk '!/^#/ && $2 == 2 { print $5; exit }' "$K/allocs.txt" | grep -qv '^0$' ||
    fail "pass 2's first allocation not marked: $(grep -v '^#' "$K/allocs.txt" | head -8)"
  [[ $(grep -vc '^#' "$K/allocs.txt") -eq 15 ]] || fail "not a record per allocation"
  p99=$(num pool_hit_p99_us); p50=$(num pool_hit_p50_us)
  awk -v a="$p99" -v b="$p50" 'BEGIN { exit !(a >= b && b > 0) }' || fail "pool-hit p99 $p99 < p50 $p50"
  # Without the other process: every later allocation is a hit.
  rm -rf "$K"
  "$RUNSH" -b "$B" -m 1024 -k "$K" -i 0 -p 3 "$T/hand.trace" > "$T/out" 2>&1 || fail "run.sh exit $?"
  want pool_hit_allocs 10; want pool_hit_excluded_create 0; want pool_hit_excluded_short 0
  # Native mode: every allocation is a create of the replayer's own; no
  # pool-hit lines (no vmmd to say whether it ran short).
  rm -rf "$K"
  "$RUNSH" -b "$B" -m 1024 -k "$K" -p 2 -N "$T/hand.trace" > "$T/out" 2>&1 || fail "run.sh exit $?"
  want pass2_allocs_during_create 5
  [[ -z $(num pool_hit_allocs) ]] || fail "pool-hit figures without vmmd"
  ;;
*) fail "unknown case" ;;
esac
echo "ok [$case_]"
