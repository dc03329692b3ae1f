/* Unit tests for common/router.c: one table of paths and what they route to.
 * Each path is copied into a buffer of exactly its length (no NUL after it)
 * so a read past len shows under ASan; every view must point into it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/router.h"

#define WHOLE "\x01whole" /* sub is the whole path */
#define NO_SUB NULL

struct route_case {
	const char *path;
	enum route_kind kind;
	const char *fn;   /* NULL: none */
	const char *sub;  /* NULL: none; WHOLE: the path itself */
	unsigned port;
	size_t len;       /* 0: strlen(path) */
};

static const char name64[] = "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char name65[] = "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

static const struct route_case cases[] = {
	/* /{fn}[/rest] */
	{ "/fn", ROUTE_INVOKE, "fn", "/" },
	{ "/fn/", ROUTE_INVOKE, "fn", "/" },
	{ "/fn/a/b", ROUTE_INVOKE, "fn", "/a/b" },
	{ "/fn/a/b/", ROUTE_INVOKE, "fn", "/a/b/" },
	{ "/fn//a", ROUTE_INVOKE, "fn", "//a" },
	{ "/Fn_9-x/y", ROUTE_INVOKE, "Fn_9-x", "/y" },
	{ "/fn/.x", ROUTE_INVOKE, "fn", "/.x" },
	{ "/fn/...", ROUTE_INVOKE, "fn", "/..." },
	{ "/fn/a..b", ROUTE_INVOKE, "fn", "/a..b" },
	{ "/fn/a:b", ROUTE_INVOKE, "fn", "/a:b" },
	{ "/fnXYZ", ROUTE_INVOKE, "fn", "/", .len = 3 }, /* len, not the NUL, ends it */
	{ "/healthz?x=1", ROUTE_HEALTHZ, .len = 8 },
	/* /invoke/{fn}[/rest] */
	{ "/invoke/fn", ROUTE_INVOKE, "fn", "/" },
	{ "/invoke/fn/", ROUTE_INVOKE, "fn", "/" },
	{ "/invoke/fn/x/y", ROUTE_INVOKE, "fn", "/x/y" },
	{ "/invoke", ROUTE_NOT_FOUND },
	{ "/invoke/", ROUTE_NOT_FOUND },
	{ "/invoke/bad.name", ROUTE_NOT_FOUND },
	{ "/invoke//fn", ROUTE_NOT_FOUND },
	{ "/invokex", ROUTE_INVOKE, "invokex", "/" },
	/* /v1/models/{fn}[/...][:verb]: the handler sees the whole path */
	{ "/v1/models/fn:predict", ROUTE_INVOKE, "fn", WHOLE },
	{ "/v1/models/fn", ROUTE_INVOKE, "fn", WHOLE },
	{ "/v1/models/fn/versions/3:predict", ROUTE_INVOKE, "fn", WHOLE },
	{ "/v1/models/half_plus_two:classify", ROUTE_INVOKE, "half_plus_two", WHOLE },
	{ "/v1/models/fn/metadata", ROUTE_INVOKE, "fn", WHOLE },
	{ "/v1/models", ROUTE_NOT_FOUND },
	{ "/v1/models/", ROUTE_NOT_FOUND },
	{ "/v1/models/:predict", ROUTE_NOT_FOUND },
	{ "/v1/models/f.n:predict", ROUTE_NOT_FOUND },
	{ "/v1/modelsx", ROUTE_INVOKE, "v1", "/modelsx" },
	/* /v2/models/{fn}[/...] */
	{ "/v2/models/fn/infer", ROUTE_INVOKE, "fn", WHOLE },
	{ "/v2/models/fn/versions/3/infer", ROUTE_INVOKE, "fn", WHOLE },
	{ "/v2/models/fn", ROUTE_INVOKE, "fn", WHOLE },
	{ "/v2/models/fn/ready", ROUTE_INVOKE, "fn", WHOLE },
	{ "/v2/models/fn:infer", ROUTE_NOT_FOUND },
	{ "/v2/models", ROUTE_NOT_FOUND },
	{ "/v2/models/", ROUTE_NOT_FOUND },
	/* fixed endpoints */
	{ "/v2/health/live", ROUTE_HEALTHZ },
	{ "/v2/health/ready", ROUTE_READYZ },
	{ "/v2", ROUTE_V2_SERVER },
	{ "/healthz", ROUTE_HEALTHZ },
	{ "/readyz", ROUTE_READYZ },
	{ "/metrics", ROUTE_METRICS },
	{ "/metricsx", ROUTE_INVOKE, "metricsx", "/" },
	{ "/healthz/", ROUTE_INVOKE, "healthz", "/" },
	/* /admin/... */
	{ "/admin/x", ROUTE_ADMIN, NULL, "/x" },
	{ "/admin/functions/fn", ROUTE_ADMIN, NULL, "/functions/fn" },
	{ "/admin/", ROUTE_ADMIN, NULL, "/" },
	{ "/admin", ROUTE_ADMIN, NULL, "" },
	{ "/administrator", ROUTE_INVOKE, "administrator", "/" },
	/* /console[/...]: the web console */
	{ "/console/", ROUTE_CONSOLE, NULL, "/" },
	{ "/console", ROUTE_CONSOLE, NULL, "" },
	{ "/console/console.js", ROUTE_CONSOLE, NULL, "/console.js" },
	{ "/consoles", ROUTE_INVOKE, "consoles", "/" },
	/* /proxy/{port}/... */
	{ "/proxy/8080/x", ROUTE_PROXY, NULL, "/x", 8080 },
	{ "/proxy/8080/x/y/", ROUTE_PROXY, NULL, "/x/y/", 8080 },
	{ "/proxy/8080", ROUTE_PROXY, NULL, "/", 8080 },
	{ "/proxy/8080/", ROUTE_PROXY, NULL, "/", 8080 },
	{ "/proxy/1/a", ROUTE_PROXY, NULL, "/a", 1 },
	{ "/proxy/65535", ROUTE_PROXY, NULL, "/", 65535 },
	{ "/proxy/08080/x", ROUTE_PROXY, NULL, "/x", 8080 },
	{ "/proxy/0", ROUTE_BAD_PATH },
	{ "/proxy/0/x", ROUTE_BAD_PATH },
	{ "/proxy/00000", ROUTE_BAD_PATH },
	{ "/proxy/65536", ROUTE_BAD_PATH },
	{ "/proxy/99999/x", ROUTE_BAD_PATH },
	{ "/proxy/008080", ROUTE_BAD_PATH },
	{ "/proxy/4294967297", ROUTE_BAD_PATH },
	{ "/proxy/abc", ROUTE_BAD_PATH },
	{ "/proxy/8o80/x", ROUTE_BAD_PATH },
	{ "/proxy/-1", ROUTE_BAD_PATH },
	{ "/proxy/80:x", ROUTE_BAD_PATH },
	{ "/proxy/", ROUTE_BAD_PATH },
	{ "/proxy//x", ROUTE_BAD_PATH },
	{ "/proxy", ROUTE_BAD_PATH },
	{ "/proxyx", ROUTE_INVOKE, "proxyx", "/" },
	/* dot segments are never forwarded */
	{ "/a/../b", ROUTE_BAD_PATH },
	{ "/./", ROUTE_BAD_PATH },
	{ "/.", ROUTE_BAD_PATH },
	{ "/..", ROUTE_BAD_PATH },
	{ "/../", ROUTE_BAD_PATH },
	{ "/fn/.", ROUTE_BAD_PATH },
	{ "/fn/..", ROUTE_BAD_PATH },
	{ "/fn/x/../y", ROUTE_BAD_PATH },
	{ "/fn//../y", ROUTE_BAD_PATH },
	{ "/invoke/fn/./x", ROUTE_BAD_PATH },
	{ "/v1/models/fn/../x:predict", ROUTE_BAD_PATH },
	{ "/proxy/8080/../admin", ROUTE_BAD_PATH },
	{ "/admin/../metrics", ROUTE_BAD_PATH },
	/* names: [A-Za-z0-9_-]{1,64} */
	{ name64, ROUTE_INVOKE, name64 + 1, "/" },
	{ name65, ROUTE_NOT_FOUND },
	{ "/fn.x", ROUTE_NOT_FOUND },
	{ "/f n", ROUTE_NOT_FOUND },
	{ "/fn%41", ROUTE_NOT_FOUND },
	{ "/fn:predict", ROUTE_NOT_FOUND },
	{ "/f\xc3\xa9", ROUTE_NOT_FOUND },
	{ "/", ROUTE_NOT_FOUND },
	{ "//fn", ROUTE_NOT_FOUND },
	/* not a path */
	{ "", ROUTE_BAD_PATH },
	{ "fn", ROUTE_BAD_PATH },
	{ "*", ROUTE_BAD_PATH },
	{ "http://host/fn", ROUTE_BAD_PATH },
	{ "healthz", ROUTE_BAD_PATH },
};

static bool view_inside(const char *v, size_t n, const char *buf, size_t len)
{
	return v >= buf && v <= buf + len && n <= (size_t)(buf + len - v);
}

static void check_case(const struct route_case *c)
{
	size_t len = c->len ? c->len : strlen(c->path);
	/* exactly len bytes: nothing after the path to lean on */
	char *buf = malloc(len ? len : 1);
	memcpy(buf, c->path, len);
	struct route rt;
	memset(&rt, 0x5a, sizeof(rt));
	router_route(buf, len, &rt);

	if (rt.kind != c->kind)
		fail_msg("%s: kind %d, want %d", c->path, rt.kind, c->kind);
	if (c->fn) {
		size_t n = strlen(c->fn);
		if (rt.fn_len != n || !view_inside(rt.fn, rt.fn_len, buf, len) ||
		    memcmp(rt.fn, c->fn, n) != 0)
			fail_msg("%s: fn '%.*s', want '%s'", c->path, (int)rt.fn_len,
				 rt.fn && rt.fn_len < 100 ? rt.fn : "", c->fn);
	} else {
		assert_null(rt.fn);
		assert_int_equal(rt.fn_len, 0);
	}
	if (c->sub) {
		bool whole = strcmp(c->sub, WHOLE) == 0;
		const char *want = whole ? c->path : c->sub;
		size_t n = whole ? len : strlen(c->sub);
		if (rt.sub_len != n || memcmp(rt.sub, want, n) != 0)
			fail_msg("%s: sub '%.*s', want '%.*s'", c->path, (int)rt.sub_len,
				 rt.sub_len < 100 ? rt.sub : "", (int)n, want);
		/* a view into the path, or the static "/" when there is no rest */
		if (!view_inside(rt.sub, rt.sub_len, buf, len))
			assert_true(rt.sub_len == 1 && rt.sub[0] == '/');
		if (whole)
			assert_ptr_equal(rt.sub, buf);
	} else {
		assert_null(rt.sub);
		assert_int_equal(rt.sub_len, 0);
	}
	assert_int_equal(rt.port, c->port);
	free(buf);
}

static void test_route_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(&cases[i]);
}

/* Every prefix of every table path routes without reading past its length
 * and gives views inside it. */
static void test_route_prefixes_stay_inside(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t full = strlen(cases[i].path);
		for (size_t len = 0; len <= full; len++) {
			char *buf = malloc(len ? len : 1);
			memcpy(buf, cases[i].path, len);
			struct route rt;
			router_route(buf, len, &rt);
			if (rt.kind == ROUTE_INVOKE) {
				assert_true(view_inside(rt.fn, rt.fn_len, buf, len));
				assert_true(rt.fn_len >= 1 && rt.fn_len <= 64);
			}
			if (rt.sub && !view_inside(rt.sub, rt.sub_len, buf, len))
				assert_true(rt.sub_len == 1 && rt.sub[0] == '/');
			if (rt.kind == ROUTE_PROXY)
				assert_true(rt.port >= 1 && rt.port <= 65535);
			free(buf);
		}
	}
}

/* Each reserved name is a first segment the daemon takes: a function of
 * that name is not what the path under it reaches. Names next to them are
 * free (the router is case-sensitive). */
static void test_reserved_names_are_the_daemon_routes(void **state)
{
	(void)state;
	static const struct {
		const char *name, *path; /* a path where /{name}/ is not the function */
	} taken[] = {
		{ "admin", "/admin/" },     { "proxy", "/proxy/8080/" },
		{ "invoke", "/invoke/f/" }, { "healthz", "/healthz" },
		{ "readyz", "/readyz" },    { "metrics", "/metrics" },
		{ "v1", "/v1/models/f" },   { "v2", "/v2/models/f" },
	};
	for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
		const char *n = taken[i].name;
		struct route rt;
		assert_non_null(router_reserved(n, strlen(n)));
		router_route(taken[i].path, strlen(taken[i].path), &rt);
		assert_false(rt.kind == ROUTE_INVOKE && rt.fn_len == strlen(n) &&
			     !memcmp(rt.fn, n, rt.fn_len));
	}
	static const char *const free_names[] = { "echo", "Admin", "admins", "v3", "metric",
						  "proxy_", "" };
	for (size_t i = 0; i < sizeof(free_names) / sizeof(free_names[0]); i++)
		assert_null(router_reserved(free_names[i], strlen(free_names[i])));
	/* len bounds the name: a view into a longer string */
	assert_string_equal(router_reserved("admin-x", 5), "/admin/...");
	assert_null(router_reserved("admin-x", 7));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_table),
		cmocka_unit_test(test_route_prefixes_stay_inside),
		cmocka_unit_test(test_reserved_names_are_the_daemon_routes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
