/*
 * Legacy CUDA IPC of pooled memory: unmodified programs under
 * LD_PRELOAD=libvmm_client.so exchange cudaIpcGetMemHandle /
 * cuIpcGetMemHandle handles of memory vmmd lent them (VMM memory, which the
 * emulated driver, like the real one, refuses to export this way).  The
 * test process starts vmmd and runs each side as a child forked before any
 * CUDA call, talking over a socketpair; it never touches CUDA itself.
 *
 *   pipe           a producer and a consumer: small and large allocations,
 *                  data checked both ways, a second open gives the same
 *                  pointer, the exporter cannot open its own handle, the
 *                  consumer shows in the daemon's stats (ipc_opened_bytes),
 *                  a handle of freed memory no longer opens
 *   torch          torch.multiprocessing's pattern: the base from
 *                  cuMemGetAddressRange, the handle of the base, an offset
 *   kill_exporter  the exporter SIGKILLed while the importer maps: the data
 *                  stays intact, the chunks stay out of the pool (ipc held)
 *                  until the importer closes, then come back
 *   kill_importer  the importer SIGKILLed while it maps: chunks the
 *                  exporter freed before come back at once, the others when
 *                  the exporter frees them
 *   uid            run as root: a child that setuid()s to nobody is refused
 *                  (cudaErrorInvalidResourceHandle); skipped (77) otherwise
 *   group          the same with ipc_group = nogroup and both processes in
 *                  it: the open works across uids, data checked both ways
 *   medium         a medium block that shares its first page with its
 *                  neighbour: the chunks behind it and its offset, data
 *                  checked both ways, the neighbour untouched
 *   native         no vmmd: both processes fall back to CUDA's allocator,
 *                  and the driver's own handles pass through untouched
 */
#include <cuda.h>
#include <cuda_runtime_api.h>

#include <dlfcn.h>
#include <grp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define MiB (1ull << 20)
#define CKRT(call) CHECK((call) == cudaSuccess)
#define LAZY cudaIpcMemLazyEnablePeerAccess
#define NOBODY 65534

static char	sockdir[1024], sockpath[1100];
static pid_t	daemon_pid;

static void
pattern(unsigned char *b, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (unsigned char)(seed * 7 + i * 13 + (i >> 11));
}

static void
put(void *d, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);

	CHECK(b != NULL);
	pattern(b, n, seed);
	CKRT(cudaMemcpy(d, b, n, cudaMemcpyHostToDevice));
	/* The write may still be pending (cuda.h): done before another
	 * process looks, or the memory is closed or freed. */
	CKRT(cudaDeviceSynchronize());
	free(b);
}

static int
holds(const void *d, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n), *e = malloc(n);
	int ok;

	CHECK(b != NULL && e != NULL);
	pattern(e, n, seed);
	CKRT(cudaMemcpy(b, d, n, cudaMemcpyDeviceToHost));
	ok = memcmp(b, e, n) == 0;
	free(b);
	free(e);
	return ok;
}

static void
xfer(int fd, void *buf, size_t n, int out)
{
	char *p = buf;

	while (n > 0) {
		ssize_t r = out ? write(fd, p, n) : read(fd, p, n);

		CHECK(r > 0);
		p += r;
		n -= (size_t)r;
	}
}

static void
say(int fd, char c)
{
	xfer(fd, &c, 1, 1);
}

static void
hear(int fd, char want)
{
	char c = 0;

	xfer(fd, &c, 1, 0);
	CHECK(c == want);
}

/* Runs fn(sock) in a child forked before any CUDA call; returns its pid. */
static pid_t
spawn(int (*fn)(int), int sock, int other)
{
	pid_t pid = fork();

	CHECK(pid >= 0);
	if (pid == 0) {
		/* A failing test must not leave its children waiting. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(other);
		_exit(fn(sock));
	}
	return pid;
}

static void
reap_ok(pid_t pid)
{
	int st;

	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void
reap_killed(pid_t pid)
{
	int st;

	CHECK(kill(pid, SIGKILL) == 0);
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFSIGNALED(st));
}

static Vmm__PoolStats
pool(void)
{
	Vmm__PoolStats ps;

	tc_admin_pool(sockpath, &ps);
	return ps;
}

/* Polls the pool until ipc_held_bytes is want (the daemon notices a
 * SIGKILL through the pidfd, a moment later). */
static Vmm__PoolStats
pool_when_held(uint64_t want)
{
	Vmm__PoolStats ps;
	int i;

	for (i = 0; i < 500; i++) {
		ps = pool();
		if (ps.ipc_held_bytes == want)
			return ps;
		tc_sleep_ms(10);
	}
	CHECK(!"ipc_held_bytes never reached the expected value");
	return ps;
}

/* The bytes session of pid has open by IPC, as `vmmctl stats` shows (the
 * library's session; this process's admin session has none). */
static uint64_t
opened_by(pid_t pid)
{
	return tc_admin_pid_figure(sockpath, pid,
	    TC_SESSION_FIELD(ipc_opened_bytes));
}

static const char *daemon_conf = "idle_timeout_ms = 0\n";

static void
start_daemon(void)
{
	daemon_pid = tc_start_daemon(sockdir, daemon_conf, NULL);
}

/* ---- pipe ------------------------------------------------------------------ */

#define SMALL	4096u
#define LARGE	(6 * MiB + 100)

static int
pipe_producer(int s)
{
	cudaIpcMemHandle_t hs, hl, junk;
	void *small, *large, *q;

	CKRT(cudaSetDevice(0));
	CKRT(cudaMalloc(&small, SMALL));
	CKRT(cudaMalloc(&large, LARGE));
	put(small, SMALL, 1);
	put(large, LARGE, 2);
	/* Inner pointers name no allocation. */
	CHECK(cudaIpcGetMemHandle(&junk, (char *)large + 4096) ==
	    cudaErrorInvalidValue);
	CKRT(cudaIpcGetMemHandle(&hs, small));
	CKRT(cudaIpcGetMemHandle(&hl, large));
	/* "the exporting process cannot open its own handle" */
	CHECK(cudaIpcOpenMemHandle(&q, hl, LAZY) ==
	    cudaErrorDeviceUninitialized);
	xfer(s, &hs, sizeof(hs), 1);
	xfer(s, &hl, sizeof(hl), 1);
	hear(s, 'W');
	CHECK(holds(small, SMALL, 3));
	CHECK(holds(large, LARGE / 2, 2));
	CHECK(holds((char *)large + LARGE / 2, LARGE - LARGE / 2, 4));
	/* Freed, and given back: the handle names nothing any more. */
	CKRT(cudaFree(large));
	CHECK(((int (*)(void))dlsym(RTLD_DEFAULT, "vmm_flush"))() == 0);
	say(s, 'F');
	hear(s, 'D');
	CKRT(cudaFree(small));
	return 0;
}

static int
pipe_consumer(int s)
{
	cudaIpcMemHandle_t hs, hl;
	CUipcMemHandle ch;
	CUdeviceptr again;
	void *ps, *pl;

	xfer(s, &hs, sizeof(hs), 0);
	xfer(s, &hl, sizeof(hl), 0);
	CKRT(cudaSetDevice(0));
	/* Only the documented flag. */
	CHECK(cudaIpcOpenMemHandle(&pl, hl, 0) == cudaErrorInvalidValue);
	CKRT(cudaIpcOpenMemHandle(&ps, hs, LAZY));
	CKRT(cudaIpcOpenMemHandle(&pl, hl, LAZY));
	CHECK(holds(ps, SMALL, 1));
	CHECK(holds(pl, LARGE, 2));
	/* The driver's entry point, same handle: same pointer, one more
	 * reference. */
	memcpy(&ch, &hl, sizeof(ch));
	CHECK(cuIpcOpenMemHandle(&again, ch, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS)
	    == CUDA_SUCCESS);
	CHECK(again == (CUdeviceptr)(uintptr_t)pl);
	CHECK(cuIpcCloseMemHandle(again) == CUDA_SUCCESS);
	/* Not memory of ours to free. */
	CHECK(cudaFree(pl) != cudaSuccess);
	put(ps, SMALL, 3);
	put((char *)pl + LARGE / 2, LARGE - LARGE / 2, 4);
	/* vmmctl stats shows what this process has open. */
	CHECK(opened_by(getpid()) >= 2 * MiB + 6 * MiB);
	CKRT(cudaIpcCloseMemHandle(pl));
	CKRT(cudaIpcCloseMemHandle(ps));
	CHECK(cudaIpcCloseMemHandle(ps) != cudaSuccess);
	CHECK(opened_by(getpid()) == 0);
	say(s, 'W');
	hear(s, 'F');
	CHECK(cudaIpcOpenMemHandle(&pl, hl, LAZY) ==
	    cudaErrorInvalidResourceHandle);
	say(s, 'D');
	return 0;
}

static void
sc_pipe(void)
{
	int sv[2];
	pid_t a, b;

	start_daemon();
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	a = spawn(pipe_producer, sv[0], sv[1]);
	b = spawn(pipe_consumer, sv[1], sv[0]);
	close(sv[0]);
	close(sv[1]);
	reap_ok(a);
	reap_ok(b);
	CHECK(pool().ipc_held_bytes == 0);
}

/* ---- medium ---------------------------------------------------------------- */

#define MED_A	(5 * MiB / 2)
#define MED_B	(25 * MiB / 2)

/* B starts inside a page A's grant backs (neighbours share it): the
 * handle names the chunks behind B's pages from the first, and B's offset
 * in them; the importer maps them back to back. */
static int
medium_producer(int s)
{
	cudaIpcMemHandle_t h;
	void *a, *b, *base;
	size_t sz;

	CKRT(cudaSetDevice(0));
	CKRT(cudaMalloc(&a, MED_A));
	CKRT(cudaMalloc(&b, MED_B));
	CHECK((char *)b == (char *)a + MED_A);
	put(a, MED_A, 21);
	put(b, MED_B, 22);
	CHECK(cuMemGetAddressRange((CUdeviceptr *)&base, &sz,
	    (CUdeviceptr)(uintptr_t)b + MED_B - 1) == CUDA_SUCCESS);
	CHECK(base == b && sz == MED_B);
	CKRT(cudaIpcGetMemHandle(&h, b));
	xfer(s, &h, sizeof(h), 1);
	hear(s, 'W');
	/* The importer wrote B's second half; A is untouched. */
	CHECK(holds(a, MED_A, 21));
	CHECK(holds(b, MED_B / 2, 22));
	CHECK(holds((char *)b + MED_B / 2, MED_B - MED_B / 2, 23));
	CKRT(cudaFree(b));
	CKRT(cudaFree(a));
	return 0;
}

static int
medium_consumer(int s)
{
	cudaIpcMemHandle_t h;
	void *p;

	xfer(s, &h, sizeof(h), 0);
	CKRT(cudaSetDevice(0));
	CKRT(cudaIpcOpenMemHandle(&p, h, LAZY));
	CHECK(holds(p, MED_B, 22));
	put((char *)p + MED_B / 2, MED_B - MED_B / 2, 23);
	CHECK(opened_by(getpid()) >= MED_B);
	CKRT(cudaIpcCloseMemHandle(p));
	CHECK(opened_by(getpid()) == 0);
	say(s, 'W');
	return 0;
}

static void
sc_medium(void)
{
	int sv[2];
	pid_t a, b;

	start_daemon();
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	a = spawn(medium_producer, sv[0], sv[1]);
	b = spawn(medium_consumer, sv[1], sv[0]);
	close(sv[0]);
	close(sv[1]);
	reap_ok(a);
	reap_ok(b);
	CHECK(pool().ipc_held_bytes == 0);
}

/* ---- torch ---------------------------------------------------------------- */

struct torch_msg {
	cudaIpcMemHandle_t	h;
	uint64_t		offset, bytes;
};

/* One tensor inside an allocation, shared the way torch.multiprocessing
 * does: the allocation's base and size from cuMemGetAddressRange, the
 * handle of the base, the tensor's offset from it. */
static void
torch_share(int s, void *alloc, size_t asize, size_t off, size_t bytes,
    unsigned seed)
{
	struct torch_msg m;
	CUdeviceptr base = 0;
	size_t size = 0;

	put((char *)alloc + off, bytes, seed);
	CHECK(cuMemGetAddressRange(&base, &size,
	    (CUdeviceptr)(uintptr_t)alloc + off) == CUDA_SUCCESS);
	CHECK(base == (CUdeviceptr)(uintptr_t)alloc && size >= asize);
	CKRT(cudaIpcGetMemHandle(&m.h, (void *)(uintptr_t)base));
	m.offset = (CUdeviceptr)(uintptr_t)alloc + off - base;
	m.bytes = bytes;
	xfer(s, &m, sizeof(m), 1);
}

static int
torch_producer(int s)
{
	void *big, *small;

	CKRT(cudaSetDevice(0));
	CKRT(cudaMalloc(&big, 20 * MiB));
	CKRT(cudaMalloc(&small, 8192));
	torch_share(s, big, 20 * MiB, 3 * MiB + 512, 5 * MiB, 5);
	torch_share(s, small, 8192, 1024, 2048, 6);
	hear(s, 'W');
	CHECK(holds((char *)big + 3 * MiB + 512, 5 * MiB, 7));
	CHECK(holds((char *)small + 1024, 2048, 8));
	CKRT(cudaFree(big));
	CKRT(cudaFree(small));
	return 0;
}

static int
torch_consumer(int s)
{
	struct torch_msg m[2];
	void *p[2];
	int i;

	CKRT(cudaSetDevice(0));
	for (i = 0; i < 2; i++) {
		xfer(s, &m[i], sizeof(m[i]), 0);
		CKRT(cudaIpcOpenMemHandle(&p[i], m[i].h, LAZY));
		CHECK(holds((char *)p[i] + m[i].offset, m[i].bytes, 5 + i));
		put((char *)p[i] + m[i].offset, m[i].bytes, 7 + i);
	}
	for (i = 0; i < 2; i++)
		CKRT(cudaIpcCloseMemHandle(p[i]));
	say(s, 'W');
	return 0;
}

static void
sc_torch(void)
{
	int sv[2];
	pid_t a, b;

	start_daemon();
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	a = spawn(torch_producer, sv[0], sv[1]);
	b = spawn(torch_consumer, sv[1], sv[0]);
	close(sv[0]);
	close(sv[1]);
	reap_ok(a);
	reap_ok(b);
}

/* ---- kill_exporter --------------------------------------------------------- */

#define KSIZE	(8 * MiB)

static int
kill_exporter(int s)
{
	cudaIpcMemHandle_t h;
	void *p;

	CKRT(cudaSetDevice(0));
	CKRT(cudaMalloc(&p, KSIZE));
	put(p, KSIZE, 9);
	CKRT(cudaIpcGetMemHandle(&h, p));
	xfer(s, &h, sizeof(h), 1);
	for (;;)
		pause();	/* until SIGKILLed, memory still held */
}

static int
kill_importer_side(int s)
{
	cudaIpcMemHandle_t h;
	void *p;

	xfer(s, &h, sizeof(h), 0);
	CKRT(cudaSetDevice(0));
	CKRT(cudaIpcOpenMemHandle(&p, h, LAZY));
	say(s, 'O');
	hear(s, 'K');		/* the exporter is dead */
	CHECK(holds(p, KSIZE, 9));
	put(p, KSIZE, 10);
	CHECK(holds(p, KSIZE, 10));
	say(s, 'C');
	hear(s, 'c');
	CKRT(cudaIpcCloseMemHandle(p));
	say(s, 'D');
	return 0;
}

static void
sc_kill_exporter(void)
{
	int e[2], i[2];
	cudaIpcMemHandle_t h;
	Vmm__PoolStats ps;
	pid_t a, b;

	start_daemon();
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, e) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, i) == 0);
	a = spawn(kill_exporter, e[1], e[0]);
	b = spawn(kill_importer_side, i[1], i[0]);
	close(e[1]);
	close(i[1]);
	xfer(e[0], &h, sizeof(h), 0);
	xfer(i[0], &h, sizeof(h), 1);
	hear(i[0], 'O');
	reap_killed(a);
	/* The exporter's chunks are held for the importer: not idle, not
	 * lendable, whatever else asks for memory meanwhile. */
	ps = pool_when_held(KSIZE);
	CHECK(ps.idle_bytes == 0);
	{
		struct tc *c = tc_open(sockpath, "other", false);
		struct tc_chunk g[8];
		uint64_t creates = 0;
		struct tc *adm = tc_open(sockpath, "admin", true);

		creates = tc_counter(adm, "creates");
		CHECK(tc_acquire(c, KSIZE, 1, g, 8) > 0);
		/* Served by new memory: the held chunks are not in the pool. */
		CHECK(tc_counter(adm, "creates") > creates);
		tc_close_chunks(g, 1);
		tc_close(adm);
		tc_close(c);
	}
	say(i[0], 'K');
	hear(i[0], 'C');
	CHECK(pool().ipc_held_bytes == KSIZE);
	say(i[0], 'c');
	hear(i[0], 'D');
	/* Closed: back in the pool, once. */
	ps = pool_when_held(0);
	CHECK(ps.idle_bytes >= KSIZE);
	reap_ok(b);
}

/* ---- kill_importer --------------------------------------------------------- */

static int
ki_exporter(int s)
{
	cudaIpcMemHandle_t h[2];
	int (*flush)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "vmm_flush");
	void *p[2];

	CHECK(flush != NULL);
	CKRT(cudaSetDevice(0));
	CKRT(cudaMalloc(&p[0], KSIZE));
	CKRT(cudaMalloc(&p[1], 2 * KSIZE));
	CKRT(cudaIpcGetMemHandle(&h[0], p[0]));
	CKRT(cudaIpcGetMemHandle(&h[1], p[1]));
	xfer(s, h, sizeof(h), 1);
	hear(s, 'O');
	/* Freed while the importer maps it: held for it, not pooled. */
	CKRT(cudaFree(p[0]));
	CHECK(flush() == 0);
	say(s, 'F');
	hear(s, 'G');		/* the importer is dead */
	CKRT(cudaFree(p[1]));
	CHECK(flush() == 0);
	say(s, 'D');
	hear(s, 'x');
	return 0;
}

static int
ki_importer(int s)
{
	cudaIpcMemHandle_t h[2];
	void *p[2];

	xfer(s, h, sizeof(h), 0);
	CKRT(cudaSetDevice(0));
	CKRT(cudaIpcOpenMemHandle(&p[0], h[0], LAZY));
	CKRT(cudaIpcOpenMemHandle(&p[1], h[1], LAZY));
	say(s, 'O');
	for (;;)
		pause();
}

static void
sc_kill_importer(void)
{
	int e[2], i[2];
	cudaIpcMemHandle_t h[2];
	Vmm__PoolStats ps;
	pid_t a, b;

	start_daemon();
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, e) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, i) == 0);
	a = spawn(ki_exporter, e[1], e[0]);
	b = spawn(ki_importer, i[1], i[0]);
	close(e[1]);
	close(i[1]);
	xfer(e[0], h, sizeof(h), 0);
	xfer(i[0], h, sizeof(h), 1);
	hear(i[0], 'O');
	say(e[0], 'O');
	hear(e[0], 'F');
	ps = pool_when_held(KSIZE);
	CHECK(ps.idle_bytes == 0);
	reap_killed(b);
	/* The importer is gone: what the exporter freed comes back now. */
	ps = pool_when_held(0);
	CHECK(ps.idle_bytes == KSIZE);
	say(e[0], 'G');
	hear(e[0], 'D');
	/* The other chunks came back with the exporter's free. */
	ps = pool();
	CHECK(ps.idle_bytes == 3 * KSIZE && ps.ipc_held_bytes == 0);
	say(e[0], 'x');
	reap_ok(a);
}

/* ---- uid ------------------------------------------------------------------- */

static bool	group_case;	/* both processes in ipc_group */

static int
uid_exporter(int s)
{
	const gid_t nogroup = NOBODY;
	cudaIpcMemHandle_t h;
	void *p;

	/* Root, and in ipc_group too when the case wants it (vmmd reads the
	 * groups when the library connects, at the first allocation). */
	if (group_case)
		CHECK(setgroups(1, &nogroup) == 0);
	CKRT(cudaSetDevice(0));
	CKRT(cudaMalloc(&p, KSIZE));
	put(p, KSIZE, 11);
	CKRT(cudaIpcGetMemHandle(&h, p));
	xfer(s, &h, sizeof(h), 1);
	hear(s, 'R');
	if (group_case)
		CHECK(holds(p, KSIZE, 12));
	CKRT(cudaFree(p));
	return 0;
}

/* Another uid: vmmd refuses, the call says which handle was bad; unless
 * both are in ipc_group. */
static int
uid_importer(int s)
{
	cudaIpcMemHandle_t h;
	void *p = NULL;

	/* The log file's directory is root's: log to stderr instead. */
	CHECK(unsetenv("VMM_LOG_FILE") == 0);
	CHECK(setgroups(0, NULL) == 0 && setgid(NOBODY) == 0 &&
	    setuid(NOBODY) == 0);
	xfer(s, &h, sizeof(h), 0);
	CKRT(cudaSetDevice(0));
	if (group_case) {
		CKRT(cudaIpcOpenMemHandle(&p, h, LAZY));
		CHECK(holds(p, KSIZE, 11));
		put(p, KSIZE, 12);
		CKRT(cudaIpcCloseMemHandle(p));
	} else {
		CHECK(cudaIpcOpenMemHandle(&p, h, LAZY) ==
		    cudaErrorInvalidResourceHandle);
		CHECK(p == NULL);
	}
	say(s, 'R');
	return 0;
}

static void
sc_uid(void)
{
	Vmm__PoolStats ps;
	int sv[2], i;
	pid_t a, b;

	if (geteuid() != 0) {
		printf("skipped: needs root to run a child as another uid\n");
		exit(77);
	}
	start_daemon();
	/* nobody may reach the socket (mode 0660, root's group otherwise). */
	CHECK(chmod(sockpath, 0666) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	a = spawn(uid_exporter, sv[0], sv[1]);
	b = spawn(uid_importer, sv[1], sv[0]);
	close(sv[0]);
	close(sv[1]);
	reap_ok(b);
	reap_ok(a);
	{
		struct tc *adm = tc_open(sockpath, "admin", true);

		CHECK(tc_counter(adm, "ipc_refused") == (group_case ? 0 : 1));
		CHECK(tc_counter(adm, "ipc_opens") == (group_case ? 1 : 0));
		tc_close(adm);
	}
	/* The exporter is gone: its chunk comes back to the pool, unless a
	 * process of another tenant (uid) mapped it: then to the GPU, as it
	 * may have kept an fd of it. */
	for (i = 0; i < 500; i++) {
		ps = pool();
		if (ps.lent_bytes == 0 && ps.quarantined_bytes == 0)
			break;
		tc_sleep_ms(10);
	}
	CHECK(ps.lent_bytes == 0 && ps.ipc_held_bytes == 0);
	CHECK(ps.idle_bytes == (group_case ? 0 : KSIZE));
	CHECK(ps.physical_bytes == ps.idle_bytes);
}

/* ---- native ---------------------------------------------------------------- */

static int
native_producer(int s)
{
	cudaIpcMemHandle_t h;
	void *p;

	CKRT(cudaSetDevice(0));
	CKRT(cudaMalloc(&p, LARGE));	/* the fallback: cuMemAlloc memory */
	put(p, LARGE, 13);
	CKRT(cudaIpcGetMemHandle(&h, p));
	CHECK(memcmp(h.reserved, "vmmdIPC1", 8) != 0);	/* the driver's */
	xfer(s, &h, sizeof(h), 1);
	hear(s, 'W');
	CHECK(holds(p, LARGE, 14));
	CKRT(cudaFree(p));
	return 0;
}

static int
native_consumer(int s)
{
	cudaIpcMemHandle_t h;
	void *p;

	xfer(s, &h, sizeof(h), 0);
	CKRT(cudaSetDevice(0));
	CKRT(cudaIpcOpenMemHandle(&p, h, LAZY));
	CHECK(holds(p, LARGE, 13));
	put(p, LARGE, 14);
	CKRT(cudaIpcCloseMemHandle(p));
	say(s, 'W');
	return 0;
}

static void
sc_native(void)
{
	int sv[2];
	pid_t a, b;

	/* No daemon started: the library falls back, once, in each. */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	a = spawn(native_producer, sv[0], sv[1]);
	b = spawn(native_consumer, sv[1], sv[0]);
	close(sv[0]);
	close(sv[1]);
	reap_ok(a);
	reap_ok(b);
}

int
main(int argc, char **argv)
{
	const char *dir = getenv("VMM_SOCKET_DIR");

	CHECK(argc == 2 && dir != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s", dir);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	if (strcmp(argv[1], "pipe") == 0)
		sc_pipe();
	else if (strcmp(argv[1], "torch") == 0)
		sc_torch();
	else if (strcmp(argv[1], "medium") == 0)
		sc_medium();
	else if (strcmp(argv[1], "kill_exporter") == 0)
		sc_kill_exporter();
	else if (strcmp(argv[1], "kill_importer") == 0)
		sc_kill_importer();
	else if (strcmp(argv[1], "uid") == 0)
		sc_uid();
	else if (strcmp(argv[1], "native") == 0)
		sc_native();
	else if (strcmp(argv[1], "group") == 0) {
		group_case = true;
		daemon_conf = "idle_timeout_ms = 0\nipc_group = nogroup\n";
		sc_uid();
	}
	else
		CHECK(!"unknown scenario");
	if (daemon_pid > 0)
		CHECK(WIFEXITED(tc_stop_daemon(daemon_pid)));
	return 0;
}
