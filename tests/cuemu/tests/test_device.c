/* Devices, primary contexts, the current context and error strings. */
#include <pthread.h>

#include "cuemu_test.h"

typedef CUresult (*uuid_v1_fn)(CUuuid *, CUdevice);

static int strict;

/* cuDeviceGet, cuDeviceGetCount, cuDeviceGetName, cuDeviceTotalMem. */
static void
test_devices(int *countp)
{
	CUdevice dev;
	char name[256], small[4];
	size_t bytes = 0;
	int n = 0;

	CHECK_OK(cuDeviceGetCount(&n));
	CHECK(n >= 1);
	CHECK_CU(cuDeviceGetCount(NULL), CUDA_ERROR_INVALID_VALUE);
	*countp = n;

	CHECK_OK(cuDeviceGet(&dev, 0));
	CHECK_CU(cuDeviceGet(&dev, n), CUDA_ERROR_INVALID_DEVICE);
	CHECK_CU(cuDeviceGet(&dev, -1), CUDA_ERROR_INVALID_DEVICE);
	CHECK_CU(cuDeviceGet(NULL, 0), CUDA_ERROR_INVALID_VALUE);

	memset(name, 'x', sizeof(name));
	CHECK_OK(cuDeviceGetName(name, (int)sizeof(name), dev));
	CHECK(memchr(name, '\0', sizeof(name)) != NULL && name[0] != '\0');
	/* Shortened to len, still NUL-terminated. */
	memset(small, 'x', sizeof(small));
	CHECK_OK(cuDeviceGetName(small, (int)sizeof(small), dev));
	CHECK(small[3] == '\0' && strncmp(small, name, 3) == 0);
	CHECK_CU(cuDeviceGetName(NULL, 16, dev), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuDeviceGetName(name, (int)sizeof(name), n),
	    CUDA_ERROR_INVALID_DEVICE);

	CHECK_OK(cuDeviceTotalMem(&bytes, dev));
	CHECK(bytes > 0);
	CHECK_CU(cuDeviceTotalMem(NULL, dev), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuDeviceTotalMem(&bytes, n), CUDA_ERROR_INVALID_DEVICE);
}

/* cuDeviceGetUuid (old ABI, reached with dlsym since cuda.h renames it) and
 * cuDeviceGetUuid_v2. */
static void
test_uuid(int n, CUuuid *out)
{
	static const CUuuid zero;
	uuid_v1_fn v1;
	void *lib;
	CUuuid a, b;

	lib = dlopen("libcuda.so.1", RTLD_NOW);
	CHECK(lib != NULL);
	v1 = (uuid_v1_fn)dlsym(lib, "cuDeviceGetUuid");
	CHECK(v1 != NULL);

	CHECK_OK(cuDeviceGetUuid_v2(&a, 0));
	CHECK(memcmp(&a, &zero, sizeof(a)) != 0);
	CHECK_OK(v1(&b, 0));
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
	CHECK_OK(cuDeviceGetUuid_v2(&b, 0));
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
	CHECK_CU(cuDeviceGetUuid_v2(NULL, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(v1(NULL, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuDeviceGetUuid_v2(&b, n), CUDA_ERROR_INVALID_DEVICE);
	CHECK_CU(v1(&b, n), CUDA_ERROR_INVALID_DEVICE);
	*out = a;
	dlclose(lib);
}

/* cuDeviceGetAttribute: VMM and POSIX fd export supported; misuse. */
static void
test_attributes(int n)
{
	int v = -1;

	CHECK_OK(cuDeviceGetAttribute(&v,
	    CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, 0));
	CHECK(v == 1);
	v = -1;
	CHECK_OK(cuDeviceGetAttribute(&v,
	    CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED, 0));
	CHECK(v == 1);
	CHECK_CU(cuDeviceGetAttribute(NULL,
	    CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, 0),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_MAX, 0),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuDeviceGetAttribute(&v, (CUdevice_attribute)100000, 0),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuDeviceGetAttribute(&v,
	    CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, n),
	    CUDA_ERROR_INVALID_DEVICE);
	CHECK_CU(cuDeviceGetAttribute(&v,
	    CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, -1),
	    CUDA_ERROR_INVALID_DEVICE);
}

/* Thread body: a new thread has no current context. */
static void *
thread_ctx(void *arg)
{
	CUcontext c = (CUcontext)arg;
	CUdevice d;

	CHECK_OK(cuCtxGetCurrent(&c));
	CHECK(c == NULL);
	CHECK_CU(cuCtxGetDevice(&d), CUDA_ERROR_INVALID_CONTEXT);
	return NULL;
}

/* Primary context retain/release and the calling thread's current
 * context. */
static void
test_contexts(int n)
{
	CUcontext ctx = (CUcontext)1, ctx2 = NULL, cur;
	CUdevice d = -1;
	pthread_t t;

	/* No context yet. */
	CHECK_OK(cuCtxGetCurrent(&ctx));
	CHECK(ctx == NULL);
	CHECK_CU(cuCtxGetDevice(&d), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_CU(cuCtxSynchronize(), CUDA_ERROR_INVALID_CONTEXT);
	/* Releasing a primary context never retained. */
	CHECK_CU(cuDevicePrimaryCtxRelease(0), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_CU(cuDevicePrimaryCtxRelease(n), CUDA_ERROR_INVALID_DEVICE);

	CHECK_CU(cuDevicePrimaryCtxRetain(NULL, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuDevicePrimaryCtxRetain(&ctx, n), CUDA_ERROR_INVALID_DEVICE);
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	CHECK(ctx != NULL);
	/* Retain does not push the context. */
	CHECK_OK(cuCtxGetCurrent(&cur));
	CHECK(cur == NULL);
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx2, 0));
	CHECK(ctx2 == ctx);

	CHECK_OK(cuCtxSetCurrent(ctx));
	CHECK_OK(cuCtxGetCurrent(&cur));
	CHECK(cur == ctx);
	CHECK_OK(cuCtxGetDevice(&d));
	CHECK(d == 0);
	CHECK_CU(cuCtxGetDevice(NULL), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuCtxSynchronize());

	CHECK(pthread_create(&t, NULL, thread_ctx, NULL) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK_OK(cuCtxGetCurrent(&cur));
	CHECK(cur == ctx);

	if (strict) {
		/* Not a context at all. */
		CHECK_CU(cuCtxSetCurrent((CUcontext)(uintptr_t)0x1230),
		    CUDA_ERROR_INVALID_CONTEXT);
		CHECK_OK(cuCtxGetCurrent(&cur));
		CHECK(cur == ctx);
	}

	/* NULL unbinds. */
	CHECK_OK(cuCtxSetCurrent(NULL));
	CHECK_OK(cuCtxGetCurrent(&cur));
	CHECK(cur == NULL);
	CHECK_CU(cuCtxGetDevice(&d), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_OK(cuCtxSetCurrent(NULL));

	/* Two retains, two releases; a third release has nothing to drop. */
	CHECK_OK(cuDevicePrimaryCtxRelease(0));
	CHECK_OK(cuDevicePrimaryCtxRelease(0));
	CHECK_CU(cuDevicePrimaryCtxRelease(0), CUDA_ERROR_INVALID_CONTEXT);

	/* Usable again after a full release. */
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	CHECK_OK(cuCtxSetCurrent(ctx));
	CHECK_OK(cuCtxSynchronize());
	CHECK_OK(cuCtxSetCurrent(NULL));
	CHECK_OK(cuDevicePrimaryCtxRelease(0));
}

/* cuGetErrorName / cuGetErrorString. */
static void
test_error_strings(void)
{
	static const struct {
		CUresult r;
		const char *name;
	} tab[] = {
		{ CUDA_SUCCESS, "CUDA_SUCCESS" },
		{ CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE" },
		{ CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY" },
		{ CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED" },
		{ CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE" },
		{ CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT" },
		{ CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE" },
		{ CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND" },
		{ CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY" },
		{ CUDA_ERROR_NOT_PERMITTED, "CUDA_ERROR_NOT_PERMITTED" },
		{ CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED" },
		{ CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN" },
	};
	const char *s;
	size_t i;

	for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		s = NULL;
		CHECK_OK(cuGetErrorName(tab[i].r, &s));
		if (s == NULL || strcmp(s, tab[i].name) != 0) {
			fprintf(stderr, "cuGetErrorName(%d) = %s, want %s\n",
			    (int)tab[i].r, s ? s : "(null)", tab[i].name);
			exit(1);
		}
		s = NULL;
		CHECK_OK(cuGetErrorString(tab[i].r, &s));
		CHECK(s != NULL && s[0] != '\0');
	}
	/* Unknown code: INVALID_VALUE and *pStr set to NULL. */
	s = "x";
	CHECK_CU(cuGetErrorName((CUresult)12345, &s), CUDA_ERROR_INVALID_VALUE);
	CHECK(s == NULL);
	s = "x";
	CHECK_CU(cuGetErrorString((CUresult)12345, &s), CUDA_ERROR_INVALID_VALUE);
	CHECK(s == NULL);
	s = "x";
	CHECK_CU(cuGetErrorName((CUresult)-1, &s), CUDA_ERROR_INVALID_VALUE);
	CHECK(s == NULL);
	CHECK_CU(cuGetErrorName(CUDA_SUCCESS, NULL), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuGetErrorString(CUDA_SUCCESS, NULL), CUDA_ERROR_INVALID_VALUE);
}

int
main(void)
{
	CUuuid mine, theirs;
	int fds[2], n = 0;
	pid_t pid;

	strict = ct_is_emulator();

	/* A second process (forked before cuInit) must see the same UUID. */
	CHECK(pipe(fds) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		CHECK_OK(cuInit(0));
		CHECK_OK(cuDeviceGetUuid_v2(&theirs, 0));
		ct_write(fds[1], &theirs, sizeof(theirs));
		_exit(0);
	}
	close(fds[1]);

	CHECK_OK(cuInit(0));
	test_devices(&n);
	test_uuid(n, &mine);
	ct_read(fds[0], &theirs, sizeof(theirs));
	ct_wait_ok(pid, "uuid");
	CHECK(memcmp(&mine, &theirs, sizeof(mine)) == 0);
	close(fds[0]);

	test_attributes(n);
	test_contexts(n);
	test_error_strings();
	return 0;
}
