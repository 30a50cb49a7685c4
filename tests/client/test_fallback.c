/*
 * The broker path fails in the middle, under LD_PRELOAD=libvmm_client.so
 * with a real vmmd (issue 10, B.6).  One scenario per argument:
 *
 *   map, access, import   the first cuMemMap / cuMemSetAccess /
 *             cuMemImportFromShareableHandle of the process fails with an
 *             unexpected error (CUEMU_FAIL): cudaMalloc is served by CUDA's
 *             own allocator, one ERROR line says so, the granted chunks are
 *             back at vmmd; the next allocation comes from vmmd again
 *   fail      the same with VMM_FALLBACK=fail: cudaMalloc fails instead
 *   truncated RLIMIT_NOFILE leaves room for 2 of the 4 fds of a stitched
 *             grant (the kernel drops the rest: MSG_CTRUNC): a clear error,
 *             the 4 chunks go back to vmmd, CUDA's allocator serves it
 *   dup       room for the grant's fd but not for the driver's own copy
 *             made at import: a clear error, the chunk goes back
 *
 * After each, vmmd lends the process exactly what it maps (vmm_flush waits
 * until vmmd has every Release) and quarantines nothing.
 */
#include <cuda.h>
#include <cuda_runtime_api.h>

#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"
#include "vmm_client.h"

#define MiB (1ull << 20)
#define CKRT(call) CHECK((call) == cudaSuccess)

static char	sockdir[1024], sockpath[1100], logpath[1100];

static int (*p_get_usage)(struct vmm_usage *);
static int (*p_get_range)(const void *, void **, size_t *);
static int (*p_flush)(void);

static void
api_resolve(void)
{
	p_get_usage = (int (*)(struct vmm_usage *))dlsym(RTLD_DEFAULT,
	    "vmm_get_usage");
	p_get_range = (int (*)(const void *, void **, size_t *))dlsym(
	    RTLD_DEFAULT, "vmm_get_range");
	p_flush = (int (*)(void))dlsym(RTLD_DEFAULT, "vmm_flush");
	CHECK(p_get_usage != NULL && p_get_range != NULL && p_flush != NULL);
}

/* Whether p came from vmmd (the library knows it). */
static bool
ours(void *p)
{
	void *base;
	size_t size;

	return p_get_range(p, &base, &size) == 0;
}

/* A data round trip through p. */
static void
roundtrip(void *p, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n), *e = malloc(n);
	size_t i;

	CHECK(b != NULL && e != NULL);
	for (i = 0; i < n; i++)
		e[i] = (unsigned char)(seed + i * 7);
	CKRT(cudaMemcpy(p, e, n, cudaMemcpyHostToDevice));
	CKRT(cudaMemcpy(b, p, n, cudaMemcpyDeviceToHost));
	CHECK(memcmp(b, e, n) == 0);
	free(b);
	free(e);
}

/* vmmd lends this process exactly what it maps, and quarantines nothing. */
static void
check_books(void)
{
	struct tc *adm;
	Vmm__PoolStats ps;
	struct vmm_usage u;

	CHECK(p_flush() == 0);
	CHECK(p_get_usage(&u) == 0);
	adm = tc_open(sockpath, "admin", true);
	CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
	tc_close(adm);
	fprintf(stderr, "lent %llu, quarantined %llu, mapped %llu\n",
	    (unsigned long long)ps.lent_bytes,
	    (unsigned long long)ps.quarantined_bytes,
	    (unsigned long long)u.mapped_bytes);
	CHECK(ps.lent_bytes == u.mapped_bytes);
	CHECK(ps.quarantined_bytes == 0);
}

/* Lines of the library's log containing what (ERROR lines: "[ERR]"). */
static int
log_lines(const char *level, const char *what)
{
	char line[2048];
	FILE *f = fopen(logpath, "re");
	int n = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, level) != NULL &&
		    (what == NULL || strstr(line, what) != NULL))
			n++;
	fclose(f);
	return n;
}

/* Lowers RLIMIT_NOFILE so that exactly `room` more fds can be opened. */
static void
fd_room(int room, struct rlimit *old)
{
	char seen[4096] = { 0 };
	struct rlimit rl;
	struct dirent *e;
	DIR *d = opendir("/proc/self/fd");
	int fd, dfd, lim, free_below = 0;

	CHECK(d != NULL && getrlimit(RLIMIT_NOFILE, old) == 0);
	dfd = dirfd(d);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' && (fd = atoi(e->d_name)) != dfd &&
		    fd < (int)sizeof(seen))
			seen[fd] = 1;
	closedir(d);
	for (lim = 0; lim < (int)sizeof(seen); lim++) {
		if (free_below == room)
			break;
		if (!seen[lim])
			free_below++;
	}
	CHECK(free_below == room);
	rl = *old;
	rl.rlim_cur = (rlim_t)lim;
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
}

static void
start(const char *fail)
{
	tc_start_daemon(sockdir, "idle_timeout_ms = 0\n", NULL);
	/* Only this process's driver fails, from its first call on (the
	 * emulator reads CUEMU_FAIL at its first call, the daemon has its
	 * own environment). */
	if (fail != NULL)
		CHECK(setenv("CUEMU_FAIL", fail, 1) == 0);
	CKRT(cudaSetDevice(0));
}

/* A failed driver call in the broker path; fallback: VMM_FALLBACK=on. */
static void
sc_driver(const char *fail, bool fallback)
{
	void *p, *q;

	start(fail);
	if (fallback) {
		CKRT(cudaMalloc(&p, 8 * MiB));
		CHECK(!ours(p));
		roundtrip(p, 8 * MiB, 1);
		CHECK(log_lines("[ERR]", "CUDA's own allocator") == 1);
		CHECK(log_lines("[ERR]", NULL) == 1);
	} else {
		CHECK(cudaMalloc(&p, 8 * MiB) != cudaSuccess);
		CHECK(log_lines("[ERR]", "VMM_FALLBACK=fail") == 1);
		CHECK(log_lines("[ERR]", NULL) == 1);
		p = NULL;
	}
	check_books();
	/* The fault was one call: vmmd serves the next allocation. */
	CKRT(cudaMalloc(&q, 8 * MiB));
	CHECK(ours(q));
	roundtrip(q, 8 * MiB, 2);
	check_books();
	CKRT(cudaFree(q));
	if (p != NULL)
		CKRT(cudaFree(p));
	check_books();
}

/* Out of fds while receiving a grant of 4 chunks. */
static void
sc_truncated(void)
{
	struct rlimit old;
	void *p[4], *q;
	cudaError_t r;
	int i;

	start(NULL);
	/* Four 2 MiB chunks pooled at vmmd: 8 MiB is stitched from them. */
	for (i = 0; i < 4; i++)
		CKRT(cudaMalloc(&p[i], 2 * MiB));
	for (i = 0; i < 4; i++)
		CKRT(cudaFree(p[i]));
	check_books();
	fd_room(2, &old);
	r = cudaMalloc(&q, 8 * MiB);
	CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
	check_books();
	CKRT(r);
	CHECK(!ours(q));
	CHECK(log_lines("[ERR]", "did not arrive") == 1);
	CHECK(log_lines("[ERR]", NULL) == 1);
	roundtrip(q, 8 * MiB, 3);
	CKRT(cudaFree(q));
	/* The connection is fine: vmmd serves the next one. */
	CKRT(cudaMalloc(&q, 8 * MiB));
	CHECK(ours(q));
	roundtrip(q, 8 * MiB, 4);
	CKRT(cudaFree(q));
	check_books();
}

/* Out of fds for the driver's own copy of a received one. */
static void
sc_dup(void)
{
	struct rlimit old;
	void *q;
	cudaError_t r;

	start(NULL);
	/* Connected, and an 8 MiB chunk pooled: the grant will be that one
	 * chunk, one fd. */
	CKRT(cudaMalloc(&q, 8 * MiB));
	CKRT(cudaFree(q));
	check_books();
	fd_room(1, &old);
	r = cudaMalloc(&q, 8 * MiB);
	CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
	check_books();
	/* CUDA's own allocator needs an fd as well on the emulator: it may
	 * fail too; either way the error is said and the chunk is back. */
	CHECK(r != cudaSuccess || !ours(q));
	if (r == cudaSuccess)
		CKRT(cudaFree(q));
	CHECK(log_lines("[ERR]", "out of file descriptors") == 1);
	CHECK(log_lines("[ERR]", NULL) == 1);
	CKRT(cudaMalloc(&q, 8 * MiB));
	CHECK(ours(q));
	CKRT(cudaFree(q));
	check_books();
}

int
main(int argc, char **argv)
{
	const char *tmp = getenv("VMM_TEST_TMPDIR"), *log = getenv("VMM_LOG_FILE");

	CHECK(argc == 2 && tmp != NULL && log != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s/sock", tmp);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	snprintf(logpath, sizeof(logpath), "%s", log);
	unlink(logpath);
	api_resolve();
	if (strcmp(argv[1], "map") == 0)
		sc_driver("cuMemMap:1:CUDA_ERROR_UNKNOWN", true);
	else if (strcmp(argv[1], "access") == 0)
		sc_driver("cuMemSetAccess:1:CUDA_ERROR_UNKNOWN", true);
	else if (strcmp(argv[1], "import") == 0)
		sc_driver("cuMemImportFromShareableHandle:1:"
		    "CUDA_ERROR_INVALID_HANDLE", true);
	else if (strcmp(argv[1], "fail") == 0)
		sc_driver("cuMemMap:1:CUDA_ERROR_UNKNOWN", false);
	else if (strcmp(argv[1], "truncated") == 0)
		sc_truncated();
	else if (strcmp(argv[1], "dup") == 0)
		sc_dup();
	else
		CHECK(!"unknown scenario");
	return 0;
}
