/* Shared by the tests/proto programs: one valid sample of every message
 * type, framing, fd helpers. */
#ifndef VMM_TEST_PROTO_TESTLIB_H
#define VMM_TEST_PROTO_TESTLIB_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define T_NSAMPLES	36	/* all types; Goodbye, Error both ways */
#define T_GRANT_CHUNKS	3	/* also the Adopt sample's sizes */
/* The streams (t_stream_of) carry one frame with fds, the Grant: the
 * IpcGrant sample, which has fds too, is left out of them. */
#define T_STREAM_SKIP	27

/* Storage for one sample; every field that exists is set, non-zero. */
struct t_sample {
	Vmm__Envelope		env;
	enum vmm_frame_peer	from;
	size_t			nfds;	/* fds the message needs */
	const char		*type;	/* its vmm_frame_type_name() */
	uint8_t			uuid[VMM_PROTO_UUID_LEN];
	Vmm__Hello		hello;
	Vmm__HelloReply		hello_reply;
	Vmm__Limits		limits;
	Vmm__Acquire		acquire;
	Vmm__Grant		grant;
	Vmm__Chunk		chunks[T_GRANT_CHUNKS];
	Vmm__Chunk		*chunkp[T_GRANT_CHUNKS];
	Vmm__Release		release;
	uint64_t		ids[3];
	Vmm__ReleaseReply	release_reply;
	Vmm__Report		report;
	Vmm__Ack		ack;
	Vmm__StatsRequest	stats_request;
	Vmm__StatsReply		stats_reply;
	Vmm__PoolStats		pool;
	Vmm__Counter		counters[2];
	Vmm__Counter		*counterp[2];
	Vmm__SessionStats	sessions[2];
	Vmm__SessionStats	*sessionp[2];
	Vmm__ClientsRequest	clients_request;
	Vmm__ClientsReply	clients_reply;
	Vmm__TrimRequest	trim_request;
	Vmm__TrimReply		trim_reply;
	Vmm__SetQuota		set_quota;
	Vmm__Recall		recall;
	Vmm__Goodbye		goodbye;
	Vmm__Error		error;
	Vmm__Adopt		adopt;
	uint64_t		sizes[T_GRANT_CHUNKS];
	Vmm__AdoptReply		adopt_reply;
	Vmm__MemInfoRequest	mem_info_request;
	Vmm__MemInfoReply	mem_info_reply;
	Vmm__IpcExport		ipc_export;
	Vmm__IpcExportReply	ipc_export_reply;
	Vmm__IpcOpen		ipc_open;
	Vmm__IpcGrant		ipc_grant;
	Vmm__IpcClose		ipc_close;
	Vmm__VaRequest		va_request;
	Vmm__VaReply		va_reply;
	Vmm__VaPlaced		va_placed;
	Vmm__VaClaim		va_claim;
	Vmm__VaRange		va_ranges[2];
	Vmm__VaRange		*va_rangep[2];
	Vmm__VaClaimReply	va_claim_reply;
	protobuf_c_boolean	va_accepted[2];
	Vmm__VaPlanRequest	va_plan_request;
	Vmm__VaPlanReply	va_plan_reply;
	Vmm__VaPlanEntry	va_entries[2];
	Vmm__VaPlanEntry	*va_entryp[2];
};

/* Build sample i (0 <= i < T_NSAMPLES) in s. */
void	t_sample(size_t i, struct t_sample *s);
/* Frame env (header + body) into out, which holds a maximal frame: length. */
size_t	t_frame(const Vmm__Envelope *env, unsigned char *out);
/* Pack env into a new heap buffer (body only); *len gets its size. */
unsigned char *t_pack(const Vmm__Envelope *env, size_t *len);
/* Number of open fds of this process. */
int	t_count_fds(void);
/* Whether fd is open. */
int	t_fd_open(int fd);
/* n memfds; fd j holds the text "tag:j". */
void	t_memfds(int *fds, size_t n, unsigned tag);
/* Check that fd is a memfd holding "tag:j". */
int	t_memfd_is(int fd, unsigned tag, size_t j);
/* n fds that are dups of /dev/null. */
void	t_nullfds(int *fds, size_t n);
/* A socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC). */
void	t_socketpair(int sv[2]);

/* Concatenated frames of every sample `from` sends, in sample order: their
 * length; *grant_at gets the offset of the one frame with fds (the Grant or
 * the Adopt, T_GRANT_CHUNKS fds), *count the number of frames. */
size_t	t_stream_of(enum vmm_frame_peer from, unsigned char *out,
	    size_t *grant_at, size_t *count);
/* Check msgs are those frames, byte for byte, the fds being memfds made
 * with `tag`; frees msgs. */
void	t_check_in_order(struct vmm_frame_msg **msgs, size_t count,
	    enum vmm_frame_peer from, unsigned tag);

#endif
