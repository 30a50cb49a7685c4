/*
 * Legacy CUDA IPC of pooled memory (cuIpcGetMemHandle and friends): the
 * ledger of exports and imports.  Calls pool.c only; dispatch.c answers the
 * requests, session.c says when a session closes, resumes or is gone.
 *
 * An export is a list of chunk ids a session holds, each with the chunk's
 * lease at export time.  It opens only while every chunk is still lent to
 * that session under the same lease: a chunk given back (Release, or the
 * session gone) bumps its lease, so no export ever names memory that was
 * given back, even once it is lent to the same session again.
 *
 * An import holds each chunk (vmmd_pool_ipc_hold): pool.c keeps a chunk
 * whose holder gives it back in VMMD_CHUNK_IPC_HELD, out of the free pool
 * and out of every grant, until its last importer lets go.  An import ends
 * on IpcClose, or when the importer's process is gone (its socket closing
 * while the process lives is not enough: the process may still map the
 * chunks).  So a chunk is never lent while an importer maps it, and never
 * lent twice.
 */
#include "vmmd.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"

#define IPC_BUCKETS	1024	/* exports by id */

/* Exports and imports are allocated for the chunks they name (n), not for
 * the most a message may name: with the per-session bounds on the chunks
 * they name (VMMD_IPC_MAX_*_CHUNKS), what one session makes vmmd keep
 * stays small however it shapes its requests. */
struct vmmd_ipc_export {
	uint64_t			id, token;
	uint64_t			addr;	/* the exporter's, or 0 */
	struct vmmd_session		*owner;
	TAILQ_ENTRY(vmmd_ipc_export)	link;	/* owner's list */
	struct vmmd_ipc_export		*hnext;	/* id hash chain */
	size_t				n;
	struct {
		uint64_t		id, lease;
	}				c[];	/* n */
};

struct vmmd_ipc_import {
	uint64_t			id;
	uint64_t			export_id;
	uint64_t			bytes;
	TAILQ_ENTRY(vmmd_ipc_import)	link;
	size_t				n;
	struct vmmd_chunk		*chunks[];	/* n */
};

static struct vmmd_ipc_export	*ipc_hash[IPC_BUCKETS];
static uint64_t			ipc_next_export = 1, ipc_next_import = 1;

static struct vmmd_ipc_export **
ipc_bucket(uint64_t id)
{
	return &ipc_hash[(id * 0x9e3779b97f4a7c15ull) >> 54];
}

void
vmmd_ipc_init(struct vmmd_session *s)
{
	TAILQ_INIT(&s->ipc.exports);
	TAILQ_INIT(&s->ipc.imports);
	s->ipc.nexports = s->ipc.nimports = s->ipc.imported_bytes = 0;
	s->ipc.export_chunks = s->ipc.import_chunks = 0;
}

static void
ipc_export_free(struct vmmd_ipc_export *e)
{
	struct vmmd_ipc_export **pp;

	for (pp = ipc_bucket(e->id); *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	TAILQ_REMOVE(&e->owner->ipc.exports, e, link);
	e->owner->ipc.nexports--;
	e->owner->ipc.export_chunks -= e->n;
	free(e);
}

/* Whether every chunk of e is still lent to its owner, same lease. */
static bool
ipc_export_live(const struct vmmd_ipc_export *e)
{
	size_t i;

	for (i = 0; i < e->n; i++) {
		const struct vmmd_chunk *ch = vmmd_pool_held(&e->owner->h,
		    e->c[i].id);

		if (ch == NULL || ch->lease != e->c[i].lease)
			return false;
	}
	return true;
}

/* Drops s's exports that can no longer open. */
static void
ipc_prune(struct vmmd_session *s)
{
	struct vmmd_ipc_export *e, *next;

	for (e = TAILQ_FIRST(&s->ipc.exports); e != NULL; e = next) {
		next = TAILQ_NEXT(e, link);
		if (!ipc_export_live(e))
			ipc_export_free(e);
	}
}

static uint64_t
ipc_random(void)
{
	uint64_t v = 0;

	while (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v) || v == 0)
		;
	return v;
}

int
vmmd_ipc_export(struct vmmd_session *s, const uint64_t *ids, size_t n,
    uint64_t addr, uint64_t *id, uint64_t *token, char *msg, size_t msglen)
{
	struct vmmd_chunk *chs[VMM_PROTO_MAX_CHUNKS];
	struct vmmd_ipc_export *e;
	size_t i, j;

	/* The frame decoder caps n; every id must be held, once. */
	for (i = 0; i < n; i++) {
		if ((chs[i] = vmmd_pool_held(&s->h, ids[i])) == NULL) {
			snprintf(msg, msglen, "chunk %" PRIu64 " is not held by "
			    "this session", ids[i]);
			return VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK;
		}
		for (j = 0; j < i; j++)
			if (chs[j] == chs[i]) {
				snprintf(msg, msglen, "chunk %" PRIu64 " listed "
				    "twice", ids[i]);
				return VMM__ERROR_CODE__ERROR_CODE_INVALID;
			}
	}
	/* The same chunks again: the same export ("may be called multiple
	 * times ... without adverse effects"). */
	TAILQ_FOREACH(e, &s->ipc.exports, link) {
		if (e->n != n)
			continue;
		for (i = 0; i < n; i++)
			if (e->c[i].id != ids[i] ||
			    e->c[i].lease != chs[i]->lease)
				break;
		if (i == n) {
			e->addr = addr;
			*id = e->id;
			*token = e->token;
			return 0;
		}
	}
	if (s->ipc.nexports >= VMMD_IPC_MAX_EXPORTS ||
	    s->ipc.export_chunks + n > VMMD_IPC_MAX_EXPORT_CHUNKS)
		ipc_prune(s);
	if (s->ipc.nexports >= VMMD_IPC_MAX_EXPORTS ||
	    s->ipc.export_chunks + n > VMMD_IPC_MAX_EXPORT_CHUNKS) {
		vmmd_stats.ipc_limits++;
		snprintf(msg, msglen, "more than %d IPC exports, or exports "
		    "naming more than %d chunks, in one session",
		    VMMD_IPC_MAX_EXPORTS, VMMD_IPC_MAX_EXPORT_CHUNKS);
		return VMM__ERROR_CODE__ERROR_CODE_LIMIT;
	}
	if ((e = calloc(1, sizeof(*e) + n * sizeof(e->c[0]))) == NULL) {
		snprintf(msg, msglen, "out of memory");
		return VMM__ERROR_CODE__ERROR_CODE_INTERNAL;
	}
	e->id = ipc_next_export++;
	e->token = ipc_random();
	e->addr = addr;
	e->owner = s;
	e->n = n;
	for (i = 0; i < n; i++) {
		e->c[i].id = ids[i];
		e->c[i].lease = chs[i]->lease;
	}
	e->hnext = *ipc_bucket(e->id);
	*ipc_bucket(e->id) = e;
	TAILQ_INSERT_TAIL(&s->ipc.exports, e, link);
	s->ipc.nexports++;
	s->ipc.export_chunks += n;
	vmmd_stats.ipc_exports++;
	vmm_log_info("IPC_EXPORT Session=%" PRIu64 " Pid=%d Export=%" PRIu64
	    " Chunks=%zu", s->id, (int)s->pid, e->id, n);
	*id = e->id;
	*token = e->token;
	return 0;
}

/* Why s may not open e, or NULL if it may. */
static const char *
ipc_refusal(const struct vmmd_session *s, const struct vmmd_ipc_export *e)
{
	if (e->owner == s || e->owner->pid == s->pid)
		return "the exporting process cannot open its own handle";
	if (e->owner->uid != s->uid && !(e->owner->ipc_member && s->ipc_member))
		return "another uid's memory (set ipc_group to share across uids)";
	return NULL;
}

int
vmmd_ipc_open(struct vmmd_session *s, uint64_t id, uint64_t token,
    struct vmmd_chunk **chs, size_t *n, uint64_t *import_id, uint64_t *addr,
    char *msg, size_t msglen)
{
	struct vmmd_ipc_import *im;
	struct vmmd_ipc_export *e;
	const char *why;
	size_t i;

	for (e = *ipc_bucket(id); e != NULL; e = e->hnext)
		if (e->id == id)
			break;
	/* Unknown and wrong-token exports look the same to the peer. */
	if (e == NULL || e->token != token || !ipc_export_live(e)) {
		if (e != NULL && e->token == token)
			ipc_export_free(e);	/* its memory was given back */
		why = "no such export (freed, or a handle from another vmmd)";
	} else
		why = ipc_refusal(s, e);
	if (why != NULL) {
		vmmd_stats.ipc_refused++;
		vmm_log_error("IPC_REFUSED Session=%" PRIu64 " Pid=%d Uid=%u "
		    "Export=%" PRIu64 ": %s", s->id, (int)s->pid,
		    (unsigned)s->uid, id, why);
		snprintf(msg, msglen, "IPC open refused: %s", why);
		return VMM__ERROR_CODE__ERROR_CODE_IPC_REFUSED;
	}
	if (s->ipc.nimports >= VMMD_IPC_MAX_IMPORTS ||
	    s->ipc.import_chunks + e->n > VMMD_IPC_MAX_IMPORT_CHUNKS) {
		vmmd_stats.ipc_limits++;
		snprintf(msg, msglen, "more than %d IPC imports, or imports of "
		    "more than %d chunks, in one session", VMMD_IPC_MAX_IMPORTS,
		    VMMD_IPC_MAX_IMPORT_CHUNKS);
		return VMM__ERROR_CODE__ERROR_CODE_LIMIT;
	}
	if ((im = calloc(1, sizeof(*im) + e->n * sizeof(im->chunks[0]))) ==
	    NULL) {
		snprintf(msg, msglen, "out of memory");
		return VMM__ERROR_CODE__ERROR_CODE_INTERNAL;
	}
	im->id = ipc_next_import++;
	im->export_id = e->id;
	im->n = e->n;
	for (i = 0; i < e->n; i++) {
		struct vmmd_chunk *ch = vmmd_pool_held(&e->owner->h, e->c[i].id);

		/* Another tenant maps it now: it may never go back to the
		 * pool for the exporter's tenant (a kept fd would see it). */
		vmmd_pool_ipc_hold(ch, s->h.tenant != e->owner->h.tenant);
		im->chunks[i] = chs[i] = ch;
		im->bytes += ch->size;
	}
	TAILQ_INSERT_TAIL(&s->ipc.imports, im, link);
	s->ipc.nimports++;
	s->ipc.import_chunks += im->n;
	s->ipc.imported_bytes += im->bytes;
	vmmd_stats.ipc_opens++;
	vmm_log_info("IPC_OPEN Session=%" PRIu64 " Pid=%d Import=%" PRIu64
	    " Export=%" PRIu64 " Size=%" PRIu64, s->id, (int)s->pid, im->id,
	    e->id, im->bytes);
	*n = im->n;
	*import_id = im->id;
	*addr = e->addr;
	return 0;
}

/* Ends an import: its holds go (chunks may return to the pool). */
static void
ipc_import_end(struct vmmd_session *s, struct vmmd_ipc_import *im)
{
	size_t i;

	TAILQ_REMOVE(&s->ipc.imports, im, link);
	s->ipc.nimports--;
	s->ipc.import_chunks -= im->n;
	s->ipc.imported_bytes -= im->bytes;
	for (i = 0; i < im->n; i++)
		vmmd_pool_ipc_unhold(im->chunks[i]);
	vmm_log_info("IPC_CLOSE Session=%" PRIu64 " Pid=%d Import=%" PRIu64
	    " Size=%" PRIu64, s->id, (int)s->pid, im->id, im->bytes);
	free(im);
}

int
vmmd_ipc_close(struct vmmd_session *s, uint64_t import_id)
{
	struct vmmd_ipc_import *im;

	TAILQ_FOREACH(im, &s->ipc.imports, link)
		if (im->id == import_id)
			break;
	if (im == NULL)
		return -1;
	ipc_import_end(s, im);
	vmmd_stats.ipc_closes++;
	return 0;
}

void
vmmd_ipc_closed(struct vmmd_session *s, bool process_alive)
{
	struct vmmd_ipc_export *e;
	struct vmmd_ipc_import *im;

	/* Its chunks are quarantined or back: no export can open. */
	while ((e = TAILQ_FIRST(&s->ipc.exports)) != NULL)
		ipc_export_free(e);
	if (process_alive)
		return;
	while ((im = TAILQ_FIRST(&s->ipc.imports)) != NULL)
		ipc_import_end(s, im);
}

void
vmmd_ipc_gone(struct vmmd_session *s)
{
	vmmd_ipc_closed(s, false);
}

void
vmmd_ipc_transfer(struct vmmd_session *from, struct vmmd_session *to)
{
	struct vmmd_ipc_import *im;

	while ((im = TAILQ_FIRST(&from->ipc.imports)) != NULL) {
		TAILQ_REMOVE(&from->ipc.imports, im, link);
		from->ipc.nimports--;
		from->ipc.import_chunks -= im->n;
		from->ipc.imported_bytes -= im->bytes;
		TAILQ_INSERT_TAIL(&to->ipc.imports, im, link);
		to->ipc.nimports++;
		to->ipc.import_chunks += im->n;
		to->ipc.imported_bytes += im->bytes;
	}
}
