/*
 * cuemu cudart: the emulated CUDA runtime (libcudart.so.13) that test programs
 * link against.  It implements the runtime calls the tests use on top of the
 * driver API and, like the real runtime, reaches the driver only through the
 * function pointers cuGetProcAddress hands out: libcuda.so.1 is dlopen'd at
 * first use, never linked, so a preloaded shim that hooks cuGetProcAddress
 * sees every lookup.  Lookups are by base name with the cuda.h version, so
 * the driver picks the ABI version (cuMemAlloc -> cuMemAlloc_v2, ...).
 *
 * Choices where the documentation leaves room (each as close to the real
 * runtime as known, never looser):
 * - A driver function that cannot be resolved makes the calls that need it
 *   return cudaErrorInitializationError; a libcuda.so.1 that cannot be loaded
 *   (or lacks cuGetProcAddress_v2) gives cudaErrorInsufficientDriver, as the
 *   real runtime does without a driver.
 * - cuInit's result is sticky for the process, as in the real runtime.
 * - The current device is per thread (default 0).  Its primary context is
 *   retained once per process and made current on a thread that has none.
 * - cudaMallocPitch passes ElementSizeBytes = 16: the runtime does not know
 *   the element type, and 16 (the largest the driver accepts) gives a pitch
 *   aligned for every access size, including 16-byte vector types.
 * - cudaMalloc and cudaMallocAsync with size 0 give NULL and cudaSuccess
 *   without a driver call (applications rely on it); cudaMallocPitch passes
 *   zero sizes on to the driver, and cudaFreeAsync(NULL) too: both are
 *   undocumented, so the driver decides.
 * - cudaMemcpy* and cudaMemset with a count of 0 succeed without a driver
 *   call (after validating the copy kind and initialising).
 * - cudaErrorNotReady is a status, not an error: it is not recorded as the
 *   thread's last error.
 * - CUEMU_RUNTIME_LAZY_BIND=1 makes cudaSetDevice bind lazily, as the CUDA
 *   11 runtime did: it records the device, and the driver's current context
 *   changes only at the thread's next call that needs a context.  Until
 *   then cudaGetDevice answers the new device while the driver's current
 *   context is still the old one (or none).  Any other value than 0 or 1:
 *   initialisation fails (cudaErrorInitializationError) after one line on
 *   stderr.
 * - cudaDeviceEnablePeerAccess/DisablePeerAccess act from the current
 *   device's primary context on the peer device's (retained on first use).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda.h>
#include <cudaTypedefs.h>

/* Every runtime function this file defines is exported; nothing else is. */
#pragma GCC visibility push(default)
#include <cuda_runtime_api.h>
#pragma GCC visibility pop

#define RT_DRIVER_LIB		"libcuda.so.1"
#define RT_MAX_DEVICES		64
#define RT_PITCH_ELEMENT_SIZE	16
/* cudaPointerAttributes.device for memory CUDA does not know (CUDA >= 11). */
#define RT_UNREGISTERED_DEVICE	(-2)

/*
 * The driver functions the runtime uses: base name (what it asks
 * cuGetProcAddress for) and the PFN type cudaTypedefs.h gives for the version
 * that name resolves to at CUDA_VERSION.  This list generates the table.
 * It is resolved in this order (cudart_tests/test_getproc.c fails the 11th
 * lookup, cuMemAlloc).
 */
#define RT_DRIVER_FUNCS(X)						\
	X(cuInit,			PFN_cuInit_v2000)		\
	X(cuDriverGetVersion,		PFN_cuDriverGetVersion_v2020)	\
	X(cuDeviceGet,			PFN_cuDeviceGet_v2000)		\
	X(cuDeviceGetCount,		PFN_cuDeviceGetCount_v2000)	\
	X(cuDeviceGetAttribute,		PFN_cuDeviceGetAttribute_v2000)	\
	X(cuDevicePrimaryCtxRetain,	PFN_cuDevicePrimaryCtxRetain_v7000) \
	X(cuCtxGetCurrent,		PFN_cuCtxGetCurrent_v4000)	\
	X(cuCtxSetCurrent,		PFN_cuCtxSetCurrent_v4000)	\
	X(cuCtxSynchronize,		PFN_cuCtxSynchronize_v13000)	\
	X(cuMemGetInfo,			PFN_cuMemGetInfo_v3020)		\
	X(cuMemAlloc,			PFN_cuMemAlloc_v3020)		\
	X(cuMemAllocPitch,		PFN_cuMemAllocPitch_v3020)	\
	X(cuMemFree,			PFN_cuMemFree_v3020)		\
	X(cuMemAllocAsync,		PFN_cuMemAllocAsync_v11020)	\
	X(cuMemFreeAsync,		PFN_cuMemFreeAsync_v11020)	\
	X(cuMemcpy,			PFN_cuMemcpy_v4000)		\
	X(cuMemcpyHtoD,			PFN_cuMemcpyHtoD_v3020)		\
	X(cuMemcpyDtoH,			PFN_cuMemcpyDtoH_v3020)		\
	X(cuMemcpyDtoD,			PFN_cuMemcpyDtoD_v3020)		\
	X(cuMemcpyAsync,		PFN_cuMemcpyAsync_v4000)	\
	X(cuMemsetD8,			PFN_cuMemsetD8_v3020)		\
	X(cuPointerGetAttribute,	PFN_cuPointerGetAttribute_v4000) \
	X(cuStreamCreate,		PFN_cuStreamCreate_v2000)	\
	X(cuStreamDestroy,		PFN_cuStreamDestroy_v4000)	\
	X(cuStreamSynchronize,		PFN_cuStreamSynchronize_v2000)	\
	X(cuStreamQuery,		PFN_cuStreamQuery_v2000)	\
	X(cuEventCreate,		PFN_cuEventCreate_v2000)	\
	X(cuEventRecord,		PFN_cuEventRecord_v2000)	\
	X(cuEventSynchronize,		PFN_cuEventSynchronize_v2000)	\
	X(cuEventQuery,			PFN_cuEventQuery_v2000)		\
	X(cuStreamWaitEvent,		PFN_cuStreamWaitEvent_v3020)	\
	X(cuEventDestroy,		PFN_cuEventDestroy_v4000)	\
	X(cuDeviceCanAccessPeer,	PFN_cuDeviceCanAccessPeer_v4000) \
	X(cuCtxEnablePeerAccess,	PFN_cuCtxEnablePeerAccess_v4000) \
	X(cuCtxDisablePeerAccess,	PFN_cuCtxDisablePeerAccess_v4000) \
	X(cuStreamBeginCapture,		PFN_cuStreamBeginCapture_v10010) \
	X(cuStreamEndCapture,		PFN_cuStreamEndCapture_v10000)	\
	X(cuStreamIsCapturing,		PFN_cuStreamIsCapturing_v10000)	\
	X(cuStreamGetCaptureInfo,	PFN_cuStreamGetCaptureInfo_v12030) \
	X(cuThreadExchangeStreamCaptureMode,				\
	    PFN_cuThreadExchangeStreamCaptureMode_v10010)		\
	X(cuGraphInstantiateWithFlags,	PFN_cuGraphInstantiateWithFlags_v11040) \
	X(cuGraphLaunch,		PFN_cuGraphLaunch_v10000)	\
	X(cuGraphDestroy,		PFN_cuGraphDestroy_v10000)	\
	X(cuGraphExecDestroy,		PFN_cuGraphExecDestroy_v10000)	\
	X(cuIpcGetMemHandle,		PFN_cuIpcGetMemHandle_v4010)	\
	X(cuIpcOpenMemHandle,		PFN_cuIpcOpenMemHandle_v11000)	\
	X(cuIpcCloseMemHandle,		PFN_cuIpcCloseMemHandle_v4010)	\
	X(cuMemAllocManaged,		PFN_cuMemAllocManaged_v6000)	\
	X(cuMemPoolCreate,		PFN_cuMemPoolCreate_v11020)	\
	X(cuMemPoolDestroy,		PFN_cuMemPoolDestroy_v11020)	\
	X(cuMemAllocFromPoolAsync,	PFN_cuMemAllocFromPoolAsync_v11020)

/* Members are fn_<base name>: token pasting keeps cuda.h's
 * "#define cuMemAlloc cuMemAlloc_v2" from renaming them.  NULL: unresolved. */
static struct {
#define RT_FIELD(name, type)	type fn_##name;
	RT_DRIVER_FUNCS(RT_FIELD)
#undef RT_FIELD
} rt_drv;

/* Calls a driver function and maps its result; an unresolved one is never
 * called and gives cudaErrorInitializationError.  (The member is pasted here,
 * not through another macro, so that name is never macro-expanded.) */
#define RT_CALL(name, ...)	RT_FN_CALL(fn_##name, __VA_ARGS__)
#define RT_FN_CALL(fn, ...)						\
	(rt_drv.fn != NULL ? rt_map(rt_drv.fn(__VA_ARGS__)) :		\
	    cudaErrorInitializationError)

/*
 * Runtime errors: code, the driver result that maps to it (RT_NO_CU if none)
 * and the description cudaGetErrorString returns.  A CUresult not listed
 * maps to cudaErrorUnknown; a code not listed is "unrecognized error code".
 */
#define RT_NO_CU	(-1)
#define RT_ERRORS(X)							\
	X(cudaSuccess, CUDA_SUCCESS, "no error")			\
	X(cudaErrorInvalidValue, CUDA_ERROR_INVALID_VALUE, "invalid argument") \
	X(cudaErrorMemoryAllocation, CUDA_ERROR_OUT_OF_MEMORY,		\
	    "out of memory")						\
	X(cudaErrorInitializationError, CUDA_ERROR_NOT_INITIALIZED,	\
	    "initialization error")					\
	X(cudaErrorCudartUnloading, CUDA_ERROR_DEINITIALIZED,		\
	    "driver shutting down")					\
	X(cudaErrorProfilerDisabled, CUDA_ERROR_PROFILER_DISABLED,	\
	    "profiler disabled while using external profiling tool")	\
	X(cudaErrorInvalidConfiguration, RT_NO_CU,			\
	    "invalid configuration argument")				\
	X(cudaErrorInvalidPitchValue, RT_NO_CU, "invalid pitch argument") \
	X(cudaErrorInvalidSymbol, RT_NO_CU, "invalid device symbol")	\
	X(cudaErrorInvalidHostPointer, RT_NO_CU, "invalid host pointer") \
	X(cudaErrorInvalidDevicePointer, RT_NO_CU, "invalid device pointer") \
	X(cudaErrorInvalidMemcpyDirection, RT_NO_CU,			\
	    "invalid copy direction for memcpy")			\
	X(cudaErrorStubLibrary, CUDA_ERROR_STUB_LIBRARY,		\
	    "CUDA driver is a stub library")				\
	X(cudaErrorInsufficientDriver, RT_NO_CU,			\
	    "CUDA driver version is insufficient for CUDA runtime version") \
	X(cudaErrorCallRequiresNewerDriver,				\
	    CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER,			\
	    "API call is not supported in the installed CUDA driver")	\
	X(cudaErrorDevicesUnavailable, CUDA_ERROR_DEVICE_UNAVAILABLE,	\
	    "CUDA-capable device(s) is/are busy or unavailable")	\
	X(cudaErrorNoDevice, CUDA_ERROR_NO_DEVICE,			\
	    "no CUDA-capable device is detected")			\
	X(cudaErrorInvalidDevice, CUDA_ERROR_INVALID_DEVICE,		\
	    "invalid device ordinal")					\
	X(cudaErrorDeviceNotLicensed, CUDA_ERROR_DEVICE_NOT_LICENSED,	\
	    "device doesn't have valid Grid license")			\
	X(cudaErrorStartupFailure, RT_NO_CU,				\
	    "startup failure in cuda runtime")				\
	X(cudaErrorInvalidKernelImage, CUDA_ERROR_INVALID_IMAGE,	\
	    "device kernel image is invalid")				\
	X(cudaErrorDeviceUninitialized, CUDA_ERROR_INVALID_CONTEXT,	\
	    "invalid device context")					\
	X(cudaErrorMapBufferObjectFailed, CUDA_ERROR_MAP_FAILED,	\
	    "mapping of buffer object failed")				\
	X(cudaErrorUnmapBufferObjectFailed, CUDA_ERROR_UNMAP_FAILED,	\
	    "unmapping of buffer object failed")			\
	X(cudaErrorArrayIsMapped, CUDA_ERROR_ARRAY_IS_MAPPED,		\
	    "array is mapped")						\
	X(cudaErrorAlreadyMapped, CUDA_ERROR_ALREADY_MAPPED,		\
	    "resource already mapped")					\
	X(cudaErrorNoKernelImageForDevice, CUDA_ERROR_NO_BINARY_FOR_GPU, \
	    "no kernel image is available for execution on the device")	\
	X(cudaErrorAlreadyAcquired, CUDA_ERROR_ALREADY_ACQUIRED,	\
	    "resource already acquired")				\
	X(cudaErrorNotMapped, CUDA_ERROR_NOT_MAPPED, "resource not mapped") \
	X(cudaErrorNotMappedAsArray, CUDA_ERROR_NOT_MAPPED_AS_ARRAY,	\
	    "resource not mapped as array")				\
	X(cudaErrorNotMappedAsPointer, CUDA_ERROR_NOT_MAPPED_AS_POINTER, \
	    "resource not mapped as pointer")				\
	X(cudaErrorECCUncorrectable, CUDA_ERROR_ECC_UNCORRECTABLE,	\
	    "uncorrectable ECC error encountered")			\
	X(cudaErrorUnsupportedLimit, CUDA_ERROR_UNSUPPORTED_LIMIT,	\
	    "limit is not supported on this architecture")		\
	X(cudaErrorDeviceAlreadyInUse, CUDA_ERROR_CONTEXT_ALREADY_IN_USE, \
	    "exclusive-thread device already in use by a different thread") \
	X(cudaErrorPeerAccessUnsupported, CUDA_ERROR_PEER_ACCESS_UNSUPPORTED, \
	    "peer access is not supported between these two devices")	\
	X(cudaErrorInvalidPtx, CUDA_ERROR_INVALID_PTX,			\
	    "a PTX JIT compilation failed")				\
	X(cudaErrorInvalidGraphicsContext,				\
	    CUDA_ERROR_INVALID_GRAPHICS_CONTEXT,			\
	    "invalid OpenGL or DirectX context")			\
	X(cudaErrorNvlinkUncorrectable, CUDA_ERROR_NVLINK_UNCORRECTABLE, \
	    "uncorrectable NVLink error detected during the execution")	\
	X(cudaErrorJitCompilerNotFound, CUDA_ERROR_JIT_COMPILER_NOT_FOUND, \
	    "PTX JIT compiler library not found")			\
	X(cudaErrorUnsupportedPtxVersion, CUDA_ERROR_UNSUPPORTED_PTX_VERSION, \
	    "the provided PTX was compiled with an unsupported toolchain.") \
	X(cudaErrorJitCompilationDisabled,				\
	    CUDA_ERROR_JIT_COMPILATION_DISABLED,			\
	    "PTX JIT compilation was disabled")				\
	X(cudaErrorInvalidSource, CUDA_ERROR_INVALID_SOURCE,		\
	    "device kernel image is invalid")				\
	X(cudaErrorFileNotFound, CUDA_ERROR_FILE_NOT_FOUND, "file not found") \
	X(cudaErrorSharedObjectSymbolNotFound,				\
	    CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND,			\
	    "shared object symbol not found")				\
	X(cudaErrorSharedObjectInitFailed,				\
	    CUDA_ERROR_SHARED_OBJECT_INIT_FAILED,			\
	    "shared object initialization failed")			\
	X(cudaErrorOperatingSystem, CUDA_ERROR_OPERATING_SYSTEM,	\
	    "OS call failed or operation not supported on this OS")	\
	X(cudaErrorInvalidResourceHandle, CUDA_ERROR_INVALID_HANDLE,	\
	    "invalid resource handle")					\
	X(cudaErrorIllegalState, CUDA_ERROR_ILLEGAL_STATE,		\
	    "the operation cannot be performed in the present state")	\
	X(cudaErrorLossyQuery, CUDA_ERROR_LOSSY_QUERY,			\
	    "attempted introspection would be semantically lossy")	\
	X(cudaErrorSymbolNotFound, CUDA_ERROR_NOT_FOUND,		\
	    "named symbol not found")					\
	X(cudaErrorNotReady, CUDA_ERROR_NOT_READY, "device not ready")	\
	X(cudaErrorIllegalAddress, CUDA_ERROR_ILLEGAL_ADDRESS,		\
	    "an illegal memory access was encountered")			\
	X(cudaErrorLaunchOutOfResources, CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, \
	    "too many resources requested for launch")			\
	X(cudaErrorLaunchTimeout, CUDA_ERROR_LAUNCH_TIMEOUT,		\
	    "the launch timed out and was terminated")			\
	X(cudaErrorPeerAccessAlreadyEnabled,				\
	    CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED,			\
	    "peer access is already enabled")				\
	X(cudaErrorPeerAccessNotEnabled, CUDA_ERROR_PEER_ACCESS_NOT_ENABLED, \
	    "peer access has not been enabled")				\
	X(cudaErrorSetOnActiveProcess, CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE, \
	    "cannot set while device is active in this process")	\
	X(cudaErrorContextIsDestroyed, CUDA_ERROR_CONTEXT_IS_DESTROYED,	\
	    "context is destroyed")					\
	X(cudaErrorAssert, CUDA_ERROR_ASSERT, "device-side assert triggered") \
	X(cudaErrorTooManyPeers, CUDA_ERROR_TOO_MANY_PEERS,		\
	    "peer mapping resources exhausted")				\
	X(cudaErrorHostMemoryAlreadyRegistered,				\
	    CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED,			\
	    "part or all of the requested memory range is already mapped") \
	X(cudaErrorHostMemoryNotRegistered,				\
	    CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED,			\
	    "pointer does not correspond to a registered memory region") \
	X(cudaErrorHardwareStackError, CUDA_ERROR_HARDWARE_STACK_ERROR,	\
	    "hardware stack error")					\
	X(cudaErrorIllegalInstruction, CUDA_ERROR_ILLEGAL_INSTRUCTION,	\
	    "an illegal instruction was encountered")			\
	X(cudaErrorMisalignedAddress, CUDA_ERROR_MISALIGNED_ADDRESS,	\
	    "misaligned address")					\
	X(cudaErrorInvalidAddressSpace, CUDA_ERROR_INVALID_ADDRESS_SPACE, \
	    "operation not supported on global/shared address space")	\
	X(cudaErrorInvalidPc, CUDA_ERROR_INVALID_PC,			\
	    "invalid program counter")					\
	X(cudaErrorLaunchFailure, CUDA_ERROR_LAUNCH_FAILED,		\
	    "unspecified launch failure")				\
	X(cudaErrorCooperativeLaunchTooLarge,				\
	    CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE,			\
	    "too many blocks in cooperative launch")			\
	X(cudaErrorNotPermitted, CUDA_ERROR_NOT_PERMITTED,		\
	    "operation not permitted")					\
	X(cudaErrorNotSupported, CUDA_ERROR_NOT_SUPPORTED,		\
	    "operation not supported")					\
	X(cudaErrorSystemNotReady, CUDA_ERROR_SYSTEM_NOT_READY,		\
	    "system not yet initialized")				\
	X(cudaErrorSystemDriverMismatch, CUDA_ERROR_SYSTEM_DRIVER_MISMATCH, \
	    "system has unsupported display driver / cuda driver combination") \
	X(cudaErrorCompatNotSupportedOnDevice,				\
	    CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE,			\
	    "forward compatibility was attempted on non supported HW")	\
	X(cudaErrorStreamCaptureUnsupported,				\
	    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,			\
	    "operation not permitted when stream is capturing")		\
	X(cudaErrorStreamCaptureInvalidated,				\
	    CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,			\
	    "operation failed due to a previous error during capture")	\
	X(cudaErrorStreamCaptureMerge, CUDA_ERROR_STREAM_CAPTURE_MERGE,	\
	    "operation would result in a merge of separate capture "	\
	    "sequences")						\
	X(cudaErrorStreamCaptureUnmatched,				\
	    CUDA_ERROR_STREAM_CAPTURE_UNMATCHED,			\
	    "capture was not ended in the same stream as it began")	\
	X(cudaErrorStreamCaptureUnjoined, CUDA_ERROR_STREAM_CAPTURE_UNJOINED, \
	    "capturing stream has unjoined work")			\
	X(cudaErrorStreamCaptureIsolation,				\
	    CUDA_ERROR_STREAM_CAPTURE_ISOLATION,			\
	    "dependency created on uncaptured work in another stream")	\
	X(cudaErrorStreamCaptureImplicit, CUDA_ERROR_STREAM_CAPTURE_IMPLICIT, \
	    "operation would make the legacy stream depend on a capturing " \
	    "blocking stream")						\
	X(cudaErrorCapturedEvent, CUDA_ERROR_CAPTURED_EVENT,		\
	    "operation not permitted on an event last recorded in a "	\
	    "capturing stream")						\
	X(cudaErrorStreamCaptureWrongThread,				\
	    CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD,			\
	    "attempt to terminate a thread-local capture sequence from "	\
	    "another thread")						\
	X(cudaErrorTimeout, CUDA_ERROR_TIMEOUT, "wait operation timed out") \
	X(cudaErrorUnknown, CUDA_ERROR_UNKNOWN, "unknown error")

static const struct rt_error {
	cudaError_t	 code;
	int		 cu;	/* CUresult, or RT_NO_CU */
	const char	*name;
	const char	*text;
} rt_errors[] = {
#define RT_ERROR_ROW(code, cu, text)	{ code, (int)(cu), #code, text },
	RT_ERRORS(RT_ERROR_ROW)
#undef RT_ERROR_ROW
};

#define RT_NERRORS	(sizeof(rt_errors) / sizeof(rt_errors[0]))

static pthread_once_t	rt_load_once = PTHREAD_ONCE_INIT;
static pthread_once_t	rt_init_once = PTHREAD_ONCE_INIT;
/* Set by rt_load: libcuda.so.1 and its cuGetProcAddress_v2 were found. */
static int		rt_loaded;
/* cuInit(0)'s mapped result, sticky for the process; set by rt_cuinit. */
static cudaError_t	rt_init_err = cudaErrorInitializationError;

/* Primary contexts retained by this runtime, by ordinal; under rt_lock.
 * Never released: the runtime keeps them for the process's life. */
static pthread_mutex_t	rt_lock = PTHREAD_MUTEX_INITIALIZER;
static CUcontext	rt_primary[RT_MAX_DEVICES];

static _Thread_local int		rt_tl_device;
static _Thread_local cudaError_t	rt_tl_last_error;
/* Lazy binding (CUEMU_RUNTIME_LAZY_BIND=1): cudaSetDevice left the binding
 * of rt_tl_device's context to the thread's next call needing one. */
static int				rt_lazy_bind;
static _Thread_local int		rt_tl_bind_pending;

/* Maps a driver result to the runtime error the real runtime returns. */
static cudaError_t
rt_map(CUresult r)
{
	size_t i;

	if (r == CUDA_SUCCESS)
		return cudaSuccess;
	for (i = 0; i < RT_NERRORS; i++) {
		if (rt_errors[i].cu == (int)r)
			return rt_errors[i].code;
	}
	return cudaErrorUnknown;
}

/* Records err as the thread's last error (statuses excepted); returns it. */
static cudaError_t
rt_ret(cudaError_t err)
{
	if (err != cudaSuccess && err != cudaErrorNotReady)
		rt_tl_last_error = err;
	return err;
}

/* Finds the table row for a runtime error code, or NULL. */
static const struct rt_error *
rt_error_row(cudaError_t err)
{
	size_t i;

	for (i = 0; i < RT_NERRORS; i++) {
		if (rt_errors[i].code == err)
			return &rt_errors[i];
	}
	return NULL;
}

/* Asks the driver for one function by base name; NULL if it says no. */
static void *
rt_lookup(PFN_cuGetProcAddress_v12000 gpa, const char *name)
{
	CUdriverProcAddressQueryResult found;
	void *fn = NULL;

	found = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	if (gpa(name, &fn, CUDA_VERSION, CU_GET_PROC_ADDRESS_DEFAULT,
	    &found) != CUDA_SUCCESS || found != CU_GET_PROC_ADDRESS_SUCCESS)
		return NULL;
	return fn;
}

/* Loads libcuda.so.1 and resolves the whole table through cuGetProcAddress
 * (run once).  The handle is kept for the life of the process. */
static void
rt_load(void)
{
	PFN_cuGetProcAddress_v12000 gpa;
	void *handle;

	handle = dlopen(RT_DRIVER_LIB, RTLD_NOW | RTLD_LOCAL);
	if (handle == NULL)
		return;
	gpa = (PFN_cuGetProcAddress_v12000)dlsym(handle, "cuGetProcAddress_v2");
	if (gpa == NULL) {
		dlclose(handle);
		return;
	}
#define RT_RESOLVE(name, type)						\
	rt_drv.fn_##name = (type)rt_lookup(gpa, #name);
	RT_DRIVER_FUNCS(RT_RESOLVE)
#undef RT_RESOLVE
	rt_loaded = 1;
}

/* Reads CUEMU_RUNTIME_LAZY_BIND: 0 or 1; -1 (after one line) otherwise. */
static int
rt_lazy_setting(void)
{
	const char *s = getenv("CUEMU_RUNTIME_LAZY_BIND");

	if (s == NULL || strcmp(s, "0") == 0)
		return 0;
	if (strcmp(s, "1") == 0)
		return 1;
	fprintf(stderr, "cuemu cudart: CUEMU_RUNTIME_LAZY_BIND=\"%s\": "
	    "expected 0 or 1\n", s);
	return -1;
}

/* Initialises the driver (run once, after rt_load). */
static void
rt_cuinit(void)
{
	if ((rt_lazy_bind = rt_lazy_setting()) < 0) {
		rt_init_err = cudaErrorInitializationError;
		return;
	}
	rt_init_err = RT_CALL(cuInit, 0);
}

/* Loads the driver and resolves its functions, without initialising it. */
static cudaError_t
rt_driver(void)
{
	pthread_once(&rt_load_once, rt_load);
	return rt_loaded ? cudaSuccess : cudaErrorInsufficientDriver;
}

/* Loads and initialises the driver; the result is the process's, sticky. */
static cudaError_t
rt_init(void)
{
	cudaError_t err;

	if ((err = rt_driver()) != cudaSuccess)
		return err;
	pthread_once(&rt_init_once, rt_cuinit);
	return rt_init_err;
}

/* Checks dev is an ordinal of an existing device; the driver is initialised. */
static cudaError_t
rt_check_device(int dev)
{
	cudaError_t err;
	int count = 0;

	if ((err = RT_CALL(cuDeviceGetCount, &count)) != cudaSuccess)
		return err;
	if (dev < 0 || dev >= count || dev >= RT_MAX_DEVICES)
		return cudaErrorInvalidDevice;
	return cudaSuccess;
}

/* Returns device dev's primary context, retaining it on first use. */
static cudaError_t
rt_primary_ctx(int dev, CUcontext *ctxp)
{
	cudaError_t err = cudaSuccess;
	CUcontext ctx = NULL;
	CUdevice d;

	if (dev < 0 || dev >= RT_MAX_DEVICES)
		return cudaErrorInvalidDevice;
	pthread_mutex_lock(&rt_lock);
	if (rt_primary[dev] == NULL) {
		err = RT_CALL(cuDeviceGet, &d, dev);
		if (err == cudaSuccess)
			err = RT_CALL(cuDevicePrimaryCtxRetain, &ctx, d);
		if (err == cudaSuccess)
			rt_primary[dev] = ctx;
	}
	*ctxp = rt_primary[dev];
	pthread_mutex_unlock(&rt_lock);
	return err;
}

/* Makes device dev's primary context current on this thread. */
static cudaError_t
rt_bind(int dev)
{
	cudaError_t err;
	CUcontext ctx;

	if ((err = rt_primary_ctx(dev, &ctx)) != cudaSuccess)
		return err;
	return RT_CALL(cuCtxSetCurrent, ctx);
}

/* Lazy initialisation for calls that need a device: the driver is
 * initialised and this thread has a current context. */
static cudaError_t
rt_context(void)
{
	CUcontext cur = NULL;
	cudaError_t err;

	if ((err = rt_init()) != cudaSuccess)
		return err;
	if (rt_tl_bind_pending) {
		if ((err = rt_bind(rt_tl_device)) != cudaSuccess)
			return err;
		rt_tl_bind_pending = 0;
		return cudaSuccess;
	}
	if ((err = RT_CALL(cuCtxGetCurrent, &cur)) != cudaSuccess)
		return err;
	if (cur != NULL)
		return cudaSuccess;
	return rt_bind(rt_tl_device);
}

/* The whole body of a runtime call that needs a context and is one driver
 * call: the context's error, else the driver's, recorded for
 * cudaGetLastError.  (It pastes the name itself: passed on to RT_CALL, a
 * name cuda.h defines as a macro would be expanded first.) */
#define RT_CTX_CALL(name, ...)						\
	do {								\
		cudaError_t err_ = rt_context();			\
									\
		return rt_ret(err_ != cudaSuccess ? err_ :		\
		    RT_FN_CALL(fn_##name, __VA_ARGS__));		\
	} while (0)

/* Device pointers travel as void * in the runtime API, CUdeviceptr below. */
static CUdeviceptr
rt_dptr(const void *p)
{
	return (CUdeviceptr)(uintptr_t)p;
}

/* ---- errors and versions ------------------------------------------------ */

const char * CUDARTAPI
cudaGetErrorName(cudaError_t error)
{
	const struct rt_error *row = rt_error_row(error);

	return row != NULL ? row->name : "unrecognized error code";
}

const char * CUDARTAPI
cudaGetErrorString(cudaError_t error)
{
	const struct rt_error *row = rt_error_row(error);

	return row != NULL ? row->text : "unrecognized error code";
}

cudaError_t CUDARTAPI
cudaGetLastError(void)
{
	cudaError_t err = rt_tl_last_error;

	rt_tl_last_error = cudaSuccess;
	return err;
}

cudaError_t CUDARTAPI
cudaPeekAtLastError(void)
{
	return rt_tl_last_error;
}

/* Without a loadable driver the version is 0, as documented. */
cudaError_t CUDARTAPI
cudaDriverGetVersion(int *driverVersion)
{
	if (driverVersion == NULL)
		return rt_ret(cudaErrorInvalidValue);
	if (rt_driver() != cudaSuccess) {
		*driverVersion = 0;
		return cudaSuccess;
	}
	return rt_ret(RT_CALL(cuDriverGetVersion, driverVersion));
}

cudaError_t CUDARTAPI
cudaRuntimeGetVersion(int *runtimeVersion)
{
	if (runtimeVersion == NULL)
		return rt_ret(cudaErrorInvalidValue);
	*runtimeVersion = CUDART_VERSION;
	return cudaSuccess;
}

/* ---- devices ------------------------------------------------------------ */

cudaError_t CUDARTAPI
cudaGetDeviceCount(int *count)
{
	cudaError_t err;

	if (count == NULL)
		return rt_ret(cudaErrorInvalidValue);
	*count = 0;
	if ((err = rt_init()) != cudaSuccess)
		return rt_ret(err);
	return rt_ret(RT_CALL(cuDeviceGetCount, count));
}

/* Selects the calling thread's device and makes its primary context
 * current, as the runtime does since CUDA 12; with lazy binding only
 * records it, as the CUDA 11 runtime did. */
cudaError_t CUDARTAPI
cudaSetDevice(int device)
{
	cudaError_t err;

	if ((err = rt_init()) != cudaSuccess)
		return rt_ret(err);
	if ((err = rt_check_device(device)) != cudaSuccess)
		return rt_ret(err);
	if (rt_lazy_bind) {
		rt_tl_device = device;
		rt_tl_bind_pending = 1;
		return cudaSuccess;
	}
	if ((err = rt_bind(device)) != cudaSuccess)
		return rt_ret(err);
	rt_tl_device = device;
	rt_tl_bind_pending = 0;
	return cudaSuccess;
}

cudaError_t CUDARTAPI
cudaGetDevice(int *device)
{
	if (device == NULL)
		return rt_ret(cudaErrorInvalidValue);
	*device = rt_tl_device;
	return cudaSuccess;
}

/* cudaDeviceAttr and CUdevice_attribute share their values. */
cudaError_t CUDARTAPI
cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device)
{
	cudaError_t err;
	CUdevice d;

	if (value == NULL)
		return rt_ret(cudaErrorInvalidValue);
	if ((err = rt_init()) != cudaSuccess)
		return rt_ret(err);
	if ((err = rt_check_device(device)) != cudaSuccess)
		return rt_ret(err);
	if ((err = RT_CALL(cuDeviceGet, &d, device)) != cudaSuccess)
		return rt_ret(err);
	return rt_ret(RT_CALL(cuDeviceGetAttribute, value,
	    (CUdevice_attribute)attr, d));
}

/* The v13000 cuCtxSynchronize takes a context; NULL means the current one. */
cudaError_t CUDARTAPI
cudaDeviceSynchronize(void)
{
	RT_CTX_CALL(cuCtxSynchronize, NULL);
}

/* ---- peer access -------------------------------------------------------- */

cudaError_t CUDARTAPI
cudaDeviceCanAccessPeer(int *canAccessPeer, int device, int peerDevice)
{
	cudaError_t err;

	if (canAccessPeer == NULL)
		return rt_ret(cudaErrorInvalidValue);
	if ((err = rt_init()) != cudaSuccess)
		return rt_ret(err);
	if ((err = rt_check_device(device)) != cudaSuccess ||
	    (err = rt_check_device(peerDevice)) != cudaSuccess)
		return rt_ret(err);
	return rt_ret(RT_CALL(cuDeviceCanAccessPeer, canAccessPeer, device,
	    peerDevice));
}

/* From the current device's context to peerDevice's primary context. */
cudaError_t CUDARTAPI
cudaDeviceEnablePeerAccess(int peerDevice, unsigned int flags)
{
	CUcontext peer;
	cudaError_t err;

	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	if ((err = rt_check_device(peerDevice)) != cudaSuccess)
		return rt_ret(err);
	if ((err = rt_primary_ctx(peerDevice, &peer)) != cudaSuccess)
		return rt_ret(err);
	err = RT_CALL(cuCtxEnablePeerAccess, peer, flags);
	/* The runtime reports an impossible peer as an invalid device. */
	if (err == cudaErrorPeerAccessUnsupported || (err ==
	    cudaErrorDeviceUninitialized && peerDevice == rt_tl_device))
		err = cudaErrorInvalidDevice;
	return rt_ret(err);
}

cudaError_t CUDARTAPI
cudaDeviceDisablePeerAccess(int peerDevice)
{
	CUcontext peer;
	cudaError_t err;

	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	if ((err = rt_check_device(peerDevice)) != cudaSuccess)
		return rt_ret(err);
	if ((err = rt_primary_ctx(peerDevice, &peer)) != cudaSuccess)
		return rt_ret(err);
	return rt_ret(RT_CALL(cuCtxDisablePeerAccess, peer));
}

/* ---- memory ------------------------------------------------------------- */

cudaError_t CUDARTAPI
cudaMalloc(void **devPtr, size_t size)
{
	CUdeviceptr dptr = 0;
	cudaError_t err;

	if (devPtr == NULL)
		return rt_ret(cudaErrorInvalidValue);
	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	if (size == 0) {
		*devPtr = NULL;
		return cudaSuccess;
	}
	if ((err = RT_CALL(cuMemAlloc, &dptr, size)) != cudaSuccess)
		return rt_ret(err);
	*devPtr = (void *)(uintptr_t)dptr;
	return cudaSuccess;
}

/* cudaFree(NULL) is the classic way to initialise the runtime.  Like the
 * real one, cudaFree synchronizes the device before it frees ("Managing
 * memory allocations using cudaMalloc and cudaFree causes GPU to
 * synchronize across all executing CUDA streams"). */
static unsigned	rt_captures;	/* begun through this runtime, not ended */

cudaError_t CUDARTAPI
cudaFree(void *devPtr)
{
	cudaError_t err;

	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	if (devPtr == NULL)
		return cudaSuccess;
	/* While a capture begun through the runtime is in progress the free
	 * does not wait for the device (that would invalidate the capture;
	 * RELAXED mode allows cudaFree): the memory goes at once, and the
	 * driver counts it if queued work still touches it. */
	if (__atomic_load_n(&rt_captures, __ATOMIC_ACQUIRE) == 0 &&
	    (err = RT_CALL(cuCtxSynchronize, NULL)) != cudaSuccess)
		return rt_ret(err);
	return rt_ret(RT_CALL(cuMemFree, rt_dptr(devPtr)));
}

cudaError_t CUDARTAPI
cudaMallocAsync(void **devPtr, size_t size, cudaStream_t hStream)
{
	CUdeviceptr dptr = 0;
	cudaError_t err;

	if (devPtr == NULL)
		return rt_ret(cudaErrorInvalidValue);
	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	if (size == 0) {
		*devPtr = NULL;
		return cudaSuccess;
	}
	if ((err = RT_CALL(cuMemAllocAsync, &dptr, size, hStream)) !=
	    cudaSuccess)
		return rt_ret(err);
	*devPtr = (void *)(uintptr_t)dptr;
	return cudaSuccess;
}

/* "If size is 0, cudaMallocManaged returns cudaErrorInvalidValue". */
cudaError_t CUDARTAPI
cudaMallocManaged(void **devPtr, size_t size, unsigned int flags)
{
	CUdeviceptr dptr = 0;
	cudaError_t err;

	if (devPtr == NULL || size == 0)
		return rt_ret(cudaErrorInvalidValue);
	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	if ((err = RT_CALL(cuMemAllocManaged, &dptr, size, flags)) !=
	    cudaSuccess)
		return rt_ret(err);
	*devPtr = (void *)(uintptr_t)dptr;
	return cudaSuccess;
}

/* The runtime's pool properties, field by field, to the driver's. */
cudaError_t CUDARTAPI
cudaMemPoolCreate(cudaMemPool_t *memPool, const struct cudaMemPoolProps *p)
{
	CUmemPoolProps cp;
	cudaError_t err;

	if (memPool == NULL || p == NULL)
		return rt_ret(cudaErrorInvalidValue);
	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	memset(&cp, 0, sizeof(cp));
	cp.allocType = (CUmemAllocationType)p->allocType;
	cp.handleTypes = (CUmemAllocationHandleType)p->handleTypes;
	cp.location.type = (CUmemLocationType)p->location.type;
	cp.location.id = p->location.id;
	cp.win32SecurityAttributes = p->win32SecurityAttributes;
	cp.maxSize = p->maxSize;
	cp.usage = p->usage;
	return rt_ret(RT_CALL(cuMemPoolCreate, memPool, &cp));
}

cudaError_t CUDARTAPI
cudaMemPoolDestroy(cudaMemPool_t memPool)
{
	RT_CTX_CALL(cuMemPoolDestroy, memPool);
}

cudaError_t CUDARTAPI
cudaMallocFromPoolAsync(void **ptr, size_t size, cudaMemPool_t memPool,
    cudaStream_t stream)
{
	CUdeviceptr dptr = 0;
	cudaError_t err;

	if (ptr == NULL)
		return rt_ret(cudaErrorInvalidValue);
	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	if ((err = RT_CALL(cuMemAllocFromPoolAsync, &dptr, size, memPool,
	    stream)) != cudaSuccess)
		return rt_ret(err);
	*ptr = (void *)(uintptr_t)dptr;
	return cudaSuccess;
}

cudaError_t CUDARTAPI
cudaFreeAsync(void *devPtr, cudaStream_t hStream)
{
	RT_CTX_CALL(cuMemFreeAsync, rt_dptr(devPtr), hStream);
}

cudaError_t CUDARTAPI
cudaMallocPitch(void **devPtr, size_t *pitch, size_t width, size_t height)
{
	CUdeviceptr dptr = 0;
	cudaError_t err;
	size_t p = 0;

	if (devPtr == NULL || pitch == NULL)
		return rt_ret(cudaErrorInvalidValue);
	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	if ((err = RT_CALL(cuMemAllocPitch, &dptr, &p, width, height,
	    RT_PITCH_ELEMENT_SIZE)) != cudaSuccess)
		return rt_ret(err);
	*devPtr = (void *)(uintptr_t)dptr;
	*pitch = p;
	return cudaSuccess;
}

cudaError_t CUDARTAPI
cudaMemGetInfo(size_t *freep, size_t *totalp)
{
	RT_CTX_CALL(cuMemGetInfo, freep, totalp);
}

static int
rt_kind_valid(enum cudaMemcpyKind kind)
{
	switch (kind) {
	case cudaMemcpyHostToHost:
	case cudaMemcpyHostToDevice:
	case cudaMemcpyDeviceToHost:
	case cudaMemcpyDeviceToDevice:
	case cudaMemcpyDefault:
		return 1;
	}
	return 0;
}

/* Synchronous copies use the driver call the kind names (so the driver
 * checks each side); host-to-host and default go through cuMemcpy, which
 * infers both sides from the addresses (UVA).  Asynchronous copies all go
 * through cuMemcpyAsync, which infers the direction the same way. */
static cudaError_t
rt_memcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind,
    int async, CUstream stream)
{
	cudaError_t err;

	if (!rt_kind_valid(kind))
		return cudaErrorInvalidMemcpyDirection;
	if ((err = rt_context()) != cudaSuccess)
		return err;
	if (count == 0)
		return cudaSuccess;
	if (async)
		return RT_CALL(cuMemcpyAsync, rt_dptr(dst), rt_dptr(src), count,
		    stream);
	switch (kind) {
	case cudaMemcpyHostToDevice:
		return RT_CALL(cuMemcpyHtoD, rt_dptr(dst), src, count);
	case cudaMemcpyDeviceToHost:
		return RT_CALL(cuMemcpyDtoH, dst, rt_dptr(src), count);
	case cudaMemcpyDeviceToDevice:
		return RT_CALL(cuMemcpyDtoD, rt_dptr(dst), rt_dptr(src), count);
	case cudaMemcpyHostToHost:
	case cudaMemcpyDefault:
		break;
	}
	return RT_CALL(cuMemcpy, rt_dptr(dst), rt_dptr(src), count);
}

cudaError_t CUDARTAPI
cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind)
{
	return rt_ret(rt_memcpy(dst, src, count, kind, 0, NULL));
}

cudaError_t CUDARTAPI
cudaMemcpyAsync(void *dst, const void *src, size_t count,
    enum cudaMemcpyKind kind, cudaStream_t stream)
{
	return rt_ret(rt_memcpy(dst, src, count, kind, 1, stream));
}

cudaError_t CUDARTAPI
cudaMemset(void *devPtr, int value, size_t count)
{
	cudaError_t err;

	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	if (count == 0)
		return cudaSuccess;
	return rt_ret(RT_CALL(cuMemsetD8, rt_dptr(devPtr), (unsigned char)value,
	    count));
}

/* Memory the driver does not know is unregistered host memory (CUDA >= 11:
 * success, not an error); otherwise type, device and the device alias. */
cudaError_t CUDARTAPI
cudaPointerGetAttributes(struct cudaPointerAttributes *attributes,
    const void *ptr)
{
	unsigned int memtype = 0;
	CUdeviceptr dptr = 0;
	void *hptr = NULL;
	cudaError_t err;
	int ordinal = 0;

	if (attributes == NULL)
		return rt_ret(cudaErrorInvalidValue);
	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	err = RT_CALL(cuPointerGetAttribute, &memtype,
	    CU_POINTER_ATTRIBUTE_MEMORY_TYPE, rt_dptr(ptr));
	if (err == cudaErrorInvalidValue) {
		attributes->type = cudaMemoryTypeUnregistered;
		attributes->device = RT_UNREGISTERED_DEVICE;
		attributes->devicePointer = NULL;
		attributes->hostPointer = (void *)(uintptr_t)ptr;
		return cudaSuccess;
	}
	if (err != cudaSuccess)
		return rt_ret(err);
	if ((err = RT_CALL(cuPointerGetAttribute, &ordinal,
	    CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, rt_dptr(ptr))) != cudaSuccess)
		return rt_ret(err);
	if ((err = RT_CALL(cuPointerGetAttribute, &dptr,
	    CU_POINTER_ATTRIBUTE_DEVICE_POINTER, rt_dptr(ptr))) != cudaSuccess)
		return rt_ret(err);
	if (memtype == CU_MEMORYTYPE_HOST &&
	    (err = RT_CALL(cuPointerGetAttribute, &hptr,
	    CU_POINTER_ATTRIBUTE_HOST_POINTER, rt_dptr(ptr))) != cudaSuccess)
		return rt_ret(err);
	attributes->type = memtype == CU_MEMORYTYPE_HOST ?
	    cudaMemoryTypeHost : cudaMemoryTypeDevice;
	attributes->device = ordinal;
	attributes->devicePointer = (void *)(uintptr_t)dptr;
	attributes->hostPointer = hptr;
	return cudaSuccess;
}

/* ---- streams and events ------------------------------------------------- */

/* Shared by both exports so neither calls the other through the PLT. */
static cudaError_t
rt_stream_create(cudaStream_t *pStream, unsigned int flags)
{
	cudaError_t err;

	if (pStream == NULL || (flags & ~(unsigned int)cudaStreamNonBlocking))
		return cudaErrorInvalidValue;
	if ((err = rt_context()) != cudaSuccess)
		return err;
	return RT_CALL(cuStreamCreate, pStream, flags);
}

cudaError_t CUDARTAPI
cudaStreamCreate(cudaStream_t *pStream)
{
	return rt_ret(rt_stream_create(pStream, cudaStreamDefault));
}

cudaError_t CUDARTAPI
cudaStreamCreateWithFlags(cudaStream_t *pStream, unsigned int flags)
{
	return rt_ret(rt_stream_create(pStream, flags));
}

cudaError_t CUDARTAPI
cudaStreamDestroy(cudaStream_t stream)
{
	RT_CTX_CALL(cuStreamDestroy, stream);
}

cudaError_t CUDARTAPI
cudaStreamSynchronize(cudaStream_t stream)
{
	RT_CTX_CALL(cuStreamSynchronize, stream);
}

cudaError_t CUDARTAPI
cudaStreamQuery(cudaStream_t stream)
{
	RT_CTX_CALL(cuStreamQuery, stream);
}

cudaError_t CUDARTAPI
cudaEventCreate(cudaEvent_t *event)
{
	cudaError_t err;

	if (event == NULL)
		return rt_ret(cudaErrorInvalidValue);
	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	return rt_ret(RT_CALL(cuEventCreate, event, CU_EVENT_DEFAULT));
}

cudaError_t CUDARTAPI
cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
	RT_CTX_CALL(cuEventRecord, event, stream);
}

cudaError_t CUDARTAPI
cudaEventSynchronize(cudaEvent_t event)
{
	RT_CTX_CALL(cuEventSynchronize, event);
}

cudaError_t CUDARTAPI
cudaEventQuery(cudaEvent_t event)
{
	RT_CTX_CALL(cuEventQuery, event);
}

cudaError_t CUDARTAPI
cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags)
{
	RT_CTX_CALL(cuStreamWaitEvent, stream, event, flags);
}

cudaError_t CUDARTAPI
cudaEventDestroy(cudaEvent_t event)
{
	RT_CTX_CALL(cuEventDestroy, event);
}

/* ---- stream capture and graphs ------------------------------------------ */

/* The runtime's capture enums and graph handles are the driver's. */
cudaError_t CUDARTAPI
cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode)
{
	cudaError_t err;

	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	if ((err = RT_CALL(cuStreamBeginCapture, stream,
	    (CUstreamCaptureMode)mode)) == cudaSuccess)
		__atomic_add_fetch(&rt_captures, 1, __ATOMIC_ACQ_REL);
	return rt_ret(err);
}

cudaError_t CUDARTAPI
cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *pGraph)
{
	cudaError_t err;

	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	err = RT_CALL(cuStreamEndCapture, stream, pGraph);
	/* Ended, validly or not (an invalidated capture ends too). */
	if ((err == cudaSuccess || err == cudaErrorStreamCaptureInvalidated) &&
	    __atomic_load_n(&rt_captures, __ATOMIC_ACQUIRE) > 0)
		__atomic_sub_fetch(&rt_captures, 1, __ATOMIC_ACQ_REL);
	return rt_ret(err);
}

cudaError_t CUDARTAPI
cudaStreamIsCapturing(cudaStream_t stream,
    enum cudaStreamCaptureStatus *pCaptureStatus)
{
	CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
	cudaError_t err;

	if (pCaptureStatus == NULL)
		return rt_ret(cudaErrorInvalidValue);
	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	if ((err = RT_CALL(cuStreamIsCapturing, stream, &st)) != cudaSuccess)
		return rt_ret(err);
	*pCaptureStatus = (enum cudaStreamCaptureStatus)st;
	return cudaSuccess;
}

cudaError_t CUDARTAPI
cudaStreamGetCaptureInfo(cudaStream_t stream,
    enum cudaStreamCaptureStatus *captureStatus_out,
    unsigned long long *id_out, cudaGraph_t *graph_out,
    const cudaGraphNode_t **dependencies_out,
    const cudaGraphEdgeData **edgeData_out, size_t *numDependencies_out)
{
	CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
	cuuint64_t id = 0;
	cudaError_t err;

	if (captureStatus_out == NULL)
		return rt_ret(cudaErrorInvalidValue);
	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	if ((err = RT_CALL(cuStreamGetCaptureInfo, stream, &st,
	    id_out != NULL ? &id : NULL, graph_out, dependencies_out,
	    (const CUgraphEdgeData **)edgeData_out, numDependencies_out)) !=
	    cudaSuccess)
		return rt_ret(err);
	*captureStatus_out = (enum cudaStreamCaptureStatus)st;
	if (id_out != NULL && st == CU_STREAM_CAPTURE_STATUS_ACTIVE)
		*id_out = id;
	return cudaSuccess;
}

/* The mode is the driver's, per thread. */
cudaError_t CUDARTAPI
cudaThreadExchangeStreamCaptureMode(enum cudaStreamCaptureMode *mode)
{
	CUstreamCaptureMode m;
	cudaError_t err;

	if (mode == NULL)
		return rt_ret(cudaErrorInvalidValue);
	if ((err = rt_init()) != cudaSuccess)
		return rt_ret(err);
	m = (CUstreamCaptureMode)*mode;
	if ((err = RT_CALL(cuThreadExchangeStreamCaptureMode, &m)) !=
	    cudaSuccess)
		return rt_ret(err);
	*mode = (enum cudaStreamCaptureMode)m;
	return cudaSuccess;
}

cudaError_t CUDARTAPI
cudaGraphInstantiate(cudaGraphExec_t *pGraphExec, cudaGraph_t graph,
    unsigned long long flags)
{
	RT_CTX_CALL(cuGraphInstantiateWithFlags, pGraphExec, graph,
	    flags);
}

cudaError_t CUDARTAPI
cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream)
{
	RT_CTX_CALL(cuGraphLaunch, graphExec, stream);
}

cudaError_t CUDARTAPI
cudaGraphExecDestroy(cudaGraphExec_t graphExec)
{
	RT_CTX_CALL(cuGraphExecDestroy, graphExec);
}

cudaError_t CUDARTAPI
cudaGraphDestroy(cudaGraph_t graph)
{
	RT_CTX_CALL(cuGraphDestroy, graph);
}

/* ---- legacy IPC ---------------------------------------------------------- */

/* cudaIpcMemHandle_t and CUipcMemHandle are the same 64 bytes. */
_Static_assert(sizeof(cudaIpcMemHandle_t) == sizeof(CUipcMemHandle),
    "IPC handle sizes differ");

cudaError_t CUDARTAPI
cudaIpcGetMemHandle(cudaIpcMemHandle_t *handle, void *devPtr)
{
	CUipcMemHandle h;
	cudaError_t err;

	if (handle == NULL)
		return rt_ret(cudaErrorInvalidValue);
	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	if ((err = RT_CALL(cuIpcGetMemHandle, &h, rt_dptr(devPtr))) !=
	    cudaSuccess)
		return rt_ret(err);
	memcpy(handle, &h, sizeof(h));
	return cudaSuccess;
}

/* cudaIpcMemLazyEnablePeerAccess is the driver's flag, passed on. */
cudaError_t CUDARTAPI
cudaIpcOpenMemHandle(void **devPtr, cudaIpcMemHandle_t handle,
    unsigned int flags)
{
	CUdeviceptr dptr = 0;
	CUipcMemHandle h;
	cudaError_t err;

	if (devPtr == NULL)
		return rt_ret(cudaErrorInvalidValue);
	if ((err = rt_context()) != cudaSuccess)
		return rt_ret(err);
	memcpy(&h, &handle, sizeof(h));
	if ((err = RT_CALL(cuIpcOpenMemHandle, &dptr, h, flags)) != cudaSuccess)
		return rt_ret(err);
	*devPtr = (void *)(uintptr_t)dptr;
	return cudaSuccess;
}

cudaError_t CUDARTAPI
cudaIpcCloseMemHandle(void *devPtr)
{
	RT_CTX_CALL(cuIpcCloseMemHandle, rt_dptr(devPtr));
}
