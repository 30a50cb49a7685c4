/*
 * The pooled grant's fast path (issue 12, the grant round trip):
 *
 *  - a Release flagged RELEASE_FLAG_NO_REPLY is not answered: the next
 *    frame is the reply to the request sent after it, which sees the chunk
 *    released; a refused one is still answered by an Error naming it, and
 *    the session lives on; a Release without the flag (an older client)
 *    still gets its ReleaseReply; a flag bit vmmd does not know is a
 *    protocol fault (Error BAD_MESSAGE, session closed, bad_peers);
 *  - vmmd keeps each chunk's exported fd for its next grants (export.c):
 *    each chunk still comes with its own allocation, the same one each time
 *    it is lent, never one chunk's for another's, and no chunk is lent
 *    twice while held; once the pool gives its chunks back to the GPU, the
 *    kept fds are closed: vmmd's fd count is back where it was before they
 *    were created, and the emulated device has all its memory free again
 *    (an fd left open would keep the allocation alive).
 */
#include <sys/resource.h>
#include <sys/stat.h>

#include <dirent.h>
#include <limits.h>

#include <cuda.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define NCHUNKS 8
#define FDBUDGET_NOFILE 128	/* vmmd's RLIMIT_NOFILE in "fdbudget" */

static char	sockpath[1200];

/*
 * vmmd's open fds, less the emulator's passing ones: its cuMemGetInfo
 * (vmmd's idle tick) walks /proc with a directory fd or two open, for long
 * on a loaded machine, and a count taken then would be off by those.
 */
static int
count_fds(pid_t pid)
{
	char dir[64], path[384], target[256];
	struct dirent *de;
	ssize_t len;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		if (len > 0 && (size_t)len >= sizeof("/proc") - 1 &&
		    strncmp(target, "/proc", sizeof("/proc") - 1) == 0)
			continue;
		n++;
	}
	closedir(d);
	return n;
}

/* Polls count_fds(pid) until it is at most want or timeout_ms passes;
 * the last count. */
static int
wait_fds(pid_t pid, int want, int timeout_ms)
{
	uint64_t end = vmm_now_ms() + (uint64_t)timeout_ms;
	int n;

	while ((n = count_fds(pid)) > want && vmm_now_ms() < end)
		tc_sleep_ms(10);
	return n;
}

/* vmmd's fd count at rest: the least of a few counts over 300 ms (a
 * socket vmmd has just handed to its closer thread is still open for a
 * while on a loaded machine, tc_start_daemon's probe connection say). */
static int
rest_fds(pid_t pid)
{
	int i, n, least = INT_MAX;

	for (i = 0; i < 6; i++) {
		if ((n = count_fds(pid)) < least)
			least = n;
		tc_sleep_ms(50);
	}
	return least;
}

/* Sends a Release of ids with flags without waiting; its request id. */
static uint64_t
release_flagged(struct tc *c, const uint64_t *ids, size_t n, uint32_t flags)
{
	Vmm__Release rel = VMM__RELEASE__INIT;
	Vmm__Envelope env = vmm_frame_env_release(&rel);

	rel.request_id = tc_rid(c);
	rel.n_chunk_ids = n;
	rel.chunk_ids = (uint64_t *)ids;
	rel.flags = flags;
	CHECK(vmm_frame_send(c->fd, VMM_FRAME_PEER_DAEMON, &env, NULL, 0,
	    5000) == 0);
	return rel.request_id;
}

/* Sends an Acquire of bytes without waiting; its request id. */
static uint64_t
acquire_nowait(struct tc *c, uint64_t bytes)
{
	Vmm__Acquire acq = VMM__ACQUIRE__INIT;
	Vmm__Envelope env = vmm_frame_env_acquire(&acq);

	acq.request_id = tc_rid(c);
	acq.bytes = bytes;
	CHECK(vmm_frame_send(c->fd, VMM_FRAME_PEER_DAEMON, &env, NULL, 0,
	    5000) == 0);
	return acq.request_id;
}

static void
no_reply(struct tc *adm)
{
	struct tc *q = tc_open(sockpath, "app-noreply", false);
	uint64_t gran = q->granularity, bogus = 999999, rid, arid, v0, v1;
	const Vmm__Envelope *r;
	struct vmm_frame_msg *m;
	struct tc_chunk ch[4];

	v0 = tc_counter(adm, "releases");
	CHECK(tc_acquire(q, gran, 0, ch, 4) == 1);
	close(ch[0].fd);
	/* Released without a reply: the Grant of the next Acquire is the next
	 * frame, and it is the chunk just released (the pool's only one). */
	(void)release_flagged(q, &ch[0].id, 1,
	    VMM__RELEASE_FLAG__RELEASE_FLAG_NO_REPLY);
	arid = acquire_nowait(q, gran);
	CHECK(tc_recv(q, &m, 5000) == 1);
	r = vmm_frame_msg_env(m);
	CHECK(r->msg_case == VMM__ENVELOPE__MSG_GRANT);
	CHECK(r->grant->request_id == arid);
	CHECK(r->grant->n_chunks == 1 && r->grant->chunks[0]->id == ch[0].id);
	vmm_frame_msg_free(m);
	v1 = tc_counter(adm, "releases");
	CHECK(v1 == v0 + 1);

	/* Refused, it is answered all the same: an Error naming it, before
	 * the next reply; the session goes on. */
	rid = release_flagged(q, &bogus, 1,
	    VMM__RELEASE_FLAG__RELEASE_FLAG_NO_REPLY);
	arid = acquire_nowait(q, gran);
	CHECK(tc_recv(q, &m, 5000) == 1);
	r = vmm_frame_msg_env(m);
	CHECK(r->msg_case == VMM__ENVELOPE__MSG_ERROR);
	CHECK(r->error->request_id == rid);
	CHECK(r->error->code == VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK);
	vmm_frame_msg_free(m);
	CHECK(tc_recv(q, &m, 5000) == 1);
	r = vmm_frame_msg_env(m);
	CHECK(r->msg_case == VMM__ENVELOPE__MSG_GRANT);
	CHECK(r->grant->request_id == arid);
	ch[1].id = r->grant->chunks[0]->id;
	vmm_frame_msg_free(m);

	/* An older client's Release (no flags) still gets its reply. */
	rid = release_flagged(q, &ch[0].id, 1, 0);
	CHECK(tc_recv(q, &m, 5000) == 1);
	r = vmm_frame_msg_env(m);
	CHECK(r->msg_case == VMM__ENVELOPE__MSG_RELEASE_REPLY);
	CHECK(r->release_reply->request_id == rid);
	CHECK(r->release_reply->released_chunks == 1);
	CHECK(r->release_reply->released_bytes == gran);
	vmm_frame_msg_free(m);
	CHECK(tc_release(q, &ch[1].id, 1) == 0);
	tc_close(q);
}

/* A flag bit vmmd does not know: a protocol fault, the session closed. */
static void
unknown_flag(struct tc *adm)
{
	struct tc *q = tc_open(sockpath, "app-badflag", false);
	uint64_t id = 1, bad0 = tc_counter(adm, "bad_peers");
	const Vmm__Envelope *r;
	struct vmm_frame_msg *m;

	/* Sent raw: our own encoder refuses it (tests/proto). */
	{
		Vmm__Release rel = VMM__RELEASE__INIT;
		Vmm__Envelope env = vmm_frame_env_release(&rel);
		unsigned char buf[256];
		size_t len;

		rel.request_id = tc_rid(q);
		rel.n_chunk_ids = 1;
		rel.chunk_ids = &id;
		rel.flags = VMM__RELEASE_FLAG__RELEASE_FLAG_NO_REPLY | 2u;
		len = tc_pack(&env, buf, sizeof(buf));
		CHECK(tc_send_raw(q->fd, buf, len, NULL, 0) == 0);
	}
	CHECK(tc_recv(q, &m, 5000) == 1);
	r = vmm_frame_msg_env(m);
	CHECK(r->msg_case == VMM__ENVELOPE__MSG_ERROR);
	CHECK(r->error->code == VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE);
	vmm_frame_msg_free(m);
	CHECK(tc_wait_eof(q->fd, 5000) == 0);
	CHECK(tc_counter(adm, "bad_peers") == bad0 + 1);
	tc_close(q);
}

/* The kernel object an fd names (the emulator's memfd). */
static ino_t
inode_of(int fd)
{
	struct stat st;

	CHECK(fstat(fd, &st) == 0);
	return st.st_ino;
}

/* Acquires NCHUNKS one-unit chunks one by one into ch (held together). */
static void
acquire_all(struct tc *c, struct tc_chunk *ch)
{
	int i, j;

	for (i = 0; i < NCHUNKS; i++) {
		CHECK(tc_acquire(c, c->granularity, 0, &ch[i], 1) == 1);
		for (j = 0; j < i; j++)
			CHECK(ch[j].id != ch[i].id);
	}
}

static void
kept_fds(pid_t d, struct tc *adm)
{
	struct tc_chunk first[NCHUNKS], again[NCHUNKS], extra;
	ino_t ino[NCHUNKS];
	uint64_t ids[NCHUNKS], total;
	size_t freeb, totalb;
	struct tc *a, *b;
	int fds0, i, j, k;

	CHECK(tc_trim(adm, 0, false) >= 0);
	a = tc_open(sockpath, "app-a", false);
	b = tc_open(sockpath, "app-b", false);
	/* Nothing pooled: the baseline has no chunk in it. */
	fds0 = rest_fds(d);
	CHECK(fds0 > 0);

	acquire_all(a, first);
	for (i = 0; i < NCHUNKS; i++) {
		ino[i] = inode_of(first[i].fd);
		for (j = 0; j < i; j++)
			CHECK(ino[j] != ino[i]);	/* one allocation each */
		ids[i] = first[i].id;
	}
	tc_close_chunks(first, NCHUNKS);
	CHECK(tc_release(a, ids, NCHUNKS) == 0);

	/* Twice more from the pool, by another session of the tenant: each
	 * id comes with its own allocation again, from the kept fds. */
	for (k = 0; k < 2; k++) {
		acquire_all(b, again);
		for (i = 0; i < NCHUNKS; i++) {
			for (j = 0; j < NCHUNKS && ids[j] != again[i].id; j++)
				;
			CHECK(j < NCHUNKS);	/* from the pool */
			CHECK(inode_of(again[i].fd) == ino[j]);
		}
		/* All held: one more is a new chunk, not one of these. */
		CHECK(tc_acquire(a, a->granularity, 0, &extra, 1) == 1);
		for (i = 0; i < NCHUNKS; i++) {
			CHECK(extra.id != ids[i]);
			CHECK(inode_of(extra.fd) != ino[i]);
		}
		close(extra.fd);
		CHECK(tc_release(a, &extra.id, 1) == 0);
		for (i = 0; i < NCHUNKS; i++) {
			ids[i] = again[i].id;
			ino[i] = inode_of(again[i].fd);
		}
		tc_close_chunks(again, NCHUNKS);
		CHECK(tc_release(b, ids, NCHUNKS) == 0);
	}

	/* Back to the GPU: the kept fds are closed with their chunks. */
	total = (uint64_t)(NCHUNKS + 1) * a->granularity;
	CHECK(tc_trim(adm, 0, false) == (int64_t)total);
	CHECK(wait_fds(d, fds0, 5000) <= fds0);
	CHECK_OK(cuMemGetInfo(&freeb, &totalb));
	CHECK(freeb == totalb);
	tc_close(a);
	tc_close(b);
}

/*
 * "fdbudget": vmmd with a small RLIMIT_NOFILE, where the emulator's chunks
 * (one memfd each in vmmd) fill its fd table.  Kept fds never cost a chunk:
 * one session takes chunks one by one until vmmd refuses, and it gets as
 * many as there were free fds, less the one a grant needs for its export
 * in flight and two for sockets vmmd's closer thread has not closed yet
 * (kept fds are given up first, export.c; without that, 87 of 111).
 * Given back to the GPU, they leave vmmd's fds as they were.
 */
static void
fd_budget(pid_t d, struct tc *adm)
{
	struct rlimit rl = { FDBUDGET_NOFILE, FDBUDGET_NOFILE };
	static uint64_t ids[FDBUDGET_NOFILE];
	struct tc_chunk ch;
	struct tc *a;
	size_t n = 0;
	int fds0, rc;

	/* Before the first export: export.c reads the limit then. */
	CHECK(prlimit(d, RLIMIT_NOFILE, &rl, NULL) == 0);
	a = tc_open(sockpath, "app-fdbudget", false);
	fds0 = rest_fds(d);
	CHECK(fds0 > 0 && fds0 < FDBUDGET_NOFILE / 2);
	while ((rc = tc_acquire(a, a->granularity, 0, &ch, 1)) == 1) {
		CHECK(n < FDBUDGET_NOFILE);
		close(ch.fd);
		ids[n++] = ch.id;
	}
	/* No fd for the next chunk, or for its export (the chunk then stays
	 * in the pool). */
	CHECK(rc == -VMM__ERROR_CODE__ERROR_CODE_OUT_OF_MEMORY ||
	    rc == -VMM__ERROR_CODE__ERROR_CODE_INTERNAL);
	if ((int)n < FDBUDGET_NOFILE - fds0 - 3)
		fprintf(stderr, "%zu chunks with %d fds free\n", n,
		    FDBUDGET_NOFILE - fds0);
	CHECK((int)n >= FDBUDGET_NOFILE - fds0 - 3);
	CHECK(tc_release(a, ids, n) == 0);
	CHECK(tc_trim(adm, 0, false) >= (int64_t)(n * a->granularity));
	if (wait_fds(d, fds0, 5000) > fds0) {
		char cmd[128];

		fprintf(stderr, "vmmd fds %d, baseline %d\n", count_fds(d),
		    fds0);
		snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd >&2", (int)d);
		(void)!system(cmd);
	}
	CHECK(count_fds(d) <= fds0);
	tc_close(a);
}

int
main(int argc, char **argv)
{
	const char *tmp = getenv("VMM_TEST_TMPDIR");
	bool budget = argc == 2 && strcmp(argv[1], "fdbudget") == 0;
	char sockdir[1100];
	struct tc *adm;
	pid_t d;

	CHECK(tmp != NULL && (argc == 1 || budget));
	snprintf(sockdir, sizeof(sockdir), "%s/sock", tmp);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	d = tc_start_daemon(sockdir, "idle_timeout_ms = 0\n"
	    "recall_timeout_ms = 0\n", NULL);
	tc_cuda_init();
	adm = tc_open(sockpath, "admin", true);
	if (budget)
		fd_budget(d, adm);
	else {
		no_reply(adm);
		unknown_flag(adm);
		kept_fds(d, adm);
	}
	tc_stop_with(d, adm);
	return 0;
}
