/*
 * Medium allocations (above VMM_SMALL_MAX, up to VMM_MEDIUM_MAX): a heap
 * per device, placed at SMALL_ALIGN (512 B) in arenas of VA, backed page by
 * page.  A page is one unit of vmmd (granularity x chunk_multiple, learned
 * at the handshake); it is mapped when the first live block touches it and
 * counts the live blocks touching it, so neighbouring blocks share their
 * edge pages and a block wastes at most its rounding to 512 B, not a
 * whole chunk.
 *
 * A block is placed in a free extent of an arena of its device: of all the
 * extents that fit, the one (start or end of it) needing the fewest pages
 * not mapped yet, then the one that needs no synchronization, then the
 * lowest address.  Freed extents coalesce; an extent remembers the latest
 * free among the bytes it holds (a sync.c ticket), and is reused only once
 * a synchronization covers it (vmmc_sync_for), or, while a stream capture
 * is in progress, only if one already did (capture.c).
 *
 * A page not mapped yet gets a chunk: first one of this heap without live
 * blocks, moved from where it is (mapped at the new place, unmapped at the
 * old: VA fragmentation holds no physical memory), then chunks of cached
 * large allocations (take_handed), else one from vmmd: a chunk of one
 * unit, or, where vmmd would create one while it has larger chunks idle,
 * the smallest of those up to VMM_MEDIUM_MAX that fits over the free
 * unmapped pages around (map_run: Acquire.up_to), its other pages idle
 * pages of this heap.  A chunk of several pages is one record (struct
 * mchunk): it counts its pages with live blocks and the latest free on
 * any of them, and moves or goes back to vmmd only once no live block
 * touches any of its pages and a synchronization covers that free: the
 * memory the GPU may still touch is never unmapped.  Chunks without live
 * blocks are this allocator's cache: given back when idle (VMM_IDLE_MS),
 * on a Recall, by vmm_flush, or beyond VMM_CACHE_MAX.
 *
 * One lock, med_lock, guards everything here.  It is never held while
 * vmmd is asked (conn.c) nor around mapping, unmapping or synchronizing: a
 * page being mapped or unmapped is marked PG_BUSY, and an allocation that
 * needs it waits (med_cond) until it is mapped, or maps it itself if the
 * mapping failed or the page was given back meanwhile.
 */
#include "client_internal.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"

#define MED_ALIGN		512u	/* every block's alignment */
#define MED_ARENA_PAGES		512u	/* at least, per arena */
#define MED_MAX_ARENAS		1024
#define MED_MAX_GRANT		64
/* Whether bytes freed with ticket t may be reused, or their pages
 * unmapped, now: after a sync (vmmc_sync_for) unless a stream capture is in
 * progress, when only a sync that already happened counts. */
#define MED_IDLE_NOW(dev, t)						\
	((t) == 0 || !vmmc_capture_active() || vmmc_sync_covers((dev), (t)))

enum { PG_UNMAPPED = 0, PG_BUSY = 1, PG_MAPPED = 2 };

struct mchunk {
	struct arena	*arena;		/* where it is mapped */
	uint64_t	id;
	uint32_t	first, npages;	/* the pages of its arena it backs */
	uint32_t	nlive;		/* of them, those with live blocks */
	uint64_t	ticket;		/* latest free touching its pages */
	uint64_t	empty_ms;	/* when nlive became 0 */
	bool		trimming;
};

struct mext {
	uint64_t	off, len;
	uint64_t	ticket;		/* latest free of these bytes (0: none) */
};

struct mblk {
	uint64_t	off, len;	/* len: asked, rounded to MED_ALIGN */
	uint64_t	asked;
};

struct arena {
	CUdeviceptr	base;
	uint64_t	size, unit;
	int		dev;
	uint32_t	npages;
	uint32_t	*refs;		/* per page: live blocks touching it */
	uint8_t		*state;		/* per page: PG_* */
	struct mchunk	**pchunk;	/* per page: its chunk, if mapped */
	struct mext	*ext;		/* free extents, sorted by off */
	size_t		next, capext;
	struct mblk	*blk;		/* live blocks, sorted by off */
	size_t		nblk, capblk;
};

static pthread_mutex_t	med_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	med_cond = PTHREAD_COND_INITIALIZER;
static struct arena	*med_arenas[MED_MAX_ARENAS];
/* A fork child's view of the parent's records (vmmc_medium_forget_all). */
static struct mchunk	**med_orphan_chunks;
static struct arena	*med_orphan_arenas[MED_MAX_ARENAS];
static size_t		med_narenas;
static struct mchunk	**med_chunks;	/* every chunk mapped */
static size_t		med_nchunks, med_capchunks;
/* Counters, under med_lock (read with atomics by usage queries). */
static int64_t		med_in_use;
static uint64_t		med_allocs, med_frees, med_cached;
/* med_cached changes under med_lock, with atomics: vmmc_medium_cached()
 * reads it without the lock. */
static void
cached_add(uint64_t v)
{
	__atomic_add_fetch(&med_cached, v, __ATOMIC_RELAXED);
}

static void
cached_sub(uint64_t v)
{
	__atomic_sub_fetch(&med_cached, v, __ATOMIC_RELAXED);
}

/* Idle bytes when vmmd was last asked to hear of them (vmmc_report_soon):
 * each 16 MiB more is recallable memory other processes may need. */
static uint64_t		med_cached_told;
#define MED_TELL_BYTES	(16u << 20)

uint64_t
vmmc_medium_max(void)
{
	const struct vmmc_settings *st = vmmc_settings_get();

	return st->medium_max > vmmc_small_max() ? st->medium_max : 0;
}

static uint64_t
med_round(uint64_t v, uint64_t g)
{
	return (v + g - 1) / g * g;
}

/* ---- sorted arrays ------------------------------------------------------- */

static int
grow(void **v, size_t *cap, size_t n, size_t elt)
{
	void *nv;
	size_t c;

	if (n < *cap)
		return 0;
	c = *cap ? *cap * 2 : 16;
	if ((nv = realloc(*v, c * elt)) == NULL)
		return -1;
	*v = nv;
	*cap = c;
	return 0;
}

/* Makes room for need elements. */
static int
room(void **v, size_t *cap, size_t need, size_t elt)
{
	while (need > *cap)
		if (grow(v, cap, *cap, elt) != 0)
			return -1;
	return 0;
}

/* Index of the first of n records of elt bytes at v, sorted by their
 * leading offset (struct mblk, struct mext), whose offset is >= o. */
static size_t
off_index(const void *v, size_t n, size_t elt, uint64_t o)
{
	const unsigned char *base = v;
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		uint64_t off;

		memcpy(&off, base + mid * elt, sizeof(off));
		if (off < o)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}
_Static_assert(offsetof(struct mblk, off) == 0, "off leads a block");
_Static_assert(offsetof(struct mext, off) == 0, "off leads an extent");

/* Index of the first block with off >= o. */
static size_t
blk_index(const struct arena *a, uint64_t o)
{
	return off_index(a->blk, a->nblk, sizeof(*a->blk), o);
}

/* Index of the first free extent with off >= o. */
static size_t
ext_index(const struct arena *a, uint64_t o)
{
	return off_index(a->ext, a->next, sizeof(*a->ext), o);
}

/* Returns [off, off+len) to the free extents, coalescing; -1 out of
 * memory (nothing changed). */
static int
ext_put(struct arena *a, uint64_t off, uint64_t len, uint64_t ticket)
{
	size_t i = ext_index(a, off);
	bool left = i > 0 && a->ext[i - 1].off + a->ext[i - 1].len == off;
	bool right = i < a->next && off + len == a->ext[i].off;

	if (left && right) {
		struct mext *l = &a->ext[i - 1], *r = &a->ext[i];

		l->len += len + r->len;
		if (r->ticket > l->ticket)
			l->ticket = r->ticket;
		if (ticket > l->ticket)
			l->ticket = ticket;
		memmove(r, r + 1, (a->next - i - 1) * sizeof(*r));
		a->next--;
		return 0;
	}
	if (left || right) {
		struct mext *e = left ? &a->ext[i - 1] : &a->ext[i];

		if (right)
			e->off = off;
		e->len += len;
		if (ticket > e->ticket)
			e->ticket = ticket;
		return 0;
	}
	if (grow((void **)&a->ext, &a->capext, a->next, sizeof(*a->ext)) != 0)
		return -1;
	memmove(&a->ext[i + 1], &a->ext[i], (a->next - i) * sizeof(*a->ext));
	a->ext[i] = (struct mext){ off, len, ticket };
	a->next++;
	return 0;
}

/* Takes [off, off+len) out of extent i (which holds it); -1 out of
 * memory (nothing changed). */
static int
ext_take(struct arena *a, size_t i, uint64_t off, uint64_t len)
{
	struct mext e = a->ext[i];
	uint64_t tail = e.off + e.len - (off + len);

	if (off > e.off && tail > 0) {
		if (grow((void **)&a->ext, &a->capext, a->next,
		    sizeof(*a->ext)) != 0)
			return -1;
		memmove(&a->ext[i + 2], &a->ext[i + 1],
		    (a->next - i - 1) * sizeof(*a->ext));
		a->ext[i].len = off - e.off;
		a->ext[i + 1] = (struct mext){ off + len, tail, e.ticket };
		a->next++;
	} else if (off > e.off) {
		a->ext[i].len = off - e.off;
	} else if (tail > 0) {
		a->ext[i].off = off + len;
		a->ext[i].len = tail;
	} else {
		memmove(&a->ext[i], &a->ext[i + 1],
		    (a->next - i - 1) * sizeof(*a->ext));
		a->next--;
	}
	return 0;
}

/* ---- pages ------------------------------------------------------------------- */

static void
page_range(const struct arena *a, uint64_t off, uint64_t len, uint32_t *p0,
    uint32_t *p1)
{
	*p0 = (uint32_t)(off / a->unit);
	*p1 = (uint32_t)((off + len - 1) / a->unit);
}

/* One more live block on pages [p0, p1]. */
static void
pages_ref(struct arena *a, uint32_t p0, uint32_t p1)
{
	uint32_t p;

	for (p = p0; p <= p1; p++) {
		if (a->refs[p]++ == 0 && a->pchunk[p] != NULL) {
			a->pchunk[p]->nlive++;
			cached_sub(a->unit);
			vmmc_stat_add(VMMC_STAT_CACHED, -(int64_t)a->unit);
		}
	}
}

/* One live block less on pages [p0, p1], freed with ticket. */
static void
pages_unref(struct arena *a, uint32_t p0, uint32_t p1, uint64_t ticket)
{
	uint64_t now = vmm_now_ms();
	uint32_t p;

	for (p = p0; p <= p1; p++) {
		struct mchunk *c = a->pchunk[p];

		if (c != NULL && ticket > c->ticket)
			c->ticket = ticket;
		if (--a->refs[p] == 0 && c != NULL) {
			cached_add(a->unit);
			vmmc_stat_add(VMMC_STAT_CACHED, (int64_t)a->unit);
			if (--c->nlive == 0)
				c->empty_ms = now;
		}
	}
}

/* Pages in [p0, p1] nobody has mapped (nor is mapping). */
static uint32_t
pages_unmapped(const struct arena *a, uint32_t p0, uint32_t p1)
{
	uint32_t p, n = 0;

	for (p = p0; p <= p1; p++)
		n += a->state[p] == PG_UNMAPPED && a->refs[p] == 0;
	return n;
}

/* ---- arenas ------------------------------------------------------------------ */

static void
arena_free_records(struct arena *a)
{
	free(a->refs);
	free(a->state);
	free(a->pchunk);
	free(a->ext);
	free(a->blk);
	free(a);
}

/*
 * A new arena of dev for unit-sized pages, not yet installed; called
 * WITHOUT med_lock: reserving its address space may ask vmmd for a range of
 * the address plan (va.c, conn.c), and a reconnect's Adopt holds conn.c's
 * locks while it takes med_lock (vmmc_medium_chunks), so med_lock must
 * never be held around vmmc_va_alloc.
 */
static struct arena *
arena_new(int dev, uint64_t unit)
{
	uint64_t mm = vmmc_medium_max();
	uint32_t np = MED_ARENA_PAGES;
	struct arena *a;

	/* Room for several of the largest blocks. */
	if ((mm + unit - 1) / unit * 4 + 1 > np)
		np = (uint32_t)((mm + unit - 1) / unit * 4 + 1);
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return NULL;
	a->dev = dev;
	a->unit = unit;
	a->npages = np;
	a->size = (uint64_t)np * unit;
	a->refs = calloc(np, sizeof(*a->refs));
	a->state = calloc(np, sizeof(*a->state));
	a->pchunk = calloc(np, sizeof(*a->pchunk));
	if (a->refs == NULL || a->state == NULL || a->pchunk == NULL ||
	    ext_put(a, 0, a->size, 0) != 0 ||
	    vmmc_va_alloc(dev, a->size, unit, &a->base) != 0) {
		arena_free_records(a);
		return NULL;
	}
	return a;
}

/* Installs a (from arena_new); med_lock held.  -1 when the table is full
 * (the caller frees a without med_lock: arena_drop). */
static int
arena_install(struct arena *a)
{
	if (med_narenas == MED_MAX_ARENAS)
		return -1;
	__atomic_store_n(&med_arenas[med_narenas], a, __ATOMIC_RELEASE);
	__atomic_store_n(&med_narenas, med_narenas + 1, __ATOMIC_RELEASE);
	vmm_log_debug("MEDIUM_ARENA Ptr=0x%llx Size=%llu Dev=%d",
	    (unsigned long long)a->base, (unsigned long long)a->size, a->dev);
	return 0;
}

/* An arena never installed: its address space and records; without
 * med_lock (va.c may tell vmmd). */
static void
arena_drop(struct arena *a)
{
	vmmc_va_free(a->dev, a->base, a->size);
	arena_free_records(a);
}

/* The arena holding p; med_lock held. */
static struct arena *
arena_of(CUdeviceptr p)
{
	size_t i;

	for (i = 0; i < med_narenas; i++)
		if (p >= med_arenas[i]->base &&
		    p - med_arenas[i]->base < med_arenas[i]->size)
			return med_arenas[i];
	return NULL;
}

/* The live block starting at p (exact) or holding p; med_lock held. */
static struct mblk *
blk_find(CUdeviceptr p, bool exact, struct arena **ap)
{
	struct arena *a = arena_of(p);
	uint64_t off;
	size_t i;

	if (a == NULL)
		return NULL;
	off = p - a->base;
	i = blk_index(a, off + 1);
	if (i == 0)
		return NULL;
	if (off - a->blk[i - 1].off >= a->blk[i - 1].asked ||
	    (exact && off != a->blk[i - 1].off))
		return NULL;
	*ap = a;
	return &a->blk[i - 1];
}

/* ---- placement ------------------------------------------------------------- */

struct place {
	struct arena	*a;
	size_t		ext;
	uint64_t	off, ticket;
	uint32_t	cost;		/* pages to map */
	bool		sync;		/* a synchronization is needed */
};

static bool
place_better(const struct place *n, const struct place *best)
{
	if (best->a == NULL)
		return true;
	if (n->cost != best->cost)
		return n->cost < best->cost;
	if (n->sync != best->sync)
		return !n->sync;
	return n->a->base + n->off < best->a->base + best->off;
}

/* The best place for len bytes on dev; covered_only: only bytes whose
 * frees a synchronization already covers. */
static void
place_pick(int dev, uint64_t unit, uint64_t len, bool covered_only,
    struct place *best)
{
	size_t i, k;

	memset(best, 0, sizeof(*best));
	for (i = 0; i < med_narenas; i++) {
		struct arena *a = med_arenas[i];

		/* Arenas of another unit (an earlier vmmd's) only drain. */
		if (a->dev != dev || a->unit != unit)
			continue;
		for (k = 0; k < a->next; k++) {
			const struct mext *e = &a->ext[k];
			struct place n = { a, k, e->off, e->ticket, 0, false };
			uint32_t p0, p1;
			int side;

			if (e->len < len)
				continue;
			n.sync = e->ticket != 0 && !vmmc_sync_covers(dev, e->ticket);
			if (n.sync && (covered_only || !MED_IDLE_NOW(dev, e->ticket)))
				continue;
			/* At its start, its first page boundary, or its end
			 * (aligned down). */
			for (side = 0; side < 3; side++) {
				if (side == 1) {
					n.off = med_round(e->off, a->unit);
					if (n.off + len > e->off + e->len)
						continue;
				}
				if (side == 2)
					n.off = (e->off + e->len - len) /
					    MED_ALIGN * MED_ALIGN;
				page_range(a, n.off, len, &p0, &p1);
				n.cost = pages_unmapped(a, p0, p1);
				if (place_better(&n, best))
					*best = n;
			}
			if (best->cost == 0 && !best->sync)
				return;
		}
	}
}

/* ---- mapping --------------------------------------------------------------- */

/* Gives a grant back unused. */
static void
grant_giveback(struct vmmc_conn *c, struct vmmc_grant_chunk *g, size_t n)
{
	uint64_t ids[MED_MAX_GRANT];
	size_t i;

	for (i = 0; i < n; i++) {
		ids[i] = g[i].id;
		if (g[i].fd >= 0)
			close(g[i].fd);
	}
	if (n > 0)
		vmmc_conn_release(c, ids, n, 0);
}

/* The most pages one chunk from vmmd may span in the heap: the largest
 * block it serves (VMM_MEDIUM_MAX), so that a chunk is never larger than
 * what one block could use of it; at least one page. */
static uint32_t
med_span(uint64_t unit)
{
	uint64_t n = vmmc_medium_max() / unit;

	return n < 1 ? 1 : n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/*
 * Maps pages [p, q] of a (PG_BUSY, the caller's) from new grants, with
 * chunks mapped back to back from p on: up to MED_MAX_GRANT of them,
 * so the run may end before q (*end: the first page after what was
 * mapped).  [lo, hi] (lo <= p, q <= hi) are pages the caller also marked
 * PG_BUSY that no live block touches: a chunk may cover some of them.
 * Each chunk is asked as one page, or as an idle chunk of vmmd of up to
 * med_span pages that fits in [lo, hi] (Acquire.up_to) when vmmd has no
 * one-page chunk idle and would otherwise create one: idle memory rather
 * than new, its extra pages this heap's idle pages (its cache), for the
 * next blocks.  The first chunk covers p (shifted left into [lo, p) only
 * if it does not fit before hi); the others follow it.  Every chunk thus
 * covers a page of [p, q], which the caller's block keeps live: none can
 * be moved or given back before that block is freed.  no_create: only
 * chunks vmmd has idle (Acquire.no_create); where it would create the
 * first, VMMC_EWOULD_CREATE, and the run ends at a later one.  Records
 * the chunks.  med_lock not held on entry nor exit.
 */
static int
map_run(struct arena *a, struct vmmc_conn *c, uint32_t p, uint32_t q,
    uint32_t lo, uint32_t hi, bool no_create, uint32_t *end)
{
	struct vmmc_grant_chunk g[MED_MAX_GRANT];
	struct mchunk *mc[MED_MAX_GRANT];
	uint32_t span = med_span(a->unit), s = p, next = p, pg;
	uint64_t bytes;
	CUdeviceptr va;
	int n = 0, i, m, rc;

	while (next <= q && n < MED_MAX_GRANT) {
		uint32_t room = n == 0 ? hi - lo + 1 : hi - next + 1;
		uint32_t most = room < span ? room : span;
		uint64_t k;

		m = vmmc_conn_acquire_within(c, a->unit,
		    (uint64_t)most * a->unit, no_create, &g[n]);
		if (m == VMMC_EWOULD_CREATE && n > 0)
			break;		/* what vmmd had idle is mapped */
		if (m != 1) {
			grant_giveback(c, g, (size_t)n);
			return m < 0 ? m : VMM_EPROTO;
		}
		k = g[n].size / a->unit;
		if (g[n].size % a->unit != 0 || k == 0 || k > most) {
			/* Not a size asked for (the unit changed with a new
			 * vmmd). */
			grant_giveback(c, g, (size_t)n + 1);
			return VMM_EPROTO;
		}
		if (n == 0) {
			s = p + k - 1 <= hi ? p : hi - (uint32_t)k + 1;
			next = s + (uint32_t)k;
		} else {
			next += (uint32_t)k;
		}
		n++;
	}
	bytes = (uint64_t)(next - s) * a->unit;
	va = a->base + (uint64_t)s * a->unit;
	for (i = 0; i < n; i++)
		if ((mc[i] = calloc(1, sizeof(*mc[i]))) == NULL)
			break;
	if (i < n) {
		while (i-- > 0)
			free(mc[i]);
		grant_giveback(c, g, (size_t)n);
		return VMM_ENOMEM;
	}
	if ((rc = vmmc_map_chunks(a->dev, va, g, (size_t)n)) != 0) {
		for (i = 0; i < n; i++)
			free(mc[i]);
		grant_giveback(c, g, (size_t)n);	/* fds closed already */
		return rc;
	}
	pthread_mutex_lock(&med_lock);
	if (room((void **)&med_chunks, &med_capchunks, med_nchunks + (size_t)n,
	    sizeof(*med_chunks)) != 0) {
		pthread_mutex_unlock(&med_lock);
		vmmc_unmap_range(va, bytes);
		for (i = 0; i < n; i++)
			free(mc[i]);
		grant_giveback(c, g, (size_t)n);
		return VMM_ENOMEM;
	}
	for (i = 0, pg = s; i < n; i++) {
		uint32_t k;

		mc[i]->id = g[i].id;
		mc[i]->first = pg;
		mc[i]->npages = (uint32_t)(g[i].size / a->unit);
		for (k = 0; k < mc[i]->npages; k++, pg++) {
			a->pchunk[pg] = mc[i];
			a->state[pg] = PG_MAPPED;
			if (a->refs[pg] > 0) {
				mc[i]->nlive++;
			} else {
				cached_add(a->unit);
				vmmc_stat_add(VMMC_STAT_CACHED, (int64_t)a->unit);
			}
		}
		if (mc[i]->nlive == 0)
			mc[i]->empty_ms = vmm_now_ms();
		mc[i]->arena = a;
		med_chunks[med_nchunks++] = mc[i];
	}
	pthread_mutex_unlock(&med_lock);
	vmmc_stat_add(VMMC_STAT_MAPPED, (int64_t)bytes);
	vmm_log_debug("MEDIUM_MAP Ptr=0x%llx Size=%llu Chunks=%d",
	    (unsigned long long)va, (unsigned long long)bytes, n);
	*end = next;
	return 0;
}

/* Maps chunk c (of arena o, pages PG_BUSY) at page p of arena a as well
 * and unmaps it where it was: the same memory at a new place. */
static int
chunk_move(struct arena *o, struct mchunk *c, struct arena *a, uint32_t p)
{
	CUmemGenericAllocationHandle h;
	uint64_t size = (uint64_t)c->npages * a->unit;
	CUdeviceptr src = o->base + (uint64_t)c->first * o->unit;
	CUdeviceptr dst = a->base + (uint64_t)p * a->unit;
	CUresult r;

	/* The handle kept for its mapping at src moves along. */
	if (vmmc_handle_take(src, &h) != CUDA_SUCCESS)
		return -1;
	r = cuMemMap(dst, size, 0, h, 0);
	vmmc_handle_keep(r == CUDA_SUCCESS ? dst : src, size, h);
	if (r != CUDA_SUCCESS)
		return -1;
	if (vmmc_set_access_rw(a->dev, dst, size) != 0) {
		vmmc_unmap_range(dst, size);
		return -1;
	}
	vmmc_unmap_range(src, size);
	vmm_log_debug("MEDIUM_MOVE Ptr=0x%llx Size=%llu Src=0x%llx",
	    (unsigned long long)dst, (unsigned long long)size,
	    (unsigned long long)src);
	return 0;
}

/* Fills pages [p0, p1] of a (PG_BUSY, the caller's), from the first on,
 * with chunks of this heap that hold no live block (its cache), moved
 * from where they are: memory this process has already, no new grant.  A
 * chunk moves only once a synchronization covers the last free on it, as
 * for giving it back.  Returns the first page not filled.  med_lock held
 * on entry and exit, dropped meanwhile. */
static uint32_t
relocate_run(struct arena *a, uint32_t p0, uint32_t p1)
{
	struct mchunk *pick[MED_MAX_GRANT];
	struct arena *from[MED_MAX_GRANT];
	uint32_t need = p1 - p0 + 1, got = 0, p, k;
	uint64_t ticket = 0;
	size_t n = 0, i, j, moved = 0;
	bool ok;

	for (j = 0; j < med_nchunks && got < need && n < MED_MAX_GRANT; j++) {
		struct mchunk *c = med_chunks[j];
		struct arena *o = c->arena;

		if (o->dev != a->dev || o->unit != a->unit || c->nlive != 0 ||
		    c->trimming || c->npages > need - got ||
		    !MED_IDLE_NOW(o->dev, c->ticket))
			continue;
		c->trimming = true;
		memset(&o->state[c->first], PG_BUSY, c->npages);
		if (c->ticket > ticket)
			ticket = c->ticket;
		pick[n] = c;
		from[n++] = o;
		got += c->npages;
	}
	if (n == 0)
		return p0;
	pthread_mutex_unlock(&med_lock);
	ok = vmmc_sync_for(a->dev, ticket) == 0;
	for (p = p0; ok && moved < n; moved++) {
		if (chunk_move(from[moved], pick[moved], a, p) != 0)
			break;
		p += pick[moved]->npages;
	}
	pthread_mutex_lock(&med_lock);
	for (i = 0, p = p0; i < n; i++) {
		struct mchunk *c = pick[i];
		struct arena *o = from[i];

		c->trimming = false;
		if (i >= moved) {	/* not moved: where it was */
			memset(&o->state[c->first], PG_MAPPED, c->npages);
			continue;
		}
		for (k = c->first; k < c->first + c->npages; k++) {
			o->pchunk[k] = NULL;
			o->state[k] = PG_UNMAPPED;
			if (o->refs[k] == 0) {
				cached_sub(o->unit);
				vmmc_stat_add(VMMC_STAT_CACHED, -(int64_t)o->unit);
			}
		}
		c->arena = a;
		c->first = p;
		c->ticket = 0;		/* the sync above covered it */
		c->nlive = 0;
		for (k = 0; k < c->npages; k++, p++) {
			a->pchunk[p] = c;
			a->state[p] = PG_MAPPED;
			if (a->refs[p] > 0) {
				c->nlive++;
			} else {
				cached_add(a->unit);
				vmmc_stat_add(VMMC_STAT_CACHED, (int64_t)a->unit);
			}
		}
		if (c->nlive == 0)
			c->empty_ms = vmm_now_ms();
	}
	pthread_cond_broadcast(&med_cond);
	return p;
}

static size_t	(*med_on_acquire_fn)(int dev, uint64_t need,
		    uint64_t most, struct vmmc_handed_chunk *out, size_t max);

void
vmmc_medium_on_acquire(size_t (*fn)(int dev, uint64_t need, uint64_t most,
    struct vmmc_handed_chunk *out, size_t max))
{
	__atomic_store_n(&med_on_acquire_fn, fn, __ATOMIC_RELEASE);
}

/* Gives handed chunks back to vmmd unused. */
static void
handed_giveback(int dev, struct vmmc_handed_chunk *h, size_t n)
{
	struct vmmc_conn *conn = vmmc_conn_get(dev);
	size_t i;

	for (i = 0; i < n; i++) {
		cuMemRelease(h[i].h);
		if (conn != NULL && h[i].id != 0)
			vmmc_conn_release(conn, &h[i].id, 1, 0);
	}
}

/*
 * Fills pages [p0, p1] of a (PG_BUSY, the caller's), from the first on,
 * with chunks the process holds idle elsewhere (the hook: cached large
 * allocations), synchronized and unmapped there before they are handed:
 * memory this process has already, no new grant.  [w, hi] (w <= p0, p1 <=
 * hi) are the pages a chunk may cover: the run, or (wide: hi > p1 or w <
 * p0) free pages around it the caller marked PG_BUSY too, no live block
 * on them, which become this heap's idle pages (its cache).  Narrow
 * (w == p0, hi == p1), done before vmmd is asked: chunks of at most the
 * run's size each.  Wide, done only once vmmd said it would have to create
 * (Acquire.no_create): one chunk of at most hi - w + 1 pages, as map_run
 * places vmmd's larger idle chunks (Acquire.up_to).  (Handing such chunks
 * before vmmd was asked raised medium_ctx1024_infer's peak: they took the
 * place of idle chunks vmmd had.)  The first chunk covers p0 (shifted left
 * into [w, p0) only if it does not fit before hi); each other follows the
 * last while that one ends before p1: every chunk covers a page of [p0,
 * p1], which the caller's block keeps live, so none can move or go back
 * before that block is freed.  The rest go back to vmmd (idle there, for
 * any grant).  Returns the first page after the chunks mapped (beyond p1
 * if the run is filled), or p0 if none was.  med_lock held on entry and
 * exit, dropped meanwhile.
 */
static uint32_t
take_handed(struct arena *a, uint32_t p0, uint32_t p1, uint32_t w,
    uint32_t hi)
{
	size_t (*fn)(int, uint64_t, uint64_t, struct vmmc_handed_chunk *,
	    size_t) = __atomic_load_n(&med_on_acquire_fn, __ATOMIC_ACQUIRE);
	struct vmmc_handed_chunk h[MED_MAX_GRANT];
	struct mchunk *mc[MED_MAX_GRANT];
	uint32_t at[MED_MAX_GRANT], p = p0, k;
	size_t n, i, placed, mapped;

	if (fn == NULL)
		return p0;
	pthread_mutex_unlock(&med_lock);
	n = fn(a->dev, (uint64_t)(p1 - p0 + 1) * a->unit,
	    (uint64_t)(hi - w + 1) * a->unit, h, MED_MAX_GRANT);
	pthread_mutex_lock(&med_lock);
	if (n == 0)
		return p0;
	/* Where each goes: the first over p0 (or ending at hi), the others
	 * one after the other, while they fit in [w, hi] and start in the
	 * run. */
	for (placed = 0; placed < n; placed++) {
		uint32_t m = (uint32_t)(h[placed].size / a->unit);

		if (m == 0 || h[placed].size % a->unit != 0 ||
		    m > hi - w + 1 || p > p1)
			break;
		if (placed == 0 && (uint64_t)p + m > (uint64_t)hi + 1)
			p = hi - m + 1;		/* >= w: m <= hi - w + 1 */
		else if ((uint64_t)p + m > (uint64_t)hi + 1)
			break;
		if ((mc[placed] = calloc(1, sizeof(*mc[placed]))) == NULL)
			break;
		at[placed] = p;
		p += m;
	}
	pthread_mutex_unlock(&med_lock);
	for (mapped = 0; mapped < placed; mapped++) {
		CUdeviceptr va = a->base + (uint64_t)at[mapped] * a->unit;
		CUresult r = cuMemMap(va, h[mapped].size, 0, h[mapped].h, 0);

		if (r != CUDA_SUCCESS)
			break;
		if (vmmc_set_access_rw(a->dev, va, h[mapped].size) != 0) {
			vmmc_unmap_range(va, h[mapped].size);
			break;
		}
		/* Kept with the mapping, released after its unmap. */
		vmmc_handle_keep(va, h[mapped].size, h[mapped].h);
		vmmc_stat_add(VMMC_STAT_MAPPED, (int64_t)h[mapped].size);
		vmm_log_debug("MEDIUM_TAKE Ptr=0x%llx Size=%llu",
		    (unsigned long long)va, (unsigned long long)h[mapped].size);
	}
	handed_giveback(a->dev, h + mapped, n - mapped);
	pthread_mutex_lock(&med_lock);
	if (room((void **)&med_chunks, &med_capchunks, med_nchunks + mapped,
	    sizeof(*med_chunks)) != 0) {
		/* No room for the records: unmapped, back to vmmd. */
		pthread_mutex_unlock(&med_lock);
		for (i = 0; i < mapped; i++) {
			struct vmmc_conn *conn = vmmc_conn_get(a->dev);

			vmmc_unmap_range(a->base + (uint64_t)at[i] * a->unit,
			    h[i].size);
			vmmc_stat_add(VMMC_STAT_MAPPED, -(int64_t)h[i].size);
			if (conn != NULL)
				vmmc_conn_release(conn, &h[i].id, 1, 0);
		}
		pthread_mutex_lock(&med_lock);
		mapped = 0;
	}
	for (i = 0; i < placed; i++) {
		uint32_t m = (uint32_t)(h[i].size / a->unit);

		if (i >= mapped) {	/* not mapped: the caller's to fill */
			free(mc[i]);
			continue;
		}
		mc[i]->id = h[i].id;
		mc[i]->first = at[i];
		mc[i]->npages = m;
		mc[i]->arena = a;
		for (k = at[i]; k < at[i] + m; k++) {
			a->pchunk[k] = mc[i];
			a->state[k] = PG_MAPPED;
			if (a->refs[k] > 0) {
				mc[i]->nlive++;
			} else {
				cached_add(a->unit);
				vmmc_stat_add(VMMC_STAT_CACHED, (int64_t)a->unit);
			}
		}
		if (mc[i]->nlive == 0)
			mc[i]->empty_ms = vmm_now_ms();
		med_chunks[med_nchunks++] = mc[i];
	}
	pthread_cond_broadcast(&med_cond);
	return mapped > 0 ? at[mapped - 1] +
	    (uint32_t)(h[mapped - 1].size / a->unit) : p0;
}

/* Marks PG_BUSY, for map_run, the pages around [p, q] (if p <= q) that a
 * chunk covering one of them could also cover: within med_span of the
 * run, not mapped nor being mapped, no live block on them; [*lo, *hi]
 * then spans them and the run.  med_lock held. */
static void
widen(struct arena *a, uint32_t p, uint32_t q, uint32_t *lo, uint32_t *hi)
{
	uint32_t span = med_span(a->unit);

	*lo = p;
	*hi = q;
	if (p > q)
		return;
	while (*lo > 0 && p - (*lo - 1) < span &&
	    a->state[*lo - 1] == PG_UNMAPPED && a->refs[*lo - 1] == 0)
		a->state[--*lo] = PG_BUSY;
	while (*hi + 1 < a->npages && *hi + 1 - q < span &&
	    a->state[*hi + 1] == PG_UNMAPPED && a->refs[*hi + 1] == 0)
		a->state[++*hi] = PG_BUSY;
}

/* Undoes widen for the pages of [lo, hi] outside the run [p, q] that no
 * chunk was mapped on (still PG_BUSY: ours).  med_lock held. */
static void
unwiden(struct arena *a, uint32_t lo, uint32_t hi, uint32_t p, uint32_t q)
{
	uint32_t k;

	for (k = lo; k <= hi; k++)
		if ((k < p || k > q) && a->state[k] == PG_BUSY)
			a->state[k] = PG_UNMAPPED;
}

/* map_run until pages [*p, q] are mapped or it fails, from page *w on
 * (both advance past what is mapped).  med_lock held on entry and exit,
 * dropped meanwhile. */
static int
map_runs(struct arena *a, struct vmmc_conn *c, uint32_t *p, uint32_t q,
    uint32_t *w, uint32_t hi, bool no_create)
{
	int rc = 0;

	while (*p <= q && rc == 0) {
		uint32_t e;

		pthread_mutex_unlock(&med_lock);
		rc = map_run(a, c, *p, q, *w, hi, no_create, &e);
		pthread_mutex_lock(&med_lock);
		if (rc == 0)
			*w = *p = e;
	}
	return rc;
}

/* Makes sure pages [p0, p1] (referenced by the caller) are mapped: maps
 * those nobody maps, waits for those being mapped or unmapped by others.
 * med_lock held on entry and exit. */
static int
pages_ensure(struct arena *a, struct vmmc_conn *c, uint32_t p0, uint32_t p1)
{
	for (;;) {
		uint32_t p, q, lo, hi, w;
		bool busy = false;
		int rc;

		for (p = p0; p <= p1; p++) {
			if (a->state[p] == PG_BUSY)
				busy = true;
			if (a->state[p] != PG_UNMAPPED)
				continue;
			/* A run of pages nobody maps: ours to map. */
			for (q = p; q < p1 && a->state[q + 1] == PG_UNMAPPED; q++)
				;
			memset(&a->state[p], PG_BUSY, q - p + 1);
			/* This process's idle chunks first, vmmd for the rest. */
			p = relocate_run(a, p, q);
			/* Then what the process holds idle elsewhere. */
			if (p <= q)
				p = take_handed(a, p, q, p, q);
			/* Then vmmd, which may lend an idle chunk larger than
			 * a page over free pages around the run (map_run). */
			widen(a, p, q, &lo, &hi);
			w = lo;
			rc = 0;
			/* While the process caches memory elsewhere: vmmd's
			 * idle chunks only, then, where it would create, a
			 * larger chunk of that cache over the run and pages
			 * around it, and new memory last. */
			if (p <= q && vmmc_stat_get(VMMC_STAT_CACHED) >
			    (int64_t)__atomic_load_n(&med_cached,
			    __ATOMIC_RELAXED)) {
				rc = map_runs(a, c, &p, q, &w, hi, true);
				if (rc == VMMC_EWOULD_CREATE) {
					uint32_t e = take_handed(a, p, q, w, hi);

					if (e != p)
						w = p = e;
					rc = 0;
				}
			}
			if (rc == 0)
				rc = map_runs(a, c, &p, q, &w, hi, false);
			unwiden(a, lo, hi, p, q);
			if (rc != 0) {
				memset(&a->state[p], PG_UNMAPPED, q - p + 1);
				pthread_cond_broadcast(&med_cond);
				return rc;
			}
			pthread_cond_broadcast(&med_cond);
			busy = true;	/* look again: the lock was dropped */
			break;
		}
		if (!busy)
			return 0;
		for (p = p0; p <= p1 && a->state[p] != PG_BUSY; p++)
			;
		if (p <= p1)
			pthread_cond_wait(&med_cond, &med_lock);
	}
}

/* ---- alloc and free ------------------------------------------------------ */

/* Takes a block back out (a failed allocation); med_lock held. */
static void
blk_undo(struct arena *a, uint64_t off, uint64_t len, uint64_t ticket)
{
	size_t i = blk_index(a, off);
	uint32_t p0, p1;

	if (i < a->nblk && a->blk[i].off == off) {
		memmove(&a->blk[i], &a->blk[i + 1],
		    (a->nblk - i - 1) * sizeof(*a->blk));
		a->nblk--;
	}
	page_range(a, off, len, &p0, &p1);
	pages_unref(a, p0, p1, 0);
	/* The extent's own ticket is kept: those bytes are as busy as before.
	 * Out of memory for the record: the bytes are lost to the heap, never
	 * lent twice. */
	(void)ext_put(a, off, len, ticket);
}

int
vmmc_medium_alloc(int dev, size_t size, void **out)
{
	struct vmmc_conn *c;
	struct place pl;
	struct arena *a;
	uint64_t unit, len, mm = vmmc_medium_max();
	uint32_t p0, p1;
	bool covered_only = false;
	size_t i;
	int rc;

	if (mm == 0 || size > mm || size == 0)
		return VMM_ENOTOURS;
	if ((c = vmmc_conn_get(dev)) == NULL)
		return VMM_ENODAEMON;
	if ((unit = vmmc_conn_granularity(c)) == 0) {
		if ((rc = vmmc_conn_ensure(c)) != 0)
			return rc;
		unit = vmmc_conn_granularity(c);
	}
	if (unit == 0)
		return VMM_ENOTOURS;
	len = med_round(size, MED_ALIGN);
	pthread_mutex_lock(&med_lock);
again:
	place_pick(dev, unit, len, covered_only, &pl);
	/* A new arena only if the block fits in none: made without med_lock
	 * (arena_new says why), then the place is picked again, since another
	 * thread may have freed or added room meanwhile. */
	if (pl.a == NULL) {
		struct arena *na;

		if (med_narenas == MED_MAX_ARENAS) {
			pthread_mutex_unlock(&med_lock);
			return VMM_ENOTOURS;
		}
		pthread_mutex_unlock(&med_lock);
		na = arena_new(dev, unit);
		pthread_mutex_lock(&med_lock);
		if (na == NULL || arena_install(na) != 0) {
			pthread_mutex_unlock(&med_lock);
			if (na != NULL)
				arena_drop(na);
			return VMM_ENOTOURS;
		}
		goto again;
	}
	a = pl.a;
	i = blk_index(a, pl.off);
	if (grow((void **)&a->blk, &a->capblk, a->nblk, sizeof(*a->blk)) != 0 ||
	    ext_take(a, pl.ext, pl.off, len) != 0) {
		pthread_mutex_unlock(&med_lock);
		return VMM_ENOMEM;
	}
	memmove(&a->blk[i + 1], &a->blk[i], (a->nblk - i) * sizeof(*a->blk));
	a->blk[i] = (struct mblk){ pl.off, len, size };
	a->nblk++;
	page_range(a, pl.off, len, &p0, &p1);
	pages_ref(a, p0, p1);
	if (pl.sync) {
		/* Bytes freed since the last synchronization: not before the
		 * work issued ahead of their free is done. */
		pthread_mutex_unlock(&med_lock);
		rc = vmmc_sync_for(dev, pl.ticket);
		pthread_mutex_lock(&med_lock);
		if (rc != 0) {
			blk_undo(a, pl.off, len, pl.ticket);
			covered_only = true;
			goto again;
		}
	}
	if ((rc = pages_ensure(a, c, p0, p1)) != 0) {
		blk_undo(a, pl.off, len, pl.ticket);
		pthread_mutex_unlock(&med_lock);
		return rc;
	}
	med_in_use += (int64_t)len;
	med_allocs++;
	pthread_mutex_unlock(&med_lock);
	*out = (void *)(uintptr_t)(a->base + pl.off);
	if (vmm_log_enabled(VMM_LOG_INFO))
		vmm_log(VMM_LOG_INFO, "ALLOC Ptr=0x%llx Size=%zu PA=0 Chunks=0",
		    (unsigned long long)(a->base + pl.off), size);
	return 0;
}

static int
medium_free(void *ptr, bool idle)
{
	CUdeviceptr p = (CUdeviceptr)(uintptr_t)ptr;
	struct arena *a;
	struct mblk *b, k;
	uint64_t ticket, over, budget;
	int64_t cached_all;
	uint32_t p0, p1;
	bool tell;

	pthread_mutex_lock(&med_lock);
	if ((b = blk_find(p, true, &a)) == NULL) {
		pthread_mutex_unlock(&med_lock);
		return VMM_ENOTOURS;
	}
	k = *b;
	/* No GPU work issued before now may run on these bytes when they
	 * are reused or their pages unmapped (idle: none can any more). */
	ticket = idle ? 0 : vmmc_sync_ticket(a->dev);
	memmove(b, b + 1, (size_t)(&a->blk[a->nblk] - (b + 1)) * sizeof(*b));
	a->nblk--;
	page_range(a, k.off, k.len, &p0, &p1);
	pages_unref(a, p0, p1, ticket);
	/* Out of memory for the record: the bytes are lost to the heap. */
	(void)ext_put(a, k.off, k.len, ticket);
	med_in_use -= (int64_t)k.len;
	med_frees++;
	/* VMM_CACHE_MAX is one budget for the process: the heap's idle pages
	 * and cached large allocations together (VMMC_STAT_CACHED). */
	cached_all = vmmc_stat_get(VMMC_STAT_CACHED);
	budget = vmmc_cache_budget();
	over = cached_all > 0 && (uint64_t)cached_all > budget ?
	    (uint64_t)cached_all - budget : 0;
	if (over > med_cached)
		over = med_cached;
	if (med_cached < med_cached_told)
		med_cached_told = med_cached;
	tell = med_cached >= med_cached_told + MED_TELL_BYTES;
	if (tell)
		med_cached_told = med_cached;
	pthread_mutex_unlock(&med_lock);
	if (vmm_log_enabled(VMM_LOG_INFO))
		vmm_log(VMM_LOG_INFO, "FREE Ptr=0x%llx Size=%llu",
		    (unsigned long long)p, (unsigned long long)k.asked);
	if (over > 0)
		vmmc_medium_trim(over, 0, 0);
	else if (tell)
		vmmc_report_soon();	/* recallable for other processes */
	return 0;
}

int
vmmc_medium_free(void *p)
{
	return medium_free(p, false);
}

int
vmmc_medium_free_idle(void *p)
{
	return medium_free(p, true);
}

/* Grows or shrinks the block at *pp in place: shrinking returns its tail,
 * growing takes the free bytes right after it (once a synchronization
 * covers their last free).  VMM_ENOTOURS if *pp is not a medium block's
 * base, size is not served here, or the bytes after it are not free (the
 * caller moves it by copy). */
int
vmmc_medium_realloc(void **pp, size_t size)
{
	CUdeviceptr p = (CUdeviceptr)(uintptr_t)*pp;
	struct vmmc_conn *c;
	struct arena *a;
	struct mblk *b;
	uint64_t off, len, nlen, ticket = 0, t;
	uint32_t q0, q1, n0, n1;
	size_t i;
	bool sync;
	int rc;

	if (size == 0 || size > vmmc_medium_max() ||
	    __atomic_load_n(&med_narenas, __ATOMIC_ACQUIRE) == 0)
		return VMM_ENOTOURS;
	nlen = med_round(size, MED_ALIGN);
	pthread_mutex_lock(&med_lock);
	if ((b = blk_find(p, true, &a)) == NULL ||
	    (c = vmmc_conn_get(a->dev)) == NULL) {
		pthread_mutex_unlock(&med_lock);
		return VMM_ENOTOURS;
	}
	off = b->off;
	len = b->len;
	page_range(a, off, len, &q0, &q1);
	page_range(a, off, nlen, &n0, &n1);
	if (nlen <= len) {
		/* The tail may still be used by work issued before now. */
		if (nlen < len) {
			t = vmmc_sync_ticket(a->dev);
			if (n1 < q1)
				pages_unref(a, n1 + 1, q1, t);
			(void)ext_put(a, off + nlen, len - nlen, t);
		}
		goto done;
	}
	i = ext_index(a, off + len);
	if (i == a->next || a->ext[i].off != off + len ||
	    a->ext[i].len < nlen - len ||
	    !MED_IDLE_NOW(a->dev, a->ext[i].ticket)) {
		pthread_mutex_unlock(&med_lock);
		return VMM_ENOTOURS;
	}
	ticket = a->ext[i].ticket;
	sync = ticket != 0 && !vmmc_sync_covers(a->dev, ticket);
	if (ext_take(a, i, off + len, nlen - len) != 0) {
		pthread_mutex_unlock(&med_lock);
		return VMM_ENOMEM;
	}
	if (n1 > q1)
		pages_ref(a, q1 + 1, n1);
	b->len = nlen;		/* nothing else changes its record meanwhile */
	if (sync) {
		pthread_mutex_unlock(&med_lock);
		rc = vmmc_sync_for(a->dev, ticket);
		pthread_mutex_lock(&med_lock);
		if (rc != 0)
			goto undo;
	}
	if (n1 > q1 && (rc = pages_ensure(a, c, q1 + 1, n1)) != 0)
		goto undo;
	if ((b = blk_find(p, true, &a)) == NULL) {
		/* Freed meanwhile by another thread: the caller's bug. */
		pthread_mutex_unlock(&med_lock);
		return VMM_EINVAL;
	}
done:
	med_in_use += (int64_t)nlen - (int64_t)len;
	b->len = nlen;
	b->asked = size;
	pthread_mutex_unlock(&med_lock);
	if (vmm_log_enabled(VMM_LOG_INFO))
		vmm_log(VMM_LOG_INFO, "REMAP Ptr=0x%llx Size=%zu Src=0x%llx",
		    (unsigned long long)p, size, (unsigned long long)p);
	return 0;

undo:
	if ((b = blk_find(p, true, &a)) != NULL)
		b->len = len;
	if (n1 > q1)
		pages_unref(a, q1 + 1, n1, 0);
	(void)ext_put(a, off + len, nlen - len, ticket);
	pthread_mutex_unlock(&med_lock);
	return VMM_ENOTOURS;
}

bool
vmmc_medium_owns(const void *p)
{
	struct arena *a;
	bool r;

	if (__atomic_load_n(&med_narenas, __ATOMIC_ACQUIRE) == 0)
		return false;
	pthread_mutex_lock(&med_lock);
	r = blk_find((CUdeviceptr)(uintptr_t)p, true, &a) != NULL;
	pthread_mutex_unlock(&med_lock);
	return r;
}

int
vmmc_medium_range(const void *p, void **base, size_t *size)
{
	struct arena *a;
	struct mblk *b;
	int rc = VMM_ENOTOURS;

	if (__atomic_load_n(&med_narenas, __ATOMIC_ACQUIRE) == 0)
		return rc;
	pthread_mutex_lock(&med_lock);
	if ((b = blk_find((CUdeviceptr)(uintptr_t)p, false, &a)) != NULL) {
		*base = (void *)(uintptr_t)(a->base + b->off);
		*size = b->asked;
		rc = 0;
	}
	pthread_mutex_unlock(&med_lock);
	return rc;
}

/* ---- giving back ------------------------------------------------------------- */

static uint64_t	medium_trim(int dev, uint64_t target, uint64_t most,
		    uint64_t older_ms, uint64_t recall_id);

/* The chunk without live blocks idle longest (at least older_ms), of
 * device dev (-1: any), no larger than most bytes (0: any), that may be
 * unmapped now; med_lock held. */
static struct mchunk *
trim_pick(int dev, uint64_t most, uint64_t now, uint64_t older_ms,
    struct arena **ap)
{
	struct mchunk *best = NULL;
	size_t k;

	for (k = 0; k < med_nchunks; k++) {
		struct mchunk *c = med_chunks[k];

		if (c->nlive != 0 || c->trimming ||
		    (dev >= 0 && c->arena->dev != dev) ||
		    now - c->empty_ms < older_ms ||
		    (most != 0 && (uint64_t)c->npages * c->arena->unit > most) ||
		    !MED_IDLE_NOW(c->arena->dev, c->ticket))
			continue;
		if (best == NULL || c->empty_ms < best->empty_ms) {
			best = c;
			*ap = c->arena;
		}
	}
	return best;
}

/* Chunks given back, sent in as few Releases as can carry them: vmmd
 * takes a Release answering a Recall as that answer, so a recall's chunks
 * go together. */
struct med_rel {
	int		dev;
	size_t		n;
	uint64_t	ids[VMM_PROTO_MAX_RELEASE_IDS];
};

static void
rel_flush(struct med_rel *r, uint64_t recall_id)
{
	struct vmmc_conn *conn;

	if (r->n > 0 && (conn = vmmc_conn_get(r->dev)) != NULL)
		vmmc_conn_release(conn, r->ids, r->n, recall_id);
	r->n = 0;
}

static void
rel_add(struct med_rel *r, int dev, uint64_t id, uint64_t recall_id)
{
	if (id == 0)
		return;		/* not vmmd's (refused at adopt) */
	if (r->n > 0 && (r->dev != dev || r->n == sizeof(r->ids) /
	    sizeof(r->ids[0])))
		rel_flush(r, recall_id);
	r->dev = dev;
	r->ids[r->n++] = id;
}

uint64_t
vmmc_medium_trim(uint64_t target, uint64_t older_ms, uint64_t recall_id)
{
	return medium_trim(-1, target, 0, older_ms, recall_id);
}

uint64_t
vmmc_medium_trim_dev(int dev, uint64_t target)
{
	return medium_trim(dev, target, 0, 0, 0);
}

uint64_t
vmmc_medium_trim_upto(int dev, uint64_t target, uint64_t most)
{
	return medium_trim(dev, target, most, 0, 0);
}

uint64_t
vmmc_medium_cached(void)
{
	return __atomic_load_n(&med_cached, __ATOMIC_RELAXED);
}

/* most: only chunks of at most that many bytes (0: any size). */
static uint64_t
medium_trim(int dev, uint64_t target, uint64_t most, uint64_t older_ms,
    uint64_t recall_id)
{
	uint64_t done = 0, now = vmm_now_ms();
	static __thread struct med_rel rel;	/* 8 KiB: not on the stack */

	for (;;) {
		struct mchunk *c;
		struct arena *a = NULL;
		CUdeviceptr va;
		uint64_t bytes;
		uint32_t p;
		size_t k;

		if (target != 0 && done >= target)
			break;
		pthread_mutex_lock(&med_lock);
		if ((c = trim_pick(dev, most, now, older_ms, &a)) == NULL) {
			pthread_mutex_unlock(&med_lock);
			break;
		}
		c->trimming = true;
		memset(&a->state[c->first], PG_BUSY, c->npages);
		pthread_mutex_unlock(&med_lock);
		va = a->base + (uint64_t)c->first * a->unit;
		bytes = (uint64_t)c->npages * a->unit;
		/* Not before the work issued ahead of the last free on these
		 * pages is done: a failed sync leaves the chunk mapped. */
		if (vmmc_sync_for(a->dev, c->ticket) != 0) {
			pthread_mutex_lock(&med_lock);
			c->trimming = false;
			memset(&a->state[c->first], PG_MAPPED, c->npages);
			pthread_cond_broadcast(&med_cond);
			pthread_mutex_unlock(&med_lock);
			break;
		}
		vmmc_unmap_range(va, bytes);
		pthread_mutex_lock(&med_lock);
		for (p = c->first; p < c->first + c->npages; p++) {
			a->pchunk[p] = NULL;
			a->state[p] = PG_UNMAPPED;
			if (a->refs[p] == 0) {
				cached_sub(a->unit);
				vmmc_stat_add(VMMC_STAT_CACHED,
				    -(int64_t)a->unit);
			}
		}
		for (k = 0; k < med_nchunks && med_chunks[k] != c; k++)
			;
		if (k < med_nchunks)
			med_chunks[k] = med_chunks[--med_nchunks];
		pthread_cond_broadcast(&med_cond);
		pthread_mutex_unlock(&med_lock);
		rel_add(&rel, a->dev, c->id, recall_id);
		vmmc_stat_add(VMMC_STAT_MAPPED, -(int64_t)bytes);
		vmm_log_debug("UNMAP Ptr=0x%llx Size=%llu",
		    (unsigned long long)va, (unsigned long long)bytes);
		done += bytes;
		free(c);
	}
	rel_flush(&rel, recall_id);
	return done;
}

/* ---- usage, adopt, IPC, fork ------------------------------------------------ */

void
vmmc_medium_usage(int64_t *in_use, uint64_t *allocs, uint64_t *frees,
    uint64_t *cached)
{
	pthread_mutex_lock(&med_lock);
	*in_use = med_in_use;
	*allocs = med_allocs;
	*frees = med_frees;
	*cached = med_cached;
	pthread_mutex_unlock(&med_lock);
}

size_t
vmmc_medium_chunks(int dev, struct vmmc_mapped_chunk *out, size_t max)
{
	size_t k, n = 0;

	pthread_mutex_lock(&med_lock);
	for (k = 0; k < med_nchunks; k++) {
		const struct mchunk *c = med_chunks[k];
		const struct arena *a = c->arena;

		/* Being moved or given back: not where it was any more. */
		if (a->dev != dev || c->trimming)
			continue;
		if (n < max) {
			out[n].va = a->base + (uint64_t)c->first * a->unit;
			out[n].size = (uint64_t)c->npages * a->unit;
			out[n].id = c->id;
		}
		n++;
	}
	pthread_mutex_unlock(&med_lock);
	return n;
}

void
vmmc_medium_set_ids(int dev, const struct vmmc_mapped_chunk *v, size_t n)
{
	struct arena *a;
	size_t i;

	pthread_mutex_lock(&med_lock);
	for (i = 0; i < n; i++) {
		struct mchunk *c;
		uint64_t off;

		if ((a = arena_of(v[i].va)) == NULL || a->dev != dev)
			continue;
		off = v[i].va - a->base;
		if (off % a->unit != 0 || (c = a->pchunk[off / a->unit]) == NULL ||
		    c->first != off / a->unit)
			continue;
		c->id = v[i].id;
	}
	pthread_mutex_unlock(&med_lock);
}

int
vmmc_medium_ipc(const void *ptr, int *dev, uint64_t *ids, size_t max,
    size_t *n, uint64_t *off, uint64_t *size)
{
	CUdeviceptr p = (CUdeviceptr)(uintptr_t)ptr;
	struct arena *a;
	struct mblk *b;
	struct mchunk *c;
	uint32_t p0, p1, pg;
	int rc = 0;

	if (__atomic_load_n(&med_narenas, __ATOMIC_ACQUIRE) == 0)
		return VMM_ENOTOURS;
	pthread_mutex_lock(&med_lock);
	if ((b = blk_find(p, false, &a)) == NULL) {
		pthread_mutex_unlock(&med_lock);
		return VMM_ENOTOURS;
	}
	if (a->base + b->off != p) {
		pthread_mutex_unlock(&med_lock);
		return VMM_EINVAL;
	}
	page_range(a, b->off, b->len, &p0, &p1);
	/* The chunks backing its pages, in address order: mapped back to
	 * back they lie as they do here. */
	c = a->pchunk[p0];
	*off = b->off - (uint64_t)c->first * a->unit;
	*n = 0;
	for (pg = c->first; pg <= p1; pg = c->first + c->npages) {
		if ((c = a->pchunk[pg]) == NULL || *n == max) {
			rc = VMM_EINVAL;
			break;
		}
		ids[(*n)++] = c->id;
	}
	*dev = a->dev;
	*size = b->asked;
	pthread_mutex_unlock(&med_lock);
	return rc;
}

void
vmmc_medium_forget_all(void)
{
	/* The parent's records are left as they are (leaked in the child),
	 * still reachable from the orphan pointers, as large.c does, so
	 * that leak checkers do not report them. */
	med_orphan_chunks = med_chunks;
	memcpy(med_orphan_arenas, med_arenas, sizeof(med_orphan_arenas));
	pthread_mutex_init(&med_lock, NULL);
	pthread_cond_init(&med_cond, NULL);
	memset(med_arenas, 0, sizeof(med_arenas));
	med_narenas = 0;
	med_chunks = NULL;
	med_nchunks = med_capchunks = 0;
	med_in_use = 0;
	med_allocs = med_frees = med_cached = med_cached_told = 0;
}
