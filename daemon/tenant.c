/*
 * Tenants: who may get back memory another holder released.  A released
 * chunk's fd may have been kept, so its last holder can still read and
 * write it: it goes back only to sessions of the same tenant, and crosses
 * tenants through the driver (destroyed, then created anew) unless the
 * setting cross_tenant = reuse allows scrubbed reuse.
 *
 * A tenant is a uid, or a uid and a cgroup (tenant = uid+cgroup: containers
 * often all run as root).  Tenants are interned and reference-counted by
 * the sessions and chunks that carry them, so "same tenant" is a pointer
 * comparison on the grant path.
 */
#include "vmmd.h"

#include <stdlib.h>
#include <string.h>

struct vmmd_tenant {
	uid_t			uid;
	char			*cgroup;	/* NULL: the uid alone */
	unsigned		refs;
	/* Sum of the cached bytes its ready app sessions last reported
	 * (vmmd_session_cached_sync): a bound on what a recall can give. */
	uint64_t		cached;
	struct vmmd_tenant	*next;
};

static struct vmmd_tenant	*tenants;
static uint64_t			tenants_cached;	/* over all tenants */

struct vmmd_tenant *
vmmd_tenant_get(uid_t uid, const char *cgroup)
{
	struct vmmd_tenant *t;

	if (vmmd_cfg.tenant != VMMD_TENANT_UID_CGROUP)
		cgroup = NULL;
	for (t = tenants; t != NULL; t = t->next)
		if (t->uid == uid && (t->cgroup == NULL) == (cgroup == NULL) &&
		    (cgroup == NULL || strcmp(t->cgroup, cgroup) == 0))
			return vmmd_tenant_ref(t);
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	if (cgroup != NULL && (t->cgroup = strdup(cgroup)) == NULL) {
		free(t);
		return NULL;
	}
	t->uid = uid;
	t->refs = 1;
	t->next = tenants;
	tenants = t;
	return t;
}

struct vmmd_tenant *
vmmd_tenant_ref(struct vmmd_tenant *t)
{
	t->refs++;
	return t;
}

void
vmmd_tenant_put(struct vmmd_tenant *t)
{
	struct vmmd_tenant **pp;

	if (t == NULL || --t->refs > 0)
		return;
	for (pp = &tenants; *pp != t; pp = &(*pp)->next)
		;
	*pp = t->next;
	free(t->cgroup);
	free(t);
}

void
vmmd_tenant_cached_move(struct vmmd_tenant *t, uint64_t from, uint64_t to)
{
	t->cached = t->cached - from + to;
	tenants_cached = tenants_cached - from + to;
}

uint64_t
vmmd_tenant_cached(const struct vmmd_tenant *t)
{
	return t == NULL ? tenants_cached : t->cached;
}
