/* A runtime program, unmodified: allocations of many sizes written and read
 * back with copies, pitched and stream-ordered ones, size 0, cudaFree(NULL),
 * memory info.  Run without the preload, preloaded in MONITOR mode (where
 * the log must then hold one ALLOC and one FREE line per allocation, with
 * the sizes), and preloaded in VMM mode without a daemon (the client falls
 * back to CUDA's allocator): the program must pass the same way in each. */
#include <cuda_runtime_api.h>

#include "shim_test.h"

#define CHECK_RT(call)							\
	do {								\
		cudaError_t check_e_ = (call);				\
		if (check_e_ != cudaSuccess) {				\
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__,	\
			    __LINE__, #call, cudaGetErrorName(check_e_)); \
			exit(1);					\
		}							\
	} while (0)

static const size_t sizes[] = {
	1, 255, 4096, 65536 + 3, (size_t)1 << 20, ((size_t)8 << 20) + 1,
};
#define NSIZES	(sizeof(sizes) / sizeof(sizes[0]))

/* Writes seed's pattern to d, reads it back. */
static void
round_trip(void *d, size_t n, unsigned seed)
{
	unsigned char *in = malloc(n), *out = malloc(n);
	size_t i;

	CHECK(in != NULL && out != NULL);
	for (i = 0; i < n; i++)
		in[i] = (unsigned char)(i * 31 + seed);
	memset(out, 0, n);
	CHECK_RT(cudaMemcpy(d, in, n, cudaMemcpyHostToDevice));
	CHECK_RT(cudaMemcpy(out, d, n, cudaMemcpyDeviceToHost));
	CHECK(memcmp(in, out, n) == 0);
	free(in);
	free(out);
}

int
main(void)
{
	void *d[NSIZES], *z = (void *)&z, *a, *p;
	size_t i, pitch = 0, fr = 0, tot = 0;
	cudaStream_t s;

	st_log_reset();
	CHECK_RT(cudaFree(NULL));
	for (i = 0; i < NSIZES; i++) {
		CHECK_RT(cudaMalloc(&d[i], sizes[i]));
		st_expect('A', (uintptr_t)d[i], sizes[i]);
		round_trip(d[i], sizes[i], (unsigned)i);
	}
	/* Size 0: NULL and success, nothing allocated or logged. */
	CHECK_RT(cudaMalloc(&z, 0));
	CHECK(z == NULL);
	CHECK(cudaMalloc(NULL, 16) == cudaErrorInvalidValue);
	(void)cudaGetLastError();

	CHECK_RT(cudaMallocPitch(&p, &pitch, 100, 7));
	CHECK(pitch >= 100 && pitch % 256 == 0);
	st_expect('A', (uintptr_t)p, pitch * 7);
	round_trip(p, pitch * 7, 9);

	CHECK_RT(cudaStreamCreate(&s));
	CHECK_RT(cudaMallocAsync(&a, 3000, s));
	st_expect('A', (uintptr_t)a, 3000);
	CHECK_RT(cudaStreamSynchronize(s));
	round_trip(a, 3000, 5);
	CHECK_RT(cudaFreeAsync(a, s));
	st_expect('F', (uintptr_t)a, 3000);
	CHECK_RT(cudaStreamSynchronize(s));
	CHECK_RT(cudaStreamDestroy(s));

	CHECK_RT(cudaMemGetInfo(&fr, &tot));
	CHECK(tot > 0 && fr <= tot);

	CHECK_RT(cudaFree(p));
	st_expect('F', (uintptr_t)p, pitch * 7);
	for (i = 0; i < NSIZES; i++) {
		round_trip(d[i], sizes[i], (unsigned)i + 100);
		CHECK_RT(cudaFree(d[i]));
		st_expect('F', (uintptr_t)d[i], sizes[i]);
	}
	CHECK_RT(cudaFree(NULL));
	CHECK_RT(cudaDeviceSynchronize());
	CHECK_RT(cudaGetLastError());
	st_log_verify();
	printf("ok\n");
	return 0;
}
