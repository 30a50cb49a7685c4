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

#include "frame.h"

struct tc {
	int			fd;
	struct vmm_frame_reader	*rd;
	uint64_t		next_rid;
	uint64_t		session_id;
	uint64_t		granularity;
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
/* Sends a message (fds taken) and waits for the reply; returns it (caller
 * frees with vmm_frame_msg_free) or NULL on EOF/timeout. */
struct vmm_frame_msg *tc_call(struct tc *c, Vmm__Envelope *env, int *fds,
	    size_t nfds);
/* Acquire: returns the number of chunks (filled in out), or -code on an
 * Error reply. */
int	tc_acquire(struct tc *c, uint64_t bytes, unsigned flags,
	    struct tc_chunk *out, size_t max);
/* Release ids: 0, or -code on an Error reply. */
int	tc_release(struct tc *c, const uint64_t *ids, size_t n);
/* Stats: fills the pool totals, and the named counter if name != NULL. */
int	tc_stats(struct tc *c, Vmm__PoolStats *pool, const char *counter,
	    uint64_t *value);
/* Number of open fds of this process (for leak checks). */
int	tc_count_fds(pid_t pid);
/* Starts vmmd in the foreground for device 0 with extra args (NULL-ended)
 * and waits until its socket accepts; returns its pid. */
pid_t	tc_start_daemon(const char *sockdir, const char *config_text,
	    const char *const *extra_args);
/* SIGTERM and wait; returns the exit status. */
int	tc_stop_daemon(pid_t pid);

#endif
