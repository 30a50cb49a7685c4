/*
 * Which cgroup, and which container, a client process is in.
 *
 * The cgroup names a client for quotas (quota.cgroup.<PATH>), for the
 * tenant rule (tenant = uid+cgroup) and in `vmmctl clients`.  It is the
 * cgroup v2 path ("0::<path>" in /proc/<pid>/cgroup).  On a hybrid host,
 * where the v2 hierarchy exists but holds no one (every process reads
 * "0::/"), containers are told apart by their v1 paths instead: the first
 * of the name=systemd, memory and pids hierarchies whose path is not "/".
 * A container runtime gives each container its own path in those.
 *
 * The container id is read from the cgroup path where runtimes put it: a
 * last component of 64 hex digits, bare (Kubernetes' kubepods/.../<id>,
 * Docker's /docker/<id>) or as <runtime>-<id>.scope (docker-, libpod-,
 * crio-, cri-containerd-).  Leaf only: calls nothing else of vmmd.
 */
#include "vmmd.h"

#include <stdio.h>
#include <string.h>

/* Copies s[0..n) to out if it fits, else leaves out empty. */
static void
put(char *out, size_t outlen, const char *s, size_t n)
{
	out[0] = '\0';
	if (n < outlen) {
		memcpy(out, s, n);
		out[n] = '\0';
	}
}

void
vmmd_cgroup_parse(const char *text, char *out, size_t outlen)
{
	static const char *const v1[] = { "name=systemd", "memory", "pids" };
	const char *found[3] = { NULL, NULL, NULL }, *v2 = NULL, *line, *nl;
	size_t found_len[3] = { 0, 0, 0 }, v2_len = 0;

	out[0] = '\0';
	for (line = text; line != NULL && *line != '\0'; line = nl ? nl + 1 : NULL) {
		const char *c1, *c2, *path;
		size_t plen;

		nl = strchr(line, '\n');
		/* hierarchy-id:controllers:path */
		if ((c1 = memchr(line, ':', nl ? (size_t)(nl - line) : strlen(line))) == NULL)
			continue;
		if ((c2 = memchr(c1 + 1, ':', nl ? (size_t)(nl - c1 - 1) : strlen(c1 + 1))) == NULL)
			continue;
		path = c2 + 1;
		plen = nl ? (size_t)(nl - path) : strlen(path);
		if (plen == 0 || path[0] != '/')
			continue;
		if (strncmp(line, "0::", 3) == 0) {
			v2 = path;
			v2_len = plen;
			continue;
		}
		for (size_t i = 0; i < sizeof(v1) / sizeof(v1[0]); i++) {
			size_t vl = strlen(v1[i]);

			/* The controller list may be "cpu,cpuacct": match a word. */
			for (const char *w = c1 + 1; w < c2; ) {
				const char *e = memchr(w, ',', (size_t)(c2 - w));
				size_t wl = e ? (size_t)(e - w) : (size_t)(c2 - w);

				if (wl == vl && memcmp(w, v1[i], vl) == 0 &&
				    found[i] == NULL) {
					found[i] = path;
					found_len[i] = plen;
				}
				w = e ? e + 1 : c2;
			}
		}
	}
	if (v2 != NULL && !(v2_len == 1 && v2[0] == '/')) {
		put(out, outlen, v2, v2_len);
		return;
	}
	for (size_t i = 0; i < 3; i++) {
		if (found[i] != NULL && !(found_len[i] == 1 && found[i][0] == '/')) {
			put(out, outlen, found[i], found_len[i]);
			return;
		}
	}
	if (v2 != NULL)
		put(out, outlen, v2, v2_len);
}

void
vmmd_cgroup_of(pid_t pid, char *out, size_t outlen)
{
	char path[64], text[4096];
	size_t n;
	FILE *f;

	out[0] = '\0';
	if (pid <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return;
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	vmmd_cgroup_parse(text, out, outlen);
}

static bool
is_hex64(const char *s, size_t n)
{
	if (n != 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

void
vmmd_container_id(const char *cgroup, char *out, size_t outlen)
{
	static const char *const prefix[] = { "docker-", "libpod-", "crio-",
	    "cri-containerd-", "containerd-" };
	const char *leaf = strrchr(cgroup, '/');
	size_t n;

	out[0] = '\0';
	leaf = leaf != NULL ? leaf + 1 : cgroup;
	n = strlen(leaf);
	if (n > 6 && strcmp(leaf + n - 6, ".scope") == 0)
		n -= 6;
	for (size_t i = 0; i < sizeof(prefix) / sizeof(prefix[0]); i++) {
		size_t pl = strlen(prefix[i]);

		if (n > pl && strncmp(leaf, prefix[i], pl) == 0) {
			leaf += pl;
			n -= pl;
			break;
		}
	}
	if (is_hex64(leaf, n))
		put(out, outlen, leaf, n);
}
