/*
 * cuemu VMM: address reservations, physical allocation handles, mappings and
 * access, shareable-handle export and import.
 *
 * A reservation is PROT_NONE anonymous host VA.  cuMemMap replaces part of it
 * with a MAP_SHARED mapping of the handle's memfd, still PROT_NONE, so the
 * memory faults until cuMemSetAccess mprotects it; cuMemUnmap puts the
 * PROT_NONE reservation back.  Classic allocations (mem.c) live in the same
 * sorted region table so copies and pointer queries see both kinds.
 *
 * Handles are table slots: the value carries a tag, a generation and the slot
 * index, so a stale or made-up handle is refused, never dereferenced.
 */
#include "cuemu_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CUEMU_HANDLE_TAG 0xc0e0ull
#define CUEMU_PAGE 4096u

struct cuemu_handle {
	int			fd;	/* -1: a phantom (CUEMU_PHANTOM) */
	uint64_t		phantom; /* phantom: the chunk's key */
	bool			exported; /* phantom: an fd of it left */
	uint64_t		size;
	int			device;
	CUmemAllocationProp	prop;
	unsigned		user_refs;	/* create/import/retain - release */
	unsigned		maps;		/* live mappings */
	uint32_t		gen;
};

/* A mapped handle (VMM) or a classic allocation. */
struct cuemu_region {
	CUdeviceptr		base;
	size_t			size;
	enum cuemu_kind		kind;
	int			device;
	int			prot;	/* host view: union of access[] */
	uint32_t		slot;	/* VMM: handle slot */
	/* VMM: CUmemAccess_flags granted to each device (cuMemSetAccess). */
	uint8_t			access[CUEMU_MAX_DEVICES];
	int			fd;	/* classic: the memfd */
};

struct cuemu_resv {
	CUdeviceptr	base;
	size_t		size;
};

static struct cuemu_handle	**cuemu_slots;
static uint32_t			cuemu_nslots;
static uint32_t			*cuemu_slot_gen;
static uint32_t			cuemu_slot_low;	/* no free slot below */

static struct cuemu_region	*cuemu_regions;	/* sorted by base */
static size_t			cuemu_nregions, cuemu_capregions;

static struct cuemu_resv	*cuemu_resvs;	/* in the order made */
static size_t			cuemu_nresvs, cuemu_capresvs;

/* ---- handles --------------------------------------------------------------- */

static CUmemGenericAllocationHandle
cuemu_handle_value(uint32_t slot)
{
	return (CUEMU_HANDLE_TAG << 48) |
	    ((uint64_t)(cuemu_slot_gen[slot] & 0xffff) << 32) | (slot + 1);
}

/* The handle a value names, if the application may still use it. */
static struct cuemu_handle *
cuemu_handle_get(CUmemGenericAllocationHandle v, uint32_t *slotp)
{
	uint32_t slot = (uint32_t)(v & 0xffffffffu) - 1;
	struct cuemu_handle *h;

	if ((v >> 48) != CUEMU_HANDLE_TAG || (uint32_t)v == 0 ||
	    slot >= cuemu_nslots || (h = cuemu_slots[slot]) == NULL ||
	    ((v >> 32) & 0xffff) != (cuemu_slot_gen[slot] & 0xffff) ||
	    h->user_refs == 0)
		return NULL;
	if (slotp != NULL)
		*slotp = slot;
	return h;
}

static int
cuemu_handle_new(int fd, uint64_t size, int dev, const CUmemAllocationProp *prop,
    CUmemGenericAllocationHandle *out)
{
	struct cuemu_handle *h;
	uint32_t slot;

	for (slot = cuemu_slot_low; slot < cuemu_nslots; slot++)
		if (cuemu_slots[slot] == NULL)
			break;
	if (slot == cuemu_nslots) {
		uint32_t n = cuemu_nslots ? cuemu_nslots * 2 : 64;
		struct cuemu_handle **ns;
		uint32_t *ng;

		if ((ns = realloc(cuemu_slots, n * sizeof(*ns))) == NULL)
			return -1;
		cuemu_slots = ns;
		if ((ng = realloc(cuemu_slot_gen, n * sizeof(*ng))) == NULL)
			return -1;
		cuemu_slot_gen = ng;
		memset(ns + cuemu_nslots, 0, (n - cuemu_nslots) * sizeof(*ns));
		memset(ng + cuemu_nslots, 0, (n - cuemu_nslots) * sizeof(*ng));
		cuemu_nslots = n;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return -1;
	h->fd = fd;
	h->size = size;
	h->device = dev;
	h->prop = *prop;
	h->user_refs = 1;
	__atomic_add_fetch(&cuemu_handle_refs, 1, __ATOMIC_RELAXED);
	cuemu_slot_gen[slot]++;
	h->gen = cuemu_slot_gen[slot];
	cuemu_slots[slot] = h;
	cuemu_slot_low = slot + 1;
	*out = cuemu_handle_value(slot);
	return 0;
}

/* Frees the handle in slot once nothing refers to it. */
static void
cuemu_handle_maybe_free(uint32_t slot)
{
	struct cuemu_handle *h = cuemu_slots[slot];

	if (h == NULL || h->user_refs != 0 || h->maps != 0)
		return;
	if (h->fd < 0)
		cuemu_capacity_phantom_end(h->device, h->size, h->exported);
	else
		cuemu_capacity_close(h->fd);
	free(h);
	cuemu_slots[slot] = NULL;
	if (slot < cuemu_slot_low)
		cuemu_slot_low = slot;
}

/* ---- regions ------------------------------------------------------------- */

/* Index of the first region whose end is above addr. */
static size_t
cuemu_region_index(CUdeviceptr addr)
{
	size_t lo = 0, hi = cuemu_nregions;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const struct cuemu_region *r = &cuemu_regions[mid];

		if (r->base + r->size <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct cuemu_region *
cuemu_region_at(CUdeviceptr addr)
{
	size_t i = cuemu_region_index(addr);

	if (i < cuemu_nregions && cuemu_regions[i].base <= addr)
		return &cuemu_regions[i];
	return NULL;
}

static int
cuemu_region_insert(const struct cuemu_region *r)
{
	size_t i;

	if (cuemu_nregions == cuemu_capregions) {
		size_t n = cuemu_capregions ? cuemu_capregions * 2 : 256;
		struct cuemu_region *nr = realloc(cuemu_regions, n * sizeof(*nr));

		if (nr == NULL)
			return -1;
		cuemu_regions = nr;
		cuemu_capregions = n;
	}
	i = cuemu_region_index(r->base);
	memmove(&cuemu_regions[i + 1], &cuemu_regions[i],
	    (cuemu_nregions - i) * sizeof(*r));
	cuemu_regions[i] = *r;
	cuemu_nregions++;
	return 0;
}

static void
cuemu_region_delete(struct cuemu_region *r)
{
	size_t i = (size_t)(r - cuemu_regions);

	memmove(&cuemu_regions[i], &cuemu_regions[i + 1],
	    (cuemu_nregions - i - 1) * sizeof(*r));
	cuemu_nregions--;
}

/* True if any region intersects [addr, addr+len). */
static bool
cuemu_region_overlaps(CUdeviceptr addr, size_t len)
{
	size_t i = cuemu_region_index(addr);

	return i < cuemu_nregions && cuemu_regions[i].base < addr + len;
}

static struct cuemu_resv *
cuemu_resv_containing(CUdeviceptr addr, size_t len)
{
	size_t i;

	for (i = 0; i < cuemu_nresvs; i++) {
		struct cuemu_resv *r = &cuemu_resvs[i];

		if (addr >= r->base && addr - r->base <= r->size &&
		    len <= r->size - (addr - r->base))
			return r;
	}
	return NULL;
}

bool
cuemu_lookup(CUdeviceptr addr, struct cuemu_range *out)
{
	struct cuemu_region *r = cuemu_region_at(addr);
	struct cuemu_resv *v;

	if (r == NULL)
		return false;
	out->kind = r->kind;
	out->base = r->base;
	out->size = r->size;
	out->device = r->device;
	out->prot = r->prot;
	out->resv_base = 0;
	out->resv_size = 0;
	if (r->kind == CUEMU_KIND_VMM &&
	    (v = cuemu_resv_containing(r->base, r->size)) != NULL) {
		out->resv_base = v->base;
		out->resv_size = v->size;
	}
	return true;
}

/* Whether device dev may access region r with prot: VMM mappings by the
 * flags cuMemSetAccess gave dev; classic allocations from their own device,
 * or from a device whose context enabled peer access to it; stream-ordered
 * ones from their own device only (a pool's access is cuMemPoolSetAccess's,
 * which is not emulated; peer access does not cover it). */
static bool
cuemu_region_access(const struct cuemu_region *r, int dev, int prot)
{
	int granted;

	if (!cuemu_device_valid(dev))
		return false;
	if (r->kind == CUEMU_KIND_ASYNC)
		return dev == r->device;
	if (r->kind != CUEMU_KIND_VMM)
		return dev == r->device || cuemu_peer_enabled(dev, r->device);
	granted = r->access[dev] == CU_MEM_ACCESS_FLAGS_PROT_READWRITE ?
	    PROT_READ | PROT_WRITE :
	    r->access[dev] == CU_MEM_ACCESS_FLAGS_PROT_READ ? PROT_READ : 0;
	return (granted & prot) == prot;
}

bool
cuemu_range_ok(CUdeviceptr addr, size_t len, int prot, int dev)
{
	CUdeviceptr end = addr + len;
	struct cuemu_region *r;

	if (len == 0 || end < addr)
		return false;
	while (addr < end) {
		if ((r = cuemu_region_at(addr)) == NULL ||
		    (r->prot & prot) != prot ||
		    !cuemu_region_access(r, dev, prot))
			return false;
		/* Classic allocations are separate objects: no spanning. */
		if (r->kind != CUEMU_KIND_VMM && r->base + r->size < end)
			return false;
		addr = r->base + r->size;
	}
	return true;
}

int
cuemu_alloc_add(CUdeviceptr base, size_t size, int dev, int fd,
    enum cuemu_kind kind)
{
	struct cuemu_region r = {
		.base = base, .size = size, .kind = kind, .device = dev,
		.prot = PROT_READ | PROT_WRITE, .fd = fd,
	};

	return cuemu_region_insert(&r);
}

int
cuemu_alloc_remove(CUdeviceptr base, size_t *sizep, enum cuemu_kind *kindp)
{
	struct cuemu_region *r = cuemu_region_at(base);
	int fd;

	if (r == NULL || r->base != base || r->kind == CUEMU_KIND_VMM ||
	    r->kind == CUEMU_KIND_IPC)
		return -1;
	fd = r->fd;
	*sizep = r->size;
	*kindp = r->kind;
	cuemu_region_delete(r);
	return fd;
}

int
cuemu_alloc_fd(CUdeviceptr base)
{
	struct cuemu_region *r = cuemu_region_at(base);

	if (r == NULL || r->base != base || r->kind != CUEMU_KIND_ALLOC)
		return -1;
	return r->fd;
}

int
cuemu_ipc_remove(CUdeviceptr base)
{
	struct cuemu_region *r = cuemu_region_at(base);
	int fd;

	if (r == NULL || r->base != base || r->kind != CUEMU_KIND_IPC)
		return -1;
	fd = r->fd;
	cuemu_region_delete(r);
	return fd;
}

/* ---- granularity and properties -------------------------------------------- */

/* Validates an allocation property for this emulator; returns 0 or a code. */
static CUresult
cuemu_prop_check(const CUmemAllocationProp *prop, bool device_error)
{
	if (prop->type != CU_MEM_ALLOCATION_TYPE_PINNED)
		return CUDA_ERROR_INVALID_VALUE;
	if (prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
		return CUDA_ERROR_INVALID_VALUE;
	if (!cuemu_device_valid(prop->location.id))
		return device_error ? CUDA_ERROR_INVALID_DEVICE :
		    CUDA_ERROR_INVALID_VALUE;
	if (prop->requestedHandleTypes & ~(unsigned)CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
		return CUDA_ERROR_NOT_SUPPORTED;
	/* Windows-only; "in all other cases ... required to be zero". */
	if (prop->win32HandleMetaData != NULL)
		return CUDA_ERROR_INVALID_VALUE;
	/* Only where CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED
	 * says so (CUEMU_RDMA=1). */
	if ((prop->allocFlags.gpuDirectRDMACapable && !cuemu_cfg.rdma) ||
	    prop->allocFlags.compressionType != 0)
		return CUDA_ERROR_NOT_SUPPORTED;
	return CUDA_SUCCESS;
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemGetAllocationGranularity(size_t *granularity, const CUmemAllocationProp *prop,
    CUmemAllocationGranularity_flags option)
{
	CUresult r;

	CUEMU_ENTER("cuMemGetAllocationGranularity");
	if (granularity == NULL || prop == NULL ||
	    (option != CU_MEM_ALLOC_GRANULARITY_MINIMUM &&
	    option != CU_MEM_ALLOC_GRANULARITY_RECOMMENDED))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((r = cuemu_prop_check(prop, false)) != CUDA_SUCCESS)
		return cuemu_ret(r);
	*granularity = option == CU_MEM_ALLOC_GRANULARITY_RECOMMENDED ?
	    cuemu_cfg.rec_granularity : cuemu_cfg.granularity;
	return cuemu_ret(CUDA_SUCCESS);
}

/* The handle types a memfd's name records, RDMA capability included. */
static unsigned
cuemu_handle_types(const CUmemAllocationProp *prop)
{
	return (unsigned)prop->requestedHandleTypes |
	    (prop->allocFlags.gpuDirectRDMACapable ? CUEMU_TYPES_RDMA : 0);
}

/* CUEMU_PHANTOM: a chunk without memory or fd, booked against the device
 * (or, for an import, a new handle on the chunk key names). */
static CUresult
cuemu_phantom_new(uint64_t size, const CUmemAllocationProp *prop,
    CUmemGenericAllocationHandle *handle, uint64_t key)
{
	int dev = prop->location.id;
	CUresult r;
	uint32_t slot;

	r = cuemu_capacity_phantom_create(dev, size, key == 0);
	if (r != CUDA_SUCCESS)
		return r;
	if (cuemu_handle_new(-1, size, dev, prop, handle) != 0) {
		cuemu_capacity_phantom_end(dev, size, false);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	(void)cuemu_handle_get(*handle, &slot);
	cuemu_slots[slot]->phantom = key != 0 ? key : cuemu_phantom_key();
	return CUDA_SUCCESS;
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size,
    const CUmemAllocationProp *prop, unsigned long long flags)
{
	CUresult r;
	int fd;

	CUEMU_ENTER("cuMemCreate");
	CUEMU_CAPTURE_UNSAFE();
	if (handle == NULL || prop == NULL || flags != 0 || size == 0 ||
	    size % cuemu_cfg.granularity != 0)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((r = cuemu_prop_check(prop, true)) != CUDA_SUCCESS)
		return cuemu_ret(r);
	cuemu_capacity_create_begin(prop->location.id);
	cuemu_charge(CUEMU_COST_CREATE, size / cuemu_cfg.granularity, 1);
	if (cuemu_cfg.phantom)
		return cuemu_ret(cuemu_phantom_new(size, prop, handle, 0));
	/* The memfd's name carries what an importer learns of the memory. */
	r = cuemu_capacity_create(prop->location.id, size,
	    cuemu_handle_types(prop), &fd);
	if (r != CUDA_SUCCESS)
		return cuemu_ret(r);
	if (cuemu_handle_new(fd, size, prop->location.id, prop, handle) != 0) {
		cuemu_capacity_close(fd);
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	}
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemRelease(CUmemGenericAllocationHandle handle)
{
	struct cuemu_handle *h;
	uint32_t slot;

	CUEMU_ENTER("cuMemRelease");
	CUEMU_CAPTURE_UNSAFE();
	/* Undefined behaviour on a real GPU; an error here. */
	if ((h = cuemu_handle_get(handle, &slot)) == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	cuemu_charge(CUEMU_COST_RELEASE, h->size / cuemu_cfg.granularity, 1);
	h->user_refs--;
	__atomic_sub_fetch(&cuemu_handle_refs, 1, __ATOMIC_RELAXED);
	cuemu_handle_maybe_free(slot);
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp *prop,
    CUmemGenericAllocationHandle handle)
{
	struct cuemu_handle *h;

	CUEMU_ENTER("cuMemGetAllocationPropertiesFromHandle");
	if (prop == NULL || (h = cuemu_handle_get(handle, NULL)) == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	*prop = h->prop;
	return cuemu_ret(CUDA_SUCCESS);
}

/* ---- reservations ------------------------------------------------------------ */

/*
 * A ThreadSanitizer build cannot take hints: its mmap interceptor ends the
 * process when a mapping lands outside its application ranges (and 32 to
 * 64 TiB, where vmmd plans, is its shadow).  Under it every hint misses,
 * as CUEMU_VA_HINT=refuse would have it.
 */
#if defined(__SANITIZE_THREAD__)
#define CUEMU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CUEMU_TSAN 1
#endif
#endif
#ifndef CUEMU_TSAN
#define CUEMU_TSAN 0
#endif

/* A coin for CUEMU_VA_HINT=random (lock held: cuemu's calls are
 * serialised). */
static unsigned
cuemu_va_coin(void)
{
	static uint64_t x;

	if (x == 0)
		x = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull | 1;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return (unsigned)(x >> 32);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment,
    CUdeviceptr addr, unsigned long long flags)
{
	size_t align, span;
	void *p = MAP_FAILED;
	uintptr_t base;
	const int mflags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;

	CUEMU_ENTER("cuMemAddressReserve");
	if (ptr == NULL || size == 0 || size % CUEMU_PAGE != 0 || flags != 0 ||
	    (alignment & (alignment - 1)) != 0 || addr % CUEMU_PAGE != 0)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	align = alignment > cuemu_cfg.granularity ? alignment :
	    cuemu_cfg.granularity;
	cuemu_charge(CUEMU_COST_RESERVE, 1, 1);
	/* The hint (CUEMU_VA_HINT): taken when the range is free and aligned
	 * as asked (a hint that is not is ignored, as a driver may), never
	 * under refuse, one time in two under random. */
	if (addr != 0 && addr % align == 0 && !CUEMU_TSAN &&
	    (cuemu_cfg.va_hint == CUEMU_VA_HINT_HONOR ||
	    (cuemu_cfg.va_hint == CUEMU_VA_HINT_RANDOM &&
	    (cuemu_va_coin() & 1) != 0))) {
		p = mmap((void *)addr, size, PROT_NONE,
		    mflags | MAP_FIXED_NOREPLACE, -1, 0);
		if (p != MAP_FAILED && (uintptr_t)p != addr) {
			munmap(p, size);
			p = MAP_FAILED;
		}
	}
	if (p == MAP_FAILED) {
		if (size + align < size)
			return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
		span = size + align;
		p = mmap(NULL, span, PROT_NONE, mflags, -1, 0);
		if (p == MAP_FAILED)
			return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
		base = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
		if (base > (uintptr_t)p)
			munmap(p, base - (uintptr_t)p);
		if ((uintptr_t)p + span > base + size)
			munmap((void *)(base + size),
			    (uintptr_t)p + span - (base + size));
		p = (void *)base;
		/* Refused means elsewhere, even if the kernel's choice fell
		 * on the hint: move it (the first place held meanwhile). */
		if (addr != 0 && (uintptr_t)p == addr &&
		    cuemu_cfg.va_hint == CUEMU_VA_HINT_REFUSE) {
			void *q = mmap(NULL, span, PROT_NONE, mflags, -1, 0);

			munmap(p, size);
			if (q == MAP_FAILED)
				return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
			base = ((uintptr_t)q + align - 1) & ~(uintptr_t)(align - 1);
			if (base > (uintptr_t)q)
				munmap(q, base - (uintptr_t)q);
			if ((uintptr_t)q + span > base + size)
				munmap((void *)(base + size),
				    (uintptr_t)q + span - (base + size));
			p = (void *)base;
		}
	}
	if (cuemu_nresvs == cuemu_capresvs) {
		size_t n = cuemu_capresvs ? cuemu_capresvs * 2 : 16;
		struct cuemu_resv *nr = realloc(cuemu_resvs, n * sizeof(*nr));

		if (nr == NULL) {
			munmap(p, size);
			return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
		}
		cuemu_resvs = nr;
		cuemu_capresvs = n;
	}
	cuemu_resvs[cuemu_nresvs].base = (CUdeviceptr)(uintptr_t)p;
	cuemu_resvs[cuemu_nresvs].size = size;
	cuemu_nresvs++;
	*ptr = (CUdeviceptr)(uintptr_t)p;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
	size_t i;

	CUEMU_ENTER("cuMemAddressFree");
	for (i = 0; i < cuemu_nresvs; i++)
		if (cuemu_resvs[i].base == ptr && cuemu_resvs[i].size == size)
			break;
	if (i == cuemu_nresvs)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	/* Mappings must be gone first. */
	if (cuemu_region_overlaps(ptr, size))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	munmap((void *)(uintptr_t)ptr, size);
	cuemu_resvs[i] = cuemu_resvs[--cuemu_nresvs];
	return cuemu_ret(CUDA_SUCCESS);
}

/* ---- mapping and access ------------------------------------------------------- */

CUEMU_EXPORT CUresult CUDAAPI
cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
    CUmemGenericAllocationHandle handle, unsigned long long flags)
{
	struct cuemu_region reg;
	struct cuemu_handle *h;
	uint32_t slot;
	void *p;

	CUEMU_ENTER("cuMemMap");
	CUEMU_CAPTURE_UNSAFE();
	/* cuda.h: ptr, size and offset multiples of the minimum granularity,
	 * offset + size within the handle (a part of it may be mapped), and
	 * offset "currently must be zero". */
	if (flags != 0 || offset != 0 || size == 0 ||
	    ptr % cuemu_cfg.granularity != 0 ||
	    size % cuemu_cfg.granularity != 0 ||
	    (h = cuemu_handle_get(handle, &slot)) == NULL || size > h->size)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (cuemu_resv_containing(ptr, size) == NULL ||
	    cuemu_region_overlaps(ptr, size))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	/* A phantom chunk has no memory to map (CUEMU_PHANTOM). */
	if (h->fd < 0)
		return cuemu_ret(CUDA_ERROR_NOT_SUPPORTED);
	cuemu_charge(CUEMU_COST_MAP, size / cuemu_cfg.granularity, 1);
	p = mmap((void *)(uintptr_t)ptr, size, PROT_NONE, MAP_SHARED | MAP_FIXED,
	    h->fd, 0);
	if (p == MAP_FAILED)
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	reg = (struct cuemu_region){
		.base = ptr, .size = size, .kind = CUEMU_KIND_VMM,
		.device = h->device, .prot = PROT_NONE, .slot = slot, .fd = -1,
	};
	if (cuemu_region_insert(&reg) != 0) {
		mmap(p, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS |
		    MAP_NORESERVE | MAP_FIXED, -1, 0);
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	}
	h->maps++;
	return cuemu_ret(CUDA_SUCCESS);
}

/* Checks [ptr, ptr+size) consists of whole VMM mappings, back to back:
 * their count (each maps one chunk), or 0. */
static size_t
cuemu_whole_mappings(CUdeviceptr ptr, size_t size)
{
	CUdeviceptr a = ptr, end = ptr + size;
	struct cuemu_region *r;
	size_t n = 0;

	if (size == 0 || end < ptr)
		return 0;
	while (a < end) {
		r = cuemu_region_at(a);
		if (r == NULL || r->kind != CUEMU_KIND_VMM || r->base != a ||
		    r->base + r->size > end)
			return 0;
		a += r->size;
		n++;
	}
	return n;
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemUnmap(CUdeviceptr ptr, size_t size)
{
	CUdeviceptr end = ptr + size;
	size_t chunks;

	CUEMU_ENTER("cuMemUnmap");
	CUEMU_CAPTURE_UNSAFE();
	if ((chunks = cuemu_whole_mappings(ptr, size)) == 0)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	/* Pending work on it: a GPU would fault (observable, see queue.c). */
	cuemu_q_note_release(ptr, size);
	cuemu_charge(CUEMU_COST_UNMAP, size / cuemu_cfg.granularity, chunks);
	while (ptr < end) {
		struct cuemu_region *r = cuemu_region_at(ptr);
		uint32_t slot = r->slot;
		size_t len = r->size;

		mmap((void *)(uintptr_t)r->base, len, PROT_NONE, MAP_PRIVATE |
		    MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
		cuemu_region_delete(r);
		cuemu_slots[slot]->maps--;
		cuemu_handle_maybe_free(slot);
		ptr += len;
	}
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc,
    size_t count)
{
	CUdeviceptr a, end = ptr + size;
	size_t i, chunks;

	CUEMU_ENTER("cuMemSetAccess");
	CUEMU_CAPTURE_UNSAFE();
	if (desc == NULL || count == 0 || count > CUEMU_MAX_DEVICES)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if ((chunks = cuemu_whole_mappings(ptr, size)) == 0)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	for (i = 0; i < count; i++) {
		if (desc[i].location.type != CU_MEM_LOCATION_TYPE_DEVICE)
			return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
		if (!cuemu_device_valid(desc[i].location.id))
			return cuemu_ret(CUDA_ERROR_INVALID_DEVICE);
		if (desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_NONE &&
		    desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_READ &&
		    desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
			return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	}
	cuemu_charge(CUEMU_COST_SETACCESS, size / cuemu_cfg.granularity, chunks);
	for (a = ptr; a < end;) {
		struct cuemu_region *r = cuemu_region_at(a);
		int prot = PROT_NONE, d;

		for (i = 0; i < count; i++)
			r->access[desc[i].location.id] = (uint8_t)desc[i].flags;
		/* One host view stands for every device: it grants what any
		 * device was granted; copies check the issuing device's own
		 * flags (cuemu_range_ok). */
		for (d = 0; d < CUEMU_MAX_DEVICES; d++)
			prot |= r->access[d] == CU_MEM_ACCESS_FLAGS_PROT_READWRITE ?
			    PROT_READ | PROT_WRITE :
			    r->access[d] == CU_MEM_ACCESS_FLAGS_PROT_READ ?
			    PROT_READ : PROT_NONE;
		if (mprotect((void *)(uintptr_t)r->base, r->size, prot) != 0)
			return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
		r->prot = prot;
		a += r->size;
	}
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemGetAccess(unsigned long long *flags, const CUmemLocation *location,
    CUdeviceptr ptr)
{
	struct cuemu_region *r;

	CUEMU_ENTER("cuMemGetAccess");
	if (flags == NULL || location == NULL ||
	    location->type != CU_MEM_LOCATION_TYPE_DEVICE)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (!cuemu_device_valid(location->id))
		return cuemu_ret(CUDA_ERROR_INVALID_DEVICE);
	if ((r = cuemu_region_at(ptr)) == NULL || r->kind != CUEMU_KIND_VMM)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	*flags = r->access[location->id];
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr)
{
	struct cuemu_region *r;
	struct cuemu_handle *h;

	CUEMU_ENTER("cuMemRetainAllocationHandle");
	if (handle == NULL ||
	    (r = cuemu_region_at((CUdeviceptr)(uintptr_t)addr)) == NULL ||
	    r->kind != CUEMU_KIND_VMM)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	h = cuemu_slots[r->slot];
	h->user_refs++;
	__atomic_add_fetch(&cuemu_handle_refs, 1, __ATOMIC_RELAXED);
	*handle = cuemu_handle_value(r->slot);
	return cuemu_ret(CUDA_SUCCESS);
}

/* ---- shareable handles ------------------------------------------------------- */

CUEMU_EXPORT CUresult CUDAAPI
cuMemExportToShareableHandle(void *shareableHandle,
    CUmemGenericAllocationHandle handle, CUmemAllocationHandleType handleType,
    unsigned long long flags)
{
	struct cuemu_handle *h;
	int fd;

	CUEMU_ENTER("cuMemExportToShareableHandle");
	if (shareableHandle == NULL || flags != 0 ||
	    (h = cuemu_handle_get(handle, NULL)) == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (handleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
		return cuemu_ret(CUDA_ERROR_NOT_SUPPORTED);
	if ((h->prop.requestedHandleTypes & handleType) == 0)
		return cuemu_ret(CUDA_ERROR_NOT_PERMITTED);
	cuemu_charge(CUEMU_COST_EXPORT, 1, 1);
	if (h->fd < 0) {
		/* A phantom: a new empty memfd naming the chunk. */
		fd = cuemu_capacity_phantom_export(h->device, h->size,
		    cuemu_handle_types(&h->prop), h->phantom);
		if (fd < 0)
			return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
		h->exported = true;
		*(int *)shareableHandle = fd;
		return cuemu_ret(CUDA_SUCCESS);
	}
	/* The memory may now outlive this process's handles. */
	if (cuemu_capacity_export(h->fd) != 0)
		return cuemu_ret(CUDA_ERROR_OPERATING_SYSTEM);
	/* A new fd each call, as the driver does; the caller owns it. */
	if ((fd = fcntl(h->fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	*(int *)shareableHandle = fd;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *handle,
    void *osHandle, CUmemAllocationHandleType shHandleType)
{
	CUmemAllocationProp prop;
	int fd = (int)(intptr_t)osHandle, dup_fd, dev;
	uint64_t size, key = 0;
	unsigned types;

	CUEMU_ENTER("cuMemImportFromShareableHandle");
	if (handle == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (shHandleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
		return cuemu_ret(CUDA_ERROR_NOT_SUPPORTED);
	if ((intptr_t)osHandle < 0 || (intptr_t)osHandle > INT32_MAX ||
	    fcntl(fd, F_GETFD) < 0 ||
	    (cuemu_capacity_identify(fd, &dev, &size, &types) != 0 &&
	    cuemu_capacity_phantom_identify(fd, &dev, &size, &types,
	    &key) != 0))
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (!cuemu_device_valid(dev))
		return cuemu_ret(CUDA_ERROR_NOT_SUPPORTED);
	cuemu_charge(CUEMU_COST_IMPORT, 1, 1);
	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = dev;
	prop.requestedHandleTypes = (CUmemAllocationHandleType)(types &
	    ~CUEMU_TYPES_RDMA);
	prop.allocFlags.gpuDirectRDMACapable = (types & CUEMU_TYPES_RDMA) != 0;
	/* A phantom's fd: a new handle on that chunk, as unmappable. */
	if (key != 0)
		return cuemu_ret(cuemu_phantom_new(size, &prop, handle, key));
	/* Import does not take ownership: keep our own reference. */
	if ((dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	if (cuemu_handle_new(dup_fd, size, dev, &prop, handle) != 0) {
		close(dup_fd);	/* counted nowhere yet */
		return cuemu_ret(CUDA_ERROR_OUT_OF_MEMORY);
	}
	cuemu_capacity_import(dup_fd);
	return cuemu_ret(CUDA_SUCCESS);
}
