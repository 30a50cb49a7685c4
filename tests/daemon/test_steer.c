/*
 * A lying or stopped client cannot steer others' waits.  On a 64 MiB
 * emulated GPU:
 *
 *   - a client holds 32 MiB, claims it all cached and never answers a
 *     Recall: the first request that needs its memory waits the recall
 *     timeout once, then fails; the next does not wait at all (the liar
 *     is shunned: counter recalls_unanswered);
 *   - a client that answers a Recall at once, giving nothing back, ends
 *     the wait at once: the request fails well before the timeout;
 *   - what vmmd asks a client for is never more than it lent it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define MiB (1ull << 20)
#define RECALL_MS 600

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

/* An Acquire of bytes: its reply type, and how long it took in ms. */
static int
timed_acquire(struct tc *c, uint64_t bytes, uint64_t *ms)
{
	struct tc_chunk ch[8];
	uint64_t t0 = vmm_now_ms();
	int n = tc_acquire(c, bytes, VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH,
	    ch, 8);

	*ms = vmm_now_ms() - t0;
	if (n > 0)
		tc_close_chunks(ch, (size_t)n);
	return n;
}

int
main(void)
{
	char sockpath[1100], conf[256];
	struct tc *adm, *liar, *honest, *asker;
	struct tc_chunk lc[8], hc[8];
	struct vmm_frame_msg *m;
	unsigned char buf[512];
	uint64_t ms, recall_id, target;
	size_t len;
	int n, nl, nh;
	pid_t d;

	/* No backoff (recall_backoff_ms, test_backoff.c): this is about
	 * whom vmmd waits for, so every short request may wait. */
	snprintf(conf, sizeof(conf), "idle_timeout_ms = 0\nrecall_idle_ms = 0\n"
	    "recall_timeout_ms = %d\nrecall_backoff_ms = 0\n", RECALL_MS);
	d = tc_start_in("sock", conf, sockpath, sizeof(sockpath), &adm);

	/* The liar: 32 MiB, all of it claimed cached, and 100 MiB more
	 * claimed than it holds. */
	liar = tc_open(sockpath, "liar", false);
	CHECK((nl = tc_acquire(liar, 32 * MiB,
	    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH, lc, 8)) > 0);
	report(liar, 132 * MiB, 0);

	/* First time: one recall, one full wait, then out of memory. */
	asker = tc_open(sockpath, "asker", false);
	n = timed_acquire(asker, 48 * MiB, &ms);
	fprintf(stderr, "first request: %d after %llu ms\n", n,
	    (unsigned long long)ms);
	CHECK(n == -VMM__ERROR_CODE__ERROR_CODE_OUT_OF_MEMORY);
	CHECK(ms >= RECALL_MS - 50);
	CHECK(tc_counter(adm, "recalls") == 1);
	/* vmmd asked for what it lent, not for what was claimed. */
	CHECK(tc_recv(liar, &m, 1000) == 1);
	CHECK(vmm_frame_msg_env(m)->msg_case == VMM__ENVELOPE__MSG_RECALL);
	target = vmm_frame_msg_env(m)->recall->target_bytes;
	vmm_frame_msg_free(m);
	CHECK(target <= 32 * MiB);

	/* Second time: the liar is not counted on; no wait. */
	n = timed_acquire(asker, 48 * MiB, &ms);
	fprintf(stderr, "second request: %d after %llu ms\n", n,
	    (unsigned long long)ms);
	CHECK(n == -VMM__ERROR_CODE__ERROR_CODE_OUT_OF_MEMORY);
	CHECK(ms < RECALL_MS / 2);
	CHECK(tc_counter(adm, "recalls_unanswered") == 1);
	CHECK(tc_counter(adm, "recalls") == 1);

	/* An honest client that has nothing to give answers at once: the
	 * waiter learns it at once. */
	honest = tc_open(sockpath, "honest", false);
	CHECK((nh = tc_acquire(honest, 8 * MiB,
	    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH, hc, 8)) > 0);
	report(honest, 8 * MiB, 0);
	{
		Vmm__Envelope env;
		Vmm__Acquire a = VMM__ACQUIRE__INIT;
		uint64_t t0;
		int k;

		a.request_id = tc_rid(asker);
		a.bytes = 32 * MiB;
		a.flags = VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH;
		env = vmm_frame_env_acquire(&a);
		len = tc_pack(&env, buf, sizeof(buf));
		t0 = vmm_now_ms();
		CHECK(tc_send_raw(asker->fd, buf, len, NULL, 0) == 0);
		CHECK(tc_recv(honest, &m, 1000) == 1);
		CHECK(vmm_frame_msg_env(m)->msg_case == VMM__ENVELOPE__MSG_RECALL);
		recall_id = vmm_frame_msg_env(m)->recall->recall_id;
		vmm_frame_msg_free(m);
		report(honest, 8 * MiB, recall_id);
		CHECK((k = tc_recv(asker, &m, 5000)) == 1);
		ms = vmm_now_ms() - t0;
		fprintf(stderr, "answered recall: %s after %llu ms\n",
		    vmm_frame_type_name(vmm_frame_msg_env(m)),
		    (unsigned long long)ms);
		CHECK(vmm_frame_msg_env(m)->msg_case == VMM__ENVELOPE__MSG_ERROR);
		CHECK(vmm_frame_msg_env(m)->error->code ==
		    VMM__ERROR_CODE__ERROR_CODE_OUT_OF_MEMORY);
		vmm_frame_msg_free(m);
		CHECK(ms < RECALL_MS / 2);
	}
	CHECK(tc_counter(adm, "recalls_unanswered") == 1);

	tc_close_chunks(lc, (size_t)nl);
	tc_close_chunks(hc, (size_t)nh);
	tc_close(liar);
	tc_close(honest);
	tc_close(asker);
	tc_stop_with(d, adm);
	return 0;
}
