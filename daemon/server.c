/*
 * The listening socket: <dir>/gpu-<uuid>.sock, mode 0660 and owned by the
 * configured group, plus an index alias <dir>/gpu<N>.sock (a symlink), so a
 * container whose device numbering differs from the host's still finds its
 * GPU by UUID.  Under socket activation the passed socket is used as it is
 * and the missing names are added as symlinks.
 *
 * Accept is bounded per wake-up; on EMFILE/ENFILE accepting pauses for a
 * second instead of spinning; limits on sessions in all and per uid are
 * enforced here, each refusal answered with an Error and counted.
 */
#include "vmmd.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "log.h"
#include "unixsock.h"

#define VMMD_ACCEPT_BUDGET 64
#define VMMD_LISTEN_BACKLOG 512
#define VMMD_MAX_PEER_GROUPS 256

static int		server_fd = -1;
static bool		server_activated;
static struct event	*server_ev, *server_resume;
static char		server_path[PATH_MAX];
/* Symlinks this daemon created, removed at stop. */
static char		server_links[2][PATH_MAX];
static bool		server_have_admin_gid;
static gid_t		server_admin_gid;

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
	Vmm__Envelope env = VMM__ENVELOPE__INIT;
	Vmm__Error e = VMM__ERROR__INIT;

	e.code = code;
	e.message = (char *)why;
	env.msg_case = VMM__ENVELOPE__MSG_ERROR;
	env.error = &e;
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
	if (vmmd_nsessions >= vmmd_cfg.max_sessions) {
		server_refuse(fd, "too many clients",
		    VMM__ERROR_CODE__ERROR_CODE_LIMIT);
		return 0;
	}
	if (vmmd_session_count_uid(cr.uid) >= vmmd_cfg.max_sessions_per_uid) {
		server_refuse(fd, "too many clients of this uid",
		    VMM__ERROR_CODE__ERROR_CODE_LIMIT);
		return 0;
	}
	/* A session needs a second fd, the peer's pidfd: out of fds, say so
	 * and stop accepting for a while rather than drop the backlog. */
	if ((pidfd = vmmd_session_pidfd(cr.pid)) < 0 && errno != ESRCH) {
		if (errno == EMFILE || errno == ENFILE) {
			server_refuse(fd, "vmmd is out of file descriptors; retry",
			    VMM__ERROR_CODE__ERROR_CODE_BUSY);
			server_pause();
			return -1;
		} else {
			vmm_log_error("pidfd_open(%d): %s", (int)cr.pid,
			    strerror(errno));
			server_refuse(fd, "internal error",
			    VMM__ERROR_CODE__ERROR_CODE_INTERNAL);
		}
		return 0;
	}
	admin = vmmd_server_is_admin(cr.uid, cr.gid, groups, ngroups);
	if (vmmd_session_new(fd, pidfd, cr.pid, cr.uid, cr.gid, admin) == 0)
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
			vmm_log_error("accept: %s; pausing for a second",
			    strerror(errno));
			server_pause();
		} else if (errno != EAGAIN && errno != EWOULDBLOCK)
			vmm_log_error("accept: %s", strerror(errno));
		return;
	}
}

/* "gpu-0123abcd-....sock" for the device's UUID. */
static void
server_uuid_name(char *out, size_t len)
{
	const unsigned char *u = vmmd_pool_device_uuid();

	snprintf(out, len, "gpu-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x.sock", u[0], u[1], u[2], u[3], u[4], u[5],
	    u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

/* Makes dir/name a symlink to target (a name in the same directory),
 * replacing a stale link; remembers it for removal. */
static int
server_link(const char *dir, const char *name, const char *target, int slot,
    char *err, size_t errlen)
{
	char path[PATH_MAX], tmp[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.%d", dir, name, (int)getpid());
	unlink(tmp);
	if (symlink(target, tmp) != 0 || rename(tmp, path) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	snprintf(server_links[slot], sizeof(server_links[slot]), "%s", path);
	return 0;
}

/* Refuses to start if another daemon answers on path; removes a stale one. */
static int
server_claim(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	if (lstat(path, &st) != 0)
		return 0;
	if (S_ISSOCK(st.st_mode) || S_ISLNK(st.st_mode)) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && vmm_unix_connect(fd, path) == 0) {
			close(fd);
			snprintf(err, errlen, "%s: another vmmd is serving this GPU",
			    path);
			return -1;
		}
		if (fd >= 0)
			close(fd);
		unlink(path);
		return 0;
	}
	snprintf(err, errlen, "%s exists and is not a socket", path);
	return -1;
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
	return 0;
}

/* Binds a new socket at server_path, 0660, group gid. */
static int
server_bind(gid_t gid, char *err, size_t errlen)
{
	mode_t old;
	int fd;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	old = umask(0117);
	if (vmm_unix_bind(fd, server_path) != 0) {
		umask(old);
		snprintf(err, errlen, "bind %s: %s", server_path, strerror(errno));
		close(fd);
		return -1;
	}
	umask(old);
	if ((chown(server_path, (uid_t)-1, gid) != 0 && gid != getegid()) ||
	    chmod(server_path, 0660) != 0 ||
	    listen(fd, VMMD_LISTEN_BACKLOG) != 0) {
		snprintf(err, errlen, "%s: %s", server_path, strerror(errno));
		unlink(server_path);
		close(fd);
		return -1;
	}
	return fd;
}

int
vmmd_server_start(const struct vmmd_config *c, char *err, size_t errlen)
{
	char uuid_name[64], index_name[32], path[PATH_MAX], base[PATH_MAX];
	const char *dir = c->socket_dir;
	gid_t gid;
	int n;

	if (server_resolve_groups(c, &gid, err, errlen) != 0)
		return -1;
	server_uuid_name(uuid_name, sizeof(uuid_name));
	snprintf(index_name, sizeof(index_name), "gpu%d.sock",
	    vmmd_pool_device_ordinal());
	n = sd_listen_fds(1);
	if (n < 0 || n > 1) {
		snprintf(err, errlen, "socket activation: expected one socket, got "
		    "%d", n);
		return -1;
	}
	if (n == 1) {
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);

		server_fd = SD_LISTEN_FDS_START;
		if (sd_is_socket_unix(server_fd, SOCK_STREAM, 1, NULL, 0) <= 0 ||
		    getsockname(server_fd, (struct sockaddr *)&sa, &len) != 0 ||
		    sa.sun_path[0] == '\0') {
			snprintf(err, errlen, "socket activation: fd %d is not a "
			    "listening Unix stream socket with a path", server_fd);
			return -1;
		}
		server_activated = true;
		fcntl(server_fd, F_SETFL, fcntl(server_fd, F_GETFL) | O_NONBLOCK);
		fcntl(server_fd, F_SETFD, FD_CLOEXEC);
		snprintf(server_path, sizeof(server_path), "%s", sa.sun_path);
		snprintf(path, sizeof(path), "%s", server_path);
		snprintf(base, sizeof(base), "%s", basename(path));
		snprintf(path, sizeof(path), "%s", server_path);
		dir = dirname(path);
		if (strcmp(base, uuid_name) != 0 &&
		    server_link(dir, uuid_name, base, 0, err, errlen) != 0)
			return -1;
		if (strcmp(base, index_name) != 0 &&
		    server_link(dir, index_name, base, 1, err, errlen) != 0)
			return -1;
	} else {
		if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
			snprintf(err, errlen, "%s: %s", dir, strerror(errno));
			return -1;
		}
		if ((size_t)snprintf(server_path, sizeof(server_path), "%s/%s",
		    dir, uuid_name) >= sizeof(server_path)) {
			snprintf(err, errlen, "%s: socket directory path too long",
			    dir);
			return -1;
		}
		if (server_claim(server_path, err, errlen) != 0)
			return -1;
		if ((server_fd = server_bind(gid, err, errlen)) < 0)
			return -1;
		if (server_link(dir, index_name, uuid_name, 1, err, errlen) != 0) {
			vmmd_server_stop();
			return -1;
		}
	}
	server_ev = event_new(vmmd_base, server_fd, EV_READ | EV_PERSIST,
	    server_on_accept, NULL);
	server_resume = evtimer_new(vmmd_base, server_on_resume, NULL);
	if (server_ev == NULL || server_resume == NULL ||
	    event_add(server_ev, NULL) != 0) {
		snprintf(err, errlen, "event_new: out of memory");
		vmmd_server_stop();
		return -1;
	}
	vmm_log_info("LISTEN Path=%s%s", server_path,
	    server_activated ? " (socket activation)" : "");
	return 0;
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
		if (server_links[i][0] != '\0' &&
		    readlink(server_links[i], target, sizeof(target)) > 0)
			unlink(server_links[i]);
		server_links[i][0] = '\0';
	}
	if (server_fd >= 0) {
		close(server_fd);
		if (!server_activated)
			unlink(server_path);
	}
	server_fd = -1;
}
