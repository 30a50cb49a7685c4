/*
 * Framing over real Unix stream sockets: round trips both ways, the blocking
 * helpers, partial writes on a non-blocking socket with a tiny send buffer,
 * partial reads one byte at a time, fds across processes, and every bad
 * input a peer can send (wrong fd counts, too many fds, fds in mid-frame,
 * oversized lengths, garbage, truncation) without leaking an fd.
 */
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "testlib.h"

static unsigned char	stream_buf[VMM_FRAME_HDR + VMM_FRAME_MAX];

/* Send bytes with fds attached in one sendmsg(), all of it. */
static void
raw_send(int sock, const void *buf, size_t len, const int *fds, size_t nfds)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * 253)];
	}		 ctl;
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*c;

	CHECK(nfds <= 253);
	memset(&mh, 0, sizeof(mh));
	memset(&ctl, 0, sizeof(ctl));
	iov.iov_base = (void *)(uintptr_t)buf;
	iov.iov_len = len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (nfds > 0) {
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	CHECK(sendmsg(sock, &mh, MSG_NOSIGNAL) == (ssize_t)len);
}

/* Receive up to len bytes and any fds into fds[]; bytes received. */
static size_t
raw_recv(int sock, void *buf, size_t len, int *fds, size_t *nfds)
{
	union {
		struct cmsghdr	hdr;
		char buf[CMSG_SPACE(sizeof(int) * VMM_FRAME_MAX_FDS)];
	}		 ctl;
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*c;
	ssize_t		 n;

	memset(&mh, 0, sizeof(mh));
	iov.iov_base = buf;
	iov.iov_len = len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl.buf;
	mh.msg_controllen = sizeof(ctl.buf);
	*nfds = 0;
	n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0 && errno == EAGAIN)
		return 0;
	CHECK(n > 0 && (mh.msg_flags & MSG_CTRUNC) == 0);
	for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		CHECK(c->cmsg_type == SCM_RIGHTS && *nfds == 0);
		*nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		memcpy(fds, CMSG_DATA(c), *nfds * sizeof(int));
	}
	return (size_t)n;
}

static void
test_roundtrip_socket(void)
{
	struct vmm_frame_msg	*msgs[T_NSAMPLES], *m;
	struct vmm_frame_reader	*r;
	struct vmm_frame_outq	*q;
	struct t_sample		 s;
	size_t			 i, got;
	int			 sv[2], fds[T_GRANT_CHUNKS];
	ssize_t			 n;
	int			 rc;

	/* daemon → client through an output queue */
	t_socketpair(sv);
	CHECK((q = vmm_frame_outq_new(VMM_FRAME_PEER_CLIENT, 0, 0)) != NULL);
	for (i = 0; i < T_NSAMPLES; i++) {
		t_sample(i, &s);
		if (s.from != VMM_FRAME_PEER_DAEMON || i == T_STREAM_SKIP)
			continue;
		t_memfds(fds, s.nfds, 11);
		CHECK(vmm_frame_outq_push(q, &s.env, fds, s.nfds) == 0);
	}
	CHECK(vmm_frame_outq_bytes(q) > 0);
	CHECK(vmm_frame_outq_flush(q, sv[0]) == VMM_FRAME_DONE);
	CHECK(vmm_frame_outq_bytes(q) == 0);
	vmm_frame_outq_free(q);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_DAEMON)) != NULL);
	got = 0;
	while ((n = vmm_frame_reader_read(r, sv[1])) > 0) {
		while ((rc = vmm_frame_reader_next(r, &m)) == 1)
			msgs[got++] = m;
		CHECK(rc == 0);
	}
	CHECK(n == -EAGAIN);
	t_check_in_order(msgs, got, VMM_FRAME_PEER_DAEMON, 11);
	vmm_frame_reader_free(r);

	/* client → daemon with the blocking helpers */
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) != NULL);
	got = 0;
	for (i = 0; i < T_NSAMPLES; i++) {
		t_sample(i, &s);
		if (s.from != VMM_FRAME_PEER_CLIENT)
			continue;
		t_memfds(fds, s.nfds, 12);
		CHECK(vmm_frame_send(sv[1], VMM_FRAME_PEER_DAEMON, &s.env,
		    fds, s.nfds, 1000) == 0);
		CHECK(vmm_frame_recv(r, sv[0], &msgs[got++], 1000) == 1);
	}
	t_check_in_order(msgs, got, VMM_FRAME_PEER_CLIENT, 12);
	CHECK(vmm_frame_recv(r, sv[0], &m, 50) == -ETIMEDOUT);
	close(sv[1]);
	CHECK(vmm_frame_recv(r, sv[0], &m, 1000) == 0);	/* clean EOF */
	vmm_frame_reader_free(r);
	close(sv[0]);
}

/* A small deterministic PRNG for sizes. */
static uint32_t
lcg(uint32_t *st)
{
	*st = *st * 1103515245u + 12345u;
	return *st >> 8;
}

#define PW_FRAMES	80
#define PW_SESSIONS	200

/* Build frame k of the partial-write sequence into s (with fds if any).
 * Some Grants carry an unknown field of several KiB (a newer daemon's, say),
 * so that they span several socket buffers and get sent in pieces. */
static void
pw_frame(size_t k, struct t_sample *s, Vmm__SessionStats **sessp,
    Vmm__Chunk *chunks, Vmm__Chunk **chunkp, int *fds, size_t *nfds)
{
	static unsigned char pad[PW_FRAMES / 8][2 + 12000];
	static ProtobufCMessageUnknownField	uf[PW_FRAMES];
	size_t					j, n, plen;

	*nfds = 0;
	switch (k % 4) {
	case 0:			/* ~12 KB: several socket buffers */
		t_sample(11, s);
		for (j = 0; j < PW_SESSIONS; j++)
			sessp[j] = &s->sessions[j % 2];
		s->clients_reply.request_id = k + 1;
		s->clients_reply.n_sessions = PW_SESSIONS;
		s->clients_reply.sessions = sessp;
		s->clients_reply.sessions_total = PW_SESSIONS;
		break;
	case 1:
	case 3:				/* a Grant, 1..8 chunks, or 64 */
		t_sample(3, s);
		n = k == 41 ? VMM_PROTO_MAX_CHUNKS : 1 + k % 8;
		for (j = 0; j < n; j++) {
			vmm__chunk__init(&chunks[j]);
			chunks[j].id = k * 100 + j + 1;
			chunks[j].size = 2u << 20;
			chunkp[j] = &chunks[j];
		}
		s->grant.request_id = k + 1;
		s->grant.n_chunks = n;
		s->grant.chunks = chunkp;
		if (k % 8 == 3) {
			/* protobuf-c keeps the length prefix in data */
			plen = 3000 + k * 1311 % 9000;
			uf[k].tag = 99;
			uf[k].wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
			uf[k].data = pad[k / 8];
			uf[k].data[0] = (uint8_t)(plen | 0x80);
			uf[k].data[1] = (uint8_t)(plen >> 7);
			uf[k].len = 2 + plen;
			s->grant.base.n_unknown_fields = 1;
			s->grant.base.unknown_fields = &uf[k];
		}
		if (fds != NULL)
			t_memfds(fds, n, (unsigned)k);
		*nfds = n;
		break;
	default:
		t_sample(7, s);
		s->ack.request_id = k + 1;
		break;
	}
}

/* Check received message k of the partial-write sequence; frees it. */
static void
pw_check(size_t k, struct vmm_frame_msg *m)
{
	const Vmm__Envelope	*e = vmm_frame_msg_env(m);
	size_t			 j;
	int			 fd;

	CHECK(vmm_frame_request_id(e) == k + 1);
	switch (k % 4) {
	case 0:
		CHECK(e->msg_case == VMM__ENVELOPE__MSG_CLIENTS_REPLY);
		CHECK(e->clients_reply->n_sessions == PW_SESSIONS);
		break;
	case 1:
	case 3:
		CHECK(e->msg_case == VMM__ENVELOPE__MSG_GRANT);
		CHECK(vmm_frame_msg_nfds(m) == e->grant->n_chunks);
		for (j = 0; j < e->grant->n_chunks; j++) {
			CHECK(e->grant->chunks[j]->id == k * 100 + j + 1);
			fd = vmm_frame_msg_take_fd(m, j);
			CHECK(t_memfd_is(fd, (unsigned)k, j));
			close(fd);
		}
		break;
	default:
		CHECK(e->msg_case == VMM__ENVELOPE__MSG_ACK);
		break;
	}
	vmm_frame_msg_free(m);
}

/*
 * A non-blocking writer with the smallest send buffer the kernel allows and a
 * reader that takes small random bites (mode 0: raw recvmsg + feed) or reads
 * greedily (mode 1): frames, including fd-carrying ones, are split across
 * many sendmsg() calls, and every fd must still land on its own Grant.
 */
static void
test_partial_writes(int mode)
{
	static Vmm__SessionStats	*sessp[PW_SESSIONS];
	static unsigned char		 bite[512];
	Vmm__Chunk			 chunks[VMM_PROTO_MAX_CHUNKS];
	Vmm__Chunk			*chunkp[VMM_PROTO_MAX_CHUNKS];
	struct vmm_frame_reader		*r;
	struct vmm_frame_outq		*q;
	struct vmm_frame_msg		*m;
	struct t_sample			 s;
	size_t				 k, got = 0, nfds, agains = 0, n;
	uint32_t			 st = 12345 + (uint32_t)mode;
	int				 sv[2], one = 1, rc;
	int				 base = t_count_fds();
	int				 fds[VMM_FRAME_MAX_FDS];
	ssize_t				 fed;

	t_socketpair(sv);
	CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one)) == 0);
	CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
	CHECK((q = vmm_frame_outq_new(VMM_FRAME_PEER_CLIENT, 0, 0)) != NULL);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_DAEMON)) != NULL);
	for (k = 0; k < PW_FRAMES; k++) {
		pw_frame(k, &s, sessp, chunks, chunkp, fds, &nfds);
		CHECK(vmm_frame_outq_push(q, &s.env, fds, nfds) == 0);
	}
	while (got < PW_FRAMES) {
		rc = vmm_frame_outq_flush(q, sv[0]);
		CHECK(rc == VMM_FRAME_DONE || rc == VMM_FRAME_AGAIN);
		if (rc == VMM_FRAME_AGAIN)
			agains++;
		if (mode == 0) {
			n = raw_recv(sv[1], bite, 1 + lcg(&st) % sizeof(bite),
			    fds, &nfds);
			CHECK(vmm_frame_reader_feed(r, bite, n, fds, nfds) ==
			    0);
			while ((rc = vmm_frame_reader_next(r, &m)) == 1)
				pw_check(got++, m);
			CHECK(rc == 0);
		} else {
			fed = vmm_frame_reader_read(r, sv[1]);
			CHECK(fed > 0 || fed == -EAGAIN);
			while ((rc = vmm_frame_reader_next(r, &m)) == 1)
				pw_check(got++, m);
			CHECK(rc == 0);
		}
	}
	CHECK(agains > 10);
	CHECK(vmm_frame_outq_flush(q, sv[0]) == VMM_FRAME_DONE);
	CHECK(vmm_frame_outq_bytes(q) == 0);
	vmm_frame_outq_free(q);
	vmm_frame_reader_free(r);
	close(sv[0]);
	close(sv[1]);
	CHECK(t_count_fds() == base);
}

/* One byte per sendmsg() and one recvmsg() per byte, fds on the first byte
 * of the Grant: real partial reads. */
static void
test_bytewise_socket(void)
{
	static unsigned char	 stream[8192];
	struct vmm_frame_msg	*msgs[T_NSAMPLES], *m;
	struct vmm_frame_reader	*r;
	size_t			 n, i, grant_at, count, got = 0;
	int			 sv[2], fds[T_GRANT_CHUNKS], rc;

	t_socketpair(sv);
	n = t_stream_of(VMM_FRAME_PEER_DAEMON, stream, &grant_at, &count);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_DAEMON)) != NULL);
	for (i = 0; i < n; i++) {
		if (i == grant_at) {
			t_memfds(fds, T_GRANT_CHUNKS, 13);
			raw_send(sv[0], stream + i, 1, fds, T_GRANT_CHUNKS);
			close(fds[0]);
			close(fds[1]);
			close(fds[2]);
		} else
			raw_send(sv[0], stream + i, 1, NULL, 0);
		CHECK(vmm_frame_reader_read(r, sv[1]) == 1);
		while ((rc = vmm_frame_reader_next(r, &m)) == 1)
			msgs[got++] = m;
		CHECK(rc == 0);
	}
	CHECK(got == count);
	t_check_in_order(msgs, got, VMM_FRAME_PEER_DAEMON, 13);
	vmm_frame_reader_free(r);
	close(sv[0]);
	close(sv[1]);
}

/* A Grant's fds sent by another process are the same files here. */
static void
test_fds_cross_process(void)
{
	struct vmm_frame_reader	*r;
	struct vmm_frame_msg	*m;
	struct t_sample		 s;
	pid_t			 pid;
	int			 sv[2], fds[T_GRANT_CHUNKS], keep, status;
	int			 fd;
	char			*p, c;
	size_t			 j;

	t_socketpair(sv);
	CHECK((pid = fork()) >= 0);
	if (pid == 0) {
		close(sv[0]);
		t_sample(3, &s);
		t_memfds(fds, T_GRANT_CHUNKS, 21);
		CHECK((keep = dup(fds[0])) >= 0);
		CHECK(vmm_frame_send(sv[1], VMM_FRAME_PEER_CLIENT, &s.env, fds,
		    T_GRANT_CHUNKS, 5000) == 0);
		CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) !=
		    NULL);
		CHECK(vmm_frame_recv(r, sv[1], &m, 5000) == 1);
		CHECK(vmm_frame_msg_env(m)->msg_case ==
		    VMM__ENVELOPE__MSG_RELEASE);
		vmm_frame_msg_free(m);
		vmm_frame_reader_free(r);
		CHECK(pread(keep, &c, 1, 100) == 1 && c == 'P');
		_exit(0);
	}
	close(sv[1]);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_DAEMON)) != NULL);
	CHECK(vmm_frame_recv(r, sv[0], &m, 5000) == 1);
	CHECK(vmm_frame_msg_nfds(m) == T_GRANT_CHUNKS);
	for (j = 0; j < T_GRANT_CHUNKS; j++) {
		fd = vmm_frame_msg_take_fd(m, j);
		CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
		CHECK(t_memfd_is(fd, 21, j));
		if (j == 0) {
			CHECK(ftruncate(fd, 4096) == 0);
			p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED,
			    fd, 0);
			CHECK(p != MAP_FAILED);
			CHECK(memcmp(p, "21:0", 4) == 0);
			p[100] = 'P';
			munmap(p, 4096);
		}
		close(fd);
	}
	vmm_frame_msg_free(m);
	t_sample(4, &s);
	CHECK(vmm_frame_send(sv[0], VMM_FRAME_PEER_DAEMON, &s.env, NULL, 0,
	    5000) == 0);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	vmm_frame_reader_free(r);
	close(sv[0]);
}

/* Send frame bytes with nfds fds to a fresh reader for `from`; read once and
 * take one frame; the first fault or 0. */
static int
bad_fds_case(enum vmm_frame_peer from, const unsigned char *frame,
    size_t len, size_t nfds)
{
	struct vmm_frame_reader	*r;
	struct vmm_frame_msg	*m = NULL;
	int			 sv[2], fds[253], rc;
	ssize_t			 n;

	CHECK(nfds <= 253);
	t_socketpair(sv);
	t_nullfds(fds, nfds);
	raw_send(sv[0], frame, len, fds, nfds);
	for (size_t i = 0; i < nfds; i++)
		close(fds[i]);
	CHECK((r = vmm_frame_reader_new(from)) != NULL);
	if ((n = vmm_frame_reader_read(r, sv[1])) < 0)
		rc = (int)n;
	else {
		CHECK((size_t)n == len);
		rc = vmm_frame_reader_next(r, &m);
		if (rc == 1) {
			vmm_frame_msg_free(m);
			rc = 0;
		}
	}
	vmm_frame_reader_free(r);
	close(sv[0]);
	close(sv[1]);
	return rc;
}

static void
test_bad_fds(void)
{
	static unsigned char	 grant[256], hello[256];
	struct vmm_frame_reader	*r;
	struct vmm_frame_msg	*m;
	struct t_sample		 s;
	size_t			 glen, hlen;
	int			 base = t_count_fds(), sv[2], fds[3];

	t_sample(3, &s);
	glen = t_frame(&s.env, grant);
	t_sample(0, &s);
	hlen = t_frame(&s.env, hello);

	CHECK(bad_fds_case(VMM_FRAME_PEER_DAEMON, grant, glen, 3) == 0);
	CHECK(bad_fds_case(VMM_FRAME_PEER_DAEMON, grant, glen, 4) ==
	    VMM_FRAME_EFDCOUNT);
	CHECK(bad_fds_case(VMM_FRAME_PEER_DAEMON, grant, glen, 2) ==
	    VMM_FRAME_EFDCOUNT);
	CHECK(bad_fds_case(VMM_FRAME_PEER_DAEMON, grant, glen, 0) ==
	    VMM_FRAME_EFDCOUNT);
	CHECK(bad_fds_case(VMM_FRAME_PEER_DAEMON, grant, glen,
	    VMM_FRAME_MAX_FDS + 1) == VMM_FRAME_ETOOMANYFDS);
	CHECK(bad_fds_case(VMM_FRAME_PEER_DAEMON, grant, glen, 80) ==
	    VMM_FRAME_ETOOMANYFDS);
	CHECK(bad_fds_case(VMM_FRAME_PEER_CLIENT, hello, hlen, 1) ==
	    VMM_FRAME_EFDCOUNT);
	CHECK(bad_fds_case(VMM_FRAME_PEER_CLIENT, hello, hlen, 0) == 0);
	CHECK(t_count_fds() == base);

	/* Fds on a byte in the middle of a frame. */
	t_socketpair(sv);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_DAEMON)) != NULL);
	raw_send(sv[0], grant, 10, NULL, 0);
	CHECK(vmm_frame_reader_read(r, sv[1]) == 10);
	t_nullfds(fds, 3);
	raw_send(sv[0], grant + 10, glen - 10, fds, 3);
	close(fds[0]);
	close(fds[1]);
	close(fds[2]);
	CHECK(vmm_frame_reader_read(r, sv[1]) == VMM_FRAME_EINVALID);
	CHECK(vmm_frame_reader_next(r, &m) == VMM_FRAME_EINVALID);
	vmm_frame_reader_free(r);
	close(sv[0]);
	close(sv[1]);
	CHECK(t_count_fds() == base);
}

/* A disposer that counts what it is given, then closes it. */
static size_t	disposed;

static void
count_disposer(int fd)
{
	disposed++;
	CHECK(close(fd) == 0);
}

/* With a disposer set, every fd a peer sent and nobody took reaches it —
 * all 253 one sendmsg() can carry, none dropped by the kernel — and fds
 * this side sends do not. */
static void
test_disposer(void)
{
	static unsigned char	 grant[256], hello[256];
	struct vmm_frame_reader	*r;
	struct vmm_frame_outq	*q;
	struct t_sample		 s;
	size_t			 glen, hlen;
	int			 base = t_count_fds(), sv[2], fds[3];

	t_sample(3, &s);
	glen = t_frame(&s.env, grant);
	t_sample(0, &s);
	hlen = t_frame(&s.env, hello);
	vmm_frame_set_fd_disposer(count_disposer);

	disposed = 0;
	CHECK(bad_fds_case(VMM_FRAME_PEER_CLIENT, hello, hlen, 1) ==
	    VMM_FRAME_EFDCOUNT);
	CHECK(disposed == 1);
	disposed = 0;
	CHECK(bad_fds_case(VMM_FRAME_PEER_DAEMON, grant, glen, 80) ==
	    VMM_FRAME_ETOOMANYFDS);
	CHECK(disposed == 80);
	disposed = 0;
	CHECK(bad_fds_case(VMM_FRAME_PEER_DAEMON, grant, glen, 253) ==
	    VMM_FRAME_ETOOMANYFDS);
	CHECK(disposed == 253);
	disposed = 0;
	CHECK(bad_fds_case(VMM_FRAME_PEER_DAEMON, grant, glen, 3) == 0);
	CHECK(disposed == 3);	/* the message was freed, nothing taken */

	/* A frame cut short by a hang-up, and a reader freed holding fds. */
	disposed = 0;
	t_socketpair(sv);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_DAEMON)) != NULL);
	t_nullfds(fds, 3);
	raw_send(sv[0], grant, 10, fds, 3);
	close(fds[0]);
	close(fds[1]);
	close(fds[2]);
	close(sv[0]);
	CHECK(vmm_frame_reader_read(r, sv[1]) == 10);
	CHECK(vmm_frame_reader_read(r, sv[1]) == VMM_FRAME_ETRUNCATED);
	CHECK(disposed == 3);
	vmm_frame_reader_free(r);
	close(sv[1]);
	disposed = 0;
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_DAEMON)) != NULL);
	t_nullfds(fds, 3);
	CHECK(vmm_frame_reader_feed(r, grant, 10, fds, 3) == 0);
	vmm_frame_reader_free(r);
	CHECK(disposed == 3);

	/* Our own fds, queued to send and dropped: closed, not disposed. */
	disposed = 0;
	t_sample(3, &s);
	CHECK((q = vmm_frame_outq_new(VMM_FRAME_PEER_CLIENT, 0, 0)) != NULL);
	t_nullfds(fds, 3);
	CHECK(vmm_frame_outq_push(q, &s.env, fds, 3) == 0);
	vmm_frame_outq_free(q);
	CHECK(disposed == 0);

	vmm_frame_set_fd_disposer(NULL);
	CHECK(t_count_fds() == base);
}

static void
test_bad_bytes(void)
{
	struct vmm_frame_reader	*r;
	struct vmm_frame_msg	*m;
	struct t_sample		 s;
	unsigned char		 b[64];
	uint32_t		 st = 99;
	size_t			 i, len;
	int			 sv[2], base = t_count_fds();

	/* An oversized length fails as soon as the header is in. */
	t_socketpair(sv);
	b[0] = 1;
	b[1] = 0;
	b[2] = 1;
	b[3] = 0;					/* 65537 */
	raw_send(sv[0], b, 4, NULL, 0);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) != NULL);
	CHECK(vmm_frame_reader_read(r, sv[1]) == VMM_FRAME_ETOOBIG);
	CHECK(vmm_frame_reader_read(r, sv[1]) == VMM_FRAME_ETOOBIG);
	vmm_frame_reader_free(r);
	close(sv[0]);
	close(sv[1]);

	/* A small length, then bytes that do not decode. */
	t_socketpair(sv);
	b[0] = 8;
	b[1] = b[2] = b[3] = 0;
	memset(b + 4, 0xff, 8);
	raw_send(sv[0], b, 12, NULL, 0);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) != NULL);
	CHECK(vmm_frame_recv(r, sv[1], &m, 1000) == VMM_FRAME_EDECODE);
	vmm_frame_reader_free(r);
	close(sv[0]);
	close(sv[1]);

	/* Random garbage: some fault, never a message, never a crash. */
	for (i = 0; i < sizeof(b); i++)
		b[i] = (unsigned char)lcg(&st);
	t_socketpair(sv);
	raw_send(sv[0], b, sizeof(b), NULL, 0);
	close(sv[0]);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) != NULL);
	CHECK(vmm_frame_recv(r, sv[1], &m, 1000) < 0);
	vmm_frame_reader_free(r);
	close(sv[1]);

	/* A valid frame of an unknown type (only field 99 set). */
	t_socketpair(sv);
	b[0] = 3;
	b[1] = b[2] = b[3] = 0;
	b[4] = 0x98;				/* field 99, varint */
	b[5] = 0x06;
	b[6] = 1;
	raw_send(sv[0], b, 7, NULL, 0);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) != NULL);
	CHECK(vmm_frame_recv(r, sv[1], &m, 1000) == VMM_FRAME_EINVALID);
	vmm_frame_reader_free(r);
	close(sv[0]);
	close(sv[1]);

	/* A valid frame of a malformed message (Hello with kind 7), and one
	 * sent the wrong way (an Ack from a client). */
	t_sample(0, &s);
	s.hello.kind = 7;
	len = t_frame(&s.env, stream_buf);
	t_socketpair(sv);
	raw_send(sv[0], stream_buf, len, NULL, 0);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) != NULL);
	CHECK(vmm_frame_recv(r, sv[1], &m, 1000) == VMM_FRAME_EINVALID);
	vmm_frame_reader_free(r);
	t_sample(7, &s);
	len = t_frame(&s.env, stream_buf);
	raw_send(sv[0], stream_buf, len, NULL, 0);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) != NULL);
	CHECK(vmm_frame_recv(r, sv[1], &m, 1000) == VMM_FRAME_EINVALID);
	vmm_frame_reader_free(r);
	close(sv[0]);
	close(sv[1]);

	/* A truncated frame, then EOF; and a whole frame, then EOF. */
	t_sample(2, &s);
	len = t_frame(&s.env, stream_buf);
	for (i = 1; i < len; i++) {
		t_socketpair(sv);
		raw_send(sv[0], stream_buf, i, NULL, 0);
		close(sv[0]);
		CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) !=
		    NULL);
		CHECK(vmm_frame_recv(r, sv[1], &m, 1000) ==
		    VMM_FRAME_ETRUNCATED);
		vmm_frame_reader_free(r);
		close(sv[1]);
	}
	t_socketpair(sv);
	raw_send(sv[0], stream_buf, len, NULL, 0);
	close(sv[0]);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) != NULL);
	CHECK(vmm_frame_recv(r, sv[1], &m, 1000) == 1);
	vmm_frame_msg_free(m);
	CHECK(vmm_frame_recv(r, sv[1], &m, 1000) == 0);
	vmm_frame_reader_free(r);
	close(sv[1]);
	CHECK(t_count_fds() == base);
}

static void
test_outq_limits(void)
{
	static unsigned char		 big[70000];
	ProtobufCMessageUnknownField	 uf;
	struct vmm_frame_outq		*q;
	struct t_sample			 s;
	int				 fds[VMM_FRAME_MAX_FDS + 1], sv[2];
	int				 base = t_count_fds();

	CHECK(vmm_frame_outq_new(0, 0, 0) == NULL && errno == EINVAL);
	CHECK(vmm_frame_reader_new(3) == NULL && errno == EINVAL);

	/* Byte and fd bounds; refused fds are closed. */
	CHECK((q = vmm_frame_outq_new(VMM_FRAME_PEER_CLIENT, 64, 2)) != NULL);
	t_sample(9, &s);
	CHECK(vmm_frame_outq_push(q, &s.env, NULL, 0) == -ENOBUFS);
	t_sample(3, &s);
	t_nullfds(fds, 3);
	CHECK(vmm_frame_outq_push(q, &s.env, fds, 3) == -ENOBUFS);
	CHECK(!t_fd_open(fds[0]) && !t_fd_open(fds[2]));
	s.grant.n_chunks = 2;
	t_nullfds(fds, 2);
	CHECK(vmm_frame_outq_push(q, &s.env, fds, 2) == 0);
	s.grant.n_chunks = 1;
	t_nullfds(fds, 1);
	CHECK(vmm_frame_outq_push(q, &s.env, fds, 1) == -ENOBUFS);
	CHECK(!t_fd_open(fds[0]));
	t_sample(7, &s);
	CHECK(vmm_frame_outq_push(q, &s.env, NULL, 0) == 0);
	t_sample(0, &s);				/* a client message */
	CHECK(vmm_frame_outq_push(q, &s.env, NULL, 0) == VMM_FRAME_EINVALID);
	vmm_frame_outq_free(q);		/* closes queued fds */
	CHECK(t_count_fds() == base);

	/* The sender checks the cap too: a Grant that validates but packs
	 * over VMM_FRAME_MAX (an unknown field of 70000 bytes). */
	CHECK((q = vmm_frame_outq_new(VMM_FRAME_PEER_CLIENT, 0, 0)) != NULL);
	t_sample(3, &s);
	memset(&uf, 0, sizeof(uf));
	uf.tag = 15;
	uf.wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
	uf.len = sizeof(big);
	uf.data = big;
	s.grant.base.n_unknown_fields = 1;
	s.grant.base.unknown_fields = &uf;
	t_nullfds(fds, 3);
	CHECK(vmm_frame_outq_push(q, &s.env, fds, 3) == VMM_FRAME_ETOOBIG);
	CHECK(!t_fd_open(fds[0]) && !t_fd_open(fds[2]));
	t_nullfds(fds, VMM_FRAME_MAX_FDS + 1);
	CHECK(vmm_frame_outq_push(q, &s.env, fds, VMM_FRAME_MAX_FDS + 1) ==
	    VMM_FRAME_ETOOMANYFDS);
	CHECK(!t_fd_open(fds[VMM_FRAME_MAX_FDS]));
	CHECK(vmm_frame_send(-1, VMM_FRAME_PEER_CLIENT, &s.env, NULL, 0, 0) ==
	    VMM_FRAME_EFDCOUNT);

	/* A peer that went away: -EPIPE, no SIGPIPE, sticky; unsent fds are
	 * closed with the queue. */
	t_socketpair(sv);
	close(sv[1]);
	t_sample(3, &s);
	t_nullfds(fds, 3);
	CHECK(vmm_frame_outq_push(q, &s.env, fds, 3) == 0);
	CHECK(vmm_frame_outq_flush(q, sv[0]) == -EPIPE);
	CHECK(vmm_frame_outq_flush(q, sv[0]) == -EPIPE);
	t_nullfds(fds, 3);
	CHECK(vmm_frame_outq_push(q, &s.env, fds, 3) == -EPIPE);
	CHECK(!t_fd_open(fds[0]));
	vmm_frame_outq_free(q);
	close(sv[0]);
	CHECK(t_count_fds() == base);
}

int
main(void)
{
	int	base;

	signal(SIGPIPE, SIG_DFL);	/* a SIGPIPE would kill the test */
	base = t_count_fds();
	test_roundtrip_socket();
	test_partial_writes(0);
	test_partial_writes(1);
	test_bytewise_socket();
	test_fds_cross_process();
	test_bad_fds();
	test_disposer();
	test_bad_bytes();
	test_outq_limits();
	CHECK(t_count_fds() == base);
	printf("proto stream: ok\n");
	return 0;
}
