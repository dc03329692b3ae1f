/*
 * kserve: KServe v2 (Open Inference Protocol) REST for handlers with the
 * tensor hook. The daemon routes /v2/models/{m}/... to function m with the
 * whole path; the host answers here, so the handler only sees tensors.
 *
 *   GET  /v2/models/{m}[/versions/{v}]          metadata
 *   GET  /v2/models/{m}[/versions/{v}]/ready    200 {"name","ready":true}
 *   POST /v2/models/{m}[/versions/{v}]/infer    JSON, or the binary tensor
 *        extension (Inference-Header-Content-Length) both ways
 *
 * Errors are {"error": "..."}: 400 for bad input (naming the input), 404 for
 * unknown versions and routes, 405 for a wrong method.
 */
#ifndef THAW_HOST_KSERVE_H
#define THAW_HOST_KSERVE_H

#include "thaw/handler.h"

#include "tensor.h"

/* Answers req into res when its path is under /v2/; returns 0 then, or
 * -ENOTSUP for any other path (the handler's invoke() takes it). */
int kserve_handle(tensor_infer_fn infer, const struct thaw_request *req,
		  struct thaw_response *res);

#endif
