/*
 * figures.h — every figure vmmd publishes about its pool, declared once
 * (STYLE.md 23).  Header only, no code: vmmd fills the StatsReply from
 * these lists (daemon/stats.c), vmmctl prints them as a table, as JSON and
 * as help (`vmmctl help stats`), and a metrics exposition would walk the
 * same lists.
 *
 * To add a figure, add one row here, then:
 *   - a pool figure: a uint64 field of the same name in PoolStats
 *     (vmm.proto; the build fails without it) and its value in
 *     daemon/stats.c (pool_figures);
 *   - a counter: count it where it happens (vmmd_stats.<name>++); counters
 *     travel by name (StatsReply.counters), nothing else changes.
 */
#ifndef VMM_FIGURES_H
#define VMM_FIGURES_H

#include <stdint.h>

enum vmm_figure_unit {
	VMM_FIGURE_BYTES,	/* humanized in the table */
	VMM_FIGURE_COUNT,
};

/*
 * Pool figures, in the order shown: X(name, label, unit, help).  name is
 * the PoolStats field and the JSON key; label is the table row.
 */
#define VMM_POOL_FIGURES(X)                                                  \
	X(physical_bytes, "physical", VMM_FIGURE_BYTES,                      \
	    "memory created with cuMemCreate and not yet given back to the GPU") \
	X(lent_bytes, "lent", VMM_FIGURE_BYTES,                              \
	    "memory lent to clients")                                        \
	X(idle_bytes, "idle", VMM_FIGURE_BYTES,                              \
	    "memory in the pool, free to lend")                              \
	X(quarantined_bytes, "quarantined", VMM_FIGURE_BYTES,                \
	    "memory held back: its holder's socket closed, its process lives") \
	X(chunks, "chunks", VMM_FIGURE_COUNT,                                \
	    "chunks vmmd tracks (lent, idle and quarantined)")               \
	X(chunks_lent, "chunks lent", VMM_FIGURE_COUNT,                      \
	    "chunks lent to clients")                                        \
	X(device_total_bytes, "device total", VMM_FIGURE_BYTES,              \
	    "the GPU's memory")                                              \
	X(device_free_bytes, "device free", VMM_FIGURE_BYTES,                \
	    "the GPU's free memory: the driver's figure, refreshed off the "  \
	    "request path about once a second, kept current with vmmd's own " \
	    "creates and destroys")                                          \
	X(granularity, "granularity", VMM_FIGURE_BYTES,                      \
	    "the chunk unit, in bytes: every chunk's size is a multiple of it") \
	X(peak_physical_bytes, "peak physical", VMM_FIGURE_BYTES,            \
	    "the most physical memory the pool held at any moment, exact, "  \
	    "since start or 'vmmctl stats --reset-marks'")                   \
	X(peak_lent_bytes, "peak lent", VMM_FIGURE_BYTES,                    \
	    "the most memory lent at any moment, exact, since start or "     \
	    "'vmmctl stats --reset-marks'")                                  \
	X(ipc_held_bytes, "ipc held", VMM_FIGURE_BYTES,                      \
	    "memory its holder gave back while CUDA IPC importers still map " \
	    "it: not lendable until the last one closes it or exits")

/* The pool figures as one struct, for whoever computes or keeps them. */
struct vmm_pool_figures {
#define VMM_POOL_FIGURE_FIELD(name, label, unit, help) uint64_t name;
	VMM_POOL_FIGURES(VMM_POOL_FIGURE_FIELD)
#undef VMM_POOL_FIGURE_FIELD
};

/*
 * vmmd's counters, in the order sent: X(name, help).  Each counts since
 * the daemon started; names are at most VMM_PROTO_MAX_COUNTER_NAME bytes
 * and there are at most VMM_PROTO_MAX_COUNTERS of them (proto/frame.h).
 */
#define VMM_COUNTERS(X)                                                      \
	X(sessions_accepted, "connections accepted")                         \
	X(sessions_refused, "connections refused at a limit")                \
	X(grants, "Acquire requests granted")                                \
	X(grant_chunks, "chunks lent")                                       \
	X(grant_bytes, "bytes lent")                                         \
	X(fits, "grants served by one pooled chunk")                         \
	X(stitches, "grants stitched from several pooled chunks")            \
	X(fits_within, "grants of one pooled chunk larger than asked, up to Acquire.up_to, instead of a create") \
	X(creates, "chunks created with cuMemCreate")                        \
	X(create_bytes, "bytes created with cuMemCreate")                    \
	X(releases, "Release requests")                                      \
	X(released_chunks, "chunks returned by Release")                     \
	X(reclaimed_chunks, "chunks returned because the holder went away")  \
	X(quarantined_chunks, "chunks held back until their process exits")  \
	X(scrubs, "chunks zeroed before changing tenant")                    \
	X(tenant_swaps, "idle chunks of other tenants given back to the GPU for a grant") \
	X(gpu_releases, "chunks given back to the GPU")                      \
	X(gpu_release_bytes, "bytes given back to the GPU")                  \
	X(oom_recoveries, "out-of-memory recovered by freeing idle chunks")  \
	X(failures, "requests answered with an error, but would_create")    \
	X(oom_failures, "Acquire failed: out of memory")                     \
	X(quota_failures, "Acquire failed: over quota")                      \
	X(bad_peers, "sessions closed for a protocol fault")                 \
	X(slow_peer_drops, "sessions closed for not reading")                \
	X(permission_denied, "admin requests refused")                       \
	X(accept_pauses, "accept paused for lack of fds")                    \
	X(trims, "trim requests")                                            \
	X(adopted_chunks, "chunks taken over from a previous daemon")       \
	X(adopt_refused, "chunks to adopt refused (tracked already, foreign)") \
	X(resumed_sessions, "sessions resumed by their process on reconnect") \
	X(recalls, "Recall pushes sent to clients")                          \
	X(recall_waits, "Acquires parked until recalled memory came back")   \
	X(recall_successes, "parked Acquires granted after a recall")       \
	X(recalls_unanswered, "Recalls not closed in time (client shunned a while)") \
	X(closer_queued, "fds handed to a closer thread")                    \
	X(closer_threads, "closer threads started")                          \
	X(closer_inline, "fds closed in the loop: no closer could take them") \
	X(ipc_exports, "CUDA IPC exports made (cuIpcGetMemHandle)")          \
	X(ipc_opens, "CUDA IPC handles opened (cuIpcOpenMemHandle)")         \
	X(ipc_closes, "CUDA IPC handles closed (cuIpcCloseMemHandle)")       \
	X(ipc_refused, "CUDA IPC opens refused (gone, wrong token, other uid)") \
	X(ipc_limits, "CUDA IPC exports or opens refused at a session's limit") \
	X(va_planned, "VA ranges planned for clients (VaRequest)")          \
	X(va_plan_full, "VA requests answered 'anywhere': the window is full") \
	X(va_refused, "VA requests refused (absurd size, per-client bound)") \
	X(va_hint_missed, "reservations or IPC opens not at the planned address") \
	X(va_claimed, "VA ranges claimed back after a restart")             \
	X(va_claims_refused, "VA claims refused (overlap, per-client bound)") \
	X(orphan_swaps, "idle chunks of exited processes given back to the GPU for a grant") \
	X(would_create, "Acquires with no_create refused: only new memory would serve them") \
	X(covers, "stitched grants whose last piece is one pooled chunk up to twice what was missing, instead of a create") \
	X(partials, "stitched grants short of the request (Acquire.partial): max_pieces idle chunks lent instead of a create for the rest")

#endif
