/*
 * Large allocations: the chunks of one grant mapped back to back into one
 * VA range, with VA headroom after it so vmm_realloc usually grows in place.
 * A freed allocation stays mapped in a per-process cache (bounded by
 * VMM_CACHE_MAX) and is reused whole for a request of about its size; the
 * cache goes back to vmmd when idle, when asked, or when it is full.
 *
 * Cached entries are split and merged where they lie, without a driver
 * call (a mapping costs per granule, cuMemSetAccess most of all): a request
 * smaller than a cached entry takes the entry's first chunks, whose mapped
 * prefix fits it, and the rest stays cached at its own address; a freed
 * entry whose VA ends where a cached neighbour's begins (both fully mapped
 * up to there, same device) becomes one cached entry with it.  A chunk is
 * in exactly one entry at every moment, and only entries on the cache list
 * (not picked by another thread) are split or merged, under large_lock; a
 * merged entry carries the latest ticket of its parts and a split one its
 * own, so nothing is reused before a sync covers every free that put
 * memory in it.
 *
 * Entries live in an array sorted by base under a rwlock, large_lock.
 * It is held only to look up and change entries, never while waiting for
 * vmmd nor around mapping, access or synchronizing calls: Adopt (adopt.c)
 * copies the chunk list (vmmc_large_chunks), talks to vmmd without the lock,
 * and writes the new ids back (vmmc_large_set_ids).  Nothing calls into
 * conn.c with large_lock held.
 */
#include "client_internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"

#define LARGE_MAX_GRANT 64
/* Most chunks one large_acquire maps: a few grants of LARGE_MAX_GRANT
 * (Acquire.partial). */
#define LARGE_MAX_PIECES (4 * LARGE_MAX_GRANT)
/* Whether cached entry l may be reused or unmapped now: always (after a
 * sync, vmmc_sync_for) unless a stream capture is in progress, when only a
 * sync that already happened counts (capture.c). */
#define LARGE_IDLE_NOW(l)						\
	(!vmmc_capture_active() || vmmc_sync_covers((l)->dev, (l)->ticket))

struct large_chunk {
	uint64_t	id;
	uint64_t	size;
};

struct large {
	CUdeviceptr		base;
	uint64_t		size;		/* as requested */
	uint64_t		mapped;		/* sum of the chunks */
	uint64_t		va_size;	/* VA owned, >= mapped */
	int			dev;
	struct large_chunk	*chunks;
	uint32_t		nchunks, capchunks;
	bool			cached;
	bool			listed;		/* on the cache list */
	uint64_t		ticket;		/* when freed */
	uint64_t		freed_ms;
	/* Cached, and passed over: an allocation it could have served took
	 * another cached entry (more of its size is cached than was reused). */
	bool			passed;
	struct large		*cnext, *cprev;	/* cache, most recent first */
};

static pthread_rwlock_t	large_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct large	**large_v;	/* sorted by base */
static size_t		large_n, large_cap;
static struct large	*cache_head, *cache_tail;
static uint64_t		cache_bytes;

static uint64_t
round_up(uint64_t v, uint64_t g)
{
	return (v + g - 1) / g * g;
}

/* Index of the first entry with base >= addr; lock held. */
static size_t
large_index(CUdeviceptr addr)
{
	size_t lo = 0, hi = large_n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (large_v[mid]->base < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int
large_insert(struct large *l)
{
	size_t i;

	if (large_n == large_cap) {
		size_t n = large_cap ? large_cap * 2 : 64;
		struct large **nv = realloc(large_v, n * sizeof(*nv));

		if (nv == NULL)
			return -1;
		large_v = nv;
		large_cap = n;
	}
	i = large_index(l->base);
	memmove(&large_v[i + 1], &large_v[i], (large_n - i) * sizeof(*large_v));
	large_v[i] = l;
	large_n++;
	return 0;
}

static void
large_remove(struct large *l)
{
	size_t i = large_index(l->base);

	if (i < large_n && large_v[i] == l) {
		memmove(&large_v[i], &large_v[i + 1],
		    (large_n - i - 1) * sizeof(*large_v));
		large_n--;
	}
}

/* The live entry whose range holds addr; lock held. */
static struct large *
large_find(CUdeviceptr addr, bool exact)
{
	size_t i = large_index(addr + 1);
	struct large *l;

	if (i == 0)
		return NULL;
	l = large_v[i - 1];
	if (l->cached || addr - l->base >= l->size || (exact && addr != l->base))
		return NULL;
	return l;
}

static void
cache_unlink(struct large *l)
{
	if (l->cprev)
		l->cprev->cnext = l->cnext;
	else
		cache_head = l->cnext;
	if (l->cnext)
		l->cnext->cprev = l->cprev;
	else
		cache_tail = l->cprev;
	l->cnext = l->cprev = NULL;
	l->listed = false;
	__atomic_sub_fetch(&cache_bytes, l->mapped, __ATOMIC_RELAXED);
	vmmc_stat_add(VMMC_STAT_CACHED, -(int64_t)l->mapped);
}

/* Puts l at the head of the cache (most recently freed). */
static void
cache_push(struct large *l)
{
	l->cnext = cache_head;
	l->cprev = NULL;
	if (cache_head)
		cache_head->cprev = l;
	else
		cache_tail = l;
	cache_head = l;
	l->listed = true;
	__atomic_add_fetch(&cache_bytes, l->mapped, __ATOMIC_RELAXED);
	vmmc_stat_add(VMMC_STAT_CACHED, (int64_t)l->mapped);
}

static int
large_add_chunks(struct large *l, const struct vmmc_grant_chunk *g, size_t n)
{
	size_t i;

	if (l->nchunks + n > l->capchunks) {
		uint32_t cap = (uint32_t)(l->nchunks + n) * 2;
		struct large_chunk *nc = realloc(l->chunks, cap * sizeof(*nc));

		if (nc == NULL)
			return -1;
		l->chunks = nc;
		l->capchunks = cap;
	}
	for (i = 0; i < n; i++) {
		l->chunks[l->nchunks].id = g[i].id;
		l->chunks[l->nchunks].size = g[i].size;
		l->nchunks++;
		l->mapped += g[i].size;
	}
	return 0;
}

/* Whether cached entry b can join a (b's VA starts where a's ends, a is
 * mapped to its end, same device, both on the cache list, few enough
 * chunks); lock held. */
static bool
large_joinable(const struct large *a, const struct large *b)
{
	return a->listed && b->listed && a->dev == b->dev &&
	    a->mapped == a->va_size && a->base + a->va_size == b->base &&
	    a->nchunks + b->nchunks <= LARGE_MAX_GRANT;
}

/* Makes cached entries a and b (large_joinable) one, a; b is freed (false:
 * out of memory, nothing changed).  The
 * latest ticket and free time of the two: reused only once a sync covers
 * both frees.  Lock held. */
static bool
large_join(struct large *a, struct large *b)
{
	uint32_t k;

	if (a->nchunks + b->nchunks > a->capchunks) {
		struct large_chunk *nc = realloc(a->chunks,
		    (a->nchunks + b->nchunks) * sizeof(*nc));

		if (nc == NULL)
			return false;	/* both stay as they were */
		a->chunks = nc;
		a->capchunks = a->nchunks + b->nchunks;
	}
	cache_unlink(a);
	cache_unlink(b);
	large_remove(b);
	for (k = 0; k < b->nchunks; k++)
		a->chunks[a->nchunks++] = b->chunks[k];
	a->mapped += b->mapped;
	a->va_size += b->va_size;
	a->passed = a->passed && b->passed;
	if (b->ticket > a->ticket)
		a->ticket = b->ticket;
	if (b->freed_ms > a->freed_ms)
		a->freed_ms = b->freed_ms;
	cache_push(a);
	free(b->chunks);
	free(b);
	return true;
}

/* Joins cached entry l with its cached neighbours in VA; returns the entry
 * that holds l's chunks now.  Lock held. */
static struct large *
large_join_neighbours(struct large *l)
{
	size_t i = large_index(l->base);

	if (i + 1 < large_n && large_v[i] == l &&
	    large_joinable(l, large_v[i + 1]))
		large_join(l, large_v[i + 1]);
	i = large_index(l->base);
	if (i > 0 && i < large_n && large_v[i] == l &&
	    large_joinable(large_v[i - 1], l)) {
		struct large *a = large_v[i - 1];

		if (large_join(a, l))
			return a;
	}
	return l;
}

/* The mapped size of the shortest run of l's first chunks holding need
 * bytes, and in *k how many chunks that is (all of them if none is). */
static uint64_t
large_prefix(const struct large *l, uint64_t need, uint32_t *k)
{
	uint64_t p = 0;
	uint32_t i = 0;

	while (i < l->nchunks && p < need)
		p += l->chunks[i++].size;
	*k = i;
	return p;
}

/* Cuts cached entry l after its first k chunks (p bytes): l keeps them and
 * leaves the cache, a new cached entry holds the rest at its own address,
 * with l's ticket (the same free), in l's place on the cache list; that
 * entry, or NULL (nothing changed) without memory.  Lock held. */
static struct large *
large_split(struct large *l, uint32_t k, uint64_t p)
{
	struct large *r = calloc(1, sizeof(*r));

	if (r == NULL || (r->chunks = calloc(l->nchunks - k,
	    sizeof(*r->chunks))) == NULL)
		goto fail;
	memcpy(r->chunks, &l->chunks[k], (l->nchunks - k) * sizeof(*r->chunks));
	r->nchunks = r->capchunks = l->nchunks - k;
	r->base = l->base + p;	/* inside l: no entry has that base */
	r->mapped = l->mapped - p;
	r->va_size = l->va_size - p;
	r->dev = l->dev;
	r->cached = true;
	r->ticket = l->ticket;
	r->freed_ms = l->freed_ms;
	r->passed = l->passed;
	if (large_insert(r) != 0)
		goto fail;
	r->listed = true;
	r->cnext = l->cnext;
	r->cprev = l;
	if (l->cnext != NULL)
		l->cnext->cprev = r;
	else
		cache_tail = r;
	l->cnext = r;
	cache_unlink(l);	/* counts l->mapped out of the cache... */
	__atomic_add_fetch(&cache_bytes, l->mapped - p, __ATOMIC_RELAXED);
	vmmc_stat_add(VMMC_STAT_CACHED, (int64_t)(l->mapped - p));
	l->nchunks = k;
	l->mapped = p;
	l->va_size = p;
	return r;
fail:
	if (r != NULL)
		free(r->chunks);
	free(r);
	return NULL;
}

/* Gives granted chunks back unused (a failure after the grant). */
static void
large_giveback(struct vmmc_conn *c, struct vmmc_grant_chunk *g, size_t n)
{
	uint64_t ids[LARGE_MAX_PIECES];
	size_t i;

	for (i = 0; i < n; i++) {
		ids[i] = g[i].id;
		if (g[i].fd >= 0)
			close(g[i].fd);
	}
	vmmc_conn_release(c, ids, n, 0);
}

static uint64_t	(*large_idle_fn)(int dev);
static void	(*large_give_fn)(int dev, uint64_t bytes);

void
vmmc_large_on_acquire(uint64_t (*idle)(int dev),
    void (*give)(int dev, uint64_t bytes))
{
	__atomic_store_n(&large_give_fn, give, __ATOMIC_RELEASE);
	__atomic_store_n(&large_idle_fn, idle, __ATOMIC_RELEASE);
}

/* One Acquire of large_acquire: bytes, stitched from pieces no smaller
 * than frag_ratio of them; a ratio of 0 (or one that rounds to no piece at
 * all) waives vmmd's own frag_ratio too, so pieces of any size will do.
 * partial: Acquire.partial, vmmd may answer short of bytes. */
static int
large_acquire_one(int dev, struct vmmc_conn *c, uint64_t bytes, bool partial,
    struct vmmc_grant_chunk *g)
{
	const struct vmmc_settings *st = vmmc_settings_get();
	uint64_t gran = vmmc_conn_granularity(c);
	uint64_t min_piece = round_up((uint64_t)(st->frag_ratio * (double)bytes),
	    gran);
	unsigned flags = VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH |
	    (partial ? VMMC_ACQUIRE_PARTIAL : 0);
	uint64_t (*idle)(int) = __atomic_load_n(&large_idle_fn,
	    __ATOMIC_ACQUIRE);
	void (*give)(int, uint64_t) = __atomic_load_n(&large_give_fn,
	    __ATOMIC_ACQUIRE);
	int n;

	/* min_piece 0 alone would mean "the daemon's choice". */
	if (min_piece == 0)
		flags |= VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_IGNORE_FRAG_RATIO;
	/* The process's idle memory elsewhere (the medium heap's pages) goes
	 * back to vmmd only where vmmd's idle memory would not do
	 * (Acquire.no_create first): then it is stitched into this grant
	 * rather than left idle beside new memory.  Where vmmd's idle memory
	 * does, the heap keeps its pages for its next blocks, which would
	 * otherwise take them back from vmmd (an older vmmd ignores the flag
	 * and grants as ever). */
	if (idle != NULL && give != NULL && idle(dev) > 0) {
		n = vmmc_conn_acquire(c, bytes, flags | VMMC_ACQUIRE_NO_CREATE,
		    min_piece, g, LARGE_MAX_GRANT);
		if (n != VMMC_EWOULD_CREATE)
			return n;
		give(dev, bytes);
	}
	return vmmc_conn_acquire(c, bytes, flags, min_piece, g, LARGE_MAX_GRANT);
}

/*
 * Asks vmmd for bytes in up to LARGE_MAX_PIECES chunks (g holds that
 * many); returns how many, their sum at least bytes, or a VMM_E* code
 * (nothing held then).  A grant carries at most LARGE_MAX_GRANT chunks:
 * where vmmd's idle chunks are so small that they fill a grant and it
 * would create the rest beside those left idle, it lends them short of
 * the request (Acquire.partial) and the rest is asked for again, so idle
 * memory serves before new memory is made.  The last grant that would
 * pass LARGE_MAX_PIECES is asked without the flag: vmmd completes it.
 * Each chunk is counted once, whatever grant it came in; a short answer
 * without the flag (a daemon that broke the protocol) gives every chunk
 * back rather than map less than asked.
 */
static int
large_acquire(int dev, struct vmmc_conn *c, uint64_t bytes,
    struct vmmc_grant_chunk *g)
{
	uint64_t got = 0, sum;
	size_t n = 0;
	bool partial;
	int k, i;

	while (got < bytes) {
		partial = n + 2 * LARGE_MAX_GRANT <= LARGE_MAX_PIECES;
		k = large_acquire_one(dev, c, bytes - got, partial, g + n);
		if (k < 0) {
			if (n > 0)
				large_giveback(c, g, n);
			return k;
		}
		for (sum = 0, i = 0; i < k; i++)
			sum += g[n + i].size;
		n += (size_t)k;
		got += sum;
		if (got < bytes && !partial) {
			vmm_log_error("vmmd granted %llu of %llu bytes",
			    (unsigned long long)got, (unsigned long long)bytes);
			large_giveback(c, g, n);
			return VMM_EPROTO;
		}
	}
	return (int)n;
}

/* Puts picked cache entries back (a local stitch that failed). */
static void
large_unpick(struct large **pick, size_t n)
{
	size_t i;

	pthread_rwlock_wrlock(&large_lock);
	for (i = 0; i < n; i++)
		cache_push(pick[i]);
	pthread_rwlock_unlock(&large_lock);
}

/* Maps the chunks of cached entry l at va as well (each with the handle
 * kept for its current mapping, which moves along: vmmc_handle_take);
 * returns bytes mapped, or 0 after undoing. */
static uint64_t
large_remap_at(const struct large *l, CUdeviceptr va)
{
	CUmemGenericAllocationHandle h;
	uint64_t off = 0;
	uint32_t k;

	for (k = 0; k < l->nchunks; k++) {
		if (vmmc_handle_take(l->base + off, &h) != CUDA_SUCCESS)
			goto fail;
		if (cuMemMap(va + off, l->chunks[k].size, 0, h, 0) != CUDA_SUCCESS) {
			/* Back with the mapping it came from. */
			vmmc_handle_keep(l->base + off, l->chunks[k].size, h);
			goto fail;
		}
		vmmc_handle_keep(va + off, l->chunks[k].size, h);
		off += l->chunks[k].size;
	}
	return off;
fail:
	if (off > 0)
		vmmc_unmap_range(va, off);
	return 0;
}

/*
 * Stitches a request from this process's own cache: cached allocations no
 * smaller than frag_ratio × the request first, then smaller ones (each no
 * larger than what is still missing), largest first, have their chunks
 * remapped back to back into a new range — no round trip, no new memory —
 * and vmmd is asked only for the rest.  Every picked entry is reused only
 * after a sync covering its free (the latest ticket of them, vmmc_sync_for,
 * or, under capture, LARGE_IDLE_NOW): smaller entries are picked by the same
 * rule as larger ones.  Returns 0 with *out, 1 if the cache had nothing to
 * offer, or a VMM_E* code.
 */
static int
large_stitch_local(int dev, struct vmmc_conn *c, size_t size, uint64_t need,
    uint64_t gran, void **out)
{
	const struct vmmc_settings *st = vmmc_settings_get();
	struct large *pick[LARGE_MAX_GRANT], *l, *nl = NULL;
	struct vmmc_grant_chunk g[LARGE_MAX_PIECES];
	uint64_t min_piece, got = 0, ticket = 0, off = 0, total;
	size_t npick = 0, i;
	int n = 0, rc = VMM_ENOMEM;

	min_piece = round_up((uint64_t)(st->frag_ratio * (double)need), gran);
	if (min_piece < gran)
		min_piece = gran;
	pthread_rwlock_wrlock(&large_lock);
	while (npick < LARGE_MAX_GRANT && got < need) {
		struct large *best = NULL;

		for (l = cache_head; l != NULL; l = l->cnext)
			if (l->dev == dev && l->mapped >= min_piece &&
			    l->mapped <= need - got && LARGE_IDLE_NOW(l) &&
			    (best == NULL || l->mapped > best->mapped))
				best = l;
		/* Smaller pieces too, rather than new memory (as vmmd does). */
		if (best == NULL && min_piece > gran) {
			min_piece = gran;
			continue;
		}
		if (best == NULL)
			break;
		cache_unlink(best);
		pick[npick++] = best;
		got += best->mapped;
		if (best->ticket > ticket)
			ticket = best->ticket;
	}
	pthread_rwlock_unlock(&large_lock);
	if (npick == 0)
		return 1;
	if (got < need && (n = large_acquire(dev, c, need - got, g)) < 0) {
		large_unpick(pick, npick);
		return n;
	}
	total = got;
	for (i = 0; i < (size_t)n; i++)
		total += g[i].size;
	if ((nl = calloc(1, sizeof(*nl))) == NULL)
		goto fail;
	nl->dev = dev;
	nl->size = size;
	nl->va_size = round_up(total + (uint64_t)(st->va_headroom *
	    (double)total), gran);
	if ((rc = vmmc_va_alloc(dev, nl->va_size, gran, &nl->base)) != 0)
		goto fail;
	/* The cached memory may still be in use by work issued before its
	 * free: not before that is done.  A failed sync: still busy, the
	 * picked entries go back to the cache and new chunks serve. */
	if (vmmc_sync_for(dev, ticket) != 0) {
		vmmc_va_free(dev, nl->base, nl->va_size);
		rc = 1;
		goto fail;
	}
	for (i = 0; i < npick; i++) {
		uint64_t m = large_remap_at(pick[i], nl->base + off);

		if (m == 0)
			goto fail_unmap;
		off += m;
	}
	if (vmmc_set_access_rw(dev, nl->base, off) != 0 ||
	    (n > 0 && vmmc_map_chunks(dev, nl->base + off, g, (size_t)n) != 0))
		goto fail_unmap;
	/* Committed: the picked entries' chunks now belong to nl. */
	pthread_rwlock_wrlock(&large_lock);
	for (i = 0; i < npick; i++) {
		struct vmmc_grant_chunk one;
		uint32_t k;

		for (k = 0; k < pick[i]->nchunks; k++) {
			one.id = pick[i]->chunks[k].id;
			one.size = pick[i]->chunks[k].size;
			one.fd = -1;
			large_add_chunks(nl, &one, 1);
		}
		large_remove(pick[i]);
	}
	if (n > 0)
		large_add_chunks(nl, g, (size_t)n);
	rc = large_insert(nl);
	pthread_rwlock_unlock(&large_lock);
	for (i = 0; i < npick; i++) {
		vmmc_unmap_range(pick[i]->base, pick[i]->mapped);
		vmmc_va_free(dev, pick[i]->base, pick[i]->va_size);
		free(pick[i]->chunks);
		free(pick[i]);
	}
	if (rc != 0)
		vmm_log_error("allocation table full");
	vmmc_stat_add(VMMC_STAT_IN_USE, (int64_t)size);
	vmmc_stat_add(VMMC_STAT_MAPPED, (int64_t)(total - got));
	vmmc_stat_add(VMMC_STAT_ALLOCS, 1);
	vmm_log_info("ALLOC Ptr=0x%llx Size=%zu PA=%llu Chunks=%u Stitched=%zu",
	    (unsigned long long)nl->base, size, (unsigned long long)nl->mapped,
	    nl->nchunks, npick);
	*out = (void *)(uintptr_t)nl->base;
	return 0;

fail_unmap:
	if (off > 0)
		vmmc_unmap_range(nl->base, off);
	vmmc_va_free(dev, nl->base, nl->va_size);
	rc = VMM_ECUDA;
fail:
	if (n > 0)
		large_giveback(c, g, (size_t)n);
	large_unpick(pick, npick);
	if (nl != NULL) {
		free(nl->chunks);
		free(nl);
	}
	return rc;
}

int
vmmc_large_alloc(int dev, size_t size, void **out)
{
	const struct vmmc_settings *st = vmmc_settings_get();
	struct vmmc_grant_chunk g[LARGE_MAX_PIECES];
	struct vmmc_conn *c;
	struct large *l, *best = NULL;
	uint64_t gran, need, ticket, best_fit = 0;
	uint32_t best_k = 0;
	int n, rc;

	if ((c = vmmc_conn_get(dev)) == NULL)
		return VMM_ENODAEMON;
	if ((gran = vmmc_conn_granularity(c)) == 0) {
		if ((rc = vmmc_conn_ensure(c)) != 0)
			return rc;
		gran = vmmc_conn_granularity(c);
	}
	need = round_up(size, gran);

	/* 1. A cached allocation of about this size, or the first chunks of a
	 * larger one (split where it lies: the rest stays cached).  The
	 * closest fit; of equal fits the smallest entry. */
	pthread_rwlock_wrlock(&large_lock);
	for (l = cache_head; l != NULL; l = l->cnext) {
		uint32_t k;
		uint64_t fit;

		if (l->dev != dev || l->mapped < need || !LARGE_IDLE_NOW(l))
			continue;
		fit = large_prefix(l, need, &k);
		if (fit > need + need / 8)
			continue;
		/* Each that could serve is passed over, but the one taken. */
		l->passed = true;
		if (best == NULL || fit < best_fit ||
		    (fit == best_fit && l->mapped < best->mapped)) {
			best = l;
			best_fit = fit;
			best_k = k;
		}
	}
	if (best != NULL && best_k < best->nchunks) {
		struct large *rest = large_split(best, best_k, best_fit);

		if (rest == NULL)
			best = NULL;	/* out of memory: no split */
		else
			rest->passed = false;	/* the rest of the one taken */
	}
	if (best != NULL) {
		if (best->listed)
			cache_unlink(best);
		best->passed = false;
		best->cached = false;
		best->size = size;
		ticket = best->ticket;
		pthread_rwlock_unlock(&large_lock);
		if (vmmc_sync_for(dev, ticket) != 0) {
			/* Still busy: back to the cache, new chunks serve. */
			pthread_rwlock_wrlock(&large_lock);
			best->cached = true;
			cache_push(best);
			large_join_neighbours(best);
			pthread_rwlock_unlock(&large_lock);
			best = NULL;
			goto fresh;
		}
		*out = (void *)(uintptr_t)best->base;
		vmmc_stat_add(VMMC_STAT_IN_USE, (int64_t)size);
		vmmc_stat_add(VMMC_STAT_ALLOCS, 1);
		vmm_log_info("ALLOC Ptr=0x%llx Size=%zu PA=%llu Chunks=%u Cached=1",
		    (unsigned long long)best->base, size,
		    (unsigned long long)best->mapped, best->nchunks);
		return 0;
	}
	pthread_rwlock_unlock(&large_lock);

fresh:
	/* 2. Stitched from our own cached chunks (and vmmd for the rest). */
	if ((rc = large_stitch_local(dev, c, size, need, gran, out)) <= 0)
		return rc;

	/* 3. Nothing cached can serve: give vmmd back enough of the cache to
	 * cover the request first, so it stitches those chunks into the grant
	 * (or lends them to another process) rather than creating more memory
	 * while ours sits unused. */
	if (__atomic_load_n(&cache_bytes, __ATOMIC_RELAXED) > 0)
		vmmc_large_trim(need, 0, 0);

	/* 4. Chunks from vmmd, mapped back to back. */
	if ((n = large_acquire(dev, c, need, g)) < 0)
		return n;
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    large_add_chunks(l, g, (size_t)n) != 0) {
		rc = VMM_ENOMEM;
		goto fail;
	}
	l->dev = dev;
	l->size = size;
	l->va_size = round_up(l->mapped + (uint64_t)(st->va_headroom *
	    (double)l->mapped), gran);
	if ((rc = vmmc_va_alloc(dev, l->va_size, gran, &l->base)) != 0)
		goto fail;
	if ((rc = vmmc_map_chunks(dev, l->base, g, (size_t)n)) != 0) {
		vmmc_va_free(dev, l->base, l->va_size);
		goto fail;
	}
	pthread_rwlock_wrlock(&large_lock);
	rc = large_insert(l);
	pthread_rwlock_unlock(&large_lock);
	if (rc != 0) {
		vmmc_unmap_range(l->base, l->mapped);
		vmmc_va_free(dev, l->base, l->va_size);
		rc = VMM_ENOMEM;
		goto fail_released;
	}
	vmmc_stat_add(VMMC_STAT_IN_USE, (int64_t)size);
	vmmc_stat_add(VMMC_STAT_MAPPED, (int64_t)l->mapped);
	vmmc_stat_add(VMMC_STAT_ALLOCS, 1);
	vmm_log_info("ALLOC Ptr=0x%llx Size=%zu PA=%llu Chunks=%d",
	    (unsigned long long)l->base, size, (unsigned long long)l->mapped, n);
	*out = (void *)(uintptr_t)l->base;
	return 0;

fail:
	large_giveback(c, g, (size_t)n);
	if (l != NULL) {
		free(l->chunks);
		free(l);
	}
	return rc;
fail_released:
	{
		uint64_t ids[LARGE_MAX_PIECES];
		uint32_t i;

		for (i = 0; i < l->nchunks; i++)
			ids[i] = l->chunks[i].id;
		vmmc_conn_release(c, ids, l->nchunks, 0);
	}
	free(l->chunks);
	free(l);
	return rc;
}

/* Unmaps an entry (off every list) and gives its chunks back. */
static void
large_destroy(struct large *l, uint64_t recall_id)
{
	struct vmmc_conn *c = vmmc_conn_get(l->dev);
	uint64_t *ids = calloc(l->nchunks ? l->nchunks : 1, sizeof(*ids));
	uint32_t i;

	vmmc_unmap_range(l->base, l->mapped);
	vmmc_va_free(l->dev, l->base, l->va_size);
	vmmc_stat_add(VMMC_STAT_MAPPED, -(int64_t)l->mapped);
	if (ids != NULL && c != NULL) {
		for (i = 0; i < l->nchunks; i++)
			ids[i] = l->chunks[i].id;
		vmmc_conn_release(c, ids, l->nchunks, recall_id);
	}
	vmm_log_debug("UNMAP Ptr=0x%llx Size=%llu", (unsigned long long)l->base,
	    (unsigned long long)l->mapped);
	free(ids);
	free(l->chunks);
	free(l);
}

static int large_free(void *p, bool idle);

int
vmmc_large_free(void *p)
{
	return large_free(p, false);
}

int
vmmc_large_free_idle(void *p)
{
	return large_free(p, true);
}

/* What of own (this cache's bytes) goes back so that the process keeps
 * at most max cached: VMM_CACHE_MAX is one budget for the process, the
 * medium heap's idle pages and cached large allocations together
 * (VMMC_STAT_CACHED sums both), not one per allocator. */
static uint64_t
cache_over(uint64_t own, uint64_t max)
{
	int64_t all = vmmc_stat_get(VMMC_STAT_CACHED);
	uint64_t over = all > 0 && (uint64_t)all > max ? (uint64_t)all - max : 0;

	return over < own ? over : own;
}

/* idle: no GPU work can touch it any more (ticket 0 needs no sync). */
static int
large_free(void *p, bool idle)
{
	struct large *l;
	uint64_t over, mapped;

	pthread_rwlock_wrlock(&large_lock);
	if ((l = large_find((CUdeviceptr)(uintptr_t)p, true)) == NULL) {
		pthread_rwlock_unlock(&large_lock);
		return VMM_ENOTOURS;
	}
	l->cached = true;
	l->ticket = idle ? 0 : vmmc_sync_ticket(l->dev);
	l->freed_ms = vmm_now_ms();
	cache_push(l);
	over = cache_over(cache_bytes, vmmc_cache_budget());
	vmmc_stat_add(VMMC_STAT_IN_USE, -(int64_t)l->size);
	vmmc_stat_add(VMMC_STAT_FREES, 1);
	vmm_log_info("FREE Ptr=0x%llx Size=%llu", (unsigned long long)l->base,
	    (unsigned long long)l->size);
	mapped = l->mapped;
	/* One cached entry with its cached neighbours in VA (l may be freed
	 * here); once unlocked, it is the cache's: the helper may trim and
	 * free it. */
	large_join_neighbours(l);
	pthread_rwlock_unlock(&large_lock);
	if (over > 0)
		vmmc_large_trim(over, 0, 0);
	else if (mapped >= (16u << 20))
		vmmc_report_soon();	/* recallable for other processes */
	return 0;
}

uint64_t
vmmc_large_trim(uint64_t target, uint64_t older_ms, uint64_t recall_id)
{
	uint64_t done = 0, now = vmm_now_ms();
	struct large *l;

	for (;;) {
		pthread_rwlock_wrlock(&large_lock);
		l = cache_tail;
		/* The oldest first: if it is not known idle, none is. */
		if (l == NULL || (target != 0 && done >= target) ||
		    now - l->freed_ms < older_ms || !LARGE_IDLE_NOW(l)) {
			pthread_rwlock_unlock(&large_lock);
			break;
		}
		/* Not before work issued ahead of the free is done (the
		 * contexts of l's device, not the caller's): a failed sync
		 * leaves it cached, mapped and ours. */
		if (!vmmc_sync_covers(l->dev, l->ticket)) {
			uint64_t t = l->ticket;
			int dev = l->dev;

			pthread_rwlock_unlock(&large_lock);
			if (vmmc_sync_for(dev, t) != 0)
				break;
			continue;	/* look again: the cache may have moved */
		}
		cache_unlink(l);
		large_remove(l);
		pthread_rwlock_unlock(&large_lock);
		done += l->mapped;
		large_destroy(l, recall_id);
	}
	return done;
}

uint64_t
vmmc_large_cached(void)
{
	return __atomic_load_n(&cache_bytes, __ATOMIC_RELAXED);
}

/* Whether every chunk of l is at most bytes. */
static bool
large_chunks_within(const struct large *l, uint64_t bytes)
{
	uint32_t k;

	for (k = 0; k < l->nchunks; k++)
		if (l->chunks[k].size > bytes)
			return false;
	return true;
}

/* Hands over entry l (off the cache list, still in the table, idle:
 * LARGE_IDLE_NOW) once a sync covers its free: its chunks' handles go to
 * out[*n...] (room for all of them), its VA is freed.  -1 if that sync
 * failed: l is back on the cache, mapped and ours.  No lock held. */
static int
large_hand_entry(struct large *l, struct vmmc_handed_chunk *out, size_t *n)
{
	struct vmmc_conn *c = vmmc_conn_get(l->dev);
	uint64_t off = 0;
	uint32_t k;

	/* Not before the work issued ahead of its free is done. */
	if (vmmc_sync_for(l->dev, l->ticket) != 0) {
		pthread_rwlock_wrlock(&large_lock);
		cache_push(l);
		large_join_neighbours(l);
		pthread_rwlock_unlock(&large_lock);
		return -1;
	}
	pthread_rwlock_wrlock(&large_lock);
	large_remove(l);
	pthread_rwlock_unlock(&large_lock);
	for (k = 0; k < l->nchunks; k++) {
		CUmemGenericAllocationHandle h;

		/* The handle (the one kept for this mapping) keeps the memory
		 * once unmapped here; one not to be had goes back to vmmd. */
		if (vmmc_handle_take(l->base + off, &h) == CUDA_SUCCESS) {
			out[*n].id = l->chunks[k].id;
			out[*n].size = l->chunks[k].size;
			out[(*n)++].h = h;
		} else if (c != NULL) {
			vmmc_conn_release(c, &l->chunks[k].id, 1, 0);
		}
		off += l->chunks[k].size;
	}
	vmmc_unmap_range(l->base, l->mapped);
	vmmc_va_free(l->dev, l->base, l->va_size);
	vmmc_stat_add(VMMC_STAT_MAPPED, -(int64_t)l->mapped);
	vmm_log_debug("HAND Ptr=0x%llx Size=%llu", (unsigned long long)l->base,
	    (unsigned long long)l->mapped);
	free(l->chunks);
	free(l);
	return 0;
}

size_t
vmmc_large_hand(int dev, uint64_t bytes, struct vmmc_handed_chunk *out,
    size_t max)
{
	uint64_t done = 0;
	size_t n = 0;

	while (done < bytes && n < max) {
		struct large *l;
		uint64_t mapped;

		pthread_rwlock_wrlock(&large_lock);
		for (l = cache_tail; l != NULL; l = l->cprev)
			if (l->dev == dev && l->nchunks <= max - n &&
			    LARGE_IDLE_NOW(l) && large_chunks_within(l, bytes))
				break;
		if (l == NULL) {
			pthread_rwlock_unlock(&large_lock);
			break;
		}
		/* Off the cache (nobody picks it), still in the table. */
		cache_unlink(l);
		mapped = l->mapped;
		pthread_rwlock_unlock(&large_lock);
		if (large_hand_entry(l, out, &n) != 0)
			break;
		done += mapped;
	}
	return n;
}

/* Puts l (off the list) in r's place on the cache list and takes r off.
 * Lock held. */
static void
cache_replace(struct large *r, struct large *l)
{
	l->cprev = r->cprev;
	l->cnext = r->cnext;
	if (l->cprev != NULL)
		l->cprev->cnext = l;
	else
		cache_head = l;
	if (l->cnext != NULL)
		l->cnext->cprev = l;
	else
		cache_tail = l;
	l->listed = true;
	r->cnext = r->cprev = NULL;
	r->listed = false;
	__atomic_add_fetch(&cache_bytes, l->mapped, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&cache_bytes, r->mapped, __ATOMIC_RELAXED);
	vmmc_stat_add(VMMC_STAT_CACHED, (int64_t)l->mapped - (int64_t)r->mapped);
}

/* Whether a chunk of size is a better piece than one of best for a run
 * of need bytes: one covering it all beats one that does not; of those,
 * the smallest; of the others, the largest. */
static bool
hand_better(uint64_t size, uint64_t best, uint64_t need)
{
	if (best == 0)
		return true;
	if ((size >= need) != (best >= need))
		return size >= need;
	return size >= need ? size < best : size > best;
}

size_t
vmmc_large_hand_one(int dev, uint64_t need, uint64_t most,
    struct vmmc_handed_chunk *out)
{
	struct large *l, *best = NULL;
	uint64_t best_size = 0;
	bool last = false;
	size_t n = 0;

	pthread_rwlock_wrlock(&large_lock);
	/* Only an entry's first or last chunk can be cut off it alone, and
	 * only of an entry passed over: one the process is likely to reuse
	 * soon stays whole (cutting such a piece made the next allocation of
	 * its size create it again). */
	for (l = cache_tail; l != NULL; l = l->cprev) {
		uint64_t first, tail;

		if (l->dev != dev || l->nchunks == 0 || !l->passed ||
		    !LARGE_IDLE_NOW(l))
			continue;
		first = l->chunks[0].size;
		tail = l->chunks[l->nchunks - 1].size;
		if (first <= most && hand_better(first, best_size, need)) {
			best = l;
			best_size = first;
			last = false;
		}
		if (l->nchunks > 1 && tail <= most &&
		    hand_better(tail, best_size, need)) {
			best = l;
			best_size = tail;
			last = true;
		}
	}
	if (best == NULL) {
		pthread_rwlock_unlock(&large_lock);
		return 0;
	}
	l = best;
	if (l->nchunks > 1) {
		uint32_t k = last ? l->nchunks - 1 : 1;
		uint64_t at = last ? l->mapped - best_size : best_size;
		struct large *r;

		if ((r = large_split(l, k, at)) == NULL) {
			pthread_rwlock_unlock(&large_lock);
			return 0;	/* out of memory: nothing handed */
		}
		/* l holds the first k chunks, off the list; r the rest, in l's
		 * place.  The last chunk: r is handed, l goes back where it
		 * was. */
		if (last) {
			cache_replace(r, l);
			l = r;
		}
	} else {
		cache_unlink(l);
	}
	pthread_rwlock_unlock(&large_lock);
	(void)large_hand_entry(l, out, &n);
	return n;
}

bool
vmmc_large_owns(const void *p)
{
	bool r;

	pthread_rwlock_rdlock(&large_lock);
	r = large_find((CUdeviceptr)(uintptr_t)p, true) != NULL;
	pthread_rwlock_unlock(&large_lock);
	return r;
}

int
vmmc_large_range(const void *p, void **base, size_t *size)
{
	struct large *l;
	int rc = VMM_ENOTOURS;

	pthread_rwlock_rdlock(&large_lock);
	if ((l = large_find((CUdeviceptr)(uintptr_t)p, false)) != NULL) {
		*base = (void *)(uintptr_t)l->base;
		*size = l->size;
		rc = 0;
	}
	pthread_rwlock_unlock(&large_lock);
	return rc;
}

/* Remaps l's chunks at new_base, read-write (same memory, no copy). */
static int
large_remap(struct large *l, CUdeviceptr new_base)
{
	if (large_remap_at(l, new_base) == 0)
		return VMM_ECUDA;
	if (vmmc_set_access_rw(l->dev, new_base, l->mapped) != 0) {
		vmmc_unmap_range(new_base, l->mapped);
		return VMM_ECUDA;
	}
	return 0;
}

/* Shrinks l to need bytes of chunks: unmaps and returns the tail. */
static void
large_shrink(struct large *l, uint64_t need)
{
	struct vmmc_conn *c = vmmc_conn_get(l->dev);
	uint64_t keep = 0, *ids;
	uint32_t k = 0, i;

	while (k < l->nchunks && keep < need)
		keep += l->chunks[k++].size;
	if (k == l->nchunks)
		return;
	/* The tail may be in use by work issued before the call; still
	 * busy: keep it mapped (the allocation just stays larger). */
	if (vmmc_sync_now(l->dev) != 0)
		return;
	vmmc_unmap_range(l->base + keep, l->mapped - keep);
	if ((ids = calloc(l->nchunks - k, sizeof(*ids))) != NULL && c != NULL) {
		for (i = k; i < l->nchunks; i++)
			ids[i - k] = l->chunks[i].id;
		vmmc_conn_release(c, ids, l->nchunks - k, 0);
	}
	free(ids);
	vmmc_stat_add(VMMC_STAT_MAPPED, -(int64_t)(l->mapped - keep));
	l->mapped = keep;
	l->nchunks = k;
}

int
vmmc_large_realloc(void **pp, size_t size)
{
	const struct vmmc_settings *st = vmmc_settings_get();
	struct vmmc_grant_chunk g[LARGE_MAX_PIECES];
	CUdeviceptr old, nb;
	struct vmmc_conn *c;
	struct large *l;
	uint64_t gran, need, extra, nva;
	size_t oldsize;
	int n, rc, i;

	pthread_rwlock_rdlock(&large_lock);
	l = large_find((CUdeviceptr)(uintptr_t)*pp, true);
	pthread_rwlock_unlock(&large_lock);
	if (l == NULL)
		return VMM_ENOTOURS;
	if ((c = vmmc_conn_get(l->dev)) == NULL)
		return VMM_ENODAEMON;
	gran = vmmc_conn_granularity(c);
	need = round_up(size, gran);
	old = l->base;
	oldsize = l->size;
	if (need <= l->mapped) {
		large_shrink(l, need);
		l->size = size;
		vmmc_stat_add(VMMC_STAT_IN_USE, (int64_t)size - (int64_t)oldsize);
		vmm_log_info("REMAP Ptr=0x%llx Size=%zu Src=0x%llx",
		    (unsigned long long)l->base, size, (unsigned long long)old);
		return 0;
	}
	/* As a new allocation does: cached memory goes back first, so vmmd
	 * stitches it into the growth rather than creating more while ours
	 * sits unused (vmmc_large_trim syncs before it unmaps). */
	if (__atomic_load_n(&cache_bytes, __ATOMIC_RELAXED) > 0)
		vmmc_large_trim(need - l->mapped, 0, 0);
	if ((n = large_acquire(l->dev, c, need - l->mapped, g)) < 0)
		return n;
	/* vmmd may answer with more than asked (an idle chunk larger than
	 * the rest, rather than new memory): all of it is mapped. */
	for (extra = 0, i = 0; i < n; i++)
		extra += g[i].size;
	need = l->mapped + extra;
	/* Grow in place: within our VA, or by taking the VA right after. */
	nva = round_up(need + (uint64_t)(st->va_headroom * (double)need), gran);
	if (need <= l->va_size ||
	    vmmc_va_take(l->dev, l->base + l->va_size, nva - l->va_size) == 0) {
		if (need > l->va_size)
			l->va_size = nva;
		if ((rc = vmmc_map_chunks(l->dev, l->base + l->mapped, g,
		    (size_t)n)) != 0) {
			large_giveback(c, g, (size_t)n);
			return rc;
		}
		large_add_chunks(l, g, (size_t)n);
		nb = l->base;
	} else {
		/* Move: the same chunks into a new range, the new ones after. */
		if ((rc = vmmc_va_alloc(l->dev, nva, gran, &nb)) != 0) {
			large_giveback(c, g, (size_t)n);
			return rc;
		}
		if ((rc = large_remap(l, nb)) != 0) {
			vmmc_va_free(l->dev, nb, nva);
			large_giveback(c, g, (size_t)n);
			return rc;
		}
		if ((rc = vmmc_map_chunks(l->dev, nb + l->mapped, g,
		    (size_t)n)) != 0) {
			vmmc_unmap_range(nb, l->mapped);
			vmmc_va_free(l->dev, nb, nva);
			large_giveback(c, g, (size_t)n);
			return rc;
		}
		/* Work issued on the old address must finish first; still
		 * busy: undo the move, the old allocation stays as it was. */
		if (vmmc_sync_now(l->dev) != 0) {
			vmmc_unmap_range(nb, l->mapped + extra);
			vmmc_va_free(l->dev, nb, nva);
			large_giveback(c, g, (size_t)n);
			return VMM_ECUDA;
		}
		vmmc_unmap_range(l->base, l->mapped);
		vmmc_va_free(l->dev, l->base, l->va_size);
		pthread_rwlock_wrlock(&large_lock);
		large_remove(l);
		l->base = nb;
		l->va_size = nva;
		large_add_chunks(l, g, (size_t)n);
		large_insert(l);
		pthread_rwlock_unlock(&large_lock);
	}
	vmmc_stat_add(VMMC_STAT_MAPPED, (int64_t)extra);
	vmmc_stat_add(VMMC_STAT_IN_USE, (int64_t)size - (int64_t)oldsize);
	l->size = size;
	vmm_log_info("REMAP Ptr=0x%llx Size=%zu Src=0x%llx",
	    (unsigned long long)nb, size, (unsigned long long)old);
	*pp = (void *)(uintptr_t)nb;
	return 0;
}

size_t
vmmc_large_chunks(int dev, struct vmmc_mapped_chunk *out, size_t max)
{
	size_t i, n = 0;
	uint32_t k;

	pthread_rwlock_rdlock(&large_lock);
	for (i = 0; i < large_n; i++) {
		const struct large *l = large_v[i];
		uint64_t off = 0;

		if (l->dev != dev)
			continue;
		for (k = 0; k < l->nchunks; k++, n++) {
			if (n < max) {
				out[n].va = l->base + off;
				out[n].size = l->chunks[k].size;
				out[n].id = l->chunks[k].id;
			}
			off += l->chunks[k].size;
		}
	}
	pthread_rwlock_unlock(&large_lock);
	return n;
}

/* The entry, live or cached, whose mapped range holds addr; lock held. */
static struct large *
large_holding(CUdeviceptr addr)
{
	size_t i = large_index(addr + 1);
	struct large *l;

	if (i == 0)
		return NULL;
	l = large_v[i - 1];
	return addr - l->base < l->mapped ? l : NULL;
}

void
vmmc_large_set_ids(int dev, const struct vmmc_mapped_chunk *v, size_t n)
{
	size_t i;
	uint32_t k;

	pthread_rwlock_wrlock(&large_lock);
	for (i = 0; i < n; i++) {
		struct large *l = large_holding(v[i].va);
		uint64_t off = 0;

		if (l == NULL || l->dev != dev)
			continue;	/* freed and unmapped meanwhile */
		for (k = 0; k < l->nchunks; k++) {
			if (l->base + off == v[i].va &&
			    l->chunks[k].size == v[i].size) {
				l->chunks[k].id = v[i].id;
				break;
			}
			off += l->chunks[k].size;
		}
	}
	pthread_rwlock_unlock(&large_lock);
}

/* A fork child's copy of the parent's records: another thread may have been
 * changing them at fork time, so they are left alone, but kept reachable. */
static struct large	**large_orphan __attribute__((used));

void
vmmc_large_forget_all(void)
{
	large_orphan = large_v;
	pthread_rwlock_init(&large_lock, NULL);
	large_v = NULL;
	large_n = large_cap = 0;
	cache_head = cache_tail = NULL;
	cache_bytes = 0;
}

int
vmmc_large_ipc(const void *p, int *dev, uint64_t *ids, size_t max, size_t *n,
    uint64_t *size)
{
	CUdeviceptr a = (CUdeviceptr)(uintptr_t)p;
	struct large *l;
	int rc = VMM_ENOTOURS;
	uint32_t k;

	pthread_rwlock_rdlock(&large_lock);
	if ((l = large_find(a, false)) != NULL) {
		rc = VMM_EINVAL;
		if (l->base == a && l->nchunks <= max) {
			for (k = 0; k < l->nchunks; k++)
				ids[k] = l->chunks[k].id;
			*n = l->nchunks;
			*size = l->size;
			*dev = l->dev;
			rc = 0;
		}
	}
	pthread_rwlock_unlock(&large_lock);
	return rc;
}
