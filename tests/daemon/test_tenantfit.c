/*
 * The free list by tenant (pool.c) against a brute-force model, with
 * cross_tenant = recreate: root and nobody each pool chunks of 12 sizes in
 * the same bins, nobody's released last (newest in every bin).  Then each
 * of root's grants of one of those sizes must be, by the model, its own
 * newest idle chunk of that size (a fit) or, when it has none, a new chunk
 * (a create) — never one of nobody's, never a fit the model does not
 * expect; vmmd's fits and creates counters must match the model exactly.
 * A broken index (a chunk missing from its list, a list of the wrong
 * tenant or bin, a stale entry) breaks one of these.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define NOBODY	65534
#define NSIZES	12
#define NCH	60

static char	sockpath[1100];

/* Sizes in units, each grant: spread over NSIZES. */
static uint64_t
units_of(int k, int mul)
{
	return (uint64_t)(1 + (k * mul) % NSIZES);
}

/* nobody: pools NCH chunks (sends their ids), releases them on 'R'
 * (answers 'D'), exits on 'X'. */
static int
child_other(void *arg, int ctl)
{
	struct tc_chunk ch[4];
	uint64_t ids[NCH];
	gid_t g = NOBODY;
	struct tc *c;
	char cmd;
	int k;

	(void)arg;
	tc_become(NOBODY, NOBODY, &g, 1);
	c = tc_open(sockpath, "other", false);
	for (k = 0; k < NCH; k++) {
		CHECK(tc_acquire(c, units_of(k, 1) * c->granularity, 0, ch,
		    4) == 1);
		close(ch[0].fd);
		ids[k] = ch[0].id;
	}
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

int
main(void)
{
	/* The model: root's idle chunk ids per size, newest last. */
	uint64_t idle[NSIZES + 1][NCH], mine[NCH], theirs[NCH], got[NCH];
	uint64_t fits0, creates0, fits1, creates1, u, want_fits = 0;
	size_t nidle[NSIZES + 1] = { 0 }, ngot = 0;
	struct tc_chunk ch[4];
	struct tc *a, *adm;
	char ack;
	pid_t d, kid;
	int k, ctl;

	d = tc_start_in("tf", "idle_timeout_ms = 0\nswap_idle = 0\n"
	    "cross_tenant = recreate\nsocket_group = nogroup\n", sockpath,
	    sizeof(sockpath), &adm);
	u = adm->granularity;
	a = tc_open(sockpath, "root", false);
	for (k = 0; k < NCH; k++) {
		CHECK(tc_acquire(a, units_of(k, 7) * u, 0, ch, 4) == 1);
		close(ch[0].fd);
		mine[k] = ch[0].id;
	}
	/* Root gives back every other chunk, in order: per size, the last
	 * given back is the newest. */
	for (k = 0; k < NCH; k += 2) {
		uint64_t s = units_of(k, 7);

		CHECK(tc_release(a, &mine[k], 1) == 0);
		idle[s][nidle[s]++] = mine[k];
	}
	kid = tc_spawn(child_other, NULL, &ctl);
	tc_ctl_recv(ctl, theirs, sizeof(theirs), 30000);
	tc_ctl_send(ctl, "R", 1);
	tc_ctl_recv(ctl, &ack, 1, 30000);
	CHECK(ack == 'D');

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

	tc_ctl_send(ctl, "X", 1);
	CHECK(tc_wait_child(kid, 0) == 0);
	close(ctl);
	tc_close(a);
	tc_stop_with(d, adm);
	return 0;
}
