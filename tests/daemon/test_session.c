/*
 * proto/session.h against a real vmmd on the emulator: a session opened by
 * socket path, by device index and by the GPU UUID the daemon announced
 * (all three reach the same daemon; another UUID reaches none); Hello's
 * reply; a Grant with its fd; Error replies mapped to one error (a Release
 * of a chunk not held, an Acquire larger than the GPU); Goodbye.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define T_MS	10000

/* A session said Hello as name; its HelloReply. */
static const Vmm__HelloReply *
hello(struct vmm_sess *s, const char *name)
{
	Vmm__Hello	h = VMM__HELLO__INIT;

	h.client_name = (char *)name;
	h.kind = VMM__CLIENT_KIND__CLIENT_KIND_APP;
	CHECK(vmm_sess_hello(s, &h, T_MS) == 0);
	CHECK(h.request_id != 0);
	return vmm_sess_hello_reply(s);
}

int
main(void)
{
	const char		*tmp = getenv("VMM_TEST_TMPDIR");
	const Vmm__HelloReply	*r;
	Vmm__Acquire		 a = VMM__ACQUIRE__INIT;
	Vmm__Release		 rel = VMM__RELEASE__INIT;
	Vmm__Envelope		 env;
	struct vmm_sess		*byp, *byi, *byu, *none;
	struct vmm_frame_msg	*m;
	uint8_t			 uuid[VMM_PROTO_UUID_LEN];
	uint64_t		 bogus = 123456789, id;
	char			 dir[1024], sock[1100];
	pid_t			 d;
	int			 fd;

	CHECK(tmp != NULL);
	CHECK((size_t)snprintf(dir, sizeof(dir), "%s/sess", tmp) < sizeof(dir));
	d = tc_start_in("sess", "", sock, sizeof(sock), NULL);

	/* By path (the index alias tc_start_in names). */
	CHECK(vmm_sess_connect(&byp, sock, T_MS) == 0);
	CHECK(strcmp(vmm_sess_path(byp), sock) == 0);
	CHECK(vmm_sess_hello_reply(byp) == NULL);
	r = hello(byp, "by-path");
	CHECK(r->session_id != 0 && r->granularity != 0 && !r->resumed);
	CHECK(r->protocol_version == VMM_PROTOCOL_VERSION);
	CHECK(r->device_uuid.len == VMM_PROTO_UUID_LEN);
	memcpy(uuid, r->device_uuid.data, sizeof(uuid));

	/* By index and by UUID: the same daemon, other sessions. */
	CHECK(vmm_sess_connect_index(&byi, dir, 0, T_MS) == 0);
	r = hello(byi, "by-index");
	CHECK(memcmp(r->device_uuid.data, uuid, sizeof(uuid)) == 0);
	CHECK(r->session_id != vmm_sess_hello_reply(byp)->session_id);
	CHECK(vmm_sess_connect_uuid(&byu, dir, uuid, T_MS) == 0);
	r = hello(byu, "by-uuid");
	CHECK(memcmp(r->device_uuid.data, uuid, sizeof(uuid)) == 0);
	uuid[0] ^= 0xff;
	CHECK(vmm_sess_connect_uuid(&none, dir, uuid, T_MS) == -ENOENT);
	CHECK(none == NULL);
	CHECK(vmm_sess_connect_index(&none, dir, 7, T_MS) == -ENOENT);

	/* A Grant and its fd. */
	a.bytes = vmm_sess_hello_reply(byu)->granularity;
	env = vmm_frame_env_acquire(&a);
	CHECK(vmm_sess_call(byu, &env, NULL, 0, T_MS, &m) == 0);
	CHECK(vmm_frame_msg_env(m)->grant->request_id == a.request_id);
	CHECK(vmm_frame_msg_nfds(m) == 1);
	CHECK((fd = vmm_frame_msg_take_fd(m, 0)) >= 0);
	CHECK(fcntl(fd, F_GETFD) >= 0);
	close(fd);
	id = vmm_frame_msg_env(m)->grant->chunks[0]->id;
	vmm_frame_msg_free(m);

	/* Errors: a chunk this session does not hold; more than the GPU. */
	rel.n_chunk_ids = 1;
	rel.chunk_ids = &bogus;
	env = vmm_frame_env_release(&rel);
	CHECK(vmm_sess_call(byu, &env, NULL, 0, T_MS, &m) == VMM_SESS_EREFUSED);
	CHECK(m == NULL);
	CHECK(vmm_sess_error(byu)->code ==
	    VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK);
	CHECK(vmm_sess_error(byu)->request_id == rel.request_id);
	CHECK(vmm_sess_error(byu)->message[0] != '\0');
	a.request_id = 0;
	a.bytes = UINT64_C(1) << 62;
	env = vmm_frame_env_acquire(&a);
	CHECK(vmm_sess_call(byi, &env, NULL, 0, T_MS, &m) == VMM_SESS_EREFUSED);
	CHECK(vmm_sess_error(byi)->code == VMM__ERROR_CODE__ERROR_CODE_INVALID);
	CHECK(vmm_sess_error(byi)->request_id == a.request_id);

	/* The session still serves after an Error; its chunk goes back. */
	rel.request_id = 0;
	rel.chunk_ids = &id;
	env = vmm_frame_env_release(&rel);
	CHECK(vmm_sess_call(byu, &env, NULL, 0, T_MS, &m) == 0);
	CHECK(vmm_frame_msg_env(m)->release_reply->released_chunks == 1);
	vmm_frame_msg_free(m);

	vmm_sess_goodbye(byp, T_MS);
	vmm_sess_goodbye(byi, T_MS);
	vmm_sess_close(byu);
	tc_stop_daemon_ok(d);
	return 0;
}
