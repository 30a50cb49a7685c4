/* Tiny test helpers shared by every test program: CHECK aborts the test with
 * the failing expression and location; CHECK_CU compares a CUresult with the
 * expected one and names both on mismatch. */
#ifndef VMM_TEST_CHECK_H
#define VMM_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                              \
	do {                                                                         \
		if (!(cond)) {                                                           \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,     \
			    #cond);                                                          \
			exit(1);                                                             \
		}                                                                        \
	} while (0)

#ifdef CUDA_VERSION
static inline const char *
check_cu_name(CUresult r)
{
	const char *s = NULL;
	if (cuGetErrorName(r, &s) != CUDA_SUCCESS || s == NULL)
		return "?";
	return s;
}

#define CHECK_CU(call, expect)                                                   \
	do {                                                                         \
		CUresult check_r_ = (call);                                              \
		CUresult check_e_ = (expect);                                            \
		if (check_r_ != check_e_) {                                              \
			fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s)\n",    \
			    __FILE__, __LINE__, #call, (int)check_r_,                        \
			    check_cu_name(check_r_), (int)check_e_,                          \
			    check_cu_name(check_e_));                                        \
			exit(1);                                                             \
		}                                                                        \
	} while (0)

#define CHECK_OK(call) CHECK_CU(call, CUDA_SUCCESS)
#endif

#endif
