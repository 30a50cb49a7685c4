/*
 * cuemu.h: the emulator-only entry points, for tests (and the demo).  They
 * are exported by cuemu's libcuda.so.1 only, so a program linked against
 * the toolkit's stub finds them at run time with dlsym; on a real driver
 * cuemu_available() is false and a test skips what needs them.
 *
 *   cuemuLaunchWrite(dst, pattern, bytes, delay_us, stream)
 *       An emulated kernel: on stream, writes the 32-bit pattern
 *       (little-endian, repeated) over [dst, dst+bytes), ending delay_us
 *       after the stream reached it.  Like a kernel launch, it checks only
 *       its arguments and the stream when issued; the addresses are checked
 *       when it runs (a fault if unmapped then).  _ptsz: per-thread stream.
 *   cuemuGetCounter(name, &value)
 *       A process-wide counter: "ctx_syncs" (cuCtxSynchronize calls),
 *       "stream_syncs", "event_syncs", "launches", "faults" (queued work
 *       that found its memory unmapped or inaccessible when it ran), and
 *       "busy_releases" (cuMemUnmap, cuMemFree or a stream-ordered free of
 *       memory that queued work still touches), "handle_refs" (VMM
 *       handle references the process holds: created, imported or
 *       retained, less released), and the latency profile's counters
 *       (tests/cuemu/README.md).  0, or -1 for an unknown name.
 */
#ifndef CUEMU_H
#define CUEMU_H

#include <cuda.h>
#include <dlfcn.h>
#include <stddef.h>

typedef CUresult (*cuemu_pfn_launch_write)(CUdeviceptr dst,
    unsigned int pattern, size_t bytes, unsigned int delay_us,
    CUstream stream);
typedef int (*cuemu_pfn_get_counter)(const char *name,
    unsigned long long *value);

static inline void *
cuemu_sym(const char *name)
{
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
	void *p = NULL;

	if (h != NULL) {
		p = dlsym(h, name);
		dlclose(h);
	}
	return p;
}

static inline int
cuemu_available(void)
{
	return cuemu_sym("cuemuGetCounter") != NULL;
}

/* CUDA_ERROR_NOT_SUPPORTED on a real driver. */
static inline CUresult
cuemu_launch_write(CUdeviceptr dst, unsigned int pattern, size_t bytes,
    unsigned int delay_us, CUstream stream)
{
	cuemu_pfn_launch_write f =
	    (cuemu_pfn_launch_write)cuemu_sym("cuemuLaunchWrite");

	return f != NULL ? f(dst, pattern, bytes, delay_us, stream) :
	    CUDA_ERROR_NOT_SUPPORTED;
}

/* The counter's value; 0 on a real driver or for an unknown name. */
static inline unsigned long long
cuemu_counter(const char *name)
{
	cuemu_pfn_get_counter f =
	    (cuemu_pfn_get_counter)cuemu_sym("cuemuGetCounter");
	unsigned long long v = 0;

	if (f == NULL || f(name, &v) != 0)
		return 0;
	return v;
}

#endif
