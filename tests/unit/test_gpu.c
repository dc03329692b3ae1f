/* Unit tests for daemon/gpu.c: without NVML (no library) there are no GPU
 * metrics and no error; with it (a machine with a GPU and its driver) each
 * device has utilisation and memory lines. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "daemon/gpu.h"

static void test_without_nvml_renders_nothing(void **state)
{
	(void)state;
	assert_int_equal(gpu_open("/nonexistent/libnvidia-ml.so.1"), -ENOENT);
	assert_int_equal(gpu_open(GPU_NVML_LIB), -ENOENT); /* once per process */
	gpu_sample(1000);
	struct buf b = { 0 };
	gpu_render(&b);
	assert_int_equal(b.len, 0);
	gpu_render_history(&b);
	buf_append(&b, "", 1);
	assert_string_equal(b.data, "{\"step_s\":5,\"t\":[],\"gpus\":[]}");
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_without_nvml_renders_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
