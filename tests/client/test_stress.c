/*
 * Several real processes under LD_PRELOAD=libvmm_client.so allocate and free
 * at random against one vmmd on a device too small for all their caches, so
 * that every path that moves memory between holders runs: the small heap's
 * give-back, the medium heap taking a piece of a cached large allocation,
 * Acquire.no_create and its WOULD_CREATE answer, a stitch's remainder
 * covered by a larger idle chunk, recalls, the working-set cache beside
 * other processes, stream-ordered frees.  Each free is, half of the time,
 * followed at once by an emulated kernel still writing the block (a stale
 * write on a non-blocking stream, cuemu.h), and nothing but the library's
 * own synchronization orders it before a reuse.  One scenario per argument:
 *
 *   mix    three worker processes of two threads each.
 *   kill   the same, and one worker is SIGKILLed halfway through (another
 *          takes its place) while it holds memory and has kernels queued;
 *          one worker forks a child that exits at once.
 *   restart  the same as mix, and vmmd is SIGKILLed halfway through with
 *          every chunk lent; a new instance starts at once and the workers
 *          adopt what they map (adopted_chunks counted) and go on.
 *   tenants  the same as mix, one worker as uid 65534 (root only, else
 *          skipped), vmmd with cross_tenant = reuse: chunks cross tenants
 *          zeroed (scrubs counted), and no new allocation holds a stamp of
 *          another uid (with scrub = never it does: the check can fail).
 *
 * Three invariants are checked while they run and at the end:
 *   1. one chunk, one holder: every so often the parent stops every worker
 *      (SIGSTOP, then waits until each is stopped: a consistent cut, as a
 *      chunk is unmapped before its Release is sent) and reads their
 *      /proc/<pid>/maps: no emulated chunk (a memfd, named by its inode) is
 *      mapped by two workers at once;
 *   2. a worker's data stays its own: each allocation gets a fill byte and
 *      a stamp (pid, serial, offset) every 512 KiB, written and read back
 *      with the copy functions only, checked before the free; a block
 *      lent twice or reused under a stale kernel shows another stamp or
 *      the kernel's pattern;
 *   3. nothing busy is unmapped: each worker ends with the emulator's
 *      busy_releases and faults counters at 0; once all are gone, vmmd
 *      lends nothing and quarantines nothing.
 */
#include <cuda.h>
#include <cuda_runtime_api.h>

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/check.h"
#include "../cuemu/cuemu.h"
#include "testclient.h"

#define KiB		(1ull << 10)
#define MiB		(1ull << 20)
#define NWORK		3		/* worker processes at once */
#define NTHREAD		2		/* threads per worker */
#define NSLOT		16		/* live allocations per thread */
#define LIVE_MAX	(100 * MiB)	/* bytes live per thread */
#define RUN_MS		4000		/* each worker's run, at least */
#define MIN_ALLOCS	60		/* per thread, however slow the run */
#define STEP		(512 * KiB)	/* a stamp every STEP bytes */
#define WIN		256		/* bytes checked at each stamp */
#define PAT		0xdeadbeefu	/* the stale kernel's pattern */
#define NOBODY		65534

/* ---- worker ------------------------------------------------------------ */

#define MAGIC		0x504d415453ull	/* "STAMP" */

struct stamp {
	uint64_t	magic;
	uint32_t	pid, thread, uid, pad;
	uint64_t	serial, off;
};

struct slot {
	CUdeviceptr	p;
	size_t		size;
	uint64_t	serial;
	unsigned char	fill;
	bool		async;
};

struct thr {
	int		id;
	CUcontext	ctx;
	CUstream	s;
	uint64_t	rng, serial;
	struct slot	slot[NSLOT];
	size_t		live;
	uint64_t	allocs, ooms, kernels, asyncs;
	uint64_t	end_ms;
};

static uint64_t
rnd(struct thr *t)
{
	t->rng ^= t->rng << 13;
	t->rng ^= t->rng >> 7;
	t->rng ^= t->rng << 17;
	return t->rng;
}

/* A size: small (sub-allocated), medium (the heap), or large (chunks). */
static size_t
pick_size(struct thr *t)
{
	uint64_t r = rnd(t) % 100, v = rnd(t);

	if (r < 35)
		return (size_t)(256 + v % MiB) & ~(size_t)255;
	if (r < 70)
		return (size_t)(MiB + v % (30 * MiB)) & ~(size_t)255;
	/* Above VMM_MEDIUM_MAX (32 MiB by default). */
	return (size_t)(34 * MiB + v % (48 * MiB)) & ~(size_t)255;
}

/* A fill byte that is neither 0 (fresh memory) nor one of PAT's. */
static unsigned char
pick_fill(struct thr *t)
{
	unsigned char c;

	do
		c = (unsigned char)rnd(t);
	while (c == 0 || c == 0xde || c == 0xad || c == 0xbe || c == 0xef);
	return c;
}

/* Writes slot x's fill and stamps (in order after whatever ran on its
 * memory before: the legacy stream, or its stream if stream-ordered). */
static void
slot_write(struct thr *t, struct slot *x)
{
	CUstream on = x->async ? t->s : NULL;
	struct stamp st = { MAGIC, (uint32_t)getpid(), (uint32_t)t->id,
	    (uint32_t)getuid(), 0, x->serial, 0 };
	uint64_t off;

	CHECK_OK(cuMemsetD8Async(x->p, x->fill, x->size, on));
	for (off = 0; off + sizeof(st) <= x->size; off += STEP) {
		st.off = off;
		/* Pageable source: staged at the call. */
		CHECK_OK(cuMemcpyHtoDAsync(x->p + off, &st, sizeof(st), on));
	}
}

/* Checks slot x holds what slot_write put there; fails the worker with
 * what it found otherwise. */
static void
slot_check(struct thr *t, struct slot *x)
{
	unsigned char buf[WIN];
	uint64_t off;

	if (x->async)
		CHECK_OK(cuStreamSynchronize(t->s));
	for (off = 0; off < x->size; off += STEP) {
		size_t n = x->size - off < WIN ? x->size - off : WIN, i;
		struct stamp st;

		CHECK_OK(cuMemcpyDtoH(buf, x->p + off, n));
		i = 0;
		if (n >= sizeof(st)) {
			memcpy(&st, buf, sizeof(st));
			if (st.magic != MAGIC || st.pid != (uint32_t)getpid() ||
			    st.thread != (uint32_t)t->id ||
			    st.serial != x->serial || st.off != off) {
				fprintf(stderr, "pid %d thread %d: allocation "
				    "0x%llx (%zu B, serial %" PRIu64 ") at +%"
				    PRIu64 " holds the stamp of pid %u thread "
				    "%u serial %" PRIu64 " +%" PRIu64 "\n",
				    (int)getpid(), t->id,
				    (unsigned long long)x->p, x->size,
				    x->serial, off, st.pid, st.thread,
				    st.serial, st.off);
				CHECK(!"another holder's data");
			}
			i = sizeof(st);
		}
		for (; i < n; i++)
			if (buf[i] != x->fill) {
				fprintf(stderr, "pid %d thread %d: allocation "
				    "0x%llx (%zu B) at +%" PRIu64 " holds 0x%02x, "
				    "not its 0x%02x\n", (int)getpid(), t->id,
				    (unsigned long long)x->p, x->size, off + i,
				    buf[i], x->fill);
				CHECK(!"foreign bytes");
			}
	}
}

/* Memory just allocated may hold what this tenant left in it, never
 * another's (vmmd lends a chunk across tenants only after a scrub): no
 * stamp of another uid at any stamp offset. */
static void
slot_fresh(struct thr *t, struct slot *x)
{
	uint64_t off;

	if (x->async)
		CHECK_OK(cuStreamSynchronize(t->s));
	for (off = 0; off + sizeof(struct stamp) <= x->size; off += STEP) {
		struct stamp st;

		CHECK_OK(cuMemcpyDtoH(&st, x->p + off, sizeof(st)));
		if (st.magic == MAGIC && st.uid != (uint32_t)getuid()) {
			fprintf(stderr, "uid %u: new allocation 0x%llx at +%"
			    PRIu64 " holds data of uid %u (pid %u)\n",
			    (unsigned)getuid(), (unsigned long long)x->p, off,
			    st.uid, st.pid);
			CHECK(!"another tenant's data");
		}
	}
}

static bool
slot_alloc(struct thr *t, struct slot *x)
{
	size_t size = pick_size(t);
	CUresult r;
	bool rt = rnd(t) % 2 == 0;

	if (t->live + size > LIVE_MAX)
		return false;
	x->async = rnd(t) % 4 == 0;
	if (x->async && rt) {
		void *v = NULL;
		cudaError_t e = cudaMallocAsync(&v, size, (cudaStream_t)t->s);

		r = e == cudaSuccess ? CUDA_SUCCESS :
		    e == cudaErrorMemoryAllocation ? CUDA_ERROR_OUT_OF_MEMORY :
		    CUDA_ERROR_UNKNOWN;
		x->p = (CUdeviceptr)(uintptr_t)v;
	} else if (x->async) {
		r = cuMemAllocAsync(&x->p, size, t->s);
	} else if (rt) {
		void *v = NULL;
		cudaError_t e = cudaMalloc(&v, size);

		r = e == cudaSuccess ? CUDA_SUCCESS :
		    e == cudaErrorMemoryAllocation ? CUDA_ERROR_OUT_OF_MEMORY :
		    CUDA_ERROR_UNKNOWN;
		x->p = (CUdeviceptr)(uintptr_t)v;
	} else {
		r = cuMemAlloc(&x->p, size);
	}
	/* Out of memory is an answer a full device may give; nothing else. */
	if (r == CUDA_ERROR_OUT_OF_MEMORY) {
		t->ooms++;
		return false;
	}
	CHECK_OK(r);
	x->size = size;
	x->serial = ++t->serial;
	x->fill = pick_fill(t);
	t->live += size;
	t->allocs++;
	t->asyncs += x->async;
	slot_fresh(t, x);
	slot_write(t, x);
	return true;
}

/* Checks and frees slot x, half of the time with a kernel still writing it
 * (a stale write: it must land before anyone else gets the memory). */
static void
slot_free(struct thr *t, struct slot *x, bool stale)
{
	slot_check(t, x);
	if (stale) {
		CHECK_OK(cuemu_launch_write(x->p, PAT, x->size,
		    (unsigned)(500 + rnd(t) % 8000), t->s));
		t->kernels++;
	}
	if (x->async) {
		if (rnd(t) % 2 == 0)
			CHECK_OK(cuMemFreeAsync(x->p, t->s));
		else
			CHECK(cudaFreeAsync((void *)(uintptr_t)x->p,
			    (cudaStream_t)t->s) == cudaSuccess);
	} else if (rnd(t) % 2 == 0) {
		CHECK_OK(cuMemFree(x->p));
	} else {
		CHECK(cudaFree((void *)(uintptr_t)x->p) == cudaSuccess);
	}
	t->live -= x->size;
	x->size = 0;
}

static void *
worker_thread(void *arg)
{
	struct thr *t = arg;
	int i;

	CHECK_OK(cuCtxSetCurrent(t->ctx));
	CHECK_OK(cuStreamCreate(&t->s, CU_STREAM_NON_BLOCKING));
	while (vmm_now_ms() < t->end_ms || t->allocs < MIN_ALLOCS) {
		struct slot *x = &t->slot[rnd(t) % NSLOT];

		if (x->size == 0)
			(void)slot_alloc(t, x);
		else
			slot_free(t, x, rnd(t) % 2 == 0);
	}
	for (i = 0; i < NSLOT; i++)
		if (t->slot[i].size != 0)
			slot_free(t, &t->slot[i], rnd(t) % 2 == 0);
	CHECK_OK(cuStreamSynchronize(t->s));
	CHECK_OK(cuStreamDestroy(t->s));
	return NULL;
}

static int
worker(unsigned seed, bool fork_child, bool nobody)
{
	struct thr t[NTHREAD];
	pthread_t th[NTHREAD];
	uint64_t allocs = 0, ooms = 0, kernels = 0, asyncs = 0;
	unsigned long long busy, faults;
	CUdevice dev;
	CUcontext ctx;
	int i;

	if (nobody) {
		/* Another tenant (vmmd reads the uid when the library
		 * connects); root's log directory is not its. */
		CHECK(unsetenv("VMM_LOG_FILE") == 0);
		CHECK(setgroups(0, NULL) == 0 && setgid(NOBODY) == 0 &&
		    setuid(NOBODY) == 0);
	}
	CHECK(cuemu_available());
	CHECK_OK(cuInit(0));
	CHECK_OK(cuDeviceGet(&dev, 0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, dev));
	CHECK_OK(cuCtxSetCurrent(ctx));
	memset(t, 0, sizeof(t));
	for (i = 0; i < NTHREAD; i++) {
		t[i].id = i;
		t[i].ctx = ctx;
		t[i].rng = 0x9e3779b97f4a7c15ull * (seed * NTHREAD + (unsigned)i + 1);
		t[i].end_ms = vmm_now_ms() + RUN_MS;
		CHECK(pthread_create(&th[i], NULL, worker_thread, &t[i]) == 0);
	}
	if (fork_child) {
		pid_t c;
		int st;

		/* The child never touches CUDA nor the parent's session. */
		tc_sleep_ms(RUN_MS / 3);
		CHECK((c = fork()) >= 0);
		if (c == 0)
			_exit(0);
		CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) &&
		    WEXITSTATUS(st) == 0);
	}
	for (i = 0; i < NTHREAD; i++) {
		CHECK(pthread_join(th[i], NULL) == 0);
		allocs += t[i].allocs;
		ooms += t[i].ooms;
		kernels += t[i].kernels;
		asyncs += t[i].asyncs;
	}
	CHECK_OK(cuCtxSynchronize());
	busy = cuemu_counter("busy_releases");
	faults = cuemu_counter("faults");
	fprintf(stderr, "worker %d: %" PRIu64 " allocations (%" PRIu64
	    " stream-ordered), %" PRIu64 " out of memory, %" PRIu64
	    " stale kernels; busy_releases %llu, faults %llu\n", (int)getpid(),
	    allocs, asyncs, ooms, kernels, busy, faults);
	CHECK(allocs > 0 && kernels > 0);
	CHECK(busy == 0 && faults == 0);
	return 0;
}

/* ---- parent: workers and the one-holder check ---------------------------- */

static char	self[4096];

static pid_t
spawn(unsigned seed, const char *mode)
{
	char s[32];
	pid_t pid;

	snprintf(s, sizeof(s), "%u", seed);
	fflush(NULL);
	CHECK((pid = fork()) >= 0);
	if (pid == 0) {
		/* Never outlive a parent that failed a CHECK. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* CUDA's own allocator never serves a worker silently. */
		setenv("VMM_REQUIRE_DAEMON", "1", 1);
		execl(self, self, mode, s, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* pid's state letter, or 0 if it has none (gone). */
static char
proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL || p[1] == '\0')
		return 0;
	return p[2];
}

struct seen {
	unsigned long long	ino;
	pid_t			pid;
};

/* Adds the emulated chunks pid maps to v (n of cap); fails the test if one
 * is already there for another pid. */
static size_t
scan_maps(pid_t pid, struct seen *v, size_t n, size_t cap)
{
	char path[64], line[1024];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return n;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long long ino;
		char name[512];
		size_t i;

		if (sscanf(line, "%*s %*s %*s %*s %llu %511s", &ino, name) != 2 ||
		    strncmp(name, "/memfd:cuemu:", 13) != 0)
			continue;
		for (i = 0; i < n; i++)
			if (v[i].ino == ino)
				break;
		if (i < n) {
			if (v[i].pid != pid) {
				fprintf(stderr, "chunk %s (inode %llu) is mapped "
				    "by pid %d and pid %d at once\n", name, ino,
				    (int)v[i].pid, (int)pid);
				CHECK(!"one chunk, two holders");
			}
			continue;
		}
		CHECK(n < cap);
		v[n].ino = ino;
		v[n++].pid = pid;
	}
	fclose(f);
	return n;
}

/* Stops every live worker, checks no chunk is mapped by two of them, lets
 * them go on; returns how many chunks were seen. */
static size_t
cut(const pid_t *w, size_t nw)
{
	static struct seen v[65536];
	size_t i, n = 0;
	uint64_t end;

	for (i = 0; i < nw; i++)
		if (w[i] > 0)
			(void)kill(w[i], SIGSTOP);
	end = vmm_now_ms() + 5000;
	for (i = 0; i < nw; i++) {
		char c;

		while (w[i] > 0 && (c = proc_state(w[i])) != 'T' && c != 'Z' &&
		    c != 0) {
			CHECK(vmm_now_ms() < end);
			tc_sleep_ms(1);
		}
	}
	for (i = 0; i < nw; i++)
		if (w[i] > 0)
			n = scan_maps(w[i], v, n, sizeof(v) / sizeof(v[0]));
	for (i = 0; i < nw; i++)
		if (w[i] > 0)
			(void)kill(w[i], SIGCONT);
	return n;
}

/* Reaps workers that ended; each must have exited 0 (or been killed by us:
 * killed[i]). */
static size_t
reap(pid_t *w, const bool *killed, size_t nw)
{
	size_t i, live = 0;
	int st;

	for (i = 0; i < nw; i++) {
		if (w[i] <= 0)
			continue;
		if (waitpid(w[i], &st, WNOHANG) == w[i]) {
			if (killed[i])
				CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
			else {
				if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
					fprintf(stderr, "worker %d ended with "
					    "status 0x%x\n", (int)w[i], st);
				CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
			}
			w[i] = 0;
			continue;
		}
		live++;
	}
	return live;
}

static void
run(bool kill_one, bool tenants, bool restart)
{
	const char *dir = getenv("VMM_SOCKET_DIR");
	char sockpath[1100];
	pid_t w[NWORK + 1] = { 0 }, d;
	bool killed[NWORK + 1] = { false }, restarted = false;
	size_t cuts = 0, most = 0, n;
	uint64_t start, lent = 1, quar = 1;
	struct tc *adm;
	Vmm__PoolStats ps;
	int i;

	CHECK(dir != NULL);
	tc_socket_path(dir, sockpath, sizeof(sockpath));
	/* Idle memory goes back on vmmd's timer too, while workers run;
	 * tenants: chunks cross uids (zeroed first), not destroyed. */
	d = tc_start_daemon(dir, tenants ? "idle_timeout_ms = 500\n"
	    "cross_tenant = reuse\n" : "idle_timeout_ms = 500\n", NULL);
	/* nobody may reach the socket (mode 0660, root's group otherwise). */
	if (tenants)
		CHECK(chmod(sockpath, 0666) == 0);
	for (i = 0; i < NWORK; i++)
		w[i] = spawn((unsigned)i + 1, kill_one && i == 2 ?
		    "worker-fork" : tenants && i == 1 ? "worker-nobody" :
		    "worker");
	start = vmm_now_ms();
	while (reap(w, killed, NWORK + 1) > 0) {
		if (restart && !restarted &&
		    vmm_now_ms() - start > RUN_MS / 2) {
			/* vmmd dies with every chunk lent; a new instance
			 * learns from each worker what it maps (Adopt). */
			CHECK(kill(d, SIGKILL) == 0);
			CHECK(waitpid(d, NULL, 0) == d);
			d = tc_start_daemon(dir, "idle_timeout_ms = 500\n",
			    NULL);
			restarted = true;
		}
		if (kill_one && !killed[0] && w[0] > 0 &&
		    vmm_now_ms() - start > RUN_MS / 2) {
			/* Mid-run, holding memory, kernels queued. */
			CHECK(kill(w[0], SIGKILL) == 0);
			killed[0] = true;
			w[NWORK] = spawn(NWORK + 1, "worker");
		}
		n = cut(w, NWORK + 1);
		if (n > most)
			most = n;
		cuts++;
		tc_sleep_ms(20);
	}
	fprintf(stderr, "%zu cuts, at most %zu chunks mapped at one\n", cuts,
	    most);
	/* The check looked at something. */
	CHECK(cuts > 10 && most > 0);
	adm = tc_open(sockpath, "admin", true);
	for (i = 0; i < 300 && (lent != 0 || quar != 0); i++) {
		tc_pool(adm, &ps);
		lent = ps.lent_bytes;
		quar = ps.quarantined_bytes;
		if (lent != 0 || quar != 0)
			tc_sleep_ms(10);
	}
	fprintf(stderr, "vmmd: grants %" PRIu64 ", recalls %" PRIu64
	    ", would_create %" PRIu64 ", covers %" PRIu64 ", stitches %" PRIu64
	    ", reclaimed %" PRIu64 "\n", tc_counter(adm, "grants"),
	    tc_counter(adm, "recalls"), tc_counter(adm, "would_create"),
	    tc_counter(adm, "covers"), tc_counter(adm, "stitches"),
	    tc_counter(adm, "reclaimed_chunks"));
	CHECK(lent == 0 && quar == 0);
	if (kill_one)
		CHECK(tc_counter(adm, "reclaimed_chunks") > 0);
	if (restart)
		CHECK(tc_counter(adm, "adopted_chunks") > 0);
	if (tenants) {
		fprintf(stderr, "vmmd: scrubs %" PRIu64 "\n",
		    tc_counter(adm, "scrubs"));
		CHECK(tc_counter(adm, "scrubs") > 0);
	}
	tc_stop_with(d, adm);
}

int
main(int argc, char **argv)
{
	ssize_t n;

	CHECK(argc >= 2);
	if (strncmp(argv[1], "worker", 6) == 0) {
		CHECK(argc == 3);
		return worker((unsigned)strtoul(argv[2], NULL, 10),
		    strcmp(argv[1], "worker-fork") == 0,
		    strcmp(argv[1], "worker-nobody") == 0);
	}
	CHECK(argc == 2);
	CHECK((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) > 0);
	self[n] = '\0';
	if (strcmp(argv[1], "mix") == 0)
		run(false, false, false);
	else if (strcmp(argv[1], "kill") == 0)
		run(true, false, false);
	else if (strcmp(argv[1], "restart") == 0)
		run(false, false, true);
	else if (strcmp(argv[1], "tenants") == 0) {
		/* Another uid needs root. */
		if (geteuid() != 0) {
			fprintf(stderr, "tenants: not root, skipped\n");
			return 77;
		}
		run(false, true, false);
	}
	else
		CHECK(!"unknown scenario");
	return 0;
}
