/*
 * vmmd admin requests: Stats, Clients, Trim and SetQuota are refused
 * (PERMISSION, counted) to a peer that is neither root nor in admin_group,
 * whatever kind it claims, and its session lives on; root and members of
 * admin_group (primary or supplementary) are answered; a quota set by an
 * admin applies; Trim gives every idle byte back; the socket admits only its
 * group.  The last VMMD_ADMIN_SESSIONS (4) of max_sessions are for admins:
 * once other peers fill the rest, the next is refused (LIMIT) while root
 * and admin_group members still get in, up to max_sessions.
 */
#include <cuda.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define NOBODY	65534
#define DAEMONG	1	/* some group other than nogroup */

static char		sockpath[1100];
static struct tc	*adm;

struct who {
	gid_t	gid;
	gid_t	groups[2];
	size_t	ngroups;
	bool	expect_admin;
};

/* Sends one request; returns the reply's type, or -code for an Error. */
static int
ask(struct tc *c, Vmm__Envelope *env, uint64_t rid)
{
	const Vmm__Envelope *r;
	struct vmm_frame_msg *m;
	int rc;

	CHECK((m = tc_call(c, env, NULL, 0)) != NULL);
	r = vmm_frame_msg_env(m);
	if (r->msg_case == VMM__ENVELOPE__MSG_ERROR) {
		CHECK(r->error->request_id == rid);
		rc = -(int)r->error->code;
	} else {
		CHECK(vmm_frame_request_id(r) == rid);
		rc = (int)r->msg_case;
	}
	vmm_frame_msg_free(m);
	return rc;
}

/* Each admin request once; checks the answers against admin. */
static void
admin_requests(struct tc *c, bool admin)
{
	const int denied = -VMM__ERROR_CODE__ERROR_CODE_PERMISSION;
	Vmm__Envelope env;
	Vmm__StatsRequest st = VMM__STATS_REQUEST__INIT;
	Vmm__ClientsRequest cl = VMM__CLIENTS_REQUEST__INIT;
	Vmm__TrimRequest tr = VMM__TRIM_REQUEST__INIT;
	Vmm__SetQuota sq = VMM__SET_QUOTA__INIT;

	st.request_id = tc_rid(c);
	env = vmm_frame_env_stats_request(&st);
	CHECK(ask(c, &env, st.request_id) == (admin ?
	    VMM__ENVELOPE__MSG_STATS_REPLY : denied));

	cl.request_id = tc_rid(c);
	env = vmm_frame_env_clients_request(&cl);
	CHECK(ask(c, &env, cl.request_id) == (admin ?
	    VMM__ENVELOPE__MSG_CLIENTS_REPLY : denied));

	tr.request_id = tc_rid(c);
	env = vmm_frame_env_trim_request(&tr);
	CHECK(ask(c, &env, tr.request_id) == (admin ?
	    VMM__ENVELOPE__MSG_TRIM_REPLY : denied));

	sq.request_id = tc_rid(c);
	sq.kind = VMM__QUOTA_KIND__QUOTA_KIND_UID;
	sq.key = (char *)"65534";
	sq.bytes = 0;
	env = vmm_frame_env_set_quota(&sq);
	CHECK(ask(c, &env, sq.request_id) == (admin ?
	    VMM__ENVELOPE__MSG_ACK : denied));
}

/* As NOBODY: connects (claiming to be an admin tool), checks the admin
 * answers and that the session still works. */
static int
child_peer(void *arg, int ctl)
{
	const struct who *w = arg;
	struct tc_chunk ch;
	struct tc *c;

	(void)ctl;
	tc_become(NOBODY, w->gid, w->groups, w->ngroups);
	c = tc_open(sockpath, "not-root", true);
	admin_requests(c, w->expect_admin);
	if (w->expect_admin) {
		/* Its own session, as SO_PEERCRED saw it. */
		Vmm__Envelope env;
		Vmm__ClientsRequest cl = VMM__CLIENTS_REQUEST__INIT;
		const Vmm__Envelope *r;
		struct vmm_frame_msg *m;
		bool seen = false;
		size_t i;

		cl.request_id = tc_rid(c);
		env = vmm_frame_env_clients_request(&cl);
		CHECK((m = tc_call(c, &env, NULL, 0)) != NULL);
		r = vmm_frame_msg_env(m);
		CHECK(r->msg_case == VMM__ENVELOPE__MSG_CLIENTS_REPLY);
		for (i = 0; i < r->clients_reply->n_sessions; i++) {
			const Vmm__SessionStats *s = r->clients_reply->sessions[i];

			if (s->session_id == c->session_id) {
				CHECK(s->pid == (uint32_t)getpid());
				CHECK(s->uid == NOBODY && s->gid == w->gid);
				seen = true;
			}
		}
		CHECK(seen);
		vmm_frame_msg_free(m);
	}
	CHECK(tc_acquire(c, c->granularity, 0, &ch, 1) == 1);
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(c, &ch.id, 1) == 0);
	tc_close(c);
	return 0;
}

/* As NOBODY outside the socket's group: connect is refused. */
static int
child_outsider(void *arg, int ctl)
{
	gid_t g = DAEMONG;
	int fd;

	(void)arg;
	(void)ctl;
	tc_become(NOBODY, DAEMONG, &g, 1);
	fd = tc_connect_raw(sockpath);
	if (fd >= 0)
		fprintf(stderr, "outsider: connected to a 0660 socket\n");
	CHECK(fd < 0 && errno == EACCES);
	return 0;
}

static void
run(int (*fn)(void *, int), struct who *w)
{
	pid_t p;
	int ctl;

	p = tc_spawn(fn, w, &ctl);
	CHECK(tc_wait_child(p, 0) == 0);
	close(ctl);
}

static pid_t
start(const char *sub, const char *conf)
{
	return tc_start_in(sub, conf, sockpath, sizeof(sockpath), &adm);
}

static void
stop(pid_t d)
{
	tc_stop_with(d, adm);
}

/* Connects expecting the session limit: an Error LIMIT, then EOF. */
static void
expect_limit(void)
{
	struct vmm_frame_reader *rd;
	struct vmm_frame_msg *m;
	const Vmm__Envelope *e;
	int fd;

	CHECK((fd = tc_connect_raw(sockpath)) >= 0);
	CHECK((rd = vmm_frame_reader_new(VMM_FRAME_PEER_DAEMON)) != NULL);
	CHECK(tc_recv_raw(fd, rd, &m, 10000) == 1);
	e = vmm_frame_msg_env(m);
	CHECK(e->msg_case == VMM__ENVELOPE__MSG_ERROR);
	CHECK(e->error->code == VMM__ERROR_CODE__ERROR_CODE_LIMIT);
	vmm_frame_msg_free(m);
	CHECK(tc_wait_eof(fd, 10000) == 0);
	vmm_frame_reader_free(rd);
	close(fd);
}

#define RESERVE_MAX	8	/* max_sessions of the "reserve" daemon */
#define RESERVE_ADMIN	4	/* VMMD_ADMIN_SESSIONS */

/* As NOBODY, not an admin: takes every place left to non-admins (root's
 * adm holds one), is refused the next, and holds its sessions until the
 * parent says. */
static int
child_filler(void *arg, int ctl)
{
	struct tc *c[RESERVE_MAX];
	gid_t g = NOBODY;
	int i, n = RESERVE_MAX - RESERVE_ADMIN - 1;
	char b = 1;

	(void)arg;
	tc_become(NOBODY, NOBODY, &g, 1);
	for (i = 0; i < n; i++)
		c[i] = tc_open(sockpath, "filler", false);
	expect_limit();
	tc_ctl_send(ctl, &b, 1);
	tc_ctl_recv(ctl, &b, 1, 30000);
	for (i = 0; i < n; i++)
		tc_close(c[i]);
	return 0;
}

/* As NOBODY in admin_group (supplementary): gets in while non-admins are
 * refused. */
static int
child_group_admin(void *arg, int ctl)
{
	gid_t g[2] = { NOBODY, DAEMONG };
	struct tc *c;

	(void)arg;
	(void)ctl;
	tc_become(NOBODY, NOBODY, g, 2);
	c = tc_open(sockpath, "group-admin", true);
	admin_requests(c, true);
	tc_close(c);
	return 0;
}

/* Waits until the daemon counts n sessions. */
static void
wait_sessions(uint32_t n)
{
	int i;

	for (i = 0; i < 1000 && tc_sessions(adm) != n; i++)
		tc_sleep_ms(10);
	CHECK(tc_sessions(adm) == n);
}

/* max_sessions = 8: non-admins fill 4 places (adm holds one), the fifth
 * is refused; an admin by group and root still get in, up to 8. */
static void
test_reserve(void)
{
	struct tc *c[RESERVE_ADMIN];
	uint64_t refused;
	pid_t p;
	int ctl, i;
	char b = 0;

	refused = tc_counter(adm, "sessions_refused");
	p = tc_spawn(child_filler, NULL, &ctl);
	tc_ctl_recv(ctl, &b, 1, 30000);
	CHECK(tc_counter(adm, "sessions_refused") == refused + 1);
	wait_sessions(RESERVE_MAX - RESERVE_ADMIN);
	run(child_group_admin, NULL);
	wait_sessions(RESERVE_MAX - RESERVE_ADMIN);
	for (i = 0; i < RESERVE_ADMIN; i++)
		c[i] = tc_open(sockpath, "root", false);
	wait_sessions(RESERVE_MAX);
	/* Admins too stop at max_sessions. */
	expect_limit();
	CHECK(tc_counter(adm, "sessions_refused") == refused + 2);
	for (i = 0; i < RESERVE_ADMIN; i++)
		tc_close(c[i]);
	tc_ctl_send(ctl, &b, 1);
	CHECK(tc_wait_child(p, 0) == 0);
	close(ctl);
}

/* SetQuota by name applies to the next Acquire; 0 removes it. */
static void
test_quota(void)
{
	Vmm__Envelope env;
	Vmm__SetQuota sq = VMM__SET_QUOTA__INIT;
	struct tc_chunk ch[2];
	struct tc *c;
	uint64_t g;

	c = tc_open(sockpath, "capped", false);
	g = c->granularity;
	sq.request_id = tc_rid(adm);
	sq.kind = VMM__QUOTA_KIND__QUOTA_KIND_NAME;
	sq.key = (char *)"capped";
	sq.bytes = g;
	env = vmm_frame_env_set_quota(&sq);
	CHECK(ask(adm, &env, sq.request_id) == VMM__ENVELOPE__MSG_ACK);
	CHECK(tc_acquire(c, 2 * g, 0, ch, 1) == -VMM__ERROR_CODE__ERROR_CODE_QUOTA);
	CHECK(tc_acquire(c, g, 0, &ch[0], 1) == 1);
	CHECK(tc_acquire(c, g, 0, &ch[1], 1) == -VMM__ERROR_CODE__ERROR_CODE_QUOTA);
	sq.request_id = tc_rid(adm);
	sq.bytes = 0;
	CHECK(ask(adm, &env, sq.request_id) == VMM__ENVELOPE__MSG_ACK);
	CHECK(tc_acquire(c, g, 0, &ch[1], 1) == 1);
	tc_close_chunks(ch, 2);
	CHECK(tc_release(c, &ch[0].id, 1) == 0);
	CHECK(tc_release(c, &ch[1].id, 1) == 0);
	tc_close(c);
}

/* Trim gives back exactly the idle bytes. */
static void
test_trim(void)
{
	struct tc_chunk ch[3];
	Vmm__PoolStats ps;
	uint64_t g = adm->granularity, idle;

	CHECK(tc_acquire(adm, g, 0, &ch[0], 1) == 1);
	CHECK(tc_acquire(adm, 2 * g, 0, &ch[1], 1) == 1);
	CHECK(tc_acquire(adm, 3 * g, 0, &ch[2], 1) == 1);
	tc_close_chunks(ch, 3);
	CHECK(tc_release(adm, &ch[0].id, 1) == 0);
	CHECK(tc_release(adm, &ch[2].id, 1) == 0);
	tc_pool(adm, &ps);
	idle = ps.idle_bytes;
	CHECK(idle >= 4 * g && ps.lent_bytes == 2 * g);
	CHECK(tc_trim(adm, 0, false) == (int64_t)idle);
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 0 && ps.physical_bytes == 2 * g &&
	    ps.lent_bytes == 2 * g);
	CHECK(tc_trim(adm, 0, false) == 0);
	CHECK(tc_release(adm, &ch[1].id, 1) == 0);
}

int
main(void)
{
	struct who nob = { NOBODY, { NOBODY }, 1, false };
	struct who supp = { DAEMONG, { DAEMONG, NOBODY }, 2, true };
	uint64_t denied, fails;
	pid_t d;

	/* No admin group: only root is an admin. */
	d = start("noadmin", "idle_timeout_ms = 0\nsocket_group = nogroup\n");
	denied = tc_counter(adm, "permission_denied");
	fails = tc_counter(adm, "failures");
	CHECK(denied == 0);
	run(child_peer, &nob);
	CHECK(tc_counter(adm, "permission_denied") == 4);
	CHECK(tc_counter(adm, "failures") == fails + 4);
	admin_requests(adm, true);
	run(child_outsider, NULL);
	test_quota();
	test_trim();
	stop(d);

	/* admin_group = nogroup: the same peer is an admin, and so is one
	 * that has the group only as a supplementary group. */
	d = start("admin", "idle_timeout_ms = 0\nsocket_group = nogroup\n"
	    "admin_group = nogroup\n");
	nob.expect_admin = true;
	run(child_peer, &nob);
	run(child_peer, &supp);
	CHECK(tc_counter(adm, "permission_denied") == 0);
	stop(d);

	/* Places kept for admins; admin_group "daemon" is DAEMONG. */
	d = start("reserve", "idle_timeout_ms = 0\nsocket_group = nogroup\n"
	    "admin_group = daemon\nmax_sessions = 8\n");
	test_reserve();
	stop(d);
	return 0;
}
