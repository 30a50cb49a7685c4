/*
 * vmm-demo-app: an ordinary CUDA runtime program, unaware of vmmd.  It runs a
 * toy training loop (a stack of activations of mixed sizes that grows and
 * shrinks each step, with data written and checked through copies) and
 * prints what it did.  Run it under LD_PRELOAD=libvmm_client.so and its
 * memory comes from vmmd's pool.
 *
 *   vmm-demo-app [STEPS [LAYERS [PAUSE_MS]]]
 */
#include <cuda_runtime_api.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CK(call)                                                             \
	do {                                                                 \
		cudaError_t e_ = (call);                                     \
		if (e_ != cudaSuccess) {                                     \
			fprintf(stderr, "vmm-demo-app: %s: %s\n", #call,     \
			    cudaGetErrorString(e_));                         \
			exit(1);                                             \
		}                                                            \
	} while (0)

static size_t
layer_size(int step, int layer)
{
	static const size_t base[] = { 768, 4096, 65536, 300000, 1u << 21,
	    6u << 20, 24u << 20 };

	return base[(layer + step) % 7] + (size_t)(layer * 1024);
}

int
main(int argc, char **argv)
{
	int steps = argc > 1 ? atoi(argv[1]) : 20;
	int layers = argc > 2 ? atoi(argv[2]) : 24;
	int pause_ms = argc > 3 ? atoi(argv[3]) : 0;
	void **act = calloc((size_t)layers, sizeof(*act));
	unsigned char *buf = malloc(24u << 21);
	size_t free0, total, free1, peak = 0, cur, bytes = 0;
	int s, l;

	if (act == NULL || buf == NULL || steps < 1 || layers < 1 ||
	    pause_ms < 0) {
		fprintf(stderr, "usage: vmm-demo-app [STEPS >= 1 [LAYERS >= 1 "
		    "[PAUSE_MS >= 0]]]\n");
		return 1;
	}
	CK(cudaSetDevice(0));
	CK(cudaMemGetInfo(&free0, &total));
	for (s = 0; s < steps; s++) {
		cur = 0;
		for (l = 0; l < layers; l++) {	/* forward: the stack grows */
			size_t n = layer_size(s, l);

			CK(cudaMalloc(&act[l], n));
			memset(buf, (s + l) & 0xff, 64);
			CK(cudaMemcpy(act[l], buf, 64, cudaMemcpyHostToDevice));
			cur += n;
			bytes += n;
		}
		if (cur > peak)
			peak = cur;
		for (l = layers - 1; l >= 0; l--) {	/* backward: it shrinks */
			unsigned char chk[64];

			CK(cudaMemcpy(chk, act[l], 64, cudaMemcpyDeviceToHost));
			if (chk[0] != ((s + l) & 0xff) || chk[63] != chk[0]) {
				fprintf(stderr, "vmm-demo-app: data check failed\n");
				return 1;
			}
			CK(cudaFree(act[l]));
		}
		if (pause_ms > 0)
			usleep((useconds_t)pause_ms * 1000);
	}
	CK(cudaMemGetInfo(&free1, &total));
	printf("vmm-demo-app[%d]: %d steps x %d layers, %zu MiB allocated in "
	    "all, peak %zu MiB live, data checked; device %zu MiB, %zu MiB "
	    "free\n", (int)getpid(), steps, layers, bytes >> 20, peak >> 20,
	    total >> 20, free1 >> 20);
	free(act);
	free(buf);
	return 0;
}
