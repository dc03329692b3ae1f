/*
 * kserve: KServe v2 REST over the tensor hook (kserve.h).
 */
#include "host/kserve.h"

#include <cjson/cJSON.h>
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/mem.h"
#include "host/tensor.h"

#define HDR_LEN "inference-header-content-length"

enum op { OP_META, OP_READY, OP_INFER };

struct route {
	char name[128];
	char version[32];
	enum op op;
};

/* /v2/models/{m}[/versions/{v}][/ready|/infer]; -ENOENT otherwise. */
static int parse_route(const char *path, struct route *r)
{
	static const char pre[] = "/v2/models/", vs[] = "/versions/";
	const char *p = path + sizeof(pre) - 1, *q;
	memset(r, 0, sizeof(*r));
	if (strncmp(path, pre, sizeof(pre) - 1))
		return -ENOENT;
	q = p + strcspn(p, "/");
	if (q == p || (size_t)(q - p) >= sizeof(r->name))
		return -ENOENT;
	memcpy(r->name, p, (size_t)(q - p));
	if (!strncmp(q, vs, sizeof(vs) - 1)) {
		p = q + sizeof(vs) - 1;
		q = p + strcspn(p, "/");
		if (q == p || (size_t)(q - p) >= sizeof(r->version))
			return -ENOENT;
		memcpy(r->version, p, (size_t)(q - p));
	}
	if (!*q)
		r->op = OP_META;
	else if (!strcmp(q, "/ready"))
		r->op = OP_READY;
	else if (!strcmp(q, "/infer"))
		r->op = OP_INFER;
	else
		return -ENOENT;
	return 0;
}

static int respond_buf(struct thaw_response *res, int status, const char *ctype, struct buf *b)
{
	int rc = thaw_respond(res, status, ctype, b->data ? b->data : "", b->len);
	buf_free(b);
	return rc;
}

static void put_specs(struct buf *b, const struct thaw_tensor_spec *s, size_t n)
{
	buf_append_str(b, "[");
	for (size_t i = 0; i < n; i++) {
		buf_append_str(b, i ? ",{\"name\":" : "{\"name\":");
		buf_append_json_string(b, s[i].name, strlen(s[i].name));
		buf_printf(b, ",\"datatype\":\"%s\",\"shape\":[", thaw_dtype_name(s[i].dtype));
		if (s[i].ndim < 0) /* any shape */
			buf_append_str(b, "-1");
		for (int d = 0; d < s[i].ndim; d++)
			buf_printf(b, "%s%lld", d ? "," : "", (long long)s[i].shape[d]);
		buf_append_str(b, "]}");
	}
	buf_append_str(b, "]");
}

static int metadata(const struct thaw_model *m, const struct route *r, struct thaw_response *res)
{
	struct buf b = { 0 };
	buf_append_str(&b, "{\"name\":");
	buf_append_json_string(&b, r->name, strlen(r->name));
	buf_append_str(&b, ",\"versions\":[");
	buf_append_json_string(&b, m->version, strlen(m->version));
	buf_append_str(&b, "],\"platform\":");
	buf_append_json_string(&b, m->platform, strlen(m->platform));
	buf_append_str(&b, ",\"inputs\":");
	put_specs(&b, m->inputs, m->n_inputs);
	buf_append_str(&b, ",\"outputs\":");
	put_specs(&b, m->outputs, m->n_outputs);
	buf_append_str(&b, "}");
	return respond_buf(res, 200, "application/json", &b);
}

/* --- infer ------------------------------------------------------------------ */

static void ctx_fini(struct kserve_req *c)
{
	for (size_t i = 0; i < TENSOR_MAX_IO; i++) {
		free(c->owned[i]);
		free(c->names[i]);
		free(c->want_owned[i]);
	}
	free(c->id);
	cJSON_Delete(c->root);
	memset(c, 0, sizeof(*c));
}

static bool param_true(const cJSON *obj, const char *key)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, "parameters");
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, key));
}

static int bad(struct kserve_req *c, const char *fmt, const char *name)
{
	snprintf(c->err, sizeof(c->err), fmt, name);
	return -EINVAL;
}

/* The JSON form of InferTensorContents: the list for t's datatype (bytes
 * in base64). */
static int contents_of(struct kserve_req *c, struct thaw_tensor *t, const cJSON *contents)
{
	static const char *const field[] = {
		[THAW_BOOL] = "bool_contents",     [THAW_UINT8] = "uint_contents",
		[THAW_UINT16] = "uint_contents",   [THAW_UINT32] = "uint_contents",
		[THAW_UINT64] = "uint64_contents", [THAW_INT8] = "int_contents",
		[THAW_INT16] = "int_contents",     [THAW_INT32] = "int_contents",
		[THAW_INT64] = "int64_contents",   [THAW_FP32] = "fp32_contents",
		[THAW_FP64] = "fp64_contents",     [THAW_BYTES] = "bytes_contents",
	};
	const char *f = (unsigned)t->dtype < sizeof(field) / sizeof(field[0]) ? field[t->dtype] : NULL;
	const cJSON *list = f ? cJSON_GetObjectItemCaseSensitive(contents, f) : NULL;
	if (!cJSON_IsArray(list))
		return bad(c, "input '%s': contents has no list for its datatype", t->name);
	if (t->dtype != THAW_BYTES) {
		void *buf;
		if (tensor_from_json(list, t->name, t->dtype, t->ndim, t->shape, &buf, &t->len, c->err,
				     sizeof(c->err)) < 0)
			return -EINVAL;
		c->owned[c->n_in] = buf;
		t->data = buf;
		return 0;
	}
	struct buf b = { 0 }, one = { 0 };
	int64_t n = 0, want = tensor_elems(t->ndim, t->shape);
	for (const cJSON *e = list->child; e; e = e->next, n++) {
		buf_reset(&one);
		if (!cJSON_IsString(e) ||
		    tensor_b64_decode(e->valuestring, strlen(e->valuestring), &one) < 0) {
			buf_free(&b);
			buf_free(&one);
			return bad(c, "input '%s': bytes_contents holds a value that is not base64", t->name);
		}
		buf_append_u32(&b, htole32((uint32_t)one.len));
		buf_append(&b, one.data, one.len);
	}
	buf_free(&one);
	if (n != want) {
		buf_free(&b);
		snprintf(c->err, sizeof(c->err), "input '%s': %lld bytes_contents for a shape of %lld",
			 t->name, (long long)n, (long long)want);
		return -EINVAL;
	}
	c->owned[c->n_in] = b.data;
	t->data = b.data ? (void *)b.data : "";
	t->len = b.len;
	return 0;
}

static int parse_input(struct kserve_req *c, const cJSON *j, const char **bin, size_t *bin_left,
		       const cJSON *raw)
{
	const cJSON *contents = cJSON_GetObjectItemCaseSensitive(j, "contents");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name");
	const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "datatype");
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
	const cJSON *params = cJSON_GetObjectItemCaseSensitive(j, "parameters");
	const cJSON *bsize = cJSON_GetObjectItemCaseSensitive(params, "binary_data_size");
	struct thaw_tensor *t = &c->in[c->n_in];

	if (!cJSON_IsString(name))
		return bad(c, "an input has no \"name\"%s", "");
	if (c->n_in == TENSOR_MAX_IO)
		return bad(c, "too many inputs (at most 64)%s", "");
	memset(t, 0, sizeof(*t));
	t->name = name->valuestring;
	if (!cJSON_IsString(dt) ||
	    !(t->dtype = thaw_dtype_parse(dt->valuestring, strlen(dt->valuestring))))
		return bad(c, "input '%s': missing or unknown \"datatype\"", t->name);
	if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > THAW_MAX_DIMS)
		return bad(c, "input '%s': \"shape\" must be a list of at most 8 sizes", t->name);
	for (const cJSON *d = shape->child; d; d = d->next) {
		/* protobuf's JSON writes int64 as strings */
		double v = cJSON_IsString(d) ? strtod(d->valuestring, NULL) : d->valuedouble;
		if ((!cJSON_IsNumber(d) && !cJSON_IsString(d)) || v < 0 || v > TENSOR_MAX_ELEMS ||
		    v != (double)(int64_t)v)
			return bad(c, "input '%s': \"shape\" must hold sizes >= 0", t->name);
		t->shape[t->ndim++] = (int64_t)v;
	}
	if (tensor_elems(t->ndim, t->shape) < 0)
		return bad(c, "input '%s': too many elements", t->name);
	if (bsize) {
		if (!cJSON_IsNumber(bsize) || bsize->valuedouble < 0 ||
		    bsize->valuedouble > (double)*bin_left)
			return bad(c, "input '%s': binary_data_size beyond the body", t->name);
		size_t n = (size_t)bsize->valuedouble, es = thaw_dtype_size(t->dtype);
		t->len = n;
		t->data = *bin;
		if (es > 1 && (uintptr_t)*bin % es) { /* the host needs aligned data */
			c->owned[c->n_in] = xmalloc(n ? n : 1);
			memcpy(c->owned[c->n_in], *bin, n);
			t->data = c->owned[c->n_in];
		}
		*bin += n;
		*bin_left -= n;
	} else if (raw) { /* the JSON form of raw_input_contents: base64 */
		struct buf b = { 0 };
		if (!cJSON_IsString(raw) ||
		    tensor_b64_decode(raw->valuestring, strlen(raw->valuestring), &b) < 0) {
			buf_free(&b);
			return bad(c, "input '%s': raw_input_contents is not base64", t->name);
		}
		c->owned[c->n_in] = b.data;
		t->data = b.data ? (void *)b.data : "";
		t->len = b.len;
	} else if (contents) {
		if (contents_of(c, t, contents) < 0)
			return -EINVAL;
	} else {
		void *buf;
		if (!data)
			return bad(c, "input '%s': no \"data\" and no binary_data_size", t->name);
		if (tensor_from_json(data, t->name, t->dtype, t->ndim, t->shape, &buf, &t->len, c->err,
				     sizeof(c->err)) < 0)
			return -EINVAL;
		c->owned[c->n_in] = buf;
		t->data = buf;
	}
	c->n_in++;
	return 0;
}

static int parse_infer(struct kserve_req *c, const struct thaw_request *req)
{
	const char *hl = thaw_request_header(req, HDR_LEN);
	size_t json_len = req->body_len;
	if (hl) {
		char *end;
		unsigned long long v = strtoull(hl, &end, 10);
		if (*end || end == hl || v > req->body_len)
			return bad(c, "Inference-Header-Content-Length %s beyond the body", hl);
		json_len = (size_t)v;
	}
	const char *bin = req->body + json_len;
	size_t bin_left = req->body_len - json_len;

	c->root = cJSON_ParseWithLength(req->body, json_len);
	if (!cJSON_IsObject(c->root))
		return bad(c, "the body is not a JSON object%s", "");
	const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(c->root, "inputs");
	const cJSON *outputs = cJSON_GetObjectItemCaseSensitive(c->root, "outputs");
	const cJSON *params = cJSON_GetObjectItemCaseSensitive(c->root, "parameters");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(c->root, "id");
	if (params && !cJSON_IsObject(params))
		return bad(c, "\"parameters\" must be an object%s", "");
	if (id && !cJSON_IsString(id))
		return bad(c, "\"id\" must be a string%s", "");
	if (id)
		c->id = xstrdup(id->valuestring);
	if (!cJSON_IsArray(inputs) || !inputs->child)
		return bad(c, "\"inputs\" must be a non-empty list%s", "");
	c->all_binary = param_true(c->root, "binary_data_output");
	const cJSON *raw = cJSON_GetObjectItemCaseSensitive(c->root, "raw_input_contents");
	if (raw && (!cJSON_IsArray(raw) || cJSON_GetArraySize(raw) != cJSON_GetArraySize(inputs)))
		return bad(c, "raw_input_contents must hold one value per input%s", "");
	c->grpc_json = raw || cJSON_GetObjectItemCaseSensitive(c->root, "model_name");
	const cJSON *r = raw ? raw->child : NULL;
	for (const cJSON *j = inputs->child; j; j = j->next, r = r ? r->next : NULL) {
		c->grpc_json |= cJSON_GetObjectItemCaseSensitive(j, "contents") != NULL;
		if (parse_input(c, j, &bin, &bin_left, r) < 0)
			return -EINVAL;
	}
	if (bin_left)
		return bad(c, "binary data past the last input's binary_data_size%s", "");
	if (outputs && !cJSON_IsArray(outputs))
		return bad(c, "\"outputs\" must be a list%s", "");
	for (const cJSON *j = outputs ? outputs->child : NULL; j; j = j->next) {
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name");
		if (!cJSON_IsString(name))
			return bad(c, "an output has no \"name\"%s", "");
		if (c->n_want == TENSOR_MAX_IO)
			return bad(c, "too many outputs%s", "");
		c->want_binary[c->n_want] = c->all_binary || param_true(j, "binary_data");
		c->want[c->n_want++] = name->valuestring;
	}
	return 0;
}

/* {"model_name":..,"model_version":..[,"id":..],"outputs":[ : how both
 * forms of the answer begin. */
static void put_answer_head(struct buf *b, const struct kserve_req *c, const struct route *r,
			    const struct thaw_model *m)
{
	const char *v = m ? m->version : "1";
	buf_append_str(b, "{\"model_name\":");
	buf_append_json_string(b, r->name, strlen(r->name));
	buf_append_str(b, ",\"model_version\":");
	buf_append_json_string(b, v, strlen(v));
	if (c->id) {
		buf_append_str(b, ",\"id\":");
		buf_append_json_string(b, c->id, strlen(c->id));
	}
	buf_append_str(b, ",\"outputs\":[");
}

/* Output i's {"name":..,"datatype":..,"shape":[.., open: the caller closes it. */
static void put_output_head(struct buf *b, const struct thaw_tensor *t, size_t i)
{
	buf_append_str(b, i ? ",{\"name\":" : "{\"name\":");
	buf_append_json_string(b, t->name, strlen(t->name));
	buf_printf(b, ",\"datatype\":\"%s\",\"shape\":[", thaw_dtype_name(t->dtype));
	for (int d = 0; d < t->ndim; d++)
		buf_printf(b, "%s%lld", d ? "," : "", (long long)t->shape[d]);
}

/* The answer in the JSON form of ModelInferResponse: outputs without data,
 * raw_output_contents in base64 (BYTES: of the length-prefixed layout). */
static int write_grpc_json(struct kserve_req *c, const struct route *r, const struct thaw_model *m,
			   struct thaw_outputs *out, struct thaw_response *res)
{
	struct buf b = { 0 };
	put_answer_head(&b, c, r, m);
	for (size_t i = 0; i < out->n; i++) {
		put_output_head(&b, &out->t[i], i);
		buf_append_str(&b, "]}");
	}
	buf_append_str(&b, "],\"raw_output_contents\":[");
	for (size_t i = 0; i < out->n; i++) {
		buf_append_str(&b, i ? ",\"" : "\"");
		tensor_b64_encode(&b, out->t[i].data, out->t[i].len);
		buf_append_str(&b, "\"");
	}
	buf_append_str(&b, "]}");
	return respond_buf(res, 200, "application/json", &b);
}

static int write_answer(struct kserve_req *c, const struct route *r, const struct thaw_model *m,
			struct thaw_outputs *out, struct thaw_response *res)
{
	if (c->grpc_json)
		return write_grpc_json(c, r, m, out, res);
	struct buf b = { 0 };
	bool any_binary = false;
	put_answer_head(&b, c, r, m);
	for (size_t i = 0; i < out->n; i++) {
		const struct thaw_tensor *t = &out->t[i];
		bool binary = c->n_want ? c->want_binary[i] : c->all_binary;
		put_output_head(&b, t, i);
		if (binary) {
			buf_printf(&b, "],\"parameters\":{\"binary_data_size\":%zu}}", t->len);
			any_binary = true;
		} else {
			buf_append_str(&b, "],\"data\":");
			tensor_to_json(&b, t);
			buf_append_str(&b, "}");
		}
	}
	buf_append_str(&b, "]}");
	if (!any_binary)
		return respond_buf(res, 200, "application/json", &b);
	char hl[32];
	snprintf(hl, sizeof(hl), "%zu", b.len);
	for (size_t i = 0; i < out->n; i++)
		if (c->n_want ? c->want_binary[i] : c->all_binary)
			buf_append(&b, out->t[i].data, out->t[i].len);
	thaw_response_header(res, "Inference-Header-Content-Length", hl);
	return respond_buf(res, 200, "application/octet-stream", &b);
}

static int infer(tensor_infer_fn fn, const struct route *r, const struct thaw_model *m,
		 const struct thaw_request *req, struct thaw_response *res)
{
	struct kserve_req *c = xcalloc(1, sizeof(*c));
	struct thaw_outputs *out = xmalloc(sizeof(*out));
	int rc;
	int fast = -ENOTSUP;
	if (!thaw_request_header(req, HDR_LEN)) {
		fast = kserve__parse_fast(req->body, req->body_len, c);
		if (fast < 0)
			ctx_fini(c);
	}
	if (fast < 0 && parse_infer(c, req) < 0) {
		rc = thaw_respond_error(res, 400, "%s", c->err);
		goto fini_ctx;
	}
	int st = tensor_run(fn, req, c->in, c->n_in, c->want, c->n_want, out);
	if (st)
		rc = thaw_respond_error(res, st, "%s", out->msg);
	else
		rc = write_answer(c, r, m, out, res);
	tensor_outputs_fini(out);
fini_ctx:
	ctx_fini(c);
	free(out);
	free(c);
	return rc;
}

int kserve_handle(tensor_infer_fn fn, const struct thaw_request *req, struct thaw_response *res)
{
	const struct thaw_model *m = tensor_model();
	struct route r;
	if (strncmp(req->path, "/v2/", 4))
		return -ENOTSUP;
	if (parse_route(req->path, &r) < 0)
		return thaw_respond_error(res, 404, "no such KServe v2 route: %s %s", req->method,
					  req->path);
	const char *version = m ? m->version : "1";
	if (r.version[0] && strcmp(r.version, version))
		return thaw_respond_error(res, 404, "model '%s' has no version %s (serving %s)",
					  r.name, r.version, version);
	if (r.op == OP_INFER) {
		if (strcmp(req->method, "POST"))
			return thaw_respond_error(res, 405, "infer takes POST");
		return infer(fn, &r, m, req, res);
	}
	if (strcmp(req->method, "GET"))
		return thaw_respond_error(res, 405, "%s takes GET", r.op == OP_READY ? "ready" : "metadata");
	if (r.op == OP_READY) {
		struct buf b = { 0 };
		buf_append_str(&b, "{\"name\":");
		buf_append_json_string(&b, r.name, strlen(r.name));
		buf_append_str(&b, ",\"ready\":true}");
		return respond_buf(res, 200, "application/json", &b);
	}
	if (!m)
		return thaw_respond_error(res, 404, "model '%s' declares no metadata", r.name);
	return metadata(m, &r, res);
}
