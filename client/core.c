/*
 * The core under the allocators: the process's counters, mapping granted
 * chunks, and the wake-up of the helper thread.  It calls the driver and
 * nothing else of the library, so every other file may call it.
 */
#include "client_internal.h"

#include <errno.h>
#include <fcntl.h>
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

void
vmmc_unmap_range(CUdeviceptr va, uint64_t size)
{
	CUresult r;

	if (size != 0)
		vmmc_access_forget(va, size);
	if (size != 0 && (r = cuMemUnmap(va, size)) != CUDA_SUCCESS)
		vmm_log_error("cuMemUnmap(0x%llx, %llu): %s",
		    (unsigned long long)va, (unsigned long long)size,
		    core_cu_name(r));
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
		/* The mapping keeps the memory: the handle can go now. */
		cuMemRelease(h);
		if (r != CUDA_SUCCESS) {
			what = "cuMemMap";
			break;
		}
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
}
