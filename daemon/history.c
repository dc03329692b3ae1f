#include "daemon/history.h"
#include "common/image.h"
#include "daemon/imagestore.h"
#include "common/mem.h"
#include "daemon/server.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VALUE 80 /* characters of a value shown */

static void value_text(const cJSON *v, char *out, size_t len)
{
	if (!v) {
		snprintf(out, len, "(unset)");
		return;
	}
	char *s = cJSON_PrintUnformatted(v);
	if (strlen(s) > MAX_VALUE)
		snprintf(out, len, "%.*s...", MAX_VALUE, s);
	else
		snprintf(out, len, "%s", s);
	free(s);
}

static void add_line(cJSON *lines, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_line(cJSON *lines, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	cJSON_AddItemToArray(lines, cJSON_CreateString(line));
}

static void diff_one(cJSON *lines, const char *key, const cJSON *old, const cJSON *new)
{
	char a[MAX_VALUE + 8], b[MAX_VALUE + 8];
	if (old && new &&cJSON_Compare(old, new, true))
		return;
	value_text(old, a, sizeof(a));
	value_text(new, b, sizeof(b));
	add_line(lines, "%s: %s -> %s", key, a, b);
}

/* Keys of new in order, then those only in old; objects one level deeper. */
static void diff(cJSON *lines, const char *prefix, const cJSON *old, const cJSON *new)
{
	const cJSON *e;
	char key[256];
	cJSON_ArrayForEach(e, new)
	{
		const cJSON *o = cJSON_GetObjectItemCaseSensitive(old, e->string);
		snprintf(key, sizeof(key), "%s%s", prefix, e->string);
		if (!*prefix && cJSON_IsObject(e) && cJSON_IsObject(o)) {
			char sub[256];
			snprintf(sub, sizeof(sub), "%s.", e->string);
			diff(lines, sub, o, e);
		} else {
			diff_one(lines, key, o, e);
		}
	}
	cJSON_ArrayForEach(e, old) if (!cJSON_GetObjectItemCaseSensitive(new, e->string))
	{
		snprintf(key, sizeof(key), "%s%s", prefix, e->string);
		diff_one(lines, key, e, NULL);
	}
}

/* "sha256:" and the first 12 hex digits. */
static void short_digest(const char *d, char out[20])
{
	snprintf(out, 20, "%.19s", d);
}

static void diff_source(cJSON *lines, const struct function *from, const struct function *to)
{
	const struct imagestore_image *a = from->image, *b = to->image;
	char x[20], y[20];
	if (!a && !b) {
		if (strcmp(from->cfg.dir, to->cfg.dir))
			add_line(lines, "folder: %s -> %s", from->cfg.dir, to->cfg.dir);
		return;
	}
	if (!a || !b) {
		add_line(lines, "source: %s -> %s", a ? "image" : "folder", b ? "image" : "folder");
		return;
	}
	for (unsigned i = 0; i < b->n_layers || i < a->n_layers; i++) {
		const char *kind = i < b->n_layers ? b->layer_kinds[i] : a->layer_kinds[i];
		char what[32];
		snprintf(what, sizeof(what), "%s layer", *kind ? kind : "a");
		if (i >= a->n_layers || i >= b->n_layers) {
			short_digest(i < a->n_layers ? a->layers[i] : b->layers[i], x);
			add_line(lines, "%s: %s %s", what, i < a->n_layers ? "removed" : "added",
				 x);
		} else if (strcmp(a->layers[i], b->layers[i])) {
			short_digest(a->layers[i], x);
			short_digest(b->layers[i], y);
			add_line(lines, "%s: %s -> %s", what, x, y);
		}
	}
}

char *history_changes(const struct function *from, const struct function *to)
{
	cJSON *lines = cJSON_CreateArray();
	if (from) {
		cJSON *old = image_settings_json(&from->cfg, from->cfg.handler);
		cJSON *new = image_settings_json(&to->cfg, to->cfg.handler);
		diff_source(lines, from, to);
		diff(lines, "", old, new);
		cJSON_Delete(old);
		cJSON_Delete(new);
	}
	char *s = cJSON_PrintUnformatted(lines);
	cJSON_Delete(lines);
	return s;
}
