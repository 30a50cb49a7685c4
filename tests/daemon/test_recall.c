/*
 * Recalls, at the protocol level, on a 64 MiB emulated GPU: before creating
 * memory vmmd asks other clients for what they cache, but not a client that
 * asked for memory within recall_idle_ms (it would soon want it back: two
 * busy processes would keep taking each other's caches); out of memory it
 * asks every client, busy or not.  The recalled client's Release (with the
 * recall's id) is what the parked request is then granted.
 *
 * "test_daemon_recall calm": memory recalled that does not fit the parked
 * request stays pooled when the request then creates memory on a device
 * that is not short (nothing is destroyed to make room that is there).
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define MiB		(1024ull * 1024)
#define IDLE_MS		1000	/* roomy: part one must fit in it */

static char		sockpath[1100];
static struct tc	*adm;

/* Tells vmmd that c caches `cached` bytes (freed, not in use). */
static void
report_cached(struct tc *c, uint64_t cached)
{
	Vmm__Envelope env;
	Vmm__Report rep = VMM__REPORT__INIT;

	rep.request_id = tc_rid(c);
	rep.cached_bytes = cached;
	env = vmm_frame_env_report(&rep);
	vmm_frame_msg_free(tc_call_expect(c, &env, VMM__ENVELOPE__MSG_ACK));
}

/* Whether anything arrives for c within ms. */
static bool
readable(struct tc *c, int ms)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1;
}

/* Sends an Acquire and returns its request id; the reply is read later. */
static uint64_t
acquire_send(struct tc *c, uint64_t bytes)
{
	Vmm__Envelope env;
	Vmm__Acquire a = VMM__ACQUIRE__INIT;

	a.request_id = tc_rid(c);
	a.bytes = bytes;
	env = vmm_frame_env_acquire(&a);
	CHECK(vmm_frame_send(c->fd, VMM_FRAME_PEER_DAEMON, &env, NULL, 0,
	    5000) == 0);
	return a.request_id;
}

/* Reads the Recall pushed to c; returns its id. */
static uint64_t
expect_recall(struct tc *c, uint64_t min_target)
{
	struct vmm_frame_msg *m;
	const Vmm__Envelope *r;
	uint64_t id;

	CHECK(tc_recv(c, &m, 5000) == 1);
	r = vmm_frame_msg_env(m);
	CHECK(r->msg_case == VMM__ENVELOPE__MSG_RECALL);
	CHECK(r->recall->reason == VMM__RECALL_REASON__RECALL_REASON_PRESSURE);
	CHECK(r->recall->target_bytes >= min_target);
	id = r->recall->recall_id;
	CHECK(id != 0);
	vmm_frame_msg_free(m);
	return id;
}

/* Answers a recall with ids, as a client does. */
static void
give_back(struct tc *c, uint64_t *ids, size_t n, uint64_t recall_id)
{
	Vmm__Envelope env;
	Vmm__Release rel = VMM__RELEASE__INIT;

	rel.request_id = tc_rid(c);
	rel.n_chunk_ids = n;
	rel.chunk_ids = ids;
	rel.recall_id = recall_id;
	env = vmm_frame_env_release(&rel);
	vmm_frame_msg_free(tc_call_expect(c, &env,
	    VMM__ENVELOPE__MSG_RELEASE_REPLY));
}

/* Reads the Grant for rid on c: one chunk, whose id it returns. */
static uint64_t
expect_grant(struct tc *c, uint64_t rid)
{
	struct vmm_frame_msg *m;
	const Vmm__Envelope *r;
	uint64_t id;

	CHECK(tc_recv(c, &m, 5000) == 1);
	r = vmm_frame_msg_env(m);
	CHECK(r->msg_case == VMM__ENVELOPE__MSG_GRANT);
	CHECK(r->grant->request_id == rid && r->grant->n_chunks >= 1);
	id = r->grant->chunks[0]->id;
	vmm_frame_msg_free(m);	/* closes the fds */
	return id;
}

static uint64_t
counter(const char *name)
{
	uint64_t v;

	CHECK(tc_stats(adm, NULL, name, &v) == 0);
	return v;
}

/* Two clients cache (recall_idle_ms = 0: neither counts as busy); B's
 * one-unit request parks for their caches; A gives back a two-unit chunk
 * that does not fit it while C has not answered yet, so B's retry creates
 * one unit.  The device (64 MiB) is far from short: A's chunk must stay
 * pooled. */
static int
calm(void)
{
	struct tc_chunk ch[4];
	struct tc *a, *b, *c;
	uint64_t id_a, id_c, rid, recall_a, recall_c, rel, G;
	Vmm__PoolStats ps;
	pid_t d;

	d = tc_start_in("calm", "idle_timeout_ms = 0\nrecall_idle_ms = 0\n"
	    "recall_timeout_ms = 3000\n", sockpath, sizeof(sockpath), &adm);
	G = adm->granularity;	/* vmmd's unit */
	a = tc_open(sockpath, "app-a", false);
	b = tc_open(sockpath, "app-b", false);
	c = tc_open(sockpath, "app-c", false);
	CHECK(tc_acquire(a, 2 * G, 0, ch, 4) == 1 && ch[0].size == 2 * G);
	close(ch[0].fd);
	id_a = ch[0].id;
	CHECK(tc_acquire(c, 2 * G, 0, ch, 4) == 1);
	close(ch[0].fd);
	id_c = ch[0].id;
	report_cached(a, 2 * G);
	report_cached(c, 2 * G);
	rel = counter("gpu_releases");

	rid = acquire_send(b, G);
	recall_a = expect_recall(a, G);
	recall_c = expect_recall(c, G);
	give_back(a, &id_a, 1, recall_a);
	report_cached(a, 0);
	CHECK(expect_grant(b, rid) != id_a);
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 2 * G);
	CHECK(counter("gpu_releases") == rel);
	give_back(c, &id_c, 1, recall_c);

	tc_close(a);
	tc_close(b);
	tc_close(c);
	tc_stop_with(d, adm);
	return 0;
}

int
main(int argc, char **argv)
{
	char conf[256];
	struct tc_chunk ch[4];
	struct tc *a, *b;
	uint64_t id_a, id_b, rid, recall, creates, recalls, t0;
	pid_t d;

	if (argc > 1 && strcmp(argv[1], "calm") == 0)
		return calm();
	snprintf(conf, sizeof(conf), "idle_timeout_ms = 0\nrecall_idle_ms = %d\n"
	    "recall_timeout_ms = 2000\n", IDLE_MS);
	d = tc_start_in("sock", conf, sockpath, sizeof(sockpath), &adm);
	a = tc_open(sockpath, "app-a", false);
	b = tc_open(sockpath, "app-b", false);

	/* A takes 16 MiB and caches it at once: it is busy. */
	t0 = vmm_now_ms();
	CHECK(tc_acquire(a, 16 * MiB, 0, ch, 4) == 1);
	close(ch[0].fd);
	id_a = ch[0].id;
	report_cached(a, 16 * MiB);
	creates = counter("creates");
	recalls = counter("recalls");

	/* B wants 16 MiB: A asked for memory just now, so vmmd creates
	 * rather than take A's cache, and A hears nothing. */
	CHECK(tc_acquire(b, 16 * MiB, 0, ch, 4) == 1);
	close(ch[0].fd);
	id_b = ch[0].id;
	CHECK(id_b != id_a);
	CHECK(counter("creates") == creates + 1);
	CHECK(counter("recalls") == recalls);
	CHECK(!readable(a, 100));
	/* All of that within recall_idle_ms, or the test proved nothing. */
	CHECK(vmm_now_ms() - t0 < IDLE_MS);

	/* Once A has not asked for memory for recall_idle_ms, B's next
	 * request is served from A's cache: A is recalled, gives the chunk
	 * back, and B gets that very chunk; nothing new is created. */
	tc_sleep_ms(IDLE_MS + 50);
	rid = acquire_send(b, 16 * MiB);
	recall = expect_recall(a, 16 * MiB);
	give_back(a, &id_a, 1, recall);
	report_cached(a, 0);
	CHECK(expect_grant(b, rid) == id_a);
	CHECK(counter("creates") == creates + 1);
	CHECK(counter("recalls") == recalls + 1);
	CHECK(counter("recall_successes") >= 1);

	/* Out of memory, a busy client is asked all the same.  B now holds
	 * 32 MiB; A takes 24 MiB and caches it; the GPU has 64 MiB, so a new
	 * 24 MiB request of B's can only come from A's cache. */
	CHECK(tc_acquire(a, 24 * MiB, 0, ch, 4) >= 1);
	close(ch[0].fd);
	id_a = ch[0].id;
	CHECK(ch[0].size == 24 * MiB);
	report_cached(a, 24 * MiB);
	recalls = counter("recalls");
	rid = acquire_send(b, 24 * MiB);
	recall = expect_recall(a, 24 * MiB);
	CHECK(counter("recalls") == recalls + 1);
	give_back(a, &id_a, 1, recall);
	CHECK(expect_grant(b, rid) == id_a);

	tc_close(a);
	tc_close(b);
	tc_stop_with(d, adm);
	return 0;
}
