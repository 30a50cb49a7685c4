/*
 * vmmd: the per-GPU memory broker.  One internal header, a section per file;
 * file names are the architecture:
 *
 *   main.c     command line, start-up, the event loop, signals
 *   config.c   the settings table, config file, quotas
 *   server.c   the listening socket, accept, limits, socket activation
 *   session.c  one client connection: framing, the state machine, replies
 *   dispatch.c what each request does: one switch, one handler per type
 *   policy.c   grants, recalls and parked requests (the out-of-memory policy)
 *   pool.c     the chunk pool: create, grant (fit / stitch / create), release,
 *              quarantine, scrub, idle return, OOM recovery
 *   tenant.c   who may get back memory another holder released
 *   ipc.c      legacy CUDA IPC: exports, imports and their holds on chunks
 *   vaplan.c   the address plan: the VA ranges each client reserves
 *   stats.c    counters and the admin replies
 *   notify.c   sd_notify: READY, STATUS, watchdog, STOPPING
 *   cgroup.c   which cgroup and container a client is in
 *   metrics.c  the optional HTTP /metrics endpoint (calls stats.c)
 *   export.c   the exported fd of each chunk, kept for its next grants
 *   closer.c   closing peers' fds and session sockets off the loop
 *   worker.c   the slow driver calls (large creates and releases) off the loop
 *
 * Calls go one way (tests/arch checks that no two files call each other):
 * main.c and server.c start sessions; dispatch.c calls policy.c, session.c,
 * pool.c and stats.c; policy.c calls session.c and pool.c; session.c calls
 * pool.c and reaches dispatch.c and policy.c only through the two hooks
 * dispatch.c registers (vmmd_session_set_handlers); dispatch.c and
 * session.c call ipc.c, which calls pool.c only; main.c, dispatch.c,
 * session.c and stats.c call vaplan.c, which calls none.  pool.c, tenant.c,
 * config.c and closer.c call no other file of vmmd but each other's leaves
 * (export.c is one of pool.c's);
 * pool.c hands slow driver calls to worker.c, which calls nothing back but
 * the completion function pointer of each job.
 */
#ifndef VMMD_H
#define VMMD_H

#include <cuda.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "clock.h"
#include "figures.h"
#include "frame.h"
#include "opt.h"

#define VMMD_VERSION "0.1.0"

struct vmmd_session;

/* ---- config.c ------------------------------------------------------------- */

/* Sessions kept for admins (root, admin_group): other peers are refused
 * once max_sessions less these are taken, so that vmmctl still gets in when
 * clients have filled the rest. */
#define VMMD_ADMIN_SESSIONS	4

enum vmmd_scrub {
	VMMD_SCRUB_CROSS_TENANT, /* zero a chunk before another tenant gets it */
	VMMD_SCRUB_ALWAYS,
	VMMD_SCRUB_NEVER,
	VMMD_SCRUB_CROSS_UID,	/* the old name of CROSS_TENANT */
};

enum vmmd_tenant_kind {
	VMMD_TENANT_UID,	/* a tenant is a uid */
	VMMD_TENANT_UID_CGROUP,	/* a uid and a cgroup */
};

enum vmmd_cross_tenant {
	VMMD_CROSS_RECREATE,	/* through the driver: destroy, create */
	VMMD_CROSS_REUSE,	/* pooled chunks cross tenants (scrub applies) */
};

enum vmmd_quota_kind {
	VMMD_QUOTA_UID = 1,
	VMMD_QUOTA_NAME = 2,
	VMMD_QUOTA_CGROUP = 3,
};

/* The largest uid a quota may name: (uid_t)-1 is no one's. */
#define VMMD_QUOTA_UID_MAX	4294967294u

/* Quotas by (kind, key): a hash table, so that loading many and looking
 * one up cost no walk over all of them.  A uid's key is its decimal value
 * without leading zeros. */
struct vmmd_quota;
struct vmmd_quotas {
	struct vmmd_quota	**bucket;
	size_t			nbuckets;	/* 0, or a power of two */
	size_t			n;
};

struct vmmd_config {
	char		device[VMM_OPT_STRMAX];
	char		socket_dir[VMM_OPT_STRMAX];
	char		socket_group[VMM_OPT_STRMAX];
	char		admin_group[VMM_OPT_STRMAX];
	char		ipc_group[VMM_OPT_STRMAX];
	int		log_level;
	char		log_file[VMM_OPT_STRMAX];
	char		metrics_listen[VMM_OPT_STRMAX];	/* "" = off */
	uint64_t	pool_max;		/* bytes; 0 = the device */
	uint64_t	chunk_multiple;		/* chunk sizes: granularity × this */
	double		frag_ratio;
	uint64_t	max_pieces;
	int		scrub;			/* enum vmmd_scrub */
	int		tenant;			/* enum vmmd_tenant_kind */
	int		cross_tenant;		/* enum vmmd_cross_tenant */
	uint64_t	idle_timeout_ms;
	uint64_t	idle_floor;		/* idle bytes the pool may keep */
	bool		swap_idle;		/* growth gives idle back */
	uint64_t	max_sessions;
	uint64_t	max_sessions_per_uid;
	uint64_t	max_queue_bytes;	/* per-session output bound */
	uint64_t	handshake_timeout_ms;
	uint64_t	recall_idle_ms;		/* reuse-first recalls: idle peers */
	uint64_t	recall_timeout_ms;	/* how long a parked Acquire waits */
	uint64_t	recall_backoff_ms;	/* no wait after a fruitless one */
	struct vmmd_quotas quotas;
};

extern const struct vmm_opt	vmmd_options[];
extern const size_t		vmmd_noptions;

/* Defaults, then the file (if path is not NULL).  err names what is wrong. */
int	vmmd_config_load(struct vmmd_config *c, const char *path, char *err,
	    size_t errlen);
void	vmmd_config_free(struct vmmd_config *c);
/* Parses a quota's uid: decimal digits only (no sign, no blank), 0 to
 * VMMD_QUOTA_UID_MAX.  0, or -1 if s is not one. */
int	vmmd_quota_uid(const char *s, uid_t *uid);
/* Sets (bytes > 0) or removes (0) a quota.  -1 with errno EINVAL for a bad
 * key (a uid as vmmd_quota_uid takes; else 1 to VMM_PROTO_MAX_QUOTA_KEY
 * bytes), ENOMEM when out of memory. */
int	vmmd_quota_set(struct vmmd_config *c, enum vmmd_quota_kind kind,
	    const char *key, uint64_t bytes);
/* The quota of one key of one kind ("1000" for a uid); 0 if none. */
uint64_t vmmd_quota_get(const struct vmmd_config *c, enum vmmd_quota_kind kind,
	    const char *key);
/* The quota for a peer: the smallest of its uid's, name's and cgroup's; 0 if
 * none applies. */
uint64_t vmmd_quota_for(const struct vmmd_config *c, uid_t uid,
	    const char *name, const char *cgroup);

/* ---- stats.c -------------------------------------------------------------- */

/* The counters are declared with the pool figures, once, in
 * proto/figures.h (VMM_COUNTERS); vmmd_stats.<name>++ counts one. */
struct vmmd_counters {
#define VMMD_COUNTER_FIELD(name, help) uint64_t name;
	VMM_COUNTERS(VMMD_COUNTER_FIELD)
#undef VMMD_COUNTER_FIELD
};

extern struct vmmd_counters vmmd_stats;

/* The reply to a StatsRequest (full) or a ClientsRequest (sessions only),
 * with the sessions from offset on; valid until the next call. */
const Vmm__Envelope *vmmd_stats_reply(uint64_t rid, uint32_t offset,
	    bool full);
/* The Prometheus exposition of the stats and every session to f
 * (proto/metrics.h).  0, or -1 with errno set. */
int	vmmd_stats_metrics(FILE *f);

/* ---- metrics.c ------------------------------------------------------------- */

/* Serve GET /metrics on listen ("ADDRESS:PORT"; "" = off) on vmmd_base.
 * 0, or -1 with err set. */
int	vmmd_metrics_start(const char *listen, char *err, size_t errlen);
void	vmmd_metrics_stop(void);
/* Splits "127.0.0.1:9477" or "[::1]:9477"; -1 if s is not one. */
int	vmmd_metrics_parse(const char *s, char *host, size_t hostlen,
	    uint16_t *port);

/* ---- pool.c ----------------------------------------------------------------- */

enum vmmd_chunk_state {
	VMMD_CHUNK_FREE,
	VMMD_CHUNK_LENT,
	VMMD_CHUNK_QUARANTINED,	/* holder's socket closed, process alive */
	/* Its holder gave it back, but IPC importers still map it (ipc_holds
	 * > 0): neither free nor lent, it returns once the last one lets go. */
	VMMD_CHUNK_IPC_HELD,
};

struct vmmd_session;

struct vmmd_holder;

/* An entry of one of pool.c's hash tables: the next in its chain, and
 * its key. */
struct vmmd_hnode {
	struct vmmd_hnode		*next;
	uint64_t			key;
};

struct vmmd_chunk {
	uint64_t			id;
	CUmemGenericAllocationHandle	handle;
	uint64_t			size;
	enum vmmd_chunk_state		state;
	struct vmmd_holder		*holder;	/* LENT, QUARANTINED */
	/* The tenant of its last holder (a reference); NULL if never lent.
	 * It goes back only to that tenant (tenant.c). */
	struct vmmd_tenant		*tenant;
	/* Taken over by Adopt: others may still map it with fds vmmd never
	 * saw, so it is never lent again; released, it goes to the GPU. */
	bool				adopted;
	/* Named by the Release being checked (dispatch.c): a second mention
	 * is a duplicate.  Set only within one session_release call. */
	bool				releasing;
	/* The kernel object behind its exported fds (st_dev, st_ino), once
	 * known, where that names the allocation (pool.c, pool_identity). */
	bool				keyed;
	dev_t				key_dev;
	ino_t				key_ino;
	/* Its exported fd, kept for the next grants (export.c). */
	bool				xkept;
	int				xfd;
	TAILQ_ENTRY(vmmd_chunk)		xlink;	/* export.c's list, if xkept */
	uint64_t			idle_since_ms;
	/* FREE: its place in the order chunks entered the free list (pool.c:
	 * a bin, newest first, is in decreasing order of it). */
	uint64_t			free_seq;
	/* Legacy IPC (ipc.c): importers that map it now; the lease, bumped
	 * each time its holder gives it back, so an export made before
	 * cannot be opened after; whether an importer of another tenant
	 * ever mapped it (then it goes to the GPU when it comes back). */
	unsigned			ipc_holds;
	uint64_t			lease;
	bool				ipc_foreign;
	/* Its last holder's process is gone (not merely its socket closed),
	 * whether it still held it or had given it back: memory no running
	 * process caches.  Cleared when it is lent. */
	bool				orphan;
	uint64_t			last_holder;	/* its id (0: none) */
	TAILQ_ENTRY(vmmd_chunk)		link;	/* free bin or holder's list */
	TAILQ_ENTRY(vmmd_chunk)		alink;	/* free chunks by age (FREE) */
	/* FREE: the lists of free chunks it is on in pool.c's groups (by
	 * tenant and size, by last holder), if entered there; NULL
	 * otherwise. */
	struct pool_group		*grp[2];
	TAILQ_ENTRY(vmmd_chunk)		glink[2];
	TAILQ_ENTRY(vmmd_chunk)		olink;	/* free orphans by age */
	struct vmmd_hnode		hid;	/* in the id hash */
	struct vmmd_hnode		hkey;	/* in the key hash, if keyed */
};

TAILQ_HEAD(vmmd_chunk_list, vmmd_chunk);

/* The pool's ledger of one holder (a session): what it is lent, and the
 * tenant that may get back what it releases.  The pool reads and writes
 * this, never the session around it. */
struct vmmd_holder {
	uint64_t		id;	/* its session's (never 0) */
	struct vmmd_chunk_list	held;
	uint64_t		chunks, bytes, peak;
	struct vmmd_tenant	*tenant;	/* a reference */
	/* Sums the pool moves with bytes (NULL: none): what all holders of
	 * its uid, cgroup and client name hold, for the quotas (session.c
	 * owns them). */
	uint64_t		*usage[3];
};

struct vmmd_pool_totals {
	uint64_t	physical, lent, idle, quarantined;
	uint64_t	ipc_held;	/* bytes in VMMD_CHUNK_IPC_HELD */
	uint64_t	chunks, chunks_lent;
	/* High-water marks, exact, since start or vmmd_pool_reset_marks. */
	uint64_t	peak_physical, peak_lent;
};

/* Initialises CUDA for the configured device and the pool.  err says why
 * not. */
int	vmmd_pool_init(const struct vmmd_config *c, char *err, size_t errlen);
void	vmmd_pool_shutdown(void);
/* Chunk sizes are multiples of this: the granularity × chunk_multiple. */
uint64_t vmmd_pool_chunk_unit(void);
/* bytes rounded up to the chunk unit: what a grant of bytes lends. */
uint64_t vmmd_pool_round(uint64_t bytes);
uint64_t vmmd_pool_device_total(void);
/* What the GPU has free (vmmd's own accounting; never a driver call). */
uint64_t vmmd_pool_device_free(void);
/* Asks the driver for its free figure (off the request path). */
void	vmmd_pool_refresh_free(void);
/* The high-water marks restart from the current values. */
void	vmmd_pool_reset_marks(void);
int	vmmd_pool_device_ordinal(void);
const unsigned char *vmmd_pool_device_uuid(void);	/* 16 bytes */
void	vmmd_pool_totals(struct vmmd_pool_totals *t);

/* Internal grant flag (not on the wire): return VMMD_POOL_WOULD_CREATE
 * instead of creating memory. */
#define VMMD_GRANT_NO_CREATE		(1u << 31)
/* Acquire.exact: one chunk of exactly the size asked (no slack, no
 * stitch). */
#define VMMD_GRANT_EXACT		(1u << 30)
/* Acquire.partial: where the grant's pieces all went to idle chunks and
 * the rest would be created (or refused, NO_CREATE), lend them short of
 * the request instead. */
#define VMMD_GRANT_PARTIAL		(1u << 29)

/* vmmd_pool_grant's failures. */
enum {
	VMMD_POOL_FAILED = -1,		/* *code and msg say why */
	VMMD_POOL_WOULD_CREATE = -2,	/* VMMD_GRANT_NO_CREATE and short */
	VMMD_POOL_CREATING = -3,	/* vmmd_pool_grant_async: cb later */
};

/* The end of a grant that had to wait for a create on the worker: n and
 * out as vmmd_pool_grant's return and out; code and msg when n < 0. */
typedef void	vmmd_pool_granted_fn(void *arg, int n, struct vmmd_chunk **out,
		    int code, const char *msg);

/* Grants at least bytes to h: up to max chunks into out, lent to h.
 * min_piece: smallest free chunk worth stitching (0: frag_ratio × bytes).
 * Quotas are the caller's.  Returns the number of chunks, or one of the
 * VMMD_POOL_* failures. */
int	vmmd_pool_grant(struct vmmd_holder *h, uint64_t bytes, unsigned flags,
	    uint64_t min_piece, struct vmmd_chunk **out, size_t max, int *code,
	    char *msg, size_t msglen);
/* vmmd_pool_grant, except that a large create runs on the worker thread:
 * then it returns VMMD_POOL_CREATING and calls cb(arg, ...) from the loop
 * once the grant is done or failed — unless h's holder is closed or gone
 * first (vmmd_pool_holder_closed/_gone), and then never.  The chunks
 * picked for it meanwhile are neither free nor lent: no one else gets
 * them. */
int	vmmd_pool_grant_async(struct vmmd_holder *h, uint64_t bytes,
	    unsigned flags, uint64_t min_piece, struct vmmd_chunk **out,
	    size_t max, int *code, char *msg, size_t msglen,
	    vmmd_pool_granted_fn *cb, void *arg);
/* Acquire.up_to: lends h the smallest free chunk of bytes (rounded to the
 * unit) up to up_to that h may use, idle memory rather than new (the
 * client maps all of it).  1 (out[0]), 0 when there is none (nothing
 * changed), or VMMD_POOL_FAILED (*code and msg). */
int	vmmd_pool_grant_within(struct vmmd_holder *h, uint64_t bytes,
	    uint64_t up_to, struct vmmd_chunk **out, int *code, char *msg,
	    size_t msglen);
/* Exports a chunk as a new POSIX fd for one grant; -1 on failure. */
int	vmmd_pool_export(struct vmmd_chunk *ch);
enum vmmd_adopt {
	VMMD_ADOPT_OK,
	VMMD_ADOPT_DUPLICATE,	/* memory vmmd already tracks */
	VMMD_ADOPT_FOREIGN,	/* not a chunk of this GPU of that size */
	VMMD_ADOPT_UNKNOWN,	/* vmmd cannot tell this memory apart yet */
};

/* Takes a chunk a client still maps from a previous daemon (fd not taken)
 * as lent to who, with a new id, unless vmmd already tracks that memory. */
enum vmmd_adopt vmmd_pool_adopt(struct vmmd_holder *who, int fd, uint64_t size,
	    uint64_t *id);
/* Moves every chunk of from (a closed session of the same process) to to,
 * ids unchanged: a session resumed after a reconnect. */
void	vmmd_pool_transfer(struct vmmd_holder *from, struct vmmd_holder *to);
/* Undoes a grant whose reply could not be sent: the chunks go back. */
void	vmmd_pool_ungrant(struct vmmd_chunk **chunks, size_t n);
/* The chunk with this id if h holds it. */
struct vmmd_chunk *vmmd_pool_held(struct vmmd_holder *h, uint64_t id);
/* Returns a chunk its holder released, or whose holder is gone, to the
 * pool; to the GPU instead during a drain. */
void	vmmd_pool_release(struct vmmd_chunk *ch);
/* For ms from now, released chunks go back to the GPU, not to the pool,
 * until bytes are given back (0: no limit) — after a trim that recalled
 * the clients' caches. */
void	vmmd_pool_drain(uint64_t ms, uint64_t bytes);
/* An IPC importer maps ch (foreign: of another tenant than its holder's):
 * it may not go back to the pool until vmmd_pool_ipc_unhold. */
void	vmmd_pool_ipc_hold(struct vmmd_chunk *ch, bool foreign);
/* That importer let go; the last one returns a chunk its holder gave back
 * (to the GPU if a foreign importer ever held it). */
void	vmmd_pool_ipc_unhold(struct vmmd_chunk *ch);
/* h's connection closed: its chunks come back, or are quarantined while
 * its process lives (process_alive). */
void	vmmd_pool_holder_closed(struct vmmd_holder *h, bool process_alive);
/* h's process is gone: its quarantined chunks come back. */
void	vmmd_pool_holder_gone(struct vmmd_holder *h);
/* Gives idle chunks back to the GPU until target bytes are released (0 = all
 * idle beyond keep).  Returns bytes released. */
uint64_t vmmd_pool_trim(uint64_t target, uint64_t keep);
/* Releases chunks idle for longer than the idle timeout, beyond what the
 * pool keeps (vmmd_pool_keep). */
void	vmmd_pool_idle_tick(void);
/* Idle bytes the pool keeps now: what was granted within the last idle
 * timeout, at least idle_floor. */
uint64_t vmmd_pool_keep(void);

/* ---- cgroup.c ---------------------------------------------------------------- */

/* The cgroup naming pid (its v2 path; on a hybrid host whose v2 paths are
 * all "/", its name=systemd, memory or pids path), or "" if unreadable or
 * longer than outlen - 1. */
void	vmmd_cgroup_of(pid_t pid, char *out, size_t outlen);
/* The same from the text of a /proc/<pid>/cgroup file. */
void	vmmd_cgroup_parse(const char *text, char *out, size_t outlen);
/* The container id in a cgroup path (64 hex digits, bare or as
 * <runtime>-<id>.scope), or "". */
void	vmmd_container_id(const char *cgroup, char *out, size_t outlen);

/* ---- ipc.c ------------------------------------------------------------------- */

struct vmmd_ipc_export;
struct vmmd_ipc_import;
TAILQ_HEAD(vmmd_ipc_export_list, vmmd_ipc_export);
TAILQ_HEAD(vmmd_ipc_import_list, vmmd_ipc_import);

/* A session's side of legacy IPC (ipc.c reads and writes it). */
struct vmmd_ipc_side {
	struct vmmd_ipc_export_list	exports;
	struct vmmd_ipc_import_list	imports;
	uint64_t			nexports, nimports;
	/* The chunks its exports name and its imports hold, summed. */
	uint64_t			export_chunks, import_chunks;
	uint64_t			imported_bytes;	/* of the imports' chunks */
};

/* Exports and imports one session may have at once, and the chunks they
 * may name in all (each hit counted in ipc_limits): an export or import
 * costs vmmd 16 or 8 bytes a chunk, so one session's ledger stays under a
 * megabyte whatever it asks. */
#define VMMD_IPC_MAX_EXPORTS	4096
#define VMMD_IPC_MAX_IMPORTS	4096
#define VMMD_IPC_MAX_EXPORT_CHUNKS	16384
#define VMMD_IPC_MAX_IMPORT_CHUNKS	16384

void	vmmd_ipc_init(struct vmmd_session *s);
/* Exports chunks s holds (ids: what the peer sent, checked here) that s
 * maps at addr (0: not said).  0 and the export's id and token, or an
 * ErrorCode with msg. */
int	vmmd_ipc_export(struct vmmd_session *s, const uint64_t *ids, size_t n,
	    uint64_t addr, uint64_t *id, uint64_t *token, char *msg,
	    size_t msglen);
/* Opens export id for s: its chunks into chs (VMM_PROTO_MAX_CHUNKS), each
 * now held by s, the import's id and the exporter's address (or 0).  0, or
 * an ErrorCode with msg. */
int	vmmd_ipc_open(struct vmmd_session *s, uint64_t id, uint64_t token,
	    struct vmmd_chunk **chs, size_t *n, uint64_t *import_id,
	    uint64_t *addr, char *msg, size_t msglen);
/* Ends import id of s (its holds go): 0, or -1 if s has no such import. */
int	vmmd_ipc_close(struct vmmd_session *s, uint64_t import_id);
/* s's socket closed: its exports end; its imports end too unless its
 * process lives (it may still map them: they go with vmmd_ipc_gone). */
void	vmmd_ipc_closed(struct vmmd_session *s, bool process_alive);
/* s's process is gone (or vmmd stops): everything of s ends. */
void	vmmd_ipc_gone(struct vmmd_session *s);
/* A session resumed: from's imports are to's now. */
void	vmmd_ipc_transfer(struct vmmd_session *from, struct vmmd_session *to);

/* ---- vaplan.c ---------------------------------------------------------------- */

/* The plan's window on GPU ordinal o: VMMD_VA_BASE + (o mod VMMD_VA_WINDOWS)
 * x VMMD_VA_WINDOW (README "Address plan" says why there). */
#define VMMD_VA_BASE		(32ull << 40)	/* 32 TiB */
#define VMMD_VA_WINDOW		(4ull << 40)	/* 4 TiB per GPU */
#define VMMD_VA_WINDOWS		8
/* Ranges one session may hold (each refusal counted). */
#define VMMD_VA_MAX_RANGES	VMM_PROTO_MAX_VA_RANGES

/* A session's side of the plan (vaplan.c reads and writes it). */
struct vmmd_va_side {
	uint32_t	nranges;
	uint64_t	bytes;
	uint64_t	hint_missed;	/* its reservations and IPC opens */
};

/* Sets the window for this GPU's ordinal (after the pool is up). */
void	vmmd_vaplan_init(int ordinal);
void	vmmd_vaplan_window(uint64_t *base, uint64_t *size);
/* Plans size bytes aligned to align (a power of two or 0) for s: 0 and
 * *addr (0 if the window is full: s reserves anywhere), or an ErrorCode
 * with msg (absurd size or alignment; s at VMMD_VA_MAX_RANGES). */
int	vmmd_vaplan_request(struct vmmd_session *s, uint64_t size,
	    uint64_t align, uint64_t *addr, char *msg, size_t msglen);
/* s reserved at addr what was planned at planned (ipc: an import mapped
 * away from its exporter's address): counted as a missed hint, and the
 * plan records where it went.  0, or an ErrorCode with msg. */
int	vmmd_vaplan_placed(struct vmmd_session *s, uint64_t planned,
	    uint64_t addr, uint64_t size, bool ipc, char *msg, size_t msglen);
/* After a restart: records s's reservations; accepted[i] false for one
 * overlapping a recorded range (any session's) or over the bound. */
void	vmmd_vaplan_claim(struct vmmd_session *s, const Vmm__VaRange *const *r,
	    size_t n, bool *accepted);
/* Whether s has ranges (its process may have them reserved). */
bool	vmmd_vaplan_held(const struct vmmd_session *s);
/* s's process is gone (or vmmd stops): its ranges are free. */
void	vmmd_vaplan_gone(struct vmmd_session *s);
/* A session resumed: from's ranges are to's now. */
void	vmmd_vaplan_transfer(struct vmmd_session *from, struct vmmd_session *to);
/* The admin view: every range from offset on; valid until the next call. */
const Vmm__Envelope *vmmd_vaplan_reply(uint64_t rid, uint32_t offset);
void	vmmd_vaplan_shutdown(void);

/* ---- export.c ---------------------------------------------------------------- */

/* A new fd of ch's allocation, for one grant (the caller owns it): a dup
 * of the fd kept from ch's first export, made and kept now if need be and
 * the fd budget allows.  Returns the driver's error, or
 * CUDA_ERROR_OPERATING_SYSTEM if the dup failed. */
CUresult vmmd_export_fd(struct vmmd_chunk *ch, int *fd);
/* Closes ch's kept fd, if any: before its handle is released, and before
 * it goes to another tenant. */
void	vmmd_export_forget(struct vmmd_chunk *ch);
/* Out of fds: closes every kept fd; returns how many. */
unsigned vmmd_export_shed(void);

/* ---- tenant.c ---------------------------------------------------------------- */

struct vmmd_tenant;

/* The tenant of (uid, cgroup) under the tenant setting, a new reference;
 * NULL if out of memory. */
struct vmmd_tenant *vmmd_tenant_get(uid_t uid, const char *cgroup);
struct vmmd_tenant *vmmd_tenant_ref(struct vmmd_tenant *t);
void	vmmd_tenant_put(struct vmmd_tenant *t);	/* NULL is fine */
/* A session of t counted from bytes cached to to (session.c keeps it). */
void	vmmd_tenant_cached_move(struct vmmd_tenant *t, uint64_t from,
	    uint64_t to);
/* The cached bytes t's ready app sessions last reported, summed; with t
 * NULL, of all tenants.  O(1): policy.c's bound before any walk. */
uint64_t vmmd_tenant_cached(const struct vmmd_tenant *t);

/* ---- session.c --------------------------------------------------------------- */

enum vmmd_session_state {
	VMMD_SESSION_NEW,	/* connected, no Hello yet */
	VMMD_SESSION_READY,
	VMMD_SESSION_CLOSED,	/* socket gone; kept while chunks are quarantined */
};

struct vmmd_session {
	uint64_t		id;
	int			fd;
	int			pidfd;
	pid_t			pid;
	uid_t			uid;
	gid_t			gid;
	bool			admin;
	bool			ipc_member;	/* in ipc_group (server.c) */
	enum vmmd_session_state	state;
	int			kind;		/* Vmm__ClientKind */
	char			name[VMM_PROTO_MAX_NAME + 1];
	char			cgroup[VMM_PROTO_MAX_QUOTA_KEY + 1];
	char			container[65];	/* id read from cgroup, or "" */
	uint64_t		connected_usec;
	struct event		*ev_read, *ev_write, *ev_pid, *ev_timeout;
	struct vmm_frame_reader	*rd;
	struct vmm_frame_outq	*oq;
	struct vmmd_holder	h;		/* the pool's ledger of it */
	struct vmmd_ipc_side	ipc;		/* ipc.c's ledger of it */
	struct vmmd_va_side	va;		/* vaplan.c's */
	uint32_t		proto;		/* its Hello's version */
	uint64_t		rep_in_use, rep_cached, rep_peak;
	/* Native bytes by path as last reported (Report fields 30..33):
	 * the client's figures, shown, never trusted for accounting. */
	uint64_t		rep_native[4];
	uint64_t		rep_app_vmm;	/* Report.app_vmm_bytes */
	/* What its tenant's cached sum counts for it: rep_cached while READY
	 * and an app, else 0 (vmmd_session_cached_sync). */
	uint64_t		cached_counted;
	uint64_t		last_acquire_ms;	/* vmm_now_ms() */
	/* An Acquire parked while other clients give back their caches. */
	struct {
		bool		active;
		uint64_t	rid, bytes, min_piece, deadline_ms;
		uint64_t	round;	/* the recalls it waits for */
		unsigned	flags;
		bool		reuse;	/* parked to reuse, not for lack */
	}			pend;
	/* An Acquire waiting for its create on the worker thread (policy.c;
	 * the pool drops it if the session closes first). */
	struct {
		bool		active;
		uint64_t	rid, bytes, min_piece;
		unsigned	flags;
		bool		may_wait, reuse;
	}			creating;
	/* The last Recall sent to this session and not yet closed by a
	 * Report (0: none), the park it serves and when it is overdue.  A
	 * session that lets one go overdue is not asked again (nor counted
	 * on) until recall_shun_until_ms: a stopped or lying client delays
	 * others once, not every time. */
	uint64_t		recall_out, recall_round, recall_due_ms;
	uint64_t		recall_shun_until_ms;
	bool			recall_heard;	/* a Release answered it */
	struct event		*ev_pend;
	TAILQ_ENTRY(vmmd_session) link;
	/* On vmmd_parked iff pend.active (policy.c parks, pend_clear ends). */
	TAILQ_ENTRY(vmmd_session) plink;
	/* On vmmd_recalled iff recall_out != 0 (vmmd_session_recall_out). */
	TAILQ_ENTRY(vmmd_session) rlink;
};

TAILQ_HEAD(vmmd_session_list, vmmd_session);

extern struct vmmd_session_list	vmmd_sessions;
/* The sessions with a parked Acquire, in vmmd_sessions' order (policy.c). */
extern struct vmmd_session_list	vmmd_parked;
/* The sessions with a Recall out (recall_out != 0), for the walks of a
 * round's recalls: they cost what was asked, not every session. */
extern struct vmmd_session_list	vmmd_recalled;
extern unsigned			vmmd_nsessions;	/* not CLOSED */

/* A pidfd for the peer process of socket sock, whose SO_PEERCRED pid is
 * pid (0: not visible in vmmd's pid namespace): SO_PEERPIDFD where the
 * kernel has it (Linux 6.5), else pidfd_open(pid).  -1 with errno (ESRCH:
 * already gone; a pid of 0 on a kernel without SO_PEERPIDFD: ENOTSUP). */
int	vmmd_session_pidfd(int sock, pid_t pid);
/* Takes over an accepted socket and the peer's pidfd (or -1 if the process
 * is gone); returns -1 (both closed) on failure. */
int	vmmd_session_new(int fd, int pidfd, pid_t pid, uid_t uid, gid_t gid,
	    bool admin, bool ipc_member);
/* Sends Goodbye to every session (daemon shutting down) and closes them. */
void	vmmd_session_shutdown_all(const char *why);
/* The sessions of uid vmmd keeps, open or quarantined, but for one
 * quarantined session of process pid (which may be coming back to resume
 * it): what max_sessions_per_uid bounds. */
unsigned vmmd_session_count_uid(uid_t uid, pid_t pid);
/* The smallest quota that applies to s now (0 = none). */
uint64_t vmmd_session_quota(const struct vmmd_session *s);
/* Bytes s may still be lent: a uid, cgroup or name quota counts what every
 * session of that uid, cgroup or name holds (quarantined memory included),
 * so more connections do not get more memory.  UINT64_MAX if no quota
 * applies; else why says which quota binds. */
uint64_t vmmd_session_quota_room(const struct vmmd_session *s, char *why,
	    size_t whylen);
/* Queues a message without fds for s; -1 if s had to be closed. */
int	vmmd_session_send(struct vmmd_session *s, const Vmm__Envelope *env);
/* Queues a message with fds (taken) and starts sending; -1 if the queue
 * would not take it (s is left open: the caller undoes, then closes). */
int	vmmd_session_queue(struct vmmd_session *s, const Vmm__Envelope *env,
	    int *fds, size_t nfds);
/* Answers request rid with an Error (counted); -1 if s had to be closed. */
int	vmmd_session_error(struct vmmd_session *s, uint64_t rid,
	    Vmm__ErrorCode code, const char *msg);
/* A protocol fault: the Error (best effort), then hang up. */
void	vmmd_session_fatal(struct vmmd_session *s, uint64_t rid,
	    Vmm__ErrorCode code, const char *msg);
/* Closes s's socket; its chunks come back or are quarantined. */
void	vmmd_session_close(struct vmmd_session *s, const char *why);
/* s takes over the chunks of session old_id if that was a session of the
 * same live process (same pid and uid); whether it did. */
bool	vmmd_session_resume(struct vmmd_session *s, uint64_t old_id);
/* Ends s's parked Acquire (its timer too). */
void	vmmd_session_pend_clear(struct vmmd_session *s);
/* Sets s->recall_out to id (0: none out), keeping vmmd_recalled. */
void	vmmd_session_recall_out(struct vmmd_session *s, uint64_t id);
/* s has its client name (Hello): its bytes count for that name's quota
 * from now on.  0, or -1 out of memory. */
int	vmmd_session_named(struct vmmd_session *s);
/* After a change of s's rep_cached, state or kind: its tenant's cached sum
 * (vmmd_tenant_cached) follows. */
void	vmmd_session_cached_sync(struct vmmd_session *s);
/* What reading a frame and memory coming back call (dispatch.c's). */
void	vmmd_session_set_handlers(void (*dispatch)(struct vmmd_session *,
	    struct vmm_frame_msg *), void (*memory_back)(void));
/* "; holders: pid P N MiB, ..." (the first four sessions that hold
 * memory), for logs and admins. */
void	vmmd_session_holders(char *buf, size_t len);

/* ---- dispatch.c ---------------------------------------------------------------- */

/* Registers the request handlers with session.c. */
void	vmmd_dispatch_init(void);

/* ---- policy.c ------------------------------------------------------------------ */

/* Grants s's Acquire, or parks it while others are recalled, or refuses. */
void	vmmd_policy_acquire(struct vmmd_session *s, const Vmm__Acquire *a);
/* Grants parked Acquires that now fit (after memory came back). */
void	vmmd_policy_retry(void);
/* Asks app sessions other than except for their cached memory (target 0:
 * all they report cached), skipping those that asked for memory within the
 * last idle_ms (0: none skipped) and, if same_tenant, those whose memory
 * could not be lent to except as it is.  round names the parked request
 * the recalls serve (0: none); a session that has not closed its Recall
 * within answer_ms is shunned for a while.  Returns how many were asked,
 * or still owe an answer to a Recall of the same round. */
unsigned vmmd_policy_recall(struct vmmd_session *except, uint64_t target,
	    int reason, uint64_t idle_ms, bool same_tenant, uint64_t round,
	    uint64_t answer_ms);

/* ---- server.c ----------------------------------------------------------------- */

/* Opens (or adopts, under socket activation) the listening socket and starts
 * accepting.  err says why not. */
int	vmmd_server_start(const struct vmmd_config *c, char *err, size_t errlen);
/* Stops accepting; removes the socket files it created. */
void	vmmd_server_stop(void);
/* Whether peer (uid, gid, supplementary groups) may send admin requests. */
bool	vmmd_server_is_admin(uid_t uid, gid_t gid, const gid_t *groups,
	    int ngroups);
/* Whether the peer is in ipc_group (false when none is set). */
bool	vmmd_server_in_ipc_group(gid_t gid, const gid_t *groups, int ngroups);

/* ---- main.c ---------------------------------------------------------------- */

extern struct event_base	*vmmd_base;
/* Random, non-zero, new at every start (HelloReply.instance_id). */
extern uint64_t			vmmd_instance;
extern struct vmmd_config	vmmd_cfg;
/* Asks the loop to finish (after a signal or a fatal error). */
void		vmmd_exit(int code);

/* ---- closer.c -------------------------------------------------------------- */

/* Before any fd is disposed of, after daemonizing (threads start later, on
 * demand): 0, or -1 with errno. */
int	vmmd_closer_start(void);
/* Closes fd, a peer's or a session's socket, without blocking the loop;
 * loop thread only. */
void	vmmd_closer_close(int fd);
/* Lets the closer threads finish (waiting a second at most). */
void	vmmd_closer_stop(void);

/* ---- worker.c -------------------------------------------------------------- */

enum vmmd_job_op {
	VMMD_JOB_CREATE,	/* cuMemCreate(size, prop) into handle */
	VMMD_JOB_RELEASE,	/* cuMemRelease(handle) */
};

/* One slow driver call.  The worker fills handle (create) and result;
 * done(job) then runs on the loop and owns the job. */
struct vmmd_job {
	enum vmmd_job_op		op;
	uint64_t			size;
	CUmemAllocationProp		prop;
	CUmemGenericAllocationHandle	handle;
	CUresult			result;
	void				(*done)(struct vmmd_job *);
	TAILQ_ENTRY(vmmd_job)		link;
};

/* Starts the worker thread (after the event base exists): 0 or -1.  Without
 * it every call runs in the loop, as before. */
int	vmmd_worker_start(void);
bool	vmmd_worker_running(void);
/* Queues a job; loop thread only. */
void	vmmd_worker_submit(struct vmmd_job *j);
/* Waits until every queued job has run (its completion still comes later,
 * from the loop). */
void	vmmd_worker_drain(void);
/* Runs what is queued, the completions too, and ends the thread. */
void	vmmd_worker_stop(void);

/* ---- notify.c -------------------------------------------------------------- */

void	vmmd_notify_ready(void);
/* Sends STATUS= with the current one-line summary (rate-limited). */
void	vmmd_notify_status(void);
void	vmmd_notify_stopping(void);
/* Starts the watchdog timer when systemd asks for one. */
int	vmmd_notify_watchdog_start(void);

#endif
