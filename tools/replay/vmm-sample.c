/*
 * vmm-sample — poll what physical memory is in use while a replay runs, for
 * tools/replay/run.sh and targets.sh.
 *
 * With --socket it asks vmmd for StatsRequest every --interval-ms as an
 * admin client: the pool's physical and lent bytes, and the sum over the
 * application sessions of what each last reported in use and cached.  With
 * --device it also asks the (emulated) driver, cuMemGetInfo on device 0, for
 * what the whole device has in use: the only figure there is when no broker
 * runs.  It stops on SIGTERM/SIGINT (or after --duration-ms), and prints
 * the maxima and the daemon's counters as "key value" lines; --csv writes
 * every sample.
 *
 *   vmm-sample [--socket PATH] [--device] [--interval-ms N] [--csv FILE]
 *              [--duration-ms N]
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <cuda.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "session.h"

#define SM_NAME		"vmm-sample"
#define SM_TIMEOUT_MS	5000
#define SM_MAX_PAGES	256		/* session pages per sample */
#define SM_MAX_RETRIES	20		/* lost connections in a row */

struct sm_sample {
	uint64_t	physical, lent, idle_pool;	/* pool */
	uint64_t	in_use, cached;		/* sums of the sessions' reports */
	uint64_t	held;			/* sum of bytes lent to sessions */
	uint64_t	device_used;		/* cuMemGetInfo: total - free */
	uint32_t	sessions;		/* application sessions */
};

struct sm {
	struct vmm_sess	*s;
};

static volatile sig_atomic_t sm_stop;

static void
on_signal(int sig)
{
	(void)sig;
	sm_stop = 1;
}

static int64_t
unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends env and waits for its reply; NULL (with a message) on failure. */
static struct vmm_frame_msg *
sm_call(struct sm *s, Vmm__Envelope *env)
{
	struct vmm_frame_msg *m;
	int rc;

	rc = vmm_sess_call(s->s, env, NULL, 0, SM_TIMEOUT_MS, &m);
	if (rc == VMM_SESS_EREFUSED)
		fprintf(stderr, SM_NAME ": vmmd refused %s (error %d)\n",
		    vmm_frame_type_name(env), (int)vmm_sess_error(s->s)->code);
	else if (rc != 0)
		fprintf(stderr, SM_NAME ": %s: %s\n", vmm_frame_type_name(env),
		    vmm_sess_strerror(rc));
	return rc == 0 ? m : NULL;
}

static void	sm_close(struct sm *);

/* Connects to vmmd's socket and says Hello as an admin client. */
static int
sm_open(struct sm *s, const char *path)
{
	Vmm__Hello h = VMM__HELLO__INIT;
	int rc;

	if ((rc = vmm_sess_connect(&s->s, path, SM_TIMEOUT_MS)) != 0) {
		fprintf(stderr, SM_NAME ": %s: %s\n", path, strerror(-rc));
		return -1;
	}
	h.client_name = (char *)SM_NAME;
	h.kind = VMM__CLIENT_KIND__CLIENT_KIND_ADMIN;
	if ((rc = vmm_sess_hello(s->s, &h, SM_TIMEOUT_MS)) != 0) {
		fprintf(stderr, SM_NAME ": vmmd refused the handshake: %s\n",
		    vmm_sess_strerror(rc));
		sm_close(s);
		return -1;
	}
	return 0;
}

static void
sm_close(struct sm *s)
{
	vmm_sess_close(s->s);
	s->s = NULL;
}

/* One StatsRequest round, every page of sessions: fills the pool figures
 * and the sums over application sessions. */
static int
sm_stats(struct sm *s, struct sm_sample *out)
{
	Vmm__StatsRequest sr = VMM__STATS_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_stats_request(&sr);
	const Vmm__StatsReply *r;
	struct vmm_frame_msg *m;
	uint32_t off = 0, total, page;
	size_t i;

	for (page = 0; page < SM_MAX_PAGES; page++) {
		sr.request_id = 0;	/* a fresh one */
		sr.session_offset = off;
		if ((m = sm_call(s, &env)) == NULL)
			return -1;
		r = vmm_frame_msg_env(m)->stats_reply;
		if (page == 0 && r->pool != NULL) {
			out->physical = r->pool->physical_bytes;
			out->lent = r->pool->lent_bytes;
			out->idle_pool = r->pool->physical_bytes >
			    r->pool->lent_bytes ? r->pool->physical_bytes -
			    r->pool->lent_bytes : 0;
		}
		for (i = 0; i < r->n_sessions; i++) {
			const Vmm__SessionStats *ss = r->sessions[i];

			if (ss->kind != VMM__CLIENT_KIND__CLIENT_KIND_APP)
				continue;
			out->in_use += ss->reported_in_use;
			out->cached += ss->reported_cached;
			out->held += ss->bytes_held;
			out->sessions++;
		}
		total = r->sessions_total;
		off += (uint32_t)r->n_sessions;
		page = r->n_sessions == 0 ? SM_MAX_PAGES : page;
		vmm_frame_msg_free(m);
		if (off >= total)
			break;
	}
	return 0;
}

/* Prints the daemon's counters as "counter_NAME value" lines (names
 * other than [a-z0-9_] are skipped: they came from the peer). */
static void
sm_counters(struct sm *s)
{
	Vmm__StatsRequest sr = VMM__STATS_REQUEST__INIT;
	Vmm__Envelope env = vmm_frame_env_stats_request(&sr);
	const Vmm__StatsReply *r;
	struct vmm_frame_msg *m;
	size_t i;

	if ((m = sm_call(s, &env)) == NULL)
		return;
	r = vmm_frame_msg_env(m)->stats_reply;
	for (i = 0; i < r->n_counters; i++) {
		const char *n = r->counters[i]->name;

		if (n[0] != '\0' && n[strspn(n,
		    "abcdefghijklmnopqrstuvwxyz0123456789_")] == '\0')
			printf("counter_%s %" PRIu64 "\n", n,
			    r->counters[i]->value);
	}
	vmm_frame_msg_free(m);
}

/* Device 0's primary context, current, for cuMemGetInfo. */
static int
sm_device_open(void)
{
	CUcontext ctx;
	CUdevice d;
	CUresult e;

	if ((e = cuInit(0)) != CUDA_SUCCESS ||
	    (e = cuDeviceGet(&d, 0)) != CUDA_SUCCESS ||
	    (e = cuDevicePrimaryCtxRetain(&ctx, d)) != CUDA_SUCCESS ||
	    (e = cuCtxSetCurrent(ctx)) != CUDA_SUCCESS) {
		fprintf(stderr, SM_NAME ": CUDA initialisation: error %d\n",
		    (int)e);
		return -1;
	}
	return 0;
}

static int
sm_device(struct sm_sample *out)
{
	size_t fr, tot;

	if (cuMemGetInfo(&fr, &tot) != CUDA_SUCCESS)
		return -1;
	out->device_used = tot - fr;
	return 0;
}

static void
usage(FILE *f)
{
	fprintf(f,
"usage: " SM_NAME " [--socket PATH] [--device] [--interval-ms N] [--csv FILE]\n"
"                  [--duration-ms N]\n"
"Sample vmmd's pool stats (--socket) and/or device 0's used memory\n"
"(--device, cuMemGetInfo) until SIGTERM; print the maxima.\n");
}

#define MAXI(a, b) do { if ((b) > (a)) (a) = (b); } while (0)

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "device", no_argument, NULL, 'd' },
		{ "interval-ms", required_argument, NULL, 'i' },
		{ "csv", required_argument, NULL, 'c' },
		{ "duration-ms", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct sm s = { NULL };
	struct sm_sample mx = { 0 };
	struct sigaction sa;
	const char *sock = NULL, *csv = NULL;
	long interval = 5, duration = 0;
	uint64_t n = 0, reconnects = 0;
	int64_t start;
	int fails = 0;
	bool device = false;
	FILE *cf = NULL;
	char *end;
	int c;

	while ((c = getopt_long(argc, argv, "s:di:c:t:h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			sock = optarg;
			break;
		case 'd':
			device = true;
			break;
		case 'i':
		case 't':
			errno = 0;
			{
				long v = strtol(optarg, &end, 10);

				if (errno != 0 || *end != '\0' || v < 1 ||
				    v > 3600000) {
					fprintf(stderr, SM_NAME ": bad number "
					    "\"%s\" (1..3600000)\n", optarg);
					return 2;
				}
				*(c == 'i' ? &interval : &duration) = v;
			}
			break;
		case 'c':
			csv = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || (sock == NULL && !device)) {
		usage(stderr);
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (sock != NULL && sm_open(&s, sock) != 0)
		return 1;
	if (device && sm_device_open() != 0)
		return 1;
	if (csv != NULL) {
		if ((cf = fopen(csv, "w")) == NULL) {
			fprintf(stderr, SM_NAME ": %s: %s\n", csv,
			    strerror(errno));
			return 1;
		}
		setvbuf(cf, NULL, _IOLBF, 0);
		fprintf(cf, "unix_ms,physical,lent,idle_pool,reported_in_use,"
		    "reported_cached,held,device_used,sessions\n");
	}
	start = unix_ms();
	while (!sm_stop && (duration == 0 || unix_ms() - start < duration)) {
		struct sm_sample x = { 0 };
		struct timespec ts = { interval / 1000,
		    (interval % 1000) * 1000000 };
		int64_t t = unix_ms();

		/* vmmd may drop us (a bad reply it refused to send): a lost
		 * sample, counted, and a new connection. */
		if (sock != NULL && sm_stats(&s, &x) != 0) {
			sm_close(&s);
			if (++fails > SM_MAX_RETRIES || sm_open(&s, sock) != 0)
				break;
			reconnects++;
			continue;
		}
		fails = 0;
		if (device && sm_device(&x) != 0) {
			fprintf(stderr, SM_NAME ": cuMemGetInfo failed\n");
			break;
		}
		n++;
		MAXI(mx.physical, x.physical);
		MAXI(mx.lent, x.lent);
		MAXI(mx.idle_pool, x.idle_pool);
		MAXI(mx.in_use, x.in_use);
		MAXI(mx.cached, x.cached);
		MAXI(mx.held, x.held);
		MAXI(mx.device_used, x.device_used);
		MAXI(mx.sessions, x.sessions);
		if (cf != NULL)
			fprintf(cf, "%" PRId64 ",%" PRIu64 ",%" PRIu64 ",%"
			    PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%"
			    PRIu64 ",%" PRIu32 "\n", t, x.physical, x.lent,
			    x.idle_pool, x.in_use, x.cached, x.held,
			    x.device_used, x.sessions);
		nanosleep(&ts, NULL);	/* a signal cuts it short */
	}
	printf("samples %" PRIu64 "\n", n);
	printf("duration_ms %" PRId64 "\n", unix_ms() - start);
	if (sock != NULL) {
		printf("max_physical_bytes %" PRIu64 "\n", mx.physical);
		printf("max_lent_bytes %" PRIu64 "\n", mx.lent);
		printf("max_idle_pool_bytes %" PRIu64 "\n", mx.idle_pool);
		printf("max_sum_reported_in_use_bytes %" PRIu64 "\n", mx.in_use);
		printf("max_sum_reported_cached_bytes %" PRIu64 "\n", mx.cached);
		printf("max_sessions %" PRIu32 "\n", mx.sessions);
		printf("reconnects %" PRIu64 "\n", reconnects);
		if (s.s != NULL)
			sm_counters(&s);
	}
	if (device)
		printf("max_device_used_bytes %" PRIu64 "\n", mx.device_used);
	if (cf != NULL)
		fclose(cf);
	sm_close(&s);
	return 0;
}
