/* Two devices (CUEMU_DEVICES=2): copies and memsets need the issuing
 * context's device to have access to the range.  VMM mappings: the flags
 * cuMemSetAccess gave that device ("Peer access is granted here by adding a
 * descriptor per device"; cuCtxEnablePeerAccess does not cover them).
 * cuMemAlloc memory: its own device, and a peer whose context enabled
 * access ("all memory allocated in the peer context using cuMemAlloc() ...
 * will immediately be accessible by the current context", cuda.h, Automatic
 * Registration of Peer Memory).  Copies stand for kernels here: on a real
 * GPU a copy of classic memory may be staged without peer access; a kernel
 * cannot read it. */
#include "cuemu_test.h"

static CUcontext c0, c1;

/* Whether the context ctx can write and read back 4 KiB at p. */
static int
can_copy(CUcontext ctx, CUdeviceptr p)
{
	unsigned char in[4096], out[4096];
	CUresult r;

	CHECK_OK(cuCtxSetCurrent(ctx));
	ct_fill(in, sizeof(in), 3);
	r = cuMemcpyHtoD(p, in, sizeof(in));
	if (r != CUDA_SUCCESS) {
		CHECK(r == CUDA_ERROR_INVALID_VALUE);
		/* Reading, and setting, are refused alike. */
		CHECK_CU(cuMemcpyDtoH(out, p, sizeof(out)),
		    CUDA_ERROR_INVALID_VALUE);
		CHECK_CU(cuMemsetD8(p, 1, 64), CUDA_ERROR_INVALID_VALUE);
		return 0;
	}
	memset(out, 0, sizeof(out));
	CHECK_OK(cuMemcpyDtoH(out, p, sizeof(out)));
	CHECK(ct_check(out, sizeof(out), 3));
	CHECK_OK(cuMemsetD8(p, 1, 64));
	return 1;
}

static void
test_can_access(void)
{
	int v = -1;

	CHECK_OK(cuDeviceCanAccessPeer(&v, 0, 1));
	CHECK(v == 1);
	CHECK_OK(cuDeviceCanAccessPeer(&v, 1, 0));
	CHECK(v == 1);
	CHECK_CU(cuDeviceCanAccessPeer(&v, 0, 2), CUDA_ERROR_INVALID_DEVICE);
	CHECK_CU(cuDeviceCanAccessPeer(&v, -1, 0), CUDA_ERROR_INVALID_DEVICE);
}

/* A mapping of device 0 is usable from device 1's context only once
 * cuMemSetAccess names device 1; peer access changes nothing. */
static void
test_vmm_access(void)
{
	CUmemAccessDesc a1 = ct_rw(1), a0 = ct_rw(0);
	CUmemGenericAllocationHandle h;
	size_t g = ct_gran(0);
	CUdeviceptr va = ct_map_new(0, g, &h);
	unsigned char in[256], out[256];

	CHECK(can_copy(c0, va));
	CHECK(!can_copy(c1, va));
	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuCtxEnablePeerAccess(c0, 0));
	CHECK(!can_copy(c1, va));
	CHECK_OK(cuCtxSetCurrent(c0));
	CHECK_OK(cuCtxEnablePeerAccess(c1, 0));
	CHECK(!can_copy(c1, va));

	CHECK_OK(cuMemSetAccess(va, g, &a1, 1));
	CHECK(can_copy(c1, va));
	CHECK(can_copy(c0, va));

	/* Read-only for device 1: reads work, writes do not. */
	a1.flags = CU_MEM_ACCESS_FLAGS_PROT_READ;
	CHECK_OK(cuMemSetAccess(va, g, &a1, 1));
	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuMemcpyDtoH(out, va, sizeof(out)));
	ct_fill(in, sizeof(in), 9);
	CHECK_CU(cuMemcpyHtoD(va, in, sizeof(in)), CUDA_ERROR_INVALID_VALUE);

	/* Device 1 only: the owner's context loses access. */
	a1.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	a0.flags = CU_MEM_ACCESS_FLAGS_PROT_NONE;
	CHECK_OK(cuMemSetAccess(va, g, &a0, 1));
	CHECK_OK(cuMemSetAccess(va, g, &a1, 1));
	CHECK(!can_copy(c0, va));
	CHECK(can_copy(c1, va));

	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuCtxDisablePeerAccess(c0));
	CHECK_OK(cuCtxSetCurrent(c0));
	CHECK_OK(cuCtxDisablePeerAccess(c1));
	ct_unmap_free(va, g, h);
}

/* cuMemAlloc memory of device 0: device 1's context needs peer access to
 * device 0's context, in that direction. */
static void
test_classic_peer(void)
{
	CUdeviceptr d0, d1;

	CHECK_OK(cuCtxSetCurrent(c0));
	CHECK_OK(cuMemAlloc(&d0, 1 << 20));
	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuMemAlloc(&d1, 1 << 20));
	CHECK(can_copy(c0, d0) && can_copy(c1, d1));
	CHECK(!can_copy(c1, d0) && !can_copy(c0, d1));

	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuCtxEnablePeerAccess(c0, 0));
	CHECK(can_copy(c1, d0));
	/* Unidirectional. */
	CHECK(!can_copy(c0, d1));
	/* A stream-ordered allocation's access is its pool's: peer access
	 * does not cover it (cuMemPoolSetAccess is not emulated). */
	if (ct_is_emulator()) {
		CUdeviceptr da;

		CHECK_OK(cuCtxSetCurrent(c0));
		CHECK_OK(cuMemAllocAsync(&da, 4096, NULL));
		CHECK(can_copy(c0, da));
		CHECK(!can_copy(c1, da));
		CHECK_OK(cuCtxSetCurrent(c0));
		CHECK_OK(cuMemFreeAsync(da, NULL));
	}

	/* Device to device across devices, from either side's view. */
	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuMemcpyDtoD(d1, d0, 4096));
	CHECK_OK(cuCtxSetCurrent(c0));
	CHECK_CU(cuMemcpyDtoD(d1, d0, 4096), CUDA_ERROR_INVALID_VALUE);

	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuCtxDisablePeerAccess(c0));
	CHECK(!can_copy(c1, d0));

	CHECK_OK(cuCtxSetCurrent(c0));
	CHECK_OK(cuMemFree(d0));
	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuMemFree(d1));
}

/* An asynchronous copy is issued by its stream's context, whichever
 * context is current. */
static void
test_stream_context(void)
{
	unsigned char in[4096];
	CUmemGenericAllocationHandle h;
	size_t g = ct_gran(0);
	CUdeviceptr va = ct_map_new(0, g, &h);
	CUstream s0, s1;

	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuStreamCreate(&s1, 0));
	CHECK_OK(cuCtxSetCurrent(c0));
	CHECK_OK(cuStreamCreate(&s0, 0));
	ct_fill(in, sizeof(in), 4);
	CHECK_OK(cuMemcpyHtoDAsync(va, in, sizeof(in), s0));
	CHECK_CU(cuMemcpyHtoDAsync(va, in, sizeof(in), s1),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemsetD8Async(va, 0, 64, s1), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuStreamSynchronize(s0));
	CHECK_OK(cuStreamDestroy(s0));
	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuStreamDestroy(s1));
	ct_unmap_free(va, g, h);
}

/* The errors cuda.h lists for cuCtxEnablePeerAccess/DisablePeerAccess. */
static void
test_peer_errors(void)
{
	CHECK_OK(cuCtxSetCurrent(NULL));
	CHECK_CU(cuCtxEnablePeerAccess(c0, 0), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_CU(cuCtxDisablePeerAccess(c0), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_CU(cuCtxEnablePeerAccess(c1, 0), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_CU(cuCtxEnablePeerAccess(NULL, 0), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_CU(cuCtxEnablePeerAccess(c0, 1), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuCtxDisablePeerAccess(c0), CUDA_ERROR_PEER_ACCESS_NOT_ENABLED);
	CHECK_OK(cuCtxEnablePeerAccess(c0, 0));
	CHECK_CU(cuCtxEnablePeerAccess(c0, 0),
	    CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED);
	CHECK_OK(cuCtxDisablePeerAccess(c0));
	CHECK_CU(cuCtxDisablePeerAccess(c0), CUDA_ERROR_PEER_ACCESS_NOT_ENABLED);
}

/* Peer access belongs to the contexts: once device 0's primary context is
 * released for the last time it is gone (emulator only: a real driver may
 * keep a primary context alive for other reasons). */
static void
test_peer_dies_with_context(void)
{
	CUdeviceptr d0;

	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuCtxEnablePeerAccess(c0, 0));
	CHECK_OK(cuCtxSetCurrent(NULL));
	CHECK_OK(cuDevicePrimaryCtxRelease(0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&c0, 0));
	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_CU(cuCtxDisablePeerAccess(c0), CUDA_ERROR_PEER_ACCESS_NOT_ENABLED);
	CHECK_OK(cuCtxSetCurrent(c0));
	CHECK_OK(cuMemAlloc(&d0, 4096));
	CHECK(!can_copy(c1, d0));
	CHECK_OK(cuCtxSetCurrent(c0));
	CHECK_OK(cuMemFree(d0));
}

int
main(void)
{
	int n = 0;

	CHECK_OK(cuInit(0));
	CHECK_OK(cuDeviceGetCount(&n));
	CHECK(n == 2);
	CHECK_OK(cuDevicePrimaryCtxRetain(&c0, 0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&c1, 1));
	test_can_access();
	test_vmm_access();
	test_classic_peer();
	test_stream_context();
	test_peer_errors();
	if (ct_is_emulator())
		test_peer_dies_with_context();
	CHECK_OK(cuCtxSetCurrent(NULL));
	CHECK_OK(cuDevicePrimaryCtxRelease(0));
	CHECK_OK(cuDevicePrimaryCtxRelease(1));
	return 0;
}
