/*
 * cuemu stream capture: cuStreamBeginCapture .. cuStreamEndCapture, the
 * threads' capture interaction modes, the calls a capture forbids, and
 * graphs of the recorded copies and memsets (instantiate, launch, destroy).
 *
 * The rules, from the doc comments of cuda.h (cuStreamBeginCapture,
 * cuThreadExchangeStreamCaptureMode, cuStreamIsCapturing, cuCtxRecordEvent)
 * and, where they are silent, the stricter reading:
 * - Work issued into a capturing stream is recorded, not executed.
 * - Synchronizing or querying a capturing stream, an event last recorded in
 *   one, or a context (device) with a capturing stream, is
 *   CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED (CUDA_ERROR_CAPTURED_EVENT for the
 *   event) in every mode, and invalidates the capture.
 * - The legacy stream implicitly waits for every blocking stream of its
 *   context: using it (work, a query, a synchronous copy) while such a stream
 *   captures is CUDA_ERROR_STREAM_CAPTURE_IMPLICIT and invalidates the
 *   capture; only cuStreamIsCapturing/GetCaptureInfo leave it valid.
 * - "Potentially unsafe" calls (cuMemAlloc, cuMemAllocPitch, cuMemFree, and
 *   here also cuMemCreate, cuMemRelease, cuMemMap, cuMemUnmap,
 *   cuMemSetAccess) are refused with CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
 *   invalidating the captures that forbid them, when the calling thread's
 *   mode forbids them: GLOBAL if the thread has a non-relaxed capture of its
 *   own or any other thread a GLOBAL one; THREAD_LOCAL if the thread has a
 *   non-relaxed capture of its own; RELAXED never.
 * - An invalidated capture refuses further work (INVALIDATED) until
 *   cuStreamEndCapture ends it, with a NULL graph and INVALIDATED.
 *
 * Everything here runs under the emulator lock, except the two entry points
 * that read only the calling thread's state.
 */
#include "cuemu_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define CUEMU_GRAPH_MAGIC 0x67726170u
#define CUEMU_EXEC_MAGIC 0x67657865u

struct CUgraph_st {
	uint32_t		magic;
	int			device;
	bool			capturing;	/* still being captured into */
	struct cuemu_op		*ops;
	size_t			nops, capops;
	struct CUgraph_st	*next;
};

struct CUgraphExec_st {
	uint32_t		magic;
	int			device;
	struct cuemu_op		*ops;
	size_t			nops;
	struct CUgraphExec_st	*next;
};

/* One capture sequence in progress (begun, not ended). */
struct cuemu_capture {
	CUstream		stream;		/* normalized, see cuemu_norm */
	const void		*thread;	/* the thread that began it */
	int			device;
	bool			blocking;	/* the legacy stream waits for it */
	CUstreamCaptureMode	mode;
	bool			invalidated;
	cuuint64_t		id;
	struct CUgraph_st	*graph;
	struct cuemu_capture	*next;
};

/* An event whose last record was into a capture. */
struct cuemu_cap_event {
	CUevent			event;
	struct cuemu_cap_event	*next;
};

static struct cuemu_capture	*cuemu_caps;
static unsigned			cuemu_ncaps;	/* read without the lock */
static cuuint64_t		cuemu_cap_ids;
static struct cuemu_cap_event	*cuemu_cap_events;
static struct CUgraph_st	*cuemu_graphs;
static struct CUgraphExec_st	*cuemu_execs;

static __thread CUstreamCaptureMode	cuemu_tls_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
static __thread char			cuemu_tls_token;	/* its address names the thread */

#define CUEMU_ME	((const void *)&cuemu_tls_token)

/* The stream a handle names: NULL is the legacy stream, or the per-thread
 * one for the _ptsz entry points. */
static CUstream
cuemu_norm(CUstream s, bool per_thread)
{
	if (s == NULL)
		return per_thread ? CU_STREAM_PER_THREAD : CU_STREAM_LEGACY;
	return s;
}

CUstream
cuemu_ptsz(CUstream s)
{
	return cuemu_norm(s, true);
}

/* The capture of (normalized) stream s, or NULL. */
static struct cuemu_capture *
cuemu_cap_find(CUstream s)
{
	struct cuemu_capture *c;

	for (c = cuemu_caps; c != NULL; c = c->next)
		if (c->stream == s && (s != CU_STREAM_PER_THREAD ||
		    c->thread == CUEMU_ME))
			return c;
	return NULL;
}

/* Invalidates every capture of device dev the legacy stream waits for;
 * returns whether there was one. */
static bool
cuemu_cap_legacy_conflict(int dev)
{
	struct cuemu_capture *c;
	bool hit = false;

	for (c = cuemu_caps; c != NULL; c = c->next)
		if (c->device == dev && c->blocking) {
			c->invalidated = true;
			hit = true;
		}
	return hit;
}

static int
cuemu_graph_append(struct CUgraph_st *g, const struct cuemu_op *op)
{
	if (g->nops == g->capops) {
		size_t n = g->capops ? g->capops * 2 : 16;
		struct cuemu_op *v = realloc(g->ops, n * sizeof(*v));

		if (v == NULL)
			return -1;
		g->ops = v;
		g->capops = n;
	}
	g->ops[g->nops++] = *op;
	return 0;
}

static void
cuemu_graph_free(struct CUgraph_st *g)
{
	g->magic = 0;
	free(g->ops);
	free(g);
}

static void
cuemu_cap_event_forget(CUevent e)
{
	struct cuemu_cap_event **pp;

	for (pp = &cuemu_cap_events; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->event == e) {
			struct cuemu_cap_event *v = *pp;

			*pp = v->next;
			free(v);
			return;
		}
	}
}

/* ---- hooks of the stream, event and memory functions ------------------------ */

CUresult
cuemu_capture_issue(CUstream s, int dev, const struct cuemu_op *op,
    bool *captured)
{
	struct cuemu_capture *c;

	*captured = false;
	if (__atomic_load_n(&cuemu_ncaps, __ATOMIC_RELAXED) == 0)
		return CUDA_SUCCESS;
	if (s == NULL || s == CU_STREAM_LEGACY)
		return cuemu_cap_legacy_conflict(dev) ?
		    CUDA_ERROR_STREAM_CAPTURE_IMPLICIT : CUDA_SUCCESS;
	if ((c = cuemu_cap_find(s)) == NULL)
		return CUDA_SUCCESS;
	if (c->invalidated)
		return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
	if (op->kind == CUEMU_OP_UNSUPPORTED)
		return CUDA_ERROR_NOT_SUPPORTED;
	if (cuemu_graph_append(c->graph, op) != 0)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*captured = true;
	return CUDA_SUCCESS;
}

CUresult
cuemu_capture_wait(CUstream s, int dev)
{
	struct cuemu_capture *c;

	if (__atomic_load_n(&cuemu_ncaps, __ATOMIC_RELAXED) == 0)
		return CUDA_SUCCESS;
	if (s == NULL || s == CU_STREAM_LEGACY)
		return cuemu_cap_legacy_conflict(dev) ?
		    CUDA_ERROR_STREAM_CAPTURE_IMPLICIT : CUDA_SUCCESS;
	if ((c = cuemu_cap_find(s)) == NULL)
		return CUDA_SUCCESS;
	c->invalidated = true;
	return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
}

CUresult
cuemu_capture_ctx_sync(int dev)
{
	struct cuemu_capture *c;
	bool hit = false;

	for (c = cuemu_caps; c != NULL; c = c->next)
		if (c->device == dev) {
			c->invalidated = true;
			hit = true;
		}
	return hit ? CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED : CUDA_SUCCESS;
}

CUresult
cuemu_capture_ctx_sync_unlocked(int dev)
{
	CUresult r;

	if (__atomic_load_n(&cuemu_ncaps, __ATOMIC_ACQUIRE) == 0)
		return CUDA_SUCCESS;
	if ((r = cuemu_enter("cuemu_capture", true)) != CUDA_SUCCESS)
		return r;
	return cuemu_ret(cuemu_capture_ctx_sync(dev));
}

CUresult
cuemu_capture_unsafe(void)
{
	CUstreamCaptureMode mode = cuemu_tls_mode;
	struct cuemu_capture *c;
	bool hit = false;

	if (__atomic_load_n(&cuemu_ncaps, __ATOMIC_RELAXED) == 0 ||
	    mode == CU_STREAM_CAPTURE_MODE_RELAXED)
		return CUDA_SUCCESS;
	for (c = cuemu_caps; c != NULL; c = c->next) {
		bool mine = c->thread == CUEMU_ME;

		if ((mine && c->mode != CU_STREAM_CAPTURE_MODE_RELAXED) ||
		    (!mine && mode == CU_STREAM_CAPTURE_MODE_GLOBAL &&
		    c->mode == CU_STREAM_CAPTURE_MODE_GLOBAL)) {
			c->invalidated = true;
			hit = true;
		}
	}
	return hit ? CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED : CUDA_SUCCESS;
}

CUresult
cuemu_capture_event_record(CUevent e, CUstream s, int dev)
{
	struct cuemu_cap_event *v;
	struct cuemu_capture *c;
	CUresult r;

	cuemu_cap_event_forget(e);
	if (__atomic_load_n(&cuemu_ncaps, __ATOMIC_RELAXED) == 0)
		return CUDA_SUCCESS;
	if (s == NULL || s == CU_STREAM_LEGACY)
		return cuemu_cap_legacy_conflict(dev) ?
		    CUDA_ERROR_STREAM_CAPTURE_IMPLICIT : CUDA_SUCCESS;
	if ((c = cuemu_cap_find(s)) == NULL)
		return CUDA_SUCCESS;
	if (c->invalidated)
		return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
	if ((v = calloc(1, sizeof(*v))) == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	{
		struct cuemu_op op = { .kind = CUEMU_OP_EVENT, .event = e };
		bool captured;

		if ((r = cuemu_capture_issue(s, dev, &op, &captured)) !=
		    CUDA_SUCCESS) {
			free(v);
			return r;
		}
	}
	v->event = e;
	v->next = cuemu_cap_events;
	cuemu_cap_events = v;
	return CUDA_SUCCESS;
}

CUresult
cuemu_capture_event_wait(CUevent e)
{
	struct cuemu_cap_event *v;
	struct cuemu_capture *c;

	for (v = cuemu_cap_events; v != NULL; v = v->next)
		if (v->event == e)
			break;
	if (v == NULL)
		return CUDA_SUCCESS;
	/* The captures it may belong to are invalidated: which one is not
	 * recorded, so all of the calling context's device. */
	for (c = cuemu_caps; c != NULL; c = c->next)
		if (c->device == cuemu_current_device())
			c->invalidated = true;
	return CUDA_ERROR_CAPTURED_EVENT;
}

void
cuemu_capture_event_gone(CUevent e)
{
	cuemu_cap_event_forget(e);
}

CUresult
cuemu_capture_stream_gone(CUstream s)
{
	struct cuemu_capture *c;

	if (__atomic_load_n(&cuemu_ncaps, __ATOMIC_RELAXED) == 0 ||
	    (c = cuemu_cap_find(s)) == NULL)
		return CUDA_SUCCESS;
	/* A capture must be ended before its stream goes. */
	c->invalidated = true;
	return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
}

/* ---- capture entry points ---------------------------------------------------- */

/* The device of the current context and of (normalized) stream s, checked. */
static CUresult
cuemu_cap_stream(CUstream s, int *devp, unsigned *flagsp)
{
	int cur = cuemu_current_device();

	if (cur < 0)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (!cuemu_stream_valid(s))
		return CUDA_ERROR_INVALID_VALUE;
	cuemu_stream_props(s, cur, devp, flagsp);
	return CUDA_SUCCESS;
}

static CUresult
cuemu_begin(CUstream hStream, CUstreamCaptureMode mode, bool per_thread)
{
	struct cuemu_capture *c;
	struct CUgraph_st *g;
	CUstream s = cuemu_norm(hStream, per_thread);
	unsigned flags;
	CUresult r;
	int dev;

	CUEMU_ENTER("cuStreamBeginCapture");
	if ((r = cuemu_cap_stream(s, &dev, &flags)) != CUDA_SUCCESS)
		return cuemu_ret(r);
	if (mode != CU_STREAM_CAPTURE_MODE_GLOBAL &&
	    mode != CU_STREAM_CAPTURE_MODE_THREAD_LOCAL &&
	    mode != CU_STREAM_CAPTURE_MODE_RELAXED)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	/* "Capture may not be initiated if stream is CU_STREAM_LEGACY." */
	if (s == CU_STREAM_LEGACY)
		return cuemu_ret(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	/* "... only if the stream is not already in capture mode." */
	if (cuemu_cap_find(s) != NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (g = calloc(1, sizeof(*g))) == NULL) {
		free(c);
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	}
	g->magic = CUEMU_GRAPH_MAGIC;
	g->device = dev;
	g->capturing = true;
	c->stream = s;
	c->thread = CUEMU_ME;
	c->device = dev;
	c->blocking = !(flags & CU_STREAM_NON_BLOCKING);
	c->mode = mode;
	c->id = ++cuemu_cap_ids;
	c->graph = g;
	c->next = cuemu_caps;
	cuemu_caps = c;
	__atomic_add_fetch(&cuemu_ncaps, 1, __ATOMIC_RELEASE);
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode)
{
	return cuemu_begin(hStream, mode, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamBeginCapture_v2_ptsz(CUstream hStream, CUstreamCaptureMode mode)
{
	return cuemu_begin(hStream, mode, true);
}

/* The CUDA 10.0 ABI had no mode: what became GLOBAL. */
CUEMU_EXPORT CUresult CUDAAPI
cuStreamBeginCapture(CUstream hStream)
{
	return cuemu_begin(hStream, CU_STREAM_CAPTURE_MODE_GLOBAL, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamBeginCapture_ptsz(CUstream hStream)
{
	return cuemu_begin(hStream, CU_STREAM_CAPTURE_MODE_GLOBAL, true);
}

static CUresult
cuemu_end(CUstream hStream, CUgraph *phGraph, bool per_thread)
{
	struct cuemu_capture **pp, *c;
	CUstream s = cuemu_norm(hStream, per_thread);
	struct CUgraph_st *g;
	unsigned flags;
	CUresult r;
	int dev;

	CUEMU_ENTER("cuStreamEndCapture");
	if (phGraph == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((r = cuemu_cap_stream(s, &dev, &flags)) != CUDA_SUCCESS)
		return cuemu_ret(r);
	if ((c = cuemu_cap_find(s)) == NULL)
		return cuemu_ret(CUDA_ERROR_STREAM_CAPTURE_UNMATCHED);
	if (c->mode != CU_STREAM_CAPTURE_MODE_RELAXED && c->thread != CUEMU_ME)
		return cuemu_ret(CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD);
	for (pp = &cuemu_caps; *pp != c; pp = &(*pp)->next)
		;
	*pp = c->next;
	__atomic_sub_fetch(&cuemu_ncaps, 1, __ATOMIC_RELEASE);
	g = c->graph;
	if (c->invalidated) {
		free(c);
		cuemu_graph_free(g);
		*phGraph = NULL;
		return cuemu_ret(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
	}
	free(c);
	g->capturing = false;
	g->next = cuemu_graphs;
	cuemu_graphs = g;
	*phGraph = g;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamEndCapture(CUstream hStream, CUgraph *phGraph)
{
	return cuemu_end(hStream, phGraph, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamEndCapture_ptsz(CUstream hStream, CUgraph *phGraph)
{
	return cuemu_end(hStream, phGraph, true);
}

/* Capture status of a stream; the legacy stream while a blocking stream of
 * its context captures is IMPLICIT, the capture left valid. */
static CUresult
cuemu_status(CUstream s, int dev, CUstreamCaptureStatus *st,
    struct cuemu_capture **cp)
{
	struct cuemu_capture *c;

	*cp = NULL;
	if (s == CU_STREAM_LEGACY) {
		for (c = cuemu_caps; c != NULL; c = c->next)
			if (c->device == dev && c->blocking)
				return CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
		*st = CU_STREAM_CAPTURE_STATUS_NONE;
		return CUDA_SUCCESS;
	}
	if ((c = cuemu_cap_find(s)) == NULL)
		*st = CU_STREAM_CAPTURE_STATUS_NONE;
	else
		*st = c->invalidated ? CU_STREAM_CAPTURE_STATUS_INVALIDATED :
		    CU_STREAM_CAPTURE_STATUS_ACTIVE;
	*cp = c;
	return CUDA_SUCCESS;
}

static CUresult
cuemu_is_capturing(CUstream hStream, CUstreamCaptureStatus *st,
    bool per_thread)
{
	struct cuemu_capture *c;
	CUstream s = cuemu_norm(hStream, per_thread);
	unsigned flags;
	CUresult r;
	int dev;

	CUEMU_ENTER("cuStreamIsCapturing");
	if (st == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((r = cuemu_cap_stream(s, &dev, &flags)) != CUDA_SUCCESS)
		return cuemu_ret(r);
	return cuemu_ret(cuemu_status(s, dev, st, &c));
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamIsCapturing(CUstream hStream, CUstreamCaptureStatus *captureStatus)
{
	return cuemu_is_capturing(hStream, captureStatus, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamIsCapturing_ptsz(CUstream hStream,
    CUstreamCaptureStatus *captureStatus)
{
	return cuemu_is_capturing(hStream, captureStatus, true);
}

/*
 * cuStreamGetCaptureInfo, all three ABIs.  Graphs here have no node
 * handles: the dependency set is reported empty (NULL, 0).
 */
static CUresult
cuemu_capture_info(CUstream hStream, CUstreamCaptureStatus *st,
    cuuint64_t *id, CUgraph *graph, const CUgraphNode **deps,
    const CUgraphEdgeData **edges, size_t *ndeps, bool per_thread)
{
	struct cuemu_capture *c;
	CUstream s = cuemu_norm(hStream, per_thread);
	unsigned flags;
	CUresult r;
	int dev;

	CUEMU_ENTER("cuStreamGetCaptureInfo");
	if (st == NULL || (edges != NULL && deps == NULL))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((r = cuemu_cap_stream(s, &dev, &flags)) != CUDA_SUCCESS)
		return cuemu_ret(r);
	if ((r = cuemu_status(s, dev, st, &c)) != CUDA_SUCCESS ||
	    *st != CU_STREAM_CAPTURE_STATUS_ACTIVE)
		return cuemu_ret(r);
	if (id != NULL)
		*id = c->id;
	if (graph != NULL)
		*graph = c->graph;
	if (deps != NULL)
		*deps = NULL;
	if (edges != NULL)
		*edges = NULL;
	if (ndeps != NULL)
		*ndeps = 0;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamGetCaptureInfo(CUstream hStream, CUstreamCaptureStatus *st,
    cuuint64_t *id)
{
	return cuemu_capture_info(hStream, st, id, NULL, NULL, NULL, NULL,
	    false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamGetCaptureInfo_ptsz(CUstream hStream, CUstreamCaptureStatus *st,
    cuuint64_t *id)
{
	return cuemu_capture_info(hStream, st, id, NULL, NULL, NULL, NULL,
	    true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamGetCaptureInfo_v2(CUstream hStream, CUstreamCaptureStatus *st,
    cuuint64_t *id, CUgraph *graph, const CUgraphNode **deps, size_t *ndeps)
{
	return cuemu_capture_info(hStream, st, id, graph, deps, NULL, ndeps,
	    false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamGetCaptureInfo_v2_ptsz(CUstream hStream, CUstreamCaptureStatus *st,
    cuuint64_t *id, CUgraph *graph, const CUgraphNode **deps, size_t *ndeps)
{
	return cuemu_capture_info(hStream, st, id, graph, deps, NULL, ndeps,
	    true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamGetCaptureInfo_v3(CUstream hStream, CUstreamCaptureStatus *st,
    cuuint64_t *id, CUgraph *graph, const CUgraphNode **deps,
    const CUgraphEdgeData **edges, size_t *ndeps)
{
	return cuemu_capture_info(hStream, st, id, graph, deps, edges, ndeps,
	    false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamGetCaptureInfo_v3_ptsz(CUstream hStream, CUstreamCaptureStatus *st,
    cuuint64_t *id, CUgraph *graph, const CUgraphNode **deps,
    const CUgraphEdgeData **edges, size_t *ndeps)
{
	return cuemu_capture_info(hStream, st, id, graph, deps, edges, ndeps,
	    true);
}

/* The calling thread's mode only: no lock. */
CUEMU_EXPORT CUresult CUDAAPI
cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode *mode)
{
	CUstreamCaptureMode old;
	CUresult r;

	if ((r = cuemu_check("cuThreadExchangeStreamCaptureMode")) !=
	    CUDA_SUCCESS)
		return r;
	if (mode == NULL || (*mode != CU_STREAM_CAPTURE_MODE_GLOBAL &&
	    *mode != CU_STREAM_CAPTURE_MODE_THREAD_LOCAL &&
	    *mode != CU_STREAM_CAPTURE_MODE_RELAXED))
		return CUDA_ERROR_INVALID_VALUE;
	old = cuemu_tls_mode;
	cuemu_tls_mode = *mode;
	*mode = old;
	return CUDA_SUCCESS;
}

/* ---- graphs --------------------------------------------------------------------- */

static struct CUgraph_st *
cuemu_graph_find(CUgraph g)
{
	struct CUgraph_st *p;

	for (p = cuemu_graphs; p != NULL; p = p->next)
		if (p == g)
			return p;
	return NULL;
}

/* A graph still being captured into is not on the list: "All operations
 * other than destroy and node removal are permitted on the graph while the
 * capture sequence is in progress" -- destroying it is refused. */
CUEMU_EXPORT CUresult CUDAAPI
cuGraphDestroy(CUgraph hGraph)
{
	struct CUgraph_st **pp;

	CUEMU_ENTER("cuGraphDestroy");
	for (pp = &cuemu_graphs; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == hGraph) {
			struct CUgraph_st *g = *pp;

			*pp = g->next;
			cuemu_graph_free(g);
			return cuemu_ret(CUDA_SUCCESS);
		}
	}
	return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
}

/* Instantiation copies the recorded operations: the graph may go after. */
CUEMU_EXPORT CUresult CUDAAPI
cuGraphInstantiateWithFlags(CUgraphExec *phGraphExec, CUgraph hGraph,
    unsigned long long flags)
{
	struct CUgraphExec_st *x;
	struct CUgraph_st *g;

	CUEMU_ENTER("cuGraphInstantiateWithFlags");
	if (cuemu_current_device() < 0)
		return cuemu_ret(CUDA_ERROR_INVALID_CONTEXT);
	/* Flags (auto-free, upload, device launch, priority) are not
	 * emulated: refused rather than ignored. */
	if (phGraphExec == NULL || flags != 0 ||
	    (g = cuemu_graph_find(hGraph)) == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((x = calloc(1, sizeof(*x))) == NULL)
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	if (g->nops > 0 &&
	    (x->ops = malloc(g->nops * sizeof(*x->ops))) == NULL) {
		free(x);
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	}
	if (g->nops > 0)
		memcpy(x->ops, g->ops, g->nops * sizeof(*x->ops));
	x->nops = g->nops;
	x->magic = CUEMU_EXEC_MAGIC;
	x->device = g->device;
	x->next = cuemu_execs;
	cuemu_execs = x;
	*phGraphExec = x;
	return cuemu_ret(CUDA_SUCCESS);
}

static struct CUgraphExec_st *
cuemu_exec_find(CUgraphExec x)
{
	struct CUgraphExec_st *p;

	for (p = cuemu_execs; p != NULL; p = p->next)
		if (p == x)
			return p;
	return NULL;
}

CUEMU_EXPORT CUresult CUDAAPI
cuGraphExecDestroy(CUgraphExec hGraphExec)
{
	struct CUgraphExec_st **pp;

	CUEMU_ENTER("cuGraphExecDestroy");
	for (pp = &cuemu_execs; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == hGraphExec) {
			struct CUgraphExec_st *x = *pp;

			*pp = x->next;
			x->magic = 0;
			free(x->ops);
			free(x);
			return cuemu_ret(CUDA_SUCCESS);
		}
	}
	return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
}

/* Runs one recorded operation on device dev (the launching context's); the
 * memory may have changed since it was recorded, so every byte is checked
 * again (a GPU would fault). */
static CUresult
cuemu_op_run(const struct cuemu_op *op, int dev)
{
	switch (op->kind) {
	case CUEMU_OP_COPY:
		if ((op->dst_dev && !cuemu_range_ok(op->dst, op->len,
		    PROT_WRITE, dev)) || (op->src_dev && !cuemu_range_ok(op->src,
		    op->len, PROT_READ, dev)))
			return CUDA_ERROR_ILLEGAL_ADDRESS;
		memmove((void *)(uintptr_t)op->dst,
		    (const void *)(uintptr_t)op->src, op->len);
		return CUDA_SUCCESS;
	case CUEMU_OP_MEMSET:
		if (!cuemu_range_ok(op->dst, op->len, PROT_WRITE, dev))
			return CUDA_ERROR_ILLEGAL_ADDRESS;
		memset((void *)(uintptr_t)op->dst, op->value, op->len);
		return CUDA_SUCCESS;
	case CUEMU_OP_EVENT:
		/* Recorded for real now: no longer a captured event. */
		cuemu_cap_event_forget(op->event);
		return CUDA_SUCCESS;
	case CUEMU_OP_UNSUPPORTED:
		break;
	}
	return CUDA_ERROR_NOT_SUPPORTED;
}

static CUresult
cuemu_launch(CUgraphExec hGraphExec, CUstream hStream, bool per_thread)
{
	struct CUgraphExec_st *x;
	CUstream s = cuemu_norm(hStream, per_thread);
	CUresult r = CUDA_SUCCESS;
	bool captured;
	size_t i;
	int dev;

	CUEMU_ENTER("cuGraphLaunch");
	if ((dev = cuemu_current_device()) < 0)
		return cuemu_ret(CUDA_ERROR_INVALID_CONTEXT);
	if ((x = cuemu_exec_find(hGraphExec)) == NULL ||
	    !cuemu_stream_valid(s))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	/* The device's earlier queued work first (queue.c; stricter than the
	 * stream's own order needs): the graph's operations then run at
	 * once, after everything issued before the launch. */
	if (cuemu_cap_find(s) == NULL)
		cuemu_q_sync_device(dev);
	/* Into a capturing stream the operations are captured in turn. */
	for (i = 0; i < x->nops && r == CUDA_SUCCESS; i++)
		if ((r = cuemu_capture_issue(s, dev, &x->ops[i], &captured)) ==
		    CUDA_SUCCESS && !captured)
			r = cuemu_op_run(&x->ops[i], dev);
	return cuemu_ret(r);
}

CUEMU_EXPORT CUresult CUDAAPI
cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream)
{
	return cuemu_launch(hGraphExec, hStream, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream)
{
	return cuemu_launch(hGraphExec, hStream, true);
}
