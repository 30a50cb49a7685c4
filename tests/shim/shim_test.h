/* Helpers for the shim tests: the ALLOC/FREE lines a program expects in the
 * MONITOR-mode log, and the check against what libvmm_client.so wrote.
 * The log is checked only when the program runs preloaded in MONITOR mode
 * with VMM_LOG_FILE set; the same program also runs without the preload
 * (or in VMM mode, falling back) and must behave the same. */
#ifndef SHIM_TEST_H
#define SHIM_TEST_H

#include <dlfcn.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/check.h"

#define ST_MAX_EVENTS	256

struct st_event {
	char		kind;	/* 'A' ALLOC, 'F' FREE */
	uint64_t	ptr;
	size_t		size;
};

static struct st_event	st_want[ST_MAX_EVENTS];
static int		st_nwant;

/* Whether this run is preloaded in MONITOR mode with a log to check. */
static inline int
st_log_checked(void)
{
	const char *pre = getenv("LD_PRELOAD"), *mode = getenv("VMM_MODE");

	return pre != NULL && strstr(pre, "libvmm_client") != NULL &&
	    mode != NULL && strcmp(mode, "MONITOR") == 0 &&
	    getenv("VMM_LOG_FILE") != NULL;
}

/* Empties the log left by an earlier run (before any CUDA call). */
static inline void
st_log_reset(void)
{
	if (st_log_checked() && truncate(getenv("VMM_LOG_FILE"), 0) != 0)
		return;		/* not created yet */
}

/* Records one line the log must hold, in order. */
static inline void
st_expect(char kind, uint64_t ptr, size_t size)
{
	CHECK(st_nwant < ST_MAX_EVENTS);
	st_want[st_nwant].kind = kind;
	st_want[st_nwant].ptr = ptr;
	st_want[st_nwant].size = size;
	st_nwant++;
}

/* The log holds exactly the expected ALLOC/FREE lines, in order. */
static inline void
st_log_verify(void)
{
	char line[1024];
	struct st_event got;
	unsigned long long p;
	const char *s;
	size_t size;
	int n = 0;
	FILE *f;

	if (!st_log_checked())
		return;
	CHECK((f = fopen(getenv("VMM_LOG_FILE"), "r")) != NULL);
	while (fgets(line, sizeof(line), f) != NULL) {
		if ((s = strstr(line, "] ALLOC ")) != NULL)
			got.kind = 'A', s += 8;
		else if ((s = strstr(line, "] FREE ")) != NULL)
			got.kind = 'F', s += 7;
		else
			continue;
		CHECK(sscanf(s, "Ptr=0x%llx Size=%zu", &p, &size) == 2);
		got.ptr = p;
		got.size = size;
		if (n >= st_nwant || got.kind != st_want[n].kind ||
		    got.ptr != st_want[n].ptr || got.size != st_want[n].size) {
			fprintf(stderr, "log line %d: %c 0x%llx %zu, expected "
			    "%c 0x%" PRIx64 " %zu\n", n, got.kind, p, size,
			    n < st_nwant ? st_want[n].kind : '-',
			    n < st_nwant ? st_want[n].ptr : 0,
			    n < st_nwant ? st_want[n].size : 0);
			exit(1);
		}
		n++;
	}
	fclose(f);
	if (n != st_nwant) {
		fprintf(stderr, "log has %d ALLOC/FREE lines, expected %d\n", n,
		    st_nwant);
		exit(1);
	}
}

/* The file name (last component) of the object that defines fn. */
static inline const char *
st_owner(const void *fn)
{
	const char *slash;
	Dl_info di;

	if (fn == NULL || dladdr(fn, &di) == 0 || di.dli_fname == NULL)
		return "?";
	slash = strrchr(di.dli_fname, '/');
	return slash != NULL ? slash + 1 : di.dli_fname;
}

/* The exported symbol at fn exactly, or "?". */
static inline const char *
st_symbol(const void *fn)
{
	Dl_info di;

	if (fn == NULL || dladdr(fn, &di) == 0 || di.dli_sname == NULL ||
	    di.dli_saddr != fn)
		return "?";
	return di.dli_sname;
}

static inline int
st_is_shim(const void *fn)
{
	return strncmp(st_owner(fn), "libvmm_client.so", 16) == 0;
}

static inline int
st_is_driver(const void *fn)
{
	return strncmp(st_owner(fn), "libcuda.so", 10) == 0;
}

#endif
