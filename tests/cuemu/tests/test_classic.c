/* Classic (non-VMM) memory, copies, memset, streams and events. */
#include "cuemu_test.h"

static int strict;

/* Without a current context, the calls that need one say so. */
static void
test_no_context(void)
{
	CUdeviceptr dp;
	CUstream s;
	CUevent e;
	size_t fr, tot, pitch;
	unsigned char b[16];

	CHECK_CU(cuMemAlloc(&dp, 4096), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_CU(cuMemAllocPitch(&dp, &pitch, 64, 4, 4),
	    CUDA_ERROR_INVALID_CONTEXT);
	CHECK_CU(cuMemGetInfo(&fr, &tot), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_CU(cuMemAllocAsync(&dp, 4096, NULL), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_CU(cuStreamCreate(&s, 0), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_CU(cuEventCreate(&e, 0), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_CU(cuStreamSynchronize(NULL), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_CU(cuMemcpyHtoD((CUdeviceptr)(uintptr_t)b, b, sizeof(b)),
	    CUDA_ERROR_INVALID_CONTEXT);
}

/* cuMemAlloc / cuMemFree / cuMemGetInfo / cuMemGetAddressRange. */
static void
test_alloc(void)
{
	CUdeviceptr a = 0, b = 0, base = 0;
	size_t fr = 0, tot = 0, dtot = 0, sz = 0;

	CHECK_OK(cuMemGetInfo(&fr, &tot));
	CHECK_OK(cuDeviceTotalMem(&dtot, 0));
	CHECK(tot == dtot && fr <= tot && fr > 0);
	CHECK_CU(cuMemGetInfo(NULL, &tot), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemGetInfo(&fr, NULL), CUDA_ERROR_INVALID_VALUE);

	CHECK_CU(cuMemAlloc(&a, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAlloc(NULL, 4096), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAlloc(&a, (size_t)1 << 62), CUDA_ERROR_OUT_OF_MEMORY);

	CHECK_OK(cuMemAlloc(&a, MiB));
	CHECK_OK(cuMemAlloc(&b, 1000));
	CHECK(a != 0 && b != 0);
	/* Suitably aligned for any kind of variable. */
	CHECK(a % 256 == 0 && b % 256 == 0);
	CHECK(b + 1000 <= a || a + MiB <= b);

	CHECK_OK(cuMemGetAddressRange(&base, &sz, a + 12345));
	CHECK(base == a && sz == MiB);
	CHECK_OK(cuMemGetAddressRange(&base, NULL, a + MiB - 1));
	CHECK(base == a);
	CHECK_OK(cuMemGetAddressRange(NULL, &sz, b));
	CHECK(sz == 1000);
	CHECK_OK(cuMemGetAddressRange(NULL, NULL, b));
	CHECK_CU(cuMemGetAddressRange(&base, &sz, b + 1000),
	    CUDA_ERROR_NOT_FOUND);
	CHECK_CU2(cuMemGetAddressRange(&base, &sz, 0), CUDA_ERROR_NOT_FOUND,
	    CUDA_ERROR_INVALID_VALUE);

	/* Only pointers returned by an allocation can be freed. */
	CHECK_CU(cuMemFree(a + 16), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemFree((CUdeviceptr)0x1000), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuMemFree(a));
	CHECK_CU(cuMemFree(a), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemGetAddressRange(&base, &sz, a), CUDA_ERROR_NOT_FOUND);
	CHECK_OK(cuMemFree(b));
}

/* Many live allocations of odd sizes never overlap: each keeps its own
 * bytes. */
static void
test_many(void)
{
	enum { N = 64 };
	CUdeviceptr p[N];
	size_t sz[N], i, j;
	unsigned char *buf = malloc(70000);

	CHECK(buf != NULL);
	for (i = 0; i < N; i++) {
		sz[i] = 1 + (i * 7919) % 65536;
		CHECK_OK(cuMemAlloc(&p[i], sz[i]));
		ct_fill(buf, sz[i], (unsigned)i);
		CHECK_OK(cuMemcpyHtoD(p[i], buf, sz[i]));
	}
	for (i = 0; i < N; i++) {
		for (j = 0; j < i; j++)
			CHECK(p[i] + sz[i] <= p[j] || p[j] + sz[j] <= p[i]);
	}
	/* Free every other one, allocate again, check the survivors. */
	for (i = 0; i < N; i += 2)
		CHECK_OK(cuMemFree(p[i]));
	for (i = 0; i < N; i += 2) {
		CHECK_OK(cuMemAlloc(&p[i], sz[i]));
		CHECK_OK(cuMemsetD8(p[i], 0xee, sz[i]));
	}
	for (i = 1; i < N; i += 2) {
		CHECK_OK(cuMemcpyDtoH(buf, p[i], sz[i]));
		CHECK(ct_check(buf, sz[i], (unsigned)i));
	}
	for (i = 0; i < N; i++)
		CHECK_OK(cuMemFree(p[i]));
	free(buf);
}

/* cuMemAllocPitch. */
static void
test_pitch(void)
{
	CUdeviceptr dp, base;
	size_t pitch = 0, sz = 0;
	int align = 0;
	unsigned es[] = { 4, 8, 16 };
	unsigned char *buf;
	size_t i;

	for (i = 0; i < sizeof(es) / sizeof(es[0]); i++) {
		CHECK_OK(cuMemAllocPitch(&dp, &pitch, 100, 10, es[i]));
		CHECK(pitch >= 100 && pitch % es[i] == 0);
		if (cuDeviceGetAttribute(&align,
		    CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT, 0) == CUDA_SUCCESS
		    && align > 0)
			CHECK(pitch % (size_t)align == 0);
		CHECK_OK(cuMemGetAddressRange(&base, &sz, dp + 9 * pitch));
		CHECK(base == dp && sz >= pitch * 10);
		/* The whole pitched area is usable. */
		buf = malloc(pitch * 10);
		CHECK(buf != NULL);
		ct_fill(buf, pitch * 10, (unsigned)i);
		CHECK_OK(cuMemcpyHtoD(dp, buf, pitch * 10));
		memset(buf, 0, pitch * 10);
		CHECK_OK(cuMemcpyDtoH(buf, dp, pitch * 10));
		CHECK(ct_check(buf, pitch * 10, (unsigned)i));
		free(buf);
		CHECK_OK(cuMemFree(dp));
	}
	CHECK_CU(cuMemAllocPitch(&dp, &pitch, 100, 10, 3),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAllocPitch(&dp, &pitch, 100, 10, 0),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAllocPitch(&dp, &pitch, 100, 10, 32),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAllocPitch(&dp, &pitch, 0, 10, 4),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAllocPitch(&dp, &pitch, 100, 0, 4),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAllocPitch(NULL, &pitch, 100, 10, 4),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAllocPitch(&dp, NULL, 100, 10, 4),
	    CUDA_ERROR_INVALID_VALUE);
}

/* Copies and memset, in bounds and out of bounds. */
static void
test_copies(void)
{
	enum { N = 256 * 1024 };
	CUdeviceptr a, b;
	unsigned char *in, *out;
	size_t i;

	in = malloc(N);
	out = malloc(N);
	CHECK(in != NULL && out != NULL);
	CHECK_OK(cuMemAlloc(&a, N));
	CHECK_OK(cuMemAlloc(&b, N));

	ct_fill(in, N, 3);
	CHECK_OK(cuMemcpyHtoD(a, in, N));
	CHECK_OK(cuMemcpyDtoD(b, a, N));
	memset(out, 0, N);
	CHECK_OK(cuMemcpyDtoH(out, b, N));
	CHECK(ct_check(out, N, 3));
	/* Offsets inside an allocation. */
	CHECK_OK(cuMemcpyDtoH(out, a + 1000, 5000));
	CHECK(memcmp(out, in + 1000, 5000) == 0);
	CHECK_OK(cuMemcpyDtoD(b + 7, a + 100, 3000));
	CHECK_OK(cuMemcpyDtoH(out, b + 7, 3000));
	CHECK(memcmp(out, in + 100, 3000) == 0);

	/* cuMemcpy infers the direction from unified addresses. */
	ct_fill(in, N, 4);
	CHECK_OK(cuMemcpy(a, (CUdeviceptr)(uintptr_t)in, N));
	CHECK_OK(cuMemcpy(b, a, N));
	memset(out, 0, N);
	CHECK_OK(cuMemcpy((CUdeviceptr)(uintptr_t)out, b, N));
	CHECK(ct_check(out, N, 4));
	/* Host to host is a unified-address copy too. */
	memset(out, 0, N);
	CHECK_OK(cuMemcpy((CUdeviceptr)(uintptr_t)out, (CUdeviceptr)(uintptr_t)in,
	    N));
	CHECK(ct_check(out, N, 4));

	/* cuMemsetD8. */
	CHECK_OK(cuMemsetD8(a, 0xab, N));
	CHECK_OK(cuMemsetD8(a + 10, 0x11, 20));
	CHECK_OK(cuMemcpyDtoH(out, a, N));
	for (i = 0; i < N; i++)
		CHECK(out[i] == ((i >= 10 && i < 30) ? 0x11 : 0xab));

	/* Out of bounds of an allocation: an error, not a crash. */
	CHECK_CU(cuMemcpyHtoD(a + N - 10, in, 20), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemcpyDtoH(out, a + N - 10, 20), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemcpyDtoD(b, a + 1, N), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemcpyDtoD(b + 1, a, N), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemcpy(b + N - 1, a, 2), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemsetD8(a + N - 1, 0, 2), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemsetD8(a, 0, N + 1), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemcpyHtoD((CUdeviceptr)0x1000, in, 16),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemcpyDtoH(out, (CUdeviceptr)0x1000, 16),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemsetD8((CUdeviceptr)0x1000, 0, 16),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemcpyHtoD(a, NULL, 16), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemcpyDtoH(NULL, a, 16), CUDA_ERROR_INVALID_VALUE);
	/* The failed copies wrote nothing. */
	CHECK_OK(cuMemcpyDtoH(out, a, N));
	CHECK(out[N - 1] == 0xab && out[N - 10] == 0xab);

	CHECK_OK(cuMemFree(b));
	/* Freed memory is not a copy target any more. */
	CHECK_CU(cuMemcpyHtoD(b, in, 16), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemcpyDtoD(b, a, 16), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemsetD8(b, 0, 16), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuMemFree(a));
	free(in);
	free(out);
}

/* Streams, stream-ordered allocation. */
static void
test_streams(void)
{
	CUstream s1, s2, dead;
	CUdeviceptr dp;
	unsigned char in[4096], out[4096];

	CHECK_OK(cuStreamCreate(&s1, CU_STREAM_DEFAULT));
	CHECK_OK(cuStreamCreate(&s2, CU_STREAM_NON_BLOCKING));
	CHECK(s1 != NULL && s2 != NULL && s1 != s2);
	CHECK_CU(cuStreamCreate(NULL, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuStreamCreate(&dead, 0x80), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuStreamQuery(s1));
	CHECK_OK(cuStreamSynchronize(s1));
	CHECK_OK(cuStreamQuery(NULL));
	CHECK_OK(cuStreamSynchronize(NULL));

	CHECK_OK(cuMemAllocAsync(&dp, sizeof(in), s1));
	CHECK(dp != 0);
	CHECK_OK(cuStreamSynchronize(s1));
	ct_fill(in, sizeof(in), 9);
	CHECK_OK(cuMemcpyHtoD(dp, in, sizeof(in)));
	CHECK_OK(cuMemcpyDtoH(out, dp, sizeof(out)));
	CHECK(ct_check(out, sizeof(out), 9));
	CHECK_OK(cuMemFreeAsync(dp, s1));
	CHECK_OK(cuStreamSynchronize(s1));
	CHECK_OK(cuMemAllocAsync(&dp, sizeof(in), NULL));
	CHECK_OK(cuMemFreeAsync(dp, s2));
	CHECK_OK(cuStreamSynchronize(s2));
	CHECK_CU(cuMemAllocAsync(&dp, 0, s1), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAllocAsync(NULL, 4096, s1), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemFreeAsync((CUdeviceptr)0x1000, s1),
	    CUDA_ERROR_INVALID_VALUE);

	CHECK_OK(cuStreamCreate(&dead, 0));
	CHECK_OK(cuStreamDestroy(dead));
	CHECK_OK(cuStreamDestroy(s2));
	if (strict) {
		/* Destroyed streams are invalid handles. */
		CHECK_CU(cuStreamQuery(dead), CUDA_ERROR_INVALID_HANDLE);
		CHECK_CU(cuStreamSynchronize(dead), CUDA_ERROR_INVALID_HANDLE);
		CHECK_CU(cuStreamDestroy(dead), CUDA_ERROR_INVALID_HANDLE);
		CHECK_CU(cuStreamQuery((CUstream)(uintptr_t)0x5150),
		    CUDA_ERROR_INVALID_HANDLE);
		/* Only INVALID_VALUE is documented for the allocator. */
		CHECK_CU(cuMemAllocAsync(&dp, 4096, dead), CUDA_ERROR_INVALID_VALUE);
		CHECK_OK(cuMemAllocAsync(&dp, 4096, s1));
		CHECK_CU(cuMemFreeAsync(dp, dead), CUDA_ERROR_INVALID_VALUE);
		CHECK_OK(cuMemFreeAsync(dp, s1));
	}
	CHECK_OK(cuStreamDestroy(s1));
}

/* Events. */
static void
test_events(void)
{
	CUevent e1, e2, e3, dead;
	CUstream s, ds;

	CHECK_OK(cuEventCreate(&e1, CU_EVENT_DEFAULT));
	CHECK_OK(cuEventCreate(&e2, CU_EVENT_DISABLE_TIMING));
	CHECK_OK(cuEventCreate(&e3, CU_EVENT_BLOCKING_SYNC |
	    CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS));
	CHECK(e1 != e2 && e2 != e3);
	CHECK_CU(cuEventCreate(NULL, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuEventCreate(&dead, 0x100), CUDA_ERROR_INVALID_VALUE);
	/* INTERPROCESS must come with DISABLE_TIMING. */
	CHECK_CU(cuEventCreate(&dead, CU_EVENT_INTERPROCESS),
	    CUDA_ERROR_INVALID_VALUE);

	/* Before any record an event is complete. */
	CHECK_OK(cuEventQuery(e1));
	CHECK_OK(cuStreamCreate(&s, 0));
	CHECK_OK(cuEventRecord(e1, s));
	CHECK_OK(cuEventRecord(e2, NULL));
	CHECK_OK(cuEventRecord(e1, s));
	CHECK_OK(cuEventSynchronize(e1));
	CHECK_OK(cuEventSynchronize(e2));
	CHECK_OK(cuEventQuery(e1));
	CHECK_OK(cuEventQuery(e2));

	CHECK_OK(cuEventCreate(&dead, 0));
	CHECK_OK(cuEventDestroy(dead));
	CHECK_OK(cuStreamCreate(&ds, 0));
	CHECK_OK(cuStreamDestroy(ds));
	if (strict) {
		CHECK_CU(cuEventQuery(dead), CUDA_ERROR_INVALID_HANDLE);
		CHECK_CU(cuEventSynchronize(dead), CUDA_ERROR_INVALID_HANDLE);
		CHECK_CU(cuEventRecord(dead, s), CUDA_ERROR_INVALID_HANDLE);
		CHECK_CU(cuEventDestroy(dead), CUDA_ERROR_INVALID_HANDLE);
		CHECK_CU(cuEventRecord(e1, ds), CUDA_ERROR_INVALID_HANDLE);
		CHECK_CU(cuEventQuery((CUevent)(uintptr_t)0x5150),
		    CUDA_ERROR_INVALID_HANDLE);
	}
	CHECK_OK(cuEventDestroy(e1));
	CHECK_OK(cuEventDestroy(e2));
	CHECK_OK(cuEventDestroy(e3));
	CHECK_OK(cuStreamDestroy(s));
}

/* cuMemAllocManaged; cuMemPoolCreate pools and cuMemAllocFromPoolAsync. */
static void
test_managed_pools(void)
{
	CUmemPoolProps pp;
	CUmemoryPool pool, junk;
	CUdeviceptr m = 0, p = 0, base = 0;
	size_t sz = 0;
	unsigned char in[64], out[64];

	/* "If bytesize is 0, cuMemAllocManaged returns
	 * CUDA_ERROR_INVALID_VALUE"; flags "must be one of
	 * CU_MEM_ATTACH_GLOBAL or CU_MEM_ATTACH_HOST". */
	CHECK_CU(cuMemAllocManaged(&m, 0, CU_MEM_ATTACH_GLOBAL),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemAllocManaged(&m, MiB, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuMemAllocManaged(&m, MiB, CU_MEM_ATTACH_GLOBAL));
	CHECK_OK(cuMemGetAddressRange(&base, &sz, m + 100));
	CHECK(base == m && sz == MiB);
	memset(in, 0x5a, sizeof(in));
	CHECK_OK(cuMemcpyHtoD(m, in, sizeof(in)));
	CHECK_OK(cuMemcpyDtoH(out, m, sizeof(out)));
	CHECK(memcmp(in, out, sizeof(in)) == 0);
	CHECK_OK(cuMemFree(m));

	memset(&pp, 0, sizeof(pp));
	pp.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
	pp.handleTypes = CU_MEM_HANDLE_TYPE_NONE;
	pp.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	pp.location.id = 0;
	CHECK_CU(cuMemPoolCreate(NULL, &pp), CUDA_ERROR_INVALID_VALUE);
	pp.location.id = 99;
	CHECK_CU(cuMemPoolCreate(&junk, &pp), CUDA_ERROR_INVALID_VALUE);
	pp.location.id = 0;
	CHECK_OK(cuMemPoolCreate(&pool, &pp));
	CHECK_OK(cuMemAllocFromPoolAsync(&p, 3 * MiB, pool, NULL));
	CHECK_OK(cuMemGetAddressRange(&base, &sz, p));
	CHECK(base == p && sz == 3 * MiB);
	CHECK_OK(cuMemFreeAsync(p, NULL));
	CHECK_OK(cuStreamSynchronize(NULL));
	CHECK_OK(cuMemPoolDestroy(pool));
	if (strict) {
		/* A destroyed pool is refused by every later call. */
		CHECK_CU(cuMemAllocFromPoolAsync(&p, MiB, pool, NULL),
		    CUDA_ERROR_INVALID_VALUE);
		CHECK_CU(cuMemPoolDestroy(pool), CUDA_ERROR_INVALID_VALUE);
	}
}

int
main(void)
{
	strict = ct_is_emulator();
	CHECK_OK(cuInit(0));
	test_no_context();
	ct_init_ctx(0);
	test_alloc();
	test_many();
	test_pitch();
	test_copies();
	test_streams();
	test_events();
	test_managed_pools();
	return 0;
}
