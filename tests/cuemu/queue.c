/*
 * cuemu work queues: what a GPU does later.  Copies, memsets, stream-ordered
 * frees and the emulated kernel (cuemuLaunchWrite) issued on a stream are
 * queued and run later, in stream order, by one worker thread per device:
 *
 *   - an operation runs when somebody waits for it (stream, event or context
 *     synchronize, or a synchronous call that waits by cuda.h), but never
 *     before it could have finished (a kernel's delay counts from the moment
 *     its stream reaches it), or else when its "linger" timer fires
 *     (CUEMU_ASYNC_DELAY_US after it was issued; a kernel when it is done);
 *   - it touches whatever is mapped at its addresses WHEN it runs: memory
 *     unmapped or freed in between is a fault (counted, one stderr line, the
 *     write dropped), memory mapped anew there receives the write;
 *   - each stream is a FIFO; the legacy default stream waits for every
 *     blocking stream of its context and they wait for it (cuda.h "stream
 *     synchronization behavior"); CU_STREAM_NON_BLOCKING streams do not; the
 *     per-thread default stream is a blocking stream of its own per thread.
 *
 * Everything here runs under the one emulator lock; waiters sleep on
 * queue_done_cv with it.  Queues are never freed (an event may still name a
 * destroyed stream's queue), only marked dead; they stay reachable.
 */
#include "cuemu_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

enum queue_kind {
	QOP_COPY,	/* memmove; src staged in op->staged when from the host */
	QOP_SET,	/* memset of one byte */
	QOP_WRITE,	/* the emulated kernel: a 32-bit pattern after a delay */
	QOP_FREE,	/* stream-ordered free of a classic allocation */
	QOP_MARK,	/* nothing: an event's position */
	QOP_WAIT,	/* until another queue reached a position */
};

struct queue_op {
	enum queue_kind	kind;
	uint64_t	seq;
	uint64_t	dur_ns;		/* how long it runs once started */
	uint64_t	min_ns;		/* earliest completion */
	uint64_t	due_ns;		/* when it runs if nobody waits */
	CUdeviceptr	dst, src;
	size_t		len;
	bool		dst_dev, src_dev;
	uint32_t	pattern;
	unsigned char	*staged;
	struct cuemu_q	*wq;		/* QOP_WAIT */
	uint64_t	wseq;
	struct queue_op	*next;
};

struct cuemu_q {
	int		dev;
	bool		legacy;
	bool		blocking;	/* synchronizes with the legacy stream */
	bool		dead;
	uint64_t	tail_seq, done_seq, urgent_seq;
	uint64_t	tail_min_ns, tail_due_ns;
	struct queue_op	*head, *tail;
	struct cuemu_q	*next;		/* the device's list */
};

struct queue_dev {
	struct cuemu_q	*queues;	/* legacy first, once created */
	struct cuemu_q	*legacy;
	bool		started;
	pthread_cond_t	wake;
	uint64_t	pending;	/* ops not done (atomic reads) */
};

static struct queue_dev		queue_devs[CUEMU_MAX_DEVICES];
static pthread_cond_t		queue_done_cv;
static pthread_once_t		queue_once = PTHREAD_ONCE_INIT;
static __thread struct cuemu_q	*queue_ptds[CUEMU_MAX_DEVICES];
static uint64_t			queue_counters[CUEMU_COUNTER_N];

static const char *const queue_counter_names[CUEMU_COUNTER_N] = {
	[CUEMU_COUNTER_CTX_SYNCS] = "ctx_syncs",
	[CUEMU_COUNTER_STREAM_SYNCS] = "stream_syncs",
	[CUEMU_COUNTER_EVENT_SYNCS] = "event_syncs",
	[CUEMU_COUNTER_FAULTS] = "faults",
	[CUEMU_COUNTER_BUSY_RELEASES] = "busy_releases",
	[CUEMU_COUNTER_LAUNCHES] = "launches",
};

void
cuemu_counter_add(enum cuemu_counter c)
{
	__atomic_add_fetch(&queue_counters[c], 1, __ATOMIC_RELAXED);
}

static uint64_t
queue_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
queue_init(void)
{
	pthread_condattr_t a;
	int i;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&queue_done_cv, &a);
	for (i = 0; i < CUEMU_MAX_DEVICES; i++)
		pthread_cond_init(&queue_devs[i].wake, &a);
	pthread_condattr_destroy(&a);
}

static void
queue_wake_all(void)
{
	int i;

	for (i = 0; i < CUEMU_MAX_DEVICES; i++)
		if (queue_devs[i].started)
			pthread_cond_signal(&queue_devs[i].wake);
}

/* ---- queues --------------------------------------------------------------- */

static struct cuemu_q *
queue_new(int dev, bool legacy, bool blocking)
{
	struct cuemu_q *q;

	pthread_once(&queue_once, queue_init);
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	q->dev = dev;
	q->legacy = legacy;
	q->blocking = blocking;
	q->next = queue_devs[dev].queues;
	queue_devs[dev].queues = q;
	return q;
}

struct cuemu_q *
cuemu_q_create(int dev, bool blocking)
{
	return queue_new(dev, false, blocking);
}

void
cuemu_q_destroy(struct cuemu_q *q)
{
	/* Work already issued still runs (cuStreamDestroy's doc). */
	q->dead = true;
}

struct cuemu_q *
cuemu_q_legacy(int dev)
{
	struct queue_dev *d = &queue_devs[dev];

	if (d->legacy == NULL)
		d->legacy = queue_new(dev, true, true);
	return d->legacy;
}

struct cuemu_q *
cuemu_q_per_thread(int dev)
{
	if (queue_ptds[dev] == NULL)
		queue_ptds[dev] = queue_new(dev, false, true);
	return queue_ptds[dev];
}

int
cuemu_q_device(const struct cuemu_q *q)
{
	return q->dev;
}

bool
cuemu_q_done(const struct cuemu_q *q, uint64_t seq)
{
	return q->done_seq >= seq;
}

uint64_t
cuemu_q_tail(const struct cuemu_q *q)
{
	return q->tail_seq;
}

/* ---- the worker --------------------------------------------------------------- */

static bool
queue_overlaps(CUdeviceptr a, size_t alen, CUdeviceptr b, size_t blen)
{
	return a < b + blen && b < a + alen;
}

static void
queue_fault(const struct queue_op *op, int dev)
{
	cuemu_counter_add(CUEMU_COUNTER_FAULTS);
	fprintf(stderr, "cuemu: device %d: pending %s of %zu bytes at 0x%llx "
	    "ran on memory no longer mapped (illegal address)\n", dev,
	    op->kind == QOP_WRITE ? "kernel write" : op->kind == QOP_SET ?
	    "memset" : op->kind == QOP_FREE ? "free" : "copy", op->len,
	    (unsigned long long)(op->dst_dev ? op->dst : op->src));
}

/* Whether any op not yet run touches device memory in [addr, addr+len),
 * other than skip; lock held. */
static bool
queue_busy(CUdeviceptr addr, size_t len, const struct queue_op *skip)
{
	int i;

	if (len == 0)
		return false;
	for (i = 0; i < CUEMU_MAX_DEVICES; i++) {
		struct cuemu_q *q;

		for (q = queue_devs[i].queues; q != NULL; q = q->next) {
			struct queue_op *op;

			for (op = q->head; op != NULL; op = op->next) {
				if (op == skip || op->kind == QOP_MARK ||
				    op->kind == QOP_WAIT)
					continue;
				if ((op->dst_dev && queue_overlaps(op->dst,
				    op->len, addr, len)) || (op->src_dev &&
				    queue_overlaps(op->src, op->len, addr, len)))
					return true;
			}
		}
	}
	return false;
}

void
cuemu_q_note_release(CUdeviceptr addr, size_t len)
{
	if (queue_busy(addr, len, NULL))
		cuemu_counter_add(CUEMU_COUNTER_BUSY_RELEASES);
}

/* Runs op (the head of its queue) for device dev, which issued it: its
 * memory must be mapped and accessible to dev now; lock held. */
static void
queue_run(struct queue_op *op, int dev)
{
	size_t i;

	switch (op->kind) {
	case QOP_COPY:
		if ((op->dst_dev && !cuemu_range_ok(op->dst, op->len,
		    PROT_WRITE, dev)) || (op->src_dev &&
		    !cuemu_range_ok(op->src, op->len, PROT_READ, dev))) {
			queue_fault(op, dev);
			break;
		}
		memmove((void *)(uintptr_t)op->dst, op->staged != NULL ?
		    (const void *)op->staged : (const void *)(uintptr_t)op->src,
		    op->len);
		break;
	case QOP_SET:
		if (!cuemu_range_ok(op->dst, op->len, PROT_WRITE, dev)) {
			queue_fault(op, dev);
			break;
		}
		memset((void *)(uintptr_t)op->dst, (int)op->pattern, op->len);
		break;
	case QOP_WRITE:
		if (!cuemu_range_ok(op->dst, op->len, PROT_WRITE, dev)) {
			queue_fault(op, dev);
			break;
		}
		for (i = 0; i < op->len; i++)
			((unsigned char *)(uintptr_t)op->dst)[i] =
			    (unsigned char)(op->pattern >> (8 * (i % 4)));
		break;
	case QOP_FREE:
		if (queue_busy(op->dst, op->len, op))
			cuemu_counter_add(CUEMU_COUNTER_BUSY_RELEASES);
		if (cuemu_classic_free(op->dst) != CUDA_SUCCESS)
			queue_fault(op, dev);
		break;
	case QOP_MARK:
	case QOP_WAIT:
		break;
	}
}

/* Pops q's head as done; lock held. */
static void
queue_pop(struct cuemu_q *q)
{
	struct queue_op *op = q->head;
	uint64_t now;

	q->head = op->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->done_seq = op->seq;
	__atomic_sub_fetch(&queue_devs[q->dev].pending, 1, __ATOMIC_RELEASE);
	free(op->staged);
	free(op);
	/* The next op starts now: it cannot end before its duration. */
	if (q->head != NULL && q->head->dur_ns != 0) {
		now = queue_now_ns();
		if (q->head->min_ns < now + q->head->dur_ns)
			q->head->min_ns = now + q->head->dur_ns;
		if (q->head->due_ns < q->head->min_ns)
			q->head->due_ns = q->head->min_ns;
	}
	pthread_cond_broadcast(&queue_done_cv);
	queue_wake_all();
}

static void *
queue_worker(void *arg)
{
	struct queue_dev *d = arg;
	pthread_mutex_t *mu = cuemu_mutex();
	int dev = (int)(d - queue_devs);

	pthread_mutex_lock(mu);
	for (;;) {
		struct cuemu_q *q, *best = NULL;
		uint64_t best_t = UINT64_MAX, now = queue_now_ns();
		bool progressed = false;

		for (q = d->queues; q != NULL; q = q->next) {
			struct queue_op *op = q->head;
			uint64_t t;

			if (op == NULL)
				continue;
			if (op->kind == QOP_WAIT) {
				if (op->wq->done_seq >= op->wseq) {
					queue_pop(q);
					progressed = true;
				}
				continue;
			}
			t = op->seq <= q->urgent_seq ? op->min_ns : op->due_ns;
			if (t < best_t) {
				best_t = t;
				best = q;
			}
		}
		if (progressed)
			continue;
		if (best != NULL && best_t <= now) {
			queue_run(best->head, dev);
			queue_pop(best);
			continue;
		}
		if (best == NULL) {
			pthread_cond_wait(&d->wake, mu);
		} else {
			struct timespec ts;

			ts.tv_sec = (time_t)(best_t / 1000000000u);
			ts.tv_nsec = (long)(best_t % 1000000000u);
			pthread_cond_timedwait(&d->wake, mu, &ts);
		}
	}
	return NULL;
}

/* Starts dev's worker on first use; lock held. */
static int
queue_start(int dev)
{
	struct queue_dev *d = &queue_devs[dev];
	pthread_attr_t a;
	pthread_t t;
	int r;

	if (d->started)
		return 0;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&t, &a, queue_worker, d);
	pthread_attr_destroy(&a);
	if (r != 0)
		return -1;
	d->started = true;
	return 0;
}

/* ---- issuing ------------------------------------------------------------------- */

static void
queue_append(struct cuemu_q *q, struct queue_op *op)
{
	uint64_t now = queue_now_ns(), start;

	op->seq = ++q->tail_seq;
	start = q->tail_min_ns > now ? q->tail_min_ns : now;
	op->min_ns = start + op->dur_ns;
	if (op->kind == QOP_WRITE || op->kind == QOP_MARK ||
	    op->kind == QOP_WAIT)
		op->due_ns = op->min_ns;
	else
		op->due_ns = now + cuemu_cfg.async_delay_ns;
	if (op->due_ns < op->min_ns)
		op->due_ns = op->min_ns;
	if (op->due_ns < q->tail_due_ns)
		op->due_ns = q->tail_due_ns;
	q->tail_min_ns = op->min_ns;
	q->tail_due_ns = op->due_ns;
	if (q->tail != NULL)
		q->tail->next = op;
	else
		q->head = op;
	q->tail = op;
	__atomic_add_fetch(&queue_devs[q->dev].pending, 1, __ATOMIC_RELEASE);
}

static struct queue_op *
queue_op_new(enum queue_kind kind)
{
	struct queue_op *op = calloc(1, sizeof(*op));

	if (op != NULL)
		op->kind = kind;
	return op;
}

/* A wait of q for wq's position wseq, unless already reached. */
static int
queue_add_wait(struct cuemu_q *q, struct cuemu_q *wq, uint64_t wseq)
{
	struct queue_op *op;

	if (wq == q || wq->done_seq >= wseq)
		return 0;
	if ((op = queue_op_new(QOP_WAIT)) == NULL)
		return -1;
	op->wq = wq;
	op->wseq = wseq;
	queue_append(q, op);
	return 0;
}

/* The implicit waits of an action on q (legacy stream semantics). */
static int
queue_implicit_waits(struct cuemu_q *q)
{
	struct cuemu_q *o;

	if (q->legacy) {
		for (o = queue_devs[q->dev].queues; o != NULL; o = o->next)
			if (o != q && o->blocking && o->tail_seq > o->done_seq &&
			    queue_add_wait(q, o, o->tail_seq) != 0)
				return -1;
		return 0;
	}
	if (q->blocking && (o = queue_devs[q->dev].legacy) != NULL)
		return queue_add_wait(q, o, o->tail_seq);
	return 0;
}

/* Issues op on q; takes op.  Lock held. */
static CUresult
queue_issue(struct cuemu_q *q, struct queue_op *op)
{
	if (queue_start(q->dev) != 0 || queue_implicit_waits(q) != 0) {
		free(op->staged);
		free(op);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	queue_append(q, op);
	pthread_cond_signal(&queue_devs[q->dev].wake);
	return CUDA_SUCCESS;
}

CUresult
cuemu_q_copy(struct cuemu_q *q, CUdeviceptr dst, bool dst_dev,
    CUdeviceptr src, bool src_dev, size_t len)
{
	struct queue_op *op = queue_op_new(QOP_COPY);

	if (op == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	op->dst = dst;
	op->dst_dev = dst_dev;
	op->src = src;
	op->src_dev = src_dev;
	op->len = len;
	if (!src_dev) {
		/* Pageable host memory is staged when the call is made. */
		if ((op->staged = malloc(len)) == NULL) {
			free(op);
			return CUDA_ERROR_OUT_OF_MEMORY;
		}
		memcpy(op->staged, (const void *)(uintptr_t)src, len);
	}
	return queue_issue(q, op);
}

CUresult
cuemu_q_memset(struct cuemu_q *q, CUdeviceptr dst, unsigned char uc, size_t n)
{
	struct queue_op *op = queue_op_new(QOP_SET);

	if (op == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	op->dst = dst;
	op->dst_dev = true;
	op->len = n;
	op->pattern = uc;
	return queue_issue(q, op);
}

CUresult
cuemu_q_write(struct cuemu_q *q, CUdeviceptr dst, uint32_t pattern,
    size_t bytes, unsigned delay_us)
{
	struct queue_op *op = queue_op_new(QOP_WRITE);

	if (op == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	op->dst = dst;
	op->dst_dev = true;
	op->len = bytes;
	op->pattern = pattern;
	op->dur_ns = (uint64_t)delay_us * 1000u;
	cuemu_counter_add(CUEMU_COUNTER_LAUNCHES);
	return queue_issue(q, op);
}

CUresult
cuemu_q_free(struct cuemu_q *q, CUdeviceptr dptr, size_t len)
{
	struct queue_op *op = queue_op_new(QOP_FREE);

	if (op == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	op->dst = dptr;
	op->len = len;
	return queue_issue(q, op);
}

CUresult
cuemu_q_mark(struct cuemu_q *q, uint64_t *seq)
{
	struct queue_op *op = queue_op_new(QOP_MARK);
	CUresult r;

	if (op == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	if ((r = queue_issue(q, op)) == CUDA_SUCCESS)
		*seq = q->tail_seq;
	return r;
}

CUresult
cuemu_q_wait(struct cuemu_q *q, struct cuemu_q *wq, uint64_t wseq)
{
	if (queue_start(q->dev) != 0 || queue_implicit_waits(q) != 0 ||
	    queue_add_wait(q, wq, wseq) != 0)
		return CUDA_ERROR_OUT_OF_MEMORY;
	pthread_cond_signal(&queue_devs[q->dev].wake);
	return CUDA_SUCCESS;
}

/* ---- waiting ---------------------------------------------------------------------- */

/* Makes q's ops up to seq (and what they wait for) run as soon as they can. */
static void
queue_urge(struct cuemu_q *q, uint64_t seq)
{
	struct queue_op *op;

	if (seq <= q->urgent_seq)
		return;
	q->urgent_seq = seq;
	for (op = q->head; op != NULL && op->seq <= seq; op = op->next)
		if (op->kind == QOP_WAIT)
			queue_urge(op->wq, op->wseq);
}

void
cuemu_q_sync(struct cuemu_q *q, uint64_t seq)
{
	if (q->done_seq >= seq)
		return;
	queue_urge(q, seq);
	queue_wake_all();
	while (q->done_seq < seq)
		pthread_cond_wait(&queue_done_cv, cuemu_mutex());
}

bool
cuemu_q_device_idle(int dev)
{
	return __atomic_load_n(&queue_devs[dev].pending, __ATOMIC_ACQUIRE) == 0;
}

void
cuemu_q_sync_device(int dev)
{
	struct cuemu_q *q;
	bool again = true;

	/* Everything issued so far runs as soon as it can, all at once. */
	for (q = queue_devs[dev].queues; q != NULL; q = q->next)
		queue_urge(q, q->tail_seq);
	while (again) {
		again = false;
		for (q = queue_devs[dev].queues; q != NULL; q = q->next) {
			if (q->done_seq < q->tail_seq) {
				cuemu_q_sync(q, q->tail_seq);
				again = true;	/* the lock was dropped */
			}
		}
	}
}

/* ---- the emulator-only API (cuemu.h) ------------------------------------------------ */

CUEMU_EXPORT int
cuemuGetCounter(const char *name, unsigned long long *value)
{
	int i;

	if (name == NULL || value == NULL)
		return -1;
	for (i = 0; i < CUEMU_COUNTER_N; i++) {
		if (strcmp(name, queue_counter_names[i]) == 0) {
			*value = __atomic_load_n(&queue_counters[i],
			    __ATOMIC_RELAXED);
			return 0;
		}
	}
	return cuemu_cost_counter(name, value);
}
