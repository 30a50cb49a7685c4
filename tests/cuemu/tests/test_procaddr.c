/* cuGetProcAddress_v2 and the old 4-argument cuGetProcAddress: a base name
 * plus a CUDA version selects the exact ABI version of a function, and the
 * per-thread flag selects its _ptds/_ptsz variant.  The versions below are
 * those of the PFN typedefs in cudaTypedefs.h (PFN_cuMemAlloc_v3020, ...). */
#include <cudaTypedefs.h>

#include "cuemu_test.h"

#define PTDS CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM
#define LEGACY CU_GET_PROC_ADDRESS_LEGACY_STREAM

struct api {
	const char *name;
	int ver[3];		/* ABI versions, ascending; 0 ends */
	const char *sym[3];	/* exported symbol of each ABI version */
	const char *pt;		/* per-thread variant of the newest, or NULL */
};

static const struct api apis[] = {
	{ "cuInit", { 2000 }, { "cuInit" }, NULL },
	{ "cuDriverGetVersion", { 2020 }, { "cuDriverGetVersion" }, NULL },
	{ "cuDeviceGet", { 2000 }, { "cuDeviceGet" }, NULL },
	{ "cuDeviceGetCount", { 2000 }, { "cuDeviceGetCount" }, NULL },
	{ "cuDeviceGetName", { 2000 }, { "cuDeviceGetName" }, NULL },
	{ "cuDeviceGetUuid", { 9020, 11040 },
	    { "cuDeviceGetUuid", "cuDeviceGetUuid_v2" }, NULL },
	{ "cuDeviceTotalMem", { 2000, 3020 },
	    { "cuDeviceTotalMem", "cuDeviceTotalMem_v2" }, NULL },
	{ "cuDeviceGetAttribute", { 2000 }, { "cuDeviceGetAttribute" }, NULL },
	{ "cuDevicePrimaryCtxRetain", { 7000 }, { "cuDevicePrimaryCtxRetain" },
	    NULL },
	{ "cuDevicePrimaryCtxRelease", { 7000, 11000 },
	    { "cuDevicePrimaryCtxRelease", "cuDevicePrimaryCtxRelease_v2" },
	    NULL },
	{ "cuCtxSetCurrent", { 4000 }, { "cuCtxSetCurrent" }, NULL },
	{ "cuCtxGetCurrent", { 4000 }, { "cuCtxGetCurrent" }, NULL },
	{ "cuCtxGetDevice", { 2000, 13000 },
	    { "cuCtxGetDevice", "cuCtxGetDevice_v2" }, NULL },
	{ "cuCtxSynchronize", { 2000, 13000 },
	    { "cuCtxSynchronize", "cuCtxSynchronize_v2" }, NULL },
	{ "cuGetErrorName", { 6000 }, { "cuGetErrorName" }, NULL },
	{ "cuGetErrorString", { 6000 }, { "cuGetErrorString" }, NULL },
	{ "cuMemGetAllocationGranularity", { 10020 },
	    { "cuMemGetAllocationGranularity" }, NULL },
	{ "cuMemCreate", { 10020 }, { "cuMemCreate" }, NULL },
	{ "cuMemRelease", { 10020 }, { "cuMemRelease" }, NULL },
	{ "cuMemAddressReserve", { 10020 }, { "cuMemAddressReserve" }, NULL },
	{ "cuMemAddressFree", { 10020 }, { "cuMemAddressFree" }, NULL },
	{ "cuMemMap", { 10020 }, { "cuMemMap" }, NULL },
	{ "cuMemUnmap", { 10020 }, { "cuMemUnmap" }, NULL },
	{ "cuMemSetAccess", { 10020 }, { "cuMemSetAccess" }, NULL },
	{ "cuMemGetAccess", { 10020 }, { "cuMemGetAccess" }, NULL },
	{ "cuMemExportToShareableHandle", { 10020 },
	    { "cuMemExportToShareableHandle" }, NULL },
	{ "cuMemImportFromShareableHandle", { 10020 },
	    { "cuMemImportFromShareableHandle" }, NULL },
	{ "cuMemRetainAllocationHandle", { 11000 },
	    { "cuMemRetainAllocationHandle" }, NULL },
	{ "cuMemGetAllocationPropertiesFromHandle", { 10020 },
	    { "cuMemGetAllocationPropertiesFromHandle" }, NULL },
	{ "cuMemAlloc", { 2000, 3020 }, { "cuMemAlloc", "cuMemAlloc_v2" }, NULL },
	{ "cuMemFree", { 2000, 3020 }, { "cuMemFree", "cuMemFree_v2" }, NULL },
	{ "cuMemAllocPitch", { 2000, 3020 },
	    { "cuMemAllocPitch", "cuMemAllocPitch_v2" }, NULL },
	{ "cuMemGetInfo", { 2000, 3020 },
	    { "cuMemGetInfo", "cuMemGetInfo_v2" }, NULL },
	{ "cuMemGetAddressRange", { 2000, 3020 },
	    { "cuMemGetAddressRange", "cuMemGetAddressRange_v2" }, NULL },
	{ "cuMemAllocAsync", { 11020 }, { "cuMemAllocAsync" },
	    "cuMemAllocAsync_ptsz" },
	{ "cuMemFreeAsync", { 11020 }, { "cuMemFreeAsync" },
	    "cuMemFreeAsync_ptsz" },
	{ "cuMemcpyHtoD", { 2000, 3020 },
	    { "cuMemcpyHtoD", "cuMemcpyHtoD_v2" }, "cuMemcpyHtoD_v2_ptds" },
	{ "cuMemcpyDtoH", { 2000, 3020 },
	    { "cuMemcpyDtoH", "cuMemcpyDtoH_v2" }, "cuMemcpyDtoH_v2_ptds" },
	{ "cuMemcpyDtoD", { 2000, 3020 },
	    { "cuMemcpyDtoD", "cuMemcpyDtoD_v2" }, "cuMemcpyDtoD_v2_ptds" },
	{ "cuMemcpy", { 4000 }, { "cuMemcpy" }, "cuMemcpy_ptds" },
	{ "cuMemsetD8", { 2000, 3020 }, { "cuMemsetD8", "cuMemsetD8_v2" },
	    "cuMemsetD8_v2_ptds" },
	{ "cuStreamCreate", { 2000 }, { "cuStreamCreate" }, NULL },
	{ "cuStreamDestroy", { 2000, 4000 },
	    { "cuStreamDestroy", "cuStreamDestroy_v2" }, NULL },
	{ "cuStreamSynchronize", { 2000 }, { "cuStreamSynchronize" },
	    "cuStreamSynchronize_ptsz" },
	{ "cuStreamQuery", { 2000 }, { "cuStreamQuery" }, "cuStreamQuery_ptsz" },
	{ "cuEventCreate", { 2000 }, { "cuEventCreate" }, NULL },
	{ "cuEventDestroy", { 2000, 4000 },
	    { "cuEventDestroy", "cuEventDestroy_v2" }, NULL },
	{ "cuEventRecord", { 2000 }, { "cuEventRecord" }, "cuEventRecord_ptsz" },
	{ "cuEventSynchronize", { 2000 }, { "cuEventSynchronize" }, NULL },
	{ "cuEventQuery", { 2000 }, { "cuEventQuery" }, NULL },
	{ "cuPointerGetAttribute", { 4000 }, { "cuPointerGetAttribute" }, NULL },
	{ "cuPointerGetAttributes", { 7000 }, { "cuPointerGetAttributes" },
	    NULL },
	{ "cuGetProcAddress", { 11030, 12000 },
	    { "cuGetProcAddress", "cuGetProcAddress_v2" }, NULL },
	{ "cuIpcGetMemHandle", { 4010 }, { "cuIpcGetMemHandle" }, NULL },
	{ "cuIpcOpenMemHandle", { 4010, 11000 },
	    { "cuIpcOpenMemHandle", "cuIpcOpenMemHandle_v2" }, NULL },
	{ "cuIpcCloseMemHandle", { 4010 }, { "cuIpcCloseMemHandle" }, NULL },
};

static void *lib;
static int failures;
/* CUEMU_PROCADDR_INTERNAL=1: the answers are internal entry points, not
 * what dlsym shows; one per ABI symbol, the same at every query. */
static int internal;

#define NSEEN 256
static struct {
	const char	*sym;
	void		*fn;
} seen[NSEEN];
static int nseen;

/* Internal mode: fn must be the one entry point of sym, distinct from its
 * exported address and from every other symbol's entry point. */
static int
internal_ok(const char *sym, void *fn, void *exported)
{
	int i;

	if (fn == NULL || fn == exported)
		return 0;
	for (i = 0; i < nseen; i++) {
		if (strcmp(seen[i].sym, sym) == 0)
			return seen[i].fn == fn;
		if (seen[i].fn == fn)
			return 0;
	}
	CHECK(nseen < NSEEN);
	seen[nseen].sym = sym;
	seen[nseen].fn = fn;
	nseen++;
	return 1;
}

/* Look name up at version with flags; compare with the expected symbol.
 * must: the symbol has to exist (else an older ABI may be missing, but
 * then the answer must be NULL, never another ABI's function). */
static void
expect_sym(const char *name, int ver, cuuint64_t flags, const char *sym,
    int must)
{
	CUdriverProcAddressQueryResult st = (CUdriverProcAddressQueryResult)-1;
	void *fn = (void *)&st, *want = dlsym(lib, sym);
	CUresult r;

	r = cuGetProcAddress(name, &fn, ver, flags, &st);
	if (r != CUDA_SUCCESS) {
		fprintf(stderr, "cuGetProcAddress(%s, %d, %llu) = %d\n", name, ver,
		    (unsigned long long)flags, (int)r);
		failures++;
		return;
	}
	if (want == NULL && must) {
		fprintf(stderr, "%s (for %s @%d) is not exported\n", sym, name, ver);
		failures++;
	}
	if (internal && want != NULL) {
		if (!internal_ok(sym, fn, want)) {
			fprintf(stderr, "cuGetProcAddress(%s, %d, flags %llu) = %p: "
			    "not one internal entry point of %s (exported %p)\n",
			    name, ver, (unsigned long long)flags, fn, sym, want);
			failures++;
		}
		return;
	}
	if (fn != want && !(want == NULL && fn == NULL)) {
		fprintf(stderr, "cuGetProcAddress(%s, %d, flags %llu) = %p, want "
		    "%s = %p\n", name, ver, (unsigned long long)flags, fn, sym, want);
		failures++;
		return;
	}
	if (fn != NULL && st != CU_GET_PROC_ADDRESS_SUCCESS) {
		fprintf(stderr, "cuGetProcAddress(%s, %d): status %d with a "
		    "function\n", name, ver, (int)st);
		failures++;
	}
}

/* Newest ABI version of a not later than ver, as an index; -1 if none. */
static int
abi_index(const struct api *a, int ver)
{
	int i, best = -1;

	for (i = 0; i < 3 && a->ver[i] != 0; i++) {
		if (a->ver[i] <= ver)
			best = i;
	}
	return best;
}

/* Every function of the table at each of its versions, at 12000, at the
 * header's version, with and without the per-thread flag. */
static void
test_table(void)
{
	static const int vers[] = { 12000, CUDA_VERSION };
	CUdriverProcAddressQueryResult st;
	const struct api *a;
	size_t i;
	void *fn;
	int j, k, last;

	for (i = 0; i < sizeof(apis) / sizeof(apis[0]); i++) {
		a = &apis[i];
		for (last = 0; last < 3 && a->ver[last] != 0; last++)
			;
		last--;
		for (j = 0; j <= last; j++)
			expect_sym(a->name, a->ver[j], LEGACY, a->sym[j], j == last);
		for (k = 0; k < 2; k++) {
			j = abi_index(a, vers[k]);
			expect_sym(a->name, vers[k], 0, a->sym[j], 1);
			expect_sym(a->name, vers[k], LEGACY, a->sym[j], 1);
			expect_sym(a->name, vers[k], PTDS,
			    a->pt != NULL && j == last ? a->pt : a->sym[j], 1);
		}
		/* Older than the function itself. */
		if (a->ver[0] >= 4000) {
			fn = (void *)&st;
			st = CU_GET_PROC_ADDRESS_SUCCESS;
			CHECK_OK(cuGetProcAddress(a->name, &fn, a->ver[0] - 10, 0,
			    &st));
			if (fn != NULL ||
			    st != CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT) {
				fprintf(stderr, "cuGetProcAddress(%s, %d): %p status %d, "
				    "want NULL, VERSION_NOT_SUFFICIENT\n", a->name,
				    a->ver[0] - 10, fn, (int)st);
				failures++;
			}
		}
	}
}

/* Unknown names, bad arguments, versions newer than the driver. */
static void
test_misuse(void)
{
	CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SUCCESS;
	void *fn = (void *)&st;
	int drv = 0;

	CHECK_OK(cuGetProcAddress("cuNoSuchFunction", &fn, 12000, 0, &st));
	CHECK(fn == NULL && st == CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
	fn = (void *)&st;
	CHECK_OK(cuGetProcAddress("", &fn, 12000, 0, &st));
	CHECK(fn == NULL && st == CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
	/* symbolStatus is optional. */
	fn = (void *)&st;
	CHECK_OK(cuGetProcAddress("cuNoSuchFunction", &fn, 12000, 0, NULL));
	CHECK(fn == NULL);
	fn = NULL;
	CHECK_OK(cuGetProcAddress("cuMemCreate", &fn, 12000, 0, NULL));
	CHECK(fn != NULL && (internal ? fn != dlsym(lib, "cuMemCreate") :
	    fn == dlsym(lib, "cuMemCreate")));
	/* Asked for an older CUDA than the function's (cuMemCreate: 10020). */
	fn = (void *)&st;
	CHECK_OK(cuGetProcAddress("cuMemCreate", &fn, 10000, 0, &st));
	CHECK(fn == NULL && st == CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT);

	CHECK_CU(cuGetProcAddress(NULL, &fn, 12000, 0, &st),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuGetProcAddress("cuInit", NULL, 12000, 0, &st),
	    CUDA_ERROR_INVALID_VALUE);
	/* A version newer than the driver's. */
	CHECK_OK(cuDriverGetVersion(&drv));
	CHECK_CU(cuGetProcAddress("cuInit", &fn, drv + 1000, 0, &st),
	    CUDA_ERROR_INVALID_VALUE);
}

/* The old entry point, reached with dlsym since cuda.h renames it. */
static void
test_old_entry_point(void)
{
	PFN_cuGetProcAddress_v11030 old;
	CUresult r;
	void *fn;

	old = (PFN_cuGetProcAddress_v11030)dlsym(lib, "cuGetProcAddress");
	CHECK(old != NULL);
	CHECK(old != (PFN_cuGetProcAddress_v11030)dlsym(lib,
	    "cuGetProcAddress_v2"));
	fn = NULL;
	CHECK_OK(old("cuMemAlloc", &fn, 12000, 0));
	CHECK(fn != NULL && fn == dlsym(lib, "cuMemAlloc_v2"));
	fn = NULL;
	CHECK_OK(old("cuMemcpyHtoD", &fn, 12000, PTDS));
	CHECK(fn != NULL && fn == dlsym(lib, "cuMemcpyHtoD_v2_ptds"));
	fn = NULL;
	CHECK_OK(old("cuStreamSynchronize", &fn, 12000, LEGACY));
	CHECK(fn != NULL && fn == dlsym(lib, "cuStreamSynchronize"));
	fn = NULL;
	CHECK_OK(old("cuGetProcAddress", &fn, 12000, 0));
	CHECK(fn != NULL && fn == dlsym(lib, "cuGetProcAddress_v2"));
	fn = (void *)&r;
	r = old("cuNoSuchFunction", &fn, 12000, 0);
	CHECK(fn == NULL && (r == CUDA_SUCCESS || r == CUDA_ERROR_NOT_FOUND));
	CHECK_CU(old(NULL, &fn, 12000, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(old("cuInit", NULL, 12000, 0), CUDA_ERROR_INVALID_VALUE);
}

/* The resolved pointers are callable functions of the right ABI. */
static void
test_call_through(void)
{
	PFN_cuMemAlloc_v3020 alloc;
	PFN_cuMemFree_v3020 mfree;
	PFN_cuMemcpyHtoD_v7000_ptds htod;
	PFN_cuMemcpyDtoH_v7000_ptds dtoh;
	PFN_cuStreamSynchronize_v7000_ptsz sync;
	CUdeviceptr dp;
	unsigned char in[512], out[512];
	void *fn;

	ct_init_ctx(0);
	CHECK_OK(cuGetProcAddress("cuMemAlloc", &fn, 12000, 0, NULL));
	alloc = (PFN_cuMemAlloc_v3020)fn;
	CHECK_OK(cuGetProcAddress("cuMemFree", &fn, 12000, 0, NULL));
	mfree = (PFN_cuMemFree_v3020)fn;
	CHECK_OK(cuGetProcAddress("cuMemcpyHtoD", &fn, 12000, PTDS, NULL));
	htod = (PFN_cuMemcpyHtoD_v7000_ptds)fn;
	CHECK_OK(cuGetProcAddress("cuMemcpyDtoH", &fn, 12000, PTDS, NULL));
	dtoh = (PFN_cuMemcpyDtoH_v7000_ptds)fn;
	CHECK_OK(cuGetProcAddress("cuStreamSynchronize", &fn, 12000, PTDS, NULL));
	sync = (PFN_cuStreamSynchronize_v7000_ptsz)fn;
	CHECK(alloc && mfree && htod && dtoh && sync);

	CHECK_OK(alloc(&dp, sizeof(in)));
	ct_fill(in, sizeof(in), 8);
	CHECK_OK(htod(dp, in, sizeof(in)));
	CHECK_OK(sync(NULL));
	CHECK_OK(dtoh(out, dp, sizeof(out)));
	CHECK(ct_check(out, sizeof(out), 8));
	CHECK_CU(htod(dp + 1, in, sizeof(in)), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(mfree(dp));
	CHECK_CU(mfree(dp), CUDA_ERROR_INVALID_VALUE);
}

int
main(int argc, char **argv)
{
	internal = argc > 1 && strcmp(argv[1], "internal") == 0;
	lib = dlopen("libcuda.so.1", RTLD_NOW);
	CHECK(lib != NULL);
	/* Entry points resolve before cuInit (the runtime finds cuInit so). */
	test_table();
	test_misuse();
	if (!internal)
		test_old_entry_point();
	/* Internal entry points are callable functions of the right ABI. */
	test_call_through();
	if (failures > 0) {
		fprintf(stderr, "%d cuGetProcAddress mismatches\n", failures);
		return 1;
	}
	return 0;
}
