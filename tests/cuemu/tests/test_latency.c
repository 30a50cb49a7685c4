/* CUEMU_LATENCY=a100 charges each call a per-call cost: 20 cuMemCreate of
 * 2 MiB take at least 20 * 150 us; without it they are faster.  h100 is a
 * second profile (creates at least 120 us).  Export and import are charged
 * too (an export + import pair at least 20 us under a100), and
 * cuMemGetInfo (at least 5 us).  Lower bounds only (machines are noisy; the
 * costs are busy-waits, so a call can never be cheaper). */
#include "cuemu_test.h"

#define CALLS 20
#define MIN_US_PER_CREATE 150

enum op { OP_CREATE, OP_SHARE, OP_MEMINFO };

/* In a fresh child with CUEMU_LATENCY=mode: microseconds taken by CALLS
 * cuMemCreate of 2 MiB (OP_CREATE), CALLS export + import pairs (OP_SHARE),
 * or CALLS cuMemGetInfo (OP_MEMINFO). */
static long long
time_ops(const char *mode, enum op op)
{
	long long us = -1;
	int fds[2];
	pid_t pid;

	CHECK(pipe(fds) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		CUmemAllocationProp p = ct_prop(0, 1);
		CUmemGenericAllocationHandle h[CALLS];
		long long t0;
		int i;

		CUmemGenericAllocationHandle h2;
		size_t fr, tot;
		int fd;

		setenv("CUEMU_LATENCY", mode, 1);
		if (op == OP_MEMINFO)
			(void)ct_init_ctx(0);
		else
			CHECK_OK(cuInit(0));
		t0 = ct_now_us();
		for (i = 0; i < CALLS && op == OP_CREATE; i++)
			CHECK_OK(cuMemCreate(&h[i], 2 * MiB, &p, 0));
		for (i = 0; i < CALLS && op == OP_MEMINFO; i++)
			CHECK_OK(cuMemGetInfo(&fr, &tot));
		if (op == OP_SHARE) {
			CHECK_OK(cuMemCreate(&h[0], 2 * MiB, &p, 0));
			t0 = ct_now_us();
			for (i = 0; i < CALLS; i++) {
				CHECK_OK(cuMemExportToShareableHandle(&fd, h[0],
				    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
				CHECK_OK(cuMemImportFromShareableHandle(&h2,
				    (void *)(uintptr_t)fd,
				    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
				close(fd);
				CHECK_OK(cuMemRelease(h2));
			}
		}
		us = ct_now_us() - t0;
		for (i = 0; i < CALLS && op == OP_CREATE; i++)
			CHECK_OK(cuMemRelease(h[i]));
		if (op == OP_SHARE)
			CHECK_OK(cuMemRelease(h[0]));
		ct_write(fds[1], &us, sizeof(us));
		_exit(0);
	}
	close(fds[1]);
	ct_read(fds[0], &us, sizeof(us));
	close(fds[0]);
	ct_wait_ok(pid, mode);
	return us;
}

int
main(void)
{
	long long on, off = -1, t;
	int i;

	on = time_ops("a100", OP_CREATE);
	/* Best of three without latency, to ride out scheduler noise. */
	for (i = 0; i < 3; i++) {
		t = time_ops("off", OP_CREATE);
		if (off < 0 || t < off)
			off = t;
	}
	fprintf(stderr, "%d x cuMemCreate(2 MiB): a100 %lld us, off %lld us\n",
	    CALLS, on, off);
	CHECK(on >= (long long)CALLS * MIN_US_PER_CREATE);
	CHECK(off < on);
	t = time_ops("h100", OP_CREATE);
	fprintf(stderr, "%d x cuMemCreate(2 MiB): h100 %lld us\n", CALLS, t);
	CHECK(t >= (long long)CALLS * 120);
	t = time_ops("a100", OP_SHARE);
	fprintf(stderr, "%d x export + import: a100 %lld us\n", CALLS, t);
	CHECK(t >= (long long)CALLS * 20);
	t = time_ops("a100", OP_MEMINFO);
	fprintf(stderr, "%d x cuMemGetInfo: a100 %lld us\n", CALLS, t);
	CHECK(t >= (long long)CALLS * 5);
	return 0;
}
