/* The libFuzzer entry point of fuzz_frame.c, for the replay driver. */
#ifndef VMM_TEST_PROTO_FUZZ_FRAME_H
#define VMM_TEST_PROTO_FUZZ_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* Input layout: one control byte, then the byte stream a peer sends. */
#define FUZZ_FROM_DAEMON	0x01	/* else from a client */
#define FUZZ_PIECE_SHIFT	1	/* bits 1-3: reads of 2^n; 7: all */
#define FUZZ_WITH_FDS		0x10	/* attach fds to some reads */
#define FUZZ_NFDS_SHIFT		5	/* bits 5-7: 1 + n fds a time */

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
