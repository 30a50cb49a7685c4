/*
 * Device virtual address space: large reservations (VMM_RESERVE_SIZE_MB,
 * default twice the device's memory) carved by a first-fit range allocator
 * whose free list coalesces neighbours.  Ranges never span two reservations,
 * because a mapping may not.  More reservations are made when one is full.
 */
#include "client_internal.h"

#include <stdlib.h>
#include <string.h>

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

/* Makes a new reservation big enough for size + align. */
static int
va_grow(struct va_dev *d, int dev, uint64_t size, uint64_t align)
{
	const struct vmmc_settings *st = vmmc_settings_get();
	uint64_t want = st->reserve_mb << 20;
	CUdeviceptr base;
	size_t total = 0;
	CUdevice cudev;
	CUresult r;

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
	want = (want + align - 1) & ~(align - 1);
	if (d->nresv == d->capresv) {
		uint32_t n = d->capresv ? d->capresv * 2 : 4;
		CUdeviceptr *nb = realloc(d->resv_base, n * sizeof(*nb));
		uint64_t *ns;

		if (nb == NULL)
			return VMM_ENOMEM;
		d->resv_base = nb;
		if ((ns = realloc(d->resv_size, n * sizeof(*ns))) == NULL)
			return VMM_ENOMEM;
		d->resv_size = ns;
		d->capresv = n;
	}
	if ((r = cuMemAddressReserve(&base, want, align, 0, 0)) != CUDA_SUCCESS) {
		vmm_log_error("cuMemAddressReserve(%llu MiB): error %d",
		    (unsigned long long)(want >> 20), (int)r);
		return VMM_ECUDA;
	}
	d->resv_base[d->nresv] = base;
	d->resv_size[d->nresv] = want;
	if (va_release(d, base, want, d->nresv) != 0) {
		cuMemAddressFree(base, want);
		return VMM_ENOMEM;
	}
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
		if ((rc = va_grow(d, dev, size, align)) != 0) {
			pthread_mutex_unlock(&d->lock);
			return rc;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return VMM_ENOMEM;
}

void
vmmc_va_free(int dev, CUdeviceptr base, uint64_t size)
{
	struct va_dev *d = &va_devs[dev];
	uint32_t resv;

	pthread_mutex_lock(&d->lock);
	if ((resv = va_resv_of(d, base)) != UINT32_MAX)
		va_release(d, base, size, resv);
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
	int d;

	for (d = 0; d < VMMC_MAX_DEVICES && !r; d++) {
		struct va_dev *v = &va_devs[d];

		if (__atomic_load_n(&v->nresv, __ATOMIC_RELAXED) == 0)
			continue;
		pthread_mutex_lock(&v->lock);
		r = va_resv_of(v, addr) != UINT32_MAX;
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
		memset(&va_devs[i], 0, sizeof(va_devs[i]));
		pthread_mutex_init(&va_devs[i].lock, NULL);
	}
	va_reserved_total = 0;
}
