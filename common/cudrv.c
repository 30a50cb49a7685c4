/*
 * The CUDA driver, loaded lazily (see cudrv.h): one weak, hidden stand-in
 * per driver function the product calls, generated from one list.  Each
 * looks its real function up in libcuda.so.1 on its first call (dlopen'd
 * then, or found already loaded) and calls it; without a driver it returns
 * CUDA_ERROR_NOT_INITIALIZED (CUDA_ERROR_NOT_FOUND for a function this
 * driver lacks), which every caller already handles as a failed call.
 *
 * Lookups use dlsym on the driver's handle.  In libvmm_client.so that is
 * the shim's dlsym, which answers a *hooked* name with the hook; and a
 * stand-in there would clash with the hook's definition (a link error, on
 * purpose: a hidden stand-in would otherwise hide the exported hook).  So
 * the names the shim hooks get stand-ins only in vmmd's copy.
 */
#include "cudrv.h"

#include <cuda.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

#define CUDRV_LIB	"libcuda.so.1"

/*
 * X(ABI name, (parameters), (arguments)).  ABI names, as cuda.h's macros
 * make them (cuMemGetInfo -> cuMemGetInfo_v2): the compiler checks each
 * definition against the toolkit's declaration of that name.
 */
#define CUDRV_FUNCS(X)							\
	X(cuInit, (unsigned int f), (f))				\
	X(cuDriverGetVersion, (int *v), (v))				\
	X(cuGetErrorName, (CUresult e, const char **s), (e, s))		\
	X(cuGetErrorString, (CUresult e, const char **s), (e, s))	\
	X(cuDeviceGet, (CUdevice *d, int o), (d, o))			\
	X(cuDeviceGetCount, (int *n), (n))				\
	X(cuDeviceGetName, (char *n, int len, CUdevice d), (n, len, d))	\
	X(cuDeviceGetUuid_v2, (CUuuid *u, CUdevice d), (u, d))		\
	X(cuDeviceTotalMem_v2, (size_t *b, CUdevice d), (b, d))	\
	X(cuDeviceGetAttribute, (int *v, CUdevice_attribute a, CUdevice d), \
	    (v, a, d))							\
	X(cuDeviceCanAccessPeer, (int *v, CUdevice d, CUdevice p), (v, d, p)) \
	X(cuDevicePrimaryCtxRetain, (CUcontext *c, CUdevice d), (c, d))	\
	X(cuDevicePrimaryCtxRelease_v2, (CUdevice d), (d))		\
	X(cuDevicePrimaryCtxGetState, (CUdevice d, unsigned int *f, int *a), \
	    (d, f, a))							\
	X(cuCtxGetCurrent, (CUcontext *c), (c))				\
	X(cuCtxSetCurrent, (CUcontext c), (c))				\
	X(cuCtxPushCurrent_v2, (CUcontext c), (c))			\
	X(cuCtxPopCurrent_v2, (CUcontext *c), (c))			\
	X(cuCtxGetDevice, (CUdevice *d), (d))				\
	X(cuCtxSynchronize, (void), ())					\
	X(cuStreamSynchronize, (CUstream s), (s))			\
	X(cuStreamQuery, (CUstream s), (s))				\
	X(cuStreamGetCtx, (CUstream s, CUcontext *c), (s, c))		\
	X(cuStreamWaitEvent, (CUstream s, CUevent e, unsigned int f),	\
	    (s, e, f))							\
	X(cuStreamIsCapturing, (CUstream s, CUstreamCaptureStatus *st),	\
	    (s, st))							\
	X(cuThreadExchangeStreamCaptureMode, (CUstreamCaptureMode *m),	\
	    (m))							\
	X(cuEventCreate, (CUevent *e, unsigned int f), (e, f))		\
	X(cuEventDestroy_v2, (CUevent e), (e))				\
	X(cuEventRecord, (CUevent e, CUstream s), (e, s))		\
	X(cuEventQuery, (CUevent e), (e))				\
	X(cuEventSynchronize, (CUevent e), (e))				\
	X(cuMemcpyDtoD_v2, (CUdeviceptr d, CUdeviceptr s, size_t n),	\
	    (d, s, n))							\
	X(cuMemsetD8_v2, (CUdeviceptr d, unsigned char c, size_t n),	\
	    (d, c, n))							\
	X(cuMemGetAllocationGranularity, (size_t *g,			\
	    const CUmemAllocationProp *p,				\
	    CUmemAllocationGranularity_flags o), (g, p, o))		\
	X(cuMemImportFromShareableHandle, (CUmemGenericAllocationHandle *h, \
	    void *os, CUmemAllocationHandleType t), (h, os, t))	\
	X(cuMemAddressReserve, (CUdeviceptr *p, size_t n, size_t al,	\
	    CUdeviceptr a, unsigned long long f), (p, n, al, a, f))	\
	X(cuMemAddressFree, (CUdeviceptr p, size_t n), (p, n))		\
	X(cuMemSetAccess, (CUdeviceptr p, size_t n,			\
	    const CUmemAccessDesc *d, size_t c), (p, n, d, c))		\
	X(cuMemGetAccess, (unsigned long long *f, const CUmemLocation *l, \
	    CUdeviceptr p), (f, l, p))

/* Names the shim hooks (its exported hook is the definition in
 * libvmm_client.so): stand-ins only in vmmd's copy (VMM_CUDRV_DAEMON). */
#ifdef VMM_CUDRV_DAEMON
#define CUDRV_FUNCS_DAEMON(X)						\
	X(cuMemGetInfo_v2, (size_t *f, size_t *t), (f, t))		\
	X(cuMemCreate, (CUmemGenericAllocationHandle *h, size_t n,	\
	    const CUmemAllocationProp *p, unsigned long long f),	\
	    (h, n, p, f))						\
	X(cuMemRelease, (CUmemGenericAllocationHandle h), (h))		\
	X(cuMemGetAllocationPropertiesFromHandle, (CUmemAllocationProp *p, \
	    CUmemGenericAllocationHandle h), (p, h))			\
	X(cuMemRetainAllocationHandle, (CUmemGenericAllocationHandle *h, \
	    void *a), (h, a))						\
	X(cuMemExportToShareableHandle, (void *sh,			\
	    CUmemGenericAllocationHandle h, CUmemAllocationHandleType t, \
	    unsigned long long f), (sh, h, t, f))			\
	X(cuMemMap, (CUdeviceptr p, size_t n, size_t o,		\
	    CUmemGenericAllocationHandle h, unsigned long long f),	\
	    (p, n, o, h, f))						\
	X(cuMemUnmap, (CUdeviceptr p, size_t n), (p, n))		\
	X(cuPointerGetAttribute, (void *v, CUpointer_attribute a,	\
	    CUdeviceptr p), (v, a, p))
#else
#define CUDRV_FUNCS_DAEMON(X)
#endif

static pthread_once_t	cudrv_once = PTHREAD_ONCE_INIT;
static void		*cudrv_handle;		/* never closed */
static int		 cudrv_done;		/* cudrv_once has run */
static char		 cudrv_err[256];

static void
cudrv_open(void)
{
	const char *e;
	size_t i;

	/* The application's driver if it loaded one (by any path: the
	 * loader matches the soname), else the system's. */
	if ((cudrv_handle = dlopen(CUDRV_LIB, RTLD_LAZY | RTLD_NOLOAD)) == NULL)
		cudrv_handle = dlopen(CUDRV_LIB, RTLD_LAZY | RTLD_LOCAL);
	if (cudrv_handle == NULL) {
		e = dlerror();
		if (e == NULL)
			e = "cannot load " CUDRV_LIB;
		for (i = 0; e[i] != '\0' && i + 1 < sizeof(cudrv_err); i++)
			cudrv_err[i] = e[i];
		cudrv_err[i] = '\0';
	}
	__atomic_store_n(&cudrv_done, 1, __ATOMIC_RELEASE);
}

bool
vmm_cudrv_load(void)
{
	if (!__atomic_load_n(&cudrv_done, __ATOMIC_ACQUIRE))
		pthread_once(&cudrv_once, cudrv_open);
	return cudrv_handle != NULL;
}

const char *
vmm_cudrv_error(void)
{
	return vmm_cudrv_load() ? NULL : cudrv_err;
}

bool
vmm_cudrv_loaded(void)
{
	return __atomic_load_n(&cudrv_done, __ATOMIC_ACQUIRE) &&
	    cudrv_handle != NULL;
}

/* The real function called name, or NULL (*why: the error to return). */
static void *
cudrv_sym(const char *name, CUresult *why)
{
	void *fn;

	if (!vmm_cudrv_load()) {
		*why = CUDA_ERROR_NOT_INITIALIZED;
		return NULL;
	}
	if ((fn = dlsym(cudrv_handle, name)) == NULL)
		*why = CUDA_ERROR_NOT_FOUND;
	return fn;
}

/* One stand-in: the real function is looked up once (a racing thread finds
 * and stores the same pointer); a failed lookup is tried again next call. */
#define CUDRV_STUB(name, params, args)					\
	__attribute__((visibility("hidden"))) CUresult CUDAAPI		\
	name params							\
	{								\
		static __typeof__(&name) real;				\
		__typeof__(&name) fn = __atomic_load_n(&real,		\
		    __ATOMIC_ACQUIRE);					\
		CUresult why = CUDA_SUCCESS;				\
									\
		if (fn == NULL) {					\
			fn = (__typeof__(&name))cudrv_sym(#name, &why);	\
			if (fn == NULL)					\
				return why;				\
			__atomic_store_n(&real, fn, __ATOMIC_RELEASE);	\
		}							\
		return fn args;						\
	}
CUDRV_FUNCS(CUDRV_STUB)
CUDRV_FUNCS_DAEMON(CUDRV_STUB)
#undef CUDRV_STUB
