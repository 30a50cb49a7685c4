/*
 * Option table parsing.
 */
#include "opt.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int
vmm_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	uint64_t mult = 1;
	char *end;

	if (s == NULL || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	switch (*end) {
	case '\0':
		break;
	case 'k': case 'K':
		mult = 1ull << 10;
		end++;
		break;
	case 'm': case 'M':
		mult = 1ull << 20;
		end++;
		break;
	case 'g': case 'G':
		mult = 1ull << 30;
		end++;
		break;
	case 't': case 'T':
		mult = 1ull << 40;
		end++;
		break;
	default:
		return -1;
	}
	/* Accept an optional "B"/"iB" after a suffix: 4KiB, 2MB. */
	if (mult != 1 && (strcmp(end, "B") == 0 || strcmp(end, "iB") == 0))
		end += strlen(end);
	if (*end != '\0' || (v != 0 && mult > UINT64_MAX / v))
		return -1;
	*out = (uint64_t)v * mult;
	return 0;
}

/* Index of value in "A|B|C", case-insensitive; -1 if absent. */
static int
vmm_opt_choice(const char *choices, const char *value)
{
	const char *p = choices;
	size_t vlen = strlen(value);
	int i = 0;

	while (*p != '\0') {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);

		if (len == vlen && strncasecmp(p, value, len) == 0)
			return i;
		if (bar == NULL)
			break;
		p = bar + 1;
		i++;
	}
	return -1;
}

static void
vmm_opt_range_text(const struct vmm_opt *o, char *buf, size_t len)
{
	switch (o->type) {
	case VMM_OPT_BOOL:
		snprintf(buf, len, "0 or 1");
		break;
	case VMM_OPT_U64:
		snprintf(buf, len, "an integer in [%.0f, %.0f]", o->min, o->max);
		break;
	case VMM_OPT_SIZE:
		snprintf(buf, len, "a size in [%.0f, %.0f] bytes (K/M/G/T "
		    "suffixes allowed)", o->min, o->max);
		break;
	case VMM_OPT_DOUBLE:
		snprintf(buf, len, "a decimal number in [%g, %g]", o->min,
		    o->max);
		break;
	case VMM_OPT_STRING:
		snprintf(buf, len, "a string of at most %d bytes",
		    VMM_OPT_STRMAX - 1);
		break;
	case VMM_OPT_ENUM:
		snprintf(buf, len, "one of %s", o->choices);
		break;
	}
}

int
vmm_opt_set(const struct vmm_opt *o, void *settings, const char *value,
    char *err, size_t errlen)
{
	char *field = (char *)settings + o->offset;
	char range[160];
	uint64_t u;
	double d;
	char *end;
	int i;

	switch (o->type) {
	case VMM_OPT_BOOL:
		if ((i = vmm_opt_choice("0|false|no|off", value)) >= 0)
			*(bool *)field = false;
		else if ((i = vmm_opt_choice("1|true|yes|on", value)) >= 0)
			*(bool *)field = true;
		else
			goto bad;
		return 0;
	case VMM_OPT_U64:
		if (!isdigit((unsigned char)*value))
			goto bad;
		errno = 0;
		u = strtoull(value, &end, 10);
		if (errno != 0 || *end != '\0')
			goto bad;
		goto check_u64;
	case VMM_OPT_SIZE:
		if (vmm_parse_size(value, &u) != 0)
			goto bad;
	check_u64:
		if ((double)u < o->min || (double)u > o->max)
			goto bad;
		*(uint64_t *)field = u;
		return 0;
	case VMM_OPT_DOUBLE:
		/* Decimal only, as the integers: strtod would also take
		 * leading blanks, a sign, hex ("0x1p-2") and "infinity". */
		if (!isdigit((unsigned char)*value) && !(*value == '.' &&
		    isdigit((unsigned char)value[1])))
			goto bad;
		if (strspn(value, "0123456789.eE+-") != strlen(value))
			goto bad;
		errno = 0;
		d = strtod(value, &end);
		if (errno != 0 || *end != '\0' || isnan(d) ||
		    d < o->min || d > o->max)
			goto bad;
		*(double *)field = d;
		return 0;
	case VMM_OPT_STRING:
		if (strlen(value) >= VMM_OPT_STRMAX)
			goto bad;
		memcpy(field, value, strlen(value) + 1);
		return 0;
	case VMM_OPT_ENUM:
		if ((i = vmm_opt_choice(o->choices, value)) < 0)
			goto bad;
		*(int *)field = i;
		return 0;
	}
bad:
	vmm_opt_range_text(o, range, sizeof(range));
	snprintf(err, errlen, "%s=\"%.64s\": expected %s", o->name, value, range);
	return -1;
}

int
vmm_opt_defaults(const struct vmm_opt *tab, size_t n, void *settings,
    char *err, size_t errlen)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const char *def = tab[i].def;

		if (def == NULL)
			def = tab[i].type == VMM_OPT_STRING ? "" :
			    tab[i].type == VMM_OPT_ENUM ? NULL : "0";
		if (def == NULL) {
			*(int *)((char *)settings + tab[i].offset) = 0;
			continue;
		}
		if (vmm_opt_set(&tab[i], settings, def, err, errlen) != 0)
			return -1;
	}
	return 0;
}

int
vmm_opt_from_env(const struct vmm_opt *tab, size_t n, void *settings,
    char *err, size_t errlen)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const char *v = getenv(tab[i].name);

		if (v != NULL && vmm_opt_set(&tab[i], settings, v, err,
		    errlen) != 0)
			return -1;
	}
	return 0;
}

const struct vmm_opt *
vmm_opt_find(const struct vmm_opt *tab, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(tab[i].name, name) == 0)
			return &tab[i];
	return NULL;
}

/* Trims leading and trailing white space in place. */
static char *
vmm_opt_trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int
vmm_opt_from_file(const struct vmm_opt *tab, size_t n, void *settings,
    const char *path, vmm_opt_unknown_fn unknown, void *arg, char *err,
    size_t errlen)
{
	char line[1024], sub[512];
	unsigned lineno = 0;
	FILE *f;

	if ((f = fopen(path, "re")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		const struct vmm_opt *o;
		char *key, *val, *eq, *hash;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(err, errlen, "%s:%u: line too long", path, lineno);
			goto fail;
		}
		if ((hash = strchr(line, '#')) != NULL)
			*hash = '\0';
		key = vmm_opt_trim(line);
		if (*key == '\0')
			continue;
		if ((eq = strchr(key, '=')) == NULL) {
			snprintf(err, errlen, "%s:%u: expected key = value", path,
			    lineno);
			goto fail;
		}
		*eq = '\0';
		key = vmm_opt_trim(key);
		val = vmm_opt_trim(eq + 1);
		if ((o = vmm_opt_find(tab, n, key)) != NULL) {
			if (vmm_opt_set(o, settings, val, sub, sizeof(sub)) != 0)
				goto sub_fail;
		} else if (unknown == NULL ||
		    unknown(arg, key, val, sub, sizeof(sub)) != 0) {
			if (unknown == NULL)
				snprintf(sub, sizeof(sub), "unknown setting \"%.64s\"",
				    key);
			goto sub_fail;
		}
	}
	fclose(f);
	return 0;
sub_fail:
	snprintf(err, errlen, "%s:%u: %s", path, lineno, sub);
fail:
	fclose(f);
	return -1;
}

void
vmm_opt_help(FILE *f, const struct vmm_opt *tab, size_t n, const char *prefix)
{
	char range[160];
	size_t i;

	for (i = 0; i < n; i++) {
		vmm_opt_range_text(&tab[i], range, sizeof(range));
		fprintf(f, "%s%-24s %s\n%s%-24s   default %s; %s\n", prefix,
		    tab[i].name, tab[i].help, prefix, "",
		    tab[i].def && *tab[i].def ? tab[i].def : "(none)", range);
	}
}

void
vmm_opt_dump(FILE *f, const struct vmm_opt *tab, size_t n, const void *settings)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const char *field = (const char *)settings + tab[i].offset;

		fprintf(f, "%s = ", tab[i].name);
		switch (tab[i].type) {
		case VMM_OPT_BOOL:
			fprintf(f, "%d\n", *(const bool *)field ? 1 : 0);
			break;
		case VMM_OPT_U64:
		case VMM_OPT_SIZE:
			fprintf(f, "%" PRIu64 "\n", *(const uint64_t *)field);
			break;
		case VMM_OPT_DOUBLE:
			fprintf(f, "%g\n", *(const double *)field);
			break;
		case VMM_OPT_STRING:
			fprintf(f, "%s\n", field);
			break;
		case VMM_OPT_ENUM: {
			const char *p = tab[i].choices;
			int k = *(const int *)field;

			while (k-- > 0 && p != NULL && (p = strchr(p, '|')) != NULL)
				p++;
			fprintf(f, "%.*s\n", p ? (int)strcspn(p, "|") : 0,
			    p ? p : "");
			break;
		}
		}
	}
}
