/* A small synchronous vmmd client for tests; see testclient.h. */
#include "testclient.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/check.h"

#define TC_TIMEOUT_MS 10000

void
tc_socket_path(const char *dir, char *out, size_t len)
{
	snprintf(out, len, "%s/gpu0.sock", dir);
}

int
tc_connect_raw(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

struct vmm_frame_msg *
tc_call(struct tc *c, Vmm__Envelope *env, int *fds, size_t nfds)
{
	struct vmm_frame_msg *m = NULL;
	int rc;

	rc = vmm_frame_send(c->fd, VMM_FRAME_PEER_DAEMON, env, fds, nfds,
	    TC_TIMEOUT_MS);
	if (rc != 0) {
		fprintf(stderr, "tc_call: send: %s\n", vmm_frame_strerror(rc));
		return NULL;
	}
	rc = vmm_frame_recv(c->rd, c->fd, &m, TC_TIMEOUT_MS);
	if (rc != 1)
		fprintf(stderr, "tc_call: receive: %s\n", rc == 0 ? "EOF" :
		    vmm_frame_strerror(rc));
	return rc == 1 ? m : NULL;
}

struct tc *
tc_open(const char *path, const char *name, bool admin)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Hello h = VMM__HELLO__INIT;
	const Vmm__Envelope *r;
	struct vmm_frame_msg *m;
	struct tc *c;

	CHECK((c = calloc(1, sizeof(*c))) != NULL);
	c->fd = tc_connect_raw(path);
	if (c->fd < 0)
		fprintf(stderr, "connect %s: %s\n", path, strerror(errno));
	CHECK(c->fd >= 0);
	CHECK((c->rd = vmm_frame_reader_new(VMM_FRAME_PEER_DAEMON)) != NULL);
	c->next_rid = 1;
	h.request_id = c->next_rid++;
	h.protocol_version = VMM_PROTOCOL_VERSION;
	h.client_name = (char *)name;
	h.pid = (uint32_t)getpid();
	h.kind = admin ? VMM__CLIENT_KIND__CLIENT_KIND_ADMIN :
	    VMM__CLIENT_KIND__CLIENT_KIND_APP;
	env.msg_case = VMM__ENVELOPE__MSG_HELLO;
	env.hello = &h;
	CHECK((m = tc_call(c, &env, NULL, 0)) != NULL);
	r = vmm_frame_msg_env(m);
	CHECK(r->msg_case == VMM__ENVELOPE__MSG_HELLO_REPLY);
	CHECK(r->hello_reply->request_id == h.request_id);
	c->session_id = r->hello_reply->session_id;
	c->granularity = r->hello_reply->granularity;
	CHECK(c->granularity > 0);
	vmm_frame_msg_free(m);
	return c;
}

void
tc_close(struct tc *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	vmm_frame_reader_free(c->rd);
	free(c);
}

int
tc_acquire(struct tc *c, uint64_t bytes, unsigned flags, struct tc_chunk *out,
    size_t max)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	const Vmm__Envelope *r;
	struct vmm_frame_msg *m;
	size_t i;
	int n;

	a.request_id = c->next_rid++;
	a.bytes = bytes;
	a.flags = flags;
	env.msg_case = VMM__ENVELOPE__MSG_ACQUIRE;
	env.acquire = &a;
	CHECK((m = tc_call(c, &env, NULL, 0)) != NULL);
	r = vmm_frame_msg_env(m);
	if (r->msg_case == VMM__ENVELOPE__MSG_ERROR) {
		n = -(int)r->error->code;
		CHECK(r->error->request_id == a.request_id);
		vmm_frame_msg_free(m);
		return n;
	}
	CHECK(r->msg_case == VMM__ENVELOPE__MSG_GRANT);
	CHECK(r->grant->request_id == a.request_id);
	CHECK(r->grant->n_chunks <= max);
	CHECK(vmm_frame_msg_nfds(m) == r->grant->n_chunks);
	for (i = 0; i < r->grant->n_chunks; i++) {
		out[i].id = r->grant->chunks[i]->id;
		out[i].size = r->grant->chunks[i]->size;
		out[i].fd = vmm_frame_msg_take_fd(m, i);
		CHECK(out[i].fd >= 0);
	}
	n = (int)r->grant->n_chunks;
	vmm_frame_msg_free(m);
	return n;
}

int
tc_release(struct tc *c, const uint64_t *ids, size_t n)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Release rel = VMM__RELEASE__INIT;
	const Vmm__Envelope *r;
	struct vmm_frame_msg *m;
	int rc = 0;

	rel.request_id = c->next_rid++;
	rel.n_chunk_ids = n;
	rel.chunk_ids = (uint64_t *)ids;
	env.msg_case = VMM__ENVELOPE__MSG_RELEASE;
	env.release = &rel;
	CHECK((m = tc_call(c, &env, NULL, 0)) != NULL);
	r = vmm_frame_msg_env(m);
	if (r->msg_case == VMM__ENVELOPE__MSG_ERROR)
		rc = -(int)r->error->code;
	else {
		CHECK(r->msg_case == VMM__ENVELOPE__MSG_RELEASE_REPLY);
		CHECK(r->release_reply->released_chunks == n);
	}
	vmm_frame_msg_free(m);
	return rc;
}

int
tc_stats(struct tc *c, Vmm__PoolStats *pool, const char *counter,
    uint64_t *value)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__StatsRequest sr = VMM__STATS_REQUEST__INIT;
	const Vmm__Envelope *r;
	struct vmm_frame_msg *m;
	size_t i;
	int rc = 0;

	sr.request_id = c->next_rid++;
	env.msg_case = VMM__ENVELOPE__MSG_STATS_REQUEST;
	env.stats_request = &sr;
	CHECK((m = tc_call(c, &env, NULL, 0)) != NULL);
	r = vmm_frame_msg_env(m);
	if (r->msg_case == VMM__ENVELOPE__MSG_ERROR) {
		rc = -(int)r->error->code;
		vmm_frame_msg_free(m);
		return rc;
	}
	CHECK(r->msg_case == VMM__ENVELOPE__MSG_STATS_REPLY);
	if (pool != NULL) {
		*pool = *r->stats_reply->pool;
		pool->base.unknown_fields = NULL;
		pool->base.n_unknown_fields = 0;
	}
	if (counter != NULL) {
		rc = -1;
		for (i = 0; i < r->stats_reply->n_counters; i++) {
			if (strcmp(r->stats_reply->counters[i]->name, counter) == 0) {
				*value = r->stats_reply->counters[i]->value;
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

		CHECK(f != NULL);
		fputs(config_text ? config_text : "", f);
		fclose(f);
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

int
tc_stop_daemon(pid_t pid)
{
	int st;

	kill(pid, SIGTERM);
	CHECK(waitpid(pid, &st, 0) == pid);
	return st;
}
