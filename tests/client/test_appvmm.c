/*
 * The application's own VMM served from the pool (issue 11, item 2): an
 * unmodified driver-API program under LD_PRELOAD=libvmm_client.so calls
 * cuMemCreate/cuMemMap/cuMemRelease itself, against a real vmmd.  Sizes
 * are multiples of the unit vmmd announces (PoolStats.granularity), so the
 * .gran4m and .cm2 variants run the same.  One scenario per argument:
 *
 *   basic     reserve, create (no handle type), map, set access, copies with
 *             data checks: the pool lends exactly that chunk (vmmd's lent
 *             bytes, the session's app_vmm_bytes, vmm_get_usage), nothing
 *             counted as native; properties say what was asked (handle type
 *             NONE), an export as POSIX fd is refused as the driver refuses
 *             it; a retain returns the handle and takes one more release;
 *             after unmap and release the chunk is back in vmmd (idle);
 *             a fork child counts none of the parent's
 *   mapped    released while mapped: still readable and writable through
 *             the mapping, still lent; a retain through the mapping is a
 *             reference again; back once unmapped and that released
 *   reuse     two processes: the memory one released is reused by the other
 *             (vmmd creates nothing more)
 *   export    POSIX fd handle exported, sent over a Unix socket to another
 *             process, which imports, maps and reads the data
 *   passthru  what the pool cannot serve goes to the driver: RDMA-capable
 *             (counted as native), host location and fabric handle type
 *             (the driver's own refusal, nothing counted), and with
 *             VMM_APP_VMM=native (argv[2]) every cuMemCreate
 *   nodaemon  no vmmd: the driver serves it, counted as native; with
 *             VMM_REQUIRE_DAEMON=1 (argv[2] "required") what the pool would
 *             serve fails with CUDA_ERROR_OUT_OF_MEMORY, as cudaMalloc does,
 *             and what it would not still goes to the driver
 *   quota     over the quota: CUDA_ERROR_OUT_OF_MEMORY, as the driver
 *   kill      the program is SIGKILLed while it maps pooled handles: vmmd
 *             has the chunks back
 *   async     unmapped and released while an emulated kernel still writes
 *             it: the chunk is not given back before a synchronization
 *             covers the unmap (the kernel has run by the time vmmd has it)
 *   restart   a new vmmd instance: the pooled handles are adopted, and go
 *             back to it after unmap and release
 *   procaddr  the same calls through cuGetProcAddress (as a statically
 *             linked runtime reaches them) and dlsym on libcuda's handle
 */
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime_api.h>

#include <dlfcn.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "../cuemu/cuemu.h"
#include "clock.h"
#include "testclient.h"
#include "vmm_client.h"

#define CKCU(call) CHECK((call) == CUDA_SUCCESS)

static char	sockdir[1024], sockpath[1100];
static uint64_t	unit;		/* vmmd's chunk unit */
static pid_t	daemon_pid;

static int (*p_get_usage)(struct vmm_usage *);
static int (*p_flush)(void);

static void
api_resolve(void)
{
	p_get_usage = (int (*)(struct vmm_usage *))dlsym(RTLD_DEFAULT,
	    "vmm_get_usage");
	p_flush = (int (*)(void))dlsym(RTLD_DEFAULT, "vmm_flush");
	CHECK(p_get_usage != NULL && p_flush != NULL);
}

static struct vmm_usage
usage(void)
{
	struct vmm_usage u;

	CHECK(p_get_usage(&u) == 0);
	return u;
}

static Vmm__PoolStats
pool(void)
{
	struct tc *adm = tc_open(sockpath, "admin", true);
	Vmm__PoolStats ps;

	tc_pool(adm, &ps);
	tc_close(adm);
	return ps;
}

/* Waits (up to 10 s) until vmmd lends exactly lent bytes. */
static void
expect_lent(uint64_t lent)
{
	uint64_t t0 = vmm_now_ms();
	Vmm__PoolStats ps;

	while ((ps = pool()).lent_bytes != lent && vmm_now_ms() - t0 < 10000)
		tc_sleep_ms(20);
	if (ps.lent_bytes != lent)
		fprintf(stderr, "vmmd lends %" PRIu64 ", expected %" PRIu64 "\n",
		    ps.lent_bytes, lent);
	CHECK(ps.lent_bytes == lent);
}

/* The app_vmm_bytes vmmd shows for session pid (waits up to 10 s for want). */
static void
expect_session_app(pid_t pid, uint64_t want)
{
	uint64_t t0 = vmm_now_ms(), got = UINT64_MAX;
	struct tc *adm = tc_open(sockpath, "admin", true);

	do {
		Vmm__Envelope env = VMM__ENVELOPE__INIT;
		Vmm__StatsRequest rq = VMM__STATS_REQUEST__INIT;
		struct vmm_frame_msg *m;
		const Vmm__StatsReply *r;
		size_t i;

		env.msg_case = VMM__ENVELOPE__MSG_STATS_REQUEST;
		env.stats_request = &rq;
		rq.request_id = tc_rid(adm);
		m = tc_call(adm, &env, NULL, 0);
		CHECK(m != NULL);
		r = vmm_frame_msg_env(m)->stats_reply;
		CHECK(r != NULL);
		for (i = 0; i < r->n_sessions; i++)
			if (r->sessions[i]->pid == (uint32_t)pid &&
			    r->sessions[i]->kind ==
			    VMM__CLIENT_KIND__CLIENT_KIND_APP)
				got = r->sessions[i]->app_vmm_bytes;
		vmm_frame_msg_free(m);
		if (got == want)
			break;
		tc_sleep_ms(20);
	} while (vmm_now_ms() - t0 < 10000);
	tc_close(adm);
	if (got != want)
		fprintf(stderr, "session app_vmm_bytes %" PRIu64 ", expected %"
		    PRIu64 "\n", got, want);
	CHECK(got == want);
}

static void
start(const char *conf)
{
	Vmm__PoolStats ps;

	daemon_pid = tc_start_daemon(sockdir, conf, NULL);
	ps = pool();
	unit = ps.granularity;
	CHECK(unit != 0);
}

static CUmemAllocationProp
dev_prop(CUmemAllocationHandleType type)
{
	CUmemAllocationProp prop;

	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = 0;
	prop.requestedHandleTypes = type;
	return prop;
}

/* One application mapping: a reservation with h mapped over it, r/w. */
static CUdeviceptr
map_rw(CUmemGenericAllocationHandle h, size_t size)
{
	CUmemAccessDesc acc;
	CUdeviceptr va;

	CKCU(cuMemAddressReserve(&va, size, 0, 0, 0));
	CKCU(cuMemMap(va, size, 0, h, 0));
	memset(&acc, 0, sizeof(acc));
	acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	acc.location.id = 0;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	CKCU(cuMemSetAccess(va, size, &acc, 1));
	return va;
}

static void
unmap_free(CUdeviceptr va, size_t size)
{
	CKCU(cuMemUnmap(va, size));
	CKCU(cuMemAddressFree(va, size));
}

/* Writes a pattern of seed over [va, va+size) and reads it back. */
static void
fill_check(CUdeviceptr va, size_t size, unsigned seed)
{
	unsigned char *buf = malloc(size), *back = malloc(size);
	size_t i;

	CHECK(buf != NULL && back != NULL);
	for (i = 0; i < size; i++)
		buf[i] = (unsigned char)(i * 31 + seed);
	CKCU(cuMemcpyHtoD(va, buf, size));
	memset(back, 0, size);
	CKCU(cuMemcpyDtoH(back, va, size));
	CHECK(memcmp(buf, back, size) == 0);
	free(buf);
	free(back);
}

/* Reads [va, va+size) and checks seed's pattern. */
static void
check_pattern(CUdeviceptr va, size_t size, unsigned seed)
{
	unsigned char *back = malloc(size);
	size_t i;

	CHECK(back != NULL);
	CKCU(cuMemcpyDtoH(back, va, size));
	for (i = 0; i < size; i++)
		if (back[i] != (unsigned char)(i * 31 + seed))
			break;
	CHECK(i == size);
	free(back);
}

static void
cuda_up(void)
{
	CHECK(cudaSetDevice(0) == cudaSuccess);
	CHECK(cudaFree(NULL) == cudaSuccess);
	api_resolve();
}

/* ---- basic, mapped ---------------------------------------------------------- */

static void
sc_basic(void)
{
	CUmemAllocationProp prop = dev_prop(CU_MEM_HANDLE_TYPE_NONE), got;
	CUmemGenericAllocationHandle h, h2;
	size_t size = 2 * unit;
	CUdeviceptr va;
	struct vmm_usage u;
	pid_t child;
	int fd = -1, st;

	cuda_up();
	CKCU(cuMemCreate(&h, size, &prop, 0));
	expect_lent(size);
	u = usage();
	CHECK(u.app_vmm_bytes == size);
	CHECK(u.native_cumemcreate_bytes == 0);
	expect_session_app(getpid(), size);
	/* What was asked for, not the pooled chunk's POSIX fd type. */
	memset(&got, 0xff, sizeof(got));
	CKCU(cuMemGetAllocationPropertiesFromHandle(&got, h));
	CHECK(got.type == CU_MEM_ALLOCATION_TYPE_PINNED);
	CHECK(got.location.type == CU_MEM_LOCATION_TYPE_DEVICE &&
	    got.location.id == 0);
	CHECK(got.requestedHandleTypes == CU_MEM_HANDLE_TYPE_NONE);
	CHECK(cuMemGetAllocationPropertiesFromHandle(NULL, h) ==
	    CUDA_ERROR_INVALID_VALUE);
	/* A handle created with no shareable type cannot be exported. */
	CHECK(cuMemExportToShareableHandle(&fd, h,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0) ==
	    CUDA_ERROR_NOT_PERMITTED);
	CHECK(fd == -1);
	va = map_rw(h, size);
	fill_check(va, size, 7);
	/* A retain names the same handle and is one more release. */
	CKCU(cuMemRetainAllocationHandle(&h2, (void *)(uintptr_t)(va + unit)));
	CHECK(h2 == h);
	CKCU(cuMemRelease(h2));
	/* A fork child holds none of it. */
	if ((child = fork()) == 0) {
		struct vmm_usage cu;

		_exit(p_get_usage(&cu) == 0 && cu.app_vmm_bytes == 0 ? 0 : 1);
	}
	CHECK(child > 0 && waitpid(child, &st, 0) == child);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	check_pattern(va, size, 7);
	unmap_free(va, size);
	expect_lent(size);	/* the create's reference is left */
	CKCU(cuMemRelease(h));
	expect_lent(0);
	CHECK(pool().idle_bytes >= size);
	u = usage();
	CHECK(u.app_vmm_bytes == 0 && u.native_cumemcreate_bytes == 0);
	expect_session_app(getpid(), 0);
}

static void
sc_mapped(void)
{
	CUmemAllocationProp prop = dev_prop(CU_MEM_HANDLE_TYPE_NONE), got;
	CUmemGenericAllocationHandle h, h2;
	CUdeviceptr va;

	cuda_up();
	CKCU(cuMemCreate(&h, unit, &prop, 0));
	va = map_rw(h, unit);
	fill_check(va, unit, 3);
	CKCU(cuMemRelease(h));
	/* Driver semantics: alive while mapped. */
	CHECK(p_flush() == 0);
	tc_sleep_ms(100);
	expect_lent(unit);
	check_pattern(va, unit, 3);
	fill_check(va, unit, 4);
	/* The mapping still names it: a retain is a reference again. */
	CKCU(cuMemRetainAllocationHandle(&h2, (void *)(uintptr_t)va));
	CHECK(h2 == h);
	CKCU(cuMemGetAllocationPropertiesFromHandle(&got, h2));
	CHECK(got.requestedHandleTypes == CU_MEM_HANDLE_TYPE_NONE);
	CKCU(cuMemUnmap(va, unit));
	CHECK(p_flush() == 0);
	expect_lent(unit);	/* the retain's reference is left */
	CKCU(cuMemRelease(h2));
	CKCU(cuMemAddressFree(va, unit));
	expect_lent(0);
}

/* ---- reuse ------------------------------------------------------------------- */

static int
reuse_child(void *arg, int ctl)
{
	CUmemAllocationProp prop = dev_prop(CU_MEM_HANDLE_TYPE_NONE);
	CUmemGenericAllocationHandle h;
	CUdeviceptr va;
	char c;

	(void)arg;
	cuda_up();
	CKCU(cuMemCreate(&h, 4 * unit, &prop, 0));
	va = map_rw(h, 4 * unit);
	fill_check(va, 4 * unit, 9);
	unmap_free(va, 4 * unit);
	CKCU(cuMemRelease(h));
	CHECK(p_flush() == 0);
	c = 'r';
	tc_ctl_send(ctl, &c, 1);
	tc_ctl_recv(ctl, &c, 1, 10000);
	return 0;
}

static void
sc_reuse(void)
{
	CUmemAllocationProp prop = dev_prop(CU_MEM_HANDLE_TYPE_NONE);
	CUmemGenericAllocationHandle h;
	Vmm__PoolStats before, after;
	CUdeviceptr va;
	pid_t child;
	int ctl;
	char c;

	child = tc_spawn(reuse_child, NULL, &ctl);
	tc_ctl_recv(ctl, &c, 1, 10000);
	expect_lent(0);
	before = pool();
	CHECK(before.physical_bytes >= 4 * unit);
	cuda_up();
	CKCU(cuMemCreate(&h, 4 * unit, &prop, 0));
	after = pool();
	/* The other process's memory, not new memory. */
	fprintf(stderr, "physical before %" PRIu64 ", after %" PRIu64 "\n",
	    before.physical_bytes, after.physical_bytes);
	CHECK(after.physical_bytes == before.physical_bytes);
	CHECK(after.lent_bytes == 4 * unit);
	va = map_rw(h, 4 * unit);
	fill_check(va, 4 * unit, 10);
	unmap_free(va, 4 * unit);
	CKCU(cuMemRelease(h));
	tc_ctl_send(ctl, &c, 1);
	CHECK(tc_wait_child(child, 0) == 0);
	expect_lent(0);
}

/* ---- export -------------------------------------------------------------------- */

static void
send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))], b = 'f';
	struct iovec iov = { &b, 1 };
	struct msghdr mh;
	struct cmsghdr *cm;

	memset(&mh, 0, sizeof(mh));
	memset(cbuf, 0, sizeof(cbuf));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof(cbuf);
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	CHECK(sendmsg(sock, &mh, 0) == 1);
}

static int
recv_fd(int sock)
{
	char cbuf[CMSG_SPACE(sizeof(int))], b;
	struct iovec iov = { &b, 1 };
	struct msghdr mh;
	struct cmsghdr *cm;
	int fd;

	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof(cbuf);
	CHECK(recvmsg(sock, &mh, 0) == 1);
	CHECK((cm = CMSG_FIRSTHDR(&mh)) != NULL && cm->cmsg_type == SCM_RIGHTS);
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

static int
export_child(void *arg, int ctl)
{
	CUmemGenericAllocationHandle h;
	uint64_t size = *(uint64_t *)arg;
	CUdeviceptr va;
	int fd;
	char c = 'k';

	cuda_up();
	fd = recv_fd(ctl);
	CKCU(cuMemImportFromShareableHandle(&h, (void *)(intptr_t)fd,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
	close(fd);
	va = map_rw(h, size);
	check_pattern(va, size, 21);
	unmap_free(va, size);
	CKCU(cuMemRelease(h));
	tc_ctl_send(ctl, &c, 1);
	return 0;
}

static void
sc_export(void)
{
	CUmemAllocationProp prop = dev_prop(
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR), got;
	CUmemGenericAllocationHandle h;
	uint64_t size;
	CUdeviceptr va;
	pid_t child;
	int ctl, fd = -1;
	char c;

	size = 2 * unit;
	child = tc_spawn(export_child, &size, &ctl);
	cuda_up();
	CKCU(cuMemCreate(&h, size, &prop, 0));
	expect_lent(size);
	CKCU(cuMemGetAllocationPropertiesFromHandle(&got, h));
	CHECK(got.requestedHandleTypes ==
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
	va = map_rw(h, size);
	fill_check(va, size, 21);
	CKCU(cuMemExportToShareableHandle(&fd, h,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
	CHECK(fd >= 0);
	send_fd(ctl, fd);
	close(fd);
	tc_ctl_recv(ctl, &c, 1, 10000);
	CHECK(c == 'k');
	CHECK(tc_wait_child(child, 0) == 0);
	unmap_free(va, size);
	CKCU(cuMemRelease(h));
	/* An exported chunk may still be mapped by a process vmmd does not
	 * know: it stays lent to this one until it exits. */
	CHECK(p_flush() == 0);
	expect_lent(size);
	CHECK(usage().app_vmm_bytes == size);
}

/* ---- passthru ------------------------------------------------------------------ */

static void
sc_passthru(bool native_setting)
{
	CUmemAllocationProp prop = dev_prop(CU_MEM_HANDLE_TYPE_NONE), bad;
	CUmemGenericAllocationHandle h;
	struct vmm_usage u;
	CUdeviceptr va;
	size_t gran;

	cuda_up();
	if (native_setting) {
		/* VMM_APP_VMM=native: the driver serves even what the pool
		 * could. */
		CKCU(cuMemCreate(&h, unit, &prop, 0));
		u = usage();
		CHECK(u.native_cumemcreate_bytes == unit && u.app_vmm_bytes == 0);
		CHECK(pool().lent_bytes == 0);
		va = map_rw(h, unit);
		fill_check(va, unit, 1);
		unmap_free(va, unit);
		CKCU(cuMemRelease(h));
		CHECK(usage().native_cumemcreate_bytes == 0);
		return;
	}
	/* RDMA-capable memory (CUEMU_RDMA=1): not what a chunk promises. */
	bad = prop;
	bad.allocFlags.gpuDirectRDMACapable = 1;
	CKCU(cuMemCreate(&h, unit, &bad, 0));
	u = usage();
	CHECK(u.native_cumemcreate_bytes == unit && u.app_vmm_bytes == 0);
	CHECK(pool().lent_bytes == 0);
	CKCU(cuMemRelease(h));
	CHECK(usage().native_cumemcreate_bytes == 0);
	/* Host memory and a fabric handle: the driver's answer, as is. */
	bad = prop;
	bad.location.type = CU_MEM_LOCATION_TYPE_HOST;
	CHECK(cuMemCreate(&h, unit, &bad, 0) == CUDA_ERROR_INVALID_VALUE);
	bad = prop;
	bad.requestedHandleTypes = CU_MEM_HANDLE_TYPE_FABRIC;
	CHECK(cuMemCreate(&h, unit, &bad, 0) == CUDA_ERROR_NOT_SUPPORTED);
	/* Flags and size 0 are the driver's to refuse. */
	CHECK(cuMemCreate(&h, unit, &prop, 1) == CUDA_ERROR_INVALID_VALUE);
	CHECK(cuMemCreate(&h, 0, &prop, 0) == CUDA_ERROR_INVALID_VALUE);
	u = usage();
	CHECK(u.native_cumemcreate_bytes == 0 && u.app_vmm_bytes == 0);
	CHECK(pool().lent_bytes == 0);
	/* A size the driver takes but not a multiple of vmmd's unit (where
	 * the unit is several granules: the .cm2 variant). */
	CKCU(cuMemGetAllocationGranularity(&gran, &prop,
	    CU_MEM_ALLOC_GRANULARITY_MINIMUM));
	if (unit % gran == 0 && unit / gran > 1) {
		CKCU(cuMemCreate(&h, gran, &prop, 0));
		CHECK(usage().native_cumemcreate_bytes == gran);
		CHECK(pool().lent_bytes == 0);
		CKCU(cuMemRelease(h));
	}
	/* And what the pool serves, for contrast. */
	CKCU(cuMemCreate(&h, unit, &prop, 0));
	CHECK(usage().app_vmm_bytes == unit);
	expect_lent(unit);
	CKCU(cuMemRelease(h));
	expect_lent(0);
}

/* vmmd unreachable: the driver serves it, counted as native; or, with
 * VMM_REQUIRE_DAEMON=1, the allocation fails as cudaMalloc's does. */
static void
sc_nodaemon(bool required)
{
	CUmemAllocationProp prop = dev_prop(CU_MEM_HANDLE_TYPE_NONE), bad;
	CUmemGenericAllocationHandle h;
	struct vmm_usage u;
	CUdeviceptr va;
	size_t gran;
	void *p;

	cuda_up();
	CKCU(cuMemGetAllocationGranularity(&gran, &prop,
	    CU_MEM_ALLOC_GRANULARITY_MINIMUM));
	if (required) {
		CHECK(cuMemCreate(&h, 2 * gran, &prop, 0) ==
		    CUDA_ERROR_OUT_OF_MEMORY);
		CHECK(cudaMalloc(&p, 2 * gran) == cudaErrorMemoryAllocation);
		u = usage();
		CHECK(u.native_cumemcreate_bytes == 0 && u.app_vmm_bytes == 0);
		/* Not what the pool serves (RDMA-capable, CUEMU_RDMA=1): the
		 * driver's, as with a daemon. */
		bad = prop;
		bad.allocFlags.gpuDirectRDMACapable = 1;
		CKCU(cuMemCreate(&h, 2 * gran, &bad, 0));
		CHECK(usage().native_cumemcreate_bytes == 2 * gran);
		CKCU(cuMemRelease(h));
		CHECK(usage().native_cumemcreate_bytes == 0);
		return;
	}
	CKCU(cuMemCreate(&h, 2 * gran, &prop, 0));
	u = usage();
	CHECK(u.native_cumemcreate_bytes == 2 * gran && u.app_vmm_bytes == 0);
	va = map_rw(h, 2 * gran);
	fill_check(va, 2 * gran, 2);
	unmap_free(va, 2 * gran);
	CKCU(cuMemRelease(h));
	CHECK(usage().native_cumemcreate_bytes == 0);
}

/* ---- quota ----------------------------------------------------------------------- */

static void
sc_quota(void)
{
	CUmemAllocationProp prop = dev_prop(CU_MEM_HANDLE_TYPE_NONE);
	CUmemGenericAllocationHandle h, h2;

	/* The quota (conf) is 3 units: 2 fit, 2 more do not. */
	cuda_up();
	CKCU(cuMemCreate(&h, 2 * unit, &prop, 0));
	CHECK(cuMemCreate(&h2, 2 * unit, &prop, 0) == CUDA_ERROR_OUT_OF_MEMORY);
	CHECK(usage().native_cumemcreate_bytes == 0);
	CKCU(cuMemRelease(h));
	expect_lent(0);
	CKCU(cuMemCreate(&h2, 2 * unit, &prop, 0));
	CKCU(cuMemRelease(h2));
}

/* ---- kill -------------------------------------------------------------------------- */

static int
kill_child(void *arg, int ctl)
{
	CUmemAllocationProp prop = dev_prop(CU_MEM_HANDLE_TYPE_NONE);
	CUmemGenericAllocationHandle h[3];
	CUdeviceptr va;
	char c = 'm';
	int i;

	(void)arg;
	cuda_up();
	for (i = 0; i < 3; i++)
		CKCU(cuMemCreate(&h[i], unit, &prop, 0));
	va = map_rw(h[0], unit);
	fill_check(va, unit, 5);
	CKCU(cuMemRelease(h[0]));	/* mapped, released */
	tc_ctl_send(ctl, &c, 1);
	for (;;)
		pause();
	return 0;
}

static void
sc_kill(void)
{
	pid_t child;
	int ctl;
	char c;

	child = tc_spawn(kill_child, NULL, &ctl);
	tc_ctl_recv(ctl, &c, 1, 10000);
	expect_lent(3 * unit);
	kill(child, SIGKILL);
	CHECK(tc_wait_child(child, SIGKILL) == 0);
	expect_lent(0);
	CHECK(pool().quarantined_bytes == 0);
}

/* ---- async --------------------------------------------------------------------------- */

#define ASYNC_US 600000u

static void
sc_async(void)
{
	CUmemAllocationProp prop = dev_prop(CU_MEM_HANDLE_TYPE_NONE);
	CUmemGenericAllocationHandle h;
	unsigned long long faults0;
	uint64_t t0, t_back;
	CUdeviceptr va;
	CUstream s;

	cuda_up();
	CKCU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CKCU(cuMemCreate(&h, unit, &prop, 0));
	va = map_rw(h, unit);
	faults0 = cuemu_counter("faults");
	/* A kernel still writes it when the program lets it go (its own
	 * bug on a GPU; the pool must not make it another process's). */
	t0 = vmm_now_ms();
	CKCU(cuemu_launch_write(va, 0x5a5a5a5au, unit, ASYNC_US, s));
	CKCU(cuMemUnmap(va, unit));
	CKCU(cuMemRelease(h));
	CKCU(cuMemAddressFree(va, unit));
	/* Given back only by the helper's sync, which waits for the kernel. */
	while (pool().lent_bytes != 0 && vmm_now_ms() - t0 < 10000)
		tc_sleep_ms(5);
	t_back = vmm_now_ms() - t0;
	fprintf(stderr, "chunk back in vmmd after %llu ms (kernel: %u ms), "
	    "faults %llu\n", (unsigned long long)t_back, ASYNC_US / 1000,
	    cuemu_counter("faults") - faults0);
	CHECK(pool().lent_bytes == 0);
	/* The kernel had run (its write found the memory unmapped) before
	 * the memory was back in vmmd. */
	CHECK(cuemu_counter("faults") == faults0 + 1);
	CHECK(t_back * 1000 >= ASYNC_US);
	CKCU(cuStreamDestroy(s));
}

/* ---- procaddr --------------------------------------------------------------------------- */

static void *
gpa(PFN_cuGetProcAddress_v12000 get, const char *name, int version)
{
	CUdriverProcAddressQueryResult st;
	void *fn = NULL;

	CKCU(get(name, &fn, version, 0, &st));
	CHECK(st == CU_GET_PROC_ADDRESS_SUCCESS && fn != NULL);
	return fn;
}

static void
sc_procaddr(void)
{
	CUmemAllocationProp prop = dev_prop(CU_MEM_HANDLE_TYPE_NONE), got;
	PFN_cuGetProcAddress_v12000 get;
	PFN_cuMemCreate_v10020 create;
	PFN_cuMemRelease_v10020 release;
	PFN_cuMemMap_v10020 map;
	PFN_cuMemUnmap_v10020 unmap;
	PFN_cuMemGetAllocationPropertiesFromHandle_v10020 props;
	PFN_cuMemExportToShareableHandle_v10020 export;
	CUmemGenericAllocationHandle h;
	CUmemAccessDesc acc;
	CUdeviceptr va;
	void *drv;
	int fd = -1;

	cuda_up();
	CHECK((drv = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD)) != NULL);
	CHECK((get = (PFN_cuGetProcAddress_v12000)dlsym(drv,
	    "cuGetProcAddress_v2")) != NULL);
	create = (PFN_cuMemCreate_v10020)gpa(get, "cuMemCreate", 12000);
	release = (PFN_cuMemRelease_v10020)gpa(get, "cuMemRelease", 13000);
	map = (PFN_cuMemMap_v10020)gpa(get, "cuMemMap", 12000);
	unmap = (PFN_cuMemUnmap_v10020)dlsym(drv, "cuMemUnmap");
	props = (PFN_cuMemGetAllocationPropertiesFromHandle_v10020)gpa(get,
	    "cuMemGetAllocationPropertiesFromHandle", 11000);
	export = (PFN_cuMemExportToShareableHandle_v10020)dlsym(drv,
	    "cuMemExportToShareableHandle");
	CHECK(unmap != NULL && export != NULL);
	CKCU(create(&h, 2 * unit, &prop, 0));
	CHECK(usage().app_vmm_bytes == 2 * unit);
	expect_lent(2 * unit);
	CKCU(props(&got, h));
	CHECK(got.requestedHandleTypes == CU_MEM_HANDLE_TYPE_NONE);
	CHECK(export(&fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0) ==
	    CUDA_ERROR_NOT_PERMITTED);
	CKCU(cuMemAddressReserve(&va, 2 * unit, 0, 0, 0));
	CKCU(map(va, 2 * unit, 0, h, 0));
	memset(&acc, 0, sizeof(acc));
	acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	CKCU(cuMemSetAccess(va, 2 * unit, &acc, 1));
	fill_check(va, 2 * unit, 13);
	CKCU(release(h));
	CHECK(p_flush() == 0);
	expect_lent(2 * unit);	/* still mapped */
	CKCU(unmap(va, 2 * unit));
	CKCU(cuMemAddressFree(va, 2 * unit));
	expect_lent(0);
	CHECK(usage().app_vmm_bytes == 0);
}

/* ---- restart ---------------------------------------------------------------------------- */

static void
sc_restart(const char *conf)
{
	CUmemAllocationProp prop = dev_prop(CU_MEM_HANDLE_TYPE_NONE);
	CUmemGenericAllocationHandle h[2];
	CUdeviceptr va;
	int st;

	cuda_up();
	CKCU(cuMemCreate(&h[0], unit, &prop, 0));
	CKCU(cuMemCreate(&h[1], 2 * unit, &prop, 0));
	va = map_rw(h[0], unit);
	fill_check(va, unit, 11);
	CKCU(cuMemRelease(h[0]));	/* mapped only */
	expect_lent(3 * unit);
	kill(daemon_pid, SIGKILL);
	CHECK(waitpid(daemon_pid, &st, 0) == daemon_pid);
	daemon_pid = tc_start_daemon(sockdir, conf, NULL);
	/* The helper reconnects and adopts both: one by its handle, one by
	 * its mapping. */
	expect_lent(3 * unit);
	{
		struct tc *adm = tc_open(sockpath, "admin", true);

		CHECK(tc_counter(adm, "adopted_chunks") == 2);
		tc_close(adm);
	}
	expect_session_app(getpid(), 3 * unit);
	check_pattern(va, unit, 11);
	unmap_free(va, unit);
	expect_lent(2 * unit);
	CKCU(cuMemRelease(h[1]));
	expect_lent(0);
}

int
main(int argc, char **argv)
{
	const char *conf = "idle_timeout_ms = 0\nrecall_timeout_ms = 0\n";
	const char *sc = argc > 1 ? argv[1] : "";
	char qconf[256];

	CHECK(getenv("VMM_SOCKET_DIR") != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s", getenv("VMM_SOCKET_DIR"));
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	if (strcmp(sc, "quota") == 0) {
		/* The unit is known once vmmd runs: probe it first. */
		uint64_t u = tc_probe_unit();

		snprintf(qconf, sizeof(qconf), "%squota.uid.%u = %" PRIu64
		    "\n", conf, (unsigned)getuid(), 3 * u);
		conf = qconf;
	}
	if (strcmp(sc, "nodaemon") == 0) {
		sc_nodaemon(argc > 2 && strcmp(argv[2], "required") == 0);
		printf("ok %s\n", sc);
		return 0;
	}
	start(conf);
	if (strcmp(sc, "basic") == 0)
		sc_basic();
	else if (strcmp(sc, "mapped") == 0)
		sc_mapped();
	else if (strcmp(sc, "reuse") == 0)
		sc_reuse();
	else if (strcmp(sc, "export") == 0)
		sc_export();
	else if (strcmp(sc, "passthru") == 0)
		sc_passthru(argc > 2 && strcmp(argv[2], "native") == 0);
	else if (strcmp(sc, "quota") == 0)
		sc_quota();
	else if (strcmp(sc, "kill") == 0)
		sc_kill();
	else if (strcmp(sc, "async") == 0)
		sc_async();
	else if (strcmp(sc, "restart") == 0)
		sc_restart(conf);
	else if (strcmp(sc, "procaddr") == 0)
		sc_procaddr();
	else
		CHECK(!"unknown scenario");
	tc_stop_daemon_ok(daemon_pid);
	printf("ok %s\n", sc);
	return 0;
}
