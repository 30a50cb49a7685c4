/*
 * cuemu core: settings, initialisation, the emulator lock, fault injection,
 * the latency profile, devices, contexts and error names.
 */
#include "cuemu_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cuemu_errors.h"

struct cuemu_config cuemu_cfg;

static pthread_mutex_t	cuemu_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t	cuemu_atfork_once = PTHREAD_ONCE_INIT;
static bool		cuemu_initialized;
/* Set in a child forked from an initialised process: CUDA is unusable there. */
static bool		cuemu_forked;

/* ---- fault injection ---------------------------------------------------- */

#define CUEMU_FAULTS_MAX 32
#define CUEMU_NAME_MAX 64

struct cuemu_fault {
	char		name[CUEMU_NAME_MAX];
	uint64_t	nth;
	bool		and_later;
	CUresult	code;
	uint64_t	calls;
};

static struct cuemu_fault	cuemu_faults[CUEMU_FAULTS_MAX];
static int			cuemu_nfaults;
/* Faults are parsed on first use of any entry point, since cuInit itself
 * may be the function made to fail. */
static pthread_once_t		cuemu_faults_once = PTHREAD_ONCE_INIT;
static bool			cuemu_faults_bad;

/* Copies name without a trailing _v2/_v3 suffix into out. */
static void
cuemu_base_name(const char *name, char *out, size_t outlen)
{
	size_t n;

	snprintf(out, outlen, "%s", name);
	n = strlen(out);
	if (n > 3 && out[n - 3] == '_' && out[n - 2] == 'v' &&
	    out[n - 1] >= '2' && out[n - 1] <= '9')
		out[n - 3] = '\0';
}

/* Parses a CUresult given as a number or a CUDA_ERROR_* name. */
static int
cuemu_parse_result(const char *s, CUresult *out)
{
	char *end;
	long v;
	size_t i;

	for (i = 0; i < sizeof(cuemu_errors) / sizeof(cuemu_errors[0]); i++) {
		if (strcmp(s, cuemu_errors[i].name) == 0) {
			*out = cuemu_errors[i].code;
			return 0;
		}
	}
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v <= 0 || v > 100000)
		return -1;
	*out = (CUresult)v;
	return 0;
}

static void
cuemu_faults_parse(void)
{
	const char *env = getenv("CUEMU_FAIL");
	char *copy, *save = NULL, *tok;

	if (env == NULL || *env == '\0')
		return;
	if ((copy = strdup(env)) == NULL) {
		cuemu_faults_bad = true;
		return;
	}
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		struct cuemu_fault *f;
		char *c1 = strchr(tok, ':'), *c2, *end;
		unsigned long long n;

		if (c1 == NULL || (c2 = strchr(c1 + 1, ':')) == NULL ||
		    cuemu_nfaults == CUEMU_FAULTS_MAX)
			goto bad;
		*c1 = *c2 = '\0';
		f = &cuemu_faults[cuemu_nfaults];
		if (*tok == '\0' || strlen(tok) >= CUEMU_NAME_MAX)
			goto bad;
		cuemu_base_name(tok, f->name, sizeof(f->name));
		errno = 0;
		n = strtoull(c1 + 1, &end, 10);
		if (errno != 0 || end == c1 + 1 || n == 0)
			goto bad;
		if (*end == '+') {
			f->and_later = true;
			end++;
		}
		if (*end != '\0')
			goto bad;
		f->nth = n;
		if (cuemu_parse_result(c2 + 1, &f->code) != 0)
			goto bad;
		cuemu_nfaults++;
	}
	free(copy);
	return;
bad:
	free(copy);
	cuemu_nfaults = 0;
	cuemu_faults_bad = true;
	fprintf(stderr, "cuemu: CUEMU_FAIL=\"%s\": expected name:N[+]:code[,...] "
	    "(N >= 1, code a number or CUDA_ERROR_* name)\n", env);
}

/* Counts a call of name; returns the injected result or CUDA_SUCCESS. */
static CUresult
cuemu_fault_check(const char *name)
{
	CUresult r = CUDA_SUCCESS;
	int i;

	pthread_once(&cuemu_faults_once, cuemu_faults_parse);
	if (cuemu_nfaults == 0)
		return CUDA_SUCCESS;
	pthread_mutex_lock(&cuemu_lock);
	for (i = 0; i < cuemu_nfaults; i++) {
		struct cuemu_fault *f = &cuemu_faults[i];

		if (strcmp(f->name, name) != 0)
			continue;
		f->calls++;
		if (f->calls == f->nth || (f->and_later && f->calls > f->nth))
			r = f->code;
	}
	pthread_mutex_unlock(&cuemu_lock);
	return r;
}

/* ---- latency profile ---------------------------------------------------- */

/*
 * Per-call costs.  cuMemMap, cuMemUnmap and cuMemSetAccess are charged per
 * physical chunk (handle) the call touches: PyTorch's Note [Expandable
 * Segments] (c10/cuda/CUDACachingAllocator.cpp) measured their cost
 * proportional to the number of physical chunks ("mapping 10 separately
 * allocated 2MiB pages takes 10x time compared to mapping one 20MiB
 * physical allocation"), and the published figures below are per 2 MiB
 * chunk.  Every other call is charged per granule it touches (cuMemCreate,
 * cuMemRelease: no source says otherwise, so the pessimistic choice).
 * CUEMU_LATENCY_SCALE=granule charges the three mapping calls per granule
 * too, a pessimistic bound.
 *
 * a100: published for 2 MiB chunks on an A100 (kvcached's
 * benchmarks/bench_vmm): cuMemCreate 193 us, cuMemMap 1.5 us, cuMemSetAccess
 * 36 us, cuMemUnmap 26 us, cuMemAddressReserve (8 GiB) 19 us.  Our estimates
 * (no published figure found): cuMemRelease 20 us, export 10 us, import 15 us
 * (each a driver ioctl and an fd, like cuMemMap plus an fd), cuMemGetInfo
 * 10 us, any other call 1 us.
 *
 * h100: no published per-call VMM figures for Hopper were found, so every
 * figure is an estimate: the A100 ones scaled by 0.8 (a newer host driver
 * path, the same kind of ioctls; creates still zero and map whole pages).
 * Documented in README.md.
 */
static const uint32_t cuemu_cost_ns[CUEMU_PROFILES][CUEMU_COST_N] = {
	[CUEMU_PROFILE_A100] = {
		[CUEMU_COST_CREATE] = 193000,
		[CUEMU_COST_MAP] = 1500,
		[CUEMU_COST_SETACCESS] = 36000,
		[CUEMU_COST_UNMAP] = 26000,
		[CUEMU_COST_RESERVE] = 19000,
		[CUEMU_COST_RELEASE] = 20000,
		[CUEMU_COST_EXPORT] = 10000,
		[CUEMU_COST_IMPORT] = 15000,
		[CUEMU_COST_MEMINFO] = 10000,
		[CUEMU_COST_CALL] = 1000,
	},
	[CUEMU_PROFILE_H100] = {
		[CUEMU_COST_CREATE] = 154000,
		[CUEMU_COST_MAP] = 1200,
		[CUEMU_COST_SETACCESS] = 29000,
		[CUEMU_COST_UNMAP] = 21000,
		[CUEMU_COST_RESERVE] = 15000,
		[CUEMU_COST_RELEASE] = 16000,
		[CUEMU_COST_EXPORT] = 8000,
		[CUEMU_COST_IMPORT] = 12000,
		[CUEMU_COST_MEMINFO] = 8000,
		[CUEMU_COST_CALL] = 800,
	},
};

static const char *const cuemu_profile_names[CUEMU_PROFILES] = {
	[CUEMU_PROFILE_OFF] = "off",
	[CUEMU_PROFILE_A100] = "a100",
	[CUEMU_PROFILE_H100] = "h100",
};

/* A call's cost is paid after it leaves the emulator lock (cuemu_leave), so
 * a thread that waits out a long create does not hold up another thread's
 * calls: the driver does not serialise a create with an export either. */
static __thread bool		cuemu_tls_locked;
static __thread uint64_t	cuemu_tls_owed_ns;

static uint64_t
cuemu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
cuemu_spin(uint64_t ns)
{
	uint64_t until = cuemu_now_ns() + ns;

	/* Busy-wait: sleeping is far too coarse for microsecond costs. */
	while (cuemu_now_ns() < until)
		;
}

/* Calls, granules and chunks charged per cost, whatever the profile
 * (cuemuGetCounter names them calls_<cost>, granules_<cost> and
 * chunks_<cost>): exact figures of what a program asked of the driver,
 * where wall time on a loaded host is not. */
static uint64_t			cuemu_cost_calls[CUEMU_COST_N];
static uint64_t			cuemu_cost_units[CUEMU_COST_N];
static uint64_t			cuemu_cost_chunks[CUEMU_COST_N];
/* What the profile charged the calling thread so far (ns; 0 with the
 * profile off): thread_charged_ns. */
static __thread uint64_t	cuemu_tls_charged_ns;

uint64_t			cuemu_handle_refs;

static const char *const cuemu_cost_names[CUEMU_COST_N] = {
	[CUEMU_COST_CREATE] = "create",
	[CUEMU_COST_MAP] = "map",
	[CUEMU_COST_SETACCESS] = "setaccess",
	[CUEMU_COST_UNMAP] = "unmap",
	[CUEMU_COST_RESERVE] = "reserve",
	[CUEMU_COST_RELEASE] = "release",
	[CUEMU_COST_EXPORT] = "export",
	[CUEMU_COST_IMPORT] = "import",
	[CUEMU_COST_MEMINFO] = "meminfo",
	[CUEMU_COST_CALL] = "call",
};

int
cuemu_cost_counter(const char *name, unsigned long long *value)
{
	const uint64_t *v;
	const char *cost;
	int i;

	if (strcmp(name, "instance_creates_begun") == 0 ||
	    strcmp(name, "instance_creates_done") == 0) {
		if (cuemu_check("cuemuGetCounter") != CUDA_SUCCESS)
			return -1;
		return cuemu_capacity_creates(strcmp(name,
		    "instance_creates_done") == 0, value);
	}
	if (strcmp(name, "thread_charged_ns") == 0) {
		*value = cuemu_tls_charged_ns;
		return 0;
	}
	if (strcmp(name, "handle_refs") == 0) {
		*value = __atomic_load_n(&cuemu_handle_refs, __ATOMIC_RELAXED);
		return 0;
	}
	if (strncmp(name, "calls_", 6) == 0) {
		v = cuemu_cost_calls;
		cost = name + 6;
	} else if (strncmp(name, "granules_", 9) == 0) {
		v = cuemu_cost_units;
		cost = name + 9;
	} else if (strncmp(name, "chunks_", 7) == 0) {
		v = cuemu_cost_chunks;
		cost = name + 7;
	} else {
		return -1;
	}
	for (i = 0; i < CUEMU_COST_N; i++)
		if (cuemu_cost_names[i] != NULL &&
		    strcmp(cost, cuemu_cost_names[i]) == 0) {
			*value = __atomic_load_n(&v[i], __ATOMIC_RELAXED);
			return 0;
		}
	return -1;
}

/* Whether cost is charged per chunk touched (CUEMU_SCALE_CHUNK). */
static bool
cuemu_per_chunk(enum cuemu_cost cost)
{
	return cuemu_cfg.latency_scale == CUEMU_SCALE_CHUNK &&
	    (cost == CUEMU_COST_MAP || cost == CUEMU_COST_UNMAP ||
	    cost == CUEMU_COST_SETACCESS);
}

void
cuemu_charge(enum cuemu_cost cost, size_t granules, size_t chunks)
{
	uint64_t ns;
	size_t units;

	if (cost == CUEMU_COST_NONE)
		return;
	if (granules == 0)
		granules = 1;
	if (chunks == 0)
		chunks = 1;
	__atomic_add_fetch(&cuemu_cost_calls[cost], 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&cuemu_cost_units[cost], granules, __ATOMIC_RELAXED);
	__atomic_add_fetch(&cuemu_cost_chunks[cost], chunks, __ATOMIC_RELAXED);
	if (cuemu_cfg.profile == CUEMU_PROFILE_OFF)
		return;
	units = cuemu_per_chunk(cost) ? chunks : granules;
	ns = (uint64_t)cuemu_cost_ns[cuemu_cfg.profile][cost] * units;
	cuemu_tls_charged_ns += ns;
	if (cuemu_tls_locked)
		cuemu_tls_owed_ns += ns;
	else
		cuemu_spin(ns);
}

/* ---- settings ------------------------------------------------------------ */

/* Parses an integer env variable in [lo, hi]; absent leaves *out alone. */
static int
cuemu_env_u64(const char *name, uint64_t lo, uint64_t hi, uint64_t *out)
{
	const char *s = getenv(name);
	char *end;
	unsigned long long v;

	if (s == NULL)
		return 0;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*s == '\0' || *s == '-' || errno != 0 || *end != '\0' || v < lo ||
	    v > hi) {
		fprintf(stderr, "cuemu: %s=\"%s\": expected an integer in "
		    "[%" PRIu64 ", %" PRIu64 "]\n", name, s, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

static int
cuemu_config_load(void)
{
	struct cuemu_config c = { 0 };
	const char *s;
	uint64_t v;
	size_t i;

	s = getenv("CUEMU_INSTANCE");
	if (s == NULL)
		s = "default";
	if (*s == '\0' || strlen(s) > CUEMU_INSTANCE_MAX)
		goto bad_instance;
	for (i = 0; s[i] != '\0'; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
		    ch == '-'))
			goto bad_instance;
	}
	memcpy(c.instance, s, strlen(s) + 1);

	v = 1;
	if (cuemu_env_u64("CUEMU_DEVICES", 1, CUEMU_MAX_DEVICES, &v) != 0)
		return -1;
	c.devices = (int)v;
	v = 16384;
	if (cuemu_env_u64("CUEMU_MEM_MB", 64, 1048576, &v) != 0)
		return -1;
	c.mem_bytes = v << 20;
	v = 2048;
	if (cuemu_env_u64("CUEMU_GRANULARITY_KB", 4, 1048576, &v) != 0)
		return -1;
	if ((v & (v - 1)) != 0) {
		fprintf(stderr, "cuemu: CUEMU_GRANULARITY_KB=%" PRIu64
		    ": expected a power of two in [4, 1048576]\n", v);
		return -1;
	}
	c.granularity = v << 10;
	/* The recommended granularity: a power-of-two multiple of the
	 * minimum (real GPUs may recommend more than they require). */
	v = c.granularity >> 10;
	if (cuemu_env_u64("CUEMU_REC_GRANULARITY_KB", 4, 1048576, &v) != 0)
		return -1;
	if ((v & (v - 1)) != 0 || (v << 10) < c.granularity) {
		fprintf(stderr, "cuemu: CUEMU_REC_GRANULARITY_KB=%" PRIu64
		    ": expected a power of two in [%" PRIu64 ", 1048576] (at "
		    "least CUEMU_GRANULARITY_KB)\n", v, c.granularity >> 10);
		return -1;
	}
	c.rec_granularity = v << 10;
	if (cuemu_procaddr_setting(&c.procaddr_internal) != 0)
		return -1;
	s = getenv("CUEMU_VA_HINT");
	if (s == NULL || strcmp(s, "honor") == 0)
		c.va_hint = CUEMU_VA_HINT_HONOR;
	else if (strcmp(s, "refuse") == 0)
		c.va_hint = CUEMU_VA_HINT_REFUSE;
	else if (strcmp(s, "random") == 0)
		c.va_hint = CUEMU_VA_HINT_RANDOM;
	else {
		fprintf(stderr, "cuemu: CUEMU_VA_HINT=\"%s\": expected honor, "
		    "refuse or random\n", s);
		return -1;
	}
	v = 0;
	if (cuemu_env_u64("CUEMU_OOM_ABOVE_MB", 1, 1048576, &v) != 0)
		return -1;
	c.oom_above = v << 20;
	s = getenv("CUEMU_LATENCY");
	c.profile = CUEMU_PROFILES;
	for (i = 0; i < (size_t)CUEMU_PROFILES; i++)
		if (strcmp(s != NULL ? s : "off", cuemu_profile_names[i]) == 0)
			c.profile = (enum cuemu_profile)i;
	if (c.profile == CUEMU_PROFILES) {
		fprintf(stderr, "cuemu: CUEMU_LATENCY=\"%s\": expected off, a100 "
		    "or h100\n", s);
		return -1;
	}
	s = getenv("CUEMU_LATENCY_SCALE");
	if (s == NULL || strcmp(s, "chunk") == 0)
		c.latency_scale = CUEMU_SCALE_CHUNK;
	else if (strcmp(s, "granule") == 0)
		c.latency_scale = CUEMU_SCALE_GRANULE;
	else {
		fprintf(stderr, "cuemu: CUEMU_LATENCY_SCALE=\"%s\": expected "
		    "chunk or granule\n", s);
		return -1;
	}
	s = getenv("CUEMU_COMPUTE_MODE");
	if (s == NULL || strcmp(s, "default") == 0)
		c.exclusive = false;
	else if (strcmp(s, "exclusive_process") == 0)
		c.exclusive = true;
	else {
		fprintf(stderr, "cuemu: CUEMU_COMPUTE_MODE=\"%s\": expected "
		    "default or exclusive_process\n", s);
		return -1;
	}
	v = 0;
	if (cuemu_env_u64("CUEMU_RDMA", 0, 1, &v) != 0)
		return -1;
	c.rdma = v != 0;
	v = 0;
	if (cuemu_env_u64("CUEMU_MIG", 0, 1, &v) != 0)
		return -1;
	c.mig = v != 0;
	v = 2000;
	if (cuemu_env_u64("CUEMU_ASYNC_DELAY_US", 0, 10000000, &v) != 0)
		return -1;
	c.async_delay_ns = v * 1000u;
	v = 0;
	if (cuemu_env_u64("CUEMU_PHANTOM", 0, 1, &v) != 0)
		return -1;
	c.phantom = v != 0;
	cuemu_cfg = c;
	return 0;

bad_instance:
	fprintf(stderr, "cuemu: CUEMU_INSTANCE=\"%s\": expected 1-%d characters "
	    "of [A-Za-z0-9_.-]\n", s, CUEMU_INSTANCE_MAX);
	return -1;
}

/* ---- init, fork, the lock ----------------------------------------------- */

static void
cuemu_atfork_prepare(void)
{
	pthread_mutex_lock(&cuemu_lock);
}

static void
cuemu_atfork_parent(void)
{
	pthread_mutex_unlock(&cuemu_lock);
}

static void
cuemu_atfork_child(void)
{
	if (cuemu_initialized)
		cuemu_forked = true;
	pthread_mutex_unlock(&cuemu_lock);
}

static void
cuemu_atfork_register(void)
{
	pthread_atfork(cuemu_atfork_prepare, cuemu_atfork_parent,
	    cuemu_atfork_child);
}

CUresult
cuemu_enter(const char *name, bool need_init)
{
	CUresult r;

	pthread_once(&cuemu_atfork_once, cuemu_atfork_register);
	if ((r = cuemu_fault_check(name)) != CUDA_SUCCESS)
		return r;
	pthread_mutex_lock(&cuemu_lock);
	if (cuemu_forked || (need_init && !cuemu_initialized)) {
		pthread_mutex_unlock(&cuemu_lock);
		return CUDA_ERROR_NOT_INITIALIZED;
	}
	cuemu_tls_locked = true;
	return CUDA_SUCCESS;
}

CUresult
cuemu_check(const char *name)
{
	CUresult r;

	pthread_once(&cuemu_atfork_once, cuemu_atfork_register);
	if ((r = cuemu_fault_check(name)) != CUDA_SUCCESS)
		return r;
	if (__atomic_load_n(&cuemu_forked, __ATOMIC_ACQUIRE) ||
	    !__atomic_load_n(&cuemu_initialized, __ATOMIC_ACQUIRE))
		return CUDA_ERROR_NOT_INITIALIZED;
	return CUDA_SUCCESS;
}

pthread_mutex_t *
cuemu_mutex(void)
{
	return &cuemu_lock;
}

void
cuemu_leave(void)
{
	uint64_t owed = cuemu_tls_owed_ns;

	cuemu_tls_locked = false;
	cuemu_tls_owed_ns = 0;
	pthread_mutex_unlock(&cuemu_lock);
	if (owed != 0)
		cuemu_spin(owed);
	/* A create's cost is paid: it is done (instance_creates_done). */
	cuemu_capacity_create_end();
}

CUEMU_EXPORT CUresult CUDAAPI
cuInit(unsigned int flags)
{
	CUresult r;

	if ((r = cuemu_enter("cuInit", false)) != CUDA_SUCCESS)
		return r;
	if (cuemu_faults_bad)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (flags != 0)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (!cuemu_initialized) {
		if (cuemu_config_load() != 0)
			return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
		cuemu_initialized = true;
	}
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuDriverGetVersion(int *driverVersion)
{
	/* Documented to work before cuInit. */
	if (cuemu_forked)
		return CUDA_ERROR_NOT_INITIALIZED;
	if (driverVersion == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	*driverVersion = CUEMU_DRIVER_VERSION;
	return CUDA_SUCCESS;
}

/* ---- devices -------------------------------------------------------------- */

bool
cuemu_device_valid(int ordinal)
{
	return ordinal >= 0 && ordinal < cuemu_cfg.devices;
}

CUEMU_EXPORT CUresult CUDAAPI
cuDeviceGetCount(int *count)
{
	CUEMU_ENTER("cuDeviceGetCount");
	if (count == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	*count = cuemu_cfg.devices;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuDeviceGet(CUdevice *device, int ordinal)
{
	CUEMU_ENTER("cuDeviceGet");
	if (device == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (!cuemu_device_valid(ordinal))
		return cuemu_ret(CUDA_ERROR_INVALID_DEVICE);
	*device = ordinal;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuDeviceGetName(char *name, int len, CUdevice dev)
{
	CUEMU_ENTER("cuDeviceGetName");
	if (name == NULL || len <= 0)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (!cuemu_device_valid(dev))
		return cuemu_ret(CUDA_ERROR_INVALID_DEVICE);
	snprintf(name, (size_t)len, "cuemu emulated GPU %d", dev);
	return cuemu_ret(CUDA_SUCCESS);
}

/* FNV-1a, to derive stable UUIDs from the instance name. */
static uint64_t
cuemu_fnv(const void *p, size_t n, uint64_t h)
{
	const unsigned char *b = p;

	while (n--) {
		h ^= *b++;
		h *= 1099511628211ull;
	}
	return h;
}

/* The UUID of device dev; with mig, of the MIG instance it stands for
 * (CUEMU_MIG=1), else of the GPU. */
static void
cuemu_uuid(CUdevice dev, bool mig, CUuuid *uuid)
{
	uint64_t h1, h2;

	h1 = cuemu_fnv(cuemu_cfg.instance, strlen(cuemu_cfg.instance),
	    14695981039346656037ull);
	h1 = cuemu_fnv(&dev, sizeof(dev), h1);
	if (mig)
		h1 = cuemu_fnv("mig", 3, h1);
	h2 = cuemu_fnv(&h1, sizeof(h1), h1 ^ 0x9e3779b97f4a7c15ull);
	memcpy(uuid->bytes, &h1, 8);
	memcpy(uuid->bytes + 8, &h2, 8);
	uuid->bytes[6] = (char)((uuid->bytes[6] & 0x0f) | 0x40);
}

CUEMU_EXPORT CUresult CUDAAPI
cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev)
{
	CUEMU_ENTER("cuDeviceGetUuid");
	if (uuid == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (!cuemu_device_valid(dev))
		return cuemu_ret(CUDA_ERROR_INVALID_DEVICE);
	cuemu_uuid(dev, cuemu_cfg.mig, uuid);
	return cuemu_ret(CUDA_SUCCESS);
}

/* The v1 ABI: on a MIG instance it answers with the GPU's UUID, as the
 * driver's did before _v2 (which names the instance). */
CUEMU_EXPORT CUresult CUDAAPI
cuDeviceGetUuid(CUuuid *uuid, CUdevice dev)
{
	CUEMU_ENTER("cuDeviceGetUuid");
	if (uuid == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (!cuemu_device_valid(dev))
		return cuemu_ret(CUDA_ERROR_INVALID_DEVICE);
	cuemu_uuid(dev, false, uuid);
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
	CUEMU_ENTER("cuDeviceTotalMem");
	if (bytes == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (!cuemu_device_valid(dev))
		return cuemu_ret(CUDA_ERROR_INVALID_DEVICE);
	/* The instance's capacity, as fixed by its first process. */
	*bytes = cuemu_capacity_total(dev);
	return cuemu_ret(CUDA_SUCCESS);
}

/* Attribute values of an emulated device, loosely an A100; 0 for the rest. */
static int
cuemu_attribute(CUdevice_attribute attrib, int *out)
{
	switch (attrib) {
	case CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED:
	case CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED:
	case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING:
	case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED:
	case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY:
	case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS:
	case CU_DEVICE_ATTRIBUTE_ECC_ENABLED:
		*out = 1;
		return 0;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR:
		*out = 8;
		return 0;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR:
		*out = 0;
		return 0;
	case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT:
		*out = 108;
		return 0;
	case CU_DEVICE_ATTRIBUTE_WARP_SIZE:
		*out = 32;
		return 0;
	case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK:
		*out = 1024;
		return 0;
	case CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT:
		*out = 512;
		return 0;
	case CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT:
		*out = 32;
		return 0;
	case CU_DEVICE_ATTRIBUTE_MAX_PITCH:
		*out = 2147483647;
		return 0;
	case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID:
	case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID:
	case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID:
		*out = 0;
		return 0;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_MODE:
		*out = cuemu_cfg.exclusive ? CU_COMPUTEMODE_EXCLUSIVE_PROCESS :
		    CU_COMPUTEMODE_DEFAULT;
		return 0;
	case CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED:
	case CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_SUPPORTED:
		*out = cuemu_cfg.rdma;
		return 0;
	case CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_FABRIC_SUPPORTED:
	case CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_WIN32_HANDLE_SUPPORTED:
	case CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_WIN32_KMT_HANDLE_SUPPORTED:
		*out = 0;
		return 0;
	default:
		if ((int)attrib <= 0 || attrib >= CU_DEVICE_ATTRIBUTE_MAX)
			return -1;
		*out = 0;
		return 0;
	}
}

CUEMU_EXPORT CUresult CUDAAPI
cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
{
	CUEMU_ENTER("cuDeviceGetAttribute");
	if (pi == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (!cuemu_device_valid(dev))
		return cuemu_ret(CUDA_ERROR_INVALID_DEVICE);
	if (cuemu_attribute(attrib, pi) != 0)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	return cuemu_ret(CUDA_SUCCESS);
}

/* ---- contexts ------------------------------------------------------------- */

#define CUEMU_CTX_MAGIC 0x63756374u

/* Only primary contexts exist.  They are never freed, so a stale CUcontext
 * is still recognisable (and refused) after its last release. */
struct CUctx_st {
	uint32_t	magic;
	int		device;
	unsigned	retains;
};

static struct CUctx_st		cuemu_primary[CUEMU_MAX_DEVICES];
/* Initial-exec: static TLS even when the library is dlopen'ed (the runtime
 * and libvmm_client.so load the driver lazily).  A dynamic TLS block here
 * trips the leak checker of sanitizer builds (GCC 12's LeakSanitizer reads
 * a bogus DTLS range for a thread that touched it and crashes at exit). */
static __thread CUcontext	cuemu_tls_ctx __attribute__((tls_model("initial-exec")));

static bool
cuemu_ctx_known(CUcontext ctx)
{
	/* Read without the lock (context queries): magic is published last. */
	return ctx >= &cuemu_primary[0] &&
	    ctx < &cuemu_primary[CUEMU_MAX_DEVICES] &&
	    __atomic_load_n(&ctx->magic, __ATOMIC_ACQUIRE) == CUEMU_CTX_MAGIC;
}

CUcontext
cuemu_current_ctx(void)
{
	CUcontext c = cuemu_tls_ctx;

	if (c == NULL || !cuemu_ctx_known(c) ||
	    __atomic_load_n(&c->retains, __ATOMIC_ACQUIRE) == 0)
		return NULL;
	return c;
}

int
cuemu_current_device(void)
{
	CUcontext c = cuemu_current_ctx();

	return c == NULL ? -1 : __atomic_load_n(&c->device, __ATOMIC_RELAXED);
}

int
cuemu_ctx_device(CUcontext ctx)
{
	if (ctx == NULL || !cuemu_ctx_known(ctx) ||
	    __atomic_load_n(&ctx->retains, __ATOMIC_ACQUIRE) == 0)
		return -1;
	return __atomic_load_n(&ctx->device, __ATOMIC_RELAXED);
}

CUcontext
cuemu_primary_ctx(int dev)
{
	return &cuemu_primary[dev];
}

CUEMU_EXPORT CUresult CUDAAPI
cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
	CUEMU_ENTER("cuDevicePrimaryCtxRetain");
	if (pctx == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (!cuemu_device_valid(dev))
		return cuemu_ret(CUDA_ERROR_INVALID_DEVICE);
	/* EXCLUSIVE_PROCESS: "only one context used by a single process can
	 * be present on this device at a time" (cuda.h CUcomputemode); a
	 * second process gets CUDA_ERROR_DEVICE_UNAVAILABLE. */
	if (cuemu_cfg.exclusive && cuemu_primary[dev].retains == 0 &&
	    cuemu_machine_ctx_claim(dev) != 0)
		return cuemu_ret(CUDA_ERROR_DEVICE_UNAVAILABLE);
	__atomic_store_n(&cuemu_primary[dev].device, dev, __ATOMIC_RELAXED);
	__atomic_store_n(&cuemu_primary[dev].magic, CUEMU_CTX_MAGIC,
	    __ATOMIC_RELEASE);
	__atomic_add_fetch(&cuemu_primary[dev].retains, 1, __ATOMIC_RELEASE);
	*pctx = &cuemu_primary[dev];
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
	CUEMU_ENTER("cuDevicePrimaryCtxRelease");
	if (!cuemu_device_valid(dev))
		return cuemu_ret(CUDA_ERROR_INVALID_DEVICE);
	if (cuemu_primary[dev].retains == 0)
		return cuemu_ret(CUDA_ERROR_INVALID_CONTEXT);
	/* The last release destroys the context, and its peer access; in
	 * exclusive mode it frees the device for other processes. */
	if (__atomic_sub_fetch(&cuemu_primary[dev].retains, 1,
	    __ATOMIC_RELEASE) == 0) {
		cuemu_peer_forget(dev);
		if (cuemu_cfg.exclusive)
			cuemu_machine_ctx_unclaim(dev);
	}
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuDevicePrimaryCtxRelease(CUdevice dev)
{
	return cuDevicePrimaryCtxRelease_v2(dev);
}

CUEMU_EXPORT CUresult CUDAAPI
cuCtxSetCurrent(CUcontext ctx)
{
	CUEMU_ENTER("cuCtxSetCurrent");
	if (ctx != NULL && (!cuemu_ctx_known(ctx) || ctx->retains == 0))
		return cuemu_ret(CUDA_ERROR_INVALID_CONTEXT);
	cuemu_tls_ctx = ctx;
	return cuemu_ret(CUDA_SUCCESS);
}

/* The two context queries read only this thread's state: no lock, so they
 * stay as cheap as the real driver's on allocation fast paths. */
CUEMU_EXPORT CUresult CUDAAPI
cuCtxGetCurrent(CUcontext *pctx)
{
	CUresult r;

	if ((r = cuemu_check("cuCtxGetCurrent")) != CUDA_SUCCESS)
		return r;
	if (pctx == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	*pctx = cuemu_tls_ctx;
	return CUDA_SUCCESS;
}

CUEMU_EXPORT CUresult CUDAAPI
cuCtxGetDevice(CUdevice *device)
{
	CUresult r;
	int dev;

	if ((r = cuemu_check("cuCtxGetDevice")) != CUDA_SUCCESS)
		return r;
	if (device == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	if ((dev = cuemu_current_device()) < 0)
		return CUDA_ERROR_INVALID_CONTEXT;
	*device = dev;
	return CUDA_SUCCESS;
}

/* Waits for the current context's work only (cuda.h: "Blocks until the
 * current context has completed all preceding requested tasks").  With
 * nothing pending it reads this thread's state and one counter, without the
 * emulator lock, as cheap as a real idle GPU's. */
CUEMU_EXPORT CUresult CUDAAPI
cuCtxSynchronize(void)
{
	CUresult r;
	int dev;

	if ((r = cuemu_check("cuCtxSynchronize")) != CUDA_SUCCESS)
		return r;
	if ((dev = cuemu_current_device()) < 0)
		return CUDA_ERROR_INVALID_CONTEXT;
	cuemu_charge(CUEMU_COST_CALL, 1, 1);
	/* A capture of this device's streams is invalidated and the call
	 * refused: nothing is waited for. */
	if ((r = cuemu_capture_ctx_sync_unlocked(dev)) != CUDA_SUCCESS)
		return r;
	cuemu_counter_add(CUEMU_COUNTER_CTX_SYNCS);
	if (cuemu_q_device_idle(dev))
		return CUDA_SUCCESS;
	pthread_mutex_lock(&cuemu_lock);
	cuemu_q_sync_device(dev);
	pthread_mutex_unlock(&cuemu_lock);
	return CUDA_SUCCESS;
}

/* ---- errors ----------------------------------------------------------------- */

static const struct cuemu_error *
cuemu_error_find(CUresult r)
{
	size_t i;

	for (i = 0; i < sizeof(cuemu_errors) / sizeof(cuemu_errors[0]); i++)
		if (cuemu_errors[i].code == r)
			return &cuemu_errors[i];
	return NULL;
}

CUEMU_EXPORT CUresult CUDAAPI
cuGetErrorName(CUresult error, const char **pStr)
{
	const struct cuemu_error *e;

	if (pStr == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	if ((e = cuemu_error_find(error)) == NULL) {
		*pStr = NULL;
		return CUDA_ERROR_INVALID_VALUE;
	}
	*pStr = e->name;
	return CUDA_SUCCESS;
}

CUEMU_EXPORT CUresult CUDAAPI
cuGetErrorString(CUresult error, const char **pStr)
{
	const struct cuemu_error *e;

	if (pStr == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	if ((e = cuemu_error_find(error)) == NULL) {
		*pStr = NULL;
		return CUDA_ERROR_INVALID_VALUE;
	}
	*pStr = e->text;
	return CUDA_SUCCESS;
}

CUEMU_EXPORT CUresult CUDAAPI
cuCtxSynchronize_v2(CUcontext ctx)
{
	CUEMU_ENTER("cuCtxSynchronize");
	if (ctx == NULL)
		ctx = cuemu_current_ctx();
	if (ctx == NULL || !cuemu_ctx_known(ctx) || ctx->retains == 0)
		return cuemu_ret(CUDA_ERROR_INVALID_CONTEXT);
	{
		CUresult r = cuemu_capture_ctx_sync(ctx->device);

		if (r != CUDA_SUCCESS)
			return cuemu_ret(r);
	}
	cuemu_counter_add(CUEMU_COUNTER_CTX_SYNCS);
	cuemu_q_sync_device(ctx->device);
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuCtxGetDevice_v2(CUdevice *device, CUcontext ctx)
{
	CUEMU_ENTER("cuCtxGetDevice");
	if (device == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (ctx == NULL)
		ctx = cuemu_current_ctx();
	if (ctx == NULL || !cuemu_ctx_known(ctx) || ctx->retains == 0)
		return cuemu_ret(CUDA_ERROR_INVALID_CONTEXT);
	*device = ctx->device;
	return cuemu_ret(CUDA_SUCCESS);
}
