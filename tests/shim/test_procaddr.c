/* cuGetProcAddress through the preloaded shim: for every hooked base name,
 * at CUDA 12.0 and 13.0 and with the per-thread-stream flag, the pointer is
 * our hook for exactly the ABI symbol the driver picked (its dladdr name),
 * not the driver's; older versions, functions we do not hook and unknown
 * names pass through as the driver answers.  The hooks handed out work:
 * run in MONITOR mode, calls through them allocate, copy and free like the
 * driver's and log one ALLOC/FREE line each. */
#include <cuda.h>
#include <cudaTypedefs.h>

#include "shim_test.h"

#define PTDS	CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM

struct want {
	const char	*name;
	int		 version;
	cuuint64_t	 flags;
	const char	*abi;	/* the ABI symbol the driver picks */
	int		 hooked;
};

static const struct want wants[] = {
	{ "cuMemAlloc", 12000, 0, "cuMemAlloc_v2", 1 },
	{ "cuMemAlloc", 13000, 0, "cuMemAlloc_v2", 1 },
	{ "cuMemAlloc", 13000, PTDS, "cuMemAlloc_v2", 1 },
	{ "cuMemFree", 12000, 0, "cuMemFree_v2", 1 },
	{ "cuMemFree", 13000, PTDS, "cuMemFree_v2", 1 },
	{ "cuMemAllocPitch", 12000, 0, "cuMemAllocPitch_v2", 1 },
	{ "cuMemAllocPitch", 13000, PTDS, "cuMemAllocPitch_v2", 1 },
	{ "cuMemGetInfo", 12000, 0, "cuMemGetInfo_v2", 1 },
	{ "cuMemGetInfo", 13000, PTDS, "cuMemGetInfo_v2", 1 },
	{ "cuMemGetAddressRange", 12000, 0, "cuMemGetAddressRange_v2", 1 },
	{ "cuMemGetAddressRange", 13000, PTDS, "cuMemGetAddressRange_v2", 1 },
	{ "cuMemAllocAsync", 12000, 0, "cuMemAllocAsync", 1 },
	{ "cuMemAllocAsync", 13000, 0, "cuMemAllocAsync", 1 },
	{ "cuMemAllocAsync", 12000, PTDS, "cuMemAllocAsync_ptsz", 1 },
	{ "cuMemAllocAsync", 13000, PTDS, "cuMemAllocAsync_ptsz", 1 },
	{ "cuMemFreeAsync", 12000, 0, "cuMemFreeAsync", 1 },
	{ "cuMemFreeAsync", 13000, 0, "cuMemFreeAsync", 1 },
	{ "cuMemFreeAsync", 12000, PTDS, "cuMemFreeAsync_ptsz", 1 },
	{ "cuMemFreeAsync", 13000, PTDS, "cuMemFreeAsync_ptsz", 1 },
	{ "cuGetProcAddress", 12000, 0, "cuGetProcAddress_v2", 1 },
	{ "cuGetProcAddress", 13000, PTDS, "cuGetProcAddress_v2", 1 },
	{ "cuGetProcAddress", 11030, 0, "cuGetProcAddress", 1 },
	{ "cuIpcGetMemHandle", 13000, 0, "cuIpcGetMemHandle", 1 },
	{ "cuIpcOpenMemHandle", 12000, 0, "cuIpcOpenMemHandle_v2", 1 },
	{ "cuIpcOpenMemHandle", 13000, PTDS, "cuIpcOpenMemHandle_v2", 1 },
	{ "cuIpcOpenMemHandle", 10020, 0, "cuIpcOpenMemHandle", 1 },
	{ "cuIpcCloseMemHandle", 13000, 0, "cuIpcCloseMemHandle", 1 },
	/* The application's own VMM (served from the pool, client/appvmm.c). */
	{ "cuMemCreate", 10020, 0, "cuMemCreate", 1 },
	{ "cuMemCreate", 13000, PTDS, "cuMemCreate", 1 },
	{ "cuMemRelease", 12000, 0, "cuMemRelease", 1 },
	{ "cuMemMap", 13000, 0, "cuMemMap", 1 },
	{ "cuMemUnmap", 12000, PTDS, "cuMemUnmap", 1 },
	{ "cuMemRetainAllocationHandle", 11000, 0,
	    "cuMemRetainAllocationHandle", 1 },
	{ "cuMemExportToShareableHandle", 13000, 0,
	    "cuMemExportToShareableHandle", 1 },
	{ "cuMemGetAllocationPropertiesFromHandle", 12000, 0,
	    "cuMemGetAllocationPropertiesFromHandle", 1 },
	{ "cuMemSetAccess", 13000, 0, "cuMemSetAccess", 0 },
	/* Not hooked: the driver's own, per-thread variant included. */
	{ "cuMemcpyHtoD", 12000, 0, "cuMemcpyHtoD_v2", 0 },
	{ "cuMemcpyHtoD", 12000, PTDS, "cuMemcpyHtoD_v2_ptds", 0 },
	{ "cuCtxGetCurrent", 13000, 0, "cuCtxGetCurrent", 0 },
};

/* Looks name up with gpa; checks the answer against w. */
static void *
lookup(PFN_cuGetProcAddress_v12000 gpa, const struct want *w)
{
	CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	void *fn = NULL;

	CHECK_OK(gpa(w->name, &fn, w->version, w->flags, &st));
	if (st != CU_GET_PROC_ADDRESS_SUCCESS || fn == NULL ||
	    strcmp(st_symbol(fn), w->abi) != 0 ||
	    (w->hooked ? !st_is_shim(fn) : !st_is_driver(fn))) {
		fprintf(stderr, "%s@%d flags %llu: %p = %s in %s (status %d), "
		    "expected %s in %s\n", w->name, w->version,
		    (unsigned long long)w->flags, fn, st_symbol(fn),
		    st_owner(fn), (int)st, w->abi,
		    w->hooked ? "libvmm_client.so" : "libcuda.so.1");
		exit(1);
	}
	return fn;
}

/* Everything that is not ours passes through unchanged. */
static void
pass_through(PFN_cuGetProcAddress_v12000 gpa)
{
	CUdriverProcAddressQueryResult st;
	void *fn;

	/* cuMemAlloc before 3.2: the v1 entry point, whatever the driver has
	 * for it (the emulator: none), never our hook. */
	fn = (void *)&st;
	CHECK_OK(gpa("cuMemAlloc", &fn, 3010, 0, &st));
	CHECK(fn == NULL || !st_is_shim(fn));
	CHECK(fn != NULL || st != CU_GET_PROC_ADDRESS_SUCCESS);
	/* A miss is CUDA_SUCCESS with NULL. */
	fn = (void *)&st;
	CHECK_OK(gpa("cuNoSuchFunction", &fn, 13000, 0, &st));
	CHECK(fn == NULL);
	CHECK(st == CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
	fn = (void *)&st;
	CHECK_OK(gpa("cuNoSuchFunction", &fn, 13000, PTDS, NULL));
	CHECK(fn == NULL);
	/* Bad arguments: the driver's error. */
	CHECK_CU(gpa("cuMemAlloc", NULL, 13000, 0, &st),
	    CUDA_ERROR_INVALID_VALUE);
}

/* The hooks handed out allocate, copy and free like the driver's. */
static void
use_hooks(PFN_cuGetProcAddress_v12000 gpa)
{
	static const struct want w_alloc = { "cuMemAlloc", 13000, 0,
	    "cuMemAlloc_v2", 1 };
	static const struct want w_free = { "cuMemFree", 13000, 0,
	    "cuMemFree_v2", 1 };
	static const struct want w_aasync = { "cuMemAllocAsync", 13000, PTDS,
	    "cuMemAllocAsync_ptsz", 1 };
	static const struct want w_fasync = { "cuMemFreeAsync", 13000, PTDS,
	    "cuMemFreeAsync_ptsz", 1 };
	static const struct want w_range = { "cuMemGetAddressRange", 13000, 0,
	    "cuMemGetAddressRange_v2", 1 };
	static const struct want w_pitch = { "cuMemAllocPitch", 13000, 0,
	    "cuMemAllocPitch_v2", 1 };
	static const struct want w_info = { "cuMemGetInfo", 13000, 0,
	    "cuMemGetInfo_v2", 1 };
	static const struct want w_gpa4 = { "cuGetProcAddress", 11030, 0,
	    "cuGetProcAddress", 1 };
	PFN_cuMemAlloc_v3020 alloc = lookup(gpa, &w_alloc);
	PFN_cuMemFree_v3020 mfree = lookup(gpa, &w_free);
	PFN_cuMemAllocAsync_v11020_ptsz aasync = lookup(gpa, &w_aasync);
	PFN_cuMemFreeAsync_v11020_ptsz fasync = lookup(gpa, &w_fasync);
	PFN_cuMemGetAddressRange_v3020 range = lookup(gpa, &w_range);
	PFN_cuMemAllocPitch_v3020 pitchf = lookup(gpa, &w_pitch);
	PFN_cuMemGetInfo_v3020 info = lookup(gpa, &w_info);
	PFN_cuGetProcAddress_v11030 gpa4 = lookup(gpa, &w_gpa4);
	unsigned char in[4096], out[4096];
	CUdeviceptr d, a, p, base;
	size_t i, size, pitch, fr, tot;
	void *fn = NULL;
	CUcontext ctx;
	CUdevice dev;

	CHECK_OK(cuInit(0));
	CHECK_OK(cuDeviceGet(&dev, 0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, dev));
	CHECK_OK(cuCtxSetCurrent(ctx));

	/* The old four-argument lookup maps the same way. */
	CHECK_OK(gpa4("cuMemAlloc", &fn, 13000, 0));
	CHECK(fn == (void *)alloc);

	CHECK_OK(alloc(&d, sizeof(in)));
	st_expect('A', d, sizeof(in));
	for (i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 7 + 3);
	CHECK_OK(cuMemcpyHtoD(d, in, sizeof(in)));
	CHECK_OK(cuMemcpyDtoH(out, d, sizeof(out)));
	CHECK(memcmp(in, out, sizeof(in)) == 0);
	CHECK_OK(range(&base, &size, d + 100));
	CHECK(base == d && size == sizeof(in));
	CHECK_CU(alloc(&a, 0), CUDA_ERROR_INVALID_VALUE);

	CHECK_OK(aasync(&a, 1000, NULL));
	st_expect('A', a, 1000);
	CHECK_OK(pitchf(&p, &pitch, 100, 3, 4));
	CHECK(pitch >= 100);
	st_expect('A', p, pitch * 3);
	CHECK_OK(info(&fr, &tot));
	CHECK(tot > 0 && fr <= tot);

	CHECK_OK(fasync(a, NULL));
	st_expect('F', a, 1000);
	CHECK_OK(cuStreamSynchronize(NULL));
	CHECK_OK(mfree(p));
	st_expect('F', p, pitch * 3);
	CHECK_OK(mfree(d));
	st_expect('F', d, sizeof(in));
	CHECK_CU(mfree(d), CUDA_ERROR_INVALID_VALUE);
}

static const struct want w_self = { "cuGetProcAddress", 12000, 0,
    "cuGetProcAddress_v2", 1 };

int
main(void)
{
	PFN_cuGetProcAddress_v12000 gpa, self;
	void *drv;
	size_t i;

	st_log_reset();
	/* As a runtime does: the driver's handle, then cuGetProcAddress_v2. */
	CHECK((drv = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)) != NULL);
	CHECK((gpa = (PFN_cuGetProcAddress_v12000)dlsym(drv,
	    "cuGetProcAddress_v2")) != NULL);
	CHECK(st_is_shim((void *)gpa));

	for (i = 0; i < sizeof(wants) / sizeof(wants[0]); i++)
		(void)lookup(gpa, &wants[i]);
	/* What the lookup of cuGetProcAddress gives is the hook again. */
	CHECK((self = lookup(gpa, &w_self)) == gpa);
	for (i = 0; i < sizeof(wants) / sizeof(wants[0]); i++)
		(void)lookup(self, &wants[i]);
	pass_through(gpa);
	use_hooks(gpa);
	st_log_verify();
	printf("ok\n");
	return 0;
}
