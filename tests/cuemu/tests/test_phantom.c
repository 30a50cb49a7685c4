/* CUEMU_PHANTOM=1 (CUEMU_MEM_MB=64): chunks without host memory or fd, for
 * benchmarks.  Counted against the capacity exactly from cuMemCreate to
 * the last handle; cuMemMap refuses them (no test can touch them); export
 * gives a new empty fd naming the chunk; its import a handle as
 * unmappable; a raw exported fd keeps the chunk counted, as a real one
 * keeps the memory; a process that dies holding one frees it.
 * Usage: cuemu_test_phantom [import]: a helper role, fork+exec'ed. */
#include "cuemu_test.h"

#include <dirent.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define FD_TYPE CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR
#define CAP (64 * MiB)

/* Used bytes according to cuMemGetInfo. */
static size_t
used_bytes(void)
{
	size_t fr = 0, tot = 0;

	CHECK_OK(cuMemGetInfo(&fr, &tot));
	CHECK(tot == CAP && fr <= tot);
	return tot - fr;
}

/* Open fds of this process. */
static int
count_fds(void)
{
	struct dirent *de;
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	CHECK(d != NULL);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;	/* opendir's own */
}

/* cuMemMap of h is refused with CUDA_ERROR_NOT_SUPPORTED. */
static void
check_unmappable(CUmemGenericAllocationHandle h, size_t size)
{
	CUdeviceptr va;

	CHECK_OK(cuMemAddressReserve(&va, size, 0, 0, 0));
	CHECK_CU(cuMemMap(va, size, 0, h, 0), CUDA_ERROR_NOT_SUPPORTED);
	CHECK_OK(cuMemAddressFree(va, size));
}

/* Role "import": receive an fd on stdin (a socket), import it, close the
 * fd, check the handle, 'R'; on 'X' release it and answer 'X'; exit on
 * EOF (without releasing, if it was not asked to). */
static int
role_import(void)
{
	CUmemGenericAllocationHandle h;
	CUmemAllocationProp got;
	char c;
	int fd;

	ct_init_ctx(0);
	fd = ct_recv_fd(0);
	CHECK_OK(cuMemImportFromShareableHandle(&h, (void *)(intptr_t)fd,
	    FD_TYPE));
	close(fd);
	CHECK_OK(cuMemGetAllocationPropertiesFromHandle(&got, h));
	CHECK(got.requestedHandleTypes == FD_TYPE && got.location.id == 0);
	check_unmappable(h, 16 * MiB);
	ct_write(1, "R", 1);
	while (read(0, &c, 1) == 1) {
		CHECK(c == 'X');
		CHECK_OK(cuMemRelease(h));
		ct_write(1, "X", 1);
	}
	return 0;
}

struct helper {
	pid_t pid;
	int to, from;
};

static struct helper
spawn_import(const char *self)
{
	struct helper hp;
	int sv[2], out[2];

	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	CHECK(pipe2(out, O_CLOEXEC) == 0);
	hp.pid = fork();
	CHECK(hp.pid >= 0);
	if (hp.pid == 0) {
		if (dup2(sv[1], 0) < 0 || dup2(out[1], 1) < 0)
			_exit(126);
		execl("/proc/self/exe", self, "import", (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	close(out[1]);
	hp.to = sv[0];
	hp.from = out[0];
	return hp;
}

static void
expect_byte(const struct helper *hp, char c)
{
	char got = 0;

	ct_read(hp->from, &got, 1);
	CHECK(got == c);
}

/* Create, properties, exact capacity, no fd per chunk, map refused. */
static void
test_basic(void)
{
	CUmemAllocationProp p = ct_prop(0, 1), got;
	CUmemGenericAllocationHandle h[64], big;
	size_t g = ct_gran(0), n = CAP / g, i;
	int fds0;

	/* The books are opened (an fd) by the first call that needs them. */
	CHECK(used_bytes() == 0);
	fds0 = count_fds();
	/* The whole device, one granule at a time: no fd, no mapping. */
	for (i = 0; i < n && i < 64; i++)
		CHECK_OK(cuMemCreate(&h[i], g, &p, 0));
	CHECK(n <= 64);
	CHECK(count_fds() == fds0);
	CHECK(used_bytes() == CAP);
	CHECK_CU(cuMemCreate(&big, g, &p, 0), CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_OK(cuMemGetAllocationPropertiesFromHandle(&got, h[0]));
	CHECK(got.type == CU_MEM_ALLOCATION_TYPE_PINNED &&
	    got.location.type == CU_MEM_LOCATION_TYPE_DEVICE &&
	    got.location.id == 0 && got.requestedHandleTypes == FD_TYPE);
	/* The last release of each gives exactly its size back. */
	CHECK_OK(cuMemRelease(h[0]));
	CHECK(used_bytes() == CAP - g);
	CHECK_OK(cuMemRelease(h[1]));
	CHECK(used_bytes() == CAP - 2 * g);
	CHECK_OK(cuMemCreate(&big, 2 * g, &p, 0));
	CHECK(used_bytes() == CAP);
	check_unmappable(big, 2 * g);
	/* A released handle is stale. */
	CHECK_OK(cuMemRelease(big));
	CHECK_CU(cuMemRelease(big), CUDA_ERROR_INVALID_VALUE);
	for (i = 2; i < n; i++)
		CHECK_OK(cuMemRelease(h[i]));
	CHECK(used_bytes() == 0);
}

/* Export gives a new empty fd naming the chunk; an import in the same
 * process is a handle on the same chunk, as unmappable; a raw fd keeps
 * the chunk counted after its handles end, until it is closed. */
static void
test_export(void)
{
	CUmemAllocationProp p = ct_prop(0, 1), np = ct_prop(0, 0), got;
	CUmemGenericAllocationHandle h, h2, fill;
	struct stat st;
	int fd, fd2;

	CHECK_OK(cuMemCreate(&h, 16 * MiB, &p, 0));
	CHECK_OK(cuMemExportToShareableHandle(&fd, h, FD_TYPE, 0));
	CHECK_OK(cuMemExportToShareableHandle(&fd2, h, FD_TYPE, 0));
	CHECK(fd >= 0 && fd2 >= 0 && fd != fd2);
	/* No host memory behind it. */
	CHECK(fstat(fd, &st) == 0 && st.st_size == 0);
	CHECK_OK(cuMemImportFromShareableHandle(&h2, (void *)(intptr_t)fd,
	    FD_TYPE));
	CHECK(h2 != h);
	CHECK_OK(cuMemGetAllocationPropertiesFromHandle(&got, h2));
	CHECK(got.location.id == 0 && got.requestedHandleTypes == FD_TYPE);
	check_unmappable(h2, 16 * MiB);
	/* Two handles on one chunk are counted at least once. */
	CHECK(used_bytes() >= 16 * MiB);
	close(fd2);
	CHECK_OK(cuMemRelease(h2));
	CHECK_OK(cuMemRelease(h));
	/* fd still open: the chunk lives (a scan sees the fd). */
	CHECK(used_bytes() == 16 * MiB);
	CHECK_CU(cuMemCreate(&fill, CAP, &np, 0), CUDA_ERROR_OUT_OF_MEMORY);
	/* It can still be imported, and is the same size. */
	CHECK_OK(cuMemImportFromShareableHandle(&h2, (void *)(intptr_t)fd,
	    FD_TYPE));
	CHECK_OK(cuMemRelease(h2));
	close(fd);
	/* Closed: the whole device is there again (a create that would not
	 * fit by the books scans). */
	CHECK_OK(cuMemCreate(&fill, CAP, &np, 0));
	CHECK(used_bytes() == CAP);
	/* Not exportable when not asked for. */
	CHECK_CU(cuMemExportToShareableHandle(&fd, fill, FD_TYPE, 0),
	    CUDA_ERROR_NOT_PERMITTED);
	CHECK_OK(cuMemRelease(fill));
	CHECK(used_bytes() == 0);
	/* An fd that names no chunk of ours is refused. */
	fd = memfd_create("cuemu-phantom:other:0:2097152:1:5", MFD_CLOEXEC);
	CHECK(fd >= 0);
	CHECK_CU(cuMemImportFromShareableHandle(&h2, (void *)(intptr_t)fd,
	    FD_TYPE), CUDA_ERROR_INVALID_VALUE);
	close(fd);
}

/* Another process's import holds the chunk after the creator let go;
 * its release, or its death, gives it back. */
static void
test_other(const char *self)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h;
	struct helper hp;
	int fd, kill_it;

	for (kill_it = 0; kill_it < 2; kill_it++) {
		CHECK_OK(cuMemCreate(&h, 16 * MiB, &p, 0));
		CHECK_OK(cuMemExportToShareableHandle(&fd, h, FD_TYPE, 0));
		hp = spawn_import(self);
		ct_send_fd(hp.to, fd);
		close(fd);
		expect_byte(&hp, 'R');
		CHECK(used_bytes() >= 16 * MiB);
		CHECK_OK(cuMemRelease(h));
		CHECK(used_bytes() == 16 * MiB);
		if (kill_it) {
			CHECK(kill(hp.pid, SIGKILL) == 0);
			(void)ct_wait(hp.pid);
		} else {
			ct_write(hp.to, "X", 1);
			expect_byte(&hp, 'X');
		}
		CHECK(used_bytes() == 0);
		close(hp.to);
		close(hp.from);
		if (!kill_it)
			ct_wait_ok(hp.pid, "import");
	}
}

int
main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "import") == 0)
		return role_import();
	if (!ct_is_emulator())
		return 77;
	ct_init_ctx(0);
	test_basic();
	test_export();
	test_other(argv[0]);
	printf("ok\n");
	return 0;
}
