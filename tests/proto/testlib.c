/* Helpers for the tests/proto programs; see testlib.h. */
#include <sys/mman.h>
#include <sys/socket.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "testlib.h"

static void
sample_sessions(struct t_sample *s)
{
	size_t	i;

	for (i = 0; i < 2; i++) {
		vmm__session_stats__init(&s->sessions[i]);
		s->sessions[i].session_id = 100 + i;
		s->sessions[i].pid = 4000 + (uint32_t)i;
		s->sessions[i].uid = 1000 + (uint32_t)i;
		s->sessions[i].gid = 2000 + (uint32_t)i;
		s->sessions[i].name = i == 0 ? "train.py" : "vmmctl";
		s->sessions[i].kind = i == 0 ?
		    VMM__CLIENT_KIND__CLIENT_KIND_APP :
		    VMM__CLIENT_KIND__CLIENT_KIND_ADMIN;
		s->sessions[i].chunks_held = 3 + i;
		s->sessions[i].bytes_held = (6u + i) << 20;
		s->sessions[i].reported_in_use = 5u << 20;
		s->sessions[i].reported_cached = 1u << 20;
		s->sessions[i].reported_peak = 7u << 20;
		s->sessions[i].quota_bytes = 1ull << 33;
		s->sessions[i].connected_usec = 1700000000000000ull + i;
		s->sessionp[i] = &s->sessions[i];
	}
}

void
t_sample(size_t i, struct t_sample *s)
{
	Vmm__Envelope	*e = &s->env;
	size_t		 j;

	memset(s, 0, sizeof(*s));
	vmm__envelope__init(e);
	for (j = 0; j < VMM_PROTO_UUID_LEN; j++)
		s->uuid[j] = (uint8_t)(0xa0 + j);
	s->from = VMM_FRAME_PEER_CLIENT;
	switch (i) {
	case 0:
		vmm__hello__init(&s->hello);
		s->hello.request_id = 1;
		s->hello.protocol_version = VMM_PROTOCOL_VERSION;
		s->hello.client_name = "python3";
		s->hello.pid = 4242;
		s->hello.device_uuid.len = VMM_PROTO_UUID_LEN;
		s->hello.device_uuid.data = s->uuid;
		s->hello.kind = VMM__CLIENT_KIND__CLIENT_KIND_APP;
		e->msg_case = VMM__ENVELOPE__MSG_HELLO;
		e->hello = &s->hello;
		s->type = "hello";
		break;
	case 1:
		vmm__limits__init(&s->limits);
		s->limits.max_chunks_per_grant = 16;
		s->limits.max_frame = VMM_FRAME_MAX;
		s->limits.quota_bytes = 1ull << 34;
		s->limits.device_total_bytes = 1ull << 36;
		vmm__hello_reply__init(&s->hello_reply);
		s->hello_reply.request_id = 1;
		s->hello_reply.protocol_version = VMM_PROTOCOL_VERSION;
		s->hello_reply.session_id = 77;
		s->hello_reply.instance_id = 0x5eed;
		s->hello_reply.granularity = 2u << 20;
		s->hello_reply.device_uuid.len = VMM_PROTO_UUID_LEN;
		s->hello_reply.device_uuid.data = s->uuid;
		s->hello_reply.limits = &s->limits;
		e->msg_case = VMM__ENVELOPE__MSG_HELLO_REPLY;
		e->hello_reply = &s->hello_reply;
		s->from = VMM_FRAME_PEER_DAEMON;
		s->type = "hello_reply";
		break;
	case 2:
		vmm__acquire__init(&s->acquire);
		s->acquire.request_id = 2;
		s->acquire.bytes = 6u << 20;
		s->acquire.flags =
		    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH |
		    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_IGNORE_FRAG_RATIO;
		s->acquire.min_piece = 2u << 20;
		e->msg_case = VMM__ENVELOPE__MSG_ACQUIRE;
		e->acquire = &s->acquire;
		s->type = "acquire";
		break;
	case 3:
		for (j = 0; j < T_GRANT_CHUNKS; j++) {
			vmm__chunk__init(&s->chunks[j]);
			s->chunks[j].id = 500 + j;
			s->chunks[j].size = (2u + 2 * j) << 20;
			s->chunkp[j] = &s->chunks[j];
		}
		vmm__grant__init(&s->grant);
		s->grant.request_id = 2;
		s->grant.n_chunks = T_GRANT_CHUNKS;
		s->grant.chunks = s->chunkp;
		e->msg_case = VMM__ENVELOPE__MSG_GRANT;
		e->grant = &s->grant;
		s->from = VMM_FRAME_PEER_DAEMON;
		s->nfds = T_GRANT_CHUNKS;
		s->type = "grant";
		break;
	case 4:
		s->ids[0] = 500;
		s->ids[1] = 502;
		s->ids[2] = 1ull << 40;
		vmm__release__init(&s->release);
		s->release.request_id = 3;
		s->release.n_chunk_ids = 3;
		s->release.chunk_ids = s->ids;
		s->release.recall_id = 9;
		e->msg_case = VMM__ENVELOPE__MSG_RELEASE;
		e->release = &s->release;
		s->type = "release";
		break;
	case 5:
		vmm__release_reply__init(&s->release_reply);
		s->release_reply.request_id = 3;
		s->release_reply.released_chunks = 3;
		s->release_reply.released_bytes = 12u << 20;
		e->msg_case = VMM__ENVELOPE__MSG_RELEASE_REPLY;
		e->release_reply = &s->release_reply;
		s->from = VMM_FRAME_PEER_DAEMON;
		s->type = "release_reply";
		break;
	case 6:
		vmm__report__init(&s->report);
		s->report.request_id = 4;
		s->report.in_use_bytes = 11;
		s->report.cached_bytes = 12;
		s->report.peak_bytes = 13;
		s->report.alloc_count = 14;
		s->report.free_count = 15;
		s->report.reserved_va_bytes = 1ull << 40;
		e->msg_case = VMM__ENVELOPE__MSG_REPORT;
		e->report = &s->report;
		s->type = "report";
		break;
	case 7:
		vmm__ack__init(&s->ack);
		s->ack.request_id = 4;
		e->msg_case = VMM__ENVELOPE__MSG_ACK;
		e->ack = &s->ack;
		s->from = VMM_FRAME_PEER_DAEMON;
		s->type = "ack";
		break;
	case 8:
		vmm__stats_request__init(&s->stats_request);
		s->stats_request.request_id = 5;
		s->stats_request.session_offset = 1;
		e->msg_case = VMM__ENVELOPE__MSG_STATS_REQUEST;
		e->stats_request = &s->stats_request;
		s->type = "stats_request";
		break;
	case 9:
		vmm__pool_stats__init(&s->pool);
		s->pool.physical_bytes = 1ull << 32;
		s->pool.lent_bytes = 1ull << 31;
		s->pool.idle_bytes = 1ull << 30;
		s->pool.quarantined_bytes = 1ull << 29;
		s->pool.chunks = 40;
		s->pool.chunks_lent = 20;
		s->pool.device_total_bytes = 1ull << 36;
		s->pool.device_free_bytes = 1ull << 35;
		s->pool.granularity = 2u << 20;
		for (j = 0; j < 2; j++) {
			vmm__counter__init(&s->counters[j]);
			s->counters[j].name = j == 0 ? "grants" :
			    "oom_recoveries";
			s->counters[j].value = 1000 + j;
			s->counterp[j] = &s->counters[j];
		}
		sample_sessions(s);
		vmm__stats_reply__init(&s->stats_reply);
		s->stats_reply.request_id = 5;
		s->stats_reply.pool = &s->pool;
		s->stats_reply.n_counters = 2;
		s->stats_reply.counters = s->counterp;
		s->stats_reply.n_sessions = 2;
		s->stats_reply.sessions = s->sessionp;
		s->stats_reply.sessions_total = 3;
		e->msg_case = VMM__ENVELOPE__MSG_STATS_REPLY;
		e->stats_reply = &s->stats_reply;
		s->from = VMM_FRAME_PEER_DAEMON;
		s->type = "stats_reply";
		break;
	case 10:
		vmm__clients_request__init(&s->clients_request);
		s->clients_request.request_id = 6;
		s->clients_request.session_offset = 2;
		e->msg_case = VMM__ENVELOPE__MSG_CLIENTS_REQUEST;
		e->clients_request = &s->clients_request;
		s->type = "clients_request";
		break;
	case 11:
		sample_sessions(s);
		vmm__clients_reply__init(&s->clients_reply);
		s->clients_reply.request_id = 6;
		s->clients_reply.n_sessions = 2;
		s->clients_reply.sessions = s->sessionp;
		s->clients_reply.sessions_total = 4;
		e->msg_case = VMM__ENVELOPE__MSG_CLIENTS_REPLY;
		e->clients_reply = &s->clients_reply;
		s->from = VMM_FRAME_PEER_DAEMON;
		s->type = "clients_reply";
		break;
	case 12:
		vmm__trim_request__init(&s->trim_request);
		s->trim_request.request_id = 7;
		s->trim_request.target_bytes = 1u << 30;
		s->trim_request.recall_clients = 1;
		e->msg_case = VMM__ENVELOPE__MSG_TRIM_REQUEST;
		e->trim_request = &s->trim_request;
		s->type = "trim_request";
		break;
	case 13:
		vmm__trim_reply__init(&s->trim_reply);
		s->trim_reply.request_id = 7;
		s->trim_reply.bytes_released = 1u << 29;
		e->msg_case = VMM__ENVELOPE__MSG_TRIM_REPLY;
		e->trim_reply = &s->trim_reply;
		s->from = VMM_FRAME_PEER_DAEMON;
		s->type = "trim_reply";
		break;
	case 14:
		vmm__set_quota__init(&s->set_quota);
		s->set_quota.request_id = 8;
		s->set_quota.kind = VMM__QUOTA_KIND__QUOTA_KIND_CGROUP;
		s->set_quota.key = "/sys/fs/cgroup/user.slice/job-17";
		s->set_quota.bytes = 1ull << 33;
		e->msg_case = VMM__ENVELOPE__MSG_SET_QUOTA;
		e->set_quota = &s->set_quota;
		s->type = "set_quota";
		break;
	case 15:
		vmm__recall__init(&s->recall);
		s->recall.recall_id = 9;
		s->recall.target_bytes = 64u << 20;
		s->recall.reason = VMM__RECALL_REASON__RECALL_REASON_PRESSURE;
		e->msg_case = VMM__ENVELOPE__MSG_RECALL;
		e->recall = &s->recall;
		s->from = VMM_FRAME_PEER_DAEMON;
		s->type = "recall";
		break;
	case 16:
	case 17:
		vmm__goodbye__init(&s->goodbye);
		s->goodbye.reason = i == 16 ?
		    VMM__GOODBYE_REASON__GOODBYE_REASON_CLIENT_EXIT :
		    VMM__GOODBYE_REASON__GOODBYE_REASON_SHUTDOWN;
		s->goodbye.message = i == 16 ? "bye" : "vmmd stopping";
		e->msg_case = VMM__ENVELOPE__MSG_GOODBYE;
		e->goodbye = &s->goodbye;
		s->from = i == 16 ? VMM_FRAME_PEER_CLIENT :
		    VMM_FRAME_PEER_DAEMON;
		s->type = "goodbye";
		break;
	case 18:
	case 19:
		vmm__error__init(&s->error);
		s->error.request_id = i == 18 ? 0 : 2;
		s->error.code = i == 18 ?
		    VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE :
		    VMM__ERROR_CODE__ERROR_CODE_OUT_OF_MEMORY;
		s->error.message = i == 18 ? "unexpected recall" :
		    "out of GPU memory after recovery";
		e->msg_case = VMM__ENVELOPE__MSG_ERROR;
		e->error = &s->error;
		s->from = i == 18 ? VMM_FRAME_PEER_CLIENT :
		    VMM_FRAME_PEER_DAEMON;
		s->type = "error";
		break;
	case 20:
		for (j = 0; j < T_GRANT_CHUNKS; j++)
			s->sizes[j] = (4u + 2 * j) << 20;
		vmm__adopt__init(&s->adopt);
		s->adopt.request_id = 10;
		s->adopt.n_sizes = T_GRANT_CHUNKS;
		s->adopt.sizes = s->sizes;
		e->msg_case = VMM__ENVELOPE__MSG_ADOPT;
		e->adopt = &s->adopt;
		s->nfds = T_GRANT_CHUNKS;
		s->type = "adopt";
		break;
	case 21:
		s->ids[0] = 900;
		s->ids[1] = 901;
		s->ids[2] = 902;
		vmm__adopt_reply__init(&s->adopt_reply);
		s->adopt_reply.request_id = 10;
		s->adopt_reply.n_chunk_ids = 3;
		s->adopt_reply.chunk_ids = s->ids;
		e->msg_case = VMM__ENVELOPE__MSG_ADOPT_REPLY;
		e->adopt_reply = &s->adopt_reply;
		s->from = VMM_FRAME_PEER_DAEMON;
		s->type = "adopt_reply";
		break;
	case 22:
		vmm__mem_info_request__init(&s->mem_info_request);
		s->mem_info_request.request_id = 11;
		e->msg_case = VMM__ENVELOPE__MSG_MEM_INFO_REQUEST;
		e->mem_info_request = &s->mem_info_request;
		s->type = "mem_info_request";
		break;
	case 23:
		vmm__mem_info_reply__init(&s->mem_info_reply);
		s->mem_info_reply.request_id = 11;
		s->mem_info_reply.free_bytes = 1ull << 33;
		s->mem_info_reply.total_bytes = 1ull << 34;
		s->mem_info_reply.held_bytes = 1ull << 30;
		e->msg_case = VMM__ENVELOPE__MSG_MEM_INFO_REPLY;
		e->mem_info_reply = &s->mem_info_reply;
		s->from = VMM_FRAME_PEER_DAEMON;
		s->type = "mem_info_reply";
		break;
	case 24:
		s->ids[0] = 500;
		s->ids[1] = 502;
		s->ids[2] = 504;
		vmm__ipc_export__init(&s->ipc_export);
		s->ipc_export.request_id = 12;
		s->ipc_export.n_chunk_ids = 3;
		s->ipc_export.chunk_ids = s->ids;
		e->msg_case = VMM__ENVELOPE__MSG_IPC_EXPORT;
		e->ipc_export = &s->ipc_export;
		s->type = "ipc_export";
		break;
	case 25:
		vmm__ipc_export_reply__init(&s->ipc_export_reply);
		s->ipc_export_reply.request_id = 12;
		s->ipc_export_reply.export_id = 31;
		s->ipc_export_reply.token = 0x70c3e4;
		e->msg_case = VMM__ENVELOPE__MSG_IPC_EXPORT_REPLY;
		e->ipc_export_reply = &s->ipc_export_reply;
		s->from = VMM_FRAME_PEER_DAEMON;
		s->type = "ipc_export_reply";
		break;
	case 26:
		vmm__ipc_open__init(&s->ipc_open);
		s->ipc_open.request_id = 13;
		s->ipc_open.export_id = 31;
		s->ipc_open.token = 0x70c3e4;
		e->msg_case = VMM__ENVELOPE__MSG_IPC_OPEN;
		e->ipc_open = &s->ipc_open;
		s->type = "ipc_open";
		break;
	case 27:
		for (j = 0; j < T_GRANT_CHUNKS; j++) {
			vmm__chunk__init(&s->chunks[j]);
			s->chunks[j].id = 500 + 2 * j;
			s->chunks[j].size = (2u + 2 * j) << 20;
			s->chunkp[j] = &s->chunks[j];
		}
		vmm__ipc_grant__init(&s->ipc_grant);
		s->ipc_grant.request_id = 13;
		s->ipc_grant.import_id = 7;
		s->ipc_grant.n_chunks = T_GRANT_CHUNKS;
		s->ipc_grant.chunks = s->chunkp;
		e->msg_case = VMM__ENVELOPE__MSG_IPC_GRANT;
		e->ipc_grant = &s->ipc_grant;
		s->from = VMM_FRAME_PEER_DAEMON;
		s->nfds = T_GRANT_CHUNKS;
		s->type = "ipc_grant";
		break;
	case 28:
		vmm__ipc_close__init(&s->ipc_close);
		s->ipc_close.request_id = 14;
		s->ipc_close.import_id = 7;
		e->msg_case = VMM__ENVELOPE__MSG_IPC_CLOSE;
		e->ipc_close = &s->ipc_close;
		s->type = "ipc_close";
		break;
	case 29:
		vmm__va_request__init(&s->va_request);
		s->va_request.request_id = 15;
		s->va_request.size = 4ull << 30;
		s->va_request.alignment = 2u << 20;
		e->msg_case = VMM__ENVELOPE__MSG_VA_REQUEST;
		e->va_request = &s->va_request;
		s->type = "va_request";
		break;
	case 30:
		vmm__va_reply__init(&s->va_reply);
		s->va_reply.request_id = 15;
		s->va_reply.addr = 32ull << 40;
		s->va_reply.size = 4ull << 30;
		e->msg_case = VMM__ENVELOPE__MSG_VA_REPLY;
		e->va_reply = &s->va_reply;
		s->from = VMM_FRAME_PEER_DAEMON;
		s->type = "va_reply";
		break;
	case 31:
		vmm__va_placed__init(&s->va_placed);
		s->va_placed.request_id = 16;
		s->va_placed.planned = 32ull << 40;
		s->va_placed.addr = 0x7f0000000000ull;
		s->va_placed.size = 4ull << 30;
		e->msg_case = VMM__ENVELOPE__MSG_VA_PLACED;
		e->va_placed = &s->va_placed;
		s->type = "va_placed";
		break;
	case 32:
		for (j = 0; j < 2; j++) {
			vmm__va_range__init(&s->va_ranges[j]);
			s->va_ranges[j].addr = (32ull << 40) + (j << 33);
			s->va_ranges[j].size = 4ull << 30;
			s->va_rangep[j] = &s->va_ranges[j];
		}
		vmm__va_claim__init(&s->va_claim);
		s->va_claim.request_id = 17;
		s->va_claim.n_ranges = 2;
		s->va_claim.ranges = s->va_rangep;
		e->msg_case = VMM__ENVELOPE__MSG_VA_CLAIM;
		e->va_claim = &s->va_claim;
		s->type = "va_claim";
		break;
	case 33:
		vmm__va_claim_reply__init(&s->va_claim_reply);
		s->va_claim_reply.request_id = 17;
		s->va_accepted[0] = 1;
		s->va_accepted[1] = 0;
		s->va_claim_reply.n_accepted = 2;
		s->va_claim_reply.accepted = s->va_accepted;
		e->msg_case = VMM__ENVELOPE__MSG_VA_CLAIM_REPLY;
		e->va_claim_reply = &s->va_claim_reply;
		s->from = VMM_FRAME_PEER_DAEMON;
		s->type = "va_claim_reply";
		break;
	case 34:
		vmm__va_plan_request__init(&s->va_plan_request);
		s->va_plan_request.request_id = 18;
		s->va_plan_request.offset = 1;
		e->msg_case = VMM__ENVELOPE__MSG_VA_PLAN_REQUEST;
		e->va_plan_request = &s->va_plan_request;
		s->type = "va_plan_request";
		break;
	case 35:
		for (j = 0; j < 2; j++) {
			vmm__va_plan_entry__init(&s->va_entries[j]);
			s->va_entries[j].session_id = 3 + j;
			s->va_entries[j].pid = 1000 + (uint32_t)j;
			s->va_entries[j].name = (char *)"app";
			s->va_entries[j].addr = (32ull << 40) + (j << 33);
			s->va_entries[j].size = 4ull << 30;
			s->va_entries[j].planned = j == 0;
			s->va_entryp[j] = &s->va_entries[j];
		}
		vmm__va_plan_reply__init(&s->va_plan_reply);
		s->va_plan_reply.request_id = 18;
		s->va_plan_reply.n_ranges = 2;
		s->va_plan_reply.ranges = s->va_entryp;
		s->va_plan_reply.total = 3;
		s->va_plan_reply.window_base = 32ull << 40;
		s->va_plan_reply.window_size = 4ull << 40;
		e->msg_case = VMM__ENVELOPE__MSG_VA_PLAN_REPLY;
		e->va_plan_reply = &s->va_plan_reply;
		s->from = VMM_FRAME_PEER_DAEMON;
		s->type = "va_plan_reply";
		break;
	default:
		CHECK(!"no such sample");
	}
}

size_t
t_frame(const Vmm__Envelope *env, unsigned char *out)
{
	size_t	n = vmm__envelope__get_packed_size(env);

	CHECK(n <= VMM_FRAME_MAX);
	out[0] = n & 0xff;
	out[1] = (n >> 8) & 0xff;
	out[2] = (n >> 16) & 0xff;
	out[3] = (n >> 24) & 0xff;
	CHECK(vmm__envelope__pack(env, out + VMM_FRAME_HDR) == n);
	return VMM_FRAME_HDR + n;
}

unsigned char *
t_pack(const Vmm__Envelope *env, size_t *len)
{
	unsigned char	*p;

	*len = vmm__envelope__get_packed_size(env);
	CHECK((p = malloc(*len + 1)) != NULL);
	CHECK(vmm__envelope__pack(env, p) == *len);
	return p;
}

int
t_count_fds(void)
{
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	CHECK((d = opendir("/proc/self/fd")) != NULL);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.')
			n++;
	}
	closedir(d);
	return n - 1;	/* the directory's own fd */
}

int
t_fd_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

void
t_memfds(int *fds, size_t n, unsigned tag)
{
	char	text[64];
	size_t	j;
	int	len;

	for (j = 0; j < n; j++) {
		CHECK((fds[j] = memfd_create("t", MFD_CLOEXEC)) >= 0);
		len = snprintf(text, sizeof(text), "%u:%zu", tag, j);
		CHECK(write(fds[j], text, (size_t)len) == len);
	}
}

int
t_memfd_is(int fd, unsigned tag, size_t j)
{
	char	want[64], got[64];
	int	len;
	ssize_t	n;

	len = snprintf(want, sizeof(want), "%u:%zu", tag, j);
	n = pread(fd, got, sizeof(got), 0);
	return n == len && memcmp(want, got, (size_t)len) == 0;
}

void
t_nullfds(int *fds, size_t n)
{
	size_t	j;

	for (j = 0; j < n; j++)
		CHECK((fds[j] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0);
}

void
t_socketpair(int sv[2])
{
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
}

/* Concatenated frames of every sample `from` sends; *grant_at gets the
 * offset of the Grant frame, or SIZE_MAX. */
size_t
t_stream_of(enum vmm_frame_peer from, unsigned char *out, size_t *grant_at,
    size_t *count)
{
	struct t_sample	s;
	size_t		i, n = 0;

	*grant_at = SIZE_MAX;
	*count = 0;
	for (i = 0; i < T_NSAMPLES; i++) {
		t_sample(i, &s);
		if (s.from != from || i == T_STREAM_SKIP)
			continue;
		if (s.nfds != 0)
			*grant_at = n;
		n += t_frame(&s.env, out + n);
		(*count)++;
	}
	return n;
}

/* Check the messages come back in sample order, byte for byte. */
void
t_check_in_order(struct vmm_frame_msg **msgs, size_t count,
    enum vmm_frame_peer from, unsigned tag)
{
	struct t_sample	 s;
	unsigned char	*a, *b;
	size_t		 i, k = 0, j, alen, blen;
	int		 fd;

	for (i = 0; i < T_NSAMPLES; i++) {
		t_sample(i, &s);
		if (s.from != from || i == T_STREAM_SKIP)
			continue;
		CHECK(k < count);
		a = t_pack(&s.env, &alen);
		b = t_pack(vmm_frame_msg_env(msgs[k]), &blen);
		CHECK(alen == blen && memcmp(a, b, alen) == 0);
		CHECK(vmm_frame_msg_nfds(msgs[k]) == s.nfds);
		for (j = 0; j < s.nfds; j++) {
			fd = vmm_frame_msg_take_fd(msgs[k], j);
			CHECK(t_memfd_is(fd, tag, j));
			close(fd);
		}
		vmm_frame_msg_free(msgs[k]);
		free(a);
		free(b);
		k++;
	}
	CHECK(k == count);
}
