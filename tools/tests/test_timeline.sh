#!/usr/bin/env bash
# vmm-timeline on the hand-written sample (exact counts, a valid PNG of the
# requested size, --strict, a missing file) and on logs the suite produces:
# a KV-cache replay through the shim and vmmd, whose REMAPs it must see.
set -euo pipefail
src=$VMM_SOURCE_DIR
tl=$src/tools/vmm-timeline
tmp=$VMM_TEST_TMPDIR
rm -rf "$tmp/run" "$tmp"/*.png
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$("$tl" --summary -o "$tmp/sample.png" --width 1200 --height 700 \
  "$src/tools/tests/sample.log" 2>/dev/null)
for kv in "ALLOC: 5" "FREE: 4" "REMAP: 3" "COPY: 1" "malformed: 1" \
          "unfreed: 2" "peak_bytes: 27394048" "allocations: 5"; do
  grep -qx "$kv" <<<"$out" || fail "summary lacks '$kv'"
done
python3 - "$tmp/sample.png" <<'PY'
import struct, sys
b = open(sys.argv[1], 'rb').read(33)
assert b[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
assert b[12:16] == b'IHDR', 'no IHDR'
w, h = struct.unpack('>II', b[16:24])
assert (w, h) == (1200, 700), (w, h)
PY
set +e
"$tl" --strict -o "$tmp/x.png" "$src/tools/tests/sample.log" 2>/dev/null
[[ $? -eq 2 ]] || fail "--strict on a malformed line must exit 2"
"$tl" -o "$tmp/x.png" "$tmp/no-such.log" 2>/dev/null
[[ $? -eq 1 ]] || fail "a missing file must exit 1"
set -e

# A real log: the KV-cache workload grows buffers with vmm_realloc.
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
