/*
 * Pointer queries on the broker's memory: cuPointerGetAttribute(s) with
 * CU_POINTER_ATTRIBUTE_RANGE_START_ADDR and CU_POINTER_ATTRIBUTE_RANGE_SIZE.
 *
 * On VMM memory the driver answers those with the whole address
 * reservation; the broker's reservation holds many allocations (and a
 * small block shares its chunk with others), so a program that registers
 * [start, start + size) for RDMA or IPC, or sizes a copy by it, would reach
 * other allocations.  For a pointer inside one of the client's allocations
 * (large or small, at any offset in it) the range is that allocation, as
 * for cudaMalloc memory; for a pointer in the broker's address space that
 * no allocation holds (freed, cached), there is none, as after a real
 * cudaFree.  The driver is asked first, so its checks (context, arguments)
 * and every other attribute stay its own; the MAPPING_* attributes keep
 * describing the physical mapping (a chunk), which they are documented to.
 * cuMemGetAddressRange is answered the same way in shim_hooks.c.
 */
#include "shim.h"

#include <stdint.h>

#include "vmmc_shim.h"

/* What the broker knows of ptr: 1 inside an allocation (*base, *size set),
 * 0 in its address space but in no allocation, -1 not its memory. */
static int
shim_ptr_alloc(CUdeviceptr ptr, CUdeviceptr *base, size_t *size)
{
	void *p = (void *)(uintptr_t)ptr, *b;
	size_t s;

	if (ptr == 0 || vmmc_mode() != VMMC_MODE_VMM || !vmmc_in_va(p))
		return -1;
	if (vmm_get_range(p, &b, &s) != VMM_OK)
		return 0;
	*base = (CUdeviceptr)(uintptr_t)b;
	*size = s;
	return 1;
}

static bool
shim_range_attr(CUpointer_attribute a)
{
	return a == CU_POINTER_ATTRIBUTE_RANGE_START_ADDR ||
	    a == CU_POINTER_ATTRIBUTE_RANGE_SIZE;
}

/* Writes the allocation's range attribute a (known 0: no allocation). */
static void
shim_range_put(void *data, CUpointer_attribute a, CUdeviceptr base,
    size_t size)
{
	if (a == CU_POINTER_ATTRIBUTE_RANGE_START_ADDR)
		*(CUdeviceptr *)data = base;
	else
		*(size_t *)data = size;
}

SHIM_EXPORT CUresult CUDAAPI
cuPointerGetAttribute(void *data, CUpointer_attribute attribute,
    CUdeviceptr ptr)
{
	shim_pfn_cuPointerGetAttribute real = SHIM_REAL(cuPointerGetAttribute);
	CUdeviceptr base = 0;
	size_t size = 0;
	CUresult r;
	int k;

	if (real == NULL)
		return CUDA_ERROR_NOT_FOUND;
	if (shim_depth > 0 || data == NULL || !shim_range_attr(attribute))
		return real(data, attribute, ptr);
	shim_depth++;
	k = shim_ptr_alloc(ptr, &base, &size);
	r = real(data, attribute, ptr);
	/* No allocation holds it: not device memory, as after cudaFree. */
	if (r == CUDA_SUCCESS && k == 0)
		r = CUDA_ERROR_INVALID_VALUE;
	else if (r == CUDA_SUCCESS && k == 1)
		shim_range_put(data, attribute, base, size);
	shim_depth--;
	return r;
}

SHIM_EXPORT CUresult CUDAAPI
cuPointerGetAttributes(unsigned int numAttributes,
    CUpointer_attribute *attributes, void **data, CUdeviceptr ptr)
{
	shim_pfn_cuPointerGetAttributes real = SHIM_REAL(cuPointerGetAttributes);
	CUdeviceptr base = 0;
	size_t size = 0;
	unsigned int i;
	CUresult r;

	if (real == NULL)
		return CUDA_ERROR_NOT_FOUND;
	if (shim_depth > 0)
		return real(numAttributes, attributes, data, ptr);
	shim_depth++;
	r = real(numAttributes, attributes, data, ptr);
	/* The driver checked attributes and data; an allocation's range, or
	 * the zeros of "no such memory". */
	if (r == CUDA_SUCCESS && shim_ptr_alloc(ptr, &base, &size) >= 0) {
		for (i = 0; i < numAttributes; i++)
			if (shim_range_attr(attributes[i]) && data[i] != NULL)
				shim_range_put(data[i], attributes[i], base,
				    size);
	}
	shim_depth--;
	return r;
}

/* Hidden aliases (see shim.h), here where the hooks are defined. */
#define SHIM_ALIAS_DEF(name, fam)					\
	extern __typeof__(name) shim_hook_##name			\
	    __attribute__((alias(#name)));
SHIM_HOOKS_POINTER(SHIM_ALIAS_DEF)
#undef SHIM_ALIAS_DEF
