/* Stream-ordered allocation and copies: cudaMallocAsync / cudaFreeAsync,
 * cudaMemcpyAsync, streams and events. */
#include "rt_test.h"

/* Allocate, copy in and out, and free on stream s. */
static void
on_stream(cudaStream_t s, size_t n, unsigned seed)
{
	unsigned char *in = malloc(n), *out = malloc(n);
	void *a = NULL, *b = NULL;
	cudaEvent_t ev;

	CHECK(in != NULL && out != NULL);
	rt_fill(in, n, seed);
	memset(out, 0, n);
	CHECK_RT_OK(cudaMallocAsync(&a, n, s));
	CHECK_RT_OK(cudaMallocAsync(&b, n, s));
	CHECK(a != NULL && b != NULL && a != b);
	CHECK_RT_OK(cudaMemcpyAsync(a, in, n, cudaMemcpyHostToDevice, s));
	CHECK_RT_OK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, s));
	CHECK_RT_OK(cudaMemcpyAsync(out, b, n, cudaMemcpyDeviceToHost, s));
	CHECK_RT_OK(cudaEventCreate(&ev));
	CHECK_RT_OK(cudaEventRecord(ev, s));
	CHECK_RT_OK(cudaEventSynchronize(ev));
	CHECK_RT_OK(cudaEventDestroy(ev));
	CHECK(rt_check(out, n, seed));
	memset(out, 0, n);
	CHECK_RT_OK(cudaMemcpyAsync(out, a, n, cudaMemcpyDefault, s));
	CHECK_RT_OK(cudaFreeAsync(a, s));
	CHECK_RT_OK(cudaFreeAsync(b, s));
	CHECK_RT_OK(cudaStreamSynchronize(s));
	CHECK_RT_OK(cudaStreamQuery(s));
	CHECK(rt_check(out, n, seed));
	free(in);
	free(out);
}

int
main(void)
{
	cudaStream_t s1, s2, bad;
	void *d = NULL;

	CHECK_RT_OK(cudaStreamCreate(&s1));
	CHECK_RT_OK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
	CHECK(s1 != NULL && s2 != NULL && s1 != s2);
	CHECK_RT(cudaStreamCreateWithFlags(&bad, 0x80), cudaErrorInvalidValue);
	CHECK_RT(cudaStreamCreate(NULL), cudaErrorInvalidValue);
	CHECK_RT(cudaEventCreate(NULL), cudaErrorInvalidValue);

	on_stream(s1, 4096, 1);
	on_stream(s2, 3 * MiB + 1, 2);
	on_stream(NULL, 100, 3);		/* the legacy default stream */
	on_stream(cudaStreamPerThread, 777, 4);

	CHECK_RT(cudaMallocAsync(NULL, 64, s1), cudaErrorInvalidValue);
	d = (void *)&d;
	CHECK_RT_OK(cudaMallocAsync(&d, 0, s1));
	CHECK(d == NULL);

	/* cudaFree takes stream-ordered memory too (no implicit sync). */
	CHECK_RT_OK(cudaMallocAsync(&d, 4096, s1));
	CHECK_RT_OK(cudaStreamSynchronize(s1));
	CHECK_RT_OK(cudaFree(d));

	CHECK_RT_OK(cudaMallocAsync(&d, 64, s1));
	CHECK_RT(cudaMemcpyAsync(d, &d, sizeof(d), (enum cudaMemcpyKind)9, s1),
	    cudaErrorInvalidMemcpyDirection);
	CHECK_RT_OK(cudaFreeAsync(d, s1));
	CHECK_RT_OK(cudaStreamSynchronize(s1));
	CHECK_RT_OK(cudaDeviceSynchronize());

	CHECK_RT_OK(cudaStreamDestroy(s1));
	CHECK_RT_OK(cudaStreamDestroy(s2));
	(void)cudaGetLastError();
	printf("ok\n");
	return 0;
}
