#!/usr/bin/env bash
# Replay a trace through vmmd on the emulator and report what it cost
# (issue 5, "A replay tool and workloads").
#
# Broker mode (default): starts vmmd in the foreground (temporary socket dir,
# its own CUEMU_INSTANCE, --log-level INFO to a file), resets its high-water
# marks, runs vmm-replay (N processes) under LD_PRELOAD=libvmm_client.so
# with VMM_LOG_LEVEL=INFO, then prints peak requested, vmmd's exact peak
# physical and peak lent (high-water marks kept at every change, read with
# `vmmctl stats --json`), their ratio, bytes created and given back, round
# trips, latencies and the count of each log action.  A ratio below 1.000
# is impossible and fails the tool (exit 3).  vmm-sample still records the
# pool every few ms for a time series (samples.csv, -k), but no peak figure
# comes from it.  Native mode (-N): no vmmd, no preload: the
# emulator's own allocator, whose device usage is sampled with cuMemGetInfo
# from a process of the same emulated machine.
#
#   tools/replay/run.sh [options] TRACE
#     -b DIR    build directory (default: build)
#     -n N      replaying processes (vmm-replay --procs; default 1)
#     -s MS     vmm-replay --stagger
#     -m MB     CUEMU_MEM_MB, the emulated device's memory (default 16384)
#     -c FILE   vmmd config file (default: none, every default)
#     -o LINE   one more config line, e.g. -o 'idle_timeout_ms = 0' (repeatable)
#     -e K=V    one more environment setting for the replayers (repeatable)
#     -a ARG    one more vmm-replay argument, e.g. -a --min-size=2M (repeatable)
#     -i MS     sampling interval (default 5); 0: no sampler (nothing
#               asks vmmd for stats during the replay: for timings)
#     -p N      N passes (vmm-replay --passes): the trace replayed N times
#               in one process; after each pass vmmd's stats are read, and
#               each pass's time, alloc latency and creates/give-backs are
#               printed (passK_time_ms, passK_alloc_p99_us, passK_creates,
#               passK_create_bytes, passK_gpu_releases, passK_oom_failures,
#               passK_oom_recoveries, passK_recall_waits, ...; on the
#               emulator also passK_alloc_driver_p99_us, the p99 of the
#               driver time its latency profile charged each allocation,
#               and passK_process_creates, the replayer's own creates,
#               and passK_allocs_during_create, its allocations during
#               which a create ran anywhere in the emulated machine); and
#               the pool-hit figures of passes 2..N, per allocation (see
#               "Pool hits" below)
#     -B CMD    with -p: one more shell command run between passes, after
#               vmmd's stats are read (VMM_REPLAY_PASS: the pass just done;
#               it must exit 0); vmm-replay's --between is run.sh's own
#     -D        broker mode: also sample the device's used memory
#     -N        native mode: no broker
#     -T MS     MS ms after the replay starts, run `vmmctl trim --recall`
#     -w MS     keep sampling MS ms after the replay exits (default 0)
#     -k DIR    keep the run's files (logs, samples.csv, replay.out) in DIR,
#               which must not exist yet
#
# Pool hits (-p N, N >= 2, on the emulator): an allocation of pass 2..N
# is a pool hit if no create ran anywhere in the emulated machine while it
# was made (vmmd's, the replayer's own, a fallback cudaMalloc's: the
# emulator's instance-wide create counts around each allocation, exact,
# vmm-replay --allocs) and vmmd did not run short during its pass (no
# out-of-memory failure or recovery, no Acquire parked for a recall:
# vmmd counts those per pass only, so such a pass's allocations are all
# excluded).  Printed: pool_hit_allocs, pool_hit_excluded_create (a create
# ran during it), pool_hit_excluded_short (its pass ran short),
# pool_hit_p50_us, pool_hit_p99_us and pool_hit_driver_p99_us (the driver
# time the latency profile charged those allocations); no pool-hit lines
# off the emulator.  The records stay in allocs.txt (-k).
# Output: "key value" lines (sizes in bytes, times in µs or unix ms).
# VMM_REPLAY_REAL_GPU=1 uses the system's driver instead of the emulator
# (scripts/gpu-check.sh on a GPU).
# VMM_REPLAY_PRELOAD overrides what LD_PRELOAD holds (sanitizer builds put
# their runtime first).
# Reports are sent every 10 ms (VMM_REPORT_MS=10) so the sum of the
# sessions' reported in-use bytes is current; -e VMM_REPORT_MS=... overrides.
set -euo pipefail

usage() { sed -n '/^#   tools/,/^# Output/p' "$0" | sed 's/^# \{0,1\}//;$d' >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
B=$here/../../build
procs=1 stagger=0 mem=16384 conf='' interval=5 native=0 devsample=0 trim_ms='' wait_ms=0 keep=''
passes=1
conf_lines=() envs=() rargs=() between_cmd=''
while getopts "b:n:s:m:c:o:e:a:i:p:B:DNT:w:k:h" opt; do
  case $opt in
    b) B=$OPTARG ;;
    n) procs=$OPTARG ;;
    s) stagger=$OPTARG ;;
    m) mem=$OPTARG ;;
    c) conf=$OPTARG ;;
    o) conf_lines+=("$OPTARG") ;;
    e) envs+=("$OPTARG") ;;
    a) rargs+=("$OPTARG") ;;
    i) interval=$OPTARG ;;
    p) passes=$OPTARG ;;
    B) between_cmd=$OPTARG ;;
    D) devsample=1 ;;
    N) native=1 ;;
    T) trim_ms=$OPTARG ;;
    w) wait_ms=$OPTARG ;;
    k) keep=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -eq 1 ]] || usage
trace=$1
[[ -z "$keep" || ! -e "$keep" ]] || { echo "run.sh: -k $keep: exists already" >&2; exit 2; }
[[ $interval =~ ^[0-9]+$ ]] || { echo "run.sh: -i $interval: milliseconds" >&2; exit 2; }
[[ $passes =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: -p $passes: a count >= 1" >&2; exit 2; }
B=$(cd "$B" && pwd)
for f in "$B/tools/vmm-replay" "$B/tools/vmm-sample" "$B/daemon/vmmd" "$B/shim/libvmm_client.so"; do
  [[ -e $f ]] || { echo "run.sh: $f missing: build first (cmake --build $B)" >&2; exit 2; }
done

RUN=$(mktemp -d /tmp/vmm-replay.XXXXXX)
inst=replay-$$-$RANDOM
export CUEMU_INSTANCE=$inst CUEMU_MEM_MB=$mem VMM_SOCKET_DIR=$RUN
if [[ -z "${VMM_REPLAY_REAL_GPU:-}" ]]; then
  export LD_LIBRARY_PATH=$B/tests/cuemu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
unset LD_PRELOAD
vmmd_pid='' samp_pid='' dev_pid='' trim_pid='' replay_pid=''
stop() {  # pid: SIGTERM and reap, if it is ours and alive
  if [[ -n "$1" ]] && kill "$1" 2>/dev/null; then wait "$1" 2>/dev/null || true; fi
}
cleanup() {
  # The replayers (vmm-replay and the processes it forked) are a process
  # group of their own: all of them go.
  if [[ -n "$replay_pid" ]] && kill -TERM -- "-$replay_pid" 2>/dev/null; then
    wait "$replay_pid" 2>/dev/null || true
  fi
  stop "$trim_pid"; stop "$samp_pid"; stop "$dev_pid"; stop "$vmmd_pid"
  if [[ -n "$keep" ]]; then { mkdir -p "$keep" && cp -r "$RUN"/. "$keep"/; } || true; fi
  rm -rf "$RUN"
  rm -f /dev/shm/cuemu-"$inst"-d*
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts a sampler writing $RUN/$2.csv, sets variable $1 to its pid (a
# child of this shell, so it can be waited for), and waits for its first
# sample.
start_sampler() {
  local var=$1 name=$2; shift 2
  "$B/tools/vmm-sample" --interval-ms "$interval" --csv "$RUN/$name.csv" "$@" \
    > "$RUN/$name.out" &
  printf -v "$var" '%s' $!
  for _ in $(seq 400); do
    [[ -f $RUN/$name.csv && $(wc -l < "$RUN/$name.csv") -ge 2 ]] && break
    kill -0 "${!var}" 2>/dev/null || { echo "run.sh: vmm-sample failed" >&2; exit 1; }
    sleep 0.01
  done
}

sock=$RUN/gpu0.sock
if [[ $native -eq 0 ]]; then
  { [[ -n "$conf" ]] && cat "$conf"; for l in "${conf_lines[@]+"${conf_lines[@]}"}"; do echo "$l"; done
    # vmmctl stats is an admin request: root, or the runner's group.
    [[ $(id -u) -eq 0 ]] || echo "admin_group = $(id -gn)"; } \
    > "$RUN/vmmd.conf" || true
  "$B/daemon/vmmd" --foreground --socket-dir "$RUN" --config "$RUN/vmmd.conf" \
    --log-level INFO --log-file "$RUN/vmmd.log" 2> "$RUN/vmmd.stderr" &
  vmmd_pid=$!
  for _ in $(seq 200); do [[ -S "$sock" ]] && break; sleep 0.025; done
  [[ -S "$sock" ]] || { echo "run.sh: vmmd did not start:" >&2; cat "$RUN/vmmd.stderr" >&2; exit 1; }
  "$B/tools/vmmctl" -S "$sock" stats --reset-marks > /dev/null ||
    { echo "run.sh: vmmctl stats --reset-marks failed" >&2; exit 1; }
  [[ $interval -gt 0 ]] && start_sampler samp_pid samples --socket "$sock"
  [[ $devsample -eq 1 ]] && start_sampler dev_pid device --device --interval-ms 10
  renv=(LD_PRELOAD="${VMM_REPLAY_PRELOAD:-$B/shim/libvmm_client.so}" VMM_LOG_LEVEL=INFO
        VMM_LOG_FILE="$RUN/client.log-" VMM_REPORT_MS=10)
else
  start_sampler dev_pid device --device --interval-ms 10
  renv=()
fi

if [[ $passes -gt 1 ]]; then
  # vmmd's counters after each pass but the last (that one: at the end).
  b=''
  [[ $native -eq 0 ]] && b="'$B/tools/vmmctl' -S '$sock' stats --json > '$RUN'/pass-\$VMM_REPLAY_PASS.json"
  [[ -n $between_cmd ]] && b="${b:+$b && }$between_cmd"
  [[ -n $b ]] && rargs+=(--between "$b")
  rargs+=(--passes "$passes" --allocs "$RUN/allocs.txt")
fi
replay_start=$(date +%s%3N)
if [[ -n "$trim_ms" ]]; then
  ( sleep "$(awk -v m="$trim_ms" 'BEGIN { print m / 1000 }')"
    date +%s%3N > "$RUN/trim.ms"
    "$B/tools/vmmctl" -S "$sock" trim --recall > "$RUN/trim.out" 2>&1 ) &
  trim_pid=$!
fi
rc=0
# In the background, in a process group of its own (setsid), so that an
# interrupted run.sh stops every replayer (cleanup) instead of waiting.
setsid env "${renv[@]+"${renv[@]}"}" "${envs[@]+"${envs[@]}"}" "$B/tools/vmm-replay" \
  --procs "$procs" --stagger "$stagger" "${rargs[@]+"${rargs[@]}"}" "$trace" \
  > "$RUN/replay.out" 2> "$RUN/replay.err" < /dev/null &
replay_pid=$!
wait "$replay_pid" || rc=$?
replay_pid=
[[ -n "$trim_pid" ]] && { wait "$trim_pid" 2>/dev/null || true; trim_pid=; }
sleep "$(awk -v m="$wait_ms" 'BEGIN { print m / 1000 }')"
stop "$samp_pid"; samp_pid=
stop "$dev_pid"; dev_pid=

get() { awk -v k="$1" '$1 == k { print $2; exit }' "$2" 2>/dev/null; }
R=$RUN/replay.out
out() { printf '%-34s %s\n' "$1" "$2"; }
out mode "$([[ $native -eq 1 ]] && echo native || echo broker)"
out trace "$trace"
out procs "$procs"
out stagger_ms "$stagger"
out device_mb "$mem"
out replay_exit "$rc"
[[ $rc -ne 0 ]] && sed 's/^/# /' "$RUN/replay.err" | head -20
for k in ops failed_procs peak_requested_bytes sum_of_peaks_bytes alloc_p50_us alloc_p99_us \
         realloc_p50_us realloc_p99_us realloc_via; do
  out "$k" "$(get $k "$R")"
done
peak_req=$(get peak_requested_bytes "$R")
if [[ $native -eq 0 ]]; then
  S=$RUN/samples.out
  # Exact figures: vmmd's high-water marks and counters since the reset.
  "$B/tools/vmmctl" -S "$sock" stats --json > "$RUN/stats.json" ||
    { echo "run.sh: vmmctl stats failed" >&2; exit 1; }
  J=$RUN/stats.json
  jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d[sys.argv[2]].get(sys.argv[3], 0))' "$J" "$1" "$2"; }
  phys=$(jget pool peak_physical_bytes)
  out peak_physical_bytes "$phys"
  out peak_lent_bytes "$(jget pool peak_lent_bytes)"
  out bytes_created "$(jget counters create_bytes)"
  out bytes_given_back "$(jget counters gpu_release_bytes)"
  out samples "$(get samples "$S" || true)"
  out sampler_reconnects "$(get reconnects "$S")"
  out sampled_peak_concurrent_demand_reported "$(get max_sum_reported_in_use_bytes "$S")"
  out sampled_peak_idle_pool_bytes "$(get max_idle_pool_bytes "$S")"
  [[ $devsample -eq 1 ]] && out peak_device_used_bytes "$(get max_device_used_bytes "$RUN/device.out")"
  out peak_mapped_bytes_clients "$(get peak_mapped_bytes "$R")"
  out daemon_round_trips "$(get daemon_round_trips "$R")"
  out syncs "$(get syncs "$R")"
  # The daemon's counters at the end (exact), those that moved.
  python3 -c 'import json,sys
for k, v in json.load(open(sys.argv[1]))["counters"].items():
    if v: print("%-34s %s" % ("daemon_" + k, v))' "$J"
else
  phys=$(get max_device_used_bytes "$RUN/device.out")
  out samples "$(get samples "$RUN/device.out")"
  out peak_device_used_bytes "$phys"
fi
ratio=$(awk -v p="${phys:-0}" -v r="${peak_req:-0}" 'BEGIN { if (r > 0) printf "%.3f", p / r; else print "-" }')
out ratio "$ratio"
# Physical memory below what was requested is impossible: a broken figure.
if [[ $rc -eq 0 && $native -eq 0 && $ratio != - ]] &&
   awk -v x="$ratio" 'BEGIN { exit !(x < 1.0) }'; then
  echo "run.sh: impossible ratio $ratio (peak physical $phys < peak requested $peak_req)" >&2
  rc=3
fi
if [[ $native -eq 0 ]]; then
  for a in ALLOC FREE REMAP COPY; do
    out "client_log_$a" "$(cat "$RUN"/client.log-* 2>/dev/null | grep -c "\] $a " || true)"
  done
  for a in GRANT RELEASE CREATE DESTROY; do
    out "daemon_log_$a" "$(grep -c "\] $a " "$RUN/vmmd.log" 2>/dev/null || true)"
  done
fi
for ((k = 1; k <= passes; k++)); do
  for f in time_ms allocs alloc_p50_us alloc_p99_us; do out "pass${k}_$f" "$(get "pass${k}_$f" "$R")"; done
  # On the emulator: the p99 of the driver time charged per allocation,
  # and the replayers' own creates (vmm-replay --passes).
  for f in alloc_driver_p99_us process_creates allocs_during_create; do
    v=$(get "pass${k}_$f" "$R"); [[ -z $v ]] || out "pass${k}_$f" "$v"
  done
  [[ $native -eq 0 && $rc -eq 0 ]] || continue
  # What vmmd did during pass k: its counters after it minus after k - 1.
  python3 -c 'import json,sys
def c(p):
    return json.load(open(p))["counters"] if p else {}
a, b = c(sys.argv[2]), c(sys.argv[3])
for f in ("creates", "create_bytes", "gpu_releases", "gpu_release_bytes",
          "oom_failures", "oom_recoveries", "recall_waits"):
    print("%-34s %d" % ("pass%s_%s" % (sys.argv[1], f), b.get(f, 0) - a.get(f, 0)))' \
    "$k" "$([[ $k -gt 1 ]] && echo "$RUN/pass-$((k - 1)).json")" \
    "$([[ $k -lt $passes ]] && echo "$RUN/pass-$k.json" || echo "$J")" | tee -a "$RUN/passes.out"
done
# Pool hits, per allocation (above): passes 2..N of allocs.txt.
if [[ $passes -gt 1 && $native -eq 0 && $rc -eq 0 && -f $RUN/allocs.txt ]]; then
  python3 -c 'import sys
short = {}
for line in open(sys.argv[2]):
    k, v = line.split()
    p, _, f = k[4:].partition("_")
    if f in ("oom_failures", "oom_recoveries", "recall_waits"):
        short[int(p)] = short.get(int(p), 0) + int(v)
lat, drv, exc, exs, known = [], [], 0, 0, True
for line in open(sys.argv[1]):
    if line.startswith("#"):
        continue
    proc, p, l, d, c = line.split()
    if int(p) < 2:
        continue
    if c == "-":
        known = False
        break
    if int(c) > 0:
        exc += 1
    elif short.get(int(p), 1) > 0:	# unknown: not a hit
        exs += 1
    else:
        lat.append(int(l))
        drv.append(int(d))
def pct(v, q):	# nearest rank, as vmm-replay
    if not v:
        return 0.0
    v = sorted(v)
    k = min(max(int(q * len(v) + 0.999999), 1), len(v))
    return v[k - 1] / 1000.0
if known:
    for k, v in (("pool_hit_allocs", len(lat)), ("pool_hit_excluded_create", exc),
                 ("pool_hit_excluded_short", exs)):
        print("%-34s %d" % (k, v))
    for k, v in (("pool_hit_p50_us", pct(lat, 0.50)), ("pool_hit_p99_us", pct(lat, 0.99)),
                 ("pool_hit_driver_p99_us", pct(drv, 0.99))):
        print("%-34s %.1f" % (k, v))' "$RUN/allocs.txt" "$RUN/passes.out"
fi
out replay_start_unix_ms "$replay_start"
out last_free_unix_ms "$(get last_free_unix_ms "$R")"
[[ -f $RUN/trim.ms ]] && out trim_unix_ms "$(cat "$RUN/trim.ms")"
exit "$rc"
