/* A driver program, unmodified: cuMemAlloc of many sizes written and read
 * back, cuMemAllocPitch, stream-ordered allocations, address ranges, and the
 * documented errors (size 0, double free).  Run like test_rt.c: without the
 * preload, preloaded in MONITOR mode (log checked), and preloaded in VMM
 * mode without a daemon (falling back). */
#include <cuda.h>

#include "shim_test.h"

static const size_t sizes[] = {
	1, 255, 4096, 65536 + 3, (size_t)1 << 20, ((size_t)8 << 20) + 1,
};
#define NSIZES	(sizeof(sizes) / sizeof(sizes[0]))

/* Writes seed's pattern to d, reads it back. */
static void
round_trip(CUdeviceptr d, size_t n, unsigned seed)
{
	unsigned char *in = malloc(n), *out = malloc(n);
	size_t i;

	CHECK(in != NULL && out != NULL);
	for (i = 0; i < n; i++)
		in[i] = (unsigned char)(i * 13 + seed);
	memset(out, 0, n);
	CHECK_OK(cuMemcpyHtoD(d, in, n));
	CHECK_OK(cuMemcpyDtoH(out, d, n));
	CHECK(memcmp(in, out, n) == 0);
	free(in);
	free(out);
}

int
main(void)
{
	CUdeviceptr d[NSIZES], z = 0, p, a, base;
	size_t i, pitch = 0, size, fr, tot;
	CUcontext ctx;
	CUdevice dev;
	CUstream s;

	st_log_reset();
	CHECK_OK(cuInit(0));
	CHECK_OK(cuDeviceGet(&dev, 0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, dev));
	CHECK_OK(cuCtxSetCurrent(ctx));

	for (i = 0; i < NSIZES; i++) {
		CHECK_OK(cuMemAlloc(&d[i], sizes[i]));
		st_expect('A', d[i], sizes[i]);
		round_trip(d[i], sizes[i], (unsigned)i);
		CHECK_OK(cuMemGetAddressRange(&base, &size, d[i] + sizes[i] - 1));
		CHECK(base == d[i] && size >= sizes[i]);
		CHECK_OK(cuMemGetAddressRange(NULL, &size, d[i]));
	}
	/* As documented: size 0 is an invalid value. */
	CHECK_CU(cuMemAlloc(&z, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAllocPitch(&p, &pitch, 100, 4, 3),
	    CUDA_ERROR_INVALID_VALUE);

	CHECK_OK(cuMemAllocPitch(&p, &pitch, 100, 4, 16));
	CHECK(pitch >= 100);
	st_expect('A', p, pitch * 4);
	round_trip(p, pitch * 4, 7);

	CHECK_OK(cuStreamCreate(&s, 0));
	CHECK_OK(cuMemAllocAsync(&a, 5000, s));
	st_expect('A', a, 5000);
	CHECK_OK(cuStreamSynchronize(s));
	round_trip(a, 5000, 3);
	CHECK_OK(cuMemFreeAsync(a, s));
	st_expect('F', a, 5000);
	CHECK_OK(cuStreamSynchronize(s));
	CHECK_OK(cuStreamDestroy(s));

	CHECK_OK(cuMemGetInfo(&fr, &tot));
	CHECK(tot > 0 && fr <= tot);

	CHECK_OK(cuMemFree(p));
	st_expect('F', p, pitch * 4);
	for (i = 0; i < NSIZES; i++) {
		round_trip(d[i], sizes[i], (unsigned)i + 50);
		CHECK_OK(cuMemFree(d[i]));
		st_expect('F', d[i], sizes[i]);
	}
	CHECK_CU(cuMemFree(d[0]), CUDA_ERROR_INVALID_VALUE);
	st_log_verify();
	printf("ok\n");
	return 0;
}
