#include "common/router.h"

#include <string.h>

/* The first segments router_route below gives to the daemon itself; keep
 * the two in step (test_router checks each name here is taken). */
static const struct {
	const char *name, *route;
} reserved[] = {
	{ "admin", "/admin/..." },     { "proxy", "/proxy/{port}/..." },
	{ "invoke", "/invoke/{fn}/..." }, { "healthz", "/healthz" },
	{ "readyz", "/readyz" },       { "metrics", "/metrics" },
	{ "v1", "/v1/models/..." },    { "v2", "/v2/..." },
	{ "console", "/console/" },
};

const char *router_reserved(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strlen(reserved[i].name) == len && !memcmp(name, reserved[i].name, len))
			return reserved[i].route;
	return NULL;
}

static int is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

/* Length of the segment at p (up to '/', ':' when stop_colon, or end). */
static size_t segment(const char *p, const char *end, int stop_colon)
{
	const char *q = p;
	while (q < end && *q != '/' && !(stop_colon && *q == ':'))
		q++;
	return (size_t)(q - p);
}

static int valid_name(const char *p, size_t n)
{
	if (n == 0 || n > 64)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_name_char(p[i]))
			return 0;
	return 1;
}

/* True when any segment is "." or "..": never forward those. */
static int has_dot_segment(const char *p, size_t len)
{
	const char *end = p + len;
	while (p < end) {
		while (p < end && *p == '/')
			p++;
		size_t n = segment(p, end, 0);
		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return 1;
		p += n;
	}
	return 0;
}

static int prefix(const char *path, size_t len, const char *pre)
{
	size_t n = strlen(pre);
	return len >= n && memcmp(path, pre, n) == 0 && (len == n || path[n] == '/');
}

static void route_function(const char *p, size_t len, int whole, const char *path,
			   size_t path_len, struct route *out, int stop_colon)
{
	const char *end = p + len;
	size_t n = segment(p, end, stop_colon);
	if (!valid_name(p, n))
		return;
	out->kind = ROUTE_INVOKE;
	out->fn = p;
	out->fn_len = n;
	/* TF Serving and KServe pin a version: {fn}/versions/{v} */
	static const char vs[] = "/versions/";
	if (whole && (size_t)(end - (p + n)) > sizeof(vs) - 1 && !memcmp(p + n, vs, sizeof(vs) - 1)) {
		const char *d = p + n + sizeof(vs) - 1;
		unsigned v = 0;
		while (d < end && *d >= '0' && *d <= '9' && v < 100000)
			v = v * 10 + (unsigned)(*d++ - '0');
		out->version = v;
	}
	if (whole) {
		out->sub = path;
		out->sub_len = path_len;
	} else if (p + n < end) {
		out->sub = p + n;
		out->sub_len = (size_t)(end - (p + n));
	} else {
		out->sub = "/";
		out->sub_len = 1;
	}
}

void router_route(const char *path, size_t len, struct route *out)
{
	memset(out, 0, sizeof(*out));
	out->kind = ROUTE_NOT_FOUND;
	if (len == 0 || path[0] != '/' || has_dot_segment(path, len)) {
		out->kind = ROUTE_BAD_PATH;
		return;
	}
	static const struct {
		const char *path;
		enum route_kind kind;
	} fixed[] = {
		{ "/healthz", ROUTE_HEALTHZ },       { "/readyz", ROUTE_READYZ },
		{ "/metrics", ROUTE_METRICS },       { "/v2/health/live", ROUTE_HEALTHZ },
		{ "/v2/health/ready", ROUTE_READYZ }, { "/v2", ROUTE_V2_SERVER },
	};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (strlen(fixed[i].path) == len && memcmp(path, fixed[i].path, len) == 0) {
			out->kind = fixed[i].kind;
			return;
		}
	if (prefix(path, len, "/admin")) {
		out->kind = ROUTE_ADMIN;
		out->sub = path + 6;
		out->sub_len = len - 6;
		return;
	}
	if (prefix(path, len, "/console")) {
		out->kind = ROUTE_CONSOLE;
		out->sub = path + 8;
		out->sub_len = len - 8;
		return;
	}
	if (prefix(path, len, "/proxy")) {
		/* path + 7 would point past the end of a bare "/proxy" */
		const char *end = path + len, *p = len > 6 ? path + 7 : end;
		size_t n = p < end ? segment(p, end, 0) : 0;
		unsigned port = 0;
		for (size_t i = 0; i < n && port <= 65535; i++)
			port = (p[i] >= '0' && p[i] <= '9') ? port * 10 + (unsigned)(p[i] - '0') : 65536;
		if (n == 0 || n > 5 || port == 0 || port > 65535) {
			out->kind = ROUTE_BAD_PATH;
			return;
		}
		out->kind = ROUTE_PROXY;
		out->port = port;
		out->sub = p + n < end ? p + n : "/";
		out->sub_len = p + n < end ? (size_t)(end - (p + n)) : 1;
		return;
	}
	if (prefix(path, len, "/v1/models")) {
		if (len > 11)
			route_function(path + 11, len - 11, 1, path, len, out, 1);
		return;
	}
	if (prefix(path, len, "/v2/models")) {
		if (len > 11)
			route_function(path + 11, len - 11, 1, path, len, out, 0);
		return;
	}
	if (prefix(path, len, "/invoke")) {
		if (len > 8)
			route_function(path + 8, len - 8, 0, path, len, out, 0);
		return;
	}
	route_function(path + 1, len - 1, 0, path, len, out, 0);
}
