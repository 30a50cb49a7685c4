/*
 * vmmd: command line, start-up, the event loop, signals, shutdown.
 *
 * Settings come from the table in config.c: defaults, then the config file,
 * then the environment's VMM_SOCKET_DIR, then the command line.  Start-up
 * errors are printed before anything runs; afterwards the daemon is silent
 * at the default log level.
 */
#include "vmmd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cudrv.h"
#include "log.h"

#define VMMD_DEFAULT_CONFIG "/etc/vmmd/vmmd.conf"

struct event_base	*vmmd_base;
uint64_t		vmmd_instance;
struct vmmd_config	vmmd_cfg;
static int		vmmd_exit_code;

void
vmmd_exit(int code)
{
	vmmd_exit_code = code;
	event_base_loopexit(vmmd_base, NULL);
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: vmmd [options]\n"
	    "Lend one GPU's memory to the processes on this machine.\n\n"
	    "  -d, --device N|UUID    GPU to serve (default 0); UUID: GPU-... "
	    "or MIG-...\n"
	    "  -s, --socket-dir DIR   socket directory (default /run/vmmd; env "
	    "VMM_SOCKET_DIR)\n"
	    "  -c, --config FILE      settings file (default %s if it exists)\n"
	    "  -f, --foreground       stay in the foreground (systemd, a "
	    "terminal)\n"
	    "  -l, --log-level LEVEL  ERROR, INFO or DEBUG\n"
	    "      --log-file FILE    log there instead of stderr\n"
	    "      --dump-config      print the effective settings and exit\n"
	    "  -h, --help             this help\n"
	    "  -V, --version          the version\n\n"
	    "Settings (config file keys, \"key = value\"):\n", VMMD_DEFAULT_CONFIG);
	vmm_opt_help(f, vmmd_options, vmmd_noptions, "  ");
	fprintf(f, "  quota.uid.<UID>, quota.name.<NAME>, quota.cgroup.<PATH> = "
	    "SIZE\n                           most memory all clients of that uid,"
	    " name or cgroup may\n                           hold together "
	    "(name quotas are cooperative)\n");
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	vmm_log_info("SIGNAL %d: shutting down", (int)sig);
	vmmd_exit(0);
}

static void
on_idle_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	vmmd_pool_idle_tick();
	vmmd_pool_refresh_free();
}

/* Raises the fd limit: every lent chunk passes through an fd. */
static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Forks into the background; the parent exits 0 only once the child says
 * it is serving (so "vmmd && vmmctl stats" works), 1 if it failed. */
static int
daemonize(int *ready_fd)
{
	int p[2], devnull;
	char c;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) != 0)
		return -1;
	if ((pid = fork()) < 0)
		return -1;
	if (pid > 0) {
		close(p[1]);
		_exit(read(p[0], &c, 1) == 1 ? 0 : 1);
	}
	close(p[0]);
	setsid();
	if (chdir("/") != 0)
		return -1;
	if ((devnull = open("/dev/null", O_RDWR)) >= 0) {
		dup2(devnull, STDIN_FILENO);
		dup2(devnull, STDOUT_FILENO);
		if (vmmd_cfg.log_file[0] != '\0')
			dup2(devnull, STDERR_FILENO);
		if (devnull > STDERR_FILENO)
			close(devnull);
	}
	*ready_fd = p[1];
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "device", required_argument, NULL, 'd' },
		{ "socket-dir", required_argument, NULL, 's' },
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "log-file", required_argument, NULL, 'L' },
		{ "dump-config", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *device = NULL, *sockdir = NULL;
	const char *level = NULL, *logfile = NULL;
	struct event *ev_term, *ev_int, *ev_idle;
	struct timeval tick;
	bool foreground = false, dump = false;
	char err[512];
	int ch, ready_fd = -1;
	uint64_t ms;

	while ((ch = getopt_long(argc, argv, "d:s:c:fl:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd': device = optarg; break;
		case 's': sockdir = optarg; break;
		case 'c': config = optarg; break;
		case 'f': foreground = true; break;
		case 'l': level = optarg; break;
		case 'L': logfile = optarg; break;
		case 'D': dump = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("vmmd %s (protocol %d)\n", VMMD_VERSION,
		    VMM_PROTOCOL_VERSION); return 0;
		default:
			/* getopt said what was wrong; one more line, not the
			 * whole help. */
			fprintf(stderr, "see 'vmmd --help'\n");
			return 1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "vmmd: unexpected argument \"%s\"\n", argv[optind]);
		return 1;
	}
	if (config == NULL && access(VMMD_DEFAULT_CONFIG, F_OK) == 0)
		config = VMMD_DEFAULT_CONFIG;
	if (vmmd_config_load(&vmmd_cfg, config, err, sizeof(err)) != 0) {
		fprintf(stderr, "vmmd: %s\n", err);
		return 1;
	}
#define SET(name, val)                                                        \
	do {                                                                  \
		if ((val) != NULL && vmm_opt_set(vmm_opt_find(vmmd_options,    \
		    vmmd_noptions, name), &vmmd_cfg, val, err, sizeof(err))    \
		    != 0) {                                                   \
			fprintf(stderr, "vmmd: %s\n", err);                   \
			return 1;                                             \
		}                                                             \
	} while (0)
	SET("socket_dir", getenv("VMM_SOCKET_DIR"));
	SET("device", device);
	SET("socket_dir", sockdir);
	SET("log_level", level);
	SET("log_file", logfile);
#undef SET
	if (dump) {
		vmm_opt_dump(stdout, vmmd_options, vmmd_noptions, &vmmd_cfg);
		return 0;
	}
	if (vmm_log_open(vmmd_cfg.log_level, vmmd_cfg.log_file[0] ?
	    vmmd_cfg.log_file : NULL) != 0) {
		fprintf(stderr, "vmmd: log file %s: %s\n", vmmd_cfg.log_file,
		    strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();

	/* Clients tell a restarted daemon from the one they spoke to by this:
	 * two instances must not share it. */
	while (vmmd_instance == 0)
		if (getrandom(&vmmd_instance, sizeof(vmmd_instance), 0) !=
		    (ssize_t)sizeof(vmmd_instance)) {
			fprintf(stderr, "vmmd: getrandom: %s\n", strerror(errno));
			return 1;
		}
	vmmd_dispatch_init();
	/* The driver is loaded here, not by the dynamic loader (cudrv.h):
	 * --help and --version above work without it. */
	if (!vmm_cudrv_load()) {
		fprintf(stderr, "vmmd: cannot load the CUDA driver: %s\n",
		    vmm_cudrv_error());
		return 1;
	}
	if (vmmd_pool_init(&vmmd_cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "vmmd: %s\n", err);
		return 1;
	}
	vmmd_vaplan_init(vmmd_pool_device_ordinal());
	if ((vmmd_base = event_base_new()) == NULL) {
		fprintf(stderr, "vmmd: event_base_new failed\n");
		return 1;
	}
	/* Before the socket exists: a bad address leaves nothing behind. */
	if (vmmd_metrics_start(vmmd_cfg.metrics_listen, err, sizeof(err)) != 0) {
		fprintf(stderr, "vmmd: %s\n", err);
		return 1;
	}
	if (vmmd_server_start(&vmmd_cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "vmmd: %s\n", err);
		return 1;
	}
	if (!foreground && daemonize(&ready_fd) != 0) {
		fprintf(stderr, "vmmd: cannot daemonize: %s\n", strerror(errno));
		return 1;
	}
	/* Peers' fds and the sessions' sockets are closed off the loop. */
	if (vmmd_closer_start() != 0) {
		vmm_log_error("cannot start the fd closer: %s", strerror(errno));
		return 1;
	}
	vmm_frame_set_fd_disposer(vmmd_closer_close);
	/* Large creates and releases run off the loop; without the thread
	 * they run in it, slower for others but correct. */
	if (vmmd_worker_start() != 0)
		vmm_log_error("cannot start the worker thread: large creates "
		    "will stall other clients' grants");
	ev_term = evsignal_new(vmmd_base, SIGTERM, on_signal, NULL);
	ev_int = evsignal_new(vmmd_base, SIGINT, on_signal, NULL);
	ev_idle = event_new(vmmd_base, -1, EV_PERSIST, on_idle_tick, NULL);
	ms = vmmd_cfg.idle_timeout_ms / 4;
	if (ms < 100)
		ms = 100;
	if (ms > 1000)
		ms = 1000;
	tick.tv_sec = (time_t)(ms / 1000);
	tick.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	if (ev_term == NULL || ev_int == NULL || ev_idle == NULL ||
	    event_add(ev_term, NULL) != 0 || event_add(ev_int, NULL) != 0 ||
	    event_add(ev_idle, &tick) != 0 || vmmd_notify_watchdog_start() < 0) {
		vmm_log_error("cannot set up signals and timers");
		return 1;
	}
	vmmd_notify_ready();
	if (ready_fd >= 0) {
		(void)!write(ready_fd, "R", 1);
		close(ready_fd);
	}

	event_base_dispatch(vmmd_base);

	vmmd_notify_stopping();
	vmmd_metrics_stop();
	vmmd_server_stop();
	vmmd_session_shutdown_all("vmmd is shutting down");
	vmmd_vaplan_shutdown();
	vmmd_closer_stop();
	vmmd_pool_shutdown();
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_idle);
	event_base_free(vmmd_base);
	vmmd_config_free(&vmmd_cfg);
	vmm_log_close();
	return vmmd_exit_code;
}
