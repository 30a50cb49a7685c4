/* Raw peers for the hostile-client tests (testraw.h). */
#include "testraw.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../common/check.h"

void
tc_raw_open(struct tc_raw *r, const char *sockpath)
{
	CHECK((r->fd = tc_connect_raw(sockpath)) >= 0);
	CHECK((r->rd = vmm_frame_reader_new(VMM_FRAME_PEER_DAEMON)) != NULL);
}

void
tc_raw_close(struct tc_raw *r)
{
	close(r->fd);
	vmm_frame_reader_free(r->rd);
	r->fd = -1;
	r->rd = NULL;
}

void
tc_raw_send(struct tc_raw *r, const void *buf, size_t len, const int *fds,
    size_t nfds)
{
	int rc = tc_send_raw(r->fd, buf, len, fds, nfds);

	CHECK(rc == 0 || rc == -EPIPE || rc == -ECONNRESET);
}

void
tc_raw_send_env(struct tc_raw *r, const Vmm__Envelope *env, const int *fds,
    size_t nfds)
{
	unsigned char buf[16384];

	tc_raw_send(r, buf, tc_pack(env, buf, sizeof(buf)), fds, nfds);
}

size_t
tc_raw_pack_hello(unsigned char *buf, size_t cap, uint32_t version,
    uint64_t rid, const char *name)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Hello h = VMM__HELLO__INIT;

	h.request_id = rid;
	h.protocol_version = version;
	h.client_name = (char *)name;
	h.kind = VMM__CLIENT_KIND__CLIENT_KIND_APP;
	env.msg_case = VMM__ENVELOPE__MSG_HELLO;
	env.hello = &h;
	return tc_pack(&env, buf, cap);
}

void
tc_raw_send_hello(struct tc_raw *r, uint32_t version, uint64_t rid,
    const char *name)
{
	unsigned char buf[4096];

	tc_raw_send(r, buf, tc_raw_pack_hello(buf, sizeof(buf), version, rid,
	    name), NULL, 0);
}

void
tc_raw_hello(struct tc_raw *r, const char *name)
{
	tc_raw_send_hello(r, VMM_PROTOCOL_VERSION, 1, name);
	vmm_frame_msg_free(tc_raw_expect(r, VMM__ENVELOPE__MSG_HELLO_REPLY));
}

struct vmm_frame_msg *
tc_raw_expect(struct tc_raw *r, Vmm__Envelope__MsgCase type)
{
	struct vmm_frame_msg *m = NULL;
	int rc = tc_recv_raw(r->fd, r->rd, &m, 5000);

	if (rc != 1)
		fprintf(stderr, "raw_expect: %s\n", rc == 0 ? "EOF" :
		    vmm_frame_strerror(rc));
	CHECK(rc == 1);
	if (vmm_frame_msg_env(m)->msg_case != type)
		fprintf(stderr, "raw_expect: got %s\n",
		    vmm_frame_type_name(vmm_frame_msg_env(m)));
	CHECK(vmm_frame_msg_env(m)->msg_case == type);
	return m;
}

void
tc_raw_expect_error(struct tc_raw *r, Vmm__ErrorCode code, uint64_t rid,
    char *msg, size_t msglen)
{
	struct vmm_frame_msg *m = tc_raw_expect(r, VMM__ENVELOPE__MSG_ERROR);
	const Vmm__Error *e = vmm_frame_msg_env(m)->error;

	if (e->code != code)
		fprintf(stderr, "error %d (%s), want %d\n", (int)e->code,
		    e->message, (int)code);
	CHECK(e->code == code);
	CHECK(rid == TC_ANY_RID || e->request_id == rid);
	CHECK(e->message != NULL && e->message[0] != '\0');
	if (msg != NULL)
		snprintf(msg, msglen, "%s", e->message);
	vmm_frame_msg_free(m);
}

void
tc_raw_expect_closed(struct tc_raw *r)
{
	struct vmm_frame_msg *m = NULL;
	int rc = tc_recv_raw(r->fd, r->rd, &m, 5000);

	if (rc == 1)
		fprintf(stderr, "raw_expect_closed: got %s\n",
		    vmm_frame_type_name(vmm_frame_msg_env(m)));
	CHECK(rc == 0 || rc == -ECONNRESET);
	tc_raw_close(r);
}

bool
tc_pipe_closed(int rfd, int timeout_ms)
{
	struct pollfd p = { .fd = rfd, .events = POLLIN };
	char c;

	return poll(&p, 1, timeout_ms) == 1 && read(rfd, &c, 1) == 0;
}

long
tc_cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	CHECK((f = fopen(path, "re")) != NULL);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	CHECK((p = strrchr(buf, ')')) != NULL);
	/* After the name: state ppid pgrp session tty tpgid flags minflt
	 * cminflt majflt cmajflt utime stime. */
	CHECK(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
	    &ut, &st) == 2);
	return (long)(ut + st);
}
