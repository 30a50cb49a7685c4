/*
 * cuemu capacity: device memory counted across every process of an instance.
 *
 * Device memory is memfd memory named "cuemu:<instance>:<dev>:<size>:<types>".
 * The kernel keeps a memfd alive while any fd or mapping refers to it, in any
 * process, and drops it when the last goes (SIGKILL included) — exactly the
 * lifetime the driver documents for an allocation.  So the truth about what is
 * in use is in /proc: every memfd of ours that some process still has open
 * (/proc/<pid>/fd) or mapped (/proc/<pid>/maps), counted once per inode.
 *
 * Scanning /proc on every cuMemCreate would be slow, so a small shared file
 * per device (/dev/shm/cuemu-<instance>-d<dev>) keeps an upper bound of the
 * usage under an flock: creates add to it, and only when a create would pass
 * the capacity is the bound replaced by an exact scan.  An allocation can
 * therefore never fail while the device really has room, and never succeed
 * when it has not.
 */
#include "cuemu_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CUEMU_SHARED_MAGIC 0x63756d656d763031ull	/* "cumemv01" */

struct cuemu_shared {
	uint64_t	magic;
	uint64_t	capacity;
	uint64_t	charged;	/* upper bound of bytes in use */
	uint64_t	scans;
};

/* Per device: the shared state file, mapped, opened on first use. */
static uint64_t	cuemu_scan(int dev);

static int			cuemu_shared_fd[CUEMU_MAX_DEVICES] = { -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1 };
static struct cuemu_shared	*cuemu_shared[CUEMU_MAX_DEVICES];

/* Opens (creating if needed) the shared state of device dev; lock held. */
static struct cuemu_shared *
cuemu_shared_open(int dev)
{
	char path[128];
	struct cuemu_shared *sh;
	int fd;

	if (cuemu_shared[dev] != NULL)
		return cuemu_shared[dev];
	snprintf(path, sizeof(path), "/dev/shm/cuemu-%s-d%d", cuemu_cfg.instance,
	    dev);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (fd < 0)
		return NULL;
	(void)fchmod(fd, 0666);
	if (flock(fd, LOCK_EX) != 0 ||
	    ftruncate(fd, (off_t)sizeof(*sh)) != 0) {
		close(fd);
		return NULL;
	}
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (sh == MAP_FAILED) {
		close(fd);
		return NULL;
	}
	/* A new instance, or one whose processes left no memory behind (a
	 * file from an earlier run): this process's capacity applies. */
	if (sh->magic != CUEMU_SHARED_MAGIC ||
	    (sh->capacity != cuemu_cfg.mem_bytes && cuemu_scan(dev) == 0)) {
		sh->magic = CUEMU_SHARED_MAGIC;
		sh->capacity = cuemu_cfg.mem_bytes;
		sh->charged = 0;
	}
	flock(fd, LOCK_UN);
	cuemu_shared_fd[dev] = fd;
	cuemu_shared[dev] = sh;
	return sh;
}

/* Parses "cuemu:<instance>:<dev>:<size>:<types>" for this instance. */
static int
cuemu_name_parse(const char *name, int *dev, uint64_t *size, unsigned *types)
{
	size_t ilen = strlen(cuemu_cfg.instance);
	unsigned long long sz;
	unsigned d, t;
	int n = 0;

	if (strncmp(name, "cuemu:", 6) != 0 ||
	    strncmp(name + 6, cuemu_cfg.instance, ilen) != 0 ||
	    name[6 + ilen] != ':')
		return -1;
	if (sscanf(name + 7 + ilen, "%u:%llu:%u%n", &d, &sz, &t, &n) != 3)
		return -1;
	if (name[7 + ilen + n] != '\0' && name[7 + ilen + n] != ' ')
		return -1;
	if (d >= CUEMU_MAX_DEVICES || sz == 0)
		return -1;
	*dev = (int)d;
	*size = sz;
	*types = t;
	return 0;
}

struct cuemu_seen {
	ino_t		*ino;
	uint64_t	*size;
	size_t		n, cap;
};

static void
cuemu_seen_add(struct cuemu_seen *s, ino_t ino, uint64_t size)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (s->ino[i] == ino)
			return;
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 256;
		ino_t *ni = realloc(s->ino, ncap * sizeof(*ni));
		uint64_t *ns;

		if (ni == NULL)
			return;
		s->ino = ni;
		if ((ns = realloc(s->size, ncap * sizeof(*ns))) == NULL)
			return;
		s->size = ns;
		s->cap = ncap;
	}
	s->ino[s->n] = ino;
	s->size[s->n] = size;
	s->n++;
}

/* Adds the memfds of dev that process pid has open. */
static void
cuemu_scan_fds(const char *pid, int dev, struct cuemu_seen *seen)
{
	char dir[64], link[PATH_MAX], target[PATH_MAX];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%s/fd", pid);
	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		uint64_t size;
		unsigned types;
		ssize_t n;
		int ndev;

		if (de->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%s", dir, de->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n <= 7)
			continue;
		target[n] = '\0';
		if (strncmp(target, "/memfd:", 7) != 0 ||
		    cuemu_name_parse(target + 7, &ndev, &size, &types) != 0 ||
		    ndev != dev || stat(link, &st) != 0)
			continue;
		cuemu_seen_add(seen, st.st_ino, size);
	}
	closedir(d);
}

/* Adds the memfds of dev that process pid has mapped. */
static void
cuemu_scan_maps(const char *pid, int dev, struct cuemu_seen *seen)
{
	char path[64], line[PATH_MAX + 256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%s/maps", pid);
	if ((f = fopen(path, "re")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *m = strstr(line, "/memfd:cuemu:");
		unsigned long long ino;
		uint64_t size;
		unsigned types;
		int ndev;
		char *nl;

		if (m == NULL)
			continue;
		if ((nl = strchr(m, '\n')) != NULL)
			*nl = '\0';
		if (cuemu_name_parse(m + 7, &ndev, &size, &types) != 0 ||
		    ndev != dev)
			continue;
		/* addr perms offset dev inode path */
		if (sscanf(line, "%*s %*s %*s %*s %llu", &ino) != 1)
			continue;
		cuemu_seen_add(seen, (ino_t)ino, size);
	}
	fclose(f);
}

/* Exact bytes of device dev alive in any process. */
static uint64_t
cuemu_scan(int dev)
{
	struct cuemu_seen seen = { 0 };
	struct dirent *de;
	uint64_t total = 0;
	size_t i;
	DIR *d;

	if ((d = opendir("/proc")) == NULL)
		return UINT64_MAX;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		cuemu_scan_fds(de->d_name, dev, &seen);
		cuemu_scan_maps(de->d_name, dev, &seen);
	}
	closedir(d);
	for (i = 0; i < seen.n; i++)
		total += seen.size[i];
	free(seen.ino);
	free(seen.size);
	return total;
}

static uint64_t
cuemu_limit(const struct cuemu_shared *sh)
{
	uint64_t lim = sh->capacity;

	if (cuemu_cfg.oom_above != 0 && cuemu_cfg.oom_above < lim)
		lim = cuemu_cfg.oom_above;
	return lim;
}

CUresult
cuemu_capacity_create(int dev, uint64_t size, unsigned handle_types, int *fdp)
{
	struct cuemu_shared *sh;
	char name[CUEMU_INSTANCE_MAX + 96];
	int fd, lfd;

	if ((sh = cuemu_shared_open(dev)) == NULL)
		return CUDA_ERROR_OPERATING_SYSTEM;
	lfd = cuemu_shared_fd[dev];
	if (flock(lfd, LOCK_EX) != 0)
		return CUDA_ERROR_OPERATING_SYSTEM;
	if (sh->charged + size > cuemu_limit(sh) || sh->charged + size < size) {
		sh->charged = cuemu_scan(dev);
		sh->scans++;
	}
	if (sh->charged + size > cuemu_limit(sh) || sh->charged + size < size) {
		flock(lfd, LOCK_UN);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	snprintf(name, sizeof(name), "cuemu:%s:%d:%" PRIu64 ":%u",
	    cuemu_cfg.instance, dev, size, handle_types);
	fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
		if (fd >= 0)
			close(fd);
		flock(lfd, LOCK_UN);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	sh->charged += size;
	flock(lfd, LOCK_UN);
	*fdp = fd;
	return CUDA_SUCCESS;
}

uint64_t
cuemu_capacity_used(int dev)
{
	struct cuemu_shared *sh;
	uint64_t used;
	int lfd;

	if ((sh = cuemu_shared_open(dev)) == NULL)
		return cuemu_scan(dev);
	lfd = cuemu_shared_fd[dev];
	flock(lfd, LOCK_EX);
	used = cuemu_scan(dev);
	sh->charged = used;
	sh->scans++;
	flock(lfd, LOCK_UN);
	return used;
}

uint64_t
cuemu_capacity_total(int dev)
{
	struct cuemu_shared *sh = cuemu_shared_open(dev);

	return sh != NULL ? sh->capacity : cuemu_cfg.mem_bytes;
}

int
cuemu_capacity_identify(int fd, int *dev, uint64_t *size, unsigned *types)
{
	char link[64], target[PATH_MAX];
	struct stat st;
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n <= 7)
		return -1;
	target[n] = '\0';
	if (strncmp(target, "/memfd:", 7) != 0 ||
	    cuemu_name_parse(target + 7, dev, size, types) != 0)
		return -1;
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != *size)
		return -1;
	return 0;
}
