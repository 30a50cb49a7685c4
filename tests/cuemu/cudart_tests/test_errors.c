/* cudaGetLastError returns and clears the calling thread's last error,
 * cudaPeekAtLastError does not clear it; error names and strings. */
#include "rt_test.h"

#include <pthread.h>

static void *
fresh_thread(void *arg)
{
	(void)arg;
	CHECK_RT_OK(cudaPeekAtLastError());
	CHECK_RT(cudaSetDevice(-7), cudaErrorInvalidDevice);
	CHECK_RT(cudaPeekAtLastError(), cudaErrorInvalidDevice);
	return NULL;
}

static void
last_error(void)
{
	pthread_t t;
	void *d = NULL;

	CHECK_RT_OK(cudaGetLastError());
	CHECK_RT_OK(cudaPeekAtLastError());

	CHECK_RT(cudaMalloc(NULL, 1), cudaErrorInvalidValue);
	/* A later success does not clear it. */
	CHECK_RT_OK(cudaMalloc(&d, 16));
	CHECK_RT(cudaPeekAtLastError(), cudaErrorInvalidValue);
	CHECK_RT(cudaPeekAtLastError(), cudaErrorInvalidValue);
	CHECK_RT(cudaGetLastError(), cudaErrorInvalidValue);
	CHECK_RT_OK(cudaGetLastError());
	CHECK_RT_OK(cudaPeekAtLastError());

	/* The most recent error wins. */
	CHECK_RT(cudaMalloc(NULL, 1), cudaErrorInvalidValue);
	CHECK_RT(cudaSetDevice(99), cudaErrorInvalidDevice);
	CHECK_RT(cudaGetLastError(), cudaErrorInvalidDevice);
	CHECK_RT_OK(cudaGetLastError());

	/* Per thread: neither thread sees the other's error. */
	CHECK(pthread_create(&t, NULL, fresh_thread, NULL) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK_RT_OK(cudaPeekAtLastError());
	CHECK_RT_OK(cudaFree(d));
}

static void
strings(void)
{
	static const struct {
		cudaError_t	 e;
		const char	*name;
		const char	*text;
	} known[] = {
		{ cudaSuccess, "cudaSuccess", "no error" },
		{ cudaErrorInvalidValue, "cudaErrorInvalidValue",
		    "invalid argument" },
		{ cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation",
		    "out of memory" },
		{ cudaErrorInitializationError, "cudaErrorInitializationError",
		    "initialization error" },
		{ cudaErrorInvalidDevice, "cudaErrorInvalidDevice",
		    "invalid device ordinal" },
		{ cudaErrorInvalidResourceHandle,
		    "cudaErrorInvalidResourceHandle",
		    "invalid resource handle" },
		{ cudaErrorNotReady, "cudaErrorNotReady", "device not ready" },
		{ cudaErrorUnknown, "cudaErrorUnknown", "unknown error" },
	};
	static const cudaError_t others[] = {
		cudaErrorInvalidMemcpyDirection, cudaErrorInsufficientDriver,
		cudaErrorNoDevice, cudaErrorDeviceUninitialized,
		cudaErrorNotSupported, cudaErrorNotPermitted,
		cudaErrorCudartUnloading, cudaErrorIllegalAddress,
	};
	size_t i;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		CHECK(strcmp(cudaGetErrorName(known[i].e), known[i].name) == 0);
		CHECK(strcmp(cudaGetErrorString(known[i].e),
		    known[i].text) == 0);
	}
	for (i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		const char *n = cudaGetErrorName(others[i]);
		const char *s = cudaGetErrorString(others[i]);

		CHECK(n != NULL && strncmp(n, "cudaError", 9) == 0);
		CHECK(s != NULL && *s != '\0' &&
		    strcmp(s, "unrecognized error code") != 0);
	}
	CHECK(strcmp(cudaGetErrorName((cudaError_t)12345),
	    "unrecognized error code") == 0);
	CHECK(strcmp(cudaGetErrorString((cudaError_t)-3),
	    "unrecognized error code") == 0);
	/* Asking for a string is not an error. */
	CHECK_RT_OK(cudaPeekAtLastError());
}

int
main(void)
{
	/* Before any other call: nothing pending, strings need no driver. */
	CHECK_RT_OK(cudaPeekAtLastError());
	strings();
	last_error();
	printf("ok\n");
	return 0;
}
