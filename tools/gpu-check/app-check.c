/*
 * app-check: an ordinary CUDA program for scripts/gpu-check.sh, built three
 * ways (shared runtime, static runtime, driver API only).  It allocates a
 * spread of sizes, writes each block and reads it back through copies, holds
 * the memory for HOLD_MS (so the script can see it in `vmmctl stats`), frees
 * it and prints one line "app-check: ok <n> blocks".
 *
 *   app-check [HOLD_MS [COPIES]]     (COPIES 1-8: the set allocated that often)
 *
 * Built with -DAPP_CHECK_DRIVER it uses cuMemAlloc/cuMemFree and the driver's
 * copies, otherwise cudaMalloc/cudaFree.  Exit 0 on success, 1 on any error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef APP_CHECK_DRIVER
#include <cuda.h>
#else
#include <cuda_runtime_api.h>
#endif

static const size_t sizes[] = { 256, 4096, 100000, 1u << 20, 3u << 20,
    (5u << 20) + 123, 24u << 20, 64u << 20 };
#define NBLOCKS (sizeof(sizes) / sizeof(sizes[0]))

static int
fail(const char *what, int code)
{
	fprintf(stderr, "app-check: %s failed (%d)\n", what, code);
	return 1;
}

#ifdef APP_CHECK_DRIVER
static CUcontext ctx;

static int
dev_init(void)
{
	CUdevice d;
	CUresult r;

	if ((r = cuInit(0)) != CUDA_SUCCESS || (r = cuDeviceGet(&d, 0)) != CUDA_SUCCESS ||
	    (r = cuDevicePrimaryCtxRetain(&ctx, d)) != CUDA_SUCCESS ||
	    (r = cuCtxSetCurrent(ctx)) != CUDA_SUCCESS)
		return fail("driver init", (int)r);
	return 0;
}
static int dev_alloc(void **p, size_t n)
{
	CUdeviceptr d;
	CUresult r = cuMemAlloc(&d, n);

	*p = (void *)(uintptr_t)d;
	return r == CUDA_SUCCESS ? 0 : fail("cuMemAlloc", (int)r);
}
static int dev_free(void *p)
{
	CUresult r = cuMemFree((CUdeviceptr)(uintptr_t)p);

	return r == CUDA_SUCCESS ? 0 : fail("cuMemFree", (int)r);
}
static int to_dev(void *d, const void *h, size_t n)
{
	CUresult r = cuMemcpyHtoD((CUdeviceptr)(uintptr_t)d, h, n);

	return r == CUDA_SUCCESS ? 0 : fail("cuMemcpyHtoD", (int)r);
}
static int to_host(void *h, const void *d, size_t n)
{
	CUresult r = cuMemcpyDtoH(h, (CUdeviceptr)(uintptr_t)d, n);

	return r == CUDA_SUCCESS ? 0 : fail("cuMemcpyDtoH", (int)r);
}
#else
static int dev_init(void)
{
	cudaError_t e = cudaFree(0);

	return e == cudaSuccess ? 0 : fail("cudaFree(0)", (int)e);
}
static int dev_alloc(void **p, size_t n)
{
	cudaError_t e = cudaMalloc(p, n);

	return e == cudaSuccess ? 0 : fail("cudaMalloc", (int)e);
}
static int dev_free(void *p)
{
	cudaError_t e = cudaFree(p);

	return e == cudaSuccess ? 0 : fail("cudaFree", (int)e);
}
static int to_dev(void *d, const void *h, size_t n)
{
	cudaError_t e = cudaMemcpy(d, h, n, cudaMemcpyHostToDevice);

	return e == cudaSuccess ? 0 : fail("cudaMemcpy H2D", (int)e);
}
static int to_host(void *h, const void *d, size_t n)
{
	cudaError_t e = cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost);

	return e == cudaSuccess ? 0 : fail("cudaMemcpy D2H", (int)e);
}
#endif

static void
pattern(unsigned char *b, size_t n, size_t seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)((i * 7 + seed * 13) % 253);
}

int
main(int argc, char **argv)
{
	unsigned char *in = malloc(sizes[NBLOCKS - 1]), *out = malloc(sizes[NBLOCKS - 1]);
	long hold_ms = argc > 1 ? strtol(argv[1], NULL, 10) : 0;
	long copies = argc > 2 ? strtol(argv[2], NULL, 10) : 1;
	void *p[8 * NBLOCKS];
	size_t i, n;

	if (in == NULL || out == NULL || hold_ms < 0 || hold_ms > 600000 ||
	    copies < 1 || copies > 8)
		return fail("arguments or host memory", 0);
	n = (size_t)copies * NBLOCKS;
	if (dev_init() != 0)
		return 1;
	for (i = 0; i < n; i++) {
		if (dev_alloc(&p[i], sizes[i % NBLOCKS]) != 0)
			return 1;
		pattern(in, sizes[i % NBLOCKS], i);
		if (to_dev(p[i], in, sizes[i % NBLOCKS]) != 0)
			return 1;
	}
	/* Every block still holds its own data: nothing overlaps. */
	for (i = 0; i < n; i++) {
		pattern(in, sizes[i % NBLOCKS], i);
		if (to_host(out, p[i], sizes[i % NBLOCKS]) != 0)
			return 1;
		if (memcmp(in, out, sizes[i % NBLOCKS]) != 0)
			return fail("data check", (int)i);
	}
	if (hold_ms > 0) {
		printf("app-check: holding %zu blocks\n", n);
		fflush(stdout);
	}
	if (hold_ms > 0) {
		struct timespec ts = { hold_ms / 1000, (hold_ms % 1000) * 1000000L };

		nanosleep(&ts, NULL);
	}
	for (i = 0; i < n; i++)
		if (dev_free(p[i]) != 0)
			return 1;
	printf("app-check: ok %zu blocks\n", n);
	free(in);
	free(out);
	return 0;
}
