/*
 * vmmd stitching: a request no single free chunk fits is served from several
 * pooled chunks (sizes summing to the rounded request, nothing created for
 * the covered part), pieces no smaller than frag_ratio × request come first
 * and smaller fragments only instead of new memory, the piece cap holds, and the pieces really are distinct memory that maps
 * back to back into one range.
 *
 * "test_daemon_stitch policy" runs the checks of the stitch policy's finer
 * contracts (Acquire.min_piece, an exact cover at the piece cap).
 *
 * "test_daemon_stitch exact": Acquire.exact (an application's own
 * cuMemCreate served from the pool) gets one chunk of exactly the size
 * asked, never a larger pooled one nor a stitch.
 *
 * "test_daemon_stitch within": Acquire.up_to gets the smallest idle chunk
 * up to that size rather than a new one (within the quota).
 *
 * "test_daemon_stitch nocreate": Acquire.no_create is served from idle
 * memory (a fit, or up_to's wider chunk) and otherwise answered
 * ERROR_CODE_WOULD_CREATE at once: nothing created, no recall of another
 * process's cache, the session goes on; over the quota it is the quota's
 * error.
 *
 * "test_daemon_stitch cover": what is still missing after the pieces no
 * larger than it is served by one idle chunk up to twice its size rather
 * than created (counter covers), never by a larger one; the chunk is
 * distinct from every chunk lent (another session's, written meanwhile,
 * keeps its bytes); Acquire.exact never gets one, and Acquire.no_create
 * (vmmd would not create for it) is answered WOULD_CREATE instead.
 *
 * "test_daemon_stitch partial": Acquire.partial, where idle one-unit chunks
 * fill every piece a grant may carry (max_pieces) and the rest would be
 * created, lends those pieces short of the request (counter partials;
 * nothing created, distinct memory), also with no_create; where the cap is
 * not reached it grants the whole request as before; without the flag the
 * same request creates its rest beside the idle chunks.
 *
 * "test_daemon_stitch orphan": idle memory a process that is gone left
 * behind (chunks it still held, and chunks it gave back before it went),
 * of sizes a growing request cannot use, is given back to the GPU for the
 * memory created (the pool does not grow by it on a roomy device);
 * a living process's idle chunks, and the chunks of a closed session whose
 * process lives on (the GPU may still touch them), are neither given back
 * nor lent; an orphan that fits is lent before anything is created, and
 * once lent it is no orphan any more.
 */
#include <cuda.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define STITCH	VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH
#define IGNORE	VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_IGNORE_FRAG_RATIO
#define MAXCH	VMM_PROTO_MAX_CHUNKS

static char		sockpath[1100];
static struct tc	*adm;
static uint64_t		G;	/* granularity */

/* Fills buf with a pattern that differs at every 4-byte offset and seed. */
static void
pattern(unsigned char *buf, size_t len, uint32_t seed)
{
	size_t i;

	for (i = 0; i + 4 <= len; i += 4) {
		uint32_t v = ((uint32_t)(i / 4) * 2654435761u) ^ seed;

		memcpy(buf + i, &v, 4);
	}
	for (; i < len; i++)
		buf[i] = (unsigned char)seed;
}

/* Maps the grant back to back, writes one pattern over the whole range,
 * reads windows across every boundary, then checks each chunk alone holds
 * its own slice (so the pieces are distinct memory, in order). */
static void
use_grant(const struct tc_chunk *ch, size_t n, uint32_t seed)
{
	const size_t win = 64 * 1024;
	struct tc_mapping m, one;
	unsigned char *buf, *back;
	uint64_t off = 0;
	size_t i;

	tc_map(ch, n, &m);
	CHECK((buf = malloc(m.size)) != NULL && (back = malloc(m.size)) != NULL);
	pattern(buf, m.size, seed);
	CHECK_OK(cuMemcpyHtoD(m.va, buf, m.size));
	for (i = 1; i < n; i++) {
		off += ch[i - 1].size;
		memset(back, 0, 2 * win);
		CHECK_OK(cuMemcpyDtoH(back, m.va + off - win, 2 * win));
		CHECK(memcmp(back, buf + off - win, 2 * win) == 0);
		/* A write straddling the boundary, read back from both sides. */
		memset(back, 0xa5, 2 * win);
		CHECK_OK(cuMemcpyHtoD(m.va + off - win, back, 2 * win));
		memset(buf + off - win, 0xa5, 2 * win);
	}
	CHECK_OK(cuMemcpyDtoH(back, m.va, m.size));
	CHECK(memcmp(back, buf, m.size) == 0);
	for (i = 0, off = 0; i < n; off += ch[i].size, i++) {
		tc_map(&ch[i], 1, &one);
		CHECK_OK(cuMemcpyDtoH(back, one.va, ch[i].size));
		CHECK(memcmp(back, buf + off, ch[i].size) == 0);
		tc_unmap(&one);
	}
	tc_unmap(&m);
	free(buf);
	free(back);
}

/* Acquires and checks the grant's shape; returns the number of chunks. */
static int
grant(struct tc *c, uint64_t bytes, unsigned flags, uint64_t min_piece,
    struct tc_chunk *ch)
{
	uint64_t sum = 0;
	int n, i, j;

	n = tc_acquire_ex(c, bytes, flags, min_piece, ch, MAXCH, NULL, 0);
	CHECK(n > 0);
	for (i = 0; i < n; i++) {
		CHECK(ch[i].size > 0 && ch[i].size % G == 0);
		for (j = 0; j < i; j++)
			CHECK(ch[i].id != ch[j].id);
		sum += ch[i].size;
	}
	CHECK(sum == (bytes + G - 1) / G * G);
	return n;
}

static void
give_back(struct tc *c, struct tc_chunk *ch, int n)
{
	uint64_t ids[MAXCH];
	int i;

	for (i = 0; i < n; i++)
		ids[i] = ch[i].id;
	tc_close_chunks(ch, (size_t)n);
	CHECK(tc_release(c, ids, (size_t)n) == 0);
}

static bool
has_id(const struct tc_chunk *ch, int n, uint64_t id)
{
	int i;

	for (i = 0; i < n; i++)
		if (ch[i].id == id)
			return true;
	return false;
}

/* Acquires one chunk of each size (each created: the pool starts empty),
 * then releases those whose index is even; held gets the rest. */
static void
scatter(struct tc *c, const uint64_t *sizes, int n, struct tc_chunk *freed,
    struct tc_chunk *held)
{
	struct tc_chunk ch[MAXCH];
	int i, nf = 0, nh = 0;

	for (i = 0; i < n; i++) {
		CHECK(tc_acquire(c, sizes[i], 0, &ch[i], 1) == 1);
		CHECK(ch[i].size == sizes[i]);
	}
	for (i = 0; i < n; i++) {
		if (i % 2 == 0) {
			freed[nf++] = ch[i];
			give_back(c, &ch[i], 1);
		} else
			held[nh++] = ch[i];
	}
}

static void
start(const char *sub, const char *conf, pid_t *d)
{
	*d = tc_start_in(sub, conf, sockpath, sizeof(sockpath), &adm);
	G = adm->granularity;
}

static void
stop(pid_t d)
{
	tc_stop_with(d, adm);
}

/* Default frag_ratio (0.25) and piece cap. */
static void
test_default_ratio(void)
{
	struct tc_chunk freed[4], held[4], ch[MAXCH];
	uint64_t sizes[8] = { 2, 2, 2, 2, 1, 1, 1, 1 };
	uint64_t creates, cbytes, fits;
	Vmm__PoolStats ps;
	struct tc *a;
	pid_t d;
	int n, i;

	/* Fragments must stay pooled here: no swapping them for growth. */
	start("ratio", "idle_timeout_ms = 0\nswap_idle = 0\n", &d);
	/* Freed: 2G, 2G, 1G, 1G; the others stay held. */
	for (i = 0; i < 8; i++)
		sizes[i] *= G;
	a = tc_open(sockpath, "stitcher", false);
	CHECK(a->max_chunks == 64);	/* the default max_pieces */
	scatter(a, sizes, 8, freed, held);
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 6 * G && ps.lent_bytes == 6 * G);
	CHECK(tc_counter(adm, "creates") == 8);
	fits = tc_counter(adm, "fits");

	/* 4G, no chunk fits: stitched from pooled chunks only. */
	n = grant(a, 4 * G, STITCH, 0, ch);
	CHECK(n >= 2);
	for (i = 0; i < n; i++)
		CHECK(has_id(freed, 4, ch[i].id));
	CHECK(tc_counter(adm, "stitches") == 1);
	CHECK(tc_counter(adm, "creates") == 8);
	CHECK(tc_counter(adm, "fits") == fits);
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 2 * G && ps.lent_bytes == 10 * G);
	use_grant(ch, (size_t)n, 1);
	give_back(a, ch, n);

	/* 6G: the pieces >= 1.5G (the 2G ones) first, then the 1G
	 * fragments rather than new memory: nothing is created. */
	creates = tc_counter(adm, "creates");
	cbytes = tc_counter(adm, "create_bytes");
	n = grant(a, 6 * G, STITCH, 0, ch);
	CHECK(n == 4);
	CHECK(ch[0].size == 2 * G && ch[1].size == 2 * G);
	CHECK(has_id(ch, n, freed[2].id) && has_id(ch, n, freed[3].id));
	CHECK(has_id(ch, n, freed[0].id) && has_id(ch, n, freed[1].id));
	CHECK(tc_counter(adm, "creates") == creates);
	CHECK(tc_counter(adm, "create_bytes") == cbytes);
	CHECK(tc_counter(adm, "stitches") == 2);
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 0);
	use_grant(ch, (size_t)n, 2);
	give_back(a, ch, n);

	/* 8G with IGNORE_FRAG_RATIO: every pooled chunk (2G×2, 1G×2), and
	 * only the 2G they do not cover created, in pieces of 1G (the
	 * power of two of units no smaller than 8G / 8). */
	n = grant(a, 8 * G, STITCH | IGNORE, 0, ch);
	CHECK(n == 6 && ch[4].size == G && ch[5].size == G);
	CHECK(has_id(ch, n, freed[2].id) && has_id(ch, n, freed[3].id));
	CHECK(tc_counter(adm, "creates") == creates + 2);
	CHECK(tc_counter(adm, "create_bytes") == cbytes + 2 * G);
	CHECK(tc_counter(adm, "stitches") == 3);
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 0 && ps.lent_bytes == 14 * G);
	use_grant(ch, (size_t)n, 3);
	give_back(a, ch, n);

	/* Without ALLOW_STITCH: one new chunk, never pieces. */
	n = grant(a, 5 * G, 0, 0, ch);
	CHECK(n == 1);
	CHECK(tc_counter(adm, "creates") == creates + 3);
	CHECK(tc_counter(adm, "stitches") == 3);
	give_back(a, ch, n);

	/* A request one pooled chunk fits is a fit, not a stitch. */
	fits = tc_counter(adm, "fits");
	n = grant(a, 5 * G, STITCH, 0, ch);
	CHECK(n == 1 && ch[0].size == 5 * G);
	CHECK(tc_counter(adm, "fits") == fits + 1);
	CHECK(tc_counter(adm, "stitches") == 3);
	give_back(a, ch, n);

	give_back(a, held, 4);
	tc_pool(adm, &ps);
	CHECK(ps.lent_bytes == 0 && ps.chunks_lent == 0);
	CHECK(ps.idle_bytes == ps.physical_bytes);
	tc_close(a);
	stop(d);
}

/* frag_ratio = 0.5 and max_pieces = 3. */
static void
test_ratio_half_cap3(void)
{
	struct tc_chunk freed[4], held[4], ch[MAXCH];
	uint64_t sizes[8] = { 2, 2, 2, 2, 1, 1, 1, 1 };
	Vmm__PoolStats ps;
	uint64_t creates;
	struct tc *a;
	pid_t d;
	int n;

	start("half", "idle_timeout_ms = 0\nswap_idle = 0\nfrag_ratio = 0.5\n"
	    "max_pieces = 3\n",
	    &d);
	for (n = 0; n < 8; n++)
		sizes[n] *= G;
	a = tc_open(sockpath, "stitcher", false);
	CHECK(a->max_chunks == 3);
	scatter(a, sizes, 8, freed, held);
	creates = tc_counter(adm, "creates");

	/* 4G: 2G pieces are exactly 0.5 × 4G, so they are used. */
	n = grant(a, 4 * G, STITCH, 0, ch);
	CHECK(n == 2 && has_id(ch, n, freed[0].id) && has_id(ch, n, freed[1].id));
	CHECK(tc_counter(adm, "creates") == creates);
	use_grant(ch, (size_t)n, 4);
	give_back(a, ch, n);

	/* 3G: a 2G piece (>= 1.5G) first, then a 1G fragment rather than
	 * creating 1G. */
	n = grant(a, 3 * G, STITCH, 0, ch);
	CHECK(n == 2 && ch[0].size == 2 * G);
	CHECK(has_id(ch, n, freed[2].id) || has_id(ch, n, freed[3].id));
	CHECK(tc_counter(adm, "creates") == creates);
	use_grant(ch, (size_t)n, 5);
	give_back(a, ch, n);
	/* Pool: 2G, 2G, 1G, 1G. */

	/* The same with IGNORE_FRAG_RATIO: 2G + 1G from the pool. */
	n = grant(a, 3 * G, STITCH | IGNORE, 0, ch);
	CHECK(n == 2);
	CHECK(tc_counter(adm, "creates") == creates);
	give_back(a, ch, n);

	/* 7G: the pool holds 6G in four pieces and the cap is three: two
	 * pooled pieces and one created for the rest. */
	n = grant(a, 7 * G, STITCH | IGNORE, 0, ch);
	CHECK(n == 3);
	CHECK(tc_counter(adm, "creates") == creates + 1);
	use_grant(ch, (size_t)n, 6);
	give_back(a, ch, n);

	give_back(a, held, 4);
	tc_pool(adm, &ps);
	CHECK(ps.lent_bytes == 0 && ps.idle_bytes == ps.physical_bytes);
	tc_close(a);
	stop(d);
}

/* Finer contracts: the client's Acquire.min_piece, and a request that
 * max_pieces pooled chunks cover exactly.  Returns how many were broken. */
static int
test_policy(void)
{
	struct tc_chunk freed[3], held[3], ch[MAXCH];
	uint64_t sizes[6] = { 2, 2, 2, 2, 1, 1 };
	uint64_t creates;
	struct tc *a;
	pid_t d;
	int n, bad = 0;

	start("policy", "idle_timeout_ms = 0\nmax_pieces = 2\n", &d);
	for (n = 0; n < 6; n++)
		sizes[n] *= G;
	a = tc_open(sockpath, "stitcher", false);
	scatter(a, sizes, 6, freed, held);
	/* Pool: 2G, 2G, 1G. */
	creates = tc_counter(adm, "creates");

	/* Two pooled 2G chunks cover 4G within the cap of two pieces:
	 * nothing needs creating. */
	n = grant(a, 4 * G, STITCH, 0, ch);
	if (tc_counter(adm, "creates") != creates || n != 2 ||
	    !has_id(ch, n, freed[0].id) || !has_id(ch, n, freed[1].id)) {
		fprintf(stderr, "policy: 4G over two pooled 2G chunks with "
		    "max_pieces = 2 created a chunk\n");
		bad++;
	}
	give_back(a, ch, n);
	give_back(a, held, 3);
	tc_close(a);
	stop(d);

	start("policy2", "idle_timeout_ms = 0\n", &d);
	a = tc_open(sockpath, "stitcher", false);
	scatter(a, sizes, 6, freed, held);
	creates = tc_counter(adm, "creates");
	/* Pool: 2G, 2G, 1G.  Acquire.min_piece = 2G: the 2G pieces come
	 * first; the 1G fragment still goes before new memory, so only the
	 * 1G nothing pooled covers is created. */
	n = grant(a, 6 * G, STITCH | IGNORE, 2 * G, ch);
	if (n != 4 || ch[0].size != 2 * G || ch[1].size != 2 * G ||
	    !has_id(ch, n, freed[2].id) ||
	    tc_counter(adm, "creates") != creates + 1 ||
	    ch[3].size != G) {
		fprintf(stderr, "policy: 6G with min_piece = 2G over pooled "
		    "2G, 2G, 1G: not the 2G pieces, then the fragment, then "
		    "1G created\n");
		bad++;
	}
	give_back(a, ch, n);
	give_back(a, held, 3);
	tc_close(a);
	stop(d);
	return bad;
}

/* New memory for a stitchable grant comes in pieces of one power-of-two
 * size, no smaller than 1/8 of the request (the last takes the
 * remainder), within the piece cap; freed, the pieces serve smaller
 * requests without new memory.  A grant that may not be stitched gets one
 * chunk. */
static void
test_split(void)
{
	struct tc_chunk ch[MAXCH], ch2[MAXCH];
	uint64_t creates;
	struct tc *a;
	pid_t d;
	int n, m, i;

	start("split", "idle_timeout_ms = 0\n", &d);
	a = tc_open(sockpath, "splitter", false);
	/* 20 units: pieces of 4 (>= 20/8 = 2.5), 4 4 4 4 4. */
	n = grant(a, 20 * G, STITCH, 0, ch);
	CHECK(n == 5);
	for (i = 0; i < n; i++)
		CHECK(ch[i].size == 4 * G);
	CHECK(tc_counter(adm, "creates") == 5);
	use_grant(ch, (size_t)n, 8);
	/* 18 units: pieces of 4 (>= 2.25), the last 2. */
	m = grant(a, 18 * G, STITCH, 0, ch2);
	CHECK(m == 5 && ch2[4].size == 2 * G);
	CHECK(tc_counter(adm, "creates") == 10);
	give_back(a, ch2, m);
	give_back(a, ch, n);
	creates = tc_counter(adm, "creates");
	/* 8 units, after the 20 are freed: two pooled 4-unit pieces. */
	n = grant(a, 8 * G, STITCH, 0, ch);
	CHECK(n == 2 && tc_counter(adm, "creates") == creates);
	give_back(a, ch, n);
	/* 7 units without ALLOW_STITCH: one chunk of 7 units. */
	n = grant(a, 7 * G, 0, 0, ch);
	CHECK(n == 1 && tc_counter(adm, "creates") == creates + 1);
	give_back(a, ch, n);
	tc_close(a);
	stop(d);

	/* max_pieces = 2: 20 units in two pieces, 16 and the remainder 4. */
	start("split2", "idle_timeout_ms = 0\nmax_pieces = 2\n", &d);
	a = tc_open(sockpath, "splitter", false);
	n = grant(a, 20 * G, STITCH, 0, ch);
	CHECK(n == 2 && ch[0].size == 16 * G && ch[1].size == 4 * G);
	give_back(a, ch, n);
	tc_close(a);
	stop(d);
}

/* swap_idle (the default): when the pool must create memory and memory is
 * short (here pool_max, 16 units, is near), idle chunks that request could
 * not use (here one too big to fit) go back to the GPU, so the
 * pool does not grow by them; when memory is not short (no pool_max, a
 * large device) they stay pooled for reuse, and nothing is destroyed. */
static void
test_swap(bool short_of_memory)
{
	struct tc_chunk ch[MAXCH], held, idle;
	uint64_t rel;
	Vmm__PoolStats ps;
	struct tc *a;
	pid_t d;
	int n;
	char conf[128];

	/* G, vmmd's unit, is known from the earlier tests' daemons. */
	CHECK(G >= (1u << 20));
	snprintf(conf, sizeof(conf), "idle_timeout_ms = 0\npool_max = %lluM\n",
	    (unsigned long long)(16 * G >> 20));
	start(short_of_memory ? "swap" : "calm", short_of_memory ? conf :
	    "idle_timeout_ms = 0\n", &d);
	a = tc_open(sockpath, "stitcher", false);
	CHECK(tc_acquire(a, 10 * G, 0, &held, 1) == 1);
	CHECK(tc_acquire(a, 5 * G, 0, &idle, 1) == 1);
	give_back(a, &idle, 1);
	rel = tc_counter(adm, "gpu_releases");
	/* 15 of 16 units: short with pool_max.  1G: the idle 5G chunk is
	 * too big to fit; 1G is created. */
	n = tc_acquire_ex(a, G, STITCH, 0, ch, MAXCH, NULL, 0);
	CHECK(n == 1 && ch[0].size == G && ch[0].id != idle.id);
	tc_pool(adm, &ps);
	if (short_of_memory) {
		CHECK(ps.idle_bytes == 0 && ps.physical_bytes == 11 * G);
		CHECK(tc_counter(adm, "gpu_releases") == rel + 1);
	} else {
		CHECK(ps.idle_bytes == 5 * G && ps.physical_bytes == 16 * G);
		CHECK(tc_counter(adm, "gpu_releases") == rel);
	}
	give_back(a, ch, n);
	give_back(a, &held, 1);
	tc_close(a);
	stop(d);
}

/* Acquire.exact: a free chunk one unit larger fits a plain request
 * (within the slack of 1/16) but not an exact one, nor do stitched
 * pieces. */
static int
test_exact(void)
{
	struct tc_chunk big, ch[MAXCH], halves[2];
	uint64_t creates;
	struct tc *a;
	pid_t d;
	int n, bad = 0;

	start("exact", "idle_timeout_ms = 0\n", &d);
	a = tc_open(sockpath, "exact", false);
	CHECK(tc_acquire_ex(a, 32 * G, 0, 0, &big, 1, NULL, 0) == 1);
	give_back(a, &big, 1);
	/* Plain: the pooled 32-unit chunk is close enough for 31 units. */
	n = tc_acquire_ex(a, 31 * G, 0, 0, ch, MAXCH, NULL, 0);
	CHECK(n == 1 && ch[0].size == 32 * G);
	give_back(a, ch, n);
	/* Exact: a new 31-unit chunk, the 32-unit one stays pooled. */
	creates = tc_counter(adm, "creates");
	n = tc_acquire_ex(a, 31 * G, TC_ACQUIRE_EXACT, 0, ch, MAXCH, NULL, 0);
	if (n != 1 || ch[0].size != 31 * G || ch[0].id == big.id ||
	    tc_counter(adm, "creates") != creates + 1) {
		fprintf(stderr, "exact: 31 units answered with %d chunk(s), "
		    "the first of %llu units\n", n,
		    (unsigned long long)(n > 0 ? ch[0].size / G : 0));
		bad++;
	}
	if (n > 0)
		give_back(a, ch, n);
	/* Two free 4-unit chunks would stitch 8 units: exact (even asking
	 * to stitch) gets one 8-unit chunk. */
	CHECK(tc_acquire_ex(a, 4 * G, 0, 0, &halves[0], 1, NULL, 0) == 1);
	CHECK(tc_acquire_ex(a, 4 * G, 0, 0, &halves[1], 1, NULL, 0) == 1);
	give_back(a, halves, 2);
	n = tc_acquire_ex(a, 8 * G, TC_ACQUIRE_EXACT | STITCH | IGNORE, 0, ch,
	    MAXCH, NULL, 0);
	if (n != 1 || ch[0].size != 8 * G) {
		fprintf(stderr, "exact: 8 units stitched from %d chunk(s)\n", n);
		bad++;
	}
	if (n > 0)
		give_back(a, ch, n);
	tc_close(a);
	stop(d);
	return bad;
}

/* Acquire.up_to: for a one-unit request with no one-unit chunk idle, the
 * smallest idle chunk up to up_to is lent instead of a create (counted in
 * fits_within); a one-unit chunk idle still fits first; none within
 * up_to, or none within the quota, and vmmd creates as before; the larger
 * chunk lent is distinct memory that holds data. */
static int
test_within(void)
{
	Vmm__SetQuota quota = VMM__SET_QUOTA__INIT;
	struct tc_chunk c4, c8, one, ch;
	uint64_t creates, within;
	Vmm__Envelope env;
	struct tc *a, *q;
	pid_t d;
	int bad = 0;

	start("within", "idle_timeout_ms = 0\n", &d);
	a = tc_open(sockpath, "within", false);
	CHECK(tc_acquire(a, 4 * G, 0, &c4, 1) == 1 && c4.size == 4 * G);
	CHECK(tc_acquire(a, 8 * G, 0, &c8, 1) == 1 && c8.size == 8 * G);
	give_back(a, &c4, 1);
	give_back(a, &c8, 1);
	creates = tc_counter(adm, "creates");
	within = tc_counter(adm, "fits_within");
	/* Up to 2 units: no idle chunk that small, a create. */
	CHECK(tc_acquire_within(a, G, 2 * G, &one) == 1);
	CHECK(one.size == G && tc_counter(adm, "creates") == creates + 1);
	/* Up to 16 units: the 4-unit chunk, the smallest, no create. */
	CHECK(tc_acquire_within(a, G, 16 * G, &ch) == 1);
	if (ch.size != 4 * G || ch.id != c4.id ||
	    tc_counter(adm, "creates") != creates + 1 ||
	    tc_counter(adm, "fits_within") != within + 1) {
		fprintf(stderr, "within: 1 unit up to 16 got %llu units, "
		    "%llu created\n", (unsigned long long)(ch.size / G),
		    (unsigned long long)(tc_counter(adm, "creates") - creates));
		bad++;
	}
	use_grant(&ch, 1, 7);
	give_back(a, &ch, 1);
	/* A one-unit chunk idle fits first (a plain fit, not a wider one). */
	give_back(a, &one, 1);
	CHECK(tc_acquire_within(a, G, 16 * G, &ch) == 1);
	CHECK(ch.id == one.id && ch.size == G);
	CHECK(tc_counter(adm, "fits_within") == within + 1);
	give_back(a, &ch, 1);
	tc_close(a);
	/* A quota of 3 units, 1 held: the idle 4- and 8-unit chunks are
	 * beyond it, so a new unit is made. */
	quota.request_id = tc_rid(adm);
	quota.kind = VMM__QUOTA_KIND__QUOTA_KIND_NAME;
	quota.key = (char *)"within-q";
	quota.bytes = 3 * G;
	env = vmm_frame_env_set_quota(&quota);
	vmm_frame_msg_free(tc_call_expect(adm, &env, VMM__ENVELOPE__MSG_ACK));
	q = tc_open(sockpath, "within-q", false);
	CHECK(tc_acquire(q, G, 0, &one, 1) == 1);	/* the 1-unit chunk */
	creates = tc_counter(adm, "creates");
	CHECK(tc_acquire_within(q, G, 16 * G, &ch) == 1);
	if (ch.size != G || tc_counter(adm, "creates") != creates + 1) {
		fprintf(stderr, "within: over the quota, %llu units lent\n",
		    (unsigned long long)(ch.size / G));
		bad++;
	}
	give_back(q, &ch, 1);
	give_back(q, &one, 1);
	tc_close(q);
	stop(d);
	return bad;
}

/* Acquire.no_create: from idle memory only, else WOULD_CREATE, no create,
 * no recall (another session reports cache it could give back), and the
 * session goes on; over the quota, the quota's error. */
static int
test_nocreate(void)
{
	Vmm__SetQuota quota = VMM__SET_QUOTA__INIT;
	Vmm__Report rep = VMM__REPORT__INIT;
	struct tc_chunk c4, ch, kept;
	uint64_t creates, wc, recalls, fails;
	struct vmm_frame_msg *m;
	Vmm__Envelope env;
	struct tc *a, *b, *q;
	pid_t d;
	int bad = 0;

	/* recall_idle_ms = 0: a session that just asked is recalled too. */
	start("nocreate", "idle_timeout_ms = 0\nrecall_idle_ms = 0\n", &d);
	a = tc_open(sockpath, "nocreate", false);
	CHECK(tc_acquire(a, 4 * G, 0, &c4, 1) == 1 && c4.size == 4 * G);
	give_back(a, &c4, 1);
	/* Another process holds a unit it reports as cached (freed): a plain
	 * Acquire that would create might recall it; no_create never does. */
	b = tc_open(sockpath, "cacher", false);
	CHECK(tc_acquire(b, G, 0, &kept, 1) == 1);
	rep.request_id = tc_rid(b);
	rep.cached_bytes = G;
	env = vmm_frame_env_report(&rep);
	/* The answer says what vmmd lends to the others: nothing to b (a
	 * holds nothing), b's unit to a. */
	m = tc_call_expect(b, &env, VMM__ENVELOPE__MSG_ACK);
	CHECK(vmm_frame_msg_env(m)->ack->others_lent_bytes == 0);
	vmm_frame_msg_free(m);
	rep.request_id = tc_rid(a);
	rep.cached_bytes = 0;
	m = tc_call_expect(a, &env, VMM__ENVELOPE__MSG_ACK);
	CHECK(vmm_frame_msg_env(m)->ack->others_lent_bytes == kept.size);
	vmm_frame_msg_free(m);
	creates = tc_counter(adm, "creates");
	wc = tc_counter(adm, "would_create");
	recalls = tc_counter(adm, "recalls");
	fails = tc_counter(adm, "failures");
	/* One unit, only a 4-unit chunk idle (beyond the 1/16 fit). */
	if (tc_acquire_idle(a, G, 0, &ch) !=
	    -VMM__ERROR_CODE__ERROR_CODE_WOULD_CREATE) {
		fprintf(stderr, "nocreate: 1 unit not refused\n");
		bad++;
	}
	CHECK(tc_counter(adm, "creates") == creates);
	CHECK(tc_counter(adm, "would_create") == wc + 1);
	CHECK(tc_counter(adm, "recalls") == recalls);
	/* Up to 8 units: the 4-unit chunk. */
	CHECK(tc_acquire_idle(a, G, 8 * G, &ch) == 1);
	CHECK(ch.id == c4.id && ch.size == 4 * G);
	use_grant(&ch, 1, 11);
	give_back(a, &ch, 1);
	/* Its own size: a plain fit. */
	CHECK(tc_acquire_idle(a, 4 * G, 0, &ch) == 1 && ch.id == c4.id);
	/* Nothing idle now: refused again, and the session goes on. */
	CHECK(tc_acquire_idle(a, G, 2 * G, &kept) ==
	    -VMM__ERROR_CODE__ERROR_CODE_WOULD_CREATE);
	CHECK(tc_counter(adm, "would_create") == wc + 2);
	CHECK(tc_counter(adm, "creates") == creates);
	/* An answer, not a failure (a tool adding up failures). */
	CHECK(tc_counter(adm, "failures") == fails);
	give_back(a, &ch, 1);
	/* Without the flag: the unit b reports is recalled first (b never
	 * answers: the wait ends), then one is created. */
	CHECK(tc_acquire(a, G, 0, &ch, 1) == 1 && ch.size == G);
	CHECK(tc_counter(adm, "recalls") == recalls + 1);
	CHECK(tc_counter(adm, "creates") == creates + 1);
	give_back(a, &ch, 1);
	tc_close(a);
	tc_close(b);
	/* Over the quota: the quota's answer, not WOULD_CREATE. */
	quota.request_id = tc_rid(adm);
	quota.kind = VMM__QUOTA_KIND__QUOTA_KIND_NAME;
	quota.key = (char *)"nocreate-q";
	quota.bytes = G;
	env = vmm_frame_env_set_quota(&quota);
	vmm_frame_msg_free(tc_call_expect(adm, &env, VMM__ENVELOPE__MSG_ACK));
	q = tc_open(sockpath, "nocreate-q", false);
	CHECK(tc_acquire(q, G, 0, &kept, 1) == 1);
	CHECK(tc_acquire_idle(q, G, 0, &ch) ==
	    -VMM__ERROR_CODE__ERROR_CODE_QUOTA);
	CHECK(tc_counter(adm, "would_create") == wc + 2);
	give_back(q, &kept, 1);
	tc_close(q);
	/* Stitched: two idle units serve two, not three, and a refusal
	 * lends neither (both serve the next ask). */
	{
		struct tc_chunk two[2], got[4];
		unsigned st = VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH |
		    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_IGNORE_FRAG_RATIO;

		a = tc_open(sockpath, "nocreate-st", false);
		CHECK(tc_acquire(a, G, 0, &two[0], 1) == 1);
		CHECK(tc_acquire(a, G, 0, &two[1], 1) == 1);
		give_back(a, two, 2);
		creates = tc_counter(adm, "creates");
		CHECK(tc_acquire_ex(a, 3 * G, st | TC_ACQUIRE_NO_CREATE, 0,
		    got, 4, NULL, 0) ==
		    -VMM__ERROR_CODE__ERROR_CODE_WOULD_CREATE);
		CHECK(tc_counter(adm, "would_create") == wc + 3);
		CHECK(tc_acquire_ex(a, 2 * G, st | TC_ACQUIRE_NO_CREATE, 0,
		    got, 4, NULL, 0) == 2);
		CHECK((got[0].id == two[0].id && got[1].id == two[1].id) ||
		    (got[0].id == two[1].id && got[1].id == two[0].id));
		CHECK(tc_counter(adm, "creates") == creates);
		give_back(a, got, 2);
		tc_close(a);
	}
	stop(d);
	return bad;
}

static int
test_partial(void)
{
	const unsigned st = STITCH | IGNORE;
	struct tc_chunk u[6], ch[MAXCH], rest[MAXCH];
	uint64_t creates, partials, lent, sum;
	struct tc *a;
	pid_t d;
	int n, m, i, j;

	start("partial", "idle_timeout_ms = 0\nmax_pieces = 4\n", &d);
	a = tc_open(sockpath, "partial", false);
	/* Six idle one-unit chunks. */
	for (i = 0; i < 6; i++)
		CHECK(tc_acquire(a, G, 0, &u[i], 1) == 1 && u[i].size == G);
	give_back(a, u, 6);
	creates = tc_counter(adm, "creates");
	partials = tc_counter(adm, "partials");
	lent = tc_counter(adm, "grant_bytes");
	/* 8 units: four idle units fill the grant; two more stay idle. */
	n = tc_acquire_ex(a, 8 * G, st | TC_ACQUIRE_PARTIAL, 0, ch, MAXCH,
	    NULL, 0);
	CHECK(n == 4);
	for (i = 0, sum = 0; i < n; i++) {
		CHECK(ch[i].size == G && has_id(u, 6, ch[i].id));
		for (j = 0; j < i; j++)
			CHECK(ch[i].id != ch[j].id);
		sum += ch[i].size;
	}
	CHECK(sum == 4 * G);
	CHECK(tc_counter(adm, "creates") == creates);
	CHECK(tc_counter(adm, "partials") == partials + 1);
	CHECK(tc_counter(adm, "grant_bytes") == lent + 4 * G);	/* lent */
	use_grant(ch, (size_t)n, 21);
	/* The rest, 4 units: the two idle ones and new memory for the other
	 * two (the cap is not reached: a whole grant, as ever). */
	m = grant(a, 4 * G, st | TC_ACQUIRE_PARTIAL, 0, rest);
	CHECK(m >= 3);
	for (i = 0, j = 0; i < m; i++)
		j += has_id(u, 6, rest[i].id) && !has_id(ch, n, rest[i].id);
	CHECK(j == 2);
	CHECK(tc_counter(adm, "creates") == creates + (uint64_t)(m - 2));
	CHECK(tc_counter(adm, "partials") == partials + 1);
	use_grant(rest, (size_t)m, 22);
	give_back(a, ch, n);
	give_back(a, rest, m);
	/* Idle now: eight units.  Without the flag, 10 units take three of
	 * them (a slot kept for the create) and create the rest in one
	 * chunk while five units stay idle. */
	creates = tc_counter(adm, "creates");
	n = grant(a, 10 * G, st, 0, ch);
	CHECK(n == 4 && ch[3].size == 7 * G);
	CHECK(tc_counter(adm, "creates") == creates + 1);
	CHECK(tc_counter(adm, "partials") == partials + 1);
	give_back(a, ch, n);
	/* With it (and no_create): four idle pieces, the largest (the 7-unit
	 * chunk) first, nothing created, no WOULD_CREATE. */
	creates = tc_counter(adm, "creates");
	n = tc_acquire_ex(a, 16 * G, st | TC_ACQUIRE_PARTIAL |
	    TC_ACQUIRE_NO_CREATE, 0, ch, MAXCH, NULL, 0);
	CHECK(n == 4);
	for (i = 0, sum = 0; i < n; i++)
		sum += ch[i].size;
	CHECK(sum == 10 * G && ch[0].size == 7 * G);
	CHECK(tc_counter(adm, "creates") == creates);
	CHECK(tc_counter(adm, "partials") == partials + 2);
	use_grant(ch, (size_t)n, 23);
	give_back(a, ch, n);
	tc_close(a);
	stop(d);
	return 0;
}

/* A child of test_orphan: acquires the bytes it is sent as one chunk, sends
 * back its id, then on 'c' closes its session and waits, on 'r' releases
 * the chunk and stays, on 'x' (or EOF) exits without releasing anything. */
static int
orphan_child(void *arg, int ctl)
{
	struct tc_chunk ch;
	struct tc *c;
	uint64_t bytes;
	char cmd;

	(void)arg;
	tc_ctl_recv(ctl, &bytes, sizeof(bytes), 10000);
	c = tc_open(sockpath, "leaver", false);
	CHECK(tc_acquire(c, bytes, 0, &ch, 1) == 1);
	tc_ctl_send(ctl, &ch.id, sizeof(ch.id));
	for (;;) {
		if (recv(ctl, &cmd, 1, 0) != 1 || cmd == 'x')
			return 0;
		if (cmd == 'c')
			tc_close(c);
		if (cmd == 'r') {
			tc_close_chunks(&ch, 1);
			CHECK(tc_release(c, &ch.id, 1) == 0);
		}
		tc_ctl_send(ctl, &cmd, 1);
	}
}

/* Starts an orphan_child holding bytes; its chunk's id in *id. */
static pid_t
orphan_spawn(uint64_t bytes, uint64_t *id, int *ctl)
{
	pid_t p = tc_spawn(orphan_child, NULL, ctl);

	tc_ctl_send(*ctl, &bytes, sizeof(bytes));
	tc_ctl_recv(*ctl, id, sizeof(*id), 10000);
	return p;
}

/* Waits until vmmd counts quarantined and idle bytes (a session's end is
 * noticed in vmmd's own time). */
static void
orphan_settle(uint64_t quarantined, uint64_t idle)
{
	Vmm__PoolStats ps;
	int i;

	for (i = 0; i < 500; i++) {
		tc_pool(adm, &ps);
		if (ps.quarantined_bytes == quarantined && ps.idle_bytes == idle)
			return;
		tc_sleep_ms(10);
	}
	fprintf(stderr, "orphan: quarantined %llu idle %llu, want %llu %llu\n",
	    (unsigned long long)ps.quarantined_bytes,
	    (unsigned long long)ps.idle_bytes, (unsigned long long)quarantined,
	    (unsigned long long)idle);
	CHECK(!"the pool settled");
}

static int
test_orphan(void)
{
	struct tc_chunk held, mine, one[3], fit, two;
	uint64_t gone_id, fit_id, third_id, rel, creates;
	Vmm__PoolStats ps;
	struct tc *a;
	pid_t d, p;
	int ctl, n;
	char cmd;

	start("orphan", "idle_timeout_ms = 0\n", &d);
	a = tc_open(sockpath, "stayer", false);
	CHECK(tc_acquire(a, 2 * G, 0, &held, 1) == 1);
	/* The staying process's own idle chunk: never destroyed for it. */
	CHECK(tc_acquire(a, 6 * G, 0, &mine, 1) == 1);
	give_back(a, &mine, 1);

	/* A process holds 8 units, closes its session and lives on: its
	 * chunk is quarantined (it may still map it).  A growing request
	 * neither takes it nor gives it to the GPU. */
	p = orphan_spawn(8 * G, &gone_id, &ctl);
	cmd = 'c';
	tc_ctl_send(ctl, &cmd, 1);
	tc_ctl_recv(ctl, &cmd, 1, 10000);
	orphan_settle(8 * G, 6 * G);
	rel = tc_counter(adm, "gpu_releases");
	n = tc_acquire_ex(a, G, STITCH, 0, &one[0], 1, NULL, 0);
	CHECK(n == 1 && one[0].size == G && one[0].id != gone_id);
	tc_pool(adm, &ps);
	CHECK(ps.quarantined_bytes == 8 * G && ps.idle_bytes == 6 * G);
	CHECK(tc_counter(adm, "gpu_releases") == rel);
	CHECK(tc_counter(adm, "orphan_swaps") == 0);

	/* The process exits: its 8 units are idle, an orphan.  The next
	 * unit created (neither idle chunk fits it) takes its place: the
	 * orphan goes to the GPU, the staying process's 6 units stay. */
	cmd = 'x';
	tc_ctl_send(ctl, &cmd, 1);
	close(ctl);
	CHECK(tc_wait_child(p, 0) == 0);
	orphan_settle(0, 14 * G);
	n = tc_acquire_ex(a, G, STITCH, 0, &one[1], 1, NULL, 0);
	CHECK(n == 1 && one[1].size == G && one[1].id != gone_id);
	tc_pool(adm, &ps);
	if (ps.idle_bytes != 6 * G || ps.physical_bytes != 10 * G ||
	    tc_counter(adm, "gpu_releases") != rel + 1 ||
	    tc_counter(adm, "orphan_swaps") != 1) {
		fprintf(stderr, "orphan: after the exit, idle %llu physical %llu "
		    "units, %llu given back\n",
		    (unsigned long long)(ps.idle_bytes / G),
		    (unsigned long long)(ps.physical_bytes / G),
		    (unsigned long long)(tc_counter(adm, "gpu_releases") - rel));
		CHECK(!"the orphan was swapped for the new unit");
	}
	/* No orphan left: growth keeps the living process's idle chunk. */
	n = tc_acquire_ex(a, G, STITCH, 0, &one[2], 1, NULL, 0);
	CHECK(n == 1 && one[2].size == G);
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 6 * G && ps.physical_bytes == 11 * G);
	CHECK(tc_counter(adm, "gpu_releases") == rel + 1);

	/* An orphan that fits is lent, not created anew nor destroyed. */
	p = orphan_spawn(4 * G, &fit_id, &ctl);
	close(ctl);		/* EOF: the child exits */
	CHECK(tc_wait_child(p, 0) == 0);
	orphan_settle(0, 10 * G);
	creates = tc_counter(adm, "creates");
	CHECK(tc_acquire(a, 4 * G, 0, &fit, 1) == 1);
	CHECK(fit.id == fit_id && tc_counter(adm, "creates") == creates);
	/* Lent, it is no orphan: given back by the living process, it is
	 * that process's idle memory and stays, while a third process's
	 * orphan (newer) goes for the next growth. */
	give_back(a, &fit, 1);
	p = orphan_spawn(8 * G, &third_id, &ctl);
	close(ctl);
	CHECK(tc_wait_child(p, 0) == 0);
	orphan_settle(0, 18 * G);
	give_back(a, &one[0], 1);	/* a live idle unit, too small to fit */
	n = tc_acquire_ex(a, 3 * G, 0, 0, &one[0], 1, NULL, 0);
	CHECK(n == 1 && one[0].size == 3 * G);
	tc_pool(adm, &ps);
	CHECK(tc_counter(adm, "orphan_swaps") == 2);
	CHECK(ps.idle_bytes == 11 * G && ps.lent_bytes == 7 * G);
	CHECK(tc_acquire(a, 4 * G, 0, &fit, 1) == 1);
	CHECK(fit.id == fit_id && fit.id != third_id);
	/* A process gives 5 units back and lives on: its idle memory, not
	 * swapped for growth; once it exits, it is an orphan and is. */
	p = orphan_spawn(5 * G, &gone_id, &ctl);
	cmd = 'r';
	tc_ctl_send(ctl, &cmd, 1);
	tc_ctl_recv(ctl, &cmd, 1, 10000);
	orphan_settle(0, 12 * G);
	give_back(a, &one[1], 1);	/* 1 unit: it would fit; 3 now */
	n = tc_acquire_ex(a, 3 * G, 0, 0, &one[1], 1, NULL, 0);
	CHECK(n == 1 && one[1].size == 3 * G);
	CHECK(tc_counter(adm, "orphan_swaps") == 2);
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 13 * G);
	cmd = 'x';
	tc_ctl_send(ctl, &cmd, 1);
	close(ctl);
	CHECK(tc_wait_child(p, 0) == 0);
	for (n = 0; n < 500 && tc_sessions(adm) > 2; n++)
		tc_sleep_ms(10);
	CHECK(tc_sessions(adm) == 2);
	n = tc_acquire_ex(a, 2 * G, 0, 0, &two, 1, NULL, 0);
	CHECK(n == 1 && two.size == 2 * G);
	tc_pool(adm, &ps);
	if (tc_counter(adm, "orphan_swaps") != 3 || ps.idle_bytes != 8 * G) {
		fprintf(stderr, "orphan: what a process gave back before it "
		    "exited: idle %llu units\n",
		    (unsigned long long)(ps.idle_bytes / G));
		CHECK(!"swapped once the process is gone");
	}
	/* Still ours and known to vmmd: it gives back without a fault. */
	give_back(a, &two, 1);
	give_back(a, &fit, 1);
	give_back(a, one, 3);
	give_back(a, &held, 1);
	tc_pool(adm, &ps);
	CHECK(ps.lent_bytes == 0);
	tc_close(a);
	stop(d);
	return 0;
}

/* Writes seed's pattern over one chunk held by c (mapped for the call). */
static void
fill_chunk(const struct tc_chunk *ch, uint32_t seed)
{
	struct tc_mapping m;
	unsigned char *buf;

	tc_map(ch, 1, &m);
	CHECK((buf = malloc(m.size)) != NULL);
	pattern(buf, m.size, seed);
	CHECK_OK(cuMemcpyHtoD(m.va, buf, m.size));
	CHECK_OK(cuCtxSynchronize());	/* done before the unmap */
	tc_unmap(&m);
	free(buf);
}

/* Whether a chunk still holds seed's pattern. */
static bool
chunk_holds(const struct tc_chunk *ch, uint32_t seed)
{
	struct tc_mapping m;
	unsigned char *buf, *back;
	bool same;

	tc_map(ch, 1, &m);
	CHECK((buf = malloc(m.size)) != NULL && (back = malloc(m.size)) != NULL);
	pattern(buf, m.size, seed);
	CHECK_OK(cuMemcpyDtoH(back, m.va, m.size));
	same = memcmp(back, buf, m.size) == 0;
	tc_unmap(&m);
	free(buf);
	free(back);
	return same;
}

static int
test_cover(void)
{
	struct tc_chunk idle[2], other, ch[MAXCH];
	uint64_t creates, covers, stitches, fits, sum;
	Vmm__PoolStats ps;
	struct tc *a, *b;
	pid_t d;
	int n, i;

	start("cover", "idle_timeout_ms = 0\nswap_idle = 0\n", &d);
	a = tc_open(sockpath, "coverer", false);
	b = tc_open(sockpath, "bystander", false);
	/* Idle: 4G and 3G (a's, given back); b holds 2G it wrote. */
	CHECK(tc_acquire(a, 4 * G, 0, &idle[0], 1) == 1);
	CHECK(tc_acquire(a, 3 * G, 0, &idle[1], 1) == 1);
	CHECK(tc_acquire(b, 2 * G, 0, &other, 1) == 1);
	CHECK(idle[0].size == 4 * G && idle[1].size == 3 * G &&
	    other.size == 2 * G);
	fill_chunk(&other, 77);
	give_back(a, idle, 2);
	creates = tc_counter(adm, "creates");
	covers = tc_counter(adm, "covers");
	stitches = tc_counter(adm, "stitches");
	fits = tc_counter(adm, "fits");

	/* Acquire.no_create is not covered: vmmd would not create for it
	 * (the library gives its heap's idle pages back and asks again). */
	CHECK(tc_acquire_ex(a, 6 * G, STITCH | TC_ACQUIRE_NO_CREATE, 0, ch,
	    MAXCH, NULL, 0) == -VMM__ERROR_CODE__ERROR_CODE_WOULD_CREATE);
	CHECK(tc_counter(adm, "covers") == covers);
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 7 * G);	/* nothing picked stays lent */

	/* 6G: the 4G piece, and the 2G missing covered by the 3G chunk
	 * (at most 2G more): 7G lent, nothing created. */
	n = tc_acquire_ex(a, 6 * G, STITCH, 0, ch, MAXCH, NULL, 0);
	CHECK(n == 2);
	CHECK(ch[0].id == idle[0].id && ch[0].size == 4 * G);
	CHECK(ch[1].id == idle[1].id && ch[1].size == 3 * G);
	CHECK(tc_counter(adm, "creates") == creates);
	CHECK(tc_counter(adm, "covers") == covers + 1);
	CHECK(tc_counter(adm, "stitches") == stitches + 1);
	CHECK(tc_counter(adm, "fits") == fits);
	CHECK(!has_id(ch, n, other.id));
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 0 && ps.lent_bytes == 9 * G);
	use_grant(ch, (size_t)n, 5);
	CHECK(chunk_holds(&other, 77));
	give_back(a, ch, n);

	/* 5G: the 4G piece; 1G missing, the 3G chunk is more than twice
	 * that: 1G created, the 3G stays idle. */
	n = tc_acquire_ex(a, 5 * G, STITCH, 0, ch, MAXCH, NULL, 0);
	CHECK(n == 2);
	for (i = 0, sum = 0; i < n; i++)
		sum += ch[i].size;
	CHECK(sum == 5 * G && has_id(ch, n, idle[0].id));
	CHECK(!has_id(ch, n, idle[1].id) && !has_id(ch, n, other.id));
	CHECK(tc_counter(adm, "creates") == creates + 1);
	CHECK(tc_counter(adm, "covers") == covers + 1);
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 3 * G);
	use_grant(ch, (size_t)n, 6);
	CHECK(chunk_holds(&other, 77));
	give_back(a, ch, n);

	/* Acquire.exact (the 3G idle would cover 2G): one new 2G chunk. */
	n = tc_acquire_ex(a, 2 * G, TC_ACQUIRE_EXACT | STITCH, 0, ch, MAXCH,
	    NULL, 0);
	CHECK(n == 1 && ch[0].size == 2 * G && ch[0].id != idle[1].id);
	CHECK(tc_counter(adm, "covers") == covers + 1);
	give_back(a, ch, n);

	CHECK(chunk_holds(&other, 77));
	give_back(b, &other, 1);
	tc_pool(adm, &ps);
	CHECK(ps.lent_bytes == 0 && ps.chunks_lent == 0);
	tc_close(b);
	tc_close(a);
	stop(d);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "orphan") == 0)
		return test_orphan() == 0 ? 0 : 1;
	tc_cuda_init();
	if (argc > 1 && strcmp(argv[1], "exact") == 0)
		return test_exact() == 0 ? 0 : 1;
	if (argc > 1 && strcmp(argv[1], "cover") == 0)
		return test_cover() == 0 ? 0 : 1;
	if (argc > 1 && strcmp(argv[1], "within") == 0)
		return test_within() == 0 ? 0 : 1;
	if (argc > 1 && strcmp(argv[1], "nocreate") == 0)
		return test_nocreate() == 0 ? 0 : 1;
	if (argc > 1 && strcmp(argv[1], "partial") == 0)
		return test_partial() == 0 ? 0 : 1;
	if (argc > 1 && strcmp(argv[1], "policy") == 0) {
		return test_policy() == 0 ? 0 : 1;
	}
	test_default_ratio();
	test_ratio_half_cap3();
	test_split();
	test_swap(true);
	test_swap(false);
	return 0;
}
