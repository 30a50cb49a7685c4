/*
 * A CUDA program (runtime only: the runtime dlopens the driver at its first
 * call, as the real one does) under LD_PRELOAD=libvmm_client.so: until its
 * first CUDA call the library has loaded no driver, started no thread and
 * opened no socket; the first cudaMalloc then comes from vmmd (running at
 * VMM_SOCKET_DIR), which loads the driver and starts the helper thread —
 * the figures this test reads before the call are the ones that change.
 */
#include <cuda_runtime_api.h>

#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/check.h"
#include "vmm_client.h"

/* Whether a mapping of libcuda.so is in this process. */
static int
driver_mapped(void)
{
	char line[4096];
	FILE *f = fopen("/proc/self/maps", "re");
	int found = 0;

	CHECK(f != NULL);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, "/libcuda.so") != NULL)
			found = 1;
	fclose(f);
	return found;
}

/* Entries of a /proc/self directory whose name or link matches. */
static int
count_dir(const char *dir, const char *link_prefix)
{
	char path[512], target[512];
	struct dirent *e;
	DIR *d = opendir(dir);
	ssize_t n;
	int count = 0;

	CHECK(d != NULL);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (link_prefix == NULL) {
			count++;
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if ((n = readlink(path, target, sizeof(target) - 1)) < 0)
			continue;
		target[n] = '\0';
		if (strncmp(target, link_prefix, strlen(link_prefix)) == 0)
			count++;
	}
	closedir(d);
	return count;
}

int
main(void)
{
	int (*get_usage)(struct vmm_usage *);
	struct vmm_usage u;
	void *p;

	/* The library is there, and has done nothing yet. */
	get_usage = (int (*)(struct vmm_usage *))dlsym(RTLD_DEFAULT,
	    "vmm_get_usage");
	CHECK(get_usage != NULL);
	CHECK(!driver_mapped());
	CHECK(count_dir("/proc/self/task", NULL) == 1);
	CHECK(count_dir("/proc/self/fd", "socket:") == 0);

	CHECK(cudaSetDevice(0) == cudaSuccess);
	CHECK(cudaMalloc(&p, 8u << 20) == cudaSuccess);
	CHECK(driver_mapped());
	/* From vmmd, so the library really worked: its connection and its
	 * helper thread exist now. */
	CHECK(get_usage(&u) == 0 && u.allocs == 1 && u.mapped_bytes >= 8u << 20);
	CHECK(count_dir("/proc/self/fd", "socket:") >= 1);
	CHECK(count_dir("/proc/self/task", NULL) >= 2);
	CHECK(cudaFree(p) == cudaSuccess);
	return 0;
}
