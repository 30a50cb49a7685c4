/*
 * metrics.h — vmmd's figures in the Prometheus text exposition format
 * (version 0.0.4), written by `vmmctl metrics` (for node_exporter's textfile
 * collector) and by vmmd's own /metrics endpoint (metrics_listen), from the
 * same StatsReply, so the two always agree.
 *
 * Names are vmmd_*, in base units: pool figures are gauges
 * (vmmd_physical_bytes, vmmd_chunks, vmmd_granularity_bytes, ...), counters
 * end in _total, vmmd_build_info carries the daemon's version and protocol.
 * Every series has a device_uuid label.  Per-client series
 * (vmmd_client_*) are labelled by uid, name and cgroup, never by pid; the
 * sessions of one (uid, name, cgroup) are summed into one series.
 */
#ifndef VMM_METRICS_H
#define VMM_METRICS_H

#include <stdio.h>

#include "vmm.pb-c.h"

/*
 * Write the exposition of r (its pool figures and counters) and of the n
 * sessions v (all of the daemon's, gathered from every page) to f.  The
 * daemon's version and device come from r (daemon_version, device_uuid).
 * Returns 0, or -1 with errno set if memory ran out or f failed.
 */
int	vmm_metrics_write(FILE *f, const Vmm__StatsReply *r,
	    const Vmm__SessionStats *const *v, size_t n);

#endif
