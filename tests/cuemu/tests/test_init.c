/* cuInit and the calls that must work (or fail) before it; fork() after
 * cuInit leaves the child unable to use the driver. */
#include "cuemu_test.h"

/* Calls documented to return CUDA_ERROR_NOT_INITIALIZED before cuInit. */
static void
expect_not_initialized(void)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h;
	CUdeviceptr dp;
	CUdevice dev;
	CUcontext ctx;
	CUstream s;
	size_t g, fr, tot;
	int n;

	CHECK_CU(cuDeviceGetCount(&n), CUDA_ERROR_NOT_INITIALIZED);
	CHECK_CU(cuDeviceGet(&dev, 0), CUDA_ERROR_NOT_INITIALIZED);
	CHECK_CU(cuDeviceTotalMem(&g, 0), CUDA_ERROR_NOT_INITIALIZED);
	CHECK_CU(cuDevicePrimaryCtxRetain(&ctx, 0), CUDA_ERROR_NOT_INITIALIZED);
	CHECK_CU(cuCtxGetCurrent(&ctx), CUDA_ERROR_NOT_INITIALIZED);
	CHECK_CU(cuCtxSetCurrent(NULL), CUDA_ERROR_NOT_INITIALIZED);
	CHECK_CU(cuCtxSynchronize(), CUDA_ERROR_NOT_INITIALIZED);
	CHECK_CU(cuMemGetAllocationGranularity(&g, &p,
	    CU_MEM_ALLOC_GRANULARITY_MINIMUM), CUDA_ERROR_NOT_INITIALIZED);
	CHECK_CU(cuMemCreate(&h, 2 * MiB, &p, 0), CUDA_ERROR_NOT_INITIALIZED);
	CHECK_CU(cuMemAddressReserve(&dp, 2 * MiB, 0, 0, 0),
	    CUDA_ERROR_NOT_INITIALIZED);
	CHECK_CU(cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)0,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR), CUDA_ERROR_NOT_INITIALIZED);
	CHECK_CU(cuMemAlloc(&dp, 4096), CUDA_ERROR_NOT_INITIALIZED);
	CHECK_CU(cuMemGetInfo(&fr, &tot), CUDA_ERROR_NOT_INITIALIZED);
	CHECK_CU(cuStreamCreate(&s, 0), CUDA_ERROR_NOT_INITIALIZED);
}

/* Calls whose documented codes do not include NOT_INITIALIZED work before
 * cuInit: the version, error strings and entry-point lookup. */
static void
expect_usable_before_init(void)
{
	const char *s = NULL;
	void *fn = NULL;
	CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	int v = 0;

	CHECK_OK(cuDriverGetVersion(&v));
	CHECK(v >= CUDA_VERSION && v % 10 == 0);
	CHECK_CU(cuDriverGetVersion(NULL), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuGetErrorName(CUDA_ERROR_NOT_INITIALIZED, &s));
	CHECK(s != NULL && strcmp(s, "CUDA_ERROR_NOT_INITIALIZED") == 0);
	CHECK_OK(cuGetProcAddress("cuInit", &fn, 12000, 0, &st));
	CHECK(fn != NULL && st == CU_GET_PROC_ADDRESS_SUCCESS);
}

/* A child of a process that never called cuInit can initialise. */
static void
child_of_uninitialised_parent(void)
{
	pid_t pid = fork();
	int n = 0;

	CHECK(pid >= 0);
	if (pid == 0) {
		CHECK_OK(cuInit(0));
		CHECK_OK(cuDeviceGetCount(&n));
		CHECK(n >= 1);
		_exit(0);
	}
	ct_wait_ok(pid, "child of uninitialised parent");
}

/* A child forked after cuInit gets NOT_INITIALIZED from cuInit and from
 * every other call (it shares no driver state with the parent). */
static void
child_of_initialised_parent(void)
{
	pid_t pid = fork();

	CHECK(pid >= 0);
	if (pid == 0) {
		CHECK_CU(cuInit(0), CUDA_ERROR_NOT_INITIALIZED);
		expect_not_initialized();
		CHECK_CU(cuInit(0), CUDA_ERROR_NOT_INITIALIZED);
		_exit(0);
	}
	ct_wait_ok(pid, "child of initialised parent");
}

int
main(void)
{
	int n = 0;

	expect_not_initialized();
	expect_usable_before_init();
	child_of_uninitialised_parent();

	/* Flags must be 0; a failed cuInit initialises nothing. */
	CHECK_CU(cuInit(1), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuInit(0x80000000u), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuDeviceGetCount(&n), CUDA_ERROR_NOT_INITIALIZED);

	CHECK_OK(cuInit(0));
	CHECK_OK(cuInit(0));
	CHECK_OK(cuDeviceGetCount(&n));
	CHECK(n >= 1);
	CHECK_CU(cuInit(2), CUDA_ERROR_INVALID_VALUE);

	child_of_initialised_parent();
	/* The parent is unaffected by its child. */
	CHECK_OK(cuDeviceGetCount(&n));
	CHECK(n >= 1);
	return 0;
}
