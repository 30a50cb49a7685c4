/*
 * The grant policy: who gets memory, who is asked to give some back, and
 * how long a request waits.  An Acquire is checked against the quotas and
 * granted from the pool (pool.c: fit, stitch, create); when the pool would
 * have to grow while other clients of the same tenant cache enough, or
 * when memory is short, those clients are recalled and the request parked
 * until memory comes back, everyone asked has answered, or the recall
 * times out.  A client that leaves a Recall unanswered is shunned for a
 * while (VMMD_RECALL_SHUN_MS), and what vmmd counts on getting back is at
 * most what it lent.
 *
 * Calls session.c (replies, closing) and pool.c; dispatch.c and the
 * session's memory-back hook call in.
 */
#include "vmmd.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* How long a client that left a Recall unanswered is neither asked again
 * nor counted on to give memory back. */
#define VMMD_RECALL_SHUN_MS 30000

static uint64_t		policy_round;	/* of recalls, see pend */
/* Until then, a request that finds memory short fails at once: the last
 * recall wait ended out of memory (recall_backoff_ms). */
static uint64_t		policy_backoff_until_ms;

static void	policy_round_overdue(uint64_t);

struct vmmd_session_list	vmmd_parked = TAILQ_HEAD_INITIALIZER(vmmd_parked);

/* Parks s's Acquire: on vmmd_parked in session id order (the order of
 * vmmd_sessions, in which parked requests were always retried). */
static void
policy_park(struct vmmd_session *s)
{
	struct vmmd_session *o;

	s->pend.active = true;
	TAILQ_FOREACH_REVERSE(o, &vmmd_parked, vmmd_session_list, plink)
		if (o->id < s->id)
			break;
	if (o == NULL)
		TAILQ_INSERT_HEAD(&vmmd_parked, s, plink);
	else
		TAILQ_INSERT_AFTER(&vmmd_parked, o, s, plink);
}

/* What policy_grant did with an Acquire. */
enum policy_grant_outcome {
	GRANT_ANSWERED,		/* granted, or refused with an Error reply */
	GRANT_WOULD_CREATE,	/* no_create, and the pool would have to grow */
	GRANT_SHORT,		/* out of memory and may_wait: park, recall */
	GRANT_CREATING,		/* a create on the worker: policy_created ends it */
	GRANT_OOM,		/* out of memory, !may_wait: refused (answered) */
};

static enum policy_grant_outcome policy_answer(struct vmmd_session *,
    uint64_t, uint64_t, int, struct vmmd_chunk **, int, char *, size_t,
    bool);
static vmmd_pool_granted_fn policy_created;

/* Grants (or refuses) one Acquire: the quotas, then the pool.  With async,
 * a large create runs on the worker thread and the answer comes from
 * policy_created: other clients' grants go on meanwhile. */
static enum policy_grant_outcome
policy_grant(struct vmmd_session *s, uint64_t rid, uint64_t bytes,
    unsigned flags, uint64_t min_piece, bool may_wait, bool no_create,
    bool async)
{
	struct vmmd_chunk *chunks[VMM_PROTO_MAX_CHUNKS];
	char msg[VMM_PROTO_MAX_MESSAGE], why[192];
	int n, code;
	uint64_t want = vmmd_pool_round(bytes);
	unsigned f = flags | (no_create ? VMMD_GRANT_NO_CREATE : 0);

	if (bytes != 0 && want > vmmd_session_quota_room(s, why, sizeof(why))) {
		snprintf(msg, sizeof(msg), "over quota: %s, asking %" PRIu64
		    " MiB", why, want >> 20);
		vmmd_stats.quota_failures++;
		vmmd_session_error(s, rid, VMM__ERROR_CODE__ERROR_CODE_QUOTA, msg);
		return GRANT_ANSWERED;
	}
	if (async)
		n = vmmd_pool_grant_async(&s->h, bytes, f, min_piece, chunks,
		    VMM_PROTO_MAX_CHUNKS, &code, msg, sizeof(msg),
		    policy_created, s);
	else
		n = vmmd_pool_grant(&s->h, bytes, f, min_piece, chunks,
		    VMM_PROTO_MAX_CHUNKS, &code, msg, sizeof(msg));
	if (n == VMMD_POOL_CREATING) {
		s->creating.active = true;
		s->creating.rid = rid;
		s->creating.bytes = bytes;
		s->creating.flags = flags;
		s->creating.min_piece = min_piece;
		s->creating.may_wait = may_wait;
		s->creating.reuse = no_create;
		return GRANT_CREATING;
	}
	return policy_answer(s, rid, bytes, n, chunks, code, msg, sizeof(msg),
	    may_wait);
}

/* Answers an Acquire the pool granted (n chunks) or refused (n < 0). */
static enum policy_grant_outcome
policy_answer(struct vmmd_session *s, uint64_t rid, uint64_t bytes, int n,
    struct vmmd_chunk **chunks, int code, char *msg, size_t msglen,
    bool may_wait)
{
	Vmm__Chunk wire[VMM_PROTO_MAX_CHUNKS], *wirep[VMM_PROTO_MAX_CHUNKS];
	Vmm__Envelope env;
	Vmm__Grant g = VMM__GRANT__INIT;
	int fds[VMM_PROTO_MAX_CHUNKS];
	char holders[160];
	uint64_t total = 0;
	size_t off;
	int i;

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
			snprintf(msg + off, msglen - off, ", this client "
			    "holds %" PRIu64 " MiB%s", s->h.bytes >> 20, s->admin ?
			    holders : "");
			vmmd_session_error(s, rid, (Vmm__ErrorCode)code, msg);
			return GRANT_OOM;
		}
		vmmd_session_error(s, rid, (Vmm__ErrorCode)code, msg);
		return GRANT_ANSWERED;
	}
	for (i = 0; i < n; i++) {
		if ((fds[i] = vmmd_pool_export(chunks[i])) < 0) {
			while (i > 0)
				close(fds[--i]);
			vmmd_pool_ungrant(chunks, (size_t)n);
			vmmd_session_error(s, rid, VMM__ERROR_CODE__ERROR_CODE_INTERNAL,
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
	env = vmm_frame_env_grant(&g);
	vmm_log_info("GRANT Session=%" PRIu64 " Pid=%d Size=%" PRIu64
	    " Chunks=%d FirstChunk=%" PRIu64, s->id, (int)s->pid, total, n,
	    chunks[0]->id);
	if (vmmd_session_queue(s, &env, fds, (size_t)n) != 0) {
		/* The fds are closed by the queue; the client never saw them:
		 * the chunks go back before the session closes. */
		vmmd_pool_ungrant(chunks, (size_t)n);
		vmmd_stats.slow_peer_drops++;
		vmmd_session_close(s, "client does not read its replies");
	}
	return GRANT_ANSWERED;
}

static void	policy_wait(struct vmmd_session *, uint64_t, uint64_t, unsigned,
		    uint64_t, bool, enum policy_grant_outcome);

/* The create a grant waited for is done (from the loop): answer, or, out of
 * memory, wait for memory as a first try would have.  The pool never calls
 * this for a session that closed meanwhile. */
static void
policy_created(void *arg, int n, struct vmmd_chunk **out, int code,
    const char *why)
{
	struct vmmd_session *s = arg;
	char msg[VMM_PROTO_MAX_MESSAGE];
	enum policy_grant_outcome rc;

	s->creating.active = false;
	snprintf(msg, sizeof(msg), "%s", why);
	rc = policy_answer(s, s->creating.rid, s->creating.bytes, n, out, code,
	    msg, sizeof(msg), s->creating.may_wait);
	if (rc == GRANT_SHORT)
		policy_wait(s, s->creating.rid, s->creating.bytes,
		    s->creating.flags, s->creating.min_piece, s->creating.reuse,
		    rc);
}

/* The last try of a parked request, whose wait is over: out of memory
 * still, the recall freed nothing that helps, and the next requests that
 * find memory short fail at once for recall_backoff_ms. */
static void
policy_last_try(struct vmmd_session *s)
{
	uint64_t grants = vmmd_stats.grants;
	enum policy_grant_outcome rc;

	rc = policy_grant(s, s->pend.rid, s->pend.bytes, s->pend.flags,
	    s->pend.min_piece, false, false, false);
	/* Granted after the recall (with what came back, or memory it made
	 * room for): a parked request that succeeded. */
	if (vmmd_stats.grants > grants)
		vmmd_stats.recall_successes++;
	if (rc == GRANT_OOM && vmmd_cfg.recall_backoff_ms != 0) {
		policy_backoff_until_ms = vmm_now_ms() +
		    vmmd_cfg.recall_backoff_ms;
		vmm_log_debug("recall freed nothing: no recall wait for %"
		    PRIu64 " ms", vmmd_cfg.recall_backoff_ms);
	}
}

/* The recall timed out: one last try, then out of memory. */
static void
policy_on_pend(evutil_socket_t fd, short what, void *arg)
{
	struct vmmd_session *s = arg;

	(void)fd;
	(void)what;
	if (!s->pend.active || s->state != VMMD_SESSION_READY)
		return;
	vmmd_session_pend_clear(s);
	/* The wait is over: whoever was asked for its sake and did not
	 * answer is overdue now, whatever the clocks' rounding says. */
	policy_round_overdue(s->pend.round);
	policy_last_try(s);
}

/* Whether o asked for memory within the last idle_ms. */
static bool
policy_busy(const struct vmmd_session *o, uint64_t now, uint64_t idle_ms)
{
	return idle_ms != 0 && o->last_acquire_ms != 0 &&
	    now - o->last_acquire_ms < idle_ms;
}

static bool	policy_shares_memory(const struct vmmd_session *,
		    const struct vmmd_session *);

/* Every Recall of round still unanswered becomes due now. */
static void
policy_round_overdue(uint64_t round)
{
	struct vmmd_session *o;
	uint64_t now = vmm_now_ms();

	TAILQ_FOREACH(o, &vmmd_recalled, rlink)
		if (o->recall_out != 0 && o->recall_round == round &&
		    o->recall_due_ms > now)
			o->recall_due_ms = now;
}

/* Whether o may be asked for memory (and counted on to give some): it
 * has not left a Recall unanswered lately.  An overdue Recall shuns it. */
static bool
policy_recallable(struct vmmd_session *o, uint64_t now)
{
	if (o->recall_out != 0 && now >= o->recall_due_ms) {
		vmmd_session_recall_out(o, 0);
		if (!o->recall_heard) {
			vmm_log_info("RECALL_UNANSWERED Session=%" PRIu64
			    " Pid=%d", o->id, (int)o->pid);
			/* From when it was due, whenever that is noticed. */
			o->recall_shun_until_ms = o->recall_due_ms +
			    VMMD_RECALL_SHUN_MS;
			vmmd_stats.recalls_unanswered++;
		}
	}
	return now >= o->recall_shun_until_ms;
}

unsigned
vmmd_policy_recall(struct vmmd_session *except, uint64_t target, int reason,
    uint64_t idle_ms, bool same_tenant, uint64_t round, uint64_t answer_ms)
{
	static uint64_t recall_id;
	struct vmmd_session *o;
	uint64_t now = vmm_now_ms();
	unsigned n = 0;

	TAILQ_FOREACH(o, &vmmd_sessions, link) {
		Vmm__Envelope env;
		Vmm__Recall r = VMM__RECALL__INIT;
		uint64_t want;

		if (o == except || o->state != VMMD_SESSION_READY ||
		    o->kind != VMM__CLIENT_KIND__CLIENT_KIND_APP ||
		    o->rep_cached == 0 || o->h.chunks == 0 ||
		    policy_busy(o, now, idle_ms) ||
		    (same_tenant && !policy_shares_memory(o, except)) ||
		    !policy_recallable(o, now))
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
		env = vmm_frame_env_recall(&r);
		vmm_log_info("RECALL Session=%" PRIu64 " Pid=%d Size=%" PRIu64,
		    o->id, (int)o->pid, want);
		vmmd_stats.recalls++;
		/* A client that does not read is dropped by vmmd_session_send. */
		if (vmmd_session_send(o, &env) == 0) {
			vmmd_session_recall_out(o, r.recall_id);
			o->recall_heard = false;
			o->recall_round = round;
			o->recall_due_ms = now + (answer_ms != 0 ? answer_ms :
			    1000);
			n++;
		}
	}
	return n;
}

/* Whether a session still owes an answer to a Recall of round (only those
 * with a Recall out are looked at). */
static bool
policy_round_open(uint64_t round, uint64_t now)
{
	struct vmmd_session *o;

	TAILQ_FOREACH(o, &vmmd_recalled, rlink)
		if (o->state == VMMD_SESSION_READY && o->recall_out != 0 &&
		    o->recall_round == round && now < o->recall_due_ms)
			return true;
	return false;
}

/* Whether memory o gives back can be lent to s as it is (same tenant, or
 * cross_tenant = reuse).  Otherwise it only makes room on the GPU. */
static bool
policy_shares_memory(const struct vmmd_session *o,
    const struct vmmd_session *s)
{
	return o->h.tenant == s->h.tenant ||
	    vmmd_cfg.cross_tenant == VMMD_CROSS_REUSE;
}

/* Whether other app sessions sharing memory with s, not busy, report
 * holding at least bytes cached (freed, not in use): enough for a recall
 * to give s to reuse.  What each counts for is min(reported, lent).  The
 * sum every session's tenant keeps of what they report bounds that from
 * above in O(1): below bytes, no session is looked at (an Acquire costs
 * the same with 1 or 1,000 sessions that cache nothing); else the walk
 * stops as soon as bytes is reached. */
static bool
policy_cached_enough(const struct vmmd_session *s, uint64_t now,
    uint64_t bytes)
{
	struct vmmd_session *o;
	uint64_t sum = 0, bound;

	bound = vmmd_tenant_cached(vmmd_cfg.cross_tenant == VMMD_CROSS_REUSE ?
	    NULL : s->h.tenant) - s->cached_counted;
	if (bound < bytes)
		return false;
	if (bytes == 0)
		return true;
	TAILQ_FOREACH(o, &vmmd_sessions, link) {
		if (o != s && o->state == VMMD_SESSION_READY &&
		    o->kind == VMM__CLIENT_KIND__CLIENT_KIND_APP &&
		    o->rep_cached != 0 && policy_shares_memory(o, s) &&
		    !policy_busy(o, now, vmmd_cfg.recall_idle_ms) &&
		    policy_recallable(o, now))
			sum += o->rep_cached < o->h.bytes ? o->rep_cached :
			    o->h.bytes;
		if (sum >= bytes)
			return true;
	}
	return false;
}

/*
 * Acquire.up_to: the client maps all of a chunk up to that size (the
 * medium heap, over pages around those it needs), so an idle chunk larger
 * than asked serves it instead of a create while that chunk sits unused:
 * physical memory does not grow for a request idle memory can serve, and
 * nothing is destroyed for it.  Tried before the plain path (its fit is
 * the same smallest-first fit with a wider slack), within the quota.
 * Answered (true) when such a chunk was lent or the lend failed.
 */
static bool
policy_grant_within(struct vmmd_session *s, const Vmm__Acquire *a)
{
	struct vmmd_chunk *chunks[1];
	char msg[VMM_PROTO_MAX_MESSAGE];
	uint64_t top = a->up_to, room = vmmd_session_quota_room(s, NULL, 0);
	int n, code = 0;

	if (top > room)
		top = room;
	msg[0] = '\0';
	n = vmmd_pool_grant_within(&s->h, a->bytes, top, chunks, &code, msg,
	    sizeof(msg));
	if (n == 0)
		return false;
	(void)policy_answer(s, a->request_id, a->bytes, n, chunks, code, msg,
	    sizeof(msg), false);
	return true;
}

/*
 * Acquire.no_create: idle memory only, now.  The pool's plain fit (the
 * same path as any one-chunk grant, NO_CREATE: it neither creates nor
 * gives idle memory back to the GPU for it); where only a create would
 * serve, the client is told so at once (ERROR_CODE_WOULD_CREATE) rather
 * than parked for a recall: it has memory of its own to try first, and
 * asks again without the flag if that does not do.
 */
static void
policy_grant_idle(struct vmmd_session *s, const Vmm__Acquire *a)
{
	if (policy_grant(s, a->request_id, a->bytes, a->flags |
	    (a->partial ? VMMD_GRANT_PARTIAL : 0), a->min_piece, false, true,
	    false) != GRANT_WOULD_CREATE)
		return;
	vmmd_stats.would_create++;
	vmmd_session_error(s, a->request_id,
	    VMM__ERROR_CODE__ERROR_CODE_WOULD_CREATE,
	    "no idle chunk serves it (no_create)");
}

void
vmmd_policy_acquire(struct vmmd_session *s, const Vmm__Acquire *a)
{
	uint64_t ms = vmmd_cfg.recall_timeout_ms, now = vmm_now_ms();
	enum policy_grant_outcome rc;
	bool reuse_first;
	unsigned flags;

	if (s->pend.active || s->creating.active) {
		vmmd_session_error(s, a->request_id, VMM__ERROR_CODE__ERROR_CODE_BUSY,
		    "an Acquire of this session is already waiting");
		return;
	}
	s->last_acquire_ms = now;
	if (a->up_to != 0 && policy_grant_within(s, a))
		return;
	if (a->no_create) {
		policy_grant_idle(s, a);
		return;
	}
	/* Memory other processes freed is reused before the pool grows: if
	 * those not busy hold enough in their caches, recall it rather than
	 * create.  A busy one would soon ask for it back. */
	/* While the last recall wait ended out of memory (recall_backoff_ms),
	 * no request waits for one: memory that is there (pooled, or created)
	 * is granted as ever, the rest fails at once. */
	if (now < policy_backoff_until_ms)
		ms = 0;
	reuse_first = ms != 0 && policy_cached_enough(s, now, a->bytes);
	flags = a->flags | (a->partial ? VMMD_GRANT_PARTIAL : 0);
	if (a->exact)	/* never stitched: allow-stitch is dropped too */
		flags = VMMD_GRANT_EXACT;
	rc = policy_grant(s, a->request_id, a->bytes, flags, a->min_piece,
	    ms != 0, reuse_first, true);
	if (rc == GRANT_ANSWERED || rc == GRANT_CREATING || rc == GRANT_OOM)
		return;
	policy_wait(s, a->request_id, a->bytes, flags, a->min_piece,
	    reuse_first, rc);
}

/* The first try of an Acquire found no memory (GRANT_SHORT) or would have
 * grown the pool while others cache enough (GRANT_WOULD_CREATE). */
static void
policy_wait(struct vmmd_session *s, uint64_t rid, uint64_t bytes,
    unsigned flags, uint64_t min_piece, bool reuse_first,
    enum policy_grant_outcome rc)
{
	struct timeval tv;
	uint64_t ms = vmmd_cfg.recall_timeout_ms;

	/* New memory needed (reuse_first) or none to be had: others may hold
	 * it in their caches.  Ask them (out of memory, busy or not), park
	 * this request, and answer when memory comes back or the recall times
	 * out. */
	/* Waiting to reuse rather than grow is worth a short wait only: a
	 * client answers a Recall in a few milliseconds. */
	if (reuse_first && ms > 100)
		ms = 100;
	if (vmmd_policy_recall(s, bytes,
	    VMM__RECALL_REASON__RECALL_REASON_PRESSURE,
	    rc == GRANT_WOULD_CREATE ? vmmd_cfg.recall_idle_ms : 0,
	    rc == GRANT_WOULD_CREATE, ++policy_round, ms) == 0 ||
	    (s->ev_pend == NULL &&
	    (s->ev_pend = evtimer_new(vmmd_base, policy_on_pend, s)) == NULL)) {
		policy_grant(s, rid, bytes, flags, min_piece, false, false,
		    false);
		return;
	}
	s->pend.rid = rid;
	s->pend.bytes = bytes;
	s->pend.flags = flags;
	s->pend.min_piece = min_piece;
	s->pend.reuse = reuse_first;
	s->pend.round = policy_round;
	policy_park(s);
	vmmd_stats.recall_waits++;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	event_add(s->ev_pend, &tv);
}

static void	policy_retry_pass(void);

void
vmmd_policy_retry(void)
{
	static bool running, again;

	/* A grant below may close its session, whose chunks coming back call
	 * this again: that call only asks for one more pass, so the walk
	 * below sees no park end but its own session's. */
	if (running) {
		again = true;
		return;
	}
	running = true;
	do {
		again = false;
		policy_retry_pass();
	} while (again);
	running = false;
}

/* One try of every parked Acquire.  Only parked sessions are walked: a
 * Release costs the same with 1 or 1,000 sessions connected. */
static void
policy_retry_pass(void)
{
	struct vmmd_session *s, *next;

	for (s = TAILQ_FIRST(&vmmd_parked); s != NULL; s = next) {
		next = TAILQ_NEXT(s, plink);
		if (!s->pend.active || s->state != VMMD_SESSION_READY)
			continue;
		/* Without growing the pool: the recall is what we wait for. */
		if (policy_grant(s, s->pend.rid, s->pend.bytes, s->pend.flags,
		    s->pend.min_piece, true, true, false) == GRANT_ANSWERED) {
			vmmd_session_pend_clear(s);
			vmmd_stats.recall_successes++;
			continue;
		}
		/* Memory came back but does not fit the request (sizes): create
		 * what is missing.  Idle memory the request cannot use goes to
		 * the GPU only if memory is short (the pool's swap_idle), not
		 * for every such create: room the device has is not made. */
		{
			struct vmmd_pool_totals t;

			vmmd_pool_totals(&t);
			/* Everyone asked has answered: waiting longer brings
			 * nothing; the last try (create, or out of memory). */
			if (!policy_round_open(s->pend.round, vmm_now_ms())) {
				vmmd_session_pend_clear(s);
				policy_last_try(s);
				continue;
			}
			/* Waiting for lack of memory: any memory back may do,
			 * with the pool's out-of-memory recovery. */
			if (t.idle < s->pend.bytes && s->pend.reuse)
				continue;
			if (policy_grant(s, s->pend.rid, s->pend.bytes,
			    s->pend.flags, s->pend.min_piece, true, false,
			    false) == GRANT_ANSWERED) {
				vmmd_session_pend_clear(s);
				vmmd_stats.recall_successes++;
			}
		}
	}
}
