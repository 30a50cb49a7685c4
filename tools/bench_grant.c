/*
 * bench_grant — what one vmmd grant costs next to the fd-passing round trip
 * it is built on (issue 3, "Benchmark").  In one run:
 *
 *  (a) raw:   two processes on a Unix stream socket; a small request, a
 *             small reply carrying one fd (a dup of a memfd) with SCM_RIGHTS,
 *             the fd closed by the receiver;
 *  (b) grant: Acquire of one granule (served from the pool after warm-up)
 *             and its Release, through a real vmmd on the emulator, by a
 *             client speaking proto/frame.h, the fd received and closed.
 *             The Release goes as libvmm_client sends it: flagged
 *             RELEASE_FLAG_NO_REPLY and not awaited (a refusal would come
 *             as an Error before the next Acquire's reply, and fail the
 *             run).  (b') is the Release without the flag, its reply
 *             awaited: two full round trips;
 *  (c) rate:  Acquire+Release pairs per second with 1, 4 and 16 client
 *             processes, one session each, for a fixed duration.
 *
 * (a), (b) and (b') alternate, BENCH_ROUND of each in turn, so the ratio
 * compares the same moments of the machine's load, and run with the same
 * CPU placement for both peers (--placement): the client, the raw server
 * and vmmd on one CPU by default.  A grant median below the raw one is
 * impossible and fails the run.
 *
 * p50/p99 of (a) and (b), the ratio b/a (issue target: p50 <= 2.0) and the
 * rates go to stdout (a table, or --json); progress goes to stderr.
 *
 * --busy measures instead what slow driver work in vmmd does to others
 * (issue 10 B.7): the p50/p99 of a pooled grant+release pair with vmmd
 * otherwise idle, then while another client makes vmmd create 1 GiB chunks
 * over and over (acquire 4 x 1 GiB, release them, an admin trim destroys
 * them, again), with the emulator's a100 latency profile (a 1 GiB create
 * costs about 100 ms there).  Target: busy p99 within 2x of idle.
 *
 * The benchmark starts its own vmmd in the foreground: a temp socket dir
 * under /tmp, its own CUEMU_INSTANCE, idle_timeout_ms = 0 so released
 * chunks stay pooled, and the emulator first on the daemon's
 * LD_LIBRARY_PATH.  This process never touches CUDA: it only receives fds.
 * Every exit path (signals included) stops the daemon and the children and
 * removes what the run created.
 */
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <dirent.h>
#include <sched.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "session.h"

#define BENCH_NAME		"bench_grant"
#define BENCH_DEF_ITERATIONS	10000
#define BENCH_DEF_DURATION	2.0		/* seconds per rate run */
#define BENCH_MAX_ITERATIONS	100000000
#define BENCH_MAX_DURATION	3600.0
#define BENCH_RATE_MAXPROCS	16
#define BENCH_RATE_WARMUP	10		/* pairs per worker before "go" */
#define BENCH_IO_TIMEOUT_MS	10000		/* any one reply */
#define BENCH_START_TIMEOUT_MS	10000		/* vmmd until its socket accepts */
#define BENCH_STOP_TIMEOUT_MS	5000		/* vmmd after SIGTERM */
#define BENCH_SCALE_MAX		8		/* --scale stages */
#define BENCH_SCALE_CLIENTS	1000		/* the crowd of --scale */
#define BENCH_SCALE_STATS	21		/* stats reads a --scale stage */
#define BENCH_SCALE_WINDOW	5000		/* pairs per CPU window */
#define BENCH_SCALE_MAX_WINDOWS	1024
#define BENCH_SCALE_SIZES	8		/* idle chunks are 1..8 granules */
#define BENCH_SCALE_BIG		16		/* the measured grant, granules */
#define BENCH_SCALE_MAX_IDLE	1000000
#define BENCH_SCALE_MEM_MB	"1048576"	/* the emulated device: 1 TiB */
/* --scale's granule: 10^6 chunks of 1..8 of them fit in the 1 TiB device
 * (about 0.55 TiB), and vmmd's size bins (one per unit of the device)
 * stay 8 M. */
#define BENCH_SCALE_GRAN_KB	"128"
#define BENCH_SCALE_COLD	9		/* cold creates a stage */
#define BENCH_SCALE_QUIET_MS	3000		/* vmmd left alone a stage */
/* Another tenant (uid BENCH_SCALE_OTHER_UID) pools min(N, this) idle
 * chunks of BENCH_SCALE_SIZES sizes from BENCH_SCALE_OTHER_BASE + 8 x the
 * stage granules; this tenant then asks for BENCH_SCALE_OTHER_ASKS chunks
 * of those sizes, which it may not take (cross_tenant = recreate). */
#define BENCH_SCALE_OTHER_MAX	100000
#define BENCH_SCALE_OTHER_BASE	17
#define BENCH_SCALE_OTHER_ASKS	64
#define BENCH_SCALE_OTHER_UID	65534
/* Sessions opened and closed, holding nothing, a --scale stage: each end
 * marks what the session gave back as orphans. */
#define BENCH_SCALE_ENDS	500
/* A cold create's size, granules: more than max_pieces (64) of the
 * largest idle chunks (BENCH_SCALE_SIZES) can stitch, distinct per stage
 * and create (sizes grow, so none fits an earlier one). */
#define BENCH_SCALE_COLD_BASE	1024
#define BENCH_ROUND		100		/* of each kind, in turn */
#define BENCH_RAW_REQ		16		/* bytes, about an Acquire frame */
#define BENCH_RAW_REPLY		32		/* bytes, about a Grant frame */
#define BENCH_RAW_MEMFD		(2u << 20)	/* one emulated granule */
#define BENCH_MAX_PATHS		8		/* files vmmd makes in the dir */
#define BENCH_SHM_DEVICES	16		/* cuemu's CUEMU_DEVICES maximum */
#define BENCH_BUSY_BIG		((uint64_t)1 << 30)	/* --busy creates */
#define BENCH_BUSY_HELD		4		/* big chunks per cycle */
#define BENCH_BUSY_MEM_MB	"65536"		/* the emulated device */
#define BENCH_BUSY_MAX		1000000		/* samples per phase */

static const int bench_rate_procs[] = { 1, 4, BENCH_RATE_MAXPROCS };
#define BENCH_NRATES	(sizeof(bench_rate_procs) / sizeof(bench_rate_procs[0]))

/*
 * What the exit paths must undo.  The signal handler reads it, so paths are
 * fixed buffers filled before the thing they name exists, and pids are
 * recorded with signals blocked (bench_fork).
 */
static char		b_dir[64];		/* temp dir; "" until made */
static char		b_conf[128], b_log[128];
static char		b_paths[BENCH_MAX_PATHS][PATH_MAX];	/* vmmd's files */
static volatile int	b_npaths;
static char		b_shm[BENCH_SHM_DEVICES][128];	/* cuemu's state files */
static char		b_instance[64];
static bool		b_keep_log;
static volatile pid_t	b_daemon = -1;
static volatile pid_t	b_kids[BENCH_RATE_MAXPROCS + 1];
static volatile int	b_nkids;

struct bench_opts {
	long		iterations;
	double		duration;
	const char	*vmmd;
	bool		json;
	long		scale[BENCH_SCALE_MAX];	/* --scale: idle chunk counts */
	size_t		nscale;
	bool		busy;		/* --busy */
	enum bench_place {
		PLACE_SAME,	/* client, raw server, vmmd: one CPU */
		PLACE_SPLIT,	/* client on one, raw server and vmmd another */
		PLACE_FREE	/* as the scheduler likes */
	}		place;
};

static const char *const bench_place_names[] = { "same", "split", "free" };

/* CPUs of (a)/(b) (--placement), picked from the allowed set at start. */
static cpu_set_t	b_cpus_all;
static int		b_cpu_client = -1, b_cpu_peer = -1;

struct bench_pct {
	double		p50_us, p99_us;
};

struct bench_rate {
	int		procs;
	uint64_t	pairs;
	double		seconds;
	double		per_sec;
};

/* Filled by the rate workers; shared across fork(). */
struct rate_shared {
	uint64_t	deadline_ns;
	struct {
		uint64_t	pairs;
		uint64_t	end_ns;
	} w[BENCH_RATE_MAXPROCS];
};

struct bench_client {
	struct vmm_sess		*s;
	uint64_t		 granularity;
	uint64_t		 pair_bytes;	/* bc_pair's Acquire; 0: a granule */
	const char		*stray;		/* a frame not expected */
};

static void	bench_warn(const char *fmt, ...)
		    __attribute__((format(printf, 1, 2)));

/* One diagnostic line on stderr. */
static void
bench_warn(const char *fmt, ...)
{
	va_list ap;

	fputs(BENCH_NAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* ---- processes and cleanup ------------------------------------------------ */

/* Stops vmmd: SIGTERM, then SIGKILL after the timeout.  0 if it exited 0. */
static int
daemon_stop(void)
{
	pid_t pid = b_daemon;
	int st = 0, waited;

	if (pid <= 0)
		return 0;
	kill(pid, SIGTERM);
	for (waited = 0; waited < BENCH_STOP_TIMEOUT_MS; waited += 10) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
		sleep_ms(10);
	}
	if (waited >= BENCH_STOP_TIMEOUT_MS) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		st = -1;
	}
	b_daemon = -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/*
 * Kills the children, stops vmmd and removes every file the run made.
 * Async-signal-safe (kill, waitpid, nanosleep, unlink, rmdir only): the
 * signal handler runs it too.  Returns daemon_stop()'s verdict.
 */
static int
bench_cleanup(void)
{
	int i, rc;

	for (i = 0; i < b_nkids; i++) {
		if (b_kids[i] > 0) {
			kill(b_kids[i], SIGKILL);
			waitpid(b_kids[i], NULL, 0);
			b_kids[i] = -1;
		}
	}
	b_nkids = 0;
	rc = daemon_stop();
	for (i = 0; i < b_npaths; i++)
		unlink(b_paths[i]);
	b_npaths = 0;
	for (i = 0; i < BENCH_SHM_DEVICES; i++)
		if (b_shm[i][0] != '\0')
			unlink(b_shm[i]);
	if (b_dir[0] != '\0') {
		unlink(b_conf);
		if (!b_keep_log) {
			unlink(b_log);
			rmdir(b_dir);
		}
		b_dir[0] = '\0';
	}
	return rc;
}

/* SIGINT/SIGTERM/SIGHUP: clean up, then die of the same signal. */
static void
bench_on_signal(int sig)
{
	static const char msg[] = BENCH_NAME ": interrupted, stopping vmmd\n";

	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* nothing to do */
	}
	bench_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* fork() with the child's pid recorded for cleanup.  The child gets default
 * signal handling and dies with this process. */
static pid_t
bench_fork(bool is_daemon)
{
	sigset_t all, old;
	pid_t parent = getpid(), pid;

	fflush(NULL);
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		sigprocmask(SIG_SETMASK, &old, NULL);
		return 0;
	}
	if (pid > 0) {
		if (is_daemon)
			b_daemon = pid;
		else
			b_kids[b_nkids++] = pid;
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	return pid;
}

/* Waits for a child of ours and forgets it; its exit status or -1. */
static int
bench_reap(pid_t pid)
{
	sigset_t all, old;
	int i, st;

	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	for (i = 0; i < b_nkids; i++) {
		if (b_kids[i] == pid) {
			b_kids[i] = b_kids[b_nkids - 1];
			b_nkids--;
			break;
		}
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

/* ---- statistics ------------------------------------------------------------ */

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile p (0..100) of n sorted samples, in microseconds. */
static double
pct_us(const uint64_t *s, size_t n, unsigned p)
{
	size_t rank = ((size_t)p * n + 99) / 100;

	if (rank == 0)
		rank = 1;
	return (double)s[rank - 1] / 1000.0;
}

static struct bench_pct
summarize(uint64_t *s, size_t n)
{
	struct bench_pct r;

	qsort(s, n, sizeof(*s), cmp_u64);
	r.p50_us = pct_us(s, n, 50);
	r.p99_us = pct_us(s, n, 99);
	return r;
}

/* ---- (a) raw fd round trip ------------------------------------------------- */

/* Reads exactly len bytes; 0 on EOF before any, -1 on error or short EOF. */
static ssize_t
read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = recv(fd, (char *)buf + got, len - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 && got == 0 ? 0 : -1;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Sends len bytes with fd attached to the first byte; 0 or -1. */
static int
send_with_fd(int sock, const void *buf, size_t len, int fd)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec iov = { (void *)buf, len };
	struct msghdr mh = { 0 };
	struct cmsghdr *c;

	memset(&cm, 0, sizeof(cm));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(sock, &mh, MSG_NOSIGNAL) != (ssize_t)len)
		return -1;
	return 0;
}

/* Receives a len-byte reply and the one fd on it; the fd or -1. */
static int
recv_with_fd(int sock, void *buf, size_t len)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec iov = { buf, len };
	struct msghdr mh = { 0 };
	struct cmsghdr *c;
	ssize_t n;
	int fd = -1;

	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	while ((n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	if (n <= 0)
		return -1;
	c = CMSG_FIRSTHDR(&mh);
	if (c != NULL && c->cmsg_level == SOL_SOCKET &&
	    c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	if ((mh.msg_flags & MSG_CTRUNC) != 0 || fd < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if ((size_t)n < len &&
	    read_full(sock, (char *)buf + n, len - (size_t)n) <= 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ---- CPU placement of (a) and (b) ----------------------------------------------

 * Where the peers run decides what a round trip costs: on this kind of
 * machine a wake-up on another CPU costs about three times one on the same
 * (raw p50 33 vs 12 us), and left to the scheduler the raw server and vmmd
 * could land differently, the ratio then saying where they ran, not what a
 * grant costs (it read 0.97 that way).  So both peers get the same
 * placement: all on one CPU (same, the default), or the client on one and
 * both peers on another (split). */

/* Picks the CPUs for o->place from the allowed set; 0, or -1 if split has
 * fewer than two. */
static int
place_pick(const struct bench_opts *o)
{
	int i;

	if (sched_getaffinity(0, sizeof(b_cpus_all), &b_cpus_all) != 0) {
		bench_warn("sched_getaffinity: %s", strerror(errno));
		return -1;
	}
	for (i = 0; i < CPU_SETSIZE; i++) {
		if (!CPU_ISSET(i, &b_cpus_all))
			continue;
		if (b_cpu_client < 0)
			b_cpu_client = i;
		else if (b_cpu_peer < 0)
			b_cpu_peer = i;
	}
	if (o->place == PLACE_SAME)
		b_cpu_peer = b_cpu_client;
	if (o->place == PLACE_SPLIT && b_cpu_peer < 0) {
		bench_warn("--placement split needs two CPUs; this process may "
		    "use one");
		return -1;
	}
	return 0;
}

/* Moves every thread of pid (0: this process) to cpu, or back to every
 * allowed CPU if cpu < 0; 0 or -1. */
static int
place_set(pid_t pid, int cpu)
{
	char path[64];
	cpu_set_t set;
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (cpu < 0)
		set = b_cpus_all;
	else {
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
	}
	snprintf(path, sizeof(path), "/proc/%d/task", pid != 0 ? (int)pid :
	    (int)getpid());
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (sched_setaffinity((pid_t)atoi(de->d_name), sizeof(set),
		    &set) != 0 && errno != ESRCH)
			rc = -1;
	}
	closedir(d);
	return rc;
}

/* The server of (a): each request is answered with a dup of one memfd,
 * exported fresh and closed after sending, as vmmd does per grant. */
static void __attribute__((noreturn))
raw_server(int sock)
{
	char req[BENCH_RAW_REQ], rep[BENCH_RAW_REPLY] = "grant";
	ssize_t n;
	int mfd, fd;

	mfd = memfd_create(BENCH_NAME, MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, BENCH_RAW_MEMFD) != 0)
		_exit(1);
	for (;;) {
		if ((n = read_full(sock, req, sizeof(req))) == 0)
			_exit(0);
		if (n < 0 || (fd = fcntl(mfd, F_DUPFD_CLOEXEC, 0)) < 0)
			_exit(1);
		if (send_with_fd(sock, rep, sizeof(rep), fd) != 0)
			_exit(1);
		close(fd);
	}
}

/* The client end of (a): a socket to a forked raw_server. */
struct raw_peer {
	int	sock;
	pid_t	pid;
};

/* Starts the server of (a); 0 or -1. */
static int
raw_open(struct raw_peer *r)
{
	struct timeval tv = { BENCH_IO_TIMEOUT_MS / 1000, 0 };
	int sv[2];

	r->sock = -1;
	r->pid = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		bench_warn("socketpair: %s", strerror(errno));
		return -1;
	}
	if ((r->pid = bench_fork(false)) < 0) {
		bench_warn("fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (r->pid == 0) {
		close(sv[0]);
		if (b_cpu_peer >= 0 && place_set(0, b_cpu_peer) != 0)
			_exit(1);
		raw_server(sv[1]);
	}
	close(sv[1]);
	setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	r->sock = sv[0];
	return 0;
}

/* Stops the server of (a); 0, or -1 if it failed. */
static int
raw_close(struct raw_peer *r)
{
	int rc = 0;

	if (r->sock >= 0)
		close(r->sock);
	if (r->pid > 0 && bench_reap(r->pid) != 0) {
		bench_warn("raw server failed");
		rc = -1;
	}
	r->sock = -1;
	r->pid = -1;
	return rc;
}

/* n raw round trips, timed into samples unless it is NULL; 0 or -1. */
static int
raw_trips(struct raw_peer *r, uint64_t *samples, long n)
{
	char req[BENCH_RAW_REQ] = "acquire", rep[BENCH_RAW_REPLY];
	uint64_t t0;
	long i;
	int fd;

	for (i = 0; i < n; i++) {
		t0 = now_ns();
		if (send(r->sock, req, sizeof(req), MSG_NOSIGNAL) !=
		    (ssize_t)sizeof(req) ||
		    (fd = recv_with_fd(r->sock, rep, sizeof(rep))) < 0) {
			bench_warn("raw round trip failed: %s", strerror(errno));
			return -1;
		}
		close(fd);
		if (samples != NULL)
			samples[i] = now_ns() - t0;
	}
	return 0;
}

/* ---- a minimal vmmd client (proto/session.h) ------------------------------- */

/* A frame that is not a call's reply: none is expected (the Releases
 * not awaited ask for no reply), so the call fails with its name (an
 * Error refusing a Release, say). */
static void
bc_push(struct vmm_frame_msg *m, void *arg)
{
	struct bench_client *c = arg;

	if (c->stray == NULL)
		c->stray = vmm_frame_type_name(vmm_frame_msg_env(m));
}

/* Sends a request and waits for its reply; 0 and *out, or -1. */
static int
bc_call(struct bench_client *c, Vmm__Envelope *env, struct vmm_frame_msg **out)
{
	const struct vmm_sess_error *e;
	int rc;

	rc = vmm_sess_call(c->s, env, NULL, 0, BENCH_IO_TIMEOUT_MS, out);
	if (rc == 0 && c->stray == NULL)
		return 0;
	e = vmm_sess_error(c->s);
	if (rc == 0) {
		bench_warn("%s: unexpected %s first", vmm_frame_type_name(env),
		    c->stray);
		vmm_frame_msg_free(*out);
		*out = NULL;
	} else if (rc == VMM_SESS_EREFUSED)
		bench_warn("%s: vmmd error %d: %s", vmm_frame_type_name(env),
		    (int)e->code, e->message);
	else if (rc == VMM_SESS_EMISMATCH)
		bench_warn("%s: unexpected reply %s", vmm_frame_type_name(env),
		    e->got);
	else
		bench_warn("%s: %s", vmm_frame_type_name(env),
		    vmm_sess_strerror(rc));
	return -1;
}

static void
bc_close(struct bench_client *c)
{
	vmm_sess_close(c->s);
	c->s = NULL;
}

/* Connects and says Hello as an app (or admin); 0 or -1. */
static int
bc_open(struct bench_client *c, const char *path, bool admin)
{
	Vmm__Hello h = VMM__HELLO__INIT;
	int rc;

	memset(c, 0, sizeof(*c));
	if ((rc = vmm_sess_connect(&c->s, path, BENCH_IO_TIMEOUT_MS)) != 0) {
		bench_warn("connect %s: %s", path, strerror(-rc));
		return -1;
	}
	vmm_sess_set_push_handler(c->s, bc_push, c);
	h.client_name = (char *)BENCH_NAME;
	h.kind = admin ? VMM__CLIENT_KIND__CLIENT_KIND_ADMIN :
	    VMM__CLIENT_KIND__CLIENT_KIND_APP;
	if ((rc = vmm_sess_hello(c->s, &h, BENCH_IO_TIMEOUT_MS)) != 0) {
		bench_warn("hello: %s", vmm_sess_strerror(rc));
		bc_close(c);
		return -1;
	}
	c->granularity = vmm_sess_hello_reply(c->s)->granularity;
	return 0;
}

/* One Acquire of a granule, its fd received and closed, and its Release,
 * whose reply is awaited only if wait; else (as libvmm_client does it) it
 * is read before the next Acquire's. */
static int
bc_pair(struct bench_client *c, bool wait)
{
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	Vmm__Release rel = VMM__RELEASE__INIT;
	Vmm__Envelope env = vmm_frame_env_acquire(&a);
	Vmm__Envelope renv = vmm_frame_env_release(&rel);
	const Vmm__Grant *g;
	struct vmm_frame_msg *m;
	uint64_t id;
	int fd, rc;

	a.bytes = c->pair_bytes != 0 ? c->pair_bytes : c->granularity;
	if (bc_call(c, &env, &m) != 0)
		return -1;
	g = vmm_frame_msg_env(m)->grant;
	if (g->n_chunks != 1 || vmm_frame_msg_nfds(m) != 1 ||
	    (fd = vmm_frame_msg_take_fd(m, 0)) < 0) {
		bench_warn("grant of one granule came as %zu chunks, %zu fds",
		    g->n_chunks, vmm_frame_msg_nfds(m));
		vmm_frame_msg_free(m);
		return -1;
	}
	id = g->chunks[0]->id;
	close(fd);
	vmm_frame_msg_free(m);

	rel.n_chunk_ids = 1;
	rel.chunk_ids = &id;
	if (!wait) {
		rel.flags = VMM__RELEASE_FLAG__RELEASE_FLAG_NO_REPLY;
		rc = vmm_sess_send(c->s, &renv, NULL, 0, BENCH_IO_TIMEOUT_MS);
		if (rc != 0)
			bench_warn("send release: %s", vmm_sess_strerror(rc));
		return rc == 0 ? 0 : -1;
	}
	if (bc_call(c, &renv, &m) != 0)
		return -1;
	if (vmm_frame_msg_env(m)->release_reply->released_chunks != 1) {
		bench_warn("release of chunk %" PRIu64 " released %u chunks", id,
		    vmm_frame_msg_env(m)->release_reply->released_chunks);
		vmm_frame_msg_free(m);
		return -1;
	}
	vmm_frame_msg_free(m);
	return 0;
}

/* Reads the named counters from vmmd's stats (values[i] = UINT64_MAX if
 * absent); 0, or -1 if stats are not available to us. */
static int
bc_counters(const char *path, const char *const *names, uint64_t *values,
    size_t n)
{
	Vmm__StatsRequest sr = VMM__STATS_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_stats_request(&sr);
	const Vmm__StatsReply *r;
	struct bench_client c;
	struct vmm_frame_msg *m;
	size_t i, j;

	for (i = 0; i < n; i++)
		values[i] = UINT64_MAX;
	if (bc_open(&c, path, true) != 0)
		return -1;
	if (bc_call(&c, &env, &m) != 0) {
		bc_close(&c);
		return -1;
	}
	r = vmm_frame_msg_env(m)->stats_reply;
	for (i = 0; i < r->n_counters; i++)
		for (j = 0; j < n; j++)
			if (strcmp(r->counters[i]->name, names[j]) == 0)
				values[j] = r->counters[i]->value;
	vmm_frame_msg_free(m);
	bc_close(&c);
	return 0;
}

/* ---- (b) grant latency ------------------------------------------------------- */

/* n Acquire+Release pairs, timed into samples unless it is NULL. */
static int
grant_pairs(struct bench_client *c, uint64_t *samples, long n, bool wait)
{
	uint64_t t0;
	long i;

	for (i = 0; i < n; i++) {
		t0 = now_ns();
		if (bc_pair(c, wait) != 0)
			return -1;
		if (samples != NULL)
			samples[i] = now_ns() - t0;
	}
	return 0;
}

/*
 * Phases (a), (b) and (b') alternating: BENCH_ROUND raw round trips, then
 * as many grant pairs, then as many awaiting the Release, in turn until n
 * of each, so that the ratio compares moments of the same machine load
 * (timed apart, it swung from 1.08 to 4.45 between runs).  Each is warmed
 * first (the first grant creates the chunk).
 */
static int
alternate_run(const char *sock, uint64_t *a, uint64_t *b, uint64_t *bw,
    long n, long warm)
{
	struct raw_peer r;
	struct bench_client c;
	long done, k;
	int rc = -1;

	if (b_cpu_client >= 0 && (place_set(0, b_cpu_client) != 0 ||
	    place_set(b_daemon, b_cpu_peer) != 0)) {
		bench_warn("cannot pin to CPUs %d and %d: %s", b_cpu_client,
		    b_cpu_peer, strerror(errno));
		return -1;
	}
	if (raw_open(&r) != 0)
		return -1;
	if (bc_open(&c, sock, false) != 0) {
		raw_close(&r);
		return -1;
	}
	if (raw_trips(&r, NULL, warm) != 0 ||
	    grant_pairs(&c, NULL, warm, false) != 0 ||
	    grant_pairs(&c, NULL, warm, true) != 0)
		goto out;
	for (done = 0; done < n; done += k) {
		k = n - done < BENCH_ROUND ? n - done : BENCH_ROUND;
		if (raw_trips(&r, a + done, k) != 0 ||
		    grant_pairs(&c, b + done, k, false) != 0 ||
		    grant_pairs(&c, bw + done, k, true) != 0)
			goto out;
	}
	rc = 0;
out:
	bc_close(&c);
	if (raw_close(&r) != 0)
		rc = -1;
	/* (c) runs where the scheduler likes. */
	if (b_cpu_client >= 0 && (place_set(0, -1) != 0 ||
	    place_set(b_daemon, -1) != 0))
		rc = -1;
	return rc;
}

/* ---- (c) aggregate grant rate ----------------------------------------------------- */

/* One rate worker: own session, warm-up, "ready", wait for "go" (EOF on
 * go_r), then pairs until the shared deadline. */
static void __attribute__((noreturn))
rate_worker(struct rate_shared *sh, int idx, const char *sock, int ready_w,
    int go_r)
{
	struct bench_client c;
	uint64_t pairs = 0, t;
	char b;
	int i;

	if (bc_open(&c, sock, false) != 0)
		_exit(1);
	for (i = 0; i < BENCH_RATE_WARMUP; i++)
		if (bc_pair(&c, false) != 0)
			_exit(1);
	if (write(ready_w, "r", 1) != 1)
		_exit(1);
	while (read(go_r, &b, 1) < 0 && errno == EINTR)
		;
	while ((t = now_ns()) < sh->deadline_ns) {
		if (bc_pair(&c, false) != 0)
			_exit(1);
		pairs++;
	}
	sh->w[idx].pairs = pairs;
	sh->w[idx].end_ns = t;
	bc_close(&c);
	_exit(0);
}

/* Phase (c) with procs workers for duration seconds; 0 and *out, or -1. */
static int
rate_run(const char *sock, int procs, double duration, struct rate_shared *sh,
    struct bench_rate *out)
{
	pid_t pids[BENCH_RATE_MAXPROCS];
	int ready[2] = { -1, -1 }, go[2] = { -1, -1 };
	uint64_t start = 0, end = 0, pairs = 0;
	struct pollfd pfd;
	int i, nready = 0, rc = 0, started = 0;
	char b;

	memset(sh, 0, sizeof(*sh));
	sh->deadline_ns = UINT64_MAX;
	if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0) {
		bench_warn("pipe: %s", strerror(errno));
		rc = -1;
		goto done;
	}
	for (i = 0; i < procs; i++) {
		if ((pids[i] = bench_fork(false)) < 0) {
			bench_warn("fork: %s", strerror(errno));
			rc = -1;
			goto done;
		}
		if (pids[i] == 0) {
			close(ready[0]);
			close(go[1]);
			rate_worker(sh, i, sock, ready[1], go[0]);
		}
		started++;
	}
	close(ready[1]);
	ready[1] = -1;
	close(go[0]);
	go[0] = -1;
	/* Every worker connected and warmed up, or one failed (EOF early). */
	pfd.fd = ready[0];
	pfd.events = POLLIN;
	while (nready < procs) {
		if (poll(&pfd, 1, BENCH_IO_TIMEOUT_MS * 3) <= 0 ||
		    read(ready[0], &b, 1) != 1) {
			bench_warn("%d of %d rate workers became ready", nready,
			    procs);
			rc = -1;
			goto done;
		}
		nready++;
	}
	start = now_ns();
	sh->deadline_ns = start + (uint64_t)(duration * 1e9);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	close(go[1]);
	go[1] = -1;
done:
	if (go[1] >= 0) {
		/* Failing: let the workers that wait for "go" run out at once. */
		sh->deadline_ns = 0;
		close(go[1]);
	}
	for (i = 0; i < started; i++) {
		if (bench_reap(pids[i]) != 0 && rc == 0) {
			bench_warn("rate worker %d of %d failed", i + 1, procs);
			rc = -1;
		}
	}
	if (ready[0] >= 0)
		close(ready[0]);
	if (ready[1] >= 0)
		close(ready[1]);
	if (go[0] >= 0)
		close(go[0]);
	if (rc != 0)
		return -1;
	for (i = 0; i < procs; i++) {
		pairs += sh->w[i].pairs;
		if (sh->w[i].end_ns > end)
			end = sh->w[i].end_ns;
	}
	out->procs = procs;
	out->pairs = pairs;
	out->seconds = (double)(end - start) / 1e9;
	out->per_sec = out->seconds > 0 ? (double)pairs / out->seconds : 0;
	return 0;
}

/* ---- vmmd --------------------------------------------------------------------- */

/* The build tree: $VMM_BUILD_DIR, else two levels above this binary
 * (<build>/tools/bench_grant). */
static int
find_build_dir(char *out, size_t len)
{
	const char *env = getenv("VMM_BUILD_DIR");
	char exe[PATH_MAX];
	ssize_t n;
	int i;

	if (env != NULL && *env != '\0') {
		snprintf(out, len, "%s", env);
		return 0;
	}
	if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) < 0)
		return -1;
	exe[n] = '\0';
	for (i = 0; i < 2; i++) {
		char *slash = strrchr(exe, '/');

		if (slash == NULL || slash == exe)
			return -1;
		*slash = '\0';
	}
	snprintf(out, len, "%s", exe);
	return 0;
}

/* Writes vmmd's config: keep idle chunks; our group may read stats. */
/* --scale: vmmd's idle timer runs, with a timeout nothing reaches. */
static bool	b_scale_mode;

static int
write_config(void)
{
	struct group *gr = getgrgid(getegid());
	FILE *f;

	if ((f = fopen(b_conf, "wx")) == NULL)
		return -1;
	/* --scale: the idle timer runs (every second) as it does by
	 * default, but nothing expires during the run. */
	fprintf(f, "# " BENCH_NAME ": released chunks stay pooled\n"
	    "idle_timeout_ms = %s\n"
	    "# --scale connects %d sessions\n"
	    "max_sessions = %d\n"
	    "max_sessions_per_uid = %d\n", b_scale_mode ? "86400000" : "0",
	    BENCH_SCALE_CLIENTS, 2 * BENCH_SCALE_CLIENTS,
	    2 * BENCH_SCALE_CLIENTS);
	if (gr != NULL && gr->gr_name != NULL)
		fprintf(f, "admin_group = %s\n", gr->gr_name);
	return fclose(f);
}

/* Shows the end of vmmd's log on stderr (start-up failures). */
static void
show_log_tail(void)
{
	char buf[2048];
	ssize_t n;
	off_t size;
	int fd;

	if ((fd = open(b_log, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	lseek(fd, size > (off_t)sizeof(buf) ? size - (off_t)sizeof(buf) : 0,
	    SEEK_SET);
	if ((n = read(fd, buf, sizeof(buf))) > 0) {
		fputs(BENCH_NAME ": vmmd log:\n", stderr);
		fwrite(buf, 1, (size_t)n, stderr);
	}
	close(fd);
}

/* Notes the files vmmd made in the temp dir (its sockets) for cleanup. */
static void
record_daemon_files(void)
{
	struct dirent *de;
	char path[PATH_MAX];
	DIR *d;

	if ((d = opendir(b_dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL && b_npaths < BENCH_MAX_PATHS) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", b_dir, de->d_name);
		if (strcmp(path, b_conf) == 0 || strcmp(path, b_log) == 0)
			continue;
		memcpy(b_paths[b_npaths], path, sizeof(path));
		b_npaths++;
	}
	closedir(d);
}

/* Makes the temp dir and starts vmmd on the emulator; 0 and the socket
 * path (device 0's index alias), or -1. */
static int
daemon_start(const char *vmmd, const char *cudalib, char *sock, size_t len)
{
	const char *ldp = getenv("LD_LIBRARY_PATH");
	char ld[PATH_MAX * 2];
	pid_t pid;
	int i, fd, waited, st;

	snprintf(b_dir, sizeof(b_dir), "/tmp/vmm-bench-XXXXXX");
	if (mkdtemp(b_dir) == NULL) {
		bench_warn("mkdtemp: %s", strerror(errno));
		b_dir[0] = '\0';
		return -1;
	}
	/* --scale: another uid reaches the socket (scale_other). */
	if (b_scale_mode && chmod(b_dir, 0711) != 0) {
		bench_warn("chmod %s: %s", b_dir, strerror(errno));
		return -1;
	}
	snprintf(b_conf, sizeof(b_conf), "%s/vmmd.conf", b_dir);
	snprintf(b_log, sizeof(b_log), "%s/vmmd.log", b_dir);
	snprintf(b_instance, sizeof(b_instance), "vmmbench-%s",
	    strrchr(b_dir, '-') + 1);
	for (i = 0; i < BENCH_SHM_DEVICES; i++)
		snprintf(b_shm[i], sizeof(b_shm[i]), "/dev/shm/cuemu-%s-d%d",
		    b_instance, i);
	if (vmm_sess_path_index(sock, len, b_dir, 0) != 0) {
		bench_warn("%s: socket path too long", b_dir);
		return -1;
	}
	if (write_config() != 0) {
		bench_warn("%s: %s", b_conf, strerror(errno));
		return -1;
	}
	snprintf(ld, sizeof(ld), "%s%s%s", cudalib, ldp && *ldp ? ":" : "",
	    ldp && *ldp ? ldp : "");

	if ((pid = bench_fork(true)) < 0) {
		bench_warn("fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		char *const argv[] = { (char *)vmmd, (char *)"--foreground",
		    (char *)"--device", (char *)"0", (char *)"--socket-dir",
		    b_dir, (char *)"--config", b_conf, NULL };

		fd = open(b_log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 ||
		    dup2(fd, STDERR_FILENO) < 0)
			_exit(126);
		if (fd > STDERR_FILENO)
			close(fd);
		if ((fd = open("/dev/null", O_RDONLY)) >= 0 &&
		    fd != STDIN_FILENO) {
			dup2(fd, STDIN_FILENO);
			close(fd);
		}
		setenv("LD_LIBRARY_PATH", ld, 1);
		setenv("CUEMU_INSTANCE", b_instance, 1);
		execv(vmmd, argv);
		fprintf(stderr, "exec %s: %s\n", vmmd, strerror(errno));
		_exit(127);
	}

	for (waited = 0; waited < BENCH_START_TIMEOUT_MS; waited += 10) {
		if ((fd = vmm_sess_dial(sock, BENCH_IO_TIMEOUT_MS)) >= 0) {
			close(fd);
			record_daemon_files();
			return 0;
		}
		if (waitpid(pid, &st, WNOHANG) == pid) {
			b_daemon = -1;
			bench_warn("vmmd exited during start-up (status %d)",
			    WIFEXITED(st) ? WEXITSTATUS(st) : 128 +
			    WTERMSIG(st));
			show_log_tail();
			return -1;
		}
		sleep_ms(10);
	}
	bench_warn("vmmd did not accept on %s within %d ms", sock,
	    BENCH_START_TIMEOUT_MS);
	show_log_tail();
	return -1;
}

/* ---- --scale: grant cost against pool size and sessions ---------------------- */

/* vmmd's CPU time so far (user + system, all threads), in microseconds
 * (the kernel's process CPU clock: nanosecond resolution, where
 * /proc/<pid>/stat counts clock ticks); 0 if unknown. */
static uint64_t
daemon_cpu_us(void)
{
	struct timespec ts;
	clockid_t id;

	if (clock_getcpuclockid(b_daemon, &id) != 0 ||
	    clock_gettime(id, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* vmmd's open fds now; -1 if unknown. */
static long
daemon_fds(void)
{
	char path[64];
	struct dirent *de;
	long n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)b_daemon);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Releases ids[0..n) in frames of VMM_PROTO_MAX_CHUNKS, awaiting each. */
static int
scale_release(struct bench_client *c, uint64_t *ids, size_t n)
{
	Vmm__Release rel = VMM__RELEASE__INIT;
	Vmm__Envelope env = vmm_frame_env_release(&rel);
	struct vmm_frame_msg *m;
	size_t off, k;

	for (off = 0; off < n; off += k) {
		k = n - off < VMM_PROTO_MAX_CHUNKS ? n - off :
		    VMM_PROTO_MAX_CHUNKS;
		rel.n_chunk_ids = k;
		rel.chunk_ids = ids + off;
		if (bc_call(c, &env, &m) != 0)
			return -1;
		vmm_frame_msg_free(m);
	}
	return 0;
}

/* Appends id to a growing array; 0 or -1. */
static int
ids_push(uint64_t **ids, size_t *n, size_t *cap, uint64_t id)
{
	if (*n == *cap) {
		size_t ncap = *cap != 0 ? *cap * 2 : 4096;
		uint64_t *v = realloc(*ids, ncap * sizeof(*v));

		if (v == NULL)
			return -1;
		*ids = v;
		*cap = ncap;
	}
	(*ids)[(*n)++] = id;
	return 0;
}

/* Acquires bytes with Acquire.flags; appends the grant's chunk ids,
 * closes its fds; 0/-1. */
static int
scale_acquire_flags(struct bench_client *c, uint64_t bytes, unsigned flags,
    uint64_t **ids, size_t *n, size_t *cap)
{
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	Vmm__Envelope env = vmm_frame_env_acquire(&a);
	struct vmm_frame_msg *m;
	const Vmm__Grant *g;
	size_t i;
	int fd, rc = 0;

	a.bytes = bytes;
	a.flags = flags;
	if (bc_call(c, &env, &m) != 0)
		return -1;
	g = vmm_frame_msg_env(m)->grant;
	for (i = 0; i < g->n_chunks; i++) {
		if (ids_push(ids, n, cap, g->chunks[i]->id) != 0)
			rc = -1;
		if ((fd = vmm_frame_msg_take_fd(m, i)) >= 0)
			close(fd);
	}
	vmm_frame_msg_free(m);
	return rc;
}

static int
scale_acquire(struct bench_client *c, uint64_t bytes, uint64_t **ids,
    size_t *n, size_t *cap)
{
	return scale_acquire_flags(c, bytes, 0, ids, n, cap);
}

/*
 * Makes the pool hold n idle chunks of 1..BENCH_SCALE_SIZES granules, in
 * turn: the filler acquires n chunks of those sizes (reusing those a
 * smaller stage left idle, sizes being exact fits) and releases them all,
 * n chunks being lent then (vmmd CPU per chunk released printed: the cost
 * of a Release against the number of live chunks).
 */
static int
scale_fill(struct bench_client *c, long n)
{
	uint64_t *ids = NULL, cpu0, cpu1, cpu2;
	size_t got = 0, cap = 0;
	long k;
	int rc = -1;

	cpu0 = daemon_cpu_us();
	for (k = 0; k < n; k++)
		if (scale_acquire(c, c->granularity *
		    (uint64_t)(k % BENCH_SCALE_SIZES + 1), &ids, &got, &cap) != 0)
			goto out;
	cpu1 = daemon_cpu_us();
	rc = scale_release(c, ids, got);
	cpu2 = daemon_cpu_us();
	if (rc == 0 && n > 0 && got > 0)
		printf("# fill %ld: vmmd CPU %.2f us per acquire (%zu chunks), "
		    "%.2f us per chunk released (%zu live, %d per Release)\n", n,
		    (double)(cpu1 - cpu0) / (double)n, got,
		    (double)(cpu2 - cpu1) / (double)got, got,
		    VMM_PROTO_MAX_CHUNKS);
out:
	free(ids);
	return rc;
}

/* vmmd's CPU while nobody asks anything, BENCH_SCALE_QUIET_MS long, per
 * second: what its timers cost with idle chunks pooled (they run on the
 * thread that serves grants). */
static void
scale_quiet(long idle)
{
	uint64_t cpu0 = daemon_cpu_us(), cpu1;
	struct timespec ts = { BENCH_SCALE_QUIET_MS / 1000,
	    (BENCH_SCALE_QUIET_MS % 1000) * 1000000L };

	nanosleep(&ts, NULL);
	cpu1 = daemon_cpu_us();
	printf("# quiet with %ld idle chunks: vmmd CPU %.0f us per second\n",
	    idle, (double)(cpu1 - cpu0) * 1000.0 / BENCH_SCALE_QUIET_MS);
	fflush(stdout);
}

/* Another tenant's idle chunks: a child as uid BENCH_SCALE_OTHER_UID
 * (keeping group 0 for the socket) pools them; then this tenant's grants
 * of their sizes must create, and vmmd CPU per such grant is printed.
 * Skipped (a line says so) when not run as root. */
static int
scale_other(struct bench_client *c, const char *sock, long idle, size_t stage)
{
	uint64_t base = BENCH_SCALE_OTHER_BASE + 8 * (uint64_t)stage, *ids = NULL;
	uint64_t cpu0, cpu1;
	long m = idle < BENCH_SCALE_OTHER_MAX ? idle : BENCH_SCALE_OTHER_MAX, k;
	size_t n = 0, cap = 0;
	int st, i, rc = -1;
	pid_t pid;

	if (geteuid() != 0) {
		printf("# other tenant: skipped (needs root to take another "
		    "uid)\n");
		return 0;
	}
	if ((pid = bench_fork(false)) < 0)
		return -1;
	if (pid == 0) {
		struct bench_client o;
		gid_t g0 = 0;

		if (setgroups(1, &g0) != 0 ||
		    setgid(BENCH_SCALE_OTHER_UID) != 0 ||
		    setuid(BENCH_SCALE_OTHER_UID) != 0 ||
		    bc_open(&o, sock, false) != 0)
			_exit(1);
		for (k = 0; k < m; k++)
			if (scale_acquire(&o, o.granularity * (base + (uint64_t)(k %
			    BENCH_SCALE_SIZES)), &ids, &n, &cap) != 0)
				_exit(1);
		_exit(scale_release(&o, ids, n) == 0 ? 0 : 1);
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	for (i = 0; i < b_nkids; i++)
		if (b_kids[i] == pid)
			b_kids[i] = -1;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		bench_warn("the other tenant's filler failed");
		return -1;
	}
	cpu0 = daemon_cpu_us();
	for (i = 0; i < BENCH_SCALE_OTHER_ASKS; i++)
		if (scale_acquire(c, c->granularity * (base + (uint64_t)(i %
		    BENCH_SCALE_SIZES)), &ids, &n, &cap) != 0)
			goto out;
	cpu1 = daemon_cpu_us();
	printf("# other tenant with %ld idle chunks: vmmd CPU %.1f us per "
	    "grant of their sizes (each creates; %d grants)\n", m,
	    (double)(cpu1 - cpu0) / BENCH_SCALE_OTHER_ASKS,
	    BENCH_SCALE_OTHER_ASKS);
	fflush(stdout);
	/* Stitched grants just larger than their largest: the pool would
	 * stitch this tenant's idle chunks of their sizes (it has none, and
	 * may not take theirs), so each creates. */
	cpu0 = daemon_cpu_us();
	for (i = 0; i < BENCH_SCALE_OTHER_ASKS; i++)
		if (scale_acquire_flags(c, c->granularity * (base +
		    BENCH_SCALE_SIZES + (uint64_t)(i % BENCH_SCALE_SIZES)),
		    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH, &ids, &n,
		    &cap) != 0)
			goto out;
	cpu1 = daemon_cpu_us();
	printf("# other tenant with %ld idle chunks: vmmd CPU %.1f us per "
	    "stitched grant larger than their sizes (each creates; %d "
	    "grants)\n", m, (double)(cpu1 - cpu0) / BENCH_SCALE_OTHER_ASKS,
	    BENCH_SCALE_OTHER_ASKS);
	fflush(stdout);
	rc = scale_release(c, ids, n);
out:
	free(ids);
	return rc;
}

/* vmmd's sessions now (a stats page); -1 on error. */
static long
scale_sessions(struct bench_client *adm)
{
	Vmm__StatsRequest q = VMM__STATS_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_stats_request(&q);
	struct vmm_frame_msg *m;
	const Vmm__StatsReply *r;
	long n;

	if (bc_call(adm, &env, &m) != 0)
		return -1;
	r = vmm_frame_msg_env(m)->stats_reply;
	n = r == NULL ? -1 : (long)r->sessions_total;
	vmm_frame_msg_free(m);
	return n;
}

/*
 * Session ends with the stage's idle chunks pooled (by another session):
 * BENCH_SCALE_ENDS sessions connect holding nothing, then all close; vmmd
 * CPU per end, from the first close until vmmd counts them gone (what a
 * session gave back becomes orphans at its end).
 */
static int
scale_ends(struct bench_client *adm, const char *sock, long idle)
{
	struct bench_client *v;
	uint64_t cpu0, cpu1;
	long base;
	int i = 0, k, rc = -1;

	if ((v = calloc(BENCH_SCALE_ENDS, sizeof(*v))) == NULL)
		return -1;
	if ((base = scale_sessions(adm)) < 0)
		goto out;
	for (i = 0; i < BENCH_SCALE_ENDS; i++)
		if (bc_open(&v[i], sock, false) != 0)
			goto out;
	cpu0 = daemon_cpu_us();
	for (k = 0; k < BENCH_SCALE_ENDS; k++)
		bc_close(&v[k]);
	for (k = 0; k < 1000 && scale_sessions(adm) > base; k++) {
		struct timespec ts = { 0, 5000000 };

		nanosleep(&ts, NULL);
	}
	cpu1 = daemon_cpu_us();
	if (scale_sessions(adm) > base) {
		bench_warn("vmmd did not see %d sessions end", BENCH_SCALE_ENDS);
		goto out;
	}
	printf("# session ends with %ld idle chunks: vmmd CPU %.1f us each "
	    "(%d sessions, holding nothing)\n", idle,
	    (double)(cpu1 - cpu0) / BENCH_SCALE_ENDS, BENCH_SCALE_ENDS);
	fflush(stdout);
	rc = 0;
out:
	for (; i > 0; i--)
		if (v[i - 1].s != NULL)
			bc_close(&v[i - 1]);
	free(v);
	return rc;
}

/*
 * Cold creates with the stage's idle chunks pooled: BENCH_SCALE_COLD
 * acquires of sizes nothing idle serves (each creates), held, then
 * released; vmmd CPU per create (mean) and wall time p50/max in ms.
 */
static int
scale_cold(struct bench_client *c, long idle, size_t stage)
{
	uint64_t t[BENCH_SCALE_COLD], *ids = NULL, cpu0, cpu1, t0;
	size_t n = 0, cap = 0;
	int i, rc = -1;

	cpu0 = daemon_cpu_us();
	for (i = 0; i < BENCH_SCALE_COLD; i++) {
		t0 = now_ns();
		if (scale_acquire(c, c->granularity * (BENCH_SCALE_COLD_BASE +
		    (uint64_t)(stage * BENCH_SCALE_COLD + (size_t)i)), &ids, &n,
		    &cap) != 0)
			goto out;
		t[i] = now_ns() - t0;
	}
	cpu1 = daemon_cpu_us();
	if (scale_release(c, ids, n) != 0)
		goto out;
	qsort(t, BENCH_SCALE_COLD, sizeof(*t), cmp_u64);
	printf("# cold create with %ld idle chunks: vmmd CPU %.1f us each, "
	    "wall p50 %.3f ms, max %.3f ms (%d creates, %zu chunks); vmmd "
	    "has %ld fds open\n", idle,
	    (double)(cpu1 - cpu0) / BENCH_SCALE_COLD,
	    (double)t[BENCH_SCALE_COLD / 2] / 1e6,
	    (double)t[BENCH_SCALE_COLD - 1] / 1e6, BENCH_SCALE_COLD, n,
	    daemon_fds());
	fflush(stdout);
	rc = 0;
out:
	free(ids);
	return rc;
}

/* One --scale measurement: pairs of one BENCH_SCALE_BIG grant (a pool
 * hit) for o->duration seconds; vmmd CPU per pair over the whole run and
 * its median over windows of BENCH_SCALE_WINDOW pairs (robust to bursts of
 * load on a shared machine; a window is ~100 ms of vmmd CPU, ten clock
 * ticks), and wall time per pair. */
static int
scale_measure(const struct bench_opts *o, struct bench_client *c,
    long idle, int clients, uint64_t *samples, long max)
{
	uint64_t win[BENCH_SCALE_MAX_WINDOWS];
	struct bench_pct w;
	uint64_t cpu0, cpu1, cw, t0, end, t;
	char med[32];
	long n;
	size_t nw = 0;

	if (grant_pairs(c, NULL, 100, true) != 0)
		return -1;
	cpu0 = cw = daemon_cpu_us();
	t0 = now_ns();
	end = t0 + (uint64_t)(o->duration * 1e9);
	for (n = 0; n < max; n++) {
		t = now_ns();
		if (t >= end)
			break;
		if (bc_pair(c, true) != 0)
			return -1;
		samples[n] = now_ns() - t;
		if ((n + 1) % BENCH_SCALE_WINDOW == 0 &&
		    nw < BENCH_SCALE_MAX_WINDOWS) {
			cpu1 = daemon_cpu_us();
			/* In nanoseconds per pair, for the median. */
			win[nw++] = (cpu1 - cw) * 1000 / BENCH_SCALE_WINDOW;
			cw = cpu1;
		}
	}
	cpu1 = daemon_cpu_us();
	if (n == 0)
		return -1;
	w = summarize(samples, (size_t)n);
	snprintf(med, sizeof(med), "-");
	if (nw > 0) {
		qsort(win, nw, sizeof(*win), cmp_u64);
		snprintf(med, sizeof(med), "%.1f (%zu)", (double)win[nw / 2] /
		    1000.0, nw);
	}
	printf("%-12ld %8d %8ld %10.1f %12s %10.1f %10.1f\n", idle, clients,
	    n, (double)(cpu1 - cpu0) / (double)n, med, w.p50_us, w.p99_us);
	fflush(stdout);
	return 0;
}

/* One --scale stats measurement: BENCH_SCALE_STATS full stats reads as
 * vmmctl stats --json makes them (StatsRequest pages until sessions_total),
 * each timed whole; p50 and max in ms. */
static int
scale_stats(struct bench_client *adm, long idle, int clients)
{
	uint64_t t[BENCH_SCALE_STATS], t0, cpu0, cpu1;
	struct vmm_frame_msg *m;
	const Vmm__StatsReply *r;
	uint32_t off, got, total, pages = 0;
	int i;

	cpu0 = daemon_cpu_us();
	for (i = 0; i < BENCH_SCALE_STATS; i++) {
		t0 = now_ns();
		pages = 0;
		for (off = 0;; off += got) {
			Vmm__StatsRequest q = VMM__STATS_REQUEST__INIT;
			Vmm__Envelope env;

			q.session_offset = off;
			env = vmm_frame_env_stats_request(&q);
			if (bc_call(adm, &env, &m) != 0)
				return -1;
			if ((r = vmm_frame_msg_env(m)->stats_reply) == NULL) {
				vmm_frame_msg_free(m);
				return -1;
			}
			total = r->sessions_total;
			got = (uint32_t)r->n_sessions;
			vmm_frame_msg_free(m);
			pages++;
			if (got == 0 || off + got >= total)
				break;
		}
		t[i] = now_ns() - t0;
	}
	cpu1 = daemon_cpu_us();
	qsort(t, BENCH_SCALE_STATS, sizeof(*t), cmp_u64);
	printf("# stats with %ld idle chunks, %d clients: %u pages, p50 %.3f ms,"
	    " max %.3f ms (%d reads); vmmd CPU %.0f us per read\n", idle,
	    clients, pages, (double)t[BENCH_SCALE_STATS / 2] / 1e6,
	    (double)t[BENCH_SCALE_STATS - 1] / 1e6, BENCH_SCALE_STATS,
	    (double)(cpu1 - cpu0) / BENCH_SCALE_STATS);
	fflush(stdout);
	return 0;
}

/*
 * --scale: for each stage, the pool holds that many idle chunks of mixed
 * sizes, then pooled grant+release pairs (BENCH_SCALE_BIG granules, which
 * the largest idle chunk serves) are timed with one session connected, and
 * again with BENCH_SCALE_CLIENTS idle sessions besides.
 */
static int
scale_run(const struct bench_opts *o, const char *sock)
{
	struct bench_client filler, meas, adm, *crowd = NULL;
	uint64_t *samples = NULL;
	long max = 1000000;
	size_t st;
	int i, ncrowd = 0, rc = -1;

	if (bc_open(&filler, sock, false) != 0)
		return -1;
	if (bc_open(&meas, sock, false) != 0) {
		bc_close(&filler);
		return -1;
	}
	if (bc_open(&adm, sock, true) != 0) {
		bc_close(&meas);
		bc_close(&filler);
		return -1;
	}
	meas.pair_bytes = meas.granularity * BENCH_SCALE_BIG;
	if ((samples = calloc((size_t)max, sizeof(*samples))) == NULL ||
	    (crowd = calloc(BENCH_SCALE_CLIENTS, sizeof(*crowd))) == NULL)
		goto out;
	printf("# vmmd CPU us per pair: mean over the run, and median over "
	    "windows of %d pairs (windows)\n", BENCH_SCALE_WINDOW);
	printf("%-12s %8s %8s %10s %12s %10s %10s\n", "idle chunks", "clients",
	    "pairs", "CPU mean", "CPU median", "p50 us", "p99 us");
	for (st = 0; st < o->nscale; st++) {
		fprintf(stderr, BENCH_NAME ": --scale: %ld idle chunks\n",
		    o->scale[st]);
		if (scale_fill(&filler, o->scale[st]) != 0 ||
		    scale_measure(o, &meas, o->scale[st], 1, samples, max) != 0 ||
		    scale_cold(&filler, o->scale[st], st) != 0)
			goto out;
		scale_quiet(o->scale[st]);
		if (scale_ends(&adm, sock, o->scale[st]) != 0 ||
		    scale_other(&filler, sock, o->scale[st], st) != 0)
			goto out;
		for (; ncrowd < BENCH_SCALE_CLIENTS - 1; ncrowd++)
			if (bc_open(&crowd[ncrowd], sock, false) != 0)
				goto out;
		if (scale_measure(o, &meas, o->scale[st], BENCH_SCALE_CLIENTS,
		    samples, max) != 0 ||
		    scale_stats(&adm, o->scale[st], BENCH_SCALE_CLIENTS) != 0)
			goto out;
		while (ncrowd > 0)
			bc_close(&crowd[--ncrowd]);
	}
	rc = 0;
out:
	for (i = 0; i < ncrowd; i++)
		bc_close(&crowd[i]);
	bc_close(&adm);
	bc_close(&meas);
	bc_close(&filler);
	free(crowd);
	free(samples);
	return rc;
}

/* ---- output ------------------------------------------------------------------ */

static void
print_table(const struct bench_opts *o, struct bench_pct a,
    struct bench_pct b, struct bench_pct bw, const struct bench_rate *rates,
    size_t nrates,
    const uint64_t *ctr)
{
	size_t i;

	printf("%-34s %10s %10s\n", "latency (us)", "p50", "p99");
	printf("%-34s %10.1f %10.1f\n", "(a) raw round trip + 1 fd", a.p50_us,
	    a.p99_us);
	printf("%-34s %10.1f %10.1f\n", "(b) vmmd acquire + release", b.p50_us,
	    b.p99_us);
	printf("%-34s %10.2f %10.2f   (target p50 <= 2.00: %s)\n",
	    "ratio b/a", b.p50_us / a.p50_us, b.p99_us / a.p99_us,
	    b.p50_us / a.p50_us <= 2.0 ? "met" : "NOT met");
	printf("%-34s %10.1f %10.1f   (ratio %.2f: two round trips)\n",
	    "(b') ... waiting for the release", bw.p50_us, bw.p99_us,
	    bw.p50_us / a.p50_us);
	printf("\n%-34s %10s %10s\n", "(c) grant rate, clients", "pairs/s",
	    "pairs");
	for (i = 0; i < nrates; i++)
		printf("%-34d %10.0f %10" PRIu64 "\n", rates[i].procs,
		    rates[i].per_sec, rates[i].pairs);
	printf("\n%ld iterations, placement %s, %.2f s per rate run; vmmd: ",
	    o->iterations, bench_place_names[o->place], o->duration);
	if (ctr[0] == UINT64_MAX)
		printf("counters not available\n");
	else
		printf("%" PRIu64 " grants, %" PRIu64 " from the pool, %" PRIu64
		    " chunks created\n", ctr[0], ctr[1], ctr[2]);
}

static void
print_json(const struct bench_opts *o, struct bench_pct a,
    struct bench_pct b, struct bench_pct bw, const struct bench_rate *rates,
    size_t nrates,
    const uint64_t *ctr)
{
	size_t i;

	printf("{\"iterations\": %ld, \"placement\": \"%s\", "
	    "\"duration_s\": %.3f,\n", o->iterations,
	    bench_place_names[o->place], o->duration);
	printf(" \"raw_us\": {\"p50\": %.2f, \"p99\": %.2f},\n", a.p50_us,
	    a.p99_us);
	printf(" \"grant_us\": {\"p50\": %.2f, \"p99\": %.2f},\n", b.p50_us,
	    b.p99_us);
	printf(" \"ratio\": {\"p50\": %.3f, \"p99\": %.3f, \"target_p50\": 2.0},\n",
	    b.p50_us / a.p50_us, b.p99_us / a.p99_us);
	printf(" \"grant_waited_us\": {\"p50\": %.2f, \"p99\": %.2f},\n",
	    bw.p50_us, bw.p99_us);
	printf(" \"rates\": [");
	for (i = 0; i < nrates; i++)
		printf("%s{\"clients\": %d, \"pairs_per_s\": %.1f, \"pairs\": %"
		    PRIu64 ", \"seconds\": %.3f}", i ? ", " : "",
		    rates[i].procs, rates[i].per_sec, rates[i].pairs,
		    rates[i].seconds);
	printf("],\n");
	if (ctr[0] == UINT64_MAX)
		printf(" \"vmmd\": null}\n");
	else
		printf(" \"vmmd\": {\"grants\": %" PRIu64 ", \"fits\": %" PRIu64
		    ", \"creates\": %" PRIu64 "}}\n", ctr[0], ctr[1], ctr[2]);
}

/* ---- main ---------------------------------------------------------------------- */

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: " BENCH_NAME " [--iterations N] [--duration S] [--vmmd PATH]\n"
	    "                   [--keep-daemon-log] [--json] [--scale N,...]\n"
	    "                   [--busy] [--placement same|split|free]\n"
	    "  --iterations N     timed round trips for (a) and (b) (default %d)\n"
	    "  --duration S       seconds per rate run in (c) (default %.1f)\n"
	    "  --vmmd PATH        the daemon (default: <build>/daemon/vmmd, <build>\n"
	    "                     from $VMM_BUILD_DIR or this binary's location)\n"
	    "  --keep-daemon-log  keep vmmd's log (its path is printed)\n"
	    "  --json             results as JSON instead of a table\n"
	    "  --scale N,...      instead: vmmd CPU and wall time per pooled grant +\n"
	    "                     release with N idle chunks of mixed sizes pooled\n"
	    "                     and 1 or %d sessions connected, for --duration\n"
	    "                     each, and the time of a full stats read (all\n"
	    "                     pages of sessions) with them; per N also vmmd\n"
	    "                     CPU per chunk acquired and released (N lent),\n"
	    "                     cold creates with N idle, session ends with N\n"
	    "                     idle, plain and stitched grants another\n"
	    "                     tenant's idle chunks cannot serve (as root),\n"
	    "                     and vmmd's open fds\n"
	    "                     (the emulator runs with CUEMU_PHANTOM=1 and\n"
	    "                     CUEMU_GRANULARITY_KB=" BENCH_SCALE_GRAN_KB ": no fd or\n"
	    "                     memory per chunk; N up to 10^6)\n"
	    "  --busy             instead: pooled grant p50/p99 with vmmd idle, then\n"
	    "                     while another client makes it create 1 GiB chunks\n"
	    "                     (a100 latency profile), --duration each\n"
	    "  --placement P      CPUs of (a) and (b): same (default: the client,\n"
	    "                     raw server and vmmd on one CPU), split (the\n"
	    "                     client on one, both peers on another) or free\n"
	    "                     (the scheduler's choice, which may place the\n"
	    "                     two peers differently)\n",
	    BENCH_DEF_ITERATIONS, BENCH_DEF_DURATION, BENCH_SCALE_CLIENTS);
}

/* Strict number parsing: the whole string, within [min, max]. */
static int
parse_num(const char *s, double min, double max, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	return end == s || *end != '\0' || errno != 0 || *out < min ||
	    *out > max ? -1 : 0;
}

/* Parses --scale's list of idle chunk counts; 0 or -1. */
static int
parse_scale(const char *arg, struct bench_opts *o)
{
	char buf[256], *tok, *save = NULL;
	double v;

	if (snprintf(buf, sizeof(buf), "%s", arg) >= (int)sizeof(buf))
		return -1;
	o->nscale = 0;
	for (tok = strtok_r(buf, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		if (o->nscale == BENCH_SCALE_MAX ||
		    parse_num(tok, 1, BENCH_SCALE_MAX_IDLE, &v) != 0 ||
		    v != (double)(long)v)
			return -1;
		o->scale[o->nscale++] = (long)v;
	}
	return o->nscale > 0 ? 0 : -1;
}

/* ---- --busy: pooled grants while vmmd creates big chunks -------------------- */

/* The busy client: cycles of BENCH_BUSY_HELD creates of 1 GiB, their
 * release, and a trim that destroys them, until killed. */
static void __attribute__((noreturn))
busy_creator(const char *sock)
{
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	Vmm__Envelope env = vmm_frame_env_acquire(&a);
	Vmm__TrimRequest tr = VMM__TRIM_REQUEST__INIT;
	Vmm__Envelope tenv = vmm_frame_env_trim_request(&tr);
	struct bench_client c, adm;
	uint64_t ids[BENCH_BUSY_HELD * VMM_PROTO_MAX_CHUNKS];
	struct vmm_frame_msg *m;
	const Vmm__Grant *g;
	size_t i, n;
	int k;

	if (bc_open(&c, sock, false) != 0 || bc_open(&adm, sock, true) != 0)
		_exit(1);
	a.bytes = BENCH_BUSY_BIG;
	for (;;) {
		for (k = 0, n = 0; k < BENCH_BUSY_HELD; k++) {
			if (bc_call(&c, &env, &m) != 0)
				_exit(1);
			g = vmm_frame_msg_env(m)->grant;
			for (i = 0; i < g->n_chunks && n < sizeof(ids) /
			    sizeof(ids[0]); i++) {
				ids[n++] = g->chunks[i]->id;
				close(vmm_frame_msg_take_fd(m, i));
			}
			vmm_frame_msg_free(m);
		}
		if (scale_release(&c, ids, n) != 0 ||
		    bc_call(&adm, &tenv, &m) != 0)
			_exit(1);
		vmm_frame_msg_free(m);
	}
}

/* Pooled grant pairs for duration seconds (at most max): the samples. */
static size_t
busy_pairs(struct bench_client *c, uint64_t *s, size_t max, double duration)
{
	uint64_t end = now_ns() + (uint64_t)(duration * 1e9), t0;
	size_t n = 0;

	while (n < max && (t0 = now_ns()) < end) {
		if (bc_pair(c, false) != 0)
			return 0;
		s[n++] = now_ns() - t0;
	}
	return n;
}

static int
busy_run(const struct bench_opts *o, const char *sock)
{
	static const char *const names[] = { "creates", "gpu_releases" };
	struct bench_client c;
	struct bench_pct idle, busy;
	uint64_t *s, before[2], after[2];
	size_t ni, nb;
	pid_t pid;
	int rc = -1;

	if ((s = calloc(2 * BENCH_BUSY_MAX, sizeof(*s))) == NULL)
		return -1;
	if (bc_open(&c, sock, false) != 0)
		goto out;
	/* Warm: the one granule is created now and pooled after. */
	if (grant_pairs(&c, NULL, 100, true) != 0)
		goto out_close;
	fprintf(stderr, BENCH_NAME ": --busy: pooled grants, vmmd idle, %.2f s\n",
	    o->duration);
	if ((ni = busy_pairs(&c, s, BENCH_BUSY_MAX, o->duration)) == 0)
		goto out_close;
	if ((pid = bench_fork(false)) < 0)
		goto out_close;
	if (pid == 0)
		busy_creator(sock);
	/* Let the first create start. */
	sleep_ms(50);
	(void)bc_counters(sock, names, before, 2);
	fprintf(stderr, BENCH_NAME ": --busy: pooled grants while another "
	    "client has 1 GiB chunks created, %.2f s\n", o->duration);
	nb = busy_pairs(&c, s + BENCH_BUSY_MAX, BENCH_BUSY_MAX, o->duration);
	(void)bc_counters(sock, names, after, 2);
	kill(pid, SIGKILL);
	(void)bench_reap(pid);
	if (nb == 0)
		goto out_close;
	idle = summarize(s, ni);
	busy = summarize(s + BENCH_BUSY_MAX, nb);
	printf("%-34s %10s %10s %10s\n", "pooled grant + release (us)", "p50",
	    "p99", "pairs");
	printf("%-34s %10.1f %10.1f %10zu\n", "vmmd otherwise idle", idle.p50_us,
	    idle.p99_us, ni);
	printf("%-34s %10.1f %10.1f %10zu\n", "another client creating 1 GiB",
	    busy.p50_us, busy.p99_us, nb);
	printf("%-34s %10.2f %10.2f   (target p99 <= 2.00: %s)\n",
	    "ratio busy/idle", busy.p50_us / idle.p50_us,
	    busy.p99_us / idle.p99_us,
	    busy.p99_us <= 2.0 * idle.p99_us ? "met" : "NOT met");
	if (before[0] != UINT64_MAX && after[0] != UINT64_MAX)
		printf("meanwhile vmmd created %" PRIu64 " and destroyed %"
		    PRIu64 " chunks (a100 profile)\n", after[0] - before[0],
		    after[1] - before[1]);
	rc = 0;
out_close:
	bc_close(&c);
out:
	free(s);
	return rc;
}

static int
parse_args(int argc, char **argv, struct bench_opts *o)
{
	static const struct option longopts[] = {
		{ "iterations", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'd' },
		{ "vmmd", required_argument, NULL, 'v' },
		{ "keep-daemon-log", no_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "scale", required_argument, NULL, 's' },
		{ "busy", no_argument, NULL, 'b' },
		{ "placement", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	double v;
	int ch;

	o->iterations = BENCH_DEF_ITERATIONS;
	o->duration = BENCH_DEF_DURATION;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n':
			if (parse_num(optarg, 1, BENCH_MAX_ITERATIONS, &v) != 0 ||
			    v != (double)(long)v) {
				bench_warn("--iterations \"%s\": expected an "
				    "integer in 1..%d", optarg,
				    BENCH_MAX_ITERATIONS);
				return -1;
			}
			o->iterations = (long)v;
			break;
		case 'd':
			if (parse_num(optarg, 0.01, BENCH_MAX_DURATION, &o->duration)
			    != 0) {
				bench_warn("--duration \"%s\": expected seconds "
				    "in 0.01..%.0f", optarg, BENCH_MAX_DURATION);
				return -1;
			}
			break;
		case 'v':
			o->vmmd = optarg;
			break;
		case 'k':
			b_keep_log = true;
			break;
		case 'j':
			o->json = true;
			break;
		case 's':
			if (parse_scale(optarg, o) != 0) {
				bench_warn("--scale \"%s\": expected up to %d "
				    "counts in 1..%d, comma-separated", optarg,
				    BENCH_SCALE_MAX, BENCH_SCALE_MAX_IDLE);
				return -1;
			}
			break;
		case 'b':
			o->busy = true;
			break;
		case 'p':
			for (v = 0; v < 3 && strcmp(optarg,
			    bench_place_names[(int)v]) != 0; v++)
				;
			if (v == 3) {
				bench_warn("--placement \"%s\": expected same, "
				    "split or free", optarg);
				return -1;
			}
			o->place = (enum bench_place)(int)v;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc) {
		bench_warn("unexpected argument \"%s\"", argv[optind]);
		usage(stderr);
		return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static const char *const ctr_names[] = { "grants", "fits", "creates" };
	struct bench_opts o = { 0 };
	struct bench_rate rates[BENCH_NRATES];
	struct bench_pct a = { 0 }, b = { 0 }, bw = { 0 };
	double load[2];
	struct rate_shared *sh = MAP_FAILED;
	char build[PATH_MAX], vmmd[PATH_MAX], cudalib[PATH_MAX];
	char sock[sizeof(((struct sockaddr_un *)NULL)->sun_path)];
	uint64_t *samples = NULL, ctr[3];
	struct stat sb;
	long warm;
	size_t i;
	int rc = 1;

	if (parse_args(argc, argv, &o) != 0)
		return 2;
	if (find_build_dir(build, sizeof(build)) != 0) {
		bench_warn("cannot tell the build directory; set VMM_BUILD_DIR");
		return 1;
	}
	if ((o.vmmd != NULL ? snprintf(vmmd, sizeof(vmmd), "%s", o.vmmd) :
	    snprintf(vmmd, sizeof(vmmd), "%s/daemon/vmmd", build)) >=
	    (int)sizeof(vmmd) || snprintf(cudalib, sizeof(cudalib),
	    "%s/tests/cuemu/lib", build) >= (int)sizeof(cudalib)) {
		bench_warn("path too long");
		return 1;
	}
	if (access(vmmd, X_OK) != 0) {
		bench_warn("%s: %s (use --vmmd or VMM_BUILD_DIR)", vmmd,
		    strerror(errno));
		return 1;
	}
	if (stat(cudalib, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		bench_warn("%s: no emulator there (build the tree, or set "
		    "VMM_BUILD_DIR)", cudalib);
		return 1;
	}
	warm = o.iterations / 10 > 100 ? o.iterations / 10 : 100;
	samples = calloc(3 * (size_t)o.iterations, sizeof(*samples));
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (samples == NULL || sh == MAP_FAILED) {
		bench_warn("out of memory");
		goto out;
	}
	signal(SIGINT, bench_on_signal);
	signal(SIGTERM, bench_on_signal);
	signal(SIGHUP, bench_on_signal);

	/* Room for 10^6 idle chunks: phantom chunks (no memfd, so no fd
	 * each in vmmd; never mapped: this process only receives and closes
	 * fds) of a small granule. */
	if (o.nscale > 0) {
		b_scale_mode = true;
		setenv("CUEMU_MEM_MB", BENCH_SCALE_MEM_MB, 1);
		setenv("CUEMU_PHANTOM", "1", 1);
		setenv("CUEMU_GRANULARITY_KB", BENCH_SCALE_GRAN_KB, 1);
	}
	/* Driver costs as on an A100, so a big create takes its time. */
	if (o.busy) {
		setenv("CUEMU_MEM_MB", BENCH_BUSY_MEM_MB, 1);
		setenv("CUEMU_LATENCY", "a100", 1);
	}
	fprintf(stderr, BENCH_NAME ": starting %s\n", vmmd);
	if (daemon_start(vmmd, cudalib, sock, sizeof(sock)) != 0)
		goto out;
	fprintf(stderr, BENCH_NAME ": vmmd pid %d on %s, CUEMU_INSTANCE=%s\n",
	    (int)b_daemon, sock, b_instance);
	if (o.nscale > 0) {
		rc = scale_run(&o, sock) == 0 ? 0 : 1;
		goto out;
	}
	if (o.busy) {
		rc = busy_run(&o, sock) == 0 ? 0 : 1;
		goto out;
	}
	fprintf(stderr, BENCH_NAME ": (a) raw fd round trip, (b) acquire + "
	    "release via vmmd, (b') the same waiting for each release's reply: "
	    "%ld of each, %d at a time in turn, after %ld warm-up\n",
	    o.iterations, BENCH_ROUND, warm);
	if (o.place != PLACE_FREE && place_pick(&o) != 0)
		goto out;
	fprintf(stderr, BENCH_NAME ": placement %s", bench_place_names[o.place]);
	if (o.place != PLACE_FREE)
		fprintf(stderr, ": client on CPU %d, raw server and vmmd on CPU %d",
		    b_cpu_client, b_cpu_peer);
	fprintf(stderr, "\n");
	if (getloadavg(load, 1) != 1)
		load[0] = -1;
	if (alternate_run(sock, samples, samples + o.iterations,
	    samples + 2 * o.iterations, o.iterations, warm) != 0)
		goto out;
	if (getloadavg(load + 1, 1) != 1)
		load[1] = -1;
	fprintf(stderr, BENCH_NAME ": load average (1 min) %.2f before (a)/(b), "
	    "%.2f after\n", load[0], load[1]);
	a = summarize(samples, (size_t)o.iterations);
	b = summarize(samples + o.iterations, (size_t)o.iterations);
	bw = summarize(samples + 2 * o.iterations, (size_t)o.iterations);

	for (i = 0; i < BENCH_NRATES; i++) {
		fprintf(stderr, BENCH_NAME ": (c) grant rate, %d client%s, "
		    "%.2f s\n", bench_rate_procs[i],
		    bench_rate_procs[i] > 1 ? "s" : "", o.duration);
		if (rate_run(sock, bench_rate_procs[i], o.duration, sh,
		    &rates[i]) != 0)
			goto out;
	}
	if (bc_counters(sock, ctr_names, ctr, 3) != 0)
		bench_warn("vmmd stats not available; counters omitted");

	if (o.json)
		print_json(&o, a, b, bw, rates, BENCH_NRATES, ctr);
	else
		print_table(&o, a, b, bw, rates, BENCH_NRATES, ctr);
	fflush(stdout);
	rc = 0;
	/* A grant is a round trip with an fd and more: faster than the raw
	 * one at the median means the measurement is broken. */
	if (b.p50_us < a.p50_us || bw.p50_us < a.p50_us) {
		bench_warn("impossible: a grant's median below the raw round "
		    "trip's (%.1f, %.1f < %.1f us); the figures are wrong",
		    b.p50_us, bw.p50_us, a.p50_us);
		rc = 1;
	}
out:
	if (b_daemon > 0)
		fprintf(stderr, BENCH_NAME ": stopping vmmd\n");
	if (rc != 0 && b_daemon > 0)
		show_log_tail();
	if (b_keep_log && b_dir[0] != '\0')
		fprintf(stderr, BENCH_NAME ": vmmd log kept in %s\n", b_log);
	if (bench_cleanup() != 0) {
		bench_warn("vmmd did not exit cleanly on SIGTERM");
		rc = 1;
	}
	free(samples);
	if (sh != MAP_FAILED)
		munmap(sh, sizeof(*sh));
	return rc;
}
