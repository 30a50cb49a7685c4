/* CUEMU_LATENCY=a100 charges each call a per-call cost: 20 cuMemCreate of
 * 2 MiB take at least 20 * 150 us; without it they are faster.  Lower
 * bounds only (machines are noisy). */
#include "cuemu_test.h"

#define CALLS 20
#define MIN_US_PER_CREATE 150

/* In a fresh child with CUEMU_LATENCY=mode: microseconds taken by CALLS
 * cuMemCreate of 2 MiB. */
static long long
time_creates(const char *mode)
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

		setenv("CUEMU_LATENCY", mode, 1);
		CHECK_OK(cuInit(0));
		t0 = ct_now_us();
		for (i = 0; i < CALLS; i++)
			CHECK_OK(cuMemCreate(&h[i], 2 * MiB, &p, 0));
		us = ct_now_us() - t0;
		for (i = 0; i < CALLS; i++)
			CHECK_OK(cuMemRelease(h[i]));
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

	on = time_creates("a100");
	/* Best of three without latency, to ride out scheduler noise. */
	for (i = 0; i < 3; i++) {
		t = time_creates("off");
		if (off < 0 || t < off)
			off = t;
	}
	fprintf(stderr, "%d x cuMemCreate(2 MiB): a100 %lld us, off %lld us\n",
	    CALLS, on, off);
	CHECK(on >= (long long)CALLS * MIN_US_PER_CREATE);
	CHECK(off < on);
	return 0;
}
