/*
 * vmmctl — the admin tool of vmmd (DESIGN.md "Protocol"): one command per
 * run, over one daemon's socket, as a client of kind ADMIN.  Commands are a
 * table (STYLE.md 24); each handler parses its own arguments before it
 * connects, so a usage error never touches the daemon.
 *
 * Exit status, the contract with scripts (keep usage() in step):
 *   0  success
 *   1  usage error: bad option, command, argument, size or device; also a
 *      local failure (out of memory, standard output not writable)
 *   2  daemon not running: no socket at the path (ENOENT), nobody listening
 *      (ECONNREFUSED), or the daemon said Goodbye because it is stopping
 *   3  permission denied: connect() got EACCES/EPERM, or the daemon answered
 *      ERROR_CODE_PERMISSION
 *   4  protocol error: a bad frame, a version mismatch, an unexpected reply,
 *      the connection closed early, or no answer within --timeout
 *   5  the daemon refused the request: any other Error reply (its message
 *      is printed)
 *
 * Output: results on stdout, nothing else; every diagnostic is one line on
 * stderr starting "vmmctl: ".  Strings that came from the daemon (client
 * names, counter names, error messages) are escaped for the terminal, and
 * for JSON.
 */

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "clock.h"
#include "figures.h"
#include "frame.h"
#include "metrics.h"
#include "opt.h"
#include "session.h"

#ifndef VMMCTL_VERSION
#define VMMCTL_VERSION		"unknown"
#endif

enum {
	CTL_EXIT_OK = 0,
	CTL_EXIT_USAGE = 1,
	CTL_EXIT_NOT_RUNNING = 2,
	CTL_EXIT_PERMISSION = 3,
	CTL_EXIT_PROTOCOL = 4,
	CTL_EXIT_REFUSED = 5
};

#define CTL_NAME		"vmmctl"
#define CTL_TIMEOUT_MS		5000		/* per exchange */
#define CTL_TIMEOUT_MAX_MS	3600000
/* Sessions gathered over all pages: far above what a daemon can serve, low
 * enough that a daemon inflating sessions_total cannot keep us paging. */
#define CTL_MAX_SESSIONS	65536
#define CTL_GOODBYE_MS		100		/* best effort, when leaving */
/* Escaped peer strings: at most 4 output bytes per input byte. */
#define ESC_LEN(n)		(4 * (n) + 1)
#define CELL_LEN		32		/* one formatted table cell */

#define nitems(a)		(sizeof(a) / sizeof((a)[0]))

struct cmd;


struct ctl {
	const struct cmd	*cmd;		/* the command being run */
	char			 path[PATH_MAX];
	int			 timeout_ms;
	struct vmm_sess		*s;		/* NULL until connected */
	const char		*socket_dir;	/* --socket-dir, $VMM_SOCKET_DIR or the default */
};

/* One command.  Arguments are the words after the name; the arity check
 * runs before the handler, which parses them before connecting. */
struct cmd {
	const char	*name;		/* one or two words */
	int		 min_args;
	int		 max_args;
	bool		 local;		/* needs no socket */
	int		(*fn)(struct ctl *, int, char **);
	const char	*args;		/* synopsis of the arguments */
	const char	*help;
	void		(*more_help)(FILE *);	/* for "help CMD", "CMD --help" */
};

/* Sessions gathered page by page; the pointers live in the pages. */
struct sessions {
	struct vmm_frame_msg	 **pages;
	size_t			   npages;
	const Vmm__SessionStats	 **v;
	size_t			   n;
};

static int	cmd_stats(struct ctl *, int, char **);
static int	cmd_clients(struct ctl *, int, char **);
static int	cmd_va(struct ctl *, int, char **);
static int	cmd_metrics(struct ctl *, int, char **);
static int	cmd_top(struct ctl *, int, char **);
static int	cmd_cdi(struct ctl *, int, char **);
static int	cmd_trim(struct ctl *, int, char **);
static int	cmd_quota_set(struct ctl *, int, char **);
static int	cmd_quota_clear(struct ctl *, int, char **);
static int	cmd_help(struct ctl *, int, char **);
static void	stats_help(FILE *);

static const struct cmd cmds[] = {
	{ "stats", 0, 2, false, cmd_stats, "[--json] [--reset-marks]",
	  "pool totals, counters and every session; --reset-marks: the\n"
	  "high-water marks (peak ...) restart after this report", stats_help },
	{ "clients", 0, 1, false, cmd_clients, "[--json]",
	  "the session table only", NULL },
	{ "va", 0, 1, false, cmd_va, "[--json]",
	  "the address plan: every client's VA ranges on this GPU, by\n"
	  "address (planned by vmmd, or where a missed hint went)", NULL },
	{ "top", 0, 4, false, cmd_top, "[--interval MS] [--iterations N]",
	  "a live view of the pool and the clients, sorted by memory held,\n"
	  "refreshed every MS ms (default 1000); q quits; --iterations:\n"
	  "stop after N refreshes", NULL },
	{ "cdi", 0, 2, true, cmd_cdi, "[--library PATH]",
	  "a CDI spec (kind vmmd.io/gpu, device \"all\") that gives a\n"
	  "container vmmd's socket directory, the library and LD_PRELOAD:\n"
	  "save it as /etc/cdi/vmmd.json, then e.g. podman run --device\n"
	  "vmmd.io/gpu=all (PATH default: the installed library)", NULL },
	{ "metrics", 0, 0, false, cmd_metrics, "",
	  "the stats in Prometheus text format (for node_exporter's\n"
	  "textfile collector; vmmd serves the same on metrics_listen)", NULL },
	{ "trim", 0, 3, false, cmd_trim, "[--recall] [--target SIZE]",
	  "give idle pool memory back to the GPU (all of it by default;\n"
	  "--recall also asks clients for their caches, which then go to\n"
	  "the GPU too, up to SIZE in all)", NULL },
	{ "quota set", 3, 3, false, cmd_quota_set, "uid|name|cgroup KEY SIZE",
	  "limit what a uid, client name or cgroup may hold (SIZE: 512M,\n"
	  "4G, ...; 0 removes the quota)", NULL },
	{ "quota clear", 2, 2, false, cmd_quota_clear, "uid|name|cgroup KEY",
	  "remove a quota", NULL },
	{ "help", 0, 2, true, cmd_help, "[COMMAND]",
	  "this text, or one command's", NULL },
};

/* Pool figures (proto/figures.h), in the order shown; keys are the
 * PoolStats field names. */
struct pool_row {
	const char	*key;
	const char	*label;
	bool		 size;		/* bytes: humanized */
	size_t		 off;
	const char	*help;
};

#define POOL_ROW(f, label, unit, help) \
	{ #f, label, (unit) == VMM_FIGURE_BYTES, offsetof(Vmm__PoolStats, f), \
	  help },
static const struct pool_row pool_rows[] = {
	VMM_POOL_FIGURES(POOL_ROW)
};
#undef POOL_ROW

/* The daemon's counters (proto/figures.h), for their help; the table and
 * JSON show the counters the daemon sends, by name. */
struct counter_doc {
	const char	*name;
	const char	*help;
};

#define COUNTER_DOC(name, help) { #name, help },
static const struct counter_doc counter_docs[] = {
	VMM_COUNTERS(COUNTER_DOC)
};
#undef COUNTER_DOC

enum col_type {
	COL_U64,
	COL_U32,
	COL_SIZE,		/* humanized in the table */
	COL_QUOTA,		/* a size; 0 shows as "-" */
	COL_KIND,
	COL_NATIVE,		/* a size: the four native_*_bytes summed */
	COL_NAME		/* last column, unpadded */
};

/* Session fields, in the order shown; keys are the SessionStats field
 * names; a NULL heading means JSON only. */
struct sess_col {
	const char	*key;
	const char	*head;
	enum col_type	 type;
	size_t		 off;
};

#define SESS_COL(f, head, type) \
	{ #f, head, type, offsetof(Vmm__SessionStats, f) }
static const struct sess_col sess_cols[] = {
	SESS_COL(session_id, "ID", COL_U64),
	SESS_COL(pid, "PID", COL_U32),
	SESS_COL(uid, "UID", COL_U32),
	SESS_COL(gid, NULL, COL_U32),
	SESS_COL(kind, "KIND", COL_KIND),
	SESS_COL(chunks_held, "CHUNKS", COL_U64),
	SESS_COL(bytes_held, "HELD", COL_SIZE),
	SESS_COL(reported_in_use, "IN-USE", COL_SIZE),
	SESS_COL(reported_cached, "CACHED", COL_SIZE),
	SESS_COL(reported_peak, "PEAK", COL_SIZE),
	SESS_COL(quota_bytes, "QUOTA", COL_QUOTA),
	SESS_COL(ipc_opened, NULL, COL_U64),
	SESS_COL(ipc_opened_bytes, "IPC-OPEN", COL_SIZE),
	SESS_COL(app_vmm_bytes, "APP-VMM", COL_SIZE),
	SESS_COL(native_fallback_bytes, NULL, COL_U64),
	SESS_COL(native_cumemcreate_bytes, NULL, COL_U64),
	SESS_COL(native_pool_bytes, NULL, COL_U64),
	SESS_COL(native_managed_bytes, NULL, COL_U64),
	{ "native_bytes", "NATIVE", COL_NATIVE, 0 },
	SESS_COL(va_ranges, NULL, COL_U32),
	SESS_COL(va_bytes, NULL, COL_U64),
	SESS_COL(va_hint_missed, NULL, COL_U64),
	SESS_COL(connected_usec, NULL, COL_U64),
	SESS_COL(name, "NAME", COL_NAME),
};

/* --- diagnostics ---------------------------------------------------------- */

/* Print one "vmmctl: ..." line on stderr; returns status, for tail calls. */
static int __attribute__((format(printf, 2, 3)))
ctl_err(int status, const char *fmt, ...)
{
	va_list	ap;

	fputs(CTL_NAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return status;
}

static int
usage_err(const struct cmd *cmd)
{
	return ctl_err(CTL_EXIT_USAGE, "usage: " CTL_NAME " %s %s", cmd->name,
	    cmd->args);
}

/* --- strings from the daemon ---------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (whose first byte is >= 0x80),
 * or 0: no overlongs, no surrogates, nothing past U+10FFFF. */
static size_t
utf8_len(const unsigned char *p)
{
	unsigned char	lo = 0x80, hi = 0xbf;
	size_t		n, i;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	/* Checked in order, so a NUL stops the walk before the end. */
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++) {
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	}
	return n;
}

/*
 * Copy s into out for a terminal: printable ASCII and valid UTF-8 above the
 * C1 controls as they are, a backslash doubled, every other byte as \xNN.
 * out must hold ESC_LEN(strlen(s)); a shorter one truncates.
 */
static void
text_escape(char *out, size_t outlen, const char *s)
{
	const unsigned char	*p;
	size_t			 o = 0, n;

	p = (const unsigned char *)(s != NULL ? s : "");

	while (*p != '\0') {
		if (*p >= 0x80 && (n = utf8_len(p)) > 0 &&
		    !(p[0] == 0xc2 && p[1] < 0xa0)) {
			if (o + n >= outlen)
				break;
			memcpy(out + o, p, n);
			o += n;
			p += n;
			continue;
		}
		if (o + 4 >= outlen)
			break;
		if (*p == '\\') {
			out[o++] = '\\';
			out[o++] = '\\';
		} else if (*p >= 0x20 && *p < 0x7f)
			out[o++] = (char)*p;
		else
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x",
			    *p);
		p++;
	}
	out[o] = '\0';
}

/* Write s as a JSON string: valid UTF-8 kept, invalid bytes as U+FFFD. */
static void
json_str(FILE *f, const char *s)
{
	const unsigned char	*p;
	size_t			 n;

	p = (const unsigned char *)(s != NULL ? s : "");
	fputc('"', f);
	while (*p != '\0') {
		if (*p == '"' || *p == '\\') {
			fputc('\\', f);
			fputc(*p++, f);
		} else if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\u%04x", *p++);
		else if (*p < 0x80)
			fputc(*p++, f);
		else if ((n = utf8_len(p)) > 0) {
			fwrite(p, 1, n, f);
			p += n;
		} else {
			fputs("\\ufffd", f);
			p++;
		}
	}
	fputc('"', f);
}

/* Bytes for people: "512 B", "2 MiB", "1.5 GiB". */
static void
humanize(uint64_t v, char *buf, size_t len)
{
	static const char *const units[] = {
		"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"
	};
	double	d = (double)v;
	size_t	u = 0;

	while (d >= 1024 && u + 1 < nitems(units)) {
		d /= 1024;
		u++;
	}
	/* What "%.1f" would round up to 1024.0 reads better one unit up. */
	if (u > 0 && d >= 1023.95 && u + 1 < nitems(units)) {
		d /= 1024;
		u++;
	}
	if (u == 0 || (v & ((UINT64_C(1) << (10 * u)) - 1)) == 0)
		snprintf(buf, len, "%" PRIu64 " %s", v >> (10 * u), units[u]);
	else
		snprintf(buf, len, "%.1f %s", d, units[u]);
}

/* --- socket resolution ---------------------------------------------------- */

static bool
all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (!isdigit((unsigned char)*s))
			return false;
	}
	return true;
}

/*
 * The socket to use: --socket as given; else <dir>/gpu<N>.sock for a device
 * index or <dir>/gpu-<uuid>.sock for a UUID (default device 0), dir from
 * --socket-dir, $VMM_SOCKET_DIR or the default.  Names are the daemon's.
 */
static int
resolve_socket(struct ctl *c, const char *sock, const char *device,
    const char *dir)
{
	uint8_t		 uuid[VMM_PROTO_UUID_LEN];
	unsigned long	 idx;
	int		 rc;

	if (sock != NULL) {
		if (*sock == '\0' || strlen(sock) >= sizeof(c->path))
			return ctl_err(CTL_EXIT_USAGE,
			    "socket path empty or longer than %zu bytes",
			    sizeof(c->path) - 1);
		strcpy(c->path, sock);
		return 0;
	}
	if (dir == NULL || *dir == '\0')
		dir = getenv("VMM_SOCKET_DIR");
	if (dir == NULL || *dir == '\0')
		dir = VMM_SESS_SOCKET_DIR;
	if (device == NULL)
		device = "0";

	if (all_digits(device) && strlen(device) < 32) {
		errno = 0;
		idx = strtoul(device, NULL, 10);
		if (errno != 0 || idx > UINT32_MAX)
			return ctl_err(CTL_EXIT_USAGE,
			    "device index '%s' out of range", device);
		rc = vmm_sess_path_index(c->path, sizeof(c->path), dir,
		    (unsigned)idx);
	} else if (vmm_sess_parse_uuid(device, uuid) == 0)
		rc = vmm_sess_path_uuid(c->path, sizeof(c->path), dir, uuid);
	else
		return ctl_err(CTL_EXIT_USAGE, "bad device '%s': expected an "
		    "index, a GPU UUID (GPU-xxxxxxxx-xxxx-xxxx-xxxx-"
		    "xxxxxxxxxxxx) or a MIG UUID (MIG-...)", device);
	if (rc != 0)
		return ctl_err(CTL_EXIT_USAGE, "socket path under '%s' "
		    "longer than %zu bytes", dir, sizeof(c->path) - 1);
	return 0;
}

/* --- talking to the daemon ------------------------------------------------ */

/* Connect to c->path, waiting at most the timeout for a full backlog. */
static int
ctl_connect(struct ctl *c)
{
	int	rc;

	if ((rc = vmm_sess_connect(&c->s, c->path, c->timeout_ms)) == 0)
		return 0;
	switch (-rc) {
	case EACCES:
	case EPERM:
		return ctl_err(CTL_EXIT_PERMISSION, "permission denied: cannot "
		    "connect to %s", c->path);
	case EAGAIN:
	case ETIMEDOUT:
		return ctl_err(CTL_EXIT_PROTOCOL, "timeout: %s did not accept "
		    "the connection within %d ms", c->path, c->timeout_ms);
	case ENOMEM:
		return ctl_err(CTL_EXIT_USAGE, "out of memory");
	default:
		/* ENOENT, ENOTDIR, ECONNREFUSED, or not a stream socket. */
		return ctl_err(CTL_EXIT_NOT_RUNNING, "daemon not running: "
		    "cannot connect to %s: %s", c->path, strerror(-rc));
	}
}

/* Report a send or receive failure: every one is a protocol error. */
static int
io_err(const struct ctl *c, int rc, bool sending)
{
	if (rc == -ETIMEDOUT && sending)
		return ctl_err(CTL_EXIT_PROTOCOL, "timeout: %s took no request "
		    "within %d ms", c->path, c->timeout_ms);
	if (rc == -ETIMEDOUT)
		return ctl_err(CTL_EXIT_PROTOCOL, "timeout: no reply from %s "
		    "within %d ms", c->path, c->timeout_ms);
	if (rc == -EPIPE || rc == -ECONNRESET)
		return ctl_err(CTL_EXIT_PROTOCOL, "protocol error: %s closed "
		    "the connection", c->path);
	return ctl_err(CTL_EXIT_PROTOCOL, "protocol error: %s %s: %s",
	    sending ? "cannot send to" : "bad reply from", c->path,
	    vmm_frame_strerror(rc));
}

/* An Error reply, as an exit status: PERMISSION 3; faults the daemon found
 * in our messages 4; anything else is a refusal, 5. */
static int
error_reply(const struct ctl *c, const struct vmm_sess_error *e)
{
	char		 code[32];
	char		 msg[ESC_LEN(VMM_PROTO_MAX_MESSAGE)];
	const char	*sep;

	vmm_sess_error_name(e->code, code, sizeof(code));
	text_escape(msg, sizeof(msg), e->message);
	sep = msg[0] != '\0' ? ": " : "";

	switch (e->code) {
	case VMM__ERROR_CODE__ERROR_CODE_PERMISSION:
		return ctl_err(CTL_EXIT_PERMISSION, "permission denied by the "
		    "daemon at %s%s%s", c->path, sep, msg);
	case VMM__ERROR_CODE__ERROR_CODE_BAD_MESSAGE:
	case VMM__ERROR_CODE__ERROR_CODE_VERSION_MISMATCH:
	case VMM__ERROR_CODE__ERROR_CODE_BAD_STATE:
		return ctl_err(CTL_EXIT_PROTOCOL, "protocol error reported by "
		    "%s (%s)%s%s", c->path, code, sep, msg);
	default:
		return ctl_err(CTL_EXIT_REFUSED, "request refused by %s "
		    "(%s)%s%s", c->path, code, sep, msg);
	}
}

/* Pushes: an admin session holds nothing a Recall could ask back. */
static void
ignore_push(struct vmm_frame_msg *m, void *arg)
{
	(void)m;
	(void)arg;
}

/* A failed wait for the reply to req, as an exit status with the reason
 * printed. */
static int
ctl_status(struct ctl *c, int rc, const Vmm__Envelope *req)
{
	const struct vmm_sess_error	*e = vmm_sess_error(c->s);
	char				 msg[ESC_LEN(VMM_PROTO_MAX_MESSAGE)];

	switch (rc) {
	case VMM_SESS_EGOODBYE:
		text_escape(msg, sizeof(msg), e->message);
		return ctl_err(CTL_EXIT_NOT_RUNNING, "daemon not running: %s "
		    "is shutting down%s%s", c->path, msg[0] != '\0' ? ": " : "",
		    msg);
	case VMM_SESS_EREFUSED:
		return error_reply(c, e);
	case VMM_SESS_EMISMATCH:
		return ctl_err(CTL_EXIT_PROTOCOL, "protocol error: "
		    "unexpected %s (request id %" PRIu64 ") from %s in answer "
		    "to %s", e->got, e->request_id, c->path,
		    vmm_frame_type_name(req));
	default:
		return io_err(c, rc, false);
	}
}

/*
 * Send one request and wait, within the timeout, for its reply: 0 and
 * *out, or an exit status with the reason printed.
 */
static int
ctl_call(struct ctl *c, Vmm__Envelope *req, struct vmm_frame_msg **out)
{
	int64_t	deadline, left;
	int	rc;

	*out = NULL;
	deadline = (int64_t)vmm_now_ms() + c->timeout_ms;
	if ((rc = vmm_sess_send(c->s, req, NULL, 0, c->timeout_ms)) < 0)
		return io_err(c, rc, true);
	left = deadline - (int64_t)vmm_now_ms();
	rc = vmm_sess_wait(c->s, req, left > 0 ? (int)left : 0, out);
	return rc == 0 ? 0 : ctl_status(c, rc, req);
}

/* Connect and shake hands: Hello as an ADMIN client, a HelloReply of our
 * protocol version back. */
static int
ctl_open(struct ctl *c)
{
	Vmm__Hello	hello = VMM__HELLO__INIT;
	Vmm__Envelope	env = vmm_frame_env_hello(&hello);
	int		rc;

	if ((rc = ctl_connect(c)) != 0)
		return rc;
	vmm_sess_set_push_handler(c->s, ignore_push, NULL);
	hello.client_name = (char *)CTL_NAME;
	hello.kind = VMM__CLIENT_KIND__CLIENT_KIND_ADMIN;
	rc = vmm_sess_hello(c->s, &hello, c->timeout_ms);
	if (rc == VMM_SESS_EVERSION)
		return ctl_err(CTL_EXIT_PROTOCOL, "protocol error: %s speaks "
		    "protocol version %" PRIu32 ", " CTL_NAME " speaks %d",
		    c->path, vmm_sess_hello_reply(c->s)->protocol_version,
		    VMM_PROTOCOL_VERSION);
	return rc == 0 ? 0 : ctl_status(c, rc, &env);
}

/* Say goodbye if the session is open (best effort), and free everything. */
static void
ctl_close(struct ctl *c)
{
	if (c->s != NULL && vmm_sess_hello_reply(c->s) != NULL)
		vmm_sess_goodbye(c->s, CTL_GOODBYE_MS);
	else
		vmm_sess_close(c->s);
	c->s = NULL;
}

static int
sess_cmp(const void *a, const void *b)
{
	const Vmm__SessionStats *const	*x = a, *const *y = b;

	return (*x)->session_id < (*y)->session_id ? -1 :
	    (*x)->session_id > (*y)->session_id;
}

static void
sessions_free(struct sessions *s)
{
	size_t	i;

	for (i = 0; i < s->npages; i++)
		vmm_frame_msg_free(s->pages[i]);
	free(s->pages);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/*
 * Page through the daemon's sessions (StatsRequest or ClientsRequest) until
 * sessions_total is reached.  Sessions that come and go between pages may
 * shift the offsets: the result is sorted by id and duplicates dropped.
 */
static int
fetch_sessions(struct ctl *c, bool stats, bool reset_marks, struct sessions *s)
{
	Vmm__SessionStats *const	*v;
	struct vmm_frame_msg		*m, **pages;
	const Vmm__SessionStats		**nv;
	const Vmm__Envelope		*e;
	uint64_t			 off = 0;
	uint32_t			 total;
	size_t				 n, i, k;
	int				 rc;

	for (;;) {
		Vmm__StatsRequest	sreq = VMM__STATS_REQUEST__INIT;
		Vmm__ClientsRequest	creq = VMM__CLIENTS_REQUEST__INIT;
		Vmm__Envelope		env;

		if (stats) {
			sreq.session_offset = (uint32_t)off;
			/* The first page has the marks; then they restart. */
			sreq.reset_marks = reset_marks && off == 0;
			env = vmm_frame_env_stats_request(&sreq);
		} else {
			creq.session_offset = (uint32_t)off;
			env = vmm_frame_env_clients_request(&creq);
		}
		if ((rc = ctl_call(c, &env, &m)) != 0)
			return rc;
		pages = realloc(s->pages, (s->npages + 1) * sizeof(*pages));
		if (pages == NULL) {
			vmm_frame_msg_free(m);
			return ctl_err(CTL_EXIT_USAGE, "out of memory");
		}
		s->pages = pages;
		s->pages[s->npages++] = m;

		e = vmm_frame_msg_env(m);
		if (stats) {
			v = e->stats_reply->sessions;
			n = e->stats_reply->n_sessions;
			total = e->stats_reply->sessions_total;
		} else {
			v = e->clients_reply->sessions;
			n = e->clients_reply->n_sessions;
			total = e->clients_reply->sessions_total;
		}
		if (n == 0 && off < total)
			return ctl_err(CTL_EXIT_PROTOCOL, "protocol error: %s "
			    "sent no sessions at offset %" PRIu64 " of %"
			    PRIu32, c->path, off, total);
		if (n > CTL_MAX_SESSIONS - s->n)
			return ctl_err(CTL_EXIT_PROTOCOL, "protocol error: %s "
			    "reports more than %d sessions", c->path,
			    CTL_MAX_SESSIONS);
		if (n > 0) {
			nv = realloc(s->v, (s->n + n) * sizeof(*nv));
			if (nv == NULL)
				return ctl_err(CTL_EXIT_USAGE, "out of memory");
			s->v = nv;
			for (i = 0; i < n; i++)
				s->v[s->n++] = v[i];
		}
		off += n;
		if (off >= total)
			break;
	}

	if (s->n > 1) {
		qsort(s->v, s->n, sizeof(*s->v), sess_cmp);
		for (i = 1, k = 1; i < s->n; i++) {
			if (s->v[i]->session_id != s->v[k - 1]->session_id)
				s->v[k++] = s->v[i];
		}
		s->n = k;
	}
	return 0;
}

/* --- output --------------------------------------------------------------- */

static uint64_t
pool_value(const Vmm__PoolStats *p, const struct pool_row *r)
{
	return *(const uint64_t *)(const void *)((const char *)p + r->off);
}

static void
pool_cell(const Vmm__PoolStats *p, const struct pool_row *r, char *buf,
    size_t len)
{
	if (r->size)
		humanize(pool_value(p, r), buf, len);
	else
		snprintf(buf, len, "%" PRIu64, pool_value(p, r));
}

static const char *
kind_name(Vmm__ClientKind k)
{
	switch (k) {
	case VMM__CLIENT_KIND__CLIENT_KIND_APP:
		return "app";
	case VMM__CLIENT_KIND__CLIENT_KIND_ADMIN:
		return "admin";
	default:
		return "?";
	}
}

/* a + b, UINT64_MAX if it overflows (the figures are the client's). */
static uint64_t
sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* What a session holds outside the pool: its four native_*_bytes. */
static uint64_t
native_sum(const Vmm__SessionStats *s)
{
	return sat_add(sat_add(s->native_fallback_bytes,
	    s->native_cumemcreate_bytes), sat_add(s->native_pool_bytes,
	    s->native_managed_bytes));
}

/* A session field as a number (COL_KIND: the enum value). */
static uint64_t
sess_value(const Vmm__SessionStats *s, const struct sess_col *col)
{
	const void	*f = (const char *)s + col->off;

	switch (col->type) {
	case COL_U32:
		return *(const uint32_t *)f;
	case COL_KIND:
		return (uint64_t)*(const Vmm__ClientKind *)f;
	case COL_NAME:
		return 0;
	case COL_NATIVE:
		return native_sum(s);
	default:
		return *(const uint64_t *)f;
	}
}

/* One table cell (not COL_NAME). */
static void
sess_cell(const Vmm__SessionStats *s, const struct sess_col *col, char *buf,
    size_t len)
{
	uint64_t	v = sess_value(s, col);

	switch (col->type) {
	case COL_KIND:
		snprintf(buf, len, "%s", kind_name((Vmm__ClientKind)v));
		break;
	case COL_QUOTA:
		if (v == 0) {
			snprintf(buf, len, "-");
			break;
		}
		/* FALLTHROUGH */
	case COL_SIZE:
	case COL_NATIVE:
		humanize(v, buf, len);
		break;
	default:
		snprintf(buf, len, "%" PRIu64, v);
		break;
	}
}

/* The session table, columns sized to fit, names last and escaped. */
static void
print_sessions(FILE *f, const struct sessions *s, const char *indent)
{
	char		cell[CELL_LEN], name[ESC_LEN(VMM_PROTO_MAX_NAME)];
	int		width[nitems(sess_cols)];
	size_t		i, j;
	const char	*sep;
	int		w;

	for (j = 0; j < nitems(sess_cols); j++) {
		width[j] = sess_cols[j].head != NULL ?
		    (int)strlen(sess_cols[j].head) : 0;
		if (sess_cols[j].head == NULL)
			continue;
		for (i = 0; i < s->n && sess_cols[j].type == COL_NAME; i++) {
			text_escape(name, sizeof(name), s->v[i]->name);
			if ((w = (int)strlen(name)) > width[j])
				width[j] = w;
		}
		if (sess_cols[j].type == COL_NAME)
			continue;
		for (i = 0; i < s->n; i++) {
			sess_cell(s->v[i], &sess_cols[j], cell, sizeof(cell));
			if ((w = (int)strlen(cell)) > width[j])
				width[j] = w;
		}
	}
	for (i = 0; i <= s->n; i++) {		/* row 0: the headings */
		fputs(indent, f);
		sep = "";
		for (j = 0; j < nitems(sess_cols); j++) {
			const struct sess_col *col = &sess_cols[j];

			if (col->head == NULL)
				continue;
			if (col->type == COL_NAME) {
				if (i > 0)
					text_escape(name, sizeof(name),
					    s->v[i - 1]->name);
				fprintf(f, "%s%-*s", sep, width[j], i == 0 ?
				    col->head : name);
				sep = "  ";
				continue;
			}
			if (i > 0)
				sess_cell(s->v[i - 1], col, cell, sizeof(cell));
			fprintf(f, col->type == COL_KIND ? "%s%-*s" : "%s%*s",
			    sep, width[j], i == 0 ? col->head : cell);
			sep = "  ";
		}
		/* Which container: its id where one was read, else the cgroup. */
		if (i == 0) {
			fputs("  CONTAINER", f);
		} else {
			const Vmm__SessionStats *v = s->v[i - 1];
			const char *c = v->container_id != NULL &&
			    v->container_id[0] != '\0' ? v->container_id :
			    v->cgroup != NULL && v->cgroup[0] != '\0' ?
			    v->cgroup : "-";
			char cg[ESC_LEN(64)];

			text_escape(cg, sizeof(cg), c);
			fprintf(f, "  %.*s", c == v->container_id ? 12 : 64, cg);
		}
		fputc('\n', f);
	}
}

static void
print_sessions_json(FILE *f, const struct sessions *s)
{
	size_t	i, j;

	fputc('[', f);
	for (i = 0; i < s->n; i++) {
		fputs(i > 0 ? ",{" : "{", f);
		for (j = 0; j < nitems(sess_cols); j++) {
			const struct sess_col *col = &sess_cols[j];

			fprintf(f, "%s\"%s\":", j > 0 ? "," : "", col->key);
			if (col->type == COL_NAME)
				json_str(f, s->v[i]->name);
			else if (col->type == COL_KIND)
				json_str(f, kind_name(s->v[i]->kind));
			else
				fprintf(f, "%" PRIu64,
				    sess_value(s->v[i], col));
		}
		/* Which container: the cgroup v2 path ("" if unknown). */
		fputs(",\"cgroup\":", f);
		json_str(f, s->v[i]->cgroup != NULL ? s->v[i]->cgroup : "");
		fputs(",\"container_id\":", f);
		json_str(f, s->v[i]->container_id != NULL ? s->v[i]->container_id : "");
		fputc('}', f);
	}
	fputc(']', f);
}

/* The device UUID of the HelloReply, as the daemon names its socket. */
static void
device_uuid(const struct ctl *c, char out[VMM_SESS_UUID_STRLEN + 5])
{
	/* frame.c let through no HelloReply without its 16 bytes. */
	memcpy(out, "GPU-", 4);
	vmm_sess_format_uuid(out + 4,
	    vmm_sess_hello_reply(c->s)->device_uuid.data);
}

/* --- commands ------------------------------------------------------------- */

/* The optional "--json" of stats and clients: 0/1, or -1 if not that. */
static int
json_flag(int argc, char **argv)
{
	if (argc == 0)
		return 0;
	return strcmp(argv[0], "--json") == 0 ? 1 : -1;
}

/* Pool, counters and sessions, as a table or as one JSON object. */
/* A daemon that sends a counter twice is broken: refuse its figures. */
static int
check_counters(struct ctl *c, const Vmm__StatsReply *r)
{
	char	name[ESC_LEN(VMM_PROTO_MAX_COUNTER_NAME)];
	size_t	i, j;

	for (i = 0; i < r->n_counters; i++) {
		for (j = 0; j < i; j++) {
			if (strcmp(r->counters[i]->name,
			    r->counters[j]->name) == 0) {
				text_escape(name, sizeof(name),
				    r->counters[i]->name);
				return ctl_err(CTL_EXIT_PROTOCOL, "protocol "
				    "error: %s sent counter '%s' twice",
				    c->path, name);
			}
		}
	}
	return 0;
}

static int
cmd_stats(struct ctl *c, int argc, char **argv)
{
	struct sessions		 s = { 0 };
	const Vmm__StatsReply	*r;
	char			 buf[CELL_LEN], uuid[VMM_SESS_UUID_STRLEN + 5];
	char			 name[ESC_LEN(VMM_PROTO_MAX_COUNTER_NAME)];
	int			 json = 0, reset = 0, rc, lw, vw, w, a;
	size_t			 i;

	for (a = 0; a < argc; a++) {
		if (strcmp(argv[a], "--json") == 0 && !json)
			json = 1;
		else if (strcmp(argv[a], "--reset-marks") == 0 && !reset)
			reset = 1;
		else
			return usage_err(c->cmd);
	}
	if ((rc = ctl_open(c)) != 0 ||
	    (rc = fetch_sessions(c, true, reset, &s)) != 0)
		goto out;
	/* Pool and counters as of the first page. */
	r = vmm_frame_msg_env(s.pages[0])->stats_reply;
	if ((rc = check_counters(c, r)) != 0)
		goto out;
	device_uuid(c, uuid);

	if (json) {
		printf("{\"pool\":{\"device_uuid\":\"%s\"", uuid);
		for (i = 0; i < nitems(pool_rows); i++)
			printf(",\"%s\":%" PRIu64, pool_rows[i].key,
			    pool_value(r->pool, &pool_rows[i]));
		fputs("},\"counters\":{", stdout);
		for (i = 0; i < r->n_counters; i++) {
			if (i > 0)
				fputc(',', stdout);
			json_str(stdout, r->counters[i]->name);
			printf(":%" PRIu64, r->counters[i]->value);
		}
		fputs("},\"sessions\":", stdout);
		print_sessions_json(stdout, &s);
		fputs("}\n", stdout);
		goto out;
	}

	printf("device %s\n\npool\n", uuid);
	lw = vw = 0;
	for (i = 0; i < nitems(pool_rows); i++) {
		if ((w = (int)strlen(pool_rows[i].label)) > lw)
			lw = w;
		pool_cell(r->pool, &pool_rows[i], buf, sizeof(buf));
		if ((w = (int)strlen(buf)) > vw)
			vw = w;
	}
	for (i = 0; i < nitems(pool_rows); i++) {
		pool_cell(r->pool, &pool_rows[i], buf, sizeof(buf));
		printf("  %-*s  %*s\n", lw, pool_rows[i].label, vw, buf);
	}

	printf("\ncounters\n");
	lw = vw = 0;
	for (i = 0; i < r->n_counters; i++) {
		text_escape(name, sizeof(name), r->counters[i]->name);
		if ((w = (int)strlen(name)) > lw)
			lw = w;
		if ((w = snprintf(buf, sizeof(buf), "%" PRIu64,
		    r->counters[i]->value)) > vw)
			vw = w;
	}
	for (i = 0; i < r->n_counters; i++) {
		text_escape(name, sizeof(name), r->counters[i]->name);
		printf("  %-*s  %*" PRIu64 "\n", lw, name, vw,
		    r->counters[i]->value);
	}

	printf("\nsessions (%zu)\n", s.n);
	print_sessions(stdout, &s, "  ");
out:
	sessions_free(&s);
	return rc;
}

/* Prometheus text exposition of the stats (proto/metrics.h), for
 * node_exporter's textfile collector. */
static int
cmd_metrics(struct ctl *c, int argc, char **argv)
{
	struct sessions		 s = { 0 };
	const Vmm__StatsReply	*r;
	int			 rc;

	(void)argv;
	if (argc != 0)
		return usage_err(c->cmd);
	if ((rc = ctl_open(c)) != 0 ||
	    (rc = fetch_sessions(c, true, false, &s)) != 0)
		goto out;
	r = vmm_frame_msg_env(s.pages[0])->stats_reply;
	if ((rc = check_counters(c, r)) != 0)
		goto out;
	if (vmm_metrics_write(stdout, r, s.v, s.n) != 0)
		rc = ctl_err(CTL_EXIT_USAGE, "writing the metrics: %s",
		    strerror(errno));
out:
	sessions_free(&s);
	return rc;
}


/* --- cdi ------------------------------------------------------------------- */

/* Where the library is mounted inside a container. */
#define CDI_LIBRARY	"/usr/lib/vmmd/libvmm_client.so"

static int
cmd_cdi(struct ctl *c, int argc, char **argv)
{
	const char	*lib = VMMCTL_LIBRARY, *dir = c->socket_dir;

	if (argc == 2 && strcmp(argv[0], "--library") == 0)
		lib = argv[1];
	else if (argc != 0)
		return usage_err(c->cmd);
	if (lib[0] != '/' || dir[0] != '/')
		return ctl_err(CTL_EXIT_USAGE, "the library (%s) and the socket "
		    "directory (%s) must be absolute paths", lib, dir);
	printf("{\n  \"cdiVersion\": \"0.6.0\",\n  \"kind\": \"vmmd.io/gpu\",\n"
	    "  \"devices\": [\n    {\n      \"name\": \"all\",\n"
	    "      \"containerEdits\": {\n        \"env\": [\n          ");
	json_str(stdout, "LD_PRELOAD=" CDI_LIBRARY);
	fputs(",\n          ", stdout);
	{
		char env[PATH_MAX + 32];

		snprintf(env, sizeof(env), "VMM_SOCKET_DIR=%s", dir);
		json_str(stdout, env);
	}
	fputs("\n        ],\n        \"mounts\": [\n          {\n"
	    "            \"hostPath\": ", stdout);
	json_str(stdout, dir);
	fputs(",\n            \"containerPath\": ", stdout);
	json_str(stdout, dir);
	fputs(",\n            \"options\": [\"rbind\", \"rw\", \"nosuid\", "
	    "\"nodev\", \"noexec\"]\n          },\n          {\n"
	    "            \"hostPath\": ", stdout);
	json_str(stdout, lib);
	fputs(",\n            \"containerPath\": \"" CDI_LIBRARY "\",\n"
	    "            \"options\": [\"bind\", \"ro\", \"nosuid\", \"nodev\"]\n"
	    "          }\n        ]\n      }\n    }\n  ]\n}\n", stdout);
	return 0;
}

/* --- top ------------------------------------------------------------------ */

static volatile sig_atomic_t	top_stop;

static void
top_on_signal(int sig)
{
	(void)sig;
	top_stop = 1;
}

/* Most memory held first; then by session id, so rows do not jump. */
static int
top_cmp(const void *a, const void *b)
{
	const Vmm__SessionStats *const	*x = a, *const *y = b;

	if ((*x)->bytes_held != (*y)->bytes_held)
		return (*x)->bytes_held > (*y)->bytes_held ? -1 : 1;
	return sess_cmp(a, b);
}

/* One screen: the pool in two lines, then as many clients as fit. */
static void
top_draw(const struct ctl *c, const Vmm__StatsReply *r, struct sessions *s,
    int interval_ms, bool tty)
{
	char		 h[6][CELL_LEN], uuid[VMM_SESS_UUID_STRLEN + 5];
	char		 name[ESC_LEN(VMM_PROTO_MAX_NAME)];
	struct winsize	 ws;
	size_t		 i, rows = 24, apps = 0, shown = 0;
	const Vmm__PoolStats *p = r->pool;

	if (tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 6)
		rows = ws.ws_row;
	qsort(s->v, s->n, sizeof(*s->v), top_cmp);
	for (i = 0; i < s->n; i++)
		apps += s->v[i]->kind == VMM__CLIENT_KIND__CLIENT_KIND_APP;
	device_uuid(c, uuid);
	humanize(p->physical_bytes, h[0], CELL_LEN);
	humanize(p->lent_bytes, h[1], CELL_LEN);
	humanize(p->idle_bytes, h[2], CELL_LEN);
	humanize(p->device_free_bytes, h[3], CELL_LEN);
	humanize(p->device_total_bytes, h[4], CELL_LEN);
	humanize(p->peak_physical_bytes, h[5], CELL_LEN);
	if (tty)
		fputs("\033[H\033[2J", stdout);
	printf("vmmd %s   every %.1f s, q quits\n", uuid, interval_ms / 1000.0);
	printf("pool %s: lent %s, idle %s, peak %s; %" PRIu64 " chunks; "
	    "device free %s of %s; %zu clients\n\n", h[0], h[1], h[2], h[5],
	    p->chunks, h[3], h[4], apps);
	printf("%8s %6s %-16s %10s %10s %10s %10s %10s  %s\n", "PID", "UID",
	    "NAME", "HELD", "IN USE", "CACHED", "NATIVE", "QUOTA", "CGROUP");
	for (i = 0; i < s->n && shown + 5 < rows; i++) {
		const Vmm__SessionStats *v = s->v[i];
		char held[CELL_LEN], use[CELL_LEN], cached[CELL_LEN], q[CELL_LEN];
		char native[CELL_LEN];
		char cg[ESC_LEN(64)];

		if (v->kind != VMM__CLIENT_KIND__CLIENT_KIND_APP)
			continue;
		text_escape(name, sizeof(name), v->name);
		text_escape(cg, sizeof(cg), v->cgroup);
		humanize(v->bytes_held, held, CELL_LEN);
		humanize(v->reported_in_use, use, CELL_LEN);
		humanize(v->reported_cached, cached, CELL_LEN);
		/* Memory the process holds outside the pool (counted, not lent). */
		humanize(native_sum(v), native, CELL_LEN);
		if (v->quota_bytes != 0)
			humanize(v->quota_bytes, q, CELL_LEN);
		else
			snprintf(q, sizeof(q), "-");
		printf("%8" PRIu32 " %6" PRIu32 " %-16.16s %10s %10s %10s %10s %10s"
		    "  %s\n", v->pid, v->uid, name, held, use, cached, native, q,
		    cg);
		shown++;
	}
	fflush(stdout);
}

/* Wait up to ms for a key; true if it asks to quit.  *in becomes -1 once
 * standard input ends (a pipe, /dev/null): then only time passes. */
static bool
top_wait(int *in, int ms)
{
	struct pollfd	pfd = { .fd = *in, .events = POLLIN };
	char		buf[64];
	ssize_t		n;

	if (poll(&pfd, *in >= 0 ? 1 : 0, ms) <= 0)
		return false;
	if ((n = read(*in, buf, sizeof(buf))) <= 0) {
		if (n == 0 || (errno != EINTR && errno != EAGAIN))
			*in = -1;
		return false;
	}
	return memchr(buf, 'q', (size_t)n) != NULL ||
	    memchr(buf, 'Q', (size_t)n) != NULL;
}

static int
cmd_top(struct ctl *c, int argc, char **argv)
{
	struct sigaction	 sa;
	struct termios		 saved, raw;
	uint64_t		 interval = 1000, iterations = 0, frames = 0;
	bool			 tty = isatty(STDOUT_FILENO), raw_on = false;
	int			 a, rc, in = STDIN_FILENO;

	for (a = 0; a < argc; a++) {
		const char	*v = a + 1 < argc ? argv[a + 1] : NULL;
		char		*end;
		uint64_t	 x;

		if (v == NULL || *v < '0' || *v > '9')
			return usage_err(c->cmd);
		errno = 0;
		x = strtoull(v, &end, 10);
		if (errno != 0 || *end != '\0')
			return usage_err(c->cmd);
		if (strcmp(argv[a], "--interval") == 0 && x >= 100 && x <= 60000)
			interval = x;
		else if (strcmp(argv[a], "--iterations") == 0 && x >= 1 &&
		    x <= 1000000)
			iterations = x;
		else
			return ctl_err(CTL_EXIT_USAGE, "usage: " CTL_NAME " top "
			    "[--interval MS (100-60000)] [--iterations N (1-1000000)]");
		a++;
	}
	if ((rc = ctl_open(c)) != 0)
		return rc;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = top_on_signal;	/* no SA_RESTART: poll returns */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	if (isatty(in) && tcgetattr(in, &saved) == 0) {
		raw = saved;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 1;
		raw.c_cc[VTIME] = 0;
		raw_on = tcsetattr(in, TCSANOW, &raw) == 0;
	}
	if (tty)
		fputs("\033[?25l", stdout);	/* no cursor while drawing */
	while (!top_stop) {
		struct sessions s = { 0 };

		if ((rc = fetch_sessions(c, true, false, &s)) != 0) {
			sessions_free(&s);
			break;
		}
		top_draw(c, vmm_frame_msg_env(s.pages[0])->stats_reply, &s,
		    (int)interval, tty);
		sessions_free(&s);
		if (iterations != 0 && ++frames >= iterations)
			break;
		if (top_wait(&in, (int)interval))
			break;
	}
	if (tty)
		fputs("\033[?25h", stdout);
	fflush(stdout);
	if (raw_on)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	return rc;
}

/* The session table alone. */
static int
cmd_clients(struct ctl *c, int argc, char **argv)
{
	struct sessions	s = { 0 };
	int		json, rc;

	if ((json = json_flag(argc, argv)) < 0)
		return usage_err(c->cmd);
	if ((rc = ctl_open(c)) != 0 ||
	    (rc = fetch_sessions(c, false, false, &s)) != 0)
		goto out;
	if (json) {
		fputs("{\"sessions\":", stdout);
		print_sessions_json(stdout, &s);
		fputs("}\n", stdout);
	} else
		print_sessions(stdout, &s, "");
out:
	sessions_free(&s);
	return rc;
}

/* The address plan: every range, page by page, by address. */
static int
cmd_va(struct ctl *c, int argc, char **argv)
{
	Vmm__VaPlanRequest	 req = VMM__VA_PLAN_REQUEST__INIT;
	Vmm__Envelope		 env = vmm_frame_env_va_plan_request(&req);
	const Vmm__VaPlanReply	*r;
	struct vmm_frame_msg	*m;
	char			 buf[CELL_LEN], name[ESC_LEN(VMM_PROTO_MAX_NAME)];
	uint32_t		 seen = 0;
	size_t			 i;
	int			 json, rc;

	if ((json = json_flag(argc, argv)) < 0)
		return usage_err(c->cmd);
	if ((rc = ctl_open(c)) != 0)
		return rc;
	do {
		req.offset = seen;
		vmm_frame_set_request_id(&env, 0);
		if ((rc = ctl_call(c, &env, &m)) != 0)
			return rc;
		r = vmm_frame_msg_env(m)->va_plan_reply;
		if (seen == 0) {
			if (json)
				printf("{\"window_base\":%" PRIu64 ",\"window_size\":%"
				    PRIu64 ",\"ranges\":[", r->window_base,
				    r->window_size);
			else {
				humanize(r->window_size, buf, sizeof(buf));
				printf("window 0x%" PRIx64 " %s\n%-18s %-18s %8s "
				    "%-8s %8s %s\n", r->window_base, buf, "START",
				    "END", "SIZE", "PLANNED", "PID", "NAME");
			}
		}
		for (i = 0; i < r->n_ranges; i++) {
			const Vmm__VaPlanEntry *e = r->ranges[i];

			if (json) {
				printf("%s{\"session_id\":%" PRIu64 ",\"pid\":%u,"
				    "\"name\":", seen + i > 0 ? "," : "",
				    e->session_id, e->pid);
				json_str(stdout, e->name);
				printf(",\"addr\":\"0x%" PRIx64 "\",\"size\":%"
				    PRIu64 ",\"planned\":%s}", e->addr, e->size,
				    e->planned ? "true" : "false");
			} else {
				/* The name is the client's claim: escaped. */
				text_escape(name, sizeof(name), e->name);
				humanize(e->size, buf, sizeof(buf));
				printf("0x%-16" PRIx64 " 0x%-16" PRIx64 " %8s %-8s "
				    "%8u %s\n", e->addr, e->addr + e->size, buf,
				    e->planned ? "yes" : "no", e->pid, name);
			}
		}
		seen += (uint32_t)r->n_ranges;
		/* A page shorter than the rest, or the plan shrank meanwhile. */
		rc = r->n_ranges == 0 || seen >= r->total;
		vmm_frame_msg_free(m);
	} while (!rc);
	if (json)
		fputs("]}\n", stdout);
	return 0;
}

static int
parse_size_arg(const char *s, uint64_t *out)
{
	if (vmm_parse_size(s, out) != 0)
		return ctl_err(CTL_EXIT_USAGE, "bad size '%s': expected bytes "
		    "with an optional K, M, G or T suffix", s);
	return 0;
}

/* Give idle memory back to the GPU; prints what was released. */
static int
cmd_trim(struct ctl *c, int argc, char **argv)
{
	Vmm__TrimRequest	 req = VMM__TRIM_REQUEST__INIT;
	Vmm__Envelope		 env = vmm_frame_env_trim_request(&req);
	struct vmm_frame_msg	*m;
	uint64_t		 released;
	char			 buf[CELL_LEN];
	int			 i, rc;

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--recall") == 0)
			req.recall_clients = true;
		else if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) {
			if ((rc = parse_size_arg(argv[++i],
			    &req.target_bytes)) != 0)
				return rc;
		} else
			return usage_err(c->cmd);
	}
	if ((rc = ctl_open(c)) != 0)
		return rc;
	if ((rc = ctl_call(c, &env, &m)) != 0)
		return rc;
	released = vmm_frame_msg_env(m)->trim_reply->bytes_released;
	vmm_frame_msg_free(m);
	humanize(released, buf, sizeof(buf));
	printf("released %s (%" PRIu64 " bytes)\n", buf, released);
	return 0;
}

/* SetQuota for "uid|name|cgroup KEY", answered by Ack; prints nothing. */
static int
set_quota(struct ctl *c, char **argv, uint64_t bytes)
{
	Vmm__SetQuota		 req = VMM__SET_QUOTA__INIT;
	Vmm__Envelope		 env = vmm_frame_env_set_quota(&req);
	struct vmm_frame_msg	*m;
	const char		*key = argv[1];
	int			 rc;

	if (strcmp(argv[0], "uid") == 0) {
		req.kind = VMM__QUOTA_KIND__QUOTA_KIND_UID;
		/* uid_t is 32 bits; (uid_t)-1 is nobody's. */
		if (!all_digits(key) || strlen(key) > 10 ||
		    strtoull(key, NULL, 10) >= UINT32_MAX)
			return ctl_err(CTL_EXIT_USAGE, "bad uid '%s'", key);
	} else if (strcmp(argv[0], "name") == 0) {
		req.kind = VMM__QUOTA_KIND__QUOTA_KIND_NAME;
		if (*key == '\0' || strlen(key) > VMM_PROTO_MAX_NAME)
			return ctl_err(CTL_EXIT_USAGE, "client name must be 1 "
			    "to %d bytes", VMM_PROTO_MAX_NAME);
	} else if (strcmp(argv[0], "cgroup") == 0) {
		req.kind = VMM__QUOTA_KIND__QUOTA_KIND_CGROUP;
		if (key[0] != '/' || strlen(key) > VMM_PROTO_MAX_QUOTA_KEY)
			return ctl_err(CTL_EXIT_USAGE, "cgroup must be a "
			    "cgroup v2 path such as /system.slice/x.service, "
			    "at most %d bytes", VMM_PROTO_MAX_QUOTA_KEY);
	} else
		return usage_err(c->cmd);

	if ((rc = ctl_open(c)) != 0)
		return rc;
	req.key = (char *)key;
	req.bytes = bytes;
	if ((rc = ctl_call(c, &env, &m)) != 0)
		return rc;
	vmm_frame_msg_free(m);
	return 0;
}

static int
cmd_quota_set(struct ctl *c, int argc, char **argv)
{
	uint64_t	bytes;
	int		rc;

	if ((rc = parse_size_arg(argv[2], &bytes)) != 0)
		return rc;
	return set_quota(c, argv, bytes);
}

static int
cmd_quota_clear(struct ctl *c, int argc, char **argv)
{
	return set_quota(c, argv, 0);
}

/* How many leading words of name and argv agree (stops at either end). */
static int
cmd_words(const char *name, int argc, char **argv, bool *whole)
{
	const char	*p = name;
	size_t		 len;
	int		 i;

	for (i = 0; *p != '\0' && i < argc; i++) {
		len = strcspn(p, " ");
		if (strlen(argv[i]) != len || strncmp(argv[i], p, len) != 0)
			break;
		p += len;
		p += strspn(p, " ");
	}
	*whole = *p == '\0';
	return i;
}

/* Number of words of name that argv starts with: all of them, or 0. */
static int
cmd_match(const char *name, int argc, char **argv)
{
	bool	whole;
	int	n = cmd_words(name, argc, argv, &whole);

	return whole ? n : 0;
}

/* Whether argv, all of it, is the start of name ("quota" of "quota set"). */
static bool
cmd_prefix(const char *name, int argc, char **argv)
{
	bool	whole;

	return argc > 0 && cmd_words(name, argc, argv, &whole) == argc;
}

/* The command argv names, longest name first; *words gets its length. */
static const struct cmd *
cmd_find(int argc, char **argv, int *words)
{
	const struct cmd	*best = NULL;
	size_t			 i;
	int			 n;

	*words = 0;
	for (i = 0; i < nitems(cmds); i++) {
		if ((n = cmd_match(cmds[i].name, argc, argv)) > *words) {
			*words = n;
			best = &cmds[i];
		}
	}
	return best;
}

/* One command's synopsis and help, the help indented after a newline. */
static void
cmd_usage(FILE *f, const struct cmd *c)
{
	const char	*h, *nl;

	fprintf(f, "  %s %s\n", c->name, c->args);
	for (h = c->help; *h != '\0'; h = *nl != '\0' ? nl + 1 : nl) {
		nl = h + strcspn(h, "\n");
		fprintf(f, "      %.*s\n", (int)(nl - h), h);
	}
}

/* What stats shows: every pool figure and counter, with its meaning. */
static void
stats_help(FILE *f)
{
	size_t	i;
	int	kw = 0, lw = 0, w;

	for (i = 0; i < nitems(pool_rows); i++) {
		if ((w = (int)strlen(pool_rows[i].key)) > kw)
			kw = w;
		if ((w = (int)strlen(pool_rows[i].label)) > lw)
			lw = w;
	}
	for (i = 0; i < nitems(counter_docs); i++) {
		if ((w = (int)strlen(counter_docs[i].name)) > kw)
			kw = w;
	}
	fprintf(f, "\nPool figures (JSON key under \"pool\", table row, "
	    "meaning):\n");
	for (i = 0; i < nitems(pool_rows); i++)
		fprintf(f, "  %-*s  %-*s  %s\n", kw, pool_rows[i].key, lw,
		    pool_rows[i].label, pool_rows[i].help);
	fprintf(f, "\nCounters, since vmmd started (name in the table and "
	    "under \"counters\"):\n");
	for (i = 0; i < nitems(counter_docs); i++)
		fprintf(f, "  %-*s  %s\n", kw, counter_docs[i].name,
		    counter_docs[i].help);
}

/* One command's synopsis and help, and what more it has to say. */
static void
cmd_usage_full(FILE *f, const struct cmd *c)
{
	cmd_usage(f, c);
	if (c->more_help != NULL)
		c->more_help(f);
}

static void
usage(FILE *f)
{
	size_t	i;

	fprintf(f,
	    "usage: " CTL_NAME " [-d N|UUID] [-S PATH] [--socket-dir DIR] "
	    "[-t MS] COMMAND [ARGS]\n"
	    "\n"
	    "Talk to vmmd, the GPU memory broker of one GPU.\n"
	    "\n"
	    "Options (before the command):\n"
	    "  -d, --device N|UUID   GPU index or UUID (default 0): socket "
	    "DIR/gpuN.sock\n"
	    "                        or DIR/gpu-UUID.sock; UUID: 32 hex "
	    "digits, dashes\n"
	    "                        and a \"GPU-\" (or \"MIG-\") prefix "
	    "optional\n"
	    "  -S, --socket PATH     the daemon's socket (overrides "
	    "--device)\n"
	    "      --socket-dir DIR  socket directory (default "
	    "$VMM_SOCKET_DIR,\n"
	    "                        else " VMM_SESS_SOCKET_DIR ")\n"
	    "  -t, --timeout MS      wait at most MS ms for each answer "
	    "(default %d)\n"
	    "  -h, --help            this text\n"
	    "  -V, --version         versions of " CTL_NAME " and its "
	    "protocol\n"
	    "\n"
	    "Commands:\n", CTL_TIMEOUT_MS);
	for (i = 0; i < nitems(cmds); i++)
		cmd_usage(f, &cmds[i]);
	fprintf(f,
	    "\n"
	    "Exit status:\n"
	    "  0  success\n"
	    "  1  usage error (bad option, command, argument, size or "
	    "device)\n"
	    "  2  daemon not running (no socket, nobody listening, or "
	    "shutting down)\n"
	    "  3  permission denied (socket not accessible, or the daemon "
	    "said so)\n"
	    "  4  protocol error (bad or unexpected reply, version "
	    "mismatch, timeout)\n"
	    "  5  the daemon refused the request (its message is printed)\n");
}

static int
cmd_help(struct ctl *c, int argc, char **argv)
{
	size_t	i;
	bool	found = false;

	if (argc == 0) {
		usage(stdout);
		return 0;
	}
	for (i = 0; i < nitems(cmds); i++) {
		if (cmd_prefix(cmds[i].name, argc, argv)) {
			cmd_usage_full(stdout, &cmds[i]);
			found = true;
		}
	}
	if (!found)
		return ctl_err(CTL_EXIT_USAGE, "no command '%s%s%s' (see "
		    CTL_NAME " --help)", argv[0], argc > 1 ? " " : "",
		    argc > 1 ? argv[1] : "");
	return 0;
}

/* --- main ----------------------------------------------------------------- */

static int
parse_timeout(const char *s, int *out)
{
	unsigned long	v;

	errno = 0;
	if (!all_digits(s) || (v = strtoul(s, NULL, 10)) == 0 || errno != 0 ||
	    v > CTL_TIMEOUT_MAX_MS)
		return ctl_err(CTL_EXIT_USAGE, "bad timeout '%s': expected 1 "
		    "to %d milliseconds", s, CTL_TIMEOUT_MAX_MS);
	*out = (int)v;
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "device",	required_argument,	NULL, 'd' },
		{ "socket",	required_argument,	NULL, 'S' },
		{ "socket-dir",	required_argument,	NULL, 'D' },
		{ "timeout",	required_argument,	NULL, 't' },
		{ "help",	no_argument,		NULL, 'h' },
		{ "version",	no_argument,		NULL, 'V' },
		{ NULL,		0,			NULL, 0 }
	};
	struct ctl		 c = {
		.timeout_ms = CTL_TIMEOUT_MS
	};
	const struct cmd	*cmd;
	const char		*sock = NULL, *device = NULL, *dir = NULL;
	size_t			 i;
	int			 ch, words, nargs, rc;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:d:S:t:hV", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'd':
			device = optarg;
			break;
		case 'S':
			sock = optarg;
			break;
		case 'D':
			dir = optarg;
			break;
		case 't':
			if ((rc = parse_timeout(optarg, &c.timeout_ms)) != 0)
				return rc;
			break;
		case 'h':
			usage(stdout);
			return fflush(stdout) == 0 ? 0 : CTL_EXIT_USAGE;
		case 'V':
			printf(CTL_NAME " %s (protocol %d)\n", VMMCTL_VERSION,
			    VMM_PROTOCOL_VERSION);
			return fflush(stdout) == 0 ? 0 : CTL_EXIT_USAGE;
		case ':':
			return ctl_err(CTL_EXIT_USAGE, "option '%s' needs an "
			    "argument (see " CTL_NAME " --help)",
			    argv[optind - 1]);
		default:
			if (optopt != 0)
				return ctl_err(CTL_EXIT_USAGE, "unknown option "
				    "'-%c' (see " CTL_NAME " --help)", optopt);
			return ctl_err(CTL_EXIT_USAGE, "unknown option '%s' "
			    "(see " CTL_NAME " --help)", argv[optind - 1]);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0)
		return ctl_err(CTL_EXIT_USAGE, "no command (see " CTL_NAME
		    " --help)");
	if ((cmd = cmd_find(argc, argv, &words)) == NULL) {
		for (i = 0; i < nitems(cmds); i++) {
			if (cmd_prefix(cmds[i].name, 1, argv))
				return ctl_err(CTL_EXIT_USAGE, "%s command "
				    "'%s%s%s' (see " CTL_NAME " help %s)",
				    argc > 1 ? "unknown" : "incomplete",
				    argv[0], argc > 1 ? " " : "",
				    argc > 1 ? argv[1] : "", argv[0]);
		}
		return ctl_err(CTL_EXIT_USAGE, "unknown command '%s' (see "
		    CTL_NAME " --help)", argv[0]);
	}
	c.cmd = cmd;
	c.socket_dir = dir != NULL ? dir : getenv("VMM_SOCKET_DIR") != NULL &&
	    getenv("VMM_SOCKET_DIR")[0] != '\0' ? getenv("VMM_SOCKET_DIR") :
	    VMM_SESS_SOCKET_DIR;
	nargs = argc - words;
	/* "CMD --help": as "help CMD". */
	if (nargs == 1 && strcmp(argv[words], "--help") == 0) {
		cmd_usage_full(stdout, cmd);
		return fflush(stdout) == 0 ? 0 : CTL_EXIT_USAGE;
	}
	if (nargs < cmd->min_args || nargs > cmd->max_args)
		return usage_err(cmd);
	if (!cmd->local && (rc = resolve_socket(&c, sock, device, dir)) != 0)
		return rc;

	rc = cmd->fn(&c, nargs, argv + words);
	ctl_close(&c);
	if (fflush(stdout) != 0 && rc == 0)
		rc = ctl_err(CTL_EXIT_USAGE, "cannot write output: %s",
		    strerror(errno));
	return rc;
}
