/*
 * Native memory: what the shim passed to CUDA's own allocators, counted
 * per device and path so that vmmd and vmm_get_usage show every byte the
 * process holds on the GPU (README, "What vmmd sees").  Only counters: the
 * shim keeps the pointer/handle -> (size, path, device) table that makes
 * each free decrement what its allocation added (shim/shim_native.c).
 */
#include "client_internal.h"
#include "vmmc_shim.h"

#include <string.h>

static uint64_t	native_bytes[VMMC_MAX_DEVICES][VMMC_NATIVE_NPATHS];
/* The application's own cuMemCreate served from the pool (not native). */
static int64_t	pooled_bytes[VMMC_MAX_DEVICES];

/* Whether (dev, path) names a counter. */
static bool
native_ok(int dev, int path)
{
	return dev >= 0 && dev < VMMC_MAX_DEVICES && path >= 0 &&
	    path < VMMC_NATIVE_NPATHS;
}

void
vmmc_native_add(int dev, int path, uint64_t bytes)
{
	if (!native_ok(dev, path) || bytes == 0)
		return;
	__atomic_add_fetch(&native_bytes[dev][path], bytes, __ATOMIC_RELAXED);
	vmmc_report_soon();
}

void
vmmc_native_sub(int dev, int path, uint64_t bytes)
{
	uint64_t cur;

	if (!native_ok(dev, path) || bytes == 0)
		return;
	/* Never below 0: a free the table did not see the allocation of
	 * (fork child, table full) decrements nothing. */
	cur = __atomic_load_n(&native_bytes[dev][path], __ATOMIC_RELAXED);
	while (!__atomic_compare_exchange_n(&native_bytes[dev][path], &cur,
	    cur > bytes ? cur - bytes : 0, false, __ATOMIC_RELAXED,
	    __ATOMIC_RELAXED))
		;
	vmmc_report_soon();
}

uint64_t
vmmc_native_get(int dev, int path)
{
	uint64_t sum = 0;
	int d;

	if (path < 0 || path >= VMMC_NATIVE_NPATHS)
		return 0;
	if (dev >= 0)
		return native_ok(dev, path) ? __atomic_load_n(
		    &native_bytes[dev][path], __ATOMIC_RELAXED) : 0;
	for (d = 0; d < VMMC_MAX_DEVICES; d++)
		sum += __atomic_load_n(&native_bytes[d][path],
		    __ATOMIC_RELAXED);
	return sum;
}

void
vmmc_native_forget(void)
{
	memset(native_bytes, 0, sizeof(native_bytes));
	memset(pooled_bytes, 0, sizeof(pooled_bytes));
}

uint64_t
vmmc_native_total(int dev)
{
	uint64_t sum = 0;
	int p;

	for (p = 0; p < VMMC_NATIVE_NPATHS; p++)
		sum += vmmc_native_get(dev, p);
	return sum;
}

/* ---- the application's own cuMemCreate, served from the pool ------------ */


void
vmmc_native_pooled_add(int dev, int64_t delta)
{
	if (dev < 0 || dev >= VMMC_MAX_DEVICES || delta == 0)
		return;
	__atomic_add_fetch(&pooled_bytes[dev], delta, __ATOMIC_RELAXED);
	vmmc_report_soon();
}

uint64_t
vmmc_native_pooled_get(int dev)
{
	int64_t sum = 0, v;
	int d;

	for (d = 0; d < VMMC_MAX_DEVICES; d++) {
		if (dev >= 0 && d != dev)
			continue;
		v = __atomic_load_n(&pooled_bytes[d], __ATOMIC_RELAXED);
		sum += v > 0 ? v : 0;
	}
	return (uint64_t)sum;
}
