/*
 * libFuzzer target over the instance host's KServe v2 JSON infer bodies:
 * the fast path (kserve_fast.c) and the cJSON path (kserve.c parse_infer,
 * contents, base64, the JSON form of ModelInferRequest) on the same bytes.
 *
 * Invariants (abort() on violation): when the fast path takes a body, the
 * cJSON path takes it too and gives the same tensors, bit for bit, the same
 * outputs and id; every tensor the fast path makes has a length that fits
 * its shape (tensor_check; the cJSON path leaves raw and binary inputs to
 * tensor_run's check); nothing leaks (LeakSanitizer).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../host/kserve.c"
#include "tests/unit/sdk_stubs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kserve_req f, s;
	char err[256];
	/* NUL-terminated, as the host hands bodies over */
	char *body = malloc(size + 1);
	memcpy(body, data, size);
	body[size] = '\0';
	struct thaw_request req = { .method = "POST", .path = "/v2/models/m/infer", .query = "",
				    .body = body, .body_len = size };
	int fast = kserve__parse_fast(body, size, &f);
	int slow = parse_infer(&s, &req);
	if (fast == 0) /* what the fast path takes fits its shape */
		for (size_t i = 0; i < f.n_in; i++)
			if (tensor_check(&f.in[i], err, sizeof(err)) < 0)
				abort();
	if (fast == 0) {
		if (slow != 0 || f.n_in != s.n_in || f.n_want != s.n_want || !f.id != !s.id ||
		    (f.id && strcmp(f.id, s.id)))
			abort();
		for (size_t i = 0; i < f.n_in; i++)
			if (strcmp(f.in[i].name, s.in[i].name) || f.in[i].ndim != s.in[i].ndim ||
			    f.in[i].len != s.in[i].len || memcmp(f.in[i].data, s.in[i].data, f.in[i].len) ||
			    memcmp(f.in[i].shape, s.in[i].shape, sizeof(int64_t) * (size_t)f.in[i].ndim))
				abort();
		for (size_t i = 0; i < f.n_want; i++)
			if (strcmp(f.want[i], s.want[i]))
				abort();
	}
	ctx_fini(&f);
	ctx_fini(&s);
	free(body);
	return 0;
}
