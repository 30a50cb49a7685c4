/*
 * Stream-ordered allocation (cudaMallocAsync, cudaFreeAsync, cuMemAllocAsync,
 * cuMemFreeAsync): memory freed on a stream is reused in stream order,
 * through events, never through a device-wide synchronization.
 *
 *   - A stream-ordered free keeps the block allocated in the allocators and
 *     parks it here with an event recorded on the freeing stream (in the
 *     stream's context): the block is idle once the event completed, since
 *     cuda.h's contract for cuMemFreeAsync is that every access to it is
 *     ordered before the free on that stream.
 *   - A stream-ordered allocation on stream S takes a parked block of the
 *     same size on S's device: one whose event completed as it is; any
 *     other after cuStreamWaitEvent(S, event), so S's later work waits for
 *     the free on the GPU and the host never waits (the same stream, too:
 *     a destroyed stream's handle may come back for a new stream).
 *   - Parked blocks whose event completed go back to the allocators as
 *     idle (no synchronization needed to reuse them) when an allocation
 *     finds nothing parked that fits, when the helper thread looks, and on
 *     vmm_flush.
 *   - A synchronous free (vmm_free) of a parked block is a double free.
 *
 * Events come from a per-device free list and are created in the stream's
 * context, as cuEventRecord requires.  Nothing here synchronizes a context.
 */
#include "client_internal.h"

#include <stdlib.h>

#include "log.h"

struct parked {
	void		*p;
	size_t		size;
	int		dev;
	CUstream	stream;
	CUevent		ev;
	CUcontext	ctx;		/* the event's */
	struct parked	*next;
};

struct spare_ev {
	CUevent		ev;
	CUcontext	ctx;
	struct spare_ev	*next;
};

static pthread_mutex_t	stream_lock = PTHREAD_MUTEX_INITIALIZER;
static struct parked	*stream_parked;		/* newest first */
static struct spare_ev	*stream_spare;
static uint64_t		stream_nparked;		/* atomic reads */

/* Makes ctx current for a call; *saved gets what to restore.  0 or -1. */
static int
stream_enter(CUcontext ctx, CUcontext *saved)
{
	if (cuCtxGetCurrent(saved) != CUDA_SUCCESS)
		return -1;
	if (*saved != ctx && cuCtxSetCurrent(ctx) != CUDA_SUCCESS)
		return -1;
	return 0;
}

static void
stream_leave(CUcontext ctx, CUcontext saved)
{
	if (saved != ctx && cuCtxSetCurrent(saved) != CUDA_SUCCESS)
		vmm_log_error("cannot make the caller's CUDA context current "
		    "again");
}

int
vmmc_stream_device(CUstream s, CUcontext *ctxp)
{
	CUcontext ctx, saved;
	CUdevice d;
	int rc = VMM_ECUDA;

	if (cuStreamGetCtx(s, &ctx) != CUDA_SUCCESS)
		return VMM_ECUDA;
	if (stream_enter(ctx, &saved) != 0)
		return VMM_ECUDA;
	if (cuCtxGetDevice(&d) == CUDA_SUCCESS && d >= 0 &&
	    d < VMMC_MAX_DEVICES)
		rc = (int)d;
	stream_leave(ctx, saved);
	if (ctxp != NULL)
		*ctxp = ctx;
	return rc;
}

/* An event of ctx from the spare list or new; lock not held. */
static int
stream_event(CUcontext ctx, CUevent *ev)
{
	struct spare_ev **pp, *e;

	pthread_mutex_lock(&stream_lock);
	for (pp = &stream_spare; (e = *pp) != NULL; pp = &e->next) {
		if (e->ctx == ctx) {
			*pp = e->next;
			pthread_mutex_unlock(&stream_lock);
			*ev = e->ev;
			free(e);
			return 0;
		}
	}
	pthread_mutex_unlock(&stream_lock);
	return cuEventCreate(ev, CU_EVENT_DISABLE_TIMING) == CUDA_SUCCESS ? 0 :
	    -1;
}

/* Keeps an event for later; lock held. */
static void
stream_spare_put(CUcontext ctx, CUevent ev)
{
	struct spare_ev *e = malloc(sizeof(*e));

	if (e == NULL) {
		CUcontext saved;

		if (stream_enter(ctx, &saved) == 0) {
			cuEventDestroy(ev);
			stream_leave(ctx, saved);
		}
		return;
	}
	e->ev = ev;
	e->ctx = ctx;
	e->next = stream_spare;
	stream_spare = e;
}

int
vmmc_stream_park(void *p, size_t size, CUstream s, CUcontext ctx)
{
	struct parked *k;
	CUcontext saved;
	CUevent ev;
	int dev = -1;

	if ((k = calloc(1, sizeof(*k))) == NULL)
		return VMM_ENOMEM;
	if (stream_enter(ctx, &saved) != 0) {
		free(k);
		return VMM_ECUDA;
	}
	/* The block's own device (the stream's may differ): only that
	 * device's allocations may reuse it. */
	if (cuPointerGetAttribute(&dev, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
	    (CUdeviceptr)(uintptr_t)p) != CUDA_SUCCESS || dev < 0 ||
	    dev >= VMMC_MAX_DEVICES) {
		stream_leave(ctx, saved);
		free(k);
		return VMM_ECUDA;
	}
	if (stream_event(ctx, &ev) != 0) {
		stream_leave(ctx, saved);
		free(k);
		return VMM_ECUDA;
	}
	if (cuEventRecord(ev, s) != CUDA_SUCCESS) {
		cuEventDestroy(ev);
		stream_leave(ctx, saved);
		free(k);
		return VMM_ECUDA;
	}
	stream_leave(ctx, saved);
	k->p = p;
	k->size = size;
	k->dev = dev;
	k->stream = s;
	k->ev = ev;
	k->ctx = ctx;
	pthread_mutex_lock(&stream_lock);
	k->next = stream_parked;
	stream_parked = k;
	__atomic_add_fetch(&stream_nparked, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&stream_lock);
	return 0;
}

bool
vmmc_stream_parked(const void *p)
{
	struct parked *k;
	bool r = false;

	if (__atomic_load_n(&stream_nparked, __ATOMIC_ACQUIRE) == 0)
		return false;
	pthread_mutex_lock(&stream_lock);
	for (k = stream_parked; k != NULL && !r; k = k->next)
		r = k->p == p;
	pthread_mutex_unlock(&stream_lock);
	return r;
}

/* Removes k (found through *pp); lock held. */
static void
stream_unlink(struct parked **pp, struct parked *k)
{
	*pp = k->next;
	__atomic_sub_fetch(&stream_nparked, 1, __ATOMIC_RELEASE);
}

int
vmmc_stream_take(int dev, size_t size, CUstream s, CUcontext ctx, void **out)
{
	struct parked **pp, *k, **best = NULL;
	CUcontext saved;
	CUresult q;
	int rc = 1;

	if (__atomic_load_n(&stream_nparked, __ATOMIC_ACQUIRE) == 0)
		return 1;
	pthread_mutex_lock(&stream_lock);
	/* Oldest fitting block (the likeliest to be done): the list is
	 * newest first, so the last match wins. */
	for (pp = &stream_parked; (k = *pp) != NULL; pp = &k->next)
		if (k->dev == dev && k->size == size)
			best = pp;
	if (best == NULL) {
		pthread_mutex_unlock(&stream_lock);
		return 1;
	}
	k = *best;
	stream_unlink(best, k);
	pthread_mutex_unlock(&stream_lock);
	if (stream_enter(ctx, &saved) != 0)
		goto back;
	/* Done already: no dependency needed.  Otherwise s waits for the free
	 * on the GPU (events work across the contexts of a device). */
	q = cuEventQuery(k->ev);
	if (q == CUDA_SUCCESS || (q == CUDA_ERROR_NOT_READY &&
	    cuStreamWaitEvent(s, k->ev, 0) == CUDA_SUCCESS))
		rc = 0;
	stream_leave(ctx, saved);
	if (rc != 0)
		goto back;
	*out = k->p;
	pthread_mutex_lock(&stream_lock);
	stream_spare_put(k->ctx, k->ev);
	pthread_mutex_unlock(&stream_lock);
	free(k);
	return 0;
back:
	pthread_mutex_lock(&stream_lock);
	k->next = stream_parked;
	stream_parked = k;
	__atomic_add_fetch(&stream_nparked, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&stream_lock);
	return rc;
}

uint64_t
vmmc_stream_reap(int dev)
{
	struct parked **pp, *k, *done = NULL;
	uint64_t bytes = 0;

	if (__atomic_load_n(&stream_nparked, __ATOMIC_ACQUIRE) == 0)
		return 0;
	pthread_mutex_lock(&stream_lock);
	for (pp = &stream_parked; (k = *pp) != NULL;) {
		CUcontext saved;
		CUresult q = CUDA_ERROR_NOT_READY;

		if ((dev < 0 || k->dev == dev) &&
		    stream_enter(k->ctx, &saved) == 0) {
			q = cuEventQuery(k->ev);
			stream_leave(k->ctx, saved);
		}
		if (q == CUDA_SUCCESS) {
			stream_unlink(pp, k);
			stream_spare_put(k->ctx, k->ev);
			k->next = done;
			done = k;
			continue;
		}
		pp = &k->next;
	}
	pthread_mutex_unlock(&stream_lock);
	while ((k = done) != NULL) {
		done = k->next;
		/* Its event completed: every access ordered before the free
		 * is done, so the allocators may reuse it without a sync. */
		if (vmmc_small_free_idle(k->p) == VMM_ENOTOURS &&
		    vmmc_medium_free_idle(k->p) == VMM_ENOTOURS)
			(void)vmmc_large_free_idle(k->p);
		bytes += k->size;
		free(k);
	}
	return bytes;
}

void
vmmc_stream_forget(void)
{
	/* Fork child: the parent's events mean nothing here; the blocks
	 * were the parent's allocations (forgotten with the allocators). */
	pthread_mutex_init(&stream_lock, NULL);
	stream_parked = NULL;
	stream_spare = NULL;
	stream_nparked = 0;
}
