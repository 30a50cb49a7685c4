/*
 * Out of memory for real (64 MiB emulated GPU, all of it lent to client A,
 * which claims a small cache but gives nothing back when recalled,
 * answering late as a busy helper thread would): the first request of
 * client B that
 * finds memory short waits for the recall; then, for recall_backoff_ms,
 * requests that find memory short fail at once (no Recall sent, no wait)
 * instead of each stalling; memory given back is granted at once even
 * inside that window; once it is over, a short request waits again.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define MiB		(1024ull * 1024)
#define ANSWER_MS	1000	/* how late A answers a Recall */
#define BACKOFF_MS	4000

static char		sockpath[1100];
static struct tc	*adm;

/* Tells vmmd that c caches `cached` bytes, answering recall_id (or 0). */
static void
report(struct tc *c, uint64_t cached, uint64_t recall_id)
{
	Vmm__Envelope env;
	Vmm__Report rep = VMM__REPORT__INIT;

	rep.request_id = tc_rid(c);
	rep.cached_bytes = cached;
	rep.recall_id = recall_id;
	env = vmm_frame_env_report(&rep);
	vmm_frame_msg_free(tc_call_expect(c, &env, VMM__ENVELOPE__MSG_ACK));
}

static bool
readable(struct tc *c, int ms)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1;
}

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

/* The reply to rid on c: 0 for a Grant (fds closed), or the Error code. */
static int
reply(struct tc *c, uint64_t rid)
{
	struct vmm_frame_msg *m;
	const Vmm__Envelope *r;
	int rc;

	CHECK(tc_recv(c, &m, 5000) == 1);
	r = vmm_frame_msg_env(m);
	if (r->msg_case == VMM__ENVELOPE__MSG_GRANT) {
		CHECK(r->grant->request_id == rid);
		rc = 0;
	} else {
		CHECK(r->msg_case == VMM__ENVELOPE__MSG_ERROR &&
		    r->error->request_id == rid);
		rc = (int)r->error->code;
	}
	vmm_frame_msg_free(m);
	return rc;
}

/* B asks for 4 MiB while memory is short; A, recalled, answers late with
 * nothing given back.  Returns how long B's answer took to come. */
static uint64_t
short_request(struct tc *a, struct tc *b, uint64_t cached)
{
	uint64_t t0 = vmm_now_ms(), id, rid = acquire_send(b, 4 * MiB);
	struct vmm_frame_msg *m;
	uint64_t took;

	CHECK(tc_recv(a, &m, 5000) == 1);
	CHECK(vmm_frame_msg_env(m)->msg_case == VMM__ENVELOPE__MSG_RECALL);
	id = vmm_frame_msg_env(m)->recall->recall_id;
	vmm_frame_msg_free(m);
	/* B's answer before A's is one that did not wait for the recall. */
	if (readable(b, ANSWER_MS)) {
		took = vmm_now_ms() - t0;
		CHECK(reply(b, rid) == VMM__ERROR_CODE__ERROR_CODE_OUT_OF_MEMORY);
		report(a, cached, id);
		return took;
	}
	report(a, cached, id);
	CHECK(reply(b, rid) == VMM__ERROR_CODE__ERROR_CODE_OUT_OF_MEMORY);
	return vmm_now_ms() - t0;
}

int
main(void)
{
	char conf[256];
	struct tc_chunk ch[64];
	uint64_t ids[64], cached, waited, t0, rid;
	struct tc *a, *b;
	size_t n = 0;
	int i;
	pid_t d;

	snprintf(conf, sizeof(conf), "idle_timeout_ms = 0\nrecall_timeout_ms = "
	    "2000\nrecall_backoff_ms = %d\n", BACKOFF_MS);
	d = tc_start_in("sock", conf, sockpath, sizeof(sockpath), &adm);
	a = tc_open(sockpath, "app-a", false);
	b = tc_open(sockpath, "app-b", false);

	/* A takes every byte (alone, nothing to recall: it fails at once). */
	while (n < 64 && tc_acquire(a, 2 * MiB, 0, &ch[n], 1) == 1) {
		ids[n] = ch[n].id;
		close(ch[n].fd);
		n++;
	}
	CHECK(n >= 8 && n < 64);
	/* A says it caches 2 MiB: less than B will ask for, so vmmd recalls
	 * it only because memory is short, and waits for the answer. */
	cached = 2 * MiB;
	report(a, cached, 0);

	/* 1. The first short request waits for A's (fruitless) answer. */
	waited = short_request(a, b, cached);
	fprintf(stderr, "first short request: %llu ms\n",
	    (unsigned long long)waited);
	CHECK(waited >= ANSWER_MS - 50);

	/* 2. Within the backoff, short requests fail at once: no Recall
	 * reaches A, no wait. */
	for (i = 0; i < 5; i++) {
		t0 = vmm_now_ms();
		rid = acquire_send(b, 4 * MiB);
		CHECK(reply(b, rid) == VMM__ERROR_CODE__ERROR_CODE_OUT_OF_MEMORY);
		waited = vmm_now_ms() - t0;
		fprintf(stderr, "short request in the backoff: %llu ms\n",
		    (unsigned long long)waited);
		CHECK(waited < ANSWER_MS / 2);
		CHECK(!readable(a, 0));
	}

	/* 3. Memory given back is granted at once, backoff or not. */
	CHECK(tc_release(a, &ids[n - 2], 2) == 0);
	t0 = vmm_now_ms();
	CHECK((i = tc_acquire(b, 4 * MiB, 0, ch, 2)) >= 1);
	tc_close_chunks(ch, (size_t)i);
	CHECK(vmm_now_ms() - t0 < ANSWER_MS / 2);

	/* 4. Once the backoff is over, a short request waits for a recall
	 * again (memory may have been freed without vmmd seeing it yet). */
	tc_sleep_ms(BACKOFF_MS + 100);
	waited = short_request(a, b, cached);
	fprintf(stderr, "short request after the backoff: %llu ms\n",
	    (unsigned long long)waited);
	CHECK(waited >= ANSWER_MS - 50);

	tc_close(a);
	tc_close(b);
	tc_stop_with(d, adm);
	return 0;
}
