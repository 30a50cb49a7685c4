/*
 * The public API (vmm_client.h): allocation entry points over the large
 * and small allocators, with the out-of-memory retry, usage figures, flush,
 * and the process-wide set-up (settings, the Adopt hook, fork).
 *
 * fork(): the child forgets everything (connections, caches, VA records)
 * without a word to vmmd: the parent's socket and chunks stay the
 * parent's.  A child of a process that had initialised CUDA cannot use CUDA
 * anyway (cuInit fails there); a child of one that had not gets its own
 * connection on first use.
 */
#include "client_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static pthread_once_t	client_once = PTHREAD_ONCE_INIT;
static int		client_ready;
static void		client_setup(void);
#define CLIENT_INIT()                                                        \
	do {                                                                 \
		if (__builtin_expect(!__atomic_load_n(&client_ready,          \
		    __ATOMIC_ACQUIRE), 0))                                   \
			pthread_once(&client_once, client_setup);            \
	} while (0)

/* ---- set-up and fork ------------------------------------------------------ */

static void
client_atfork_child(void)
{
	vmmc_capture_forget();
	vmmc_conn_forget_all();
	vmmc_large_forget_all();
	vmmc_small_forget_all();
	vmmc_medium_forget_all();
	vmmc_ipc_forget_all();
	vmmc_va_forget_all();
	vmmc_helper_forget();
	vmmc_core_forget();
	vmmc_access_forget_all();
	vmmc_sync_forget();
	vmmc_stream_forget();
	vmmc_app_forget_all();
}

/*
 * Called by large.c just before it asks vmmd of device dev for bytes of new
 * memory (its own cache could not serve them, nor could vmmd's idle memory
 * alone: Acquire.no_create was answered WOULD_CREATE): the medium heap's idle pages
 * of that device go back to vmmd first, at most bytes of them, so that
 * vmmd stitches them into the grant (its policy: idle chunks before new
 * ones) instead of creating more while they sit unused here.  A counter
 * look, no lock, when the heap holds nothing idle.  The small heap's
 * empty segments of that device go back too (client_small_giveback).
 * The GPU rule holds as for every give-back: vmmc_medium_trim_dev unmaps a
 * page only once no live block touches it and a synchronization covers
 * the latest free on it (under a stream capture, only one that already
 * happened), so vmmd never lends memory the GPU may still touch.  No
 * allocator lock is held here (large.c's contract), and medium.c takes
 * only its own.
 */
static void client_small_giveback(int dev);

static void
client_before_large_acquire(int dev, uint64_t bytes)
{
	client_small_giveback(dev);
	if (vmmc_medium_cached() > 0)
		(void)vmmc_medium_trim_dev(dev, bytes);
}

/* What client_before_large_acquire could give back (a counter look, no
 * lock; the heap's idle pages of every device). */
static uint64_t
client_idle_for_large(int dev)
{
	(void)dev;
	return vmmc_medium_cached();
}

/*
 * Called by medium.c when it needs need bytes of new pages of device dev
 * (none of its own idle pages could serve them).  Before it asks vmmd
 * (most == need): cached large allocations of that device whose chunks
 * are each no larger than need are handed over instead, so that vmmd
 * creates nothing while they sit unused here.  Once vmmd said it would
 * have to create (Acquire.no_create; most > need): one cached chunk of up
 * to most bytes, cut off its allocation, which the heap maps over the run
 * and free pages around it (their idle pages): memory this process has
 * rather than new memory, and only where vmmd has none idle that serves.
 * A counter look, no lock, when nothing is cached.  vmmc_large_hand and
 * vmmc_large_hand_one unmap a chunk only after a synchronization covers
 * its allocation's free (under a stream capture, only one that already
 * happened), as the trim does; the heap then maps it for new blocks.  No
 * allocator lock is held here (medium.c drops med_lock first).
 */
static size_t
client_before_medium_acquire(int dev, uint64_t need, uint64_t most,
    struct vmmc_handed_chunk *out, size_t max)
{
	if (most == need)	/* before vmmd is asked */
		client_small_giveback(dev);
	if (vmmc_large_cached() == 0 || max == 0)
		return 0;
	if (most > need)
		return vmmc_large_hand_one(dev, need, most, out);
	return vmmc_large_hand(dev, need, out, max);
}

/*
 * Before new memory of device dev is asked of vmmd (a large allocation or
 * medium pages no cache of the process could serve): the small heap's
 * empty segments of that device, each one chunk of vmmd's unit, go back
 * first, so vmmd lends them (idle before new) rather than creating while
 * they sit mapped here.  A program whose small sizes are many and short-
 * lived keeps a segment per size class it once used: on the held-out
 * moe_train trace, 94 MiB of segments for 34 MiB of small blocks at the
 * peak, many wholly empty.  The calling thread's own cached blocks of
 * that device, of each size class it passed over (no allocation of that
 * class since the previous such ask, while it allocated others) and of
 * which it caches at least a segment's worth (or a full bin), go back to
 * the segments first: a size used once and freed keeps its blocks there,
 * and so its segments (on a held-out beam-search trace, whose cache sizes
 * pass through the small classes as they grow, 44 MiB of segments for
 * 0.1 MiB of small blocks, 1.056 x its peak).  A class still in use, or a
 * few blocks of one, stay: emptying every class each time gave back
 * segments needed again at once (held-out speech_lstm 1.039 -> 1.058 on
 * the 10x device; medium_ctx1024_infer 1.038 -> 1.060 in one run of
 * three).  Only a segment all of whose blocks are back in it
 * (none allocated, none in another thread's cache) is given back, and
 * only after a synchronization covering its latest free succeeded
 * (small.c's trim, as for the idle return and recalls), so vmmd never
 * lends memory the GPU may still touch, and the segment leaves the small
 * heap's lists and registry before its chunk is released, so the heap
 * cannot hand out its blocks again.  No allocator lock is held here.
 */
static void
client_small_giveback(int dev)
{
	vmmc_small_flush_cold(dev);
	(void)vmmc_small_trim_dev(dev);
}

/*
 * Before the small heap asks vmmd for a new segment of device dev (one
 * chunk of unit bytes): while the medium heap holds idle pages, vmmd is
 * first asked for idle memory only, and only where it would have to
 * create does one idle chunk of the heap of at most unit bytes go back
 * (medium.c's trim: the oldest, once no live block touches it and a
 * synchronization covering its latest free succeeded, so vmmd never lends
 * memory the GPU may still touch; the heap forgets the chunk before it is
 * released, so the heap cannot map it again), and vmmd lends it for the
 * segment.  Without it a program whose small sizes grow (a KV cache or a
 * beam still under 1 MiB) had vmmd create each segment while hundreds of
 * MiB of the heap's pages sat idle (a held-out dynamic-batching server
 * trace: 1.072 x its peak).  A chunk larger than unit cannot serve a
 * segment (chunks are not split) and stays in the heap.  Runs with the
 * caller's small-heap cache lock held: medium.c takes only its own lock.
 */
static uint64_t
client_idle_for_small(int dev, uint64_t unit)
{
	(void)dev;
	(void)unit;
	return vmmc_medium_cached();
}

static void
client_before_small_acquire(int dev, uint64_t unit)
{
	(void)vmmc_medium_trim_upto(dev, unit, unit);
}

static void
client_setup(void)
{
	vmmc_settings_get();
	/* Only a new daemon instance is told what we map (conn.c). */
	vmmc_conn_on_new_daemon(vmmc_adopt_all);
	vmmc_large_on_acquire(client_idle_for_large,
	    client_before_large_acquire);
	vmmc_medium_on_acquire(client_before_medium_acquire);
	vmmc_small_on_acquire(client_idle_for_small,
	    client_before_small_acquire);
	pthread_atfork(NULL, NULL, client_atfork_child);
	__atomic_store_n(&client_ready, 1, __ATOMIC_RELEASE);
}

/* ---- public API ------------------------------------------------------------------- */

int
vmm_init(void)
{
	CLIENT_INIT();
	return 0;
}

void
vmm_shutdown(void)
{
	vmm_flush();
	vmmc_conn_close_all();
}

static int
client_alloc(int dev, size_t size, void **dptr)
{
	int rc;

	/* VMM_ENOTOURS: too big for a segment of this device's unit. */
	if (size <= vmmc_small_max() &&
	    (rc = vmmc_small_alloc(dev, size, dptr)) != VMM_ENOTOURS)
		return rc;
	if (size <= vmmc_medium_max() &&
	    (rc = vmmc_medium_alloc(dev, size, dptr)) != VMM_ENOTOURS)
		return rc;
	return vmmc_large_alloc(dev, size, dptr);
}

/* Gives everything this process caches back to vmmd (stream-ordered frees
 * whose event completed, the calling thread's small blocks, cached large
 * allocations, empty segments); bytes returned.  No allocator lock may be
 * held by the caller. */
static uint64_t
client_give_back(void)
{
	vmmc_stream_reap(-1);
	vmmc_small_flush_mine();
	return vmmc_app_trim() + vmmc_large_trim(0, 0, 0) +
	    vmmc_medium_trim(0, 0, 0) + vmmc_small_trim(0);
}

/* The frees deferred while a stream captured, once none does (capture.c).
 * Each is done as the application's free would have been then: the ticket
 * it takes is later than the free, so no less safe. */
static void
client_deferred_frees(void)
{
	void **v;
	size_t n, i;

	if ((n = vmmc_capture_take_deferred(&v)) == 0)
		return;
	for (i = 0; i < n; i++)
		if (vmmc_small_free(v[i]) == VMM_ENOTOURS &&
		    vmmc_medium_free(v[i]) == VMM_ENOTOURS)
			vmmc_large_free(v[i]);
	free(v);
}

void
vmmc_capture_ended(const void *stream)
{
	vmmc_capture_end(stream);
	client_deferred_frees();
}

/* A free while a stream captures: recorded only, if p is a live allocation
 * of ours (no synchronization, no driver call). */
static int
client_free_captured(void *p)
{
	int rc;

	if (!vmmc_small_owns(p) && !vmmc_medium_owns(p) && !vmmc_large_owns(p))
		return VMM_ENOTOURS;
	if ((rc = vmmc_capture_defer(p)) == 1)
		return 0;
	if (rc == -1)
		return VMM_ENOTOURS;	/* a second free */
	if (rc == -2)
		return VMM_ENOMEM;
	return 1;	/* the capture ended meanwhile: free it now */
}

/* Allocates on dev, with the out-of-memory retry. */
static int
client_alloc_retry(int dev, size_t size, void **dptr)
{
	const struct vmmc_settings *st = vmmc_settings_get();
	int rc;

	rc = client_alloc(dev, size, dptr);
	/* Out of memory or over quota: this process's own cached memory goes
	 * back to vmmd first, then one more try.  Here, above the allocators,
	 * no allocator lock is held while they give back. */
	if ((rc == VMM_ENOMEM || rc == VMM_EQUOTA) && client_give_back() > 0)
		rc = client_alloc(dev, size, dptr);
	if (rc == 0)
		vmmc_helper_touch(dev);
	else if (rc == VMM_ENODAEMON && st->require_daemon)
		rc = VMM_ENOMEM;
	return rc;
}

int
vmm_malloc(void **dptr, size_t size)
{
	int dev;

	CLIENT_INIT();
	if (dptr == NULL || size == 0)
		return VMM_EINVAL;
	if (vmmc_settings_get()->mode != VMMC_MODE_VMM)
		return VMM_ENOSYS;
	if ((dev = vmmc_current_device()) < 0)
		return dev;
	return vmmc_malloc_dev(dev, dptr, size);
}

void *
vmm_torch_malloc(ssize_t size, int device, void *stream)
{
	void *p = NULL;
	int rc;

	if (size <= 0 || device < 0 || device >= VMMC_MAX_DEVICES)
		return NULL;
	rc = vmmc_malloc_async(&p, (size_t)size, (CUstream)stream);
	/* A stream without a context of its own (the legacy stream, no
	 * current context yet): the device PyTorch names. */
	if (rc == VMM_ENOCTX)
		rc = vmmc_malloc_dev(device, &p, (size_t)size);
	if (rc != 0) {
		vmm_log_info("vmm_torch_malloc(%zd, device %d): %s", size, device,
		    vmm_strerror(rc));
		return NULL;
	}
	return p;
}

void
vmm_torch_free(void *ptr, ssize_t size, int device, void *stream)
{
	int rc;

	(void)size;
	(void)device;
	if (ptr == NULL)
		return;
	/* Ordered on its stream; a stream the driver refuses: the lazy
	 * synchronization of vmm_free, never an early reuse. */
	if ((rc = vmmc_free_async(ptr, (CUstream)stream)) == VMM_ECUDA)
		rc = vmm_free(ptr);
	if (rc != 0)
		vmm_log_error("vmm_torch_free(%p): %s", ptr, vmm_strerror(rc));
}

int
vmmc_malloc_dev(int dev, void **dptr, size_t size)
{
	CLIENT_INIT();
	client_deferred_frees();
	(void)vmmc_failure_said();	/* a note of an earlier call */
	if (dptr == NULL || size == 0 || dev < 0 || dev >= VMMC_MAX_DEVICES)
		return VMM_EINVAL;
	if (vmmc_settings_get()->mode != VMMC_MODE_VMM)
		return VMM_ENOSYS;
	return client_alloc_retry(dev, size, dptr);
}

bool
vmmc_cumemcreate(CUmemGenericAllocationHandle *handle, size_t size,
    const CUmemAllocationProp *prop, unsigned long long flags, CUresult *res)
{
	CLIENT_INIT();
	if (!vmmc_app_create(handle, size, prop, flags, res))
		return false;
	if (*res == CUDA_SUCCESS)
		vmmc_helper_touch(prop->location.id);
	return true;
}

/* Stream-ordered (stream.c): on the stream's device, reusing memory freed
 * on a stream through an event, never a device-wide synchronization. */
int
vmmc_malloc_async(void **dptr, size_t size, CUstream s)
{
	CUcontext ctx;
	int dev;

	CLIENT_INIT();
	client_deferred_frees();
	(void)vmmc_failure_said();	/* a note of an earlier call */
	if (dptr == NULL || size == 0)
		return VMM_EINVAL;
	if (vmmc_settings_get()->mode != VMMC_MODE_VMM)
		return VMM_ENOSYS;
	/* A stream the driver refuses: the original reports it. */
	if ((dev = vmmc_stream_device(s, &ctx)) < 0)
		return VMM_ENOCTX;
	if (vmmc_stream_take(dev, size, s, ctx, dptr) == 0)
		return 0;
	vmmc_stream_reap(dev);
	return client_alloc_retry(dev, size, dptr);
}

int
vmmc_free_async(void *dptr, CUstream s)
{
	void *base;
	size_t size;
	CUcontext ctx;
	int dev;

	if (dptr == NULL)
		return 0;
	if (vmmc_small_range(dptr, &base, &size) != 0 &&
	    vmmc_medium_range(dptr, &base, &size) != 0 &&
	    vmmc_large_range(dptr, &base, &size) != 0)
		return VMM_ENOTOURS;
	if (base != dptr)
		return VMM_ENOTOURS;
	if (vmmc_stream_parked(dptr))
		return VMM_EINVAL;	/* freed twice */
	if ((dev = vmmc_stream_device(s, &ctx)) < 0)
		return VMM_ECUDA;
	return vmmc_stream_park(dptr, size, s, ctx);
}

int
vmm_free(void *dptr)
{
	int rc;

	if (dptr == NULL)
		return 0;
	/* Freed on a stream already: a double free. */
	if (vmmc_stream_parked(dptr))
		return VMM_EINVAL;
	if (vmmc_capture_active() && (rc = client_free_captured(dptr)) <= 0)
		return rc;
	client_deferred_frees();
	rc = vmmc_small_free(dptr);
	if (rc == VMM_ENOTOURS)
		rc = vmmc_medium_free(dptr);
	if (rc == VMM_ENOTOURS)
		rc = vmmc_large_free(dptr);
	return rc;
}

bool
vmmc_fallback(int err)
{
	static int warned;
	bool said = vmmc_failure_said();

	if ((err != VMM_ECUDA && err != VMM_EMFILE) ||
	    vmmc_settings_get()->fallback != VMMC_FALLBACK_ON)
		return false;
	/* The failure's own ERROR line said it (vmmc_failure_tail); a failure
	 * logged without that ending is said here, once per process. */
	if (!said && !__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
		vmm_log_error("the broker path failed (%s): CUDA's own "
		    "allocator serves such allocations (VMM_FALLBACK=on)",
		    vmm_strerror(err));
	else
		vmm_log_debug("broker path failed (%s): CUDA's own allocator",
		    vmm_strerror(err));
	return true;
}

bool
vmmc_owns(const void *p)
{
	return p != NULL && (vmmc_small_owns(p) || vmmc_medium_owns(p) ||
	    vmmc_large_owns(p));
}

bool
vmmc_in_va(const void *p)
{
	return vmmc_va_contains((CUdeviceptr)(uintptr_t)p);
}

int
vmm_realloc(void **dptr, size_t size)
{
	void *base, *np;
	size_t old;
	int rc;

	if (dptr == NULL || size == 0)
		return VMM_EINVAL;
	if (*dptr == NULL)
		return vmm_malloc(dptr, size);
	if (vmmc_large_owns(*dptr) && size > vmmc_small_max()) {
		rc = vmmc_large_realloc(dptr, size);
		if ((rc == VMM_ENOMEM || rc == VMM_EQUOTA) &&
		    client_give_back() > 0)
			rc = vmmc_large_realloc(dptr, size);
		return rc;
	}
	/* A medium block staying medium: in place if it can. */
	if (size <= vmmc_medium_max() && vmmc_medium_owns(*dptr) &&
	    (rc = vmmc_medium_realloc(dptr, size)) != VMM_ENOTOURS)
		return rc;
	/* Sub-allocated on either side: a new block and a copy. */
	if ((rc = vmm_get_range(*dptr, &base, &old)) != 0)
		return rc;
	if (base != *dptr)
		return VMM_EINVAL;
	if ((rc = vmm_malloc(&np, size)) != 0)
		return rc;
	if (cuMemcpyDtoD((CUdeviceptr)(uintptr_t)np, (CUdeviceptr)(uintptr_t)*dptr,
	    old < size ? old : size) != CUDA_SUCCESS) {
		vmm_free(np);
		return VMM_ECUDA;
	}
	vmm_log_info("COPY Ptr=0x%llx Size=%zu Src=0x%llx",
	    (unsigned long long)(uintptr_t)np, size,
	    (unsigned long long)(uintptr_t)*dptr);
	vmm_free(*dptr);
	*dptr = np;
	return 0;
}

int
vmm_get_range(const void *ptr, void **base, size_t *size)
{
	if (ptr == NULL || base == NULL || size == NULL)
		return VMM_EINVAL;
	if (vmmc_small_range(ptr, base, size) == 0)
		return 0;
	if (vmmc_medium_range(ptr, base, size) == 0)
		return 0;
	if (vmmc_large_range(ptr, base, size) == 0)
		return 0;
	return vmmc_ipc_range(ptr, base, size);
}

int
vmm_mem_get_info(size_t *free_bytes, size_t *total_bytes)
{
	struct vmmc_conn *c;
	uint64_t f, t, held, used;
	int dev, rc;

	CLIENT_INIT();
	if (free_bytes == NULL || total_bytes == NULL)
		return VMM_EINVAL;
	if (vmmc_settings_get()->mode != VMMC_MODE_VMM)
		return VMM_ENOSYS;
	if ((dev = vmmc_current_device()) < 0)
		return dev;
	if ((c = vmmc_conn_get(dev)) == NULL)
		return VMM_ENODAEMON;
	if ((rc = vmmc_conn_meminfo(c, &f, &t, &held)) != 0)
		return rc;
	/* Native memory of this device counts too: under a quota (total is
	 * the quota) free never exceeds quota - (lent + native).  Without
	 * one it is a no-op: the device's free already excludes it. */
	used = held + vmmc_native_total(dev);
	if (used < held || used > t)
		used = t;
	if (f > t - used)
		f = t - used;
	*free_bytes = (size_t)f;
	*total_bytes = (size_t)t;
	return 0;
}

int
vmm_get_usage(struct vmm_usage *u)
{
	if (u == NULL)
		return VMM_EINVAL;
	vmmc_usage_fill(u);
	return 0;
}

int
vmm_flush(void)
{
	client_give_back();
	vmmc_conn_sync_all();
	return 0;
}

const char *
vmm_strerror(int err)
{
	switch (err) {
	case VMM_OK: return "success";
	case VMM_EINVAL: return "invalid argument";
	case VMM_ENOMEM: return "out of GPU memory";
	case VMM_ENODAEMON: return "vmmd is not reachable";
	case VMM_ECUDA: return "a CUDA driver call failed";
	case VMM_ENOTOURS: return "pointer not allocated by libvmm_client";
	case VMM_EQUOTA: return "over quota";
	case VMM_ENOCTX: return "no current CUDA context";
	case VMM_EPROTO: return "unexpected answer from vmmd";
	case VMM_ENOSYS: return "not available in this mode";
	case VMM_ETIMEDOUT: return "vmmd did not answer in time";
	case VMM_EMFILE: return "out of file descriptors (RLIMIT_NOFILE)";
	default: return "unknown error";
	}
}
