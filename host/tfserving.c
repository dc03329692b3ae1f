/*
 * tfserving: TF Serving REST over the tensor hook (tfserving.h).
 */
#include "host/tfserving.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/predict/tfrest.h"

static int respond_buf(struct thaw_response *res, struct tfrest_buf *b)
{
	int rc;
	if (b->oom)
		rc = thaw_respond_error(res, 500, "out of memory writing the response");
	else
		rc = thaw_respond(res, 200, "application/json", b->p, b->len);
	tfrest_buf_free(b);
	return rc;
}

static const char *tf_dtype(enum thaw_dtype dt)
{
	switch (dt) {
	case THAW_BOOL: return "DT_BOOL";
	case THAW_UINT8: return "DT_UINT8";
	case THAW_UINT16: return "DT_UINT16";
	case THAW_UINT32: return "DT_UINT32";
	case THAW_UINT64: return "DT_UINT64";
	case THAW_INT8: return "DT_INT8";
	case THAW_INT16: return "DT_INT16";
	case THAW_INT32: return "DT_INT32";
	case THAW_INT64: return "DT_INT64";
	case THAW_FP16: return "DT_HALF";
	case THAW_FP32: return "DT_FLOAT";
	case THAW_FP64: return "DT_DOUBLE";
	case THAW_BYTES: return "DT_STRING";
	default: return "DT_INVALID";
	}
}

/* TF Serving's TensorInfo for s: dims as strings, -1 = any; an unknown rank
 * (ndim -1) is written as predict always did for half_plus_two: [-1]. */
static void put_tensor_info(struct tfrest_buf *b, const struct thaw_tensor_spec *s)
{
	char tmp[320];
	snprintf(tmp, sizeof(tmp), "\"%s\":{\"dtype\":\"%s\",\"tensor_shape\":{\"dim\":[", s->name,
		 tf_dtype(s->dtype));
	tfrest_buf_puts(b, tmp);
	int nd = s->ndim < 0 ? 1 : s->ndim;
	for (int d = 0; d < nd; d++) {
		snprintf(tmp, sizeof(tmp), "%s{\"size\":\"%lld\",\"name\":\"\"}", d ? "," : "",
			 (long long)(s->ndim < 0 ? -1 : s->shape[d]));
		tfrest_buf_puts(b, tmp);
	}
	snprintf(tmp, sizeof(tmp), "],\"unknown_rank\":false},\"name\":\"%s:0\"}", s->name);
	tfrest_buf_puts(b, tmp);
}

static int metadata(const struct thaw_model *m, const struct tfrest_route *r, struct thaw_response *res)
{
	struct tfrest_buf b = { 0 };
	char tmp[512];
	snprintf(tmp, sizeof(tmp),
		 "{\"model_spec\":{\"name\":\"%s\",\"signature_name\":\"\",\"version\":\"%s\"},"
		 "\"metadata\":{\"signature_def\":{\"signature_def\":{\"serving_default\":"
		 "{\"inputs\":{",
		 r->name, m->version);
	tfrest_buf_puts(&b, tmp);
	for (size_t i = 0; i < m->n_inputs; i++) {
		if (i)
			tfrest_buf_puts(&b, ",");
		put_tensor_info(&b, &m->inputs[i]);
	}
	tfrest_buf_puts(&b, "},\"outputs\":{");
	for (size_t i = 0; i < m->n_outputs; i++) {
		if (i)
			tfrest_buf_puts(&b, ",");
		put_tensor_info(&b, &m->outputs[i]);
	}
	tfrest_buf_puts(&b, "},\"method_name\":\"tensorflow/serving/predict\"}}}}}");
	return respond_buf(res, &b);
}

/* --- BYTES: plain strings or {"b64": "..."} in, {"b64"} out where not UTF-8 */

/* {"b64": "..."}: TF Serving's binary value. */
static bool is_b64(const cJSON *v)
{
	return cJSON_IsObject(v) && cJSON_GetArraySize(v) == 1 &&
	       cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "b64"));
}

/* {"NAME": value} (a named input, the model's one) -> value; else v. */
static const cJSON *unwrap(const cJSON *v, const char *name)
{
	const cJSON *x;
	if (cJSON_IsObject(v) && !is_b64(v) && cJSON_GetArraySize(v) == 1 &&
	    (x = cJSON_GetObjectItemCaseSensitive(v, name)))
		return x;
	return v;
}

struct bytes_in {
	const char *name;
	bool row; /* items of the outer list may be {"NAME": value} */
	int ndim;
	int64_t shape[THAW_MAX_DIMS];
	int64_t n;
	struct buf data; /* the BYTES layout: 4-byte length, bytes */
	char *err;
	size_t errlen;
};

static int bytes_leaf(struct bytes_in *b, const cJSON *v)
{
	size_t off = b->data.len;
	uint32_t l;
	if (++b->n > TENSOR_MAX_ELEMS) {
		snprintf(b->err, b->errlen, "input '%s': more than %u elements", b->name, TENSOR_MAX_ELEMS);
		return -EINVAL;
	}
	buf_append_u32(&b->data, 0);
	if (cJSON_IsString(v)) {
		buf_append_str(&b->data, v->valuestring);
	} else {
		const char *s = cJSON_GetObjectItemCaseSensitive(v, "b64")->valuestring;
		if (tensor_b64_decode(s, strlen(s), &b->data) < 0) {
			snprintf(b->err, b->errlen, "input '%s': element %lld: invalid base64 in \"b64\"",
				 b->name, (long long)b->n - 1);
			return -EINVAL;
		}
	}
	l = (uint32_t)(b->data.len - off - 4);
	memcpy(b->data.data + off, &l, 4);
	return 0;
}

/* Walks v at depth d: lists of the shape found along the first items,
 * strings or {"b64"} exactly at depth ndim. */
static int bytes_walk(struct bytes_in *b, const cJSON *v, int d)
{
	if (b->row && d == 1)
		v = unwrap(v, b->name);
	if (d == b->ndim) {
		if (cJSON_IsString(v) || is_b64(v))
			return bytes_leaf(b, v);
		snprintf(b->err, b->errlen, "input '%s': element %lld is not a string or {\"b64\": ...} "
			 "(or the lists are ragged)", b->name, (long long)b->n);
		return -EINVAL;
	}
	if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != b->shape[d]) {
		snprintf(b->err, b->errlen, "input '%s': ragged lists at depth %d (expected %lld items)",
			 b->name, d, (long long)b->shape[d]);
		return -EINVAL;
	}
	for (const cJSON *c = v->child; c; c = c->next)
		if (bytes_walk(b, c, d + 1) < 0)
			return -EINVAL;
	return 0;
}

/* Parses a :predict body for a model whose one input is BYTES into in
 * (data in b->data, caller frees). 0, or -EINVAL with a message. */
static int parse_bytes(const struct thaw_request *req, struct bytes_in *b, enum tfrest_format *fmt)
{
	cJSON *j = cJSON_ParseWithLength(req->body, req->body_len);
	const cJSON *inst, *cols, *sig, *v;
	int rc = -EINVAL;
	if (!cJSON_IsObject(j)) {
		snprintf(b->err, b->errlen, "the body is not a JSON object");
		goto free_json;
	}
	sig = cJSON_GetObjectItemCaseSensitive(j, "signature_name");
	if (sig && (!cJSON_IsString(sig) ||
		    (*sig->valuestring && strcmp(sig->valuestring, "serving_default")))) {
		snprintf(b->err, b->errlen, "Serving signature name: \"%s\" not found in signature def",
			 cJSON_IsString(sig) ? sig->valuestring : "?");
		goto free_json;
	}
	inst = cJSON_GetObjectItemCaseSensitive(j, "instances");
	cols = cJSON_GetObjectItemCaseSensitive(j, "inputs");
	if (!inst == !cols) {
		snprintf(b->err, b->errlen, "Missing 'inputs' or 'instances' key, or both given");
		goto free_json;
	}
	*fmt = inst ? TFREST_ROW : TFREST_COLUMNAR;
	b->row = inst != NULL;
	v = inst ? inst : unwrap(cols, b->name);
	if (b->row && !cJSON_IsArray(v)) {
		snprintf(b->err, b->errlen, "'instances' must be a list");
		goto free_json;
	}
	for (const cJSON *x = v; cJSON_IsArray(x);) { /* the shape, along the first items */
		if (b->ndim == THAW_MAX_DIMS) {
			snprintf(b->err, b->errlen, "input '%s': more than %d dims", b->name, THAW_MAX_DIMS);
			goto free_json;
		}
		b->shape[b->ndim++] = cJSON_GetArraySize(x);
		x = x->child;
		if (b->row && b->ndim == 1)
			x = x ? unwrap(x, b->name) : NULL;
	}
	rc = bytes_walk(b, v, 0);
free_json:
	cJSON_Delete(j);
	return rc;
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = s[i], k;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			k = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 3, cp = c & 0x07;
		else
			return false;
		if (n - i <= k)
			return false;
		for (unsigned j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		i += k + 1;
	}
	return true;
}

/* Writes the BYTES elements at *p (< end) as nested lists of shape[d..]:
 * a JSON string when the bytes are UTF-8, else {"b64": "..."}. */
static void bytes_write(struct buf *o, const unsigned char **p, const unsigned char *end, int ndim,
			const int64_t *shape, int d)
{
	if (d == ndim) {
		uint32_t l = 0;
		if (end - *p >= 4)
			memcpy(&l, *p, 4), *p += 4;
		if ((size_t)(end - *p) < l)
			l = (uint32_t)(end - *p);
		if (utf8_valid(*p, l)) {
			buf_append_json_string(o, (const char *)*p, l);
		} else {
			buf_append_str(o, "{\"b64\": \"");
			tensor_b64_encode(o, *p, l);
			buf_append_str(o, "\"}");
		}
		*p += l;
		return;
	}
	buf_append_str(o, "[");
	for (int64_t i = 0; i < shape[d]; i++) {
		if (i)
			buf_append_str(o, ", ");
		bytes_write(o, p, end, ndim, shape, d + 1);
	}
	buf_append_str(o, "]");
}

static int respond_bytes(struct thaw_response *res, enum tfrest_format fmt, const struct thaw_tensor *t)
{
	struct buf o = { 0 };
	const unsigned char *p = t->data;
	buf_append_str(&o, fmt == TFREST_ROW ? "{\"predictions\": " : "{\"outputs\": ");
	bytes_write(&o, &p, p + t->len, t->ndim, t->shape, 0);
	buf_append_str(&o, "}");
	int rc = thaw_respond(res, 200, "application/json", o.data, o.len);
	buf_free(&o);
	return rc;
}

/* One input, FP32 (predict's parser, fast path first) or BYTES (strings and
 * {"b64"}); one output, FP32 or BYTES. */
static int predict(tensor_infer_fn fn, const struct thaw_model *m, const struct thaw_request *req,
		   struct thaw_response *res)
{
	struct tfrest_tensor t = { 0 };
	struct bytes_in b = { 0 };
	enum tfrest_format fmt;
	char err[256];
	int rc;
	if (m->n_inputs != 1 || m->n_outputs != 1 ||
	    (m->inputs[0].dtype != THAW_FP32 && m->inputs[0].dtype != THAW_BYTES) ||
	    (m->outputs[0].dtype != THAW_FP32 && m->outputs[0].dtype != THAW_BYTES))
		/* TODO: several inputs, other types */
		return thaw_respond_error(res, 400, "model %s: :predict takes one FP32 or BYTES input and "
					  "one FP32 or BYTES output here; use /v2/models/%s/infer",
					  thaw_function_name(), thaw_function_name());
	struct thaw_tensor in = { .name = m->inputs[0].name, .dtype = m->inputs[0].dtype };
	if (in.dtype == THAW_BYTES) {
		b.name = in.name;
		b.err = err;
		b.errlen = sizeof(err);
		if (parse_bytes(req, &b, &fmt) < 0) {
			buf_free(&b.data);
			return thaw_respond_error(res, 400, "%s", err);
		}
		in.ndim = b.ndim;
		memcpy(in.shape, b.shape, sizeof(b.shape));
		in.data = b.data.data ? b.data.data : "";
		in.len = b.data.len;
	} else {
		if (tfrest_parse_predict(req->body, req->body_len, &fmt, &t, err, sizeof(err)) < 0)
			return thaw_respond_error(res, 400, "%s", err);
		in.ndim = t.ndim;
		in.data = t.data ? (void *)t.data : "";
		in.len = t.n * sizeof(float);
		memcpy(in.shape, t.shape, sizeof(int64_t) * (size_t)t.ndim);
	}
	struct thaw_outputs *out = malloc(sizeof(*out));
	if (!out) {
		rc = thaw_respond_error(res, 500, "out of memory");
		goto free_in;
	}
	int st = tensor_run(fn, req, &in, 1, NULL, 0, out);
	if (st)
		rc = thaw_respond_error(res, st, "%s", out->msg);
	else if (out->n != 1 || out->t[0].dtype != m->outputs[0].dtype)
		rc = thaw_respond_error(res, 500, "the model gave %zu outputs, not one %s", out->n,
					thaw_dtype_name(m->outputs[0].dtype));
	else if (out->t[0].dtype == THAW_BYTES)
		rc = respond_bytes(res, fmt, &out->t[0]);
	else {
		struct tfrest_buf ob = { 0 };
		tfrest_write_response(&ob, fmt, out->t[0].data, out->t[0].ndim, out->t[0].shape);
		rc = respond_buf(res, &ob);
	}
	tensor_outputs_fini(out);
	free(out);
free_in:
	tfrest_tensor_free(&t);
	buf_free(&b.data);
	return rc;
}

int tfserving_handle(tensor_infer_fn fn, const struct thaw_request *req, struct thaw_response *res)
{
	const struct thaw_model *m = tensor_model();
	struct tfrest_route r;
	if (strncmp(req->path, "/v1/models/", 11) || !m)
		return -ENOTSUP;
	if (tfrest_route_parse(req->method, req->path, &r) < 0)
		return thaw_respond_error(res, 404, "Malformed request: %s %s", req->method, req->path);
	if (r.version[0] && strcmp(r.version, m->version) != 0)
		return thaw_respond_error(res, 404, "Servable not found for request: Specific(%s, %s)",
					  r.name, r.version);
	if (r.label[0])
		return thaw_respond_error(res, 404, "Unrecognized servable version label: %s", r.label);
	switch (r.op) {
	case TFREST_STATUS: {
		char body[256];
		int n = snprintf(body, sizeof(body),
				 "{\"model_version_status\":[{\"version\":\"%s\",\"state\":\"AVAILABLE\","
				 "\"status\":{\"error_code\":\"OK\",\"error_message\":\"\"}}]}",
				 m->version);
		return thaw_respond(res, 200, "application/json", body, (size_t)n);
	}
	case TFREST_METADATA:
		return metadata(m, &r, res);
	case TFREST_PREDICT:
		return predict(fn, m, req, res);
	case TFREST_CLASSIFY:
	case TFREST_REGRESS:
		return thaw_respond_error(res, 400, "%s is not supported by model %s (%s); use :predict",
					  r.op == TFREST_CLASSIFY ? "classify" : "regress", r.name,
					  m->platform);
	}
	return thaw_respond_error(res, 404, "Malformed request");
}
