/* Cross-process sharing: an exported fd sent over a Unix socket with
 * SCM_RIGHTS imports, maps and shows the same bytes in the other process,
 * in both directions; once with a child forked before cuInit, once with a
 * child that fork+exec'ed from an initialised parent.
 * Usage: cuemu_test_ipc [peer <socket-fd>] */
#include "cuemu_test.h"

#define FD_TYPE CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR

/* Import an fd received from the peer and map it read-write. */
static CUdeviceptr
import_map(int fd, size_t size, CUmemGenericAllocationHandle *hp)
{
	CUmemAccessDesc rw = ct_rw(0);
	CUdeviceptr va;

	CHECK_OK(cuMemImportFromShareableHandle(hp, (void *)(uintptr_t)fd,
	    FD_TYPE));
	CHECK(ct_fd_open(fd));
	CHECK_OK(cuMemAddressReserve(&va, size, 0, 0, 0));
	CHECK_OK(cuMemMap(va, size, 0, *hp, 0));
	CHECK_OK(cuMemSetAccess(va, size, &rw, 1));
	return va;
}

/* Whether [va, va+n) holds ct_fill(seed) (offset-relative pattern). */
static int
device_holds(CUdeviceptr va, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);
	int ok;

	CHECK(b != NULL);
	CHECK_OK(cuMemcpyDtoH(b, va, n));
	ok = ct_check(b, n, seed);
	free(b);
	return ok;
}

/* Write ct_fill(seed) to [va, va+n). */
static void
device_fill(CUdeviceptr va, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);

	CHECK(b != NULL);
	ct_fill(b, n, seed);
	CHECK_OK(cuMemcpyHtoD(va, b, n));
	/* The copy may still be in flight when cuMemcpyHtoD returns (cuda.h,
	 * "API synchronization behavior"): another process sees it once the
	 * context is synchronized. */
	CHECK_OK(cuCtxSynchronize());
	free(b);
}

/* The exporting side of one exchange: create, fill, send; then see the
 * peer's write. */
static void
export_side(int sock, size_t g, unsigned seed)
{
	CUmemGenericAllocationHandle h;
	CUdeviceptr va;
	char ack;
	int fd = -1;

	va = ct_map_new(0, 2 * g, &h);
	device_fill(va, 2 * g, seed);
	CHECK_OK(cuMemExportToShareableHandle(&fd, h, FD_TYPE, 0));
	ct_send_fd(sock, fd);
	close(fd);
	/* The peer rewrites the second half. */
	ct_read(sock, &ack, 1);
	CHECK(ack == 'W');
	CHECK(device_holds(va, g, seed));
	CHECK(device_holds(va + g, g, seed + 1));
	ct_unmap_free(va, 2 * g, h);
	ct_write(sock, "D", 1);
}

/* The importing side: receive, check, write the second half. */
static void
import_side(int sock, size_t g, unsigned seed)
{
	CUmemGenericAllocationHandle h;
	CUdeviceptr va;
	char ack;
	int fd;

	fd = ct_recv_fd(sock);
	va = import_map(fd, 2 * g, &h);
	close(fd);
	CHECK(device_holds(va, 2 * g, seed));
	device_fill(va + g, g, seed + 1);
	ct_write(sock, "W", 1);
	ct_read(sock, &ack, 1);
	CHECK(ack == 'D');
	/* The exporter released everything; our mapping still holds it. */
	CHECK(device_holds(va + g, g, seed + 1));
	ct_unmap_free(va, 2 * g, h);
}

/* The peer process: import first, then export. */
static int
peer(int sock)
{
	size_t g;

	ct_init_ctx(0);
	g = ct_gran(0);
	import_side(sock, g, 10);
	export_side(sock, g, 20);
	return 0;
}

/* The parent's half of the conversation with one peer. */
static void
host(int sock, size_t g)
{
	export_side(sock, g, 10);
	import_side(sock, g, 20);
}

int
main(int argc, char **argv)
{
	int sv[2];
	pid_t pid;
	size_t g;
	char fdarg[16];

	if (argc == 3 && strcmp(argv[1], "peer") == 0)
		return peer(atoi(argv[2]));

	/* Peer forked before cuInit. */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		_exit(peer(sv[1]));
	}
	close(sv[1]);
	ct_init_ctx(0);
	g = ct_gran(0);
	host(sv[0], g);
	ct_wait_ok(pid, "forked peer");
	close(sv[0]);

	/* Peer exec'ed from this initialised process. */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK(fcntl(sv[0], F_SETFD, FD_CLOEXEC) == 0);
	snprintf(fdarg, sizeof(fdarg), "%d", sv[1]);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		execl("/proc/self/exe", argv[0], "peer", fdarg, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	host(sv[0], g);
	ct_wait_ok(pid, "exec'ed peer");
	close(sv[0]);
	return 0;
}
