/*
 * The helper thread, one per process, started when a device is first used:
 * it answers vmmd's Recalls (gives back cached memory, then closes the
 * Recall with a Report), returns memory idle for VMM_IDLE_MS, and reports
 * the process's usage figures.  It works with each device's primary
 * context, which it retains for its life.  vmmc_wake() (core.c) wakes it.
 */
#include "client_internal.h"

#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static pthread_mutex_t	helper_lock = PTHREAD_MUTEX_INITIALIZER;
static bool		helper_running;
static uint64_t		helper_devices;		/* bit per device used */
static uint64_t		helper_peak;

void
vmmc_usage_fill(struct vmm_usage *u)
{
	int64_t small_in_use, med_in_use;
	uint64_t sa, sf, sfree, ma, mf, mcached;

	memset(u, 0, sizeof(*u));
	vmmc_small_usage(&small_in_use, &sa, &sf, &sfree);
	vmmc_medium_usage(&med_in_use, &ma, &mf, &mcached);
	u->in_use_bytes = (uint64_t)(vmmc_stat_get(VMMC_STAT_IN_USE) +
	    (small_in_use > 0 ? small_in_use : 0) +
	    (med_in_use > 0 ? med_in_use : 0));
	u->mapped_bytes = (uint64_t)vmmc_stat_get(VMMC_STAT_MAPPED);
	/* Medium pages without live blocks are in VMMC_STAT_CACHED. */
	u->cached_bytes = (uint64_t)vmmc_stat_get(VMMC_STAT_CACHED) + sfree;
	u->allocs = (uint64_t)vmmc_stat_get(VMMC_STAT_ALLOCS) + sa + ma;
	u->frees = (uint64_t)vmmc_stat_get(VMMC_STAT_FREES) + sf + mf;
	u->daemon_calls = (uint64_t)vmmc_stat_get(VMMC_STAT_DAEMON_CALLS);
	u->syncs = (uint64_t)vmmc_stat_get(VMMC_STAT_SYNCS);
	u->reserved_va_bytes = vmmc_va_reserved();
	u->native_fallback_bytes = vmmc_native_get(-1, VMMC_NATIVE_FALLBACK);
	u->native_cumemcreate_bytes = vmmc_native_get(-1,
	    VMMC_NATIVE_CUMEMCREATE);
	u->native_pool_bytes = vmmc_native_get(-1, VMMC_NATIVE_POOL);
	u->native_managed_bytes = vmmc_native_get(-1, VMMC_NATIVE_MANAGED);
	u->app_vmm_bytes = vmmc_native_pooled_get(-1);
	/* Peak as sampled here (reports, usage queries): several threads. */
	{
		uint64_t cur = __atomic_load_n(&helper_peak, __ATOMIC_RELAXED);

		while (u->in_use_bytes > cur && !__atomic_compare_exchange_n(
		    &helper_peak, &cur, u->in_use_bytes, false, __ATOMIC_RELAXED,
		    __ATOMIC_RELAXED))
			;
	}
	u->peak_in_use_bytes = __atomic_load_n(&helper_peak, __ATOMIC_RELAXED);
}

/* Makes the device's primary context current on the helper thread, which
 * keeps one retain per device for its life. */
static int
bg_context(int dev)
{
	static CUcontext ctxs[VMMC_MAX_DEVICES];
	CUdevice d;

	if (ctxs[dev] == NULL && (cuDeviceGet(&d, dev) != CUDA_SUCCESS ||
	    cuDevicePrimaryCtxRetain(&ctxs[dev], d) != CUDA_SUCCESS)) {
		ctxs[dev] = NULL;
		return -1;
	}
	return cuCtxSetCurrent(ctxs[dev]) == CUDA_SUCCESS ? 0 : -1;
}

/* Sends the usage figures to dev's vmmd; its answer says whether other
 * processes hold memory there (the caches' working-set rule). */
static void
helper_report(struct vmmc_conn *c, int dev, const struct vmm_usage *u,
    uint64_t rid)
{
	uint64_t others = 0;

	if (vmmc_conn_report(c, u, rid, &others) == 0)
		vmmc_cache_note_others(dev, others);
}

static void *
bg_main(void *arg)
{
	const struct vmmc_settings *st = vmmc_settings_get();
	int wake = (int)(intptr_t)arg;
	struct vmm_usage last = { 0 }, u;
	uint64_t last_report = 0, tick, ops = 0, last_active = vmm_now_ms();
	int dev;

	/* What this thread does (unmapping memory known idle, mapping and
	 * giving back chunks) never touches work a stream capture records:
	 * it is not held to the restrictions a capture in GLOBAL mode puts on
	 * other threads (cuThreadExchangeStreamCaptureMode).  It still never
	 * synchronizes while a capture is in progress (capture.c). */
	{
		CUstreamCaptureMode relaxed = CU_STREAM_CAPTURE_MODE_RELAXED;

		(void)cuThreadExchangeStreamCaptureMode(&relaxed);
	}
	tick = st->report_ms;
	if (st->idle_ms != 0 && st->idle_ms / 2 < tick)
		tick = st->idle_ms / 2 ? st->idle_ms / 2 : 1;
	for (;;) {
		struct pollfd pf[VMMC_MAX_DEVICES + 1];
		int np = 0, devs[VMMC_MAX_DEVICES];
		uint64_t now;
		char drain[64];

		for (dev = 0; dev < VMMC_MAX_DEVICES; dev++) {
			struct vmmc_conn *c;

			if (!(__atomic_load_n(&helper_devices, __ATOMIC_RELAXED) &
			    (1ull << dev)) || (c = vmmc_conn_get(dev)) == NULL)
				continue;
			/* Lost (vmmd restarted, or dropped us): reconnect now,
			 * not at this process's next allocation, so that even
			 * an idle process is counted again (stats, quotas,
			 * out-of-memory decisions) within about a second.
			 * conn.c paces the attempts and resumes or adopts. */
			if (vmmc_conn_fd(c) < 0 && bg_context(dev) == 0)
				vmmc_conn_revive(c);
			if (vmmc_conn_fd(c) < 0)
				continue;
			pf[np].fd = vmmc_conn_fd(c);
			pf[np].events = POLLIN;
			devs[np++] = dev;
		}
		pf[np].fd = wake;
		pf[np].events = POLLIN;
		pf[np].revents = 0;
		poll(pf, (nfds_t)np + 1, (int)tick);
		if (pf[np].revents & POLLIN)
			while (read(wake, drain, sizeof(drain)) > 0)
				;
		now = vmm_now_ms();
		/* Every connection, readable or not: an application thread may
		 * have read a Recall while waiting for its own reply. */
		for (int i = 0; i < np; i++) {
			uint64_t rid = 0, target;
			struct vmmc_conn *c = vmmc_conn_get(devs[i]);

			if (c == NULL)
				continue;
			target = vmmc_conn_poll(c, &rid);
			if (target != 0 && bg_context(devs[i]) == 0) {
				vmm_log_debug("recall of %llu bytes",
				    (unsigned long long)target);
				uint64_t got = vmmc_large_trim(target, 0, rid);

				if (got < target)
					vmmc_medium_trim(target - got, 0, rid);
				vmmc_small_flush_idle();
				vmmc_small_trim(rid);
			}
			/* Done: vmmd stops waiting for this process (the
			 * Releases went first, on the same connection). */
			if (target != 0) {
				vmmc_usage_fill(&u);
				helper_report(c, devs[i], &u, rid);
			}
		}
		/* Stream-ordered frees whose event completed become idle cache
		 * (no synchronization: the event says so). */
		vmmc_stream_reap(-1);
		/* The application's own cuMemCreate chunks it let go of: back
		 * to vmmd once a sync covers their last unmap. */
		vmmc_app_trim();
		/* Large allocations cached for idle_ms without reuse go back to
		 * vmmd even while the process is busy; the rest (empty
		 * segments) when it is idle (no allocation or free since). */
		if (st->idle_ms != 0)
			for (dev = 0; dev < VMMC_MAX_DEVICES; dev++)
				if ((__atomic_load_n(&helper_devices,
				    __ATOMIC_RELAXED) & (1ull << dev)) &&
				    bg_context(dev) == 0) {
					vmmc_large_trim(0, st->idle_ms, 0);
					vmmc_medium_trim(0, st->idle_ms, 0);
				}
		vmmc_usage_fill(&u);
		if (u.allocs + u.frees != ops) {
			ops = u.allocs + u.frees;
			last_active = now;
		}
		if (st->idle_ms != 0 && now - last_active >= st->idle_ms) {
			for (dev = 0; dev < VMMC_MAX_DEVICES; dev++) {
				if ((__atomic_load_n(&helper_devices,
				    __ATOMIC_RELAXED) & (1ull << dev)) &&
				    bg_context(dev) == 0) {
					vmmc_large_trim(0, st->idle_ms, 0);
					vmmc_small_flush_idle();
					vmmc_small_trim(0);
				}
			}
		}
		if (now - last_report >= st->report_ms ||
		    (vmmc_report_due() && now - last_report >= 10)) {
			vmmc_usage_fill(&u);
			if (memcmp(&u, &last, sizeof(u)) != 0) {
				for (dev = 0; dev < VMMC_MAX_DEVICES; dev++) {
					struct vmmc_conn *c;

					if ((__atomic_load_n(&helper_devices,
					    __ATOMIC_RELAXED) & (1ull << dev)) &&
					    (c = vmmc_conn_get(dev)) != NULL)
						helper_report(c, dev, &u, 0);
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
	int wake;

	pthread_mutex_lock(&helper_lock);
	if (!helper_running && (wake = vmmc_wake_open()) >= 0) {
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, bg_main,
		    (void *)(intptr_t)wake) == 0)
			helper_running = true;
		pthread_attr_destroy(&attr);
	}
	pthread_mutex_unlock(&helper_lock);
}

/* Starts the helper thread when dev is first used.  Activity is not
 * timestamped here: the helper sees it in the allocation counters, which
 * keeps the fast path free of clocks and shared writes. */
void
vmmc_helper_touch(int dev)
{
	uint64_t bit = 1ull << dev;

	if (__builtin_expect(!(__atomic_load_n(&helper_devices,
	    __ATOMIC_RELAXED) & bit), 0)) {
		__atomic_fetch_or(&helper_devices, bit, __ATOMIC_RELAXED);
		bg_start();
	}
}

void
vmmc_helper_forget(void)
{
	pthread_mutex_init(&helper_lock, NULL);
	helper_running = false;
	helper_devices = 0;
	helper_peak = 0;
}
