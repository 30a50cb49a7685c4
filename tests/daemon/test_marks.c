/*
 * Exact figures from vmmd (64 MiB emulated GPU): the high-water marks
 * follow every create and lend, however short-lived (no sampling can miss
 * them), a StatsRequest with reset_marks reports them and restarts them
 * from the current values, and the device's free memory follows vmmd's own
 * creates and destroys at once, without asking the driver on the request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define MiB (1ull << 20)

static void
stats(struct tc *adm, bool reset, Vmm__PoolStats *out)
{
	Vmm__StatsRequest r = VMM__STATS_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_stats_request(&r);
	struct vmm_frame_msg *m;

	r.reset_marks = reset;
	m = tc_call_expect(adm, &env, VMM__ENVELOPE__MSG_STATS_REPLY);
	*out = *vmm_frame_msg_env(m)->stats_reply->pool;
	vmm_frame_msg_free(m);
}

int
main(void)
{
	char sockpath[1100];
	struct tc *adm, *a;
	struct tc_chunk ch[4];
	Vmm__PoolStats ps;
	uint64_t total;
	int i;
	pid_t d;

	d = tc_start_in("sock", "idle_timeout_ms = 0\nswap_idle = 0\n", sockpath,
	    sizeof(sockpath), &adm);
	a = tc_open(sockpath, "a", false);
	stats(adm, false, &ps);
	total = ps.device_total_bytes;
	CHECK(ps.peak_physical_bytes == 0 && ps.peak_lent_bytes == 0);
	CHECK(ps.device_free_bytes == total);

	/* 32 MiB for an instant, in four grants given straight back. */
	for (i = 0; i < 4; i++)
		CHECK(tc_acquire(a, 8 * MiB, 0, &ch[i], 1) == 1);
	tc_close_chunks(ch, 4);
	for (i = 0; i < 4; i++)
		CHECK(tc_release(a, &ch[i].id, 1) == 0);
	stats(adm, false, &ps);
	CHECK(ps.peak_lent_bytes == 32 * MiB);
	CHECK(ps.peak_physical_bytes == 32 * MiB);
	CHECK(ps.lent_bytes == 0 && ps.physical_bytes == 32 * MiB);
	/* vmmd's own creates, at once. */
	CHECK(ps.device_free_bytes == total - 32 * MiB);

	/* Reset: this reply still has the marks; then they restart. */
	stats(adm, true, &ps);
	CHECK(ps.peak_lent_bytes == 32 * MiB);
	stats(adm, false, &ps);
	CHECK(ps.peak_lent_bytes == 0 && ps.peak_physical_bytes == 32 * MiB);

	/* Given back to the GPU: the mark stays until the next reset. */
	CHECK(tc_trim(adm, 0, false) == 32 * MiB);
	stats(adm, true, &ps);
	CHECK(ps.physical_bytes == 0 && ps.peak_physical_bytes == 32 * MiB);
	CHECK(ps.device_free_bytes == total);
	stats(adm, false, &ps);
	CHECK(ps.peak_physical_bytes == 0);

	tc_close(a);
	tc_stop_with(d, adm);
	return 0;
}
