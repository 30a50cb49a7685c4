/* cudaMemGetInfo follows allocations (run with CUEMU_MEM_MB=256); over
 * capacity, cudaMalloc fails with cudaErrorMemoryAllocation. */
#include "rt_test.h"

int
main(void)
{
	size_t free0 = 0, total0 = 0, free1 = 0, total1 = 0, free2 = 0,
	    total2 = 0;
	void *d = NULL, *big = (void *)&free0;

	CHECK_RT_OK(cudaMemGetInfo(&free0, &total0));
	CHECK(total0 == 256 * MiB);
	CHECK(free0 <= total0);

	CHECK_RT_OK(cudaMalloc(&d, 64 * MiB));
	CHECK_RT_OK(cudaMemGetInfo(&free1, &total1));
	CHECK(total1 == total0);
	CHECK(free1 + 64 * MiB <= free0);

	CHECK_RT_OK(cudaFree(d));
	CHECK_RT_OK(cudaMemGetInfo(&free2, &total2));
	CHECK(total2 == total0);
	CHECK(free2 == free0);

	CHECK_RT(cudaMalloc(&big, 512 * MiB), cudaErrorMemoryAllocation);
	CHECK_RT(cudaGetLastError(), cudaErrorMemoryAllocation);
	CHECK_RT(cudaMemGetInfo(NULL, &total2), cudaErrorInvalidValue);
	(void)cudaGetLastError();
	printf("ok\n");
	return 0;
}
