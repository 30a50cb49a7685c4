/*
 * One client connection.  Non-blocking socket driven by libevent: frames are
 * read incrementally (a bounded number per wake-up, so one busy client cannot
 * starve the rest), dispatched by one switch, and answered through a bounded
 * output queue; a client that stops reading until that bound is hit is
 * disconnected, never waited for.
 *
 * State machine: NEW (Hello only, before a timeout) → READY → CLOSED.  A
 * CLOSED session outlives its socket while its process still lives and holds
 * chunks (quarantine); the pidfd taken at accept says when it is gone.
 */
#include "vmmd.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "log.h"

/* How long a client that left a Recall unanswered is neither asked again
 * nor counted on to give memory back. */
#define VMMD_RECALL_SHUN_MS 30000

/* Frames handled per wake-up before yielding to other clients. */
#define VMMD_SESSION_BUDGET 32
/* File descriptors a session's output queue may hold unsent. */
#define VMMD_SESSION_MAX_QUEUED_FDS 256

struct vmmd_session_list	vmmd_sessions = TAILQ_HEAD_INITIALIZER(vmmd_sessions);
unsigned			vmmd_nsessions;
static uint64_t			session_next_id = 1;
static uint64_t			session_round;	/* of recalls, see pend */


static void	session_close(struct vmmd_session *s, const char *why);
static void	session_free(struct vmmd_session *s);

/* ---- helpers ---------------------------------------------------------------- */

static int
session_pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	errno = ENOSYS;
	return -1;
#endif
}

/* True while the peer process is alive (its pidfd is not readable). */
static bool
session_process_alive(const struct vmmd_session *s)
{
	struct pollfd p = { .fd = s->pidfd, .events = POLLIN };

	if (s->pidfd < 0)
		return false;
	return poll(&p, 1, 0) == 0;
}

/* Reads the cgroup v2 path of pid ("0::/path" in /proc/<pid>/cgroup). */
static void
session_read_cgroup(pid_t pid, char *out, size_t outlen)
{
	char path[64], line[1024];
	FILE *f;

	out[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "0::", 3) == 0) {
			line[strcspn(line, "\n")] = '\0';
			if ((size_t)snprintf(out, outlen, "%s", line + 3) >= outlen)
				out[0] = '\0';	/* too long to be a quota key */
			break;
		}
	}
	fclose(f);
}

uint64_t
vmmd_session_quota(const struct vmmd_session *s)
{
	return vmmd_quota_for(&vmmd_cfg, s->uid, s->state == VMMD_SESSION_NEW ?
	    NULL : s->name, s->cgroup[0] ? s->cgroup : NULL);
}

uint64_t
vmmd_session_quota_room(const struct vmmd_session *s, char *why,
    size_t whylen)
{
	static const char *const kind[] = { "uid", "cgroup", "client name" };
	const struct vmmd_session *o;
	uint64_t q[3], used[3] = { 0, 0, 0 }, room = UINT64_MAX;
	const char *key[3];
	char uidbuf[16];
	int k, bind = -1;

	snprintf(uidbuf, sizeof(uidbuf), "%u", (unsigned)s->uid);
	key[0] = uidbuf;
	key[1] = s->cgroup[0] != '\0' ? s->cgroup : NULL;
	key[2] = s->state != VMMD_SESSION_NEW ? s->name : NULL;
	q[0] = vmmd_quota_get(&vmmd_cfg, VMMD_QUOTA_UID, key[0]);
	q[1] = vmmd_quota_get(&vmmd_cfg, VMMD_QUOTA_CGROUP, key[1]);
	q[2] = vmmd_quota_get(&vmmd_cfg, VMMD_QUOTA_NAME, key[2]);
	if (q[0] == 0 && q[1] == 0 && q[2] == 0)
		return UINT64_MAX;
	TAILQ_FOREACH(o, &vmmd_sessions, link) {
		if (q[0] != 0 && o->uid == s->uid)
			used[0] += o->h.bytes;
		if (q[1] != 0 && strcmp(o->cgroup, s->cgroup) == 0)
			used[1] += o->h.bytes;
		if (q[2] != 0 && o->state != VMMD_SESSION_NEW &&
		    strcmp(o->name, s->name) == 0)
			used[2] += o->h.bytes;
	}
	for (k = 0; k < 3; k++) {
		uint64_t left = q[k] > used[k] ? q[k] - used[k] : 0;

		if (q[k] != 0 && left < room) {
			room = left;
			bind = k;
		}
	}
	if (why != NULL && whylen > 0 && bind >= 0) {
		char esc[4 * VMM_PROTO_MAX_QUOTA_KEY + 1];

		vmm_log_escape(esc, sizeof(esc), key[bind], strlen(key[bind]));
		snprintf(why, whylen, "%s %.80s holds %" PRIu64 " MiB of its %"
		    PRIu64 " MiB quota", kind[bind], esc, used[bind] >> 20,
		    q[bind] >> 20);
	}
	return room;
}

unsigned
vmmd_session_count_uid(uid_t uid)
{
	struct vmmd_session *s;
	unsigned n = 0;

	TAILQ_FOREACH(s, &vmmd_sessions, link)
		if (s->state != VMMD_SESSION_CLOSED && s->uid == uid)
			n++;
	return n;
}

/* ---- output ----------------------------------------------------------------- */

/* Sends what the socket takes; arms the write event for the rest. */
static int
session_flush(struct vmmd_session *s)
{
	int rc = vmm_frame_outq_flush(s->oq, s->fd);

	if (rc == VMM_FRAME_AGAIN) {
		event_add(s->ev_write, NULL);
		return 0;
	}
	event_del(s->ev_write);
	if (rc < 0) {
		session_close(s, "write failed");
		return -1;
	}
	return 0;
}

/* Queues a message (taking the fds) and starts sending it.  Returns -1 if
 * the session had to be closed. */
static int
session_send(struct vmmd_session *s, const Vmm__Envelope *env, int *fds,
    size_t nfds)
{
	int rc = vmm_frame_outq_push(s->oq, env, fds, nfds);

	if (rc == -ENOBUFS) {
		vmmd_stats.slow_peer_drops++;
		session_close(s, "client does not read its replies");
		return -1;
	}
	if (rc < 0) {
		vmm_log_error("session %" PRIu64 ": cannot queue %s: %s", s->id,
		    vmm_frame_type_name(env), vmm_frame_strerror(rc));
		session_close(s, "internal error");
		return -1;
	}
	return session_flush(s);
}

static int
session_error(struct vmmd_session *s, uint64_t rid, Vmm__ErrorCode code,
    const char *msg)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Error err = VMM__ERROR__INIT;
	char buf[VMM_PROTO_MAX_MESSAGE + 1];

	snprintf(buf, sizeof(buf), "%s", msg);
	err.request_id = rid;
	err.code = code;
	err.message = buf;
	env.msg_case = VMM__ENVELOPE__MSG_ERROR;
	env.error = &err;
	vmmd_stats.failures++;
	vmm_log_debug("session %" PRIu64 ": error %d: %s", s->id, (int)code, buf);
	return session_send(s, &env, NULL, 0);
}

/* A fatal protocol error: tell the peer (best effort) and hang up. */
static void
session_fatal(struct vmmd_session *s, uint64_t rid, Vmm__ErrorCode code,
    const char *msg)
{
	if (session_error(s, rid, code, msg) == 0)
		session_close(s, msg);
}

/* ---- handlers ----------------------------------------------------------------- */

/*
 * s takes over the chunks of session old_id if that was a session of the
 * same process: same pid and uid, and the process the old session's pidfd
 * names still alive (so the pid was not reused).  A session still open is
 * closed first (its socket may be shared with another process, which then
 * holds nothing).  Chunks keep their ids; nothing gets a second record.
 */
static bool
session_resume(struct vmmd_session *s, uint64_t old_id)
{
	struct vmmd_session *o;

	TAILQ_FOREACH(o, &vmmd_sessions, link)
		if (o->id == old_id)
			break;
	if (o == NULL || o == s || o->pid != s->pid || o->uid != s->uid ||
	    !session_process_alive(o))
		return false;
	if (o->state != VMMD_SESSION_CLOSED)
		session_close(o, "resumed by a new connection of its process");
	/* Closed with nothing held, or gone in between: nothing to take. */
	TAILQ_FOREACH(o, &vmmd_sessions, link)
		if (o->id == old_id)
			break;
	if (o == NULL || o->state != VMMD_SESSION_CLOSED)
		return false;
	vmm_log_info("RESUME Session=%" PRIu64 " Old=%" PRIu64 " Pid=%d Chunks=%"
	    PRIu64, s->id, o->id, (int)s->pid, o->h.chunks);
	vmmd_pool_transfer(&o->h, &s->h);
	vmmd_stats.resumed_sessions++;
	session_free(o);
	return true;
}

static void
session_hello(struct vmmd_session *s, const Vmm__Hello *h)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__HelloReply rep = VMM__HELLO_REPLY__INIT;
	Vmm__Limits lim = VMM__LIMITS__INIT;
	char msg[128], esc[4 * VMM_PROTO_MAX_NAME + 1];

	if (s->state != VMMD_SESSION_NEW) {
		session_fatal(s, h->request_id, VMM__ERROR_CODE__ERROR_CODE_BAD_STATE,
		    "Hello sent twice");
		return;
	}
	if (h->protocol_version != VMM_PROTOCOL_VERSION) {
		snprintf(msg, sizeof(msg), "protocol version %u not supported; "
		    "vmmd %s speaks version %d", h->protocol_version,
		    VMMD_VERSION, VMM_PROTOCOL_VERSION);
		session_fatal(s, h->request_id,
		    VMM__ERROR_CODE__ERROR_CODE_VERSION_MISMATCH, msg);
		return;
	}
	if (h->device_uuid.len == 16 &&
	    memcmp(h->device_uuid.data, vmmd_pool_device_uuid(), 16) != 0) {
		session_fatal(s, h->request_id, VMM__ERROR_CODE__ERROR_CODE_NO_DEVICE,
		    "this socket serves another GPU");
		return;
	}
	snprintf(s->name, sizeof(s->name), "%s", h->client_name);
	s->kind = h->kind;
	s->state = VMMD_SESSION_READY;
	event_del(s->ev_timeout);
	if (h->resume_session != 0 && h->resume_instance == vmmd_instance)
		rep.resumed = session_resume(s, h->resume_session);
	vmm_log_escape(esc, sizeof(esc), s->name, strlen(s->name));
	vmm_log_info("HELLO Session=%" PRIu64 " Pid=%d Uid=%u Name=%s", s->id,
	    (int)s->pid, (unsigned)s->uid, esc);

	lim.max_chunks_per_grant = (uint32_t)vmmd_cfg.max_pieces;
	lim.max_frame = VMM_FRAME_MAX;
	lim.quota_bytes = vmmd_session_quota(s);
	lim.device_total_bytes = vmmd_pool_device_total();
	rep.request_id = h->request_id;
	rep.protocol_version = VMM_PROTOCOL_VERSION;
	rep.session_id = s->id;
	rep.instance_id = vmmd_instance;
	rep.granularity = vmmd_pool_chunk_unit();
	rep.device_uuid.data = (uint8_t *)vmmd_pool_device_uuid();
	rep.device_uuid.len = 16;
	rep.limits = &lim;
	env.msg_case = VMM__ENVELOPE__MSG_HELLO_REPLY;
	env.hello_reply = &rep;
	session_send(s, &env, NULL, 0);
}

/* What session_grant did with an Acquire. */
enum session_grant_outcome {
	GRANT_ANSWERED,		/* granted, or refused with an Error reply */
	GRANT_WOULD_CREATE,	/* no_create, and the pool would have to grow */
	GRANT_SHORT,		/* out of memory and may_wait: park, recall */
};

/* Grants (or refuses) one Acquire: the quotas, then the pool. */
static enum session_grant_outcome
session_grant(struct vmmd_session *s, uint64_t rid, uint64_t bytes,
    unsigned flags, uint64_t min_piece, bool may_wait, bool no_create)
{
	struct vmmd_chunk *chunks[VMM_PROTO_MAX_CHUNKS];
	Vmm__Chunk wire[VMM_PROTO_MAX_CHUNKS], *wirep[VMM_PROTO_MAX_CHUNKS];
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Grant g = VMM__GRANT__INIT;
	int fds[VMM_PROTO_MAX_CHUNKS];
	char msg[VMM_PROTO_MAX_MESSAGE], why[192], holders[160];
	int n, i, code;
	uint64_t total = 0, want = vmmd_pool_round(bytes);
	size_t off;

	if (bytes != 0 && want > vmmd_session_quota_room(s, why, sizeof(why))) {
		snprintf(msg, sizeof(msg), "over quota: %s, asking %" PRIu64
		    " MiB", why, want >> 20);
		vmmd_stats.quota_failures++;
		session_error(s, rid, VMM__ERROR_CODE__ERROR_CODE_QUOTA, msg);
		return GRANT_ANSWERED;
	}
	n = vmmd_pool_grant(&s->h, bytes, flags | (no_create ?
	    VMMD_GRANT_NO_CREATE : 0), min_piece, chunks, VMM_PROTO_MAX_CHUNKS,
	    &code, msg, sizeof(msg));
	if (n == VMMD_POOL_WOULD_CREATE)
		return GRANT_WOULD_CREATE;
	if (n < 0) {
		if (code == VMM__ERROR_CODE__ERROR_CODE_OUT_OF_MEMORY) {
			if (may_wait)
				return GRANT_SHORT;
			vmmd_stats.oom_failures++;
			vmmd_session_holders(holders, sizeof(holders));
			vmm_log_error("grant of %" PRIu64 " bytes to pid %d failed: "
			    "%s%s", bytes, (int)s->pid, msg, holders);
			/* Who else holds what is for admins to see: pids and
			 * sizes of other users' processes are theirs. */
			off = strlen(msg);
			snprintf(msg + off, sizeof(msg) - off, ", this client "
			    "holds %" PRIu64 " MiB%s", s->h.bytes >> 20, s->admin ?
			    holders : "");
		}
		session_error(s, rid, (Vmm__ErrorCode)code, msg);
		return GRANT_ANSWERED;
	}
	for (i = 0; i < n; i++) {
		if ((fds[i] = vmmd_pool_export(chunks[i])) < 0) {
			while (i > 0)
				close(fds[--i]);
			vmmd_pool_ungrant(chunks, (size_t)n);
			session_error(s, rid, VMM__ERROR_CODE__ERROR_CODE_INTERNAL,
			    "could not export a chunk");
			return GRANT_ANSWERED;
		}
		vmm__chunk__init(&wire[i]);
		wire[i].id = chunks[i]->id;
		wire[i].size = chunks[i]->size;
		wirep[i] = &wire[i];
		total += chunks[i]->size;
	}
	g.request_id = rid;
	g.n_chunks = (size_t)n;
	g.chunks = wirep;
	env.msg_case = VMM__ENVELOPE__MSG_GRANT;
	env.grant = &g;
	vmm_log_info("GRANT Session=%" PRIu64 " Pid=%d Size=%" PRIu64
	    " Chunks=%d FirstChunk=%" PRIu64, s->id, (int)s->pid, total, n,
	    chunks[0]->id);
	if (vmm_frame_outq_push(s->oq, &env, fds, (size_t)n) != 0) {
		/* The fds are closed by the queue; the client never saw them. */
		vmmd_pool_ungrant(chunks, (size_t)n);
		vmmd_stats.slow_peer_drops++;
		session_close(s, "client does not read its replies");
		return GRANT_ANSWERED;
	}
	session_flush(s);
	return GRANT_ANSWERED;
}

void
vmmd_session_holders(char *buf, size_t len)
{
	const struct vmmd_session *o;
	size_t off = 0;
	int shown = 0;

	if (len > 0)
		buf[0] = '\0';
	TAILQ_FOREACH(o, &vmmd_sessions, link) {
		if (o->h.bytes == 0 || off >= len || shown == 4)
			continue;
		off += (size_t)snprintf(buf + off, len - off,
		    "%s pid %d %" PRIu64 " MiB", shown ? "," : "; holders:",
		    (int)o->pid, o->h.bytes >> 20);
		shown++;
	}
}

static void
session_pend_clear(struct vmmd_session *s)
{
	s->pend.active = false;
	if (s->ev_pend != NULL)
		event_del(s->ev_pend);
}

/* The recall timed out: one last try, then out of memory. */
static void
session_on_pend(evutil_socket_t fd, short what, void *arg)
{
	struct vmmd_session *s = arg;

	(void)fd;
	(void)what;
	if (!s->pend.active || s->state != VMMD_SESSION_READY)
		return;
	session_pend_clear(s);
	session_grant(s, s->pend.rid, s->pend.bytes, s->pend.flags,
	    s->pend.min_piece, false, false);
}

/* Whether o asked for memory within the last idle_ms. */
static bool
session_busy(const struct vmmd_session *o, uint64_t now, uint64_t idle_ms)
{
	return idle_ms != 0 && o->last_acquire_ms != 0 &&
	    now - o->last_acquire_ms < idle_ms;
}

static bool	session_shares_memory(const struct vmmd_session *,
		    const struct vmmd_session *);

/* Whether o may be asked for memory (and counted on to give some): it
 * has not left a Recall unanswered lately.  An overdue Recall shuns it. */
static bool
session_recallable(struct vmmd_session *o, uint64_t now)
{
	if (o->recall_out != 0 && now >= o->recall_due_ms) {
		o->recall_out = 0;
		if (!o->recall_heard) {
			vmm_log_info("RECALL_UNANSWERED Session=%" PRIu64
			    " Pid=%d", o->id, (int)o->pid);
			o->recall_shun_until_ms = now + VMMD_RECALL_SHUN_MS;
			vmmd_stats.recalls_unanswered++;
		}
	}
	return now >= o->recall_shun_until_ms;
}

unsigned
vmmd_session_recall(struct vmmd_session *except, uint64_t target, int reason,
    uint64_t idle_ms, bool same_tenant, uint64_t round, uint64_t answer_ms)
{
	static uint64_t recall_id;
	struct vmmd_session *o;
	uint64_t now = vmm_now_ms();
	unsigned n = 0;

	TAILQ_FOREACH(o, &vmmd_sessions, link) {
		Vmm__Envelope env = VMM__ENVELOPE__INIT;
		Vmm__Recall r = VMM__RECALL__INIT;
		uint64_t want;

		if (o == except || o->state != VMMD_SESSION_READY ||
		    o->kind != VMM__CLIENT_KIND__CLIENT_KIND_APP ||
		    o->rep_cached == 0 || o->h.chunks == 0 ||
		    session_busy(o, now, idle_ms) ||
		    (same_tenant && !session_shares_memory(o, except)) ||
		    !session_recallable(o, now))
			continue;
		/* Still working on an earlier Recall (no word from it yet): not
		 * asked twice. */
		if (o->recall_out != 0 && !o->recall_heard) {
			if (round != 0 && o->recall_round == round)
				n++;
			continue;
		}
		/* What vmmd can verify: no more than it lent this client. */
		want = o->rep_cached < o->h.bytes ? o->rep_cached :
		    o->h.bytes;
		if (target != 0 && target < want)
			want = target;
		r.recall_id = ++recall_id;
		r.target_bytes = want;
		r.reason = (Vmm__RecallReason)reason;
		env.msg_case = VMM__ENVELOPE__MSG_RECALL;
		env.recall = &r;
		vmm_log_info("RECALL Session=%" PRIu64 " Pid=%d Size=%" PRIu64,
		    o->id, (int)o->pid, want);
		vmmd_stats.recalls++;
		/* A client that does not read is dropped by session_send. */
		if (session_send(o, &env, NULL, 0) == 0) {
			o->recall_out = r.recall_id;
			o->recall_heard = false;
			o->recall_round = round;
			o->recall_due_ms = now + (answer_ms != 0 ? answer_ms :
			    1000);
			n++;
		}
	}
	return n;
}

/* Whether a session still owes an answer to a Recall of round. */
static bool
session_round_open(uint64_t round, uint64_t now)
{
	struct vmmd_session *o;

	TAILQ_FOREACH(o, &vmmd_sessions, link)
		if (o->state == VMMD_SESSION_READY && o->recall_out != 0 &&
		    o->recall_round == round && now < o->recall_due_ms)
			return true;
	return false;
}

/* Whether memory o gives back can be lent to s as it is (same tenant, or
 * cross_tenant = reuse).  Otherwise it only makes room on the GPU. */
static bool
session_shares_memory(const struct vmmd_session *o,
    const struct vmmd_session *s)
{
	return o->h.tenant == s->h.tenant ||
	    vmmd_cfg.cross_tenant == VMMD_CROSS_REUSE;
}

/* Bytes other app sessions of s's tenant, not busy, report holding cached
 * (freed, not in use): what a recall could give s to reuse. */
static uint64_t
session_cached_elsewhere(const struct vmmd_session *s, uint64_t now)
{
	struct vmmd_session *o;
	uint64_t sum = 0;

	TAILQ_FOREACH(o, &vmmd_sessions, link)
		if (o != s && o->state == VMMD_SESSION_READY &&
		    o->kind == VMM__CLIENT_KIND__CLIENT_KIND_APP &&
		    session_shares_memory(o, s) &&
		    !session_busy(o, now, vmmd_cfg.recall_idle_ms) &&
		    session_recallable(o, now))
			sum += o->rep_cached < o->h.bytes ? o->rep_cached :
			    o->h.bytes;
	return sum;
}

static void
session_acquire(struct vmmd_session *s, const Vmm__Acquire *a)
{
	struct timeval tv;
	uint64_t ms = vmmd_cfg.recall_timeout_ms, now = vmm_now_ms();
	enum session_grant_outcome rc;
	bool reuse_first;

	if (s->pend.active) {
		session_error(s, a->request_id, VMM__ERROR_CODE__ERROR_CODE_BUSY,
		    "an Acquire of this session is already waiting");
		return;
	}
	s->last_acquire_ms = now;
	/* Memory other processes freed is reused before the pool grows: if
	 * those not busy hold enough in their caches, recall it rather than
	 * create.  A busy one would soon ask for it back. */
	reuse_first = ms != 0 && session_cached_elsewhere(s, now) >= a->bytes;
	rc = session_grant(s, a->request_id, a->bytes, a->flags, a->min_piece,
	    ms != 0, reuse_first);
	if (rc == GRANT_ANSWERED)
		return;
	/* New memory needed (reuse_first) or none to be had: others may hold
	 * it in their caches.  Ask them (out of memory, busy or not), park
	 * this request, and answer when memory comes back or the recall times
	 * out. */
	/* Waiting to reuse rather than grow is worth a short wait only: a
	 * client answers a Recall in a few milliseconds. */
	if (reuse_first && ms > 100)
		ms = 100;
	if (vmmd_session_recall(s, a->bytes,
	    VMM__RECALL_REASON__RECALL_REASON_PRESSURE,
	    rc == GRANT_WOULD_CREATE ? vmmd_cfg.recall_idle_ms : 0,
	    rc == GRANT_WOULD_CREATE, ++session_round, ms) == 0 ||
	    (s->ev_pend == NULL &&
	    (s->ev_pend = evtimer_new(vmmd_base, session_on_pend, s)) == NULL)) {
		session_grant(s, a->request_id, a->bytes, a->flags, a->min_piece,
		    false, false);
		return;
	}
	s->pend.active = true;
	s->pend.rid = a->request_id;
	s->pend.bytes = a->bytes;
	s->pend.flags = a->flags;
	s->pend.min_piece = a->min_piece;
	s->pend.reuse = reuse_first;
	s->pend.round = session_round;
	vmmd_stats.recall_waits++;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	event_add(s->ev_pend, &tv);
}

void
vmmd_session_retry_pending(void)
{
	struct vmmd_session *s, *next;

	for (s = TAILQ_FIRST(&vmmd_sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, link);
		if (!s->pend.active || s->state != VMMD_SESSION_READY)
			continue;
		/* Without growing the pool: the recall is what we wait for. */
		if (session_grant(s, s->pend.rid, s->pend.bytes, s->pend.flags,
		    s->pend.min_piece, true, true) == GRANT_ANSWERED) {
			session_pend_clear(s);
			vmmd_stats.recall_successes++;
			continue;
		}
		/* Memory came back but does not fit the request (sizes): create
		 * what is missing and give as much unusable idle memory back
		 * to the GPU, so the pool does not grow. */
		{
			struct vmmd_pool_totals t;
			uint64_t before = vmmd_stats.create_bytes;

			vmmd_pool_totals(&t);
			/* Everyone asked has answered: waiting longer brings
			 * nothing; the last try (create, or out of memory). */
			if (!session_round_open(s->pend.round, vmm_now_ms())) {
				session_pend_clear(s);
				session_grant(s, s->pend.rid, s->pend.bytes,
				    s->pend.flags, s->pend.min_piece, false,
				    false);
				continue;
			}
			/* Waiting for lack of memory: any memory back may do,
			 * with the pool's out-of-memory recovery. */
			if (t.idle < s->pend.bytes && s->pend.reuse)
				continue;
			if (session_grant(s, s->pend.rid, s->pend.bytes,
			    s->pend.flags, s->pend.min_piece, true, false) ==
			    GRANT_ANSWERED) {
				session_pend_clear(s);
				vmmd_stats.recall_successes++;
				if (vmmd_stats.create_bytes > before)
					vmmd_pool_trim(vmmd_stats.create_bytes -
					    before, 0);
			}
		}
	}
}

static void
session_release(struct vmmd_session *s, const Vmm__Release *r)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__ReleaseReply rep = VMM__RELEASE_REPLY__INIT;
	struct vmmd_chunk *ch;
	uint64_t bytes = 0;
	char msg[96];
	size_t i, j;

	/* All or nothing: check every id (and duplicates) first. */
	for (i = 0; i < r->n_chunk_ids; i++) {
		bool dup = false;

		for (j = 0; j < i && !dup; j++)
			dup = r->chunk_ids[j] == r->chunk_ids[i];
		if (dup || vmmd_pool_held(&s->h, r->chunk_ids[i]) == NULL) {
			snprintf(msg, sizeof(msg), "chunk %" PRIu64 " is not held by "
			    "this session%s", r->chunk_ids[i], dup ?
			    " (listed twice)" : "");
			session_error(s, r->request_id,
			    VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK, msg);
			return;
		}
	}
	for (i = 0; i < r->n_chunk_ids; i++) {
		ch = vmmd_pool_held(&s->h, r->chunk_ids[i]);
		bytes += ch->size;
		vmmd_pool_release(ch);
	}
	if (r->recall_id != 0 && r->recall_id == s->recall_out)
		s->recall_heard = true;	/* answering; a Report closes it */
	vmmd_stats.releases++;
	vmmd_stats.released_chunks += r->n_chunk_ids;
	vmm_log_info("RELEASE Session=%" PRIu64 " Pid=%d Size=%" PRIu64
	    " Chunks=%zu", s->id, (int)s->pid, bytes, r->n_chunk_ids);
	rep.request_id = r->request_id;
	rep.released_chunks = (uint32_t)r->n_chunk_ids;
	rep.released_bytes = bytes;
	env.msg_case = VMM__ENVELOPE__MSG_RELEASE_REPLY;
	env.release_reply = &rep;
	if (session_send(s, &env, NULL, 0) == 0 && s->rep_cached >= bytes)
		s->rep_cached -= bytes;	/* until its next Report */
	vmmd_session_retry_pending();
}

/* Takes over what a client maps from a previous daemon, chunk by chunk:
 * an id for each one adopted, 0 for each refused (memory vmmd already
 * tracks, or not a chunk of this GPU). */
static void
session_adopt(struct vmmd_session *s, struct vmm_frame_msg *m,
    const Vmm__Adopt *a)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__AdoptReply rep = VMM__ADOPT_REPLY__INIT;
	uint64_t ids[VMM_PROTO_MAX_CHUNKS];
	size_t i, refused = 0;

	for (i = 0; i < a->n_sizes; i++) {
		int fd = vmm_frame_msg_take_fd(m, i);
		enum vmmd_adopt rc = vmmd_pool_adopt(&s->h, fd, a->sizes[i], &ids[i]);

		vmmd_closer_close(fd);
		if (rc != VMMD_ADOPT_OK) {
			ids[i] = 0;
			refused++;
			vmmd_stats.adopt_refused++;
			vmm_log_info("ADOPT_REFUSED Session=%" PRIu64 " Pid=%d "
			    "Size=%" PRIu64 " Why=%s", s->id, (int)s->pid,
			    a->sizes[i], rc == VMMD_ADOPT_DUPLICATE ? "tracked" :
			    rc == VMMD_ADOPT_UNKNOWN ? "unknown" : "foreign");
		}
	}
	rep.request_id = a->request_id;
	rep.n_chunk_ids = a->n_sizes;
	rep.chunk_ids = ids;
	env.msg_case = VMM__ENVELOPE__MSG_ADOPT_REPLY;
	env.adopt_reply = &rep;
	session_send(s, &env, NULL, 0);
	if (refused < a->n_sizes)
		vmmd_notify_status();
}

/* The client's view: what it may still get (quota, pool limit, what the
 * GPU has free plus the idle pool) and its total (quota or the GPU). */
static void
session_meminfo(struct vmmd_session *s, uint64_t rid)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__MemInfoReply rep = VMM__MEM_INFO_REPLY__INIT;
	struct vmmd_pool_totals t;
	uint64_t quota = vmmd_session_quota(s), avail;

	vmmd_pool_totals(&t);
	avail = vmmd_pool_device_free() + t.idle;
	if (vmmd_cfg.pool_max != 0) {
		uint64_t room = vmmd_cfg.pool_max > t.physical ?
		    vmmd_cfg.pool_max - t.physical + t.idle : t.idle;

		if (room < avail)
			avail = room;
	}
	if (quota != 0) {
		uint64_t left = vmmd_session_quota_room(s, NULL, 0);

		if (left < avail)
			avail = left;
	}
	rep.request_id = rid;
	rep.free_bytes = avail;
	rep.total_bytes = quota != 0 ? quota : vmmd_pool_device_total();
	rep.held_bytes = s->h.bytes;
	env.msg_case = VMM__ENVELOPE__MSG_MEM_INFO_REPLY;
	env.mem_info_reply = &rep;
	session_send(s, &env, NULL, 0);
}

static void
session_ack(struct vmmd_session *s, uint64_t rid)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Ack ack = VMM__ACK__INIT;

	ack.request_id = rid;
	env.msg_case = VMM__ENVELOPE__MSG_ACK;
	env.ack = &ack;
	session_send(s, &env, NULL, 0);
}

static void
session_report(struct vmmd_session *s, const Vmm__Report *r)
{
	s->rep_in_use = r->in_use_bytes;
	s->rep_cached = r->cached_bytes;
	s->rep_peak = r->peak_bytes;
	session_ack(s, r->request_id);
	if (r->recall_id != 0 && r->recall_id == s->recall_out) {
		/* It gave back what it could: waiters need not wait on it. */
		s->recall_out = 0;
		vmmd_session_retry_pending();
	}
}


static void
session_trim(struct vmmd_session *s, const Vmm__TrimRequest *t)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__TrimReply rep = VMM__TRIM_REPLY__INIT;

	vmmd_stats.trims++;
	rep.request_id = t->request_id;
	rep.bytes_released = vmmd_pool_trim(t->target_bytes, 0);
	if (t->recall_clients && (t->target_bytes == 0 ||
	    rep.bytes_released < t->target_bytes)) {
		/* What the clients give back goes to the GPU too. */
		vmmd_pool_drain(vmmd_cfg.recall_timeout_ms ?
		    vmmd_cfg.recall_timeout_ms : 1000, t->target_bytes == 0 ? 0 :
		    t->target_bytes - rep.bytes_released);
		vmmd_session_recall(NULL, 0, VMM__RECALL_REASON__RECALL_REASON_TRIM,
		    0, false, 0, vmmd_cfg.recall_timeout_ms);
	}
	vmm_log_info("TRIM Session=%" PRIu64 " Released=%" PRIu64, s->id,
	    rep.bytes_released);
	env.msg_case = VMM__ENVELOPE__MSG_TRIM_REPLY;
	env.trim_reply = &rep;
	session_send(s, &env, NULL, 0);
}

static void
session_set_quota(struct vmmd_session *s, const Vmm__SetQuota *q)
{
	char msg[96];
	uid_t uid;

	if (q->kind == VMM__QUOTA_KIND__QUOTA_KIND_UID &&
	    vmmd_quota_uid(q->key, &uid) != 0) {
		snprintf(msg, sizeof(msg), "bad quota key: a uid is 0 to %u in "
		    "decimal digits", VMMD_QUOTA_UID_MAX);
		session_error(s, q->request_id, VMM__ERROR_CODE__ERROR_CODE_INVALID,
		    msg);
		return;
	}
	if (vmmd_quota_set(&vmmd_cfg, (enum vmmd_quota_kind)q->kind, q->key,
	    q->bytes) != 0) {
		if (errno == ENOMEM)
			session_error(s, q->request_id,
			    VMM__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
		else
			session_error(s, q->request_id,
			    VMM__ERROR_CODE__ERROR_CODE_INVALID, "bad quota key: "
			    "empty or too long");
		return;
	}
	session_ack(s, q->request_id);
}

/* The one dispatch switch.  The frame module has already checked every
 * field range, the direction and the fd count. */
static void
session_dispatch(struct vmmd_session *s, struct vmm_frame_msg *m)
{
	const Vmm__Envelope *env = vmm_frame_msg_env(m);
	uint64_t rid = vmm_frame_request_id(env);

	vmm_log_debug("session %" PRIu64 ": %s", s->id, vmm_frame_type_name(env));
	if (s->state == VMMD_SESSION_NEW &&
	    env->msg_case != VMM__ENVELOPE__MSG_HELLO) {
		session_fatal(s, rid, VMM__ERROR_CODE__ERROR_CODE_BAD_STATE,
		    "the session must start with Hello");
		return;
	}
	switch (env->msg_case) {
	case VMM__ENVELOPE__MSG_HELLO:
		session_hello(s, env->hello);
		break;
	case VMM__ENVELOPE__MSG_ACQUIRE:
		session_acquire(s, env->acquire);
		break;
	case VMM__ENVELOPE__MSG_RELEASE:
		session_release(s, env->release);
		break;
	case VMM__ENVELOPE__MSG_REPORT:
		session_report(s, env->report);
		break;
	case VMM__ENVELOPE__MSG_ADOPT:
		session_adopt(s, m, env->adopt);
		break;
	case VMM__ENVELOPE__MSG_MEM_INFO_REQUEST:
		session_meminfo(s, rid);
		break;
	case VMM__ENVELOPE__MSG_STATS_REQUEST:
	case VMM__ENVELOPE__MSG_CLIENTS_REQUEST:
	case VMM__ENVELOPE__MSG_TRIM_REQUEST:
	case VMM__ENVELOPE__MSG_SET_QUOTA:
		if (!s->admin) {
			vmmd_stats.permission_denied++;
			session_error(s, rid, VMM__ERROR_CODE__ERROR_CODE_PERMISSION,
			    "admin requests need root or the admin group");
			break;
		}
		if (env->msg_case == VMM__ENVELOPE__MSG_STATS_REQUEST)
			session_send(s, vmmd_stats_reply(rid,
			    env->stats_request->session_offset, true), NULL, 0);
		else if (env->msg_case == VMM__ENVELOPE__MSG_CLIENTS_REQUEST)
			session_send(s, vmmd_stats_reply(rid,
			    env->clients_request->session_offset, false), NULL, 0);
		else if (env->msg_case == VMM__ENVELOPE__MSG_TRIM_REQUEST)
			session_trim(s, env->trim_request);
		else
			session_set_quota(s, env->set_quota);
		break;
	case VMM__ENVELOPE__MSG_GOODBYE:
		session_close(s, "client said goodbye");
		break;
	case VMM__ENVELOPE__MSG_ERROR:
		vmm_log_debug("session %" PRIu64 ": client reported error %d",
		    s->id, (int)env->error->code);
		break;
	default:
		/* Daemon-bound types only: the frame module rejects the rest. */
		session_fatal(s, rid, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE,
		    "unexpected message");
		break;
	}
}

int
vmmd_session_send(struct vmmd_session *s, const Vmm__Envelope *env)
{
	return session_send(s, env, NULL, 0);
}

/* ---- events ------------------------------------------------------------------ */

/* Dispatches complete frames already read, at most a budget's worth (then
 * the session is put back in line).  Returns 0 if all were handled, 1 if
 * some wait for the next turn, -1 if the session closed. */
static int
session_drain(struct vmmd_session *s)
{
	struct vmm_frame_msg *m;
	int handled = 0, rc;

	while ((rc = vmm_frame_reader_next(s->rd, &m)) == 1) {
		session_dispatch(s, m);
		vmm_frame_msg_free(m);
		if (s->state == VMMD_SESSION_CLOSED)
			return -1;
		if (++handled == VMMD_SESSION_BUDGET) {
			event_active(s->ev_read, EV_READ, 0);
			return 1;
		}
	}
	if (rc < 0) {
		vmmd_stats.bad_peers++;
		session_fatal(s, 0, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE,
		    vmm_frame_strerror(rc));
		return -1;
	}
	return 0;
}

/* One read per wake-up: the loop is level-triggered, so what is left in the
 * socket wakes us again, after the other clients had their turn, and the
 * common case costs one recvmsg, not a second one that finds nothing. */
static void
session_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct vmmd_session *s = arg;
	ssize_t n;

	(void)fd;
	(void)what;
	if (session_drain(s) != 0)
		return;
	n = vmm_frame_reader_read(s->rd, s->fd);
	if (n == -EAGAIN)
		return;
	if (n == 0) {
		session_close(s, "client closed the connection");
		return;
	}
	if (n < 0 && n != -ENOBUFS) {
		if (n == VMM_FRAME_ETRUNCATED || n == -ECONNRESET || n == -EPIPE)
			session_close(s, "connection lost");
		else {
			vmmd_stats.bad_peers++;
			session_fatal(s, 0, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE,
			    vmm_frame_strerror((int)n));
		}
		return;
	}
	session_drain(s);
}

static void
session_on_write(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	session_flush(arg);
}

static void
session_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct vmmd_session *s = arg;

	(void)fd;
	(void)what;
	session_fatal(s, 0, VMM__ERROR_CODE__ERROR_CODE_BAD_STATE,
	    "no Hello in time");
}

/* Sessions to free once the current callback has returned: a handler may
 * close its own session, and its caller still looks at it. */
static struct vmmd_session_list	session_reap = TAILQ_HEAD_INITIALIZER(session_reap);
static struct event		*session_reaper;

static void
session_destroy(struct vmmd_session *s)
{
	if (s->ev_pend != NULL)
		event_free(s->ev_pend);
	if (s->ev_pid != NULL)
		event_free(s->ev_pid);
	if (s->pidfd >= 0)
		close(s->pidfd);
	vmmd_tenant_put(s->h.tenant);
	free(s);
}

static void
session_on_reap(evutil_socket_t fd, short what, void *arg)
{
	struct vmmd_session *s;

	(void)fd;
	(void)what;
	(void)arg;
	while ((s = TAILQ_FIRST(&session_reap)) != NULL) {
		TAILQ_REMOVE(&session_reap, s, link);
		session_destroy(s);
	}
}

/* Takes s off the session list and frees it soon. */
static void
session_free(struct vmmd_session *s)
{
	TAILQ_REMOVE(&vmmd_sessions, s, link);
	if (s->ev_pid != NULL)
		event_del(s->ev_pid);
	if (session_reaper == NULL)
		session_reaper = evtimer_new(vmmd_base, session_on_reap, NULL);
	TAILQ_INSERT_TAIL(&session_reap, s, link);
	if (session_reaper != NULL)
		event_active(session_reaper, EV_TIMEOUT, 0);
}

/* The peer process exited. */
static void
session_on_pid(evutil_socket_t fd, short what, void *arg)
{
	struct vmmd_session *s = arg;

	(void)fd;
	(void)what;
	event_del(s->ev_pid);
	if (s->state != VMMD_SESSION_CLOSED)
		return;	/* the socket lives on in another process */
	vmm_log_info("GONE Session=%" PRIu64 " Pid=%d Chunks=%" PRIu64, s->id,
	    (int)s->pid, s->h.chunks);
	vmmd_pool_holder_gone(&s->h);
	session_free(s);
	vmmd_session_retry_pending();
	vmmd_notify_status();
}

static void
session_close(struct vmmd_session *s, const char *why)
{
	bool alive;

	if (s->state == VMMD_SESSION_CLOSED)
		return;
	vmm_log_debug("session %" PRIu64 " (pid %d) closed: %s", s->id,
	    (int)s->pid, why);
	s->state = VMMD_SESSION_CLOSED;
	vmmd_nsessions--;
	session_pend_clear(s);
	event_free(s->ev_read);
	event_free(s->ev_write);
	event_free(s->ev_timeout);
	s->ev_read = s->ev_write = s->ev_timeout = NULL;
	/* Best effort: whatever the socket takes now. */
	vmm_frame_outq_flush(s->oq, s->fd);
	vmm_frame_outq_free(s->oq);
	vmm_frame_reader_free(s->rd);
	s->oq = NULL;
	s->rd = NULL;
	vmmd_closer_close(s->fd);
	s->fd = -1;
	alive = s->h.chunks > 0 && session_process_alive(s);
	vmmd_pool_holder_closed(&s->h, alive);
	if (!alive)
		vmmd_session_retry_pending();
	if (alive)
		vmm_log_info("QUARANTINE Session=%" PRIu64 " Pid=%d Chunks=%" PRIu64
		    " Size=%" PRIu64, s->id, (int)s->pid, s->h.chunks,
		    s->h.bytes);
	else
		session_free(s);
	vmmd_notify_status();
}

int
vmmd_session_pidfd(pid_t pid)
{
	return session_pidfd_open(pid);
}

int
vmmd_session_new(int fd, int pidfd, pid_t pid, uid_t uid, gid_t gid,
    bool admin)
{
	struct vmmd_session *s;
	struct timeval tv;
	uint64_t ms = vmmd_cfg.handshake_timeout_ms;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		vmmd_closer_close(fd);
		return -1;
	}
	s->id = session_next_id++;
	s->fd = fd;
	s->pid = pid;
	s->uid = uid;
	s->gid = gid;
	s->admin = admin;
	s->state = VMMD_SESSION_NEW;
	TAILQ_INIT(&s->h.held);
	gettimeofday(&tv, NULL);
	s->connected_usec = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
	s->pidfd = pidfd;
	session_read_cgroup(pid, s->cgroup, sizeof(s->cgroup));
	if ((s->h.tenant = vmmd_tenant_get(uid, s->cgroup)) == NULL) {
		vmmd_closer_close(fd);
		if (pidfd >= 0)
			close(pidfd);
		free(s);
		return -1;
	}
	s->rd = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT);
	s->oq = vmm_frame_outq_new(VMM_FRAME_PEER_CLIENT, vmmd_cfg.max_queue_bytes,
	    VMMD_SESSION_MAX_QUEUED_FDS);
	s->ev_read = event_new(vmmd_base, fd, EV_READ | EV_PERSIST,
	    session_on_read, s);
	s->ev_write = event_new(vmmd_base, fd, EV_WRITE | EV_PERSIST,
	    session_on_write, s);
	s->ev_timeout = evtimer_new(vmmd_base, session_on_timeout, s);
	if (s->pidfd >= 0)
		s->ev_pid = event_new(vmmd_base, s->pidfd, EV_READ,
		    session_on_pid, s);
	if (s->rd == NULL || s->oq == NULL || s->ev_read == NULL ||
	    s->ev_write == NULL || s->ev_timeout == NULL ||
	    (s->pidfd >= 0 && s->ev_pid == NULL))
		goto fail;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	event_add(s->ev_read, NULL);
	event_add(s->ev_timeout, &tv);
	if (s->ev_pid != NULL)
		event_add(s->ev_pid, NULL);
	TAILQ_INSERT_TAIL(&vmmd_sessions, s, link);
	vmmd_nsessions++;
	vmmd_stats.sessions_accepted++;
	vmm_log_debug("session %" PRIu64 ": pid %d uid %u connected%s", s->id,
	    (int)pid, (unsigned)uid, admin ? " (admin)" : "");
	return 0;
fail:
	if (s->ev_read)
		event_free(s->ev_read);
	if (s->ev_write)
		event_free(s->ev_write);
	if (s->ev_timeout)
		event_free(s->ev_timeout);
	if (s->ev_pid)
		event_free(s->ev_pid);
	vmm_frame_reader_free(s->rd);
	vmm_frame_outq_free(s->oq);
	if (s->pidfd >= 0)
		close(s->pidfd);
	vmmd_tenant_put(s->h.tenant);
	vmmd_closer_close(fd);
	free(s);
	return -1;
}

void
vmmd_session_shutdown_all(const char *why)
{
	struct vmmd_session *s, *next;

	for (s = TAILQ_FIRST(&vmmd_sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, link);
		if (s->state != VMMD_SESSION_CLOSED) {
			Vmm__Envelope env = VMM__ENVELOPE__INIT;
			Vmm__Goodbye bye = VMM__GOODBYE__INIT;

			bye.reason = VMM__GOODBYE_REASON__GOODBYE_REASON_SHUTDOWN;
			bye.message = (char *)why;
			env.msg_case = VMM__ENVELOPE__MSG_GOODBYE;
			env.goodbye = &bye;
			if (vmm_frame_outq_push(s->oq, &env, NULL, 0) == 0)
				vmm_frame_outq_flush(s->oq, s->fd);
			session_close(s, why);
		}
	}
	/* What is left is quarantined: the pool goes away with the daemon. */
	while ((s = TAILQ_FIRST(&vmmd_sessions)) != NULL) {
		vmmd_pool_holder_gone(&s->h);
		session_free(s);
	}
	session_on_reap(-1, 0, NULL);
	if (session_reaper != NULL)
		event_free(session_reaper);
	session_reaper = NULL;
}
