/*
 * creator — a test helper for tools/replay/tests/replay_test.sh (case
 * "hits"): another process of the emulated machine that makes one long
 * create, so that a replay's allocations run while it is being paid.
 *
 *   creator MIB READY DONE
 *
 * On the emulator (libcuda.so.1 of tests/cuemu, CUEMU_LATENCY set by the
 * caller) one thread calls cuMemCreate(MIB MiB); once the instance's count
 * of creates begun has moved (cuemuGetCounter instance_creates_begun: the
 * create has begun and is being paid), the file READY is created; once
 * cuMemCreate has returned, DONE.  Exit 0, or 1 with a message.
 */
#include <cuda.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static size_t			c_size;
static CUmemGenericAllocationHandle	c_handle;
static CUresult			c_result;

static void *
create(void *arg)
{
	CUmemAllocationProp p = { 0 };

	(void)arg;
	p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	p.location.id = 0;
	p.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
	c_result = cuMemCreate(&c_handle, c_size, &p, 0);
	return NULL;
}

static int
touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		return -1;
	return close(fd);
}

int
main(int argc, char **argv)
{
	int (*counter)(const char *, unsigned long long *);
	unsigned long long b0, b;
	pthread_t t;
	char *end;
	long mib;

	if (argc != 4 || (mib = strtol(argv[1], &end, 10)) <= 0 || *end != '\0') {
		fprintf(stderr, "usage: creator MIB READY DONE\n");
		return 1;
	}
	c_size = (size_t)mib << 20;
	if (cuInit(0) != CUDA_SUCCESS ||
	    (counter = (int (*)(const char *, unsigned long long *))dlsym(
	    RTLD_DEFAULT, "cuemuGetCounter")) == NULL ||
	    counter("instance_creates_begun", &b0) != 0) {
		fprintf(stderr, "creator: not the emulator's libcuda\n");
		return 1;
	}
	if (pthread_create(&t, NULL, create, NULL) != 0)
		return 1;
	do {
		if (counter("instance_creates_begun", &b) != 0)
			return 1;
	} while (b == b0);
	if (touch(argv[2]) != 0 || pthread_join(t, NULL) != 0)
		return 1;
	if (c_result != CUDA_SUCCESS) {
		fprintf(stderr, "creator: cuMemCreate: %d\n", (int)c_result);
		return 1;
	}
	if (touch(argv[3]) != 0)
		return 1;
	cuMemRelease(c_handle);
	return 0;
}
