/*
 * The chunk pool.  Every chunk is a cuMemCreate handle (POSIX-fd shareable)
 * of a multiple of the granularity.  A chunk is FREE (idle, in the pool),
 * LENT to one session, or QUARANTINED: its session's socket closed while the
 * process lives and may still map it, so it is kept out of the pool until
 * the process exits.  A chunk is never lent to two sessions at once.
 *
 * Grant policy, for a request rounded up to the chunk unit:
 *   1. one free chunk that fits (at most 1/16 larger than asked; a client
 *      that maps all of a larger one, Acquire.up_to, gets the smallest up
 *      to that size rather than new memory: vmmd_pool_grant_within, which
 *      the policy tries first);
 *   2. if the client allows it, stitch free chunks no smaller than
 *      frag_ratio × request (or the client's min_piece), largest first, up
 *      to max_pieces;
 *   3. still short, and the client allows stitching: idle memory is used
 *      before the pool grows — free chunks of any size (each no larger
 *      than what is missing), largest first, within max_pieces.  A free
 *      chunk larger than the request beyond the fit's 1/16 is not lent for
 *      it: the memory lent and unused would be wasted as long as it is
 *      held (on the traces of tools/replay it cost more than it saved);
 *      but what is still missing after the pieces may be covered by one
 *      free chunk up to twice its size (pool_cover_rest) rather than
 *      created: the chunks of a larger allocation freed earlier otherwise
 *      sit idle while the pool grows by each remainder;
 *   4. create one chunk for what remains; on out-of-memory, give idle chunks
 *      back to the GPU and retry; only then fail, with a message saying who
 *      holds the memory.
 * Idle chunks are destroyed only by the idle timer, a trim, or when memory
 * is short (pool_short: swap_idle, out-of-memory recovery): never to make
 * room the device has.  One exception, with swap_idle: growth swaps out
 * orphans it cannot use, idle memory left by processes that have exited
 * (pool_swap_orphans), each at most once.
 */
#include "vmmd.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "log.h"

#define POOL_HASH_MIN_BITS 12		/* the id and key hashes start at 4096 */
/*
 * New memory for a grant that may be stitched is created in pieces of one
 * size: the smallest power-of-two number of units no smaller than
 * 1/POOL_SPLIT of the request (the last piece takes the remainder), within
 * the grant's piece cap.  A physical chunk cannot be split later, so a
 * large allocation made of one chunk could, once freed, serve only a
 * request of about its size; made of pieces, it serves smaller ones too
 * (stitched), and the pool grows less when sizes change.  Power-of-two
 * pieces let requests of different sizes share them.
 */
#define POOL_SPLIT		8

static CUdevice				pool_dev;
/*
 * vmmd holds no CUDA context while it serves.  A context held by the daemon
 * would make every client's context creation fail under
 * CU_COMPUTEMODE_EXCLUSIVE_PROCESS, count against MPS client limits, and
 * block MIG reconfiguration and GPU reset.  The VMM calls vmmd lives on
 * (cuMemCreate, cuMemRelease, export, import, reserve, map) need none (their
 * cuda.h comments list no CUDA_ERROR_INVALID_CONTEXT).  The two things that
 * do — the driver's free-memory figure and the scrub's memset — take the
 * primary context for the call and let it go (pool_ctx_enter/leave); in a
 * compute mode other than DEFAULT vmmd never takes one after start, so it
 * cannot race a client for the device.
 */
static bool				pool_ctx_shared;	/* DEFAULT mode */
static CUmemAllocationProp		pool_prop;
static uint64_t				pool_gran;	/* driver granularity */
static uint64_t				pool_unit;	/* chunk size unit */
static uint64_t				pool_total;	/* device memory */
static unsigned char			pool_uuid[16];
static uint64_t				pool_next_id = 1;
/*
 * A chained hash of 64-bit keys (entries embed a vmmd_hnode): 2^bits
 * buckets, doubled when the entries outnumber them, so a chain stays about
 * one long (without memory to grow, chains get longer: still correct).
 * pool.c's four tables are these: chunks by id, chunks by fd key, and the
 * two groups of free chunks (pool_groups).
 */
struct pool_htab {
	struct vmmd_hnode	**b;
	size_t			n, count;
	unsigned		bits;
};
/* Every chunk by id. */
static struct pool_htab			pool_ids;
/*
 * Free chunks, indexed by size: bin i holds the chunks of i units, newest
 * first, and bit i of pool_map says it is not empty (pool_sum has a bit
 * per word of pool_map), so the smallest bin >= n or the largest <= n is
 * found in a few word scans, whatever the number of idle chunks.  pool_age
 * holds the same chunks oldest first.  A chunk is in a bin (and in
 * pool_age) iff it is FREE: pool_free_insert and pool_free_take are the
 * only ways in and out, so it cannot be free and lent at once.  Free
 * orphans (chunks whose last holder's process is gone) are on pool_orph
 * too, oldest first, and pool_orph_bytes sums them.
 */
static struct vmmd_chunk_list		*pool_bin;
static size_t				pool_nbins;
static uint64_t				*pool_map, *pool_sum;
static size_t				pool_nmap, pool_nsum;
static struct vmmd_chunk_list		pool_age = TAILQ_HEAD_INITIALIZER(pool_age);
static uint64_t				pool_nfree, pool_free_seq;
static struct vmmd_chunk_list		pool_orph = TAILQ_HEAD_INITIALIZER(pool_orph);
static uint64_t				pool_orph_bytes;
#define POOL_NO_BIN			SIZE_MAX
/*
 * The same free chunks in two groupings, each a list per key that has free
 * chunks (newest first, as the bins), in a hash of the keys:
 *   POOL_BY_TENANT  (last tenant, bin), for cross_tenant = recreate, where
 *                   a grant may take only its own tenant's chunks and those
 *                   never lent (tenant NULL): a bin full of other tenants'
 *                   chunks was walked chunk by chunk (1.6 ms a grant with
 *                   10^5 of them), by fits, stitches and swaps;
 *   POOL_BY_HOLDER  last holder (not yet orphans), so a session's end marks
 *                   what it gave back as orphans without walking every
 *                   free chunk.
 * A chunk is in a group's list iff it is FREE and was entered
 * (pool_free_insert and pool_free_take, as the bins).  If an entry could
 * not be allocated, that group is off (pool_grp_off) and the code that
 * reads it walks the free chunks as before from then on.
 */
enum { POOL_BY_TENANT, POOL_BY_HOLDER, POOL_NGROUPS };
struct pool_group {
	uint64_t			a, b;	/* the key: tenant, bin; or holder id, 0 */
	struct vmmd_chunk_list		chunks;
	struct vmmd_hnode		h;
};
static struct pool_htab			pool_groups[POOL_NGROUPS];
static bool				pool_grp_off[POOL_NGROUPS];
static struct vmmd_pool_totals		pool_t;
/* A drain (vmmd_pool_drain): until pool_drain_until_ms, released chunks go
 * to the GPU while pool_drain_left bytes remain. */
static uint64_t				pool_drain_until_ms, pool_drain_left;

/*
 * What vmmd's own exported fds are (file type, st_dev, st_rdev: an fd of
 * another kind is not a chunk of this GPU and is refused before the driver
 * sees it), and whether their inode names the allocation (two exports of
 * one chunk share it, two chunks differ).  Where it does, every chunk that
 * ever left vmmd as an fd is in pool_keys, and Adopt refuses memory that is
 * there.  Probed at start (pool_probe_fds).
 */
static bool				pool_kind_known, pool_identity;
static mode_t				pool_kind_type;
static dev_t				pool_kind_dev, pool_kind_rdev;
static struct pool_htab			pool_keys;

static void	pool_probe_fds(void);
static int	pool_bins_init(void);
static int	pool_ht_resize(struct pool_htab *, unsigned);
static int	pool_driver_free(uint64_t *);

/*
 * Slow driver calls go to the worker thread (worker.c): a create of at
 * least POOL_ASYNC_MIN for a grant, and the release of a chunk that large.
 * Smaller ones cost a few hundred microseconds and stay in the loop.
 */
#define POOL_ASYNC_MIN		((uint64_t)32 << 20)

/*
 * A grant waiting for its create on the worker.  Its picked chunks (v) were
 * taken off the free lists and are not lent: neither free nor lent, no one
 * else can be given them, and they go back (pool_unpick) if the grant
 * fails or its holder goes first (then h is NULL and cb is never called).
 * The created handle becomes a chunk only in pool_created, on the loop.
 */
struct pool_pending {
	struct vmmd_job		job;		/* first: the job is the pending */
	struct vmmd_holder	*h;		/* NULL: cancelled */
	struct vmmd_chunk	*v[VMM_PROTO_MAX_CHUNKS];
	size_t			n, max;
	uint64_t		want, got, below, above;
	uint64_t		piece, grown;	/* pool_piece; made so far */
	unsigned		flags;
	vmmd_pool_granted_fn	*cb;
	void			*arg;
	TAILQ_ENTRY(pool_pending) link;
};
static TAILQ_HEAD(, pool_pending) pool_pendings =
    TAILQ_HEAD_INITIALIZER(pool_pendings);
/* Bytes being created on the worker: pool_max counts them already.  And
 * releases queued there whose completion has not come back yet. */
static uint64_t	pool_creating, pool_releasing;
/* The GPU's free memory as vmmd last knew it, and when it asked. */
static uint64_t	pool_free_cached, pool_free_when;
static void	pool_bins_free(void);
static void	pool_groups_free(void);

/*
 * Recent demand, for adaptive idle return: bytes granted per 250 ms slot
 * over the last POOL_RATE_SLOTS slots.  The pool keeps idle up to what was
 * granted within one idle timeout (never below idle_floor), so a steady
 * high rate keeps its working set pooled and an idle daemon shrinks to the
 * floor one timeout after the last grant.
 */
#define POOL_RATE_SLOT_MS	250
#define POOL_RATE_SLOTS		256
static uint64_t		pool_rate[POOL_RATE_SLOTS];
static uint64_t		pool_rate_slot;	/* absolute slot of the newest */

static void
pool_rate_add(uint64_t bytes)
{
	uint64_t slot = vmm_now_ms() / POOL_RATE_SLOT_MS;

	while (pool_rate_slot < slot) {
		pool_rate_slot++;
		pool_rate[pool_rate_slot % POOL_RATE_SLOTS] = 0;
		if (slot - pool_rate_slot > POOL_RATE_SLOTS)
			pool_rate_slot = slot - POOL_RATE_SLOTS;
	}
	pool_rate[slot % POOL_RATE_SLOTS] += bytes;
}

/* Bytes granted within the last window_ms. */
static uint64_t
pool_recent(uint64_t window_ms)
{
	/* Whole slots covering the window, plus the current partial one. */
	uint64_t n = (window_ms + POOL_RATE_SLOT_MS - 1) / POOL_RATE_SLOT_MS + 1;
	uint64_t sum = 0, i;

	pool_rate_add(0);	/* age the ring */
	if (n > POOL_RATE_SLOTS)
		n = POOL_RATE_SLOTS;
	for (i = 0; i < n; i++)
		sum += pool_rate[(pool_rate_slot - i) % POOL_RATE_SLOTS];
	return sum;
}

uint64_t
vmmd_pool_keep(void)
{
	uint64_t keep = pool_recent(vmmd_cfg.idle_timeout_ms);

	return keep > vmmd_cfg.idle_floor ? keep : vmmd_cfg.idle_floor;
}

static const char *
pool_cu_name(CUresult r)
{
	const char *s = NULL;

	if (cuGetErrorName(r, &s) != CUDA_SUCCESS || s == NULL)
		return "unknown CUDA error";
	return s;
}

/* Parses a UUID: 32 hex digits, dashes anywhere, optional "GPU-" prefix,
 * or "MIG-" for a MIG instance (what nvidia-smi -L prints and
 * CUDA_VISIBLE_DEVICES takes; cuDeviceGetUuid names the instance). */
static int
pool_parse_uuid(const char *s, unsigned char out[16])
{
	int n = 0;

	if (strncasecmp(s, "GPU-", 4) == 0 || strncasecmp(s, "MIG-", 4) == 0)
		s += 4;
	for (; *s != '\0'; s++) {
		int v;

		if (*s == '-')
			continue;
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			v = *s - 'a' + 10;
		else if (*s >= 'A' && *s <= 'F')
			v = *s - 'A' + 10;
		else
			return -1;
		if (n >= 32)
			return -1;
		if (n % 2 == 0)
			out[n / 2] = (unsigned char)(v << 4);
		else
			out[n / 2] |= (unsigned char)v;
		n++;
	}
	return n == 32 ? 0 : -1;
}

/* Finds the device named by an ordinal or a UUID. */
static int
pool_find_device(const char *spec, CUdevice *dev, char *err, size_t errlen)
{
	unsigned char want[16];
	CUresult r;
	int count, i;
	char *end;
	long ord;

	if ((r = cuDeviceGetCount(&count)) != CUDA_SUCCESS) {
		snprintf(err, errlen, "cuDeviceGetCount: %s", pool_cu_name(r));
		return -1;
	}
	ord = strtol(spec, &end, 10);
	if (*spec != '\0' && *end == '\0') {
		if (ord < 0 || ord >= count) {
			snprintf(err, errlen, "device %s: there are %d GPUs (0-%d)",
			    spec, count, count - 1);
			return -1;
		}
		return cuDeviceGet(dev, (int)ord) == CUDA_SUCCESS ? 0 : -1;
	}
	if (pool_parse_uuid(spec, want) != 0) {
		snprintf(err, errlen, "device \"%.64s\": expected an ordinal, a "
		    "GPU UUID or a MIG UUID (MIG-xxxxxxxx-xxxx-xxxx-xxxx-"
		    "xxxxxxxxxxxx)", spec);
		return -1;
	}
	for (i = 0; i < count; i++) {
		CUuuid u;

		if (cuDeviceGet(dev, i) == CUDA_SUCCESS &&
		    cuDeviceGetUuid_v2(&u, *dev) == CUDA_SUCCESS &&
		    memcmp(u.bytes, want, 16) == 0)
			return 0;
	}
	snprintf(err, errlen, "device %s: no GPU has this UUID", spec);
	return -1;
}

int
vmmd_pool_init(const struct vmmd_config *c, char *err, size_t errlen)
{
	int vmm = 0, posix = 0, mode = 0, rdma = 0;
	size_t gran, total;
	CUuuid u;
	CUresult r;

	if ((r = cuInit(0)) != CUDA_SUCCESS) {
		snprintf(err, errlen, "cuInit: %s (is the NVIDIA driver loaded?)",
		    pool_cu_name(r));
		return -1;
	}
	if (pool_find_device(c->device, &pool_dev, err, errlen) != 0)
		return -1;
	cuDeviceGetAttribute(&vmm,
	    CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, pool_dev);
	cuDeviceGetAttribute(&posix,
	    CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED,
	    pool_dev);
	if (!vmm || !posix) {
		snprintf(err, errlen, "device %s does not support virtual memory "
		    "management with POSIX file descriptor handles", c->device);
		return -1;
	}
	/* A device in EXCLUSIVE_PROCESS mode belongs to whichever process
	 * holds a context: never vmmd after start. */
	if (cuDeviceGetAttribute(&mode, CU_DEVICE_ATTRIBUTE_COMPUTE_MODE,
	    pool_dev) != CUDA_SUCCESS)
		mode = CU_COMPUTEMODE_DEFAULT;
	pool_ctx_shared = mode == CU_COMPUTEMODE_DEFAULT;
	if (cuDeviceGetAttribute(&rdma,
	    CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED,
	    pool_dev) != CUDA_SUCCESS)
		rdma = 0;
	memset(&pool_prop, 0, sizeof(pool_prop));
	pool_prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	pool_prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	pool_prop.location.id = pool_dev;
	pool_prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
	/* So RDMA NICs (and dma-buf exporters) can register pooled memory;
	 * only where the device says it may (cuda.h: "must be set only if
	 * the device supports it"). */
	pool_prop.allocFlags.gpuDirectRDMACapable = rdma ? 1 : 0;
	if ((r = cuMemGetAllocationGranularity(&gran, &pool_prop,
	    CU_MEM_ALLOC_GRANULARITY_RECOMMENDED)) != CUDA_SUCCESS ||
	    (r = cuDeviceTotalMem(&total, pool_dev)) != CUDA_SUCCESS ||
	    (r = cuDeviceGetUuid_v2(&u, pool_dev)) != CUDA_SUCCESS) {
		snprintf(err, errlen, "device query: %s", pool_cu_name(r));
		return -1;
	}
	pool_gran = gran;
	pool_unit = gran * c->chunk_multiple;
	pool_total = total;
	if (pool_bins_init() != 0 ||
	    (pool_ids.b == NULL && pool_ht_resize(&pool_ids,
	    POOL_HASH_MIN_BITS) != 0) ||
	    (pool_keys.b == NULL && pool_ht_resize(&pool_keys,
	    POOL_HASH_MIN_BITS) != 0)) {
		snprintf(err, errlen, "out of memory for the chunk tables");
		return -1;
	}
	memcpy(pool_uuid, u.bytes, 16);
	pool_probe_fds();
	/* The driver's figure once at start; in an exclusive mode, where vmmd
	 * takes no context, all of the device is taken as free. */
	pool_free_cached = pool_total;
	if (pool_ctx_shared)
		pool_driver_free(&pool_free_cached);
	pool_free_when = vmm_now_ms();
	return 0;
}

/* Makes the device's primary context current for a call that needs one;
 * 0, or -1 (DEVICE_UNAVAILABLE under an exclusive mode, say). */
static int
pool_ctx_enter(void)
{
	CUcontext ctx;
	CUresult r;

	if ((r = cuDevicePrimaryCtxRetain(&ctx, pool_dev)) != CUDA_SUCCESS) {
		vmm_log_debug("primary context: %s", pool_cu_name(r));
		return -1;
	}
	if ((r = cuCtxSetCurrent(ctx)) != CUDA_SUCCESS) {
		vmm_log_debug("primary context: %s", pool_cu_name(r));
		cuDevicePrimaryCtxRelease(pool_dev);
		return -1;
	}
	return 0;
}

/* Lets the context of pool_ctx_enter go: vmmd holds none again. */
static void
pool_ctx_leave(void)
{
	(void)cuCtxSetCurrent(NULL);
	(void)cuDevicePrimaryCtxRelease(pool_dev);
}

/* The driver's free-memory figure, under a context taken for the call. */
static int
pool_driver_free(uint64_t *out)
{
	size_t f = 0, t = 0;
	int rc = -1;

	if (pool_ctx_enter() != 0)
		return -1;
	if (cuMemGetInfo(&f, &t) == CUDA_SUCCESS) {
		*out = f;
		rc = 0;
	}
	pool_ctx_leave();
	return rc;
}

uint64_t
vmmd_pool_chunk_unit(void)
{
	return pool_unit;
}

uint64_t
vmmd_pool_device_total(void)
{
	return pool_total;
}

/*
 * What the GPU has free, from vmmd's own accounting: the driver's figure,
 * asked off the request path (vmmd_pool_refresh_free, from the idle tick
 * and at start), moved by every create and destroy of vmmd's own in
 * between.  A stats or MemInfo request never calls the driver.  Asking
 * needs a context, which vmmd takes for the call only (pool_ctx_enter), at
 * most every POOL_FREE_REFRESH_MS, and never in an exclusive compute mode,
 * where the figure follows vmmd's own creates and destroys alone.
 */
#define POOL_FREE_REFRESH_MS	5000

void
vmmd_pool_refresh_free(void)
{
	uint64_t now = vmm_now_ms();

	if (!pool_ctx_shared ||
	    (pool_free_when != 0 && now - pool_free_when < POOL_FREE_REFRESH_MS))
		return;
	pool_free_when = now;
	(void)pool_driver_free(&pool_free_cached);
}

uint64_t
vmmd_pool_device_free(void)
{
	return pool_free_cached;
}

/* The pool grew or shrank by delta bytes: the free figure follows, and the
 * high-water marks. */
static void
pool_physical_add(int64_t delta)
{
	pool_t.physical += (uint64_t)delta;
	if (delta > 0)
		pool_free_cached = pool_free_cached > (uint64_t)delta ?
		    pool_free_cached - (uint64_t)delta : 0;
	else
		pool_free_cached += (uint64_t)-delta;
	if (pool_t.physical > pool_t.peak_physical)
		pool_t.peak_physical = pool_t.physical;
}

/* Whether memory is short: the GPU's free memory under an eighth of the
 * device, or the pool within an eighth of pool_max. */
static bool
pool_short(void)
{
	return pool_free_cached < pool_total / 8 ||
	    (vmmd_cfg.pool_max != 0 &&
	    pool_t.physical > vmmd_cfg.pool_max - vmmd_cfg.pool_max / 8);
}

void
vmmd_pool_reset_marks(void)
{
	pool_t.peak_physical = pool_t.physical;
	pool_t.peak_lent = pool_t.lent;
}

int
vmmd_pool_device_ordinal(void)
{
	return (int)pool_dev;
}

const unsigned char *
vmmd_pool_device_uuid(void)
{
	return pool_uuid;
}

void
vmmd_pool_totals(struct vmmd_pool_totals *t)
{
	*t = pool_t;
}

/* ---- chunk bookkeeping ----------------------------------------------------- */

#define POOL_OF(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

static struct vmmd_hnode **
pool_ht_bucket(const struct pool_htab *t, uint64_t key)
{
	return &t->b[(key * 0x9e3779b97f4a7c15ull) >> (64 - t->bits)];
}

/* Makes t 2^bits buckets, moving every entry; 0 or -1 (the old table is
 * kept). */
static int
pool_ht_resize(struct pool_htab *t, unsigned bits)
{
	struct vmmd_hnode **old = t->b, *e, *next, **b;
	size_t oldn = t->n, i;

	if ((t->b = calloc((size_t)1 << bits, sizeof(*t->b))) == NULL) {
		t->b = old;
		return -1;
	}
	t->n = (size_t)1 << bits;
	t->bits = bits;
	for (i = 0; i < oldn; i++) {
		for (e = old[i]; e != NULL; e = next) {
			next = e->next;
			b = pool_ht_bucket(t, e->key);
			e->next = *b;
			*b = e;
		}
	}
	free(old);
	return 0;
}

/* Enters e under key, making the table or growing it past one entry a
 * bucket; 0, or -1 if there is no table and none could be made. */
static int
pool_ht_add(struct pool_htab *t, struct vmmd_hnode *e, uint64_t key)
{
	struct vmmd_hnode **b;

	if (t->b == NULL && pool_ht_resize(t, POOL_HASH_MIN_BITS) != 0)
		return -1;
	if (t->count >= t->n)
		(void)pool_ht_resize(t, t->bits + 1);
	e->key = key;
	b = pool_ht_bucket(t, key);
	e->next = *b;
	*b = e;
	t->count++;
	return 0;
}

/* Takes e (entered) out of t. */
static void
pool_ht_remove(struct pool_htab *t, struct vmmd_hnode *e)
{
	struct vmmd_hnode **pp;

	for (pp = pool_ht_bucket(t, e->key); *pp != e; pp = &(*pp)->next)
		;
	*pp = e->next;
	t->count--;
}

/* The first entry under key, or NULL; the next one after e (pool_ht_next):
 * keys may be shared, their owners tell their entries apart. */
static struct vmmd_hnode *
pool_ht_from(struct vmmd_hnode *e, uint64_t key)
{
	for (; e != NULL; e = e->next)
		if (e->key == key)
			return e;
	return NULL;
}

static struct vmmd_hnode *
pool_ht_first(const struct pool_htab *t, uint64_t key)
{
	return t->b == NULL ? NULL : pool_ht_from(*pool_ht_bucket(t, key), key);
}

static struct vmmd_hnode *
pool_ht_next(const struct vmmd_hnode *e)
{
	return pool_ht_from(e->next, e->key);
}

static void
pool_ht_free(struct pool_htab *t)
{
	free(t->b);
	memset(t, 0, sizeof(*t));
}

/* Enters a new chunk in the id hash (made by vmmd_pool_init, so it
 * cannot fail). */
static void
pool_hash_add(struct vmmd_chunk *ch)
{
	(void)pool_ht_add(&pool_ids, &ch->hid, ch->id);
}

static void
pool_hash_remove(struct vmmd_chunk *ch)
{
	pool_ht_remove(&pool_ids, &ch->hid);
}

static struct vmmd_chunk *
pool_hash_find(uint64_t id)
{
	struct vmmd_hnode *e = pool_ht_first(&pool_ids, id);

	return e == NULL ? NULL : POOL_OF(e, struct vmmd_chunk, hid);
}

/* The key of an exported fd's kernel object. */
static uint64_t
pool_key_of(dev_t dev, ino_t ino)
{
	return ((uint64_t)dev * 0x9e3779b97f4a7c15ull) ^ (uint64_t)ino;
}

static struct vmmd_chunk *
pool_key_find(const struct stat *st)
{
	struct vmmd_hnode *e;
	struct vmmd_chunk *ch;

	for (e = pool_ht_first(&pool_keys, pool_key_of(st->st_dev,
	    st->st_ino)); e != NULL; e = pool_ht_next(e)) {
		ch = POOL_OF(e, struct vmmd_chunk, hkey);
		if (ch->key_dev == st->st_dev && ch->key_ino == st->st_ino)
			return ch;
	}
	return NULL;
}

/* Enters ch under its fd's key (the table made by vmmd_pool_init). */
static void
pool_key_add(struct vmmd_chunk *ch, const struct stat *st)
{
	ch->keyed = true;
	ch->key_dev = st->st_dev;
	ch->key_ino = st->st_ino;
	(void)pool_ht_add(&pool_keys, &ch->hkey, pool_key_of(st->st_dev,
	    st->st_ino));
}

static void
pool_key_remove(struct vmmd_chunk *ch)
{
	if (!ch->keyed)
		return;
	pool_ht_remove(&pool_keys, &ch->hkey);
	ch->keyed = false;
}

/*
 * What an fd is (type, device, inode), from the kernel's view of it only:
 * AT_STATX_DONT_SYNC never asks the filesystem, so an fd a peer sends
 * (Adopt) of a network or FUSE filesystem it serves cannot hold vmmd's
 * loop in a GETATTR that is never answered.  Every stat of an exported fd
 * goes through here, so the keys compare alike.  0, or -1 with errno.
 */
static int
pool_fd_stat(int fd, struct stat *st)
{
	struct statx sx;

	if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC,
	    STATX_TYPE | STATX_INO, &sx) != 0)
		return -1;
	if ((sx.stx_mask & (STATX_TYPE | STATX_INO)) !=
	    (STATX_TYPE | STATX_INO)) {
		errno = ENODATA;
		return -1;
	}
	memset(st, 0, sizeof(*st));
	st->st_mode = sx.stx_mode;
	st->st_ino = (ino_t)sx.stx_ino;
	st->st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
	st->st_rdev = makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
	return 0;
}

/* Whether st is of the kind vmmd's own exports are. */
static bool
pool_fd_is_ours(const struct stat *st)
{
	return pool_kind_known && (st->st_mode & S_IFMT) == pool_kind_type &&
	    st->st_dev == pool_kind_dev && st->st_rdev == pool_kind_rdev;
}

static bool
pool_same_object(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Learns what exported fds are here (see pool_kind_known) from two probe
 * allocations of one granule, given back at once.  Without memory to probe
 * with, the kind stays unknown and Adopt waits for a later try. */
static void
pool_probe_fds(void)
{
	CUmemGenericAllocationHandle h[2];
	struct stat st[3];
	int fd[3] = { -1, -1, -1 }, nh = 0, i;

	for (nh = 0; nh < 2; nh++)
		if (cuMemCreate(&h[nh], pool_gran, &pool_prop, 0) != CUDA_SUCCESS)
			goto out;
	for (i = 0; i < 3; i++)
		if (cuMemExportToShareableHandle(&fd[i], h[i / 2],
		    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0) != CUDA_SUCCESS ||
		    pool_fd_stat(fd[i], &st[i]) != 0)
			goto out;
	pool_kind_type = st[0].st_mode & S_IFMT;
	pool_kind_dev = st[0].st_dev;
	pool_kind_rdev = st[0].st_rdev;
	pool_kind_known = true;
	pool_identity = pool_same_object(&st[0], &st[1]) &&
	    !pool_same_object(&st[0], &st[2]);
	vmm_log_debug("exported fds: type 0%o, %s", (unsigned)pool_kind_type,
	    pool_identity ? "the inode names the allocation" :
	    "the inode does not name the allocation");
out:
	for (i = 0; i < 3; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	while (nh > 0)
		cuMemRelease(h[--nh]);
}

/* ---- the free list: size bins ------------------------------------------ */

/* Sizes the bins for chunks up to the device's memory; 0 or -1. */
static int
pool_bins_init(void)
{
	size_t i;

	if (pool_bin != NULL)
		return 0;
	pool_nbins = (size_t)(pool_total / pool_unit) + 2;
	pool_nmap = (pool_nbins + 63) / 64;
	pool_nsum = (pool_nmap + 63) / 64;
	pool_bin = calloc(pool_nbins, sizeof(*pool_bin));
	pool_map = calloc(pool_nmap, sizeof(*pool_map));
	pool_sum = calloc(pool_nsum, sizeof(*pool_sum));
	if (pool_bin == NULL || pool_map == NULL || pool_sum == NULL) {
		pool_bins_free();
		return -1;
	}
	for (i = 0; i < pool_nbins; i++)
		TAILQ_INIT(&pool_bin[i]);
	return 0;
}

static void
pool_bins_free(void)
{
	free(pool_bin);
	free(pool_map);
	free(pool_sum);
	pool_bin = NULL;
	pool_map = pool_sum = NULL;
	pool_nbins = pool_nmap = pool_nsum = 0;
	TAILQ_INIT(&pool_age);
	pool_nfree = 0;
	pool_groups_free();
	TAILQ_INIT(&pool_orph);
	pool_orph_bytes = 0;
}

/* The bin of a chunk of size bytes.  No chunk is larger than the device;
 * the last bin would take one anyway (bins above it stay in order). */
static size_t
pool_bin_of(uint64_t size)
{
	uint64_t i = size / pool_unit;

	return i < pool_nbins ? (size_t)i : pool_nbins - 1;
}

static void
pool_bin_mark(size_t i, bool full)
{
	size_t w = i / 64;

	if (full) {
		pool_map[w] |= 1ull << (i % 64);
		pool_sum[w / 64] |= 1ull << (w % 64);
	} else {
		pool_map[w] &= ~(1ull << (i % 64));
		if (pool_map[w] == 0)
			pool_sum[w / 64] &= ~(1ull << (w % 64));
	}
}

/* The first word of pool_map at or after w with a bit set, or pool_nmap. */
static size_t
pool_map_next(size_t w)
{
	size_t s = w / 64;
	uint64_t m;

	if (w >= pool_nmap)
		return pool_nmap;
	m = pool_sum[s] & (~0ull << (w % 64));
	while (m == 0) {
		if (++s >= pool_nsum)
			return pool_nmap;
		m = pool_sum[s];
	}
	return s * 64 + (size_t)__builtin_ctzll(m);
}

/* The last word of pool_map at or before w with a bit set, or POOL_NO_BIN. */
static size_t
pool_map_prev(size_t w)
{
	size_t s = w / 64;
	uint64_t m;

	m = pool_sum[s] & (~0ull >> (63 - w % 64));
	while (m == 0) {
		if (s-- == 0)
			return POOL_NO_BIN;
		m = pool_sum[s];
	}
	return s * 64 + 63 - (size_t)__builtin_clzll(m);
}

/* The smallest non-empty bin >= i, or POOL_NO_BIN. */
static size_t
pool_bin_next(size_t i)
{
	size_t w;
	uint64_t m;

	if (i >= pool_nbins)
		return POOL_NO_BIN;
	w = i / 64;
	m = pool_map[w] & (~0ull << (i % 64));
	if (m == 0) {
		if ((w = pool_map_next(w + 1)) >= pool_nmap)
			return POOL_NO_BIN;
		m = pool_map[w];
	}
	return w * 64 + (size_t)__builtin_ctzll(m);
}

/* The largest non-empty bin <= i, or POOL_NO_BIN. */
static size_t
pool_bin_prev(size_t i)
{
	size_t w;
	uint64_t m;

	if (i == POOL_NO_BIN || pool_nbins == 0)
		return POOL_NO_BIN;
	if (i >= pool_nbins)
		i = pool_nbins - 1;
	w = i / 64;
	m = pool_map[w] & (~0ull >> (63 - i % 64));
	if (m == 0) {
		if (w == 0 || (w = pool_map_prev(w - 1)) == POOL_NO_BIN)
			return POOL_NO_BIN;
		m = pool_map[w];
	}
	return w * 64 + 63 - (size_t)__builtin_clzll(m);
}

/* ---- the free list by tenant, by holder ------------------------------------- */

/* Forgets every list (the chunks are gone or being freed). */
static void
pool_groups_free(void)
{
	struct vmmd_hnode *e, *next;
	size_t i;
	int g;

	for (g = 0; g < POOL_NGROUPS; g++) {
		for (i = 0; i < pool_groups[g].n; i++)
			for (e = pool_groups[g].b[i]; e != NULL; e = next) {
				next = e->next;
				free(POOL_OF(e, struct pool_group, h));
			}
		pool_ht_free(&pool_groups[g]);
		pool_grp_off[g] = false;
	}
}

/* The hash key of the list (a, b) of group g. */
static uint64_t
pool_group_key(uint64_t a, uint64_t b)
{
	return (a * 0x9e3779b97f4a7c15ull) ^ (b * 0xc2b2ae3d27d4eb4full);
}

/* The list (a, b) of group g, or NULL if it has no free chunk. */
static struct pool_group *
pool_group_find(int g, uint64_t a, uint64_t b)
{
	struct vmmd_hnode *e;
	struct pool_group *gr;

	for (e = pool_ht_first(&pool_groups[g], pool_group_key(a, b));
	    e != NULL; e = pool_ht_next(e)) {
		gr = POOL_OF(e, struct pool_group, h);
		if (gr->a == a && gr->b == b)
			return gr;
	}
	return NULL;
}

/* Enters a chunk being put on the free list at the head of list (a, b)
 * of group g. */
static void
pool_group_enter(struct vmmd_chunk *ch, int g, uint64_t a, uint64_t b)
{
	struct pool_group *gr;

	ch->grp[g] = NULL;
	if (pool_grp_off[g])
		return;
	if ((gr = pool_group_find(g, a, b)) == NULL) {
		if ((gr = calloc(1, sizeof(*gr))) == NULL ||
		    pool_ht_add(&pool_groups[g], &gr->h,
		    pool_group_key(a, b)) != 0) {
			free(gr);
			vmm_log_error("out of memory for the free list by %s: "
			    "it is walked whole from now on",
			    g == POOL_BY_TENANT ? "tenant" : "holder");
			pool_grp_off[g] = true;
			return;
		}
		gr->a = a;
		gr->b = b;
		TAILQ_INIT(&gr->chunks);
	}
	TAILQ_INSERT_HEAD(&gr->chunks, ch, glink[g]);
	ch->grp[g] = gr;
}

/* Takes a chunk off its list of group g, if on one. */
static void
pool_group_leave(struct vmmd_chunk *ch, int g)
{
	struct pool_group *gr = ch->grp[g];

	if (gr == NULL)
		return;
	TAILQ_REMOVE(&gr->chunks, ch, glink[g]);
	ch->grp[g] = NULL;
	if (!TAILQ_EMPTY(&gr->chunks))
		return;
	pool_ht_remove(&pool_groups[g], &gr->h);
	free(gr);
}

/* Tenant t's free chunks in bin, newest first, or NULL if none. */
static struct vmmd_chunk_list *
pool_tbin(const struct vmmd_tenant *t, size_t bin)
{
	struct pool_group *gr = pool_group_find(POOL_BY_TENANT,
	    (uint64_t)(uintptr_t)t, bin);

	return gr == NULL ? NULL : &gr->chunks;
}

/* The newest of tenant t's free chunks in bin no smaller than want. */
static struct vmmd_chunk *
pool_tbin_first(const struct vmmd_tenant *t, size_t bin, uint64_t want)
{
	struct vmmd_chunk_list *l = pool_tbin(t, bin);
	struct vmmd_chunk *ch;

	if (l == NULL)
		return NULL;
	TAILQ_FOREACH(ch, l, glink[POOL_BY_TENANT])
		if (ch->size >= want)
			return ch;
	return NULL;
}

/* Puts a chunk (off every list) on the free list, newest of its size. */
static void
pool_free_insert(struct vmmd_chunk *ch)
{
	size_t i = pool_bin_of(ch->size);

	ch->state = VMMD_CHUNK_FREE;
	ch->holder = NULL;
	ch->idle_since_ms = vmm_now_ms();
	ch->free_seq = ++pool_free_seq;
	if (TAILQ_EMPTY(&pool_bin[i]))
		pool_bin_mark(i, true);
	TAILQ_INSERT_HEAD(&pool_bin[i], ch, link);
	TAILQ_INSERT_TAIL(&pool_age, ch, alink);
	pool_group_enter(ch, POOL_BY_TENANT, (uint64_t)(uintptr_t)ch->tenant, i);
	if (ch->last_holder != 0 && !ch->orphan)
		pool_group_enter(ch, POOL_BY_HOLDER, ch->last_holder, 0);
	else
		ch->grp[POOL_BY_HOLDER] = NULL;
	if (ch->orphan) {
		TAILQ_INSERT_TAIL(&pool_orph, ch, olink);
		pool_orph_bytes += ch->size;
	}
	pool_nfree++;
	pool_t.idle += ch->size;
}

/* Takes a free chunk off the free list (for a grant being built). */
static void
pool_free_take(struct vmmd_chunk *ch)
{
	size_t i = pool_bin_of(ch->size);

	TAILQ_REMOVE(&pool_bin[i], ch, link);
	if (TAILQ_EMPTY(&pool_bin[i]))
		pool_bin_mark(i, false);
	TAILQ_REMOVE(&pool_age, ch, alink);
	pool_group_leave(ch, POOL_BY_TENANT);
	pool_group_leave(ch, POOL_BY_HOLDER);
	if (ch->orphan) {
		TAILQ_REMOVE(&pool_orph, ch, olink);
		pool_orph_bytes -= ch->size;
	}
	pool_nfree--;
	pool_t.idle -= ch->size;
}

/* The next free chunk in descending size order (each size oldest first),
 * from ch, or the first one if ch is NULL; NULL after the last. */
static struct vmmd_chunk *
pool_free_prev(struct vmmd_chunk *ch)
{
	size_t i;

	if (ch != NULL) {
		struct vmmd_chunk *p = TAILQ_PREV(ch, vmmd_chunk_list, link);

		if (p != NULL)
			return p;
		i = pool_bin_of(ch->size);
		if (i == 0)
			return NULL;
		i = pool_bin_prev(i - 1);
	} else
		i = pool_bin_prev(pool_nbins - 1);
	return i == POOL_NO_BIN ? NULL : TAILQ_LAST(&pool_bin[i],
	    vmmd_chunk_list);
}

/* Whether the pool may grow by size (pool_max, creates in flight too). */
static bool
pool_may_grow(uint64_t size)
{
	return vmmd_cfg.pool_max == 0 ||
	    pool_t.physical + pool_creating + size <= vmmd_cfg.pool_max;
}

static struct vmmd_chunk *pool_chunk_new(CUmemGenericAllocationHandle h,
    uint64_t size);

/* Creates a chunk of size bytes; returns the CUresult. */
static CUresult
pool_create(uint64_t size, struct vmmd_chunk **out)
{
	CUmemGenericAllocationHandle h;
	struct vmmd_chunk *ch;
	CUresult r;

	if (!pool_may_grow(size))
		return CUDA_ERROR_OUT_OF_MEMORY;
	/* Refused, perhaps for want of an fd: once more without the exported
	 * fds vmmd keeps (export.c). */
	if ((r = cuMemCreate(&h, size, &pool_prop, 0)) != CUDA_SUCCESS &&
	    vmmd_export_shed() > 0)
		r = cuMemCreate(&h, size, &pool_prop, 0);
	if (r != CUDA_SUCCESS)
		return r;
	if ((ch = pool_chunk_new(h, size)) == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*out = ch;
	return CUDA_SUCCESS;
}

/* Makes a chunk of a handle just created (loop thread); NULL (the handle
 * released) if out of memory. */
static struct vmmd_chunk *
pool_chunk_new(CUmemGenericAllocationHandle h, uint64_t size)
{
	struct vmmd_chunk *ch;

	if ((ch = calloc(1, sizeof(*ch))) == NULL) {
		cuMemRelease(h);
		return NULL;
	}
	ch->id = pool_next_id++;
	ch->handle = h;
	ch->size = size;
	pool_hash_add(ch);
	pool_physical_add((int64_t)size);
	pool_t.chunks++;
	vmmd_stats.creates++;
	vmmd_stats.create_bytes += size;
	vmm_log_info("CREATE Chunk=%" PRIu64 " Size=%" PRIu64, ch->id, size);
	return ch;
}

/* A release done on the worker. */
static void
pool_released(struct vmmd_job *j)
{
	pool_releasing--;
	if (j->result != CUDA_SUCCESS)
		vmm_log_error("cuMemRelease of a %" PRIu64 "-byte chunk: %s",
		    j->size, pool_cu_name(j->result));
	free(j);
}

/* Gives a chunk (off every list) back to the GPU. */
static void
pool_destroy(struct vmmd_chunk *ch)
{
	struct vmmd_job *j;
	CUresult r;

	pool_hash_remove(ch);
	pool_key_remove(ch);
	vmmd_export_forget(ch);	/* it would keep the memory alive */
	vmmd_tenant_put(ch->tenant);
	/* Off every list already: the worker only calls the driver.  A create
	 * queued later runs after it; a create in the loop that finds memory
	 * short drains the worker first (pool_create_rest). */
	if (ch->size >= POOL_ASYNC_MIN && vmmd_worker_running() &&
	    (j = calloc(1, sizeof(*j))) != NULL) {
		j->op = VMMD_JOB_RELEASE;
		j->handle = ch->handle;
		j->size = ch->size;
		j->done = pool_released;
		pool_releasing++;
		vmmd_worker_submit(j);
	} else if ((r = cuMemRelease(ch->handle)) != CUDA_SUCCESS)
		vmm_log_error("cuMemRelease of chunk %" PRIu64 ": %s", ch->id,
		    pool_cu_name(r));
	if (ch->adopted)
		pool_t.physical -= ch->size;	/* others may still map it */
	else
		pool_physical_add(-(int64_t)ch->size);
	pool_t.chunks--;
	vmmd_stats.gpu_releases++;
	vmmd_stats.gpu_release_bytes += ch->size;
	vmm_log_info("DESTROY Chunk=%" PRIu64 " Size=%" PRIu64, ch->id, ch->size);
	free(ch);
}

uint64_t
vmmd_pool_trim(uint64_t target, uint64_t keep)
{
	struct vmmd_chunk *ch, *prev;
	uint64_t released = 0;

	/* Largest first: fewest calls for the most memory. */
	for (ch = pool_free_prev(NULL); ch != NULL; ch = prev) {
		prev = pool_free_prev(ch);
		if (target != 0 && released >= target)
			break;
		if (pool_t.idle - ch->size < keep && target == 0)
			continue;
		pool_free_take(ch);
		released += ch->size;
		pool_destroy(ch);
	}
	return released;
}

/* An expired idle chunk and its place in pool_age (oldest first). */
struct pool_expired {
	struct vmmd_chunk	*ch;
	size_t			seq;
};

/* Largest first, each size oldest first: the order pool_free_prev walks
 * the bins in, so the idle timer gives back the same chunks it did when
 * it walked them all. */
static int
pool_expired_cmp(const void *a, const void *b)
{
	const struct pool_expired *x = a, *y = b;

	if (x->ch->size != y->ch->size)
		return x->ch->size > y->ch->size ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Gives idle chunks that have been idle idle_timeout_ms back to the GPU,
 * largest first, while the pool keeps what was recently granted.  Chunks
 * enter pool_age at its tail with idle_since_ms = now, so the expired ones
 * are a prefix of it: the tick looks at them only (O(1) when the oldest
 * is young), not at every idle chunk, which at 10^6 of them stalled grants
 * for tens of ms per tick.
 */
void
vmmd_pool_idle_tick(void)
{
	static struct pool_expired *ex;
	static size_t excap;
	uint64_t now = vmm_now_ms(), timeout = vmmd_cfg.idle_timeout_ms;
	struct vmmd_chunk *ch, *prev;
	uint64_t keep;
	size_t n = 0, i;

	if (timeout == 0 || (ch = TAILQ_FIRST(&pool_age)) == NULL ||
	    now - ch->idle_since_ms < timeout)
		return;
	keep = vmmd_pool_keep();
	if (pool_t.idle <= keep)
		return;		/* every chunk would take it below */
	for (; ch != NULL && now - ch->idle_since_ms >= timeout;
	    ch = TAILQ_NEXT(ch, alink)) {
		if (n == excap) {
			size_t ncap = excap != 0 ? excap * 2 : 256;
			struct pool_expired *v = realloc(ex, ncap * sizeof(*v));

			if (v == NULL)
				goto walk_all;
			ex = v;
			excap = ncap;
		}
		ex[n].ch = ch;
		ex[n].seq = n;
		n++;
	}
	qsort(ex, n, sizeof(*ex), pool_expired_cmp);
	for (i = 0; i < n; i++) {
		ch = ex[i].ch;
		if (pool_t.idle - ch->size < keep)
			continue;
		pool_free_take(ch);
		pool_destroy(ch);
	}
	return;

walk_all:
	/* No memory for the list: every idle chunk, as before. */
	for (ch = pool_free_prev(NULL); ch != NULL; ch = prev) {
		prev = pool_free_prev(ch);
		if (now - ch->idle_since_ms < timeout ||
		    pool_t.idle - ch->size < keep)
			continue;
		pool_free_take(ch);
		pool_destroy(ch);
	}
}

void
vmmd_pool_shutdown(void)
{
	struct vmmd_hnode *e, *next;
	struct vmmd_chunk *ch;
	size_t i;

	/* Every holder is closed by now: creates still on the worker end in
	 * the pool, to be released below with the rest. */
	vmmd_worker_stop();
	/* The lists first: they point into the chunks. */
	pool_bins_free();
	for (i = 0; i < pool_ids.n; i++) {
		for (e = pool_ids.b[i]; e != NULL; e = next) {
			next = e->next;
			ch = POOL_OF(e, struct vmmd_chunk, hid);
			vmmd_export_forget(ch);
			cuMemRelease(ch->handle);
			vmmd_tenant_put(ch->tenant);
			free(ch);
		}
	}
	pool_ht_free(&pool_ids);
	pool_ht_free(&pool_keys);
	memset(&pool_t, 0, sizeof(pool_t));
	pool_drain_left = 0;
}

/* ---- scrub ------------------------------------------------------------------- */

/* Zeroes a chunk through a temporary mapping in the daemon. */
static int
pool_scrub(struct vmmd_chunk *ch)
{
	CUmemAccessDesc acc = { 0 };
	CUdeviceptr va;
	CUresult r;
	int rc = -1;

	if ((r = cuMemAddressReserve(&va, ch->size, 0, 0, 0)) != CUDA_SUCCESS)
		goto fail;
	if ((r = cuMemMap(va, ch->size, 0, ch->handle, 0)) != CUDA_SUCCESS)
		goto fail_free;
	acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	acc.location.id = pool_dev;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	/* The memset and its sync need a context: taken for the scrub only,
	 * and never in an exclusive mode (the chunk then is not reused
	 * across tenants: the caller fails the grant cleanly). */
	if ((r = cuMemSetAccess(va, ch->size, &acc, 1)) == CUDA_SUCCESS) {
		if (!pool_ctx_shared || pool_ctx_enter() != 0)
			r = CUDA_ERROR_DEVICE_UNAVAILABLE;
		else {
			if ((r = cuMemsetD8(va, 0, ch->size)) == CUDA_SUCCESS &&
			    (r = cuCtxSynchronize()) == CUDA_SUCCESS)
				rc = 0;
			pool_ctx_leave();
		}
	}
	cuMemUnmap(va, ch->size);
fail_free:
	cuMemAddressFree(va, ch->size);
fail:
	if (rc != 0)
		vmm_log_error("scrub of chunk %" PRIu64 ": %s", ch->id,
		    pool_cu_name(r));
	else
		vmmd_stats.scrubs++;
	return rc;
}

static bool
pool_needs_scrub(const struct vmmd_chunk *ch, const struct vmmd_holder *h)
{
	if (ch->tenant == NULL)
		return false;
	switch (vmmd_cfg.scrub) {
	case VMMD_SCRUB_ALWAYS:
		return true;
	case VMMD_SCRUB_NEVER:
		return false;
	default:
		return ch->tenant != h->tenant;
	}
}

/* Whether a pooled chunk may be lent to s: never lent, or last held by
 * s's tenant, unless cross_tenant = reuse (tenant.c says why). */
static bool
pool_usable(const struct vmmd_chunk *ch, const struct vmmd_holder *h)
{
	return ch->tenant == NULL || ch->tenant == h->tenant ||
	    vmmd_cfg.cross_tenant == VMMD_CROSS_REUSE;
}

/* ---- grants --------------------------------------------------------------------- */

/* The chunk with the lower free_seq first: a min-heap of n chunks, the
 * one at i sifted down. */
static void
pool_heap_down(struct vmmd_chunk **hp, size_t n, size_t i)
{
	struct vmmd_chunk *t;
	size_t c;

	for (; (c = 2 * i + 1) < n; i = c) {
		if (c + 1 < n && hp[c + 1]->free_seq < hp[c]->free_seq)
			c++;
		if (hp[i]->free_seq <= hp[c]->free_seq)
			break;
		t = hp[i];
		hp[i] = hp[c];
		hp[c] = t;
	}
}

/*
 * pool_swap_idle from the lists by (tenant, bin): the same chunks in the
 * same order (oldest first, free_seq being pool_age's order), merged from
 * the oldest end of every list that holds chunks the request could not
 * use, so the chunks it could use (its own tenant's of a size within
 * [below, above]) are never stepped over one by one.  The cost is one
 * look at each (tenant, size) present plus a heap step per chunk given
 * back.  0, or -1 (no memory for the heap, the lists off: walk pool_age).
 */
static int
pool_swap_lists(const struct vmmd_holder *h, uint64_t bytes, uint64_t below,
    uint64_t above)
{
	static struct vmmd_chunk **hp;
	static size_t cap;
	const struct pool_htab *t = &pool_groups[POOL_BY_TENANT];
	struct vmmd_chunk *ch, *prev;
	struct vmmd_hnode *e;
	size_t n = 0, i;

	if (pool_grp_off[POOL_BY_TENANT])
		return -1;
	if (t->count > cap) {
		struct vmmd_chunk **v = realloc(hp, t->count * sizeof(*v));

		if (v == NULL)
			return -1;
		hp = v;
		cap = t->count;
	}
	for (i = 0; i < t->n; i++)
		for (e = t->b[i]; e != NULL; e = e->next) {
			ch = TAILQ_LAST(&POOL_OF(e, struct pool_group,
			    h)->chunks, vmmd_chunk_list);
			/* All of a list are of one size and tenant. */
			if (ch->size >= below && ch->size <= above &&
			    pool_usable(ch, h))
				continue;
			hp[n++] = ch;
		}
	for (i = n / 2; i-- > 0;)
		pool_heap_down(hp, n, i);
	while (n > 0 && bytes > 0) {
		ch = hp[0];
		/* Before the take: the list may go with its last. */
		prev = TAILQ_PREV(ch, vmmd_chunk_list, glink[POOL_BY_TENANT]);
		hp[0] = prev != NULL ? prev : hp[--n];
		pool_heap_down(hp, n, 0);
		pool_free_take(ch);
		bytes = ch->size >= bytes ? 0 : bytes - ch->size;
		if (!pool_usable(ch, h))
			vmmd_stats.tenant_swaps++;
		pool_destroy(ch);
	}
	return 0;
}

/* Gives back to the GPU up to bytes of idle chunks outside [below, above],
 * oldest first: when the pool had to grow, chunks the request could not
 * use (too small to stitch, too big to fit) are swapped for the new chunk
 * instead of adding to it, so physical memory follows demand rather than
 * every size ever used.  The price is more cuMemCreate calls when sizes
 * keep changing. */
static void
pool_swap_idle(const struct vmmd_holder *h, uint64_t bytes, uint64_t below,
    uint64_t above)
{
	struct vmmd_chunk *ch, *next;

	if (pool_swap_lists(h, bytes, below, above) == 0)
		return;
	/* One pass over the free chunks, oldest first: only those this
	 * request could not use (too small to stitch, too big to fit, or
	 * another tenant's). */
	for (ch = TAILQ_FIRST(&pool_age); ch != NULL && bytes > 0; ch = next) {
		next = TAILQ_NEXT(ch, alink);
		if (ch->size >= below && ch->size <= above && pool_usable(ch, h))
			continue;
		pool_free_take(ch);
		bytes = ch->size >= bytes ? 0 : bytes - ch->size;
		if (!pool_usable(ch, h))
			vmmd_stats.tenant_swaps++;
		pool_destroy(ch);
	}
}

/*
 * The pool grew by bytes for h while memory is not short: gives back to the
 * GPU up to bytes of free orphans (memory whose last holder's process is
 * gone) that this request could not use (outside [below, above], or
 * another tenant's), oldest first.  No running process caches them or
 * will free them again, so each is given back at most once, and only in
 * exchange for memory just created: growth replaces what another process
 * left behind instead of adding to it (two processes on one device: the
 * one that stays grows with sizes the one that left did not use), and a
 * steady process never sees its own idle chunks destroyed for it.
 * Orphans a request can use are lent before anything is created (fit,
 * stitch), as any free chunk.
 */
static void
pool_swap_orphans(const struct vmmd_holder *h, uint64_t bytes,
    uint64_t below, uint64_t above)
{
	struct vmmd_chunk *ch, *next;

	for (ch = TAILQ_FIRST(&pool_orph); ch != NULL && bytes > 0; ch = next) {
		next = TAILQ_NEXT(ch, olink);
		if (ch->size >= below && ch->size <= above && pool_usable(ch, h))
			continue;
		pool_free_take(ch);
		bytes = ch->size >= bytes ? 0 : bytes - ch->size;
		vmmd_stats.orphan_swaps++;
		pool_destroy(ch);
	}
}

/* The pool grew by grown bytes for h: what idle memory goes back to the
 * GPU in exchange.  Memory short: any idle chunk h could not use
 * (pool_swap_idle); otherwise only orphans (pool_swap_orphans). */
static void
pool_swap(const struct vmmd_holder *h, uint64_t grown, uint64_t below,
    uint64_t above)
{
	if (grown == 0 || !vmmd_cfg.swap_idle)
		return;
	if (pool_short())
		pool_swap_idle(h, grown, below, above);
	else if (pool_orph_bytes > 0)
		pool_swap_orphans(h, grown, below, above);
}

/* Puts chunks picked for a grant back on the free list. */
static void
pool_unpick(struct vmmd_chunk **v, size_t n)
{
	while (n > 0)
		pool_free_insert(v[--n]);
}

/* Whether grants look only at their tenant's lists of free chunks (and
 * those never lent), never at another tenant's chunk. */
static bool
pool_by_tenant(void)
{
	return vmmd_cfg.cross_tenant != VMMD_CROSS_REUSE &&
	    !pool_grp_off[POOL_BY_TENANT];
}

/* The bin below i to look at next while what is still missing is left:
 * the largest non-empty one no larger than either, or POOL_NO_BIN. */
static size_t
pool_bin_below(size_t i, uint64_t left)
{
	size_t j = pool_bin_of(left);

	if (i == 0)
		return POOL_NO_BIN;
	return pool_bin_prev(j < i - 1 ? j : i - 1);
}

/*
 * pool_pick_stitch where only h's tenant's chunks and those never lent
 * are usable (pool_by_tenant): the same chunks in the same order (bins
 * from the largest no larger than want down, each oldest first), from the
 * two tenants' lists of each non-empty bin, merged by free_seq, so another
 * tenant's chunks are never stepped over one by one.  Every free chunk is
 * a whole number of units (created so; Adopt refuses other sizes), so the
 * chunks of a bin are all of one size.
 */
static size_t
pool_pick_own(const struct vmmd_holder *h, uint64_t want, uint64_t min_piece,
    struct vmmd_chunk **v, size_t max, uint64_t *got)
{
	struct vmmd_chunk_list *l;
	struct vmmd_chunk *a, *b, *ch;
	size_t n = 0, i;
	bool from_a;

	for (i = pool_bin_prev(pool_bin_of(want)); i != POOL_NO_BIN && n < max;
	    i = pool_bin_below(i, want - *got)) {
		if ((uint64_t)i * pool_unit < min_piece)
			break;		/* all the rest are smaller */
		l = pool_tbin(h->tenant, i);
		a = l == NULL ? NULL : TAILQ_LAST(l, vmmd_chunk_list);
		l = h->tenant == NULL ? NULL : pool_tbin(NULL, i);
		b = l == NULL ? NULL : TAILQ_LAST(l, vmmd_chunk_list);
		while ((a != NULL || b != NULL) && n < max) {
			from_a = b == NULL || (a != NULL &&
			    a->free_seq < b->free_seq);
			ch = from_a ? a : b;
			if (ch->size > want - *got)
				break;	/* the next bin that fits */
			/* Before the take: the list may go with its last. */
			if (from_a)
				a = TAILQ_PREV(ch, vmmd_chunk_list,
				    glink[POOL_BY_TENANT]);
			else
				b = TAILQ_PREV(ch, vmmd_chunk_list,
				    glink[POOL_BY_TENANT]);
			pool_free_take(ch);
			v[n++] = ch;
			*got += ch->size;
			if (*got == want)
				return n;
		}
	}
	return n;
}

/* Picks free chunks no smaller than min_piece (and each no larger than what
 * is still wanted), largest first, up to max; returns how many. */
static size_t
pool_pick_stitch(const struct vmmd_holder *h, uint64_t want,
    uint64_t min_piece, struct vmmd_chunk **v, size_t max, uint64_t *got)
{
	struct vmmd_chunk *ch, *prev;
	size_t n = 0, i;

	*got = 0;
	if (pool_by_tenant())
		return pool_pick_own(h, want, min_piece, v, max, got);
	/* From the largest bin no larger than what is still missing: the
	 * bins above it hold nothing this request could take. */
	i = pool_bin_prev(pool_bin_of(want));
	ch = i == POOL_NO_BIN ? NULL : TAILQ_LAST(&pool_bin[i], vmmd_chunk_list);
	for (; ch != NULL && n < max; ch = prev) {
		prev = pool_free_prev(ch);
		if (ch->size < min_piece)
			break;		/* all the rest are smaller */
		if (ch->size > want - *got) {
			/* Skip to the largest bin that still fits. */
			i = pool_bin_prev(pool_bin_of(want - *got));
			prev = i == POOL_NO_BIN ? NULL :
			    TAILQ_LAST(&pool_bin[i], vmmd_chunk_list);
			continue;
		}
		if (!pool_usable(ch, h))
			continue;
		pool_free_take(ch);
		v[n++] = ch;
		*got += ch->size;
		if (*got == want)
			break;
	}
	return n;
}

/* Describes the pool for an out-of-memory error (the session adds who
 * holds what, as far as the asker may know). */
static void
pool_oom_message(uint64_t want, char *msg, size_t msglen)
{
	snprintf(msg, msglen, "GPU out of memory for %" PRIu64 " MiB: pool %"
	    PRIu64 " MiB (lent %" PRIu64 ", idle %" PRIu64 ", quarantined %"
	    PRIu64 ")", want >> 20, pool_t.physical >> 20, pool_t.lent >> 20,
	    pool_t.idle >> 20, pool_t.quarantined >> 20);
}

/* h's holding changed by delta bytes: so do its quota sums. */
static void
pool_usage_add(struct vmmd_holder *h, int64_t delta)
{
	size_t k;

	for (k = 0; k < sizeof(h->usage) / sizeof(h->usage[0]); k++)
		if (h->usage[k] != NULL)
			*h->usage[k] += (uint64_t)delta;
}

/* Enters a chunk (off every list) in h's ledger as lent to it. */
static void
pool_lend(struct vmmd_chunk *ch, struct vmmd_holder *h)
{
	ch->state = VMMD_CHUNK_LENT;
	ch->holder = h;
	ch->orphan = false;
	if (ch->tenant != h->tenant) {
		vmmd_export_forget(ch);	/* a new tenant: a new export */
		vmmd_tenant_put(ch->tenant);
		ch->tenant = vmmd_tenant_ref(h->tenant);
	}
	TAILQ_INSERT_TAIL(&h->held, ch, link);
	h->chunks++;
	h->bytes += ch->size;
	pool_usage_add(h, (int64_t)ch->size);
	if (h->bytes > h->peak)
		h->peak = h->bytes;
	pool_t.lent += ch->size;
	pool_t.chunks_lent++;
	if (pool_t.lent > pool_t.peak_lent)
		pool_t.peak_lent = pool_t.lent;
}

uint64_t
vmmd_pool_round(uint64_t bytes)
{
	return (bytes + pool_unit - 1) / pool_unit * pool_unit;
}

/* A grant being built: chunks taken off the free list or created. */
struct pool_pick {
	struct vmmd_chunk	**v;
	size_t			n, max;
	uint64_t		want, got;
	/* Acquire.partial: a pick that fills every slot short of want keeps
	 * them all (capped says it did) instead of freeing one for a create. */
	bool			partial, capped;
};

/* Every slot of p is taken and it is still short: with Acquire.partial the
 * pick stays as it is (capped), else its last piece goes back to make room
 * for the chunk that will be created for the rest. */
static void
pool_pick_full(struct pool_pick *p)
{
	if (p->got >= p->want || p->n < p->max)
		return;
	if (p->partial) {
		p->capped = true;
		return;
	}
	pool_free_insert(p->v[--p->n]);
	p->got -= p->v[p->n]->size;
}

/* The smallest usable free chunk no smaller than asked, ch, is the fit
 * if it is at most slack larger: taken off the free lists into p. */
static void
pool_fit_take(struct pool_pick *p, struct vmmd_chunk *ch, uint64_t slack)
{
	if (ch->size > p->want + slack)
		return;
	pool_free_take(ch);
	p->v[p->n++] = ch;
	p->got = ch->size;
	vmmd_stats.fits++;
}

/* 1. One free chunk that fits: the smallest no smaller than asked and at
 * most slack larger. */
static void
pool_fit(const struct vmmd_holder *h, struct pool_pick *p, uint64_t slack)
{
	struct vmmd_chunk *ch, *alt;
	size_t i;

	/* Only the tenant's own chunks and those never lent are usable:
	 * their lists, per non-empty bin from want up (others' chunks are
	 * never looked at).  Of the two, the newer, as the bin's order. */
	if (vmmd_cfg.cross_tenant != VMMD_CROSS_REUSE &&
	    !pool_grp_off[POOL_BY_TENANT]) {
		for (i = pool_bin_next(pool_bin_of(p->want)); i != POOL_NO_BIN;
		    i = pool_bin_next(i + 1)) {
			ch = pool_tbin_first(h->tenant, i, p->want);
			alt = h->tenant == NULL ? NULL :
			    pool_tbin_first(NULL, i, p->want);
			if (ch == NULL || (alt != NULL &&
			    alt->idle_since_ms > ch->idle_since_ms))
				ch = alt;
			if (ch != NULL) {
				pool_fit_take(p, ch, slack);
				return;
			}
			if ((uint64_t)i * pool_unit > p->want + slack)
				return;
		}
		return;
	}
	/* Bins from want up: the first usable chunk is the smallest; if it
	 * is more than slack larger, nothing fits. */
	for (i = pool_bin_next(pool_bin_of(p->want)); i != POOL_NO_BIN;
	    i = pool_bin_next(i + 1)) {
		TAILQ_FOREACH(ch, &pool_bin[i], link) {
			if (ch->size < p->want || !pool_usable(ch, h))
				continue;
			pool_fit_take(p, ch, slack);
			return;
		}
		if ((uint64_t)i * pool_unit > p->want + slack)
			return;
	}
}

/* 2. Stitched from free chunks worth mapping: no smaller than the
 * client's smallest piece or, unless it waives it, frag_ratio × the
 * request.  Returns the smallest piece it allowed. */
static uint64_t
pool_stitch(const struct vmmd_holder *h, struct pool_pick *p, unsigned flags,
    uint64_t min_piece_req)
{
	uint64_t f = 0, min_piece = pool_unit;

	if (min_piece_req != 0)
		f = min_piece_req;
	else if (!(flags & VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_IGNORE_FRAG_RATIO))
		f = (uint64_t)(vmmd_cfg.frag_ratio * (double)p->want);
	if (f > p->want)
		f = p->want;
	if (f > min_piece)
		min_piece = vmmd_pool_round(f);
	p->n = pool_pick_stitch(h, p->want, min_piece, p->v, p->max, &p->got);
	pool_pick_full(p);
	return min_piece;
}

/* 3. Still short: idle pieces of any size (largest first, each no larger
 * than what is missing) rather than new memory, within the piece cap; a
 * slot is kept for the create if they do not cover the request. */
static void
pool_stitch_rest(const struct vmmd_holder *h, struct pool_pick *p)
{
	uint64_t more;
	size_t k;

	if (p->n >= p->max || pool_nfree == 0)
		return;
	k = pool_pick_stitch(h, p->want - p->got, pool_unit, p->v + p->n,
	    p->max - p->n, &more);
	if (k == 0)
		return;
	p->n += k;
	p->got += more;
	pool_pick_full(p);
}

/*
 * 3b. Still short after stitching, with every idle chunk left larger than
 * what is missing (chunks cannot be split): the smallest usable idle chunk
 * that covers the rest, if it is at most twice the rest, rather than new
 * memory for it.  The client maps all it is granted, so it holds at most
 * the rest again unused while the allocation lives; a create would have
 * added the rest to the pool for good (the pool's physical peak), while
 * the chunk sat idle beside it.  Without the bound, one huge idle chunk
 * would be lent for a small remainder.  Not for Acquire.exact, nor for
 * Acquire.no_create: only where vmmd would otherwise create (a no_create
 * ask is answered WOULD_CREATE; the library then gives its medium heap's
 * idle pages back and asks again, and that ask may be covered).  Covering
 * no_create asks too raised kv-cache.trace on the 10x device from 1.021
 * to 1.090.
 */
static void
pool_cover_rest(const struct vmmd_holder *h, struct pool_pick *p)
{
	struct pool_pick q = { .v = p->v + p->n, .max = p->max - p->n };
	uint64_t fits = vmmd_stats.fits;

	if (p->n >= p->max || pool_nfree == 0 || p->got >= p->want)
		return;
	q.want = p->want - p->got;
	pool_fit(h, &q, q.want);
	vmmd_stats.fits = fits;		/* a piece of a stitch, not a fit */
	if (q.n == 0)
		return;
	p->n++;
	p->got += q.got;
	vmmd_stats.covers++;
}

/* The size of the pieces new memory for p is created in (see POOL_SPLIT):
 * all that is missing in one chunk unless the client allows stitching. */
static uint64_t
pool_piece(const struct pool_pick *p, unsigned flags)
{
	uint64_t rest = p->want - p->got, ps = pool_unit;
	size_t slots = p->max - p->n;

	if (!(flags & VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH) ||
	    slots < 2)
		return rest;
	while (ps < p->want / POOL_SPLIT)
		ps *= 2;
	while ((rest + ps - 1) / ps > slots)
		ps *= 2;
	return ps < rest ? ps : rest;
}

/* 4. Creates what is still missing, recovering from out-of-memory: idle
 * chunks go back to the GPU, then (stitching allowed) any fragment will
 * do.  Growth swaps out idle chunks this request could not use (outside
 * [below, above], or another tenant's). */
static CUresult
pool_create_rest(const struct vmmd_holder *h, struct pool_pick *p,
    unsigned flags, uint64_t below, uint64_t above, bool failed_once)
{
	struct vmmd_chunk *made = NULL;
	uint64_t piece = pool_piece(p, flags), grown = 0;
	CUresult r = CUDA_SUCCESS;

	/* All pieces but the last (it may be a remainder), a slot always
	 * left for it. */
	while (!failed_once && p->want - p->got > piece && p->n + 1 < p->max) {
		if ((r = pool_create(piece, &made)) != CUDA_SUCCESS)
			break;
		p->v[p->n++] = made;
		p->got += piece;
		grown += piece;
	}
	made = NULL;
	if (r != CUDA_SUCCESS && r != CUDA_ERROR_OUT_OF_MEMORY)
		return r;
	/* failed_once: the create just failed for lack of memory (on the
	 * worker); go straight to the recovery. */
	if (r == CUDA_SUCCESS)
		r = failed_once ? CUDA_ERROR_OUT_OF_MEMORY :
		    pool_create(p->want - p->got, &made);
	/* Releases queued on the worker (the trim's, earlier ones) must have
	 * reached the driver before the retry counts on their memory. */
	if (r == CUDA_ERROR_OUT_OF_MEMORY &&
	    (vmmd_pool_trim(p->want - p->got, 0) > 0 || pool_releasing > 0)) {
		vmmd_worker_drain();
		vmmd_stats.oom_recoveries++;
		r = pool_create(p->want - p->got, &made);
	}
	if (r == CUDA_ERROR_OUT_OF_MEMORY &&
	    (flags & VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH) &&
	    pool_nfree > 0) {
		uint64_t more;
		size_t k;

		k = pool_pick_stitch(h, p->want - p->got, pool_unit,
		    p->v + p->n, p->max - p->n - 1, &more);
		if (k > 0) {
			p->n += k;
			p->got += more;
			vmmd_stats.oom_recoveries++;
			r = p->got == p->want ? CUDA_SUCCESS :
			    pool_create(p->want - p->got, &made);
		}
	}
	if (r != CUDA_SUCCESS)
		return r;
	if (made != NULL) {
		p->v[p->n++] = made;
		p->got += made->size;
		grown += made->size;
	}
	/* The pool grew while idle chunks sit unused: when memory is short,
	 * give as much of them back, oldest first, so growth is swapped, not
	 * added.  Otherwise they stay for reuse (destroying and creating
	 * memory costs more than keeping it until the idle timer), except
	 * what processes that are gone left behind (pool_swap_orphans). */
	pool_swap(h, grown, below, above);
	return CUDA_SUCCESS;
}

/* 5. Scrubs what must be, then lends every picked chunk to h. */
static int
pool_lend_all(struct vmmd_holder *h, struct pool_pick *p, int *code,
    char *msg, size_t msglen)
{
	size_t i;

	for (i = 0; i < p->n; i++) {
		if (pool_needs_scrub(p->v[i], h) && pool_scrub(p->v[i]) != 0) {
			pool_unpick(p->v, p->n);
			*code = VMM__ERROR_CODE__ERROR_CODE_INTERNAL;
			snprintf(msg, msglen, "could not scrub a chunk");
			return VMMD_POOL_FAILED;
		}
	}
	for (i = 0; i < p->n; i++)
		pool_lend(p->v[i], h);
	if (p->n > 1)
		vmmd_stats.stitches++;
	vmmd_stats.grants++;
	vmmd_stats.grant_chunks += p->n;
	/* What is lent: the request, or less for Acquire.partial. */
	vmmd_stats.grant_bytes += p->got < p->want ? p->got : p->want;
	pool_rate_add(p->got < p->want ? p->got : p->want);
	return (int)p->n;
}

/* The end of a grant whose create (if any) is done: a failure's code and
 * message, or the chunks lent. */
static int
pool_grant_finish(struct vmmd_holder *h, struct pool_pick *p, CUresult r,
    int *code, char *msg, size_t msglen)
{
	if (r != CUDA_SUCCESS) {
		pool_unpick(p->v, p->n);
		if (r == CUDA_ERROR_OUT_OF_MEMORY) {
			*code = VMM__ERROR_CODE__ERROR_CODE_OUT_OF_MEMORY;
			pool_oom_message(p->want, msg, msglen);
		} else {
			*code = VMM__ERROR_CODE__ERROR_CODE_INTERNAL;
			snprintf(msg, msglen, "cuMemCreate: %s", pool_cu_name(r));
		}
		return VMMD_POOL_FAILED;
	}
	return pool_lend_all(h, p, code, msg, msglen);
}

/* A create for a waiting grant is back from the worker (loop thread). */
static void
pool_created(struct vmmd_job *j)
{
	struct pool_pending *pp = (struct pool_pending *)(void *)j;
	struct pool_pick p = { .v = pp->v, .n = pp->n, .max = pp->max,
	    .want = pp->want, .got = pp->got };
	struct vmmd_chunk *made = NULL;
	char msg[VMM_PROTO_MAX_MESSAGE];
	CUresult r = j->result;
	int n, code = 0;

	TAILQ_REMOVE(&pool_pendings, pp, link);
	pool_creating -= j->size;
	if (r == CUDA_SUCCESS && (made = pool_chunk_new(j->handle, j->size)) ==
	    NULL)
		r = CUDA_ERROR_OUT_OF_MEMORY;
	if (pp->h == NULL) {
		/* Its holder went while it was created: fresh memory, idle. */
		if (made != NULL)
			pool_free_insert(made);
		free(pp);
		return;
	}
	if (made != NULL) {
		p.v[p.n++] = made;
		p.got += made->size;
		pp->grown += made->size;
		if (p.got < p.want) {
			/* The next piece, on the worker too while the GPU has
			 * room; else the rest in the loop, with its recovery. */
			uint64_t next = p.want - p.got;

			if (pp->piece < next && p.n + 1 < p.max)
				next = pp->piece;
			if (pool_may_grow(next) && next <= pool_free_cached) {
				pp->n = p.n;
				pp->got = p.got;
				pp->job.size = next;
				pp->job.handle = 0;
				pp->job.result = CUDA_SUCCESS;
				pool_creating += next;
				TAILQ_INSERT_TAIL(&pool_pendings, pp, link);
				vmmd_worker_submit(&pp->job);
				return;
			}
			r = pool_create_rest(pp->h, &p, pp->flags, pp->below,
			    pp->above, false);
		}
		if (r == CUDA_SUCCESS)
			pool_swap(pp->h, pp->grown, pp->below, pp->above);
	} else if (r == CUDA_ERROR_OUT_OF_MEMORY) {
		/* The recovery (give idle chunks back, stitch fragments) runs
		 * here, as it would have in the loop. */
		r = pool_create_rest(pp->h, &p, pp->flags, pp->below, pp->above,
		    true);
	}
	msg[0] = '\0';
	n = pool_grant_finish(pp->h, &p, r, &code, msg, sizeof(msg));
	pp->cb(pp->arg, n, p.v, code, msg);
	free(pp);
}

/* Holder h is closed or gone: its waiting grants end here, their picked
 * chunks back in the pool; the creates still finish (pool_created). */
static void
pool_pending_cancel(const struct vmmd_holder *h)
{
	struct pool_pending *pp;

	TAILQ_FOREACH(pp, &pool_pendings, link) {
		if (pp->h != h)
			continue;
		pool_unpick(pp->v, pp->n);
		pp->n = 0;
		pp->h = NULL;
	}
}

/* Hands the create of what p still wants to the worker; 0, or -1 (then
 * the caller creates in the loop). */
static int
pool_create_async(struct vmmd_holder *h, struct pool_pick *p, unsigned flags,
    uint64_t below, uint64_t above, vmmd_pool_granted_fn *cb, void *arg)
{
	uint64_t size = pool_piece(p, flags);
	struct pool_pending *pp;

	/* Where the GPU looks short, the create is likely to fail and the
	 * recovery (trim, stitch) belongs in the loop at once. */
	if (cb == NULL || p->want - p->got < POOL_ASYNC_MIN ||
	    !vmmd_worker_running() || !pool_may_grow(p->want - p->got) ||
	    p->want - p->got > pool_free_cached ||
	    (pp = calloc(1, sizeof(*pp))) == NULL)
		return -1;
	pp->job.op = VMMD_JOB_CREATE;
	pp->job.size = size;
	pp->job.prop = pool_prop;
	pp->job.done = pool_created;
	pp->h = h;
	memcpy(pp->v, p->v, p->n * sizeof(*p->v));
	pp->n = p->n;
	pp->max = p->max;
	pp->want = p->want;
	pp->got = p->got;
	pp->piece = size;
	pp->below = below;
	pp->above = above;
	pp->flags = flags;
	pp->cb = cb;
	pp->arg = arg;
	pool_creating += size;
	TAILQ_INSERT_TAIL(&pool_pendings, pp, link);
	vmmd_worker_submit(&pp->job);
	return 0;
}

int
vmmd_pool_grant(struct vmmd_holder *h, uint64_t bytes, unsigned flags,
    uint64_t min_piece_req, struct vmmd_chunk **out, size_t max, int *code,
    char *msg, size_t msglen)
{
	return vmmd_pool_grant_async(h, bytes, flags, min_piece_req, out, max,
	    code, msg, msglen, NULL, NULL);
}

int
vmmd_pool_grant_async(struct vmmd_holder *h, uint64_t bytes, unsigned flags,
    uint64_t min_piece_req, struct vmmd_chunk **out, size_t max, int *code,
    char *msg, size_t msglen, vmmd_pool_granted_fn *cb, void *arg)
{
	struct pool_pick p = { .v = out };
	uint64_t slack, below = 0, above;
	CUresult r;

	p.max = max < vmmd_cfg.max_pieces ? max : vmmd_cfg.max_pieces;
	if (bytes == 0 || bytes > pool_total || p.max == 0) {
		*code = VMM__ERROR_CODE__ERROR_CODE_INVALID;
		snprintf(msg, msglen, "cannot grant %" PRIu64 " bytes: the GPU has "
		    "%" PRIu64, bytes, pool_total);
		return VMMD_POOL_FAILED;
	}
	p.want = vmmd_pool_round(bytes);
	p.partial = (flags & VMMD_GRANT_PARTIAL) &&
	    (flags & VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH);
	/* Acquire.exact: one chunk of exactly that size (an application's
	 * own cuMemCreate handle has the size it asked for). */
	slack = (flags & VMMD_GRANT_EXACT) ? 0 :
	    p.want / 16 / pool_unit * pool_unit;

	above = p.want + slack;
	pool_fit(h, &p, slack);
	if (p.n == 0 && (flags & VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH) &&
	    p.max > 1)
		below = pool_stitch(h, &p, flags, min_piece_req);
	if (p.got < p.want && p.max > 1 &&
	    (flags & VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH)) {
		/* Idle memory before new memory (3).  What growth may swap
		 * out when memory is short is what this request could not
		 * take: chunks too big to fit, or another tenant's. */
		pool_stitch_rest(h, &p);
		if (!(flags & (VMMD_GRANT_EXACT | VMMD_GRANT_NO_CREATE)))
			pool_cover_rest(h, &p);
		below = 0;
	}
	/* Acquire.partial, every piece an idle chunk and still short: those
	 * pieces, rather than new memory beside the idle chunks the cap left
	 * out; the client asks again for the rest. */
	if (p.got < p.want && p.capped) {
		vmmd_stats.partials++;
		return pool_lend_all(h, &p, code, msg, msglen);
	}
	if (p.got < p.want) {
		/* The caller would rather wait for memory other clients give
		 * back than grow the pool. */
		if (flags & VMMD_GRANT_NO_CREATE) {
			pool_unpick(p.v, p.n);
			return VMMD_POOL_WOULD_CREATE;
		}
		/* A large create runs on the worker; the grant ends in
		 * pool_created, from the loop. */
		if (pool_create_async(h, &p, flags, below, above, cb,
		    arg) == 0)
			return VMMD_POOL_CREATING;
		r = pool_create_rest(h, &p, flags, below, above, false);
		if (r != CUDA_SUCCESS)
			return pool_grant_finish(h, &p, r, code, msg, msglen);
	}
	return pool_lend_all(h, &p, code, msg, msglen);
}

int
vmmd_pool_grant_within(struct vmmd_holder *h, uint64_t bytes, uint64_t up_to,
    struct vmmd_chunk **out, int *code, char *msg, size_t msglen)
{
	struct pool_pick p = { .v = out, .max = 1 };
	uint64_t top = up_to / pool_unit * pool_unit;

	if (bytes == 0 || bytes > pool_total || pool_nfree == 0)
		return 0;
	p.want = vmmd_pool_round(bytes);
	if (top <= p.want)
		return 0;
	/* The smallest usable idle chunk of want..top: a plain fit (1/16)
	 * when there is one, else the least memory the client maps unused. */
	pool_fit(h, &p, top - p.want);
	if (p.n == 0)
		return 0;
	if (p.got > p.want + p.want / 16 / pool_unit * pool_unit)
		vmmd_stats.fits_within++;
	return pool_lend_all(h, &p, code, msg, msglen);
}

/* Detaches a chunk from its holder's ledger. */
static void
pool_detach(struct vmmd_chunk *ch)
{
	struct vmmd_holder *h = ch->holder;

	ch->last_holder = h->id;
	TAILQ_REMOVE(&h->held, ch, link);
	h->chunks--;
	h->bytes -= ch->size;
	pool_usage_add(h, -(int64_t)ch->size);
	if (ch->state == VMMD_CHUNK_QUARANTINED)
		pool_t.quarantined -= ch->size;
	else
		pool_t.lent -= ch->size;
	pool_t.chunks_lent--;
}

void
vmmd_pool_ungrant(struct vmmd_chunk **chunks, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		pool_detach(chunks[i]);
		pool_free_insert(chunks[i]);
	}
}

struct vmmd_chunk *
vmmd_pool_held(struct vmmd_holder *h, uint64_t id)
{
	struct vmmd_chunk *ch = pool_hash_find(id);

	if (ch == NULL || ch->state != VMMD_CHUNK_LENT || ch->holder != h)
		return NULL;
	return ch;
}

void
vmmd_pool_drain(uint64_t ms, uint64_t bytes)
{
	pool_drain_until_ms = vmm_now_ms() + ms;
	pool_drain_left = bytes != 0 ? bytes : UINT64_MAX;
}

/* A chunk no one holds any more (off every list): to the pool, or to the
 * GPU. */
static void
pool_put(struct vmmd_chunk *ch)
{
	/* Adopted memory may still be mapped by whoever else kept an fd of
	 * it (the previous daemon's other clients, a peer that kept one after
	 * a Release): lending it again could give it a second holder.  The
	 * same for memory an importer of another tenant mapped (ipc.c). */
	if (ch->adopted || ch->ipc_foreign) {
		pool_destroy(ch);
		return;
	}
	if (pool_drain_left > 0 && vmm_now_ms() >= pool_drain_until_ms)
		pool_drain_left = 0;		/* the drain is over */
	if (pool_drain_left > 0) {
		pool_drain_left -= ch->size < pool_drain_left ? ch->size :
		    pool_drain_left;
		pool_destroy(ch);
		return;
	}
	pool_free_insert(ch);
}

void
vmmd_pool_release(struct vmmd_chunk *ch)
{
	pool_detach(ch);
	/* Whatever was exported of it under this lease can no longer open. */
	ch->lease++;
	/* IPC importers still map it: not free, not lendable, until the last
	 * one lets go (vmmd_pool_ipc_unhold). */
	if (ch->ipc_holds > 0) {
		ch->state = VMMD_CHUNK_IPC_HELD;
		ch->holder = NULL;
		pool_t.ipc_held += ch->size;
		vmm_log_info("IPC_HELD Chunk=%" PRIu64 " Size=%" PRIu64
		    " Importers=%u", ch->id, ch->size, ch->ipc_holds);
		return;
	}
	pool_put(ch);
}

void
vmmd_pool_ipc_hold(struct vmmd_chunk *ch, bool foreign)
{
	ch->ipc_holds++;
	if (foreign)
		ch->ipc_foreign = true;
}

void
vmmd_pool_ipc_unhold(struct vmmd_chunk *ch)
{
	if (--ch->ipc_holds > 0 || ch->state != VMMD_CHUNK_IPC_HELD)
		return;
	pool_t.ipc_held -= ch->size;
	pool_put(ch);
}

/* A free chunk becomes an orphan (off its holder's list). */
static void
pool_orphan_mark(struct vmmd_chunk *ch)
{
	pool_group_leave(ch, POOL_BY_HOLDER);
	ch->orphan = true;
	TAILQ_INSERT_TAIL(&pool_orph, ch, olink);
	pool_orph_bytes += ch->size;
}

/* h's process is gone (or h closed holding nothing): the free chunks it
 * gave back earlier are orphans too, as those it still held: those on
 * its list, in as many steps as there are. */
static void
pool_orphan_released(const struct vmmd_holder *h)
{
	struct pool_group *gr;
	struct vmmd_chunk *ch;

	if (h->id == 0)
		return;
	if (pool_grp_off[POOL_BY_HOLDER]) {
		TAILQ_FOREACH(ch, &pool_age, alink)
			if (ch->last_holder == h->id && !ch->orphan)
				pool_orphan_mark(ch);
		return;
	}
	/* Its list holds them newest first: oldest first onto pool_orph,
	 * as the walk of pool_age above. */
	if ((gr = pool_group_find(POOL_BY_HOLDER, h->id, 0)) == NULL)
		return;
	for (;;) {
		bool last;

		ch = TAILQ_LAST(&gr->chunks, vmmd_chunk_list);
		last = ch == TAILQ_FIRST(&gr->chunks);
		pool_orphan_mark(ch);	/* the list goes with its last */
		if (last)
			break;
	}
}

void
vmmd_pool_holder_closed(struct vmmd_holder *h, bool process_alive)
{
	struct vmmd_chunk *ch, *next;

	pool_pending_cancel(h);
	for (ch = TAILQ_FIRST(&h->held); ch != NULL; ch = next) {
		next = TAILQ_NEXT(ch, link);
		if (ch->state != VMMD_CHUNK_LENT)
			continue;
		if (process_alive) {
			ch->state = VMMD_CHUNK_QUARANTINED;
			pool_t.lent -= ch->size;
			pool_t.quarantined += ch->size;
			vmmd_stats.quarantined_chunks++;
		} else {
			ch->orphan = true;
			vmmd_pool_release(ch);
			vmmd_stats.reclaimed_chunks++;
		}
	}
	if (!process_alive)
		pool_orphan_released(h);
}

void
vmmd_pool_holder_gone(struct vmmd_holder *h)
{
	struct vmmd_chunk *ch;

	pool_pending_cancel(h);
	while ((ch = TAILQ_FIRST(&h->held)) != NULL) {
		ch->orphan = true;
		vmmd_pool_release(ch);
		vmmd_stats.reclaimed_chunks++;
	}
	pool_orphan_released(h);
}

void
vmmd_pool_transfer(struct vmmd_holder *from, struct vmmd_holder *to)
{
	struct vmmd_chunk *ch;

	while ((ch = TAILQ_FIRST(&from->held)) != NULL) {
		pool_detach(ch);
		pool_lend(ch, to);
	}
}

enum vmmd_adopt
vmmd_pool_adopt(struct vmmd_holder *who, int fd, uint64_t size, uint64_t *id)
{
	CUmemGenericAllocationHandle h;
	CUmemAllocationProp prop;
	struct vmmd_chunk *ch;
	struct stat st;
	CUdeviceptr va;
	CUresult r;

	if (size == 0 || size % pool_unit != 0)
		return VMMD_ADOPT_FOREIGN;
	if (!pool_kind_known)
		pool_probe_fds();
	if (!pool_kind_known)
		return VMMD_ADOPT_UNKNOWN;
	/* Not the kind of fd our driver exports: the driver never sees it. */
	if (pool_fd_stat(fd, &st) != 0 || !pool_fd_is_ours(&st))
		return VMMD_ADOPT_FOREIGN;
	/* Memory that left vmmd as an fd and is still tracked (lent, pooled,
	 * quarantined, or adopted a moment ago): never a second record. */
	if (pool_identity && pool_key_find(&st) != NULL)
		return VMMD_ADOPT_DUPLICATE;
	if ((r = cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)fd,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)) != CUDA_SUCCESS) {
		vmm_log_error("adopt: import: %s", pool_cu_name(r));
		return VMMD_ADOPT_FOREIGN;
	}
	/* Another GPU's memory, or a size that is not the chunk's: refuse.
	 * cuMemMap accepts only the handle's own size. */
	if (cuMemGetAllocationPropertiesFromHandle(&prop, h) != CUDA_SUCCESS ||
	    prop.location.id != (int)pool_dev ||
	    cuMemAddressReserve(&va, size, 0, 0, 0) != CUDA_SUCCESS)
		goto fail;
	r = cuMemMap(va, size, 0, h, 0);
	if (r == CUDA_SUCCESS)
		cuMemUnmap(va, size);
	cuMemAddressFree(va, size);
	if (r != CUDA_SUCCESS || (ch = calloc(1, sizeof(*ch))) == NULL)
		goto fail;
	ch->id = pool_next_id++;
	ch->handle = h;
	ch->size = size;
	ch->adopted = true;
	pool_hash_add(ch);
	if (pool_identity)
		pool_key_add(ch, &st);
	/* Not created by vmmd: the driver's free figure already left it out. */
	pool_t.physical += size;
	if (pool_t.physical > pool_t.peak_physical)
		pool_t.peak_physical = pool_t.physical;
	pool_t.chunks++;
	pool_lend(ch, who);
	vmmd_stats.adopted_chunks++;
	vmm_log_info("ADOPT Chunk=%" PRIu64 " Size=%" PRIu64, ch->id, size);
	*id = ch->id;
	return VMMD_ADOPT_OK;
fail:
	cuMemRelease(h);
	return VMMD_ADOPT_FOREIGN;
}

/* Exports a chunk as a new POSIX fd for one grant; -1 on failure. */
int
vmmd_pool_export(struct vmmd_chunk *ch)
{
	struct stat st;
	CUresult r;
	int fd = -1;

	if ((r = vmmd_export_fd(ch, &fd)) != CUDA_SUCCESS) {
		vmm_log_error("export of chunk %" PRIu64 ": %s", ch->id,
		    pool_cu_name(r));
		return -1;
	}
	/* The memory leaves vmmd as an fd: from now on Adopt must know it. */
	if (pool_identity && !ch->keyed) {
		if (pool_fd_stat(fd, &st) != 0 || !pool_fd_is_ours(&st)) {
			vmm_log_error("export of chunk %" PRIu64 ": not the kind "
			    "of fd probed at start", ch->id);
			close(fd);
			return -1;
		}
		pool_key_add(ch, &st);
	}
	return fd;
}
