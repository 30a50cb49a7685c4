/*
 * cuemu cuGetProcAddress: base name + CUDA version (+ per-thread-stream flag)
 * to the exact ABI symbol, as the real driver answers.  The versions are
 * those of the toolkit's cudaTypedefs.h (PFN_<name>_v<version>[_ptds|_ptsz]).
 * ABI versions older than the ones emulated here (the 32-bit v1 entry points
 * of CUDA < 3.2) are not provided: asking for them yields NULL.
 */
#include "cuemu_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CUEMU_LEGACY, CUEMU_PTDS };

/* X(base name, CUDA version that introduced this ABI, symbol, stream kind) */
#define CUEMU_PROCS(X)                                                        \
	X("cuInit", 2000, cuInit, CUEMU_LEGACY)                               \
	X("cuDriverGetVersion", 2020, cuDriverGetVersion, CUEMU_LEGACY)       \
	X("cuDeviceGet", 2000, cuDeviceGet, CUEMU_LEGACY)                     \
	X("cuDeviceGetCount", 2000, cuDeviceGetCount, CUEMU_LEGACY)           \
	X("cuDeviceGetName", 2000, cuDeviceGetName, CUEMU_LEGACY)             \
	X("cuDeviceGetUuid", 9020, cuDeviceGetUuid, CUEMU_LEGACY)             \
	X("cuDeviceGetUuid", 11040, cuDeviceGetUuid_v2, CUEMU_LEGACY)         \
	X("cuDeviceTotalMem", 3020, cuDeviceTotalMem_v2, CUEMU_LEGACY)        \
	X("cuDeviceGetAttribute", 2000, cuDeviceGetAttribute, CUEMU_LEGACY)   \
	X("cuDevicePrimaryCtxRetain", 7000, cuDevicePrimaryCtxRetain,         \
	    CUEMU_LEGACY)                                                     \
	X("cuDevicePrimaryCtxRelease", 7000, cuDevicePrimaryCtxRelease,       \
	    CUEMU_LEGACY)                                                     \
	X("cuDevicePrimaryCtxRelease", 11000, cuDevicePrimaryCtxRelease_v2,   \
	    CUEMU_LEGACY)                                                     \
	X("cuCtxSetCurrent", 4000, cuCtxSetCurrent, CUEMU_LEGACY)             \
	X("cuCtxGetCurrent", 4000, cuCtxGetCurrent, CUEMU_LEGACY)             \
	X("cuCtxGetDevice", 2000, cuCtxGetDevice, CUEMU_LEGACY)               \
	X("cuCtxGetDevice", 13000, cuCtxGetDevice_v2, CUEMU_LEGACY)           \
	X("cuCtxSynchronize", 2000, cuCtxSynchronize, CUEMU_LEGACY)           \
	X("cuDeviceCanAccessPeer", 4000, cuDeviceCanAccessPeer, CUEMU_LEGACY) \
	X("cuCtxEnablePeerAccess", 4000, cuCtxEnablePeerAccess, CUEMU_LEGACY) \
	X("cuCtxDisablePeerAccess", 4000, cuCtxDisablePeerAccess,             \
	    CUEMU_LEGACY)                                                     \
	X("cuCtxSynchronize", 13000, cuCtxSynchronize_v2, CUEMU_LEGACY)       \
	X("cuGetErrorName", 6000, cuGetErrorName, CUEMU_LEGACY)               \
	X("cuGetErrorString", 6000, cuGetErrorString, CUEMU_LEGACY)           \
	X("cuGetProcAddress", 11030, cuGetProcAddress, CUEMU_LEGACY)          \
	X("cuGetProcAddress", 12000, cuGetProcAddress_v2, CUEMU_LEGACY)       \
	X("cuMemGetAllocationGranularity", 10020,                             \
	    cuMemGetAllocationGranularity, CUEMU_LEGACY)                      \
	X("cuMemCreate", 10020, cuMemCreate, CUEMU_LEGACY)                    \
	X("cuMemRelease", 10020, cuMemRelease, CUEMU_LEGACY)                  \
	X("cuMemAddressReserve", 10020, cuMemAddressReserve, CUEMU_LEGACY)    \
	X("cuMemAddressFree", 10020, cuMemAddressFree, CUEMU_LEGACY)          \
	X("cuMemMap", 10020, cuMemMap, CUEMU_LEGACY)                          \
	X("cuMemUnmap", 10020, cuMemUnmap, CUEMU_LEGACY)                      \
	X("cuMemSetAccess", 10020, cuMemSetAccess, CUEMU_LEGACY)              \
	X("cuMemGetAccess", 10020, cuMemGetAccess, CUEMU_LEGACY)              \
	X("cuMemExportToShareableHandle", 10020, cuMemExportToShareableHandle,\
	    CUEMU_LEGACY)                                                     \
	X("cuMemImportFromShareableHandle", 10020,                            \
	    cuMemImportFromShareableHandle, CUEMU_LEGACY)                     \
	X("cuMemRetainAllocationHandle", 11000, cuMemRetainAllocationHandle,  \
	    CUEMU_LEGACY)                                                     \
	X("cuMemGetAllocationPropertiesFromHandle", 10020,                    \
	    cuMemGetAllocationPropertiesFromHandle, CUEMU_LEGACY)             \
	X("cuMemAlloc", 3020, cuMemAlloc_v2, CUEMU_LEGACY)                    \
	X("cuMemFree", 3020, cuMemFree_v2, CUEMU_LEGACY)                      \
	X("cuMemAllocPitch", 3020, cuMemAllocPitch_v2, CUEMU_LEGACY)          \
	X("cuMemGetInfo", 3020, cuMemGetInfo_v2, CUEMU_LEGACY)                \
	X("cuMemGetAddressRange", 3020, cuMemGetAddressRange_v2, CUEMU_LEGACY)\
	X("cuMemAllocAsync", 11020, cuMemAllocAsync, CUEMU_LEGACY)            \
	X("cuMemAllocAsync", 11020, cuMemAllocAsync_ptsz, CUEMU_PTDS)         \
	X("cuMemFreeAsync", 11020, cuMemFreeAsync, CUEMU_LEGACY)              \
	X("cuMemFreeAsync", 11020, cuMemFreeAsync_ptsz, CUEMU_PTDS)           \
	X("cuMemAllocFromPoolAsync", 11020, cuMemAllocFromPoolAsync,          \
	    CUEMU_LEGACY)                                                     \
	X("cuMemAllocFromPoolAsync", 11020, cuMemAllocFromPoolAsync_ptsz,     \
	    CUEMU_PTDS)                                                       \
	X("cuMemPoolCreate", 11020, cuMemPoolCreate, CUEMU_LEGACY)            \
	X("cuMemPoolDestroy", 11020, cuMemPoolDestroy, CUEMU_LEGACY)          \
	X("cuMemAllocManaged", 6000, cuMemAllocManaged, CUEMU_LEGACY)         \
	X("cuMemcpyHtoD", 3020, cuMemcpyHtoD_v2, CUEMU_LEGACY)                \
	X("cuMemcpyHtoD", 7000, cuMemcpyHtoD_v2_ptds, CUEMU_PTDS)             \
	X("cuMemcpyDtoH", 3020, cuMemcpyDtoH_v2, CUEMU_LEGACY)                \
	X("cuMemcpyDtoH", 7000, cuMemcpyDtoH_v2_ptds, CUEMU_PTDS)             \
	X("cuMemcpyDtoD", 3020, cuMemcpyDtoD_v2, CUEMU_LEGACY)                \
	X("cuMemcpyDtoD", 7000, cuMemcpyDtoD_v2_ptds, CUEMU_PTDS)             \
	X("cuMemcpy", 4000, cuMemcpy, CUEMU_LEGACY)                           \
	X("cuMemcpy", 7000, cuMemcpy_ptds, CUEMU_PTDS)                        \
	X("cuMemcpyHtoDAsync", 3020, cuMemcpyHtoDAsync_v2, CUEMU_LEGACY)      \
	X("cuMemcpyHtoDAsync", 7000, cuMemcpyHtoDAsync_v2_ptsz, CUEMU_PTDS)   \
	X("cuMemcpyDtoHAsync", 3020, cuMemcpyDtoHAsync_v2, CUEMU_LEGACY)      \
	X("cuMemcpyDtoHAsync", 7000, cuMemcpyDtoHAsync_v2_ptsz, CUEMU_PTDS)   \
	X("cuMemcpyDtoDAsync", 3020, cuMemcpyDtoDAsync_v2, CUEMU_LEGACY)      \
	X("cuMemcpyDtoDAsync", 7000, cuMemcpyDtoDAsync_v2_ptsz, CUEMU_PTDS)   \
	X("cuMemcpyAsync", 4000, cuMemcpyAsync, CUEMU_LEGACY)                 \
	X("cuMemcpyAsync", 7000, cuMemcpyAsync_ptsz, CUEMU_PTDS)              \
	X("cuMemsetD8", 3020, cuMemsetD8_v2, CUEMU_LEGACY)                    \
	X("cuMemsetD8", 7000, cuMemsetD8_v2_ptds, CUEMU_PTDS)                 \
	X("cuMemsetD8Async", 3020, cuMemsetD8Async, CUEMU_LEGACY)             \
	X("cuMemsetD8Async", 7000, cuMemsetD8Async_ptsz, CUEMU_PTDS)          \
	X("cuStreamCreate", 2000, cuStreamCreate, CUEMU_LEGACY)               \
	X("cuStreamDestroy", 2000, cuStreamDestroy, CUEMU_LEGACY)             \
	X("cuStreamDestroy", 4000, cuStreamDestroy_v2, CUEMU_LEGACY)          \
	X("cuStreamSynchronize", 2000, cuStreamSynchronize, CUEMU_LEGACY)     \
	X("cuStreamSynchronize", 7000, cuStreamSynchronize_ptsz, CUEMU_PTDS)  \
	X("cuStreamQuery", 2000, cuStreamQuery, CUEMU_LEGACY)                 \
	X("cuStreamQuery", 7000, cuStreamQuery_ptsz, CUEMU_PTDS)              \
	X("cuEventCreate", 2000, cuEventCreate, CUEMU_LEGACY)                 \
	X("cuEventDestroy", 2000, cuEventDestroy, CUEMU_LEGACY)               \
	X("cuEventDestroy", 4000, cuEventDestroy_v2, CUEMU_LEGACY)            \
	X("cuEventRecord", 2000, cuEventRecord, CUEMU_LEGACY)                 \
	X("cuEventRecord", 7000, cuEventRecord_ptsz, CUEMU_PTDS)              \
	X("cuEventSynchronize", 2000, cuEventSynchronize, CUEMU_LEGACY)       \
	X("cuStreamWaitEvent", 3020, cuStreamWaitEvent, CUEMU_LEGACY)         \
	X("cuStreamGetCtx", 9020, cuStreamGetCtx, CUEMU_LEGACY)               \
	X("cuStreamGetCtx", 9020, cuStreamGetCtx_ptsz, CUEMU_PTDS)            \
	X("cuStreamWaitEvent", 7000, cuStreamWaitEvent_ptsz, CUEMU_PTDS)      \
	X("cuEventQuery", 2000, cuEventQuery, CUEMU_LEGACY)                   \
	X("cuPointerGetAttribute", 4000, cuPointerGetAttribute, CUEMU_LEGACY) \
	X("cuPointerGetAttributes", 7000, cuPointerGetAttributes, CUEMU_LEGACY)\
	X("cuStreamBeginCapture", 10000, cuStreamBeginCapture, CUEMU_LEGACY)  \
	X("cuStreamBeginCapture", 10000, cuStreamBeginCapture_ptsz,           \
	    CUEMU_PTDS)                                                       \
	X("cuStreamBeginCapture", 10010, cuStreamBeginCapture_v2,             \
	    CUEMU_LEGACY)                                                     \
	X("cuStreamBeginCapture", 10010, cuStreamBeginCapture_v2_ptsz,        \
	    CUEMU_PTDS)                                                       \
	X("cuStreamEndCapture", 10000, cuStreamEndCapture, CUEMU_LEGACY)      \
	X("cuStreamEndCapture", 10000, cuStreamEndCapture_ptsz, CUEMU_PTDS)   \
	X("cuStreamIsCapturing", 10000, cuStreamIsCapturing, CUEMU_LEGACY)    \
	X("cuStreamIsCapturing", 10000, cuStreamIsCapturing_ptsz, CUEMU_PTDS) \
	X("cuStreamGetCaptureInfo", 10010, cuStreamGetCaptureInfo,            \
	    CUEMU_LEGACY)                                                     \
	X("cuStreamGetCaptureInfo", 10010, cuStreamGetCaptureInfo_ptsz,       \
	    CUEMU_PTDS)                                                       \
	X("cuStreamGetCaptureInfo", 11030, cuStreamGetCaptureInfo_v2,         \
	    CUEMU_LEGACY)                                                     \
	X("cuStreamGetCaptureInfo", 11030, cuStreamGetCaptureInfo_v2_ptsz,    \
	    CUEMU_PTDS)                                                       \
	X("cuStreamGetCaptureInfo", 12030, cuStreamGetCaptureInfo_v3,         \
	    CUEMU_LEGACY)                                                     \
	X("cuStreamGetCaptureInfo", 12030, cuStreamGetCaptureInfo_v3_ptsz,    \
	    CUEMU_PTDS)                                                       \
	X("cuThreadExchangeStreamCaptureMode", 10010,                         \
	    cuThreadExchangeStreamCaptureMode, CUEMU_LEGACY)                  \
	X("cuGraphDestroy", 10000, cuGraphDestroy, CUEMU_LEGACY)              \
	X("cuGraphInstantiateWithFlags", 11040, cuGraphInstantiateWithFlags,  \
	    CUEMU_LEGACY)                                                     \
	X("cuGraphExecDestroy", 10000, cuGraphExecDestroy, CUEMU_LEGACY)      \
	X("cuGraphLaunch", 10000, cuGraphLaunch, CUEMU_LEGACY)                \
	X("cuGraphLaunch", 10000, cuGraphLaunch_ptsz, CUEMU_PTDS)    \
	X("cuIpcGetMemHandle", 4010, cuIpcGetMemHandle, CUEMU_LEGACY)         \
	X("cuIpcOpenMemHandle", 4010, cuIpcOpenMemHandle, CUEMU_LEGACY)       \
	X("cuIpcOpenMemHandle", 11000, cuIpcOpenMemHandle_v2, CUEMU_LEGACY)   \
	X("cuIpcCloseMemHandle", 4010, cuIpcCloseMemHandle, CUEMU_LEGACY)

/* The per-thread-stream variants are not declared by cuda.h in every
 * configuration; declare them here with the signatures of cudaTypedefs.h. */
CUresult CUDAAPI cuMemAllocAsync_ptsz(CUdeviceptr *, size_t, CUstream);
CUresult CUDAAPI cuMemFreeAsync_ptsz(CUdeviceptr, CUstream);
CUresult CUDAAPI cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *, size_t,
    CUmemoryPool, CUstream);

/*
 * Internal entry points (CUEMU_PROCADDR_INTERNAL=1): the real driver need
 * not hand out the addresses dlsym shows (those may be thin exported
 * wrappers), so a hook that recognises the driver's answer by comparing it
 * with dlsym's is not enough.  Here each table entry gets a trampoline, a
 * hidden jump to the function, and cuGetProcAddress answers with it.  The
 * jump binds inside this library (linked -Bsymbolic-functions), never to a
 * preloaded definition of the same name.
 */
#if defined(__x86_64__)
#if defined(__CET__) && (__CET__ & 1)
#define CUEMU_TRAMP_BODY(f)	"	endbr64\n	jmp	" #f "\n"
#else
#define CUEMU_TRAMP_BODY(f)	"	jmp	" #f "\n"
#endif
#elif defined(__aarch64__)
#define CUEMU_TRAMP_BODY(f)	"	b	" #f "\n"
#endif

#ifdef CUEMU_TRAMP_BODY
#define CUEMU_HAVE_TRAMPS 1
#define CUEMU_TRAMP_ASM(n, v, f, k)					\
	"	.globl	cuemu_tramp_" #f "\n"				\
	"	.hidden	cuemu_tramp_" #f "\n"				\
	"	.type	cuemu_tramp_" #f ", @function\n"		\
	"	.p2align 4\n"						\
	"cuemu_tramp_" #f ":\n"					\
	CUEMU_TRAMP_BODY(f)						\
	"	.size	cuemu_tramp_" #f ", .-cuemu_tramp_" #f "\n"
__asm__("	.text\n" CUEMU_PROCS(CUEMU_TRAMP_ASM));
#define CUEMU_TRAMP_DECL(n, v, f, k)					\
	extern void cuemu_tramp_##f(void) __attribute__((visibility("hidden")));
CUEMU_PROCS(CUEMU_TRAMP_DECL)
#define CUEMU_TRAMP(f)	((void *)cuemu_tramp_##f)
#else
#define CUEMU_HAVE_TRAMPS 0
#define CUEMU_TRAMP(f)	NULL
#endif

struct cuemu_proc {
	const char	*name;
	int		version;
	void		*fn;
	void		*tramp;	/* the internal entry point, or NULL */
	int		kind;
};

#define CUEMU_PROC_ENTRY(n, v, f, k) { n, v, (void *)(f), CUEMU_TRAMP(f), k },
static const struct cuemu_proc cuemu_procs[] = { CUEMU_PROCS(CUEMU_PROC_ENTRY) };

static pthread_once_t	cuemu_procaddr_once = PTHREAD_ONCE_INIT;
static int		cuemu_procaddr_mode;	/* 0, 1; -1: invalid */

static void
cuemu_procaddr_read(void)
{
	const char *s = getenv("CUEMU_PROCADDR_INTERNAL");

	if (s == NULL || strcmp(s, "0") == 0)
		cuemu_procaddr_mode = 0;
	else if (strcmp(s, "1") == 0 && CUEMU_HAVE_TRAMPS)
		cuemu_procaddr_mode = 1;
	else {
		cuemu_procaddr_mode = -1;
		fprintf(stderr, "cuemu: CUEMU_PROCADDR_INTERNAL=\"%s\": expected "
		    "0 or 1%s\n", s, CUEMU_HAVE_TRAMPS ? "" :
		    " (1 needs x86_64 or aarch64)");
	}
}

int
cuemu_procaddr_setting(bool *on)
{
	pthread_once(&cuemu_procaddr_once, cuemu_procaddr_read);
	if (cuemu_procaddr_mode < 0)
		return -1;
	*on = cuemu_procaddr_mode == 1;
	return 0;
}

/* Finds the ABI for (symbol, version, per_thread); sets *status. */
static void *
cuemu_proc_find(const char *symbol, int version, bool per_thread,
    bool internal, CUdriverProcAddressQueryResult *status)
{
	const struct cuemu_proc *best = NULL, *best_pt = NULL;
	bool known = false;
	size_t i;

	for (i = 0; i < sizeof(cuemu_procs) / sizeof(cuemu_procs[0]); i++) {
		const struct cuemu_proc *p = &cuemu_procs[i];

		if (strcmp(p->name, symbol) != 0)
			continue;
		known = true;
		if (p->version > version)
			continue;
		if (p->kind == CUEMU_PTDS) {
			if (best_pt == NULL || p->version > best_pt->version)
				best_pt = p;
		} else if (best == NULL || p->version > best->version)
			best = p;
	}
	if (per_thread && best_pt != NULL)
		best = best_pt;
	if (best == NULL) {
		*status = known ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT :
		    CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
		return NULL;
	}
	*status = CU_GET_PROC_ADDRESS_SUCCESS;
	return internal ? best->tramp : best->fn;
}

static CUresult
cuemu_get_proc(const char *symbol, void **pfn, int cudaVersion,
    cuuint64_t flags, CUdriverProcAddressQueryResult *symbolStatus)
{
	const cuuint64_t known = CU_GET_PROC_ADDRESS_LEGACY_STREAM |
	    CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
	CUdriverProcAddressQueryResult st;
	bool internal;
	CUresult r;

	/* Read here too: the runtime asks before cuInit. */
	if (cuemu_procaddr_setting(&internal) != 0)
		return CUDA_ERROR_INVALID_VALUE;
	/* The runtime looks up cuInit itself this way: no init needed. */
	if ((r = cuemu_enter("cuGetProcAddress", false)) != CUDA_SUCCESS)
		return r;
	if (symbol == NULL || pfn == NULL || (flags & ~known) != 0 ||
	    cudaVersion <= 0 || cudaVersion > CUEMU_DRIVER_VERSION)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	*pfn = cuemu_proc_find(symbol, cudaVersion,
	    (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0,
	    internal, &st);
	if (symbolStatus != NULL)
		*symbolStatus = st;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion,
    cuuint64_t flags, CUdriverProcAddressQueryResult *symbolStatus)
{
	return cuemu_get_proc(symbol, pfn, cudaVersion, flags, symbolStatus);
}

CUEMU_EXPORT CUresult CUDAAPI
cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion,
    cuuint64_t flags)
{
	return cuemu_get_proc(symbol, pfn, cudaVersion, flags, NULL);
}
