/*
 * Raw peers for the tests that play a hostile or broken client
 * (test_badinput, test_attack, test_hostile_fds): a socket to vmmd with a
 * frame reader, frames built and sent by hand without the sender's checks,
 * and what the daemon answers checked frame by frame.  Every call fails the
 * test (CHECK) on anything but what it says.
 */
#ifndef VMM_TESTRAW_H
#define VMM_TESTRAW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "testclient.h"

/* Any request id (tc_raw_expect_error). */
#define TC_ANY_RID	UINT64_MAX

struct tc_raw {
	int			fd;
	struct vmm_frame_reader	*rd;
};

/* Connects to the daemon's socket, without a handshake. */
void	tc_raw_open(struct tc_raw *r, const char *sockpath);
void	tc_raw_close(struct tc_raw *r);
/* Sends bytes with fds (SCM_RIGHTS; the caller keeps its copies); the
 * daemon may hang up on a bad peer before it has taken them all (what it
 * answered is checked next), so EPIPE/ECONNRESET are fine here. */
void	tc_raw_send(struct tc_raw *r, const void *buf, size_t len,
	    const int *fds, size_t nfds);
/* Sends env, framed, without the sender's checks. */
void	tc_raw_send_env(struct tc_raw *r, const Vmm__Envelope *env,
	    const int *fds, size_t nfds);
/* A Hello of an app named name, framed into buf (cap bytes): its length. */
size_t	tc_raw_pack_hello(unsigned char *buf, size_t cap, uint32_t version,
	    uint64_t rid, const char *name);
void	tc_raw_send_hello(struct tc_raw *r, uint32_t version, uint64_t rid,
	    const char *name);
/* Hello (this protocol version, request id 1) and its reply. */
void	tc_raw_hello(struct tc_raw *r, const char *name);
/* The next frame must be of this type; returns it (the caller frees it). */
struct vmm_frame_msg *tc_raw_expect(struct tc_raw *r,
	    Vmm__Envelope__MsgCase type);
/* The next frame is an Error with code, for request rid (unless
 * TC_ANY_RID), with a message (copied to msg if not NULL). */
void	tc_raw_expect_error(struct tc_raw *r, Vmm__ErrorCode code,
	    uint64_t rid, char *msg, size_t msglen);
/* The daemon hangs up (nothing more arrives); closes r. */
void	tc_raw_expect_closed(struct tc_raw *r);
/* True once the read end of a pipe sees EOF: every write end is closed. */
bool	tc_pipe_closed(int rfd, int timeout_ms);
/* CPU time (user + system, clock ticks) pid has used. */
long	tc_cpu_ticks(pid_t pid);

#endif
