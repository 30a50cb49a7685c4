/*
 * The application's own VMM, served from the pool (VMM_APP_VMM=pool):
 * PyTorch's expandable segments, NCCL's cuMem buffers, vLLM's
 * CuMemAllocator call cuMemCreate/cuMemMap/cuMemRelease themselves.  A
 * cuMemCreate of device memory that a chunk of vmmd can stand for (pinned,
 * POSIX fd or no handle type, no compression or other allocation flags,
 * a multiple of vmmd's unit) gets one chunk of exactly that size
 * (Acquire.exact), imported: the application holds a real handle it maps,
 * sets access on, exports, retains.  What the pool cannot serve goes to
 * the driver (the shim counts it as native).
 *
 * Each such handle is an entry here: the application's references (the
 * create, each cuMemRetainAllocationHandle, less each cuMemRelease; every
 * one also reaches the driver) and its mappings (the shim's cuMemMap and
 * cuMemUnmap hooks).  Driver semantics: a released handle stays alive while
 * it is mapped.  So the chunk goes back to vmmd only once no reference and
 * no mapping is left, and only once a synchronization covers the last
 * unmap (sync.c tickets): work issued before it may still write to the
 * memory, which vmmd would otherwise lend to another process meanwhile.
 * Such an entry waits on a "dead" list; the helper thread (or vmm_flush)
 * synchronizes and gives it back, and a give-back without a covering sync
 * never happens.
 *
 * A handle the application exported as a POSIX fd may be mapped by another
 * process that vmmd knows nothing of: its chunk is never given back (it is
 * lent to this process until it exits); the entry keeps one driver
 * reference so that Adopt can still export it.
 *
 * Properties report what the application asked for (its handle type, not
 * the chunk's), and an export the application's handle type does not allow
 * is refused as the driver refuses it (CUDA_ERROR_NOT_PERMITTED).
 *
 * Driver calls made here on an entry's handle reach the shim's hooks again
 * (this library has no other binding for the hooked names): app_inside
 * makes every vmmc_app_* answer "not ours" on this thread meanwhile, so
 * they pass through to the driver.
 *
 * Lock order: a connection's lock, then app_lock (Adopt calls in with its
 * connection locked); nothing here calls vmmd with app_lock held.
 */
#include "client_internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"

#define APP_HASH_BITS	10
#define APP_HASH	(1u << APP_HASH_BITS)

struct app_chunk {
	struct app_chunk	*next;	/* hash chain, or dead list */
	CUmemGenericAllocationHandle h;	/* the application's handle */
	uint64_t		 id;	/* at vmmd (0: none any more) */
	uint64_t		 size, seq;
	int			 dev;
	CUmemAllocationProp	 prop;	/* as the application asked */
	unsigned		 refs;	/* the application's */
	unsigned		 maps;	/* live mappings */
	bool			 exported;	/* as a POSIX fd */
	bool			 held;	/* we keep a driver ref. */
	uint64_t		 ticket;	/* at the last unmap */
};

/* A mapping of an entry's handle. */
struct app_map {
	CUdeviceptr		 va;
	uint64_t		 size;
	struct app_chunk	*c;
};

static pthread_mutex_t	app_lock = PTHREAD_MUTEX_INITIALIZER;
/* Live entries (references, mappings or held), and dead ones waiting to
 * be given back. */
static struct app_chunk	*app_hash[APP_HASH];
static struct app_chunk	*app_dead;
static struct app_map	*app_maps;		/* sorted by va */
static size_t		 app_nmaps, app_capmaps;
static uint64_t		 app_seq;
/* Entries anywhere (atomic): the hooks' fast path when there are none. */
static unsigned		 app_count;
static __thread int	 app_inside;

static size_t
app_slot(CUmemGenericAllocationHandle h)
{
	return (size_t)(((uint64_t)h * UINT64_C(0x9e3779b97f4a7c15)) >>
	    (64 - APP_HASH_BITS));
}

/* The live entry of handle h, lock held; pp: where it is linked. */
static struct app_chunk *
app_find(CUmemGenericAllocationHandle h, struct app_chunk ***pp)
{
	struct app_chunk **p = &app_hash[app_slot(h)];

	for (; *p != NULL; p = &(*p)->next)
		if ((*p)->h == h) {
			if (pp != NULL)
				*pp = p;
			return *p;
		}
	return NULL;
}

/* Whether the hooks need to look: not nested in our own driver calls, and
 * some entry exists. */
static bool
app_any(void)
{
	return app_inside == 0 &&
	    __atomic_load_n(&app_count, __ATOMIC_ACQUIRE) != 0;
}

/* The first mapping at or after va, lock held. */
static size_t
app_map_lower(CUdeviceptr va)
{
	size_t lo = 0, hi = app_nmaps, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (app_maps[mid].va < va)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Gives back to vmmd, outside the lock, the dead entries whose last unmap
 * a synchronization covers (sync: synchronize for those not covered yet,
 * not while a capture is in progress); bytes given back. */
static uint64_t
app_give_back(bool sync)
{
	struct app_chunk *c, **p, *out = NULL;
	uint64_t want[VMMC_MAX_DEVICES] = { 0 }, bytes = 0;
	int dev;

	if (sync && !vmmc_capture_active()) {
		pthread_mutex_lock(&app_lock);
		for (c = app_dead; c != NULL; c = c->next)
			if (!vmmc_sync_covers(c->dev, c->ticket) &&
			    c->ticket > want[c->dev])
				want[c->dev] = c->ticket;
		pthread_mutex_unlock(&app_lock);
		/* A failed sync means "still busy": they stay. */
		for (dev = 0; dev < VMMC_MAX_DEVICES; dev++)
			if (want[dev] != 0)
				(void)vmmc_sync_for(dev, want[dev]);
	}
	pthread_mutex_lock(&app_lock);
	for (p = &app_dead; (c = *p) != NULL;) {
		if (vmmc_sync_covers(c->dev, c->ticket)) {
			*p = c->next;
			c->next = out;
			out = c;
		} else
			p = &c->next;
	}
	pthread_mutex_unlock(&app_lock);
	while ((c = out) != NULL) {
		struct vmmc_conn *conn = vmmc_conn_get(c->dev);

		out = c->next;
		/* Off this process's usage before vmmd learns it is back: who
		 * sees vmmd lend it no more sees it here no more either (the
		 * helper gives back what waited for a sync, while the
		 * application may be reading both). */
		vmmc_native_pooled_add(c->dev, -(int64_t)c->size);
		/* Sent on the connection that lent it (a reconnect resumes the
		 * session; after a new daemon, dead entries were dropped). */
		if (c->id != 0 && conn != NULL)
			(void)vmmc_conn_release(conn, &c->id, 1, 0);
		vmm_log_debug("APPVMM give back Chunk=%llu Size=%llu",
		    (unsigned long long)c->id, (unsigned long long)c->size);
		bytes += c->size;
		__atomic_sub_fetch(&app_count, 1, __ATOMIC_RELEASE);
		free(c);
	}
	return bytes;
}

/* Entry c has no reference and no mapping left, lock held: unlinked from
 * the hash (at *pp) onto the dead list.  Returns whether it must wait for
 * a sync. */
static bool
app_die(struct app_chunk *c, struct app_chunk **pp)
{
	*pp = c->next;
	c->next = app_dead;
	app_dead = c;
	return !vmmc_sync_covers(c->dev, c->ticket);
}

/* After a death: gives back now if nothing is pending, else wakes the
 * helper (it synchronizes and gives back). */
static void
app_after_death(bool waits)
{
	if (waits)
		vmmc_wake();
	else
		(void)app_give_back(false);
}

/* ---- cuMemCreate --------------------------------------------------------- */

/* Whether a chunk of vmmd can stand for what prop asks (the unit aside). */
static bool
app_prop_poolable(const CUmemAllocationProp *prop, unsigned long long flags)
{
	static const unsigned char zero[sizeof(prop->allocFlags)];

	return flags == 0 && prop->type == CU_MEM_ALLOCATION_TYPE_PINNED &&
	    prop->location.type == CU_MEM_LOCATION_TYPE_DEVICE &&
	    prop->location.id >= 0 && prop->location.id < VMMC_MAX_DEVICES &&
	    (prop->requestedHandleTypes == CU_MEM_HANDLE_TYPE_NONE ||
	    prop->requestedHandleTypes ==
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) &&
	    prop->win32HandleMetaData == NULL &&
	    memcmp(&prop->allocFlags, zero, sizeof(zero)) == 0;
}

/* One chunk of exactly size from vmmd, with the out-of-memory retry (this
 * process's cache goes back first).  1 with *g, or a VMM_E* code. */
static int
app_acquire(struct vmmc_conn *c, uint64_t size, struct vmmc_grant_chunk *g)
{
	int n;

	n = vmmc_conn_acquire(c, size, VMMC_ACQUIRE_EXACT, 0, g, 1);
	if ((n == VMM_ENOMEM || n == VMM_EQUOTA) &&
	    vmmc_large_trim(0, 0, 0) + vmmc_medium_trim(0, 0, 0) +
	    vmmc_small_trim(0) > 0)
		n = vmmc_conn_acquire(c, size, VMMC_ACQUIRE_EXACT, 0, g, 1);
	if (n == 1 && g->size != size) {
		/* A vmmd that does not know Acquire.exact answered more. */
		(void)vmmc_conn_release(c, &g->id, 1, 0);
		vmmc_close_grant(g, 1);
		return VMM_EPROTO;
	}
	return n == 0 ? VMM_EPROTO : n;
}

/* vmmd could not be reached (rc) for a create the pool would serve: the
 * driver serves it (false), unless VMM_REQUIRE_DAEMON=1 says allocations
 * fail then, as cudaMalloc's do: out of memory (true, *res). */
static bool
app_unreachable(int rc, CUresult *res)
{
	if (rc != VMM_ENODAEMON || !vmmc_settings_get()->require_daemon)
		return false;
	*res = CUDA_ERROR_OUT_OF_MEMORY;
	return true;
}

bool
vmmc_app_create(CUmemGenericAllocationHandle *handle, size_t size,
    const CUmemAllocationProp *prop, unsigned long long flags, CUresult *res)
{
	const struct vmmc_settings *st = vmmc_settings_get();
	struct vmmc_grant_chunk g = { 0, 0, -1 };
	CUmemGenericAllocationHandle h;
	struct app_chunk *c, **slot;
	struct vmmc_conn *conn;
	uint64_t unit;
	CUresult r;
	int dev, n;

	if (app_inside != 0 || st->mode != VMMC_MODE_VMM ||
	    st->app_vmm != VMMC_APP_VMM_POOL || handle == NULL ||
	    prop == NULL || size == 0 || !app_prop_poolable(prop, flags) ||
	    vmmc_capture_active())
		return false;
	dev = prop->location.id;
	if ((conn = vmmc_conn_get(dev)) == NULL)
		return false;
	if ((n = vmmc_conn_ensure(conn)) != 0)
		return app_unreachable(n, res);
	if ((unit = vmmc_conn_granularity(conn)) == 0 || size % unit != 0)
		return false;	/* not vmmd's unit: the driver's */
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return false;
	if ((n = app_acquire(conn, size, &g)) != 1) {
		free(c);
		if (n == VMM_ENODAEMON)
			return app_unreachable(n, res);
		if (n == VMM_ENOMEM || n == VMM_EQUOTA) {
			/* As the driver would answer: no memory for it. */
			*res = CUDA_ERROR_OUT_OF_MEMORY;
			return true;
		}
		return false;	/* the driver serves it: native */
	}
	app_inside++;
	r = cuMemImportFromShareableHandle(&h, (void *)(intptr_t)g.fd,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
	app_inside--;
	vmmc_close_grant(&g, 1);
	if (r != CUDA_SUCCESS) {
		(void)vmmc_conn_release(conn, &g.id, 1, 0);
		free(c);
		if (r == CUDA_ERROR_OUT_OF_MEMORY) {
			*res = r;
			return true;
		}
		return false;
	}
	c->h = h;
	c->id = g.id;
	c->size = size;
	c->dev = dev;
	c->prop = *prop;
	c->refs = 1;
	pthread_mutex_lock(&app_lock);
	c->seq = ++app_seq;
	slot = &app_hash[app_slot(h)];
	c->next = *slot;
	*slot = c;
	__atomic_add_fetch(&app_count, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&app_lock);
	vmmc_native_pooled_add(dev, (int64_t)size);
	vmm_log_debug("APPVMM create Handle=%#llx Size=%zu Chunk=%llu",
	    (unsigned long long)h, size, (unsigned long long)g.id);
	*handle = h;
	*res = CUDA_SUCCESS;
	return true;
}

/* ---- references ---------------------------------------------------------- */

bool
vmmc_app_release(CUmemGenericAllocationHandle h, CUresult *res)
{
	struct app_chunk *c, **pp;
	bool died = false, waits = false;

	if (!app_any())
		return false;
	pthread_mutex_lock(&app_lock);
	if ((c = app_find(h, &pp)) == NULL) {
		pthread_mutex_unlock(&app_lock);
		return false;
	}
	if (c->refs == 0) {
		/* Released more often than created and retained: undefined
		 * on a GPU, refused here (the entry's own reference, if
		 * held, is not the application's to drop). */
		pthread_mutex_unlock(&app_lock);
		*res = CUDA_ERROR_INVALID_VALUE;
		return true;
	}
	if (c->refs == 1 && c->exported && !c->held) {
		/* Its last reference stays with us (Adopt exports it); the
		 * chunk is never given back. */
		c->held = true;
		*res = CUDA_SUCCESS;
	} else {
		app_inside++;
		*res = cuMemRelease(h);
		app_inside--;
	}
	if (*res == CUDA_SUCCESS) {
		c->refs--;
		if (c->refs == 0 && c->maps == 0 && !c->held) {
			waits = app_die(c, pp);
			died = true;
		}
	}
	pthread_mutex_unlock(&app_lock);
	if (died)
		app_after_death(waits);
	return true;
}

void
vmmc_app_retained(CUmemGenericAllocationHandle h)
{
	struct app_chunk *c;

	if (!app_any())
		return;
	pthread_mutex_lock(&app_lock);
	if ((c = app_find(h, NULL)) != NULL)
		c->refs++;
	pthread_mutex_unlock(&app_lock);
}

/* ---- mappings ------------------------------------------------------------ */

void
vmmc_app_mapped(CUdeviceptr va, size_t size, CUmemGenericAllocationHandle h)
{
	struct app_map *nm;
	struct app_chunk *c;
	size_t i;

	if (!app_any())
		return;
	pthread_mutex_lock(&app_lock);
	if ((c = app_find(h, NULL)) == NULL)
		goto out;
	if (app_nmaps == app_capmaps) {
		size_t cap = app_capmaps ? app_capmaps * 2 : 64;

		/* Not recorded: its unmap would pass unseen, so the chunk
		 * is treated as exported: never given back (it stays with
		 * this process until it exits). */
		if ((nm = realloc(app_maps, cap * sizeof(*nm))) == NULL) {
			c->exported = true;
			goto out;
		}
		app_maps = nm;
		app_capmaps = cap;
	}
	i = app_map_lower(va);
	memmove(&app_maps[i + 1], &app_maps[i],
	    (app_nmaps - i) * sizeof(*app_maps));
	app_maps[i] = (struct app_map){ va, size, c };
	app_nmaps++;
	c->maps++;
out:
	pthread_mutex_unlock(&app_lock);
}

bool
vmmc_app_unmap(CUdeviceptr va, size_t size, CUresult *res)
{
	struct app_chunk *c, **pp;
	bool died = false, waits = false;
	size_t i, j;

	if (!app_any())
		return false;
	pthread_mutex_lock(&app_lock);
	i = app_map_lower(va);
	if (i == app_nmaps || app_maps[i].va >= va + size) {
		pthread_mutex_unlock(&app_lock);
		return false;
	}
	/* Under the lock: no mapping of the range is recorded by another
	 * thread before this one is forgotten. */
	app_inside++;
	*res = cuMemUnmap(va, size);
	app_inside--;
	if (*res != CUDA_SUCCESS) {
		pthread_mutex_unlock(&app_lock);
		return true;
	}
	for (j = i; j < app_nmaps && app_maps[j].va < va + size; j++) {
		c = app_maps[j].c;
		if (--c->maps != 0)
			continue;
		/* Work issued before this unmap may still touch it. */
		c->ticket = vmmc_sync_ticket(c->dev);
		if (c->refs == 0 && !c->held && app_find(c->h, &pp) == c) {
			waits |= app_die(c, pp);
			died = true;
		}
	}
	memmove(&app_maps[i], &app_maps[j],
	    (app_nmaps - j) * sizeof(*app_maps));
	app_nmaps -= j - i;
	pthread_mutex_unlock(&app_lock);
	if (died)
		app_after_death(waits);
	return true;
}

/* ---- handle queries ------------------------------------------------------ */

bool
vmmc_app_props(CUmemAllocationProp *prop, CUmemGenericAllocationHandle h,
    CUresult *res)
{
	struct app_chunk *c;

	if (!app_any())
		return false;
	pthread_mutex_lock(&app_lock);
	if ((c = app_find(h, NULL)) != NULL) {
		if (prop == NULL)
			*res = CUDA_ERROR_INVALID_VALUE;
		else {
			*prop = c->prop;
			*res = CUDA_SUCCESS;
		}
	}
	pthread_mutex_unlock(&app_lock);
	return c != NULL;
}

bool
vmmc_app_export(void *shareable, CUmemGenericAllocationHandle h,
    CUmemAllocationHandleType type, unsigned long long flags, CUresult *res)
{
	struct app_chunk *c;

	if (!app_any())
		return false;
	pthread_mutex_lock(&app_lock);
	if ((c = app_find(h, NULL)) == NULL) {
		pthread_mutex_unlock(&app_lock);
		return false;
	}
	if (shareable != NULL && flags == 0 &&
	    type == CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR &&
	    !(c->prop.requestedHandleTypes & type)) {
		/* The application asked for no such handle type. */
		*res = CUDA_ERROR_NOT_PERMITTED;
	} else {
		app_inside++;
		*res = cuMemExportToShareableHandle(shareable, h, type, flags);
		app_inside--;
		if (*res == CUDA_SUCCESS)
			c->exported = true;
	}
	pthread_mutex_unlock(&app_lock);
	return true;
}

/* ---- give-back, Adopt, fork ---------------------------------------------- */

uint64_t
vmmc_app_trim(void)
{
	if (__atomic_load_n(&app_count, __ATOMIC_ACQUIRE) == 0)
		return 0;
	return app_give_back(true);
}

/* One entry to adopt: a new fd of its memory, or -1. */
static int
app_export_fd(struct app_chunk *c)
{
	CUmemGenericAllocationHandle h = c->h;
	bool retained = false;
	int fd = -1;
	size_t i;

	if (c->refs == 0 && !c->held) {
		/* Released, still mapped: the mapping names it. */
		for (i = 0; i < app_nmaps && app_maps[i].c != c; i++)
			;
		if (i == app_nmaps || cuMemRetainAllocationHandle(&h,
		    (void *)(uintptr_t)app_maps[i].va) != CUDA_SUCCESS)
			return -1;
		retained = true;
	}
	if (cuMemExportToShareableHandle(&fd, h,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0) != CUDA_SUCCESS)
		fd = -1;
	if (retained)
		(void)cuMemRelease(h);
	return fd;
}

int
vmmc_app_adopt(struct vmmc_conn *conn, int dev)
{
	uint64_t sizes[VMM_PROTO_MAX_CHUNKS], ids[VMM_PROTO_MAX_CHUNKS];
	uint64_t seqs[VMM_PROTO_MAX_CHUNKS], next = 0;
	struct app_chunk *c, **p;
	int fds[VMM_PROTO_MAX_CHUNKS], rc = 0, r;
	size_t k, i, b;

	if (__atomic_load_n(&app_count, __ATOMIC_ACQUIRE) == 0)
		return 0;
	app_inside++;
	/* Dead entries were not mapped nor referenced any more: the old
	 * daemon's handle was all that kept their memory; nothing to adopt
	 * and nothing to give back. */
	pthread_mutex_lock(&app_lock);
	for (p = &app_dead; (c = *p) != NULL;) {
		if (c->dev != dev) {
			p = &c->next;
			continue;
		}
		*p = c->next;
		vmmc_native_pooled_add(c->dev, -(int64_t)c->size);
		__atomic_sub_fetch(&app_count, 1, __ATOMIC_RELEASE);
		free(c);
	}
	pthread_mutex_unlock(&app_lock);
	/* The live ones, in batches by sequence number (entries may come
	 * and go between the batches). */
	for (;;) {
		k = 0;
		pthread_mutex_lock(&app_lock);
		for (b = 0; b < APP_HASH && k < VMM_PROTO_MAX_CHUNKS; b++)
			for (c = app_hash[b]; c != NULL &&
			    k < VMM_PROTO_MAX_CHUNKS; c = c->next) {
				int fd;

				if (c->dev != dev || c->seq <= next ||
				    (fd = app_export_fd(c)) < 0)
					continue;
				c->id = 0;
				sizes[k] = c->size;
				seqs[k] = c->seq;
				fds[k++] = fd;
			}
		pthread_mutex_unlock(&app_lock);
		if (k == 0)
			break;
		for (i = 0; i < k; i++)
			if (seqs[i] > next)
				next = seqs[i];
		/* The fds are taken, sent or not. */
		r = vmmc_conn_adopt_locked(conn, sizes, fds, k, ids);
		if (r != 0) {
			rc = r;
			continue;
		}
		pthread_mutex_lock(&app_lock);
		for (b = 0; b < APP_HASH; b++)
			for (c = app_hash[b]; c != NULL; c = c->next)
				for (i = 0; i < k; i++)
					if (c->seq == seqs[i])
						c->id = ids[i];
		pthread_mutex_unlock(&app_lock);
	}
	app_inside--;
	return rc;
}

void
vmmc_app_forget_all(void)
{
	struct app_chunk *c;
	size_t b;

	/* The child holds none of it (nor may it use the parent's CUDA). */
	pthread_mutex_init(&app_lock, NULL);
	for (b = 0; b < APP_HASH; b++)
		while ((c = app_hash[b]) != NULL) {
			app_hash[b] = c->next;
			free(c);
		}
	while ((c = app_dead) != NULL) {
		app_dead = c->next;
		free(c);
	}
	free(app_maps);
	app_maps = NULL;
	app_nmaps = app_capmaps = 0;
	app_count = 0;
	app_inside = 0;
	vmmc_native_forget();
}
