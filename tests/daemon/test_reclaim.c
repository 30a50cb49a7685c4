/*
 * vmmd leases across real processes: chunks of a SIGKILLed holder come back
 * at once (and the daemon's fds with them); a holder that hung up but still
 * lives keeps its chunks quarantined, lent to nobody else, until it dies;
 * memory freed by one process is the next one's if it is of the same uid
 * (tenant), and another uid gets new memory instead; with cross_tenant =
 * reuse it is scrubbed when it changes uid (and only then), and shows the
 * old data when scrubbing is off — which proves the test can tell; after
 * trim --recall, what comes back goes to the GPU.
 *
 * The parent never initialises CUDA: the children do, after fork().
 */
#include <cuda.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define NOBODY	65534
#define MAXCH	8

static char		sockpath[1100];
static struct tc	*adm;
static uint64_t		G;

/* What a child is to do. */
struct role {
	uid_t		uid;		/* NOBODY: drop root first */
	uint32_t	seed;		/* pattern to write or look for */
	size_t		n;		/* holder: chunk sizes */
	uint64_t	sizes[MAXCH];
	bool		hang_up;	/* holder: close the socket, live on */
};

/* What a child reports. */
struct report {
	size_t		n;
	uint64_t	ids[MAXCH];
	uint64_t	bytes;
	int		all_zero;	/* reader */
	int		all_pattern;
};

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

static void
child_setup(const struct role *r)
{
	gid_t g = NOBODY;

	if (r->uid == NOBODY)
		tc_become(NOBODY, NOBODY, &g, 1);
	tc_cuda_init();
}

/* Acquires and maps chunks, writes them, reports, optionally hangs up, and
 * waits to be killed. */
static int
child_holder(void *arg, int ctl)
{
	const struct role *r = arg;
	struct tc_chunk ch[MAXCH];
	struct tc_mapping m;
	struct report rep = { 0 };
	unsigned char *buf;
	struct tc *c;
	size_t i;

	child_setup(r);
	c = tc_open(sockpath, "holder", false);
	for (i = 0; i < r->n; i++) {
		CHECK(tc_acquire(c, r->sizes[i], 0, &ch[i], 1) == 1);
		rep.ids[i] = ch[i].id;
		rep.bytes += ch[i].size;
	}
	rep.n = r->n;
	tc_map(ch, r->n, &m);
	CHECK((buf = malloc(m.size)) != NULL);
	pattern(buf, m.size, r->seed);
	CHECK_OK(cuMemcpyHtoD(m.va, buf, m.size));
	if (r->hang_up)
		tc_close(c);
	tc_ctl_send(ctl, &rep, sizeof(rep));
	for (;;)
		pause();
}

/* Acquires one chunk, fills it with the pattern, unmaps and releases it. */
static int
child_writer(void *arg, int ctl)
{
	const struct role *r = arg;
	struct report rep = { 0 };
	struct tc_mapping m;
	struct tc_chunk ch;
	unsigned char *buf;
	struct tc *c;

	child_setup(r);
	c = tc_open(sockpath, "writer", false);
	CHECK(tc_acquire(c, r->sizes[0], 0, &ch, 1) == 1);
	tc_map(&ch, 1, &m);
	CHECK((buf = malloc(ch.size)) != NULL);
	pattern(buf, ch.size, r->seed);
	CHECK_OK(cuMemcpyHtoD(m.va, buf, ch.size));
	CHECK_OK(cuCtxSynchronize());
	tc_unmap(&m);
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(c, &ch.id, 1) == 0);
	rep.n = 1;
	rep.ids[0] = ch.id;
	rep.bytes = ch.size;
	tc_ctl_send(ctl, &rep, sizeof(rep));
	tc_close(c);
	free(buf);
	return 0;
}

/* Acquires one chunk and reports whether it reads as zeros or as the
 * pattern; releases it. */
static int
child_reader(void *arg, int ctl)
{
	const struct role *r = arg;
	struct report rep = { 0 };
	struct tc_mapping m;
	struct tc_chunk ch;
	unsigned char *buf, *want;
	struct tc *c;
	size_t i;

	child_setup(r);
	c = tc_open(sockpath, "reader", false);
	CHECK(tc_acquire(c, r->sizes[0], 0, &ch, 1) == 1);
	tc_map(&ch, 1, &m);
	buf = malloc(ch.size);
	want = malloc(ch.size);
	CHECK(buf != NULL && want != NULL);
	CHECK_OK(cuMemcpyDtoH(buf, m.va, ch.size));
	pattern(want, ch.size, r->seed);
	rep.all_pattern = memcmp(buf, want, ch.size) == 0;
	rep.all_zero = 1;
	for (i = 0; i < ch.size; i++)
		if (buf[i] != 0)
			rep.all_zero = 0;
	tc_unmap(&m);
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(c, &ch.id, 1) == 0);
	rep.n = 1;
	rep.ids[0] = ch.id;
	rep.bytes = ch.size;
	tc_ctl_send(ctl, &rep, sizeof(rep));
	tc_close(c);
	free(buf);
	free(want);
	return 0;
}

/* Runs a child role to its report; *pid keeps it (holders) or it is reaped
 * and must have succeeded (pid == NULL). */
static void
run(int (*fn)(void *, int), struct role *r, struct report *rep, pid_t *pid)
{
	pid_t p;
	int ctl;

	p = tc_spawn(fn, r, &ctl);
	tc_ctl_recv(ctl, rep, sizeof(*rep), 10000);
	close(ctl);
	if (pid != NULL)
		*pid = p;
	else
		CHECK(tc_wait_child(p, 0) == 0);
}

/* Polls the pool until lent and quarantined bytes are these, for up to
 * timeout_ms; returns the milliseconds it took, or fails the test. */
static uint64_t
wait_pool(uint64_t lent, uint64_t quarantined, int timeout_ms)
{
	uint64_t t0 = vmm_now_ms();
	Vmm__PoolStats ps;

	for (;;) {
		tc_pool(adm, &ps);
		if (ps.lent_bytes == lent && ps.quarantined_bytes == quarantined)
			return vmm_now_ms() - t0;
		if (vmm_now_ms() - t0 > (uint64_t)timeout_ms) {
			fprintf(stderr, "pool: lent %llu quarantined %llu, want "
			    "%llu %llu\n", (unsigned long long)ps.lent_bytes,
			    (unsigned long long)ps.quarantined_bytes,
			    (unsigned long long)lent,
			    (unsigned long long)quarantined);
			CHECK(!"pool did not settle in time");
		}
		tc_sleep_ms(10);
	}
}

static pid_t
start(const char *sub, const char *conf)
{
	pid_t d = tc_start_in(sub, conf, sockpath, sizeof(sockpath), &adm);

	G = adm->granularity;
	return d;
}

static void
stop(pid_t d)
{
	tc_stop_with(d, adm);
}

/* A SIGKILLed holder's chunks come back within 2 s, fds too. */
static void
test_sigkill(pid_t d)
{
	struct role r = { .uid = 0, .seed = 7, .n = 2 };
	struct tc_chunk ch[2];
	struct report rep;
	Vmm__PoolStats ps;
	uint64_t reclaimed, ms;
	int fds0, fds;
	pid_t k;

	/* Warm-up: the pool holds the chunks the holder will get, so the
	 * daemon's fd baseline includes their handles. */
	CHECK(tc_acquire(adm, 2 * G, 0, &ch[0], 1) == 1);
	CHECK(tc_acquire(adm, 4 * G, 0, &ch[1], 1) == 1);
	tc_close_chunks(ch, 2);
	CHECK(tc_release(adm, &ch[0].id, 1) == 0);
	CHECK(tc_release(adm, &ch[1].id, 1) == 0);
	tc_sleep_ms(50);
	fds0 = tc_count_fds(d);

	r.sizes[0] = 2 * G;
	r.sizes[1] = 4 * G;
	run(child_holder, &r, &rep, &k);
	CHECK(rep.n == 2 && rep.bytes == 6 * G);
	tc_pool(adm, &ps);
	CHECK(ps.lent_bytes == 6 * G && ps.idle_bytes == 0);
	reclaimed = tc_counter(adm, "reclaimed_chunks");

	CHECK(kill(k, SIGKILL) == 0);
	ms = wait_pool(0, 0, 2000);
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 6 * G && ps.chunks_lent == 0);
	CHECK(tc_counter(adm, "reclaimed_chunks") == reclaimed + 2);
	CHECK(tc_wait_child(k, SIGKILL) == 0);
	fds = tc_wait_fds(d, fds0, 2000);
	if (fds != fds0)
		fprintf(stderr, "daemon fds: %d before, %d after\n", fds0, fds);
	CHECK(fds == fds0);
	fprintf(stderr, "reclaimed after SIGKILL in %llu ms\n",
	    (unsigned long long)ms);
}

/* A holder that hung up but lives keeps its chunk out of the pool. */
static void
test_quarantine(void)
{
	struct role r = { .uid = 0, .seed = 8, .n = 1, .hang_up = true };
	struct tc_chunk mine, again[2];
	uint64_t creates, reclaimed, x;
	struct report rep;
	Vmm__PoolStats ps;
	pid_t q;

	/* Pool: 2G and 4G idle.  The holder takes the 2G one. */
	r.sizes[0] = 2 * G;
	run(child_holder, &r, &rep, &q);
	x = rep.ids[0];
	wait_pool(0, 2 * G, 2000);
	creates = tc_counter(adm, "creates");

	/* Not for anyone else meanwhile: a new chunk is made. */
	CHECK(tc_acquire(adm, 2 * G, 0, &mine, 1) == 1);
	CHECK(mine.id != x);
	CHECK(tc_counter(adm, "creates") == creates + 1);
	tc_close_chunks(&mine, 1);
	CHECK(tc_release(adm, &mine.id, 1) == 0);
	tc_sleep_ms(300);
	tc_pool(adm, &ps);
	CHECK(ps.quarantined_bytes == 2 * G && ps.idle_bytes == 6 * G);

	reclaimed = tc_counter(adm, "reclaimed_chunks");
	CHECK(kill(q, SIGKILL) == 0);
	wait_pool(0, 0, 2000);
	CHECK(tc_wait_child(q, SIGKILL) == 0);
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 8 * G);
	CHECK(tc_counter(adm, "reclaimed_chunks") == reclaimed + 1);
	/* Both 2G chunks now come from the pool. */
	CHECK(tc_acquire(adm, 2 * G, 0, &again[0], 1) == 1);
	CHECK(tc_acquire(adm, 2 * G, 0, &again[1], 1) == 1);
	CHECK((again[0].id == x && again[1].id == mine.id) ||
	    (again[1].id == x && again[0].id == mine.id));
	CHECK(tc_counter(adm, "creates") == creates + 1);
	tc_close_chunks(again, 2);
	CHECK(tc_release(adm, &again[0].id, 1) == 0);
	CHECK(tc_release(adm, &again[1].id, 1) == 0);
}

/* A writes a chunk and frees it; B (uid_b) gets the same chunk and reads
 * zeros or A's data.  Returns B's report. */
static void
hand_over(uid_t uid_a, uid_t uid_b, uint32_t seed, struct report *rb)
{
	struct role a = { .uid = uid_a, .seed = seed, .n = 1 };
	struct role b = { .uid = uid_b, .seed = seed, .n = 1 };
	struct report ra;

	a.sizes[0] = b.sizes[0] = 2 * G;
	run(child_writer, &a, &ra, NULL);
	run(child_reader, &b, rb, NULL);
	rb->n = rb->ids[0] == ra.ids[0];	/* the same chunk */
	CHECK(rb->all_zero != rb->all_pattern);
}

/* cross_tenant = recreate (the default): another uid never gets a chunk a
 * uid released — it gets new memory, zeros without a scrub, and the idle
 * chunk of the other tenant stays pooled (memory is not short here; under
 * pressure swap_idle gives it back, see test_stitch); the same uid gets
 * its chunk back, data and all. */
static void
test_tenants(void)
{
	struct report rb;
	uint64_t creates = tc_counter(adm, "creates");

	hand_over(0, NOBODY, 31, &rb);
	CHECK(rb.n == 0 && rb.all_zero);
	CHECK(tc_counter(adm, "creates") == creates + 2);
	CHECK(tc_counter(adm, "tenant_swaps") == 0);
	CHECK(tc_counter(adm, "scrubs") == 0);
	hand_over(NOBODY, NOBODY, 32, &rb);
	CHECK(rb.n == 1 && rb.all_pattern);
	CHECK(tc_counter(adm, "scrubs") == 0);
}

/* cross_tenant = reuse, scrub = cross-tenant: zeros for another uid, the
 * data for the same uid. */
static void
test_scrub_cross_uid(void)
{
	struct report rb;
	uint64_t scrubs;

	CHECK(tc_trim(adm, 0, false) >= 0);
	scrubs = tc_counter(adm, "scrubs");
	hand_over(0, NOBODY, 11, &rb);
	CHECK(rb.n == 1 && rb.all_zero);
	CHECK(tc_counter(adm, "scrubs") == scrubs + 1);
	/* The chunk's last holder was NOBODY: root's writer gets it scrubbed;
	 * root's reader then sees root's data, unscrubbed. */
	hand_over(0, 0, 12, &rb);
	CHECK(rb.n == 1 && rb.all_pattern);
	CHECK(tc_counter(adm, "scrubs") == scrubs + 2);
}

/* cross_tenant = reuse, scrub = never: the next holder sees the data,
 * whatever its uid. */
static void
test_scrub_never(void)
{
	struct report rb;

	hand_over(0, 0, 21, &rb);
	CHECK(rb.n == 1 && rb.all_pattern);
	hand_over(0, NOBODY, 22, &rb);
	CHECK(rb.n == 1 && rb.all_pattern);
	CHECK(tc_counter(adm, "scrubs") == 0);
}

/* After trim --recall, what comes back within the recall timeout goes to
 * the GPU, reclaimed chunks of a SIGKILLed holder too, up to the target;
 * after the timeout, releases stay pooled again. */
static void
test_trim_drain(void)
{
	struct role r = { .uid = 0, .seed = 9, .n = 2 };
	struct report rep;
	struct tc_chunk ch;
	Vmm__PoolStats ps;
	pid_t k;

	/* No target: both of the holder's chunks go to the GPU. */
	r.sizes[0] = r.sizes[1] = 2 * G;
	run(child_holder, &r, &rep, &k);
	CHECK(tc_trim(adm, 0, true) == 0);
	CHECK(kill(k, SIGKILL) == 0);
	wait_pool(0, 0, 2000);
	CHECK(tc_wait_child(k, SIGKILL) == 0);
	tc_pool(adm, &ps);
	CHECK(ps.physical_bytes == 0 && ps.idle_bytes == 0);

	/* Target 2G, none idle: one chunk goes to the GPU, one is pooled. */
	run(child_holder, &r, &rep, &k);
	CHECK(tc_trim(adm, 2 * G, true) == 0);
	CHECK(kill(k, SIGKILL) == 0);
	wait_pool(0, 0, 2000);
	CHECK(tc_wait_child(k, SIGKILL) == 0);
	tc_pool(adm, &ps);
	CHECK(ps.physical_bytes == 2 * G && ps.idle_bytes == 2 * G);

	/* The drain is over (recall_timeout_ms): a release is pooled. */
	tc_sleep_ms(600);
	CHECK(tc_acquire(adm, 4 * G, 0, &ch, 1) == 1);
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(adm, &ch.id, 1) == 0);
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 6 * G && ps.physical_bytes == 6 * G);
}

int
main(void)
{
	pid_t d;

	/* The pool keeps its idle chunks here (no swap for growth): the
	 * tests count on them. */
	d = start("a", "idle_timeout_ms = 0\nswap_idle = 0\nsocket_group = nogroup\n"
	    "cross_tenant = reuse\n");
	test_sigkill(d);
	test_quarantine();
	test_scrub_cross_uid();
	stop(d);

	d = start("b", "idle_timeout_ms = 0\nsocket_group = nogroup\n"
	    "scrub = never\ncross_tenant = reuse\n");
	test_scrub_never();
	stop(d);

	d = start("t", "idle_timeout_ms = 0\nsocket_group = nogroup\n");
	test_tenants();
	stop(d);

	d = start("c", "idle_timeout_ms = 0\nswap_idle = 0\n"
	    "recall_timeout_ms = 500\nsocket_group = nogroup\n");
	test_trim_drain();
	stop(d);
	return 0;
}
