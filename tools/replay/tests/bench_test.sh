#!/usr/bin/env bash
# The benchmarks churn.sh and two.sh on small hand-written traces (no cost
# model: quick): each prints its table and exits 0; two.sh's merge of
# timelines is exact; bad arguments and a missing build are refused (exit
# 2); an interrupted two.sh leaves no process and no file behind.
#   bench_test.sh CASE      (env: VMM_BUILD_DIR, VMM_SOURCE_DIR, and
#                            VMM_REPLAY_PRELOAD for sanitizer builds)
set -euo pipefail
case_=$1
B=$VMM_BUILD_DIR
D=$VMM_SOURCE_DIR/tools/replay
T=$(mktemp -d /tmp/vmm-bench-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL [$case_]: $*" >&2; [[ -f $T/out ]] && cat "$T/out" "$T/err" >&2; exit 1; }
printf 'alloc w 6M\nalloc a 3M\nalloc s 1000\nfree s\nalloc b 1536K\nfree a\nfree b\nfree w\n' > "$T/a.trace"
printf 'alloc x 4M\nalloc y 10M\nfree x\nalloc z 2M\nfree y\nfree z\n' > "$T/b.trace"
refused() {  # PATTERN CMD...: exit 2 and the pattern on stderr
  local p=$1 rc=0; shift
  "$@" > /dev/null 2> "$T/err" || rc=$?
  [[ $rc -eq 2 ]] && grep -q -- "$p" "$T/err" || fail "$* : exit $rc, $(cat "$T/err")"
}

case $case_ in
churn)
  "$D/churn.sh" -b "$B" -p 2 -L off "$T/a.trace" > "$T/out" 2> "$T/err" || fail "exit $?"
  # Header, separator, and a row per device size with twelve cells.
  [[ $(grep -c '^| a.trace | ' "$T/out") -eq 2 ]] || fail "no row per device"
  awk -F'|' '/^\| a.trace/ && NF != 14 { exit 1 }' "$T/out" || fail "a row without 12 cells"
  grep -qE '^\| a.trace \| 64 MiB \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| (met|MISSED)' "$T/out" || fail "bad row"
  [[ $(grep -c 'churn: run' "$T/err") -eq 4 ]] || fail "no progress line per run"
  # The pool-hit cell: a.trace fits what pass 1 made, so pass 2's four
  # allocations are all pool hits, none excluded; their wall p99 and the
  # driver time charged (0: no profile); the whole-pass figure: pass 2.
  grep -qE '\| [0-9.]+ \[driver 0.0\] \(4 hits; excluded 0, 0\) \| (met|MISSED) \| [0-9.]+ \(pass 2\) \|$' "$T/out" ||
    fail "no pool-hit figure"
  # The churn cost at the profile's prices (off: none) and its share.
  grep -qE '\| 0 / 0 \(\+0\.0%\) \|' "$T/out" || fail "no churn-cost share"
  refused '-p 1: 2..16' "$D/churn.sh" -b "$B" -p 1 "$T/a.trace"
  refused '-S medium' "$D/churn.sh" -b "$B" -S medium "$T/a.trace"
  refused 'no such trace' "$D/churn.sh" -b "$B" "$T/none.trace"
  refused 'build first' "$D/churn.sh" -b "$T" "$T/a.trace"
  ;;
two)
  "$D/two.sh" -b "$B" -L off "$T/a.trace" "$T/b.trace" > "$T/out" 2> "$T/err" || fail "exit $?"
  grep -qE '^\| roomy \| [0-9]+ MiB \| [0-9.]+ MiB \| 24.5 MiB \| [0-9.]+ MiB \| [0-9.]+ \| (met|MISSED)' "$T/out" || fail "no roomy row"
  grep -qE '^\| tight \| ' "$T/out" || fail "no tight row"
  grep -qE '\| 0 / 0 \|' "$T/out" || fail "failures counted"
  # The merge: at equal times a decrease goes first (20, not 30).
  printf '# h\n0 1 10\n0 5 0\n' > "$T/e1"; printf '# h\n0 3 7\n0 5 20\n' > "$T/e2"
  [[ $("$D/two.sh" -M "$T/e1" "$T/e2") == 20 ]] || fail "merge: $("$D/two.sh" -M "$T/e1" "$T/e2")"
  printf '0 1 5\n0 9 6\n' > "$T/e3"
  [[ $("$D/two.sh" -M "$T/e1" "$T/e3") == 15 ]] || fail "merge of 3 and 1"
  printf '0 5 1\n0 4 2\n' > "$T/e4"
  rc=0; "$D/two.sh" -M "$T/e4" > /dev/null 2> "$T/err" || rc=$?
  [[ $rc -ne 0 ]] && grep -q 'time does not increase' "$T/err" || fail "a timeline going back in time was taken"
  refused '-p 0: 1..16' "$D/two.sh" -b "$B" -p 0 "$T/a.trace" "$T/b.trace"
  refused 'TRACE_A TRACE_B' "$D/two.sh" -b "$B" "$T/a.trace"
  refused 'build first' "$D/two.sh" -b "$T" "$T/a.trace" "$T/b.trace"
  ;;
interrupt)
  # A replay that sleeps; the benchmark is stopped while it runs.
  printf 'alloc a 4M\nsleep 20000\nfree a\n' > "$T/slow.trace"
  mkdir "$T/tmp"
  TMPDIR=$T/tmp "$D/two.sh" -b "$B" -L off "$T/slow.trace" "$T/b.trace" > "$T/out" 2> "$T/err" &
  pid=$!
  for _ in $(seq 100); do pgrep -f "vmm-replay .*$T/slow.trace" > /dev/null && break; sleep 0.1; done
  pgrep -f "vmm-replay .*$T/slow.trace" > /dev/null || fail "the replay did not start"
  kill -TERM "$pid"
  rc=0; wait "$pid" || rc=$?
  [[ $rc -ne 0 ]] || fail "an interrupted run exited 0"
  sleep 0.5
  left=$(pgrep -a -f "$T/" || true)
  [[ -z $left ]] || { kill $(awk '{ print $1 }' <<<"$left") 2>/dev/null || true; fail "left running: $left"; }
  [[ -z $(ls -A "$T/tmp") ]] || fail "left files: $(ls "$T/tmp")"
  ;;
*) fail "unknown case" ;;
esac
echo "ok [$case_]"
