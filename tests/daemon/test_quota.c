/*
 * Quotas by cgroup (read from /proc/<pid>/cgroup of the peer), by uid and
 * by client name set at run time with SetQuota, each counting every
 * session of its cgroup, uid or name, and the client's view of memory
 * (MemInfo): the quota as total, what is left as free.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

/* Sizes below are written for vmmd's default 2 MiB unit, in units of
 * U = unit / 2, so they hold for any unit (the test variants'). */
static uint64_t	U;

void	vmmd_cgroup_of(pid_t pid, char *out, size_t outlen);

/* This process's cgroup as vmmd names it (daemon/cgroup.c, linked in),
 * or NULL if it has none (the test skips). */
static char *
own_cgroup(void)
{
	static char path[512];

	vmmd_cgroup_of(getpid(), path, sizeof(path));
	return path[0] != '\0' ? path : NULL;
}

static void
meminfo(struct tc *c, uint64_t *f, uint64_t *t)
{
	Vmm__Envelope env;
	Vmm__MemInfoRequest r = VMM__MEM_INFO_REQUEST__INIT;
	const Vmm__Envelope *e;
	struct vmm_frame_msg *m;

	r.request_id = tc_rid(c);
	env = vmm_frame_env_mem_info_request(&r);
	CHECK((m = tc_call(c, &env, NULL, 0)) != NULL);
	e = vmm_frame_msg_env(m);
	CHECK(e->msg_case == VMM__ENVELOPE__MSG_MEM_INFO_REPLY);
	*f = e->mem_info_reply->free_bytes;
	*t = e->mem_info_reply->total_bytes;
	vmm_frame_msg_free(m);
}

static void
set_quota(struct tc *adm, Vmm__QuotaKind kind, const char *key, uint64_t bytes)
{
	Vmm__Envelope env;
	Vmm__SetQuota q = VMM__SET_QUOTA__INIT;

	q.request_id = tc_rid(adm);
	q.kind = kind;
	q.key = (char *)key;
	q.bytes = bytes;
	env = vmm_frame_env_set_quota(&q);
	vmm_frame_msg_free(tc_call_expect(adm, &env, VMM__ENVELOPE__MSG_ACK));
}

int
main(void)
{
	const char *tmp = getenv("VMM_TEST_TMPDIR");
	char sockdir[1024], sockpath[1100], conf[1400];
	struct tc_chunk ch[8];
	struct tc *a, *b, *adm;
	uint64_t f, t, g;
	char *cg = own_cgroup();
	int n;
	pid_t d;

	CHECK(tmp != NULL);
	if (cg == NULL) {
		printf("no cgroup v2 path for this process: skipped\n");
		return 77;
	}
	snprintf(sockdir, sizeof(sockdir), "%s/sock", tmp);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	U = tc_probe_unit() / 2;
	snprintf(conf, sizeof(conf), "idle_timeout_ms = 0\nquota.cgroup.%s = "
	    "%lluK\n", cg, (unsigned long long)(6 * U >> 10));
	d = tc_start_daemon(sockdir, conf, NULL);
	adm = tc_open(sockpath, "admin", true);

	/* Cgroup quota: 6 MiB for every process of this cgroup. */
	a = tc_open(sockpath, "app-a", false);
	g = a->granularity;
	CHECK(g == 2 * U);
	meminfo(a, &f, &t);
	CHECK(t == 6 * U && f == 6 * U);
	CHECK(tc_acquire(a, 8 * U, 0, ch, 8) ==
	    -VMM__ERROR_CODE__ERROR_CODE_QUOTA);
	CHECK((n = tc_acquire(a, 4 * U, 0, ch, 8)) == 1);
	close(ch[0].fd);
	meminfo(a, &f, &t);
	CHECK(t == 6 * U && f == 2 * U);
	CHECK(tc_acquire(a, 4 * U, 0, ch + 1, 7) ==
	    -VMM__ERROR_CODE__ERROR_CODE_QUOTA);
	CHECK(tc_counter(adm, "quota_failures") == 2);

	/* A name quota set at run time, smaller still: the smallest wins. */
	set_quota(adm, VMM__QUOTA_KIND__QUOTA_KIND_NAME, "app-b", 2 * U);
	b = tc_open(sockpath, "app-b", false);
	meminfo(b, &f, &t);
	CHECK(t == 2 * U && f == 2 * U);
	CHECK(tc_acquire(b, 4 * U, 0, ch + 2, 6) ==
	    -VMM__ERROR_CODE__ERROR_CODE_QUOTA);
	/* Removed: the cgroup's applies again, and counts what a holds: a
	 * second session of the cgroup does not get a second quota. */
	set_quota(adm, VMM__QUOTA_KIND__QUOTA_KIND_NAME, "app-b", 0);
	meminfo(b, &f, &t);
	CHECK(t == 6 * U && f == 2 * U);
	CHECK(tc_acquire(b, 4 * U, 0, ch + 2, 6) ==
	    -VMM__ERROR_CODE__ERROR_CODE_QUOTA);
	CHECK((n = tc_acquire(b, 2 * U, 0, ch + 2, 6)) == 1);
	close(ch[2].fd);
	/* Given back: a closed session of a live process would keep its
	 * chunks quarantined, and they count. */
	CHECK(tc_release(a, &ch[0].id, 1) == 0);
	CHECK(tc_release(b, &ch[2].id, 1) == 0);
	tc_close(a);
	tc_close(b);

	/* A uid quota counts every session of the uid: six sessions asking
	 * 4 MiB each on an 8 MiB quota get 8 MiB between them. */
	set_quota(adm, VMM__QUOTA_KIND__QUOTA_KIND_CGROUP, cg, 0);
	{
		char uidkey[16];
		struct tc *s[6];
		uint64_t granted = 0;
		int i;

		snprintf(uidkey, sizeof(uidkey), "%u", (unsigned)getuid());
		set_quota(adm, VMM__QUOTA_KIND__QUOTA_KIND_UID, uidkey, 8 * U);
		for (i = 0; i < 6; i++) {
			char name[16];

			snprintf(name, sizeof(name), "app-%d", i);
			s[i] = tc_open(sockpath, name, false);
			if ((n = tc_acquire(s[i], 4 * U, 0, ch, 8)) > 0) {
				granted += ch[0].size;
				tc_close_chunks(ch, (size_t)n);
			} else
				CHECK(n == -VMM__ERROR_CODE__ERROR_CODE_QUOTA);
		}
		CHECK(granted == 8 * U);
		meminfo(s[5], &f, &t);
		CHECK(t == 8 * U && f == 0);
		for (i = 0; i < 6; i++)
			tc_close(s[i]);
		set_quota(adm, VMM__QUOTA_KIND__QUOTA_KIND_UID, uidkey, 0);
	}

	/* A name quota counts every session of that name (cooperative: a
	 * client chooses its name). */
	set_quota(adm, VMM__QUOTA_KIND__QUOTA_KIND_NAME, "twin", 4 * U);
	a = tc_open(sockpath, "twin", false);
	b = tc_open(sockpath, "twin", false);
	CHECK((n = tc_acquire(a, 4 * U, 0, ch, 8)) == 1);
	close(ch[0].fd);
	CHECK(tc_acquire(b, 2 * U, 0, ch, 8) ==
	    -VMM__ERROR_CODE__ERROR_CODE_QUOTA);
	tc_close(a);
	tc_close(b);
	tc_close(adm);
	CHECK(WIFEXITED(tc_stop_daemon(d)));
	return 0;
}
