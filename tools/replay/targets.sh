#!/usr/bin/env bash
# The target measurements of issue 5 ("Targets"), each with the command that
# produced it, on the emulator.  A benchmark: it reports, it asserts nothing
# (the exit status is 0 unless a run could not be started at all).
#   tools/replay/targets.sh [--traces DIR] [BUILD_DIR]     (default: build)
# --traces: where the recorded RMM CSV traces are (default ../shared/traces,
# beside the repository); without them those rows are left out, with a note.
# Takes about a minute.  Every run's files are kept under $TARGETS_KEEP if
# set (one directory per run), else deleted.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
TR=$here/../../../shared/traces
if [[ ${1:-} == --traces ]]; then
  [[ $# -ge 2 ]] || { echo "targets.sh: --traces needs a directory" >&2; exit 1; }
  TR=$2
  shift 2
fi
B=$(cd "${1:-$here/../../build}" && pwd)
RUNSH=$here/run.sh
W=$(mktemp -d /tmp/vmm-targets.XXXXXX)
trap 'rm -rf "$W"' EXIT
KEEP=${TARGETS_KEEP:-$W/keep}
mkdir -p "$KEEP"

# run NAME run.sh-args...: runs, keeps the output in $W/NAME.out and the
# files in $KEEP/NAME; never fails (a failed replay is a result too).
run() {
  local name=$1; shift
  rm -rf "${KEEP:?}/$name"
  echo "  running $name: run.sh $*" >&2
  "$RUNSH" -b "$B" -k "$KEEP/$name" "$@" > "$W/$name.out" 2>&1 || true
}
get() { awk -v k="$2" '$1 == k { print $2; exit }' "$W/$1.out"; }
get0() { local v; v=$(get "$@"); echo "${v:-0}"; }   # counters: 0 is not printed
div() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }
mib() { awk -v a="${1:-0}" 'BEGIN { printf "%.1f MiB", a / 1048576 }'; }
rows=()
row() { rows+=("$1"$'\t'"$2"$'\t'"$3"); }   # target, measured, command

# --- 1. training-like trace: peak physical / peak requested ----------------
run train-2m -a --min-size=2M "$here/train.trace"
run train-all "$here/train.trace"
row "train.trace, allocs >= 2 MiB: physical/requested <= 1.05" \
    "$(get train-2m ratio) ($(mib "$(get train-2m peak_physical_bytes)") / $(mib "$(get train-2m peak_requested_bytes)"))" \
    "run.sh -a --min-size=2M tools/replay/train.trace"
row "train.trace, all allocs: physical/requested <= 1.15" \
    "$(get train-all ratio) ($(mib "$(get train-all peak_physical_bytes)") / $(mib "$(get train-all peak_requested_bytes)"))" \
    "run.sh tools/replay/train.trace"
if [[ -f $TR/medium_ctx128_train_tensor.csv ]]; then
  run real-2m -a --min-size=2M "$TR/medium_ctx128_train_tensor.csv"
  run real-all "$TR/medium_ctx128_train_tensor.csv"
  row "(also) real PyTorch trace, allocs >= 2 MiB" \
      "$(get real-2m ratio) ($(mib "$(get real-2m peak_physical_bytes)") / $(mib "$(get real-2m peak_requested_bytes)"))" \
      "run.sh -a --min-size=2M $TR/medium_ctx128_train_tensor.csv"
  row "(also) real PyTorch trace, all allocs" \
      "$(get real-all ratio) ($(mib "$(get real-all peak_physical_bytes)") / $(mib "$(get real-all peak_requested_bytes)"))" \
      "run.sh $TR/medium_ctx128_train_tensor.csv"
else
  echo "  no $TR/medium_ctx128_train_tensor.csv: the real-trace rows are left out (--traces DIR)" >&2
fi
run kv "$here/kv-cache.trace"
row "(also) kv-cache.trace: physical/requested, REMAP, COPY" \
    "$(get kv ratio); REMAP $(get kv client_log_REMAP), COPY $(get kv client_log_COPY), realloc p50 $(get kv realloc_p50_us) us" \
    "run.sh tools/replay/kv-cache.trace"

# --- 2. processes whose peaks take turns --------------------------------------
for np in 2 4; do
  run "turns$np" -n "$np" -s 600 "$here/turns-$np.trace"
  run "turns$np-native" -N -n "$np" -s 600 "$here/turns-$np.trace"
  row "turns-$np ($np procs): pooled physical <= 1.1 x largest concurrent demand" \
      "$(div "$(get "turns$np" peak_physical_bytes)" "$(get "turns$np" peak_requested_bytes)") ($(mib "$(get "turns$np" peak_physical_bytes)") / $(mib "$(get "turns$np" peak_requested_bytes)")); sum of peaks $(mib "$(get "turns$np" sum_of_peaks_bytes)")" \
      "run.sh -n $np -s 600 tools/replay/turns-$np.trace"
  row "turns-$np without the broker: device peak (sampled)" \
      "$(mib "$(get "turns$np-native" peak_device_used_bytes)") (demand $(mib "$(get "turns$np-native" peak_requested_bytes)"), sum of peaks $(mib "$(get "turns$np-native" sum_of_peaks_bytes)"))" \
      "run.sh -N -n $np -s 600 tools/replay/turns-$np.trace"
done
run turns2-small -n 2 -s 600 -m 1024 "$here/turns-2.trace"
row "turns-2 on a 1024 MiB device (< sum of peaks): completes?" \
    "failed_procs $(get turns2-small failed_procs); physical $(mib "$(get turns2-small peak_physical_bytes)"); recalls $(get0 turns2-small daemon_recalls)" \
    "run.sh -n 2 -s 600 -m 1024 tools/replay/turns-2.trace"

# --- 3. idle: time from the last free until the memory held falls to the floor
floor=$(LD_LIBRARY_PATH=$B/tests/cuemu/lib "$B/daemon/vmmd" --dump-config --config /dev/null |
  awk -F' = ' '$1 == "idle_floor" { print $2 }')
# to_floor NAME FROM_MS: from FROM_MS on (while the process lives), when
# physical_bytes (the process's cache, lent to it, plus the daemon's idle
# pool) last fell to the level it then kept, that level (lent + idle), and
# whether it is at the floor.
to_floor() {
  awk -F, -v from="$2" -v floor="$floor" '
    NR > 1 && $1 >= from { t[++n] = $1; p[n] = $2; l[n] = $3; i[n] = $4 }
    END {
      if (n == 0) { print "no samples"; exit }
      k = n
      while (k > 1 && p[k - 1] == p[n]) k--
      printf "%d ms to %.1f MiB (lent %.1f + idle pool %.1f; from %.1f MiB), %s", t[k] - from,
        p[n] / 1048576, l[n] / 1048576, i[n] / 1048576, p[1] / 1048576,
        p[n] <= floor ? "at the floor" : "floor not reached in " (t[n] - from) " ms"
    }' "$KEEP/$1/samples.csv"
}
run idle "$here/burst-idle.trace"
row "idle, defaults: last free -> held memory at floor ($(mib "$floor")) within 5 s" \
    "$(to_floor idle "$(get idle last_free_unix_ms)")" \
    "run.sh tools/replay/burst-idle.trace"
run idle-trim -T 1000 "$here/burst-idle.trace"
tm=$(get idle-trim trim_unix_ms) lf=$(get idle-trim last_free_unix_ms)
row "idle: vmmctl trim --recall -> floor at once" \
    "$(to_floor idle-trim "${tm:-0}")$([[ -n "$tm" && -n "$lf" && $tm -lt $lf ]] && echo " (trim came before the last free!)")" \
    "run.sh -T 1000 tools/replay/burst-idle.trace  (trim 1 s after the start)"

# --- 4. resize time independent of size, no copy -------------------------------
# In place: one allocation grown 8 times by 64 MiB.  Moved: 8 times, from
# an empty address space, an allocation with a 4 MiB one right after it (no
# VA headroom) grown by 64 MiB, which must move it (by remapping).
gen_resize() {  # SIZE MOVE
  local mb=$(( $(numfmt --from=iec "$1") / 1048576 )) i
  if [[ $2 -eq 0 ]]; then
    echo "alloc a ${mb}M"
    for i in 1 2 3 4 5 6 7 8; do echo "realloc a $(( mb + 64 * i ))M"; done
    echo "free a"
  else
    for i in 1 2 3 4 5 6 7 8; do
      printf 'alloc a %dM\nalloc g 4M\nrealloc a %dM\nfree a\nfree g\n' "$mb" $(( mb + 64 ))
    done
  fi
}
moves() { cat "$KEEP/$1"/client.log-* 2>/dev/null |
  awk '/\] REMAP / { p = s = ""; for (i = 1; i <= NF; i++) { if ($i ~ /^Ptr=/) p = substr($i, 5); if ($i ~ /^Src=/) s = substr($i, 5) } if (p != s) m++ } END { print m + 0 }'; }
for sz in 64M 4G; do
  gen_resize "$sz" 0 > "$W/resize-$sz.trace"
  gen_resize "$sz" 1 > "$W/resize-move-$sz.trace"
  # Without the broker realloc copies: 4 GiB takes ~40 s on the emulator,
  # so that comparison uses 1 GiB.
  nsz=$([[ $sz == 4G ]] && echo 1G || echo "$sz")
  printf 'alloc a %s\nrealloc a %dM\nfree a\n' "$nsz" $(( $(numfmt --from=iec "$nsz") / 1048576 + 64 )) \
    > "$W/resize-native-$sz.trace"
  run "resize-$sz" -m 16384 "$W/resize-$sz.trace"
  run "resize-move-$sz" -m 16384 -e VMM_VA_HEADROOM=0 "$W/resize-move-$sz.trace"
  run "resize-native-$sz" -N -m 16384 "$W/resize-native-$sz.trace"
done
for sz in 64M 4G; do
  row "resize $sz + 64 MiB x8, in place: time, COPY = 0" \
      "p50 $(get "resize-$sz" realloc_p50_us) us, p99 $(get "resize-$sz" realloc_p99_us) us; REMAP $(get "resize-$sz" client_log_REMAP) (moved $(moves "resize-$sz")), COPY $(get "resize-$sz" client_log_COPY)" \
      "run.sh -m 16384 resize-$sz.trace  (alloc a $sz; realloc a +64M x8)"
  row "resize $sz + 64 MiB, x8, each forced to move" \
      "p50 $(get "resize-move-$sz" realloc_p50_us) us, p99 $(get "resize-move-$sz" realloc_p99_us) us; REMAP $(get "resize-move-$sz" client_log_REMAP) (moved $(moves "resize-move-$sz")), COPY $(get "resize-move-$sz" client_log_COPY)" \
      "run.sh -m 16384 -e VMM_VA_HEADROOM=0 resize-move-$sz.trace  (8x: alloc a $sz; alloc g 4M; realloc a +64M; free both)"
  nsz=$([[ $sz == 4G ]] && echo 1G || echo "$sz")
  row "resize $nsz + 64 MiB without the broker (malloc+copy+free)" \
      "$(get "resize-native-$sz" realloc_p50_us) us" \
      "run.sh -N -m 16384 resize-native-$sz.trace  (alloc a $nsz; realloc a +64M)"
done

# --- 5. memory in another process's cache ----------------------------------------
run recall -n 2 -s 1000 -m 1024 -e VMM_IDLE_MS=0 "$here/recall.trace"
err=$(grep -m1 'vmm-replay\[' "$W/recall.out" | sed 's/^# //' || true)
row "recall: B gets memory cached in A (896 + 896 MiB on 1024 MiB), no error" \
    "failed_procs $(get recall failed_procs), recalls $(get0 recall daemon_recalls), recall_successes $(get0 recall daemon_recall_successes)${err:+; $err}" \
    "run.sh -n 2 -s 1000 -m 1024 -e VMM_IDLE_MS=0 tools/replay/recall.trace"

# --- the table ----------------------------------------------------------------------
echo
printf '%s\n' "${rows[@]}" | awk -F'\t' '{
  printf "%d. %s\n   measured: %s\n   command:  %s\n", NR, $1, $2, $3 }'
echo
echo "(run.sh is tools/replay/run.sh -b $B; missing figures: the run failed, see TARGETS_KEEP)"
