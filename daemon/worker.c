/*
 * worker.c — the driver calls that take long, off the event loop.
 *
 * A cuMemCreate of 1 GiB costs about 100 ms on an A100 (193 us per 2 MiB
 * granule), a cuMemRelease of one about 10 ms: run in the loop, they would
 * stall every other client's pooled grant for that long.  So one worker
 * thread makes those calls and nothing else: it takes a job (create this
 * size, or release this handle), calls the driver, and hands the job back
 * to the loop through an eventfd, where its completion runs.
 *
 * The worker never touches the pool: no chunk record, no list, no count.
 * A created handle becomes a chunk only in its completion, on the loop; a
 * released handle was unlinked from every list on the loop before its job
 * was queued.  So every decision about who holds which chunk is still made
 * by the one loop thread, in order, and a chunk cannot be lent twice.
 *
 * Jobs run one at a time, in the order queued: a create queued after a
 * release runs after it, so it sees the memory the release gave back.
 * Whoever calls the driver on the loop and needs every queued release done
 * first (an out-of-memory retry) waits with vmmd_worker_drain, which runs
 * no completion (its caller may be in the middle of a grant).
 *
 * Calls no other file of vmmd (completions are function pointers).
 */
#include <sys/eventfd.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "vmmd.h"

static pthread_mutex_t	worker_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	worker_work = PTHREAD_COND_INITIALIZER;	/* queued */
static pthread_cond_t	worker_idle = PTHREAD_COND_INITIALIZER;	/* one done */
/* Under worker_lock: jobs queued, the one running, jobs done. */
static TAILQ_HEAD(, vmmd_job)	worker_todo = TAILQ_HEAD_INITIALIZER(worker_todo);
static TAILQ_HEAD(, vmmd_job)	worker_done = TAILQ_HEAD_INITIALIZER(worker_done);
static struct vmmd_job		*worker_running;
static bool			worker_stopping;
/* Loop side. */
static pthread_t		worker_thread;
static bool			worker_started;
static int			worker_efd = -1;
static struct event		*worker_ev;

static void *
worker_main(void *arg)
{
	struct vmmd_job *j;
	uint64_t one = 1;

	(void)arg;
	pthread_mutex_lock(&worker_lock);
	for (;;) {
		while (TAILQ_EMPTY(&worker_todo) && !worker_stopping)
			pthread_cond_wait(&worker_work, &worker_lock);
		if ((j = TAILQ_FIRST(&worker_todo)) == NULL)
			break;
		TAILQ_REMOVE(&worker_todo, j, link);
		worker_running = j;
		pthread_mutex_unlock(&worker_lock);
		if (j->op == VMMD_JOB_CREATE)
			j->result = cuMemCreate(&j->handle, j->size, &j->prop, 0);
		else
			j->result = cuMemRelease(j->handle);
		pthread_mutex_lock(&worker_lock);
		worker_running = NULL;
		TAILQ_INSERT_TAIL(&worker_done, j, link);
		pthread_cond_broadcast(&worker_idle);
		/* Wakes the loop; a full counter (never) still wakes it. */
		if (write(worker_efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			vmm_log_error("worker: eventfd: %s", strerror(errno));
	}
	pthread_mutex_unlock(&worker_lock);
	return NULL;
}

/* Runs the completions of the jobs done, on the loop, in order. */
static void
worker_complete(void)
{
	struct vmmd_job *j;

	for (;;) {
		pthread_mutex_lock(&worker_lock);
		if ((j = TAILQ_FIRST(&worker_done)) != NULL)
			TAILQ_REMOVE(&worker_done, j, link);
		pthread_mutex_unlock(&worker_lock);
		if (j == NULL)
			return;
		j->done(j);	/* owns j from here */
	}
}

static void
worker_on_event(evutil_socket_t fd, short what, void *arg)
{
	uint64_t n;

	(void)what;
	(void)arg;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		vmm_log_error("worker: eventfd: %s", strerror(errno));
	worker_complete();
}

int
vmmd_worker_start(void)
{
	if (worker_started)
		return 0;
	if ((worker_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		return -1;
	worker_ev = event_new(vmmd_base, worker_efd, EV_READ | EV_PERSIST,
	    worker_on_event, NULL);
	if (worker_ev == NULL || event_add(worker_ev, NULL) != 0)
		goto fail;
	worker_stopping = false;
	if (pthread_create(&worker_thread, NULL, worker_main, NULL) != 0)
		goto fail;
	worker_started = true;
	return 0;
fail:
	if (worker_ev != NULL)
		event_free(worker_ev);
	worker_ev = NULL;
	close(worker_efd);
	worker_efd = -1;
	return -1;
}

bool
vmmd_worker_running(void)
{
	return worker_started;
}

void
vmmd_worker_submit(struct vmmd_job *j)
{
	pthread_mutex_lock(&worker_lock);
	TAILQ_INSERT_TAIL(&worker_todo, j, link);
	pthread_cond_signal(&worker_work);
	pthread_mutex_unlock(&worker_lock);
}

void
vmmd_worker_drain(void)
{
	if (!worker_started)
		return;
	pthread_mutex_lock(&worker_lock);
	while (!TAILQ_EMPTY(&worker_todo) || worker_running != NULL)
		pthread_cond_wait(&worker_idle, &worker_lock);
	pthread_mutex_unlock(&worker_lock);
	/* The completions run later, from the loop, as always: the caller
	 * may be in the middle of a grant. */
}

void
vmmd_worker_stop(void)
{
	if (!worker_started)
		return;
	vmmd_worker_drain();
	pthread_mutex_lock(&worker_lock);
	worker_stopping = true;
	pthread_cond_signal(&worker_work);
	pthread_mutex_unlock(&worker_lock);
	pthread_join(worker_thread, NULL);
	worker_complete();
	event_free(worker_ev);
	worker_ev = NULL;
	close(worker_efd);
	worker_efd = -1;
	worker_started = false;
}
