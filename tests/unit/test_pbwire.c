/* pbwire_model: the model a gRPC message names, table-driven, including the
 * input fuzz_grpc found (a Predict with no model_spec). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/pbwire.h"

#define KINFER "/inference.GRPCInferenceService/ModelInfer"
#define PREDICT "/tensorflow.serving.PredictionService/Predict"

static const struct {
	const char *what, *path;
	const char *msg;
	size_t len;
	int rc;
	const char *name;
	uint64_t version;
} cases[] = {
	{ "kserve name", KINFER, "\x0a\x03mlp", 5, 0, "mlp", 0 },
	{ "kserve name and version", KINFER, "\x0a\x03mlp\x12\x01" "3", 8, 0, "mlp", 3 },
	{ "kserve version not a number", KINFER, "\x0a\x03mlp\x12\x01x", 8, -EINVAL, NULL, 0 },
	{ "kserve other fields skipped", KINFER, "\x1a\x01i\x08\x05\x0a\x01m", 8, 0, "m", 0 },
	{ "kserve empty message", KINFER, "", 0, 0, NULL, 0 },
	{ "length past the end", KINFER, "\x0a\x09mlp", 5, -EINVAL, NULL, 0 },
	{ "truncated varint", KINFER, "\x08\x80", 2, -EINVAL, NULL, 0 },
	{ "bad wire type", KINFER, "\x0f", 1, -EINVAL, NULL, 0 },
	{ "tf spec name", PREDICT, "\x0a\x06\x0a\x04half", 8, 0, "half", 0 },
	{ "tf spec name and version", PREDICT, "\x0a\x0a\x0a\x04half\x12\x02\x08\x07", 12, 0, "half", 7 },
	{ "tf no model_spec (fuzz_grpc)", PREDICT, "\x12\x00", 2, 0, NULL, 0 },
	{ "tf spec past the end", PREDICT, "\x0a\x08\x0a\x04half", 8, -EINVAL, NULL, 0 },
	{ "not a model call", "/x.Y/Z", "", 0, -ENOENT, NULL, 0 },
};

static void test_pbwire_model_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *name = NULL;
		size_t nl = 0;
		uint64_t v = 0;
		int rc = pbwire_model(cases[i].path, cases[i].msg, cases[i].len, &name, &nl, &v);
		if (rc != cases[i].rc)
			fail_msg("%s: rc %d, want %d", cases[i].what, rc, cases[i].rc);
		if (rc)
			continue;
		if (!cases[i].name && name && nl)
			fail_msg("%s: a name where none is", cases[i].what);
		if (cases[i].name && (!name || nl != strlen(cases[i].name) || memcmp(name, cases[i].name, nl)))
			fail_msg("%s: wrong name", cases[i].what);
		if (name && (name < cases[i].msg || name + nl > cases[i].msg + cases[i].len))
			fail_msg("%s: name outside the message", cases[i].what);
		if (v != cases[i].version)
			fail_msg("%s: version %llu", cases[i].what, (unsigned long long)v);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_pbwire_model_cases) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
