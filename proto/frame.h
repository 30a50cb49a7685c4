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
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmm.pb-c.h"

/* The version both sides send in Hello/HelloReply; see vmm.proto for when
 * to bump it. */
#define VMM_PROTOCOL_VERSION \
	VMM__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT

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
/* How many fds the message must carry (Grant: one per chunk; Adopt: one
 * per size; others: 0). */
size_t	 vmm_frame_expected_fds(const Vmm__Envelope *env);
/* The request id a message carries or echoes (Recall: its recall id), or 0. */
uint64_t vmm_frame_request_id(const Vmm__Envelope *env);
/* The message type's field name ("hello", "grant", ...), for logs. */
const char *vmm_frame_type_name(const Vmm__Envelope *env);
/* A description of any value these functions return below zero. */
const char *vmm_frame_strerror(int err);

/* The decoded envelope; valid until vmm_frame_msg_free(). */
const Vmm__Envelope *vmm_frame_msg_env(const struct vmm_frame_msg *m);
/* Number of fds that came with the frame (taken ones included). */
size_t	 vmm_frame_msg_nfds(const struct vmm_frame_msg *m);
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
