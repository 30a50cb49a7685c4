/*
 * The idle timer gives back exactly the chunks idle longer than
 * idle_timeout_ms, whatever their sizes: 20 chunks of 1..8 units released
 * at once (A), 20 more 500 ms later (B).  While B is younger than the
 * timeout the idle pool never falls below B; it only ever holds A + B,
 * B or nothing (each batch goes in one tick, all sizes together); and it
 * empties once both are old.  The timer looks only at the expired end of
 * the age list (pool.c): a wrong prefix (young chunks given back, or old
 * ones kept, or one size missed) breaks one of these.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define NCH		40
#define TIMEOUT_MS	1000

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Releases the chunks of ch[] at even (half 0) or odd (1) places; returns
 * their bytes. */
static uint64_t
release_half(struct tc *a, const struct tc_chunk *ch, const uint64_t *size,
    int half)
{
	uint64_t ids[NCH / 2], bytes = 0;
	size_t n = 0;
	int i;

	for (i = half; i < NCH; i += 2) {
		ids[n++] = ch[i].id;
		bytes += size[i];
	}
	CHECK(tc_release(a, ids, n) == 0);
	return bytes;
}

int
main(void)
{
	const char *tmp = getenv("VMM_TEST_TMPDIR");
	char sockdir[1024], sockpath[1100], conf[128];
	struct tc_chunk ch[NCH], one[4];
	uint64_t size[NCH], bytes_a, bytes_b, t_a, t_b, t, g;
	struct tc *a, *adm;
	Vmm__PoolStats ps;
	bool saw_b_only = false;
	int i, polls = 0;
	pid_t d;

	CHECK(tmp != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s/sock", tmp);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	snprintf(conf, sizeof(conf), "idle_timeout_ms = %d\nidle_floor = 0\n",
	    TIMEOUT_MS);
	d = tc_start_daemon(sockdir, conf, NULL);
	adm = tc_open(sockpath, "admin", true);
	a = tc_open(sockpath, "ager", false);
	g = a->granularity;

	for (i = 0; i < NCH; i++) {
		size[i] = (uint64_t)(1 + (i * 5) % 8) * g;
		CHECK(tc_acquire(a, size[i], 0, one, 4) == 1);
		CHECK(one[0].size == size[i]);
		close(one[0].fd);
		ch[i] = one[0];
	}
	/* The grants grow old: the pool keeps nothing for recent demand. */
	tc_sleep_ms(TIMEOUT_MS + 200);
	t_a = now_ms();
	bytes_a = release_half(a, ch, size, 0);
	tc_sleep_ms(500);
	t_b = now_ms();
	bytes_b = release_half(a, ch, size, 1);

	do {
		tc_sleep_ms(20);
		CHECK(tc_stats(adm, &ps, NULL, NULL) == 0);
		t = now_ms();	/* vmmd answered before this */
		polls++;
		CHECK(ps.idle_bytes == bytes_a + bytes_b ||
		    ps.idle_bytes == bytes_b || ps.idle_bytes == 0);
		if (t - t_a < TIMEOUT_MS)
			CHECK(ps.idle_bytes == bytes_a + bytes_b);
		if (t - t_b < TIMEOUT_MS)
			CHECK(ps.idle_bytes >= bytes_b);
		if (ps.idle_bytes == bytes_b)
			saw_b_only = true;
	} while (ps.idle_bytes != 0 && t - t_b < 4 * TIMEOUT_MS);
	printf("A %llu + B %llu bytes; B alone seen: %s; empty %llu ms after "
	    "B's release (%d polls)\n", (unsigned long long)bytes_a,
	    (unsigned long long)bytes_b, saw_b_only ? "yes" : "no (load)",
	    (unsigned long long)(t - t_b), polls);
	CHECK(ps.idle_bytes == 0 && ps.physical_bytes == 0);
	tc_close(a);
	tc_close(adm);
	CHECK(WIFEXITED(tc_stop_daemon(d)));
	return 0;
}
