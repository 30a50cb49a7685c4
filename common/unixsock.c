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

/*
 * Fills *sa for path.  If path does not fit, opens its directory and stores
 * the fd in *dirfd (the caller closes it once the call is made); else
 * *dirfd is -1.
 */
static int
unix_addr(const char *path, struct sockaddr_un *sa, int *dirfd)
{
	char dir[PATH_MAX];
	const char *slash, *name;
	size_t len = strlen(path);
	int n;

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
	name = slash + 1;
	if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if ((*dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	n = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s",
	    *dirfd, name);
	if (n < 0 || (size_t)n >= sizeof(sa->sun_path)) {
		close(*dirfd);
		*dirfd = -1;
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int
unix_call(int fd, const char *path, int is_bind)
{
	struct sockaddr_un sa;
	int dirfd, rc, e;

	if (unix_addr(path, &sa, &dirfd) != 0)
		return -1;
	if (is_bind)
		rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	else
		rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	e = errno;
	if (dirfd >= 0)
		close(dirfd);
	errno = e;
	return rc;
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
