/* Virtual memory management: granularity, cuMemCreate/Release, address
 * reservations, cuMemMap/Unmap (whole and partial handles), access control,
 * handle queries.
 * Usage: cuemu_test_vmm [minimum-granularity-KiB [recommended-KiB]]
 * (default 2048; the recommended one is then only checked to be a multiple
 * of the minimum). */
#include <sys/mman.h>

#include "cuemu_test.h"

static int strict;
static size_t g;

/* cuMemGetAllocationGranularity: value and misuse. */
static void
test_granularity(size_t expect, size_t expect_rec)
{
	CUmemAllocationProp p = ct_prop(0, 1), bad;
	size_t min = 0, rec = 0;

	CHECK_OK(cuMemGetAllocationGranularity(&min, &p,
	    CU_MEM_ALLOC_GRANULARITY_MINIMUM));
	CHECK(min == expect);
	CHECK_OK(cuMemGetAllocationGranularity(&rec, &p,
	    CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
	CHECK(rec >= min && rec % min == 0);
	CHECK(expect_rec == 0 || rec == expect_rec);

	CHECK_CU(cuMemGetAllocationGranularity(NULL, &p,
	    CU_MEM_ALLOC_GRANULARITY_MINIMUM), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemGetAllocationGranularity(&min, NULL,
	    CU_MEM_ALLOC_GRANULARITY_MINIMUM), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemGetAllocationGranularity(&min, &p,
	    (CUmemAllocationGranularity_flags)7), CUDA_ERROR_INVALID_VALUE);
	/* INVALID_DEVICE is not among this function's documented codes. */
	bad = ct_prop(99, 1);
	CHECK_CU(cuMemGetAllocationGranularity(&min, &bad,
	    CU_MEM_ALLOC_GRANULARITY_MINIMUM), CUDA_ERROR_INVALID_VALUE);
	bad = ct_prop(0, 1);
	bad.type = CU_MEM_ALLOCATION_TYPE_INVALID;
	CHECK_CU(cuMemGetAllocationGranularity(&min, &bad,
	    CU_MEM_ALLOC_GRANULARITY_MINIMUM), CUDA_ERROR_INVALID_VALUE);
}

/* cuMemCreate / cuMemRelease / cuMemGetAllocationPropertiesFromHandle. */
static void
test_create(void)
{
	CUmemAllocationProp p = ct_prop(0, 1), q, got;
	CUmemGenericAllocationHandle h = 0, h2 = 0;

	CHECK_CU(cuMemCreate(&h, g + g / 2, &p, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemCreate(&h, g / 2, &p, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemCreate(&h, 0, &p, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemCreate(&h, g, &p, 1), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemCreate(&h, g, NULL, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemCreate(NULL, g, &p, 0), CUDA_ERROR_INVALID_VALUE);
	q = ct_prop(99, 1);
	CHECK_CU(cuMemCreate(&h, g, &q, 0), CUDA_ERROR_INVALID_DEVICE);
	q = ct_prop(-1, 1);
	CHECK_CU(cuMemCreate(&h, g, &q, 0), CUDA_ERROR_INVALID_DEVICE);
	q = ct_prop(0, 1);
	q.type = CU_MEM_ALLOCATION_TYPE_INVALID;
	CHECK_CU(cuMemCreate(&h, g, &q, 0), CUDA_ERROR_INVALID_VALUE);
	/* Documented: HOST_NUMA_CURRENT is rejected, and HOST allocations
	 * cannot request an export handle type. */
	q = ct_prop(0, 0);
	q.location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT;
	CHECK_CU(cuMemCreate(&h, g, &q, 0), CUDA_ERROR_INVALID_VALUE);
	q = ct_prop(0, 1);
	q.location.type = CU_MEM_LOCATION_TYPE_HOST;
	CHECK_CU(cuMemCreate(&h, g, &q, 0), CUDA_ERROR_INVALID_VALUE);

	CHECK_OK(cuMemCreate(&h, g, &p, 0));
	CHECK(h != 0);
	CHECK_OK(cuMemCreate(&h2, 3 * g, &p, 0));
	CHECK(h2 != 0 && h2 != h);

	memset(&got, 0xff, sizeof(got));
	CHECK_OK(cuMemGetAllocationPropertiesFromHandle(&got, h));
	CHECK(got.type == CU_MEM_ALLOCATION_TYPE_PINNED);
	CHECK(got.location.type == CU_MEM_LOCATION_TYPE_DEVICE);
	CHECK(got.location.id == 0);
	CHECK(got.requestedHandleTypes == CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
	CHECK_CU(cuMemGetAllocationPropertiesFromHandle(NULL, h),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuMemRelease(h2));
	CHECK_OK(cuMemRelease(h));

	/* Without an export type, the handle says so. */
	q = ct_prop(0, 0);
	CHECK_OK(cuMemCreate(&h, g, &q, 0));
	memset(&got, 0xff, sizeof(got));
	CHECK_OK(cuMemGetAllocationPropertiesFromHandle(&got, h));
	CHECK(got.requestedHandleTypes == CU_MEM_HANDLE_TYPE_NONE);
	CHECK_OK(cuMemRelease(h));

	if (strict) {
		/* Stale and bogus handles are an error, not undefined. */
		CHECK_CU(cuMemRelease(h), CUDA_ERROR_INVALID_VALUE);
		CHECK_CU(cuMemRelease(0), CUDA_ERROR_INVALID_VALUE);
		CHECK_CU(cuMemGetAllocationPropertiesFromHandle(&got, h),
		    CUDA_ERROR_INVALID_VALUE);
	}
}

/* cuMemAddressReserve / cuMemAddressFree. */
static void
test_reserve(void)
{
	CUdeviceptr a = 0, b = 0, c = 0;

	CHECK_CU(cuMemAddressReserve(&a, 0, 0, 0, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAddressReserve(&a, g + 1, 0, 0, 0),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAddressReserve(&a, g, 3, 0, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAddressReserve(&a, g, 3 * 4096, 0, 0),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAddressReserve(&a, g, 0, 0, 1), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAddressReserve(&a, g, 0, (CUdeviceptr)12345, 0),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAddressReserve(NULL, g, 0, 0, 0), CUDA_ERROR_INVALID_VALUE);

	CHECK_OK(cuMemAddressReserve(&a, 4 * g, 0, 0, 0));
	CHECK(a != 0 && a % g == 0);
	CHECK_OK(cuMemAddressReserve(&b, 2 * g, 8 * g, 0, 0));
	CHECK(b != 0 && b % (8 * g) == 0);
	/* Reservations never overlap. */
	CHECK(b + 2 * g <= a || a + 4 * g <= b);
	/* A hint is only a hint, but the result is still a fresh range. */
	CHECK_OK(cuMemAddressReserve(&c, g, 0, a, 0));
	CHECK(c != 0 && c % g == 0 && (c + g <= a || a + 4 * g <= c));

	CHECK_CU(cuMemAddressFree(a, 2 * g), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAddressFree(a, 8 * g), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAddressFree(a + g, 3 * g), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAddressFree(a + g, g), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuMemAddressFree(a, 4 * g));
	CHECK_CU(cuMemAddressFree(a, 4 * g), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuMemAddressFree(b, 2 * g));
	CHECK_OK(cuMemAddressFree(c, g));
}

/* In a child: touch ptr on the host and expect to die of SIGSEGV. */
static void
expect_host_fault(CUdeviceptr ptr, int do_write)
{
	pid_t pid = fork();
	int st;

	CHECK(pid >= 0);
	if (pid == 0) {
		volatile unsigned char *p;

		ct_prepare_to_crash();
		p = (volatile unsigned char *)(uintptr_t)ptr;
		if (do_write)
			*p = 1;
		else
			(void)*p;
		_exit(0);
	}
	st = ct_wait(pid);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGSEGV) {
		fprintf(stderr, "host %s of %#llx before cuMemSetAccess: child %s "
		    "%d, expected SIGSEGV\n", do_write ? "write" : "read",
		    (unsigned long long)ptr, WIFEXITED(st) ? "exited" : "signal",
		    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		exit(1);
	}
}

/* cuMemMap, cuMemSetAccess, cuMemGetAccess, cuMemUnmap, cuMemAddressFree
 * on mapped ranges, cuMemRetainAllocationHandle. */
static void
test_map(void)
{
	CUmemAllocationProp p = ct_prop(0, 1), got;
	CUmemAccessDesc rw = ct_rw(0), ro = ct_rw(0), bad;
	CUmemLocation loc = rw.location, badloc;
	CUmemGenericAllocationHandle h1, h2, h3, hr, stale;
	CUdeviceptr res, gone, va2, va3;
	unsigned long long fl;
	unsigned char *in, *out;
	size_t total = 3 * g;

	in = malloc(total);
	out = malloc(total);
	CHECK(in != NULL && out != NULL);

	CHECK_OK(cuMemCreate(&h1, g, &p, 0));
	CHECK_OK(cuMemCreate(&h2, 2 * g, &p, 0));
	CHECK_OK(cuMemAddressReserve(&res, 4 * g, 0, 0, 0));
	CHECK_OK(cuMemAddressReserve(&gone, 4 * g, 0, 0, 0));
	CHECK_OK(cuMemAddressFree(gone, 4 * g));
	/* Keep the freed range from being handed out again by a later
	 * reservation (the kernel may reuse the address): a host mapping of
	 * ours holds it, so "gone" stays an address no reservation covers. */
	CHECK(mmap((void *)(uintptr_t)gone, 4 * g, PROT_NONE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) ==
	    (void *)(uintptr_t)gone);

	/* Misuse of cuMemMap. */
	CHECK_CU(cuMemMap(res, g, g, h2, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemMap(res, 2 * g, 0, h1, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemMap(res, g, 0, h1, 1), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemMap(res + 4096, g, 0, h1, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemMap(gone, g, 0, h1, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemMap(res + 3 * g, 2 * g, 0, h2, 0), CUDA_ERROR_INVALID_VALUE);
	if (strict) {
		CHECK_OK(cuMemCreate(&stale, g, &p, 0));
		CHECK_OK(cuMemRelease(stale));
		CHECK_CU(cuMemMap(res, g, 0, stale, 0), CUDA_ERROR_INVALID_VALUE);
	}

	/* h1 then h2, back to back. */
	CHECK_OK(cuMemMap(res, g, 0, h1, 0));
	CHECK_CU2(cuMemMap(res, g, 0, h1, 0), CUDA_ERROR_INVALID_VALUE,
	    CUDA_ERROR_NOT_PERMITTED);
	CHECK_CU2(cuMemMap(res, 2 * g, 0, h2, 0), CUDA_ERROR_INVALID_VALUE,
	    CUDA_ERROR_NOT_PERMITTED);
	CHECK_OK(cuMemMap(res + g, 2 * g, 0, h2, 0));

	/* Mapped is not accessible. */
	fl = 99;
	CHECK_OK(cuMemGetAccess(&fl, &loc, res + g));
	CHECK(fl == CU_MEM_ACCESS_FLAGS_PROT_NONE);
	expect_host_fault(res, 0);
	expect_host_fault(res + g + 4096, 1);
	ct_fill(in, total, 1);
	if (strict) {
		CHECK_CU(cuMemcpyHtoD(res, in, 4096), CUDA_ERROR_INVALID_VALUE);
		CHECK_CU(cuMemcpyDtoH(out, res, 4096), CUDA_ERROR_INVALID_VALUE);
	}

	/* cuMemSetAccess needs a fully mapped range and valid descriptors. */
	CHECK_CU(cuMemSetAccess(res, 4 * g, &rw, 1), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemSetAccess(res + 3 * g, g, &rw, 1), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemSetAccess(gone, g, &rw, 1), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemSetAccess(res, total, NULL, 1), CUDA_ERROR_INVALID_VALUE);
	bad = rw;
	bad.location.id = 99;
	CHECK_CU2(cuMemSetAccess(res, total, &bad, 1), CUDA_ERROR_INVALID_DEVICE,
	    CUDA_ERROR_INVALID_VALUE);
	bad = rw;
	bad.flags = 2;
	CHECK_CU(cuMemSetAccess(res, total, &bad, 1), CUDA_ERROR_INVALID_VALUE);

	/* One cuMemSetAccess over both mappings, one copy across them. */
	CHECK_OK(cuMemSetAccess(res, total, &rw, 1));
	CHECK_OK(cuMemGetAccess(&fl, &loc, res));
	CHECK(fl == CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
	CHECK_OK(cuMemGetAccess(&fl, &loc, res + total - 1));
	CHECK(fl == CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
	CHECK_CU(cuMemGetAccess(&fl, &loc, res + total), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemGetAccess(&fl, &loc, gone), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemGetAccess(NULL, &loc, res), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemGetAccess(&fl, NULL, res), CUDA_ERROR_INVALID_VALUE);
	badloc = loc;
	badloc.id = 99;
	CHECK_CU2(cuMemGetAccess(&fl, &badloc, res), CUDA_ERROR_INVALID_DEVICE,
	    CUDA_ERROR_INVALID_VALUE);

	CHECK_OK(cuMemcpyHtoD(res, in, total));
	memset(out, 0, total);
	CHECK_OK(cuMemcpyDtoH(out, res, total));
	CHECK(ct_check(out, total, 1));
	memset(out, 0, total);
	CHECK_OK(cuMemcpyDtoH(out, res + g - 4096, 8192));
	CHECK(memcmp(out, in + g - 4096, 8192) == 0);
	/* cuMemsetD8 across the boundary of the two mappings. */
	CHECK_OK(cuMemsetD8(res + g - 100, 0x5a, 200));
	CHECK_OK(cuMemcpyDtoH(out, res + g - 200, 400));
	CHECK(memcmp(out, in + g - 200, 100) == 0);
	CHECK(out[100] == 0x5a && out[299] == 0x5a);
	CHECK(memcmp(out + 300, in + g + 100, 100) == 0);
	CHECK_OK(cuMemcpyHtoD(res + g - 100, in + g - 100, 200));
	CHECK_CU(cuMemsetD8(res + total - 100, 0, 200), CUDA_ERROR_INVALID_VALUE);
	/* Running past the mapped part of the reservation. */
	CHECK_CU(cuMemcpyHtoD(res + total - 4096, in, 8192),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemcpyDtoH(out, res + total - 4096, 8192),
	    CUDA_ERROR_INVALID_VALUE);

	/* The same handle mapped twice shows the same bytes. */
	CHECK_OK(cuMemAddressReserve(&va2, g, 0, 0, 0));
	CHECK_OK(cuMemMap(va2, g, 0, h1, 0));
	CHECK_OK(cuMemSetAccess(va2, g, &rw, 1));
	CHECK_OK(cuMemcpyDtoH(out, va2, g));
	CHECK(memcmp(out, in, g) == 0);
	ct_fill(in, g, 2);
	CHECK_OK(cuMemcpyHtoD(va2, in, g));
	CHECK_OK(cuMemcpyDtoH(out, res, g));
	CHECK(ct_check(out, g, 2));

	/* cuMemRetainAllocationHandle: same value, paired with a release. */
	CHECK_OK(cuMemRetainAllocationHandle(&hr, (void *)(uintptr_t)(res + g + 123)));
	CHECK(hr == h2);
	CHECK_OK(cuMemRelease(hr));
	CHECK_OK(cuMemRetainAllocationHandle(&hr, (void *)(uintptr_t)(va2 + 5)));
	CHECK(hr == h1);
	CHECK_OK(cuMemRelease(hr));
	CHECK_CU(cuMemRetainAllocationHandle(&hr, (void *)(uintptr_t)(res + total)),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemRetainAllocationHandle(&hr, (void *)(uintptr_t)gone),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemRetainAllocationHandle(NULL, (void *)(uintptr_t)res),
	    CUDA_ERROR_INVALID_VALUE);
	/* The retains were balanced: both handles are still alive. */
	CHECK_OK(cuMemGetAllocationPropertiesFromHandle(&got, h1));
	CHECK_OK(cuMemGetAllocationPropertiesFromHandle(&got, h2));

	/* Read-only access: reads work, writes are refused. */
	CHECK_OK(cuMemCreate(&h3, g, &p, 0));
	CHECK_OK(cuMemAddressReserve(&va3, g, 0, 0, 0));
	CHECK_OK(cuMemMap(va3, g, 0, h3, 0));
	ro.flags = CU_MEM_ACCESS_FLAGS_PROT_READ;
	CHECK_OK(cuMemSetAccess(va3, g, &ro, 1));
	CHECK_OK(cuMemGetAccess(&fl, &loc, va3));
	CHECK(fl == CU_MEM_ACCESS_FLAGS_PROT_READ);
	CHECK_OK(cuMemcpyDtoH(out, va3, 4096));
	if (strict) {
		CHECK_CU(cuMemcpyHtoD(va3, in, 4096), CUDA_ERROR_INVALID_VALUE);
		CHECK_CU(cuMemsetD8(va3, 0, 4096), CUDA_ERROR_INVALID_VALUE);
		expect_host_fault(va3, 1);
	}
	CHECK_OK(cuMemSetAccess(va3, g, &rw, 1));
	CHECK_OK(cuMemcpyHtoD(va3, in, 4096));
	/* Releasing a mapped handle is allowed; the mapping keeps it. */
	CHECK_OK(cuMemRelease(h3));
	CHECK_OK(cuMemcpyDtoH(out, va3, 4096));
	CHECK(memcmp(out, in, 4096) == 0);
	CHECK_OK(cuMemUnmap(va3, g));
	CHECK_OK(cuMemAddressFree(va3, g));

	/* cuMemUnmap: only whole mappings. */
	CHECK_CU(cuMemUnmap(res + 2 * g, g), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemUnmap(res + g, g), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemUnmap(res + 3 * g, g), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemUnmap(gone, g), CUDA_ERROR_INVALID_VALUE);
	/* A failed partial unmap changed nothing. */
	CHECK_OK(cuMemcpyDtoH(out, res + g, 2 * g));
	CHECK(memcmp(out, in + g, 2 * g) == 0);

	/* cuMemAddressFree refuses a reservation that still has mappings. */
	CHECK_CU2(cuMemAddressFree(res, 4 * g), CUDA_ERROR_INVALID_VALUE,
	    CUDA_ERROR_NOT_PERMITTED);
	CHECK_OK(cuMemcpyDtoH(out, res, g));
	CHECK(ct_check(out, g, 2));

	/* Unmap h2, map it again: the bytes are still there, but the new
	 * mapping starts without access. */
	CHECK_OK(cuMemUnmap(res + g, 2 * g));
	/* The bytes are out of reach of the host again. */
	expect_host_fault(res + g, 0);
	expect_host_fault(res + 3 * g - 1, 1);
	CHECK_CU2(cuMemUnmap(res + g, 2 * g), CUDA_ERROR_INVALID_VALUE,
	    CUDA_ERROR_NOT_PERMITTED);
	if (strict)
		CHECK_CU(cuMemcpyDtoH(out, res + g, 4096), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemRetainAllocationHandle(&hr, (void *)(uintptr_t)(res + g)),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuMemMap(res + g, 2 * g, 0, h2, 0));
	CHECK_OK(cuMemGetAccess(&fl, &loc, res + g));
	CHECK(fl == CU_MEM_ACCESS_FLAGS_PROT_NONE);
	expect_host_fault(res + g, 0);
	if (strict)
		CHECK_CU(cuMemcpyDtoH(out, res + g, 4096), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuMemSetAccess(res + g, 2 * g, &rw, 1));
	ct_fill(in, total, 1);
	CHECK_OK(cuMemcpyDtoH(out, res + g, 2 * g));
	CHECK(memcmp(out, in + g, 2 * g) == 0);

	CHECK_OK(cuMemUnmap(res, g));
	CHECK_OK(cuMemUnmap(res + g, 2 * g));
	CHECK_OK(cuMemUnmap(va2, g));
	CHECK_OK(cuMemAddressFree(res, 4 * g));
	CHECK_OK(cuMemAddressFree(va2, g));
	CHECK_OK(cuMemRelease(h1));
	CHECK_OK(cuMemRelease(h2));
	free(in);
	free(out);
}

/* Fields of CUmemAllocationProp documented as "must be zero". */
static void
test_create_reserved_fields(void)
{
	CUmemAllocationProp q = ct_prop(0, 1);
	CUmemGenericAllocationHandle h;

	/* win32HandleMetaData: "In all other cases [than WIN32], this field
	 * is required to be zero." */
	q.win32HandleMetaData = &q;
	CHECK_CU(cuMemCreate(&h, g, &q, 0), CUDA_ERROR_INVALID_VALUE);
}

/* Writes n bytes of pattern seed at d. */
static void
put(CUdeviceptr d, size_t n, int seed)
{
	unsigned char *b = malloc(n);

	CHECK(b != NULL);
	ct_fill(b, n, seed);
	CHECK_OK(cuMemcpyHtoD(d, b, n));
	free(b);
}

/* Whether the n bytes at d hold pattern seed. */
static int
holds(CUdeviceptr d, size_t n, int seed)
{
	unsigned char *b = malloc(n);
	int ok;

	CHECK(b != NULL);
	CHECK_OK(cuMemcpyDtoH(b, d, n));
	ok = ct_check(b, n, seed);
	free(b);
	return ok;
}

/* cuMemMap of part of a handle: "offset + size must be less than the size
 * of the memory allocation", ptr/size/offset multiples of the minimum
 * granularity, offset "currently must be zero".  Two partial mappings of
 * one handle show the same bytes; each unmaps and takes access on its own. */
static void
test_partial_map(void)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemAccessDesc rw = ct_rw(0);
	CUmemGenericAllocationHandle h;
	CUdeviceptr res;
	unsigned long long fl;
	CUmemLocation loc = { CU_MEM_LOCATION_TYPE_DEVICE, 0 };

	CHECK_OK(cuMemCreate(&h, 4 * g, &p, 0));
	CHECK_OK(cuMemAddressReserve(&res, 8 * g, 0, 0, 0));
	/* Sizes: not a multiple of the granularity, larger than the handle. */
	CHECK_CU(cuMemMap(res, g + 4096, 0, h, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemMap(res, 5 * g, 0, h, 0), CUDA_ERROR_INVALID_VALUE);
	if (strict)	/* "currently must be zero" */
		CHECK_CU(cuMemMap(res, g, g, h, 0), CUDA_ERROR_INVALID_VALUE);
	/* The first granule at res, the first two at res + 4g. */
	CHECK_OK(cuMemMap(res, g, 0, h, 0));
	CHECK_OK(cuMemMap(res + 4 * g, 2 * g, 0, h, 0));
	/* Access over each mapping on its own, and over part of both: only
	 * whole mappings. */
	CHECK_OK(cuMemSetAccess(res, g, &rw, 1));
	CHECK_OK(cuMemGetAccess(&fl, &loc, res + 4 * g));
	CHECK(fl == CU_MEM_ACCESS_FLAGS_PROT_NONE);
	if (strict)
		CHECK_CU(cuMemSetAccess(res + 4 * g, g, &rw, 1),
		    CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuMemSetAccess(res + 4 * g, 2 * g, &rw, 1));
	/* Both show the handle's first bytes. */
	put(res, g, 21);
	CHECK(holds(res + 4 * g, g, 21));
	put(res + 5 * g, g, 22);
	/* The handle may go: the mappings keep the memory. */
	CHECK_OK(cuMemRelease(h));
	CHECK(holds(res, g, 21) && holds(res + 5 * g, g, 22));
	/* Not past a partial mapping's end; a sub-range is not a mapping. */
	CHECK_CU(cuMemcpyDtoH(&fl, res + g - 4, sizeof(fl)),
	    CUDA_ERROR_INVALID_VALUE);
	if (strict)
		CHECK_CU(cuMemUnmap(res + 4 * g, g), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuMemUnmap(res, g));
	CHECK(holds(res + 4 * g, g, 21));
	CHECK_OK(cuMemUnmap(res + 4 * g, 2 * g));
	CHECK_OK(cuMemAddressFree(res, 8 * g));
}

int
main(int argc, char **argv)
{
	size_t expect = 2 * MiB, expect_rec = 0;

	if (argc > 1)
		expect = (size_t)strtoul(argv[1], NULL, 10) * 1024;
	if (argc > 2)
		expect_rec = (size_t)strtoul(argv[2], NULL, 10) * 1024;
	strict = ct_is_emulator();
	ct_init_ctx(0);
	test_granularity(expect, expect_rec);
	g = ct_gran(0);
	test_create();
	test_reserve();
	test_map();
	test_partial_map();
	test_create_reserved_fields();
	return 0;
}
