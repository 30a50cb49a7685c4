/*
 * session.c — the client side of a vmmd conversation: socket names,
 * connecting, Hello, request ids, and calls that wait for the reply naming
 * their request while pushes go to a handler or a queue.  See session.h.
 */
#include <sys/socket.h>
#include <sys/time.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "clock.h"
#include "session.h"
#include "unixsock.h"

struct vmm_sess {
	int			 fd;
	struct vmm_frame_reader	*rd;
	uint64_t		 next_id;
	struct vmm_frame_msg	*hello;		/* the HelloReply, or NULL */
	vmm_sess_push_fn	*push;
	void			*push_arg;
	/* Frames for vmm_sess_recv(): a ring of qlen from qhead. */
	struct vmm_frame_msg	*queue[VMM_SESS_QUEUE_MAX];
	size_t			 qhead;
	size_t			 qlen;
	uint64_t		 dropped;
	bool			 goodbye;	/* the daemon said Goodbye */
	struct vmm_sess_error	 bye;		/* its reason and message */
	struct vmm_sess_error	 err;
	char			 path[PATH_MAX];
};

/* --- where the daemon is ---------------------------------------------------- */

void
vmm_sess_format_uuid(char *out, const uint8_t uuid[VMM_PROTO_UUID_LEN])
{
	static const char	hex[] = "0123456789abcdef";
	size_t			i, o = 0;

	for (i = 0; i < VMM_PROTO_UUID_LEN; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[uuid[i] >> 4];
		out[o++] = hex[uuid[i] & 0xf];
	}
	out[o] = '\0';
}

int
vmm_sess_parse_uuid(const char *s, uint8_t uuid[VMM_PROTO_UUID_LEN])
{
	size_t	n = 0;
	bool	dash = false, boundary;
	int	v;

	if (strncasecmp(s, "GPU-", 4) == 0 || strncasecmp(s, "MIG-", 4) == 0)
		s += 4;
	for (; *s != '\0'; s++) {
		boundary = n == 8 || n == 12 || n == 16 || n == 20;
		if (*s == '-') {
			if (!boundary || dash)
				return -EINVAL;
			dash = true;
			continue;
		}
		if (!isxdigit((unsigned char)*s) || n == 32)
			return -EINVAL;
		v = isdigit((unsigned char)*s) ? *s - '0' :
		    tolower((unsigned char)*s) - 'a' + 10;
		if (n % 2 == 0)
			uuid[n / 2] = (uint8_t)(v << 4);
		else
			uuid[n / 2] |= (uint8_t)v;
		n++;
		dash = false;
	}
	return n == 32 && !dash ? 0 : -EINVAL;
}

int
vmm_sess_sockname_uuid(char *buf, size_t len,
    const uint8_t uuid[VMM_PROTO_UUID_LEN])
{
	char	text[VMM_SESS_UUID_STRLEN + 1];
	int	n;

	vmm_sess_format_uuid(text, uuid);
	n = snprintf(buf, len, "gpu-%s.sock", text);
	return n >= 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

int
vmm_sess_sockname_index(char *buf, size_t len, unsigned index)
{
	int	n;

	n = snprintf(buf, len, "gpu%u.sock", index);
	return n >= 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

/* dir/name into buf, trailing slashes of dir dropped. */
static int
sess_join(char *buf, size_t len, const char *dir, const char *name)
{
	size_t	dlen;
	int	n;

	if (dir == NULL || (dlen = strlen(dir)) == 0)
		return -EINVAL;
	while (dlen > 1 && dir[dlen - 1] == '/')
		dlen--;
	if (dlen > INT_MAX)
		return -ENAMETOOLONG;
	n = snprintf(buf, len, "%.*s/%s", (int)dlen, dir, name);
	return n >= 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

int
vmm_sess_path_uuid(char *buf, size_t len, const char *dir,
    const uint8_t uuid[VMM_PROTO_UUID_LEN])
{
	char	name[64];
	int	rc;

	if ((rc = vmm_sess_sockname_uuid(name, sizeof(name), uuid)) != 0)
		return rc;
	return sess_join(buf, len, dir, name);
}

int
vmm_sess_path_index(char *buf, size_t len, const char *dir, unsigned index)
{
	char	name[32];
	int	rc;

	if ((rc = vmm_sess_sockname_index(name, sizeof(name), index)) != 0)
		return rc;
	return sess_join(buf, len, dir, name);
}

/* --- opening and closing ---------------------------------------------------- */

int
vmm_sess_dial(const char *path, int timeout_ms)
{
	struct timeval	tv;
	int		fd, err;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	/* A Unix-domain connect() waits for backlog room up to SO_SNDTIMEO
	 * (0: forever); the frame helpers keep their own time after. */
	if (timeout_ms >= 0) {
		tv.tv_sec = timeout_ms / 1000;
		tv.tv_usec = (timeout_ms % 1000) * 1000 + (timeout_ms == 0);
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	if (vmm_unix_connect(fd, path) != 0) {
		err = errno;
		close(fd);
		return -err;
	}
	if (timeout_ms >= 0) {
		memset(&tv, 0, sizeof(tv));
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	return fd;
}

int
vmm_sess_from_fd(struct vmm_sess **out, int fd)
{
	struct vmm_sess	*s;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		goto fail;
	if ((s->rd = vmm_frame_reader_new(VMM_FRAME_PEER_DAEMON)) == NULL)
		goto fail;
	s->fd = fd;
	s->next_id = 1;
	*out = s;
	return 0;

fail:
	free(s);
	close(fd);
	return -ENOMEM;
}

int
vmm_sess_connect(struct vmm_sess **out, const char *path, int timeout_ms)
{
	int	fd, rc;

	*out = NULL;
	if (strlen(path) >= sizeof((*out)->path))
		return -ENAMETOOLONG;
	if ((fd = vmm_sess_dial(path, timeout_ms)) < 0)
		return fd;
	if ((rc = vmm_sess_from_fd(out, fd)) != 0)
		return rc;
	strcpy((*out)->path, path);
	return 0;
}

int
vmm_sess_connect_index(struct vmm_sess **out, const char *dir,
    unsigned index, int timeout_ms)
{
	char	path[PATH_MAX];
	int	rc;

	*out = NULL;
	if ((rc = vmm_sess_path_index(path, sizeof(path), dir, index)) != 0)
		return rc;
	return vmm_sess_connect(out, path, timeout_ms);
}

int
vmm_sess_connect_uuid(struct vmm_sess **out, const char *dir,
    const uint8_t uuid[VMM_PROTO_UUID_LEN], int timeout_ms)
{
	char	path[PATH_MAX];
	int	rc;

	*out = NULL;
	if ((rc = vmm_sess_path_uuid(path, sizeof(path), dir, uuid)) != 0)
		return rc;
	return vmm_sess_connect(out, path, timeout_ms);
}

void
vmm_sess_close(struct vmm_sess *s)
{
	if (s == NULL)
		return;
	while (s->qlen > 0) {
		vmm_frame_msg_free(s->queue[s->qhead]);
		s->qhead = (s->qhead + 1) % VMM_SESS_QUEUE_MAX;
		s->qlen--;
	}
	vmm_frame_msg_free(s->hello);
	vmm_frame_reader_free(s->rd);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

void
vmm_sess_goodbye(struct vmm_sess *s, int timeout_ms)
{
	Vmm__Goodbye	bye = VMM__GOODBYE__INIT;
	Vmm__Envelope	env = vmm_frame_env_goodbye(&bye);

	if (s == NULL)
		return;
	bye.reason = VMM__GOODBYE_REASON__GOODBYE_REASON_CLIENT_EXIT;
	(void)vmm_sess_send(s, &env, NULL, 0, timeout_ms);
	vmm_sess_close(s);
}

/* --- requests ---------------------------------------------------------------- */

static int64_t
sess_deadline(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : (int64_t)vmm_now_ms() + timeout_ms;
}

/* Milliseconds left until deadline (-1: none), at least 0. */
static int
sess_left(int64_t deadline)
{
	int64_t	left;

	if (deadline < 0)
		return -1;
	left = deadline - (int64_t)vmm_now_ms();
	if (left < 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

static void
sess_copy_text(char *dst, const char *src)
{
	snprintf(dst, VMM_PROTO_MAX_MESSAGE + 1, "%s", src != NULL ? src : "");
}

/* Remember a Goodbye: nothing more will be answered. */
static void
sess_note(struct vmm_sess *s, const Vmm__Envelope *e)
{
	if (e->msg_case != VMM__ENVELOPE__MSG_GOODBYE || s->goodbye)
		return;
	s->goodbye = true;
	s->bye.reason = e->goodbye->reason;
	sess_copy_text(s->bye.message, e->goodbye->message);
}

/* A frame nobody waits for: to the handler, or queued. */
static void
sess_deliver(struct vmm_sess *s, struct vmm_frame_msg *m)
{
	sess_note(s, vmm_frame_msg_env(m));
	if (s->push != NULL) {
		s->push(m, s->push_arg);
		vmm_frame_msg_free(m);
	} else if (s->qlen == VMM_SESS_QUEUE_MAX) {
		vmm_frame_msg_free(m);
		s->dropped++;
	} else {
		s->queue[(s->qhead + s->qlen) % VMM_SESS_QUEUE_MAX] = m;
		s->qlen++;
	}
}

/* Whether c answers some request (Recall, say, does not: its id is its
 * own, and may equal a request's). */
static bool
sess_is_reply(Vmm__Envelope__MsgCase c)
{
	const struct vmm_frame_type	*t;
	unsigned			 i;

	for (i = 1; i < 64; i++) {
		if ((t = vmm_frame_type((Vmm__Envelope__MsgCase)i)) != NULL &&
		    t->reply == c)
			return true;
	}
	return false;
}

/*
 * What frame e means to a wait for the request with id, answered by want:
 * 1 it is the reply, 0 not about it, or EREFUSED / EMISMATCH (recorded).
 */
static int
sess_match(struct vmm_sess *s, const Vmm__Envelope *e, uint64_t id,
    Vmm__Envelope__MsgCase want)
{
	uint64_t	rid = vmm_frame_request_id(e);

	if (e->msg_case == want && rid == id)
		return 1;
	if (e->msg_case == VMM__ENVELOPE__MSG_ERROR && (rid == id || rid == 0)) {
		s->err.code = e->error->code;
		s->err.request_id = rid;
		sess_copy_text(s->err.message, e->error->message);
		return VMM_SESS_EREFUSED;
	}
	if (rid == id && sess_is_reply(e->msg_case)) {
		s->err.request_id = rid;
		s->err.got = vmm_frame_type_name(e);
		s->err.message[0] = '\0';
		return VMM_SESS_EMISMATCH;
	}
	return 0;
}

void
vmm_sess_set_push_handler(struct vmm_sess *s, vmm_sess_push_fn *fn,
    void *arg)
{
	s->push = fn;
	s->push_arg = arg;
}

uint64_t
vmm_sess_next_id(struct vmm_sess *s)
{
	return s->next_id++;
}

int
vmm_sess_send(struct vmm_sess *s, Vmm__Envelope *env, int *fds, size_t nfds,
    int timeout_ms)
{
	const struct vmm_frame_type	*t;

	t = env != NULL ? vmm_frame_type(env->msg_case) : NULL;
	if (t != NULL && t->rid_offset != SIZE_MAX &&
	    vmm_frame_request_id(env) == 0)
		(void)vmm_frame_set_request_id(env, vmm_sess_next_id(s));
	return vmm_frame_send(s->fd, VMM_FRAME_PEER_DAEMON, env, fds, nfds,
	    timeout_ms);
}

int
vmm_sess_wait(struct vmm_sess *s, const Vmm__Envelope *req, int timeout_ms,
    struct vmm_frame_msg **reply)
{
	const struct vmm_frame_type	*t;
	struct vmm_frame_msg		*m;
	int64_t				 deadline = sess_deadline(timeout_ms);
	uint64_t			 id;
	size_t				 i, k;
	int				 rc;

	*reply = NULL;
	memset(&s->err, 0, sizeof(s->err));
	if (req == NULL || (t = vmm_frame_type(req->msg_case)) == NULL ||
	    t->reply == VMM__ENVELOPE__MSG__NOT_SET)
		return -EINVAL;
	id = vmm_frame_request_id(req);

	/* Its answer may have come while another call waited. */
	for (i = 0; i < s->qlen; i++) {
		k = (s->qhead + i) % VMM_SESS_QUEUE_MAX;
		m = s->queue[k];
		if ((rc = sess_match(s, vmm_frame_msg_env(m), id,
		    t->reply)) == 0)
			continue;
		for (; i + 1 < s->qlen; i++)
			s->queue[(s->qhead + i) % VMM_SESS_QUEUE_MAX] =
			    s->queue[(s->qhead + i + 1) % VMM_SESS_QUEUE_MAX];
		s->qlen--;
		if (rc == 1) {
			*reply = m;
			return 0;
		}
		vmm_frame_msg_free(m);
		return rc;
	}

	for (;;) {
		if (s->goodbye) {
			s->err = s->bye;
			return VMM_SESS_EGOODBYE;
		}
		rc = vmm_frame_recv(s->rd, s->fd, &m, sess_left(deadline));
		if (rc == 0)
			return VMM_SESS_ECLOSED;
		if (rc < 0)
			return rc;
		if ((rc = sess_match(s, vmm_frame_msg_env(m), id,
		    t->reply)) == 1) {
			*reply = m;
			return 0;
		}
		if (rc < 0) {
			vmm_frame_msg_free(m);
			return rc;
		}
		sess_deliver(s, m);
	}
}

int
vmm_sess_call(struct vmm_sess *s, Vmm__Envelope *env, int *fds, size_t nfds,
    int timeout_ms, struct vmm_frame_msg **reply)
{
	int64_t	deadline = sess_deadline(timeout_ms);
	int	rc;

	*reply = NULL;
	if ((rc = vmm_sess_send(s, env, fds, nfds, timeout_ms)) != 0)
		return rc;
	return vmm_sess_wait(s, env, sess_left(deadline), reply);
}

int
vmm_sess_recv(struct vmm_sess *s, struct vmm_frame_msg **out, int timeout_ms)
{
	int	rc;

	if (s->qlen > 0) {
		*out = s->queue[s->qhead];
		s->qhead = (s->qhead + 1) % VMM_SESS_QUEUE_MAX;
		s->qlen--;
		return 1;
	}
	if ((rc = vmm_frame_recv(s->rd, s->fd, out, timeout_ms)) == 1)
		sess_note(s, vmm_frame_msg_env(*out));
	return rc;
}

int
vmm_sess_poll(struct vmm_sess *s)
{
	struct vmm_frame_msg	*m;
	ssize_t			 n;
	int			 rc;

	for (;;) {
		while ((rc = vmm_frame_reader_next(s->rd, &m)) == 1)
			sess_deliver(s, m);
		if (rc < 0)
			return rc;
		n = vmm_frame_reader_read(s->rd, s->fd);
		if (n > 0 || n == -ENOBUFS)
			continue;
		if (n == -EAGAIN)
			return 0;
		return n == 0 ? VMM_SESS_ECLOSED : (int)n;
	}
}

int
vmm_sess_hello(struct vmm_sess *s, Vmm__Hello *h, int timeout_ms)
{
	Vmm__Envelope		 env = vmm_frame_env_hello(h);
	struct vmm_frame_msg	*m;
	int			 rc;

	if (h->protocol_version == 0)
		h->protocol_version = VMM_PROTOCOL_VERSION;
	if (h->pid == 0)
		h->pid = (uint32_t)getpid();
	if ((rc = vmm_sess_call(s, &env, NULL, 0, timeout_ms, &m)) != 0)
		return rc;
	vmm_frame_msg_free(s->hello);
	s->hello = m;
	/* vmmd answers with the version the client said (it may say an
	 * older one to an older daemon). */
	if (vmm_frame_msg_env(m)->hello_reply->protocol_version !=
	    h->protocol_version)
		return VMM_SESS_EVERSION;
	return 0;
}

const Vmm__HelloReply *
vmm_sess_hello_reply(const struct vmm_sess *s)
{
	return s->hello != NULL ? vmm_frame_msg_env(s->hello)->hello_reply :
	    NULL;
}

/* --- state ------------------------------------------------------------------- */

int
vmm_sess_fd(const struct vmm_sess *s)
{
	return s->fd;
}

const char *
vmm_sess_path(const struct vmm_sess *s)
{
	return s->path;
}

const struct vmm_sess_error *
vmm_sess_error(const struct vmm_sess *s)
{
	return &s->err;
}

uint64_t
vmm_sess_dropped(const struct vmm_sess *s)
{
	return s->dropped;
}

const char *
vmm_sess_strerror(int rc)
{
	switch (rc) {
	case VMM_SESS_EREFUSED:
		return "the daemon refused the request";
	case VMM_SESS_EGOODBYE:
		return "the daemon said goodbye";
	case VMM_SESS_ECLOSED:
		return "the daemon closed the connection";
	case VMM_SESS_EMISMATCH:
		return "a reply of the wrong type";
	case VMM_SESS_EVERSION:
		return "the daemon speaks another protocol version";
	default:
		return vmm_frame_strerror(rc);
	}
}

const char *
vmm_sess_error_name(Vmm__ErrorCode code, char *buf, size_t len)
{
	static const char		 prefix[] = "ERROR_CODE_";
	const ProtobufCEnumValue	*v;
	size_t				 i;

	v = protobuf_c_enum_descriptor_get_value(&vmm__error_code__descriptor,
	    (int)code);
	snprintf(buf, len, "%s", v != NULL && strncmp(v->name, prefix,
	    sizeof(prefix) - 1) == 0 ? v->name + sizeof(prefix) - 1 : "?");
	for (i = 0; buf[i] != '\0'; i++)
		buf[i] = (char)tolower((unsigned char)buf[i]);
	return buf;
}
