/*
 * Device settings a real GPU may have and vmmd must cope with (issue 10
 * B.7), each from cuda.h:
 *   exclusive  CUEMU_COMPUTE_MODE=exclusive_process: the attribute says
 *              CU_COMPUTEMODE_EXCLUSIVE_PROCESS, and while one process holds
 *              a context a second one's context creation fails with
 *              CUDA_ERROR_DEVICE_UNAVAILABLE ("Devices are often unavailable
 *              due to use of CU_COMPUTEMODE_EXCLUSIVE_PROCESS"); VMM calls,
 *              which need no context, still work there; the holder's release
 *              (or death) frees the device.
 *   rdma       CUEMU_RDMA=1 sets GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED, and
 *              only then may cuMemCreate ask for gpuDirectRDMACapable; an
 *              importer sees the flag.  rdma_off: refused without it.
 *   mig        CUEMU_MIG=1: cuDeviceGetUuid (the _v2 ABI) names the MIG
 *              instance, the v1 ABI the GPU, and the two differ.
 */
#include "cuemu_test.h"

/* Child role for "exclusive": try to retain the primary context, write the
 * CUresult; also a VMM create without a context, and its result. */
static int
role_try(void)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h;
	CUresult r[2];
	CUcontext ctx;

	CHECK_OK(cuInit(0));
	r[0] = cuDevicePrimaryCtxRetain(&ctx, 0);
	r[1] = cuMemCreate(&h, ct_gran(0), &p, 0);
	if (r[1] == CUDA_SUCCESS)
		CHECK_OK(cuMemRelease(h));
	if (r[0] == CUDA_SUCCESS)
		CHECK_OK(cuDevicePrimaryCtxRelease(0));
	ct_write(1, r, sizeof(r));
	return 0;
}

/* Child role: hold a context, say 'R', wait to be killed. */
static _Noreturn void
role_hold(void)
{
	(void)ct_init_ctx(0);
	ct_write(1, "R", 1);
	for (;;)
		pause();
}

/* Starts this program (exec: a fork of an initialised process cannot use
 * CUDA) in role, its stdout a pipe returned in *from. */
static pid_t
spawn(const char *self, const char *role, int *from)
{
	int out[2];
	pid_t pid;

	CHECK(pipe(out) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		dup2(out[1], 1);
		close(out[0]);
		close(out[1]);
		execl(self, self, role, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	*from = out[0];
	return pid;
}

/* Runs this program in role "try"; returns the two CUresults it wrote. */
static void
run_try(const char *self, CUresult r[2])
{
	int from;
	pid_t pid = spawn(self, "try", &from);

	ct_read(from, r, 2 * sizeof(CUresult));
	close(from);
	ct_wait_ok(pid, "try");
}

static void
test_exclusive(const char *self)
{
	CUresult r[2];
	CUcontext ctx;
	int mode = -1;

	CHECK_OK(cuInit(0));
	CHECK_OK(cuDeviceGetAttribute(&mode, CU_DEVICE_ATTRIBUTE_COMPUTE_MODE, 0));
	CHECK(mode == CU_COMPUTEMODE_EXCLUSIVE_PROCESS);
	/* Nobody holds a context: another process gets one. */
	run_try(self, r);
	CHECK(r[0] == CUDA_SUCCESS && r[1] == CUDA_SUCCESS);
	/* We hold it: the other process cannot, but VMM calls still work. */
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, 0));	/* ours, twice */
	run_try(self, r);
	CHECK(r[0] == CUDA_ERROR_DEVICE_UNAVAILABLE);
	CHECK(r[1] == CUDA_SUCCESS);
	CHECK_OK(cuDevicePrimaryCtxRelease(0));
	run_try(self, r);
	CHECK(r[0] == CUDA_ERROR_DEVICE_UNAVAILABLE);
	/* Our last release frees the device. */
	CHECK_OK(cuDevicePrimaryCtxRelease(0));
	run_try(self, r);
	CHECK(r[0] == CUDA_SUCCESS);
}

/* A holder that dies (SIGKILL) leaves the device free. */
static void
test_exclusive_death(const char *self)
{
	CUresult r[2];
	int from;
	pid_t pid;
	char c;

	pid = spawn(self, "hold", &from);
	ct_read(from, &c, 1);
	run_try(self, r);
	CHECK(r[0] == CUDA_ERROR_DEVICE_UNAVAILABLE);
	CHECK(kill(pid, SIGKILL) == 0);
	(void)ct_wait(pid);
	close(from);
	run_try(self, r);
	CHECK(r[0] == CUDA_SUCCESS);
}

static void
test_rdma(int supported)
{
	CUmemAllocationProp p = ct_prop(0, 1), got;
	CUmemGenericAllocationHandle h, h2;
	int attr = -1, fd;

	CHECK_OK(cuInit(0));
	CHECK_OK(cuDeviceGetAttribute(&attr,
	    CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED, 0));
	CHECK(attr == supported);
	p.allocFlags.gpuDirectRDMACapable = 1;
	if (!supported) {
		CHECK(cuMemCreate(&h, ct_gran(0), &p, 0) != CUDA_SUCCESS);
		return;
	}
	CHECK_OK(cuMemCreate(&h, ct_gran(0), &p, 0));
	CHECK_OK(cuMemGetAllocationPropertiesFromHandle(&got, h));
	CHECK(got.allocFlags.gpuDirectRDMACapable == 1);
	/* An importer learns it too. */
	CHECK_OK(cuMemExportToShareableHandle(&fd, h,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
	CHECK_OK(cuMemImportFromShareableHandle(&h2, (void *)(uintptr_t)fd,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
	close(fd);
	memset(&got, 0, sizeof(got));
	CHECK_OK(cuMemGetAllocationPropertiesFromHandle(&got, h2));
	CHECK(got.allocFlags.gpuDirectRDMACapable == 1);
	CHECK_OK(cuMemRelease(h2));
	CHECK_OK(cuMemRelease(h));
}

/* The v1 entry point, as an old program linked it. */
typedef CUresult (*uuid_v1_fn)(CUuuid *, CUdevice);

static void
test_mig(void)
{
	CUuuid inst, gpu;
	uuid_v1_fn v1;
	void *lib;

	CHECK_OK(cuInit(0));
	CHECK_OK(cuDeviceGetUuid(&inst, 0));	/* the _v2 ABI */
	lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
	CHECK(lib != NULL);
	v1 = (uuid_v1_fn)dlsym(lib, "cuDeviceGetUuid");
	CHECK(v1 != NULL);
	CHECK_OK(v1(&gpu, 0));
	CHECK(memcmp(inst.bytes, gpu.bytes, sizeof(inst.bytes)) != 0);
	dlclose(lib);
}

int
main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (strcmp(argv[1], "try") == 0)
		return role_try();
	if (strcmp(argv[1], "hold") == 0)
		role_hold();
	if (strcmp(argv[1], "exclusive") == 0) {
		test_exclusive(argv[0]);
		test_exclusive_death(argv[0]);
	} else if (strcmp(argv[1], "rdma") == 0)
		test_rdma(1);
	else if (strcmp(argv[1], "rdma_off") == 0)
		test_rdma(0);
	else if (strcmp(argv[1], "mig") == 0)
		test_mig();
	else
		return 2;
	return 0;
}
