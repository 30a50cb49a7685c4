/* cuPointerGetAttribute(s) and cuMemGetAddressRange on classic memory,
 * VMM memory (several mappings back to back in one reservation) and plain
 * host memory. */
#include "cuemu_test.h"

static size_t g;

/* Query one attribute of an integer-sized type. */
static unsigned long long
attr_u64(CUpointer_attribute a, CUdeviceptr p)
{
	unsigned long long v = 0xdeadbeefULL;

	CHECK_OK(cuPointerGetAttribute(&v, a, p));
	return v;
}

/* Query one int attribute. */
static int
attr_int(CUpointer_attribute a, CUdeviceptr p)
{
	int v = -7;

	CHECK_OK(cuPointerGetAttribute(&v, a, p));
	return v;
}

/* Query one boolean attribute (a bool or an int may be written: look at
 * the low byte of a sentinel-filled int). */
static int
attr_bool(CUpointer_attribute a, CUdeviceptr p)
{
	unsigned int v = 0x7f7f7f7fu;

	CHECK_OK(cuPointerGetAttribute(&v, a, p));
	CHECK((v & 0xffu) <= 1);
	return (int)(v & 0xffu);
}

/* Classic allocation: range, type, ordinal, mapped. */
static void
test_classic(void)
{
	CUpointer_attribute at[4] = { CU_POINTER_ATTRIBUTE_RANGE_START_ADDR,
	    CU_POINTER_ATTRIBUTE_RANGE_SIZE, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
	    CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL };
	CUdeviceptr dp, start = 0;
	size_t size = 0;
	unsigned int mt = 0;
	int ord = -1;
	void *data[4] = { &start, &size, &mt, &ord };

	CHECK_OK(cuMemAlloc(&dp, MiB));
	CHECK(attr_u64(CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, dp + 777) == dp);
	CHECK(attr_u64(CU_POINTER_ATTRIBUTE_RANGE_SIZE, dp + 777) == MiB);
	CHECK(attr_int(CU_POINTER_ATTRIBUTE_MEMORY_TYPE, dp) ==
	    CU_MEMORYTYPE_DEVICE);
	CHECK(attr_int(CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, dp + MiB - 1) == 0);
	CHECK(attr_bool(CU_POINTER_ATTRIBUTE_MAPPED, dp) == 1);

	CHECK_OK(cuPointerGetAttributes(4, at, data, dp + 5));
	CHECK(start == dp && size == MiB && mt == CU_MEMORYTYPE_DEVICE &&
	    ord == 0);

	CHECK_CU(cuPointerGetAttribute(NULL, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
	    dp), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuPointerGetAttribute(&mt, (CUpointer_attribute)9999, dp),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuPointerGetAttributes(1, at, NULL, dp),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuPointerGetAttributes(1, NULL, data, dp),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuMemFree(dp));
	/* A freed allocation is no CUDA pointer any more. */
	CHECK_CU(cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
	    dp), CUDA_ERROR_INVALID_VALUE);
}

/* VMM: the range is the reservation, the mapping is the single mapping
 * that holds the address; cuMemGetAddressRange gives the mapping too. */
static void
test_vmm(void)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemAccessDesc rw = ct_rw(0);
	CUmemGenericAllocationHandle h1, h2, h3;
	CUpointer_attribute at[3] = { CU_POINTER_ATTRIBUTE_MAPPED,
	    CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR,
	    CU_POINTER_ATTRIBUTE_MAPPING_SIZE };
	CUdeviceptr res, base = 0, mbase = 0;
	size_t rsize = 8 * g, sz = 0, msize = 0;
	unsigned int mapped = 0x7f7f7f7fu;
	void *data[3] = { &mapped, &mbase, &msize };

	CHECK_OK(cuMemCreate(&h1, g, &p, 0));
	CHECK_OK(cuMemCreate(&h2, 2 * g, &p, 0));
	CHECK_OK(cuMemCreate(&h3, g, &p, 0));
	CHECK_OK(cuMemAddressReserve(&res, rsize, 0, 0, 0));
	/* [h1][h2 h2][h3] then 4 granules unmapped. */
	CHECK_OK(cuMemMap(res, g, 0, h1, 0));
	CHECK_OK(cuMemMap(res + g, 2 * g, 0, h2, 0));
	CHECK_OK(cuMemMap(res + 3 * g, g, 0, h3, 0));
	CHECK_OK(cuMemSetAccess(res, 4 * g, &rw, 1));

	CHECK_OK(cuMemGetAddressRange(&base, &sz, res + g - 1));
	CHECK(base == res && sz == g);
	CHECK_OK(cuMemGetAddressRange(&base, &sz, res + g));
	CHECK(base == res + g && sz == 2 * g);
	CHECK_OK(cuMemGetAddressRange(&base, &sz, res + 3 * g - 1));
	CHECK(base == res + g && sz == 2 * g);
	CHECK_OK(cuMemGetAddressRange(&base, &sz, res + 3 * g + 100));
	CHECK(base == res + 3 * g && sz == g);
	CHECK_CU(cuMemGetAddressRange(&base, &sz, res + 4 * g),
	    CUDA_ERROR_NOT_FOUND);

	CHECK(attr_u64(CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, res + 2 * g) ==
	    res);
	CHECK(attr_u64(CU_POINTER_ATTRIBUTE_RANGE_SIZE, res + 2 * g) == rsize);
	CHECK(attr_u64(CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR, res + 2 * g) ==
	    res + g);
	CHECK(attr_u64(CU_POINTER_ATTRIBUTE_MAPPING_SIZE, res + 2 * g) ==
	    2 * g);
	CHECK(attr_u64(CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR, res + 3 * g) ==
	    res + 3 * g);
	CHECK(attr_u64(CU_POINTER_ATTRIBUTE_MAPPING_SIZE, res) == g);
	CHECK(attr_bool(CU_POINTER_ATTRIBUTE_MAPPED, res + 3 * g) == 1);
	CHECK(attr_int(CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, res + g) == 0);
	CHECK(attr_int(CU_POINTER_ATTRIBUTE_MEMORY_TYPE, res + g) ==
	    CU_MEMORYTYPE_DEVICE);

	CHECK_OK(cuPointerGetAttributes(3, at, data, res + g + 5));
	CHECK((mapped & 0xff) == 1 && mbase == res + g && msize == 2 * g);
	/* The unmapped tail of the reservation is not mapped. */
	mapped = 0x7f7f7f7fu;
	CHECK_OK(cuPointerGetAttributes(1, at, data, res + 5 * g));
	CHECK((mapped & 0xff) == 0);

	/* After cuMemUnmap the address is no longer mapped. */
	CHECK_OK(cuMemUnmap(res + g, 2 * g));
	mapped = 0x7f7f7f7fu;
	CHECK_OK(cuPointerGetAttributes(1, at, data, res + g));
	CHECK((mapped & 0xff) == 0);
	CHECK_CU(cuMemGetAddressRange(&base, &sz, res + g),
	    CUDA_ERROR_NOT_FOUND);
	CHECK_OK(cuMemGetAddressRange(&base, &sz, res));
	CHECK(base == res && sz == g);

	CHECK_OK(cuMemUnmap(res, g));
	CHECK_OK(cuMemUnmap(res + 3 * g, g));
	CHECK_OK(cuMemAddressFree(res, rsize));
	CHECK_OK(cuMemRelease(h1));
	CHECK_OK(cuMemRelease(h2));
	CHECK_OK(cuMemRelease(h3));
}

/* Host memory unknown to CUDA: cuPointerGetAttribute fails,
 * cuPointerGetAttributes succeeds with zero values. */
static void
test_host(void)
{
	CUpointer_attribute at[4] = { CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
	    CU_POINTER_ATTRIBUTE_MAPPED, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR,
	    CU_POINTER_ATTRIBUTE_RANGE_SIZE };
	char *host = malloc(4096);
	unsigned int mt = 77, mapped = 0x7f7f7f7fu;
	CUdeviceptr start = 77;
	size_t size = 77;
	void *data[4] = { &mt, &mapped, &start, &size };
	CUdeviceptr hp;

	CHECK(host != NULL);
	hp = (CUdeviceptr)(uintptr_t)host;
	CHECK_CU(cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
	    hp), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuPointerGetAttribute(&start,
	    CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, hp), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuPointerGetAttributes(4, at, data, hp));
	CHECK(mt == 0 && (mapped & 0xff) == 0 && start == 0 && size == 0);
	CHECK_CU(cuMemGetAddressRange(&start, &size, hp), CUDA_ERROR_NOT_FOUND);
	free(host);
}

int
main(void)
{
	ct_init_ctx(0);
	g = ct_gran(0);
	test_classic();
	test_host();
	test_vmm();
	return 0;
}
