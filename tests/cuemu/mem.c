/*
 * cuemu classic memory and data movement: cuMemAlloc and friends, copies and
 * memsets (host memcpy after checking every byte is device memory the caller
 * may touch), streams and events (immediate, but validated), pointer queries.
 */
#include "cuemu_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CUEMU_PAGE 4096u
#define CUEMU_PITCH_ALIGN 512u


/* Leaves with INVALID_CONTEXT unless a context is current; returns device. */
#define CUEMU_NEED_CTX(devvar)                                          \
	do {                                                            \
		if (((devvar) = cuemu_current_device()) < 0)            \
			return cuemu_ret(CUDA_ERROR_INVALID_CONTEXT);   \
	} while (0)

/* ---- streams and events ----------------------------------------------------- */

#define CUEMU_STREAM_MAGIC 0x7374726du
#define CUEMU_EVENT_MAGIC 0x6576656eu

struct CUstream_st {
	uint32_t		magic;
	unsigned		flags;
	int			device;	/* of the context that created it */
	struct CUstream_st	*next;
};

struct CUevent_st {
	uint32_t		magic;
	unsigned		flags;
	int			device;	/* of the context that created it */
	bool			recorded;
	struct CUevent_st	*next;
};

static struct CUstream_st	*cuemu_streams;
static struct CUevent_st	*cuemu_events;

/* Valid: the legacy and per-thread default streams, or one we created.
 * Compares pointer values only: a bad handle is never dereferenced. */
bool
cuemu_stream_valid(CUstream s)
{
	struct CUstream_st *p;

	if (s == NULL || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD)
		return true;
	for (p = cuemu_streams; p != NULL; p = p->next)
		if (p == s)
			return true;
	return false;
}

/* The device of a valid stream's context; dev for the default streams. */
static int
cuemu_stream_device(CUstream s, int dev)
{
	if (s == NULL || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD)
		return dev;
	return s->device;
}

void
cuemu_stream_props(CUstream s, int dev, int *devp, unsigned *flagsp)
{
	*devp = cuemu_stream_device(s, dev);
	*flagsp = s == NULL || s == CU_STREAM_LEGACY ||
	    s == CU_STREAM_PER_THREAD ? 0 : s->flags;
}

static struct CUevent_st *
cuemu_event_find(CUevent e)
{
	struct CUevent_st *p;

	for (p = cuemu_events; p != NULL; p = p->next)
		if (p == e)
			return p;
	return NULL;
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamCreate(CUstream *phStream, unsigned int Flags)
{
	struct CUstream_st *s;
	int dev;

	CUEMU_ENTER("cuStreamCreate");
	CUEMU_NEED_CTX(dev);
	if (phStream == NULL || (Flags & ~(unsigned)CU_STREAM_NON_BLOCKING) != 0)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	s->magic = CUEMU_STREAM_MAGIC;
	s->flags = Flags;
	s->device = dev;
	s->next = cuemu_streams;
	cuemu_streams = s;
	*phStream = s;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamDestroy_v2(CUstream hStream)
{
	struct CUstream_st **pp;
	int dev;

	CUEMU_ENTER("cuStreamDestroy");
	CUEMU_NEED_CTX(dev);
	for (pp = &cuemu_streams; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == hStream) {
			struct CUstream_st *s = *pp;
			CUresult r;

			if ((r = cuemu_capture_stream_gone(s)) != CUDA_SUCCESS)
				return cuemu_ret(r);
			*pp = s->next;
			s->magic = 0;
			free(s);
			return cuemu_ret(CUDA_SUCCESS);
		}
	}
	return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamDestroy(CUstream hStream)
{
	return cuStreamDestroy_v2(hStream);
}

static CUresult
cuemu_stream_sync(const char *name, CUstream hStream, bool query)
{
	int dev;

	CUEMU_ENTER(name);
	CUEMU_NEED_CTX(dev);
	if (!cuemu_stream_valid(hStream))
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	(void)query;	/* every operation completed when it was issued */
	return cuemu_ret(cuemu_capture_wait(hStream, dev));
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamSynchronize(CUstream hStream)
{
	return cuemu_stream_sync("cuStreamSynchronize", hStream, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamSynchronize_ptsz(CUstream hStream)
{
	return cuemu_stream_sync("cuStreamSynchronize", cuemu_ptsz(hStream),
	    false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamQuery(CUstream hStream)
{
	return cuemu_stream_sync("cuStreamQuery", hStream, true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuStreamQuery_ptsz(CUstream hStream)
{
	return cuemu_stream_sync("cuStreamQuery", cuemu_ptsz(hStream), true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuEventCreate(CUevent *phEvent, unsigned int Flags)
{
	const unsigned known = CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING |
	    CU_EVENT_INTERPROCESS;
	struct CUevent_st *e;
	int dev;

	CUEMU_ENTER("cuEventCreate");
	CUEMU_NEED_CTX(dev);
	if (phEvent == NULL || (Flags & ~known) != 0 ||
	    ((Flags & CU_EVENT_INTERPROCESS) &&
	    !(Flags & CU_EVENT_DISABLE_TIMING)))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	e->magic = CUEMU_EVENT_MAGIC;
	e->flags = Flags;
	e->device = dev;
	e->next = cuemu_events;
	cuemu_events = e;
	*phEvent = e;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuEventDestroy_v2(CUevent hEvent)
{
	struct CUevent_st **pp;
	int dev;

	CUEMU_ENTER("cuEventDestroy");
	CUEMU_NEED_CTX(dev);
	for (pp = &cuemu_events; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == hEvent) {
			struct CUevent_st *e = *pp;

			cuemu_capture_event_gone(e);
			*pp = e->next;
			e->magic = 0;
			free(e);
			return cuemu_ret(CUDA_SUCCESS);
		}
	}
	return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
}

CUEMU_EXPORT CUresult CUDAAPI
cuEventDestroy(CUevent hEvent)
{
	return cuEventDestroy_v2(hEvent);
}

static CUresult
cuemu_event_record(CUevent hEvent, CUstream hStream)
{
	struct CUevent_st *e;
	int dev;

	CUEMU_ENTER("cuEventRecord");
	CUEMU_NEED_CTX(dev);
	if ((e = cuemu_event_find(hEvent)) == NULL ||
	    !cuemu_stream_valid(hStream))
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	/* Event and stream must belong to the same context; the default
	 * streams are the current context's. */
	if (e->device != cuemu_stream_device(hStream, dev))
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	e->recorded = true;
	return cuemu_ret(cuemu_capture_event_record(e, hStream, dev));
}

CUEMU_EXPORT CUresult CUDAAPI
cuEventRecord(CUevent hEvent, CUstream hStream)
{
	return cuemu_event_record(hEvent, hStream);
}

CUEMU_EXPORT CUresult CUDAAPI
cuEventRecord_ptsz(CUevent hEvent, CUstream hStream)
{
	return cuemu_event_record(hEvent, cuemu_ptsz(hStream));
}

CUEMU_EXPORT CUresult CUDAAPI
cuEventSynchronize(CUevent hEvent)
{
	int dev;

	CUEMU_ENTER("cuEventSynchronize");
	CUEMU_NEED_CTX(dev);
	if (cuemu_event_find(hEvent) == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	return cuemu_ret(cuemu_capture_event_wait(hEvent));
}

CUEMU_EXPORT CUresult CUDAAPI
cuEventQuery(CUevent hEvent)
{
	CUEMU_ENTER("cuEventQuery");
	if (cuemu_event_find(hEvent) == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	return cuemu_ret(cuemu_capture_event_wait(hEvent));
}

/* ---- classic allocation -------------------------------------------------------- */

/* Allocates size bytes of device memory on dev as a mapped memfd; lock held. */
static CUresult
cuemu_alloc(int dev, size_t size, enum cuemu_kind kind, CUdeviceptr *out)
{
	size_t span;
	CUresult r;
	void *p;
	int fd;

	if (size == 0 || size > SIZE_MAX - CUEMU_PAGE)
		return CUDA_ERROR_INVALID_VALUE;
	span = (size + CUEMU_PAGE - 1) & ~(size_t)(CUEMU_PAGE - 1);
	cuemu_charge(CUEMU_COST_CREATE, span / cuemu_cfg.granularity);
	if ((r = cuemu_capacity_create(dev, span, 0, &fd)) != CUDA_SUCCESS)
		return r;
	p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		cuemu_capacity_close(fd);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	if (cuemu_alloc_add((CUdeviceptr)(uintptr_t)p, size, dev, fd, kind) != 0) {
		munmap(p, span);
		cuemu_capacity_close(fd);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	*out = (CUdeviceptr)(uintptr_t)p;
	return CUDA_SUCCESS;
}

/* Frees the classic allocation at dptr; lock held. */
static CUresult
cuemu_free(CUdeviceptr dptr)
{
	enum cuemu_kind kind;
	size_t size;
	int fd;

	if ((fd = cuemu_alloc_remove(dptr, &size, &kind)) < 0)
		return CUDA_ERROR_INVALID_VALUE;
	munmap((void *)(uintptr_t)dptr,
	    (size + CUEMU_PAGE - 1) & ~(size_t)(CUEMU_PAGE - 1));
	cuemu_capacity_close(fd);
	return CUDA_SUCCESS;
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
	int dev;

	CUEMU_ENTER("cuMemAlloc");
	CUEMU_NEED_CTX(dev);
	CUEMU_CAPTURE_UNSAFE();
	if (dptr == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	return cuemu_ret(cuemu_alloc(dev, bytesize, CUEMU_KIND_ALLOC, dptr));
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes,
    size_t Height, unsigned int ElementSizeBytes)
{
	size_t pitch;
	CUresult r;
	int dev;

	CUEMU_ENTER("cuMemAllocPitch");
	CUEMU_NEED_CTX(dev);
	CUEMU_CAPTURE_UNSAFE();
	if (dptr == NULL || pPitch == NULL || WidthInBytes == 0 || Height == 0 ||
	    (ElementSizeBytes != 4 && ElementSizeBytes != 8 &&
	    ElementSizeBytes != 16) || WidthInBytes > SIZE_MAX / 2)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	pitch = (WidthInBytes + CUEMU_PITCH_ALIGN - 1) &
	    ~(size_t)(CUEMU_PITCH_ALIGN - 1);
	if (Height > SIZE_MAX / pitch)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	r = cuemu_alloc(dev, pitch * Height, CUEMU_KIND_ALLOC, dptr);
	if (r == CUDA_SUCCESS)
		*pPitch = pitch;
	return cuemu_ret(r);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemFree_v2(CUdeviceptr dptr)
{
	int dev;

	CUEMU_ENTER("cuMemFree");
	CUEMU_NEED_CTX(dev);
	CUEMU_CAPTURE_UNSAFE();
	return cuemu_ret(cuemu_free(dptr));
}

static CUresult
cuemu_alloc_async(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
	int dev;

	const struct cuemu_op op = { .kind = CUEMU_OP_UNSUPPORTED };
	bool captured;
	CUresult r;

	CUEMU_ENTER("cuMemAllocAsync");
	CUEMU_NEED_CTX(dev);
	if (dptr == NULL || !cuemu_stream_valid(hStream))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((r = cuemu_capture_issue(hStream, dev, &op, &captured)) !=
	    CUDA_SUCCESS)
		return cuemu_ret(r);
	return cuemu_ret(cuemu_alloc(dev, bytesize, CUEMU_KIND_ASYNC, dptr));
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
	return cuemu_alloc_async(dptr, bytesize, hStream);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
	return cuemu_alloc_async(dptr, bytesize, cuemu_ptsz(hStream));
}

static CUresult
cuemu_free_async(CUdeviceptr dptr, CUstream hStream)
{
	int dev;

	const struct cuemu_op op = { .kind = CUEMU_OP_UNSUPPORTED };
	bool captured;
	CUresult r;

	CUEMU_ENTER("cuMemFreeAsync");
	CUEMU_NEED_CTX(dev);
	if (!cuemu_stream_valid(hStream))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((r = cuemu_capture_issue(hStream, dev, &op, &captured)) !=
	    CUDA_SUCCESS)
		return cuemu_ret(r);
	return cuemu_ret(cuemu_free(dptr));
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream)
{
	return cuemu_free_async(dptr, hStream);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream)
{
	return cuemu_free_async(dptr, cuemu_ptsz(hStream));
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemGetInfo_v2(size_t *free_bytes, size_t *total)
{
	uint64_t used, cap;
	int dev;

	CUEMU_ENTER("cuMemGetInfo");
	CUEMU_NEED_CTX(dev);
	if (free_bytes == NULL || total == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	cuemu_charge(CUEMU_COST_MEMINFO, 1);
	used = cuemu_capacity_used(dev);
	cap = cuemu_capacity_total(dev);
	*total = cap;
	*free_bytes = used >= cap ? 0 : cap - used;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemGetAddressRange_v2(CUdeviceptr *pbase, size_t *psize, CUdeviceptr dptr)
{
	struct cuemu_range rg;
	int dev;

	CUEMU_ENTER("cuMemGetAddressRange");
	CUEMU_NEED_CTX(dev);
	/* On VMM memory the real driver answers with the one mapping. */
	if (!cuemu_lookup(dptr, &rg))
		return cuemu_ret(CUDA_ERROR_NOT_FOUND);
	if (pbase != NULL)
		*pbase = rg.base;
	if (psize != NULL)
		*psize = rg.size;
	return cuemu_ret(CUDA_SUCCESS);
}

/* ---- copies and memsets ------------------------------------------------------ */

/* Copies len bytes after checking each side; dst_dev/src_dev say which side is
 * device memory (for cuMemcpy, decided by lookup). */
static CUresult
cuemu_copy(const char *name, CUdeviceptr dst, bool dst_dev, CUdeviceptr src,
    bool src_dev, size_t len, CUstream stream, bool async)
{
	int dev;

	CUEMU_ENTER(name);
	CUEMU_NEED_CTX(dev);
	if (async && !cuemu_stream_valid(stream))
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	if (len == 0)
		return cuemu_ret(CUDA_SUCCESS);
	if (dst == 0 || src == 0)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	/* The issuing device (the stream's) must have access to each side. */
	if (async)
		dev = cuemu_stream_device(stream, dev);
	if (dst_dev && !cuemu_range_ok(dst, len, PROT_WRITE, dev))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (src_dev && !cuemu_range_ok(src, len, PROT_READ, dev))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	{
		const struct cuemu_op op = { .kind = CUEMU_OP_COPY, .dst = dst,
		    .src = src, .dst_dev = dst_dev, .src_dev = src_dev,
		    .len = len };
		bool captured = false;
		CUresult r = async ?
		    cuemu_capture_issue(stream, dev, &op, &captured) :
		    cuemu_capture_wait(NULL, dev);

		if (r != CUDA_SUCCESS || captured)
			return cuemu_ret(r);
	}
	memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, len);
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyHtoD_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount)
{
	return cuemu_copy("cuMemcpyHtoD", dstDevice, true,
	    (CUdeviceptr)(uintptr_t)srcHost, false, ByteCount, NULL, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyHtoD_v2_ptds(CUdeviceptr dstDevice, const void *srcHost,
    size_t ByteCount)
{
	return cuMemcpyHtoD_v2(dstDevice, srcHost, ByteCount);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyDtoH_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)
{
	return cuemu_copy("cuMemcpyDtoH", (CUdeviceptr)(uintptr_t)dstHost, false,
	    srcDevice, true, ByteCount, NULL, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyDtoH_v2_ptds(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)
{
	return cuMemcpyDtoH_v2(dstHost, srcDevice, ByteCount);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyDtoD_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount)
{
	return cuemu_copy("cuMemcpyDtoD", dstDevice, true, srcDevice, true,
	    ByteCount, NULL, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyDtoD_v2_ptds(CUdeviceptr dstDevice, CUdeviceptr srcDevice,
    size_t ByteCount)
{
	return cuMemcpyDtoD_v2(dstDevice, srcDevice, ByteCount);
}

/* Unified addressing: a pointer inside device memory is device memory. */
static bool
cuemu_is_device(CUdeviceptr p)
{
	struct cuemu_range rg;
	bool r;

	if (cuemu_enter("cuemu_is_device", true) != CUDA_SUCCESS)
		return false;
	r = cuemu_lookup(p, &rg);
	cuemu_leave();
	return r;
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount)
{
	return cuemu_copy("cuMemcpy", dst, cuemu_is_device(dst), src,
	    cuemu_is_device(src), ByteCount, NULL, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpy_ptds(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount)
{
	return cuMemcpy(dst, src, ByteCount);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyHtoDAsync_v2(CUdeviceptr dstDevice, const void *srcHost,
    size_t ByteCount, CUstream hStream)
{
	return cuemu_copy("cuMemcpyHtoDAsync", dstDevice, true,
	    (CUdeviceptr)(uintptr_t)srcHost, false, ByteCount, hStream, true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr dstDevice, const void *srcHost,
    size_t ByteCount, CUstream hStream)
{
	return cuMemcpyHtoDAsync_v2(dstDevice, srcHost, ByteCount,
	    cuemu_ptsz(hStream));
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyDtoHAsync_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount,
    CUstream hStream)
{
	return cuemu_copy("cuMemcpyDtoHAsync", (CUdeviceptr)(uintptr_t)dstHost,
	    false, srcDevice, true, ByteCount, hStream, true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyDtoHAsync_v2_ptsz(void *dstHost, CUdeviceptr srcDevice,
    size_t ByteCount, CUstream hStream)
{
	return cuMemcpyDtoHAsync_v2(dstHost, srcDevice, ByteCount,
	    cuemu_ptsz(hStream));
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyDtoDAsync_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice,
    size_t ByteCount, CUstream hStream)
{
	return cuemu_copy("cuMemcpyDtoDAsync", dstDevice, true, srcDevice, true,
	    ByteCount, hStream, true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyDtoDAsync_v2_ptsz(CUdeviceptr dstDevice, CUdeviceptr srcDevice,
    size_t ByteCount, CUstream hStream)
{
	return cuMemcpyDtoDAsync_v2(dstDevice, srcDevice, ByteCount,
	    cuemu_ptsz(hStream));
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount,
    CUstream hStream)
{
	return cuemu_copy("cuMemcpyAsync", dst, cuemu_is_device(dst), src,
	    cuemu_is_device(src), ByteCount, hStream, true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemcpyAsync_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount,
    CUstream hStream)
{
	return cuMemcpyAsync(dst, src, ByteCount, cuemu_ptsz(hStream));
}

static CUresult
cuemu_memset(const char *name, CUdeviceptr dst, unsigned char uc, size_t n,
    CUstream stream, bool async)
{
	int dev;

	CUEMU_ENTER(name);
	CUEMU_NEED_CTX(dev);
	if (async && !cuemu_stream_valid(stream))
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	if (n == 0)
		return cuemu_ret(CUDA_SUCCESS);
	if (async)
		dev = cuemu_stream_device(stream, dev);
	if (!cuemu_range_ok(dst, n, PROT_WRITE, dev))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	{
		const struct cuemu_op op = { .kind = CUEMU_OP_MEMSET, .dst = dst,
		    .dst_dev = true, .len = n, .value = uc };
		bool captured = false;
		CUresult r = async ?
		    cuemu_capture_issue(stream, dev, &op, &captured) :
		    cuemu_capture_wait(NULL, dev);

		if (r != CUDA_SUCCESS || captured)
			return cuemu_ret(r);
	}
	memset((void *)(uintptr_t)dst, uc, n);
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemsetD8_v2(CUdeviceptr dstDevice, unsigned char uc, size_t N)
{
	return cuemu_memset("cuMemsetD8", dstDevice, uc, N, NULL, false);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemsetD8_v2_ptds(CUdeviceptr dstDevice, unsigned char uc, size_t N)
{
	return cuMemsetD8_v2(dstDevice, uc, N);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemsetD8Async(CUdeviceptr dstDevice, unsigned char uc, size_t N,
    CUstream hStream)
{
	return cuemu_memset("cuMemsetD8Async", dstDevice, uc, N, hStream, true);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemsetD8Async_ptsz(CUdeviceptr dstDevice, unsigned char uc, size_t N,
    CUstream hStream)
{
	return cuMemsetD8Async(dstDevice, uc, N, cuemu_ptsz(hStream));
}

/* ---- pointer attributes ------------------------------------------------------ */

/* Writes one attribute of ptr into data; found says whether ptr is ours.
 * Returns INVALID_VALUE for attributes the emulator does not model. */
static CUresult
cuemu_attr(void *data, CUpointer_attribute a, CUdeviceptr ptr, bool found,
    const struct cuemu_range *rg)
{
	switch (a) {
	case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
		*(unsigned int *)data = found ? CU_MEMORYTYPE_DEVICE : 0;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
		*(CUdeviceptr *)data = found ? ptr : 0;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_HOST_POINTER:
		/* Device memory has no host pointer. */
		*(void **)data = NULL;
		return found ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_IS_MANAGED:
		*(bool *)data = false;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
		*(int *)data = found ? rg->device : -2;
		return CUDA_SUCCESS;
	/* The mappable range: for VMM memory the whole reservation. */
	case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
		*(CUdeviceptr *)data = !found ? 0 : rg->kind == CUEMU_KIND_VMM ?
		    rg->resv_base : rg->base;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
		*(size_t *)data = !found ? 0 : rg->kind == CUEMU_KIND_VMM ?
		    rg->resv_size : rg->size;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_MAPPED:
		*(bool *)data = found;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR:
		*(void **)data = found ? (void *)(uintptr_t)rg->base : NULL;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_MAPPING_SIZE:
		*(size_t *)data = found ? rg->size : 0;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE:
		/* Only cuMemAlloc memory has a legacy IPC handle (ipc.c). */
		*(bool *)data = found && rg->kind == CUEMU_KIND_ALLOC;
		return CUDA_SUCCESS;
	case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES:
		*(unsigned long long *)data = 0;
		return CUDA_SUCCESS;
	default:
		return CUDA_ERROR_INVALID_VALUE;
	}
}

CUEMU_EXPORT CUresult CUDAAPI
cuPointerGetAttribute(void *data, CUpointer_attribute attribute,
    CUdeviceptr ptr)
{
	struct cuemu_range rg;
	CUresult r;
	int dev;

	CUEMU_ENTER("cuPointerGetAttribute");
	CUEMU_NEED_CTX(dev);
	if (data == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	/* A pointer that is not device memory is an error here. */
	if (!cuemu_lookup(ptr, &rg))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	r = cuemu_attr(data, attribute, ptr, true, &rg);
	return cuemu_ret(r);
}

CUEMU_EXPORT CUresult CUDAAPI
cuPointerGetAttributes(unsigned int numAttributes,
    CUpointer_attribute *attributes, void **data, CUdeviceptr ptr)
{
	struct cuemu_range rg;
	unsigned int i;
	bool found;
	int dev;

	CUEMU_ENTER("cuPointerGetAttributes");
	CUEMU_NEED_CTX(dev);
	if (numAttributes == 0 || attributes == NULL || data == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	for (i = 0; i < numAttributes; i++)
		if (data[i] == NULL)
			return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	/* Unlike the singular call, an unknown pointer gets default values. */
	found = cuemu_lookup(ptr, &rg);
	for (i = 0; i < numAttributes; i++) {
		CUresult r = cuemu_attr(data[i], attributes[i], ptr, found, &rg);

		if (r != CUDA_SUCCESS && attributes[i] !=
		    CU_POINTER_ATTRIBUTE_HOST_POINTER)
			return cuemu_ret(r);
	}
	return cuemu_ret(CUDA_SUCCESS);
}
