/*
 * The hook list made tables, and the dlsym interposer.
 *
 * Real symbols: dlsym(RTLD_NEXT, name) from this library gives the next
 * definition after ours (the driver's or the runtime's, or the next
 * interposer's), resolved once for the whole table.  A symbol whose library
 * is not loaded yet (libcuda dlopen'd by the runtime later, or a libcudart
 * loaded RTLD_LOCAL, which RTLD_NEXT never sees) is looked up again on use,
 * then in that library's own handle.
 *
 * dlsym: the runtime dlopens libcuda.so.1 and asks dlsym(handle,
 * "cuGetProcAddress_v2"); a lookup in a handle never sees a preloaded
 * definition, so dlsym itself is interposed.  For one of our driver ABI
 * names, looked up in any handle but RTLD_NEXT, it answers with our hook
 * whenever the real answer is the driver's function (or already ours).
 * Everything else must behave as if we were not there, and glibc's dlsym
 * decides RTLD_NEXT and RTLD_DEFAULT by the *caller's* object (its return
 * address): so on x86_64 the exported dlsym is a small assembly thunk that
 * asks shim_dlsym_pre() and otherwise tail-jumps to the real dlsym with the
 * caller's return address untouched.  Elsewhere a C fallback calls it, and
 * RTLD_NEXT/RTLD_DEFAULT lookups are then made relative to this library.
 *
 * The real dlsym comes from dlvsym(RTLD_NEXT, "dlsym", <glibc version>).
 * dlvsym is therefore not interposed: our own call would bind to it, and
 * nothing would be left to find the real one with.  No CUDA loader uses
 * dlvsym (libcuda's symbols are unversioned).
 *
 * The dlsym path runs very early (sanitizer runtimes resolve their
 * interceptors with dlsym before they are initialised), so it is not
 * instrumented, allocates nothing and calls no intercepted libc function.
 */
#include "shim.h"

#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

/* Not instrumented at all: runs before sanitizer runtimes are ready. */
#define SHIM_NO_SANITIZE \
	__attribute__((no_sanitize("address", "undefined", "thread")))

/* An entry looked up in its loaded library and not there: final. */
#define SHIM_MISSING	((void *)(uintptr_t)1)

#define SHIM_LIBCUDA		"libcuda.so.1"
#define SHIM_LIBCUDART_PREFIX	"libcudart.so"

#if defined(__x86_64__)
#define SHIM_GLIBC_BASE	"GLIBC_2.2.5"
#elif defined(__aarch64__)
#define SHIM_GLIBC_BASE	"GLIBC_2.17"
#endif

typedef void *(*shim_dlsym_fn)(void *, const char *);

/* The real dlsym, NULL until found; read by the x86_64 thunk, hence not
 * static.  Found without pthread_once, which sanitizers intercept: racing
 * threads find the same pointer. */
shim_dlsym_fn		shim_next_dlsym SHIM_HIDDEN __attribute__((used));

struct shim_symdef {
	const char	*name;
	int		 fam;
};

static const struct shim_symdef shim_syms[SHIM_NSYMS] = {
#define SHIM_DEF(name, fam)	{ #name, fam },
	SHIM_HOOKS(SHIM_DEF)
	SHIM_CALLS(SHIM_DEF)
#undef SHIM_DEF
};

/* Our hook for each hooked symbol, by the same index. */
static void *const shim_hooks[SHIM_NHOOKS] = {
#define SHIM_HOOKADDR(name, fam)	(void *)&shim_hook_##name,
	SHIM_HOOKS(SHIM_HOOKADDR)
#undef SHIM_HOOKADDR
};

/* Real functions: NULL not found yet, SHIM_MISSING absent.  Written once
 * by shim_resolve_all (under shim_once), later only NULL -> value. */
static void		*shim_reals[SHIM_NSYMS];
static pthread_once_t	 shim_once = PTHREAD_ONCE_INIT;
static int		 shim_resolved;	/* set once shim_once has run */
/* Handles of the driver and of a runtime found loaded; never closed. */
static void		*shim_h_driver, *shim_h_runtime;

/* Finds the real dlsym if not known yet; false if there is none. */
static SHIM_NO_SANITIZE bool
shim_dl_boot(void)
{
	void *fn;

	if (__atomic_load_n(&shim_next_dlsym, __ATOMIC_ACQUIRE) != NULL)
		return true;
	fn = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
#ifdef SHIM_GLIBC_BASE
	if (fn == NULL)		/* glibc < 2.34 */
		fn = dlvsym(RTLD_NEXT, "dlsym", SHIM_GLIBC_BASE);
#endif
	__atomic_store_n(&shim_next_dlsym, (shim_dlsym_fn)fn, __ATOMIC_RELEASE);
	return fn != NULL;
}

/* strcmp that no sanitizer intercepts. */
static SHIM_NO_SANITIZE bool
shim_streq(const char *a, const char *b)
{
	while (*a != '\0' && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

/* The index of the hooked driver ABI symbol called name, or -1. */
static SHIM_NO_SANITIZE int
shim_driver_hook_index(const char *name)
{
	int i;

	if (name == NULL || name[0] != 'c' || name[1] != 'u' ||
	    (name[2] >= 'a' && name[2] <= 'z'))
		return -1;
	for (i = 0; i < SHIM_NHOOKS; i++) {
		if (shim_syms[i].fam == SHIM_DRV &&
		    shim_streq(shim_syms[i].name, name))
			return i;
	}
	return -1;
}

/* dl_iterate_phdr callback: copies the path of a loaded libcudart. */
static int
shim_find_cudart(struct dl_phdr_info *info, size_t size, void *arg)
{
	char *out = arg;
	const char *base;
	size_t n;

	(void)size;
	if (info->dlpi_name == NULL || info->dlpi_name[0] == '\0')
		return 0;
	base = strrchr(info->dlpi_name, '/');
	base = base != NULL ? base + 1 : info->dlpi_name;
	if (strncmp(base, SHIM_LIBCUDART_PREFIX,
	    sizeof(SHIM_LIBCUDART_PREFIX) - 1) != 0)
		return 0;
	n = strlen(info->dlpi_name);
	if (n >= PATH_MAX)
		return 0;
	memcpy(out, info->dlpi_name, n + 1);
	return 1;
}

/* A handle on the loaded libcuda or libcudart (never loading one), or NULL. */
static void *
shim_family_handle(int fam)
{
	char path[PATH_MAX];
	void **slot = fam == SHIM_DRV ? &shim_h_driver : &shim_h_runtime;
	void *h, *old = NULL;

	if ((h = __atomic_load_n(slot, __ATOMIC_ACQUIRE)) != NULL)
		return h;
	if (fam == SHIM_DRV)
		h = dlopen(SHIM_LIBCUDA, RTLD_LAZY | RTLD_NOLOAD);
	else if (dl_iterate_phdr(shim_find_cudart, path) != 0)
		h = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
	if (h == NULL)
		return NULL;
	/* One handle kept (the library stays loaded: our pointers into it
	 * must not dangle); a racing thread's extra reference is dropped. */
	if (!__atomic_compare_exchange_n(slot, &old, h, false, __ATOMIC_ACQ_REL,
	    __ATOMIC_ACQUIRE)) {
		dlclose(h);
		h = old;
	}
	return h;
}

/* Looks symbol i up: NULL if its library is not loaded (yet). */
static void *
shim_lookup(enum shim_sym i)
{
	void *fn, *h;

	if (shim_next_dlsym == NULL)
		return SHIM_MISSING;
	if ((fn = shim_next_dlsym(RTLD_NEXT, shim_syms[i].name)) != NULL)
		return fn;
	if ((h = shim_family_handle(shim_syms[i].fam)) == NULL)
		return NULL;
	fn = shim_next_dlsym(h, shim_syms[i].name);
	return fn != NULL ? fn : SHIM_MISSING;
}

/* Resolves the whole table (run once). */
static void
shim_resolve_all(void)
{
	int i;

	(void)shim_dl_boot();
	for (i = 0; i < SHIM_NSYMS; i++)
		__atomic_store_n(&shim_reals[i], shim_lookup((enum shim_sym)i),
		    __ATOMIC_RELEASE);
	__atomic_store_n(&shim_resolved, 1, __ATOMIC_RELEASE);
}

void *
shim_real(enum shim_sym i)
{
	void *fn;

	/* pthread_once on every call showed in profiles: check a flag first. */
	if (__builtin_expect(!__atomic_load_n(&shim_resolved, __ATOMIC_ACQUIRE), 0))
		pthread_once(&shim_once, shim_resolve_all);
	fn = __atomic_load_n(&shim_reals[i], __ATOMIC_ACQUIRE);
	if (fn == NULL) {
		/* Not loaded at start: try again (a race stores the same). */
		if ((fn = shim_lookup(i)) != NULL)
			__atomic_store_n(&shim_reals[i], fn, __ATOMIC_RELEASE);
	}
	return fn == SHIM_MISSING ? NULL : fn;
}

/*
 * The driver's own entry points.  cuGetProcAddress need not answer with
 * the address dlsym shows for a symbol (a driver may hand out internal
 * entry points and export thin wrappers), so the hooked ABI symbols are
 * also recognised by what the driver answers for them: each is asked for
 * once, by its base name at the CUDA version that introduced that ABI
 * (cudaTypedefs.h's PFN_<name>_v<version>), which names exactly it.
 */
static const struct shim_abi {
	enum shim_sym	sym;
	const char	*base;
	int		version;
	cuuint64_t	flags;
} shim_abis[] = {
#define SHIM_LEG	CU_GET_PROC_ADDRESS_LEGACY_STREAM
#define SHIM_PTDS	CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM
	{ SHIM_cuMemAlloc_v2, "cuMemAlloc", 3020, SHIM_LEG },
	{ SHIM_cuMemFree_v2, "cuMemFree", 3020, SHIM_LEG },
	{ SHIM_cuMemAllocPitch_v2, "cuMemAllocPitch", 3020, SHIM_LEG },
	{ SHIM_cuMemGetInfo_v2, "cuMemGetInfo", 3020, SHIM_LEG },
	{ SHIM_cuMemAllocAsync, "cuMemAllocAsync", 11020, SHIM_LEG },
	{ SHIM_cuMemAllocAsync_ptsz, "cuMemAllocAsync", 11020, SHIM_PTDS },
	{ SHIM_cuMemFreeAsync, "cuMemFreeAsync", 11020, SHIM_LEG },
	{ SHIM_cuMemFreeAsync_ptsz, "cuMemFreeAsync", 11020, SHIM_PTDS },
	{ SHIM_cuMemGetAddressRange_v2, "cuMemGetAddressRange", 3020, SHIM_LEG },
	{ SHIM_cuPointerGetAttribute, "cuPointerGetAttribute", 4000, SHIM_LEG },
	{ SHIM_cuPointerGetAttributes, "cuPointerGetAttributes", 7000,
	    SHIM_LEG },
	{ SHIM_cuMemCreate, "cuMemCreate", 10020, SHIM_LEG },
	{ SHIM_cuMemRelease, "cuMemRelease", 10020, SHIM_LEG },
	{ SHIM_cuMemMap, "cuMemMap", 10020, SHIM_LEG },
	{ SHIM_cuMemUnmap, "cuMemUnmap", 10020, SHIM_LEG },
	{ SHIM_cuMemRetainAllocationHandle, "cuMemRetainAllocationHandle", 11000,
	    SHIM_LEG },
	{ SHIM_cuMemExportToShareableHandle, "cuMemExportToShareableHandle",
	    10020, SHIM_LEG },
	{ SHIM_cuMemGetAllocationPropertiesFromHandle,
	    "cuMemGetAllocationPropertiesFromHandle", 10020, SHIM_LEG },
	{ SHIM_cuGetProcAddress, "cuGetProcAddress", 11030, SHIM_LEG },
	{ SHIM_cuGetProcAddress_v2, "cuGetProcAddress", 12000, SHIM_LEG },
#undef SHIM_LEG
#undef SHIM_PTDS
};

/* What the driver's cuGetProcAddress answers for hook i (NULL: nothing,
 * or the same as dlsym); filled once. */
static void		*shim_entries[SHIM_NHOOKS];
static pthread_once_t	 shim_entries_once = PTHREAD_ONCE_INIT;

static void
shim_entries_learn(void)
{
	shim_pfn_cuGetProcAddress_v2 gpa2 = SHIM_REAL(cuGetProcAddress_v2);
	shim_pfn_cuGetProcAddress gpa = SHIM_REAL(cuGetProcAddress);
	size_t i;

	for (i = 0; i < sizeof(shim_abis) / sizeof(shim_abis[0]); i++) {
		const struct shim_abi *a = &shim_abis[i];
		CUdriverProcAddressQueryResult st;
		void *fn = NULL;
		CUresult r;

		if (gpa2 != NULL)
			r = gpa2(a->base, &fn, a->version, a->flags, &st);
		else if (gpa != NULL)
			r = gpa(a->base, &fn, a->version, a->flags);
		else
			return;
		/* Never one of our own hooks (another interposer's answer
		 * may be); nothing is recorded for a miss. */
		if (r == CUDA_SUCCESS && fn != NULL && fn != shim_hooks[a->sym])
			shim_entries[a->sym] = fn;
	}
}

void *
shim_map_driver(void *fn)
{
	int i;

	if (fn == NULL)
		return NULL;
	pthread_once(&shim_entries_once, shim_entries_learn);
	for (i = 0; i < SHIM_NHOOKS; i++) {
		if (shim_syms[i].fam == SHIM_DRV &&
		    (fn == shim_real((enum shim_sym)i) ||
		    fn == shim_entries[i]))
			return shim_hooks[i];
	}
	return fn;
}

/* The dlsym decision: our hook for handle/name, or NULL to pass the call on
 * to the real dlsym unchanged.  Called by the exported dlsym only. */
void	*shim_dlsym_pre(void *handle, const char *name) SHIM_HIDDEN
	    __attribute__((used));

SHIM_NO_SANITIZE void *
shim_dlsym_pre(void *handle, const char *name)
{
	void *fn;
	int i;

	if (!shim_dl_boot() || handle == RTLD_NEXT ||
	    (i = shim_driver_hook_index(name)) < 0)
		return NULL;
	/* Resolution first: its failed lookups must not be the caller's
	 * dlerror(); the lookup below is a success when we answer. */
	(void)shim_real((enum shim_sym)i);
	fn = shim_next_dlsym(handle, name);
	if (fn != NULL && (fn == shim_real((enum shim_sym)i) ||
	    fn == shim_hooks[i]))
		return shim_hooks[i];
	return NULL;
}

#if defined(__x86_64__)
/*
 * void *dlsym(void *handle, const char *name): keeps the arguments, asks
 * shim_dlsym_pre, returns its answer if any, else jumps to the real dlsym
 * so that the return address it sees is our caller's.  Entry %rsp is 8 mod
 * 16; two pushes and 8 bytes make the call aligned.
 */
#if defined(__CET__) && (__CET__ & 1)
#define SHIM_ENDBR	"	endbr64\n"
#else
#define SHIM_ENDBR	""
#endif
__asm__(
	"	.text\n"
	"	.globl	dlsym\n"
	"	.type	dlsym, @function\n"
	"	.p2align 4\n"
	"dlsym:\n"
	"	.cfi_startproc\n"
	SHIM_ENDBR
	"	pushq	%rdi\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	pushq	%rsi\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	subq	$8, %rsp\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	call	shim_dlsym_pre\n"
	"	addq	$8, %rsp\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	popq	%rsi\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	popq	%rdi\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	testq	%rax, %rax\n"
	"	jnz	1f\n"
	"	movq	shim_next_dlsym(%rip), %rax\n"
	"	testq	%rax, %rax\n"
	"	jz	1f\n"
	"	jmp	*%rax\n"
	"1:	ret\n"
	"	.cfi_endproc\n"
	"	.size	dlsym, .-dlsym\n");
#else
/* Portable fallback: RTLD_NEXT/RTLD_DEFAULT are then relative to us. */
SHIM_EXPORT void *
dlsym(void *handle, const char *name)
{
	void *fn = shim_dlsym_pre(handle, name);

	if (fn != NULL)
		return fn;
	return shim_next_dlsym != NULL ? shim_next_dlsym(handle, name) : NULL;
}
#endif
