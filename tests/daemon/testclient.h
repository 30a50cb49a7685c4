/*
 * A small synchronous vmmd client for tests, speaking the real protocol
 * through proto/frame.h over a real Unix socket.  Every call either returns
 * what it says or fails the test (CHECK) — except tc_connect_raw and the
 * tc_*_try variants, which report failure for negative tests.
 */
#ifndef VMM_TESTCLIENT_H
#define VMM_TESTCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cuda.h>

#include "clock.h"
#include "frame.h"
#include "session.h"

struct tc {
	struct vmm_sess		*s;
	int			fd;		/* the session's, for raw frames */
	uint64_t		session_id;
	uint64_t		granularity;
	uint32_t		max_chunks;	/* Limits.max_chunks_per_grant */
};

struct tc_chunk {
	uint64_t	id;
	uint64_t	size;
	int		fd;	/* owned by the caller */
};

/* The daemon's socket for device 0 under dir ($VMM_TEST_TMPDIR/...). */
void	tc_socket_path(const char *dir, char *out, size_t len);
/* Connects without handshake; -1 (errno) on failure. */
int	tc_connect_raw(const char *path);
/* Connects and says Hello as an app (or admin); fails the test on error. */
struct tc *tc_open(const char *path, const char *name, bool admin);
void	tc_close(struct tc *c);
/* A fresh request id for a message built by hand. */
uint64_t tc_rid(struct tc *c);
/* The next frame from the daemon (pushes queued while a typed helper
 * waited come first): 1 and *out, 0 on EOF, or a negative error. */
int	tc_recv(struct tc *c, struct vmm_frame_msg **out, int timeout_ms);
/* Sends a message (fds taken; a request id of 0 gets a fresh one) and
 * returns the next frame, whatever it is (caller frees with
 * vmm_frame_msg_free), or NULL on EOF/timeout. */
struct vmm_frame_msg *tc_call(struct tc *c, Vmm__Envelope *env, int *fds,
	    size_t nfds);
/* tc_call that fails the test unless the reply is of type want. */
struct vmm_frame_msg *tc_call_expect(struct tc *c, Vmm__Envelope *env,
	    Vmm__Envelope__MsgCase want);
/* A request and its typed answer: 0 and *out (the caller frees it), or
 * -code for an Error reply (its message to msg if not NULL); fails the
 * test on anything else (no answer, another type). */
int	tc_request(struct tc *c, Vmm__Envelope *env, struct vmm_frame_msg **out,
	    char *msg, size_t msglen);
/* Acquire: returns the number of chunks (filled in out), or -code on an
 * Error reply. */
int	tc_acquire(struct tc *c, uint64_t bytes, unsigned flags,
	    struct tc_chunk *out, size_t max);
/* Release ids: 0, or -code on an Error reply. */
int	tc_release(struct tc *c, const uint64_t *ids, size_t n);
/* Sends a Release without reading the reply; returns its request id. */
uint64_t tc_release_nowait(struct tc *c, const uint64_t *ids, size_t n);
/* Stats: fills the pool totals, and the named counter if name != NULL. */
int	tc_stats(struct tc *c, Vmm__PoolStats *pool, const char *counter,
	    uint64_t *value);
/* Number of open fds of this process (for leak checks). */
int	tc_count_fds(pid_t pid);
/* tc_start_daemon with the socket dir $VMM_TEST_TMPDIR/<sub> and config
 * conf; writes the daemon's socket path to sockpath and, if adm is not
 * NULL, opens an admin session in *adm. */
pid_t	tc_start_in(const char *sub, const char *conf, char *sockpath,
	    size_t len, struct tc **adm);
/* vmmd's chunk unit (granularity x chunk_multiple) as this test's vmmd
 * will have it, learned from a daemon started and stopped for the purpose
 * (for configs that must be written in units before the real start). */
uint64_t tc_probe_unit(void);
/* Closes adm (NULL is fine) and stops the daemon, which must exit 0. */
void	tc_stop_with(pid_t pid, struct tc *adm);
/* Starts vmmd in the foreground for device 0 with extra args (NULL-ended)
 * and waits until its socket accepts; returns its pid.  The config is
 * config_text, then $VMM_TEST_VMMD_CONF if set (the test variants of
 * cmake/VmmTest.cmake: "chunk_multiple = 2"). */
pid_t	tc_start_daemon(const char *sockdir, const char *config_text,
	    const char *const *extra_args);
/* SIGTERM and wait; returns the exit status. */
int	tc_stop_daemon(pid_t pid);
/* SIGTERM and wait; fails the test unless vmmd exits 0 (under ASan: no
 * leaks either). */
void	tc_stop_daemon_ok(pid_t pid);

/* ---- more helpers (negative tests, processes, mapping) ------------------ */

/* Acquire with every field (flags: Acquire.flags, and TC_ACQUIRE_EXACT for
 * Acquire.exact): returns the number of chunks, or -code on an Error reply
 * whose message goes to msg (if not NULL). */
#define TC_ACQUIRE_EXACT	(1u << 31)
/* ... and TC_ACQUIRE_NO_CREATE for Acquire.no_create. */
#define TC_ACQUIRE_NO_CREATE	(1u << 30)
/* ... and TC_ACQUIRE_PARTIAL for Acquire.partial. */
#define TC_ACQUIRE_PARTIAL	(1u << 29)
int	tc_acquire_ex(struct tc *c, uint64_t bytes, unsigned flags,
	    uint64_t min_piece, struct tc_chunk *out, size_t max, char *msg,
	    size_t msglen);
/* Acquire of bytes with Acquire.up_to set (no flags): one chunk, or
 * -code on an Error reply. */
int	tc_acquire_within(struct tc *c, uint64_t bytes, uint64_t up_to,
	    struct tc_chunk *out);
/* As tc_acquire_within, with Acquire.no_create: idle memory only, or
 * -ERROR_CODE_WOULD_CREATE. */
int	tc_acquire_idle(struct tc *c, uint64_t bytes, uint64_t up_to,
	    struct tc_chunk *out);
/* Closes the fds of granted chunks. */
void	tc_close_chunks(struct tc_chunk *ch, size_t n);
/* The pool totals; fails the test on error. */
void	tc_pool(struct tc *c, Vmm__PoolStats *pool);
/* A counter's value; fails the test if the daemon has no such counter. */
uint64_t tc_counter(struct tc *c, const char *name);
/* Trim (recall: the clients' caches too): bytes the daemon gave back to
 * the GPU, or -code on an Error. */
int64_t	tc_trim(struct tc *c, uint64_t target, bool recall);
/* One-off admin queries, each on an admin session of its own (for tests
 * that keep none open): a counter's value; the pool totals; the largest
 * value of a uint64_t field of SessionStats (TC_SESSION_FIELD(name)) over
 * the sessions of pid, as `vmmctl clients` shows them, or UINT64_MAX if pid
 * has none. */
#define TC_SESSION_FIELD(name)	offsetof(Vmm__SessionStats, name)
uint64_t tc_admin_counter(const char *path, const char *name);
void	tc_admin_pool(const char *path, Vmm__PoolStats *pool);
uint64_t tc_admin_pid_figure(const char *path, pid_t pid, size_t field);
/* Sessions the daemon knows (ClientsReply.sessions_total). */
uint32_t tc_sessions(struct tc *c);
void	tc_sleep_ms(int ms);
/* Polls pid's fd count until it is want or timeout_ms passes; returns the
 * last count. */
int	tc_wait_fds(pid_t pid, int want, int timeout_ms);
/* VmRSS of pid in KiB, or -1. */
long	tc_rss_kb(pid_t pid);
/* Writes a frame header and the packed env into out (cap bytes); returns the
 * frame's length. */
size_t	tc_pack(const Vmm__Envelope *env, unsigned char *out, size_t cap);
/* Sends len bytes with fds (SCM_RIGHTS on the first byte; the caller keeps
 * its copies); 0 or -errno. */
int	tc_send_raw(int fd, const void *buf, size_t len, const int *fds,
	    size_t nfds);
/* Next frame from the daemon on a raw socket: 1 and *out, 0 on EOF, or a
 * negative error (-ETIMEDOUT). */
int	tc_recv_raw(int fd, struct vmm_frame_reader *rd,
	    struct vmm_frame_msg **out, int timeout_ms);
/* Reads and discards until EOF: 0, or -1 if the socket stays open past
 * timeout_ms. */
int	tc_wait_eof(int fd, int timeout_ms);
/* SIGSTOP pid and wait until it is stopped (kill() returns before a
 * running process has stopped); fails the test after 5 s. */
void	tc_freeze(pid_t pid);
/* SIGCONT pid. */
void	tc_thaw(pid_t pid);
/* Leaves root for uid/gid with these supplementary groups (child only). */
void	tc_become(uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups);
/* Forks a child that runs fn(arg, ctl) and _exits with its result; ctl is a
 * SOCK_SEQPACKET socket to the parent, whose end goes to *ctl.  The child
 * dies with the parent.  Call before cuInit in this process. */
pid_t	tc_spawn(int (*fn)(void *, int), void *arg, int *ctl);
/* One message on a control socket: send, or receive exactly len bytes
 * (fails the test on EOF or after timeout_ms). */
void	tc_ctl_send(int ctl, const void *buf, size_t len);
void	tc_ctl_recv(int ctl, void *buf, size_t len, int timeout_ms);
/* Waits for a child; returns its exit code (fails the test if it was
 * killed by a signal other than want_sig, which then counts as 0). */
int	tc_wait_child(pid_t pid, int want_sig);

/* Chunks mapped back to back in one reservation, one cuMemSetAccess. */
struct tc_mapping {
	CUdeviceptr			va;
	uint64_t			size;
	size_t				n;
	CUmemGenericAllocationHandle	h[VMM_PROTO_MAX_CHUNKS];
	uint64_t			sizes[VMM_PROTO_MAX_CHUNKS];
};

/* cuInit, the primary context of device 0, current. */
void	tc_cuda_init(void);
/* Imports and maps chunks (their fds stay open) read-write. */
void	tc_map(const struct tc_chunk *ch, size_t n, struct tc_mapping *m);
void	tc_unmap(struct tc_mapping *m);

#endif
