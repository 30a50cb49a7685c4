/*
 * The public API (vmm_client.h) and what ties the parts together: lazy
 * synchronization tickets, the process's counters, mapping granted chunks,
 * a background thread (idle return, usage reports, vmmd's recalls), Adopt
 * after a daemon restart, and fork.
 *
 * fork(): the child forgets everything (connections, caches, VA records)
 * without a word to vmmd: the parent's socket and chunks stay the
 * parent's.  A child of a process that had initialised CUDA cannot use CUDA
 * anyway (cuInit fails there); a child of one that had not gets its own
 * connection on first use.
 */
#include "client_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"

uint64_t vmm_small_max(void);
void	vmm_small_usage(int64_t *in_use, uint64_t *allocs, uint64_t *frees,
	    uint64_t *free_bytes);
void	vmm_small_each_chunk(int dev, void (*fn)(void *, CUdeviceptr, uint64_t,
	    uint64_t *), void *arg);
void	vmm_large_each_chunk(int dev, void (*fn)(void *, CUdeviceptr, uint64_t,
	    uint64_t *), void *arg);
int	vmm_conn_adopt_locked(struct vmm_conn *c, const uint64_t *sizes,
	    int *fds, size_t n, uint64_t *ids);
int	vmm_client_adopt(struct vmm_conn *c, int dev);

static int64_t		client_stats[VMM_STAT_N];
static uint64_t		client_peak;
static uint64_t		sync_begin, sync_done;	/* tickets, see vmm_sync_* */
static pthread_once_t	client_once = PTHREAD_ONCE_INIT;
static int		client_ready;
static void		client_setup(void);
#define CLIENT_INIT()                                                        \
	do {                                                                 \
		if (__builtin_expect(!__atomic_load_n(&client_ready,          \
		    __ATOMIC_ACQUIRE), 0))                                   \
			pthread_once(&client_once, client_setup);            \
	} while (0)
static pthread_mutex_t	client_bg_lock = PTHREAD_MUTEX_INITIALIZER;
static bool		client_bg_running;
static int		client_bg_pipe[2] = { -1, -1 };	/* wakes the helper */
static uint64_t		client_devices;		/* bit per device used */

void
vmm_stat_add(int which, int64_t delta)
{
	__atomic_add_fetch(&client_stats[which], delta, __ATOMIC_RELAXED);
}

/* ---- lazy synchronization --------------------------------------------------- */

/*
 * A free takes ticket t = sync_begin.  A synchronization takes ticket
 * s = sync_begin++ before cuCtxSynchronize and, once it returned, raises
 * sync_done to s + 1.  A sync that started after the free has s >= t, so
 * sync_done > t means the freed memory is idle.
 */
uint64_t
vmm_sync_ticket(void)
{
	return __atomic_load_n(&sync_begin, __ATOMIC_ACQUIRE);
}

bool
vmm_sync_covers(uint64_t ticket)
{
	return __atomic_load_n(&sync_done, __ATOMIC_ACQUIRE) > ticket;
}

int
vmm_sync_for(uint64_t ticket)
{
	uint64_t s, cur;

	if (vmm_sync_covers(ticket))
		return 0;
	s = __atomic_fetch_add(&sync_begin, 1, __ATOMIC_ACQ_REL);
	if (cuCtxSynchronize() != CUDA_SUCCESS)
		return VMM_ECUDA;
	vmm_stat_add(VMM_STAT_SYNCS, 1);
	cur = __atomic_load_n(&sync_done, __ATOMIC_ACQUIRE);
	while (cur < s + 1 && !__atomic_compare_exchange_n(&sync_done, &cur,
	    s + 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
	return 0;
}

int
vmm_current_device(void)
{
	CUdevice d;

	if (cuCtxGetDevice(&d) != CUDA_SUCCESS || d < 0 || d >= VMM_MAX_DEVICES)
		return VMM_ENOCTX;
	return (int)d;
}

/* ---- mapping ------------------------------------------------------------------- */

static const char *
client_cu_name(CUresult r)
{
	const char *s = NULL;

	if (cuGetErrorName(r, &s) != CUDA_SUCCESS || s == NULL)
		return "unknown CUDA error";
	return s;
}

void
vmm_unmap_range(CUdeviceptr va, uint64_t size)
{
	CUresult r;

	if (size != 0 && (r = cuMemUnmap(va, size)) != CUDA_SUCCESS)
		vmm_log_error("cuMemUnmap(0x%llx, %llu): %s",
		    (unsigned long long)va, (unsigned long long)size,
		    client_cu_name(r));
}

/* Read-write access for device dev to [va, va+size). */
static CUresult
client_access_rw(int dev, CUdeviceptr va, uint64_t size)
{
	CUmemAccessDesc acc = { 0 };

	acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	acc.location.id = dev;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	return cuMemSetAccess(va, size, &acc, 1);
}

int
vmm_set_access_rw(int dev, CUdeviceptr va, uint64_t size)
{
	return client_access_rw(dev, va, size) == CUDA_SUCCESS ? 0 : VMM_ECUDA;
}

int
vmm_map_chunks(int dev, CUdeviceptr va, struct vmm_grant_chunk *g, size_t n)
{
	CUmemGenericAllocationHandle h;
	const char *what = "cuMemImportFromShareableHandle";
	uint64_t off = 0;
	size_t i;
	CUresult r = CUDA_SUCCESS;

	for (i = 0; i < n; i++) {
		r = cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)g[i].fd,
		    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
		close(g[i].fd);
		g[i].fd = -1;
		if (r != CUDA_SUCCESS)
			break;
		r = cuMemMap(va + off, g[i].size, 0, h, 0);
		/* The mapping keeps the memory: the handle can go now. */
		cuMemRelease(h);
		if (r != CUDA_SUCCESS) {
			what = "cuMemMap";
			break;
		}
		off += g[i].size;
	}
	if (r == CUDA_SUCCESS) {
		if ((r = client_access_rw(dev, va, off)) == CUDA_SUCCESS)
			return 0;
		what = "cuMemSetAccess";
	}
	vmm_log_error("mapping %zu granted chunks at 0x%llx: %s: %s", n,
	    (unsigned long long)va, what, client_cu_name(r));
	for (; i < n; i++)
		if (g[i].fd >= 0) {
			close(g[i].fd);
			g[i].fd = -1;
		}
	vmm_unmap_range(va, off);
	return VMM_ECUDA;
}

/* ---- adopt after a daemon restart ------------------------------------------- */

#define ADOPT_BATCH VMM_PROTO_MAX_CHUNKS

struct adopt {
	struct vmm_conn	*c;
	uint64_t	sizes[ADOPT_BATCH];
	int		fds[ADOPT_BATCH];
	uint64_t	*idp[ADOPT_BATCH];
	size_t		n;
	int		rc;
};

static void
adopt_flush(struct adopt *a)
{
	uint64_t ids[ADOPT_BATCH];
	size_t i;
	int rc;

	if (a->n == 0)
		return;
	rc = vmm_conn_adopt_locked(a->c, a->sizes, a->fds, a->n, ids);
	for (i = 0; i < a->n; i++)
		*a->idp[i] = rc == 0 ? ids[i] : 0;
	if (rc != 0)
		a->rc = rc;
	a->n = 0;
}

/* Exports the chunk mapped at va for the new daemon to adopt. */
static void
adopt_one(void *arg, CUdeviceptr va, uint64_t size, uint64_t *id)
{
	struct adopt *a = arg;
	CUmemGenericAllocationHandle h;
	int fd = -1;

	if (cuMemRetainAllocationHandle(&h, (void *)(uintptr_t)va) != CUDA_SUCCESS)
		return;
	if (cuMemExportToShareableHandle(&fd, h,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0) != CUDA_SUCCESS)
		fd = -1;
	cuMemRelease(h);
	if (fd < 0) {
		a->rc = VMM_ECUDA;
		return;
	}
	a->sizes[a->n] = size;
	a->fds[a->n] = fd;
	a->idp[a->n] = id;
	if (++a->n == ADOPT_BATCH)
		adopt_flush(a);
}

/* Called by conn.c, connection locked, right after a reconnect. */
int
vmm_client_adopt(struct vmm_conn *c, int dev)
{
	struct adopt a = { .c = c };

	vmm_large_each_chunk(dev, adopt_one, &a);
	vmm_small_each_chunk(dev, adopt_one, &a);
	adopt_flush(&a);
	return a.rc;
}

/* ---- background thread ---------------------------------------------------------- */

static int64_t
stat_get(int which)
{
	return __atomic_load_n(&client_stats[which], __ATOMIC_RELAXED);
}

static void
usage_fill(struct vmm_usage *u)
{
	int64_t small_in_use;
	uint64_t sa, sf, sfree;

	memset(u, 0, sizeof(*u));
	vmm_small_usage(&small_in_use, &sa, &sf, &sfree);
	u->in_use_bytes = (uint64_t)(stat_get(VMM_STAT_IN_USE) +
	    (small_in_use > 0 ? small_in_use : 0));
	u->mapped_bytes = (uint64_t)stat_get(VMM_STAT_MAPPED);
	u->cached_bytes = (uint64_t)stat_get(VMM_STAT_CACHED) + sfree;
	u->allocs = (uint64_t)stat_get(VMM_STAT_ALLOCS) + sa;
	u->frees = (uint64_t)stat_get(VMM_STAT_FREES) + sf;
	u->daemon_calls = (uint64_t)stat_get(VMM_STAT_DAEMON_CALLS);
	u->syncs = (uint64_t)stat_get(VMM_STAT_SYNCS);
	u->reserved_va_bytes = vmm_va_reserved();
	/* Peak as sampled here (reports, usage queries): several threads. */
	{
		uint64_t cur = __atomic_load_n(&client_peak, __ATOMIC_RELAXED);

		while (u->in_use_bytes > cur && !__atomic_compare_exchange_n(
		    &client_peak, &cur, u->in_use_bytes, false, __ATOMIC_RELAXED,
		    __ATOMIC_RELAXED))
			;
	}
	u->peak_in_use_bytes = __atomic_load_n(&client_peak, __ATOMIC_RELAXED);
}

/* Makes the device's primary context current on the helper thread, which
 * keeps one retain per device for its life. */
static int
bg_context(int dev)
{
	static CUcontext ctxs[VMM_MAX_DEVICES];
	CUdevice d;

	if (ctxs[dev] == NULL && (cuDeviceGet(&d, dev) != CUDA_SUCCESS ||
	    cuDevicePrimaryCtxRetain(&ctxs[dev], d) != CUDA_SUCCESS)) {
		ctxs[dev] = NULL;
		return -1;
	}
	return cuCtxSetCurrent(ctxs[dev]) == CUDA_SUCCESS ? 0 : -1;
}

static int		client_report_due;

void
vmm_report_soon(void)
{
	if (!__atomic_exchange_n(&client_report_due, 1, __ATOMIC_RELAXED))
		vmm_bg_wake();
}

void
vmm_bg_wake(void)
{
	int fd = __atomic_load_n(&client_bg_pipe[1], __ATOMIC_ACQUIRE);

	if (fd >= 0)
		(void)!write(fd, "r", 1);	/* full pipe: already woken */
}

static void *
bg_main(void *arg)
{
	const struct vmm_settings *st = vmm_settings_get();
	struct vmm_usage last = { 0 }, u;
	uint64_t last_report = 0, tick, ops = 0, last_active = vmm_now_ms();
	int dev;

	(void)arg;
	tick = st->report_ms;
	if (st->idle_ms != 0 && st->idle_ms / 2 < tick)
		tick = st->idle_ms / 2 ? st->idle_ms / 2 : 1;
	for (;;) {
		struct pollfd pf[VMM_MAX_DEVICES + 1];
		int np = 0, devs[VMM_MAX_DEVICES];
		uint64_t now;
		char drain[64];

		for (dev = 0; dev < VMM_MAX_DEVICES; dev++) {
			struct vmm_conn *c;

			if (!(__atomic_load_n(&client_devices, __ATOMIC_RELAXED) &
			    (1ull << dev)) || (c = vmm_conn_get(dev)) == NULL ||
			    vmm_conn_fd(c) < 0)
				continue;
			pf[np].fd = vmm_conn_fd(c);
			pf[np].events = POLLIN;
			devs[np++] = dev;
		}
		pf[np].fd = client_bg_pipe[0];
		pf[np].events = POLLIN;
		pf[np].revents = 0;
		poll(pf, (nfds_t)np + 1, (int)tick);
		if (pf[np].revents & POLLIN)
			while (read(client_bg_pipe[0], drain, sizeof(drain)) > 0)
				;
		now = vmm_now_ms();
		/* Every connection, readable or not: an application thread may
		 * have read a Recall while waiting for its own reply. */
		for (int i = 0; i < np; i++) {
			uint64_t rid = 0, target;
			struct vmm_conn *c = vmm_conn_get(devs[i]);

			if (c == NULL)
				continue;
			target = vmm_conn_poll(c, &rid);
			if (target != 0 && bg_context(devs[i]) == 0) {
				vmm_log_debug("recall of %llu bytes",
				    (unsigned long long)target);
				vmm_large_trim(target, 0, rid);
				vmm_small_flush_idle();
				vmm_small_trim(rid);
			}
			/* Done: vmmd stops waiting for this process (the
			 * Releases went first, on the same connection). */
			if (target != 0) {
				usage_fill(&u);
				vmm_conn_report(c, &u, rid);
			}
		}
		/* Large allocations cached for idle_ms without reuse go back to
		 * vmmd even while the process is busy; the rest (empty
		 * segments) when it is idle (no allocation or free since). */
		if (st->idle_ms != 0)
			for (dev = 0; dev < VMM_MAX_DEVICES; dev++)
				if ((__atomic_load_n(&client_devices,
				    __ATOMIC_RELAXED) & (1ull << dev)) &&
				    bg_context(dev) == 0)
					vmm_large_trim(0, st->idle_ms, 0);
		usage_fill(&u);
		if (u.allocs + u.frees != ops) {
			ops = u.allocs + u.frees;
			last_active = now;
		}
		if (st->idle_ms != 0 && now - last_active >= st->idle_ms) {
			for (dev = 0; dev < VMM_MAX_DEVICES; dev++) {
				if ((__atomic_load_n(&client_devices,
				    __ATOMIC_RELAXED) & (1ull << dev)) &&
				    bg_context(dev) == 0) {
					vmm_large_trim(0, st->idle_ms, 0);
					vmm_small_flush_idle();
					vmm_small_trim(0);
				}
			}
		}
		if (now - last_report >= st->report_ms ||
		    (__atomic_exchange_n(&client_report_due, 0, __ATOMIC_RELAXED) &&
		    now - last_report >= 10)) {
			usage_fill(&u);
			if (memcmp(&u, &last, sizeof(u)) != 0) {
				for (dev = 0; dev < VMM_MAX_DEVICES; dev++) {
					struct vmm_conn *c;

					if ((__atomic_load_n(&client_devices,
					    __ATOMIC_RELAXED) & (1ull << dev)) &&
					    (c = vmm_conn_get(dev)) != NULL)
						vmm_conn_report(c, &u, 0);
				}
				last = u;
			}
			last_report = now;
		}
	}
	return NULL;
}

static void
bg_start(void)
{
	pthread_attr_t attr;
	pthread_t t;

	pthread_mutex_lock(&client_bg_lock);
	if (!client_bg_running &&
	    pipe2(client_bg_pipe, O_CLOEXEC | O_NONBLOCK) == 0) {
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, bg_main, NULL) == 0)
			client_bg_running = true;
		pthread_attr_destroy(&attr);
	}
	pthread_mutex_unlock(&client_bg_lock);
}

/* ---- fork --------------------------------------------------------------------- */

static void
client_atfork_child(void)
{
	vmm_conn_forget_all();
	vmm_large_forget_all();
	vmm_small_forget_all();
	vmm_va_forget_all();
	pthread_mutex_init(&client_bg_lock, NULL);
	client_bg_running = false;
	if (client_bg_pipe[0] >= 0) {
		close(client_bg_pipe[0]);
		close(client_bg_pipe[1]);
	}
	client_bg_pipe[0] = client_bg_pipe[1] = -1;
	client_devices = 0;
	memset(client_stats, 0, sizeof(client_stats));
	client_peak = 0;
}

static void
client_setup(void)
{
	vmm_settings_get();
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
	vmm_conn_close_all();
}

/* Starts the helper thread when dev is first used.  Activity is not
 * timestamped here: the helper sees it in the allocation counters, which
 * keeps the fast path free of clocks and shared writes. */
static void
client_touch(int dev)
{
	uint64_t bit = 1ull << dev;

	if (__builtin_expect(!(__atomic_load_n(&client_devices,
	    __ATOMIC_RELAXED) & bit), 0)) {
		__atomic_fetch_or(&client_devices, bit, __ATOMIC_RELAXED);
		bg_start();
	}
}

static int
client_alloc(int dev, size_t size, void **dptr)
{
	if (size <= vmm_small_max())
		return vmm_small_alloc(dev, size, dptr);
	return vmm_large_alloc(dev, size, dptr);
}

/* Gives everything this process caches back to vmmd (the calling thread's
 * small blocks, cached large allocations, empty segments); bytes returned.
 * No allocator lock may be held by the caller. */
static uint64_t
client_give_back(void)
{
	vmm_small_flush_mine();
	return vmm_large_trim(0, 0, 0) + vmm_small_trim(0);
}

int
vmm_malloc(void **dptr, size_t size)
{
	const struct vmm_settings *st;
	int dev, rc;

	CLIENT_INIT();
	st = vmm_settings_get();
	if (dptr == NULL || size == 0)
		return VMM_EINVAL;
	if (st->mode != VMM_MODE_VMM)
		return VMM_ENOSYS;
	if ((dev = vmm_current_device()) < 0)
		return dev;
	rc = client_alloc(dev, size, dptr);
	/* Out of memory or over quota: this process's own cached memory goes
	 * back to vmmd first, then one more try.  Here, above the allocators,
	 * no allocator lock is held while they give back. */
	if ((rc == VMM_ENOMEM || rc == VMM_EQUOTA) && client_give_back() > 0)
		rc = client_alloc(dev, size, dptr);
	if (rc == 0)
		client_touch(dev);
	else if (rc == VMM_ENODAEMON && st->require_daemon)
		rc = VMM_ENOMEM;
	return rc;
}

int
vmm_free(void *dptr)
{
	int rc;

	if (dptr == NULL)
		return 0;
	rc = vmm_small_free(dptr);
	if (rc == VMM_ENOTOURS)
		rc = vmm_large_free(dptr);
	return rc;
}

bool
vmm_client_owns(const void *p)
{
	return p != NULL && (vmm_small_owns(p) || vmm_large_owns(p));
}

bool
vmm_client_in_va(const void *p)
{
	return vmm_va_contains((CUdeviceptr)(uintptr_t)p);
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
	if (vmm_large_owns(*dptr) && size > vmm_small_max()) {
		rc = vmm_large_realloc(dptr, size);
		if ((rc == VMM_ENOMEM || rc == VMM_EQUOTA) &&
		    client_give_back() > 0)
			rc = vmm_large_realloc(dptr, size);
		return rc;
	}
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
	if (vmm_small_range(ptr, base, size) == 0)
		return 0;
	return vmm_large_range(ptr, base, size);
}

int
vmm_mem_get_info(size_t *free_bytes, size_t *total_bytes)
{
	struct vmm_conn *c;
	uint64_t f, t;
	int dev, rc;

	CLIENT_INIT();
	if (free_bytes == NULL || total_bytes == NULL)
		return VMM_EINVAL;
	if (vmm_settings_get()->mode != VMM_MODE_VMM)
		return VMM_ENOSYS;
	if ((dev = vmm_current_device()) < 0)
		return dev;
	if ((c = vmm_conn_get(dev)) == NULL)
		return VMM_ENODAEMON;
	if ((rc = vmm_conn_meminfo(c, &f, &t)) != 0)
		return rc;
	*free_bytes = (size_t)f;
	*total_bytes = (size_t)t;
	return 0;
}

int
vmm_get_usage(struct vmm_usage *u)
{
	if (u == NULL)
		return VMM_EINVAL;
	usage_fill(u);
	return 0;
}

int
vmm_flush(void)
{
	client_give_back();
	vmm_conn_sync_all();
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
	default: return "unknown error";
	}
}
