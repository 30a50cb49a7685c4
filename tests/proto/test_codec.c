/*
 * Unit tests of the message layer and the reader's framing, without sockets:
 * round trips of every type, every range check, worst-case sizes against
 * VMM_FRAME_MAX and the decode budget, hostile bodies, and the reader fed one
 * byte at a time with fds pinned to the right frame.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "testlib.h"

/* Decode body as `from` would send it with nfds fresh fds; the result. */
static int
decode_with(const unsigned char *body, size_t len, enum vmm_frame_peer from,
    size_t nfds, struct vmm_frame_msg **out)
{
	int	fds[VMM_FRAME_MAX_FDS + 1];

	t_nullfds(fds, nfds);
	return vmm_frame_decode(body, len, from, fds, nfds, out);
}

/* The rc vmm_frame_validate() gives for sample s as it stands. */
static int
check_of(const struct t_sample *s)
{
	return vmm_frame_validate(&s->env, s->from, s->nfds);
}

static void
test_roundtrip_all(void)
{
	struct t_sample		 s;
	struct vmm_frame_msg	*m;
	unsigned char		*a, *b;
	size_t			 i, j, alen, blen;
	int			 fds[T_GRANT_CHUNKS], fd;

	for (i = 0; i < T_NSAMPLES; i++) {
		t_sample(i, &s);
		CHECK(check_of(&s) == 0);
		a = t_pack(&s.env, &alen);
		t_memfds(fds, s.nfds, (unsigned)i);
		CHECK(vmm_frame_decode(a, alen, s.from, fds, s.nfds, &m) == 0);
		CHECK(vmm_frame_msg_nfds(m) == s.nfds);
		b = t_pack(vmm_frame_msg_env(m), &blen);
		CHECK(alen == blen && memcmp(a, b, alen) == 0);
		CHECK(strcmp(vmm_frame_type_name(vmm_frame_msg_env(m)),
		    s.type) == 0);
		CHECK(vmm_frame_request_id(vmm_frame_msg_env(m)) ==
		    vmm_frame_request_id(&s.env));
		CHECK(vmm_frame_expected_fds(vmm_frame_msg_env(m)) == s.nfds);
		for (j = 0; j < s.nfds; j++) {
			CHECK((fd = vmm_frame_msg_take_fd(m, j)) >= 0);
			CHECK(t_memfd_is(fd, (unsigned)i, j));
			CHECK(vmm_frame_msg_take_fd(m, j) == -1);
			close(fd);
		}
		CHECK(vmm_frame_msg_take_fd(m, s.nfds) == -1);
		vmm_frame_msg_free(m);
		free(a);
		free(b);
	}

	/* Spot checks that the values really arrive, not just the bytes. */
	t_sample(3, &s);
	a = t_pack(&s.env, &alen);
	CHECK(decode_with(a, alen, VMM_FRAME_PEER_DAEMON, 3, &m) == 0);
	CHECK(vmm_frame_msg_env(m)->grant->chunks[2]->id == 502);
	CHECK(vmm_frame_msg_env(m)->grant->chunks[2]->size == 6u << 20);
	vmm_frame_msg_free(m);
	free(a);
	t_sample(0, &s);
	a = t_pack(&s.env, &alen);
	CHECK(decode_with(a, alen, VMM_FRAME_PEER_CLIENT, 0, &m) == 0);
	CHECK(strcmp(vmm_frame_msg_env(m)->hello->client_name, "python3") == 0);
	CHECK(vmm_frame_msg_env(m)->hello->device_uuid.len == 16 &&
	    vmm_frame_msg_env(m)->hello->device_uuid.data[15] == 0xaf);
	CHECK(vmm_frame_msg_env(m)->hello->protocol_version ==
	    VMM_PROTOCOL_VERSION);
	vmm_frame_msg_free(m);
	free(a);
	CHECK(strcmp(vmm_frame_type_name(NULL), "none") == 0);
	CHECK(vmm_frame_request_id(NULL) == 0);
}

static void
test_validation(void)
{
	static char		 longs[VMM_PROTO_MAX_QUOTA_KEY + 2];
	static uint64_t		 ids[VMM_PROTO_MAX_RELEASE_IDS + 1];
	Vmm__Chunk		*many[VMM_PROTO_MAX_CHUNKS + 1];
	struct t_sample		 s;
	size_t			 i;

	memset(longs, 'x', sizeof(longs) - 1);
#define EXPECT(n, mutate, rc) do {			\
	t_sample((n), &s);				\
	mutate;						\
	CHECK(check_of(&s) == (rc));			\
} while (0)
#define LONG(n)	(longs + sizeof(longs) - 1 - (n))	/* n x's */
	/* hello */
	EXPECT(0, s.hello.request_id = 0, VMM_FRAME_EINVALID);
	EXPECT(0, s.hello.client_name = LONG(VMM_PROTO_MAX_NAME), 0);
	EXPECT(0, s.hello.client_name = LONG(VMM_PROTO_MAX_NAME + 1),
	    VMM_FRAME_EINVALID);
	EXPECT(0, s.hello.client_name = NULL, 0);
	EXPECT(0, s.hello.device_uuid.len = 15, VMM_FRAME_EINVALID);
	EXPECT(0, s.hello.device_uuid.len = 0, 0);
	EXPECT(0, s.hello.kind = 0, VMM_FRAME_EINVALID);
	EXPECT(0, s.hello.kind = 3, VMM_FRAME_EINVALID);
	/* A version mismatch is the daemon's to answer, not a fault. */
	EXPECT(0, s.hello.protocol_version = 99, 0);
	EXPECT(0, s.from = VMM_FRAME_PEER_DAEMON, VMM_FRAME_EINVALID);
	EXPECT(0, s.nfds = 1, VMM_FRAME_EFDCOUNT);
	EXPECT(0, s.from = 0, VMM_FRAME_EINVALID);
	EXPECT(0, s.from = 3, VMM_FRAME_EINVALID);
	/* hello_reply */
	EXPECT(1, s.hello_reply.session_id = 0, VMM_FRAME_EINVALID);
	EXPECT(1, s.hello_reply.instance_id = 0, VMM_FRAME_EINVALID);
	EXPECT(1, s.hello_reply.granularity = 0, VMM_FRAME_EINVALID);
	EXPECT(1, s.hello_reply.device_uuid.len = 0, VMM_FRAME_EINVALID);
	EXPECT(1, s.hello_reply.limits = NULL, VMM_FRAME_EINVALID);
	EXPECT(1, s.limits.max_chunks_per_grant = VMM_PROTO_MAX_CHUNKS + 1,
	    VMM_FRAME_EINVALID);
	EXPECT(1, s.limits.max_chunks_per_grant = 0, VMM_FRAME_EINVALID);
	EXPECT(1, s.limits.max_frame = 0, VMM_FRAME_EINVALID);
	EXPECT(1, s.from = VMM_FRAME_PEER_CLIENT, VMM_FRAME_EINVALID);
	/* acquire */
	EXPECT(2, s.acquire.bytes = 0, VMM_FRAME_EINVALID);
	EXPECT(2, s.acquire.flags = 4, VMM_FRAME_EINVALID);
	EXPECT(2, s.acquire.request_id = 0, VMM_FRAME_EINVALID);
	/* up_to: at least bytes, one chunk only (no exact, no stitch) */
	EXPECT(2, s.acquire.up_to = s.acquire.bytes; s.acquire.flags = 0, 0);
	EXPECT(2, s.acquire.up_to = s.acquire.bytes * 4; s.acquire.flags =
	    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_IGNORE_FRAG_RATIO, 0);
	EXPECT(2, s.acquire.up_to = s.acquire.bytes - 1; s.acquire.flags = 0,
	    VMM_FRAME_EINVALID);
	EXPECT(2, s.acquire.up_to = s.acquire.bytes * 2; s.acquire.flags = 0;
	    s.acquire.exact = 1, VMM_FRAME_EINVALID);
	EXPECT(2, s.acquire.up_to = s.acquire.bytes * 2, VMM_FRAME_EINVALID);
	/* no_create: with or without up_to or stitching, never exact */
	EXPECT(2, s.acquire.no_create = 1; s.acquire.flags = 0, 0);
	EXPECT(2, s.acquire.no_create = 1; s.acquire.flags = 0;
	    s.acquire.up_to = s.acquire.bytes * 4, 0);
	EXPECT(2, s.acquire.no_create = 1; s.acquire.flags =
	    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_IGNORE_FRAG_RATIO, 0);
	EXPECT(2, s.acquire.no_create = 1, 0);
	EXPECT(2, s.acquire.no_create = 1; s.acquire.flags = 0;
	    s.acquire.exact = 1, VMM_FRAME_EINVALID);
	/* partial: a stitched request only (no exact, no up_to) */
	EXPECT(2, s.acquire.partial = 1; s.acquire.flags =
	    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH, 0);
	EXPECT(2, s.acquire.partial = 1; s.acquire.no_create = 1;
	    s.acquire.flags = VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH, 0);
	EXPECT(2, s.acquire.partial = 1; s.acquire.flags =
	    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_IGNORE_FRAG_RATIO,
	    VMM_FRAME_EINVALID);
	EXPECT(2, s.acquire.partial = 1; s.acquire.flags =
	    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH; s.acquire.exact = 1,
	    VMM_FRAME_EINVALID);
	EXPECT(2, s.acquire.partial = 1; s.acquire.flags = 0;
	    s.acquire.up_to = s.acquire.bytes * 2, VMM_FRAME_EINVALID);
	/* grant */
	EXPECT(3, s.grant.n_chunks = 0; s.nfds = 0, VMM_FRAME_EINVALID);
	EXPECT(3, s.chunks[1].id = 0, VMM_FRAME_EINVALID);
	EXPECT(3, s.chunks[1].size = 0, VMM_FRAME_EINVALID);
	EXPECT(3, s.chunks[0].size = UINT64_MAX, VMM_FRAME_EINVALID);
	EXPECT(3, s.chunkp[2] = NULL, VMM_FRAME_EINVALID);
	EXPECT(3, s.nfds = 2, VMM_FRAME_EFDCOUNT);
	EXPECT(3, s.nfds = 4, VMM_FRAME_EFDCOUNT);
	EXPECT(3, s.nfds = 0, VMM_FRAME_EFDCOUNT);
	EXPECT(3, s.from = VMM_FRAME_PEER_CLIENT, VMM_FRAME_EINVALID);
	for (i = 0; i <= VMM_PROTO_MAX_CHUNKS; i++)
		many[i] = &s.chunks[0];
	EXPECT(3, s.grant.chunks = many;
	    s.grant.n_chunks = s.nfds = VMM_PROTO_MAX_CHUNKS, 0);
	EXPECT(3, s.grant.chunks = many;
	    s.grant.n_chunks = s.nfds = VMM_PROTO_MAX_CHUNKS + 1,
	    VMM_FRAME_EINVALID);
	/* release */
	for (i = 0; i <= VMM_PROTO_MAX_RELEASE_IDS; i++)
		ids[i] = i + 1;
	EXPECT(4, s.release.n_chunk_ids = 0, VMM_FRAME_EINVALID);
	EXPECT(4, s.ids[1] = 0, VMM_FRAME_EINVALID);
	EXPECT(4, s.release.chunk_ids = ids;
	    s.release.n_chunk_ids = VMM_PROTO_MAX_RELEASE_IDS, 0);
	EXPECT(4, s.release.chunk_ids = ids;
	    s.release.n_chunk_ids = VMM_PROTO_MAX_RELEASE_IDS + 1,
	    VMM_FRAME_EINVALID);
	EXPECT(4, s.from = VMM_FRAME_PEER_DAEMON, VMM_FRAME_EINVALID);
	EXPECT(4, s.release.flags = VMM__RELEASE_FLAG__RELEASE_FLAG_NO_REPLY,
	    0);
	EXPECT(4, s.release.flags = 2, VMM_FRAME_EINVALID);
	EXPECT(4, s.release.flags = 1u << 31, VMM_FRAME_EINVALID);
	/* replies and requests with only an id */
	EXPECT(5, s.release_reply.request_id = 0, VMM_FRAME_EINVALID);
	EXPECT(6, s.report.request_id = 0, VMM_FRAME_EINVALID);
	EXPECT(7, s.ack.request_id = 0, VMM_FRAME_EINVALID);
	EXPECT(8, s.stats_request.request_id = 0, VMM_FRAME_EINVALID);
	EXPECT(10, s.clients_request.request_id = 0, VMM_FRAME_EINVALID);
	EXPECT(12, s.trim_request.request_id = 0, VMM_FRAME_EINVALID);
	EXPECT(13, s.trim_reply.request_id = 0, VMM_FRAME_EINVALID);
	EXPECT(8, s.from = VMM_FRAME_PEER_DAEMON, VMM_FRAME_EINVALID);
	/* stats_reply / clients_reply */
	EXPECT(9, s.stats_reply.pool = NULL, VMM_FRAME_EINVALID);
	EXPECT(9, s.counters[1].name = "", VMM_FRAME_EINVALID);
	EXPECT(9, s.counters[1].name = LONG(VMM_PROTO_MAX_COUNTER_NAME), 0);
	EXPECT(9, s.counters[1].name = LONG(VMM_PROTO_MAX_COUNTER_NAME + 1),
	    VMM_FRAME_EINVALID);
	EXPECT(9, s.stats_reply.n_counters = VMM_PROTO_MAX_COUNTERS + 1,
	    VMM_FRAME_EINVALID);
	EXPECT(9, s.stats_reply.sessions_total = 1, VMM_FRAME_EINVALID);
	EXPECT(9, s.sessions[0].kind = 0, VMM_FRAME_EINVALID);
	EXPECT(9, s.sessions[0].session_id = 0, VMM_FRAME_EINVALID);
	EXPECT(9, s.sessions[1].name = LONG(VMM_PROTO_MAX_NAME + 1),
	    VMM_FRAME_EINVALID);
	EXPECT(9, s.stats_reply.n_sessions = VMM_PROTO_MAX_SESSIONS + 1;
	    s.stats_reply.sessions_total = 1000, VMM_FRAME_EINVALID);
	EXPECT(11, s.sessions[1].kind = 9, VMM_FRAME_EINVALID);
	EXPECT(11, s.clients_reply.sessions_total = 0, VMM_FRAME_EINVALID);
	/* set_quota */
	EXPECT(14, s.set_quota.kind = 0, VMM_FRAME_EINVALID);
	EXPECT(14, s.set_quota.kind = 4, VMM_FRAME_EINVALID);
	EXPECT(14, s.set_quota.key = "", VMM_FRAME_EINVALID);
	EXPECT(14, s.set_quota.key = LONG(VMM_PROTO_MAX_QUOTA_KEY), 0);
	EXPECT(14, s.set_quota.key = LONG(VMM_PROTO_MAX_QUOTA_KEY + 1),
	    VMM_FRAME_EINVALID);
	EXPECT(14, s.set_quota.bytes = 0, 0);
	/* recall */
	EXPECT(15, s.recall.recall_id = 0, VMM_FRAME_EINVALID);
	EXPECT(15, s.recall.target_bytes = 0, VMM_FRAME_EINVALID);
	EXPECT(15, s.recall.reason = 0, VMM_FRAME_EINVALID);
	EXPECT(15, s.recall.reason = 4, VMM_FRAME_EINVALID);
	EXPECT(15, s.from = VMM_FRAME_PEER_CLIENT, VMM_FRAME_EINVALID);
	/* goodbye / error, both ways */
	EXPECT(16, s.goodbye.reason = 0, VMM_FRAME_EINVALID);
	EXPECT(16, s.goodbye.reason = 4, VMM_FRAME_EINVALID);
	EXPECT(17, s.goodbye.message = LONG(VMM_PROTO_MAX_MESSAGE), 0);
	EXPECT(17, s.goodbye.message = LONG(VMM_PROTO_MAX_MESSAGE + 1),
	    VMM_FRAME_EINVALID);
	EXPECT(18, s.error.code = 0, VMM_FRAME_EINVALID);
	EXPECT(18, s.error.code = 13, 0);	/* DUPLICATE */
	EXPECT(18, s.error.code = 14, 0);	/* IPC_REFUSED */
	EXPECT(18, s.error.code = 15, 0);	/* WOULD_CREATE */
	EXPECT(18, s.error.code = 16, VMM_FRAME_EINVALID);
	EXPECT(19, s.error.message = LONG(VMM_PROTO_MAX_MESSAGE + 1),
	    VMM_FRAME_EINVALID);
	EXPECT(19, s.nfds = 1, VMM_FRAME_EFDCOUNT);
	/* adopt / adopt_reply / mem_info */
	EXPECT(20, s.adopt.request_id = 0, VMM_FRAME_EINVALID);
	EXPECT(20, s.adopt.n_sizes = 0; s.nfds = 0, VMM_FRAME_EINVALID);
	EXPECT(20, s.sizes[2] = 0, VMM_FRAME_EINVALID);
	EXPECT(20, s.nfds = 2, VMM_FRAME_EFDCOUNT);
	EXPECT(20, s.nfds = 0, VMM_FRAME_EFDCOUNT);
	EXPECT(20, s.from = VMM_FRAME_PEER_DAEMON, VMM_FRAME_EINVALID);
	EXPECT(20, s.adopt.sizes = ids;
	    s.adopt.n_sizes = s.nfds = VMM_PROTO_MAX_CHUNKS, 0);
	EXPECT(20, s.adopt.sizes = ids;
	    s.adopt.n_sizes = s.nfds = VMM_PROTO_MAX_CHUNKS + 1,
	    VMM_FRAME_EINVALID);
	EXPECT(21, s.adopt_reply.request_id = 0, VMM_FRAME_EINVALID);
	EXPECT(21, s.ids[1] = 0, 0);	/* a refused chunk */
	EXPECT(21, s.adopt_reply.chunk_ids = ids;
	    s.adopt_reply.n_chunk_ids = VMM_PROTO_MAX_CHUNKS + 1,
	    VMM_FRAME_EINVALID);
	EXPECT(21, s.from = VMM_FRAME_PEER_CLIENT, VMM_FRAME_EINVALID);
	EXPECT(22, s.mem_info_request.request_id = 0, VMM_FRAME_EINVALID);
	EXPECT(22, s.from = VMM_FRAME_PEER_DAEMON, VMM_FRAME_EINVALID);
	EXPECT(23, s.mem_info_reply.request_id = 0, VMM_FRAME_EINVALID);
	EXPECT(23, s.from = VMM_FRAME_PEER_CLIENT, VMM_FRAME_EINVALID);
	/* legacy IPC: every id non-zero, counts within the limits */
	EXPECT(24, s.ipc_export.request_id = 0, VMM_FRAME_EINVALID);
	EXPECT(24, s.ipc_export.n_chunk_ids = 0, VMM_FRAME_EINVALID);
	EXPECT(24, s.ids[1] = 0, VMM_FRAME_EINVALID);
	EXPECT(24, s.ipc_export.chunk_ids = ids;
	    s.ipc_export.n_chunk_ids = VMM_PROTO_MAX_CHUNKS + 1;
	    for (i = 0; i <= VMM_PROTO_MAX_CHUNKS; i++) ids[i] = i + 1,
	    VMM_FRAME_EINVALID);
	EXPECT(24, s.nfds = 1, VMM_FRAME_EFDCOUNT);
	EXPECT(24, s.from = VMM_FRAME_PEER_DAEMON, VMM_FRAME_EINVALID);
	EXPECT(25, s.ipc_export_reply.export_id = 0, VMM_FRAME_EINVALID);
	EXPECT(25, s.ipc_export_reply.token = 0, 0);
	EXPECT(25, s.from = VMM_FRAME_PEER_CLIENT, VMM_FRAME_EINVALID);
	EXPECT(26, s.ipc_open.request_id = 0, VMM_FRAME_EINVALID);
	EXPECT(26, s.ipc_open.export_id = 0, VMM_FRAME_EINVALID);
	EXPECT(26, s.nfds = 1, VMM_FRAME_EFDCOUNT);
	EXPECT(26, s.from = VMM_FRAME_PEER_DAEMON, VMM_FRAME_EINVALID);
	EXPECT(27, s.ipc_grant.import_id = 0, VMM_FRAME_EINVALID);
	EXPECT(27, s.chunks[1].id = 0, VMM_FRAME_EINVALID);
	EXPECT(27, s.chunks[2].size = 0, VMM_FRAME_EINVALID);
	EXPECT(27, s.ipc_grant.n_chunks = 0; s.nfds = 0, VMM_FRAME_EINVALID);
	EXPECT(27, s.nfds = 2, VMM_FRAME_EFDCOUNT);
	EXPECT(27, s.from = VMM_FRAME_PEER_CLIENT, VMM_FRAME_EINVALID);
	EXPECT(28, s.ipc_close.import_id = 0, VMM_FRAME_EINVALID);
	EXPECT(28, s.from = VMM_FRAME_PEER_DAEMON, VMM_FRAME_EINVALID);
	/* no type, unknown type, a type without its body */
	EXPECT(0, s.env.msg_case = VMM__ENVELOPE__MSG__NOT_SET,
	    VMM_FRAME_EINVALID);
	EXPECT(0, s.env.msg_case = (Vmm__Envelope__MsgCase)99,
	    VMM_FRAME_EINVALID);
	EXPECT(7, s.env.ack = NULL, VMM_FRAME_EINVALID);
	CHECK(vmm_frame_validate(NULL, VMM_FRAME_PEER_CLIENT, 0) ==
	    VMM_FRAME_EINVALID);
#undef EXPECT
#undef LONG
}

/*
 * Every message at its widest (each repeated field at its limit, each string
 * at its longest, each integer at its largest) must fit in one frame and
 * decode within the budget: this is what VMM_FRAME_MAX is sized for.
 */
static void
test_worst_case(void)
{
	static char		 name[VMM_PROTO_MAX_NAME + 1];
	static char		 cname[VMM_PROTO_MAX_COUNTER_NAME + 1];
	static char		 text[VMM_PROTO_MAX_QUOTA_KEY + 1];
	static Vmm__SessionStats sess[VMM_PROTO_MAX_SESSIONS];
	static Vmm__SessionStats *sessp[VMM_PROTO_MAX_SESSIONS];
	static Vmm__Counter	 ctr[VMM_PROTO_MAX_COUNTERS];
	static Vmm__Counter	*ctrp[VMM_PROTO_MAX_COUNTERS];
	static Vmm__Chunk	 chunk[VMM_PROTO_MAX_CHUNKS];
	static Vmm__Chunk	*chunkp[VMM_PROTO_MAX_CHUNKS];
	static uint64_t		 ids[VMM_PROTO_MAX_RELEASE_IDS];
	struct t_sample		 s;
	struct vmm_frame_msg	*m;
	unsigned char		*a;
	size_t			 i, len, k;
	static Vmm__VaPlanEntry	 vent[VMM_PROTO_MAX_VA_ENTRIES];
	static Vmm__VaPlanEntry	*ventp[VMM_PROTO_MAX_VA_ENTRIES];
	static Vmm__VaRange	 vr[VMM_PROTO_MAX_VA_RANGES];
	static Vmm__VaRange	*vrp[VMM_PROTO_MAX_VA_RANGES];
	const size_t		 cases[] = { 0, 3, 4, 9, 11, 14, 17, 19, 20, 21,
	    32, 35 };

	memset(name, 'n', sizeof(name) - 1);
	memset(cname, 'c', sizeof(cname) - 1);
	memset(text, 't', sizeof(text) - 1);
	for (i = 0; i < VMM_PROTO_MAX_SESSIONS; i++) {
		vmm__session_stats__init(&sess[i]);
		sess[i].session_id = sess[i].chunks_held = sess[i].bytes_held =
		    sess[i].reported_in_use = sess[i].reported_cached =
		    sess[i].reported_peak = sess[i].quota_bytes =
		    sess[i].connected_usec = UINT64_MAX;
		sess[i].pid = sess[i].uid = sess[i].gid = UINT32_MAX;
		sess[i].name = name;
		sess[i].kind = VMM__CLIENT_KIND__CLIENT_KIND_ADMIN;
		sessp[i] = &sess[i];
	}
	for (i = 0; i < VMM_PROTO_MAX_COUNTERS; i++) {
		vmm__counter__init(&ctr[i]);
		ctr[i].name = cname;
		ctr[i].value = UINT64_MAX;
		ctrp[i] = &ctr[i];
	}
	for (i = 0; i < VMM_PROTO_MAX_CHUNKS; i++) {
		vmm__chunk__init(&chunk[i]);
		chunk[i].id = UINT64_MAX;
		chunk[i].size = UINT64_MAX / VMM_PROTO_MAX_CHUNKS;
		chunkp[i] = &chunk[i];
	}
	for (i = 0; i < VMM_PROTO_MAX_RELEASE_IDS; i++)
		ids[i] = UINT64_MAX;
	for (i = 0; i < VMM_PROTO_MAX_VA_ENTRIES; i++) {
		vmm__va_plan_entry__init(&vent[i]);
		vent[i].session_id = vent[i].addr = UINT64_MAX - (1ull << 50);
		vent[i].size = VMM_PROTO_MAX_VA_SIZE;
		vent[i].pid = UINT32_MAX;
		vent[i].name = name;
		vent[i].planned = 1;
		ventp[i] = &vent[i];
	}
	for (i = 0; i < VMM_PROTO_MAX_VA_RANGES; i++) {
		vmm__va_range__init(&vr[i]);
		vr[i].addr = (UINT64_MAX - VMM_PROTO_MAX_VA_SIZE) & ~4095ull;
		vr[i].size = VMM_PROTO_MAX_VA_SIZE;
		vrp[i] = &vr[i];
	}

	for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		t_sample(cases[k], &s);
		switch (cases[k]) {
		case 0:
			s.hello.request_id = UINT64_MAX;
			s.hello.protocol_version = s.hello.pid = UINT32_MAX;
			s.hello.client_name = name;
			break;
		case 3:
			s.grant.request_id = UINT64_MAX;
			s.grant.n_chunks = s.nfds = VMM_PROTO_MAX_CHUNKS;
			s.grant.chunks = chunkp;
			break;
		case 4:
			s.release.request_id = s.release.recall_id = UINT64_MAX;
			s.release.n_chunk_ids = VMM_PROTO_MAX_RELEASE_IDS;
			s.release.chunk_ids = ids;
			break;
		case 9:
			s.stats_reply.request_id = UINT64_MAX;
			s.pool.physical_bytes = s.pool.lent_bytes =
			    s.pool.idle_bytes = s.pool.quarantined_bytes =
			    s.pool.chunks = s.pool.chunks_lent =
			    s.pool.device_total_bytes =
			    s.pool.device_free_bytes =
			    s.pool.granularity = UINT64_MAX;
			s.stats_reply.n_counters = VMM_PROTO_MAX_COUNTERS;
			s.stats_reply.counters = ctrp;
			s.stats_reply.n_sessions = VMM_PROTO_MAX_SESSIONS;
			s.stats_reply.sessions = sessp;
			s.stats_reply.sessions_total = UINT32_MAX;
			break;
		case 11:
			s.clients_reply.request_id = UINT64_MAX;
			s.clients_reply.n_sessions = VMM_PROTO_MAX_SESSIONS;
			s.clients_reply.sessions = sessp;
			s.clients_reply.sessions_total = UINT32_MAX;
			break;
		case 14:
			s.set_quota.request_id = s.set_quota.bytes = UINT64_MAX;
			s.set_quota.key = text;
			break;
		case 17:
			s.goodbye.message = text + sizeof(text) - 1 -
			    VMM_PROTO_MAX_MESSAGE;
			break;
		case 20:
			s.adopt.request_id = UINT64_MAX;
			s.adopt.n_sizes = s.nfds = VMM_PROTO_MAX_CHUNKS;
			s.adopt.sizes = ids;
			break;
		case 21:
			s.adopt_reply.request_id = UINT64_MAX;
			s.adopt_reply.n_chunk_ids = VMM_PROTO_MAX_CHUNKS;
			s.adopt_reply.chunk_ids = ids;
			break;
		case 32:
			s.va_claim.request_id = UINT64_MAX;
			s.va_claim.n_ranges = VMM_PROTO_MAX_VA_RANGES;
			s.va_claim.ranges = vrp;
			break;
		case 35:
			s.va_plan_reply.request_id = s.va_plan_reply.window_base =
			    s.va_plan_reply.window_size = UINT64_MAX;
			s.va_plan_reply.total = UINT32_MAX;
			s.va_plan_reply.n_ranges = VMM_PROTO_MAX_VA_ENTRIES;
			s.va_plan_reply.ranges = ventp;
			break;
		case 19:
			s.error.request_id = UINT64_MAX;
			s.error.message = text + sizeof(text) - 1 -
			    VMM_PROTO_MAX_MESSAGE;
			break;
		}
		CHECK(check_of(&s) == 0);
		a = t_pack(&s.env, &len);
		printf("worst case %-14s %6zu bytes (cap %d)\n", s.type, len,
		    VMM_FRAME_MAX);
		CHECK(len <= VMM_FRAME_MAX);
		CHECK(decode_with(a, len, s.from, s.nfds, &m) == 0);
		vmm_frame_msg_free(m);
		free(a);
	}
}

/* Append a varint. */
static size_t
put_varint(unsigned char *p, uint64_t v)
{
	size_t	n = 0;

	while (v >= 0x80) {
		p[n++] = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (unsigned char)v;
	return n;
}

static void
test_hostile_bodies(void)
{
	static unsigned char	 body[VMM_FRAME_MAX + 16];
	static unsigned char	 inner[VMM_FRAME_MAX];
	struct vmm_frame_msg	*m;
	Vmm__Envelope		*raw;
	size_t			 n, ni, i;
	int			 fds[2];

	/* 30000 empty SessionStats: ~4 MiB of structs from 60 KB of input. */
	ni = 0;
	ni += put_varint(inner + ni, 1 << 3);		/* request_id */
	ni += put_varint(inner + ni, 1);
	ni += put_varint(inner + ni, 2 << 3 | 2);	/* pool, empty */
	ni += put_varint(inner + ni, 0);
	for (i = 0; i < 30000; i++) {
		inner[ni++] = 4 << 3 | 2;		/* sessions, empty */
		inner[ni++] = 0;
	}
	n = put_varint(body, 17 << 3 | 2);		/* stats_reply */
	n += put_varint(body + n, ni);
	memcpy(body + n, inner, ni);
	n += ni;
	CHECK(n <= VMM_FRAME_MAX);
	raw = vmm__envelope__unpack(NULL, n, body);	/* no budget */
	CHECK(raw != NULL && raw->stats_reply->n_sessions == 30000);
	vmm__envelope__free_unpacked(raw, NULL);
	CHECK(decode_with(body, n, VMM_FRAME_PEER_DAEMON, 0, &m) ==
	    VMM_FRAME_EDECODE && m == NULL);

	/* 5000 empty SessionStats: no single allocation is large, but all of
	 * them together are over the budget. */
	ni = 0;
	ni += put_varint(inner + ni, 1 << 3);
	ni += put_varint(inner + ni, 1);
	for (i = 0; i < 5000; i++) {
		inner[ni++] = 4 << 3 | 2;
		inner[ni++] = 0;
	}
	n = put_varint(body, 17 << 3 | 2);
	n += put_varint(body + n, ni);
	memcpy(body + n, inner, ni);
	n += ni;
	CHECK(decode_with(body, n, VMM_FRAME_PEER_DAEMON, 0, &m) ==
	    VMM_FRAME_EDECODE);

	/* 20000 unknown fields, each kept by protobuf-c. */
	n = 0;
	for (i = 0; i < 20000; i++) {
		n += put_varint(body + n, 100 << 3);
		body[n++] = 0;
	}
	CHECK(decode_with(body, n, VMM_FRAME_PEER_CLIENT, 0, &m) ==
	    VMM_FRAME_EDECODE);

	/* Garbage, an empty body, a lone unknown field, a wrong wire type,
	 * a truncated sub-message. */
	memset(body, 0xff, 10);
	CHECK(decode_with(body, 10, VMM_FRAME_PEER_CLIENT, 0, &m) ==
	    VMM_FRAME_EDECODE);
	CHECK(decode_with(NULL, 0, VMM_FRAME_PEER_CLIENT, 0, &m) ==
	    VMM_FRAME_EINVALID);
	n = put_varint(body, 99 << 3);
	body[n++] = 5;
	CHECK(decode_with(body, n, VMM_FRAME_PEER_CLIENT, 0, &m) ==
	    VMM_FRAME_EINVALID);
	body[0] = 1 << 3;				/* hello as a varint */
	body[1] = 1;
	CHECK(decode_with(body, 2, VMM_FRAME_PEER_CLIENT, 0, &m) ==
	    VMM_FRAME_EDECODE);
	body[0] = 1 << 3 | 2;			/* hello: 10 bytes, */
	body[1] = 10;
	body[2] = 1 << 3;
	body[3] = 1;					/* 2 given */
	CHECK(decode_with(body, 4, VMM_FRAME_PEER_CLIENT, 0, &m) ==
	    VMM_FRAME_EDECODE);
	CHECK(decode_with(body, VMM_FRAME_MAX + 1, VMM_FRAME_PEER_CLIENT, 0,
	    &m) == VMM_FRAME_ETOOBIG);

	/* Rejected frames close the fds that came with them. */
	t_nullfds(fds, 2);
	body[0] = 1 << 3 | 2;				/* a valid hello */
	body[1] = 4;
	body[2] = 1 << 3;
	body[3] = 1;
	body[4] = 6 << 3;
	body[5] = 1;
	CHECK(vmm_frame_decode(body, 6, VMM_FRAME_PEER_CLIENT, NULL, 0,
	    &m) == 0);
	vmm_frame_msg_free(m);
	CHECK(vmm_frame_decode(body, 6, VMM_FRAME_PEER_CLIENT, fds, 2, &m) ==
	    VMM_FRAME_EFDCOUNT);
	CHECK(!t_fd_open(fds[0]) && !t_fd_open(fds[1]));
	t_nullfds(fds, 2);
	CHECK(vmm_frame_decode(body, 3, VMM_FRAME_PEER_CLIENT, fds, 2, &m) ==
	    VMM_FRAME_EDECODE);
	CHECK(!t_fd_open(fds[0]) && !t_fd_open(fds[1]));
}

static void
test_feed_bytewise(void)
{
	static unsigned char	 stream[8192];
	struct vmm_frame_msg	*msgs[T_NSAMPLES], *m;
	struct vmm_frame_reader	*r;
	size_t			 n, i, grant_at, count, got;
	enum vmm_frame_peer	 from;
	int			 fds[T_GRANT_CHUNKS], rc;

	for (from = VMM_FRAME_PEER_CLIENT; from <= VMM_FRAME_PEER_DAEMON;
	    from++) {
		n = t_stream_of(from, stream, &grant_at, &count);
		CHECK((r = vmm_frame_reader_new(from)) != NULL);
		got = 0;
		for (i = 0; i < n; i++) {
			if (i == grant_at) {
				t_memfds(fds, T_GRANT_CHUNKS, 7);
				CHECK(vmm_frame_reader_feed(r, stream + i, 1,
				    fds, T_GRANT_CHUNKS) == 0);
			} else
				CHECK(vmm_frame_reader_feed(r, stream + i, 1,
				    NULL, 0) == 0);
			while ((rc = vmm_frame_reader_next(r, &m)) == 1)
				msgs[got++] = m;
			CHECK(rc == 0);
		}
		t_check_in_order(msgs, got, from, 7);
		vmm_frame_reader_free(r);
	}
}

static void
test_feed_faults(void)
{
	static unsigned char	 stream[8192];
	struct vmm_frame_reader	*r;
	struct vmm_frame_msg	*m;
	struct t_sample		 s;
	struct mallinfo2	 before, after;
	unsigned char		 hdr[4];
	size_t			 n, grant_at, count, glen, i, k;
	int			 fds[T_GRANT_CHUNKS];
	int			 base_fds = t_count_fds();

	/* Fds on a byte that is not a frame start. */
	t_sample(3, &s);
	glen = t_frame(&s.env, stream);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_DAEMON)) != NULL);
	CHECK(vmm_frame_reader_feed(r, stream, 5, NULL, 0) == 0);
	t_nullfds(fds, T_GRANT_CHUNKS);
	CHECK(vmm_frame_reader_feed(r, stream + 5, glen - 5, fds,
	    T_GRANT_CHUNKS) == VMM_FRAME_EINVALID);
	CHECK(!t_fd_open(fds[0]) && !t_fd_open(fds[2]));
	CHECK(vmm_frame_reader_next(r, &m) == VMM_FRAME_EINVALID); /* sticky */
	t_nullfds(fds, 1);
	CHECK(vmm_frame_reader_feed(r, stream, 1, fds, 1) ==
	    VMM_FRAME_EINVALID);
	CHECK(!t_fd_open(fds[0]));
	vmm_frame_reader_free(r);

	/* Fds from a client on a message that carries none. */
	t_sample(0, &s);
	glen = t_frame(&s.env, stream);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) != NULL);
	t_nullfds(fds, 1);
	CHECK(vmm_frame_reader_feed(r, stream, glen, fds, 1) == 0);
	CHECK(vmm_frame_reader_next(r, &m) == VMM_FRAME_EFDCOUNT);
	CHECK(!t_fd_open(fds[0]));
	vmm_frame_reader_free(r);
	t_sample(3, &s);
	glen = t_frame(&s.env, stream);

	/* Two Grants in one read with one batch of fds: the batch belongs to
	 * the last frame that starts in the read, so the first has none. */
	memcpy(stream + glen, stream, glen);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_DAEMON)) != NULL);
	t_nullfds(fds, T_GRANT_CHUNKS);
	CHECK(vmm_frame_reader_feed(r, stream, 2 * glen, fds,
	    T_GRANT_CHUNKS) == 0);
	CHECK(vmm_frame_reader_next(r, &m) == VMM_FRAME_EFDCOUNT);
	vmm_frame_reader_free(r);
	CHECK(!t_fd_open(fds[0]) && !t_fd_open(fds[2]));

	/* Oversized lengths fail on the 4th header byte, before any body
	 * arrives and before anything is allocated for it. */
	for (i = 0; i < 2; i++) {
		uint32_t len = i == 0 ? VMM_FRAME_MAX + 1 : UINT32_MAX;

		hdr[0] = len & 0xff;
		hdr[1] = (len >> 8) & 0xff;
		hdr[2] = (len >> 16) & 0xff;
		hdr[3] = (len >> 24) & 0xff;
		CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) !=
		    NULL);
		CHECK(vmm_frame_reader_feed(r, hdr, 3, NULL, 0) == 0);
		before = mallinfo2();
		CHECK(vmm_frame_reader_feed(r, hdr + 3, 1, NULL, 0) ==
		    VMM_FRAME_ETOOBIG);
		CHECK(vmm_frame_reader_next(r, &m) == VMM_FRAME_ETOOBIG);
		after = mallinfo2();
		CHECK(after.uordblks + after.hblkhd <=
		    before.uordblks + before.hblkhd + 1024);
		vmm_frame_reader_free(r);
	}

	/* Exactly VMM_FRAME_MAX is fine: a Hello padded with an unknown
	 * field (kept by protobuf-c, ignored by us) to the cap. */
	{
		static unsigned char big[VMM_FRAME_HDR + VMM_FRAME_MAX];
		size_t	hl, pad;

		t_sample(0, &s);
		hl = vmm__envelope__get_packed_size(&s.env);
		/* field 15, length-delimited: 1 tag byte, 3 length bytes */
		pad = VMM_FRAME_MAX - hl - 1 - 3;
		big[0] = 0;
		big[1] = VMM_FRAME_MAX >> 8 & 0xff;
		big[2] = VMM_FRAME_MAX >> 16 & 0xff;
		big[3] = 0;
		CHECK(vmm__envelope__pack(&s.env, big + 4) == hl);
		k = 4 + hl;
		big[k++] = 15 << 3 | 2;
		k += put_varint(big + k, pad);
		CHECK(k + pad == sizeof(big));
		memset(big + k, 'p', pad);
		CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) !=
		    NULL);
		CHECK(vmm_frame_reader_feed(r, big, sizeof(big) - 1, NULL, 0) ==
		    0);
		CHECK(vmm_frame_reader_next(r, &m) == 0);
		CHECK(vmm_frame_reader_feed(r, big + sizeof(big) - 1, 1, NULL,
		    0) == 0);
		CHECK(vmm_frame_reader_next(r, &m) == 1);
		CHECK(vmm_frame_msg_env(m)->hello->request_id == 1);
		vmm_frame_msg_free(m);
		vmm_frame_reader_free(r);
	}

	/* Feeding without draining fills the buffer: -ENOBUFS, not sticky
	 * without fds, sticky with them (they would be lost). */
	t_sample(2, &s);
	n = t_frame(&s.env, stream);
	count = 1;
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_CLIENT)) != NULL);
	for (i = 0; vmm_frame_reader_feed(r, stream, n, NULL, 0) == 0; i++)
		CHECK(i < 100000);
	CHECK(i * n >= 2 * (VMM_FRAME_HDR + VMM_FRAME_MAX));
	for (k = 0; vmm_frame_reader_next(r, &m) == 1; k++)
		vmm_frame_msg_free(m);
	CHECK(k == i * count);
	CHECK(vmm_frame_reader_feed(r, stream, n, NULL, 0) == 0);
	for (k = 0; vmm_frame_reader_next(r, &m) == 1; k++)
		vmm_frame_msg_free(m);
	CHECK(k == count && vmm_frame_reader_next(r, &m) == 0);
	vmm_frame_reader_free(r);
	n = t_stream_of(VMM_FRAME_PEER_DAEMON, stream, &grant_at, &count);
	CHECK((r = vmm_frame_reader_new(VMM_FRAME_PEER_DAEMON)) != NULL);
	while (vmm_frame_reader_feed(r, stream, grant_at, NULL, 0) == 0)
		;
	t_nullfds(fds, 1);
	CHECK(vmm_frame_reader_feed(r, stream, grant_at, fds, 1) == -ENOBUFS);
	CHECK(!t_fd_open(fds[0]));
	CHECK(vmm_frame_reader_next(r, &m) == -ENOBUFS);
	vmm_frame_reader_free(r);

	CHECK(t_count_fds() == base_fds);
}

static void
test_strerror(void)
{
	const int	codes[] = { 0, VMM_FRAME_ETOOBIG, VMM_FRAME_EDECODE,
	    VMM_FRAME_EINVALID, VMM_FRAME_EFDCOUNT, VMM_FRAME_ETOOMANYFDS,
	    VMM_FRAME_ETRUNCATED, -ENOBUFS, -EAGAIN, -ETIMEDOUT };
	size_t		i;

	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		CHECK(vmm_frame_strerror(codes[i]) != NULL &&
		    vmm_frame_strerror(codes[i])[0] != '\0');
	CHECK(VMM_PROTOCOL_VERSION == 4);
}

int
main(void)
{
	int	fds = t_count_fds();

	test_roundtrip_all();
	test_validation();
	test_worst_case();
	test_hostile_bodies();
	test_feed_bytewise();
	test_feed_faults();
	test_strerror();
	CHECK(t_count_fds() == fds);
	printf("proto codec: ok\n");
	return 0;
}
