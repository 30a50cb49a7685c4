/* CUresult -> cudaError_t mapping, through the emulator's fault injection:
 * the Nth cuMemAlloc fails with the Nth driver code of the table below and
 * cudaMalloc must return the runtime code the real runtime returns. */
#include "rt_test.h"

static const struct {
	const char	*cu;	/* for CUEMU_FAIL: a CUDA_ERROR_* name or a number */
	cudaError_t	 rt;
} cases[] = {
	{ "CUDA_ERROR_INVALID_VALUE", cudaErrorInvalidValue },
	{ "CUDA_ERROR_OUT_OF_MEMORY", cudaErrorMemoryAllocation },
	{ "CUDA_ERROR_NOT_INITIALIZED", cudaErrorInitializationError },
	{ "CUDA_ERROR_DEINITIALIZED", cudaErrorCudartUnloading },
	{ "CUDA_ERROR_NO_DEVICE", cudaErrorNoDevice },
	{ "CUDA_ERROR_INVALID_DEVICE", cudaErrorInvalidDevice },
	{ "CUDA_ERROR_INVALID_CONTEXT", cudaErrorDeviceUninitialized },
	{ "CUDA_ERROR_INVALID_HANDLE", cudaErrorInvalidResourceHandle },
	{ "CUDA_ERROR_NOT_FOUND", cudaErrorSymbolNotFound },
	{ "CUDA_ERROR_NOT_READY", cudaErrorNotReady },
	{ "CUDA_ERROR_ILLEGAL_ADDRESS", cudaErrorIllegalAddress },
	{ "CUDA_ERROR_NOT_PERMITTED", cudaErrorNotPermitted },
	{ "CUDA_ERROR_NOT_SUPPORTED", cudaErrorNotSupported },
	{ "CUDA_ERROR_UNKNOWN", cudaErrorUnknown },
	{ "12345", cudaErrorUnknown },		/* no such CUresult */
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

int
main(void)
{
	char env[2048];
	size_t i, off = 0;
	void *d = NULL;

	/* Set before the first runtime call: the emulator reads it once. */
	for (i = 0; i < NCASES; i++) {
		int w = snprintf(env + off, sizeof(env) - off,
		    "%scuMemAlloc:%zu:%s", i ? "," : "", i + 1, cases[i].cu);

		CHECK(w > 0 && (size_t)w < sizeof(env) - off);
		off += (size_t)w;
	}
	CHECK(setenv("CUEMU_FAIL", env, 1) == 0);

	for (i = 0; i < NCASES; i++) {
		CHECK_RT(cudaMalloc(&d, 4096), cases[i].rt);
		/* cudaErrorNotReady is a status, never the last error. */
		CHECK_RT(cudaGetLastError(), cases[i].rt == cudaErrorNotReady ?
		    cudaSuccess : cases[i].rt);
	}
	/* The faults are spent: the next call reaches the driver for real. */
	CHECK_RT_OK(cudaMalloc(&d, 4096));
	CHECK(d != NULL);
	CHECK_RT_OK(cudaFree(d));
	printf("ok\n");
	return 0;
}
