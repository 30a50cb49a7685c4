/*
 * vmmd settings: one table drives the config file, --help and --dump-config.
 * Quotas are dynamic keys ("quota.uid.1000 = 8G") handled beside the table.
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
	  "GPU to serve: an ordinal or a UUID" },
	{ "socket_dir", VMM_OPT_STRING, "/run/vmmd", 0, 0, NULL, O(socket_dir),
	  "directory of the sockets gpu-<UUID>.sock and gpu<N>.sock; created "
	  "0755 if missing, else it must be a real directory (not a symlink) "
	  "owned by root or vmmd's user and writable by no one else" },
	{ "socket_group", VMM_OPT_STRING, "", 0, 0, NULL, O(socket_group),
	  "group owning the socket (mode 0660); empty: the daemon's group" },
	{ "admin_group", VMM_OPT_STRING, "", 0, 0, NULL, O(admin_group),
	  "group whose members may use stats, clients, trim and quota "
	  "(root always may)" },
	{ "log_level", VMM_OPT_ENUM, "ERROR", 0, 0, "ERROR|INFO|DEBUG",
	  O(log_level), "ERROR: failures only; INFO: chunk events; DEBUG: all" },
	{ "log_file", VMM_OPT_STRING, "", 0, 0, NULL, O(log_file),
	  "log to this file instead of stderr (a trailing '-' appends the pid)" },
	{ "pool_max", VMM_OPT_SIZE, "0", 0, 1e15, NULL, O(pool_max),
	  "most physical memory the pool may hold, lent or idle; 0: the GPU's" },
	{ "chunk_multiple", VMM_OPT_U64, "1", 1, 1024, NULL, O(chunk_multiple),
	  "chunk sizes are multiples of the granularity times this" },
	{ "frag_ratio", VMM_OPT_DOUBLE, "0.25", 0, 1, NULL, O(frag_ratio),
	  "stitching skips free chunks smaller than this times the request" },
	{ "max_pieces", VMM_OPT_U64, "16", 1, VMM_PROTO_MAX_CHUNKS, NULL,
	  O(max_pieces), "most chunks one grant may be stitched from" },
	{ "scrub", VMM_OPT_ENUM, "cross-uid", 0, 0, "cross-uid|always|never",
	  O(scrub), "zero a pooled chunk before lending it: when its last holder "
	  "had another uid, always, or never" },
	{ "idle_timeout_ms", VMM_OPT_U64, "2000", 0, 86400000, NULL,
	  O(idle_timeout_ms), "give idle pooled chunks back to the GPU after "
	  "this long; 0: never" },
	{ "swap_idle", VMM_OPT_BOOL, "1", 0, 1, NULL, O(swap_idle),
	  "when the pool must create memory, give back as much of the idle "
	  "chunks that request could not use (too small to stitch, too big to "
	  "fit), oldest first" },
	{ "idle_floor", VMM_OPT_SIZE, "0", 0, 1e15, NULL, O(idle_floor),
	  "idle bytes the pool keeps however long they are idle; above it the "
	  "pool keeps what was granted within the last idle_timeout_ms" },
	{ "max_sessions", VMM_OPT_U64, "1024", VMMD_ADMIN_SESSIONS + 1, 65536,
	  NULL, O(max_sessions), "most client connections at once; the last "
	  XSTR(VMMD_ADMIN_SESSIONS) " are kept for admins (root, admin_group), "
	  "so that vmmctl still connects when clients have taken the rest" },
	{ "max_sessions_per_uid", VMM_OPT_U64, "256", 1, 65536, NULL,
	  O(max_sessions_per_uid), "most client connections of one uid" },
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
};

const size_t vmmd_noptions = sizeof(vmmd_options) / sizeof(vmmd_options[0]);

static const char *const vmmd_quota_prefix[] = {
	[VMMD_QUOTA_UID] = "quota.uid.",
	[VMMD_QUOTA_NAME] = "quota.name.",
	[VMMD_QUOTA_CGROUP] = "quota.cgroup.",
};

int
vmmd_quota_set(struct vmmd_config *c, enum vmmd_quota_kind kind,
    const char *key, uint64_t bytes)
{
	struct vmmd_quota **pp, *q;

	if (*key == '\0' || strlen(key) > VMM_PROTO_MAX_QUOTA_KEY)
		return -1;
	for (pp = &c->quotas; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->kind == kind && strcmp((*pp)->key, key) == 0) {
			if (bytes == 0) {
				q = *pp;
				*pp = q->next;
				free(q);
			} else
				(*pp)->bytes = bytes;
			return 0;
		}
	}
	if (bytes == 0)
		return 0;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return -1;
	q->kind = kind;
	memcpy(q->key, key, strlen(key) + 1);
	q->bytes = bytes;
	q->next = c->quotas;
	c->quotas = q;
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

	for (k = VMMD_QUOTA_UID; k <= VMMD_QUOTA_CGROUP; k++) {
		const char *p = vmmd_quota_prefix[k];
		const char *sub;

		if (strncmp(key, p, strlen(p)) != 0)
			continue;
		sub = key + strlen(p);
		if (k == VMMD_QUOTA_UID) {
			char *end;

			errno = 0;
			(void)strtoul(sub, &end, 10);
			if (*sub == '\0' || *end != '\0' || errno != 0) {
				snprintf(err, errlen, "%s: expected a numeric uid",
				    key);
				return -1;
			}
		}
		if (vmm_parse_size(value, &bytes) != 0) {
			snprintf(err, errlen, "%s=\"%.64s\": expected a size (K/M/G/T "
			    "suffixes allowed)", key, value);
			return -1;
		}
		if (vmmd_quota_set(c, k, sub, bytes) != 0) {
			snprintf(err, errlen, "%s: bad quota key", key);
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
	struct vmmd_quota *q;

	while ((q = c->quotas) != NULL) {
		c->quotas = q->next;
		free(q);
	}
}

uint64_t
vmmd_quota_for(const struct vmmd_config *c, uid_t uid, const char *name,
    const char *cgroup)
{
	const struct vmmd_quota *q;
	char uidbuf[16];
	uint64_t best = 0;

	snprintf(uidbuf, sizeof(uidbuf), "%u", (unsigned)uid);
	for (q = c->quotas; q != NULL; q = q->next) {
		const char *key = q->kind == VMMD_QUOTA_UID ? uidbuf :
		    q->kind == VMMD_QUOTA_NAME ? name : cgroup;

		if (key == NULL || strcmp(key, q->key) != 0)
			continue;
		if (best == 0 || q->bytes < best)
			best = q->bytes;
	}
	return best;
}
