/*
 * sd_harness: run vmmd the way systemd runs it and check its side of the
 * contract, with a real NOTIFY_SOCKET listener (an AF_UNIX datagram socket with
 * SO_PASSCRED, as in systemd itself).
 *
 *   sd_harness notify   VMMD
 *	vmmd started directly, as vmmd@.service does: READY=1 arrives, and at that
 *	moment the socket accepts; STATUS= arrives; >= 2 WATCHDOG=1 in the first
 *	second (WATCHDOG_USEC=400000); SIGTERM gives STOPPING=1 and exit status 0
 *	within 5 s; the daemon removes its sockets on the way out.
 *   sd_harness activate VMMD SYSTEMD_SOCKET_ACTIVATE
 *	vmmd under `systemd-socket-activate -l DIR/gpu0.sock`, which execs it (same
 *	pid) with LISTEN_FDS=1 on the first connection: the same checks, plus the
 *	gpu-<uuid>.sock alias pointing at the activated socket, which the daemon
 *	must leave in place when it exits.
 *
 * Every notification must come from the daemon's own pid (NotifyAccess=main).
 * Exit status: 0 pass, 1 fail, 77 skip (a binary is missing).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_SKIP 77
#define READY_TIMEOUT_MS 8000	/* exec to READY=1, emulator start included */
#define BIND_TIMEOUT_MS 3000	/* systemd-socket-activate creating its socket */
#define WATCHDOG_USEC "400000"
#define WATCHDOG_WINDOW_MS 1000 /* after READY=1, at least MIN_WATCHDOGS pings */
#define MIN_WATCHDOGS 2
#define STATUS_TIMEOUT_MS 2000	/* after READY=1 */
#define STOP_TIMEOUT_MS 5000	/* SIGTERM to exit */
#define OVERALL_TIMEOUT_S 25	/* last resort: kill everything */
#define UUID_LEN 36		/* 8-4-4-4-12 */
#define ALIAS_NAME "gpu0.sock"

static pid_t child = -1;	/* the daemon (after the exec chain, same pid) */
static int child_status = -1;	/* wait status once reaped */
static int notify_fd = -1;
static char tmp_dir[PATH_MAX];	/* $VMM_TEST_TMPDIR */
static char sock_dir[PATH_MAX]; /* --socket-dir, short enough for sun_path */
static bool sock_dir_in_tmp;	/* sock_dir is a mkdtemp under /tmp: remove it */
static char log_path[PATH_MAX];
static char conf_path[PATH_MAX];
static char notify_path[PATH_MAX];
static char vmmd_path[PATH_MAX];

/* What the daemon told us. */
static struct {
	bool ready, stopping;
	long ready_ms;
	int watchdogs_in_window;	/* within WATCHDOG_WINDOW_MS of READY=1 */
	int watchdogs;
	char status[512];		/* the latest STATUS= */
} seen;

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
remove_sock_dir(void)
{
	DIR *d;
	struct dirent *de;
	char p[PATH_MAX + 256];

	if (sock_dir[0] == '\0' || (d = opendir(sock_dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", sock_dir, de->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(sock_dir);
}

/* Print the daemon's output (the tail of it) to explain a failure. */
static void
dump_log(void)
{
	char buf[8192];
	ssize_t n;
	off_t size;
	int fd = open(log_path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	lseek(fd, size > (off_t)sizeof(buf) ? size - (off_t)sizeof(buf) : 0, SEEK_SET);
	fprintf(stderr, "---- daemon output (%s) ----\n", log_path);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stderr);
	fprintf(stderr, "---- end of daemon output ----\n");
	close(fd);
}

static void kill_child(void);

__attribute__((format(printf, 1, 2), noreturn)) static void
fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "FAIL: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	kill_child();
	dump_log();
	if (sock_dir_in_tmp)
		remove_sock_dir();
	exit(1);
}

__attribute__((format(printf, 1, 2), noreturn)) static void
skip(const char *fmt, ...)
{
	va_list ap;

	printf("SKIP: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(EXIT_SKIP);
}

static void
kill_child(void)
{
	if (child > 0 && child_status == -1) {
		kill(child, SIGKILL);
		waitpid(child, &child_status, 0);
	}
}

/* The last resort if something hangs: never leave a daemon behind. */
static void
on_alarm(int sig)
{
	static const char msg[] = "FAIL: overall timeout, killing the daemon\n";

	(void)sig;
	if (child > 0)
		kill(child, SIGKILL);
	(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	_exit(1);
}

static void
describe_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "wait status 0x%x", status);
}

/* Returns true once the daemon has exited (and reaps it). */
static bool
child_exited(void)
{
	if (child_status != -1)
		return true;
	if (waitpid(child, &child_status, WNOHANG) == child)
		return true;
	child_status = -1;
	return false;
}

static void
require_alive(const char *waiting_for)
{
	char what[128];

	if (!child_exited())
		return;
	describe_status(child_status, what, sizeof(what));
	child = -1;
	fail("vmmd ended (%s) while waiting for %s", what, waiting_for);
}

static void
handle_line(const char *line)
{
	if (strcmp(line, "READY=1") == 0) {
		if (seen.ready)
			fail("READY=1 sent twice");
		seen.ready = true;
		seen.ready_ms = now_ms();
		printf("notify: READY=1\n");
	} else if (strcmp(line, "STOPPING=1") == 0) {
		seen.stopping = true;
		printf("notify: STOPPING=1\n");
	} else if (strcmp(line, "WATCHDOG=1") == 0) {
		seen.watchdogs++;
		if (seen.ready && now_ms() - seen.ready_ms <= WATCHDOG_WINDOW_MS)
			seen.watchdogs_in_window++;
	} else if (strncmp(line, "STATUS=", 7) == 0) {
		snprintf(seen.status, sizeof(seen.status), "%s", line + 7);
		printf("notify: %s\n", line);
	} else if (line[0] != '\0') {
		printf("notify: %s\n", line);
	}
}

/* Waits up to timeout_ms for one datagram and handles it; false on timeout. */
static bool
receive(int timeout_ms)
{
	char buf[4096];
	union {
		struct cmsghdr align;
		char space[CMSG_SPACE(sizeof(struct ucred))];
	} control;
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = &control, .msg_controllen = sizeof(control),
	};
	struct pollfd pfd = { .fd = notify_fd, .events = POLLIN };
	struct cmsghdr *c;
	struct ucred *cred = NULL;
	ssize_t n;
	char *line, *save = NULL;

	if (poll(&pfd, 1, timeout_ms < 0 ? 0 : timeout_ms) <= 0)
		return false;
	n = recvmsg(notify_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return false;
		fail("recvmsg on the notify socket: %s", strerror(errno));
	}
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		fail("notification truncated");
	for (c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS)
			cred = (struct ucred *)CMSG_DATA(c);
		else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			fail("notification carries file descriptors (FDSTORE is not expected)");
	}
	if (cred == NULL)
		fail("notification without sender credentials");
	if (cred->pid != child)
		fail("notification from pid %ld, not the daemon's pid %ld "
		     "(NotifyAccess=main would drop it)", (long)cred->pid, (long)child);
	buf[n] = '\0';
	for (line = strtok_r(buf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
		handle_line(line);
	return true;
}

/* Handles notifications until *flag is set or timeout_ms pass. */
static void
wait_for(const bool *flag, int timeout_ms, const char *what)
{
	long deadline = now_ms() + timeout_ms;

	while (!*flag) {
		long left = deadline - now_ms();

		require_alive(what);
		if (left <= 0)
			fail("no %s within %d ms", what, timeout_ms);
		receive(left < 50 ? (int)left : 50);
	}
}

static void
set_path(char *dst, const char *dir, const char *name)
{
	if ((size_t)snprintf(dst, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
		fail("path too long: %s/%s", dir, name);
}

/* A sockaddr_un for path; the path must fit (the caller checked). */
static socklen_t
sun_for(struct sockaddr_un *sa, const char *path)
{
	size_t len = strlen(path);

	if (len >= sizeof(sa->sun_path))
		fail("socket path too long: %s", path);
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, len + 1);
	return (socklen_t)sizeof(*sa);
}

static void
setup(const char *vmmd)
{
	struct sockaddr_un sa;
	char cmd[PATH_MAX + 16];
	const char *t = getenv("VMM_TEST_TMPDIR");
	int one = 1, fd;

	if (realpath(vmmd, vmmd_path) == NULL || access(vmmd_path, X_OK) != 0)
		skip("vmmd binary %s not built", vmmd);
	if (t == NULL || t[0] != '/')
		fail("VMM_TEST_TMPDIR must be set to an absolute path");
	snprintf(tmp_dir, sizeof(tmp_dir), "%s", t);
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", tmp_dir);
	if (strchr(tmp_dir, '\'') != NULL || system(cmd) != 0)
		fail("cannot create %s", tmp_dir);
	set_path(log_path, tmp_dir, "vmmd.log");
	set_path(conf_path, tmp_dir, "vmmd.conf");

	/* The daemon's socket path, gpu-<uuid>.sock, must fit in sun_path. */
	set_path(sock_dir, tmp_dir, "s");
	if (strlen(sock_dir) + sizeof("/gpu-.sock") + UUID_LEN > sizeof(sa.sun_path)) {
		snprintf(sock_dir, sizeof(sock_dir), "/tmp/vmmsd.XXXXXX");
		if (mkdtemp(sock_dir) == NULL)
			fail("mkdtemp: %s", strerror(errno));
		sock_dir_in_tmp = true;
		printf("note: %s/s is too long for socket paths, using %s\n", tmp_dir, sock_dir);
	} else {
		remove_sock_dir();	/* left over from an earlier run */
		if (mkdir(sock_dir, 0755) != 0)
			fail("mkdir %s: %s", sock_dir, strerror(errno));
	}

	/* An empty configuration: the host's /etc/vmmd/vmmd.conf must not matter. */
	if ((fd = open(conf_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
		fail("create %s: %s", conf_path, strerror(errno));
	close(fd);

	set_path(notify_path, sock_dir, "notify.sock");
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (notify_fd < 0 || bind(notify_fd, (struct sockaddr *)&sa, sun_for(&sa, notify_path)) != 0 ||
	    setsockopt(notify_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) != 0)
		fail("notify socket %s: %s", notify_path, strerror(errno));

	signal(SIGALRM, on_alarm);
	signal(SIGPIPE, SIG_IGN);
	alarm(OVERALL_TIMEOUT_S);
}

/* Forks and execs argv with the systemd service environment; stdout and stderr
 * go to the log.  WATCHDOG_PID is the child's own pid, which stays the daemon's
 * pid through systemd-socket-activate's exec. */
static void
spawn(char **argv)
{
	pid_t parent = getpid();
	int fd;

	fflush(NULL);
	child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child > 0)
		return;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDNAMES");
	setenv("NOTIFY_SOCKET", notify_path, 1);
	setenv("WATCHDOG_USEC", WATCHDOG_USEC, 1);
	char pid[32];
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	if ((fd = open("/dev/null", O_RDONLY)) >= 0) {
		dup2(fd, STDIN_FILENO);
		close(fd);
	}
	if ((fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644)) >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
	execv(argv[0], argv);
	fprintf(stderr, "sd_harness: exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

static int
connect_to(const char *path, int *err)
{
	struct sockaddr_un sa;
	socklen_t salen = sun_for(&sa, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, salen) != 0) {
		*err = errno;
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int
must_connect(const char *path, const char *when)
{
	int err = 0, fd = connect_to(path, &err);

	if (fd < 0)
		fail("connect(%s) %s: %s", path, when, strerror(err));
	return fd;
}

static bool
is_uuid_sock_name(const char *name)
{
	static const char shape[] = "gpu-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx.sock";
	size_t i;

	if (strlen(name) != sizeof(shape) - 1)
		return false;
	for (i = 0; shape[i] != '\0'; i++) {
		if (shape[i] == 'x') {
			if (!isxdigit((unsigned char)name[i]) || isupper((unsigned char)name[i]))
				return false;
		} else if (name[i] != shape[i]) {
			return false;
		}
	}
	return true;
}

/* The daemon's gpu-<uuid>.sock in sock_dir, into path; false if none. */
static bool
find_uuid_sock(char *path)
{
	DIR *d = opendir(sock_dir);
	struct dirent *de;
	int found = 0;

	if (d == NULL)
		fail("opendir %s: %s", sock_dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "gpu-", 4) != 0)
			continue;
		if (!is_uuid_sock_name(de->d_name))
			fail("%s/%s: not gpu-<8-4-4-4-12 lowercase hex>.sock", sock_dir, de->d_name);
		if (found++ == 0)
			set_path(path, sock_dir, de->d_name);
	}
	closedir(d);
	if (found > 1)
		fail("%d gpu-<uuid>.sock files in %s for one device", found, sock_dir);
	return found == 1;
}

/* At READY=1: gpu-<uuid>.sock and gpu0.sock are one socket; the real socket is
 * gpu-<uuid>.sock (mode 0660), or gpu0.sock when it was socket-activated. */
static void
check_socket_files(bool activated, char *uuid_path)
{
	char alias[PATH_MAX], target[PATH_MAX];
	struct stat real, link, st_alias;
	ssize_t n;
	const char *real_path, *link_path;

	set_path(alias, sock_dir, ALIAS_NAME);
	if (!find_uuid_sock(uuid_path))
		fail("no gpu-<uuid>.sock in %s at READY=1", sock_dir);
	real_path = activated ? alias : uuid_path;
	link_path = activated ? uuid_path : alias;
	if (lstat(real_path, &real) != 0 || !S_ISSOCK(real.st_mode))
		fail("%s is not a socket at READY=1", real_path);
	if (lstat(link_path, &link) != 0 || !S_ISLNK(link.st_mode))
		fail("%s is not a symlink at READY=1", link_path);
	if (stat(alias, &st_alias) != 0 || stat(uuid_path, &real) != 0)
		fail("dangling socket alias in %s: %s", sock_dir, strerror(errno));
	if (st_alias.st_dev != real.st_dev || st_alias.st_ino != real.st_ino)
		fail("%s and %s are different sockets", alias, uuid_path);
	/* An activated socket's mode is the socket unit's SocketMode=, not ours. */
	if (!activated && (real.st_mode & 07777) != 0660)
		fail("%s has mode %04o, want 0660", real_path, (unsigned)(real.st_mode & 07777));
	if ((n = readlink(link_path, target, sizeof(target) - 1)) > 0) {
		target[n] = '\0';
		printf("sockets: %s -> %s\n", link_path, target);
		if (target[0] == '/')
			printf("note: the alias target is absolute; a relative one would "
			       "survive bind-mounting the socket directory elsewhere\n");
	}
}

/* STATUS= is one line: "N clients, X MiB lent, Y MiB idle, Z MiB physical". */
static void
check_status_line(void)
{
	static const char shape[] = "^[0-9]+ clients?, [0-9]+ MiB lent, [0-9]+ MiB idle, "
				    "[0-9]+ MiB physical$";
	regex_t re;
	int rc;

	if (regcomp(&re, shape, REG_EXTENDED | REG_NOSUB) != 0)
		fail("regcomp");
	rc = regexec(&re, seen.status, 0, NULL, 0);
	regfree(&re);
	if (rc != 0)
		fail("STATUS=%s: not \"N clients, X MiB lent, Y MiB idle, Z MiB physical\"",
		     seen.status);
}

/* Watchdog pings in the first WATCHDOG_WINDOW_MS after READY=1. */
static void
check_running(void)
{
	long end = seen.ready_ms + WATCHDOG_WINDOW_MS;

	while (now_ms() < end) {
		require_alive("watchdog pings");
		receive((int)(end - now_ms()));
	}
	printf("watchdog: %d WATCHDOG=1 in the first %d ms after READY=1 (WATCHDOG_USEC=%s)\n",
	       seen.watchdogs_in_window, WATCHDOG_WINDOW_MS, WATCHDOG_USEC);
	if (seen.watchdogs_in_window < MIN_WATCHDOGS)
		fail("only %d WATCHDOG=1 within %d ms of READY=1 (WATCHDOG_USEC=%s), want >= %d",
		     seen.watchdogs_in_window, WATCHDOG_WINDOW_MS, WATCHDOG_USEC, MIN_WATCHDOGS);
}

/* A STATUS= line within STATUS_TIMEOUT_MS of READY=1, in the agreed shape. */
static void
wait_for_status(void)
{
	long deadline = seen.ready_ms + STATUS_TIMEOUT_MS;

	while (seen.status[0] == '\0') {
		require_alive("STATUS=");
		if (now_ms() >= deadline)
			fail("no STATUS= within %d ms of READY=1", STATUS_TIMEOUT_MS);
		receive(50);
	}
	check_status_line();
}

/* SIGTERM: STOPPING=1, then exit status 0, within STOP_TIMEOUT_MS. */
static void
check_stop(void)
{
	long start = now_ms(), deadline = start + STOP_TIMEOUT_MS;
	char what[128];

	if (seen.stopping)
		fail("STOPPING=1 before SIGTERM");
	if (kill(child, SIGTERM) != 0)
		fail("kill(SIGTERM): %s", strerror(errno));
	while (!child_exited()) {
		if (now_ms() >= deadline)
			fail("vmmd still running %d ms after SIGTERM", STOP_TIMEOUT_MS);
		receive(20);
	}
	while (receive(0))
		;			/* what it said before exiting */
	describe_status(child_status, what, sizeof(what));
	printf("stop: %s %ld ms after SIGTERM\n", what, now_ms() - start);
	child = -1;
	if (!seen.stopping)
		fail("no STOPPING=1 before exit");
	if (!WIFEXITED(child_status) || WEXITSTATUS(child_status) != 0)
		fail("SIGTERM ended vmmd with %s, want exit status 0", what);
}

static void
run_notify(void)
{
	char *argv[] = { vmmd_path, "--foreground", "--socket-dir", sock_dir, "--device", "0",
			 "--config", conf_path, "--log-level", "DEBUG", NULL };
	char alias[PATH_MAX], uuid_path[PATH_MAX];
	struct stat st;
	int c1, c2;

	set_path(alias, sock_dir, ALIAS_NAME);
	spawn(argv);
	wait_for(&seen.ready, READY_TIMEOUT_MS, "READY=1");
	c1 = must_connect(alias, "right after READY=1");	/* first, before anything else */
	check_socket_files(false, uuid_path);
	c2 = must_connect(uuid_path, "after READY=1");
	check_running();
	wait_for_status();
	check_stop();
	if (lstat(uuid_path, &st) == 0)
		fail("%s left behind after a clean exit", uuid_path);
	if (lstat(alias, &st) == 0)
		fail("%s left behind after a clean exit", alias);
	close(c1);
	close(c2);
}

static void
run_activate(const char *activate)
{
	extern char **environ;
	static const char *pass[] = { "LD_LIBRARY_PATH=", "LD_PRELOAD=", "CUEMU_", "VMM_",
				      "ASAN_OPTIONS=", "UBSAN_OPTIONS=", "LSAN_OPTIONS=",
				      "TSAN_OPTIONS=", NULL };
	char *argv[128];
	char alias[PATH_MAX], uuid_path[PATH_MAX], exe[PATH_MAX], proc[64];
	char notify_env[PATH_MAX + 32], wd_usec[64];
	struct stat st;
	long deadline;
	size_t n = 0;
	ssize_t len;
	int c1, c2;

	if (activate[0] == '\0' || access(activate, X_OK) != 0)
		skip("systemd-socket-activate not installed");
	set_path(alias, sock_dir, ALIAS_NAME);

	/* systemd-socket-activate passes on only PATH, TERM, HOME, USER and -E. */
	argv[n++] = (char *)activate;
	argv[n++] = "-l";
	argv[n++] = alias;
	snprintf(notify_env, sizeof(notify_env), "NOTIFY_SOCKET=%s", notify_path);
	argv[n++] = "-E";
	argv[n++] = notify_env;
	snprintf(wd_usec, sizeof(wd_usec), "WATCHDOG_USEC=%s", WATCHDOG_USEC);
	argv[n++] = "-E";
	argv[n++] = wd_usec;
	argv[n++] = "-E";
	argv[n++] = "WATCHDOG_PID";	/* the value set in spawn(): our pid */
	for (char **e = environ; *e != NULL && n < 100; e++)
		for (const char **p = pass; *p != NULL; p++)
			if (strncmp(*e, *p, strlen(*p)) == 0) {
				argv[n++] = "-E";
				argv[n++] = *e;
				break;
			}
	argv[n++] = vmmd_path;
	argv[n++] = "--foreground";
	argv[n++] = "--socket-dir";
	argv[n++] = sock_dir;
	argv[n++] = "--device";
	argv[n++] = "0";
	argv[n++] = "--config";
	argv[n++] = conf_path;
	argv[n++] = "--log-level";
	argv[n++] = "DEBUG";
	argv[n] = NULL;
	spawn(argv);

	/* systemd-socket-activate binds, then execs vmmd on the first connection. */
	deadline = now_ms() + BIND_TIMEOUT_MS;
	while (lstat(alias, &st) != 0 || !S_ISSOCK(st.st_mode)) {
		require_alive("systemd-socket-activate to listen");
		if (now_ms() >= deadline)
			fail("systemd-socket-activate created no %s within %d ms", alias,
			     BIND_TIMEOUT_MS);
		receive(10);
	}
	if (seen.ready)
		fail("READY=1 before the first connection");
	c1 = must_connect(alias, "to trigger activation");
	wait_for(&seen.ready, READY_TIMEOUT_MS, "READY=1 after activation");

	snprintf(proc, sizeof(proc), "/proc/%ld/exe", (long)child);
	if ((len = readlink(proc, exe, sizeof(exe) - 1)) < 0)
		fail("readlink %s: %s", proc, strerror(errno));
	exe[len] = '\0';
	if (strcmp(exe, vmmd_path) != 0)
		fail("pid %ld runs %s, not %s", (long)child, exe, vmmd_path);
	check_socket_files(true, uuid_path);
	c2 = must_connect(uuid_path, "through the alias after READY=1");
	check_running();
	wait_for_status();
	check_stop();
	if (lstat(alias, &st) != 0 || !S_ISSOCK(st.st_mode))
		fail("vmmd removed the socket-activated %s; it belongs to systemd", alias);
	close(c1);
	close(c2);
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && strcmp(argv[1], "notify") == 0) {
		setup(argv[2]);
		run_notify();
	} else if (argc == 4 && strcmp(argv[1], "activate") == 0) {
		setup(argv[2]);
		run_activate(argv[3]);
	} else {
		fprintf(stderr, "usage: sd_harness notify VMMD\n"
				"       sd_harness activate VMMD SYSTEMD_SOCKET_ACTIVATE\n");
		return 2;
	}
	if (sock_dir_in_tmp)
		remove_sock_dir();
	printf("PASS\n");
	return 0;
}
