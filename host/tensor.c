/*
 * tensor: datatypes, the declared model, the outputs infer() builds, and
 * tensors <-> JSON "data" (tensor.h).
 */
#include "host/tensor.h"
#include "handlers/predict/tfrest.h"

#include <cjson/cJSON.h>
#include <endian.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

#define EXPORT __attribute__((visibility("default")))

/* --- datatypes ------------------------------------------------------------ */

static const struct {
	const char *name;
	size_t size;
} dtypes[] = {
	[THAW_BOOL] = { "BOOL", 1 },     [THAW_UINT8] = { "UINT8", 1 },
	[THAW_UINT16] = { "UINT16", 2 }, [THAW_UINT32] = { "UINT32", 4 },
	[THAW_UINT64] = { "UINT64", 8 }, [THAW_INT8] = { "INT8", 1 },
	[THAW_INT16] = { "INT16", 2 },   [THAW_INT32] = { "INT32", 4 },
	[THAW_INT64] = { "INT64", 8 },   [THAW_FP16] = { "FP16", 2 },
	[THAW_FP32] = { "FP32", 4 },     [THAW_FP64] = { "FP64", 8 },
	[THAW_BYTES] = { "BYTES", 0 },
};
#define N_DTYPES (sizeof(dtypes) / sizeof(dtypes[0]))

EXPORT const char *thaw_dtype_name(enum thaw_dtype dt)
{
	return (unsigned)dt < N_DTYPES && dtypes[dt].name ? dtypes[dt].name : "";
}

EXPORT enum thaw_dtype thaw_dtype_parse(const char *name, size_t len)
{
	for (size_t i = 1; i < N_DTYPES; i++)
		if (strlen(dtypes[i].name) == len && !memcmp(dtypes[i].name, name, len))
			return (enum thaw_dtype)i;
	return THAW_DT_INVALID;
}

EXPORT size_t thaw_dtype_size(enum thaw_dtype dt)
{
	return (unsigned)dt < N_DTYPES ? dtypes[dt].size : 0;
}

int64_t tensor_elems(int ndim, const int64_t *shape)
{
	int64_t n = 1;
	if (ndim < 0 || ndim > THAW_MAX_DIMS)
		return -1;
	for (int i = 0; i < ndim; i++) {
		if (shape[i] < 0 || shape[i] > TENSOR_MAX_ELEMS)
			return -1;
		n *= shape[i];
		if (n > TENSOR_MAX_ELEMS)
			return -1;
	}
	return n;
}

int tensor_check(const struct thaw_tensor *t, char *err, size_t errlen)
{
	int64_t n = tensor_elems(t->ndim, t->shape);
	if (n < 0) {
		snprintf(err, errlen, "input '%s': bad shape (negative, over %d dims or %u elements)",
			 t->name, THAW_MAX_DIMS, TENSOR_MAX_ELEMS);
		return -EINVAL;
	}
	if (t->dtype != THAW_BYTES) {
		size_t want = (size_t)n * thaw_dtype_size(t->dtype);
		if (t->len != want) {
			snprintf(err, errlen, "input '%s': %zu bytes of data for shape of %lld %s (%zu bytes)",
				 t->name, t->len, (long long)n, thaw_dtype_name(t->dtype), want);
			return -EINVAL;
		}
		return 0;
	}
	const unsigned char *p = t->data;
	size_t off = 0;
	for (int64_t i = 0; i < n; i++) {
		uint32_t l;
		if (t->len - off < 4)
			goto short_bytes;
		memcpy(&l, p + off, 4);
		l = le32toh(l);
		off += 4;
		if (t->len - off < l)
			goto short_bytes;
		off += l;
	}
	if (off == t->len)
		return 0;
short_bytes:
	snprintf(err, errlen, "input '%s': BYTES data does not hold exactly %lld length-prefixed elements",
		 t->name, (long long)n);
	return -EINVAL;
}

/* --- the declared model ---------------------------------------------------- */

static struct thaw_model model;
static bool declared;

static void free_specs(const struct thaw_tensor_spec *s, size_t n)
{
	for (size_t i = 0; s && i < n; i++)
		free((char *)s[i].name);
	free((void *)s);
}

static void model_free(struct thaw_model *m)
{
	free_specs(m->inputs, m->n_inputs);
	free_specs(m->outputs, m->n_outputs);
	free((char *)m->name);
	free((char *)m->platform);
	free((char *)m->version);
	memset(m, 0, sizeof(*m));
}

static int copy_specs(const struct thaw_tensor_spec *in, size_t n, const struct thaw_tensor_spec **out)
{
	struct thaw_tensor_spec *s = n ? xcalloc(n, sizeof(*s)) : NULL;
	*out = s;
	for (size_t i = 0; i < n; i++) {
		if (!in[i].name || !*thaw_dtype_name(in[i].dtype) || in[i].ndim < -1 ||
		    in[i].ndim > THAW_MAX_DIMS)
			return -EINVAL;
		s[i] = in[i];
		s[i].name = xstrdup(in[i].name);
	}
	return 0;
}

/* Inputs infer() may go without (thaw_model_input_optional), by index in
 * model.inputs; cleared by every declaration. */
static bool optional[TENSOR_MAX_IO];

/* A second call replaces the first (a handler's init run again, in tests). */
EXPORT int thaw_declare_model(const struct thaw_model *m)
{
	struct thaw_model c = { 0 };
	if (!m || m->n_inputs > TENSOR_MAX_IO || m->n_outputs > TENSOR_MAX_IO ||
	    (m->n_inputs && !m->inputs) || (m->n_outputs && !m->outputs))
		return -EINVAL;
	c.n_inputs = m->n_inputs;
	c.n_outputs = m->n_outputs;
	if (copy_specs(m->inputs, m->n_inputs, &c.inputs) < 0 ||
	    copy_specs(m->outputs, m->n_outputs, &c.outputs) < 0) {
		model_free(&c); /* names past the bad one are NULL: free(NULL) */
		return -EINVAL;
	}
	c.name = m->name ? xstrdup(m->name) : NULL;
	c.platform = xstrdup(m->platform ? m->platform : "thaw_native");
	c.version = xstrdup(m->version ? m->version : "1");
	if (declared)
		model_free(&model);
	model = c;
	memset(optional, 0, sizeof(optional));
	declared = true;
	return 0;
}

EXPORT int thaw_model_input_optional(const char *name)
{
	for (size_t k = 0; declared && name && k < model.n_inputs; k++)
		if (!strcmp(model.inputs[k].name, name)) {
			optional[k] = true;
			return 0;
		}
	return -ENOENT;
}

const struct thaw_model *tensor_model(void)
{
	return declared ? &model : NULL;
}

/* --- outputs ---------------------------------------------------------------- */

void tensor_outputs_init(struct thaw_outputs *o)
{
	memset(o, 0, sizeof(*o));
}

void tensor_outputs_fini(struct thaw_outputs *o)
{
	for (size_t i = 0; i < o->n; i++) {
		free(o->owned[i]);
		free((char *)o->t[i].name);
	}
	tensor_outputs_init(o);
}

EXPORT void *thaw_output_new(struct thaw_outputs *o, const char *name, enum thaw_dtype dtype,
			     int ndim, const int64_t *shape, size_t len)
{
	int64_t n = tensor_elems(ndim, shape);
	if (!o || !name || o->n >= TENSOR_MAX_IO || n < 0 || !*thaw_dtype_name(dtype))
		return NULL;
	if (dtype != THAW_BYTES && len != (size_t)n * thaw_dtype_size(dtype))
		return NULL;
	void *p = NULL;
	if (posix_memalign(&p, 16, len ? len : 16))
		return NULL;
	memset(p, 0, len ? len : 16);
	struct thaw_tensor *t = &o->t[o->n];
	memset(t, 0, sizeof(*t));
	t->name = strdup(name);
	if (!t->name) {
		free(p);
		return NULL;
	}
	t->dtype = dtype;
	t->ndim = ndim;
	memcpy(t->shape, shape, (size_t)ndim * sizeof(*shape));
	t->data = p;
	t->len = len;
	o->owned[o->n++] = p;
	return p;
}

EXPORT int thaw_infer_error(struct thaw_outputs *o, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(o->msg, sizeof(o->msg), fmt, ap);
	va_end(ap);
	o->status = status;
	switch (status) {
	case 400: return -EINVAL;
	case 404: return -ENOENT;
	case 503: return -EAGAIN;
	case 504: return -ETIMEDOUT;
	}
	return -EIO;
}

/* --- JSON data -> buffer ------------------------------------------------------ */

struct fill {
	const char *name;
	enum thaw_dtype dt;
	size_t esize;
	int64_t want, got; /* elements */
	struct buf out;
	char *err;
	size_t errlen;
};

static int put_number(struct fill *f, const cJSON *v)
{
	double d = v->valuedouble;
	unsigned char tmp[8];
	bool integral = d == floor(d) && fabs(d) < 9.3e18;
	switch (f->dt) {
	case THAW_BOOL:
		if (!cJSON_IsBool(v))
			goto bad;
		tmp[0] = cJSON_IsTrue(v);
		break;
	case THAW_FP32: {
		if (!cJSON_IsNumber(v))
			goto bad;
		float x = (float)d;
		memcpy(tmp, &x, 4);
		break;
	}
	case THAW_FP64:
		if (!cJSON_IsNumber(v))
			goto bad;
		memcpy(tmp, &d, 8);
		break;
	case THAW_FP16: {
		/* round to nearest via float; subnormals flushed (TODO) */
		if (!cJSON_IsNumber(v))
			goto bad;
		float x = (float)d;
		uint32_t u;
		memcpy(&u, &x, 4);
		uint16_t h = (uint16_t)((u >> 16) & 0x8000);
		int e = (int)((u >> 23) & 0xff) - 127 + 15;
		if (isnan(x))
			h |= 0x7e00;
		else if (e >= 31)
			h |= 0x7c00;
		else if (e > 0)
			h |= (uint16_t)((e << 10) | ((u >> 13) & 0x3ff));
		memcpy(tmp, &h, 2);
		break;
	}
	default: {
		if (!cJSON_IsNumber(v) || !integral)
			goto bad;
		bool sig = f->dt >= THAW_INT8 && f->dt <= THAW_INT64;
		int bits = (int)f->esize * 8;
		double lo = sig ? -ldexp(1, bits - 1) : 0, hi = sig ? ldexp(1, bits - 1) : ldexp(1, bits);
		if (d < lo || d >= hi)
			goto bad;
		int64_t i = (int64_t)d;
		uint64_t u = (uint64_t)i;
		for (size_t k = 0; k < f->esize; k++)
			tmp[k] = (unsigned char)(u >> (8 * k));
		break;
	}
	}
	buf_append(&f->out, tmp, f->esize);
	return 0;
bad:
	snprintf(f->err, f->errlen, "input '%s': element %lld is not a valid %s", f->name,
		 (long long)f->got, thaw_dtype_name(f->dt));
	return -EINVAL;
}

static int walk(struct fill *f, const cJSON *v, int depth)
{
	if (depth > THAW_MAX_DIMS + 1) {
		snprintf(f->err, f->errlen, "input '%s': data nested too deep", f->name);
		return -EINVAL;
	}
	if (cJSON_IsArray(v)) {
		for (const cJSON *c = v->child; c; c = c->next)
			if (walk(f, c, depth + 1) < 0)
				return -EINVAL;
		return 0;
	}
	if (f->got >= f->want) {
		snprintf(f->err, f->errlen, "input '%s': more data than its shape holds (%lld elements)",
			 f->name, (long long)f->want);
		return -EINVAL;
	}
	if (f->dt == THAW_BYTES) {
		if (!cJSON_IsString(v)) {
			snprintf(f->err, f->errlen, "input '%s': element %lld is not a string (BYTES)",
				 f->name, (long long)f->got);
			return -EINVAL;
		}
		size_t l = strlen(v->valuestring);
		buf_append_u32(&f->out, htole32((uint32_t)l));
		buf_append(&f->out, v->valuestring, l);
	} else if (put_number(f, v) < 0)
		return -EINVAL;
	f->got++;
	return 0;
}

int tensor_from_json(const cJSON *data, const char *name, enum thaw_dtype dt, int ndim,
		     const int64_t *shape, void **out, size_t *len, char *err, size_t errlen)
{
	struct fill f = { .name = name, .dt = dt, .esize = thaw_dtype_size(dt), .err = err,
			  .errlen = errlen };
	f.want = tensor_elems(ndim, shape);
	if (f.want < 0) {
		snprintf(err, errlen, "input '%s': bad shape", name);
		return -EINVAL;
	}
	if (dt != THAW_BYTES)
		buf_reserve(&f.out, (size_t)f.want * f.esize);
	if (walk(&f, data, 0) < 0)
		goto fail;
	if (f.got != f.want) {
		snprintf(err, errlen, "input '%s': %lld elements of data for a shape of %lld", name,
			 (long long)f.got, (long long)f.want);
		goto fail;
	}
	*len = f.out.len;
	*out = f.out.data ? (void *)f.out.data : xmalloc(1);
	return 0;
fail:
	buf_free(&f.out);
	return -EINVAL;
}

/* --- buffer -> JSON ------------------------------------------------------------ */

static int format_f64(double v, char *out, size_t outlen)
{
	if (isnan(v))
		return snprintf(out, outlen, "NaN");
	if (isinf(v))
		return snprintf(out, outlen, v < 0 ? "-Infinity" : "Infinity");
	for (int p = 15; p < 17; p++) {
		int n = snprintf(out, outlen, "%.*g", p, v);
		if (strtod(out, NULL) == v)
			return n;
	}
	return snprintf(out, outlen, "%.17g", v);
}

static float half_to_float(uint16_t h)
{
	int e = (h >> 10) & 0x1f, m = h & 0x3ff;
	float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY)
							     : ldexpf((float)(m | 0x400), e - 25);
	return (h & 0x8000) ? -v : v;
}

void tensor_to_json(struct buf *b, const struct thaw_tensor *t)
{
	const unsigned char *p = t->data;
	int64_t n = tensor_elems(t->ndim, t->shape);
	size_t es = thaw_dtype_size(t->dtype), off = 0;
	char num[40];
	buf_append(b, "[", 1);
	for (int64_t i = 0; i < n; i++) {
		if (i)
			buf_append(b, ",", 1);
		if (t->dtype == THAW_BYTES) {
			uint32_t l;
			memcpy(&l, p + off, 4);
			l = le32toh(l);
			buf_append_json_string(b, (const char *)p + off + 4, l);
			off += 4 + l;
			continue;
		}
		const unsigned char *e = p + (size_t)i * es;
		uint64_t u = 0;
		for (size_t k = 0; k < es; k++)
			u |= (uint64_t)e[k] << (8 * k);
		int len;
		switch (t->dtype) {
		case THAW_BOOL:
			len = snprintf(num, sizeof(num), "%s", u ? "true" : "false");
			break;
		case THAW_FP32: {
			float f;
			uint32_t w = (uint32_t)u;
			memcpy(&f, &w, 4);
			len = tfrest_format_float(f, num, sizeof(num));
			break;
		}
		case THAW_FP64: {
			double d;
			memcpy(&d, &u, 8);
			len = format_f64(d, num, sizeof(num));
			break;
		}
		case THAW_FP16:
			len = tfrest_format_float(half_to_float((uint16_t)u), num, sizeof(num));
			break;
		case THAW_INT8: case THAW_INT16: case THAW_INT32: case THAW_INT64: {
			int sh = 64 - (int)es * 8;
			len = snprintf(num, sizeof(num), "%lld", (long long)((int64_t)(u << sh) >> sh));
			break;
		}
		default:
			len = snprintf(num, sizeof(num), "%llu", (unsigned long long)u);
		}
		buf_append(b, num, (size_t)len);
	}
	buf_append(b, "]", 1);
}

/* --- the shared step ------------------------------------------------------------ */

static void shape_str(char *dst, size_t size, int ndim, const int64_t *shape)
{
	size_t o = (size_t)snprintf(dst, size, "[");
	for (int i = 0; i < ndim && o < size; i++)
		o += (size_t)snprintf(dst + o, size - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
	if (o < size)
		snprintf(dst + o, size - o, "]");
}

static int check_against(const struct thaw_model *m, const struct thaw_tensor *in, size_t n_in,
			 struct thaw_outputs *out)
{
	char a[128], b[128];
	for (size_t i = 0; i < n_in; i++) {
		const struct thaw_tensor *t = &in[i];
		const struct thaw_tensor_spec *s = NULL;
		for (size_t k = 0; k < m->n_inputs && !s; k++)
			if (!strcmp(m->inputs[k].name, t->name))
				s = &m->inputs[k];
		for (size_t k = 0; k < i; k++)
			if (!strcmp(in[k].name, t->name))
				return thaw_infer_error(out, 400, "input '%s' given twice", t->name), 400;
		if (!s)
			return thaw_infer_error(out, 400, "unknown input '%s'", t->name), 400;
		if (s->dtype != t->dtype)
			return thaw_infer_error(out, 400, "input '%s': datatype %s, expected %s", t->name,
						thaw_dtype_name(t->dtype), thaw_dtype_name(s->dtype)),
			       400;
		bool ok = s->ndim < 0 || s->ndim == t->ndim; /* -1: any shape */
		for (int d = 0; ok && s->ndim > 0 && d < s->ndim; d++)
			ok = s->shape[d] < 0 || s->shape[d] == t->shape[d];
		if (!ok) {
			shape_str(a, sizeof(a), t->ndim, t->shape);
			shape_str(b, sizeof(b), s->ndim, s->shape);
			return thaw_infer_error(out, 400, "input '%s': shape %s does not match %s",
						t->name, a, b),
			       400;
		}
	}
	for (size_t k = 0; k < m->n_inputs; k++) {
		bool found = false;
		for (size_t i = 0; i < n_in && !found; i++)
			found = !strcmp(in[i].name, m->inputs[k].name);
		if (!found && !(m == &model && optional[k]))
			return thaw_infer_error(out, 400, "input '%s' is missing", m->inputs[k].name), 400;
	}
	return 0;
}

int tensor_run(tensor_infer_fn infer, const struct thaw_request *req,
	       const struct thaw_tensor *in, size_t n_in, const char *const *want,
	       size_t n_want, struct thaw_outputs *out)
{
	const struct thaw_model *m = tensor_model();
	char err[256];
	tensor_outputs_init(out);
	for (size_t i = 0; i < n_in; i++)
		if (tensor_check(&in[i], err, sizeof(err)) < 0)
			return thaw_infer_error(out, 400, "%s", err), 400;
	if (m) {
		int st = check_against(m, in, n_in, out);
		if (st)
			return st;
		for (size_t i = 0; i < n_want; i++) {
			bool found = false;
			for (size_t k = 0; k < m->n_outputs && !found; k++)
				found = !strcmp(m->outputs[k].name, want[i]);
			if (!found)
				return thaw_infer_error(out, 400, "unknown output '%s'", want[i]), 400;
		}
	}
	struct thaw_infer_request ir = { .req = req, .inputs = in, .n_inputs = n_in,
					 .outputs = want, .n_outputs = n_want };
	int rc = infer(&ir, out);
	if (rc < 0 || out->status) {
		int st = out->status ? out->status : 500;
		char msg[sizeof(out->msg)];
		if (out->status)
			snprintf(msg, sizeof(msg), "%s", out->msg);
		else
			snprintf(msg, sizeof(msg), "handler failed: %s", strerror(-rc));
		tensor_outputs_fini(out);
		thaw_infer_error(out, st, "%s", msg);
		return st;
	}
	for (size_t i = 0; i < out->n; i++)
		if (tensor_check(&out->t[i], err, sizeof(err)) < 0) {
			tensor_outputs_fini(out);
			thaw_infer_error(out, 500, "handler gave a bad output: %s", err);
			return 500;
		}
	if (!n_want)
		return 0;
	/* keep the asked-for outputs, in the order asked */
	struct thaw_outputs kept;
	tensor_outputs_init(&kept);
	for (size_t i = 0; i < n_want; i++) {
		size_t k = 0;
		while (k < out->n && (!out->t[k].name || strcmp(out->t[k].name, want[i])))
			k++;
		if (k == out->n) {
			tensor_outputs_fini(&kept);
			tensor_outputs_fini(out);
			thaw_infer_error(out, m ? 500 : 400, "no output '%s'", want[i]);
			return out->status;
		}
		kept.t[kept.n] = out->t[k];
		kept.owned[kept.n++] = out->owned[k];
		out->t[k].name = NULL;
		out->owned[k] = NULL;
	}
	tensor_outputs_fini(out);
	*out = kept;
	return 0;
}

/* --- base64 ------------------------------------------------------------------------ */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int tensor_b64_decode(const char *s, size_t len, struct buf *out)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t i = 0;
	for (; i < len && s[i] != '='; i++) {
		const char *p = memchr(b64, s[i], 64);
		if (!p || !s[i])
			return -EINVAL;
		acc = acc << 6 | (uint32_t)(p - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			unsigned char ch = (unsigned char)(acc >> bits);
			buf_append(out, &ch, 1);
		}
	}
	size_t pad = len - i;
	if (pad > 2 || (pad && (len % 4)))
		return -EINVAL;
	for (; i < len; i++)
		if (s[i] != '=')
			return -EINVAL;
	return 0;
}

void tensor_b64_encode(struct buf *out, const void *data, size_t len)
{
	const unsigned char *p = data;
	char q[4];
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0) |
			     (i + 2 < len ? p[i + 2] : 0);
		q[0] = b64[v >> 18 & 63];
		q[1] = b64[v >> 12 & 63];
		q[2] = i + 1 < len ? b64[v >> 6 & 63] : '=';
		q[3] = i + 2 < len ? b64[v & 63] : '=';
		buf_append(out, q, 4);
	}
}
