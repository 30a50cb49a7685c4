/*
 * cuemu: an emulated CUDA driver (libcuda.so.1) on host memory, for tests.
 * Internal header shared by the emulator's files; one section per file.
 *
 * Every entry point starts with CUEMU_ENTER(name), which checks
 * initialisation, applies fault injection and the latency profile, and takes
 * the one emulator lock; it leaves through cuemu_leave().  The lock is coarse
 * on purpose: this is a test substrate, and correctness beats speed.
 */
#ifndef CUEMU_INTERNAL_H
#define CUEMU_INTERNAL_H

/* Declare the unversioned and _v2 names alike, as the real driver does. */
#define __CUDA_API_VERSION_INTERNAL 1
#pragma GCC visibility push(default)
#include <cuda.h>
#pragma GCC visibility pop

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CUEMU_EXPORT __attribute__((visibility("default")))

#define CUEMU_MAX_DEVICES 16
#define CUEMU_INSTANCE_MAX 64
#define CUEMU_DRIVER_VERSION CUDA_VERSION

/* ---- core.c: settings, init, lock, faults, latency ---------------------- */

/* Latency profiles (CUEMU_LATENCY). */
enum cuemu_profile {
	CUEMU_PROFILE_OFF,
	CUEMU_PROFILE_A100,
	CUEMU_PROFILE_H100,
	CUEMU_PROFILES
};

/* What a mapping call's cost scales with (CUEMU_LATENCY_SCALE). */
enum cuemu_scale {
	CUEMU_SCALE_CHUNK,	/* map/unmap/set-access: per chunk touched */
	CUEMU_SCALE_GRANULE,	/* every call: per granule touched */
};

/* What cuMemAddressReserve does with a hint (CUEMU_VA_HINT). */
enum cuemu_va_hint {
	CUEMU_VA_HINT_HONOR,	/* there when that range is free */
	CUEMU_VA_HINT_REFUSE,	/* never there */
	CUEMU_VA_HINT_RANDOM,	/* one hint in two, at random */
};

struct cuemu_config {
	char		instance[CUEMU_INSTANCE_MAX + 1];
	int		devices;
	uint64_t	mem_bytes;	/* capacity of each device */
	uint64_t	granularity;	/* minimum */
	uint64_t	rec_granularity; /* recommended: a multiple of it */
	bool		procaddr_internal; /* cuGetProcAddress: trampolines */
	uint64_t	oom_above;	/* 0: off */
	enum cuemu_profile profile;
	enum cuemu_scale latency_scale;
	bool		exclusive;	/* CU_COMPUTEMODE_EXCLUSIVE_PROCESS */
	bool		rdma;		/* GPUDirect RDMA with VMM supported */
	bool		mig;		/* devices are MIG instances */
	uint64_t	async_delay_ns;	/* queued work runs at the latest then */
	enum cuemu_va_hint va_hint;	/* cuMemAddressReserve's addr */
	bool		phantom;	/* chunks without memory (benchmarks) */
};

extern struct cuemu_config cuemu_cfg;

/* Per-call cost classes of the latency profile. */
enum cuemu_cost {
	CUEMU_COST_NONE,
	CUEMU_COST_CREATE,
	CUEMU_COST_MAP,
	CUEMU_COST_SETACCESS,
	CUEMU_COST_UNMAP,
	CUEMU_COST_RESERVE,
	CUEMU_COST_RELEASE,
	CUEMU_COST_EXPORT,
	CUEMU_COST_IMPORT,
	CUEMU_COST_MEMINFO,
	CUEMU_COST_CALL,
	CUEMU_COST_N
};

/* Checks init state and faults, then locks.  On a non-zero return the lock
 * is not held and the caller returns that code. */
CUresult	cuemu_enter(const char *name, bool need_init);
void		cuemu_leave(void);
/* As cuemu_enter, without taking the lock: for calls that read only the
 * calling thread's state. */
CUresult	cuemu_check(const char *name);
/* The emulator lock itself, for condition waits (queue.c). */
pthread_mutex_t *cuemu_mutex(void);
/* Charges the latency profile's cost for an operation touching granules
 * granules of chunks physical chunks (handles): per chunk for cuMemMap,
 * cuMemUnmap and cuMemSetAccess, per granule for the rest (and for every
 * call with CUEMU_LATENCY_SCALE=granule); paid (busy-waiting) when the call
 * leaves the lock, or at once without it. */
void		cuemu_charge(enum cuemu_cost cost, size_t granules, size_t chunks);
/* The process's references to VMM handles the application may use
 * (created, imported or retained, less released): cuemuGetCounter's
 * handle_refs. */
extern uint64_t	cuemu_handle_refs;
/* cuemuGetCounter's calls_<cost>, granules_<cost>, chunks_<cost>,
 * thread_charged_ns and handle_refs: 0, or -1 (no such name). */
int		cuemu_cost_counter(const char *name, unsigned long long *value);
bool		cuemu_device_valid(int ordinal);
/* The context current on this thread, or NULL if none or not active. */
CUcontext	cuemu_current_ctx(void);
/* The device of the current context, or -1 (no valid context). */
int		cuemu_current_device(void);
/* The device of ctx if it is a live (retained) context, else -1. */
int		cuemu_ctx_device(CUcontext ctx);
/* Device dev's primary context (streams of dev belong to it). */
CUcontext	cuemu_primary_ctx(int dev);

#define CUEMU_ENTER(name)                                                \
	do {                                                             \
		CUresult enter_r_ = cuemu_enter((name), true);           \
		if (enter_r_ != CUDA_SUCCESS)                            \
			return enter_r_;                                 \
	} while (0)

/* Leaves the lock and returns r. */
static inline CUresult
cuemu_ret(CUresult r)
{
	cuemu_leave();
	return r;
}

/* ---- capacity.c: device memory shared by every process of an instance --- */

/* In handle_types of a memfd's name: the memory is GPUDirect RDMA capable. */
#define CUEMU_TYPES_RDMA 0x100u
/* Creates a memfd of size bytes charged to device dev, or returns
 * CUDA_ERROR_OUT_OF_MEMORY.  handle_types is recorded in the memfd's name so
 * an importer learns it.  Returns the fd in *fdp. */
CUresult	cuemu_capacity_create(int dev, uint64_t size, unsigned handle_types,
		    int *fdp);
/* A create on dev begins (lock held; before its cost is charged): counted
 * in the instance's books at once, and counted done by
 * cuemu_capacity_create_end once the calling thread has paid its cost
 * (cuemu_leave).  cuemuGetCounter's instance_creates_begun and
 * instance_creates_done, summed over the devices: 0, or -1. */
void		cuemu_capacity_create_begin(int dev);
void		cuemu_capacity_create_end(void);
int		cuemu_capacity_creates(bool done, unsigned long long *value);
/* Bytes in use on device dev across all processes, from the shared books:
 * no scan (see capacity.c for how exact it is). */
uint64_t	cuemu_capacity_used(int dev);
/* Exact scans of /proc made so far for device dev (by any process). */
uint64_t	cuemu_capacity_scans(int dev);
/* Before a memfd leaves the process (export): marks it shared, so its end is
 * no longer taken as certain when this process closes it.  Any path that
 * hands a memfd to another process must call this first.  0 or -1. */
int		cuemu_capacity_export(int fd);
/* A handle of this process now holds fd, imported from another. */
void		cuemu_capacity_import(int fd);
/* Closes a memfd of ours that a handle or allocation held (after its last
 * mapping in this process is gone), and updates the books. */
void		cuemu_capacity_close(int fd);
/* CUEMU_PHANTOM: a handle on a chunk without memory or fd books size bytes
 * of device dev; with admit, only if they fit (else
 * CUDA_ERROR_OUT_OF_MEMORY), as a create; an import does not ask. */
CUresult	cuemu_capacity_phantom_create(int dev, uint64_t size, bool admit);
/* A phantom handle ended; exported: a raw fd of it may keep the chunk. */
void		cuemu_capacity_phantom_end(int dev, uint64_t size, bool exported);
/* A new key naming a phantom chunk across the instance (never 0). */
uint64_t	cuemu_phantom_key(void);
/* A new fd naming phantom chunk key (an empty memfd), or -1. */
int		cuemu_capacity_phantom_export(int dev, uint64_t size,
		    unsigned types, uint64_t key);
/* What a phantom chunk's exported fd names; -1 if fd is not one. */
int		cuemu_capacity_phantom_identify(int fd, int *dev, uint64_t *size,
		    unsigned *types, uint64_t *key);
/* Capacity of device dev, as fixed for the instance. */
uint64_t	cuemu_capacity_total(int dev);
/* CUEMU_COMPUTE_MODE=exclusive_process: this process's first context on
 * dev claims the device for the instance; -1 while another live process
 * holds a context there.  Unclaim when the last context goes. */
int		cuemu_machine_ctx_claim(int dev);
void		cuemu_machine_ctx_unclaim(int dev);
/* Parses a cuemu memfd name of this instance: returns 0 and fills the out
 * parameters, or -1 if fd is not cuemu device memory of this instance. */
int		cuemu_capacity_identify(int fd, int *dev, uint64_t *size,
		    unsigned *handle_types);

/* ---- vmm.c: reservations, handles, mappings ------------------------------ */

enum cuemu_kind {
	CUEMU_KIND_VMM,		/* mapped with cuMemMap */
	CUEMU_KIND_ALLOC,	/* cuMemAlloc / cuMemAllocPitch */
	CUEMU_KIND_ASYNC,	/* cuMemAllocAsync */
	CUEMU_KIND_IPC,		/* cuIpcOpenMemHandle (ipc.c) */
};

/* What an address belongs to, for copies and pointer attributes. */
struct cuemu_range {
	enum cuemu_kind	kind;
	CUdeviceptr	base;		/* mapping or allocation start */
	size_t		size;
	int		device;
	int		prot;		/* PROT_* currently granted */
	CUdeviceptr	resv_base;	/* VMM: its reservation */
	size_t		resv_size;
};

/* Finds the mapping or allocation holding addr; lock held. */
bool		cuemu_lookup(CUdeviceptr addr, struct cuemu_range *out);
/* Checks [addr, addr+len) is covered, contiguously, by mappings or one
 * allocation granting device dev at least prot; lock held. */
bool		cuemu_range_ok(CUdeviceptr addr, size_t len, int prot, int dev);
/* Registers a classic allocation (the fd is kept); lock held. */
int		cuemu_alloc_add(CUdeviceptr base, size_t size, int dev, int fd,
		    enum cuemu_kind kind);
/* Removes a classic allocation starting at base; returns its fd, or -1.
 * Memory opened by IPC is not one (cuIpcCloseMemHandle removes it). */
int		cuemu_alloc_remove(CUdeviceptr base, size_t *sizep,
		    enum cuemu_kind *kindp);
/* The memfd of the cuMemAlloc allocation starting at base, or -1. */
int		cuemu_alloc_fd(CUdeviceptr base);
/* Removes IPC-opened memory starting at base; returns its fd, or -1. */
int		cuemu_ipc_remove(CUdeviceptr base);

/* ---- peer.c: peer access between contexts ----------------------------------- */

/* Whether the context of device accessor enabled peer access to device
 * owner's context (cuCtxEnablePeerAccess); lock held. */
bool		cuemu_peer_enabled(int accessor, int owner);
/* Forgets peer access to and from dev (its primary context was released
 * for the last time); lock held. */
void		cuemu_peer_forget(int dev);

/* ---- procaddr.c: cuGetProcAddress ---------------------------------------- */

/* CUEMU_PROCADDR_INTERNAL (read once, also before cuInit): 0 or 1 into *on;
 * -1 (after one line on stderr) if invalid. */
int		cuemu_procaddr_setting(bool *on);

/* ---- mem.c: streams and events, classic memory, copies ------------------- */

bool		cuemu_stream_valid(CUstream s);
/* Device and flags of a valid stream (dev and 0 for the default streams). */
void		cuemu_stream_props(CUstream s, int dev, int *devp,
		    unsigned *flagsp);
/* Frees the classic allocation at dptr; lock held. */
CUresult	cuemu_classic_free(CUdeviceptr dptr);

/* ---- queue.c: work that runs later, one worker thread per device ------------ */

/* A stream's queue (the legacy and per-thread default streams have one
 * per device, resp. per thread and device).  All calls: lock held. */
struct cuemu_q;

enum cuemu_counter {
	CUEMU_COUNTER_CTX_SYNCS,
	CUEMU_COUNTER_STREAM_SYNCS,
	CUEMU_COUNTER_EVENT_SYNCS,
	CUEMU_COUNTER_FAULTS,
	CUEMU_COUNTER_BUSY_RELEASES,
	CUEMU_COUNTER_LAUNCHES,
	CUEMU_COUNTER_N
};

void		cuemu_counter_add(enum cuemu_counter c);
/* The emulator-only exports (cuemu.h documents them). */
CUEMU_EXPORT CUresult cuemuLaunchWrite(CUdeviceptr dst, unsigned int pattern,
		    size_t bytes, unsigned int delay_us, CUstream hStream);
CUEMU_EXPORT CUresult cuemuLaunchWrite_ptsz(CUdeviceptr dst,
		    unsigned int pattern, size_t bytes, unsigned int delay_us,
		    CUstream hStream);
CUEMU_EXPORT int cuemuGetCounter(const char *name, unsigned long long *value);
struct cuemu_q	*cuemu_q_create(int dev, bool blocking);
void		cuemu_q_destroy(struct cuemu_q *q);
struct cuemu_q	*cuemu_q_legacy(int dev);
struct cuemu_q	*cuemu_q_per_thread(int dev);
int		cuemu_q_device(const struct cuemu_q *q);
/* Position of q's last op; whether q has completed up to seq. */
uint64_t	cuemu_q_tail(const struct cuemu_q *q);
bool		cuemu_q_done(const struct cuemu_q *q, uint64_t seq);
/* Issue work: a copy (host sources are staged now), a memset, the emulated
 * kernel, a stream-ordered free, an event's mark (its position in *seq),
 * a wait for another queue's position. */
CUresult	cuemu_q_copy(struct cuemu_q *q, CUdeviceptr dst, bool dst_dev,
		    CUdeviceptr src, bool src_dev, size_t len);
CUresult	cuemu_q_memset(struct cuemu_q *q, CUdeviceptr dst,
		    unsigned char uc, size_t n);
CUresult	cuemu_q_write(struct cuemu_q *q, CUdeviceptr dst,
		    uint32_t pattern, size_t bytes, unsigned delay_us);
CUresult	cuemu_q_free(struct cuemu_q *q, CUdeviceptr dptr, size_t len);
CUresult	cuemu_q_mark(struct cuemu_q *q, uint64_t *seq);
CUresult	cuemu_q_wait(struct cuemu_q *q, struct cuemu_q *wq,
		    uint64_t wseq);
/* Waits (dropping the lock meanwhile) until q completed up to seq. */
void		cuemu_q_sync(struct cuemu_q *q, uint64_t seq);
/* Waits until every queue of device dev is empty. */
void		cuemu_q_sync_device(int dev);
/* Whether device dev has no work pending (no lock needed). */
bool		cuemu_q_device_idle(int dev);
/* Counts a busy release if pending work touches [addr, addr+len). */
void		cuemu_q_note_release(CUdeviceptr addr, size_t len);

/* ---- capture.c: stream capture and graphs ------------------------------- */

/* One operation issued to a stream, as a graph records it. */
struct cuemu_op {
	enum {
		CUEMU_OP_COPY,
		CUEMU_OP_MEMSET,
		CUEMU_OP_EVENT,
		CUEMU_OP_UNSUPPORTED,	/* cannot be captured here */
	}		kind;
	CUdeviceptr	dst, src;
	bool		dst_dev, src_dev;	/* which side is device memory */
	size_t		len;
	unsigned char	value;
	CUevent		event;
};

/* What the _ptsz entry points mean by stream s (NULL: the per-thread one). */
CUstream	cuemu_ptsz(CUstream s);
/* The hooks, lock held.  Before async work op on stream s (device dev of the
 * current context): an error to return, or CUDA_SUCCESS with *captured set
 * if it was recorded into s's capture (else the caller executes it). */
CUresult	cuemu_capture_issue(CUstream s, int dev, const struct cuemu_op *op,
		    bool *captured);
/* Before synchronizing or querying stream s (NULL: the legacy stream, as a
 * synchronous copy or memset uses it). */
CUresult	cuemu_capture_wait(CUstream s, int dev);
/* Before synchronizing device dev's context (the unlocked form takes the
 * lock only while a capture exists). */
CUresult	cuemu_capture_ctx_sync(int dev);
CUresult	cuemu_capture_ctx_sync_unlocked(int dev);
/* Before a potentially unsafe call (allocation, free, mapping changes);
 * CUEMU_CAPTURE_UNSAFE() leaves with its error, lock held. */
CUresult	cuemu_capture_unsafe(void);
#define CUEMU_CAPTURE_UNSAFE()                                           \
	do {                                                             \
		CUresult unsafe_r_ = cuemu_capture_unsafe();             \
		if (unsafe_r_ != CUDA_SUCCESS)                           \
			return cuemu_ret(unsafe_r_);                     \
	} while (0)
/* Events: recorded into stream s, waited for or queried, destroyed. */
CUresult	cuemu_capture_event_record(CUevent e, CUstream s, int dev);
CUresult	cuemu_capture_event_wait(CUevent e);
void		cuemu_capture_event_gone(CUevent e);
/* Before destroying stream s. */
CUresult	cuemu_capture_stream_gone(CUstream s);

#endif
