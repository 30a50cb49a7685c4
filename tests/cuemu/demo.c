/*
 * cuemu-demo: two processes share GPU memory the way vmmd lends it.  The
 * parent creates a chunk, writes to it, exports it as a POSIX fd and passes
 * the fd over a Unix socket; the child imports, maps and reads the same bytes.
 * Runs on the real driver or on tests/cuemu alike.
 */
#include <cuda.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEMO_MSG "hello from the other process's GPU memory"

static void
die(const char *what, CUresult r)
{
	const char *name = "?";

	cuGetErrorName(r, &name);
	fprintf(stderr, "cuemu-demo: %s: %s\n", what, name);
	exit(1);
}

#define CU(call)                                                             \
	do {                                                                 \
		CUresult r_ = (call);                                        \
		if (r_ != CUDA_SUCCESS)                                      \
			die(#call, r_);                                      \
	} while (0)

static void
setup(CUcontext *ctx, CUmemAllocationProp *prop, size_t *gran)
{
	CUdevice dev;

	CU(cuInit(0));
	CU(cuDeviceGet(&dev, 0));
	CU(cuDevicePrimaryCtxRetain(ctx, dev));
	CU(cuCtxSetCurrent(*ctx));
	memset(prop, 0, sizeof(*prop));
	prop->type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop->location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop->location.id = dev;
	prop->requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
	CU(cuMemGetAllocationGranularity(gran, prop,
	    CU_MEM_ALLOC_GRANULARITY_MINIMUM));
}

/* Maps handle (size bytes) into a fresh reservation, read-write. */
static CUdeviceptr
map_rw(CUmemGenericAllocationHandle h, size_t size)
{
	CUmemAccessDesc acc = { 0 };
	CUdeviceptr va;

	CU(cuMemAddressReserve(&va, size, 0, 0, 0));
	CU(cuMemMap(va, size, 0, h, 0));
	acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	acc.location.id = 0;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	CU(cuMemSetAccess(va, size, &acc, 1));
	return va;
}

static void
unmap(CUdeviceptr va, size_t size)
{
	CU(cuMemUnmap(va, size));
	CU(cuMemAddressFree(va, size));
}

static void
send_fd(int sock, int fd)
{
	char byte = 'F', buf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { 0 };
	struct cmsghdr *c;

	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = buf;
	msg.msg_controllen = sizeof(buf);
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(sock, &msg, 0) != 1) {
		perror("cuemu-demo: sendmsg");
		exit(1);
	}
}

static int
recv_fd(int sock)
{
	char byte, buf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { 0 };
	struct cmsghdr *c;
	int fd;

	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = buf;
	msg.msg_controllen = sizeof(buf);
	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1 ||
	    (c = CMSG_FIRSTHDR(&msg)) == NULL || c->cmsg_type != SCM_RIGHTS) {
		fprintf(stderr, "cuemu-demo: no fd received\n");
		exit(1);
	}
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

static int
child(int sock)
{
	CUmemGenericAllocationHandle h;
	CUmemAllocationProp prop;
	CUcontext ctx;
	CUdeviceptr va;
	char out[sizeof(DEMO_MSG)];
	size_t gran;
	int fd;

	setup(&ctx, &prop, &gran);
	fd = recv_fd(sock);
	CU(cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)fd,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
	close(fd);
	va = map_rw(h, gran);
	CU(cuMemcpyDtoH(out, va, sizeof(out)));
	printf("child  (pid %d): imported the chunk, read: \"%s\"\n",
	    (int)getpid(), out);
	unmap(va, gran);
	CU(cuMemRelease(h));
	return strcmp(out, DEMO_MSG) == 0 ? 0 : 1;
}

int
main(void)
{
	CUmemGenericAllocationHandle h;
	CUmemAllocationProp prop;
	CUcontext ctx;
	CUdeviceptr va;
	size_t gran, freeb, total;
	int sv[2], fd, status;
	pid_t pid;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		perror("cuemu-demo: socketpair");
		return 1;
	}
	/* Fork before cuInit: a child of an initialised process cannot use CUDA. */
	if ((pid = fork()) == 0) {
		close(sv[0]);
		_exit(child(sv[1]));
	}
	close(sv[1]);
	setup(&ctx, &prop, &gran);
	CU(cuMemCreate(&h, gran, &prop, 0));
	va = map_rw(h, gran);
	CU(cuMemcpyHtoD(va, DEMO_MSG, sizeof(DEMO_MSG)));
	CU(cuMemGetInfo(&freeb, &total));
	printf("parent (pid %d): created a %zu KiB chunk and wrote to it; device "
	    "has %zu of %zu MiB free\n", (int)getpid(), gran >> 10, freeb >> 20,
	    total >> 20);
	CU(cuMemExportToShareableHandle(&fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
	send_fd(sv[0], fd);
	close(fd);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		fprintf(stderr, "cuemu-demo: child failed\n");
		return 1;
	}
	unmap(va, gran);
	CU(cuMemRelease(h));
	CU(cuMemGetInfo(&freeb, &total));
	printf("parent: released the chunk; device has %zu of %zu MiB free\n",
	    freeb >> 20, total >> 20);
	return 0;
}
