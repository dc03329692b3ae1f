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

#include <stdbool.h>

#include "host/tensor.h"

/* Answers req into res when its path is under /v2/; returns 0 then, or
 * -ENOTSUP for any other path (the handler's invoke() takes it). */
int kserve_handle(tensor_infer_fn infer, const struct thaw_request *req,
		  struct thaw_response *res);

/* Internal (kserve.c, kserve_fast.c): an infer request taken apart. */
struct cJSON;
struct kserve_req {
	struct cJSON *root;                 /* the cJSON path's tree, or NULL */
	struct thaw_tensor in[TENSOR_MAX_IO];
	void *owned[TENSOR_MAX_IO];         /* data made for in[i], or NULL */
	char *names[TENSOR_MAX_IO];         /* the fast path's copies of names */
	size_t n_in;
	const char *want[TENSOR_MAX_IO];
	char *want_owned[TENSOR_MAX_IO];
	bool want_binary[TENSOR_MAX_IO];
	size_t n_want;
	bool all_binary;                    /* parameters.binary_data_output */
	char *id;                           /* "id", copied, or NULL */
	bool grpc_json;                     /* ModelInferRequest written as JSON */
	char err[512];
};
/* The fast path for JSON bodies of the usual shape (kserve_fast.c): 0 with
 * k filled, or -ENOTSUP (k may hold partial state: free it with the
 * caller's cleanup) and the cJSON path runs. */
int kserve__parse_fast(const char *body, size_t len, struct kserve_req *k);

#endif
