/*
 * libFuzzer target over the daemon's request path: bytes from a client ->
 * http_req (fed in pieces, parse/next looped as conn.c's process() does) ->
 * router_route -> channel_put_request -> channel_decode_request.
 *
 * Invariants checked (abort() on violation, which libFuzzer reports):
 *  - every view (url, header names and values) lies inside the raw buffer and
 *    inside the head; counts and lengths stay within their limits;
 *  - an error carries one of the documented statuses;
 *  - the parse loop settles within a bound (no spinning without progress);
 *  - the route's views lie inside the path it was given, names are valid,
 *    proxy ports are 1..65535;
 *  - the channel frame is complete, decodes, and every decoded field equals
 *    what was encoded;
 *  - feeding the input whole, in random-sized pieces (sizes derived from a
 *    hash of the input) and, for short inputs, one byte at a time gives the
 *    same sequence of events (400, 414 and 431 count as one: see run()).
 *
 * Also compiled into tests/unit/test_fuzz_regressions.c, which replays the
 * seeds and the regressions with gcc's warnings.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/channel.h"
#include "common/headers.h"
#include "common/http.h"
#include "common/request.h"
#include "common/router.h"

#define FUZZ_MAX_HEADER_SIZE 8192u /* small, so 431 is reachable */
#define FUZZ_BUILTIN_LIMIT 256u     /* body limit until routed, as conn.c */
#define FUZZ_FUNCTION_LIMIT 4096u   /* body limit of a function route */
#define FUZZ_BYTEWISE_MAX 1024u     /* inputs up to this are also fed bytewise */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (!(cond))                                                            \
			fuzz_fail(#cond, __LINE__);                                     \
	} while (0)

static void fuzz_fail(const char *what, int line)
{
	fprintf(stderr, "fuzz_http.c:%d: invariant failed: %s\n", line, what);
	abort();
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static bool span_in(const struct http_req *r, struct http_span s, size_t end)
{
	return (size_t)s.off + s.len <= end && end <= r->in.len;
}

static bool ptr_in(const char *p, size_t n, const char *base, size_t len)
{
	return p >= base && p <= base + len && n <= (size_t)(base + len - p);
}

static bool name_ok(const char *p, size_t n)
{
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* The head's views: inside the buffer, inside the head, within limits. */
static void check_head(const struct http_req *r)
{
	CHECK(r->headers_done);
	CHECK(r->parsed <= r->in.len);
	CHECK(r->head_end <= r->parsed);
	CHECK(r->url.len <= HTTP_MAX_URL);
	CHECK(span_in(r, r->url, r->head_end));
	CHECK(r->n_headers <= HTTP_MAX_HEADERS);
	for (unsigned i = 0; i < r->n_headers; i++) {
		const struct http_header_ref *h = &r->headers[i];
		CHECK(h->name.len > 0);
		CHECK(span_in(r, h->name, r->head_end));
		CHECK(span_in(r, h->value, r->head_end));
		/* pool.c hands them on as C strings */
		CHECK(!memchr(http_span_ptr(r, h->name), '\0', h->name.len));
		CHECK(!memchr(http_span_ptr(r, h->value), '\0', h->value.len));
	}
	struct http_span v;
	if (http_req_header(r, "content-length", &v))
		CHECK(span_in(r, v, r->head_end));
	else
		CHECK(v.len == 0);
}

static void check_route(const char *path, size_t len, const struct route *rt)
{
	switch (rt->kind) {
	case ROUTE_NOT_FOUND:
	case ROUTE_BAD_PATH:
	case ROUTE_HEALTHZ:
	case ROUTE_READYZ:
	case ROUTE_METRICS:
	case ROUTE_V2_SERVER:
		break;
	case ROUTE_ADMIN:
	case ROUTE_CONSOLE:
		CHECK(ptr_in(rt->sub, rt->sub_len, path, len) || rt->sub_len == 0);
		break;
	case ROUTE_PROXY:
		CHECK(rt->port >= 1 && rt->port <= 65535);
		CHECK(ptr_in(rt->sub, rt->sub_len, path, len) ||
		      (rt->sub_len == 1 && rt->sub[0] == '/'));
		break;
	case ROUTE_INVOKE:
		CHECK(ptr_in(rt->fn, rt->fn_len, path, len));
		CHECK(name_ok(rt->fn, rt->fn_len));
		CHECK(ptr_in(rt->sub, rt->sub_len, path, len) ||
		      (rt->sub_len == 1 && rt->sub[0] == '/'));
		CHECK(rt->sub_len > 0 && rt->sub[0] == '/');
		break;
	default:
		CHECK(!"unknown route kind");
	}
	if (rt->kind != ROUTE_BAD_PATH)
		CHECK(len > 0 && path[0] == '/');
}

static bool field_eq(const char *got, const char *want, size_t len)
{
	return memcmp(got, want, len) == 0 && got[len] == '\0';
}

/* Encodes the request as the daemon does (request_encode), decodes it and
 * compares every field: the headers that pass, in order, then the request
 * id; nothing the header policy drops. */
static void check_channel(const struct http_req *r, const char *path, size_t path_len,
			  uint64_t seed)
{
	const char *url = http_span_ptr(r, r->url);
	const char *q = memchr(url, '?', r->url.len);
	const char *query = q ? q + 1 : "";
	size_t qlen = q ? r->url.len - (size_t)(q - url) - 1 : 0;
	const char *method = http_req_method(r);
	const char *body = r->body.len ? r->body.data : "";
	int64_t deadline = (int64_t)seed;
	enum header_hop hop = seed & 1 ? HOP_TO_TOKEN_HANDLER : HOP_TO_HANDLER;

	struct buf frame = { 0 };
	request_encode(&frame, r, path, path_len, "fuzz-id", deadline, hop);
	CHECK(channel_frame_complete(frame.data, frame.len) == (long)frame.len);
	CHECK(channel_frame_complete(frame.data, frame.len - 1) == 0);
	struct channel_hdr hdr;
	memcpy(&hdr, frame.data, sizeof(hdr));
	CHECK(hdr.type == CH_REQUEST && hdr.id == 0);
	CHECK(hdr.len == frame.len - sizeof(hdr));

	struct channel_request d;
	CHECK(channel_decode_request(frame.data + sizeof(hdr), hdr.len, &d) == 0);
	CHECK(strcmp(d.method, method) == 0);
	CHECK(field_eq(d.path, path, path_len));
	CHECK(field_eq(d.query, query, qlen));
	CHECK(strcmp(d.request_id, "fuzz-id") == 0);
	CHECK(d.deadline_ms == deadline);
	const char *cur = d.headers;
	uint32_t seen = 0;
	for (unsigned i = 0; i < r->n_headers; i++) {
		const struct http_header_ref *h = &r->headers[i];
		const char *name = http_span_ptr(r, h->name);
		if (!header_passes(hop, r, name, h->name.len))
			continue;
		struct channel_kv got;
		CHECK(seen < d.n_headers);
		channel_next_header(&cur, &got);
		seen++;
		CHECK(field_eq(got.name, name, h->name.len));
		CHECK(field_eq(got.value, http_span_ptr(r, h->value), h->value.len));
		CHECK(strncasecmp(got.name, "x-fc-", 5) != 0);
		CHECK(strcasecmp(got.name, "connection") && strcasecmp(got.name, "x-thaw-token") &&
		      strcasecmp(got.name, "transfer-encoding") && strcasecmp(got.name, "content-length"));
	}
	CHECK(seen + 1 == d.n_headers);
	struct channel_kv rid;
	channel_next_header(&cur, &rid);
	CHECK(!strcmp(rid.name, "x-fc-request-id") && !strcmp(rid.value, "fuzz-id"));
	CHECK(d.body_len == r->body.len);
	CHECK(field_eq(d.body, body, r->body.len));
	/* a truncated payload never decodes */
	CHECK(channel_decode_request(frame.data + sizeof(hdr), hdr.len - 1, &d) != 0);
	buf_free(&frame);
}

/* One HTTP_DONE: check, route, hand to the channel, record. */
static void on_done(const struct http_req *r, uint64_t seed, struct buf *log)
{
	check_head(r);
	CHECK(r->message_done);
	CHECK(r->body.len <= r->body_limit);
	const char *url = http_span_ptr(r, r->url);
	const char *q = memchr(url, '?', r->url.len);
	size_t plen = q ? (size_t)(q - url) : r->url.len;
	struct route rt;
	router_route(url, plen, &rt);
	check_route(url, plen, &rt);
	if (rt.kind == ROUTE_INVOKE)
		check_channel(r, rt.sub, rt.sub_len, seed);
	else
		check_channel(r, url, plen, seed);

	buf_printf(log, "D %s %d ka=%d ec=%d url=", http_req_method(r), (int)rt.kind,
		   http_req_keep_alive(r), r->expect_continue);
	buf_append(log, url, r->url.len);
	for (unsigned i = 0; i < r->n_headers; i++) {
		const struct http_header_ref *h = &r->headers[i];
		buf_append(log, "\n ", 2);
		buf_append(log, http_span_ptr(r, h->name), h->name.len);
		buf_append(log, ": ", 2);
		buf_append(log, http_span_ptr(r, h->value), h->value.len);
	}
	buf_printf(log, "\n body %zu %016llx\n", r->body.len,
		   (unsigned long long)fnv1a((const uint8_t *)r->body.data, r->body.len));
}

enum feed_mode { FEED_WHOLE, FEED_RANDOM, FEED_BYTES };

/* Drives one connection's worth of input; the event log goes to log. */
static void run(const uint8_t *data, size_t size, enum feed_mode mode, uint64_t seed,
		struct buf *log)
{
	struct http_req r;
	http_req_init(&r, FUZZ_BUILTIN_LIMIT);
	uint64_t rng = seed;
	size_t off = 0, feeds = 0, steps = 0;
	bool stop = false;
	while (!stop) {
		size_t piece = size - off;
		if (mode == FEED_BYTES)
			piece = piece ? 1 : 0;
		else if (mode == FEED_RANDOM && piece) {
			uint64_t x = xorshift(&rng);
			size_t max = (x & 3) == 0 ? 512 : (x & 3) == 1 ? 64 : 8;
			size_t want = 1 + (size_t)((x >> 8) % max);
			piece = want < piece ? want : piece;
		}
		http_req_feed(&r, (const char *)data + off, piece);
		off += piece;
		feeds++;
		/* bounded like conn.c's process(): each turn consumes input or
		 * changes state, so a few turns per byte and per feed suffice */
		for (;;) {
			CHECK(++steps <= 4 * size + 4 * feeds + 16);
			enum http_step s = http_req_parse(&r);
			CHECK(r.parsed <= r.in.len);
			if (s == HTTP_PARTIAL) {
				CHECK(!r.message_done && !r.error_status);
				break;
			} else if (s == HTTP_HEADERS) {
				check_head(&r);
				const char *url = http_span_ptr(&r, r.url);
				const char *q = memchr(url, '?', r.url.len);
				size_t plen = q ? (size_t)(q - url) : r.url.len;
				struct route rt;
				router_route(url, plen, &rt);
				check_route(url, plen, &rt);
				if (rt.kind == ROUTE_INVOKE)
					r.body_limit = FUZZ_FUNCTION_LIMIT;
				buf_printf(log, "H %d\n", (int)rt.kind);
			} else if (s == HTTP_DONE) {
				on_done(&r, seed, log);
				CHECK(http_req_parse(&r) == HTTP_DONE);
				http_req_next(&r);
				CHECK(!r.headers_done && !r.message_done && r.n_headers == 0);
			} else {
				CHECK(s == HTTP_ERROR);
				int st = r.error_status;
				CHECK(st == 400 || st == 413 || st == 414 || st == 431 || st == 501);
				CHECK(r.error_msg && r.error_msg[0]);
				CHECK(strcmp(http_status_text(st), "Unknown") != 0);
				CHECK(http_req_parse(&r) == HTTP_ERROR);
				/* A head with two faults (a URL past the limit that
				 * later holds a bad byte) reports the one seen first,
				 * and http-parser hands a URL or header name to the
				 * glue only at its end or at the end of a read: which
				 * of 400, 414 and 431 comes depends on the cuts. */
				if (st == 400 || st == 414 || st == 431)
					buf_append_str(log, "E head\n");
				else
					buf_printf(log, "E %d\n", st);
				stop = true;
				break;
			}
		}
		if (off == size)
			break;
	}
	http_req_fini(&r);
}

/* The event logs of two feedings must match; on a mismatch both are
 * printed (truncated) to help triage. */
static bool same_log(const struct buf *a, const struct buf *b)
{
	if (a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0))
		return true;
	fprintf(stderr, "--- whole (%zu bytes)\n%.*s\n--- pieces (%zu bytes)\n%.*s\n---\n", a->len,
		(int)(a->len < 2000 ? a->len : 2000), a->len ? a->data : "", b->len,
		(int)(b->len < 2000 ? b->len : 2000), b->len ? b->data : "");
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool inited;
	if (!inited) {
		http_set_max_header_size(FUZZ_MAX_HEADER_SIZE);
		inited = true;
	}
	uint64_t seed = fnv1a(data, size);
	struct buf whole = { 0 }, pieces = { 0 };
	run(data, size, FEED_WHOLE, seed, &whole);
	run(data, size, FEED_RANDOM, seed, &pieces);
	CHECK(same_log(&whole, &pieces));
	if (size <= FUZZ_BYTEWISE_MAX) {
		buf_reset(&pieces);
		run(data, size, FEED_BYTES, seed, &pieces);
		CHECK(same_log(&whole, &pieces));
	}
	buf_free(&whole);
	buf_free(&pieces);
	return 0;
}
