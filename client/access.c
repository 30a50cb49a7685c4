/*
 * Which devices may access each device's mappings.  A mapping starts with
 * no access at all (cuMemMap); it gets read-write access for its own device
 * and for the devices granted access to that device's memory, here called
 * its peers.  Peer access the program enables (cuCtxEnablePeerAccess,
 * cudaDeviceEnablePeerAccess) covers cuMemAlloc memory but never VMM
 * mappings, so the shim tells us (vmmc_peer_access) and we grant it with
 * cuMemSetAccess: to the mappings that exist (this file keeps a registry
 * of every range it granted access to) and to those made later.
 * VMM_PEER_ACCESS forces all (every device that can access the owner) or
 * none instead.
 *
 * A mapping made while the peers change must not miss the change: a grant
 * reads the peers, sets access and registers its range under access_rw
 * read-locked; a change takes it write-locked to update the peers and copy
 * the registry, so every range is either in the copy it then updates, or
 * was granted with the new peers.  Changes are serialized (access_op), so
 * two of them never apply their copies out of order.  A range of the copy
 * can span several mappings, one of which may be unmapped before the
 * change reaches it: the change then goes to the pieces still registered
 * (access_apply_range).
 *
 * It calls the driver only: every file of the library may call it.
 */
#include "client_internal.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

/* One range granted access: whole mappings of device dev. */
struct access_range {
	CUdeviceptr	va;
	uint64_t	size;
	int		dev;
};

static pthread_rwlock_t	access_rw = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t	access_op = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t	access_reg_lock = PTHREAD_MUTEX_INITIALIZER;
/* Sorted by va, disjoint; under access_reg_lock. */
static struct access_range *access_reg;
static size_t		access_n, access_cap;
/* enabled[owner]: devices the program gave access to owner's memory
 * (auto); under access_rw. */
static uint32_t		access_enabled[VMMC_MAX_DEVICES];
/* all[owner]: every device that can access owner (VMM_PEER_ACCESS=all),
 * found once per owner; under access_rw. */
static uint32_t		access_all[VMMC_MAX_DEVICES];
static bool		access_all_known[VMMC_MAX_DEVICES];

/* ---- the registry ---------------------------------------------------------- */

/* Index of the first range ending above va; registry locked. */
static size_t
reg_index(CUdeviceptr va)
{
	size_t lo = 0, hi = access_n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (access_reg[mid].va + access_reg[mid].size <= va)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int
reg_insert_at(size_t i, CUdeviceptr va, uint64_t size, int dev)
{
	if (access_n == access_cap) {
		size_t n = access_cap ? access_cap * 2 : 64;
		struct access_range *nr = realloc(access_reg, n * sizeof(*nr));

		if (nr == NULL)
			return -1;
		access_reg = nr;
		access_cap = n;
	}
	memmove(&access_reg[i + 1], &access_reg[i],
	    (access_n - i) * sizeof(*access_reg));
	access_reg[i].va = va;
	access_reg[i].size = size;
	access_reg[i].dev = dev;
	access_n++;
	return 0;
}

/* Removes [va, va+size) from the registry, cutting ranges that overlap it;
 * registry locked.  A range cut in two needs one more slot: -1 if none. */
static int
reg_cut(CUdeviceptr va, uint64_t size)
{
	CUdeviceptr end = va + size;
	size_t i = reg_index(va);

	while (i < access_n && access_reg[i].va < end) {
		struct access_range *r = &access_reg[i];
		CUdeviceptr rend = r->va + r->size;

		if (r->va < va && rend > end) {
			/* The middle goes: keep the head here, the tail after. */
			r->size = va - r->va;
			return reg_insert_at(i + 1, end, rend - end, r->dev);
		}
		if (r->va < va) {
			r->size = va - r->va;
			i++;
		} else if (rend > end) {
			r->size = rend - end;
			r->va = end;
			i++;
		} else
			memmove(r, r + 1, (--access_n - i) * sizeof(*r));
	}
	return 0;
}

static void
reg_add(CUdeviceptr va, uint64_t size, int dev)
{
	int rc;

	pthread_mutex_lock(&access_reg_lock);
	rc = reg_cut(va, size);
	if (rc == 0)
		rc = reg_insert_at(reg_index(va), va, size, dev);
	pthread_mutex_unlock(&access_reg_lock);
	if (rc != 0)
		vmm_log_error("out of memory recording the access of 0x%llx: "
		    "peer access changes will miss it", (unsigned long long)va);
}

/* Whether [va, va+size) of dev is still registered as it was. */
static bool
reg_has(CUdeviceptr va, uint64_t size, int dev)
{
	size_t i;
	bool r;

	pthread_mutex_lock(&access_reg_lock);
	i = reg_index(va);
	r = i < access_n && access_reg[i].va == va &&
	    access_reg[i].size == size && access_reg[i].dev == dev;
	pthread_mutex_unlock(&access_reg_lock);
	return r;
}

void
vmmc_access_forget(CUdeviceptr va, uint64_t size)
{
	pthread_mutex_lock(&access_reg_lock);
	if (reg_cut(va, size) != 0)
		vmm_log_error("out of memory forgetting the access of 0x%llx",
		    (unsigned long long)va);
	pthread_mutex_unlock(&access_reg_lock);
}

/* ---- peers -------------------------------------------------------------------- */

/* Every device other than owner that can access its memory. */
static uint32_t
peers_all(int owner)
{
	int n = 0, d, can;
	uint32_t m = 0;

	if (cuDeviceGetCount(&n) != CUDA_SUCCESS)
		return 0;
	for (d = 0; d < n && d < VMMC_MAX_DEVICES; d++)
		if (d != owner && cuDeviceCanAccessPeer(&can, d, owner) ==
		    CUDA_SUCCESS && can)
			m |= 1u << d;
	return m;
}

/* The devices given access to owner's mappings; access_rw held (read
 * suffices once access_all_known[owner], which the first write sets). */
static uint32_t
peers_of(int owner)
{
	switch (vmmc_settings_get()->peer_access) {
	case VMMC_PEER_NONE:
		return 0;
	case VMMC_PEER_ALL:
		return access_all[owner];
	default:
		return access_enabled[owner];
	}
}

/* Under VMM_PEER_ACCESS=all, finds owner's peers once (write lock). */
static void
peers_learn(int owner)
{
	if (vmmc_settings_get()->peer_access != VMMC_PEER_ALL ||
	    __atomic_load_n(&access_all_known[owner], __ATOMIC_ACQUIRE))
		return;
	pthread_rwlock_wrlock(&access_rw);
	if (!access_all_known[owner]) {
		access_all[owner] = peers_all(owner);
		__atomic_store_n(&access_all_known[owner], true,
		    __ATOMIC_RELEASE);
	}
	pthread_rwlock_unlock(&access_rw);
}

CUresult
vmmc_access_grant(int dev, CUdeviceptr va, uint64_t size)
{
	CUmemAccessDesc acc[VMMC_MAX_DEVICES];
	uint32_t peers;
	size_t n = 0;
	CUresult r;
	int d;

	if (dev < 0 || dev >= VMMC_MAX_DEVICES)
		return CUDA_ERROR_INVALID_DEVICE;
	peers_learn(dev);
	pthread_rwlock_rdlock(&access_rw);
	peers = peers_of(dev) & ~(1u << dev);
	memset(acc, 0, sizeof(acc));
	for (d = 0; d < VMMC_MAX_DEVICES; d++) {
		if (d != dev && !(peers & (1u << d)))
			continue;
		acc[n].location.type = CU_MEM_LOCATION_TYPE_DEVICE;
		acc[n].location.id = d;
		acc[n].flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
		n++;
	}
	r = cuMemSetAccess(va, size, acc, n);
	if (r == CUDA_SUCCESS)
		reg_add(va, size, dev);
	pthread_rwlock_unlock(&access_rw);
	return r;
}

/*
 * Sets acc on [va, va+size), a range of owner's mappings registered when
 * the change's copy was taken.  Since then some of its mappings may have
 * been unmapped (a range granted at once can span several mappings, and
 * each is unmapped on its own: a medium page trimmed, a chunk moved).  The
 * driver then refuses the whole range, which would leave the mappings
 * still there without the change: so on a refusal the pieces of the range
 * still registered are set instead, each on its own.  A piece is strictly
 * smaller than the range (else it is registered as it was and the refusal
 * is a real error), so this ends.  A piece mapped after the change took
 * effect already has the new flags: setting them again changes nothing.
 */
static void
access_apply_range(CUdeviceptr va, uint64_t size, int owner,
    const CUmemAccessDesc *acc)
{
	struct access_range piece[16];
	CUdeviceptr end = va + size, at = va;
	CUresult r;
	size_t i, n;

	if ((r = cuMemSetAccess(va, size, acc, 1)) == CUDA_SUCCESS)
		return;
	if (reg_has(va, size, owner)) {
		vmm_log_error("cuMemSetAccess(0x%llx, %llu, device %d): "
		    "error %d", (unsigned long long)va,
		    (unsigned long long)size, acc->location.id, (int)r);
		return;
	}
	/* The pieces still registered, a few at a time (the registry may
	 * change between the batches; each batch starts after the last). */
	do {
		n = 0;
		pthread_mutex_lock(&access_reg_lock);
		for (i = reg_index(at); i < access_n && access_reg[i].va < end &&
		    n < sizeof(piece) / sizeof(piece[0]); i++) {
			CUdeviceptr s0 = access_reg[i].va, e0 = s0 +
			    access_reg[i].size;

			if (access_reg[i].dev != owner)
				continue;
			piece[n].va = s0 < at ? at : s0;
			piece[n].size = (e0 > end ? end : e0) - piece[n].va;
			piece[n].dev = owner;
			n++;
		}
		pthread_mutex_unlock(&access_reg_lock);
		for (i = 0; i < n; i++)
			access_apply_range(piece[i].va, piece[i].size, owner,
			    acc);
		if (n > 0)
			at = piece[n - 1].va + piece[n - 1].size;
	} while (n == sizeof(piece) / sizeof(piece[0]) && at < end);
}

/* Sets accessor's flags on every range of owner in the copy v[0..n). */
static void
access_apply(struct access_range *v, size_t n, int accessor, int owner,
    CUmemAccess_flags flags)
{
	CUmemAccessDesc acc;
	size_t i;

	memset(&acc, 0, sizeof(acc));
	acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	acc.location.id = accessor;
	acc.flags = flags;
	for (i = 0; i < n; i++)
		if (v[i].dev == owner)
			access_apply_range(v[i].va, v[i].size, owner, &acc);
}

void
vmmc_peer_access(int accessor, int owner, bool on)
{
	struct access_range *copy = NULL;
	uint32_t before, after;
	size_t n = 0;

	if (accessor < 0 || accessor >= VMMC_MAX_DEVICES || owner < 0 ||
	    owner >= VMMC_MAX_DEVICES || accessor == owner)
		return;
	pthread_mutex_lock(&access_op);
	pthread_rwlock_wrlock(&access_rw);
	before = peers_of(owner);
	if (on)
		access_enabled[owner] |= 1u << accessor;
	else
		access_enabled[owner] &= ~(1u << accessor);
	after = peers_of(owner);
	if ((before ^ after) & (1u << accessor)) {
		pthread_mutex_lock(&access_reg_lock);
		if (access_n > 0 && (copy = malloc(access_n * sizeof(*copy))) !=
		    NULL) {
			memcpy(copy, access_reg, access_n * sizeof(*copy));
			n = access_n;
		} else if (access_n > 0)
			vmm_log_error("out of memory: peer access of device %d "
			    "to device %d not applied to existing memory",
			    accessor, owner);
		pthread_mutex_unlock(&access_reg_lock);
	}
	pthread_rwlock_unlock(&access_rw);
	vmm_log_debug("PEER Device=%d Owner=%d %s", accessor, owner,
	    on ? "on" : "off");
	if (copy != NULL)
		access_apply(copy, n, accessor, owner, on ?
		    CU_MEM_ACCESS_FLAGS_PROT_READWRITE :
		    CU_MEM_ACCESS_FLAGS_PROT_NONE);
	free(copy);
	pthread_mutex_unlock(&access_op);
}

void
vmmc_access_forget_all(void)
{
	free(access_reg);
	access_reg = NULL;
	access_n = access_cap = 0;
	memset(access_enabled, 0, sizeof(access_enabled));
	memset(access_all, 0, sizeof(access_all));
	memset(access_all_known, 0, sizeof(access_all_known));
	pthread_rwlock_init(&access_rw, NULL);
	pthread_mutex_init(&access_op, NULL);
	pthread_mutex_init(&access_reg_lock, NULL);
}
