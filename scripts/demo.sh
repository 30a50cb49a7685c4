#!/usr/bin/env bash
# The main job, on one machine: set everything up, start vmmd for GPU 0,
# run a demo workload of two unmodified CUDA programs through the
# LD_PRELOAD shim, and show `vmmctl stats` while they hold memory and after.
# Without a GPU (our machines), the CUDA driver and runtime are the
# emulator's (tests/cuemu); with VMM_DEMO_REAL_GPU=1 the system's are used.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh build
B=$PWD/build
RUN=$(mktemp -d /tmp/vmmd-demo.XXXXXX)
export VMM_SOCKET_DIR=$RUN
if [[ -z "${VMM_DEMO_REAL_GPU:-}" ]]; then
  export LD_LIBRARY_PATH=$B/tests/cuemu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export CUEMU_INSTANCE=demo-$$ CUEMU_MEM_MB=${CUEMU_MEM_MB:-4096}
  echo "demo: no GPU here: CUDA is the emulator (tests/cuemu), ${CUEMU_MEM_MB} MiB"
fi
vmmd_pid=
cleanup() {
  [[ -n "$vmmd_pid" ]] && kill "$vmmd_pid" 2>/dev/null && wait "$vmmd_pid" 2>/dev/null
  rm -rf "$RUN" "/dev/shm/cuemu-demo-$$-d0"
}
trap cleanup EXIT

printf 'idle_timeout_ms = 1000\n' > "$RUN/vmmd.conf"
"$B/daemon/vmmd" --foreground --config "$RUN/vmmd.conf" --log-level INFO \
  --log-file "$RUN/vmmd.log" &
vmmd_pid=$!
for _ in $(seq 100); do [[ -S "$RUN/gpu0.sock" ]] && break; sleep 0.05; done
echo "demo: vmmd (pid $vmmd_pid) serves $(readlink "$RUN/gpu0.sock")"

echo "demo: two CUDA programs allocate through LD_PRELOAD=libvmm_client.so"
LD_PRELOAD=$B/shim/libvmm_client.so VMM_REPORT_MS=100 "$B/tools/vmm-demo-app" 40 24 25 &
a=$!
LD_PRELOAD=$B/shim/libvmm_client.so VMM_REPORT_MS=100 "$B/tools/vmm-demo-app" 40 24 25 &
b=$!
sleep 0.6
echo "demo: vmmctl stats while they run:"
"$B/tools/vmmctl" stats | sed -n '/^pool/,/^$/p;/^sessions/,$p'
wait "$a"
wait "$b"
sleep 1.5
echo "demo: after they exited (idle chunks go back to the GPU after 1 s):"
"$B/tools/vmmctl" stats | sed -n '/^pool/,/^$/p'
echo "demo: vmmd log: $(grep -c GRANT "$RUN/vmmd.log") grants, $(grep -c CREATE "$RUN/vmmd.log") chunks created, $(grep -c DESTROY "$RUN/vmmd.log") given back to the GPU"
