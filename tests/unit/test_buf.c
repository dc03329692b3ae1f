/* Unit tests for common/buf.c: buf_shrink gives capacity back (issue 16
 * item 5: idle keep-alive connections that once carried 32 MiB held ~70 MB
 * each, their buffers keeping their capacity). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"

static void test_shrink_gives_back_capacity(void **state)
{
	(void)state;
	static const struct {
		size_t fill, keep_len, keep, cap_after; /* cap_after 0: freed */
		int same;                               /* capacity unchanged */
	} cases[] = {
		{ 1 << 20, 0, 65536, 0, 0 },          /* emptied: freed */
		{ 1 << 20, 100, 65536, 65536, 0 },    /* a little left: down to keep */
		{ 1 << 20, 65536, 65536, 65536, 0 },  /* exactly keep */
		{ 1 << 20, 70000, 65536, 0, 1 },      /* more than keep left: as is */
		{ 4096, 0, 65536, 0, 1 },             /* small already: as is */
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct buf b = { 0 };
		char *big = malloc(cases[k].fill);
		for (size_t i = 0; i < cases[k].fill; i++)
			big[i] = (char)(i * 7);
		buf_append(&b, big, cases[k].fill);
		size_t cap = b.cap;
		buf_consume(&b, cases[k].fill - cases[k].keep_len);
		buf_shrink(&b, cases[k].keep);
		if (cases[k].same)
			assert_int_equal(b.cap, cap);
		else
			assert_int_equal(b.cap, cases[k].cap_after);
		assert_int_equal(b.len, cases[k].keep_len);
		if (b.len)
			assert_memory_equal(b.data, big + cases[k].fill - b.len, b.len);
		if (!b.cap)
			assert_null(b.data);
		/* still usable */
		buf_append(&b, "xy", 2);
		assert_memory_equal(b.data + b.len - 2, "xy", 2);
		buf_free(&b);
		free(big);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shrink_gives_back_capacity),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
