/*
 * The VMM_* environment, read once (mimalloc's options.c is the model): one
 * table drives parsing, the README's table and the error messages.  An
 * invalid value ends the process at start-up with a line naming the
 * variable and what it accepts, like libvmmalloc does.
 */
#include "client_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

#define O(f) offsetof(struct vmmc_settings, f)

const struct vmm_opt vmmc_options[] = {
	{ "VMM_MODE", VMM_OPT_ENUM, "VMM", 0, 0, "VMM|MONITOR", O(mode),
	  "VMM: allocate from vmmd; MONITOR: call CUDA's allocator, log only" },
	{ "VMM_RESERVE_SIZE_MB", VMM_OPT_U64, "0", 0, 16777216, NULL,
	  O(reserve_mb), "virtual address space per reservation in MiB; "
	  "0: twice the device's memory (at least 4096)" },
	{ "VMM_FRAG_RATIO", VMM_OPT_DOUBLE, "0.25", 0, 1, NULL, O(frag_ratio),
	  "a large allocation is stitched first from free chunks at least "
	  "this times its size, smaller ones after them rather than new "
	  "memory" },
	{ "VMM_LOG_LEVEL", VMM_OPT_ENUM, "ERROR", 0, 0, "ERROR|INFO|DEBUG",
	  O(log_level), "ERROR: failures only; INFO: ALLOC/FREE/REMAP/COPY; "
	  "DEBUG: everything" },
	{ "VMM_LOG_FILE", VMM_OPT_STRING, "", 0, 0, NULL, O(log_file),
	  "log file (default stderr); a trailing '-' appends the pid" },
	{ "VMM_SOCKET_DIR", VMM_OPT_STRING, "/run/vmmd", 0, 0, NULL,
	  O(socket_dir), "where vmmd's sockets are (gpu-<UUID>.sock)" },
	{ "VMM_REQUIRE_DAEMON", VMM_OPT_BOOL, "0", 0, 1, NULL,
	  O(require_daemon), "1: fail allocations when vmmd is unreachable "
	  "instead of falling back to CUDA's allocator" },
	{ "VMM_SMALL_MAX", VMM_OPT_SIZE, "1M", 0, 33554432, NULL, O(small_max),
	  "largest size sub-allocated from shared segments (one chunk of "
	  "vmmd's unit each), at most 32M; rounded down to a size class; "
	  "sizes above half the unit are served as large allocations; "
	  "0: none" },
	{ "VMM_MEDIUM_MAX", VMM_OPT_SIZE, "32M", 0, 1073741824, NULL,
	  O(medium_max), "largest size served by the medium heap (sizes "
	  "above VMM_SMALL_MAX placed at 512 B on pages of vmmd's unit shared "
	  "by neighbouring blocks), at most 1G and not less than VMM_SMALL_MAX; "
	  "larger sizes are large allocations (whole chunks, resized in "
	  "place); 0: none" },
	{ "VMM_CACHE_MAX", VMM_OPT_SIZE, "1G", 0, 1e15, NULL, O(cache_max),
	  "most freed memory kept mapped in the process for reuse" },
	{ "VMM_CACHE_WORKING_SET", VMM_OPT_BOOL, "1", 0, 1, NULL,
	  O(cache_working_set),
	  "1: freed memory the process had in use within its last "
	  "VMM_IDLE_MS (1 s if 0) stays cached on top of VMM_CACHE_MAX; "
	  "0: VMM_CACHE_MAX alone bounds the cache" },
	{ "VMM_IDLE_MS", VMM_OPT_U64, "1000", 0, 86400000, NULL, O(idle_ms),
	  "cached memory goes back to vmmd after this long unused; 0: never" },
	{ "VMM_REPORT_MS", VMM_OPT_U64, "1000", 10, 3600000, NULL, O(report_ms),
	  "usage figures are sent to vmmd at most this often" },
	{ "VMM_VA_HEADROOM", VMM_OPT_DOUBLE, "1", 0, 16, NULL, O(va_headroom),
	  "address space left free after a large allocation, as a multiple of "
	  "its size, so vmm_realloc can grow it in place" },
	{ "VMM_CONNECT_TIMEOUT_MS", VMM_OPT_U64, "2000", 1, 600000, NULL,
	  O(connect_timeout_ms), "how long a call to vmmd may take" },
	{ "VMM_FALLBACK", VMM_OPT_ENUM, "on", 0, 0, "on|fail", O(fallback),
	  "on: an unexpected CUDA driver error or fd exhaustion in the broker "
	  "path falls back to CUDA's own allocator (one ERROR line); fail: "
	  "the allocation fails with that error" },
	{ "VMM_DAEMON_USER", VMM_OPT_STRING, "vmmd", 0, 0, NULL,
	  O(daemon_user), "the user vmmd runs as: a listener of any uid but "
	  "this user's, root's and the process's own is not spoken to" },
	{ "VMM_PEER_ACCESS", VMM_OPT_ENUM, "auto", 0, 0, "auto|all|none",
	  O(peer_access), "which other devices may access a device's memory: "
	  "auto: those the program enabled peer access for; all: every device "
	  "that can; none: no other device" },
	{ "VMM_APP_VMM", VMM_OPT_ENUM, "pool", 0, 0, "pool|native",
	  O(app_vmm), "the application's own cuMemCreate (device memory, "
	  "POSIX fd or no handle type, a multiple of vmmd's unit): pool: "
	  "served by a chunk of vmmd, under the quota; native: passed to the "
	  "driver and counted as native memory" },
};

const size_t vmmc_noptions =
    sizeof(vmmc_options) / sizeof(vmmc_options[0]);

static struct vmmc_settings	settings;
static pthread_once_t		settings_once = PTHREAD_ONCE_INIT;
static int			settings_ready;

static void
settings_load(void)
{
	char err[512];

	if (vmm_opt_defaults(vmmc_options, vmmc_noptions, &settings,
	    err, sizeof(err)) != 0 ||
	    vmm_opt_from_env(vmmc_options, vmmc_noptions, &settings,
	    err, sizeof(err)) != 0) {
		fprintf(stderr, "libvmm_client: %s\n", err);
		exit(1);
	}
	/* No directory is no socket: said now, not at the first allocation
	 * (which would fall back to CUDA's allocator). */
	if (settings.socket_dir[0] == '\0') {
		fprintf(stderr, "libvmm_client: VMM_SOCKET_DIR=\"\": expected "
		    "a directory (unset: /run/vmmd)\n");
		exit(1);
	}
	/* The medium heap serves what small blocks do not: a maximum below
	 * theirs would leave nothing to it. */
	if (settings.medium_max != 0 && settings.medium_max < settings.small_max) {
		fprintf(stderr, "libvmm_client: VMM_MEDIUM_MAX=%llu: 0, or at "
		    "least VMM_SMALL_MAX (%llu) and at most 1G\n",
		    (unsigned long long)settings.medium_max,
		    (unsigned long long)settings.small_max);
		exit(1);
	}
	if (vmm_log_open(settings.log_level, settings.log_file[0] ?
	    settings.log_file : NULL) != 0) {
		fprintf(stderr, "libvmm_client: VMM_LOG_FILE=\"%s\": cannot open "
		    "it\n", settings.log_file);
		exit(1);
	}
	__atomic_store_n(&settings_ready, 1, __ATOMIC_RELEASE);
}

const struct vmmc_settings *
vmmc_settings_get(void)
{
	if (__builtin_expect(!__atomic_load_n(&settings_ready, __ATOMIC_ACQUIRE),
	    0))
		pthread_once(&settings_once, settings_load);
	return &settings;
}

enum vmmc_mode
vmmc_mode(void)
{
	return (enum vmmc_mode)vmmc_settings_get()->mode;
}
