/*
 * daemon/cgroup.c: the cgroup and container id vmmd names a client by, from
 * the texts /proc/<pid>/cgroup holds on v2, hybrid and v1 hosts.
 */
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "check.h"

void	vmmd_cgroup_parse(const char *text, char *out, size_t outlen);
void	vmmd_container_id(const char *cgroup, char *out, size_t outlen);

static void
parse_is(const char *text, const char *want)
{
	char out[256];

	vmmd_cgroup_parse(text, out, sizeof(out));
	if (strcmp(out, want) != 0) {
		fprintf(stderr, "parse(\"%s\") = \"%s\", want \"%s\"\n", text, out, want);
		CHECK(0);
	}
}

static void
id_is(const char *cgroup, const char *want)
{
	char out[65];

	vmmd_container_id(cgroup, out, sizeof(out));
	if (strcmp(out, want) != 0) {
		fprintf(stderr, "id(\"%s\") = \"%s\", want \"%s\"\n", cgroup, out, want);
		CHECK(0);
	}
}

#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

int
main(void)
{
	char small[8];

	/* Pure v2: the 0:: path. */
	parse_is("0::/system.slice/docker-" H64 ".scope\n",
	    "/system.slice/docker-" H64 ".scope");
	/* Hybrid, v2 empty ("0::/"): the first v1 path that is not "/", in
	 * the order name=systemd, memory, pids. */
	parse_is("9:name=systemd:/\n8:pids:/p\n4:memory:/vmm/ctr\n0::/\n", "/vmm/ctr");
	parse_is("12:pids:/kubepods/x\n1:name=systemd:/kubepods/y\n0::/\n",
	    "/kubepods/y");
	parse_is("3:cpu,cpuacct:/a\n2:memory,pids:/b\n", "/b");
	/* Everyone at the root: "/". */
	parse_is("4:memory:/\n0::/\n", "/");
	/* Junk lines are skipped; nothing usable: "". */
	parse_is("garbage\n::\n5:memory:relative\n", "");
	parse_is("", "");
	/* Too long for the buffer: "" (never a truncated key). */
	vmmd_cgroup_parse("0::/a/very/long/path\n", small, sizeof(small));
	CHECK(small[0] == '\0');

	id_is("/docker/" H64, H64);
	id_is("/system.slice/docker-" H64 ".scope", H64);
	id_is("/machine.slice/libpod-" H64 ".scope", H64);
	id_is("/kubepods/burstable/pod1234/crio-" H64 ".scope", H64);
	id_is("/kubepods/besteffort/podx/cri-containerd-" H64 ".scope", H64);
	id_is("/kubepods/besteffort/podx/" H64, H64);
	id_is("/user.slice/user-1000.slice", "");
	id_is("/docker/" H64 "0", "");			/* 65 digits */
	id_is("/docker/0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", "");
	id_is("", "");
	printf("cgroup: ok\n");
	return 0;
}
