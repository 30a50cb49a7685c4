/*
 * The hooked driver and runtime functions.
 *
 * VMM mode: allocations come from the client (vmm_malloc); frees of our
 * pointers go back to it, anything else to the original.  The original also
 * gets every call the client cannot serve: degenerate arguments (so the
 * answer is the native one: cudaMalloc(&p, 0) gives NULL and cudaSuccess,
 * cuMemAlloc(&p, 0) CUDA_ERROR_INVALID_VALUE, ...), no daemon (VMM_ENODAEMON:
 * the client decided to fall back), an unexpected driver error or fd
 * exhaustion in the broker path (vmmc_fallback: VMM_FALLBACK=on), no
 * context on a driver call (the driver then says which error),
 * stream-ordered allocations while the stream is being captured (they must
 * become graph nodes), and allocations a stream capture prohibits on this
 * thread (the driver refuses them and invalidates the capture, as without
 * us).
 * Stream capture: the begin and end hooks tell the client which captures are
 * in progress; meanwhile it makes no synchronizing call and defers frees
 * (client/capture.c).  A free of our memory a capture prohibits is refused
 * with the driver's error, CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED.
 * MONITOR mode: the originals, with one ALLOC/FREE log line each.
 *
 * Devices: a driver allocation goes on the current context's device; a
 * runtime allocation on the runtime's current device (cudaGetDevice), which
 * a lazily binding runtime (CUDA 11) has not made the driver's current
 * context yet after cudaSetDevice: the hook then lets the runtime bind it
 * (cudaFree(NULL)), as the original cudaMalloc would have.  Peer access the
 * program enables or disables (driver or runtime call) is passed on to the
 * client, which makes our mappings follow it: peer access itself never
 * covers VMM mappings.
 *
 * Every hook runs under the per-thread guard: a hook entered while another
 * runs on the thread (the client calling the driver, the runtime calling the
 * driver functions it got from our cuGetProcAddress) calls the original, so
 * one application call is handled, and logged, once.
 */
#include "shim.h"

#include <stdint.h>

#include "vmmc_shim.h"
#include "log.h"

/* cuMemAllocPitch's pitch: the row width rounded up to this many bytes. */
#define SHIM_PITCH_ALIGN	512u

_Thread_local int shim_depth __attribute__((tls_model("initial-exec")));

/* Calls a real function pointer, or gives err if it was not found. */
#define SHIM_CALL(real, err, ...)					\
	((real) != NULL ? (real)(__VA_ARGS__) : (err))
#define SHIM_CU(real, ...)						\
	SHIM_CALL(real, CUDA_ERROR_NOT_FOUND, __VA_ARGS__)
#define SHIM_RTC(real, ...)						\
	SHIM_CALL(real, cudaErrorInitializationError, __VA_ARGS__)

/* X(vmm error, CUresult, cudaError_t): how client errors reach the caller.
 * VMM_ENODAEMON only shows where no fallback exists. */
#define SHIM_ERRORS(X)							\
	X(VMM_OK, CUDA_SUCCESS, cudaSuccess)				\
	X(VMM_EINVAL, CUDA_ERROR_INVALID_VALUE, cudaErrorInvalidValue)	\
	X(VMM_ENOMEM, CUDA_ERROR_OUT_OF_MEMORY, cudaErrorMemoryAllocation) \
	X(VMM_EQUOTA, CUDA_ERROR_OUT_OF_MEMORY, cudaErrorMemoryAllocation) \
	X(VMM_ETIMEDOUT, CUDA_ERROR_OUT_OF_MEMORY,			\
	    cudaErrorMemoryAllocation)					\
	X(VMM_ENODAEMON, CUDA_ERROR_OUT_OF_MEMORY,			\
	    cudaErrorMemoryAllocation)					\
	X(VMM_ENOCTX, CUDA_ERROR_INVALID_CONTEXT,			\
	    cudaErrorDeviceUninitialized)				\
	X(VMM_ENOTOURS, CUDA_ERROR_INVALID_VALUE, cudaErrorInvalidValue) \
	X(VMM_ECUDA, CUDA_ERROR_UNKNOWN, cudaErrorUnknown)		\
	X(VMM_EPROTO, CUDA_ERROR_UNKNOWN, cudaErrorUnknown)		\
	X(VMM_ENOSYS, CUDA_ERROR_NOT_SUPPORTED, cudaErrorNotSupported)	\
	X(VMM_EMFILE, CUDA_ERROR_OUT_OF_MEMORY, cudaErrorMemoryAllocation)

static const struct shim_error {
	int		vmm;
	CUresult	cu;
	cudaError_t	rt;
} shim_errors[] = {
#define SHIM_ERROR_ROW(v, c, r)	{ v, c, r },
	SHIM_ERRORS(SHIM_ERROR_ROW)
#undef SHIM_ERROR_ROW
};

/* The table row for a client error, NULL if unknown. */
static const struct shim_error *
shim_error_row(int err)
{
	size_t i;

	for (i = 0; i < sizeof(shim_errors) / sizeof(shim_errors[0]); i++) {
		if (shim_errors[i].vmm == err)
			return &shim_errors[i];
	}
	return NULL;
}

static CUresult
shim_cu_error(int err)
{
	const struct shim_error *e = shim_error_row(err);

	return e != NULL ? e->cu : CUDA_ERROR_UNKNOWN;
}

static cudaError_t
shim_rt_error(int err)
{
	const struct shim_error *e = shim_error_row(err);

	return e != NULL ? e->rt : cudaErrorUnknown;
}

/* One hooked call: what this call does. */
struct shim_call {
	bool	vmm;	/* VMM mode: the client may serve it */
	bool	orig;	/* the original serves it */
	bool	log;	/* MONITOR mode with logging on */
};

/* Starts a hooked call; false if re-entered (call the original then). */
static bool
shim_enter(struct shim_call *c)
{
	if (shim_depth > 0)
		return false;
	shim_depth++;
	c->vmm = vmmc_mode() != VMMC_MODE_MONITOR;
	c->orig = !c->vmm;
	c->log = !c->vmm && shim_monitor_on();
	return true;
}

static void
shim_leave(void)
{
	shim_depth--;
}

static void *
shim_vptr(CUdeviceptr p)
{
	return (void *)(uintptr_t)p;
}

/* Whether ptr is ours (VMM mode only: MONITOR mode allocates nothing). */
static bool
shim_ours(const struct shim_call *c, CUdeviceptr ptr)
{
	return c->vmm && ptr != 0 && vmmc_owns(shim_vptr(ptr));
}

/* Allocates from the client; *orig is set instead when the original must
 * (no daemon and falling back, or no context: the original says which
 * error).  The result is meaningful only if *orig stays false. */
static int
shim_alloc(void **p, size_t size, bool *orig)
{
	int err;

	*p = NULL;
	err = vmm_malloc(p, size);
	if (err == VMM_ENODAEMON || err == VMM_ENOCTX || vmmc_fallback(err))
		*orig = true;
	return err;
}

/* The stream a call names: on the per-thread-stream ABI, NULL is the
 * per-thread default stream. */
static CUstream
shim_stream(CUstream hStream, bool per_thread)
{
	return hStream == NULL && per_thread ? CU_STREAM_PER_THREAD : hStream;
}

/* Whether hStream is being captured into a graph (unknown: no).  On the
 * per-thread-stream ABI the NULL stream is the per-thread one. */
bool
shim_capturing(CUstream hStream, bool per_thread)
{
	shim_pfn_cuStreamIsCapturing is = SHIM_REAL(cuStreamIsCapturing);
	CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;

	if (is == NULL)
		return false;
	if (hStream == NULL && per_thread)
		hStream = CU_STREAM_PER_THREAD;
	if (is(hStream, &st) != CUDA_SUCCESS)
		return false;
	return st != CU_STREAM_CAPTURE_STATUS_NONE;
}

/* Whether a "potentially unsafe" call (cudaMalloc, cudaFree, ...) is
 * prohibited on this thread by a capture in progress: by the modes of the
 * captures and this thread's own, read from the driver (exchanged and put
 * back).  Unknown: as the default, GLOBAL. */
static bool
shim_capture_forbidden(void)
{
	shim_pfn_cuThreadExchangeStreamCaptureMode ex;
	CUstreamCaptureMode m = CU_STREAM_CAPTURE_MODE_RELAXED, back;

	if (!vmmc_capture_active())
		return false;
	ex = SHIM_REAL(cuThreadExchangeStreamCaptureMode);
	if (ex == NULL || ex(&m) != CUDA_SUCCESS)
		return vmmc_capture_forbids(CU_STREAM_CAPTURE_MODE_GLOBAL);
	back = m;
	(void)ex(&back);
	return vmmc_capture_forbids((int)m);
}

/* The pitch for WidthInBytes, as the driver computes it; 0 if the
 * arguments are ones the driver rejects (or would overflow). */
static size_t
shim_pitch(size_t width, size_t height, unsigned int elem)
{
	size_t pitch;

	if (width == 0 || height == 0 || (elem != 4 && elem != 8 &&
	    elem != 16) || width > SIZE_MAX - (SHIM_PITCH_ALIGN - 1))
		return 0;
	pitch = (width + SHIM_PITCH_ALIGN - 1) & ~(size_t)(SHIM_PITCH_ALIGN - 1);
	if (height > SIZE_MAX / pitch)
		return 0;
	return pitch;
}

/* A free by the original: in VMM mode, uncounts the native allocation
 * (shim_native.c) if the free succeeds; MONITOR mode: forgets ptr, frees
 * it with the original, logs. */
#define SHIM_MONITOR_FREE(c, ptr, r, call)				\
	do {								\
		struct shim_native nat_;				\
		bool nat_had_ = (c).vmm &&				\
		    shim_native_take((uint64_t)(ptr), false, &nat_);	\
		size_t mon_size_ = (c).log ? shim_monitor_take(ptr) : 0; \
		(r) = (call);						\
		if (nat_had_)						\
			shim_native_done(&nat_, (r) == 0);		\
		if ((c).log && (r) == 0)				\
			shim_monitor_free((ptr), mon_size_);		\
		else if ((c).log)					\
			shim_monitor_restore((ptr), mon_size_);		\
	} while (0)

/* After an allocation the original served in VMM mode: counted as native
 * fallback memory on the device the call allocated on. */
static void
shim_fallback_counted(const struct shim_call *c, bool ok, CUdeviceptr p,
    size_t size, int dev)
{
	if (c->vmm && ok && p != 0)
		shim_native_record((uint64_t)p, false, size,
		    VMMC_NATIVE_FALLBACK, dev);
}

/* ---- driver ------------------------------------------------------------- */

SHIM_EXPORT CUresult CUDAAPI
cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
	shim_pfn_cuMemAlloc_v2 real = SHIM_REAL(cuMemAlloc_v2);
	CUresult r = CUDA_SUCCESS;
	struct shim_call c;
	void *p;
	int err;

	if (!shim_enter(&c))
		return SHIM_CU(real, dptr, bytesize);
	if (c.vmm && (dptr == NULL || bytesize == 0 || shim_capture_forbidden()))
		c.orig = true;
	else if (c.vmm) {
		err = shim_alloc(&p, bytesize, &c.orig);
		if (err == VMM_OK)
			*dptr = (CUdeviceptr)(uintptr_t)p;
		r = shim_cu_error(err);
	}
	if (c.orig) {
		r = SHIM_CU(real, dptr, bytesize);
		if (c.log && r == CUDA_SUCCESS)
			shim_monitor_alloc(*dptr, bytesize);
		shim_fallback_counted(&c, r == CUDA_SUCCESS, r == CUDA_SUCCESS ?
		    *dptr : 0, bytesize, shim_ctx_device());
	}
	shim_leave();
	return r;
}

SHIM_EXPORT CUresult CUDAAPI
cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes,
    size_t Height, unsigned int ElementSizeBytes)
{
	shim_pfn_cuMemAllocPitch_v2 real = SHIM_REAL(cuMemAllocPitch_v2);
	CUresult r = CUDA_SUCCESS;
	struct shim_call c;
	size_t pitch;
	void *p;
	int err;

	if (!shim_enter(&c))
		return SHIM_CU(real, dptr, pPitch, WidthInBytes, Height,
		    ElementSizeBytes);
	pitch = shim_pitch(WidthInBytes, Height, ElementSizeBytes);
	if (c.vmm && (dptr == NULL || pPitch == NULL || pitch == 0 ||
	    shim_capture_forbidden()))
		c.orig = true;
	else if (c.vmm) {
		err = shim_alloc(&p, pitch * Height, &c.orig);
		if (err == VMM_OK) {
			*dptr = (CUdeviceptr)(uintptr_t)p;
			*pPitch = pitch;
		}
		r = shim_cu_error(err);
	}
	if (c.orig) {
		r = SHIM_CU(real, dptr, pPitch, WidthInBytes, Height,
		    ElementSizeBytes);
		if (c.log && r == CUDA_SUCCESS)
			shim_monitor_alloc(*dptr, *pPitch * Height);
		shim_fallback_counted(&c, r == CUDA_SUCCESS, r == CUDA_SUCCESS ?
		    *dptr : 0, r == CUDA_SUCCESS ? *pPitch * Height : 0,
		    shim_ctx_device());
	}
	shim_leave();
	return r;
}

SHIM_EXPORT CUresult CUDAAPI
cuMemFree_v2(CUdeviceptr dptr)
{
	shim_pfn_cuMemFree_v2 real = SHIM_REAL(cuMemFree_v2);
	struct shim_call c;
	CUresult r;
	int rc;

	if (!shim_enter(&c))
		return SHIM_CU(real, dptr);
	/* One lookup: vmm_free says whether the pointer is ours. */
	if (shim_ours(&c, dptr) && shim_capture_forbidden())
		r = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	else if (c.vmm && dptr != 0 &&
	    (rc = vmm_free(shim_vptr(dptr))) != VMM_ENOTOURS)
		r = shim_cu_error(rc);
	else
		SHIM_MONITOR_FREE(c, dptr, r, SHIM_CU(real, dptr));
	shim_leave();
	return r;
}

/* cuMemAllocAsync and its per-thread-stream twin. */
static CUresult
shim_cu_alloc_async(shim_pfn_cuMemAllocAsync real, CUdeviceptr *dptr,
    size_t bytesize, CUstream hStream, bool per_thread)
{
	CUresult r = CUDA_SUCCESS;
	struct shim_call c;
	bool captured = false;
	void *p;
	int err;

	if (!shim_enter(&c))
		return SHIM_CU(real, dptr, bytesize, hStream);
	if (c.vmm && (dptr == NULL || bytesize == 0 ||
	    (captured = shim_capturing(hStream, per_thread)) ||
	    shim_capture_forbidden()))
		c.orig = true;
	else if (c.vmm) {
		/* On the stream's device, ordered after the free it reuses. */
		err = vmmc_malloc_async(&p, bytesize,
		    shim_stream(hStream, per_thread));
		if (err == VMM_ENODAEMON || err == VMM_ENOCTX ||
		    vmmc_fallback(err))
			c.orig = true;
		else if (err == VMM_OK)
			*dptr = (CUdeviceptr)(uintptr_t)p;
		r = shim_cu_error(err);
	}
	if (c.orig) {
		r = SHIM_CU(real, dptr, bytesize, hStream);
		if (c.log && r == CUDA_SUCCESS)
			shim_monitor_alloc(*dptr, bytesize);
		/* A captured allocation is the graph's, not counted. */
		shim_fallback_counted(&c, r == CUDA_SUCCESS && !captured,
		    r == CUDA_SUCCESS ? *dptr : 0, bytesize, shim_ctx_device());
	}
	shim_leave();
	return r;
}

SHIM_EXPORT CUresult CUDAAPI
cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
	return shim_cu_alloc_async(SHIM_REAL(cuMemAllocAsync), dptr, bytesize,
	    hStream, false);
}

SHIM_EXPORT CUresult CUDAAPI
cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
	return shim_cu_alloc_async(SHIM_REAL(cuMemAllocAsync_ptsz), dptr,
	    bytesize, hStream, true);
}

/* cuMemFreeAsync and its per-thread-stream twin.  Our memory is parked
 * with an event recorded on the stream (client/stream.c) and reused only in
 * order after it.  A capture cannot record a free of our memory: refused
 * rather than done too early. */
static CUresult
shim_cu_free_async(shim_pfn_cuMemFreeAsync real, CUdeviceptr dptr,
    CUstream hStream, bool per_thread)
{
	struct shim_call c;
	CUresult r;

	if (!shim_enter(&c))
		return SHIM_CU(real, dptr, hStream);
	if (shim_ours(&c, dptr))
		r = shim_capturing(hStream, per_thread) ?
		    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED :
		    shim_cu_error(vmmc_free_async(shim_vptr(dptr),
		    shim_stream(hStream, per_thread)));
	else
		SHIM_MONITOR_FREE(c, dptr, r, SHIM_CU(real, dptr, hStream));
	shim_leave();
	return r;
}

SHIM_EXPORT CUresult CUDAAPI
cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream)
{
	return shim_cu_free_async(SHIM_REAL(cuMemFreeAsync), dptr, hStream,
	    false);
}

SHIM_EXPORT CUresult CUDAAPI
cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream)
{
	return shim_cu_free_async(SHIM_REAL(cuMemFreeAsync_ptsz), dptr,
	    hStream, true);
}

SHIM_EXPORT CUresult CUDAAPI
cuMemGetInfo_v2(size_t *freep, size_t *totalp)
{
	shim_pfn_cuMemGetInfo_v2 real = SHIM_REAL(cuMemGetInfo_v2);
	CUresult r = CUDA_SUCCESS;
	struct shim_call c;
	int err;

	if (!shim_enter(&c))
		return SHIM_CU(real, freep, totalp);
	if (c.vmm && (freep == NULL || totalp == NULL))
		c.orig = true;
	else if (c.vmm) {
		err = vmm_mem_get_info(freep, totalp);
		c.orig = err == VMM_ENODAEMON || err == VMM_ENOCTX;
		r = shim_cu_error(err);
	}
	if (c.orig)
		r = SHIM_CU(real, freep, totalp);
	shim_leave();
	return r;
}

/* On our memory: the application's allocation, however many chunks back
 * it.  Asked of vmm_get_range directly: dptr may point inside it. */
SHIM_EXPORT CUresult CUDAAPI
cuMemGetAddressRange_v2(CUdeviceptr *pbase, size_t *psize, CUdeviceptr dptr)
{
	shim_pfn_cuMemGetAddressRange_v2 real =
	    SHIM_REAL(cuMemGetAddressRange_v2);
	struct shim_call c;
	void *base = NULL;
	size_t size = 0;
	CUresult r;

	if (!shim_enter(&c))
		return SHIM_CU(real, pbase, psize, dptr);
	if (c.vmm && dptr != 0 &&
	    vmm_get_range(shim_vptr(dptr), &base, &size) == VMM_OK) {
		if (pbase != NULL)
			*pbase = (CUdeviceptr)(uintptr_t)base;
		if (psize != NULL)
			*psize = size;
		r = CUDA_SUCCESS;
	} else if (c.vmm && dptr != 0 && vmmc_in_va(shim_vptr(dptr))) {
		/* Ours but not allocated (freed, kept in the cache): no
		 * allocation holds it, as after a real cudaFree. */
		r = CUDA_ERROR_NOT_FOUND;
	} else
		r = SHIM_CU(real, pbase, psize, dptr);
	shim_leave();
	return r;
}

/*
 * cuGetProcAddress: the driver picks the ABI for (name, version, flags);
 * if what it picked is one we hook, the caller gets our hook for exactly
 * that ABI symbol.  Old versions (cuMemAlloc < 3020: the 32-bit entry
 * point), functions we do not hook and misses (CUDA_SUCCESS, NULL) pass
 * through as the driver answered.  Not guarded: a runtime initialising
 * inside one of our hooks must still cache our hooks.
 */
SHIM_EXPORT CUresult CUDAAPI
cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion,
    cuuint64_t flags, CUdriverProcAddressQueryResult *symbolStatus)
{
	shim_pfn_cuGetProcAddress_v2 real = SHIM_REAL(cuGetProcAddress_v2);
	CUresult r;

	r = SHIM_CU(real, symbol, pfn, cudaVersion, flags, symbolStatus);
	if (r == CUDA_SUCCESS && pfn != NULL)
		*pfn = shim_map_driver(*pfn);
	return r;
}

SHIM_EXPORT CUresult CUDAAPI
cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion,
    cuuint64_t flags)
{
	shim_pfn_cuGetProcAddress real = SHIM_REAL(cuGetProcAddress);
	shim_pfn_cuGetProcAddress_v2 real2 = SHIM_REAL(cuGetProcAddress_v2);
	CUresult r;

	if (real != NULL)
		r = real(symbol, pfn, cudaVersion, flags);
	else
		r = SHIM_CU(real2, symbol, pfn, cudaVersion, flags, NULL);
	if (r == CUDA_SUCCESS && pfn != NULL)
		*pfn = shim_map_driver(*pfn);
	return r;
}

/* ---- runtime ------------------------------------------------------------ */

/* The device of the calling thread's current context, or -1 if none. */
int
shim_ctx_device(void)
{
	shim_pfn_cuCtxGetCurrent get = SHIM_REAL(cuCtxGetCurrent);
	shim_pfn_cuCtxGetDevice dev = SHIM_REAL(cuCtxGetDevice);
	CUcontext ctx = NULL;
	CUdevice d = -1;

	if (get == NULL || dev == NULL || get(&ctx) != CUDA_SUCCESS ||
	    ctx == NULL || dev(&d) != CUDA_SUCCESS)
		return -1;
	return (int)d;
}

/* The runtime's current device (what cudaSetDevice chose), or -1 if the
 * runtime cannot say. */
int
shim_rt_device(void)
{
	shim_pfn_cudaGetDevice get = SHIM_REAL(cudaGetDevice);
	int d = -1;

	if (get == NULL || get(&d) != cudaSuccess)
		return -1;
	return d;
}

/* Makes sure this thread's current context is the runtime's device's, as
 * the runtime would before allocating: if there is no context, or another
 * device's (a lazily binding runtime after cudaSetDevice), cudaFree(NULL),
 * the documented idiom that initialises the runtime and binds its context
 * (the runtime records its error if that fails).  *devp: the runtime's
 * device, else the current context's, else -1. */
static cudaError_t
shim_rt_context(int *devp)
{
	int rt = shim_rt_device(), cur = shim_ctx_device();
	shim_pfn_cudaFree rtfree;
	cudaError_t r;

	if (cur < 0 || (rt >= 0 && cur != rt)) {
		rtfree = SHIM_REAL(cudaFree);
		if ((r = SHIM_RTC(rtfree, NULL)) != cudaSuccess)
			return r;
		if (rt < 0)
			cur = shim_ctx_device();
	}
	*devp = rt >= 0 ? rt : cur;
	return cudaSuccess;
}

/* VMM-mode runtime allocation of size bytes on the runtime's device;
 * *orig set when the original must serve the call instead. */
static cudaError_t
shim_rt_alloc(void **devPtr, size_t size, bool *orig)
{
	cudaError_t r;
	void *p = NULL;
	int dev, err;

	if ((r = shim_rt_context(&dev)) != cudaSuccess)
		return r;
	if (dev < 0)
		err = VMM_ENOCTX;
	else
		err = vmmc_malloc_dev(dev, &p, size);
	if (err == VMM_ENODAEMON || err == VMM_ENOCTX || vmmc_fallback(err))
		*orig = true;
	if (err == VMM_OK)
		*devPtr = p;
	return shim_rt_error(err);
}

/* Stream-ordered: on stream s's device (client/stream.c), once the
 * runtime's context is bound (the NULL stream is that context's). */
static cudaError_t
shim_rt_alloc_on(void **devPtr, size_t size, CUstream s, bool *orig)
{
	cudaError_t r;
	void *p = NULL;
	int dev, err;

	if ((r = shim_rt_context(&dev)) != cudaSuccess)
		return r;
	err = vmmc_malloc_async(&p, size, s);
	if (err == VMM_ENODAEMON || err == VMM_ENOCTX || vmmc_fallback(err))
		*orig = true;
	if (err == VMM_OK)
		*devPtr = p;
	return shim_rt_error(err);
}

SHIM_EXPORT cudaError_t CUDARTAPI
cudaMalloc(void **devPtr, size_t size)
{
	shim_pfn_cudaMalloc real = SHIM_REAL(cudaMalloc);
	cudaError_t r = cudaSuccess;
	struct shim_call c;

	if (!shim_enter(&c))
		return SHIM_RTC(real, devPtr, size);
	if (c.vmm && (devPtr == NULL || size == 0 || shim_capture_forbidden()))
		c.orig = true;
	else if (c.vmm)
		r = shim_rt_alloc(devPtr, size, &c.orig);
	if (c.orig) {
		r = SHIM_RTC(real, devPtr, size);
		if (c.log && r == cudaSuccess && *devPtr != NULL)
			shim_monitor_alloc((CUdeviceptr)(uintptr_t)*devPtr,
			    size);
		shim_fallback_counted(&c, r == cudaSuccess, r == cudaSuccess ?
		    (CUdeviceptr)(uintptr_t)*devPtr : 0, size,
		    shim_rt_device());
	}
	shim_leave();
	return r;
}

/* cudaFree(NULL) reaches the original, which initialises the runtime. */
SHIM_EXPORT cudaError_t CUDARTAPI
cudaFree(void *devPtr)
{
	shim_pfn_cudaFree real = SHIM_REAL(cudaFree);
	CUdeviceptr d = (CUdeviceptr)(uintptr_t)devPtr;
	struct shim_call c;
	cudaError_t r;
	int rc;

	if (!shim_enter(&c))
		return SHIM_RTC(real, devPtr);
	/* One lookup: vmm_free says whether the pointer is ours. */
	if (shim_ours(&c, d) && shim_capture_forbidden())
		r = cudaErrorStreamCaptureUnsupported;
	else if (c.vmm && d != 0 && (rc = vmm_free(devPtr)) != VMM_ENOTOURS)
		r = shim_rt_error(rc);
	else if (d == 0)
		r = SHIM_RTC(real, devPtr);
	else
		SHIM_MONITOR_FREE(c, d, r, SHIM_RTC(real, devPtr));
	shim_leave();
	return r;
}

/* cudaMallocAsync and its per-thread-stream twin. */
static cudaError_t
shim_rt_alloc_async(shim_pfn_cudaMallocAsync real, void **devPtr,
    size_t size, cudaStream_t hStream, bool per_thread)
{
	cudaError_t r = cudaSuccess;
	struct shim_call c;
	bool captured = false;

	if (!shim_enter(&c))
		return SHIM_RTC(real, devPtr, size, hStream);
	if (c.vmm && (devPtr == NULL || size == 0 ||
	    (captured = shim_capturing(hStream, per_thread)) ||
	    shim_capture_forbidden()))
		c.orig = true;
	else if (c.vmm)
		r = shim_rt_alloc_on(devPtr, size,
		    shim_stream((CUstream)hStream, per_thread), &c.orig);
	if (c.orig) {
		r = SHIM_RTC(real, devPtr, size, hStream);
		if (c.log && r == cudaSuccess && *devPtr != NULL)
			shim_monitor_alloc((CUdeviceptr)(uintptr_t)*devPtr,
			    size);
		shim_fallback_counted(&c, r == cudaSuccess && !captured,
		    r == cudaSuccess ? (CUdeviceptr)(uintptr_t)*devPtr : 0,
		    size, shim_rt_device());
	}
	shim_leave();
	return r;
}

SHIM_EXPORT cudaError_t CUDARTAPI
cudaMallocAsync(void **devPtr, size_t size, cudaStream_t hStream)
{
	return shim_rt_alloc_async(SHIM_REAL(cudaMallocAsync), devPtr, size,
	    hStream, false);
}

SHIM_EXPORT cudaError_t CUDARTAPI
cudaMallocAsync_ptsz(void **devPtr, size_t size, cudaStream_t hStream)
{
	return shim_rt_alloc_async(SHIM_REAL(cudaMallocAsync_ptsz), devPtr,
	    size, hStream, true);
}

/* cudaFreeAsync and its twin; see shim_cu_free_async for our memory. */
static cudaError_t
shim_rt_free_async(shim_pfn_cudaFreeAsync real, void *devPtr,
    cudaStream_t hStream, bool per_thread)
{
	CUdeviceptr d = (CUdeviceptr)(uintptr_t)devPtr;
	struct shim_call c;
	cudaError_t r;

	if (!shim_enter(&c))
		return SHIM_RTC(real, devPtr, hStream);
	if (shim_ours(&c, d))
		r = shim_capturing(hStream, per_thread) ?
		    cudaErrorStreamCaptureUnsupported :
		    shim_rt_error(vmmc_free_async(devPtr,
		    shim_stream((CUstream)hStream, per_thread)));
	else if (d == 0)
		r = SHIM_RTC(real, devPtr, hStream);
	else
		SHIM_MONITOR_FREE(c, d, r, SHIM_RTC(real, devPtr, hStream));
	shim_leave();
	return r;
}

SHIM_EXPORT cudaError_t CUDARTAPI
cudaFreeAsync(void *devPtr, cudaStream_t hStream)
{
	return shim_rt_free_async(SHIM_REAL(cudaFreeAsync), devPtr, hStream,
	    false);
}

SHIM_EXPORT cudaError_t CUDARTAPI
cudaFreeAsync_ptsz(void *devPtr, cudaStream_t hStream)
{
	return shim_rt_free_async(SHIM_REAL(cudaFreeAsync_ptsz), devPtr,
	    hStream, true);
}

/* The runtime asks the driver for the widest element size (16); the pitch
 * does not depend on it. */
SHIM_EXPORT cudaError_t CUDARTAPI
cudaMallocPitch(void **devPtr, size_t *pitch, size_t width, size_t height)
{
	shim_pfn_cudaMallocPitch real = SHIM_REAL(cudaMallocPitch);
	cudaError_t r = cudaSuccess;
	struct shim_call c;
	size_t p;

	if (!shim_enter(&c))
		return SHIM_RTC(real, devPtr, pitch, width, height);
	p = shim_pitch(width, height, 16);
	if (c.vmm && (devPtr == NULL || pitch == NULL || p == 0 ||
	    shim_capture_forbidden()))
		c.orig = true;
	else if (c.vmm) {
		r = shim_rt_alloc(devPtr, p * height, &c.orig);
		if (r == cudaSuccess && !c.orig)
			*pitch = p;
	}
	if (c.orig) {
		r = SHIM_RTC(real, devPtr, pitch, width, height);
		if (c.log && r == cudaSuccess && *devPtr != NULL)
			shim_monitor_alloc((CUdeviceptr)(uintptr_t)*devPtr,
			    *pitch * height);
		shim_fallback_counted(&c, r == cudaSuccess, r == cudaSuccess ?
		    (CUdeviceptr)(uintptr_t)*devPtr : 0, r == cudaSuccess ?
		    *pitch * height : 0, shim_rt_device());
	}
	shim_leave();
	return r;
}

SHIM_EXPORT cudaError_t CUDARTAPI
cudaMemGetInfo(size_t *freep, size_t *totalp)
{
	shim_pfn_cudaMemGetInfo real = SHIM_REAL(cudaMemGetInfo);
	cudaError_t r = cudaSuccess;
	struct shim_call c;
	int dev, err;

	if (!shim_enter(&c))
		return SHIM_RTC(real, freep, totalp);
	if (c.vmm && (freep == NULL || totalp == NULL))
		c.orig = true;
	else if (c.vmm && (r = shim_rt_context(&dev)) == cudaSuccess) {
		err = vmm_mem_get_info(freep, totalp);
		c.orig = err == VMM_ENODAEMON || err == VMM_ENOCTX;
		r = shim_rt_error(err);
	}
	if (c.orig)
		r = SHIM_RTC(real, freep, totalp);
	shim_leave();
	return r;
}

/* ---- peer access --------------------------------------------------------- */

/* The device of context ctx, or -1: asked directly where the driver can
 * (CUDA 13), else by making ctx current for a moment. */
static int
shim_ctx_device_of(CUcontext ctx)
{
	shim_pfn_cuCtxGetDevice_v2 get2 = SHIM_REAL(cuCtxGetDevice_v2);
	shim_pfn_cuCtxGetCurrent cur = SHIM_REAL(cuCtxGetCurrent);
	shim_pfn_cuCtxSetCurrent set = SHIM_REAL(cuCtxSetCurrent);
	CUcontext old = NULL;
	CUdevice d = -1;
	int r;

	if (ctx == NULL)
		return -1;
	if (get2 != NULL)
		return get2(&d, ctx) == CUDA_SUCCESS ? (int)d : -1;
	if (cur == NULL || set == NULL || cur(&old) != CUDA_SUCCESS ||
	    set(ctx) != CUDA_SUCCESS)
		return -1;
	r = shim_ctx_device();
	set(old);
	return r;
}

SHIM_EXPORT CUresult CUDAAPI
cuCtxEnablePeerAccess(CUcontext peerContext, unsigned int Flags)
{
	shim_pfn_cuCtxEnablePeerAccess real = SHIM_REAL(cuCtxEnablePeerAccess);
	struct shim_call c;
	CUresult r;

	if (!shim_enter(&c))
		return SHIM_CU(real, peerContext, Flags);
	r = SHIM_CU(real, peerContext, Flags);
	if (c.vmm && r == CUDA_SUCCESS)
		vmmc_peer_access(shim_ctx_device(),
		    shim_ctx_device_of(peerContext), true);
	shim_leave();
	return r;
}

SHIM_EXPORT CUresult CUDAAPI
cuCtxDisablePeerAccess(CUcontext peerContext)
{
	shim_pfn_cuCtxDisablePeerAccess real =
	    SHIM_REAL(cuCtxDisablePeerAccess);
	struct shim_call c;
	CUresult r;

	if (!shim_enter(&c))
		return SHIM_CU(real, peerContext);
	r = SHIM_CU(real, peerContext);
	if (c.vmm && r == CUDA_SUCCESS)
		vmmc_peer_access(shim_ctx_device(),
		    shim_ctx_device_of(peerContext), false);
	shim_leave();
	return r;
}

/* From the runtime's current device to peerDevice.  The runtime reaches the
 * driver's call through our cuGetProcAddress: guarded, it passes through. */
SHIM_EXPORT cudaError_t CUDARTAPI
cudaDeviceEnablePeerAccess(int peerDevice, unsigned int flags)
{
	shim_pfn_cudaDeviceEnablePeerAccess real =
	    SHIM_REAL(cudaDeviceEnablePeerAccess);
	struct shim_call c;
	cudaError_t r;

	if (!shim_enter(&c))
		return SHIM_RTC(real, peerDevice, flags);
	r = SHIM_RTC(real, peerDevice, flags);
	if (c.vmm && r == cudaSuccess)
		vmmc_peer_access(shim_rt_device(), peerDevice, true);
	shim_leave();
	return r;
}

SHIM_EXPORT cudaError_t CUDARTAPI
cudaDeviceDisablePeerAccess(int peerDevice)
{
	shim_pfn_cudaDeviceDisablePeerAccess real =
	    SHIM_REAL(cudaDeviceDisablePeerAccess);
	struct shim_call c;
	cudaError_t r;

	if (!shim_enter(&c))
		return SHIM_RTC(real, peerDevice);
	r = SHIM_RTC(real, peerDevice);
	if (c.vmm && r == cudaSuccess)
		vmmc_peer_access(shim_rt_device(), peerDevice, false);
	shim_leave();
	return r;
}

/* ---- stream capture ------------------------------------------------------ */

/* The stream a capture call names, as the client keys it: NULL is the
 * per-thread default stream for the _ptsz forms (for the others the legacy
 * stream, which cannot be captured). */
static const void *
shim_capture_key(CUstream s, bool per_thread)
{
	return s == NULL && per_thread ? (const void *)CU_STREAM_PER_THREAD : s;
}

/* Before a begin: the capture counts from now (a synchronization that
 * starts meanwhile would be refused by the driver and invalidate it); taken
 * back if the driver refuses the begin. */
static void
shim_capture_before(const struct shim_call *c, CUstream s, bool per_thread,
    int mode)
{
	if (c->vmm)
		vmmc_capture_begin(shim_capture_key(s, per_thread), mode);
}

static void
shim_capture_after_begin(const struct shim_call *c, CUstream s,
    bool per_thread, bool ok)
{
	if (c->vmm && !ok)
		vmmc_capture_ended(shim_capture_key(s, per_thread));
}

/* After an end that returned ok (success) or invalid (an invalidated
 * capture, ended too): either ends it; another error may not have (wrong
 * thread), so the driver is asked whether the stream still captures. */
static void
shim_capture_after_end(const struct shim_call *c, CUstream s,
    bool per_thread, bool ok, bool invalid)
{
	if (c->vmm && (ok || invalid || !shim_capturing(s, per_thread)))
		vmmc_capture_ended(shim_capture_key(s, per_thread));
}

/* cuStreamBeginCapture: the CUDA 10.0 ABI (mode GLOBAL), _v2, _ptsz. */
static CUresult
shim_cu_begin(void *real, int abi, CUstream s, CUstreamCaptureMode mode,
    bool per_thread)
{
	struct shim_call c;
	CUresult r;
	bool entered = shim_enter(&c);

	if (entered)
		shim_capture_before(&c, s, per_thread, (int)mode);
	if (real == NULL)
		r = CUDA_ERROR_NOT_FOUND;
	else if (abi == 1)
		r = ((shim_pfn_cuStreamBeginCapture)real)(s);
	else
		r = ((shim_pfn_cuStreamBeginCapture_v2)real)(s, mode);
	if (entered) {
		shim_capture_after_begin(&c, s, per_thread, r == CUDA_SUCCESS);
		shim_leave();
	}
	return r;
}

SHIM_EXPORT CUresult CUDAAPI
cuStreamBeginCapture(CUstream hStream)
{
	return shim_cu_begin((void *)SHIM_REAL(cuStreamBeginCapture), 1, hStream,
	    CU_STREAM_CAPTURE_MODE_GLOBAL, false);
}

SHIM_EXPORT CUresult CUDAAPI
cuStreamBeginCapture_ptsz(CUstream hStream)
{
	return shim_cu_begin((void *)SHIM_REAL(cuStreamBeginCapture_ptsz), 1,
	    hStream, CU_STREAM_CAPTURE_MODE_GLOBAL, true);
}

SHIM_EXPORT CUresult CUDAAPI
cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode)
{
	return shim_cu_begin((void *)SHIM_REAL(cuStreamBeginCapture_v2), 2,
	    hStream, mode, false);
}

SHIM_EXPORT CUresult CUDAAPI
cuStreamBeginCapture_v2_ptsz(CUstream hStream, CUstreamCaptureMode mode)
{
	return shim_cu_begin((void *)SHIM_REAL(cuStreamBeginCapture_v2_ptsz), 2,
	    hStream, mode, true);
}

static CUresult
shim_cu_end(shim_pfn_cuStreamEndCapture real, CUstream s, CUgraph *g,
    bool per_thread)
{
	struct shim_call c;
	CUresult r;

	if (!shim_enter(&c))
		return SHIM_CU(real, s, g);
	r = SHIM_CU(real, s, g);
	shim_capture_after_end(&c, s, per_thread, r == CUDA_SUCCESS,
	    r == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
	shim_leave();
	return r;
}

SHIM_EXPORT CUresult CUDAAPI
cuStreamEndCapture(CUstream hStream, CUgraph *phGraph)
{
	return shim_cu_end(SHIM_REAL(cuStreamEndCapture), hStream, phGraph,
	    false);
}

SHIM_EXPORT CUresult CUDAAPI
cuStreamEndCapture_ptsz(CUstream hStream, CUgraph *phGraph)
{
	return shim_cu_end(SHIM_REAL(cuStreamEndCapture_ptsz), hStream, phGraph,
	    true);
}

/* The runtime's, for a runtime that does not reach the driver's through
 * cuGetProcAddress (the driver hooks then see nested calls only). */
static cudaError_t
shim_rt_begin(shim_pfn_cudaStreamBeginCapture real, cudaStream_t s,
    enum cudaStreamCaptureMode mode, bool per_thread)
{
	struct shim_call c;
	cudaError_t r;

	if (!shim_enter(&c))
		return SHIM_RTC(real, s, mode);
	shim_capture_before(&c, s, per_thread, (int)mode);
	r = SHIM_RTC(real, s, mode);
	shim_capture_after_begin(&c, s, per_thread, r == cudaSuccess);
	shim_leave();
	return r;
}

SHIM_EXPORT cudaError_t CUDARTAPI
cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode)
{
	return shim_rt_begin(SHIM_REAL(cudaStreamBeginCapture), stream, mode,
	    false);
}

SHIM_EXPORT cudaError_t CUDARTAPI
cudaStreamBeginCapture_ptsz(cudaStream_t stream,
    enum cudaStreamCaptureMode mode)
{
	return shim_rt_begin(SHIM_REAL(cudaStreamBeginCapture_ptsz), stream,
	    mode, true);
}

static cudaError_t
shim_rt_end(shim_pfn_cudaStreamEndCapture real, cudaStream_t s,
    cudaGraph_t *g, bool per_thread)
{
	struct shim_call c;
	cudaError_t r;

	if (!shim_enter(&c))
		return SHIM_RTC(real, s, g);
	r = SHIM_RTC(real, s, g);
	shim_capture_after_end(&c, s, per_thread, r == cudaSuccess,
	    r == cudaErrorStreamCaptureInvalidated);
	shim_leave();
	return r;
}

SHIM_EXPORT cudaError_t CUDARTAPI
cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *pGraph)
{
	return shim_rt_end(SHIM_REAL(cudaStreamEndCapture), stream, pGraph,
	    false);
}

SHIM_EXPORT cudaError_t CUDARTAPI
cudaStreamEndCapture_ptsz(cudaStream_t stream, cudaGraph_t *pGraph)
{
	return shim_rt_end(SHIM_REAL(cudaStreamEndCapture_ptsz), stream,
	    pGraph, true);
}

/* The hidden aliases the maps hand out (see shim.h). */
#define SHIM_ALIAS_DEF(name, fam)					\
	extern __typeof__(name) shim_hook_##name			\
	    __attribute__((alias(#name)));
SHIM_HOOKS_MAIN(SHIM_ALIAS_DEF)
#undef SHIM_ALIAS_DEF
