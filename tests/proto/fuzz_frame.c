/*
 * libFuzzer harness for the receive path: the bytes a peer sends, cut into
 * reads and optionally carrying fds, go through vmm_frame_reader_feed/_next
 * (framing, cap, decode budget, validation, fd attribution).  Invariants
 * checked on every input: no crash, no leak (ASan/LSan), no fd left open,
 * and the known fields of every accepted message re-encode, within the cap,
 * into a message that validates again.
 *
 * Built as a fuzzer with -DVMM_FUZZ=ON and Clang (proto_fuzz_frame, e.g.
 *   proto_fuzz_frame -max_len=70000 tests/proto/corpus), and always into
 * proto_fuzz_replay, which ctest runs over seeds.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "fuzz_frame.h"

#define MAX_OPENED	256	/* fds the harness opens per input */

/* Abort on a broken invariant, so that libFuzzer records the input. */
static void
must(int cond)
{
	if (!cond)
		abort();
}

#define MAX_HIDDEN	4096	/* messages in one tree, at most */

/*
 * Hide the unknown fields of every message in a tree (restore: put them back,
 * visiting in the same order).  protobuf-c keeps some unknown fields that it
 * would refuse to parse once re-encoded (an overlong-encoded field number 0),
 * so the re-encode check below looks at known fields only.
 */
static void
hide_unknown(ProtobufCMessage *msg, size_t *saved, size_t *k, int restore)
{
	const ProtobufCFieldDescriptor	*f;
	ProtobufCMessage		**v;
	size_t				 i, j, n;
	char				*base = (char *)msg;

	must(*k < MAX_HIDDEN);
	if (restore)
		msg->n_unknown_fields = saved[(*k)++];
	else {
		saved[(*k)++] = msg->n_unknown_fields;
		msg->n_unknown_fields = 0;
	}
	for (i = 0; i < msg->descriptor->n_fields; i++) {
		f = &msg->descriptor->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			n = *(size_t *)(void *)(base + f->quantifier_offset);
			v = *(ProtobufCMessage ***)(void *)(base + f->offset);
			for (j = 0; j < n; j++)
				hide_unknown(v[j], saved, k, restore);
			continue;
		}
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(uint32_t *)(void *)(base + f->quantifier_offset) != f->id)
			continue;
		v = (ProtobufCMessage **)(void *)(base + f->offset);
		if (*v != NULL)
			hide_unknown(*v, saved, k, restore);
	}
}

/* Exercise an accepted message as a daemon or client would, then free it. */
static void
consume(struct vmm_frame_msg *m, enum vmm_frame_peer from)
{
	static size_t		 saved[MAX_HIDDEN];
	const Vmm__Envelope	*env = vmm_frame_msg_env(m);
	Vmm__Envelope		*again;
	uint8_t			*buf;
	size_t			 i, len, k;
	int			 fd;

	must(vmm_frame_validate(env, from, vmm_frame_msg_nfds(m)) == 0);
	must(vmm_frame_type_name(env)[0] != '\0');
	(void)vmm_frame_request_id(env);
	for (i = 0; i < vmm_frame_msg_nfds(m); i++) {
		must((fd = vmm_frame_msg_take_fd(m, i)) >= 0);
		close(fd);
	}
	/* Known fields re-encode into a message that is valid again. */
	k = 0;
	hide_unknown((ProtobufCMessage *)(uintptr_t)env, saved, &k, 0);
	len = vmm__envelope__get_packed_size(env);
	must(len <= VMM_FRAME_MAX);
	must((buf = malloc(len + 1)) != NULL);
	must(vmm__envelope__pack(env, buf) == len);
	must((again = vmm__envelope__unpack(NULL, len, buf)) != NULL);
	must(vmm_frame_validate(again, from,
	    vmm_frame_expected_fds(again)) == 0);
	vmm__envelope__free_unpacked(again, NULL);
	free(buf);
	k = 0;
	hide_unknown((ProtobufCMessage *)(uintptr_t)env, saved, &k, 1);
	vmm_frame_msg_free(m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmm_frame_reader	*r;
	struct vmm_frame_msg	*m;
	enum vmm_frame_peer	 from;
	size_t			 piece, off, n, nfds, nopened = 0, k, i;
	int			 opened[MAX_OPENED], fds[8], rc;
	unsigned		 ctl, shift;

	if (size < 1)
		return 0;
	ctl = data[0];
	data++;
	size--;
	from = (ctl & FUZZ_FROM_DAEMON) ? VMM_FRAME_PEER_DAEMON :
	    VMM_FRAME_PEER_CLIENT;
	shift = (ctl >> FUZZ_PIECE_SHIFT) & 7;
	piece = shift == 7 ? (size > 0 ? size : 1) : (size_t)1 << shift;
	must((r = vmm_frame_reader_new(from)) != NULL);

	for (off = 0, k = 0; off < size; off += n, k++) {
		n = size - off < piece ? size - off : piece;
		nfds = 0;
		if ((ctl & FUZZ_WITH_FDS) && k % 4 == 0) {
			nfds = 1 + (ctl >> FUZZ_NFDS_SHIFT);
			if (nopened + nfds > MAX_OPENED)
				nfds = 0;
			for (i = 0; i < nfds; i++) {
				fds[i] = open("/dev/null",
				    O_RDONLY | O_CLOEXEC);
				must(fds[i] >= 0);
				opened[nopened++] = fds[i];
			}
		}
		if (vmm_frame_reader_feed(r, data + off, n, fds, nfds) < 0)
			break;
		while ((rc = vmm_frame_reader_next(r, &m)) == 1)
			consume(m, from);
		if (rc < 0) {
			must(vmm_frame_strerror(rc) != NULL);
			break;
		}
	}
	vmm_frame_reader_free(r);
	for (i = 0; i < nopened; i++)
		must(fcntl(opened[i], F_GETFD) == -1);
	return 0;
}
