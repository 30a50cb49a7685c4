/*
 * The listening socket: <dir>/gpu-<uuid>.sock, mode 0660 and owned by the
 * configured group, plus an index alias <dir>/gpu<N>.sock (a symlink), so a
 * container whose device numbering differs from the host's still finds its
 * GPU by UUID.  Under socket activation the passed socket is used as it is
 * and the missing names are added as symlinks.
 *
 * Whoever may write to the socket directory may swap the socket or its
 * aliases for their own, so vmmd takes only a directory it can trust (see
 * server_open_dir) and, once checked, reaches everything in it through the
 * directory's fd, never by path again: bind, chown, chmod, the aliases and
 * the removal of a stale socket all act in the directory it checked.
 *
 * Accept is bounded per wake-up; on EMFILE/ENFILE the exported fds vmmd
 * keeps are given up first (export.c), then accepting pauses for a second
 * instead of spinning; limits on sessions in all (the last
 * VMMD_ADMIN_SESSIONS for admins only) and per uid are enforced here, each
 * refusal answered with an Error and counted.
 */
#include "vmmd.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "log.h"
#include "session.h"
#include "unixsock.h"

#define VMMD_ACCEPT_BUDGET 64
#define VMMD_LISTEN_BACKLOG 512
#define VMMD_MAX_PEER_GROUPS 256

static int		server_fd = -1;
static int		server_dirfd = -1;	/* socket directory, O_PATH */
static bool		server_activated;
static struct event	*server_ev, *server_resume;
static char		server_dir[PATH_MAX];	/* for messages */
static char		server_path[PATH_MAX];	/* for messages */
static char		server_name[NAME_MAX + 1];	/* in server_dirfd */
/* Symlinks this daemon created (names in server_dirfd), removed at stop. */
static char		server_links[2][NAME_MAX + 1];
static bool		server_have_admin_gid;
static gid_t		server_admin_gid;
static bool		server_have_ipc_gid;
static gid_t		server_ipc_gid;

bool
vmmd_server_in_ipc_group(gid_t gid, const gid_t *groups, int ngroups)
{
	int i;

	if (!server_have_ipc_gid)
		return false;
	if (gid == server_ipc_gid)
		return true;
	for (i = 0; i < ngroups; i++)
		if (groups[i] == server_ipc_gid)
			return true;
	return false;
}

bool
vmmd_server_is_admin(uid_t uid, gid_t gid, const gid_t *groups, int ngroups)
{
	int i;

	if (uid == 0)
		return true;
	if (!server_have_admin_gid)
		return false;
	if (gid == server_admin_gid)
		return true;
	for (i = 0; i < ngroups; i++)
		if (groups[i] == server_admin_gid)
			return true;
	return false;
}

/* Answers a connection we cannot serve with an Error, then closes it. */
static void
server_refuse(int fd, const char *why, Vmm__ErrorCode code)
{
	Vmm__Envelope env;
	Vmm__Error e = VMM__ERROR__INIT;

	e.code = code;
	e.message = (char *)why;
	env = vmm_frame_env_error(&e);
	(void)vmm_frame_send(fd, VMM_FRAME_PEER_CLIENT, &env, NULL, 0, 0);
	vmmd_closer_close(fd);
	vmmd_stats.sessions_refused++;
}

/* Stops accepting for a second (out of fds). */
static void
server_pause(void)
{
	struct timeval one_second = { 1, 0 };

	vmmd_stats.accept_pauses++;
	event_del(server_ev);
	evtimer_add(server_resume, &one_second);
}

static void
server_on_resume(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	event_add(server_ev, NULL);
}

/* Takes one accepted socket: credentials, limits, a new session.  Returns
 * -1 if accepting is paused (out of fds). */
static int
server_take(int fd)
{
	gid_t groups[VMMD_MAX_PEER_GROUPS];
	socklen_t len = sizeof(struct ucred);
	struct ucred cr;
	int ngroups = 0, pidfd;
	bool admin;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
		vmm_log_error("SO_PEERCRED: %s", strerror(errno));
		vmmd_closer_close(fd);
		return 0;
	}
	len = sizeof(groups);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
		ngroups = (int)(len / sizeof(gid_t));
	admin = vmmd_server_is_admin(cr.uid, cr.gid, groups, ngroups);
	if (vmmd_nsessions >= vmmd_cfg.max_sessions) {
		server_refuse(fd, "too many clients",
		    VMM__ERROR_CODE__ERROR_CODE_LIMIT);
		return 0;
	}
	if (!admin && vmmd_nsessions >= vmmd_cfg.max_sessions -
	    VMMD_ADMIN_SESSIONS) {
		server_refuse(fd, "too many clients (the last places are kept "
		    "for admins)", VMM__ERROR_CODE__ERROR_CODE_LIMIT);
		return 0;
	}
	if (vmmd_session_count_uid(cr.uid, cr.pid) >= vmmd_cfg.max_sessions_per_uid) {
		server_refuse(fd, "too many clients of this uid",
		    VMM__ERROR_CODE__ERROR_CODE_LIMIT);
		return 0;
	}
	/* A session needs a second fd, the peer's pidfd: out of fds, say so
	 * and stop accepting for a while rather than drop the backlog. */
	if ((pidfd = vmmd_session_pidfd(fd, cr.pid)) < 0 &&
	    (errno == EMFILE || errno == ENFILE) && vmmd_export_shed() > 0)
		pidfd = vmmd_session_pidfd(fd, cr.pid);	/* kept fds given up */
	if (pidfd < 0 && errno != ESRCH) {
		if (errno == EMFILE || errno == ENFILE) {
			server_refuse(fd, "vmmd is out of file descriptors; retry",
			    VMM__ERROR_CODE__ERROR_CODE_BUSY);
			server_pause();
			return -1;
		} else if (cr.pid == 0) {
			/* Lent memory must come back when its holder is gone,
			 * and only then: with neither a pid nor a pidfd vmmd
			 * could not tell. */
			server_refuse(fd, "vmmd cannot watch this process (its "
			    "pid is not visible in vmmd's pid namespace, and "
			    "this kernel has no SO_PEERPIDFD)",
			    VMM__ERROR_CODE__ERROR_CODE_PERMISSION);
		} else {
			vmm_log_error("pidfd_open(%d): %s", (int)cr.pid,
			    strerror(errno));
			server_refuse(fd, "internal error",
			    VMM__ERROR_CODE__ERROR_CODE_INTERNAL);
		}
		return 0;
	}
	if (vmmd_session_new(fd, pidfd, cr.pid, cr.uid, cr.gid, admin,
	    vmmd_server_in_ipc_group(cr.gid, groups, ngroups)) == 0)
		vmmd_notify_status();
	return 0;
}

static void
server_on_accept(evutil_socket_t lfd, short what, void *arg)
{
	int i, fd;

	(void)what;
	(void)arg;
	for (i = 0; i < VMMD_ACCEPT_BUDGET; i++) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			if (server_take(fd) != 0)
				return;
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE) {
			/* The kept exported fds go first (export.c). */
			if (vmmd_export_shed() > 0)
				continue;
			vmm_log_error("accept: %s; pausing for a second",
			    strerror(errno));
			server_pause();
		} else if (errno != EAGAIN && errno != EWOULDBLOCK)
			vmm_log_error("accept: %s", strerror(errno));
		return;
	}
}

/*
 * Opens the socket directory (O_PATH), creating it (0755, whatever the
 * umask) first if create and it is missing.  It must be a directory, not a
 * symlink to one, owned by root or by vmmd's euid, and writable by neither
 * its group nor others: anyone else who could write there could replace the
 * socket clients trust.  err names the directory and what is wrong.
 */
static int
server_open_dir(const char *dir, bool create, char *err, size_t errlen)
{
	struct stat st;
	mode_t old;
	int fd = -1;

	if (create) {
		old = umask(022);
		if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
			umask(old);
			snprintf(err, errlen, "socket directory %s: %s", dir,
			    strerror(errno));
			goto fail;
		}
		umask(old);
	}
	fd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if ((errno == ENOTDIR || errno == ELOOP) &&
		    lstat(dir, &st) == 0 && S_ISLNK(st.st_mode))
			snprintf(err, errlen, "socket directory %s is a "
			    "symbolic link; vmmd wants the directory itself",
			    dir);
		else
			snprintf(err, errlen, "socket directory %s: %s", dir,
			    strerror(errno));
		goto fail;
	}
	if (fstat(fd, &st) != 0) {
		snprintf(err, errlen, "socket directory %s: %s", dir,
		    strerror(errno));
		goto fail;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		snprintf(err, errlen, "socket directory %s is owned by uid %u; "
		    "it must be owned by root or by vmmd's uid %u", dir,
		    (unsigned)st.st_uid, (unsigned)geteuid());
		goto fail;
	}
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		snprintf(err, errlen, "socket directory %s has mode %04o; it "
		    "must not be writable by its group or others", dir,
		    (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	return fd;

fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Makes name a symlink to target (both in the socket directory), replacing
 * a stale link; remembers it for removal. */
static int
server_link(const char *name, const char *target, int slot, char *err,
    size_t errlen)
{
	char tmp[NAME_MAX + 1];

	if ((size_t)snprintf(tmp, sizeof(tmp), ".%s.%d", name, (int)getpid()) >=
	    sizeof(tmp)) {
		snprintf(err, errlen, "%s/%s: name too long", server_dir, name);
		return -1;
	}
	(void)unlinkat(server_dirfd, tmp, 0);
	if (symlinkat(target, server_dirfd, tmp) != 0 ||
	    renameat(server_dirfd, tmp, server_dirfd, name) != 0) {
		snprintf(err, errlen, "%s/%s: %s", server_dir, name,
		    strerror(errno));
		(void)unlinkat(server_dirfd, tmp, 0);
		return -1;
	}
	snprintf(server_links[slot], sizeof(server_links[slot]), "%s", name);
	return 0;
}

/* Refuses to start if another daemon answers on server_name; removes a
 * stale one. */
static int
server_claim(char *err, size_t errlen)
{
	struct stat st;
	int fd;

	if (fstatat(server_dirfd, server_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", server_path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode) && !S_ISLNK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket",
		    server_path);
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (vmm_unix_connectat(fd, server_dirfd, server_name) == 0) {
		close(fd);
		snprintf(err, errlen, "%s: another vmmd is serving this GPU",
		    server_path);
		return -1;
	}
	close(fd);
	if (unlinkat(server_dirfd, server_name, 0) != 0 && errno != ENOENT) {
		snprintf(err, errlen, "%s: %s", server_path, strerror(errno));
		return -1;
	}
	return 0;
}

static int
server_resolve_groups(const struct vmmd_config *c, gid_t *sock_gid, char *err,
    size_t errlen)
{
	struct group *g;

	*sock_gid = getegid();
	if (c->socket_group[0] != '\0') {
		if ((g = getgrnam(c->socket_group)) == NULL) {
			snprintf(err, errlen, "socket_group \"%s\": no such group",
			    c->socket_group);
			return -1;
		}
		*sock_gid = g->gr_gid;
	}
	if (c->admin_group[0] != '\0') {
		if ((g = getgrnam(c->admin_group)) == NULL) {
			snprintf(err, errlen, "admin_group \"%s\": no such group",
			    c->admin_group);
			return -1;
		}
		server_admin_gid = g->gr_gid;
		server_have_admin_gid = true;
	}
	if (c->ipc_group[0] != '\0') {
		if ((g = getgrnam(c->ipc_group)) == NULL) {
			snprintf(err, errlen, "ipc_group \"%s\": no such group",
			    c->ipc_group);
			return -1;
		}
		server_ipc_gid = g->gr_gid;
		server_have_ipc_gid = true;
	}
	return 0;
}

/* Binds a new socket as server_name in the socket directory, 0660, group
 * gid. */
static int
server_bind(gid_t gid, char *err, size_t errlen)
{
	mode_t old;
	int fd, rc;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	old = umask(0117);
	rc = vmm_unix_bindat(fd, server_dirfd, server_name);
	umask(old);
	if (rc != 0) {
		snprintf(err, errlen, "bind %s: %s", server_path, strerror(errno));
		close(fd);
		return -1;
	}
	if ((fchownat(server_dirfd, server_name, (uid_t)-1, gid,
	    AT_SYMLINK_NOFOLLOW) != 0 && gid != getegid()) ||
	    fchmodat(server_dirfd, server_name, 0660,
	    AT_SYMLINK_NOFOLLOW) != 0 ||
	    listen(fd, VMMD_LISTEN_BACKLOG) != 0) {
		snprintf(err, errlen, "%s: %s", server_path, strerror(errno));
		(void)unlinkat(server_dirfd, server_name, 0);
		close(fd);
		return -1;
	}
	return fd;
}

/* Takes the socket systemd passed (fd 3): its directory must pass the same
 * checks; the names it lacks become aliases of it. */
static int
server_adopt(const char *uuid_name, const char *index_name, char *err,
    size_t errlen)
{
	char sp[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	size_t plen;
	char *slash;
	int fl;

	server_fd = SD_LISTEN_FDS_START;
	server_activated = true;
	if (sd_is_socket_unix(server_fd, SOCK_STREAM, 1, NULL, 0) <= 0 ||
	    getsockname(server_fd, (struct sockaddr *)&sa, &len) != 0 ||
	    len <= offsetof(struct sockaddr_un, sun_path) ||
	    sa.sun_path[0] == '\0') {
		snprintf(err, errlen, "socket activation: fd %d is not a "
		    "listening Unix stream socket with a path", server_fd);
		return -1;
	}
	plen = len - offsetof(struct sockaddr_un, sun_path);
	memcpy(sp, sa.sun_path, plen);
	sp[plen] = '\0';
	if ((fl = fcntl(server_fd, F_GETFL)) < 0 ||
	    fcntl(server_fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
	    fcntl(server_fd, F_SETFD, FD_CLOEXEC) != 0) {
		snprintf(err, errlen, "socket activation: fd %d: %s", server_fd,
		    strerror(errno));
		return -1;
	}
	snprintf(server_path, sizeof(server_path), "%s", sp);
	if ((slash = strrchr(sp, '/')) == NULL || slash[1] == '\0' ||
	    strlen(slash + 1) >= sizeof(server_name)) {
		snprintf(err, errlen, "socket activation: cannot use the "
		    "socket path %s", server_path);
		return -1;
	}
	snprintf(server_name, sizeof(server_name), "%s", slash + 1);
	if (slash == sp)
		slash++;	/* "/name": the root directory */
	*slash = '\0';
	snprintf(server_dir, sizeof(server_dir), "%s", sp);
	if ((server_dirfd = server_open_dir(server_dir, false, err,
	    errlen)) < 0)
		return -1;
	if (strcmp(server_name, uuid_name) != 0 &&
	    server_link(uuid_name, server_name, 0, err, errlen) != 0)
		return -1;
	if (strcmp(server_name, index_name) != 0 &&
	    server_link(index_name, server_name, 1, err, errlen) != 0)
		return -1;
	return 0;
}

/* Checks (or creates) the configured directory and binds a new socket in
 * it, with the index alias. */
static int
server_create(const char *dir, gid_t gid, const char *uuid_name,
    const char *index_name, char *err, size_t errlen)
{
	size_t len = strlen(dir);

	/* "dir/" would follow a symlink named dir. */
	while (len > 1 && dir[len - 1] == '/')
		len--;
	if (len == 0 || len >= sizeof(server_dir) ||
	    (size_t)snprintf(server_path, sizeof(server_path), "%.*s/%s",
	    (int)len, dir, uuid_name) >= sizeof(server_path)) {
		snprintf(err, errlen, "socket directory \"%s\": empty or too "
		    "long", dir);
		return -1;
	}
	snprintf(server_dir, sizeof(server_dir), "%.*s", (int)len, dir);
	snprintf(server_name, sizeof(server_name), "%s", uuid_name);
	if ((server_dirfd = server_open_dir(server_dir, true, err, errlen)) < 0)
		return -1;
	if (server_claim(err, errlen) != 0)
		return -1;
	if ((server_fd = server_bind(gid, err, errlen)) < 0)
		return -1;
	return server_link(index_name, uuid_name, 1, err, errlen);
}

int
vmmd_server_start(const struct vmmd_config *c, char *err, size_t errlen)
{
	char uuid_name[64], index_name[32];
	gid_t gid;
	int n;

	if (server_resolve_groups(c, &gid, err, errlen) != 0)
		return -1;
	/* Names as clients look for them (proto/session.h). */
	if (vmm_sess_sockname_uuid(uuid_name, sizeof(uuid_name),
	    vmmd_pool_device_uuid()) != 0 ||
	    vmm_sess_sockname_index(index_name, sizeof(index_name),
	    (unsigned)vmmd_pool_device_ordinal()) != 0) {
		snprintf(err, errlen, "socket names do not fit");
		return -1;
	}
	n = sd_listen_fds(1);
	if (n < 0 || n > 1) {
		snprintf(err, errlen, "socket activation: expected one socket, got "
		    "%d", n);
		return -1;
	}
	if (n == 1) {
		if (server_adopt(uuid_name, index_name, err, errlen) != 0)
			goto fail;
	} else if (server_create(c->socket_dir, gid, uuid_name, index_name, err,
	    errlen) != 0)
		goto fail;
	server_ev = event_new(vmmd_base, server_fd, EV_READ | EV_PERSIST,
	    server_on_accept, NULL);
	server_resume = evtimer_new(vmmd_base, server_on_resume, NULL);
	if (server_ev == NULL || server_resume == NULL ||
	    event_add(server_ev, NULL) != 0) {
		snprintf(err, errlen, "event_new: out of memory");
		goto fail;
	}
	vmm_log_info("LISTEN Path=%s%s", server_path,
	    server_activated ? " (socket activation)" : "");
	return 0;

fail:
	vmmd_server_stop();
	return -1;
}

void
vmmd_server_stop(void)
{
	char target[PATH_MAX];
	int i;

	if (server_ev != NULL)
		event_free(server_ev);
	if (server_resume != NULL)
		event_free(server_resume);
	server_ev = server_resume = NULL;
	for (i = 0; i < 2; i++) {
		/* Only if it is still ours. */
		if (server_links[i][0] != '\0' && readlinkat(server_dirfd,
		    server_links[i], target, sizeof(target)) > 0)
			(void)unlinkat(server_dirfd, server_links[i], 0);
		server_links[i][0] = '\0';
	}
	if (server_fd >= 0) {
		close(server_fd);
		if (!server_activated)
			(void)unlinkat(server_dirfd, server_name, 0);
	}
	server_fd = -1;
	if (server_dirfd >= 0)
		close(server_dirfd);
	server_dirfd = -1;
}
