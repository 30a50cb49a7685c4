/*
 * Lazy synchronization, per device and per context.
 *
 * Freed memory is cached, and must not be reused, unmapped or given back
 * while GPU work issued before the free may still touch it.  Native
 * cudaFree guarantees that by synchronizing the device; we synchronize
 * lazily, once for a batch, and only the contexts that matter:
 *
 *   - Tickets are per device.  A free of memory of device d first records
 *     the contexts the work may have been issued in (the calling thread's
 *     current context, and d's primary context if that one is not d's;
 *     each device keeps the small set of them, usually just the primary
 *     one), then takes ticket t = begin[d] + 1 (vmmc_sync_ticket).
 *   - A synchronization of d takes s = begin[d]++, then reads d's set and
 *     synchronizes every context in it (making each current for the call
 *     and restoring the caller's afterwards, so the helper thread and
 *     application threads alike sync the right contexts, whatever is
 *     current on them), and only if all of them succeeded raises done[d]
 *     to s + 1.  A free with ticket t is covered once done[d] >= t: only a
 *     sync begun after the free (s >= t - 1) does that, and such a sync read
 *     the set after the free recorded its context.  Ticket 0 (memory known
 *     to be idle: a stream-ordered free whose event completed) is always
 *     covered.
 *   - A synchronization that fails means "still busy", never "idle": done
 *     stays, vmmc_sync_for returns VMM_ECUDA, and every caller keeps the
 *     memory out of reuse, mapped and unreturned.  A context that no longer
 *     exists (cuCtxSetCurrent says invalid or destroyed) has no work left
 *     and is dropped from the set.
 *   - A sync of one device's contexts never covers another device's frees,
 *     and a sync some thread made of its own context covers nothing here.
 *
 * All synchronizing driver calls of the library go through sync_context(),
 * the one place that consults whether a synchronizing call is allowed:
 * while a stream capture is in progress (vmmc_capture_active) it makes none
 * and answers "still busy", so vmmc_sync_for fails and every caller keeps
 * the memory out of reuse; the allocators meanwhile reuse only memory whose
 * ticket is covered already (LARGE_IDLE_NOW, SMALL_IDLE_NOW) and frees are
 * deferred until no capture is left (capture.c, client.c).  Stream-ordered
 * frees do not come here: they are reused through events on their stream
 * (stream.c).
 */
#include "client_internal.h"

#include "log.h"

#define SYNC_MAX_CTX 8

struct sync_dev {
	uint64_t	begin, done;	/* tickets, see above */
	CUcontext	ctx[SYNC_MAX_CTX];
	int		nctx;		/* published with release */
	CUcontext	primary;	/* retained by us, once needed */
	pthread_mutex_t	lock;		/* adding to ctx[], primary */
};

static struct sync_dev	sync_devs[VMMC_MAX_DEVICES];
static pthread_once_t	sync_once = PTHREAD_ONCE_INIT;
static bool		sync_failed_logged;
/* The context the calling thread was last seen in, and its device. */
static __thread CUcontext	sync_tls_ctx
    __attribute__((tls_model("initial-exec")));
static __thread int		sync_tls_dev
    __attribute__((tls_model("initial-exec"))) = -1;

static void
sync_init(void)
{
	int i;

	for (i = 0; i < VMMC_MAX_DEVICES; i++)
		pthread_mutex_init(&sync_devs[i].lock, NULL);
}


static bool
sync_has(struct sync_dev *d, CUcontext ctx)
{
	int i, n = __atomic_load_n(&d->nctx, __ATOMIC_ACQUIRE);

	for (i = 0; i < n; i++)
		if (__atomic_load_n(&d->ctx[i], __ATOMIC_RELAXED) == ctx)
			return true;
	return false;
}

/* Adds ctx to d's set; false if the set is full. */
static bool
sync_add(struct sync_dev *d, CUcontext ctx)
{
	bool ok = true;
	int n;

	pthread_mutex_lock(&d->lock);
	if (!sync_has(d, ctx)) {
		n = d->nctx;
		if (n == SYNC_MAX_CTX) {
			ok = false;
		} else {
			__atomic_store_n(&d->ctx[n], ctx, __ATOMIC_RELAXED);
			__atomic_store_n(&d->nctx, n + 1, __ATOMIC_RELEASE);
		}
	}
	pthread_mutex_unlock(&d->lock);
	return ok;
}

/* Removes ctx (gone) from d's set. */
static void
sync_drop(struct sync_dev *d, CUcontext ctx)
{
	int i;

	pthread_mutex_lock(&d->lock);
	for (i = 0; i < d->nctx; i++) {
		if (d->ctx[i] == ctx) {
			d->ctx[i] = d->ctx[d->nctx - 1];
			__atomic_store_n(&d->nctx, d->nctx - 1, __ATOMIC_RELEASE);
			break;
		}
	}
	pthread_mutex_unlock(&d->lock);
}

/* Device dev's primary context, retained once for the process's life. */
static CUcontext
sync_primary(int dev)
{
	struct sync_dev *d = &sync_devs[dev];
	CUcontext c;
	CUdevice cd;

	pthread_mutex_lock(&d->lock);
	if (d->primary == NULL && cuDeviceGet(&cd, dev) == CUDA_SUCCESS &&
	    cuDevicePrimaryCtxRetain(&c, cd) == CUDA_SUCCESS)
		d->primary = c;
	c = d->primary;
	pthread_mutex_unlock(&d->lock);
	return c;
}

/*
 * Synchronizes ctx from the calling thread, whatever is current on it.
 * 0: done; 1: ctx is gone (no work left); -1: failed or not allowed now
 * (still busy).  While a stream capture is in progress (capture.c) no
 * synchronizing call is made at all: the driver would refuse it and
 * invalidate the capture.  The memory then counts as still busy, exactly as
 * after a failed sync: it stays cached, mapped and ours until a sync made
 * once no capture is left covers its ticket.
 */
static int
sync_context(CUcontext ctx)
{
	CUcontext cur = NULL;
	CUresult r;

	if (vmmc_capture_active())
		return -1;
	if (cuCtxGetCurrent(&cur) != CUDA_SUCCESS)
		return -1;
	if (cur != ctx) {
		r = cuCtxSetCurrent(ctx);
		if (r == CUDA_ERROR_INVALID_CONTEXT ||
		    r == CUDA_ERROR_CONTEXT_IS_DESTROYED)
			return 1;
		if (r != CUDA_SUCCESS)
			return -1;
	}
	r = cuCtxSynchronize();
	if (cur != ctx && cuCtxSetCurrent(cur) != CUDA_SUCCESS)
		vmm_log_error("cannot make the caller's CUDA context current "
		    "again after a synchronization");
	if (r != CUDA_SUCCESS) {
		if (!__atomic_exchange_n(&sync_failed_logged, true,
		    __ATOMIC_RELAXED))
			vmm_log_error("cuCtxSynchronize failed (%d): freed memory "
			    "stays out of reuse until a synchronization "
			    "succeeds", (int)r);
		return -1;
	}
	return 0;
}

/* Records where work touching memory of dev freed now may have been issued;
 * false if that cannot be recorded (then the caller synchronizes now). */
static bool
sync_record(int dev)
{
	struct sync_dev *d = &sync_devs[dev];
	CUcontext cur = NULL, rec;
	CUdevice cd;

	if (cuCtxGetCurrent(&cur) != CUDA_SUCCESS)
		cur = NULL;
	if (cur != NULL && cur == sync_tls_ctx && sync_tls_dev == dev &&
	    sync_has(d, cur))
		return true;	/* recorded before */
	/* The freeing thread's context, whatever its device (with peer
	 * access its work may touch dev's memory); if it is not one of dev's
	 * (or there is none), dev's primary context too. */
	if (cur != NULL && !sync_has(d, cur) && !sync_add(d, cur))
		return false;
	if (cur != NULL && cuCtxGetDevice(&cd) == CUDA_SUCCESS && cd == dev) {
		sync_tls_ctx = cur;
		sync_tls_dev = dev;
		return true;
	}
	if ((rec = sync_primary(dev)) == NULL)
		return false;
	return sync_has(d, rec) || sync_add(d, rec);
}

uint64_t
vmmc_sync_ticket(int dev)
{
	struct sync_dev *d = &sync_devs[dev];

	pthread_once(&sync_once, sync_init);
	if (!sync_record(dev)) {
		/* No room to remember the context: behave like native cudaFree
		 * and synchronize the caller's context now. */
		CUcontext cur = NULL;

		if (cuCtxGetCurrent(&cur) == CUDA_SUCCESS && cur != NULL)
			(void)sync_context(cur);
	}
	return __atomic_load_n(&d->begin, __ATOMIC_SEQ_CST) + 1;
}

/* Ticket 0 (memory known to be idle) is always covered. */
bool
vmmc_sync_covers(int dev, uint64_t ticket)
{
	return __atomic_load_n(&sync_devs[dev].done, __ATOMIC_ACQUIRE) >= ticket;
}

int
vmmc_sync_for(int dev, uint64_t ticket)
{
	struct sync_dev *d = &sync_devs[dev];
	CUcontext todo[SYNC_MAX_CTX];
	uint64_t s, cur;
	int i, n, r;

	if (vmmc_sync_covers(dev, ticket))
		return 0;
	pthread_once(&sync_once, sync_init);
	s = __atomic_fetch_add(&d->begin, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&d->lock);
	n = d->nctx;
	for (i = 0; i < n; i++)
		todo[i] = d->ctx[i];
	pthread_mutex_unlock(&d->lock);
	for (i = 0; i < n; i++) {
		if ((r = sync_context(todo[i])) < 0)
			return VMM_ECUDA;
		if (r == 1)
			sync_drop(d, todo[i]);
	}
	vmmc_stat_add(VMMC_STAT_SYNCS, 1);
	cur = __atomic_load_n(&d->done, __ATOMIC_ACQUIRE);
	while (cur < s + 1 && !__atomic_compare_exchange_n(&d->done, &cur,
	    s + 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
	return 0;
}

int
vmmc_sync_now(int dev)
{
	return vmmc_sync_for(dev, vmmc_sync_ticket(dev));
}

void
vmmc_sync_forget(void)
{
	int i;

	/* Fork child: CUDA is unusable here; start from nothing. */
	for (i = 0; i < VMMC_MAX_DEVICES; i++) {
		struct sync_dev *d = &sync_devs[i];

		d->begin = d->done = 0;
		d->nctx = 0;
		d->primary = NULL;
		pthread_mutex_init(&d->lock, NULL);
	}
	sync_tls_ctx = NULL;
	sync_tls_dev = -1;
}
