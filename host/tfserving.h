/*
 * tfserving: TensorFlow Serving REST for handlers with the tensor hook:
 *
 *   POST /v1/models/{m}[/versions/{v}]:predict   row and columnar JSON
 *   GET  /v1/models/{m}[/versions/{v}]           model status
 *   GET  /v1/models/{m}[/versions/{v}]/metadata  signature metadata
 *   POST ...:classify, ...:regress               400, not supported
 *
 * The JSON parsing and writing is the predict handler's tfrest module
 * (handlers/predict/tfrest*.c, its allocation-free fast path included),
 * compiled into the host as well, so a handler on the hook answers exactly
 * as predict did: float32 inputs into the model's one input, one float32
 * output written in the shortest form that reads back the same.
 */
#ifndef THAW_HOST_TFSERVING_H
#define THAW_HOST_TFSERVING_H

#include "host/tensor.h"

/* Answers req when its path is under /v1/models/; returns 0 then, or
 * -ENOTSUP (the handler's invoke() takes it). */
int tfserving_handle(tensor_infer_fn infer, const struct thaw_request *req,
		     struct thaw_response *res);

#endif
