/*
 * fake_vmmd — a stand-in for vmmd that the vmmctl tests talk to until (and
 * besides) the real daemon: canned replies, chosen by a scenario.
 *
 *   fake_vmmd SOCKET SCENARIO LOG
 *
 * Binds and listens on SOCKET, then forks: the parent exits 0 once the socket
 * accepts (so a test can run vmmctl right after it), the child serves one
 * connection and appends one line per message it receives to LOG.  The child
 * gives up after FAKE_LIFETIME seconds whatever happens.
 *
 * Scenarios:
 *   ok             serve everything: stats and clients in pages of
 *                  FAKE_PAGE sessions out of FAKE_NSESS, trim, quotas
 *   stale          bind but never listen, and exit: a socket nobody serves
 *   close          accept and close at once
 *   garbage        answer Hello with bytes that are not a message
 *   version        HelloReply with another protocol version
 *   version_error  Error VERSION_MISMATCH to Hello
 *   silent         never answer
 *   perm           Error PERMISSION to every admin request
 *   refuse         Error INVALID, with a message, to every admin request
 *   wrong          Ack to every admin request
 *   badpage        stats/clients claim more sessions than they ever send
 *   dupcounter     stats with the same counter twice
 *   goodbye        Goodbye SHUTDOWN to every admin request
 *   all            as ok, but stats sends every PoolStats field vmm.proto
 *                  has (found through its descriptor, not proto/figures.h)
 *                  and every counter of proto/figures.h, each with its own
 *                  value, and logs "figure pool|counter NAME VALUE" for each
 */
#include <sys/socket.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "figures.h"
#include "frame.h"
#include "unixsock.h"

#define FAKE_LIFETIME	20
#define FAKE_RECV_MS	15000
#define FAKE_NSESS	5
#define FAKE_PAGE	2
#define MiB		(UINT64_C(1) << 20)
#define GiB		(UINT64_C(1) << 30)

static const char	*scenario;
static FILE		*logfp;

/* Client names as a peer might claim them: quotes, controls, UTF-8 and
 * bytes that are not UTF-8. */
static const char *const names[FAKE_NSESS] = {
	"python3",
	"train \"x\" \\ y",
	"tab\there\nnewline",
	"caf\xc3\xa9",
	"bad\xff\xfe",
};

static const struct {
	const char	*name;
	uint64_t	 value;
} counters[] = {
	{ "grants", 42 },
	{ "releases", 40 },
	{ "creates", 12 },
	{ "stitches", 3 },
	{ "oom_recoveries", 1 },
	{ "failures", 0 },
};

#define NCOUNTERS	(sizeof(counters) / sizeof(counters[0]))

#define FAKE_COUNT_ONE(name, help) + 1
#define NALL_COUNTERS	(0 VMM_COUNTERS(FAKE_COUNT_ONE))

static int
is(const char *s)
{
	return strcmp(scenario, s) == 0;
}

static void
logline(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
logline(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vfprintf(logfp, fmt, ap);
	va_end(ap);
	fputc('\n', logfp);
	fflush(logfp);
}

static void
send_env(int fd, Vmm__Envelope *env)
{
	int	rc;

	if ((rc = vmm_frame_send(fd, VMM_FRAME_PEER_CLIENT, env, NULL, 0,
	    FAKE_RECV_MS)) < 0)
		logline("send error: %s", vmm_frame_strerror(rc));
}

static void
send_error(int fd, uint64_t id, Vmm__ErrorCode code, const char *msg)
{
	Vmm__Envelope	env;
	Vmm__Error	err = VMM__ERROR__INIT;

	err.request_id = id;
	err.code = code;
	err.message = (char *)msg;
	env = vmm_frame_env_error(&err);
	send_env(fd, &env);
}

static void
hello_reply(int fd, const Vmm__Hello *h)
{
	static uint8_t		uuid[VMM_PROTO_UUID_LEN] = {
		1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16
	};
	Vmm__Envelope		env;
	Vmm__HelloReply		r = VMM__HELLO_REPLY__INIT;
	Vmm__Limits		lim = VMM__LIMITS__INIT;
	struct ucred		cred;
	socklen_t		len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		cred.pid = 0;
	logline("hello version=%" PRIu32 " kind=%d name=%s pid=%s uuid_len=%zu",
	    h->protocol_version, (int)h->kind, h->client_name,
	    (pid_t)h->pid == cred.pid ? "peer" : "other", h->device_uuid.len);

	if (is("garbage")) {
		(void)!write(fd, "\x05\0\0\0\xff\xff\xff\xff\xff", 9);
		return;
	}
	if (is("version_error")) {
		send_error(fd, h->request_id,
		    VMM__ERROR_CODE__ERROR_CODE_VERSION_MISMATCH,
		    "this vmmd speaks protocol 3");
		return;
	}
	r.request_id = h->request_id;
	r.protocol_version = is("version") ? 99 : VMM_PROTOCOL_VERSION;
	r.session_id = 7;
	r.instance_id = 0xfa4e;
	r.granularity = 2 * MiB;
	r.device_uuid.data = uuid;
	r.device_uuid.len = sizeof(uuid);
	lim.max_chunks_per_grant = VMM_PROTO_MAX_CHUNKS;
	lim.max_frame = VMM_FRAME_MAX;
	lim.device_total_bytes = 80 * GiB;
	r.limits = &lim;
	env = vmm_frame_env_hello_reply(&r);
	send_env(fd, &env);
}

/*
 * Scenario "all": every uint64 field of PoolStats, as the wire schema has
 * them, set to 1, 2, 3, ... and every counter to 1001, 1002, ...; logged
 * once (log is false for later pages).
 */
static void
all_figures(Vmm__PoolStats *pool, Vmm__Counter *c, Vmm__Counter **cp,
    size_t *nc, int log)
{
	static const char *const cnames[] = {
#define FAKE_COUNTER_NAME(name, help) #name,
		VMM_COUNTERS(FAKE_COUNTER_NAME)
#undef FAKE_COUNTER_NAME
	};
	const ProtobufCMessageDescriptor *d = &vmm__pool_stats__descriptor;
	unsigned i;

	for (i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];

		if (f->type != PROTOBUF_C_TYPE_UINT64 ||
		    f->label != PROTOBUF_C_LABEL_NONE) {
			if (log)
				logline("figure pool %s unsupported", f->name);
			continue;
		}
		*(uint64_t *)(void *)((char *)pool + f->offset) = i + 1;
		if (log)
			logline("figure pool %s %u", f->name, i + 1);
	}
	for (i = 0; i < NALL_COUNTERS; i++) {
		vmm__counter__init(&c[i]);
		c[i].name = (char *)cnames[i];
		c[i].value = 1001 + i;
		cp[i] = &c[i];
		if (log)
			logline("figure counter %s %u", cnames[i], 1001 + i);
	}
	*nc = NALL_COUNTERS;
}

/* One page of sessions from offset, as StatsReply or ClientsReply. */
static void
sessions_reply(int fd, uint64_t id, uint32_t off, int stats)
{
	Vmm__Envelope		env;
	Vmm__StatsReply		sr = VMM__STATS_REPLY__INIT;
	Vmm__ClientsReply	cr = VMM__CLIENTS_REPLY__INIT;
	Vmm__PoolStats		pool = VMM__POOL_STATS__INIT;
	Vmm__Counter		c[NCOUNTERS + 1 + NALL_COUNTERS];
	Vmm__Counter		*cp[NCOUNTERS + 1 + NALL_COUNTERS];
	Vmm__SessionStats	s[FAKE_PAGE], *sp[FAKE_PAGE];
	size_t			i, n = 0, nc;

	for (i = off; !is("badpage") && i < FAKE_NSESS && n < FAKE_PAGE;
	    i++, n++) {
		vmm__session_stats__init(&s[n]);
		s[n].session_id = 100 + i;
		s[n].pid = 4000 + (uint32_t)i;
		s[n].uid = 1000;
		s[n].gid = 100;
		s[n].name = (char *)names[i];
		s[n].kind = i == 4 ? VMM__CLIENT_KIND__CLIENT_KIND_ADMIN :
		    VMM__CLIENT_KIND__CLIENT_KIND_APP;
		s[n].chunks_held = i;
		s[n].bytes_held = i * 2 * MiB;
		s[n].reported_in_use = i * MiB + (i != 0 ? 512 * 1024 : 0);
		s[n].reported_cached = 512;
		s[n].reported_peak = i * 3 * GiB;
		s[n].quota_bytes = i == 1 ? 4 * GiB : 0;
		/* Session 102: native bytes on every path (NATIVE sums). */
		s[n].native_fallback_bytes = i == 2 ? 1 * MiB : 0;
		s[n].native_cumemcreate_bytes = i == 2 ? 2 * MiB : 0;
		s[n].native_pool_bytes = i == 2 ? 4 * MiB : 0;
		s[n].native_managed_bytes = i == 2 ? 1 * MiB : 0;
		/* Session 101: its chunk serves its own cuMemCreate. */
		s[n].app_vmm_bytes = i == 1 ? 2 * MiB : 0;
		s[n].connected_usec = UINT64_C(1700000000000000) + i;
		sp[n] = &s[n];
	}
	if (!stats) {
		cr.request_id = id;
		cr.sessions = sp;
		cr.n_sessions = n;
		cr.sessions_total = FAKE_NSESS;
		env = vmm_frame_env_clients_reply(&cr);
		send_env(fd, &env);
		return;
	}
	if (is("all")) {
		all_figures(&pool, c, cp, &nc, off == 0);
		goto send;
	}
	pool.physical_bytes = 3 * GiB / 2;
	pool.lent_bytes = GiB;
	pool.idle_bytes = 512 * MiB;
	pool.quarantined_bytes = 0;
	pool.chunks = 12;
	pool.chunks_lent = 8;
	pool.device_total_bytes = 80 * GiB;
	pool.device_free_bytes = 60 * GiB + 123456789;
	pool.granularity = 2 * MiB;
	pool.peak_physical_bytes = 2 * GiB;
	pool.peak_lent_bytes = 3 * GiB / 2;
	nc = NCOUNTERS;
	for (i = 0; i < nc; i++) {
		vmm__counter__init(&c[i]);
		c[i].name = (char *)counters[i].name;
		c[i].value = counters[i].value;
		cp[i] = &c[i];
	}
	if (is("dupcounter")) {
		c[nc] = c[0];
		cp[nc] = &c[nc];
		nc++;
	}
send:
	sr.request_id = id;
	sr.pool = &pool;
	sr.counters = cp;
	sr.n_counters = nc;
	sr.sessions = sp;
	sr.n_sessions = n;
	sr.sessions_total = FAKE_NSESS;
	env = vmm_frame_env_stats_reply(&sr);
	send_env(fd, &env);
}

/* Answer an admin request as the scenario says; 0 if it was not one. */
static int
admin(int fd, const Vmm__Envelope *e)
{
	Vmm__Envelope	 env;
	Vmm__Ack	 ack = VMM__ACK__INIT;
	Vmm__TrimReply	 tr = VMM__TRIM_REPLY__INIT;
	Vmm__Goodbye	 bye = VMM__GOODBYE__INIT;
	uint64_t	 id = vmm_frame_request_id(e);

	switch (e->msg_case) {
	case VMM__ENVELOPE__MSG_STATS_REQUEST:
		logline("stats offset=%" PRIu32 "%s",
		    e->stats_request->session_offset,
		    e->stats_request->reset_marks ? " reset" : "");
		break;
	case VMM__ENVELOPE__MSG_CLIENTS_REQUEST:
		logline("clients offset=%" PRIu32,
		    e->clients_request->session_offset);
		break;
	case VMM__ENVELOPE__MSG_TRIM_REQUEST:
		logline("trim target=%" PRIu64 " recall=%d",
		    e->trim_request->target_bytes,
		    (int)e->trim_request->recall_clients);
		break;
	case VMM__ENVELOPE__MSG_SET_QUOTA:
		logline("quota kind=%d key=%s bytes=%" PRIu64,
		    (int)e->set_quota->kind, e->set_quota->key,
		    e->set_quota->bytes);
		break;
	default:
		return 0;
	}

	if (is("silent"))
		return 1;
	if (is("perm")) {
		send_error(fd, id, VMM__ERROR_CODE__ERROR_CODE_PERMISSION,
		    "admin requests need uid 0 or group vmm");
		return 1;
	}
	if (is("refuse")) {
		send_error(fd, id, VMM__ERROR_CODE__ERROR_CODE_INVALID,
		    "no such cgroup\n\x1b[31mred");
		return 1;
	}
	if (is("goodbye")) {
		bye.reason = VMM__GOODBYE_REASON__GOODBYE_REASON_SHUTDOWN;
		bye.message = (char *)"stopping";
		env = vmm_frame_env_goodbye(&bye);
		send_env(fd, &env);
		return 1;
	}
	if (is("wrong") || e->msg_case == VMM__ENVELOPE__MSG_SET_QUOTA) {
		ack.request_id = id;
		env = vmm_frame_env_ack(&ack);
		send_env(fd, &env);
		return 1;
	}
	switch (e->msg_case) {
	case VMM__ENVELOPE__MSG_STATS_REQUEST:
		sessions_reply(fd, id, e->stats_request->session_offset, 1);
		break;
	case VMM__ENVELOPE__MSG_CLIENTS_REQUEST:
		sessions_reply(fd, id, e->clients_request->session_offset, 0);
		break;
	default:
		tr.request_id = id;
		tr.bytes_released = e->trim_request->target_bytes != 0 ?
		    e->trim_request->target_bytes : 768 * MiB;
		env = vmm_frame_env_trim_reply(&tr);
		send_env(fd, &env);
		break;
	}
	return 1;
}

static void
serve(int fd)
{
	struct vmm_frame_reader	*r;
	struct vmm_frame_msg	*m;
	const Vmm__Envelope	*e;
	int			 rc;

	if ((r = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) == NULL)
		return;
	for (;;) {
		if ((rc = vmm_frame_recv(r, fd, &m, FAKE_RECV_MS)) <= 0) {
			if (rc < 0)
				logline("recv error: %s",
				    vmm_frame_strerror(rc));
			break;
		}
		e = vmm_frame_msg_env(m);
		if (e->msg_case == VMM__ENVELOPE__MSG_HELLO) {
			if (!is("silent"))
				hello_reply(fd, e->hello);
			else
				logline("hello (silent)");
		} else if (e->msg_case == VMM__ENVELOPE__MSG_GOODBYE)
			logline("goodbye reason=%d", (int)e->goodbye->reason);
		else if (!admin(fd, e))
			logline("unexpected %s", vmm_frame_type_name(e));
		vmm_frame_msg_free(m);
	}
	vmm_frame_reader_free(r);
}

int
main(int argc, char **argv)
{
	int			lfd, fd;
	pid_t			pid;

	if (argc != 4) {
		fprintf(stderr, "usage: fake_vmmd SOCKET SCENARIO LOG\n");
		return 2;
	}
	scenario = argv[2];
	(void)unlink(argv[1]);
	if ((lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    vmm_unix_bind(lfd, argv[1]) == -1) {
		perror("fake_vmmd: bind");
		return 2;
	}
	if (is("stale"))
		return 0;		/* the socket file stays, unserved */
	if (listen(lfd, 4) == -1) {
		perror("fake_vmmd: listen");
		return 2;
	}
	if ((logfp = fopen(argv[3], "a")) == NULL) {
		perror("fake_vmmd: log");
		return 2;
	}
	if ((pid = fork()) == -1) {
		perror("fake_vmmd: fork");
		return 2;
	}
	if (pid > 0) {
		fclose(logfp);
		return 0;
	}

	alarm(FAKE_LIFETIME);
	if ((fd = accept(lfd, NULL, NULL)) == -1) {
		logline("accept error: %s", strerror(errno));
		return 1;
	}
	close(lfd);
	if (!is("close"))
		serve(fd);
	close(fd);
	fclose(logfp);
	return 0;
}
