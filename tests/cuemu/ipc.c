/*
 * cuemu legacy IPC: cuIpcGetMemHandle, cuIpcOpenMemHandle(_v2),
 * cuIpcCloseMemHandle on classic (cuMemAlloc) memory.
 *
 * A classic allocation is a memfd the exporting process keeps open, so the
 * 64-byte handle names it by where it lives: the exporter's pid, the fd
 * number there, and the memfd's identity (st_dev, st_ino) that makes a
 * reused pid or fd number harmless.  cuIpcOpenMemHandle in another process
 * opens /proc/<pid>/fd/<fd> (the kernel checks the opener may: same uid, or
 * ptrace rights), checks it is the very memfd named and cuemu memory of this
 * instance, and maps it read-write; the mapping keeps the memory alive (and
 * counted) whatever the exporter does next.  cuIpcCloseMemHandle unmaps once
 * every open of it in this process is closed.
 *
 * Stricter than the driver, as documented in cuda.h: a handle is given only
 * for the base of a cuMemAlloc allocation (VMM mappings, stream-ordered
 * memory and imported memory are refused with CUDA_ERROR_INVALID_VALUE, as
 * the driver refuses VMM memory); open takes only the documented flag,
 * CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS; a handle of this very process is
 * CUDA_ERROR_INVALID_CONTEXT (the driver's answer); a handle whose memory
 * is gone (freed, exporter exited) or that is not cuemu's is
 * CUDA_ERROR_INVALID_HANDLE.
 */
#include "cuemu_internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CUEMU_PAGE 4096u
static const char cuemu_ipc_magic[8] = { 'c', 'u', 'e', 'm', 'u', 'I', 'P', 'C' };

/* The handle's bytes (fits CU_IPC_HANDLE_SIZE). */
struct cuemu_ipc_wire {
	char		magic[8];
	int32_t		pid;	/* exporter */
	int32_t		fd;	/* the memfd's number there */
	int32_t		device;
	uint32_t	reserved;
	uint64_t	st_dev, st_ino;
	uint64_t	size;	/* the allocation's, as asked */
};

_Static_assert(sizeof(struct cuemu_ipc_wire) <= CU_IPC_HANDLE_SIZE,
    "IPC handle layout too big");

/* One opened handle in this process. */
struct cuemu_ipc_open {
	CUdeviceptr		base;
	size_t			size;
	uint64_t		st_dev, st_ino;
	unsigned		refs;
	struct cuemu_ipc_open	*next;
};

static struct cuemu_ipc_open	*cuemu_ipc_opens;	/* under the lock */

static size_t
cuemu_ipc_span(size_t size)
{
	return (size + CUEMU_PAGE - 1) & ~(size_t)(CUEMU_PAGE - 1);
}

CUEMU_EXPORT CUresult CUDAAPI
cuIpcGetMemHandle(CUipcMemHandle *pHandle, CUdeviceptr dptr)
{
	struct cuemu_ipc_wire w;
	struct cuemu_range rg;
	struct stat st;
	int fd;

	CUEMU_ENTER("cuIpcGetMemHandle");
	if (cuemu_current_device() < 0)
		return cuemu_ret(CUDA_ERROR_INVALID_CONTEXT);
	if (pHandle == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	/* Only the base of a cuMemAlloc allocation: VMM memory "does not
	 * support the legacy interprocess communication functions". */
	if (!cuemu_lookup(dptr, &rg) || rg.kind != CUEMU_KIND_ALLOC ||
	    rg.base != dptr || (fd = cuemu_alloc_fd(dptr)) < 0 ||
	    fstat(fd, &st) != 0)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	memset(&w, 0, sizeof(w));
	memcpy(w.magic, cuemu_ipc_magic, sizeof(w.magic));
	w.pid = (int32_t)getpid();
	w.fd = fd;
	w.device = rg.device;
	w.st_dev = (uint64_t)st.st_dev;
	w.st_ino = (uint64_t)st.st_ino;
	w.size = rg.size;
	memset(pHandle, 0, sizeof(*pHandle));
	memcpy(pHandle->reserved, &w, sizeof(w));
	return cuemu_ret(CUDA_SUCCESS);
}

/* Opens the memfd a handle names; -1 if it is not (or no longer) there. */
static int
cuemu_ipc_reach(const struct cuemu_ipc_wire *w)
{
	char path[64];
	struct stat st;
	uint64_t size;
	unsigned types;
	int fd, dev;

	if (w->pid <= 0 || w->fd < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)w->pid, (int)w->fd);
	if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
		return -1;
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_dev != w->st_dev ||
	    (uint64_t)st.st_ino != w->st_ino ||
	    cuemu_capacity_identify(fd, &dev, &size, &types) != 0 ||
	    dev != w->device || size != cuemu_ipc_span(w->size)) {
		close(fd);
		return -1;
	}
	return fd;
}

static CUresult
cuemu_ipc_open(const char *name, CUdeviceptr *pdptr, CUipcMemHandle handle,
    unsigned int Flags)
{
	struct cuemu_ipc_open *o;
	struct cuemu_ipc_wire w;
	size_t span;
	void *p;
	int fd;

	CUEMU_ENTER(name);
	if (cuemu_current_device() < 0)
		return cuemu_ret(CUDA_ERROR_INVALID_CONTEXT);
	if (pdptr == NULL || Flags != CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	memcpy(&w, handle.reserved, sizeof(w));
	if (memcmp(w.magic, cuemu_ipc_magic, sizeof(w.magic)) != 0 ||
	    w.size == 0 || !cuemu_device_valid(w.device))
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	/* The exporting process itself may not open its own handle. */
	if (w.pid == (int32_t)getpid())
		return cuemu_ret(CUDA_ERROR_INVALID_CONTEXT);
	for (o = cuemu_ipc_opens; o != NULL; o = o->next)
		if (o->st_dev == w.st_dev && o->st_ino == w.st_ino) {
			o->refs++;
			*pdptr = o->base;
			return cuemu_ret(CUDA_SUCCESS);
		}
	if ((fd = cuemu_ipc_reach(&w)) < 0)
		return cuemu_ret(CUDA_ERROR_INVALID_HANDLE);
	span = cuemu_ipc_span(w.size);
	p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		close(fd);
		return cuemu_ret(CUDA_ERROR_MAP_FAILED);
	}
	if ((o = calloc(1, sizeof(*o))) == NULL ||
	    cuemu_alloc_add((CUdeviceptr)(uintptr_t)p, w.size, w.device, fd,
	    CUEMU_KIND_IPC) != 0) {
		free(o);
		munmap(p, span);
		close(fd);
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	}
	o->base = (CUdeviceptr)(uintptr_t)p;
	o->size = w.size;
	o->st_dev = w.st_dev;
	o->st_ino = w.st_ino;
	o->refs = 1;
	o->next = cuemu_ipc_opens;
	cuemu_ipc_opens = o;
	*pdptr = o->base;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuIpcOpenMemHandle_v2(CUdeviceptr *pdptr, CUipcMemHandle handle,
    unsigned int Flags)
{
	return cuemu_ipc_open("cuIpcOpenMemHandle", pdptr, handle, Flags);
}

/* The CUDA < 11.0 ABI of the same call. */
CUEMU_EXPORT CUresult CUDAAPI
cuIpcOpenMemHandle(CUdeviceptr *pdptr, CUipcMemHandle handle,
    unsigned int Flags)
{
	return cuemu_ipc_open("cuIpcOpenMemHandle", pdptr, handle, Flags);
}

CUEMU_EXPORT CUresult CUDAAPI
cuIpcCloseMemHandle(CUdeviceptr dptr)
{
	struct cuemu_ipc_open **pp, *o;
	int fd;

	CUEMU_ENTER("cuIpcCloseMemHandle");
	if (cuemu_current_device() < 0)
		return cuemu_ret(CUDA_ERROR_INVALID_CONTEXT);
	for (pp = &cuemu_ipc_opens; (o = *pp) != NULL; pp = &o->next)
		if (o->base == dptr)
			break;
	if (o == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (--o->refs > 0)
		return cuemu_ret(CUDA_SUCCESS);
	*pp = o->next;
	if ((fd = cuemu_ipc_remove(dptr)) >= 0)
		close(fd);
	munmap((void *)(uintptr_t)dptr, cuemu_ipc_span(o->size));
	free(o);
	return cuemu_ret(CUDA_SUCCESS);
}
