/*
 * The connection to vmmd, one per device, found by the device's UUID under
 * VMM_SOCKET_DIR.  Opened lazily, used under its mutex with one request in
 * flight; pushes (Recall, Goodbye) that arrive while waiting for a reply are
 * remembered for the caller.  While vmmd cannot be reached, connecting is
 * retried at most once a second.
 *
 * One chunk, one record.  A reply that does not come within
 * VMM_CONNECT_TIMEOUT_MS fails the call (VMM_ETIMEDOUT) but the connection
 * stays: vmmd still counts this session, and the late reply is dealt with
 * when it comes (a late Grant is given straight back).  The connection is
 * dropped only when vmmd closed it or the stream broke; the next call then
 * reconnects and asks to resume the old session (same daemon instance: its
 * chunks move over, ids unchanged) and adopts what this process maps only
 * from a daemon of another instance, i.e. one that really lost the session.
 */
#include "client_internal.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"
#include "unixsock.h"

#define CONN_RETRY_MS 1000
/* Requests whose reply timed out and may still come; past this many the
 * daemon is not answering at all and the connection is dropped. */
#define CONN_MAX_ABANDONED 64

struct vmmc_conn {
	pthread_mutex_t		lock;
	int			dev;
	int			fd;		/* -1: not connected */
	struct vmm_frame_reader	*rd;
	uint64_t		next_rid;
	uint64_t		gran;
	uint64_t		session, instance;	/* of the last HelloReply */
	char			path[PATH_MAX];
	uint64_t		next_try_ms;
	bool			ever_up, warned, stalled;
	uint64_t		recall_target, recall_id;
	uint64_t		abandoned[CONN_MAX_ABANDONED];	/* 0: free */
	unsigned		nabandoned;
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

static void
conn_down(struct vmmc_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	/* The helper polls the fd without the lock (vmmc_conn_fd). */
	__atomic_store_n(&c->fd, -1, __ATOMIC_RELAXED);
	vmm_frame_reader_free(c->rd);
	c->rd = NULL;
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
conn_late(struct vmmc_conn *c, struct vmm_frame_msg *m)
{
	const Vmm__Envelope *env = vmm_frame_msg_env(m);
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

/* Remembers a push; returns true if it was one. */
static bool
conn_push(struct vmmc_conn *c, const Vmm__Envelope *env)
{
	switch (env->msg_case) {
	case VMM__ENVELOPE__MSG_RECALL:
		c->recall_target += env->recall->target_bytes;
		c->recall_id = env->recall->recall_id;
		vmm_log_debug("vmmd asks for %llu bytes back",
		    (unsigned long long)env->recall->target_bytes);
		vmmc_wake();	/* answered by the helper, not the caller */
		return true;
	case VMM__ENVELOPE__MSG_GOODBYE:
		vmm_log_debug("vmmd says goodbye (reason %d)",
		    (int)env->goodbye->reason);
		conn_down(c);
		c->next_try_ms = 0;
		return true;
	case VMM__ENVELOPE__MSG_ERROR:
		/* The answer to a request nobody waits for: a Release. */
		vmm_log_error("vmmd refused request %llu: %s",
		    (unsigned long long)env->error->request_id,
		    env->error->message);
		return true;
	default:
		return false;
	}
}

/* Waits for the reply to rid: 0 and *out, or a VMM_E* code (connection
 * dropped on EOF or a protocol fault). */
static int
conn_wait(struct vmmc_conn *c, uint64_t rid, struct vmm_frame_msg **out)
{
	int timeout = (int)vmmc_settings_get()->connect_timeout_ms;
	const Vmm__Envelope *env;
	struct vmm_frame_msg *m;
	int rc;

	for (;;) {
		if (c->fd < 0)
			return VMM_ENODAEMON;
		rc = vmm_frame_recv(c->rd, c->fd, &m, timeout);
		if (rc == -ETIMEDOUT) {
			/* vmmd is slow, not gone: it still counts this
			 * session, so the connection stays. */
			if (!c->stalled)
				vmm_log_error("vmmd did not answer within %d ms "
				    "(VMM_CONNECT_TIMEOUT_MS); failing the call",
				    timeout);
			c->stalled = true;
			if (!conn_abandon(c, rid)) {
				vmm_log_error("vmmd has not answered %d requests: "
				    "reconnecting", CONN_MAX_ABANDONED);
				conn_down(c);
			}
			return VMM_ETIMEDOUT;
		}
		if (rc != 1) {
			vmm_log_debug("vmmd connection: %s", rc == 0 ? "closed" :
			    vmm_frame_strerror(rc));
			conn_down(c);
			return rc == 0 || rc == -ECONNRESET ? VMM_ENODAEMON :
			    VMM_EPROTO;
		}
		env = vmm_frame_msg_env(m);
		if (vmm_frame_request_id(env) == rid &&
		    env->msg_case != VMM__ENVELOPE__MSG_RECALL) {
			c->stalled = false;
			*out = m;
			return 0;
		}
		if (env->msg_case != VMM__ENVELOPE__MSG_RECALL &&
		    conn_was_abandoned(c, vmm_frame_request_id(env)))
			conn_late(c, m);
		else
			conn_push(c, env);
		vmm_frame_msg_free(m);
	}
}

/* Sends env and waits for its reply, on an open connection. */
static int
conn_roundtrip(struct vmmc_conn *c, Vmm__Envelope *env, uint64_t rid,
    int *fds, size_t nfds, struct vmm_frame_msg **out)
{
	int timeout = (int)vmmc_settings_get()->connect_timeout_ms;
	int rc;

	rc = vmm_frame_send(c->fd, VMM_FRAME_PEER_DAEMON, env, fds, nfds, timeout);
	if (rc != 0) {
		vmm_log_debug("vmmd send: %s", vmm_frame_strerror(rc));
		conn_down(c);
		return VMM_ENODAEMON;
	}
	vmmc_stat_add(VMMC_STAT_DAEMON_CALLS, 1);
	return conn_wait(c, rid, out);
}

/* Whether the listener at c->fd runs as a uid this process trusts with
 * its memory: root, its own, or VMM_DAEMON_USER's.  err says why not. */
static bool
conn_peer_trusted(struct vmmc_conn *c, char *err, size_t errlen)
{
	const struct vmmc_settings *st = vmmc_settings_get();
	struct ucred cr;
	socklen_t len = sizeof(cr);
	struct passwd pw, *res = NULL;
	char buf[1024];

	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
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

/* Connects and says Hello; adopts held memory after a reconnect. */
static int
conn_open(struct vmmc_conn *c)
{
	const struct vmmc_settings *st = vmmc_settings_get();
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Hello h = VMM__HELLO__INIT;
	const Vmm__Envelope *r;
	struct vmm_frame_msg *m;
	char name[VMM_PROTO_MAX_NAME + 1] = "", err[192];
	uint64_t now = vmm_now_ms(), old_instance;
	bool resumed;
	int rc;

	if (now < c->next_try_ms)
		return VMM_ENODAEMON;
	__atomic_store_n(&c->fd, socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0),
	    __ATOMIC_RELAXED);
	if (c->fd < 0 || vmm_unix_connect(c->fd, c->path) != 0) {
		snprintf(err, sizeof(err), "%s", strerror(errno));
		goto unreachable;
	}
	/* Nothing, not even Hello, goes to a listener we do not trust: after a
	 * crash anyone able to bind the path could pose as vmmd and be sent
	 * this process's memory (Adopt). */
	if (!conn_peer_trusted(c, err, sizeof(err)))
		goto unreachable;
	if ((c->rd = vmm_frame_reader_new(VMM_FRAME_PEER_DAEMON)) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto unreachable;
	}
	{
		FILE *f = fopen("/proc/self/comm", "re");

		if (f != NULL) {
			if (fgets(name, sizeof(name), f) != NULL)
				name[strcspn(name, "\n")] = '\0';
			fclose(f);
		}
	}
	h.request_id = c->next_rid++;
	h.protocol_version = VMM_PROTOCOL_VERSION;
	h.client_name = name;
	h.pid = (uint32_t)getpid();
	h.kind = VMM__CLIENT_KIND__CLIENT_KIND_APP;
	if (c->ever_up) {
		h.resume_session = c->session;
		h.resume_instance = c->instance;
	}
	env.msg_case = VMM__ENVELOPE__MSG_HELLO;
	env.hello = &h;
	if ((rc = conn_roundtrip(c, &env, h.request_id, NULL, 0, &m)) != 0) {
		/* No session can hold anything before its HelloReply: this
		 * connection may go. */
		snprintf(err, sizeof(err), "no answer to Hello");
		goto unreachable;
	}
	r = vmm_frame_msg_env(m);
	if (r->msg_case != VMM__ENVELOPE__MSG_HELLO_REPLY) {
		snprintf(err, sizeof(err), "refused: %s", r->msg_case ==
		    VMM__ENVELOPE__MSG_ERROR ? r->error->message : "bad reply");
		vmm_frame_msg_free(m);
		goto unreachable;
	}
	old_instance = c->instance;
	resumed = r->hello_reply->resumed;
	c->gran = r->hello_reply->granularity;
	c->session = r->hello_reply->session_id;
	c->instance = r->hello_reply->instance_id;
	vmm_frame_msg_free(m);
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
	const unsigned char *b;

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
		b = (const unsigned char *)u.bytes;
		pthread_mutex_init(&c->lock, NULL);
		c->dev = dev;
		c->fd = -1;
		c->next_rid = 1;
		if ((size_t)snprintf(c->path, sizeof(c->path), "%s/gpu-%02x%02x%02x"
		    "%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x.sock",
		    st->socket_dir, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
		    b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]) >=
		    sizeof(c->path))
			vmm_log_error("VMM_SOCKET_DIR=\"%s\" is too long for a socket "
			    "path", st->socket_dir);
		conns[dev] = c;
	}
	pthread_mutex_unlock(&conns_lock);
	return c;
}

/* Runs one request: connects if needed, retries once after a reconnect. */
static int
conn_call(struct vmmc_conn *c, Vmm__Envelope *env, uint64_t rid, int *fds,
    size_t nfds, struct vmm_frame_msg **out)
{
	int rc, attempt;

	for (attempt = 0; attempt < 2; attempt++) {
		if (c->fd < 0 && (rc = conn_open(c)) != 0)
			break;
		rc = conn_roundtrip(c, env, rid, fds, nfds, out);
		if (rc != VMM_ENODAEMON || fds != NULL)
			return rc;
	}
	/* The fds were sent or closed by the frame module already. */
	return VMM_ENODAEMON;
}

/* Turns an Error reply into a VMM_E* code. */
static int
conn_error(const Vmm__Envelope *r)
{
	if (r->msg_case != VMM__ENVELOPE__MSG_ERROR)
		return VMM_EPROTO;
	switch (r->error->code) {
	case VMM__ERROR_CODE__ERROR_CODE_OUT_OF_MEMORY:
		vmm_log_error("vmmd: %s", r->error->message);
		return VMM_ENOMEM;
	case VMM__ERROR_CODE__ERROR_CODE_QUOTA:
		vmm_log_error("vmmd: %s", r->error->message);
		return VMM_EQUOTA;
	case VMM__ERROR_CODE__ERROR_CODE_INVALID:
	case VMM__ERROR_CODE__ERROR_CODE_LIMIT:
		return VMM_EINVAL;
	default:
		vmm_log_error("vmmd: %s", r->error->message);
		return VMM_EPROTO;
	}
}

int
vmmc_conn_acquire(struct vmmc_conn *c, uint64_t bytes, unsigned flags,
    uint64_t min_piece, struct vmmc_grant_chunk *out, size_t max)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	const Vmm__Envelope *r;
	struct vmm_frame_msg *m;
	size_t i;
	int rc;

	pthread_mutex_lock(&c->lock);
	a.request_id = c->next_rid++;
	a.bytes = bytes;
	a.flags = flags;
	a.min_piece = min_piece;
	env.msg_case = VMM__ENVELOPE__MSG_ACQUIRE;
	env.acquire = &a;
	if ((rc = conn_call(c, &env, a.request_id, NULL, 0, &m)) != 0) {
		pthread_mutex_unlock(&c->lock);
		return rc;
	}
	r = vmm_frame_msg_env(m);
	if (r->msg_case != VMM__ENVELOPE__MSG_GRANT) {
		rc = conn_error(r);
	} else if (r->grant->n_chunks > max) {
		rc = VMM_EPROTO;
	} else {
		for (i = 0; i < r->grant->n_chunks; i++) {
			out[i].id = r->grant->chunks[i]->id;
			out[i].size = r->grant->chunks[i]->size;
			out[i].fd = vmm_frame_msg_take_fd(m, i);
		}
		rc = (int)r->grant->n_chunks;
	}
	vmm_frame_msg_free(m);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* Sends Releases for ids (0s skipped: chunks vmmd refused to adopt), on
 * an open connection, lock held; 0 or VMM_ENODAEMON. */
static int
conn_send_release(struct vmmc_conn *c, const uint64_t *ids, size_t n,
    uint64_t recall_id)
{
	int timeout = (int)vmmc_settings_get()->connect_timeout_ms;
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Release rel = VMM__RELEASE__INIT;
	uint64_t batch[VMM_PROTO_MAX_RELEASE_IDS];
	size_t off = 0, k;
	int rc;

	while (off < n) {
		for (k = 0; off < n && k < VMM_PROTO_MAX_RELEASE_IDS; off++)
			if (ids[off] != 0)
				batch[k++] = ids[off];
		if (k == 0)
			break;
		if (c->fd < 0)
			return VMM_ENODAEMON;
		vmm__release__init(&rel);
		rel.request_id = c->next_rid++;
		rel.n_chunk_ids = k;
		rel.chunk_ids = batch;
		rel.recall_id = recall_id;
		env.msg_case = VMM__ENVELOPE__MSG_RELEASE;
		env.release = &rel;
		rc = vmm_frame_send(c->fd, VMM_FRAME_PEER_DAEMON, &env, NULL, 0,
		    timeout);
		if (rc != 0) {
			vmm_log_debug("vmmd send: %s", vmm_frame_strerror(rc));
			conn_down(c);
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
	 * under the connection's current records.  Nothing waits for the
	 * answer: vmmd handles a session's frames in order, so the next
	 * request on this connection sees the chunks released, and the reply
	 * is read (an Error logged) while waiting for a later one or by the
	 * helper's poll. */
	pthread_mutex_lock(&c->lock);
	rc = conn_send_release(c, ids, n, recall_id);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int
vmmc_conn_report(struct vmmc_conn *c, const struct vmm_usage *u,
    uint64_t recall_id)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Report rep = VMM__REPORT__INIT;
	struct vmm_frame_msg *m;
	int rc;

	pthread_mutex_lock(&c->lock);
	if (c->fd < 0) {
		pthread_mutex_unlock(&c->lock);
		return VMM_ENODAEMON;
	}
	rep.request_id = c->next_rid++;
	rep.in_use_bytes = u->in_use_bytes;
	rep.cached_bytes = u->cached_bytes;
	rep.peak_bytes = u->peak_in_use_bytes;
	rep.alloc_count = u->allocs;
	rep.free_count = u->frees;
	rep.reserved_va_bytes = u->reserved_va_bytes;
	rep.recall_id = recall_id;
	env.msg_case = VMM__ENVELOPE__MSG_REPORT;
	env.report = &rep;
	if ((rc = conn_roundtrip(c, &env, rep.request_id, NULL, 0, &m)) == 0) {
		if (vmm_frame_msg_env(m)->msg_case != VMM__ENVELOPE__MSG_ACK)
			rc = conn_error(vmm_frame_msg_env(m));
		vmm_frame_msg_free(m);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int
vmmc_conn_meminfo(struct vmmc_conn *c, uint64_t *free_bytes, uint64_t *total)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__MemInfoRequest req = VMM__MEM_INFO_REQUEST__INIT;
	const Vmm__Envelope *r;
	struct vmm_frame_msg *m;
	int rc;

	pthread_mutex_lock(&c->lock);
	req.request_id = c->next_rid++;
	env.msg_case = VMM__ENVELOPE__MSG_MEM_INFO_REQUEST;
	env.mem_info_request = &req;
	if ((rc = conn_call(c, &env, req.request_id, NULL, 0, &m)) == 0) {
		r = vmm_frame_msg_env(m);
		if (r->msg_case == VMM__ENVELOPE__MSG_MEM_INFO_REPLY) {
			*free_bytes = r->mem_info_reply->free_bytes;
			*total = r->mem_info_reply->total_bytes;
		} else
			rc = conn_error(r);
		vmm_frame_msg_free(m);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int
vmmc_conn_adopt_locked(struct vmmc_conn *c, const uint64_t *sizes, int *fds,
    size_t n, uint64_t *ids)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Adopt a = VMM__ADOPT__INIT;
	const Vmm__Envelope *r;
	struct vmm_frame_msg *m;
	size_t i;
	int rc;

	a.request_id = c->next_rid++;
	a.n_sizes = n;
	a.sizes = (uint64_t *)sizes;
	env.msg_case = VMM__ENVELOPE__MSG_ADOPT;
	env.adopt = &a;
	if ((rc = conn_roundtrip(c, &env, a.request_id, fds, n, &m)) != 0)
		return rc;
	r = vmm_frame_msg_env(m);
	if (r->msg_case != VMM__ENVELOPE__MSG_ADOPT_REPLY ||
	    r->adopt_reply->n_chunk_ids != n)
		rc = r->msg_case == VMM__ENVELOPE__MSG_ERROR ? conn_error(r) :
		    VMM_EPROTO;
	else
		for (i = 0; i < n; i++)
			ids[i] = r->adopt_reply->chunk_ids[i];
	vmm_frame_msg_free(m);
	return rc;
}

uint64_t
vmmc_conn_poll(struct vmmc_conn *c, uint64_t *recall_id)
{
	struct vmm_frame_msg *m;
	uint64_t target;
	ssize_t n;

	if (pthread_mutex_trylock(&c->lock) != 0)
		return 0;
	while (c->fd >= 0) {
		n = vmm_frame_reader_read(c->rd, c->fd);
		if (n == 0 || (n < 0 && n != -EAGAIN && n != -ENOBUFS)) {
			conn_down(c);
			break;
		}
		while (c->rd != NULL && vmm_frame_reader_next(c->rd, &m) == 1) {
			const Vmm__Envelope *env = vmm_frame_msg_env(m);

			if (env->msg_case != VMM__ENVELOPE__MSG_RECALL &&
			    conn_was_abandoned(c, vmm_frame_request_id(env)))
				conn_late(c, m);
			else
				conn_push(c, env);
			vmm_frame_msg_free(m);
		}
		if (n == -EAGAIN)
			break;
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
	return c->gran;
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
	if (c->fd < 0)
		rc = conn_open(c);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* A fork child's copies of the parent's connections: kept, not freed. */
static struct vmmc_conn	*conn_orphans[VMMC_MAX_DEVICES] __attribute__((used));

void
vmmc_conn_forget_all(void)
{
	int i;

	/* The child must never speak on the parent's sockets: close our copy
	 * of the fds without a word, and forget the rest. */
	pthread_mutex_init(&conns_lock, NULL);
	for (i = 0; i < VMMC_MAX_DEVICES; i++) {
		if (conns[i] == NULL)
			continue;
		if (conns[i]->fd >= 0)
			close(conns[i]->fd);
		conn_orphans[i] = conns[i];	/* may be mid-use */
		conns[i] = NULL;
	}
}

void
vmmc_conn_sync_all(void)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__MemInfoRequest req = VMM__MEM_INFO_REQUEST__INIT;
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
		if (c->fd >= 0) {
			req.request_id = c->next_rid++;
			env.msg_case = VMM__ENVELOPE__MSG_MEM_INFO_REQUEST;
			env.mem_info_request = &req;
			if (conn_roundtrip(c, &env, req.request_id, NULL, 0,
			    &m) == 0)
				vmm_frame_msg_free(m);
		}
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
		pthread_mutex_unlock(&conns[i]->lock);
	}
	pthread_mutex_unlock(&conns_lock);
}
