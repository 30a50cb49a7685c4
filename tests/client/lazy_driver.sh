#!/bin/bash
# The library and vmmd need no CUDA driver until CUDA is used.
#   lazy_driver.sh <LD_PRELOAD value> <vmmd> <test_client_lazy>
# 1. Common programs preloaded with libvmm_client.so and no driver anywhere
#    (empty LD_LIBRARY_PATH: the emulator is not found) run as without it:
#    exit 0, no output.
# 2. vmmd --help and --version work without a driver; starting it without
#    one fails with one clear line.
# 3. A CUDA program (the emulator on LD_LIBRARY_PATH, vmmd running) has no
#    driver, thread or socket from the library before its first CUDA call
#    (test_client_lazy checks).
set -u
preload=$1 vmmd=$2 prog=$3
tmp=${VMM_TEST_TMPDIR:?}
emu_path=${LD_LIBRARY_PATH:-}
fail() { echo "FAIL: $*" >&2; exit 1; }

# Sanitizer builds: leak reports of the host's own programs are not ours.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

run_plain() {	# name, command...: exit 0 and no output, no driver
	local name=$1 out rc
	shift
	out=$(LD_LIBRARY_PATH= LD_PRELOAD="$preload" "$@" 2>&1)
	rc=$?
	[ "$rc" = 0 ] || fail "$name: exit $rc: $out"
	[ -z "$out" ] || fail "$name: printed: $out"
	echo "ok: $name"
}

run_plain true /bin/true
run_plain sh sh -c 'x=$(echo hi) && [ "$x" = hi ]'
run_plain env-ls sh -c 'ls / >/dev/null'
if py=$(command -v python3) && LD_LIBRARY_PATH= "$py" -c pass 2>/dev/null; then
	run_plain python3 "$py" -c 'import os; os.getpid()'
else
	echo "python3 not here: skipped"
fi

out=$(LD_LIBRARY_PATH= "$vmmd" --help 2>&1) || fail "vmmd --help: $out"
grep -q '^usage: vmmd' <<<"$out" || fail "vmmd --help said: $out"
out=$(LD_LIBRARY_PATH= "$vmmd" --version 2>&1) || fail "vmmd --version: $out"
grep -q '^vmmd [0-9]' <<<"$out" || fail "vmmd --version said: $out"
out=$(LD_LIBRARY_PATH= "$vmmd" --foreground --socket-dir "$tmp/none" 2>&1) &&
	fail "vmmd started without a driver"
[ "$(wc -l <<<"$out")" = 1 ] && grep -q 'cannot load the CUDA driver' <<<"$out" ||
	fail "vmmd without a driver said: $out"
echo "ok: vmmd without a driver"

sock="$tmp/sock"
rm -rf "$sock" && mkdir -p "$sock"
: >"$sock/vmmd.conf"
LD_LIBRARY_PATH="$emu_path" "$vmmd" --foreground --socket-dir "$sock" \
	--config "$sock/vmmd.conf" &
dpid=$!
trap 'kill $dpid 2>/dev/null; wait $dpid 2>/dev/null' EXIT
for _ in $(seq 200); do
	compgen -G "$sock/gpu-*.sock" >/dev/null && break
	sleep 0.05
done
compgen -G "$sock/gpu-*.sock" >/dev/null || fail "vmmd did not start"
LD_LIBRARY_PATH="$emu_path" LD_PRELOAD="$preload" VMM_SOCKET_DIR="$sock" "$prog" ||
	fail "test_client_lazy"
echo "ok: nothing before the first CUDA call"
