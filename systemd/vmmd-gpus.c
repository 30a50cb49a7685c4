/*
 * vmmd-gpus: the GPUs the driver sees, for vmmd.service (one vmmd per GPU).
 *
 *   vmmd-gpus                 one line per GPU: GPU-<uuid> as vmmd --device takes it
 *   vmmd-gpus --units         one line per GPU: vmmd@GPU-<uuid>.service
 *   vmmd-gpus --exec CMD ARG...
 *                             runs CMD ARG... vmmd@GPU-<uuid>.service... (execvp);
 *                             vmmd.service runs "--exec systemctl start"
 *
 * The list comes from the driver itself (cuInit, cuDeviceGetCount,
 * cuDeviceGetUuid_v2), so the instances are named exactly as vmmd resolves
 * --device, and their sockets gpu-<uuid>.sock, whatever order CUDA numbers the
 * GPUs in.  Run at service start rather than as a systemd generator:
 * generators run before udev has loaded the NVIDIA modules and must not touch
 * devices, so a generator would find no GPU at boot.
 *
 * Exit status: 0 (also when there is no GPU: nothing to serve, the --exec
 * command is not run); 1 usage; 2 the driver failed; 3 exec failed.
 */
#include <cuda.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "session.h"

#define GPUS_MAX	64	/* far more than one node holds */
#define NAME_LEN	(sizeof("GPU-") + VMM_SESS_UUID_STRLEN)
#define UNIT_LEN	(sizeof("vmmd@.service") - 1 + NAME_LEN)

static void
usage(FILE *f)
{
	fprintf(f, "usage: vmmd-gpus [--units | --exec COMMAND [ARG...]]\n"
	    "List the GPUs the CUDA driver sees, by UUID (vmmd --device takes "
	    "them);\n--units: as vmmd@ unit names; --exec: run COMMAND ARG... "
	    "followed by those\nunit names (nothing is run without a GPU).\n");
}

static const char *
cu_name(CUresult r)
{
	const char *s = NULL;

	return cuGetErrorName(r, &s) == CUDA_SUCCESS && s != NULL ? s :
	    "unknown error";
}

/* The GPUs' UUIDs as "GPU-<uuid>" into names; their number, or -1. */
static int
gpus_list(char names[][NAME_LEN], int max)
{
	char	 text[VMM_SESS_UUID_STRLEN + 1];
	CUresult r;
	CUdevice dev;
	CUuuid	 u;
	int	 count, i;

	if ((r = cuInit(0)) == CUDA_ERROR_NO_DEVICE)
		return 0;
	if (r != CUDA_SUCCESS) {
		fprintf(stderr, "vmmd-gpus: cuInit: %s\n", cu_name(r));
		return -1;
	}
	if ((r = cuDeviceGetCount(&count)) != CUDA_SUCCESS) {
		fprintf(stderr, "vmmd-gpus: cuDeviceGetCount: %s\n", cu_name(r));
		return -1;
	}
	if (count < 0 || count > max) {
		fprintf(stderr, "vmmd-gpus: the driver reports %d GPUs (at most "
		    "%d handled)\n", count, max);
		return -1;
	}
	for (i = 0; i < count; i++) {
		if ((r = cuDeviceGet(&dev, i)) != CUDA_SUCCESS ||
		    (r = cuDeviceGetUuid_v2(&u, dev)) != CUDA_SUCCESS) {
			fprintf(stderr, "vmmd-gpus: GPU %d: %s\n", i, cu_name(r));
			return -1;
		}
		vmm_sess_format_uuid(text, (const uint8_t *)u.bytes);
		snprintf(names[i], NAME_LEN, "GPU-%s", text);
	}
	return count;
}

int
main(int argc, char **argv)
{
	static char	 names[GPUS_MAX][NAME_LEN];
	static char	 units[GPUS_MAX][UNIT_LEN];
	char		**args;
	int		 n, i, as_units = 0, exec_at = 0;

	if (argc == 2 && strcmp(argv[1], "--units") == 0)
		as_units = 1;
	else if (argc >= 3 && strcmp(argv[1], "--exec") == 0)
		exec_at = 2;
	else if (argc == 2 && (strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	} else if (argc != 1) {
		usage(stderr);
		return 1;
	}

	if ((n = gpus_list(names, GPUS_MAX)) < 0)
		return 2;
	for (i = 0; i < n; i++)
		snprintf(units[i], UNIT_LEN, "vmmd@%.*s.service",
		    (int)(NAME_LEN - 1), names[i]);

	if (exec_at == 0) {
		for (i = 0; i < n; i++)
			printf("%s\n", as_units ? units[i] : names[i]);
		return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 2;
	}
	if (n == 0) {
		fprintf(stderr, "vmmd-gpus: no GPU found: nothing to start\n");
		return 0;
	}
	if ((args = calloc((size_t)(argc - exec_at + n + 1),
	    sizeof(*args))) == NULL) {
		perror("vmmd-gpus");
		return 3;
	}
	for (i = exec_at; i < argc; i++)
		args[i - exec_at] = argv[i];
	for (i = 0; i < n; i++)
		args[argc - exec_at + i] = units[i];
	execvp(args[0], args);
	fprintf(stderr, "vmmd-gpus: %s: %s\n", args[0], strerror(errno));
	return 3;
}
