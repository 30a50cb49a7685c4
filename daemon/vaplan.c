/*
 * The address plan: which device virtual addresses each client of this GPU
 * reserves.  vmmd hands every client its ranges from one window
 * (VMMD_VA_BASE + ordinal x VMMD_VA_WINDOW), disjoint across clients, and
 * the client passes the address to cuMemAddressReserve as its hint: one
 * pointer then names one allocation GPU-wide (README "Address plan").
 *
 * One sorted array of ranges.  A planned range (handed out here, or
 * claimed after a restart) overlaps no other recorded range; an unplanned
 * one (where the driver put a reservation whose hint it missed) is only
 * recorded, for the admins' view, and new plans keep clear of it too.  A
 * session holds at most VMMD_VA_MAX_RANGES; its ranges are freed when its
 * process is gone, kept while its session is quarantined (the process may
 * still have them reserved).  Calls nothing else of vmmd; dispatch.c
 * answers the requests, session.c says when a session ends or resumes,
 * stats.c reads the per-session figures.
 */
#include "vmmd.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct va_entry {
	uint64_t		addr, size;
	struct vmmd_session	*owner;
	bool			planned;
};

static struct va_entry	*va_v;		/* sorted by addr */
/* va_maxend[i]: the highest end of va_v[0..i], so that whether a range
 * overlaps any recorded one is two binary searches, not a walk (unplanned
 * ranges may overlap each other, so ends are not sorted). */
static uint64_t		*va_maxend;
static size_t		va_n, va_cap;
static uint64_t		va_base = VMMD_VA_BASE, va_size = VMMD_VA_WINDOW;

void
vmmd_vaplan_init(int ordinal)
{
	va_base = VMMD_VA_BASE +
	    (uint64_t)(ordinal < 0 ? 0 : ordinal % VMMD_VA_WINDOWS) *
	    VMMD_VA_WINDOW;
	va_size = VMMD_VA_WINDOW;
}

void
vmmd_vaplan_window(uint64_t *base, uint64_t *size)
{
	*base = va_base;
	*size = va_size;
}

/* Index of the first entry with addr >= a. */
static size_t
va_index(uint64_t a)
{
	size_t lo = 0, hi = va_n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (va_v[mid].addr < a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Recomputes va_maxend from index i on (after a change there). */
static void
va_maxend_from(size_t i)
{
	for (; i < va_n; i++) {
		uint64_t end = va_v[i].addr + va_v[i].size;

		va_maxend[i] = i > 0 && va_maxend[i - 1] > end ?
		    va_maxend[i - 1] : end;
	}
}

static int
va_add(struct vmmd_session *s, uint64_t addr, uint64_t size, bool planned)
{
	size_t i;

	if (va_n == va_cap) {
		size_t n = va_cap ? va_cap * 2 : 64;
		struct va_entry *nv = realloc(va_v, n * sizeof(*nv));
		uint64_t *ne;

		if (nv == NULL)
			return -1;
		va_v = nv;
		if ((ne = realloc(va_maxend, n * sizeof(*ne))) == NULL)
			return -1;
		va_maxend = ne;
		va_cap = n;
	}
	i = va_index(addr);
	memmove(&va_v[i + 1], &va_v[i], (va_n - i) * sizeof(*va_v));
	va_v[i] = (struct va_entry){ addr, size, s, planned };
	va_n++;
	va_maxend_from(i);
	s->va.nranges++;
	s->va.bytes += size;
	return 0;
}

static void
va_remove(size_t i)
{
	struct vmmd_session *s = va_v[i].owner;

	s->va.nranges--;
	s->va.bytes -= va_v[i].size;
	memmove(&va_v[i], &va_v[i + 1], (va_n - i - 1) * sizeof(*va_v));
	va_n--;
	va_maxend_from(i);
}

/* The first recorded range that overlaps [addr, addr + size); SIZE_MAX if
 * none.  The candidates begin before addr + size (va_index); among them,
 * the first whose prefix's highest end passes addr is itself one that
 * does (the prefix before it ends at or below addr).  O(log n): a peer's
 * refused claims cost no walk of every client's ranges. */
static size_t
va_overlap(uint64_t addr, uint64_t size)
{
	size_t k = va_index(addr + size), lo = 0, hi;

	if (k == 0 || va_maxend[k - 1] <= addr)
		return SIZE_MAX;
	hi = k - 1;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (va_maxend[mid] > addr)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

int
vmmd_vaplan_request(struct vmmd_session *s, uint64_t size, uint64_t align,
    uint64_t *addr, char *msg, size_t msglen)
{
	uint64_t cur = va_base, end = va_base + va_size, a;
	size_t i;

	*addr = 0;
	if (size == 0 || size > va_size || (align & (align - 1)) != 0 ||
	    align > va_size) {
		vmmd_stats.va_refused++;
		snprintf(msg, msglen, "a range of %" PRIu64 " bytes aligned to %"
		    PRIu64 " cannot be planned (the window is %" PRIu64 " bytes)",
		    size, align, va_size);
		return VMM__ERROR_CODE__ERROR_CODE_INVALID;
	}
	if (s->va.nranges >= VMMD_VA_MAX_RANGES) {
		vmmd_stats.va_refused++;
		snprintf(msg, msglen, "a client holds at most %d ranges of the "
		    "address plan", VMMD_VA_MAX_RANGES);
		return VMM__ERROR_CODE__ERROR_CODE_LIMIT;
	}
	if (align < 4096)
		align = 4096;
	/* First fit past every recorded range (unplanned ones included). */
	for (i = 0; ; i++) {
		a = (cur + align - 1) & ~(align - 1);
		if (a < cur || a > end || end - a < size) {
			vmmd_stats.va_plan_full++;
			return 0;	/* addr 0: reserve anywhere */
		}
		if (i == va_n || va_v[i].addr >= a + size)
			break;
		if (va_v[i].addr + va_v[i].size > cur)
			cur = va_v[i].addr + va_v[i].size;
	}
	if (va_add(s, a, size, true) != 0) {
		snprintf(msg, msglen, "out of memory");
		return VMM__ERROR_CODE__ERROR_CODE_INTERNAL;
	}
	vmmd_stats.va_planned++;
	vmm_log_info("VA_PLAN Session=%" PRIu64 " Pid=%d Ptr=0x%" PRIx64
	    " Size=%" PRIu64, s->id, (int)s->pid, a, size);
	*addr = a;
	return 0;
}

int
vmmd_vaplan_placed(struct vmmd_session *s, uint64_t planned, uint64_t addr,
    uint64_t size, bool ipc, char *msg, size_t msglen)
{
	size_t i;

	if (ipc) {
		/* An import mapped away from its exporter's address: nothing
		 * of the plan changes. */
		s->va.hint_missed++;
		vmmd_stats.va_hint_missed++;
		return 0;
	}
	i = va_index(planned);
	if (i == va_n || va_v[i].addr != planned || va_v[i].owner != s ||
	    !va_v[i].planned || va_v[i].size != size) {
		snprintf(msg, msglen, "no planned range of this client at 0x%"
		    PRIx64 " of %" PRIu64 " bytes", planned, size);
		return VMM__ERROR_CODE__ERROR_CODE_INVALID;
	}
	if (addr == planned)
		return 0;	/* not a miss: the plan holds */
	s->va.hint_missed++;
	vmmd_stats.va_hint_missed++;
	va_remove(i);
	/* Recorded where it is, for the view: the process has it reserved. */
	if (va_add(s, addr, size, false) != 0) {
		snprintf(msg, msglen, "out of memory");
		return VMM__ERROR_CODE__ERROR_CODE_INTERNAL;
	}
	vmm_log_info("VA_MISS Session=%" PRIu64 " Pid=%d Planned=0x%" PRIx64
	    " Ptr=0x%" PRIx64 " Size=%" PRIu64, s->id, (int)s->pid, planned,
	    addr, size);
	return 0;
}

void
vmmd_vaplan_claim(struct vmmd_session *s, const Vmm__VaRange *const *r,
    size_t n, bool *accepted)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint64_t a = r[i]->addr, z = r[i]->size;
		bool in = a >= va_base && a - va_base < va_size &&
		    va_base + va_size - a >= z;

		accepted[i] = false;
		/* Overlapping anything recorded (this session's ranges too: a
		 * range claimed twice is not merged), or over the bound. */
		if (s->va.nranges >= VMMD_VA_MAX_RANGES ||
		    va_overlap(a, z) != SIZE_MAX) {
			vmmd_stats.va_claims_refused++;
			vmm_log_info("VA_CLAIM_REFUSED Session=%" PRIu64
			    " Ptr=0x%" PRIx64 " Size=%" PRIu64, s->id, a, z);
			continue;
		}
		if (va_add(s, a, z, in) != 0)
			continue;
		vmmd_stats.va_claimed++;
		vmm_log_info("VA_PLAN Session=%" PRIu64 " Pid=%d Ptr=0x%" PRIx64
		    " Size=%" PRIu64 " Claimed=1", s->id, (int)s->pid, a, z);
		accepted[i] = true;
	}
}

bool
vmmd_vaplan_held(const struct vmmd_session *s)
{
	return s->va.nranges > 0;
}

void
vmmd_vaplan_gone(struct vmmd_session *s)
{
	size_t i, j;

	if (s->va.nranges == 0)
		return;
	for (i = j = 0; i < va_n; i++)
		if (va_v[i].owner != s)
			va_v[j++] = va_v[i];
		else
			vmm_log_info("VA_FREE Session=%" PRIu64 " Pid=%d Ptr=0x%"
			    PRIx64 " Size=%" PRIu64, s->id, (int)s->pid,
			    va_v[i].addr, va_v[i].size);
	va_n = j;
	va_maxend_from(0);
	s->va.nranges = 0;
	s->va.bytes = 0;
}

void
vmmd_vaplan_transfer(struct vmmd_session *from, struct vmmd_session *to)
{
	size_t i;

	for (i = 0; i < va_n; i++)
		if (va_v[i].owner == from)
			va_v[i].owner = to;
	to->va.nranges += from->va.nranges;
	to->va.bytes += from->va.bytes;
	to->va.hint_missed += from->va.hint_missed;
	from->va.nranges = 0;
	from->va.bytes = 0;
}

const Vmm__Envelope *
vmmd_vaplan_reply(uint64_t rid, uint32_t offset)
{
	static Vmm__VaPlanEntry e[VMM_PROTO_MAX_VA_ENTRIES];
	static Vmm__VaPlanEntry *ep[VMM_PROTO_MAX_VA_ENTRIES];
	static Vmm__VaPlanReply rep;
	static Vmm__Envelope env;
	size_t i, k;

	vmm__va_plan_reply__init(&rep);
	rep.request_id = rid;
	rep.total = (uint32_t)va_n;
	rep.window_base = va_base;
	rep.window_size = va_size;
	for (i = offset, k = 0; i < va_n && k < VMM_PROTO_MAX_VA_ENTRIES;
	    i++, k++) {
		vmm__va_plan_entry__init(&e[k]);
		e[k].session_id = va_v[i].owner->id;
		e[k].pid = (uint32_t)va_v[i].owner->pid;
		e[k].name = va_v[i].owner->name;
		e[k].addr = va_v[i].addr;
		e[k].size = va_v[i].size;
		e[k].planned = va_v[i].planned;
		ep[k] = &e[k];
	}
	rep.n_ranges = k;
	rep.ranges = ep;
	env = vmm_frame_env_va_plan_reply(&rep);
	return &env;
}

void
vmmd_vaplan_shutdown(void)
{
	free(va_v);
	free(va_maxend);
	va_v = NULL;
	va_maxend = NULL;
	va_n = va_cap = 0;
}
