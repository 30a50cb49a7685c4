/*
 * Work that is still running: copies, memsets and the emulated kernel
 * (cuemu.h) stay pending until synchronized or their timer fires; a pending
 * write lands in whatever is mapped when it runs; each context has its own
 * work; the legacy, blocking, non-blocking and per-thread streams order work
 * as cuda.h's "stream synchronization behavior" says.  Emulator only (the
 * kernel and the counters are cuemu's); run with CUEMU_DEVICES=2 and
 * CUEMU_ASYNC_DELAY_US=200000 (long enough that "not yet" checks hold on a loaded machine).
 */
#include "cuemu_test.h"

#include <pthread.h>

#include "../cuemu.h"

#define PAT 0xa5a5a5a5u
#define KERNEL_US 150000u	/* a "long" kernel: 150 ms */

static size_t g;

/* The first n bytes at va, read back with cuMemcpyDtoH, all equal byte b? */
static int
holds_byte(CUdeviceptr va, size_t n, unsigned char b)
{
	unsigned char *buf = malloc(n);
	size_t i;
	int ok = 1;

	CHECK(buf != NULL);
	CHECK_OK(cuMemcpyDtoH(buf, va, n));
	for (i = 0; i < n; i++)
		if (buf[i] != b)
			ok = 0;
	free(buf);
	return ok;
}

static unsigned long long
counter(const char *name)
{
	return cuemu_counter(name);
}

/* A kernel stays pending: queries say NOT_READY, a stream sync waits for
 * it (and is charged its duration), then the data is there. */
static void
test_pending(void)
{
	CUmemGenericAllocationHandle h;
	CUdeviceptr va = ct_map_new(0, g, &h);
	CUstream s;
	CUevent e, never;
	long long t0;

	CHECK_OK(cuMemsetD8(va, 0, g));
	CHECK_OK(cuStreamCreate(&s, 0));
	CHECK_OK(cuEventCreate(&e, 0));
	CHECK_OK(cuEventCreate(&never, 0));
	t0 = ct_now_us();
	CHECK_OK(cuemu_launch_write(va, PAT, 4096, KERNEL_US, s));
	CHECK_OK(cuEventRecord(e, s));
	CHECK_CU(cuStreamQuery(s), CUDA_ERROR_NOT_READY);
	CHECK_CU(cuEventQuery(e), CUDA_ERROR_NOT_READY);
	/* An event never recorded counts as complete. */
	CHECK_OK(cuEventQuery(never));
	CHECK_OK(cuStreamSynchronize(s));
	CHECK(ct_now_us() - t0 >= KERNEL_US);
	CHECK_OK(cuStreamQuery(s));
	CHECK_OK(cuEventQuery(e));
	CHECK(holds_byte(va, 4096, 0xa5));
	CHECK(holds_byte(va + 4096, 4096, 0));
	/* cuEventSynchronize waits the same way. */
	t0 = ct_now_us();
	CHECK_OK(cuemu_launch_write(va, 0x11111111u, 64, KERNEL_US, s));
	CHECK_OK(cuEventRecord(e, s));
	CHECK_OK(cuEventSynchronize(e));
	CHECK(ct_now_us() - t0 >= KERNEL_US);
	CHECK(holds_byte(va, 64, 0x11));
	CHECK_OK(cuEventDestroy(e));
	CHECK_OK(cuEventDestroy(never));
	CHECK_OK(cuStreamDestroy(s));
	CHECK_OK(cuCtxSynchronize());
	ct_unmap_free(va, g, h);
}

/* Nobody waits: the work still completes once its timer fired. */
static void
test_timer(void)
{
	CUmemGenericAllocationHandle h;
	CUdeviceptr va = ct_map_new(0, g, &h);
	CUstream s;
	int i;

	CHECK_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuMemsetD8Async(va, 7, g, s));
	CHECK_CU(cuStreamQuery(s), CUDA_ERROR_NOT_READY);
	for (i = 0; i < 400 && cuStreamQuery(s) == CUDA_ERROR_NOT_READY; i++)
		usleep(5000);
	CHECK_OK(cuStreamQuery(s));
	CHECK_OK(cuStreamDestroy(s));
	CHECK(holds_byte(va, g, 7));
	ct_unmap_free(va, g, h);
}

/* Unmapping under pending work is counted; the late write lands in the
 * memory mapped there when it runs (reuse too early corrupts data), or
 * faults if nothing is mapped. */
static void
test_late_write(void)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemAccessDesc rw = ct_rw(0);
	CUmemGenericAllocationHandle h1, h2;
	CUdeviceptr va;
	unsigned long long busy = counter("busy_releases");
	unsigned long long faults = counter("faults");
	CUstream nb;

	CHECK_OK(cuStreamCreate(&nb, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuMemCreate(&h1, g, &p, 0));
	CHECK_OK(cuMemCreate(&h2, g, &p, 0));
	CHECK_OK(cuMemAddressReserve(&va, g, 0, 0, 0));
	CHECK_OK(cuMemMap(va, g, 0, h1, 0));
	CHECK_OK(cuMemSetAccess(va, g, &rw, 1));
	CHECK_OK(cuMemsetD8(va, 0, g));
	CHECK_OK(cuCtxSynchronize());
	CHECK(counter("busy_releases") == busy);
	CHECK_OK(cuemu_launch_write(va, PAT, g, KERNEL_US, nb));
	CHECK_OK(cuMemUnmap(va, g));
	CHECK(counter("busy_releases") == busy + 1);
	/* Handed on: the same address now maps other memory. */
	CHECK_OK(cuMemMap(va, g, 0, h2, 0));
	CHECK_OK(cuMemSetAccess(va, g, &rw, 1));
	CHECK_OK(cuMemsetD8(va, 0x3c, g));
	CHECK_OK(cuStreamSynchronize(NULL));	/* before the kernel ends */
	CHECK_OK(cuCtxSynchronize());
	CHECK(holds_byte(va, g, 0xa5));	/* overwritten by the late kernel */
	CHECK(counter("faults") == faults);
	/* Nothing mapped when it runs: a fault. */
	CHECK_OK(cuemu_launch_write(va, PAT, g, KERNEL_US / 4, nb));
	CHECK_OK(cuMemUnmap(va, g));
	CHECK(counter("busy_releases") == busy + 2);
	CHECK_OK(cuCtxSynchronize());
	CHECK(counter("faults") == faults + 1);
	CHECK_OK(cuStreamDestroy(nb));
	CHECK_OK(cuMemAddressFree(va, g));
	CHECK_OK(cuMemRelease(h1));
	CHECK_OK(cuMemRelease(h2));
}

/* cuMemFree under pending work is counted; cuMemFreeAsync waits for the
 * stream's earlier work. */
static void
test_free(void)
{
	unsigned long long busy = counter("busy_releases");
	unsigned long long faults = counter("faults");
	CUdeviceptr p;
	CUstream s;

	CHECK_OK(cuStreamCreate(&s, 0));
	CHECK_OK(cuMemAllocAsync(&p, 1 << 20, s));
	CHECK_OK(cuemu_launch_write(p, PAT, 1 << 20, KERNEL_US / 4, s));
	CHECK_OK(cuMemFreeAsync(p, s));
	CHECK_OK(cuStreamSynchronize(s));
	CHECK(counter("busy_releases") == busy);
	CHECK(counter("faults") == faults);
	CHECK_OK(cuMemAlloc(&p, 1 << 20));
	CHECK_OK(cuemu_launch_write(p, PAT, 1 << 20, KERNEL_US / 4, s));
	CHECK_OK(cuMemFree(p));
	CHECK(counter("busy_releases") == busy + 1);
	CHECK_OK(cuStreamSynchronize(s));
	CHECK(counter("faults") == faults + 1);
	CHECK_OK(cuStreamDestroy(s));
}

/* Each context has its own work: synchronizing device 1's context leaves
 * device 0's kernel running. */
static void
test_contexts(CUcontext c0, CUcontext c1)
{
	CUmemGenericAllocationHandle h;
	CUdeviceptr va;
	unsigned long long syncs;
	long long t0;

	CHECK_OK(cuCtxSetCurrent(c0));
	va = ct_map_new(0, g, &h);
	CHECK_OK(cuMemsetD8(va, 0, g));
	CHECK_OK(cuCtxSynchronize());
	t0 = ct_now_us();
	CHECK_OK(cuemu_launch_write(va, PAT, 4096, 4 * KERNEL_US, NULL));
	CHECK_OK(cuCtxSetCurrent(c1));
	syncs = counter("ctx_syncs");
	CHECK_OK(cuCtxSynchronize());
	CHECK(counter("ctx_syncs") == syncs + 1);
	CHECK(ct_now_us() - t0 < 4 * KERNEL_US);
	CHECK_OK(cuCtxSetCurrent(c0));
	CHECK_CU(cuStreamQuery(NULL), CUDA_ERROR_NOT_READY);
	CHECK_OK(cuCtxSynchronize());
	CHECK(ct_now_us() - t0 >= 4 * KERNEL_US);
	CHECK(holds_byte(va, 4096, 0xa5));
	ct_unmap_free(va, g, h);
}

/* The legacy stream waits for blocking streams, not for non-blocking
 * ones; cuStreamWaitEvent orders a non-blocking stream after an event. */
static void
test_stream_order(void)
{
	CUmemGenericAllocationHandle h;
	CUdeviceptr va = ct_map_new(0, g, &h);
	CUstream blk, nb, nb2;
	CUevent e;

	CHECK_OK(cuStreamCreate(&blk, 0));
	CHECK_OK(cuStreamCreate(&nb, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuStreamCreate(&nb2, CU_STREAM_NON_BLOCKING));
	CHECK_OK(cuEventCreate(&e, CU_EVENT_DISABLE_TIMING));

	/* Blocking: the legacy memset runs after the kernel. */
	CHECK_OK(cuemu_launch_write(va, PAT, 4096, KERNEL_US, blk));
	CHECK_OK(cuMemsetD8(va, 0x22, 4096));
	CHECK(holds_byte(va, 4096, 0x22));	/* DtoH waits for legacy work */
	CHECK_OK(cuStreamQuery(blk));

	/* Non-blocking: the legacy work does not wait for it. */
	CHECK_OK(cuemu_launch_write(va, PAT, 4096, KERNEL_US, nb));
	CHECK_OK(cuMemsetD8(va, 0x33, 4096));
	CHECK(holds_byte(va, 4096, 0x33));
	CHECK_CU(cuStreamQuery(nb), CUDA_ERROR_NOT_READY);
	CHECK_OK(cuStreamSynchronize(nb));
	CHECK(holds_byte(va, 4096, 0xa5));

	/* An event orders nb2 after nb's kernel. */
	CHECK_OK(cuemu_launch_write(va, 0x44444444u, 4096, KERNEL_US, nb));
	CHECK_OK(cuEventRecord(e, nb));
	CHECK_OK(cuStreamWaitEvent(nb2, e, 0));
	CHECK_OK(cuMemsetD8Async(va, 0x55, 4096, nb2));
	CHECK_OK(cuStreamSynchronize(nb2));
	CHECK_OK(cuEventQuery(e));
	CHECK(holds_byte(va, 4096, 0x55));

	CHECK_OK(cuEventDestroy(e));
	CHECK_OK(cuStreamDestroy(blk));
	CHECK_OK(cuStreamDestroy(nb));
	CHECK_OK(cuStreamDestroy(nb2));
	ct_unmap_free(va, g, h);
}

/* Synchronous calls as cuda.h's "API synchronization behavior" says:
 * cuMemcpyHtoD and cuMemsetD8 may return with their write still pending,
 * cuMemcpyDtoH returns once its copy (after earlier work) is done. */
static void
test_sync_calls(void)
{
	CUmemGenericAllocationHandle h;
	CUdeviceptr va = ct_map_new(0, g, &h);
	unsigned char in[4096], out[4096];

	memset(in, 0x6e, sizeof(in));
	CHECK_OK(cuCtxSynchronize());
	CHECK_OK(cuMemcpyHtoD(va, in, sizeof(in)));
	memset(in, 0, sizeof(in));	/* staged: the copy keeps 0x6e */
	CHECK_CU(cuStreamQuery(NULL), CUDA_ERROR_NOT_READY);
	CHECK_OK(cuMemcpyDtoH(out, va, sizeof(out)));
	CHECK(out[0] == 0x6e && out[sizeof(out) - 1] == 0x6e);
	CHECK_OK(cuMemsetD8(va, 0x71, 64));
	CHECK_CU(cuStreamQuery(NULL), CUDA_ERROR_NOT_READY);
	CHECK(holds_byte(va, 64, 0x71));
	CHECK_OK(cuStreamQuery(NULL));
	ct_unmap_free(va, g, h);
}

struct ptds_arg {
	CUcontext	ctx;
	CUresult	query;
};

static void *
ptds_other(void *p)
{
	struct ptds_arg *a = p;

	CHECK_OK(cuCtxSetCurrent(a->ctx));
	a->query = cuStreamQuery(CU_STREAM_PER_THREAD);
	return NULL;
}

/* The per-thread default stream is the calling thread's own. */
static void
test_per_thread(CUcontext c0)
{
	CUmemGenericAllocationHandle h;
	CUdeviceptr va;
	struct ptds_arg a = { c0, CUDA_ERROR_UNKNOWN };
	pthread_t t;

	CHECK_OK(cuCtxSetCurrent(c0));
	va = ct_map_new(0, g, &h);
	CHECK_OK(cuemu_launch_write(va, PAT, 4096, KERNEL_US,
	    CU_STREAM_PER_THREAD));
	CHECK_CU(cuStreamQuery(CU_STREAM_PER_THREAD), CUDA_ERROR_NOT_READY);
	CHECK(pthread_create(&t, NULL, ptds_other, &a) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK_OK(a.query);
	/* It is a blocking stream: legacy work waits for it. */
	CHECK(holds_byte(va, 4096, 0xa5));
	ct_unmap_free(va, g, h);
}

int
main(void)
{
	CUcontext c0, c1;
	CUdevice d1;

	if (!cuemu_available()) {
		printf("not the emulator: skipped\n");
		return 0;
	}
	c0 = ct_init_ctx(0);
	CHECK_OK(cuDeviceGet(&d1, 1));
	CHECK_OK(cuDevicePrimaryCtxRetain(&c1, d1));
	CHECK_OK(cuCtxSetCurrent(c0));
	g = ct_gran(0);
	test_pending();
	test_timer();
	test_late_write();
	test_free();
	test_contexts(c0, c1);
	test_stream_order();
	test_sync_calls();
	test_per_thread(c0);
	CHECK(counter("launches") > 0);
	CHECK(cuemu_sym("cuemuGetCounter") != NULL);
	{
		unsigned long long v;
		cuemu_pfn_get_counter f =
		    (cuemu_pfn_get_counter)cuemu_sym("cuemuGetCounter");

		CHECK(f("no_such_counter", &v) == -1);
	}
	return 0;
}
