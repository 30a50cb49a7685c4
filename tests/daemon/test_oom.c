/*
 * vmmd out of memory, on a 64 MiB emulated GPU (CUEMU_MEM_MB=64): idle
 * pooled chunks are given back to make room before a grant fails; when the
 * memory really is lent out the error names who holds it and the daemon
 * serves on; driver faults (CUEMU_FAIL) give INTERNAL errors and leave the
 * pool's totals consistent.
 */
#include <cuda.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define MiB	(1024ull * 1024)

static char		sockpath[1100];
static struct tc	*adm;
static uint64_t		G;	/* vmmd's unit: 2 MiB, or more in the variants */

static pid_t
start(const char *sub)
{
	pid_t d;

	/* nogroup: a child of another uid may connect. */
	d = tc_start_in(sub, "idle_timeout_ms = 0\nsocket_group = nogroup\n",
	    sockpath, sizeof(sockpath), &adm);
	/* The 16 MiB chunks below are whole units. */
	G = adm->granularity;
	CHECK(G >= 2 * MiB && (16 * MiB) % G == 0);
	return d;
}

/* As nobody (no admin): an out-of-memory error tells the pool's totals and
 * this client's share, never other processes' pids or sizes. */
static int
child_stranger(void *arg, int ctl)
{
	const pid_t *hog = arg;
	struct tc_chunk ch[4];
	char msg[512], pid[32];
	gid_t g = 65534;
	struct tc *c;

	tc_become(65534, 65534, &g, 1);
	c = tc_open(sockpath, "stranger", false);
	CHECK(tc_acquire_ex(c, G, 0, 0, ch, 4, msg, sizeof(msg)) ==
	    -VMM__ERROR_CODE__ERROR_CODE_OUT_OF_MEMORY);
	fprintf(stderr, "OOM error to a non-admin: %s\n", msg);
	snprintf(pid, sizeof(pid), "pid %d", (int)*hog);
	CHECK(strstr(msg, pid) == NULL && strstr(msg, "holders") == NULL);
	CHECK(strstr(msg, "this client holds 0 MiB") != NULL);
	tc_ctl_send(ctl, "k", 1);
	tc_close(c);
	return 0;
}

static void
stop(pid_t d)
{
	tc_stop_with(d, adm);
}

/* Holds 32 MiB (stitched from the pool) until killed. */
static int
child_hog(void *arg, int ctl)
{
	struct tc_chunk ch[64];
	struct tc *c;
	int n;

	(void)arg;
	c = tc_open(sockpath, "hog", false);
	n = tc_acquire(c, 32 * MiB, VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH,
	    ch, 64);
	CHECK(n > 0);
	tc_close_chunks(ch, (size_t)n);
	tc_ctl_send(ctl, &n, sizeof(n));
	for (;;)
		pause();
}

static void
check_consistent(const Vmm__PoolStats *ps)
{
	CHECK(ps->physical_bytes == ps->lent_bytes + ps->idle_bytes +
	    ps->quarantined_bytes);
	CHECK(ps->physical_bytes <= 64 * MiB);
}

/* Idle chunks make room; lent memory makes a clear error. */
static void
test_recover_and_fail(void)
{
	struct tc_chunk ch[4], big;
	uint64_t rec, rel, relb, fails;
	char msg[512], want[64];
	Vmm__PoolStats ps;
	pid_t d, hog;
	int ctl, n, i;

	d = start("oom");
	/* Fill the GPU, then put everything back in the pool. */
	for (i = 0; i < 4; i++)
		CHECK(tc_acquire(adm, 16 * MiB, 0, &ch[i], 1) == 1);
	tc_pool(adm, &ps);
	CHECK(ps.physical_bytes == 64 * MiB && ps.device_free_bytes == 0);
	for (i = 0; i < 4; i++) {
		tc_close_chunks(&ch[i], 1);
		CHECK(tc_release(adm, &ch[i].id, 1) == 0);
	}
	tc_pool(adm, &ps);
	CHECK(ps.idle_bytes == 64 * MiB);

	/* 32 MiB fits no pooled chunk and may not be stitched: it must be
	 * created, so two idle 16 MiB chunks go back to the GPU first. */
	rec = tc_counter(adm, "oom_recoveries");
	rel = tc_counter(adm, "gpu_releases");
	relb = tc_counter(adm, "gpu_release_bytes");
	CHECK(tc_acquire(adm, 32 * MiB, 0, &big, 1) == 1);
	CHECK(big.size == 32 * MiB);
	CHECK(tc_counter(adm, "oom_recoveries") == rec + 1);
	CHECK(tc_counter(adm, "gpu_releases") == rel + 2);
	CHECK(tc_counter(adm, "gpu_release_bytes") == relb + 32 * MiB);
	tc_pool(adm, &ps);
	check_consistent(&ps);
	CHECK(ps.lent_bytes == 32 * MiB && ps.idle_bytes == 32 * MiB);
	tc_close_chunks(&big, 1);

	/* Another process takes the other 32 MiB: everything is lent. */
	hog = tc_spawn(child_hog, NULL, &ctl);
	tc_ctl_recv(ctl, &n, sizeof(n), 10000);
	close(ctl);
	tc_pool(adm, &ps);
	CHECK(ps.lent_bytes == 64 * MiB && ps.idle_bytes == 0);

	fails = tc_counter(adm, "oom_failures");
	n = tc_acquire_ex(adm, G, VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH,
	    0, ch, 4, msg, sizeof(msg));
	fprintf(stderr, "OOM error: %s\n", msg);
	CHECK(n == -VMM__ERROR_CODE__ERROR_CODE_OUT_OF_MEMORY);
	CHECK(tc_counter(adm, "oom_failures") == fails + 1);
	snprintf(want, sizeof(want), "pid %d ", (int)hog);
	CHECK(strstr(msg, want) != NULL);
	snprintf(want, sizeof(want), "pid %d ", (int)getpid());
	CHECK(strstr(msg, want) != NULL);
	{
		pid_t st;
		char k;

		st = tc_spawn(child_stranger, &hog, &ctl);
		tc_ctl_recv(ctl, &k, 1, 10000);
		close(ctl);
		CHECK(tc_wait_child(st, 0) == 0);
	}
	tc_pool(adm, &ps);
	check_consistent(&ps);
	CHECK(ps.lent_bytes == 64 * MiB);

	/* The daemon serves on; once the holder is gone, so is the OOM. */
	CHECK(kill(hog, SIGKILL) == 0);
	CHECK(tc_wait_child(hog, SIGKILL) == 0);
	for (i = 0; i < 200; i++) {
		tc_pool(adm, &ps);
		if (ps.lent_bytes == 32 * MiB && ps.quarantined_bytes == 0)
			break;
		tc_sleep_ms(10);
	}
	CHECK(ps.lent_bytes == 32 * MiB && ps.idle_bytes == 32 * MiB);
	n = tc_acquire(adm, G, 0, ch, 4);
	CHECK(n == 1);
	tc_close_chunks(ch, 1);
	CHECK(tc_release(adm, &ch[0].id, 1) == 0);
	CHECK(tc_release(adm, &big.id, 1) == 0);
	tc_pool(adm, &ps);
	check_consistent(&ps);
	CHECK(ps.lent_bytes == 0);
	stop(d);
}

/* Driver faults: a failed cuMemCreate and a failed export. */
static void
test_faults(void)
{
	struct tc_chunk ch;
	Vmm__PoolStats ps;
	char msg[512];
	pid_t d;

	/* vmmd's start-up probe of exported fds makes 2 creates and 3
	 * exports: the faults hit the first of the grants'. */
	setenv("CUEMU_FAIL", "cuMemCreate:3:CUDA_ERROR_UNKNOWN,"
	    "cuMemExportToShareableHandle:4:CUDA_ERROR_UNKNOWN", 1);
	d = start("fault");
	unsetenv("CUEMU_FAIL");

	/* The first create fails: nothing is left behind. */
	CHECK(tc_acquire_ex(adm, G, 0, 0, &ch, 1, msg, sizeof(msg)) ==
	    -VMM__ERROR_CODE__ERROR_CODE_INTERNAL);
	fprintf(stderr, "create fault: %s\n", msg);
	tc_pool(adm, &ps);
	CHECK(ps.physical_bytes == 0 && ps.chunks == 0 && ps.lent_bytes == 0 &&
	    ps.idle_bytes == 0 && ps.chunks_lent == 0);
	CHECK(tc_counter(adm, "creates") == 0);
	CHECK(tc_counter(adm, "failures") == 1);

	/* The chunk is created but cannot be exported: it goes back to the
	 * pool, lent to nobody. */
	CHECK(tc_acquire_ex(adm, G, 0, 0, &ch, 1, msg, sizeof(msg)) ==
	    -VMM__ERROR_CODE__ERROR_CODE_INTERNAL);
	fprintf(stderr, "export fault: %s\n", msg);
	tc_pool(adm, &ps);
	check_consistent(&ps);
	CHECK(ps.physical_bytes == G && ps.idle_bytes == G &&
	    ps.lent_bytes == 0 && ps.chunks == 1 && ps.chunks_lent == 0);

	/* Then all is well again. */
	CHECK(tc_acquire(adm, G, 0, &ch, 1) == 1);
	tc_pool(adm, &ps);
	CHECK(ps.physical_bytes == G && ps.lent_bytes == G &&
	    ps.chunks_lent == 1);
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(adm, &ch.id, 1) == 0);
	stop(d);
}

int
main(void)
{
	test_recover_and_fail();
	test_faults();
	return 0;
}
