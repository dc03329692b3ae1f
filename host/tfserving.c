/*
 * tfserving: TF Serving REST over the tensor hook (tfserving.h).
 */
#include "host/tfserving.h"

#include <errno.h>
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

static int predict(tensor_infer_fn fn, const struct thaw_model *m, const struct thaw_request *req,
		   struct thaw_response *res)
{
	struct tfrest_tensor t;
	enum tfrest_format fmt;
	char err[256];
	int rc;
	if (m->n_inputs != 1 || m->n_outputs != 1 || m->inputs[0].dtype != THAW_FP32 ||
	    m->outputs[0].dtype != THAW_FP32) /* TODO: several inputs, other types */
		return thaw_respond_error(res, 400, "model %s: :predict takes one FP32 input and one "
					  "FP32 output here; use /v2/models/%s/infer",
					  thaw_function_name(), thaw_function_name());
	if (tfrest_parse_predict(req->body, req->body_len, &fmt, &t, err, sizeof(err)) < 0)
		return thaw_respond_error(res, 400, "%s", err);
	struct thaw_tensor in = { .name = m->inputs[0].name, .dtype = THAW_FP32, .ndim = t.ndim,
				  .data = t.data ? (void *)t.data : "", .len = t.n * sizeof(float) };
	memcpy(in.shape, t.shape, sizeof(int64_t) * (size_t)t.ndim);
	struct thaw_outputs *out = malloc(sizeof(*out));
	if (!out) {
		tfrest_tensor_free(&t);
		return thaw_respond_error(res, 500, "out of memory");
	}
	int st = tensor_run(fn, req, &in, 1, NULL, 0, out);
	if (st)
		rc = thaw_respond_error(res, st, "%s", out->msg);
	else if (out->n != 1 || out->t[0].dtype != THAW_FP32)
		rc = thaw_respond_error(res, 500, "the model gave %zu outputs, not one FP32", out->n);
	else {
		struct tfrest_buf b = { 0 };
		tfrest_write_response(&b, fmt, out->t[0].data, out->t[0].ndim, out->t[0].shape);
		rc = respond_buf(res, &b);
	}
	tensor_outputs_fini(out);
	free(out);
	tfrest_tensor_free(&t);
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
