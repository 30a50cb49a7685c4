/* Several threads use the driver at once: the first cuInit, VMM and
 * classic allocations, copies and streams must neither mix up data nor
 * leak. */
#include <pthread.h>

#include "cuemu_test.h"

#define NTHREADS 4
#define ITERS 40

static CUcontext ctx;
static size_t g;

/* One thread's loop; arg is its index. */
static void *
worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg, seed;
	CUmemGenericAllocationHandle h, hr;
	CUdeviceptr va, dp;
	CUstream s;
	unsigned char in[8192], out[8192];
	int i;

	CHECK_OK(cuCtxSetCurrent(ctx));
	for (i = 0; i < ITERS; i++) {
		seed = id * 1000 + (unsigned)i;
		va = ct_map_new(0, g, &h);
		ct_fill(in, sizeof(in), seed);
		CHECK_OK(cuMemcpyHtoD(va + g - sizeof(in), in, sizeof(in)));
		CHECK_OK(cuMemRetainAllocationHandle(&hr,
		    (void *)(uintptr_t)(va + 1)));
		CHECK(hr == h);
		CHECK_OK(cuMemRelease(hr));

		CHECK_OK(cuMemAlloc(&dp, sizeof(in)));
		CHECK_OK(cuMemcpyDtoD(dp, va + g - sizeof(in), sizeof(in)));
		CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
		CHECK_OK(cuStreamSynchronize(s));
		memset(out, 0, sizeof(out));
		CHECK_OK(cuMemcpyDtoH(out, dp, sizeof(out)));
		CHECK(ct_check(out, sizeof(out), seed));
		CHECK_OK(cuStreamDestroy(s));
		CHECK_OK(cuMemFree(dp));
		ct_unmap_free(va, g, h);
	}
	return NULL;
}

/* Thread body: cuInit racing with the other threads' cuInit. */
static void *
init_racer(void *arg)
{
	int n = 0;

	(void)arg;
	CHECK_OK(cuInit(0));
	CHECK_OK(cuDeviceGetCount(&n));
	CHECK(n >= 1);
	return NULL;
}

int
main(void)
{
	pthread_t t[NTHREADS];
	size_t fr0, fr1, tot;
	unsigned i;

	/* The first cuInit of the process, from several threads at once. */
	for (i = 0; i < NTHREADS; i++)
		CHECK(pthread_create(&t[i], NULL, init_racer, NULL) == 0);
	for (i = 0; i < NTHREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);

	ctx = ct_init_ctx(0);
	g = ct_gran(0);
	CHECK_OK(cuMemGetInfo(&fr0, &tot));
	for (i = 0; i < NTHREADS; i++)
		CHECK(pthread_create(&t[i], NULL, worker,
		    (void *)(uintptr_t)i) == 0);
	for (i = 0; i < NTHREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	CHECK_OK(cuMemGetInfo(&fr1, &tot));
	/* Everything was given back (exact on the emulator only: a real
	 * device is shared with other processes). */
	if (ct_is_emulator())
		CHECK(fr1 == fr0);
	return 0;
}
