/*
 * The core under the allocators: the process's counters, mapping granted
 * chunks, and the wake-up of the helper thread.  It calls the driver and
 * nothing else of the library, so every other file may call it.
 */
#include "client_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"

static int64_t		core_stats[VMMC_STAT_N];
/* This thread logged the failure of its broker call and what follows.
 * Initial-exec, as all of the library's TLS: no lazy dynamic TLS block in
 * a preloaded library (sanitizers' leak scan trips on those). */
static _Thread_local bool	core_said __attribute__((tls_model("initial-exec")));
static int		core_pipe[2] = { -1, -1 };	/* wakes the helper */
static int		core_report_due;

/* ---- counters ------------------------------------------------------------ */

static void	core_ws_note(void);

void
vmmc_stat_add(int which, int64_t delta)
{
	__atomic_add_fetch(&core_stats[which], delta, __ATOMIC_RELAXED);
	/* Memory mapped for live allocations grew: maybe a new peak. */
	if ((which == VMMC_STAT_MAPPED && delta > 0) ||
	    (which == VMMC_STAT_CACHED && delta < 0))
		core_ws_note();
}

int64_t
vmmc_stat_get(int which)
{
	return __atomic_load_n(&core_stats[which], __ATOMIC_RELAXED);
}

/* ---- the working set --------------------------------------------------------- */

/*
 * The process's working set: the peak of the memory mapped for its live
 * allocations (VMMC_STAT_MAPPED minus VMMC_STAT_CACHED) in the current
 * window of VMM_IDLE_MS (1 s if 0) and in the one before, so a peak is
 * remembered for one to two windows.  Atomics only (no lock a fork could
 * leave held); a race at a window's turn may lose one update, which the
 * next allocation's makes good: the figure is advice for the cache's
 * budget (vmmc_cache_budget), never a bound on what may be mapped.
 */
static uint64_t		core_ws_epoch;		/* window of core_ws_cur */
static uint64_t		core_ws_cur, core_ws_prev;

static uint64_t
core_ws_window_ms(void)
{
	uint64_t w = vmmc_settings_get()->idle_ms;

	return w != 0 ? w : 1000;
}

/* Memory mapped for live allocations now (the counters are read apart:
 * a transient mismatch is clamped to 0). */
static uint64_t
core_live_mapped(void)
{
	int64_t v = vmmc_stat_get(VMMC_STAT_MAPPED) -
	    vmmc_stat_get(VMMC_STAT_CACHED);

	return v > 0 ? (uint64_t)v : 0;
}

/* Turns the window if its time is up and records the live figure. */
static void
core_ws_note(void)
{
	uint64_t e = vmm_now_ms() / core_ws_window_ms();
	uint64_t old = __atomic_load_n(&core_ws_epoch, __ATOMIC_RELAXED);
	uint64_t live = core_live_mapped(), cur;

	if (e != old && __atomic_compare_exchange_n(&core_ws_epoch, &old, e,
	    false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
		__atomic_store_n(&core_ws_prev, e == old + 1 ?
		    __atomic_load_n(&core_ws_cur, __ATOMIC_RELAXED) : 0,
		    __ATOMIC_RELAXED);
		__atomic_store_n(&core_ws_cur, 0, __ATOMIC_RELAXED);
	}
	cur = __atomic_load_n(&core_ws_cur, __ATOMIC_RELAXED);
	while (live > cur && !__atomic_compare_exchange_n(&core_ws_cur, &cur,
	    live, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* Devices on which vmmd last said it lends memory to other processes. */
static uint64_t		core_shared_devs;

void
vmmc_cache_note_others(int dev, uint64_t others_lent)
{
	uint64_t bit = 1ull << dev;

	if (dev < 0 || dev >= VMMC_MAX_DEVICES)
		return;
	if (others_lent != 0)
		__atomic_or_fetch(&core_shared_devs, bit, __ATOMIC_RELAXED);
	else
		__atomic_and_fetch(&core_shared_devs, ~bit, __ATOMIC_RELAXED);
}

uint64_t
vmmc_cache_budget(void)
{
	const struct vmmc_settings *st = vmmc_settings_get();
	uint64_t peak, live, b;

	/* Beside other processes, memory kept for this one's next step is
	 * memory they cannot have: VMM_CACHE_MAX alone bounds it then. */
	if (!st->cache_working_set ||
	    __atomic_load_n(&core_shared_devs, __ATOMIC_RELAXED) != 0)
		return st->cache_max;
	core_ws_note();
	peak = __atomic_load_n(&core_ws_cur, __ATOMIC_RELAXED);
	b = __atomic_load_n(&core_ws_prev, __ATOMIC_RELAXED);
	if (b > peak)
		peak = b;
	live = core_live_mapped();
	b = st->cache_max + (peak > live ? peak - live : 0);
	return b < st->cache_max ? UINT64_MAX : b;	/* overflow: no bound */
}

/* ---- devices ------------------------------------------------------------- */

int
vmmc_current_device(void)
{
	CUdevice d;

	if (cuCtxGetDevice(&d) != CUDA_SUCCESS || d < 0 || d >= VMMC_MAX_DEVICES)
		return VMM_ENOCTX;
	return (int)d;
}

/* ---- saying what a failure does ------------------------------------------- */

const char *
vmmc_failure_tail(void)
{
	core_said = true;
	return vmmc_settings_get()->fallback == VMMC_FALLBACK_ON ?
	    "; CUDA's own allocator serves the allocation (VMM_FALLBACK=on)" :
	    "; the allocation fails (VMM_FALLBACK=fail)";
}

bool
vmmc_failure_said(void)
{
	bool said = core_said;

	core_said = false;
	return said;
}

/* ---- mapping ------------------------------------------------------------------- */

/* The soft RLIMIT_NOFILE, for messages. */
static unsigned long long
core_nofile(void)
{
	struct rlimit rl;

	return getrlimit(RLIMIT_NOFILE, &rl) == 0 ?
	    (unsigned long long)rl.rlim_cur : 0;
}

/* Whether the process is out of fds (a driver call that needs one fails
 * for that): no fd can be had next to fd. */
static bool
core_out_of_fds(int fd)
{
	int t = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	if (t >= 0) {
		close(t);
		return false;
	}
	return errno == EMFILE || errno == ENFILE;
}

static const char *
core_cu_name(CUresult r)
{
	const char *s = NULL;

	if (cuGetErrorName(r, &s) != CUDA_SUCCESS || s == NULL)
		return "unknown CUDA error";
	return s;
}

/* ---- handles kept with their mappings ------------------------------------ */

/*
 * The handle of each mapping the library makes of a granted chunk (its
 * import) is kept, with the mapping's address, until that mapping is
 * unmapped, and released right after the cuMemUnmap (vmmc_unmap_range):
 * not on the allocation path, where a cuMemRelease per chunk cost more
 * than the import, the map and the access together (the a100 profile
 * prices a release per granule: 640 us for 64 MiB).  A chunk moved to
 * another address (a stitch from the cache, a realloc that moves, a chunk
 * handed to the medium heap) takes its kept handle along
 * (vmmc_handle_take, vmmc_handle_keep) instead of retaining one and
 * releasing it.
 *
 * Why no handle outlives its chunk's loan: a record names a handle and
 * the address where it is mapped; vmmc_unmap_range releases every handle
 * recorded for a mapping it unmaps, and every give-back of a mapped chunk
 * to vmmd comes after the unmap of its mapping (the allocators' rule,
 * unchanged): so the handle is released before the chunk goes back,
 * exactly where the mapping ended before.  A chunk never mapped (a
 * failure after the grant) has no record; one handed on is the
 * receiver's to map and keep, or to release.  A record that cannot be
 * made (no memory) is no record: the handle is released at once, as
 * before.  The library's own unmaps all go through vmmc_unmap_range.
 * Fork: the child forgets the records (it cannot use CUDA; the parent's
 * handles are the parent's).
 */
struct core_held {
	CUdeviceptr			va;
	uint64_t			size;
	CUmemGenericAllocationHandle	h;
	struct core_held		*next;
};
static pthread_mutex_t	core_held_lock = PTHREAD_MUTEX_INITIALIZER;
static struct core_held	**core_held_b;	/* 2^core_held_bits buckets */
static unsigned		core_held_bits;
static size_t		core_held_n;
/* The OR of the address and size of every mapping kept (recorded or,
 * without memory, released at once): its lowest bit divides each, so
 * from the start of a range of whole mappings, which follow each other,
 * steps of it meet every mapping's start. */
static uint64_t		core_held_or;
/* The table of a parent that forked (the child keeps it unused). */
static struct core_held	**core_held_orphan;

static size_t
core_held_slot(CUdeviceptr va, unsigned bits)
{
	return (size_t)((va * 0x9e3779b97f4a7c15ull) >> (64 - bits));
}

/* Doubles the buckets (lock held); false without memory (chains grow). */
static bool
core_held_grow(void)
{
	unsigned bits = core_held_bits ? core_held_bits + 1 : 8;
	struct core_held **nb = calloc((size_t)1 << bits, sizeof(*nb));
	size_t i;

	if (nb == NULL)
		return false;
	for (i = 0; core_held_bits != 0 && i < ((size_t)1 << core_held_bits);
	    i++) {
		struct core_held *e, *next;

		for (e = core_held_b[i]; e != NULL; e = next) {
			size_t j = core_held_slot(e->va, bits);

			next = e->next;
			e->next = nb[j];
			nb[j] = e;
		}
	}
	free(core_held_b);
	core_held_b = nb;
	core_held_bits = bits;
	return true;
}

/* Unlinks and returns the record of the mapping at va (lock held). */
static struct core_held *
core_held_unlink(CUdeviceptr va)
{
	struct core_held **pp, *e;

	if (core_held_bits == 0)
		return NULL;
	for (pp = &core_held_b[core_held_slot(va, core_held_bits)];
	    (e = *pp) != NULL; pp = &e->next)
		if (e->va == va) {
			*pp = e->next;
			core_held_n--;
			return e;
		}
	return NULL;
}

void
vmmc_handle_keep(CUdeviceptr va, uint64_t size, CUmemGenericAllocationHandle h)
{
	struct core_held *e = malloc(sizeof(*e)), *stale = NULL;
	size_t j;

	pthread_mutex_lock(&core_held_lock);
	/* Every mapping counts in the step, recorded or not: the mappings
	 * of a range follow each other, so each start is a multiple of it. */
	core_held_or |= va | size;
	if (e == NULL || ((core_held_bits == 0 ||
	    core_held_n >= ((size_t)1 << core_held_bits)) &&
	    !core_held_grow() && core_held_bits == 0)) {
		pthread_mutex_unlock(&core_held_lock);
		free(e);
		cuMemRelease(h);	/* no record: released now, as ever */
		return;
	}
	/* A record at va already is of a mapping that is gone (the new one
	 * could not be made over it): its handle goes. */
	stale = core_held_unlink(va);
	e->va = va;
	e->size = size;
	e->h = h;
	j = core_held_slot(va, core_held_bits);
	e->next = core_held_b[j];
	core_held_b[j] = e;
	core_held_n++;
	pthread_mutex_unlock(&core_held_lock);
	if (stale != NULL) {
		cuMemRelease(stale->h);
		free(stale);
	}
}

CUresult
vmmc_handle_take(CUdeviceptr va, CUmemGenericAllocationHandle *h)
{
	struct core_held *e;

	pthread_mutex_lock(&core_held_lock);
	e = core_held_unlink(va);
	pthread_mutex_unlock(&core_held_lock);
	if (e == NULL)
		return cuMemRetainAllocationHandle(h, (void *)(uintptr_t)va);
	*h = e->h;
	free(e);
	return CUDA_SUCCESS;
}

/* Releases the handles kept for mappings that start in [va, va+size),
 * which were just unmapped. */
static void
core_held_release(CUdeviceptr va, uint64_t size)
{
	struct core_held *list = NULL, *e, *next, **pp;
	uint64_t step, off;
	size_t i;

	pthread_mutex_lock(&core_held_lock);
	step = (core_held_or | va) & -(core_held_or | va);
	if (core_held_n == 0 || step == 0) {
		pthread_mutex_unlock(&core_held_lock);
		return;
	}
	if (size / step <= ((size_t)1 << core_held_bits)) {
		/* Each place a mapping can start. */
		for (off = 0; off < size; off += step)
			if ((e = core_held_unlink(va + off)) != NULL) {
				e->next = list;
				list = e;
			}
	} else {
		/* Fewer buckets than places: every record. */
		for (i = 0; i < ((size_t)1 << core_held_bits); i++)
			for (pp = &core_held_b[i]; (e = *pp) != NULL;) {
				if (e->va >= va && e->va - va < size) {
					*pp = e->next;
					core_held_n--;
					e->next = list;
					list = e;
				} else {
					pp = &e->next;
				}
			}
	}
	pthread_mutex_unlock(&core_held_lock);
	for (e = list; e != NULL; e = next) {
		next = e->next;
		cuMemRelease(e->h);
		free(e);
	}
}

void
vmmc_unmap_range(CUdeviceptr va, uint64_t size)
{
	CUresult r;

	if (size == 0)
		return;
	vmmc_access_forget(va, size);
	if ((r = cuMemUnmap(va, size)) != CUDA_SUCCESS)
		vmm_log_error("cuMemUnmap(0x%llx, %llu): %s",
		    (unsigned long long)va, (unsigned long long)size,
		    core_cu_name(r));
	/* Released after the unmap, before the caller gives the chunks
	 * back; even if the unmap failed, as they were before at map time. */
	core_held_release(va, size);
}

/* Read-write access for device dev and its peers to [va, va+size). */
static CUresult
core_access_rw(int dev, CUdeviceptr va, uint64_t size)
{
	return vmmc_access_grant(dev, va, size);
}

int
vmmc_set_access_rw(int dev, CUdeviceptr va, uint64_t size)
{
	return core_access_rw(dev, va, size) == CUDA_SUCCESS ? 0 : VMM_ECUDA;
}

int
vmmc_map_chunks(int dev, CUdeviceptr va, struct vmmc_grant_chunk *g, size_t n)
{
	CUmemGenericAllocationHandle h;
	const char *what = "cuMemImportFromShareableHandle";
	uint64_t off = 0;
	size_t i;
	CUresult r = CUDA_SUCCESS;

	for (i = 0; i < n; i++) {
		r = cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)g[i].fd,
		    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
		if (r != CUDA_SUCCESS && core_out_of_fds(g[i].fd)) {
			vmm_log_error("importing a granted chunk: %s: this "
			    "process is out of file descriptors (RLIMIT_NOFILE "
			    "%llu); the chunks go back to vmmd%s",
			    core_cu_name(r), core_nofile(), vmmc_failure_tail());
			vmmc_close_grant(g, n);
			vmmc_unmap_range(va, off);
			return VMM_EMFILE;
		}
		close(g[i].fd);
		g[i].fd = -1;
		if (r != CUDA_SUCCESS)
			break;
		r = cuMemMap(va + off, g[i].size, 0, h, 0);
		if (r != CUDA_SUCCESS) {
			cuMemRelease(h);
			what = "cuMemMap";
			break;
		}
		/* Kept with its mapping, released after its unmap. */
		vmmc_handle_keep(va + off, g[i].size, h);
		off += g[i].size;
	}
	if (r == CUDA_SUCCESS) {
		if ((r = core_access_rw(dev, va, off)) == CUDA_SUCCESS)
			return 0;
		what = "cuMemSetAccess";
	}
	vmm_log_error("mapping %zu granted chunks at 0x%llx: %s: %s; the chunks "
	    "go back to vmmd%s", n, (unsigned long long)va, what,
	    core_cu_name(r), r == CUDA_ERROR_OUT_OF_MEMORY ? "" :
	    vmmc_failure_tail());
	vmmc_close_grant(g, n);
	vmmc_unmap_range(va, off);
	/* Out of memory is the allocation's own error (retried after this
	 * process gives its cache back); anything else is unexpected
	 * (vmmc_fallback). */
	return r == CUDA_ERROR_OUT_OF_MEMORY ? VMM_ENOMEM : VMM_ECUDA;
}

void
vmmc_close_grant(struct vmmc_grant_chunk *g, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (g[i].fd >= 0) {
			close(g[i].fd);
			g[i].fd = -1;
		}
}

/* ---- waking the helper ---------------------------------------------------- */

int
vmmc_wake_open(void)
{
	if (core_pipe[0] < 0 && pipe2(core_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		return -1;
	return core_pipe[0];
}

void
vmmc_wake(void)
{
	int fd = __atomic_load_n(&core_pipe[1], __ATOMIC_ACQUIRE);

	if (fd >= 0)
		(void)!write(fd, "r", 1);	/* full pipe: already woken */
}

void
vmmc_report_soon(void)
{
	if (!__atomic_exchange_n(&core_report_due, 1, __ATOMIC_RELAXED))
		vmmc_wake();
}

bool
vmmc_report_due(void)
{
	return __atomic_exchange_n(&core_report_due, 0, __ATOMIC_RELAXED);
}

void
vmmc_core_forget(void)
{
	if (core_pipe[0] >= 0) {
		close(core_pipe[0]);
		close(core_pipe[1]);
	}
	core_pipe[0] = core_pipe[1] = -1;
	core_report_due = 0;
	memset(core_stats, 0, sizeof(core_stats));
	core_ws_epoch = core_ws_cur = core_ws_prev = 0;
	core_shared_devs = 0;
	/* The parent's records: left as they are (a thread may have been
	 * changing them), reachable for leak checkers. */
	core_held_orphan = core_held_b;
	pthread_mutex_init(&core_held_lock, NULL);
	core_held_b = NULL;
	core_held_bits = 0;
	core_held_n = 0;
	core_held_or = 0;
}
