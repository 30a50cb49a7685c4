/*
 * Quota keys: a uid is 0 to 4294967294 in decimal digits, in the config
 * file (vmmd refuses to start, naming the key) and in SetQuota (Error
 * INVALID; an empty key never passes the frame module); leading zeros
 * name the same uid.  100,000 quota keys load
 * within the start-up bound (they used to take quadratic time) and each
 * kind is still found among them.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define MiB		(1ull << 20)
#define NKEYS		100000	/* quota keys of the big config */
#define EXIT_MS		20000	/* sanitizer builds start slowly */
#define LOAD_MS		8000	/* bound on a start with NKEYS quotas */

static const char	*tmp;

/* Runs vmmd on a config file holding text; it must exit non-zero naming
 * want on stderr. */
static void
expect_config_refused(const char *text, const char *want)
{
	const char *bd = getenv("VMM_BUILD_DIR");
	char vmmd[4096], conf[1100], dir[1100], out[4096];
	size_t n = 0;
	ssize_t k;
	FILE *f;
	int p[2], st, i;
	pid_t pid;

	CHECK(bd != NULL);
	snprintf(vmmd, sizeof(vmmd), "%s/daemon/vmmd", bd);
	snprintf(conf, sizeof(conf), "%s/bad.conf", tmp);
	snprintf(dir, sizeof(dir), "%s/bad", tmp);
	CHECK((f = fopen(conf, "w")) != NULL);
	CHECK(fputs(text, f) >= 0 && fclose(f) == 0);
	CHECK(pipe2(p, O_CLOEXEC) == 0);
	fflush(NULL);
	CHECK((pid = fork()) >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		unsetenv("LD_PRELOAD");
		if (dup2(p[1], 2) < 0)
			_exit(126);
		execl(vmmd, vmmd, "--foreground", "--socket-dir", dir,
		    "--config", conf, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	for (i = 0; i < EXIT_MS / 10; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
		tc_sleep_ms(10);
	}
	if (i == EXIT_MS / 10) {
		kill(pid, SIGKILL);
		CHECK(waitpid(pid, &st, 0) == pid);
	}
	while (n + 1 < sizeof(out) &&
	    (k = read(p[0], out + n, sizeof(out) - n - 1)) > 0)
		n += (size_t)k;
	out[n] = '\0';
	close(p[0]);
	if (!WIFEXITED(st) || WEXITSTATUS(st) == 0 || strstr(out, want) == NULL)
		fprintf(stderr, "config \"%s\": wait status 0x%x, stderr \"%s\"; "
		    "want \"%s\"\n", text, st, out, want);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0);
	CHECK(strstr(out, want) != NULL);
}

static void
test_config_keys(void)
{
	static const char *const bad[] = {
		"quota.uid.-1", "quota.uid.", "quota.uid.+5", "quota.uid. 5",
		"quota.uid.5x", "quota.uid.0x10", "quota.uid.4294967295",
		"quota.uid.4294967296", "quota.uid.18446744073709551617",
		"quota.uid.99999999999999999999999",
	};
	char text[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "idle_timeout_ms = 0\n%s = 1G\n",
		    bad[i]);
		expect_config_refused(text, bad[i]);
	}
	expect_config_refused("quota.name. = 1G\n", "quota.name.");
}

/* The client's view: MemInfo's total. */
static uint64_t
mem_total(struct tc *c)
{
	Vmm__Envelope env;
	Vmm__MemInfoRequest r = VMM__MEM_INFO_REQUEST__INIT;
	struct vmm_frame_msg *m;
	uint64_t t;

	r.request_id = tc_rid(c);
	env = vmm_frame_env_mem_info_request(&r);
	m = tc_call_expect(c, &env, VMM__ENVELOPE__MSG_MEM_INFO_REPLY);
	t = vmm_frame_msg_env(m)->mem_info_reply->total_bytes;
	vmm_frame_msg_free(m);
	return t;
}

/* SetQuota; returns 0 for an Ack, else the Error's code. */
static int
set_quota(struct tc *adm, Vmm__QuotaKind kind, const char *key,
    uint64_t bytes)
{
	Vmm__Envelope env;
	Vmm__SetQuota q = VMM__SET_QUOTA__INIT;
	const Vmm__Envelope *r;
	struct vmm_frame_msg *m;
	int code = 0;

	q.request_id = tc_rid(adm);
	q.kind = kind;
	q.key = (char *)key;
	q.bytes = bytes;
	env = vmm_frame_env_set_quota(&q);
	CHECK((m = tc_call(adm, &env, NULL, 0)) != NULL);
	r = vmm_frame_msg_env(m);
	if (r->msg_case == VMM__ENVELOPE__MSG_ERROR) {
		CHECK(r->error->request_id == q.request_id);
		code = (int)r->error->code;
	} else
		CHECK(r->msg_case == VMM__ENVELOPE__MSG_ACK);
	vmm_frame_msg_free(m);
	return code;
}

/* NKEYS quotas of every kind; root's uid written "000"; a name set twice
 * (the second wins). */
static char *
big_config(void)
{
	size_t cap = (size_t)NKEYS * 48 + 256, n = 0;
	char *s;
	int i;

	CHECK((s = malloc(cap)) != NULL);
	n += (size_t)snprintf(s + n, cap - n, "idle_timeout_ms = 0\n");
	for (i = 0; i < NKEYS; i++) {
		if (i % 5 < 3)
			n += (size_t)snprintf(s + n, cap - n,
			    "quota.uid.%d = 1G\n", 1000 + i);
		else if (i % 5 == 3)
			n += (size_t)snprintf(s + n, cap - n,
			    "quota.name.app-%d = 1G\n", i);
		else
			n += (size_t)snprintf(s + n, cap - n,
			    "quota.cgroup./t/%d = 1G\n", i);
		CHECK(n < cap);
	}
	n += (size_t)snprintf(s + n, cap - n, "quota.uid.000 = 6M\n"
	    "quota.name.app-3 = 2M\n");
	CHECK(n < cap);
	return s;
}

static void
test_setquota_keys(struct tc *adm)
{
	static const char *const bad[] = {
		"-1", "+5", " 5", "5x", "4294967295", "4294967296",
		"9999999999", "18446744073709551617",
	};
	const int invalid = VMM__ERROR_CODE__ERROR_CODE_INVALID;
	const Vmm__QuotaKind uid = VMM__QUOTA_KIND__QUOTA_KIND_UID;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (set_quota(adm, uid, bad[i], 1 << 30) != invalid)
			fprintf(stderr, "SetQuota uid \"%s\" taken\n", bad[i]);
		CHECK(set_quota(adm, uid, bad[i], 1 << 30) == invalid);
	}
	CHECK(set_quota(adm, uid, "4294967294", 1 << 30) == 0);
	CHECK(set_quota(adm, uid, "4294967294", 0) == 0);
}

int
main(void)
{
	char sockpath[1100];
	struct tc *adm, *a, *b;
	uint64_t t0, ms, dev;
	char *conf;
	pid_t d;

	CHECK((tmp = getenv("VMM_TEST_TMPDIR")) != NULL);
	test_config_keys();

	conf = big_config();
	t0 = vmm_now_ms();
	d = tc_start_in("big", conf, sockpath, sizeof(sockpath), &adm);
	ms = vmm_now_ms() - t0;
	free(conf);
	if (ms > LOAD_MS)
		fprintf(stderr, "%d quotas: started in %llu ms\n", NKEYS,
		    (unsigned long long)ms);
	CHECK(ms <= LOAD_MS);

	/* Found among them: root's ("000" is uid 0), the name's second. */
	a = tc_open(sockpath, "app-1", false);
	CHECK(mem_total(a) == 6 * MiB);
	b = tc_open(sockpath, "app-3", false);
	CHECK(mem_total(b) == 2 * MiB);
	test_setquota_keys(adm);
	/* "00" is root's uid too: removed, the GPU is a's limit. */
	CHECK(set_quota(adm, VMM__QUOTA_KIND__QUOTA_KIND_UID, "00", 0) == 0);
	dev = mem_total(a);
	CHECK(dev > 6 * MiB);
	CHECK(mem_total(b) == 2 * MiB);
	CHECK(set_quota(adm, VMM__QUOTA_KIND__QUOTA_KIND_NAME, "app-3", 0) ==
	    0);
	CHECK(mem_total(b) == dev);
	tc_close(a);
	tc_close(b);
	tc_stop_with(d, adm);
	return 0;
}
