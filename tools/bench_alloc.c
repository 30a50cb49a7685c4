/*
 * bench_alloc: allocation pairs per second on one size mix (256 B – 1 MiB,
 * log-uniform), with 1 or more threads, for
 *   cuda      cudaMalloc + cudaFree (run it under LD_PRELOAD=libvmm_client.so
 *             to measure the shim; warm: the first pass fills the caches)
 *   mimalloc  mi_malloc + mi_free of the same sizes
 * Each thread keeps a window of live allocations and replaces a random one
 * per operation, so frees are not always of the newest block.
 *
 *   bench_alloc --mode cuda|mimalloc [--threads N] [--seconds S] [--window W]
 *
 * Prints one line: mode, threads, total pairs per second.  tools/
 * bench_alloc.sh runs the comparison the issue asks for.
 */
#include <cuda_runtime_api.h>
#include <mimalloc.h>

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NSIZES 4096

enum mode { MODE_CUDA, MODE_MIMALLOC };

static enum mode	bench_mode;
static double		bench_seconds = 2.0;
static int		bench_window = 64;
static size_t		bench_sizes[NSIZES];
static atomic_int	bench_go, bench_stop;

struct worker {
	pthread_t	t;
	int		id;
	uint64_t	pairs;
	int		error;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sizes log-uniform in [256, 1 MiB], the same for every mode and run. */
static void
make_sizes(void)
{
	uint64_t x = 88172645463325252ull;
	int i;

	for (i = 0; i < NSIZES; i++) {
		double u;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		u = (double)(x >> 11) / 9007199254740992.0;
		bench_sizes[i] = (size_t)(256.0 * __builtin_pow(4096.0, u));
	}
}

static int
one_alloc(void **p, size_t n)
{
	if (bench_mode == MODE_MIMALLOC) {
		*p = mi_malloc(n);
		return *p == NULL;
	}
	return cudaMalloc(p, n) != cudaSuccess;
}

static int
one_free(void *p)
{
	if (bench_mode == MODE_MIMALLOC) {
		mi_free(p);
		return 0;
	}
	return cudaFree(p) != cudaSuccess;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	void **live = calloc((size_t)bench_window, sizeof(*live));
	unsigned k = (unsigned)w->id * 977u;
	uint64_t pairs = 0;
	int i;

	if (live == NULL) {
		w->error = ENOMEM;
		return NULL;
	}
	if (bench_mode == MODE_CUDA && cudaSetDevice(0) != cudaSuccess) {
		w->error = EIO;
		free(live);
		return NULL;
	}
	/* Warm-up: fill the window, then one full turnover. */
	for (i = 0; i < bench_window; i++)
		if (one_alloc(&live[i], bench_sizes[k++ % NSIZES]) != 0)
			goto fail;
	for (i = 0; i < bench_window * 4; i++) {
		int j = (int)(k * 2654435761u % (unsigned)bench_window);

		if (one_free(live[j]) != 0 ||
		    one_alloc(&live[j], bench_sizes[k++ % NSIZES]) != 0)
			goto fail;
	}
	atomic_fetch_add(&bench_go, 1);
	while (!atomic_load_explicit(&bench_stop, memory_order_relaxed)) {
		for (i = 0; i < 256; i++) {
			int j = (int)(k * 2654435761u % (unsigned)bench_window);

			if (one_free(live[j]) != 0 ||
			    one_alloc(&live[j], bench_sizes[k++ % NSIZES]) != 0)
				goto fail;
		}
		pairs += 256;
	}
	for (i = 0; i < bench_window; i++)
		one_free(live[i]);
	free(live);
	w->pairs = pairs;
	return NULL;
fail:
	w->error = EIO;
	atomic_fetch_add(&bench_go, 1);
	free(live);
	return NULL;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mode", required_argument, NULL, 'm' },
		{ "threads", required_argument, NULL, 't' },
		{ "seconds", required_argument, NULL, 's' },
		{ "window", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	struct worker *w;
	int threads = 1, c, i, err = 0;
	uint64_t total = 0;
	double t0, t1;

	while ((c = getopt_long(argc, argv, "m:t:s:w:", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (strcmp(optarg, "cuda") == 0)
				bench_mode = MODE_CUDA;
			else if (strcmp(optarg, "mimalloc") == 0)
				bench_mode = MODE_MIMALLOC;
			else
				goto usage;
			break;
		case 't':
			threads = atoi(optarg);
			break;
		case 's':
			bench_seconds = atof(optarg);
			break;
		case 'w':
			bench_window = atoi(optarg);
			break;
		default:
			goto usage;
		}
	}
	if (threads < 1 || threads > 256 || bench_seconds <= 0 ||
	    bench_window < 1 || optind != argc)
		goto usage;
	make_sizes();
	if ((w = calloc((size_t)threads, sizeof(*w))) == NULL)
		return 1;
	for (i = 0; i < threads; i++) {
		w[i].id = i;
		pthread_create(&w[i].t, NULL, worker_main, &w[i]);
	}
	while (atomic_load(&bench_go) < threads)
		;
	t0 = now_s();
	while ((t1 = now_s()) - t0 < bench_seconds) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	atomic_store(&bench_stop, 1);
	for (i = 0; i < threads; i++) {
		pthread_join(w[i].t, NULL);
		total += w[i].pairs;
		err |= w[i].error;
	}
	t1 = now_s();
	if (err) {
		fprintf(stderr, "bench_alloc: an allocation failed\n");
		return 1;
	}
	printf("%s %d %.0f\n", bench_mode == MODE_CUDA ? "cuda" : "mimalloc",
	    threads, (double)total / (t1 - t0));
	free(w);
	return 0;
usage:
	fprintf(stderr, "usage: bench_alloc --mode cuda|mimalloc [--threads N] "
	    "[--seconds S] [--window W]\n");
	return 1;
}
