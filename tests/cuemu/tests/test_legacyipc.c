/* Legacy IPC (cuIpcGetMemHandle / cuIpcOpenMemHandle / cuIpcCloseMemHandle)
 * across two processes, from cuda.h's doc comments: a handle of the base of
 * a cuMemAlloc allocation opens in another process and shows the same bytes
 * both ways; VMM memory, inner pointers and stream-ordered memory have no
 * handle; the exporting process cannot open its own; a second open returns
 * the same pointer and needs a second close; a handle of freed memory no
 * longer opens; memory opened stays intact after its exporter exits. */
#include "cuemu_test.h"

#define LAZY CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS
#define SIZE ((size_t)3 * MiB + 100)

static void
dev_fill(CUdeviceptr p, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);

	CHECK(b != NULL);
	ct_fill(b, n, seed);
	CHECK_OK(cuMemcpyHtoD(p, b, n));
	/* The copy may return with its write still pending (cuda.h): another
	 * process sees it once the work is done. */
	CHECK_OK(cuCtxSynchronize());
	free(b);
}

static int
dev_holds(CUdeviceptr p, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);
	int ok;

	CHECK(b != NULL);
	CHECK_OK(cuMemcpyDtoH(b, p, n));
	ok = ct_check(b, n, seed);
	free(b);
	return ok;
}

/* What only an exporter may do with its memory, and what it may not. */
static void
export_checks(CUdeviceptr p, CUipcMemHandle *h)
{
	CUmemGenericAllocationHandle vh;
	CUipcMemHandle other;
	CUdeviceptr va, async, got;
	int capable = 0;

	CHECK_CU(cuIpcGetMemHandle(NULL, p), CUDA_ERROR_INVALID_VALUE);
	/* Only the base pointer names an allocation. */
	CHECK_CU(cuIpcGetMemHandle(&other, p + 256), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuIpcGetMemHandle(h, p));
	/* "may be called multiple times ... without adverse effects" */
	CHECK_OK(cuIpcGetMemHandle(&other, p));
	CHECK_OK(cuPointerGetAttribute(&capable,
	    CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE, p));
	CHECK(capable);
	/* VMM memory does not support the legacy IPC functions. */
	va = ct_map_new(0, ct_gran(0), &vh);
	CHECK_CU(cuIpcGetMemHandle(&other, va), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuPointerGetAttribute(&capable,
	    CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE, va));
	CHECK(!capable);
	ct_unmap_free(va, ct_gran(0), vh);
	/* Stream-ordered memory neither (it lives in a memory pool). */
	CHECK_OK(cuMemAllocAsync(&async, MiB, NULL));
	CHECK_CU(cuIpcGetMemHandle(&other, async), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuMemFreeAsync(async, NULL));
	/* The exporting process cannot open its own handle. */
	CHECK_CU(cuIpcOpenMemHandle(&got, *h, LAZY), CUDA_ERROR_INVALID_CONTEXT);
}

/* The importer's half of round 1: open, check, write the second half. */
static void
import_round(int sock)
{
	CUipcMemHandle h, junk;
	CUdeviceptr p, again;
	char ack;

	ct_read(sock, &h, sizeof(h));
	/* Only the documented flag. */
	CHECK_CU(cuIpcOpenMemHandle(&p, h, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuIpcOpenMemHandle(NULL, h, LAZY), CUDA_ERROR_INVALID_VALUE);
	memset(&junk, 0x5a, sizeof(junk));
	CHECK_CU(cuIpcOpenMemHandle(&p, junk, LAZY), CUDA_ERROR_INVALID_HANDLE);
	CHECK_OK(cuIpcOpenMemHandle(&p, h, LAZY));
	CHECK(dev_holds(p, SIZE, 1));
	/* Opened again by this context: same pointer, one more reference. */
	CHECK_OK(cuIpcOpenMemHandle(&again, h, LAZY));
	CHECK(again == p);
	/* Not cuMemAlloc memory of this process: cuMemFree refuses it. */
	CHECK_CU(cuMemFree(p), CUDA_ERROR_INVALID_VALUE);
	dev_fill(p + SIZE / 2, SIZE - SIZE / 2, 2);
	CHECK_OK(cuIpcCloseMemHandle(p));
	CHECK(dev_holds(p + SIZE / 2, SIZE - SIZE / 2, 2));
	CHECK_OK(cuIpcCloseMemHandle(p));
	CHECK_CU(cuIpcCloseMemHandle(p), CUDA_ERROR_INVALID_VALUE);
	ct_write(sock, "W", 1);
	/* The exporter freed it: the handle names nothing now. */
	ct_read(sock, &ack, 1);
	CHECK(ack == 'F');
	CHECK_CU(cuIpcOpenMemHandle(&p, h, LAZY), CUDA_ERROR_INVALID_HANDLE);
}

/* The child: imports round 1, then exports round 2 and exits while the
 * parent still has it open. */
static int
child(int sock)
{
	CUipcMemHandle h;
	CUdeviceptr p;
	char ack;

	ct_init_ctx(0);
	import_round(sock);
	CHECK_OK(cuMemAlloc(&p, SIZE));
	dev_fill(p, SIZE, 3);
	CHECK_OK(cuIpcGetMemHandle(&h, p));
	ct_write(sock, &h, sizeof(h));
	ct_read(sock, &ack, 1);
	CHECK(ack == 'O');
	return 0;	/* exits without freeing or waiting */
}

int
main(void)
{
	CUipcMemHandle h;
	CUdeviceptr p, q;
	int sv[2], st;
	pid_t pid;
	char ack;

	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		_exit(child(sv[1]));
	}
	close(sv[1]);
	ct_init_ctx(0);
	CHECK_OK(cuMemAlloc(&p, SIZE));
	dev_fill(p, SIZE, 1);
	export_checks(p, &h);
	ct_write(sv[0], &h, sizeof(h));
	ct_read(sv[0], &ack, 1);
	CHECK(ack == 'W');
	CHECK(dev_holds(p, SIZE / 2, 1));
	CHECK(dev_holds(p + SIZE / 2, SIZE - SIZE / 2, 2));
	CHECK_OK(cuMemFree(p));
	ct_write(sv[0], "F", 1);

	/* Round 2: the child's memory, kept after the child is gone. */
	ct_read(sv[0], &h, sizeof(h));
	CHECK_OK(cuIpcOpenMemHandle(&q, h, LAZY));
	ct_write(sv[0], "O", 1);
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK(dev_holds(q, SIZE, 3));
	CHECK_OK(cuIpcCloseMemHandle(q));
	close(sv[0]);
	return 0;
}
