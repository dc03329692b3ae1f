/*
 * host/kserve.c and kserve_fast.c: the fast path of KServe v2
 * JSON infer bodies against the cJSON path (the same tensors, bit for bit,
 * or -ENOTSUP), table-driven and on random floats; bodies it must leave to
 * the cJSON path. Includes kserve.c to reach parse_infer; stubs the four
 * SDK calls it makes; links the host's tensor, tfrest and buf objects.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../host/kserve.c"
#include "tests/unit/sdk_stubs.h"

static void same(const struct kserve_req *a, const struct kserve_req *b, const char *body)
{
	if (a->n_in != b->n_in || a->n_want != b->n_want || !a->id != !b->id ||
	    (a->id && strcmp(a->id, b->id)))
		fail_msg("%s: inputs/outputs/id differ", body);
	for (size_t i = 0; i < a->n_in; i++) {
		const struct thaw_tensor *x = &a->in[i], *y = &b->in[i];
		if (strcmp(x->name, y->name) || x->dtype != y->dtype || x->ndim != y->ndim ||
		    memcmp(x->shape, y->shape, sizeof(int64_t) * (size_t)x->ndim) || x->len != y->len ||
		    memcmp(x->data, y->data, x->len))
			fail_msg("%s: input %zu differs", body, i);
	}
	for (size_t i = 0; i < a->n_want; i++)
		if (strcmp(a->want[i], b->want[i]))
			fail_msg("%s: output %zu differs", body, i);
}

/* 1: the fast path took it (and agrees), 0: it left it to cJSON. */
static int check_body(const char *body)
{
	struct kserve_req *f = calloc(1, sizeof(*f)), *s = calloc(1, sizeof(*s));
	struct thaw_request req = { .method = "POST", .path = "/v2/models/m/infer", .query = "",
				    .body = body, .body_len = strlen(body) };
	int rc = kserve__parse_fast(body, strlen(body), f);
	if (rc == 0) {
		if (parse_infer(s, &req) < 0)
			fail_msg("%s: fast path took what cJSON refuses (%s)", body, s->err);
		same(f, s, body);
	}
	ctx_fini(f);
	ctx_fini(s);
	free(f);
	free(s);
	return rc == 0;
}

static void test_fast_path_agrees_with_cjson(void **state)
{
	static const struct {
		const char *body;
		int fast;
	} cases[] = {
		{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[3],\"datatype\":\"FP32\",\"data\":[1,2,5]}]}", 1 },
		{ " { \"id\" : \"42\" , \"inputs\" : [ { \"data\" : [[1.5, -2e-3], [3, 4]], \"shape\" : [2, 2],"
		  " \"datatype\" : \"FP32\", \"name\" : \"x\" } ], \"outputs\": [{\"name\": \"y\"}] } ", 1 },
		{ "{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[0.1]},"
		  "{\"name\":\"b\",\"shape\":[0],\"datatype\":\"FP32\",\"data\":[]}]}", 1 },
		{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[123456789012345678901234]}]}", 1 },
		/* left to the cJSON path: it words the errors or knows the rest */
		{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[3],\"datatype\":\"INT32\",\"data\":[1,2,5]}]}", 0 },
		{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP32\",\"data\":[1,2,5]}]}", 0 },
		{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[3],\"datatype\":\"FP32\",\"data\":[1,2,5],\"parameters\":{}}]}", 0 },
		{ "{\"parameters\":{},\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}", 0 },
		{ "{\"inputs\":[{\"name\":\"x\\u0041\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}", 0 },
		{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[01]}]}", 0 },
		{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1,]}]}", 0 },
		{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]} x", 0 },
		{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[\"1\"]}]}", 0 },
		{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[-1],\"datatype\":\"FP32\",\"data\":[1]}]}", 0 },
		{ "{\"inputs\":[]}", 0 },
		{ "", 0 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (check_body(cases[i].body) != cases[i].fast)
			fail_msg("case %zu: fast path %s: %s", i, cases[i].fast ? "refused" : "took",
				 cases[i].body);
}

static void test_fast_path_random_floats(void **state)
{
	(void)state;
	srand(7);
	for (int round = 0; round < 50; round++) {
		struct buf b = { 0 };
		int rows = 1 + rand() % 8, cols = 1 + rand() % 64;
		buf_printf(&b, "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[%d,%d],\"data\":[",
			   rows, cols);
		for (int r = 0; r < rows; r++) {
			buf_append_str(&b, r ? ",[" : "[");
			for (int c = 0; c < cols; c++) {
				uint32_t u = (uint32_t)rand() << 16 ^ (uint32_t)rand();
				float f;
				memcpy(&f, &u, 4);
				if (f != f || f - f != 0)
					f = 1.0f;
				buf_printf(&b, c ? ",%.*g" : "%.*g", 6 + rand() % 12, (double)f);
			}
			buf_append_str(&b, "]");
		}
		buf_append_str(&b, "]}]}");
		buf_append(&b, "", 1);
		if (!check_body(b.data))
			fail_msg("round %d: the fast path refused a plain body", round);
		buf_free(&b);
	}
}

/* The JSON form of ModelInferRequest: contents by datatype (bytes in
 * base64), raw_input_contents in base64, int64 shapes as strings. */
static void test_grpc_json_form(void **state)
{
	static const char body[] =
		"{\"model_name\":\"m\",\"inputs\":[{\"name\":\"s\",\"datatype\":\"BYTES\","
		"\"shape\":[\"2\"],\"contents\":{\"bytes_contents\":[\"YQ==\",\"YmM=\"]}},"
		"{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2],\"contents\":{\"fp32_contents\":[1.5,-2]}}]}";
	static const char raw_body[] =
		"{\"model_name\":\"m\",\"inputs\":[{\"name\":\"x\",\"datatype\":\"INT32\",\"shape\":[2]}],"
		"\"raw_input_contents\":[\"AQAAAP////8=\"]}";
	struct kserve_req *k = calloc(1, sizeof(*k));
	struct thaw_request req = { .method = "POST", .path = "/v2/models/m/infer", .query = "",
				    .body = body, .body_len = sizeof(body) - 1 };
	(void)state;
	assert_int_equal(kserve__parse_fast(body, sizeof(body) - 1, k), -ENOTSUP);
	ctx_fini(k);
	if (parse_infer(k, &req) < 0)
		fail_msg("%s", k->err);
	assert_true(k->grpc_json);
	assert_int_equal(k->n_in, 2);
	assert_int_equal(k->in[0].len, 11);
	assert_memory_equal(k->in[0].data, "\1\0\0\0a\2\0\0\0bc", 11);
	const float want[2] = { 1.5f, -2.0f };
	assert_int_equal(k->in[1].len, 8);
	assert_memory_equal(k->in[1].data, want, 8);
	ctx_fini(k);
	req.body = raw_body;
	req.body_len = sizeof(raw_body) - 1;
	if (parse_infer(k, &req) < 0)
		fail_msg("%s", k->err);
	const int32_t iw[2] = { 1, -1 };
	assert_int_equal(k->in[0].len, 8);
	assert_memory_equal(k->in[0].data, iw, 8);
	ctx_fini(k);
	free(k);
}

static void test_base64(void **state)
{
	static const char *const plain[] = { "", "a", "bc", "def", "ghij", "\xff\x00\x80" };
	(void)state;
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		struct buf e = { 0 }, d = { 0 };
		size_t n = i == 5 ? 3 : strlen(plain[i]);
		tensor_b64_encode(&e, plain[i], n);
		assert_int_equal(e.len % 4, 0);
		assert_int_equal(tensor_b64_decode(e.data ? e.data : "", e.len, &d), 0);
		assert_int_equal(d.len, n);
		if (n)
			assert_memory_equal(d.data, plain[i], n);
		buf_free(&e);
		buf_free(&d);
	}
	struct buf d = { 0 };
	assert_int_equal(tensor_b64_decode("YQ", 2, &d), 0); /* unpadded */
	assert_int_equal(tensor_b64_decode("Y!==", 4, &d), -EINVAL);
	assert_int_equal(tensor_b64_decode("YQ=a", 4, &d), -EINVAL);
	assert_int_equal(tensor_b64_decode("YQ===", 5, &d), -EINVAL);
	buf_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grpc_json_form),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_fast_path_agrees_with_cjson),
		cmocka_unit_test(test_fast_path_random_floats),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
