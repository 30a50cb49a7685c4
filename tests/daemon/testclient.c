/* A small synchronous vmmd client for tests; see testclient.h. */
#include "testclient.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/check.h"

#define TC_TIMEOUT_MS 10000

void
tc_socket_path(const char *dir, char *out, size_t len)
{
	CHECK(vmm_sess_path_index(out, len, dir, 0) == 0);
}

int
tc_connect_raw(const char *path)
{
	int fd;

	if ((fd = vmm_sess_dial(path, TC_TIMEOUT_MS)) < 0) {
		errno = -fd;
		return -1;
	}
	return fd;
}

uint64_t
tc_rid(struct tc *c)
{
	return vmm_sess_next_id(c->s);
}

int
tc_recv(struct tc *c, struct vmm_frame_msg **out, int timeout_ms)
{
	return vmm_sess_recv(c->s, out, timeout_ms);
}

struct vmm_frame_msg *
tc_call(struct tc *c, Vmm__Envelope *env, int *fds, size_t nfds)
{
	struct vmm_frame_msg *m = NULL;
	int rc;

	if ((rc = vmm_sess_send(c->s, env, fds, nfds, TC_TIMEOUT_MS)) != 0) {
		fprintf(stderr, "tc_call: send: %s\n", vmm_sess_strerror(rc));
		return NULL;
	}
	rc = vmm_sess_recv(c->s, &m, TC_TIMEOUT_MS);
	if (rc != 1)
		fprintf(stderr, "tc_call: receive: %s\n", rc == 0 ? "EOF" :
		    vmm_sess_strerror(rc));
	return rc == 1 ? m : NULL;
}

struct vmm_frame_msg *
tc_call_expect(struct tc *c, Vmm__Envelope *env, Vmm__Envelope__MsgCase want)
{
	struct vmm_frame_msg *m;

	CHECK((m = tc_call(c, env, NULL, 0)) != NULL);
	if (vmm_frame_msg_env(m)->msg_case != want)
		fprintf(stderr, "tc_call_expect: %s answered with %s\n",
		    vmm_frame_type_name(env),
		    vmm_frame_type_name(vmm_frame_msg_env(m)));
	CHECK(vmm_frame_msg_env(m)->msg_case == want);
	return m;
}

int
tc_request(struct tc *c, Vmm__Envelope *env, struct vmm_frame_msg **out,
    char *msg, size_t msglen)
{
	const struct vmm_sess_error *err;
	int rc;

	rc = vmm_sess_call(c->s, env, NULL, 0, TC_TIMEOUT_MS, out);
	if (rc == VMM_SESS_EREFUSED) {
		err = vmm_sess_error(c->s);
		CHECK(err->request_id == vmm_frame_request_id(env) ||
		    err->request_id == 0);
		if (msg != NULL)
			snprintf(msg, msglen, "%s", err->message);
		return -(int)err->code;
	}
	if (rc != 0)
		fprintf(stderr, "%s: %s\n", vmm_frame_type_name(env),
		    vmm_sess_strerror(rc));
	CHECK(rc == 0);
	return 0;
}

struct tc *
tc_open(const char *path, const char *name, bool admin)
{
	Vmm__Hello h = VMM__HELLO__INIT;
	const Vmm__HelloReply *r;
	struct tc *c;
	int rc;

	CHECK((c = calloc(1, sizeof(*c))) != NULL);
	if ((rc = vmm_sess_connect(&c->s, path, TC_TIMEOUT_MS)) != 0)
		fprintf(stderr, "connect %s: %s\n", path, strerror(-rc));
	CHECK(rc == 0);
	c->fd = vmm_sess_fd(c->s);
	h.client_name = (char *)name;
	h.kind = admin ? VMM__CLIENT_KIND__CLIENT_KIND_ADMIN :
	    VMM__CLIENT_KIND__CLIENT_KIND_APP;
	if ((rc = vmm_sess_hello(c->s, &h, TC_TIMEOUT_MS)) != 0)
		fprintf(stderr, "hello %s: %s\n", path, vmm_sess_strerror(rc));
	CHECK(rc == 0);
	r = vmm_sess_hello_reply(c->s);
	c->session_id = r->session_id;
	c->granularity = r->granularity;
	c->max_chunks = r->limits->max_chunks_per_grant;
	CHECK(c->granularity > 0);
	return c;
}

void
tc_close(struct tc *c)
{
	if (c == NULL)
		return;
	vmm_sess_close(c->s);
	free(c);
}

int
tc_acquire(struct tc *c, uint64_t bytes, unsigned flags, struct tc_chunk *out,
    size_t max)
{
	return tc_acquire_ex(c, bytes, flags, 0, out, max, NULL, 0);
}

int
tc_release(struct tc *c, const uint64_t *ids, size_t n)
{
	Vmm__Release rel = VMM__RELEASE__INIT;
	Vmm__Envelope env = vmm_frame_env_release(&rel);
	struct vmm_frame_msg *m;
	int rc;

	rel.n_chunk_ids = n;
	rel.chunk_ids = (uint64_t *)ids;
	if ((rc = tc_request(c, &env, &m, NULL, 0)) != 0)
		return rc;
	CHECK(vmm_frame_msg_env(m)->release_reply->released_chunks == n);
	vmm_frame_msg_free(m);
	return 0;
}

uint64_t
tc_release_nowait(struct tc *c, const uint64_t *ids, size_t n)
{
	Vmm__Release rel = VMM__RELEASE__INIT;
	Vmm__Envelope env = vmm_frame_env_release(&rel);

	rel.n_chunk_ids = n;
	rel.chunk_ids = (uint64_t *)ids;
	CHECK(vmm_sess_send(c->s, &env, NULL, 0, TC_TIMEOUT_MS) == 0);
	return rel.request_id;
}

int
tc_stats(struct tc *c, Vmm__PoolStats *pool, const char *counter,
    uint64_t *value)
{
	Vmm__StatsRequest sr = VMM__STATS_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_stats_request(&sr);
	const Vmm__StatsReply *r;
	struct vmm_frame_msg *m;
	size_t i;
	int rc;

	if ((rc = tc_request(c, &env, &m, NULL, 0)) != 0)
		return rc;
	r = vmm_frame_msg_env(m)->stats_reply;
	if (pool != NULL) {
		*pool = *r->pool;
		pool->base.unknown_fields = NULL;
		pool->base.n_unknown_fields = 0;
	}
	if (counter != NULL) {
		rc = -1;
		for (i = 0; i < r->n_counters; i++) {
			if (strcmp(r->counters[i]->name, counter) == 0) {
				*value = r->counters[i]->value;
				rc = 0;
			}
		}
	}
	vmm_frame_msg_free(m);
	return rc;
}

int
tc_count_fds(pid_t pid)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

pid_t
tc_start_daemon(const char *sockdir, const char *config_text,
    const char *const *extra_args)
{
	char vmmd[4096], conf[4096], sock[4096];
	const char *argv[32];
	const char *bd = getenv("VMM_BUILD_DIR");
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	int i, n = 0, fd;
	pid_t pid;

	CHECK(bd != NULL);
	mkdir(sockdir, 0755);
	snprintf(vmmd, sizeof(vmmd), "%s/daemon/vmmd", bd);
	snprintf(conf, sizeof(conf), "%s/vmmd.conf", sockdir);
	{
		FILE *f = fopen(conf, "w");

		const char *extra = getenv("VMM_TEST_VMMD_CONF");

		CHECK(f != NULL);
		fputs(config_text ? config_text : "", f);
		/* The test variants' setting (cmake/VmmTest.cmake), after the
		 * test's own so that a test setting the same key is noticed. */
		if (extra != NULL && *extra != '\0')
			fprintf(f, "\n%s\n", extra);
		CHECK(fclose(f) == 0);
	}
	argv[n++] = vmmd;
	argv[n++] = "--foreground";
	argv[n++] = "--socket-dir";
	argv[n++] = sockdir;
	argv[n++] = "--config";
	argv[n++] = conf;
	for (i = 0; extra_args != NULL && extra_args[i] != NULL && n < 30; i++)
		argv[n++] = extra_args[i];
	argv[n] = NULL;
	CHECK((pid = fork()) >= 0);
	if (pid == 0) {
		/* Never outlive a test that failed a CHECK. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* A test running under the shim must not preload it into the
		 * daemon: vmmd would be its own client. */
		unsetenv("LD_PRELOAD");
		execv(vmmd, (char *const *)argv);
		_exit(127);
	}
	tc_socket_path(sockdir, sock, sizeof(sock));
	for (i = 0; i < 500; i++) {
		int st;

		if ((fd = tc_connect_raw(sock)) >= 0) {
			close(fd);
			return pid;
		}
		CHECK(waitpid(pid, &st, WNOHANG) == 0);
		nanosleep(&ts, NULL);
	}
	CHECK(!"vmmd did not start listening");
	return -1;
}

pid_t
tc_start_in(const char *sub, const char *conf, char *sockpath, size_t len,
    struct tc **adm)
{
	const char *tmp = getenv("VMM_TEST_TMPDIR");
	char dir[4096];
	pid_t d;

	CHECK(tmp != NULL);
	CHECK((size_t)snprintf(dir, sizeof(dir), "%s/%s", tmp, sub) <
	    sizeof(dir));
	tc_socket_path(dir, sockpath, len);
	d = tc_start_daemon(dir, conf, NULL);
	if (adm != NULL)
		*adm = tc_open(sockpath, "admin", true);
	return d;
}

uint64_t
tc_probe_unit(void)
{
	char sockpath[1100];
	struct tc *adm;
	uint64_t unit;
	pid_t d;

	d = tc_start_in("unit-probe", "", sockpath, sizeof(sockpath), &adm);
	unit = adm->granularity;
	tc_stop_with(d, adm);
	CHECK(unit > 0);
	return unit;
}

void
tc_stop_with(pid_t pid, struct tc *adm)
{
	if (adm != NULL)
		tc_close(adm);
	tc_stop_daemon_ok(pid);
}

int
tc_stop_daemon(pid_t pid)
{
	int st;

	kill(pid, SIGTERM);
	CHECK(waitpid(pid, &st, 0) == pid);
	return st;
}

void
tc_stop_daemon_ok(pid_t pid)
{
	int st = tc_stop_daemon(pid);

	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, "vmmd %d: wait status 0x%x\n", (int)pid, st);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- one-off admin queries ------------------------------------------------ */

uint64_t
tc_admin_counter(const char *path, const char *name)
{
	struct tc *adm = tc_open(path, "admin", true);
	uint64_t v = tc_counter(adm, name);

	tc_close(adm);
	return v;
}

void
tc_admin_pool(const char *path, Vmm__PoolStats *pool)
{
	struct tc *adm = tc_open(path, "admin", true);

	tc_pool(adm, pool);
	tc_close(adm);
}

uint64_t
tc_admin_pid_figure(const char *path, pid_t pid, size_t field)
{
	struct tc *adm = tc_open(path, "admin", true);
	Vmm__ClientsRequest cr = VMM__CLIENTS_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_clients_request(&cr);
	const Vmm__ClientsReply *r;
	struct vmm_frame_msg *m;
	uint64_t v = UINT64_MAX, f;
	size_t i;

	CHECK(field + sizeof(uint64_t) <= sizeof(Vmm__SessionStats));
	m = tc_call_expect(adm, &env, VMM__ENVELOPE__MSG_CLIENTS_REPLY);
	r = vmm_frame_msg_env(m)->clients_reply;
	for (i = 0; i < r->n_sessions; i++) {
		if (r->sessions[i]->pid != (uint32_t)pid)
			continue;
		memcpy(&f, (const char *)r->sessions[i] + field, sizeof(f));
		if (v == UINT64_MAX || f > v)
			v = f;
	}
	vmm_frame_msg_free(m);
	tc_close(adm);
	return v;
}

/* ---- more helpers ---------------------------------------------------------- */

int
tc_acquire_ex(struct tc *c, uint64_t bytes, unsigned flags, uint64_t min_piece,
    struct tc_chunk *out, size_t max, char *msg, size_t msglen)
{
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	Vmm__Envelope env = vmm_frame_env_acquire(&a);
	const Vmm__Grant *g;
	struct vmm_frame_msg *m;
	size_t i;
	int n;

	a.bytes = bytes;
	a.flags = flags & ~(TC_ACQUIRE_EXACT | TC_ACQUIRE_NO_CREATE |
	    TC_ACQUIRE_PARTIAL);
	a.exact = (flags & TC_ACQUIRE_EXACT) != 0;
	a.no_create = (flags & TC_ACQUIRE_NO_CREATE) != 0;
	a.partial = (flags & TC_ACQUIRE_PARTIAL) != 0;
	a.min_piece = min_piece;
	if ((n = tc_request(c, &env, &m, msg, msglen)) != 0)
		return n;
	g = vmm_frame_msg_env(m)->grant;
	CHECK(g->n_chunks <= max);
	CHECK(vmm_frame_msg_nfds(m) == g->n_chunks);
	for (i = 0; i < g->n_chunks; i++) {
		out[i].id = g->chunks[i]->id;
		out[i].size = g->chunks[i]->size;
		out[i].fd = vmm_frame_msg_take_fd(m, i);
		CHECK(out[i].fd >= 0);
	}
	n = (int)g->n_chunks;
	vmm_frame_msg_free(m);
	return n;
}

static int
tc_acquire_one(struct tc *c, uint64_t bytes, uint64_t up_to, bool no_create,
    struct tc_chunk *out)
{
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	Vmm__Envelope env = vmm_frame_env_acquire(&a);
	const Vmm__Grant *g;
	struct vmm_frame_msg *m;
	int n;

	a.bytes = bytes;
	a.up_to = up_to;
	a.no_create = no_create;
	if ((n = tc_request(c, &env, &m, NULL, 0)) != 0)
		return n;
	g = vmm_frame_msg_env(m)->grant;
	CHECK(g->n_chunks == 1 && vmm_frame_msg_nfds(m) == 1);
	out->id = g->chunks[0]->id;
	out->size = g->chunks[0]->size;
	out->fd = vmm_frame_msg_take_fd(m, 0);
	CHECK(out->fd >= 0);
	vmm_frame_msg_free(m);
	return 1;
}

int
tc_acquire_within(struct tc *c, uint64_t bytes, uint64_t up_to,
    struct tc_chunk *out)
{
	return tc_acquire_one(c, bytes, up_to, false, out);
}

int
tc_acquire_idle(struct tc *c, uint64_t bytes, uint64_t up_to,
    struct tc_chunk *out)
{
	return tc_acquire_one(c, bytes, up_to, true, out);
}

void
tc_close_chunks(struct tc_chunk *ch, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (ch[i].fd >= 0)
			close(ch[i].fd);
		ch[i].fd = -1;
	}
}

void
tc_pool(struct tc *c, Vmm__PoolStats *pool)
{
	CHECK(tc_stats(c, pool, NULL, NULL) == 0);
}

uint64_t
tc_counter(struct tc *c, const char *name)
{
	uint64_t v = 0;
	int rc = tc_stats(c, NULL, name, &v);

	if (rc != 0)
		fprintf(stderr, "tc_counter: no counter \"%s\"\n", name);
	CHECK(rc == 0);
	return v;
}

int64_t
tc_trim(struct tc *c, uint64_t target, bool recall)
{
	Vmm__TrimRequest tr = VMM__TRIM_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_trim_request(&tr);
	struct vmm_frame_msg *m;
	int64_t n;
	int rc;

	tr.target_bytes = target;
	tr.recall_clients = recall;
	if ((rc = tc_request(c, &env, &m, NULL, 0)) != 0)
		return rc;
	n = (int64_t)vmm_frame_msg_env(m)->trim_reply->bytes_released;
	vmm_frame_msg_free(m);
	return n;
}

uint32_t
tc_sessions(struct tc *c)
{
	Vmm__ClientsRequest cr = VMM__CLIENTS_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_clients_request(&cr);
	struct vmm_frame_msg *m;
	uint32_t n;

	CHECK(tc_request(c, &env, &m, NULL, 0) == 0);
	n = vmm_frame_msg_env(m)->clients_reply->sessions_total;
	vmm_frame_msg_free(m);
	return n;
}

void
tc_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int
tc_wait_fds(pid_t pid, int want, int timeout_ms)
{
	uint64_t end = vmm_now_ms() + (uint64_t)timeout_ms;
	int n;

	while ((n = tc_count_fds(pid)) != want && vmm_now_ms() < end)
		tc_sleep_ms(10);
	return n;
}

long
tc_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

size_t
tc_pack(const Vmm__Envelope *env, unsigned char *out, size_t cap)
{
	size_t body = vmm__envelope__get_packed_size(env);

	CHECK(body + VMM_FRAME_HDR <= cap);
	out[0] = body & 0xff;
	out[1] = (body >> 8) & 0xff;
	out[2] = (body >> 16) & 0xff;
	out[3] = (body >> 24) & 0xff;
	CHECK(vmm__envelope__pack(env, out + VMM_FRAME_HDR) == body);
	return body + VMM_FRAME_HDR;
}

int
tc_send_raw(int fd, const void *buf, size_t len, const int *fds, size_t nfds)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * 253)];
	} ctl;
	const char *p = buf;
	struct msghdr mh;
	struct iovec iov;
	struct cmsghdr *cm;
	ssize_t n;

	CHECK(nfds <= 253);
	while (len > 0) {
		memset(&mh, 0, sizeof(mh));
		iov.iov_base = (void *)p;
		iov.iov_len = len;
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		if (nfds > 0) {
			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.buf;
			mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
			memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
		}
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
		nfds = 0;
	}
	return 0;
}

int
tc_recv_raw(int fd, struct vmm_frame_reader *rd, struct vmm_frame_msg **out,
    int timeout_ms)
{
	return vmm_frame_recv(rd, fd, out, timeout_ms);
}

int
tc_wait_eof(int fd, int timeout_ms)
{
	uint64_t end = vmm_now_ms() + (uint64_t)timeout_ms;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char buf[4096];
	ssize_t n;
	int left;

	for (;;) {
		left = (int)(end - vmm_now_ms());
		if (vmm_now_ms() >= end || left <= 0)
			return -1;
		if (poll(&p, 1, left) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return 0;
	}
}

/* The state letter of pid in /proc (R, S, T...), or 0. */
static char
tc_proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* "pid (comm) S ...": comm may hold anything, even ")". */
	if ((p = strrchr(buf, ')')) == NULL || p[1] != ' ')
		return 0;
	return p[2];
}

void
tc_freeze(pid_t pid)
{
	uint64_t end = vmm_now_ms() + 5000;

	CHECK(kill(pid, SIGSTOP) == 0);
	while (tc_proc_state(pid) != 'T') {
		CHECK(vmm_now_ms() < end);
		tc_sleep_ms(1);
	}
}

void
tc_thaw(pid_t pid)
{
	CHECK(kill(pid, SIGCONT) == 0);
}

void
tc_become(uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups)
{
	CHECK(setgroups(ngroups, groups) == 0);
	CHECK(setgid(gid) == 0);
	CHECK(setuid(uid) == 0);
	CHECK(getuid() == uid && geteuid() == uid && getgid() == gid);
}

pid_t
tc_spawn(int (*fn)(void *, int), void *arg, int *ctl)
{
	int sv[2];
	pid_t pid;

	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	fflush(NULL);
	CHECK((pid = fork()) >= 0);
	if (pid == 0) {
		close(sv[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(fn(arg, sv[1]));
	}
	close(sv[1]);
	*ctl = sv[0];
	return pid;
}

void
tc_ctl_send(int ctl, const void *buf, size_t len)
{
	CHECK(send(ctl, buf, len, MSG_NOSIGNAL) == (ssize_t)len);
}

void
tc_ctl_recv(int ctl, void *buf, size_t len, int timeout_ms)
{
	struct pollfd p = { .fd = ctl, .events = POLLIN };

	CHECK(poll(&p, 1, timeout_ms) == 1);
	CHECK(recv(ctl, buf, len, 0) == (ssize_t)len);
}

int
tc_wait_child(pid_t pid, int want_sig)
{
	int st;

	CHECK(waitpid(pid, &st, 0) == pid);
	if (WIFSIGNALED(st)) {
		if (WTERMSIG(st) != want_sig)
			fprintf(stderr, "child %d: signal %d\n", (int)pid,
			    WTERMSIG(st));
		CHECK(WTERMSIG(st) == want_sig);
		return 0;
	}
	CHECK(WIFEXITED(st));
	return WEXITSTATUS(st);
}

void
tc_cuda_init(void)
{
	CUcontext ctx;

	CHECK_OK(cuInit(0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	CHECK_OK(cuCtxSetCurrent(ctx));
}

void
tc_map(const struct tc_chunk *ch, size_t n, struct tc_mapping *m)
{
	CUmemAccessDesc acc = { 0 };
	uint64_t off = 0;
	size_t i;

	CHECK(n > 0 && n <= VMM_PROTO_MAX_CHUNKS);
	memset(m, 0, sizeof(*m));
	m->n = n;
	for (i = 0; i < n; i++) {
		CHECK_OK(cuMemImportFromShareableHandle(&m->h[i],
		    (void *)(uintptr_t)ch[i].fd,
		    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
		m->sizes[i] = ch[i].size;
		m->size += ch[i].size;
	}
	CHECK_OK(cuMemAddressReserve(&m->va, m->size, 0, 0, 0));
	for (i = 0; i < n; i++) {
		CHECK_OK(cuMemMap(m->va + off, m->sizes[i], 0, m->h[i], 0));
		off += m->sizes[i];
	}
	acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	acc.location.id = 0;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	CHECK_OK(cuMemSetAccess(m->va, m->size, &acc, 1));
}

void
tc_unmap(struct tc_mapping *m)
{
	uint64_t off = 0;
	size_t i;

	for (i = 0; i < m->n; i++) {
		CHECK_OK(cuMemUnmap(m->va + off, m->sizes[i]));
		off += m->sizes[i];
	}
	CHECK_OK(cuMemAddressFree(m->va, m->size));
	for (i = 0; i < m->n; i++)
		CHECK_OK(cuMemRelease(m->h[i]));
	memset(m, 0, sizeof(*m));
}
