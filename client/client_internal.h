/*
 * libvmm_client internals: one header, a section per file.
 *
 *   client.c    the public API (vmm_client.h), out-of-memory retry, fork
 *   helper.c    the helper thread: recalls, idle return, usage reports
 *   adopt.c     Adopt toward a new daemon instance (conn.c's hook)
 *   large.c     chunk-backed allocations: map back to back, cache, resize
 *   small.c     sub-allocation by size class with per-thread caches
 *   va.c        virtual address reservations and a coalescing range allocator
 *   conn.c      the connection to vmmd: handshake, calls, pushes, reconnect
 *   core.c      counters, lazy sync tickets, mapping, waking the helper
 *   settings.c  the VMM_* environment table, read once
 *
 * Calls go down that list, never up: client.c and helper.c call the
 * allocators, which call va.c, conn.c and core.c; adopt.c calls the
 * allocators and conn.c, and conn.c reaches it only through the hook
 * client.c registers (tests/arch checks that no two files call each other
 * both ways).
 *
 * The shim (shim/) sees only the "for the shim" section.
 */
#ifndef VMM_CLIENT_INTERNAL_H
#define VMM_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "opt.h"
#include "vmm_client.h"

/* ---- for the shim ---------------------------------------------------------- */

enum vmm_mode {
	VMM_MODE_VMM = 0,	/* allocate from vmmd */
	VMM_MODE_MONITOR = 1,	/* pass through to CUDA, log ALLOC/FREE only */
};

struct vmm_settings {
	int		mode;		/* enum vmm_mode */
	uint64_t	reserve_mb;	/* VA per reservation; 0: auto */
	double		frag_ratio;
	int		log_level;
	char		log_file[VMM_OPT_STRMAX];
	char		socket_dir[VMM_OPT_STRMAX];
	bool		require_daemon;
	uint64_t	small_max;	/* largest sub-allocated size */
	uint64_t	cache_max;	/* bytes of freed chunks kept */
	uint64_t	idle_ms;	/* cache given back after this idle time */
	uint64_t	report_ms;	/* usage reported at most this often */
	double		va_headroom;	/* VA left after large allocations */
	uint64_t	connect_timeout_ms;
	char		daemon_user[VMM_OPT_STRMAX];	/* may run vmmd */
};

/* The settings, read from the environment on first call.  An invalid value
 * prints one line naming the variable and the accepted values, then exits:
 * the only way this library ever ends the application. */
const struct vmm_settings *vmm_settings_get(void);

/* Whether ptr is the start of a live allocation of this library (what
 * vmm_free accepts); lock-free for sub-allocated blocks. */
bool	vmm_client_owns(const void *ptr);
/* Whether ptr lies in address space this library reserved (live or not). */
bool	vmm_client_in_va(const void *ptr);

/* ---- settings.c ----------------------------------------------------------- */

extern const struct vmm_opt	vmm_client_options[];
extern const size_t		vmm_client_noptions;

/* ---- conn.c ----------------------------------------------------------------- */

#include <cuda.h>
#include <pthread.h>

#define VMM_MAX_DEVICES 16

struct vmm_conn;

/* One chunk of a grant, as received. */
struct vmm_grant_chunk {
	uint64_t	id;
	uint64_t	size;
	int		fd;	/* the caller closes it */
};

/* The connection for device dev (opened lazily), or NULL. */
struct vmm_conn *vmm_conn_get(int dev);
/* Asks for bytes; fills up to max chunks.  Returns the count or a VMM_E*
 * code. */
int	vmm_conn_acquire(struct vmm_conn *c, uint64_t bytes, unsigned flags,
	    uint64_t min_piece, struct vmm_grant_chunk *out, size_t max);
/* Gives chunks back (recall_id: the Recall answered, or 0) without waiting
 * for vmmd's answer; 0 once sent, or VMM_ENODAEMON. */
int	vmm_conn_release(struct vmm_conn *c, const uint64_t *ids, size_t n,
	    uint64_t recall_id);
/* Makes sure c is connected; 0 or VMM_ENODAEMON. */
int	vmm_conn_ensure(struct vmm_conn *c);
/* Sends the usage figures; recall_id: the Recall they close (0: none). */
int	vmm_conn_report(struct vmm_conn *c, const struct vmm_usage *u,
	    uint64_t recall_id);
uint64_t vmm_conn_granularity(struct vmm_conn *c);
int	vmm_conn_fd(struct vmm_conn *c);
/* Reads pushes (Recall, Goodbye) that arrived; returns a recall target in
 * bytes (0: none) and its id. */
uint64_t vmm_conn_poll(struct vmm_conn *c, uint64_t *recall_id);
/* Sends one Adopt batch (fds taken), connection locked; fills ids (0 for a
 * chunk vmmd refused). */
int	vmm_conn_adopt_locked(struct vmm_conn *c, const uint64_t *sizes,
	    int *fds, size_t n, uint64_t *ids);
/* Registers what a reconnect toward a new daemon instance runs, connection
 * locked (client.c: vmm_adopt_all). */
void	vmm_conn_on_new_daemon(int (*fn)(struct vmm_conn *c, int dev));
/* Forgets every connection without a word to vmmd (fork child). */
void	vmm_conn_forget_all(void);
/* Waits until vmmd has handled everything sent on every open connection
 * (one round trip each), so that other processes see the releases. */
void	vmm_conn_sync_all(void);
/* Closes every connection (shutdown). */
void	vmm_conn_close_all(void);
/* Device memory as vmmd sees it for this client (free, total). */
int	vmm_conn_meminfo(struct vmm_conn *c, uint64_t *free_bytes,
	    uint64_t *total);

/* ---- va.c ---------------------------------------------------------------------- */

/* Reserves size bytes of device VA aligned to align (a power of two). */
int	vmm_va_alloc(int dev, uint64_t size, uint64_t align, CUdeviceptr *out);
/* Returns a range to the free list. */
void	vmm_va_free(int dev, CUdeviceptr base, uint64_t size);
/* Takes [base, base+size) if it is free; 0 on success. */
int	vmm_va_take(int dev, CUdeviceptr base, uint64_t size);
uint64_t vmm_va_reserved(void);
/* Whether addr lies in one of our reservations (any device). */
bool	vmm_va_contains(CUdeviceptr addr);
/* Drops all VA bookkeeping (fork child). */
void	vmm_va_forget_all(void);

/* ---- core.c ---------------------------------------------------------------- */

/* Lazy synchronization: a free records vmm_sync_ticket(); memory freed with
 * ticket t may be reused or unmapped once vmm_sync_covers(t). */
uint64_t vmm_sync_ticket(void);
bool	vmm_sync_covers(uint64_t ticket);
/* Synchronizes the current context unless ticket is already covered. */
int	vmm_sync_for(uint64_t ticket);
/* The device of the calling thread's current context, or VMM_ENOCTX. */
int	vmm_current_device(void);
/* Process-wide counters (atomics). */
void	vmm_stat_add(int which, int64_t delta);
int64_t	vmm_stat_get(int which);
enum {
	VMM_STAT_IN_USE, VMM_STAT_MAPPED, VMM_STAT_CACHED, VMM_STAT_ALLOCS,
	VMM_STAT_FREES, VMM_STAT_DAEMON_CALLS, VMM_STAT_SYNCS, VMM_STAT_N
};
/* Maps granted chunks back to back at va (imports, closes the fds, one
 * cuMemSetAccess).  On failure nothing stays mapped; the chunks are still
 * the caller's to release. */
int	vmm_map_chunks(int dev, CUdeviceptr va, struct vmm_grant_chunk *g,
	    size_t n);
/* Grants device dev read-write access to [va, va+size) (whole mappings). */
int	vmm_set_access_rw(int dev, CUdeviceptr va, uint64_t size);
/* Unmaps [va, va+size) (whole mappings). */
void	vmm_unmap_range(CUdeviceptr va, uint64_t size);
/* The helper's wake-up pipe: created by the helper (its read end, or -1),
 * written by vmm_wake() (a Recall arrived). */
int	vmm_wake_open(void);
void	vmm_wake(void);
/* Asks the helper to report usage now (the cache grew a lot): vmmd then
 * knows this memory can be recalled for others.  vmm_report_due() takes
 * the request. */
void	vmm_report_soon(void);
bool	vmm_report_due(void);
/* Resets counters and the pipe (fork child). */
void	vmm_core_forget(void);

/* ---- helper.c -------------------------------------------------------------- */

/* Starts the helper thread when device dev is first used. */
void	vmm_helper_touch(int dev);
/* This process's usage figures (peak as sampled by reports and queries). */
void	vmm_usage_fill(struct vmm_usage *u);
void	vmm_helper_forget(void);	/* fork child */

/* ---- adopt.c --------------------------------------------------------------- */

/* One chunk this process maps, and its id at vmmd (0: none). */
struct vmm_mapped_chunk {
	CUdeviceptr	va;
	uint64_t	size;
	uint64_t	id;
};

/* Tells the new vmmd instance behind c what this process maps of device
 * dev, connection locked; ids updated.  0 or a VMM_E* code. */
int	vmm_adopt_all(struct vmm_conn *c, int dev);

/* ---- large.c ---------------------------------------------------------------- */

int	vmm_large_alloc(int dev, size_t size, void **out);
int	vmm_large_free(void *p);
int	vmm_large_realloc(void **p, size_t size);
bool	vmm_large_owns(const void *p);
int	vmm_large_range(const void *p, void **base, size_t *size);
/* Gives cached memory back to vmmd: at least target bytes (0: all), only
 * entries idle for older_ms or more, answering Recall recall_id (or 0).
 * Returns bytes given back. */
uint64_t vmm_large_trim(uint64_t target, uint64_t older_ms,
	    uint64_t recall_id);
/* Copies the chunks of dev that large allocations map, up to max; returns
 * how many there are (call again with more room if that is more). */
size_t	vmm_large_chunks(int dev, struct vmm_mapped_chunk *out, size_t max);
/* Sets the ids of those chunks still mapped where they were. */
void	vmm_large_set_ids(int dev, const struct vmm_mapped_chunk *v, size_t n);
void	vmm_large_forget_all(void);

/* ---- small.c ---------------------------------------------------------------- */

int	vmm_small_alloc(int dev, size_t size, void **out);
/* VMM_ENOTOURS if p is not a small block. */
int	vmm_small_free(void *p);
bool	vmm_small_owns(const void *p);
int	vmm_small_range(const void *p, void **base, size_t *size);
/* Returns the calling thread's cached blocks to their segments (other
 * threads' caches are theirs: per size class at most 4 MiB and 128 blocks,
 * SMALL_BIN_BYTES and SMALL_BIN_MAX in small.c; freed blocks spill back
 * once a thread holds 32 MiB, SMALL_TC_BYTES). */
void	vmm_small_flush_mine(void);
/* Returns the cached blocks of every thread not using its cache right now
 * (idle return, from the helper thread). */
void	vmm_small_flush_idle(void);
/* Returns empty segments' chunks to vmmd; bytes given back. */
uint64_t vmm_small_trim(uint64_t recall_id);
/* Largest size sub-allocated (VMM_SMALL_MAX as in effect). */
uint64_t vmm_small_max(void);
/* In-use bytes, counts and free bytes of the small allocator. */
void	vmm_small_usage(int64_t *in_use, uint64_t *allocs, uint64_t *frees,
	    uint64_t *free_bytes);
/* As vmm_large_chunks / vmm_large_set_ids, for segments. */
size_t	vmm_small_chunks(int dev, struct vmm_mapped_chunk *out, size_t max);
void	vmm_small_set_ids(int dev, const struct vmm_mapped_chunk *v, size_t n);
void	vmm_small_forget_all(void);


#endif
