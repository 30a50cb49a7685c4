/* Two devices (CUEMU_DEVICES=2): runtime peer access, and lazy binding of
 * cudaSetDevice (CUEMU_RUNTIME_LAZY_BIND=1, the CUDA 11 runtime's way).
 * Usage: test_peer peer | lazy | eager | badenv
 * The driver's current context is read through libcuda.so.1 (dlopen), as a
 * library mixing both APIs would. */
#include "rt_test.h"

#include <cuda.h>
#include <dlfcn.h>
#include <pthread.h>

typedef CUresult (*ctx_get_device_fn)(CUdevice *);
typedef CUresult (*ctx_get_current_fn)(CUcontext *);

static ctx_get_device_fn	drv_ctx_device;
static ctx_get_current_fn	drv_ctx_current;

static void
load_driver(void)
{
	void *h = dlopen("libcuda.so.1", RTLD_NOW);

	CHECK(h != NULL);
	drv_ctx_device = (ctx_get_device_fn)dlsym(h, "cuCtxGetDevice");
	drv_ctx_current = (ctx_get_current_fn)dlsym(h, "cuCtxGetCurrent");
	CHECK(drv_ctx_device != NULL && drv_ctx_current != NULL);
}

/* The device of the driver's current context, -1 if none. */
static int
driver_device(void)
{
	CUcontext c = NULL;
	CUdevice d = -1;

	CHECK(drv_ctx_current(&c) == CUDA_SUCCESS);
	if (c == NULL)
		return -1;
	CHECK(drv_ctx_device(&d) == CUDA_SUCCESS);
	return d;
}

/* Whether the current device can copy through p (device memory). */
static int
copies(void *p)
{
	unsigned char in[512], out[512];
	cudaError_t r;

	rt_fill(in, sizeof(in), 21);
	r = cudaMemcpy(p, in, sizeof(in), cudaMemcpyHostToDevice);
	if (r != cudaSuccess) {
		CHECK(r == cudaErrorInvalidValue);
		CHECK_RT(cudaMemcpy(out, p, sizeof(out), cudaMemcpyDeviceToHost),
		    cudaErrorInvalidValue);
		(void)cudaGetLastError();
		return 0;
	}
	CHECK_RT_OK(cudaMemcpy(out, p, sizeof(out), cudaMemcpyDeviceToHost));
	CHECK(rt_check(out, sizeof(out), 21));
	return 1;
}

static void
test_peer(void)
{
	void *p0 = NULL;
	int v = -1;

	CHECK_RT_OK(cudaDeviceCanAccessPeer(&v, 1, 0));
	CHECK(v == 1);
	CHECK_RT_OK(cudaDeviceCanAccessPeer(&v, 0, 0));
	CHECK(v == 0);
	CHECK_RT(cudaDeviceCanAccessPeer(&v, 0, 2), cudaErrorInvalidDevice);
	CHECK_RT(cudaDeviceCanAccessPeer(NULL, 0, 1), cudaErrorInvalidValue);

	CHECK_RT_OK(cudaSetDevice(0));
	CHECK_RT_OK(cudaMalloc(&p0, 4096));
	CHECK(copies(p0));
	CHECK_RT_OK(cudaSetDevice(1));
	CHECK(!copies(p0));
	CHECK_RT_OK(cudaDeviceEnablePeerAccess(0, 0));
	CHECK(copies(p0));
	CHECK_RT(cudaDeviceEnablePeerAccess(0, 0),
	    cudaErrorPeerAccessAlreadyEnabled);
	CHECK_RT(cudaDeviceEnablePeerAccess(1, 0), cudaErrorInvalidDevice);
	CHECK_RT(cudaDeviceEnablePeerAccess(0, 1), cudaErrorInvalidValue);
	CHECK_RT(cudaDeviceEnablePeerAccess(5, 0), cudaErrorInvalidDevice);
	CHECK_RT_OK(cudaDeviceDisablePeerAccess(0));
	CHECK(!copies(p0));
	CHECK_RT(cudaDeviceDisablePeerAccess(0), cudaErrorPeerAccessNotEnabled);
	CHECK_RT_OK(cudaSetDevice(0));
	CHECK_RT_OK(cudaFree(p0));
	(void)cudaGetLastError();
}

/* With lazy binding, cudaSetDevice leaves the driver's context alone until
 * the next call that needs one; eagerly it switches at once. */
static void
test_binding(int lazy)
{
	struct cudaPointerAttributes at;
	void *p = NULL;
	int dev = -1;

	CHECK_RT_OK(cudaFree(NULL));
	CHECK(driver_device() == 0);
	CHECK_RT_OK(cudaSetDevice(1));
	CHECK_RT_OK(cudaGetDevice(&dev));
	CHECK(dev == 1);
	CHECK(driver_device() == (lazy ? 0 : 1));
	CHECK_RT_OK(cudaMalloc(&p, 4096));
	CHECK(driver_device() == 1);
	CHECK_RT_OK(cudaPointerGetAttributes(&at, p));
	CHECK(at.device == 1);
	CHECK(copies(p));
	CHECK_RT_OK(cudaFree(p));

	/* Back to 0: the same, and a query that needs no context binds
	 * nothing. */
	CHECK_RT_OK(cudaSetDevice(0));
	CHECK_RT_OK(cudaGetDevice(&dev));
	CHECK(dev == 0);
	CHECK_RT_OK(cudaDeviceCanAccessPeer(&dev, 0, 1));
	CHECK(driver_device() == (lazy ? 1 : 0));
	CHECK_RT_OK(cudaDeviceSynchronize());
	CHECK(driver_device() == 0);
}

/* A new thread has no context: lazily, cudaSetDevice does not make one. */
static void *
fresh_thread(void *arg)
{
	int lazy = *(int *)arg;
	void *p = NULL;

	CHECK(driver_device() == -1);
	CHECK_RT_OK(cudaSetDevice(1));
	CHECK(driver_device() == (lazy ? -1 : 1));
	CHECK_RT_OK(cudaMalloc(&p, 64));
	CHECK(driver_device() == 1);
	CHECK_RT_OK(cudaFree(p));
	return NULL;
}

int
main(int argc, char **argv)
{
	pthread_t t;
	int n = 0, lazy;

	CHECK(argc == 2);
	if (strcmp(argv[1], "badenv") == 0) {
		/* CUEMU_RUNTIME_LAZY_BIND=yes: refused, as a broken set-up. */
		CHECK_RT(cudaGetDeviceCount(&n), cudaErrorInitializationError);
		CHECK_RT(cudaSetDevice(0), cudaErrorInitializationError);
		return 0;
	}
	load_driver();
	CHECK_RT_OK(cudaGetDeviceCount(&n));
	CHECK(n == 2);
	if (strcmp(argv[1], "peer") == 0) {
		test_peer();
		return 0;
	}
	lazy = strcmp(argv[1], "lazy") == 0;
	CHECK(lazy || strcmp(argv[1], "eager") == 0);
	test_binding(lazy);
	CHECK(pthread_create(&t, NULL, fresh_thread, &lazy) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	return 0;
}
