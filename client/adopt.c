/*
 * Adopt after a daemon restart: tell a new vmmd instance which VA this
 * process has reserved (its address plan, va.c) and which chunks it still
 * maps, so it counts them and hands out new ids.  conn.c
 * calls this (through the hook the API registers) with the connection
 * locked, only toward a daemon of another instance.
 *
 * No allocator lock is held while vmmd is asked: the chunk lists are
 * copied, each chunk is exported through its mapping, and the new ids are
 * written back afterwards to the chunks still mapped where they were.  A
 * chunk freed meanwhile keeps its old id in vmmd's eyes; vmmd reclaims it
 * when this process exits.  A chunk vmmd refuses (it tracks that memory
 * already) gets id 0: it stays mapped and is never released by id.
 */
#include "client_internal.h"

#include <stdlib.h>
#include <unistd.h>

#include "frame.h"

#define ADOPT_BATCH VMM_PROTO_MAX_CHUNKS

/* Adopts v[0..n) in batches; their ids are set (0: not adopted).  Returns
 * 0 or the last error. */
static int
adopt_list(struct vmmc_conn *c, struct vmmc_mapped_chunk *v, size_t n)
{
	CUmemGenericAllocationHandle h;
	uint64_t sizes[ADOPT_BATCH], ids[ADOPT_BATCH];
	struct vmmc_mapped_chunk *which[ADOPT_BATCH];
	int fds[ADOPT_BATCH], rc = 0, r;
	size_t i = 0, k, j;

	while (i < n) {
		for (k = 0; i < n && k < ADOPT_BATCH; i++) {
			int fd = -1;

			v[i].id = 0;
			/* Unmapped meanwhile: nothing to adopt. */
			if (cuMemRetainAllocationHandle(&h,
			    (void *)(uintptr_t)v[i].va) != CUDA_SUCCESS)
				continue;
			if (cuMemExportToShareableHandle(&fd, h,
			    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0) !=
			    CUDA_SUCCESS)
				fd = -1;
			cuMemRelease(h);
			if (fd < 0) {
				rc = VMM_ECUDA;
				continue;
			}
			sizes[k] = v[i].size;
			fds[k] = fd;
			which[k++] = &v[i];
		}
		if (k == 0)
			continue;
		/* The fds are taken, sent or not. */
		if ((r = vmmc_conn_adopt_locked(c, sizes, fds, k, ids)) != 0) {
			rc = r;
			continue;
		}
		for (j = 0; j < k; j++)
			which[j]->id = ids[j];
	}
	return rc;
}

/* Copies the chunk list of one allocator (sized by a first count; it may
 * grow in between, so counted again), adopts it, writes the ids back. */
static int
adopt_from(struct vmmc_conn *c, int dev,
    size_t (*list)(int, struct vmmc_mapped_chunk *, size_t),
    void (*set_ids)(int, const struct vmmc_mapped_chunk *, size_t))
{
	struct vmmc_mapped_chunk *v = NULL, *nv;
	size_t cap = 0, n;
	int rc;

	while ((n = list(dev, v, cap)) > cap) {
		if ((nv = realloc(v, (n + 16) * sizeof(*v))) == NULL) {
			free(v);
			return VMM_ENOMEM;
		}
		v = nv;
		cap = n + 16;
	}
	rc = adopt_list(c, v, n);
	set_ids(dev, v, n);
	free(v);
	return rc;
}

int
vmmc_adopt_all(struct vmmc_conn *c, int dev)
{
	int rc, rs, rm, ra, rv;

	/* The address plan first: the reservations are this process's
	 * before a newcomer could be planned into them. */
	rv = vmmc_va_claim_all(c, dev);
	rc = adopt_from(c, dev, vmmc_large_chunks, vmmc_large_set_ids);
	rs = adopt_from(c, dev, vmmc_small_chunks, vmmc_small_set_ids);
	rm = adopt_from(c, dev, vmmc_medium_chunks, vmmc_medium_set_ids);
	ra = vmmc_app_adopt(c, dev);
	return rc != 0 ? rc : rs != 0 ? rs : rm != 0 ? rm : ra != 0 ? ra : rv;
}
