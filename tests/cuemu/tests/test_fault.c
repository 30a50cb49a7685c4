/* Emulator-only settings: fault injection (CUEMU_FAIL), the usage ceiling
 * (CUEMU_OOM_ABOVE_MB) and the validation of every setting by cuInit.
 * Usage: cuemu_test_fault nth | all | list | via | oom | badenv */
#include <cudaTypedefs.h>

#include "cuemu_test.h"

/* CUEMU_FAIL=cuMemCreate:2:CUDA_ERROR_OUT_OF_MEMORY: exactly the second
 * call fails, and does nothing. */
static void
mode_nth(void)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h1 = 0, h2 = 0, h3 = 0, h4 = 0;
	size_t g, fr0, fr1, fr2, tot;
	pid_t pid;

	/* Calls are counted per process: a second process sees its own 2nd
	 * call fail. */
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		CHECK_OK(cuInit(0));
		CHECK_OK(cuMemCreate(&h1, 2 * MiB, &p, 0));
		CHECK_CU(cuMemCreate(&h2, 2 * MiB, &p, 0),
		    CUDA_ERROR_OUT_OF_MEMORY);
		CHECK_OK(cuMemCreate(&h3, 2 * MiB, &p, 0));
		_exit(0);
	}
	ct_wait_ok(pid, "second process");

	ct_init_ctx(0);
	g = ct_gran(0);
	CHECK_OK(cuMemGetInfo(&fr0, &tot));
	CHECK_OK(cuMemCreate(&h1, g, &p, 0));
	CHECK_OK(cuMemGetInfo(&fr1, &tot));
	CHECK_CU(cuMemCreate(&h2, g, &p, 0), CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_OK(cuMemGetInfo(&fr2, &tot));
	CHECK(fr1 == fr0 - g && fr2 == fr1);
	CHECK_OK(cuMemCreate(&h3, g, &p, 0));
	CHECK_OK(cuMemCreate(&h4, g, &p, 0));
	CHECK(h1 != 0 && h3 != 0 && h4 != 0 && h1 != h3 && h3 != h4);
	/* Other functions are not affected. */
	CHECK_OK(cuMemRelease(h1));
	CHECK_OK(cuMemRelease(h3));
	CHECK_OK(cuMemRelease(h4));
}

/* CUEMU_FAIL=cuMemMap:1+:1: every cuMemMap returns 1 (INVALID_VALUE) even
 * when valid, and maps nothing. */
static void
mode_all(void)
{
	CUmemGenericAllocationHandle h, hr;
	CUmemAllocationProp p = ct_prop(0, 1);
	CUdeviceptr va;
	size_t g;
	int i;

	ct_init_ctx(0);
	g = ct_gran(0);
	CHECK_OK(cuMemCreate(&h, g, &p, 0));
	CHECK_OK(cuMemAddressReserve(&va, g, 0, 0, 0));
	for (i = 0; i < 5; i++)
		CHECK_CU(cuMemMap(va, g, 0, h, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemRetainAllocationHandle(&hr, (void *)(uintptr_t)va),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemUnmap(va, g), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuMemAddressFree(va, g));
	CHECK_OK(cuMemRelease(h));
}

/* CUEMU_FAIL=cuMemAlloc_v2:2:2,cuMemRelease:3+:CUDA_ERROR_NOT_PERMITTED:
 * two entries, a _v2 name, a numeric and a named code. */
static void
mode_list(void)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h[5];
	CUdeviceptr a, b, c;
	size_t g;
	int i;

	ct_init_ctx(0);
	g = ct_gran(0);
	CHECK_OK(cuMemAlloc(&a, 4096));
	CHECK_CU(cuMemAlloc(&b, 4096), CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_OK(cuMemAlloc(&c, 4096));
	CHECK_OK(cuMemFree(a));
	CHECK_OK(cuMemFree(c));
	for (i = 0; i < 5; i++)
		CHECK_OK(cuMemCreate(&h[i], g, &p, 0));
	CHECK_OK(cuMemRelease(h[0]));
	CHECK_OK(cuMemRelease(h[1]));
	CHECK_CU(cuMemRelease(h[2]), CUDA_ERROR_NOT_PERMITTED);
	CHECK_CU(cuMemRelease(h[3]), CUDA_ERROR_NOT_PERMITTED);
	CHECK_CU(cuMemRelease(h[2]), CUDA_ERROR_NOT_PERMITTED);
	/* The failed releases did nothing: the handles are still alive. */
	CHECK_OK(cuMemGetAllocationPropertiesFromHandle(&p, h[2]));
	CHECK_OK(cuMemGetAllocationPropertiesFromHandle(&p, h[4]));
}

/* CUEMU_FAIL=cuMemCreate:2:CUDA_ERROR_OUT_OF_MEMORY,cuMemcpyHtoD:2+:999:
 * calls that fail validation count too, and calls through a
 * cuGetProcAddress pointer or a _ptds variant count as the function. */
static void
mode_via(void)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h;
	PFN_cuMemcpyHtoD_v7000_ptds htod;
	CUdeviceptr dp;
	unsigned char b[16] = { 0 };
	void *fn = NULL;

	ct_init_ctx(0);
	CHECK_CU(cuMemCreate(&h, 0, &p, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemCreate(&h, 2 * MiB, &p, 0), CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_OK(cuMemCreate(&h, 2 * MiB, &p, 0));
	CHECK_OK(cuMemRelease(h));

	CHECK_OK(cuMemAlloc(&dp, sizeof(b)));
	CHECK_OK(cuMemcpyHtoD(dp, b, sizeof(b)));
	CHECK_OK(cuGetProcAddress("cuMemcpyHtoD", &fn, 12000,
	    CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, NULL));
	CHECK(fn != NULL);
	htod = (PFN_cuMemcpyHtoD_v7000_ptds)fn;
	CHECK_CU(htod(dp, b, sizeof(b)), CUDA_ERROR_UNKNOWN);
	CHECK_CU(cuMemcpyHtoD(dp, b, sizeof(b)), CUDA_ERROR_UNKNOWN);
	CHECK_OK(cuMemFree(dp));
}

/* CUEMU_OOM_ABOVE_MB=8: usage may reach 8 MiB, not exceed it. */
static void
mode_oom(void)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h, h2;
	CUdeviceptr dp;
	size_t fr, tot, dtot;

	ct_init_ctx(0);
	CHECK_OK(cuMemCreate(&h, 8 * MiB, &p, 0));
	CHECK_CU(cuMemCreate(&h2, 2 * MiB, &p, 0), CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_CU(cuMemAlloc(&dp, 4096), CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_CU(cuMemAllocAsync(&dp, 4096, NULL), CUDA_ERROR_OUT_OF_MEMORY);
	/* The real capacity is unchanged. */
	CHECK_OK(cuMemGetInfo(&fr, &tot));
	CHECK_OK(cuDeviceTotalMem(&dtot, 0));
	CHECK(tot == dtot && tot > 8 * MiB);
	CHECK_OK(cuMemRelease(h));
	CHECK_OK(cuMemCreate(&h, 6 * MiB, &p, 0));
	CHECK_OK(cuMemAlloc(&dp, MiB));
	CHECK_CU(cuMemCreate(&h2, 2 * MiB, &p, 0), CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_OK(cuMemFree(dp));
	CHECK_OK(cuMemCreate(&h2, 2 * MiB, &p, 0));
	CHECK_OK(cuMemRelease(h));
	CHECK_OK(cuMemRelease(h2));
}

/* In a child that never initialised: set var=val and expect cuInit to
 * return want (and, on failure, leave the driver uninitialised). */
static void
try_env(const char *var, const char *val, CUresult want)
{
	pid_t pid = fork();
	CUresult r;
	int n;

	CHECK(pid >= 0);
	if (pid == 0) {
		/* Each child has a private instance: nothing is shared. */
		setenv("CUEMU_INSTANCE", "vmmtest-cuemu_fault_badenv-child", 1);
		if (val != NULL)
			setenv(var, val, 1);
		else
			unsetenv(var);
		r = cuInit(0);
		if (r != want) {
			fprintf(stderr, "%s=%s: cuInit returned %d (%s), expected %d\n",
			    var, val ? val : "(unset)", (int)r, check_cu_name(r),
			    (int)want);
			_exit(1);
		}
		if (want != CUDA_SUCCESS &&
		    cuDeviceGetCount(&n) != CUDA_ERROR_NOT_INITIALIZED) {
			fprintf(stderr, "%s=%s: driver usable after failed cuInit\n",
			    var, val);
			_exit(1);
		}
		_exit(0);
	}
	ct_wait_ok(pid, var);
}

/* Every setting: valid values accepted, invalid ones refused by cuInit. */
static void
mode_badenv(void)
{
	static const struct {
		const char *var, *val;
		int ok;
	} tab[] = {
		{ "CUEMU_DEVICES", "1", 1 },
		{ "CUEMU_DEVICES", "16", 1 },
		{ "CUEMU_DEVICES", "0", 0 },
		{ "CUEMU_DEVICES", "17", 0 },
		{ "CUEMU_DEVICES", "2x", 0 },
		{ "CUEMU_DEVICES", "-1", 0 },
		{ "CUEMU_MEM_MB", "64", 1 },
		{ "CUEMU_MEM_MB", "1048576", 1 },
		{ "CUEMU_MEM_MB", "63", 0 },
		{ "CUEMU_MEM_MB", "1048577", 0 },
		{ "CUEMU_MEM_MB", "abc", 0 },
		{ "CUEMU_MEM_MB", "64MB", 0 },
		{ "CUEMU_MEM_MB", "99999999999999999999999", 0 },
		{ "CUEMU_GRANULARITY_KB", "4", 1 },
		{ "CUEMU_GRANULARITY_KB", "1048576", 1 },
		{ "CUEMU_GRANULARITY_KB", "3", 0 },
		{ "CUEMU_GRANULARITY_KB", "2", 0 },
		{ "CUEMU_GRANULARITY_KB", "96", 0 },
		{ "CUEMU_GRANULARITY_KB", "2097152", 0 },
		{ "CUEMU_ASYNC_DELAY_US", "0", 1 },
		{ "CUEMU_ASYNC_DELAY_US", "10000000", 1 },
		{ "CUEMU_ASYNC_DELAY_US", "10000001", 0 },
		{ "CUEMU_ASYNC_DELAY_US", "5ms", 0 },
		{ "CUEMU_ASYNC_DELAY_US", "-1", 0 },
		{ "CUEMU_OOM_ABOVE_MB", "8", 1 },
		{ "CUEMU_OOM_ABOVE_MB", "abc", 0 },
		{ "CUEMU_OOM_ABOVE_MB", "-5", 0 },
		{ "CUEMU_FAIL", "cuMemCreate:1:2", 1 },
		{ "CUEMU_FAIL", "cuMemCreate:3+:CUDA_ERROR_OUT_OF_MEMORY", 1 },
		{ "CUEMU_FAIL", "cuMemMap:1:1,cuMemUnmap:2+:2", 1 },
		{ "CUEMU_FAIL", "garbage", 0 },
		{ "CUEMU_FAIL", "cuMemCreate", 0 },
		{ "CUEMU_FAIL", "cuMemCreate:1", 0 },
		{ "CUEMU_FAIL", "cuMemCreate:0:2", 0 },
		{ "CUEMU_FAIL", "cuMemCreate:x:2", 0 },
		{ "CUEMU_FAIL", "cuMemCreate:1:CUDA_ERROR_NO_SUCH_THING", 0 },
		{ "CUEMU_FAIL", "cuMemCreate:1:2:3", 0 },
		{ "CUEMU_PHANTOM", "0", 1 },
		{ "CUEMU_PHANTOM", "1", 1 },
		{ "CUEMU_PHANTOM", "2", 0 },
		{ "CUEMU_PHANTOM", "yes", 0 },
		{ "CUEMU_PHANTOM", "", 0 },
		{ "CUEMU_LATENCY", "off", 1 },
		{ "CUEMU_LATENCY", "a100", 1 },
		{ "CUEMU_LATENCY", "fast", 0 },
		{ "CUEMU_LATENCY_SCALE", "chunk", 1 },
		{ "CUEMU_LATENCY_SCALE", "granule", 1 },
		{ "CUEMU_LATENCY_SCALE", "granules", 0 },
		{ "CUEMU_LATENCY_SCALE", "", 0 },
		{ "CUEMU_INSTANCE", "bad/name", 0 },
		{ "CUEMU_INSTANCE", "bad name", 0 },
		{ "CUEMU_INSTANCE", "ok-name_1.x", 1 },
	};
	char name[66];
	size_t i;

	for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		try_env(tab[i].var, tab[i].val,
		    tab[i].ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE);
	/* Instance names are 1-64 characters. */
	memset(name, 'n', 64);
	name[64] = '\0';
	try_env("CUEMU_INSTANCE", name, CUDA_SUCCESS);
	name[64] = 'n';
	name[65] = '\0';
	try_env("CUEMU_INSTANCE", name, CUDA_ERROR_INVALID_VALUE);
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s nth|all|list|via|oom|badenv\n", argv[0]);
		return 2;
	}
	if (strcmp(argv[1], "nth") == 0)
		mode_nth();
	else if (strcmp(argv[1], "all") == 0)
		mode_all();
	else if (strcmp(argv[1], "list") == 0)
		mode_list();
	else if (strcmp(argv[1], "via") == 0)
		mode_via();
	else if (strcmp(argv[1], "oom") == 0)
		mode_oom();
	else if (strcmp(argv[1], "badenv") == 0)
		mode_badenv();
	else
		return 2;
	return 0;
}
