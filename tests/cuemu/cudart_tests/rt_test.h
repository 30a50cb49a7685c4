/* Helpers shared by the tests of the emulated runtime (libcudart.so.13).
 * These programs use the runtime API only, as an application would: device
 * memory is read and written with cudaMemcpy, never dereferenced. */
#ifndef RT_TEST_H
#define RT_TEST_H

#include <cuda_runtime_api.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/check.h"

#define MiB ((size_t)1 << 20)

/* The call must return the expected cudaError_t; both are named if not. */
#define CHECK_RT(call, expect)                                                   \
	do {                                                                         \
		cudaError_t check_r_ = (call);                                           \
		cudaError_t check_e_ = (expect);                                         \
		if (check_r_ != check_e_) {                                              \
			fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s)\n",    \
			    __FILE__, __LINE__, #call, (int)check_r_,                        \
			    cudaGetErrorName(check_r_), (int)check_e_,                       \
			    cudaGetErrorName(check_e_));                                     \
			exit(1);                                                             \
		}                                                                        \
	} while (0)

#define CHECK_RT_OK(call) CHECK_RT(call, cudaSuccess)

/* Byte i of the test pattern for seed. */
static inline unsigned char
rt_pattern(size_t i, unsigned seed)
{
	return (unsigned char)((i * 131u + seed * 7u + (i >> 12)) & 0xff);
}

/* Fill buf with a pattern derived from seed. */
static inline void
rt_fill(unsigned char *buf, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		buf[i] = rt_pattern(i, seed);
}

/* Whether buf holds the pattern of rt_fill(seed). */
static inline int
rt_check(const unsigned char *buf, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (buf[i] != rt_pattern(i, seed))
			return 0;
	}
	return 1;
}

/* Whether all n bytes of buf equal v. */
static inline int
rt_all(const unsigned char *buf, size_t n, unsigned char v)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (buf[i] != v)
			return 0;
	}
	return 1;
}

#endif
