/* Two emulated devices (CUEMU_DEVICES=2, CUEMU_MEM_MB=64): distinct and
 * stable UUIDs, per-device capacity, device ordinals of allocations. */
#include "cuemu_test.h"

#define DEV_MB 64

/* UUIDs of both devices, from a fresh process. */
static void
uuids(CUuuid u[2])
{
	CHECK_OK(cuDeviceGetUuid_v2(&u[0], 0));
	CHECK_OK(cuDeviceGetUuid_v2(&u[1], 1));
}

/* Memory created on device 1 reports device 1 everywhere; capacity is per
 * device. */
static void
test_device1_memory(void)
{
	CUmemAllocationProp p1 = ct_prop(1, 1), p0 = ct_prop(0, 1), got;
	CUmemAccessDesc a1 = ct_rw(1);
	CUmemGenericAllocationHandle h0, h1;
	CUcontext ctx1;
	CUdevice d = -1;
	CUdeviceptr va, dp;
	size_t fr = 0, tot = 0, big = 48 * MiB;
	unsigned char in[4096], out[4096];
	int ord = -1;

	/* 48 MiB on each device: 96 MiB in all, over one device's 64. */
	CHECK_OK(cuMemCreate(&h0, big, &p0, 0));
	CHECK_OK(cuMemCreate(&h1, big, &p1, 0));
	memset(&got, 0, sizeof(got));
	CHECK_OK(cuMemGetAllocationPropertiesFromHandle(&got, h1));
	CHECK(got.location.type == CU_MEM_LOCATION_TYPE_DEVICE &&
	    got.location.id == 1);

	/* Device 0 is now short of room, device 1 too. */
	CHECK_CU(cuMemCreate(&h0, 32 * MiB, &p0, 0), CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_CU(cuMemCreate(&h1, 32 * MiB, &p1, 0), CUDA_ERROR_OUT_OF_MEMORY);

	CHECK_OK(cuMemAddressReserve(&va, big, 0, 0, 0));
	CHECK_OK(cuMemMap(va, big, 0, h1, 0));
	CHECK_OK(cuMemSetAccess(va, big, &a1, 1));

	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx1, 1));
	CHECK_OK(cuCtxSetCurrent(ctx1));
	CHECK_OK(cuPointerGetAttribute(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
	    va + 4096));
	CHECK(ord == 1);
	CHECK_OK(cuCtxGetDevice(&d));
	CHECK(d == 1);
	CHECK_OK(cuMemGetInfo(&fr, &tot));
	CHECK(tot == (size_t)DEV_MB * MiB);
	CHECK(fr == tot - big);

	ct_fill(in, sizeof(in), 11);
	CHECK_OK(cuMemcpyHtoD(va + big - sizeof(in), in, sizeof(in)));
	CHECK_OK(cuMemcpyDtoH(out, va + big - sizeof(in), sizeof(out)));
	CHECK(ct_check(out, sizeof(out), 11));

	/* A classic allocation made in device 1's context belongs to it. */
	CHECK_OK(cuMemAlloc(&dp, 2 * MiB));
	ord = -1;
	CHECK_OK(cuPointerGetAttribute(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
	    dp));
	CHECK(ord == 1);
	CHECK_OK(cuMemFree(dp));

	CHECK_OK(cuMemUnmap(va, big));
	CHECK_OK(cuMemAddressFree(va, big));
	CHECK_OK(cuMemRelease(h1));
	CHECK_OK(cuMemRelease(h0));
	CHECK_OK(cuCtxSetCurrent(NULL));
	CHECK_OK(cuDevicePrimaryCtxRelease(1));
}

/* Access flags are per location: granting device 0 leaves device 1's
 * access as it was, and the other way round. */
static void
test_access_per_device(void)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemAccessDesc a0 = ct_rw(0), a1 = ct_rw(1), both[2];
	CUmemGenericAllocationHandle h;
	CUdeviceptr va;
	unsigned long long f0 = 99, f1 = 99;
	size_t g = ct_gran(0);

	CHECK_OK(cuMemCreate(&h, g, &p, 0));
	CHECK_OK(cuMemAddressReserve(&va, g, 0, 0, 0));
	CHECK_OK(cuMemMap(va, g, 0, h, 0));
	CHECK_OK(cuMemSetAccess(va, g, &a0, 1));
	CHECK_OK(cuMemGetAccess(&f0, &a0.location, va));
	CHECK_OK(cuMemGetAccess(&f1, &a1.location, va));
	CHECK(f0 == CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
	CHECK(f1 == CU_MEM_ACCESS_FLAGS_PROT_NONE);
	a1.flags = CU_MEM_ACCESS_FLAGS_PROT_READ;
	CHECK_OK(cuMemSetAccess(va, g, &a1, 1));
	CHECK_OK(cuMemGetAccess(&f0, &a0.location, va));
	CHECK_OK(cuMemGetAccess(&f1, &a1.location, va));
	if (f0 != CU_MEM_ACCESS_FLAGS_PROT_READWRITE ||
	    f1 != CU_MEM_ACCESS_FLAGS_PROT_READ) {
		fprintf(stderr, "after SetAccess(dev1=READ) on top of dev0=RW: "
		    "dev0 %llu dev1 %llu, want 3 and 1\n", f0, f1);
		exit(1);
	}
	/* Both in one call. */
	both[0] = ct_rw(0);
	both[0].flags = CU_MEM_ACCESS_FLAGS_PROT_READ;
	both[1] = ct_rw(1);
	CHECK_OK(cuMemSetAccess(va, g, both, 2));
	CHECK_OK(cuMemGetAccess(&f0, &a0.location, va));
	CHECK_OK(cuMemGetAccess(&f1, &a1.location, va));
	CHECK(f0 == CU_MEM_ACCESS_FLAGS_PROT_READ &&
	    f1 == CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
	ct_unmap_free(va, g, h);
}

/* An event and a stream of different contexts cannot be recorded
 * together (documented INVALID_HANDLE). */
static void
test_event_other_context(void)
{
	CUcontext c0, c1;
	CUstream s0, s1;
	CUevent e0;

	CHECK_OK(cuDevicePrimaryCtxRetain(&c0, 0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&c1, 1));
	CHECK(c0 != c1);
	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuStreamCreate(&s1, 0));
	CHECK_OK(cuCtxSetCurrent(c0));
	CHECK_OK(cuStreamCreate(&s0, 0));
	CHECK_OK(cuEventCreate(&e0, 0));
	CHECK_OK(cuEventRecord(e0, s0));
	CHECK_CU(cuEventRecord(e0, s1), CUDA_ERROR_INVALID_HANDLE);
	CHECK_OK(cuEventDestroy(e0));
	CHECK_OK(cuStreamDestroy(s0));
	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuStreamDestroy(s1));
	CHECK_OK(cuCtxSetCurrent(NULL));
	CHECK_OK(cuDevicePrimaryCtxRelease(0));
	CHECK_OK(cuDevicePrimaryCtxRelease(1));
}

int
main(void)
{
	CUmemAllocationProp p2 = ct_prop(2, 1);
	CUmemGenericAllocationHandle h;
	CUuuid mine[2], theirs[2];
	CUdevice d;
	size_t bytes;
	char name[2][128];
	int fds[2], n = 0, i;
	pid_t pid;

	CHECK(pipe(fds) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		CHECK_OK(cuInit(0));
		uuids(theirs);
		ct_write(fds[1], theirs, sizeof(theirs));
		_exit(0);
	}
	close(fds[1]);

	CHECK_OK(cuInit(0));
	CHECK_OK(cuDeviceGetCount(&n));
	CHECK(n == 2);
	CHECK_OK(cuDeviceGet(&d, 1));
	CHECK_CU(cuDeviceGet(&d, 2), CUDA_ERROR_INVALID_DEVICE);
	for (i = 0; i < 2; i++) {
		CHECK_OK(cuDeviceGetName(name[i], (int)sizeof(name[i]), i));
		CHECK(name[i][0] != '\0');
		CHECK_OK(cuDeviceTotalMem(&bytes, i));
		CHECK(bytes == (size_t)DEV_MB * MiB);
	}
	CHECK_CU(cuDeviceTotalMem(&bytes, 2), CUDA_ERROR_INVALID_DEVICE);

	/* Distinct per device, stable across processes of the instance. */
	uuids(mine);
	CHECK(memcmp(&mine[0], &mine[1], sizeof(CUuuid)) != 0);
	ct_read(fds[0], theirs, sizeof(theirs));
	ct_wait_ok(pid, "uuids");
	CHECK(memcmp(mine, theirs, sizeof(mine)) == 0);

	/* cuMemCreate on a device that does not exist. */
	CHECK_CU(cuMemCreate(&h, 2 * MiB, &p2, 0), CUDA_ERROR_INVALID_DEVICE);

	test_device1_memory();
	test_event_other_context();
	test_access_per_device();
	return 0;
}
