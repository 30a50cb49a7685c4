/*
 * libvmm_client internals: one header, a section per file.
 *
 *   client.c    the public API (vmm_client.h), out-of-memory retry, fork
 *   helper.c    the helper thread: recalls, idle return, usage reports
 *   adopt.c     Adopt toward a new daemon instance (conn.c's hook)
 *   appvmm.c    the application's own cuMemCreate served from the pool
 *   large.c     chunk-backed allocations: map back to back, cache, resize
 *   medium.c    a heap per device over pages mapped on demand (medium sizes)
 *   small.c     sub-allocation by size class with per-thread caches
 *   ipc.c       legacy CUDA IPC handles of our memory: export, open, close
 *   va.c        virtual address reservations and a coalescing range allocator
 *   conn.c      the connection to vmmd: handshake, calls, pushes, reconnect
 *   stream.c    stream-ordered frees parked with an event, reused in order
 *   sync.c      lazy synchronization per device and context (tickets)
 *   native.c    bytes the shim passed to CUDA's own allocators, by path
 *   core.c      counters, mapping, waking the helper
 *   access.c    which devices may access each device's mappings (peers)
 *   capture.c   stream captures in progress, frees deferred meanwhile
 *   settings.c  the VMM_* environment table, read once
 *
 * Calls go down that list, never up: client.c and helper.c call the
 * allocators, which call va.c, conn.c and core.c; adopt.c calls the
 * allocators (appvmm.c among them) and conn.c, and conn.c reaches it only through the hook
 * client.c registers (tests/arch checks that no two files call each other
 * both ways).
 *
 * Private to client/: the shim (shim/) sees only vmmc_shim.h.  Internal
 * symbols are vmmc_*; the public API (vmm_client.h) is vmm_*.
 */
#ifndef VMM_CLIENT_INTERNAL_H
#define VMM_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "opt.h"
#include "vmm_client.h"

#include "vmmc_shim.h"

/* ---- settings.c ------------------------------------------------------------ */

struct vmmc_settings {
	int		mode;		/* enum vmmc_mode */
	uint64_t	reserve_mb;	/* VA per reservation; 0: auto */
	double		frag_ratio;
	int		log_level;
	char		log_file[VMM_OPT_STRMAX];
	char		socket_dir[VMM_OPT_STRMAX];
	bool		require_daemon;
	uint64_t	small_max;	/* largest sub-allocated size */
	uint64_t	medium_max;	/* largest size of the medium heap */
	uint64_t	cache_max;	/* bytes of freed chunks kept */
	bool		cache_working_set; /* the working set on top of it */
	uint64_t	idle_ms;	/* cache given back after this idle time */
	uint64_t	report_ms;	/* usage reported at most this often */
	double		va_headroom;	/* VA left after large allocations */
	uint64_t	connect_timeout_ms;
	char		daemon_user[VMM_OPT_STRMAX];	/* may run vmmd */
	int		peer_access;	/* enum vmmc_peer */
	int		fallback;	/* enum vmmc_fallback */
	int		app_vmm;	/* enum vmmc_app_vmm */
};

/* VMM_APP_VMM: who serves the application's own cuMemCreate. */
enum vmmc_app_vmm {
	VMMC_APP_VMM_POOL = 0,		/* a chunk of vmmd, where it can */
	VMMC_APP_VMM_NATIVE = 1,	/* the driver (counted as native) */
};

/* VMM_PEER_ACCESS: which devices get access to a device's mappings. */
enum vmmc_peer {
	VMMC_PEER_AUTO = 0,	/* those the program enabled peer access for */
	VMMC_PEER_ALL = 1,	/* every device that can access it */
	VMMC_PEER_NONE = 2,	/* its own device only */
};

/* VMM_FALLBACK: what an unexpected driver error or fd exhaustion in the
 * broker path does to the allocation (vmmc_fallback). */
enum vmmc_fallback {
	VMMC_FALLBACK_ON = 0,	/* CUDA's own allocator serves it */
	VMMC_FALLBACK_FAIL = 1,	/* it fails with the error */
};

/* The settings, read from the environment on first call.  An invalid value
 * prints one line naming the variable and the accepted values, then exits:
 * the only way this library ever ends the application. */
const struct vmmc_settings *vmmc_settings_get(void);

extern const struct vmm_opt	vmmc_options[];
extern const size_t		vmmc_noptions;

/* ---- conn.c ----------------------------------------------------------------- */

#include <cuda.h>
#include <pthread.h>

#define VMMC_MAX_DEVICES 16

struct vmmc_conn;

/* One chunk of a grant, as received. */
struct vmmc_grant_chunk {
	uint64_t	id;
	uint64_t	size;
	int		fd;	/* the caller closes it */
};

/* The connection for device dev (opened lazily), or NULL. */
struct vmmc_conn *vmmc_conn_get(int dev);
/* Asks for bytes; fills up to max chunks.  Returns the count or a VMM_E*
 * code.  flags: Acquire's flags, or VMMC_ACQUIRE_EXACT (Acquire.exact:
 * one chunk of exactly bytes; an older vmmd may answer a larger one). */
#define VMMC_ACQUIRE_EXACT	(1u << 31)
/* Acquire.no_create: idle memory only; where vmmd would have to create,
 * the answer is VMMC_EWOULD_CREATE (an older vmmd grants, as ever). */
#define VMMC_ACQUIRE_NO_CREATE	(1u << 30)
#define VMMC_EWOULD_CREATE	(-110)
/* Acquire.partial (with ALLOW_STITCH): a grant whose every piece is an
 * idle chunk may be short of bytes; the caller asks again for the rest (an
 * older vmmd grants the whole request). */
#define VMMC_ACQUIRE_PARTIAL	(1u << 29)
int	vmmc_conn_acquire(struct vmmc_conn *c, uint64_t bytes, unsigned flags,
	    uint64_t min_piece, struct vmmc_grant_chunk *out, size_t max);
/* Asks for one chunk of bytes, or of up to up_to bytes if vmmd has such a
 * chunk idle and would otherwise create one (Acquire.up_to; the caller
 * maps all of it).  An older vmmd answers bytes.  no_create: from idle
 * memory only (Acquire.no_create), VMMC_EWOULD_CREATE where vmmd would
 * have had to create.  The count (1) or a VMM_E* code; the caller checks
 * the size. */
int	vmmc_conn_acquire_within(struct vmmc_conn *c, uint64_t bytes,
	    uint64_t up_to, bool no_create, struct vmmc_grant_chunk *out);
/* Gives chunks back (recall_id: the Recall answered, or 0) without waiting
 * for vmmd's answer; 0 once sent, or VMM_ENODAEMON. */
int	vmmc_conn_release(struct vmmc_conn *c, const uint64_t *ids, size_t n,
	    uint64_t recall_id);
/* Makes sure c is connected; 0 or VMM_ENODAEMON. */
int	vmmc_conn_ensure(struct vmmc_conn *c);
/* Reconnects c if it was up and got lost (not closed by vmm_shutdown, not
 * in use right now): resumes the session, or adopts toward a new vmmd. */
void	vmmc_conn_revive(struct vmmc_conn *c);
/* Sends the usage figures; recall_id: the Recall they close (0: none).
 * *others_lent (if not NULL, and answered): what vmmd lends to other
 * sessions of the device now. */
int	vmmc_conn_report(struct vmmc_conn *c, const struct vmm_usage *u,
	    uint64_t recall_id, uint64_t *others_lent);
uint64_t vmmc_conn_granularity(struct vmmc_conn *c);
int	vmmc_conn_fd(struct vmmc_conn *c);
/* Reads pushes (Recall, Goodbye) that arrived; returns a recall target in
 * bytes (0: none) and its id. */
uint64_t vmmc_conn_poll(struct vmmc_conn *c, uint64_t *recall_id);
/* Sends one Adopt batch (fds taken), connection locked; fills ids (0 for a
 * chunk vmmd refused). */
int	vmmc_conn_adopt_locked(struct vmmc_conn *c, const uint64_t *sizes,
	    int *fds, size_t n, uint64_t *ids);
/* Registers what a reconnect toward a new daemon instance runs, connection
 * locked (client.c: vmmc_adopt_all). */
void	vmmc_conn_on_new_daemon(int (*fn)(struct vmmc_conn *c, int dev));
/* Forgets every connection without a word to vmmd (fork child). */
void	vmmc_conn_forget_all(void);
/* Waits until vmmd has handled everything sent on every open connection
 * (one round trip each), so that other processes see the releases. */
void	vmmc_conn_sync_all(void);
/* Closes every connection (shutdown). */
void	vmmc_conn_close_all(void);
/* Device memory as vmmd sees it for this client (free, total). */
int	vmmc_conn_meminfo(struct vmmc_conn *c, uint64_t *free_bytes,
	    uint64_t *total, uint64_t *held);

/* Legacy CUDA IPC (client/ipc.c): export chunks this process holds and
 * maps at addr (an id and token for the handle); open an export (the
 * chunks, as a grant, with the import's id and the exporter's address, 0
 * if unknown; count or VMM_E*); close an import (waits for vmmd's answer,
 * so the chunks are back when it returns).  A refused open is
 * VMMC_EIPC_REFUSED, after one ERROR line with vmmd's reason. */
int	vmmc_conn_ipc_export(struct vmmc_conn *c, const uint64_t *ids,
	    size_t n, uint64_t addr, uint64_t *export_id, uint64_t *token);
int	vmmc_conn_ipc_open(struct vmmc_conn *c, uint64_t export_id,
	    uint64_t token, uint64_t *import_id, uint64_t *exporter_addr,
	    struct vmmc_grant_chunk *out, size_t max);

/* The address plan (client/va.c), protocol 4: where vmmd plans a range of
 * size bytes aligned to align (*addr 0: no plan, an older vmmd, or its
 * window is full: reserve anywhere); tell it a reservation went elsewhere
 * than planned (ipc: an import away from its exporter's address); after a
 * restart, claim the reservations this process has, connection locked
 * (accepted[i] false for one vmmd refused).  0 or a VMM_E* code. */
int	vmmc_conn_va_request(struct vmmc_conn *c, uint64_t size,
	    uint64_t align, uint64_t *addr);
int	vmmc_conn_va_placed(struct vmmc_conn *c, uint64_t planned,
	    uint64_t addr, uint64_t size, bool ipc);
int	vmmc_conn_va_claim_locked(struct vmmc_conn *c, const uint64_t *addrs,
	    const uint64_t *sizes, size_t n, bool *accepted);
int	vmmc_conn_ipc_close(struct vmmc_conn *c, uint64_t import_id);

/* ---- va.c ---------------------------------------------------------------------- */

/* Reserves size bytes of device VA aligned to align: a power of two, or a
 * chunk unit (granularity x chunk_multiple), which is reduced to its largest
 * power-of-two divisor (a multiple of the granularity). */
int	vmmc_va_alloc(int dev, uint64_t size, uint64_t align, CUdeviceptr *out);
/* Returns a range to the free list. */
void	vmmc_va_free(int dev, CUdeviceptr base, uint64_t size);
/* Takes [base, base+size) if it is free; 0 on success. */
int	vmmc_va_take(int dev, CUdeviceptr base, uint64_t size);
/* Reserves [addr, addr+size) exactly (a range of our reservations that is
 * free, or a reservation of its own at that address): 0, or -1 if the
 * range is not to be had here (the caller goes elsewhere).  vmmc_va_free
 * gives it back. */
int	vmmc_va_alloc_at(int dev, CUdeviceptr addr, uint64_t size);
/* After a daemon restart: claims this process's reservations of dev at
 * the new vmmd behind c (connection locked).  0 or a VMM_E* code. */
int	vmmc_va_claim_all(struct vmmc_conn *c, int dev);
uint64_t vmmc_va_reserved(void);
/* Whether addr lies in one of our reservations (any device). */
bool	vmmc_va_contains(CUdeviceptr addr);
/* Drops all VA bookkeeping (fork child). */
void	vmmc_va_forget_all(void);

/* ---- stream.c -------------------------------------------------------------- */

/* The device of stream s (its context in *ctxp), or VMM_ECUDA. */
int	vmmc_stream_device(CUstream s, CUcontext *ctxp);
/* Parks the allocation at p (size bytes) freed on stream s (of context
 * ctx): an event is recorded there; 0 or a VMM_E* code. */
int	vmmc_stream_park(void *p, size_t size, CUstream s, CUcontext ctx);
/* Takes a parked allocation of exactly size bytes on dev for stream s (of
 * context ctx), made to wait for its free on the GPU: 0 with *out, or 1. */
int	vmmc_stream_take(int dev, size_t size, CUstream s, CUcontext ctx,
	    void **out);
/* Whether p is parked (freed on a stream, not yet reused). */
bool	vmmc_stream_parked(const void *p);
/* Frees parked allocations of dev (-1: all) whose event completed into the
 * allocators as idle; bytes. */
uint64_t vmmc_stream_reap(int dev);
void	vmmc_stream_forget(void);	/* fork child */

/* ---- sync.c ---------------------------------------------------------------- */

/* Lazy synchronization (design at the top of sync.c).  A free of memory of
 * device dev records vmmc_sync_ticket(dev); memory freed with ticket t may
 * be reused, unmapped or given back once vmmc_sync_covers(dev, t). */
uint64_t vmmc_sync_ticket(int dev);
bool	vmmc_sync_covers(int dev, uint64_t ticket);
/* Synchronizes the contexts of dev unless ticket is covered: 0 once it is,
 * VMM_ECUDA if a synchronization failed (the memory is still busy). */
int	vmmc_sync_for(int dev, uint64_t ticket);
/* Waits for the work issued on dev so far (from any of its contexts). */
int	vmmc_sync_now(int dev);
void	vmmc_sync_forget(void);	/* fork child */

/* ---- capture.c --------------------------------------------------------------- */

/* The stream captures in progress (the shim reports begins and ends; see
 * vmmc_shim.h) and the frees deferred meanwhile.  While
 * vmmc_capture_active(), nothing may synchronize: the allocators reuse only
 * memory whose ticket vmmc_sync_covers() and otherwise take new chunks, and
 * the trims leave the rest cached (sync.c makes no synchronizing call
 * meanwhile: vmmc_sync_for() answers "still busy"). */
/* Records p as freed while a capture is in progress: 1; 0 if none is (free
 * it now); -1 if p is recorded already (a second free); -2 no memory. */
int	vmmc_capture_defer(void *p);
/* Forgets a capture that ended (vmmc_capture_ended in client.c calls it). */
void	vmmc_capture_end(const void *stream);
/* Once no capture is in progress: the deferred pointers (the caller frees
 * them and the array), and how many; 0 and NULL otherwise. */
size_t	vmmc_capture_take_deferred(void ***out);
void	vmmc_capture_forget(void);	/* fork child */

/* ---- core.c ---------------------------------------------------------------- */

/* An unexpected failure in the broker path is said in one ERROR line that
 * ends with what follows for the allocation: vmmc_failure_tail() is that
 * ending (VMM_FALLBACK), and notes that this thread said it;
 * vmmc_failure_said() tells (and forgets) whether it did. */
const char *vmmc_failure_tail(void);
bool	vmmc_failure_said(void);
/* The device of the calling thread's current context, or VMM_ENOCTX. */
int	vmmc_current_device(void);
/* Process-wide counters (atomics). */
void	vmmc_stat_add(int which, int64_t delta);
int64_t	vmmc_stat_get(int which);
enum {
	VMMC_STAT_IN_USE, VMMC_STAT_MAPPED, VMMC_STAT_CACHED, VMMC_STAT_ALLOCS,
	VMMC_STAT_FREES, VMMC_STAT_DAEMON_CALLS, VMMC_STAT_SYNCS, VMMC_STAT_N
};
/* Maps granted chunks back to back at va (imports, closes the fds, one
 * cuMemSetAccess; each import kept with its mapping, vmmc_handle_keep).
 * On failure nothing stays mapped, every fd is closed and the chunks are still the caller's to release: VMM_ENOMEM (the driver was
 * out of memory), VMM_EMFILE (out of fds) or VMM_ECUDA. */
int	vmmc_map_chunks(int dev, CUdeviceptr va, struct vmmc_grant_chunk *g,
	    size_t n);
/* Closes the fds of a grant still open (-1 after). */
void	vmmc_close_grant(struct vmmc_grant_chunk *g, size_t n);
/* Grants device dev read-write access to [va, va+size) (whole mappings). */
int	vmmc_set_access_rw(int dev, CUdeviceptr va, uint64_t size);
/* Unmaps [va, va+size) (whole mappings), then releases the handles kept
 * for those mappings (vmmc_handle_keep). */
void	vmmc_unmap_range(CUdeviceptr va, uint64_t size);
/* Keeps h, which the caller just mapped at va (size bytes), until
 * vmmc_unmap_range unmaps that mapping (released at once if it cannot be
 * recorded): h is no longer the caller's. */
void	vmmc_handle_keep(CUdeviceptr va, uint64_t size,
	    CUmemGenericAllocationHandle h);
/* A handle of the mapping at va, the caller's to release or to keep
 * elsewhere (vmmc_handle_keep): the one kept for it, or one retained
 * (cuMemRetainAllocationHandle's result). */
CUresult vmmc_handle_take(CUdeviceptr va, CUmemGenericAllocationHandle *h);
/* The helper's wake-up pipe: created by the helper (its read end, or -1),
 * written by vmmc_wake() (a Recall arrived). */
int	vmmc_wake_open(void);
void	vmmc_wake(void);
/* Asks the helper to report usage now (the cache grew a lot): vmmd then
 * knows this memory can be recalled for others.  vmmc_report_due() takes
 * the request. */
void	vmmc_report_soon(void);
bool	vmmc_report_due(void);
/* How many bytes the process's caches (cached large allocations and the
 * medium heap's idle pages together) may keep when memory is freed:
 * VMM_CACHE_MAX, plus with VMM_CACHE_WORKING_SET what the process's
 * working set (its peak of memory mapped for live allocations over the
 * last one to two VMM_IDLE_MS, 1 s if 0) exceeds what it has live now, so
 * that a steady-state iteration finds its memory still mapped. */
uint64_t vmmc_cache_budget(void);
/* What vmmd said it lends to other processes of device dev (a Report's
 * answer): the working set is kept on top of VMM_CACHE_MAX only while no
 * device of the process is shared that way. */
void	vmmc_cache_note_others(int dev, uint64_t others_lent);
/* Resets counters and the pipe (fork child). */
void	vmmc_core_forget(void);

/* ---- access.c -------------------------------------------------------------- */

/* Gives [va, va+size) (whole mappings of device dev) read-write access for
 * dev and its peers, and records the range so later peer changes reach it.
 * Returns cuMemSetAccess's result. */
CUresult vmmc_access_grant(int dev, CUdeviceptr va, uint64_t size);
/* Forgets [va, va+size) (it is being unmapped). */
void	vmmc_access_forget(CUdeviceptr va, uint64_t size);
/* Drops the records and peers (fork child). */
void	vmmc_access_forget_all(void);

/* ---- helper.c -------------------------------------------------------------- */

/* Starts the helper thread when device dev is first used. */
void	vmmc_helper_touch(int dev);
/* This process's usage figures (peak as sampled by reports and queries). */
void	vmmc_usage_fill(struct vmm_usage *u);
void	vmmc_helper_forget(void);	/* fork child */

/* ---- adopt.c --------------------------------------------------------------- */

/* One chunk this process maps, and its id at vmmd (0: none). */
struct vmmc_mapped_chunk {
	CUdeviceptr	va;
	uint64_t	size;
	uint64_t	id;
};

/* Tells the new vmmd instance behind c what this process maps of device
 * dev, connection locked; ids updated.  0 or a VMM_E* code. */
int	vmmc_adopt_all(struct vmmc_conn *c, int dev);

/* ---- appvmm.c ---------------------------------------------------------------- */

/* The application's own cuMemCreate served from the pool (the shim's entry
 * points are in vmmc_shim.h).  Gives back the chunks no reference or
 * mapping is left of, synchronizing for those whose last unmap no sync
 * covers yet (not while a capture is in progress); bytes given back. */
uint64_t vmmc_app_trim(void);
/* As vmmc_adopt_all, for those chunks (connection locked). */
int	vmmc_app_adopt(struct vmmc_conn *c, int dev);
void	vmmc_app_forget_all(void);	/* fork child */

/* ---- large.c ---------------------------------------------------------------- */

/* A chunk handed from one allocator to another (through client.c): vmmd's
 * id, its size, and a handle of it (the one kept for its mapping,
 * vmmc_handle_take).  Unmapped where it was, once a synchronization
 * covered its last free: the receiver maps it and keeps the handle with
 * the mapping (vmmc_handle_keep), or releases the handle and gives the id
 * to vmmd. */
struct vmmc_handed_chunk {
	uint64_t			id;
	uint64_t			size;
	CUmemGenericAllocationHandle	h;
};

int	vmmc_large_alloc(int dev, size_t size, void **out);
int	vmmc_large_free(void *p);
/* As vmmc_large_free, for memory no GPU work can touch any more. */
int	vmmc_large_free_idle(void *p);
int	vmmc_large_realloc(void **p, size_t size);
bool	vmmc_large_owns(const void *p);
int	vmmc_large_range(const void *p, void **base, size_t *size);
/* Gives cached memory back to vmmd: at least target bytes (0: all), only
 * entries idle for older_ms or more, answering Recall recall_id (or 0).
 * Returns bytes given back. */
uint64_t vmmc_large_trim(uint64_t target, uint64_t older_ms,
	    uint64_t recall_id);
/* Registers how large.c, about to ask vmmd of device dev for bytes (its
 * own cache could not serve them), sees and gives back the other
 * allocators' idle memory, no large.c lock held: idle(dev) is a cheap look
 * at how much they hold; give(dev, bytes) gives back up to bytes of it, so
 * that vmmd stitches it into the grant instead of creating more.  large.c
 * gives only where vmmd's own idle memory would not serve the request. */
void	vmmc_large_on_acquire(uint64_t (*idle)(int dev),
	    void (*give)(int dev, uint64_t bytes));
/* Bytes of cached large allocations (no lock: a cheap look). */
uint64_t vmmc_large_cached(void);
/* Hands over the chunks of cached allocations of device dev whose every
 * chunk is at most bytes (oldest first, until bytes are handed or max
 * chunks), each only after a sync covering its free (under a stream
 * capture, one that already happened); their VA is freed.  The count. */
size_t	vmmc_large_hand(int dev, uint64_t bytes, struct vmmc_handed_chunk *out,
	    size_t max);
/* Hands over one chunk of a cached allocation of device dev, no larger
 * than most, for a run of need bytes: the smallest at least need, else
 * the largest (only an entry's first or last chunk: the rest stays cached
 * where it is), after a sync covering its free (under a stream capture,
 * one that already happened).  The count (0 or 1). */
size_t	vmmc_large_hand_one(int dev, uint64_t need, uint64_t most,
	    struct vmmc_handed_chunk *out);
/* Copies the chunks of dev that large allocations map, up to max; returns
 * how many there are (call again with more room if that is more). */
size_t	vmmc_large_chunks(int dev, struct vmmc_mapped_chunk *out, size_t max);
/* Sets the ids of those chunks still mapped where they were. */
void	vmmc_large_set_ids(int dev, const struct vmmc_mapped_chunk *v, size_t n);
void	vmmc_large_forget_all(void);
/* For a legacy IPC handle: the device, chunk ids (up to max, in mapping
 * order) and requested size of the live allocation whose base is p.
 * VMM_ENOTOURS if p is in none; VMM_EINVAL if p is inside one but not its
 * base, or it has more than max chunks. */
int	vmmc_large_ipc(const void *p, int *dev, uint64_t *ids, size_t max,
	    size_t *n, uint64_t *size);

/* ---- medium.c --------------------------------------------------------------- */

/* Sizes above vmmc_small_max() up to vmmc_medium_max() (0: none), placed
 * at 512 B in a heap per device whose pages (vmmd's unit) are mapped while
 * live blocks touch them.  VMM_ENOTOURS if size is not served here. */
int	vmmc_medium_alloc(int dev, size_t size, void **out);
uint64_t vmmc_medium_max(void);
/* VMM_ENOTOURS if p is not a medium block's base. */
int	vmmc_medium_free(void *p);
/* As vmmc_medium_free, for a block no GPU work can touch any more. */
int	vmmc_medium_free_idle(void *p);
bool	vmmc_medium_owns(const void *p);
/* Resizes the block at *p in place (shrinking, or growing into free bytes
 * right after it); VMM_ENOTOURS if it cannot (move it by copy). */
int	vmmc_medium_realloc(void **p, size_t size);
/* The block holding p: its base and the size allocated. */
int	vmmc_medium_range(const void *p, void **base, size_t *size);
/* Gives chunks without live blocks back to vmmd: at least target bytes
 * (0: all), those empty for older_ms or more, answering Recall recall_id
 * (or 0); each only after a sync covering the frees on it.  Bytes. */
uint64_t vmmc_medium_trim(uint64_t target, uint64_t older_ms,
	    uint64_t recall_id);
/* Registers what runs when the heap needs need bytes of new pages for a
 * run of device dev (its own idle pages could not serve them), no lock
 * held: it may hand over up to max chunks the process holds idle
 * elsewhere (client.c: cached large allocations), returning how many.
 * most == need: before vmmd is asked, chunks of at most need bytes each;
 * most > need: once vmmd said it would have to create, one chunk of up to
 * most bytes, which the heap maps over free pages around the run too. */
void	vmmc_medium_on_acquire(size_t (*fn)(int dev, uint64_t need,
	    uint64_t most, struct vmmc_handed_chunk *out, size_t max));
/* As vmmc_medium_trim(target, 0, 0), for device dev's chunks only. */
uint64_t vmmc_medium_trim_dev(int dev, uint64_t target);
/* As vmmc_medium_trim_dev, giving back only chunks of at most most bytes
 * each (a small segment's unit: a chunk vmmd can lend for one). */
uint64_t vmmc_medium_trim_upto(int dev, uint64_t target, uint64_t most);
/* Bytes of mapped pages without live blocks, all devices (no lock: a
 * cheap look before vmmc_medium_trim_dev). */
uint64_t vmmc_medium_cached(void);
/* In-use bytes (rounded to 512 B), counts, and bytes of mapped pages
 * without live blocks. */
void	vmmc_medium_usage(int64_t *in_use, uint64_t *allocs, uint64_t *frees,
	    uint64_t *cached);
/* As vmmc_large_chunks / vmmc_large_set_ids. */
size_t	vmmc_medium_chunks(int dev, struct vmmc_mapped_chunk *out, size_t max);
void	vmmc_medium_set_ids(int dev, const struct vmmc_mapped_chunk *v,
	    size_t n);
/* For a legacy IPC handle of the block whose base is p: its device, the
 * chunks backing its pages in address order (up to max), the block's
 * offset in the first and its size.  VMM_ENOTOURS if p is in no block,
 * VMM_EINVAL if inside one but not its base. */
int	vmmc_medium_ipc(const void *p, int *dev, uint64_t *ids, size_t max,
	    size_t *n, uint64_t *off, uint64_t *size);
void	vmmc_medium_forget_all(void);

/* ---- small.c ---------------------------------------------------------------- */

/* VMM_ENOTOURS if size is not served here: above VMM_SMALL_MAX, or more
 * than half of device dev's chunk unit (a segment). */
int	vmmc_small_alloc(int dev, size_t size, void **out);
/* VMM_ENOTOURS if p is not a small block. */
int	vmmc_small_free(void *p);
/* As vmmc_small_free, for a block no GPU work can touch any more. */
int	vmmc_small_free_idle(void *p);
bool	vmmc_small_owns(const void *p);
/* The block holding p: its base and the size allocated (not the class's
 * rounded size); VMM_ENOTOURS past that size. */
int	vmmc_small_range(const void *p, void **base, size_t *size);
/* Returns the calling thread's cached blocks to their segments (other
 * threads' caches are theirs: per size class at most 4 MiB and 128 blocks,
 * SMALL_BIN_BYTES and SMALL_BIN_MAX in small.c; freed blocks spill back
 * once a thread holds 32 MiB, SMALL_TC_BYTES). */
void	vmmc_small_flush_mine(void);
/* Returns the calling thread's cached blocks of device dev, of the size
 * classes it has not allocated from since its previous call (one at which
 * it had allocated since the one before) and of which it caches at least
 * a segment's worth or a full bin, to their segments (a second chance: a
 * class in use keeps its blocks).  Never with that cache's lock held
 * (small.c's refill holds it). */
void	vmmc_small_flush_cold(int dev);
/* Returns the cached blocks of every thread not using its cache right now
 * (idle return, from the helper thread). */
void	vmmc_small_flush_idle(void);
/* Registers what runs before the small heap asks vmmd for a new segment
 * (one chunk of unit bytes) of device dev, with the calling thread's cache
 * lock held: idle(dev, unit) says (a cheap look, no lock) whether the
 * process holds idle memory that could go back instead; if so, vmmd is
 * asked for idle memory only (Acquire.no_create), and where it would have
 * to create, before(dev, unit) gives such memory back and vmmd is asked
 * again (client.c: the medium heap's idle one-unit pages). */
void	vmmc_small_on_acquire(uint64_t (*idle)(int dev, uint64_t unit),
	    void (*before)(int dev, uint64_t unit));
/* Returns empty segments' chunks to vmmd; bytes given back. */
uint64_t vmmc_small_trim(uint64_t recall_id);
/* The same for device dev's segments only (before new memory is asked of
 * its vmmd: client.c). */
uint64_t vmmc_small_trim_dev(int dev);
/* Largest size sub-allocated (VMM_SMALL_MAX as in effect). */
uint64_t vmmc_small_max(void);
/* In-use bytes, counts and free bytes of the small allocator. */
void	vmmc_small_usage(int64_t *in_use, uint64_t *allocs, uint64_t *frees,
	    uint64_t *free_bytes);
/* As vmmc_large_chunks / vmmc_large_set_ids, for segments. */
size_t	vmmc_small_chunks(int dev, struct vmmc_mapped_chunk *out, size_t max);
void	vmmc_small_set_ids(int dev, const struct vmmc_mapped_chunk *v, size_t n);
void	vmmc_small_forget_all(void);
/* As vmmc_large_ipc for a small block: its segment's chunk, the block's
 * offset in it and its size. */
int	vmmc_small_ipc(const void *p, int *dev, uint64_t *chunk_id,
	    uint64_t *off, uint64_t *size);

/* ---- ipc.c ------------------------------------------------------------------ */

/* The memory this process opened (an import) holding ptr: its base and
 * size (the chunks mapped).  VMM_ENOTOURS if none. */
int	vmmc_ipc_range(const void *ptr, void **base, size_t *size);
void	vmmc_ipc_forget_all(void);	/* fork child */


#endif
