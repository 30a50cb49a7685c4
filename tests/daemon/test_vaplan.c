/*
 * The address plan (issue 11, item 5) at the protocol level: vmmd hands
 * each client VA ranges from its window, disjoint across clients; bad
 * requests and claims are refused and counted; a session's ranges are
 * freed when its process is gone, kept while its session is quarantined.
 *
 *   plan       two sessions: ranges in the window, disjoint, aligned, listed
 *              by VaPlanRequest with their sessions; a miss (VaPlaced)
 *              moves the range out of the plan and is counted
 *   bad        absurd sizes and alignments, the per-session bound, a
 *              VaPlaced of a range not planned, a size-0 request (a bad
 *              frame: the session closes), a version 3 session's VaRequest
 *   claim      claims after a restart: overlapping another session's range,
 *              overlapping its own, over the bound: refused and counted;
 *              the rest recorded, and new plans keep clear of them
 *   lifetime   a child's range stays planned while its session is
 *              quarantined (socket closed, process alive) and is handed
 *              out again once the process is gone
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define GiB	(1ull << 30)
#define TiB	(1ull << 40)
/* The window of GPU ordinal 0 (daemon/vmmd.h: VMMD_VA_BASE, _WINDOW). */
#define WBASE	(32 * TiB)
#define WSIZE	(4 * TiB)
#define BOUND	64	/* VMMD_VA_MAX_RANGES */

static char	sockpath[1100];

/* VaRequest: 0 and *addr, or -code of the Error. */
static int
va_req(struct tc *c, uint64_t size, uint64_t align, uint64_t *addr)
{
	Vmm__VaRequest q = VMM__VA_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_va_request(&q);
	struct vmm_frame_msg *m;
	const Vmm__VaReply *r;
	int rc;

	q.size = size;
	q.alignment = align;
	if ((rc = tc_request(c, &env, &m, NULL, 0)) != 0)
		return rc;
	r = vmm_frame_msg_env(m)->va_reply;
	CHECK(r->addr == 0 || r->size == size);
	*addr = r->addr;
	vmm_frame_msg_free(m);
	return 0;
}

/* VaPlaced: 0 (Ack), or -code of the Error. */
static int
va_placed(struct tc *c, uint64_t planned, uint64_t addr, uint64_t size)
{
	Vmm__VaPlaced p = VMM__VA_PLACED__INIT;
	Vmm__Envelope env = vmm_frame_env_va_placed(&p);
	struct vmm_frame_msg *m;
	int rc;

	p.planned = planned;
	p.addr = addr;
	p.size = size;
	if ((rc = tc_request(c, &env, &m, NULL, 0)) == 0)
		vmm_frame_msg_free(m);
	return rc;
}

/* VaClaim of n ranges: accepted flags into ok. */
static void
va_claim(struct tc *c, const uint64_t *addr, const uint64_t *size, size_t n,
    bool *ok)
{
	Vmm__VaRange r[BOUND], *rp[BOUND];
	Vmm__VaClaim q = VMM__VA_CLAIM__INIT;
	Vmm__Envelope env = vmm_frame_env_va_claim(&q);
	const Vmm__VaClaimReply *rep;
	struct vmm_frame_msg *m;
	size_t i;

	CHECK(n <= BOUND);
	for (i = 0; i < n; i++) {
		vmm__va_range__init(&r[i]);
		r[i].addr = addr[i];
		r[i].size = size[i];
		rp[i] = &r[i];
	}
	q.n_ranges = n;
	q.ranges = rp;
	CHECK(tc_request(c, &env, &m, NULL, 0) == 0);
	rep = vmm_frame_msg_env(m)->va_claim_reply;
	CHECK(rep->n_accepted == n);
	for (i = 0; i < n; i++)
		ok[i] = rep->accepted[i];
	vmm_frame_msg_free(m);
}

/* The plan as an admin sees it: how many ranges session sid has, and
 * whether [addr, addr+size) is one of them (planned as said). */
static unsigned
plan_of(uint64_t sid, uint64_t addr, uint64_t size, bool planned, bool *found)
{
	struct tc *adm = tc_open(sockpath, "admin", true);
	Vmm__VaPlanRequest q = VMM__VA_PLAN_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_va_plan_request(&q);
	const Vmm__VaPlanReply *r;
	struct vmm_frame_msg *m;
	unsigned n = 0;
	size_t i;

	*found = false;
	m = tc_call_expect(adm, &env, VMM__ENVELOPE__MSG_VA_PLAN_REPLY);
	r = vmm_frame_msg_env(m)->va_plan_reply;
	CHECK(r->window_base == WBASE && r->window_size == WSIZE);
	CHECK(r->n_ranges == r->total);
	for (i = 0; i < r->n_ranges; i++) {
		/* By address. */
		CHECK(i == 0 || r->ranges[i - 1]->addr <= r->ranges[i]->addr);
		if (r->ranges[i]->session_id != sid)
			continue;
		n++;
		if (r->ranges[i]->addr == addr && r->ranges[i]->size == size &&
		    r->ranges[i]->planned == planned)
			*found = true;
	}
	vmm_frame_msg_free(m);
	tc_close(adm);
	return n;
}

/* ---- plan ------------------------------------------------------------------ */

static void
plan(void)
{
	struct tc *a = tc_open(sockpath, "a", false);
	struct tc *b = tc_open(sockpath, "b", false);
	uint64_t xa, xb, xa2;
	bool found;

	CHECK(va_req(a, 4 * GiB, 2 << 20, &xa) == 0);
	CHECK(va_req(b, 4 * GiB, 2 << 20, &xb) == 0);
	CHECK(va_req(a, 6 * GiB, 1 * GiB, &xa2) == 0);
	/* In the window, aligned, disjoint. */
	CHECK(xa >= WBASE && xa + 4 * GiB <= WBASE + WSIZE);
	CHECK(xb >= WBASE && xb + 4 * GiB <= WBASE + WSIZE);
	CHECK(xa2 >= WBASE && xa2 + 6 * GiB <= WBASE + WSIZE);
	CHECK(xa % (2 << 20) == 0 && xb % (2 << 20) == 0 && xa2 % GiB == 0);
	CHECK(xa + 4 * GiB <= xb || xb + 4 * GiB <= xa);
	CHECK(xa2 + 6 * GiB <= xb || xb + 4 * GiB <= xa2);
	CHECK(xa2 + 6 * GiB <= xa || xa + 4 * GiB <= xa2);
	CHECK(plan_of(a->session_id, xa, 4 * GiB, true, &found) == 2 && found);
	CHECK(plan_of(b->session_id, xb, 4 * GiB, true, &found) == 1 && found);
	CHECK(tc_admin_counter(sockpath, "va_planned") == 3);

	/* b's reservation went elsewhere: counted, recorded unplanned there,
	 * and its planned range is free for the next one. */
	CHECK(tc_admin_counter(sockpath, "va_hint_missed") == 0);
	/* Placed where planned: not a miss, nothing changes. */
	CHECK(va_placed(a, xa, xa, 4 * GiB) == 0);
	CHECK(tc_admin_counter(sockpath, "va_hint_missed") == 0);
	CHECK(plan_of(a->session_id, xa, 4 * GiB, true, &found) == 2 && found);
	CHECK(va_placed(b, xb, 0x7f0000000000ull, 4 * GiB) == 0);
	CHECK(tc_admin_counter(sockpath, "va_hint_missed") == 1);
	CHECK(plan_of(b->session_id, 0x7f0000000000ull, 4 * GiB, false,
	    &found) == 1 && found);
	CHECK(plan_of(b->session_id, xb, 4 * GiB, true, &found) == 1 && !found);
	tc_close(a);
	tc_close(b);
}

/* ---- bad ------------------------------------------------------------------- */

static void
bad(void)
{
	struct tc *c = tc_open(sockpath, "bad", false);
	Vmm__VaRequest q = VMM__VA_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_va_request(&q);
	Vmm__Hello h = VMM__HELLO__INIT;
	struct vmm_frame_msg *m;
	struct vmm_sess *old;
	unsigned char buf[256];
	uint64_t x, got[BOUND];
	int i;

	/* Bigger than the window, an alignment bigger than the window. */
	CHECK(va_req(c, 8 * TiB, 0, &x) == -VMM__ERROR_CODE__ERROR_CODE_INVALID);
	CHECK(va_req(c, GiB, 8 * TiB, &x) ==
	    -VMM__ERROR_CODE__ERROR_CODE_INVALID);
	CHECK(tc_admin_counter(sockpath, "va_refused") == 2);
	/* Not a range of this session's plan. */
	CHECK(va_placed(c, WBASE, WBASE + GiB, GiB) ==
	    -VMM__ERROR_CODE__ERROR_CODE_INVALID);
	/* The bound: BOUND ranges, then a refusal; nothing changes. */
	for (i = 0; i < BOUND; i++) {
		CHECK(va_req(c, GiB, 0, &got[i]) == 0 && got[i] != 0);
		CHECK(i == 0 || got[i] != got[i - 1]);
	}
	CHECK(va_req(c, GiB, 0, &x) == -VMM__ERROR_CODE__ERROR_CODE_LIMIT);
	CHECK(tc_admin_counter(sockpath, "va_refused") == 3);
	tc_close(c);

	/* Absurd on the wire (size 0, an alignment not a power of two): a
	 * bad frame, the session closes. */
	for (i = 0; i < 3; i++) {
		c = tc_open(sockpath, "bad", false);
		q.request_id = tc_rid(c);
		q.size = i == 0 ? 0 : i == 1 ? GiB : VMM_PROTO_MAX_VA_SIZE + 1;
		q.alignment = i == 1 ? 3 << 20 : 0;
		CHECK(tc_send_raw(c->fd, buf, tc_pack(&env, buf, sizeof(buf)),
		    NULL, 0) == 0);
		CHECK(tc_wait_eof(c->fd, 5000) == 0);
		tc_close(c);
	}
	c = tc_open(sockpath, "bad", false);
	/* The first session is quarantined (this process lives): its
	 * BOUND ranges of 1 GiB from WBASE are still planned. */
	CHECK(va_req(c, GiB, 0, &x) == 0 && x == WBASE + BOUND * GiB);
	tc_close(c);

	/* A version 3 session has no plan: its VaRequest closes it; its
	 * other requests still work. */
	CHECK(vmm_sess_connect(&old, sockpath, 5000) == 0);
	h.protocol_version = 3;
	h.client_name = "v3";
	h.kind = VMM__CLIENT_KIND__CLIENT_KIND_APP;
	CHECK(vmm_sess_hello(old, &h, 5000) == 0);
	CHECK(vmm_sess_hello_reply(old)->protocol_version == 3);
	q.request_id = 0;
	q.size = GiB;
	q.alignment = 0;
	CHECK(vmm_sess_call(old, &env, NULL, 0, 5000, &m) == VMM_SESS_EREFUSED);
	CHECK(vmm_sess_error(old)->code == VMM__ERROR_CODE__ERROR_CODE_BAD_STATE);
	vmm_sess_close(old);
}

/* ---- claim ------------------------------------------------------------------ */

static void
claim(void)
{
	struct tc *a = tc_open(sockpath, "a", false);
	struct tc *b = tc_open(sockpath, "b", false);
	struct tc *c = tc_open(sockpath, "c", false);
	uint64_t xa, addr[BOUND], size[BOUND], x;
	bool ok[BOUND], found;
	int i;

	CHECK(va_req(a, 4 * GiB, 0, &xa) == 0 && xa == WBASE);
	/* b claims: a's range (overlapping it by one page), a range of its
	 * own, the same again (overlapping itself), one outside the window
	 * (a reservation whose hint was missed). */
	addr[0] = xa + 4 * GiB - 4096;
	size[0] = GiB;
	addr[1] = WBASE + 64 * GiB;
	size[1] = 8 * GiB;
	addr[2] = WBASE + 66 * GiB;
	size[2] = GiB;
	addr[3] = 0x7e0000000000ull;
	size[3] = 4 * GiB;
	va_claim(b, addr, size, 4, ok);
	CHECK(!ok[0] && ok[1] && !ok[2] && ok[3]);
	CHECK(tc_admin_counter(sockpath, "va_claims_refused") == 2);
	CHECK(tc_admin_counter(sockpath, "va_claimed") == 2);
	CHECK(plan_of(b->session_id, addr[1], size[1], true, &found) == 2 &&
	    found);
	CHECK(plan_of(b->session_id, addr[3], size[3], false, &found) == 2 &&
	    found);
	CHECK(plan_of(a->session_id, xa, 4 * GiB, true, &found) == 1 && found);
	/* New plans keep clear of what was claimed. */
	CHECK(va_req(c, 61 * GiB, 0, &x) == 0);
	CHECK(x >= WBASE + 72 * GiB);
	CHECK(va_req(c, 56 * GiB, 0, &x) == 0 && x == xa + 4 * GiB);

	/* Over the bound: c holds 2, claims BOUND - 1 disjoint ranges. */
	for (i = 0; i < BOUND - 1; i++) {
		addr[i] = WBASE + TiB + (uint64_t)i * 2 * GiB;
		size[i] = GiB;
	}
	va_claim(c, addr, size, BOUND - 1, ok);
	for (i = 0; i < BOUND - 1; i++)
		CHECK(ok[i] == (i < BOUND - 2));
	CHECK(tc_admin_counter(sockpath, "va_claims_refused") == 3);
	tc_close(a);
	tc_close(b);
	tc_close(c);
}

/* ---- lifetime ------------------------------------------------------------- */

/* A child that gets a range of size bytes, sends its address and session,
 * closes its socket (quarantine) if told 'q', and exits when told 'x'. */
static pid_t
holder(int *to, int *from, uint64_t size)
{
	int p1[2], p2[2];
	pid_t pid;

	CHECK(pipe(p1) == 0 && pipe(p2) == 0);
	CHECK((pid = fork()) >= 0);
	if (pid == 0) {
		struct tc *c = tc_open(sockpath, "holder", false);
		uint64_t v[2];
		char cue;

		close(p1[1]);
		close(p2[0]);
		CHECK(va_req(c, size, 0, &v[0]) == 0 && v[0] != 0);
		v[1] = c->session_id;
		CHECK(write(p2[1], v, sizeof(v)) == sizeof(v));
		while (read(p1[0], &cue, 1) == 1 && cue != 'x')
			if (cue == 'q') {
				tc_close(c);
				CHECK(write(p2[1], "q", 1) == 1);
			}
		_exit(0);
	}
	close(p1[0]);
	close(p2[1]);
	*to = p1[1];
	*from = p2[0];
	return pid;
}

static void
lifetime(void)
{
	uint64_t v[2], x = 0;
	struct tc *c;
	bool found;
	int to, from, st, i;
	char cue;
	pid_t pid;

	pid = holder(&to, &from, 8 * GiB);
	CHECK(read(from, v, sizeof(v)) == sizeof(v));
	CHECK(v[0] == WBASE);
	/* Quarantined: socket closed, process alive: still planned. */
	CHECK(write(to, "q", 1) == 1);
	CHECK(read(from, &cue, 1) == 1);
	tc_sleep_ms(50);
	CHECK(plan_of(v[1], v[0], 8 * GiB, true, &found) == 1 && found);
	c = tc_open(sockpath, "next", false);
	CHECK(va_req(c, 8 * GiB, 0, &x) == 0);
	CHECK(x >= v[0] + 8 * GiB);
	tc_close(c);
	/* The process is gone: the range is free for the next client. */
	CHECK(write(to, "x", 1) == 1);
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
	    WEXITSTATUS(st) == 0);
	for (i = 0; i < 500; i++) {
		if (plan_of(v[1], v[0], 8 * GiB, true, &found) == 0)
			break;
		tc_sleep_ms(10);
	}
	CHECK(plan_of(v[1], v[0], 8 * GiB, true, &found) == 0);
	c = tc_open(sockpath, "after", false);
	CHECK(va_req(c, 8 * GiB, 0, &x) == 0 && x == v[0]);
	tc_close(c);
	close(to);
	close(from);
}

int
main(int argc, char **argv)
{
	struct tc *adm;
	pid_t pid;

	CHECK(argc == 2);
	pid = tc_start_in(argv[1], "idle_timeout_ms = 0\n", sockpath,
	    sizeof(sockpath), &adm);
	if (strcmp(argv[1], "plan") == 0)
		plan();
	else if (strcmp(argv[1], "bad") == 0)
		bad();
	else if (strcmp(argv[1], "claim") == 0)
		claim();
	else if (strcmp(argv[1], "lifetime") == 0)
		lifetime();
	else
		CHECK(!"no such case");
	tc_stop_with(pid, adm);
	return 0;
}
