#!/usr/bin/env bash
# gpu-probe against the emulator: every probe reports, and the facts the
# emulator is built to show come out as the real driver's (CUDA-FACTS.md).
set -euo pipefail
out=$("$1" --iterations 5)
printf '%s\n' "$out"
for key in driver.version granularity.minimum procaddr.matches_dlsym partial_map partial_map.offset0 \
           reexport_imported export_survives_exporter range.cuMemGetAddressRange \
           range.pointer_attribute latency.cuMemCreate latency.cuMemGetInfo \
           latency.cuCtxSynchronize_idle sync.busy; do
  grep -q "^$key: " <<<"$out" || { echo "missing: $key"; exit 1; }
done
grep -q '^capture' <<<"$out" || { echo "missing: capture"; exit 1; }
grep -q '^ipc' <<<"$out" || { echo "missing: ipc"; exit 1; }
# An exported chunk lives on in its fd after the exporter exits.
grep -qx 'export_survives_exporter: yes, data intact' <<<"$out"
# cuMemGetAddressRange on VMM memory names the one chunk, not the reservation.
grep -qx 'range.cuMemGetAddressRange: CUDA_SUCCESS, base reservation+[0-9]*, size 1 granules' <<<"$out"
# Legacy IPC: refused on VMM memory, given on cuMemAlloc memory (CUDA-FACTS §3).
grep -qx 'ipc.vmm_memory: CUDA_ERROR_INVALID_VALUE' <<<"$out"
grep -qx 'ipc.cumemalloc_memory: handle given' <<<"$out"
# Capture: cuMemAlloc refused in global mode, allowed in relaxed (§4).
grep -qx 'capture.global.cuMemAlloc: call CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, capture CUDA_ERROR_STREAM_CAPTURE_INVALIDATED' <<<"$out"
grep -qx 'capture.relaxed.cuMemAlloc: call CUDA_SUCCESS, capture valid' <<<"$out"
# A bad argument is refused with a usage line and exit 2.
set +e
"$1" --iterations 0 2>/dev/null; rc=$?
set -e
[[ $rc -eq 2 ]] || { echo "bad argument: exit $rc"; exit 1; }
echo "gpu-probe: ok"
