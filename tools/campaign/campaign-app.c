/*
 * vmm-campaign-app — an ordinary CUDA runtime program for vmm-campaign's
 * shim phase: run under LD_PRELOAD=libvmm_client.so, it loops cudaMalloc,
 * writes a per-buffer pattern with cudaMemcpy, holds up to eight buffers,
 * reads each back before cudaFree, for a given number of milliseconds.
 * A changed buffer means its memory was also someone else's.
 *
 *   vmm-campaign-app MILLISECONDS SEED
 *
 * Last line on stdout: "cycles=N corrupt=N errors=N".  Exit 0 if no buffer
 * changed and no call failed, 1 otherwise, 2 on usage.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime.h>

#define APP_HELD	8
#define APP_MAX_BYTES	(6u << 20)	/* large ones span several chunks */

struct buf {
	void		*dev;
	size_t		 size;
	uint64_t	 tag;
};

static uint64_t rng;

static uint64_t
rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
fill(uint64_t *h, size_t size, uint64_t tag)
{
	size_t i;

	for (i = 0; i < size / sizeof(uint64_t); i++)
		h[i] = (tag * 0xff51afd7ed558ccdull) ^ (i * 0x9e3779b97f4a7c15ull);
}

int
main(int argc, char **argv)
{
	static uint64_t host[APP_MAX_BYTES / 8], want[APP_MAX_BYTES / 8];
	struct buf b[APP_HELD];
	uint64_t end, cycles = 0, corrupt = 0, errors = 0, tag;
	size_t n = 0, i;

	if (argc != 3)
		return 2;
	end = now_ms() + strtoull(argv[1], NULL, 10);
	rng = strtoull(argv[2], NULL, 10) * 0x9e3779b97f4a7c15ull + 1;
	tag = (uint64_t)getpid() << 24;
	while (now_ms() < end && cycles < 10000000) {
		if (n == APP_HELD || (n > 0 && rnd() % 3 == 0)) {
			i = (size_t)(rnd() % n);
			fill(want, b[i].size, b[i].tag);
			if (cudaMemcpy(host, b[i].dev, b[i].size,
			    cudaMemcpyDeviceToHost) != cudaSuccess)
				errors++;
			else if (memcmp(host, want, b[i].size) != 0)
				corrupt++;
			if (cudaFree(b[i].dev) != cudaSuccess)
				errors++;
			b[i] = b[--n];
			cycles++;
			continue;
		}
		/* Small (sub-allocated) and large (chunk-backed) buffers. */
		b[n].size = rnd() % 2 == 0 ? 8 * (1 + rnd() % 8192) :
		    (1u << 20) * (1 + rnd() % (APP_MAX_BYTES >> 20));
		b[n].tag = ++tag;
		if (cudaMalloc(&b[n].dev, b[n].size) != cudaSuccess) {
			errors++;
			usleep(1000);	/* frugal when every call fails */
			continue;
		}
		fill(host, b[n].size, b[n].tag);
		if (cudaMemcpy(b[n].dev, host, b[n].size,
		    cudaMemcpyHostToDevice) != cudaSuccess) {
			errors++;
			cudaFree(b[n].dev);
			continue;
		}
		n++;
	}
	while (n > 0) {
		n--;
		fill(want, b[n].size, b[n].tag);
		if (cudaMemcpy(host, b[n].dev, b[n].size,
		    cudaMemcpyDeviceToHost) != cudaSuccess)
			errors++;
		else if (memcmp(host, want, b[n].size) != 0)
			corrupt++;
		cudaFree(b[n].dev);
		cycles++;
	}
	printf("cycles=%llu corrupt=%llu errors=%llu\n",
	    (unsigned long long)cycles, (unsigned long long)corrupt,
	    (unsigned long long)errors);
	return corrupt == 0 && errors == 0 ? 0 : 1;
}
