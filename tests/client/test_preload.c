/*
 * Unmodified CUDA programs under LD_PRELOAD=libvmm_client.so, against a real
 * vmmd on the emulator.  One program, one scenario per argument:
 *
 *   basic     runtime calls of many sizes, data checked, memory from the pool
 *   getproc   the driver's cuMemAlloc found only through cuGetProcAddress
 *             (as a statically linked runtime finds it) is the shim's
 *   range     cuMemGetAddressRange on a multi-chunk allocation: the
 *             application's base and size, not one chunk's
 *   threads   8 threads hammering cudaMalloc/cudaFree with data checks
 *   fork      a forked child that exits leaves the parent's memory and the
 *             daemon's accounting untouched
 *   fallback  no daemon at first: CUDA's allocator, one ERROR line; once vmmd
 *             runs, new memory comes from it and the old pointer frees fine
 *   share     process A frees, process B gets A's chunk (stats), A's stale
 *             pointer no longer writes it, A's SIGKILL returns what it held
 *   restart   vmmd SIGKILLed and restarted while data is held: the data is
 *             intact, allocating goes on, and the new daemon's stats show
 *             what the client holds
 *
 * The public API is reached with dlsym(RTLD_DEFAULT, ...), as a program that
 * does not link the library would.
 */
#include <cuda.h>
#include <cuda_runtime_api.h>

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"
#include "vmm_client.h"

#define MiB (1ull << 20)
#define CKRT(call) CHECK((call) == cudaSuccess)

static char	sockdir[1024], sockpath[1100];
static pid_t	daemon_pid;

static int (*p_get_usage)(struct vmm_usage *);
static int (*p_get_range)(const void *, void **, size_t *);
static int (*p_flush)(void);

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void
api_resolve(void)
{
	p_get_usage = (int (*)(struct vmm_usage *))dlsym(RTLD_DEFAULT,
	    "vmm_get_usage");
	p_get_range = (int (*)(const void *, void **, size_t *))dlsym(
	    RTLD_DEFAULT, "vmm_get_range");
	p_flush = (int (*)(void))dlsym(RTLD_DEFAULT, "vmm_flush");
	CHECK(p_get_usage != NULL && p_get_range != NULL && p_flush != NULL);
}

static void
pattern(unsigned char *b, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (unsigned char)(seed + i * 13 + (i >> 11));
}

static void
put(void *d, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);

	CHECK(b != NULL);
	pattern(b, n, seed);
	CKRT(cudaMemcpy(d, b, n, cudaMemcpyHostToDevice));
	free(b);
}

static void
expect(const void *d, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n), *e = malloc(n);

	CHECK(b != NULL && e != NULL);
	pattern(e, n, seed);
	CKRT(cudaMemcpy(b, d, n, cudaMemcpyDeviceToHost));
	CHECK(memcmp(b, e, n) == 0);
	free(b);
	free(e);
}

static uint64_t
lent(void)
{
	struct tc *adm = tc_open(sockpath, "admin", true);
	Vmm__PoolStats ps;

	CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
	tc_close(adm);
	return ps.lent_bytes;
}

static const char *daemon_conf = "idle_timeout_ms = 0\n";

static void
start_daemon(void)
{
	daemon_pid = tc_start_daemon(sockdir, daemon_conf, NULL);
}

/* ---- scenarios ---------------------------------------------------------------- */

static void
sc_basic(void)
{
	static const size_t sizes[] = { 1, 256, 1000, 70000, 1 << 20,
	    (1 << 20) + 1, 7 * MiB + 3, 32 * MiB };
	void *p[8];
	struct vmm_usage u;
	size_t i, f, t;

	start_daemon();
	CKRT(cudaSetDevice(0));
	CHECK(cudaMalloc(&p[0], 0) == cudaSuccess && p[0] == NULL);
	CHECK(cudaFree(NULL) == cudaSuccess);
	for (i = 0; i < 8; i++) {
		CKRT(cudaMalloc(&p[i], sizes[i]));
		put(p[i], sizes[i], (unsigned)i);
	}
	for (i = 0; i < 8; i++)
		expect(p[i], sizes[i], (unsigned)i);
	CHECK(p_get_usage(&u) == 0);
	CHECK(u.allocs == 8 && u.in_use_bytes >= 40 * MiB);
	CHECK(lent() == u.mapped_bytes && u.mapped_bytes > 0);
	/* cudaMemGetInfo is the client's view from vmmd. */
	CKRT(cudaMemGetInfo(&f, &t));
	CHECK(t > 0 && f <= t);
	/* A pointer that is not ours goes to the original and is refused. */
	CHECK(cudaFree((char *)p[7] + 256) != cudaSuccess);
	for (i = 0; i < 8; i++)
		CKRT(cudaFree(p[i]));
	CHECK(p_get_usage(&u) == 0 && u.in_use_bytes == 0 && u.frees == 8);
	CHECK(p_flush() == 0);
	CHECK(lent() == 0);
}

static void
sc_getproc(void)
{
	typedef CUresult (*gpa_t)(const char *, void **, int, cuuint64_t,
	    CUdriverProcAddressQueryResult *);
	CUresult (*alloc)(CUdeviceptr *, size_t);
	CUresult (*dfree)(CUdeviceptr);
	void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	CUdriverProcAddressQueryResult st;
	CUdeviceptr d;
	void *base;
	size_t size;
	gpa_t gpa;
	CUcontext ctx;

	start_daemon();
	CHECK(lib != NULL);
	/* The path a statically linked runtime takes. */
	CHECK((gpa = (gpa_t)dlsym(lib, "cuGetProcAddress_v2")) != NULL);
	CHECK(gpa("cuMemAlloc", (void **)&alloc, 12000, 0, &st) == CUDA_SUCCESS);
	CHECK(st == CU_GET_PROC_ADDRESS_SUCCESS && alloc != NULL);
	CHECK(gpa("cuMemFree", (void **)&dfree, 12000, 0, &st) == CUDA_SUCCESS);
	/* The pointer is the shim's, not the driver's. */
	{
		Dl_info di;

		CHECK(dladdr((void *)alloc, &di) != 0 && di.dli_fname != NULL);
		CHECK(strstr(di.dli_fname, "libvmm_client") != NULL);
	}
	CHECK_OK(cuInit(0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	CHECK_OK(cuCtxSetCurrent(ctx));
	CHECK(alloc(&d, 3 * MiB) == CUDA_SUCCESS);
	CHECK(p_get_range((void *)(uintptr_t)d, &base, &size) == 0);
	CHECK(base == (void *)(uintptr_t)d && size == 3 * MiB);
	CHECK(lent() >= 3 * MiB);
	CHECK(dfree(d) == CUDA_SUCCESS);
	CHECK(p_get_range((void *)(uintptr_t)d, &base, &size) != 0);
}

static void
sc_range(void)
{
	CUdeviceptr b;
	size_t s;
	void *p, *q;

	start_daemon();
	CKRT(cudaSetDevice(0));
	/* Several chunks: 12 MiB + 5 bytes is one allocation to the app. */
	CKRT(cudaMalloc(&p, 12 * MiB + 5));
	CHECK(cuMemGetAddressRange(&b, &s, (CUdeviceptr)(uintptr_t)p +
	    11 * MiB) == CUDA_SUCCESS);
	CHECK(b == (CUdeviceptr)(uintptr_t)p && s == 12 * MiB + 5);
	/* A sub-allocated block: its own base and size. */
	CKRT(cudaMalloc(&q, 3000));
	CHECK(cuMemGetAddressRange(&b, &s, (CUdeviceptr)(uintptr_t)q + 2999) ==
	    CUDA_SUCCESS);
	CHECK(b == (CUdeviceptr)(uintptr_t)q && s >= 3000);
	CKRT(cudaFree(p));
	CKRT(cudaFree(q));
	/* Freed: no longer an allocation. */
	CHECK(cuMemGetAddressRange(&b, &s, (CUdeviceptr)(uintptr_t)p) !=
	    CUDA_SUCCESS);
}

#define NTHREADS 8
#define ITERS 3000

static void *
hammer(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg, k = id * 7919;
	void *live[16] = { 0 };
	size_t sz[16] = { 0 };
	unsigned char mark[16], got;
	int i;

	CKRT(cudaSetDevice(0));
	for (i = 0; i < ITERS; i++) {
		int j = (int)(k % 16);

		k = k * 1103515245u + 12345u;
		if (live[j] != NULL) {
			CKRT(cudaMemcpy(&got, live[j], 1, cudaMemcpyDeviceToHost));
			CHECK(got == mark[j]);
			CKRT(cudaFree(live[j]));
		}
		sz[j] = 256u << (k % 13);	/* 256 B .. 1 MiB */
		if (k % 97 == 0)
			sz[j] = 3 * MiB;
		CKRT(cudaMalloc(&live[j], sz[j]));
		mark[j] = (unsigned char)(id * 31 + (unsigned)i);
		CKRT(cudaMemcpy(live[j], &mark[j], 1, cudaMemcpyHostToDevice));
	}
	for (i = 0; i < 16; i++)
		if (live[i] != NULL) {
			CKRT(cudaMemcpy(&got, live[i], 1, cudaMemcpyDeviceToHost));
			CHECK(got == mark[i]);
			CKRT(cudaFree(live[i]));
		}
	return NULL;
}

static void
sc_threads(void)
{
	pthread_t t[NTHREADS];
	struct vmm_usage u;
	uintptr_t i;

	start_daemon();
	for (i = 0; i < NTHREADS; i++)
		CHECK(pthread_create(&t[i], NULL, hammer, (void *)i) == 0);
	for (i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	CHECK(p_get_usage(&u) == 0);
	CHECK(u.in_use_bytes == 0);
	CHECK(u.allocs == NTHREADS * (ITERS) && u.frees == u.allocs);
}

static void
sc_fork(void)
{
	struct vmm_usage u0, u1;
	uint64_t before;
	void *p, *q;
	int st;
	pid_t c;

	start_daemon();
	CKRT(cudaSetDevice(0));
	CKRT(cudaMalloc(&p, 5 * MiB));
	CKRT(cudaMalloc(&q, 4096));
	put(p, 5 * MiB, 3);
	CHECK(p_get_usage(&u0) == 0);
	before = lent();
	if ((c = fork()) == 0) {
		/* CUDA is unusable here; the library must stay silent and never
		 * touch the parent's socket or chunks, exit handlers included. */
		void *r;

		_exit(cudaMalloc(&r, 4096) == cudaSuccess ? 1 : 0);
	}
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if ((c = fork()) == 0)
		exit(0);	/* atexit handlers run */
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st));
	sleep_ms(100);
	expect(p, 5 * MiB, 3);
	CHECK(lent() == before);
	CHECK(p_get_usage(&u1) == 0 && u1.in_use_bytes == u0.in_use_bytes);
	CKRT(cudaFree(p));
	CKRT(cudaFree(q));
}

static void
sc_fallback(void)
{
	FILE *f;
	char line[512], log[1100], *logenv = getenv("VMM_LOG_FILE");
	void *old, *fresh, *base;
	size_t size;
	int errs = 0;

	/* "name-" gets the pid appended: this run's own file. */
	CHECK(logenv != NULL);
	snprintf(log, sizeof(log), "%s%d", logenv, (int)getpid());
	CKRT(cudaSetDevice(0));
	/* No daemon yet: CUDA's own allocator. */
	CKRT(cudaMalloc(&old, 3 * MiB));
	CHECK(p_get_range(old, &base, &size) != 0);
	CKRT(cudaMalloc(&fresh, 3 * MiB));	/* said only once */
	CKRT(cudaFree(fresh));
	start_daemon();
	sleep_ms(1100);		/* the library retries once a second */
	CKRT(cudaMalloc(&fresh, 3 * MiB));
	CHECK(p_get_range(fresh, &base, &size) == 0);
	put(fresh, 3 * MiB, 1);
	CKRT(cudaFree(old));
	CKRT(cudaFree(fresh));
	CHECK((f = fopen(log, "r")) != NULL);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, "[ERR]") && strstr(line, "unreachable"))
			errs++;
	fclose(f);
	CHECK(errs == 1);
}

static void
sc_share(void)
{
	int ab[2], ba[2], st;
	char c;
	pid_t a;
	void *p;
	struct tc *adm;
	uint64_t v0, v1, c0, c1;

	start_daemon();
	CHECK(pipe(ab) == 0 && pipe(ba) == 0);
	/* A: a fresh process (forked before this one touches CUDA). */
	if ((a = fork()) == 0) {
		void *pa, *hold;

		close(ab[0]);
		close(ba[1]);
		CKRT(cudaSetDevice(0));
		CKRT(cudaMalloc(&pa, 8 * MiB));
		put(pa, 8 * MiB, 77);
		CKRT(cudaMalloc(&hold, 6 * MiB));
		CKRT(cudaFree(pa));
		CHECK(p_flush() == 0);	/* A's 8 MiB back to the pool */
		CHECK(write(ab[1], "1", 1) == 1);
		CHECK(read(ba[0], &c, 1) == 1);	/* B has it now */
		/* A's stale pointer is unmapped: its write must fail. */
		{
			unsigned char junk[64] = { 0xee };

			CHECK(cudaMemcpy(pa, junk, 64, cudaMemcpyHostToDevice) !=
			    cudaSuccess);
		}
		CHECK(write(ab[1], "2", 1) == 1);
		pause();	/* killed by the parent */
		_exit(0);
	}
	close(ab[1]);	/* so a dead A is an EOF here, not a hang */
	close(ba[0]);
	CHECK(read(ab[0], &c, 1) == 1);
	adm = tc_open(sockpath, "admin", true);
	CHECK(tc_stats(adm, NULL, "fits", &v0) == 0);
	CHECK(tc_stats(adm, NULL, "creates", &c0) == 0);
	/* B (this process) gets A's memory from the pool, not new memory: a
	 * medium block, one chunk per unit, each a fit. */
	CKRT(cudaSetDevice(0));
	CKRT(cudaMalloc(&p, 8 * MiB));
	CHECK(tc_stats(adm, NULL, "fits", &v1) == 0 &&
	    v1 == v0 + (8 * MiB + adm->granularity - 1) / adm->granularity);
	CHECK(tc_stats(adm, NULL, "creates", &c1) == 0 && c1 == c0);
	put(p, 8 * MiB, 5);
	CHECK(write(ba[1], "1", 1) == 1);
	CHECK(read(ab[0], &c, 1) == 1);
	expect(p, 8 * MiB, 5);		/* A's write did not land */
	/* A is killed: its 6 MiB (rounded up to vmmd's unit) come back. */
	{
		uint64_t held = (6 * MiB + adm->granularity - 1) /
		    adm->granularity * adm->granularity;
		Vmm__PoolStats ps0, ps1;
		int i;

		CHECK(tc_stats(adm, &ps0, NULL, NULL) == 0);
		kill(a, SIGKILL);
		CHECK(waitpid(a, &st, 0) == a);
		for (i = 0; i < 100; i++) {
			CHECK(tc_stats(adm, &ps1, NULL, NULL) == 0);
			if (ps1.lent_bytes + held == ps0.lent_bytes)
				break;
			sleep_ms(20);
		}
		CHECK(ps1.lent_bytes + held == ps0.lent_bytes);
		CHECK(ps1.quarantined_bytes == 0);
	}
	tc_close(adm);
	CKRT(cudaFree(p));
}

/* A process needs memory held in another's cache: vmmd recalls it and
 * the request succeeds (128 MiB device, caches never idle out). */
static void
sc_recall(void)
{
	int ab[2], ba[2], st;
	struct tc *adm;
	uint64_t recalls, ok;
	char c;
	pid_t a;
	void *p;

	start_daemon();
	CHECK(pipe(ab) == 0 && pipe(ba) == 0);
	if ((a = fork()) == 0) {
		void *q[6];
		int i;

		close(ab[0]);
		close(ba[1]);
		CKRT(cudaSetDevice(0));
		for (i = 0; i < 6; i++)
			CKRT(cudaMalloc(&q[i], 16 * MiB));
		for (i = 0; i < 6; i++)
			CKRT(cudaFree(q[i]));	/* 96 MiB cached, not given back */
		sleep_ms(200);			/* reported to vmmd */
		CHECK(write(ab[1], "1", 1) == 1);
		CHECK(read(ba[0], &c, 1) == 1);
		_exit(0);
	}
	close(ab[1]);
	close(ba[0]);
	CHECK(read(ab[0], &c, 1) == 1);
	/* 100 MiB is more than the device has free: only A's cache can
	 * provide it. */
	CKRT(cudaSetDevice(0));
	CKRT(cudaMalloc(&p, 100 * MiB));
	put(p, 100 * MiB, 21);
	expect(p, 100 * MiB, 21);
	adm = tc_open(sockpath, "admin", true);
	CHECK(tc_stats(adm, NULL, "recalls", &recalls) == 0 && recalls >= 1);
	CHECK(tc_stats(adm, NULL, "recall_successes", &ok) == 0 && ok >= 1);
	tc_close(adm);
	CHECK(write(ba[1], "1", 1) == 1);
	CHECK(waitpid(a, &st, 0) == a && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CKRT(cudaFree(p));
}

/* A uid quota of 64 MiB: cudaMemGetInfo shows it, an allocation past it
 * fails with cudaErrorMemoryAllocation, and one that fits once the
 * process's own cache is given back succeeds. */
static void
sc_quota(void)
{
	size_t f, t;
	void *a, *b;

	daemon_conf = "idle_timeout_ms = 0\nquota.uid.0 = 64M\n";
	start_daemon();
	CKRT(cudaSetDevice(0));
	CKRT(cudaMemGetInfo(&f, &t));
	CHECK(t == 64 * MiB && f == 64 * MiB);
	CKRT(cudaMalloc(&a, 40 * MiB));
	CKRT(cudaMemGetInfo(&f, &t));
	CHECK(t == 64 * MiB && f == 24 * MiB);
	CHECK(cudaMalloc(&b, 40 * MiB) == cudaErrorMemoryAllocation);
	CKRT(cudaFree(a));	/* cached: still held from vmmd's view */
	CKRT(cudaMalloc(&b, 50 * MiB));	/* after the cache went back */
	put(b, 50 * MiB, 3);
	expect(b, 50 * MiB, 3);
	CKRT(cudaFree(b));
}

/* vmmctl trim --recall: a client's cache (never idle-returned here) and the
 * pool go back to the GPU at once, not after the idle timeouts. */
static void
sc_trim(void)
{
	int ab[2], ba[2], st, i;
	Vmm__PoolStats ps;
	struct tc *adm;
	char c;
	pid_t a;

	daemon_conf = "idle_timeout_ms = 60000\n";
	start_daemon();
	CHECK(pipe(ab) == 0 && pipe(ba) == 0);
	if ((a = fork()) == 0) {
		void *q[4];

		close(ab[0]);
		close(ba[1]);
		CKRT(cudaSetDevice(0));
		for (i = 0; i < 4; i++)
			CKRT(cudaMalloc(&q[i], 8 * MiB + (size_t)i * 2 * MiB));
		for (i = 0; i < 4; i++)
			CKRT(cudaFree(q[i]));
		sleep_ms(200);		/* reported as cached */
		CHECK(write(ab[1], "1", 1) == 1);
		CHECK(read(ba[0], &c, 1) == 1);
		_exit(0);
	}
	close(ab[1]);
	close(ba[0]);
	CHECK(read(ab[0], &c, 1) == 1);
	adm = tc_open(sockpath, "admin", true);
	CHECK(tc_stats(adm, &ps, NULL, NULL) == 0 && ps.physical_bytes > 0);
	{
		Vmm__Envelope env;
		Vmm__TrimRequest tr = VMM__TRIM_REQUEST__INIT;
		struct vmm_frame_msg *m;

		tr.request_id = tc_rid(adm);
		tr.recall_clients = true;
		env = vmm_frame_env_trim_request(&tr);
		CHECK((m = tc_call(adm, &env, NULL, 0)) != NULL);
		vmm_frame_msg_free(m);
	}
	for (i = 0; i < 50; i++) {
		CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
		if (ps.physical_bytes == 0)
			break;
		sleep_ms(10);
	}
	CHECK(ps.physical_bytes == 0);	/* within 0.5 s, timeout is 60 s */
	tc_close(adm);
	CHECK(write(ba[1], "1", 1) == 1);
	CHECK(waitpid(a, &st, 0) == a && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Idle return end to end: after the last free, the client gives its cache
 * back (large allocations, and small blocks held in this thread's cache)
 * and vmmd gives its idle pool to the GPU: physical memory falls to 0. */
static void
sc_idle(void)
{
	static const size_t sizes[] = { 300, 5000, 70000, 1 << 20, 6 * MiB,
	    20 * MiB };
	Vmm__PoolStats ps;
	struct tc *adm;
	void *p[6];
	int i;

	daemon_conf = "idle_timeout_ms = 300\n";
	start_daemon();
	CKRT(cudaSetDevice(0));
	for (i = 0; i < 6; i++)
		CKRT(cudaMalloc(&p[i], sizes[i]));
	for (i = 0; i < 6; i++)
		CKRT(cudaFree(p[i]));
	adm = tc_open(sockpath, "admin", true);
	CHECK(tc_stats(adm, &ps, NULL, NULL) == 0 && ps.physical_bytes > 0);
	for (i = 0; i < 300; i++) {
		CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
		if (ps.physical_bytes == 0)
			break;
		sleep_ms(10);
	}
	printf("idle: physical 0 after %d ms\n", i * 10);
	CHECK(ps.physical_bytes == 0);	/* VMM_IDLE_MS 200 + 300 ms */
	tc_close(adm);
}

static void
sc_restart(void)
{
	const char *args[] = { NULL };
	struct vmm_usage u;
	void *big, *small, *more;
	int st, i;

	start_daemon();
	CKRT(cudaSetDevice(0));
	CKRT(cudaMalloc(&big, 10 * MiB));
	CKRT(cudaMalloc(&small, 1000));
	put(big, 10 * MiB, 9);
	put(small, 1000, 10);
	kill(daemon_pid, SIGKILL);
	CHECK(waitpid(daemon_pid, &st, 0) == daemon_pid);
	daemon_pid = tc_start_daemon(sockdir, "idle_timeout_ms = 0\n", args);
	/* The data survived; allocating goes on (reconnects, adopts).  BIG
	 * is a medium block; MORE is a large allocation, so it needs vmmd
	 * (a medium one might fit in pages mapped already). */
	expect(big, 10 * MiB, 9);
	expect(small, 1000, 10);
	for (i = 0; i < 3; i++) {
		CKRT(cudaMalloc(&more, 40 * MiB));
		put(more, 40 * MiB, 11);
		expect(more, 40 * MiB, 11);
		CKRT(cudaFree(more));
	}
	CHECK(p_flush() == 0);
	CHECK(p_get_usage(&u) == 0);
	/* The new daemon lends exactly what the client maps. */
	CHECK(lent() == u.mapped_bytes);
	CKRT(cudaFree(big));
	CKRT(cudaFree(small));
	CHECK(p_flush() == 0);
	CHECK(lent() == 0);
}

/* basic, with a socket directory too long for sun_path: the library and
 * the daemon reach the socket through the directory's fd. */
static void
sc_longdir(void)
{
	char parent[1024], *slash;

	CHECK(strlen(sockdir) + sizeof("/gpu-.sock") + 36 >
	    sizeof(((struct sockaddr_un *)0)->sun_path));
	snprintf(parent, sizeof(parent), "%s", sockdir);
	CHECK((slash = strrchr(parent, '/')) != NULL);
	*slash = '\0';
	mkdir(parent, 0755);
	sc_basic();
}

int
main(int argc, char **argv)
{
	const char *dir = getenv("VMM_SOCKET_DIR");

	/* The library reads VMM_SOCKET_DIR once, maybe before main: the test's
	 * environment sets it. */
	CHECK(argc == 2 && dir != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s", dir);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	api_resolve();
	if (strcmp(argv[1], "basic") == 0)
		sc_basic();
	else if (strcmp(argv[1], "getproc") == 0)
		sc_getproc();
	else if (strcmp(argv[1], "range") == 0)
		sc_range();
	else if (strcmp(argv[1], "threads") == 0)
		sc_threads();
	else if (strcmp(argv[1], "fork") == 0)
		sc_fork();
	else if (strcmp(argv[1], "fallback") == 0)
		sc_fallback();
	else if (strcmp(argv[1], "share") == 0)
		sc_share();
	else if (strcmp(argv[1], "restart") == 0)
		sc_restart();
	else if (strcmp(argv[1], "recall") == 0)
		sc_recall();
	else if (strcmp(argv[1], "quota") == 0)
		sc_quota();
	else if (strcmp(argv[1], "trim") == 0)
		sc_trim();
	else if (strcmp(argv[1], "idle") == 0)
		sc_idle();
	else if (strcmp(argv[1], "longdir") == 0)
		sc_longdir();
	else
		CHECK(!"unknown scenario");
	if (daemon_pid > 0)
		CHECK(WIFEXITED(tc_stop_daemon(daemon_pid)));
	return 0;
}
