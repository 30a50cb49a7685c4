/*
 * The address plan (issue 11, item 5) with real processes under
 * LD_PRELOAD=libvmm_client.so: vmmd hands each client the VA it reserves,
 * the client passes it to cuMemAddressReserve as the hint.  The test
 * process starts vmmd and runs the clients as children forked before any
 * CUDA call; it never touches CUDA itself.
 *
 *   disjoint  two clients: every pointer lies in a planned range of its
 *             own process, the two processes' ranges are disjoint, no
 *             hint missed; `vmmctl va` and `vmmctl va --json` list them
 *   refuse    CUEMU_VA_HINT=refuse: every hint misses, everything still
 *             works (data checked, IPC too), the misses are counted in
 *             total and per client, the ranges are recorded unplanned
 *   ipc       an importer of a legacy IPC handle gets the exporter's very
 *             pointers (large and small allocations), data checked
 *   restart   vmmd restarted under a client: the client claims its
 *             reservations back (same addresses, planned), a new client
 *             is planned elsewhere
 *   reuse     a client exits: its range goes to the next client
 *   olddaemon a stand-in for a protocol 3 vmmd (this process) refuses
 *             Hello 4: the library says Hello again as 3, is served
 *             (cudaMemGetInfo gets the stand-in's figures) and sends it
 *             nothing of the address plan
 */
#include <cuda.h>
#include <cuda_runtime_api.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"
#include "unixsock.h"

#define MiB	(1ull << 20)
#define TiB	(1ull << 40)
#define WBASE	(32 * TiB)	/* daemon/vmmd.h: the window of ordinal 0 */
#define WSIZE	(4 * TiB)
#define CKRT(call) CHECK((call) == cudaSuccess)
#define LARGE	(64 * MiB + 4096)
#define SMALL	4096u

static char	sockdir[1024], sockpath[1100], vmmctl[1024];
static pid_t	daemon_pid;

/* What a client tells the test. */
struct report {
	uint64_t	large, small;
	int32_t		pid;
	cudaIpcMemHandle_t hl, hs;
};

static void
put(void *d, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);
	size_t i;

	CHECK(b != NULL);
	for (i = 0; i < n; i++)
		b[i] = (unsigned char)(seed * 7 + i * 13);
	CKRT(cudaMemcpy(d, b, n, cudaMemcpyHostToDevice));
	CKRT(cudaDeviceSynchronize());
	free(b);
}

static bool
holds(const void *d, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);
	size_t i;
	bool ok = true;

	CHECK(b != NULL);
	CKRT(cudaMemcpy(b, d, n, cudaMemcpyDeviceToHost));
	for (i = 0; i < n && ok; i++)
		ok = b[i] == (unsigned char)(seed * 7 + i * 13);
	free(b);
	return ok;
}

/* A client: a large and a small allocation with data, IPC handles of
 * both, reported; then, per command: 'm' allocate once more (and report
 * the pointer), 'x' free and exit. */
static int
client(void *arg, int ctl)
{
	struct report r;
	unsigned seed = (unsigned)(uintptr_t)arg;
	void *l, *s, *more;
	char cmd;

	memset(&r, 0, sizeof(r));
	CKRT(cudaSetDevice(0));
	CKRT(cudaMalloc(&l, LARGE));
	CKRT(cudaMalloc(&s, SMALL));
	put(l, LARGE, seed);
	put(s, SMALL, seed + 1);
	CKRT(cudaIpcGetMemHandle(&r.hl, l));
	CKRT(cudaIpcGetMemHandle(&r.hs, s));
	r.large = (uint64_t)(uintptr_t)l;
	r.small = (uint64_t)(uintptr_t)s;
	r.pid = (int32_t)getpid();
	tc_ctl_send(ctl, &r, sizeof(r));
	for (;;) {
		tc_ctl_recv(ctl, &cmd, 1, 60000);
		if (cmd == 'x')
			break;
		CHECK(cmd == 'm');
		CKRT(cudaMalloc(&more, LARGE));
		put(more, LARGE, seed + 2);
		CHECK(holds(more, LARGE, seed + 2));
		CHECK(holds(l, LARGE, seed));
		r.large = (uint64_t)(uintptr_t)more;
		tc_ctl_send(ctl, &r, sizeof(r));
	}
	CHECK(holds(l, LARGE, seed) && holds(s, SMALL, seed + 1));
	CKRT(cudaFree(l));
	CKRT(cudaFree(s));
	return 0;
}

/* An importer: opens both handles of r, checks the data, reports the
 * pointers it got; exits on 'x'. */
static int
importer(void *arg, int ctl)
{
	struct report r, got;
	unsigned seed = (unsigned)(uintptr_t)arg;
	void *l, *s;
	char cmd;

	tc_ctl_recv(ctl, &r, sizeof(r), 60000);
	CKRT(cudaSetDevice(0));
	CKRT(cudaIpcOpenMemHandle(&l, r.hl, cudaIpcMemLazyEnablePeerAccess));
	CKRT(cudaIpcOpenMemHandle(&s, r.hs, cudaIpcMemLazyEnablePeerAccess));
	CHECK(holds(l, LARGE, seed) && holds(s, SMALL, seed + 1));
	memset(&got, 0, sizeof(got));
	got.large = (uint64_t)(uintptr_t)l;
	got.small = (uint64_t)(uintptr_t)s;
	got.pid = (int32_t)getpid();
	tc_ctl_send(ctl, &got, sizeof(got));
	tc_ctl_recv(ctl, &cmd, 1, 60000);
	CKRT(cudaIpcCloseMemHandle(l));
	CKRT(cudaIpcCloseMemHandle(s));
	return 0;
}

/* ---- the plan as vmmd shows it ------------------------------------------ */

struct range {
	uint64_t	addr, size;
	uint32_t	pid;
	bool		planned;
};

/* Every range of the plan (at most max) into v; how many. */
static size_t
plan(struct range *v, size_t max)
{
	struct tc *adm = tc_open(sockpath, "admin", true);
	Vmm__VaPlanRequest q = VMM__VA_PLAN_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_va_plan_request(&q);
	const Vmm__VaPlanReply *r;
	struct vmm_frame_msg *m;
	size_t i, n;

	m = tc_call_expect(adm, &env, VMM__ENVELOPE__MSG_VA_PLAN_REPLY);
	r = vmm_frame_msg_env(m)->va_plan_reply;
	CHECK(r->window_base == WBASE && r->window_size == WSIZE);
	CHECK(r->total == r->n_ranges && r->n_ranges <= max);
	for (i = n = 0; i < r->n_ranges; i++, n++) {
		v[n].addr = r->ranges[i]->addr;
		v[n].size = r->ranges[i]->size;
		v[n].pid = r->ranges[i]->pid;
		v[n].planned = r->ranges[i]->planned;
	}
	vmm_frame_msg_free(m);
	tc_close(adm);
	return n;
}

/* The range of pid holding [p, p+len), or NULL. */
static const struct range *
range_of(const struct range *v, size_t n, int32_t pid, uint64_t p,
    uint64_t len)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (v[i].pid == (uint32_t)pid && p >= v[i].addr &&
		    p + len <= v[i].addr + v[i].size)
			return &v[i];
	return NULL;
}

/* va_hint_missed of pid's session, as `vmmctl clients` shows it. */
static uint64_t
missed_by(int32_t pid)
{
	return tc_admin_pid_figure(sockpath, (pid_t)pid,
	    TC_SESSION_FIELD(va_hint_missed));
}

/* Runs `vmmctl va [--json]` and checks that its output names addr. */
static void
vmmctl_shows(uint64_t addr, bool json)
{
	char cmd[2400], line[512], want[32];
	bool found = false;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "env -u LD_PRELOAD %s --socket %s va%s",
	    vmmctl, sockpath, json ? " --json" : "");
	snprintf(want, sizeof(want), "0x%llx", (unsigned long long)addr);
	CHECK((f = popen(cmd, "r")) != NULL);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, want) != NULL)
			found = true;
	CHECK(pclose(f) == 0);
	CHECK(found);
}

/* ---- scenarios ------------------------------------------------------------- */

static void
sc_disjoint(void)
{
	struct report a, b;
	struct range v[16];
	const struct range *ra, *rb, *sa, *sb;
	int ca, cb;
	pid_t pa, pb;
	size_t n, i, j;

	pa = tc_spawn(client, (void *)1, &ca);
	pb = tc_spawn(client, (void *)5, &cb);
	tc_ctl_recv(ca, &a, sizeof(a), 60000);
	tc_ctl_recv(cb, &b, sizeof(b), 60000);
	n = plan(v, 16);
	CHECK((ra = range_of(v, n, a.pid, a.large, LARGE)) != NULL);
	CHECK((sa = range_of(v, n, a.pid, a.small, SMALL)) != NULL);
	CHECK((rb = range_of(v, n, b.pid, b.large, LARGE)) != NULL);
	CHECK((sb = range_of(v, n, b.pid, b.small, SMALL)) != NULL);
	/* At the planned addresses, in the window, disjoint across clients. */
	for (i = 0; i < n; i++) {
		CHECK(v[i].planned);
		CHECK(v[i].addr >= WBASE && v[i].addr + v[i].size <= WBASE + WSIZE);
		for (j = 0; j < n; j++)
			if (v[i].pid != v[j].pid)
				CHECK(v[i].addr + v[i].size <= v[j].addr ||
				    v[j].addr + v[j].size <= v[i].addr);
	}
	CHECK(tc_admin_counter(sockpath, "va_hint_missed") == 0);
	CHECK(missed_by(a.pid) == 0 && missed_by(b.pid) == 0);
	vmmctl_shows(ra->addr, false);
	vmmctl_shows(rb->addr, true);
	tc_ctl_send(ca, "x", 1);
	tc_ctl_send(cb, "x", 1);
	CHECK(tc_wait_child(pa, 0) == 0 && tc_wait_child(pb, 0) == 0);
	(void)sa;
	(void)sb;
}

static void
sc_refuse(void)
{
	struct report a, b, got;
	struct range v[16];
	const struct range *ra;
	int ca, cb, ci;
	pid_t pa, pb, pi;
	size_t n;

	pa = tc_spawn(client, (void *)1, &ca);
	pb = tc_spawn(client, (void *)5, &cb);
	tc_ctl_recv(ca, &a, sizeof(a), 60000);
	tc_ctl_recv(cb, &b, sizeof(b), 60000);
	/* Each client's one reservation missed its hint: counted, and the
	 * range recorded where the driver put it. */
	CHECK(tc_admin_counter(sockpath, "va_hint_missed") == 2);
	CHECK(missed_by(a.pid) == 1 && missed_by(b.pid) == 1);
	n = plan(v, 16);
	CHECK((ra = range_of(v, n, a.pid, a.large, LARGE)) != NULL);
	CHECK(!ra->planned);
	CHECK(a.large < WBASE || a.large >= WBASE + WSIZE);
	CHECK(range_of(v, n, b.pid, b.small, SMALL) != NULL);
	/* A further allocation works as well. */
	tc_ctl_send(ca, "m", 1);
	tc_ctl_recv(ca, &a, sizeof(a), 60000);
	/* IPC: the exporter's address refused (the importer's reservation
	 * may still fall there by chance: forked children lay out alike),
	 * the data checked all the same, the importer's misses counted. */
	pi = tc_spawn(importer, (void *)5, &ci);
	tc_ctl_send(ci, &b, sizeof(b));
	tc_ctl_recv(ci, &got, sizeof(got), 60000);
	CHECK(missed_by(got.pid) >= 1);
	CHECK(tc_admin_counter(sockpath, "va_hint_missed") >= 3);
	tc_ctl_send(ci, "x", 1);
	CHECK(tc_wait_child(pi, 0) == 0);
	tc_ctl_send(ca, "x", 1);
	tc_ctl_send(cb, "x", 1);
	CHECK(tc_wait_child(pa, 0) == 0 && tc_wait_child(pb, 0) == 0);
}

static void
sc_ipc(void)
{
	struct report a, got;
	int ca, ci;
	pid_t pa, pi;

	pa = tc_spawn(client, (void *)3, &ca);
	tc_ctl_recv(ca, &a, sizeof(a), 60000);
	pi = tc_spawn(importer, (void *)3, &ci);
	tc_ctl_send(ci, &a, sizeof(a));
	tc_ctl_recv(ci, &got, sizeof(got), 60000);
	/* The same pointer in both processes. */
	CHECK(got.large == a.large);
	CHECK(got.small == a.small);
	CHECK(tc_admin_counter(sockpath, "va_hint_missed") == 0);
	tc_ctl_send(ci, "x", 1);
	CHECK(tc_wait_child(pi, 0) == 0);
	tc_ctl_send(ca, "x", 1);
	CHECK(tc_wait_child(pa, 0) == 0);
}

static void
sc_restart(void)
{
	const char *args[] = { NULL };
	struct report a, a2, b;
	struct range v[16];
	const struct range *ra;
	uint64_t raddr, rsize;
	int ca, cb;
	pid_t pa, pb;
	size_t n;

	pa = tc_spawn(client, (void *)1, &ca);
	tc_ctl_recv(ca, &a, sizeof(a), 60000);
	n = plan(v, 16);
	CHECK((ra = range_of(v, n, a.pid, a.large, LARGE)) != NULL);
	CHECK(ra->planned);
	raddr = ra->addr;
	rsize = ra->size;
	CHECK(tc_stop_daemon(daemon_pid) == 0);
	daemon_pid = tc_start_daemon(sockdir, "idle_timeout_ms = 0\n", args);
	CHECK(plan(v, 16) == 0);
	/* The client's next call reconnects: it claims its reservation back,
	 * then adopts its chunks. */
	tc_ctl_send(ca, "m", 1);
	tc_ctl_recv(ca, &a2, sizeof(a2), 60000);
	n = plan(v, 16);
	CHECK((ra = range_of(v, n, a.pid, a.large, LARGE)) != NULL);
	CHECK(ra->planned && ra->addr == raddr && ra->size == rsize);
	CHECK(range_of(v, n, a.pid, a2.large, LARGE) != NULL);
	CHECK(tc_admin_counter(sockpath, "va_claimed") >= 1 && tc_admin_counter(sockpath, "va_claims_refused") == 0);
	/* A new client is planned clear of it. */
	pb = tc_spawn(client, (void *)5, &cb);
	tc_ctl_recv(cb, &b, sizeof(b), 60000);
	CHECK(b.large + LARGE <= raddr || b.large >= raddr + rsize);
	n = plan(v, 16);
	CHECK(range_of(v, n, b.pid, b.large, LARGE) != NULL);
	tc_ctl_send(ca, "x", 1);
	tc_ctl_send(cb, "x", 1);
	CHECK(tc_wait_child(pa, 0) == 0 && tc_wait_child(pb, 0) == 0);
}

static void
sc_reuse(void)
{
	struct report a, b;
	struct range v[16];
	const struct range *ra;
	uint64_t raddr;
	int ca, cb, i;
	pid_t pa, pb;
	size_t n;

	pa = tc_spawn(client, (void *)1, &ca);
	tc_ctl_recv(ca, &a, sizeof(a), 60000);
	n = plan(v, 16);
	CHECK((ra = range_of(v, n, a.pid, a.large, LARGE)) != NULL);
	raddr = ra->addr;
	CHECK(raddr == WBASE);
	tc_ctl_send(ca, "x", 1);
	CHECK(tc_wait_child(pa, 0) == 0);
	/* vmmd sees the process go (pidfd) a moment later. */
	for (i = 0; i < 500 && plan(v, 16) > 0; i++)
		tc_sleep_ms(10);
	CHECK(plan(v, 16) == 0);
	pb = tc_spawn(client, (void *)5, &cb);
	tc_ctl_recv(cb, &b, sizeof(b), 60000);
	n = plan(v, 16);
	CHECK((ra = range_of(v, n, b.pid, b.large, LARGE)) != NULL);
	CHECK(ra->addr == raddr);
	tc_ctl_send(cb, "x", 1);
	CHECK(tc_wait_child(pb, 0) == 0);
}

/* ---- olddaemon ------------------------------------------------------------ */

#define OLD_FREE	(3ull << 30)
#define OLD_TOTAL	(7ull << 30)

static int
uuid_child(void *arg, int ctl)
{
	CUdevice d;
	CUuuid u;

	(void)arg;
	CHECK(cuInit(0) == CUDA_SUCCESS && cuDeviceGet(&d, 0) == CUDA_SUCCESS);
	CHECK(cuDeviceGetUuid_v2(&u, d) == CUDA_SUCCESS);
	tc_ctl_send(ctl, u.bytes, 16);
	return 0;
}

static int
meminfo_child(void *arg, int ctl)
{
	size_t f = 0, t = 0;

	(void)arg;
	CKRT(cudaSetDevice(0));
	CKRT(cudaMemGetInfo(&f, &t));
	CHECK(f == OLD_FREE && t == OLD_TOTAL);
	tc_ctl_send(ctl, "d", 1);
	return 0;
}

/* Serves one connection as a protocol 3 vmmd would: refuses a Hello of
 * another version; answers MemInfoRequest and Report.  Returns the version
 * the Hello said. */
static uint32_t
old_serve(int lfd, const uint8_t *uuid)
{
	struct vmm_frame_reader *rd = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT);
	struct vmm_frame_msg *m;
	unsigned char buf[1024];
	uint32_t version;
	int fd;

	CHECK(rd != NULL && (fd = accept(lfd, NULL, NULL)) >= 0);
	CHECK(tc_recv_raw(fd, rd, &m, 20000) == 1);
	CHECK(vmm_frame_msg_env(m)->msg_case == VMM__ENVELOPE__MSG_HELLO);
	version = vmm_frame_msg_env(m)->hello->protocol_version;
	if (version != 3) {
		Vmm__Error e = VMM__ERROR__INIT;
		Vmm__Envelope env = vmm_frame_env_error(&e);

		e.request_id = vmm_frame_msg_env(m)->hello->request_id;
		e.code = VMM__ERROR_CODE__ERROR_CODE_VERSION_MISMATCH;
		e.message = "protocol version not supported; vmmd speaks 2 to 3";
		CHECK(tc_send_raw(fd, buf, tc_pack(&env, buf, sizeof(buf)),
		    NULL, 0) == 0);
	} else {
		Vmm__HelloReply r = VMM__HELLO_REPLY__INIT;
		Vmm__Limits lim = VMM__LIMITS__INIT;
		Vmm__Envelope env = vmm_frame_env_hello_reply(&r);

		r.request_id = vmm_frame_msg_env(m)->hello->request_id;
		r.protocol_version = 3;
		r.session_id = 1;
		r.instance_id = 33;
		r.granularity = 2 * MiB;
		r.device_uuid.data = (uint8_t *)uuid;
		r.device_uuid.len = 16;
		lim.max_chunks_per_grant = 8;
		lim.max_frame = VMM_FRAME_MAX;
		lim.device_total_bytes = OLD_TOTAL;
		r.limits = &lim;
		CHECK(tc_send_raw(fd, buf, tc_pack(&env, buf, sizeof(buf)),
		    NULL, 0) == 0);
		vmm_frame_msg_free(m);
		/* Until the client hangs up: anything of protocol 4 fails. */
		while (tc_recv_raw(fd, rd, &m, 20000) == 1) {
			const Vmm__Envelope *in = vmm_frame_msg_env(m);
			Vmm__MemInfoReply mr = VMM__MEM_INFO_REPLY__INIT;
			Vmm__Ack ack = VMM__ACK__INIT;
			Vmm__Envelope out;

			if (in->msg_case == VMM__ENVELOPE__MSG_MEM_INFO_REQUEST) {
				mr.request_id = in->mem_info_request->request_id;
				mr.free_bytes = OLD_FREE;
				mr.total_bytes = OLD_TOTAL;
				out = vmm_frame_env_mem_info_reply(&mr);
			} else {
				CHECK(in->msg_case == VMM__ENVELOPE__MSG_REPORT);
				ack.request_id = in->report->request_id;
				out = vmm_frame_env_ack(&ack);
			}
			CHECK(tc_send_raw(fd, buf, tc_pack(&out, buf,
			    sizeof(buf)), NULL, 0) == 0);
			vmm_frame_msg_free(m);
		}
		m = NULL;
	}
	vmm_frame_msg_free(m);
	close(fd);
	vmm_frame_reader_free(rd);
	return version;
}

static void
sc_olddaemon(void)
{
	struct timeval tv = { .tv_sec = 20 };
	uint8_t uuid[16];
	char path[1200], cue;
	int ctl, lfd;
	pid_t pid;

	pid = tc_spawn(uuid_child, NULL, &ctl);
	tc_ctl_recv(ctl, uuid, 16, 60000);
	CHECK(tc_wait_child(pid, 0) == 0);
	close(ctl);
	mkdir(sockdir, 0755);
	CHECK(vmm_sess_path_uuid(path, sizeof(path), sockdir, uuid) == 0);
	unlink(path);
	CHECK((lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	CHECK(vmm_unix_bind(lfd, path) == 0 && listen(lfd, 4) == 0);
	/* accept() gives up after that too: a missing reconnect fails. */
	CHECK(setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
	pid = tc_spawn(meminfo_child, NULL, &ctl);
	CHECK(old_serve(lfd, uuid) == VMM_PROTOCOL_VERSION);
	CHECK(old_serve(lfd, uuid) == 3);
	tc_ctl_recv(ctl, &cue, 1, 60000);
	CHECK(tc_wait_child(pid, 0) == 0);
	close(lfd);
	unlink(path);
}

int
main(int argc, char **argv)
{
	const char *dir = getenv("VMM_SOCKET_DIR");
	const char *args[] = { NULL };

	CHECK(argc == 3 && dir != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s", dir);
	snprintf(vmmctl, sizeof(vmmctl), "%s", argv[2]);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	if (strcmp(argv[1], "olddaemon") == 0) {
		sc_olddaemon();
		return 0;
	}
	daemon_pid = tc_start_daemon(sockdir, "idle_timeout_ms = 0\n", args);
	if (strcmp(argv[1], "disjoint") == 0)
		sc_disjoint();
	else if (strcmp(argv[1], "refuse") == 0)
		sc_refuse();
	else if (strcmp(argv[1], "ipc") == 0)
		sc_ipc();
	else if (strcmp(argv[1], "restart") == 0)
		sc_restart();
	else if (strcmp(argv[1], "reuse") == 0)
		sc_reuse();
	else
		CHECK(!"no such scenario");
	tc_stop_daemon_ok(daemon_pid);
	return 0;
}
