/*
 * vmmd on SIGTERM: every connected client (one holding a chunk, one idle,
 * one not yet past its Hello) is told Goodbye(SHUTDOWN) and then sees EOF;
 * a session quarantined by a live process does not hold the exit up; the
 * daemon exits 0 (under ASan: without leaks) and removes its socket and the
 * gpu0.sock alias.
 */
#include <cuda.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

/* The next frame is Goodbye(SHUTDOWN), then the connection ends. */
static void
expect_goodbye(struct vmm_sess *s)
{
	struct vmm_frame_msg *m = NULL;
	const Vmm__Envelope *e;
	int rc;

	rc = vmm_sess_recv(s, &m, 5000);
	if (rc != 1)
		fprintf(stderr, "goodbye: %s\n", rc == 0 ? "EOF" :
		    vmm_frame_strerror(rc));
	CHECK(rc == 1);
	e = vmm_frame_msg_env(m);
	CHECK(e->msg_case == VMM__ENVELOPE__MSG_GOODBYE);
	CHECK(e->goodbye->reason == VMM__GOODBYE_REASON__GOODBYE_REASON_SHUTDOWN);
	vmm_frame_msg_free(m);
	rc = vmm_sess_recv(s, &m, 5000);
	CHECK(rc == 0 || rc == -ECONNRESET);
}

int
main(void)
{
	const char *tmp = getenv("VMM_TEST_TMPDIR");
	char dir[1024], sock[1100], uuidsock[1400], target[256];
	struct vmm_sess *raw;
	struct tc_chunk ch, q;
	struct tc *a, *b, *c;
	struct stat st;
	ssize_t n;
	pid_t d;
	int st_code;

	CHECK(tmp != NULL);
	snprintf(dir, sizeof(dir), "%s/sock", tmp);
	tc_socket_path(dir, sock, sizeof(sock));
	d = tc_start_daemon(dir, "", NULL);

	/* Both names exist: the alias points at the UUID socket. */
	CHECK((n = readlink(sock, target, sizeof(target) - 1)) > 0);
	target[n] = '\0';
	CHECK(strncmp(target, "gpu-", 4) == 0);
	snprintf(uuidsock, sizeof(uuidsock), "%s/%s", dir, target);
	CHECK(lstat(uuidsock, &st) == 0 && S_ISSOCK(st.st_mode));

	a = tc_open(sock, "holder", false);
	b = tc_open(sock, "idle", false);
	CHECK(tc_acquire(a, a->granularity, 0, &ch, 1) == 1);
	/* A session that hung up holding a chunk: quarantined (we live). */
	c = tc_open(sock, "quarantined", false);
	CHECK(tc_acquire(c, c->granularity, 0, &q, 1) == 1);
	tc_close(c);
	CHECK(vmm_sess_connect(&raw, sock, 5000) == 0);	/* no Hello */
	tc_sleep_ms(100);

	CHECK(kill(d, SIGTERM) == 0);
	expect_goodbye(a->s);
	expect_goodbye(b->s);
	expect_goodbye(raw);
	CHECK(waitpid(d, &st_code, 0) == d);
	if (!WIFEXITED(st_code) || WEXITSTATUS(st_code) != 0)
		fprintf(stderr, "vmmd status 0x%x\n", st_code);
	CHECK(WIFEXITED(st_code) && WEXITSTATUS(st_code) == 0);

	CHECK(lstat(sock, &st) != 0 && errno == ENOENT);
	CHECK(lstat(uuidsock, &st) != 0 && errno == ENOENT);
	CHECK(tc_connect_raw(sock) < 0);

	close(ch.fd);
	close(q.fd);
	vmm_sess_close(raw);
	tc_close(a);
	tc_close(b);
	return 0;
}
