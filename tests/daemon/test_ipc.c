/*
 * vmmd's legacy IPC requests from raw protocol clients, every refusal
 * included: IpcExport of chunks not held or listed twice; the same chunks
 * again give the same export; an open by the exporting process, of an
 * unknown export, with a wrong token, or of an export whose chunk was
 * given back is IPC_REFUSED (counted); an open by another process gets one
 * fd per chunk and holds them: a Release by the exporter then parks them
 * (ipc_held_bytes) instead of pooling them, until IpcClose; IpcClose of an
 * unknown import is INVALID; a session's exports stop at
 * VMMD_IPC_MAX_EXPORTS (LIMIT, counted).  Version 2 clients (before these
 * messages) are still served; versions 1 and 4 are refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define NCH	13
#define MAX_EXPORTS 4096	/* VMMD_IPC_MAX_EXPORTS */

static char		sockpath[1100];

/* IpcExport: 0 and the id/token, or -code of the Error. */
static int
ipc_export(struct tc *c, const uint64_t *ids, size_t n, uint64_t *id,
    uint64_t *token)
{
	Vmm__IpcExport x = VMM__IPC_EXPORT__INIT;
	Vmm__Envelope env = vmm_frame_env_ipc_export(&x);
	struct vmm_frame_msg *m;
	int rc;

	x.n_chunk_ids = n;
	x.chunk_ids = (uint64_t *)ids;
	if ((rc = tc_request(c, &env, &m, NULL, 0)) != 0)
		return rc;
	*id = vmm_frame_msg_env(m)->ipc_export_reply->export_id;
	*token = vmm_frame_msg_env(m)->ipc_export_reply->token;
	vmm_frame_msg_free(m);
	return 0;
}

/* IpcOpen: the number of chunks (fds checked and closed) and the import
 * id, or -code of the Error. */
static int
ipc_open(struct tc *c, uint64_t id, uint64_t token, uint64_t *import_id)
{
	Vmm__IpcOpen o = VMM__IPC_OPEN__INIT;
	Vmm__Envelope env = vmm_frame_env_ipc_open(&o);
	const Vmm__IpcGrant *g;
	struct vmm_frame_msg *m;
	size_t i;
	int rc;

	o.export_id = id;
	o.token = token;
	if ((rc = tc_request(c, &env, &m, NULL, 0)) != 0)
		return rc;
	g = vmm_frame_msg_env(m)->ipc_grant;
	CHECK(vmm_frame_msg_nfds(m) == g->n_chunks);
	for (i = 0; i < g->n_chunks; i++) {
		int fd = vmm_frame_msg_take_fd(m, i);

		CHECK(fd >= 0);
		close(fd);
	}
	*import_id = g->import_id;
	rc = (int)g->n_chunks;
	vmm_frame_msg_free(m);
	return rc;
}

/* IpcClose: 0 (Ack), or -code of the Error. */
static int
ipc_close(struct tc *c, uint64_t import_id)
{
	Vmm__IpcClose x = VMM__IPC_CLOSE__INIT;
	Vmm__Envelope env = vmm_frame_env_ipc_close(&x);
	struct vmm_frame_msg *m;
	int rc;

	x.import_id = import_id;
	if ((rc = tc_request(c, &env, &m, NULL, 0)) == 0)
		vmm_frame_msg_free(m);
	return rc;
}

#define REFUSED	(-VMM__ERROR_CODE__ERROR_CODE_IPC_REFUSED)

/* The other process: opens what it is told, reports, closes on cue. */
static int
importer(int s)
{
	struct tc *c = tc_open(sockpath, "importer", false);
	uint64_t req[3], imp = 0, res[2];
	char cue;

	CHECK(read(s, req, sizeof(req)) == sizeof(req));
	/* Unknown export, wrong token, then the real one. */
	res[0] = ipc_open(c, req[0] + 1000, req[1], &imp) == REFUSED &&
	    ipc_open(c, req[0], req[1] ^ 1, &imp) == REFUSED;
	res[1] = (uint64_t)(int64_t)ipc_open(c, req[0], req[1], &imp);
	CHECK(write(s, res, sizeof(res)) == sizeof(res));
	CHECK(read(s, &cue, 1) == 1);
	CHECK(ipc_close(c, imp + 77) ==
	    -VMM__ERROR_CODE__ERROR_CODE_INVALID);
	CHECK(ipc_close(c, imp) == 0);
	CHECK(ipc_close(c, imp) == -VMM__ERROR_CODE__ERROR_CODE_INVALID);
	CHECK(write(s, "c", 1) == 1);
	CHECK(read(s, &cue, 1) == 1);
	tc_close(c);
	return 0;
}

/* Protocol version 3 added these messages (4 the address plan); vmmd
 * still serves version 2 and 3 clients (answering in their version, which
 * the session layer takes) and refuses others. */
static void
versions(void)
{
	static const uint32_t v[] = { 1, 2, 3, 4, 5 };
	size_t i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		Vmm__Hello h = VMM__HELLO__INIT;
		struct vmm_sess *s;
		int rc;

		CHECK(vmm_sess_connect(&s, sockpath, 5000) == 0);
		h.protocol_version = v[i];
		h.client_name = "old";
		h.kind = VMM__CLIENT_KIND__CLIENT_KIND_APP;
		rc = vmm_sess_hello(s, &h, 5000);
		if (v[i] >= 2 && v[i] <= VMM_PROTOCOL_VERSION) {
			/* Older than this library's version, but served. */
			CHECK(rc == 0);
			CHECK(vmm_sess_hello_reply(s)->protocol_version == v[i]);
		}
		else
			CHECK(rc == VMM_SESS_EREFUSED && vmm_sess_error(s)->code ==
			    VMM__ERROR_CODE__ERROR_CODE_VERSION_MISMATCH);
		vmm_sess_close(s);
	}
}

int
main(void)
{
	struct tc *adm, *a;
	struct tc_chunk g[NCH];
	uint64_t ids[NCH], id, token, id2, token2, imp, req[3], res[2];
	Vmm__PoolStats ps;
	int sv[2], n, i, j, k, made, st;
	pid_t pid, child;

	pid = tc_start_in("daemon_ipc", "idle_timeout_ms = 0\n", sockpath,
	    sizeof(sockpath), &adm);
	versions();
	a = tc_open(sockpath, "exporter", false);
	for (i = 0; i < NCH; i++) {
		CHECK(tc_acquire(a, a->granularity, 0, &g[i], 1) == 1);
		ids[i] = g[i].id;
	}
	tc_close_chunks(g, NCH);

	/* Not held, listed twice. */
	id = ids[0] + 1000;
	CHECK(ipc_export(a, &id, 1, &id2, &token2) ==
	    -VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK);
	req[0] = ids[0];
	req[1] = ids[0];
	CHECK(ipc_export(a, req, 2, &id2, &token2) ==
	    -VMM__ERROR_CODE__ERROR_CODE_INVALID);
	/* Twice the same chunks: the same export. */
	CHECK(ipc_export(a, ids, 2, &id, &token) == 0 && id != 0);
	CHECK(ipc_export(a, ids, 2, &id2, &token2) == 0);
	CHECK(id2 == id && token2 == token);
	/* The exporting process may not open its own export. */
	CHECK(ipc_open(a, id, token, &imp) == REFUSED);

	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	CHECK((child = fork()) >= 0);
	if (child == 0) {
		close(sv[0]);
		_exit(importer(sv[1]));
	}
	close(sv[1]);
	req[0] = id;
	req[1] = token;
	req[2] = 0;
	CHECK(write(sv[0], req, sizeof(req)) == sizeof(req));
	CHECK(read(sv[0], res, sizeof(res)) == sizeof(res));
	CHECK(res[0] == 1 && res[1] == 2);
	/* Given back while the importer holds them: parked, not pooled. */
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 0 && ps.ipc_held_bytes == 0);
	CHECK(tc_release(a, ids, 2) == 0);
	tc_pool(adm, &ps);
	CHECK(ps.ipc_held_bytes == 2 * a->granularity && ps.idle_bytes == 0);
	/* Given back: the export no longer opens (nor would after the same
	 * chunk came back to this session). */
	CHECK(ipc_open(adm, id, token, &imp) == REFUSED);
	CHECK(write(sv[0], "C", 1) == 1);
	CHECK(read(sv[0], res, 1) == 1);
	tc_pool(adm, &ps);
	CHECK(ps.ipc_held_bytes == 0 && ps.idle_bytes == 2 * a->granularity);
	CHECK(write(sv[0], "x", 1) == 1);
	CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) &&
	    WEXITSTATUS(st) == 0);
	close(sv[0]);
	CHECK(tc_counter(adm, "ipc_refused") == 4);
	CHECK(tc_counter(adm, "ipc_opens") == 1);
	CHECK(tc_counter(adm, "ipc_closes") == 1);

	/* The export limit: distinct lists of the 11 chunks still held (the
	 * stale export above is pruned on the way), then one more. */
	made = 0;
	for (n = 1; n <= 5; n++) {
		int t[5] = { 0 };

		for (;;) {
			uint64_t l[5];
			int d;

			for (d = 0, i = 0; i < n; i++) {
				l[i] = ids[2 + t[i]];
				for (j = 0; j < i; j++)
					d |= t[j] == t[i];
			}
			if (!d) {
				if (made == MAX_EXPORTS) {
					CHECK(ipc_export(a, l, (size_t)n, &id,
					    &token) ==
					    -VMM__ERROR_CODE__ERROR_CODE_LIMIT);
					goto limited;
				}
				CHECK(ipc_export(a, l, (size_t)n, &id, &token)
				    == 0);
				made++;
			}
			for (k = 0; k < n && ++t[k] == 11; k++)
				t[k] = 0;
			if (k == n)
				break;
		}
	}
	CHECK(!"not enough distinct lists");
limited:
	CHECK(tc_counter(adm, "ipc_limits") == 1);
	tc_close(a);
	tc_stop_with(pid, adm);
	return 0;
}
