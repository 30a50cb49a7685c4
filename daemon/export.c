/*
 * The exported fd of each chunk, kept: a pooled grant sends a dup of the
 * fd exported the first time the chunk went out, instead of asking the
 * driver for a new one per grant (cuMemExportToShareableHandle is an ioctl
 * on a GPU, five syscalls in the emulator).  What the client receives is
 * the same either way: SCM_RIGHTS installs a new fd of the exporter's open
 * file in the receiver, and the driver names the allocation by it.
 *
 * Why this cannot lend memory twice or keep memory alive:
 *  - the cache never decides who gets a chunk: an fd is handed out only by
 *    vmmd_pool_export, for a chunk the pool has just lent (or an IPC open
 *    of a lent chunk), exactly where a fresh export was made before;
 *  - every caller gets its own dup, never the kept fd itself: a Grant that
 *    waits in a slow client's output queue owns its fd, so a chunk
 *    destroyed meanwhile (a Release of a guessed id, say) cannot leave the
 *    queue holding a closed fd number that a later export would reuse;
 *  - an exported fd keeps the allocation alive (cuda.h, cuMemRelease), so
 *    pool.c forgets the kept fd before it releases the handle, and before
 *    the chunk goes to another tenant (scrubbed reuse), which then gets
 *    fds of a new export, as before the cache.
 *
 * fd budget: a kept fd costs vmmd one fd while its chunk lives (the
 * emulator's chunks are fds already: two each).  fds are numbered lowest
 * free first, so a new fd numbered n says that n fds are open: a fresh
 * export is kept only while that is under half of RLIMIT_NOFILE (and the
 * kept ones under a quarter); one numbered past three quarters, a failed
 * dup, or an accept out of fds (server.c) closes every kept fd at once:
 * a connection is never refused for the cache's sake, and a grant that
 * finds no room to keep an fd exports afresh, as before the cache.
 */
#include "vmmd.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

/* If RLIMIT_NOFILE is unlimited or larger. */
#define VMMD_EXPORT_MAX_NOFILE	(1 << 22)

static struct vmmd_chunk_list	export_list = TAILQ_HEAD_INITIALIZER(export_list);
static unsigned			export_kept;
static int			export_nofile;	/* 0: not read yet */

/* RLIMIT_NOFILE, read once (main.c has raised it before any grant). */
static int
export_limit(void)
{
	struct rlimit rl;

	if (export_nofile == 0) {
		if (getrlimit(RLIMIT_NOFILE, &rl) != 0 ||
		    rl.rlim_cur == RLIM_INFINITY ||
		    rl.rlim_cur > VMMD_EXPORT_MAX_NOFILE)
			export_nofile = VMMD_EXPORT_MAX_NOFILE;
		else
			export_nofile = rl.rlim_cur > 8 ? (int)rl.rlim_cur : 8;
	}
	return export_nofile;
}

/* Keeps fd (a fresh export of ch) if the fd budget allows; the fd for the
 * grant, fd itself or a dup of it. */
static int
export_keep(struct vmmd_chunk *ch, int fd)
{
	int lim = export_limit(), dup;

	if (fd >= lim / 4 * 3) {
		vmmd_export_shed();
		return fd;
	}
	if (fd >= lim / 2 || export_kept >= (unsigned)lim / 4 ||
	    (dup = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return fd;
	ch->xfd = fd;
	ch->xkept = true;
	TAILQ_INSERT_TAIL(&export_list, ch, xlink);
	export_kept++;
	return dup;
}

CUresult
vmmd_export_fd(struct vmmd_chunk *ch, int *out)
{
	CUresult r;
	int fd = -1;

	if (ch->xkept) {
		if ((*out = fcntl(ch->xfd, F_DUPFD_CLOEXEC, 0)) >= 0)
			return CUDA_SUCCESS;
		if (errno != EMFILE && errno != ENFILE)
			return CUDA_ERROR_OPERATING_SYSTEM;
		vmmd_export_shed();	/* ch's too: exported afresh below */
	}
	r = cuMemExportToShareableHandle(&fd, ch->handle,
	    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
	/* Failed, perhaps for want of an fd: once more without the kept. */
	if (r != CUDA_SUCCESS && vmmd_export_shed() > 0)
		r = cuMemExportToShareableHandle(&fd, ch->handle,
		    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
	if (r != CUDA_SUCCESS)
		return r;
	*out = export_keep(ch, fd);
	return CUDA_SUCCESS;
}

void
vmmd_export_forget(struct vmmd_chunk *ch)
{
	if (!ch->xkept)
		return;
	TAILQ_REMOVE(&export_list, ch, xlink);
	close(ch->xfd);
	ch->xfd = -1;
	ch->xkept = false;
	export_kept--;
}

unsigned
vmmd_export_shed(void)
{
	unsigned n = export_kept;

	while (!TAILQ_EMPTY(&export_list))
		vmmd_export_forget(TAILQ_FIRST(&export_list));
	return n;
}
