/*
 * Logging, one line per event in the format of DESIGN.md:
 *     [HH:MM:SS.mmm] [INF] ALLOC Ptr=0x7f2a00000000 Size=4194304 ...
 * Levels ERROR < INFO < DEBUG.  Silent below the configured level; the
 * default level is ERROR, so nothing is printed in normal operation.
 */
#ifndef VMM_LOG_H
#define VMM_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum vmm_log_level {
	VMM_LOG_ERROR = 0,
	VMM_LOG_INFO = 1,
	VMM_LOG_DEBUG = 2,
};

/* Sets the level and destination; path NULL means stderr.  A path ending in
 * '-' gets the pid appended.  Returns 0, or -1 with errno if the file cannot
 * be opened (logging then stays on stderr). */
int	vmm_log_open(enum vmm_log_level level, const char *path);
/* Closes a log file opened by vmm_log_open. */
void	vmm_log_close(void);
/* Parses ERROR/INFO/DEBUG (case-insensitive); -1 if unknown. */
int	vmm_log_parse_level(const char *s);
bool	vmm_log_enabled(enum vmm_log_level level);
/* Writes one line if level is enabled; the newline is added. */
void	vmm_log(enum vmm_log_level level, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/* Copies s into out with non-printable bytes escaped (\xNN), for strings
 * that came from a peer; always NUL-terminates. */
void	vmm_log_escape(char *out, size_t outlen, const char *s, size_t slen);

#define vmm_log_error(...) vmm_log(VMM_LOG_ERROR, __VA_ARGS__)
#define vmm_log_info(...)                                               \
	do {                                                            \
		if (vmm_log_enabled(VMM_LOG_INFO))                      \
			vmm_log(VMM_LOG_INFO, __VA_ARGS__);             \
	} while (0)
#define vmm_log_debug(...)                                              \
	do {                                                            \
		if (vmm_log_enabled(VMM_LOG_DEBUG))                     \
			vmm_log(VMM_LOG_DEBUG, __VA_ARGS__);            \
	} while (0)

#endif
