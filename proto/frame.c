/*
 * frame.c — length-prefixed protobuf-c frames over a Unix stream socket, with
 * SCM_RIGHTS fds: a budgeted decoder, per-type checks, an incremental reader
 * and an output queue for non-blocking sockets, and two blocking helpers.
 * The wire rules are in frame.h; the messages in vmm.proto.
 */
#include <sys/socket.h>
#include <sys/uio.h>

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "frame.h"

/* Charged to the decode budget per allocation on top of its size, so that
 * many tiny allocations cost roughly what malloc really spends on them. */
#define DECODE_ALLOC_OVERHEAD	16
/* A reader's buffer when no large frame is in progress. */
#define READ_MIN		4096
/* Bytes a reader holds when fed by _feed() without being drained. */
#define FEED_MAX		(4 * (VMM_FRAME_HDR + VMM_FRAME_MAX))
/* Batches of fds a reader keeps for frames not yet complete.  A reader that
 * is drained after each read holds at most two (one recvmsg brings at most
 * one batch, and only the last, incomplete frame can keep one). */
#define READ_FDSETS		4
/* Fd-less frames gathered into one sendmsg(). */
#define SEND_IOV		64
/* Most fds one sendmsg() may attach (the kernel's SCM_MAX_FD). */
#define SCM_FDS_MAX		253
/* Control buffer: every fd one recvmsg() can bring, plus room for
 * SCM_CREDENTIALS in case the socket has SO_PASSCRED set.  Fds that do not
 * fit would be dropped by the kernel itself, inside recvmsg(): their last
 * close would run in our thread, past the disposer (frame.h). */
#define CTL_SPACE \
	(CMSG_SPACE(sizeof(int) * SCM_FDS_MAX) + \
	CMSG_SPACE(sizeof(struct ucred)))

struct vmm_frame_msg {
	Vmm__Envelope		*env;
	ProtobufCAllocator	 alloc;	/* budgeted; frees env too */
	size_t			 used;	/* charged to the budget */
	size_t			 nfds;
	int			 fds[VMM_FRAME_MAX_FDS]; /* -1 once taken */
	size_t			 lost;	/* of nfds, never arrived (-1) */
};

/* Fds that arrived for the frame starting at stream offset `start`. */
struct fdset {
	uint64_t		 start;
	size_t			 nfds;		/* 0 and !lost: slot free */
	int			 fds[VMM_FRAME_MAX_FDS];
	/* The kernel dropped fds of this batch (MSG_CTRUNC: the receiver
	 * was out of fds); only a reader of the daemon's frames keeps such
	 * a batch, see vmm_frame_reader_read. */
	bool			 lost;
};

/* Whether a reader's fd slot holds a batch. */
#define FDSET_USED(s)	((s)->nfds != 0 || (s)->lost)

/*
 * buf[head..len) holds unconsumed stream bytes; head is always a frame start.
 * Offsets in the stream (base, walk, fdset.start) survive compaction.  Every
 * length prefix in the buffer has been checked against VMM_FRAME_MAX.  Reading
 * from a socket never grows the buffer past VMM_FRAME_HDR + VMM_FRAME_MAX;
 * _feed() may, up to FEED_MAX.
 */
struct vmm_frame_reader {
	enum vmm_frame_peer	 from;
	int			 err;		/* sticky fault, or 0 */
	unsigned char		*buf;
	size_t			 cap;
	size_t			 head;
	size_t			 len;
	uint64_t		 base;	/* stream offset of buf[0] */
	uint64_t		 walk;	/* last frame start found */
	struct fdset		 sets[READ_FDSETS];
};

/* One queued frame: fds[nfds], then len bytes of header and body. */
struct outq_frame {
	struct outq_frame	*next;
	unsigned char		*data;
	size_t			 len;
	size_t			 off;		/* bytes sent */
	size_t			 nfds;	/* fds not yet sent */
	int			 fds[];
};

struct vmm_frame_outq {
	enum vmm_frame_peer	 to;
	int			 err;	/* sticky send error, or 0 */
	size_t			 max_bytes;	/* 0: no bound */
	size_t			 max_fds;	/* 0: no bound */
	size_t			 bytes;	/* unsent bytes queued */
	size_t			 nfds;	/* unsent fds queued */
	struct outq_frame	*head;
	struct outq_frame	**tailp;
};

/* How fds that came from a peer are disposed of; NULL: close(). */
static void	(*frame_disposer)(int);

void
vmm_frame_set_fd_disposer(void (*fn)(int))
{
	frame_disposer = fn;
}

/* Closes fds we were given by our caller, to send. */
static void
close_fds(int *fds, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

/* Disposes of fds that came from a peer (or stand for such: _decode(),
 * _feed()). */
static void
drop_fds(int *fds, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		if (fds[i] >= 0) {
			if (frame_disposer != NULL)
				frame_disposer(fds[i]);
			else
				close(fds[i]);
		}
		fds[i] = -1;
	}
}

static uint32_t
get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static void
put_le32(unsigned char *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = (v >> 24) & 0xff;
}

static bool
peer_valid(enum vmm_frame_peer p)
{
	return p == VMM_FRAME_PEER_CLIENT || p == VMM_FRAME_PEER_DAEMON;
}

/* --- decoding and checks -------------------------------------------------- */

/* protobuf-c allocator that fails once a decode has used its budget. */
static void *
budget_alloc(void *data, size_t size)
{
	struct vmm_frame_msg	*m = data;
	size_t			 charge;
	void			*p;

	if (size > VMM_FRAME_DECODE_BUDGET)
		return NULL;
	charge = size + DECODE_ALLOC_OVERHEAD;
	if (charge > VMM_FRAME_DECODE_BUDGET - m->used)
		return NULL;
	if ((p = malloc(size != 0 ? size : 1)) != NULL)
		m->used += charge;
	return p;
}

static void
budget_free(void *data, void *p)
{
	(void)data;
	free(p);
}

static bool
str_ok(const char *s, size_t max, bool nonempty)
{
	size_t	n;

	if (s == NULL)
		return !nonempty;
	n = strnlen(s, max + 1);
	return n <= max && (n > 0 || !nonempty);
}

static bool
uuid_ok(const ProtobufCBinaryData *b, bool required)
{
	return b->len == VMM_PROTO_UUID_LEN || (!required && b->len == 0);
}

static bool
kind_ok(Vmm__ClientKind k)
{
	return k == VMM__CLIENT_KIND__CLIENT_KIND_APP ||
	    k == VMM__CLIENT_KIND__CLIENT_KIND_ADMIN;
}

static bool
sessions_ok(Vmm__SessionStats *const *v, size_t n, uint32_t total)
{
	size_t	i;

	if (n > VMM_PROTO_MAX_SESSIONS || n > total)
		return false;
	for (i = 0; i < n; i++) {
		if (v[i] == NULL || v[i]->session_id == 0 ||
		    !str_ok(v[i]->name, VMM_PROTO_MAX_NAME, false) ||
		    !kind_ok(v[i]->kind))
			return false;
	}
	return true;
}

static bool
hello_ok(const Vmm__Hello *m)
{
	return str_ok(m->client_name, VMM_PROTO_MAX_NAME, false) &&
	    uuid_ok(&m->device_uuid, false) && kind_ok(m->kind);
}

static bool
hello_reply_ok(const Vmm__HelloReply *m)
{
	return m->session_id != 0 && m->instance_id != 0 &&
	    m->granularity != 0 && uuid_ok(&m->device_uuid, true) &&
	    m->limits != NULL && m->limits->max_chunks_per_grant != 0 &&
	    m->limits->max_chunks_per_grant <= VMM_PROTO_MAX_CHUNKS &&
	    m->limits->max_frame != 0;
}

static bool
acquire_ok(const Vmm__Acquire *m)
{
	return m->bytes != 0 && (m->flags &
	    ~(uint32_t)(VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH |
	    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_IGNORE_FRAG_RATIO)) == 0 &&
	    /* up_to: one chunk of bytes..up_to, never with exact or stitch */
	    (m->up_to == 0 || (m->up_to >= m->bytes && !m->exact &&
	    !(m->flags & VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH))) &&
	    /* no_create: never exact (that one chunk is made for it) */
	    (!m->no_create || !m->exact) &&
	    /* partial: a stitched request only */
	    (!m->partial || ((m->flags &
	    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH) && !m->exact &&
	    m->up_to == 0));
}

static bool
grant_ok(const Vmm__Grant *m)
{
	uint64_t	total = 0;
	size_t		i;

	if (m->n_chunks == 0 || m->n_chunks > VMM_PROTO_MAX_CHUNKS)
		return false;
	for (i = 0; i < m->n_chunks; i++) {
		const Vmm__Chunk *c = m->chunks[i];

		if (c == NULL || c->id == 0 || c->size == 0 ||
		    c->size > UINT64_MAX - total)
			return false;
		total += c->size;
	}
	return true;
}

static bool
ipc_export_ok(const Vmm__IpcExport *m)
{
	size_t	i;

	if (m->n_chunk_ids == 0 || m->n_chunk_ids > VMM_PROTO_MAX_CHUNKS)
		return false;
	for (i = 0; i < m->n_chunk_ids; i++) {
		if (m->chunk_ids[i] == 0)
			return false;
	}
	return true;
}

static bool
ipc_export_reply_ok(const Vmm__IpcExportReply *m)
{
	return m->export_id != 0;
}

static bool
ipc_open_ok(const Vmm__IpcOpen *m)
{
	return m->export_id != 0;
}

static bool
ipc_grant_ok(const Vmm__IpcGrant *m)
{
	Vmm__Grant	g = VMM__GRANT__INIT;

	if (m->import_id == 0)
		return false;
	g.n_chunks = m->n_chunks;
	g.chunks = m->chunks;
	return grant_ok(&g);
}

static bool
ipc_close_ok(const Vmm__IpcClose *m)
{
	return m->import_id != 0;
}

/* A range of the address plan: page-aligned, non-empty, bounded, not
 * wrapping.  What lies where is vaplan.c's business. */
static bool
va_range_ok(uint64_t addr, uint64_t size)
{
	return addr != 0 && addr % 4096 == 0 && size != 0 &&
	    size <= VMM_PROTO_MAX_VA_SIZE && addr <= UINT64_MAX - size;
}

static bool
va_request_ok(const Vmm__VaRequest *m)
{
	return m->size != 0 && m->size <= VMM_PROTO_MAX_VA_SIZE &&
	    (m->alignment & (m->alignment - 1)) == 0 &&
	    m->alignment <= VMM_PROTO_MAX_VA_SIZE;
}

static bool
va_reply_ok(const Vmm__VaReply *m)
{
	return m->addr == 0 || va_range_ok(m->addr, m->size);
}

static bool
va_placed_ok(const Vmm__VaPlaced *m)
{
	return va_range_ok(m->planned, m->size) && va_range_ok(m->addr, m->size);
}

static bool
va_claim_ok(const Vmm__VaClaim *m)
{
	size_t	i;

	if (m->n_ranges == 0 || m->n_ranges > VMM_PROTO_MAX_VA_RANGES)
		return false;
	for (i = 0; i < m->n_ranges; i++)
		if (!va_range_ok(m->ranges[i]->addr, m->ranges[i]->size))
			return false;
	return true;
}

static bool
va_claim_reply_ok(const Vmm__VaClaimReply *m)
{
	return m->n_accepted <= VMM_PROTO_MAX_VA_RANGES;
}

static bool
va_plan_reply_ok(const Vmm__VaPlanReply *m)
{
	size_t	i;

	if (m->n_ranges > VMM_PROTO_MAX_VA_ENTRIES)
		return false;
	for (i = 0; i < m->n_ranges; i++)
		if (strlen(m->ranges[i]->name) > VMM_PROTO_MAX_NAME)
			return false;
	return true;
}

static bool
adopt_ok(const Vmm__Adopt *m)
{
	size_t	i;

	if (m->n_sizes == 0 || m->n_sizes > VMM_PROTO_MAX_CHUNKS)
		return false;
	for (i = 0; i < m->n_sizes; i++)
		if (m->sizes[i] == 0)
			return false;
	return true;
}

static bool
adopt_reply_ok(const Vmm__AdoptReply *m)
{
	/* An id of 0 names a chunk the daemon refused. */
	return m->n_chunk_ids <= VMM_PROTO_MAX_CHUNKS;
}

static bool
release_ok(const Vmm__Release *m)
{
	size_t	i;

	if (m->n_chunk_ids == 0 || m->n_chunk_ids > VMM_PROTO_MAX_RELEASE_IDS ||
	    (m->flags & ~(uint32_t)VMM__RELEASE_FLAG__RELEASE_FLAG_NO_REPLY) != 0)
		return false;
	for (i = 0; i < m->n_chunk_ids; i++) {
		if (m->chunk_ids[i] == 0)
			return false;
	}
	return true;
}

static bool
stats_reply_ok(const Vmm__StatsReply *m)
{
	size_t	i;

	if (m->pool == NULL || m->n_counters > VMM_PROTO_MAX_COUNTERS)
		return false;
	for (i = 0; i < m->n_counters; i++) {
		if (m->counters[i] == NULL || !str_ok(m->counters[i]->name,
		    VMM_PROTO_MAX_COUNTER_NAME, true))
			return false;
	}
	return sessions_ok(m->sessions, m->n_sessions, m->sessions_total);
}

static bool
clients_reply_ok(const Vmm__ClientsReply *m)
{
	return sessions_ok(m->sessions, m->n_sessions, m->sessions_total);
}

static bool
set_quota_ok(const Vmm__SetQuota *m)
{
	return (m->kind == VMM__QUOTA_KIND__QUOTA_KIND_UID ||
	    m->kind == VMM__QUOTA_KIND__QUOTA_KIND_NAME ||
	    m->kind == VMM__QUOTA_KIND__QUOTA_KIND_CGROUP) &&
	    str_ok(m->key, VMM_PROTO_MAX_QUOTA_KEY, true);
}

static bool
recall_ok(const Vmm__Recall *m)
{
	return m->target_bytes != 0 &&
	    m->reason >= VMM__RECALL_REASON__RECALL_REASON_PRESSURE &&
	    m->reason <= VMM__RECALL_REASON__RECALL_REASON_QUOTA;
}

static bool
goodbye_ok(const Vmm__Goodbye *m)
{
	return m->reason >= VMM__GOODBYE_REASON__GOODBYE_REASON_CLIENT_EXIT &&
	    m->reason <= VMM__GOODBYE_REASON__GOODBYE_REASON_RESTART &&
	    str_ok(m->message, VMM_PROTO_MAX_MESSAGE, false);
}

static bool
error_ok(const Vmm__Error *m)
{
	return m->code >= VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE &&
	    m->code <= VMM__ERROR_CODE__ERROR_CODE_WOULD_CREATE &&
	    str_ok(m->message, VMM_PROTO_MAX_MESSAGE, false);
}

/* A type with no field to check beyond its request id. */
#define no_check(m)	((void)(m), true)

/* --- the message table (rows: VMM_FRAME_MESSAGES in frame.h) -------------- */

/* The table's column values, spelled out.  A row naming a member not
 * listed here does not compile: add it. */
#define FROM_CLIENT		VMM_FRAME_FROM_CLIENT
#define FROM_DAEMON		VMM_FRAME_FROM_DAEMON
#define FROM_ANY		VMM_FRAME_FROM_ANY
#define OFFSET_NONE(T)		SIZE_MAX
#define OFFSET_request_id(T)	offsetof(T, request_id)
#define OFFSET_recall_id(T)	offsetof(T, recall_id)
#define OFFSET_n_chunks(T)	offsetof(T, n_chunks)
#define OFFSET_n_sizes(T)	offsetof(T, n_sizes)
/* A row's reply column names a CASE, or NONE: not a request. */
#define VMM__ENVELOPE__MSG_NONE	VMM__ENVELOPE__MSG__NOT_SET

/* Each row's check, typed, behind one signature. */
#define CHECK_FN(field, CASE, Type, from, rid, fds, reply, check)	\
static bool								\
checked_##field(const void *msg)						\
{									\
	return check((const Type *)msg);				\
}
VMM_FRAME_MESSAGES(CHECK_FN)
#undef CHECK_FN

/* (Parameters are named apart from the members they fill.) */
#define TYPE_ROW(field, CASE, Type, from_, rid_, fds_, reply_, check_) \
	[VMM__ENVELOPE__MSG_##CASE] = {					\
		.name = #field,						\
		.msg_case = VMM__ENVELOPE__MSG_##CASE,			\
		.from = FROM_##from_,					\
		.rid_offset = OFFSET_##rid_(Type),			\
		.fds_offset = OFFSET_##fds_(Type),			\
		.reply = VMM__ENVELOPE__MSG_##reply_,			\
		.check = checked_##field					\
	},

static const struct vmm_frame_type frame_types[] = {
	VMM_FRAME_MESSAGES(TYPE_ROW)
};
#undef TYPE_ROW

const struct vmm_frame_type *
vmm_frame_type(Vmm__Envelope__MsgCase c)
{
	if ((size_t)c >= sizeof(frame_types) / sizeof(frame_types[0]) ||
	    frame_types[c].name == NULL)
		return NULL;
	return &frame_types[c];
}

/* The message an envelope carries: its members are all pointers to
 * structs, in one union, so any of them reads it. */
static const void *
env_msg(const Vmm__Envelope *e)
{
	return e->hello;
}

/* The table's row for env, if env carries a message; NULL otherwise. */
static const struct vmm_frame_type *
env_type(const Vmm__Envelope *e)
{
	const struct vmm_frame_type	*t;

	if (e == NULL || (t = vmm_frame_type(e->msg_case)) == NULL ||
	    env_msg(e) == NULL)
		return NULL;
	return t;
}

int
vmm_frame_validate(const Vmm__Envelope *env, enum vmm_frame_peer from,
    size_t nfds)
{
	const struct vmm_frame_type	*t;

	if (!peer_valid(from) || (t = env_type(env)) == NULL ||
	    (t->from & (1u << from)) == 0)
		return VMM_FRAME_EINVALID;
	/* A notice (either way) may concern no request. */
	if (t->rid_offset != SIZE_MAX && t->from != VMM_FRAME_FROM_ANY &&
	    vmm_frame_request_id(env) == 0)
		return VMM_FRAME_EINVALID;
	if (!t->check(env_msg(env)))
		return VMM_FRAME_EINVALID;
	if (nfds != vmm_frame_expected_fds(env))
		return VMM_FRAME_EFDCOUNT;
	return 0;
}

size_t
vmm_frame_expected_fds(const Vmm__Envelope *env)
{
	const struct vmm_frame_type	*t;
	size_t				 n;

	if ((t = env_type(env)) == NULL || t->fds_offset == SIZE_MAX)
		return 0;
	memcpy(&n, (const char *)env_msg(env) + t->fds_offset, sizeof(n));
	return n;
}

uint64_t
vmm_frame_request_id(const Vmm__Envelope *env)
{
	const struct vmm_frame_type	*t;
	uint64_t			 id;

	if ((t = env_type(env)) == NULL || t->rid_offset == SIZE_MAX)
		return 0;
	memcpy(&id, (const char *)env_msg(env) + t->rid_offset, sizeof(id));
	return id;
}

int
vmm_frame_set_request_id(Vmm__Envelope *env, uint64_t id)
{
	const struct vmm_frame_type	*t;

	if ((t = env_type(env)) == NULL || t->rid_offset == SIZE_MAX)
		return -1;
	/* The message is the caller's, reached through env: not const. */
	memcpy((char *)(uintptr_t)env_msg(env) + t->rid_offset, &id,
	    sizeof(id));
	return 0;
}

const char *
vmm_frame_type_name(const Vmm__Envelope *env)
{
	const struct vmm_frame_type	*t;

	if (env == NULL || env->msg_case == VMM__ENVELOPE__MSG__NOT_SET)
		return "none";
	t = vmm_frame_type(env->msg_case);
	return t != NULL ? t->name : "unknown";
}

const char *
vmm_frame_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case VMM_FRAME_ETOOBIG:
		return "frame longer than the protocol allows";
	case VMM_FRAME_EDECODE:
		return "frame does not decode as a message";
	case VMM_FRAME_EINVALID:
		return "message violates the protocol";
	case VMM_FRAME_EFDCOUNT:
		return "file descriptors do not match the message";
	case VMM_FRAME_ETOOMANYFDS:
		return "too many file descriptors on one frame";
	case VMM_FRAME_ETRUNCATED:
		return "peer closed the connection inside a frame";
	case -ENOBUFS:
		return "frame buffer or queue full";
	default:
		return strerror(err < 0 ? -err : err);
	}
}

/* vmm_frame_decode; lost: fds of this frame were dropped on the way, the
 * message then carries -1 for each fd it declares beyond those given. */
static int
frame_decode(const void *body, size_t len, enum vmm_frame_peer from,
    int *fds, size_t nfds, bool lost, struct vmm_frame_msg **out)
{
	static const uint8_t	 empty[1];
	struct vmm_frame_msg	*m;
	size_t			 want;
	int			 rc;

	*out = NULL;
	if (nfds > VMM_FRAME_MAX_FDS) {
		drop_fds(fds, nfds);
		return VMM_FRAME_ETOOMANYFDS;
	}
	if (len > VMM_FRAME_MAX) {
		drop_fds(fds, nfds);
		return VMM_FRAME_ETOOBIG;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		drop_fds(fds, nfds);
		return -ENOMEM;
	}
	if (nfds != 0)
		memcpy(m->fds, fds, nfds * sizeof(*fds));
	m->nfds = nfds;
	m->alloc.alloc = budget_alloc;
	m->alloc.free = budget_free;
	m->alloc.allocator_data = m;

	m->env = vmm__envelope__unpack(&m->alloc, len,
	    body != NULL ? body : empty);
	if (m->env == NULL) {
		rc = VMM_FRAME_EDECODE;
		goto fail;
	}
	if (lost && (want = vmm_frame_expected_fds(m->env)) > nfds &&
	    want <= VMM_FRAME_MAX_FDS) {
		for (; m->nfds < want; m->nfds++, m->lost++)
			m->fds[m->nfds] = -1;
	}
	if ((rc = vmm_frame_validate(m->env, from, m->nfds)) < 0)
		goto fail;
	*out = m;
	return 0;

fail:
	vmm_frame_msg_free(m);
	return rc;
}

int
vmm_frame_decode(const void *body, size_t len, enum vmm_frame_peer from,
    int *fds, size_t nfds, struct vmm_frame_msg **out)
{
	return frame_decode(body, len, from, fds, nfds, false, out);
}

const Vmm__Envelope *
vmm_frame_msg_env(const struct vmm_frame_msg *m)
{
	return m->env;
}

size_t
vmm_frame_msg_nfds(const struct vmm_frame_msg *m)
{
	return m->nfds;
}

size_t
vmm_frame_msg_fds_lost(const struct vmm_frame_msg *m)
{
	return m->lost;
}

int
vmm_frame_msg_take_fd(struct vmm_frame_msg *m, size_t i)
{
	int	fd;

	if (i >= m->nfds)
		return -1;
	fd = m->fds[i];
	m->fds[i] = -1;
	return fd;
}

void
vmm_frame_msg_free(struct vmm_frame_msg *m)
{
	if (m == NULL)
		return;
	drop_fds(m->fds, m->nfds);
	if (m->env != NULL)
		vmm__envelope__free_unpacked(m->env, &m->alloc);
	free(m);
}

/* --- receiving ------------------------------------------------------------ */

struct vmm_frame_reader *
vmm_frame_reader_new(enum vmm_frame_peer from)
{
	struct vmm_frame_reader	*r;

	if (!peer_valid(from)) {
		errno = EINVAL;
		return NULL;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->from = from;
	return r;
}

static void
reader_drop_fds(struct vmm_frame_reader *r)
{
	size_t	i;

	for (i = 0; i < READ_FDSETS; i++) {
		drop_fds(r->sets[i].fds, r->sets[i].nfds);
		r->sets[i].nfds = 0;
		r->sets[i].lost = false;
	}
}

void
vmm_frame_reader_free(struct vmm_frame_reader *r)
{
	if (r == NULL)
		return;
	reader_drop_fds(r);
	free(r->buf);
	free(r);
}

/* Record a fault: every later call returns it; held fds are disposed of. */
static int
reader_fail(struct vmm_frame_reader *r, int err)
{
	r->err = err;
	reader_drop_fds(r);
	return err;
}

/* Compact the buffer and grow it to hold the frame at its head; -ENOBUFS if
 * complete frames must be taken with _next() before more can be read. */
static int
reader_make_room(struct vmm_frame_reader *r)
{
	size_t		 need = READ_MIN, i;
	unsigned char	*p;

	if (r->head > 0) {
		memmove(r->buf, r->buf + r->head, r->len - r->head);
		r->base += r->head;
		r->len -= r->head;
		r->head = 0;
	}
	/* The prefix was checked against VMM_FRAME_MAX when it arrived. */
	if (r->len >= VMM_FRAME_HDR &&
	    VMM_FRAME_HDR + (size_t)get_le32(r->buf) > need)
		need = VMM_FRAME_HDR + get_le32(r->buf);
	if (r->cap < need) {
		if ((p = realloc(r->buf, need)) == NULL)
			return -ENOMEM;
		r->buf = p;
		r->cap = need;
	}
	if (r->len == r->cap)
		return -ENOBUFS;
	for (i = 0; i < READ_FDSETS; i++) {
		if (!FDSET_USED(&r->sets[i]))
			return 0;
	}
	return -ENOBUFS;
}

/*
 * Account for n new bytes at buf[len] and the fds that came with them: check
 * each new length prefix against the cap, and pin the fds to the last frame
 * that starts within the new bytes (see frame.h for why that is exact).
 * lost: the kernel dropped some of those fds (they are pinned all the same,
 * as a batch that lacks some).
 */
static ssize_t
reader_absorb(struct vmm_frame_reader *r, size_t n, int *fds, size_t nfds,
    bool lost)
{
	uint64_t	a = r->base + r->len, b, next, last = UINT64_MAX;
	size_t		i, slot = READ_FDSETS;
	uint32_t	flen;

	r->len += n;
	b = r->base + r->len;
	if (r->walk >= a)
		last = r->walk;
	while (r->walk + VMM_FRAME_HDR <= b) {
		flen = get_le32(r->buf + (r->walk - r->base));
		if (flen > VMM_FRAME_MAX) {
			drop_fds(fds, nfds);
			return reader_fail(r, VMM_FRAME_ETOOBIG);
		}
		next = r->walk + VMM_FRAME_HDR + flen;
		if (next >= b)
			break;
		r->walk = next;
		if (next >= a)
			last = next;
	}
	if (nfds == 0 && !lost)
		return (ssize_t)n;

	if (last == UINT64_MAX) {
		drop_fds(fds, nfds);		/* fds in mid-frame */
		return reader_fail(r, VMM_FRAME_EINVALID);
	}
	for (i = 0; i < READ_FDSETS; i++) {
		if (!FDSET_USED(&r->sets[i])) {
			if (slot == READ_FDSETS)
				slot = i;
		} else if (r->sets[i].start == last) {
			drop_fds(fds, nfds);	/* a second batch */
			return reader_fail(r, VMM_FRAME_EINVALID);
		}
	}
	if (slot == READ_FDSETS) {
		drop_fds(fds, nfds);
		return reader_fail(r, -ENOBUFS);
	}
	r->sets[slot].start = last;
	r->sets[slot].nfds = nfds;
	r->sets[slot].lost = lost;
	memcpy(r->sets[slot].fds, fds, nfds * sizeof(*fds));
	return (ssize_t)n;
}

/* Whether the buffered bytes end exactly at a frame boundary. */
static bool
reader_at_boundary(const struct vmm_frame_reader *r)
{
	size_t	pos = r->head;

	while (pos + VMM_FRAME_HDR <= r->len)
		pos += VMM_FRAME_HDR + (size_t)get_le32(r->buf + pos);
	return pos == r->len;
}

ssize_t
vmm_frame_reader_read(struct vmm_frame_reader *r, int sock)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CTL_SPACE];
	}		 ctl;
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*c;
	int		 fds[SCM_FDS_MAX], fd, rc;
	size_t		 nfds = 0, i, k;
	bool		 toomany = false, lost;
	ssize_t		 n;

	if (r->err != 0)
		return r->err;
	if ((rc = reader_make_room(r)) < 0)
		return rc;

	iov.iov_base = r->buf + r->len;
	iov.iov_len = r->cap - r->len;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl.buf;
	mh.msg_controllen = sizeof(ctl.buf);
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		return reader_fail(r, -errno);
	}

	for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < k; i++) {
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (nfds < SCM_FDS_MAX)
				fds[nfds++] = fd;
			else {
				drop_fds(&fd, 1);
				toomany = true;
			}
		}
	}
	/*
	 * MSG_CTRUNC: the kernel could not give us every fd (out of fds, as
	 * the control buffer holds all one sendmsg may carry).  The bytes are
	 * intact.  A reader of the daemon's frames (a client) keeps them, so
	 * the message still says which chunks it lent and the client can give
	 * them back (vmm_frame_msg_fds_lost); vmmd itself drops such a peer.
	 */
	lost = (mh.msg_flags & MSG_CTRUNC) != 0;
	if (toomany || nfds > VMM_FRAME_MAX_FDS ||
	    (lost && r->from != VMM_FRAME_PEER_DAEMON)) {
		drop_fds(fds, nfds);
		return reader_fail(r, VMM_FRAME_ETOOMANYFDS);
	}
	if (n == 0) {
		drop_fds(fds, nfds);
		if (!reader_at_boundary(r))
			return reader_fail(r, VMM_FRAME_ETRUNCATED);
		return 0;
	}
	return reader_absorb(r, (size_t)n, fds, nfds, lost);
}

int
vmm_frame_reader_feed(struct vmm_frame_reader *r, const void *buf, size_t len,
    int *fds, size_t nfds)
{
	unsigned char	*p;
	size_t		 need, i;
	ssize_t		 n;

	if (r->err != 0) {
		drop_fds(fds, nfds);
		return r->err;
	}
	if (nfds > VMM_FRAME_MAX_FDS) {
		drop_fds(fds, nfds);
		return reader_fail(r, VMM_FRAME_ETOOMANYFDS);
	}
	if (len == 0) {
		if (nfds == 0)
			return 0;
		drop_fds(fds, nfds);	/* a socket cannot deliver that */
		return reader_fail(r, VMM_FRAME_EINVALID);
	}

	/* All or nothing: the fds belong to these bytes as a whole. */
	if (r->head > 0) {
		memmove(r->buf, r->buf + r->head, r->len - r->head);
		r->base += r->head;
		r->len -= r->head;
		r->head = 0;
	}
	for (i = 0; i < READ_FDSETS && FDSET_USED(&r->sets[i]); i++)
		;
	if (len > FEED_MAX - r->len || (nfds > 0 && i == READ_FDSETS)) {
		if (nfds == 0)
			return -ENOBUFS;
		/* The fds are lost: the stream is broken. */
		drop_fds(fds, nfds);
		return reader_fail(r, -ENOBUFS);
	}
	need = r->len + len > READ_MIN ? r->len + len : READ_MIN;
	if (r->cap < need) {
		if ((p = realloc(r->buf, need)) == NULL) {
			drop_fds(fds, nfds);
			return nfds == 0 ? -ENOMEM : reader_fail(r, -ENOMEM);
		}
		r->buf = p;
		r->cap = need;
	}
	memcpy(r->buf + r->len, buf, len);
	n = reader_absorb(r, len, fds, nfds, false);
	return n < 0 ? (int)n : 0;
}

int
vmm_frame_reader_next(struct vmm_frame_reader *r, struct vmm_frame_msg **out)
{
	int		 fds[VMM_FRAME_MAX_FDS];
	size_t		 nfds = 0, avail, i;
	uint64_t	 start;
	uint32_t	 flen;
	bool		 lost = false;
	int		 rc;

	*out = NULL;
	if (r->err != 0)
		return r->err;
	avail = r->len - r->head;
	if (avail < VMM_FRAME_HDR)
		return 0;
	flen = get_le32(r->buf + r->head);
	if (flen > VMM_FRAME_MAX)
		return reader_fail(r, VMM_FRAME_ETOOBIG);
	if (avail - VMM_FRAME_HDR < flen)
		return 0;

	start = r->base + r->head;
	for (i = 0; i < READ_FDSETS; i++) {
		if (FDSET_USED(&r->sets[i]) && r->sets[i].start == start) {
			nfds = r->sets[i].nfds;
			lost = r->sets[i].lost;
			memcpy(fds, r->sets[i].fds, nfds * sizeof(*fds));
			r->sets[i].nfds = 0;
			r->sets[i].lost = false;
			break;
		}
	}
	rc = frame_decode(r->buf + r->head + VMM_FRAME_HDR, flen, r->from,
	    fds, nfds, lost, out);

	r->head += VMM_FRAME_HDR + flen;
	if (r->walk < r->base + r->head)
		r->walk = r->base + r->head;
	if (r->head == r->len) {
		r->base += r->len;
		r->head = r->len = 0;
		if (r->cap > READ_MIN) {	/* keep no big buffer idle */
			free(r->buf);
			r->buf = NULL;
			r->cap = 0;
		}
	}
	if (rc < 0)
		return reader_fail(r, rc);
	return 1;
}

/* --- sending -------------------------------------------------------------- */

struct vmm_frame_outq *
vmm_frame_outq_new(enum vmm_frame_peer to, size_t max_bytes, size_t max_fds)
{
	struct vmm_frame_outq	*q;

	if (!peer_valid(to)) {
		errno = EINVAL;
		return NULL;
	}
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	q->to = to;
	q->max_bytes = max_bytes;
	q->max_fds = max_fds;
	q->tailp = &q->head;
	return q;
}

void
vmm_frame_outq_free(struct vmm_frame_outq *q)
{
	struct outq_frame	*f;

	if (q == NULL)
		return;
	while ((f = q->head) != NULL) {
		q->head = f->next;
		close_fds(f->fds, f->nfds);
		free(f);
	}
	free(q);
}

int
vmm_frame_outq_push(struct vmm_frame_outq *q, const Vmm__Envelope *env,
    int *fds, size_t nfds)
{
	struct outq_frame	*f;
	enum vmm_frame_peer	 from;
	size_t			 body;
	int			 rc;

	if ((rc = q->err) != 0)
		goto fail;
	if (nfds > VMM_FRAME_MAX_FDS) {
		rc = VMM_FRAME_ETOOMANYFDS;
		goto fail;
	}
	from = q->to == VMM_FRAME_PEER_CLIENT ? VMM_FRAME_PEER_DAEMON :
	    VMM_FRAME_PEER_CLIENT;
	if ((rc = vmm_frame_validate(env, from, nfds)) < 0)
		goto fail;
	body = vmm__envelope__get_packed_size(env);
	if (body > VMM_FRAME_MAX) {
		rc = VMM_FRAME_ETOOBIG;
		goto fail;
	}
	if ((q->max_bytes != 0 &&
	    VMM_FRAME_HDR + body > q->max_bytes - q->bytes) ||
	    (q->max_fds != 0 && nfds > q->max_fds - q->nfds)) {
		rc = -ENOBUFS;
		goto fail;
	}
	f = malloc(sizeof(*f) + nfds * sizeof(int) + VMM_FRAME_HDR + body);
	if (f == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	f->next = NULL;
	f->data = (unsigned char *)(f->fds + nfds);
	f->len = VMM_FRAME_HDR + body;
	f->off = 0;
	f->nfds = nfds;
	if (nfds != 0)
		memcpy(f->fds, fds, nfds * sizeof(*fds));
	put_le32(f->data, (uint32_t)body);
	if (vmm__envelope__pack(env, f->data + VMM_FRAME_HDR) != body) {
		free(f);	/* get_packed_size and pack disagree: a bug */
		rc = VMM_FRAME_EINVALID;
		goto fail;
	}
	*q->tailp = f;
	q->tailp = &f->next;
	q->bytes += f->len;
	q->nfds += nfds;
	return 0;

fail:
	close_fds(fds, nfds);
	return rc;
}

/* Drop n sent bytes from the front of the queue. */
static void
outq_consume(struct vmm_frame_outq *q, size_t n)
{
	struct outq_frame	*f;
	size_t			 k;

	while (n > 0 && (f = q->head) != NULL) {
		k = f->len - f->off < n ? f->len - f->off : n;
		f->off += k;
		q->bytes -= k;
		n -= k;
		if (f->off == f->len) {
			q->head = f->next;
			if (q->head == NULL)
				q->tailp = &q->head;
			free(f);
		}
	}
}

/*
 * A frame with fds goes out in a sendmsg() of its own, fds attached, ending
 * at the frame's end; the rest of a partly sent frame and runs of fd-less
 * frames are gathered.  Once any byte of a frame is sent its fds are in the
 * kernel's hands and our copies are closed.
 */
int
vmm_frame_outq_flush(struct vmm_frame_outq *q, int sock)
{
	union {
		struct cmsghdr	hdr;
		char buf[CMSG_SPACE(sizeof(int) * VMM_FRAME_MAX_FDS)];
	}			 ctl;
	struct iovec		 iov[SEND_IOV];
	struct msghdr		 mh;
	struct cmsghdr		*c;
	struct outq_frame	*f, *g;
	size_t			 niov;
	ssize_t			 n;

	if (q->err != 0)
		return q->err;
	while ((f = q->head) != NULL) {
		memset(&mh, 0, sizeof(mh));
		iov[0].iov_base = f->data + f->off;
		iov[0].iov_len = f->len - f->off;
		niov = 1;
		if (f->nfds > 0) {
			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.buf;
			mh.msg_controllen = CMSG_SPACE(f->nfds * sizeof(int));
			c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(f->nfds * sizeof(int));
			memcpy(CMSG_DATA(c), f->fds, f->nfds * sizeof(int));
		} else {
			for (g = f->next; g != NULL && g->nfds == 0 &&
			    niov < SEND_IOV; g = g->next) {
				iov[niov].iov_base = g->data;
				iov[niov].iov_len = g->len;
				niov++;
			}
		}
		mh.msg_iov = iov;
		mh.msg_iovlen = niov;
		n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return VMM_FRAME_AGAIN;
			return q->err = -errno;
		}
		if (n == 0)
			return VMM_FRAME_AGAIN;	/* never on a stream */
		if (f->nfds > 0) {
			q->nfds -= f->nfds;
			close_fds(f->fds, f->nfds);
			f->nfds = 0;
		}
		outq_consume(q, (size_t)n);
	}
	return VMM_FRAME_DONE;
}

size_t
vmm_frame_outq_bytes(const struct vmm_frame_outq *q)
{
	return q->bytes;
}

/* --- blocking helpers ----------------------------------------------------- */

static int64_t
deadline_ms(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : (int64_t)vmm_now_ms() + timeout_ms;
}

/* Wait until fd is ready for events or the deadline (-1: none) passes. */
static int
wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd	pfd;
	int64_t		left;
	int		n;

	for (;;) {
		left = -1;
		if (deadline >= 0) {
			if ((left = deadline - (int64_t)vmm_now_ms()) <= 0)
				return -ETIMEDOUT;
			if (left > INT_MAX)
				left = INT_MAX;
		}
		pfd.fd = fd;
		pfd.events = events;
		pfd.revents = 0;
		n = poll(&pfd, 1, (int)left);
		if (n > 0)
			return 0;	/* errors show in the next call */
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

int
vmm_frame_send(int sock, enum vmm_frame_peer to, const Vmm__Envelope *env,
    int *fds, size_t nfds, int timeout_ms)
{
	struct vmm_frame_outq	*q;
	int64_t			 deadline = deadline_ms(timeout_ms);
	int			 rc;

	if ((q = vmm_frame_outq_new(to, 0, 0)) == NULL) {
		rc = -errno;
		close_fds(fds, nfds);
		return rc;
	}
	rc = vmm_frame_outq_push(q, env, fds, nfds);
	while (rc == 0 && (rc = vmm_frame_outq_flush(q, sock)) ==
	    VMM_FRAME_AGAIN)
		rc = wait_fd(sock, POLLOUT, deadline);
	vmm_frame_outq_free(q);
	return rc;
}

int
vmm_frame_recv(struct vmm_frame_reader *r, int sock,
    struct vmm_frame_msg **out, int timeout_ms)
{
	int64_t	deadline = deadline_ms(timeout_ms);
	ssize_t	n;
	int	rc;

	for (;;) {
		if ((rc = vmm_frame_reader_next(r, out)) != 0)
			return rc;
		/* No whole frame here: what is awaited (a reply to a request
		 * just sent, the rest of a frame) has most often not come
		 * yet, so wait for the socket before reading, rather than
		 * read for nothing first (one recvmsg saved per call).  With
		 * no time to wait, or a fault to report, read at once. */
		rc = timeout_ms != 0 && r->err == 0 ?
		    wait_fd(sock, POLLIN, deadline) : -ETIMEDOUT;
		if (rc < 0 && rc != -ETIMEDOUT)
			return rc;
		if ((n = vmm_frame_reader_read(r, sock)) > 0)
			continue;
		if (n != -EAGAIN)
			return (int)n;
		if (rc == -ETIMEDOUT)
			return -ETIMEDOUT;	/* and nothing came */
	}
}
