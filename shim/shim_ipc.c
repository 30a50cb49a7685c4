/*
 * Legacy CUDA IPC hooks: cuIpcGetMemHandle, cuIpcOpenMemHandle (both ABIs),
 * cuIpcCloseMemHandle and the runtime's cudaIpc*MemHandle.
 *
 * Our memory is VMM memory, which the driver refuses to export this way;
 * the client (client/ipc.c) makes handles of it through vmmd instead.  A
 * pointer that is not ours, a handle without our magic and a pointer we did
 * not open go to the originals unchanged (native memory of the fallback
 * allocator keeps the driver's own path); event IPC is not hooked at all.
 * The runtime hooks serve our memory themselves (a runtime may not route
 * its IPC calls through the driver entry points we hook) and otherwise
 * call the real runtime, whose driver calls then meet the guard.
 */
#include "shim.h"

#include <stdint.h>
#include <string.h>

#include "vmmc_shim.h"

#define SHIM_CALL(real, err, ...)					\
	((real) != NULL ? (real)(__VA_ARGS__) : (err))

/* X(client code, CUresult, cudaError_t): the errors of these calls. */
#define SHIM_IPC_ERRORS(X)						\
	X(VMM_OK, CUDA_SUCCESS, cudaSuccess)				\
	X(VMM_EINVAL, CUDA_ERROR_INVALID_VALUE, cudaErrorInvalidValue)	\
	X(VMMC_EIPC_REFUSED, CUDA_ERROR_INVALID_HANDLE,			\
	    cudaErrorInvalidResourceHandle)				\
	X(VMMC_EIPC_SELF, CUDA_ERROR_INVALID_CONTEXT,			\
	    cudaErrorDeviceUninitialized)				\
	X(VMM_ENOMEM, CUDA_ERROR_OUT_OF_MEMORY, cudaErrorMemoryAllocation) \
	X(VMM_ENOCTX, CUDA_ERROR_INVALID_CONTEXT,			\
	    cudaErrorDeviceUninitialized)

/* Anything else (vmmd unreachable, a failed driver call) failed to map. */
static CUresult
shim_ipc_cu(int err)
{
#define SHIM_IPC_CU(v, c, r)	if (err == (v)) return (c);
	SHIM_IPC_ERRORS(SHIM_IPC_CU)
#undef SHIM_IPC_CU
	return CUDA_ERROR_MAP_FAILED;
}

static cudaError_t
shim_ipc_rt(int err)
{
#define SHIM_IPC_RT(v, c, r)	if (err == (v)) return (r);
	SHIM_IPC_ERRORS(SHIM_IPC_RT)
#undef SHIM_IPC_RT
	return cudaErrorMapBufferObjectFailed;
}

/* Enters a hook: false if re-entered or in MONITOR mode (the original
 * serves the call then). */
static bool
shim_ipc_enter(void)
{
	if (shim_depth > 0)
		return false;
	shim_depth++;
	if (vmmc_mode() == VMMC_MODE_MONITOR) {
		shim_depth--;
		return false;
	}
	return true;
}

static void
shim_ipc_leave(void)
{
	shim_depth--;
}

/* Whether this thread has a current context (the driver calls need one). */
static bool
shim_ipc_have_ctx(void)
{
	shim_pfn_cuCtxGetCurrent get = SHIM_REAL(cuCtxGetCurrent);
	CUcontext ctx = NULL;

	return get != NULL && get(&ctx) == CUDA_SUCCESS && ctx != NULL;
}

/* As the runtime would first: a current context, by cudaFree(NULL). */
static cudaError_t
shim_ipc_rt_context(void)
{
	shim_pfn_cudaFree rtfree = SHIM_REAL(cudaFree);

	if (shim_ipc_have_ctx())
		return cudaSuccess;
	return SHIM_CALL(rtfree, cudaErrorInitializationError, NULL);
}

/* ---- driver ------------------------------------------------------------- */

SHIM_EXPORT CUresult CUDAAPI
cuIpcGetMemHandle(CUipcMemHandle *pHandle, CUdeviceptr dptr)
{
	shim_pfn_cuIpcGetMemHandle real = SHIM_REAL(cuIpcGetMemHandle);
	CUresult r;
	int rc = VMM_ENOTOURS;

	if (!shim_ipc_enter())
		return SHIM_CALL(real, CUDA_ERROR_NOT_FOUND, pHandle, dptr);
	if (pHandle != NULL && dptr != 0 && shim_ipc_have_ctx())
		rc = vmmc_ipc_get((const void *)(uintptr_t)dptr, pHandle);
	r = rc != VMM_ENOTOURS ? shim_ipc_cu(rc) :
	    SHIM_CALL(real, CUDA_ERROR_NOT_FOUND, pHandle, dptr);
	shim_ipc_leave();
	return r;
}

/* Both ABIs of cuIpcOpenMemHandle; the flag is checked as the driver
 * documents it ("Must be specified as CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS"). */
static CUresult
shim_ipc_open(shim_pfn_cuIpcOpenMemHandle_v2 real, CUdeviceptr *pdptr,
    CUipcMemHandle handle, unsigned int Flags)
{
	CUresult r;
	void *p = NULL;
	int rc = VMM_ENOTOURS;

	if (!shim_ipc_enter())
		return SHIM_CALL(real, CUDA_ERROR_NOT_FOUND, pdptr, handle, Flags);
	if (pdptr != NULL && Flags == CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS &&
	    shim_ipc_have_ctx()) {
		rc = vmmc_ipc_open(handle.reserved, &p);
		if (rc == VMM_OK)
			*pdptr = (CUdeviceptr)(uintptr_t)p;
	}
	r = rc != VMM_ENOTOURS ? shim_ipc_cu(rc) :
	    SHIM_CALL(real, CUDA_ERROR_NOT_FOUND, pdptr, handle, Flags);
	shim_ipc_leave();
	return r;
}

SHIM_EXPORT CUresult CUDAAPI
cuIpcOpenMemHandle_v2(CUdeviceptr *pdptr, CUipcMemHandle handle,
    unsigned int Flags)
{
	return shim_ipc_open(SHIM_REAL(cuIpcOpenMemHandle_v2), pdptr, handle,
	    Flags);
}

SHIM_EXPORT CUresult CUDAAPI
cuIpcOpenMemHandle(CUdeviceptr *pdptr, CUipcMemHandle handle,
    unsigned int Flags)
{
	return shim_ipc_open(SHIM_REAL(cuIpcOpenMemHandle), pdptr, handle,
	    Flags);
}

SHIM_EXPORT CUresult CUDAAPI
cuIpcCloseMemHandle(CUdeviceptr dptr)
{
	shim_pfn_cuIpcCloseMemHandle real = SHIM_REAL(cuIpcCloseMemHandle);
	CUresult r;
	int rc = VMM_ENOTOURS;

	if (!shim_ipc_enter())
		return SHIM_CALL(real, CUDA_ERROR_NOT_FOUND, dptr);
	if (dptr != 0 && shim_ipc_have_ctx())
		rc = vmmc_ipc_close((void *)(uintptr_t)dptr);
	r = rc != VMM_ENOTOURS ? shim_ipc_cu(rc) :
	    SHIM_CALL(real, CUDA_ERROR_NOT_FOUND, dptr);
	shim_ipc_leave();
	return r;
}

/* ---- runtime ------------------------------------------------------------ */

SHIM_EXPORT cudaError_t CUDARTAPI
cudaIpcGetMemHandle(cudaIpcMemHandle_t *handle, void *devPtr)
{
	shim_pfn_cudaIpcGetMemHandle real = SHIM_REAL(cudaIpcGetMemHandle);
	cudaError_t r;
	int rc = VMM_ENOTOURS;

	if (!shim_ipc_enter())
		return SHIM_CALL(real, cudaErrorInitializationError, handle,
		    devPtr);
	if (handle != NULL && devPtr != NULL &&
	    shim_ipc_rt_context() == cudaSuccess)
		rc = vmmc_ipc_get(devPtr, handle);
	r = rc != VMM_ENOTOURS ? shim_ipc_rt(rc) :
	    SHIM_CALL(real, cudaErrorInitializationError, handle, devPtr);
	shim_ipc_leave();
	return r;
}

SHIM_EXPORT cudaError_t CUDARTAPI
cudaIpcOpenMemHandle(void **devPtr, cudaIpcMemHandle_t handle,
    unsigned int flags)
{
	shim_pfn_cudaIpcOpenMemHandle real = SHIM_REAL(cudaIpcOpenMemHandle);
	cudaError_t r;
	int rc = VMM_ENOTOURS;

	if (!shim_ipc_enter())
		return SHIM_CALL(real, cudaErrorInitializationError, devPtr,
		    handle, flags);
	if (devPtr != NULL && flags == cudaIpcMemLazyEnablePeerAccess &&
	    shim_ipc_rt_context() == cudaSuccess)
		rc = vmmc_ipc_open(handle.reserved, devPtr);
	r = rc != VMM_ENOTOURS ? shim_ipc_rt(rc) :
	    SHIM_CALL(real, cudaErrorInitializationError, devPtr, handle,
	    flags);
	shim_ipc_leave();
	return r;
}

SHIM_EXPORT cudaError_t CUDARTAPI
cudaIpcCloseMemHandle(void *devPtr)
{
	shim_pfn_cudaIpcCloseMemHandle real = SHIM_REAL(cudaIpcCloseMemHandle);
	cudaError_t r;
	int rc = VMM_ENOTOURS;

	if (!shim_ipc_enter())
		return SHIM_CALL(real, cudaErrorInitializationError, devPtr);
	if (devPtr != NULL && shim_ipc_rt_context() == cudaSuccess)
		rc = vmmc_ipc_close(devPtr);
	r = rc != VMM_ENOTOURS ? shim_ipc_rt(rc) :
	    SHIM_CALL(real, cudaErrorInitializationError, devPtr);
	shim_ipc_leave();
	return r;
}

/* The hidden aliases of these hooks (see shim.h). */
#define SHIM_ALIAS_DEF(name, fam)					\
	extern __typeof__(name) shim_hook_##name			\
	    __attribute__((alias(#name)));
SHIM_IPC_HOOKS(SHIM_ALIAS_DEF)
#undef SHIM_ALIAS_DEF
