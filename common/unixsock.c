/* Unix-domain socket paths of any length; see unixsock.h. */
#include "unixsock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Fills *sa with /proc/self/fd/<dirfd>/<name>. */
static int
unix_addr_at(int dirfd, const char *name, struct sockaddr_un *sa)
{
	int n;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (*name == '\0' || strchr(name, '/') != NULL) {
		errno = EINVAL;
		return -1;
	}
	n = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s",
	    dirfd, name);
	if (n < 0 || (size_t)n >= sizeof(sa->sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/*
 * Fills *sa for path.  If path does not fit, opens its directory and stores
 * the fd in *dirfd (the caller closes it once the call is made); else
 * *dirfd is -1.
 */
static int
unix_addr(const char *path, struct sockaddr_un *sa, int *dirfd)
{
	char dir[PATH_MAX];
	const char *slash;
	size_t len = strlen(path);
	int e;

	*dirfd = -1;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (len == 0) {
		errno = ENOENT;
		return -1;
	}
	if (len < sizeof(sa->sun_path)) {
		memcpy(sa->sun_path, path, len + 1);
		return 0;
	}
	if (len >= sizeof(dir) || (slash = strrchr(path, '/')) == NULL) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if ((*dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	if (unix_addr_at(*dirfd, slash + 1, sa) != 0) {
		e = errno;
		close(*dirfd);
		*dirfd = -1;
		errno = e;
		return -1;
	}
	return 0;
}

/* bind(2) or connect(2) to *sa. */
static int
unix_sockcall(int fd, const struct sockaddr_un *sa, int is_bind)
{
	if (is_bind)
		return bind(fd, (const struct sockaddr *)sa, sizeof(*sa));
	return connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
}

static int
unix_call(int fd, const char *path, int is_bind)
{
	struct sockaddr_un sa;
	int dirfd, rc, e;

	if (unix_addr(path, &sa, &dirfd) != 0)
		return -1;
	rc = unix_sockcall(fd, &sa, is_bind);
	e = errno;
	if (dirfd >= 0)
		close(dirfd);
	errno = e;
	return rc;
}

int
vmm_unix_connectat(int fd, int dirfd, const char *name)
{
	struct sockaddr_un sa;

	if (unix_addr_at(dirfd, name, &sa) != 0)
		return -1;
	return unix_sockcall(fd, &sa, 0);
}

int
vmm_unix_bindat(int fd, int dirfd, const char *name)
{
	struct sockaddr_un sa;

	if (unix_addr_at(dirfd, name, &sa) != 0)
		return -1;
	return unix_sockcall(fd, &sa, 1);
}

int
vmm_unix_connect(int fd, const char *path)
{
	return unix_call(fd, path, 0);
}

int
vmm_unix_bind(int fd, const char *path)
{
	return unix_call(fd, path, 1);
}
