/*
 * What a client's requests do, one handler per message type behind one
 * switch (dispatch), called by session.c for each frame a session reads.
 * The frame module has already checked every field range, the direction
 * and the fd count; here each handler checks what needs the daemon's state
 * (the session's stage, admin rights, ids it holds) and answers.
 *
 * Calls session.c (replies), policy.c (Acquire, recalls), pool.c, stats.c
 * and config.c; nothing calls back in but through the hooks it registers
 * with session.c (vmmd_dispatch_init).
 */
#include "vmmd.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static void	session_ack(struct vmmd_session *s, uint64_t rid);

static void
session_hello(struct vmmd_session *s, const Vmm__Hello *h)
{
	Vmm__Envelope env;
	Vmm__HelloReply rep = VMM__HELLO_REPLY__INIT;
	Vmm__Limits lim = VMM__LIMITS__INIT;
	char msg[128], esc[4 * VMM_PROTO_MAX_NAME + 1];

	if (s->state != VMMD_SESSION_NEW) {
		vmmd_session_fatal(s, h->request_id, VMM__ERROR_CODE__ERROR_CODE_BAD_STATE,
		    "Hello sent twice");
		return;
	}
	/* Versions 2 and 3 are served: they never send what 3 and 4 added. */
	if (h->protocol_version < VMM_PROTOCOL_VERSION_MIN ||
	    h->protocol_version > VMM_PROTOCOL_VERSION) {
		snprintf(msg, sizeof(msg), "protocol version %u not supported; "
		    "vmmd %s speaks versions %d to %d", h->protocol_version,
		    VMMD_VERSION, VMM_PROTOCOL_VERSION_MIN, VMM_PROTOCOL_VERSION);
		vmmd_session_fatal(s, h->request_id,
		    VMM__ERROR_CODE__ERROR_CODE_VERSION_MISMATCH, msg);
		return;
	}
	if (h->device_uuid.len == 16 &&
	    memcmp(h->device_uuid.data, vmmd_pool_device_uuid(), 16) != 0) {
		vmmd_session_fatal(s, h->request_id, VMM__ERROR_CODE__ERROR_CODE_NO_DEVICE,
		    "this socket serves another GPU");
		return;
	}
	snprintf(s->name, sizeof(s->name), "%s", h->client_name);
	if (vmmd_session_named(s) != 0) {
		vmmd_session_fatal(s, h->request_id,
		    VMM__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
		return;
	}
	s->kind = h->kind;
	s->proto = h->protocol_version;
	s->state = VMMD_SESSION_READY;
	vmmd_session_cached_sync(s);
	event_del(s->ev_timeout);
	if (h->resume_session != 0 && h->resume_instance == vmmd_instance)
		rep.resumed = vmmd_session_resume(s, h->resume_session);
	vmm_log_escape(esc, sizeof(esc), s->name, strlen(s->name));
	vmm_log_info("HELLO Session=%" PRIu64 " Pid=%d Uid=%u Name=%s", s->id,
	    (int)s->pid, (unsigned)s->uid, esc);

	lim.max_chunks_per_grant = (uint32_t)vmmd_cfg.max_pieces;
	lim.max_frame = VMM_FRAME_MAX;
	lim.quota_bytes = vmmd_session_quota(s);
	lim.device_total_bytes = vmmd_pool_device_total();
	rep.request_id = h->request_id;
	rep.protocol_version = h->protocol_version;
	rep.session_id = s->id;
	rep.instance_id = vmmd_instance;
	rep.granularity = vmmd_pool_chunk_unit();
	rep.device_uuid.data = (uint8_t *)vmmd_pool_device_uuid();
	rep.device_uuid.len = 16;
	rep.limits = &lim;
	env = vmm_frame_env_hello_reply(&rep);
	vmmd_session_send(s, &env);
}

static void
session_release(struct vmmd_session *s, const Vmm__Release *r)
{
	static struct vmmd_chunk *chs[VMM_PROTO_MAX_RELEASE_IDS];
	Vmm__Envelope env;
	Vmm__ReleaseReply rep = VMM__RELEASE_REPLY__INIT;
	uint64_t bytes = 0;
	char msg[96];
	size_t i, n = r->n_chunk_ids;
	bool sent = true;

	/* All or nothing: check every id first.  Each chunk found is marked
	 * (and remembered): a second mention is a duplicate, in one lookup
	 * per id.  The frame decoder caps n at VMM_PROTO_MAX_RELEASE_IDS. */
	for (i = 0; i < n; i++) {
		struct vmmd_chunk *ch = vmmd_pool_held(&s->h, r->chunk_ids[i]);
		bool dup = ch != NULL && ch->releasing;

		if (ch == NULL || dup) {
			snprintf(msg, sizeof(msg), "chunk %" PRIu64 " is not held by "
			    "this session%s", r->chunk_ids[i], dup ?
			    " (listed twice)" : "");
			while (i > 0)
				chs[--i]->releasing = false;
			vmmd_session_error(s, r->request_id,
			    VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK, msg);
			return;
		}
		ch->releasing = true;
		chs[i] = ch;
	}
	for (i = 0; i < n; i++) {
		chs[i]->releasing = false;
		bytes += chs[i]->size;
		vmmd_pool_release(chs[i]);
	}
	if (r->recall_id != 0 && r->recall_id == s->recall_out)
		s->recall_heard = true;	/* answering; a Report closes it */
	vmmd_stats.releases++;
	vmmd_stats.released_chunks += r->n_chunk_ids;
	vmm_log_info("RELEASE Session=%" PRIu64 " Pid=%d Size=%" PRIu64
	    " Chunks=%zu", s->id, (int)s->pid, bytes, r->n_chunk_ids);
	/* Asked for no reply: nobody waits for it, and not sending it saves
	 * a write here and a wake-up in the client (a refusal above is still
	 * answered). */
	if ((r->flags & VMM__RELEASE_FLAG__RELEASE_FLAG_NO_REPLY) == 0) {
		rep.request_id = r->request_id;
		rep.released_chunks = (uint32_t)r->n_chunk_ids;
		rep.released_bytes = bytes;
		env = vmm_frame_env_release_reply(&rep);
		sent = vmmd_session_send(s, &env) == 0;
	}
	if (sent && s->rep_cached >= bytes)
		s->rep_cached -= bytes;	/* until its next Report */
	vmmd_session_cached_sync(s);
	vmmd_policy_retry();
}

/* Takes over what a client maps from a previous daemon, chunk by chunk:
 * an id for each one adopted, 0 for each refused (memory vmmd already
 * tracks, or not a chunk of this GPU). */
static void
session_adopt(struct vmmd_session *s, struct vmm_frame_msg *m,
    const Vmm__Adopt *a)
{
	Vmm__Envelope env;
	Vmm__AdoptReply rep = VMM__ADOPT_REPLY__INIT;
	uint64_t ids[VMM_PROTO_MAX_CHUNKS];
	size_t i, refused = 0;

	for (i = 0; i < a->n_sizes; i++) {
		int fd = vmm_frame_msg_take_fd(m, i);
		enum vmmd_adopt rc = vmmd_pool_adopt(&s->h, fd, a->sizes[i], &ids[i]);

		vmmd_closer_close(fd);
		if (rc != VMMD_ADOPT_OK) {
			ids[i] = 0;
			refused++;
			vmmd_stats.adopt_refused++;
			vmm_log_info("ADOPT_REFUSED Session=%" PRIu64 " Pid=%d "
			    "Size=%" PRIu64 " Why=%s", s->id, (int)s->pid,
			    a->sizes[i], rc == VMMD_ADOPT_DUPLICATE ? "tracked" :
			    rc == VMMD_ADOPT_UNKNOWN ? "unknown" : "foreign");
		}
	}
	rep.request_id = a->request_id;
	rep.n_chunk_ids = a->n_sizes;
	rep.chunk_ids = ids;
	env = vmm_frame_env_adopt_reply(&rep);
	vmmd_session_send(s, &env);
	if (refused < a->n_sizes)
		vmmd_notify_status();
}

/* ---- the address plan (vaplan.c keeps it) ------------------------------ */

/* Whether s said Hello as version 4 or later: an older client never sends
 * these, and one that does is a bad peer. */
static bool
session_va_ok(struct vmmd_session *s, uint64_t rid)
{
	if (s->proto >= 4)
		return true;
	vmmd_session_fatal(s, rid, VMM__ERROR_CODE__ERROR_CODE_BAD_STATE,
	    "the address plan needs protocol version 4");
	return false;
}

static void
session_va_request(struct vmmd_session *s, const Vmm__VaRequest *q)
{
	Vmm__Envelope env;
	Vmm__VaReply rep = VMM__VA_REPLY__INIT;
	char msg[160];
	int code;

	if (!session_va_ok(s, q->request_id))
		return;
	code = vmmd_vaplan_request(s, q->size, q->alignment, &rep.addr, msg,
	    sizeof(msg));
	if (code != 0) {
		vmmd_session_error(s, q->request_id, (Vmm__ErrorCode)code, msg);
		return;
	}
	rep.request_id = q->request_id;
	rep.size = rep.addr != 0 ? q->size : 0;
	env = vmm_frame_env_va_reply(&rep);
	vmmd_session_send(s, &env);
}

static void
session_va_placed(struct vmmd_session *s, const Vmm__VaPlaced *p)
{
	Vmm__Envelope env;
	Vmm__Ack ack = VMM__ACK__INIT;
	char msg[160];
	int code;

	if (!session_va_ok(s, p->request_id))
		return;
	code = vmmd_vaplan_placed(s, p->planned, p->addr, p->size, p->ipc, msg,
	    sizeof(msg));
	if (code != 0) {
		vmmd_session_error(s, p->request_id, (Vmm__ErrorCode)code, msg);
		return;
	}
	ack.request_id = p->request_id;
	env = vmm_frame_env_ack(&ack);
	vmmd_session_send(s, &env);
}

static void
session_va_claim(struct vmmd_session *s, const Vmm__VaClaim *c)
{
	Vmm__Envelope env;
	Vmm__VaClaimReply rep = VMM__VA_CLAIM_REPLY__INIT;
	protobuf_c_boolean acc[VMM_PROTO_MAX_VA_RANGES];
	bool ok[VMM_PROTO_MAX_VA_RANGES];
	size_t i;

	if (!session_va_ok(s, c->request_id))
		return;
	/* The frame decoder caps n_ranges at VMM_PROTO_MAX_VA_RANGES. */
	vmmd_vaplan_claim(s, (const Vmm__VaRange *const *)c->ranges,
	    c->n_ranges, ok);
	for (i = 0; i < c->n_ranges; i++)
		acc[i] = ok[i];
	rep.request_id = c->request_id;
	rep.n_accepted = c->n_ranges;
	rep.accepted = acc;
	env = vmm_frame_env_va_claim_reply(&rep);
	vmmd_session_send(s, &env);
}

/* ---- legacy CUDA IPC (ipc.c keeps the ledger) ------------------------- */

static void
session_ipc_export(struct vmmd_session *s, const Vmm__IpcExport *x)
{
	Vmm__Envelope env;
	Vmm__IpcExportReply rep = VMM__IPC_EXPORT_REPLY__INIT;
	char msg[128];
	int code;

	code = vmmd_ipc_export(s, x->chunk_ids, x->n_chunk_ids, x->addr,
	    &rep.export_id, &rep.token, msg, sizeof(msg));
	if (code != 0) {
		vmmd_session_error(s, x->request_id, (Vmm__ErrorCode)code, msg);
		return;
	}
	rep.request_id = x->request_id;
	env = vmm_frame_env_ipc_export_reply(&rep);
	vmmd_session_send(s, &env);
}

/* Opens an export: the chunks go out as fds, like a Grant, and stay held
 * by this session (ipc.c) until IpcClose or its process is gone. */
static void
session_ipc_open(struct vmmd_session *s, const Vmm__IpcOpen *o)
{
	struct vmmd_chunk *chs[VMM_PROTO_MAX_CHUNKS];
	Vmm__Chunk cv[VMM_PROTO_MAX_CHUNKS], *cp[VMM_PROTO_MAX_CHUNKS];
	Vmm__IpcGrant rep = VMM__IPC_GRANT__INIT;
	int fds[VMM_PROTO_MAX_CHUNKS];
	Vmm__Envelope env;
	uint64_t import_id;
	size_t n = 0, i;
	char msg[128];
	int code;

	code = vmmd_ipc_open(s, o->export_id, o->token, chs, &n, &import_id,
	    &rep.exporter_addr, msg, sizeof(msg));
	if (code != 0) {
		vmmd_session_error(s, o->request_id, (Vmm__ErrorCode)code, msg);
		return;
	}
	for (i = 0; i < n; i++) {
		if ((fds[i] = vmmd_pool_export(chs[i])) < 0) {
			while (i > 0)
				close(fds[--i]);
			vmmd_ipc_close(s, import_id);
			vmmd_session_error(s, o->request_id,
			    VMM__ERROR_CODE__ERROR_CODE_INTERNAL,
			    "cannot export a chunk");
			vmmd_policy_retry();
			return;
		}
		vmm__chunk__init(&cv[i]);
		cv[i].id = chs[i]->id;
		cv[i].size = chs[i]->size;
		cp[i] = &cv[i];
	}
	rep.request_id = o->request_id;
	rep.import_id = import_id;
	rep.n_chunks = n;
	rep.chunks = cp;
	env = vmm_frame_env_ipc_grant(&rep);
	if (vmmd_session_queue(s, &env, fds, n) != 0) {
		/* Not sent (fds closed): the holds go, then the peer. */
		vmmd_ipc_close(s, import_id);
		vmmd_stats.slow_peer_drops++;
		vmmd_session_close(s, "client does not read its replies");
		vmmd_policy_retry();
	}
}

static void
session_ipc_close(struct vmmd_session *s, const Vmm__IpcClose *c)
{
	if (vmmd_ipc_close(s, c->import_id) != 0) {
		vmmd_session_error(s, c->request_id,
		    VMM__ERROR_CODE__ERROR_CODE_INVALID,
		    "no such IPC import in this session");
		return;
	}
	session_ack(s, c->request_id);
	vmmd_policy_retry();	/* chunks may have come back */
}

/* The client's view: what it may still get (quota, pool limit, what the
 * GPU has free plus the idle pool) and its total (quota or the GPU). */
static void
session_meminfo(struct vmmd_session *s, uint64_t rid)
{
	Vmm__Envelope env;
	Vmm__MemInfoReply rep = VMM__MEM_INFO_REPLY__INIT;
	struct vmmd_pool_totals t;
	uint64_t quota = vmmd_session_quota(s), avail;

	vmmd_pool_totals(&t);
	avail = vmmd_pool_device_free() + t.idle;
	if (vmmd_cfg.pool_max != 0) {
		uint64_t room = vmmd_cfg.pool_max > t.physical ?
		    vmmd_cfg.pool_max - t.physical + t.idle : t.idle;

		if (room < avail)
			avail = room;
	}
	if (quota != 0) {
		uint64_t left = vmmd_session_quota_room(s, NULL, 0);

		if (left < avail)
			avail = left;
	}
	rep.request_id = rid;
	rep.free_bytes = avail;
	rep.total_bytes = quota != 0 ? quota : vmmd_pool_device_total();
	rep.held_bytes = s->h.bytes;
	env = vmm_frame_env_mem_info_reply(&rep);
	vmmd_session_send(s, &env);
}

static void
session_ack(struct vmmd_session *s, uint64_t rid)
{
	Vmm__Envelope env;
	Vmm__Ack ack = VMM__ACK__INIT;

	ack.request_id = rid;
	env = vmm_frame_env_ack(&ack);
	vmmd_session_send(s, &env);
}

/* A Report's Ack tells the client what vmmd lends to the others: its
 * caches keep their working set only while that is 0. */
static void
session_report_ack(struct vmmd_session *s, uint64_t rid)
{
	struct vmmd_pool_totals t;
	Vmm__Envelope env;
	Vmm__Ack ack = VMM__ACK__INIT;

	vmmd_pool_totals(&t);
	ack.request_id = rid;
	ack.others_lent_bytes = t.lent > s->h.bytes ? t.lent - s->h.bytes : 0;
	env = vmm_frame_env_ack(&ack);
	vmmd_session_send(s, &env);
}

static void
session_report(struct vmmd_session *s, const Vmm__Report *r)
{
	s->rep_in_use = r->in_use_bytes;
	s->rep_cached = r->cached_bytes;
	vmmd_session_cached_sync(s);
	s->rep_peak = r->peak_bytes;
	s->rep_native[0] = r->native_fallback_bytes;
	s->rep_native[1] = r->native_cumemcreate_bytes;
	s->rep_native[2] = r->native_pool_bytes;
	s->rep_native[3] = r->native_managed_bytes;
	s->rep_app_vmm = r->app_vmm_bytes;
	session_report_ack(s, r->request_id);
	if (r->recall_id != 0 && r->recall_id == s->recall_out) {
		/* It gave back what it could: waiters need not wait on it. */
		vmmd_session_recall_out(s, 0);
		vmmd_policy_retry();
	}
}


static void
session_trim(struct vmmd_session *s, const Vmm__TrimRequest *t)
{
	Vmm__Envelope env;
	Vmm__TrimReply rep = VMM__TRIM_REPLY__INIT;

	vmmd_stats.trims++;
	rep.request_id = t->request_id;
	rep.bytes_released = vmmd_pool_trim(t->target_bytes, 0);
	if (t->recall_clients && (t->target_bytes == 0 ||
	    rep.bytes_released < t->target_bytes)) {
		/* What the clients give back goes to the GPU too. */
		vmmd_pool_drain(vmmd_cfg.recall_timeout_ms ?
		    vmmd_cfg.recall_timeout_ms : 1000, t->target_bytes == 0 ? 0 :
		    t->target_bytes - rep.bytes_released);
		vmmd_policy_recall(NULL, 0, VMM__RECALL_REASON__RECALL_REASON_TRIM,
		    0, false, 0, vmmd_cfg.recall_timeout_ms);
	}
	vmm_log_info("TRIM Session=%" PRIu64 " Released=%" PRIu64, s->id,
	    rep.bytes_released);
	env = vmm_frame_env_trim_reply(&rep);
	vmmd_session_send(s, &env);
}

static void
session_set_quota(struct vmmd_session *s, const Vmm__SetQuota *q)
{
	char msg[96];
	uid_t uid;

	if (q->kind == VMM__QUOTA_KIND__QUOTA_KIND_UID &&
	    vmmd_quota_uid(q->key, &uid) != 0) {
		snprintf(msg, sizeof(msg), "bad quota key: a uid is 0 to %u in "
		    "decimal digits", VMMD_QUOTA_UID_MAX);
		vmmd_session_error(s, q->request_id, VMM__ERROR_CODE__ERROR_CODE_INVALID,
		    msg);
		return;
	}
	if (vmmd_quota_set(&vmmd_cfg, (enum vmmd_quota_kind)q->kind, q->key,
	    q->bytes) != 0) {
		if (errno == ENOMEM)
			vmmd_session_error(s, q->request_id,
			    VMM__ERROR_CODE__ERROR_CODE_INTERNAL, "out of memory");
		else
			vmmd_session_error(s, q->request_id,
			    VMM__ERROR_CODE__ERROR_CODE_INVALID, "bad quota key: "
			    "empty or too long");
		return;
	}
	session_ack(s, q->request_id);
}

/* The one dispatch switch.  The frame module has already checked every
 * field range, the direction and the fd count. */
static void
dispatch(struct vmmd_session *s, struct vmm_frame_msg *m)
{
	const Vmm__Envelope *env = vmm_frame_msg_env(m);
	uint64_t rid = vmm_frame_request_id(env);

	vmm_log_debug("session %" PRIu64 ": %s", s->id, vmm_frame_type_name(env));
	if (s->state == VMMD_SESSION_NEW &&
	    env->msg_case != VMM__ENVELOPE__MSG_HELLO) {
		vmmd_session_fatal(s, rid, VMM__ERROR_CODE__ERROR_CODE_BAD_STATE,
		    "the session must start with Hello");
		return;
	}
	switch (env->msg_case) {
	case VMM__ENVELOPE__MSG_HELLO:
		session_hello(s, env->hello);
		break;
	case VMM__ENVELOPE__MSG_ACQUIRE:
		vmmd_policy_acquire(s, env->acquire);
		break;
	case VMM__ENVELOPE__MSG_RELEASE:
		session_release(s, env->release);
		break;
	case VMM__ENVELOPE__MSG_REPORT:
		session_report(s, env->report);
		break;
	case VMM__ENVELOPE__MSG_ADOPT:
		session_adopt(s, m, env->adopt);
		break;
	case VMM__ENVELOPE__MSG_MEM_INFO_REQUEST:
		session_meminfo(s, rid);
		break;
	case VMM__ENVELOPE__MSG_IPC_EXPORT:
		session_ipc_export(s, env->ipc_export);
		break;
	case VMM__ENVELOPE__MSG_IPC_OPEN:
		session_ipc_open(s, env->ipc_open);
		break;
	case VMM__ENVELOPE__MSG_IPC_CLOSE:
		session_ipc_close(s, env->ipc_close);
		break;
	case VMM__ENVELOPE__MSG_VA_REQUEST:
		session_va_request(s, env->va_request);
		break;
	case VMM__ENVELOPE__MSG_VA_PLACED:
		session_va_placed(s, env->va_placed);
		break;
	case VMM__ENVELOPE__MSG_VA_CLAIM:
		session_va_claim(s, env->va_claim);
		break;
	case VMM__ENVELOPE__MSG_VA_PLAN_REQUEST:
	case VMM__ENVELOPE__MSG_STATS_REQUEST:
	case VMM__ENVELOPE__MSG_CLIENTS_REQUEST:
	case VMM__ENVELOPE__MSG_TRIM_REQUEST:
	case VMM__ENVELOPE__MSG_SET_QUOTA:
		if (!s->admin) {
			vmmd_stats.permission_denied++;
			vmmd_session_error(s, rid, VMM__ERROR_CODE__ERROR_CODE_PERMISSION,
			    "admin requests need root or the admin group");
			break;
		}
		if (env->msg_case == VMM__ENVELOPE__MSG_STATS_REQUEST) {
			vmmd_session_send(s, vmmd_stats_reply(rid,
			    env->stats_request->session_offset, true));
			/* The reply has the marks up to now. */
			if (env->stats_request->reset_marks)
				vmmd_pool_reset_marks();
		}
		else if (env->msg_case == VMM__ENVELOPE__MSG_CLIENTS_REQUEST)
			vmmd_session_send(s, vmmd_stats_reply(rid,
			    env->clients_request->session_offset, false));
		else if (env->msg_case == VMM__ENVELOPE__MSG_VA_PLAN_REQUEST)
			vmmd_session_send(s, vmmd_vaplan_reply(rid,
			    env->va_plan_request->offset));
		else if (env->msg_case == VMM__ENVELOPE__MSG_TRIM_REQUEST)
			session_trim(s, env->trim_request);
		else
			session_set_quota(s, env->set_quota);
		break;
	case VMM__ENVELOPE__MSG_GOODBYE:
		vmmd_session_close(s, "client said goodbye");
		break;
	case VMM__ENVELOPE__MSG_ERROR:
		vmm_log_debug("session %" PRIu64 ": client reported error %d",
		    s->id, (int)env->error->code);
		break;
	default:
		/* Daemon-bound types only: the frame module rejects the rest. */
		vmmd_session_fatal(s, rid, VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE,
		    "unexpected message");
		break;
	}
}

void
vmmd_dispatch_init(void)
{
	vmmd_session_set_handlers(dispatch, vmmd_policy_retry);
}
