/* Unit tests for common/ustar.c: headers read back as written (sizes on
 * both sides of the 8 GiB octal limit), and what a reader must refuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <stdio.h>

#include "common/ustar.h"

static void test_headers_read_back_as_written(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		mode_t mode;
		uint64_t size;
	} cases[] = {
		{ "thaw-manifest", 0644, 0 },
		{ "pages-1.img", 0600, 4096 },
		{ "thaw-mem-7f0000000000", 0400, (1ull << 33) - 1 }, /* the largest octal */
		{ "thaw-mem-7f1000000000", 0400, 1ull << 33 },       /* base-256 from here */
		{ "x", 0400, (1ull << 40) + 3 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char h[USTAR_BLOCK], name[USTAR_NAME_MAX + 1];
		mode_t mode;
		uint64_t size;
		assert_int_equal(ustar_header(h, cases[i].name, cases[i].mode, cases[i].size), 0);
		assert_int_equal(ustar_parse(h, name, &mode, &size), 1);
		assert_string_equal(name, cases[i].name);
		assert_int_equal(mode, cases[i].mode);
		assert_true(size == cases[i].size);
	}
	assert_int_equal(ustar_padding(0), 0);
	assert_int_equal(ustar_padding(1), 511);
	assert_int_equal(ustar_padding(512), 0);
}

static void test_bad_names_are_not_written(void **state)
{
	(void)state;
	char h[USTAR_BLOCK], long_name[120];
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	static const char *const bad[] = { "", "a/b", ".hidden", "..", "." };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(ustar_header(h, bad[i], 0644, 1), -EINVAL);
	assert_int_equal(ustar_header(h, long_name, 0644, 1), -EINVAL);
}

/* A good header changed at off to v, with its checksum fixed again when
 * fix_sum (else left stale). */
static void changed(char h[USTAR_BLOCK], size_t off, const char *v, int fix_sum)
{
	assert_int_equal(ustar_header(h, "pages-1.img", 0600, 10), 0);
	memcpy(h + off, v, strlen(v));
	if (fix_sum) {
		unsigned sum = 0;
		memset(h + 148, ' ', 8);
		for (size_t i = 0; i < USTAR_BLOCK; i++)
			sum += (unsigned char)h[i];
		snprintf(h + 148, 8, "%06o", sum);
	}
}

static void test_a_reader_refuses_what_is_not_a_flat_file(void **state)
{
	(void)state;
	static const struct {
		size_t off;
		const char *v;
		int fix_sum;
	} cases[] = {
		{ 0, "q", 0 },           /* stale checksum */
		{ 156, "5", 1 },         /* a folder */
		{ 156, "2", 1 },         /* a symbolic link */
		{ 0, "a/b", 1 },         /* a path */
		{ 0, "..\0", 1 },        /* up */
		{ 0, ".x", 1 },          /* hidden */
		{ 345, "sub", 1 },       /* a ustar prefix: a folder */
		{ 257, "xstar", 1 },     /* not ustar */
		{ 124, "9", 1 },         /* not octal */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char h[USTAR_BLOCK], name[USTAR_NAME_MAX + 1];
		mode_t mode;
		uint64_t size;
		changed(h, cases[i].off, cases[i].v, cases[i].fix_sum);
		assert_int_equal(ustar_parse(h, name, &mode, &size), -EBADMSG);
	}
	char zero[USTAR_BLOCK] = { 0 }, name[USTAR_NAME_MAX + 1];
	mode_t mode;
	uint64_t size;
	assert_int_equal(ustar_parse(zero, name, &mode, &size), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_headers_read_back_as_written),
		cmocka_unit_test(test_bad_names_are_not_written),
		cmocka_unit_test(test_a_reader_refuses_what_is_not_a_flat_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
