/* Device capacity (CUEMU_MEM_MB=64) is shared by every process of the
 * instance and counted from cuMemCreate until the last handle, mapping
 * and open exported fd is gone, process exit and SIGKILL included.
 * Usage: cuemu_test_capacity [hold|fdhold|grab|export|import|total]: helper
 * roles, fork+exec'ed, talking over stdin/stdout. */
#include "cuemu_test.h"

#define FD_TYPE CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR
#define CAP (64 * MiB)

struct helper {
	pid_t pid;
	int to;		/* its stdin */
	int from;	/* its stdout */
};

/* Role "hold": take 48 MiB in three ways (a mapped VMM allocation whose
 * handle is released, an exported fd left open, a classic allocation),
 * say 'R', then wait for EOF on stdin and exit without cleaning up. */
static int
role_hold(void)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h1, h2;
	CUdeviceptr va, dp;
	char c;
	int fd;

	ct_init_ctx(0);
	va = ct_map_new(0, 16 * MiB, &h1);
	CHECK_OK(cuMemRelease(h1));
	CHECK_OK(cuMemCreate(&h2, 16 * MiB, &p, 0));
	CHECK_OK(cuMemExportToShareableHandle(&fd, h2, FD_TYPE, 0));
	CHECK_OK(cuMemRelease(h2));
	CHECK_OK(cuMemAlloc(&dp, 16 * MiB));
	(void)va;
	ct_write(1, "R", 1);
	while (read(0, &c, 1) > 0)
		;
	return 0;
}

/* Role "fdhold": receive an fd on stdin (a socket), hold it without
 * importing it, 'R'; on 'C' close it and answer 'C'; exit on EOF. */
static int
role_fdhold(void)
{
	char c;
	int fd;

	CHECK_OK(cuInit(0));
	fd = ct_recv_fd(0);
	ct_write(1, "R", 1);
	ct_read(0, &c, 1);
	CHECK(c == 'C');
	close(fd);
	ct_write(1, "C", 1);
	while (read(0, &c, 1) > 0)
		;
	return 0;
}

/* Role "grab": after cuInit say 'R', wait for 'G', then take 2 MiB
 * handles until OUT_OF_MEMORY, write the count (int), wait for EOF. */
static int
role_grab(void)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h;
	CUresult r;
	char c;
	int n = 0;

	CHECK_OK(cuInit(0));
	ct_write(1, "R", 1);
	ct_read(0, &c, 1);
	CHECK(c == 'G');
	while ((r = cuMemCreate(&h, 2 * MiB, &p, 0)) == CUDA_SUCCESS)
		n++;
	CHECK_CU(r, CUDA_ERROR_OUT_OF_MEMORY);
	ct_write(1, &n, sizeof(n));
	while (read(0, &c, 1) > 0)
		;
	return 0;
}

/* Role "export": create 32 MiB holding ct_fill(31), send an exported fd
 * on stdin (a socket), 'R', wait for EOF (or SIGKILL). */
static int
role_export(void)
{
	CUmemGenericAllocationHandle h;
	CUdeviceptr va;
	unsigned char *b = malloc(32 * MiB);
	char c;
	int fd;

	CHECK(b != NULL);
	ct_init_ctx(0);
	va = ct_map_new(0, 32 * MiB, &h);
	ct_fill(b, 32 * MiB, 31);
	CHECK_OK(cuMemcpyHtoD(va, b, 32 * MiB));
	/* May still be in flight (cuda.h): the importer reads it next. */
	CHECK_OK(cuCtxSynchronize());
	CHECK_OK(cuMemExportToShareableHandle(&fd, h, FD_TYPE, 0));
	ct_send_fd(0, fd);
	ct_write(1, "R", 1);
	while (read(0, &c, 1) > 0)
		;
	return 0;
}

/* Role "import": receive an fd on stdin, import and map it, close the fd,
 * release the handle, 'R', wait for EOF (or SIGKILL). */
static int
role_import(void)
{
	CUmemGenericAllocationHandle h;
	CUmemAccessDesc rw = ct_rw(0);
	CUdeviceptr va;
	char c;
	int fd;

	ct_init_ctx(0);
	fd = ct_recv_fd(0);
	CHECK_OK(cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)fd,
	    FD_TYPE));
	close(fd);
	CHECK_OK(cuMemAddressReserve(&va, 48 * MiB, 0, 0, 0));
	CHECK_OK(cuMemMap(va, 48 * MiB, 0, h, 0));
	CHECK_OK(cuMemSetAccess(va, 48 * MiB, &rw, 1));
	CHECK_OK(cuMemRelease(h));
	ct_write(1, "R", 1);
	while (read(0, &c, 1) > 0)
		;
	return 0;
}

/* Role "total": write cuDeviceTotalMem and cuMemGetInfo's total. */
static int
role_total(void)
{
	size_t v[2] = { 0, 0 }, fr;

	ct_init_ctx(0);
	CHECK_OK(cuDeviceTotalMem(&v[0], 0));
	CHECK_OK(cuMemGetInfo(&fr, &v[1]));
	ct_write(1, v, sizeof(v));
	return 0;
}

/* fork+exec this program in role, its stdin a socket (for fds) and its
 * stdout a pipe; var=val, if var is not NULL, set in its environment. */
static struct helper
spawn_env(const char *self, const char *role, const char *var,
    const char *val)
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
		if (var != NULL)
			setenv(var, val, 1);
		execl("/proc/self/exe", self, role, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	close(out[1]);
	hp.to = sv[0];
	hp.from = out[0];
	return hp;
}

/* spawn_env with this process's environment. */
static struct helper
spawn(const char *self, const char *role)
{
	return spawn_env(self, role, NULL, NULL);
}

/* Wait for the one-byte answer c from a helper. */
static void
expect_byte(struct helper *hp, char c)
{
	char got = 0;

	ct_read(hp->from, &got, 1);
	CHECK(got == c);
}

/* Free bytes according to cuMemGetInfo. */
static size_t
free_bytes(void)
{
	size_t fr = 0, tot = 0;

	CHECK_OK(cuMemGetInfo(&fr, &tot));
	CHECK(tot == CAP);
	return fr;
}

/* cuMemCreate of size must fail with OUT_OF_MEMORY. */
static void
expect_oom(size_t size)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h;

	CHECK_CU(cuMemCreate(&h, size, &p, 0), CUDA_ERROR_OUT_OF_MEMORY);
}

/* cuMemCreate of size must succeed (released again at once). */
static void
expect_fits(size_t size)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h;

	CHECK_OK(cuMemCreate(&h, size, &p, 0));
	CHECK_OK(cuMemRelease(h));
}

/* Single process: exact capacity fits, one granule more does not. */
static void
test_alone(void)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h;
	CUdeviceptr dp;
	size_t bytes = 0;

	CHECK_OK(cuDeviceTotalMem(&bytes, 0));
	CHECK(bytes == CAP);
	CHECK(free_bytes() == CAP);
	expect_oom(CAP + 2 * MiB);
	CHECK_OK(cuMemCreate(&h, CAP, &p, 0));
	CHECK(free_bytes() == 0);
	expect_oom(2 * MiB);
	CHECK_CU(cuMemAlloc(&dp, 1 * MiB), CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_OK(cuMemRelease(h));
	CHECK(free_bytes() == CAP);

	/* Classic allocations count too. */
	CHECK_OK(cuMemAlloc(&dp, 32 * MiB));
	CHECK(free_bytes() <= CAP - 32 * MiB);
	expect_oom(40 * MiB);
	CHECK_OK(cuMemFree(dp));
	CHECK(free_bytes() == CAP);
}

/* Another process's usage is visible and enforced; it ends when that
 * process exits or is killed. */
static void
test_other_process(const char *self, int kill_it)
{
	struct helper hp = spawn(self, "hold");
	CUdeviceptr dp;
	int st;

	expect_byte(&hp, 'R');
	CHECK(free_bytes() <= CAP - 48 * MiB);
	expect_oom(24 * MiB);
	CHECK_CU(cuMemAlloc(&dp, 24 * MiB), CUDA_ERROR_OUT_OF_MEMORY);
	if (kill_it) {
		CHECK(kill(hp.pid, SIGKILL) == 0);
		st = ct_wait(hp.pid);
		CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	} else {
		close(hp.to);
		hp.to = -1;
		ct_wait_ok(hp.pid, "hold");
	}
	expect_fits(48 * MiB);
	CHECK(free_bytes() == CAP);
	if (hp.to >= 0)
		close(hp.to);
	close(hp.from);
}

/* An open exported fd keeps the allocation counted after cuMemRelease,
 * in this process and in another one that received it. */
static void
test_fd_keeps(const char *self)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h;
	struct helper hp;
	int fd;

	CHECK_OK(cuMemCreate(&h, 48 * MiB, &p, 0));
	CHECK_OK(cuMemExportToShareableHandle(&fd, h, FD_TYPE, 0));
	CHECK_OK(cuMemRelease(h));
	expect_oom(24 * MiB);
	CHECK(free_bytes() == CAP - 48 * MiB);

	hp = spawn(self, "fdhold");
	ct_send_fd(hp.to, fd);
	expect_byte(&hp, 'R');
	close(fd);
	expect_oom(24 * MiB);
	ct_write(hp.to, "C", 1);
	expect_byte(&hp, 'C');
	expect_fits(24 * MiB);
	CHECK(free_bytes() == CAP);
	close(hp.to);
	ct_wait_ok(hp.pid, "fdhold");
	close(hp.from);
}

/* A mapping keeps the allocation counted after cuMemRelease until
 * cuMemUnmap. */
static void
test_mapping_keeps(void)
{
	CUmemGenericAllocationHandle h;
	CUdeviceptr va;

	va = ct_map_new(0, 48 * MiB, &h);
	CHECK_OK(cuMemRelease(h));
	expect_oom(24 * MiB);
	CHECK(free_bytes() == CAP - 48 * MiB);
	CHECK_OK(cuMemUnmap(va, 48 * MiB));
	expect_fits(24 * MiB);
	CHECK(free_bytes() == CAP);
	CHECK_OK(cuMemAddressFree(va, 48 * MiB));
}

/* Processes racing for the last granules never get more than the
 * capacity in total, nor less. */
static void
test_race(const char *self)
{
	enum { NPROC = 4 };
	struct helper hp[NPROC];
	int i, n, total = 0;

	for (i = 0; i < NPROC; i++)
		hp[i] = spawn(self, "grab");
	for (i = 0; i < NPROC; i++)
		expect_byte(&hp[i], 'R');
	for (i = 0; i < NPROC; i++)
		ct_write(hp[i].to, "G", 1);
	for (i = 0; i < NPROC; i++) {
		ct_read(hp[i].from, &n, sizeof(n));
		total += n;
	}
	if (total != (int)(CAP / (2 * MiB))) {
		fprintf(stderr, "%d racing processes got %d x 2 MiB of a 64 MiB "
		    "device\n", NPROC, total);
		exit(1);
	}
	CHECK(free_bytes() == 0);
	for (i = 0; i < NPROC; i++) {
		close(hp[i].to);
		ct_wait_ok(hp[i].pid, "grab");
		close(hp[i].from);
	}
	CHECK(free_bytes() == CAP);
}

/* Children forked from this process (which cannot use the driver) do not
 * take this process's usage with them when they exit or are killed. */
static void
test_forked_children(void)
{
	CUmemGenericAllocationHandle h;
	CUdeviceptr va;
	unsigned char in[4096], out[4096];
	pid_t pid;
	int st;

	va = ct_map_new(0, 48 * MiB, &h);
	ct_fill(in, sizeof(in), 21);
	CHECK_OK(cuMemcpyHtoD(va + 40 * MiB, in, sizeof(in)));
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		exit(0);	/* runs atexit handlers and destructors */
	ct_wait_ok(pid, "exiting child");
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		raise(SIGKILL);
		_exit(1);
	}
	st = ct_wait(pid);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

	CHECK(free_bytes() == CAP - 48 * MiB);
	expect_oom(24 * MiB);
	CHECK_OK(cuMemcpyDtoH(out, va + 40 * MiB, sizeof(out)));
	CHECK(ct_check(out, sizeof(out), 21));
	ct_unmap_free(va, 48 * MiB, h);
	CHECK(free_bytes() == CAP);
}

/* Each import is a reference of its own; address space is not memory. */
static void
test_references(void)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h, i1, i2;
	CUdeviceptr va;
	int fd;

	CHECK_OK(cuMemCreate(&h, 48 * MiB, &p, 0));
	CHECK_OK(cuMemExportToShareableHandle(&fd, h, FD_TYPE, 0));
	CHECK_OK(cuMemImportFromShareableHandle(&i1, (void *)(uintptr_t)fd,
	    FD_TYPE));
	CHECK_OK(cuMemImportFromShareableHandle(&i2, (void *)(uintptr_t)fd,
	    FD_TYPE));
	close(fd);
	CHECK_OK(cuMemRelease(h));
	expect_oom(24 * MiB);
	CHECK_OK(cuMemRelease(i1));
	if (i2 != i1)
		expect_oom(24 * MiB);
	CHECK_OK(cuMemRelease(i2));
	CHECK(free_bytes() == CAP);

	/* Reserving four times the capacity of address space takes no
	 * memory. */
	CHECK_OK(cuMemAddressReserve(&va, 4 * CAP, 0, 0, 0));
	CHECK(free_bytes() == CAP);
	expect_fits(CAP);
	CHECK_OK(cuMemAddressFree(va, 4 * CAP));
}

/* Memory shared with another process outlives whichever side is
 * killed first, and is freed when the last side lets go. */
static void
test_shared_kill(const char *self)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h;
	CUmemAccessDesc rw = ct_rw(0);
	struct helper hp;
	CUdeviceptr va;
	unsigned char *b;
	int fd;

	/* The creator dies; the importer keeps the bytes and the usage. */
	hp = spawn(self, "export");
	fd = ct_recv_fd(hp.to);
	expect_byte(&hp, 'R');
	CHECK_OK(cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)fd,
	    FD_TYPE));
	close(fd);
	CHECK_OK(cuMemAddressReserve(&va, 32 * MiB, 0, 0, 0));
	CHECK_OK(cuMemMap(va, 32 * MiB, 0, h, 0));
	CHECK_OK(cuMemSetAccess(va, 32 * MiB, &rw, 1));
	CHECK_OK(cuMemRelease(h));
	CHECK(kill(hp.pid, SIGKILL) == 0);
	(void)ct_wait(hp.pid);
	close(hp.to);
	close(hp.from);
	CHECK(free_bytes() == CAP - 32 * MiB);
	expect_oom(48 * MiB);
	b = malloc(32 * MiB);
	CHECK(b != NULL);
	CHECK_OK(cuMemcpyDtoH(b, va, 32 * MiB));
	CHECK(ct_check(b, 32 * MiB, 31));
	free(b);
	CHECK_OK(cuMemUnmap(va, 32 * MiB));
	CHECK_OK(cuMemAddressFree(va, 32 * MiB));
	CHECK(free_bytes() == CAP);

	/* The importer holds the last reference and dies. */
	CHECK_OK(cuMemCreate(&h, 48 * MiB, &p, 0));
	CHECK_OK(cuMemExportToShareableHandle(&fd, h, FD_TYPE, 0));
	hp = spawn(self, "import");
	ct_send_fd(hp.to, fd);
	expect_byte(&hp, 'R');
	close(fd);
	CHECK_OK(cuMemRelease(h));
	CHECK(free_bytes() == CAP - 48 * MiB);
	expect_oom(24 * MiB);
	CHECK(kill(hp.pid, SIGKILL) == 0);
	(void)ct_wait(hp.pid);
	close(hp.to);
	close(hp.from);
	expect_fits(CAP);
	CHECK(free_bytes() == CAP);
}

/* The instance's capacity is fixed while any of its memory is alive (this
 * process holds a chunk): a later process with another CUEMU_MEM_MB sees the
 * instance's capacity, the same in cuDeviceTotalMem and cuMemGetInfo. */
static void
test_fixed_capacity(const char *self)
{
	CUmemAllocationProp p = ct_prop(0, 1);
	CUmemGenericAllocationHandle h;
	struct helper hp;
	size_t v[2];

	CHECK_OK(cuMemCreate(&h, 2 * MiB, &p, 0));
	hp = spawn_env(self, "total", "CUEMU_MEM_MB", "128");
	ct_read(hp.from, v, sizeof(v));
	close(hp.to);
	ct_wait_ok(hp.pid, "total");
	close(hp.from);
	if (v[0] != CAP || v[1] != CAP) {
		fprintf(stderr, "CUEMU_MEM_MB=128 in an instance fixed at 64 MiB: "
		    "cuDeviceTotalMem %zu MiB, cuMemGetInfo total %zu MiB, want "
		    "64 and 64\n", v[0] / MiB, v[1] / MiB);
		exit(1);
	}
	CHECK_OK(cuMemRelease(h));
}

/* Another instance is another machine: its usage is not ours. */
static void
test_instances(const char *self)
{
	char other[128];
	const char *mine = getenv("CUEMU_INSTANCE");
	struct helper hp;

	snprintf(other, sizeof(other), "%.60s-other", mine ? mine : "default");
	hp = spawn_env(self, "hold", "CUEMU_INSTANCE", other);
	expect_byte(&hp, 'R');
	CHECK(free_bytes() == CAP);
	expect_fits(CAP);
	close(hp.to);
	ct_wait_ok(hp.pid, "hold in another instance");
	close(hp.from);
}

int
main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "hold") == 0)
		return role_hold();
	if (argc == 2 && strcmp(argv[1], "fdhold") == 0)
		return role_fdhold();
	if (argc == 2 && strcmp(argv[1], "grab") == 0)
		return role_grab();
	if (argc == 2 && strcmp(argv[1], "total") == 0)
		return role_total();
	if (argc == 2 && strcmp(argv[1], "export") == 0)
		return role_export();
	if (argc == 2 && strcmp(argv[1], "import") == 0)
		return role_import();

	ct_init_ctx(0);
	test_alone();
	test_other_process(argv[0], 0);
	test_other_process(argv[0], 1);
	test_fd_keeps(argv[0]);
	test_mapping_keeps();
	test_forked_children();
	test_references();
	test_shared_kill(argv[0]);
	test_instances(argv[0]);
	test_fixed_capacity(argv[0]);
	test_race(argv[0]);
	return 0;
}
