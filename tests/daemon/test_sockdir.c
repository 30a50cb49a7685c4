/*
 * The socket directory: vmmd refuses one it cannot trust — group- or
 * world-writable (sticky or not), owned by another uid, or a symlink (with
 * or without a trailing slash) — with a non-zero exit and a message that
 * names it; the same under socket activation, where the directory is the
 * passed socket's.  It creates a missing one 0755 whatever its umask,
 * starts in a good one (root's, or its own uid's when not root), and leaves
 * nothing behind.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"
#include "unixsock.h"

#define OTHER_UID	1234
#define START_MS	30000	/* sanitizer builds start slowly */

static const char	*tmp;
static char		 conf[1100];

struct run {
	pid_t	pid;
	int	err;	/* read end of vmmd's stderr */
};

static void
path_of(char *out, size_t len, const char *sub)
{
	CHECK((size_t)snprintf(out, len, "%s/%s", tmp, sub) < len);
}

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(p) : unlink(p);
}

/* Removes what a previous run left under path. */
static void
rm_tree(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0)
		CHECK(nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0);
}

/* Starts vmmd on dir with uid (0: stay root) and umask mask; lfd >= 0 is
 * passed as a socket-activated socket. */
static void
spawn(struct run *r, const char *dir, uid_t uid, mode_t mask, int lfd)
{
	const char *bd = getenv("VMM_BUILD_DIR");
	char vmmd[4096], pid[32];
	int p[2];

	CHECK(bd != NULL);
	snprintf(vmmd, sizeof(vmmd), "%s/daemon/vmmd", bd);
	CHECK(pipe2(p, O_CLOEXEC) == 0);
	fflush(NULL);
	CHECK((r->pid = fork()) >= 0);
	if (r->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		unsetenv("LD_PRELOAD");
		if (dup2(p[1], 2) < 0)
			_exit(126);
		if (lfd >= 0) {
			if (dup2(lfd, 3) < 0 || fcntl(3, F_SETFD, 0) != 0)
				_exit(126);
			snprintf(pid, sizeof(pid), "%d", (int)getpid());
			setenv("LISTEN_FDS", "1", 1);
			setenv("LISTEN_PID", pid, 1);
		}
		if (uid != 0) {
			gid_t g = uid;

			tc_become(uid, g, &g, 1);
		}
		umask(mask);
		execl(vmmd, vmmd, "--foreground", "--socket-dir", dir,
		    "--config", conf, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	r->err = p[0];
}

/* Waits up to START_MS for vmmd to exit; returns its wait status, and its
 * stderr in out. */
static int
wait_exit(struct run *r, char *out, size_t len)
{
	size_t n = 0;
	ssize_t k;
	int st, i;

	for (i = 0; i < START_MS / 10; i++) {
		if (waitpid(r->pid, &st, WNOHANG) == r->pid)
			break;
		tc_sleep_ms(10);
	}
	if (i == START_MS / 10) {
		kill(r->pid, SIGKILL);
		CHECK(waitpid(r->pid, &st, 0) == r->pid);
		fprintf(stderr, "vmmd did not exit\n");
	}
	while (n + 1 < len && (k = read(r->err, out + n, len - n - 1)) > 0)
		n += (size_t)k;
	out[n] = '\0';
	close(r->err);
	return st;
}

/* vmmd must exit non-zero saying what is wrong with dir. */
static void
expect_refused(struct run *r, const char *dir, const char *what)
{
	char out[4096];
	int st = wait_exit(r, out, sizeof(out));

	if (!WIFEXITED(st) || WEXITSTATUS(st) == 0 ||
	    strstr(out, dir) == NULL || strstr(out, what) == NULL)
		fprintf(stderr, "%s: wait status 0x%x, stderr \"%s\"; want "
		    "\"%s\"\n", dir, st, out, what);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0);
	CHECK(strstr(out, dir) != NULL);
	CHECK(strstr(out, what) != NULL);
}

/* vmmd must answer Hello on name in dir; then SIGTERM, exit 0. */
static void
expect_serving(struct run *r, const char *dir, const char *name)
{
	char path[2048], out[4096];
	int fd = -1, i, st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	for (i = 0; i < START_MS / 10; i++) {
		if ((fd = tc_connect_raw(path)) >= 0)
			break;
		if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
			r->pid = -1;
			break;
		}
		tc_sleep_ms(10);
	}
	if (fd < 0) {
		if (r->pid > 0)
			kill(r->pid, SIGKILL);
		fprintf(stderr, "%s: vmmd does not answer\n", path);
	}
	CHECK(fd >= 0);
	close(fd);
	/* Answered: the loop runs, SIGTERM is handled. */
	tc_close(tc_open(path, "probe", true));
	CHECK(kill(r->pid, SIGTERM) == 0);
	st = wait_exit(r, out, sizeof(out));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, "vmmd: wait status 0x%x, stderr \"%s\"\n", st,
		    out);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Makes a directory with exactly this mode and owner. */
static void
make_dir(const char *dir, mode_t mode, uid_t uid)
{
	rm_tree(dir);
	CHECK(mkdir(dir, 0700) == 0);
	CHECK(chown(dir, uid, uid) == 0);
	CHECK(chmod(dir, mode) == 0);
}

/* Entries of dir (vmmd leaves none of its own behind). */
static int
entries(const char *dir)
{
	struct dirent *e;
	DIR *d;
	int n = 0;

	CHECK((d = opendir(dir)) != NULL);
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void
refuse_mode(const char *sub, mode_t mode, const char *what)
{
	struct run r;
	char dir[1024];

	path_of(dir, sizeof(dir), sub);
	make_dir(dir, mode, 0);
	spawn(&r, dir, 0, 022, -1);
	expect_refused(&r, dir, what);
	CHECK(entries(dir) == 0);
}

static void
test_refusals(void)
{
	char dir[1024], link[1024], slash[1100];
	struct run r;

	refuse_mode("world", 0777, "mode 0777");
	refuse_mode("group", 0775, "mode 0775");
	refuse_mode("sticky", 01777, "mode 1777");

	/* Another uid's directory, even 0755: it could swap the socket. */
	path_of(dir, sizeof(dir), "other");
	make_dir(dir, 0755, OTHER_UID);
	spawn(&r, dir, 0, 022, -1);
	expect_refused(&r, dir, "owned by uid 1234");
	CHECK(entries(dir) == 0);

	/* A symlink to a good directory, also written "link/". */
	path_of(dir, sizeof(dir), "target");
	make_dir(dir, 0755, 0);
	path_of(link, sizeof(link), "link");
	rm_tree(link);
	CHECK(symlink(dir, link) == 0);
	spawn(&r, link, 0, 022, -1);
	expect_refused(&r, link, "symbolic link");
	snprintf(slash, sizeof(slash), "%s/", link);
	spawn(&r, slash, 0, 022, -1);
	expect_refused(&r, link, "symbolic link");
	CHECK(entries(dir) == 0);
}

static void
test_starts(void)
{
	char dir[1024];
	struct stat st;
	struct run r;

	/* Missing: created 0755 even under umask 077 (clients must reach
	 * it), owned by vmmd. */
	path_of(dir, sizeof(dir), "missing");
	rm_tree(dir);
	spawn(&r, dir, 0, 077, -1);
	expect_serving(&r, dir, "gpu0.sock");
	CHECK(lstat(dir, &st) == 0 && S_ISDIR(st.st_mode));
	CHECK((st.st_mode & 07777) == 0755 && st.st_uid == 0);
	CHECK(entries(dir) == 0);

	/* Existing and good; the socket is 0660. */
	path_of(dir, sizeof(dir), "good");
	make_dir(dir, 0755, 0);
	spawn(&r, dir, 0, 022, -1);
	expect_serving(&r, dir, "gpu0.sock");
	CHECK(entries(dir) == 0);

	/* vmmd not root, in its own uid's directory. */
	path_of(dir, sizeof(dir), "own");
	make_dir(dir, 0700, OTHER_UID);
	spawn(&r, dir, OTHER_UID, 022, -1);
	expect_serving(&r, dir, "gpu0.sock");
	CHECK(entries(dir) == 0);
}

/* A listening socket at dir/gpu0.sock, as systemd would pass it. */
static int
listener(const char *dir)
{
	char p[2048];
	int fd;

	snprintf(p, sizeof(p), "%s/gpu0.sock", dir);
	CHECK((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	CHECK(vmm_unix_bind(fd, p) == 0);
	CHECK(listen(fd, 16) == 0);
	return fd;
}

static void
test_activation(void)
{
	char dir[1024], p[2048];
	struct stat st;
	struct run r;
	int lfd;

	/* The passed socket's directory is checked as well. */
	path_of(dir, sizeof(dir), "act-world");
	make_dir(dir, 0755, 0);
	lfd = listener(dir);
	CHECK(chmod(dir, 0777) == 0);
	spawn(&r, dir, 0, 022, lfd);
	expect_refused(&r, dir, "mode 0777");
	close(lfd);

	/* A good one: the UUID alias appears beside the passed socket and
	 * goes at exit; the socket, systemd's, stays. */
	path_of(dir, sizeof(dir), "act-good");
	make_dir(dir, 0755, 0);
	lfd = listener(dir);
	spawn(&r, dir, 0, 022, lfd);
	close(lfd);
	expect_serving(&r, dir, "gpu0.sock");
	snprintf(p, sizeof(p), "%s/gpu0.sock", dir);
	CHECK(lstat(p, &st) == 0 && S_ISSOCK(st.st_mode));
	CHECK(entries(dir) == 1);
}

int
main(void)
{
	CHECK((tmp = getenv("VMM_TEST_TMPDIR")) != NULL);
	path_of(conf, sizeof(conf), "vmmd.conf");
	{
		FILE *f = fopen(conf, "w");

		CHECK(f != NULL);
		CHECK(fputs("idle_timeout_ms = 0\n", f) >= 0);
		CHECK(fclose(f) == 0);
	}
	test_refusals();
	test_starts();
	test_activation();
	return 0;
}
