/*
 * Unit tests of the client session (proto/session.h) against a peer on the
 * other end of a socketpair, played by this process: the daemon's frames are
 * written before the call that reads them, so every case is deterministic.
 * Socket names and UUID text; a reply matched by its request id with a
 * Recall (whose id is the same number), a stale reply and an Error about
 * another request in between, to the queue and to a push handler; an Error
 * reply for the request or for none; a reply of the wrong type; a timeout
 * and the late reply that follows; a reply awaited out of order; Goodbye;
 * EOF; and fds both ways.
 */
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "clock.h"
#include "session.h"

#define T_MS	5000

static int		 peer;		/* the daemon's end */
static struct vmm_frame_reader	*peer_rd;

static struct vmm_sess *
pair(void)
{
	struct vmm_sess	*s;
	int		 sv[2];

	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	CHECK(vmm_sess_from_fd(&s, sv[0]) == 0);
	peer = sv[1];
	CHECK((peer_rd = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) != NULL);
	return s;
}

static void
unpair(struct vmm_sess *s)
{
	vmm_sess_close(s);
	vmm_frame_reader_free(peer_rd);
	close(peer);
}

/* The daemon sends env (fds taken). */
static void
daemon_says(Vmm__Envelope env, int *fds, size_t nfds)
{
	CHECK(vmm_frame_send(peer, VMM_FRAME_PEER_CLIENT, &env, fds, nfds,
	    T_MS) == 0);
}

static void
say_recall(uint64_t id)
{
	Vmm__Recall	r = VMM__RECALL__INIT;

	r.recall_id = id;
	r.target_bytes = 1 << 20;
	r.reason = VMM__RECALL_REASON__RECALL_REASON_PRESSURE;
	daemon_says(vmm_frame_env_recall(&r), NULL, 0);
}

static void
say_error(uint64_t id, Vmm__ErrorCode code, const char *msg)
{
	Vmm__Error	e = VMM__ERROR__INIT;

	e.request_id = id;
	e.code = code;
	e.message = (char *)msg;
	daemon_says(vmm_frame_env_error(&e), NULL, 0);
}

static void
say_release_reply(uint64_t id)
{
	Vmm__ReleaseReply	r = VMM__RELEASE_REPLY__INIT;

	r.request_id = id;
	r.released_chunks = 1;
	daemon_says(vmm_frame_env_release_reply(&r), NULL, 0);
}

static void
say_mem_info(uint64_t id, uint64_t free_bytes)
{
	Vmm__MemInfoReply	r = VMM__MEM_INFO_REPLY__INIT;

	r.request_id = id;
	r.free_bytes = free_bytes;
	daemon_says(vmm_frame_env_mem_info_reply(&r), NULL, 0);
}

/* The next frame the client sent; the caller frees it. */
static struct vmm_frame_msg *
daemon_hears(void)
{
	struct vmm_frame_msg	*m;

	CHECK(vmm_frame_recv(peer_rd, peer, &m, T_MS) == 1);
	return m;
}

static int
mem_info(struct vmm_sess *s, Vmm__MemInfoRequest *q, int timeout_ms,
    struct vmm_frame_msg **out)
{
	Vmm__Envelope	env = vmm_frame_env_mem_info_request(q);

	return vmm_sess_call(s, &env, NULL, 0, timeout_ms, out);
}

static void
test_names(void)
{
	static const uint8_t	u[VMM_PROTO_UUID_LEN] = { 0x01, 0x23, 0xab,
	    0xcd, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67,
	    0x89, 0xab };
	uint8_t			v[VMM_PROTO_UUID_LEN];
	char			buf[PATH_MAX], text[VMM_SESS_UUID_STRLEN + 1];
	char			name[16], dir[300];

	CHECK(vmm_sess_path_index(buf, sizeof(buf), "/run/vmmd", 3) == 0);
	CHECK(strcmp(buf, "/run/vmmd/gpu3.sock") == 0);
	CHECK(vmm_sess_path_index(buf, sizeof(buf), "/tmp/x//", 0) == 0);
	CHECK(strcmp(buf, "/tmp/x/gpu0.sock") == 0);
	CHECK(vmm_sess_path_uuid(buf, sizeof(buf), "/d", u) == 0);
	CHECK(strcmp(buf, "/d/gpu-0123abcd-4567-89ab-cdef-0123456789ab.sock")
	    == 0);
	CHECK(vmm_sess_sockname_index(name, sizeof(name), 12) == 0);
	CHECK(strcmp(name, "gpu12.sock") == 0);
	CHECK(vmm_sess_sockname_uuid(name, sizeof(name), u) == -ENAMETOOLONG);
	CHECK(vmm_sess_path_index(buf, sizeof(buf), "", 0) == -EINVAL);
	memset(dir, 'a', sizeof(dir) - 1);
	dir[sizeof(dir) - 1] = '\0';
	CHECK(vmm_sess_path_index(buf, 64, dir, 0) == -ENAMETOOLONG);

	vmm_sess_format_uuid(text, u);
	CHECK(strcmp(text, "0123abcd-4567-89ab-cdef-0123456789ab") == 0);
	CHECK(vmm_sess_parse_uuid("GPU-0123ABCD-4567-89ab-cdef-0123456789ab",
	    v) == 0 && memcmp(u, v, sizeof(u)) == 0);
	CHECK(vmm_sess_parse_uuid("0123abcd456789abcdef0123456789ab", v) == 0 &&
	    memcmp(u, v, sizeof(u)) == 0);
	CHECK(vmm_sess_parse_uuid("0123abcd-4567-89ab-cdef-0123456789a", v) ==
	    -EINVAL);
	CHECK(vmm_sess_parse_uuid("0123abc-d4567-89ab-cdef-0123456789ab", v) ==
	    -EINVAL);
	CHECK(vmm_sess_parse_uuid("0123abcd--4567-89ab-cdef-0123456789ab", v) ==
	    -EINVAL);
	CHECK(vmm_sess_parse_uuid("0123abcd-4567-89ab-cdef-0123456789abc", v) ==
	    -EINVAL);
	CHECK(vmm_sess_parse_uuid("", v) == -EINVAL);
	/* A MIG instance's UUID (nvidia-smi -L), what vmmctl --device takes;
	 * the old "MIG-GPU-<uuid>/<gi>/<ci>" form is no UUID. */
	CHECK(vmm_sess_parse_uuid("MIG-0123abcd-4567-89ab-cdef-0123456789ab",
	    v) == 0 && memcmp(u, v, sizeof(u)) == 0);
	CHECK(vmm_sess_parse_uuid("MIG-GPU-0123abcd-4567-89ab-cdef-"
	    "0123456789ab/1/0", v) == -EINVAL);
}

/* A reply found by its id among a Recall carrying the same number, a
 * stale reply and an Error about another request: those are queued, in
 * order, for vmm_sess_recv(). */
static void
test_match_queue(void)
{
	Vmm__MemInfoRequest	 q = VMM__MEM_INFO_REQUEST__INIT;
	struct vmm_sess		*s = pair();
	struct vmm_frame_msg	*m;
	const Vmm__Envelope	*e;
	uint64_t		 id;

	id = vmm_sess_next_id(s) + 1;	/* the id the call will take */
	say_recall(id);
	say_release_reply(id - 1);
	say_error(id + 7, VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK, "no");
	say_mem_info(id, 4096);
	CHECK(mem_info(s, &q, T_MS, &m) == 0);
	CHECK(q.request_id == id);
	e = vmm_frame_msg_env(m);
	CHECK(e->msg_case == VMM__ENVELOPE__MSG_MEM_INFO_REPLY);
	CHECK(e->mem_info_reply->free_bytes == 4096);
	vmm_frame_msg_free(m);

	/* What the daemon heard. */
	m = daemon_hears();
	CHECK(vmm_frame_msg_env(m)->msg_case ==
	    VMM__ENVELOPE__MSG_MEM_INFO_REQUEST);
	CHECK(vmm_frame_request_id(vmm_frame_msg_env(m)) == id);
	vmm_frame_msg_free(m);

	CHECK(vmm_sess_recv(s, &m, 0) == 1);
	CHECK(vmm_frame_msg_env(m)->msg_case == VMM__ENVELOPE__MSG_RECALL);
	vmm_frame_msg_free(m);
	CHECK(vmm_sess_recv(s, &m, 0) == 1);
	CHECK(vmm_frame_msg_env(m)->msg_case ==
	    VMM__ENVELOPE__MSG_RELEASE_REPLY);
	vmm_frame_msg_free(m);
	CHECK(vmm_sess_recv(s, &m, 0) == 1);
	CHECK(vmm_frame_msg_env(m)->msg_case == VMM__ENVELOPE__MSG_ERROR);
	vmm_frame_msg_free(m);
	CHECK(vmm_sess_recv(s, &m, 0) == -ETIMEDOUT);
	CHECK(vmm_sess_dropped(s) == 0);
	unpair(s);
}

struct pushes {
	int			n;
	Vmm__Envelope__MsgCase	cases[8];
	struct vmm_sess		*s;
};

static void
on_push(struct vmm_frame_msg *m, void *arg)
{
	struct pushes	*p = arg;

	CHECK(p->n < 8);
	p->cases[p->n++] = vmm_frame_msg_env(m)->msg_case;
}

/* The same with a push handler; vmm_sess_poll() hands it what arrived. */
static void
test_match_handler(void)
{
	Vmm__MemInfoRequest	 q = VMM__MEM_INFO_REQUEST__INIT;
	struct vmm_sess		*s = pair();
	struct vmm_frame_msg	*m;
	struct pushes		 p = { 0 };

	vmm_sess_set_push_handler(s, on_push, &p);
	q.request_id = 40;	/* the caller's own id is kept */
	say_recall(40);
	say_release_reply(39);
	say_mem_info(40, 1);
	CHECK(mem_info(s, &q, T_MS, &m) == 0);
	CHECK(vmm_frame_request_id(vmm_frame_msg_env(m)) == 40);
	vmm_frame_msg_free(m);
	CHECK(p.n == 2 && p.cases[0] == VMM__ENVELOPE__MSG_RECALL &&
	    p.cases[1] == VMM__ENVELOPE__MSG_RELEASE_REPLY);

	say_recall(41);
	say_recall(42);
	CHECK(vmm_sess_poll(s) == 0);
	CHECK(p.n == 4);
	CHECK(vmm_sess_poll(s) == 0);		/* nothing more: no wait */
	CHECK(p.n == 4);
	unpair(s);
}

/* An Error for the request, or for none, is the call's failure, with the
 * code and message; a reply of another type is a mismatch. */
static void
test_errors(void)
{
	Vmm__TrimRequest	 t = VMM__TRIM_REQUEST__INIT;
	Vmm__Envelope		 env = vmm_frame_env_trim_request(&t);
	Vmm__Ack		 ack = VMM__ACK__INIT;
	struct vmm_sess		*s = pair();
	struct vmm_frame_msg	*m;
	const struct vmm_sess_error *err;
	char			 name[32];

	t.request_id = 5;
	say_error(5, VMM__ERROR_CODE__ERROR_CODE_QUOTA, "over the quota");
	CHECK(vmm_sess_call(s, &env, NULL, 0, T_MS, &m) == VMM_SESS_EREFUSED);
	CHECK(m == NULL);
	err = vmm_sess_error(s);
	CHECK(err->code == VMM__ERROR_CODE__ERROR_CODE_QUOTA);
	CHECK(err->request_id == 5);
	CHECK(strcmp(err->message, "over the quota") == 0);
	CHECK(strcmp(vmm_sess_error_name(err->code, name, sizeof(name)),
	    "quota") == 0);
	CHECK(strcmp(vmm_sess_error_name((Vmm__ErrorCode)99, name,
	    sizeof(name)), "?") == 0);

	t.request_id = 6;
	say_error(0, VMM__ERROR_CODE__ERROR_CODE_BAD_STATE, "");
	CHECK(vmm_sess_call(s, &env, NULL, 0, T_MS, &m) == VMM_SESS_EREFUSED);
	CHECK(vmm_sess_error(s)->code == VMM__ERROR_CODE__ERROR_CODE_BAD_STATE);

	t.request_id = 7;
	ack.request_id = 7;
	daemon_says(vmm_frame_env_ack(&ack), NULL, 0);
	CHECK(vmm_sess_call(s, &env, NULL, 0, T_MS, &m) == VMM_SESS_EMISMATCH);
	CHECK(strcmp(vmm_sess_error(s)->got, "ack") == 0);

	/* Not a request: nothing to wait for. */
	env = vmm_frame_env_ack(&ack);
	CHECK(vmm_sess_wait(s, &env, T_MS, &m) == -EINVAL);
	CHECK(strcmp(vmm_sess_strerror(VMM_SESS_EREFUSED),
	    "the daemon refused the request") == 0);
	unpair(s);
}

/* A call times out within its time; its late reply is not the next
 * call's, which still gets its own. */
static void
test_timeout(void)
{
	Vmm__MemInfoRequest	 q = VMM__MEM_INFO_REQUEST__INIT;
	struct vmm_sess		*s = pair();
	struct vmm_frame_msg	*m;
	uint64_t		 t0, late;
	struct pushes		 p = { 0 };

	vmm_sess_set_push_handler(s, on_push, &p);
	t0 = vmm_now_ms();
	CHECK(mem_info(s, &q, 100, &m) == -ETIMEDOUT);
	CHECK(vmm_now_ms() - t0 >= 100 && vmm_now_ms() - t0 < 3000);
	late = q.request_id;

	say_mem_info(late, 1);
	q.request_id = 0;
	say_mem_info(late + 1, 2);
	CHECK(mem_info(s, &q, T_MS, &m) == 0);
	CHECK(q.request_id == late + 1);
	CHECK(vmm_frame_msg_env(m)->mem_info_reply->free_bytes == 2);
	vmm_frame_msg_free(m);
	CHECK(p.n == 1 && p.cases[0] == VMM__ENVELOPE__MSG_MEM_INFO_REPLY);
	unpair(s);
}

/* Two requests sent, their replies awaited in the other order. */
static void
test_out_of_order(void)
{
	Vmm__MemInfoRequest	 a = VMM__MEM_INFO_REQUEST__INIT;
	Vmm__MemInfoRequest	 b = VMM__MEM_INFO_REQUEST__INIT;
	Vmm__Envelope		 ea = vmm_frame_env_mem_info_request(&a);
	Vmm__Envelope		 eb = vmm_frame_env_mem_info_request(&b);
	struct vmm_sess		*s = pair();
	struct vmm_frame_msg	*m;

	CHECK(vmm_sess_send(s, &ea, NULL, 0, T_MS) == 0);
	CHECK(vmm_sess_send(s, &eb, NULL, 0, T_MS) == 0);
	CHECK(a.request_id != 0 && b.request_id == a.request_id + 1);
	say_mem_info(a.request_id, 10);
	say_mem_info(b.request_id, 20);
	CHECK(vmm_sess_wait(s, &eb, T_MS, &m) == 0);
	CHECK(vmm_frame_msg_env(m)->mem_info_reply->free_bytes == 20);
	vmm_frame_msg_free(m);
	CHECK(vmm_sess_wait(s, &ea, T_MS, &m) == 0);	/* from the queue */
	CHECK(vmm_frame_msg_env(m)->mem_info_reply->free_bytes == 10);
	vmm_frame_msg_free(m);
	unpair(s);
}

/* Goodbye ends the wait and every later one; EOF is ECLOSED. */
static void
test_goodbye_eof(void)
{
	Vmm__MemInfoRequest	 q = VMM__MEM_INFO_REQUEST__INIT;
	Vmm__Goodbye		 bye = VMM__GOODBYE__INIT;
	struct vmm_sess		*s = pair();
	struct vmm_frame_msg	*m;

	bye.reason = VMM__GOODBYE_REASON__GOODBYE_REASON_SHUTDOWN;
	bye.message = (char *)"stopping";
	daemon_says(vmm_frame_env_goodbye(&bye), NULL, 0);
	CHECK(mem_info(s, &q, T_MS, &m) == VMM_SESS_EGOODBYE);
	CHECK(strcmp(vmm_sess_error(s)->message, "stopping") == 0);
	CHECK(vmm_sess_error(s)->reason ==
	    VMM__GOODBYE_REASON__GOODBYE_REASON_SHUTDOWN);
	q.request_id = 0;
	CHECK(mem_info(s, &q, T_MS, &m) == VMM_SESS_EGOODBYE);
	/* The Goodbye itself is queued, as any push. */
	CHECK(vmm_sess_recv(s, &m, 0) == 1);
	CHECK(vmm_frame_msg_env(m)->msg_case == VMM__ENVELOPE__MSG_GOODBYE);
	vmm_frame_msg_free(m);
	unpair(s);

	s = pair();
	shutdown(peer, SHUT_WR);
	q.request_id = 0;
	CHECK(mem_info(s, &q, T_MS, &m) == VMM_SESS_ECLOSED);
	unpair(s);
}

/* Fds go out with Adopt and come back with Grant. */
static void
test_fds(void)
{
	Vmm__Adopt		 a = VMM__ADOPT__INIT;
	Vmm__Envelope		 env = vmm_frame_env_adopt(&a);
	Vmm__AdoptReply		 ar = VMM__ADOPT_REPLY__INIT;
	Vmm__Grant		 g = VMM__GRANT__INIT;
	Vmm__Acquire		 q = VMM__ACQUIRE__INIT;
	Vmm__Chunk		 c = VMM__CHUNK__INIT, *cp[1] = { &c };
	struct vmm_sess		*s = pair();
	struct vmm_frame_msg	*m;
	uint64_t		 size = 2 << 20, ids[1] = { 77 };
	int			 p[2], fd;

	CHECK(pipe2(p, O_CLOEXEC) == 0);
	a.n_sizes = 1;
	a.sizes = &size;
	CHECK(vmm_sess_send(s, &env, &p[0], 1, T_MS) == 0);
	m = daemon_hears();
	CHECK(vmm_frame_msg_nfds(m) == 1);
	CHECK((fd = vmm_frame_msg_take_fd(m, 0)) >= 0);
	CHECK(write(p[1], "x", 1) == 1);
	{
		char	ch;

		CHECK(read(fd, &ch, 1) == 1 && ch == 'x');
	}
	close(fd);
	vmm_frame_msg_free(m);
	ar.request_id = a.request_id;
	ar.n_chunk_ids = 1;
	ar.chunk_ids = ids;
	daemon_says(vmm_frame_env_adopt_reply(&ar), NULL, 0);
	CHECK(vmm_sess_wait(s, &env, T_MS, &m) == 0);
	CHECK(vmm_frame_msg_env(m)->adopt_reply->chunk_ids[0] == 77);
	vmm_frame_msg_free(m);

	q.bytes = size;
	env = vmm_frame_env_acquire(&q);
	CHECK(vmm_sess_send(s, &env, NULL, 0, T_MS) == 0);
	c.id = 1;
	c.size = size;
	g.request_id = q.request_id;
	g.n_chunks = 1;
	g.chunks = cp;
	CHECK((fd = dup(p[1])) >= 0);
	daemon_says(vmm_frame_env_grant(&g), &fd, 1);
	CHECK(vmm_sess_wait(s, &env, T_MS, &m) == 0);
	CHECK(vmm_frame_msg_nfds(m) == 1);
	CHECK((fd = vmm_frame_msg_take_fd(m, 0)) >= 0);
	CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
	close(fd);
	vmm_frame_msg_free(m);
	close(p[1]);
	unpair(s);
}

int
main(void)
{
	test_names();
	test_match_queue();
	test_match_handler();
	test_errors();
	test_timeout();
	test_out_of_order();
	test_goodbye_eof();
	test_fds();
	return 0;
}
