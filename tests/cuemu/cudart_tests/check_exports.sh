#!/bin/sh
# The emulated runtime exports exactly the runtime API it implements, has the
# real soname, and does not link libcuda (it dlopens libcuda.so.1 and goes
# through cuGetProcAddress, as the real runtime does).
# Usage: check_exports.sh <path to libcudart.so.13>
set -eu
lib=$1
fail() { echo "check_exports: $*" >&2; exit 1; }

dyn=$(readelf -d "$lib") || fail "readelf failed on $lib"
echo "$dyn" | grep -q 'SONAME.*\[libcudart\.so\.13\]' || fail "soname is not libcudart.so.13"
if echo "$dyn" | grep 'NEEDED' | grep -q 'libcuda\.'; then
	fail "links libcuda directly"
fi

want="cudaDeviceCanAccessPeer cudaDeviceDisablePeerAccess
cudaDeviceEnablePeerAccess cudaDeviceGetAttribute cudaDeviceSynchronize cudaDriverGetVersion
cudaEventCreate cudaEventDestroy cudaEventQuery cudaEventRecord
cudaEventSynchronize cudaFree
cudaFreeAsync cudaGetDevice cudaGetDeviceCount cudaGetErrorName
cudaGetErrorString cudaGetLastError cudaIpcCloseMemHandle cudaIpcGetMemHandle
cudaIpcOpenMemHandle cudaMalloc cudaMallocAsync cudaMallocFromPoolAsync cudaMallocManaged
cudaMallocPitch cudaMemPoolCreate cudaMemPoolDestroy
cudaMemGetInfo cudaMemcpy cudaMemcpyAsync cudaMemset cudaPeekAtLastError
cudaPointerGetAttributes cudaRuntimeGetVersion cudaSetDevice cudaStreamCreate
cudaStreamCreateWithFlags cudaStreamDestroy cudaStreamQuery
cudaStreamSynchronize cudaStreamWaitEvent cudaStreamBeginCapture
cudaStreamEndCapture cudaStreamIsCapturing cudaStreamGetCaptureInfo
cudaThreadExchangeStreamCaptureMode cudaGraphInstantiate cudaGraphLaunch
cudaGraphExecDestroy cudaGraphDestroy"
want=$(printf '%s\n' $want | LC_ALL=C sort)
have=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TtWwDdBbRrVvi]$/ { sub(/@.*/, "", $3); print $3 }' |
    grep -v -e '^_init$' -e '^_fini$' -e '^__bss_start$' -e '^_edata$' -e '^_end$' |
    LC_ALL=C sort)
if [ "$want" != "$have" ]; then
	echo "expected exports:" >&2; echo "$want" >&2
	echo "actual exports:" >&2; echo "$have" >&2
	fail "export list differs"
fi
# No undefined cu* symbols either: the driver is reached only via dlsym.
if nm -D --undefined-only "$lib" | awk '{ print $2 }' | grep -q '^cu'; then
	fail "references driver symbols directly"
fi
echo ok
