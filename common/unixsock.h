/*
 * Unix-domain socket paths longer than sun_path.
 *
 * sun_path holds 107 bytes, and "<dir>/gpu-<uuid>.sock" passes that as soon
 * as <dir> is longer than about 60.  A socket in a deeper directory is still
 * reachable: open the directory (O_PATH) and name the socket as
 * /proc/self/fd/<n>/<name>, which the kernel resolves through the
 * directory's fd.  These helpers do that only when the plain path does not
 * fit, so the common case costs nothing extra.  vmmd binds through its
 * directory's fd always, so that the directory it checked is the one the
 * socket lands in.
 */
#ifndef VMM_UNIXSOCK_H
#define VMM_UNIXSOCK_H

/* connect(2) or bind(2) fd to the Unix socket at path (any length up to
 * PATH_MAX, ending in a name shorter than sun_path less 30 bytes).
 * Return 0, or -1 with errno set: ENAMETOOLONG when even the short form
 * does not fit, ENOENT for an empty path, or what open/connect/bind said. */
int	vmm_unix_connect(int fd, const char *path);
int	vmm_unix_bind(int fd, const char *path);
/* The same for the socket name (no '/') in the directory open as dirfd,
 * always through /proc/self/fd/<dirfd>/name: the directory the fd holds,
 * even if its path was since renamed or replaced.  EINVAL for a bad name. */
int	vmm_unix_connectat(int fd, int dirfd, const char *name);
int	vmm_unix_bindat(int fd, int dirfd, const char *name);

#endif
