/*
 * tensor: the host's side of the SDK's tensor hook (handler.h, infer), and
 * the conversions between tensors and the wire formats that every protocol
 * module shares (JSON "data" lists today). Nothing here knows a protocol's
 * routes; kserve.c does.
 *
 * Memory: inputs made here are malloc'd and owned by the caller
 * (tensor_in_fini); outputs live in a struct thaw_outputs owned by the
 * protocol module that ran infer (tensor_outputs_fini).
 */
#ifndef THAW_HOST_TENSOR_H
#define THAW_HOST_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "thaw/handler.h"

struct cJSON;

#define TENSOR_MAX_IO 64            /* inputs or outputs of one request */
#define TENSOR_MAX_ELEMS (1u << 26) /* elements of one tensor */

struct thaw_outputs {
	struct thaw_tensor t[TENSOR_MAX_IO];
	void *owned[TENSOR_MAX_IO];
	size_t n;
	int status;      /* 0, or the status given to thaw_infer_error */
	char msg[512];
};
void tensor_outputs_init(struct thaw_outputs *o);
void tensor_outputs_fini(struct thaw_outputs *o);

/* The model declared with thaw_declare_model, or NULL. */
const struct thaw_model *tensor_model(void);

/* Elements in shape (product), or -1 for a negative dim or more than
 * TENSOR_MAX_ELEMS. */
int64_t tensor_elems(int ndim, const int64_t *shape);
/* Checks t->len against the shape and datatype (BYTES: the length prefixes
 * walk exactly to len). Returns 0 or -EINVAL with a message naming t. */
int tensor_check(const struct thaw_tensor *t, char *err, size_t errlen);

/* Parses a JSON "data" value (flat or nested lists in row-major order, or a
 * scalar for shape []) of dtype into a new buffer of the tensor's layout:
 * *out (malloc'd, caller frees) and *len. The element count must equal the
 * shape's product; BOOL takes true/false, BYTES strings, integer types
 * integers in range, FP* numbers. Returns 0 or -EINVAL with a message naming
 * `name` in err. */
int tensor_from_json(const struct cJSON *data, const char *name, enum thaw_dtype dtype,
		     int ndim, const int64_t *shape, void **out, size_t *len, char *err,
		     size_t errlen);
/* Appends t's data as a flat JSON list to b (floats in the shortest form
 * that reads back the same; NaN and Infinity as TF Serving spells them;
 * BYTES as JSON strings). */
void tensor_to_json(struct buf *b, const struct thaw_tensor *t);

/* Base64 (RFC 4648, with padding; decoding also takes it unpadded, no
 * whitespace): appends the bytes to out. Decode returns 0 or -EINVAL. */
int tensor_b64_decode(const char *s, size_t len, struct buf *out);
void tensor_b64_encode(struct buf *out, const void *data, size_t len);

typedef int (*tensor_infer_fn)(const struct thaw_infer_request *ir, struct thaw_outputs *out);

/* The step every protocol shares: checks the inputs against the declared
 * model (names, datatypes, ranks and fixed dims, every input present;
 * skipped when none is declared), runs infer, and keeps the outputs asked
 * for in want[0..n_want) in that order (all when n_want is 0). Returns 0
 * with out filled, or an HTTP status (400, 404, 500, 503, 504) with out->msg
 * set and out emptied. */
int tensor_run(tensor_infer_fn infer, const struct thaw_request *req,
	       const struct thaw_tensor *in, size_t n_in, const char *const *want,
	       size_t n_want, struct thaw_outputs *out);

#endif
