/*
 * The medium heap (client/medium.c) through the public API, against a real
 * vmmd on the emulator.  One scenario per run:
 *
 *   pack     N blocks of 2.5 MiB and N of 12.5 MiB: neighbours share their
 *            edge pages and each keeps its own data (patterns written with
 *            cuMemsetD8 and copies, read back with copies, after frees of
 *            every other one too); vmmd lends within 1/16 (+ one unit) of
 *            what was asked, exactly what the client maps; ranges and
 *            alignment as cudaMalloc's; freed bytes are reused
 *   reuse    a late emulated kernel write (cuemuLaunchWrite) to a freed
 *            block must not land in a block allocated over its bytes: the
 *            reuse waits for a synchronization covering the free
 *   move     the idle pages of a freed block back a new block elsewhere
 *            (moved, no new memory), not before a kernel still writing
 *            the freed block is done
 *   giveback the pages of freed blocks go back to vmmd once idle
 *            (VMM_IDLE_MS), never unmapped under pending work (the
 *            emulator's faults / busy_releases counters stay 0)
 *   realloc  in place when the bytes after the block are free, by copy
 *            otherwise; beyond VMM_MEDIUM_MAX it becomes a large allocation
 *   cross    on a roomy device, a large allocation after medium blocks
 *            were freed takes their idle pages (given back to vmmd and
 *            stitched into its grant): vmmd creates nothing new; and a
 *            kernel still writing a freed block when the large allocation
 *            is made does not land in it (the pages go back after a sync)
 *   crosskeep as cross, with a chunk another process gave back idle in
 *            vmmd: the large allocation is served from it (Acquire.no_create
 *            first), the heap keeps its idle pages, and new blocks of the
 *            freed size reuse them (no grant), not before the kernels still
 *            writing the freed blocks are done
 *   crossback the reverse: after a large allocation is freed, a medium
 *            block maps its chunks (handed over, no new memory from
 *            vmmd), not before a kernel still writing it is done
 *   crosswide as crossback, when the large allocation's chunks are
 *            each larger than the pages the block needs and vmmd has
 *            nothing idle (Acquire.no_create answered WOULD_CREATE): one
 *            chunk is cut off it (an allocation passed over: one of its
 *            size took another cached entry) and mapped over the block's
 *            pages and
 *            free pages after them, vmmd creates nothing, the rest stays
 *            cached where it is, and a kernel still writing the freed
 *            allocation does not land in the block
 *   crosshot as crosswide, but the cached allocation was not passed over
 *            (likely to be reused soon): it stays whole, vmmd creates
 *   crossidle the same with an idle chunk in vmmd that serves the block
 *            (Acquire.up_to): that one is lent, the cached large
 *            allocation stays whole and serves its size again
 *   within   with only larger chunks idle in vmmd, a block's page gets
 *            one of them mapped over several pages (Acquire.up_to), not a
 *            new chunk, and the next blocks use its other pages; the
 *            chunk goes back only once no pending write touches any of
 *            its pages
 *   cachemax with VMM_CACHE_WORKING_SET=0, VMM_CACHE_MAX (64M here)
 *            bounds what the process keeps cached, the heap's idle pages
 *            and cached large allocations together, whichever is freed
 *            last; what goes back to vmmd waits for the kernels still
 *            writing it
 *   workset  by default (VMM_CACHE_WORKING_SET=1, VMM_CACHE_MAX=16M here)
 *            an iteration's memory stays cached beyond VMM_CACHE_MAX, so
 *            the next iteration maps nothing and asks vmmd for nothing;
 *            a kernel still writing the freed memory does not land in the
 *            next iteration's data; once the peak is two windows old
 *            (VMM_IDLE_MS=0: 1 s each) VMM_CACHE_MAX bounds the cache
 *            beyond what was live since
 *   workset_shared the same beside another process holding memory (vmmd
 *            says so in its answer to a Report): VMM_CACHE_MAX alone bounds
 *            the cache; once the other gave its memory back, the working
 *            set is kept again
 *   workset_off the same with VMM_CACHE_WORKING_SET=0: VMM_CACHE_MAX bounds
 *            the cache at once and the next iteration maps memory again
 */
#include <cuda.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/check.h"
#include "../cuemu/cuemu.h"
#include "testclient.h"
#include "vmm_client.h"

#define MiB (1ull << 20)
#define KiB (1ull << 10)

static struct tc	*adm;
static uint64_t		unit;
static pid_t		daemon_pid;
static char		sockpath[1100];

/* conf: vmmd's configuration. */
static void
setup(const char *conf)
{
	const char *tmp = getenv("VMM_TEST_TMPDIR");
	char sockdir[1024];
	CUcontext ctx;

	CHECK(tmp != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s/sock", tmp);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	daemon_pid = tc_start_daemon(sockdir, conf, NULL);
	setenv("VMM_SOCKET_DIR", sockdir, 1);
	CHECK_OK(cuInit(0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	CHECK_OK(cuCtxSetCurrent(ctx));
	adm = tc_open(sockpath, "admin", true);
	CHECK(adm != NULL);
	unit = tc_probe_unit();
	CHECK(unit >= 2 * MiB);
}

static uint64_t
lent(void)
{
	Vmm__PoolStats ps;

	CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
	return ps.lent_bytes;
}

static CUdeviceptr
D(void *p)
{
	return (CUdeviceptr)(uintptr_t)p;
}

/* Block i's byte value. */
static unsigned char
val(size_t i)
{
	return (unsigned char)(0x11 + i * 37);
}

/* Whether all n bytes at d are v (read with a copy). */
static int
all_are(void *d, size_t n, unsigned char v)
{
	unsigned char *b = malloc(n);
	size_t i;
	int ok = 1;

	CHECK(b != NULL);
	CHECK_OK(cuMemcpyDtoH(b, D(d), n));
	for (i = 0; i < n && ok; i++)
		ok = b[i] == v;
	free(b);
	return ok;
}

/* ---- pack ------------------------------------------------------------------- */

#define NPACK 8

static void
pack(size_t size)
{
	void *p[NPACK], *base;
	uint64_t before = lent(), asked = 0, held;
	struct vmm_usage u;
	size_t i, sz;

	for (i = 0; i < NPACK; i++) {
		CHECK(vmm_malloc(&p[i], size) == 0);
		CHECK((uintptr_t)p[i] % 512 == 0);
		CHECK_OK(cuMemsetD8(D(p[i]), val(i), size));
		asked += size;
		CHECK(vmm_get_range((char *)p[i] + size - 1, &base, &sz) == 0);
		CHECK(base == p[i] && sz == size);
		/* Past the block: not this allocation. */
		CHECK(vmm_get_range((char *)p[i] + size, &base, &sz) != 0 ||
		    base != p[i]);
	}
	/* Neighbours share pages: at least one pair of blocks does when a
	 * block is not a whole number of pages. */
	if (size % unit != 0) {
		int shared = 0;

		for (i = 1; i < NPACK; i++)
			shared |= (D(p[i - 1]) + size - 1) / unit ==
			    D(p[i]) / unit;
		CHECK(shared);
	}
	for (i = 0; i < NPACK; i++)
		CHECK(all_are(p[i], size, val(i)));
	held = lent() - before;
	printf("pack %zu x %zu: asked %llu, vmmd lends %llu more (unit %llu)\n",
	    (size_t)NPACK, size, (unsigned long long)asked,
	    (unsigned long long)held, (unsigned long long)unit);
	CHECK(held <= asked + asked / 16 + unit);
	CHECK(vmm_get_usage(&u) == 0);
	CHECK(lent() == u.mapped_bytes);
	/* In use: what was asked (512 B multiples here); nothing idle yet
	 * beyond the edge of the last block's page. */
	CHECK(u.in_use_bytes == asked);
	CHECK(u.cached_bytes < unit);
	/* Every other block freed: the rest keep their data; new blocks of
	 * the same size take the freed bytes, no more memory. */
	for (i = 0; i < NPACK; i += 2)
		CHECK(vmm_free(p[i]) == 0);
	CHECK(vmm_free(p[0]) == VMM_ENOTOURS);	/* a double free */
	for (i = 1; i < NPACK; i += 2)
		CHECK(all_are(p[i], size, val(i)));
	held = lent();
	for (i = 0; i < NPACK; i += 2) {
		CHECK(vmm_malloc(&p[i], size) == 0);
		CHECK_OK(cuMemsetD8(D(p[i]), val(i + 100), size));
	}
	CHECK(lent() == held);
	for (i = 0; i < NPACK; i++)
		CHECK(all_are(p[i], size, val(i % 2 ? i : i + 100)));
	for (i = 0; i < NPACK; i++)
		CHECK(vmm_free(p[i]) == 0);
	/* Every page idle: cached, still mapped, until the flush. */
	CHECK(vmm_get_usage(&u) == 0);
	CHECK(u.in_use_bytes == 0 && u.cached_bytes == u.mapped_bytes &&
	    u.mapped_bytes == lent());
	CHECK(vmm_flush() == 0);
	CHECK(lent() == 0);
	CHECK(vmm_get_usage(&u) == 0);
	CHECK(u.cached_bytes == 0 && u.mapped_bytes == 0);
}

static void
sc_pack(void)
{
	void *a, *b, *c;

	pack(5 * MiB / 2);
	pack(25 * MiB / 2);
	/* Sizes that are not 512 B multiples: blocks still 512 B apart and
	 * the bytes between them untouched by either. */
	CHECK(vmm_malloc(&a, 3 * MiB + 1) == 0);
	CHECK(vmm_malloc(&b, 3 * MiB + 511) == 0);
	CHECK(vmm_malloc(&c, 2 * MiB + 7) == 0);
	CHECK((uintptr_t)b % 512 == 0 && (uintptr_t)c % 512 == 0);
	CHECK_OK(cuMemsetD8(D(a), 0xa1, 3 * MiB + 1));
	CHECK_OK(cuMemsetD8(D(b), 0xb2, 3 * MiB + 511));
	CHECK_OK(cuMemsetD8(D(c), 0xc3, 2 * MiB + 7));
	CHECK(all_are(a, 3 * MiB + 1, 0xa1));
	CHECK(all_are(b, 3 * MiB + 511, 0xb2));
	CHECK(all_are(c, 2 * MiB + 7, 0xc3));
	CHECK(vmm_free(b) == 0 && vmm_free(a) == 0 && vmm_free(c) == 0);
	/* Everything back once flushed. */
	CHECK(vmm_flush() == 0);
	CHECK(lent() == 0);
}

/* ---- reuse ------------------------------------------------------------------ */

static void
sc_reuse(void)
{
	const size_t size = 5 * MiB / 2;
	void *a, *keep, *b;
	CUstream s;
	uint64_t syncs0;

	CHECK(cuemu_available());
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	/* KEEP holds the heap's first pages, so A's bytes stay mapped. */
	CHECK(vmm_malloc(&keep, size) == 0);
	CHECK(vmm_malloc(&a, size) == 0);
	CHECK_OK(cuMemsetD8(D(a), 0, size));
	CHECK(all_are(a, size, 0));
	/* A kernel still to write A (in 300 ms) when A is freed. */
	CHECK_OK(cuemu_launch_write(D(a), 0xdeadbeef, size, 300000, s));
	syncs0 = cuemu_counter("ctx_syncs");
	CHECK(vmm_free(a) == 0);
	/* The same size again: over A's bytes (the cheapest place: mapped
	 * already), but not before the kernel is done. */
	CHECK(vmm_malloc(&b, size) == 0);
	CHECK_OK(cuMemsetD8(D(b), 0x5a, size));
	CHECK(all_are(b, size, 0x5a));
	/* Whatever the kernel was going to do is done by now. */
	usleep(400000);
	CHECK_OK(cuCtxSynchronize());
	CHECK(all_are(b, size, 0x5a));
	printf("reuse: b %s a, %llu context syncs\n", b == a ? "==" : "!=",
	    (unsigned long long)(cuemu_counter("ctx_syncs") - syncs0));
	/* The heap's choice: the same place, after a sync. */
	CHECK(b == a);
	CHECK(cuemu_counter("ctx_syncs") > syncs0);
	CHECK(cuemu_counter("faults") == 0);
	CHECK(vmm_free(b) == 0 && vmm_free(keep) == 0);
	CHECK_OK(cuStreamDestroy(s));
}

/* ---- move ------------------------------------------------------------------- */

/* A's pages, idle once A is freed, back a new block B elsewhere in the
 * heap (moved, no new memory from vmmd), but not before the kernel still
 * writing A when it was freed is done. */
static void
sc_move(void)
{
	void *a, *f, *b;
	uint64_t before;
	CUstream s;

	CHECK(cuemu_available());
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK(vmm_malloc(&a, 2 * unit) == 0);
	CHECK(vmm_malloc(&f, unit) == 0);	/* A's hole stays 2 units */
	CHECK((char *)f == (char *)a + 2 * unit);
	CHECK_OK(cuMemsetD8(D(a), 0, 2 * unit));
	CHECK(all_are(a, 2 * unit, 0));
	CHECK_OK(cuemu_launch_write(D(a), 0xdeadbeef, 2 * unit, 300000, s));
	CHECK(vmm_free(a) == 0);
	before = lent();
	/* Three units fit only after F: one page from vmmd, A's two moved. */
	CHECK(vmm_malloc(&b, 3 * unit) == 0);
	CHECK((char *)b == (char *)f + unit);
	CHECK(lent() == before + unit);
	CHECK_OK(cuMemsetD8(D(b), 0x6b, 3 * unit));
	CHECK(all_are(b, 3 * unit, 0x6b));
	usleep(400000);
	CHECK_OK(cuCtxSynchronize());
	CHECK(all_are(b, 3 * unit, 0x6b));
	CHECK(cuemu_counter("faults") == 0);
	CHECK(cuemu_counter("busy_releases") == 0);
	CHECK(vmm_free(b) == 0 && vmm_free(f) == 0);
	CHECK(vmm_flush() == 0);
	CHECK(lent() == 0);
	CHECK_OK(cuStreamDestroy(s));
}

/* ---- giveback --------------------------------------------------------------- */

static void
sc_giveback(void)
{
	const size_t size = 25 * MiB / 2;
	void *p[4];
	CUstream s;
	int i;

	CHECK(cuemu_available());
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	for (i = 0; i < 4; i++)
		CHECK(vmm_malloc(&p[i], size) == 0);
	CHECK(lent() >= 4 * size);
	/* Work still pending on every block when it is freed: its pages may
	 * go back only after it is done. */
	for (i = 0; i < 4; i++)
		CHECK_OK(cuemu_launch_write(D(p[i]) + size - 65536, 0x1234,
		    65536, 200000, s));
	for (i = 0; i < 4; i++)
		CHECK(vmm_free(p[i]) == 0);
	/* VMM_IDLE_MS=200: the helper gives the pages back within a few
	 * ticks, after a synchronization. */
	for (i = 0; i < 1000 && lent() != 0; i++)
		tc_sleep_ms(10);
	printf("giveback: lent 0 after %d ms\n", i * 10);
	CHECK(lent() == 0);
	CHECK(cuemu_counter("faults") == 0);
	CHECK(cuemu_counter("busy_releases") == 0);
	CHECK_OK(cuStreamDestroy(s));
}

/* ---- realloc ---------------------------------------------------------------- */

static void
sc_realloc(void)
{
	void *a, *b, *q, *base;
	size_t sz;

	CHECK(vmm_malloc(&a, 3 * MiB) == 0);
	CHECK_OK(cuMemsetD8(D(a), 0x21, 3 * MiB));
	/* Nothing after A: it grows in place. */
	q = a;
	CHECK(vmm_realloc(&a, 7 * MiB) == 0);
	CHECK(a == q);
	CHECK(vmm_get_range((char *)a + 7 * MiB - 1, &base, &sz) == 0 &&
	    base == a && sz == 7 * MiB);
	CHECK(all_are(a, 3 * MiB, 0x21));
	CHECK_OK(cuMemsetD8(D(a), 0x22, 7 * MiB));
	/* B right after A: A moves by copy when it grows, and keeps its data. */
	CHECK(vmm_malloc(&b, 3 * MiB) == 0);
	CHECK_OK(cuMemsetD8(D(b), 0x33, 3 * MiB));
	CHECK(vmm_realloc(&a, 9 * MiB) == 0);
	CHECK(a != q);
	CHECK(all_are(a, 7 * MiB, 0x22));
	CHECK(all_are(b, 3 * MiB, 0x33));
	/* Shrinks in place. */
	q = a;
	CHECK(vmm_realloc(&a, 4 * MiB) == 0);
	CHECK(a == q && all_are(a, 4 * MiB, 0x22));
	CHECK(vmm_get_range(a, &base, &sz) == 0 && sz == 4 * MiB);
	/* Beyond VMM_MEDIUM_MAX (32M): a large allocation, data copied. */
	CHECK(vmm_realloc(&a, 40 * MiB) == 0);
	CHECK(all_are(a, 4 * MiB, 0x22));
	CHECK(vmm_get_range(a, &base, &sz) == 0 && sz == 40 * MiB);
	CHECK(all_are(b, 3 * MiB, 0x33));
	CHECK(vmm_free(a) == 0 && vmm_free(b) == 0);
	CHECK(vmm_flush() == 0);
	CHECK(lent() == 0);
}

/* ---- cross ------------------------------------------------------------------ */

#define NCROSS 4

static void
sc_cross(void)
{
	const size_t msize = 25 * MiB / 2, lsize = 40 * MiB;
	void *m[NCROSS], *l;
	uint64_t creates, held;
	struct vmm_usage u;
	CUstream s;
	int i;

	CHECK(cuemu_available());
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	for (i = 0; i < NCROSS; i++) {
		CHECK(vmm_malloc(&m[i], msize) == 0);
		CHECK_OK(cuMemsetD8(D(m[i]), val((size_t)i), msize));
	}
	/* A kernel still to write every block (in 300 ms) when it is freed. */
	for (i = 0; i < NCROSS; i++)
		CHECK_OK(cuemu_launch_write(D(m[i]), 0xdeadbeef, msize, 300000,
		    s));
	for (i = 0; i < NCROSS; i++)
		CHECK(vmm_free(m[i]) == 0);
	CHECK(vmm_get_usage(&u) == 0);
	CHECK(u.cached_bytes >= lsize);		/* idle, still mapped */
	held = lent();
	creates = tc_counter(adm, "creates");
	/* Beyond VMM_MEDIUM_MAX: a large allocation, from the heap's idle
	 * pages (through vmmd), no new memory. */
	CHECK(vmm_malloc(&l, lsize) == 0);
	printf("cross: vmmd created %llu, lent %llu -> %llu\n",
	    (unsigned long long)(tc_counter(adm, "creates") - creates),
	    (unsigned long long)held, (unsigned long long)lent());
	CHECK(tc_counter(adm, "creates") == creates);
	CHECK(lent() <= held);
	CHECK_OK(cuMemsetD8(D(l), 0x6c, lsize));
	/* The kernels are done by now: none of their writes landed in L. */
	usleep(400000);
	CHECK_OK(cuCtxSynchronize());
	CHECK(all_are(l, lsize, 0x6c));
	CHECK(cuemu_counter("faults") == 0);
	CHECK(cuemu_counter("busy_releases") == 0);
	CHECK(vmm_free(l) == 0);
	CHECK(vmm_flush() == 0);
	CHECK(lent() == 0);
	CHECK_OK(cuStreamDestroy(s));
}

/* As cross, but another session left a chunk of the large size idle in
 * vmmd: the large allocation is stitched from vmmd's idle memory
 * (Acquire.no_create), the heap's idle pages stay with the process, and
 * new blocks of the freed size take them back with no new grant; a kernel
 * still writing the freed blocks does not land in the new ones. */
static void
sc_crosskeep(void)
{
	const size_t msize = 25 * MiB / 2, lsize = 40 * MiB;
	void *m[NCROSS], *l;
	uint64_t creates, held, kept, wc;
	struct tc_chunk ch;
	struct vmm_usage u;
	struct tc *o;
	CUstream s;
	int i;

	CHECK(cuemu_available());
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK((o = tc_open(sockpath, "other", false)) != NULL);
	CHECK(tc_acquire(o, lsize, 0, &ch, 1) == 1 && ch.size >= lsize);
	for (i = 0; i < NCROSS; i++) {
		CHECK(vmm_malloc(&m[i], msize) == 0);
		CHECK_OK(cuMemsetD8(D(m[i]), val((size_t)i), msize));
	}
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(o, &ch.id, 1) == 0);
	tc_close(o);
	for (i = 0; i < NCROSS; i++)
		CHECK_OK(cuemu_launch_write(D(m[i]), 0xdeadbeef, msize, 300000,
		    s));
	for (i = 0; i < NCROSS; i++)
		CHECK(vmm_free(m[i]) == 0);
	CHECK(vmm_get_usage(&u) == 0);
	kept = u.cached_bytes;
	CHECK(kept >= NCROSS * msize);
	held = lent();
	creates = tc_counter(adm, "creates");
	wc = tc_counter(adm, "would_create");
	CHECK(vmm_malloc(&l, lsize) == 0);
	CHECK(vmm_get_usage(&u) == 0);
	printf("crosskeep: vmmd created %llu, %llu would-create answers, "
	    "lent %llu -> %llu, cached %llu -> %llu\n",
	    (unsigned long long)(tc_counter(adm, "creates") - creates),
	    (unsigned long long)(tc_counter(adm, "would_create") - wc),
	    (unsigned long long)held, (unsigned long long)lent(),
	    (unsigned long long)kept, (unsigned long long)u.cached_bytes);
	CHECK(tc_counter(adm, "creates") == creates);
	CHECK(tc_counter(adm, "would_create") == wc);
	CHECK(u.cached_bytes == kept);		/* the heap kept its pages */
	CHECK(lent() == held + ch.size);	/* vmmd's idle chunk, lent */
	CHECK_OK(cuMemsetD8(D(l), 0x6c, lsize));
	/* The freed size again: the heap's own pages, no grant. */
	held = lent();
	for (i = 0; i < NCROSS; i++) {
		CHECK(vmm_malloc(&m[i], msize) == 0);
		CHECK_OK(cuMemsetD8(D(m[i]), val((size_t)i + 50), msize));
	}
	CHECK(lent() == held);
	/* The kernels are done by now: none of their writes landed. */
	usleep(400000);
	CHECK_OK(cuCtxSynchronize());
	for (i = 0; i < NCROSS; i++)
		CHECK(all_are(m[i], msize, val((size_t)i + 50)));
	CHECK(all_are(l, lsize, 0x6c));
	CHECK(cuemu_counter("faults") == 0);
	CHECK(cuemu_counter("busy_releases") == 0);
	for (i = 0; i < NCROSS; i++)
		CHECK(vmm_free(m[i]) == 0);
	CHECK(vmm_free(l) == 0);
	CHECK(vmm_flush() == 0);
	CHECK(lent() == 0);
	CHECK_OK(cuStreamDestroy(s));
}

/* A large allocation freed with a kernel still writing it (in 300 ms):
 * a medium block of its size maps its chunks (vmmd's pieces of 8 MiB fit
 * the block's page-aligned 32 MiB), vmmd creates nothing new, and the
 * kernel's write does not land in the block. */
static void
sc_crossback(void)
{
	const size_t lsize = 40 * MiB, msize = 32 * MiB;
	void *l, *m;
	uint64_t creates, held;
	CUstream s;

	CHECK(cuemu_available());
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK(vmm_malloc(&l, lsize) == 0);
	CHECK_OK(cuMemsetD8(D(l), 0x11, lsize));
	CHECK_OK(cuemu_launch_write(D(l), 0xdeadbeef, lsize, 300000, s));
	CHECK(vmm_free(l) == 0);
	held = lent();
	creates = tc_counter(adm, "creates");
	CHECK(vmm_malloc(&m, msize) == 0);
	printf("crossback: vmmd created %llu, lent %llu -> %llu\n",
	    (unsigned long long)(tc_counter(adm, "creates") - creates),
	    (unsigned long long)held, (unsigned long long)lent());
	CHECK(tc_counter(adm, "creates") == creates);
	CHECK(lent() <= held);
	CHECK_OK(cuMemsetD8(D(m), 0x6d, msize));
	usleep(400000);
	CHECK_OK(cuCtxSynchronize());
	CHECK(all_are(m, msize, 0x6d));
	CHECK(cuemu_counter("faults") == 0);
	CHECK(cuemu_counter("busy_releases") == 0);
	CHECK(vmm_free(m) == 0);
	CHECK(vmm_flush() == 0);
	CHECK(lent() == 0);
	CHECK_OK(cuStreamDestroy(s));
}

/* What the process caches (freed, mapped). */
static uint64_t
cached(void)
{
	struct vmm_usage u;

	CHECK(vmm_get_usage(&u) == 0);
	return u.cached_bytes;
}

/* A large allocation A of 20 units comes in pieces of 4 units (new memory
 * for a stitchable grant: powers of two of at least 1/8 of it), freed
 * while a kernel still writes it (in 300 ms); an allocation of 18 units
 * then takes a cached one of 18 units rather than A: A is passed over
 * (the process caches more of that size than it reused).  vmmd holds
 * nothing idle.  A block needing 2 pages: vmmd would create (no_create
 * says so), so one 4-unit piece is cut off A and mapped over the block's
 * pages and 2 free pages after them; the next block lands on those.
 * vmmd creates nothing, A's other 16 units stay cached and serve a
 * 16-unit allocation as they are, and the kernel's write lands before,
 * not in, the blocks (the piece is handed only after a sync). */
static void
sc_crosswide(void)
{
	const size_t lsize = 20 * unit, ksize = 18 * unit;
	const size_t msize = unit + unit / 2;
	/* Above VMM_SMALL_MAX (1M) whatever the unit. */
	const size_t m2size = unit / 2 + 64 * KiB;
	void *a, *b, *d, *k, *c, *m, *m2, *l2;
	uint64_t creates, held, wc;
	CUstream s;

	CHECK(cuemu_available());
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK(vmm_malloc(&a, lsize) == 0);
	CHECK(vmm_malloc(&b, ksize) == 0);
	CHECK(vmm_malloc(&d, ksize) == 0);
	CHECK_OK(cuMemsetD8(D(a), 0x11, lsize));
	/* Two of 18 units cached, and one taken back: a sync (nothing runs
	 * yet) covers both frees, so the next 18-unit allocation waits for
	 * nothing. */
	CHECK(vmm_free(b) == 0);
	CHECK(vmm_free(d) == 0);
	CHECK(vmm_malloc(&k, ksize) == 0);
	CHECK_OK(cuemu_launch_write(D(a), 0xdeadbeef, lsize, 300000, s));
	CHECK(vmm_free(a) == 0);
	held = lent();
	creates = tc_counter(adm, "creates");
	CHECK(vmm_malloc(&c, ksize) == 0);	/* the other 18, not A */
	CHECK(c != a);
	wc = tc_counter(adm, "would_create");
	CHECK(vmm_malloc(&m, msize) == 0);
	CHECK(vmm_malloc(&m2, m2size) == 0);
	printf("crosswide: vmmd created %llu, %llu would-create answers, "
	    "lent %llu -> %llu, %llu units cached\n",
	    (unsigned long long)(tc_counter(adm, "creates") - creates),
	    (unsigned long long)(tc_counter(adm, "would_create") - wc),
	    (unsigned long long)held, (unsigned long long)lent(),
	    (unsigned long long)(cached() / unit));
	CHECK(tc_counter(adm, "creates") == creates);
	CHECK(tc_counter(adm, "would_create") == wc + 1);
	CHECK(lent() == held);
	/* 16 units of A, and the piece's pages without a block (the heap's
	 * idle pages: part of 4 units). */
	CHECK(cached() >= 16 * unit && cached() < 20 * unit);
	CHECK_OK(cuMemsetD8(D(m), 0x6d, msize));
	CHECK_OK(cuMemsetD8(D(m2), 0x6e, m2size));
	/* The rest serves its size from the cache: no grant at all. */
	CHECK(vmm_malloc(&l2, 16 * unit) == 0);
	CHECK(tc_counter(adm, "creates") == creates && lent() == held);
	CHECK_OK(cuMemsetD8(D(l2), 0x6c, 16 * unit));
	usleep(400000);
	CHECK_OK(cuCtxSynchronize());
	CHECK(all_are(m, msize, 0x6d));
	CHECK(all_are(m2, m2size, 0x6e));
	CHECK(all_are(l2, 16 * unit, 0x6c));
	CHECK(cuemu_counter("faults") == 0);
	CHECK(cuemu_counter("busy_releases") == 0);
	CHECK(vmm_free(m) == 0);
	CHECK(vmm_free(m2) == 0);
	CHECK(vmm_free(l2) == 0);
	CHECK(vmm_free(c) == 0);
	CHECK(vmm_free(k) == 0);
	CHECK(vmm_flush() == 0);
	CHECK(lent() == 0);
	CHECK_OK(cuStreamDestroy(s));
}

/* As crosswide, but A was not passed over (the only cached allocation,
 * likely to be reused): it stays whole, and vmmd creates the block's page
 * instead; its size again takes it back with no new grant. */
static void
sc_crosshot(void)
{
	const size_t lsize = 20 * unit, msize = unit + unit / 2;
	uint64_t creates, wc;
	void *l, *m, *l2;

	CHECK(cuemu_available());
	CHECK(vmm_malloc(&l, lsize) == 0);
	CHECK_OK(cuMemsetD8(D(l), 0x11, lsize));
	CHECK(vmm_free(l) == 0);
	creates = tc_counter(adm, "creates");
	wc = tc_counter(adm, "would_create");
	CHECK(vmm_malloc(&m, msize) == 0);
	printf("crosshot: vmmd created %llu, %llu would-create answers, "
	    "%llu units cached\n",
	    (unsigned long long)(tc_counter(adm, "creates") - creates),
	    (unsigned long long)(tc_counter(adm, "would_create") - wc),
	    (unsigned long long)(cached() / unit));
	CHECK(tc_counter(adm, "would_create") == wc + 1);
	CHECK(tc_counter(adm, "creates") > creates);
	CHECK(cached() >= 20 * unit);
	creates = tc_counter(adm, "creates");
	CHECK(vmm_malloc(&l2, lsize) == 0);
	CHECK(l2 == l && tc_counter(adm, "creates") == creates);
	CHECK(all_are(l2, lsize, 0x11));
	CHECK(vmm_free(m) == 0);
	CHECK(vmm_free(l2) == 0);
	CHECK(vmm_flush() == 0);
	CHECK(lent() == 0);
}

/* As crosswide, but another session left a 4-unit chunk idle in vmmd: the
 * block gets that one (Acquire.up_to, no would-create answer), and the
 * cached large allocation stays whole: its size again takes it back with
 * no new grant. */
static void
sc_crossidle(void)
{
	const size_t lsize = 20 * unit, msize = unit + unit / 2;
	struct tc_chunk ch;
	uint64_t creates, held, wc, within;
	void *l, *m, *l2;
	struct tc *o;

	CHECK(cuemu_available());
	CHECK((o = tc_open(sockpath, "other", false)) != NULL);
	CHECK(tc_acquire(o, 4 * unit, 0, &ch, 1) == 1 && ch.size == 4 * unit);
	CHECK(vmm_malloc(&l, lsize) == 0);
	CHECK_OK(cuMemsetD8(D(l), 0x11, lsize));
	CHECK(vmm_free(l) == 0);
	/* Idle in vmmd only now: the large allocation did not stitch it. */
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(o, &ch.id, 1) == 0);
	tc_close(o);
	held = lent();
	creates = tc_counter(adm, "creates");
	wc = tc_counter(adm, "would_create");
	within = tc_counter(adm, "fits_within");
	CHECK(vmm_malloc(&m, msize) == 0);
	printf("crossidle: vmmd created %llu, %llu wider fits, %llu "
	    "would-create answers, %llu units cached\n",
	    (unsigned long long)(tc_counter(adm, "creates") - creates),
	    (unsigned long long)(tc_counter(adm, "fits_within") - within),
	    (unsigned long long)(tc_counter(adm, "would_create") - wc),
	    (unsigned long long)(cached() / unit));
	CHECK(tc_counter(adm, "creates") == creates);
	CHECK(tc_counter(adm, "fits_within") == within + 1);
	CHECK(tc_counter(adm, "would_create") == wc);
	CHECK(lent() == held + 4 * unit);
	CHECK(cached() >= 20 * unit);
	CHECK(vmm_malloc(&l2, lsize) == 0);
	CHECK(l2 == l);
	CHECK(tc_counter(adm, "creates") == creates);
	CHECK(lent() == held + 4 * unit);
	CHECK_OK(cuMemsetD8(D(m), 0x6d, msize));
	CHECK(all_are(l2, lsize, 0x11));
	CHECK(all_are(m, msize, 0x6d));
	CHECK(vmm_free(m) == 0);
	CHECK(vmm_free(l2) == 0);
	CHECK(vmm_flush() == 0);
	CHECK(lent() == 0);
}

/* ---- within ----------------------------------------------------------------- */

/* vmmd holds only idle chunks of 4 units, released by another session (a
 * freed large allocation's pieces, say).  Blocks of 3/4 unit, the first
 * needing one page, get one such chunk mapped over 4 pages (Acquire.up_to)
 * rather than a new one-unit chunk, and the next blocks land on its other
 * pages: vmmd creates nothing and lends that one chunk.  A kernel still
 * writing the block on the chunk's last page when every block is freed
 * keeps the whole chunk from going back until it is done: a large
 * allocation made then, which stitches the heap's idle chunk (given back
 * to vmmd for it), never receives that write. */
static void
sc_within(void)
{
	/* Beyond VMM_MEDIUM_MAX (32 MiB): a large allocation. */
	const size_t bsize = unit / 4 * 3, lsize = 20 * unit;
	struct tc_chunk ch[2];
	uint64_t ids[2], creates, made, within, held;
	void *b[5], *l;
	struct tc *o;
	CUstream s;
	int i;

	CHECK(cuemu_available());
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK((o = tc_open(sockpath, "other", false)) != NULL);
	for (i = 0; i < 2; i++) {
		CHECK(tc_acquire(o, 4 * unit, 0, &ch[i], 1) == 1);
		CHECK(ch[i].size == 4 * unit);
		ids[i] = ch[i].id;
	}
	tc_close_chunks(ch, 2);
	CHECK(tc_release(o, ids, 2) == 0);
	tc_close(o);
	held = lent();
	creates = tc_counter(adm, "creates");
	within = tc_counter(adm, "fits_within");
	for (i = 0; i < 5; i++) {
		CHECK(vmm_malloc(&b[i], bsize) == 0);
		CHECK_OK(cuMemsetD8(D(b[i]), val((size_t)i), bsize));
	}
	printf("within: vmmd created %llu, %llu wider fits, lent %llu -> %llu\n",
	    (unsigned long long)(tc_counter(adm, "creates") - creates),
	    (unsigned long long)(tc_counter(adm, "fits_within") - within),
	    (unsigned long long)held, (unsigned long long)lent());
	CHECK(tc_counter(adm, "creates") == creates);
	CHECK(tc_counter(adm, "fits_within") == within + 1);
	CHECK(lent() == held + 4 * unit);
	for (i = 0; i < 5; i++)
		CHECK(all_are(b[i], bsize, val((size_t)i)));
	/* The last block, on the chunk's last page, freed with a kernel still
	 * to write it (in 300 ms); the others freed idle. */
	for (i = 0; i < 4; i++)
		CHECK(vmm_free(b[i]) == 0);
	CHECK(D(b[4]) / unit != D(b[0]) / unit);
	CHECK_OK(cuemu_launch_write(D(b[4]), 0xdeadbeef, bsize, 300000, s));
	CHECK(vmm_free(b[4]) == 0);
	made = tc_counter(adm, "create_bytes");
	CHECK(vmm_malloc(&l, lsize) == 0);
	/* Both idle 4-unit chunks went into it: the heap's, given back after
	 * the sync, and the other; vmmd made only the rest. */
	printf("within: the large allocation made %llu new bytes of %zu\n",
	    (unsigned long long)(tc_counter(adm, "create_bytes") - made), lsize);
	CHECK(tc_counter(adm, "create_bytes") - made == lsize - 8 * unit);
	CHECK_OK(cuMemsetD8(D(l), 0x6c, lsize));
	usleep(400000);
	CHECK_OK(cuCtxSynchronize());
	CHECK(all_are(l, lsize, 0x6c));
	CHECK(cuemu_counter("faults") == 0);
	CHECK(cuemu_counter("busy_releases") == 0);
	CHECK(vmm_free(l) == 0);
	CHECK(vmm_flush() == 0);
	CHECK(lent() == 0);
	CHECK_OK(cuStreamDestroy(s));
}

/* ---- cachemax --------------------------------------------------------------- */

#define NCM 4

/* Large first or medium first: after every free, at most VMM_CACHE_MAX
 * (64 MiB) cached in all, though each cache alone stays under it. */
static void
cachemax_round(bool large_first)
{
	const size_t msize = 25 * MiB / 2, lsize = 48 * MiB;
	void *m[NCM], *l;
	struct vmm_usage u;
	CUstream s;
	int i;

	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK(vmm_malloc(&l, lsize) == 0);
	for (i = 0; i < NCM; i++)
		CHECK(vmm_malloc(&m[i], msize) == 0);
	/* A kernel still to write each one (in 200 ms) when it is freed. */
	CHECK_OK(cuemu_launch_write(D(l), 0xdeadbeef, lsize, 200000, s));
	for (i = 0; i < NCM; i++)
		CHECK_OK(cuemu_launch_write(D(m[i]), 0xdeadbeef, msize, 200000,
		    s));
	if (large_first)
		CHECK(vmm_free(l) == 0);
	for (i = 0; i < NCM; i++)
		CHECK(vmm_free(m[i]) == 0);
	if (!large_first)
		CHECK(vmm_free(l) == 0);
	CHECK(vmm_get_usage(&u) == 0);
	printf("cachemax: %s freed last: %llu MiB cached, %llu MiB mapped\n",
	    large_first ? "medium" : "large",
	    (unsigned long long)(u.cached_bytes / MiB),
	    (unsigned long long)(u.mapped_bytes / MiB));
	CHECK(u.in_use_bytes == 0);
	CHECK(u.cached_bytes > 0 && u.cached_bytes <= 64 * MiB);
	CHECK_OK(cuCtxSynchronize());
	CHECK(cuemu_counter("faults") == 0);
	CHECK(cuemu_counter("busy_releases") == 0);
	CHECK(vmm_flush() == 0);
	CHECK(lent() == 0);
	CHECK_OK(cuStreamDestroy(s));
}

static void
sc_cachemax(void)
{
	CHECK(cuemu_available());
	cachemax_round(true);
	cachemax_round(false);
}

/* ---- workset ------------------------------------------------------------------ */

#define NWL 4
#define NWM 2

/* One iteration: NWL large allocations of 48 MiB and NWM medium blocks of
 * 12.5 MiB, a kernel still to write each (in 200 ms) when all are freed;
 * the pointers in l and m. */
static void
workset_iteration(void **l, void **m, CUstream s)
{
	int i;

	for (i = 0; i < NWL; i++)
		CHECK(vmm_malloc(&l[i], 48 * MiB) == 0);
	for (i = 0; i < NWM; i++)
		CHECK(vmm_malloc(&m[i], 25 * MiB / 2) == 0);
	for (i = 0; i < NWL; i++)
		CHECK_OK(cuemu_launch_write(D(l[i]), 0xdeadbeef, 48 * MiB,
		    200000, s));
	for (i = 0; i < NWM; i++)
		CHECK_OK(cuemu_launch_write(D(m[i]), 0xdeadbeef, 25 * MiB / 2,
		    200000, s));
}

/* The bytes at p hold c: the kernels still writing when it was freed did
 * not land in it. */
static void
workset_check(void *p, size_t size, unsigned char c)
{
	unsigned char *h = malloc(size), *want = malloc(size);

	CHECK(h != NULL && want != NULL);
	memset(want, c, size);
	CHECK_OK(cuMemcpyDtoH(h, D(p), size));
	CHECK(memcmp(h, want, size) == 0);
	free(want);
	free(h);
}

static void
sc_workset(bool on)
{
	void *l[NWL], *m[NWM], *x;
	unsigned long long maps, imports;
	uint64_t held;
	struct vmm_usage u;
	CUstream s;
	int i;

	CHECK(cuemu_available());
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	workset_iteration(l, m, s);
	for (i = 0; i < NWL; i++)
		CHECK(vmm_free(l[i]) == 0);
	for (i = 0; i < NWM; i++)
		CHECK(vmm_free(m[i]) == 0);
	CHECK(vmm_get_usage(&u) == 0);
	printf("workset: %llu MiB cached after the first iteration\n",
	    (unsigned long long)(u.cached_bytes / MiB));
	CHECK(u.in_use_bytes == 0);
	if (!on) {
		CHECK(u.cached_bytes <= 16 * MiB);
		CHECK_OK(cuCtxSynchronize());
		CHECK(cuemu_counter("faults") == 0);
		CHECK(cuemu_counter("busy_releases") == 0);
		CHECK_OK(cuStreamDestroy(s));
		return;
	}
	/* All of it: far beyond VMM_CACHE_MAX's 16 MiB. */
	CHECK(u.cached_bytes >= NWL * 48 * MiB + NWM * 25 * MiB / 2);
	held = lent();
	maps = cuemu_counter("calls_map");
	imports = cuemu_counter("calls_import");
	/* The next iteration: its memory is where it was, still mapped. */
	for (i = 0; i < NWL; i++) {
		CHECK(vmm_malloc(&l[i], 48 * MiB) == 0);
		CHECK_OK(cuMemsetD8(D(l[i]), 0x5a, 48 * MiB));
	}
	for (i = 0; i < NWM; i++) {
		CHECK(vmm_malloc(&m[i], 25 * MiB / 2) == 0);
		CHECK_OK(cuMemsetD8(D(m[i]), 0x5a, 25 * MiB / 2));
	}
	CHECK(cuemu_counter("calls_map") == maps);
	CHECK(cuemu_counter("calls_import") == imports);
	CHECK(lent() == held);
	CHECK_OK(cuCtxSynchronize());
	for (i = 0; i < NWL; i++)
		workset_check(l[i], 48 * MiB, 0x5a);
	for (i = 0; i < NWM; i++)
		workset_check(m[i], 25 * MiB / 2, 0x5a);
	for (i = 0; i < NWL; i++)
		CHECK(vmm_free(l[i]) == 0);
	for (i = 0; i < NWM; i++)
		CHECK(vmm_free(m[i]) == 0);
	/* Two windows later the peak is forgotten: one 48 MiB allocation
	 * live since, so at its free VMM_CACHE_MAX bounds what the cache
	 * keeps beyond it. */
	usleep(2100 * 1000);
	CHECK(vmm_malloc(&x, 48 * MiB) == 0);
	CHECK(vmm_free(x) == 0);
	CHECK(vmm_get_usage(&u) == 0);
	printf("workset: %llu MiB cached two windows later\n",
	    (unsigned long long)(u.cached_bytes / MiB));
	CHECK(u.cached_bytes <= 16 * MiB + 48 * MiB);
	CHECK_OK(cuCtxSynchronize());
	CHECK(cuemu_counter("faults") == 0);
	CHECK(cuemu_counter("busy_releases") == 0);
	CHECK(vmm_flush() == 0);
	CHECK(lent() == 0);
	CHECK_OK(cuStreamDestroy(s));
}

/* One more allocation and free, then time for the helper's Report (sent
 * when the figures changed, every VMM_REPORT_MS = 50 here) and vmmd's
 * answer. */
static void
workset_report(void)
{
	void *x;

	CHECK(vmm_malloc(&x, 3 * MiB) == 0);
	CHECK(vmm_free(x) == 0);
	usleep(300 * 1000);
}

/* workset beside another process holding memory: VMM_CACHE_MAX alone
 * bounds the cache (what the others cannot have is not kept for this
 * one's next step); once the other process gave its memory back, the
 * working set is kept again. */
static void
sc_workset_shared(void)
{
	void *l[NWL], *m[NWM];
	struct tc_chunk ch;
	struct vmm_usage u;
	struct tc *o;
	CUstream s;
	int i;

	CHECK(cuemu_available());
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK((o = tc_open(sockpath, "other", false)) != NULL);
	CHECK(tc_acquire(o, unit, 0, &ch, 1) == 1);
	workset_report();
	workset_iteration(l, m, s);
	for (i = 0; i < NWL; i++)
		CHECK(vmm_free(l[i]) == 0);
	for (i = 0; i < NWM; i++)
		CHECK(vmm_free(m[i]) == 0);
	CHECK(vmm_get_usage(&u) == 0);
	printf("workset_shared: %llu MiB cached beside another process\n",
	    (unsigned long long)(u.cached_bytes / MiB));
	CHECK(u.cached_bytes <= 16 * MiB);
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(o, &ch.id, 1) == 0);
	tc_close(o);
	workset_report();
	workset_iteration(l, m, s);
	for (i = 0; i < NWL; i++)
		CHECK(vmm_free(l[i]) == 0);
	for (i = 0; i < NWM; i++)
		CHECK(vmm_free(m[i]) == 0);
	CHECK(vmm_get_usage(&u) == 0);
	printf("workset_shared: %llu MiB cached alone again\n",
	    (unsigned long long)(u.cached_bytes / MiB));
	CHECK(u.cached_bytes >= NWL * 48 * MiB + NWM * 25 * MiB / 2);
	CHECK_OK(cuCtxSynchronize());
	CHECK(cuemu_counter("faults") == 0);
	CHECK(cuemu_counter("busy_releases") == 0);
	CHECK(vmm_flush() == 0);
	CHECK(lent() == 0);
	CHECK_OK(cuStreamDestroy(s));
}

int
main(int argc, char **argv)
{
	CHECK(argc == 2);
	/* cross: a grant of vmmd may be stitched from as many one-unit pages
	 * as the large allocation needs (its default max_pieces, 16, would
	 * have it create the rest beyond 16 units). */
	setup(strcmp(argv[1], "cross") == 0 || strcmp(argv[1], "within") == 0 ?
	    "idle_timeout_ms = 0\nmax_pieces = 64\n" : "idle_timeout_ms = 0\n");
	if (strcmp(argv[1], "pack") == 0)
		sc_pack();
	else if (strcmp(argv[1], "reuse") == 0)
		sc_reuse();
	else if (strcmp(argv[1], "move") == 0)
		sc_move();
	else if (strcmp(argv[1], "giveback") == 0)
		sc_giveback();
	else if (strcmp(argv[1], "realloc") == 0)
		sc_realloc();
	else if (strcmp(argv[1], "cross") == 0)
		sc_cross();
	else if (strcmp(argv[1], "crosskeep") == 0)
		sc_crosskeep();
	else if (strcmp(argv[1], "crossback") == 0)
		sc_crossback();
	else if (strcmp(argv[1], "crosswide") == 0)
		sc_crosswide();
	else if (strcmp(argv[1], "crosshot") == 0)
		sc_crosshot();
	else if (strcmp(argv[1], "crossidle") == 0)
		sc_crossidle();
	else if (strcmp(argv[1], "within") == 0)
		sc_within();
	else if (strcmp(argv[1], "cachemax") == 0)
		sc_cachemax();
	else if (strcmp(argv[1], "workset") == 0)
		sc_workset(true);
	else if (strcmp(argv[1], "workset_shared") == 0)
		sc_workset_shared();
	else if (strcmp(argv[1], "workset_off") == 0)
		sc_workset(false);
	else
		CHECK(!"unknown scenario");
	tc_close(adm);
	tc_stop_daemon_ok(daemon_pid);
	printf("medium %s ok\n", argv[1]);
	return 0;
}
