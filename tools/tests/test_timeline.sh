#!/bin/bash
# vmm-timeline on the hand-written sample.log (every action, a REMAP chain, a
# COPY, unfreed allocations, daemon lines, one malformed line, midnight):
# exact --summary figures, a valid PNG of the requested size, exit codes;
# two merged logs; vmmd's log beside two clients' (exact physical / in-use
# figures); then on logs the suite produces: a KV-cache replay through the
# shim and vmmd, whose REMAPs it must see and whose physical peak and bytes
# created must equal vmmd's own counters.
set -u
src=$VMM_SOURCE_DIR
TL=$src/tools/vmm-timeline
SAMPLE=$src/tools/tests/sample.log
T=$VMM_TEST_TMPDIR
tmp=$T
tl=$TL
rm -rf "$T/run" "$T"/*.png
export MPLCONFIGDIR=$T/mpl	# matplotlib's cache, never in $HOME
fails=0

fail() {
	echo "FAIL: $*" >&2
	fails=$((fails + 1))
}

# png_size FILE: prints "W H" if FILE is a PNG, fails otherwise.
png_size() {
	python3 -c '
import struct, sys
d = open(sys.argv[1], "rb").read(24)
if len(d) < 24 or d[:8] != b"\x89PNG\r\n\x1a\n" or d[12:16] != b"IHDR":
    sys.exit("not a PNG")
print(*struct.unpack(">II", d[16:24]))' "$1"
}

# 1. The sample: exit 0, exact summary, one malformed line reported.
"$TL" -o "$T/sample.png" --width 1000 --height 700 --summary "$SAMPLE" \
    >"$T/summary" 2>"$T/err"
rc=$?
[ $rc -eq 0 ] || fail "sample: exit $rc: $(cat "$T/err")"
cat >"$T/want" <<'EOF'
files: 1
lines: 39
blank: 1
malformed: 1
level.ERR: 1
level.INF: 33
level.DBG: 3
ALLOC: 5
FREE: 4
REMAP: 3
COPY: 1
CREATE: 6
DESTROY: 1
GONE: 1
GRANT: 6
HELLO: 1
LISTEN: 1
QUARANTINE: 1
RELEASE: 1
SIGNAL: 1
TRIM: 1
text: 0
allocations: 5
unfreed: 2
unmatched_free: 1
unmatched_src: 0
alloc_over_live: 0
peak_bytes: 27394048
peak_time: 2.700
duration: 4.900
daemon_files: 1
client_files: 1
physical_peak_bytes: 27262976
physical_peak_time: 2.690
physical_end_bytes: 25165824
inuse_peak_bytes: 27394048
peak_ratio: 0.995
chunks_created: 6
chunks_adopted: 0
chunks_destroyed: 1
bytes_created: 27262976
bytes_adopted: 0
bytes_destroyed: 2097152
unmatched_destroy: 0
EOF
diff -u "$T/want" "$T/summary" >&2 || fail "sample: summary differs"
grep -q 'sample.log:31: ALLOC without Size=' "$T/err" ||
	fail "sample: malformed line not reported: $(cat "$T/err")"

# 2. A PNG of exactly the requested size.
[ -s "$T/sample.png" ] || fail "sample: no PNG"
size=$(png_size "$T/sample.png") || fail "sample: not a PNG"
[ "$size" = "1000 700" ] || fail "sample: PNG is '$size', want '1000 700'"

# 3. --strict: the malformed line is an error.
"$TL" --strict -o "$T/strict.png" "$SAMPLE" >/dev/null 2>"$T/err"
rc=$?
[ $rc -eq 2 ] || fail "--strict: exit $rc, want 2"
grep -q 'sample.log:31' "$T/err" || fail "--strict: line not named: $(cat "$T/err")"

# 4. Missing file and bad usage: exit 1.
"$TL" -o "$T/x.png" "$T/no-such.log" >/dev/null 2>&1
rc=$?
[ $rc -eq 1 ] || fail "missing file: exit $rc, want 1"
"$TL" --bogus "$SAMPLE" >/dev/null 2>&1
rc=$?
[ $rc -eq 1 ] || fail "bad option: exit $rc, want 1"
"$TL" >/dev/null 2>&1
rc=$?
[ $rc -eq 1 ] || fail "no LOG: exit $rc, want 1"

# 5. Two processes merged (peaks add up), far apart in VA, second one starting
# before the first and wrapping midnight; a line that is not a log line.
cat >"$T/x-4243" <<'EOF'
[23:59:57.600] [INF] ALLOC Ptr=0x7f9c00000000 Size=8388608 PA=8388608 Chunks=1
[23:59:59.500] [INF] ALLOC Chunks=0 Size=1024 Ptr=0x7f9c00800000
this is not a log line
[00:00:01.000] [INF] FREE Ptr=0x7f9c00000000 Size=8388608
EOF
"$TL" -o "$T/merged.png" --width 800 --height 600 --title "two processes" \
    --summary "$SAMPLE" "$T/x-4243" >"$T/summary" 2>"$T/err"
rc=$?
[ $rc -eq 0 ] || fail "merged: exit $rc: $(cat "$T/err")"
for kv in 'files: 2' 'lines: 43' 'malformed: 2' 'ALLOC: 7' 'FREE: 5' \
    'allocations: 7' 'unfreed: 3' 'peak_bytes: 35783680' 'peak_time: 3.200' \
    'duration: 5.400'; do
	grep -qx "$kv" "$T/summary" || fail "merged: no '$kv' in: $(tr '\n' ' ' <"$T/summary")"
done
size=$(png_size "$T/merged.png") || fail "merged: not a PNG"
[ "$size" = "800 600" ] || fail "merged: PNG is '$size', want '800 600'"
"$TL" --strict -o "$T/strict.png" "$T/x-4243" >/dev/null 2>&1
rc=$?
[ $rc -eq 2 ] || fail "--strict on a non-log line: exit $rc, want 2"

# 5b. vmmd's log beside two clients' (pool.log, named like neither and given
# between them: recognised by its events): physical bytes from CREATE/ADOPT/
# DESTROY as an exact step function, with one DESTROY of a chunk created
# before the log began (so 2 MiB were there from the start); in use summed
# over both processes, through a REMAP that grows and a COPY.
"$TL" -o "$T/pool.png" --summary "$src/tools/tests/pool-101.log" \
    "$src/tools/tests/pool.log" "$src/tools/tests/pool-202.log" \
    >"$T/summary" 2>"$T/err"
rc=$?
[ $rc -eq 0 ] || fail "pool: exit $rc: $(cat "$T/err")"
for kv in 'files: 3' 'malformed: 0' 'allocations: 4' 'unfreed: 1' \
    'daemon_files: 1' 'client_files: 2' \
    'peak_bytes: 30932992' 'peak_time: 0.800' 'inuse_peak_bytes: 30932992' \
    'physical_peak_bytes: 33554432' 'physical_peak_time: 0.690' \
    'physical_end_bytes: 14680064' 'peak_ratio: 1.085' \
    'chunks_created: 5' 'chunks_adopted: 1' 'chunks_destroyed: 4' \
    'bytes_created: 18874368' 'bytes_adopted: 16777216' \
    'bytes_destroyed: 23068672' 'unmatched_destroy: 1' 'duration: 1.300'; do
	grep -qx "$kv" "$T/summary" || fail "pool: no '$kv' in: $(tr '\n' ' ' <"$T/summary")"
done
png_size "$T/pool.png" >/dev/null || fail "pool: not a PNG"
# vmmd's log alone: no allocations, but the pool is still drawn and summed.
"$TL" -o "$T/pool-alone.png" --summary "$src/tools/tests/pool.log" \
    >"$T/summary" 2>"$T/err"
rc=$?
[ $rc -eq 0 ] || fail "pool alone: exit $rc: $(cat "$T/err")"
for kv in 'daemon_files: 1' 'client_files: 0' 'peak_bytes: 0' \
    'physical_peak_bytes: 33554432' 'peak_ratio: -'; do
	grep -qx "$kv" "$T/summary" || fail "pool alone: no '$kv'"
done
# A CREATE without Size= cannot be summed: malformed, an error under --strict.
printf '[10:00:00.000] [INF] CREATE Chunk=1\n' >"$T/bad-create.log"
"$TL" --strict -o "$T/strict.png" "$T/bad-create.log" >/dev/null 2>&1
rc=$?
[ $rc -eq 2 ] || fail "--strict on CREATE without Size=: exit $rc, want 2"

# 6. An empty log still gives a (blank) timeline.
: >"$T/empty.log"
"$TL" -o "$T/empty.png" --summary "$T/empty.log" >"$T/summary" 2>"$T/err"
rc=$?
[ $rc -eq 0 ] || fail "empty: exit $rc: $(cat "$T/err")"
grep -qx 'peak_bytes: 0' "$T/summary" || fail "empty: peak not 0"
png_size "$T/empty.png" >/dev/null || fail "empty: not a PNG"

[ $fails -eq 0 ] || { echo "$fails failure(s)" >&2; exit 1; }

# 6b. vmmd's address plan (--plan): VA_PLAN / VA_MISS / VA_FREE parsed, the
# bands drawn behind a client's allocation.
cat >"$T/plan.log" <<'EOF'
[10:00:00.000] [INF] HELLO Session=1 Pid=100 Uid=0 Name=a
[10:00:00.001] [INF] VA_PLAN Session=1 Pid=100 Ptr=0x200000000000 Size=34359738368
[10:00:00.002] [INF] VA_PLAN Session=2 Pid=101 Ptr=0x200800000000 Size=34359738368
[10:00:00.003] [INF] VA_MISS Session=2 Pid=101 Planned=0x200800000000 Ptr=0x7f0000000000 Size=34359738368
[10:00:01.000] [INF] VA_FREE Session=1 Pid=100 Ptr=0x200000000000 Size=34359738368
EOF
cat >"$T/plan-client.log" <<'EOF'
[10:00:00.010] [INF] ALLOC Ptr=0x200000000000 Size=67108864 PA=67108864 Chunks=1
[10:00:00.500] [INF] FREE Ptr=0x200000000000
EOF
out=$("$TL" --plan --summary --width 800 --height 600 -o "$T/plan.png" \
    "$T/plan.log" "$T/plan-client.log" 2>"$T/err")
rc=$?
[ $rc -eq 0 ] || fail "plan: exit $rc: $(cat "$T/err")"
for kv in "VA_PLAN: 2" "VA_MISS: 1" "VA_FREE: 1" "daemon_files: 1" \
    "malformed: 0"; do
	grep -qx "$kv" <<<"$out" || fail "plan: no '$kv' in: $out"
done
[ "$(png_size "$T/plan.png")" = "800 600" ] || fail "plan: PNG size"

# 7. A real log: the KV-cache workload grows buffers with vmm_realloc.
set -eo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
"$src/tools/replay/run.sh" -b "$VMM_BUILD_DIR" -m 2048 -k "$tmp/run" \
  "$src/tools/replay/kv-cache.trace" > "$tmp/run.out" 2>&1 ||
  { cat "$tmp/run.out" >&2; fail "replay failed"; }
logs=("$tmp"/run/client.log-*)
[[ -e "${logs[0]}" ]] || fail "no client log"
out=$("$tl" --summary -o "$tmp/kv.png" "${logs[@]}" 2>/dev/null)
allocs=$(sed -n 's/^ALLOC: //p' <<<"$out")
remaps=$(sed -n 's/^REMAP: //p' <<<"$out")
malformed=$(sed -n 's/^malformed: //p' <<<"$out")
[[ ${allocs:-0} -gt 10 && ${remaps:-0} -gt 0 && ${malformed:-1} -eq 0 ]] ||
  fail "suite log: ALLOC=$allocs REMAP=$remaps malformed=$malformed"
[[ -s "$tmp/kv.png" ]] || fail "no PNG for the suite log"
# The same replay with vmmd's log: the physical figures read from its chunk
# events equal vmmd's own exact counters (run.sh reads them from `vmmctl
# stats`), and the summed in-use peak equals the replay's peak requested,
# or exceeds it by at most one block moved by copy (vmm_realloc of a
# sub-allocated block holds the old and the new block at once: where
# blocks are placed, and so which growths are in place, depends on the
# heap's idle pages).
[[ -s "$tmp/run/vmmd.log" ]] || fail "no vmmd log kept"
out=$("$tl" --summary -o "$tmp/kv-pool.png" "$tmp/run/vmmd.log" "${logs[@]}" 2>/dev/null)
get() { sed -n "s/^$1:\{0,1\} *//p" <<<"$2" | head -1; }
for pair in physical_peak_bytes:peak_physical_bytes bytes_created:bytes_created \
    inuse_peak_bytes:peak_requested_bytes; do
	mine=$(get "${pair%%:*}" "$out")
	vmmd=$(get "${pair#*:}" "$(cat "$tmp/run.out")")
	[[ -n "$vmmd" && -n "$mine" ]] ||
	  fail "replay: ${pair%%:*} $mine, run.sh's ${pair#*:} '$vmmd'"
	[[ "$mine" == "$vmmd" ]] && continue
	copy=$(sed -n 's/.*\[INF\] COPY .*Size=\([0-9]*\).*/\1/p' "${logs[@]}" |
	  sort -n | tail -1)
	[[ ${pair%%:*} == inuse_peak_bytes && -n "$copy" && "$mine" -gt "$vmmd" &&
	   "$mine" -le $((vmmd + copy)) ]] ||
	  fail "replay: ${pair%%:*} $mine, run.sh's ${pair#*:} '$vmmd'"
done
[[ $(get daemon_files "$out") == 1 && $(get chunks_created "$out") -gt 0 &&
   $(get malformed "$out") == 0 ]] || fail "replay with vmmd.log: $out"
# The client's reservations as vmmd planned them, drawn with --plan.
out=$("$tl" --plan --summary -o "$tmp/kv-plan.png" "$tmp/run/vmmd.log" \
  "${logs[@]}" 2>/dev/null)
[[ $(get VA_PLAN "$out") -ge 1 && $(get malformed "$out") == 0 ]] ||
  fail "replay --plan: $out"
[[ -s "$tmp/kv-plan.png" ]] || fail "no PNG for the replay with --plan"
echo "timeline ok: sample, pool logs and a replay log ($allocs ALLOC," \
  "$remaps REMAP, physical peak $(get physical_peak_bytes "$out") as vmmd's)"
