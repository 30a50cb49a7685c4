/* cudaMalloc / cudaMemcpy / cudaMemset / cudaFree round trips for several
 * sizes, the zero-size and NULL cases, bad frees, pitched allocations and
 * pointer attributes. */
#include "rt_test.h"

static const size_t sizes[] = { 1, 3, 4096, 65537, MiB, 8 * MiB + 5 };

/* Host -> device -> device -> host, plus a memset over the middle. */
static void
round_trip(size_t n, unsigned seed)
{
	unsigned char *in = malloc(n), *out = malloc(n);
	void *a = NULL, *b = NULL;
	size_t lo = n / 4, len = n / 2;

	CHECK(in != NULL && out != NULL);
	rt_fill(in, n, seed);
	CHECK_RT_OK(cudaMalloc(&a, n));
	CHECK_RT_OK(cudaMalloc(&b, n));
	CHECK(a != NULL && b != NULL && a != b);
	CHECK_RT_OK(cudaMemcpy(a, in, n, cudaMemcpyHostToDevice));
	CHECK_RT_OK(cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice));
	memset(out, 0, n);
	CHECK_RT_OK(cudaMemcpy(out, b, n, cudaMemcpyDeviceToHost));
	CHECK(rt_check(out, n, seed));

	/* cudaMemcpyDefault infers the direction from the addresses. */
	memset(out, 0, n);
	CHECK_RT_OK(cudaMemcpy(out, a, n, cudaMemcpyDefault));
	CHECK(rt_check(out, n, seed));

	if (len > 0) {
		CHECK_RT_OK(cudaMemset((char *)a + lo, 0xA5, len));
		CHECK_RT_OK(cudaMemcpy(out, a, n, cudaMemcpyDeviceToHost));
		CHECK(rt_check(out, lo, seed));
		CHECK(rt_all(out + lo, len, 0xA5));
		CHECK(memcmp(out + lo + len, in + lo + len, n - lo - len) == 0);
	}
	CHECK_RT_OK(cudaFree(a));
	CHECK_RT_OK(cudaFree(b));
	free(in);
	free(out);
}

/* Size 0, NULL, and pointers that are not (or no longer) allocations. */
static void
edge_cases(void)
{
	unsigned char host[64] = { 0 };
	void *p = (void *)&host;
	void *d = NULL;

	CHECK_RT_OK(cudaFree(NULL));
	CHECK_RT_OK(cudaMalloc(&p, 0));
	CHECK(p == NULL);
	CHECK_RT(cudaMalloc(NULL, 16), cudaErrorInvalidValue);
	CHECK_RT(cudaGetLastError(), cudaErrorInvalidValue);

	/* Bad frees: a host address, an interior pointer, a double free. */
	CHECK_RT(cudaFree(host), cudaErrorInvalidValue);
	CHECK_RT_OK(cudaMalloc(&d, 4096));
	CHECK_RT(cudaFree((char *)d + 16), cudaErrorInvalidValue);
	CHECK_RT_OK(cudaFree(d));
	CHECK_RT(cudaFree(d), cudaErrorInvalidValue);
	CHECK_RT(cudaGetLastError(), cudaErrorInvalidValue);

	/* Copies to or from freed memory fail. */
	CHECK_RT(cudaMemcpy(d, host, sizeof(host), cudaMemcpyHostToDevice),
	    cudaErrorInvalidValue);
	CHECK_RT(cudaMemcpy(host, d, sizeof(host), cudaMemcpyDeviceToHost),
	    cudaErrorInvalidValue);
	CHECK_RT(cudaMemset(d, 0, sizeof(host)), cudaErrorInvalidValue);

	/* Wrong kinds and zero counts. */
	CHECK_RT_OK(cudaMalloc(&d, 4096));
	CHECK_RT(cudaMemcpy(d, host, 16, (enum cudaMemcpyKind)7),
	    cudaErrorInvalidMemcpyDirection);
	CHECK_RT_OK(cudaMemcpy(d, host, 0, cudaMemcpyHostToDevice));
	CHECK_RT_OK(cudaMemset(d, 0, 0));
	/* One byte past the end of the allocation. */
	CHECK_RT(cudaMemset(d, 0, 4097), cudaErrorInvalidValue);
	CHECK_RT_OK(cudaFree(d));
	(void)cudaGetLastError();
}

/* Host-to-host copies go through the driver too and must still work. */
static void
host_to_host(void)
{
	unsigned char a[100], b[100];

	rt_fill(a, sizeof(a), 9);
	memset(b, 0, sizeof(b));
	CHECK_RT_OK(cudaMemcpy(b, a, sizeof(a), cudaMemcpyHostToHost));
	CHECK(rt_check(b, sizeof(b), 9));
}

/* A pitched allocation holds height rows of pitch >= width bytes. */
static void
pitched(void)
{
	const size_t width = 100, height = 7;
	unsigned char *in, *out;
	size_t pitch = 0, n;
	void *d = NULL;

	CHECK_RT_OK(cudaMallocPitch(&d, &pitch, width, height));
	CHECK(d != NULL);
	CHECK(pitch >= width);
	CHECK(pitch % 16 == 0);
	n = pitch * height;
	in = malloc(n);
	out = malloc(n);
	CHECK(in != NULL && out != NULL);
	rt_fill(in, n, 3);
	CHECK_RT_OK(cudaMemcpy(d, in, n, cudaMemcpyHostToDevice));
	CHECK_RT_OK(cudaMemcpy(out, d, n, cudaMemcpyDeviceToHost));
	CHECK(memcmp(in, out, n) == 0);
	CHECK_RT_OK(cudaFree(d));
	CHECK_RT(cudaMallocPitch(NULL, &pitch, width, height),
	    cudaErrorInvalidValue);
	CHECK_RT(cudaMallocPitch(&d, NULL, width, height),
	    cudaErrorInvalidValue);
	free(in);
	free(out);
	(void)cudaGetLastError();
}

static void
pointer_attributes(void)
{
	struct cudaPointerAttributes at;
	int host = 0;
	void *d = NULL;

	CHECK_RT_OK(cudaMalloc(&d, 4096));
	memset(&at, 0xff, sizeof(at));
	CHECK_RT_OK(cudaPointerGetAttributes(&at, d));
	CHECK(at.type == cudaMemoryTypeDevice);
	CHECK(at.device == 0);
	CHECK(at.devicePointer == d);
	CHECK(at.hostPointer == NULL);
	CHECK_RT_OK(cudaPointerGetAttributes(&at, (char *)d + 100));
	CHECK(at.type == cudaMemoryTypeDevice);
	CHECK(at.devicePointer == (char *)d + 100);
	CHECK_RT_OK(cudaFree(d));

	/* Since CUDA 11, memory CUDA does not know is "unregistered". */
	CHECK_RT_OK(cudaPointerGetAttributes(&at, &host));
	CHECK(at.type == cudaMemoryTypeUnregistered);
	CHECK(at.devicePointer == NULL);
	CHECK_RT(cudaPointerGetAttributes(NULL, &host), cudaErrorInvalidValue);
	(void)cudaGetLastError();
}

int
main(void)
{
	size_t i;

	edge_cases();
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		round_trip(sizes[i], (unsigned)i + 1);
	host_to_host();
	pitched();
	pointer_attributes();
	CHECK_RT_OK(cudaDeviceSynchronize());
	CHECK_RT_OK(cudaGetLastError());
	printf("ok\n");
	return 0;
}
