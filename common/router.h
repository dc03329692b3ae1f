/*
 * Router: what a request path asks for. Pure: no state, no I/O, so it is
 * table-tested. Views point into the path given; nothing is copied.
 */
#ifndef THAW_ROUTER_H
#define THAW_ROUTER_H

#include <stddef.h>

enum route_kind {
	ROUTE_NOT_FOUND,
	ROUTE_BAD_PATH,   /* path not starting with '/', or with '..' segments */
	ROUTE_HEALTHZ,    /* GET /healthz, /v2/health/live */
	ROUTE_READYZ,     /* GET /readyz, /v2/health/ready */
	ROUTE_METRICS,    /* GET /metrics */
	ROUTE_ADMIN,      /* /admin/...: sub is the rest */
	ROUTE_PROXY,      /* /proxy/{port}/...: port, sub */
	ROUTE_V2_SERVER,  /* GET /v2: server metadata */
	ROUTE_CONSOLE,    /* /console[/...]: sub is the rest ("" for /console) */
	ROUTE_INVOKE,     /* a function: fn, handler_path */
};

struct route {
	enum route_kind kind;
	const char *fn;     /* function name view */
	size_t fn_len;
	const char *sub;    /* path the handler sees / admin or proxy rest */
	size_t sub_len;
	unsigned port;      /* ROUTE_PROXY */
	unsigned version;   /* ROUTE_INVOKE via /v1|v2/models/{fn}/versions/{v}: v; else 0 */
};

/* Routes path (without the query). Function routes:
 *   /{fn}[/rest]                      -> fn, handler sees "/rest" ("/" if none)
 *   /invoke/{fn}[/rest]               -> same
 *   /v1/models/{fn}[/...][:verb]      -> fn, handler sees the whole path
 *   /v2/models/{fn}[/...]             -> fn, handler sees the whole path
 * Function names are [A-Za-z0-9_-]{1,64}; anything else is NOT_FOUND. */
void router_route(const char *path, size_t len, struct route *out);

/* When name (len bytes, case-sensitive) is a first path segment the daemon's
 * own routes take (admin, proxy, invoke, healthz, readyz, metrics, v1, v2,
 * console),
 * the route it belongs to, e.g. "/admin/..."; else NULL. A function of that
 * name could not be reached at /{name}/, so fc.yaml refuses it. */
const char *router_reserved(const char *name, size_t len);

#endif
