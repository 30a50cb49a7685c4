/*
 * vmm-replay — replay an allocation trace through the CUDA runtime, so that
 * under LD_PRELOAD=libvmm_client.so it goes through the real shim path to
 * vmmd, and report what it cost (issue 5, "A replay tool and workloads").
 *
 * The trace is plain text (alloc/free/realloc/sleep, tools/replay/FORMAT.md)
 * or RMM's logging CSV (the recorded traces in ../shared/traces, beside the
 * repository), told apart by the header.  The whole file is parsed and
 * checked before any CUDA call, every line, and the ids are resolved to
 * slots then, so replaying is a walk over an array.
 *
 * Every allocation gets a small pattern written into its first 64 bytes
 * with cudaMemcpy (so the memory is really mapped and touched), checked
 * again on realloc and on free: two live allocations that alias show up as
 * a data mismatch.  Device memory is only ever read and written by copies.
 *
 * --procs N forks N replayers before any CUDA call (a forked child may not
 * use its parent's CUDA state); they meet at a barrier after initialising
 * and start together, the i-th one --stagger ms × i later.  Their results,
 * latencies and live-bytes timelines go through a shared mapping to the
 * parent, which merges the timelines into the peak concurrent demand.
 * In a timeline an allocation counts from when cudaMalloc returns and a
 * free from when cudaFree is called, so the demand it shows is the least
 * the memory behind it must have held.
 *
 * --passes N replays the trace N times in each process (what a pass leaves
 * live is freed before the next), so later passes find the pool warm;
 * --between CMD runs a shell command between passes (run.sh reads vmmd's
 * counters there); --events FILE writes every process's timeline.
 *
 * On the emulator each allocation also records how many creates ran
 * anywhere in the emulated machine while it was made (vmmd's, this
 * process's own, a fallback cudaMalloc's): the instance's count of creates
 * begun, read after it returns, minus its count of creates done, read
 * before it is called.  That counts every create that overlapped the call,
 * one begun earlier and still being paid included, and cannot miss one:
 * no sampling.  --allocs FILE writes these records, one per allocation.
 *
 *   vmm-replay [options] TRACE
 */
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "opt.h"
#include "vmm_client.h"

#define RP_NAME		"vmm-replay"
#define RP_CSV_HEADER	"Thread,Time,Action,Pointer,Size,Stream"
#define RP_TOUCH	64		/* bytes written and checked per alloc */
#define RP_MAX_ID	255		/* id token length */
#define RP_MAX_PROCS	64
#define RP_MAX_SLEEP_MS	86400000
#define RP_MAX_ERRORS	50		/* parse errors printed; all are counted */
#define RP_BARRIER_MS	60000		/* replayers wait this long for each other */
#define RP_MAX_PASSES	16

enum rp_kind { OP_ALLOC, OP_FREE, OP_REALLOC, OP_SLEEP };

/* One trace line, resolved: slot indexes the id table. */
struct rp_op {
	uint8_t		kind;
	uint8_t		skip;		/* filtered out by --min-size */
	uint32_t	slot;
	uint32_t	line;
	uint64_t	arg;		/* size in bytes, or ms for sleep */
};

struct rp_slot {
	char		*id;
	/* parse-time state, used to check the trace */
	bool		live;
	bool		skip;
	uint64_t	size;
};

struct rp_trace {
	const char	*path;
	bool		csv;
	struct rp_op	*ops;
	size_t		nops, capops;
	struct rp_slot	*slots;
	size_t		nslots, capslots;
	uint32_t	*hash;		/* slot + 1, 0 = empty; open addressing */
	size_t		hashcap;
	size_t		nalloc, nfree, nrealloc, nsleep;
	size_t		nskipped;	/* ops filtered out, or tolerated */
	size_t		nfailure;	/* CSV "allocate failure" lines */
	uint64_t	live;		/* requested bytes live after the last op */
	uint64_t	peak;		/* requested bytes, as the trace says */
	unsigned	errors;
};

/* Live requested bytes after one op, at a CLOCK_MONOTONIC time. */
struct rp_event {
	uint64_t	t_ns;
	uint64_t	live;
};

/* What one replayer reports to the parent. */
struct rp_result {
	int		status;		/* 0: ok */
	bool		broker;		/* vmm_get_usage was found */
	bool		vmm_realloc;	/* realloc went through vmm_realloc */
	uint64_t	ops, allocs, frees, reallocs, sleeps, skipped;
	uint64_t	peak;		/* requested bytes, this process */
	uint64_t	daemon_calls, syncs, peak_mapped, client_peak;
	uint64_t	nalloc_lat, nrealloc_lat, nevents;
	/* per pass: its time (first op to last, ns) and where its samples of
	 * alloc_lat end */
	uint64_t	pass_ns[RP_MAX_PASSES];
	uint64_t	pass_alat_end[RP_MAX_PASSES];
	/* On the emulator (cuemuGetCounter found): per pass, the driver's
	 * cuMemCreate/cuMemAlloc calls of this process (none when every
	 * allocation came from a pool), and per allocation, the time the
	 * latency profile charged its thread (adrv, beside alloc_lat). */
	bool		emulator;
	uint64_t	pass_creates[RP_MAX_PASSES];
	/* The emulator counts the instance's creates (instance_creates_*):
	 * per allocation, those that ran during it (acrt, beside alloc_lat). */
	bool		instance;
	int64_t		start_unix_ms, end_unix_ms, last_free_unix_ms;
	char		err[512];
};

/* The shared mapping: header fields, then per-process arrays. */
struct rp_shared {
	unsigned	ready;		/* replayers past initialisation */
	unsigned	abort;		/* one failed before the start */
	uint64_t	t0_ns;		/* common start, set by the last ready */
};

struct rp_opts {
	unsigned	procs;
	uint64_t	stagger_ms;
	uint64_t	min_size;
	bool		lenient;
	bool		json;
	bool		parse_only;
	bool		torch;
	const char	*allocs;	/* per-allocation records file */		/* vmm_torch_malloc/free, not cudaMalloc */
	unsigned	passes;
	const char	*between;	/* shell command run between passes */
	const char	*events;	/* timeline file */
};

typedef int (*rp_realloc_fn)(void **, size_t);
typedef void *(*rp_tmalloc_fn)(ssize_t, int, void *);
typedef void (*rp_tfree_fn)(void *, ssize_t, int, void *);
typedef int (*rp_usage_fn)(struct vmm_usage *);
typedef const char *(*rp_strerror_fn)(int);

static struct rp_opts opts = { .procs = 1, .passes = 1 };

/* ---- small helpers ------------------------------------------------------- */

static void __attribute__((noreturn))
oom(void)
{
	fprintf(stderr, RP_NAME ": out of memory\n");
	exit(2);
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		oom();
	return p;
}

static void *
xrealloc(void *p, size_t n)
{
	if ((p = realloc(p, n ? n : 1)) == NULL)
		oom();
	return p;
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t
unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000u),
	    (long)(ns % 1000000000u) };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- parsing ----------------------------------------------------------- */

/* Reports one bad line as FILE:LINE: message; parsing goes on. */
static void __attribute__((format(printf, 3, 4)))
perr(struct rp_trace *t, size_t line, const char *fmt, ...)
{
	va_list ap;

	if (t->errors++ >= RP_MAX_ERRORS)
		return;
	fprintf(stderr, "%s:%zu: ", t->path, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* FNV-1a. */
static uint64_t
hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static void
hash_insert(struct rp_trace *t, uint32_t slot)
{
	size_t i = (size_t)hash_str(t->slots[slot].id) & (t->hashcap - 1);

	while (t->hash[i] != 0)
		i = (i + 1) & (t->hashcap - 1);
	t->hash[i] = slot + 1;
}

/* The slot of id, created if new. */
static uint32_t
slot_get(struct rp_trace *t, const char *id)
{
	size_t i;

	if (t->hashcap == 0 || 2 * (t->nslots + 1) > t->hashcap) {
		size_t s;

		free(t->hash);
		t->hashcap = t->hashcap ? 2 * t->hashcap : 1024;
		t->hash = calloc(t->hashcap, sizeof(*t->hash));
		if (t->hash == NULL)
			oom();
		for (s = 0; s < t->nslots; s++)
			hash_insert(t, (uint32_t)s);
	}
	i = (size_t)hash_str(id) & (t->hashcap - 1);
	while (t->hash[i] != 0) {
		if (strcmp(t->slots[t->hash[i] - 1].id, id) == 0)
			return t->hash[i] - 1;
		i = (i + 1) & (t->hashcap - 1);
	}
	if (t->nslots == t->capslots) {
		t->capslots = t->capslots ? 2 * t->capslots : 1024;
		t->slots = xrealloc(t->slots, t->capslots * sizeof(*t->slots));
	}
	memset(&t->slots[t->nslots], 0, sizeof(t->slots[0]));
	t->slots[t->nslots].id = strdup(id);
	if (t->slots[t->nslots].id == NULL)
		oom();
	t->hash[i] = (uint32_t)t->nslots + 1;
	return (uint32_t)t->nslots++;
}

static void
op_push(struct rp_trace *t, enum rp_kind kind, uint32_t slot, uint64_t arg,
    size_t line, bool skip)
{
	struct rp_op *o;

	if (t->nops == t->capops) {
		t->capops = t->capops ? 2 * t->capops : 4096;
		t->ops = xrealloc(t->ops, t->capops * sizeof(*t->ops));
	}
	o = &t->ops[t->nops++];
	o->kind = (uint8_t)kind;
	o->skip = skip;
	o->slot = slot;
	o->line = (uint32_t)line;
	o->arg = arg;
}

/* Checks one alloc/free/realloc against the ids live so far and records
 * it; the trace's own peak is computed here, as a reference. */
static void
apply(struct rp_trace *t, size_t line, enum rp_kind kind, const char *id,
    uint64_t size)
{
	struct rp_slot *s;
	uint32_t slot;

	if (strlen(id) > RP_MAX_ID) {
		perr(t, line, "id longer than %d bytes", RP_MAX_ID);
		return;
	}
	slot = slot_get(t, id);
	s = &t->slots[slot];
	switch (kind) {
	case OP_ALLOC:
		if (s->live) {
			perr(t, line, "alloc of id %s, which is already live",
			    id);
			return;
		}
		s->live = true;
		s->size = size;
		s->skip = size < opts.min_size;
		t->nalloc++;
		if (s->skip)
			t->nskipped++;
		else
			t->live += size;
		break;
	case OP_FREE:
		if (!s->live) {
			if (!opts.lenient)
				perr(t, line, "free of unknown id %s "
				    "(--lenient skips it)", id);
			t->nskipped++;
			return;
		}
		s->live = false;
		t->nfree++;
		if (s->skip)
			t->nskipped++;
		else
			t->live -= s->size;
		break;
	case OP_REALLOC:
		if (!s->live) {
			if (!opts.lenient)
				perr(t, line, "realloc of unknown id %s "
				    "(--lenient skips it)", id);
			t->nskipped++;
			return;
		}
		t->nrealloc++;
		if (s->skip)
			t->nskipped++;
		else
			t->live = t->live - s->size + size;
		s->size = size;
		break;
	case OP_SLEEP:
		return;
	}
	if (t->live > t->peak)
		t->peak = t->live;
	op_push(t, kind, slot, size, line, s->skip);
}

/* A size token: digits with an optional K/M/G/T (binary) suffix, > 0. */
static int
parse_size_tok(const char *s, uint64_t *out)
{
	if (vmm_parse_size(s, out) != 0 || *out == 0 || *out > SIZE_MAX)
		return -1;
	return 0;
}

/* Splits s at whitespace into at most max tokens; returns the count, or
 * max + 1 if there are more. */
static int
split(char *s, char **tok, int max)
{
	int n = 0;
	char *save = NULL, *p;

	for (p = strtok_r(s, " \t", &save); p != NULL;
	    p = strtok_r(NULL, " \t", &save)) {
		if (n == max)
			return max + 1;
		tok[n++] = p;
	}
	return n;
}

/* One line of the plain-text format (comment and newline already cut). */
static void
parse_text_line(struct rp_trace *t, size_t line, char *s)
{
	char *tok[4];
	uint64_t v;
	int n = split(s, tok, 3);

	if (n == 0)
		return;
	if (strcmp(tok[0], "alloc") == 0 || strcmp(tok[0], "realloc") == 0) {
		if (n != 3) {
			perr(t, line, "%s takes an id and a size", tok[0]);
			return;
		}
		if (parse_size_tok(tok[2], &v) != 0) {
			perr(t, line, "bad size \"%s\" (bytes > 0, suffix "
			    "K/M/G/T allowed)", tok[2]);
			return;
		}
		apply(t, line, tok[0][0] == 'a' ? OP_ALLOC : OP_REALLOC,
		    tok[1], v);
	} else if (strcmp(tok[0], "free") == 0) {
		if (n != 2) {
			perr(t, line, "free takes one id");
			return;
		}
		apply(t, line, OP_FREE, tok[1], 0);
	} else if (strcmp(tok[0], "sleep") == 0) {
		char *end;

		if (n != 2) {
			perr(t, line, "sleep takes milliseconds");
			return;
		}
		errno = 0;
		v = strtoull(tok[1], &end, 10);
		if (tok[1][0] < '0' || tok[1][0] > '9' || *end != '\0' ||
		    errno != 0 || v > RP_MAX_SLEEP_MS) {
			perr(t, line, "bad sleep \"%s\" (0..%d ms)", tok[1],
			    RP_MAX_SLEEP_MS);
			return;
		}
		t->nsleep++;
		op_push(t, OP_SLEEP, 0, v, line, false);
	} else
		perr(t, line, "unknown op \"%.40s\" (alloc, free, realloc, "
		    "sleep)", tok[0]);
}

/* One data line of RMM's CSV log: Thread,Time,Action,Pointer,Size,Stream. */
static void
parse_csv_line(struct rp_trace *t, size_t line, char *s)
{
	char *f[7], *p = s, *end;
	uint64_t size;
	int n = 0;

	if (*s == '\0')
		return;
	if (strcmp(s, RP_CSV_HEADER) == 0) {
		perr(t, line, "the header again");
		return;
	}
	while (n < 7) {
		f[n++] = p;
		if ((p = strchr(p, ',')) == NULL)
			break;
		*p++ = '\0';
	}
	if (n != 6) {
		perr(t, line, "expected 6 comma-separated fields (%s)",
		    RP_CSV_HEADER);
		return;
	}
	if (f[3][0] == '\0' || strpbrk(f[3], " \t") != NULL) {
		perr(t, line, "bad Pointer \"%.40s\"", f[3]);
		return;
	}
	errno = 0;
	size = strtoull(f[4], &end, 10);
	if (f[4][0] < '0' || f[4][0] > '9' || *end != '\0' || errno != 0 ||
	    size > SIZE_MAX) {
		perr(t, line, "bad Size \"%.40s\"", f[4]);
		return;
	}
	if (strcmp(f[2], "allocate") == 0) {
		if (size == 0) {
			perr(t, line, "allocate of 0 bytes");
			return;
		}
		apply(t, line, OP_ALLOC, f[3], size);
	} else if (strcmp(f[2], "free") == 0 ||
	    strcmp(f[2], "deallocate") == 0)
		apply(t, line, OP_FREE, f[3], 0);
	else if (strcmp(f[2], "allocate failure") == 0)
		t->nfailure++;		/* the original run got nothing */
	else
		perr(t, line, "unknown Action \"%.40s\" (allocate, free, "
		    "deallocate, allocate failure)", f[2]);
}

/* Reads and checks the whole trace; 0, or -1 after reporting every bad
 * line. */
static int
trace_load(struct rp_trace *t, const char *path)
{
	char *buf = NULL, *c;
	size_t cap = 0, line = 0;
	ssize_t len;
	FILE *f;

	memset(t, 0, sizeof(*t));
	t->path = path;
	if ((f = fopen(path, "r")) == NULL) {
		fprintf(stderr, RP_NAME ": %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((len = getline(&buf, &cap, f)) >= 0) {
		line++;
		while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
			buf[--len] = '\0';
		if (strlen(buf) != (size_t)len) {
			perr(t, line, "NUL byte in line");
			continue;
		}
		if (line == 1 && strcmp(buf, RP_CSV_HEADER) == 0) {
			t->csv = true;
			continue;
		}
		if (t->csv) {
			parse_csv_line(t, line, buf);
			continue;
		}
		if ((c = strchr(buf, '#')) != NULL)
			*c = '\0';
		parse_text_line(t, line, buf);
	}
	if (ferror(f)) {
		fprintf(stderr, RP_NAME ": %s: read error\n", path);
		t->errors++;
	}
	fclose(f);
	free(buf);
	if (t->errors > RP_MAX_ERRORS)
		fprintf(stderr, "%s: %u more errors\n", path,
		    t->errors - RP_MAX_ERRORS);
	if (t->errors != 0) {
		fprintf(stderr, RP_NAME ": %s: %u bad line%s, nothing "
		    "replayed\n", path, t->errors, t->errors == 1 ? "" : "s");
		return -1;
	}
	return 0;
}

/* ---- replaying ----------------------------------------------------------- */

/* Per-process replay state. */
struct rp_run {
	const struct rp_trace	*t;
	struct rp_result	*res;
	uint64_t		*alloc_lat, *realloc_lat;	/* ns */
	uint64_t		*alloc_drv;	/* ns charged, per alloc_lat */
	uint64_t		*alloc_crt;	/* creates during, per alloc_lat */
	int			(*counter)(const char *, unsigned long long *);
	struct rp_event		*ev;
	void			**ptr;		/* per slot */
	uint64_t		*size;		/* per slot */
	uint32_t		*seed;		/* per slot: its pattern */
	unsigned		proc;
	uint64_t		live;
	rp_realloc_fn		vrealloc;
	rp_tmalloc_fn		tmalloc;	/* --torch */
	rp_tfree_fn		tfree;
	rp_usage_fn		usage;
	rp_strerror_fn		vstrerror;
};

/* Stops this replayer with a message naming the trace line. */
static int __attribute__((format(printf, 3, 4)))
run_fail(struct rp_run *r, const struct rp_op *o, const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	if (o != NULL)
		n = snprintf(r->res->err, sizeof(r->res->err), "%s:%u: ",
		    r->t->path, o->line);
	if (n < 0 || (size_t)n >= sizeof(r->res->err))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(r->res->err + n, sizeof(r->res->err) - (size_t)n, fmt, ap);
	va_end(ap);
	r->res->status = 1;
	return -1;
}

/* The bytes a slot's allocation holds: a small LCG stream from its seed. */
static void
pattern(uint32_t seed, unsigned char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		b[i] = (unsigned char)(seed >> 16);
	}
}

/* Writes the slot's pattern into the first bytes of its allocation. */
static int
touch(struct rp_run *r, const struct rp_op *o, uint32_t slot)
{
	unsigned char b[RP_TOUCH];
	size_t n = r->size[slot] < RP_TOUCH ? r->size[slot] : RP_TOUCH;
	cudaError_t e;

	pattern(r->seed[slot], b, n);
	if ((e = cudaMemcpy(r->ptr[slot], b, n, cudaMemcpyHostToDevice)) !=
	    cudaSuccess)
		return run_fail(r, o, "cudaMemcpy to id %s: %s",
		    r->t->slots[slot].id, cudaGetErrorString(e));
	return 0;
}

/* Reads back the first n bytes and compares them with the pattern. */
static int
check(struct rp_run *r, const struct rp_op *o, uint32_t slot, size_t n)
{
	unsigned char want[RP_TOUCH], got[RP_TOUCH];
	cudaError_t e;

	if (n > RP_TOUCH)
		n = RP_TOUCH;
	pattern(r->seed[slot], want, n);
	if ((e = cudaMemcpy(got, r->ptr[slot], n, cudaMemcpyDeviceToHost)) !=
	    cudaSuccess)
		return run_fail(r, o, "cudaMemcpy from id %s: %s",
		    r->t->slots[slot].id, cudaGetErrorString(e));
	if (memcmp(want, got, n) != 0)
		return run_fail(r, o, "data check failed for id %s at %p: "
		    "its bytes were overwritten (aliasing?)",
		    r->t->slots[slot].id, r->ptr[slot]);
	return 0;
}

/* Tracks the peak of the client's mapped bytes (under the preload). */
static void
sample_usage(struct rp_run *r)
{
	struct vmm_usage u;

	if (r->usage != NULL && r->usage(&u) == 0 &&
	    u.mapped_bytes > r->res->peak_mapped)
		r->res->peak_mapped = u.mapped_bytes;
}

/* Records the live requested bytes from time t_ns on in the timeline. */
static void
event(struct rp_run *r, uint64_t t_ns)
{
	r->ev[r->res->nevents].t_ns = t_ns;
	r->ev[r->res->nevents++].live = r->live;
}

/* realloc without vmm_realloc: a new allocation, a copy, a free. */
static int
emulated_realloc(void **p, size_t old, size_t size)
{
	void *np;
	cudaError_t e;

	if ((e = cudaMalloc(&np, size)) != cudaSuccess)
		return (int)e;
	if ((e = cudaMemcpy(np, *p, old < size ? old : size,
	    cudaMemcpyDeviceToDevice)) != cudaSuccess) {
		cudaFree(np);
		return (int)e;
	}
	if ((e = cudaFree(*p)) != cudaSuccess)
		return (int)e;
	*p = np;
	return 0;
}

/* The emulator's counter name (0 on a real driver). */
static uint64_t
emu_counter(const struct rp_run *r, const char *name)
{
	unsigned long long v = 0;

	if (r->counter == NULL || r->counter(name, &v) != 0)
		return 0;
	return v;
}

/* Times cudaMalloc alone; the seed comes from the op's index, so an id
 * allocated again gets a different pattern than its previous life. */
static int
do_alloc(struct rp_run *r, const struct rp_op *o, size_t i)
{
	uint64_t t0, t1, c0, done0 = 0;
	cudaError_t e;

	r->seed[o->slot] = (uint32_t)(i * 2654435761u) ^ (r->proc << 24);
	r->size[o->slot] = o->arg;
	/* Creates done before the call: read first, so that every create
	 * still running at the call's start is in begun - done0 below. */
	if (r->res->instance)
		done0 = emu_counter(r, "instance_creates_done");
	c0 = emu_counter(r, "thread_charged_ns");
	t0 = now_ns();
	if (r->tmalloc != NULL) {
		/* As PyTorch's pluggable allocator calls it: device 0, its
		 * current stream (the legacy default stream). */
		r->ptr[o->slot] = r->tmalloc((ssize_t)o->arg, 0, NULL);
		e = r->ptr[o->slot] != NULL ? cudaSuccess :
		    cudaErrorMemoryAllocation;
	} else {
		e = cudaMalloc(&r->ptr[o->slot], (size_t)o->arg);
	}
	t1 = now_ns();
	r->alloc_drv[r->res->nalloc_lat] = emu_counter(r, "thread_charged_ns") -
	    c0;
	/* Creates begun by now (read last) minus those done before. */
	r->alloc_crt[r->res->nalloc_lat] = r->res->instance ?
	    emu_counter(r, "instance_creates_begun") - done0 : 0;
	r->alloc_lat[r->res->nalloc_lat++] = t1 - t0;
	if (e != cudaSuccess)
		return run_fail(r, o, "cudaMalloc(%" PRIu64 ") for id %s: %s",
		    o->arg, r->t->slots[o->slot].id, cudaGetErrorString(e));
	r->live += o->arg;
	event(r, t1);		/* in use from its return */
	r->res->allocs++;
	sample_usage(r);
	return touch(r, o, o->slot);
}

static int
do_free(struct rp_run *r, const struct rp_op *o)
{
	uint64_t t0;
	cudaError_t e;

	if (check(r, o, o->slot, (size_t)r->size[o->slot]) != 0)
		return -1;
	t0 = now_ns();
	if (r->tfree != NULL) {
		r->tfree(r->ptr[o->slot], (ssize_t)r->size[o->slot], 0, NULL);
		e = cudaSuccess;
	} else {
		e = cudaFree(r->ptr[o->slot]);
	}
	if (e != cudaSuccess)
		return run_fail(r, o, "cudaFree of id %s: %s",
		    r->t->slots[o->slot].id, cudaGetErrorString(e));
	r->ptr[o->slot] = NULL;
	r->live -= r->size[o->slot];
	event(r, t0);		/* not in use from its call */
	r->res->frees++;
	r->res->last_free_unix_ms = unix_ms();
	return 0;
}

/* Times the resize, checks the bytes it had to keep, rewrites the window. */
static int
do_realloc(struct rp_run *r, const struct rp_op *o)
{
	uint64_t old = r->size[o->slot], keep = old < o->arg ? old : o->arg;
	uint64_t t0, t1;
	int rc;

	t0 = now_ns();
	if (r->vrealloc != NULL)
		rc = r->vrealloc(&r->ptr[o->slot], (size_t)o->arg);
	else
		rc = emulated_realloc(&r->ptr[o->slot], (size_t)old,
		    (size_t)o->arg);
	t1 = now_ns();
	r->realloc_lat[r->res->nrealloc_lat++] = t1 - t0;
	if (rc != 0)
		return run_fail(r, o, "realloc of id %s to %" PRIu64 ": %s",
		    r->t->slots[o->slot].id, o->arg, r->vrealloc == NULL ?
		    cudaGetErrorString((cudaError_t)rc) : r->vstrerror != NULL ?
		    r->vstrerror(rc) : "vmm_realloc failed");
	if (check(r, o, o->slot, (size_t)keep) != 0)
		return -1;
	r->size[o->slot] = o->arg;
	r->live = r->live - old + o->arg;
	event(r, o->arg > old ? t1 : t0);	/* the smaller size in between */
	r->res->reallocs++;
	sample_usage(r);
	return touch(r, o, o->slot);	/* the whole window is valid again */
}

/* Waits for every replayer to be ready, then until this one's start. */
static int
barrier(struct rp_shared *sh, unsigned proc)
{
	uint64_t deadline = now_ns() + RP_BARRIER_MS * 1000000ull, t0;

	if (__atomic_add_fetch(&sh->ready, 1, __ATOMIC_ACQ_REL) == opts.procs)
		__atomic_store_n(&sh->t0_ns, now_ns(), __ATOMIC_RELEASE);
	while ((t0 = __atomic_load_n(&sh->t0_ns, __ATOMIC_ACQUIRE)) == 0) {
		if (__atomic_load_n(&sh->abort, __ATOMIC_ACQUIRE) ||
		    now_ns() > deadline)
			return -1;
		sleep_ns(200000);
	}
	t0 += (uint64_t)proc * opts.stagger_ms * 1000000ull;
	if (t0 > now_ns())
		sleep_ns(t0 - now_ns());
	return 0;
}

/* Frees (and checks) what the trace left live, uncounted. */
static int
free_left(struct rp_run *r)
{
	uint64_t frees = r->res->frees;
	int64_t last_free = r->res->last_free_unix_ms;
	size_t i;

	for (i = 0; i < r->t->nslots; i++) {
		struct rp_op o = { .kind = OP_FREE, .slot = (uint32_t)i };

		if (r->ptr[i] != NULL && do_free(r, &o) != 0)
			return -1;
	}
	r->res->frees = frees;
	r->res->last_free_unix_ms = last_free;
	return 0;
}

/* Runs --between's command with sh -c after pass `pass` (1-based), with
 * VMM_REPLAY_PASS=pass and without LD_PRELOAD, and waits for it; it must
 * exit 0.  posix_spawn runs no fork handlers of this CUDA process. */
static int
run_between(struct rp_run *r, unsigned pass)
{
	extern char **environ;
	char passvar[32], **env;
	char *argv[] = { "sh", "-c", (char *)opts.between, NULL };
	size_t n = 0, k = 0;
	pid_t pid;
	int st, rc;

	while (environ[n] != NULL)
		n++;
	env = xmalloc((n + 2) * sizeof(*env));
	snprintf(passvar, sizeof(passvar), "VMM_REPLAY_PASS=%u", pass);
	for (n = 0; environ[n] != NULL; n++)
		if (strncmp(environ[n], "LD_PRELOAD=", 11) != 0 &&
		    strncmp(environ[n], "VMM_REPLAY_PASS=", 16) != 0)
			env[k++] = environ[n];
	env[k++] = passvar;
	env[k] = NULL;
	fflush(NULL);
	rc = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, env);
	free(env);
	if (rc != 0)
		return run_fail(r, NULL, "--between: cannot run /bin/sh: %s",
		    strerror(rc));
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return run_fail(r, NULL, "--between: waitpid: %s",
			    strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return run_fail(r, NULL, "--between command after pass %u "
		    "failed (wait status 0x%x): %s", pass, (unsigned)st,
		    opts.between);
	return 0;
}

/* Replays the whole trace in this process; fills r->res. */
static int
replay(struct rp_run *r, struct rp_shared *sh)
{
	const struct rp_trace *t = r->t;
	struct rp_result *res = r->res;
	struct vmm_usage u;
	cudaError_t e;
	unsigned pass;
	size_t i;

	r->vrealloc = (rp_realloc_fn)dlsym(RTLD_DEFAULT, "vmm_realloc");
	r->usage = (rp_usage_fn)dlsym(RTLD_DEFAULT, "vmm_get_usage");
	r->vstrerror = (rp_strerror_fn)dlsym(RTLD_DEFAULT, "vmm_strerror");
	res->broker = r->usage != NULL;
	if (opts.torch) {
		r->tmalloc = (rp_tmalloc_fn)dlsym(RTLD_DEFAULT, "vmm_torch_malloc");
		r->tfree = (rp_tfree_fn)dlsym(RTLD_DEFAULT, "vmm_torch_free");
		if (r->tmalloc == NULL || r->tfree == NULL) {
			__atomic_store_n(&sh->abort, 1, __ATOMIC_RELEASE);
			return run_fail(r, NULL, "--torch: vmm_torch_malloc and "
			    "vmm_torch_free not found (run under "
			    "LD_PRELOAD=libvmm_client.so)");
		}
		r->vrealloc = NULL;	/* resizes: allocate, copy, free */
	}
	res->vmm_realloc = r->vrealloc != NULL;
	if ((e = cudaSetDevice(0)) != cudaSuccess ||
	    (e = cudaFree(NULL)) != cudaSuccess) {
		__atomic_store_n(&sh->abort, 1, __ATOMIC_RELEASE);
		return run_fail(r, NULL, "CUDA initialisation: %s",
		    cudaGetErrorString(e));
	}
	{
		void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);

		if (h != NULL)
			r->counter = (int (*)(const char *,
			    unsigned long long *))dlsym(h, "cuemuGetCounter");
		res->emulator = r->counter != NULL;
		if (res->emulator) {
			unsigned long long v;

			res->instance = r->counter("instance_creates_begun",
			    &v) == 0 && r->counter("instance_creates_done",
			    &v) == 0;
		}
	}
	if (barrier(sh, r->proc) != 0)
		return run_fail(r, NULL, "another replayer failed to start");
	res->start_unix_ms = unix_ms();
	for (pass = 0; pass < opts.passes; pass++) {
		uint64_t p0, c0;

		if (pass > 0 && (free_left(r) != 0 || (opts.between != NULL &&
		    run_between(r, pass) != 0)))
			return -1;
		c0 = emu_counter(r, "calls_create");
		p0 = now_ns();
		for (i = 0; i < t->nops; i++) {
			const struct rp_op *o = &t->ops[i];
			int rc = 0;

			if (o->skip) {
				res->skipped++;
				continue;
			}
			switch (o->kind) {
			case OP_ALLOC:
				rc = do_alloc(r, o, i);
				break;
			case OP_FREE:
				rc = do_free(r, o);
				break;
			case OP_REALLOC:
				rc = do_realloc(r, o);
				break;
			case OP_SLEEP:
				sleep_ns(o->arg * 1000000ull);
				res->sleeps++;
				continue;
			}
			if (rc != 0)
				return -1;
			res->ops++;
			if (r->live > res->peak)
				res->peak = r->live;
		}
		res->pass_ns[pass] = now_ns() - p0;
		res->pass_alat_end[pass] = res->nalloc_lat;
		res->pass_creates[pass] = emu_counter(r, "calls_create") - c0;
	}
	res->end_unix_ms = unix_ms();
	if (r->usage != NULL && r->usage(&u) == 0) {
		res->daemon_calls = u.daemon_calls;
		res->syncs = u.syncs;
		res->client_peak = u.peak_in_use_bytes;
	}
	/* What the trace leaves live is freed (and checked), uncounted. */
	return free_left(r);
}

/* ---- processes and results ---------------------------------------------- */

struct rp_layout {
	size_t	res_off, alat_off, adrv_off, acrt_off, rlat_off, ev_off;
	size_t	per_proc, total;
};

static size_t
align8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* Lays out the shared mapping: a header, then for each replayer its
 * result, its latency arrays and its timeline, sized from the trace. */
static void
layout(const struct rp_trace *t, struct rp_layout *l)
{
	l->res_off = align8(sizeof(struct rp_shared));
	l->alat_off = align8(sizeof(struct rp_result));
	l->adrv_off = l->alat_off + align8((t->nalloc * opts.passes + 1) *
	    sizeof(uint64_t));
	l->acrt_off = l->adrv_off + align8((t->nalloc * opts.passes + 1) *
	    sizeof(uint64_t));
	l->rlat_off = l->acrt_off + align8((t->nalloc * opts.passes + 1) *
	    sizeof(uint64_t));
	l->ev_off = l->rlat_off + align8((t->nrealloc * opts.passes + 1) *
	    sizeof(uint64_t));
	/* an event per op, and per free of what a pass leaves live */
	l->per_proc = l->ev_off + align8(((t->nops + t->nslots) *
	    opts.passes + 1) * sizeof(struct rp_event));
	l->total = l->res_off + l->per_proc * opts.procs;
}

static unsigned char *
proc_base(unsigned char *map, const struct rp_layout *l, unsigned p)
{
	return map + l->res_off + l->per_proc * p;
}

/* Runs replayer p on its part of the shared mapping; returns its status. */
static int
run_proc(const struct rp_trace *t, unsigned char *map,
    const struct rp_layout *l, unsigned p)
{
	unsigned char *b = proc_base(map, l, p);
	struct rp_run r = {
		.t = t,
		.res = (struct rp_result *)b,
		.alloc_lat = (uint64_t *)(b + l->alat_off),
		.alloc_drv = (uint64_t *)(b + l->adrv_off),
		.alloc_crt = (uint64_t *)(b + l->acrt_off),
		.realloc_lat = (uint64_t *)(b + l->rlat_off),
		.ev = (struct rp_event *)(b + l->ev_off),
		.proc = p,
	};
	int rc;

	r.ptr = calloc(t->nslots + 1, sizeof(*r.ptr));
	r.size = calloc(t->nslots + 1, sizeof(*r.size));
	r.seed = calloc(t->nslots + 1, sizeof(*r.seed));
	if (r.ptr == NULL || r.size == NULL || r.seed == NULL) {
		__atomic_store_n(&((struct rp_shared *)map)->abort, 1,
		    __ATOMIC_RELEASE);
		return run_fail(&r, NULL, "out of memory");
	}
	rc = replay(&r, (struct rp_shared *)map);
	free(r.ptr);
	free(r.size);
	free(r.seed);
	return rc;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v, in µs. */
static double
pct_us(const uint64_t *v, size_t n, double q)
{
	size_t k;

	if (n == 0)
		return 0;
	k = (size_t)(q * (double)n + 0.999999);
	if (k == 0)
		k = 1;
	if (k > n)
		k = n;
	return (double)v[k - 1] / 1000.0;
}

/* The peak of the sum over processes of live requested bytes, merging
 * their timelines by time. */
static uint64_t
concurrent_peak(unsigned char *map, const struct rp_layout *l)
{
	size_t pos[RP_MAX_PROCS] = { 0 };
	uint64_t cur[RP_MAX_PROCS] = { 0 }, sum = 0, peak = 0;
	unsigned p;

	for (;;) {
		unsigned best = opts.procs;
		uint64_t bt = UINT64_MAX;

		for (p = 0; p < opts.procs; p++) {
			unsigned char *b = proc_base(map, l, p);
			const struct rp_result *res = (void *)b;
			const struct rp_event *ev = (void *)(b + l->ev_off);

			if (pos[p] < res->nevents && ev[pos[p]].t_ns < bt) {
				bt = ev[pos[p]].t_ns;
				best = p;
			}
		}
		if (best == opts.procs)
			return peak;
		{
			unsigned char *b = proc_base(map, l, best);
			const struct rp_event *ev = (void *)(b + l->ev_off);

			sum = sum - cur[best] + ev[pos[best]].live;
			cur[best] = ev[pos[best]++].live;
		}
		if (sum > peak)
			peak = sum;
	}
}

struct rp_total;
static void	pass_figures(unsigned char *, const struct rp_layout *,
		    struct rp_total *, uint64_t *);

struct rp_total {
	uint64_t	ops, allocs, frees, reallocs, sleeps, skipped;
	uint64_t	peak, sum_peaks, daemon_calls, syncs, peak_mapped;
	uint64_t	client_peaks;
	double		a50, a99, amax, r50, r99;
	size_t		na, nr;
	/* per pass: the longest process's time, and alloc latency over all */
	double		pass_ms[RP_MAX_PASSES];
	double		pass_a50[RP_MAX_PASSES], pass_a99[RP_MAX_PASSES];
	uint64_t	pass_allocs[RP_MAX_PASSES];
	/* on the emulator: p99 of the driver time charged per allocation,
	 * and the replayers' own creates, per pass */
	bool		emulator;
	double		pass_d99[RP_MAX_PASSES];
	uint64_t	pass_creates[RP_MAX_PASSES];
	/* with the instance's create counts: per pass, the allocations
	 * during which some create ran */
	bool		instance;
	uint64_t	pass_during_create[RP_MAX_PASSES];
	int64_t		last_free, start, end;
	unsigned	failed;
	bool		broker, vrealloc;
};

/* Merges the replayers' results: sums, percentiles over every sample,
 * and the concurrent peak of their timelines. */
static void
aggregate(const struct rp_trace *t, unsigned char *map,
    const struct rp_layout *l, struct rp_total *T)
{
	uint64_t *al, *rl;
	unsigned p;

	memset(T, 0, sizeof(*T));
	T->start = INT64_MAX;
	al = xmalloc((t->nalloc * opts.passes + 1) * opts.procs * sizeof(*al));
	rl = xmalloc((t->nrealloc * opts.passes + 1) * opts.procs *
	    sizeof(*rl));
	for (p = 0; p < opts.procs; p++) {
		unsigned char *b = proc_base(map, l, p);
		const struct rp_result *r = (void *)b;

		if (r->status != 0)
			T->failed++;
		T->ops += r->ops;
		T->allocs += r->allocs;
		T->frees += r->frees;
		T->reallocs += r->reallocs;
		T->sleeps += r->sleeps;
		T->skipped += r->skipped;
		T->sum_peaks += r->peak;
		T->daemon_calls += r->daemon_calls;
		T->syncs += r->syncs;
		T->peak_mapped += r->peak_mapped;
		T->client_peaks += r->client_peak;
		T->broker |= r->broker;
		T->emulator |= r->emulator;
		T->instance |= r->instance;
		T->vrealloc |= r->vmm_realloc;
		if (r->last_free_unix_ms > T->last_free)
			T->last_free = r->last_free_unix_ms;
		if (r->start_unix_ms != 0 && r->start_unix_ms < T->start)
			T->start = r->start_unix_ms;
		if (r->end_unix_ms > T->end)
			T->end = r->end_unix_ms;
		memcpy(al + T->na, b + l->alat_off, r->nalloc_lat * 8);
		T->na += r->nalloc_lat;
		memcpy(rl + T->nr, b + l->rlat_off, r->nrealloc_lat * 8);
		T->nr += r->nrealloc_lat;
	}
	if (T->start == INT64_MAX)
		T->start = 0;
	qsort(al, T->na, sizeof(*al), cmp_u64);
	qsort(rl, T->nr, sizeof(*rl), cmp_u64);
	T->a50 = pct_us(al, T->na, 0.50);
	T->a99 = pct_us(al, T->na, 0.99);
	T->amax = T->na ? (double)al[T->na - 1] / 1000.0 : 0;
	T->r50 = pct_us(rl, T->nr, 0.50);
	T->r99 = pct_us(rl, T->nr, 0.99);
	T->peak = concurrent_peak(map, l);
	pass_figures(map, l, T, al);
	free(al);
	free(rl);
}

/* Per pass: the longest replayer's time, and the percentiles of every
 * replayer's alloc latencies in that pass (buf holds them all). */
static void
pass_figures(unsigned char *map, const struct rp_layout *l,
    struct rp_total *T, uint64_t *buf)
{
	unsigned k, p;

	for (k = 0; k < opts.passes; k++) {
		size_t n = 0, nd = 0;

		for (p = 0; p < opts.procs; p++) {
			unsigned char *b = proc_base(map, l, p);
			const struct rp_result *r = (void *)b;
			uint64_t from = k ? r->pass_alat_end[k - 1] : 0;
			uint64_t to = r->pass_alat_end[k];
			double ms = (double)r->pass_ns[k] / 1e6;

			if (ms > T->pass_ms[k])
				T->pass_ms[k] = ms;
			if (to < from)	/* this replayer did not get there */
				continue;
			memcpy(buf + n, b + l->alat_off + from * 8,
			    (size_t)(to - from) * 8);
			n += (size_t)(to - from);
			T->pass_creates[k] += r->pass_creates[k];
		}
		qsort(buf, n, sizeof(*buf), cmp_u64);
		T->pass_allocs[k] = n;
		T->pass_a50[k] = pct_us(buf, n, 0.50);
		T->pass_a99[k] = pct_us(buf, n, 0.99);
		/* The same allocations' charged driver time. */
		for (p = 0; p < opts.procs; p++) {
			unsigned char *b = proc_base(map, l, p);
			const struct rp_result *r = (void *)b;
			uint64_t from = k ? r->pass_alat_end[k - 1] : 0;
			uint64_t to = r->pass_alat_end[k];

			if (to < from)
				continue;
			memcpy(buf + nd, b + l->adrv_off + from * 8,
			    (size_t)(to - from) * 8);
			nd += (size_t)(to - from);
			for (; from < to; from++)
				if (((const uint64_t *)(b + l->acrt_off))[from])
					T->pass_during_create[k]++;
		}
		qsort(buf, nd, sizeof(*buf), cmp_u64);
		T->pass_d99[k] = pct_us(buf, nd, 0.99);
	}
}

/* Writes every replayer's timeline to opts.events: one line per event,
 * "PROC T_NS LIVE_BYTES" (CLOCK_MONOTONIC ns, shared by the processes of
 * a machine, so two replays' logs merge by time).  0, or -1 after saying
 * why. */
static int
write_events(FILE *f, unsigned char *map, const struct rp_layout *l)
{
	unsigned p;
	uint64_t i;

	fprintf(f, "# vmm-replay events: proc t_ns live_bytes (CLOCK_MONOTONIC;"
	    " an allocation counts from its return, a free from its call)\n");
	for (p = 0; p < opts.procs; p++) {
		unsigned char *b = proc_base(map, l, p);
		const struct rp_result *r = (void *)b;
		const struct rp_event *ev = (void *)(b + l->ev_off);

		for (i = 0; i < r->nevents; i++)
			fprintf(f, "%u %" PRIu64 " %" PRIu64 "\n", p,
			    ev[i].t_ns, ev[i].live);
	}
	if (fflush(f) != 0 || ferror(f)) {
		fprintf(stderr, RP_NAME ": --events %s: write error\n",
		    opts.events);
		return -1;
	}
	return 0;
}

/* Writes every replayer's allocations to opts.allocs: one line each,
 * "PROC PASS LAT_NS DRIVER_NS CREATES" (PASS from 1; DRIVER_NS the time
 * the latency profile charged it; CREATES those that ran anywhere in the
 * emulated machine during it, "-" where the emulator does not count
 * them).  0, or -1 after saying why. */
static int
write_allocs(FILE *f, unsigned char *map, const struct rp_layout *l)
{
	unsigned p, k;
	uint64_t i;

	fprintf(f, "# vmm-replay allocs: proc pass lat_ns driver_ns "
	    "creates_during\n");
	for (p = 0; p < opts.procs; p++) {
		unsigned char *b = proc_base(map, l, p);
		const struct rp_result *r = (void *)b;
		const uint64_t *lat = (const void *)(b + l->alat_off);
		const uint64_t *drv = (const void *)(b + l->adrv_off);
		const uint64_t *crt = (const void *)(b + l->acrt_off);

		for (i = 0, k = 0; i < r->nalloc_lat; i++) {
			/* The pass it belongs to (a failed replayer's last
			 * pass has no end mark: it is the one it was in). */
			while (k + 1 < opts.passes && i >= r->pass_alat_end[k] &&
			    r->pass_alat_end[k] != 0)
				k++;
			if (r->instance)
				fprintf(f, "%u %u %" PRIu64 " %" PRIu64 " %"
				    PRIu64 "\n", p, k + 1, lat[i], drv[i],
				    crt[i]);
			else
				fprintf(f, "%u %u %" PRIu64 " %" PRIu64 " -\n",
				    p, k + 1, lat[i], drv[i]);
		}
	}
	if (fflush(f) != 0 || ferror(f)) {
		fprintf(stderr, RP_NAME ": --allocs %s: write error\n",
		    opts.allocs);
		return -1;
	}
	return 0;
}

static void
json_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

/* Prints one key/value: "key value" lines, or JSON members. */
static void
kv_u(const char *k, uint64_t v, bool *first)
{
	if (opts.json)
		printf("%s\n  \"%s\": %" PRIu64, *first ? "{" : ",", k, v);
	else
		printf("%-26s %" PRIu64 "\n", k, v);
	*first = false;
}

static void
kv_d(const char *k, double v, bool *first)
{
	if (opts.json)
		printf("%s\n  \"%s\": %.1f", *first ? "{" : ",", k, v);
	else
		printf("%-26s %.1f\n", k, v);
	*first = false;
}

static void
kv_s(const char *k, const char *v, bool *first)
{
	if (opts.json) {
		printf("%s\n  \"%s\": ", *first ? "{" : ",", k);
		json_str(v);
	} else
		printf("%-26s %s\n", k, v);
	*first = false;
}

static void
print_parse(const struct rp_trace *t)
{
	bool first = true;

	kv_s("trace", t->path, &first);
	kv_s("format", t->csv ? "csv" : "text", &first);
	kv_u("ops", t->nalloc + t->nfree + t->nrealloc, &first);
	kv_u("allocs", t->nalloc, &first);
	kv_u("frees", t->nfree, &first);
	kv_u("reallocs", t->nrealloc, &first);
	kv_u("sleeps", t->nsleep, &first);
	kv_u("skipped", t->nskipped, &first);
	kv_u("alloc_failures_in_trace", t->nfailure, &first);
	kv_u("ids", t->nslots, &first);
	kv_u("peak_requested_bytes", t->peak, &first);
	kv_u("live_at_end_bytes", t->live, &first);
	if (opts.json)
		printf("\n}\n");
}

static void
print_results(const struct rp_trace *t, unsigned char *map,
    const struct rp_layout *l, const struct rp_total *T)
{
	bool first = true;
	unsigned p;

	kv_s("trace", t->path, &first);
	kv_s("format", t->csv ? "csv" : "text", &first);
	kv_u("procs", opts.procs, &first);
	kv_u("stagger_ms", opts.stagger_ms, &first);
	kv_u("min_size", opts.min_size, &first);
	kv_u("failed_procs", T->failed, &first);
	kv_u("ops", T->ops, &first);
	kv_u("allocs", T->allocs, &first);
	kv_u("frees", T->frees, &first);
	kv_u("reallocs", T->reallocs, &first);
	kv_u("sleeps", T->sleeps, &first);
	kv_u("skipped", T->skipped, &first);
	kv_u("peak_requested_bytes", T->peak, &first);
	kv_u("sum_of_peaks_bytes", T->sum_peaks, &first);
	kv_d("alloc_p50_us", T->a50, &first);
	kv_d("alloc_p99_us", T->a99, &first);
	kv_d("alloc_max_us", T->amax, &first);
	kv_d("realloc_p50_us", T->r50, &first);
	kv_d("realloc_p99_us", T->r99, &first);
	kv_s("realloc_via", T->vrealloc ? "vmm_realloc" :
	    "cudaMalloc+cudaMemcpy+cudaFree", &first);
	kv_s("broker", T->broker ? "yes" : "no", &first);
	if (T->broker) {
		kv_u("daemon_round_trips", T->daemon_calls, &first);
		kv_u("syncs", T->syncs, &first);
		kv_u("peak_mapped_bytes", T->peak_mapped, &first);
		kv_u("client_peak_in_use_bytes", T->client_peaks, &first);
	}
	kv_u("passes", opts.passes, &first);
	for (p = 0; p < opts.passes; p++) {
		char k[48];

		snprintf(k, sizeof(k), "pass%u_time_ms", p + 1);
		kv_d(k, T->pass_ms[p], &first);
		snprintf(k, sizeof(k), "pass%u_allocs", p + 1);
		kv_u(k, T->pass_allocs[p], &first);
		snprintf(k, sizeof(k), "pass%u_alloc_p50_us", p + 1);
		kv_d(k, T->pass_a50[p], &first);
		snprintf(k, sizeof(k), "pass%u_alloc_p99_us", p + 1);
		kv_d(k, T->pass_a99[p], &first);
		if (!T->emulator)
			continue;
		snprintf(k, sizeof(k), "pass%u_alloc_driver_p99_us", p + 1);
		kv_d(k, T->pass_d99[p], &first);
		snprintf(k, sizeof(k), "pass%u_process_creates", p + 1);
		kv_u(k, T->pass_creates[p], &first);
		if (!T->instance)
			continue;
		snprintf(k, sizeof(k), "pass%u_allocs_during_create", p + 1);
		kv_u(k, T->pass_during_create[p], &first);
	}
	kv_u("start_unix_ms", (uint64_t)T->start, &first);
	kv_u("end_unix_ms", (uint64_t)T->end, &first);
	kv_u("last_free_unix_ms", (uint64_t)T->last_free, &first);
	if (opts.json) {
		printf(",\n  \"per_process\": [");
		for (p = 0; p < opts.procs; p++) {
			const struct rp_result *r = (void *)proc_base(map, l, p);

			printf("%s\n    {\"status\": %d, \"ops\": %" PRIu64
			    ", \"peak_requested_bytes\": %" PRIu64
			    ", \"daemon_round_trips\": %" PRIu64
			    ", \"peak_mapped_bytes\": %" PRIu64
			    ", \"error\": ", p ? "," : "", r->status, r->ops,
			    r->peak, r->daemon_calls, r->peak_mapped);
			json_str(r->err);
			printf("}");
		}
		printf("\n  ]\n}\n");
	} else if (opts.procs > 1) {
		for (p = 0; p < opts.procs; p++) {
			const struct rp_result *r = (void *)proc_base(map, l, p);

			printf("proc%-22u ops %" PRIu64 " peak_requested %"
			    PRIu64 " round_trips %" PRIu64 " peak_mapped %"
			    PRIu64 "%s\n", p, r->ops, r->peak,
			    r->daemon_calls, r->peak_mapped,
			    r->status ? " FAILED" : "");
		}
	}
}

static void
usage(FILE *f)
{
	fprintf(f,
"usage: " RP_NAME " [options] TRACE\n"
"Replay an allocation trace with cudaMalloc/cudaFree (under\n"
"LD_PRELOAD=libvmm_client.so: through vmmd) and report what it cost.\n"
"TRACE: the plain-text format of tools/replay/FORMAT.md, or RMM's CSV log\n"
"(header " RP_CSV_HEADER ").\n\n"
"  -p, --procs N        N replaying processes at once (1..%d; default 1)\n"
"  -s, --stagger MS     process i starts i*MS ms after process 0\n"
"  -m, --min-size SIZE  replay only allocations of at least SIZE bytes\n"
"  -l, --lenient        skip frees/reallocs of unknown ids instead of failing\n"
"  -j, --json           results as JSON\n"
"  -n, --parse-only     check the trace and print its figures; no CUDA\n"
"  -t, --torch          allocate and free through vmm_torch_malloc and\n"
"                       vmm_torch_free (PyTorch's pluggable allocator entry\n"
"                       points, stream-ordered) instead of cudaMalloc/cudaFree\n"
"  -P, --passes N       replay the trace N times in each process (1..%d); what\n"
"                       a pass leaves live is freed before the next; figures\n"
"                       per pass: pass<K>_time_ms, pass<K>_alloc_p99_us, ...\n"
"                       (on the emulator also pass<K>_alloc_driver_p99_us, the\n"
"                       p99 of the time its latency profile charged each\n"
"                       allocation, and pass<K>_process_creates, the\n"
"                       replayers' own cuMemCreate/cuMemAlloc calls)\n"
"  -b, --between CMD    between passes run sh -c CMD (VMM_REPLAY_PASS: the pass\n"
"                       just done; no LD_PRELOAD); it must exit 0 (one process)\n"
"  -e, --events FILE    write the live requested bytes over time: lines\n"
"                       PROC T_NS LIVE_BYTES (CLOCK_MONOTONIC ns; an allocation\n"
"                       counts from its return, a free from its call)\n"
"  -a, --allocs FILE    write every timed allocation: lines PROC PASS LAT_NS\n"
"                       DRIVER_NS CREATES (CREATES: the creates that ran\n"
"                       anywhere in the emulated machine during it, exact;\n"
"                       \"-\" off the emulator); with --passes, on the\n"
"                       emulator, pass<K>_allocs_during_create counts them\n"
"  -h, --help           this help\n\n"
"Exit status: 0 ok, 1 a replayer failed, 2 usage or trace error.\n",
	    RP_MAX_PROCS, RP_MAX_PASSES);
}

/* A whole-string unsigned integer in [lo, hi]. */
static int
parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	if (*s < '0' || *s > '9')
		return -1;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static void
parse_args(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "procs", required_argument, NULL, 'p' },
		{ "stagger", required_argument, NULL, 's' },
		{ "min-size", required_argument, NULL, 'm' },
		{ "lenient", no_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },
		{ "parse-only", no_argument, NULL, 'n' },
		{ "torch", no_argument, NULL, 't' },
		{ "passes", required_argument, NULL, 'P' },
		{ "between", required_argument, NULL, 'b' },
		{ "events", required_argument, NULL, 'e' },
		{ "allocs", required_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	uint64_t v;
	int c;

	while ((c = getopt_long(argc, argv, "p:s:m:ljntP:b:e:a:h", lo, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_uint(optarg, 1, RP_MAX_PROCS, &v) != 0) {
				fprintf(stderr, RP_NAME ": --procs: 1..%d\n",
				    RP_MAX_PROCS);
				exit(2);
			}
			opts.procs = (unsigned)v;
			break;
		case 's':
			if (parse_uint(optarg, 0, RP_MAX_SLEEP_MS,
			    &opts.stagger_ms) != 0) {
				fprintf(stderr, RP_NAME ": --stagger: 0..%d "
				    "ms\n", RP_MAX_SLEEP_MS);
				exit(2);
			}
			break;
		case 'm':
			if (vmm_parse_size(optarg, &opts.min_size) != 0) {
				fprintf(stderr, RP_NAME ": --min-size: a size "
				    "in bytes, K/M/G/T allowed\n");
				exit(2);
			}
			break;
		case 'l':
			opts.lenient = true;
			break;
		case 'j':
			opts.json = true;
			break;
		case 'n':
			opts.parse_only = true;
			break;
		case 't':
			opts.torch = true;
			break;
		case 'P':
			if (parse_uint(optarg, 1, RP_MAX_PASSES, &v) != 0) {
				fprintf(stderr, RP_NAME ": --passes: 1..%d\n",
				    RP_MAX_PASSES);
				exit(2);
			}
			opts.passes = (unsigned)v;
			break;
		case 'b':
			if (optarg[0] == '\0') {
				fprintf(stderr, RP_NAME ": --between: a "
				    "command\n");
				exit(2);
			}
			opts.between = optarg;
			break;
		case 'e':
			opts.events = optarg;
			break;
		case 'a':
			opts.allocs = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		exit(2);
	}
	if (opts.between != NULL && opts.procs > 1) {
		fprintf(stderr, RP_NAME ": --between needs one process (the "
		    "command runs between one replayer's passes)\n");
		exit(2);
	}
}

int
main(int argc, char **argv)
{
	static struct rp_trace t;
	struct rp_layout l;
	struct rp_total T;
	unsigned char *map;
	pid_t pids[RP_MAX_PROCS];
	unsigned p, failed = 0;
	FILE *evf = NULL, *alf = NULL;
	int st;

	parse_args(argc, argv);
	if (trace_load(&t, argv[optind]) != 0)
		return 2;
	if (opts.parse_only) {
		print_parse(&t);
		return 0;
	}
	/* Opened before anything runs: a bad path costs no replay. */
	if (opts.events != NULL && (evf = fopen(opts.events, "w")) == NULL) {
		fprintf(stderr, RP_NAME ": --events %s: %s\n", opts.events,
		    strerror(errno));
		return 2;
	}
	if (opts.allocs != NULL && (alf = fopen(opts.allocs, "w")) == NULL) {
		fprintf(stderr, RP_NAME ": --allocs %s: %s\n", opts.allocs,
		    strerror(errno));
		if (evf != NULL)
			fclose(evf);
		return 2;
	}
	layout(&t, &l);
	map = mmap(NULL, l.total, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		fprintf(stderr, RP_NAME ": mmap: %s\n", strerror(errno));
		return 2;
	}
	if (opts.procs == 1)
		run_proc(&t, map, &l, 0);
	else {
		/* Fork every replayer before this process touches CUDA. */
		fflush(NULL);
		for (p = 0; p < opts.procs; p++) {
			if ((pids[p] = fork()) < 0) {
				fprintf(stderr, RP_NAME ": fork: %s\n",
				    strerror(errno));
				__atomic_store_n(&((struct rp_shared *)map)->abort,
				    1, __ATOMIC_RELEASE);
				opts.procs = p;
				break;
			}
			if (pids[p] == 0)
				exit(run_proc(&t, map, &l, p) == 0 ? 0 : 1);
		}
		for (p = 0; p < opts.procs; p++) {
			struct rp_result *r = (void *)proc_base(map, &l, p);

			if (waitpid(pids[p], &st, 0) == pids[p] &&
			    (!WIFEXITED(st) || WEXITSTATUS(st) != 0) &&
			    r->status == 0) {
				r->status = 1;
				snprintf(r->err, sizeof(r->err), "replayer "
				    "%u: wait status 0x%x", p, (unsigned)st);
			}
		}
	}
	for (p = 0; p < opts.procs; p++) {
		struct rp_result *r = (void *)proc_base(map, &l, p);

		if (r->status != 0) {
			fprintf(stderr, RP_NAME "[%u]: %s\n", p, r->err);
			failed++;
		}
	}
	aggregate(&t, map, &l, &T);
	print_results(&t, map, &l, &T);
	if (evf != NULL) {
		if (write_events(evf, map, &l) != 0)
			failed++;
		if (fclose(evf) != 0 && failed == 0) {
			fprintf(stderr, RP_NAME ": --events %s: %s\n",
			    opts.events, strerror(errno));
			failed++;
		}
	}
	if (alf != NULL) {
		if (write_allocs(alf, map, &l) != 0)
			failed++;
		if (fclose(alf) != 0 && failed == 0) {
			fprintf(stderr, RP_NAME ": --allocs %s: %s\n",
			    opts.allocs, strerror(errno));
			failed++;
		}
	}
	return failed ? 1 : 0;
}
