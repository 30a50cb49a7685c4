#!/bin/bash
# vmm-timeline on the hand-written sample.log (every action, a REMAP chain, a
# COPY, unfreed allocations, daemon lines, one malformed line, midnight):
# exact --summary figures, a valid PNG of the requested size, exit codes;
# two merged logs; then on logs the suite produces: a KV-cache replay through
# the shim and vmmd, whose REMAPs it must see.
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

# 6. An empty log still gives a (blank) timeline.
: >"$T/empty.log"
"$TL" -o "$T/empty.png" --summary "$T/empty.log" >"$T/summary" 2>"$T/err"
rc=$?
[ $rc -eq 0 ] || fail "empty: exit $rc: $(cat "$T/err")"
grep -qx 'peak_bytes: 0' "$T/summary" || fail "empty: peak not 0"
png_size "$T/empty.png" >/dev/null || fail "empty: not a PNG"

[ $fails -eq 0 ] || { echo "$fails failure(s)" >&2; exit 1; }

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
echo "timeline ok: sample and a replay log ($allocs ALLOC, $remaps REMAP)"
