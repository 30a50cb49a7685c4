/*
 * vmmd settings: one table drives the config file, --help and --dump-config.
 * Quotas are dynamic keys ("quota.uid.1000 = 8G") handled beside the table,
 * kept in a hash table (any number of them loads and is found in linear
 * time).
 */
#include "vmmd.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define O(f) offsetof(struct vmmd_config, f)
#define STR(x) #x
#define XSTR(x) STR(x)

const struct vmm_opt vmmd_options[] = {
	{ "device", VMM_OPT_STRING, "0", 0, 0, NULL, O(device),
	  "GPU to serve: an ordinal, a GPU UUID (GPU-...) or a MIG instance's "
	  "UUID (MIG-...)" },
	{ "socket_dir", VMM_OPT_STRING, "/run/vmmd", 0, 0, NULL, O(socket_dir),
	  "directory of the sockets gpu-<UUID>.sock and gpu<N>.sock; created "
	  "0755 if missing, else it must be a real directory (not a symlink) "
	  "owned by root or vmmd's user and writable by no one else" },
	{ "socket_group", VMM_OPT_STRING, "", 0, 0, NULL, O(socket_group),
	  "group owning the socket (mode 0660); empty: the daemon's group" },
	{ "admin_group", VMM_OPT_STRING, "", 0, 0, NULL, O(admin_group),
	  "group whose members may use stats, clients, trim and quota "
	  "(root always may)" },
	{ "ipc_group", VMM_OPT_STRING, "", 0, 0, NULL, O(ipc_group),
	  "group whose members may open each other's CUDA IPC handles of pooled "
	  "memory; empty: only the exporter's own uid may" },
	{ "log_level", VMM_OPT_ENUM, "ERROR", 0, 0, "ERROR|INFO|DEBUG",
	  O(log_level), "ERROR: failures only; INFO: chunk events; DEBUG: all" },
	{ "log_file", VMM_OPT_STRING, "", 0, 0, NULL, O(log_file),
	  "log to this file instead of stderr (a trailing '-' appends the pid)" },
	{ "metrics_listen", VMM_OPT_STRING, "", 0, 0, NULL, O(metrics_listen),
	  "serve Prometheus metrics at http://ADDRESS:PORT/metrics (e.g. "
	  "127.0.0.1:9477 or [::1]:9477); empty: off" },
	{ "pool_max", VMM_OPT_SIZE, "0", 0, 1e15, NULL, O(pool_max),
	  "most physical memory the pool may hold, lent or idle; 0: the GPU's" },
	{ "chunk_multiple", VMM_OPT_U64, "1", 1, 1024, NULL, O(chunk_multiple),
	  "chunk sizes are multiples of the granularity times this" },
	{ "frag_ratio", VMM_OPT_DOUBLE, "0.25", 0, 1, NULL, O(frag_ratio),
	  "stitching takes free chunks of at least this times the request "
	  "first, smaller ones only rather than creating memory" },
	{ "max_pieces", VMM_OPT_U64, "64", 1, VMM_PROTO_MAX_CHUNKS, NULL,
	  O(max_pieces), "most chunks one grant may be stitched from" },
	{ "tenant", VMM_OPT_ENUM, "uid", 0, 0, "uid|uid+cgroup", O(tenant),
	  "who may get back memory another holder released (its fd may have "
	  "been kept): the same uid, or the same uid in the same cgroup "
	  "(containers that all run as root)" },
	{ "cross_tenant", VMM_OPT_ENUM, "recreate", 0, 0, "recreate|reuse",
	  O(cross_tenant), "memory one tenant released reaches another only "
	  "through the driver (given back, created anew; nothing a kept fd can "
	  "see), or reuse: pooled chunks are lent across tenants, zeroed as "
	  "scrub says (trusted clusters; a kept fd then sees the next "
	  "holder's data)" },
	{ "scrub", VMM_OPT_ENUM, "cross-tenant", 0, 0,
	  "cross-tenant|always|never|cross-uid",
	  O(scrub), "zero a pooled chunk before lending it: when its last holder "
	  "was another tenant (only with cross_tenant = reuse), always, or "
	  "never; cross-uid is the old name of cross-tenant" },
	{ "idle_timeout_ms", VMM_OPT_U64, "2000", 0, 86400000, NULL,
	  O(idle_timeout_ms), "give idle pooled chunks back to the GPU after "
	  "this long; 0: never" },
	{ "swap_idle", VMM_OPT_BOOL, "1", 0, 1, NULL, O(swap_idle),
	  "when the pool must create memory while memory is short (the GPU's "
	  "free memory under 1/8 of it, or the pool within 1/8 of pool_max), "
	  "give back as much of the idle chunks that request could not use "
	  "(too big to fit, another tenant's), oldest "
	  "first; when memory is not short they stay for reuse, except "
	  "those left by processes that have exited (orphans); 0: neither" },
	{ "idle_floor", VMM_OPT_SIZE, "0", 0, 1e15, NULL, O(idle_floor),
	  "idle bytes the pool keeps however long they are idle; above it the "
	  "pool keeps what was granted within the last idle_timeout_ms" },
	{ "max_sessions", VMM_OPT_U64, "1024", VMMD_ADMIN_SESSIONS + 1, 65536,
	  NULL, O(max_sessions), "most client connections at once; the last "
	  XSTR(VMMD_ADMIN_SESSIONS) " are kept for admins (root, admin_group), "
	  "so that vmmctl still connects when clients have taken the rest" },
	{ "max_sessions_per_uid", VMM_OPT_U64, "256", 1, 65536, NULL,
	  O(max_sessions_per_uid), "most sessions of one uid: its connections, "
	  "and those kept for its processes after their connection closed "
	  "(quarantined; one per process reconnecting is not counted)" },
	{ "max_queue_bytes", VMM_OPT_SIZE, "1M", 65536, 1073741824, NULL,
	  O(max_queue_bytes), "output a client may leave unread before it is "
	  "disconnected" },
	{ "handshake_timeout_ms", VMM_OPT_U64, "5000", 100, 600000, NULL,
	  O(handshake_timeout_ms), "time a new connection has to send Hello" },
	{ "recall_idle_ms", VMM_OPT_U64, "200", 0, 86400000, NULL,
	  O(recall_idle_ms), "before it creates memory, vmmd asks other "
	  "clients for what they cache, but only those that have not asked "
	  "for memory for this long, so that busy processes do not keep taking "
	  "each other's caches (0: any client; out of memory, every client is "
	  "asked)" },
	{ "recall_timeout_ms", VMM_OPT_U64, "1000", 0, 60000, NULL,
	  O(recall_timeout_ms), "out of memory: how long a request waits for "
	  "other clients to give back their caches (0: do not ask them); "
	  "after trim --recall, how long what they give back goes to the GPU" },
	{ "recall_backoff_ms", VMM_OPT_U64, "1000", 0, 600000, NULL,
	  O(recall_backoff_ms), "after a request waited for a recall and still "
	  "failed out of memory, requests that find memory short fail at once "
	  "for this long instead of waiting again (0: always wait)" },
};

const size_t vmmd_noptions = sizeof(vmmd_options) / sizeof(vmmd_options[0]);

static const char *const vmmd_quota_prefix[] = {
	[VMMD_QUOTA_UID] = "quota.uid.",
	[VMMD_QUOTA_NAME] = "quota.name.",
	[VMMD_QUOTA_CGROUP] = "quota.cgroup.",
};

struct vmmd_quota {
	struct vmmd_quota	*next;	/* hash chain */
	enum vmmd_quota_kind	kind;
	uint64_t		bytes;
	char			key[];
};

#define VMMD_QUOTA_BUCKETS_MIN	64

int
vmmd_quota_uid(const char *s, uid_t *uid)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > VMMD_QUOTA_UID_MAX)
			return -1;
	}
	*uid = (uid_t)v;
	return 0;
}

/* FNV-1a of the kind and the key. */
static size_t
quota_hash(enum vmmd_quota_kind kind, const char *key)
{
	uint64_t h = 14695981039346656037ull ^ (uint64_t)kind;

	for (; *key != '\0'; key++) {
		h ^= (unsigned char)*key;
		h *= 1099511628211ull;
	}
	return (size_t)h;
}

/* The link that points to (kind, key), or the NULL that ends its chain.
 * The table must have buckets. */
static struct vmmd_quota **
quota_slot(const struct vmmd_quotas *qs, enum vmmd_quota_kind kind,
    const char *key)
{
	struct vmmd_quota **pp;

	pp = &qs->bucket[quota_hash(kind, key) & (qs->nbuckets - 1)];
	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->kind == kind && strcmp((*pp)->key, key) == 0)
			break;
	return pp;
}

/* Doubles the buckets (or makes the first); -1 if out of memory. */
static int
quota_grow(struct vmmd_quotas *qs)
{
	struct vmmd_quota **b, *q;
	size_t n, i, h;

	n = qs->nbuckets != 0 ? qs->nbuckets * 2 : VMMD_QUOTA_BUCKETS_MIN;
	if ((b = calloc(n, sizeof(*b))) == NULL)
		return -1;
	for (i = 0; i < qs->nbuckets; i++) {
		while ((q = qs->bucket[i]) != NULL) {
			qs->bucket[i] = q->next;
			h = quota_hash(q->kind, q->key) & (n - 1);
			q->next = b[h];
			b[h] = q;
		}
	}
	free(qs->bucket);
	qs->bucket = b;
	qs->nbuckets = n;
	return 0;
}

int
vmmd_quota_set(struct vmmd_config *c, enum vmmd_quota_kind kind,
    const char *key, uint64_t bytes)
{
	struct vmmd_quotas *qs = &c->quotas;
	struct vmmd_quota **pp, *q;
	char uidkey[16];
	size_t len;
	uid_t uid;

	if (kind == VMMD_QUOTA_UID) {
		if (vmmd_quota_uid(key, &uid) != 0) {
			errno = EINVAL;
			return -1;
		}
		snprintf(uidkey, sizeof(uidkey), "%u", (unsigned)uid);
		key = uidkey;
	}
	len = strlen(key);
	if ((kind != VMMD_QUOTA_UID && kind != VMMD_QUOTA_NAME &&
	    kind != VMMD_QUOTA_CGROUP) || len == 0 ||
	    len > VMM_PROTO_MAX_QUOTA_KEY) {
		errno = EINVAL;
		return -1;
	}
	if (qs->nbuckets == 0) {
		if (bytes == 0)
			return 0;
		if (quota_grow(qs) != 0) {
			errno = ENOMEM;
			return -1;
		}
	}
	pp = quota_slot(qs, kind, key);
	if ((q = *pp) != NULL) {
		if (bytes != 0)
			q->bytes = bytes;
		else {
			*pp = q->next;
			free(q);
			qs->n--;
		}
		return 0;
	}
	if (bytes == 0)
		return 0;
	/* Past one quota a bucket, double; if that fails, chains grow. */
	if (qs->n >= qs->nbuckets && quota_grow(qs) == 0)
		pp = quota_slot(qs, kind, key);
	if ((q = malloc(sizeof(*q) + len + 1)) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	q->next = NULL;
	q->kind = kind;
	q->bytes = bytes;
	memcpy(q->key, key, len + 1);
	*pp = q;
	qs->n++;
	return 0;
}

/* Takes quota.* keys of the config file. */
static int
vmmd_config_unknown(void *arg, const char *key, const char *value, char *err,
    size_t errlen)
{
	struct vmmd_config *c = arg;
	enum vmmd_quota_kind k;
	uint64_t bytes;
	uid_t uid;

	for (k = VMMD_QUOTA_UID; k <= VMMD_QUOTA_CGROUP; k++) {
		const char *p = vmmd_quota_prefix[k];
		const char *sub;

		if (strncmp(key, p, strlen(p)) != 0)
			continue;
		sub = key + strlen(p);
		if (k == VMMD_QUOTA_UID && vmmd_quota_uid(sub, &uid) != 0) {
			snprintf(err, errlen, "%.80s: expected a uid, 0 to %u in "
			    "decimal digits", key, VMMD_QUOTA_UID_MAX);
			return -1;
		}
		if (vmm_parse_size(value, &bytes) != 0) {
			snprintf(err, errlen, "%.80s=\"%.64s\": expected a size "
			    "(K/M/G/T suffixes allowed)", key, value);
			return -1;
		}
		if (vmmd_quota_set(c, k, sub, bytes) != 0) {
			if (errno == ENOMEM)
				snprintf(err, errlen, "%.80s: out of memory", key);
			else
				snprintf(err, errlen, "%.80s: the key after \"%s\" "
				    "must be 1 to %d bytes", key, p,
				    VMM_PROTO_MAX_QUOTA_KEY);
			return -1;
		}
		return 0;
	}
	snprintf(err, errlen, "unknown setting \"%.64s\"", key);
	return -1;
}

int
vmmd_config_load(struct vmmd_config *c, const char *path, char *err,
    size_t errlen)
{
	memset(c, 0, sizeof(*c));
	if (vmm_opt_defaults(vmmd_options, vmmd_noptions, c, err, errlen) != 0)
		return -1;
	if (path != NULL && vmm_opt_from_file(vmmd_options, vmmd_noptions, c,
	    path, vmmd_config_unknown, c, err, errlen) != 0) {
		vmmd_config_free(c);
		return -1;
	}
	return 0;
}

void
vmmd_config_free(struct vmmd_config *c)
{
	struct vmmd_quotas *qs = &c->quotas;
	struct vmmd_quota *q;
	size_t i;

	for (i = 0; i < qs->nbuckets; i++) {
		while ((q = qs->bucket[i]) != NULL) {
			qs->bucket[i] = q->next;
			free(q);
		}
	}
	free(qs->bucket);
	memset(qs, 0, sizeof(*qs));
}

static uint64_t	quota_get(const struct vmmd_quotas *, enum vmmd_quota_kind,
		    const char *);

uint64_t
vmmd_quota_get(const struct vmmd_config *c, enum vmmd_quota_kind kind,
    const char *key)
{
	return quota_get(&c->quotas, kind, key);
}

/* The quota of (kind, key); 0 if none (or key is NULL). */
static uint64_t
quota_get(const struct vmmd_quotas *qs, enum vmmd_quota_kind kind,
    const char *key)
{
	const struct vmmd_quota *q;

	if (key == NULL || qs->nbuckets == 0)
		return 0;
	q = *quota_slot(qs, kind, key);
	return q != NULL ? q->bytes : 0;
}

uint64_t
vmmd_quota_for(const struct vmmd_config *c, uid_t uid, const char *name,
    const char *cgroup)
{
	uint64_t q[3], best = 0;
	char uidbuf[16];
	size_t i;

	snprintf(uidbuf, sizeof(uidbuf), "%u", (unsigned)uid);
	q[0] = quota_get(&c->quotas, VMMD_QUOTA_UID, uidbuf);
	q[1] = quota_get(&c->quotas, VMMD_QUOTA_NAME, name);
	q[2] = quota_get(&c->quotas, VMMD_QUOTA_CGROUP, cgroup);
	for (i = 0; i < 3; i++)
		if (q[i] != 0 && (best == 0 || q[i] < best))
			best = q[i];
	return best;
}
