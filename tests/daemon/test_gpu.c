/*
 * vmmd and the GPU (issue 10 B.7):
 *   exclusive  CUEMU_COMPUTE_MODE=exclusive_process: vmmd holds no CUDA
 *              context, so a client creates its own while vmmd runs — and
 *              vmmd starts and serves while a client holds the device.
 *   rdma       CUEMU_RDMA=1: pooled chunks are created gpuDirectRDMACapable
 *              (an importer sees the flag), so RDMA and dma-buf work on them.
 *   mig        CUEMU_MIG=1: "vmmd -d MIG-<uuid>" serves that instance, and
 *              clients find it by the UUID cuDeviceGetUuid gives them.
 *   worker     CUEMU_LATENCY=a100: while one client's 4 GiB create runs
 *              (about 400 ms of driver time), another client's pooled grant
 *              is answered — before the big one (in order of events, not a
 *              time limit: on one thread the big grant would come first);
 *              the big grant then arrives whole; a client that hangs up
 *              during its create leaves the new chunk idle in the pool
 *              (lent to no one), and the next such request gets it without
 *              a create.
 */
#include <cuda.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/check.h"
#include "session.h"
#include "testclient.h"

#define T_MS 5000

/* Acquires one unit from c, checks the fd imports, returns the chunk's
 * allocation properties (as an importer sees them) and releases it. */
static CUmemAllocationProp
grant_props(struct tc *c)
{
	CUmemAllocationProp prop;
	CUmemGenericAllocationHandle h;
	struct tc_chunk ch;

	memset(&prop, 0, sizeof(prop));
	CHECK(tc_acquire(c, c->granularity, 0, &ch, 1) == 1);
	CHECK_OK(cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)ch.fd,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
	CHECK_OK(cuMemGetAllocationPropertiesFromHandle(&prop, h));
	CHECK_OK(cuMemRelease(h));
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(c, &ch.id, 1) == 0);
	return prop;
}

static void
test_exclusive(void)
{
	Vmm__PoolStats pool;
	CUcontext ctx;
	struct tc *c;
	char sock[1100];
	int mode = -1;
	pid_t d;

	CHECK_OK(cuInit(0));
	CHECK_OK(cuDeviceGetAttribute(&mode, CU_DEVICE_ATTRIBUTE_COMPUTE_MODE, 0));
	CHECK(mode == CU_COMPUTEMODE_EXCLUSIVE_PROCESS);
	/* A client holds the device: vmmd still starts and lends memory. */
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	d = tc_start_in("excl", "", sock, sizeof(sock), NULL);
	c = tc_open(sock, "app", false);
	(void)grant_props(c);
	tc_pool(c, &pool);
	CHECK_OK(cuDevicePrimaryCtxRelease(0));
	/* The daemon serving (grants, stats, idle ticks): still no context in
	 * it, so the client gets one again. */
	(void)grant_props(c);
	tc_pool(c, &pool);
	tc_sleep_ms(1500);
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	(void)grant_props(c);
	CHECK_OK(cuDevicePrimaryCtxRelease(0));
	tc_close(c);
	tc_stop_daemon_ok(d);
}

static void
test_rdma(void)
{
	CUmemAllocationProp prop;
	struct tc *c;
	char sock[1100];
	int attr = -1;
	pid_t d;

	CHECK_OK(cuInit(0));
	CHECK_OK(cuDeviceGetAttribute(&attr,
	    CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED, 0));
	d = tc_start_in("rdma", "", sock, sizeof(sock), NULL);
	c = tc_open(sock, "app", false);
	prop = grant_props(c);
	/* Set exactly when the device supports it. */
	CHECK(prop.allocFlags.gpuDirectRDMACapable == (attr ? 1 : 0));
	tc_close(c);
	tc_stop_daemon_ok(d);
}

static void
test_mig(void)
{
	const char *tmp = getenv("VMM_TEST_TMPDIR");
	const char *args[3];
	struct vmm_sess *s;
	struct tc *c;
	char dir[1024], sock[1100], mig[64];
	const unsigned char *b;
	CUuuid u;
	pid_t d;

	CHECK(tmp != NULL);
	CHECK_OK(cuInit(0));
	CHECK_OK(cuDeviceGetUuid(&u, 0));
	b = (const unsigned char *)u.bytes;
	snprintf(mig, sizeof(mig), "MIG-%02x%02x%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4],
	    b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
	    b[15]);
	CHECK((size_t)snprintf(dir, sizeof(dir), "%s/mig", tmp) < sizeof(dir));
	args[0] = "--device";
	args[1] = mig;
	args[2] = NULL;
	d = tc_start_daemon(dir, "", args);
	tc_socket_path(dir, sock, sizeof(sock));
	c = tc_open(sock, "app", false);
	(void)grant_props(c);
	tc_close(c);
	/* A client finds it by the instance's UUID. */
	CHECK(vmm_sess_connect_uuid(&s, dir, (const uint8_t *)u.bytes,
	    T_MS) == 0);
	vmm_sess_close(s);
	tc_stop_daemon_ok(d);
}

/* Sends an Acquire of bytes without waiting for the answer. */
static void
acquire_nowait(struct tc *c, uint64_t bytes)
{
	Vmm__Acquire a = VMM__ACQUIRE__INIT;
	Vmm__Envelope env = vmm_frame_env_acquire(&a);

	a.bytes = bytes;
	CHECK(vmm_sess_send(c->s, &env, NULL, 0, T_MS) == 0);
}

/* The next frame of c, which must be a Grant of want bytes (fds closed);
 * returns the number of chunks. */
static size_t
expect_grant(struct tc *c, uint64_t want, int timeout_ms)
{
	struct vmm_frame_msg *m = NULL;
	const Vmm__Envelope *e;
	uint64_t total = 0;
	size_t i, n;

	CHECK(tc_recv(c, &m, timeout_ms) == 1);
	e = vmm_frame_msg_env(m);
	CHECK(e->msg_case == VMM__ENVELOPE__MSG_GRANT);
	n = e->grant->n_chunks;
	for (i = 0; i < n; i++) {
		total += e->grant->chunks[i]->size;
		close(vmm_frame_msg_take_fd(m, i));
	}
	CHECK(total >= want);
	vmm_frame_msg_free(m);
	return n;
}

#define BIG ((uint64_t)4 << 30)

static void
test_worker(void)
{
	struct tc *a, *b, *adm;
	struct vmm_frame_msg *m = NULL;
	struct tc_chunk ch;
	char sock[1100];
	uint64_t creates;
	pid_t d;

	CHECK_OK(cuInit(0));
	d = tc_start_in("worker", "idle_timeout_ms = 600000\n", sock,
	    sizeof(sock), &adm);
	a = tc_open(sock, "big", false);
	b = tc_open(sock, "small", false);
	/* One unit pooled for b. */
	CHECK(tc_acquire(b, b->granularity, 0, &ch, 1) == 1);
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(b, &ch.id, 1) == 0);

	/* a's create is under way; b's pooled grant comes back first. */
	acquire_nowait(a, BIG);
	tc_sleep_ms(30);
	CHECK(tc_acquire(b, b->granularity, 0, &ch, 1) == 1);
	CHECK(tc_recv(a, &m, 0) == -ETIMEDOUT);
	tc_close_chunks(&ch, 1);
	CHECK(tc_release(b, &ch.id, 1) == 0);
	(void)expect_grant(a, BIG, 30000);

	/* A client that leaves during its create: the chunk is made, lent to
	 * no one, idle in the pool; the next 4 GiB request takes it. */
	tc_close(a);
	a = tc_open(sock, "leaver", false);
	acquire_nowait(a, BIG);
	tc_sleep_ms(30);
	tc_close(a);
	for (creates = 0; creates < 1500; creates++) {
		Vmm__PoolStats pool;

		tc_pool(adm, &pool);
		if (pool.idle_bytes >= BIG)
			break;
		tc_sleep_ms(20);
	}
	CHECK(creates < 1500);
	creates = tc_counter(adm, "creates");
	a = tc_open(sock, "taker", false);
	acquire_nowait(a, BIG);
	(void)expect_grant(a, BIG, 30000);
	CHECK(tc_counter(adm, "creates") == creates);
	tc_close(a);
	tc_close(b);
	tc_stop_with(d, adm);
}

int
main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	if (strcmp(argv[1], "exclusive") == 0)
		test_exclusive();
	else if (strcmp(argv[1], "rdma") == 0)
		test_rdma();
	else if (strcmp(argv[1], "mig") == 0)
		test_mig();
	else if (strcmp(argv[1], "worker") == 0)
		test_worker();
	else
		return 2;
	return 0;
}
