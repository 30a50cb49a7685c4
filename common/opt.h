/*
 * One option table drives environment parsing, config-file parsing, --help
 * and the dump of effective settings (STYLE.md 17).  Parsing is strict: the
 * whole value must be consumed, sizes take K/M/G/T with overflow checks, and
 * every error names the option and the accepted range.
 */
#ifndef VMM_OPT_H
#define VMM_OPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define VMM_OPT_STRMAX 256

enum vmm_opt_type {
	VMM_OPT_BOOL,		/* bool: 0/1, true/false, yes/no, on/off */
	VMM_OPT_U64,		/* uint64_t, plain integer */
	VMM_OPT_SIZE,		/* uint64_t bytes, with K/M/G/T suffixes */
	VMM_OPT_DOUBLE,		/* double */
	VMM_OPT_STRING,		/* char[VMM_OPT_STRMAX] */
	VMM_OPT_ENUM,		/* int: index into choices ("A|B|C") */
};

struct vmm_opt {
	const char		*name;	/* config key; env name for env tables */
	enum vmm_opt_type	type;
	const char		*def;	/* default, as text; NULL: empty/0 */
	double			min, max;	/* numeric range, inclusive */
	const char		*choices;	/* VMM_OPT_ENUM: "A|B|C" */
	size_t			offset;	/* into the settings struct */
	const char		*help;
};

/* Parses a size such as 512, 64K, 2M, 1G into bytes; -1 on error/overflow. */
int	vmm_parse_size(const char *s, uint64_t *out);
/* Sets one option from text; on error fills err (naming the option). */
int	vmm_opt_set(const struct vmm_opt *o, void *settings, const char *value,
	    char *err, size_t errlen);
/* Applies every default; returns -1 only if a table default is invalid. */
int	vmm_opt_defaults(const struct vmm_opt *tab, size_t n, void *settings,
	    char *err, size_t errlen);
/* Applies every option whose name is set in the environment. */
int	vmm_opt_from_env(const struct vmm_opt *tab, size_t n, void *settings,
	    char *err, size_t errlen);

/* Called for config keys not in the table; returns 0 if it took the key. */
typedef int (*vmm_opt_unknown_fn)(void *arg, const char *key,
    const char *value, char *err, size_t errlen);

/* Reads "key = value" lines ('#' comments, blank lines).  Errors carry the
 * file name and line number. */
int	vmm_opt_from_file(const struct vmm_opt *tab, size_t n, void *settings,
	    const char *path, vmm_opt_unknown_fn unknown, void *arg, char *err,
	    size_t errlen);
const struct vmm_opt *vmm_opt_find(const struct vmm_opt *tab, size_t n,
	    const char *name);
/* Prints the table: name, default, range, help. */
void	vmm_opt_help(FILE *f, const struct vmm_opt *tab, size_t n,
	    const char *prefix);
/* Prints "name = value" for every option, parseable by vmm_opt_from_file. */
void	vmm_opt_dump(FILE *f, const struct vmm_opt *tab, size_t n,
	    const void *settings);

#endif
