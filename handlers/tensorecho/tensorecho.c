/*
 * tensorecho: a test handler for the tensor hook. Model: input "s", BYTES,
 * any shape; output "s", the same elements back (same shape), so the tests
 * see what each protocol makes of BYTES on the way in and out (TF Serving
 * REST {"b64": ...}, TF Serving gRPC string_val, KServe).
 *
 * It refuses (400) a request that reached it with a credential header
 * (authorization, x-thaw-token): the daemon must keep those for itself.
 */
#include <thaw/handler.h>

#include <string.h>

static int init(void)
{
	static const struct thaw_tensor_spec s = { "s", THAW_BYTES, -1, { 0 } };
	struct thaw_model m = { .platform = "thaw_tensorecho", .version = "1",
				.inputs = &s, .n_inputs = 1, .outputs = &s, .n_outputs = 1 };
	return thaw_declare_model(&m);
}

static int invoke(const struct thaw_request *req, struct thaw_response *res)
{
	(void)req;
	return thaw_respond_error(res, 404, "tensorecho answers tensors only");
}

static int infer(const struct thaw_infer_request *ir, struct thaw_outputs *out)
{
	static const char *const creds[] = { "authorization", "x-thaw-token" };
	for (size_t i = 0; i < sizeof(creds) / sizeof(creds[0]); i++)
		if (thaw_request_header(ir->req, creds[i]))
			return thaw_infer_error(out, 400, "header %s reached the handler", creds[i]);
	const struct thaw_tensor *s = &ir->inputs[0]; /* checked by the host: "s", BYTES */
	void *o = thaw_output_new(out, "s", THAW_BYTES, s->ndim, s->shape, s->len);
	if (!o)
		return thaw_infer_error(out, 500, "out of memory");
	memcpy(o, s->data, s->len);
	return 0;
}

THAW_HANDLER(.name = "tensorecho", .init = init, .invoke = invoke, .infer = infer);
