/*
 * vmm_client.h — allocate GPU memory from the shared vmmd pool.
 *
 * Programs that link libvmm_client.so call these directly; unmodified CUDA
 * programs get the same through LD_PRELOAD (the shim maps cudaMalloc,
 * cuMemAlloc and friends onto them).  Every function is thread-safe and
 * returns 0 or a negative VMM_E* code.  The library ends the process in one
 * case only: when it first reads its settings (vmm_init, or the first call
 * that needs them), an invalid VMM_* variable, or a VMM_LOG_FILE it cannot
 * open, is reported on stderr in one line naming it, and the process exits
 * with status 1.
 *
 * Device memory comes from the device of the calling thread's current CUDA
 * context (as cudaMalloc's does); the caller must have one.
 *
 * Reuse guarantee: memory given back by vmm_free() is not handed out again,
 * nor unmapped, before a cuCtxSynchronize() that started after the free has
 * completed, so GPU work issued before the free never sees it reused.  The
 * library synchronizes lazily, once per batch of reuses, not on every free.
 */
#ifndef VMM_CLIENT_H
#define VMM_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(VMM_CLIENT_BUILD)
#define VMM_API __attribute__((visibility("default")))
#else
#define VMM_API
#endif

enum vmm_error {
	VMM_OK = 0,
	VMM_EINVAL = -1,	/* bad argument */
	VMM_ENOMEM = -2,	/* out of GPU memory (after recovery) */
	VMM_ENODAEMON = -3,	/* vmmd unreachable */
	VMM_ECUDA = -4,		/* a CUDA driver call failed */
	VMM_ENOTOURS = -5,	/* pointer not allocated by this library */
	VMM_EQUOTA = -6,	/* over this process's quota */
	VMM_ENOCTX = -7,	/* no current CUDA context */
	VMM_EPROTO = -8,	/* vmmd answered something unexpected */
	VMM_ENOSYS = -9,	/* not available in this mode */
	VMM_ETIMEDOUT = -10,	/* vmmd did not answer in time (it may be
				   stalled; the connection is kept) */
	VMM_EMFILE = -11,	/* out of file descriptors (RLIMIT_NOFILE):
				   granted chunks could not be received or
				   imported, and were given back */
};

/* This process's figures, as also reported to vmmd. */
struct vmm_usage {
	uint64_t	in_use_bytes;	/* requested by live allocations */
	uint64_t	mapped_bytes;	/* physical memory backing them */
	uint64_t	cached_bytes;	/* physical memory kept for reuse */
	uint64_t	peak_in_use_bytes;
	uint64_t	allocs, frees;
	uint64_t	daemon_calls;	/* round trips to vmmd */
	uint64_t	reserved_va_bytes;
	uint64_t	syncs;		/* lazy synchronizations */
	/* Device memory outside the pool: calls the library passed to CUDA's
	 * own allocators (through the preload shim), counted only. */
	uint64_t	native_fallback_bytes;	/* cudaMalloc/cuMemAlloc */
	uint64_t	native_cumemcreate_bytes; /* own cuMemCreate */
	uint64_t	native_pool_bytes;	/* explicit memory pools */
	uint64_t	native_managed_bytes;	/* managed memory */
	/* Pooled, not native: the application's own cuMemCreate handles
	 * served by chunks of vmmd (VMM_APP_VMM=pool), until given back. */
	uint64_t	app_vmm_bytes;
};

/* Reads the settings (VMM_* environment) and prepares; connecting to vmmd
 * happens lazily on first use.  Optional: every call initialises. */
VMM_API int	vmm_init(void);
/* Gives every cached chunk back and closes the connections.  Live
 * allocations stay mapped and usable; later calls re-initialise. */
VMM_API void	vmm_shutdown(void);

/* Allocates size bytes (size > 0) of device memory. */
VMM_API int	vmm_malloc(void **dptr, size_t size);
/* Frees memory from vmm_malloc/vmm_realloc.  NULL is a no-op. */
VMM_API int	vmm_free(void *dptr);
/* Resizes keeping the contents up to min(old, new) bytes.  Large
 * allocations grow in place by mapping more chunks after them, or move by
 * remapping the same chunks into a new range (no copy); only sub-allocated
 * blocks are copied.  *dptr may change; on error it is left valid. */
VMM_API int	vmm_realloc(void **dptr, size_t size);
/* The allocation containing ptr: its base and size. */
VMM_API int	vmm_get_range(const void *ptr, void **base, size_t *size);
/* This client's view of device memory: free = what it may still get (its
 * quota and what the GPU really has free), total = quota or device size. */
VMM_API int	vmm_mem_get_info(size_t *free_bytes, size_t *total_bytes);
VMM_API int	vmm_get_usage(struct vmm_usage *u);
/* Gives every cached (freed, not in use) chunk back to vmmd now, and
 * returns once vmmd has taken them: other processes can have them then.
 * (Other give-backs, such as idle return or a shrinking vmm_realloc, do not
 * wait for vmmd's answer.) */
VMM_API int	vmm_flush(void);
/* A message for a VMM_E* code. */
VMM_API const char *vmm_strerror(int err);

/*
 * PyTorch's CUDAPluggableAllocator entry points:
 *   torch.cuda.memory.change_current_allocator(
 *       torch.cuda.memory.CUDAPluggableAllocator(
 *           "libvmm_client.so", "vmm_torch_malloc", "vmm_torch_free"))
 * (python/vmm: vmm.use_in_torch()).  Stream-ordered, as cudaMallocAsync:
 * memory comes from the stream's device (device when the stream has no
 * context of its own); a free is ordered on its stream (an event), so the
 * same stream may reuse it at once and another only once the GPU is past
 * the free.  stream is a cudaStream_t.  NULL when no memory can be had
 * (PyTorch then reports out of memory) or size <= 0.
 */
VMM_API void	*vmm_torch_malloc(ssize_t size, int device, void *stream);
VMM_API void	vmm_torch_free(void *ptr, ssize_t size, int device, void *stream);

#ifdef __cplusplus
}
#endif

#endif
