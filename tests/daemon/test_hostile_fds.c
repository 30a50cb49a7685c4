/*
 * vmmd against a peer that sends fds meant to freeze it (issue 8): a
 * loopback TCP socket with SO_LINGER on and a full send queue, whose last
 * close() would sleep for the linger time in whichever thread makes it.
 * Each case hands the socket to vmmd some other way — on a frame before
 * Hello, on a Hello, inside a partial frame and then a hang-up, past the
 * 64 fds a frame may carry, still in flight in the session socket's queue
 * when vmmd drops the session, and on an Adopt it cannot import — drops its
 * own copy, and then times requests on an ordinary session: none may stall.
 * Then the trap is sprung (the listener resets the connection) and the
 * daemon's fd count must come back to its baseline.
 *
 * vmmd is stopped (tc_freeze) while a case sets up, so that it holds the last
 * reference when it runs, whatever the scheduling: otherwise this test's
 * own close() could be the one that sleeps.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"
#include "testraw.h"

#define LINGER_S	20	/* the trap's linger time */
#define WATCH_MS	600	/* how long each case times requests */
#define CALL_MAX_MS	3000	/* a request slower than this is a freeze */
#define STALL_MAX_MS	500	/* the worst round trip allowed */

static char		 sockpath[1100];
static pid_t		 daemon_pid;
static struct tc	*adm, *probe;
static int		 fds0;
static unsigned long	 worst_all;
static int		 failures;	/* cases that failed; the rest still run */

/* A TCP connection on loopback whose peer never reads: the writer's end
 * (sock) has SO_LINGER on and a full send queue. */
struct trap {
	int	lfd;	/* listener */
	int	acc;	/* accepted end, never read */
	int	sock;	/* the trap */
};

static void
trap_set(struct trap *t)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	struct linger l = { 1, LINGER_S };
	struct pollfd p;
	int small = 4096, fl;
	char buf[65536];
	ssize_t n;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK((t->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	CHECK(setsockopt(t->lfd, SOL_SOCKET, SO_RCVBUF, &small,
	    sizeof(small)) == 0);
	CHECK(bind(t->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(getsockname(t->lfd, (struct sockaddr *)&sa, &len) == 0);
	CHECK(listen(t->lfd, 1) == 0);
	CHECK((t->sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	CHECK(setsockopt(t->sock, SOL_SOCKET, SO_SNDBUF, &small,
	    sizeof(small)) == 0);
	CHECK(connect(t->sock, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK((t->acc = accept4(t->lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0);
	CHECK((fl = fcntl(t->sock, F_GETFL)) >= 0);
	CHECK(fcntl(t->sock, F_SETFL, fl | O_NONBLOCK) == 0);
	memset(buf, 'x', sizeof(buf));
	/* Full: the peer's window is shut and our queue takes no more. */
	for (;;) {
		while ((n = send(t->sock, buf, sizeof(buf), MSG_NOSIGNAL)) > 0)
			;
		CHECK(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
		p.fd = t->sock;
		p.events = POLLOUT;
		if (poll(&p, 1, 50) == 0)
			break;
	}
	CHECK(setsockopt(t->sock, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) == 0);
}

/* Drops our copy of the trap: after a send that failed we hold the last
 * reference, and then we must not be the one who lingers. */
static void
trap_drop(struct trap *t, bool sent)
{
	struct linger off = { 0, 0 };

	if (!sent)
		(void)setsockopt(t->sock, SOL_SOCKET, SO_LINGER, &off,
		    sizeof(off));
	close(t->sock);
	t->sock = -1;
}

/* The peer resets the connection: a lingering close() returns at once. */
static void
trap_spring(struct trap *t)
{
	struct linger rst = { 1, 0 };

	(void)setsockopt(t->acc, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
	close(t->acc);
	close(t->lfd);
	t->acc = t->lfd = -1;
}

/* One MemInfo round trip on the probe session in ms; CALL_MAX_MS + 1 if
 * no answer came in that time (the reply is then read late, in resync). */
static unsigned long
probe_call(bool *late)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__MemInfoRequest r = VMM__MEM_INFO_REQUEST__INIT;
	struct vmm_frame_msg *m = NULL;
	uint64_t t0 = vmm_now_ms();
	int rc;

	r.request_id = tc_rid(probe);
	env.msg_case = VMM__ENVELOPE__MSG_MEM_INFO_REQUEST;
	env.mem_info_request = &r;
	CHECK(vmm_frame_send(probe->fd, VMM_FRAME_PEER_DAEMON, &env, NULL, 0,
	    CALL_MAX_MS) == 0);
	rc = tc_recv(probe, &m, CALL_MAX_MS);
	if (rc == -ETIMEDOUT) {
		*late = true;
		return CALL_MAX_MS + 1;
	}
	CHECK(rc == 1);
	CHECK(vmm_frame_msg_env(m)->msg_case ==
	    VMM__ENVELOPE__MSG_MEM_INFO_REPLY);
	vmm_frame_msg_free(m);
	return (unsigned long)(vmm_now_ms() - t0);
}

/* Reads the reply of a request that timed out. */
static void
probe_resync(void)
{
	struct vmm_frame_msg *m = NULL;

	CHECK(tc_recv(probe, &m, 10000) == 1);
	CHECK(vmm_frame_msg_env(m)->msg_case ==
	    VMM__ENVELOPE__MSG_MEM_INFO_REPLY);
	vmm_frame_msg_free(m);
}

/* An Adopt as a raw peer would send it (not checked). */
static size_t
frame_adopt(unsigned char *buf, size_t cap, uint64_t size)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Adopt a = VMM__ADOPT__INIT;

	a.request_id = 7;
	a.n_sizes = 1;
	a.sizes = &size;
	env.msg_case = VMM__ENVELOPE__MSG_ADOPT;
	env.adopt = &a;
	return tc_pack(&env, buf, cap);
}

/* Reads what vmmd answers on a raw connection until it hangs up. */
static void
raw_wait_closed(int fd)
{
	CHECK(tc_wait_eof(fd, 10000) == 0);
}

/* vmmd's answer to an Adopt of what is no chunk: the id 0, refused. */
static void
adopt_refused(struct tc *s)
{
	struct vmm_frame_msg *m = NULL;
	const Vmm__Envelope *e;

	CHECK(tc_recv(s, &m, 10000) == 1);
	e = vmm_frame_msg_env(m);
	CHECK(e->msg_case == VMM__ENVELOPE__MSG_ADOPT_REPLY);
	CHECK(e->adopt_reply->n_chunk_ids == 1 &&
	    e->adopt_reply->chunk_ids[0] == 0);
	vmm_frame_msg_free(m);
}

enum how {
	ADOPT_BEFORE_HELLO,	/* Adopt with the trap, no Hello */
	ON_HELLO,		/* Hello carrying the trap */
	PARTIAL_HANGUP,		/* 3 bytes of a frame with the trap, EOF */
	TOO_MANY,		/* 64 pipe fds and the trap as 65th */
	IN_FLIGHT,		/* a bad Hello, the trap still queued behind */
	ADOPT_AFTER_HELLO,	/* a session's Adopt of the trap */
};

static const char *const how_name[] = {
	"adopt_before_hello", "on_hello", "partial_hangup", "too_many",
	"in_flight", "adopt_after_hello",
};

/* Hands t's socket to vmmd the way `how` says, on a new raw connection
 * or (ADOPT_AFTER_HELLO) on session s; returns the connection (-1 if it is
 * closed already) and whether the trap went out. */
static int
deliver(enum how how, struct trap *t, struct tc *s, bool *sent)
{
	unsigned char buf[512];
	int fds[65], p[2], fd, i, rc;
	size_t n;

	*sent = false;
	switch (how) {
	case ADOPT_BEFORE_HELLO:
		CHECK((fd = tc_connect_raw(sockpath)) >= 0);
		n = frame_adopt(buf, sizeof(buf), 2u << 20);
		rc = tc_send_raw(fd, buf, n, &t->sock, 1);
		break;
	case ON_HELLO:
		CHECK((fd = tc_connect_raw(sockpath)) >= 0);
		n = tc_raw_pack_hello(buf, sizeof(buf), VMM_PROTOCOL_VERSION, 1,
		    "hostile");
		rc = tc_send_raw(fd, buf, n, &t->sock, 1);
		break;
	case PARTIAL_HANGUP:
		CHECK((fd = tc_connect_raw(sockpath)) >= 0);
		n = tc_raw_pack_hello(buf, sizeof(buf), VMM_PROTOCOL_VERSION, 1,
		    "hostile");
		rc = tc_send_raw(fd, buf, 3, &t->sock, 1);
		close(fd);
		fd = -1;
		break;
	case TOO_MANY:
		CHECK((fd = tc_connect_raw(sockpath)) >= 0);
		CHECK(pipe2(p, O_CLOEXEC) == 0);
		for (i = 0; i < 64; i++)
			fds[i] = p[i % 2];
		fds[64] = t->sock;
		n = tc_raw_pack_hello(buf, sizeof(buf), VMM_PROTOCOL_VERSION, 1,
		    "hostile");
		rc = tc_send_raw(fd, buf, n, fds, 65);
		close(p[0]);
		close(p[1]);
		break;
	case IN_FLIGHT:
		/* A read stops after a segment with fds: the second one
		 * stays queued behind the faulty Hello. */
		CHECK((fd = tc_connect_raw(sockpath)) >= 0);
		CHECK(pipe2(p, O_CLOEXEC) == 0);
		n = tc_raw_pack_hello(buf, sizeof(buf), VMM_PROTOCOL_VERSION, 1,
		    "hostile");
		CHECK(tc_send_raw(fd, buf, n, p, 1) == 0);
		rc = tc_send_raw(fd, buf, n, &t->sock, 1);
		close(p[0]);
		close(p[1]);
		break;
	case ADOPT_AFTER_HELLO:
	default:
		fd = -1;
		n = frame_adopt(buf, sizeof(buf), 2u << 20);
		rc = tc_send_raw(s->fd, buf, n, &t->sock, 1);
		break;
	}
	if (rc != 0)
		fprintf(stderr, "%s: send: %s\n", how_name[how], strerror(-rc));
	*sent = rc == 0;
	return fd;
}

static void
run_case(enum how how)
{
	struct trap t;
	struct tc *s = NULL;
	unsigned long worst = 0, ms;
	uint64_t end;
	bool sent, late = false;
	int fd, calls = 0, n;

	trap_set(&t);
	if (how == ADOPT_AFTER_HELLO)
		s = tc_open(sockpath, "hostile", false);
	tc_freeze(daemon_pid);
	fd = deliver(how, &t, s, &sent);
	trap_drop(&t, sent);
	tc_thaw(daemon_pid);
	CHECK(sent);

	end = vmm_now_ms() + WATCH_MS;
	while (vmm_now_ms() < end && !late) {
		ms = probe_call(&late);
		if (ms > worst)
			worst = ms;
		calls++;
		tc_sleep_ms(5);
	}
	printf("hostile_fds: %s: worst round trip %lu ms over %d requests\n",
	    how_name[how], worst, calls);
	fflush(stdout);
	if (worst > worst_all)
		worst_all = worst;

	trap_spring(&t);
	if (late)
		probe_resync();
	if (fd >= 0) {
		raw_wait_closed(fd);
		close(fd);
	}
	if (s != NULL) {
		/* vmmd could not import the socket: an Error, no hang-up. */
		adopt_refused(s);
		tc_close(s);
	}
	n = tc_wait_fds(daemon_pid, fds0, 5000);
	if (worst > STALL_MAX_MS) {
		fprintf(stderr, "%s: vmmd stalled for %lu ms (bound %d)\n",
		    how_name[how], worst, STALL_MAX_MS);
		failures++;
	}
	if (n != fds0) {
		fprintf(stderr, "%s: daemon fds %d, baseline %d\n", how_name[how],
		    n, fds0);
		failures++;
	}
}

int
main(void)
{
	int how;

	signal(SIGPIPE, SIG_IGN);
	daemon_pid = tc_start_in("hostile", NULL, sockpath, sizeof(sockpath),
	    &adm);
	probe = tc_open(sockpath, "probe", false);
	tc_sleep_ms(100);
	CHECK((fds0 = tc_count_fds(daemon_pid)) > 0);
	for (how = ADOPT_BEFORE_HELLO; how <= ADOPT_AFTER_HELLO; how++)
		run_case((enum how)how);
	printf("hostile_fds: worst round trip of all cases %lu ms (bound %d)\n",
	    worst_all, STALL_MAX_MS);
	/* Every case queued its trap for a closer; none was closed inline. */
	CHECK(tc_counter(adm, "closer_queued") >= 6);
	CHECK(tc_counter(adm, "closer_threads") >= 1);
	CHECK(tc_counter(adm, "closer_inline") == 0);
	CHECK(failures == 0);
	tc_close(probe);
	tc_stop_with(daemon_pid, adm);
	return 0;
}
