/*
 * The client library's public API against a real vmmd on the emulator:
 * allocations of many sizes with data checks, frees and reuse, realloc
 * growing in place, moving by remap and shrinking, ranges, usage figures,
 * flush, and the daemon's stats agreeing with what the client holds.
 */
#include <cuda.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"
#include "vmm_client.h"

#define MiB (1ull << 20)

static void
fill(unsigned char *b, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 9));
}

/* Writes a pattern through a copy and checks it reads back. */
static void
roundtrip(void *d, size_t n, unsigned seed)
{
	unsigned char *in = malloc(n), *out = malloc(n);

	CHECK(in != NULL && out != NULL);
	fill(in, n, seed);
	CHECK_OK(cuMemcpyHtoD((CUdeviceptr)(uintptr_t)d, in, n));
	memset(out, 0, n);
	CHECK_OK(cuMemcpyDtoH(out, (CUdeviceptr)(uintptr_t)d, n));
	CHECK(memcmp(in, out, n) == 0);
	free(in);
	free(out);
}

static void
check_pattern(void *d, size_t n, unsigned seed)
{
	unsigned char *in = malloc(n), *out = malloc(n);

	CHECK(in != NULL && out != NULL);
	fill(in, n, seed);
	CHECK_OK(cuMemcpyDtoH(out, (CUdeviceptr)(uintptr_t)d, n));
	CHECK(memcmp(in, out, n) == 0);
	free(in);
	free(out);
}

int
main(void)
{
	static const size_t sizes[] = { 1, 255, 256, 257, 1000, 4096, 65536,
	    100000, 1 << 20, (1 << 20) + 1, 3 * MiB, 5 * MiB + 123, 64 * MiB };
	const size_t nsizes = sizeof(sizes) / sizeof(sizes[0]);
	const char *tmp = getenv("VMM_TEST_TMPDIR");
	char sockdir[1024], sockpath[1100], env[1200];
	void *p[16], *q, *base;
	struct vmm_usage u;
	Vmm__PoolStats ps;
	struct tc *adm;
	CUcontext ctx;
	size_t i, sz;
	pid_t d;

	CHECK(tmp != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s/sock", tmp);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	d = tc_start_daemon(sockdir, "idle_timeout_ms = 0\n", NULL);
	snprintf(env, sizeof(env), "%s", sockdir);
	setenv("VMM_SOCKET_DIR", env, 1);
	/* The cache checks below must not race the idle give-back on a loaded
	 * machine: cached memory stays until a flush or a recall. */
	setenv("VMM_IDLE_MS", "0", 1);

	CHECK_OK(cuInit(0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	CHECK_OK(cuCtxSetCurrent(ctx));

	/* Bad arguments. */
	CHECK(vmm_malloc(NULL, 1) == VMM_EINVAL);
	CHECK(vmm_malloc(&q, 0) == VMM_EINVAL);
	CHECK(vmm_free(NULL) == 0);
	CHECK(vmm_free((void *)0x1234) == VMM_ENOTOURS);

	for (i = 0; i < nsizes; i++) {
		CHECK(vmm_malloc(&p[i], sizes[i]) == 0);
		CHECK(p[i] != NULL && (uintptr_t)p[i] % 256 == 0);
		roundtrip(p[i], sizes[i], (unsigned)i);
		CHECK(vmm_get_range((char *)p[i] + sizes[i] / 2, &base, &sz) == 0);
		CHECK(base == p[i] && sz >= sizes[i]);
	}
	/* Every block still holds its own data: nothing overlaps. */
	for (i = 0; i < nsizes; i++)
		check_pattern(p[i], sizes[i], (unsigned)i);
	CHECK(vmm_get_usage(&u) == 0);
	CHECK(u.in_use_bytes >= 64 * MiB && u.allocs == nsizes);

	/* The daemon lends what the client maps. */
	adm = tc_open(sockpath, "admin", true);
	CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
	CHECK(ps.lent_bytes == u.mapped_bytes);

	/* Free and reuse: a freed large allocation comes back from the cache
	 * without a new grant. */
	{
		uint64_t calls;

		CHECK(vmm_free(p[12]) == 0);
		CHECK(vmm_free(p[12]) == VMM_ENOTOURS);	/* double free refused */
		CHECK(vmm_get_usage(&u) == 0);
		calls = u.daemon_calls;
		CHECK(vmm_malloc(&p[12], 64 * MiB) == 0);
		CHECK(vmm_get_usage(&u) == 0);
		CHECK(u.daemon_calls == calls);
		roundtrip(p[12], 64 * MiB, 99);
	}

	/* Two cached 4 MiB allocations serve an 8 MiB request: their chunks are
	 * remapped into one range, without asking vmmd. */
	{
		void *x, *y, *z;
		uint64_t calls;

		CHECK(vmm_malloc(&x, 4 * MiB) == 0 && vmm_malloc(&y, 4 * MiB) == 0);
		roundtrip(x, 4 * MiB, 41);
		CHECK(vmm_free(x) == 0 && vmm_free(y) == 0);
		CHECK(vmm_get_usage(&u) == 0);
		calls = u.daemon_calls;
		CHECK(vmm_malloc(&z, 8 * MiB) == 0);
		CHECK(vmm_get_usage(&u) == 0);
		CHECK(u.daemon_calls == calls);
		CHECK(vmm_get_range((char *)z + 7 * MiB, &base, &sz) == 0);
		CHECK(base == z && sz == 8 * MiB);
		roundtrip(z, 8 * MiB, 42);	/* across the seam */
		CHECK(vmm_free(z) == 0);
	}

	/* Realloc: grow in place keeps the address and the data. */
	q = p[11];
	CHECK(vmm_realloc(&p[11], 9 * MiB) == 0);
	check_pattern(p[11], 5 * MiB + 123, 11);
	CHECK(vmm_get_range(p[11], &base, &sz) == 0 && sz == 9 * MiB);
	CHECK(p[11] == q);	/* VA headroom: in place */
	/* Grow past the headroom: moves by remapping; data intact. */
	CHECK(vmm_realloc(&p[11], 40 * MiB) == 0);
	check_pattern(p[11], 5 * MiB + 123, 11);
	roundtrip(p[11], 40 * MiB, 12);
	/* Shrink: same address, tail returned to vmmd without waiting for its
	 * answer (no round trip); the next request sees it released. */
	q = p[11];
	{
		uint64_t calls, mapped;

		CHECK(vmm_get_usage(&u) == 0);
		calls = u.daemon_calls;
		mapped = u.mapped_bytes;
		CHECK(vmm_realloc(&p[11], 3 * MiB) == 0);
		CHECK(vmm_get_usage(&u) == 0);
		CHECK(u.daemon_calls == calls && u.mapped_bytes < mapped);
		CHECK(vmm_flush() == 0);
		CHECK(vmm_get_usage(&u) == 0);
		CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
		CHECK(ps.lent_bytes == u.mapped_bytes);
	}
	CHECK(p[11] == q);
	check_pattern(p[11], 3 * MiB, 12);
	/* A sub-allocated block grows by copy. */
	CHECK(vmm_realloc(&p[5], 200000) == 0);
	check_pattern(p[5], 4096, 5);

	for (i = 0; i < nsizes; i++)
		CHECK(vmm_free(p[i]) == 0);
	CHECK(vmm_get_usage(&u) == 0);
	CHECK(u.in_use_bytes == 0);
	CHECK(vmm_flush() == 0);
	CHECK(vmm_get_usage(&u) == 0);
	CHECK(u.cached_bytes == 0 && u.mapped_bytes == 0);
	CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
	CHECK(ps.lent_bytes == 0);

	/* mem info is the client's view. */
	{
		size_t f, t;

		CHECK(vmm_mem_get_info(&f, &t) == 0);
		CHECK(t == ps.device_total_bytes && f <= t && f > 0);
	}
	tc_close(adm);
	vmm_shutdown();
	CHECK(WIFEXITED(tc_stop_daemon(d)));
	return 0;
}
