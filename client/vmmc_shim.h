/*
 * What the shim (shim/) needs of the client library beyond its public API
 * (vmm_client.h): the mode, and whether a pointer is the library's.
 */
#ifndef VMMC_SHIM_H
#define VMMC_SHIM_H

#include <stdbool.h>
#include <stddef.h>

#include <cuda.h>

#include "vmm_client.h"

enum vmmc_mode {
	VMMC_MODE_VMM = 0,	/* allocate from vmmd */
	VMMC_MODE_MONITOR = 1,	/* pass through to CUDA, log ALLOC/FREE only */
};

/* VMM_MODE as read from the environment (the first call reads every
 * VMM_* setting; an invalid one ends the process with a message). */
enum vmmc_mode vmmc_mode(void);
/* Whether ptr is the start of a live allocation of this library (what
 * vmm_free accepts); lock-free for sub-allocated blocks. */
bool	vmmc_owns(const void *ptr);
/* Whether an allocation that failed with err (an unexpected driver error,
 * VMM_ECUDA, or fd exhaustion, VMM_EMFILE) goes to CUDA's own allocator
 * instead (VMM_FALLBACK=on); says so once.  vmmd unreachable and no
 * context are the shim's own cases. */
bool	vmmc_fallback(int err);
/* Whether ptr lies in address space this library reserved (live or not). */
bool	vmmc_in_va(const void *ptr);
/* vmm_malloc on device dev: the runtime's current device, which a lazily
 * binding runtime may not have made the driver's current context yet. */
int	vmmc_malloc_dev(int dev, void **dptr, size_t size);
/* The program enabled (on) or disabled peer access from device accessor's
 * context to device owner's: owner's mappings, existing and later, are made
 * accessible to accessor, or no longer (as VMM_PEER_ACCESS allows). */
void	vmmc_peer_access(int accessor, int owner, bool on);
/* Stream-ordered allocation and free (cudaMallocAsync, cudaFreeAsync and
 * the driver's): on stream s's device; memory freed on a stream is reused
 * once ordered after that free (an event), never through a device-wide
 * synchronization.  VMM_ENOCTX: the driver refused s (use the original);
 * VMM_ENOTOURS: not this library's pointer. */
int	vmmc_malloc_async(void **dptr, size_t size, CUstream s);
int	vmmc_free_async(void *dptr, CUstream s);

/*
 * Stream capture (capture.c).  The shim reports each capture that began
 * (stream: the handle, the per-thread default stream as
 * CU_STREAM_PER_THREAD; mode: its CUstreamCaptureMode) and each that ended
 * (vmmc_capture_ended: then the frees deferred meanwhile are done once none
 * is left).  While any is in progress the library makes no synchronizing
 * call and defers frees.
 */
void	vmmc_capture_begin(const void *stream, int mode);
void	vmmc_capture_ended(const void *stream);
bool	vmmc_capture_active(void);
/* Whether "potentially unsafe" calls (cudaMalloc, cudaFree, ...) are
 * prohibited on this thread, whose own mode is thread_mode (as
 * cuThreadExchangeStreamCaptureMode documents the three modes). */
bool	vmmc_capture_forbids(int thread_mode);

/*
 * Native memory (native.c): bytes the shim passed to CUDA's own allocators,
 * per device and path, reported to vmmd and shown by vmm_get_usage.  The
 * shim adds what an allocation got and subtracts the same at its free.
 */
enum vmmc_native_path {
	VMMC_NATIVE_FALLBACK = 0,	/* cudaMalloc/cuMemAlloc passed through */
	VMMC_NATIVE_CUMEMCREATE = 1,	/* the application's own cuMemCreate */
	VMMC_NATIVE_POOL = 2,		/* explicit memory pools */
	VMMC_NATIVE_MANAGED = 3,	/* cudaMallocManaged/cuMemAllocManaged */
	VMMC_NATIVE_NPATHS = 4
};
void	vmmc_native_add(int dev, int path, uint64_t bytes);
void	vmmc_native_sub(int dev, int path, uint64_t bytes);
/* The bytes of one path on device dev (dev < 0: every device). */
uint64_t vmmc_native_get(int dev, int path);
/* Every path's bytes on device dev (dev < 0: every device). */
uint64_t vmmc_native_total(int dev);
/* Forgets every count (fork child: the parent's memory is not its). */
void	vmmc_native_forget(void);
/* Not native: the application's own cuMemCreate served from the pool
 * (appvmm.c), per device.  These bytes are lent by vmmd (in its figures
 * for the session already); reported apart (Report.app_vmm_bytes) and
 * never in vmmc_native_total. */
void	vmmc_native_pooled_add(int dev, int64_t delta);
uint64_t vmmc_native_pooled_get(int dev);	/* dev < 0: every device */

/*
 * The application's own VMM served from the pool (appvmm.c, VMM_APP_VMM).
 * Each vmmc_app_* answers false for what is not its own (another handle or
 * mapping, a nested call, VMM_APP_VMM=native): the shim then calls the
 * driver.  When true, *res is the call's result.
 */
/* cuMemCreate: a chunk of exactly size from vmmd, imported, where the pool
 * can stand for prop (CUDA_ERROR_OUT_OF_MEMORY over quota or out of
 * memory, as the driver would answer).  vmmc_cumemcreate (client.c) is
 * the shim's entry: it sets the library up and starts the helper thread,
 * which gives such chunks back. */
bool	vmmc_cumemcreate(CUmemGenericAllocationHandle *handle, size_t size,
	    const CUmemAllocationProp *prop, unsigned long long flags,
	    CUresult *res);
bool	vmmc_app_create(CUmemGenericAllocationHandle *handle, size_t size,
	    const CUmemAllocationProp *prop, unsigned long long flags,
	    CUresult *res);
/* cuMemRelease of a pooled handle: the chunk goes back once no reference
 * and no mapping is left, after a sync covers the last unmap. */
bool	vmmc_app_release(CUmemGenericAllocationHandle h, CUresult *res);
/* After a cuMemRetainAllocationHandle that returned h. */
void	vmmc_app_retained(CUmemGenericAllocationHandle h);
/* After a cuMemMap that succeeded. */
void	vmmc_app_mapped(CUdeviceptr va, size_t size,
	    CUmemGenericAllocationHandle h);
/* cuMemUnmap of a range holding mappings of pooled handles. */
bool	vmmc_app_unmap(CUdeviceptr va, size_t size, CUresult *res);
/* What the application asked for; an export its handle type forbids is
 * CUDA_ERROR_NOT_PERMITTED. */
bool	vmmc_app_props(CUmemAllocationProp *prop,
	    CUmemGenericAllocationHandle h, CUresult *res);
bool	vmmc_app_export(void *shareable, CUmemGenericAllocationHandle h,
	    CUmemAllocationHandleType type, unsigned long long flags,
	    CUresult *res);

/* Legacy CUDA IPC of this library's memory (client/ipc.c).  Beyond the
 * VMM_E* codes: */
#define VMMC_EIPC_REFUSED	(-100)	/* the handle names nothing we may open */
#define VMMC_EIPC_SELF		(-101)	/* a handle of this very process */
/* The 64-byte handle (CU_IPC_HANDLE_SIZE) of the allocation whose base is
 * ptr; VMM_ENOTOURS if ptr is not this library's memory. */
int	vmmc_ipc_get(const void *ptr, void *handle);
/* Maps the memory a handle of ours names and returns its pointer (the same
 * one, with one more reference, if this process has it open already);
 * VMM_ENOTOURS if the handle is not one of this library's. */
int	vmmc_ipc_open(const void *handle, void **ptr);
/* Drops a reference taken by vmmc_ipc_open, unmapping at the last;
 * VMM_ENOTOURS if ptr is not memory it opened. */
int	vmmc_ipc_close(void *ptr);

#endif
