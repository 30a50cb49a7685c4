/*
 * The handles of granted chunks (client/core.c, "handles kept with their
 * mappings") through the public API, against a real vmmd on the emulator:
 * an allocation keeps each imported handle with its mapping (no
 * cuMemRelease on the allocation path), and every give-back releases them
 * before the chunks go back, so that once vmmd has them and destroys
 * them the device's memory is free again.  The emulator's handle_refs
 * counter says how many handle references the process holds.  One
 * scenario per run:
 *
 *   large    (VMM_MEDIUM_MAX=0) a pool-hit large allocation calls no
 *            cuMemRelease and keeps one handle per chunk; a stitch from
 *            the process's cache moves the cached entries' handles along
 *            to the new range (no release, no retain), once a kernel
 *            still writing one of them is done; a realloc that grows in place keeps the new chunks'
 *            handles; vmm_flush leaves no handle, and once vmmd destroyed
 *            the chunks the device is as free as before
 *   medium   the same for the medium heap and the small heap (pages and
 *            segments), and for a cached large allocation whose chunks
 *            are handed to the medium heap (vmmd creates nothing; the
 *            handles move along): vmm_flush leaves none
 *   recall   an admin trim with recall: the helper thread gives the cache
 *            back; by the time vmmd lends nothing to the process, the
 *            process holds no handle
 */
#include <cuda.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/check.h"
#include "../cuemu/cuemu.h"
#include "testclient.h"
#include "vmm_client.h"

#define MiB (1ull << 20)

static struct tc	*adm;
static char		sockpath[1100];

static void
setup(void)
{
	const char *tmp = getenv("VMM_TEST_TMPDIR");
	char sockdir[1024];
	CUcontext ctx;

	CHECK(tmp != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s/sock", tmp);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	(void)tc_start_daemon(sockdir, "idle_timeout_ms = 0\n", NULL);
	setenv("VMM_SOCKET_DIR", sockdir, 1);
	CHECK_OK(cuInit(0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	CHECK_OK(cuCtxSetCurrent(ctx));
	adm = tc_open(sockpath, "admin", true);
	CHECK(adm != NULL);
	CHECK(cuemu_available());
}

static uint64_t
lent(void)
{
	Vmm__PoolStats ps;

	CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
	return ps.lent_bytes;
}

static CUdeviceptr
D(void *p)
{
	return (CUdeviceptr)(uintptr_t)p;
}

static unsigned long long
refs(void)
{
	return cuemu_counter("handle_refs");
}

/* Whether all n bytes at d are v (read with a copy). */
static int
all_are(void *d, size_t n, unsigned char v)
{
	unsigned char *b = malloc(n);
	size_t i;
	int ok = 1;

	CHECK(b != NULL);
	CHECK_OK(cuMemcpyDtoH(b, D(d), n));
	for (i = 0; i < n && ok; i++)
		ok = b[i] == v;
	free(b);
	return ok;
}

/* Device memory in use as the driver counts it (every process's). */
static size_t
device_used(void)
{
	size_t f, t;

	CHECK_OK(cuMemGetInfo(&f, &t));
	return t - f;
}

/* Everything given back: no handle left, vmmd lends nothing, and once it
 * destroyed its idle chunks the device is as used as at start (a handle
 * kept here would keep its memory). */
static void
all_back(unsigned long long refs0, size_t used0)
{
	struct vmm_usage u;
	int i;

	CHECK(vmm_flush() == 0);
	CHECK(vmm_get_usage(&u) == 0);
	CHECK(u.mapped_bytes == 0);
	CHECK(lent() == 0);
	printf("after the flush: %llu handle references (%llu at start)\n",
	    refs(), refs0);
	CHECK(refs() == refs0);
	CHECK(tc_trim(adm, 0, false) >= 0);
	/* vmmd releases its handles on its worker thread. */
	for (i = 0; i < 500 && device_used() != used0; i++)
		tc_sleep_ms(10);
	printf("device used %zu MiB (%zu at start)\n", device_used() >> 20,
	    used0 >> 20);
	CHECK(device_used() == used0);
}

/* ---- large ------------------------------------------------------------------ */

static void
sc_large(void)
{
	unsigned long long r0 = refs(), rel, unm, c;
	size_t used0 = device_used();
	void *a, *b, *x, *y, *w;
	CUstream s;

	/* A pool hit: vmmd's idle chunks (made by a first allocation). */
	CHECK(vmm_malloc(&a, 64 * MiB) == 0);
	CHECK(vmm_free(a) == 0);
	CHECK(vmm_flush() == 0);
	CHECK(refs() == r0);
	rel = cuemu_counter("calls_release");
	c = cuemu_counter("calls_import");
	CHECK(vmm_malloc(&a, 64 * MiB) == 0);
	c = cuemu_counter("calls_import") - c;
	printf("pool hit: %llu chunks imported, %llu released, %llu kept\n", c,
	    cuemu_counter("calls_release") - rel, refs() - r0);
	CHECK(c >= 1);
	CHECK(cuemu_counter("calls_release") == rel);
	CHECK(refs() - r0 == c);
	CHECK_OK(cuMemsetD8(D(a), 0x5a, 64 * MiB));
	CHECK(all_are(a, 64 * MiB, 0x5a));
	CHECK(vmm_free(a) == 0);
	CHECK(refs() - r0 == c);	/* cached: still mapped, still kept */
	CHECK(vmm_flush() == 0);
	CHECK(refs() == r0);

	/* A stitch from the cache: x (32 MiB) and y (8 MiB) freed, a 48 MiB
	 * allocation takes both and 8 MiB from vmmd. */
	CHECK(vmm_malloc(&x, 32 * MiB) == 0);
	CHECK(vmm_malloc(&y, 8 * MiB) == 0);
	CHECK_OK(cuMemsetD8(D(y), 0x22, 8 * MiB));
	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	/* A kernel still writing x when it is freed and reused. */
	CHECK_OK(cuemu_launch_write(D(x), 0x11111111u, 32 * MiB, 200000, s));
	CHECK(vmm_free(x) == 0);
	CHECK(vmm_free(y) == 0);
	rel = cuemu_counter("calls_release");
	unm = cuemu_counter("chunks_unmap");
	CHECK(vmm_malloc(&w, 48 * MiB) == 0);
	printf("stitch: at x %d, %llu releases, %llu chunks unmapped\n",
	    w == x, cuemu_counter("calls_release") - rel,
	    cuemu_counter("chunks_unmap") - unm);
	CHECK(cuemu_counter("calls_release") == rel);
	/* The kernel was done before its memory was reused. */
	CHECK(all_are(w, 32 * MiB, 0x11));
	CHECK(all_are((char *)w + 32 * MiB, 8 * MiB, 0x22));
	CHECK_OK(cuMemsetD8(D(w), 0x33, 48 * MiB));
	CHECK(all_are(w, 48 * MiB, 0x33));
	CHECK(cuemu_counter("faults") == 0);
	CHECK(cuemu_counter("busy_releases") == 0);
	CHECK_OK(cuStreamDestroy(s));

	/* A realloc growing in place: the new chunks' handles are kept. */
	CHECK(vmm_malloc(&b, 8 * MiB) == 0);
	CHECK(vmm_realloc(&b, 24 * MiB) == 0);
	CHECK_OK(cuMemsetD8(D(b), 0x44, 24 * MiB));
	CHECK(all_are(b, 24 * MiB, 0x44));
	CHECK(vmm_free(b) == 0);
	CHECK(vmm_free(w) == 0);
	all_back(r0, used0);
}

/* ---- medium ------------------------------------------------------------------ */

static void
sc_medium(void)
{
	unsigned long long r0 = refs();
	size_t used0 = device_used();
	void *p[8], *big, *m;
	uint64_t creates;
	size_t i;

	for (i = 0; i < 8; i++) {
		CHECK(vmm_malloc(&p[i], i % 2 ? 5 * MiB / 2 : 4096) == 0);
		CHECK_OK(cuMemsetD8(D(p[i]), (unsigned char)(0x10 + i),
		    i % 2 ? 5 * MiB / 2 : 4096));
	}
	CHECK(refs() > r0);
	for (i = 0; i < 8; i++)
		CHECK(all_are(p[i], i % 2 ? 5 * MiB / 2 : 4096,
		    (unsigned char)(0x10 + i)));
	for (i = 0; i < 8; i++)
		CHECK(vmm_free(p[i]) == 0);
	all_back(r0, used0);

	/* A cached large allocation's chunks (8 MiB pieces of 40 MiB)
	 * handed to the medium heap for a 32 MiB block: vmmd creates
	 * nothing, the handles move along. */
	CHECK(vmm_malloc(&big, 40 * MiB) == 0);
	CHECK(vmm_free(big) == 0);
	creates = tc_counter(adm, "creates");
	CHECK(vmm_malloc(&m, 32 * MiB) == 0);
	CHECK(tc_counter(adm, "creates") == creates);
	CHECK_OK(cuMemsetD8(D(m), 0x66, 32 * MiB));
	CHECK(all_are(m, 32 * MiB, 0x66));
	CHECK(vmm_free(m) == 0);
	all_back(r0, used0);
}

/* ---- recall ------------------------------------------------------------------ */

static void
sc_recall(void)
{
	unsigned long long r0 = refs();
	size_t used0 = device_used();
	void *a, *m;
	int i;

	CHECK(vmm_malloc(&a, 64 * MiB) == 0);
	CHECK(vmm_malloc(&m, 5 * MiB / 2) == 0);
	CHECK(vmm_free(a) == 0);
	CHECK(vmm_free(m) == 0);
	CHECK(refs() > r0);
	CHECK(lent() > 0);
	/* vmmd recalls what a Report said is cached (every 50 ms here). */
	for (i = 0; i < 500 && tc_admin_pid_figure(sockpath, getpid(),
	    TC_SESSION_FIELD(reported_cached)) != lent(); i++)
		tc_sleep_ms(10);
	CHECK(tc_trim(adm, 0, true) >= 0);
	/* The helper answers the recall: once vmmd lends nothing, no handle
	 * may be left here. */
	for (i = 0; i < 500 && lent() != 0; i++)
		tc_sleep_ms(10);
	CHECK(lent() == 0);
	printf("after the recall: %llu handle references (%llu at start)\n",
	    refs(), r0);
	CHECK(refs() == r0);
	all_back(r0, used0);
}

int
main(int argc, char **argv)
{
	CHECK(argc == 2);
	setup();
	if (strcmp(argv[1], "large") == 0)
		sc_large();
	else if (strcmp(argv[1], "medium") == 0)
		sc_medium();
	else if (strcmp(argv[1], "recall") == 0)
		sc_recall();
	else
		CHECK(!"unknown scenario");
	tc_close(adm);
	printf("ok\n");
	return 0;
}
