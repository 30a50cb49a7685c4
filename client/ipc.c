/*
 * Legacy CUDA IPC of pooled memory: what cuIpcGetMemHandle,
 * cuIpcOpenMemHandle and cuIpcCloseMemHandle (and the runtime's) do for
 * memory this library hands out, which is VMM memory the driver refuses.
 *
 * The handle (64 bytes, CU_IPC_HANDLE_SIZE) names the allocation by what
 * vmmd knows: an export of the chunks that back it (IpcExport: an id and a
 * random token), the GPU's UUID, and where the allocation lies in those
 * chunks (offset, size).  A magic tells our handles from the driver's, so
 * handles of native memory (the fallback allocator, the driver's own
 * cudaMalloc) keep the driver's path.
 *
 * Opening asks vmmd for the export's chunks as fds (IpcOpen), maps them
 * back to back and returns the pointer at the offset: at the exporter's
 * own address when that range is free here (vmmd's address plan keeps
 * the clients' ranges disjoint, so it usually is: the same pointer in both
 * processes), else anywhere in our VA, which vmmd counts as a missed hint.  vmmd counts this process as a holder of those chunks until
 * IpcClose, or until the process is gone: it never lends them to anyone
 * while we map them, even once the exporter frees them.  The same handle
 * opened again returns the same pointer with one more reference
 * (cuda.h); the last close synchronizes (sync.c: the contexts of the
 * memory's device and the caller's; work issued on the memory must be
 * done), unmaps and tells vmmd; if that sync fails the import stays.
 *
 * Calls large.c, medium.c, small.c, va.c, conn.c, sync.c and core.c; client.c calls
 * it.
 */
#include "client_internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"

static const char ipc_magic[8] = { 'v', 'm', 'm', 'd', 'I', 'P', 'C', '1' };

/* The handle's bytes, host order (both processes are on this machine). */
struct ipc_wire {
	char		magic[8];
	uint8_t		uuid[16];	/* the GPU's */
	uint64_t	export_id, token;
	uint64_t	offset;		/* of the allocation in the chunks */
	uint64_t	size;		/* of the allocation */
	uint32_t	pid;		/* the exporter */
	uint32_t	reserved;
};

_Static_assert(sizeof(struct ipc_wire) == CU_IPC_HANDLE_SIZE,
    "the IPC handle is 64 bytes");

/* Memory this process opened. */
struct ipc_import {
	int			dev;
	uint64_t		import_id, export_id, token;
	CUdeviceptr		base;
	uint64_t		span;		/* the chunks' bytes */
	uint64_t		va_size;
	unsigned		refs;
	struct ipc_import	*next;
};

static pthread_mutex_t	ipc_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ipc_import *ipc_imports;

/* The UUID of device ordinal dev; 0 or -1. */
static int
ipc_uuid(int dev, uint8_t out[16])
{
	CUdevice d;
	CUuuid u;

	if (cuDeviceGet(&d, dev) != CUDA_SUCCESS ||
	    cuDeviceGetUuid_v2(&u, d) != CUDA_SUCCESS)
		return -1;
	memcpy(out, u.bytes, 16);
	return 0;
}

/* The ordinal of the device with this UUID here, or -1. */
static int
ipc_device_of(const uint8_t uuid[16])
{
	uint8_t u[16];
	int n = 0, i;

	if (cuDeviceGetCount(&n) != CUDA_SUCCESS)
		return -1;
	for (i = 0; i < n && i < VMMC_MAX_DEVICES; i++)
		if (ipc_uuid(i, u) == 0 && memcmp(u, uuid, 16) == 0)
			return i;
	return -1;
}

int
vmmc_ipc_get(const void *ptr, void *handle)
{
	uint64_t ids[VMM_PROTO_MAX_CHUNKS];
	struct ipc_wire w;
	struct vmmc_conn *c;
	size_t n = 1;
	int dev, rc;

	memset(&w, 0, sizeof(w));
	rc = vmmc_small_ipc(ptr, &dev, &ids[0], &w.offset, &w.size);
	if (rc == VMM_ENOTOURS)
		rc = vmmc_medium_ipc(ptr, &dev, ids, VMM_PROTO_MAX_CHUNKS, &n,
		    &w.offset, &w.size);
	if (rc == VMM_ENOTOURS)
		rc = vmmc_large_ipc(ptr, &dev, ids, VMM_PROTO_MAX_CHUNKS, &n,
		    &w.size);
	if (rc == VMM_ENOTOURS && vmmc_va_contains((CUdeviceptr)(uintptr_t)ptr))
		rc = VMM_EINVAL;	/* ours, but freed: no allocation */
	if (rc != 0)
		return rc;
	if (ipc_uuid(dev, w.uuid) != 0)
		return VMM_ECUDA;
	if ((c = vmmc_conn_get(dev)) == NULL)
		return VMM_ENODAEMON;
	/* The chunks' start as mapped here: the importer's first choice. */
	if ((rc = vmmc_conn_ipc_export(c, ids, n,
	    (uint64_t)(uintptr_t)ptr - w.offset, &w.export_id, &w.token)) != 0)
		return rc;
	memcpy(w.magic, ipc_magic, sizeof(w.magic));
	w.pid = (uint32_t)getpid();
	memcpy(handle, &w, sizeof(w));
	vmm_log_debug("IPC_EXPORT Ptr=%p Size=%llu Export=%llu", ptr,
	    (unsigned long long)w.size, (unsigned long long)w.export_id);
	return 0;
}

/* The import of this export on dev, with one more reference; lock held. */
static struct ipc_import *
ipc_find_export(int dev, uint64_t export_id, uint64_t token)
{
	struct ipc_import *im;

	for (im = ipc_imports; im != NULL; im = im->next)
		if (im->dev == dev && im->export_id == export_id &&
		    im->token == token)
			return im;
	return NULL;
}

/* The import holding ptr (and its link); lock held. */
static struct ipc_import **
ipc_find_ptr(CUdeviceptr p)
{
	struct ipc_import **pp;

	for (pp = &ipc_imports; *pp != NULL; pp = &(*pp)->next)
		if (p >= (*pp)->base && p - (*pp)->base < (*pp)->span)
			return pp;
	return NULL;
}

/* Maps an open export at the exporter's address xaddr if that range is
 * free here, else at a new range of our VA; the fds are taken. */
static int
ipc_map(struct vmmc_conn *c, int dev, struct vmmc_grant_chunk *g, size_t n,
    uint64_t xaddr, struct ipc_import *im)
{
	uint64_t gran = vmmc_conn_granularity(c);
	size_t i;
	int rc;

	for (i = 0, im->span = 0; i < n; i++)
		im->span += g[i].size;
	im->va_size = (im->span + gran - 1) / gran * gran;
	if (xaddr != 0 && vmmc_va_alloc_at(dev, xaddr, im->va_size) == 0)
		im->base = xaddr;
	else if ((rc = vmmc_va_alloc(dev, im->va_size, gran, &im->base)) != 0)
		goto fail;
	else if (xaddr != 0 && im->base != xaddr) {
		vmm_log_debug("IPC_MISS Planned=0x%llx Ptr=0x%llx",
		    (unsigned long long)xaddr, (unsigned long long)im->base);
		vmmc_conn_va_placed(c, xaddr, im->base, im->va_size, true);
	}
	if ((rc = vmmc_map_chunks(dev, im->base, g, n)) != 0) {
		vmmc_va_free(dev, im->base, im->va_size);
		return rc;	/* vmmc_map_chunks closed the fds */
	}
	return 0;
fail:
	for (i = 0; i < n; i++)
		if (g[i].fd >= 0)
			close(g[i].fd);
	return rc;
}

int
vmmc_ipc_open(const void *handle, void **out)
{
	struct vmmc_grant_chunk g[VMM_PROTO_MAX_CHUNKS];
	struct ipc_import *im;
	struct ipc_wire w;
	struct vmmc_conn *c;
	uint64_t xaddr = 0;
	int dev, n, rc;

	memcpy(&w, handle, sizeof(w));
	if (memcmp(w.magic, ipc_magic, sizeof(w.magic)) != 0)
		return VMM_ENOTOURS;
	if (w.pid == (uint32_t)getpid())
		return VMMC_EIPC_SELF;
	/* Bytes from another process: the range must make sense. */
	if (w.export_id == 0 || w.size == 0 || w.offset > UINT64_MAX - w.size ||
	    (dev = ipc_device_of(w.uuid)) < 0) {
		vmm_log_error("cuIpcOpenMemHandle: not a valid handle of pooled "
		    "memory on a GPU of this process");
		return VMMC_EIPC_REFUSED;
	}
	pthread_mutex_lock(&ipc_lock);
	if ((im = ipc_find_export(dev, w.export_id, w.token)) != NULL &&
	    w.offset + w.size <= im->span) {
		im->refs++;
		*out = (void *)(uintptr_t)(im->base + w.offset);
		pthread_mutex_unlock(&ipc_lock);
		return 0;
	}
	pthread_mutex_unlock(&ipc_lock);
	if ((c = vmmc_conn_get(dev)) == NULL)
		return VMM_ENODAEMON;
	if ((im = calloc(1, sizeof(*im))) == NULL)
		return VMM_ENOMEM;
	n = vmmc_conn_ipc_open(c, w.export_id, w.token, &im->import_id, &xaddr,
	    g, VMM_PROTO_MAX_CHUNKS);
	if (n < 0) {
		free(im);
		return n;
	}
	if ((rc = ipc_map(c, dev, g, (size_t)n, xaddr, im)) != 0 ||
	    w.offset + w.size > im->span) {
		if (rc == 0) {
			vmmc_unmap_range(im->base, im->span);
			vmmc_va_free(dev, im->base, im->va_size);
			vmm_log_error("cuIpcOpenMemHandle: the handle's range "
			    "lies outside the memory it names");
			rc = VMMC_EIPC_REFUSED;
		}
		vmmc_conn_ipc_close(c, im->import_id);
		free(im);
		return rc;
	}
	im->dev = dev;
	im->export_id = w.export_id;
	im->token = w.token;
	im->refs = 1;
	pthread_mutex_lock(&ipc_lock);
	im->next = ipc_imports;
	ipc_imports = im;
	pthread_mutex_unlock(&ipc_lock);
	vmmc_helper_touch(dev);
	vmm_log_info("IPC_OPEN Ptr=0x%llx Size=%llu Chunks=%d",
	    (unsigned long long)im->base, (unsigned long long)im->span, n);
	*out = (void *)(uintptr_t)(im->base + w.offset);
	return 0;
}

int
vmmc_ipc_close(void *ptr)
{
	struct ipc_import **pp, *im;
	struct vmmc_conn *c;

	pthread_mutex_lock(&ipc_lock);
	if ((pp = ipc_find_ptr((CUdeviceptr)(uintptr_t)ptr)) == NULL) {
		pthread_mutex_unlock(&ipc_lock);
		return VMM_ENOTOURS;
	}
	im = *pp;
	if (--im->refs > 0) {
		pthread_mutex_unlock(&ipc_lock);
		return 0;
	}
	*pp = im->next;
	pthread_mutex_unlock(&ipc_lock);
	/* Work issued on it before the close must be done before it goes
	 * (the contexts of its device and the caller's: sync.c).  Still busy
	 * (a failed sync, or a stream capture in progress): it stays mapped
	 * and open, held from vmmd, and a later close tries again. */
	if (vmmc_sync_now(im->dev) != 0) {
		pthread_mutex_lock(&ipc_lock);
		im->refs = 1;
		im->next = ipc_imports;
		ipc_imports = im;
		pthread_mutex_unlock(&ipc_lock);
		return VMM_ECUDA;
	}
	vmmc_unmap_range(im->base, im->span);
	vmmc_va_free(im->dev, im->base, im->va_size);
	if ((c = vmmc_conn_get(im->dev)) != NULL)
		vmmc_conn_ipc_close(c, im->import_id);
	vmm_log_info("IPC_CLOSE Ptr=0x%llx Size=%llu",
	    (unsigned long long)im->base, (unsigned long long)im->span);
	free(im);
	return 0;
}

int
vmmc_ipc_range(const void *ptr, void **base, size_t *size)
{
	struct ipc_import **pp;
	int rc = VMM_ENOTOURS;

	pthread_mutex_lock(&ipc_lock);
	if ((pp = ipc_find_ptr((CUdeviceptr)(uintptr_t)ptr)) != NULL) {
		*base = (void *)(uintptr_t)(*pp)->base;
		*size = (*pp)->span;
		rc = 0;
	}
	pthread_mutex_unlock(&ipc_lock);
	return rc;
}

/* A fork child's copy of the parent's records, left alone (another thread
 * may have been changing them) but kept reachable. */
static struct ipc_import	*ipc_orphan __attribute__((used));

void
vmmc_ipc_forget_all(void)
{
	ipc_orphan = ipc_imports;
	ipc_imports = NULL;
	pthread_mutex_init(&ipc_lock, NULL);
}
