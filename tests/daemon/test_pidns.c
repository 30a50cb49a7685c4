/*
 * Clients and vmmd in different pid namespaces (issue 10, B.9).  Needs
 * unshare(CLONE_NEWPID) (root, or a user namespace): exit 77 otherwise.
 *
 *   client_ns  the client in a pid namespace of its own (pid 1 there):
 *              vmmd sees it under its pid in vmmd's namespace; its chunks
 *              come back when it is SIGKILLed
 *   daemon_ns  vmmd in a pid namespace of its own, the clients outside it:
 *              SO_PEERCRED says pid 0.  They are served, watched through
 *              the connection's SO_PEERPIDFD: chunks come back when the
 *              holder is SIGKILLed; a holder that closes its socket while
 *              alive has its chunks quarantined until it is gone; another
 *              process (pid 0 too, same uid) cannot resume that session
 *   tenants    vmmd in its own pid namespace, tenant = uid+cgroup: vmmd
 *              cannot read such a client's cgroup, so memory one releases
 *              is not lent as it is to another (created anew instead)
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define MiB	(1024ull * 1024)

static char		sockpath[1100];

/* Waits up to 5 s for the pool to lend `lent` and quarantine `quar`. */
static void
wait_pool(uint64_t lent, uint64_t quar)
{
	struct tc *adm;
	Vmm__PoolStats ps;
	int i;

	for (i = 0; i < 250; i++) {
		adm = tc_open(sockpath, "admin", true);
		tc_pool(adm, &ps);
		tc_close(adm);
		if (ps.lent_bytes == lent && ps.quarantined_bytes == quar)
			return;
		tc_sleep_ms(20);
	}
	fprintf(stderr, "pool: lent %llu quarantined %llu, want %llu %llu\n",
	    (unsigned long long)ps.lent_bytes,
	    (unsigned long long)ps.quarantined_bytes,
	    (unsigned long long)lent, (unsigned long long)quar);
	CHECK(!"pool figures");
}

/* The pid vmmd sees for session id (from the clients list). */
static uint32_t
session_pid(uint64_t id)
{
	Vmm__ClientsRequest req = VMM__CLIENTS_REQUEST__INIT;
	Vmm__Envelope env;
	const Vmm__ClientsReply *r;
	struct vmm_frame_msg *m;
	struct tc *adm = tc_open(sockpath, "admin", true);
	uint32_t pid = UINT32_MAX;
	size_t i;

	req.request_id = tc_rid(adm);
	env = vmm_frame_env_clients_request(&req);
	m = tc_call_expect(adm, &env, VMM__ENVELOPE__MSG_CLIENTS_REPLY);
	r = vmm_frame_msg_env(m)->clients_reply;
	for (i = 0; i < r->n_sessions; i++)
		if (r->sessions[i]->session_id == id)
			pid = r->sessions[i]->pid;
	vmm_frame_msg_free(m);
	tc_close(adm);
	CHECK(pid != UINT32_MAX);
	return pid;
}

/* A holder: 8 MiB from vmmd, the fd kept; tells its session, then
 * (close: after closing its socket) waits to be killed. */
struct holder {
	bool	close;
};

struct holder_msg {
	uint64_t	session, instance;
};

static int
holder(void *arg, int ctl)
{
	const struct holder *h = arg;
	struct holder_msg msg;
	struct tc_chunk ch[4];
	struct tc *c = tc_open(sockpath, "holder", false);
	char b;

	CHECK(tc_acquire(c, 8 * MiB, 0, ch, 4) == 1);
	msg.session = c->session_id;
	msg.instance = vmm_sess_hello_reply(c->s)->instance_id;
	if (h->close)
		tc_close(c);
	tc_ctl_send(ctl, &msg, sizeof(msg));
	(void)!read(ctl, &b, 1);	/* until killed */
	return 0;
}

/* vmmd as pid 1 of a new pid namespace; *nspid: its pid in ours. */
static pid_t
start_ns_daemon(const char *conf_text, pid_t *nspid)
{
	char vmmd[4096], conf[4200], dir[4096];
	const char *bd = getenv("VMM_BUILD_DIR"), *tmp = getenv("VMM_TEST_TMPDIR");
	int pfd[2], st, fd, i;
	pid_t mid, p;
	FILE *f;

	CHECK(bd != NULL && tmp != NULL);
	snprintf(vmmd, sizeof(vmmd), "%s/daemon/vmmd", bd);
	snprintf(dir, sizeof(dir), "%s/sock", tmp);
	mkdir(dir, 0755);
	snprintf(conf, sizeof(conf), "%s/vmmd.conf", dir);
	CHECK((f = fopen(conf, "w")) != NULL);
	fputs(conf_text, f);
	fclose(f);
	tc_socket_path(dir, sockpath, sizeof(sockpath));
	CHECK(pipe2(pfd, O_CLOEXEC) == 0);
	fflush(NULL);
	CHECK((mid = fork()) >= 0);
	if (mid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (unshare(CLONE_NEWPID) != 0)
			_exit(77);
		if ((p = fork()) < 0)
			_exit(1);
		if (p == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			unsetenv("LD_PRELOAD");
			execl(vmmd, vmmd, "--foreground", "--socket-dir", dir,
			    "--config", conf, (char *)NULL);
			_exit(127);
		}
		(void)!write(pfd[1], &p, sizeof(p));
		_exit(waitpid(p, &st, 0) == p && WIFEXITED(st) ?
		    WEXITSTATUS(st) : 1);
	}
	close(pfd[1]);
	if (read(pfd[0], nspid, sizeof(*nspid)) != (ssize_t)sizeof(*nspid)) {
		CHECK(waitpid(mid, &st, 0) == mid);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
			fprintf(stderr, "no pid namespaces here: skipped\n");
			exit(77);
		}
		CHECK(!"vmmd in a pid namespace did not start");
	}
	close(pfd[0]);
	for (i = 0; i < 500; i++) {
		if ((fd = tc_connect_raw(sockpath)) >= 0) {
			close(fd);
			return mid;
		}
		tc_sleep_ms(10);
	}
	CHECK(!"vmmd did not listen");
	return -1;
}

static void
sc_daemon_ns(void)
{
	struct holder hold = { false }, quit = { true };
	struct holder_msg msg;
	Vmm__Hello h = VMM__HELLO__INIT;
	struct vmm_sess *s;
	pid_t mid, nspid, a;
	int ctl, st;

	mid = start_ns_daemon("idle_timeout_ms = 0\n", &nspid);

	/* Served, and its chunks back when it is SIGKILLed. */
	a = tc_spawn(holder, &hold, &ctl);
	tc_ctl_recv(ctl, &msg, sizeof(msg), 5000);
	CHECK(session_pid(msg.session) == 0);
	wait_pool(8 * MiB, 0);
	kill(a, SIGKILL);
	tc_wait_child(a, SIGKILL);
	close(ctl);
	wait_pool(0, 0);

	/* Its socket closed while it lives (and keeps the fd): quarantined,
	 * not lent again. */
	a = tc_spawn(holder, &quit, &ctl);
	tc_ctl_recv(ctl, &msg, sizeof(msg), 5000);
	wait_pool(0, 8 * MiB);
	/* Another process (pid 0 as well to vmmd, same uid) asks to resume
	 * that session: refused, the memory stays quarantined. */
	CHECK(vmm_sess_connect(&s, sockpath, 5000) == 0);
	h.client_name = "impostor";
	h.kind = VMM__CLIENT_KIND__CLIENT_KIND_APP;
	h.resume_session = msg.session;
	h.resume_instance = msg.instance;
	CHECK(vmm_sess_hello(s, &h, 5000) == 0);
	CHECK(!vmm_sess_hello_reply(s)->resumed);
	vmm_sess_close(s);
	wait_pool(0, 8 * MiB);
	kill(a, SIGKILL);
	tc_wait_child(a, SIGKILL);
	close(ctl);
	wait_pool(0, 0);

	kill(nspid, SIGTERM);
	CHECK(waitpid(mid, &st, 0) == mid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Takes 8 MiB and releases it at once. */
static int
taker(void *arg, int ctl)
{
	struct tc_chunk ch[4];
	struct tc *c = tc_open(sockpath, "taker", false);
	int n;

	(void)arg;
	CHECK((n = tc_acquire(c, 8 * MiB, 0, ch, 4)) == 1);
	tc_close_chunks(ch, 1);
	CHECK(tc_release(c, &ch[0].id, 1) == 0);
	tc_ctl_send(ctl, "k", 1);
	tc_close(c);
	return 0;
}

/* Chunks created after two processes took and released 8 MiB in turn. */
static uint64_t
creates_for_two(const char *conf)
{
	struct tc *adm;
	pid_t mid, nspid, a;
	uint64_t n;
	int ctl, st, i;
	char k;

	mid = start_ns_daemon(conf, &nspid);
	for (i = 0; i < 2; i++) {
		a = tc_spawn(taker, NULL, &ctl);
		tc_ctl_recv(ctl, &k, 1, 5000);
		CHECK(tc_wait_child(a, 0) == 0);
		close(ctl);
	}
	adm = tc_open(sockpath, "admin", true);
	n = tc_counter(adm, "creates");
	tc_close(adm);
	kill(nspid, SIGTERM);
	CHECK(waitpid(mid, &st, 0) == mid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	return n;
}

static void
sc_tenants(void)
{
	/* Same uid, tenant = uid: the second process reuses the chunk. */
	CHECK(creates_for_two("idle_timeout_ms = 0\n") == 1);
	/* tenant = uid+cgroup, cgroups unknown: each its own tenant. */
	CHECK(creates_for_two("idle_timeout_ms = 0\ntenant = uid+cgroup\n") == 2);
}

/* In a pid namespace of its own: a holder as pid 1 there. */
static int
ns_holder(void *arg, int ctl)
{
	int go[2], st;
	pid_t p;

	(void)arg;
	if (unshare(CLONE_NEWPID) != 0) {
		p = -1;
		tc_ctl_send(ctl, &p, sizeof(p));
		return 0;
	}
	CHECK(pipe(go) == 0);
	CHECK((p = fork()) >= 0);
	if (p == 0) {
		struct holder hold = { false };
		char b;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		CHECK(getpid() == 1);
		/* Its message after ours on the shared ctl socket. */
		close(go[1]);
		CHECK(read(go[0], &b, 1) == 1);
		_exit(holder(&hold, ctl));
	}
	tc_ctl_send(ctl, &p, sizeof(p));
	CHECK(write(go[1], "g", 1) == 1);
	CHECK(waitpid(p, &st, 0) == p);
	return 0;
}

static void
sc_client_ns(void)
{
	struct holder_msg msg;
	struct tc *adm;
	pid_t d, mid, p;
	int ctl;

	d = tc_start_in("sock", "idle_timeout_ms = 0\n", sockpath,
	    sizeof(sockpath), &adm);
	mid = tc_spawn(ns_holder, NULL, &ctl);
	tc_ctl_recv(ctl, &p, sizeof(p), 5000);
	if (p < 0) {
		fprintf(stderr, "no pid namespaces here: skipped\n");
		tc_stop_with(d, adm);
		exit(77);
	}
	tc_ctl_recv(ctl, &msg, sizeof(msg), 5000);
	/* vmmd sees it by its pid here, not as 1. */
	CHECK(session_pid(msg.session) == (uint32_t)p);
	wait_pool(8 * MiB, 0);
	kill(p, SIGKILL);
	CHECK(tc_wait_child(mid, 0) == 0);
	close(ctl);
	wait_pool(0, 0);
	tc_stop_with(d, adm);
}

int
main(int argc, char **argv)
{
	CHECK(argc == 2);
	if (strcmp(argv[1], "daemon_ns") == 0)
		sc_daemon_ns();
	else if (strcmp(argv[1], "client_ns") == 0)
		sc_client_ns();
	else if (strcmp(argv[1], "tenants") == 0)
		sc_tenants();
	else
		CHECK(!"unknown scenario");
	return 0;
}
