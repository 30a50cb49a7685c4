/*
 * Pool figures and counters (declared once, in proto/figures.h) and the
 * admin replies that show them: StatsReply and ClientsReply, with sessions
 * paged so a reply always fits in one frame.
 */
#include "vmmd.h"

#include <errno.h>

#include <stdlib.h>

#include "metrics.h"

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
		.peak_physical_bytes = t.peak_physical,
		.peak_lent_bytes = t.peak_lent,
		.ipc_held_bytes = t.ipc_held,
	};
}

/* One SessionStats from a session (strings point into it). */
static void
stats_session(const struct vmmd_session *s, Vmm__SessionStats *o)
{
	vmm__session_stats__init(o);
	o->session_id = s->id;
	o->pid = (uint32_t)s->pid;
	o->uid = (uint32_t)s->uid;
	o->gid = (uint32_t)s->gid;
	o->name = (char *)s->name;
	o->kind = (Vmm__ClientKind)s->kind;
	o->chunks_held = s->h.chunks;
	o->bytes_held = s->h.bytes;
	o->reported_in_use = s->rep_in_use;
	o->reported_cached = s->rep_cached;
	o->reported_peak = s->rep_peak > s->h.peak ? s->rep_peak : s->h.peak;
	o->quota_bytes = vmmd_quota_for(&vmmd_cfg, s->uid, s->name,
	    s->cgroup[0] != '\0' ? s->cgroup : NULL);
	o->connected_usec = s->connected_usec;
	o->cgroup = (char *)s->cgroup;
	o->container_id = (char *)s->container;
	o->ipc_opened = s->ipc.nimports;
	o->ipc_opened_bytes = s->ipc.imported_bytes;
	o->native_fallback_bytes = s->rep_native[0];
	o->native_cumemcreate_bytes = s->rep_native[1];
	o->native_pool_bytes = s->rep_native[2];
	o->native_managed_bytes = s->rep_native[3];
	o->app_vmm_bytes = s->rep_app_vmm;
	o->va_ranges = s->va.nranges;
	o->va_bytes = s->va.bytes;
	o->va_hint_missed = s->va.hint_missed;
}

const Vmm__Envelope *
vmmd_stats_reply(uint64_t rid, uint32_t offset, bool full)
{
	static Vmm__SessionStats st[VMM_PROTO_MAX_SESSIONS];
	static Vmm__SessionStats *stp[VMM_PROTO_MAX_SESSIONS];
	static Vmm__Counter ctr[VMMD_NCOUNTERS];
	static Vmm__Counter *ctrp[VMMD_NCOUNTERS];
	static Vmm__Envelope env;
	static Vmm__StatsReply sr;
	static Vmm__ClientsReply cr;
	static Vmm__PoolStats ps;
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
		stats_session(it, &st[n]);
		stp[n] = &st[n];
		n++;
	}
	if (!full) {
		vmm__clients_reply__init(&cr);
		cr.request_id = rid;
		cr.n_sessions = n;
		cr.sessions = stp;
		cr.sessions_total = total;
		env = vmm_frame_env_clients_reply(&cr);
		return &env;
	}
	vmm__stats_reply__init(&sr);
	vmm__pool_stats__init(&ps);
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
	sr.device_uuid.data = (uint8_t *)vmmd_pool_device_uuid();
	sr.device_uuid.len = 16;
	sr.daemon_version = (char *)VMMD_VERSION;
	env = vmm_frame_env_stats_reply(&sr);
	return &env;
}

int
vmmd_stats_metrics(FILE *f)
{
	const Vmm__StatsReply *r = vmmd_stats_reply(0, 0, true)->stats_reply;
	const Vmm__SessionStats **v;
	Vmm__SessionStats *all;
	struct vmmd_session *it;
	size_t n = 0, i = 0;
	int rc;

	TAILQ_FOREACH(it, &vmmd_sessions, link)
		n++;
	all = calloc(n ? n : 1, sizeof(*all));
	v = calloc(n ? n : 1, sizeof(*v));
	if (all == NULL || v == NULL) {
		free(all);
		free(v);
		errno = ENOMEM;
		return -1;
	}
	TAILQ_FOREACH(it, &vmmd_sessions, link) {
		if (it->state == VMMD_SESSION_NEW)
			continue;
		stats_session(it, &all[i]);
		v[i] = &all[i];
		i++;
	}
	rc = vmm_metrics_write(f, r, v, i);
	free(all);
	free(v);
	return rc;
}
