/*
 * The CUDA driver, loaded lazily.  vmmd and libvmm_client.so are not linked
 * against libcuda.so.1: a process that never makes a CUDA call (a shell
 * under /etc/ld.so.preload, `vmmd --help` on a machine without a driver)
 * must not need it.  cudrv.c defines, hidden, each driver function they
 * call, under its ABI name; the first call of any of them dlopens
 * "libcuda.so.1" and each looks its real function up once.  Callers keep
 * calling cuMemMap() and the like as usual: the definitions stand in for
 * the driver's at link time and nowhere else (hidden: never exported, never
 * seen by the application or by the driver itself).
 *
 * A function the product starts calling must be added to CUDRV_FUNCS in
 * cudrv.c, or the link fails (undefined reference; libvmm_client.so links
 * with --no-undefined).  A name the shim hooks (cuMemGetInfo_v2, ...) has a
 * stand-in only in vmmd's copy (vmm_cudrv_daemon): in libvmm_client.so the
 * exported hook is that name's definition, as it always was, and a second
 * definition there is a link error.
 */
#ifndef VMM_CUDRV_H
#define VMM_CUDRV_H

#include <stdbool.h>

/* Whether libcuda.so.1 is (or can now be) loaded; loads it on first call. */
bool		vmm_cudrv_load(void);
/* Why it could not be loaded (dlerror's words), or NULL if it was. */
const char	*vmm_cudrv_error(void);
/* Whether it is loaded, never loading it. */
bool		vmm_cudrv_loaded(void);

#endif
