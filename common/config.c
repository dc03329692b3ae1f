/*
 * fc.yaml loader. libyaml builds the document tree; a table per map names its
 * fields and how each is parsed. Every error is one line in err naming the
 * file, the line and the dotted field; on error nothing stays allocated.
 */
#include "common/config.h"
#include "common/mem.h"
#include "common/router.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define MAX_FILE_BYTES (1u << 20) /* config_load refuses larger files */
#define MAX_ENV 1024
#define MAX_MODEL_FILES 1024
#define MAX_ARGS 256 /* words of customRuntimeConfig.command or .args */
#define MAX_FIELDS 24 /* entries of the largest field table */
#define MAX_DEPTH 16  /* the schema needs 3 levels of maps and lists */
#define GIB (1ull << 30)
#define OFF(member) offsetof(struct config, member)

struct parser {
	const char *file; /* name used in messages */
	yaml_document_t *doc;
	struct config *c;
	char *err;
	size_t errlen;
	char field[192];  /* dotted name of the field being parsed */
	bool target_set;  /* scalingConfig.targetConcurrency was given */
	size_t min_line;  /* line of scalingConfig.minInstances, 0: absent */
	size_t max_line;  /* line of scalingConfig.maxInstances, 0: absent */
	size_t custom_line; /* line of customRuntimeConfig, 0: absent */
};

struct field;
typedef int (*parse_fn)(struct parser *p, const struct field *f, yaml_node_t *v);

/* One known field of a map. min/max bound numbers, or lengths of strings. */
struct field {
	const char *name;
	const char *same_as; /* this name is an alias of that field */
	parse_fn parse;
	size_t off;          /* of the value in struct config */
	double min, max;
	uint32_t step;       /* integers must be a multiple of it; 0: any */
	const char *expect;  /* what an error says was expected */
	const struct field *sub; /* the fields of a nested map */
	size_t n_sub;
};

/* --- messages ------------------------------------------------------------ */

static size_t line_of(const yaml_node_t *n)
{
	return n->start_mark.line + 1;
}

static int fail(struct parser *p, size_t line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, size_t line, const char *fmt, ...)
{
	if (!p->err || !p->errlen)
		return -EINVAL;
	char msg[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errlen, "%s:%zu: %s%s%s", p->file, line, p->field,
		 p->field[0] ? ": " : "", msg);
	return -EINVAL;
}

/* "text" with at most 40 bytes shown and anything unprintable as '?', so
 * that a message stays on one line. */
static const char *quote(char *buf, size_t size, const char *s, size_t len)
{
	size_t shown = len > 40 ? 40 : len, j = 0;
	buf[j++] = '"';
	for (size_t i = 0; i < shown && j + 6 < size; i++)
		buf[j++] = isprint((unsigned char)s[i]) ? s[i] : '?';
	if (shown < len)
		j += (size_t)snprintf(buf + j, size - j, "...");
	snprintf(buf + j, size - j, "\"");
	return buf;
}

static const char *text(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static bool is_empty(const yaml_node_t *n)
{
	return n->type == YAML_SCALAR_NODE && !n->data.scalar.length &&
	       n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* A plain null (nothing, ~, null) given where a map or list goes reads as empty. */
static bool is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *s = text(n);
	return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	       !strcmp(s, "NULL");
}

static const char *describe(const yaml_node_t *n, char *buf, size_t size)
{
	if (n->type == YAML_MAPPING_NODE)
		return "a map";
	if (n->type == YAML_SEQUENCE_NODE)
		return "a list";
	if (is_empty(n))
		return "nothing";
	return quote(buf, size, text(n), n->data.scalar.length);
}

static int expected(struct parser *p, const yaml_node_t *n, const char *what)
{
	char buf[64];
	return fail(p, line_of(n), "expected %s, got %s", what, describe(n, buf, sizeof(buf)));
}

/* p->field = prefix (its first base bytes) + "." + name, truncated to fit. */
static void set_field(struct parser *p, size_t base, const char *name, size_t len)
{
	char buf[64];
	if (len > 48)
		len = 48;
	for (size_t i = 0; i < len; i++)
		buf[i] = isprint((unsigned char)name[i]) ? name[i] : '?';
	snprintf(p->field + base, sizeof(p->field) - base, "%s%.*s", base ? "." : "", (int)len,
		 buf);
}

/* --- scalars ------------------------------------------------------------- */

static bool is_scalar_text(const yaml_node_t *v)
{
	return v->type == YAML_SCALAR_NODE && strlen(text(v)) == v->data.scalar.length;
}

/* The whole text as a decimal integer: no sign, no spaces, no overflow. */
static bool to_u64(const yaml_node_t *v, uint64_t *out)
{
	if (!is_scalar_text(v) || !isdigit((unsigned char)text(v)[0]))
		return false;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(text(v), &end, 10);
	if (errno || *end)
		return false;
	*out = x;
	return true;
}

static bool to_double(const yaml_node_t *v, double *out)
{
	if (!is_scalar_text(v) || !v->data.scalar.length || isspace((unsigned char)text(v)[0]))
		return false;
	char *end;
	errno = 0;
	double x = strtod(text(v), &end);
	if (errno || *end || !isfinite(x))
		return false;
	*out = x;
	return true;
}

static void *slot(struct parser *p, const struct field *f)
{
	return (char *)p->c + f->off;
}

static int parse_int(struct parser *p, const struct field *f, yaml_node_t *v, uint64_t *out)
{
	if (!to_u64(v, out) || *out < f->min || *out > f->max || (f->step && *out % f->step))
		return expected(p, v, f->expect);
	return 0;
}

static int parse_u32(struct parser *p, const struct field *f, yaml_node_t *v)
{
	uint64_t x;
	int r = parse_int(p, f, v, &x);
	if (!r)
		*(uint32_t *)slot(p, f) = (uint32_t)x;
	return r;
}

static int parse_u64(struct parser *p, const struct field *f, yaml_node_t *v)
{
	uint64_t x;
	int r = parse_int(p, f, v, &x);
	if (!r)
		*(uint64_t *)slot(p, f) = x;
	return r;
}

static int parse_num(struct parser *p, const struct field *f, yaml_node_t *v)
{
	double x;
	if (!to_double(v, &x) || x < f->min || x > f->max)
		return expected(p, v, f->expect);
	*(double *)slot(p, f) = x;
	return 0;
}

static int parse_bool(struct parser *p, const struct field *f, yaml_node_t *v)
{
	static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes", "YES",
					   "on", "On", "ON" };
	static const char *const no[] = { "false", "False", "FALSE", "no", "No", "NO",
					  "off", "Off", "OFF" };
	for (size_t i = 0; v->type == YAML_SCALAR_NODE && i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcmp(text(v), yes[i]) || !strcmp(text(v), no[i])) {
			*(bool *)slot(p, f) = !strcmp(text(v), yes[i]);
			return 0;
		}
	}
	return expected(p, v, f->expect);
}

static void set_str(struct parser *p, const struct field *f, const yaml_node_t *v)
{
	char **dst = slot(p, f);
	free(*dst);
	*dst = xstrndup(text(v), v->data.scalar.length);
}

/* Text without NUL bytes, its length in min..max. */
static int parse_str(struct parser *p, const struct field *f, yaml_node_t *v)
{
	if (!is_scalar_text(v) || v->data.scalar.length < f->min || v->data.scalar.length > f->max)
		return expected(p, v, f->expect);
	set_str(p, f, v);
	return 0;
}

static bool is_name(const char *s, size_t len, size_t max, bool dash)
{
	if (!len || len > max || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && !(dash && s[i] == '-'))
			return false;
	return true;
}

/* Also the first segment of the function's URL: not one the daemon's own
 * routes take, where the function could never be reached. */
static int parse_name(struct parser *p, const struct field *f, yaml_node_t *v)
{
	if (v->type != YAML_SCALAR_NODE || !is_name(text(v), v->data.scalar.length, 64, true))
		return expected(p, v, f->expect);
	const char *route = router_reserved(text(v), v->data.scalar.length);
	if (route)
		return fail(p, line_of(v), "\"%s\" is reserved for the daemon's own routes (%s)",
			    text(v), route);
	set_str(p, f, v);
	return 0;
}

/* One of the words in f->expect, written there as "a" or "b". */
static int parse_word(struct parser *p, const struct field *f, yaml_node_t *v)
{
	char quoted[40];
	if (is_scalar_text(v) && v->data.scalar.length < 32 && !strchr(text(v), '"')) {
		snprintf(quoted, sizeof(quoted), "\"%s\"", text(v));
		if (strstr(f->expect, quoted)) {
			set_str(p, f, v);
			return 0;
		}
	}
	return expected(p, v, f->expect);
}

static int parse_method(struct parser *p, const struct field *f, yaml_node_t *v)
{
	size_t len = v->type == YAML_SCALAR_NODE ? v->data.scalar.length : 0;
	if (!len || len > 16 || strspn(text(v), "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != len)
		return expected(p, v, f->expect);
	set_str(p, f, v);
	return 0;
}

static int parse_url_path(struct parser *p, const struct field *f, yaml_node_t *v)
{
	if (!is_scalar_text(v) || text(v)[0] != '/' || v->data.scalar.length > f->max)
		return expected(p, v, f->expect);
	for (const char *s = text(v); *s; s++)
		if (!isgraph((unsigned char)*s))
			return expected(p, v, f->expect);
	set_str(p, f, v);
	return 0;
}

/* Any text, NUL bytes included: its length goes along. */
static int parse_body(struct parser *p, const struct field *f, yaml_node_t *v)
{
	if (v->type != YAML_SCALAR_NODE)
		return expected(p, v, f->expect);
	free(p->c->warmup.body);
	p->c->warmup.body = xmalloc(v->data.scalar.length + 1);
	memcpy(p->c->warmup.body, text(v), v->data.scalar.length + 1);
	p->c->warmup.body_len = v->data.scalar.length;
	return 0;
}

static int parse_min_instances(struct parser *p, const struct field *f, yaml_node_t *v)
{
	p->min_line = line_of(v);
	return parse_u32(p, f, v);
}

static int parse_max_instances(struct parser *p, const struct field *f, yaml_node_t *v)
{
	p->max_line = line_of(v);
	return parse_u32(p, f, v);
}

/* > 0 (not just >= min) */
static int parse_target(struct parser *p, const struct field *f, yaml_node_t *v)
{
	double x;
	if (!to_double(v, &x) || !(x > 0) || x > f->max)
		return expected(p, v, f->expect);
	p->c->scaling.target_concurrency = x;
	p->target_set = true;
	return 0;
}

/* --- lists and maps ------------------------------------------------------ */

static int walk(struct parser *p, yaml_node_t *map, const struct field *fields, size_t n);

static yaml_node_t *node(struct parser *p, int index)
{
	return yaml_document_get_node(p->doc, index);
}

/* Line of an earlier key of map with the same text as pair i's, or 0. */
static size_t earlier_key(struct parser *p, yaml_node_t *map, yaml_node_pair_t *pair)
{
	yaml_node_t *k = node(p, pair->key);
	for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < pair; q++) {
		yaml_node_t *e = node(p, q->key);
		if (e->type == YAML_SCALAR_NODE && e->data.scalar.length == k->data.scalar.length &&
		    !memcmp(text(e), text(k), k->data.scalar.length))
			return line_of(e);
	}
	return 0;
}

static int env_entry(struct parser *p, yaml_node_t *map, yaml_node_pair_t *pair, size_t base)
{
	yaml_node_t *k = node(p, pair->key), *v = node(p, pair->value);
	if (k->type != YAML_SCALAR_NODE)
		return expected(p, k, "a variable name");
	set_field(p, base, text(k), k->data.scalar.length);
	if (!is_name(text(k), k->data.scalar.length, 128, false))
		return fail(p, line_of(k), "expected a variable name of letters, digits and _, "
					   "not starting with a digit");
	size_t first = earlier_key(p, map, pair);
	if (first)
		return fail(p, line_of(k), "duplicate variable, first set at line %zu", first);
	if (!is_scalar_text(v))
		return expected(p, v, "a value as text");
	struct config_kv *kv = &p->c->env[p->c->n_env++];
	kv->key = xstrdup(text(k));
	kv->value = xstrdup(text(v));
	return 0;
}

static int parse_env(struct parser *p, const struct field *f, yaml_node_t *v)
{
	if (is_null(v))
		return 0;
	if (v->type != YAML_MAPPING_NODE)
		return expected(p, v, f->expect);
	size_t n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
	if (n > MAX_ENV)
		return fail(p, line_of(v), "expected at most %d variables, got %zu", MAX_ENV, n);
	p->c->env = xcalloc(n, sizeof(*p->c->env));
	size_t base = strlen(p->field);
	for (yaml_node_pair_t *pair = v->data.mapping.pairs.start; pair < v->data.mapping.pairs.top;
	     pair++) {
		int r = env_entry(p, v, pair, base);
		if (r)
			return r;
	}
	p->field[base] = 0;
	return 0;
}

/* What a list field holds: at most `max` items, each accepted by ok(). */
struct list_rule {
	int max;
	const char *noun; /* the items, plural, for "expected at most N <noun>" */
	const char *item; /* one item, for "expected <item>" */
	bool (*ok)(const yaml_node_t *item);
};

static bool is_relative_path(const yaml_node_t *item)
{
	return is_scalar_text(item) && item->data.scalar.length && text(item)[0] != '/';
}

static bool is_word(const yaml_node_t *item)
{
	return is_scalar_text(item) && item->data.scalar.length <= 4095;
}

static const struct list_rule model_files_rule = {
	MAX_MODEL_FILES, "files", "a path relative to the function folder", is_relative_path
};
static const struct list_rule words_rule = {
	MAX_ARGS, "words", "a word of text (at most 4095 bytes)", is_word
};

/* A sequence of strings into a NULL-terminated array; the field name of a bad
 * item gets its index, "modelFiles[2]". */
static int parse_list(struct parser *p, const struct field *f, yaml_node_t *v,
		      const struct list_rule *rule, char ***out, size_t *n_out)
{
	if (is_null(v))
		return 0;
	if (v->type != YAML_SEQUENCE_NODE)
		return expected(p, v, f->expect);
	size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (n > (size_t)rule->max)
		return fail(p, line_of(v), "expected at most %d %s, got %zu", rule->max, rule->noun,
			    n);
	*out = xcalloc(n + 1, sizeof(char *));
	size_t base = strlen(p->field);
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = node(p, v->data.sequence.items.start[i]);
		snprintf(p->field + base, sizeof(p->field) - base, "[%zu]", i);
		if (!rule->ok(item))
			return expected(p, item, rule->item);
		(*out)[(*n_out)++] = xstrdup(text(item));
	}
	p->field[base] = 0;
	return 0;
}

static int parse_model_files(struct parser *p, const struct field *f, yaml_node_t *v)
{
	return parse_list(p, f, v, &model_files_rule, &p->c->model_files, &p->c->n_model_files);
}

static int parse_command(struct parser *p, const struct field *f, yaml_node_t *v)
{
	int r = parse_list(p, f, v, &words_rule, &p->c->command, &p->c->n_command);
	if (!r && (!p->c->n_command || !p->c->command[0][0]))
		return expected(p, v, f->expect);
	return r;
}

static int parse_args(struct parser *p, const struct field *f, yaml_node_t *v)
{
	return parse_list(p, f, v, &words_rule, &p->c->args, &p->c->n_args);
}

/* "custom" and its Function Compute alias "custom.debian12" */
static int parse_runtime(struct parser *p, const struct field *f, yaml_node_t *v)
{
	int r = parse_word(p, f, v);
	if (r)
		return r;
	p->c->custom = strncmp(p->c->runtime, "custom", 6) == 0;
	if (p->c->custom) {
		free(p->c->runtime);
		p->c->runtime = xstrdup("custom");
	}
	return 0;
}

static int parse_custom(struct parser *p, const struct field *f, yaml_node_t *v)
{
	p->custom_line = line_of(v);
	return walk(p, v, f->sub, f->n_sub);
}

static int parse_hook(struct parser *p, const struct field *f, yaml_node_t *v)
{
	return walk(p, v, f->sub, f->n_sub);
}

static int parse_map(struct parser *p, const struct field *f, yaml_node_t *v)
{
	return walk(p, v, f->sub, f->n_sub);
}

static int parse_warmup(struct parser *p, const struct field *f, yaml_node_t *v)
{
	p->c->has_warmup = true;
	return walk(p, v, f->sub, f->n_sub);
}

static int parse_gpu(struct parser *p, const struct field *f, yaml_node_t *v)
{
	int r = walk(p, v, f->sub, f->n_sub);
	if (!r && !p->c->gpu_type)
		r = fail(p, line_of(v), "gpuType is required when gpuConfig is set");
	return r;
}

static int parse_scaling(struct parser *p, const struct field *f, yaml_node_t *v)
{
	int r = walk(p, v, f->sub, f->n_sub);
	const struct config_scaling *s = &p->c->scaling;
	if (r || s->max_instances >= s->min_instances)
		return r;
	strcat(p->field, ".maxInstances");
	if (!p->max_line)
		return fail(p, p->min_line, "expected at least minInstances (%u), got %u (the default)",
			    s->min_instances, s->max_instances);
	return fail(p, p->max_line, "expected at least minInstances (%u), got %u",
		    s->min_instances, s->max_instances);
}

/* --- the schema ---------------------------------------------------------- */

#define N(table) (sizeof(table) / sizeof(table[0]))

static const struct field warmup_fields[] = {
	{ "method", NULL, parse_method, OFF(warmup.method), 0, 0, 0,
	  "an HTTP method in capitals such as POST" },
	{ "path", NULL, parse_url_path, OFF(warmup.path), 0, 4096, 0,
	  "a request path starting with / and without spaces" },
	{ "body", NULL, parse_body, OFF(warmup.body), 0, 0, 0, "the request body as text" },
};

static const struct field trigger_fields[] = {
	{ "authType", NULL, parse_word, OFF(auth_type), 0, 0, 0, "\"anonymous\" or \"function\"" },
};

static const struct field gpu_fields[] = {
	{ "gpuType", NULL, parse_str, OFF(gpu_type), 1, 64, 0, "a GPU type name" },
	{ "gpuMemorySize", NULL, parse_u32, OFF(gpu_memory_mb), 1, 1048576, 0,
	  "megabytes in 1..1048576" },
};

static const struct field scaling_fields[] = {
	{ "minInstances", NULL, parse_min_instances, OFF(scaling.min_instances), 0, 1000, 0,
	  "an integer in 0..1000" },
	{ "maxInstances", NULL, parse_max_instances, OFF(scaling.max_instances), 1, 1000, 0,
	  "an integer in 1..1000" },
	{ "targetConcurrency", NULL, parse_target, OFF(scaling.target_concurrency), 0, 200, 0,
	  "a number > 0 and at most 200" },
	{ "stableWindowSeconds", NULL, parse_u32, OFF(scaling.stable_window_s), 6, 3600, 0,
	  "an integer of seconds in 6..3600" },
	{ "panicWindowPercentage", NULL, parse_u32, OFF(scaling.panic_window_pct), 1, 100, 0,
	  "an integer in 1..100" },
	{ "panicThresholdPercentage", NULL, parse_u32, OFF(scaling.panic_threshold_pct), 110, 1000,
	  0, "an integer in 110..1000" },
	{ "scaleToZeroGracePeriodSeconds", NULL, parse_u32, OFF(scaling.scale_to_zero_grace_s), 0,
	  3600, 0, "an integer of seconds in 0..3600" },
	{ "maxQueueLength", NULL, parse_u32, OFF(scaling.max_queue), 0, 100000, 0,
	  "an integer in 0..100000" },
	{ "spareInstances", NULL, parse_u32, OFF(scaling.spare_instances), 0, 100, 0,
	  "an integer in 0..100" },
};

static const struct field snapmem_fields[] = {
	{ "mapped", NULL, parse_bool, OFF(snapshot_memory.mapped), 0, 0, 0, "true or false" },
	{ "minMappingSize", NULL, parse_u64, OFF(snapshot_memory.min_bytes), 4096, 1ull << 40, 0,
	  "an integer of bytes in 4096..1099511627776" },
	{ "populate", NULL, parse_bool, OFF(snapshot_memory.populate), 0, 0, 0, "true or false" },
};

static const struct field custom_fields[] = {
	{ "command", NULL, parse_command, OFF(command), 0, 0, 0,
	  "a list of words, the first the program (e.g. [\"/usr/bin/python3\", \"server.py\"])" },
	{ "args", NULL, parse_args, OFF(args), 0, 0, 0, "a list of words" },
	{ "port", NULL, parse_u32, OFF(port), 1, 65535, 0, "a TCP port in 1..65535" },
};

static const struct field health_fields[] = {
	{ "httpGetUrl", NULL, parse_url_path, OFF(health.http_get_url), 0, 4096, 0,
	  "a request path starting with / and without spaces" },
	{ "initialDelaySeconds", NULL, parse_u32, OFF(health.initial_delay_s), 0, 120, 0,
	  "an integer of seconds in 0..120" },
	{ "periodSeconds", NULL, parse_u32, OFF(health.period_s), 1, 120, 0,
	  "an integer of seconds in 1..120" },
	{ "timeoutSeconds", NULL, parse_u32, OFF(health.timeout_s), 1, 3, 0,
	  "an integer of seconds in 1..3" },
	{ "failureThreshold", NULL, parse_u32, OFF(health.failure_threshold), 1, 120, 0,
	  "an integer in 1..120" },
	{ "successThreshold", NULL, parse_u32, OFF(health.success_threshold), 1, 120, 0,
	  "an integer in 1..120" },
};

static const struct field initializer_fields[] = {
	{ "handler", NULL, parse_str, OFF(initializer.handler), 1, 128, 0, "a handler name" },
	{ "timeout", NULL, parse_u32, OFF(initializer.timeout_s), 1, 600, 0,
	  "an integer of seconds in 1..600" },
};

static const struct field pre_stop_fields[] = {
	{ "handler", NULL, parse_str, OFF(pre_stop.handler), 1, 128, 0, "a handler name" },
	{ "timeout", NULL, parse_u32, OFF(pre_stop.timeout_s), 1, 600, 0,
	  "an integer of seconds in 1..600" },
};

static const struct field lifecycle_fields[] = {
	{ "initializer", NULL, parse_hook, OFF(initializer), 0, 0, 0, "a map of handler and timeout",
	  initializer_fields, N(initializer_fields) },
	{ "preStop", NULL, parse_hook, OFF(pre_stop), 0, 0, 0, "a map of handler and timeout",
	  pre_stop_fields, N(pre_stop_fields) },
};

static const struct field top_fields[] = {
	{ "name", NULL, parse_name, OFF(name), 0, 0, 0,
	  "a name of 1 to 64 letters, digits, _ or -, starting with a letter or _" },
	{ "functionName", "name", parse_name, OFF(name), 0, 0, 0,
	  "a name of 1 to 64 letters, digits, _ or -, starting with a letter or _" },
	{ "description", NULL, parse_str, OFF(description), 0, 256, 0,
	  "text of at most 256 bytes" },
	{ "handler", NULL, parse_str, OFF(handler), 1, 4095, 0, "a path to the handler" },
	{ "runtime", NULL, parse_runtime, OFF(runtime), 0, 0, 0,
	  "\"c\", \"custom\" or \"custom.debian12\"" },
	{ "timeout", NULL, parse_u32, OFF(timeout_s), 1, 86400, 0,
	  "an integer of seconds in 1..86400" },
	{ "memorySize", NULL, parse_u32, OFF(memory_mb), 128, 32768, 64,
	  "megabytes in 128..32768, a multiple of 64" },
	{ "cpu", NULL, parse_num, OFF(cpu), 0.05, 16, 0, "a number of cores in 0.05..16" },
	{ "instanceConcurrency", NULL, parse_u32, OFF(instance_concurrency), 1, 200, 0,
	  "an integer in 1..200" },
	{ "maxRequestBodySize", NULL, parse_u64, OFF(max_body_bytes), 1, GIB, 0,
	  "an integer of bytes in 1..1073741824" },
	{ "environmentVariables", NULL, parse_env, OFF(env), 0, 0, 0,
	  "a map of variable names to values" },
	{ "modelFiles", NULL, parse_model_files, OFF(model_files), 0, 0, 0,
	  "a list of paths relative to the function folder" },
	{ "warmup", NULL, parse_warmup, OFF(warmup), 0, 0, 0, "a map of method, path and body",
	  warmup_fields, N(warmup_fields) },
	{ "snapshot", NULL, parse_bool, OFF(snapshot), 0, 0, 0, "true or false" },
	{ "snapshotMemory", NULL, parse_map, OFF(snapshot_memory), 0, 0, 0,
	  "a map of mapped, minMappingSize and populate", snapmem_fields, N(snapmem_fields) },
	{ "httpTrigger", NULL, parse_map, OFF(auth_type), 0, 0, 0, "a map of authType",
	  trigger_fields, N(trigger_fields) },
	{ "gpuConfig", NULL, parse_gpu, OFF(gpu_type), 0, 0, 0,
	  "a map of gpuType and gpuMemorySize", gpu_fields, N(gpu_fields) },
	{ "scalingConfig", NULL, parse_scaling, OFF(scaling), 0, 0, 0,
	  "a map of scaling settings", scaling_fields, N(scaling_fields) },
	{ "customRuntimeConfig", NULL, parse_custom, OFF(command), 0, 0, 0,
	  "a map of command, args and port", custom_fields, N(custom_fields) },
	{ "customHealthCheckConfig", NULL, parse_map, OFF(health), 0, 0, 0,
	  "a map of httpGetUrl and probe timings", health_fields, N(health_fields) },
	{ "instanceLifecycleConfig", NULL, parse_map, OFF(initializer), 0, 0, 0,
	  "a map of initializer and preStop", lifecycle_fields, N(lifecycle_fields) },
};

_Static_assert(N(top_fields) <= MAX_FIELDS, "raise MAX_FIELDS");

/* --- fields of a map ----------------------------------------------------- */

/* Edit distance of two names, case, '_' and '-' ignored, first 63 bytes. */
static size_t distance(const char *a, const char *b)
{
	char x[64], y[64];
	size_t n = 0, m = 0, row[64];
	for (; *a && n < 63; a++)
		if (*a != '_' && *a != '-')
			x[n++] = (char)tolower((unsigned char)*a);
	for (; *b && m < 63; b++)
		if (*b != '_' && *b != '-')
			y[m++] = (char)tolower((unsigned char)*b);
	for (size_t j = 0; j <= m; j++)
		row[j] = j;
	for (size_t i = 1; i <= n; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= m; j++) {
			size_t up = row[j], best = diag + (x[i - 1] != y[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	return row[m];
}

/* A known name close to key: a typo in this map, or a field of another map. */
static int unknown(struct parser *p, const yaml_node_t *k, const struct field *fields, size_t n)
{
	const char *key = text(k);
	for (size_t i = 0; i < n; i++)
		if (distance(key, fields[i].name) <= (strlen(key) > 5 ? 2 : 1))
			return fail(p, line_of(k), "unknown field, did you mean \"%s\"?",
				    fields[i].name);
	for (size_t i = 0; i < N(top_fields); i++) {
		const struct field *t = &top_fields[i];
		for (size_t j = 0; t->sub != fields && j < t->n_sub; j++)
			if (!distance(key, t->sub[j].name))
				return fail(p, line_of(k), "unknown field, did you mean \"%s.%s\"?",
					    t->name, t->sub[j].name);
		if (fields != top_fields && !distance(key, t->name))
			return fail(p, line_of(k), "unknown field here, did you mean the top-level "
						   "\"%s\"?", t->name);
	}
	return fail(p, line_of(k), "unknown field (see docs/fc-yaml.md)");
}

static const struct field *find(const struct field *fields, size_t n, const yaml_node_t *k)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(text(k), fields[i].name))
			return &fields[i];
	return NULL;
}

/* The table index of f, or of the field f is an alias of. */
static size_t canonical(const struct field *fields, size_t n, const struct field *f)
{
	for (size_t i = 0; f->same_as && i < n; i++)
		if (!strcmp(fields[i].name, f->same_as))
			return i;
	return (size_t)(f - fields);
}

static int walk_pair(struct parser *p, yaml_node_pair_t *pair, const struct field *fields,
		     size_t n, size_t *seen)
{
	yaml_node_t *k = node(p, pair->key), *v = node(p, pair->value);
	if (!is_scalar_text(k) || !k->data.scalar.length)
		return expected(p, k, "a field name");
	set_field(p, strlen(p->field), text(k), k->data.scalar.length);
	const struct field *f = find(fields, n, k);
	if (!f)
		return unknown(p, k, fields, n);
	size_t i = canonical(fields, n, f);
	if (seen[i])
		return fail(p, line_of(k), "duplicate field, first set at line %zu", seen[i]);
	seen[i] = line_of(k);
	return f->parse(p, f, v);
}

/* Parses the fields of map; p->field names the map ("" at the top level). */
static int walk(struct parser *p, yaml_node_t *map, const struct field *fields, size_t n)
{
	size_t seen[MAX_FIELDS] = { 0 }, base = strlen(p->field);
	if (is_null(map) && base)
		return 0;
	if (map->type != YAML_MAPPING_NODE)
		return expected(p, map, base ? "a map" : "a map of fields at the top level");
	for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
	     pair < map->data.mapping.pairs.top; pair++) {
		int r = walk_pair(p, pair, fields, n, seen);
		if (r)
			return r;
		p->field[base] = 0;
	}
	return 0;
}

/* --- the document -------------------------------------------------------- */

static size_t line_at(const char *s, size_t len, size_t offset)
{
	size_t line = 1;
	for (size_t i = 0; i < offset && i < len; i++)
		line += s[i] == '\n';
	return line;
}

static int oom(struct parser *p)
{
	snprintf(p->err, p->errlen, "%s: out of memory parsing YAML", p->file);
	return -ENOMEM;
}

static int syntax_error(struct parser *p, yaml_parser_t *yp, const char *yaml, size_t len)
{
	if (yp->error == YAML_MEMORY_ERROR)
		return oom(p);
	if (yp->error == YAML_READER_ERROR)
		return fail(p, line_at(yaml, len, yp->problem_offset), "YAML syntax error: %s",
			    yp->problem ? yp->problem : "unreadable input");
	if (!yp->context)
		return fail(p, yp->problem_mark.line + 1, "YAML syntax error: %s",
			    yp->problem ? yp->problem : "unknown problem");
	return fail(p, yp->problem_mark.line + 1, "YAML syntax error: %s (%s at line %zu)",
		    yp->problem ? yp->problem : "unknown problem", yp->context,
		    yp->context_mark.line + 1);
}

/* Anything after the first document is an error. */
static int no_second_document(struct parser *p, yaml_parser_t *yp, const char *yaml, size_t len)
{
	yaml_document_t doc;
	if (!yaml_parser_load(yp, &doc))
		return syntax_error(p, yp, yaml, len);
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	int r = 0;
	if (root)
		r = fail(p, line_of(root), "expected one YAML document, got a second one");
	yaml_document_delete(&doc);
	return r;
}

static int check_required(struct parser *p, const yaml_node_t *root)
{
	struct config *c = p->c;
	if (c->custom && !c->n_command) {
		snprintf(p->field, sizeof(p->field), "%s",
			 p->custom_line ? "customRuntimeConfig.command" : "customRuntimeConfig");
		return fail(p, p->custom_line ? p->custom_line : line_of(root),
			    "required with runtime custom: the server's command");
	}
	if (!c->custom && p->custom_line) {
		snprintf(p->field, sizeof(p->field), "customRuntimeConfig");
		return fail(p, p->custom_line, "needs runtime: custom");
	}
	if (c->custom && !c->handler)
		c->handler = xstrdup(""); /* no .so: the command is the function */
	if (!c->name || !c->handler) {
		snprintf(p->field, sizeof(p->field), "%s", c->name ? "handler" : "name");
		return fail(p, line_of(root), "required field is missing");
	}
	if (!p->target_set)
		c->scaling.target_concurrency = c->instance_concurrency * 0.7;
	return 0;
}

/* A first pass over the events that refuses deep nesting early: libyaml's
 * scanner takes time quadratic in the depth of flow collections ("[[[[..."),
 * minutes for a 1 MiB file, so the tree is built only for shallow input. */
static int check_depth(struct parser *p, const char *yaml, size_t len)
{
	yaml_parser_t yp;
	yaml_event_t ev;
	int depth = 0, r = 0;
	if (!yaml_parser_initialize(&yp))
		return oom(p);
	yaml_parser_set_input_string(&yp, (const unsigned char *)yaml, len);
	for (bool end = false; !end && !r;) {
		if (!yaml_parser_parse(&yp, &ev)) {
			r = syntax_error(p, &yp, yaml, len);
			break;
		}
		end = ev.type == YAML_STREAM_END_EVENT;
		if (ev.type == YAML_MAPPING_START_EVENT || ev.type == YAML_SEQUENCE_START_EVENT)
			depth++;
		if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT)
			depth--;
		if (depth > MAX_DEPTH)
			r = fail(p, ev.start_mark.line + 1, "expected at most %d levels of nesting",
				 MAX_DEPTH);
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&yp);
	return r;
}

static int parse_document(struct parser *p, yaml_parser_t *yp, const char *yaml, size_t len)
{
	yaml_document_t doc;
	if (!yaml_parser_load(yp, &doc))
		return syntax_error(p, yp, yaml, len);
	p->doc = &doc;
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	int r;
	if (!root)
		r = fail(p, 1, "expected a map of fields at the top level, got an empty document");
	else
		r = walk(p, root, top_fields, N(top_fields));
	if (!r)
		r = no_second_document(p, yp, yaml, len);
	if (!r)
		r = check_required(p, root);
	yaml_document_delete(&doc);
	p->doc = NULL;
	return r;
}

/* --- public -------------------------------------------------------------- */

void config_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->runtime = xstrdup("c");
	c->timeout_s = 3;
	c->memory_mb = 512;
	c->cpu = 1;
	c->instance_concurrency = 1;
	c->max_body_bytes = 32ull << 20;
	c->warmup.method = xstrdup("POST");
	c->warmup.path = xstrdup("/");
	c->warmup.body = xstrdup("");
	c->snapshot = true;
	c->snapshot_memory.mapped = true;
	c->snapshot_memory.min_bytes = 2u << 20;
	c->auth_type = xstrdup("anonymous");
	c->port = 9000;
	c->health = (struct config_health){ .period_s = 5, .timeout_s = 1, .failure_threshold = 3,
					    .success_threshold = 1 };
	c->initializer.timeout_s = 3;
	c->pre_stop.timeout_s = 3;
	c->scaling = (struct config_scaling){
		.min_instances = 0,
		.max_instances = 8,
		.target_concurrency = 0.7,
		.stable_window_s = 60,
		.panic_window_pct = 10,
		.panic_threshold_pct = 200,
		.scale_to_zero_grace_s = 30,
		.max_queue = 100,
		.spare_instances = 1,
	};
}

int config_parse(const char *yaml, size_t len, const char *name_for_errors, const char *dir,
		 struct config *out, char *err, size_t errlen)
{
	struct parser p = { .file = name_for_errors ? name_for_errors : "fc.yaml",
			    .c = out,
			    .err = err,
			    .errlen = err ? errlen : 0 };
	yaml_parser_t yp;
	if (p.errlen)
		err[0] = 0;
	config_defaults(out);
	out->path = xstrdup(p.file);
	out->dir = dir ? xstrdup(dir) : NULL;
	if (!yaml_parser_initialize(&yp)) {
		config_free(out);
		return oom(&p);
	}
	yaml_parser_set_input_string(&yp, (const unsigned char *)yaml, len);
	int r = check_depth(&p, yaml, len);
	if (!r)
		r = parse_document(&p, &yp, yaml, len);
	yaml_parser_delete(&yp);
	if (r)
		config_free(out);
	return r;
}

static int io_error(char *err, size_t errlen, const char *path, int r, const char *what)
{
	if (err && errlen)
		snprintf(err, errlen, "%s: %s", path, what ? what : strerror(-r));
	return r;
}

/* The whole file into *buf (NUL-terminated), refused above MAX_FILE_BYTES.
 * Opened with O_NONBLOCK: a blocking open of a FIFO waits for a writer, and
 * callers run on the daemon's event loop (POST /admin/functions) and in
 * thaw build. fstat then refuses anything but a regular file. */
static int read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY), r = 0, fl;
	struct stat st;
	char *b = NULL;
	size_t n = 0;
	if (fd < 0)
		return io_error(err, errlen, path, -errno, NULL);
	if (fstat(fd, &st))
		r = io_error(err, errlen, path, -errno, NULL);
	else if (S_ISDIR(st.st_mode))
		r = io_error(err, errlen, path, -EISDIR, NULL);
	else if (!S_ISREG(st.st_mode))
		r = io_error(err, errlen, path, -EINVAL, "not a regular file");
	else if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		r = io_error(err, errlen, path, -errno, NULL); /* plain reads from here on */
	if (r)
		goto close_fd;
	b = xmalloc(MAX_FILE_BYTES + 1);
	while (n <= MAX_FILE_BYTES) {
		ssize_t got = read(fd, b + n, MAX_FILE_BYTES + 1 - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			r = io_error(err, errlen, path, -errno, NULL);
		if (got <= 0)
			break;
		n += (size_t)got;
	}
	if (!r && n > MAX_FILE_BYTES)
		r = io_error(err, errlen, path, -EFBIG, "file larger than 1 MiB");
	if (r) {
		free(b);
		goto close_fd;
	}
	b[n] = 0;
	*buf = b;
	*len = n;
close_fd:
	close(fd);
	return r;
}

/* The absolute, symlink-free folder of path. */
static int real_dir(const char *path, char **dir, char *err, size_t errlen)
{
	char *abs = realpath(path, NULL);
	if (!abs)
		return io_error(err, errlen, path, -errno, NULL);
	char *slash = strrchr(abs, '/'); /* abs is absolute: there is one */
	if (slash == abs)
		slash++; /* "/fc.yaml" -> "/" */
	*slash = 0;
	*dir = xstrdup(abs);
	free(abs);
	return 0;
}

int config_load(const char *path, struct config *out, char *err, size_t errlen)
{
	char *buf = NULL, *dir = NULL;
	size_t len = 0;
	memset(out, 0, sizeof(*out));
	int r = read_file(path, &buf, &len, err, errlen);
	if (r)
		return r;
	r = real_dir(path, &dir, err, errlen);
	if (r)
		goto free_buf;
	r = config_parse(buf, len, path, dir, out, err, errlen);
	free(dir);
free_buf:
	free(buf);
	return r;
}

void config_free(struct config *c)
{
	free(c->path);
	free(c->dir);
	free(c->name);
	free(c->description);
	free(c->handler);
	free(c->runtime);
	for (size_t i = 0; i < c->n_env; i++) {
		free(c->env[i].key);
		free(c->env[i].value);
	}
	free(c->env);
	for (size_t i = 0; i < c->n_model_files; i++)
		free(c->model_files[i]);
	free(c->model_files);
	free(c->warmup.method);
	free(c->warmup.path);
	free(c->warmup.body);
	free(c->auth_type);
	free(c->gpu_type);
	for (size_t i = 0; i < c->n_command; i++)
		free(c->command[i]);
	free(c->command);
	for (size_t i = 0; i < c->n_args; i++)
		free(c->args[i]);
	free(c->args);
	free(c->health.http_get_url);
	free(c->initializer.handler);
	free(c->pre_stop.handler);
	memset(c, 0, sizeof(*c));
}
