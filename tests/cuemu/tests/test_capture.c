/*
 * Stream capture, from the doc comments of cuStreamBeginCapture,
 * cuStreamEndCapture, cuStreamIsCapturing, cuStreamGetCaptureInfo and
 * cuThreadExchangeStreamCaptureMode in cuda.h: work issued into a capturing
 * stream is recorded, not executed; calls that conflict with a capture fail
 * and invalidate it; "potentially unsafe" calls (cuMemAlloc, cuMemFree) are
 * refused according to the three modes, from this thread and from others.
 * Choices the documentation leaves open (which error code, whether the VMM
 * calls count as unsafe) are checked only on the emulator.
 */
#include "cuemu_test.h"

#include <pthread.h>
#include <stdbool.h>

static int emu;
static CUcontext ctx_main;

/* The capture status of s. */
static CUstreamCaptureStatus
status(CUstream s)
{
	CUstreamCaptureStatus st = (CUstreamCaptureStatus)99;

	CHECK_OK(cuStreamIsCapturing(s, &st));
	return st;
}

/* Ends an invalidated capture: INVALIDATED and no graph. */
static void
end_invalidated(CUstream s)
{
	CUgraph g = (CUgraph)(uintptr_t)1;

	CHECK(status(s) == CU_STREAM_CAPTURE_STATUS_INVALIDATED);
	CHECK_CU(cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
	CHECK(g == NULL);
	CHECK(status(s) == CU_STREAM_CAPTURE_STATUS_NONE);
}

/* Ends a valid capture and destroys its graph. */
static void
end_valid(CUstream s)
{
	CUgraph g = NULL;

	CHECK(status(s) == CU_STREAM_CAPTURE_STATUS_ACTIVE);
	CHECK_OK(cuStreamEndCapture(s, &g));
	CHECK(g != NULL);
	CHECK_OK(cuGraphDestroy(g));
	CHECK(status(s) == CU_STREAM_CAPTURE_STATUS_NONE);
}

/* ---- another thread --------------------------------------------------------- */

struct job {
	CUcontext		ctx;
	int			what;
	CUstreamCaptureMode	mode;	/* the thread's mode for the call */
	CUstream		s;
	CUresult		r;
};

enum { JOB_ALLOC, JOB_END };

static void *
job_main(void *arg)
{
	struct job *j = arg;
	CUstreamCaptureMode m = j->mode;
	CUdeviceptr d = 0;
	CUgraph g = NULL;

	CHECK_OK(cuCtxSetCurrent(j->ctx));
	CHECK_OK(cuThreadExchangeStreamCaptureMode(&m));
	CHECK(m == CU_STREAM_CAPTURE_MODE_GLOBAL);	/* a new thread's default */
	if (j->what == JOB_ALLOC) {
		j->r = cuMemAlloc(&d, 4096);
		if (j->r == CUDA_SUCCESS)
			CHECK_OK(cuMemFree(d));
	} else {
		j->r = cuStreamEndCapture(j->s, &g);
		if (j->r == CUDA_SUCCESS)
			CHECK_OK(cuGraphDestroy(g));
	}
	return NULL;
}

/* Runs a job on a new thread; its result. */
static CUresult
on_thread(CUcontext ctx, int what, CUstreamCaptureMode mode, CUstream s)
{
	struct job j = { ctx, what, mode, s, CUDA_ERROR_UNKNOWN };
	pthread_t t;

	CHECK(pthread_create(&t, NULL, job_main, &j) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	return j.r;
}

/* ---- cases -------------------------------------------------------------------- */

/* Recorded, not executed; replayed by a launch; the status and the id. */
static void
test_record(void)
{
	unsigned char host[8192], back[8192];
	CUstreamCaptureStatus st;
	CUdeviceptr d;
	CUstream s, t;
	CUgraphExec x;
	cuuint64_t id1 = 0, id2 = 0;
	CUgraph g = NULL, g2 = NULL;

	CHECK_OK(cuMemAlloc(&d, sizeof(host)));
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuStreamCreate(&t, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuMemsetD8(d, 0x11, sizeof(host)));
	CHECK(status(s) == CU_STREAM_CAPTURE_STATUS_NONE);
	CHECK_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CHECK(status(s) == CU_STREAM_CAPTURE_STATUS_ACTIVE);
	CHECK(status(t) == CU_STREAM_CAPTURE_STATUS_NONE);
	CHECK_OK(cuStreamGetCaptureInfo(s, &st, &id1, &g2, NULL, NULL, NULL));
	CHECK(st == CU_STREAM_CAPTURE_STATUS_ACTIVE && g2 != NULL);
	/* Begun twice: refused; the capture goes on. */
	CHECK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL) !=
	    CUDA_SUCCESS);
	ct_fill(host, sizeof(host), 5);
	CHECK_OK(cuMemsetD8Async(d, 0x22, sizeof(host), s));
	CHECK_OK(cuMemcpyHtoDAsync(d, host, sizeof(host) / 2, s));
	/* Not executed: the non-blocking stream leaves the legacy stream free
	 * to read the memory. */
	CHECK_OK(cuMemcpyDtoH(back, d, sizeof(back)));
	CHECK(back[0] == 0x11 && back[sizeof(back) - 1] == 0x11);
	CHECK_OK(cuStreamEndCapture(s, &g));
	CHECK(g != NULL && g == g2);
	/* Ended: not capturing, and the id of the next capture differs. */
	CHECK_OK(cuStreamGetCaptureInfo(s, &st, NULL, NULL, NULL, NULL, NULL));
	CHECK(st == CU_STREAM_CAPTURE_STATUS_NONE);
	CHECK_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_RELAXED));
	CHECK_OK(cuStreamGetCaptureInfo(s, &st, &id2, NULL, NULL, NULL, NULL));
	CHECK(id2 != id1);
	end_valid(s);
	/* Replayed, in order, on another stream. */
	CHECK_OK(cuGraphInstantiate(&x, g, 0));
	CHECK_OK(cuGraphDestroy(g));
	CHECK_OK(cuGraphLaunch(x, t));
	CHECK_OK(cuStreamSynchronize(t));
	CHECK_OK(cuMemcpyDtoH(back, d, sizeof(back)));
	CHECK(ct_check(back, sizeof(back) / 2, 5));
	CHECK(back[sizeof(back) / 2] == 0x22 && back[sizeof(back) - 1] == 0x22);
	/* A second launch replays it again. */
	CHECK_OK(cuMemsetD8(d, 0, sizeof(host)));
	CHECK_OK(cuGraphLaunch(x, t));
	CHECK_OK(cuStreamSynchronize(t));
	CHECK_OK(cuMemcpyDtoH(back, d, sizeof(back)));
	CHECK(ct_check(back, sizeof(back) / 2, 5));
	if (emu) {
		/* The memory a graph writes is gone: a GPU would fault. */
		CHECK_OK(cuMemFree(d));
		CHECK_CU(cuGraphLaunch(x, t), CUDA_ERROR_ILLEGAL_ADDRESS);
	} else
		CHECK_OK(cuMemFree(d));
	CHECK_OK(cuGraphExecDestroy(x));
	/* Not capturing: ending is an error. */
	CHECK(cuStreamEndCapture(s, &g) != CUDA_SUCCESS);
	/* The legacy stream cannot be captured. */
	CHECK(cuStreamBeginCapture(CU_STREAM_LEGACY,
	    CU_STREAM_CAPTURE_MODE_RELAXED) != CUDA_SUCCESS);
	if (emu)
		CHECK_CU(cuStreamBeginCapture(s, (CUstreamCaptureMode)7),
		    CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuStreamDestroy(s));
	CHECK_OK(cuStreamDestroy(t));
}

/* Synchronizing calls conflict with every mode. */
static void
test_sync(void)
{
	static const CUstreamCaptureMode modes[] = {
		CU_STREAM_CAPTURE_MODE_GLOBAL, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
		CU_STREAM_CAPTURE_MODE_RELAXED,
	};
	CUdeviceptr d;
	CUstream s;
	CUevent e;
	size_t i;

	CHECK_OK(cuMemAlloc(&d, 4096));
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuEventCreate(&e, CU_EVENT_DISABLE_TIMING));
	for (i = 0; i < 3; i++) {
		/* The context. */
		CHECK_OK(cuStreamBeginCapture(s, modes[i]));
		CHECK_CU(cuCtxSynchronize(), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
		/* Invalidated: work is refused from then on. */
		CHECK_CU(cuMemsetD8Async(d, 1, 16, s),
		    CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
		end_invalidated(s);
		/* The stream itself. */
		CHECK_OK(cuStreamBeginCapture(s, modes[i]));
		CHECK_CU(cuStreamSynchronize(s),
		    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
		end_invalidated(s);
		CHECK_OK(cuStreamBeginCapture(s, modes[i]));
		CHECK_CU(cuStreamQuery(s), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
		end_invalidated(s);
		/* An event last recorded inside the capture. */
		CHECK_OK(cuStreamBeginCapture(s, modes[i]));
		CHECK_OK(cuEventRecord(e, s));
		CHECK_CU(cuEventQuery(e), CUDA_ERROR_CAPTURED_EVENT);
		CHECK_CU(cuEventSynchronize(e), CUDA_ERROR_CAPTURED_EVENT);
		end_invalidated(s);
		/* Nothing conflicting: the capture ends valid, and the
		 * context synchronizes again afterwards. */
		CHECK_OK(cuStreamBeginCapture(s, modes[i]));
		CHECK_OK(cuMemsetD8Async(d, 1, 16, s));
		end_valid(s);
		CHECK_OK(cuCtxSynchronize());
	}
	/* Recorded in an ordinary stream again: usable. */
	CHECK_OK(cuEventRecord(e, NULL));
	CHECK_OK(cuEventSynchronize(e));
	CHECK_OK(cuEventDestroy(e));
	CHECK_OK(cuStreamDestroy(s));
	CHECK_OK(cuMemFree(d));
}

/* The legacy stream waits for blocking streams. */
static void
test_legacy(void)
{
	CUstreamCaptureStatus st;
	unsigned char b[64];
	CUdeviceptr d;
	CUstream s;

	CHECK_OK(cuMemAlloc(&d, sizeof(b)));
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_DEFAULT));
	CHECK_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_RELAXED));
	/* Asking is IMPLICIT, and leaves the capture valid. */
	CHECK_CU(cuStreamIsCapturing(CU_STREAM_LEGACY, &st),
	    CUDA_ERROR_STREAM_CAPTURE_IMPLICIT);
	CHECK_CU(cuStreamGetCaptureInfo(CU_STREAM_LEGACY, &st, NULL, NULL, NULL,
	    NULL, NULL), CUDA_ERROR_STREAM_CAPTURE_IMPLICIT);
	CHECK(status(s) == CU_STREAM_CAPTURE_STATUS_ACTIVE);
	/* A synchronous copy uses the legacy stream: refused. */
	if (emu) {
		CHECK_CU(cuMemcpyDtoH(b, d, sizeof(b)),
		    CUDA_ERROR_STREAM_CAPTURE_IMPLICIT);
		end_invalidated(s);
		CHECK_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_RELAXED));
		CHECK_CU(cuMemsetD8Async(d, 0, sizeof(b), CU_STREAM_LEGACY),
		    CUDA_ERROR_STREAM_CAPTURE_IMPLICIT);
		end_invalidated(s);
	} else
		end_valid(s);
	/* Not capturing any more: the legacy stream works. */
	CHECK_OK(cuMemcpyDtoH(b, d, sizeof(b)));
	CHECK_OK(cuStreamIsCapturing(CU_STREAM_LEGACY, &st));
	CHECK(st == CU_STREAM_CAPTURE_STATUS_NONE);
	CHECK_OK(cuStreamDestroy(s));
	CHECK_OK(cuMemFree(d));
}

/* Potentially unsafe calls on the capturing thread, by mode. */
static void
test_modes_local(void)
{
	CUstreamCaptureMode m;
	CUdeviceptr d, keep;
	CUstream s;

	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuMemAlloc(&keep, 4096));
	/* Global and thread-local: this thread may not allocate or free. */
	CHECK_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CHECK_CU(cuMemAlloc(&d, 4096), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	end_invalidated(s);
	CHECK_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CHECK_CU(cuMemFree(keep), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	end_invalidated(s);
	CHECK_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
	CHECK_CU(cuMemAlloc(&d, 4096), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	end_invalidated(s);
	/* Relaxed: allowed, the capture stays valid. */
	CHECK_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_RELAXED));
	CHECK_OK(cuMemAlloc(&d, 4096));
	CHECK_OK(cuMemFree(d));
	end_valid(s);
	/* A global capture, this thread switched to relaxed: allowed. */
	CHECK_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	m = CU_STREAM_CAPTURE_MODE_RELAXED;
	CHECK_OK(cuThreadExchangeStreamCaptureMode(&m));
	CHECK(m == CU_STREAM_CAPTURE_MODE_GLOBAL);
	CHECK_OK(cuMemAlloc(&d, 4096));
	CHECK_OK(cuMemFree(d));
	CHECK_OK(cuThreadExchangeStreamCaptureMode(&m));
	CHECK(m == CU_STREAM_CAPTURE_MODE_RELAXED);
	/* Back to global: refused again. */
	CHECK_CU(cuMemAlloc(&d, 4096), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	end_invalidated(s);
	/* Bad arguments. */
	CHECK_CU(cuThreadExchangeStreamCaptureMode(NULL), CUDA_ERROR_INVALID_VALUE);
	m = (CUstreamCaptureMode)9;
	CHECK_CU(cuThreadExchangeStreamCaptureMode(&m), CUDA_ERROR_INVALID_VALUE);
	/* Outside any capture, allocation works in every mode. */
	CHECK_OK(cuMemFree(keep));
	CHECK_OK(cuStreamDestroy(s));
}

/* Potentially unsafe calls on another thread, by the capture's mode and the
 * other thread's. */
static void
test_modes_threads(CUcontext ctx)
{
	static const struct {
		CUstreamCaptureMode	capture, other;
		bool			refused;
	} cases[] = {
		{ CU_STREAM_CAPTURE_MODE_GLOBAL, CU_STREAM_CAPTURE_MODE_GLOBAL, true },
		{ CU_STREAM_CAPTURE_MODE_GLOBAL, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
		    false },
		{ CU_STREAM_CAPTURE_MODE_GLOBAL, CU_STREAM_CAPTURE_MODE_RELAXED,
		    false },
		{ CU_STREAM_CAPTURE_MODE_THREAD_LOCAL, CU_STREAM_CAPTURE_MODE_GLOBAL,
		    false },
		{ CU_STREAM_CAPTURE_MODE_RELAXED, CU_STREAM_CAPTURE_MODE_GLOBAL,
		    false },
	};
	CUstream s;
	size_t i;

	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_OK(cuStreamBeginCapture(s, cases[i].capture));
		if (cases[i].refused) {
			CHECK_CU(on_thread(ctx, JOB_ALLOC, cases[i].other, NULL),
			    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
			end_invalidated(s);
		} else {
			CHECK_OK(on_thread(ctx, JOB_ALLOC, cases[i].other, NULL));
			end_valid(s);
		}
	}
	/* Ending on another thread: only a relaxed capture. */
	CHECK_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CHECK_CU(on_thread(ctx, JOB_END, CU_STREAM_CAPTURE_MODE_GLOBAL, s),
	    CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD);
	end_valid(s);
	CHECK_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
	CHECK_CU(on_thread(ctx, JOB_END, CU_STREAM_CAPTURE_MODE_GLOBAL, s),
	    CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD);
	end_valid(s);
	CHECK_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_RELAXED));
	CHECK_OK(on_thread(ctx, JOB_END, CU_STREAM_CAPTURE_MODE_GLOBAL, s));
	CHECK(status(s) == CU_STREAM_CAPTURE_STATUS_NONE);
	CHECK_OK(cuStreamDestroy(s));
}

/* The emulator counts mapping changes as potentially unsafe too (the
 * documentation does not say; the stricter reading). */
static void
test_vmm_unsafe(void)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h;
	size_t g = ct_gran(0);
	CUstream s;

	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CHECK_CU(cuMemCreate(&h, g, &p, 0), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	end_invalidated(s);
	CHECK_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_RELAXED));
	CHECK_OK(cuMemCreate(&h, g, &p, 0));
	CHECK_OK(cuMemRelease(h));
	end_valid(s);
	CHECK_OK(cuStreamDestroy(s));
}

/* The per-thread default stream, through the _ptsz entry points (where
 * NULL names it): each thread has its own. */
static void *
ptsz_other(void *arg)
{
	CUresult (*is)(CUstream, CUstreamCaptureStatus *) =
	    (CUresult (*)(CUstream, CUstreamCaptureStatus *))arg;
	CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_ACTIVE;

	CHECK_OK(cuCtxSetCurrent(ctx_main));
	CHECK_OK(is(NULL, &st));
	CHECK(st == CU_STREAM_CAPTURE_STATUS_NONE);
	return NULL;
}

static void
test_ptsz(void)
{
	CUresult (*begin)(CUstream, CUstreamCaptureMode);
	CUresult (*end)(CUstream, CUgraph *);
	CUresult (*is)(CUstream, CUstreamCaptureStatus *);
	CUresult (*memset_async)(CUdeviceptr, unsigned char, size_t, CUstream);
	CUresult (*sync)(CUstream);
	const cuuint64_t pt = CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
	CUstreamCaptureStatus st;
	unsigned char b[256];
	CUdeviceptr d;
	pthread_t t;
	CUgraph g;

	CHECK_OK(cuGetProcAddress("cuStreamBeginCapture", (void **)&begin, 13000,
	    pt, NULL));
	CHECK_OK(cuGetProcAddress("cuStreamEndCapture", (void **)&end, 13000, pt,
	    NULL));
	CHECK_OK(cuGetProcAddress("cuStreamIsCapturing", (void **)&is, 13000, pt,
	    NULL));
	CHECK_OK(cuGetProcAddress("cuMemsetD8Async", (void **)&memset_async,
	    13000, pt, NULL));
	CHECK_OK(cuGetProcAddress("cuStreamSynchronize", (void **)&sync, 13000,
	    pt, NULL));
	CHECK(begin && end && is && memset_async && sync);
	CHECK_OK(cuMemAlloc(&d, sizeof(b)));
	CHECK_OK(cuMemsetD8(d, 0, sizeof(b)));
	CHECK_OK(begin(NULL, CU_STREAM_CAPTURE_MODE_RELAXED));
	CHECK_OK(is(NULL, &st));
	CHECK(st == CU_STREAM_CAPTURE_STATUS_ACTIVE);
	CHECK(status(CU_STREAM_PER_THREAD) == CU_STREAM_CAPTURE_STATUS_ACTIVE);
	/* It blocks the legacy stream like any blocking stream. */
	CHECK_CU(cuStreamIsCapturing(CU_STREAM_LEGACY, &st),
	    CUDA_ERROR_STREAM_CAPTURE_IMPLICIT);
	/* Another thread's per-thread stream is another stream. */
	CHECK(pthread_create(&t, NULL, ptsz_other, (void *)is) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK_OK(memset_async(d, 0x5a, sizeof(b), NULL));
	CHECK_OK(end(NULL, &g));
	CHECK(g != NULL);
	{
		CUgraphExec x;

		CHECK_OK(cuGraphInstantiate(&x, g, 0));
		CHECK_OK(cuGraphLaunch(x, NULL));
		CHECK_OK(cuCtxSynchronize());
		CHECK_OK(cuGraphExecDestroy(x));
	}
	CHECK_OK(cuMemcpyDtoH(b, d, sizeof(b)));
	CHECK(b[0] == 0x5a && b[sizeof(b) - 1] == 0x5a);
	/* Synchronizing it while it captures conflicts. */
	CHECK_OK(begin(NULL, CU_STREAM_CAPTURE_MODE_RELAXED));
	CHECK_CU(sync(NULL), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	CHECK_CU(end(NULL, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
	CHECK(g == NULL);
	CHECK_OK(cuMemFree(d));
}

/* The ABI versions cuGetProcAddress hands out (cudaTypedefs.h). */
static void
test_procaddr(void)
{
	static const struct {
		const char	*name;
		int		version;
		cuuint64_t	flags;
		const char	*abi;
	} cases[] = {
		{ "cuStreamBeginCapture", 10000, 0, "cuStreamBeginCapture" },
		{ "cuStreamBeginCapture", 13000, 0, "cuStreamBeginCapture_v2" },
		{ "cuStreamBeginCapture", 13000,
		    CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM,
		    "cuStreamBeginCapture_v2_ptsz" },
		{ "cuStreamEndCapture", 13000, 0, "cuStreamEndCapture" },
		{ "cuStreamEndCapture", 13000,
		    CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM,
		    "cuStreamEndCapture_ptsz" },
		{ "cuStreamIsCapturing", 13000, 0, "cuStreamIsCapturing" },
		{ "cuStreamGetCaptureInfo", 10010, 0, "cuStreamGetCaptureInfo" },
		{ "cuStreamGetCaptureInfo", 12000, 0, "cuStreamGetCaptureInfo_v2" },
		{ "cuStreamGetCaptureInfo", 13000, 0, "cuStreamGetCaptureInfo_v3" },
		{ "cuStreamGetCaptureInfo", 13000,
		    CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM,
		    "cuStreamGetCaptureInfo_v3_ptsz" },
		{ "cuThreadExchangeStreamCaptureMode", 13000, 0,
		    "cuThreadExchangeStreamCaptureMode" },
		{ "cuGraphLaunch", 13000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM,
		    "cuGraphLaunch_ptsz" },
	};
	void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
	CUdriverProcAddressQueryResult st;
	size_t i;
	void *fn;

	CHECK(lib != NULL);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_OK(cuGetProcAddress(cases[i].name, &fn, cases[i].version,
		    cases[i].flags, &st));
		CHECK(st == CU_GET_PROC_ADDRESS_SUCCESS);
		if (fn != dlsym(lib, cases[i].abi)) {
			fprintf(stderr, "%s@%d: not %s\n", cases[i].name,
			    cases[i].version, cases[i].abi);
			exit(1);
		}
	}
	/* Before it existed. */
	CHECK_OK(cuGetProcAddress("cuThreadExchangeStreamCaptureMode", &fn, 10000,
	    0, &st));
	CHECK(fn == NULL && st == CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT);
}

int
main(void)
{
	CUcontext ctx = ct_init_ctx(0);

	ctx_main = ctx;
	emu = ct_is_emulator();
	test_record();
	test_sync();
	test_legacy();
	test_modes_local();
	test_modes_threads(ctx);
	test_ptsz();
	if (emu) {
		test_vmm_unsafe();
		test_procaddr();
	}
	printf("ok\n");
	return 0;
}
