/*
 * bench_meminfo: what one cuMemGetInfo costs while many chunks are alive,
 * shared between two processes the way vmmd and its clients share them
 * (issue 10 "Costs": the emulator used to scan /proc on every call).
 *
 *   bench_meminfo [--chunks N] [--calls M] [--churn]
 *
 * This process creates N chunks of one granule and exports each; a child
 * imports and maps every one, then holds them.  Then M cuMemGetInfo calls
 * are timed one by one: p50, p99 and max in microseconds.
 * With --churn, before every call one more chunk is created, exported and
 * destroyed: the worst case for the emulator's books, each call follows the
 * end of a shared chunk (the emulator then scans once per such end).
 * Run against the emulator: LD_LIBRARY_PATH=build/tests/cuemu/lib.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cuda.h>

#define DIE(...) do { fprintf(stderr, "bench_meminfo: " __VA_ARGS__); \
	fputc('\n', stderr); exit(1); } while (0)
#define CU(call) do { CUresult r_ = (call); if (r_ != CUDA_SUCCESS) \
	DIE("%s: %d", #call, (int)r_); } while (0)

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void
send_fd(int sock, int fd)
{
	char byte = 'F', cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { 0 };
	struct cmsghdr *c;

	memset(cbuf, 0, sizeof(cbuf));
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = cbuf;
	m.msg_controllen = sizeof(cbuf);
	c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(sock, &m, 0) != 1)
		DIE("sendmsg: %s", strerror(errno));
}

static int
recv_fd(int sock)
{
	char byte, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { 0 };
	struct cmsghdr *c;
	int fd;

	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = cbuf;
	m.msg_controllen = sizeof(cbuf);
	if (recvmsg(sock, &m, 0) != 1 || (c = CMSG_FIRSTHDR(&m)) == NULL ||
	    c->cmsg_type != SCM_RIGHTS)
		DIE("recvmsg");
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

/* The child: import and map n chunks sent on sock, say 'R', hold until
 * EOF. */
static void
holder(int sock, int n, size_t gran)
{
	CUmemAccessDesc rw = { { CU_MEM_LOCATION_TYPE_DEVICE, 0 },
	    CU_MEM_ACCESS_FLAGS_PROT_READWRITE };
	CUmemGenericAllocationHandle h;
	CUdeviceptr va;
	CUcontext ctx;
	char c = 'R';
	int i, fd;

	CU(cuInit(0));
	CU(cuDevicePrimaryCtxRetain(&ctx, 0));
	CU(cuCtxSetCurrent(ctx));
	CU(cuMemAddressReserve(&va, gran * (size_t)n, 0, 0, 0));
	for (i = 0; i < n; i++) {
		fd = recv_fd(sock);
		CU(cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)fd,
		    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
		close(fd);
		CU(cuMemMap(va + gran * (size_t)i, gran, 0, h, 0));
		CU(cuMemSetAccess(va + gran * (size_t)i, gran, &rw, 1));
		CU(cuMemRelease(h));
	}
	if (write(sock, &c, 1) != 1)
		_exit(1);
	while (read(sock, &c, 1) > 0)
		;
	_exit(0);
}

int
main(int argc, char **argv)
{
	CUmemAllocationProp prop = { 0 };
	CUmemGenericAllocationHandle *h;
	int n = 2000, calls = 2000, churn = 0, i, sv[2], st;
	uint64_t *t, t0;
	size_t gran, fr, tot;
	CUcontext ctx;
	pid_t pid;
	char c;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--chunks") == 0 && i + 1 < argc)
			n = atoi(argv[++i]);
		else if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc)
			calls = atoi(argv[++i]);
		else if (strcmp(argv[i], "--churn") == 0)
			churn = 1;
		else {
			fprintf(stderr, "usage: bench_meminfo [--chunks N] "
			    "[--calls M] [--churn]\n");
			return 2;
		}
	}
	if (n < 1 || calls < 1)
		DIE("--chunks and --calls must be positive");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		DIE("socketpair: %s", strerror(errno));
	/* Fork before cuInit: a child of an initialised process cannot. */
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = 0;
	prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
	if ((pid = fork()) < 0)
		DIE("fork: %s", strerror(errno));
	if (pid == 0) {
		close(sv[0]);
		CU(cuInit(0));
		CU(cuMemGetAllocationGranularity(&gran, &prop,
		    CU_MEM_ALLOC_GRANULARITY_MINIMUM));
		holder(sv[1], n, gran);
	}
	close(sv[1]);
	CU(cuInit(0));
	CU(cuDevicePrimaryCtxRetain(&ctx, 0));
	CU(cuCtxSetCurrent(ctx));
	CU(cuMemGetAllocationGranularity(&gran, &prop,
	    CU_MEM_ALLOC_GRANULARITY_MINIMUM));
	if ((h = calloc((size_t)n, sizeof(*h))) == NULL ||
	    (t = calloc((size_t)calls, sizeof(*t))) == NULL)
		DIE("out of memory");
	for (i = 0; i < n; i++) {
		int fd;

		CU(cuMemCreate(&h[i], gran, &prop, 0));
		CU(cuMemExportToShareableHandle(&fd, h[i],
		    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
		send_fd(sv[0], fd);
		close(fd);
	}
	if (read(sv[0], &c, 1) != 1 || c != 'R')
		DIE("the holder did not get ready");
	for (i = 0; i < calls; i++) {
		if (churn) {
			CUmemGenericAllocationHandle x;
			int fd;

			/* A chunk that is exported, so its end is a shared
			 * chunk's, then destroyed. */
			CU(cuMemCreate(&x, gran, &prop, 0));
			CU(cuMemExportToShareableHandle(&fd, x,
			    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
			close(fd);
			CU(cuMemRelease(x));
		}
		t0 = now_ns();
		CU(cuMemGetInfo(&fr, &tot));
		t[i] = now_ns() - t0;
	}
	qsort(t, (size_t)calls, sizeof(*t), cmp_u64);
	printf("chunks %d calls %d%s: cuMemGetInfo p50 %.1f us p99 %.1f us "
	    "max %.1f us\n", n, calls, churn ? " (churn)" : "",
	    (double)t[calls / 2] / 1e3, (double)t[calls * 99 / 100] / 1e3,
	    (double)t[calls - 1] / 1e3);
	for (i = 0; i < n; i++)
		CU(cuMemRelease(h[i]));
	close(sv[0]);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		DIE("the holder failed");
	free(h);
	free(t);
	return 0;
}
