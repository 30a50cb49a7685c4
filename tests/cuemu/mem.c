/*
 * cuemu classic memory and data movement: cuMemAlloc and friends, copies and
 * memsets (checked at issue, then queued: queue.c runs them later), streams
 * and events over queue.c's queues, the emulated kernel, pointer queries.
 */
#include "cuemu_internal.h"

#include <pthread.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CUEMU_PAGE 4096u
#define CUEMU_PITCH_ALIGN 512u


/* Leaves with INVALID_CONTEXT unless a context is current; returns device. */
#define CUEMU_NEED_CTX(devvar)                                          \
	do {                                                            \
		if (((devvar) = cuemu_current_device()) < 0)            \
			return cuemu_ret(CUDA_ERROR_INVALID_CONTEXT);   \
	} while (0)

/* ---- streams and events ----------------------------------------------------- */

#define CUEMU_STREAM_MAGIC 0x7374726du
#define CUEMU_EVENT_MAGIC 0x6576656eu

struct CUstream_st {
	uint32_t		magic;
	unsigned		flags;
	int			device;	/* of the context that created it */
	struct cuemu_q		*q;	/* its work (queue.c) */
	struct CUstream_st	*next;
};

struct CUevent_st {
	uint32_t		magic;
	unsigned		flags;
	int			device;	/* of the context that created it */
	bool			recorded;
	struct cuemu_q		*q;	/* where and at which position */
	uint64_t		seq;
	struct CUevent_st	*next;
};

static struct CUstream_st	*cuemu_streams;
static struct CUevent_st	*cuemu_events;

/* Valid: the legacy and per-thread default streams, or one we created.
 * Compares pointer values only: a bad handle is never dereferenced. */
bool
cuemu_stream_valid(CUstream s)
{
	struct CUstream_st *p;

	if (s == NULL || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD)
		return true;
	for (p = cuemu_streams; p != NULL; p = p->next)
		if (p == s)
			return true;
	return false;
}

/* The device of a valid stream's context; dev for the default streams. */
static int
cuemu_stream_device(CUstream s, int dev)
{
	if (s == NULL || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD)
		return dev;
	return s->device;
}

/* The queue of a valid stream: NULL is the legacy default stream, or the
 * per-thread one for the _ptds/_ptsz entry points; dev: the current
 * context's device.  NULL when out of memory. */
static struct cuemu_q *
cuemu_stream_q(CUstream s, int dev, bool ptds)
{
	if (s == CU_STREAM_PER_THREAD || (s == NULL && ptds))
		return cuemu_q_per_thread(dev);
	if (s == NULL || s == CU_STREAM_LEGACY)
		return cuemu_q_legacy(dev);
	return s->q;
}

void
cuemu_stream_props(CUstream s, int dev, int *devp, unsigned *flagsp)
{
	*devp = cuemu_stream_device(s, dev);
	*flagsp = s == NULL || s == CU_STREAM_LEGACY ||
	    s == CU_STREAM_PER_THREAD ? 0 : s->flags;
}

static struct CUevent_st *
cuemu_event_find(CUevent e)
{
	struct CUevent_st *p;

	for (p = cuemu_events; p != NULL; p = p->next)
		if (p == e)
			return p;
	return NULL;
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamCreate(CUstream *phStream, unsigned int Flags)
{
	struct CUstream_st *s;
	int dev;

	CUEMU_ENTER("cuStreamCreate");
	CUEMU_NEED_CTX(dev);
	if (phStream == NULL || (Flags & ~(unsigned)CU_STREAM_NON_BLOCKING) != 0)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	if ((s->q = cuemu_q_create(dev,
	    !(Flags & CU_STREAM_NON_BLOCKING))) == NULL) {
		free(s);
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	}
	s->magic = CUEMU_STREAM_MAGIC;
	s->flags = Flags;
	s->device = dev;
	s->next = cuemu_streams;
	cuemu_streams = s;
	*phStream = s;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamDestroy_v2(CUstream hStream)
{
	struct CUstream_st **pp;
	int dev;

	CUEMU_ENTER("cuStreamDestroy");
	CUEMU_NEED_CTX(dev);
	for (pp = &cuemu_streams; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == hStream) {
			struct CUstream_st *s = *pp;
			CUresult r;

			if ((r = cuemu_capture_stream_gone(s)) != CUDA_SUCCESS)
				return cuemu_ret(r);
			*pp = s->next;
			s->magic = 0;
			cuemu_q_destroy(s->q);
			free(s);
			return cuemu_ret(CUDA_SUCCESS);
		}
	}
	return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamDestroy(CUstream hStream)
{
	return cuStreamDestroy_v2(hStream);
}

static CUresult
cuemu_stream_sync(const char *name, CUstream hStream, bool query, bool ptds)
{
	struct cuemu_q *q;
	CUresult r;
	int dev;

	CUEMU_ENTER(name);
	CUEMU_NEED_CTX(dev);
	if (!cuemu_stream_valid(hStream))
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	if ((r = cuemu_capture_wait(hStream, dev)) != CUDA_SUCCESS)
		return cuemu_ret(r);
	if ((q = cuemu_stream_q(hStream, dev, ptds)) == NULL)
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	if (query)
		return cuemu_ret(cuemu_q_done(q, cuemu_q_tail(q)) ?
		    CUDA_SUCCESS : CUDA_ERROR_NOT_READY);
	cuemu_counter_add(CUEMU_COUNTER_STREAM_SYNCS);
	cuemu_q_sync(q, cuemu_q_tail(q));
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamSynchronize(CUstream hStream)
{
	return cuemu_stream_sync("cuStreamSynchronize", hStream, false, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamSynchronize_ptsz(CUstream hStream)
{
	return cuemu_stream_sync("cuStreamSynchronize", cuemu_ptsz(hStream),
	    false, true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamQuery(CUstream hStream)
{
	return cuemu_stream_sync("cuStreamQuery", hStream, true, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamQuery_ptsz(CUstream hStream)
{
	return cuemu_stream_sync("cuStreamQuery", cuemu_ptsz(hStream), true,
	    true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuEventCreate(CUevent *phEvent, unsigned int Flags)
{
	const unsigned known = CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING |
	    CU_EVENT_INTERPROCESS;
	struct CUevent_st *e;
	int dev;

	CUEMU_ENTER("cuEventCreate");
	CUEMU_NEED_CTX(dev);
	if (phEvent == NULL || (Flags & ~known) != 0 ||
	    ((Flags & CU_EVENT_INTERPROCESS) &&
	    !(Flags & CU_EVENT_DISABLE_TIMING)))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	e->magic = CUEMU_EVENT_MAGIC;
	e->flags = Flags;
	e->device = dev;
	e->next = cuemu_events;
	cuemu_events = e;
	*phEvent = e;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuEventDestroy_v2(CUevent hEvent)
{
	struct CUevent_st **pp;
	int dev;

	CUEMU_ENTER("cuEventDestroy");
	CUEMU_NEED_CTX(dev);
	for (pp = &cuemu_events; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == hEvent) {
			struct CUevent_st *e = *pp;

			cuemu_capture_event_gone(e);
			*pp = e->next;
			e->magic = 0;
			free(e);
			return cuemu_ret(CUDA_SUCCESS);
		}
	}
	return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
}

CUEMU_EXPORT CUresult CUDAAPI
cuEventDestroy(CUevent hEvent)
{
	return cuEventDestroy_v2(hEvent);
}

/* The event completes once the stream's work issued so far completed. */
static CUresult
cuemu_event_record(CUevent hEvent, CUstream hStream, bool ptds)
{
	struct CUevent_st *e;
	struct cuemu_q *q;
	uint64_t seq;
	CUresult r;
	int dev;

	CUEMU_ENTER("cuEventRecord");
	CUEMU_NEED_CTX(dev);
	if ((e = cuemu_event_find(hEvent)) == NULL ||
	    !cuemu_stream_valid(hStream))
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	/* Event and stream must belong to the same context; the default
	 * streams are the current context's. */
	if (e->device != cuemu_stream_device(hStream, dev))
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	/* Into a capture: recorded there (capture.c), its queries refused. */
	if ((r = cuemu_capture_event_record(e, hStream, dev)) != CUDA_SUCCESS)
		return cuemu_ret(r);
	if ((q = cuemu_stream_q(hStream, dev, ptds)) == NULL)
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	if ((r = cuemu_q_mark(q, &seq)) != CUDA_SUCCESS)
		return cuemu_ret(r);
	e->recorded = true;
	e->q = q;
	e->seq = seq;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuEventRecord(CUevent hEvent, CUstream hStream)
{
	return cuemu_event_record(hEvent, hStream, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuEventRecord_ptsz(CUevent hEvent, CUstream hStream)
{
	return cuemu_event_record(hEvent, cuemu_ptsz(hStream), true);
}

/* An event never recorded counts as complete (cuda.h). */
CUEMU_EXPORT CUresult CUDAAPI
cuEventSynchronize(CUevent hEvent)
{
	struct CUevent_st *e;
	CUresult r;
	int dev;

	CUEMU_ENTER("cuEventSynchronize");
	CUEMU_NEED_CTX(dev);
	if ((e = cuemu_event_find(hEvent)) == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	if ((r = cuemu_capture_event_wait(hEvent)) != CUDA_SUCCESS)
		return cuemu_ret(r);
	cuemu_counter_add(CUEMU_COUNTER_EVENT_SYNCS);
	if (e->recorded)
		cuemu_q_sync(e->q, e->seq);
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuEventQuery(CUevent hEvent)
{
	struct CUevent_st *e;
	CUresult r;

	CUEMU_ENTER("cuEventQuery");
	if ((e = cuemu_event_find(hEvent)) == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	if ((r = cuemu_capture_event_wait(hEvent)) != CUDA_SUCCESS)
		return cuemu_ret(r);
	if (e->recorded && !cuemu_q_done(e->q, e->seq))
		return cuemu_ret(CUDA_ERROR_NOT_READY);
	return cuemu_ret(CUDA_SUCCESS);
}

/* The context of a stream; the default streams are the current one's. */
static CUresult
cuemu_stream_get_ctx(CUstream hStream, CUcontext *pctx)
{
	int dev;

	CUEMU_ENTER("cuStreamGetCtx");
	CUEMU_NEED_CTX(dev);
	if (pctx == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (!cuemu_stream_valid(hStream))
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	*pctx = cuemu_primary_ctx(cuemu_stream_device(hStream, dev));
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamGetCtx(CUstream hStream, CUcontext *pctx)
{
	return cuemu_stream_get_ctx(hStream, pctx);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamGetCtx_ptsz(CUstream hStream, CUcontext *pctx)
{
	return cuemu_stream_get_ctx(hStream, pctx);
}

/* Work later issued on the stream waits until the event completed. */
static CUresult
cuemu_stream_wait_event(CUstream hStream, CUevent hEvent, unsigned Flags,
    bool ptds)
{
	struct CUevent_st *e;
	struct cuemu_q *q;
	int dev;

	CUEMU_ENTER("cuStreamWaitEvent");
	CUEMU_NEED_CTX(dev);
	if ((Flags & ~(unsigned)CU_EVENT_WAIT_EXTERNAL) != 0)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((e = cuemu_event_find(hEvent)) == NULL ||
	    !cuemu_stream_valid(hStream))
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	if ((q = cuemu_stream_q(hStream, dev, ptds)) == NULL)
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	if (!e->recorded)
		return cuemu_ret(CUDA_SUCCESS);
	return cuemu_ret(cuemu_q_wait(q, e->q, e->seq));
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamWaitEvent(CUstream hStream, CUevent hEvent, unsigned int Flags)
{
	return cuemu_stream_wait_event(hStream, hEvent, Flags, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamWaitEvent_ptsz(CUstream hStream, CUevent hEvent, unsigned int Flags)
{
	return cuemu_stream_wait_event(hStream, hEvent, Flags, true);
}

/* The emulated kernel (cuemu.h): writes pattern (little-endian, repeated)
 * over [dst, dst+bytes) on hStream, ending delay_us after the stream
 * reached it.  Like a kernel launch, addresses are checked only when it
 * runs. */
static CUresult
cuemu_launch_write(CUdeviceptr dst, unsigned int pattern, size_t bytes,
    unsigned int delay_us, CUstream hStream, bool ptds)
{
	struct cuemu_q *q;
	int dev;

	CUEMU_ENTER("cuemuLaunchWrite");
	CUEMU_NEED_CTX(dev);
	if (!cuemu_stream_valid(hStream))
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	if (cuemu_stream_device(hStream, dev) != dev)
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	if (dst == 0 || bytes == 0 || delay_us > 10000000u)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((q = cuemu_stream_q(hStream, dev, ptds)) == NULL)
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	return cuemu_ret(cuemu_q_write(q, dst, pattern, bytes, delay_us));
}

CUEMU_EXPORT CUresult CUDAAPI
cuemuLaunchWrite(CUdeviceptr dst, unsigned int pattern, size_t bytes,
    unsigned int delay_us, CUstream hStream)
{
	return cuemu_launch_write(dst, pattern, bytes, delay_us, hStream, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuemuLaunchWrite_ptsz(CUdeviceptr dst, unsigned int pattern, size_t bytes,
    unsigned int delay_us, CUstream hStream)
{
	return cuemu_launch_write(dst, pattern, bytes, delay_us, hStream, true);
}

/* ---- classic allocation -------------------------------------------------------- */

/* Allocates size bytes of device memory on dev as a mapped memfd; lock held. */
static CUresult
cuemu_alloc(int dev, size_t size, enum cuemu_kind kind, CUdeviceptr *out)
{
	size_t span;
	CUresult r;
	void *p;
	int fd;

	if (size == 0 || size > SIZE_MAX - CUEMU_PAGE)
		return CUDA_ERROR_INVALID_VALUE;
	span = (size + CUEMU_PAGE - 1) & ~(size_t)(CUEMU_PAGE - 1);
	cuemu_capacity_create_begin(dev);
	cuemu_charge(CUEMU_COST_CREATE, span / cuemu_cfg.granularity, 1);
	if ((r = cuemu_capacity_create(dev, span, 0, &fd)) != CUDA_SUCCESS)
		return r;
	p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		cuemu_capacity_close(fd);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	if (cuemu_alloc_add((CUdeviceptr)(uintptr_t)p, size, dev, fd, kind) != 0) {
		munmap(p, span);
		cuemu_capacity_close(fd);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	*out = (CUdeviceptr)(uintptr_t)p;
	return CUDA_SUCCESS;
}

CUresult
cuemu_classic_free(CUdeviceptr dptr)
{
	enum cuemu_kind kind;
	size_t size;
	int fd;

	if ((fd = cuemu_alloc_remove(dptr, &size, &kind)) < 0)
		return CUDA_ERROR_INVALID_VALUE;
	munmap((void *)(uintptr_t)dptr,
	    (size + CUEMU_PAGE - 1) & ~(size_t)(CUEMU_PAGE - 1));
	cuemu_capacity_close(fd);
	return CUDA_SUCCESS;
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
	int dev;

	CUEMU_ENTER("cuMemAlloc");
	CUEMU_NEED_CTX(dev);
	CUEMU_CAPTURE_UNSAFE();
	if (dptr == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	return cuemu_ret(cuemu_alloc(dev, bytesize, CUEMU_KIND_ALLOC, dptr));
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes,
    size_t Height, unsigned int ElementSizeBytes)
{
	size_t pitch;
	CUresult r;
	int dev;

	CUEMU_ENTER("cuMemAllocPitch");
	CUEMU_NEED_CTX(dev);
	CUEMU_CAPTURE_UNSAFE();
	if (dptr == NULL || pPitch == NULL || WidthInBytes == 0 || Height == 0 ||
	    (ElementSizeBytes != 4 && ElementSizeBytes != 8 &&
	    ElementSizeBytes != 16) || WidthInBytes > SIZE_MAX / 2)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	pitch = (WidthInBytes + CUEMU_PITCH_ALIGN - 1) &
	    ~(size_t)(CUEMU_PITCH_ALIGN - 1);
	if (Height > SIZE_MAX / pitch)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	r = cuemu_alloc(dev, pitch * Height, CUEMU_KIND_ALLOC, dptr);
	if (r == CUDA_SUCCESS)
		*pPitch = pitch;
	return cuemu_ret(r);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemFree_v2(CUdeviceptr dptr)
{
	int dev;

	struct cuemu_range rg;

	CUEMU_ENTER("cuMemFree");
	CUEMU_NEED_CTX(dev);
	CUEMU_CAPTURE_UNSAFE();
	/* Pending work on it: a GPU would fault (observable, see queue.c). */
	if (cuemu_lookup(dptr, &rg) && rg.base == dptr && rg.kind != CUEMU_KIND_VMM)
		cuemu_q_note_release(rg.base, rg.size);
	return cuemu_ret(cuemu_classic_free(dptr));
}

static CUresult
cuemu_alloc_async(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
	int dev;

	const struct cuemu_op op = { .kind = CUEMU_OP_UNSUPPORTED };
	bool captured;
	CUresult r;

	CUEMU_ENTER("cuMemAllocAsync");
	CUEMU_NEED_CTX(dev);
	if (dptr == NULL || !cuemu_stream_valid(hStream))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((r = cuemu_capture_issue(hStream, dev, &op, &captured)) !=
	    CUDA_SUCCESS)
		return cuemu_ret(r);
	/* "The allocation comes from the memory pool current to the stream's
	 * device." */
	return cuemu_ret(cuemu_alloc(cuemu_stream_device(hStream, dev),
	    bytesize, CUEMU_KIND_ASYNC, dptr));
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
	return cuemu_alloc_async(dptr, bytesize, hStream);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
	return cuemu_alloc_async(dptr, bytesize, cuemu_ptsz(hStream));
}

/* The memory goes when the stream reaches the free, not before. */
static CUresult
cuemu_free_async(CUdeviceptr dptr, CUstream hStream, bool ptds)
{
	struct cuemu_range rg;
	struct cuemu_q *q;
	int dev;

	const struct cuemu_op op = { .kind = CUEMU_OP_UNSUPPORTED };
	bool captured;
	CUresult r;

	CUEMU_ENTER("cuMemFreeAsync");
	CUEMU_NEED_CTX(dev);
	if (!cuemu_stream_valid(hStream))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((r = cuemu_capture_issue(hStream, dev, &op, &captured)) !=
	    CUDA_SUCCESS)
		return cuemu_ret(r);
	if (!cuemu_lookup(dptr, &rg) || rg.base != dptr ||
	    rg.kind == CUEMU_KIND_VMM)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((q = cuemu_stream_q(hStream, dev, ptds)) == NULL)
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	return cuemu_ret(cuemu_q_free(q, dptr, rg.size));
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream)
{
	return cuemu_free_async(dptr, hStream, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream)
{
	return cuemu_free_async(dptr, cuemu_ptsz(hStream), true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemGetInfo_v2(size_t *free_bytes, size_t *total)
{
	uint64_t used, cap;
	int dev;

	CUEMU_ENTER("cuMemGetInfo");
	CUEMU_NEED_CTX(dev);
	if (free_bytes == NULL || total == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	cuemu_charge(CUEMU_COST_MEMINFO, 1, 1);
	used = cuemu_capacity_used(dev);
	cap = cuemu_capacity_total(dev);
	*total = cap;
	*free_bytes = used >= cap ? 0 : cap - used;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemGetAddressRange_v2(CUdeviceptr *pbase, size_t *psize, CUdeviceptr dptr)
{
	struct cuemu_range rg;
	int dev;

	CUEMU_ENTER("cuMemGetAddressRange");
	CUEMU_NEED_CTX(dev);
	/* On VMM memory the real driver answers with the one mapping. */
	if (!cuemu_lookup(dptr, &rg))
		return cuemu_ret(CUDA_ERROR_NOT_FOUND);
	if (pbase != NULL)
		*pbase = rg.base;
	if (psize != NULL)
		*psize = rg.size;
	return cuemu_ret(CUDA_SUCCESS);
}

/* ---- copies and memsets ------------------------------------------------------ */

/* Copies len bytes after checking each side (at issue, as the driver's
 * argument checks; and again when it runs); dst_dev/src_dev say which side
 * is device memory (for cuMemcpy, decided by lookup).  When the call
 * returns, by cuda.h's "API synchronization behavior":
 *   - host to host: done (fully synchronous);
 *   - device to host: done, after the stream's earlier work;
 *   - host to device: the source is staged, the write still pending;
 *   - device to device: pending (no host-side synchronization).
 * Non-async calls use the legacy default stream, or the per-thread one for
 * the _ptds entry points. */
static CUresult
cuemu_copy(const char *name, CUdeviceptr dst, bool dst_dev, CUdeviceptr src,
    bool src_dev, size_t len, CUstream stream, bool async, bool ptds)
{
	struct cuemu_q *q;
	uint64_t seq;
	CUresult r;
	int dev;

	CUEMU_ENTER(name);
	CUEMU_NEED_CTX(dev);
	if (async && !cuemu_stream_valid(stream))
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	if (len == 0)
		return cuemu_ret(CUDA_SUCCESS);
	if (dst == 0 || src == 0)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	/* The issuing device (the stream's) must have access to each side. */
	if (async)
		dev = cuemu_stream_device(stream, dev);
	if (dst_dev && !cuemu_range_ok(dst, len, PROT_WRITE, dev))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (src_dev && !cuemu_range_ok(src, len, PROT_READ, dev))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	{
		const struct cuemu_op op = { .kind = CUEMU_OP_COPY, .dst = dst,
		    .src = src, .dst_dev = dst_dev, .src_dev = src_dev,
		    .len = len };
		bool captured = false;

		r = async ? cuemu_capture_issue(stream, dev, &op, &captured) :
		    cuemu_capture_wait(NULL, dev);
		if (r != CUDA_SUCCESS || captured)
			return cuemu_ret(r);
	}
	if (!dst_dev && !src_dev) {
		memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src,
		    len);
		return cuemu_ret(CUDA_SUCCESS);
	}
	if ((q = cuemu_stream_q(async ? stream : NULL, dev, ptds)) == NULL)
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	if ((r = cuemu_q_copy(q, dst, dst_dev, src, src_dev, len)) !=
	    CUDA_SUCCESS)
		return cuemu_ret(r);
	if (!async && !dst_dev) {
		seq = cuemu_q_tail(q);
		cuemu_q_sync(q, seq);
	}
	return cuemu_ret(CUDA_SUCCESS);
}

#define CUEMU_H(p) ((CUdeviceptr)(uintptr_t)(p))

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyHtoD_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount)
{
	return cuemu_copy("cuMemcpyHtoD", dstDevice, true, CUEMU_H(srcHost),
	    false, ByteCount, NULL, false, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyHtoD_v2_ptds(CUdeviceptr dstDevice, const void *srcHost,
    size_t ByteCount)
{
	return cuemu_copy("cuMemcpyHtoD", dstDevice, true, CUEMU_H(srcHost),
	    false, ByteCount, NULL, false, true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyDtoH_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)
{
	return cuemu_copy("cuMemcpyDtoH", CUEMU_H(dstHost), false, srcDevice,
	    true, ByteCount, NULL, false, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyDtoH_v2_ptds(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)
{
	return cuemu_copy("cuMemcpyDtoH", CUEMU_H(dstHost), false, srcDevice,
	    true, ByteCount, NULL, false, true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyDtoD_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount)
{
	return cuemu_copy("cuMemcpyDtoD", dstDevice, true, srcDevice, true,
	    ByteCount, NULL, false, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyDtoD_v2_ptds(CUdeviceptr dstDevice, CUdeviceptr srcDevice,
    size_t ByteCount)
{
	return cuemu_copy("cuMemcpyDtoD", dstDevice, true, srcDevice, true,
	    ByteCount, NULL, false, true);
}

/* Unified addressing: a pointer inside device memory is device memory. */
static bool
cuemu_is_device(CUdeviceptr p)
{
	struct cuemu_range rg;
	bool r;

	if (cuemu_enter("cuemu_is_device", true) != CUDA_SUCCESS)
		return false;
	r = cuemu_lookup(p, &rg);
	cuemu_leave();
	return r;
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount)
{
	return cuemu_copy("cuMemcpy", dst, cuemu_is_device(dst), src,
	    cuemu_is_device(src), ByteCount, NULL, false, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpy_ptds(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount)
{
	return cuemu_copy("cuMemcpy", dst, cuemu_is_device(dst), src,
	    cuemu_is_device(src), ByteCount, NULL, false, true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyHtoDAsync_v2(CUdeviceptr dstDevice, const void *srcHost,
    size_t ByteCount, CUstream hStream)
{
	return cuemu_copy("cuMemcpyHtoDAsync", dstDevice, true,
	    CUEMU_H(srcHost), false, ByteCount, hStream, true, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr dstDevice, const void *srcHost,
    size_t ByteCount, CUstream hStream)
{
	return cuemu_copy("cuMemcpyHtoDAsync", dstDevice, true,
	    CUEMU_H(srcHost), false, ByteCount, cuemu_ptsz(hStream), true, true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyDtoHAsync_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount,
    CUstream hStream)
{
	return cuemu_copy("cuMemcpyDtoHAsync", CUEMU_H(dstHost), false,
	    srcDevice, true, ByteCount, hStream, true, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyDtoHAsync_v2_ptsz(void *dstHost, CUdeviceptr srcDevice,
    size_t ByteCount, CUstream hStream)
{
	return cuemu_copy("cuMemcpyDtoHAsync", CUEMU_H(dstHost), false,
	    srcDevice, true, ByteCount, cuemu_ptsz(hStream), true, true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyDtoDAsync_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice,
    size_t ByteCount, CUstream hStream)
{
	return cuemu_copy("cuMemcpyDtoDAsync", dstDevice, true, srcDevice, true,
	    ByteCount, hStream, true, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyDtoDAsync_v2_ptsz(CUdeviceptr dstDevice, CUdeviceptr srcDevice,
    size_t ByteCount, CUstream hStream)
{
	return cuemu_copy("cuMemcpyDtoDAsync", dstDevice, true, srcDevice, true,
	    ByteCount, cuemu_ptsz(hStream), true, true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount,
    CUstream hStream)
{
	return cuemu_copy("cuMemcpyAsync", dst, cuemu_is_device(dst), src,
	    cuemu_is_device(src), ByteCount, hStream, true, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyAsync_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount,
    CUstream hStream)
{
	return cuemu_copy("cuMemcpyAsync", dst, cuemu_is_device(dst), src,
	    cuemu_is_device(src), ByteCount, cuemu_ptsz(hStream), true, true);
}

/* Memsets of device memory are asynchronous to the host, the non-async ones
 * included (cuda.h, "API synchronization behavior"). */
static CUresult
cuemu_memset(const char *name, CUdeviceptr dst, unsigned char uc, size_t n,
    CUstream stream, bool async, bool ptds)
{
	struct cuemu_q *q;
	int dev;

	CUEMU_ENTER(name);
	CUEMU_NEED_CTX(dev);
	if (async && !cuemu_stream_valid(stream))
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	if (n == 0)
		return cuemu_ret(CUDA_SUCCESS);
	if (async)
		dev = cuemu_stream_device(stream, dev);
	if (!cuemu_range_ok(dst, n, PROT_WRITE, dev))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	{
		const struct cuemu_op op = { .kind = CUEMU_OP_MEMSET, .dst = dst,
		    .dst_dev = true, .len = n, .value = uc };
		bool captured = false;
		CUresult r = async ?
		    cuemu_capture_issue(stream, dev, &op, &captured) :
		    cuemu_capture_wait(NULL, dev);

		if (r != CUDA_SUCCESS || captured)
			return cuemu_ret(r);
	}
	if ((q = cuemu_stream_q(async ? stream : NULL, dev, ptds)) == NULL)
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	return cuemu_ret(cuemu_q_memset(q, dst, uc, n));
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemsetD8_v2(CUdeviceptr dstDevice, unsigned char uc, size_t N)
{
	return cuemu_memset("cuMemsetD8", dstDevice, uc, N, NULL, false, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemsetD8_v2_ptds(CUdeviceptr dstDevice, unsigned char uc, size_t N)
{
	return cuemu_memset("cuMemsetD8", dstDevice, uc, N, NULL, false, true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemsetD8Async(CUdeviceptr dstDevice, unsigned char uc, size_t N,
    CUstream hStream)
{
	return cuemu_memset("cuMemsetD8Async", dstDevice, uc, N, hStream, true,
	    false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemsetD8Async_ptsz(CUdeviceptr dstDevice, unsigned char uc, size_t N,
    CUstream hStream)
{
	return cuemu_memset("cuMemsetD8Async", dstDevice, uc, N,
	    cuemu_ptsz(hStream), true, true);
}

/* ---- pointer attributes ------------------------------------------------------ */

/* Writes one attribute of ptr into data; found says whether ptr is ours.
 * Returns INVALID_VALUE for attributes the emulator does not model. */
static CUresult
cuemu_attr(void *data, CUpointer_attribute a, CUdeviceptr ptr, bool found,
    const struct cuemu_range *rg)
{
	switch (a) {
	case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
		*(unsigned int *)data = found ? CU_MEMORYTYPE_DEVICE : 0;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
		*(CUdeviceptr *)data = found ? ptr : 0;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_HOST_POINTER:
		/* Device memory has no host pointer. */
		*(void **)data = NULL;
		return found ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_IS_MANAGED:
		*(bool *)data = false;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
		*(int *)data = found ? rg->device : -2;
		return CUDA_SUCCESS;
	/* The mappable range: for VMM memory the whole reservation. */
	case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
		*(CUdeviceptr *)data = !found ? 0 : rg->kind == CUEMU_KIND_VMM ?
		    rg->resv_base : rg->base;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
		*(size_t *)data = !found ? 0 : rg->kind == CUEMU_KIND_VMM ?
		    rg->resv_size : rg->size;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_MAPPED:
		*(bool *)data = found;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR:
		*(void **)data = found ? (void *)(uintptr_t)rg->base : NULL;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_MAPPING_SIZE:
		*(size_t *)data = found ? rg->size : 0;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE:
		/* Only cuMemAlloc memory has a legacy IPC handle (ipc.c). */
		*(bool *)data = found && rg->kind == CUEMU_KIND_ALLOC;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES:
		*(unsigned long long *)data = 0;
		return CUDA_SUCCESS;
	default:
		return CUDA_ERROR_INVALID_VALUE;
	}
}

CUEMU_EXPORT CUresult CUDAAPI
cuPointerGetAttribute(void *data, CUpointer_attribute attribute,
    CUdeviceptr ptr)
{
	struct cuemu_range rg;
	CUresult r;
	int dev;

	CUEMU_ENTER("cuPointerGetAttribute");
	CUEMU_NEED_CTX(dev);
	if (data == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	/* A pointer that is not device memory is an error here. */
	if (!cuemu_lookup(ptr, &rg))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	r = cuemu_attr(data, attribute, ptr, true, &rg);
	return cuemu_ret(r);
}

CUEMU_EXPORT CUresult CUDAAPI
cuPointerGetAttributes(unsigned int numAttributes,
    CUpointer_attribute *attributes, void **data, CUdeviceptr ptr)
{
	struct cuemu_range rg;
	unsigned int i;
	bool found;
	int dev;

	CUEMU_ENTER("cuPointerGetAttributes");
	CUEMU_NEED_CTX(dev);
	if (numAttributes == 0 || attributes == NULL || data == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	for (i = 0; i < numAttributes; i++)
		if (data[i] == NULL)
			return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	/* Unlike the singular call, an unknown pointer gets default values. */
	found = cuemu_lookup(ptr, &rg);
	for (i = 0; i < numAttributes; i++) {
		CUresult r = cuemu_attr(data[i], attributes[i], ptr, found, &rg);

		if (r != CUDA_SUCCESS && attributes[i] !=
		    CU_POINTER_ATTRIBUTE_HOST_POINTER)
			return cuemu_ret(r);
	}
	return cuemu_ret(CUDA_SUCCESS);
}

/* ---- managed memory and explicit memory pools -------------------------------- */

/*
 * Minimal: cuMemAllocManaged gives device memory of this emulator (host
 * access is not emulated: the host never touches it, as for any device
 * pointer in the tests); cuMemPoolCreate makes a pool of one device, and
 * cuMemAllocFromPoolAsync allocates on that device as cuMemAllocAsync does.
 * Stricter than real: attributes, access and export of pools are not
 * supported, only CU_MEM_HANDLE_TYPE_NONE pools are made, and a pool
 * destroyed is refused by every later call naming it.  Its allocations
 * stay valid until freed (as in the driver).
 */
#define CUEMU_MAX_POOLS	64

struct CUmemPoolHandle_st {
	int		dev;
	bool		live;
};
static struct CUmemPoolHandle_st cuemu_pools[CUEMU_MAX_POOLS];
static pthread_mutex_t cuemu_pools_lock = PTHREAD_MUTEX_INITIALIZER;

CUEMU_EXPORT CUresult CUDAAPI
cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
{
	int dev;

	CUEMU_ENTER("cuMemAllocManaged");
	CUEMU_NEED_CTX(dev);
	CUEMU_CAPTURE_UNSAFE();
	/* "flags must be one of CU_MEM_ATTACH_GLOBAL or CU_MEM_ATTACH_HOST";
	 * "If bytesize is 0, cuMemAllocManaged returns
	 * CUDA_ERROR_INVALID_VALUE". */
	if (dptr == NULL || bytesize == 0 || (flags != CU_MEM_ATTACH_GLOBAL &&
	    flags != CU_MEM_ATTACH_HOST))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	return cuemu_ret(cuemu_alloc(dev, bytesize, CUEMU_KIND_ALLOC, dptr));
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemPoolCreate(CUmemoryPool *pool, const CUmemPoolProps *props)
{
	CUresult r = CUDA_ERROR_OUT_OF_MEMORY;
	size_t i;

	CUEMU_ENTER("cuMemPoolCreate");
	if (pool == NULL || props == NULL ||
	    props->allocType != CU_MEM_ALLOCATION_TYPE_PINNED ||
	    props->location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
	    !cuemu_device_valid(props->location.id))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (props->handleTypes != CU_MEM_HANDLE_TYPE_NONE)
		return cuemu_ret(CUDA_ERROR_NOT_SUPPORTED);
	pthread_mutex_lock(&cuemu_pools_lock);
	for (i = 0; i < CUEMU_MAX_POOLS; i++) {
		if (!cuemu_pools[i].live) {
			cuemu_pools[i].live = true;
			cuemu_pools[i].dev = props->location.id;
			*pool = &cuemu_pools[i];
			r = CUDA_SUCCESS;
			break;
		}
	}
	pthread_mutex_unlock(&cuemu_pools_lock);
	return cuemu_ret(r);
}

/* Whether p is a live pool of this emulator; lock held. */
static bool
cuemu_pool_ok(CUmemoryPool p)
{
	return p >= &cuemu_pools[0] && p < &cuemu_pools[CUEMU_MAX_POOLS] &&
	    p->live;
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemPoolDestroy(CUmemoryPool pool)
{
	CUresult r = CUDA_SUCCESS;

	CUEMU_ENTER("cuMemPoolDestroy");
	pthread_mutex_lock(&cuemu_pools_lock);
	if (!cuemu_pool_ok(pool))
		r = CUDA_ERROR_INVALID_VALUE;
	else
		pool->live = false;
	pthread_mutex_unlock(&cuemu_pools_lock);
	return cuemu_ret(r);
}

static CUresult
cuemu_alloc_pool(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
    CUstream hStream)
{
	const struct cuemu_op op = { .kind = CUEMU_OP_UNSUPPORTED };
	bool captured, ok;
	CUresult r;
	int dev, pdev = -1;

	CUEMU_ENTER("cuMemAllocFromPoolAsync");
	CUEMU_NEED_CTX(dev);
	pthread_mutex_lock(&cuemu_pools_lock);
	if ((ok = cuemu_pool_ok(pool)))
		pdev = pool->dev;
	pthread_mutex_unlock(&cuemu_pools_lock);
	if (dptr == NULL || !ok || bytesize == 0 ||
	    !cuemu_stream_valid(hStream))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((r = cuemu_capture_issue(hStream, dev, &op, &captured)) !=
	    CUDA_SUCCESS)
		return cuemu_ret(r);
	return cuemu_ret(cuemu_alloc(pdev, bytesize, CUEMU_KIND_ASYNC, dptr));
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
    CUstream hStream)
{
	return cuemu_alloc_pool(dptr, bytesize, pool, hStream);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t bytesize,
    CUmemoryPool pool, CUstream hStream)
{
	return cuemu_alloc_pool(dptr, bytesize, pool, cuemu_ptsz(hStream));
}
