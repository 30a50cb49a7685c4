/*
 * Pointer queries and the runtime's path to the driver, through the shim
 * (LD_PRELOAD=libvmm_client.so) against a real vmmd on the emulator.  Built
 * twice: test_client_pointer links the emulated libcudart.so.13;
 * test_client_pointer_static has the emulated runtime compiled in (as
 * nvcc's default static cudart), so its cudaMalloc is the program's own and
 * only its driver lookups, through cuGetProcAddress, can reach the shim.
 *
 *   served  runtime allocations of many sizes come from vmmd (the
 *           library's range table knows them, vmmd lends the memory) and
 *           hold their data; with CUEMU_PROCADDR_INTERNAL=1 the driver's
 *           cuGetProcAddress answers with internal entry points
 *   attrs   cuPointerGetAttribute(s) RANGE_START_ADDR/RANGE_SIZE and
 *           cuMemGetAddressRange on interior pointers of large (several
 *           chunks) and small blocks give the allocation, never the
 *           reservation or the chunk; the reported range holds exactly the
 *           allocation's data; a freed block is no allocation; every
 *           block is 512-byte aligned; cudaPointerGetAttributes says
 *           device memory of device 0
 */
#include <cuda.h>
#include <cuda_runtime_api.h>

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../common/check.h"
#include "testclient.h"
#include "vmm_client.h"

#define MiB (1ull << 20)
#define CKRT(call) CHECK((call) == cudaSuccess)

static char	sockdir[1024], sockpath[1100];
static pid_t	daemon_pid;

static int (*p_get_range)(const void *, void **, size_t *);
static int (*p_get_usage)(struct vmm_usage *);

static void
pattern(unsigned char *b, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (unsigned char)(seed * 7 + i * 13 + (i >> 9));
}

static void
put(const void *d, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);

	CHECK(b != NULL);
	pattern(b, n, seed);
	CKRT(cudaMemcpy((void *)d, b, n, cudaMemcpyHostToDevice));
	free(b);
}

static void
expect(const void *d, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n), *e = malloc(n);

	CHECK(b != NULL && e != NULL);
	pattern(e, n, seed);
	CKRT(cudaMemcpy(b, d, n, cudaMemcpyDeviceToHost));
	CHECK(memcmp(b, e, n) == 0);
	free(b);
	free(e);
}

static uint64_t
lent(void)
{
	struct tc *adm = tc_open(sockpath, "admin", true);
	Vmm__PoolStats ps;

	CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
	tc_close(adm);
	return ps.lent_bytes;
}

static const size_t sizes[] = { 1, 200, 256, 300, 700, 700, 1000, 1300,
    1800, 3000, 70000, 1 << 20, 3 * MiB + 5, 12 * MiB + 5 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static void
sc_served(void)
{
	void *p[NSIZES], *base;
	struct vmm_usage u;
	size_t i, size;

	CKRT(cudaSetDevice(0));
	for (i = 0; i < NSIZES; i++) {
		CKRT(cudaMalloc(&p[i], sizes[i]));
		put(p[i], sizes[i], (unsigned)i);
		/* The library made it: its range is the allocation. */
		CHECK(p_get_range(p[i], &base, &size) == 0);
		CHECK(base == p[i] && size == sizes[i]);
	}
	for (i = 0; i < NSIZES; i++)
		expect(p[i], sizes[i], (unsigned)i);
	CHECK(p_get_usage(&u) == 0 && u.allocs == NSIZES);
	CHECK(lent() == u.mapped_bytes && u.mapped_bytes >= 15 * MiB);
	for (i = 0; i < NSIZES; i++)
		CKRT(cudaFree(p[i]));
	CHECK(p_get_usage(&u) == 0 && u.in_use_bytes == 0 &&
	    u.frees == NSIZES);
}

/* The range of ptr by all three driver queries; each must say
 * [base, base + size). */
static void
check_range(CUdeviceptr ptr, CUdeviceptr base, size_t size)
{
	CUpointer_attribute at[4] = { CU_POINTER_ATTRIBUTE_RANGE_START_ADDR,
	    CU_POINTER_ATTRIBUTE_RANGE_SIZE, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
	    CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL };
	CUdeviceptr start = 0, b = 0;
	size_t len = 0, s = 0;
	unsigned int type = 0;
	int ord = -1;
	void *data[4] = { &start, &len, &type, &ord };

	CHECK_OK(cuPointerGetAttribute(&start, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR,
	    ptr));
	CHECK_OK(cuPointerGetAttribute(&len, CU_POINTER_ATTRIBUTE_RANGE_SIZE, ptr));
	CHECK(start == base && len == size);
	start = 0;
	len = 0;
	CHECK_OK(cuPointerGetAttributes(4, at, data, ptr));
	CHECK(start == base && len == size);
	CHECK(type == CU_MEMORYTYPE_DEVICE && ord == 0);
	CHECK_OK(cuMemGetAddressRange(&b, &s, ptr));
	CHECK(b == base && s == size);
}

static void
sc_attrs(void)
{
	void *p[NSIZES];
	struct cudaPointerAttributes pa;
	CUdeviceptr start;
	unsigned char *all;
	size_t i, len;

	CKRT(cudaSetDevice(0));
	for (i = 0; i < NSIZES; i++) {
		CUdeviceptr d;

		void *base;
		size_t size;

		CKRT(cudaMalloc(&p[i], sizes[i]));
		d = (CUdeviceptr)(uintptr_t)p[i];
		/* The broker's memory. */
		CHECK(p_get_range(p[i], &base, &size) == 0 && base == p[i]);
		/* cudaMalloc promises 256; textures on linear memory need
		 * textureAlignment (512). */
		CHECK(d % 512 == 0);
		put(p[i], sizes[i], (unsigned)i + 40);
		check_range(d, d, sizes[i]);
		check_range(d + sizes[i] / 2, d, sizes[i]);
		check_range(d + sizes[i] - 1, d, sizes[i]);
		memset(&pa, 0, sizeof(pa));
		CKRT(cudaPointerGetAttributes(&pa, (char *)p[i] + sizes[i] - 1));
		CHECK(pa.type == cudaMemoryTypeDevice && pa.device == 0 &&
		    pa.devicePointer == (char *)p[i] + sizes[i] - 1);
	}
	/* What the range says is the allocation, byte for byte: a copy of
	 * the whole reported range gives back exactly its data. */
	for (i = 0; i < NSIZES; i++) {
		CHECK_OK(cuPointerGetAttribute(&start,
		    CU_POINTER_ATTRIBUTE_RANGE_START_ADDR,
		    (CUdeviceptr)(uintptr_t)p[i] + sizes[i] / 3));
		CHECK_OK(cuPointerGetAttribute(&len,
		    CU_POINTER_ATTRIBUTE_RANGE_SIZE,
		    (CUdeviceptr)(uintptr_t)p[i] + sizes[i] / 3));
		CHECK(start == (CUdeviceptr)(uintptr_t)p[i] && len == sizes[i]);
		expect((void *)(uintptr_t)start, len, (unsigned)i + 40);
	}
	/* Freed: no allocation holds it any more (the memory stays mapped in
	 * the library's cache). */
	all = p[9];
	CKRT(cudaFree(all));
	CHECK(cuPointerGetAttribute(&start, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR,
	    (CUdeviceptr)(uintptr_t)all) != CUDA_SUCCESS);
	{
		CUpointer_attribute at[2] = { CU_POINTER_ATTRIBUTE_RANGE_START_ADDR,
		    CU_POINTER_ATTRIBUTE_RANGE_SIZE };
		void *data[2] = { &start, &len };

		start = 1;
		len = 1;
		CHECK_OK(cuPointerGetAttributes(2, at, data,
		    (CUdeviceptr)(uintptr_t)all + 10));
		CHECK(start == 0 && len == 0);
	}
	CHECK(cuMemGetAddressRange(&start, &len, (CUdeviceptr)(uintptr_t)all) ==
	    CUDA_ERROR_NOT_FOUND);
	/* Past a small allocation's end (its block's rounding): not it. */
	CHECK(cuMemGetAddressRange(&start, &len,
	    (CUdeviceptr)(uintptr_t)p[3] + sizes[3]) != CUDA_SUCCESS ||
	    start != (CUdeviceptr)(uintptr_t)p[3]);
	for (i = 0; i < NSIZES; i++)
		if (i != 9)
			CKRT(cudaFree(p[i]));
}

int
main(int argc, char **argv)
{
	const char *dir = getenv("VMM_SOCKET_DIR");

	CHECK(argc == 2 && dir != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s", dir);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	p_get_range = (int (*)(const void *, void **, size_t *))dlsym(
	    RTLD_DEFAULT, "vmm_get_range");
	p_get_usage = (int (*)(struct vmm_usage *))dlsym(RTLD_DEFAULT,
	    "vmm_get_usage");
	CHECK(p_get_range != NULL && p_get_usage != NULL);
	daemon_pid = tc_start_daemon(sockdir, "idle_timeout_ms = 0\n", NULL);
	if (strcmp(argv[1], "served") == 0)
		sc_served();
	else if (strcmp(argv[1], "attrs") == 0)
		sc_attrs();
	else
		CHECK(!"unknown scenario");
	CHECK(WIFEXITED(tc_stop_daemon(daemon_pid)));
	return 0;
}
