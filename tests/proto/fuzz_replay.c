/*
 * Runs the fuzz harness (fuzz_frame.c) as a plain test: over seeds built from
 * one valid frame of every message type, each cut at every length, combined,
 * and mutated with a fixed PRNG; then over every file named on the command
 * line (or in a directory named there), e.g. tests/proto/corpus.
 *   proto_fuzz_replay [--write-corpus DIR] [FILE|DIR]...
 * --write-corpus writes the seeds (unmutated) to DIR to start a fuzzer from.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fuzz_frame.h"
#include "testlib.h"

#define MUTATIONS	300	/* per sample */

static unsigned char	input[1 + 2 * (VMM_FRAME_HDR + VMM_FRAME_MAX)];
static size_t		runs;
static const char	*corpus_dir;
static size_t		corpus_n;

/* Run one input; with --write-corpus, also keep it as a seed file. */
static void
run(const unsigned char *buf, size_t len, int keep)
{
	char	 path[4096];
	FILE	*f;

	LLVMFuzzerTestOneInput(buf, len);
	runs++;
	if (!keep || corpus_dir == NULL)
		return;
	snprintf(path, sizeof(path), "%s/seed-%03zu", corpus_dir, corpus_n++);
	CHECK((f = fopen(path, "wb")) != NULL);
	CHECK(fwrite(buf, 1, len, f) == len);
	CHECK(fclose(f) == 0);
}

static uint32_t
lcg(uint32_t *st)
{
	*st = *st * 1103515245u + 12345u;
	return *st >> 8;
}

static void
run_seeds(void)
{
	static const unsigned	 pieces[] = { 0, 2, 6, 8, 14 };
	struct t_sample		 s;
	size_t			 i, j, len, n, grant_at, count;
	unsigned		 from;
	uint32_t		 st = 1;

	for (i = 0; i < T_NSAMPLES; i++) {
		t_sample(i, &s);
		from = s.from == VMM_FRAME_PEER_DAEMON ? FUZZ_FROM_DAEMON : 0;
		len = t_frame(&s.env, input + 1);
		/* whole, in pieces, with fds (right for the Grant, wrong
		 * for the others) */
		input[0] = (unsigned char)(from | 14);
		run(input, 1 + len, 1);
		for (j = 0; j < sizeof(pieces) / sizeof(pieces[0]); j++) {
			input[0] = (unsigned char)(from | pieces[j]);
			run(input, 1 + len, 0);
		}
		input[0] = (unsigned char)(from | 14 | FUZZ_WITH_FDS |
		    (s.nfds != 0 ? (s.nfds - 1) << FUZZ_NFDS_SHIFT : 0));
		run(input, 1 + len, s.nfds != 0);
		/* every truncation */
		input[0] = (unsigned char)(from | 14);
		for (j = 0; j < len; j++)
			run(input, 1 + j, 0);
		/* mutations: random bytes, lengths, and sizes */
		for (j = 0; j < MUTATIONS; j++) {
			unsigned char save[8];
			size_t at = lcg(&st) % len, k, w = 1 + lcg(&st) % 4;

			for (k = 0; k < w && at + k < len; k++) {
				save[k] = input[1 + at + k];
				input[1 + at + k] = (unsigned char)lcg(&st);
			}
			input[0] = (unsigned char)lcg(&st);
			run(input, 1 + len - (j % 7 == 0 ? lcg(&st) % len : 0),
			    0);
			for (k = 0; k < w && at + k < len; k++)
				input[1 + at + k] = save[k];
		}
	}
	/* every message a side sends, back to back */
	for (from = 0; from <= FUZZ_FROM_DAEMON; from++) {
		n = t_stream_of(from ? VMM_FRAME_PEER_DAEMON :
		    VMM_FRAME_PEER_CLIENT, input + 1, &grant_at, &count);
		input[0] = (unsigned char)(from | 14);
		run(input, 1 + n, 1);
		input[0] = (unsigned char)(from | 4);
		run(input, 1 + n, 0);
	}
	/* lengths at and over the cap */
	memset(input, 0, sizeof(input));
	input[0] = 14;
	input[1 + 2] = 1;				/* 65536 */
	run(input, 1 + 4 + 100, 1);
	input[1 + 0] = 1;				/* 65537 */
	run(input, 1 + 4, 1);
	memset(input + 1, 0xff, 4);
	run(input, 1 + 4, 0);
}

/* Run a file, or every file in a directory. */
static void
run_path(const char *path)
{
	struct stat	 st;
	struct dirent	*de;
	DIR		*d;
	FILE		*f;
	char		 sub[4096];
	size_t		 len;

	CHECK(stat(path, &st) == 0);
	if (S_ISDIR(st.st_mode)) {
		CHECK((d = opendir(path)) != NULL);
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
			run_path(sub);
		}
		closedir(d);
		return;
	}
	CHECK((f = fopen(path, "rb")) != NULL);
	len = fread(input, 1, sizeof(input), f);
	fclose(f);
	run(input, len, 0);
}

int
main(int argc, char **argv)
{
	int	i, base = t_count_fds();

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--write-corpus") == 0 && i + 1 < argc) {
			corpus_dir = argv[++i];
			continue;
		}
	}
	run_seeds();
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--write-corpus") == 0) {
			i++;
			continue;
		}
		run_path(argv[i]);
	}
	CHECK(t_count_fds() == base);
	printf("proto fuzz replay: %zu inputs", runs);
	if (corpus_dir != NULL)
		printf(", %zu seeds written to %s", corpus_n, corpus_dir);
	printf("\n");
	return 0;
}
