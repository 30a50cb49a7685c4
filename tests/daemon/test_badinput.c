/*
 * vmmd against bad peers, over raw sockets: oversized and truncated frames,
 * garbage, unknown and malformed messages, requests out of order, a wrong
 * version, a silent peer, releases of chunks it does not hold, fds it should
 * not send, a peer that floods and never reads (and one whose queued
 * requests must not all go first), many peers at once (admin replies paged),
 * and a daemon out of fds.  After each case the daemon's fd count and pool
 * totals are back at baseline and a fresh client is served.
 */
#include <cuda.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"
#include "testraw.h"

#define NCONN		200


/* Time limits stretch under sanitizers on a loaded 2-core machine: they
 * check that nothing waits for a timeout it should not, not speed. */
static unsigned long long
slack(unsigned long long ms)
{
	return getenv("ASAN_OPTIONS") != NULL || getenv("TSAN_OPTIONS") != NULL ?
	    ms * 4 : ms;
}

static char		sockpath[1100];
static struct tc	*adm;
static pid_t		daemon_pid;
static int		fds0;
static Vmm__PoolStats	ps0;
static uint64_t		G;
static int		soft_failures;	/* checks that let the rest run */

/* Fd count and pool totals back at baseline; a fresh client is served. */
static void
baseline(const char *what)
{
	Vmm__PoolStats ps;
	struct tc_chunk ch;
	struct tc *c;
	int n;

	n = tc_wait_fds(daemon_pid, fds0, 2000);
	if (n != fds0) {
		char cmd[128];

		fprintf(stderr, "%s: daemon fds %d, baseline %d\n", what, n, fds0);
		snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd >&2",
		    (int)daemon_pid);
		(void)!system(cmd);
	}
	CHECK(n == fds0);
	tc_pool(adm, &ps);
	if (ps.physical_bytes != ps0.physical_bytes ||
	    ps.lent_bytes != ps0.lent_bytes || ps.idle_bytes != ps0.idle_bytes ||
	    ps.quarantined_bytes != ps0.quarantined_bytes ||
	    ps.chunks != ps0.chunks || ps.chunks_lent != ps0.chunks_lent)
		fprintf(stderr, "%s: pool totals off baseline\n", what);
	CHECK(ps.physical_bytes == ps0.physical_bytes);
	CHECK(ps.lent_bytes == ps0.lent_bytes && ps.idle_bytes == ps0.idle_bytes);
	CHECK(ps.quarantined_bytes == ps0.quarantined_bytes);
	CHECK(ps.chunks == ps0.chunks && ps.chunks_lent == ps0.chunks_lent);
	CHECK(tc_sessions(adm) == 1);
	c = tc_open(sockpath, "fresh", false);
	CHECK(tc_acquire(c, G, 0, &ch, 1) == 1);
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(c, &ch.id, 1) == 0);
	tc_close(c);
	CHECK(tc_wait_fds(daemon_pid, fds0, 2000) == fds0);
}

/* A length prefix far over the cap: refused before any allocation. */
static void
test_oversized(void)
{
	unsigned char huge[8] = { 0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4 };
	unsigned char over[4] = { 0x01, 0x00, 0x01, 0x00 };	/* 65537 */
	uint64_t bad = tc_counter(adm, "bad_peers");
	long rss0, rss1;
	struct tc_raw r;

	rss0 = tc_rss_kb(daemon_pid);
	tc_raw_open(&r, sockpath);
	tc_raw_send(&r, huge, sizeof(huge), NULL, 0);
	tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE, 0,
	    NULL, 0);
	tc_raw_expect_closed(&r);
	rss1 = tc_rss_kb(daemon_pid);
	fprintf(stderr, "oversized: daemon RSS %ld -> %ld KiB\n", rss0, rss1);
	CHECK(rss0 > 0 && rss1 > 0 && rss1 - rss0 < 10 * 1024);

	/* One byte over the cap, from a session past its Hello. */
	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "raw");
	tc_raw_send(&r, over, sizeof(over), NULL, 0);
	tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE, 0,
	    NULL, 0);
	tc_raw_expect_closed(&r);
	CHECK(tc_counter(adm, "bad_peers") == bad + 2);
	baseline("oversized");
}

/* A frame cut short by the peer's close. */
static void
test_truncated(void)
{
	unsigned char part[14] = { 100, 0, 0, 0, 0x0a, 0x05, 0x08, 0x01 };
	struct tc_raw r;

	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "raw");
	tc_raw_send(&r, part, sizeof(part), NULL, 0);
	CHECK(shutdown(r.fd, SHUT_WR) == 0);
	tc_raw_expect_closed(&r);

	/* Half a length prefix, before Hello. */
	tc_raw_open(&r, sockpath);
	tc_raw_send(&r, part, 2, NULL, 0);
	CHECK(shutdown(r.fd, SHUT_WR) == 0);
	tc_raw_expect_closed(&r);
	baseline("truncated");
}

/* Text and random bytes. */
static void
test_garbage(void)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: vmmd\r\n\r\n";
	unsigned char junk[4 + 64];
	struct tc_raw r;
	size_t i;

	tc_raw_open(&r, sockpath);
	tc_raw_send(&r, http, sizeof(http) - 1, NULL, 0);
	tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE, 0,
	    NULL, 0);
	tc_raw_expect_closed(&r);

	/* A plausible length, then bytes that are no Envelope. */
	junk[0] = 64;
	junk[1] = junk[2] = junk[3] = 0;
	for (i = 4; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(0xff - i * 7);
	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "raw");
	tc_raw_send(&r, junk, sizeof(junk), NULL, 0);
	tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE, 0,
	    NULL, 0);
	tc_raw_expect_closed(&r);

	/* A body of the largest size allowed, all garbage. */
	{
		unsigned char *big = malloc(4 + VMM_FRAME_MAX);

		CHECK(big != NULL);
		memset(big + 4, 0xff, VMM_FRAME_MAX);
		big[0] = 0;
		big[1] = 0;
		big[2] = 1;	/* 65536 */
		big[3] = 0;
		tc_raw_open(&r, sockpath);
		tc_raw_hello(&r, "raw");
		tc_raw_send(&r, big, 4 + VMM_FRAME_MAX, NULL, 0);
		tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE,
		    0, NULL, 0);
		tc_raw_expect_closed(&r);
		free(big);
	}
	baseline("garbage");
}

/* Well framed, but no message the daemon takes. */
static void
test_unknown_and_malformed(void)
{
	/* Envelope field 99 (length-delimited, empty): no known type. */
	static const unsigned char f99[] = { 3, 0, 0, 0, 0x9a, 0x06, 0x00 };
	/* Hello whose length runs past the frame. */
	static const unsigned char cut[] = { 4, 0, 0, 0, 0x0a, 0x05, 0x08, 0x01 };
	/* A varint that never ends. */
	static const unsigned char varint[] = { 12, 0, 0, 0, 0x0a, 0x0a, 0x08,
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	/* Wire type 7 does not exist. */
	static const unsigned char wtype[] = { 2, 0, 0, 0, 0x0f, 0x00 };
	/* An empty body: an Envelope with nothing set. */
	static const unsigned char empty[] = { 0, 0, 0, 0 };
	static const unsigned char *const bodies[] = { f99, cut, varint, wtype,
	    empty };
	static const size_t lens[] = { sizeof(f99), sizeof(cut), sizeof(varint),
	    sizeof(wtype), sizeof(empty) };
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Grant g = VMM__GRANT__INIT;
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	Vmm__Release rel = VMM__RELEASE__INIT;
	Vmm__Chunk c = VMM__CHUNK__INIT, *cp = &c;
	uint64_t zero = 0;
	struct tc_raw r;
	size_t i;
	int before;

	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		for (before = 0; before < 2; before++) {
			tc_raw_open(&r, sockpath);
			if (!before)
				tc_raw_hello(&r, "raw");
			tc_raw_send(&r, bodies[i], lens[i], NULL, 0);
			tc_raw_expect_error(&r,
			    VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE, 0, NULL,
			    0);
			tc_raw_expect_closed(&r);
		}
	}

	/* A daemon-only message (Grant) from a client. */
	c.id = 1;
	c.size = G;
	g.request_id = 5;
	g.n_chunks = 1;
	g.chunks = &cp;
	env.msg_case = VMM__ENVELOPE__MSG_GRANT;
	env.grant = &g;
	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "raw");
	tc_raw_send_env(&r, &env, NULL, 0);
	tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE,
	    TC_ANY_RID, NULL, 0);
	tc_raw_expect_closed(&r);

	/* Fields out of range: Acquire of 0 bytes, Release of chunk id 0. */
	a.request_id = 6;
	env.msg_case = VMM__ENVELOPE__MSG_ACQUIRE;
	env.acquire = &a;
	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "raw");
	tc_raw_send_env(&r, &env, NULL, 0);
	tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE,
	    TC_ANY_RID, NULL, 0);
	tc_raw_expect_closed(&r);
	/* Acquire.no_create with exact (stitched or not): that one chunk is
	 * made for the request, so it cannot be asked of idle memory. */
	a.bytes = G;
	a.no_create = true;
	a.exact = true;
	for (i = 0; i < 2; i++) {
		a.request_id = 8 + i;
		a.flags = i == 0 ? VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH : 0;
		tc_raw_open(&r, sockpath);
		tc_raw_hello(&r, "raw");
		tc_raw_send_env(&r, &env, NULL, 0);
		tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE,
		    TC_ANY_RID, NULL, 0);
		tc_raw_expect_closed(&r);
	}
	/* Acquire.partial without stitching, or with exact: a short grant
	 * is only for a request that may be stitched. */
	a.no_create = false;
	a.partial = true;
	for (i = 0; i < 2; i++) {
		a.request_id = 10 + i;
		a.exact = i == 1;
		a.flags = i == 1 ? VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH : 0;
		tc_raw_open(&r, sockpath);
		tc_raw_hello(&r, "raw");
		tc_raw_send_env(&r, &env, NULL, 0);
		tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE,
		    TC_ANY_RID, NULL, 0);
		tc_raw_expect_closed(&r);
	}
	a.partial = false;
	a.exact = false;
	rel.request_id = 7;
	rel.n_chunk_ids = 1;
	rel.chunk_ids = &zero;
	env.msg_case = VMM__ENVELOPE__MSG_RELEASE;
	env.release = &rel;
	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "raw");
	tc_raw_send_env(&r, &env, NULL, 0);
	tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE,
	    TC_ANY_RID, NULL, 0);
	tc_raw_expect_closed(&r);
	baseline("unknown/malformed");
}

/* The handshake first, once, in our version, for this GPU, in time. */
static void
test_handshake(void)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	Vmm__Hello h = VMM__HELLO__INIT;
	unsigned char uuid[16];
	char msg[300];
	uint64_t t0, ms;
	struct tc_raw r;
	struct tc *c;

	/* Acquire before Hello. */
	a.request_id = 41;
	a.bytes = G;
	env.msg_case = VMM__ENVELOPE__MSG_ACQUIRE;
	env.acquire = &a;
	tc_raw_open(&r, sockpath);
	tc_raw_send_env(&r, &env, NULL, 0);
	tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_STATE, 41, NULL,
	    0);
	tc_raw_expect_closed(&r);

	/* Hello twice: the second is refused. */
	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "raw");
	tc_raw_send_hello(&r, VMM_PROTOCOL_VERSION, 42, "raw");
	tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_STATE, 42, NULL,
	    0);
	tc_raw_close(&r);

	/* A version from the future, and none at all. */
	tc_raw_open(&r, sockpath);
	tc_raw_send_hello(&r, 99, 43, "raw");
	tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_VERSION_MISMATCH,
	    43, msg, sizeof(msg));
	fprintf(stderr, "version mismatch: %s\n", msg);
	CHECK(strstr(msg, "99") != NULL && strstr(msg, "version") != NULL);
	tc_raw_expect_closed(&r);
	tc_raw_open(&r, sockpath);
	tc_raw_send_hello(&r, 0, 44, "raw");
	tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_VERSION_MISMATCH,
	    44, NULL, 0);
	tc_raw_expect_closed(&r);

	/* Another GPU's UUID. */
	memset(uuid, 0x5a, sizeof(uuid));
	h.request_id = 45;
	h.protocol_version = VMM_PROTOCOL_VERSION;
	h.kind = VMM__CLIENT_KIND__CLIENT_KIND_APP;
	h.device_uuid.data = uuid;
	h.device_uuid.len = sizeof(uuid);
	env.msg_case = VMM__ENVELOPE__MSG_HELLO;
	env.hello = &h;
	tc_raw_open(&r, sockpath);
	tc_raw_send_env(&r, &env, NULL, 0);
	tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_NO_DEVICE, 45, NULL,
	    0);
	tc_raw_expect_closed(&r);

	/* Silence: closed after handshake_timeout_ms (300). */
	tc_raw_open(&r, sockpath);
	t0 = vmm_now_ms();
	tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_STATE, 0, NULL,
	    0);
	ms = vmm_now_ms() - t0;
	fprintf(stderr, "silent peer dropped after %llu ms\n",
	    (unsigned long long)ms);
	CHECK(ms >= 250 && ms < slack(2000));
	tc_raw_expect_closed(&r);

	/* Dribbling: part of a Hello, never the rest. */
	tc_raw_open(&r, sockpath);
	tc_raw_send(&r, "\x10\x00\x00", 3, NULL, 0);
	t0 = vmm_now_ms();
	tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_STATE, 0, NULL,
	    0);
	CHECK(vmm_now_ms() - t0 < slack(2000));
	tc_raw_expect_closed(&r);

	/* A session past its Hello may idle longer than that. */
	c = tc_open(sockpath, "idler", false);
	tc_sleep_ms(450);
	CHECK(tc_sessions(c) > 0);
	tc_close(c);
	baseline("handshake");
}

/* Release of ids not held, or held by another session. */
static void
test_release(void)
{
	struct tc_chunk theirs, mine;
	uint64_t ids[2], bogus = 0x7fffffffffffull;
	Vmm__PoolStats ps;
	struct tc *a, *b;

	a = tc_open(sockpath, "a", false);
	b = tc_open(sockpath, "b", false);
	CHECK(tc_acquire(b, G, 0, &theirs, 1) == 1);
	CHECK(tc_release(a, &bogus, 1) == -VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK);
	CHECK(tc_release(a, &theirs.id, 1) ==
	    -VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK);
	/* a carries on; all or nothing; no id twice. */
	CHECK(tc_acquire(a, G, 0, &mine, 1) == 1);
	ids[0] = mine.id;
	ids[1] = theirs.id;
	CHECK(tc_release(a, ids, 2) == -VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK);
	ids[1] = mine.id;
	CHECK(tc_release(a, ids, 2) == -VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK);
	tc_pool(adm, &ps);
	CHECK(ps.lent_bytes == ps0.lent_bytes + 2 * G);
	tc_close_chunks(&mine, 1);
	CHECK(tc_release(a, &mine.id, 1) == 0);
	CHECK(tc_release(a, &mine.id, 1) ==
	    -VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK);
	/* b's chunk was untouched throughout. */
	tc_close_chunks(&theirs, 1);
	CHECK(tc_release(b, &theirs.id, 1) == 0);
	tc_close(a);
	tc_close(b);
	/* Two sessions held a chunk each: one was created; give it back. */
	CHECK(tc_trim(adm, G, false) == (int64_t)G);
	baseline("release");
}

/* Sends the frame in buf with a pipe's write end (after a Hello if
 * hello): an error, the session closed, and the daemon's copy of the fd
 * closed. */
static void
send_pipe_end(const unsigned char *buf, size_t len, bool hello)
{
	struct tc_raw r;
	int p[2];

	CHECK(pipe2(p, O_CLOEXEC) == 0);
	tc_raw_open(&r, sockpath);
	if (hello)
		tc_raw_hello(&r, "raw");
	CHECK(tc_send_raw(r.fd, buf, len, &p[1], 1) == 0);
	close(p[1]);
	tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE, 0,
	    NULL, 0);
	tc_raw_expect_closed(&r);
	CHECK(tc_pipe_closed(p[0], 2000));
	close(p[0]);
}

/* Fds on frames that carry none: rejected, and closed in the daemon. */
static void
test_fds(void)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Hello h = VMM__HELLO__INIT;
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	unsigned char buf[256];
	int p[2], many[100];
	size_t len, i;
	struct tc_raw r;

	h.request_id = 51;
	h.protocol_version = VMM_PROTOCOL_VERSION;
	h.kind = VMM__CLIENT_KIND__CLIENT_KIND_APP;
	env.msg_case = VMM__ENVELOPE__MSG_HELLO;
	env.hello = &h;
	len = tc_pack(&env, buf, sizeof(buf));

	/* A pipe's write end on a Hello. */
	send_pipe_end(buf, len, false);

	/* On an Acquire, after the handshake. */
	a.request_id = 52;
	a.bytes = G;
	env.msg_case = VMM__ENVELOPE__MSG_ACQUIRE;
	env.acquire = &a;
	len = tc_pack(&env, buf, sizeof(buf));
	send_pipe_end(buf, len, true);

	/* More fds than any frame may carry. */
	CHECK(pipe2(p, O_CLOEXEC) == 0);
	for (i = 0; i < 100; i++)
		CHECK((many[i] = fcntl(p[1], F_DUPFD_CLOEXEC, 0)) >= 0);
	close(p[1]);
	env.msg_case = VMM__ENVELOPE__MSG_HELLO;
	len = tc_pack(&env, buf, sizeof(buf));
	tc_raw_open(&r, sockpath);
	CHECK(tc_send_raw(r.fd, buf, len, many, 100) == 0);
	for (i = 0; i < 100; i++)
		close(many[i]);
	tc_raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE, 0,
	    NULL, 0);
	tc_raw_expect_closed(&r);
	CHECK(tc_pipe_closed(p[0], 2000));
	close(p[0]);
	baseline("fds");
}

/* A peer that asks and never reads is dropped; others are not held up. */
static void
test_slow_reader(void)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__StatsRequest sr = VMM__STATS_REQUEST__INIT;
	uint64_t drops, t0, t, worst = 0, sent = 0, last = 0;
	unsigned char one[64], *batch;
	size_t len, blen, off = 0;
	struct tc *other;
	struct tc_raw r;
	ssize_t n;
	int i;

	drops = tc_counter(adm, "slow_peer_drops");
	other = tc_open(sockpath, "other", true);
	t0 = vmm_now_ms();
	for (i = 0; i < 20; i++)
		(void)tc_counter(other, "grants");
	fprintf(stderr, "slow reader: a Stats round trip takes %.2f ms idle\n",
	    (double)(vmm_now_ms() - t0) / 20);
	sr.request_id = 61;
	env.msg_case = VMM__ENVELOPE__MSG_STATS_REQUEST;
	env.stats_request = &sr;
	len = tc_pack(&env, one, sizeof(one));
	blen = len * 512;
	CHECK((batch = malloc(blen)) != NULL);
	for (i = 0; i < 512; i++)
		memcpy(batch + (size_t)i * len, one, len);

	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "raw");
	CHECK(fcntl(r.fd, F_SETFL, O_NONBLOCK) == 0);
	t0 = vmm_now_ms();
	for (;;) {
		n = send(r.fd, batch + off, blen - off, MSG_NOSIGNAL);
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			break;
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			perror("send");
			CHECK(!"unexpected send error");
		}
		if (n > 0) {
			sent += (uint64_t)n;
			off = (off + (size_t)n) % blen;
		} else {
			struct pollfd p = { .fd = r.fd, .events = POLLOUT };

			(void)poll(&p, 1, 20);
		}
		if (vmm_now_ms() - last >= 20) {
			last = vmm_now_ms();
			(void)tc_counter(other, "grants");
			t = vmm_now_ms() - last;
			if (t > worst)
				worst = t;
		}
		CHECK(vmm_now_ms() - t0 < 8000);
	}
	fprintf(stderr, "slow reader: dropped after %llu request bytes, %llu ms; "
	    "other client's worst round trip %llu ms\n",
	    (unsigned long long)sent, (unsigned long long)(vmm_now_ms() - t0),
	    (unsigned long long)worst);
	CHECK(tc_counter(adm, "slow_peer_drops") == drops + 1);
	if (worst >= slack(1000)) {
		fprintf(stderr, "FAIL slow reader: another client waited %llu ms "
		    "(limit %llu)\n", (unsigned long long)worst, slack(1000));
		soft_failures++;
	}
	tc_raw_close(&r);
	free(batch);
	tc_close(other);
	baseline("slow reader");
}

/* Frames already queued by a busy peer do not all go before another
 * peer's: with the daemon stopped, one peer queues 512 requests (Release of
 * an id it does not hold, each counted in "failures"), another one Stats
 * request; the Stats reply shows how many of the 512 were handled first. */
static void
test_fairness(void)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Release rel = VMM__RELEASE__INIT;
	Vmm__StatsRequest sr = VMM__STATS_REQUEST__INIT;
	const Vmm__Envelope *e;
	struct vmm_frame_msg *m;
	unsigned char one[64], *batch, req[64];
	uint64_t bogus = 0x7fffffffffffull, f0, ahead = 0;
	size_t len, rlen, i;
	struct tc_raw busy, other;

	rel.request_id = 71;
	rel.n_chunk_ids = 1;
	rel.chunk_ids = &bogus;
	env.msg_case = VMM__ENVELOPE__MSG_RELEASE;
	env.release = &rel;
	len = tc_pack(&env, one, sizeof(one));
	CHECK((batch = malloc(len * 512)) != NULL);
	for (i = 0; i < 512; i++)
		memcpy(batch + i * len, one, len);
	sr.request_id = 72;
	env.msg_case = VMM__ENVELOPE__MSG_STATS_REQUEST;
	env.stats_request = &sr;
	rlen = tc_pack(&env, req, sizeof(req));

	tc_raw_open(&busy, sockpath);
	tc_raw_hello(&busy, "raw");
	tc_raw_open(&other, sockpath);
	tc_raw_hello(&other, "raw");
	f0 = tc_counter(adm, "failures");
	tc_freeze(daemon_pid);
	tc_raw_send(&busy, batch, len * 512, NULL, 0);
	tc_raw_send(&other, req, rlen, NULL, 0);
	tc_thaw(daemon_pid);
	m = tc_raw_expect(&other, VMM__ENVELOPE__MSG_STATS_REPLY);
	e = vmm_frame_msg_env(m);
	for (i = 0; i < e->stats_reply->n_counters; i++)
		if (strcmp(e->stats_reply->counters[i]->name, "failures") == 0)
			ahead = e->stats_reply->counters[i]->value - f0;
	vmm_frame_msg_free(m);
	fprintf(stderr, "fairness: %llu of 512 queued requests went first\n",
	    (unsigned long long)ahead);
	if (ahead > 128) {
		fprintf(stderr, "FAIL fairness: one peer's %llu requests were "
		    "handled before another's one\n", (unsigned long long)ahead);
		soft_failures++;
	}
	/* busy never read its 512 Errors: it is still served. */
	for (i = 0; i < 512; i++)
		tc_raw_expect_error(&busy,
		    VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK, 71, NULL, 0);
	tc_raw_close(&busy);
	tc_raw_close(&other);
	free(batch);
	baseline("fairness");
}

/* NCONN connections at once, each with a Hello. */
static void
test_many(void)
{
	struct tc_raw *r;
	int i;

	CHECK((r = calloc(NCONN, sizeof(*r))) != NULL);
	for (i = 0; i < NCONN; i++)
		tc_raw_open(&r[i], sockpath);
	for (i = 0; i < NCONN; i++)
		tc_raw_send_hello(&r[i], VMM_PROTOCOL_VERSION, 1, "raw");
	for (i = 0; i < NCONN; i++)
		vmm_frame_msg_free(tc_raw_expect(&r[i],
		    VMM__ENVELOPE__MSG_HELLO_REPLY));
	CHECK(tc_sessions(adm) == NCONN + 1);
	for (i = 0; i < NCONN; i++)
		tc_raw_close(&r[i]);
	free(r);
	baseline("many connections");
}

/* Fd numbers below lim that pid has open. */
static int
fds_below(pid_t pid, int lim)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	CHECK((d = opendir(path)) != NULL);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.' && atoi(de->d_name) < lim)
			n++;
	closedir(d);
	return n;
}

/* Out of fds, with free fd slots of the given parity (a session takes two:
 * its socket and a pidfd): vmmd pauses accepting instead of spinning or
 * dropping the connections that wait, keeps serving its sessions, and
 * takes the waiting connections once it can. */
static void
test_emfile(int spare)
{
	struct rlimit lim, old;
	struct tc_raw r[40];
	uint64_t pauses;
	long t0;
	int i, served = 0, lost = 0, l;

	pauses = tc_counter(adm, "accept_pauses");
	CHECK(prlimit(daemon_pid, RLIMIT_NOFILE, NULL, &old) == 0);
	for (l = fds0; fds_below(daemon_pid, l) + spare != l; l++)
		;
	lim = old;
	lim.rlim_cur = (rlim_t)l;
	CHECK(prlimit(daemon_pid, RLIMIT_NOFILE, &lim, NULL) == 0);
	for (i = 0; i < 40; i++) {
		tc_raw_open(&r[i], sockpath);
		tc_raw_send_hello(&r[i], VMM_PROTOCOL_VERSION, 1, "raw");
	}
	tc_sleep_ms(100);
	t0 = tc_cpu_ticks(daemon_pid);
	tc_sleep_ms(500);
	/* Its sessions are served meanwhile. */
	fprintf(stderr, "emfile (%d spare): sessions %u, accept_pauses +%llu\n",
	    spare, tc_sessions(adm), (unsigned long long)(tc_counter(adm,
	    "accept_pauses") - pauses));
	t0 = tc_cpu_ticks(daemon_pid) - t0;
	CHECK(t0 < 25);	/* no busy loop: 500 ms is ~50 ticks */
	CHECK(prlimit(daemon_pid, RLIMIT_NOFILE, &old, NULL) == 0);
	/* Every connection is answered now. */
	for (i = 0; i < 40; i++) {
		struct vmm_frame_msg *m = NULL;
		int rc = tc_recv_raw(r[i].fd, r[i].rd, &m, 5000);

		CHECK(rc == 1 || rc == 0 || rc == -ECONNRESET);
		if (rc == 1 && vmm_frame_msg_env(m)->msg_case ==
		    VMM__ENVELOPE__MSG_HELLO_REPLY)
			served++;
		else
			lost++;
		vmm_frame_msg_free(m);
	}
	fprintf(stderr, "emfile (%d spare): %d of 40 waiting connections "
	    "served, %d dropped\n", spare, served, lost);
	if (lost > 2) {
		fprintf(stderr, "FAIL emfile: %d connections dropped while out "
		    "of fds\n", lost);
		soft_failures++;
	}
	for (i = 0; i < 40; i++)
		tc_raw_close(&r[i]);
	/* Out of fds, vmmd gave up the exported fd it kept for its pooled
	 * chunk (daemon/export.c) before pausing: the chunk's next grant
	 * keeps one again, and the fd count is back at baseline. */
	{
		struct tc *c = tc_open(sockpath, "rekeep", false);
		struct tc_chunk ch;

		CHECK(tc_acquire(c, G, 0, &ch, 1) == 1);
		tc_close_chunks(&ch, 1);
		CHECK(tc_release(c, &ch.id, 1) == 0);
		tc_close(c);
	}
	baseline("emfile");
}

/* More sessions than one admin reply page holds: pages of at most
 * VMM_PROTO_MAX_SESSIONS, each session exactly once. */
static void
test_paging(void)
{
	const int nconn = VMM_PROTO_MAX_SESSIONS + 44;
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__StatsRequest sr = VMM__STATS_REQUEST__INIT;
	Vmm__Hello h = VMM__HELLO__INIT;
	char name[VMM_PROTO_MAX_NAME + 1];
	uint64_t *seen;
	uint32_t off = 0, total = 0;
	size_t nseen = 0, i, j;
	struct tc_raw *r;
	int k;

	memset(name, 'n', VMM_PROTO_MAX_NAME);
	name[VMM_PROTO_MAX_NAME] = '\0';
	h.request_id = 1;
	h.protocol_version = VMM_PROTOCOL_VERSION;
	h.client_name = name;
	h.kind = VMM__CLIENT_KIND__CLIENT_KIND_APP;
	env.msg_case = VMM__ENVELOPE__MSG_HELLO;
	env.hello = &h;
	CHECK((r = calloc((size_t)nconn, sizeof(*r))) != NULL);
	CHECK((seen = calloc((size_t)nconn + 1, sizeof(*seen))) != NULL);
	for (k = 0; k < nconn; k++) {
		tc_raw_open(&r[k], sockpath);
		tc_raw_send_env(&r[k], &env, NULL, 0);
	}
	for (k = 0; k < nconn; k++)
		vmm_frame_msg_free(tc_raw_expect(&r[k],
		    VMM__ENVELOPE__MSG_HELLO_REPLY));
	do {
		struct vmm_frame_msg *m;
		const Vmm__StatsReply *rep;

		sr.request_id = tc_rid(adm);
		sr.session_offset = off;
		env.msg_case = VMM__ENVELOPE__MSG_STATS_REQUEST;
		env.stats_request = &sr;
		CHECK((m = tc_call(adm, &env, NULL, 0)) != NULL);
		CHECK(vmm_frame_msg_env(m)->msg_case ==
		    VMM__ENVELOPE__MSG_STATS_REPLY);
		rep = vmm_frame_msg_env(m)->stats_reply;
		total = rep->sessions_total;
		CHECK(total == (uint32_t)nconn + 1);
		CHECK(rep->n_sessions <= VMM_PROTO_MAX_SESSIONS);
		CHECK(rep->n_sessions > 0 || off >= total);
		for (i = 0; i < rep->n_sessions; i++) {
			for (j = 0; j < nseen; j++)
				CHECK(seen[j] != rep->sessions[i]->session_id);
			CHECK(nseen < (size_t)nconn + 1);
			seen[nseen++] = rep->sessions[i]->session_id;
		}
		off += (uint32_t)rep->n_sessions;
		vmm_frame_msg_free(m);
	} while (off < total);
	CHECK(nseen == (size_t)nconn + 1);
	for (k = 0; k < nconn; k++)
		tc_raw_close(&r[k]);
	free(r);
	free(seen);
	baseline("paging");
}

/* max_sessions = 50: the 51st is refused with LIMIT, counted. */
static void
test_session_limit(void)
{
	struct tc_raw r[50], extra;
	uint64_t refused;
	int i;

	refused = tc_counter(adm, "sessions_refused");
	for (i = 0; i < 49; i++) {
		tc_raw_open(&r[i], sockpath);
		tc_raw_hello(&r[i], "raw");
	}
	tc_raw_open(&extra, sockpath);
	tc_raw_expect_error(&extra, VMM__ERROR_CODE__ERROR_CODE_LIMIT, 0, NULL,
	    0);
	tc_raw_expect_closed(&extra);
	CHECK(tc_counter(adm, "sessions_refused") == refused + 1);
	/* A place freed is a place taken. */
	tc_raw_close(&r[0]);
	for (i = 0; i < 100; i++) {
		if (tc_sessions(adm) == 49)
			break;
		tc_sleep_ms(10);
	}
	tc_raw_open(&r[0], sockpath);
	tc_raw_hello(&r[0], "raw");
	for (i = 0; i < 49; i++)
		tc_raw_close(&r[i]);
	baseline("session limit");
}

static void
start(const char *sub, const char *conf)
{
	struct tc_chunk ch;

	daemon_pid = tc_start_in(sub, conf, sockpath, sizeof(sockpath), &adm);
	G = adm->granularity;
	/* Warm-up: one pooled chunk, as every fresh client will use. */
	CHECK(tc_acquire(adm, G, 0, &ch, 1) == 1);
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(adm, &ch.id, 1) == 0);
	tc_sleep_ms(50);
	fds0 = tc_count_fds(daemon_pid);
	tc_pool(adm, &ps0);
}

static void
stop(void)
{
	tc_stop_with(daemon_pid, adm);
}

int
main(void)
{
	start("a", "idle_timeout_ms = 0\nhandshake_timeout_ms = 300\n"
	    "max_queue_bytes = 65536\n");
	test_oversized();
	test_truncated();
	test_garbage();
	test_unknown_and_malformed();
	test_handshake();
	test_release();
	test_fds();
	test_fairness();
	test_slow_reader();
	test_many();
	test_emfile(6);
	test_emfile(7);
	stop();

	start("c", "idle_timeout_ms = 0\nmax_sessions_per_uid = 512\n");
	test_paging();
	stop();

	start("b", "idle_timeout_ms = 0\nmax_sessions = 50\n");
	test_session_limit();
	stop();
	return soft_failures == 0 ? 0 : 1;
}
