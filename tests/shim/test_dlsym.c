/* dlsym under the preloaded shim.  A lookup in the driver's own handle (what
 * a runtime does: dlopen("libcuda.so.1"), dlsym "cuGetProcAddress_v2") gives
 * our hook for every hooked driver ABI name, the same pointer
 * cuGetProcAddress hands out; any other name is the driver's, misses set
 * dlerror; RTLD_NEXT keeps glibc's meaning, relative to the caller (from the
 * executable the next object is the preloaded shim itself).  Eight threads
 * race the first lookups. */
#include <pthread.h>

#include <cuda.h>
#include <cudaTypedefs.h>

#include "shim_test.h"

#define NTHREADS	8
#define ROUNDS		2000

static const char *const hooked[] = {
	"cuMemAlloc_v2", "cuMemFree_v2", "cuMemAllocPitch_v2", "cuMemGetInfo_v2",
	"cuMemAllocAsync", "cuMemAllocAsync_ptsz", "cuMemFreeAsync",
	"cuMemFreeAsync_ptsz", "cuMemGetAddressRange_v2", "cuGetProcAddress",
	"cuGetProcAddress_v2", "cuMemCreate", "cuMemRelease", "cuMemMap",
	"cuMemUnmap", "cuMemRetainAllocationHandle",
	"cuMemExportToShareableHandle", "cuMemGetAllocationPropertiesFromHandle",
};
#define NHOOKED	(sizeof(hooked) / sizeof(hooked[0]))

static void *drv;

/* Every hooked name gives our hook, named as asked; others the driver's. */
static void
check_handle_lookups(void)
{
	void *fn;
	size_t i;

	for (i = 0; i < NHOOKED; i++) {
		fn = dlsym(drv, hooked[i]);
		if (!st_is_shim(fn) || strcmp(st_symbol(fn), hooked[i]) != 0) {
			fprintf(stderr, "dlsym(libcuda, %s) = %s in %s\n",
			    hooked[i], st_symbol(fn), st_owner(fn));
			exit(1);
		}
	}
	fn = dlsym(drv, "cuMemcpyHtoD_v2");
	CHECK(st_is_driver(fn));
	CHECK(strcmp(st_symbol(fn), "cuMemcpyHtoD_v2") == 0);
	fn = dlsym(drv, "cuCtxGetCurrent");
	CHECK(st_is_driver(fn));
}

static void *
racer(void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < ROUNDS; i++) {
		CHECK(st_is_shim(dlsym(drv, hooked[(size_t)i % NHOOKED])));
		CHECK(st_is_driver(dlsym(drv, "cuMemcpyDtoH_v2")));
	}
	return NULL;
}

int
main(void)
{
	PFN_cuGetProcAddress_v12000 gpa;
	pthread_t t[NTHREADS];
	void *fn, *fn2 = NULL;
	int i;

	CHECK((drv = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)) != NULL);
	for (i = 0; i < NTHREADS; i++)
		CHECK(pthread_create(&t[i], NULL, racer, NULL) == 0);
	for (i = 0; i < NTHREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	check_handle_lookups();

	/* The same pointer as cuGetProcAddress gives. */
	gpa = (PFN_cuGetProcAddress_v12000)dlsym(drv, "cuGetProcAddress_v2");
	CHECK_OK(gpa("cuMemAlloc", &fn, 13000, 0, NULL));
	CHECK(fn == dlsym(drv, "cuMemAlloc_v2"));
	CHECK_OK(gpa("cuGetProcAddress", &fn, 13000, 0, NULL));
	CHECK(fn == (void *)gpa);

	/* Misses and errors pass through untouched. */
	(void)dlerror();
	CHECK(dlsym(drv, "cuNoSuchFunction") == NULL);
	CHECK(dlerror() != NULL);
	CHECK(dlsym(drv, "cudaMalloc") == NULL);
	CHECK(dlerror() != NULL);
	CHECK(dlsym(drv, "cuMemAlloc_v2") != NULL);
	CHECK(dlerror() == NULL);

	/* RTLD_DEFAULT: the global definition, ours. */
	fn = dlsym(RTLD_DEFAULT, "cuMemAlloc_v2");
	CHECK(st_is_shim(fn) && fn == dlsym(drv, "cuMemAlloc_v2"));
	CHECK(st_is_driver(dlsym(RTLD_DEFAULT, "cuMemcpyHtoD_v2")));

#if defined(__x86_64__)
	/* RTLD_NEXT from the executable: the next object is the preloaded
	 * shim (a lookup made relative to the shim would give libcuda's). */
	fn = dlsym(RTLD_NEXT, "cuMemAlloc_v2");
	CHECK(st_is_shim(fn));
	fn2 = dlsym(RTLD_NEXT, "dlsym");
	CHECK(st_is_shim(fn2) && strcmp(st_symbol(fn2), "dlsym") == 0);
#endif
	fn = dlsym(RTLD_NEXT, "cuMemcpyHtoD_v2");
	CHECK(st_is_driver(fn));
	(void)fn2;
	printf("ok\n");
	return 0;
}
