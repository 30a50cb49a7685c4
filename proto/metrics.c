/*
 * metrics.c — the Prometheus text exposition of a StatsReply (metrics.h).
 */
#include "metrics.h"

#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "figures.h"
#include "frame.h"

/* One (uid, name, cgroup) and the sum of its sessions. */
struct client_sum {
	const Vmm__SessionStats	*first;	/* its labels */
	uint64_t		 sessions, chunks, held, in_use, cached, quota;
	uint64_t		 app_vmm;	/* reported: held for own VMM */
	uint64_t		 native[4];	/* by path, as native_path[] */
};

/* The path label of each native figure, in SessionStats field order. */
static const char *const native_path[4] = { "fallback", "cumemcreate",
    "pool", "managed" };

/* a + b, UINT64_MAX if it overflows (reported figures are the client's). */
static uint64_t
sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* A label value: printable ASCII kept, \ " escaped, anything else '_' (a
 * client names itself; the exposition must stay valid UTF-8). */
static void
put_label(FILE *f, const char *key, const char *v)
{
	fprintf(f, ",%s=\"", key);
	for (; v != NULL && *v != '\0'; v++) {
		unsigned char c = (unsigned char)*v;

		if (c == '\\' || c == '"')
			fprintf(f, "\\%c", c);
		else if (c >= 0x20 && c < 0x7f)
			fputc(c, f);
		else
			fputc('_', f);
	}
	fputc('"', f);
}

static void
family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int
client_cmp(const void *a, const void *b)
{
	const Vmm__SessionStats *x = *(const Vmm__SessionStats *const *)a;
	const Vmm__SessionStats *y = *(const Vmm__SessionStats *const *)b;
	int c;

	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	if ((c = strcmp(x->name ? x->name : "", y->name ? y->name : "")) != 0)
		return c;
	return strcmp(x->cgroup ? x->cgroup : "", y->cgroup ? y->cgroup : "");
}

/* The application sessions of v, summed by (uid, name, cgroup). */
static struct client_sum *
client_sums(const Vmm__SessionStats *const *v, size_t n, size_t *nout)
{
	const Vmm__SessionStats **app;
	struct client_sum *sum;
	size_t i, napp = 0, k = 0;

	*nout = 0;
	if ((app = calloc(n ? n : 1, sizeof(*app))) == NULL)
		return NULL;
	if ((sum = calloc(n ? n : 1, sizeof(*sum))) == NULL) {
		free(app);
		return NULL;
	}
	for (i = 0; i < n; i++)
		if (v[i]->kind == VMM__CLIENT_KIND__CLIENT_KIND_APP)
			app[napp++] = v[i];
	qsort(app, napp, sizeof(*app), client_cmp);
	for (i = 0; i < napp; i++) {
		if (k == 0 || client_cmp(&sum[k - 1].first, &app[i]) != 0)
			sum[k++].first = app[i];
		sum[k - 1].sessions++;
		sum[k - 1].chunks += app[i]->chunks_held;
		sum[k - 1].held += app[i]->bytes_held;
		sum[k - 1].in_use += app[i]->reported_in_use;
		sum[k - 1].cached += app[i]->reported_cached;
		sum[k - 1].app_vmm = sat_add(sum[k - 1].app_vmm,
		    app[i]->app_vmm_bytes);
		sum[k - 1].native[0] = sat_add(sum[k - 1].native[0],
		    app[i]->native_fallback_bytes);
		sum[k - 1].native[1] = sat_add(sum[k - 1].native[1],
		    app[i]->native_cumemcreate_bytes);
		sum[k - 1].native[2] = sat_add(sum[k - 1].native[2],
		    app[i]->native_pool_bytes);
		sum[k - 1].native[3] = sat_add(sum[k - 1].native[3],
		    app[i]->native_managed_bytes);
		/* One quota covers them all (it is per uid, name or cgroup). */
		if (app[i]->quota_bytes > sum[k - 1].quota)
			sum[k - 1].quota = app[i]->quota_bytes;
	}
	free(app);
	*nout = k;
	return sum;
}

int
vmm_metrics_write(FILE *f, const Vmm__StatsReply *r,
    const Vmm__SessionStats *const *v, size_t n)
{
	static const struct {
		const char	*name, *help;
		size_t		 off;
	} cf[] = {
#define CF(field, hlp) { #field, hlp, offsetof(struct client_sum, field) }
		CF(sessions, "connected sessions of this client"),
		CF(chunks, "chunks the client holds"),
		CF(held, "bytes lent to the client"),
		CF(in_use, "bytes the client reports in use by the program"),
		CF(cached, "bytes the client reports cached for reuse"),
		CF(quota, "the client's quota in bytes, 0 for none"),
		CF(app_vmm, "bytes the client reports of what it holds serving "
		    "the program's own cuMemCreate"),
#undef CF
	};
	static const char *const cname[] = { "vmmd_client_sessions",
	    "vmmd_client_held_chunks", "vmmd_client_held_bytes",
	    "vmmd_client_in_use_bytes", "vmmd_client_cached_bytes",
	    "vmmd_client_quota_bytes", "vmmd_client_app_vmm_bytes" };
	const Vmm__PoolStats *p = r->pool;
	struct client_sum *sum;
	char dev[64] = "";
	size_t i, j, nsum;

	if (r->device_uuid.len == 16) {
		const uint8_t *u = r->device_uuid.data;

		snprintf(dev, sizeof(dev), "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-"
		    "%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3],
		    u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		    u[13], u[14], u[15]);
	}

	family(f, "vmmd_build_info", "gauge",
	    "vmmd's version and protocol, as a constant 1");
	fprintf(f, "vmmd_build_info{device_uuid=\"%s\"", dev);
	put_label(f, "version", r->daemon_version);
	fprintf(f, ",protocol=\"%d\"} 1\n", VMM_PROTOCOL_VERSION);

	if (p != NULL) {
#define POOL_FIGURE(fname, label, unit, help)                                \
	{                                                                    \
		const char *sfx = unit == VMM_FIGURE_BYTES &&                \
		    strstr(#fname, "bytes") == NULL ? "_bytes" : "";        \
		fprintf(f, "# HELP vmmd_%s%s %s\n# TYPE vmmd_%s%s gauge\n",  \
		    #fname, sfx, help, #fname, sfx);                         \
		fprintf(f, "vmmd_%s%s{device_uuid=\"%s\"} %" PRIu64 "\n",   \
		    #fname, sfx, dev, p->fname);                             \
	}
		VMM_POOL_FIGURES(POOL_FIGURE)
#undef POOL_FIGURE
	}

	/* Counters travel by name; only the names this build knows carry a
	 * help text, the others are still counters. */
	for (i = 0; i < r->n_counters; i++) {
		const char *help = "a vmmd counter";
		const char *nm = r->counters[i]->name;
		bool ok = nm != NULL && *nm != '\0';

		for (const char *c = nm; ok && *c != '\0'; c++)
			ok = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
			    *c == '_';
		if (!ok)
			continue;	/* not a valid metric name: skipped */
#define COUNTER_HELP(cn, h) if (strcmp(nm, #cn) == 0) help = h;
		VMM_COUNTERS(COUNTER_HELP)
#undef COUNTER_HELP
		fprintf(f, "# HELP vmmd_%s_total %s\n# TYPE vmmd_%s_total counter\n",
		    nm, help, nm);
		fprintf(f, "vmmd_%s_total{device_uuid=\"%s\"} %" PRIu64 "\n", nm,
		    dev, r->counters[i]->value);
	}

	family(f, "vmmd_sessions", "gauge", "sessions connected (clients and admin)");
	fprintf(f, "vmmd_sessions{device_uuid=\"%s\"} %" PRIu32 "\n", dev,
	    r->sessions_total);

	if ((sum = client_sums(v, n, &nsum)) == NULL)
		return -1;
	for (j = 0; j < sizeof(cf) / sizeof(cf[0]); j++) {
		family(f, cname[j], "gauge", cf[j].help);
		for (i = 0; i < nsum; i++) {
			const Vmm__SessionStats *s = sum[i].first;

			fprintf(f, "%s{device_uuid=\"%s\",uid=\"%" PRIu32 "\"",
			    cname[j], dev, s->uid);
			put_label(f, "name", s->name);
			put_label(f, "cgroup", s->cgroup);
			fprintf(f, "} %" PRIu64 "\n", *(const uint64_t *)(const void *)
			    ((const char *)&sum[i] + cf[j].off));
		}
	}
	family(f, "vmmd_client_native_bytes", "gauge", "bytes the client "
	    "reports holding outside the pool, by path (passed to CUDA's own "
	    "allocators: fallback, cumemcreate, pool, managed)");
	for (i = 0; i < nsum; i++) {
		const Vmm__SessionStats *s = sum[i].first;

		for (j = 0; j < 4; j++) {
			fprintf(f, "vmmd_client_native_bytes{device_uuid=\"%s\","
			    "uid=\"%" PRIu32 "\"", dev, s->uid);
			put_label(f, "name", s->name);
			put_label(f, "cgroup", s->cgroup);
			fprintf(f, ",path=\"%s\"} %" PRIu64 "\n", native_path[j],
			    sum[i].native[j]);
		}
	}
	free(sum);
	if (fflush(f) != 0 || ferror(f)) {
		if (errno == 0)
			errno = EIO;
		return -1;
	}
	return 0;
}
