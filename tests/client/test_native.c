/*
 * Native memory, counted (issue 11, item 3): a program under
 * LD_PRELOAD=libvmm_client.so with a real vmmd allocates through every path
 * the shim passes to CUDA's own allocators, and vmmd shows exactly those
 * bytes per path for its session, as `vmmctl clients --json` and `vmmctl
 * metrics` print them, and zero after the frees.  Run with VMM_APP_VMM=native,
 * so the program's own cuMemCreate is passed through (the pool serves it
 * otherwise: test_appvmm.c).  One scenario per argument (argv[2]: the
 * vmmctl binary):
 *
 *   paths  fallback (the first cuMemMap fails, CUEMU_FAIL: cudaMalloc goes
 *          to CUDA's own allocator), the program's own cuMemCreate, a
 *          cuMemPoolCreate pool's cuMemAllocFromPoolAsync, cuMemAllocManaged;
 *          and the runtime's cudaMallocFromPoolAsync and cudaMallocManaged;
 *          degenerate and failed calls count nothing, nested calls (the
 *          runtime reaching the driver through the hooks) count once; a
 *          fork child counts none of the parent's
 *   quota  under a quota, cudaMemGetInfo's free drops by what a native
 *          allocation holds (free <= quota - lent - native), and comes back
 *          after its free
 */
#include <cuda.h>
#include <cuda_runtime_api.h>

#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/check.h"
#include "testclient.h"
#include "vmm_client.h"

#define MiB (1ull << 20)
#define CKRT(call) CHECK((call) == cudaSuccess)
#define CKCU(call) CHECK((call) == CUDA_SUCCESS)

static char	sockdir[1024], sockpath[1100];
static const char *vmmctl;

static int (*p_get_usage)(struct vmm_usage *);
static int (*p_get_range)(const void *, void **, size_t *);

static void
api_resolve(void)
{
	p_get_usage = (int (*)(struct vmm_usage *))dlsym(RTLD_DEFAULT,
	    "vmm_get_usage");
	p_get_range = (int (*)(const void *, void **, size_t *))dlsym(
	    RTLD_DEFAULT, "vmm_get_range");
	CHECK(p_get_usage != NULL && p_get_range != NULL);
}

/* Whether p came from vmmd (the library knows it). */
static bool
ours(const void *p)
{
	void *base;
	size_t size;

	return p_get_range(p, &base, &size) == VMM_OK;
}

/* fallback, cumemcreate, pool, managed */
struct native {
	uint64_t	b[4];
};

static struct native
usage_native(void)
{
	struct vmm_usage u;
	struct native n;

	CHECK(p_get_usage(&u) == 0);
	n.b[0] = u.native_fallback_bytes;
	n.b[1] = u.native_cumemcreate_bytes;
	n.b[2] = u.native_pool_bytes;
	n.b[3] = u.native_managed_bytes;
	return n;
}

/* Runs cmd (without LD_PRELOAD: see main) and reads up to 4 numbers from
 * its output; returns how many. */
static int
run_numbers(const char *cmd, uint64_t out[4])
{
	char full[4096];
	FILE *f;
	int n;

	snprintf(full, sizeof(full), "%s", cmd);
	CHECK((f = popen(full, "r")) != NULL);
	n = fscanf(f, "%" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, &out[0],
	    &out[1], &out[2], &out[3]);
	CHECK(pclose(f) == 0);
	return n;
}

/* This process's native bytes by path as `vmmctl clients --json` shows
 * its session. */
static bool
vmmctl_native(struct native *n)
{
	char cmd[3072];

	snprintf(cmd, sizeof(cmd), "%s -S %s clients --json | python3 -c '"
	    "import json,sys\n"
	    "s=[x for x in json.load(sys.stdin)[\"sessions\"] "
	    "if x[\"pid\"]==%d and x[\"kind\"]==\"app\"]\n"
	    "assert len(s)==1, s\n"
	    "assert s[0][\"native_bytes\"]==sum(s[0][\"native_\"+k+\"_bytes\"] "
	    "for k in (\"fallback\",\"cumemcreate\",\"pool\",\"managed\"))\n"
	    "print(*[s[0][\"native_\"+k+\"_bytes\"] for k in "
	    "(\"fallback\",\"cumemcreate\",\"pool\",\"managed\")])'",
	    vmmctl, sockpath, (int)getpid());
	return run_numbers(cmd, n->b) == 4;
}

/* The same from `vmmctl metrics` (vmmd_client_native_bytes{path=...}). */
static bool
metrics_native(struct native *n)
{
	char cmd[3072];

	snprintf(cmd, sizeof(cmd), "%s -S %s metrics | python3 -c '"
	    "import re,sys\n"
	    "v={}\n"
	    "for l in sys.stdin:\n"
	    "  m=re.match(r\"vmmd_client_native_bytes\\{.*,uid=\\\"%u\\\",.*"
	    "path=\\\"(\\w+)\\\"\\} (\\d+)$\", l)\n"
	    "  if m: v[m.group(1)]=v.get(m.group(1),0)+int(m.group(2))\n"
	    "print(*[v[k] for k in (\"fallback\",\"cumemcreate\",\"pool\","
	    "\"managed\")])'", vmmctl, sockpath, (unsigned)getuid());
	return run_numbers(cmd, n->b) == 4;
}

/* Waits (up to 10 s) until vmmd shows want for this process: the client
 * reports soon after a change, not at once. */
static void
expect_vmmd(const struct native *want)
{
	struct native got = { { 0 } };
	int i;

	for (i = 0; i < 200; i++) {
		if (vmmctl_native(&got) &&
		    memcmp(&got, want, sizeof(got)) == 0)
			break;
		usleep(50 * 1000);
	}
	fprintf(stderr, "vmmctl: fallback %" PRIu64 " cumemcreate %" PRIu64
	    " pool %" PRIu64 " managed %" PRIu64 "\n", got.b[0], got.b[1],
	    got.b[2], got.b[3]);
	CHECK(memcmp(&got, want, sizeof(got)) == 0);
	CHECK(metrics_native(&got));
	CHECK(memcmp(&got, want, sizeof(got)) == 0);
}

static void
start(const char *conf, const char *fail)
{
	tc_start_daemon(sockdir, conf, NULL);
	/* Only this process's driver fails (the emulator reads CUEMU_FAIL at
	 * its first call; the daemon has its own environment). */
	if (fail != NULL)
		CHECK(setenv("CUEMU_FAIL", fail, 1) == 0);
	CKRT(cudaSetDevice(0));
	api_resolve();
}

static CUmemAllocationProp
dev0_prop(void)
{
	CUmemAllocationProp prop;

	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = 0;
	return prop;
}

/* ---- paths ----------------------------------------------------------------- */

static void
sc_paths(void)
{
	CUmemAllocationProp prop;
	CUmemGenericAllocationHandle h;
	CUmemPoolProps pp;
	CUmemoryPool pool;
	CUdeviceptr pd, md;
	struct native want = { { 0 } }, zero = { { 0 } }, got;
	struct cudaMemPoolProps rp;
	cudaMemPool_t rpool;
	void *fb, *b, *z, *rpd, *rmd;
	pid_t child;
	int status;
	size_t gran;

	start("idle_timeout_ms = 0\n", "cuMemMap:1:CUDA_ERROR_UNKNOWN");
	/* Fallback: the broker path fails at its first map. */
	CKRT(cudaMalloc(&fb, 3 * MiB + 4096));
	CHECK(!ours(fb));
	want.b[0] = 3 * MiB + 4096;
	/* Pooled memory is not native. */
	CKRT(cudaMalloc(&b, 1 * MiB));
	CHECK(ours(b));
	/* Degenerate: NULL and nothing counted. */
	CKRT(cudaMalloc(&z, 0));
	CHECK(z == NULL);
	/* The application's own VMM. */
	prop = dev0_prop();
	CKCU(cuMemGetAllocationGranularity(&gran, &prop,
	    CU_MEM_ALLOC_GRANULARITY_MINIMUM));
	CKCU(cuMemCreate(&h, 2 * gran, &prop, 0));
	want.b[1] = 2 * gran;
	/* Refused by the driver: nothing counted. */
	CHECK(cuMemCreate(&h, 2 * gran, &prop, 1) == CUDA_ERROR_INVALID_VALUE);
	/* An explicit memory pool. */
	memset(&pp, 0, sizeof(pp));
	pp.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
	pp.handleTypes = CU_MEM_HANDLE_TYPE_NONE;
	pp.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	pp.location.id = 0;
	CKCU(cuMemPoolCreate(&pool, &pp));
	CKCU(cuMemAllocFromPoolAsync(&pd, 5 * MiB, pool, NULL));
	want.b[2] = 5 * MiB;
	/* Managed memory. */
	CKCU(cuMemAllocManaged(&md, 7 * MiB + 512, CU_MEM_ATTACH_GLOBAL));
	want.b[3] = 7 * MiB + 512;
	CHECK(cuMemAllocManaged(&md, 0, CU_MEM_ATTACH_GLOBAL) ==
	    CUDA_ERROR_INVALID_VALUE);
	/* The runtime's forms: counted once (the driver calls they make
	 * through the hooks are nested). */
	memset(&rp, 0, sizeof(rp));
	rp.allocType = cudaMemAllocationTypePinned;
	rp.handleTypes = cudaMemHandleTypeNone;
	rp.location.type = cudaMemLocationTypeDevice;
	rp.location.id = 0;
	CKRT(cudaMemPoolCreate(&rpool, &rp));
	CKRT(cudaMallocFromPoolAsync(&rpd, 2 * MiB + 8, rpool, NULL));
	want.b[2] += 2 * MiB + 8;
	CKRT(cudaMallocManaged(&rmd, 1 * MiB, cudaMemAttachGlobal));
	want.b[3] += 1 * MiB;
	CHECK(cudaMallocManaged(&rmd, 0, cudaMemAttachGlobal) ==
	    cudaErrorInvalidValue);

	got = usage_native();
	CHECK(memcmp(&got, &want, sizeof(got)) == 0);
	expect_vmmd(&want);
	/* A fork child holds none of it. */
	child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		got = usage_native();
		_exit(memcmp(&got, &zero, sizeof(got)) == 0 ? 0 : 1);
	}
	CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0);
	got = usage_native();
	CHECK(memcmp(&got, &want, sizeof(got)) == 0);

	/* Frees decrement their own path; a failed free changes nothing. */
	CKRT(cudaFree(fb));
	CHECK(cudaFree(fb) != cudaSuccess);
	want.b[0] = 0;
	got = usage_native();
	CHECK(memcmp(&got, &want, sizeof(got)) == 0);
	CKCU(cuMemRelease(h));
	CHECK(cuMemRelease(h) != CUDA_SUCCESS);
	want.b[1] = 0;
	CKCU(cuMemFreeAsync(pd, NULL));
	want.b[2] = 2 * MiB + 8;
	got = usage_native();
	CHECK(memcmp(&got, &want, sizeof(got)) == 0);
	expect_vmmd(&want);
	CKRT(cudaFreeAsync(rpd, NULL));
	want.b[2] = 0;
	CKRT(cudaFree(rmd));
	want.b[3] = 7 * MiB + 512;
	got = usage_native();
	CHECK(memcmp(&got, &want, sizeof(got)) == 0);
	CKRT(cudaMemPoolDestroy(rpool));
	CKRT(cudaFree((void *)(uintptr_t)md));
	CKRT(cudaFree(b));
	CKCU(cuMemPoolDestroy(pool));
	got = usage_native();
	CHECK(memcmp(&got, &zero, sizeof(got)) == 0);
	expect_vmmd(&zero);
}

/* ---- quota ----------------------------------------------------------------- */

static void
sc_quota(void)
{
	size_t f0, t0, f1, t1, f2, t2;
	CUdeviceptr md;
	char conf[128];
	void *b;

	snprintf(conf, sizeof(conf), "idle_timeout_ms = 0\nquota.uid.%u = 64M\n",
	    (unsigned)getuid());
	start(conf, NULL);
	CKRT(cudaMalloc(&b, 1 * MiB));
	CHECK(ours(b));
	CKRT(cudaMemGetInfo(&f0, &t0));
	CHECK(t0 == 64 * MiB && f0 < t0);
	CKCU(cuMemAllocManaged(&md, 8 * MiB, CU_MEM_ATTACH_GLOBAL));
	CKRT(cudaMemGetInfo(&f1, &t1));
	fprintf(stderr, "free %zu -> %zu of %zu\n", f0, f1, t1);
	/* free <= quota - lent - native: the managed bytes are the client's. */
	CHECK(t1 == t0 && f1 == f0 - 8 * MiB);
	CKRT(cudaFree((void *)(uintptr_t)md));
	CKRT(cudaMemGetInfo(&f2, &t2));
	CHECK(t2 == t0 && f2 == f0);
	CKRT(cudaFree(b));
}

int
main(int argc, char **argv)
{
	const char *dir = getenv("VMM_SOCKET_DIR");

	CHECK(argc == 3 && dir != NULL);
	/* Loaded already; the shell, vmmctl and python3 run without it (nor
	 * a sanitizer runtime a sanitizer build puts first). */
	CHECK(unsetenv("LD_PRELOAD") == 0);
	vmmctl = argv[2];
	snprintf(sockdir, sizeof(sockdir), "%s", dir);
	tc_socket_path(sockdir, sockpath, sizeof(sockpath));
	if (strcmp(argv[1], "paths") == 0)
		sc_paths();
	else if (strcmp(argv[1], "quota") == 0)
		sc_quota();
	else
		CHECK(!"unknown scenario");
	return 0;
}
