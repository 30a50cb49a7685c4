/*
 * Lazy synchronization against work that is still running: unmodified
 * driver-API programs under LD_PRELOAD=libvmm_client.so, real vmmd
 * instances, and the emulator's delayed kernel (tests/cuemu/cuemu.h).  The
 * kernel runs on a non-blocking stream, so nothing but the library's own
 * synchronization orders it before a reuse.  One scenario per argument:
 *
 *   twoctx    CUEMU_DEVICES=2: a kernel on device 0 writes buffer A, A is
 *             freed; device 1's context frees, reuses and so synchronizes;
 *             back on device 0, B reuses A's memory and is written.  The
 *             sync of device 1 must not count for device 0: B keeps its
 *             data, nothing busy was unmapped.
 *   failsync  cuCtxSynchronize fails (CUEMU_FAIL): freed memory with a
 *             kernel still writing it is neither reused for B nor unmapped
 *             by vmm_flush (a failed sync is "still busy", never "idle").
 *   helper    CUEMU_DEVICES=2, VMM_IDLE_MS: the helper thread gives back
 *             device 1's idle cache while device 1's kernel still writes it;
 *             it must synchronize device 1's context first, not whatever
 *             context it made current (device 0's comes first).  Nothing
 *             busy is unmapped, and the chunks still go back.
 *
 *   ordered   stream-ordered allocation (driver and runtime entry points)
 *             on one stream: each free is reused at once by the next
 *             allocation on the stream, data intact, and the library never
 *             calls cuCtxSynchronize (counted by the emulator).
 *   cross     freed on stream 1 while a kernel there still writes it,
 *             allocated on stream 2: reused only ordered after the free
 *             (stream 2 waits for its event), no synchronization either.
 *   streamdev CUEMU_DEVICES=2: cuMemAllocAsync on a stream of device 1
 *             while device 0's context is current gives device 1 memory.
 *   stitchsmall  a large allocation A, below frag_ratio of a later request,
 *             is freed while a kernel still writes it; the request is
 *             stitched from it in the process (no Release to vmmd) but only
 *             once the kernel is done: the new allocation keeps its data,
 *             nothing busy was unmapped.
 *   reallocgrow  vmm_realloc grows P while the process caches a freed
 *             allocation A a kernel still writes: A goes back to vmmd first
 *             and is stitched into the growth (nothing created), but only
 *             once the kernel is done: P keeps its data, nothing busy was
 *             unmapped.
 *   split     a freed 256 MiB allocation A (vmmd's pieces: 8 x 32 MiB) a
 *             kernel still writes serves 64 MiB and then 192 MiB where it
 *             lies: B is A's first 64 MiB, C the rest, no mapping call, no
 *             round trip to vmmd, and only once the kernel is done: B and
 *             C keep their own data.
 *   join      B (A's first 64 MiB, the rest cached, its free covered by a
 *             sync) is freed while a kernel still writes it: B and the
 *             rest become one cached entry again, which serves 256 MiB
 *             with no mapping call, but only once B's kernel is done (the
 *             later of the two frees' tickets).
 *   smallseg  a thread's small block X (a 768 KiB class: two blocks per
 *             segment) is freed while a kernel still writes it, and the
 *             thread exits (its cache goes back: the segment is empty); a
 *             medium allocation B needing new pages gives the empty
 *             segment back to vmmd first (lent for B's pages rather than
 *             new memory), but only once the kernel is done: nothing busy
 *             was unmapped and B keeps its data.
 *   smallbin  as smallseg, but the thread goes on: five 768 KiB blocks X
 *             (a kernel still writes the first) are freed and sit, with
 *             the rest of their refills, in the thread's own cache of
 *             small blocks (a full bin, more than a segment's worth).  A
 *             medium allocation B1 needing new pages leaves them (X's
 *             class was used since the last ask); after a small block of
 *             another class, B2 gets X's segments back to vmmd first (the
 *             cached blocks of a class the thread passed over go back to
 *             the segments before the empty ones go back), only once the
 *             kernel is done; and a block of X's class afterwards works.
 *   smallkeep as smallbin with one block X: less than a segment's worth
 *             (and less than a full bin) of a class passed over stays in
 *             the thread's cache, so its segment stays (no release) and X
 *             serves the class again (no create).
 *   segpage   a medium block M is freed while a kernel still writes it
 *             (its pages stay in the heap, idle); a small block S of a
 *             class without a segment then needs one: vmmd would create
 *             it, so one of M's idle one-unit pages goes back to vmmd and
 *             is lent as the segment (nothing created), but only once the
 *             kernel is done: S keeps its data, nothing busy was unmapped.
 *
 * The emulator counts an unmap or free of memory that queued work still
 * touches ("busy_releases") and a queued write that finds its memory gone
 * ("faults"): both must stay 0.
 */
#include <cuda.h>
#include <cuda_runtime_api.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/check.h"
#include "../cuemu/cuemu.h"
#include "session.h"
#include "testclient.h"
#include "vmm_client.h"

#define MiB (1ull << 20)
#define SIZE (8 * MiB)
#define KERNEL_US 300000u
#define PAT 0xdeadbeefu
/* smallbin: 768 KiB blocks, as many as a thread's bin of that class holds
 * (SMALL_BIN_BYTES, 4 MiB) plus one: more than a 2 MiB segment's worth. */
#define NX 5

static char	sockdir[1024], sockpath[1100];
static pid_t	daemons[2];

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* The socket of the daemon for device index. */
static void
path_of(int index, char *out, size_t len)
{
	CHECK(vmm_sess_path_index(out, len, sockdir, index) == 0);
}

/* vmmd for devices 0..n-1 (tc_start_daemon waits for device 0's socket
 * only).  The daemons must not inherit this test's fault injection. */
static void
start_daemons(int n)
{
	static const char *dev1[] = { "--device", "1", NULL };
	char path[1100];
	int i, fd;

	unsetenv("CUEMU_FAIL");
	for (i = 0; i < n; i++)
		daemons[i] = tc_start_daemon(sockdir, "idle_timeout_ms = 0\n",
		    i == 0 ? NULL : dev1);
	if (n < 2)
		return;
	path_of(1, path, sizeof(path));
	for (i = 0; i < 500 && (fd = tc_connect_raw(path)) < 0; i++)
		sleep_ms(10);
	CHECK(fd >= 0);
	close(fd);
}

static CUcontext
ctx_of(int ordinal)
{
	CUcontext c;
	CUdevice d;

	CHECK_OK(cuDeviceGet(&d, ordinal));
	CHECK_OK(cuDevicePrimaryCtxRetain(&c, d));
	return c;
}

static void
put(CUdeviceptr d, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);
	size_t i;

	CHECK(b != NULL);
	for (i = 0; i < n; i++)
		b[i] = (unsigned char)(seed + i * 7);
	CHECK_OK(cuMemcpyHtoD(d, b, n));
	free(b);
}

/* Whether d holds put()'s data for seed (reads with cuMemcpyDtoH, which
 * waits for the legacy stream only, not for the non-blocking one). */
static int
holds(CUdeviceptr d, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);
	size_t i;
	int ok = 1;

	CHECK(b != NULL);
	CHECK_OK(cuMemcpyDtoH(b, d, n));
	for (i = 0; i < n; i++)
		if (b[i] != (unsigned char)(seed + i * 7))
			ok = 0;
	free(b);
	return ok;
}

static void
expect_clean(void)
{
	unsigned long long busy = cuemu_counter("busy_releases");
	unsigned long long faults = cuemu_counter("faults");

	if (busy != 0 || faults != 0)
		fprintf(stderr, "busy_releases %llu, faults %llu\n", busy,
		    faults);
	CHECK(busy == 0 && faults == 0);
}

static void
sc_twoctx(void)
{
	CUcontext c0, c1;
	CUdeviceptr a, b, x;
	CUstream s;

	start_daemons(2);
	c0 = ctx_of(0);
	c1 = ctx_of(1);
	CHECK_OK(cuCtxSetCurrent(c0));
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuMemAlloc(&a, SIZE));
	CHECK_OK(cuemu_launch_write(a, PAT, SIZE, KERNEL_US, s));
	CHECK_OK(cuMemFree(a));
	/* Device 1: a free, then a reuse that synchronizes device 1. */
	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuMemAlloc(&x, SIZE));
	CHECK_OK(cuMemFree(x));
	CHECK_OK(cuMemAlloc(&x, SIZE));
	/* Device 0 again: B gets A's memory, once A's kernel is done. */
	CHECK_OK(cuCtxSetCurrent(c0));
	CHECK_OK(cuMemAlloc(&b, SIZE));
	CHECK(b == a);	/* reused, so the test means something */
	put(b, SIZE, 3);
	CHECK_OK(cuStreamSynchronize(s));
	CHECK(holds(b, SIZE, 3));	/* the kernel did not write over it */
	CHECK_OK(cuMemFree(b));
	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuMemFree(x));
	CHECK_OK(cuCtxSetCurrent(c0));
	CHECK_OK(cuStreamDestroy(s));
	expect_clean();
}

static void
sc_failsync(void)
{
	int (*flush)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "vmm_flush");
	CUdeviceptr a, b;
	CUstream s;

	CHECK(flush != NULL);
	start_daemons(1);
	CHECK_OK(cuCtxSetCurrent(ctx_of(0)));
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuMemAlloc(&a, SIZE));
	CHECK_OK(cuemu_launch_write(a, PAT, SIZE, KERNEL_US, s));
	CHECK_OK(cuMemFree(a));
	/* Giving the cache back needs a sync, which fails: A stays mapped. */
	(void)flush();
	CHECK(cuemu_counter("busy_releases") == 0);
	/* Reuse needs one too: A is still busy, B is other memory. */
	CHECK_OK(cuMemAlloc(&b, SIZE));
	CHECK(b != a);
	put(b, SIZE, 5);
	CHECK_OK(cuStreamSynchronize(s));
	CHECK(holds(b, SIZE, 5));
	expect_clean();
	CHECK_OK(cuMemFree(b));
	CHECK_OK(cuStreamDestroy(s));
}

static uint64_t
lent(const char *path)
{
	struct tc *adm = tc_open(path, "admin", true);
	Vmm__PoolStats ps;

	CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
	tc_close(adm);
	return ps.lent_bytes;
}

static void
sc_helper(void)
{
	CUdeviceptr a0, a1;
	CUcontext c0, c1;
	char path1[1100];
	CUstream s;
	int i;

	start_daemons(2);
	path_of(1, path1, sizeof(path1));
	c0 = ctx_of(0);
	c1 = ctx_of(1);
	/* Device 0 in use too, so the helper visits its context first. */
	CHECK_OK(cuCtxSetCurrent(c0));
	CHECK_OK(cuMemAlloc(&a0, SIZE));
	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuMemAlloc(&a1, SIZE));
	CHECK(lent(path1) >= SIZE);
	CHECK_OK(cuemu_launch_write(a1, PAT, SIZE, KERNEL_US, s));
	CHECK_OK(cuMemFree(a1));
	/* VMM_IDLE_MS=50: the helper gives a1 back, after the kernel. */
	for (i = 0; i < 200 && lent(path1) != 0; i++)
		sleep_ms(10);
	CHECK(lent(path1) == 0);
	expect_clean();
	CHECK_OK(cuStreamQuery(s));	/* given back only after the kernel */
	CHECK_OK(cuStreamDestroy(s));
	CHECK_OK(cuCtxSetCurrent(c0));
	CHECK_OK(cuMemFree(a0));
}

static void
sc_ordered(void)
{
	enum { N = 24 };
	unsigned char host[N][256];
	CUdeviceptr p[N];
	CUstream s;
	int i, j;

	start_daemons(1);
	CHECK_OK(cuCtxSetCurrent(ctx_of(0)));
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	for (i = 0; i < N; i++) {
		if (i % 2 == 0) {
			CHECK_OK(cuMemAllocAsync(&p[i], SIZE, s));
		} else {
			void *v;

			CHECK(cudaMallocAsync(&v, SIZE, (cudaStream_t)s) ==
			    cudaSuccess);
			p[i] = (CUdeviceptr)(uintptr_t)v;
		}
		CHECK_OK(cuemu_launch_write(p[i], 0x01010101u * (unsigned)i,
		    SIZE, 2000, s));
		CHECK_OK(cuMemcpyDtoHAsync(host[i], p[i] + SIZE - 256, 256, s));
		if (i % 2 == 0)
			CHECK_OK(cuMemFreeAsync(p[i], s));
		else
			CHECK(cudaFreeAsync((void *)(uintptr_t)p[i],
			    (cudaStream_t)s) == cudaSuccess);
		/* The same stream reuses at once: no waiting on the host. */
		CHECK(p[i] == p[0]);
	}
	/* Freed on the stream already: freeing it again is refused. */
	CHECK(cuMemFree(p[N - 1]) != CUDA_SUCCESS);
	CHECK_OK(cuStreamSynchronize(s));
	for (i = 0; i < N; i++)
		for (j = 0; j < 256; j++)
			CHECK(host[i][j] == (unsigned char)i);
	CHECK(cuemu_counter("ctx_syncs") == 0);
	expect_clean();
	CHECK_OK(cuStreamDestroy(s));
}

static void
sc_cross(void)
{
	unsigned char *in = malloc(SIZE);
	CUdeviceptr p, q;
	CUstream s1, s2;
	size_t i;

	CHECK(in != NULL);
	for (i = 0; i < SIZE; i++)
		in[i] = (unsigned char)(i * 11 + 1);
	start_daemons(1);
	CHECK_OK(cuCtxSetCurrent(ctx_of(0)));
	CHECK_OK(cuStreamCreate(&s1, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuStreamCreate(&s2, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuMemAllocAsync(&p, SIZE, s1));
	CHECK_OK(cuemu_launch_write(p, PAT, SIZE, KERNEL_US, s1));
	CHECK_OK(cuMemFreeAsync(p, s1));
	CHECK_OK(cuMemAllocAsync(&q, SIZE, s2));
	CHECK(q == p);	/* reused, after a stream wait */
	CHECK_OK(cuMemcpyHtoDAsync(q, in, SIZE, s2));
	CHECK_OK(cuStreamSynchronize(s2));
	CHECK_OK(cuStreamSynchronize(s1));	/* the kernel is done too */
	{
		unsigned char *out = malloc(SIZE);

		CHECK(out != NULL);
		CHECK_OK(cuMemcpyDtoH(out, q, SIZE));
		CHECK(memcmp(out, in, SIZE) == 0);	/* the kernel came first */
		free(out);
	}
	CHECK(cuemu_counter("ctx_syncs") == 0);
	expect_clean();
	CHECK_OK(cuMemFreeAsync(q, s2));
	CHECK_OK(cuStreamSynchronize(s2));
	CHECK_OK(cuStreamDestroy(s1));
	CHECK_OK(cuStreamDestroy(s2));
	free(in);
}

static void
sc_streamdev(void)
{
	CUcontext c0, c1;
	CUdeviceptr p;
	char path1[1100];
	CUstream s;
	int ord = -1;

	start_daemons(2);
	path_of(1, path1, sizeof(path1));
	c0 = ctx_of(0);
	c1 = ctx_of(1);
	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuCtxSetCurrent(c0));
	CHECK_OK(cuMemAllocAsync(&p, SIZE, s));
	CHECK_OK(cuPointerGetAttribute(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
	    p));
	CHECK(ord == 1);
	CHECK(lent(path1) >= SIZE);
	CHECK_OK(cuMemFreeAsync(p, s));
	CHECK_OK(cuCtxSetCurrent(c1));
	CHECK_OK(cuStreamSynchronize(s));
	CHECK_OK(cuStreamDestroy(s));
	CHECK_OK(cuCtxSetCurrent(c0));
	expect_clean();
}

static void
sc_stitchsmall(void)
{
	const size_t small = 34 * MiB, big = 160 * MiB;
	CUdeviceptr a, b;
	uint64_t releases;
	struct tc *adm;
	CUstream s;

	start_daemons(1);
	adm = tc_open(sockpath, "admin", true);
	CHECK_OK(cuCtxSetCurrent(ctx_of(0)));
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuMemAlloc(&a, small));
	CHECK_OK(cuemu_launch_write(a, PAT, small, KERNEL_US, s));
	CHECK_OK(cuMemFree(a));
	releases = tc_counter(adm, "released_chunks");
	/* 34 MiB is under 0.25 x 160 MiB: still stitched in, from the
	 * process's own cache. */
	CHECK_OK(cuMemAlloc(&b, big));
	CHECK(tc_counter(adm, "released_chunks") == releases);
	put(b, big, 9);
	CHECK_OK(cuStreamSynchronize(s));
	CHECK(holds(b, big, 9));	/* the kernel did not write over it */
	expect_clean();
	CHECK_OK(cuMemFree(b));
	CHECK_OK(cuStreamDestroy(s));
	tc_close(adm);
}

struct smallseg {
	CUcontext	ctx;
	CUstream	s;
};

/* Allocates a small block, has the kernel write it, frees it, and exits
 * (the thread's cache of small blocks goes back to their segments). */
static void *
smallseg_thread(void *arg)
{
	struct smallseg *z = arg;
	CUdeviceptr x;

	CHECK_OK(cuCtxSetCurrent(z->ctx));
	CHECK_OK(cuMemAlloc(&x, 768 * 1024));
	CHECK_OK(cuemu_launch_write(x, PAT, 768 * 1024, KERNEL_US, z->s));
	CHECK_OK(cuMemFree(x));
	return NULL;
}

static void
sc_smallseg(void)
{
	const size_t size = 3 * MiB;
	struct smallseg z;
	uint64_t releases;
	struct tc *adm;
	CUdeviceptr b;
	pthread_t t;

	start_daemons(1);
	adm = tc_open(sockpath, "admin", true);
	z.ctx = ctx_of(0);
	CHECK_OK(cuCtxSetCurrent(z.ctx));
	CHECK_OK(cuStreamCreate(&z.s, CU_STREAM_NON_BLOCKING));
	CHECK(pthread_create(&t, NULL, smallseg_thread, &z) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	releases = tc_counter(adm, "released_chunks");
	CHECK_OK(cuMemAlloc(&b, size));
	/* The empty segment went back before B's pages were asked for. */
	CHECK(tc_counter(adm, "released_chunks") == releases + 1);
	put(b, size, 13);
	CHECK_OK(cuStreamSynchronize(z.s));
	CHECK(holds(b, size, 13));	/* the kernel did not write over it */
	expect_clean();
	CHECK_OK(cuMemFree(b));
	CHECK_OK(cuStreamDestroy(z.s));
	tc_close(adm);
}

static void
sc_smallbin(void)
{
	/* Each of B1, B2 needs new pages, whatever the unit (up to 8 MiB). */
	const size_t size = 12 * MiB, xs = 768 * 1024;
	uint64_t releases;
	struct tc *adm;
	CUdeviceptr b1, b2, x[NX], y, z;
	CUcontext ctx;
	CUstream s;
	int i;

	start_daemons(1);
	adm = tc_open(sockpath, "admin", true);
	ctx = ctx_of(0);
	CHECK_OK(cuCtxSetCurrent(ctx));
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	for (i = 0; i < NX; i++)
		CHECK_OK(cuMemAlloc(&x[i], xs));
	CHECK_OK(cuemu_launch_write(x[0], PAT, xs, KERNEL_US, s));
	for (i = 0; i < NX; i++)
		CHECK_OK(cuMemFree(x[i]));
	/* X's class was used since the last ask: its blocks stay cached. */
	releases = tc_counter(adm, "released_chunks");
	CHECK_OK(cuMemAlloc(&b1, size));
	CHECK(tc_counter(adm, "released_chunks") == releases);
	/* Another class is used, X's is not: at the next ask, X's blocks go
	 * back to their segments, which go back to vmmd (after the kernel),
	 * though the blocks were in this thread's cache. */
	CHECK_OK(cuMemAlloc(&y, 4096));
	releases = tc_counter(adm, "released_chunks");
	CHECK_OK(cuMemAlloc(&b2, size));
	CHECK(tc_counter(adm, "released_chunks") > releases);
	put(b2, size, 17);
	CHECK_OK(cuStreamSynchronize(s));
	CHECK(holds(b2, size, 17));	/* the kernel did not write over it */
	CHECK_OK(cuMemAlloc(&z, xs));
	put(z, xs, 19);
	CHECK(holds(z, xs, 19));
	CHECK(holds(b2, size, 17));
	expect_clean();
	CHECK_OK(cuMemFree(z));
	CHECK_OK(cuMemFree(y));
	CHECK_OK(cuMemFree(b2));
	CHECK_OK(cuMemFree(b1));
	CHECK_OK(cuStreamDestroy(s));
	tc_close(adm);
}

/* smallkeep: one 768 KiB block of a class the thread then passes over
 * (less than a segment's worth in its bin): its segment stays, and the
 * block serves the class again with no new segment. */
static void
sc_smallkeep(void)
{
	const size_t size = 12 * MiB, xs = 768 * 1024;
	uint64_t releases, creates;
	struct tc *adm;
	CUdeviceptr b1, b2, x, y, z;
	CUcontext ctx;
	CUstream s;

	start_daemons(1);
	adm = tc_open(sockpath, "admin", true);
	ctx = ctx_of(0);
	CHECK_OK(cuCtxSetCurrent(ctx));
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuMemAlloc(&x, xs));
	CHECK_OK(cuemu_launch_write(x, PAT, xs, KERNEL_US, s));
	CHECK_OK(cuMemFree(x));
	releases = tc_counter(adm, "released_chunks");
	CHECK_OK(cuMemAlloc(&b1, size));
	CHECK_OK(cuMemAlloc(&y, 4096));
	CHECK_OK(cuMemAlloc(&b2, size));
	CHECK(tc_counter(adm, "released_chunks") == releases);
	creates = tc_counter(adm, "creates");
	CHECK_OK(cuMemAlloc(&z, xs));
	CHECK(tc_counter(adm, "creates") == creates);
	put(z, xs, 29);
	CHECK_OK(cuStreamSynchronize(s));
	CHECK(holds(z, xs, 29));
	expect_clean();
	CHECK_OK(cuMemFree(z));
	CHECK_OK(cuMemFree(y));
	CHECK_OK(cuMemFree(b2));
	CHECK_OK(cuMemFree(b1));
	CHECK_OK(cuStreamDestroy(s));
	tc_close(adm);
}

static void
sc_segpage(void)
{
	const size_t msize = 3 * MiB, ssize = 768 * 1024;
	uint64_t creates, releases;
	struct tc *adm;
	CUdeviceptr m, x;
	CUcontext ctx;
	CUstream s;

	start_daemons(1);
	adm = tc_open(sockpath, "admin", true);
	ctx = ctx_of(0);
	CHECK_OK(cuCtxSetCurrent(ctx));
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuMemAlloc(&m, msize));
	CHECK_OK(cuemu_launch_write(m, PAT, msize, KERNEL_US, s));
	CHECK_OK(cuMemFree(m));
	creates = tc_counter(adm, "creates");
	releases = tc_counter(adm, "released_chunks");
	CHECK_OK(cuMemAlloc(&x, ssize));
	/* One of M's idle pages went back and was lent as X's segment. */
	CHECK(tc_counter(adm, "creates") == creates);
	CHECK(tc_counter(adm, "released_chunks") == releases + 1);
	put(x, ssize, 23);
	CHECK_OK(cuStreamSynchronize(s));
	CHECK(holds(x, ssize, 23));	/* the kernel did not write over it */
	expect_clean();
	CHECK_OK(cuMemFree(x));
	CHECK_OK(cuStreamDestroy(s));
	tc_close(adm);
}

static void
sc_reallocgrow(void)
{
	int (*grow)(void **, size_t) =
	    (int (*)(void **, size_t))dlsym(RTLD_DEFAULT, "vmm_realloc");
	const size_t n0 = 64 * MiB, na = 40 * MiB, n1 = n0 + na;
	CUdeviceptr a, p;
	uint64_t creates;
	struct tc *adm;
	CUstream s;
	void *pp;

	CHECK(grow != NULL);
	start_daemons(1);
	adm = tc_open(sockpath, "admin", true);
	CHECK_OK(cuCtxSetCurrent(ctx_of(0)));
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuMemAlloc(&p, n0));
	put(p, n0, 11);
	CHECK_OK(cuMemAlloc(&a, na));
	CHECK_OK(cuemu_launch_write(a, PAT, na, KERNEL_US, s));
	CHECK_OK(cuMemFree(a));
	creates = tc_counter(adm, "creates");
	pp = (void *)(uintptr_t)p;
	CHECK(grow(&pp, n1) == 0);
	CHECK(tc_counter(adm, "creates") == creates);	/* A's memory */
	p = (CUdeviceptr)(uintptr_t)pp;
	CHECK(holds(p, n0, 11));
	put(p, n1, 12);
	CHECK_OK(cuStreamSynchronize(s));
	CHECK(holds(p, n1, 12));	/* the kernel did not write over it */
	expect_clean();
	CHECK_OK(cuMemFree(p));
	CHECK_OK(cuStreamDestroy(s));
	tc_close(adm);
}

/* put()'s data for seed, ready on the host before the kernel starts: the
 * copy is issued right after the allocation returns, well within the
 * kernel's KERNEL_US, so a reuse that did not wait for it shows. */
static unsigned char *
staged(size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);
	size_t i;

	CHECK(b != NULL);
	for (i = 0; i < n; i++)
		b[i] = (unsigned char)(seed + i * 7);
	return b;
}

/* A 256 MiB allocation, freed while a kernel writes all of it. */
static CUdeviceptr
split_setup(CUstream *s)
{
	CUdeviceptr a;

	start_daemons(1);
	CHECK_OK(cuCtxSetCurrent(ctx_of(0)));
	CHECK_OK(cuStreamCreate(s, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuMemAlloc(&a, 256 * MiB));
	CHECK_OK(cuemu_launch_write(a, PAT, 256 * MiB, KERNEL_US, *s));
	CHECK_OK(cuMemFree(a));
	return a;
}

static void
sc_split(void)
{
	unsigned char *hb = staged(64 * MiB, 3), *hc = staged(192 * MiB, 4);
	unsigned long long maps;
	CUdeviceptr a, b, c;
	uint64_t grants;
	struct tc *adm;
	CUstream s;

	a = split_setup(&s);
	adm = tc_open(sockpath, "admin", true);
	maps = cuemu_counter("calls_map");
	grants = tc_counter(adm, "grants");
	CHECK_OK(cuMemAlloc(&b, 64 * MiB));
	CHECK_OK(cuMemcpyHtoD(b, hb, 64 * MiB));
	CHECK_OK(cuMemAlloc(&c, 192 * MiB));
	CHECK_OK(cuMemcpyHtoD(c, hc, 192 * MiB));
	CHECK(b == a);
	CHECK(c == a + 64 * MiB);
	CHECK(cuemu_counter("calls_map") == maps);	/* where they lay */
	CHECK(tc_counter(adm, "grants") == grants);	/* vmmd not asked */
	CHECK_OK(cuStreamSynchronize(s));
	CHECK(holds(b, 64 * MiB, 3));	/* the kernel did not write over */
	CHECK(holds(c, 192 * MiB, 4));	/* them, nor one over the other */
	expect_clean();
	CHECK_OK(cuMemFree(b));
	CHECK_OK(cuMemFree(c));
	CHECK_OK(cuStreamDestroy(s));
	tc_close(adm);
	free(hb);
	free(hc);
}

static void
sc_join(void)
{
	unsigned char *hd = staged(64 * MiB, 5);
	unsigned long long maps;
	CUdeviceptr a, b, d;
	CUstream s;

	a = split_setup(&s);
	CHECK_OK(cuMemAlloc(&b, 64 * MiB));	/* syncs: A's free covered */
	CHECK(b == a);
	CHECK_OK(cuemu_launch_write(b, PAT, 64 * MiB, KERNEL_US, s));
	CHECK_OK(cuMemFree(b));
	maps = cuemu_counter("calls_map");
	CHECK_OK(cuMemAlloc(&d, 256 * MiB));
	CHECK_OK(cuMemcpyHtoD(d, hd, 64 * MiB));
	CHECK(d == a);
	CHECK(cuemu_counter("calls_map") == maps);
	CHECK_OK(cuStreamSynchronize(s));
	CHECK(holds(d, 64 * MiB, 5));	/* B's kernel did not write over it */
	expect_clean();
	CHECK_OK(cuMemFree(d));
	CHECK_OK(cuStreamDestroy(s));
	free(hd);
}

int
main(int argc, char **argv)
{
	const char *dir = getenv("VMM_SOCKET_DIR");
	int i;

	CHECK(argc == 2 && dir != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s", dir);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	CHECK(cuemu_available());
	/* Also parses CUEMU_FAIL in this process, before the daemons start. */
	CHECK_OK(cuInit(0));
	if (strcmp(argv[1], "twoctx") == 0)
		sc_twoctx();
	else if (strcmp(argv[1], "failsync") == 0)
		sc_failsync();
	else if (strcmp(argv[1], "helper") == 0)
		sc_helper();
	else if (strcmp(argv[1], "ordered") == 0)
		sc_ordered();
	else if (strcmp(argv[1], "cross") == 0)
		sc_cross();
	else if (strcmp(argv[1], "streamdev") == 0)
		sc_streamdev();
	else if (strcmp(argv[1], "stitchsmall") == 0)
		sc_stitchsmall();
	else if (strcmp(argv[1], "smallseg") == 0)
		sc_smallseg();
	else if (strcmp(argv[1], "smallbin") == 0)
		sc_smallbin();
	else if (strcmp(argv[1], "smallkeep") == 0)
		sc_smallkeep();
	else if (strcmp(argv[1], "segpage") == 0)
		sc_segpage();
	else if (strcmp(argv[1], "reallocgrow") == 0)
		sc_reallocgrow();
	else if (strcmp(argv[1], "split") == 0)
		sc_split();
	else if (strcmp(argv[1], "join") == 0)
		sc_join();
	else
		CHECK(!"unknown scenario");
	for (i = 0; i < 2; i++)
		if (daemons[i] > 0)
			CHECK(WIFEXITED(tc_stop_daemon(daemons[i])));
	return 0;
}
