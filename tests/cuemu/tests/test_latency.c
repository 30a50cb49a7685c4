/* CUEMU_LATENCY=a100 charges each call a per-call cost: 20 cuMemCreate of
 * 2 MiB take at least 20 * 150 us; without it they are faster.  h100 is a
 * second profile (creates at least 120 us).  Export and import are charged
 * too (an export + import pair at least 20 us under a100), and
 * cuMemGetInfo (at least 5 us).  Lower bounds only (machines are noisy; the
 * costs are busy-waits, so a call can never be cheaper).  Whatever the
 * profile, cuemuGetCounter counts the calls, granules and chunks charged
 * (calls_<cost>, granules_<cost>, chunks_<cost>): exact, checked with the
 * profile off.  cuMemMap, cuMemSetAccess and cuMemUnmap are charged per
 * chunk touched, or per granule with CUEMU_LATENCY_SCALE=granule: the
 * exact charge (thread_charged_ns) of one call of each over one 64 MiB
 * chunk and over 32 chunks of 2 MiB, under both.  instance_creates_begun
 * and instance_creates_done count every create of every process of the
 * instance (cuMemCreate, cuMemAlloc, failed ones), begun before its cost
 * and done after it: a window read as done before and begun after shows
 * a create that ran in it, even one begun earlier and still being paid. */
#include <pthread.h>

#include "cuemu_test.h"
#include "../cuemu.h"

#define CALLS 20
#define MIN_US_PER_CREATE 150

enum op { OP_CREATE, OP_SHARE, OP_MEMINFO };

/* cuemuGetCounter's answer for name (0 known, -1 not) and the value. */
static int
cuemu_counter_get(const char *name, unsigned long long *v)
{
	cuemu_pfn_get_counter f =
	    (cuemu_pfn_get_counter)cuemu_sym("cuemuGetCounter");

	CHECK(f != NULL);
	return f(name, v);
}

static unsigned long long
counter(const char *name)
{
	unsigned long long v = 0;

	CHECK(cuemu_counter_get(name, &v) == 0);
	return v;
}

/* In a fresh child with CUEMU_LATENCY=mode: microseconds taken by CALLS
 * cuMemCreate of 2 MiB (OP_CREATE), CALLS export + import pairs (OP_SHARE),
 * or CALLS cuMemGetInfo (OP_MEMINFO). */
static long long
time_ops(const char *mode, enum op op)
{
	long long us = -1;
	int fds[2];
	pid_t pid;

	CHECK(pipe(fds) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		CUmemAllocationProp p = ct_prop(0, 1);
		CUmemGenericAllocationHandle h[CALLS];
		long long t0;
		int i;

		CUmemGenericAllocationHandle h2;
		size_t fr, tot;
		int fd;

		setenv("CUEMU_LATENCY", mode, 1);
		if (op == OP_MEMINFO)
			(void)ct_init_ctx(0);
		else
			CHECK_OK(cuInit(0));
		t0 = ct_now_us();
		for (i = 0; i < CALLS && op == OP_CREATE; i++)
			CHECK_OK(cuMemCreate(&h[i], 2 * MiB, &p, 0));
		for (i = 0; i < CALLS && op == OP_MEMINFO; i++)
			CHECK_OK(cuMemGetInfo(&fr, &tot));
		if (op == OP_SHARE) {
			CHECK_OK(cuMemCreate(&h[0], 2 * MiB, &p, 0));
			t0 = ct_now_us();
			for (i = 0; i < CALLS; i++) {
				CHECK_OK(cuMemExportToShareableHandle(&fd, h[0],
				    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
				CHECK_OK(cuMemImportFromShareableHandle(&h2,
				    (void *)(uintptr_t)fd,
				    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
				close(fd);
				CHECK_OK(cuMemRelease(h2));
			}
		}
		us = ct_now_us() - t0;
		/* Charged to this thread: at least what the profile asks. */
		if (op == OP_CREATE && strcmp(mode, "a100") == 0)
			CHECK(counter("thread_charged_ns") >=
			    (unsigned long long)CALLS * 193000);
		for (i = 0; i < CALLS && op == OP_CREATE; i++)
			CHECK_OK(cuMemRelease(h[i]));
		if (op == OP_SHARE)
			CHECK_OK(cuMemRelease(h[0]));
		ct_write(fds[1], &us, sizeof(us));
		_exit(0);
	}
	close(fds[1]);
	ct_read(fds[0], &us, sizeof(us));
	close(fds[0]);
	ct_wait_ok(pid, mode);
	return us;
}

#define SCALE_CHUNKS 32
/* a100's cuMemMap + cuMemSetAccess + cuMemUnmap, ns, per unit. */
#define A100_MAP_ACCESS_UNMAP_NS (1500 + 36000 + 26000)

/* In a fresh child with CUEMU_LATENCY=a100 and CUEMU_LATENCY_SCALE=scale:
 * the ns charged for mapping SCALE_CHUNKS granules of memory made of n
 * chunks (1 or SCALE_CHUNKS) back to back, one cuMemSetAccess over them
 * and one cuMemUnmap of them (the creates and releases not counted). */
static unsigned long long
charged_map_ops(const char *scale, int n)
{
	unsigned long long ns = 0;
	int fds[2];
	pid_t pid;

	CHECK(pipe(fds) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		CUmemAllocationProp p = ct_prop(0, 1);
		CUmemGenericAllocationHandle h[SCALE_CHUNKS];
		CUmemAccessDesc rw = ct_rw(0);
		unsigned long long c0;
		size_t g, each;
		CUdeviceptr va;
		int i;

		setenv("CUEMU_LATENCY", "a100", 1);
		setenv("CUEMU_LATENCY_SCALE", scale, 1);
		(void)ct_init_ctx(0);
		g = ct_gran(0);
		each = (size_t)SCALE_CHUNKS / (size_t)n * g;
		for (i = 0; i < n; i++)
			CHECK_OK(cuMemCreate(&h[i], each, &p, 0));
		CHECK_OK(cuMemAddressReserve(&va, SCALE_CHUNKS * g, 0, 0, 0));
		c0 = counter("thread_charged_ns");
		for (i = 0; i < n; i++)
			CHECK_OK(cuMemMap(va + (size_t)i * each, each, 0, h[i], 0));
		CHECK_OK(cuMemSetAccess(va, SCALE_CHUNKS * g, &rw, 1));
		CHECK_OK(cuMemUnmap(va, SCALE_CHUNKS * g));
		ns = counter("thread_charged_ns") - c0;
		CHECK(counter("calls_setaccess") == 1 &&
		    counter("calls_unmap") == 1);
		CHECK(counter("chunks_setaccess") == (unsigned long long)n &&
		    counter("chunks_unmap") == (unsigned long long)n);
		CHECK(counter("granules_setaccess") == SCALE_CHUNKS &&
		    counter("granules_unmap") == SCALE_CHUNKS);
		CHECK_OK(cuMemAddressFree(va, SCALE_CHUNKS * g));
		for (i = 0; i < n; i++)
			CHECK_OK(cuMemRelease(h[i]));
		ct_write(fds[1], &ns, sizeof(ns));
		_exit(0);
	}
	close(fds[1]);
	ct_read(fds[0], &ns, sizeof(ns));
	close(fds[0]);
	ct_wait_ok(pid, scale);
	return ns;
}

/* Per chunk by default: one 64 MiB chunk costs what one 2 MiB chunk does,
 * 32 chunks 32 times that; per granule both cost 32 times that. */
static void
check_scale(void)
{
	const unsigned long long one = A100_MAP_ACCESS_UNMAP_NS;
	unsigned long long c1 = charged_map_ops("chunk", 1);
	unsigned long long c32 = charged_map_ops("chunk", SCALE_CHUNKS);
	unsigned long long g1 = charged_map_ops("granule", 1);
	unsigned long long g32 = charged_map_ops("granule", SCALE_CHUNKS);

	fprintf(stderr, "map+access+unmap of 64 MiB charged, ns: per chunk "
	    "%llu (1 chunk) / %llu (32 chunks), per granule %llu / %llu\n",
	    c1, c32, g1, g32);
	CHECK(c1 == one);
	CHECK(c32 == SCALE_CHUNKS * one);
	CHECK(g1 == SCALE_CHUNKS * one);
	CHECK(g32 == SCALE_CHUNKS * one);
}

/* Two chunks (1 and 2 granules) mapped back to back, one cuMemSetAccess
 * over both, one cuMemUnmap of both: counted per call and per granule. */
static void
check_counters(void)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h1, h2;
	CUmemAccessDesc rw = ct_rw(0);
	unsigned long long v;
	CUdeviceptr va;
	size_t g;

	(void)ct_init_ctx(0);
	g = ct_gran(0);
	CHECK(counter("calls_create") == 0 && counter("granules_map") == 0);
	CHECK_OK(cuMemCreate(&h1, g, &p, 0));
	CHECK_OK(cuMemCreate(&h2, 2 * g, &p, 0));
	CHECK_OK(cuMemAddressReserve(&va, 3 * g, 0, 0, 0));
	CHECK_OK(cuMemMap(va, g, 0, h1, 0));
	CHECK_OK(cuMemMap(va + g, 2 * g, 0, h2, 0));
	CHECK_OK(cuMemSetAccess(va, 3 * g, &rw, 1));
	CHECK_OK(cuMemUnmap(va, 3 * g));
	CHECK_OK(cuMemAddressFree(va, 3 * g));
	CHECK_OK(cuMemRelease(h1));
	CHECK_OK(cuMemRelease(h2));
	CHECK(counter("calls_create") == 2 && counter("granules_create") == 3);
	CHECK(counter("calls_map") == 2 && counter("granules_map") == 3);
	CHECK(counter("calls_setaccess") == 1);
	CHECK(counter("granules_setaccess") == 3);
	CHECK(counter("calls_unmap") == 1 && counter("granules_unmap") == 3);
	CHECK(counter("chunks_map") == 2 && counter("chunks_setaccess") == 2);
	CHECK(counter("chunks_unmap") == 2 && counter("chunks_create") == 2);
	CHECK(counter("calls_release") == 2);
	CHECK(counter("thread_charged_ns") == 0);	/* the profile is off */
	CHECK(cuemu_counter_get("calls_bogus", &v) != 0);
	CHECK(cuemu_counter_get("granules_", &v) != 0);
}

static volatile int	inflight_returned;

/* One create of 1 GiB under a100 (512 granules: about 99 ms paid). */
static void *
inflight_create(void *arg)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h;

	(void)arg;
	CHECK_OK(cuMemCreate(&h, 1024 * MiB, &p, 0));
	__atomic_store_n(&inflight_returned, 1, __ATOMIC_SEQ_CST);
	CHECK_OK(cuMemRelease(h));
	return NULL;
}

/* In a fresh child (a100): the instance-wide create counters. */
static void
check_instance_creates(void)
{
	unsigned long long b0, d0, b1, d1, v;
	int go[2], back[2], tries, seen = 0;
	CUmemGenericAllocationHandle h;
	CUmemAllocationProp p;
	CUdeviceptr dp;
	pthread_t t;
	char c = 'x';
	pid_t other, pid;

	pid = fork();
	CHECK(pid >= 0);
	if (pid != 0) {
		ct_wait_ok(pid, "instance creates");
		return;
	}
	/* Another process of the instance, forked before any CUDA call. */
	CHECK(pipe(go) == 0 && pipe(back) == 0);
	other = fork();
	CHECK(other >= 0);
	if (other == 0) {
		CHECK_OK(cuInit(0));
		p = ct_prop(0, 1);
		ct_read(go[0], &c, 1);
		CHECK_OK(cuMemCreate(&h, 2 * MiB, &p, 0));
		ct_write(back[1], &c, 1);
		ct_read(go[0], &c, 1);
		CHECK_OK(cuMemRelease(h));
		_exit(0);
	}
	setenv("CUEMU_LATENCY", "a100", 1);
	(void)ct_init_ctx(0);
	p = ct_prop(0, 1);
	b0 = counter("instance_creates_begun");
	d0 = counter("instance_creates_done");
	CHECK(b0 == d0);
	ct_write(go[1], &c, 1);
	ct_read(back[0], &c, 1);
	CHECK(counter("instance_creates_begun") == b0 + 1);
	CHECK(counter("instance_creates_done") == d0 + 1);
	CHECK(counter("calls_create") == 0);	/* not this process's */
	ct_write(go[1], &c, 1);
	ct_wait_ok(other, "the other creator");
	/* This process's own: a create, a classic allocation, a create that
	 * fails for lack of memory; a refused argument is no create. */
	CHECK_OK(cuMemCreate(&h, 2 * MiB, &p, 0));
	CHECK_OK(cuMemAlloc(&dp, 4096));
	CHECK(cuMemCreate(&h, (size_t)1 << 40, &p, 0) ==
	    CUDA_ERROR_OUT_OF_MEMORY);
	CHECK(cuMemCreate(&h, 0, &p, 0) == CUDA_ERROR_INVALID_VALUE);
	CHECK(counter("instance_creates_begun") == b0 + 4);
	CHECK(counter("instance_creates_done") == d0 + 4);
	CHECK_OK(cuMemFree(dp));
	/* A window inside another thread's create, begun before it: done
	 * read in the window does not count it yet, begun does.  Tried again
	 * if this thread was held off the CPU past the create's end. */
	for (tries = 0; tries < 5 && !seen; tries++) {
		b0 = counter("instance_creates_begun");
		__atomic_store_n(&inflight_returned, 0, __ATOMIC_SEQ_CST);
		CHECK(pthread_create(&t, NULL, inflight_create, NULL) == 0);
		while (counter("instance_creates_begun") == b0)
			;
		d1 = counter("instance_creates_done");
		b1 = counter("instance_creates_begun");
		if (!__atomic_load_n(&inflight_returned, __ATOMIC_SEQ_CST)) {
			CHECK(b1 - d1 == 1);
			seen = 1;
		}
		CHECK(pthread_join(t, NULL) == 0);
		CHECK(counter("instance_creates_done") ==
		    counter("instance_creates_begun"));
	}
	CHECK(seen);
	CHECK(cuemu_counter_get("instance_creates", &v) != 0);
	_exit(0);
}

int
main(void)
{
	long long on, off = -1, t;
	int i;

	on = time_ops("a100", OP_CREATE);
	/* Best of three without latency, to ride out scheduler noise. */
	for (i = 0; i < 3; i++) {
		t = time_ops("off", OP_CREATE);
		if (off < 0 || t < off)
			off = t;
	}
	fprintf(stderr, "%d x cuMemCreate(2 MiB): a100 %lld us, off %lld us\n",
	    CALLS, on, off);
	CHECK(on >= (long long)CALLS * MIN_US_PER_CREATE);
	CHECK(off < on);
	t = time_ops("h100", OP_CREATE);
	fprintf(stderr, "%d x cuMemCreate(2 MiB): h100 %lld us\n", CALLS, t);
	CHECK(t >= (long long)CALLS * 120);
	t = time_ops("a100", OP_SHARE);
	fprintf(stderr, "%d x export + import: a100 %lld us\n", CALLS, t);
	CHECK(t >= (long long)CALLS * 20);
	t = time_ops("a100", OP_MEMINFO);
	fprintf(stderr, "%d x cuMemGetInfo: a100 %lld us\n", CALLS, t);
	CHECK(t >= (long long)CALLS * 5);
	check_scale();
	check_instance_creates();
	check_counters();	/* last: the children must fork before cuInit */
	return 0;
}
