/*
 * VMM_FRAG_RATIO as the client sends it (issue 9 item 6).  vmmd's pool
 * holds only small idle fragments (one chunk unit each, 2 MiB by default,
 * released by another session of the same uid); the library then asks for
 * 8 units.
 *
 *   test_client_frag zero      VMM_FRAG_RATIO=0 ("pieces of any size"): the
 *                              grant is stitched from the fragments, nothing
 *                              is created
 *   test_client_frag default   the default 0.25: one unit is below 2 units,
 *                              so no fragment is a preferred piece, but
 *                              idle memory goes before new memory: the
 *                              grant is stitched from the fragments all
 *                              the same, nothing is created
 *
 *   test_client_frag realloc   VMM_VA_HEADROOM=0: vmm_realloc grows an
 *                              allocation by 16 units while the pool holds
 *                              one idle chunk of 17 (a fit: at most 1/16
 *                              larger): all 17 are mapped, in the address
 *                              space taken for them, and the data stays.
 *
 *   test_client_frag partial   100 idle fragments and an allocation of 90
 *                              units, more than one grant carries (64):
 *                              vmmd lends 64 short of the request
 *                              (Acquire.partial) and the library asks again
 *                              for the rest, so nothing is created where
 *                              idle fragments cover it; all 90 units hold
 *                              the data written over them.
 *
 * The figures are vmmd's counters stitches, partials and creates, read
 * through an admin session.
 */
#include <cuda.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../common/check.h"
#include "testclient.h"
#include "vmm_client.h"

#define MiB		(1ull << 20)
#define NFRAG		8
#define NPART		100	/* fragments for "partial" */
#define PART_UNITS	90	/* its allocation, in units */

/* Grows a 32-unit allocation by 16 units while vmmd holds one idle chunk
 * of 17 units, which the grant fits with; checks the data survives and the
 * whole allocation is usable. */
static void
realloc_fit(const char *sockpath, struct tc *adm, uint64_t unit)
{
	const size_t n0 = 32 * unit, n1 = 48 * unit;
	unsigned char *buf, *back;
	struct tc_chunk ch;
	struct tc *other;
	uint64_t fits, id;
	size_t i;
	void *p, *q;

	CHECK((buf = malloc(n1)) != NULL && (back = malloc(n1)) != NULL);
	for (i = 0; i < n1; i++)
		buf[i] = (unsigned char)(i * 13 + 1);
	CHECK(vmm_malloc(&p, n0) == 0);
	CHECK_OK(cuMemcpyHtoD((CUdeviceptr)(uintptr_t)p, buf, n0));
	/* An idle 17-unit chunk of this uid in the pool. */
	other = tc_open(sockpath, "other", false);
	CHECK(tc_acquire(other, 17 * unit, 0, &ch, 1) == 1);
	CHECK(ch.size == 17 * unit);
	id = ch.id;
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(other, &id, 1) == 0);
	tc_close(other);
	fits = tc_counter(adm, "fits");
	CHECK(vmm_realloc(&p, n1) == 0);
	CHECK(tc_counter(adm, "fits") == fits + 1);	/* the 17 units */
	CHECK_OK(cuMemcpyHtoD((CUdeviceptr)(uintptr_t)p + n0, buf + n0,
	    n1 - n0));
	CHECK_OK(cuMemcpyDtoH(back, (CUdeviceptr)(uintptr_t)p, n1));
	CHECK(memcmp(back, buf, n1) == 0);
	/* The 17th unit lies in p's own address space: the next allocation
	 * is placed clear of it and maps. */
	CHECK(vmm_malloc(&q, 4 * unit) == 0);
	CHECK((uintptr_t)q >= (uintptr_t)p + n1 + unit ||
	    (uintptr_t)q + 4 * unit <= (uintptr_t)p);
	CHECK_OK(cuMemcpyHtoD((CUdeviceptr)(uintptr_t)q, buf, 4 * unit));
	CHECK_OK(cuMemcpyDtoH(back, (CUdeviceptr)(uintptr_t)p, n1));
	CHECK(memcmp(back, buf, n1) == 0);
	CHECK(vmm_free(q) == 0);
	CHECK(vmm_free(p) == 0);
	CHECK(vmm_flush() == 0);
	free(buf);
	free(back);
}

/* An allocation of PART_UNITS units while vmmd holds NPART idle
 * one-unit fragments: served from them in two grants, nothing created. */
static void
partial_alloc(struct tc *adm, uint64_t unit)
{
	const size_t n = PART_UNITS * unit;
	uint64_t creates = tc_counter(adm, "creates");
	uint64_t partials = tc_counter(adm, "partials");
	unsigned char *buf, *back;
	size_t i;
	void *p;

	CHECK((buf = malloc(n)) != NULL && (back = malloc(n)) != NULL);
	for (i = 0; i < n; i++)
		buf[i] = (unsigned char)(i * 7 + i / 4099);
	CHECK(vmm_malloc(&p, n) == 0);
	CHECK(tc_counter(adm, "creates") == creates);
	CHECK(tc_counter(adm, "partials") == partials + 1);
	CHECK_OK(cuMemcpyHtoD((CUdeviceptr)(uintptr_t)p, buf, n));
	CHECK_OK(cuMemcpyDtoH(back, (CUdeviceptr)(uintptr_t)p, n));
	CHECK(memcmp(back, buf, n) == 0);
	CHECK(vmm_free(p) == 0);
	CHECK(vmm_flush() == 0);
	free(buf);
	free(back);
}

int
main(int argc, char **argv)
{
	const char *tmp = getenv("VMM_TEST_TMPDIR");
	char sockdir[1024], sockpath[1100];
	struct tc_chunk ch[NPART];
	uint64_t ids[NPART], stitches, creates, frag_size;
	struct tc *adm, *app;
	CUcontext ctx;
	bool zero;
	void *p;
	size_t i, nfrag;
	pid_t d;

	CHECK(argc == 2 && (strcmp(argv[1], "zero") == 0 ||
	    strcmp(argv[1], "default") == 0 ||
	    strcmp(argv[1], "realloc") == 0 ||
	    strcmp(argv[1], "partial") == 0));
	zero = strcmp(argv[1], "zero") == 0;
	nfrag = strcmp(argv[1], "partial") == 0 ? NPART : NFRAG;
	CHECK(tmp != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s/sock", tmp);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	/* Idle chunks stay in the pool for the whole test. */
	d = tc_start_daemon(sockdir, "idle_timeout_ms = 0\n", NULL);
	setenv("VMM_SOCKET_DIR", sockdir, 1);
	adm = tc_open(sockpath, "admin", true);

	/* Fragments: NFRAG separate chunks of vmmd's unit, lent then
	 * released. */
	app = tc_open(sockpath, "fragments", false);
	frag_size = app->granularity;
	CHECK(frag_size >= 2 * MiB);
	for (i = 0; i < nfrag; i++) {
		CHECK(tc_acquire(app, frag_size, 0, &ch[i], 1) == 1);
		CHECK(ch[i].size == frag_size);
		ids[i] = ch[i].id;
	}
	tc_close_chunks(ch, nfrag);
	CHECK(tc_release(app, ids, nfrag) == 0);
	tc_close(app);
	stitches = tc_counter(adm, "stitches");
	creates = tc_counter(adm, "creates");

	CHECK_OK(cuInit(0));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	CHECK_OK(cuCtxSetCurrent(ctx));
	if (strcmp(argv[1], "realloc") == 0 ||
	    strcmp(argv[1], "partial") == 0) {
		if (nfrag == NPART)
			partial_alloc(adm, frag_size);
		else
			realloc_fit(sockpath, adm, frag_size);
		tc_close(adm);
		vmm_shutdown();
		CHECK(WIFEXITED(tc_stop_daemon(d)));
		printf("client_frag %s: ok\n", argv[1]);
		return 0;
	}
	CHECK(vmm_malloc(&p, NFRAG * frag_size) == 0);
	(void)zero;
	CHECK(tc_counter(adm, "stitches") == stitches + 1);
	CHECK(tc_counter(adm, "creates") == creates);
	CHECK(vmm_free(p) == 0);
	CHECK(vmm_flush() == 0);

	tc_close(adm);
	vmm_shutdown();
	CHECK(WIFEXITED(tc_stop_daemon(d)));
	printf("client_frag %s: ok\n", argv[1]);
	return 0;
}
