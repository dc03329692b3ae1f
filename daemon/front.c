#define LOG_PREFIX "front: "
#include "daemon/front.h"
#include "daemon/grpc_front.h"
#include "daemon/auth.h"
#include "daemon/conn.h"
#include "daemon/endpoints.h"
#include "daemon/invocation.h"
#include "common/log.h"
#include "daemon/pool.h"
#include "daemon/proxy.h"
#include "common/request.h"
#include "common/router.h"
#include "daemon/registry.h"
#include "daemon/server.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#define COUNT(arr, code) atomic_fetch_add_explicit(&(arr)[code], 1, memory_order_relaxed)

/* The route of c's request, its views moved to where the target is now
 * (the read buffer may have grown since the head was routed). */
static const char *moved(const char *view, const char *old, size_t len, const char *now)
{
	/* views outside the target are the router's own constants ("/");
	 * compared as integers: they point into different objects */
	uintptr_t v = (uintptr_t)view, o = (uintptr_t)old;
	return view && v >= o && v <= o + len ? now + (v - o) : view;
}

static struct route route_of(struct conn *c)
{
	struct route rt = c->route;
	const char *url = http_span_ptr(&c->req, c->req.url);
	rt.fn = moved(rt.fn, c->route_base, c->req.url.len, url);
	rt.sub = moved(rt.sub, c->route_base, c->req.url.len, url);
	return rt;
}

static void pick_request_id(struct conn *c)
{
	static _Thread_local uint64_t seq, salt;
	if (!salt && getrandom(&salt, sizeof(salt), 0) != sizeof(salt))
		salt = (uint64_t)now_ns();
	request_pick_id(&c->req, salt, &seq, c->request_id);
}

static void unauthorized_fn(struct conn *c, const struct function *fn)
{
	COUNT(server.metrics.http_errors, 401);
	conn_respond_error(c, 401, "function %s needs a token (httpTrigger.authType: function)",
			   fn->cfg.name);
}

/* 503: the daemon holds held bytes for clients, past --max-buffered. */
static void over_buffered(struct conn *c, uint64_t held)
{
	COUNT(server.metrics.http_errors, 503);
	conn_respond_error(c, 503, "the daemon holds %llu MiB of responses its clients have "
			   "not read and request bodies (--max-buffered): try again later",
			   (unsigned long long)(held >> 20));
}

/* The head is in: route, pick the body limit, refuse early. */
static void on_headers(struct conn *c)
{
	const char *url = http_span_ptr(&c->req, c->req.url);
	const char *q = memchr(url, '?', c->req.url.len);
	router_route(url, q ? (size_t)(q - url) : c->req.url.len, &c->route);
	c->route_base = url;
	struct route *rt = &c->route;
	if (rt->kind == ROUTE_INVOKE) {
		struct function *fn = rt->version ? registry_find_version(rt->fn, rt->fn_len, rt->version)
						  : registry_find_function(rt->fn, rt->fn_len);
		if (fn)
			c->req.body_limit = fn->cfg.max_body_bytes;
		/* past --max-buffered (responses clients do not read, bodies
		 * held): refused before a body adds to it */
		uint64_t held = atomic_load(&server.metrics.buffered);
		if (fn && held > server.opt.max_buffered) {
			c->close_after_send = true;
			c->start_ns = now_ns();
			pick_request_id(c);
			over_buffered(c, held);
			return;
		}
		/* refused before its body is read, as admin uploads are */
		if (fn && !strcmp(fn->cfg.auth_type, "function") && !auth_invoke(&c->req, fn->cfg.name)) {
			c->close_after_send = true;
			c->start_ns = now_ns();
			pick_request_id(c);
			unauthorized_fn(c, fn);
			return;
		}
	} else if (rt->kind == ROUTE_ADMIN || rt->kind == ROUTE_PROXY) {
		if (rt->kind == ROUTE_ADMIN)
			endpoints_on_headers(c, rt);
		else
			proxy_on_headers(c, rt);
		if (c->state != CONN_READING)
			return; /* refused: no 100 Continue */
	}
	/* 25 bytes into an idle socket's send buffer: a plain send never blocks */
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	if (c->req.expect_continue && c->req.body.len == 0 &&
	    (c->req.parser.content_length == ULLONG_MAX ||
	     c->req.parser.content_length <= c->req.body_limit)) {
		ssize_t r = send(c->fd, cont, sizeof(cont) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)r;
	}
}

/* Seconds from an X-Timeout header ("2.5", "2.5s", "300ms"), or -1. */
static double header_timeout(const struct http_req *r)
{
	struct http_span v;
	if (!http_req_header(r, "x-timeout", &v) || v.len == 0 || v.len > 31)
		return -1;
	char s[32];
	memcpy(s, http_span_ptr(r, v), v.len);
	s[v.len] = '\0';
	char *end;
	double x = strtod(s, &end);
	if (end == s || !isfinite(x) || x <= 0)
		return -1;
	if (strcmp(end, "ms") == 0)
		return x / 1000;
	return (*end == '\0' || strcmp(end, "s") == 0) ? x : -1;
}

static int64_t realtime_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A streamed answer's head or a piece of it, on c's loop. */
static void on_stream(struct invocation *inv, bool head, const char *data, size_t len)
{
	struct conn *c = inv->ctx;
	struct channel_response r;
	if (!c)
		return;
	if (!head)
		conn_stream_data(c, data, len);
	else if (channel_decode_response(data, len, &r) == 0)
		conn_stream_head(c, &r);
}

/* The pool's answer, on c's loop. */
static void on_answer(struct invocation *inv, const char *payload, size_t len)
{
	struct conn *c = inv->ctx;
	if (!c)
		return; /* the client went away */
	c->inv = NULL;
	if (c->streaming) { /* the end of a streamed answer, or its break */
		if (inv->stream_ok)
			conn_stream_end(c);
		else
			conn_close(c);
		return;
	}
	struct channel_response r;
	if (channel_decode_response(payload, len, &r) < 0) /* checked by the pool */
		conn_respond_error(c, 502, "instance sent a malformed response");
	else
		conn_respond_channel(c, &r);
}

static void invoke(struct conn *c, struct function *fn, const struct route *rt)
{
	double secs = fn->cfg.timeout_s, h = header_timeout(&c->req);
	if (h > 0 && h < secs)
		secs = h;
	struct invocation *inv = invocation_new(c->sh, fn, on_answer, c);
	if (fn->cfg.custom) /* chunked and event-stream answers arrive in pieces */
		inv->on_stream = on_stream;
	inv->start_ns = c->start_ns;
	inv->deadline_ns = c->start_ns + (int64_t)(secs * 1e9);
	memcpy(inv->request_id, c->request_id, sizeof(inv->request_id));
	enum header_hop hop = strcmp(fn->cfg.auth_type, "function") ? HOP_TO_HANDLER
								    : HOP_TO_TOKEN_HANDLER;
	request_encode(&inv->frame, &c->req, rt->sub, rt->sub_len, c->request_id,
		       realtime_ms() + (int64_t)(secs * 1000), hop);
	c->fn = fn;
	c->inv = inv;
	pool_submit(inv);
}

/* A whole request. */
static void on_request(struct conn *c)
{
	pick_request_id(c);
	struct route rt = route_of(c);
	if (rt.kind == ROUTE_PROXY) {
		proxy_start(c, &rt);
		return;
	}
	if (rt.kind != ROUTE_INVOKE) {
		endpoints_handle(c, &rt);
		return;
	}
	struct function *fn = rt.version ? registry_find_version(rt.fn, rt.fn_len, rt.version)
					 : registry_find_function(rt.fn, rt.fn_len);
	if (!fn) {
		COUNT(server.metrics.http_errors, 404);
		if (rt.version)
			conn_respond_error(c, 404, "function %.*s has no version %u", (int)rt.fn_len,
					   rt.fn, rt.version);
		else
			conn_respond_error(c, 404, "function not found: %.*s", (int)rt.fn_len, rt.fn);
		return;
	}
	if (!strcmp(fn->cfg.auth_type, "function") && !auth_invoke(&c->req, fn->cfg.name)) {
		unauthorized_fn(c, fn);
		return;
	}
	/* responses clients do not read stay in the daemon's memory: past the
	 * bound, no new work adds to them */
	uint64_t held = atomic_load(&server.metrics.buffered);
	/* its own body was let in at its head: held against the others */
	if (held - (held < c->body_counted ? held : c->body_counted) > server.opt.max_buffered) {
		over_buffered(c, held);
		return;
	}
	invoke(c, fn, &rt);
}

static void on_closed(struct conn *c)
{
	endpoints_conn_closed(c);
	if (c->proxy)
		proxy_detach(c->proxy);
	c->proxy = NULL;
}

void front_init(void)
{
	static const struct conn_hooks hooks = {
		.headers = on_headers,
		.request = on_request,
		.closed = on_closed,
	};
	conn_set_hooks(&hooks);
	grpc_front_init(); /* HTTP/2 connections: gRPC calls */
}
