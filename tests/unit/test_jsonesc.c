/* The one JSON string escaper (common/jsonesc.c): table of inputs and the
 * exact escaped text; every output is valid JSON (cJSON parses it back). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "common/jsonesc.h"

static const struct {
	const char *in;
	size_t len; /* 0: strlen */
	const char *out;
} cases[] = {
	{ "plain text", 0, "plain text" },
	{ "a\"b\\c", 0, "a\\\"b\\\\c" },
	{ "line\nnext\ttab\r", 0, "line\\nnext\\u0009tab\\u000d" },
	{ "nul\0x", 5, "nul\\u0000x" },
	{ "\x7f", 0, "\x7f" },
	{ "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 0, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" },
	{ "\x80", 0, "\\u0080" },                  /* a lone continuation byte */
	{ "\xc0\xaf", 0, "\\u00c0\\u00af" },       /* overlong '/' */
	{ "\xe0\x80\xaf", 0, "\\u00e0\\u0080\\u00af" }, /* overlong, 3 bytes */
	{ "\xed\xa0\x80", 0, "\\u00ed\\u00a0\\u0080" }, /* a surrogate */
	{ "\xf4\x90\x80\x80", 0, "\\u00f4\\u0090\\u0080\\u0080" }, /* past U+10FFFF */
	{ "ok\xe2\x82", 0, "ok\\u00e2\\u0082" },   /* cut short */
	{ "", 0, "" },
};

static void test_escapes_exactly_and_stays_valid_json(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf b = { 0 };
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
		buf_append_json_string(&b, cases[i].in, len);
		buf_append(&b, "", 1);
		char want[256];
		snprintf(want, sizeof(want), "\"%s\"", cases[i].out);
		assert_string_equal(b.data, want);
		cJSON *j = cJSON_Parse(b.data);
		assert_non_null(j);
		assert_true(cJSON_IsString(j));
		cJSON_Delete(j);
		buf_free(&b);
	}
}

static int failing_sink(void *ctx, const void *data, size_t len)
{
	(void)data, (void)len;
	return ++*(int *)ctx >= 2 ? -12 : 0;
}

static void test_a_sink_error_stops_it(void **state)
{
	(void)state;
	int calls = 0;
	assert_int_equal(json_escape("a\"b\"c\"d", 7, failing_sink, &calls), -12);
	assert_int_equal(calls, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escapes_exactly_and_stays_valid_json),
		cmocka_unit_test(test_a_sink_error_stops_it),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
