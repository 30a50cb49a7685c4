/*
 * vmm-campaign — the attack-and-fault campaign of issue 8 as a measuring
 * instrument.  It starts its own vmmd on the CUDA emulator (a private temp
 * socket dir, its own CUEMU_INSTANCE), runs bounded phases against it, prints
 * one line of figures per phase, then a summary of `name: value` lines, and
 * exits 0 only if every invariant held (tools/campaign/README.md):
 *
 *   bad_inputs      malformed sessions and frames; an ordinary session must
 *                   be served after each batch
 *   hostile_fds     foreign fds over SCM_RIGHTS (a loopback TCP socket with
 *                   SO_LINGER and a full send queue among them) while a probe
 *                   session measures round trips: the worst is the loop stall
 *   slow_loris      connections that stop inside a frame: an ordinary client
 *                   is served meanwhile, the daemon drops them
 *   sigkill         clients SIGKILLed mid-grant: lent bytes return
 *   integrity       processes write a per-process pattern into what they are
 *                   lent and read it back; two live holders of one memfd
 *                   inode, or a changed pattern, is memory lent twice
 *   adopt_attacks   Adopt of a kept fd, of a held fd, of one fd twice, from
 *                   another session: the daemon must not take a second record
 *   daemon_restart  vmmd SIGKILLed and restarted; clients keep their mappings,
 *                   adopt them, and their data must survive
 *   --soak S        the integrity workers for S seconds, with random SIGKILLs,
 *                   bad-input batches and trims, and a progress line
 *
 * The tool process itself never calls CUDA (cuInit in a forked child of an
 * initialised process fails): every process that maps memory is a child.
 * Inode identity of the granted fds is an emulator fact (cuemu's memory is
 * memfd memory); the data check is what would also hold on a GPU.
 */
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testclient.h"
/* CHECK/CHECK_OK of the test programs (via tests/daemon on the include
 * path): a child that fails one exits 1 and is counted. */
#include "../common/check.h"

#define CAMP_NAME		"vmm-campaign"
/* Exit codes (README.md). */
#define CAMP_EXIT_PASS		0	/* every invariant held */
#define CAMP_EXIT_FAIL		1	/* an invariant did not hold */
#define CAMP_EXIT_USAGE		2
#define CAMP_EXIT_TOOL		3	/* the tool could not run */

#define CAMP_MEM_MB		"1024"	/* emulated device memory */
#define CAMP_HANDSHAKE_MS	1000	/* vmmd's handshake_timeout_ms */
#define CAMP_START_MS		10000	/* vmmd until its socket accepts */
#define CAMP_STOP_MS		5000	/* vmmd after SIGTERM */
#define CAMP_SETTLE_MS		10000	/* lent bytes to come back */
#define CAMP_IO_MS		10000	/* any one reply (testclient's too) */
#define CAMP_BATCH		50	/* bad inputs between two probes */
#define CAMP_STALL_TARGET_MS	10.0
#define CAMP_MAX_KIDS		256
#define CAMP_MAX_WORKERS	32
#define CAMP_SLOT_INOS		192	/* 3 allocations x 64 chunks */
#define CAMP_HELD		3	/* allocations a worker holds at most */
#define CAMP_MAX_GRANULES	4	/* per allocation */
#define CAMP_MAX_LORIS		240	/* below max_sessions_per_uid (256) */
#define CAMP_VICTIM_TRIES	8	/* chunks a victim takes to meet the memory */
#define CAMP_LINE		256

/* ---- sizes of one run ---------------------------------------------------- */

struct camp_size {
	int	bad_inputs;
	int	foreign_fds;	/* batches of five foreign fds */
	int	linger_socks;
	int	linger_s;
	int	loris;
	int	killed;		/* clients SIGKILLed */
	int	wave;		/* of them at once */
	int	procs;		/* integrity workers */
	int	integrity_ms;
	int	restart_procs;
	int	shim_ms;	/* each of the two shim rounds */
};

static const struct camp_size camp_quick = {
	.bad_inputs = 300, .foreign_fds = 10, .linger_socks = 1, .linger_s = 1,
	.loris = 20, .killed = 8, .wave = 4, .procs = 2, .integrity_ms = 1500,
	.restart_procs = 2, .shim_ms = 1000,
};
static const struct camp_size camp_default = {
	.bad_inputs = 3000, .foreign_fds = 100, .linger_socks = 2,
	.linger_s = 2, .loris = 200, .killed = 60, .wave = 10, .procs = 4,
	.integrity_ms = 15000, .restart_procs = 3, .shim_ms = 5000,
};

/* ---- figures ------------------------------------------------------------- */

static struct camp_fig {
	uint64_t	bad_inputs_tried;
	uint64_t	bad_inputs_survived;
	uint64_t	faults_injected;
	uint64_t	faults_survived;
	uint64_t	foreign_fds_sent;
	double		loop_stall_max_ms;
	uint64_t	loris_connections;
	uint64_t	loris_dropped;
	uint64_t	loris_served;	/* ordinary sessions served meanwhile */
	uint64_t	clients_killed;
	uint64_t	load_cycles;
	uint64_t	load_errors;
	uint64_t	bytes_lost;
	uint64_t	chunks_lent_twice;
	uint64_t	corruptions;
	uint64_t	inode_overlaps;
	uint64_t	double_records;
	uint64_t	daemon_kills;
	uint64_t	daemon_crashes;
	uint64_t	restart_allocs_ok;
	uint64_t	restart_allocs;
} fig;

/* ---- shared with the children (MAP_SHARED) ------------------------------- */

struct camp_slot {
	_Atomic int		pid;
	_Atomic uint64_t	ino[CAMP_SLOT_INOS];
};

struct camp_shared {
	_Atomic int		stop;
	_Atomic uint64_t	cycles;
	_Atomic uint64_t	corruptions;
	_Atomic uint64_t	overlaps;
	_Atomic uint64_t	errors;
	/* adopt attacks */
	_Atomic uint64_t	att_cases;
	_Atomic uint64_t	att_accepted;
	_Atomic uint64_t	att_double;
	_Atomic uint64_t	att_lent_two;
	_Atomic uint64_t	att_corrupt;
	_Atomic uint64_t	att_evidence;	/* cases with any evidence */
	struct camp_slot	slot[CAMP_MAX_WORKERS];
};

static struct camp_shared *sh;

/* ---- run state, undone by camp_cleanup() --------------------------------- */

static char		g_dir[64];		/* "" until made */
static char		g_sock[128], g_conf[128], g_log[128];
static char		g_instance[64], g_shm[128];
static char		g_vmmd[PATH_MAX];
static volatile pid_t	g_daemon = -1;
static volatile pid_t	g_kids[CAMP_MAX_KIDS];
static volatile int	g_nkids;
static bool		g_keep;
static uint64_t		g_rng = 0x9e3779b97f4a7c15ull;

static void	camp_warn(const char *fmt, ...)
		    __attribute__((format(printf, 1, 2)));

/* One diagnostic line on stderr. */
static void
camp_warn(const char *fmt, ...)
{
	va_list ap;

	fputs(CAMP_NAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* xorshift64*: reproducible with --seed; children reseed from it. */
static uint64_t
rnd(void)
{
	g_rng ^= g_rng >> 12;
	g_rng ^= g_rng << 25;
	g_rng ^= g_rng >> 27;
	return g_rng * 0x2545f4914f6cdd1dull;
}

static uint64_t
rnd_below(uint64_t n)
{
	return n == 0 ? 0 : rnd() % n;
}

/* ---- processes ----------------------------------------------------------- */

static void
kid_add(pid_t pid)
{
	if (g_nkids < CAMP_MAX_KIDS)
		g_kids[g_nkids++] = pid;
}

static void
kid_forget(pid_t pid)
{
	int i;

	for (i = 0; i < g_nkids; i++) {
		if (g_kids[i] == pid) {
			g_kids[i] = g_kids[g_nkids - 1];
			g_nkids--;
			return;
		}
	}
}

/* Forks a child running fn (tc_spawn: a ctl socket, dies with us) and
 * records it for cleanup. */
static pid_t
kid_spawn(int (*fn)(void *, int), void *arg, int *ctl)
{
	pid_t pid;

	g_rng ^= (uint64_t)g_nkids * 0x100000001b3ull;
	rnd();
	pid = tc_spawn(fn, arg, ctl);
	kid_add(pid);
	return pid;
}

/* Waits for a child: its exit code, 128 + signal, or -1. */
static int
kid_reap(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR) {
			kid_forget(pid);
			return -1;
		}
	}
	kid_forget(pid);
	return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
}

/* Receives one ctl message within timeout_ms: its length, or -1. */
static ssize_t
ctl_recv(int ctl, void *buf, size_t len, int timeout_ms)
{
	struct pollfd p = { .fd = ctl, .events = POLLIN };

	if (poll(&p, 1, timeout_ms) != 1)
		return -1;
	return recv(ctl, buf, len, 0);
}

/* ---- the daemon ---------------------------------------------------------- */

/* True while vmmd runs (reaps it, and counts a crash, if it died). */
static bool
daemon_alive(void)
{
	int st;

	if (g_daemon <= 0)
		return false;
	if (waitpid(g_daemon, &st, WNOHANG) == g_daemon) {
		camp_warn("vmmd %d died (%s %d)", (int)g_daemon,
		    WIFSIGNALED(st) ? "signal" : "exit",
		    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		g_daemon = -1;
		fig.daemon_crashes++;
		return false;
	}
	return true;
}

/* Starts vmmd in g_dir and waits until it accepts; 0 or -1. */
static int
daemon_start(void)
{
	char *const argv[] = { g_vmmd, (char *)"--foreground", (char *)"--device",
	    (char *)"0", (char *)"--socket-dir", g_dir, (char *)"--config",
	    g_conf, NULL };
	uint64_t end = vmm_now_ms() + CAMP_START_MS;
	pid_t pid;
	int fd, st;

	fflush(NULL);
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if ((fd = open(g_log, O_WRONLY | O_CREAT | O_APPEND, 0600)) >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			if (fd > STDERR_FILENO)
				close(fd);
		}
		unsetenv("LD_PRELOAD");
		execv(g_vmmd, argv);
		_exit(127);
	}
	g_daemon = pid;
	while (vmm_now_ms() < end) {
		if ((fd = tc_connect_raw(g_sock)) >= 0) {
			close(fd);
			return 0;
		}
		if (waitpid(pid, &st, WNOHANG) == pid) {
			g_daemon = -1;
			camp_warn("vmmd exited during start-up; log: %s", g_log);
			return -1;
		}
		tc_sleep_ms(10);
	}
	camp_warn("vmmd did not accept on %s", g_sock);
	return -1;
}

/* SIGTERM (SIGKILL after CAMP_STOP_MS): 0 if vmmd exited 0. */
static int
daemon_stop(void)
{
	pid_t pid = g_daemon;
	int st = 0, waited;

	if (pid <= 0)
		return 0;
	kill(pid, SIGTERM);
	for (waited = 0; waited < CAMP_STOP_MS; waited += 10) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
		tc_sleep_ms(10);
	}
	if (waited >= CAMP_STOP_MS) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		st = -1;
	}
	g_daemon = -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* Stops vmmd (it must exit 0) and starts a new one on the same dir. */
static void
daemon_fresh(void)
{
	if (daemon_alive() && daemon_stop() != 0) {
		camp_warn("vmmd did not exit 0 on SIGTERM");
		fig.daemon_crashes++;
	}
	if (daemon_start() != 0)
		camp_warn("vmmd did not start again");
}

/* Kills children and vmmd, removes the temp dir.  The signal handler runs it
 * too: kill, waitpid, unlink, rmdir and a directory walk only. */
static void
camp_cleanup(void)
{
	struct dirent *de;
	char path[sizeof(g_dir) + sizeof(de->d_name) + 1];
	DIR *d;
	int i;

	for (i = 0; i < g_nkids; i++) {
		kill(g_kids[i], SIGKILL);
		waitpid(g_kids[i], NULL, 0);
	}
	g_nkids = 0;
	if (g_daemon > 0) {
		kill(g_daemon, SIGKILL);
		waitpid(g_daemon, NULL, 0);
		g_daemon = -1;
	}
	if (g_shm[0] != '\0')
		unlink(g_shm);
	if (g_dir[0] != '\0' && !g_keep && (d = opendir(g_dir)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", g_dir, de->d_name);
			unlink(path);
		}
		closedir(d);
		rmdir(g_dir);
	}
}

static void
camp_on_signal(int sig)
{
	static const char msg[] = CAMP_NAME ": interrupted, stopping vmmd\n";

	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* nothing to do */
	}
	camp_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* ---- a non-fatal client for this process (testclient's CHECKs exit) ------ */

/* Hello as an app or admin; NULL if vmmd does not answer properly. */
static struct tc *
cp_open(const char *name, bool admin)
{
	Vmm__Hello h = VMM__HELLO__INIT;
	const Vmm__HelloReply *r;
	struct tc *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if (vmm_sess_connect(&c->s, g_sock, CAMP_IO_MS) != 0)
		goto fail;
	c->fd = vmm_sess_fd(c->s);
	h.client_name = (char *)name;
	h.kind = admin ? VMM__CLIENT_KIND__CLIENT_KIND_ADMIN :
	    VMM__CLIENT_KIND__CLIENT_KIND_APP;
	if (vmm_sess_hello(c->s, &h, CAMP_IO_MS) != 0)
		goto fail;
	r = vmm_sess_hello_reply(c->s);
	c->session_id = r->session_id;
	c->granularity = r->granularity;
	return c;
fail:
	tc_close(c);
	return NULL;
}

/* A request answered by its reply (not an Error); 0 or -1. */
static int
cp_call(struct tc *c, Vmm__Envelope *env, struct vmm_frame_msg **out)
{
	struct vmm_frame_msg *m;

	if (vmm_sess_call(c->s, env, NULL, 0, CAMP_IO_MS, &m) != 0)
		return -1;
	if (out != NULL)
		*out = m;
	else
		vmm_frame_msg_free(m);
	return 0;
}

/* The pool figures; 0 or -1. */
static int
cp_pool(struct tc *adm, Vmm__PoolStats *pool)
{
	Vmm__StatsRequest sr = VMM__STATS_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_stats_request(&sr);
	struct vmm_frame_msg *m;

	if (adm == NULL)
		return -1;
	if (cp_call(adm, &env, &m) != 0)
		return -1;
	*pool = *vmm_frame_msg_env(m)->stats_reply->pool;
	pool->base.unknown_fields = NULL;
	pool->base.n_unknown_fields = 0;
	vmm_frame_msg_free(m);
	return 0;
}

/* Trim: every idle byte back to the GPU; 0 or -1. */
static int
cp_trim(struct tc *adm)
{
	Vmm__TrimRequest tr = VMM__TRIM_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_trim_request(&tr);

	return cp_call(adm, &env, NULL);
}

/* An ordinary session: Hello, Acquire one granule, Release it; 0 or -1.
 * This is "the daemon still serves" after every batch of faults. */
static int
cp_ordinary(void)
{
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	Vmm__Release rel = VMM__RELEASE__INIT;
	Vmm__Envelope env;
	struct vmm_frame_msg *m;
	const Vmm__Grant *g;
	uint64_t id;
	struct tc *c;
	int rc = -1;

	if (!daemon_alive() || (c = cp_open(CAMP_NAME "-ordinary", false)) == NULL)
		return -1;
	a.bytes = c->granularity;
	env = vmm_frame_env_acquire(&a);
	if (cp_call(c, &env, &m) != 0)
		goto out;
	g = vmm_frame_msg_env(m)->grant;
	id = g->n_chunks > 0 ? g->chunks[0]->id : 0;
	vmm_frame_msg_free(m);
	rel.n_chunk_ids = 1;
	rel.chunk_ids = &id;
	env = vmm_frame_env_release(&rel);
	rc = cp_call(c, &env, NULL);
out:
	tc_close(c);
	return rc;
}

/* ---- the CUDA side (children only) --------------------------------------- */

#define CAMP_XFER	(1u << 20)	/* bytes per copy */
static uint64_t camp_xfer[CAMP_XFER / sizeof(uint64_t)];

/* The pattern word i of an allocation tagged tag. */
static inline uint64_t
pat(uint64_t tag, uint64_t i)
{
	return (tag * 0xff51afd7ed558ccdull) ^ (i * 0x9e3779b97f4a7c15ull) ^ i;
}

/* Writes tag's pattern over the mapping through cuMemcpyHtoD. */
static void
pat_write(const struct tc_mapping *mp, uint64_t tag)
{
	uint64_t off, i, n, w = 0;

	for (off = 0; off < mp->size; off += n * sizeof(uint64_t)) {
		n = (mp->size - off) / sizeof(uint64_t);
		if (n > CAMP_XFER / sizeof(uint64_t))
			n = CAMP_XFER / sizeof(uint64_t);
		for (i = 0; i < n; i++)
			camp_xfer[i] = pat(tag, w++);
		CHECK_OK(cuMemcpyHtoD(mp->va + off, camp_xfer,
		    n * sizeof(uint64_t)));
	}
}

/* Reads the mapping back (cuMemcpyDtoH); true if it holds tag's pattern. */
static bool
pat_check(const struct tc_mapping *mp, uint64_t tag)
{
	uint64_t off, i, n, w = 0;
	bool ok = true;

	for (off = 0; off < mp->size; off += n * sizeof(uint64_t)) {
		n = (mp->size - off) / sizeof(uint64_t);
		if (n > CAMP_XFER / sizeof(uint64_t))
			n = CAMP_XFER / sizeof(uint64_t);
		CHECK_OK(cuMemcpyDtoH(camp_xfer, mp->va + off,
		    n * sizeof(uint64_t)));
		for (i = 0; i < n; i++)
			if (camp_xfer[i] != pat(tag, w++))
				ok = false;
	}
	return ok;
}

static uint64_t
fd_ino(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* True if pid runs (not gone, not a zombie whose mappings are gone). */
static bool
pid_lives(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL || p[1] == '\0' || p[2] == '\0')
		return false;
	return p[2] != 'Z' && p[2] != 'X';
}

/* Records that slot me holds the memory behind ino; counts an overlap if a
 * live other holder has it recorded (it unrecords before it releases). */
static void
slot_add(int me, uint64_t ino)
{
	int j, k;

	for (j = 0; j < CAMP_MAX_WORKERS; j++) {
		int pid = atomic_load(&sh->slot[j].pid);

		if (j == me || pid == 0)
			continue;
		for (k = 0; k < CAMP_SLOT_INOS; k++) {
			if (atomic_load(&sh->slot[j].ino[k]) == ino &&
			    pid_lives(pid)) {
				atomic_fetch_add(&sh->overlaps, 1);
				fprintf(stderr, CAMP_NAME ": pid %d was lent memory "
				    "(inode %" PRIu64 ") that pid %d holds\n",
				    (int)getpid(), ino, pid);
				break;
			}
		}
	}
	for (k = 0; k < CAMP_SLOT_INOS; k++) {
		uint64_t zero = 0;

		if (atomic_compare_exchange_strong(&sh->slot[me].ino[k], &zero,
		    ino))
			return;
	}
}

static void
slot_del(int me, uint64_t ino)
{
	int k;

	for (k = 0; k < CAMP_SLOT_INOS; k++) {
		if (atomic_load(&sh->slot[me].ino[k]) == ino) {
			atomic_store(&sh->slot[me].ino[k], 0);
			return;
		}
	}
}

/* One allocation of a worker. */
struct walloc {
	struct tc_chunk		ch[VMM_PROTO_MAX_CHUNKS];
	size_t			n;
	struct tc_mapping	m;
	uint64_t		tag;
};

/* Acquire, record, map and write; 0, or -1 on an Error reply. */
static int
walloc_get(struct tc *c, int me, struct walloc *w, uint64_t tag)
{
	uint64_t bytes = (1 + rnd_below(CAMP_MAX_GRANULES)) * c->granularity;
	char msg[VMM_PROTO_MAX_MESSAGE + 1];
	int n;
	size_t i;

	n = tc_acquire_ex(c, bytes, VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH,
	    0, w->ch, VMM_PROTO_MAX_CHUNKS, msg, sizeof(msg));
	if (n <= 0) {
		fprintf(stderr, CAMP_NAME ": pid %d: acquire %" PRIu64
		    ": error %d: %s\n", (int)getpid(), bytes, -n, msg);
		return -1;
	}
	w->n = (size_t)n;
	for (i = 0; i < w->n; i++)
		slot_add(me, fd_ino(w->ch[i].fd));
	tc_map(w->ch, w->n, &w->m);
	w->tag = tag;
	pat_write(&w->m, tag);
	return 0;
}

/* Verify, unrecord, unmap and release. */
static void
walloc_put(struct tc *c, int me, struct walloc *w)
{
	uint64_t ids[VMM_PROTO_MAX_CHUNKS];
	size_t i;

	if (!pat_check(&w->m, w->tag)) {
		atomic_fetch_add(&sh->corruptions, 1);
		fprintf(stderr, CAMP_NAME ": pid %d: allocation tag %" PRIx64
		    " changed while held\n", (int)getpid(), w->tag);
	}
	for (i = 0; i < w->n; i++) {
		slot_del(me, fd_ino(w->ch[i].fd));
		ids[i] = w->ch[i].id;
	}
	tc_unmap(&w->m);
	tc_close_chunks(w->ch, w->n);
	CHECK(tc_release(c, ids, w->n) == 0);
	atomic_fetch_add(&sh->cycles, 1);
}

/* Integrity/soak worker in slot (intptr_t)arg: loops acquire, map, write,
 * verify, release until told to stop; reconnects now and then. */
static int
worker_main(void *arg, int ctl)
{
	int me = (int)(intptr_t)arg;
	struct walloc *w;
	struct tc *c;
	uint64_t tag = (uint64_t)getpid() << 24;
	size_t nheld = 0, i;
	unsigned loops = 0;

	(void)ctl;
	g_rng ^= (uint64_t)getpid() << 20;
	atomic_store(&sh->slot[me].pid, getpid());
	CHECK((w = calloc(CAMP_HELD, sizeof(*w))) != NULL);
	tc_cuda_init();
	c = tc_open(g_sock, CAMP_NAME "-worker", false);
	while (!atomic_load(&sh->stop) && loops++ < 1000000) {
		if (nheld == CAMP_HELD || (nheld > 0 && rnd_below(3) == 0)) {
			i = rnd_below(nheld);
			walloc_put(c, me, &w[i]);
			w[i] = w[--nheld];
		} else {
			if (walloc_get(c, me, &w[nheld], ++tag) != 0) {
				atomic_fetch_add(&sh->errors, 1);
				tc_sleep_ms(50);
				continue;
			}
			nheld++;
		}
		if (rnd_below(200) == 0 && nheld == 0) {
			tc_close(c);
			c = tc_open(g_sock, CAMP_NAME "-worker", false);
		}
	}
	while (nheld > 0)
		walloc_put(c, me, &w[--nheld]);
	tc_close(c);
	return 0;
}

/* ---- phase: bad inputs --------------------------------------------------- */

/* A few foreign fds of different kinds, for frames that may not carry any. */
static size_t
foreign_fds(int *fds)
{
	int p[2], sv[2];
	size_t n = 0;

	if ((fds[n] = memfd_create("campaign-foreign", MFD_CLOEXEC)) >= 0) {
		if (ftruncate(fds[n], 2u << 20) == 0)
			n++;
		else
			close(fds[n]);
	}
	if (pipe2(p, O_CLOEXEC) == 0) {
		fds[n++] = p[0];
		close(p[1]);
	}
	if ((fds[n] = eventfd(0, EFD_CLOEXEC)) >= 0)
		n++;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
		fds[n++] = sv[0];
		close(sv[1]);
	}
	if ((fds[n] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
		n++;
	return n;
}

static void
close_fds(int *fds, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		close(fds[i]);
}

/* A packed Hello into out; its length. */
static size_t
pack_hello(unsigned char *out, size_t cap, uint32_t version, size_t uuid_len)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Hello h = VMM__HELLO__INIT;
	static uint8_t uuid[32];

	h.request_id = 1;
	h.protocol_version = version;
	h.client_name = (char *)CAMP_NAME "-bad";
	h.pid = (uint32_t)getpid();
	h.kind = VMM__CLIENT_KIND__CLIENT_KIND_APP;
	h.device_uuid.len = uuid_len;
	h.device_uuid.data = uuid;
	env.msg_case = VMM__ENVELOPE__MSG_HELLO;
	env.hello = &h;
	return tc_pack(&env, out, cap);
}

/* A packed request of a kind chosen by k (some of them not a client's). */
static size_t
pack_other(unsigned char *out, size_t cap, unsigned k)
{
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	Vmm__Release r = VMM__RELEASE__INIT;
	Vmm__Adopt ad = VMM__ADOPT__INIT;
	Vmm__HelloReply hr = VMM__HELLO_REPLY__INIT;
	Vmm__Grant g = VMM__GRANT__INIT;
	Vmm__Chunk ch = VMM__CHUNK__INIT, *chp = &ch;
	Vmm__StatsRequest st = VMM__STATS_REQUEST__INIT;
	Vmm__Recall rc = VMM__RECALL__INIT;
	Vmm__Report rep = VMM__REPORT__INIT;
	static uint64_t ids[4] = { 1, 2, 999999, UINT64_MAX };
	static uint64_t sizes[2] = { 2u << 20, 3 };

	switch (k % 10) {
	case 0:		/* an Acquire of nothing */
	case 1:		/* ... or of everything */
		a.request_id = 7;
		a.bytes = k % 10 == 0 ? 0 : (UINT64_MAX >> (k % 3));
		a.flags = (uint32_t)rnd();
		env.msg_case = VMM__ENVELOPE__MSG_ACQUIRE;
		env.acquire = &a;
		break;
	case 2:		/* a Release of ids never lent */
		r.request_id = 8;
		r.n_chunk_ids = 4;
		r.chunk_ids = ids;
		env.msg_case = VMM__ENVELOPE__MSG_RELEASE;
		env.release = &r;
		break;
	case 3:		/* an Adopt that names fds it does not carry */
		ad.request_id = 9;
		ad.n_sizes = 2;
		ad.sizes = sizes;
		env.msg_case = VMM__ENVELOPE__MSG_ADOPT;
		env.adopt = &ad;
		break;
	case 4:		/* daemon → client messages, sent by a client */
		hr.request_id = 1;
		hr.session_id = 1;
		env.msg_case = VMM__ENVELOPE__MSG_HELLO_REPLY;
		env.hello_reply = &hr;
		break;
	case 5:
		ch.id = 1;
		ch.size = 2u << 20;
		g.request_id = 1;
		g.n_chunks = 1;
		g.chunks = &chp;
		env.msg_case = VMM__ENVELOPE__MSG_GRANT;
		env.grant = &g;
		break;
	case 6:
		rc.recall_id = 1;
		rc.target_bytes = 1;
		env.msg_case = VMM__ENVELOPE__MSG_RECALL;
		env.recall = &rc;
		break;
	case 7:
		st.request_id = 3;
		st.session_offset = (uint32_t)rnd();
		env.msg_case = VMM__ENVELOPE__MSG_STATS_REQUEST;
		env.stats_request = &st;
		break;
	case 8:		/* an envelope with nothing set */
		break;
	default:
		rep.request_id = 4;
		rep.in_use_bytes = rnd();
		rep.cached_bytes = rnd();
		env.msg_case = VMM__ENVELOPE__MSG_REPORT;
		env.report = &rep;
		break;
	}
	return tc_pack(&env, out, cap);
}

/* One malformed session of kind k; returns the foreign fds it sent. */
static size_t
bad_input(unsigned k)
{
	unsigned char buf[4096], hello[256];
	size_t len = 0, hl, nfds = 0, i;
	int fd, fds[8];
	uint32_t big;

	if ((fd = tc_connect_raw(g_sock)) < 0)
		return 0;
	hl = pack_hello(hello, sizeof(hello), VMM_PROTOCOL_VERSION, 0);
	switch (k % 14) {
	case 0:		/* random bytes */
		len = 1 + rnd_below(512);
		for (i = 0; i < len; i++)
			buf[i] = (unsigned char)rnd();
		break;
	case 1:		/* a length over the cap */
		big = VMM_FRAME_MAX + 1 + (uint32_t)rnd_below(UINT32_MAX -
		    VMM_FRAME_MAX - 1);
		memcpy(buf, &big, 4);		/* little-endian host */
		len = 4 + rnd_below(64);
		break;
	case 2:		/* a truncated Hello, then close */
		len = 1 + rnd_below(hl - 1);
		memcpy(buf, hello, len);
		break;
	case 3:		/* a fine length, a body that is not an Envelope */
		len = 4 + 1 + rnd_below(200);
		for (i = 4; i < len; i++)
			buf[i] = (unsigned char)rnd();
		big = (uint32_t)(len - 4);
		memcpy(buf, &big, 4);
		break;
	case 4:		/* a Hello with flipped bits, length intact */
		memcpy(buf, hello, hl);
		len = hl;
		for (i = 0; i < 1 + rnd_below(4); i++)
			buf[4 + rnd_below(hl - 4)] ^= (unsigned char)(1u <<
			    rnd_below(8));
		break;
	case 5:		/* another request before Hello */
		len = pack_other(buf, sizeof(buf), (unsigned)rnd());
		break;
	case 6:		/* Hello carrying fds (it may carry none) */
		memcpy(buf, hello, hl);
		len = hl;
		nfds = foreign_fds(fds);
		break;
	case 7:		/* Hello, then a request carrying fds */
		memcpy(buf, hello, hl);
		len = hl + pack_other(buf + hl, sizeof(buf) - hl, 0);
		break;
	case 8:		/* Hello, then a bad or misdirected request */
		memcpy(buf, hello, hl);
		len = hl + pack_other(buf + hl, sizeof(buf) - hl,
		    (unsigned)rnd());
		break;
	case 9:		/* two Hellos */
		memcpy(buf, hello, hl);
		memcpy(buf + hl, hello, hl);
		len = 2 * hl;
		break;
	case 10:	/* a wrong version, or a wrong device */
		len = rnd_below(2) == 0 ?
		    pack_hello(buf, sizeof(buf), 999, 0) :
		    pack_hello(buf, sizeof(buf), VMM_PROTOCOL_VERSION, 16);
		break;
	case 11:	/* an empty frame */
		memset(buf, 0, 4);
		len = 4 + rnd_below(3);
		break;
	case 12:	/* Hello, then garbage with fds */
		memcpy(buf, hello, hl);
		len = hl;
		break;
	default:	/* Hello, then a Goodbye, then more */
		{
			Vmm__Envelope env = VMM__ENVELOPE__INIT;
			Vmm__Goodbye gb = VMM__GOODBYE__INIT;

			gb.reason = VMM__GOODBYE_REASON__GOODBYE_REASON_CLIENT_EXIT;
			gb.message = (char *)"bye";
			env.msg_case = VMM__ENVELOPE__MSG_GOODBYE;
			env.goodbye = &gb;
			memcpy(buf, hello, hl);
			len = hl + tc_pack(&env, buf + hl, sizeof(buf) - hl);
			len += pack_other(buf + len, sizeof(buf) - len, 2);
		}
		break;
	}
	if (k % 14 == 7 || k % 14 == 12) {
		/* the fds go on the second frame: its own sendmsg */
		tc_send_raw(fd, buf, hl, NULL, 0);
		nfds = foreign_fds(fds);
		if (k % 14 == 12) {
			for (i = 0; i < 64; i++)
				buf[i] = (unsigned char)rnd();
			tc_send_raw(fd, buf, 64, fds, nfds);
		} else
			tc_send_raw(fd, buf + hl, len - hl, fds, nfds);
	} else
		tc_send_raw(fd, buf, len, fds, nfds);
	close_fds(fds, nfds);
	if (rnd_below(8) == 0)
		tc_wait_eof(fd, 200);	/* now and then, let it answer */
	close(fd);
	return nfds;
}

/* n bad inputs in batches, each batch followed by an ordinary session. */
static void
phase_bad_inputs(int n, bool print)
{
	uint64_t t0 = vmm_now_ms(), tried = 0, survived = 0, fds = 0;
	int i, b;

	for (i = 0; i < n; i += CAMP_BATCH) {
		for (b = 0; b < CAMP_BATCH && i + b < n; b++) {
			fds += bad_input((unsigned)rnd());
			tried++;
		}
		if (cp_ordinary() == 0)
			survived += (uint64_t)b;
		else if (!daemon_alive() && daemon_start() != 0)
			break;
	}
	fig.bad_inputs_tried += tried;
	fig.bad_inputs_survived += survived;
	fig.faults_injected += tried;
	fig.faults_survived += survived;
	fig.foreign_fds_sent += fds;
	if (print)
		printf("phase bad_inputs: tried=%" PRIu64 " survived=%" PRIu64
		    " foreign_fds=%" PRIu64 " seconds=%.1f\n", tried, survived,
		    fds, (double)(vmm_now_ms() - t0) / 1000.0);
}

/* ---- phase: hostile fds -------------------------------------------------- */

struct probe {
	pthread_t		thr;
	_Atomic int		stop;
	_Atomic int		hostile;	/* the hostile traffic began */
	double			base_ms;	/* worst before it; after join */
	double			max_ms;		/* worst since; read after join */
	uint64_t		rtts;		/* read after join */
	_Atomic uint64_t	failures;
};

/* Round trips (MemInfo) on an ordinary session until stopped; the worst
 * one is how long the event loop could not answer. */
static void *
probe_main(void *arg)
{
	Vmm__Envelope env;
	Vmm__MemInfoRequest mr = VMM__MEM_INFO_REQUEST__INIT;
	struct probe *p = arg;
	struct timespec t0, t1;
	struct tc *c;
	double ms;

	if ((c = cp_open(CAMP_NAME "-probe", false)) == NULL) {
		p->failures++;
		return NULL;
	}
	while (!atomic_load(&p->stop)) {
		mr.request_id = 0;	/* a fresh one each time */
		env = vmm_frame_env_mem_info_request(&mr);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (cp_call(c, &env, NULL) != 0) {
			p->failures++;
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
		    (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
		if (!atomic_load(&p->hostile)) {
			if (ms > p->base_ms)
				p->base_ms = ms;
		} else if (ms > p->max_ms)
			p->max_ms = ms;
		p->rtts++;
		tc_sleep_ms(1);
	}
	tc_close(c);
	return NULL;
}

/*
 * A loopback TCP connection whose send queue is full and whose peer never
 * reads, with SO_LINGER set: the last close() of *sender sleeps up to
 * linger_s.  *peer is the accepting end, to close once measured.  0 or -1.
 */
static int
linger_socket(int linger_s, int *sender, int *peer)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct linger lg = { .l_onoff = 1, .l_linger = linger_s };
	socklen_t sl = sizeof(sa);
	int ls, s, a, small = 4096, i;
	char chunk[4096];

	memset(chunk, 'x', sizeof(chunk));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	setsockopt(ls, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(ls, (struct sockaddr *)&sa, &sl) != 0 ||
	    listen(ls, 1) != 0 ||
	    (s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		close(ls);
		return -1;
	}
	setsockopt(s, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    (a = accept4(ls, NULL, NULL, SOCK_CLOEXEC)) < 0) {
		close(s);
		close(ls);
		return -1;
	}
	close(ls);
	/* Fill the queue: bounded, the peer's window closes within MiBs. */
	for (i = 0; i < 16384; i++)
		if (send(s, chunk, sizeof(chunk), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			break;
	setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	*sender = s;
	*peer = a;
	return 0;
}

static void
phase_hostile_fds(const struct camp_size *z)
{
	struct probe p = { 0 };
	unsigned char hello[256];
	int peers[8], npeers = 0, i, fd, fds[8], s;
	uint64_t t0 = vmm_now_ms(), sent = 0, end;
	size_t hl, n;
	bool ok;

	if (pthread_create(&p.thr, NULL, probe_main, &p) != 0) {
		camp_warn("pthread_create failed");
		return;
	}
	tc_sleep_ms(200);		/* the probe's own baseline */
	atomic_store(&p.hostile, 1);
	hl = pack_hello(hello, sizeof(hello), VMM_PROTOCOL_VERSION, 0);
	/* The lingering sockets: before Hello, on a Hello (no fds allowed),
	 * then the sender closes its copy and its connection. */
	for (i = 0; i < z->linger_socks && npeers < 8; i++) {
		if (linger_socket(z->linger_s, &s, &peers[npeers]) != 0) {
			camp_warn("loopback TCP socket: %s", strerror(errno));
			continue;
		}
		npeers++;
		if ((fd = tc_connect_raw(g_sock)) >= 0) {
			if (i % 2 == 0)
				tc_send_raw(fd, hello, hl, &s, 1);
			else {
				/* after Hello, on a request that carries none */
				tc_send_raw(fd, hello, hl, NULL, 0);
				tc_sleep_ms(20);
				n = pack_other(hello + hl, sizeof(hello) - hl, 2);
				tc_send_raw(fd, hello + hl, n, &s, 1);
			}
			sent++;
			close(fd);
		}
		close(s);
		tc_sleep_ms(50);
	}
	/* Ordinary foreign fds: memfd, pipe, eventfd, socket, /dev/null. */
	for (i = 0; i < z->foreign_fds; i++) {
		if ((fd = tc_connect_raw(g_sock)) < 0)
			continue;
		n = foreign_fds(fds);
		tc_send_raw(fd, hello, hl, fds, n);
		sent += n;
		close_fds(fds, n);
		close(fd);
	}
	/* Long enough for every linger to run out, bounded. */
	end = t0 + 200 + (uint64_t)z->linger_socks * (uint64_t)z->linger_s *
	    1000 + 1500;
	while (vmm_now_ms() < end && atomic_load(&p.failures) == 0)
		tc_sleep_ms(20);
	atomic_store(&p.stop, 1);
	pthread_join(p.thr, NULL);
	for (i = 0; i < npeers; i++)
		close(peers[i]);
	ok = cp_ordinary() == 0;
	fig.foreign_fds_sent += sent;
	fig.faults_injected += sent;
	if (ok)
		fig.faults_survived += sent;
	if (p.max_ms > fig.loop_stall_max_ms)
		fig.loop_stall_max_ms = p.max_ms;
	printf("phase hostile_fds: fds=%" PRIu64 " linger_sockets=%d linger_s=%d"
	    " probe_rtts=%" PRIu64 " probe_failures=%" PRIu64
	    " baseline_max_ms=%.1f loop_stall_max_ms=%.1f served_after=%s\n",
	    sent, npeers, z->linger_s, p.rtts,
	    (uint64_t)atomic_load(&p.failures), p.base_ms, p.max_ms,
	    ok ? "yes" : "no");
}

/* ---- phase: slow loris --------------------------------------------------- */

static void
phase_slow_loris(int n)
{
	static int fds[CAMP_MAX_LORIS];
	unsigned char hello[256];
	uint64_t t0, end, last = 0;
	int i, open = 0, dropped = 0, served = 0;
	size_t hl;

	if (n > CAMP_MAX_LORIS)
		n = CAMP_MAX_LORIS;
	hl = pack_hello(hello, sizeof(hello), VMM_PROTOCOL_VERSION, 0);
	t0 = vmm_now_ms();
	for (i = 0; i < n; i++) {
		if ((fds[i] = tc_connect_raw(g_sock)) < 0)
			continue;
		open++;
		switch (i % 3) {
		case 0:		/* nothing at all */
			break;
		case 1:		/* half a header */
			tc_send_raw(fds[i], hello, 2, NULL, 0);
			break;
		default:	/* a header and part of the body */
			tc_send_raw(fds[i], hello, hl - 3, NULL, 0);
			break;
		}
	}
	/* An ordinary client is served while they hang on. */
	for (i = 0; i < 3; i++)
		if (cp_ordinary() == 0)
			served++;
	/* ... and the daemon drops them after its handshake timeout. */
	end = t0 + CAMP_HANDSHAKE_MS + 3000;
	for (i = 0; i < n; i++) {
		if (fds[i] < 0)
			continue;
		if (tc_wait_eof(fds[i], (int)(end > vmm_now_ms() ?
		    end - vmm_now_ms() : 1)) == 0) {
			dropped++;
			last = vmm_now_ms() - t0;
		}
		close(fds[i]);
	}
	fig.loris_connections += (uint64_t)open;
	fig.loris_dropped += (uint64_t)dropped;
	fig.loris_served += (uint64_t)served;
	fig.faults_injected += (uint64_t)open;
	if (served == 3 && daemon_alive())
		fig.faults_survived += (uint64_t)open;
	printf("phase slow_loris: connections=%d served_meanwhile=%d/3 "
	    "dropped=%d last_drop_ms=%" PRIu64 " handshake_timeout_ms=%d\n",
	    open, served, dropped, last, CAMP_HANDSHAKE_MS);
}

/* ---- lent bytes back to baseline ----------------------------------------- */

/* Waits until the pool lends (and quarantines) no more than base; returns
 * what it still holds above it. */
static uint64_t
settle(uint64_t base, Vmm__PoolStats *last)
{
	uint64_t end = vmm_now_ms() + CAMP_SETTLE_MS, held = 0;
	Vmm__PoolStats pool;
	struct tc *adm;

	if ((adm = cp_open(CAMP_NAME "-admin", true)) == NULL)
		return UINT64_MAX;
	do {
		if (cp_pool(adm, &pool) != 0) {
			held = UINT64_MAX;
			break;
		}
		held = pool.lent_bytes + pool.quarantined_bytes;
		if (last != NULL)
			*last = pool;
		if (held <= base)
			break;
		tc_sleep_ms(50);
	} while (vmm_now_ms() < end);
	tc_close(adm);
	return held > base ? held - base : 0;
}

/* ---- phase: clients SIGKILLed mid-grant ---------------------------------- */

static int
killee_main(void *arg, int ctl)
{
	struct tc_chunk ch[VMM_PROTO_MAX_CHUNKS];
	struct tc_mapping m;
	struct tc *c;
	int n;

	(void)arg;
	g_rng ^= (uint64_t)getpid() << 20;
	tc_cuda_init();
	c = tc_open(g_sock, CAMP_NAME "-killee", false);
	n = tc_acquire(c, (1 + rnd_below(CAMP_MAX_GRANULES)) * c->granularity,
	    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH, ch,
	    VMM_PROTO_MAX_CHUNKS);
	CHECK(n > 0);
	tc_map(ch, (size_t)n, &m);
	pat_write(&m, (uint64_t)getpid());
	/* Another request in flight when the signal comes, now and then. */
	if (rnd_below(2) == 0)
		tc_release_nowait(c, &ch[0].id, 1);
	tc_ctl_send(ctl, "R", 1);
	tc_sleep_ms(30000);	/* bounded: the parent kills us long before */
	return 0;
}

static void
phase_sigkill(const struct camp_size *z)
{
	pid_t pids[64];
	int ctls[64], i, k, done = 0, killed = 0, mapped = 0;
	uint64_t lost, t0 = vmm_now_ms(), lent_max = 0;
	Vmm__PoolStats pool;
	struct tc *adm;
	char b;

	memset(&pool, 0, sizeof(pool));
	adm = cp_open(CAMP_NAME "-admin", true);
	while (done < z->killed) {
		int w = z->wave < z->killed - done ? z->wave : z->killed - done;

		if (w > 64)
			w = 64;
		for (i = 0; i < w; i++)
			pids[i] = kid_spawn(killee_main, NULL, &ctls[i]);
		/* Half of them at any moment of their start-up and grant... */
		for (i = 0; i < w; i += 2) {
			tc_sleep_ms((int)rnd_below(10));
			kill(pids[i], SIGKILL);
		}
		/* ... half once they have mapped and written their chunks. */
		for (i = 1; i < w; i += 2)
			if (ctl_recv(ctls[i], &b, 1, CAMP_IO_MS) == 1)
				mapped++;
		if (cp_pool(adm, &pool) == 0 && pool.lent_bytes > lent_max)
			lent_max = pool.lent_bytes;
		for (i = 1; i < w; i += 2)
			kill(pids[i], SIGKILL);
		for (i = 0; i < w; i++) {
			k = kid_reap(pids[i]);
			close(ctls[i]);
			if (k == 128 + SIGKILL)
				killed++;
			else if (k != 0)
				fig.load_errors++;
		}
		done += w;
	}
	tc_close(adm);
	lost = settle(0, &pool);
	fig.clients_killed += (uint64_t)killed;
	fig.faults_injected += (uint64_t)killed;
	if (cp_ordinary() == 0)
		fig.faults_survived += (uint64_t)killed;
	fig.bytes_lost += lost;
	printf("phase sigkill: clients_killed=%d mapped_when_killed=%d "
	    "lent_at_kill_max=%" PRIu64 " lent_after=%" PRIu64
	    " quarantined_after=%" PRIu64 " bytes_lost=%" PRIu64
	    " seconds=%.1f\n", killed, mapped, lent_max,
	    (uint64_t)pool.lent_bytes, (uint64_t)pool.quarantined_bytes, lost,
	    (double)(vmm_now_ms() - t0) / 1000.0);
}

/* ---- phase: integrity (and the soak) ------------------------------------- */

static pid_t	w_pid[CAMP_MAX_WORKERS];
static int	w_ctl[CAMP_MAX_WORKERS];

static void
worker_start(int i)
{
	memset(&sh->slot[i], 0, sizeof(sh->slot[i]));
	w_pid[i] = kid_spawn(worker_main, (void *)(intptr_t)i, &w_ctl[i]);
}

/* Reaps worker i; counts it as failed unless it exited 0 or was killed
 * on purpose (killed). */
static void
worker_reap(int i, bool killed)
{
	int k = kid_reap(w_pid[i]);

	close(w_ctl[i]);
	if (!(k == 0 || (killed && k == 128 + SIGKILL))) {
		camp_warn("worker %d: exit %d", (int)w_pid[i], k);
		fig.load_errors++;
	}
	atomic_store(&sh->slot[i].pid, 0);
	w_pid[i] = -1;
}

/* Adds what the workers counted to the figures and zeroes it. */
static void
workers_collect(void)
{
	uint64_t c = atomic_exchange(&sh->corruptions, 0);
	uint64_t o = atomic_exchange(&sh->overlaps, 0);

	fig.load_cycles += atomic_exchange(&sh->cycles, 0);
	fig.load_errors += atomic_exchange(&sh->errors, 0);
	fig.corruptions += c;
	fig.inode_overlaps += o;
	fig.chunks_lent_twice += c + o;
}

/* procs workers for ms; settle: all they held must come back. */
static void
phase_integrity(const char *label, int procs, int ms, bool settle_after)
{
	uint64_t cyc0 = fig.load_cycles, c0 = fig.corruptions,
	    o0 = fig.inode_overlaps, lost;
	int i;

	if (procs > CAMP_MAX_WORKERS)
		procs = CAMP_MAX_WORKERS;
	atomic_store(&sh->stop, 0);
	for (i = 0; i < procs; i++)
		worker_start(i);
	tc_sleep_ms(ms);
	atomic_store(&sh->stop, 1);
	for (i = 0; i < procs; i++)
		worker_reap(i, false);
	workers_collect();
	lost = settle_after ? settle(0, NULL) : 0;
	fig.bytes_lost += lost;
	printf("phase %s: procs=%d cycles=%" PRIu64 " corruptions=%"
	    PRIu64 " inode_overlaps=%" PRIu64 " bytes_lost=%" PRIu64 "\n",
	    label, procs, fig.load_cycles - cyc0, fig.corruptions - c0,
	    fig.inode_overlaps - o0, lost);
}

/* ---- phase: Adopt attacks (one child, several sessions) ------------------ */

/* Sends Adopt of dups of fds (sizes each); the number of chunks adopted
 * (non-zero ids in the AdoptReply, all ids into ids; 0 is a refusal),
 * -code on an Error, or -1000 on no reply. */
static int
adopt(struct tc *c, const int *fds, const uint64_t *sizes, size_t n,
    uint64_t *ids)
{
	Vmm__Adopt a = VMM__ADOPT__INIT;
	Vmm__Envelope env = vmm_frame_env_adopt(&a);
	const Vmm__AdoptReply *r;
	struct vmm_frame_msg *m;
	int d[VMM_PROTO_MAX_CHUNKS], rc;
	size_t i;

	for (i = 0; i < n; i++)
		CHECK((d[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0)) >= 0);
	a.n_sizes = n;
	a.sizes = (uint64_t *)sizes;
	rc = vmm_sess_call(c->s, &env, d, n, CAMP_IO_MS, &m);
	if (rc == VMM_SESS_EREFUSED)
		return -(int)vmm_sess_error(c->s)->code;
	if (rc != 0)
		return -1000;
	r = vmm_frame_msg_env(m)->adopt_reply;
	for (i = 0; i < r->n_chunk_ids && i < n; i++)
		if ((ids[i] = r->chunk_ids[i]) != 0)
			rc++;
	vmm_frame_msg_free(m);
	return rc;
}

static uint64_t
att_chunks(struct tc *adm)
{
	Vmm__PoolStats p;

	tc_pool(adm, &p);
	return p.chunks;
}

/*
 * A victim session takes up to CAMP_VICTIM_TRIES one-granule chunks,
 * looking for the memory behind fd (which someone else holds, or holds a
 * second record of).  If it meets it, it writes its pattern, the holder
 * writes through fd, and the victim reads back: *corrupt is set if its data
 * changed.  Returns true if the victim was lent that memory.
 */
static bool
att_victim(int fd, uint64_t size, bool *corrupt)
{
	struct tc_chunk ch[CAMP_VICTIM_TRIES], other;
	struct tc_mapping mv, mo;
	uint64_t ino = fd_ino(fd);
	struct tc *v;
	int i, n, got = 0;
	bool hit = false;

	*corrupt = false;
	v = tc_open(g_sock, CAMP_NAME "-victim", false);
	for (i = 0; i < CAMP_VICTIM_TRIES && !hit; i++) {
		n = tc_acquire(v, v->granularity, 0, &ch[got], 1);
		if (n != 1)
			break;
		hit = fd_ino(ch[got].fd) == ino;
		got++;
	}
	if (hit) {
		tc_map(&ch[got - 1], 1, &mv);
		other.fd = fd;
		other.size = size;
		other.id = 0;
		tc_map(&other, 1, &mo);
		pat_write(&mv, 0xb1c7);		/* the victim's data */
		pat_write(&mo, 0xa77ac);	/* the other holder's */
		*corrupt = !pat_check(&mv, 0xb1c7);
		tc_unmap(&mo);
		tc_unmap(&mv);
	}
	tc_close_chunks(ch, (size_t)got);
	tc_close(v);	/* its chunks stay quarantined until we exit */
	return hit;
}

/* Tallies one attack case. */
static void
att_case(const char *name, int accepted, uint64_t chunks_before,
    uint64_t chunks_after, bool lent_two, bool corrupt)
{
	bool dbl = accepted > 0 && chunks_after > chunks_before;

	atomic_fetch_add(&sh->att_cases, 1);
	if (accepted > 0)
		atomic_fetch_add(&sh->att_accepted, 1);
	if (dbl)
		atomic_fetch_add(&sh->att_double, 1);
	if (lent_two)
		atomic_fetch_add(&sh->att_lent_two, 1);
	if (corrupt)
		atomic_fetch_add(&sh->att_corrupt, 1);
	if (dbl || lent_two || corrupt)
		atomic_fetch_add(&sh->att_evidence, 1);
	fprintf(stderr, CAMP_NAME ": adopt %-12s %s%s%s%s\n", name,
	    accepted > 0 ? "accepted" : "refused",
	    dbl ? ", second record" : "", lent_two ? ", lent to two" : "",
	    corrupt ? ", data overwritten" : "");
}

static int
attack_main(void *arg, int ctl)
{
	struct tc_chunk x;
	struct tc *a, *b, *adm;
	uint64_t before, ids[2], sizes[2];
	int kept, fds[2], acc, acc2;
	bool lent, corrupt;
	CUmemGenericAllocationHandle h;
	CUmemAllocationProp prop = { 0 };

	(void)arg;
	(void)ctl;
	tc_cuda_init();
	adm = tc_open(g_sock, CAMP_NAME "-attack-admin", true);

	/* 1. keep a chunk's fd after Release, then Adopt it. */
	a = tc_open(g_sock, CAMP_NAME "-attacker", false);
	CHECK(tc_acquire(a, a->granularity, 0, &x, 1) == 1);
	CHECK((kept = dup(x.fd)) >= 0);
	tc_close_chunks(&x, 1);
	CHECK(tc_release(a, &x.id, 1) == 0);
	before = att_chunks(adm);
	acc = adopt(a, &kept, &x.size, 1, ids);
	lent = acc > 0 && att_victim(kept, x.size, &corrupt);
	att_case("kept_fd", acc, before, att_chunks(adm), lent,
	    lent && corrupt);
	close(kept);
	tc_close(a);

	/* 2. Adopt the fd of a chunk the session holds, release the record. */
	a = tc_open(g_sock, CAMP_NAME "-attacker", false);
	CHECK(tc_acquire(a, a->granularity, 0, &x, 1) == 1);
	before = att_chunks(adm);
	acc = adopt(a, &x.fd, &x.size, 1, ids);
	corrupt = false;
	lent = acc > 0 && tc_release(a, ids, 1) == 0 &&
	    att_victim(x.fd, x.size, &corrupt);
	att_case("held_fd", acc, before, att_chunks(adm), lent,
	    lent && corrupt);
	tc_close_chunks(&x, 1);
	tc_close(a);

	/* 3. Another session adopts a chunk this one holds. */
	a = tc_open(g_sock, CAMP_NAME "-attacker", false);
	b = tc_open(g_sock, CAMP_NAME "-attacker2", false);
	CHECK(tc_acquire(a, a->granularity, 0, &x, 1) == 1);
	before = att_chunks(adm);
	acc = adopt(b, &x.fd, &x.size, 1, ids);
	corrupt = false;
	lent = acc > 0 && tc_release(b, ids, 1) == 0 &&
	    att_victim(x.fd, x.size, &corrupt);
	att_case("other_session", acc, before, att_chunks(adm), lent,
	    lent && corrupt);
	tc_close_chunks(&x, 1);
	tc_close(b);
	tc_close(a);

	/* 4. Memory vmmd never lent, adopted twice: the first is fair. */
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = 0;
	prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
	a = tc_open(g_sock, CAMP_NAME "-attacker", false);
	sizes[0] = sizes[1] = a->granularity;
	CHECK_OK(cuMemCreate(&h, sizes[0], &prop, 0));
	CHECK_OK(cuMemExportToShareableHandle(&fds[0], h,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
	acc = adopt(a, &fds[0], sizes, 1, ids);
	before = att_chunks(adm);
	acc2 = adopt(a, &fds[0], sizes, 1, &ids[1]);
	corrupt = false;
	lent = acc > 0 && acc2 > 0 && tc_release(a, &ids[1], 1) == 0 &&
	    att_victim(fds[0], sizes[0], &corrupt);
	att_case("same_fd_twice", acc > 0 ? acc2 : 0, before,
	    att_chunks(adm), lent, lent && corrupt);
	tc_close(a);

	/* 5. One Adopt naming the same memory twice. */
	a = tc_open(g_sock, CAMP_NAME "-attacker", false);
	CHECK_OK(cuMemExportToShareableHandle(&fds[1], h,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
	before = att_chunks(adm);
	acc = adopt(a, fds, sizes, 2, ids);
	/* h is tracked already (case 4's records, quarantined): any
	 * record more is a second one. */
	att_case("one_msg_twice", acc, before, att_chunks(adm), false, false);
	close(fds[0]);
	close(fds[1]);
	CHECK_OK(cuMemRelease(h));
	tc_close(a);
	tc_close(adm);
	return 0;
}

static void
phase_adopt_attacks(void)
{
	pid_t pid;
	int ctl, k;
	uint64_t cases;
	bool ok;

	atomic_store(&sh->att_cases, 0);
	pid = kid_spawn(attack_main, NULL, &ctl);
	k = kid_reap(pid);
	close(ctl);
	if (k != 0) {
		camp_warn("adopt attacker: exit %d", k);
		fig.load_errors++;
	}
	cases = atomic_load(&sh->att_cases);
	ok = cp_ordinary() == 0;
	fig.faults_injected += cases;
	if (ok)
		fig.faults_survived += cases;
	fig.double_records += atomic_load(&sh->att_double);
	fig.corruptions += atomic_load(&sh->att_corrupt);
	fig.chunks_lent_twice += atomic_load(&sh->att_evidence);
	fig.bytes_lost += settle(0, NULL);
	printf("phase adopt_attacks: cases=%" PRIu64 " accepted=%" PRIu64
	    " second_records=%" PRIu64 " lent_to_two=%" PRIu64
	    " data_overwritten=%" PRIu64 " served_after=%s\n", cases,
	    (uint64_t)atomic_load(&sh->att_accepted),
	    (uint64_t)atomic_load(&sh->att_double),
	    (uint64_t)atomic_load(&sh->att_lent_two),
	    (uint64_t)atomic_load(&sh->att_corrupt), ok ? "yes" : "no");
}

/* ---- phase: daemon SIGKILL and restart ----------------------------------- */

struct rs_result {
	uint32_t	allocs, ok_before, ok_after, adopt_refused;
};

/* Holds two allocations across a daemon kill, adopts them in the new
 * daemon, checks the data before and after others used the new pool. */
static int
restarter_main(void *arg, int ctl)
{
	struct tc_chunk ch[2][VMM_PROTO_MAX_CHUNKS];
	struct tc_mapping m[2];
	uint64_t ids[VMM_PROTO_MAX_CHUNKS], tag = (uint64_t)getpid() << 8;
	struct rs_result res = { 0 };
	int n[2], fds[VMM_PROTO_MAX_CHUNKS], i, k;
	struct tc *c;
	char b;

	(void)arg;
	tc_cuda_init();
	c = tc_open(g_sock, CAMP_NAME "-restart", false);
	for (i = 0; i < 2; i++) {
		n[i] = tc_acquire(c, (uint64_t)(2 + i) * c->granularity,
		    VMM__ACQUIRE_FLAG__ACQUIRE_FLAG_ALLOW_STITCH, ch[i],
		    VMM_PROTO_MAX_CHUNKS);
		CHECK(n[i] > 0);
		tc_map(ch[i], (size_t)n[i], &m[i]);
		tc_close_chunks(ch[i], (size_t)n[i]);
		pat_write(&m[i], tag + (uint64_t)i);
	}
	tc_ctl_send(ctl, "R", 1);
	tc_ctl_recv(ctl, &b, 1, 60000);		/* 'K': vmmd is back */
	tc_close(c);
	c = tc_open(g_sock, CAMP_NAME "-restart", false);
	for (i = 0; i < 2; i++) {
		res.allocs++;
		for (k = 0; k < n[i]; k++)
			CHECK_OK(cuMemExportToShareableHandle(&fds[k],
			    m[i].h[k], CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
			    0));
		if (adopt(c, fds, m[i].sizes, (size_t)n[i], ids) != n[i])
			res.adopt_refused++;
		for (k = 0; k < n[i]; k++)
			close(fds[k]);
		if (pat_check(&m[i], tag + (uint64_t)i))
			res.ok_before++;
	}
	tc_ctl_send(ctl, "A", 1);
	tc_ctl_recv(ctl, &b, 1, 60000);		/* 'V': others were served */
	for (i = 0; i < 2; i++) {
		if (pat_check(&m[i], tag + (uint64_t)i))
			res.ok_after++;
		tc_unmap(&m[i]);
	}
	tc_close(c);	/* the adopted chunks come back when we exit */
	tc_ctl_send(ctl, &res, sizeof(res));
	return 0;
}

static void
phase_daemon_restart(const struct camp_size *z)
{
	pid_t pids[8];
	int ctls[8], i, np = z->restart_procs > 8 ? 8 : z->restart_procs;
	struct rs_result res, tot = { 0 };
	bool up, ok;
	uint64_t lost;
	char b;

	for (i = 0; i < np; i++)
		pids[i] = kid_spawn(restarter_main, NULL, &ctls[i]);
	for (i = 0; i < np; i++)
		if (ctl_recv(ctls[i], &b, 1, CAMP_IO_MS) != 1)
			camp_warn("restart client %d not ready", (int)pids[i]);
	kill(g_daemon, SIGKILL);
	waitpid(g_daemon, NULL, 0);
	g_daemon = -1;
	fig.daemon_kills++;
	fig.faults_injected++;
	up = daemon_start() == 0;
	for (i = 0; i < np; i++)
		send(ctls[i], "K", 1, MSG_NOSIGNAL);
	for (i = 0; i < np; i++)
		ctl_recv(ctls[i], &b, 1, CAMP_IO_MS);
	/* Others use the new pool meanwhile. */
	if (up)
		phase_integrity("restart_load", z->procs > 2 ? 2 :
		    z->procs, 1000, false);
	for (i = 0; i < np; i++)
		send(ctls[i], "V", 1, MSG_NOSIGNAL);
	for (i = 0; i < np; i++) {
		memset(&res, 0, sizeof(res));
		if (ctl_recv(ctls[i], &res, sizeof(res), CAMP_IO_MS) !=
		    (ssize_t)sizeof(res))
			camp_warn("restart client %d: no result", (int)pids[i]);
		tot.allocs += res.allocs;
		tot.ok_before += res.ok_before;
		tot.ok_after += res.ok_after;
		tot.adopt_refused += res.adopt_refused;
		if (kid_reap(pids[i]) != 0)
			fig.load_errors++;
		close(ctls[i]);
	}
	lost = up ? settle(0, NULL) : 0;
	fig.bytes_lost += lost;
	fig.restart_allocs += 2u * (unsigned)np;
	fig.restart_allocs_ok += tot.ok_after;
	ok = up && cp_ordinary() == 0 && tot.ok_after == 2u * (unsigned)np &&
	    tot.adopt_refused == 0;
	if (ok)
		fig.faults_survived++;
	printf("phase daemon_restart: kills=1 restarted=%s allocations=%d "
	    "data_ok_after_adopt=%u data_ok_at_end=%u adopt_refused=%u "
	    "bytes_lost=%" PRIu64 "\n", up ? "yes" : "no", 2 * np,
	    tot.ok_before, tot.ok_after, tot.adopt_refused, lost);
	if (!up)
		daemon_start();
}

/* ---- phase: the real client library (shim) ------------------------------- */

static char	g_app[PATH_MAX], g_preload[PATH_MAX];

/* Runs n vmm-campaign-app processes under the shim for ms with the given
 * VMM_CONNECT_TIMEOUT_MS; adds up their last lines. */
static void
shim_round(int n, int ms, const char *timeout_ms, bool stall,
    uint64_t *cycles, uint64_t *corrupt, uint64_t *errors, int *failed,
    int *stops)
{
	uint64_t end;
	char out[sizeof(g_dir) + 32], arg1[32], arg2[32], line[CAMP_LINE];
	unsigned long long c, k, e;
	pid_t pids[8];
	FILE *f;
	int i, st, fd;

	if (n > 8)
		n = 8;
	snprintf(arg1, sizeof(arg1), "%d", ms);
	for (i = 0; i < n; i++) {
		snprintf(out, sizeof(out), "%s/app-%d.out", g_dir, i);
		snprintf(arg2, sizeof(arg2), "%llu", (unsigned long long)rnd());
		fflush(NULL);
		if ((pids[i] = fork()) == 0) {
			char *const argv[] = { g_app, arg1, arg2, NULL };

			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if ((fd = open(out, O_WRONLY | O_CREAT | O_TRUNC,
			    0600)) >= 0) {
				dup2(fd, STDOUT_FILENO);
				dup2(fd, STDERR_FILENO);
				close(fd);
			}
			setenv("LD_PRELOAD", g_preload, 1);
			setenv("VMM_SOCKET_DIR", g_dir, 1);
			setenv("VMM_REQUIRE_DAEMON", "1", 1);
			setenv("VMM_CONNECT_TIMEOUT_MS", timeout_ms, 1);
			execv(g_app, argv);
			_exit(127);
		}
		if (pids[i] > 0)
			kid_add(pids[i]);
	}
	/* A stopped vmmd: SIGSTOP for 40 ms every 400 ms, so calls time
	 * out in the middle of sessions. */
	for (end = vmm_now_ms() + (uint64_t)ms; stall && vmm_now_ms() + 400 <
	    end && g_daemon > 0; (*stops)++) {
		tc_sleep_ms(360);
		kill(g_daemon, SIGSTOP);
		tc_sleep_ms(40);
		kill(g_daemon, SIGCONT);
	}
	for (i = 0; i < n; i++) {
		if (pids[i] <= 0) {
			(*failed)++;
			continue;
		}
		/* bounded: the app stops at ms; a hung one is killed */
		for (st = 0; st < ms + 20000; st += 10) {
			if (waitpid(pids[i], NULL, WNOHANG) == pids[i])
				break;
			tc_sleep_ms(10);
		}
		if (st >= ms + 20000) {
			camp_warn("shim app %d hung; killed", (int)pids[i]);
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
		}
		kid_forget(pids[i]);
		snprintf(out, sizeof(out), "%s/app-%d.out", g_dir, i);
		c = k = e = 0;
		if ((f = fopen(out, "r")) != NULL) {
			while (fgets(line, sizeof(line), f) != NULL)
				sscanf(line, "cycles=%llu corrupt=%llu "
				    "errors=%llu", &c, &k, &e);
			fclose(f);
		}
		if (c == 0 && k == 0 && e == 0)
			(*failed)++;
		*cycles += c;
		*corrupt += k;
		*errors += e;
	}
}

/*
 * Apps through libvmm_client.so: once with the default call timeout (every
 * call must succeed), once with VMM_CONNECT_TIMEOUT_MS=30 while vmmd is
 * stopped for 40 ms now and then (a timed-out call, then a reconnect that
 * works), then once more as the first: issue 8 item 2 saw the clients
 * *after* such a stall get memory lent twice.  A slow reply may make
 * cudaMalloc wait or fail, never make memory be lent twice.
 */
static void
phase_shim(int procs, int ms)
{
	uint64_t c1 = 0, k1 = 0, e1 = 0, c2 = 0, k2 = 0, e2 = 0;
	uint64_t c3 = 0, k3 = 0, e3 = 0;
	int f1 = 0, f2 = 0, f3 = 0, stops = 0;

	if (access(g_app, X_OK) != 0 || access(g_preload, R_OK) != 0) {
		printf("phase shim: skipped (no %s or %s)\n", g_app, g_preload);
		return;
	}
	shim_round(procs, ms, "2000", false, &c1, &k1, &e1, &f1, &stops);
	shim_round(procs, ms, "30", true, &c2, &k2, &e2, &f2, &stops);
	shim_round(procs, ms, "2000", false, &c3, &k3, &e3, &f3, &stops);
	fig.load_cycles += c1 + c2 + c3;
	fig.load_errors += e1 + e3 + (uint64_t)(f1 + f2 + f3);
	fig.corruptions += k1 + k2 + k3;
	fig.chunks_lent_twice += k1 + k2 + k3;
	fig.faults_injected += (uint64_t)stops;
	if (cp_ordinary() == 0)
		fig.faults_survived += (uint64_t)stops;
	fig.bytes_lost += settle(0, NULL);
	printf("phase shim: procs=%d cycles=%" PRIu64 " corrupt=%" PRIu64
	    " errors=%" PRIu64 " | timeout_30ms, vmmd stopped %d x 40 ms: "
	    "cycles=%" PRIu64 " corrupt=%" PRIu64 " failed_calls=%" PRIu64
	    " apps_failed=%d | after: cycles=%" PRIu64 " corrupt=%" PRIu64
	    " errors=%" PRIu64 "\n", procs, c1, k1, e1 + (uint64_t)f1, stops,
	    c2, k2, e2, f2, c3, k3, e3 + (uint64_t)f3);
}

/* ---- the soak ------------------------------------------------------------ */

static void
phase_soak(int seconds, int procs)
{
	uint64_t t0 = vmm_now_ms(), end = t0 + (uint64_t)seconds * 1000,
	    next = t0 + 10000, kills = 0, shim_cycles = 0, shim_corrupt = 0;
	bool shim = access(g_app, X_OK) == 0 && access(g_preload, R_OK) == 0;
	Vmm__PoolStats pool;
	struct tc *adm;
	int i, tick = 0;

	if (procs > CAMP_MAX_WORKERS)
		procs = CAMP_MAX_WORKERS;
	atomic_store(&sh->stop, 0);
	for (i = 0; i < procs; i++)
		worker_start(i);
	while (vmm_now_ms() < end) {
		tc_sleep_ms(250);
		tick++;
		/* A random SIGKILL about every 3 s, and a fresh worker. */
		if (rnd_below(12) == 0) {
			i = (int)rnd_below((uint64_t)procs);
			kill(w_pid[i], SIGKILL);
			worker_reap(i, true);
			kills++;
			fig.clients_killed++;
			fig.faults_injected++;
			worker_start(i);
		}
		/* Workers that died on their own are load errors. */
		for (i = 0; i < procs; i++) {
			if (waitpid(w_pid[i], NULL, WNOHANG) == w_pid[i]) {
				kid_forget(w_pid[i]);
				camp_warn("soak worker %d died", (int)w_pid[i]);
				fig.load_errors++;
				close(w_ctl[i]);
				atomic_store(&sh->slot[i].pid, 0);
				worker_start(i);
			}
		}
		if (vmm_now_ms() >= next || vmm_now_ms() >= end) {
			next += 10000;
			phase_bad_inputs(CAMP_BATCH, false);
			if (shim) {
				/* two ordinary apps through the shim, 2 s */
				uint64_t c = 0, k = 0, e = 0;
				int f = 0, st = 0;

				shim_round(2, 2000, "2000", false, &c, &k, &e, &f,
				    &st);
				shim_cycles += c;
				shim_corrupt += k;
				fig.load_cycles += c;
				fig.load_errors += e + (uint64_t)f;
				fig.corruptions += k;
				fig.chunks_lent_twice += k;
			}
			memset(&pool, 0, sizeof(pool));
			if ((adm = cp_open(CAMP_NAME "-admin", true)) != NULL) {
				cp_pool(adm, &pool);
				if (tick % 2 == 0)
					cp_trim(adm);
				tc_close(adm);
			}
			printf("soak t=%" PRIu64 "s procs=%d cycles=%" PRIu64
			    " corruptions=%" PRIu64 " inode_overlaps=%" PRIu64
			    " kills=%" PRIu64 " bad_inputs=%" PRIu64
			    " shim_cycles=%" PRIu64 " shim_corrupt=%" PRIu64
			    " lent=%" PRIu64 " physical=%" PRIu64
			    " daemon=%s\n", (vmm_now_ms() - t0) / 1000, procs,
			    fig.load_cycles + atomic_load(&sh->cycles),
			    fig.corruptions + atomic_load(&sh->corruptions),
			    fig.inode_overlaps + atomic_load(&sh->overlaps),
			    kills, fig.bad_inputs_tried, shim_cycles,
			    shim_corrupt,
			    (uint64_t)pool.lent_bytes,
			    (uint64_t)pool.physical_bytes,
			    daemon_alive() ? "up" : "DOWN");
			fflush(stdout);
		}
		if (!daemon_alive())
			break;
	}
	atomic_store(&sh->stop, 1);
	for (i = 0; i < procs; i++)
		worker_reap(i, false);
	workers_collect();
	fig.bytes_lost += settle(0, NULL);
	if (cp_ordinary() == 0)
		fig.faults_survived += kills;
}

/* ---- main ---------------------------------------------------------------- */

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: " CAMP_NAME " [--quick | --soak SECONDS] [--procs N] "
	    "[--seed N]\n"
	    "                    [--vmmd PATH] [--keep]\n"
	    "  (default)      every phase, about a minute\n"
	    "  --quick        every phase, small (a few seconds): the smoke size\n"
	    "  --soak S       S seconds of workers (acquire/map/write/verify/\n"
	    "                 release) with random SIGKILLs, bad-input batches,\n"
	    "                 a progress line every 10 s\n"
	    "  --procs N      worker processes (default 4 for the soak)\n"
	    "  --seed N       random seed (printed; default: the time)\n"
	    "  --vmmd PATH    the daemon (default <build>/daemon/vmmd)\n"
	    "  --keep         keep the temp dir and vmmd's log\n"
	    "Needs the emulator first on LD_LIBRARY_PATH (tools/campaign/run.sh"
	    " does it).\n"
	    "Exit: 0 every invariant held, 1 one did not, 2 usage, 3 the tool"
	    " could not run.\n");
}

static int
find_build_dir(char *out, size_t len)
{
	const char *env = getenv("VMM_BUILD_DIR");
	char exe[PATH_MAX], *slash;
	ssize_t n;
	int i;

	if (env != NULL && *env != '\0')
		return snprintf(out, len, "%s", env) < (int)len ? 0 : -1;
	if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) < 0)
		return -1;
	exe[n] = '\0';
	for (i = 0; i < 2; i++) {
		if ((slash = strrchr(exe, '/')) == NULL || slash == exe)
			return -1;
		*slash = '\0';
	}
	return snprintf(out, len, "%s", exe) < (int)len ? 0 : -1;
}

/* Makes the temp dir, the config and the emulator's environment. */
static int
camp_setup(void)
{
	struct group *gr;
	FILE *f;

	snprintf(g_dir, sizeof(g_dir), "/tmp/vmm-campaign-XXXXXX");
	if (mkdtemp(g_dir) == NULL) {
		g_dir[0] = '\0';
		return -1;
	}
	snprintf(g_sock, sizeof(g_sock), "%s/gpu0.sock", g_dir);
	snprintf(g_conf, sizeof(g_conf), "%s/vmmd.conf", g_dir);
	snprintf(g_log, sizeof(g_log), "%s/vmmd.log", g_dir);
	snprintf(g_instance, sizeof(g_instance), "vmmcampaign-%s",
	    strrchr(g_dir, '-') + 1);
	snprintf(g_shm, sizeof(g_shm), "/dev/shm/cuemu-%s-d0", g_instance);
	if ((f = fopen(g_conf, "w")) == NULL)
		return -1;
	/* Idle chunks stay pooled (so a released chunk is the next one
	 * lent), a short handshake timeout (so slow-loris is measured). */
	fprintf(f, "idle_timeout_ms = 0\nhandshake_timeout_ms = %d\n",
	    CAMP_HANDSHAKE_MS);
	/* Not root: our group may read the pool figures. */
	if (geteuid() != 0 && (gr = getgrgid(getegid())) != NULL)
		fprintf(f, "admin_group = %s\n", gr->gr_name);
	fclose(f);
	setenv("CUEMU_INSTANCE", g_instance, 1);
	setenv("CUEMU_MEM_MB", getenv("VMM_CAMPAIGN_MEM_MB") ?
	    getenv("VMM_CAMPAIGN_MEM_MB") : CAMP_MEM_MB, 1);
	unsetenv("CUEMU_FAIL");
	return 0;
}

static void
print_summary(bool pass)
{
	printf("bad_inputs_tried: %" PRIu64 "\n", fig.bad_inputs_tried);
	printf("foreign_fds_sent: %" PRIu64 "\n", fig.foreign_fds_sent);
	printf("faults_injected: %" PRIu64 "\n", fig.faults_injected);
	printf("faults_survived: %" PRIu64 "\n", fig.faults_survived);
	printf("slow_loris_connections: %" PRIu64 "\n", fig.loris_connections);
	printf("slow_loris_dropped: %" PRIu64 "\n", fig.loris_dropped);
	printf("clients_killed: %" PRIu64 "\n", fig.clients_killed);
	printf("daemon_kills: %" PRIu64 "\n", fig.daemon_kills);
	printf("daemon_crashes: %" PRIu64 "\n", fig.daemon_crashes);
	printf("load_cycles: %" PRIu64 "\n", fig.load_cycles);
	printf("load_errors: %" PRIu64 "\n", fig.load_errors);
	printf("restart_data_ok: %" PRIu64 "/%" PRIu64 "\n",
	    fig.restart_allocs_ok, fig.restart_allocs);
	printf("bytes_lost: %" PRIu64 "\n", fig.bytes_lost);
	printf("adopt_second_records: %" PRIu64 "\n", fig.double_records);
	printf("inode_overlaps: %" PRIu64 "\n", fig.inode_overlaps);
	printf("data_corruptions: %" PRIu64 "\n", fig.corruptions);
	printf("chunks_lent_twice: %" PRIu64 "\n", fig.chunks_lent_twice);
	printf("loop_stall_max_ms: %.1f\n", fig.loop_stall_max_ms);
	printf("verdict: %s\n", pass ? "PASS" : "FAIL");
}

/* Every invariant, each failure named on stderr. */
static bool
verdict(bool soak)
{
	bool ok = true;

#define INV(cond, what)	do { if (!(cond)) { camp_warn("FAILED: %s", what); \
	ok = false; } } while (0)
	INV(fig.daemon_crashes == 0, "vmmd crashed");
	INV(fig.faults_survived == fig.faults_injected,
	    "vmmd did not serve after every fault");
	INV(fig.bytes_lost == 0, "bytes lost");
	INV(fig.chunks_lent_twice == 0, "chunks lent twice");
	INV(fig.load_errors == 0, "load errors");
	INV(fig.restart_allocs_ok == fig.restart_allocs,
	    "data lost across a daemon restart");
	if (!soak) {
		INV(fig.loop_stall_max_ms < CAMP_STALL_TARGET_MS,
		    "event-loop stall of 10 ms or more");
		INV(fig.loris_dropped == fig.loris_connections,
		    "slow-loris connections not dropped");
	}
#undef INV
	return ok;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "soak", required_argument, NULL, 's' },
		{ "procs", required_argument, NULL, 'p' },
		{ "seed", required_argument, NULL, 'r' },
		{ "vmmd", required_argument, NULL, 'v' },
		{ "keep", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct camp_size z = camp_default;
	char build[PATH_MAX], *end;
	const char *vmmd = NULL;
	long soak = 0, procs = 0;
	unsigned long long seed = (unsigned long long)time(NULL) ^
	    ((unsigned long long)getpid() << 32);
	bool quick = false, pass;
	uint64_t t0 = vmm_now_ms();
	int ch;

	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'q':
			quick = true;
			break;
		case 's':
			errno = 0;
			soak = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || soak < 1 ||
			    soak > 7 * 86400) {
				camp_warn("--soak \"%s\": seconds, 1..604800",
				    optarg);
				return CAMP_EXIT_USAGE;
			}
			break;
		case 'p':
			errno = 0;
			procs = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || procs < 1 ||
			    procs > CAMP_MAX_WORKERS) {
				camp_warn("--procs \"%s\": 1..%d", optarg,
				    CAMP_MAX_WORKERS);
				return CAMP_EXIT_USAGE;
			}
			break;
		case 'r':
			errno = 0;
			seed = strtoull(optarg, &end, 0);
			if (errno != 0 || *end != '\0' || *optarg == '\0') {
				camp_warn("--seed \"%s\": a number", optarg);
				return CAMP_EXIT_USAGE;
			}
			break;
		case 'v':
			vmmd = optarg;
			break;
		case 'k':
			g_keep = true;
			break;
		case 'h':
			usage(stdout);
			return CAMP_EXIT_PASS;
		default:
			usage(stderr);
			return CAMP_EXIT_USAGE;
		}
	}
	if (optind != argc || (quick && soak != 0)) {
		usage(stderr);
		return CAMP_EXIT_USAGE;
	}
	if (quick)
		z = camp_quick;
	if (procs > 0)
		z.procs = (int)procs;
	else if (soak != 0)
		z.procs = 4;
	g_rng = seed != 0 ? seed : 1;
	if (find_build_dir(build, sizeof(build)) != 0 ||
	    snprintf(g_vmmd, sizeof(g_vmmd), "%s", vmmd != NULL ? vmmd :
	    build) >= (int)sizeof(g_vmmd) || (vmmd == NULL &&
	    strlen(g_vmmd) + sizeof("/daemon/vmmd") > sizeof(g_vmmd))) {
		camp_warn("cannot tell the build directory; set VMM_BUILD_DIR");
		return CAMP_EXIT_TOOL;
	}
	if (vmmd == NULL)
		strcat(g_vmmd, "/daemon/vmmd");
	if (snprintf(g_app, sizeof(g_app), "%s/tools/vmm-campaign-app",
	    build) >= (int)sizeof(g_app) || snprintf(g_preload,
	    sizeof(g_preload), "%s", getenv("VMM_CAMPAIGN_PRELOAD") ?
	    getenv("VMM_CAMPAIGN_PRELOAD") : "") >= (int)sizeof(g_preload) ||
	    (g_preload[0] == '\0' && snprintf(g_preload, sizeof(g_preload),
	    "%s/shim/libvmm_client.so", build) >= (int)sizeof(g_preload))) {
		camp_warn("path too long");
		return CAMP_EXIT_TOOL;
	}
	if (access(g_vmmd, X_OK) != 0) {
		camp_warn("%s: %s", g_vmmd, strerror(errno));
		return CAMP_EXIT_TOOL;
	}
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		camp_warn("mmap: %s", strerror(errno));
		return CAMP_EXIT_TOOL;
	}
	signal(SIGINT, camp_on_signal);
	signal(SIGTERM, camp_on_signal);
	signal(SIGHUP, camp_on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (camp_setup() != 0 || daemon_start() != 0) {
		camp_warn("could not start vmmd (%s)", strerror(errno));
		camp_cleanup();
		return CAMP_EXIT_TOOL;
	}
	printf("campaign: mode=%s seed=%llu vmmd=%s dir=%s\n", soak ? "soak" :
	    quick ? "quick" : "default", seed, g_vmmd, g_dir);
	fflush(stdout);

	if (soak != 0) {
		phase_soak((int)soak, z.procs);
	} else {
		phase_bad_inputs(z.bad_inputs, true);
		fflush(stdout);
		phase_slow_loris(z.loris);
		fflush(stdout);
		phase_sigkill(&z);
		fflush(stdout);
		phase_integrity("integrity", z.procs, z.integrity_ms, true);
		fflush(stdout);
		phase_daemon_restart(&z);
		fflush(stdout);
		/* Memory lent twice stays in the pool as two records and
		 * would show in every later phase: a fresh vmmd after the
		 * phases that may cause it, so each counts only its own. */
		phase_shim(z.procs > 3 ? 3 : z.procs, z.shim_ms);
		fflush(stdout);
		daemon_fresh();
		phase_adopt_attacks();
		fflush(stdout);
		daemon_fresh();
		/* Last: today's vmmd sleeps in close() here. */
		phase_hostile_fds(&z);
	}
	if (daemon_alive() && daemon_stop() != 0) {
		camp_warn("vmmd did not exit 0 on SIGTERM");
		fig.daemon_crashes++;
	}
	pass = verdict(soak != 0);
	printf("seconds: %.1f\n", (double)(vmm_now_ms() - t0) / 1000.0);
	print_summary(pass);
	fflush(stdout);
	if (g_keep)
		camp_warn("kept %s (vmmd.log)", g_dir);
	camp_cleanup();
	return pass ? CAMP_EXIT_PASS : CAMP_EXIT_FAIL;
}
