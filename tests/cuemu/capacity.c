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
 * That scan costs tens of ms with thousands of chunks, so no call pays for
 * it on its common path.  A small shared file per device
 * (/dev/shm/cuemu-<instance>-d<dev>), under an flock, holds:
 *
 *   charged   an upper bound of the bytes alive: creates add; a death the
 *             emulator can prove subtracts; an exact scan replaces it.
 *   suspect   bytes of shared chunks (see below) whose last emulator
 *             reference is gone: dead unless a raw exported fd keeps them.
 *   a table   inode -> number of emulator handles (create, import), in all
 *             processes, of each chunk that was ever exported;
 *   procs     the processes that opened the books since the last scan.
 *
 * A chunk never exported lives only in its creating process (its fds are
 * close-on-exec and never leave), so when that process closes its last fd
 * and mapping the memory is gone: charged drops at once, exactly.  The
 * first export marks the memfd shared (its mode becomes 0600, visible to
 * every process holding it) and enters it in the table; imports add to the
 * importer's count and each handle's end takes one off; when no handle is
 * left anywhere its bytes become suspect (a raw exported fd may still hold
 * them).
 *
 * cuMemCreate admits a create while charged + size fits; only when it would
 * not is charged replaced by an exact scan (which also clears suspect and
 * drops the table entries, and holders, that are gone).  So a create never
 * fails while the device has room and never succeeds when it has not.
 * cuMemGetInfo answers charged in O(1), and scans first only if a chunk is
 * suspect or a registered process is gone (it may have died holding
 * handles): a scan once per such event, never per call.  It is exact after
 * such a scan; memory kept only by a raw fd that a process closes later is
 * counted until the next scan (stricter).
 *
 * Any path that hands a memfd to another process must call
 * cuemu_capacity_export first.
 */
#include "cuemu_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CUEMU_SHARED_MAGIC 0x63756d656d763034ull	/* "cumemv04" */
/* Shared chunks tracked per device; beyond that, stricter (never freed
 * until a scan).  A power of two: the table is open addressing. */
#define CUEMU_SHARED_SLOTS 32768u
/* Processes of an instance registered per device. */
#define CUEMU_PROCS_MAX 1024
/* The mode of a memfd once exported (memfd_create makes it 0777). */
#define CUEMU_SHARED_MODE 0600
/* A scan tells a phantom chunk's key from an inode by this bit (keys are
 * below it, see cuemu_phantom_key). */
#define CUEMU_PHANTOM_SEEN (1ull << 62)

/* Emulator handles of one shared chunk, per process holding any. */
#define CUEMU_SLOT_PIDS 4
struct cuemu_shared_slot {
	uint64_t	ino;		/* 0: empty */
	int32_t		pid[CUEMU_SLOT_PIDS];
	uint32_t	cnt[CUEMU_SLOT_PIDS];	/* 0: pid unused */
	uint32_t	unsure;		/* more holders than fit: a scan decides */
	uint32_t	pad;
};

struct cuemu_shared {
	uint64_t	magic;
	uint64_t	capacity;
	uint64_t	charged;	/* upper bound of bytes in use */
	uint64_t	suspect;	/* of charged: shared, no handle left */
	uint64_t	scans;
	uint64_t	nslots;		/* slots in use */
	int64_t		ctx_pid;	/* exclusive mode: the context's owner */
	/* The processes that opened this state since the last scan: one that
	 * is gone may have died holding handles. */
	uint32_t	nprocs;
	uint32_t	procs_full;	/* some did not fit: scan each time */
	int32_t		procs[CUEMU_PROCS_MAX];
	/* CUEMU_PHANTOM: bytes of the phantom handles alive in each process
	 * of procs[] (a process that dies loses them), of processes that did
	 * not fit in procs[] (kept until the instance is reset: stricter),
	 * and their sum.  A scan cannot see phantom handles (they hold no
	 * fd), so these are apart from charged. */
	uint64_t	pphantom[CUEMU_PROCS_MAX];
	uint64_t	phantom_unowned;
	uint64_t	phantom;
	/* Creates (cuMemCreate, cuMemAlloc and the other classic allocators)
	 * on this device by any process of the instance: begun when the call
	 * is charged its cost, done once it has paid it and returns, failed
	 * ones too.  Only ever increased (atomically, without the flock); a
	 * reader takes differences (cuemuGetCounter instance_creates_*).  A
	 * process killed while paying for a create never counts it done:
	 * until the next process that finds itself alone (done := begun),
	 * every window looks as if a create ran in it (stricter). */
	uint64_t	creates_begun;
	uint64_t	creates_done;
	struct cuemu_shared_slot slot[CUEMU_SHARED_SLOTS];
};

/* Per device: the shared state file, mapped, opened on first use. */
struct cuemu_seen;
static uint64_t	cuemu_scan(int dev, struct cuemu_seen *keep);
static void	cuemu_table_clear(struct cuemu_shared *sh, bool empty);
static void	cuemu_rescan(struct cuemu_shared *sh, int dev);
static void	cuemu_phantom_clear(struct cuemu_shared *sh);

static int			cuemu_shared_fd[CUEMU_MAX_DEVICES] = { -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1 };
static struct cuemu_shared	*cuemu_shared[CUEMU_MAX_DEVICES];

/*
 * Whether this is the only live process of the instance on dev: each
 * process holds a shared open-file-description lock on one byte past the
 * state (fcntl locks are apart from the flock that guards the state) while
 * it has the state open; the kernel drops it when the process dies.  The
 * first (the exclusive lock succeeds) cannot trust books left by processes
 * that are gone (a SIGKILL mid-run, an earlier run), so it replaces them
 * with a scan — once per process start, never per call.  0 or -1.
 */
static int
cuemu_shared_live(int fd, bool *alone)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)sizeof(struct cuemu_shared);
	fl.l_len = 1;
	*alone = fcntl(fd, F_OFD_SETLK, &fl) == 0;
	fl.l_type = F_RDLCK;
	return fcntl(fd, F_OFD_SETLKW, &fl) == 0 ? 0 : -1;
}

/* Opens (creating if needed) the shared state of device dev; lock held. */
static struct cuemu_shared *
cuemu_shared_open(int dev)
{
	char path[128];
	struct cuemu_shared *sh;
	bool alone = false, empty;
	struct stat st;
	int fd;

	if (cuemu_shared[dev] != NULL)
		return cuemu_shared[dev];
	snprintf(path, sizeof(path), "/dev/shm/cuemu-%s-d%d", cuemu_cfg.instance,
	    dev);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (fd < 0)
		return NULL;
	(void)fchmod(fd, 0666);
	if (flock(fd, LOCK_EX) != 0 || fstat(fd, &st) != 0 ||
	    ftruncate(fd, (off_t)sizeof(*sh)) != 0) {
		close(fd);
		return NULL;
	}
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (sh == MAP_FAILED) {
		close(fd);
		return NULL;
	}
	if (cuemu_shared_live(fd, &alone) != 0) {
		munmap(sh, sizeof(*sh));
		close(fd);
		return NULL;
	}
	/* A new instance, or one whose processes left no memory behind (a
	 * file from an earlier run): this process's capacity applies. */
	if (sh->magic != CUEMU_SHARED_MAGIC)
		sh->creates_begun = sh->creates_done = 0;
	if (sh->magic != CUEMU_SHARED_MAGIC ||
	    (sh->capacity != cuemu_cfg.mem_bytes && cuemu_scan(dev, NULL) == 0)) {
		empty = st.st_size == 0;	/* a new file */
		sh->magic = CUEMU_SHARED_MAGIC;
		sh->capacity = cuemu_cfg.mem_bytes;
		sh->charged = 0;
		sh->suspect = 0;
		sh->ctx_pid = 0;
		cuemu_table_clear(sh, empty);
		cuemu_phantom_clear(sh);
	} else if (alone) {
		/* No other process lives: none holds a phantom handle. */
		cuemu_phantom_clear(sh);
		if (sh->charged != 0 || sh->nslots != 0)
			cuemu_rescan(sh, dev);
	}
	/* No other process lives: no create is being paid (one killed while
	 * paying never counted it done). */
	if (alone)
		__atomic_store_n(&sh->creates_done, __atomic_load_n(
		    &sh->creates_begun, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
	if (sh->nprocs < CUEMU_PROCS_MAX)
		sh->procs[sh->nprocs++] = (int32_t)getpid();
	else
		sh->procs_full = 1;
	flock(fd, LOCK_UN);
	cuemu_shared_fd[dev] = fd;
	__atomic_store_n(&cuemu_shared[dev], sh, __ATOMIC_RELEASE);
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

/* Parses "cuemu-phantom:<instance>:<dev>:<size>:<types>:<key>" (the fd an
 * export of a phantom chunk gives, see cuemu_capacity_phantom_export) for
 * this instance. */
static int
cuemu_phantom_name_parse(const char *name, int *dev, uint64_t *size,
    unsigned *types, uint64_t *key)
{
	size_t ilen = strlen(cuemu_cfg.instance);
	unsigned long long sz, k;
	unsigned d, t;
	int n = 0;

	if (strncmp(name, "cuemu-phantom:", 14) != 0 ||
	    strncmp(name + 14, cuemu_cfg.instance, ilen) != 0 ||
	    name[14 + ilen] != ':')
		return -1;
	if (sscanf(name + 15 + ilen, "%u:%llu:%u:%llx%n", &d, &sz, &t, &k,
	    &n) != 4)
		return -1;
	if (name[15 + ilen + n] != '\0' && name[15 + ilen + n] != ' ')
		return -1;
	if (d >= CUEMU_MAX_DEVICES || sz == 0 || k == 0 ||
	    k >= CUEMU_PHANTOM_SEEN)
		return -1;
	*dev = (int)d;
	*size = sz;
	*types = t;
	*key = k;
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
		uint64_t size, key;
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
		if (strncmp(target, "/memfd:", 7) != 0)
			continue;
		/* A phantom chunk's exported fd: the chunk lives while one is
		 * open, counted once per chunk (the key names it; every
		 * export is a new memfd). */
		if (cuemu_phantom_name_parse(target + 7, &ndev, &size, &types,
		    &key) == 0) {
			if (ndev == dev)
				cuemu_seen_add(seen, (ino_t)(key |
				    CUEMU_PHANTOM_SEEN), size);
			continue;
		}
		if (cuemu_name_parse(target + 7, &ndev, &size, &types) != 0 ||
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

/* Exact bytes of device dev alive in any process; with keep, also the
 * inodes seen (the caller frees keep->ino and keep->size). */
static uint64_t
cuemu_scan(int dev, struct cuemu_seen *keep)
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
	if (keep != NULL) {
		*keep = seen;
		return total;
	}
	free(seen.ino);
	free(seen.size);
	return total;
}

/* ---- the table of shared chunks (lock held) ------------------------------- */

/* Empties the table.  empty: it is already (a new file reads as zeros),
 * so its pages are left alone: writing zeros would make tmpfs hold all of
 * them (1.5 MiB per instance; a test run makes hundreds of instances). */
static void
cuemu_table_clear(struct cuemu_shared *sh, bool empty)
{
	if (!empty)
		memset(sh->slot, 0, sizeof(sh->slot));
	sh->nslots = 0;
}

static uint32_t
cuemu_table_home(uint64_t ino)
{
	return (uint32_t)((ino * 0x9e3779b97f4a7c15ull) >> 48) &
	    (CUEMU_SHARED_SLOTS - 1);
}

/* The slot of ino, or NULL. */
static struct cuemu_shared_slot *
cuemu_table_find(struct cuemu_shared *sh, uint64_t ino)
{
	uint32_t i = cuemu_table_home(ino);

	while (sh->slot[i].ino != 0) {
		if (sh->slot[i].ino == ino)
			return &sh->slot[i];
		i = (i + 1) & (CUEMU_SHARED_SLOTS - 1);
	}
	return NULL;
}

/* Enters ino; -1 if the table is (nearly) full. */
static struct cuemu_shared_slot *
cuemu_table_insert(struct cuemu_shared *sh, uint64_t ino)
{
	uint32_t i = cuemu_table_home(ino);

	/* Keep a quarter empty so probes stay short. */
	if (sh->nslots >= CUEMU_SHARED_SLOTS / 4 * 3)
		return NULL;
	while (sh->slot[i].ino != 0)
		i = (i + 1) & (CUEMU_SHARED_SLOTS - 1);
	memset(&sh->slot[i], 0, sizeof(sh->slot[i]));
	sh->slot[i].ino = ino;
	sh->nslots++;
	return &sh->slot[i];
}

/* Adds d (+1 or -1) to pid's handles of a slot; returns the handles left
 * in all processes, or -1 if the slot cannot say (a scan must). */
static int
cuemu_slot_add(struct cuemu_shared_slot *s, int32_t pid, int d)
{
	int i, k = -1, total = 0;

	for (i = 0; i < CUEMU_SLOT_PIDS; i++) {
		if (s->cnt[i] != 0 && s->pid[i] == pid)
			k = i;
		else if (s->cnt[i] == 0 && k < 0 && d > 0)
			k = i;
	}
	if (k < 0 || (d < 0 && s->cnt[k] == 0) || s->unsure) {
		s->unsure = 1;
		return -1;
	}
	s->pid[k] = pid;
	s->cnt[k] = (uint32_t)((int)s->cnt[k] + d);
	for (i = 0; i < CUEMU_SLOT_PIDS; i++)
		total += (int)s->cnt[i];
	return total;
}

/* Removes a slot, shifting later members of its cluster back (linear
 * probing without tombstones). */
static void
cuemu_table_delete(struct cuemu_shared *sh, struct cuemu_shared_slot *s)
{
	uint32_t hole = (uint32_t)(s - sh->slot), i = hole, home;

	for (;;) {
		i = (i + 1) & (CUEMU_SHARED_SLOTS - 1);
		if (sh->slot[i].ino == 0)
			break;
		home = cuemu_table_home(sh->slot[i].ino);
		/* Move i into the hole unless its home lies in (hole, i]. */
		if (((i - home) & (CUEMU_SHARED_SLOTS - 1)) >=
		    ((i - hole) & (CUEMU_SHARED_SLOTS - 1))) {
			sh->slot[hole] = sh->slot[i];
			hole = i;
		}
	}
	memset(&sh->slot[hole], 0, sizeof(sh->slot[hole]));
	sh->nslots--;
}

/* Forgets the registered processes that are gone (a scan has just counted
 * what they left behind). */
static void
cuemu_procs_prune(struct cuemu_shared *sh)
{
	uint32_t i, n = 0;

	for (i = 0; i < sh->nprocs && i < CUEMU_PROCS_MAX; i++) {
		if (kill(sh->procs[i], 0) == 0 || errno == EPERM) {
			sh->pphantom[n] = sh->pphantom[i];
			sh->procs[n++] = sh->procs[i];
			continue;
		}
		/* Its phantom handles died with it. */
		sh->phantom -= sh->pphantom[i] < sh->phantom ? sh->pphantom[i] :
		    sh->phantom;
	}
	for (i = n; i < CUEMU_PROCS_MAX; i++)
		sh->pphantom[i] = 0;
	sh->nprocs = n;
	sh->procs_full = 0;
}

/* Whether a registered process is gone (or some were never registered):
 * its handles' ends were never booked. */
static bool
cuemu_procs_lost(const struct cuemu_shared *sh)
{
	uint32_t i;

	if (sh->procs_full)
		return true;
	for (i = 0; i < sh->nprocs && i < CUEMU_PROCS_MAX; i++)
		if (kill(sh->procs[i], 0) != 0 && errno != EPERM)
			return true;
	return false;
}

static int
cuemu_ino_cmp(const void *a, const void *b)
{
	ino_t x = *(const ino_t *)a, y = *(const ino_t *)b;

	return x < y ? -1 : x > y;
}

/* Forgets the holders of a slot that are gone; returns the handles left
 * (-1: unsure). */
static int
cuemu_slot_prune(struct cuemu_shared_slot *s)
{
	int i, total = 0;

	for (i = 0; i < CUEMU_SLOT_PIDS; i++) {
		if (s->cnt[i] != 0 && kill(s->pid[i], 0) != 0 && errno != EPERM)
			s->cnt[i] = 0;
		total += (int)s->cnt[i];
	}
	return s->unsure ? -1 : total;
}

/* Replaces charged by an exact scan: suspects are resolved and the table
 * forgets the inodes that are gone. */
static void
cuemu_rescan(struct cuemu_shared *sh, int dev)
{
	struct cuemu_seen seen = { 0 };
	uint32_t i;

	sh->charged = cuemu_scan(dev, &seen);
	sh->suspect = 0;
	sh->scans++;
	cuemu_procs_prune(sh);
	if (seen.n > 0)
		qsort(seen.ino, seen.n, sizeof(*seen.ino), cuemu_ino_cmp);
	for (i = 0; i < CUEMU_SHARED_SLOTS; ) {
		ino_t ino = (ino_t)sh->slot[i].ino;

		if (ino != 0 && (seen.n == 0 || bsearch(&ino, seen.ino, seen.n,
		    sizeof(*seen.ino), cuemu_ino_cmp) == NULL ||
		    cuemu_slot_prune(&sh->slot[i]) == 0)) {
			/* Gone, or alive with no handle left (a raw fd: the
			 * scan counted it, and nobody will book its end).
			 * The delete may shift another entry into i. */
			cuemu_table_delete(sh, &sh->slot[i]);
			continue;
		}
		i++;
	}
	free(seen.ino);
	free(seen.size);
}

static uint64_t
cuemu_limit(const struct cuemu_shared *sh)
{
	uint64_t lim = sh->capacity;

	if (cuemu_cfg.oom_above != 0 && cuemu_cfg.oom_above < lim)
		lim = cuemu_cfg.oom_above;
	return lim;
}

/* Whether size more bytes fit on the device, by the books (lock held). */
static bool
cuemu_fits(const struct cuemu_shared *sh, uint64_t size)
{
	uint64_t used = sh->charged + sh->phantom;

	return used >= sh->charged && used + size >= used &&
	    used + size <= cuemu_limit(sh);
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
	if (!cuemu_fits(sh, size))
		cuemu_rescan(sh, dev);
	if (!cuemu_fits(sh, size)) {
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
		return cuemu_cfg.mem_bytes;	/* nothing known: all used */
	lfd = cuemu_shared_fd[dev];
	flock(lfd, LOCK_EX);
	/* The books are exact unless a shared chunk lost its last handle (a
	 * raw exported fd may keep it) or a process died with handles open:
	 * only then, once per such event, a scan. */
	if (sh->suspect != 0 || cuemu_procs_lost(sh))
		cuemu_rescan(sh, dev);
	used = sh->charged + sh->phantom;
	flock(lfd, LOCK_UN);
	return used;
}

uint64_t
cuemu_capacity_scans(int dev)
{
	struct cuemu_shared *sh = cuemu_shared_open(dev);

	return sh != NULL ? __atomic_load_n(&sh->scans, __ATOMIC_RELAXED) : 0;
}

/* Per device, the creates this thread has begun and not yet counted done
 * (its cost is paid when it leaves the emulator lock). */
static __thread uint32_t	cuemu_tls_creates_open[CUEMU_MAX_DEVICES];
static __thread bool		cuemu_tls_creates_any;

void
cuemu_capacity_create_begin(int dev)
{
	struct cuemu_shared *sh;

	if (dev < 0 || dev >= CUEMU_MAX_DEVICES ||
	    (sh = cuemu_shared_open(dev)) == NULL)
		return;		/* no books: the create itself fails */
	__atomic_add_fetch(&sh->creates_begun, 1, __ATOMIC_SEQ_CST);
	cuemu_tls_creates_open[dev]++;
	cuemu_tls_creates_any = true;
}

void
cuemu_capacity_create_end(void)
{
	int dev;

	if (!cuemu_tls_creates_any)
		return;
	cuemu_tls_creates_any = false;
	for (dev = 0; dev < CUEMU_MAX_DEVICES; dev++) {
		if (cuemu_tls_creates_open[dev] == 0)
			continue;
		/* Opened by cuemu_capacity_create_begin, never closed. */
		__atomic_add_fetch(&cuemu_shared[dev]->creates_done,
		    cuemu_tls_creates_open[dev], __ATOMIC_SEQ_CST);
		cuemu_tls_creates_open[dev] = 0;
	}
}

int
cuemu_capacity_creates(bool done, unsigned long long *value)
{
	struct cuemu_shared *sh;
	uint64_t sum = 0;
	int dev, rc = 0;

	for (dev = 0; dev < cuemu_cfg.devices; dev++) {
		if ((sh = __atomic_load_n(&cuemu_shared[dev],
		    __ATOMIC_ACQUIRE)) == NULL) {
			/* First read of this device: open its books (the
			 * lock guards the open). */
			pthread_mutex_lock(cuemu_mutex());
			sh = cuemu_shared_open(dev);
			pthread_mutex_unlock(cuemu_mutex());
			if (sh == NULL) {
				rc = -1;
				continue;
			}
		}
		sum += __atomic_load_n(done ? &sh->creates_done :
		    &sh->creates_begun, __ATOMIC_SEQ_CST);
	}
	*value = sum;
	return rc;
}

/* The device, size and inode of a memfd of ours; -1 if it is not one. */
static int
cuemu_fd_info(int fd, int *dev, uint64_t *size, struct stat *st)
{
	unsigned types;

	if (cuemu_capacity_identify(fd, dev, size, &types) != 0 ||
	    fstat(fd, st) != 0)
		return -1;
	return 0;
}

int
cuemu_capacity_export(int fd)
{
	struct cuemu_shared_slot *slot;
	struct cuemu_shared *sh;
	struct stat st;
	uint64_t size;
	int dev, lfd, rc = 0;

	if (cuemu_fd_info(fd, &dev, &size, &st) != 0 ||
	    (sh = cuemu_shared_open(dev)) == NULL)
		return -1;
	if ((st.st_mode & 07777) == CUEMU_SHARED_MODE)
		return 0;	/* exported before: counted in the table */
	lfd = cuemu_shared_fd[dev];
	flock(lfd, LOCK_EX);
	/* Never exported: this process's one handle is its only reference.
	 * If the table is full the chunk is not entered, and its end is never
	 * subtracted before a scan (stricter). */
	if (fchmod(fd, CUEMU_SHARED_MODE) != 0)
		rc = -1;
	else if ((slot = cuemu_table_insert(sh, (uint64_t)st.st_ino)) != NULL)
		(void)cuemu_slot_add(slot, (int32_t)getpid(), 1);
	flock(lfd, LOCK_UN);
	return rc;
}

void
cuemu_capacity_import(int fd)
{
	struct cuemu_shared_slot *slot;
	struct cuemu_shared *sh;
	struct stat st;
	uint64_t size;
	int dev, lfd;

	if (cuemu_fd_info(fd, &dev, &size, &st) != 0 ||
	    (sh = cuemu_shared_open(dev)) == NULL)
		return;
	lfd = cuemu_shared_fd[dev];
	flock(lfd, LOCK_EX);
	/* Not in the table (it was full): its end is found by a scan. */
	if ((slot = cuemu_table_find(sh, (uint64_t)st.st_ino)) != NULL)
		(void)cuemu_slot_add(slot, (int32_t)getpid(), 1);
	flock(lfd, LOCK_UN);
}

void
cuemu_capacity_close(int fd)
{
	struct cuemu_shared_slot *slot;
	struct cuemu_shared *sh;
	struct stat st;
	uint64_t size;
	int dev, lfd;

	if (cuemu_fd_info(fd, &dev, &size, &st) != 0 ||
	    (sh = cuemu_shared_open(dev)) == NULL) {
		close(fd);
		return;
	}
	/* Closed before the books change: charged never falls below what the
	 * kernel still holds. */
	close(fd);
	lfd = cuemu_shared_fd[dev];
	flock(lfd, LOCK_EX);
	if ((st.st_mode & 07777) != CUEMU_SHARED_MODE) {
		/* Never left this process: gone now, exactly (the caller has
		 * unmapped it). */
		sh->charged -= size < sh->charged ? size : sh->charged;
	} else if ((slot = cuemu_table_find(sh, (uint64_t)st.st_ino)) == NULL) {
		/* Not tracked (the table was full): a scan will tell. */
		sh->suspect += size;
	} else if (cuemu_slot_add(slot, (int32_t)getpid(), -1) <= 0) {
		/* No handle left anywhere (or unsure): dead unless a raw
		 * exported fd keeps it, which only a scan can see. */
		cuemu_table_delete(sh, slot);
		sh->suspect += size;
	}
	flock(lfd, LOCK_UN);
}

uint64_t
cuemu_capacity_total(int dev)
{
	struct cuemu_shared *sh = cuemu_shared_open(dev);

	return sh != NULL ? sh->capacity : cuemu_cfg.mem_bytes;
}

/* Whether process pid still runs (a zombie holds no GPU context). */
static bool
cuemu_pid_alive(pid_t pid)
{
	char path[64], buf[256], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	/* "pid (comm) S ...": the state follows the last ')'. */
	if ((p = strrchr(buf, ')')) == NULL || p[1] != ' ')
		return true;
	return p[2] != 'Z' && p[2] != 'X';
}

int
cuemu_machine_ctx_claim(int dev)
{
	struct cuemu_shared *sh;
	pid_t self = getpid();
	int lfd, rc = 0;

	if ((sh = cuemu_shared_open(dev)) == NULL)
		return -1;
	lfd = cuemu_shared_fd[dev];
	flock(lfd, LOCK_EX);
	if (sh->ctx_pid != 0 && sh->ctx_pid != self &&
	    cuemu_pid_alive((pid_t)sh->ctx_pid))
		rc = -1;
	else
		sh->ctx_pid = self;
	flock(lfd, LOCK_UN);
	return rc;
}

void
cuemu_machine_ctx_unclaim(int dev)
{
	struct cuemu_shared *sh;
	int lfd;

	if ((sh = cuemu_shared_open(dev)) == NULL)
		return;
	lfd = cuemu_shared_fd[dev];
	flock(lfd, LOCK_EX);
	if (sh->ctx_pid == getpid())
		sh->ctx_pid = 0;
	flock(lfd, LOCK_UN);
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

/* ---- phantom chunks (CUEMU_PHANTOM=1) ------------------------------------- */

/*
 * A phantom chunk has no memory and no fd: each handle on it (create or
 * import) books its size under this process's entry of the books, and its
 * end takes it off — exactly, since no mapping can keep it (cuMemMap
 * refuses phantoms).  An import in another process books the size again
 * while both hold it (stricter than one allocation).  An export is a new
 * empty memfd whose name carries the chunk's key; once a handle that was
 * exported ends, a raw fd may keep the chunk, so its bytes move to charged
 * and become suspect, as a shared memfd's do: the next scan counts the
 * open fds naming the key, once per key.
 */

static void
cuemu_phantom_clear(struct cuemu_shared *sh)
{
	memset(sh->pphantom, 0, sizeof(sh->pphantom));
	sh->phantom_unowned = 0;
	sh->phantom = 0;
}

/* Adds (d > 0) or takes off this process's phantom bytes (lock held). */
static void
cuemu_phantom_book(struct cuemu_shared *sh, uint64_t size, bool add)
{
	uint64_t *own = &sh->phantom_unowned;
	int32_t self = (int32_t)getpid();
	uint32_t i;

	for (i = 0; i < sh->nprocs && i < CUEMU_PROCS_MAX; i++)
		if (sh->procs[i] == self) {
			own = &sh->pphantom[i];
			break;
		}
	if (add) {
		*own += size;
		sh->phantom += size;
		return;
	}
	*own -= size < *own ? size : *own;
	sh->phantom -= size < sh->phantom ? size : sh->phantom;
}

uint64_t
cuemu_phantom_key(void)
{
	static uint32_t next;

	/* pid < 2^22 (pid_max's limit): below CUEMU_PHANTOM_SEEN. */
	return (uint64_t)(uint32_t)getpid() << 32 | ++next;
}

CUresult
cuemu_capacity_phantom_create(int dev, uint64_t size, bool admit)
{
	struct cuemu_shared *sh;
	int lfd;

	if ((sh = cuemu_shared_open(dev)) == NULL)
		return CUDA_ERROR_OPERATING_SYSTEM;
	lfd = cuemu_shared_fd[dev];
	if (flock(lfd, LOCK_EX) != 0)
		return CUDA_ERROR_OPERATING_SYSTEM;
	if (admit && !cuemu_fits(sh, size))
		cuemu_rescan(sh, dev);
	if (admit && !cuemu_fits(sh, size)) {
		flock(lfd, LOCK_UN);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	cuemu_phantom_book(sh, size, true);
	flock(lfd, LOCK_UN);
	return CUDA_SUCCESS;
}

void
cuemu_capacity_phantom_end(int dev, uint64_t size, bool exported)
{
	struct cuemu_shared *sh;
	int lfd;

	if ((sh = cuemu_shared_open(dev)) == NULL)
		return;
	lfd = cuemu_shared_fd[dev];
	flock(lfd, LOCK_EX);
	cuemu_phantom_book(sh, size, false);
	if (exported) {
		/* A raw fd may keep it: counted until a scan says not. */
		sh->charged += size;
		sh->suspect += size;
	}
	flock(lfd, LOCK_UN);
}

int
cuemu_capacity_phantom_export(int dev, uint64_t size, unsigned types,
    uint64_t key)
{
	char name[CUEMU_INSTANCE_MAX + 128];

	snprintf(name, sizeof(name), "cuemu-phantom:%s:%d:%" PRIu64 ":%u:%"
	    PRIx64, cuemu_cfg.instance, dev, size, types, key);
	return memfd_create(name, MFD_CLOEXEC);
}

int
cuemu_capacity_phantom_identify(int fd, int *dev, uint64_t *size,
    unsigned *types, uint64_t *key)
{
	char link[64], target[PATH_MAX];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n <= 7)
		return -1;
	target[n] = '\0';
	if (strncmp(target, "/memfd:", 7) != 0)
		return -1;
	return cuemu_phantom_name_parse(target + 7, dev, size, types, key);
}
