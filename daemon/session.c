/*
 * One client connection.  Non-blocking socket driven by libevent: frames are
 * read incrementally (a bounded number per wake-up, so one busy client cannot
 * starve the rest), handed to the dispatcher dispatch.c registered, and
 * answered through a bounded output queue; a client that stops reading until
 * that bound is hit is disconnected, never waited for.  Calls pool.c (a
 * closed session's chunks), never dispatch.c or policy.c but through the
 * two hooks (vmmd_session_set_handlers).
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
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "log.h"

/* The peer's pidfd (Linux 6.5; older headers lack the name). */
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

/* Frames handled per wake-up before yielding to other clients. */
#define VMMD_SESSION_BUDGET 32
/* File descriptors a session's output queue may hold unsent. */
#define VMMD_SESSION_MAX_QUEUED_FDS 256

struct vmmd_session_list	vmmd_sessions = TAILQ_HEAD_INITIALIZER(vmmd_sessions);
struct vmmd_session_list	vmmd_recalled = TAILQ_HEAD_INITIALIZER(vmmd_recalled);
unsigned			vmmd_nsessions;
static uint64_t			session_next_id = 1;


static void	session_free(struct vmmd_session *s);

/* What dispatch.c registered: a frame read, and memory coming back (a
 * closed session's chunks) for parked requests. */
static void	(*session_dispatch)(struct vmmd_session *, struct vmm_frame_msg *);
static void	(*session_memory_back)(void);

void
vmmd_session_set_handlers(void (*dispatch)(struct vmmd_session *,
    struct vmm_frame_msg *), void (*memory_back)(void))
{
	session_dispatch = dispatch;
	session_memory_back = memory_back;
}

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

uint64_t
vmmd_session_quota(const struct vmmd_session *s)
{
	return vmmd_quota_for(&vmmd_cfg, s->uid, s->state == VMMD_SESSION_NEW ?
	    NULL : s->name, s->cgroup[0] ? s->cgroup : NULL);
}

/*
 * What the holders of one quota key (a uid, a cgroup or a client name) hold
 * together, kept by the pool as it lends and takes back (vmmd_holder.usage):
 * a quota check is three lookups, not a walk of every session.  Interned at
 * connect and Hello, in a table that never shrinks below a key per session.
 */
#define SESSION_USAGE_BUCKETS 4096
/* Indices of vmmd_holder.usage (and of the keys of quota_room). */
enum { USAGE_UID, USAGE_CGROUP, USAGE_NAME };

struct session_usage {
	uint64_t		bytes;	/* first: usage[k] points here */
	unsigned		refs;
	int			kind;	/* index of vmmd_holder.usage */
	struct session_usage	*next;
	char			key[];
};

static struct session_usage	*session_usage[SESSION_USAGE_BUCKETS];

static struct session_usage **
session_usage_slot(int kind, const char *key)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)kind;

	for (; *key != '\0'; key++)
		h = (h ^ (unsigned char)*key) * 1099511628211ull;
	return &session_usage[h % SESSION_USAGE_BUCKETS];
}

/* Counts s's holding under (kind, key) from now on; 0, or -1 out of
 * memory. */
static int
session_usage_attach(struct vmmd_session *s, int kind, const char *key)
{
	struct session_usage **b = session_usage_slot(kind, key), *u;
	size_t len = strlen(key);

	for (u = *b; u != NULL; u = u->next)
		if (u->kind == kind && strcmp(u->key, key) == 0)
			break;
	if (u == NULL) {
		if ((u = calloc(1, sizeof(*u) + len + 1)) == NULL)
			return -1;
		u->kind = kind;
		memcpy(u->key, key, len + 1);
		u->next = *b;
		*b = u;
	}
	u->refs++;
	u->bytes += s->h.bytes;
	s->h.usage[kind] = &u->bytes;
	return 0;
}

static void
session_usage_detach(struct vmmd_session *s)
{
	struct session_usage *u, **pp;
	int k;

	for (k = 0; k < 3; k++) {
		if (s->h.usage[k] == NULL)
			continue;
		u = (struct session_usage *)(void *)s->h.usage[k];
		s->h.usage[k] = NULL;
		u->bytes -= s->h.bytes;
		if (--u->refs > 0)
			continue;
		for (pp = session_usage_slot(u->kind, u->key); *pp != u;
		    pp = &(*pp)->next)
			;
		*pp = u->next;
		free(u);
	}
}

/* Attaches s's uid and cgroup sums (at connect); 0 or -1. */
static int
session_usage_init(struct vmmd_session *s)
{
	char uidbuf[16];

	snprintf(uidbuf, sizeof(uidbuf), "%u", (unsigned)s->uid);
	if (session_usage_attach(s, USAGE_UID, uidbuf) != 0 ||
	    (s->cgroup[0] != '\0' &&
	    session_usage_attach(s, USAGE_CGROUP, s->cgroup) != 0)) {
		session_usage_detach(s);
		return -1;
	}
	return 0;
}

int
vmmd_session_named(struct vmmd_session *s)
{
	if (s->h.usage[USAGE_NAME] != NULL)
		return 0;
	return session_usage_attach(s, USAGE_NAME, s->name);
}

uint64_t
vmmd_session_quota_room(const struct vmmd_session *s, char *why,
    size_t whylen)
{
	static const char *const kind[] = { "uid", "cgroup", "client name" };
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
	/* Every session of the key, closed ones' quarantined chunks
	 * included: the sums the pool keeps. */
	for (k = 0; k < 3; k++)
		if (s->h.usage[k] != NULL)
			used[k] = *s->h.usage[k];
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
vmmd_session_count_uid(uid_t uid, pid_t pid)
{
	struct vmmd_session *s;
	unsigned n = 0;
	bool own = false;

	/* A closed session still listed is quarantined: it costs vmmd its
	 * memory and pidfd like an open one, so it counts.  One of pid's is
	 * left out: pid may be coming back to resume it. */
	TAILQ_FOREACH(s, &vmmd_sessions, link) {
		if (s->uid != uid)
			continue;
		if (s->state == VMMD_SESSION_CLOSED && !own && pid > 0 &&
		    s->pid == pid)
			own = true;
		else
			n++;
	}
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
		vmmd_session_close(s, "write failed");
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
		vmmd_session_close(s, "client does not read its replies");
		return -1;
	}
	if (rc < 0) {
		vmm_log_error("session %" PRIu64 ": cannot queue %s: %s", s->id,
		    vmm_frame_type_name(env), vmm_frame_strerror(rc));
		vmmd_session_close(s, "internal error");
		return -1;
	}
	return session_flush(s);
}

int
vmmd_session_error(struct vmmd_session *s, uint64_t rid, Vmm__ErrorCode code,
    const char *msg)
{
	Vmm__Envelope env;
	Vmm__Error err = VMM__ERROR__INIT;
	char buf[VMM_PROTO_MAX_MESSAGE + 1];

	snprintf(buf, sizeof(buf), "%s", msg);
	err.request_id = rid;
	err.code = code;
	err.message = buf;
	env = vmm_frame_env_error(&err);
	/* An answer to Acquire.no_create is not a failure: would_create. */
	if (code != VMM__ERROR_CODE__ERROR_CODE_WOULD_CREATE)
		vmmd_stats.failures++;
	vmm_log_debug("session %" PRIu64 ": error %d: %s", s->id, (int)code, buf);
	return session_send(s, &env, NULL, 0);
}

/* A fatal protocol error: tell the peer (best effort) and hang up. */
void
vmmd_session_fatal(struct vmmd_session *s, uint64_t rid, Vmm__ErrorCode code,
    const char *msg)
{
	if (vmmd_session_error(s, rid, code, msg) == 0)
		vmmd_session_close(s, msg);
}

/* ---- handlers ----------------------------------------------------------------- */

/*
 * s takes over the chunks of session old_id if that was a session of the
 * same process: same pid and uid, and the process the old session's pidfd
 * names still alive (so the pid was not reused).  A session still open is
 * closed first (its socket may be shared with another process, which then
 * holds nothing).  Chunks keep their ids; nothing gets a second record.
 */
bool
vmmd_session_resume(struct vmmd_session *s, uint64_t old_id)
{
	struct vmmd_session *o;

	TAILQ_FOREACH(o, &vmmd_sessions, link)
		if (o->id == old_id)
			break;
	/* A pid of 0 (a process in another pid namespace) names no process:
	 * two such sessions may be two processes, so none is resumed; its
	 * old session stays quarantined until its own pidfd says the process
	 * is gone, and memory it held is never lent while it may be mapped. */
	if (o == NULL || o == s || s->pid <= 0 || o->pid != s->pid ||
	    o->uid != s->uid || !session_process_alive(o))
		return false;
	if (o->state != VMMD_SESSION_CLOSED)
		vmmd_session_close(o, "resumed by a new connection of its process");
	/* Closed with nothing held, or gone in between: nothing to take. */
	TAILQ_FOREACH(o, &vmmd_sessions, link)
		if (o->id == old_id)
			break;
	if (o == NULL || o->state != VMMD_SESSION_CLOSED)
		return false;
	vmm_log_info("RESUME Session=%" PRIu64 " Old=%" PRIu64 " Pid=%d Chunks=%"
	    PRIu64, s->id, o->id, (int)s->pid, o->h.chunks);
	vmmd_pool_transfer(&o->h, &s->h);
	vmmd_ipc_transfer(o, s);
	vmmd_vaplan_transfer(o, s);
	vmmd_stats.resumed_sessions++;
	session_free(o);
	return true;
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


void
vmmd_session_pend_clear(struct vmmd_session *s)
{
	if (s->pend.active)
		TAILQ_REMOVE(&vmmd_parked, s, plink);
	s->pend.active = false;
	if (s->ev_pend != NULL)
		event_del(s->ev_pend);
}

void
vmmd_session_recall_out(struct vmmd_session *s, uint64_t id)
{
	if (s->recall_out == 0 && id != 0)
		TAILQ_INSERT_TAIL(&vmmd_recalled, s, rlink);
	else if (s->recall_out != 0 && id == 0)
		TAILQ_REMOVE(&vmmd_recalled, s, rlink);
	s->recall_out = id;
}

void
vmmd_session_cached_sync(struct vmmd_session *s)
{
	uint64_t to = s->state == VMMD_SESSION_READY &&
	    s->kind == VMM__CLIENT_KIND__CLIENT_KIND_APP ? s->rep_cached : 0;

	if (to != s->cached_counted)
		vmmd_tenant_cached_move(s->h.tenant, s->cached_counted, to);
	s->cached_counted = to;
}

int
vmmd_session_send(struct vmmd_session *s, const Vmm__Envelope *env)
{
	return session_send(s, env, NULL, 0);
}

int
vmmd_session_queue(struct vmmd_session *s, const Vmm__Envelope *env,
    int *fds, size_t nfds)
{
	if (vmm_frame_outq_push(s->oq, env, fds, nfds) != 0)
		return -1;
	session_flush(s);
	return 0;
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
		vmmd_session_fatal(s, 0, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE,
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
		vmmd_session_close(s, "client closed the connection");
		return;
	}
	if (n < 0 && n != -ENOBUFS) {
		if (n == VMM_FRAME_ETRUNCATED || n == -ECONNRESET || n == -EPIPE)
			vmmd_session_close(s, "connection lost");
		else {
			vmmd_stats.bad_peers++;
			vmmd_session_fatal(s, 0, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE,
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
	vmmd_session_fatal(s, 0, VMM__ERROR_CODE__ERROR_CODE_BAD_STATE,
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
	session_usage_detach(s);
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
	vmmd_session_recall_out(s, 0);
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
	vmmd_ipc_gone(s);
	vmmd_vaplan_gone(s);
	session_free(s);
	session_memory_back();
	vmmd_notify_status();
}

void
vmmd_session_close(struct vmmd_session *s, const char *why)
{
	bool alive;

	if (s->state == VMMD_SESSION_CLOSED)
		return;
	vmm_log_debug("session %" PRIu64 " (pid %d) closed: %s", s->id,
	    (int)s->pid, why);
	s->state = VMMD_SESSION_CLOSED;
	vmmd_session_cached_sync(s);
	vmmd_nsessions--;
	vmmd_session_pend_clear(s);
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
	/* IPC imports, like chunks, may still be mapped by a live process,
	 * and its planned VA ranges still reserved. */
	alive = (s->h.chunks > 0 || s->ipc.nimports > 0 ||
	    vmmd_vaplan_held(s)) && session_process_alive(s);
	vmmd_pool_holder_closed(&s->h, alive);
	vmmd_ipc_closed(s, alive);
	if (!alive)
		vmmd_vaplan_gone(s);
	if (!alive)
		session_memory_back();
	if (alive)
		vmm_log_info("QUARANTINE Session=%" PRIu64 " Pid=%d Chunks=%" PRIu64
		    " Size=%" PRIu64, s->id, (int)s->pid, s->h.chunks,
		    s->h.bytes);
	else
		session_free(s);
	vmmd_notify_status();
}

int
vmmd_session_pidfd(int sock, pid_t pid)
{
	socklen_t len = sizeof(int);
	int pidfd = -1;

	/* The connection's own peer: no race with the pid being reused, and
	 * it names a process vmmd cannot see by pid (another pid namespace,
	 * where SO_PEERCRED says 0). */
	if (getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0 &&
	    len == sizeof(int) && pidfd >= 0)
		return pidfd;
	if (errno == EMFILE || errno == ENFILE)
		return -1;
	if (errno != ENOPROTOOPT && errno != EINVAL && errno != ESRCH &&
	    errno != EOPNOTSUPP)
		vmm_log_debug("SO_PEERPIDFD: %s", strerror(errno));
	if (pid <= 0) {
		errno = ENOTSUP;
		return -1;
	}
	return session_pidfd_open(pid);
}

int
vmmd_session_new(int fd, int pidfd, pid_t pid, uid_t uid, gid_t gid,
    bool admin, bool ipc_member)
{
	struct vmmd_session *s;
	struct timeval tv;
	uint64_t ms = vmmd_cfg.handshake_timeout_ms;
	char tkey[32];

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		vmmd_closer_close(fd);
		return -1;
	}
	s->id = session_next_id++;
	s->h.id = s->id;
	s->fd = fd;
	s->pid = pid;
	s->uid = uid;
	s->gid = gid;
	s->admin = admin;
	s->ipc_member = ipc_member;
	s->state = VMMD_SESSION_NEW;
	TAILQ_INIT(&s->h.held);
	vmmd_ipc_init(s);
	gettimeofday(&tv, NULL);
	s->connected_usec = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
	s->pidfd = pidfd;
	vmmd_cgroup_of(pid, s->cgroup, sizeof(s->cgroup));
	vmmd_container_id(s->cgroup, s->container, sizeof(s->container));
	/* A process outside vmmd's pid namespace has no cgroup vmmd can read:
	 * under tenant = uid+cgroup it is a tenant of its own (a key no cgroup
	 * path can be), never one with every other such process of its uid. */
	if (pid <= 0)
		snprintf(tkey, sizeof(tkey), "session:%" PRIu64, s->id);
	if ((s->h.tenant = vmmd_tenant_get(uid, pid <= 0 ? tkey :
	    s->cgroup)) == NULL) {
		vmmd_closer_close(fd);
		if (pidfd >= 0)
			close(pidfd);
		free(s);
		return -1;
	}
	if (session_usage_init(s) != 0) {
		vmmd_tenant_put(s->h.tenant);
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
	session_usage_detach(s);
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
			Vmm__Envelope env;
			Vmm__Goodbye bye = VMM__GOODBYE__INIT;

			bye.reason = VMM__GOODBYE_REASON__GOODBYE_REASON_SHUTDOWN;
			bye.message = (char *)why;
			env = vmm_frame_env_goodbye(&bye);
			if (vmm_frame_outq_push(s->oq, &env, NULL, 0) == 0)
				vmm_frame_outq_flush(s->oq, s->fd);
			vmmd_session_close(s, why);
		}
	}
	/* What is left is quarantined: the pool goes away with the daemon. */
	while ((s = TAILQ_FIRST(&vmmd_sessions)) != NULL) {
		vmmd_pool_holder_gone(&s->h);
		vmmd_ipc_gone(s);
		vmmd_vaplan_gone(s);
		session_free(s);
	}
	session_on_reap(-1, 0, NULL);
	if (session_reaper != NULL)
		event_free(session_reaper);
	session_reaper = NULL;
}
