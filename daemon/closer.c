/*
 * closer.c — disposes of file descriptors a peer gave us, and of the
 * sessions' sockets, without the event loop ever sleeping in close().
 *
 * The last close() of a file runs its release in the closing thread, and
 * some releases wait for someone else: a TCP socket with SO_LINGER and a
 * full send queue (for the linger time), a FUSE file's flush, a tty draining
 * its output.  A Unix socket's last close also drops the fds still in
 * flight in its receive queue, with the same effect, so a session's socket
 * is no safer than what its peer sent last.  A peer can therefore make any
 * close() of a file it chose sleep, before it has even said Hello.
 *
 * So: a shared memory file (memfd: the emulator's chunks) or a pipe cannot
 * wait on anyone and is closed at once.  A socket first loses its linger
 * (which it may get back: its sender may still hold it).  Everything else,
 * sockets included, goes to a closer thread through a queue.
 *
 * Threads start on demand: when an fd is queued and fewer threads wait than
 * fds are queued, up to CLOSER_THREADS_MAX; they then wait for work until
 * vmmd stops.  Threads stuck in close() for good (a FUSE server that never
 * answers) leave fds in the queue.  The queue holds only open fds, so it
 * never needs more room than the process may have fds (RLIMIT_NOFILE): it
 * grows up to that and no further.  A daemon whose closers are all stuck
 * runs out of fds and pauses accepting (server.c); it does not freeze.
 * Only if the queue cannot grow (out of memory) is the fd closed in the
 * loop, and counted.
 */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "vmmd.h"

#define CLOSER_THREADS_MAX	4
#define CLOSER_QUEUE_MIN	64		/* first allocation, fds */
#define CLOSER_QUEUE_CAP	(1u << 20)	/* if RLIMIT_NOFILE is unlimited */
#define CLOSER_STOP_MS		1000	/* vmmd_closer_stop() waits this long */

/*
 * The queue is a ring of closer_cap fds; closer_len of them from
 * closer_head on are waiting.  Every field is under closer_lock.
 */
static pthread_mutex_t	closer_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	closer_work;	/* queued, or stopping */
static pthread_cond_t	closer_gone;	/* a thread returned */
static int		*closer_q;
static size_t		 closer_cap, closer_head, closer_len;
static size_t		 closer_max;	/* the queue never grows past this */
static unsigned		 closer_threads;	/* running */
static unsigned		 closer_waiting;	/* of them, waiting for work */
static bool		 closer_started, closer_stopping;

static void *
closer_main(void *arg)
{
	int	fd;

	(void)arg;
	pthread_mutex_lock(&closer_lock);
	for (;;) {
		while (closer_len == 0 && !closer_stopping) {
			closer_waiting++;
			pthread_cond_wait(&closer_work, &closer_lock);
			closer_waiting--;
		}
		if (closer_len == 0)
			break;
		fd = closer_q[closer_head];
		closer_head = (closer_head + 1) % closer_cap;
		closer_len--;
		pthread_mutex_unlock(&closer_lock);
		/* Whatever it returns, Linux has let go of fd. */
		(void)close(fd);
		pthread_mutex_lock(&closer_lock);
	}
	closer_threads--;
	pthread_cond_broadcast(&closer_gone);
	pthread_mutex_unlock(&closer_lock);
	return NULL;
}

/* Starts one more closer thread, with every signal blocked (they are the
 * loop's).  Called with closer_lock held. */
static int
closer_spawn(void)
{
	pthread_attr_t	attr;
	pthread_t	t;
	sigset_t	all, old;
	int		rc;

	if ((rc = pthread_attr_init(&attr)) != 0)
		return rc;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if ((rc = pthread_attr_setdetachstate(&attr,
	    PTHREAD_CREATE_DETACHED)) == 0 &&
	    (rc = pthread_create(&t, &attr, closer_main, NULL)) == 0) {
		closer_threads++;
		vmmd_stats.closer_threads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return rc;
}

/* Makes room for one more fd in the queue: 0, or -1 if it cannot grow.
 * Called with closer_lock held. */
static int
closer_grow(void)
{
	size_t	 cap, i;
	int	*q;

	if (closer_len < closer_cap)
		return 0;
	cap = closer_cap != 0 ? closer_cap * 2 : CLOSER_QUEUE_MIN;
	if (cap > closer_max)
		cap = closer_max;
	if (cap <= closer_cap ||
	    (q = reallocarray(NULL, cap, sizeof(*q))) == NULL)
		return -1;
	for (i = 0; i < closer_len; i++)
		q[i] = closer_q[(closer_head + i) % closer_cap];
	free(closer_q);
	closer_q = q;
	closer_cap = cap;
	closer_head = 0;
	return 0;
}

/* Queues fd for a closer thread; -1 if that cannot be done. */
static int
closer_queue(int fd)
{
	int	rc = -1;

	pthread_mutex_lock(&closer_lock);
	if (!closer_started || closer_stopping || closer_grow() != 0)
		goto fail;
	if (closer_threads == 0 && closer_spawn() != 0)
		goto fail;
	closer_q[(closer_head + closer_len) % closer_cap] = fd;
	closer_len++;
	vmmd_stats.closer_queued++;
	/* One more thread if the queue is ahead of those waiting; a spawn
	 * that fails leaves the work to the threads there are. */
	if (closer_len > closer_waiting && closer_threads < CLOSER_THREADS_MAX)
		(void)closer_spawn();
	pthread_cond_signal(&closer_work);
	rc = 0;
fail:
	pthread_mutex_unlock(&closer_lock);
	return rc;
}

enum closer_how {
	CLOSER_BADF,		/* not an open fd: nothing to do */
	CLOSER_NOW,		/* cannot block: close here */
	CLOSER_SOCKET,		/* turn linger off, then the thread */
	CLOSER_THREAD,
};

/*
 * A pipe, or a tmpfs or hugetlbfs file (memfd), can wait on nobody when
 * closed.  Not fstat(): on FUSE or NFS it may ask the server, which may
 * never answer; statx() with AT_STATX_DONT_SYNC and fcntl() do not.
 */
static enum closer_how
closer_classify(int fd)
{
	struct statx	stx;

	if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE,
	    &stx) != 0)
		return errno == EBADF ? CLOSER_BADF : CLOSER_THREAD;
	if (S_ISFIFO(stx.stx_mode))
		return CLOSER_NOW;
	if (S_ISSOCK(stx.stx_mode))
		return CLOSER_SOCKET;
	/* Seals exist on shmem and hugetlbfs files only. */
	if (S_ISREG(stx.stx_mode) && fcntl(fd, F_GET_SEALS) >= 0)
		return CLOSER_NOW;
	return CLOSER_THREAD;
}

void
vmmd_closer_close(int fd)
{
	struct linger	off = { 0, 0 };

	if (fd < 0)
		return;
	switch (closer_classify(fd)) {
	case CLOSER_BADF:
		return;		/* a queued number could be reused */
	case CLOSER_NOW:
		close(fd);
		return;
	case CLOSER_SOCKET:
		/* Its own linger only: fds in flight in a Unix socket
		 * keep theirs, hence the thread all the same. */
		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &off, sizeof(off));
		break;
	case CLOSER_THREAD:
		break;
	}
	if (closer_queue(fd) == 0)
		return;
	vmmd_stats.closer_inline++;
	close(fd);
}

int
vmmd_closer_start(void)
{
	pthread_condattr_t	attr;
	struct rlimit		rl;
	int			rc;

	closer_max = CLOSER_QUEUE_CAP;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < CLOSER_QUEUE_CAP)
		closer_max = rl.rlim_cur > CLOSER_QUEUE_MIN ? (size_t)rl.rlim_cur :
		    CLOSER_QUEUE_MIN;
	if ((rc = pthread_condattr_init(&attr)) != 0)
		goto fail;
	if ((rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)) != 0 ||
	    (rc = pthread_cond_init(&closer_work, &attr)) != 0) {
		pthread_condattr_destroy(&attr);
		goto fail;
	}
	if ((rc = pthread_cond_init(&closer_gone, &attr)) != 0) {
		pthread_cond_destroy(&closer_work);
		pthread_condattr_destroy(&attr);
		goto fail;
	}
	pthread_condattr_destroy(&attr);
	closer_started = true;
	return 0;

fail:
	errno = rc;
	return -1;
}

void
vmmd_closer_stop(void)
{
	struct timespec	ts;
	int		rc = 0;

	if (!closer_started)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += CLOSER_STOP_MS / 1000;
	ts.tv_nsec += (long)(CLOSER_STOP_MS % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&closer_lock);
	closer_stopping = true;
	pthread_cond_broadcast(&closer_work);
	while (closer_threads > 0 && rc == 0)
		rc = pthread_cond_timedwait(&closer_gone, &closer_lock, &ts);
	if (closer_threads > 0)
		vmm_log_error("%u fd closer thread(s) still blocked in close() "
		    "at exit, %zu fd(s) queued", closer_threads, closer_len);
	else {
		free(closer_q);
		closer_q = NULL;
		closer_cap = closer_head = closer_len = 0;
	}
	pthread_mutex_unlock(&closer_lock);
}
