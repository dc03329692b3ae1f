/*
 * safetensors: validating parser for the safetensors format
 * (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
 * length N, N bytes of JSON {"name": {"dtype", "shape", "data_offsets":
 * [begin, end]}, "__metadata__"?: {...}}, then the data buffer; offsets are
 * relative to the start of the data buffer.
 *
 * "__metadata__" must map strings to strings (the format's rule); it is kept
 * for safetensors_meta().
 *
 * Every length, shape and offset is checked against the file size before a
 * pointer into the data is handed out, so a truncated or corrupt file is an
 * error with a message, never an out-of-bounds read.
 */
#ifndef THAW_PREDICT_SAFETENSORS_H
#define THAW_PREDICT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define SAFETENSORS_MAX_DIMS 8
/* The reference implementation's limit on the JSON header. */
#define SAFETENSORS_MAX_HEADER (100u << 20)

enum safetensors_dtype {
	SAFETENSORS_F32,
	SAFETENSORS_F16,
	SAFETENSORS_BF16,
	SAFETENSORS_F64,
	SAFETENSORS_I64,
	SAFETENSORS_I32,
	SAFETENSORS_I16,
	SAFETENSORS_I8,
	SAFETENSORS_U8,
	SAFETENSORS_BOOL,
};

struct safetensors_tensor {
	char *name;
	enum safetensors_dtype dtype;
	int ndim;
	int64_t shape[SAFETENSORS_MAX_DIMS];
	const void *data; /* points into the caller's buffer */
	size_t nbytes;
};

struct safetensors {
	struct safetensors_tensor *tensors;
	size_t n;
	char **meta; /* "__metadata__": key, value, key, value, ... (owned) */
	size_t n_meta; /* pairs */
};

/* Parses the file image data[0..len). On success fills *out (free with
 * safetensors_free; tensor data keeps pointing into `data`, which must
 * outlive it) and returns 0. On failure returns -EINVAL (or -ENOMEM) and
 * writes a one-line reason to err. Data of every tensor is checked to lie
 * inside the file and to be aligned to its element size. */
int safetensors_parse(const void *data, size_t len, struct safetensors *out,
		      char *err, size_t errlen);
const struct safetensors_tensor *safetensors_find(const struct safetensors *st,
						  const char *name);
/* The "__metadata__" string of key, or NULL. Points into st. */
const char *safetensors_meta(const struct safetensors *st, const char *key);
void safetensors_free(struct safetensors *st);
const char *safetensors_dtype_name(enum safetensors_dtype dt);

#endif
