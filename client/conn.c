/*
 * The connection to vmmd, one per device, found by the device's UUID under
 * VMM_SOCKET_DIR, spoken through proto/session.  Opened lazily, used under
 * its mutex with one request in flight; frames that are not the awaited
 * reply (Recall, Goodbye, late replies, the Errors refusing Releases
 * nobody waits for) go to conn_on_push.  While vmmd cannot be reached,
 * connecting is retried at most once a second.
 *
 * One chunk, one record.  A reply that does not come within
 * VMM_CONNECT_TIMEOUT_MS fails the call (VMM_ETIMEDOUT) but the connection
 * stays: vmmd still counts this session, and the late reply is dealt with
 * when it comes (a late Grant is given straight back).  The connection is
 * dropped only when vmmd closed it or the stream broke; the next call then
 * reconnects and asks to resume the old session (same daemon instance: its
 * chunks move over, ids unchanged) and adopts what this process maps only
 * toward a daemon of another instance, i.e. one that really lost the
 * session.  Nothing, not even Hello, goes to a listener whose uid is not
 * trusted (conn_peer_trusted).
 */
#include "client_internal.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"
#include "session.h"

#define CONN_RETRY_MS 1000
/* conn_roundtrip: the call got an Error reply (vmm_sess_error has it). */
#define VMMC_EREFUSED	(-1000)
/* Requests whose reply timed out and may still come; past this many the
 * daemon is not answering at all and the connection is dropped. */
#define CONN_MAX_ABANDONED 64

struct vmmc_conn {
	pthread_mutex_t		lock;
	int			dev;
	struct vmm_sess		*sess;		/* NULL: not connected */
	int			fd;		/* its socket, for the helper */
	uint64_t		gran;
	uint64_t		session, instance;	/* of the last HelloReply */
	char			path[PATH_MAX];
	uint64_t		next_try_ms;
	bool			ever_up, warned, stalled;
	/* The stream is done for (Goodbye, a failed send from the push
	 * handler): dropped once the session call in progress returns, as
	 * the session may not be freed from inside its own handler. */
	bool			broken;
	/* Closed on purpose (vmm_shutdown): not revived by the helper until
	 * a call asks for vmmd again. */
	bool			closed;
	uint64_t		recall_target, recall_id;
	uint64_t		abandoned[CONN_MAX_ABANDONED];	/* 0: free */
	unsigned		nabandoned;
	/* The protocol version of the session (its HelloReply's), and the
	 * one to say Hello with: lowered to 3 once a daemon refused 4, so
	 * an older vmmd still serves this process (without address plan). */
	uint32_t		proto, proto_hello;
};

static pthread_mutex_t	conns_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vmmc_conn	*conns[VMMC_MAX_DEVICES];

/* What a reconnect toward a new daemon instance runs (Adopt). */
static int		(*conn_new_daemon)(struct vmmc_conn *, int);

void
vmmc_conn_on_new_daemon(int (*fn)(struct vmmc_conn *c, int dev))
{
	conn_new_daemon = fn;
}

static int
conn_timeout(void)
{
	return (int)vmmc_settings_get()->connect_timeout_ms;
}

static void
conn_down(struct vmmc_conn *c)
{
	vmm_sess_close(c->sess);
	c->sess = NULL;
	c->broken = false;
	/* The helper polls the fd without the lock (vmmc_conn_fd). */
	__atomic_store_n(&c->fd, -1, __ATOMIC_RELAXED);
	/* Their replies died with the stream; what vmmd had granted for them
	 * is in the old session, resumed or reclaimed with it. */
	memset(c->abandoned, 0, sizeof(c->abandoned));
	c->nabandoned = 0;
}

/* Remembers that nobody waits for rid's reply any more; false if too many
 * are outstanding already. */
static bool
conn_abandon(struct vmmc_conn *c, uint64_t rid)
{
	unsigned i;

	for (i = 0; i < CONN_MAX_ABANDONED; i++)
		if (c->abandoned[i] == 0) {
			c->abandoned[i] = rid;
			c->nabandoned++;
			return true;
		}
	return false;
}

/* Whether rid was abandoned; forgets it. */
static bool
conn_was_abandoned(struct vmmc_conn *c, uint64_t rid)
{
	unsigned i;

	if (c->nabandoned == 0 || rid == 0)
		return false;
	for (i = 0; i < CONN_MAX_ABANDONED; i++)
		if (c->abandoned[i] == rid) {
			c->abandoned[i] = 0;
			c->nabandoned--;
			return true;
		}
	return false;
}

static int	conn_send_release(struct vmmc_conn *c, const uint64_t *ids,
		    size_t n, uint64_t recall_id);

/* The reply to an abandoned request: whatever it lent this process goes
 * straight back (a Grant's chunks, adopted chunks, which vmmd then gives
 * to the GPU while this process keeps its mapping). */
static void
conn_late(struct vmmc_conn *c, const Vmm__Envelope *env)
{
	uint64_t ids[VMM_PROTO_MAX_CHUNKS];
	size_t i, n = 0;

	if (env->msg_case == VMM__ENVELOPE__MSG_GRANT)
		for (i = 0; i < env->grant->n_chunks; i++)
			ids[n++] = env->grant->chunks[i]->id;
	else if (env->msg_case == VMM__ENVELOPE__MSG_ADOPT_REPLY)
		for (i = 0; i < env->adopt_reply->n_chunk_ids; i++)
			ids[n++] = env->adopt_reply->chunk_ids[i];
	vmm_log_debug("late reply to request %llu (%s): %zu chunks given back",
	    (unsigned long long)vmm_frame_request_id(env),
	    vmm_frame_type_name(env), n);
	/* The fds close with the message. */
	if (n > 0)
		conn_send_release(c, ids, n, 0);
}

/* Every frame that is not the reply a call waits for; connection locked. */
static void
conn_on_push(struct vmm_frame_msg *m, void *arg)
{
	struct vmmc_conn *c = arg;
	const Vmm__Envelope *env = vmm_frame_msg_env(m);

	switch (env->msg_case) {
	case VMM__ENVELOPE__MSG_RECALL:
		c->recall_target += env->recall->target_bytes;
		c->recall_id = env->recall->recall_id;
		vmm_log_debug("vmmd asks for %llu bytes back",
		    (unsigned long long)env->recall->target_bytes);
		vmmc_wake();	/* answered by the helper, not the caller */
		return;
	case VMM__ENVELOPE__MSG_GOODBYE:
		vmm_log_debug("vmmd says goodbye (reason %d)",
		    (int)env->goodbye->reason);
		c->next_try_ms = 0;
		c->broken = true;
		return;
	case VMM__ENVELOPE__MSG_ERROR: {
		/* The answer to a request nobody waits for: a Release. */
		char esc[4 * VMM_PROTO_MAX_MESSAGE + 1];

		vmm_log_escape(esc, sizeof(esc), env->error->message,
		    strlen(env->error->message));
		vmm_log_error("vmmd refused request %llu: %s",
		    (unsigned long long)env->error->request_id, esc);
		return;
	}
	default:
		if (conn_was_abandoned(c, vmm_frame_request_id(env)))
			conn_late(c, env);
		/* Else a Release's reply (from a daemon that predates
		 * RELEASE_FLAG_NO_REPLY): nothing waits for it. */
		return;
	}
}

/* Sends env (fds taken) and waits for its reply, on an open connection:
 * 0 and *out, or a VMMC code.  A timed-out wait keeps the connection and
 * abandons the request; anything else wrong with the stream drops it. */
static int
conn_roundtrip(struct vmmc_conn *c, Vmm__Envelope *env, int *fds,
    size_t nfds, struct vmm_frame_msg **out)
{
	int timeout = conn_timeout(), rc;

	if ((rc = vmm_sess_send(c->sess, env, fds, nfds, timeout)) != 0) {
		/* A frame may be half sent: the stream is unusable. */
		vmm_log_debug("vmmd send: %s", vmm_sess_strerror(rc));
		conn_down(c);
		return VMM_ENODAEMON;
	}
	vmmc_stat_add(VMMC_STAT_DAEMON_CALLS, 1);
	rc = vmm_sess_wait(c->sess, env, timeout, out);
	if (c->broken) {
		if (rc == 0)
			vmm_frame_msg_free(*out);
		*out = NULL;
		conn_down(c);
		return VMM_ENODAEMON;
	}
	switch (rc) {
	case 0:
		c->stalled = false;
		return 0;
	case VMM_SESS_EREFUSED:
		c->stalled = false;
		return VMMC_EREFUSED;
	case -ETIMEDOUT:
		/* vmmd is slow, not gone: it still counts this session, so
		 * the connection stays. */
		if (!c->stalled)
			vmm_log_error("vmmd did not answer within %d ms "
			    "(VMM_CONNECT_TIMEOUT_MS); failing the call", timeout);
		c->stalled = true;
		if (!conn_abandon(c, vmm_frame_request_id(env))) {
			vmm_log_error("vmmd has not answered %d requests: "
			    "reconnecting", CONN_MAX_ABANDONED);
			conn_down(c);
		}
		return VMM_ETIMEDOUT;
	default:
		vmm_log_debug("vmmd connection: %s", vmm_sess_strerror(rc));
		conn_down(c);
		return rc == VMM_SESS_ECLOSED || rc == VMM_SESS_EGOODBYE ||
		    rc == -ECONNRESET || rc == -EPIPE ? VMM_ENODAEMON : VMM_EPROTO;
	}
}

/* Whether the listener on fd runs as a uid this process trusts with its
 * memory: root, its own, or VMM_DAEMON_USER's.  err says why not. */
static bool
conn_peer_trusted(int fd, char *err, size_t errlen)
{
	const struct vmmc_settings *st = vmmc_settings_get();
	struct ucred cr;
	socklen_t len = sizeof(cr);
	struct passwd pw, *res = NULL;
	char buf[1024];

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
		snprintf(err, errlen, "SO_PEERCRED: %s", strerror(errno));
		return false;
	}
	if (cr.uid == 0 || cr.uid == geteuid() || cr.uid == getuid())
		return true;
	if (st->daemon_user[0] != '\0' && getpwnam_r(st->daemon_user, &pw, buf,
	    sizeof(buf), &res) == 0 && res != NULL && pw.pw_uid == cr.uid)
		return true;
	snprintf(err, errlen, "the listener runs as uid %u, not root, this "
	    "user or VMM_DAEMON_USER=%.32s: not speaking to it", (unsigned)cr.uid,
	    st->daemon_user);
	return false;
}

/* Connects and says Hello (resuming the old session); adopts held memory
 * toward a new daemon instance. */
static int
conn_open(struct vmmc_conn *c)
{
	const struct vmmc_settings *st = vmmc_settings_get();
	const Vmm__HelloReply *hr;
	Vmm__Hello h = VMM__HELLO__INIT;
	char name[VMM_PROTO_MAX_NAME + 1] = "", err[192];
	uint64_t now = vmm_now_ms(), old_instance;
	bool resumed;
	FILE *f;
	int rc;

	if (now < c->next_try_ms)
		return VMM_ENODAEMON;
	if (c->proto_hello == 0)
		c->proto_hello = VMM_PROTOCOL_VERSION;
again:
	if ((rc = vmm_sess_connect(&c->sess, c->path, conn_timeout())) != 0) {
		c->sess = NULL;
		snprintf(err, sizeof(err), "%s", vmm_sess_strerror(rc));
		goto unreachable;
	}
	/* Nothing, not even Hello, goes to a listener we do not trust: after a
	 * crash anyone able to bind the path could pose as vmmd and be sent
	 * this process's memory (Adopt). */
	if (!conn_peer_trusted(vmm_sess_fd(c->sess), err, sizeof(err)))
		goto unreachable;
	vmm_sess_set_push_handler(c->sess, conn_on_push, c);
	__atomic_store_n(&c->fd, vmm_sess_fd(c->sess), __ATOMIC_RELAXED);
	if ((f = fopen("/proc/self/comm", "re")) != NULL) {
		if (fgets(name, sizeof(name), f) != NULL)
			name[strcspn(name, "\n")] = '\0';
		fclose(f);
	}
	h.client_name = name;
	h.kind = VMM__CLIENT_KIND__CLIENT_KIND_APP;
	if (c->ever_up) {
		h.resume_session = c->session;
		h.resume_instance = c->instance;
	}
	h.protocol_version = c->proto_hello;
	/* No session can hold anything before its HelloReply: a failed Hello
	 * lets this connection go. */
	if ((rc = vmm_sess_hello(c->sess, &h, conn_timeout())) != 0) {
		/* A daemon of protocol 3 refuses 4: it is spoken to as 3
		 * (legacy IPC, no address plan). */
		if (rc == VMM_SESS_EREFUSED && h.protocol_version > 3 &&
		    vmm_sess_error(c->sess)->code ==
		    VMM__ERROR_CODE__ERROR_CODE_VERSION_MISMATCH) {
			conn_down(c);
			c->proto_hello = 3;
			vmm_log_debug("vmmd speaks protocol 3: no address plan");
			goto again;
		}
		if (rc == VMM_SESS_EREFUSED)
			snprintf(err, sizeof(err), "refused: %.150s",
			    vmm_sess_error(c->sess)->message);
		else
			snprintf(err, sizeof(err), "Hello: %s",
			    vmm_sess_strerror(rc));
		goto unreachable;
	}
	hr = vmm_sess_hello_reply(c->sess);
	old_instance = c->instance;
	resumed = hr->resumed;
	/* Read without the lock by the allocators (vmmc_conn_granularity). */
	__atomic_store_n(&c->gran, hr->granularity, __ATOMIC_RELAXED);
	c->session = hr->session_id;
	c->instance = hr->instance_id;
	c->proto = hr->protocol_version;
	vmm_log_debug("connected to vmmd at %s, session %llu%s", c->path,
	    (unsigned long long)c->session, resumed ? " (resumed)" : "");
	/* Only a daemon that never lent us anything is told what we map: the
	 * one that did still tracks it (resumed, or reclaimed with our old
	 * session), and a second record would let it lend the memory twice. */
	if (c->ever_up && c->instance != old_instance &&
	    conn_new_daemon != NULL && conn_new_daemon(c, c->dev) != 0)
		vmm_log_error("vmmd restarted: could not tell it what this "
		    "process holds");
	c->ever_up = true;
	c->warned = false;
	return 0;

unreachable:
	conn_down(c);
	c->next_try_ms = now + CONN_RETRY_MS;	/* a failure: wait a while */
	if (!c->warned) {
		/* Said once per outage. */
		vmm_log_error("vmmd unreachable at %s (%s): %s", c->path, err,
		    st->require_daemon ? "allocations fail (VMM_REQUIRE_DAEMON=1)" :
		    "using CUDA's own allocator");
		c->warned = true;
	}
	return VMM_ENODAEMON;
}

struct vmmc_conn *
vmmc_conn_get(int dev)
{
	const struct vmmc_settings *st = vmmc_settings_get();
	struct vmmc_conn *c;
	CUdevice cudev;
	CUuuid u;
	int rc;

	if (dev < 0 || dev >= VMMC_MAX_DEVICES)
		return NULL;
	pthread_mutex_lock(&conns_lock);
	if ((c = conns[dev]) == NULL) {
		if (cuDeviceGet(&cudev, dev) != CUDA_SUCCESS ||
		    cuDeviceGetUuid_v2(&u, cudev) != CUDA_SUCCESS ||
		    (c = calloc(1, sizeof(*c))) == NULL) {
			pthread_mutex_unlock(&conns_lock);
			return NULL;
		}
		pthread_mutex_init(&c->lock, NULL);
		c->dev = dev;
		c->fd = -1;
		if ((rc = vmm_sess_path_uuid(c->path, sizeof(c->path),
		    st->socket_dir, (const uint8_t *)u.bytes)) != 0)
			vmm_log_error("VMM_SOCKET_DIR=\"%s\": %s", st->socket_dir,
			    vmm_sess_strerror(rc));
		conns[dev] = c;
	}
	pthread_mutex_unlock(&conns_lock);
	return c;
}

/* Runs one request: connects if needed, retries once after a reconnect. */
static int
conn_call(struct vmmc_conn *c, Vmm__Envelope *env, int *fds, size_t nfds,
    struct vmm_frame_msg **out)
{
	int rc, attempt;

	c->closed = false;
	for (attempt = 0; attempt < 2; attempt++) {
		if (c->sess == NULL && (rc = conn_open(c)) != 0)
			break;
		rc = conn_roundtrip(c, env, fds, nfds, out);
		if (rc != VMM_ENODAEMON || fds != NULL)
			return rc;
		vmm_frame_set_request_id(env, 0);	/* a new one next time */
	}
	/* The fds were sent or closed by the session already. */
	return VMM_ENODAEMON;
}

/* The VMM_E* code for the Error vmmd answered the last call with. */
static int
conn_refused(struct vmmc_conn *c)
{
	const struct vmm_sess_error *e = vmm_sess_error(c->sess);
	char esc[4 * VMM_PROTO_MAX_MESSAGE + 1];

	if (e->code == VMM__ERROR_CODE__ERROR_CODE_INVALID ||
	    e->code == VMM__ERROR_CODE__ERROR_CODE_LIMIT)
		return VMM_EINVAL;
	/* An answer to Acquire.no_create, not a failure: nothing to say. */
	if (e->code == VMM__ERROR_CODE__ERROR_CODE_WOULD_CREATE)
		return VMMC_EWOULD_CREATE;
	vmm_log_escape(esc, sizeof(esc), e->message, strlen(e->message));
	vmm_log_error("vmmd: %s", esc);
	switch (e->code) {
	case VMM__ERROR_CODE__ERROR_CODE_OUT_OF_MEMORY:
		return VMM_ENOMEM;
	case VMM__ERROR_CODE__ERROR_CODE_IPC_REFUSED:
		return VMMC_EIPC_REFUSED;
	case VMM__ERROR_CODE__ERROR_CODE_QUOTA:
		return VMM_EQUOTA;
	default:
		return VMM_EPROTO;
	}
}

/* conn_call, with an Error reply turned into its VMM_E* code. */
static int
conn_request(struct vmmc_conn *c, Vmm__Envelope *env, int *fds, size_t nfds,
    struct vmm_frame_msg **out)
{
	int rc = conn_call(c, env, fds, nfds, out);

	return rc == VMMC_EREFUSED ? conn_refused(c) : rc;
}

/*
 * A Grant whose fds did not all arrive: this process is out of fds (the
 * kernel dropped the rest, MSG_CTRUNC).  Every chunk of it goes straight
 * back, so that vmmd does not keep them lent (or quarantined) for the life
 * of the process; connection locked.  Nothing of the grant was mapped.
 */
static int
conn_fds_lost(struct vmmc_conn *c, struct vmm_frame_msg *m)
{
	const Vmm__Grant *g = vmm_frame_msg_env(m)->grant;
	uint64_t ids[VMM_PROTO_MAX_CHUNKS];
	struct rlimit rl;
	size_t i;
	int fd;

	/* Closed before the Release: nothing of these chunks stays here. */
	for (i = 0; i < vmm_frame_msg_nfds(m); i++)
		if ((fd = vmm_frame_msg_take_fd(m, i)) >= 0)
			close(fd);

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		rl.rlim_cur = 0;
	for (i = 0; i < g->n_chunks && i < VMM_PROTO_MAX_CHUNKS; i++)
		ids[i] = g->chunks[i]->id;
	vmm_log_error("vmmd granted %zu chunks but %zu of their file "
	    "descriptors did not arrive: this process is out of file "
	    "descriptors (RLIMIT_NOFILE %llu); the chunks go back to vmmd%s",
	    (size_t)g->n_chunks, vmm_frame_msg_fds_lost(m),
	    (unsigned long long)rl.rlim_cur, vmmc_failure_tail());
	conn_send_release(c, ids, i, 0);
	if (c->broken)
		conn_down(c);
	return VMM_EMFILE;
}

/* Copies the n chunks of a grant (Grant, IpcGrant) and takes their fds out
 * of m; n, or VMM_EPROTO when more than max came (their fds go with m). */
static int
conn_take_chunks(struct vmm_frame_msg *m, Vmm__Chunk *const *chunks,
    size_t n, struct vmmc_grant_chunk *out, size_t max)
{
	size_t i;

	if (n > max)
		return VMM_EPROTO;
	for (i = 0; i < n; i++) {
		out[i].id = chunks[i]->id;
		out[i].size = chunks[i]->size;
		out[i].fd = vmm_frame_msg_take_fd(m, i);
	}
	return (int)n;
}

/* An Acquire with every field (up_to: Acquire.up_to, or 0). */
static int
conn_acquire(struct vmmc_conn *c, uint64_t bytes, unsigned flags,
    uint64_t min_piece, uint64_t up_to, struct vmmc_grant_chunk *out,
    size_t max)
{
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	Vmm__Envelope env = vmm_frame_env_acquire(&a);
	const Vmm__Grant *g;
	struct vmm_frame_msg *m;
	int rc;

	a.bytes = bytes;
	a.flags = flags & ~(VMMC_ACQUIRE_EXACT | VMMC_ACQUIRE_NO_CREATE |
	    VMMC_ACQUIRE_PARTIAL);
	a.exact = (flags & VMMC_ACQUIRE_EXACT) != 0;
	a.no_create = (flags & VMMC_ACQUIRE_NO_CREATE) != 0;
	a.partial = (flags & VMMC_ACQUIRE_PARTIAL) != 0;
	a.min_piece = min_piece;
	a.up_to = up_to;
	pthread_mutex_lock(&c->lock);
	if ((rc = conn_request(c, &env, NULL, 0, &m)) == 0) {
		g = vmm_frame_msg_env(m)->grant;
		if (vmm_frame_msg_fds_lost(m) > 0)
			rc = conn_fds_lost(c, m);
		else
			rc = conn_take_chunks(m, g->chunks, g->n_chunks, out, max);
		vmm_frame_msg_free(m);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int
vmmc_conn_acquire(struct vmmc_conn *c, uint64_t bytes, unsigned flags,
    uint64_t min_piece, struct vmmc_grant_chunk *out, size_t max)
{
	return conn_acquire(c, bytes, flags, min_piece, 0, out, max);
}

int
vmmc_conn_acquire_within(struct vmmc_conn *c, uint64_t bytes, uint64_t up_to,
    bool no_create, struct vmmc_grant_chunk *out)
{
	return conn_acquire(c, bytes, no_create ? VMMC_ACQUIRE_NO_CREATE : 0,
	    0, up_to > bytes ? up_to : 0, out, 1);
}

/* Sends Releases for ids (0s skipped: chunks vmmd refused to adopt), on
 * an open connection, lock held; 0 or VMM_ENODAEMON.  Nothing waits for
 * the answer: vmmd handles a session's frames in order, so the next
 * request sees the chunks released.  They ask for no reply (a write in
 * vmmd and a wake-up here saved per Release): only a refusal is answered,
 * an Error that reaches conn_on_push, as does the ReleaseReply a daemon
 * older than the flag sends anyway. */
static int
conn_send_release(struct vmmc_conn *c, const uint64_t *ids, size_t n,
    uint64_t recall_id)
{
	Vmm__Release rel = VMM__RELEASE__INIT;
	Vmm__Envelope env = vmm_frame_env_release(&rel);
	uint64_t batch[VMM_PROTO_MAX_RELEASE_IDS];
	size_t off = 0, k;
	int rc;

	while (off < n) {
		for (k = 0; off < n && k < VMM_PROTO_MAX_RELEASE_IDS; off++)
			if (ids[off] != 0)
				batch[k++] = ids[off];
		if (k == 0)
			break;
		if (c->sess == NULL)
			return VMM_ENODAEMON;
		rel.request_id = 0;
		rel.n_chunk_ids = k;
		rel.chunk_ids = batch;
		rel.recall_id = recall_id;
		rel.flags = VMM__RELEASE_FLAG__RELEASE_FLAG_NO_REPLY;
		rc = vmm_sess_send(c->sess, &env, NULL, 0, conn_timeout());
		if (rc != 0) {
			vmm_log_debug("vmmd send: %s", vmm_sess_strerror(rc));
			c->broken = true;	/* maybe inside the handler */
			return VMM_ENODAEMON;
		}
	}
	return 0;
}

int
vmmc_conn_release(struct vmmc_conn *c, const uint64_t *ids, size_t n,
    uint64_t recall_id)
{
	int rc;

	/* A reconnect in between resumes the same session (ids unchanged) or,
	 * toward a new daemon, adopts under new ids: callers pass ids read
	 * under the connection's current records. */
	pthread_mutex_lock(&c->lock);
	rc = conn_send_release(c, ids, n, recall_id);
	if (c->broken)
		conn_down(c);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int
vmmc_conn_report(struct vmmc_conn *c, const struct vmm_usage *u,
    uint64_t recall_id, uint64_t *others_lent)
{
	Vmm__Report rep = VMM__REPORT__INIT;
	Vmm__Envelope env = vmm_frame_env_report(&rep);
	struct vmm_frame_msg *m;
	int rc;

	rep.in_use_bytes = u->in_use_bytes;
	rep.cached_bytes = u->cached_bytes;
	rep.peak_bytes = u->peak_in_use_bytes;
	rep.alloc_count = u->allocs;
	rep.free_count = u->frees;
	rep.reserved_va_bytes = u->reserved_va_bytes;
	rep.recall_id = recall_id;
	/* This device's native bytes (u's are every device's). */
	rep.native_fallback_bytes = vmmc_native_get(c->dev,
	    VMMC_NATIVE_FALLBACK);
	rep.native_cumemcreate_bytes = vmmc_native_get(c->dev,
	    VMMC_NATIVE_CUMEMCREATE);
	rep.native_pool_bytes = vmmc_native_get(c->dev, VMMC_NATIVE_POOL);
	rep.native_managed_bytes = vmmc_native_get(c->dev, VMMC_NATIVE_MANAGED);
	rep.app_vmm_bytes = vmmc_native_pooled_get(c->dev);
	pthread_mutex_lock(&c->lock);
	if (c->sess == NULL)
		rc = VMM_ENODAEMON;
	else if ((rc = conn_roundtrip(c, &env, NULL, 0, &m)) == 0) {
		const Vmm__Envelope *e = vmm_frame_msg_env(m);

		if (others_lent != NULL && e->msg_case == VMM__ENVELOPE__MSG_ACK)
			*others_lent = e->ack->others_lent_bytes;
		vmm_frame_msg_free(m);
	} else if (rc == VMMC_EREFUSED)
		rc = conn_refused(c);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int
vmmc_conn_meminfo(struct vmmc_conn *c, uint64_t *free_bytes, uint64_t *total,
    uint64_t *held)
{
	Vmm__MemInfoRequest req = VMM__MEM_INFO_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_mem_info_request(&req);
	struct vmm_frame_msg *m;
	int rc;

	pthread_mutex_lock(&c->lock);
	if ((rc = conn_request(c, &env, NULL, 0, &m)) == 0) {
		*free_bytes = vmm_frame_msg_env(m)->mem_info_reply->free_bytes;
		*total = vmm_frame_msg_env(m)->mem_info_reply->total_bytes;
		*held = vmm_frame_msg_env(m)->mem_info_reply->held_bytes;
		vmm_frame_msg_free(m);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int
vmmc_conn_adopt_locked(struct vmmc_conn *c, const uint64_t *sizes, int *fds,
    size_t n, uint64_t *ids)
{
	Vmm__Adopt a = VMM__ADOPT__INIT;
	Vmm__Envelope env = vmm_frame_env_adopt(&a);
	const Vmm__AdoptReply *r;
	struct vmm_frame_msg *m;
	size_t i;
	int rc;

	a.n_sizes = n;
	a.sizes = (uint64_t *)sizes;
	if ((rc = conn_roundtrip(c, &env, fds, n, &m)) != 0)
		return rc == VMMC_EREFUSED ? conn_refused(c) : rc;
	r = vmm_frame_msg_env(m)->adopt_reply;
	if (r->n_chunk_ids != n)
		rc = VMM_EPROTO;
	else
		for (i = 0; i < n; i++)
			ids[i] = r->chunk_ids[i];
	vmm_frame_msg_free(m);
	return rc;
}

uint64_t
vmmc_conn_poll(struct vmmc_conn *c, uint64_t *recall_id)
{
	uint64_t target;
	int rc;

	if (pthread_mutex_trylock(&c->lock) != 0)
		return 0;
	if (c->sess != NULL && ((rc = vmm_sess_poll(c->sess)) != 0 ||
	    c->broken)) {
		vmm_log_debug("vmmd connection: %s", rc != 0 ?
		    vmm_sess_strerror(rc) : "goodbye");
		conn_down(c);
	}
	target = c->recall_target;
	*recall_id = c->recall_id;
	c->recall_target = 0;
	pthread_mutex_unlock(&c->lock);
	return target;
}

uint64_t
vmmc_conn_granularity(struct vmmc_conn *c)
{
	return __atomic_load_n(&c->gran, __ATOMIC_RELAXED);
}

int
vmmc_conn_fd(struct vmmc_conn *c)
{
	/* Unlocked: a hint for the helper's poll(), which tolerates a stale
	 * value (the locked calls look again). */
	return __atomic_load_n(&c->fd, __ATOMIC_RELAXED);
}

int
vmmc_conn_ensure(struct vmmc_conn *c)
{
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	c->closed = false;
	if (c->sess == NULL)
		rc = conn_open(c);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void
vmmc_conn_revive(struct vmmc_conn *c)
{
	/* A busy connection is not lost. */
	if (pthread_mutex_trylock(&c->lock) != 0)
		return;
	if (c->sess == NULL && c->ever_up && !c->closed) {
		uint64_t next = c->next_try_ms;

		/* The helper's own attempts are paced by its tick: a failed
		 * one must not make the process's next call wait out the
		 * retry delay (vmmd may be back by then). */
		if (conn_open(c) != 0)
			c->next_try_ms = next;
	}
	pthread_mutex_unlock(&c->lock);
}

/* A fork child's copies of the parent's connections: kept, not freed. */
static struct vmmc_conn	*conn_orphans[VMMC_MAX_DEVICES] __attribute__((used));

void
vmmc_conn_forget_all(void)
{
	int i;

	/* The child must never speak on the parent's sockets: close our copy
	 * of the fds without a word, and forget the rest (another thread may
	 * have been using them at fork time). */
	pthread_mutex_init(&conns_lock, NULL);
	for (i = 0; i < VMMC_MAX_DEVICES; i++) {
		if (conns[i] == NULL)
			continue;
		if (conns[i]->fd >= 0)
			close(conns[i]->fd);
		conn_orphans[i] = conns[i];
		conns[i] = NULL;
	}
}

void
vmmc_conn_sync_all(void)
{
	Vmm__MemInfoRequest req = VMM__MEM_INFO_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_mem_info_request(&req);
	struct vmm_frame_msg *m;
	struct vmmc_conn *c;
	int i;

	for (i = 0; i < VMMC_MAX_DEVICES; i++) {
		pthread_mutex_lock(&conns_lock);
		c = conns[i];
		pthread_mutex_unlock(&conns_lock);
		if (c == NULL)
			continue;
		pthread_mutex_lock(&c->lock);
		/* Only an open connection has anything in flight; any request
		 * will do, its answer comes after theirs. */
		req.request_id = 0;
		if (c->sess != NULL &&
		    conn_roundtrip(c, &env, NULL, 0, &m) == 0)
			vmm_frame_msg_free(m);
		pthread_mutex_unlock(&c->lock);
	}
}

void
vmmc_conn_close_all(void)
{
	int i;

	pthread_mutex_lock(&conns_lock);
	for (i = 0; i < VMMC_MAX_DEVICES; i++) {
		if (conns[i] == NULL)
			continue;
		pthread_mutex_lock(&conns[i]->lock);
		conn_down(conns[i]);
		conns[i]->closed = true;
		pthread_mutex_unlock(&conns[i]->lock);
	}
	pthread_mutex_unlock(&conns_lock);
}

/* ---- legacy CUDA IPC (client/ipc.c) ------------------------------------- */

int
vmmc_conn_ipc_export(struct vmmc_conn *c, const uint64_t *ids, size_t n,
    uint64_t addr, uint64_t *export_id, uint64_t *token)
{
	Vmm__IpcExport x = VMM__IPC_EXPORT__INIT;
	Vmm__Envelope env = vmm_frame_env_ipc_export(&x);
	struct vmm_frame_msg *m;
	int rc;

	x.n_chunk_ids = n;
	x.chunk_ids = (uint64_t *)ids;
	x.addr = addr;
	pthread_mutex_lock(&c->lock);
	if ((rc = conn_request(c, &env, NULL, 0, &m)) == 0) {
		*export_id = vmm_frame_msg_env(m)->ipc_export_reply->export_id;
		*token = vmm_frame_msg_env(m)->ipc_export_reply->token;
		vmm_frame_msg_free(m);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int
vmmc_conn_ipc_open(struct vmmc_conn *c, uint64_t export_id, uint64_t token,
    uint64_t *import_id, uint64_t *exporter_addr, struct vmmc_grant_chunk *out,
    size_t max)
{
	Vmm__IpcOpen o = VMM__IPC_OPEN__INIT;
	Vmm__Envelope env = vmm_frame_env_ipc_open(&o);
	const Vmm__IpcGrant *g;
	struct vmm_frame_msg *m;
	int rc;

	o.export_id = export_id;
	o.token = token;
	pthread_mutex_lock(&c->lock);
	if ((rc = conn_request(c, &env, NULL, 0, &m)) == 0) {
		g = vmm_frame_msg_env(m)->ipc_grant;
		*import_id = g->import_id;
		*exporter_addr = g->exporter_addr;
		rc = conn_take_chunks(m, g->chunks, g->n_chunks, out, max);
		vmm_frame_msg_free(m);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int
vmmc_conn_ipc_close(struct vmmc_conn *c, uint64_t import_id)
{
	Vmm__IpcClose x = VMM__IPC_CLOSE__INIT;
	Vmm__Envelope env = vmm_frame_env_ipc_close(&x);
	struct vmm_frame_msg *m;
	int rc;

	x.import_id = import_id;
	pthread_mutex_lock(&c->lock);
	if ((rc = conn_request(c, &env, NULL, 0, &m)) == 0)
		vmm_frame_msg_free(m);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* ---- the address plan (client/va.c) -------------------------------------- */

int
vmmc_conn_va_request(struct vmmc_conn *c, uint64_t size, uint64_t align,
    uint64_t *addr)
{
	Vmm__VaRequest q = VMM__VA_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_va_request(&q);
	const Vmm__VaReply *r;
	struct vmm_frame_msg *m;
	int rc;

	*addr = 0;
	q.size = size;
	q.alignment = align;
	pthread_mutex_lock(&c->lock);
	c->closed = false;
	if (c->sess == NULL && (rc = conn_open(c)) != 0)
		goto out;
	/* An older vmmd has no plan: anywhere. */
	if (c->proto < 4) {
		rc = 0;
		goto out;
	}
	if ((rc = conn_request(c, &env, NULL, 0, &m)) == 0) {
		r = vmm_frame_msg_env(m)->va_reply;
		if (r->addr != 0 && r->size != size)
			rc = VMM_EPROTO;
		else
			*addr = r->addr;
		vmm_frame_msg_free(m);
	}
out:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int
vmmc_conn_va_placed(struct vmmc_conn *c, uint64_t planned, uint64_t addr,
    uint64_t size, bool ipc)
{
	Vmm__VaPlaced p = VMM__VA_PLACED__INIT;
	Vmm__Envelope env = vmm_frame_env_va_placed(&p);
	struct vmm_frame_msg *m;
	int rc;

	p.planned = planned;
	p.addr = addr;
	p.size = size;
	p.ipc = ipc;
	pthread_mutex_lock(&c->lock);
	/* Only to the session that planned it (not a new one). */
	if (c->sess == NULL || c->proto < 4)
		rc = VMM_ENODAEMON;
	else if ((rc = conn_roundtrip(c, &env, NULL, 0, &m)) == 0)
		vmm_frame_msg_free(m);
	else if (rc == VMMC_EREFUSED)
		rc = conn_refused(c);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int
vmmc_conn_va_claim_locked(struct vmmc_conn *c, const uint64_t *addrs,
    const uint64_t *sizes, size_t n, bool *accepted)
{
	Vmm__VaRange rv[VMM_PROTO_MAX_VA_RANGES], *rp[VMM_PROTO_MAX_VA_RANGES];
	Vmm__VaClaim q = VMM__VA_CLAIM__INIT;
	Vmm__Envelope env = vmm_frame_env_va_claim(&q);
	const Vmm__VaClaimReply *r;
	struct vmm_frame_msg *m;
	size_t i;
	int rc;

	if (c->proto < 4)
		return VMM_ENODAEMON;
	if (n == 0 || n > VMM_PROTO_MAX_VA_RANGES)
		return VMM_EINVAL;
	for (i = 0; i < n; i++) {
		vmm__va_range__init(&rv[i]);
		rv[i].addr = addrs[i];
		rv[i].size = sizes[i];
		rp[i] = &rv[i];
	}
	q.n_ranges = n;
	q.ranges = rp;
	if ((rc = conn_roundtrip(c, &env, NULL, 0, &m)) != 0)
		return rc == VMMC_EREFUSED ? conn_refused(c) : rc;
	r = vmm_frame_msg_env(m)->va_claim_reply;
	if (r->n_accepted != n)
		rc = VMM_EPROTO;
	else
		for (i = 0; i < n; i++)
			accepted[i] = r->accepted[i];
	vmm_frame_msg_free(m);
	return rc;
}
