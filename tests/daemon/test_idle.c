/*
 * Idle return adapts to demand: while a client keeps cycling through a
 * working set of chunks, the pool keeps them (few creates) even though each
 * one sits idle longer than the idle timeout between uses; once the client
 * stops, the idle pool falls to the floor (0 here) within a couple of
 * timeouts; and trim empties it at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

int
main(void)
{
	const char *tmp = getenv("VMM_TEST_TMPDIR");
	char sockdir[1024], sockpath[1100];
	struct tc_chunk ch[4];
	struct tc *a, *adm;
	Vmm__PoolStats ps;
	uint64_t creates, grants, t0, g;
	int i, n;
	pid_t d;

	CHECK(tmp != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s/sock", tmp);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	d = tc_start_daemon(sockdir, "idle_timeout_ms = 300\nidle_floor = 0\n",
	    NULL);
	adm = tc_open(sockpath, "admin", true);
	a = tc_open(sockpath, "cycler", false);
	g = a->granularity;

	/* Four sizes in turn, one every 100 ms: each chunk is idle 300-400 ms
	 * between uses, past the timeout, but demand is steady. */
	t0 = now_ms();
	for (i = 0; now_ms() - t0 < 2400; i++) {
		n = tc_acquire(a, (uint64_t)(1 + i % 4) * g, 0, ch, 4);
		CHECK(n == 1);
		close(ch[0].fd);
		CHECK(tc_release(a, &ch[0].id, 1) == 0);
		sleep_ms(100);
	}
	CHECK(tc_stats(adm, &ps, "creates", &creates) == 0);
	CHECK(tc_stats(adm, NULL, "grants", &grants) == 0);
	printf("steady: %llu grants, %llu creates\n", (unsigned long long)grants,
	    (unsigned long long)creates);
	/* Without adaptation every grant after the first round would create. */
	CHECK(grants >= 16 && creates * 2 <= grants);

	/* Quiet: the idle pool falls to the floor. */
	t0 = now_ms();
	do {
		sleep_ms(50);
		CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
	} while (ps.idle_bytes > 0 && now_ms() - t0 < 3000);
	printf("idle pool empty %llu ms after the last release\n",
	    (unsigned long long)(now_ms() - t0));
	CHECK(ps.idle_bytes == 0 && ps.physical_bytes == 0);
	CHECK(now_ms() - t0 < 1500);

	/* Trim empties the pool at once, whatever the timeout. */
	n = tc_acquire(a, 3 * g, 0, ch, 4);
	CHECK(n == 1);
	close(ch[0].fd);
	CHECK(tc_release(a, &ch[0].id, 1) == 0);
	{
		Vmm__Envelope env;
		Vmm__TrimRequest tr = VMM__TRIM_REQUEST__INIT;
		struct vmm_frame_msg *m;

		tr.request_id = tc_rid(adm);
		env = vmm_frame_env_trim_request(&tr);
		CHECK((m = tc_call(adm, &env, NULL, 0)) != NULL);
		CHECK(vmm_frame_msg_env(m)->msg_case ==
		    VMM__ENVELOPE__MSG_TRIM_REPLY);
		CHECK(vmm_frame_msg_env(m)->trim_reply->bytes_released == 3 * g);
		vmm_frame_msg_free(m);
	}
	CHECK(tc_stats(adm, &ps, NULL, NULL) == 0 && ps.physical_bytes == 0);
	tc_close(a);
	tc_close(adm);
	CHECK(WIFEXITED(tc_stop_daemon(d)));
	return 0;
}
