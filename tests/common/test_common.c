/* Unit tests of common/: size parsing, the option table (env, file, errors,
 * dump round trip), log levels, the log line format and escaping. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "log.h"
#include "opt.h"

struct settings {
	bool		flag;
	uint64_t	count;
	uint64_t	bytes;
	double		ratio;
	char		name[VMM_OPT_STRMAX];
	int		mode;
};

static const struct vmm_opt tab[] = {
	{ "T_FLAG", VMM_OPT_BOOL, "0", 0, 1, NULL, offsetof(struct settings, flag), "a flag" },
	{ "T_COUNT", VMM_OPT_U64, "3", 1, 10, NULL, offsetof(struct settings, count), "a count" },
	{ "T_BYTES", VMM_OPT_SIZE, "2M", 4096, 1e12, NULL, offsetof(struct settings, bytes), "a size" },
	{ "T_RATIO", VMM_OPT_DOUBLE, "0.25", 0, 1, NULL, offsetof(struct settings, ratio), "a ratio" },
	{ "T_NAME", VMM_OPT_STRING, "abc", 0, 0, NULL, offsetof(struct settings, name), "a name" },
	{ "T_MODE", VMM_OPT_ENUM, "VMM", 0, 0, "VMM|MONITOR", offsetof(struct settings, mode), "a mode" },
};
#define NTAB (sizeof(tab) / sizeof(tab[0]))

static void
test_size(void)
{
	uint64_t v;

	CHECK(vmm_parse_size("0", &v) == 0 && v == 0);
	CHECK(vmm_parse_size("512", &v) == 0 && v == 512);
	CHECK(vmm_parse_size("4K", &v) == 0 && v == 4096);
	CHECK(vmm_parse_size("4KiB", &v) == 0 && v == 4096);
	CHECK(vmm_parse_size("2M", &v) == 0 && v == 2u << 20);
	CHECK(vmm_parse_size("3g", &v) == 0 && v == 3ull << 30);
	CHECK(vmm_parse_size("1T", &v) == 0 && v == 1ull << 40);
	CHECK(vmm_parse_size("", &v) == -1);
	CHECK(vmm_parse_size("-1", &v) == -1);
	CHECK(vmm_parse_size(" 1", &v) == -1);
	CHECK(vmm_parse_size("1X", &v) == -1);
	CHECK(vmm_parse_size("1KK", &v) == -1);
	CHECK(vmm_parse_size("99999999999999999999", &v) == -1);
	CHECK(vmm_parse_size("17000000000T", &v) == -1);	/* overflow */
}

static void
test_table(void)
{
	struct settings s;
	char err[256], path[] = "/tmp/vmm-test-opt-XXXXXX";
	FILE *f;
	int fd;

	CHECK(vmm_opt_defaults(tab, NTAB, &s, err, sizeof(err)) == 0);
	CHECK(!s.flag && s.count == 3 && s.bytes == 2u << 20 && s.ratio == 0.25);
	CHECK(strcmp(s.name, "abc") == 0 && s.mode == 0);

	CHECK(vmm_opt_set(&tab[5], &s, "monitor", err, sizeof(err)) == 0 && s.mode == 1);
	CHECK(vmm_opt_set(&tab[5], &s, "MONITORX", err, sizeof(err)) == -1);
	CHECK(strstr(err, "T_MODE") != NULL && strstr(err, "VMM|MONITOR") != NULL);
	CHECK(vmm_opt_set(&tab[1], &s, "11", err, sizeof(err)) == -1);
	CHECK(strstr(err, "T_COUNT") != NULL && strstr(err, "[1, 10]") != NULL);
	CHECK(vmm_opt_set(&tab[1], &s, "0", err, sizeof(err)) == -1);
	CHECK(vmm_opt_set(&tab[1], &s, "5x", err, sizeof(err)) == -1);
	CHECK(vmm_opt_set(&tab[1], &s, "", err, sizeof(err)) == -1);
	CHECK(vmm_opt_set(&tab[2], &s, "1K", err, sizeof(err)) == -1);	/* below min */
	CHECK(vmm_opt_set(&tab[3], &s, "1.5", err, sizeof(err)) == -1);
	CHECK(vmm_opt_set(&tab[3], &s, "nan", err, sizeof(err)) == -1);
	CHECK(vmm_opt_set(&tab[3], &s, "0.5", err, sizeof(err)) == 0 && s.ratio == 0.5);
	/* Decimal, as the integers: no blank, sign, hex or words. */
	CHECK(vmm_opt_set(&tab[3], &s, " 0.5", err, sizeof(err)) == -1);
	CHECK(vmm_opt_set(&tab[3], &s, "+0.5", err, sizeof(err)) == -1);
	CHECK(vmm_opt_set(&tab[3], &s, "0x1p-2", err, sizeof(err)) == -1);
	CHECK(vmm_opt_set(&tab[3], &s, "0.5 ", err, sizeof(err)) == -1);
	CHECK(vmm_opt_set(&tab[3], &s, "infinity", err, sizeof(err)) == -1);
	CHECK(vmm_opt_set(&tab[3], &s, ".", err, sizeof(err)) == -1);
	CHECK(vmm_opt_set(&tab[3], &s, ".25", err, sizeof(err)) == 0 && s.ratio == 0.25);
	CHECK(vmm_opt_set(&tab[3], &s, "25e-2", err, sizeof(err)) == 0 && s.ratio == 0.25);
	CHECK(vmm_opt_set(&tab[3], &s, "1", err, sizeof(err)) == 0 && s.ratio == 1);
	CHECK(vmm_opt_set(&tab[0], &s, "yes", err, sizeof(err)) == 0 && s.flag);
	CHECK(vmm_opt_set(&tab[0], &s, "2", err, sizeof(err)) == -1);

	setenv("T_COUNT", "7", 1);
	CHECK(vmm_opt_from_env(tab, NTAB, &s, err, sizeof(err)) == 0 && s.count == 7);
	setenv("T_COUNT", "seven", 1);
	CHECK(vmm_opt_from_env(tab, NTAB, &s, err, sizeof(err)) == -1);
	CHECK(strstr(err, "T_COUNT=\"seven\"") != NULL);
	unsetenv("T_COUNT");

	/* A dump reads back as a config file with the same values. */
	CHECK((fd = mkstemp(path)) >= 0);
	CHECK((f = fdopen(fd, "w")) != NULL);
	s.bytes = 123 << 12;
	s.mode = 1;
	vmm_opt_dump(f, tab, NTAB, &s);
	fprintf(f, "# a comment\n\n  T_NAME = spaced  # trailing comment\n");
	fclose(f);
	{
		struct settings t;

		CHECK(vmm_opt_defaults(tab, NTAB, &t, err, sizeof(err)) == 0);
		CHECK(vmm_opt_from_file(tab, NTAB, &t, path, NULL, NULL, err,
		    sizeof(err)) == 0);
		CHECK(t.bytes == s.bytes && t.mode == 1 && t.ratio == s.ratio);
		CHECK(strcmp(t.name, "spaced") == 0);
	}
	/* Errors name the file and line. */
	CHECK((f = fopen(path, "w")) != NULL);
	fprintf(f, "T_FLAG = 1\nT_BOGUS = 3\n");
	fclose(f);
	CHECK(vmm_opt_from_file(tab, NTAB, &s, path, NULL, NULL, err, sizeof(err)) == -1);
	CHECK(strstr(err, ":2:") != NULL && strstr(err, "T_BOGUS") != NULL);
	CHECK((f = fopen(path, "w")) != NULL);
	fprintf(f, "T_FLAG\n");
	fclose(f);
	CHECK(vmm_opt_from_file(tab, NTAB, &s, path, NULL, NULL, err, sizeof(err)) == -1);
	CHECK(strstr(err, ":1:") != NULL);
	unlink(path);
	CHECK(vmm_opt_from_file(tab, NTAB, &s, path, NULL, NULL, err, sizeof(err)) == -1);
	CHECK(strstr(err, "No such file") != NULL);
}

static void
test_log(void)
{
	char path[] = "/tmp/vmm-test-log-XXXXXX", buf[512], esc[64];
	ssize_t n;
	int fd;

	CHECK(vmm_log_parse_level("info") == VMM_LOG_INFO);
	CHECK(vmm_log_parse_level("DEBUG") == VMM_LOG_DEBUG);
	CHECK(vmm_log_parse_level("ERROR") == VMM_LOG_ERROR);
	CHECK(vmm_log_parse_level("WARN") == -1);

	CHECK((fd = mkstemp(path)) >= 0);
	CHECK(vmm_log_open(VMM_LOG_INFO, path) == 0);
	vmm_log_debug("hidden %d", 1);
	vmm_log_info("ALLOC Ptr=0x%x Size=%d", 0x1000, 42);
	vmm_log_close();
	n = read(fd, buf, sizeof(buf) - 1);
	CHECK(n > 0);
	buf[n] = '\0';
	/* [HH:MM:SS.mmm] [INF] ALLOC ... and exactly one line */
	CHECK(buf[0] == '[' && buf[3] == ':' && buf[6] == ':' && buf[9] == '.' &&
	    buf[13] == ']');
	CHECK(strncmp(buf + 14, " [INF] ALLOC Ptr=0x1000 Size=42\n", 32) == 0);
	CHECK(strchr(buf, '\n') == buf + n - 1);
	CHECK(strstr(buf, "hidden") == NULL);
	close(fd);
	unlink(path);

	vmm_log_escape(esc, sizeof(esc), "ok\n\x01\\", 5);
	CHECK(strcmp(esc, "ok\\x0a\\x01\\x5c") == 0);
	vmm_log_escape(esc, 8, "abcdefghijkl", 12);
	CHECK(strlen(esc) < 8);
}

int
main(void)
{
	test_size();
	test_table();
	test_log();
	return 0;
}
