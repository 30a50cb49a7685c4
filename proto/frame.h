/*
 * frame.h — the wire framing and message checks shared by vmmd, the client
 * library and vmmctl (DESIGN.md "Protocol"; the messages are in vmm.proto).
 *
 * A frame is a 4-byte little-endian body length, then one packed
 * Vmm__Envelope.  File descriptors ride with SCM_RIGHTS on the first byte of
 * the frame that lists them, in list order; a frame that carries fds is sent
 * by a sendmsg() of its own that ends where the frame ends, so a receiver can
 * pin every batch of fds to exactly one frame: the last frame that starts
 * within the bytes of the recvmsg() that brought them (Linux stops a stream
 * read right after the segment that carried fds).
 *
 * Ownership: every function that takes an fd array takes the fds, whatever
 * it returns: they are sent and closed, handed over in a vmm_frame_msg, or
 * closed.  Every fd that arrives (or is given to _decode() or _feed()) and is
 * not taken with vmm_frame_msg_take_fd() is disposed of: closed, or handed
 * to the disposer set with vmm_frame_set_fd_disposer().  Even the fds of a
 * frame that may carry none are received first and disposed of that way,
 * never left for the kernel to drop.  Nothing here prints; errors are
 * negative errno values, those below naming protocol faults.  Objects are
 * not thread-safe.
 */
#ifndef VMM_FRAME_H
#define VMM_FRAME_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmm.pb-c.h"

/* The version both sides send in Hello/HelloReply; see vmm.proto for when
 * to bump it. */
#define VMM_PROTOCOL_VERSION \
	VMM__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT
/* The oldest version vmmd still serves (vmm.proto says why). */
#define VMM_PROTOCOL_VERSION_MIN	2

/*
 * Frame limits.  VMM_FRAME_MAX bounds one body: it must hold the largest
 * valid message, a page of StatsReply (VMM_PROTO_MAX_SESSIONS sessions and
 * VMM_PROTO_MAX_COUNTERS counters, every field at its widest: 53.5 KB,
 * checked by tests/proto), while keeping what one peer can make the daemon
 * buffer small (a session's read buffer never exceeds it).  Lowering either
 * limit is a protocol version bump.
 */
#define VMM_FRAME_HDR		4		/* length prefix, bytes */
#define VMM_FRAME_MAX		(64 * 1024)	/* body, bytes */
#define VMM_FRAME_MAX_FDS	64		/* fds on one frame */
/* Heap one decode may use; a valid frame needs < 100 KiB, a hostile one
 * (e.g. 30000 empty sub-messages) would need megabytes. */
#define VMM_FRAME_DECODE_BUDGET	(256 * 1024)

/* Message limits, checked by vmm_frame_validate() on receive and on send. */
#define VMM_PROTO_UUID_LEN	16	/* device_uuid: this, or empty */
#define VMM_PROTO_MAX_NAME	64	/* client_name, SessionStats.name */
#define VMM_PROTO_MAX_MESSAGE	256	/* Error, Goodbye: message */
#define VMM_PROTO_MAX_CHUNKS	VMM_FRAME_MAX_FDS	/* per Grant */
#define VMM_PROTO_MAX_RELEASE_IDS 1024	/* chunk ids per Release */
#define VMM_PROTO_MAX_COUNTERS	128	/* per StatsReply */
#define VMM_PROTO_MAX_COUNTER_NAME 48
#define VMM_PROTO_MAX_SESSIONS	256	/* per Stats/ClientsReply */
#define VMM_PROTO_MAX_QUOTA_KEY	512	/* SetQuota.key */
/* The address plan (version 4): ranges per VaClaim, entries per
 * VaPlanReply page, the largest range (1 PiB: more than any GPU maps). */
#define VMM_PROTO_MAX_VA_RANGES	64
#define VMM_PROTO_MAX_VA_ENTRIES 512
#define VMM_PROTO_MAX_VA_SIZE	(1ull << 50)

/*
 * Protocol faults, as negative errno values:
 * ETOOBIG	a length over VMM_FRAME_MAX
 * EDECODE	the body is not an Envelope, or needs more than the budget
 * EINVALID	no or unknown type, wrong direction, a field out of range,
 *		fds that do not arrive on a frame's first byte
 * EFDCOUNT	fds attached != fds the message declares
 * ETOOMANYFDS	more than VMM_FRAME_MAX_FDS, or truncated control data
 * ETRUNCATED	the peer closed the connection inside a frame
 */
#define VMM_FRAME_ETOOBIG	(-EMSGSIZE)
#define VMM_FRAME_EDECODE	(-EBADMSG)
#define VMM_FRAME_EINVALID	(-EPROTO)
#define VMM_FRAME_EFDCOUNT	(-EBADFD)
#define VMM_FRAME_ETOOMANYFDS	(-ETOOMANYREFS)
#define VMM_FRAME_ETRUNCATED	(-ECONNABORTED)

/* Which side a message comes from (reader) or goes to (output queue). */
enum vmm_frame_peer {
	VMM_FRAME_PEER_CLIENT = 1,	/* an application or vmmctl */
	VMM_FRAME_PEER_DAEMON = 2	/* vmmd */
};

/* Who may send a message: a set of peers. */
#define VMM_FRAME_FROM_CLIENT	(1u << VMM_FRAME_PEER_CLIENT)
#define VMM_FRAME_FROM_DAEMON	(1u << VMM_FRAME_PEER_DAEMON)
#define VMM_FRAME_FROM_ANY	(VMM_FRAME_FROM_CLIENT | VMM_FRAME_FROM_DAEMON)

/*
 * Every message type, once: X(field, CASE, Type, from, rid, fds, reply,
 * check).  This list is the only place that knows them; frame.c builds its
 * table from it (names, direction, request ids, fd counts, range checks)
 * and the envelope builders below come from it.  A new message is one row
 * here, its check in frame.c, and its handler.
 *
 *  field	the Envelope member, also the type's name in logs
 *  CASE	its VMM__ENVELOPE__MSG_ suffix
 *  Type	its protobuf-c struct
 *  from	who may send it: CLIENT, DAEMON or ANY (a notice)
 *  rid		the member holding its request id (or Recall's recall_id),
 *		or NONE.  It must be non-zero, except in a notice, which may
 *		concern no request.
 *  fds		the repeated count whose value is the number of fds the
 *		frame carries (one per element, in order), or NONE
 *  reply	for a request, the CASE of its answer (an Error may answer
 *		any request instead); NONE for anything else
 *  check	frame.c's range check of the fields, or no_check
 */
#define VMM_FRAME_MESSAGES(X)						\
	X(hello, HELLO, Vmm__Hello,					\
	    CLIENT, request_id, NONE, HELLO_REPLY, hello_ok)		\
	X(hello_reply, HELLO_REPLY, Vmm__HelloReply,			\
	    DAEMON, request_id, NONE, NONE, hello_reply_ok)		\
	X(acquire, ACQUIRE, Vmm__Acquire,				\
	    CLIENT, request_id, NONE, GRANT, acquire_ok)		\
	X(grant, GRANT, Vmm__Grant,					\
	    DAEMON, request_id, n_chunks, NONE, grant_ok)		\
	X(release, RELEASE, Vmm__Release,				\
	    CLIENT, request_id, NONE, RELEASE_REPLY, release_ok)	\
	X(release_reply, RELEASE_REPLY, Vmm__ReleaseReply,		\
	    DAEMON, request_id, NONE, NONE, no_check)			\
	X(report, REPORT, Vmm__Report,					\
	    CLIENT, request_id, NONE, ACK, no_check)			\
	X(ack, ACK, Vmm__Ack,						\
	    DAEMON, request_id, NONE, NONE, no_check)			\
	X(adopt, ADOPT, Vmm__Adopt,					\
	    CLIENT, request_id, n_sizes, ADOPT_REPLY, adopt_ok)		\
	X(adopt_reply, ADOPT_REPLY, Vmm__AdoptReply,			\
	    DAEMON, request_id, NONE, NONE, adopt_reply_ok)		\
	X(mem_info_request, MEM_INFO_REQUEST, Vmm__MemInfoRequest,	\
	    CLIENT, request_id, NONE, MEM_INFO_REPLY, no_check)		\
	X(mem_info_reply, MEM_INFO_REPLY, Vmm__MemInfoReply,		\
	    DAEMON, request_id, NONE, NONE, no_check)			\
	X(ipc_export, IPC_EXPORT, Vmm__IpcExport,			\
	    CLIENT, request_id, NONE, IPC_EXPORT_REPLY, ipc_export_ok)	\
	X(ipc_export_reply, IPC_EXPORT_REPLY, Vmm__IpcExportReply,	\
	    DAEMON, request_id, NONE, NONE, ipc_export_reply_ok)	\
	X(ipc_open, IPC_OPEN, Vmm__IpcOpen,				\
	    CLIENT, request_id, NONE, IPC_GRANT, ipc_open_ok)		\
	X(ipc_grant, IPC_GRANT, Vmm__IpcGrant,				\
	    DAEMON, request_id, n_chunks, NONE, ipc_grant_ok)		\
	X(ipc_close, IPC_CLOSE, Vmm__IpcClose,				\
	    CLIENT, request_id, NONE, ACK, ipc_close_ok)		\
	X(stats_request, STATS_REQUEST, Vmm__StatsRequest,		\
	    CLIENT, request_id, NONE, STATS_REPLY, no_check)		\
	X(stats_reply, STATS_REPLY, Vmm__StatsReply,			\
	    DAEMON, request_id, NONE, NONE, stats_reply_ok)		\
	X(clients_request, CLIENTS_REQUEST, Vmm__ClientsRequest,	\
	    CLIENT, request_id, NONE, CLIENTS_REPLY, no_check)		\
	X(clients_reply, CLIENTS_REPLY, Vmm__ClientsReply,		\
	    DAEMON, request_id, NONE, NONE, clients_reply_ok)		\
	X(trim_request, TRIM_REQUEST, Vmm__TrimRequest,			\
	    CLIENT, request_id, NONE, TRIM_REPLY, no_check)		\
	X(trim_reply, TRIM_REPLY, Vmm__TrimReply,			\
	    DAEMON, request_id, NONE, NONE, no_check)			\
	X(set_quota, SET_QUOTA, Vmm__SetQuota,				\
	    CLIENT, request_id, NONE, ACK, set_quota_ok)		\
	X(va_request, VA_REQUEST, Vmm__VaRequest,			\
	    CLIENT, request_id, NONE, VA_REPLY, va_request_ok)		\
	X(va_reply, VA_REPLY, Vmm__VaReply,				\
	    DAEMON, request_id, NONE, NONE, va_reply_ok)		\
	X(va_placed, VA_PLACED, Vmm__VaPlaced,				\
	    CLIENT, request_id, NONE, ACK, va_placed_ok)		\
	X(va_claim, VA_CLAIM, Vmm__VaClaim,				\
	    CLIENT, request_id, NONE, VA_CLAIM_REPLY, va_claim_ok)	\
	X(va_claim_reply, VA_CLAIM_REPLY, Vmm__VaClaimReply,		\
	    DAEMON, request_id, NONE, NONE, va_claim_reply_ok)		\
	X(va_plan_request, VA_PLAN_REQUEST, Vmm__VaPlanRequest,		\
	    CLIENT, request_id, NONE, VA_PLAN_REPLY, no_check)		\
	X(va_plan_reply, VA_PLAN_REPLY, Vmm__VaPlanReply,		\
	    DAEMON, request_id, NONE, NONE, va_plan_reply_ok)		\
	X(recall, RECALL, Vmm__Recall,					\
	    DAEMON, recall_id, NONE, NONE, recall_ok)			\
	X(goodbye, GOODBYE, Vmm__Goodbye,				\
	    ANY, NONE, NONE, NONE, goodbye_ok)				\
	X(error, ERROR, Vmm__Error,					\
	    ANY, request_id, NONE, NONE, error_ok)

/* A message type as the table describes it (see VMM_FRAME_MESSAGES). */
struct vmm_frame_type {
	const char		*name;		/* "hello", "grant", ... */
	Vmm__Envelope__MsgCase	 msg_case;
	unsigned		 from;		/* VMM_FRAME_FROM_* */
	size_t			 rid_offset;	/* uint64_t; or SIZE_MAX */
	size_t			 fds_offset;	/* size_t count; or SIZE_MAX */
	Vmm__Envelope__MsgCase	 reply;		/* _NOT_SET: not a request */
	bool			(*check)(const void *msg);
};

/*
 * Envelope builders, one per type: vmm_frame_env_<field>(msg) is an
 * Envelope that carries msg, e.g.
 *	Vmm__Envelope env = vmm_frame_env_acquire(&acquire);
 */
#define VMM_FRAME_ENV_BUILDER(field, CASE, Type, from, rid, fds, reply,	\
	    check)							\
static inline Vmm__Envelope						\
vmm_frame_env_##field(Type *msg)					\
{									\
	Vmm__Envelope	env = VMM__ENVELOPE__INIT;			\
									\
	env.msg_case = VMM__ENVELOPE__MSG_##CASE;			\
	env.field = msg;						\
	return env;							\
}
VMM_FRAME_MESSAGES(VMM_FRAME_ENV_BUILDER)
#undef VMM_FRAME_ENV_BUILDER

/* vmm_frame_outq_flush() results other than errors. */
enum vmm_frame_flush {
	VMM_FRAME_DONE = 0,		/* queue empty */
	VMM_FRAME_AGAIN = 1		/* socket full: wait for POLLOUT */
};

struct vmm_frame_msg;		/* one decoded frame and its fds */
struct vmm_frame_reader;	/* incremental receiver for one socket */
struct vmm_frame_outq;		/* pending output for one socket */

/*
 * How fds that came from a peer are disposed of: close() by default.  The
 * last close of a peer's file may sleep (a lingering socket, a FUSE flush),
 * so a server's event loop hands them to something that cannot (vmmd: its
 * closer).  fn must take the fd in every case.  Call once, before any other
 * function here; NULL restores close().
 */
void	 vmm_frame_set_fd_disposer(void (*fn)(int fd));

/* --- messages ----------------------------------------------------------- */

/* Decode one frame body sent by `from`; 0 and *out, or a fault (fds
 * disposed of). */
int	 vmm_frame_decode(const void *body, size_t len,
	     enum vmm_frame_peer from, int *fds, size_t nfds,
	     struct vmm_frame_msg **out);
/* Check a message as sent by `from` with nfds fds: 0 or a fault. */
int	 vmm_frame_validate(const Vmm__Envelope *env,
	     enum vmm_frame_peer from, size_t nfds);
/* The table's row for a message type; NULL for none (or _NOT_SET). */
const struct vmm_frame_type *vmm_frame_type(Vmm__Envelope__MsgCase c);
/* How many fds the message must carry (Grant: one per chunk; Adopt: one
 * per size; others: 0). */
size_t	 vmm_frame_expected_fds(const Vmm__Envelope *env);
/* The request id a message carries or echoes (Recall: its recall id), or 0. */
uint64_t vmm_frame_request_id(const Vmm__Envelope *env);
/* Set the request id of a message that has one: 0, or -1 if it has none. */
int	 vmm_frame_set_request_id(Vmm__Envelope *env, uint64_t id);
/* The message type's field name ("hello", "grant", ...), for logs. */
const char *vmm_frame_type_name(const Vmm__Envelope *env);
/* A description of any value these functions return below zero. */
const char *vmm_frame_strerror(int err);

/* The decoded envelope; valid until vmm_frame_msg_free(). */
const Vmm__Envelope *vmm_frame_msg_env(const struct vmm_frame_msg *m);
/* Number of fds that came with the frame (taken ones included). */
size_t	 vmm_frame_msg_nfds(const struct vmm_frame_msg *m);
/* How many of the message's fds never arrived (the receiver was out of
 * fds: MSG_CTRUNC); they read as -1.  Only a reader of the daemon's frames
 * delivers such a message (the client must give the chunks back); any
 * other reader fails the stream. */
size_t	 vmm_frame_msg_fds_lost(const struct vmm_frame_msg *m);
/* Take fd i (CLOEXEC) for the caller to own; -1 if out of range or taken. */
int	 vmm_frame_msg_take_fd(struct vmm_frame_msg *m, size_t i);
/* Free the message and dispose of every fd not taken.  NULL is fine. */
void	 vmm_frame_msg_free(struct vmm_frame_msg *m);

/* --- receiving ---------------------------------------------------------- */

/* A reader for what `from` sends; NULL (errno set) on failure. */
struct vmm_frame_reader *vmm_frame_reader_new(enum vmm_frame_peer from);
/* Free the reader, disposing of every fd it still holds.  NULL is fine. */
void	 vmm_frame_reader_free(struct vmm_frame_reader *r);
/* One non-blocking recvmsg(): bytes read (> 0), 0 on EOF between frames,
 * -EAGAIN, -ENOBUFS (call _next() until it returns 0 first), or an error. */
ssize_t	 vmm_frame_reader_read(struct vmm_frame_reader *r, int sock);
/* Append all of buf, and the fds that came with it, as if one recvmsg()
 * had returned them (tests, fuzzing, other transports): 0, -ENOBUFS (drain
 * with _next() first), or a fault. */
int	 vmm_frame_reader_feed(struct vmm_frame_reader *r, const void *buf,
	     size_t len, int *fds, size_t nfds);
/* Next complete frame: 1 and *out, 0 if more bytes are needed, or a fault.
 * Faults are sticky: the peer is bad, drop the connection. */
int	 vmm_frame_reader_next(struct vmm_frame_reader *r,
	     struct vmm_frame_msg **out);

/* --- sending ------------------------------------------------------------ */

/* A queue toward `to`, holding at most max_bytes and max_fds (0: no bound). */
struct vmm_frame_outq *vmm_frame_outq_new(enum vmm_frame_peer to,
	     size_t max_bytes, size_t max_fds);
/* Free the queue, closing the fds of frames not yet sent.  NULL is fine. */
void	 vmm_frame_outq_free(struct vmm_frame_outq *q);
/* Validate, frame and queue a message with its fds: 0, -ENOBUFS over the
 * bounds, -ENOMEM, or a fault. */
int	 vmm_frame_outq_push(struct vmm_frame_outq *q,
	     const Vmm__Envelope *env, int *fds, size_t nfds);
/* Send what the socket takes without blocking: VMM_FRAME_DONE,
 * VMM_FRAME_AGAIN, or an error (the queue is then unusable). */
int	 vmm_frame_outq_flush(struct vmm_frame_outq *q, int sock);
/* Bytes still queued. */
size_t	 vmm_frame_outq_bytes(const struct vmm_frame_outq *q);

/* --- blocking helpers (clients, tools) ----------------------------------- */

/* Send one frame completely, waiting up to timeout_ms (-1: forever):
 * 0, -ETIMEDOUT, or as _push()/_flush(). */
int	 vmm_frame_send(int sock, enum vmm_frame_peer to,
	     const Vmm__Envelope *env, int *fds, size_t nfds, int timeout_ms);
/* Wait up to timeout_ms (-1: forever) for the next frame: 1 and *out,
 * 0 on EOF between frames, -ETIMEDOUT, or as _read()/_next(). */
int	 vmm_frame_recv(struct vmm_frame_reader *r, int sock,
	     struct vmm_frame_msg **out, int timeout_ms);

#endif
