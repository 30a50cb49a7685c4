/*
 * Pool figures and counters (declared once, in proto/figures.h) and the
 * admin replies that show them: StatsReply and ClientsReply, with sessions
 * paged so a reply always fits in one frame.
 */
#include "vmmd.h"

#include <stdlib.h>

struct vmmd_counters vmmd_stats;


#define VMMD_COUNT_ONE(name, help) + 1
#define VMMD_NCOUNTERS (0 VMM_COUNTERS(VMMD_COUNT_ONE))
_Static_assert(VMMD_NCOUNTERS <= VMM_PROTO_MAX_COUNTERS,
    "more counters than a StatsReply may carry");

/* Every figure of proto/figures.h, as of now. */
static void
pool_figures(struct vmm_pool_figures *f)
{
	struct vmmd_pool_totals t;

	vmmd_pool_totals(&t);
	*f = (struct vmm_pool_figures){
		.physical_bytes = t.physical,
		.lent_bytes = t.lent,
		.idle_bytes = t.idle,
		.quarantined_bytes = t.quarantined,
		.chunks = t.chunks,
		.chunks_lent = t.chunks_lent,
		.device_total_bytes = vmmd_pool_device_total(),
		.device_free_bytes = vmmd_pool_device_free(),
		.granularity = vmmd_pool_chunk_unit(),
	};
}

/* Answers a StatsRequest (full) or a ClientsRequest with the sessions from
 * offset on. */
int
vmmd_stats_reply(struct vmmd_session *s, uint64_t rid, uint32_t offset,
    bool full)
{
	static Vmm__SessionStats st[VMM_PROTO_MAX_SESSIONS];
	static Vmm__SessionStats *stp[VMM_PROTO_MAX_SESSIONS];
	static Vmm__Counter ctr[VMMD_NCOUNTERS];
	static Vmm__Counter *ctrp[VMMD_NCOUNTERS];
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__StatsReply sr = VMM__STATS_REPLY__INIT;
	Vmm__ClientsReply cr = VMM__CLIENTS_REPLY__INIT;
	Vmm__PoolStats ps = VMM__POOL_STATS__INIT;
	struct vmm_pool_figures f;
	struct vmmd_session *it;
	uint32_t total = 0;
	size_t n = 0, k = 0;

	TAILQ_FOREACH(it, &vmmd_sessions, link) {
		/* Not identified yet (no Hello): nothing to show. */
		if (it->state == VMMD_SESSION_NEW)
			continue;
		if (total++ < offset || n == VMM_PROTO_MAX_SESSIONS)
			continue;
		vmmd_session_stats(it, &st[n]);
		stp[n] = &st[n];
		n++;
	}
	if (!full) {
		cr.request_id = rid;
		cr.n_sessions = n;
		cr.sessions = stp;
		cr.sessions_total = total;
		env.msg_case = VMM__ENVELOPE__MSG_CLIENTS_REPLY;
		env.clients_reply = &cr;
		return vmmd_session_send(s, &env);
	}
	pool_figures(&f);
#define VMMD_FIGURE_WIRE(name, label, unit, help) ps.name = f.name;
	VMM_POOL_FIGURES(VMMD_FIGURE_WIRE)
#undef VMMD_FIGURE_WIRE
#define VMMD_COUNTER_WIRE(cname, help)                                   \
	vmm__counter__init(&ctr[k]);                                     \
	ctr[k].name = (char *)#cname;                                    \
	ctr[k].value = vmmd_stats.cname;                                 \
	ctrp[k] = &ctr[k];                                               \
	k++;
	VMM_COUNTERS(VMMD_COUNTER_WIRE)
#undef VMMD_COUNTER_WIRE
	sr.request_id = rid;
	sr.pool = &ps;
	sr.n_counters = k;
	sr.counters = ctrp;
	sr.n_sessions = n;
	sr.sessions = stp;
	sr.sessions_total = total;
	env.msg_case = VMM__ENVELOPE__MSG_STATS_REPLY;
	env.stats_reply = &sr;
	return vmmd_session_send(s, &env);
}
