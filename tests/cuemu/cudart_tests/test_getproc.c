/* The runtime reaches the driver only through cuGetProcAddress, and never
 * calls a function it could not resolve.  Run with the emulator's fault
 * injection; argv[1] names the scenario and the CMake file sets CUEMU_FAIL:
 *
 *   all     cuGetProcAddress:1+:CUDA_ERROR_UNKNOWN (every lookup fails)
 *   one     cuGetProcAddress:11:CUDA_ERROR_UNKNOWN (the 11th lookup of the
 *           table in cudart.c, cuMemAlloc, fails; nothing else does)
 *   init    cuInit:1:CUDA_ERROR_NO_DEVICE (sticky for the process)
 *   retain  cuDevicePrimaryCtxRetain:1:CUDA_ERROR_OUT_OF_MEMORY (retried)
 */
#include "rt_test.h"

/* Every lookup failed: calls needing the driver report an initialisation
 * error instead of succeeding (or crashing); the rest still work. */
static void
all_lookups_fail(void)
{
	cudaStream_t s;
	size_t fr, tot;
	void *d = (void *)&fr;
	int n = -1, v = 0;

	CHECK_RT(cudaMalloc(&d, 4096), cudaErrorInitializationError);
	CHECK(d == (void *)&fr);
	CHECK_RT(cudaGetLastError(), cudaErrorInitializationError);
	CHECK_RT(cudaFree(NULL), cudaErrorInitializationError);
	CHECK_RT(cudaGetDeviceCount(&n), cudaErrorInitializationError);
	CHECK(n == 0);
	CHECK_RT(cudaSetDevice(0), cudaErrorInitializationError);
	CHECK_RT(cudaMemGetInfo(&fr, &tot), cudaErrorInitializationError);
	CHECK_RT(cudaStreamCreate(&s), cudaErrorInitializationError);
	CHECK_RT(cudaDeviceSynchronize(), cudaErrorInitializationError);
	CHECK_RT(cudaDriverGetVersion(&v), cudaErrorInitializationError);
	CHECK_RT(cudaPeekAtLastError(), cudaErrorInitializationError);
	CHECK_RT_OK(cudaRuntimeGetVersion(&v));
	CHECK(v == CUDART_VERSION);
	CHECK(strcmp(cudaGetErrorString(cudaErrorInitializationError),
	    "initialization error") == 0);
}

/* Only cuMemAlloc is missing: cudaMalloc fails, everything else works. */
static void
one_lookup_fails(void)
{
	unsigned char in[512], out[512];
	size_t fr = 0, tot = 0;
	void *d = NULL;

	CHECK_RT(cudaMalloc(&d, 4096), cudaErrorInitializationError);
	CHECK_RT(cudaGetLastError(), cudaErrorInitializationError);
	CHECK_RT_OK(cudaMemGetInfo(&fr, &tot));
	CHECK(tot > 0);
	CHECK_RT_OK(cudaMallocAsync(&d, sizeof(in), NULL));
	rt_fill(in, sizeof(in), 11);
	CHECK_RT_OK(cudaMemcpy(d, in, sizeof(in), cudaMemcpyHostToDevice));
	CHECK_RT_OK(cudaMemcpy(out, d, sizeof(out), cudaMemcpyDeviceToHost));
	CHECK(rt_check(out, sizeof(out), 11));
	CHECK_RT_OK(cudaFreeAsync(d, NULL));
	CHECK_RT_OK(cudaDeviceSynchronize());
	CHECK_RT(cudaMalloc(&d, 4096), cudaErrorInitializationError);
}

/* cuInit failed: its error is the runtime's for the whole process. */
static void
init_fails(void)
{
	void *d = NULL;
	int n = -1, v = 0;

	CHECK_RT(cudaGetDeviceCount(&n), cudaErrorNoDevice);
	CHECK(n == 0);
	CHECK_RT(cudaMalloc(&d, 64), cudaErrorNoDevice);
	CHECK_RT(cudaFree(NULL), cudaErrorNoDevice);
	CHECK_RT(cudaGetLastError(), cudaErrorNoDevice);
	/* The version needs no initialised driver. */
	CHECK_RT_OK(cudaDriverGetVersion(&v));
	CHECK(v >= CUDART_VERSION);
}

/* A failed primary-context retain is reported, then retried. */
static void
retain_fails(void)
{
	void *d = NULL;

	CHECK_RT(cudaMalloc(&d, 64), cudaErrorMemoryAllocation);
	CHECK_RT_OK(cudaMalloc(&d, 64));
	CHECK_RT_OK(cudaFree(d));
}

int
main(int argc, char **argv)
{
	CHECK(argc == 2);
	if (strcmp(argv[1], "all") == 0)
		all_lookups_fail();
	else if (strcmp(argv[1], "one") == 0)
		one_lookup_fails();
	else if (strcmp(argv[1], "init") == 0)
		init_fails();
	else if (strcmp(argv[1], "retain") == 0)
		retain_fails();
	else
		CHECK(!"unknown scenario");
	printf("ok\n");
	return 0;
}
