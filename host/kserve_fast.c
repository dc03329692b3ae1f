/*
 * kserve_fast: the fast path of KServe v2 REST infer bodies (kserve.h), in
 * the spirit of predict's tfrest_fast.c: the common body
 *
 *   {"id"?: "...", "inputs": [{"name": "...", "shape": [...],
 *     "datatype": "FP32", "data": <flat or nested numbers>}, ...],
 *    "outputs"?: [{"name": "..."}, ...]}
 *
 * parsed straight into float buffers without a cJSON tree. Anything else
 * (other keys or datatypes, parameters, escapes, a count that does not fit
 * the shape, bad syntax) returns -ENOTSUP and the cJSON path runs, which
 * also words every error. Numbers: tfrest__number (correctly rounded to
 * double, then to float, as the cJSON path does).
 */
#include "host/kserve.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/mem.h"
#include "handlers/predict/tfrest.h"

struct cur {
	const char *p, *end;
};

static void ws(struct cur *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

static int lit(struct cur *c, char ch)
{
	ws(c);
	if (c->p >= c->end || *c->p != ch)
		return -1;
	c->p++;
	return 0;
}

/* A string without escapes or control bytes: a NUL-terminated copy. */
static char *str(struct cur *c)
{
	ws(c);
	if (c->p >= c->end || *c->p != '"')
		return NULL;
	const char *b = ++c->p;
	while (c->p < c->end && *c->p != '"') {
		if (*c->p == '\\' || (unsigned char)*c->p < 0x20)
			return NULL;
		c->p++;
	}
	if (c->p >= c->end)
		return NULL;
	char *s = xmalloc((size_t)(c->p - b) + 1);
	memcpy(s, b, (size_t)(c->p - b));
	s[c->p - b] = '\0';
	c->p++;
	return s;
}

/* Nested lists of numbers, flattened into out as floats. */
static int numbers(struct cur *c, struct buf *out, int depth)
{
	if (depth > THAW_MAX_DIMS || lit(c, '['))
		return -1;
	ws(c);
	if (c->p < c->end && *c->p == ']') {
		c->p++;
		return 0;
	}
	for (;;) {
		ws(c);
		if (c->p < c->end && *c->p == '[') {
			if (numbers(c, out, depth + 1) < 0)
				return -1;
		} else {
			double v;
			if (tfrest__number(&c->p, c->end, &v) < 0 || out->len / 4 >= TENSOR_MAX_ELEMS)
				return -1;
			float f = (float)v;
			buf_append(out, &f, sizeof(f));
		}
		ws(c);
		if (c->p < c->end && *c->p == ',') {
			c->p++;
			continue;
		}
		return lit(c, ']');
	}
}

static int shape(struct cur *c, struct thaw_tensor *t)
{
	if (lit(c, '['))
		return -1;
	ws(c);
	if (c->p < c->end && *c->p == ']') {
		c->p++;
		return 0;
	}
	for (;;) {
		double v;
		ws(c);
		if (t->ndim == THAW_MAX_DIMS || tfrest__number(&c->p, c->end, &v) < 0 || v < 0 ||
		    v > TENSOR_MAX_ELEMS || v != (double)(int64_t)v)
			return -1;
		t->shape[t->ndim++] = (int64_t)v;
		ws(c);
		if (c->p < c->end && *c->p == ',') {
			c->p++;
			continue;
		}
		return lit(c, ']');
	}
}

/* One {"name","shape","datatype","data"} object into c->in[c->n_in]. */
static int input(struct cur *c, struct kserve_req *k)
{
	struct thaw_tensor *t = &k->in[k->n_in];
	struct buf data = { 0 };
	char *name = NULL, *dt = NULL;
	int have_shape = 0, have_data = 0;
	memset(t, 0, sizeof(*t));
	if (k->n_in == TENSOR_MAX_IO || lit(c, '{'))
		return -1;
	for (;;) {
		char *key = str(c);
		int rc = -1;
		if (!key || lit(c, ':'))
			goto bad_key;
		if (!strcmp(key, "name") && !name)
			rc = (name = str(c)) ? 0 : -1;
		else if (!strcmp(key, "datatype") && !dt)
			rc = (dt = str(c)) ? 0 : -1;
		else if (!strcmp(key, "shape") && !have_shape)
			{
			have_shape = 1;
			rc = shape(c, t);
		}
		else if (!strcmp(key, "data") && !have_data)
			{
			have_data = 1;
			rc = numbers(c, &data, 0);
		}
	bad_key:
		free(key);
		if (rc < 0)
			goto fail;
		ws(c);
		if (c->p < c->end && *c->p == ',') {
			c->p++;
			continue;
		}
		if (lit(c, '}'))
			goto fail;
		break;
	}
	int64_t n = tensor_elems(t->ndim, t->shape);
	if (!name || !dt || strcmp(dt, "FP32") || !have_shape || !have_data || n < 0 ||
	    (size_t)n != data.len / 4)
		goto fail; /* the cJSON path says what is wrong */
	free(dt);
	t->name = name;
	t->dtype = THAW_FP32;
	t->data = data.data ? (void *)data.data : "";
	t->len = data.len;
	k->owned[k->n_in] = data.data;
	k->names[k->n_in] = name;
	k->n_in++;
	return 0;
fail:
	free(name);
	free(dt);
	buf_free(&data);
	return -1;
}

static int output(struct cur *c, struct kserve_req *k)
{
	char *key, *name = NULL;
	if (k->n_want == TENSOR_MAX_IO || lit(c, '{') || !(key = str(c)))
		return -1;
	int ok = !strcmp(key, "name") && !lit(c, ':') && (name = str(c)) && !lit(c, '}');
	free(key);
	if (!ok) {
		free(name);
		return -1;
	}
	k->want_owned[k->n_want] = name;
	k->want_binary[k->n_want] = false;
	k->want[k->n_want++] = name;
	return 0;
}

static int list_of(struct cur *c, struct kserve_req *k, int (*item)(struct cur *, struct kserve_req *))
{
	if (lit(c, '['))
		return -1;
	for (;;) {
		if (item(c, k) < 0)
			return -1;
		ws(c);
		if (c->p < c->end && *c->p == ',') {
			c->p++;
			continue;
		}
		return lit(c, ']');
	}
}

int kserve__parse_fast(const char *body, size_t len, struct kserve_req *k)
{
	struct cur c = { body, body + len };
	int have_inputs = 0, have_outputs = 0;
	if (lit(&c, '{'))
		return -ENOTSUP;
	for (;;) {
		char *key = str(&c);
		int rc = -1;
		if (!key || lit(&c, ':'))
			goto next;
		if (!strcmp(key, "id") && !k->id)
			rc = (k->id = str(&c)) ? 0 : -1;
		else if (!strcmp(key, "inputs") && !have_inputs)
			{
			have_inputs = 1;
			rc = list_of(&c, k, input);
		}
		else if (!strcmp(key, "outputs") && !have_outputs)
			{
			have_outputs = 1;
			rc = list_of(&c, k, output);
		}
	next:
		free(key);
		if (rc < 0)
			return -ENOTSUP;
		ws(&c);
		if (c.p < c.end && *c.p == ',') {
			c.p++;
			continue;
		}
		if (lit(&c, '}'))
			return -ENOTSUP;
		break;
	}
	ws(&c);
	return c.p == c.end && have_inputs ? 0 : -ENOTSUP;
}
