/*
 * Adopt never gives memory a second record.  Against a real vmmd on the
 * emulator, with real fds:
 *
 *   tracked   an fd of a chunk vmmd tracks — held by the adopter, the same
 *             fd twice in one Adopt, kept after a Release while the chunk
 *             sits in the pool, and once the chunk is lent to another
 *             session — is refused (id 0); the pool still has one chunk.
 *   foreign   fds that are no chunk of this GPU (a pipe, /dev/null, a
 *             socket, a memfd of our own) are refused; vmmd goes on.
 *   restart   a chunk from a daemon that was SIGKILLed is adopted once by
 *             the new one (the same fd a second time in the same message,
 *             and later again, is refused); released, it goes to the GPU,
 *             never to another holder: the next grant is new memory, and
 *             the adopter's data is intact after the next holder wrote its
 *             own.
 *   many      more chunks than the key table's first 4,096 buckets (it
 *             grows): every one of them, lent and then pooled, is still
 *             refused.
 */
#include <cuda.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"

#define MiB (1ull << 20)

static char	sockdir[1024], sockpath[1100];

/* Sends one Adopt of n fds (dups sent; the caller keeps its own) of the
 * given sizes; fills ids (0: refused).  Fails the test on any other
 * answer. */
static void
adopt(struct tc *c, const int *fds, const uint64_t *sizes, size_t n,
    uint64_t *ids)
{
	Vmm__Envelope env;
	Vmm__Adopt a = VMM__ADOPT__INIT;
	const Vmm__AdoptReply *r;
	struct vmm_frame_msg *m;
	int dups[VMM_PROTO_MAX_CHUNKS];
	size_t i;

	for (i = 0; i < n; i++)
		CHECK((dups[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0)) >= 0);
	a.request_id = tc_rid(c);
	a.n_sizes = n;
	a.sizes = (uint64_t *)sizes;
	env = vmm_frame_env_adopt(&a);
	CHECK((m = tc_call(c, &env, dups, n)) != NULL);
	CHECK(vmm_frame_msg_env(m)->msg_case == VMM__ENVELOPE__MSG_ADOPT_REPLY);
	r = vmm_frame_msg_env(m)->adopt_reply;
	CHECK(r->n_chunk_ids == n);
	for (i = 0; i < n; i++)
		ids[i] = r->chunk_ids[i];
	vmm_frame_msg_free(m);
}

static void
pattern(unsigned char *b, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 11));
}

static void
put(CUdeviceptr va, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);

	CHECK(b != NULL);
	pattern(b, n, seed);
	CHECK_OK(cuMemcpyHtoD(va, b, n));
	free(b);
}

static bool
holds(CUdeviceptr va, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n), *want = malloc(n);
	bool ok;

	CHECK(b != NULL && want != NULL);
	pattern(want, n, seed);
	CHECK_OK(cuMemcpyDtoH(b, va, n));
	ok = memcmp(b, want, n) == 0;
	free(b);
	free(want);
	return ok;
}

static void
case_tracked(void)
{
	struct tc *adm, *a, *b;
	struct tc_chunk x, y;
	Vmm__PoolStats ps;
	uint64_t ids[2], sz[2];
	int fds[2];
	pid_t d;

	d = tc_start_in("sock", "idle_timeout_ms = 0\n", sockpath,
	    sizeof(sockpath), &adm);
	a = tc_open(sockpath, "a", false);
	b = tc_open(sockpath, "b", false);
	CHECK(tc_acquire(a, 2 * MiB, 0, &x, 1) == 1);
	sz[0] = sz[1] = x.size;
	fds[0] = fds[1] = x.fd;

	/* Held by the adopter itself. */
	adopt(a, fds, sz, 1, ids);
	CHECK(ids[0] == 0);
	/* The same fd twice in one message. */
	adopt(a, fds, sz, 2, ids);
	CHECK(ids[0] == 0 && ids[1] == 0);
	/* Kept after a Release: the chunk is in the pool. */
	CHECK(tc_release(a, &x.id, 1) == 0);
	adopt(a, fds, sz, 1, ids);
	CHECK(ids[0] == 0);
	/* Lent to another session now. */
	CHECK(tc_acquire(b, 2 * MiB, 0, &y, 1) == 1);
	CHECK(y.id == x.id);
	adopt(a, fds, sz, 1, ids);
	CHECK(ids[0] == 0);
	/* One piece of memory, one record, one holder. */
	tc_pool(adm, &ps);
	CHECK(ps.chunks == 1 && ps.physical_bytes == x.size &&
	    ps.lent_bytes == x.size);
	CHECK(tc_counter(adm, "adopted_chunks") == 0);
	CHECK(tc_counter(adm, "adopt_refused") == 5);
	tc_close_chunks(&x, 1);
	tc_close_chunks(&y, 1);
	tc_close(a);
	tc_close(b);
	tc_stop_with(d, adm);
}

static void
case_foreign(void)
{
	struct tc *adm, *a;
	struct tc_chunk x;
	Vmm__PoolStats ps;
	uint64_t ids[4], sz[4] = { 2 * MiB, 2 * MiB, 2 * MiB, 2 * MiB };
	int fds[4], p[2], sv[2];
	pid_t d;

	d = tc_start_in("sock", "idle_timeout_ms = 0\n", sockpath,
	    sizeof(sockpath), &adm);
	a = tc_open(sockpath, "a", false);
	CHECK(pipe(p) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	fds[0] = p[0];
	CHECK((fds[1] = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0);
	fds[2] = sv[0];
	CHECK((fds[3] = memfd_create("not-gpu-memory", MFD_CLOEXEC)) >= 0);
	CHECK(ftruncate(fds[3], 2 * MiB) == 0);
	adopt(a, fds, sz, 4, ids);
	CHECK(ids[0] == 0 && ids[1] == 0 && ids[2] == 0 && ids[3] == 0);
	/* vmmd goes on serving. */
	CHECK(tc_acquire(a, 2 * MiB, 0, &x, 1) == 1);
	tc_pool(adm, &ps);
	CHECK(ps.chunks == 1 && ps.lent_bytes == x.size);
	CHECK(tc_counter(adm, "adopt_refused") == 4);
	tc_close_chunks(&x, 1);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
	close(fds[1]);
	close(fds[3]);
	tc_close(a);
	tc_stop_with(d, adm);
}

static void
case_restart(void)
{
	struct tc *adm, *a, *b;
	struct tc_chunk x, y;
	struct tc_mapping mx, my;
	Vmm__PoolStats ps;
	uint64_t ids[2], sz[2], creates;
	int fds[2], st;
	pid_t d;

	tc_cuda_init();
	d = tc_start_in("sock", "idle_timeout_ms = 0\n", sockpath,
	    sizeof(sockpath), NULL);
	a = tc_open(sockpath, "a", false);
	CHECK(tc_acquire(a, 4 * MiB, 0, &x, 1) == 1);
	tc_map(&x, 1, &mx);
	put(mx.va, mx.size, 11);
	/* The daemon dies; our mapping keeps the memory. */
	kill(d, SIGKILL);
	CHECK(waitpid(d, &st, 0) == d);
	tc_close(a);

	d = tc_start_in("sock", "idle_timeout_ms = 0\n", sockpath,
	    sizeof(sockpath), &adm);
	a = tc_open(sockpath, "a", false);
	sz[0] = sz[1] = x.size;
	fds[0] = fds[1] = x.fd;
	adopt(a, fds, sz, 2, ids);
	CHECK(ids[0] != 0 && ids[1] == 0);	/* once, not twice */
	adopt(a, fds, sz, 1, ids + 1);
	CHECK(ids[1] == 0);
	CHECK(tc_counter(adm, "adopted_chunks") == 1);
	CHECK(tc_counter(adm, "adopt_refused") == 2);

	/* Released, adopted memory goes to the GPU, not to the pool: others
	 * may still map it (we do). */
	CHECK(tc_release(a, ids, 1) == 0);
	tc_pool(adm, &ps);
	CHECK(ps.chunks == 0 && ps.physical_bytes == 0 && ps.idle_bytes == 0);
	creates = tc_counter(adm, "creates");
	b = tc_open(sockpath, "b", false);
	CHECK(tc_acquire(b, 4 * MiB, 0, &y, 1) == 1);
	CHECK(tc_counter(adm, "creates") == creates + 1);
	tc_map(&y, 1, &my);
	put(my.va, my.size, 22);
	CHECK(holds(mx.va, mx.size, 11));
	CHECK(holds(my.va, my.size, 22));
	tc_unmap(&mx);
	tc_unmap(&my);
	tc_close_chunks(&x, 1);
	tc_close_chunks(&y, 1);
	tc_close(a);
	tc_close(b);
	tc_stop_with(d, adm);
}

/* More keyed chunks than the key hash starts with: its growth keeps
 * every key. */
static void
case_many(void)
{
	enum { N = 5000 };
	struct tc *adm, *a;
	struct tc_chunk *x;
	uint64_t *ids, *sz, got[VMM_PROTO_MAX_CHUNKS];
	int *fds;
	size_t i, j, k, n;
	pid_t d;

	CHECK((x = calloc(N, sizeof(*x))) != NULL);
	CHECK((ids = calloc(N, sizeof(*ids))) != NULL);
	CHECK((sz = calloc(N, sizeof(*sz))) != NULL);
	CHECK((fds = calloc(N, sizeof(*fds))) != NULL);
	d = tc_start_in("sock", "idle_timeout_ms = 0\n", sockpath,
	    sizeof(sockpath), &adm);
	a = tc_open(sockpath, "a", false);
	for (i = 0; i < N; i++) {
		CHECK(tc_acquire(a, 2 * MiB, 0, &x[i], 1) == 1);
		ids[i] = x[i].id;
		sz[i] = x[i].size;
		fds[i] = x[i].fd;
	}
	/* Lent (k = 0), then in the pool (k = 1): every one refused. */
	for (k = 0; k < 2; k++) {
		for (i = 0; i < N; i += n) {
			n = N - i < VMM_PROTO_MAX_CHUNKS ? N - i :
			    VMM_PROTO_MAX_CHUNKS;
			adopt(a, fds + i, sz + i, n, got);
			for (j = 0; j < n; j++)
				CHECK(got[j] == 0);
		}
		for (i = 0; k == 0 && i < N; i += n) {
			n = N - i < VMM_PROTO_MAX_CHUNKS ? N - i :
			    VMM_PROTO_MAX_CHUNKS;
			CHECK(tc_release(a, ids + i, n) == 0);
		}
	}
	CHECK(tc_counter(adm, "adopted_chunks") == 0);
	CHECK(tc_counter(adm, "adopt_refused") == 2 * N);
	tc_close_chunks(x, N);
	tc_close(a);
	tc_stop_with(d, adm);
	free(x);
	free(ids);
	free(sz);
	free(fds);
}

int
main(int argc, char **argv)
{
	const char *tmp = getenv("VMM_TEST_TMPDIR");

	CHECK(argc == 2 && tmp != NULL);
	snprintf(sockdir, sizeof(sockdir), "%s/sock", tmp);
	if (strcmp(argv[1], "tracked") == 0)
		case_tracked();
	else if (strcmp(argv[1], "foreign") == 0)
		case_foreign();
	else if (strcmp(argv[1], "restart") == 0)
		case_restart();
	else if (strcmp(argv[1], "many") == 0)
		case_many();
	else {
		fprintf(stderr, "unknown case %s\n", argv[1]);
		return 2;
	}
	return 0;
}
