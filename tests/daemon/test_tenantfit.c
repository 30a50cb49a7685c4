/*
 * The free list by tenant and by holder (pool.c's groups) against
 * brute-force models, with cross_tenant = recreate.  Each case fails if an
 * index is broken (a chunk missing from its list, a list of the wrong
 * tenant, bin or holder, a stale entry, the wrong order).
 *
 * (no argument) root and nobody each pool chunks of 12 sizes in the same
 *   bins, nobody's released last (newest in every bin).  Then each of
 *   root's grants of one of those sizes must be, by the model, its own
 *   newest idle chunk of that size (a fit) or, when it has none, a new
 *   chunk (a create) — never one of nobody's, never a fit the model does
 *   not expect; vmmd's fits and creates counters must match the model.
 * stitch  the same pools; root's stitched grants (IGNORE_FRAG_RATIO) larger
 *   than any chunk must take, in order, what the model picks: its own idle
 *   chunks, largest first no larger than what is missing, each size oldest
 *   first; the rest created, never one of nobody's.
 * swap  the same pools with the pool near pool_max (memory short): each of
 *   root's grants of a size nothing fits creates it and gives back, oldest
 *   first, idle chunks the grant could not use (nobody's, root's larger
 *   than it), stepping over root's smaller ones; the chunks given back
 *   (count, bytes, another tenant's) must be the model's, and root's idle
 *   chunks left (each fit takes the newest of its size) too.
 * orphans  five processes of nobody each take six chunks, give three back
 *   and exit holding three: all are orphans, each exit's in the order
 *   vmmd marks them (those held, then those given back, oldest first).
 *   Each of root's growing grants swaps out orphans oldest first: counts
 *   and bytes must be the model's.
 * cover  a stitch's remainder is covered by one idle chunk up to twice its
 *   size (pool_cover_rest) only if that chunk is the asker's tenant's:
 *   root's stitched 4-unit grant over its idle 3-unit chunk must create
 *   the unit missing while nobody's idle 2-unit chunk would cover it
 *   (covers unchanged, nobody's chunk not granted and still idle); with a
 *   2-unit chunk of root's own idle instead, that one covers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define NOBODY	65534
#define NSIZES	12
#define NCH	60
#define STITCH	VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH
#define IGNORE	VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_IGNORE_FRAG_RATIO
#define MAXCH	64
#define NKIDS	5	/* orphans: processes */
#define KIDCH	6	/* orphans: chunks each takes */

static char	sockpath[1100];

/* Sizes in units, each grant: spread over NSIZES. */
static uint64_t
units_of(int k, int mul)
{
	return (uint64_t)(1 + (k * mul) % NSIZES);
}

/* In a child: becomes nobody, connects as name and takes n chunks of
 * units[k] units each; their ids in ids. */
static struct tc *
nobody_takes(const char *name, const uint64_t *units, uint64_t *ids, int n)
{
	struct tc_chunk ch[4];
	gid_t g = NOBODY;
	struct tc *c;
	int k;

	tc_become(NOBODY, NOBODY, &g, 1);
	c = tc_open(sockpath, name, false);
	for (k = 0; k < n; k++) {
		CHECK(tc_acquire(c, units[k] * c->granularity, 0, ch, 4) == 1);
		close(ch[0].fd);
		ids[k] = ch[0].id;
	}
	return c;
}

/* nobody: pools NCH chunks (sends their ids), releases them on 'R'
 * (answers 'D'), exits on 'X'. */
static int
child_other(void *arg, int ctl)
{
	uint64_t units[NCH], ids[NCH];
	struct tc *c;
	char cmd;
	int k;

	(void)arg;
	for (k = 0; k < NCH; k++)
		units[k] = units_of(k, 1);
	c = nobody_takes("other", units, ids, NCH);
	tc_ctl_send(ctl, ids, sizeof(ids));
	tc_ctl_recv(ctl, &cmd, 1, 30000);
	CHECK(cmd == 'R');
	CHECK(tc_release(c, ids, NCH) == 0);
	tc_ctl_send(ctl, "D", 1);
	tc_ctl_recv(ctl, &cmd, 1, 30000);
	CHECK(cmd == 'X');
	tc_close(c);
	return 0;
}

static bool
in(const uint64_t *v, size_t n, uint64_t id)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (v[i] == id)
			return true;
	return false;
}

/* The model of the idle chunks, oldest first: id, size in units, whose
 * (0 root, 1 nobody), and whether it is still idle. */
struct idle_chunk {
	uint64_t	id, units;
	int		whose;
	bool		idle;
};
static struct idle_chunk	age[2 * NCH + NKIDS * KIDCH];
static size_t			nage;

static void
age_add(uint64_t id, uint64_t units, int whose)
{
	age[nage].id = id;
	age[nage].units = units;
	age[nage].whose = whose;
	age[nage].idle = true;
	nage++;
}

static struct tc	*adm, *a;
static uint64_t		u, mine[NCH], theirs[NCH];
static int		ctl;
static pid_t		kid;

/* Root takes NCH chunks of 12 sizes, nobody NCH of every size; root gives
 * every other one back, in order (units_of(k, 7): odd sizes only), then
 * nobody all of its.  Both stay connected. */
static pid_t
setup(const char *conf)
{
	struct tc_chunk ch[4];
	pid_t d;
	char ack;
	int k;

	d = tc_start_in("tf", conf, sockpath, sizeof(sockpath), &adm);
	u = adm->granularity;
	a = tc_open(sockpath, "root", false);
	for (k = 0; k < NCH; k++) {
		CHECK(tc_acquire(a, units_of(k, 7) * u, 0, ch, 4) == 1);
		close(ch[0].fd);
		mine[k] = ch[0].id;
	}
	/* Every chunk made before any is given back: nothing is swapped
	 * while the pool grows (test_swap runs near pool_max). */
	kid = tc_spawn(child_other, NULL, &ctl);
	tc_ctl_recv(ctl, theirs, sizeof(theirs), 30000);
	for (k = 0; k < NCH; k += 2) {
		CHECK(tc_release(a, &mine[k], 1) == 0);
		age_add(mine[k], units_of(k, 7), 0);
	}
	tc_ctl_send(ctl, "R", 1);
	tc_ctl_recv(ctl, &ack, 1, 30000);
	CHECK(ack == 'D');
	for (k = 0; k < NCH; k++)
		age_add(theirs[k], units_of(k, 1), 1);
	return d;
}

static void
teardown(pid_t d)
{
	tc_ctl_send(ctl, "X", 1);
	CHECK(tc_wait_child(kid, 0) == 0);
	close(ctl);
	tc_close(a);
	tc_stop_with(d, adm);
}

static bool
known(uint64_t id)
{
	return in(mine, NCH, id) || in(theirs, NCH, id);
}

static int
test_fit(void)
{
	/* The model: root's idle chunk ids per size, newest last. */
	uint64_t idle[NSIZES + 1][NCH], got[NCH];
	uint64_t fits0, creates0, fits1, creates1, want_fits = 0;
	size_t nidle[NSIZES + 1] = { 0 }, ngot = 0, i;
	struct tc_chunk ch[4];
	pid_t d;
	int k;

	d = setup("idle_timeout_ms = 0\nswap_idle = 0\n"
	    "cross_tenant = recreate\nsocket_group = nogroup\n");
	for (i = 0; i < nage; i++)
		if (age[i].whose == 0)
			idle[age[i].units][nidle[age[i].units]++] = age[i].id;

	CHECK(tc_stats(adm, NULL, "fits", &fits0) == 0);
	CHECK(tc_stats(adm, NULL, "creates", &creates0) == 0);
	for (k = 0; k < NCH; k++) {
		uint64_t s = units_of(k, 5), id;

		CHECK(tc_acquire(a, s * u, 0, ch, 4) == 1);
		close(ch[0].fd);
		id = ch[0].id;
		CHECK(ch[0].size == s * u);
		CHECK(!in(theirs, NCH, id));
		if (nidle[s] > 0) {
			/* Sizes below 16 units fit exactly: its newest. */
			CHECK(id == idle[s][--nidle[s]]);
			want_fits++;
		} else {
			CHECK(!in(mine, NCH, id));
		}
		CHECK(!in(got, ngot, id));
		got[ngot++] = id;
	}
	CHECK(tc_stats(adm, NULL, "fits", &fits1) == 0);
	CHECK(tc_stats(adm, NULL, "creates", &creates1) == 0);
	printf("%llu fits, %llu creates (model: %llu fits)\n",
	    (unsigned long long)(fits1 - fits0),
	    (unsigned long long)(creates1 - creates0),
	    (unsigned long long)want_fits);
	CHECK(fits1 - fits0 == want_fits);
	CHECK(creates1 - creates0 == NCH - want_fits);
	CHECK(want_fits > 0 && want_fits < NCH);
	teardown(d);
	return 0;
}

static int
test_stitch(void)
{
	struct tc_chunk ch[MAXCH];
	uint64_t pick[MAXCH], seen[20 * MAXCH], left, sum, picked = 0;
	size_t npick, nseen = 0, i, j;
	pid_t d;
	int n, g;

	d = setup("idle_timeout_ms = 0\nswap_idle = 0\n"
	    "cross_tenant = recreate\nsocket_group = nogroup\n");
	for (g = 0; g < 12; g++) {
		uint64_t want = 13 + (uint64_t)(g * 7) % 17;

		/* The model: root's idle chunks, largest no larger than what
		 * is missing first, each size oldest first. */
		npick = 0;
		left = want;
		for (i = NSIZES; i >= 1; i--) {
			for (j = 0; j < nage && left >= i; j++) {
				if (!age[j].idle || age[j].whose != 0 ||
				    age[j].units != i)
					continue;
				age[j].idle = false;
				pick[npick++] = age[j].id;
				left -= i;
			}
		}
		n = tc_acquire_ex(a, want * u, STITCH | IGNORE, 0, ch, MAXCH,
		    NULL, 0);
		CHECK(n >= 1);
		for (i = 0, sum = 0; i < (size_t)n; i++) {
			close(ch[i].fd);
			sum += ch[i].size;
			CHECK(!in(seen, nseen, ch[i].id));
			CHECK(nseen < sizeof(seen) / sizeof(seen[0]));
			seen[nseen++] = ch[i].id;
			if (i < npick) {
				if (ch[i].id != pick[i])
					fprintf(stderr, "grant %d (%llu units), "
					    "piece %zu: chunk %llu, model %llu\n",
					    g, (unsigned long long)want, i,
					    (unsigned long long)ch[i].id,
					    (unsigned long long)pick[i]);
				CHECK(ch[i].id == pick[i]);
			} else
				CHECK(!known(ch[i].id));	/* created */
		}
		CHECK(sum == want * u && (size_t)n >= npick);
		picked += npick;
	}
	printf("%llu idle chunks stitched as the model picked them\n",
	    (unsigned long long)picked);
	CHECK(picked > 10);
	teardown(d);
	return 0;
}

/* Idle memory given back: the counters vmmd keeps of it. */
struct gone {
	uint64_t	releases, bytes, tenant, orphan;
};

static void
gone_now(struct gone *g)
{
	g->releases = tc_counter(adm, "gpu_releases");
	g->bytes = tc_counter(adm, "gpu_release_bytes");
	g->tenant = tc_counter(adm, "tenant_swaps");
	g->orphan = tc_counter(adm, "orphan_swaps");
}

/* The model of a swap: gives back idle chunks oldest first, from those
 * usable(chunk) says the grant could not use, until bytes are covered;
 * adds what it gave back to *g. */
static void
model_swap(uint64_t units, bool (*unusable)(const struct idle_chunk *,
    uint64_t), struct gone *g)
{
	size_t j;

	for (j = 0; j < nage && units > 0; j++) {
		if (!age[j].idle || !unusable(&age[j], units))
			continue;
		age[j].idle = false;
		units = age[j].units >= units ? 0 : units - age[j].units;
		g->releases++;
		g->bytes += age[j].units * u;
		if (age[j].whose != 0)
			g->tenant++;
	}
}

/* What root's grant of want units (nothing fits it) could not use:
 * nobody's chunks, root's larger than it. */
static bool
swap_unusable(const struct idle_chunk *c, uint64_t want)
{
	return c->whose != 0 || c->units > want;
}

static int
test_swap(void)
{
	static const uint64_t sizes[] = { 2, 4, 6, 2, 8, 10, 4, 12, 6, 14, 2, 8 };
	Vmm__PoolStats ps;
	struct gone model, now, start;
	struct tc_chunk ch[4];
	char conf[512];
	uint64_t unit = tc_probe_unit(), roots = 0, physical;
	size_t g, j;
	pid_t d;

	/* Root holds 30 chunks (195 units) and 30 idle (195), nobody 60
	 * idle (390): the pool holds 780 units, more than 7/8 of pool_max
	 * (short) with room for the largest grant. */
	snprintf(conf, sizeof(conf), "idle_timeout_ms = 0\nswap_idle = 1\n"
	    "cross_tenant = recreate\nsocket_group = nogroup\n"
	    "pool_max = %llu\n", (unsigned long long)(796 * unit));
	d = setup(conf);
	CHECK(u == unit);
	gone_now(&start);
	model = start;
	tc_pool(adm, &ps);
	physical = ps.physical_bytes;
	CHECK(physical == 780 * u);
	for (g = 0; g < sizeof(sizes) / sizeof(sizes[0]); g++) {
		uint64_t before = model.bytes;

		CHECK(tc_acquire(a, sizes[g] * u, 0, ch, 4) == 1);
		close(ch[0].fd);
		CHECK(!known(ch[0].id) && ch[0].size == sizes[g] * u);
		model_swap(sizes[g], swap_unusable, &model);
		physical += sizes[g] * u - (model.bytes - before);
		gone_now(&now);
		tc_pool(adm, &ps);
		if (now.releases != model.releases || now.bytes != model.bytes ||
		    now.tenant != model.tenant || ps.physical_bytes != physical)
			fprintf(stderr, "grant %zu (%llu units): %llu chunks "
			    "(%llu units, %llu nobody's) given back, model %llu "
			    "(%llu, %llu)\n", g, (unsigned long long)sizes[g],
			    (unsigned long long)(now.releases - start.releases),
			    (unsigned long long)((now.bytes - start.bytes) / u),
			    (unsigned long long)(now.tenant - start.tenant),
			    (unsigned long long)(model.releases - start.releases),
			    (unsigned long long)((model.bytes - start.bytes) / u),
			    (unsigned long long)(model.tenant - start.tenant));
		CHECK(now.releases == model.releases);
		CHECK(now.bytes == model.bytes && now.tenant == model.tenant);
		CHECK(ps.physical_bytes == physical);
	}
	for (j = 0; j < nage; j++)
		if (!age[j].idle && age[j].whose == 0)
			roots++;
	/* Which of a size went: root's idle chunks left are the model's,
	 * each fit taking the newest of its size. */
	for (j = nage; j-- > 0;) {
		if (!age[j].idle || age[j].whose != 0)
			continue;
		CHECK(tc_acquire(a, age[j].units * u, 0, ch, 4) == 1);
		close(ch[0].fd);
		if (ch[0].id != age[j].id)
			fprintf(stderr, "fit of %llu units: chunk %llu, model "
			    "%llu\n", (unsigned long long)age[j].units,
			    (unsigned long long)ch[0].id,
			    (unsigned long long)age[j].id);
		CHECK(ch[0].id == age[j].id);
	}
	printf("%llu chunks given back (%llu of root's), as the model\n",
	    (unsigned long long)(model.releases - start.releases),
	    (unsigned long long)roots);
	/* Both kinds went, and root's smaller ones were stepped over. */
	CHECK(roots > 0 && model.tenant - start.tenant > 0);
	teardown(d);
	return 0;
}

/* A process of nobody for test_orphans: takes KIDCH chunks of the sizes it
 * is sent (their ids sent back), gives back those at even places on 'R'
 * (answers 'D'), exits holding the rest on 'X' or EOF. */
static int
child_leaver(void *arg, int ctl_fd)
{
	uint64_t units[KIDCH], ids[KIDCH];
	struct tc *c;
	char cmd;
	int k;

	(void)arg;
	tc_ctl_recv(ctl_fd, units, sizeof(units), 30000);
	c = nobody_takes("leaver", units, ids, KIDCH);
	tc_ctl_send(ctl_fd, ids, sizeof(ids));
	tc_ctl_recv(ctl_fd, &cmd, 1, 30000);
	CHECK(cmd == 'R');
	for (k = 0; k < KIDCH; k += 2)
		CHECK(tc_release(c, &ids[k], 1) == 0);
	tc_ctl_send(ctl_fd, "D", 1);
	if (recv(ctl_fd, &cmd, 1, 0) != 1 || cmd == 'X')
		_exit(0);		/* holding the rest */
	return 0;
}

static bool
orphan_unusable(const struct idle_chunk *c, uint64_t want)
{
	(void)want;
	return c->whose != 0;	/* every orphan here is nobody's */
}

static int
test_orphans(void)
{
	static const uint64_t sizes[] = { 3, 5, 2, 7, 1, 4, 6, 9, 2, 11 };
	uint64_t units[NKIDS][KIDCH], ids[NKIDS][KIDCH], physical;
	struct gone model, now, start;
	Vmm__PoolStats ps;
	struct tc_chunk ch[4];
	int kctl[NKIDS], c, k, i;
	pid_t kids[NKIDS], d;
	uint32_t sessions;
	size_t g;
	char ack;

	d = tc_start_in("tf", "idle_timeout_ms = 0\ncross_tenant = recreate\n"
	    "socket_group = nogroup\n", sockpath, sizeof(sockpath), &adm);
	u = adm->granularity;
	a = tc_open(sockpath, "root", false);
	/* All take their chunks before any gives one back: none reuses
	 * another's. */
	for (c = 0; c < NKIDS; c++) {
		for (k = 0; k < KIDCH; k++)
			units[c][k] = 1 + (uint64_t)(c * 7 + k * 5) % NSIZES;
		kids[c] = tc_spawn(child_leaver, NULL, &kctl[c]);
		tc_ctl_send(kctl[c], units[c], sizeof(units[c]));
		tc_ctl_recv(kctl[c], ids[c], sizeof(ids[c]), 30000);
	}
	for (c = 0; c < NKIDS; c++) {
		tc_ctl_send(kctl[c], "R", 1);
		tc_ctl_recv(kctl[c], &ack, 1, 30000);
		CHECK(ack == 'D');
	}
	/* One exit at a time: its held chunks become orphans first (in the
	 * order it took them), then those it gave back, oldest first. */
	sessions = tc_sessions(adm);
	for (c = 0; c < NKIDS; c++) {
		tc_ctl_send(kctl[c], "X", 1);
		close(kctl[c]);
		CHECK(tc_wait_child(kids[c], 0) == 0);
		for (i = 0; i < 1000 && tc_sessions(adm) > sessions - 1 -
		    (uint32_t)c; i++)
			tc_sleep_ms(10);
		CHECK(tc_sessions(adm) == sessions - 1 - (uint32_t)c);
		for (k = 1; k < KIDCH; k += 2)
			age_add(ids[c][k], units[c][k], 1);
		for (k = 0; k < KIDCH; k += 2)
			age_add(ids[c][k], units[c][k], 1);
	}
	gone_now(&start);
	model = start;
	tc_pool(adm, &ps);
	physical = ps.physical_bytes;
	CHECK(ps.idle_bytes == physical && ps.lent_bytes == 0);
	for (g = 0; g < sizeof(sizes) / sizeof(sizes[0]); g++) {
		uint64_t before = model.bytes;

		CHECK(tc_acquire(a, sizes[g] * u, 0, ch, 4) == 1);
		close(ch[0].fd);
		model_swap(sizes[g], orphan_unusable, &model);
		model.orphan = model.releases - start.releases + start.orphan;
		physical += sizes[g] * u - (model.bytes - before);
		gone_now(&now);
		tc_pool(adm, &ps);
		if (now.releases != model.releases || now.bytes != model.bytes ||
		    now.orphan != model.orphan || ps.physical_bytes != physical)
			fprintf(stderr, "grant %zu (%llu units): %llu orphans "
			    "(%llu units) given back, model %llu (%llu)\n", g,
			    (unsigned long long)sizes[g],
			    (unsigned long long)(now.orphan - start.orphan),
			    (unsigned long long)((now.bytes - start.bytes) / u),
			    (unsigned long long)(model.orphan - start.orphan),
			    (unsigned long long)((model.bytes - start.bytes) / u));
		CHECK(now.releases == model.releases);
		CHECK(now.bytes == model.bytes && now.orphan == model.orphan);
		CHECK(ps.physical_bytes == physical);
	}
	printf("%llu orphans given back, as the model\n",
	    (unsigned long long)(model.orphan - start.orphan));
	CHECK(model.orphan - start.orphan >= 10);
	tc_close(a);
	tc_stop_with(d, adm);
	return 0;
}

/* nobody: one 2-unit chunk, given back at once (sends its id); exits on
 * 'X'. */
static int
child_two(void *arg, int cs)
{
	uint64_t units = 2, id;
	struct tc *c;
	char cmd;

	(void)arg;
	c = nobody_takes("two", &units, &id, 1);
	CHECK(tc_release(c, &id, 1) == 0);
	tc_ctl_send(cs, &id, sizeof(id));
	tc_ctl_recv(cs, &cmd, 1, 30000);
	CHECK(cmd == 'X');
	tc_close(c);
	return 0;
}

/* Root's stitched grant of 4 units: its chunks' ids in ids (n of them). */
static int
cover_grant(uint64_t *ids)
{
	struct tc_chunk ch[4];
	int n, k;

	n = tc_acquire(a, 4 * u, STITCH | IGNORE, ch, 4);
	CHECK(n > 0);
	tc_close_chunks(ch, (size_t)n);
	for (k = 0; k < n; k++)
		ids[k] = ch[k].id;
	return n;
}

static uint64_t
take_one(uint64_t units)
{
	struct tc_chunk ch[4];

	CHECK(tc_acquire(a, units * u, 0, ch, 4) == 1);
	close(ch[0].fd);
	return ch[0].id;
}

static int
test_cover(void)
{
	uint64_t other, three, two, one, covers, creates, ids[4];
	Vmm__PoolStats ps;
	pid_t d;
	int n;

	d = tc_start_in("tf", "idle_timeout_ms = 0\nswap_idle = 0\n"
	    "cross_tenant = recreate\nsocket_group = nogroup\n", sockpath,
	    sizeof(sockpath), &adm);
	u = adm->granularity;
	a = tc_open(sockpath, "root", false);
	three = take_one(3);
	kid = tc_spawn(child_two, NULL, &ctl);
	tc_ctl_recv(ctl, &other, sizeof(other), 30000);
	CHECK(tc_release(a, &three, 1) == 0);
	/* Idle: root's 3 units, nobody's 2.  4 units: root's 3, and the unit
	 * missing created: nobody's 2 would cover it but is another
	 * tenant's. */
	covers = tc_counter(adm, "covers");
	creates = tc_counter(adm, "creates");
	n = cover_grant(ids);
	CHECK(n == 2 && in(ids, 2, three) && !in(ids, 2, other));
	CHECK(tc_counter(adm, "covers") == covers);
	CHECK(tc_counter(adm, "creates") == creates + 1);
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 2 * u);		/* nobody's, untouched */
	one = ids[0] == three ? ids[1] : ids[0];
	CHECK(tc_release(a, ids, 2) == 0);
	/* Root's own 2 units idle instead (created: nobody's is not
	 * root's), its unit held: the same grant is covered by root's 2. */
	CHECK(take_one(1) == one);
	two = take_one(2);
	CHECK(two != other);
	CHECK(tc_release(a, &two, 1) == 0);
	n = cover_grant(ids);
	CHECK(n == 2 && in(ids, 2, three) && in(ids, 2, two));
	CHECK(tc_counter(adm, "covers") == covers + 1);
	CHECK(tc_release(a, ids, 2) == 0);
	CHECK(tc_release(a, &one, 1) == 0);
	tc_ctl_send(ctl, "X", 1);
	CHECK(tc_wait_child(kid, 0) == 0);
	close(ctl);
	tc_close(a);
	tc_stop_with(d, adm);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "fit";

	if (strcmp(c, "fit") == 0)
		return test_fit();
	if (strcmp(c, "stitch") == 0)
		return test_stitch();
	if (strcmp(c, "swap") == 0)
		return test_swap();
	if (strcmp(c, "orphans") == 0)
		return test_orphans();
	if (strcmp(c, "cover") == 0)
		return test_cover();
	fprintf(stderr, "usage: test_daemon_tenantfit "
	    "[fit|stitch|swap|orphans|cover]\n");
	return 2;
}
