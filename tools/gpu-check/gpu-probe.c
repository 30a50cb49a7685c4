/*
 * gpu-probe: the driver facts vmmd relies on, measured on whatever
 * libcuda.so.1 the dynamic loader finds (a real GPU, or tests/cuemu).
 *
 * It reaches the driver the way a CUDA runtime does: dlopen("libcuda.so.1"),
 * then every entry point through cuGetProcAddress.  An entry point the driver
 * does not have is reported as "n/a", never a failure of the probe.  Each
 * fact is one line "name: value" on standard output; scripts/gpu-check.sh
 * collects them into its report.
 *
 *   gpu-probe [--device N] [--iterations N]
 *
 * Exit status: 0 when every probe ran (whatever it found), 1 when the driver
 * could not be used at all, 2 on a usage error.
 */
#include <cuda.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CUDA_VERSION_WANTED 12000	/* the ABI versions a CUDA 12 runtime asks for */

/* Entry points, typed after cuda.h's prototypes (its macros pick the
 * versioned ABI: cuMemAlloc is cuMemAlloc_v2's type). */
#define PROBE_FUNCS(X)							\
	X(cuInit) X(cuDriverGetVersion) X(cuDeviceGet) X(cuDeviceGetCount)	\
	X(cuDeviceGetName) X(cuDeviceGetAttribute)				\
	X(cuDevicePrimaryCtxRetain) X(cuDevicePrimaryCtxRelease)		\
	X(cuCtxSetCurrent) X(cuCtxSynchronize) X(cuGetErrorName)		\
	X(cuMemGetAllocationGranularity) X(cuMemCreate) X(cuMemRelease)	\
	X(cuMemAddressReserve) X(cuMemAddressFree) X(cuMemMap) X(cuMemUnmap)	\
	X(cuMemSetAccess) X(cuMemExportToShareableHandle)			\
	X(cuMemImportFromShareableHandle) X(cuMemAlloc) X(cuMemFree)		\
	X(cuMemGetInfo) X(cuMemGetAddressRange) X(cuPointerGetAttribute)	\
	X(cuMemcpyHtoD) X(cuMemcpyDtoH) X(cuStreamCreate) X(cuStreamDestroy)	\
	X(cuStreamSynchronize) X(cuStreamQuery) X(cuStreamBeginCapture)	\
	X(cuStreamEndCapture) X(cuGraphDestroy) X(cuLaunchHostFunc)		\
	X(cuIpcGetMemHandle)

#define DECLARE(f) static __typeof__(f) *p_##f;
PROBE_FUNCS(DECLARE)
#undef DECLARE

static void *drv;
static int dev_ordinal;
static CUdevice dev;
static size_t gran;
static int iterations = 200;

/* ---- helpers ---------------------------------------------------------------- */

static const char *
err_name(CUresult r)
{
	const char *s = NULL;

	if (p_cuGetErrorName == NULL || p_cuGetErrorName(r, &s) != CUDA_SUCCESS ||
	    s == NULL)
		return "unknown error";
	return s;
}

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* p50 and p99 of n samples (sorted in place). */
static void
print_latency(const char *name, double *v, int n)
{
	if (n == 0) {
		printf("latency.%s: n/a\n", name);
		return;
	}
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	printf("latency.%s: p50 %.1f us, p99 %.1f us (n=%d)\n", name,
	    v[n / 2], v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1], n);
}

static CUmemAllocationProp
vmm_prop(void)
{
	CUmemAllocationProp p;

	memset(&p, 0, sizeof(p));
	p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	p.location.id = dev_ordinal;
	p.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
	return p;
}

static CUresult
set_rw(CUdeviceptr p, size_t size)
{
	CUmemAccessDesc a;

	memset(&a, 0, sizeof(a));
	a.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	a.location.id = dev_ordinal;
	a.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	return p_cuMemSetAccess(p, size, &a, 1);
}

/* A VMM chunk of size bytes mapped read-write at a fresh reservation of
 * va bytes (va >= size). */
struct mapped {
	CUmemGenericAllocationHandle h;
	CUdeviceptr va;
	size_t va_size, size;
};

static CUresult
map_new(struct mapped *m, size_t size, size_t va)
{
	CUmemAllocationProp prop = vmm_prop();
	CUresult r;

	memset(m, 0, sizeof(*m));
	if ((r = p_cuMemCreate(&m->h, size, &prop, 0)) != CUDA_SUCCESS)
		return r;
	if ((r = p_cuMemAddressReserve(&m->va, va, 0, 0, 0)) != CUDA_SUCCESS) {
		p_cuMemRelease(m->h);
		return r;
	}
	m->va_size = va;
	m->size = size;
	if ((r = p_cuMemMap(m->va, size, 0, m->h, 0)) != CUDA_SUCCESS ||
	    (r = set_rw(m->va, size)) != CUDA_SUCCESS) {
		p_cuMemUnmap(m->va, size);
		p_cuMemAddressFree(m->va, va);
		p_cuMemRelease(m->h);
		m->va = 0;
		return r;
	}
	return CUDA_SUCCESS;
}

static void
map_free(struct mapped *m)
{
	if (m->va == 0)
		return;
	p_cuMemUnmap(m->va, m->size);
	p_cuMemAddressFree(m->va, m->va_size);
	p_cuMemRelease(m->h);
	m->va = 0;
}

static void
fill_pattern(unsigned char *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)((i * 31 + seed) % 251);
}

/* ---- driver and device -------------------------------------------------------- */

static int
load_driver(void)
{
	CUresult (*gpa)(const char *, void **, int, cuuint64_t,
	    CUdriverProcAddressQueryResult *);
	CUdriverProcAddressQueryResult st;

	if ((drv = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)) == NULL) {
		fprintf(stderr, "gpu-probe: %s\n", dlerror());
		return -1;
	}
	*(void **)&gpa = dlsym(drv, "cuGetProcAddress_v2");
	if (gpa == NULL) {
		fprintf(stderr, "gpu-probe: libcuda.so.1 has no cuGetProcAddress_v2\n");
		return -1;
	}
#define RESOLVE(f)							\
	if (gpa(#f, (void **)&p_##f, CUDA_VERSION_WANTED, 0, &st) != CUDA_SUCCESS) \
		p_##f = NULL;
	PROBE_FUNCS(RESOLVE)
#undef RESOLVE
	if (p_cuInit == NULL || p_cuDeviceGet == NULL || p_cuMemCreate == NULL) {
		fprintf(stderr, "gpu-probe: the driver lacks the VMM entry points\n");
		return -1;
	}
	return 0;
}

static int
probe_device(void)
{
	CUmemAllocationProp prop;
	int ver = 0, n = 0, v;
	char name[256] = "";
	CUresult r;

	if ((r = p_cuInit(0)) != CUDA_SUCCESS) {
		fprintf(stderr, "gpu-probe: cuInit: %s\n", err_name(r));
		return -1;
	}
	p_cuDriverGetVersion(&ver);
	p_cuDeviceGetCount(&n);
	printf("driver.version: %d\n", ver);
	printf("driver.devices: %d\n", n);
	if (dev_ordinal >= n) {
		fprintf(stderr, "gpu-probe: device %d of %d\n", dev_ordinal, n);
		return -1;
	}
	p_cuDeviceGet(&dev, dev_ordinal);
	p_cuDeviceGetName(name, sizeof(name), dev);
	printf("device.name: %s\n", name);
	{
		static const struct { const char *name; CUdevice_attribute a; } attrs[] = {
			{ "vmm_supported", CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED },
			{ "posix_fd_supported", CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED },
			{ "rdma_with_vmm", CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED },
			{ "compute_mode", CU_DEVICE_ATTRIBUTE_COMPUTE_MODE },
		};
		for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
			r = p_cuDeviceGetAttribute(&v, attrs[i].a, dev);
			if (r == CUDA_SUCCESS)
				printf("device.%s: %d\n", attrs[i].name, v);
			else
				printf("device.%s: %s\n", attrs[i].name, err_name(r));
		}
	}
	prop = vmm_prop();
	if ((r = p_cuMemGetAllocationGranularity(&gran, &prop,
	    CU_MEM_ALLOC_GRANULARITY_MINIMUM)) != CUDA_SUCCESS) {
		fprintf(stderr, "gpu-probe: granularity: %s\n", err_name(r));
		return -1;
	}
	printf("granularity.minimum: %zu\n", gran);
	{
		size_t rec = 0;

		r = p_cuMemGetAllocationGranularity(&rec, &prop,
		    CU_MEM_ALLOC_GRANULARITY_RECOMMENDED);
		if (r == CUDA_SUCCESS)
			printf("granularity.recommended: %zu\n", rec);
		else
			printf("granularity.recommended: %s\n", err_name(r));
	}
	return 0;
}

/* ---- facts -------------------------------------------------------------------- */

/* Does cuGetProcAddress hand out the exported symbols, or internal entry
 * points a dlsym-only interposer would miss? */
static void
probe_procaddr(void)
{
	static const struct { const char *base, *sym; } names[] = {
		{ "cuMemAlloc", "cuMemAlloc_v2" }, { "cuMemFree", "cuMemFree_v2" },
		{ "cuMemGetInfo", "cuMemGetInfo_v2" }, { "cuMemCreate", "cuMemCreate" },
		{ "cuMemMap", "cuMemMap" }, { "cuMemAllocAsync", "cuMemAllocAsync" },
		{ "cuMemFreeAsync", "cuMemFreeAsync" },
		{ "cuCtxSynchronize", "cuCtxSynchronize" },
	};
	CUresult (*gpa)(const char *, void **, int, cuuint64_t,
	    CUdriverProcAddressQueryResult *);
	CUdriverProcAddressQueryResult st;
	int same = 0, differ = 0, missing = 0;

	*(void **)&gpa = dlsym(drv, "cuGetProcAddress_v2");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		void *a = NULL, *b = dlsym(drv, names[i].sym);

		if (gpa(names[i].base, &a, CUDA_VERSION_WANTED, 0, &st) != CUDA_SUCCESS ||
		    a == NULL || b == NULL) {
			missing++;
			continue;
		}
		if (a == b)
			same++;
		else
			differ++;
	}
	printf("procaddr.matches_dlsym: %d same, %d differ, %d missing\n",
	    same, differ, missing);
}

/* cuMemMap of part of a handle (offset and size within it). */
static void
probe_partial_map(void)
{
	size_t n = 4096;
	unsigned char *in = malloc(2 * gran), *out = malloc(n);
	struct mapped whole;
	CUdeviceptr va = 0;
	CUresult r;

	if (in == NULL || out == NULL || map_new(&whole, 2 * gran, 2 * gran) != CUDA_SUCCESS) {
		printf("partial_map: setup failed\n");
		goto out;
	}
	fill_pattern(in, 2 * gran, 7);
	p_cuMemcpyHtoD(whole.va, in, 2 * gran);
	p_cuCtxSynchronize();
	if ((r = p_cuMemAddressReserve(&va, gran, 0, 0, 0)) != CUDA_SUCCESS) {
		printf("partial_map: reserve: %s\n", err_name(r));
		goto unmap;
	}
	/* The first half (offset 0, size within the handle). */
	r = p_cuMemMap(va, gran, 0, whole.h, 0);
	if (r == CUDA_SUCCESS) {
		if (set_rw(va, gran) == CUDA_SUCCESS &&
		    p_cuMemcpyDtoH(out, va, n) == CUDA_SUCCESS)
			printf("partial_map.offset0: supported, data %s\n",
			    memcmp(out, in, n) == 0 ? "matches" : "WRONG");
		else
			printf("partial_map.offset0: mapped, but access or copy failed\n");
		p_cuMemUnmap(va, gran);
	} else {
		printf("partial_map.offset0: %s\n", err_name(r));
	}
	/* The second half: a nonzero offset (cuda.h: "currently must be 0"). */
	r = p_cuMemMap(va, gran, gran, whole.h, 0);
	if (r != CUDA_SUCCESS) {
		printf("partial_map: %s\n", err_name(r));
	} else {
		if (set_rw(va, gran) == CUDA_SUCCESS &&
		    p_cuMemcpyDtoH(out, va, n) == CUDA_SUCCESS)
			printf("partial_map: supported, data %s\n",
			    memcmp(out, in + gran, n) == 0 ? "matches" : "WRONG");
		else
			printf("partial_map: mapped, but access or copy failed\n");
		p_cuMemUnmap(va, gran);
	}
	p_cuMemAddressFree(va, gran);
unmap:
	map_free(&whole);
out:
	free(in);
	free(out);
}

/* Export a handle that was itself imported. */
static void
probe_reexport(void)
{
	CUmemAllocationProp prop = vmm_prop();
	CUmemGenericAllocationHandle h, h2;
	int fd = -1, fd2 = -1;
	CUresult r;

	if (p_cuMemCreate(&h, gran, &prop, 0) != CUDA_SUCCESS) {
		printf("reexport_imported: setup failed\n");
		return;
	}
	r = p_cuMemExportToShareableHandle(&fd, h,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
	if (r == CUDA_SUCCESS)
		r = p_cuMemImportFromShareableHandle(&h2, (void *)(uintptr_t)fd,
		    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
	if (r != CUDA_SUCCESS) {
		printf("reexport_imported: export/import failed: %s\n", err_name(r));
	} else {
		r = p_cuMemExportToShareableHandle(&fd2, h2,
		    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
		printf("reexport_imported: %s\n", r == CUDA_SUCCESS ? "works" : err_name(r));
		if (r == CUDA_SUCCESS)
			close(fd2);
		p_cuMemRelease(h2);
	}
	if (fd >= 0)
		close(fd);
	p_cuMemRelease(h);
}

/* The child of probe_survival: make a chunk, fill it, send its fd, exit. */
static int
child_export(int sock)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct msghdr mh;
	struct cmsghdr *c;
	struct iovec iov;
	unsigned char *in;
	struct mapped m;
	char one = 1;
	int fd;

	if (probe_device() != 0 || map_new(&m, gran, gran) != CUDA_SUCCESS)
		return 1;
	if ((in = malloc(gran)) == NULL)
		return 1;
	fill_pattern(in, gran, 42);
	if (p_cuMemcpyHtoD(m.va, in, gran) != CUDA_SUCCESS ||
	    p_cuCtxSynchronize() != CUDA_SUCCESS ||
	    p_cuMemExportToShareableHandle(&fd, m.h,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0) != CUDA_SUCCESS)
		return 1;
	map_free(&m);
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = &one;
	iov.iov_len = 1;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof(cbuf);
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	free(in);
	return sendmsg(sock, &mh, 0) == 1 ? 0 : 1;
}

/* Does an exported chunk outlive the process that created it, while only
 * its fd (in flight, then here) holds it? */
static void
probe_survival(const char *self)
{
	char cbuf[CMSG_SPACE(sizeof(int))], arg[32], one;
	unsigned char *in = malloc(gran), *out = malloc(gran);
	CUmemGenericAllocationHandle h;
	CUdeviceptr va = 0;
	struct msghdr mh;
	struct cmsghdr *c;
	struct iovec iov;
	int sv[2], fd = -1, status;
	pid_t pid;

	if (in == NULL || out == NULL ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
		printf("export_survives_exporter: setup failed\n");
		goto out;
	}
	snprintf(arg, sizeof(arg), "%d", sv[1]);
	if ((pid = fork()) == 0) {
		close(sv[0]);
		execl(self, self, "--child-export", arg, "--device",
		    dev_ordinal == 0 ? "0" : "1", (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		printf("export_survives_exporter: the exporting child failed\n");
		close(sv[0]);
		goto out;
	}
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = &one;
	iov.iov_len = 1;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof(cbuf);
	if (recvmsg(sv[0], &mh, MSG_CMSG_CLOEXEC) == 1 &&
	    (c = CMSG_FIRSTHDR(&mh)) != NULL && c->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	close(sv[0]);
	if (fd < 0) {
		printf("export_survives_exporter: no fd received\n");
		goto out;
	}
	fill_pattern(in, gran, 42);
	if (p_cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)fd,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) != CUDA_SUCCESS) {
		printf("export_survives_exporter: import failed\n");
	} else {
		if (p_cuMemAddressReserve(&va, gran, 0, 0, 0) == CUDA_SUCCESS &&
		    p_cuMemMap(va, gran, 0, h, 0) == CUDA_SUCCESS &&
		    set_rw(va, gran) == CUDA_SUCCESS &&
		    p_cuMemcpyDtoH(out, va, gran) == CUDA_SUCCESS)
			printf("export_survives_exporter: yes, data %s\n",
			    memcmp(in, out, gran) == 0 ? "intact" : "WRONG");
		else
			printf("export_survives_exporter: imported, but map or copy failed\n");
		if (va != 0) {
			p_cuMemUnmap(va, gran);
			p_cuMemAddressFree(va, gran);
		}
		p_cuMemRelease(h);
	}
	close(fd);
out:
	free(in);
	free(out);
}

/* Which calls may run while a stream is being captured, in each mode? */
static void
probe_capture(void)
{
	static const struct { const char *name; CUstreamCaptureMode m; } modes[] = {
		{ "global", CU_STREAM_CAPTURE_MODE_GLOBAL },
		{ "thread_local", CU_STREAM_CAPTURE_MODE_THREAD_LOCAL },
		{ "relaxed", CU_STREAM_CAPTURE_MODE_RELAXED },
	};
	static const char *calls[] = { "cuCtxSynchronize", "cuMemAlloc",
	    "cuMemFree", "cuMemCreate", "cuMemMap", "cuMemSetAccess",
	    "cuMemUnmap", "cuMemRelease", "cuMemGetInfo" };
	CUmemAllocationProp prop = vmm_prop();

	if (p_cuStreamBeginCapture == NULL || p_cuStreamEndCapture == NULL) {
		printf("capture: n/a (no stream capture in this driver)\n");
		return;
	}
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		for (size_t j = 0; j < sizeof(calls) / sizeof(calls[0]); j++) {
			CUmemGenericAllocationHandle h = 0, h2 = 0;
			CUdeviceptr va = 0, d = 0, d2 = 0;
			CUresult r = CUDA_ERROR_UNKNOWN, re;
			size_t fr, tot;
			CUgraph g = NULL;
			CUstream s;
			bool mapped = false;

			/* Set-up outside the capture. */
			if (p_cuStreamCreate(&s, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS)
				break;
			p_cuMemCreate(&h, gran, &prop, 0);
			p_cuMemAddressReserve(&va, gran, 0, 0, 0);
			if (strcmp(calls[j], "cuMemSetAccess") == 0 ||
			    strcmp(calls[j], "cuMemUnmap") == 0)
				mapped = p_cuMemMap(va, gran, 0, h, 0) == CUDA_SUCCESS;
			if (strcmp(calls[j], "cuMemFree") == 0)
				p_cuMemAlloc(&d2, gran);

			if (p_cuStreamBeginCapture(s, modes[i].m) != CUDA_SUCCESS) {
				printf("capture.%s: cannot begin\n", modes[i].name);
				goto cleanup;
			}
			switch (j) {
			case 0: r = p_cuCtxSynchronize(); break;
			case 1: r = p_cuMemAlloc(&d, gran); break;
			case 2: r = p_cuMemFree(d2); if (r == CUDA_SUCCESS) d2 = 0; break;
			case 3: r = p_cuMemCreate(&h2, gran, &prop, 0); break;
			case 4: r = p_cuMemMap(va, gran, 0, h, 0); mapped = r == CUDA_SUCCESS; break;
			case 5: r = set_rw(va, gran); break;
			case 6: r = p_cuMemUnmap(va, gran); if (r == CUDA_SUCCESS) mapped = false; break;
			case 7: r = p_cuMemRelease(h); if (r == CUDA_SUCCESS) h = 0; break;
			case 8: r = p_cuMemGetInfo(&fr, &tot); break;
			}
			re = p_cuStreamEndCapture(s, &g);
			printf("capture.%s.%s: call %s, capture %s\n", modes[i].name,
			    calls[j], err_name(r), re == CUDA_SUCCESS ? "valid" : err_name(re));
			if (g != NULL && p_cuGraphDestroy != NULL)
				p_cuGraphDestroy(g);
cleanup:
			p_cuCtxSynchronize();
			if (d != 0)
				p_cuMemFree(d);
			if (d2 != 0)
				p_cuMemFree(d2);
			if (h2 != 0)
				p_cuMemRelease(h2);
			if (mapped)
				p_cuMemUnmap(va, gran);
			if (va != 0)
				p_cuMemAddressFree(va, gran);
			if (h != 0)
				p_cuMemRelease(h);
			p_cuStreamDestroy(s);
		}
	}
}

/* Legacy IPC handles: VMM memory and cuMemAlloc memory. */
static void
probe_ipc(void)
{
	CUipcMemHandle ih;
	struct mapped m;
	CUdeviceptr d;
	CUresult r;

	if (p_cuIpcGetMemHandle == NULL) {
		printf("ipc: n/a\n");
		return;
	}
	if (map_new(&m, gran, gran) == CUDA_SUCCESS) {
		r = p_cuIpcGetMemHandle(&ih, m.va);
		printf("ipc.vmm_memory: %s\n", r == CUDA_SUCCESS ? "handle given" : err_name(r));
		map_free(&m);
	}
	if (p_cuMemAlloc(&d, gran) == CUDA_SUCCESS) {
		r = p_cuIpcGetMemHandle(&ih, d);
		printf("ipc.cumemalloc_memory: %s\n", r == CUDA_SUCCESS ? "handle given" : err_name(r));
		p_cuMemFree(d);
	}
}

/* What range queries report inside a reservation of two chunks. */
static void
probe_ranges(void)
{
	CUmemAllocationProp prop = vmm_prop();
	CUmemGenericAllocationHandle h[2];
	CUdeviceptr va, base = 0, start = 0;
	size_t size = 0, rsize = 0;
	CUresult r1, r2;

	if (p_cuMemCreate(&h[0], gran, &prop, 0) != CUDA_SUCCESS)
		return;
	if (p_cuMemCreate(&h[1], gran, &prop, 0) != CUDA_SUCCESS) {
		p_cuMemRelease(h[0]);
		return;
	}
	if (p_cuMemAddressReserve(&va, 3 * gran, 0, 0, 0) == CUDA_SUCCESS) {
		if (p_cuMemMap(va, gran, 0, h[0], 0) == CUDA_SUCCESS &&
		    p_cuMemMap(va + gran, gran, 0, h[1], 0) == CUDA_SUCCESS &&
		    set_rw(va, 2 * gran) == CUDA_SUCCESS) {
			r1 = p_cuMemGetAddressRange(&base, &size, va + gran + 1);
			printf("range.cuMemGetAddressRange: %s", err_name(r1));
			if (r1 == CUDA_SUCCESS)
				printf(", base reservation+%" PRIu64 ", size %zu granules",
				    (uint64_t)(base - va), size / gran);
			printf("\n");
			r1 = p_cuPointerGetAttribute(&start,
			    CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, va + gran + 1);
			r2 = p_cuPointerGetAttribute(&rsize,
			    CU_POINTER_ATTRIBUTE_RANGE_SIZE, va + gran + 1);
			printf("range.pointer_attribute: %s/%s", err_name(r1), err_name(r2));
			if (r1 == CUDA_SUCCESS && r2 == CUDA_SUCCESS)
				printf(", start reservation+%" PRIu64 ", size %zu granules",
				    (uint64_t)(start - va), rsize / gran);
			printf("\n");
		}
		p_cuMemUnmap(va, gran);
		p_cuMemUnmap(va + gran, gran);
		p_cuMemAddressFree(va, 3 * gran);
	}
	p_cuMemRelease(h[0]);
	p_cuMemRelease(h[1]);
}

/* p50/p99 of each call vmmd and its clients make. */
static void
probe_latency(void)
{
	enum { CREATE, RELEASE, RESERVE, FREEVA, MAP, UNMAP, ACCESS, EXPORT,
	    IMPORT, ALLOC, FREE, INFO, NCALLS };
	static const char *names[NCALLS] = { "cuMemCreate", "cuMemRelease",
	    "cuMemAddressReserve", "cuMemAddressFree", "cuMemMap", "cuMemUnmap",
	    "cuMemSetAccess", "cuMemExportToShareableHandle",
	    "cuMemImportFromShareableHandle", "cuMemAlloc", "cuMemFree",
	    "cuMemGetInfo" };
	CUmemAllocationProp prop = vmm_prop();
	double *v[NCALLS], t;
	int n[NCALLS] = { 0 };

	for (int c = 0; c < NCALLS; c++)
		if ((v[c] = calloc((size_t)iterations, sizeof(double))) == NULL)
			goto out;
	for (int i = 0; i < iterations; i++) {
		CUmemGenericAllocationHandle h, h2;
		CUdeviceptr va, d;
		size_t fr, tot;
		int fd;

		t = now_us();
		if (p_cuMemCreate(&h, gran, &prop, 0) != CUDA_SUCCESS)
			break;
		v[CREATE][n[CREATE]++] = now_us() - t;
		t = now_us();
		if (p_cuMemAddressReserve(&va, gran, 0, 0, 0) == CUDA_SUCCESS) {
			v[RESERVE][n[RESERVE]++] = now_us() - t;
			t = now_us();
			if (p_cuMemMap(va, gran, 0, h, 0) == CUDA_SUCCESS) {
				v[MAP][n[MAP]++] = now_us() - t;
				t = now_us();
				if (set_rw(va, gran) == CUDA_SUCCESS)
					v[ACCESS][n[ACCESS]++] = now_us() - t;
				t = now_us();
				if (p_cuMemUnmap(va, gran) == CUDA_SUCCESS)
					v[UNMAP][n[UNMAP]++] = now_us() - t;
			}
			t = now_us();
			if (p_cuMemAddressFree(va, gran) == CUDA_SUCCESS)
				v[FREEVA][n[FREEVA]++] = now_us() - t;
		}
		t = now_us();
		if (p_cuMemExportToShareableHandle(&fd, h,
		    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0) == CUDA_SUCCESS) {
			v[EXPORT][n[EXPORT]++] = now_us() - t;
			t = now_us();
			if (p_cuMemImportFromShareableHandle(&h2, (void *)(uintptr_t)fd,
			    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) == CUDA_SUCCESS) {
				v[IMPORT][n[IMPORT]++] = now_us() - t;
				p_cuMemRelease(h2);
			}
			close(fd);
		}
		t = now_us();
		if (p_cuMemRelease(h) == CUDA_SUCCESS)
			v[RELEASE][n[RELEASE]++] = now_us() - t;
		t = now_us();
		if (p_cuMemAlloc(&d, gran) == CUDA_SUCCESS) {
			v[ALLOC][n[ALLOC]++] = now_us() - t;
			t = now_us();
			if (p_cuMemFree(d) == CUDA_SUCCESS)
				v[FREE][n[FREE]++] = now_us() - t;
		}
		t = now_us();
		if (p_cuMemGetInfo(&fr, &tot) == CUDA_SUCCESS)
			v[INFO][n[INFO]++] = now_us() - t;
	}
	for (int c = 0; c < NCALLS; c++)
		print_latency(names[c], v[c], n[c]);
out:
	for (int c = 0; c < NCALLS; c++)
		free(v[c]);
}

static void CUDA_CB
host_sleep(void *arg)
{
	struct timespec ts = { 0, *(long *)arg * 1000000L };

	nanosleep(&ts, NULL);
}

/* A synchronization of an idle context next to one of a context with work
 * pending (a host function that sleeps, no kernel needed). */
static void
probe_sync(void)
{
	double *v = calloc((size_t)iterations, sizeof(double)), t;
	static long busy_ms = 20;
	CUstream s;
	CUresult q;
	int n = 0;

	if (v == NULL)
		return;
	for (int i = 0; i < iterations; i++) {
		t = now_us();
		if (p_cuCtxSynchronize() == CUDA_SUCCESS)
			v[n++] = now_us() - t;
	}
	print_latency("cuCtxSynchronize_idle", v, n);
	free(v);
	if (p_cuLaunchHostFunc == NULL ||
	    p_cuStreamCreate(&s, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS) {
		printf("sync.busy: n/a (no cuLaunchHostFunc)\n");
		return;
	}
	t = now_us();
	if (p_cuLaunchHostFunc(s, host_sleep, &busy_ms) != CUDA_SUCCESS) {
		printf("sync.busy: n/a (cuLaunchHostFunc failed)\n");
	} else {
		q = p_cuStreamQuery(s);
		p_cuCtxSynchronize();
		printf("sync.busy: query while busy %s, cuCtxSynchronize waited "
		    "%.1f ms for %ld ms of work\n", err_name(q),
		    (now_us() - t) / 1e3, busy_ms);
	}
	p_cuStreamDestroy(s);
}

int
main(int argc, char **argv)
{
	CUcontext ctx;
	int child = -1;

	for (int i = 1; i < argc; i++) {
		char *end;
		long v;

		if (i + 1 >= argc)
			goto usage;
		errno = 0;
		v = strtol(argv[i + 1], &end, 10);
		if (errno != 0 || *end != '\0' || end == argv[i + 1] || v < 0 ||
		    v > 1000000)
			goto usage;
		if (strcmp(argv[i], "--device") == 0 && v < 64)
			dev_ordinal = (int)v;
		else if (strcmp(argv[i], "--iterations") == 0 && v >= 1)
			iterations = (int)v;
		else if (strcmp(argv[i], "--child-export") == 0)
			child = (int)v;
		else
			goto usage;
		i++;
	}
	if (load_driver() != 0)
		return 1;
	if (child >= 0) {
		/* No stdout from the child: its facts are the parent's. */
		if (freopen("/dev/null", "w", stdout) == NULL)
			return 1;
		if (p_cuInit(0) != CUDA_SUCCESS ||
		    p_cuDeviceGet(&dev, dev_ordinal) != CUDA_SUCCESS ||
		    p_cuDevicePrimaryCtxRetain(&ctx, dev) != CUDA_SUCCESS ||
		    p_cuCtxSetCurrent(ctx) != CUDA_SUCCESS)
			return 1;
		return child_export(child);
	}
	if (probe_device() != 0)
		return 1;
	if (p_cuDevicePrimaryCtxRetain(&ctx, dev) != CUDA_SUCCESS ||
	    p_cuCtxSetCurrent(ctx) != CUDA_SUCCESS) {
		fprintf(stderr, "gpu-probe: no context on device %d\n", dev_ordinal);
		return 1;
	}
	probe_procaddr();
	probe_partial_map();
	probe_reexport();
	probe_survival("/proc/self/exe");
	probe_capture();
	probe_ipc();
	probe_ranges();
	probe_latency();
	probe_sync();
	fflush(stdout);
	p_cuDevicePrimaryCtxRelease(dev);
	return 0;
usage:
	fprintf(stderr, "usage: gpu-probe [--device N] [--iterations N]\n");
	return 2;
}
