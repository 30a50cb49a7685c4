/*
 * The client library under faults that once made it lend memory twice or
 * hang (issue "one chunk, one holder"), against a real vmmd on the
 * emulator.  One case per run:
 *
 *   quota_small  a small allocation meeting a quota after a large one
 *                fails with VMM_EQUOTA; it used to spin forever on the
 *                thread cache's own lock.
 *   stall        vmmd stopped (SIGSTOP) for longer than
 *                VMM_CONNECT_TIMEOUT_MS: the call fails (out of memory),
 *                the connection is kept, the late grant is given back,
 *                and no chunk ever gets a second record.
 *   dropped      vmmd drops the session while the process lives: the
 *                client resumes it on reconnect (same ids), never adopts.
 *   restart      a new vmmd instance: the client adopts what it maps,
 *                once.
 *   restart_idle the same while the client calls nothing: its helper
 *                thread reconnects and adopts within about a second.
 *   impostor     vmmd dies and another user listens at its path: the
 *                client says nothing to it (no Hello, no Adopt of its fds).
 */
#include <cuda.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "client_internal.h"
#include "testclient.h"
#include "unixsock.h"
#include "vmm_client.h"

#define MiB (1ull << 20)

static char	sockdir[1024], sockpath[1100];

static void
ctx_init(void)
{
	CUcontext ctx;

	CHECK_OK(cuInit(0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	CHECK_OK(cuCtxSetCurrent(ctx));
}

static void
fill(unsigned char *b, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 9));
}

static void
put_pattern(void *d, size_t n, unsigned seed)
{
	unsigned char *in = malloc(n);

	CHECK(in != NULL);
	fill(in, n, seed);
	CHECK_OK(cuMemcpyHtoD((CUdeviceptr)(uintptr_t)d, in, n));
	free(in);
}

static bool
has_pattern(void *d, size_t n, unsigned seed)
{
	unsigned char *in = malloc(n), *out = malloc(n);
	bool ok;

	CHECK(in != NULL && out != NULL);
	fill(in, n, seed);
	CHECK_OK(cuMemcpyDtoH(out, (CUdeviceptr)(uintptr_t)d, n));
	ok = memcmp(in, out, n) == 0;
	free(in);
	free(out);
	return ok;
}

/* Runs fn in a child that must finish within secs (a hang fails). */
static void
bounded(void (*fn)(void), int secs)
{
	pid_t pid = fork();
	int st;

	CHECK(pid >= 0);
	if (pid == 0) {
		alarm((unsigned)secs);
		fn();
		_exit(0);
	}
	CHECK(waitpid(pid, &st, 0) == pid);
	if (WIFSIGNALED(st))
		fprintf(stderr, "child killed by signal %d (SIGALRM: it hung)\n",
		    WTERMSIG(st));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- quota_small -------------------------------------------------------- */

/* vmmd's unit (2 MiB by default; more in the test variants). */
static uint64_t	quota_unit;

static void
quota_small_child(void)
{
	void *big, *small;
	int rc;

	ctx_init();
	CHECK(vmm_malloc(&big, 2 * quota_unit) == 0);
	/* A small block needs a segment (one unit): over the 2-unit quota. */
	rc = vmm_malloc(&small, 1000);
	fprintf(stderr, "small allocation over quota: %s\n", vmm_strerror(rc));
	CHECK(rc == VMM_EQUOTA);
	/* Freed, the big allocation's memory serves the small one (given
	 * back from the cache on the quota error, then retried). */
	CHECK(vmm_free(big) == 0);
	CHECK(vmm_malloc(&small, 1000) == 0);
	put_pattern(small, 1000, 7);
	CHECK(has_pattern(small, 1000, 7));
	CHECK(vmm_free(small) == 0);
	vmm_shutdown();
}

static void
case_quota_small(void)
{
	char conf[128];
	pid_t d;

	quota_unit = tc_probe_unit();
	snprintf(conf, sizeof(conf), "quota.uid.%u = %lluK\n",
	    (unsigned)getuid(), (unsigned long long)(2 * quota_unit >> 10));
	d = tc_start_daemon(sockdir, conf, NULL);
	bounded(quota_small_child, 20);
	tc_stop_daemon_ok(d);
}

/* ---- stall, dropped, restart -------------------------------------------- */

/*
 * A child holds a large and a small allocation with data, then, step by
 * step on the parent's word (a pipe), tries allocating while the parent
 * does something to vmmd, checks its data, and flushes.  The parent then
 * checks vmmd's records against what the child maps.
 */
static int	to_child[2], to_parent[2];

static void
say(int fd, char c)
{
	CHECK(write(fd, &c, 1) == 1);
}

static char
hear(int fd)
{
	char c;

	CHECK(read(fd, &c, 1) == 1);
	return c;
}

#define HELD_LARGE	(6 * MiB)
#define HELD_SMALL	5000

static void
holder_child(void)
{
	void *big, *small, *more;
	struct vmm_usage u;
	uint64_t t0;
	int rc;
	char cmd;

	ctx_init();
	CHECK(vmm_malloc(&big, HELD_LARGE) == 0);
	CHECK(vmm_malloc(&small, HELD_SMALL) == 0);
	put_pattern(big, HELD_LARGE, 1);
	put_pattern(small, HELD_SMALL, 2);
	say(to_parent[1], 'a');
	/* The parent has done its deed (stopped vmmd, or restarted it), or
	 * asks us to break our connection as vmmd dropping it would. */
	cmd = hear(to_child[0]);
	if (cmd == 'x')
		CHECK(shutdown(vmmc_conn_fd(vmmc_conn_get(0)), SHUT_RDWR) == 0);
	if (cmd == 's') {
		/* vmmd stopped: the call fails in about the timeout, as out of
		 * memory to the application, and so does the next one. */
		t0 = vmm_now_ms();
		rc = vmm_malloc(&more, 8 * MiB);
		fprintf(stderr, "allocation while vmmd is stopped: %s after "
		    "%llu ms\n", vmm_strerror(rc),
		    (unsigned long long)(vmm_now_ms() - t0));
		CHECK(rc == VMM_ETIMEDOUT);
		CHECK(vmm_now_ms() - t0 < 5000);
		CHECK(vmm_malloc(&more, 3 * MiB) == VMM_ETIMEDOUT);
		say(to_parent[1], 'b');
		CHECK(hear(to_child[0]) == 'c');	/* vmmd runs again */
	}
	/* Allocating goes on, and the data is where it was.  Just after a
	 * SIGCONT a loaded vmmd may still miss the short test timeout: that
	 * call fails as it should, and a later one must succeed. */
	for (int tries = 0; (rc = vmm_malloc(&more, 8 * MiB)) ==
	    VMM_ETIMEDOUT && cmd == 's' && tries < 50; tries++)
		;
	CHECK(rc == 0);
	put_pattern(more, 8 * MiB, 3);
	CHECK(has_pattern(big, HELD_LARGE, 1));
	CHECK(has_pattern(small, HELD_SMALL, 2));
	CHECK(has_pattern(more, 8 * MiB, 3));
	/* Everything cached goes back and vmmd has seen it. */
	CHECK(vmm_flush() == 0);
	CHECK(vmm_get_usage(&u) == 0);
	/* What this process maps is what vmmd lends it. */
	{
		uint64_t mapped = u.mapped_bytes;

		CHECK(write(to_parent[1], &mapped, sizeof(mapped)) ==
		    sizeof(mapped));
	}
	CHECK(hear(to_child[0]) == 'd');	/* the parent has checked */
	CHECK(vmm_free(big) == 0 && vmm_free(small) == 0 &&
	    vmm_free(more) == 0);
	vmm_shutdown();
}

/* Another process takes up to 48 MiB in 2 MiB pieces, writes each, waits
 * while others do the same, and checks each: no piece of its was lent to
 * anyone else meanwhile. */
static void
grabber_child(void)
{
	void *p[24];
	int i, n = 0;

	ctx_init();
	for (i = 0; i < 24 && vmm_malloc(&p[n], 2 * MiB) == 0; i++, n++)
		put_pattern(p[n], 2 * MiB, 100 + (unsigned)getpid() + (unsigned)i);
	usleep(300 * 1000);
	for (i = 0; i < n; i++)
		CHECK(has_pattern(p[i], 2 * MiB, 100 + (unsigned)getpid() +
		    (unsigned)i));
	CHECK(n > 0);
	vmm_shutdown();
}

/* Holds memory with data; once vmmd is gone and something else listens,
 * allocating must fail (nothing trusted to talk to) and the data stay. */
static void
impostor_victim(void)
{
	void *big, *more;
	int rc;

	ctx_init();
	CHECK(vmm_malloc(&big, HELD_LARGE) == 0);
	put_pattern(big, HELD_LARGE, 5);
	say(to_parent[1], 'a');
	CHECK(hear(to_child[0]) == 'g');
	rc = vmm_malloc(&more, 8 * MiB);
	fprintf(stderr, "allocation with an impostor listening: %s\n",
	    vmm_strerror(rc));
	CHECK(rc == VMM_ENODAEMON);
	CHECK(has_pattern(big, HELD_LARGE, 5));
}

static pid_t
spawn(void (*fn)(void))
{
	pid_t pid = fork();

	CHECK(pid >= 0);
	if (pid == 0) {
		alarm(60);
		fn();
		_exit(0);
	}
	return pid;
}

static void
reap(pid_t pid)
{
	int st;

	CHECK(waitpid(pid, &st, 0) == pid);
	if (WIFSIGNALED(st))
		fprintf(stderr, "child killed by signal %d\n", WTERMSIG(st));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void
run_holder(const char *what)
{
	const char *conf = "idle_timeout_ms = 0\nrecall_timeout_ms = 0\n";
	struct tc *adm;
	Vmm__PoolStats ps;
	uint64_t mapped;
	pid_t d, h;
	int st;

	CHECK(pipe(to_child) == 0 && pipe(to_parent) == 0);
	d = tc_start_daemon(sockdir, conf, NULL);
	h = spawn(holder_child);
	CHECK(hear(to_parent[0]) == 'a');
	if (strcmp(what, "stall") == 0) {
		kill(d, SIGSTOP);
		say(to_child[1], 's');
		CHECK(hear(to_parent[0]) == 'b');
		kill(d, SIGCONT);
		say(to_child[1], 'c');
	} else if (strcmp(what, "dropped") == 0) {
		say(to_child[1], 'x');
	} else if (strcmp(what, "restart") == 0 ||
	    strcmp(what, "restart_idle") == 0) {
		kill(d, SIGKILL);
		CHECK(waitpid(d, &st, 0) == d);
		d = tc_start_daemon(sockdir, conf, NULL);
		if (strcmp(what, "restart_idle") == 0) {
			/* The holder calls nothing: its helper thread must
			 * reconnect and adopt by itself, within a second or
			 * so (the connection attempts are a second apart). */
			struct tc *probe = tc_open(sockpath, "probe", true);
			uint64_t t0 = vmm_now_ms();

			while (tc_counter(probe, "adopted_chunks") == 0 &&
			    vmm_now_ms() - t0 < 5000)
				tc_sleep_ms(20);
			fprintf(stderr, "idle holder adopted its chunks %llu ms "
			    "after the restart\n",
			    (unsigned long long)(vmm_now_ms() - t0));
			CHECK(tc_counter(probe, "adopted_chunks") > 0);
			CHECK(vmm_now_ms() - t0 < 2500);
			tc_close(probe);
		}
		say(to_child[1], 'g');
	} else
		CHECK(!"unknown holder case");
	CHECK(read(to_parent[0], &mapped, sizeof(mapped)) == sizeof(mapped));
	adm = tc_open(sockpath, "admin", true);
	tc_pool(adm, &ps);
	fprintf(stderr, "%s: client maps %llu, vmmd lends %llu in %llu chunks; "
	    "adopted %llu, refused %llu, resumed %llu\n", what,
	    (unsigned long long)mapped, (unsigned long long)ps.lent_bytes,
	    (unsigned long long)ps.chunks_lent,
	    (unsigned long long)tc_counter(adm, "adopted_chunks"),
	    (unsigned long long)tc_counter(adm, "adopt_refused"),
	    (unsigned long long)tc_counter(adm, "resumed_sessions"));
	/* One record per chunk: vmmd lends exactly what the client maps, and
	 * quarantines nothing (no second, dead session holds it). */
	CHECK(ps.lent_bytes == mapped);
	CHECK(ps.quarantined_bytes == 0);
	if (strncmp(what, "restart", 7) == 0)
		CHECK(tc_counter(adm, "adopted_chunks") > 0);
	else
		CHECK(tc_counter(adm, "adopted_chunks") == 0);
	if (strcmp(what, "dropped") == 0)
		CHECK(tc_counter(adm, "resumed_sessions") == 1);
	CHECK(tc_counter(adm, "adopt_refused") == 0);
	/* Memory is not lent twice: while the holder lives, and after it is
	 * gone (a second record would come back then and go to two of the
	 * next holders at once). */
	reap(spawn(grabber_child));
	say(to_child[1], 'd');
	reap(h);
	{
		pid_t g1 = spawn(grabber_child), g2 = spawn(grabber_child);

		reap(g1);
		reap(g2);
	}
	tc_pool(adm, &ps);
	CHECK(ps.lent_bytes == 0 && ps.quarantined_bytes == 0);
	tc_close(adm);
	tc_stop_daemon_ok(d);
}

/* ---- impostor ----------------------------------------------------------- */

/*
 * vmmd dies; another user (nobody) binds its socket path and answers like
 * vmmd.  The client must not say a word to it — above all not send it the
 * fds of what it maps (Adopt) — and must fail its call instead.
 */
#define NOBODY 65534

/* Listens at path as nobody; reports frames and fds received. */
static void
impostor(const char *path, int ready, int report)
{
	Vmm__Envelope env;
	Vmm__HelloReply r = VMM__HELLO_REPLY__INIT;
	Vmm__Limits lim = VMM__LIMITS__INIT;
	struct vmm_frame_reader *rd;
	struct vmm_frame_msg *m;
	uint8_t uuid[16] = { 0 };
	unsigned got[3] = { 0, 0, 0 };	/* frames, fds, connections */
	gid_t g = NOBODY;
	int l, c, i;

	tc_become(NOBODY, NOBODY, &g, 1);
	CHECK((l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	CHECK(vmm_unix_bind(l, path) == 0 && listen(l, 4) == 0);
	say(ready, 'r');
	{
		struct pollfd p = { .fd = l, .events = POLLIN };

		if (poll(&p, 1, 5000) != 1) {	/* nobody came */
			CHECK(write(report, got, sizeof(got)) == sizeof(got));
			return;
		}
	}
	CHECK((c = accept(l, NULL, NULL)) >= 0);
	got[2]++;
	CHECK((rd = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) != NULL);
	for (i = 0; i < 4 && tc_recv_raw(c, rd, &m, 3000) == 1; i++) {
		const Vmm__Envelope *e = vmm_frame_msg_env(m);

		got[0]++;
		got[1] += (unsigned)vmm_frame_msg_nfds(m);
		if (e->msg_case == VMM__ENVELOPE__MSG_HELLO) {
			/* Answer as a new vmmd would. */
			r.request_id = e->hello->request_id;
			r.protocol_version = VMM_PROTOCOL_VERSION;
			r.session_id = 1;
			r.instance_id = 0xbad;
			r.granularity = 2 * MiB;
			r.device_uuid.data = uuid;
			r.device_uuid.len = 16;
			lim.max_chunks_per_grant = 16;
			lim.max_frame = VMM_FRAME_MAX;
			r.limits = &lim;
			env = vmm_frame_env_hello_reply(&r);
			CHECK(vmm_frame_send(c, VMM_FRAME_PEER_CLIENT, &env, NULL,
			    0, 1000) == 0);
		}
		vmm_frame_msg_free(m);
	}
	CHECK(write(report, got, sizeof(got)) == sizeof(got));
}

static void
case_impostor(void)
{
	int ready[2], report[2], st;
	char c, uuidname[256], path[1400];
	unsigned got[3];
	pid_t d, h, imp;
	ssize_t n;

	if (geteuid() != 0) {
		printf("needs root (to be another user): skipped\n");
		exit(77);
	}
	CHECK(pipe(to_child) == 0 && pipe(to_parent) == 0);
	CHECK(pipe(ready) == 0 && pipe(report) == 0);
	(void)chmod(sockdir, 0755);	/* from an earlier run */
	d = tc_start_daemon(sockdir, "idle_timeout_ms = 0\n", NULL);
	h = spawn(impostor_victim);
	CHECK(hear(to_parent[0]) == 'a');
	kill(d, SIGKILL);
	CHECK(waitpid(d, &st, 0) == d);
	/* The path is free for whoever may write the directory: the client
	 * connects by the GPU's UUID, the name the index alias points to. */
	CHECK(chmod(sockdir, 0777) == 0);
	CHECK((n = readlink(sockpath, uuidname, sizeof(uuidname) - 1)) > 0);
	uuidname[n] = '\0';
	snprintf(path, sizeof(path), "%s/%s", sockdir, uuidname);
	CHECK(unlink(path) == 0);
	CHECK((imp = fork()) >= 0);
	if (imp == 0) {
		alarm(20);
		impostor(path, ready[1], report[1]);
		_exit(0);
	}
	close(ready[1]);
	close(report[1]);
	CHECK(read(ready[0], &c, 1) == 1);
	say(to_child[1], 'g');
	reap(h);
	CHECK(read(report[0], got, sizeof(got)) == sizeof(got));
	reap(imp);
	fprintf(stderr, "the impostor got %u connections, %u frames and %u "
	    "fds\n", got[2], got[0], got[1]);
	CHECK(got[2] == 1 && got[0] == 0 && got[1] == 0);
	CHECK(chmod(sockdir, 0755) == 0);
}

/* ---- main --------------------------------------------------------------- */

int
main(int argc, char **argv)
{
	const char *tmp = getenv("VMM_TEST_TMPDIR");

	CHECK(argc == 2);
	CHECK(tmp != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s/sock", tmp);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	setenv("VMM_SOCKET_DIR", sockdir, 1);
	if (strcmp(argv[1], "quota_small") == 0)
		case_quota_small();
	else if (strcmp(argv[1], "impostor") == 0)
		case_impostor();
	else if (strcmp(argv[1], "stall") == 0 ||
	    strcmp(argv[1], "dropped") == 0 ||
	    strcmp(argv[1], "restart") == 0 ||
	    strcmp(argv[1], "restart_idle") == 0) {
		setenv("VMM_CONNECT_TIMEOUT_MS", "300", 1);
		run_holder(argv[1]);
	}
	else {
		fprintf(stderr, "unknown case %s\n", argv[1]);
		return 2;
	}
	return 0;
}
