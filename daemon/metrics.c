/*
 * The /metrics endpoint (metrics_listen): libevent's HTTP server on the
 * loop, answering GET /metrics with the Prometheus exposition of the stats
 * (proto/metrics.h, the same text `vmmctl metrics` prints).  Off unless
 * metrics_listen names an address; nothing else is served.  A scrape costs
 * what a `vmmctl stats` costs: the figures are vmmd's own, never a driver
 * call.
 */
#include "vmmd.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static struct evhttp	*http;

static void
on_metrics(struct evhttp_request *req, void *arg)
{
	struct evbuffer *body;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	(void)arg;
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
	    evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
		evhttp_send_error(req, 405, "only GET");
		return;
	}
	if ((f = open_memstream(&text, &len)) == NULL) {
		evhttp_send_error(req, 503, "out of memory");
		return;
	}
	if (vmmd_stats_metrics(f) != 0) {
		fclose(f);
		free(text);
		evhttp_send_error(req, 503, "out of memory");
		return;
	}
	fclose(f);
	if ((body = evbuffer_new()) == NULL ||
	    evbuffer_add(body, text, len) != 0) {
		if (body != NULL)
			evbuffer_free(body);
		free(text);
		evhttp_send_error(req, 503, "out of memory");
		return;
	}
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, 200, "OK", body);
	evbuffer_free(body);
}

static void
on_other(struct evhttp_request *req, void *arg)
{
	(void)arg;
	evhttp_send_error(req, 404, "vmmd serves /metrics only");
}

int
vmmd_metrics_parse(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon = strrchr(s, ':'), *h = s;
	size_t hl;
	char *end;
	unsigned long p;

	if (colon == NULL || colon == s || colon[1] == '\0')
		return -1;
	hl = (size_t)(colon - s);
	if (*h == '[') {		/* [v6 address]:port */
		if (hl < 3 || s[hl - 1] != ']')
			return -1;
		h++;
		hl -= 2;
	} else if (memchr(s, ':', hl) != NULL) {
		return -1;		/* a v6 address needs brackets */
	}
	if (hl == 0 || hl >= hostlen)
		return -1;
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || p == 0 || p > 65535 ||
	    colon[1] < '0' || colon[1] > '9')
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return 0;
}

int
vmmd_metrics_start(const char *listen, char *err, size_t errlen)
{
	char host[256];
	uint16_t port;

	if (listen[0] == '\0')
		return 0;
	if (vmmd_metrics_parse(listen, host, sizeof(host), &port) != 0) {
		snprintf(err, errlen, "metrics_listen \"%s\": expected ADDRESS:PORT "
		    "(127.0.0.1:9477, [::1]:9477)", listen);
		return -1;
	}
	if ((http = evhttp_new(vmmd_base)) == NULL) {
		snprintf(err, errlen, "metrics: out of memory");
		return -1;
	}
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(http, 10);
	evhttp_set_max_headers_size(http, 8192);
	evhttp_set_max_body_size(http, 0);
	if (evhttp_set_cb(http, "/metrics", on_metrics, NULL) != 0) {
		snprintf(err, errlen, "metrics: cannot register /metrics");
		goto fail;
	}
	evhttp_set_gencb(http, on_other, NULL);
	if (evhttp_bind_socket_with_handle(http, host, port) == NULL) {
		snprintf(err, errlen, "metrics_listen \"%s\": cannot listen: %s",
		    listen, strerror(errno));
		goto fail;
	}
	vmm_log_info("metrics on http://%s/metrics", listen);
	return 0;
fail:
	evhttp_free(http);
	http = NULL;
	return -1;
}

void
vmmd_metrics_stop(void)
{
	if (http != NULL)
		evhttp_free(http);
	http = NULL;
}
