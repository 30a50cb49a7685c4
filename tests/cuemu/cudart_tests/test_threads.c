/* Many threads make their first runtime call at the same moment (one-time
 * initialisation under contention), then allocate, copy and free in
 * parallel, each with its own last error. */
#include "rt_test.h"

#include <pthread.h>

#define NTHREADS 8
#define ROUNDS 40

static pthread_barrier_t start;

static void *
worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	unsigned char *in, *out;
	size_t max = 256 * 1024 + id;
	unsigned r;

	in = malloc(max);
	out = malloc(max);
	CHECK(in != NULL && out != NULL);
	pthread_barrier_wait(&start);
	for (r = 0; r < ROUNDS; r++) {
		size_t n = 1 + ((size_t)(r * 7919u + id * 104729u) % max);
		void *d = NULL;

		rt_fill(in, n, id * 100 + r);
		CHECK_RT_OK(cudaMalloc(&d, n));
		CHECK_RT_OK(cudaMemcpy(d, in, n, cudaMemcpyHostToDevice));
		memset(out, 0, n);
		CHECK_RT_OK(cudaMemcpy(out, d, n, cudaMemcpyDeviceToHost));
		CHECK(rt_check(out, n, id * 100 + r));
		if (r % 5 == id % 5) {
			CHECK_RT(cudaMalloc(NULL, n), cudaErrorInvalidValue);
			CHECK_RT(cudaGetLastError(), cudaErrorInvalidValue);
		}
		CHECK_RT_OK(cudaPeekAtLastError());
		CHECK_RT_OK(cudaFree(d));
	}
	free(in);
	free(out);
	return NULL;
}

int
main(void)
{
	pthread_t t[NTHREADS];
	uintptr_t i;

	CHECK(pthread_barrier_init(&start, NULL, NTHREADS) == 0);
	for (i = 0; i < NTHREADS; i++)
		CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
	for (i = 0; i < NTHREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	CHECK(pthread_barrier_destroy(&start) == 0);
	printf("ok\n");
	return 0;
}
