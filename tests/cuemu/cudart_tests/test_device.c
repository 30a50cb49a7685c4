/* Devices (run with CUEMU_DEVICES=2): count, per-thread current device,
 * invalid ordinals, versions, synchronisation. */
#include "rt_test.h"

#include <pthread.h>

/* A fresh thread starts on device 0 with no last error, whatever the
 * thread that created it did. */
static void *
other_thread(void *arg)
{
	struct cudaPointerAttributes at;
	int dev = -1;
	void *d = NULL;

	(void)arg;
	CHECK_RT_OK(cudaPeekAtLastError());
	CHECK_RT_OK(cudaGetDevice(&dev));
	CHECK(dev == 0);
	CHECK_RT_OK(cudaMalloc(&d, 4096));
	CHECK_RT_OK(cudaPointerGetAttributes(&at, d));
	CHECK(at.type == cudaMemoryTypeDevice && at.device == 0);
	CHECK_RT_OK(cudaFree(d));
	return NULL;
}

int
main(void)
{
	struct cudaPointerAttributes at;
	unsigned char buf[256], out[256];
	pthread_t t;
	int n = -1, dev = -1, v = 0;
	void *d = NULL;

	CHECK_RT_OK(cudaGetDeviceCount(&n));
	CHECK(n == 2);
	CHECK_RT(cudaGetDeviceCount(NULL), cudaErrorInvalidValue);
	CHECK_RT_OK(cudaGetDevice(&dev));
	CHECK(dev == 0);

	/* Invalid ordinals leave the current device alone. */
	CHECK_RT(cudaSetDevice(-1), cudaErrorInvalidDevice);
	CHECK_RT(cudaSetDevice(2), cudaErrorInvalidDevice);
	CHECK_RT(cudaSetDevice(1000), cudaErrorInvalidDevice);
	CHECK_RT(cudaGetLastError(), cudaErrorInvalidDevice);
	CHECK_RT_OK(cudaGetLastError());
	CHECK_RT_OK(cudaGetDevice(&dev));
	CHECK(dev == 0);

	/* Allocations land on the current device. */
	CHECK_RT_OK(cudaSetDevice(1));
	CHECK_RT_OK(cudaGetDevice(&dev));
	CHECK(dev == 1);
	CHECK_RT_OK(cudaMalloc(&d, sizeof(buf)));
	CHECK_RT_OK(cudaPointerGetAttributes(&at, d));
	CHECK(at.type == cudaMemoryTypeDevice && at.device == 1);
	rt_fill(buf, sizeof(buf), 5);
	CHECK_RT_OK(cudaMemcpy(d, buf, sizeof(buf), cudaMemcpyHostToDevice));
	CHECK_RT_OK(cudaMemcpy(out, d, sizeof(out), cudaMemcpyDeviceToHost));
	CHECK(rt_check(out, sizeof(out), 5));
	CHECK_RT_OK(cudaDeviceSynchronize());

	/* The current device and the last error are per thread. */
	CHECK_RT(cudaMalloc(NULL, 1), cudaErrorInvalidValue);
	CHECK(pthread_create(&t, NULL, other_thread, NULL) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK_RT(cudaPeekAtLastError(), cudaErrorInvalidValue);
	CHECK_RT_OK(cudaGetDevice(&dev));
	CHECK(dev == 1);
	CHECK_RT_OK(cudaFree(d));

	/* Back to device 0. */
	CHECK_RT_OK(cudaSetDevice(0));
	CHECK_RT_OK(cudaMalloc(&d, 64));
	CHECK_RT_OK(cudaPointerGetAttributes(&at, d));
	CHECK(at.device == 0);
	CHECK_RT_OK(cudaFree(d));

	/* Attributes: valid ordinals only. */
	CHECK_RT(cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor,
	    2), cudaErrorInvalidDevice);
	CHECK_RT(cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor,
	    -1), cudaErrorInvalidDevice);
	CHECK_RT(cudaDeviceGetAttribute(NULL, cudaDevAttrComputeCapabilityMajor,
	    0), cudaErrorInvalidValue);

	/* Versions. */
	CHECK_RT_OK(cudaRuntimeGetVersion(&v));
	CHECK(v == CUDART_VERSION);
	CHECK_RT_OK(cudaDriverGetVersion(&v));
	CHECK(v >= CUDART_VERSION);
	CHECK_RT(cudaDriverGetVersion(NULL), cudaErrorInvalidValue);
	CHECK_RT(cudaRuntimeGetVersion(NULL), cudaErrorInvalidValue);
	(void)cudaGetLastError();
	printf("ok\n");
	return 0;
}
