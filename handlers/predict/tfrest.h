/*
 * tfrest: the TensorFlow Serving REST surface, independent of any model:
 * parsing request paths and bodies into float tensors, and writing tensors
 * back as JSON numbers in the shortest form that round-trips a float32
 * (2.5, 3.0, 0.1 -- never 2.5000001).
 */
#ifndef THAW_PREDICT_TFREST_H
#define THAW_PREDICT_TFREST_H

#include <stddef.h>
#include <stdint.h>

#define TFREST_MAX_DIMS 8
/* Bound on the numbers of one request (the 32 MB body limit allows ~16M). */
#define TFREST_MAX_ELEMS (1u << 25)

enum tfrest_op {
	TFREST_STATUS,   /* GET /v1/models/{name}[/versions/{v}] */
	TFREST_METADATA, /* GET .../metadata */
	TFREST_PREDICT,  /* POST ...:predict (also POST / on the function) */
	TFREST_CLASSIFY, /* POST ...:classify */
	TFREST_REGRESS,  /* POST ...:regress */
};

struct tfrest_route {
	enum tfrest_op op;
	char name[128];    /* model name from the path, "" for POST / */
	char version[32];  /* "" unless /versions/{v} */
	char label[64];    /* "" unless /labels/{l} */
};

/* Parses method + path. Returns 0, or -ENOENT for paths that are not TF
 * Serving routes (the caller answers 404 "Malformed request"). */
int tfrest_route_parse(const char *method, const char *path, struct tfrest_route *out);

struct tfrest_tensor {
	int ndim;
	int64_t shape[TFREST_MAX_DIMS];
	size_t n;    /* product of shape */
	float *data; /* malloc'd, n floats, row-major; freed by tfrest_tensor_free */
};
void tfrest_tensor_free(struct tfrest_tensor *t);

enum tfrest_format { TFREST_ROW, TFREST_COLUMNAR };

/* Parses a :predict body. On success returns 0 with *fmt and *t set (the
 * instances or inputs as one float tensor, batch first). Otherwise returns
 * -EINVAL with a TF Serving-style message in err for a 400. Rules: valid
 * JSON object; signature_name absent or "serving_default"; exactly one of
 * "instances" (a non-empty list; items may be {"<input>": value} objects
 * with one key) and "inputs" (a value or a one-key object); rectangular
 * (no ragged lists); numbers only; at most TFREST_MAX_DIMS deep. */
int tfrest_parse_predict(const char *body, size_t len, enum tfrest_format *fmt,
			 struct tfrest_tensor *t, char *err, size_t errlen);

/* Internal, for tests: the allocation-free fast path (tfrest_fast.c; 0 or
 * -ENOTSUP = "use the general path") and the general cJSON path. */
int tfrest__parse_fast(const char *body, size_t len, enum tfrest_format *fmt,
		       struct tfrest_tensor *t);
int tfrest__parse_cjson(const char *body, size_t len, enum tfrest_format *fmt,
			struct tfrest_tensor *t, char *err, size_t errlen);

/* Internal, shared with the instance host's KServe fast path: one strict
 * JSON number at *p (< end) as the correctly rounded double; advances *p.
 * Returns 0 or -1 when it is not a number. */
int tfrest__number(const char **p, const char *end, double *out);

/* Growable output buffer. */
struct tfrest_buf {
	char *p;
	size_t len, cap;
	int oom; /* set once an append failed; later appends do nothing */
};
void tfrest_buf_put(struct tfrest_buf *b, const char *s, size_t n);
void tfrest_buf_puts(struct tfrest_buf *b, const char *s);
void tfrest_buf_free(struct tfrest_buf *b);

/* Shortest decimal that reads back as the same float32; always has a '.' or
 * exponent ("3.0"); NaN/Infinity spelled as TF Serving does. Returns length. */
int tfrest_format_float(float v, char *out, size_t outlen);
/* Writes data (shape[0..ndim)) as nested JSON lists; ndim 0 is a scalar. */
void tfrest_write_tensor(struct tfrest_buf *b, const float *data, int ndim,
			 const int64_t *shape);
/* The whole response body: {"predictions": ...} or {"outputs": ...}. */
void tfrest_write_response(struct tfrest_buf *b, enum tfrest_format fmt,
			   const float *data, int ndim, const int64_t *shape);

#endif
