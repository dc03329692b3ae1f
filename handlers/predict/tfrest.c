/* tfrest: see tfrest.h. */
#include "handlers/predict/tfrest.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- routes --------------------------------------------------------------- */

static int copy_seg(char *dst, size_t cap, const char *s, size_t n)
{
	if (n == 0 || n >= cap)
		return -ENOENT;
	memcpy(dst, s, n);
	dst[n] = '\0';
	return 0;
}

int tfrest_route_parse(const char *method, const char *path, struct tfrest_route *out)
{
	static const char prefix[] = "/v1/models/";
	int post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;
	const char *p, *e;

	memset(out, 0, sizeof(*out));
	if (post && (strcmp(path, "/") == 0 || strcmp(path, "") == 0)) {
		out->op = TFREST_PREDICT;
		return 0;
	}
	if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
		return -ENOENT;
	p = path + sizeof(prefix) - 1;
	e = p + strcspn(p, "/:");
	if (copy_seg(out->name, sizeof(out->name), p, e - p) < 0)
		return -ENOENT;
	p = e;
	if (strncmp(p, "/versions/", 10) == 0 || strncmp(p, "/labels/", 8) == 0) {
		int ver = p[1] == 'v';
		p += ver ? 10 : 8;
		e = p + strcspn(p, "/:");
		if (ver ? copy_seg(out->version, sizeof(out->version), p, e - p)
			: copy_seg(out->label, sizeof(out->label), p, e - p))
			return -ENOENT;
		p = e;
	}
	if (get && (*p == '\0' || strcmp(p, "/") == 0))
		out->op = TFREST_STATUS;
	else if (get && strcmp(p, "/metadata") == 0)
		out->op = TFREST_METADATA;
	else if (post && strcmp(p, ":predict") == 0)
		out->op = TFREST_PREDICT;
	else if (post && strcmp(p, ":classify") == 0)
		out->op = TFREST_CLASSIFY;
	else if (post && strcmp(p, ":regress") == 0)
		out->op = TFREST_REGRESS;
	else
		return -ENOENT;
	return 0;
}

/* --- request bodies -------------------------------------------------------- */

static int bad(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

void tfrest_tensor_free(struct tfrest_tensor *t)
{
	free(t->data);
	memset(t, 0, sizeof(*t));
}

/* Shape from the first element at each level. */
static int discover_shape(const cJSON *v, struct tfrest_tensor *t, char *err, size_t errlen)
{
	t->ndim = 0;
	t->n = 1;
	while (cJSON_IsArray(v)) {
		int n = cJSON_GetArraySize(v);
		if (t->ndim == TFREST_MAX_DIMS)
			return bad(err, errlen, "tensor nested deeper than %d levels",
				   TFREST_MAX_DIMS);
		if (n == 0)
			return bad(err, errlen, "empty list at depth %d", t->ndim);
		t->shape[t->ndim++] = n;
		if (t->n > TFREST_MAX_ELEMS / (size_t)n)
			return bad(err, errlen, "more than %u values in one request",
				   TFREST_MAX_ELEMS);
		t->n *= (size_t)n;
		v = v->child;
	}
	return 0;
}

static int fill(const cJSON *v, int depth, struct tfrest_tensor *t, size_t *pos, char *err,
		size_t errlen)
{
	if (depth == t->ndim) {
		if (!cJSON_IsNumber(v))
			return bad(err, errlen, "expected a number at depth %d, got %s", depth,
				   cJSON_IsArray(v)    ? "a list (ragged nesting)"
				   : cJSON_IsString(v) ? "a string"
				   : cJSON_IsObject(v) ? "an object"
				   : cJSON_IsBool(v)   ? "a boolean"
						       : "null");
		t->data[(*pos)++] = (float)v->valuedouble;
		return 0;
	}
	if (!cJSON_IsArray(v))
		return bad(err, errlen, "expected a list of %lld at depth %d (ragged tensor)",
			   (long long)t->shape[depth], depth);
	int n = cJSON_GetArraySize(v);
	if (n != t->shape[depth])
		return bad(err, errlen,
			   "ragged tensor: list of %d at depth %d where the first had %lld", n,
			   depth, (long long)t->shape[depth]);
	const cJSON *c;
	cJSON_ArrayForEach(c, v)
	{
		int rc = fill(c, depth + 1, t, pos, err, errlen);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int tensor_from_json(const cJSON *v, struct tfrest_tensor *t, char *err, size_t errlen)
{
	size_t pos = 0;
	int rc = discover_shape(v, t, err, errlen);
	if (rc < 0)
		return rc;
	t->data = malloc((t->n ? t->n : 1) * sizeof(float));
	if (!t->data)
		return bad(err, errlen, "out of memory for %zu values", t->n);
	rc = fill(v, 0, t, &pos, err, errlen);
	if (rc < 0)
		tfrest_tensor_free(t);
	return rc;
}

/* {"x": value} -> value; the model has one input, so any single name. */
static const cJSON *unwrap_named(const cJSON *v, const char *what, char *err, size_t errlen)
{
	if (!cJSON_IsObject(v))
		return v;
	if (cJSON_GetArraySize(v) != 1) {
		bad(err, errlen, "%s: the model has one input; give one named value, not %d",
		    what, cJSON_GetArraySize(v));
		return NULL;
	}
	return v->child;
}

static int parse_instances(const cJSON *inst, struct tfrest_tensor *t, char *err, size_t errlen)
{
	cJSON *list = NULL;
	const cJSON *c;
	int rc;

	if (!cJSON_IsArray(inst))
		return bad(err, errlen, "'instances' must be a list");
	if (cJSON_GetArraySize(inst) == 0)
		return bad(err, errlen, "'instances' is empty");
	if (!cJSON_IsObject(inst->child))
		return tensor_from_json(inst, t, err, errlen);
	/* Named row form: [{"x": v0}, {"x": v1}] -> [v0, v1] by reference. */
	list = cJSON_CreateArray();
	if (!list)
		return bad(err, errlen, "out of memory");
	cJSON_ArrayForEach(c, inst)
	{
		const cJSON *v;
		if (!cJSON_IsObject(c)) {
			rc = bad(err, errlen, "'instances' mixes objects and values");
			goto out;
		}
		v = unwrap_named(c, "instances", err, errlen);
		if (!v || (c != inst->child && strcmp(v->string, inst->child->child->string))) {
			rc = v ? bad(err, errlen, "instances name different inputs") : -EINVAL;
			goto out;
		}
		cJSON_AddItemReferenceToArray(list, (cJSON *)v);
	}
	rc = tensor_from_json(list, t, err, errlen);
out:
	cJSON_Delete(list);
	return rc;
}

int tfrest_parse_predict(const char *body, size_t len, enum tfrest_format *fmt,
			 struct tfrest_tensor *t, char *err, size_t errlen)
{
	if (tfrest__parse_fast(body, len, fmt, t) == 0)
		return 0;
	return tfrest__parse_cjson(body, len, fmt, t, err, errlen);
}

int tfrest__parse_cjson(const char *body, size_t len, enum tfrest_format *fmt,
			struct tfrest_tensor *t, char *err, size_t errlen)
{
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
	int rc;

	memset(t, 0, sizeof(*t));
	if (!root)
		return bad(err, errlen, "JSON Parse error: Invalid value. at offset: %td",
			   end ? end - body : (ptrdiff_t)0);
	while (end && end < body + len && strchr(" \t\r\n", *end) && *end)
		end++;
	if (end && end < body + len) {
		rc = bad(err, errlen,
			 "JSON Parse error: The document root must not be followed by other values. at offset: %td",
			 end - body);
		goto out;
	}
	if (!cJSON_IsObject(root)) {
		rc = bad(err, errlen, "JSON Value not an object");
		goto out;
	}
	const cJSON *sig = cJSON_GetObjectItemCaseSensitive(root, "signature_name");
	if (sig && (!cJSON_IsString(sig) || (strcmp(sig->valuestring, "serving_default") &&
					     sig->valuestring[0]))) {
		rc = bad(err, errlen, "Serving signature name: \"%.64s\" not found in signature def",
			 cJSON_IsString(sig) ? sig->valuestring : "(not a string)");
		goto out;
	}
	const cJSON *inst = cJSON_GetObjectItemCaseSensitive(root, "instances");
	const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(root, "inputs");
	if (inst && inputs) {
		rc = bad(err, errlen,
			 "Both 'instances' and 'inputs' cannot be specified at the same time");
		goto out;
	}
	if (!inst && !inputs) {
		rc = bad(err, errlen, "Missing 'inputs' or 'instances' key");
		goto out;
	}
	if (inst) {
		*fmt = TFREST_ROW;
		rc = parse_instances(inst, t, err, errlen);
	} else {
		*fmt = TFREST_COLUMNAR;
		const cJSON *v = unwrap_named(inputs, "inputs", err, errlen);
		rc = v ? tensor_from_json(v, t, err, errlen) : -EINVAL;
	}
out:
	cJSON_Delete(root);
	return rc;
}

/* --- output ---------------------------------------------------------------- */

void tfrest_buf_put(struct tfrest_buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void tfrest_buf_puts(struct tfrest_buf *b, const char *s)
{
	tfrest_buf_put(b, s, strlen(s));
}

void tfrest_buf_free(struct tfrest_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

int tfrest_format_float(float v, char *out, size_t outlen)
{
	int n, lo = 1, hi = 9; /* 9 significant digits always round-trip a float */
	if (isnan(v))
		return snprintf(out, outlen, "NaN");
	if (isinf(v))
		return snprintf(out, outlen, v < 0 ? "-Infinity" : "Infinity");
	/* Round-tripping is monotone in the precision: binary search for the
	 * shortest (4 tries instead of up to 9). */
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		snprintf(out, outlen, "%.*g", mid, (double)v);
		if (strtof(out, NULL) == v)
			hi = mid;
		else
			lo = mid + 1;
	}
	n = snprintf(out, outlen, "%.*g", lo, (double)v);
	if (!strpbrk(out, ".eEn") && (size_t)n + 2 < outlen) {
		memcpy(out + n, ".0", 3);
		n += 2;
	}
	return n;
}

static void write_level(struct tfrest_buf *b, const float **data, int depth, int ndim,
			const int64_t *shape)
{
	char num[32];
	if (depth == ndim) {
		tfrest_buf_put(b, num, tfrest_format_float(*(*data)++, num, sizeof(num)));
		return;
	}
	tfrest_buf_put(b, "[", 1);
	for (int64_t i = 0; i < shape[depth]; i++) {
		if (i)
			tfrest_buf_put(b, ", ", 2);
		write_level(b, data, depth + 1, ndim, shape);
	}
	tfrest_buf_put(b, "]", 1);
}

void tfrest_write_tensor(struct tfrest_buf *b, const float *data, int ndim,
			 const int64_t *shape)
{
	write_level(b, &data, 0, ndim, shape);
}

void tfrest_write_response(struct tfrest_buf *b, enum tfrest_format fmt,
			   const float *data, int ndim, const int64_t *shape)
{
	tfrest_buf_puts(b, fmt == TFREST_ROW ? "{\"predictions\": " : "{\"outputs\": ");
	tfrest_write_tensor(b, data, ndim, shape);
	tfrest_buf_puts(b, "}");
}
