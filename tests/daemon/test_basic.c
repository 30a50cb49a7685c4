/*
 * vmmd end to end on the emulator: grant, map and use a chunk, release,
 * reuse by another session, stats, a wrong release, and the daemon's fds
 * back at baseline afterwards.  With the argument "longdir" the socket
 * directory is longer than sun_path holds, so daemon and clients reach it
 * through the directory's fd; a second daemon on the same directory is
 * refused either way.
 */
#include <cuda.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

static char	sockdir[1100], sockpath[1200];

static void
cuda_setup(void)
{
	CUcontext ctx;

	CHECK_OK(cuInit(0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	CHECK_OK(cuCtxSetCurrent(ctx));
}

/* Imports and maps a granted chunk read-write; returns its address. */
static CUdeviceptr
map_chunk(const struct tc_chunk *ch, CUmemGenericAllocationHandle *h)
{
	CUmemAccessDesc acc = { 0 };
	CUdeviceptr va;

	CHECK_OK(cuMemImportFromShareableHandle(h, (void *)(uintptr_t)ch->fd,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
	CHECK_OK(cuMemAddressReserve(&va, ch->size, 0, 0, 0));
	CHECK_OK(cuMemMap(va, ch->size, 0, *h, 0));
	acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	acc.location.id = 0;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	CHECK_OK(cuMemSetAccess(va, ch->size, &acc, 1));
	return va;
}

static void
unmap_chunk(CUdeviceptr va, const struct tc_chunk *ch,
    CUmemGenericAllocationHandle h)
{
	CHECK_OK(cuMemUnmap(va, ch->size));
	CHECK_OK(cuMemAddressFree(va, ch->size));
	CHECK_OK(cuMemRelease(h));
	close(ch->fd);
}

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* A second vmmd for the same GPU and directory exits 1 at once, saying why;
 * the first one keeps its socket. */
static void
second_daemon_refused(void)
{
	char vmmd[4096], cmd[8192], log[1300], line[512] = "";
	FILE *f;

	snprintf(vmmd, sizeof(vmmd), "%s/daemon/vmmd", getenv("VMM_BUILD_DIR"));
	snprintf(log, sizeof(log), "%s/second.log", sockdir);
	snprintf(cmd, sizeof(cmd), "env -u LD_PRELOAD '%s' --foreground "
	    "--socket-dir '%s' --config '%s/vmmd.conf' 2>'%s'", vmmd, sockdir,
	    sockdir, log);
	CHECK(system(cmd) == 1 << 8);
	CHECK((f = fopen(log, "r")) != NULL);
	CHECK(fgets(line, sizeof(line), f) != NULL);
	fclose(f);
	CHECK(strstr(line, "another vmmd is serving this GPU") != NULL);
}

int
main(int argc, char **argv)
{
	const char *tmp = getenv("VMM_TEST_TMPDIR");
	CUmemGenericAllocationHandle h;
	struct tc_chunk ch[4], ch2[4];
	struct tc *a, *b, *adm;
	Vmm__PoolStats ps;
	uint64_t v, gran, bogus = 999999;
	char buf[64] = "vmmd test data", out[64];
	CUdeviceptr va;
	int n, fds0, fds1;
	pid_t d;

	CHECK(tmp != NULL);
	if (argc == 2 && strcmp(argv[1], "longdir") == 0) {
		char parent[1024];

		snprintf(parent, sizeof(parent), "%s/%0120d", tmp, 0);
		mkdir(parent, 0755);
		snprintf(sockdir, sizeof(sockdir), "%s/sock", parent);
		CHECK(strlen(sockdir) + sizeof("/gpu-.sock") + 36 >
		    sizeof(((struct sockaddr_un *)0)->sun_path));
	} else {
		CHECK(argc == 1);
		snprintf(sockdir, sizeof(sockdir), "%s/sock", tmp);
	}
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	d = tc_start_daemon(sockdir, "idle_timeout_ms = 0\n", NULL);
	cuda_setup();
	second_daemon_refused();

	adm = tc_open(sockpath, "admin", true);
	/* Warm up: one chunk created and pooled, so the baseline of the
	 * daemon's fds includes the pool's own handle. */
	CHECK(tc_acquire(adm, 2 * adm->granularity, 0, ch, 4) == 1);
	close(ch[0].fd);
	CHECK(tc_release(adm, &ch[0].id, 1) == 0);
	sleep_ms(200);
	fds0 = tc_count_fds(d);
	CHECK(fds0 > 0);

	/* A connection that has not said Hello yet does not break stats. */
	{
		int raw = tc_connect_raw(sockpath);

		CHECK(raw >= 0);
		sleep_ms(50);
		CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
		close(raw);
	}
	a = tc_open(sockpath, "app-a", false);
	gran = a->granularity;
	/* 1.5 granules: rounded up to 2. */
	n = tc_acquire(a, gran + gran / 2, 0, ch, 4);
	CHECK(n == 1 && ch[0].size == 2 * gran && ch[0].id != 0);
	CHECK(tc_stats(adm, NULL, "fits", &v) == 0 && v == 1);
	va = map_chunk(&ch[0], &h);
	CHECK_OK(cuMemcpyHtoD(va, buf, sizeof(buf)));
	CHECK_OK(cuMemcpyDtoH(out, va, sizeof(out)));
	CHECK(memcmp(buf, out, sizeof(buf)) == 0);
	CHECK(tc_stats(adm, &ps, "grants", &v) == 0 && v == 2);
	CHECK(ps.lent_bytes == 2 * gran && ps.physical_bytes == 2 * gran);
	CHECK(ps.idle_bytes == 0 && ps.chunks == 1 && ps.chunks_lent == 1);

	/* Releasing what it does not hold is an error; the session lives on. */
	CHECK(tc_release(a, &bogus, 1) ==
	    -VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK);
	b = tc_open(sockpath, "app-b", false);
	CHECK(tc_release(b, &ch[0].id, 1) ==
	    -VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK);
	/* All or nothing: a good id with a bad one releases neither. */
	{
		uint64_t ids[2] = { ch[0].id, bogus };

		CHECK(tc_release(a, ids, 2) ==
		    -VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK);
		CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
		CHECK(ps.lent_bytes == 2 * gran);
	}

	unmap_chunk(va, &ch[0], h);
	CHECK(tc_release(a, &ch[0].id, 1) == 0);
	CHECK(tc_stats(adm, &ps, "releases", &v) == 0 && v == 2);
	CHECK(ps.lent_bytes == 0 && ps.idle_bytes == 2 * gran);
	/* Released twice: the second is refused. */
	CHECK(tc_release(a, &ch[0].id, 1) ==
	    -VMM__ERROR_CODE__ERROR_CODE_UNKNOWN_CHUNK);

	/* Another session gets the same physical chunk back from the pool. */
	n = tc_acquire(b, 2 * gran, 0, ch2, 4);
	CHECK(n == 1 && ch2[0].id == ch[0].id);
	CHECK(tc_stats(adm, &ps, "fits", &v) == 0 && v == 2);
	CHECK(tc_stats(adm, NULL, "creates", &v) == 0 && v == 1);
	va = map_chunk(&ch2[0], &h);
	CHECK_OK(cuMemcpyDtoH(out, va, sizeof(out)));
	unmap_chunk(va, &ch2[0], h);

	/* b hangs up without releasing: its process lives but no longer maps
	 * the chunk... it is quarantined until the process exits: this test
	 * process lives on, so the chunk must stay out of the pool. */
	tc_close(b);
	sleep_ms(200);
	CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
	CHECK(ps.quarantined_bytes == 2 * gran && ps.idle_bytes == 0);

	/* More than the GPU has is refused. */
	CHECK(tc_acquire(a, 1ull << 50, 0, ch, 4) ==
	    -VMM__ERROR_CODE__ERROR_CODE_INVALID);

	tc_close(a);
	sleep_ms(200);
	/* Only the quarantined session's pidfd is left of a and b. */
	fds1 = tc_count_fds(d);
	if (fds1 != fds0 + 1)
	{
		char cmd[128];

		fprintf(stderr, "daemon fds: %d before, %d after\n", fds0, fds1);
		snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd >&2", (int)d);
		(void)!system(cmd);
	}
	CHECK(fds1 == fds0 + 1);

	/* A session's requests are answered in order: a Release nobody waited
	 * for is answered before the Acquire sent after it, and that Acquire
	 * gets the released chunk.  libvmm_client relies on this: it does not
	 * wait for its releases. */
	{
		struct tc *q = tc_open(sockpath, "app-pipelined", false);
		Vmm__Envelope env;
		Vmm__Acquire acq = VMM__ACQUIRE__INIT;
		struct vmm_frame_msg *m;
		const Vmm__Envelope *r;
		uint64_t rid;

		CHECK(tc_acquire(q, 2 * gran, 0, ch, 4) == 1);
		close(ch[0].fd);
		rid = tc_release_nowait(q, &ch[0].id, 1);
		acq.request_id = tc_rid(q);
		acq.bytes = 2 * gran;
		env = vmm_frame_env_acquire(&acq);
		CHECK(vmm_frame_send(q->fd, VMM_FRAME_PEER_DAEMON, &env, NULL, 0,
		    5000) == 0);
		CHECK(tc_recv(q, &m, 5000) == 1);
		r = vmm_frame_msg_env(m);
		CHECK(r->msg_case == VMM__ENVELOPE__MSG_RELEASE_REPLY);
		CHECK(r->release_reply->request_id == rid);
		CHECK(r->release_reply->released_chunks == 1);
		vmm_frame_msg_free(m);
		CHECK(tc_recv(q, &m, 5000) == 1);
		r = vmm_frame_msg_env(m);
		CHECK(r->msg_case == VMM__ENVELOPE__MSG_GRANT);
		CHECK(r->grant->request_id == acq.request_id);
		CHECK(r->grant->n_chunks == 1 &&
		    r->grant->chunks[0]->id == ch[0].id);
		vmm_frame_msg_free(m);	/* closes the granted fd */
		tc_close(q);
	}
	tc_close(adm);
	CHECK(WIFEXITED(tc_stop_daemon(d)));
	return 0;
}
