/*
 * Native memory, counted: what the shim passes to CUDA's own allocators in
 * VMM mode, so that vmmd and vmm_get_usage see every byte the process holds
 * on the GPU (README, "What vmmd sees").  Paths (vmmc_native_path):
 *   fallback     cudaMalloc/cuMemAlloc/pitch/async calls the shim passed to
 *                the original (no daemon, VMM_FALLBACK, degenerate cases);
 *                not stream-ordered allocations captured into a graph (the
 *                graph owns those)
 *   cumemcreate  the application's own cuMemCreate (device memory) that
 *                the pool does not serve (client/appvmm.c: VMM_APP_VMM=
 *                native, other handle types or flags, sizes not a multiple
 *                of vmmd's unit, vmmd unreachable), until the cuMemRelease
 *                of that handle
 *   pool         cuMemAllocFromPoolAsync/cudaMallocFromPoolAsync
 *   managed      cuMemAllocManaged/cudaMallocManaged
 * The application's own cuMemCreate that the pool serves is client/appvmm.c's:
 * the hooks of cuMemCreate, cuMemRelease, cuMemMap, cuMemUnmap,
 * cuMemRetainAllocationHandle, cuMemExportToShareableHandle and
 * cuMemGetAllocationPropertiesFromHandle ask it first (each answers "not
 * ours" for every other handle, mapping and nested call, and those pass
 * through).  Otherwise the hooks here pass every call through unchanged.
 * A bounded table maps
 * each pointer (or cuMemCreate handle) to (size, path, device), so a free
 * subtracts what its allocation added; when the table is full an
 * allocation is not counted (and its free subtracts nothing).
 */
#include "shim.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "vmmc_shim.h"

#define SHIM_NAT_BITS	12
#define SHIM_NAT_SLOTS	((size_t)1 << SHIM_NAT_BITS)
#define SHIM_NAT_MAX	(SHIM_NAT_SLOTS / 4 * 3)

/* Open addressing, linear probing; key 0 is an empty slot.  Handles and
 * pointers are kept apart by the handle flag. */
static struct shim_nat_slot {
	uint64_t	key;
	bool		handle;
	int		path, dev;
	size_t		size;
} shim_nat[SHIM_NAT_SLOTS];
static size_t		shim_nat_count;
static pthread_mutex_t	shim_nat_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t	shim_nat_once = PTHREAD_ONCE_INIT;

static void
shim_nat_prefork(void)
{
	pthread_mutex_lock(&shim_nat_lock);
}

static void
shim_nat_postfork(void)
{
	pthread_mutex_unlock(&shim_nat_lock);
}

/* The child holds none of the parent's GPU memory (nor may it use the
 * parent's CUDA): it starts with nothing counted. */
static void
shim_nat_child(void)
{
	memset(shim_nat, 0, sizeof(shim_nat));
	shim_nat_count = 0;
	vmmc_native_forget();
	pthread_mutex_unlock(&shim_nat_lock);
}

/* Registered before the first count, so every fork after one clears. */
static void
shim_nat_init(void)
{
	(void)pthread_atfork(shim_nat_prefork, shim_nat_postfork,
	    shim_nat_child);
}

static void
shim_nat_locked(void)
{
	pthread_once(&shim_nat_once, shim_nat_init);
	pthread_mutex_lock(&shim_nat_lock);
}

static size_t
shim_nat_home(uint64_t key, bool handle)
{
	return (size_t)(((key ^ (handle ? UINT64_C(0x5bd1e995) : 0)) *
	    UINT64_C(0x9e3779b97f4a7c15)) >> (64 - SHIM_NAT_BITS));
}

/* The slot holding (key, handle), or the empty slot where it would go. */
static size_t
shim_nat_find(uint64_t key, bool handle)
{
	size_t i = shim_nat_home(key, handle);

	while (shim_nat[i].key != 0 &&
	    (shim_nat[i].key != key || shim_nat[i].handle != handle))
		i = (i + 1) & (SHIM_NAT_SLOTS - 1);
	return i;
}

/* Removes slot i, shifting back the entries that probed past it. */
static void
shim_nat_remove(size_t i)
{
	size_t j = i, home;

	for (;;) {
		j = (j + 1) & (SHIM_NAT_SLOTS - 1);
		if (shim_nat[j].key == 0)
			break;
		home = shim_nat_home(shim_nat[j].key, shim_nat[j].handle);
		if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
			shim_nat[i] = shim_nat[j];
			i = j;
		}
	}
	shim_nat[i].key = 0;
	shim_nat_count--;
}

void
shim_native_record(uint64_t key, bool handle, size_t size, int path, int dev)
{
	struct shim_nat_slot stale = { 0 };
	bool counted = false;
	size_t i;

	if (key == 0 || size == 0 || dev < 0)
		return;
	shim_nat_locked();
	i = shim_nat_find(key, handle);
	if (shim_nat[i].key != 0) {
		/* The driver gave this pointer (handle) out again: the old
		 * allocation was freed by a call no hook saw. */
		stale = shim_nat[i];
		shim_nat[i] = (struct shim_nat_slot){ key, handle, path, dev,
		    size };
		counted = true;
	} else if (shim_nat_count < SHIM_NAT_MAX) {
		shim_nat_count++;
		shim_nat[i] = (struct shim_nat_slot){ key, handle, path, dev,
		    size };
		counted = true;
	}
	pthread_mutex_unlock(&shim_nat_lock);
	if (stale.key != 0)
		vmmc_native_sub(stale.dev, stale.path, stale.size);
	if (counted)
		vmmc_native_add(dev, path, size);
}

bool
shim_native_take(uint64_t key, bool handle, struct shim_native *out)
{
	bool found;
	size_t i;

	if (key == 0)
		return false;
	shim_nat_locked();
	i = shim_nat_find(key, handle);
	if ((found = shim_nat[i].key != 0)) {
		out->key = key;
		out->handle = handle;
		out->size = shim_nat[i].size;
		out->path = shim_nat[i].path;
		out->dev = shim_nat[i].dev;
		shim_nat_remove(i);
	}
	pthread_mutex_unlock(&shim_nat_lock);
	return found;
}

void
shim_native_done(const struct shim_native *n, bool freed)
{
	size_t i;

	if (freed) {
		vmmc_native_sub(n->dev, n->path, n->size);
		return;
	}
	/* The free failed: the allocation is still there. */
	shim_nat_locked();
	i = shim_nat_find(n->key, n->handle);
	if (shim_nat[i].key == 0 && shim_nat_count < SHIM_NAT_MAX) {
		shim_nat_count++;
		shim_nat[i] = (struct shim_nat_slot){ n->key, n->handle,
		    n->path, n->dev, n->size };
	} else if (shim_nat[i].key == 0)
		vmmc_native_sub(n->dev, n->path, n->size);
	pthread_mutex_unlock(&shim_nat_lock);
}

/* Whether a hook counts: VMM mode, not re-entered (a nested call is part
 * of one the outer hook counts). */
static bool
shim_nat_counts(void)
{
	return shim_depth == 0 && vmmc_mode() == VMMC_MODE_VMM;
}

/* ---- hooks: pass-through, counted ---------------------------------------- */

SHIM_EXPORT CUresult CUDAAPI
cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size,
    const CUmemAllocationProp *prop, unsigned long long flags)
{
	shim_pfn_cuMemCreate real = SHIM_REAL(cuMemCreate);
	bool count = shim_nat_counts();
	CUresult r;

	if (real == NULL)
		return CUDA_ERROR_NOT_FOUND;
	if (count) {
		bool served;

		/* A chunk of vmmd, where the pool can stand for it. */
		shim_depth++;
		served = vmmc_cumemcreate(handle, size, prop, flags, &r);
		shim_depth--;
		if (served)
			return r;
	}
	shim_depth++;
	r = real(handle, size, prop, flags);
	shim_depth--;
	/* Device memory only: host and NUMA locations are not the GPU's. */
	if (count && r == CUDA_SUCCESS && prop != NULL &&
	    prop->location.type == CU_MEM_LOCATION_TYPE_DEVICE)
		shim_native_record((uint64_t)*handle, true, size,
		    VMMC_NATIVE_CUMEMCREATE, prop->location.id);
	return r;
}

/* The client's own cuMemRelease calls reach this hook too: their handles
 * are not in the table and pass through uncounted. */
SHIM_EXPORT CUresult CUDAAPI
cuMemRelease(CUmemGenericAllocationHandle handle)
{
	shim_pfn_cuMemRelease real = SHIM_REAL(cuMemRelease);
	struct shim_native n;
	bool had;
	CUresult r;

	if (real == NULL)
		return CUDA_ERROR_NOT_FOUND;
	if (shim_depth == 0 && vmmc_app_release(handle, &r))
		return r;
	had = shim_depth == 0 && shim_native_take((uint64_t)handle, true, &n);
	r = real(handle);
	if (had)
		shim_native_done(&n, r == CUDA_SUCCESS);
	return r;
}

/* Mappings of handles the pool serves are counted (a released handle
 * stays alive while mapped: its chunk goes back after the last unmap). */
SHIM_EXPORT CUresult CUDAAPI
cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
    CUmemGenericAllocationHandle handle, unsigned long long flags)
{
	shim_pfn_cuMemMap real = SHIM_REAL(cuMemMap);
	CUresult r;

	if (real == NULL)
		return CUDA_ERROR_NOT_FOUND;
	r = real(ptr, size, offset, handle, flags);
	if (r == CUDA_SUCCESS && shim_depth == 0)
		vmmc_app_mapped(ptr, size, handle);
	return r;
}

SHIM_EXPORT CUresult CUDAAPI
cuMemUnmap(CUdeviceptr ptr, size_t size)
{
	shim_pfn_cuMemUnmap real = SHIM_REAL(cuMemUnmap);
	CUresult r;

	if (real == NULL)
		return CUDA_ERROR_NOT_FOUND;
	if (shim_depth == 0 && vmmc_app_unmap(ptr, size, &r))
		return r;
	return real(ptr, size);
}

/* A retain is one more reference the application must release. */
SHIM_EXPORT CUresult CUDAAPI
cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr)
{
	shim_pfn_cuMemRetainAllocationHandle real =
	    SHIM_REAL(cuMemRetainAllocationHandle);
	CUresult r;

	if (real == NULL)
		return CUDA_ERROR_NOT_FOUND;
	r = real(handle, addr);
	if (r == CUDA_SUCCESS && shim_depth == 0)
		vmmc_app_retained(*handle);
	return r;
}

SHIM_EXPORT CUresult CUDAAPI
cuMemExportToShareableHandle(void *shareableHandle,
    CUmemGenericAllocationHandle handle, CUmemAllocationHandleType handleType,
    unsigned long long flags)
{
	shim_pfn_cuMemExportToShareableHandle real =
	    SHIM_REAL(cuMemExportToShareableHandle);
	CUresult r;

	if (real == NULL)
		return CUDA_ERROR_NOT_FOUND;
	if (shim_depth == 0 && vmmc_app_export(shareableHandle, handle,
	    handleType, flags, &r))
		return r;
	return real(shareableHandle, handle, handleType, flags);
}

/* What the application asked for, not the pooled chunk's properties. */
SHIM_EXPORT CUresult CUDAAPI
cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp *prop,
    CUmemGenericAllocationHandle handle)
{
	shim_pfn_cuMemGetAllocationPropertiesFromHandle real =
	    SHIM_REAL(cuMemGetAllocationPropertiesFromHandle);
	CUresult r;

	if (real == NULL)
		return CUDA_ERROR_NOT_FOUND;
	if (shim_depth == 0 && vmmc_app_props(prop, handle, &r))
		return r;
	return real(prop, handle);
}

/* Pool and managed allocations: counted on the current context's device. */
static CUresult
shim_nat_cu_after(bool count, CUresult r, CUdeviceptr *dptr, size_t size,
    int path)
{
	if (count && r == CUDA_SUCCESS && dptr != NULL)
		shim_native_record((uint64_t)*dptr, false, size, path,
		    shim_ctx_device());
	return r;
}

static CUresult
shim_cu_pool_alloc(shim_pfn_cuMemAllocFromPoolAsync real, CUdeviceptr *dptr,
    size_t bytesize, CUmemoryPool pool, CUstream hStream, bool per_thread)
{
	bool count = shim_nat_counts() && !shim_capturing(hStream, per_thread);
	CUresult r;

	if (real == NULL)
		return CUDA_ERROR_NOT_FOUND;
	shim_depth++;
	r = real(dptr, bytesize, pool, hStream);
	shim_depth--;
	return shim_nat_cu_after(count, r, dptr, bytesize, VMMC_NATIVE_POOL);
}

SHIM_EXPORT CUresult CUDAAPI
cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
    CUstream hStream)
{
	return shim_cu_pool_alloc(SHIM_REAL(cuMemAllocFromPoolAsync), dptr,
	    bytesize, pool, hStream, false);
}

SHIM_EXPORT CUresult CUDAAPI
cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t bytesize,
    CUmemoryPool pool, CUstream hStream)
{
	return shim_cu_pool_alloc(SHIM_REAL(cuMemAllocFromPoolAsync_ptsz), dptr,
	    bytesize, pool, hStream, true);
}

SHIM_EXPORT CUresult CUDAAPI
cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
{
	shim_pfn_cuMemAllocManaged real = SHIM_REAL(cuMemAllocManaged);
	bool count = shim_nat_counts();
	CUresult r;

	if (real == NULL)
		return CUDA_ERROR_NOT_FOUND;
	shim_depth++;
	r = real(dptr, bytesize, flags);
	shim_depth--;
	return shim_nat_cu_after(count, r, dptr, bytesize,
	    VMMC_NATIVE_MANAGED);
}

/* Runtime forms: counted on the runtime's current device. */
static cudaError_t
shim_nat_rt_after(bool count, cudaError_t r, void **p, size_t size, int path)
{
	if (count && r == cudaSuccess && p != NULL && *p != NULL)
		shim_native_record((uint64_t)(uintptr_t)*p, false, size, path,
		    shim_rt_device());
	return r;
}

static cudaError_t
shim_rt_pool_alloc(shim_pfn_cudaMallocFromPoolAsync real, void **ptr,
    size_t size, cudaMemPool_t pool, cudaStream_t stream, bool per_thread)
{
	bool count = shim_nat_counts() && !shim_capturing(stream, per_thread);
	cudaError_t r;

	if (real == NULL)
		return cudaErrorInitializationError;
	shim_depth++;
	r = real(ptr, size, pool, stream);
	shim_depth--;
	return shim_nat_rt_after(count, r, ptr, size, VMMC_NATIVE_POOL);
}

SHIM_EXPORT cudaError_t CUDARTAPI
cudaMallocFromPoolAsync(void **ptr, size_t size, cudaMemPool_t memPool,
    cudaStream_t stream)
{
	return shim_rt_pool_alloc(SHIM_REAL(cudaMallocFromPoolAsync), ptr, size,
	    memPool, stream, false);
}

SHIM_EXPORT cudaError_t CUDARTAPI
cudaMallocFromPoolAsync_ptsz(void **ptr, size_t size, cudaMemPool_t memPool,
    cudaStream_t stream)
{
	return shim_rt_pool_alloc(SHIM_REAL(cudaMallocFromPoolAsync_ptsz), ptr,
	    size, memPool, stream, true);
}

SHIM_EXPORT cudaError_t CUDARTAPI
cudaMallocManaged(void **devPtr, size_t size, unsigned int flags)
{
	shim_pfn_cudaMallocManaged real = SHIM_REAL(cudaMallocManaged);
	bool count = shim_nat_counts();
	cudaError_t r;

	if (real == NULL)
		return cudaErrorInitializationError;
	shim_depth++;
	r = real(devPtr, size, flags);
	shim_depth--;
	return shim_nat_rt_after(count, r, devPtr, size, VMMC_NATIVE_MANAGED);
}

/* The hidden aliases the maps hand out (see shim.h). */
#define SHIM_ALIAS_DEF(name, fam)					\
	extern __typeof__(name) shim_hook_##name			\
	    __attribute__((alias(#name)));
SHIM_NATIVE_HOOKS(SHIM_ALIAS_DEF)
#undef SHIM_ALIAS_DEF
