/*
 * Reuse before growth, decided right: an Acquire the pool would have to
 * grow for waits for a recall exactly when other app sessions of its
 * tenant, not busy, report at least that much cached, each counted for no
 * more than vmmd lent it, its own cache not counted (policy.c,
 * policy_cached_enough; its O(1) bound is the tenant's sum of reported
 * cached bytes, kept on Report, Release and close).  Whether a request
 * waited is vmmd's counter recall_waits.  Cases:
 *
 *   - others cache less than asked: no wait; as much: a wait (the sum of
 *     two sessions), which ends when both answer;
 *   - a Release lowers what its session counts for (until its next
 *     Report), a Report raises it again;
 *   - the asker's own cache never counts;
 *   - a session claiming more than it holds counts for what it holds;
 *   - a closed session counts for nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define MiB (1ull << 20)
#define NCACHERS 2

static struct tc	*adm, *cachers[NCACHERS];
static uint64_t		cached_of[NCACHERS];	/* what each last reported */

static void
report(struct tc *c, uint64_t cached, uint64_t recall_id)
{
	Vmm__Envelope env;
	Vmm__Report r = VMM__REPORT__INIT;

	r.request_id = tc_rid(c);
	r.cached_bytes = cached;
	r.recall_id = recall_id;
	env = vmm_frame_env_report(&r);
	vmm_frame_msg_free(tc_call_expect(c, &env, VMM__ENVELOPE__MSG_ACK));
}

static void
set_cached(int i, uint64_t bytes)
{
	cached_of[i] = bytes;
	report(cachers[i], bytes, 0);
}

/*
 * The asker acquires bytes (kept: the pool has nothing idle, so each
 * Acquire would grow it).  Cachers asked by a Recall answer it at once,
 * keeping what they report.  Returns whether the Acquire waited for a
 * recall; fails the test unless it was granted.
 */
static bool
waited(struct tc *asker, uint64_t bytes, bool expect)
{
	Vmm__Envelope env;
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	struct vmm_frame_msg *m;
	unsigned char buf[512];
	uint64_t before = tc_counter(adm, "recall_waits"), after;
	size_t len;
	int i, fd;

	a.request_id = tc_rid(asker);
	a.bytes = bytes;
	env = vmm_frame_env_acquire(&a);
	len = tc_pack(&env, buf, sizeof(buf));
	CHECK(tc_send_raw(asker->fd, buf, len, NULL, 0) == 0);
	for (i = 0; i < NCACHERS; i++) {
		if (cachers[i] == NULL ||
		    tc_recv(cachers[i], &m, expect ? 2000 : 100) != 1)
			continue;
		CHECK(vmm_frame_msg_env(m)->msg_case == VMM__ENVELOPE__MSG_RECALL);
		report(cachers[i], cached_of[i],
		    vmm_frame_msg_env(m)->recall->recall_id);
		vmm_frame_msg_free(m);
	}
	CHECK(tc_recv(asker, &m, 5000) == 1);
	CHECK(vmm_frame_msg_env(m)->msg_case == VMM__ENVELOPE__MSG_GRANT);
	for (i = 0; i < (int)vmm_frame_msg_env(m)->grant->n_chunks; i++)
		if ((fd = vmm_frame_msg_take_fd(m, (size_t)i)) >= 0)
			close(fd);
	vmm_frame_msg_free(m);
	after = tc_counter(adm, "recall_waits");
	fprintf(stderr, "acquire %llu MiB: %s\n",
	    (unsigned long long)(bytes >> 20), after > before ? "waited" :
	    "no wait");
	return after > before;
}

int
main(void)
{
	char sockpath[1100];
	struct tc *asker, *soaker;
	struct tc_chunk ca[2], cb[1], cs[1];
	uint64_t u = tc_probe_unit();
	pid_t d;

	if (u < 2 * MiB)
		u = 2 * MiB;
	d = tc_start_in("sock", "idle_timeout_ms = 0\nrecall_idle_ms = 0\n"
	    "recall_timeout_ms = 2000\nrecall_backoff_ms = 0\n", sockpath,
	    sizeof(sockpath), &adm);
	cachers[0] = tc_open(sockpath, "a", false);
	cachers[1] = tc_open(sockpath, "b", false);
	asker = tc_open(sockpath, "asker", false);
	soaker = tc_open(sockpath, "soaker", false);
	/* a holds 2 chunks of 2u, b one of 4u. */
	CHECK(tc_acquire(cachers[0], 2 * u, 0, &ca[0], 1) == 1);
	CHECK(tc_acquire(cachers[0], 2 * u, 0, &ca[1], 1) == 1);
	CHECK(tc_acquire(cachers[1], 4 * u, 0, cb, 1) == 1);

	/* Others cache 2u: not enough for 4u. */
	set_cached(0, 2 * u);
	CHECK(!waited(asker, 4 * u, false));
	/* 2u + 2u from two sessions: enough. */
	set_cached(1, 2 * u);
	CHECK(waited(asker, 4 * u, true));

	/* a gives back 2u: its 2u cached are taken to be those (until its
	 * next Report), so others cache 2u (b's). */
	CHECK(tc_release(cachers[0], &ca[1].id, 1) == 0);
	tc_close_chunks(&ca[1], 1);
	CHECK(tc_acquire(soaker, 2 * u, 0, cs, 1) == 1);	/* a pool hit */
	tc_close_chunks(cs, 1);
	CHECK(!waited(asker, 4 * u, false));
	/* a reports again: 2u + 2u. */
	set_cached(0, 2 * u);
	CHECK(waited(asker, 4 * u, true));

	/* The asker's own cache does not count. */
	set_cached(0, 0);
	report(asker, 64 * u, 0);
	CHECK(!waited(asker, 4 * u, false));

	/* b claims 100u but holds 4u: it counts for 4u. */
	set_cached(1, 100 * u);
	CHECK(!waited(asker, 6 * u, false));
	CHECK(waited(asker, 4 * u, true));

	/* b gone: a's 2u alone. */
	set_cached(0, 2 * u);
	tc_close_chunks(cb, 1);
	tc_close(cachers[1]);
	cachers[1] = NULL;
	/* Until vmmd has seen b's socket close, a request might count it: b
	 * still holds its chunk, which is quarantined once vmmd has. */
	{
		Vmm__PoolStats pool;
		int i;

		for (i = 0; i < 500; i++) {
			tc_pool(adm, &pool);
			if (pool.quarantined_bytes != 0)
				break;
			tc_sleep_ms(10);
		}
		CHECK(pool.quarantined_bytes == 4 * u);
	}
	CHECK(!waited(asker, 4 * u, false));
	CHECK(waited(asker, 2 * u, true));

	tc_close_chunks(&ca[0], 1);
	tc_close(cachers[0]);
	tc_close(asker);
	tc_close(soaker);
	tc_stop_with(d, adm);
	return 0;
}
