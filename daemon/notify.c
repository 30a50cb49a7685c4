/*
 * systemd integration: READY=1 once the socket accepts, a one-line STATUS=
 * (sent at most once a second, when something changed), watchdog pings at
 * half the interval systemd asks for, STOPPING=1 on the way out.  Every call
 * is a no-op without NOTIFY_SOCKET.
 */
#include "vmmd.h"

#include <inttypes.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "log.h"

static bool		notify_dirty = true;
static struct event	*notify_status_ev, *notify_watchdog_ev;

/* The summary shown by `systemctl status`. */
static void
notify_send_status(const char *prefix)
{
	struct vmmd_pool_totals t;
	char buf[256];

	vmmd_pool_totals(&t);
	snprintf(buf, sizeof(buf), "%sSTATUS=%u clients, %" PRIu64 " MiB lent, %"
	    PRIu64 " MiB idle, %" PRIu64 " MiB physical", prefix, vmmd_nsessions,
	    t.lent >> 20, t.idle >> 20, t.physical >> 20);
	sd_notify(0, buf);
	notify_dirty = false;
}

static void
notify_on_status(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (notify_dirty)
		notify_send_status("");
}

void
vmmd_notify_status(void)
{
	notify_dirty = true;
}

void
vmmd_notify_ready(void)
{
	struct timeval one_second = { 1, 0 };

	notify_send_status("READY=1\n");
	notify_status_ev = event_new(vmmd_base, -1, EV_PERSIST, notify_on_status,
	    NULL);
	if (notify_status_ev != NULL)
		event_add(notify_status_ev, &one_second);
}

static void
notify_on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sd_notify(0, "WATCHDOG=1");
}

int
vmmd_notify_watchdog_start(void)
{
	struct timeval tv;
	uint64_t usec = 0;
	int r;

	if ((r = sd_watchdog_enabled(0, &usec)) <= 0)
		return r;
	usec /= 2;
	tv.tv_sec = (time_t)(usec / 1000000);
	tv.tv_usec = (suseconds_t)(usec % 1000000);
	notify_watchdog_ev = event_new(vmmd_base, -1, EV_PERSIST,
	    notify_on_watchdog, NULL);
	if (notify_watchdog_ev == NULL)
		return -1;
	sd_notify(0, "WATCHDOG=1");
	return event_add(notify_watchdog_ev, &tv);
}

void
vmmd_notify_stopping(void)
{
	sd_notify(0, "STOPPING=1\nSTATUS=shutting down");
	if (notify_status_ev != NULL)
		event_free(notify_status_ev);
	if (notify_watchdog_ev != NULL)
		event_free(notify_watchdog_ev);
	notify_status_ev = notify_watchdog_ev = NULL;
}
