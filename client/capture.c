/*
 * Stream captures in progress in this process, as the shim sees them begin
 * and end (cuStreamBeginCapture / cudaStreamBeginCapture and their ends),
 * and the frees deferred while any is.
 *
 * While a stream captures, the driver refuses a synchronization of its
 * context in every mode (and invalidates the capture), and refuses
 * "potentially unsafe" calls such as cudaMalloc according to the modes
 * (cuThreadExchangeStreamCaptureMode in cuda.h).  So while any capture is in
 * progress the allocators make no synchronizing call: they reuse only memory
 * already known to be idle and otherwise map new chunks, and a free is only
 * recorded here; the deferred frees are done once no capture is left.
 *
 * This file calls nothing else of the library (see client_internal.h).
 */
#include "client_internal.h"

#include <stdlib.h>
#include <string.h>

#define CAPTURE_MAX	256	/* captures in progress tracked at once */

struct capture {
	const void	*stream;
	const void	*thread;	/* for the per-thread stream; and the
					 * thread that began it */
	int		mode;		/* CUstreamCaptureMode */
};

static pthread_mutex_t	capture_lock = PTHREAD_MUTEX_INITIALIZER;
static struct capture	capture_v[CAPTURE_MAX];
static size_t		capture_n;
static unsigned		capture_active_n;	/* atomic: captures in progress */
static unsigned		capture_global_n;	/* atomic: of them GLOBAL */
static void		**deferred_v;
static size_t		deferred_n, deferred_cap;
static size_t		deferred_pending;	/* atomic: deferred_n */

/* This thread's captures not begun RELAXED, and of them the GLOBAL ones:
 * those end on this thread (the driver refuses another). */
static __thread unsigned	capture_mine_strict, capture_mine_global;
static __thread char		capture_token;	/* its address names the thread */

#define CAPTURE_ME	((const void *)&capture_token)

bool
vmmc_capture_active(void)
{
	return __atomic_load_n(&capture_active_n, __ATOMIC_ACQUIRE) != 0;
}

void
vmmc_capture_begin(const void *stream, int mode)
{
	pthread_mutex_lock(&capture_lock);
	if (capture_n < CAPTURE_MAX) {
		capture_v[capture_n].stream = stream;
		capture_v[capture_n].thread = CAPTURE_ME;
		capture_v[capture_n].mode = mode;
		capture_n++;
	}
	/* Past CAPTURE_MAX the capture still counts (no sync until the
	 * counts drop), it just cannot be matched at its end. */
	__atomic_add_fetch(&capture_active_n, 1, __ATOMIC_ACQ_REL);
	if (mode == CU_STREAM_CAPTURE_MODE_GLOBAL)
		__atomic_add_fetch(&capture_global_n, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_unlock(&capture_lock);
	if (mode != CU_STREAM_CAPTURE_MODE_RELAXED)
		capture_mine_strict++;
	if (mode == CU_STREAM_CAPTURE_MODE_GLOBAL)
		capture_mine_global++;
}

void
vmmc_capture_end(const void *stream)
{
	/* Each thread has its own per-thread default stream. */
	bool per_thread = stream == (const void *)CU_STREAM_PER_THREAD;
	size_t i;
	bool mine;
	int mode;

	pthread_mutex_lock(&capture_lock);
	/* The latest first: a begin the driver refused (the stream was
	 * capturing already) is taken back this way. */
	for (i = capture_n; i-- > 0;) {
		if (capture_v[i].stream == stream && (!per_thread ||
		    capture_v[i].thread == CAPTURE_ME))
			break;
	}
	if (i == (size_t)-1) {
		pthread_mutex_unlock(&capture_lock);
		return;		/* begun before we saw it, or not tracked */
	}
	mode = capture_v[i].mode;
	mine = capture_v[i].thread == CAPTURE_ME;
	capture_v[i] = capture_v[--capture_n];
	__atomic_sub_fetch(&capture_active_n, 1, __ATOMIC_ACQ_REL);
	if (mode == CU_STREAM_CAPTURE_MODE_GLOBAL)
		__atomic_sub_fetch(&capture_global_n, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_unlock(&capture_lock);
	/* A capture not begun RELAXED is ended by its own thread (the
	 * driver refuses another), so these counts stay this thread's. */
	if (mine && mode != CU_STREAM_CAPTURE_MODE_RELAXED)
		capture_mine_strict--;
	if (mine && mode == CU_STREAM_CAPTURE_MODE_GLOBAL)
		capture_mine_global--;
}

bool
vmmc_capture_forbids(int thread_mode)
{
	unsigned others;

	if (!vmmc_capture_active())
		return false;
	switch (thread_mode) {
	case CU_STREAM_CAPTURE_MODE_RELAXED:
		return false;
	case CU_STREAM_CAPTURE_MODE_THREAD_LOCAL:
		return capture_mine_strict > 0;
	default:
		others = __atomic_load_n(&capture_global_n, __ATOMIC_ACQUIRE) -
		    capture_mine_global;
		return capture_mine_strict > 0 || others > 0;
	}
}

int
vmmc_capture_defer(void *p)
{
	size_t i;
	int rc = 1;

	pthread_mutex_lock(&capture_lock);
	if (!vmmc_capture_active()) {
		rc = 0;
		goto out;
	}
	for (i = 0; i < deferred_n; i++) {
		if (deferred_v[i] == p) {
			rc = -1;	/* freed twice */
			goto out;
		}
	}
	if (deferred_n == deferred_cap) {
		size_t n = deferred_cap ? deferred_cap * 2 : 64;
		void **nv = realloc(deferred_v, n * sizeof(*nv));

		if (nv == NULL) {
			rc = -2;
			goto out;
		}
		deferred_v = nv;
		deferred_cap = n;
	}
	deferred_v[deferred_n++] = p;
	__atomic_store_n(&deferred_pending, deferred_n, __ATOMIC_RELEASE);
out:
	pthread_mutex_unlock(&capture_lock);
	return rc;
}

size_t
vmmc_capture_take_deferred(void ***out)
{
	size_t n = 0;

	*out = NULL;
	if (__atomic_load_n(&deferred_pending, __ATOMIC_ACQUIRE) == 0 ||
	    vmmc_capture_active())
		return 0;
	pthread_mutex_lock(&capture_lock);
	if (!vmmc_capture_active()) {
		*out = deferred_v;
		n = deferred_n;
		deferred_v = NULL;
		deferred_n = deferred_cap = 0;
		__atomic_store_n(&deferred_pending, 0, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&capture_lock);
	return n;
}

void
vmmc_capture_forget(void)
{
	/* The child has only the forking thread, and no capture of its own
	 * (CUDA is unusable after fork); the parent's list stays the parent's. */
	pthread_mutex_init(&capture_lock, NULL);
	capture_n = 0;
	capture_active_n = capture_global_n = 0;
	deferred_v = NULL;
	deferred_n = deferred_cap = 0;
	deferred_pending = 0;
	capture_mine_strict = capture_mine_global = 0;
}
