/*
 * session.h — the client side of a conversation with vmmd, over the framing
 * of frame.h: where a daemon's socket is, connecting, Hello, request ids,
 * sending a request and waiting for the reply that names it, Error replies
 * and pushes.  Used by everything that talks to vmmd as a client (tools,
 * tests; the client library later).
 *
 * A session is a socket, a reader and a request-id counter.  Calls block,
 * each up to its own timeout (-1: forever).  While a call waits, frames that
 * are not its reply — pushes (Recall, Goodbye), Errors about other requests,
 * replies to requests sent earlier without waiting or whose wait timed out —
 * go to the push handler if one is set, or else to a queue that
 * vmm_sess_recv() drains (VMM_SESS_QUEUE_MAX deep; past that they are
 * dropped and counted).  Fds follow frame.h: a function that takes fds takes
 * them, whatever it returns.  Nothing here prints, keeps global state or
 * locks: one thread at a time per session.
 */
#ifndef VMM_SESSION_H
#define VMM_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

/* The daemon's default socket directory ($VMM_SOCKET_DIR overrides it,
 * read by the caller). */
#define VMM_SESS_SOCKET_DIR	"/run/vmmd"
/* A UUID as text, 8-4-4-4-12 lowercase hex, without its NUL. */
#define VMM_SESS_UUID_STRLEN	36
/* Frames kept for vmm_sess_recv() when no push handler is set. */
#define VMM_SESS_QUEUE_MAX	64

/*
 * Results below zero, besides -errno from the socket (-ETIMEDOUT when a
 * call's time ran out) and the frame faults of frame.h:
 * EREFUSED	an Error reply: vmm_sess_error() has the code and message
 * EGOODBYE	the daemon said Goodbye: vmm_sess_error() has its message
 * ECLOSED	the daemon closed the connection
 * EMISMATCH	a reply to the request of another type than the request's
 * EVERSION	HelloReply speaks another protocol version
 */
#define VMM_SESS_EREFUSED	(-EREMOTEIO)
#define VMM_SESS_EGOODBYE	(-ESHUTDOWN)
#define VMM_SESS_ECLOSED	(-ECONNRESET)
#define VMM_SESS_EMISMATCH	(-EBADE)
#define VMM_SESS_EVERSION	(-EPROTONOSUPPORT)

struct vmm_sess;

/* What ended the last call that failed with EREFUSED, EGOODBYE or
 * EMISMATCH.  Strings are as the peer sent them: escape before printing. */
struct vmm_sess_error {
	Vmm__ErrorCode		 code;		/* EREFUSED */
	Vmm__GoodbyeReason	 reason;	/* EGOODBYE */
	uint64_t		 request_id;	/* the Error's or mismatch's */
	const char		*got;		/* EMISMATCH: its type name */
	char			 message[VMM_PROTO_MAX_MESSAGE + 1];
};

/* Called with each frame that is not the awaited reply; m is freed when it
 * returns (take its fds to keep them).  It may send on the session. */
typedef void	vmm_sess_push_fn(struct vmm_frame_msg *m, void *arg);

/* --- where the daemon is -------------------------------------------------- */

/* The socket names, as vmmd binds them: "gpu-<uuid>.sock" and the index
 * alias "gpu<N>.sock".  0, or -ENAMETOOLONG. */
int	 vmm_sess_sockname_uuid(char *buf, size_t len,
	     const uint8_t uuid[VMM_PROTO_UUID_LEN]);
int	 vmm_sess_sockname_index(char *buf, size_t len, unsigned index);
/* The same under dir (trailing slashes ignored): 0, -EINVAL for an empty
 * dir, or -ENAMETOOLONG. */
int	 vmm_sess_path_uuid(char *buf, size_t len, const char *dir,
	     const uint8_t uuid[VMM_PROTO_UUID_LEN]);
int	 vmm_sess_path_index(char *buf, size_t len, const char *dir,
	     unsigned index);
/* A GPU UUID from 32 hex digits, any case, dashes optional at the 8-4-4-4-12
 * boundaries, "GPU-" (or, for a MIG instance, "MIG-") prefix optional: 0,
 * or -EINVAL. */
int	 vmm_sess_parse_uuid(const char *s, uint8_t uuid[VMM_PROTO_UUID_LEN]);
/* uuid as 8-4-4-4-12 lowercase hex into out (VMM_SESS_UUID_STRLEN + 1). */
void	 vmm_sess_format_uuid(char *out,
	     const uint8_t uuid[VMM_PROTO_UUID_LEN]);

/* --- opening and closing -------------------------------------------------- */

/* A blocking stream socket connected to path (any length, see unixsock.h),
 * connect() waiting at most timeout_ms for backlog room: the fd, or -errno
 * (-ENOENT, -ECONNREFUSED: nobody there; -EACCES; -EAGAIN: backlog full). */
int	 vmm_sess_dial(const char *path, int timeout_ms);
/* A session on the socket at path, not yet introduced: 0 and *out, or as
 * vmm_sess_dial(), or -ENOMEM. */
int	 vmm_sess_connect(struct vmm_sess **out, const char *path,
	     int timeout_ms);
/* The same for a device under dir, by index or by UUID. */
int	 vmm_sess_connect_index(struct vmm_sess **out, const char *dir,
	     unsigned index, int timeout_ms);
int	 vmm_sess_connect_uuid(struct vmm_sess **out, const char *dir,
	     const uint8_t uuid[VMM_PROTO_UUID_LEN], int timeout_ms);
/* A session on a connected socket, which it takes: 0 and *out, or -ENOMEM
 * (fd closed). */
int	 vmm_sess_from_fd(struct vmm_sess **out, int fd);
/* Close the socket without a word and free everything.  NULL is fine. */
void	 vmm_sess_close(struct vmm_sess *s);
/* Say Goodbye (CLIENT_EXIT, best effort within timeout_ms), then close. */
void	 vmm_sess_goodbye(struct vmm_sess *s, int timeout_ms);

/* Say Hello and wait for HelloReply.  h is the caller's; its request id,
 * protocol_version and pid are filled in where 0.  0, EVERSION (the reply
 * is kept), or as vmm_sess_call(). */
int	 vmm_sess_hello(struct vmm_sess *s, Vmm__Hello *h, int timeout_ms);
/* The HelloReply, once vmm_sess_hello() got one; else NULL. */
const Vmm__HelloReply *vmm_sess_hello_reply(const struct vmm_sess *s);

/* --- requests -------------------------------------------------------------- */

/* Where frames that are not an awaited reply go; NULL fn: the queue. */
void	 vmm_sess_set_push_handler(struct vmm_sess *s, vmm_sess_push_fn *fn,
	     void *arg);
/* A fresh request id (1, 2, ...). */
uint64_t vmm_sess_next_id(struct vmm_sess *s);
/* Send a message with its fds, giving it a fresh request id if it has one
 * at 0 (read it back with vmm_frame_request_id()): 0, or an error. */
int	 vmm_sess_send(struct vmm_sess *s, Vmm__Envelope *env, int *fds,
	     size_t nfds, int timeout_ms);
/* Wait for the reply to req, sent before: 0 and *reply (free it with
 * vmm_frame_msg_free()), or EREFUSED (an Error for it, or for no request),
 * EGOODBYE, EMISMATCH, ECLOSED, -ETIMEDOUT or a fault. */
int	 vmm_sess_wait(struct vmm_sess *s, const Vmm__Envelope *req,
	     int timeout_ms, struct vmm_frame_msg **reply);
/* vmm_sess_send() then vmm_sess_wait(), within one timeout. */
int	 vmm_sess_call(struct vmm_sess *s, Vmm__Envelope *env, int *fds,
	     size_t nfds, int timeout_ms, struct vmm_frame_msg **reply);
/* The next frame, queued ones first: 1 and *out, 0 on EOF, or an error. */
int	 vmm_sess_recv(struct vmm_sess *s, struct vmm_frame_msg **out,
	     int timeout_ms);
/* Without blocking, hand every frame that has arrived to the push handler
 * or the queue: 0, ECLOSED, or an error. */
int	 vmm_sess_poll(struct vmm_sess *s);

/* --- state ----------------------------------------------------------------- */

int	 vmm_sess_fd(const struct vmm_sess *s);
/* The path it was connected to ("" for vmm_sess_from_fd()). */
const char *vmm_sess_path(const struct vmm_sess *s);
const struct vmm_sess_error *vmm_sess_error(const struct vmm_sess *s);
/* Frames dropped because the queue was full. */
uint64_t vmm_sess_dropped(const struct vmm_sess *s);
/* A description of any result below zero of the functions above. */
const char *vmm_sess_strerror(int rc);
/* An ErrorCode's name without its prefix, lowercase ("quota"), or "?",
 * in buf; returns buf. */
const char *vmm_sess_error_name(Vmm__ErrorCode code, char *buf, size_t len);

#endif
