/*
 * Small allocations (up to VMM_SMALL_MAX, at most half a segment): blocks of
 * a size class carved from segments, one vmmd chunk each.  A segment is one
 * chunk of vmmd's unit (granularity x chunk_multiple, learned at the
 * handshake; never a fixed size), its VA aligned to the unit rounded up to a
 * power of two, so a pointer finds its segment by masking with one of the
 * few alignments in use.  Every block is SMALL_ALIGN (512 B) aligned:
 * cudaMalloc promises 256 B, and a texture object on linear memory needs
 * cudaDeviceProp::textureAlignment (512 B), so any pointer handed out can
 * back one; classes whose size is not a multiple of it are not used.  Each
 * block remembers the size asked for, which is what pointer queries report.
 *
 * Fast path, no lock: each thread keeps per class a stack of clean blocks
 * (safe to hand out) and a stack of dirty ones (freed since, possibly still
 * used by GPU work issued before the free).  Dirty blocks become clean when
 * a synchronization that started after their last free has completed
 * (sync.c's tickets, per device); a thread syncs at most once per refill.  Stacks
 * spill to and refill from the class's segments under the class lock, in
 * batches; partly used segments are preferred to new ones, and empty
 * segments go back to vmmd on trim.
 *
 * The segment registry is an insert-only open-addressing table read without
 * a lock; segment records are recycled, never freed, so a racing lookup
 * always reads valid memory.  Each segment keeps an allocated-bit per block,
 * so a stale or double free is refused instead of corrupting state.
 */
#include "client_internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"

#define SMALL_MIN		256u		/* the smallest class size */
#define SMALL_ALIGN		512u		/* every block's alignment */
#define SMALL_NCLS		64	/* classes up to 32 MiB */
#define SMALL_BIN_BYTES		(4u << 20)	/* per-thread bytes per class */
/* All of a thread's bins together: what one thread may keep from others
 * (and from vmmd's idle return) at most. */
#define SMALL_TC_BYTES		(32u << 20)
#define SMALL_BATCH_BYTES	(1u << 20)	/* per refill */
#define SMALL_BIN_MAX		128
#define SMALL_BATCH_MAX		64	/* one bitmap word */
/* The allocated bits: one 64-bit word per cache line, so threads working on
 * different 64-block runs of a segment never write the same line. */
#define BITW(idx)		(((idx) / 64) * 8)
#define SMALL_REG_SIZE		(1u << 16)	/* registry slots */
#define SMALL_TOMBSTONE		((struct seg *)(uintptr_t)1)
/* Whether blocks freed with ticket t may be reused or unmapped now: always
 * (after a sync) unless a stream capture is in progress, when only a sync
 * that already happened counts (capture.c). */
#define SMALL_IDLE_NOW(dev, t)						\
	(!vmmc_capture_active() || vmmc_sync_covers((dev), (t)))

struct seg {
	CUdeviceptr	base;		/* 0: recycled */
	uint64_t	size;		/* the chunk: vmmd's unit when made */
	uint64_t	align;		/* VA alignment: size rounded up to 2^k */
	int		dev;
	uint32_t	cls, block, nblocks;
	uint64_t	chunk_id;
	uint64_t	*allocated;	/* one bit per block, atomic */
	uint32_t	*free_idx;	/* blocks held here (class lock) */
	uint32_t	*asked;		/* per block: the size allocated */
	uint32_t	nfree;
	uint64_t	ticket;		/* latest free among them */
	struct seg	*next;		/* class list of segments with free blocks */
	bool		listed;
	/* The thread cache that refills from it (compared, never followed):
	 * threads keep to their own segments, so they do not share the cache
	 * lines of the allocated bits. */
	const void	*owner;
};

struct cls {
	pthread_mutex_t	lock;
	struct seg	*partial;
};

struct blk {
	struct seg	*s;
	uint32_t	idx;	/* block index in s */
};

struct bin {
	struct blk	clean[SMALL_BIN_MAX];
	struct blk	dirty[SMALL_BIN_MAX];
	uint32_t	nclean, ndirty;
	uint64_t	ticket;		/* latest free among the dirty */
	/* Allocated from since the last vmmc_small_flush_cold. */
	bool		used;
};

struct tcache {
	/* Held by the owner around every use of the bins, and by the helper
	 * thread when it takes an idle thread's cached blocks back (trylock):
	 * uncontended, it costs an exchange, and the line stays the owner's. */
	int		lock;
	unsigned	gen;
	int		dev;
	struct bin	bins[SMALL_NCLS];
	int64_t		in_use;		/* bytes, merged on usage queries */
	uint64_t	held;		/* bytes in the bins */
	uint64_t	allocs, frees;
	uint64_t	cold_allocs;	/* allocs at the last flush_cold */
	struct tcache	*next;
};

/* The segment alignments in use: bit k set for 2^k (set before a segment
 * of that alignment is registered, never cleared). */
static uint64_t		small_aligns;
static uint32_t		small_ncls;
static uint32_t		small_size[SMALL_NCLS];
/* The class used for a size's class: the next one whose size is a multiple
 * of SMALL_ALIGN. */
static uint8_t		small_use[SMALL_NCLS];
static uint32_t		small_cap[SMALL_NCLS];	/* bin capacity */
static uint32_t		small_batch[SMALL_NCLS]; /* blocks per refill */
static uint64_t		small_max_eff;		/* 0 until configured */
static pthread_once_t	small_once = PTHREAD_ONCE_INIT;
static int		small_ready;

static struct cls	small_cls[VMMC_MAX_DEVICES][SMALL_NCLS];
static struct seg	*small_reg[SMALL_REG_SIZE];
static pthread_mutex_t	small_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct seg	*small_spare;		/* recycled records */
static unsigned		small_gen = 1;		/* bumped in a fork child */

static pthread_mutex_t	small_tc_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tcache	*small_tcs;		/* live thread caches */
static int64_t		small_dead_in_use;	/* from exited threads */
static uint64_t		small_dead_allocs, small_dead_frees;
static pthread_key_t	small_key;

/* A thread's own counter, read by the helper thread: a relaxed store by
 * the one writer, no read-modify-write on the fast path. */
#define TC_ADD(field, v)                                                     \
	__atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) \
	    + (v), __ATOMIC_RELAXED)

static __thread struct tcache *small_tc[VMMC_MAX_DEVICES]
    __attribute__((tls_model("initial-exec")));

/* ---- classes ----------------------------------------------------------------- */

static uint32_t
small_class(size_t size)
{
	uint64_t n;
	unsigned lg;

	if (size <= 1024)
		return size <= SMALL_MIN ? 0 : (uint32_t)((size + 255) / 256 - 1);
	n = size - 1;
	lg = 63u - (unsigned)__builtin_clzll(n);
	return 4 + (lg - 10) * 4 + (uint32_t)((n - (1ull << lg)) >> (lg - 2));
}

static void small_thread_exit(void *arg);

/* Class locks guard a few dozen pointer moves: spin a little before
 * sleeping (two threads refilling the same class otherwise meet in futex
 * calls). */
static pthread_mutexattr_t	small_lockattr;

static void
small_setup(void)
{
	pthread_mutexattr_init(&small_lockattr);
	pthread_mutexattr_settype(&small_lockattr, PTHREAD_MUTEX_ADAPTIVE_NP);
	const struct vmmc_settings *st = vmmc_settings_get();
	uint32_t i, d;
	uint64_t max;

	for (d = 0; d < VMMC_MAX_DEVICES; d++)
		for (i = 0; i < SMALL_NCLS; i++)
			pthread_mutex_init(&small_cls[d][i].lock, &small_lockattr);
	pthread_key_create(&small_key, small_thread_exit);
	/* Each device's unit bounds it further (half a segment), when its
	 * first segment of a class is made: see seg_new. */
	max = st->small_max;
	for (i = 0; i < SMALL_NCLS; i++) {
		uint64_t sz = i < 4 ? (uint64_t)(i + 1) * 256 :
		    (1ull << (10 + (i - 4) / 4)) / 4 * (4 + (i - 4) % 4 + 1);

		if (sz > max)
			break;
		small_size[i] = (uint32_t)sz;
		small_cap[i] = SMALL_BIN_BYTES / (uint32_t)sz;
		if (small_cap[i] > SMALL_BIN_MAX)
			small_cap[i] = SMALL_BIN_MAX;
		if (small_cap[i] < 2)
			small_cap[i] = 2;
		small_batch[i] = small_cap[i] / 2;
		if (small_batch[i] > SMALL_BATCH_MAX)
			small_batch[i] = SMALL_BATCH_MAX;
		if ((uint64_t)small_batch[i] * sz > SMALL_BATCH_BYTES)
			small_batch[i] = SMALL_BATCH_BYTES / (uint32_t)sz;
		if (small_batch[i] == 0)
			small_batch[i] = 1;
	}
	small_ncls = i;
	/* Aligned classes only: the largest one bounds what is served. */
	while (i > 0 && small_size[i - 1] % SMALL_ALIGN != 0)
		i--;
	small_max_eff = i > 0 ? small_size[i - 1] : 0;
	for (d = small_ncls; d-- > 0;)
		small_use[d] = small_size[d] % SMALL_ALIGN == 0 ||
		    d + 1 >= small_ncls ? (uint8_t)d : small_use[d + 1];
	__atomic_store_n(&small_ready, 1, __ATOMIC_RELEASE);
}

static inline void
small_init(void)
{
	if (__builtin_expect(!__atomic_load_n(&small_ready, __ATOMIC_ACQUIRE), 0))
		pthread_once(&small_once, small_setup);
}

/* Largest size served here (0: none); a device whose unit is less than
 * twice a class's size serves that class as large allocations. */

uint64_t
vmmc_small_max(void)
{
	small_init();
	return small_max_eff;
}

/* ---- registry ------------------------------------------------------------------ */

static size_t
reg_hash(CUdeviceptr base)
{
	/* Segment bases are at least page aligned. */
	return (size_t)(((base >> 12) * 0x9e3779b97f4a7c15ull) >> 48) &
	    (SMALL_REG_SIZE - 1);
}

/* The segment registered at exactly base, or NULL. */
static struct seg *
reg_find(CUdeviceptr base)
{
	size_t i = reg_hash(base), n;

	for (n = 0; n < SMALL_REG_SIZE; n++, i = (i + 1) & (SMALL_REG_SIZE - 1)) {
		struct seg *s = __atomic_load_n(&small_reg[i], __ATOMIC_ACQUIRE);

		if (s == NULL)
			return NULL;
		if (s != SMALL_TOMBSTONE &&
		    __atomic_load_n(&s->base, __ATOMIC_ACQUIRE) == base)
			return s;
	}
	return NULL;
}

/* The segment holding p: its base is p masked by one of the alignments in
 * use (one probe while every segment has the same unit). */
static struct seg *
reg_lookup(CUdeviceptr p)
{
	uint64_t bits = __atomic_load_n(&small_aligns, __ATOMIC_ACQUIRE);
	struct seg *s;

	while (bits != 0) {
		unsigned k = (unsigned)__builtin_ctzll(bits);
		CUdeviceptr base = p & ~(((CUdeviceptr)1 << k) - 1);

		bits &= bits - 1;
		if ((s = reg_find(base)) != NULL && p - base < s->size)
			return s;
	}
	return NULL;
}

static int
reg_insert(struct seg *s)
{
	size_t i = reg_hash(s->base), n;

	pthread_mutex_lock(&small_reg_lock);
	for (n = 0; n < SMALL_REG_SIZE; n++, i = (i + 1) & (SMALL_REG_SIZE - 1)) {
		struct seg *cur = small_reg[i];

		if (cur == NULL || cur == SMALL_TOMBSTONE) {
			__atomic_store_n(&small_reg[i], s, __ATOMIC_RELEASE);
			pthread_mutex_unlock(&small_reg_lock);
			return 0;
		}
	}
	pthread_mutex_unlock(&small_reg_lock);
	return -1;
}

static void
reg_remove(struct seg *s)
{
	size_t i = reg_hash(s->base), n;

	pthread_mutex_lock(&small_reg_lock);
	for (n = 0; n < SMALL_REG_SIZE; n++, i = (i + 1) & (SMALL_REG_SIZE - 1)) {
		if (small_reg[i] == s) {
			__atomic_store_n(&small_reg[i], SMALL_TOMBSTONE,
			    __ATOMIC_RELEASE);
			break;
		}
		if (small_reg[i] == NULL)
			break;
	}
	__atomic_store_n(&s->base, 0, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&small_reg_lock);
}

/* ---- thread caches ---------------------------------------------------------- */

static inline void
tc_lock(struct tcache *tc)
{
	while (__atomic_exchange_n(&tc->lock, 1, __ATOMIC_ACQUIRE))
		__builtin_ia32_pause();
}

static inline void
tc_unlock(struct tcache *tc)
{
	__atomic_store_n(&tc->lock, 0, __ATOMIC_RELEASE);
}

static struct tcache *
tc_get(int dev)
{
	struct tcache *tc = small_tc[dev];

	if (__builtin_expect(tc != NULL && tc->gen == small_gen, 1))
		return tc;
	if ((tc = calloc(1, sizeof(*tc))) == NULL)
		return NULL;
	tc->gen = small_gen;
	tc->dev = dev;
	pthread_mutex_lock(&small_tc_lock);
	tc->next = small_tcs;
	small_tcs = tc;
	pthread_mutex_unlock(&small_tc_lock);
	small_tc[dev] = tc;
	pthread_setspecific(small_key, (void *)1);
	return tc;
}

/* Moves up to n free blocks of s to dst; the class lock is held. */
static uint32_t
seg_take(struct seg *s, struct blk *dst, uint32_t n)
{
	uint32_t got = 0;

	while (got < n && s->nfree > 0) {
		dst[got].s = s;
		dst[got].idx = s->free_idx[--s->nfree];
		got++;
	}
	return got;
}

/* Whether block idx of s is lent out; false past the last block. */
static inline bool
blk_allocated(const struct seg *s, uint32_t idx)
{
	return idx < s->nblocks && ((__atomic_load_n(
	    &s->allocated[BITW(idx)], __ATOMIC_RELAXED) >> (idx % 64)) & 1);
}

/* Returns n blocks to their segments; class lock taken here. */
static void
spill(int dev, uint32_t c, struct blk *v, uint32_t n, uint64_t ticket)
{
	struct cls *k = &small_cls[dev][c];
	uint32_t i;

	pthread_mutex_lock(&k->lock);
	for (i = 0; i < n; i++) {
		struct seg *s = v[i].s;

		s->free_idx[s->nfree++] = v[i].idx;
		if (ticket > s->ticket)
			s->ticket = ticket;
		if (!s->listed) {
			s->next = k->partial;
			k->partial = s;
			s->listed = true;
		}
	}
	pthread_mutex_unlock(&k->lock);
}

static void
tc_flush(struct tcache *tc)
{
	uint32_t c;

	for (c = 0; c < small_ncls; c++) {
		struct bin *b = &tc->bins[c];

		spill(tc->dev, c, b->clean, b->nclean, 0);
		spill(tc->dev, c, b->dirty, b->ndirty, b->ticket);
		b->nclean = b->ndirty = 0;
	}
	tc->held = 0;
}

/* Clears tc as owner of every segment: they are anybody's now. */
static void
seg_disown(const struct tcache *tc)
{
	size_t i;

	pthread_mutex_lock(&small_reg_lock);
	for (i = 0; i < SMALL_REG_SIZE; i++) {
		struct seg *s = small_reg[i];

		if (s != NULL && s != SMALL_TOMBSTONE &&
		    __atomic_load_n(&s->owner, __ATOMIC_RELAXED) == tc)
			__atomic_store_n(&s->owner, NULL, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&small_reg_lock);
}

/* Thread exit: blocks back to their segments, counters kept. */
static void
small_thread_exit(void *arg)
{
	struct tcache **pp;
	int d;

	(void)arg;
	for (d = 0; d < VMMC_MAX_DEVICES; d++) {
		struct tcache *tc = small_tc[d];

		if (tc == NULL || tc->gen != small_gen)
			continue;
		tc_lock(tc);
		tc_flush(tc);
		tc_unlock(tc);
		seg_disown(tc);
		pthread_mutex_lock(&small_tc_lock);
		for (pp = &small_tcs; *pp != NULL; pp = &(*pp)->next) {
			if (*pp == tc) {
				*pp = tc->next;
				break;
			}
		}
		small_dead_in_use += tc->in_use;
		small_dead_allocs += tc->allocs;
		small_dead_frees += tc->frees;
		pthread_mutex_unlock(&small_tc_lock);
		free(tc);
		small_tc[d] = NULL;
	}
}

/* ---- segments --------------------------------------------------------------------- */

static void seg_recycle(struct seg *s);

static struct seg *
seg_record(uint32_t nblocks)
{
	struct seg *s;

	pthread_mutex_lock(&small_reg_lock);
	if ((s = small_spare) != NULL)
		small_spare = s->next;
	pthread_mutex_unlock(&small_reg_lock);
	if (s == NULL && (s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	free(s->allocated);
	free(s->free_idx);
	free(s->asked);
	s->allocated = aligned_alloc(64, ((nblocks + 63) / 64) * 64);
	if (s->allocated != NULL)
		memset(s->allocated, 0, ((nblocks + 63) / 64) * 64);
	s->free_idx = calloc(nblocks, sizeof(uint32_t));
	s->asked = calloc(nblocks, sizeof(uint32_t));
	if (s->allocated == NULL || s->free_idx == NULL || s->asked == NULL) {
		free(s->allocated);
		free(s->free_idx);
		free(s->asked);
		s->allocated = NULL;
		s->free_idx = NULL;
		s->asked = NULL;
		seg_recycle(s);		/* the record itself is kept */
		return NULL;
	}
	return s;
}

static void
seg_recycle(struct seg *s)
{
	pthread_mutex_lock(&small_reg_lock);
	s->next = small_spare;
	small_spare = s;
	pthread_mutex_unlock(&small_reg_lock);
}

/* The smallest power of two >= v (v > 0). */
static uint64_t
pow2_up(uint64_t v)
{
	return v <= 1 ? 1 : 1ull << (64 - __builtin_clzll(v - 1));
}

static uint64_t	(*small_idle_fn)(int dev, uint64_t unit);
static void	(*small_before_fn)(int dev, uint64_t unit);

void
vmmc_small_on_acquire(uint64_t (*idle)(int dev, uint64_t unit),
    void (*before)(int dev, uint64_t unit))
{
	__atomic_store_n(&small_before_fn, before, __ATOMIC_RELEASE);
	__atomic_store_n(&small_idle_fn, idle, __ATOMIC_RELEASE);
}

/* A new segment of class c from vmmd: one chunk of vmmd's unit, its blocks
 * all free (clean).  VMM_ENOTOURS if the unit is less than two blocks of
 * the class (the caller serves the size as a large allocation). */
static int
seg_new(int dev, uint32_t c, struct seg **out)
{
	uint64_t (*idle)(int, uint64_t);
	void (*before)(int, uint64_t);
	struct vmmc_grant_chunk g[4];
	struct vmmc_conn *conn;
	struct seg *s;
	CUdeviceptr va;
	uint64_t unit, align;
	uint32_t i, nb;
	int n, rc;

	if ((conn = vmmc_conn_get(dev)) == NULL)
		return VMM_ENODAEMON;
	if ((unit = vmmc_conn_granularity(conn)) == 0) {
		if ((rc = vmmc_conn_ensure(conn)) != 0)
			return rc;
		unit = vmmc_conn_granularity(conn);
	}
	/* A block count must fit the bitmap index and the asked sizes. */
	if (unit == 0 || unit / 2 < small_size[c] ||
	    unit / small_size[c] > UINT32_MAX)
		return VMM_ENOTOURS;
	nb = (uint32_t)(unit / small_size[c]);
	align = pow2_up(unit);
	/* Out-of-memory is retried by vmm_malloc, without the thread cache's
	 * lock that our caller holds. */
	/* Idle memory before new: where vmmd would create the segment while
	 * this process holds idle memory of its own elsewhere (the medium
	 * heap's idle pages), that goes back first and vmmd lends it. */
	idle = __atomic_load_n(&small_idle_fn, __ATOMIC_ACQUIRE);
	before = __atomic_load_n(&small_before_fn, __ATOMIC_ACQUIRE);
	if (idle != NULL && before != NULL && idle(dev, unit) > 0) {
		n = vmmc_conn_acquire(conn, unit, VMMC_ACQUIRE_NO_CREATE, 0,
		    g, 4);
		if (n == VMMC_EWOULD_CREATE) {
			before(dev, unit);
			n = vmmc_conn_acquire(conn, unit, 0, 0, g, 4);
		}
	} else
		n = vmmc_conn_acquire(conn, unit, 0, 0, g, 4);
	if (n < 0)
		return n;
	if (n != 1 || g[0].size != unit) {
		/* The pool had a bigger chunk for us (or the unit changed with
		 * a new vmmd): not a segment. */
		uint64_t ids[4];

		for (i = 0; i < (uint32_t)n; i++) {
			ids[i] = g[i].id;
			close(g[i].fd);
		}
		vmmc_conn_release(conn, ids, (size_t)n, 0);
		return VMM_EPROTO;
	}
	if ((s = seg_record(nb)) == NULL) {
		rc = VMM_ENOMEM;
		goto fail;
	}
	if ((rc = vmmc_va_alloc(dev, unit, align, &va)) != 0)
		goto fail_rec;
	if ((rc = vmmc_map_chunks(dev, va, g, 1)) != 0) {
		vmmc_va_free(dev, va, unit);
		goto fail_rec;
	}
	s->dev = dev;
	s->size = unit;
	s->align = align;
	s->cls = c;
	s->block = small_size[c];
	s->nblocks = nb;
	s->chunk_id = g[0].id;
	s->ticket = 0;
	s->listed = false;
	s->next = NULL;
	/* Popped from the end: runs of ascending indices, one bitmap word at a
	 * time, so a batch stays within the words of one thread. */
	for (i = 0; i < nb; i++)
		s->free_idx[i] = nb - 1 - i;
	s->nfree = nb;
	/* Lookups must probe this alignment before they can meet s. */
	__atomic_fetch_or(&small_aligns, 1ull << __builtin_ctzll(align),
	    __ATOMIC_RELEASE);
	__atomic_store_n(&s->base, va, __ATOMIC_RELEASE);
	if (reg_insert(s) != 0) {
		vmmc_unmap_range(va, unit);
		vmmc_va_free(dev, va, unit);
		rc = VMM_ENOMEM;
		goto fail_rec;
	}
	vmmc_stat_add(VMMC_STAT_MAPPED, (int64_t)unit);
	vmm_log_debug("SEGMENT Ptr=0x%llx Size=%llu Class=%u Block=%u",
	    (unsigned long long)va, (unsigned long long)unit, c, s->block);
	*out = s;
	return 0;

fail_rec:
	seg_recycle(s);
fail:
	if (g[0].fd >= 0)
		close(g[0].fd);
	vmmc_conn_release(conn, &g[0].id, 1, 0);
	return rc;
}

/* Refills bin c from any partly used segment, whoever owns it; 0 if it got
 * blocks. */
static int
steal_once(struct tcache *tc, uint32_t c)
{
	struct bin *b = &tc->bins[c];
	struct cls *k = &small_cls[tc->dev][c];
	uint64_t ticket = 0;
	uint32_t got = 0;
	struct seg *s;

	pthread_mutex_lock(&k->lock);
	if ((s = k->partial) != NULL && SMALL_IDLE_NOW(tc->dev, s->ticket)) {
		got = seg_take(s, b->clean, small_batch[c]);
		ticket = s->ticket;
		if (s->nfree == 0) {
			k->partial = s->next;
			s->listed = false;
		}
	}
	pthread_mutex_unlock(&k->lock);
	if (got == 0)
		return -1;
	/* Still busy (a failed sync): the blocks go back. */
	if (vmmc_sync_for(tc->dev, ticket) != 0) {
		spill(tc->dev, c, b->clean, got, ticket);
		return -1;
	}
	b->nclean = got;
	tc->held += (uint64_t)got * small_size[c];
	return 0;
}

/* Fills an empty clean stack: dirty blocks once synced, blocks from partly
 * used segments, or a new segment. */
static int
refill(struct tcache *tc, uint32_t c)
{
	struct bin *b = &tc->bins[c];
	struct cls *k = &small_cls[tc->dev][c];
	uint32_t want = small_batch[c], got = 0;
	uint64_t ticket = 0;
	struct seg *s;
	int rc;

	if (b->ndirty > 0 && vmmc_sync_covers(tc->dev, b->ticket))
		goto swap;
	pthread_mutex_lock(&k->lock);
	while (got < want) {
		struct seg **pp, **pick = NULL;

		/* This thread's own segments first, then ones nobody owns; a
		 * thread does not take another's (they would share the cache
		 * lines of the allocated bits and the free stack). */
		for (pp = &k->partial; *pp != NULL; pp = &(*pp)->next) {
			const void *o = __atomic_load_n(&(*pp)->owner,
			    __ATOMIC_RELAXED);

			if (!SMALL_IDLE_NOW(tc->dev, (*pp)->ticket))
				continue;
			if (o == tc) {
				pick = pp;
				break;
			}
			if (pick == NULL && o == NULL)
				pick = pp;
		}
		if (pick == NULL)
			break;
		s = *pick;
		__atomic_store_n(&s->owner, tc, __ATOMIC_RELAXED);
		got += seg_take(s, b->clean + got, want - got);
		if (s->ticket > ticket)
			ticket = s->ticket;
		if (s->nfree == 0) {
			*pick = s->next;
			s->listed = false;
		}
	}
	pthread_mutex_unlock(&k->lock);
	if (got > 0) {
		if (vmmc_sync_for(tc->dev, ticket) == 0) {
			b->nclean = got;
			tc->held += (uint64_t)got * small_size[c];
			return 0;
		}
		/* Still busy (a failed sync): back, and a new segment. */
		spill(tc->dev, c, b->clean, got, ticket);
	} else if (b->ndirty > 0 && SMALL_IDLE_NOW(tc->dev, b->ticket) &&
	    vmmc_sync_for(tc->dev, b->ticket) == 0) {
		goto swap;
	}
	if ((rc = seg_new(tc->dev, c, &s)) != 0) {
		/* No new memory: take another thread's free blocks after all. */
		if (steal_once(tc, c) == 0)
			return 0;
		return rc;
	}
	__atomic_store_n(&s->owner, tc, __ATOMIC_RELAXED);
	pthread_mutex_lock(&k->lock);
	got = seg_take(s, b->clean, want);
	if (s->nfree > 0) {
		s->next = k->partial;
		k->partial = s;
		s->listed = true;
	}
	pthread_mutex_unlock(&k->lock);
	b->nclean = got;
	tc->held += (uint64_t)got * small_size[c];
	return 0;

swap:
	memcpy(b->clean, b->dirty, b->ndirty * sizeof(struct blk));
	b->nclean = b->ndirty;
	b->ndirty = 0;
	return 0;
}

int
vmmc_small_alloc(int dev, size_t size, void **out)
{
	struct tcache *tc;
	struct bin *b;
	struct blk k;
	CUdeviceptr p;
	uint32_t c;
	int rc;

	small_init();
	if (size > small_max_eff)
		return VMM_ENOTOURS;
	c = small_use[small_class(size)];
	if ((tc = tc_get(dev)) == NULL)
		return VMM_ENOMEM;
	b = &tc->bins[c];
	tc_lock(tc);
	if (__builtin_expect(b->nclean == 0, 0) && (rc = refill(tc, c)) != 0) {
		tc_unlock(tc);
		return rc;
	}
	k = b->clean[--b->nclean];
	tc->held -= small_size[c];
	b->used = true;
	tc_unlock(tc);
	p = k.s->base + (CUdeviceptr)k.idx * k.s->block;
	__atomic_store_n(&k.s->asked[k.idx], (uint32_t)size, __ATOMIC_RELAXED);
	__atomic_fetch_or(&k.s->allocated[BITW(k.idx)], 1ull << (k.idx % 64),
	    __ATOMIC_RELAXED);
	TC_ADD(tc->in_use, (int64_t)small_size[c]);
	TC_ADD(tc->allocs, 1);
	if (vmm_log_enabled(VMM_LOG_INFO))
		vmm_log(VMM_LOG_INFO, "ALLOC Ptr=0x%llx Size=%zu PA=0 Chunks=0",
		    (unsigned long long)p, size);
	*out = (void *)(uintptr_t)p;
	return 0;
}

static int small_free(void *ptr, bool idle);

int
vmmc_small_free(void *ptr)
{
	return small_free(ptr, false);
}

int
vmmc_small_free_idle(void *ptr)
{
	return small_free(ptr, true);
}

/* idle: no GPU work can touch the block any more: straight to the clean
 * stack (or, full, to its segment without a ticket). */
static int
small_free(void *ptr, bool idle)
{
	CUdeviceptr p = (CUdeviceptr)(uintptr_t)ptr;
	struct tcache *tc;
	struct seg *s;
	struct bin *b;
	uint64_t bit, old;
	uint32_t idx;

	if (small_max_eff == 0 || (s = reg_lookup(p)) == NULL)
		return VMM_ENOTOURS;
	idx = (uint32_t)((p - s->base) / s->block);
	if ((p - s->base) % s->block != 0 || idx >= s->nblocks)
		return VMM_ENOTOURS;	/* not a block start */
	bit = 1ull << (idx % 64);
	old = __atomic_fetch_and(&s->allocated[BITW(idx)], ~bit, __ATOMIC_RELAXED);
	if (!(old & bit))
		return VMM_ENOTOURS;	/* not allocated: a double free */
	if ((tc = tc_get(s->dev)) == NULL) {
		spill(s->dev, s->cls, &(struct blk){ s, idx }, 1,
		    idle ? 0 : vmmc_sync_ticket(s->dev));
		return 0;
	}
	b = &tc->bins[s->cls];
	tc_lock(tc);
	if (idle) {
		if (b->nclean < small_cap[s->cls] &&
		    tc->held + s->block <= SMALL_TC_BYTES) {
			b->clean[b->nclean++] = (struct blk){ s, idx };
			tc->held += s->block;
		} else {
			spill(s->dev, s->cls, &(struct blk){ s, idx }, 1, 0);
		}
		tc_unlock(tc);
		TC_ADD(tc->in_use, -(int64_t)s->block);
		TC_ADD(tc->frees, 1);
		return 0;
	}
	if (b->ndirty == small_cap[s->cls] ||
	    (tc->held + s->block > SMALL_TC_BYTES && b->ndirty > 0)) {
		spill(s->dev, s->cls, b->dirty, b->ndirty, b->ticket);
		tc->held -= (uint64_t)b->ndirty * s->block;
		b->ndirty = 0;
	}
	b->dirty[b->ndirty++] = (struct blk){ s, idx };
	tc->held += s->block;
	b->ticket = vmmc_sync_ticket(s->dev);
	tc_unlock(tc);
	TC_ADD(tc->in_use, -(int64_t)s->block);
	TC_ADD(tc->frees, 1);
	if (vmm_log_enabled(VMM_LOG_INFO))
		vmm_log(VMM_LOG_INFO, "FREE Ptr=0x%llx Size=%u",
		    (unsigned long long)p, s->block);
	return 0;
}

bool
vmmc_small_owns(const void *ptr)
{
	CUdeviceptr p = (CUdeviceptr)(uintptr_t)ptr;
	struct seg *s;

	if (small_max_eff == 0 || (s = reg_lookup(p)) == NULL ||
	    (p - s->base) % s->block != 0)
		return false;
	return blk_allocated(s, (uint32_t)((p - s->base) / s->block));
}

int
vmmc_small_range(const void *ptr, void **base, size_t *size)
{
	CUdeviceptr p = (CUdeviceptr)(uintptr_t)ptr;
	struct seg *s;
	uint32_t idx, asked;

	if (small_max_eff == 0 || (s = reg_lookup(p)) == NULL)
		return VMM_ENOTOURS;
	idx = (uint32_t)((p - s->base) / s->block);
	if (!blk_allocated(s, idx))
		return VMM_ENOTOURS;
	/* The allocation is the size asked for; the rest of the block (its
	 * class's rounding) belongs to no allocation. */
	asked = __atomic_load_n(&s->asked[idx], __ATOMIC_RELAXED);
	if (p - (s->base + (CUdeviceptr)idx * s->block) >= asked)
		return VMM_ENOTOURS;
	*base = (void *)(uintptr_t)(s->base + (CUdeviceptr)idx * s->block);
	*size = asked;
	return 0;
}

void
vmmc_small_flush_idle(void)
{
	struct tcache *tc;

	pthread_mutex_lock(&small_tc_lock);
	for (tc = small_tcs; tc != NULL; tc = tc->next) {
		/* Busy: its thread is not idle, leave it. */
		if (__atomic_exchange_n(&tc->lock, 1, __ATOMIC_ACQUIRE))
			continue;
		tc_flush(tc);
		tc_unlock(tc);
	}
	pthread_mutex_unlock(&small_tc_lock);
}

void
vmmc_small_flush_mine(void)
{
	int d;

	for (d = 0; d < VMMC_MAX_DEVICES; d++)
		if (small_tc[d] != NULL && small_tc[d]->gen == small_gen) {
			tc_lock(small_tc[d]);
			tc_flush(small_tc[d]);
			tc_unlock(small_tc[d]);
		}
}

void
vmmc_small_flush_cold(int dev)
{
	struct tcache *tc;
	uint32_t c;

	if (dev < 0 || dev >= VMMC_MAX_DEVICES || (tc = small_tc[dev]) == NULL ||
	    tc->gen != small_gen)
		return;
	tc_lock(tc);
	/* No small allocation since the last call: no class can have been
	 * passed over (a burst of asks for one large block). */
	if (tc->allocs == tc->cold_allocs) {
		tc_unlock(tc);
		return;
	}
	tc->cold_allocs = tc->allocs;
	for (c = 0; c < small_ncls; c++) {
		struct bin *b = &tc->bins[c];
		uint32_t n = b->nclean + b->ndirty;
		const struct seg *s;

		if (b->used || n == 0) {
			b->used = false;
			continue;
		}
		/* Less than a segment's worth (or than the bin holds when
		 * full): it can keep at most one segment from going back,
		 * and spilling it costs the class a refill (and the segment a
		 * round trip) when it is used again. */
		s = b->nclean > 0 ? b->clean[0].s : b->dirty[0].s;
		if ((uint64_t)n * small_size[c] >= s->size ||
		    n >= small_cap[c]) {
			tc->held -= (uint64_t)n * small_size[c];
			if (b->nclean > 0)
				spill(tc->dev, c, b->clean, b->nclean, 0);
			if (b->ndirty > 0)
				spill(tc->dev, c, b->dirty, b->ndirty,
				    b->ticket);
			b->nclean = b->ndirty = 0;
		}
		b->used = false;
	}
	tc_unlock(tc);
}

/* Gives back the empty segments of devices [d0, d1) whose blocks'
 * latest free a synchronization covers (or can be made to). */
static uint64_t
small_trim(uint32_t d0, uint32_t d1, uint64_t recall_id)
{
	struct seg *empty = NULL, *s, **pp;
	uint64_t done = 0;
	uint32_t d, c;

	if (small_ncls == 0)
		return 0;
	for (d = d0; d < d1; d++) {
		for (c = 0; c < small_ncls; c++) {
			struct cls *k = &small_cls[d][c];

			pthread_mutex_lock(&k->lock);
			for (pp = &k->partial; (s = *pp) != NULL;) {
				if (s->nfree != s->nblocks ||
				    !SMALL_IDLE_NOW(d, s->ticket)) {
					pp = &s->next;
					continue;
				}
				*pp = s->next;
				s->listed = false;
				s->next = empty;
				empty = s;
			}
			pthread_mutex_unlock(&k->lock);
		}
	}
	while ((s = empty) != NULL) {
		struct vmmc_conn *conn = vmmc_conn_get(s->dev);
		CUdeviceptr base = s->base;

		empty = s->next;
		/* Still busy (a failed sync): it stays, listed again. */
		if (vmmc_sync_for(s->dev, s->ticket) != 0) {
			struct cls *k = &small_cls[s->dev][s->cls];

			pthread_mutex_lock(&k->lock);
			s->next = k->partial;
			k->partial = s;
			s->listed = true;
			pthread_mutex_unlock(&k->lock);
			continue;
		}
		reg_remove(s);
		vmmc_unmap_range(base, s->size);
		vmmc_va_free(s->dev, base, s->size);
		if (conn != NULL)
			vmmc_conn_release(conn, &s->chunk_id, 1, recall_id);
		vmmc_stat_add(VMMC_STAT_MAPPED, -(int64_t)s->size);
		done += s->size;
		seg_recycle(s);
	}
	return done;
}

uint64_t
vmmc_small_trim(uint64_t recall_id)
{
	return small_trim(0, VMMC_MAX_DEVICES, recall_id);
}

uint64_t
vmmc_small_trim_dev(int dev)
{
	if (dev < 0 || dev >= VMMC_MAX_DEVICES)
		return 0;
	return small_trim((uint32_t)dev, (uint32_t)dev + 1, 0);
}

/* Bytes in use by small blocks and the counters of every thread. */

void
vmmc_small_usage(int64_t *in_use, uint64_t *allocs, uint64_t *frees,
    uint64_t *free_bytes)
{
	struct tcache *tc;
	uint32_t d, c;
	struct seg *s;
	uint64_t fb = 0;

	pthread_mutex_lock(&small_tc_lock);
	*in_use = small_dead_in_use;
	*allocs = small_dead_allocs;
	*frees = small_dead_frees;
	for (tc = small_tcs; tc != NULL; tc = tc->next) {
		*in_use += __atomic_load_n(&tc->in_use, __ATOMIC_RELAXED);
		*allocs += __atomic_load_n(&tc->allocs, __ATOMIC_RELAXED);
		*frees += __atomic_load_n(&tc->frees, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&small_tc_lock);
	for (d = 0; d < VMMC_MAX_DEVICES; d++) {
		for (c = 0; c < small_ncls; c++) {
			pthread_mutex_lock(&small_cls[d][c].lock);
			for (s = small_cls[d][c].partial; s != NULL; s = s->next)
				fb += (uint64_t)s->nfree * s->block;
			pthread_mutex_unlock(&small_cls[d][c].lock);
		}
	}
	*free_bytes = fb;
}

/* Visits every segment chunk of dev (for Adopt); registry lock taken. */
size_t
vmmc_small_chunks(int dev, struct vmmc_mapped_chunk *out, size_t max)
{
	size_t i, n = 0;

	pthread_mutex_lock(&small_reg_lock);
	for (i = 0; i < SMALL_REG_SIZE; i++) {
		struct seg *s = small_reg[i];

		if (s == NULL || s == SMALL_TOMBSTONE || s->base == 0 ||
		    s->dev != dev)
			continue;
		if (n < max) {
			out[n].va = s->base;
			out[n].size = s->size;
			out[n].id = s->chunk_id;
		}
		n++;
	}
	pthread_mutex_unlock(&small_reg_lock);
	return n;
}

void
vmmc_small_set_ids(int dev, const struct vmmc_mapped_chunk *v, size_t n)
{
	struct seg *s;
	size_t i;

	pthread_mutex_lock(&small_reg_lock);
	for (i = 0; i < n; i++)
		if ((s = reg_lookup(v[i].va)) != NULL && s->base == v[i].va &&
		    s->dev == dev)
			s->chunk_id = v[i].id;
	pthread_mutex_unlock(&small_reg_lock);
}

void
vmmc_small_forget_all(void)
{
	uint32_t d, c;

	/* The parent's records are left as they are (leaked in the child). */
	small_gen++;
	memset(small_reg, 0, sizeof(small_reg));
	pthread_mutex_init(&small_reg_lock, NULL);
	pthread_mutex_init(&small_tc_lock, NULL);
	small_spare = NULL;
	small_tcs = NULL;
	small_dead_in_use = 0;
	small_dead_allocs = small_dead_frees = 0;
	for (d = 0; d < VMMC_MAX_DEVICES; d++)
		for (c = 0; c < SMALL_NCLS; c++) {
			pthread_mutex_init(&small_cls[d][c].lock, small_ready ?
			    &small_lockattr : NULL);
			small_cls[d][c].partial = NULL;
		}
}

int
vmmc_small_ipc(const void *ptr, int *dev, uint64_t *chunk_id, uint64_t *off,
    uint64_t *size)
{
	CUdeviceptr p = (CUdeviceptr)(uintptr_t)ptr;
	struct seg *s;
	uint32_t idx;

	if (small_max_eff == 0 || (s = reg_lookup(p)) == NULL)
		return VMM_ENOTOURS;
	idx = (uint32_t)((p - s->base) / s->block);
	if ((p - s->base) % s->block != 0 || idx >= s->nblocks ||
	    !blk_allocated(s, idx))
		return VMM_EINVAL;
	*dev = s->dev;
	*chunk_id = s->chunk_id;
	*off = p - s->base;
	*size = s->block;
	return 0;
}
