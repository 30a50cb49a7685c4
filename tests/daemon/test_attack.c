/*
 * vmmd against hostile peers that test_badinput and test_hostile_fds do
 * not play, with real processes, real sockets and real SCM_RIGHTS fds:
 *
 *   resume    another process of the same uid presents a live session's
 *             id and the daemon's instance (stolen from it), then the id
 *             of that session once quarantined: never resumed, the victim
 *             keeps its memory; the victim's own reconnect still resumes.
 *   twoconn   one process, two connections: the second resumes the first
 *             while it is open; the first is closed, its ids are the
 *             second's, nothing is held twice.
 *   kill      processes SIGKILLed in the middle of a large grant (the
 *             create on the worker thread), of a Release, of a burst of
 *             Acquires they never read, and while holding an IPC import:
 *             every byte comes back, once, and vmmd's fds are back at
 *             baseline.
 *   fields    the newest Acquire field (up_to) at its edges, a Release of
 *             one id 1,024 times, fds on frames that carry none (Release,
 *             IpcOpen, VaClaim, Report, StatsRequest), an Adopt whose fd
 *             count does not match its sizes, fds that arrive in the
 *             middle of a frame, a frame written one byte at a time.
 *   names     a client name that is not UTF-8, with quotes, escapes and
 *             control characters: admins still read every stats page.
 *   fuse      an Adopt whose fd is a directory of a FUSE filesystem the
 *             peer serves and that never answers GETATTR (any user may
 *             mount one with fusermount): vmmd looks at the fd without
 *             asking the filesystem, refuses it at once, and others are
 *             served meanwhile.  Skipped (77) where FUSE cannot be
 *             mounted.
 *   ipcmem    one session exports the same 8 chunks in every order it may
 *             (4,096 exports allowed), another process opens one export
 *             again and again (4,096 imports allowed): the chunks they
 *             name stay within 16,384 each way, and what vmmd keeps for
 *             them within 2 MiB of its memory (RSS, unsanitized builds)
 *             per pair of sessions; each refusal is LIMIT, and both
 *             sessions live on.
 *   vaclaim   many sessions fill the address plan (12,600 ranges); one
 *             peer then sends VaClaims that each overlap the highest range
 *             (refused, nothing recorded): each costs vmmd a lookup, not a
 *             walk of every range, so 1,000 of them take little of its CPU
 *             and another client is served meanwhile.
 *   flood     one process connects, takes a range of the address plan (or
 *             a chunk) and drops the connection, again and again: each
 *             session it leaves is quarantined (its process lives), and
 *             counts against max_sessions_per_uid like an open one, so
 *             vmmd's sessions and fds (a pidfd each) stay bounded.
 *
 * After each case the pool's totals and vmmd's fd count are back at their
 * baseline and a fresh client is served.
 */
#include <linux/fuse.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"
#include "testraw.h"

#define MiB		(1ull << 20)

static char		sockpath[1100];
static struct tc	*adm;
static pid_t		daemon_pid;
static int		fds0;
static uint64_t		G;

/* ---- raw peers ------------------------------------------------------------ */

/* The next frame is an Error with this code, then (fatal) a hang-up. */
static void
raw_expect_error(struct tc_raw *r, Vmm__ErrorCode code, bool fatal)
{
	tc_raw_expect_error(r, code, TC_ANY_RID, NULL, 0);
	if (fatal)
		tc_raw_expect_closed(r);
}

/* ---- baseline ------------------------------------------------------------- */

/* Polls until the pool's lent and quarantined bytes are these. */
static void
wait_pool(uint64_t lent, uint64_t quarantined, const char *what)
{
	Vmm__PoolStats ps;
	int i;

	for (i = 0; i < 500; i++) {
		tc_pool(adm, &ps);
		if (ps.lent_bytes == lent && ps.quarantined_bytes == quarantined)
			return;
		tc_sleep_ms(10);
	}
	fprintf(stderr, "%s: lent %llu (want %llu), quarantined %llu "
	    "(want %llu)\n", what, (unsigned long long)ps.lent_bytes,
	    (unsigned long long)lent, (unsigned long long)ps.quarantined_bytes,
	    (unsigned long long)quarantined);
	CHECK(!"pool totals");
}

/* Nothing lent, quarantined or held by importers; every idle chunk
 * given back, the pool is empty and vmmd's fds are back at their baseline
 * (a chunk's kept export goes with it); a fresh client is served. */
static void
baseline(const char *what)
{
	Vmm__PoolStats ps;
	struct tc_chunk ch;
	struct tc *c;
	int n = 0, i;

	wait_pool(0, 0, what);
	tc_pool(adm, &ps);
	CHECK(ps.ipc_held_bytes == 0 && ps.chunks_lent == 0);
	/* Creates a killed client's grant started finish on the worker
	 * thread into the pool: trim until the pool stays empty. */
	for (i = 0; i < 100; i++) {
		(void)tc_trim(adm, 0, false);
		tc_pool(adm, &ps);
		n = tc_count_fds(daemon_pid);
		if (ps.physical_bytes == 0 && ps.chunks == 0 && n == fds0)
			break;
		tc_sleep_ms(30);
	}
	if (ps.physical_bytes != 0 || ps.chunks != 0)
		fprintf(stderr, "%s: %llu chunks, %llu bytes left after a "
		    "trim\n", what, (unsigned long long)ps.chunks,
		    (unsigned long long)ps.physical_bytes);
	CHECK(ps.physical_bytes == 0 && ps.chunks == 0);
	if (n != fds0) {
		char cmd[128];

		fprintf(stderr, "%s: daemon fds %d, baseline %d\n", what, n,
		    fds0);
		snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd >&2",
		    (int)daemon_pid);
		(void)!system(cmd);
	}
	CHECK(n == fds0);
	CHECK(tc_sessions(adm) == 1);
	c = tc_open(sockpath, "fresh", false);
	CHECK(tc_acquire(c, G, 0, &ch, 1) == 1);
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(c, &ch.id, 1) == 0);
	tc_close(c);
	(void)tc_trim(adm, 0, false);
	fprintf(stderr, "%s: held\n", what);
}

/* ---- resume ---------------------------------------------------------------- */

struct victim_msg {
	uint64_t	session, instance, chunk;
};

/* Holds one chunk; on each byte from the parent: 'q' closes its socket
 * (staying alive), 'r' reconnects resuming, 'c' checks it still holds the
 * chunk (MemInfo), then answers one byte (1: fine). */
static int
victim(void *arg, int ctl)
{
	struct victim_msg msg;
	struct tc_chunk ch;
	struct tc *c;
	char cmd, ok;

	(void)arg;
	c = tc_open(sockpath, "victim", false);
	CHECK(tc_acquire(c, G, 0, &ch, 1) == 1);
	msg.session = c->session_id;
	msg.instance = vmm_sess_hello_reply(c->s)->instance_id;
	msg.chunk = ch.id;
	tc_ctl_send(ctl, &msg, sizeof(msg));
	for (;;) {
		tc_ctl_recv(ctl, &cmd, 1, 60000);
		ok = 1;
		if (cmd == 'q') {
			tc_close(c);
			c = NULL;
		} else if (cmd == 'r') {
			Vmm__Hello h = VMM__HELLO__INIT;

			CHECK((c = calloc(1, sizeof(*c))) != NULL);
			CHECK(vmm_sess_connect(&c->s, sockpath, 5000) == 0);
			c->fd = vmm_sess_fd(c->s);
			h.client_name = (char *)"victim";
			h.kind = VMM__CLIENT_KIND__CLIENT_KIND_APP;
			h.resume_session = msg.session;
			h.resume_instance = msg.instance;
			CHECK(vmm_sess_hello(c->s, &h, 5000) == 0);
			ok = vmm_sess_hello_reply(c->s)->resumed;
			msg.session = vmm_sess_hello_reply(c->s)->session_id;
		} else if (cmd == 'c') {
			Vmm__Envelope env = VMM__ENVELOPE__INIT;
			Vmm__MemInfoRequest mi = VMM__MEM_INFO_REQUEST__INIT;
			struct vmm_frame_msg *m;

			mi.request_id = tc_rid(c);
			env.msg_case = VMM__ENVELOPE__MSG_MEM_INFO_REQUEST;
			env.mem_info_request = &mi;
			m = tc_call_expect(c, &env,
			    VMM__ENVELOPE__MSG_MEM_INFO_REPLY);
			ok = vmm_frame_msg_env(m)->mem_info_reply->held_bytes ==
			    ch.size;
			vmm_frame_msg_free(m);
		} else if (cmd == 'x') {
			CHECK(tc_release(c, &msg.chunk, 1) == 0);
			tc_close_chunks(&ch, 1);
			tc_close(c);
			return 0;
		}
		tc_ctl_send(ctl, &ok, 1);
	}
}

static char
victim_do(int ctl, char cmd)
{
	char ok;

	tc_ctl_send(ctl, &cmd, 1);
	tc_ctl_recv(ctl, &ok, 1, 10000);
	return ok;
}

/* Hello resuming (session, instance) from this process: whether vmmd says
 * it resumed it.  The connection is closed after. */
static bool
try_resume(uint64_t session, uint64_t instance)
{
	Vmm__Hello h = VMM__HELLO__INIT;
	struct vmm_sess *s;
	bool resumed;

	CHECK(vmm_sess_connect(&s, sockpath, 5000) == 0);
	h.client_name = (char *)"thief";
	h.kind = VMM__CLIENT_KIND__CLIENT_KIND_APP;
	h.resume_session = session;
	h.resume_instance = instance;
	CHECK(vmm_sess_hello(s, &h, 5000) == 0);
	resumed = vmm_sess_hello_reply(s)->resumed;
	vmm_sess_close(s);
	return resumed;
}

static void
test_resume(void)
{
	struct victim_msg msg;
	uint64_t resumed0 = tc_counter(adm, "resumed_sessions");
	char one;
	pid_t v;
	int ctl;

	v = tc_spawn(victim, NULL, &ctl);
	tc_ctl_recv(ctl, &msg, sizeof(msg), 10000);
	wait_pool(G, 0, "resume: victim holds");

	/* Its live session, stolen id and instance, a wrong instance, an
	 * id that never was. */
	CHECK(!try_resume(msg.session, msg.instance));
	CHECK(!try_resume(msg.session, msg.instance + 1));
	CHECK(!try_resume(msg.session + 1000, msg.instance));
	CHECK(victim_do(ctl, 'c') == 1);
	wait_pool(G, 0, "resume: still the victim's");

	/* Quarantined (socket closed, process alive): still not the
	 * thief's, still not lent. */
	CHECK(victim_do(ctl, 'q') == 1);
	wait_pool(0, G, "resume: quarantined");
	CHECK(!try_resume(msg.session, msg.instance));
	wait_pool(0, G, "resume: quarantined after theft");

	/* The victim's own reconnect resumes it, once. */
	CHECK(victim_do(ctl, 'r') == 1);
	wait_pool(G, 0, "resume: resumed");
	CHECK(victim_do(ctl, 'c') == 1);
	CHECK(tc_counter(adm, "resumed_sessions") == resumed0 + 1);
	one = 'x';
	tc_ctl_send(ctl, &one, 1);
	CHECK(tc_wait_child(v, 0) == 0);
	close(ctl);
	baseline("resume");
}

/* One process, two connections: the second says Hello resuming the first
 * while it is still open. */
static void
test_twoconn(void)
{
	Vmm__Hello h = VMM__HELLO__INIT;
	struct tc_chunk ch;
	struct tc *a, *b;
	uint64_t id;

	a = tc_open(sockpath, "twoconn-a", false);
	CHECK(tc_acquire(a, G, 0, &ch, 1) == 1);
	id = ch.id;
	CHECK((b = calloc(1, sizeof(*b))) != NULL);
	CHECK(vmm_sess_connect(&b->s, sockpath, 5000) == 0);
	b->fd = vmm_sess_fd(b->s);
	h.client_name = (char *)"twoconn-b";
	h.kind = VMM__CLIENT_KIND__CLIENT_KIND_APP;
	h.resume_session = a->session_id;
	h.resume_instance = vmm_sess_hello_reply(a->s)->instance_id;
	CHECK(vmm_sess_hello(b->s, &h, 5000) == 0);
	CHECK(vmm_sess_hello_reply(b->s)->resumed);
	/* a is closed by vmmd: nothing more on it. */
	CHECK(tc_wait_eof(a->fd, 5000) == 0);
	wait_pool(G, 0, "twoconn: one holder");
	CHECK(tc_release(b, &id, 1) == 0);
	CHECK(tc_release(b, &id, 1) == -VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK);
	tc_close_chunks(&ch, 1);
	tc_close(a);
	tc_close(b);
	baseline("two connections");
}

/* ---- SIGKILL in the middle ------------------------------------------------- */

struct killee {
	uint64_t	bytes;	/* Acquire this */
	int		what;	/* KILL_* */
};

enum { KILL_GRANT, KILL_RELEASE, KILL_BURST };

/* Sends what it is asked to (never reading a reply), says so, and waits to
 * be killed. */
static int
killee(void *arg, int ctl)
{
	const struct killee *k = arg;
	struct tc_chunk ch[8];
	struct tc *c = tc_open(sockpath, "killee", false);
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	uint64_t ids[8];
	char one = 1;
	int i, n;

	env.msg_case = VMM__ENVELOPE__MSG_ACQUIRE;
	env.acquire = &a;
	a.bytes = k->bytes;
	switch (k->what) {
	case KILL_GRANT:
		a.request_id = tc_rid(c);
		CHECK(vmm_sess_send(c->s, &env, NULL, 0, 5000) == 0);
		break;
	case KILL_RELEASE:
		n = tc_acquire(c, k->bytes, 0, ch, 8);
		CHECK(n > 0);
		for (i = 0; i < n; i++)
			ids[i] = ch[i].id;
		(void)tc_release_nowait(c, ids, (size_t)n);
		break;
	case KILL_BURST:
		/* Acquires it never reads: their Grants (with fds) pile up in
		 * its socket; the BUSY errors too. */
		for (i = 0; i < 64; i++) {
			a.request_id = tc_rid(c);
			if (vmm_sess_send(c->s, &env, NULL, 0, 5000) != 0)
				break;
		}
		break;
	}
	tc_ctl_send(ctl, &one, 1);
	for (;;)
		pause();
	return 0;
}

static void
kill_one(uint64_t bytes, int what, int delay_us)
{
	struct killee k = { bytes, what };
	pid_t p;
	char one;
	int ctl;

	p = tc_spawn(killee, &k, &ctl);
	tc_ctl_recv(ctl, &one, 1, 10000);
	if (delay_us > 0)
		usleep((useconds_t)delay_us);
	kill(p, SIGKILL);
	tc_wait_child(p, SIGKILL);
	close(ctl);
}

/* Holds an IPC import of another process's export, says so, waits. */
static int
importer(void *arg, int ctl)
{
	const uint64_t *xid = arg;
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__IpcOpen o = VMM__IPC_OPEN__INIT;
	struct tc *c = tc_open(sockpath, "importer", false);
	struct vmm_frame_msg *m;
	char one = 1;
	size_t i;

	o.request_id = tc_rid(c);
	o.export_id = xid[0];
	o.token = xid[1];
	env.msg_case = VMM__ENVELOPE__MSG_IPC_OPEN;
	env.ipc_open = &o;
	m = tc_call_expect(c, &env, VMM__ENVELOPE__MSG_IPC_GRANT);
	/* Keep the fds: a process that maps what it imported. */
	for (i = 0; i < vmm_frame_msg_nfds(m); i++)
		(void)vmm_frame_msg_take_fd(m, i);
	vmm_frame_msg_free(m);
	tc_ctl_send(ctl, &one, 1);
	for (;;)
		pause();
	return 0;
}

static void
test_kill(void)
{
	static const int delays[] = { 0, 0, 50, 200, 1000, 5000 };
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__IpcExport x = VMM__IPC_EXPORT__INIT;
	struct vmm_frame_msg *m;
	Vmm__PoolStats ps;
	struct tc_chunk ch;
	uint64_t xid[2];
	struct tc *e;
	pid_t p;
	char one;
	size_t i;
	int ctl;

	/* A large grant (64 MiB: its create runs on the worker thread). */
	for (i = 0; i < sizeof(delays) / sizeof(delays[0]); i++)
		kill_one(64 * MiB, KILL_GRANT, delays[i]);
	baseline("kill: mid-grant");
	for (i = 0; i < sizeof(delays) / sizeof(delays[0]); i++)
		kill_one(8 * G, KILL_RELEASE, delays[i]);
	baseline("kill: mid-release");
	for (i = 0; i < 3; i++)
		kill_one(G, KILL_BURST, (int)(i * 2000));
	baseline("kill: burst never read");

	/* An importer SIGKILLed while the exporter has already given the
	 * chunk back: it goes back to the pool once, when the importer is
	 * gone, and not before. */
	e = tc_open(sockpath, "exporter", false);
	CHECK(tc_acquire(e, G, 0, &ch, 1) == 1);
	x.request_id = tc_rid(e);
	x.n_chunk_ids = 1;
	x.chunk_ids = &ch.id;
	env.msg_case = VMM__ENVELOPE__MSG_IPC_EXPORT;
	env.ipc_export = &x;
	m = tc_call_expect(e, &env, VMM__ENVELOPE__MSG_IPC_EXPORT_REPLY);
	xid[0] = vmm_frame_msg_env(m)->ipc_export_reply->export_id;
	xid[1] = vmm_frame_msg_env(m)->ipc_export_reply->token;
	vmm_frame_msg_free(m);
	p = tc_spawn(importer, xid, &ctl);
	tc_ctl_recv(ctl, &one, 1, 10000);
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(e, &ch.id, 1) == 0);
	tc_pool(adm, &ps);
	CHECK(ps.ipc_held_bytes == G);
	/* Another grant of that size now is never that chunk. */
	{
		struct tc_chunk other;

		CHECK(tc_acquire(e, G, 0, &other, 1) == 1);
		CHECK(other.id != ch.id);
		tc_close_chunks(&other, 1);
		CHECK(tc_release(e, &other.id, 1) == 0);
	}
	kill(p, SIGKILL);
	tc_wait_child(p, SIGKILL);
	close(ctl);
	tc_close(e);
	baseline("kill: importer");
}

/* ---- fields ---------------------------------------------------------------- */

/* An Acquire sent raw (no sender checks) after Hello. */
static void
raw_acquire(struct tc_raw *r, uint64_t bytes, uint64_t up_to, bool exact,
    unsigned flags)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Acquire a = VMM__ACQUIRE__INIT;

	a.request_id = 7;
	a.bytes = bytes;
	a.up_to = up_to;
	a.exact = exact;
	a.flags = flags;
	env.msg_case = VMM__ENVELOPE__MSG_ACQUIRE;
	env.acquire = &a;
	tc_raw_send_env(r, &env, NULL, 0);
}

/* Gives back every chunk of a Grant read raw. */
static void
raw_give_back(struct tc_raw *r, struct vmm_frame_msg *m)
{
	const Vmm__Grant *g = vmm_frame_msg_env(m)->grant;
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Release rel = VMM__RELEASE__INIT;
	uint64_t ids[VMM_PROTO_MAX_CHUNKS];
	size_t i;

	for (i = 0; i < g->n_chunks; i++)
		ids[i] = g->chunks[i]->id;
	rel.request_id = 8;
	rel.n_chunk_ids = g->n_chunks;
	rel.chunk_ids = ids;
	env.msg_case = VMM__ENVELOPE__MSG_RELEASE;
	env.release = &rel;
	tc_raw_send_env(r, &env, NULL, 0);
	vmm_frame_msg_free(tc_raw_expect(r, VMM__ENVELOPE__MSG_RELEASE_REPLY));
}

static void
test_up_to(void)
{
	struct vmm_frame_msg *m;
	struct tc_raw r;

	/* The widest up_to: one chunk, at least the size asked. */
	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "upto");
	raw_acquire(&r, G, UINT64_MAX, false, 0);
	m = tc_raw_expect(&r, VMM__ENVELOPE__MSG_GRANT);
	CHECK(vmm_frame_msg_env(m)->grant->n_chunks == 1);
	CHECK(vmm_frame_msg_env(m)->grant->chunks[0]->size >= G);
	raw_give_back(&r, m);
	vmm_frame_msg_free(m);
	/* up_to equal to bytes: a plain Acquire. */
	raw_acquire(&r, 2 * G, 2 * G, false,
	    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_IGNORE_FRAG_RATIO);
	m = tc_raw_expect(&r, VMM__ENVELOPE__MSG_GRANT);
	raw_give_back(&r, m);
	vmm_frame_msg_free(m);
	/* More than the GPU has, up_to or not: INVALID, the session lives. */
	raw_acquire(&r, UINT64_MAX, UINT64_MAX, false, 0);
	raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_INVALID, false);
	raw_acquire(&r, UINT64_MAX - G + 2, 0, false, 0);
	raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_INVALID, false);
	tc_raw_close(&r);

	/* up_to below bytes, with exact, with stitching: malformed. */
	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "upto");
	raw_acquire(&r, 2 * G, G, false, 0);
	raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE, true);
	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "upto");
	raw_acquire(&r, G, 4 * G, true, 0);
	raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE, true);
	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "upto");
	raw_acquire(&r, G, 4 * G, false,
	    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH);
	raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE, true);
	/* A flag vmmd uses inside (bit 30, 31) is no flag on the wire. */
	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "upto");
	raw_acquire(&r, G, 0, false, 1u << 31);
	raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE, true);
	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "upto");
	raw_acquire(&r, G, 0, false, 1u << 30);
	raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE, true);
	baseline("fields: up_to");
}

/* One held id listed VMM_PROTO_MAX_RELEASE_IDS times: refused whole, the
 * chunk still held; once, it goes. */
static void
test_release_dups(void)
{
	static uint64_t ids[VMM_PROTO_MAX_RELEASE_IDS];
	struct tc_chunk ch[2];
	struct tc *c = tc_open(sockpath, "dups", false);
	size_t i;

	CHECK(tc_acquire(c, G, 0, &ch[0], 1) == 1);
	CHECK(tc_acquire(c, G, 0, &ch[1], 1) == 1);
	for (i = 0; i < VMM_PROTO_MAX_RELEASE_IDS; i++)
		ids[i] = ch[0].id;
	CHECK(tc_release(c, ids, VMM_PROTO_MAX_RELEASE_IDS) ==
	    -VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK);
	/* Both held, then the duplicate at the very end of a full list. */
	for (i = 0; i < VMM_PROTO_MAX_RELEASE_IDS; i++)
		ids[i] = ch[i % 2].id;
	CHECK(tc_release(c, ids, VMM_PROTO_MAX_RELEASE_IDS) ==
	    -VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK);
	wait_pool(2 * G, 0, "dups: both still held");
	/* The marks of the refused lists are all cleared: each id once. */
	ids[0] = ch[1].id;
	ids[1] = ch[0].id;
	CHECK(tc_release(c, ids, 2) == 0);
	tc_close_chunks(ch, 2);
	tc_close(c);
	baseline("fields: duplicate ids");
}

/* Fds on frames that carry none, after Hello: refused, and the daemon's
 * copies closed (the pipe sees EOF). */
static void
test_stray_fds(void)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Release rel = VMM__RELEASE__INIT;
	Vmm__IpcOpen o = VMM__IPC_OPEN__INIT;
	Vmm__VaClaim vc = VMM__VA_CLAIM__INIT;
	Vmm__VaRange vr = VMM__VA_RANGE__INIT, *vrp = &vr;
	Vmm__Report rep = VMM__REPORT__INIT;
	Vmm__StatsRequest sr = VMM__STATS_REQUEST__INIT;
	Vmm__Adopt ad = VMM__ADOPT__INIT;
	uint64_t one_id = 12345, sizes[2] = { G, G };
	int p[2], k;
	struct tc_raw r;

	rel.request_id = 1;
	rel.n_chunk_ids = 1;
	rel.chunk_ids = &one_id;
	o.request_id = 2;
	o.export_id = 1;
	vr.addr = 1ull << 40;
	vr.size = G;
	vc.request_id = 3;
	vc.n_ranges = 1;
	vc.ranges = &vrp;
	rep.request_id = 4;
	sr.request_id = 5;
	ad.request_id = 6;
	for (k = 0; k < 7; k++) {
		int fds[2];
		size_t nfds = 1;

		switch (k) {
		case 0:
			env.msg_case = VMM__ENVELOPE__MSG_RELEASE;
			env.release = &rel;
			break;
		case 1:
			env.msg_case = VMM__ENVELOPE__MSG_IPC_OPEN;
			env.ipc_open = &o;
			break;
		case 2:
			env.msg_case = VMM__ENVELOPE__MSG_VA_CLAIM;
			env.va_claim = &vc;
			break;
		case 3:
			env.msg_case = VMM__ENVELOPE__MSG_REPORT;
			env.report = &rep;
			break;
		case 4:
			env.msg_case = VMM__ENVELOPE__MSG_STATS_REQUEST;
			env.stats_request = &sr;
			break;
		case 5:	/* Adopt of two sizes with one fd */
			ad.n_sizes = 2;
			ad.sizes = sizes;
			env.msg_case = VMM__ENVELOPE__MSG_ADOPT;
			env.adopt = &ad;
			break;
		case 6:	/* Adopt of one size with two fds */
			ad.n_sizes = 1;
			nfds = 2;
			break;
		}
		CHECK(pipe2(p, O_CLOEXEC) == 0);
		fds[0] = p[1];
		fds[1] = p[1];
		tc_raw_open(&r, sockpath);
		tc_raw_hello(&r, "strayfds");
		tc_raw_send_env(&r, &env, fds, nfds);
		close(p[1]);
		raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE,
		    true);
		CHECK(tc_pipe_closed(p[0], 3000));
		close(p[0]);
	}
	baseline("fields: stray fds");
}

/* A frame written a byte at a time is served; fds on a byte in the middle
 * of a frame are refused and closed. */
static void
test_dribble(void)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	Vmm__Adopt ad = VMM__ADOPT__INIT;
	unsigned char buf[256];
	struct vmm_frame_msg *m;
	uint64_t size = G;
	size_t len, i;
	struct tc_raw r;
	int p[2];

	a.request_id = 9;
	a.bytes = G;
	env.msg_case = VMM__ENVELOPE__MSG_ACQUIRE;
	env.acquire = &a;
	len = tc_pack(&env, buf, sizeof(buf));
	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "dribble");
	for (i = 0; i < len; i++) {
		tc_raw_send(&r, buf + i, 1, NULL, 0);
		tc_sleep_ms(5);
	}
	m = tc_raw_expect(&r, VMM__ENVELOPE__MSG_GRANT);
	raw_give_back(&r, m);
	vmm_frame_msg_free(m);
	tc_raw_close(&r);

	/* An Adopt whose fd comes with its third byte. */
	ad.request_id = 10;
	ad.n_sizes = 1;
	ad.sizes = &size;
	env.msg_case = VMM__ENVELOPE__MSG_ADOPT;
	env.adopt = &ad;
	len = tc_pack(&env, buf, sizeof(buf));
	CHECK(pipe2(p, O_CLOEXEC) == 0);
	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "dribble");
	tc_raw_send(&r, buf, 2, NULL, 0);
	tc_sleep_ms(20);
	tc_raw_send(&r, buf + 2, 1, &p[1], 1);
	tc_sleep_ms(20);
	tc_raw_send(&r, buf + 3, len - 3, NULL, 0);
	close(p[1]);
	raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE, true);
	CHECK(tc_pipe_closed(p[0], 3000));
	close(p[0]);
	baseline("fields: dribble");
}

/* ---- names ----------------------------------------------------------------- */

/* Every stats page decodes for the admin while a session with a hostile
 * name is connected; vmmd still serves. */
static void
test_names(void)
{
	static const char *const names[] = {
		"\xff\xfe\xfd not utf-8",
		"quote\" back\\slash\nnewline\ttab\x01\x7f",
		"\xc3\x28 overlong \xe0\x80\x80",
	};
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__StatsRequest sr = VMM__STATS_REQUEST__INIT;
	Vmm__ClientsRequest cr = VMM__CLIENTS_REQUEST__INIT;
	struct tc_raw r[3];
	struct vmm_frame_msg *m;
	size_t i;
	int rc;

	for (i = 0; i < 3; i++) {
		tc_raw_open(&r[i], sockpath);
		tc_raw_hello(&r[i], names[i]);
	}
	sr.request_id = tc_rid(adm);
	env.msg_case = VMM__ENVELOPE__MSG_STATS_REQUEST;
	env.stats_request = &sr;
	CHECK(vmm_sess_send(adm->s, &env, NULL, 0, 5000) == 0);
	rc = tc_recv(adm, &m, 5000);
	if (rc != 1)
		fprintf(stderr, "names: stats reply: %s\n", rc == 0 ? "EOF" :
		    vmm_sess_strerror(rc));
	CHECK(rc == 1);
	CHECK(vmm_frame_msg_env(m)->msg_case == VMM__ENVELOPE__MSG_STATS_REPLY);
	CHECK(vmm_frame_msg_env(m)->stats_reply->n_sessions == 4);
	vmm_frame_msg_free(m);
	cr.request_id = tc_rid(adm);
	env.msg_case = VMM__ENVELOPE__MSG_CLIENTS_REQUEST;
	env.clients_request = &cr;
	m = tc_call_expect(adm, &env, VMM__ENVELOPE__MSG_CLIENTS_REPLY);
	CHECK(vmm_frame_msg_env(m)->clients_reply->sessions_total == 4);
	vmm_frame_msg_free(m);
	for (i = 0; i < 3; i++)
		tc_raw_close(&r[i]);
	for (i = 0; i < 200 && tc_sessions(adm) != 1; i++)
		tc_sleep_ms(10);
	baseline("names");
}

/* ---- a FUSE filesystem that stops answering ------------------------------ */

/* A one-directory FUSE filesystem served by a thread of this test; once
 * `stall` is set it leaves GETATTR unanswered (held) until released. */
struct fuse_trap {
	int		dev;		/* /dev/fuse */
	char		mnt[1200];
	pthread_t	th;
	pthread_mutex_t	lock;
	bool		stall;
	uint64_t	held[16];	/* GETATTRs not answered */
	size_t		nheld;
	unsigned	getattrs;	/* GETATTRs seen while stalled */
};

static void
fuse_reply(int dev, uint64_t unique, int error, const void *body, size_t len)
{
	struct fuse_out_header h = { .len = (uint32_t)(sizeof(h) + len),
	    .error = error, .unique = unique };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)body, len } };

	(void)!writev(dev, iov, len > 0 ? 2 : 1);
}

static void
fuse_attr_reply(int dev, uint64_t unique)
{
	struct fuse_attr_out a;

	memset(&a, 0, sizeof(a));
	a.attr.ino = FUSE_ROOT_ID;
	a.attr.mode = S_IFDIR | 0755;
	a.attr.nlink = 2;
	fuse_reply(dev, unique, 0, &a, sizeof(a));
}

static void *
fuse_serve(void *arg)
{
	struct fuse_trap *t = arg;
	static char buf[FUSE_MIN_READ_BUFFER + (1 << 20)];
	ssize_t n;

	while ((n = read(t->dev, buf, sizeof(buf))) > 0 || (n < 0 &&
	    (errno == EINTR || errno == ENOENT))) {
		const struct fuse_in_header *in = (const void *)buf;

		if (n <= 0)
			continue;
		switch (in->opcode) {
		case FUSE_INIT: {
			const struct fuse_init_in *ii = (const void *)(in + 1);
			struct fuse_init_out io;

			memset(&io, 0, sizeof(io));
			io.major = FUSE_KERNEL_VERSION;
			io.minor = ii->minor < FUSE_KERNEL_MINOR_VERSION ?
			    ii->minor : FUSE_KERNEL_MINOR_VERSION;
			io.max_readahead = ii->max_readahead;
			io.max_write = 4096;
			io.time_gran = 1;
			fuse_reply(t->dev, in->unique, 0, &io, sizeof(io));
			break;
		}
		case FUSE_OPENDIR: {
			struct fuse_open_out oo;

			memset(&oo, 0, sizeof(oo));
			oo.fh = 1;
			fuse_reply(t->dev, in->unique, 0, &oo, sizeof(oo));
			break;
		}
		case FUSE_GETATTR:
			pthread_mutex_lock(&t->lock);
			if (t->stall && t->nheld < 16) {
				t->held[t->nheld++] = in->unique;
				t->getattrs++;
				pthread_mutex_unlock(&t->lock);
				break;
			}
			pthread_mutex_unlock(&t->lock);
			fuse_attr_reply(t->dev, in->unique);
			break;
		case FUSE_RELEASEDIR:
			fuse_reply(t->dev, in->unique, 0, NULL, 0);
			break;
		case FUSE_FORGET:
		case FUSE_BATCH_FORGET:
		case FUSE_INTERRUPT:
			break;
		default:
			fuse_reply(t->dev, in->unique, -ENOSYS, NULL, 0);
			break;
		}
	}
	return NULL;
}

/* Mounts the trap under $VMM_TEST_TMPDIR; false if FUSE cannot be mounted
 * here (no /dev/fuse, no right to mount). */
static bool
fuse_trap_set(struct fuse_trap *t)
{
	char opts[128];

	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	t->stall = false;
	t->nheld = 0;
	t->getattrs = 0;
	snprintf(t->mnt, sizeof(t->mnt), "%s/fuse-trap", getenv("VMM_TEST_TMPDIR"));
	(void)mkdir(t->mnt, 0755);
	if ((t->dev = open("/dev/fuse", O_RDWR | O_CLOEXEC)) < 0)
		return false;
	snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=%u,"
	    "group_id=%u", t->dev, (unsigned)getuid(), (unsigned)getgid());
	if (mount("vmmtest", t->mnt, "fuse", MS_NOSUID | MS_NODEV, opts) != 0) {
		fprintf(stderr, "fuse: mount: %s\n", strerror(errno));
		close(t->dev);
		return false;
	}
	CHECK(pthread_create(&t->th, NULL, fuse_serve, t) == 0);
	return true;
}

/* Answers what was held, stops stalling. */
static void
fuse_trap_release(struct fuse_trap *t)
{
	pthread_mutex_lock(&t->lock);
	t->stall = false;
	while (t->nheld > 0)
		fuse_attr_reply(t->dev, t->held[--t->nheld]);
	pthread_mutex_unlock(&t->lock);
}

static void
fuse_trap_remove(struct fuse_trap *t)
{
	fuse_trap_release(t);
	CHECK(umount2(t->mnt, MNT_DETACH) == 0);
	/* The server's read ends (ENODEV) once the filesystem is gone. */
	CHECK(pthread_join(t->th, NULL) == 0);
	close(t->dev);
	(void)rmdir(t->mnt);
}

/* One MemInfo round trip on c in ms, or CALL_MAX_MS if none came. */
#define CALL_MAX_MS	3000
static uint64_t
probe_ms(struct tc *c)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__MemInfoRequest mi = VMM__MEM_INFO_REQUEST__INIT;
	struct vmm_frame_msg *m = NULL;
	uint64_t t0 = vmm_now_ms();

	mi.request_id = tc_rid(c);
	env.msg_case = VMM__ENVELOPE__MSG_MEM_INFO_REQUEST;
	env.mem_info_request = &mi;
	CHECK(vmm_sess_send(c->s, &env, NULL, 0, CALL_MAX_MS) == 0);
	if (tc_recv(c, &m, CALL_MAX_MS) != 1)
		return CALL_MAX_MS;
	CHECK(vmm_frame_msg_env(m)->msg_case ==
	    VMM__ENVELOPE__MSG_MEM_INFO_REPLY);
	vmm_frame_msg_free(m);
	return vmm_now_ms() - t0;
}

/* Returns 77 (skip) where FUSE cannot be mounted. */
static int
test_fuse(void)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Adopt ad = VMM__ADOPT__INIT;
	struct fuse_trap t;
	struct vmm_frame_msg *m;
	uint64_t size = G, worst = 0, t0, ms;
	struct tc *probe;
	struct tc_raw r;
	int dir, late = 0;

	if (!fuse_trap_set(&t)) {
		fprintf(stderr, "fuse: cannot mount FUSE here: skipped\n");
		return 77;
	}
	CHECK((dir = open(t.mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0);
	probe = tc_open(sockpath, "probe", false);
	tc_raw_open(&r, sockpath);
	tc_raw_hello(&r, "fuse");
	pthread_mutex_lock(&t.lock);
	t.stall = true;
	pthread_mutex_unlock(&t.lock);
	ad.request_id = 11;
	ad.n_sizes = 1;
	ad.sizes = &size;
	env.msg_case = VMM__ENVELOPE__MSG_ADOPT;
	env.adopt = &ad;
	tc_raw_send_env(&r, &env, &dir, 1);
	/* Others are served meanwhile. */
	t0 = vmm_now_ms();
	while (vmm_now_ms() - t0 < 600) {
		ms = probe_ms(probe);
		if (ms > worst)
			worst = ms;
		if (ms >= CALL_MAX_MS) {
			late = 1;
			break;
		}
	}
	fprintf(stderr, "fuse: GETATTRs vmmd sent %u; another client's worst "
	    "round trip %llu ms%s\n", t.getattrs, (unsigned long long)worst,
	    late ? " (no answer: vmmd is stuck)" : "");
	/* Let it go, then the Adopt's answer: refused. */
	fuse_trap_release(&t);
	if (late) {
		m = NULL;
		CHECK(tc_recv(probe, &m, 5000) == 1);
		vmm_frame_msg_free(m);
	}
	m = tc_raw_expect(&r, VMM__ENVELOPE__MSG_ADOPT_REPLY);
	CHECK(vmm_frame_msg_env(m)->adopt_reply->n_chunk_ids == 1 &&
	    vmm_frame_msg_env(m)->adopt_reply->chunk_ids[0] == 0);
	vmm_frame_msg_free(m);
	tc_raw_close(&r);
	tc_close(probe);
	close(dir);
	fuse_trap_remove(&t);
	CHECK(!late && worst < 500);
	baseline("fuse");
	return 0;
}

/* Whether this build (and so vmmd's) runs under a sanitizer. */
static bool
sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	return true;
#else
	return getenv("ASAN_OPTIONS") != NULL || getenv("TSAN_OPTIONS") != NULL;
#endif
}

/* ---- the IPC ledger's memory ----------------------------------------------- */

#define IPCMEM_CHUNKS	8
#define IPCMEM_TRIES	4096

/* The next permutation of v in lexicographic order; false after the last. */
static bool
next_perm(uint64_t *v, size_t n)
{
	size_t i = n - 1, j = n - 1;
	uint64_t t;

	while (i > 0 && v[i - 1] >= v[i])
		i--;
	if (i == 0)
		return false;
	while (v[j] <= v[i - 1])
		j--;
	t = v[i - 1];
	v[i - 1] = v[j];
	v[j] = t;
	for (j = n - 1; i < j; i++, j--) {
		t = v[i];
		v[i] = v[j];
		v[j] = t;
	}
	return true;
}

/* Opens export xid[0] (token xid[1]) until refused or IPCMEM_TRIES times;
 * sends how many it holds, then waits to be killed. */
static int
ipc_hoarder(void *arg, int ctl)
{
	const uint64_t *xid = arg;
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__IpcOpen o = VMM__IPC_OPEN__INIT;
	struct tc *c = tc_open(sockpath, "hoarder", false);
	struct vmm_frame_msg *m;
	int n, rc;

	o.export_id = xid[0];
	o.token = xid[1];
	for (n = 0; n < IPCMEM_TRIES; n++) {
		o.request_id = 0;
		env.msg_case = VMM__ENVELOPE__MSG_IPC_OPEN;
		env.ipc_open = &o;
		if ((rc = tc_request(c, &env, &m, NULL, 0)) != 0) {
			CHECK(rc == -VMM__ERROR_CODE__ERROR_CODE_LIMIT);
			break;
		}
		vmm_frame_msg_free(m);	/* the fds are closed with it */
	}
	tc_ctl_send(ctl, &n, sizeof(n));
	for (;;)
		pause();
	return 0;
}

static void
test_ipcmem(void)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__IpcExport x = VMM__IPC_EXPORT__INIT;
	uint64_t ids[IPCMEM_CHUNKS], xid[2] = { 0, 0 }, limits;
	struct tc_chunk ch[IPCMEM_CHUNKS];
	struct vmm_frame_msg *m;
	struct tc *e;
	long rss0, rss1, rss2;
	int i, nexp = 0, nimp, rc, ctl;
	pid_t p;

	e = tc_open(sockpath, "exporter", false);
	for (i = 0; i < IPCMEM_CHUNKS; i++) {
		CHECK(tc_acquire(e, G, 0, &ch[i], 1) == 1);
		ids[i] = ch[i].id;
	}
	tc_close_chunks(ch, IPCMEM_CHUNKS);
	limits = tc_counter(adm, "ipc_limits");
	tc_sleep_ms(50);
	rss0 = tc_rss_kb(daemon_pid);
	x.n_chunk_ids = IPCMEM_CHUNKS;
	x.chunk_ids = ids;
	for (i = 0; i < IPCMEM_TRIES; i++) {
		x.request_id = 0;
		env.msg_case = VMM__ENVELOPE__MSG_IPC_EXPORT;
		env.ipc_export = &x;
		if ((rc = tc_request(e, &env, &m, NULL, 0)) != 0) {
			CHECK(rc == -VMM__ERROR_CODE__ERROR_CODE_LIMIT);
			break;
		}
		if (nexp++ == 0) {
			xid[0] = vmm_frame_msg_env(m)->ipc_export_reply->export_id;
			xid[1] = vmm_frame_msg_env(m)->ipc_export_reply->token;
		}
		vmm_frame_msg_free(m);
		CHECK(next_perm(ids, IPCMEM_CHUNKS));
	}
	rss1 = tc_rss_kb(daemon_pid);
	p = tc_spawn(ipc_hoarder, xid, &ctl);
	tc_ctl_recv(ctl, &nimp, sizeof(nimp), 60000);
	rss2 = tc_rss_kb(daemon_pid);
	fprintf(stderr, "ipcmem: %d exports of %d chunks: vmmd RSS +%ld KiB; "
	    "%d imports: +%ld KiB more; LIMIT answered %llu times\n", nexp,
	    IPCMEM_CHUNKS, rss1 - rss0, nimp, rss2 - rss1,
	    (unsigned long long)(tc_counter(adm, "ipc_limits") - limits));
	CHECK(nexp > 0 && nimp > 0);
	/* The chunks named in all are bounded (16,384 each way: vmmd.h),
	 * which bounds the bytes; RSS shows it too, but not under a
	 * sanitizer (its allocator keeps what each request freed). */
	CHECK((uint64_t)nexp * IPCMEM_CHUNKS <= 16384);
	CHECK((uint64_t)nimp * IPCMEM_CHUNKS <= 16384);
	if (!sanitized())
		CHECK(rss0 > 0 && rss2 - rss0 < 2048);
	/* Both sessions are still served. */
	CHECK(tc_sessions(e) > 0);
	kill(p, SIGKILL);
	tc_wait_child(p, SIGKILL);
	close(ctl);
	for (i = 0; i < IPCMEM_CHUNKS; i++)
		ids[i] = ch[i].id;
	wait_pool(IPCMEM_CHUNKS * G, 0, "ipcmem: importer gone");
	CHECK(tc_release(e, ids, IPCMEM_CHUNKS) == 0);
	tc_close(e);
	baseline("ipcmem");
}

/* ---- VaClaim against a full plan ------------------------------------------- */

#define VC_SESSIONS	200
#define VC_RANGES	63	/* each; VMMD_VA_MAX_RANGES is 64 */
#define VC_CLAIMS	1000

static void
raw_va_request(struct tc_raw *r, uint64_t size)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__VaRequest q = VMM__VA_REQUEST__INIT;

	q.request_id = 3;
	q.size = size;
	env.msg_case = VMM__ENVELOPE__MSG_VA_REQUEST;
	env.va_request = &q;
	tc_raw_send_env(r, &env, NULL, 0);
}

/* The planners and the claimer, in a process of their own (their sessions
 * are kept while it lives: they hold ranges): sets up, says so, waits for
 * a byte, sends VC_CLAIMS claims and reads every answer, says so, then
 * waits to be killed. */
static int
vaclaimer(void *arg, int ctl)
{
	static struct tc_raw r[VC_SESSIONS];
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__VaClaim vc = VMM__VA_CLAIM__INIT;
	Vmm__VaRange top = VMM__VA_RANGE__INIT, *tops[VMM_PROTO_MAX_VA_RANGES];
	unsigned char *batch, one[2048];
	struct vmm_frame_msg *m;
	struct tc_raw a;
	size_t len, k;
	char go;
	int i, j;

	(void)arg;
	for (i = 0; i < VC_SESSIONS; i++) {
		tc_raw_open(&r[i], sockpath);
		tc_raw_hello(&r[i], "planner");
		for (j = 0; j < VC_RANGES; j++)
			raw_va_request(&r[i], 4096);
		for (j = 0; j < VC_RANGES; j++) {
			m = tc_raw_expect(&r[i], VMM__ENVELOPE__MSG_VA_REPLY);
			CHECK(vmm_frame_msg_env(m)->va_reply->addr != 0);
			vmm_frame_msg_free(m);
		}
	}
	/* Its one range, above every other; then claims that each overlap
	 * it, 64 to a message. */
	tc_raw_open(&a, sockpath);
	tc_raw_hello(&a, "claimer");
	top.addr = 1ull << 56;
	top.size = 4096;
	for (k = 0; k < VMM_PROTO_MAX_VA_RANGES; k++)
		tops[k] = &top;
	vc.request_id = 4;
	vc.n_ranges = 1;
	vc.ranges = tops;
	env.msg_case = VMM__ENVELOPE__MSG_VA_CLAIM;
	env.va_claim = &vc;
	tc_raw_send_env(&a, &env, NULL, 0);
	m = tc_raw_expect(&a, VMM__ENVELOPE__MSG_VA_CLAIM_REPLY);
	CHECK(vmm_frame_msg_env(m)->va_claim_reply->accepted[0]);
	vmm_frame_msg_free(m);
	vc.n_ranges = VMM_PROTO_MAX_VA_RANGES;
	len = tc_pack(&env, one, sizeof(one));
	CHECK((batch = malloc(len * VC_CLAIMS)) != NULL);
	for (i = 0; i < VC_CLAIMS; i++)
		memcpy(batch + (size_t)i * len, one, len);
	tc_ctl_send(ctl, "r", 1);
	tc_ctl_recv(ctl, &go, 1, 60000);
	tc_raw_send(&a, batch, len * VC_CLAIMS, NULL, 0);
	for (i = 0; i < VC_CLAIMS; i++) {
		m = tc_raw_expect(&a, VMM__ENVELOPE__MSG_VA_CLAIM_REPLY);
		vmm_frame_msg_free(m);
	}
	tc_ctl_send(ctl, "d", 1);
	for (;;)
		pause();
	return 0;
}

static void
test_vaclaim(void)
{
	uint64_t refused0, t0, ms, worst;
	struct tc *probe;
	long ticks;
	char c;
	pid_t p;
	int ctl;

	p = tc_spawn(vaclaimer, NULL, &ctl);
	tc_ctl_recv(ctl, &c, 1, 60000);
	probe = tc_open(sockpath, "probe", false);
	refused0 = tc_counter(adm, "va_claims_refused");
	ticks = tc_cpu_ticks(daemon_pid);
	t0 = vmm_now_ms();
	tc_ctl_send(ctl, "g", 1);
	worst = probe_ms(probe);
	tc_ctl_recv(ctl, &c, 1, 60000);
	ms = vmm_now_ms() - t0;
	ticks = tc_cpu_ticks(daemon_pid) - ticks;
	fprintf(stderr, "vaclaim: %d claims of %d ranges against %d recorded: "
	    "%llu ms, vmmd CPU %ld ticks; another client's round trip %llu "
	    "ms\n", VC_CLAIMS, VMM_PROTO_MAX_VA_RANGES,
	    VC_SESSIONS * VC_RANGES + 1, (unsigned long long)ms, ticks,
	    (unsigned long long)worst);
	CHECK(tc_counter(adm, "va_claims_refused") ==
	    refused0 + VC_CLAIMS * VMM_PROTO_MAX_VA_RANGES);
	/* 64,000 lookups: well under 150 ms of CPU (15 ticks), even under a
	 * sanitizer; a walk of every range each is 800 M steps. */
	CHECK(ticks < 15);
	tc_close(probe);
	kill(p, SIGKILL);
	tc_wait_child(p, SIGKILL);
	close(ctl);
	baseline("vaclaim");
}

/* ---- quarantine flood ----------------------------------------------------- */

#define FLOOD_TRIES	48
#define FLOOD_PER_UID	16	/* max_sessions_per_uid of the flood daemon */

/* Connects, says Hello, takes a range of the address plan (odd tries: a
 * chunk, whose fd it keeps) and drops the connection, FLOOD_TRIES times or
 * until refused; sends how many sessions it left, then waits to be
 * killed. */
static int
flooder(void *arg, int ctl)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__VaRequest q = VMM__VA_REQUEST__INIT;
	Vmm__Hello h = VMM__HELLO__INIT;
	struct vmm_frame_msg *m;
	int i, rc;

	(void)arg;
	for (i = 0; i < FLOOD_TRIES; i++) {
		struct tc_raw r;

		tc_raw_open(&r, sockpath);
		h.request_id = 1;
		h.protocol_version = VMM_PROTOCOL_VERSION;
		h.client_name = (char *)"flood";
		h.kind = VMM__CLIENT_KIND__CLIENT_KIND_APP;
		env.msg_case = VMM__ENVELOPE__MSG_HELLO;
		env.hello = &h;
		tc_raw_send_env(&r, &env, NULL, 0);
		m = NULL;
		rc = tc_recv_raw(r.fd, r.rd, &m, 5000);
		CHECK(rc == 1);
		if (vmm_frame_msg_env(m)->msg_case == VMM__ENVELOPE__MSG_ERROR) {
			CHECK(vmm_frame_msg_env(m)->error->code ==
			    VMM__ERROR_CODE__ERROR_CODE_LIMIT);
			vmm_frame_msg_free(m);
			tc_raw_close(&r);
			break;
		}
		CHECK(vmm_frame_msg_env(m)->msg_case ==
		    VMM__ENVELOPE__MSG_HELLO_REPLY);
		vmm_frame_msg_free(m);
		if (i % 2 == 0) {
			q.request_id = 2;
			q.size = G;
			env.msg_case = VMM__ENVELOPE__MSG_VA_REQUEST;
			env.va_request = &q;
			tc_raw_send_env(&r, &env, NULL, 0);
			vmm_frame_msg_free(tc_raw_expect(&r,
			    VMM__ENVELOPE__MSG_VA_REPLY));
		} else {
			raw_acquire(&r, G, 0, false, 0);
			m = tc_raw_expect(&r, VMM__ENVELOPE__MSG_GRANT);
			(void)vmm_frame_msg_take_fd(m, 0);	/* kept */
			vmm_frame_msg_free(m);
		}
		tc_raw_close(&r);
	}
	tc_ctl_send(ctl, &i, sizeof(i));
	for (;;)
		pause();
	return 0;
}

/* At the limit, a process whose connection dropped still gets back in to
 * resume its quarantined session; another one of its uid does not. */
static void
test_flood_resume(void)
{
	struct tc *open[FLOOD_PER_UID];
	struct victim_msg msg;
	uint64_t refused;
	struct tc_raw r;
	char one;
	pid_t v;
	int ctl, i, n = 0;

	v = tc_spawn(victim, NULL, &ctl);
	tc_ctl_recv(ctl, &msg, sizeof(msg), 10000);
	/* The admin, the victim and these: the limit. */
	for (i = 0; i < FLOOD_PER_UID - 2; i++)
		open[n++] = tc_open(sockpath, "filler", false);
	CHECK(victim_do(ctl, 'q') == 1);
	wait_pool(0, G, "flood: victim quarantined");
	refused = tc_counter(adm, "sessions_refused");
	tc_raw_open(&r, sockpath);
	raw_expect_error(&r, VMM__ERROR_CODE__ERROR_CODE_LIMIT, true);
	CHECK(tc_counter(adm, "sessions_refused") == refused + 1);
	CHECK(victim_do(ctl, 'r') == 1);
	wait_pool(G, 0, "flood: victim resumed");
	CHECK(victim_do(ctl, 'c') == 1);
	one = 'x';
	tc_ctl_send(ctl, &one, 1);
	CHECK(tc_wait_child(v, 0) == 0);
	close(ctl);
	while (n > 0)
		tc_close(open[--n]);
	for (i = 0; i < 200 && tc_sessions(adm) != 1; i++)
		tc_sleep_ms(10);
	baseline("flood: resume at the limit");
}

static void
test_flood(void)
{
	uint64_t refused = tc_counter(adm, "sessions_refused");
	int left, fds;
	pid_t p;
	int ctl;

	p = tc_spawn(flooder, NULL, &ctl);
	tc_ctl_recv(ctl, &left, sizeof(left), 30000);
	fds = tc_count_fds(daemon_pid);
	fprintf(stderr, "flood: %d sessions left behind (limit %d); vmmd fds "
	    "%d (baseline %d); refused %llu\n", left, FLOOD_PER_UID, fds, fds0,
	    (unsigned long long)(tc_counter(adm, "sessions_refused") -
	    refused));
	/* The admin's session is of this uid too; one quarantined session of
	 * the flooder is not counted (it may come back to resume it). */
	CHECK(left <= FLOOD_PER_UID);
	CHECK(tc_counter(adm, "sessions_refused") == refused + 1);
	/* A pidfd per session left, and the chunks' kept exports. */
	CHECK(fds <= fds0 + 3 * FLOOD_PER_UID);
	kill(p, SIGKILL);
	tc_wait_child(p, SIGKILL);
	close(ctl);
	baseline("flood");
	test_flood_resume();
}

int
main(int argc, char **argv)
{
	const char *only = argc > 1 ? argv[1] : "all";
	struct tc_chunk ch;
	bool all = strcmp(only, "all") == 0;

	signal(SIGPIPE, SIG_IGN);
	daemon_pid = tc_start_in(only, strcmp(only, "flood") == 0 ?
	    "idle_timeout_ms = 0\nmax_sessions_per_uid = 16\n" :
	    "idle_timeout_ms = 0\n", sockpath, sizeof(sockpath), &adm);
	G = adm->granularity;
	/* Warm-up: the driver's first chunk, then an empty pool. */
	CHECK(tc_acquire(adm, G, 0, &ch, 1) == 1);
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(adm, &ch.id, 1) == 0);
	(void)tc_trim(adm, 0, false);
	tc_sleep_ms(50);
	fds0 = tc_count_fds(daemon_pid);

	if (all || strcmp(only, "resume") == 0) {
		test_resume();
		test_twoconn();
	}
	if (all || strcmp(only, "kill") == 0)
		test_kill();
	if (all || strcmp(only, "fields") == 0) {
		test_up_to();
		test_release_dups();
		test_stray_fds();
		test_dribble();
	}
	if (all || strcmp(only, "names") == 0)
		test_names();
	if (strcmp(only, "flood") == 0)
		test_flood();
	if (strcmp(only, "ipcmem") == 0)
		test_ipcmem();
	if (strcmp(only, "vaclaim") == 0)
		test_vaclaim();
	if (strcmp(only, "fuse") == 0 && test_fuse() == 77) {
		tc_stop_with(daemon_pid, adm);
		return 77;
	}
	tc_stop_with(daemon_pid, adm);
	return 0;
}
