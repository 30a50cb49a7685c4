#!/usr/bin/env bash
# python/vmm: without the preload it says so; under it, stats, mem_get_info,
# flush and use_in_torch do what they say (test_vmm.py).
#   test_python.sh SRC VMMD VMMCTL PRELOAD
set -euo pipefail
src=$1 vmmd=$2 vmmctl=$3 preload=$4
T=${VMM_TEST_TMPDIR:?}
export PYTHONPATH=$src/python VMM_SOCKET_DIR=$T/sock
rm -rf "$T/sock"
# Not preloaded: a clear VmmError, nothing else.
out=$(python3 -c 'import vmm
try:
    vmm.stats()
except vmm.VmmError as e:
    print(e)')
grep -q 'libvmm_client.so is not loaded in this process' <<<"$out" || { echo "no clear error: $out"; exit 1; }
"$vmmd" --foreground --socket-dir "$T/sock" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 100); do "$vmmctl" stats > /dev/null 2>&1 && break; sleep 0.05; done
LD_PRELOAD=$preload VMM_REQUIRE_DAEMON=1 python3 "$src/tests/python/test_vmm.py" "$vmmctl" "$src/client/vmm_client.h"
