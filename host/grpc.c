/*
 * grpc: KServe and TF Serving gRPC messages <-> tensors (grpc.h).
 */
#include "host/grpc.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_service.pb-c.h"
#include "common/mem.h"
#include "tensorflow/core/protobuf/meta_graph.pb-c.h"
#include "tensorflow_serving/apis/predict.pb-c.h"

/* gRPC status codes */
enum { G_OK = 0, G_INVALID_ARGUMENT = 3, G_DEADLINE_EXCEEDED = 4, G_NOT_FOUND = 5,
       G_RESOURCE_EXHAUSTED = 8, G_UNIMPLEMENTED = 12, G_INTERNAL = 13, G_UNAVAILABLE = 14 };

static int code_of(int http)
{
	switch (http) {
	case 400: return G_INVALID_ARGUMENT;
	case 404: return G_NOT_FOUND;
	case 413: return G_RESOURCE_EXHAUSTED;
	case 429: case 503: return G_UNAVAILABLE;
	case 504: return G_DEADLINE_EXCEEDED;
	}
	return G_INTERNAL;
}

static int fail(struct thaw_response *res, int http, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct thaw_response *res, int http, const char *fmt, ...)
{
	char msg[512], code[16];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++) /* a header value: no control bytes */
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	snprintf(code, sizeof(code), "%d", code_of(http));
	thaw_response_status(res, http);
	thaw_response_header(res, "grpc-status", code);
	thaw_response_header(res, "grpc-message", msg);
	return 0;
}

static int answer(struct thaw_response *res, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *b = xmalloc(n ? n : 1);
	protobuf_c_message_pack(m, b);
	int rc = thaw_respond(res, 200, "application/grpc", b, n);
	free(b);
	return rc;
}

/* --- repeated values -> one buffer ---------------------------------------------- */

/* Packs n values of src_size bytes each (signed when sign) into dst_size
 * bytes each; *buf malloc'd. */
static void *narrow(const void *src, size_t n, size_t src_size, size_t dst_size, int sign)
{
	unsigned char *out = xmalloc(n * dst_size + 1);
	const unsigned char *s = src;
	for (size_t i = 0; i < n; i++) {
		uint64_t u = 0;
		memcpy(&u, s + i * src_size, src_size);
		if (sign && src_size == 4)
			u = (uint64_t)(int64_t)(int32_t)u;
		for (size_t k = 0; k < dst_size; k++)
			out[i * dst_size + k] = (unsigned char)(u >> (8 * k));
	}
	return out;
}

static void *pack_bytes(const ProtobufCBinaryData *v, size_t n, size_t *len)
{
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += 4 + v[i].len;
	unsigned char *out = xmalloc(total + 1), *p = out;
	for (size_t i = 0; i < n; i++) {
		uint32_t l = htole32((uint32_t)v[i].len);
		memcpy(p, &l, 4);
		memcpy(p + 4, v[i].data, v[i].len);
		p += 4 + v[i].len;
	}
	*len = total;
	return out;
}

/* Views of the repeated fields a tensor may come in, by datatype. */
struct values {
	size_t n_b; const protobuf_c_boolean *b;
	size_t n_i32; const int32_t *i32;
	size_t n_i64; const int64_t *i64;
	size_t n_u32; const uint32_t *u32;
	size_t n_u64; const uint64_t *u64;
	size_t n_f32; const float *f32;
	size_t n_f64; const double *f64;
	size_t n_s; const ProtobufCBinaryData *s;
};

/* Fills t->data/len from v for t->dtype; *owned gets what was allocated
 * (NULL when t points into the message). Returns 0 or -EINVAL with err. */
static int from_values(struct thaw_tensor *t, const struct values *v, void **owned, char *err,
		       size_t errlen)
{
	size_t n = 0, es = thaw_dtype_size(t->dtype);
	*owned = NULL;
	switch (t->dtype) {
	case THAW_BOOL:
		n = v->n_b;
		*owned = narrow(v->b, n, sizeof(*v->b), 1, 0);
		break;
	case THAW_INT8: case THAW_INT16: case THAW_INT32:
		n = v->n_i32;
		if (t->dtype == THAW_INT32)
			t->data = v->i32;
		else
			*owned = narrow(v->i32, n, 4, es, 1);
		break;
	case THAW_UINT8: case THAW_UINT16: case THAW_UINT32: case THAW_FP16:
		n = t->dtype == THAW_FP16 ? v->n_i32 : v->n_u32;
		if (t->dtype == THAW_UINT32)
			t->data = v->u32;
		else
			*owned = narrow(t->dtype == THAW_FP16 ? (const void *)v->i32 : v->u32, n, 4, es, 0);
		break;
	case THAW_INT64: n = v->n_i64; t->data = v->i64; break;
	case THAW_UINT64: n = v->n_u64; t->data = v->u64; break;
	case THAW_FP32: n = v->n_f32; t->data = v->f32; break;
	case THAW_FP64: n = v->n_f64; t->data = v->f64; break;
	case THAW_BYTES:
		n = v->n_s;
		*owned = pack_bytes(v->s, n, &t->len);
		break;
	default:
		snprintf(err, errlen, "input '%s': unsupported datatype", t->name);
		return -EINVAL;
	}
	if (*owned)
		t->data = *owned;
	if (t->dtype != THAW_BYTES)
		t->len = n * es;
	int64_t want = tensor_elems(t->ndim, t->shape);
	if (want < 0 || (size_t)want != n) {
		snprintf(err, errlen, "input '%s': %zu values of %s for a shape of %lld elements",
			 t->name, n, thaw_dtype_name(t->dtype), (long long)want);
		return -EINVAL;
	}
	if (!t->data)
		t->data = "";
	return 0;
}

static int set_shape(struct thaw_tensor *t, const int64_t *dims, size_t n, char *err, size_t errlen)
{
	if (n > THAW_MAX_DIMS) {
		snprintf(err, errlen, "input '%s': more than %d dims", t->name, THAW_MAX_DIMS);
		return -EINVAL;
	}
	t->ndim = (int)n;
	for (size_t i = 0; i < n; i++)
		t->shape[i] = dims[i];
	if (tensor_elems(t->ndim, t->shape) < 0) {
		snprintf(err, errlen, "input '%s': bad shape", t->name);
		return -EINVAL;
	}
	return 0;
}

struct inputs {
	struct thaw_tensor t[TENSOR_MAX_IO];
	void *owned[TENSOR_MAX_IO];
	size_t n;
	char err[512];
};

static void inputs_fini(struct inputs *in)
{
	for (size_t i = 0; i < in->n; i++)
		free(in->owned[i]);
}

/* --- KServe ------------------------------------------------------------------------ */

static int model_infer(tensor_infer_fn fn, const struct thaw_request *req, const Inference__ModelInferRequest *m,
		       struct thaw_response *res)
{
	const struct thaw_model *model = tensor_model();
	struct inputs *in = xcalloc(1, sizeof(*in));
	struct thaw_outputs *out = xmalloc(sizeof(*out));
	const char *want[TENSOR_MAX_IO];
	int rc = 0;

	if (m->n_inputs > TENSOR_MAX_IO || m->n_outputs > TENSOR_MAX_IO) {
		rc = fail(res, 400, "too many inputs or outputs (at most %d)", TENSOR_MAX_IO);
		goto free_in;
	}
	if (m->n_raw_input_contents && m->n_raw_input_contents != m->n_inputs) {
		rc = fail(res, 400, "%zu raw_input_contents for %zu inputs", m->n_raw_input_contents,
			  m->n_inputs);
		goto free_in;
	}
	for (size_t i = 0; i < m->n_inputs; i++, in->n++) {
		const Inference__ModelInferRequest__InferInputTensor *j = m->inputs[i];
		struct thaw_tensor *t = &in->t[i];
		t->name = j->name;
		t->dtype = thaw_dtype_parse(j->datatype, strlen(j->datatype));
		if (!t->dtype) {
			rc = fail(res, 400, "input '%s': unknown datatype '%s'", t->name, j->datatype);
			goto free_in;
		}
		if (set_shape(t, j->shape, j->n_shape, in->err, sizeof(in->err)) < 0)
			goto bad_input;
		if (m->n_raw_input_contents) { /* as it is: protobuf-c malloc'd it, aligned */
			t->data = m->raw_input_contents[i].data ? (void *)m->raw_input_contents[i].data : "";
			t->len = m->raw_input_contents[i].len;
			continue;
		}
		const Inference__InferTensorContents *c = j->contents;
		if (!c) {
			rc = fail(res, 400, "input '%s': no contents and no raw_input_contents", t->name);
			goto free_in;
		}
		struct values v = { c->n_bool_contents, c->bool_contents, c->n_int_contents, c->int_contents,
				    c->n_int64_contents, c->int64_contents, c->n_uint_contents, c->uint_contents,
				    c->n_uint64_contents, c->uint64_contents, c->n_fp32_contents, c->fp32_contents,
				    c->n_fp64_contents, c->fp64_contents, c->n_bytes_contents, c->bytes_contents };
		if (from_values(t, &v, &in->owned[i], in->err, sizeof(in->err)) < 0) {
			in->n++;
			goto bad_input;
		}
	}
	for (size_t i = 0; i < m->n_outputs; i++)
		want[i] = m->outputs[i]->name;
	int st = tensor_run(fn, req, in->t, in->n, want, m->n_outputs, out);
	if (st) {
		rc = fail(res, st, "%s", out->msg);
		goto free_in;
	}
	Inference__ModelInferResponse r = INFERENCE__MODEL_INFER_RESPONSE__INIT;
	Inference__ModelInferResponse__InferOutputTensor ot[TENSOR_MAX_IO], *otp[TENSOR_MAX_IO];
	ProtobufCBinaryData raw[TENSOR_MAX_IO];
	r.model_name = m->model_name;
	r.model_version = (char *)(model ? model->version : "1");
	r.id = m->id;
	r.n_outputs = r.n_raw_output_contents = out->n;
	r.outputs = otp;
	r.raw_output_contents = raw;
	for (size_t i = 0; i < out->n; i++) {
		inference__model_infer_response__infer_output_tensor__init(&ot[i]);
		otp[i] = &ot[i];
		ot[i].name = (char *)out->t[i].name;
		ot[i].datatype = (char *)thaw_dtype_name(out->t[i].dtype);
		ot[i].n_shape = (size_t)out->t[i].ndim;
		ot[i].shape = (int64_t *)out->t[i].shape;
		raw[i].data = (uint8_t *)out->t[i].data;
		raw[i].len = out->t[i].len;
	}
	rc = answer(res, &r.base);
	tensor_outputs_fini(out);
	goto free_in;
bad_input:
	rc = fail(res, 400, "%s", in->err);
free_in:
	inputs_fini(in);
	free(in);
	free(out);
	return rc;
}

static int model_metadata(const Inference__ModelMetadataRequest *m, struct thaw_response *res)
{
	const struct thaw_model *model = tensor_model();
	if (!model)
		return fail(res, 404, "model '%s' declares no metadata", m->name);
	if (*m->version && strcmp(m->version, model->version))
		return fail(res, 404, "model '%s' has no version %s", m->name, m->version);
	Inference__ModelMetadataResponse r = INFERENCE__MODEL_METADATA_RESPONSE__INIT;
	Inference__ModelMetadataResponse__TensorMetadata tm[2 * TENSOR_MAX_IO], *ip[TENSOR_MAX_IO],
		*op[TENSOR_MAX_IO];
	char *version = (char *)model->version;
	r.name = m->name;
	r.versions = &version;
	r.n_versions = 1;
	r.platform = (char *)model->platform;
	r.inputs = ip;
	r.outputs = op;
	r.n_inputs = model->n_inputs;
	r.n_outputs = model->n_outputs;
	for (size_t i = 0; i < model->n_inputs + model->n_outputs; i++) {
		int is_in = i < model->n_inputs;
		const struct thaw_tensor_spec *s = is_in ? &model->inputs[i]
							 : &model->outputs[i - model->n_inputs];
		inference__model_metadata_response__tensor_metadata__init(&tm[i]);
		tm[i].name = (char *)s->name;
		tm[i].datatype = (char *)thaw_dtype_name(s->dtype);
		static const int64_t any = -1;
		tm[i].n_shape = s->ndim < 0 ? 1 : (size_t)s->ndim; /* any shape: [-1] */
		tm[i].shape = s->ndim < 0 ? (int64_t *)&any : (int64_t *)s->shape;
		if (is_in)
			ip[i] = &tm[i];
		else
			op[i - model->n_inputs] = &tm[i];
	}
	return answer(res, &r.base);
}

/* --- TF Serving ------------------------------------------------------------------------ */

static const enum thaw_dtype tf_types[] = {
	[TENSORFLOW__DATA_TYPE__DT_FLOAT] = THAW_FP32,  [TENSORFLOW__DATA_TYPE__DT_DOUBLE] = THAW_FP64,
	[TENSORFLOW__DATA_TYPE__DT_INT32] = THAW_INT32, [TENSORFLOW__DATA_TYPE__DT_UINT8] = THAW_UINT8,
	[TENSORFLOW__DATA_TYPE__DT_INT16] = THAW_INT16, [TENSORFLOW__DATA_TYPE__DT_INT8] = THAW_INT8,
	[TENSORFLOW__DATA_TYPE__DT_STRING] = THAW_BYTES, [TENSORFLOW__DATA_TYPE__DT_INT64] = THAW_INT64,
	[TENSORFLOW__DATA_TYPE__DT_BOOL] = THAW_BOOL,   [TENSORFLOW__DATA_TYPE__DT_UINT16] = THAW_UINT16,
	[TENSORFLOW__DATA_TYPE__DT_HALF] = THAW_FP16,   [TENSORFLOW__DATA_TYPE__DT_UINT32] = THAW_UINT32,
	[TENSORFLOW__DATA_TYPE__DT_UINT64] = THAW_UINT64,
};

static Tensorflow__DataType tf_type_of(enum thaw_dtype dt)
{
	for (size_t i = 0; i < sizeof(tf_types) / sizeof(tf_types[0]); i++)
		if (tf_types[i] == dt)
			return (Tensorflow__DataType)i;
	return TENSORFLOW__DATA_TYPE__DT_INVALID;
}

static int tf_input(struct thaw_tensor *t, const Tensorflow__TensorProto *p, void **owned, char *err,
		    size_t errlen)
{
	int64_t dims[THAW_MAX_DIMS];
	const Tensorflow__TensorShapeProto *sh = p->tensor_shape;
	*owned = NULL;
	t->dtype = (unsigned)p->dtype < sizeof(tf_types) / sizeof(tf_types[0]) ? tf_types[p->dtype] : 0;
	if (!t->dtype) {
		snprintf(err, errlen, "input '%s': unsupported dtype %d", t->name, (int)p->dtype);
		return -EINVAL;
	}
	if (!sh || sh->unknown_rank || sh->n_dim > THAW_MAX_DIMS) {
		snprintf(err, errlen, "input '%s': needs a known tensor_shape of at most %d dims", t->name,
			 THAW_MAX_DIMS);
		return -EINVAL;
	}
	for (size_t i = 0; i < sh->n_dim; i++)
		dims[i] = sh->dim[i]->size;
	if (set_shape(t, dims, sh->n_dim, err, errlen) < 0)
		return -EINVAL;
	if (p->tensor_content.len && t->dtype != THAW_BYTES) { /* as it is */
		t->data = p->tensor_content.data;
		t->len = p->tensor_content.len;
		return 0;
	}
	struct values v = { p->n_bool_val, p->bool_val, 0, NULL, p->n_int64_val, p->int64_val,
			    p->n_uint32_val, p->uint32_val, p->n_uint64_val, p->uint64_val,
			    p->n_float_val, p->float_val, p->n_double_val, p->double_val,
			    p->n_string_val, p->string_val };
	if (t->dtype == THAW_FP16) {
		v.n_i32 = p->n_half_val;
		v.i32 = p->half_val;
	} else if (t->dtype == THAW_UINT8 || t->dtype == THAW_UINT16) {
		v.n_u32 = p->n_int_val; /* TF keeps these in int_val */
		v.u32 = (const uint32_t *)p->int_val;
	} else {
		v.n_i32 = p->n_int_val;
		v.i32 = p->int_val;
	}
	return from_values(t, &v, owned, err, errlen);
}

/* The elements of a BYTES tensor (4-byte little-endian length, bytes) as
 * views into its data, for string_val: a new array (caller frees) of *n;
 * the walk stops at a length that runs past the data (tensor_run checked
 * the layout of inputs; an output is the handler's). */
static ProtobufCBinaryData *string_views(const struct thaw_tensor *t, size_t *n)
{
	const uint8_t *p = t->data, *end = p + t->len;
	size_t k = 0, cap = 0;
	ProtobufCBinaryData *v = NULL;
	while (end - p >= 4) {
		uint32_t l = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
			     (uint32_t)p[3] << 24;
		if ((size_t)(end - p - 4) < l)
			break;
		if (k == cap) {
			cap = cap ? 2 * cap : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[k].data = (uint8_t *)p + 4;
		v[k++].len = l;
		p += 4 + (size_t)l;
	}
	*n = k;
	return v;
}

static int predict(tensor_infer_fn fn, const struct thaw_request *req,
		   const Tensorflow__Serving__PredictRequest *m, struct thaw_response *res)
{
	const Tensorflow__Serving__ModelSpec *spec = m->model_spec;
	struct inputs *in = xcalloc(1, sizeof(*in));
	struct thaw_outputs *out = xmalloc(sizeof(*out));
	int rc;
	if (spec && *spec->signature_name && strcmp(spec->signature_name, "serving_default")) {
		rc = fail(res, 400, "Serving signature key \"%s\" not found.", spec->signature_name);
		goto free_in;
	}
	if (m->n_inputs > TENSOR_MAX_IO || m->n_output_filter > TENSOR_MAX_IO) {
		rc = fail(res, 400, "too many inputs or outputs (at most %d)", TENSOR_MAX_IO);
		goto free_in;
	}
	for (size_t i = 0; i < m->n_inputs; i++, in->n++) {
		in->t[i].name = m->inputs[i]->key;
		if (!m->inputs[i]->value ||
		    tf_input(&in->t[i], m->inputs[i]->value, &in->owned[i], in->err, sizeof(in->err)) < 0) {
			in->n++;
			rc = fail(res, 400, "%s", in->err[0] ? in->err : "an input has no value");
			goto free_in;
		}
	}
	int st = tensor_run(fn, req, in->t, in->n, (const char *const *)m->output_filter,
			    m->n_output_filter, out);
	if (st) {
		rc = fail(res, st, "%s", out->msg);
		goto free_in;
	}
	Tensorflow__Serving__PredictResponse r = TENSORFLOW__SERVING__PREDICT_RESPONSE__INIT;
	Tensorflow__Serving__ModelSpec ms = TENSORFLOW__SERVING__MODEL_SPEC__INIT;
	Google__Protobuf__Int64Value ver = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
	Tensorflow__Serving__PredictResponse__OutputsEntry ent[TENSOR_MAX_IO], *entp[TENSOR_MAX_IO];
	Tensorflow__TensorProto tp[TENSOR_MAX_IO];
	Tensorflow__TensorShapeProto shp[TENSOR_MAX_IO];
	Tensorflow__TensorShapeProto__Dim dim[TENSOR_MAX_IO][THAW_MAX_DIMS], *dimp[TENSOR_MAX_IO][THAW_MAX_DIMS];
	ProtobufCBinaryData *strings[TENSOR_MAX_IO] = { 0 };
	const struct thaw_model *model = tensor_model();
	ms.name = spec ? spec->name : (char *)"";
	ms.signature_name = (char *)"serving_default";
	ver.value = model ? strtoll(model->version, NULL, 10) : 1;
	ms.version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
	ms.version = &ver;
	r.model_spec = &ms;
	r.n_outputs = out->n;
	r.outputs = entp;
	for (size_t i = 0; i < out->n; i++) {
		const struct thaw_tensor *t = &out->t[i];
		tensorflow__serving__predict_response__outputs_entry__init(&ent[i]);
		tensorflow__tensor_proto__init(&tp[i]);
		tensorflow__tensor_shape_proto__init(&shp[i]);
		entp[i] = &ent[i];
		ent[i].key = (char *)t->name;
		ent[i].value = &tp[i];
		tp[i].dtype = tf_type_of(t->dtype);
		tp[i].tensor_shape = &shp[i];
		shp[i].n_dim = (size_t)t->ndim;
		shp[i].dim = dimp[i];
		for (int d = 0; d < t->ndim; d++) {
			tensorflow__tensor_shape_proto__dim__init(&dim[i][d]);
			dim[i][d].size = t->shape[d];
			dimp[i][d] = &dim[i][d];
		}
		if (t->dtype == THAW_FP32) { /* what TF Serving's clients read first */
			tp[i].n_float_val = t->len / 4;
			tp[i].float_val = (float *)t->data;
		} else if (t->dtype != THAW_BYTES) {
			tp[i].tensor_content.data = (uint8_t *)t->data;
			tp[i].tensor_content.len = t->len;
		} else { /* BYTES: string_val, as TF Serving answers DT_STRING */
			tp[i].string_val = strings[i] = string_views(t, &tp[i].n_string_val);
		}
	}
	rc = answer(res, &r.base);
	for (size_t i = 0; i < out->n; i++)
		free(strings[i]);
	tensor_outputs_fini(out);
free_in:
	inputs_fini(in);
	free(in);
	free(out);
	return rc;
}

static int model_status(const Tensorflow__Serving__GetModelStatusRequest *m, struct thaw_response *res)
{
	const struct thaw_model *model = tensor_model();
	int64_t v = model ? strtoll(model->version, NULL, 10) : 1;
	const Tensorflow__Serving__ModelSpec *spec = m->model_spec;
	if (spec && spec->version_choice_case == TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION &&
	    spec->version && spec->version->value != v)
		return fail(res, 404, "Servable not found for request: Specific(%s, %lld)", spec->name,
			    (long long)spec->version->value);
	Tensorflow__Serving__GetModelStatusResponse r = TENSORFLOW__SERVING__GET_MODEL_STATUS_RESPONSE__INIT;
	Tensorflow__Serving__ModelVersionStatus st = TENSORFLOW__SERVING__MODEL_VERSION_STATUS__INIT, *stp = &st;
	Tensorflow__Serving__StatusProto ok = TENSORFLOW__SERVING__STATUS_PROTO__INIT;
	st.version = v;
	st.state = TENSORFLOW__SERVING__MODEL_VERSION_STATUS__STATE__AVAILABLE;
	st.status = &ok;
	r.n_model_version_status = 1;
	r.model_version_status = &stp;
	return answer(res, &r.base);
}

/* TF Serving's GetModelMetadata: the "signature_def" field, an Any holding
 * a SignatureDefMap with "serving_default" from the declared model. */
static int tf_model_metadata(const Tensorflow__Serving__GetModelMetadataRequest *m,
			     struct thaw_response *res)
{
	const struct thaw_model *model = tensor_model();
	const Tensorflow__Serving__ModelSpec *spec = m->model_spec;
	if (!model)
		return fail(res, 404, "model %s declares no metadata", spec ? spec->name : "");
	if (m->n_metadata_field != 1 || strcmp(m->metadata_field[0], "signature_def"))
		return fail(res, 400, "Metadata field %s is not supported",
			    m->n_metadata_field ? m->metadata_field[0] : "(none)");
	size_t n = model->n_inputs + model->n_outputs;
	Tensorflow__TensorInfo ti[2 * TENSOR_MAX_IO];
	Tensorflow__TensorShapeProto shp[2 * TENSOR_MAX_IO];
	Tensorflow__TensorShapeProto__Dim dim[2 * TENSOR_MAX_IO][THAW_MAX_DIMS],
		*dimp[2 * TENSOR_MAX_IO][THAW_MAX_DIMS];
	Tensorflow__SignatureDef__InputsEntry ie[TENSOR_MAX_IO], *iep[TENSOR_MAX_IO];
	Tensorflow__SignatureDef__OutputsEntry oe[TENSOR_MAX_IO], *oep[TENSOR_MAX_IO];
	char names[2 * TENSOR_MAX_IO][80];
	for (size_t i = 0; i < n; i++) {
		int in = i < model->n_inputs;
		const struct thaw_tensor_spec *s = in ? &model->inputs[i] : &model->outputs[i - model->n_inputs];
		tensorflow__tensor_info__init(&ti[i]);
		tensorflow__tensor_shape_proto__init(&shp[i]);
		snprintf(names[i], sizeof(names[i]), "%s:0", s->name);
		ti[i].encoding_case = TENSORFLOW__TENSOR_INFO__ENCODING_NAME;
		ti[i].name = names[i];
		ti[i].dtype = tf_type_of(s->dtype);
		ti[i].tensor_shape = &shp[i];
		shp[i].n_dim = s->ndim < 0 ? 1 : (size_t)s->ndim;
		shp[i].dim = dimp[i];
		for (size_t d = 0; d < shp[i].n_dim; d++) {
			tensorflow__tensor_shape_proto__dim__init(&dim[i][d]);
			dim[i][d].size = s->ndim < 0 ? -1 : s->shape[d];
			dimp[i][d] = &dim[i][d];
		}
		if (in) {
			tensorflow__signature_def__inputs_entry__init(&ie[i]);
			ie[i].key = (char *)s->name;
			ie[i].value = &ti[i];
			iep[i] = &ie[i];
		} else {
			size_t k = i - model->n_inputs;
			tensorflow__signature_def__outputs_entry__init(&oe[k]);
			oe[k].key = (char *)s->name;
			oe[k].value = &ti[i];
			oep[k] = &oe[k];
		}
	}
	Tensorflow__SignatureDef sd = TENSORFLOW__SIGNATURE_DEF__INIT;
	sd.n_inputs = model->n_inputs;
	sd.inputs = iep;
	sd.n_outputs = model->n_outputs;
	sd.outputs = oep;
	sd.method_name = (char *)"tensorflow/serving/predict";
	Tensorflow__Serving__SignatureDefMap__SignatureDefEntry se =
		TENSORFLOW__SERVING__SIGNATURE_DEF_MAP__SIGNATURE_DEF_ENTRY__INIT, *sep = &se;
	se.key = (char *)"serving_default";
	se.value = &sd;
	Tensorflow__Serving__SignatureDefMap map = TENSORFLOW__SERVING__SIGNATURE_DEF_MAP__INIT;
	map.n_signature_def = 1;
	map.signature_def = &sep;
	size_t len = tensorflow__serving__signature_def_map__get_packed_size(&map);
	uint8_t *packed = xmalloc(len ? len : 1);
	tensorflow__serving__signature_def_map__pack(&map, packed);
	Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
	any.type_url = (char *)"type.googleapis.com/tensorflow.serving.SignatureDefMap";
	any.value.data = packed;
	any.value.len = len;
	Tensorflow__Serving__GetModelMetadataResponse__MetadataEntry me =
		TENSORFLOW__SERVING__GET_MODEL_METADATA_RESPONSE__METADATA_ENTRY__INIT, *mep = &me;
	me.key = (char *)"signature_def";
	me.value = &any;
	Tensorflow__Serving__ModelSpec ms = TENSORFLOW__SERVING__MODEL_SPEC__INIT;
	Google__Protobuf__Int64Value ver = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
	ms.name = spec ? spec->name : (char *)"";
	ver.value = strtoll(model->version, NULL, 10);
	ms.version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
	ms.version = &ver;
	Tensorflow__Serving__GetModelMetadataResponse r = TENSORFLOW__SERVING__GET_MODEL_METADATA_RESPONSE__INIT;
	r.model_spec = &ms;
	r.n_metadata = 1;
	r.metadata = &mep;
	int rc = answer(res, &r.base);
	free(packed);
	return rc;
}

/* --- dispatch --------------------------------------------------------------------------- */

#define UNPACK(type, desc) \
	((type *)protobuf_c_message_unpack(&desc, NULL, req->body_len, (const uint8_t *)req->body))

int grpc_handle(tensor_infer_fn fn, const struct thaw_request *req, struct thaw_response *res)
{
	const char *ct = thaw_request_header(req, "content-type");
	const char *p = req->path;
	ProtobufCMessage *msg = NULL;
	int rc;
	if (!ct || strncmp(ct, "application/grpc", 16))
		return -ENOTSUP;
	if (!strcmp(p, "/inference.GRPCInferenceService/ModelInfer")) {
		msg = &UNPACK(Inference__ModelInferRequest, inference__model_infer_request__descriptor)->base;
		rc = msg ? model_infer(fn, req, (void *)msg, res) : 1;
	} else if (!strcmp(p, "/inference.GRPCInferenceService/ModelMetadata")) {
		msg = &UNPACK(Inference__ModelMetadataRequest, inference__model_metadata_request__descriptor)->base;
		rc = msg ? model_metadata((void *)msg, res) : 1;
	} else if (!strcmp(p, "/inference.GRPCInferenceService/ModelReady")) {
		Inference__ModelReadyResponse r = INFERENCE__MODEL_READY_RESPONSE__INIT;
		r.ready = 1;
		return answer(res, &r.base);
	} else if (!strcmp(p, "/tensorflow.serving.PredictionService/Predict")) {
		msg = &UNPACK(Tensorflow__Serving__PredictRequest, tensorflow__serving__predict_request__descriptor)->base;
		rc = msg ? predict(fn, req, (void *)msg, res) : 1;
	} else if (!strcmp(p, "/tensorflow.serving.PredictionService/GetModelMetadata")) {
		msg = &UNPACK(Tensorflow__Serving__GetModelMetadataRequest,
			      tensorflow__serving__get_model_metadata_request__descriptor)->base;
		rc = msg ? tf_model_metadata((void *)msg, res) : 1;
	} else if (!strcmp(p, "/tensorflow.serving.ModelService/GetModelStatus")) {
		msg = &UNPACK(Tensorflow__Serving__GetModelStatusRequest,
			      tensorflow__serving__get_model_status_request__descriptor)->base;
		rc = msg ? model_status((void *)msg, res) : 1;
	} else {
		char code[8];
		snprintf(code, sizeof(code), "%d", G_UNIMPLEMENTED);
		thaw_response_status(res, 404);
		thaw_response_header(res, "grpc-status", code);
		thaw_response_header(res, "grpc-message", "method not implemented by thaw");
		return 0;
	}
	if (!msg)
		return fail(res, 400, "the request message does not parse (%zu bytes)", req->body_len);
	protobuf_c_message_free_unpacked(msg, NULL);
	return rc;
}
