/*
 * Logging.  One write(2) per line so lines from several threads or processes
 * sharing a file never interleave mid-line.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int vmm_log_level_cur = VMM_LOG_ERROR;
static int vmm_log_fd = STDERR_FILENO;

int
vmm_log_parse_level(const char *s)
{
	if (strcasecmp(s, "ERROR") == 0)
		return VMM_LOG_ERROR;
	if (strcasecmp(s, "INFO") == 0)
		return VMM_LOG_INFO;
	if (strcasecmp(s, "DEBUG") == 0)
		return VMM_LOG_DEBUG;
	return -1;
}

int
vmm_log_open(enum vmm_log_level level, const char *path)
{
	char buf[4096];
	size_t n;
	int fd;

	vmm_log_level_cur = level;
	if (path == NULL || *path == '\0')
		return 0;
	n = strlen(path);
	if (n >= sizeof(buf) - 16) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (path[n - 1] == '-')
		snprintf(buf, sizeof(buf), "%s%d", path, (int)getpid());
	else
		snprintf(buf, sizeof(buf), "%s", path);
	fd = open(buf, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	vmm_log_close();
	vmm_log_fd = fd;
	return 0;
}

void
vmm_log_close(void)
{
	if (vmm_log_fd != STDERR_FILENO)
		close(vmm_log_fd);
	vmm_log_fd = STDERR_FILENO;
}

bool
vmm_log_enabled(enum vmm_log_level level)
{
	return (int)level <= vmm_log_level_cur;
}

void
vmm_log(enum vmm_log_level level, const char *fmt, ...)
{
	static const char *const tags[] = { "ERR", "INF", "DBG" };
	char line[1024];
	struct timeval tv;
	struct tm tm;
	va_list ap;
	int n, m;
	int saved = errno;

	if (!vmm_log_enabled(level))
		return;
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "[%02d:%02d:%02d.%03d] [%s] ",
	    tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000),
	    tags[level]);
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(vmm_log_fd, line, (size_t)n);
	errno = saved;
}

void
vmm_log_escape(char *out, size_t outlen, const char *s, size_t slen)
{
	size_t o = 0, i;

	if (outlen == 0)
		return;
	for (i = 0; i < slen && s[i] != '\0' && o + 5 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
	}
	out[o] = '\0';
}
