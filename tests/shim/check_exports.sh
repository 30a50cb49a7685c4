#!/bin/sh
# libvmm_client.so exports exactly the hooked CUDA functions, dlsym, and the
# public API of client/vmm_client.h (the VMM_API functions), nothing else:
# every other symbol (client internals, libvmm_common, libvmm_proto) is
# hidden, so none can clash with the application's.
# Usage: check_exports.sh <libvmm_client.so> <client/vmm_client.h>
set -eu
lib=$1
header=$2
fail() { echo "check_exports: $*" >&2; exit 1; }

hooks="cuMemAlloc_v2 cuMemFree_v2 cuMemAllocPitch_v2 cuMemGetInfo_v2
cuMemAllocAsync cuMemAllocAsync_ptsz cuMemFreeAsync cuMemFreeAsync_ptsz
cuMemGetAddressRange_v2 cuPointerGetAttribute cuPointerGetAttributes
cuGetProcAddress cuGetProcAddress_v2
cuCtxEnablePeerAccess cuCtxDisablePeerAccess
cudaMalloc cudaFree cudaMallocAsync cudaMallocAsync_ptsz cudaFreeAsync
cudaFreeAsync_ptsz cudaMallocPitch cudaMemGetInfo cudaDeviceEnablePeerAccess
cudaDeviceDisablePeerAccess dlsym
cuStreamBeginCapture cuStreamBeginCapture_ptsz cuStreamBeginCapture_v2
cuStreamBeginCapture_v2_ptsz cuStreamEndCapture cuStreamEndCapture_ptsz
cudaStreamBeginCapture cudaStreamBeginCapture_ptsz cudaStreamEndCapture
cudaStreamEndCapture_ptsz
cuIpcGetMemHandle cuIpcOpenMemHandle cuIpcOpenMemHandle_v2 cuIpcCloseMemHandle
cudaIpcGetMemHandle cudaIpcOpenMemHandle cudaIpcCloseMemHandle
cuMemCreate cuMemRelease cuMemAllocFromPoolAsync cuMemAllocFromPoolAsync_ptsz
cuMemAllocManaged cudaMallocFromPoolAsync cudaMallocFromPoolAsync_ptsz
cudaMallocManaged cuMemMap cuMemUnmap cuMemRetainAllocationHandle
cuMemExportToShareableHandle cuMemGetAllocationPropertiesFromHandle"
api=$(grep '^VMM_API' "$header" | sed -n 's/.*[[:space:]*]\(vmm_[a-z_0-9]*\)(.*/\1/p')
[ -n "$api" ] || fail "no VMM_API functions found in $header"

want=$(printf '%s\n' $hooks $api | LC_ALL=C sort)
have=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TtWwDdBbRrVvGgSsi]$/ { print $3 }' |
    grep -v -e '^_init$' -e '^_fini$' -e '^__bss_start$' -e '^_edata$' -e '^_end$' |
    LC_ALL=C sort)
if [ "$want" != "$have" ]; then
	echo "expected exports:" >&2; echo "$want" >&2
	echo "actual exports:" >&2; echo "$have" >&2
	fail "export list differs"
fi
# Unversioned: a versioned definition would not match the application's
# references (cudaMalloc@libcudart.so.12, dlsym@GLIBC_2.34, ...).
if readelf -V "$lib" | grep -q 'Version definition'; then
	fail "the library defines symbol versions"
fi
echo ok
