/*
 * Stream capture through LD_PRELOAD=libvmm_client.so, against a real vmmd on
 * the emulator (which refuses what cuda.h forbids during a capture and
 * invalidates the capture).  One scenario per argument:
 *
 *   relaxed  a relaxed-mode capture (as PyTorch grows a graph pool) mallocs
 *            while freed memory not yet known idle is cached (reusing it
 *            would need a synchronization the capture forbids), and frees
 *            enough to overflow the cache (giving back would synchronize):
 *            the capture ends valid, memory known idle is reused, the
 *            deferred frees are reusable afterwards, the graph replays the
 *            captured copy into the memory allocated during the capture
 *   global   a global-mode capture: cudaMalloc and cudaFree are refused with
 *            the driver's error (the memory untouched); a thread-local
 *            capture does not restrict other threads, whose allocations then
 *            never synchronize; a global one does, unless they are relaxed
 *   driver   the driver API found only through cuGetProcAddress (as a
 *            statically linked runtime finds it): capture begin and end are
 *            seen there too
 *   small    the same for sub-allocated blocks: blocks freed since the last
 *            synchronization are not reused during the capture
 *   realloc  vmm_realloc shrinking a large allocation during a relaxed
 *            capture: whether its tail is still in use could only be known
 *            by a synchronization, which the capture forbids, so the lazy
 *            synchronization (client/sync.c) counts it as still busy: the
 *            allocation stays as large as it was, the capture stays valid;
 *            once the capture ended the same shrink synchronizes
 *   helper   the library's helper thread gives idle memory back during a
 *            global-mode capture without breaking it (VMM_IDLE_MS=300;
 *            skipped, exit 77, if it already had before the capture began)
 *
 * VMM_CACHE_MAX is 16 MiB (CMakeLists.txt), so the frees below overflow it;
 * VMM_IDLE_MS is 0 (no idle return) but for the helper scenario.
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

#include "../common/check.h"
#include "testclient.h"
#include "vmm_client.h"

#define MiB (1ull << 20)
#define CKRT(call) CHECK((call) == cudaSuccess)

static char	sockdir[1024];
static pid_t	daemon_pid;

static int (*p_get_usage)(struct vmm_usage *);
static int (*p_get_range)(const void *, void **, size_t *);
static int (*p_realloc)(void **, size_t);

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

/* Whether p is memory of the pool (the library's, not CUDA's own). */
static bool
ours(const void *p)
{
	void *base;
	size_t size;

	return p_get_range(p, &base, &size) == 0;
}

static uint64_t
syncs(void)
{
	struct vmm_usage u;

	CHECK(p_get_usage(&u) == 0);
	return u.syncs;
}

static enum cudaStreamCaptureStatus
status(cudaStream_t s)
{
	enum cudaStreamCaptureStatus st = (enum cudaStreamCaptureStatus)99;

	CKRT(cudaStreamIsCapturing(s, &st));
	return st;
}

/* ---- relaxed ------------------------------------------------------------------- */

static void
sc_relaxed(void)
{
	unsigned char *host = malloc(8 * MiB);
	void *a, *a2, *c, *d, *d2, *e, *g, *y, *sm, *p;
	cudaGraphExec_t x;
	cudaStream_t s;
	cudaGraph_t gr;
	uint64_t n0;

	CHECK(host != NULL);
	CKRT(cudaSetDevice(0));
	CKRT(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	/* Before the capture: D freed, then a synchronization (Y reuses E),
	 * so D is known idle; A freed after it, so A is not.  C and G live
	 * through the capture and are freed during it. */
	CKRT(cudaMalloc(&d, 6 * MiB));
	CKRT(cudaMalloc(&e, 3 * MiB));
	CKRT(cudaMalloc(&a, 8 * MiB));
	CKRT(cudaMalloc(&c, 4 * MiB));
	CKRT(cudaMalloc(&g, 8 * MiB));
	CHECK(ours(a) && ours(c) && ours(d) && ours(e) && ours(g));
	CKRT(cudaFree(d));
	CKRT(cudaFree(e));
	CKRT(cudaMalloc(&y, 3 * MiB));
	CHECK(y == e);
	put(a, 8 * MiB, 1);
	CKRT(cudaFree(a));
	put(c, 4 * MiB, 2);
	put(g, 8 * MiB, 3);

	n0 = syncs();
	CKRT(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
	/* D is known idle: reused, no synchronization needed. */
	CKRT(cudaMalloc(&d2, 6 * MiB));
	CHECK(d2 == d);
	/* A may still be in use by the GPU: not reused (that would need a
	 * synchronization), new memory instead. */
	CKRT(cudaMalloc(&a2, 8 * MiB));
	CHECK(a2 != a && ours(a2));
	CKRT(cudaMalloc(&sm, 4096));
	CHECK(ours(sm));
	/* Captured into the graph, not run now. */
	pattern(host, 8 * MiB, 4);
	CKRT(cudaMemcpyAsync(a2, host, 8 * MiB, cudaMemcpyHostToDevice, s));
	/* The capturing stream is non-blocking: the legacy stream works. */
	put(d2, 6 * MiB, 5);
	put(sm, 4096, 6);
	expect(c, 4 * MiB, 2);
	/* Over VMM_CACHE_MAX: giving back would synchronize; deferred. */
	CKRT(cudaFree(c));
	CKRT(cudaFree(g));
	CHECK(ours(c) && ours(g));	/* not yet freed */
	CHECK(cudaFree(c) != cudaSuccess);	/* a second free */
	CHECK(syncs() == n0);
	CHECK(status(s) == cudaStreamCaptureStatusActive);
	CKRT(cudaStreamEndCapture(s, &gr));
	CHECK(gr != NULL);

	/* Ended: the deferred frees are done, their memory reused. */
	CHECK(!ours(c) && !ours(g));
	CKRT(cudaMalloc(&p, 4 * MiB));
	CHECK(p == c);
	expect(d2, 6 * MiB, 5);
	expect(sm, 4096, 6);
	/* The graph writes what was captured into memory allocated during
	 * the capture. */
	CKRT(cudaGraphInstantiate(&x, gr, 0));
	CKRT(cudaGraphLaunch(x, s));
	CKRT(cudaStreamSynchronize(s));
	expect(a2, 8 * MiB, 4);
	CKRT(cudaGraphExecDestroy(x));
	CKRT(cudaGraphDestroy(gr));
	CKRT(cudaFree(p));
	CKRT(cudaFree(a2));
	CKRT(cudaFree(d2));
	CKRT(cudaFree(sm));
	CKRT(cudaFree(y));
	CKRT(cudaStreamDestroy(s));
	free(host);
}

/* ---- realloc ------------------------------------------------------------------ */

static uint64_t
mapped(void)
{
	struct vmm_usage u;

	CHECK(p_get_usage(&u) == 0);
	return u.mapped_bytes;
}

static void
sc_realloc(void)
{
	cudaStream_t s;
	cudaGraph_t gr;
	uint64_t n0, m0;
	void *p, *q;

	CKRT(cudaSetDevice(0));
	CKRT(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	/* Grown by a realloc: several chunks, so a shrink has a tail to drop. */
	CKRT(cudaMalloc(&p, 4 * MiB));
	CHECK(ours(p));
	put(p, 4 * MiB, 7);
	CHECK(p_realloc(&p, 32 * MiB) == 0);
	expect(p, 4 * MiB, 7);
	m0 = mapped();
	n0 = syncs();
	CKRT(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
	q = p;
	CHECK(p_realloc(&q, 3 * MiB) == 0);
	CHECK(q == p);
	/* Still busy as far as anyone knows: nothing unmapped, and no
	 * synchronizing call was made (the capture is still valid). */
	CHECK(mapped() == m0);
	CHECK(syncs() == n0);
	CHECK(status(s) == cudaStreamCaptureStatusActive);
	CKRT(cudaStreamEndCapture(s, &gr));
	CHECK(gr != NULL);
	CKRT(cudaGraphDestroy(gr));
	expect(p, 3 * MiB, 7);
	/* No capture now: the shrink synchronizes and gives the tail back. */
	q = p;
	CHECK(p_realloc(&q, 3 * MiB) == 0);
	CHECK(q == p);
	CHECK(syncs() > n0);
	CHECK(mapped() < m0);
	expect(p, 3 * MiB, 7);
	CKRT(cudaFree(p));
	CKRT(cudaStreamDestroy(s));
}

/* ---- global ------------------------------------------------------------------- */

struct job {
	enum cudaStreamCaptureMode	mode;
	cudaError_t			r;
	void				*p;
};

static void *
job_alloc(void *arg)
{
	struct job *j = arg;
	enum cudaStreamCaptureMode m = j->mode;

	CKRT(cudaSetDevice(0));
	CKRT(cudaThreadExchangeStreamCaptureMode(&m));
	j->r = cudaMalloc(&j->p, 4 * MiB);
	return NULL;
}

/* cudaMalloc of 4 MiB on a new thread in mode m. */
static struct job
alloc_on_thread(enum cudaStreamCaptureMode m)
{
	struct job j = { m, cudaErrorUnknown, NULL };
	pthread_t t;

	CHECK(pthread_create(&t, NULL, job_alloc, &j) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	return j;
}

static void
sc_global(void)
{
	cudaStream_t s;
	cudaGraph_t gr;
	struct job j;
	void *p, *q, *r;
	cudaError_t er;

	CKRT(cudaSetDevice(0));
	CKRT(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	CKRT(cudaMalloc(&p, 4 * MiB));
	CKRT(cudaMalloc(&q, 4 * MiB));
	put(p, 4 * MiB, 7);
	CKRT(cudaFree(q));	/* cached, not known idle */

	/* Global: this thread may not allocate; the driver's refusal
	 * invalidates the capture. */
	CKRT(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
	CHECK(cudaMalloc(&r, 4 * MiB) == cudaErrorStreamCaptureUnsupported);
	CHECK(status(s) == cudaStreamCaptureStatusInvalidated);
	CHECK(cudaStreamEndCapture(s, &gr) == cudaErrorStreamCaptureInvalidated);
	/* Nor free: refused, the memory left as it was. */
	CKRT(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
	CHECK(cudaFree(p) == cudaErrorStreamCaptureUnsupported);
	er = cudaStreamEndCapture(s, &gr);
	CHECK(er == cudaSuccess || er == cudaErrorStreamCaptureInvalidated);
	if (er == cudaSuccess)
		CKRT(cudaGraphDestroy(gr));
	CHECK(ours(p));
	expect(p, 4 * MiB, 7);

	/* Thread-local: another thread allocates from the pool, without a
	 * synchronization (Q is not reused), and the capture stays valid. */
	CKRT(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
	j = alloc_on_thread(cudaStreamCaptureModeGlobal);
	CHECK(j.r == cudaSuccess && ours(j.p) && j.p != q);
	CHECK(status(s) == cudaStreamCaptureStatusActive);
	CKRT(cudaStreamEndCapture(s, &gr));
	CKRT(cudaGraphDestroy(gr));
	CKRT(cudaFree(j.p));

	/* Global: another thread in relaxed mode may allocate; one in global
	 * mode may not. */
	CKRT(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
	j = alloc_on_thread(cudaStreamCaptureModeRelaxed);
	CHECK(j.r == cudaSuccess && ours(j.p));
	CHECK(status(s) == cudaStreamCaptureStatusActive);
	r = j.p;
	j = alloc_on_thread(cudaStreamCaptureModeGlobal);
	CHECK(j.r == cudaErrorStreamCaptureUnsupported);
	CHECK(cudaStreamEndCapture(s, &gr) == cudaErrorStreamCaptureInvalidated);
	CKRT(cudaFree(r));
	CKRT(cudaFree(p));
	CKRT(cudaStreamDestroy(s));
}

/* ---- driver, through cuGetProcAddress ----------------------------------------- */

static void
sc_driver(void)
{
	typedef CUresult (*gpa_t)(const char *, void **, int, cuuint64_t,
	    CUdriverProcAddressQueryResult *);
	CUresult (*alloc)(CUdeviceptr *, size_t);
	CUresult (*dfree)(CUdeviceptr);
	CUresult (*begin)(CUstream, CUstreamCaptureMode);
	CUresult (*end)(CUstream, CUgraph *);
	CUresult (*destroy)(CUgraph);
	void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	CUdriverProcAddressQueryResult st;
	CUdeviceptr a, a2, b, p;
	CUcontext ctx;
	CUstream s;
	CUgraph g;
	gpa_t gpa;

	CHECK(lib != NULL);
	CHECK((gpa = (gpa_t)dlsym(lib, "cuGetProcAddress_v2")) != NULL);
	CHECK(gpa("cuMemAlloc", (void **)&alloc, 13000, 0, &st) == CUDA_SUCCESS);
	CHECK(gpa("cuMemFree", (void **)&dfree, 13000, 0, &st) == CUDA_SUCCESS);
	CHECK(gpa("cuStreamBeginCapture", (void **)&begin, 13000, 0, &st) ==
	    CUDA_SUCCESS && begin != NULL);
	CHECK(gpa("cuStreamEndCapture", (void **)&end, 13000, 0, &st) ==
	    CUDA_SUCCESS && end != NULL);
	CHECK(gpa("cuGraphDestroy", (void **)&destroy, 13000, 0, &st) ==
	    CUDA_SUCCESS && destroy != NULL);
	CHECK_OK(cuInit(0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	CHECK_OK(cuCtxSetCurrent(ctx));
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK(alloc(&a, 8 * MiB) == CUDA_SUCCESS);
	CHECK(alloc(&b, 12 * MiB) == CUDA_SUCCESS);
	CHECK(ours((void *)(uintptr_t)a) && ours((void *)(uintptr_t)b));
	CHECK(dfree(a) == CUDA_SUCCESS);	/* cached, not known idle */
	CHECK(begin(s, CU_STREAM_CAPTURE_MODE_RELAXED) == CUDA_SUCCESS);
	CHECK(alloc(&a2, 8 * MiB) == CUDA_SUCCESS);
	CHECK(a2 != a && ours((void *)(uintptr_t)a2));
	CHECK(dfree(b) == CUDA_SUCCESS);	/* over VMM_CACHE_MAX: deferred */
	CHECK(end(s, &g) == CUDA_SUCCESS && g != NULL);
	CHECK(destroy(g) == CUDA_SUCCESS);
	/* Deferred, then done: reused. */
	CHECK(alloc(&p, 12 * MiB) == CUDA_SUCCESS);
	CHECK(p == b);
	CHECK(dfree(p) == CUDA_SUCCESS);
	CHECK(dfree(a2) == CUDA_SUCCESS);
	CHECK_OK(cuStreamDestroy(s));
}

/* ---- small --------------------------------------------------------------------- */

static void
sc_small(void)
{
	void *z, *z2, *b1, *b2, *n;
	cudaStream_t s;
	cudaGraph_t gr;

	CKRT(cudaSetDevice(0));
	CKRT(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	/* A synchronization first (Z reused), then two 1 MiB blocks (one
	 * segment's worth) freed after it: not known idle. */
	CKRT(cudaMalloc(&z, 4 * MiB));
	CKRT(cudaFree(z));
	CKRT(cudaMalloc(&z2, 4 * MiB));
	CHECK(z2 == z);
	CKRT(cudaMalloc(&b1, 1 * MiB));
	CKRT(cudaMalloc(&b2, 1 * MiB));
	CHECK(ours(b1) && ours(b2));
	put(b1, 1 * MiB, 8);
	CKRT(cudaFree(b1));
	CKRT(cudaFree(b2));
	CKRT(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
	CKRT(cudaMalloc(&n, 1 * MiB));
	CHECK(n != b1 && n != b2 && ours(n));
	put(n, 1 * MiB, 9);
	CHECK(status(s) == cudaStreamCaptureStatusActive);
	CKRT(cudaStreamEndCapture(s, &gr));
	CKRT(cudaGraphDestroy(gr));
	expect(n, 1 * MiB, 9);
	CKRT(cudaFree(n));
	CKRT(cudaFree(z2));
	CKRT(cudaStreamDestroy(s));
}

/* ---- medium ------------------------------------------------------------------- */

/* The medium heap (VMM_MEDIUM_MAX=32M here): during a capture it reuses no
 * bytes freed since the last synchronization and makes no synchronizing
 * call; the block comes from elsewhere. */
static void
sc_medium(void)
{
	void *x, *x2, *b1, *b2, *n;
	cudaStream_t s;
	cudaGraph_t gr;
	uint64_t n0;

	CKRT(cudaSetDevice(0));
	CKRT(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	/* A synchronization first (X's bytes reused), then two blocks freed
	 * after it: not known idle. */
	CKRT(cudaMalloc(&x, 3 * MiB));
	CKRT(cudaFree(x));
	CKRT(cudaMalloc(&x2, 3 * MiB));
	CHECK(x2 == x);
	CKRT(cudaMalloc(&b1, 3 * MiB));
	CKRT(cudaMalloc(&b2, 3 * MiB));
	CHECK(ours(b1) && ours(b2));
	put(b1, 3 * MiB, 8);
	CKRT(cudaFree(b1));
	CKRT(cudaFree(b2));
	n0 = syncs();
	CKRT(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
	CKRT(cudaMalloc(&n, 3 * MiB));
	CHECK(ours(n));
	CHECK((char *)n + 3 * MiB <= (char *)b1 || (char *)n >= (char *)b2 + 3 * MiB);
	CHECK(syncs() == n0);
	put(n, 3 * MiB, 9);
	CHECK(status(s) == cudaStreamCaptureStatusActive);
	CKRT(cudaStreamEndCapture(s, &gr));
	CKRT(cudaGraphDestroy(gr));
	expect(n, 3 * MiB, 9);
	CKRT(cudaFree(n));
	CKRT(cudaFree(x2));
	CKRT(cudaStreamDestroy(s));
}

/* ---- helper ------------------------------------------------------------------- */

static void
sc_helper(void)
{
	struct vmm_usage u;
	cudaStream_t s;
	cudaGraph_t gr;
	void *z, *w, *w2;
	int i;

	CKRT(cudaSetDevice(0));
	CKRT(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	CKRT(cudaMalloc(&z, 4 * MiB));
	CKRT(cudaMalloc(&w, 6 * MiB));
	CKRT(cudaFree(z));
	CKRT(cudaFree(w));
	/* Reusing W synchronizes: Z is known idle from then on. */
	CKRT(cudaMalloc(&w2, 6 * MiB));
	CHECK(w2 == w);
	CKRT(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
	CHECK(p_get_usage(&u) == 0);
	if (u.cached_bytes == 0) {
		fprintf(stderr, "helper: Z went back before the capture began "
		    "(a slow machine): nothing to test\n");
		tc_stop_daemon(daemon_pid);
		exit(77);
	}
	/* The helper returns Z once idle for VMM_IDLE_MS: it unmaps during
	 * the capture, which a thread in global mode may not. */
	for (i = 0; i < 150; i++) {
		struct timespec ts = { 0, 20 * 1000000L };

		CHECK(p_get_usage(&u) == 0);
		if (u.cached_bytes == 0)
			break;
		nanosleep(&ts, NULL);
	}
	CHECK(u.cached_bytes == 0);
	CHECK(status(s) == cudaStreamCaptureStatusActive);
	CKRT(cudaStreamEndCapture(s, &gr));
	CKRT(cudaGraphDestroy(gr));
	CKRT(cudaFree(w2));
	CKRT(cudaStreamDestroy(s));
}

int
main(int argc, char **argv)
{
	const char *dir = getenv("VMM_SOCKET_DIR");

	CHECK(argc == 2 && dir != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s", dir);
	p_get_usage = (int (*)(struct vmm_usage *))dlsym(RTLD_DEFAULT,
	    "vmm_get_usage");
	p_get_range = (int (*)(const void *, void **, size_t *))dlsym(
	    RTLD_DEFAULT, "vmm_get_range");
	p_realloc = (int (*)(void **, size_t))dlsym(RTLD_DEFAULT,
	    "vmm_realloc");
	CHECK(p_get_usage != NULL && p_get_range != NULL && p_realloc != NULL);
	daemon_pid = tc_start_daemon(sockdir, "idle_timeout_ms = 0\n", NULL);
	if (strcmp(argv[1], "relaxed") == 0)
		sc_relaxed();
	else if (strcmp(argv[1], "global") == 0)
		sc_global();
	else if (strcmp(argv[1], "driver") == 0)
		sc_driver();
	else if (strcmp(argv[1], "small") == 0)
		sc_small();
	else if (strcmp(argv[1], "medium") == 0)
		sc_medium();
	else if (strcmp(argv[1], "helper") == 0)
		sc_helper();
	else if (strcmp(argv[1], "realloc") == 0)
		sc_realloc();
	else
		CHECK(!"unknown scenario");
	CHECK(WIFEXITED(tc_stop_daemon(daemon_pid)));
	return 0;
}
