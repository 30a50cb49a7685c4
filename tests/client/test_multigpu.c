/*
 * Several GPUs in one unmodified program under LD_PRELOAD=libvmm_client.so
 * (CUEMU_DEVICES=2), one vmmd per device in one socket directory.  One
 * scenario per argument:
 *
 *   lazy       with a lazily binding runtime (CUEMU_RUNTIME_LAZY_BIND=1),
 *              cudaSetDevice(1) then cudaMalloc: the memory is device 1's
 *              (pointer attribute, copies from a device-1 context, device
 *              1's vmmd lends it), not the driver's current context's
 *   alternate  allocations alternating devices, small and large, data
 *              checked from each device's own context, freed back to the
 *              right daemon
 *   peer       cudaDeviceEnablePeerAccess: device 1's context may copy
 *              device 0's pooled memory, mapped before and after; not
 *              before, nor after cudaDeviceDisablePeerAccess
 *   peer_drv   the same through the driver: cuCtxEnablePeerAccess found
 *              with dlsym on libcuda's handle, cuCtxDisablePeerAccess
 *              through cuGetProcAddress (a static runtime's path)
 *   peer_link  the same, both called as linked symbols
 *   peer_none  VMM_PEER_ACCESS=none: enabling changes nothing
 *   peer_all   VMM_PEER_ACCESS=all: device 1 may copy device 0's memory
 *              without enabling anything
 *   peer_race  threads map new memory on device 0 while peer access is
 *              switched on, or off: then every live allocation is device
 *              1's to copy, or none is
 *   native     native memory (the program's own cuMemCreate, managed
 *              memory) of device 1 shows in device 1's vmmd only
 *
 * Copies from a context of the other device stand for a kernel there: the
 * emulator refuses them unless that device was granted access.
 */
#include <cuda.h>
#include <cuda_runtime_api.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"
#include "vmm_client.h"

#define MiB (1ull << 20)
#define CKRT(call) CHECK((call) == cudaSuccess)

static char	sockdir[1024];
static pid_t	daemons[2];
static CUcontext ctx[2];
static int (*p_flush)(void);

/* Starts vmmd for devices 0 and 1 in sockdir; waits until both listen. */
static void
start_daemons(void)
{
	static const char *const dev1[] = { "--device", "1", NULL };
	char path[1100];
	int i, fd;

	daemons[0] = tc_start_daemon(sockdir, "idle_timeout_ms = 0\n", NULL);
	/* tc_start_daemon waits for gpu0.sock, which is already there. */
	daemons[1] = tc_start_daemon(sockdir, "idle_timeout_ms = 0\n", dev1);
	CHECK(vmm_sess_path_index(path, sizeof(path), sockdir, 1) == 0);
	for (i = 0; i < 500; i++) {
		if ((fd = tc_connect_raw(path)) >= 0) {
			close(fd);
			return;
		}
		tc_sleep_ms(20);
	}
	CHECK(!"vmmd for device 1 did not start listening");
}

/* Bytes device dev's vmmd has lent. */
static uint64_t
lent(int dev)
{
	char path[1100];
	struct tc *adm;
	Vmm__PoolStats ps;

	CHECK(vmm_sess_path_index(path, sizeof(path), sockdir, (unsigned)dev) ==
	    0);
	adm = tc_open(path, "admin", true);
	CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
	tc_close(adm);
	return ps.lent_bytes;
}

/* Both primary contexts, retained through the driver (the runtime retains
 * the same ones). */
static void
contexts(void)
{
	CHECK_OK(cuInit(0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx[0], 0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx[1], 1));
}

static void
pattern(unsigned char *b, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (unsigned char)(seed * 29 + i * 13 + (i >> 11));
}

/* Writes the pattern through p and reads it back from device dev's
 * context; 1 if it worked, 0 if the emulator refused (no access).  The
 * driver's current context is restored. */
static int
copy_from(int dev, const void *p, size_t n, unsigned seed)
{
	CUdeviceptr d = (CUdeviceptr)(uintptr_t)p;
	unsigned char *in = malloc(n), *out = malloc(n);
	CUcontext old = NULL;
	CUresult r;
	int ok = 0;

	CHECK(in != NULL && out != NULL);
	CHECK_OK(cuCtxGetCurrent(&old));
	CHECK_OK(cuCtxSetCurrent(ctx[dev]));
	pattern(in, n, seed);
	if ((r = cuMemcpyHtoD(d, in, n)) == CUDA_SUCCESS) {
		CHECK_OK(cuMemcpyDtoH(out, d, n));
		CHECK(memcmp(in, out, n) == 0);
		ok = 1;
	} else {
		CHECK(r == CUDA_ERROR_INVALID_VALUE);
		CHECK(cuMemcpyDtoH(out, d, n) == CUDA_ERROR_INVALID_VALUE);
	}
	CHECK_OK(cuCtxSetCurrent(old));
	free(in);
	free(out);
	return ok;
}

/* The device a pointer belongs to, asked of the driver. */
static int
ordinal(const void *p)
{
	int ord = -1;

	CHECK_OK(cuPointerGetAttribute(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
	    (CUdeviceptr)(uintptr_t)p));
	return ord;
}

/* The device of the driver's current context, -1 if none. */
static int
driver_device(void)
{
	CUcontext c = NULL;
	CUdevice d = -1;

	CHECK_OK(cuCtxGetCurrent(&c));
	if (c == NULL)
		return -1;
	CHECK_OK(cuCtxGetDevice(&d));
	return d;
}

/* This process's session at device dev's vmmd: its cumemcreate and
 * managed bytes (0, 0 if it has no session there). */
static void
native_at(int dev, uint64_t *create, uint64_t *managed)
{
	Vmm__ClientsRequest cr = VMM__CLIENTS_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_clients_request(&cr);
	const Vmm__ClientsReply *r;
	struct vmm_frame_msg *m;
	char path[1100];
	struct tc *adm;
	size_t i;

	CHECK(vmm_sess_path_index(path, sizeof(path), sockdir, (unsigned)dev) ==
	    0);
	adm = tc_open(path, "admin", true);
	m = tc_call_expect(adm, &env, VMM__ENVELOPE__MSG_CLIENTS_REPLY);
	r = vmm_frame_msg_env(m)->clients_reply;
	*create = *managed = 0;
	for (i = 0; i < r->n_sessions; i++) {
		if (r->sessions[i]->pid != (uint32_t)getpid() ||
		    r->sessions[i]->kind != VMM__CLIENT_KIND__CLIENT_KIND_APP)
			continue;
		*create = r->sessions[i]->native_cumemcreate_bytes;
		*managed = r->sessions[i]->native_managed_bytes;
	}
	vmm_frame_msg_free(m);
	tc_close(adm);
}

/* Waits (up to 10 s) until both vmmds show the figures wanted. */
static void
native_expect(uint64_t create1, uint64_t managed1)
{
	uint64_t c0, m0, c1, m1;
	int i;

	for (i = 0; i < 200; i++) {
		native_at(0, &c0, &m0);
		native_at(1, &c1, &m1);
		if (c0 == 0 && m0 == 0 && c1 == create1 && m1 == managed1)
			return;
		tc_sleep_ms(50);
	}
	fprintf(stderr, "device 0: %llu %llu, device 1: %llu %llu\n",
	    (unsigned long long)c0, (unsigned long long)m0,
	    (unsigned long long)c1, (unsigned long long)m1);
	CHECK(!"the native figures never reached the expected values");
}

/* ---- scenarios ------------------------------------------------------------ */

static void
sc_native(void)
{
	CUmemAllocationProp prop;
	CUmemGenericAllocationHandle h;
	void *a0, *a1, *mm;
	size_t gran;

	start_daemons();
	contexts();
	/* A session at each vmmd. */
	CKRT(cudaSetDevice(0));
	CKRT(cudaMalloc(&a0, 4096));
	CKRT(cudaSetDevice(1));
	CKRT(cudaMalloc(&a1, 4096));
	CHECK(ordinal(a0) == 0 && ordinal(a1) == 1);
	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = 1;
	CHECK_OK(cuMemGetAllocationGranularity(&gran, &prop,
	    CU_MEM_ALLOC_GRANULARITY_MINIMUM));
	/* Device 1's, whatever the current context (device 1's now). */
	CHECK_OK(cuMemCreate(&h, 3 * gran, &prop, 0));
	CKRT(cudaMallocManaged(&mm, 5 * MiB, cudaMemAttachGlobal));
	native_expect(3 * gran, 5 * MiB);
	CHECK_OK(cuMemRelease(h));
	CKRT(cudaFree(mm));
	native_expect(0, 0);
	CKRT(cudaFree(a1));
	CKRT(cudaSetDevice(0));
	CKRT(cudaFree(a0));
}

static void
sc_lazy(void)
{
	void *big, *small;
	int d = -1;

	start_daemons();
	contexts();
	CKRT(cudaFree(NULL));
	CHECK(driver_device() == 0);
	CKRT(cudaSetDevice(1));
	CKRT(cudaGetDevice(&d));
	CHECK(d == 1);
	/* The lazily binding runtime has not switched yet. */
	CHECK(driver_device() == 0);
	CKRT(cudaMalloc(&big, 6 * MiB));
	CKRT(cudaMalloc(&small, 4096));
	/* The runtime's device, bound now as the original cudaMalloc does. */
	CHECK(driver_device() == 1);
	CHECK(ordinal(big) == 1 && ordinal(small) == 1);
	CHECK(copy_from(1, big, 6 * MiB, 1));
	CHECK(copy_from(1, small, 4096, 2));
	CHECK(!copy_from(0, big, 4096, 3));
	CHECK(lent(1) >= 8 * MiB && lent(0) == 0);
	CKRT(cudaFree(big));
	CKRT(cudaFree(small));
	CHECK(p_flush() == 0);
	CHECK(lent(1) == 0);
}

#define NALT 24

static void
sc_alternate(void)
{
	static const size_t sizes[] = { 512, 70000, 3 * MiB + 17, 1 * MiB,
	    9 * MiB, 256 };
	void *p[NALT];
	size_t i, n;

	start_daemons();
	contexts();
	for (i = 0; i < NALT; i++) {
		int dev = (int)(i % 2);

		CKRT(cudaSetDevice(dev));
		n = sizes[i % 6];
		CKRT(cudaMalloc(&p[i], n));
		CHECK(ordinal(p[i]) == dev);
		CHECK(copy_from(dev, p[i], n, (unsigned)i));
	}
	CHECK(lent(0) > 0 && lent(1) > 0);
	/* Written from the owner's context, read back through the runtime
	 * on the owner's device; the other device has no access. */
	for (i = 0; i < NALT; i++) {
		int dev = (int)(i % 2);
		unsigned char *got, *want;

		n = sizes[i % 6];
		CHECK((got = malloc(n)) != NULL && (want = malloc(n)) != NULL);
		pattern(want, n, (unsigned)i);
		CKRT(cudaSetDevice(dev));
		CKRT(cudaMemcpy(got, p[i], n, cudaMemcpyDeviceToHost));
		CHECK(memcmp(got, want, n) == 0);
		CHECK(!copy_from(1 - dev, p[i], n < 4096 ? n : 4096, 0));
		free(got);
		free(want);
	}
	for (i = 0; i < NALT; i++) {
		CKRT(cudaSetDevice((int)((i + 1) % 2)));	/* either device */
		CKRT(cudaFree(p[i]));
	}
	CHECK(p_flush() == 0);
	CHECK(lent(0) == 0 && lent(1) == 0);
}

/* Peer access from device 1 to device 0's memory, switched by enable() and
 * disable(); expect: whether it should then cover pooled memory. */
static void
peer_common(void (*enable)(void), void (*disable)(void), int expect)
{
	void *before_big, *before_small, *after;

	start_daemons();
	contexts();
	CKRT(cudaSetDevice(0));
	CKRT(cudaMalloc(&before_big, 5 * MiB));
	CKRT(cudaMalloc(&before_small, 2048));
	CHECK(copy_from(0, before_big, 5 * MiB, 1));
	CHECK(copy_from(1, before_big, 4096, 2) == (expect == 2));
	CKRT(cudaSetDevice(1));
	enable();
	CHECK(copy_from(1, before_big, 5 * MiB, 3) == (expect != 0));
	CHECK(copy_from(1, before_small, 2048, 4) == (expect != 0));
	CKRT(cudaSetDevice(0));
	CKRT(cudaMalloc(&after, 7 * MiB));
	CHECK(ordinal(after) == 0);
	CHECK(copy_from(1, after, 7 * MiB, 5) == (expect != 0));
	/* Unidirectional: device 1's memory stays device 1's. */
	{
		void *mine;

		CKRT(cudaSetDevice(1));
		CKRT(cudaMalloc(&mine, 3 * MiB));
		CHECK(copy_from(0, mine, 4096, 6) == (expect == 2));
		CKRT(cudaFree(mine));
	}
	CKRT(cudaSetDevice(1));
	disable();
	CHECK(copy_from(1, before_big, 4096, 7) == (expect == 2));
	CHECK(copy_from(1, after, 4096, 8) == (expect == 2));
	/* The owner keeps its access. */
	CHECK(copy_from(0, after, 7 * MiB, 9));
	CKRT(cudaSetDevice(0));
	CKRT(cudaFree(before_big));
	CKRT(cudaFree(before_small));
	CKRT(cudaFree(after));
}

static void
rt_enable(void)
{
	int can = 0;

	CKRT(cudaDeviceCanAccessPeer(&can, 1, 0));
	CHECK(can == 1);
	CKRT(cudaDeviceEnablePeerAccess(0, 0));
}

static void
rt_disable(void)
{
	CKRT(cudaDeviceDisablePeerAccess(0));
}

/* From device 1's context, called directly (the shim's export). */
static void
link_enable(void)
{
	CHECK_OK(cuCtxSetCurrent(ctx[1]));
	CHECK_OK(cuCtxEnablePeerAccess(ctx[0], 0));
}

static void
link_disable(void)
{
	CHECK_OK(cuCtxSetCurrent(ctx[1]));
	CHECK_OK(cuCtxDisablePeerAccess(ctx[0]));
}

/* Through dlsym on a handle of libcuda.so.1 (a loader's path): the
 * pointer must be the shim's. */
static void
drv_enable(void)
{
	void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	CUresult (*en)(CUcontext, unsigned int);
	Dl_info di;

	CHECK(lib != NULL);
	en = (CUresult (*)(CUcontext, unsigned int))dlsym(lib,
	    "cuCtxEnablePeerAccess");
	CHECK(en != NULL && dladdr((void *)en, &di) != 0 &&
	    di.dli_fname != NULL && strstr(di.dli_fname, "libvmm_client"));
	CHECK_OK(cuCtxSetCurrent(ctx[1]));
	CHECK_OK(en(ctx[0], 0));
}

/* Through the pointer cuGetProcAddress_v2 of a dlopen'd driver gives. */
static void
drv_disable(void)
{
	typedef CUresult (*gpa_t)(const char *, void **, int, cuuint64_t,
	    CUdriverProcAddressQueryResult *);
	CUresult (*dis)(CUcontext) = NULL;
	CUdriverProcAddressQueryResult st;
	void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	gpa_t gpa;

	CHECK(lib != NULL);
	CHECK((gpa = (gpa_t)dlsym(lib, "cuGetProcAddress_v2")) != NULL);
	CHECK(gpa("cuCtxDisablePeerAccess", (void **)&dis, 12000, 0, &st) ==
	    CUDA_SUCCESS && dis != NULL);
	CHECK_OK(cuCtxSetCurrent(ctx[1]));
	CHECK_OK(dis(ctx[0]));
}

#define RACE_THREADS	4
#define RACE_KEEP	32

static void	*race_p[RACE_THREADS][RACE_KEEP];

/* Makes RACE_KEEP allocations on device 0, all new mappings (the test runs
 * with VMM_CACHE_MAX=0), and keeps them. */
static void *
race_worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg, k = id * 7919 + 1;
	size_t n;
	int j;

	CKRT(cudaSetDevice(0));
	for (j = 0; j < RACE_KEEP; j++) {
		k = k * 1103515245u + 12345u;
		n = (k >> 8) % 4 != 0 ? (2 + (k >> 16) % 3) * MiB :
		    (size_t)256 << ((k >> 12) % 12);
		CKRT(cudaMalloc(&race_p[id][j], n));
	}
	return NULL;
}

/* Each round switches peer access (device 1 to device 0) while threads map
 * new memory on device 0; then every live allocation must follow it. */
static void
sc_peer_race(void)
{
	pthread_t t[RACE_THREADS];
	int round, on, j;
	uintptr_t i;

	start_daemons();
	contexts();
	for (round = 0; round < 48; round++) {
		on = round % 2 == 0;
		for (i = 0; i < RACE_THREADS; i++)
			CHECK(pthread_create(&t[i], NULL, race_worker,
			    (void *)i) == 0);
		tc_sleep_ms(1 + round % 3);
		CKRT(cudaSetDevice(1));
		if (on)
			CKRT(cudaDeviceEnablePeerAccess(0, 0));
		else
			CKRT(cudaDeviceDisablePeerAccess(0));
		for (i = 0; i < RACE_THREADS; i++)
			CHECK(pthread_join(t[i], NULL) == 0);
		for (i = 0; i < RACE_THREADS; i++)
			for (j = 0; j < RACE_KEEP; j++) {
				CHECK(copy_from(1, race_p[i][j], 256,
				    (unsigned)j) == on);
				CHECK(copy_from(0, race_p[i][j], 256, 1));
				CKRT(cudaFree(race_p[i][j]));
				race_p[i][j] = NULL;
			}
	}
}

int
main(int argc, char **argv)
{
	const char *dir = getenv("VMM_SOCKET_DIR"), *sc;
	int i;

	CHECK(argc == 2 && dir != NULL);
	sc = argv[1];
	snprintf(sockdir, sizeof(sockdir), "%s", dir);
	p_flush = (int (*)(void))dlsym(RTLD_DEFAULT, "vmm_flush");
	CHECK(p_flush != NULL);
	if (strcmp(sc, "lazy") == 0)
		sc_lazy();
	else if (strcmp(sc, "alternate") == 0)
		sc_alternate();
	else if (strcmp(sc, "peer") == 0)
		peer_common(rt_enable, rt_disable, 1);
	else if (strcmp(sc, "peer_drv") == 0)
		peer_common(drv_enable, drv_disable, 1);
	else if (strcmp(sc, "peer_link") == 0)
		peer_common(link_enable, link_disable, 1);
	else if (strcmp(sc, "peer_none") == 0)
		peer_common(rt_enable, rt_disable, 0);
	else if (strcmp(sc, "peer_all") == 0)
		peer_common(rt_enable, rt_disable, 2);
	else if (strcmp(sc, "peer_race") == 0)
		sc_peer_race();
	else if (strcmp(sc, "native") == 0)
		sc_native();
	else
		CHECK(!"unknown scenario");
	for (i = 0; i < 2; i++)
		if (daemons[i] > 0)
			CHECK(WIFEXITED(tc_stop_daemon(daemons[i])));
	return 0;
}
