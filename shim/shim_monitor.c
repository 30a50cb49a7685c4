/*
 * MONITOR mode: the allocations seen, so that a FREE line can carry the
 * size, and the ALLOC/FREE lines themselves (DESIGN.md, Logs):
 *     ALLOC Ptr=0x7f2a00000000 Size=4194304
 *     FREE Ptr=0x7f2a00000000 Size=4194304
 * The table is fixed (static, no allocation) and bounded: when it is 3/4
 * full new allocations are not recorded, and their FREE asks the driver for
 * the size instead (cuMemGetAddressRange; Size=0 if it cannot tell).
 */
#include "shim.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>

#include "log.h"

#define SHIM_MON_BITS	16
#define SHIM_MON_SLOTS	((size_t)1 << SHIM_MON_BITS)
#define SHIM_MON_MAX	(SHIM_MON_SLOTS / 4 * 3)

/* Open addressing, linear probing; ptr 0 is an empty slot.  All under
 * shim_mon_lock, which fork handlers take around fork(). */
static struct shim_mon_slot {
	CUdeviceptr	ptr;
	size_t		size;
} shim_mon[SHIM_MON_SLOTS];
static size_t		shim_mon_count;
static pthread_mutex_t	shim_mon_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t	shim_mon_once = PTHREAD_ONCE_INIT;

static void
shim_mon_prefork(void)
{
	pthread_mutex_lock(&shim_mon_lock);
}

static void
shim_mon_postfork(void)
{
	pthread_mutex_unlock(&shim_mon_lock);
}

/* No lock may be held across fork() (run once, on first use). */
static void
shim_mon_init(void)
{
	(void)pthread_atfork(shim_mon_prefork, shim_mon_postfork,
	    shim_mon_postfork);
}

static void
shim_mon_locked(void)
{
	pthread_once(&shim_mon_once, shim_mon_init);
	pthread_mutex_lock(&shim_mon_lock);
}

/* The home slot of ptr (Fibonacci hashing). */
static size_t
shim_mon_home(CUdeviceptr ptr)
{
	return (size_t)(((uint64_t)ptr * UINT64_C(0x9e3779b97f4a7c15)) >>
	    (64 - SHIM_MON_BITS));
}

/* The slot holding ptr, or the empty slot where it would go. */
static size_t
shim_mon_find(CUdeviceptr ptr)
{
	size_t i = shim_mon_home(ptr);

	while (shim_mon[i].ptr != 0 && shim_mon[i].ptr != ptr)
		i = (i + 1) & (SHIM_MON_SLOTS - 1);
	return i;
}

/* Records ptr (replacing a stale entry); lock held. */
static void
shim_mon_put(CUdeviceptr ptr, size_t size)
{
	size_t i = shim_mon_find(ptr);

	if (shim_mon[i].ptr == 0) {
		if (shim_mon_count >= SHIM_MON_MAX)
			return;
		shim_mon_count++;
	}
	shim_mon[i].ptr = ptr;
	shim_mon[i].size = size;
}

/* Removes slot i, shifting back the entries that probed past it. */
static void
shim_mon_remove(size_t i)
{
	size_t j = i, home;

	for (;;) {
		j = (j + 1) & (SHIM_MON_SLOTS - 1);
		if (shim_mon[j].ptr == 0)
			break;
		home = shim_mon_home(shim_mon[j].ptr);
		/* Entry j may move to i unless its home lies in (i, j]. */
		if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
			shim_mon[i] = shim_mon[j];
			i = j;
		}
	}
	shim_mon[i].ptr = 0;
	shim_mon[i].size = 0;
	shim_mon_count--;
}

bool
shim_monitor_on(void)
{
	return vmm_log_enabled(VMM_LOG_INFO);
}

void
shim_monitor_alloc(CUdeviceptr ptr, size_t size)
{
	if (ptr == 0)
		return;
	shim_mon_locked();
	shim_mon_put(ptr, size);
	pthread_mutex_unlock(&shim_mon_lock);
	vmm_log_info("ALLOC Ptr=0x%" PRIx64 " Size=%zu", (uint64_t)ptr, size);
}

size_t
shim_monitor_take(CUdeviceptr ptr)
{
	shim_pfn_cuMemGetAddressRange_v2 range;
	CUdeviceptr base = 0;
	size_t i, size = 0;
	bool found;

	if (ptr == 0)
		return 0;
	shim_mon_locked();
	i = shim_mon_find(ptr);
	if ((found = shim_mon[i].ptr == ptr)) {
		size = shim_mon[i].size;
		shim_mon_remove(i);
	}
	pthread_mutex_unlock(&shim_mon_lock);
	if (!found) {
		/* Not seen (before the preload, or the table was full). */
		range = SHIM_REAL(cuMemGetAddressRange_v2);
		if (range == NULL || range(&base, &size, ptr) != CUDA_SUCCESS ||
		    base != ptr)
			size = 0;
	}
	return size;
}

void
shim_monitor_free(CUdeviceptr ptr, size_t size)
{
	vmm_log_info("FREE Ptr=0x%" PRIx64 " Size=%zu", (uint64_t)ptr, size);
}

void
shim_monitor_restore(CUdeviceptr ptr, size_t size)
{
	if (ptr == 0 || size == 0)
		return;
	shim_mon_locked();
	shim_mon_put(ptr, size);
	pthread_mutex_unlock(&shim_mon_lock);
}
