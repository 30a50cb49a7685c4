/*
 * Device virtual address space: large reservations (VMM_RESERVE_SIZE_MB,
 * default twice the device's memory) carved by a first-fit range allocator
 * whose free list coalesces neighbours.  Ranges never span two reservations,
 * because a mapping may not.  More reservations are made when one is full.
 *
 * vmmd owns the address plan (README "Address plan"): before a reservation
 * the device's vmmd says where (VaRequest), disjoint from every other
 * client of that GPU, and that address is cuMemAddressReserve's hint.  A
 * hint is only a hint (cuda.h): when the driver puts the reservation
 * elsewhere, vmmd is told (VaPlaced, counted as va_hint_missed) and this
 * process goes on with what it got; no vmmd, an older one, or a refusal
 * means no hint at all.  Nothing fails for want of a plan.  No lock of
 * this file is held while vmmd is asked (conn.c may call back here, the
 * connection locked, to claim the reservations after a daemon restart).
 *
 * An IPC import may also get a reservation of its own at exactly its
 * exporter's address (vmmc_va_alloc_at), freed with the import.
 */
#include "client_internal.h"

#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "log.h"

struct va_free {
	CUdeviceptr	base;
	uint64_t	size;
	uint32_t	resv;	/* reservation index */
};

struct va_dev {
	pthread_mutex_t	lock;
	struct va_free	*free;	/* sorted by base */
	size_t		nfree, capfree;
	CUdeviceptr	*resv_base;
	uint64_t	*resv_size;
	uint32_t	nresv, capresv;
	/* Reservations of one IPC import each, at its exporter's address. */
	CUdeviceptr	*exact_base;
	uint64_t	*exact_size;
	uint32_t	nexact, capexact;
};

static struct va_dev	va_devs[VMMC_MAX_DEVICES] = {
#define VA_INIT { .lock = PTHREAD_MUTEX_INITIALIZER }
	VA_INIT, VA_INIT, VA_INIT, VA_INIT, VA_INIT, VA_INIT, VA_INIT, VA_INIT,
	VA_INIT, VA_INIT, VA_INIT, VA_INIT, VA_INIT, VA_INIT, VA_INIT, VA_INIT,
#undef VA_INIT
};
static uint64_t		va_reserved_total;

/* Inserts a free range at index i. */
static int
va_insert(struct va_dev *d, size_t i, CUdeviceptr base, uint64_t size,
    uint32_t resv)
{
	if (d->nfree == d->capfree) {
		size_t n = d->capfree ? d->capfree * 2 : 64;
		struct va_free *nf = realloc(d->free, n * sizeof(*nf));

		if (nf == NULL)
			return -1;
		d->free = nf;
		d->capfree = n;
	}
	memmove(&d->free[i + 1], &d->free[i], (d->nfree - i) * sizeof(*d->free));
	d->free[i].base = base;
	d->free[i].size = size;
	d->free[i].resv = resv;
	d->nfree++;
	return 0;
}

static void
va_remove(struct va_dev *d, size_t i)
{
	memmove(&d->free[i], &d->free[i + 1],
	    (d->nfree - i - 1) * sizeof(*d->free));
	d->nfree--;
}

/* Index of the first free range with base >= addr. */
static size_t
va_index(const struct va_dev *d, CUdeviceptr addr)
{
	size_t lo = 0, hi = d->nfree;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (d->free[mid].base < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Adds a free range, merging with neighbours of the same reservation. */
static int
va_release(struct va_dev *d, CUdeviceptr base, uint64_t size, uint32_t resv)
{
	size_t i = va_index(d, base);
	struct va_free *prev = i > 0 ? &d->free[i - 1] : NULL;
	struct va_free *next = i < d->nfree ? &d->free[i] : NULL;

	if (prev != NULL && prev->resv == resv && prev->base + prev->size == base) {
		prev->size += size;
		if (next != NULL && next->resv == resv &&
		    prev->base + prev->size == next->base) {
			prev->size += next->size;
			va_remove(d, i);
		}
		return 0;
	}
	if (next != NULL && next->resv == resv && base + size == next->base) {
		next->base = base;
		next->size += size;
		return 0;
	}
	return va_insert(d, i, base, size, resv);
}

static uint32_t
va_resv_of(const struct va_dev *d, CUdeviceptr addr)
{
	uint32_t r;

	for (r = 0; r < d->nresv; r++)
		if (addr >= d->resv_base[r] &&
		    addr - d->resv_base[r] < d->resv_size[r])
			return r;
	return UINT32_MAX;
}

/* Grows a pair of arrays (bases, sizes) of *cap entries by doubling. */
static int
va_grow_arrays(CUdeviceptr **base, uint64_t **size, uint32_t *cap)
{
	uint32_t n = *cap ? *cap * 2 : 4;
	CUdeviceptr *nb = realloc(*base, n * sizeof(*nb));
	uint64_t *ns;

	if (nb == NULL)
		return -1;
	*base = nb;
	if ((ns = realloc(*size, n * sizeof(*ns))) == NULL)
		return -1;
	*size = ns;
	*cap = n;
	return 0;
}

/* How much a new reservation for size + align reserves. */
static uint64_t
va_want(int dev, uint64_t size, uint64_t align)
{
	const struct vmmc_settings *st = vmmc_settings_get();
	uint64_t want = st->reserve_mb << 20;
	size_t total = 0;
	CUdevice cudev;

	if (want == 0) {
		if (cuDeviceGet(&cudev, dev) == CUDA_SUCCESS)
			cuDeviceTotalMem(&total, cudev);
		want = 2 * (uint64_t)total;
		if (want < (4ull << 30))
			want = 4ull << 30;
	}
	if (want < size + align)
		want = size + align;
	/* A whole number of alignments: align is a power of two at least the
	 * driver's granularity (never an assumed 2 MiB). */
	return (want + align - 1) & ~(align - 1);
}

/* Reserves want bytes where vmmd's plan says (if it says), without any
 * lock of this file held: 0 and *out, or VMM_ECUDA. */
static int
va_reserve(int dev, uint64_t want, uint64_t align, CUdeviceptr *out)
{
	struct vmmc_conn *c = vmmc_conn_get(dev);
	uint64_t planned = 0;
	CUresult r;

	if (c != NULL && vmmc_conn_va_request(c, want, align, &planned) != 0)
		planned = 0;	/* no plan: anywhere */
	r = cuMemAddressReserve(out, want, align, (CUdeviceptr)planned, 0);
	/* A hint never makes a reservation fail. */
	if (r != CUDA_SUCCESS && planned != 0)
		r = cuMemAddressReserve(out, want, align, 0, 0);
	if (r != CUDA_SUCCESS) {
		/* A planned range not taken stays ours in the plan until
		 * this process is gone: unused VA, nothing more. */
		vmm_log_error("cuMemAddressReserve(%llu MiB): error %d",
		    (unsigned long long)(want >> 20), (int)r);
		return VMM_ECUDA;
	}
	if (planned != 0 && *out != planned) {
		vmm_log_debug("VA_MISS Planned=0x%llx Ptr=0x%llx Size=%llu",
		    (unsigned long long)planned, (unsigned long long)*out,
		    (unsigned long long)want);
		vmmc_conn_va_placed(c, planned, *out, want, false);
	}
	return 0;
}

/* Records a new reservation [base, base + want) of d; lock held.  On
 * failure the reservation is freed. */
static int
va_add_resv(struct va_dev *d, CUdeviceptr base, uint64_t want)
{
	if ((d->nresv == d->capresv && va_grow_arrays(&d->resv_base,
	    &d->resv_size, &d->capresv) != 0) ||
	    va_release(d, base, want, d->nresv) != 0) {
		cuMemAddressFree(base, want);
		return VMM_ENOMEM;
	}
	d->resv_base[d->nresv] = base;
	d->resv_size[d->nresv] = want;
	d->nresv++;
	__atomic_add_fetch(&va_reserved_total, want, __ATOMIC_RELAXED);
	vmm_log_debug("RESERVE Ptr=0x%llx Size=%llu", (unsigned long long)base,
	    (unsigned long long)want);
	return 0;
}

int
vmmc_va_alloc(int dev, uint64_t size, uint64_t align, CUdeviceptr *out)
{
	struct va_dev *d = &va_devs[dev];
	CUdeviceptr base;
	uint64_t want;
	int tries, rc;
	size_t i;

	if (size == 0 || align == 0)
		return VMM_EINVAL;
	/* A chunk unit of 3 x 2 MiB gives 2 MiB: granularity aligned. */
	align &= ~align + 1;
	pthread_mutex_lock(&d->lock);
	for (tries = 0; tries < 2; tries++) {
		for (i = 0; i < d->nfree; i++) {
			struct va_free *f = &d->free[i];
			CUdeviceptr a = (f->base + align - 1) & ~(CUdeviceptr)(align - 1);
			uint64_t lead = a - f->base;
			struct va_free fr = *f;

			if (lead > f->size || f->size - lead < size)
				continue;
			va_remove(d, i);
			if (lead > 0)
				va_release(d, fr.base, lead, fr.resv);
			if (fr.size - lead > size)
				va_release(d, a + size, fr.size - lead - size, fr.resv);
			pthread_mutex_unlock(&d->lock);
			*out = a;
			return 0;
		}
		/* vmmd is asked without the lock (another thread may grow
		 * meanwhile: then two reservations, both used). */
		pthread_mutex_unlock(&d->lock);
		want = va_want(dev, size, align);
		if ((rc = va_reserve(dev, want, align, &base)) != 0)
			return rc;
		pthread_mutex_lock(&d->lock);
		if ((rc = va_add_resv(d, base, want)) != 0) {
			pthread_mutex_unlock(&d->lock);
			return rc;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return VMM_ENOMEM;
}

/* Index of the IPC reservation at base of size bytes, or UINT32_MAX. */
static uint32_t
va_exact_of(const struct va_dev *d, CUdeviceptr base, uint64_t size)
{
	uint32_t i;

	for (i = 0; i < d->nexact; i++)
		if (d->exact_base[i] == base && (size == 0 ||
		    d->exact_size[i] == size))
			return i;
	return UINT32_MAX;
}

int
vmmc_va_alloc_at(int dev, CUdeviceptr addr, uint64_t size)
{
	struct va_dev *d = &va_devs[dev];
	CUdeviceptr got = 0;
	uint32_t r;

	if (addr == 0 || size == 0 || addr + size < addr)
		return -1;
	/* Inside our own reservations: only if that range is free there. */
	if (vmmc_va_take(dev, addr, size) == 0)
		return 0;
	pthread_mutex_lock(&d->lock);
	for (r = 0; r < d->nresv; r++)
		if (addr < d->resv_base[r] + d->resv_size[r] &&
		    d->resv_base[r] < addr + size)
			break;
	if (r < d->nresv || (d->nexact == d->capexact &&
	    va_grow_arrays(&d->exact_base, &d->exact_size, &d->capexact) != 0)) {
		pthread_mutex_unlock(&d->lock);
		return -1;
	}
	if (cuMemAddressReserve(&got, size, 0, addr, 0) != CUDA_SUCCESS) {
		pthread_mutex_unlock(&d->lock);
		return -1;
	}
	if (got != addr) {
		cuMemAddressFree(got, size);
		pthread_mutex_unlock(&d->lock);
		return -1;
	}
	d->exact_base[d->nexact] = addr;
	d->exact_size[d->nexact] = size;
	d->nexact++;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void
vmmc_va_free(int dev, CUdeviceptr base, uint64_t size)
{
	struct va_dev *d = &va_devs[dev];
	uint32_t resv;

	pthread_mutex_lock(&d->lock);
	if ((resv = va_resv_of(d, base)) != UINT32_MAX)
		va_release(d, base, size, resv);
	else if ((resv = va_exact_of(d, base, size)) != UINT32_MAX) {
		cuMemAddressFree(base, size);
		d->nexact--;
		d->exact_base[resv] = d->exact_base[d->nexact];
		d->exact_size[resv] = d->exact_size[d->nexact];
	}
	pthread_mutex_unlock(&d->lock);
}

int
vmmc_va_take(int dev, CUdeviceptr base, uint64_t size)
{
	struct va_dev *d = &va_devs[dev];
	size_t i;
	int rc = -1;

	pthread_mutex_lock(&d->lock);
	i = va_index(d, base + 1);
	/* The free range holding base starts at or before it. */
	if (i > 0) {
		struct va_free fr = d->free[i - 1];

		if (fr.base <= base && base - fr.base <= fr.size &&
		    fr.size - (base - fr.base) >= size) {
			va_remove(d, i - 1);
			if (base > fr.base)
				va_release(d, fr.base, base - fr.base, fr.resv);
			if (fr.base + fr.size > base + size)
				va_release(d, base + size,
				    fr.base + fr.size - (base + size), fr.resv);
			rc = 0;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

bool
vmmc_va_contains(CUdeviceptr addr)
{
	bool r = false;
	uint32_t i;
	int d;

	for (d = 0; d < VMMC_MAX_DEVICES && !r; d++) {
		struct va_dev *v = &va_devs[d];

		if (__atomic_load_n(&v->nresv, __ATOMIC_RELAXED) == 0)
			continue;
		pthread_mutex_lock(&v->lock);
		r = va_resv_of(v, addr) != UINT32_MAX;
		for (i = 0; i < v->nexact && !r; i++)
			r = addr >= v->exact_base[i] &&
			    addr - v->exact_base[i] < v->exact_size[i];
		pthread_mutex_unlock(&v->lock);
	}
	return r;
}

uint64_t
vmmc_va_reserved(void)
{
	return __atomic_load_n(&va_reserved_total, __ATOMIC_RELAXED);
}

void
vmmc_va_forget_all(void)
{
	int i;

	for (i = 0; i < VMMC_MAX_DEVICES; i++) {
		pthread_mutex_init(&va_devs[i].lock, NULL);
		free(va_devs[i].free);
		free(va_devs[i].resv_base);
		free(va_devs[i].resv_size);
		free(va_devs[i].exact_base);
		free(va_devs[i].exact_size);
		memset(&va_devs[i], 0, sizeof(va_devs[i]));
		pthread_mutex_init(&va_devs[i].lock, NULL);
	}
	va_reserved_total = 0;
}

int
vmmc_va_claim_all(struct vmmc_conn *c, int dev)
{
	uint64_t addrs[VMM_PROTO_MAX_VA_RANGES], sizes[VMM_PROTO_MAX_VA_RANGES];
	bool ok[VMM_PROTO_MAX_VA_RANGES];
	struct va_dev *d = &va_devs[dev];
	uint32_t from = 0, k, i;
	int rc = 0, r;

	/* In batches, copied under the lock, sent without it.  IPC imports'
	 * reservations are their exporters' ranges: not claimed. */
	for (;;) {
		pthread_mutex_lock(&d->lock);
		for (k = 0; from + k < d->nresv && k < VMM_PROTO_MAX_VA_RANGES;
		    k++) {
			addrs[k] = d->resv_base[from + k];
			sizes[k] = d->resv_size[from + k];
		}
		pthread_mutex_unlock(&d->lock);
		if (k == 0)
			return rc;
		from += k;
		if ((r = vmmc_conn_va_claim_locked(c, addrs, sizes, k, ok)) != 0) {
			/* An older vmmd has no plan to restore. */
			return r == VMM_ENODAEMON ? rc : r;
		}
		for (i = 0; i < k; i++)
			if (!ok[i])
				vmm_log_debug("VA_CLAIM_REFUSED Ptr=0x%llx "
				    "Size=%llu", (unsigned long long)addrs[i],
				    (unsigned long long)sizes[i]);
	}
}
