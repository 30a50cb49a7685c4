/*
 * shim internals: one header, a section per file.
 *
 *   shim_sym.c      the hook list made tables: real symbols (resolved once),
 *                   hook <-> real maps, the dlsym interposer
 *   shim_hooks.c    the hooked driver and runtime functions
 *   shim_pointer.c  pointer attributes: an allocation's range, not the
 *                   reservation's
 *   shim_monitor.c  MONITOR mode: the pointer -> size table and its log lines
 *   shim_ipc.c      legacy CUDA IPC (cuIpc*MemHandle, cudaIpc*MemHandle)
 *
 * cuda.h and cuda_runtime_api.h are included with __CUDA_API_VERSION_INTERNAL
 * so that every ABI name (cuMemAlloc_v2, cuMemAllocAsync_ptsz,
 * cudaMallocAsync_ptsz, the 4-argument cuGetProcAddress, ...) is declared
 * literally instead of being a macro: the hooks are defined under those names
 * and the compiler checks each definition against the toolkit's declaration.
 */
#ifndef VMM_SHIM_H
#define VMM_SHIM_H

#ifndef __CUDA_API_VERSION_INTERNAL
#define __CUDA_API_VERSION_INTERNAL 1
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda.h>

#include <cuda_runtime_api.h>

/* What the shim exports; everything else in libvmm_client.so is hidden. */
#define SHIM_EXPORT	__attribute__((visibility("default")))
#define SHIM_HIDDEN	__attribute__((visibility("hidden")))

/* ---- shim_sym.c ------------------------------------------------------------ */

/* Which library a symbol comes from. */
#define SHIM_DRV	0	/* libcuda: also handed out by cuGetProcAddress/dlsym */
#define SHIM_RT		1	/* libcudart */

/*
 * The hooked functions, once: X(exported ABI name, family).  This list makes
 * the typedefs, the real-symbol table, the hidden aliases of the hooks and the
 * ABI name -> hook map that the cuGetProcAddress and dlsym hooks use.  The
 * signatures are the toolkit's (typedefs are __typeof__ the declarations).
 * Adding a hook: add it here and define it in shim_hooks.c; the export test
 * (tests/shim/check_exports.sh) lists it too.
 */
#define SHIM_HOOKS(X)	SHIM_HOOKS_MAIN(X) SHIM_HOOKS_POINTER(X) SHIM_IPC_HOOKS(X) \
	SHIM_NATIVE_HOOKS(X)

/* Defined in shim_hooks.c. */
#define SHIM_HOOKS_MAIN(X)						\
	X(cuMemAlloc_v2, SHIM_DRV)					\
	X(cuMemFree_v2, SHIM_DRV)					\
	X(cuMemAllocPitch_v2, SHIM_DRV)					\
	X(cuMemGetInfo_v2, SHIM_DRV)					\
	X(cuMemAllocAsync, SHIM_DRV)					\
	X(cuMemAllocAsync_ptsz, SHIM_DRV)				\
	X(cuMemFreeAsync, SHIM_DRV)					\
	X(cuMemFreeAsync_ptsz, SHIM_DRV)				\
	X(cuMemGetAddressRange_v2, SHIM_DRV)				\
	X(cuGetProcAddress, SHIM_DRV)					\
	X(cuGetProcAddress_v2, SHIM_DRV)				\
	X(cuCtxEnablePeerAccess, SHIM_DRV)				\
	X(cuCtxDisablePeerAccess, SHIM_DRV)				\
	X(cudaMalloc, SHIM_RT)						\
	X(cudaFree, SHIM_RT)						\
	X(cudaMallocAsync, SHIM_RT)					\
	X(cudaMallocAsync_ptsz, SHIM_RT)				\
	X(cudaFreeAsync, SHIM_RT)					\
	X(cudaFreeAsync_ptsz, SHIM_RT)					\
	X(cudaMallocPitch, SHIM_RT)					\
	X(cudaMemGetInfo, SHIM_RT)					\
	X(cudaDeviceEnablePeerAccess, SHIM_RT)				\
	X(cudaDeviceDisablePeerAccess, SHIM_RT)				\
	X(cuStreamBeginCapture, SHIM_DRV)				\
	X(cuStreamBeginCapture_ptsz, SHIM_DRV)				\
	X(cuStreamBeginCapture_v2, SHIM_DRV)				\
	X(cuStreamBeginCapture_v2_ptsz, SHIM_DRV)			\
	X(cuStreamEndCapture, SHIM_DRV)					\
	X(cuStreamEndCapture_ptsz, SHIM_DRV)				\
	X(cudaStreamBeginCapture, SHIM_RT)				\
	X(cudaStreamBeginCapture_ptsz, SHIM_RT)				\
	X(cudaStreamEndCapture, SHIM_RT)				\
	X(cudaStreamEndCapture_ptsz, SHIM_RT)

/* Defined in shim_ipc.c: legacy CUDA IPC of our memory. */
#define SHIM_IPC_HOOKS(X)						\
	X(cuIpcGetMemHandle, SHIM_DRV)					\
	X(cuIpcOpenMemHandle, SHIM_DRV)					\
	X(cuIpcOpenMemHandle_v2, SHIM_DRV)				\
	X(cuIpcCloseMemHandle, SHIM_DRV)				\
	X(cudaIpcGetMemHandle, SHIM_RT)					\
	X(cudaIpcOpenMemHandle, SHIM_RT)				\
	X(cudaIpcCloseMemHandle, SHIM_RT)

/* Defined in shim_native.c: passed through, counted as native memory;
 * the application's own cuMemCreate served from the pool where it can be
 * (client/appvmm.c), with the calls on its handles and mappings. */
#define SHIM_NATIVE_HOOKS(X)						\
	X(cuMemCreate, SHIM_DRV)					\
	X(cuMemRelease, SHIM_DRV)					\
	X(cuMemMap, SHIM_DRV)						\
	X(cuMemUnmap, SHIM_DRV)						\
	X(cuMemRetainAllocationHandle, SHIM_DRV)			\
	X(cuMemExportToShareableHandle, SHIM_DRV)			\
	X(cuMemGetAllocationPropertiesFromHandle, SHIM_DRV)		\
	X(cuMemAllocFromPoolAsync, SHIM_DRV)				\
	X(cuMemAllocFromPoolAsync_ptsz, SHIM_DRV)			\
	X(cuMemAllocManaged, SHIM_DRV)					\
	X(cudaMallocFromPoolAsync, SHIM_RT)				\
	X(cudaMallocFromPoolAsync_ptsz, SHIM_RT)			\
	X(cudaMallocManaged, SHIM_RT)

/* Defined in shim_pointer.c. */
#define SHIM_HOOKS_POINTER(X)						\
	X(cuPointerGetAttribute, SHIM_DRV)				\
	X(cuPointerGetAttributes, SHIM_DRV)

/* Driver functions the hooks call without hooking them. */
#define SHIM_CALLS(X)							\
	X(cuCtxGetCurrent, SHIM_DRV)					\
	X(cuCtxSetCurrent, SHIM_DRV)					\
	X(cuCtxGetDevice, SHIM_DRV)					\
	X(cuCtxGetDevice_v2, SHIM_DRV)					\
	X(cuStreamIsCapturing, SHIM_DRV)				\
	X(cudaGetDevice, SHIM_RT)					\
	X(cuThreadExchangeStreamCaptureMode, SHIM_DRV)

/* Index of every symbol in the real table: the hooks first. */
enum shim_sym {
#define SHIM_ENUM(name, fam)	SHIM_##name,
	SHIM_HOOKS(SHIM_ENUM)
	SHIM_CALLS(SHIM_ENUM)
#undef SHIM_ENUM
	SHIM_NSYMS
};
#define SHIM_PLUS1(name, fam)	+ 1
enum { SHIM_NHOOKS = 0 SHIM_HOOKS(SHIM_PLUS1) };

/* shim_pfn_<name>: pointer to the real function, exact signature. */
#define SHIM_TYPEDEF(name, fam)	typedef __typeof__(&name) shim_pfn_##name;
SHIM_HOOKS(SHIM_TYPEDEF)
SHIM_CALLS(SHIM_TYPEDEF)
#undef SHIM_TYPEDEF

/* shim_hook_<name>: hidden alias of each hook (defined in shim_hooks.c), so
 * that the maps hand out this library's hook even if another object defines
 * the same name earlier in the lookup order. */
#define SHIM_ALIAS_DECL(name, fam)					\
	extern __typeof__(name) shim_hook_##name SHIM_HIDDEN;
SHIM_HOOKS(SHIM_ALIAS_DECL)
#undef SHIM_ALIAS_DECL

/* The real function of symbol i, resolved on first use (dlsym RTLD_NEXT);
 * NULL if it does not exist.  A runtime symbol not found yet is looked up
 * again (libcudart may be loaded later, or RTLD_LOCAL). */
void	*shim_real(enum shim_sym i) SHIM_HIDDEN;
/* Typed shorthand: the real <name>, or NULL. */
#define SHIM_REAL(name)	((shim_pfn_##name)shim_real(SHIM_##name))

/* If fn is the real address of a hooked driver ABI symbol, or what the
 * driver's cuGetProcAddress answers for exactly that ABI (an internal entry
 * point may differ from the exported symbol), our hook for that same
 * symbol; otherwise fn unchanged.  Called from the cuGetProcAddress hooks
 * only (the first call asks the driver for each hooked ABI once). */
void	*shim_map_driver(void *fn) SHIM_HIDDEN;

/* ---- shim_hooks.c ---------------------------------------------------------- */

/* The per-thread recursion guard: > 0 while a hook runs on this thread; a
 * hook entered then (from the client, or from the runtime that a hook called)
 * calls the original. */
extern _Thread_local int shim_depth SHIM_HIDDEN __attribute__((tls_model("initial-exec")))
    __attribute__((tls_model("initial-exec")));

/* The current context's device, or -1 (no context). */
int	shim_ctx_device(void) SHIM_HIDDEN;
/* The runtime's current device (cudaGetDevice), or -1. */
int	shim_rt_device(void) SHIM_HIDDEN;
/* Whether hStream is being captured into a graph (unknown: no). */
bool	shim_capturing(CUstream hStream, bool per_thread) SHIM_HIDDEN;

/* ---- shim_native.c --------------------------------------------------------- */

/* One native allocation: a device pointer, or a cuMemCreate handle. */
struct shim_native {
	uint64_t	key;
	bool		handle;
	size_t		size;
	int		path, dev;	/* vmmc_native_path, device ordinal */
};
/* Counts a native allocation that succeeded (VMM mode). */
void	shim_native_record(uint64_t key, bool handle, size_t size, int path,
	    int dev) SHIM_HIDDEN;
/* Takes key out of the table before its free; false if not counted. */
bool	shim_native_take(uint64_t key, bool handle, struct shim_native *out)
	    SHIM_HIDDEN;
/* After the free of what shim_native_take returned: subtracts it if freed,
 * else puts it back. */
void	shim_native_done(const struct shim_native *n, bool freed) SHIM_HIDDEN;

/* ---- shim_monitor.c -------------------------------------------------------- */

/* Whether MONITOR mode logs (INFO enabled); the table is kept only then. */
bool	shim_monitor_on(void) SHIM_HIDDEN;
/* Records and logs an allocation that succeeded. */
void	shim_monitor_alloc(CUdeviceptr ptr, size_t size) SHIM_HIDDEN;
/* Looks ptr up (and forgets it) before it is freed; the size, 0 if unknown. */
size_t	shim_monitor_take(CUdeviceptr ptr) SHIM_HIDDEN;
/* Logs a free that succeeded. */
void	shim_monitor_free(CUdeviceptr ptr, size_t size) SHIM_HIDDEN;
/* Puts back what shim_monitor_take removed, if the free failed. */
void	shim_monitor_restore(CUdeviceptr ptr, size_t size) SHIM_HIDDEN;

#endif
